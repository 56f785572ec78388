#!/usr/bin/env python3
"""Helpers for bench/run.sh: free ports, process CPU and memory, the idle-connection
memory probe, parsers for the load generators' output, and the results report.

Every sub-command prints plain text for the shell (or writes the report); none keeps
state between calls except through the files the shell passes.
"""

import argparse
import json
import os
import re
import socket
import statistics
import sys
import time

# --------------------------------------------------------------------------- ports


def cmd_ports(args):
    """Print N distinct free TCP ports on 127.0.0.1 (all held open until all are
    chosen, so none repeats)."""
    socks = []
    for _ in range(args.n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
    print(" ".join(str(s.getsockname()[1]) for s in socks))
    for s in socks:
        s.close()


# ------------------------------------------------------------------ /proc readings


def cpu_ticks(pid):
    """(utime + stime, stime) of one process (all its threads), in clock ticks."""
    with open(f"/proc/{pid}/stat") as f:
        stat = f.read()
    # Fields after the command name, which is in parentheses and may hold spaces.
    fields = stat[stat.rindex(")") + 2 :].split()
    utime, stime = int(fields[11]), int(fields[12])  # fields 14 and 15 of proc(5)
    return utime + stime, stime


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def cmd_cpu_us(args):
    """Print the summed utime+stime, and stime alone, of PIDs in microseconds."""
    hz = os.sysconf("SC_CLK_TCK")
    ticks = [cpu_ticks(p) for p in args.pids]
    print(sum(t for t, _ in ticks) * 1_000_000 // hz, sum(s for _, s in ticks) * 1_000_000 // hz)


def cmd_rss(args):
    print(sum(rss_kib(p) for p in args.pids))


def read_cpu_lines():
    """{cpuN: [user, nice, system, idle, iowait, irq, softirq, steal]} from /proc/stat."""
    out = {}
    for line in open("/proc/stat"):
        if line.startswith("cpu") and line[3].isdigit():
            f = line.split()
            out[f[0]] = [int(x) for x in f[1:9]]
    return out


def cmd_steal(args):
    """`steal FILE`: the first call saves /proc/stat's per-CPU times to FILE; the next
    prints the share of time stolen by the hypervisor on each CPU since then."""
    now = read_cpu_lines()
    if not os.path.exists(args.file):
        json.dump(now, open(args.file, "w"))
        return
    then = json.load(open(args.file))
    parts = []
    for cpu, t in sorted(now.items()):
        d = [a - b for a, b in zip(t, then.get(cpu, t))]
        total = sum(d)
        parts.append(f"{cpu} {100 * d[7] / total:.1f} %" if total else f"{cpu} ?")
    print(", ".join(parts))


# ------------------------------------------------------------- idle-connection probe


def http_get(sock, host):
    """Send one keep-alive GET and read the whole response (Content-Length body)."""
    sock.sendall(f"GET / HTTP/1.1\r\nHost: {host}\r\nUser-Agent: bench\r\n\r\n".encode())
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed before the response head")
        buf += chunk
    head, _, body = buf.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    m = re.search(rb"(?im)^content-length:\s*(\d+)", head)
    need = int(m.group(1)) if m else 0
    while len(body) < need:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed before the end of the body")
        body += chunk
    return status


def still_open(sock):
    """True when the peer has not closed the connection (nothing to read, no EOF)."""
    sock.setblocking(False)  # a socket with a timeout would wait in recv
    try:
        data = sock.recv(1, socket.MSG_PEEK)
        return data != b""
    except BlockingIOError:
        return True
    except OSError:
        return False


def still_open_tls(sock):
    """`still_open` for a TLS socket, peeking at its TCP socket through a duplicate."""
    dup = socket.fromfd(sock.fileno(), socket.AF_INET, socket.SOCK_STREAM)
    try:
        return still_open(dup)
    finally:
        dup.close()


def raise_nofile(n):
    """Raise this process's open-file limit to at least N if the hard limit allows."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = n + 100
    if soft < want:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, max(hard, want)))
        except (ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def connect_from(i, port):
    """The i-th of many client connections to 127.0.0.1:PORT, from 127.0.0.1, .2, …
    (5,000 each). The source port is chosen at connect, not at bind
    (IP_BIND_ADDRESS_NO_PORT), so the kernel may take one still in TIME_WAIT from an
    earlier repetition, or in use towards another destination."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_IP, getattr(socket, "IP_BIND_ADDRESS_NO_PORT", 24), 1)
    s.bind((f"127.0.0.{1 + i // 5000}", 0))
    s.settimeout(10)
    s.connect(("127.0.0.1", port))
    return s


def cmd_idle(args):
    """Memory of a proxy holding N idle connections, and after they close.

    Like `mem`, for a protocol: `h1` opens N connections to the proxy's L7 listener,
    one keep-alive request each; `l4` opens them to its TCP listener (pool: the HTTP
    backends), one keep-alive request each through the relay, from source addresses
    127.0.0.1, .2, ... (`connect_from`). Prints `rss_idle_kib rss_conns_kib still_open_conns non_200 rss_closed_kib`,
    the last read `settle` seconds after all N are closed.
    """
    raise_nofile(args.conns)
    host = f"127.0.0.1:{args.port}"
    bad = 0
    for _ in range(2):
        with socket.create_connection(("127.0.0.1", args.port), timeout=5) as s:
            for _ in range(100):
                bad += http_get(s, host) != 200
    connect = lambda i: connect_from(i, args.port)
    hold_idle(args, bad, connect, lambda s: http_get(s, host), still_open)


def hold_idle(args, bad, connect, get, is_open):
    """The idle measure after a warm-up that saw `bad` non-200 answers: RSS of PIDS,
    then N connections (`connect(i)`) with one request each (`get(sock)`, the status)
    left open, RSS again and how many are still open (`is_open`), then RSS `settle * 2`
    seconds after all are closed; prints the five numbers."""
    time.sleep(args.settle)
    idle = sum(rss_kib(p) for p in args.pids)
    conns = []
    try:
        for i in range(args.conns):
            s = connect(i)
            conns.append(s)
            bad += get(s) != 200
        time.sleep(args.settle)
        loaded = sum(rss_kib(p) for p in args.pids)
        alive = sum(is_open(s) for s in conns)
    finally:
        for s in conns:
            s.close()
    time.sleep(args.settle * 2)
    closed = sum(rss_kib(p) for p in args.pids)
    print(idle, loaded, alive, bad, closed)


def h2_get(sock, host):
    """One GET on a fresh h2 connection (TLS, ALPN h2): the preface, empty SETTINGS, a
    HEADERS frame on stream 1; reads frames (acknowledging the server's SETTINGS) until
    stream 1 ends. Returns 200 when the response's first header is `:status: 200`
    (HPACK static index 8), else 0."""
    authority = host.encode()
    block = b"\x82\x87\x84\x01" + bytes([len(authority)]) + authority  # GET https / host
    sock.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
                 + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"
                 + len(block).to_bytes(3, "big") + b"\x01\x05\x00\x00\x00\x01" + block)
    buf, status = b"", 0

    def need(n):
        nonlocal buf
        while len(buf) < n:
            chunk = sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed before the end of the response")
            buf += chunk

    while True:
        need(9)
        length, kind, flags = int.from_bytes(buf[:3], "big"), buf[3], buf[4]
        stream = int.from_bytes(buf[5:9], "big") & 0x7FFFFFFF
        need(9 + length)
        payload, buf = buf[9 : 9 + length], buf[9 + length :]
        if kind == 4 and not flags & 1:  # SETTINGS, not an ACK
            sock.sendall(b"\x00\x00\x00\x04\x01\x00\x00\x00\x00")
        if stream == 1 and kind == 1:  # HEADERS (no padding or priority from these peers)
            status = 200 if payload[:1] == b"\x88" else 0
        if stream == 1 and kind in (0, 1) and flags & 1:  # END_STREAM
            return status


def cmd_h2idle(args):
    """Memory of a TLS proxy holding N idle h2 connections, each after one request.

    As `idle`, over TLS 1.3 with ALPN h2 (certificate not checked); prints the same
    five numbers.
    """
    import ssl

    raise_nofile(args.conns)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols(["h2"])
    host = f"localhost:{args.port}"

    def connect(i):
        raw = connect_from(i, args.port)
        s = ctx.wrap_socket(raw, server_hostname="localhost")
        if s.selected_alpn_protocol() != "h2":
            raise ConnectionError(f"ALPN chose {s.selected_alpn_protocol()}, not h2")
        return s

    bad = 0
    for i in range(20):  # warm-up
        with connect(i) as s:
            bad += h2_get(s, host) != 200
    hold_idle(args, bad, connect, lambda s: h2_get(s, host), still_open_tls)


def cmd_mem(args):
    """Memory of a proxy with N idle keep-alive connections.

    Warms the proxy up with a few requests, reads the RSS of PIDS (idle), then opens N
    connections one after the other, sends one keep-alive request on each, reads the
    answer and leaves the connection open and idle; reads the RSS again. Prints
    `rss_idle_kib rss_conns_kib still_open_conns non_200`. Requests are sequential so
    the proxy never needs more than one upstream connection at a time: the difference is
    the cost of the client connections alone.
    """
    host = f"127.0.0.1:{args.port}"
    bad = 0
    for _ in range(2):  # warm-up: lazy initialisation, the upstream pool
        with socket.create_connection(("127.0.0.1", args.port), timeout=5) as s:
            for _ in range(100):
                bad += http_get(s, host) != 200
    time.sleep(args.settle)
    idle = sum(rss_kib(p) for p in args.pids)
    conns = []
    try:
        for _ in range(args.conns):
            s = socket.create_connection(("127.0.0.1", args.port), timeout=5)
            conns.append(s)
            bad += http_get(s, host) != 200
        time.sleep(args.settle)
        loaded = sum(rss_kib(p) for p in args.pids)
        alive = sum(still_open(s) for s in conns)
    finally:
        for s in conns:
            s.close()
    print(idle, loaded, alive, bad)


# --------------------------------------------------------------------------- parsers

UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}


