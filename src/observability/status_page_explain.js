"use strict";
// The explain form: GET explain?method=…&url=…&header=…&from=… (the same JSON as
// `tioga explain --json`), shown as text; #explain-out's data-route is the chosen route.
(function () {
  var form = document.getElementById("explain-form"), out = document.getElementById("explain-out");
  form.addEventListener("submit", function (ev) {
    ev.preventDefault();
    var q = new URLSearchParams();
    q.append("method", form.method.value.trim() || "GET");
    q.append("url", form.url.value.trim());
    if (form.from.value.trim()) q.append("from", form.from.value.trim());
    form.headers.value.split("\n").forEach(function (h) { if (h.trim()) q.append("header", h.trim()); });
    fetch("explain?" + q.toString(), { cache: "no-store" })
      .then(function (resp) { return resp.text().then(function (t) { return { ok: resp.ok, text: t }; }); })
      .then(function (r) {
        if (!r.ok) { out.textContent = r.text; out.setAttribute("data-route", ""); return; }
        var e = JSON.parse(r.text), lines = [];
        (e.routes || []).forEach(function (t) {
          lines.push(t.route + "  " + (t.matched ? "matched" : "no match: " + t.failed));
        });
        lines.push(e.route ? "route " + e.route + (e.pool ? ", pool " + e.pool : "") +
          (e.filters && e.filters.length ? ", filters " + e.filters.join(", ") : "") +
          (e.backend ? ", backend " + e.backend : "") + (e.status ? ", answered " + e.status : "")
          : "no route: " + e.status);
        out.textContent = lines.join("\n");
        out.setAttribute("data-route", e.route || "none");
      })
      .catch(function (err) { out.textContent = String(err && err.message || err); });
  });
})();
