#!/usr/bin/env bash
# Instructions per keep-alive request, counted by callgrind (repeatable on a busy
# machine, unlike wall-clock CPU): Tioga (one worker thread) under
# `valgrind --tool=callgrind` serves N1, then N2 sequential requests through ONE
# keep-alive connection to an nginx backend; (Ir(N2) - Ir(N1)) / (N2 - N1) is the
# cost of one request with start-up and shutdown cancelled out.
#
#   bash bench/callgrind_ka.sh [TIOGA_BINARY]    # default target/release/tioga
#   N1=500 N2=2500 bash bench/callgrind_ka.sh
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TIOGA=${1:-$ROOT/target/release/tioga}
N1=${N1:-500}
N2=${N2:-2500}
LOG_NAME=callgrind-ka
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"
bench_temp tioga-callgrind

backends

run() { # N — prints the instructions Tioga executed serving N requests
  local n=$1 listen
  listen=$(free_port)
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
    bind: 127.0.0.1:$listen
    routes:
      - pool: web
YAML
  valgrind --tool=callgrind --callgrind-out-file="$TMP/cg.%p" "$TIOGA" -c "$TMP/tioga.yaml" \
    2>"$TMP/vg-$n.err" &
  local vg=$!
  # Under valgrind a proxy takes a while to listen: up to 30 s.
  wait_port "$listen" "$vg" 300 || { kill "$vg"; die "tioga did not listen: $(cat "$TMP/vg-$n.err")"; }
  python3 - "$listen" "$n" <<'PY'
import socket, sys
port, n = int(sys.argv[1]), int(sys.argv[2])
s = socket.create_connection(("127.0.0.1", port))
req = f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode()
for _ in range(n):
    s.sendall(req)
    buf = b""
    while b"\r\n\r\n" not in buf:
        buf += s.recv(65536)
    head, _, body = buf.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head
    need = int([l.split(b":")[1] for l in head.split(b"\r\n") if l.lower().startswith(b"content-length")][0])
    while len(body) < need:
        body += s.recv(65536)
s.close()
PY
  kill -TERM "$vg"
  wait "$vg" || true
  sed -n 's/.*Collected : \([0-9]*\).*/\1/p' "$TMP/vg-$n.err" | awk '{s += $1} END {print s}'
}

a=$(run "$N1")
b=$(run "$N2")
echo "Ir($N1) = $a, Ir($N2) = $b, per request: $(((b - a) / (N2 - N1)))"