def cmd_wrk(args):
    """Parse wrk output: prints `rps p99_ms requests non2xx socket_errors`."""
    text = open(args.file).read()
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
    m = re.search(r"^\s+99%\s+([\d.]+)(us|ms|s|m)\s*$", text, re.M)
    p99 = float(m.group(1)) * UNITS_MS[m.group(2)] if m else float("nan")
    total = int(re.search(r"(\d+) requests in", text).group(1))
    m = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
    non2xx = int(m.group(1)) if m else 0
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    errors = sum(int(x) for x in m.groups()) if m else 0
    print(f"{rps:.2f} {p99:.3f} {total} {non2xx} {errors}")


def cmd_h2load(args):
    """Parse h2load output: prints `succeeded failed_or_errored achieved_rps`."""
    text = open(args.file).read()
    m = re.search(
        r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, "
        r"(\d+) errored, (\d+) timeout",
        text,
    )
    succeeded = int(m.group(4))
    bad = int(m.group(5)) + int(m.group(6)) + int(m.group(7))
    rps = float(re.search(r"finished in [\d.]+m?s, ([\d.]+) req/s", text).group(1))
    # Responses other than 2xx count as "succeeded" for h2load; count them apart.
    m = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", text)
    if m:
        bad += int(m.group(3)) + int(m.group(4))
    print(f"{succeeded} {bad} {rps:.2f}")


