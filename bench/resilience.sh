#!/usr/bin/env bash
# What the resilient-upstream features cost on the request path: Tioga with the
# contract's "Resilient upstreams" keys configured on its pool (balance: p2c_ewma,
# outlier, panic_threshold, slow_start, retry_on, retry_budget, max_conns + queue set
# high enough never to queue, sticky) against the same pool without them, plus an A/A
# control (a second plain process). `discovery` is left out: it needs a DNS server and
# costs nothing per request (a background lookup).
#
# Sticky: like a browser, the load carries the cookie Tioga set (half the clients
# carry backend A's id, half B's, as a returning user population would), so answers
# set no cookie, which is what `sticky` does (and HAProxy's `cookie ... insert`) once a
# client has a valid one. `resilient-new` is the same pool under load that never
# carries it, every request a first visit that gets a Set-Cookie: the worst case,
# reported beside. Every variant gets the same requests (the cookie header included).
#
# CPU µs per request at a fixed 5000 req/s (two `h2load --h1 -c25 --rps=100`, one per
# cookie; utime+stime of the proxy from /proc/PID/stat), Tioga with one worker pinned
# to CPU 0, load and two nginx `return 200` backends on CPU 1; variants interleaved
# over REPS repetitions, ratios within each repetition, medians. Appends a section to
# $OUT (bench/results.md).
#
#   bash bench/resilience.sh
#   REPS=1 DURATION=3s BUILD=0 bash bench/resilience.sh     # smoke run
set -euo pipefail

REPS=${REPS:-5}
DURATION=${DURATION:-10s}
SECS=${DURATION%s}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUT=${OUT:-$ROOT/bench/results.md}
LOG_NAME=resilience
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"

need nginx:nginx nghttp2-client:h2load
[[ ${BUILD:-1} == 1 ]] && bash "$ROOT/examples/pgo_build.sh"
TIOGA=${TIOGA:-$ROOT/target/release/tioga}

bench_temp tioga-resilience

backends 1

RESILIENT="balance: p2c_ewma
    outlier: {consecutive_failures: 5, base_ejection: 30s, max_ejected: 50%}
    panic_threshold: 50%
    slow_start: 30s
    retry_on: [connect_failure, reset, 502, 503, 504]
    retry_budget: {ratio: 20%, min_per_second: 10}
    max_conns: 10000
    queue: {size: 1000, timeout: 2s}
    sticky: {cookie: srv, max_age: 1h}"

# CALLGRIND=1: instructions per request instead of CPU time (repeatable on a loaded
# machine): each variant runs alone under `valgrind --tool=callgrind`, instrumented only
# for N requests (the same two halves of load, cookies included) after a warm-up, and
# prints Ir/request and the ratios. Appends nothing.
#   CALLGRIND=1 N=4000 BUILD=0 bash bench/resilience.sh
if [[ ${CALLGRIND:-0} == 1 ]]; then
  N=${N:-4000}
  # The sticky ids as Tioga computes them (src/upstream/sticky.rs).
  read -r -a IDS <<<"$(python3 -c "
import hmac, hashlib
k = hashlib.sha256(b'tioga sticky\0web\0srv').digest()
print(' '.join(hmac.new(k, f'127.0.0.1:{p}'.encode(), hashlib.sha256).hexdigest()[:16] for p in ($BACKEND_A, $BACKEND_B)))")"
  declare -A IR
  for v in plain resilient resilient-new; do
    port=$(free_port)
    extra=""; [[ $v == resilient* ]] && extra=$RESILIENT
    cat >"$TMP/$v.yaml" <<YAML
server: {threads: 1, pid_file: $TMP/$v.pid, upgrade_sock: $TMP/$v.sock}
pools:
  web:
    backends: [127.0.0.1:$BACKEND_A, 127.0.0.1:$BACKEND_B]
    $extra
listeners:
  http: {protocol: http, bind: 127.0.0.1:$port, routes: [{pool: web}]}
