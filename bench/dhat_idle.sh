#!/usr/bin/env bash
# Where the bytes of an idle connection live: Tioga (built with `--features
# system-alloc`, so that valgrind sees its allocations) under `valgrind --tool=dhat`
# holds N idle connections of PROTO (h1: keep-alive through the L7 listener; l4: the
# TCP listener; h2: over TLS 1.3 with ALPN h2, each after one request), opened by bench/bench.py's idle probe; then the heap at its peak
# (t-gmax, when the N are open) is listed by allocation site, in bytes and blocks per
# connection.
#
#   cargo build --release --features system-alloc
#   bash bench/dhat_idle.sh target/release/tioga [N] [PROTO]
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TIOGA=$1
N=${2:-1000}
PROTO=${3:-h1}
LOG_NAME=dhat-idle
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"
bench_temp tioga-dhat

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
  -subj /CN=localhost -addext subjectAltName=DNS:localhost \
  -keyout "$TMP/key.pem" -out "$TMP/cert.pem" 2>/dev/null
backends
read -r HTTP TCP H2 < <(py ports 3)
cat >"$TMP/tioga.yaml" <<YAML
server:
  threads: 1
  pid_file: $TMP/tioga.pid
  upgrade_sock: $TMP/upgrade.sock
  grace_period: 1s
  graceful_shutdown_timeout: 1s
pools:
  web:
    backends: ["127.0.0.1:$BACKEND_A", "127.0.0.1:$BACKEND_B"]
listeners:
  http:
    protocol: http
    bind: 127.0.0.1:$HTTP
    keepalive_timeout: 300s
    routes:
      - pool: web
  tcp:
    protocol: tcp
    bind: 127.0.0.1:$TCP
    pool: web
  h2:
    protocol: http
    bind: 127.0.0.1:$H2
    keepalive_timeout: 300s
    tls:
      cert: $TMP/cert.pem
      key: $TMP/key.pem
      min_version: "1.3"
    routes:
      - pool: web
YAML
valgrind --tool=dhat --dhat-out-file="$TMP/dhat.json" "$TIOGA" -c "$TMP/tioga.yaml" \
  2>"$TMP/vg.err" &
VG=$!
PIDS+=("$VG")
# Under valgrind a proxy takes a while to listen: up to 60 s.
wait_port "$HTTP" "$VG" 600 || die "tioga did not listen: $(cat "$TMP/vg.err")"
case $PROTO in
h1) probe=idle port=$HTTP ;;
l4) probe=idle port=$TCP ;;
h2) probe=h2idle port=$H2 ;;
*) die "PROTO: h1, l4 or h2" ;;
esac
python3 "$ROOT/bench/bench.py" "$probe" --port "$port" --conns "$N" --settle 3 "$VG"
kill -TERM "$VG"
wait "$VG" || true
forget "$VG"
[[ -z ${KEEP:-} ]] || cp "$TMP/dhat.json" "$KEEP"
python3 - "$TMP/dhat.json" "$N" <<'PY'
import json, re, sys
d = json.load(open(sys.argv[1]))
n = int(sys.argv[2])
ftbl = d["ftbl"]
skip = re.compile(r"alloc::|__rust|malloc|realloc|calloc|core::ptr|<alloc|hashbrown::raw|"
                  r"RawVec|bytes::bytes_mut|std::sys|vec::Vec|arc::Arc|boxed::Box|"
                  r"tokio::runtime::task::(core|raw|new_task)|::new_task|::bind$|^memalign|^posix_memalign|^alloc(_impl.*)?$|allocate_in")
def where(pp):
    names = []
    for i in pp["fs"]:
        f = ftbl[i]
        m = re.search(r": (.*?) \((.*)\)$", f)
        name = m.group(1) if m else f
        if m and name == "UnknownInlinedFun":
            # Inlined, without the function's name in the line tables: the place.
            name = re.sub(r".*/([^/]+/src/)", r"\1", m.group(2))
        if not skip.search(name) and "/rustc/" not in f:
            names.append(re.sub(r"::\{\{closure\}\}|::h[0-9a-f]{16}", "", name))
        if len(names) == 4:
            break
    return " <- ".join(names)
# Per-connection sites: at least one live block per two connections at the peak; the
# rest (start-up, the runtime, pools) does not grow with N.
pps = sorted((p for p in d["pps"] if p.get("gbk", 0) >= n / 2), key=lambda p: -p["gb"])
total = sum(p["gb"] for p in pps)
print(f"per-connection sites at t-gmax (N = {n}): {total / n:.0f} bytes per connection")
print("bytes/conn  blocks/conn  where (first frames outside the allocator)")
for p in pps:
    print(f"{p['gb'] / n:10.0f}  {p['gbk'] / n:11.2f}  {where(p)[:220]}")
PY