def cmd_iperf(args):
    """Parse `iperf3 -J` output: prints Gbit/s received."""
    data = json.load(open(args.file))
    if "error" in data:
        sys.exit(f"iperf3: {data['error']}")
    print(f"{data['end']['sum_received']['bits_per_second'] / 1e9:.3f}")


# --------------------------------------------------------------------------- report

# (key, label, unit, better) in table order.
MEASURES = [
    ("l7_ka_rps", "L7 keep-alive throughput", "req/s", "higher"),
    ("l7_ka_p99", "L7 keep-alive p99 latency", "ms", "lower"),
    ("l7_pair_rps", "L7 keep-alive, paired with bare Pingora (both at once)", "req/s", "higher"),
    ("l7_close_rps", "L7 new connection per request", "req/s", "higher"),
    ("cpu_us_per_req", "L7 proxy CPU per request at the fixed rate", "µs/req", "lower"),
    ("cpu_sys_pct", "… of which in the kernel (stime)", "%", "info"),
    ("l4_conn_rate", "L4 connection rate", "conn/s", "higher"),
    ("l4_bulk_gbps", "L4 bulk throughput (1 stream)", "Gbit/s", "higher"),
    ("l4_bulk_cpu_pct", "… proxy CPU during the bulk run", "% of a core", "info"),
    ("rss_idle", "RSS idle (after warm-up)", "KiB", "lower"),
    ("rss_conns", "RSS with the idle keep-alive connections", "KiB", "lower"),
    ("kib_per_conn", "Memory per idle keep-alive connection", "KiB/conn", "lower"),
]
PROXIES = ["tioga", "tioga+log", "haproxy", "nginx", "pingora"]
PEERS = ["haproxy", "nginx", "pingora"]


