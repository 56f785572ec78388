"use strict";
(function () {
  var POLL_MS = 1000, TIMEOUT_MS = 3000;
  var STATUS_URL = "status";
  var updated = 0, lastOk = null, startedAt = null, prevNow = null, lastNow = 0;
  var prev = new Map(), cur = new Map();
  var pools = new Map(), listeners = new Map();
  var $ = function (id) { return document.getElementById(id); };

  // ---- small DOM helpers: all text goes through textContent ----
  function el(tag, cls, text) {
    var n = document.createElement(tag);
    if (cls) n.className = cls;
    if (text != null) n.textContent = text;
    return n;
  }
  function put(node, text) {
    text = String(text);
    if (node.textContent !== text) node.textContent = text;
  }
  function attr(node, name, value) {
    value = String(value);
    if (node.getAttribute(name) !== value) node.setAttribute(name, value);
  }
  function row(cells) {
    var tr = el("tr"), c = {};
    cells.forEach(function (spec) {
      var td = el("td", spec[1]);
      tr.appendChild(td);
      c[spec[0]] = td;
    });
    return { root: tr, c: c };
  }
  function table(headers, cls) {
    var wrap = el("div", "scroll"), t = el("table", cls), tr = el("tr"), body = el("tbody");
    var thead = el("thead");
    headers.forEach(function (h) {
      var th = el("th", h[1], h[0]);
      th.scope = "col";
      tr.appendChild(th);
    });
    thead.appendChild(tr);
    t.appendChild(thead);
    t.appendChild(body);
    wrap.appendChild(t);
    return { root: wrap, body: body };
  }

  // Keyed update: one entry per item, created once, updated in place, removed when gone,
  // kept in the order of `items`. `container` holds nothing but these entries.
  function reconcile(container, map, items, keyOf, create, update) {
    var seen = new Map(), keep = new Set();
    items.forEach(function (item, i) {
      var base = String(keyOf(item, i)), n = seen.get(base) || 0;
      seen.set(base, n + 1);
      var key = n ? base + "#" + n : base;
      keep.add(key);
      var entry = map.get(key);
      if (!entry) { entry = create(item); map.set(key, entry); }
      update(entry, item);
      var at = container.children[i] || null;
      if (at !== entry.root) container.insertBefore(entry.root, at);
    });
    map.forEach(function (entry, key) {
      if (!keep.has(key)) { entry.root.remove(); map.delete(key); }
    });
  }

  // ---- numbers ----
  function num(v) { return typeof v === "number" && isFinite(v) ? v : 0; }
  function int(v) { return Math.round(num(v)).toLocaleString("en-US"); }
  // Per-second rate of counter `key` since the previous poll; null on the first poll or
  // after a counter went backwards (a restart).
  function rate(key, value) {
    value = num(value);
    cur.set(key, value);
    var before = prev.get(key), dt = prevNow == null ? 0 : num(lastNow) - prevNow;
    if (before == null || dt <= 0 || value < before) return null;
    return (value - before) / dt;
  }
  function fmtRate(r) {
    if (r == null) return "–";
    if (r === 0) return "0";
    if (r < 10) return r.toFixed(1);
    return Math.round(r).toLocaleString("en-US");
  }
  function showRate(td, r, isError) {
    put(td, fmtRate(r));
    td.classList.toggle("bad", !!isError && r != null && r > 0);
  }
  function duration(s) {
    s = Math.max(0, Math.floor(num(s)));
    var d = Math.floor(s / 86400), h = Math.floor(s % 86400 / 3600), m = Math.floor(s % 3600 / 60);
    var sec = s % 60, p = function (x) { return (x < 10 ? "0" : "") + x; };
    if (d) return d + "d " + h + "h " + p(m) + "m";
    if (h) return h + "h " + p(m) + "m " + p(sec) + "s";
    if (m) return m + "m " + p(sec) + "s";
    return sec + "s";
  }
  function clock(date) { return date.toLocaleTimeString([], { hour12: false }); }
  function ms(v) { v = num(v); return (v < 10 ? v.toFixed(1) : Math.round(v)) + " ms"; }

  // ---- pools ----
  function checkText(hc) {
    if (!hc) return "no health check · always eligible";
    var parts = [String(hc.type || "?") + " check"];
    if (hc.path) parts.push(String(hc.path));
    if (hc.interval_ms != null) parts.push("every " + ms(hc.interval_ms).replace(".0 ms", " ms"));
    return parts.join(" · ");
  }
  function createPool() {
    var card = el("section", "card"), head = el("div", "card-head");
    var e = { root: card, backends: new Map() };
    e.name = head.appendChild(el("h3"));
    e.balance = head.appendChild(el("span", "chip"));
    e.check = head.appendChild(el("span", "info"));
    e.queue = head.appendChild(el("span", "info"));
    e.count = head.appendChild(el("span", "right count"));
    card.appendChild(head);
    var t = table([["Backend"], ["Health"], ["State"], ["Weight", "n"], ["Active", "n"], ["Req/s", "n"],
      ["Err/s", "n"], ["Requests", "n"], ["Conn fail", "n"], ["Last check"], ["Transitions", "n"]]);
    e.body = t.body;
    card.appendChild(t.root);
    return e;
  }
  function createBackend() {
    var r = row([["addr", "addr"], ["health"], ["state"], ["weight", "n"], ["active", "n"], ["rps", "n"],
      ["eps", "n"], ["requests", "n"], ["cf", "n"], ["check", "check"], ["trans", "n"]]);
    r.badge = r.c.health.appendChild(el("span", "badge"));
    r.why = r.c.health.appendChild(el("span", "why"));
    r.state = r.c.state.appendChild(el("span", "chip state"));
    r.result = r.c.check.appendChild(el("span"));
    r.err = r.c.check.appendChild(el("span", "err"));
    return r;
  }
  function updateBackend(poolName) {
    return function (r, b) {
      var address = String(b.address), up = b.healthy === true;
      var key = "b\u0000" + poolName + "\u0000" + address;
      attr(r.root, "data-pool", poolName);
      attr(r.root, "data-backend", address);
      attr(r.root, "data-health", up ? "up" : "down");
      put(r.c.addr, address);
      put(r.badge, up ? "UP" : "DOWN");
      var out = Array.isArray(b.out) ? b.out.map(String) : [];
      attr(r.root, "data-out", out.join(" "));
      put(r.why, out.join(" + "));
      attr(r.why, "title", out.length ? "out of rotation: " + out.join(", ") : "");
      // Out only by the operator's hand: amber, not red.
      var held = !up && out.length > 0 && out.every(function (o) { return o === "drain" || o === "maint"; });
      attr(r.badge, "class", "badge " + (up ? "up" : held ? "down held" : "down"));
      r.root.classList.toggle("held", held);
      var state = String(b.state || "ready");
      attr(r.root, "data-state", state);
      put(r.state, state);
      attr(r.state, "class", "chip state " + state);
      put(r.c.weight, int(b.weight));
      put(r.c.active, int(b.active));
      showRate(r.c.rps, rate(key + "\u0000r", b.requests));
      showRate(r.c.eps, rate(key + "\u0000e", b.errors), true);
      put(r.c.requests, int(b.requests));
      put(r.c.cf, int(b.connect_failures));
      r.c.cf.classList.toggle("bad", num(b.connect_failures) > 0);
      put(r.c.trans, int(b.transitions));
      var lc = b.last_check || {}, result = String(lc.result || "none"), error = String(lc.error || "");
      attr(r.c.check, "class", "check " + (result === "ok" || result === "failed" ? result : "none"));
      put(r.result, result === "none" ? "not checked" : result + " · " + ms(lc.latency_ms));
      put(r.err, error);
      attr(r.c.check, "title", error);
      return up;
    };
  }
  function updatePool(e, p) {
    var name = String(p.name), backends = Array.isArray(p.backends) ? p.backends : [];
    attr(e.root, "data-pool-name", name);
    put(e.name, name);
    put(e.balance, String(p.balance || ""));
    put(e.check, checkText(p.health_check));
    var q = p.queue;
    put(e.queue, q ? "max_conns " + int(q.max_conns) + " · queue " + int(q.depth) + "/" + int(q.size) : "");
    attr(e.queue, "data-queue-depth", q ? int(q.depth) : "");
    var update = updateBackend(name), up = 0;
    reconcile(e.body, e.backends, backends, function (b) { return b.address; }, createBackend,
      function (r, b) { if (update(r, b)) up++; });
    put(e.count, up + "/" + backends.length + " up");
    attr(e.count, "class", "right count " + (up === backends.length ? "all" : up ? "some" : "none"));
    return { up: up, total: backends.length };
  }

  // ---- listeners ----
  function createListener() {
    var card = el("section", "card"), head = el("div", "card-head");
    var e = { root: card, routes: new Map() };
    e.name = head.appendChild(el("h3"));
    e.proto = head.appendChild(el("span", "chip proto"));
    e.tls = head.appendChild(el("span", "chip", "TLS"));
    e.binds = head.appendChild(el("span", "binds"));
    e.stats = head.appendChild(el("span", "right"));
    card.appendChild(head);
    e.tcp = card.appendChild(el("div", "empty"));
    var t = table([["Route"], ["Match"], ["Pool"], ["Filters"], ["Req/s", "n"], ["Err/s", "n"],
      ["Requests", "n"], ["Errors", "n"]], "routes");
    e.table = t.root;
    e.body = t.body;
    card.appendChild(t.root);
    return e;
  }
  function filters(list) {
    return Array.isArray(list) && list.length ? list.map(String).join(" → ") : "none";
  }
  function createRoute() {
    return row([["name"], ["match", "match"], ["pool"], ["filters"], ["rps", "n"], ["eps", "n"],
      ["requests", "n"], ["errors", "n"]]);
  }
  function updateRoute(listenerName) {
    return function (r, rt) {
      var key = "r\u0000" + listenerName + "\u0000" + rt.name;
      attr(r.root, "data-route", String(rt.name));
      put(r.c.name, String(rt.name));
      put(r.c.match, rt.match ? String(rt.match) : "everything");
      put(r.c.pool, rt.pool == null ? "— (no pool)" : "→ " + rt.pool);
      put(r.c.filters, filters(rt.filters));
      r.c.filters.classList.toggle("dim", !(rt.filters && rt.filters.length));
      showRate(r.c.rps, rate(key + "\u0000r", rt.requests));
      showRate(r.c.eps, rate(key + "\u0000e", rt.errors), true);
      put(r.c.requests, int(rt.requests));
      put(r.c.errors, int(rt.errors));
      r.c.errors.classList.toggle("bad", num(rt.errors) > 0);
    };
  }
  function updateListener(e, l, totals) {
    // A udp listener shows like a tcp one: its pool, flows instead of connections.
    var udp = l.protocol === "udp", tcp = l.protocol === "tcp" || udp;
    var name = String(l.name), unit = udp ? "flow/s" : tcp ? "conn/s" : "req/s";
    var key = "l\u0000" + name, rps = rate(key + "\u0000r", l.requests), eps = rate(key + "\u0000e", l.errors);
    attr(e.root, "data-listener", name);
    put(e.name, name);
    put(e.proto, String(l.protocol || "?"));
    e.tls.hidden = !l.tls;
    put(e.binds, (Array.isArray(l.binds) ? l.binds : []).map(String).join(", "));
    put(e.stats, "active " + int(l.active) + " · " + fmtRate(rps) + " " + unit + " · " + fmtRate(eps) +
      " err/s · " + int(l.requests) + (udp ? " flows" : tcp ? " connections" : " requests") + " · " + int(l.errors) + " errors");
    totals.active += num(l.active);
    if (rps != null) totals.rps += rps; else totals.known = false;
    if (eps != null) totals.eps += eps;
    var routes = Array.isArray(l.routes) ? l.routes : [];
    e.tcp.hidden = !tcp;
    if (tcp) put(e.tcp, "→ pool " + (l.pool == null ? "(none)" : l.pool) + " · filters: " + filters(l.filters));
    e.table.hidden = tcp && routes.length === 0;
    reconcile(e.body, e.routes, routes, function (rt, i) { return rt.name != null ? rt.name : i; },
      createRoute, updateRoute(name));
  }

  // ---- the running config, its last reload, the operators' changes ----
  var OPS_SHOWN = 10, NOTES_SHOWN = 20, lastNotes = null, lastOps = null;
  var ops = table([["When"], ["Who"], ["Pool"], ["Backend"], ["Change"]]);
  $("ops").appendChild(ops.root);
  function at(t) { return t == null ? "?" : clock(new Date(num(t) * 1000)); }
  function list(v) { return Array.isArray(v) ? v : []; }
  function notes(last) {
    var d = last && last.detail || {}, items = [];
    list(d.problems).forEach(function (p) { items.push(["problem", String(p)]); });
    list(d.needs_upgrade).forEach(function (u) { items.push(["upgrade", "needs upgrade (-u + SIGQUIT): " + u]); });
    list(d.changes).forEach(function (c) {
      if (c && c.applied === "in place") items.push(["change", "in place: " + c.group + ": " + c.change]);
    });
    if (items.length > NOTES_SHOWN) {
      items = items.slice(0, NOTES_SHOWN).concat([["change", "… " + (items.length - NOTES_SHOWN) + " more"]]);
    }
    return items;
  }
  function renderConfig(c, now) {
    var hash = String(c.hash || ""), last = c.last_reload || null;
    var result = last ? String(last.result || "?") : "none", d = last && last.detail || {};
    attr($("cfg"), "data-hash", hash);
    attr($("cfg"), "data-reloads", int(c.reloads));
    attr($("cfg"), "data-result", result);
    put($("cfg-hash"), hash.slice(0, 12) || "–");
    attr($("cfg-hash"), "title", hash);
    put($("cfg-loaded"), at(c.loaded_at) + " · " + duration(now - num(c.loaded_at)) + " ago");
    put($("cfg-reloads"), int(c.reloads));
    put($("cfg-result"), result === "none" ? "none yet" : result);
    attr($("cfg-result"), "class", "res " + result);
    var info = [];
    if (last) {
      info.push("at " + at(last.at) + (d.by ? " by " + d.by : ""));
      if (result === "ok") {
        if (d.took_ms != null) info.push(ms(d.took_ms));
        info.push(list(d.changes).length + " change(s)");
      } else if (result === "refused") {
        info.push("the running config kept serving");
      }
    }
    put($("cfg-last"), info.join(" · "));
    var ns = notes(last), key = JSON.stringify(ns);
    if (key !== lastNotes) {
      lastNotes = key;
      $("cfg-notes").replaceChildren.apply($("cfg-notes"), ns.map(function (n) { return el("li", n[0], n[1]); }));
    }
    var changes = list(c.operator_changes);
    key = JSON.stringify(changes);
    if (key === lastOps) return;
    lastOps = key;
    var shown = changes.slice(-OPS_SHOWN).reverse();
    ops.root.hidden = !shown.length;
    put($("ops-info"), changes.length ? (changes.length > OPS_SHOWN ? "latest " + OPS_SHOWN + " of " + changes.length
      : changes.length + "") + " · each lasts until the next reload" : "none · drain, maint, weight: POST /pools/NAME/backends/ADDRESS");
    ops.body.replaceChildren.apply(ops.body, shown.map(function (o) {
      var r = row([["at"], ["who"], ["pool"], ["backend", "addr"], ["change"]]);
      ["who", "pool", "backend", "change"].forEach(function (k) {
        put(r.c[k], String(o[k] == null ? "" : o[k]));
        attr(r.root, "data-op-" + k, String(o[k] == null ? "" : o[k]));
      });
      attr(r.root, "data-op", "");
      put(r.c.at, at(o.at));
      return r.root;
    }));
  }

  // ---- one poll ----
  function emptyNote(container, items, text) {
    var note = container.previousElementSibling && container.previousElementSibling.classList.contains("empty")
      ? container.previousElementSibling : null;
    if (!items.length && !note) container.parentNode.insertBefore(el("div", "empty", text), container);
    if (items.length && note) note.remove();
  }
  function render(s) {
    if (startedAt !== s.started_at) { prev = new Map(); prevNow = null; startedAt = s.started_at; }
    lastNow = num(s.now);
    cur = new Map();
    put($("version"), s.version ? "v" + s.version : "");
    var c = s.config && typeof s.config === "object" ? s.config : {};
    put($("config"), String(c.file || s.config_file || "–"));
    renderConfig(c, num(s.now));
    put($("uptime"), duration(num(s.now) - num(s.started_at)));
    var ps = Array.isArray(s.pools) ? s.pools : [], ls = Array.isArray(s.listeners) ? s.listeners : [];
    var up = 0, total = 0;
    reconcile($("pools"), pools, ps, function (p) { return p.name; }, createPool, function (e, p) {
      var c = updatePool(e, p);
      up += c.up; total += c.total;
    });
    var totals = { active: 0, rps: 0, eps: 0, known: true };
    reconcile($("listeners"), listeners, ls, function (l) { return l.name; }, createListener,
      function (e, l) { updateListener(e, l, totals); });
    emptyNote($("pools"), ps, "No pools configured.");
    emptyNote($("listeners"), ls, "No listeners configured.");
    put($("s-up"), up + " / " + total);
    attr($("s-up"), "class", "v count " + (up === total ? "all" : up ? "some" : "none"));
    put($("s-pools"), ps.length);
    put($("s-listeners"), ls.length);
    put($("s-active"), int(totals.active));
    put($("s-rps"), totals.known && ls.length ? fmtRate(totals.rps) : "–");
    put($("s-eps"), totals.known && ls.length ? fmtRate(totals.eps) : "–");
    $("s-eps").classList.toggle("bad", totals.known && totals.eps > 0);
    document.title = (up < total ? "(" + (total - up) + " down) " : "") + "Tioga status";
    prev = cur;
    prevNow = lastNow;
  }
  function setConn(state, text) {
    attr(document.body, "data-conn", state);
    put($("conn"), text);
  }
  function lost(reason) {
    setConn("lost", "Offline");
    put($("lost-detail"), "(" + reason + (lastOk ? "; last update " + clock(lastOk) : "") + ")");
  }
  function poll() {
    var ctl = typeof AbortController === "function" ? new AbortController() : null;
    var timer = setTimeout(function () { if (ctl) ctl.abort(); }, TIMEOUT_MS);
    fetch(STATUS_URL, { cache: "no-store", signal: ctl ? ctl.signal : undefined, headers: { Accept: "application/json" } })
      .then(function (resp) {
        if (!resp.ok) throw new Error("HTTP " + resp.status);
        return resp.json();
      })
      .then(function (s) {
        if (!s || typeof s !== "object") throw new Error("not a status document");
        render(s);
        updated++;
        lastOk = new Date();
        put($("updated"), clock(lastOk));
        setConn("live", "Live");
        attr(document.body, "data-updated", updated);
      })
      .catch(function (err) {
        lost(err && err.name === "AbortError" ? "no answer in " + TIMEOUT_MS / 1000 + "s" : String(err && err.message || err));
      })
      .then(function () {
        clearTimeout(timer);
        setTimeout(poll, POLL_MS);
      });
  }
  poll();
})();
