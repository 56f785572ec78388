#!/usr/bin/env bash
# UDP rows of the benchmark: Tioga's `protocol: udp` listener against nginx's stream
# module (`listen ... udp`), each with ONE worker pinned to CPU 0; two UDP echo
# backends and the load (examples/udp_bench.rs) on CPU 1; all on 127.0.0.1. Appends a
# section to the report. bench/run.sh calls it at its end; it also runs alone:
#
#   bash bench/udp.sh                         # appends to bench/results.md
#   REPS=1 DURATION=3s bash bench/udp.sh      # smoke run
#
# Environment: REPS, DURATION, OUT, BUILD (as bench/run.sh), TIOGA (the binary; default
# target/release/tioga), CLIENTS (concurrent flows of the load, default 100), FLOWS
# (idle flows of the memory measure, default 10000), UDP_BENCH (the load tool), KEEP_TMP.
#
# Measures, per repetition, on freshly started proxies:
#   - requests/s: CLIENTS flows, each one 64-byte request at a time (the next once the
#     answer is back; 200 ms without one counts as lost), for DURATION; answers per s.
#   - CPU µs per datagram: the same load paced at a fixed rate (half the slower proxy's
#     rate in repetition 1, rounded down to 1000); (utime+stime of the proxy) / (2 ×
#     answers): a request and its answer are two datagrams relayed.
#   - bytes per idle flow: RSS before and after FLOWS flows (opened 100 at a time), each
#     one answered request, left idle (both proxies keep a flow for 30 s); delta / flows
#     answered.

set -euo pipefail

REPS=${REPS:-5}
DURATION=${DURATION:-10s}
CLIENTS=${CLIENTS:-100}
FLOWS=${FLOWS:-10000}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH=$ROOT/bench
OUT=${OUT:-$BENCH/results.md}
CARGO=${CARGO:-cargo}
TIOGA=${TIOGA:-$ROOT/target/release/tioga}
TOOL=${UDP_BENCH:-$ROOT/target/bare/release/examples/udp_bench}
PROXY_CPU=0
LOAD_CPU=1

LOG_NAME=bench-udp
# shellcheck source=bench/lib.sh
source "$BENCH/lib.sh"

[[ $REPS =~ ^[1-9][0-9]*$ ]] || die "REPS must be a positive integer (got '$REPS')"
[[ $DURATION =~ ^([1-9][0-9]*)s?$ ]] || die "DURATION must be seconds, e.g. 10s (got '$DURATION')"
SECS=${BASH_REMATCH[1]}
[[ -e /usr/lib/nginx/modules/ngx_stream_module.so ]] ||
  die "nginx's stream module is missing: apt-get install nginx libnginx-mod-stream"

if [[ ${BUILD:-1} == 1 ]]; then
  log "building examples/udp_bench (release)"
  (cd "$ROOT" && CARGO_TARGET_DIR="$ROOT/target/bare" "$CARGO" build --release --quiet --example udp_bench)
fi
[[ -x $TIOGA ]] || die "no Tioga binary at $TIOGA (make build, or set TIOGA)"
[[ -x $TOOL ]] || die "no $TOOL (run with BUILD=1)"

bench_temp tioga-bench-udp
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
# Each proxy holds a socket per flow towards its backend; the load tool one per flow.
(($(ulimit -n) >= FLOWS + 1000)) || die "ulimit -n $(ulimit -n) is too low for FLOWS=$FLOWS"

tool() { timeout --kill-after=5 $((SECS + 60)) taskset -c "$LOAD_CPU" "$TOOL" "$@"; }
RAW=$TMP/raw.tsv
: >"$RAW"

read -r ECHO_A ECHO_B < <(py ports 2)
start echo-a "$LOAD_CPU" "$TOOL" echo "127.0.0.1:$ECHO_A"
start echo-b "$LOAD_CPU" "$TOOL" echo "127.0.0.1:$ECHO_B"