def fmt(v):
    if v is None:
        return "–"
    a = abs(v)
    if a >= 1000:
        return f"{v:,.0f}"
    if a >= 100:
        return f"{v:.0f}"
    if a >= 10:
        return f"{v:.1f}"
    if a >= 1:
        return f"{v:.2f}"
    return f"{v:.3f}"


def load_raw(path):
    """rep measure proxy value [note...] lines → {measure: {proxy: {rep: value}}}."""
    raw, notes = {}, []
    for line in open(path):
        parts = line.rstrip("\n").split("\t")
        if len(parts) < 4 or parts[0] == "rep":
            continue
        rep, measure, proxy, value = int(parts[0]), parts[1], parts[2], parts[3]
        if value not in ("", "nan"):
            raw.setdefault(measure, {}).setdefault(proxy, {})[rep] = float(value)
        if len(parts) > 4 and parts[4]:
            notes.append((rep, measure, proxy, parts[4]))
    return raw, notes


def median_or_none(xs):
    return statistics.median(xs) if xs else None


def per_rep_ratio(raw, measure, a, b):
    """Median over repetitions of a/b, taking both from the same repetition."""
    ra = raw.get(measure, {}).get(a, {})
    rb = raw.get(measure, {}).get(b, {})
    ratios = [ra[r] / rb[r] for r in ra if r in rb and rb[r]]
    return median_or_none(ratios), len(ratios)


def idle_rows(raw):
    """The rows of the `idle` measure present in RAW: `idle_kib:PROTO:N` (KiB per idle
    connection) and `idle_closed:PROTO:N` (RSS growth left after the N closed)."""
    rows = []
    protos = {"h1": "HTTP/1.1 keep-alive", "l4": "L4 TCP", "h2": "h2 (TLS)"}
    keys = sorted((k for k in raw if k.startswith("idle_")),
                  key=lambda k: (k.split(":")[1], int(k.split(":")[2]), k))
    for key in keys:
        what, proto, n = key.split(":")
        name = f"{protos.get(proto, proto)}, {int(n):,} conns"
        if what == "idle_kib":
            rows.append((key, f"Memory per idle connection: {name}", "KiB/conn", "lower"))
        else:
            rows.append((key, f"RSS growth left after the {int(n):,} close: {proto}",
                         "KiB", "lower"))
    return rows


def load_meta(path):
    """`key<TAB>value` lines; `version:NAME`, `order:REP` and `method` collect."""
    meta = {"versions": {}, "orders": {}, "method": []}
    for line in open(path):
        key, _, value = line.rstrip("\n").partition("\t")
        if key.startswith("version:"):
            meta["versions"][key[8:]] = value
        elif key.startswith("order:"):
            meta["orders"][key[6:]] = value
        elif key == "method":
            meta["method"].append(value)
        else:
            meta[key] = value
    return meta


