#!/usr/bin/env bash
# Instructions per h2 request, counted by callgrind: the proxy (Tioga or HAProxy) under
# `valgrind --tool=callgrind`, configured as bench/h2.sh configures it (TLS 1.3, ECDSA
# P-256, h2 by ALPN, one nginx with two `return 200` backends). After a warm-up the
# counters are zeroed, `h2load -c CLIENTS -m10 -n N` runs, and the counters are dumped:
# the dump holds N requests plus CLIENTS TLS handshakes. Instruction counts are not CPU
# time (no cache misses, no syscall cost), but they repeat under a loaded machine,
# which makes them the before/after measure for a change.
#
#   bash bench/callgrind-h2.sh tioga    # target/release/tioga (cargo build --release)
#   bash bench/callgrind-h2.sh haproxy
#
# Environment: N (default 20000), CLIENTS (default 5), TIOGA (binary), OUT (the
# callgrind file, default /tmp/callgrind-h2.PROXY.out), H1=1 (`h2load --h1` instead).

set -euo pipefail

PROXY=${1:?usage: callgrind-h2.sh tioga|haproxy}
N=${N:-20000}
CLIENTS=${CLIENTS:-5}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH=$ROOT/bench
TIOGA=${TIOGA:-${CARGO_TARGET_DIR:-$ROOT/target}/release/tioga}
OUT=${OUT:-/tmp/callgrind-h2.$PROXY.out}
PROTO=(-m10)
[[ ${H1:-0} == 1 ]] && PROTO=(--h1)
LOG_NAME=callgrind-h2
# shellcheck source=bench/lib.sh
source "$BENCH/lib.sh"

bench_temp callgrind-h2
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
  -subj /CN=localhost -addext subjectAltName=DNS:localhost \
  -keyout "$TMP/h2-key.pem" -out "$TMP/h2-cert.pem" 2>/dev/null
cat "$TMP/h2-cert.pem" "$TMP/h2-key.pem" >"$TMP/h2-haproxy.pem"
backends
PORT=$(py ports 1)

VG=(valgrind --tool=callgrind --callgrind-out-file="$OUT" --separate-threads=no)
case $PROXY in
tioga)
  render "$BENCH/tioga-h2.yaml.in" "$TMP/tioga.yaml" TMP="$TMP" PORT="$PORT" \
    BACKEND_A="$BACKEND_A" BACKEND_B="$BACKEND_B" NOFILE=20000 WORKER_CONNS=16384
  "${VG[@]}" "$TIOGA" -c "$TMP/tioga.yaml" >"$TMP/proxy.out" 2>&1 &
  ;;
haproxy)
  render "$BENCH/haproxy-h2.cfg.in" "$TMP/haproxy.cfg" MAXCONN=8000 TMP="$TMP" PORT="$PORT" \
    BACKEND_A="$BACKEND_A" BACKEND_B="$BACKEND_B" NOFILE=20000 WORKER_CONNS=16384
  "${VG[@]}" haproxy -db -f "$TMP/haproxy.cfg" >"$TMP/proxy.out" 2>&1 &
  ;;
*) die "unknown proxy $PROXY" ;;
esac
VPID=$!
PIDS+=("$VPID")
# Under valgrind a proxy takes a while to listen: up to 60 s.
wait_port "$PORT" "$VPID" 600 || die "$PROXY did not listen: $(cat "$TMP/proxy.out")"
URL=https://127.0.0.1:$PORT/
h2load -c"$CLIENTS" "${PROTO[@]}" -n 2000 "$URL" >"$TMP/warm.txt" 2>&1
callgrind_control -z "$VPID" >/dev/null 2>&1
h2load -c"$CLIENTS" "${PROTO[@]}" -n "$N" "$URL" >"$TMP/run.txt" 2>&1
callgrind_control -d "$VPID" >/dev/null 2>&1
read -r ok bad _ < <(py h2load "$TMP/run.txt")
grep -E '^(requests|status codes):' "$TMP/run.txt" >&2
# The dump is the last file callgrind wrote for this pid.
dump=$(ls -t "$OUT" "$OUT".[0-9]* 2>/dev/null | head -n 1 || true)
total=$(callgrind_annotate "$dump" 2>/dev/null | sed -n 's/^\([0-9,]*\) (100.0%).*PROGRAM TOTALS.*/\1/p' | tr -d ,)
log "$PROXY: $ok ok, $bad bad; $total instructions; $((total / ok)) per request (incl. $CLIENTS handshakes); dump $dump"
echo "$PROXY $ok $total $((total / ok)) $dump"