declare -A PORT PID
start_tioga() {
  local ports
  read -r -a ports < <(py ports 2)
  PORT[tioga]=${ports[0]}
  cat >"$TMP/tioga.yaml" <<EOF
server: {threads: 1, pid_file: $TMP/tioga.pid, upgrade_sock: $TMP/tioga.sock, grace_period: 1s, graceful_shutdown_timeout: 1s}
admin: {bind: "127.0.0.1:${ports[1]}"}
pools:
  echo:
    backends: ["127.0.0.1:$ECHO_A", "127.0.0.1:$ECHO_B"]
listeners:
  udp:
    protocol: udp
    bind: "127.0.0.1:${PORT[tioga]}"
    pool: echo
    session_timeout: 30s
EOF
  "$TIOGA" -c "$TMP/tioga.yaml" -t >/dev/null || die "tioga config invalid"
  start tioga "$PROXY_CPU" "$TIOGA" -c "$TMP/tioga.yaml"
  PID[tioga]=$LAST_PID
}
start_nginx() {
  PORT[nginx]=$(py ports 1)
  cat >"$TMP/nginx.conf" <<EOF
load_module /usr/lib/nginx/modules/ngx_stream_module.so;
worker_processes 1;
daemon off;
pid $TMP/nginx.pid;
error_log $TMP/nginx.error.log crit;
worker_rlimit_nofile $(ulimit -n);
events { worker_connections $((FLOWS * 2 + 1000)); }
stream {
    upstream echo {
        server 127.0.0.1:$ECHO_A;
        server 127.0.0.1:$ECHO_B;
    }
    server {
        listen 127.0.0.1:${PORT[nginx]} udp;
        proxy_pass echo;
        proxy_timeout 30s;
    }
}
EOF
  nginx -t -q -p "$TMP/" -e "$TMP/nginx.error.log" -c "$TMP/nginx.conf" || die "nginx config invalid"
  start nginx "$PROXY_CPU" nginx -p "$TMP/" -e "$TMP/nginx.error.log" -c "$TMP/nginx.conf"
  PID[nginx]=$LAST_PID
}
answers() { # PROXY — until one request through it is answered (10 s at most)
  local out
  for _ in $(seq 50); do
    out=$(tool load "127.0.0.1:${PORT[$1]}" 1 1) || true
    [[ ${out%% *} -gt 0 ]] 2>/dev/null && return 0
  done
  return 1
}
stop() { # PROXY
  stop_pids "${PID[$1]}"
  forget "${PID[$1]}"
}

