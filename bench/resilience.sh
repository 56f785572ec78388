#!/usr/bin/env bash
# What the resilient-upstream features cost on the request path: Tioga with the
# contract's "Resilient upstreams" keys configured on its pool (balance: p2c_ewma,
# outlier, panic_threshold, slow_start, retry_on, retry_budget, max_conns + queue set
# high enough never to queue, sticky: the load sends no cookie, so every answer sets
# one) against the same pool without them, plus an A/A control (a second plain
# process). `discovery` is left out: it needs a DNS server and costs nothing per
# request (a background lookup). CPU µs per
# request at a fixed 5000 req/s (`h2load --h1 -c50 --rps=100`, utime+stime of the
# proxy from /proc/PID/stat), Tioga with one worker pinned to CPU 0, load and two nginx
# `return 200` backends on CPU 1; variants interleaved over REPS repetitions, ratios
# within each repetition, medians. Appends a section to $OUT (bench/results.md).
#
#   bash bench/resilience.sh
#   REPS=1 DURATION=3s BUILD=0 bash bench/resilience.sh     # smoke run
set -euo pipefail

REPS=${REPS:-5}
DURATION=${DURATION:-10s}
SECS=${DURATION%s}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUT=${OUT:-$ROOT/bench/results.md}
log() { printf '[resilience %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

for pair in nginx:nginx nghttp2-client:h2load; do
  command -v "${pair#*:}" >/dev/null || { apt-get update -qq && apt-get install -y -qq "${pair%%:*}"; }
done
[[ ${BUILD:-1} == 1 ]] && bash "$ROOT/examples/pgo_build.sh"
TIOGA=${TIOGA:-$ROOT/target/release/tioga}

TMP=$(mktemp -d /tmp/tioga-resilience.XXXXXX)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$TMP"; }
trap cleanup EXIT INT TERM

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 200); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.05; done; log "port $1 never opened"; exit 1; }

A=$(free_port); B=$(free_port)
body=$(printf 'x%.0s' $(seq 99))
cat >"$TMP/backend.conf" <<NGINX
daemon off; worker_processes 1; pid $TMP/backend.pid; error_log $TMP/backend.err;
events { worker_connections 4096; }
http { access_log off; keepalive_requests 1000000;
  server { listen 127.0.0.1:$A; location / { return 200 "$body\n"; } }
  server { listen 127.0.0.1:$B; location / { return 200 "$body\n"; } } }
NGINX
taskset -c 1 nginx -c "$TMP/backend.conf" -p "$TMP" 2>/dev/null & PIDS+=($!)
wait_port "$A"; wait_port "$B"

RESILIENT="balance: p2c_ewma
    outlier: {consecutive_failures: 5, base_ejection: 30s, max_ejected: 50%}
    panic_threshold: 50%
    slow_start: 30s
    retry_on: [connect_failure, reset, 502, 503, 504]
    retry_budget: {ratio: 20%, min_per_second: 10}
    max_conns: 10000
    queue: {size: 1000, timeout: 2s}
    sticky: {cookie: srv, max_age: 1h}"

declare -A PORT PID
start() { # name pool-extra
  local name=$1 port
  port=$(free_port); PORT[$name]=$port
  cat >"$TMP/$name.yaml" <<YAML
server: {threads: 1, pid_file: $TMP/$name.pid, upgrade_sock: $TMP/$name.sock}
admin: {bind: 127.0.0.1:$(free_port)}
pools:
  web:
    backends: [127.0.0.1:$A, 127.0.0.1:$B]
    $2
listeners:
  http: {protocol: http, bind: 127.0.0.1:$port, routes: [{pool: web}]}
YAML
  RUST_LOG=error taskset -c 0 "$TIOGA" -c "$TMP/$name.yaml" >"$TMP/$name.log" 2>&1 & PIDS+=($!)
  PID[$name]=$!
  wait_port "$port"
}
start plain ""
start resilient "$RESILIENT"
start plain2 ""

ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
HZ=$(getconf CLK_TCK)
declare -A CPU
VARIANTS=(plain resilient plain2)
for rep in $(seq "$REPS"); do
  order=("${VARIANTS[@]:rep%3}" "${VARIANTS[@]:0:rep%3}")
  for v in "${order[@]}"; do
    taskset -c 1 h2load --h1 -t1 -c50 -n 5000 "http://127.0.0.1:${PORT[$v]}/" >/dev/null 2>&1 # warm-up
    t0=$(ticks "${PID[$v]}")
    n=$(taskset -c 1 h2load --h1 -t1 -c50 --rps=100 -D "$SECS" "http://127.0.0.1:${PORT[$v]}/" 2>/dev/null |
      awk '/^requests:/ {print $8}')
    t1=$(ticks "${PID[$v]}")
    CPU[$v,$rep]=$(python3 -c "print(($t1-$t0)*1e6/$HZ/max(1,$n))")
    log "rep $rep $v: ${CPU[$v,$rep]} µs/req ($n requests)"
  done
done

python3 - "$REPS" "$OUT" "${!CPU[@]}" -- "${CPU[@]}" <<'PY'
import statistics, sys
reps, out = int(sys.argv[1]), sys.argv[2]
rest = sys.argv[3:]; sep = rest.index("--")
d = dict(zip(rest[:sep], map(float, rest[sep+1:])))
R = range(1, reps + 1)
ratio = lambda a, b: [d[f"{a},{r}"] / d[f"{b},{r}"] for r in R]
med = statistics.median
res, aa = ratio("resilient", "plain"), ratio("plain2", "plain")
fmt = lambda xs: ", ".join(f"{x:.3f}" for x in xs)
with open(out, "a") as f:
    f.write("\n## Resilient upstreams: CPU per request (`bench/resilience.sh`)\n\n")
    f.write(f"{reps} interleaved repetitions, fixed 5000 req/s, proxy CPU µs/request; the resilient pool "
            "has p2c_ewma, outlier, panic_threshold, slow_start, retry_on (all five), retry_budget, "
            "max_conns + queue and sticky configured.\n\n")
    f.write("| variant | CPU µs/req (median) |\n|---|---|\n")
    for v in ["plain", "resilient", "plain2"]:
        f.write(f"| {v} | {med([d[f'{v},{r}'] for r in R]):.1f} |\n")
    f.write(f"\n- resilient / plain: **{med(res):.3f}** (per rep: {fmt(res)})\n")
    f.write(f"- A/A control, plain2 / plain (the noise): **{med(aa):.3f}** (per rep: {fmt(aa)})\n")
PY
log "appended to $OUT"