def cmd_report(args):
    raw, notes = load_raw(args.raw)
    meta = load_meta(args.meta)
    reps = sorted({r for m in raw.values() for p in m.values() for r in p})
    out = []
    w = out.append
    w("# Tioga side-by-side benchmark\n")
    w(f"Generated by `bench/run.sh` on {meta['date']} ({meta['reps']} repetition(s), "
      f"{meta['duration']} per load run).\n")
    if meta.get("smoke") == "1":
        w("> **Smoke run** — too short and too few repetitions to quote; it only shows the "
          "harness works.\n")
    w("## Machine and versions\n")
    w(f"- CPU: {meta['cpu']} — `nproc` = {meta['nproc']}; kernel {meta['kernel']}")
    w(f"- load average before / after: {meta['load_before']} / {meta['load_after']}; "
      f"CPU time stolen by the hypervisor during the run: {meta.get('steal', '?')}")
    w("- placement: each proxy on CPU 0 with one worker (`taskset -c 0`); load generator, "
      "backends (one nginx, two `return 200` servers, 100-byte body) and `iperf3 -s` on "
      "CPU 1; everything on 127.0.0.1")
    for k, v in meta["versions"].items():
        w(f"- {k}: {v}")
    w(f"- CPU measure rate: **{meta['rate']} req/s** in total "
      f"(h2load `--h1 -t1 -c50 --rps={meta['rps_per_client']}` for {meta['duration']}; "
      f"{meta['rate_origin']})")
    w("")
    w("## Results (medians)\n")
    w("Ratios are Tioga/peer, computed within each repetition, then the median of those "
      "ratios. For *higher is better* rows a ratio below 1 means Tioga is slower; for "
      "*lower is better* rows a ratio above 1 means Tioga costs more. `direct` is the load "
      "generator straight at one backend, no proxy (load generator and backend then "
      "share CPU 1), for reference only.\n")
    head = ["measure", "unit", "better"] + PROXIES + ["direct"] + [f"tioga/{p}" for p in PEERS]
    w("| " + " | ".join(head) + " |")
    w("|" + "---|" * len(head))
    for key, label, unit, better in MEASURES + idle_rows(raw):
        row = [label, unit, better]
        for p in PROXIES + ["direct"]:
            row.append(fmt(median_or_none(list(raw.get(key, {}).get(p, {}).values()))))
        for p in PEERS:
            ratio, n = per_rep_ratio(raw, key, "tioga", p)
            row.append(f"{ratio:.2f}" if ratio is not None and better != "info" else "–")
        w("| " + " | ".join(row) + " |")
    w("")
    ratio, n = per_rep_ratio(raw, "l7_ka_rps", "tioga+log", "tioga")
    if ratio is not None:
        w(f"Access log cost: `tioga+log` / `tioga` L7 keep-alive throughput = **{ratio:.2f}** "
          f"(median of {n} per-repetition ratio(s)); `tioga+log` writes a JSON access log "
          "to a file in the temp dir.\n")
    w("Notes on the method:\n")
    for line in meta["method"]:
        w(f"- {line}")
    w("")
    if notes:
        w("## Anomalies recorded during the run\n")
        for rep, measure, proxy, note in notes:
            w(f"- rep {rep}, {measure}, {proxy}: {note}")
        w("")
    w("<details><summary>Raw numbers per repetition</summary>\n")
    head = ["measure", "rep"] + PROXIES + ["direct"]
    w("| " + " | ".join(head) + " |")
    w("|" + "---|" * len(head))
    for key, label, unit, _ in MEASURES + idle_rows(raw):
        for rep in reps:
            row = [f"{key} ({unit})", str(rep)]
            for p in PROXIES + ["direct"]:
                row.append(fmt(raw.get(key, {}).get(p, {}).get(rep)))
            w("| " + " | ".join(row) + " |")
    w("\nOrder of the proxies within each repetition (rotated each time):\n")
    for rep, order in sorted(meta.get("orders", {}).items(), key=lambda kv: int(kv[0])):
        w(f"- rep {rep}: {order}")
    w("\n</details>\n")
    with open(args.out, "w") as f:
        f.write("\n".join(out))


# ----------------------------------------------------------------------------- main


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("ports")
    p.add_argument("n", type=int)
    p.set_defaults(fn=cmd_ports)
    p = sub.add_parser("cpu-us")
    p.add_argument("pids", nargs="+")
    p.set_defaults(fn=cmd_cpu_us)
    p = sub.add_parser("rss")
    p.add_argument("pids", nargs="+")
    p.set_defaults(fn=cmd_rss)
    p = sub.add_parser("steal")
    p.add_argument("file")
    p.set_defaults(fn=cmd_steal)
    p = sub.add_parser("mem")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--conns", type=int, default=1000)
    p.add_argument("--settle", type=float, default=1.0)
    p.add_argument("pids", nargs="+")
    p.set_defaults(fn=cmd_mem)
    p = sub.add_parser("idle")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--conns", type=int, default=1000)
    p.add_argument("--settle", type=float, default=2.0)
    p.add_argument("pids", nargs="+")
    p.set_defaults(fn=cmd_idle)
    p = sub.add_parser("h2idle")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--conns", type=int, default=1000)
    p.add_argument("--settle", type=float, default=2.0)
    p.add_argument("pids", nargs="+")
    p.set_defaults(fn=cmd_h2idle)
    for name, fn in (("wrk", cmd_wrk), ("h2load", cmd_h2load), ("iperf", cmd_iperf)):
        p = sub.add_parser(name)
        p.add_argument("file")
        p.set_defaults(fn=fn)
    p = sub.add_parser("report")
    p.add_argument("--raw", required=True)
    p.add_argument("--meta", required=True)
    p.add_argument("--out", required=True)
    p.set_defaults(fn=cmd_report)
    args = ap.parse_args()
    args.fn(args)


if __name__ == "__main__":
    main()