RATE=${UDP_RATE:-}
for ((rep = 1; rep <= REPS; rep++)); do
  order=(tioga nginx)
  ((rep % 2)) || order=(nginx tioga)
  log "repetition $rep/$REPS: order ${order[*]}"
  start_tioga
  start_nginx
  for p in tioga nginx; do answers "$p" || die "$p does not answer over UDP: $(tail -n 5 "$TMP/$p.out")"; done
  for p in "${order[@]}"; do
    log "  datagrams/s: $p"
    read -r ok lost < <(tool load "127.0.0.1:${PORT[$p]}" "$CLIENTS" "$SECS")
    record "$rep" udp_rps "$p" "$((ok / SECS))" "$( ((lost == 0)) || echo "$lost requests lost")"
    sleep 1
  done
  if [[ -z $RATE ]]; then
    RATE=$(awk -F'\t' '$2 == "udp_rps" && $4 != "" { if (m == "" || $4 + 0 < m) m = $4 + 0 } END { print int(m / 2 / 1000) * 1000 }' "$RAW")
    ((RATE >= 1000)) || RATE=1000
    log "CPU measure rate: $RATE requests/s"
  fi
  for p in "${order[@]}"; do
    log "  cpu: $p"
    read -r -a pids < <(pids_of "${PID[$p]}")
    read -r before _ < <(py cpu-us "${pids[@]}")
    read -r ok lost < <(tool load "127.0.0.1:${PORT[$p]}" "$CLIENTS" "$SECS" "$RATE")
    read -r after _ < <(py cpu-us "${pids[@]}")
    note=""
    ((ok * 100 >= RATE * SECS * 97)) || note="did not sustain the rate: $((ok / SECS)) of $RATE/s"
    ((lost == 0)) || note+="${note:+; }$lost requests lost"
    record "$rep" udp_cpu_us "$p" "$(python3 -c "print(round(($after - $before) / (2 * max($ok, 1)), 3))")" "$note"
    sleep 1
  done
  for p in "${order[@]}"; do
    log "  memory per idle flow: $p"
    read -r -a pids < <(pids_of "${PID[$p]}")
    before=$(py rss "${pids[@]}")
    opened=$(tool flows "127.0.0.1:${PORT[$p]}" "$FLOWS")
    after=$(py rss "${pids[@]}")
    note=""
    ((opened == FLOWS)) || note="only $opened of $FLOWS flows answered"
    if ((opened == 0)); then
      record "$rep" udp_bytes_per_flow "$p" "" "no flow answered"
      stop "$p"
      continue
    fi
    record "$rep" udp_bytes_per_flow "$p" "$(((after - before) * 1024 / opened))" "$note"
    stop "$p" # its flows' sockets hold ephemeral ports the next proxy's flows need
  done
done

python3 - "$RAW" "$OUT" "$REPS" "$SECS" "$CLIENTS" "$FLOWS" "$RATE" <<'EOF'
import statistics, sys
raw, out, reps, secs, clients, flows, rate = sys.argv[1:]
rows = [l.rstrip("\n").split("\t") for l in open(raw) if l.strip()]
val = {}
notes = []
for rep, measure, proxy, value, note in rows:
    if value:
        val[(int(rep), measure, proxy)] = float(value)
    if note:
        notes.append(f"- rep {rep}, {measure}, {proxy}: {note}")
def med(xs):
    return statistics.median(xs) if xs else None
def fmt(v):
    return "—" if v is None else (f"{v:,.0f}" if v >= 100 else f"{v:.2f}")
measures = [("udp_rps", "requests/s, each a datagram in and its answer out (more is better)"),
            ("udp_cpu_us", f"proxy CPU µs per datagram at {int(rate):,} requests/s (less is better)"),
            ("udp_bytes_per_flow", f"bytes per idle flow, {int(flows):,} flows (less is better)")]
lines = ["", "## UDP: Tioga against nginx's stream module", "",
         f"{reps} repetition(s) of {secs} s; {clients} client flows, one 64-byte request at a time each, "
         "to two UDP echo backends, round robin; one worker each on CPU 0, load and backends on CPU 1 "
         "(bench/udp.sh). Ratios Tioga/nginx within each repetition, then the median.", "",
         "| measure | Tioga | nginx | Tioga/nginx |", "|---|---|---|---|"]
for m, label in measures:
    t = [val[k] for k in val if k[1] == m and k[2] == "tioga"]
    n = [val[k] for k in val if k[1] == m and k[2] == "nginx"]
    ratios = [val[(r, m, "tioga")] / val[(r, m, "nginx")] for r in range(1, int(reps) + 1)
              if (r, m, "tioga") in val and val.get((r, m, "nginx"))]
    lines.append(f"| {label} | {fmt(med(t))} | {fmt(med(n))} | {'—' if not ratios else f'{med(ratios):.2f}×'} |")
if notes:
    lines += ["", "Anomalies:", ""] + notes
if int(reps) < 5 or int(secs) < 10:
    lines += ["", "*Smoke run (fewer than 5 repetitions or shorter than 10 s): not a measurement.*"]
with open(out, "a") as f:
    f.write("\n".join(lines) + "\n")
print("\n".join(lines))
EOF
log "appended the UDP section to $OUT"