YAML
    RUST_LOG=error valgrind --tool=callgrind --instr-atstart=no \
      --callgrind-out-file="$TMP/$v.cg" "$TIOGA" -c "$TMP/$v.yaml" >"$TMP/$v.log" 2>&1 &
    vp=$!; PIDS+=($vp)
    for _ in $(seq 600); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
    name=srv; [[ $v == resilient-new ]] && name=new
    run() { # requests-per-half out-prefix
      local i pids=()
      for i in 0 1; do
        h2load --h1 -t1 -c5 -n "$1" -H "cookie: $name=${IDS[$i]}" \
          "http://127.0.0.1:$port/" >"$2.$i" 2>&1 & pids+=($!)
      done
      wait "${pids[@]}"
    }
    run 500 "$TMP/warm"
    callgrind_control -i on "$vp" >/dev/null
    run $((N / 2)) "$TMP/$v.h2"
    callgrind_control -i off "$vp" >/dev/null
    callgrind_control -d "$vp" >/dev/null
    kill -INT "$vp"; wait "$vp" 2>/dev/null || true
    ok=$(awk '/^requests:/ {s += $8} END {print s}' "$TMP/$v.h2.0" "$TMP/$v.h2.1")
    total=$(callgrind_annotate "$TMP/$v.cg".* 2>/dev/null |
      awk '/PROGRAM TOTALS/ && !done {gsub(",", "", $1); print $1; done = 1}')
    IR[$v]=$((total / ok))
    log "$v: $ok requests, $total Ir, ${IR[$v]} Ir/request"
  done
  python3 -c "print('resilient / plain: %.3f, resilient-new / plain: %.3f' % (${IR[resilient]} / ${IR[plain]}, ${IR[resilient-new]} / ${IR[plain]}))"
  exit 0
fi

declare -A PORT PID
start() { # name pool-extra
  local name=$1 port
  port=$(free_port); PORT[$name]=$port
  cat >"$TMP/$name.yaml" <<YAML
server: {threads: 1, pid_file: $TMP/$name.pid, upgrade_sock: $TMP/$name.sock}
admin: {bind: 127.0.0.1:$(free_port)}
pools:
  web:
    backends: [127.0.0.1:$BACKEND_A, 127.0.0.1:$BACKEND_B]
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
start resilient-new "$RESILIENT"

# The two sticky ids, as Tioga sets them (bounded: p2c draws each backend soon).
IDS=()
for _ in $(seq 200); do
  id=$(curl -s -o /dev/null -D - "http://127.0.0.1:${PORT[resilient]}/" |
    tr -d '\r' | sed -n 's/^[Ss]et-[Cc]ookie: srv=\([0-9a-f]*\);.*/\1/p')
  [[ -n $id && ! " ${IDS[*]} " =~ " $id " ]] && IDS+=("$id")
  (( ${#IDS[@]} == 2 )) && break
done
(( ${#IDS[@]} == 2 )) || { log "did not see both sticky ids: ${IDS[*]}"; exit 1; }
log "sticky ids: ${IDS[*]}"

# `load VARIANT H2LOAD-ARGS...`: both halves of the load at once; prints the requests
# that succeeded. resilient-new's clients send a cookie of another name, so that the
# requests are the same size and none carries a valid id.
load() {
  local v=$1 i name pids=() n=0
  shift
  name=srv; [[ $v == resilient-new ]] && name=new
  for i in 0 1; do
    taskset -c 1 h2load --h1 -t1 -c25 -H "cookie: $name=${IDS[$i]}" "$@" \
      "http://127.0.0.1:${PORT[$v]}/" >"$TMP/h2load.$i" 2>/dev/null & pids+=($!)
  done
  wait "${pids[@]}"
  for i in 0 1; do
    n=$((n + $(awk '/^requests:/ {print $8}' "$TMP/h2load.$i")))
  done
  echo "$n"
}

ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
HZ=$(getconf CLK_TCK)
declare -A CPU
VARIANTS=(plain resilient plain2 resilient-new)
for rep in $(seq "$REPS"); do
  order=("${VARIANTS[@]:rep%4}" "${VARIANTS[@]:0:rep%4}")
  for v in "${order[@]}"; do
    load "$v" -n 2500 >/dev/null # warm-up
    t0=$(ticks "${PID[$v]}")
    n=$(load "$v" --rps=100 -D "$SECS")
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
new = ratio("resilient-new", "plain")
fmt = lambda xs: ", ".join(f"{x:.3f}" for x in xs)
with open(out, "a") as f:
    f.write("\n## Resilient upstreams: CPU per request (`bench/resilience.sh`)\n\n")
    f.write(f"{reps} interleaved repetitions, fixed 5000 req/s, proxy CPU µs/request; the resilient pool "
            "has p2c_ewma, outlier, panic_threshold, slow_start, retry_on (all five), retry_budget, "
            "max_conns + queue and sticky configured; the load carries the sticky cookie "
            "(resilient-new: it never does, every answer sets one).\n\n")
    f.write("| variant | CPU µs/req (median) |\n|---|---|\n")
    for v in ["plain", "resilient", "plain2", "resilient-new"]:
        f.write(f"| {v} | {med([d[f'{v},{r}'] for r in R]):.1f} |\n")
    f.write(f"\n- resilient / plain: **{med(res):.3f}** (per rep: {fmt(res)})\n")
    f.write(f"- resilient-new / plain (no client keeps the cookie): **{med(new):.3f}** "
            f"(per rep: {fmt(new)})\n")
    f.write(f"- A/A control, plain2 / plain (the noise): **{med(aa):.3f}** (per rep: {fmt(aa)})\n")
PY
log "appended to $OUT"
