#!/usr/bin/env bash
# Side-by-side benchmark: Tioga against HAProxy, nginx and a bare Pingora proxy
# (examples/bare_pingora.rs), each with ONE worker pinned to CPU 0; the load generators,
# the backends (one nginx serving two `return 200` servers) and iperf3 on CPU 1; all on
# 127.0.0.1 with free ports. Writes bench/results.md.
#
#   bash bench/run.sh                      # or: make bench
#   REPS=1 DURATION=3s bash bench/run.sh   # quick smoke run of the harness
#
# Environment:
#   REPS      repetitions, interleaved across proxies (default 5)
#   DURATION  length of each load run, "10s" or "10" (default 10s)
#   RATE      total req/s of the fixed-rate CPU measure (default: chosen after the first
#             repetition's keep-alive runs: half the slowest proxy's throughput, rounded
#             down to 1000, at most 30000)
#   CONNS     idle keep-alive connections of the memory measure (default 1000)
#   OUT       the report (default bench/results.md)
#   KEEP_TMP  1 = keep the temp dir (configs, logs, raw outputs) for inspection; it is
#             always kept when the run fails
#   MEASURES  the measures of the main table, in order (default: mem l7_ka pair l7_close
#             cpu l4_conn l4_bulk idle; `cpu` needs `l7_ka` before it unless RATE is given)
#   SECTIONS  the sections run after the main table (default: h2 udp resilience)
#   IDLE_CONNS   connection counts of the `idle` measure (default "1000 100000"); each is
#             lowered to what the open-file limit allows (the bench raises the hard limit
#             when it may), and the row says the count actually held
#   IDLE_PROTOS  protocols of the `idle` measure: h1 (L7 keep-alive), l4 (TCP listener)
#             (default "h1 l4"); `MEASURES=idle` runs it alone
#   BUILD     0 = use the binaries already built (target/release/tioga,
#             target/bare/release/examples/bare_pingora); default 1: build them
#
# Each repetition starts every proxy afresh, measures memory first (on the fresh
# processes), then runs each measure for every proxy in turn, in an order rotated from
# one repetition to the next. Ratios Tioga/peer are computed within each repetition;
# the report shows their median.

set -euo pipefail

REPS=${REPS:-5}
DURATION=${DURATION:-10s}
RATE=${RATE:-}
CONNS=${CONNS:-1000}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH=$ROOT/bench
OUT=${OUT:-$BENCH/results.md}
CARGO=${CARGO:-cargo}
PROXY_CPU=0 # the proxy under test
LOAD_CPU=1  # load generators, backends, iperf3, the memory probe

LOG_NAME=bench
# shellcheck source=bench/lib.sh
source "$BENCH/lib.sh"

[[ $REPS =~ ^[1-9][0-9]*$ ]] || die "REPS must be a positive integer (got '$REPS')"
[[ $DURATION =~ ^([1-9][0-9]*)s?$ ]] || die "DURATION must be seconds, e.g. 10s (got '$DURATION')"
SECS=${BASH_REMATCH[1]}
[[ -z $RATE || $RATE =~ ^[1-9][0-9]*$ ]] || die "RATE must be a positive integer"
[[ $CONNS =~ ^[1-9][0-9]*$ ]] || die "CONNS must be a positive integer"
(($(nproc) >= 2)) || die "needs at least 2 CPUs (proxy on CPU 0, load on CPU 1)"

# ---------------------------------------------------------------- dependencies

# Debian packages, installed only when missing ("package:file-or-command").
need haproxy:haproxy nginx:nginx wrk:wrk nghttp2-client:h2load iperf3:iperf3 \
  curl:curl cmake:cmake gcc:cc python3:python3 \
  libnginx-mod-stream:/usr/lib/nginx/modules/ngx_stream_module.so
PY=$(command -v /usr/bin/python3 || command -v python3)
HELP=$BENCH/bench.py

# ---------------------------------------------------------------------- build

# Tioga as `make build` makes it (profile-guided unless PGO=0); bare Pingora as a plain
# release build with the same profile settings (fat LTO), in its own target dir so the
# two builds' flags never rebuild each other.
if [[ ${BUILD:-1} == 1 ]]; then
  log "building tioga (make build: examples/pgo_build.sh) and examples/bare_pingora (release)"
  bash "$ROOT/examples/pgo_build.sh"
  (cd "$ROOT" && CARGO_TARGET_DIR="$ROOT/target/bare" "$CARGO" build --release --quiet --example bare_pingora)
fi
TIOGA=${TIOGA:-$ROOT/target/release/tioga}
BARE=$ROOT/target/bare/release/examples/bare_pingora
TIOGA_BUILD=$(cat "$ROOT/target/pgo/outcome" 2>/dev/null || echo "unknown (built outside make build)")
# What is measured: the source state now (just after the build), and the binary's date.
TIOGA_VERSION="$(sed -n 's/^version = "\(.*\)"/\1/p' "$ROOT/Cargo.toml" | head -n 1), git $(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo '?'), binary built $(date -u -r "$TIOGA" '+%Y-%m-%d %H:%M UTC'), $TIOGA_BUILD"

# ------------------------------------------------------------ temp dir, cleanup

# every process this script started is in PIDS (their children are found at cleanup)
bench_temp tioga-bench

# Raise the open-file limit: CONNS client connections plus their upstream side, and the
# `idle` measure's counts (twice for L4); the hard limit too where that is allowed.
IDLE_CONNS=${IDLE_CONNS:-1000 100000}
IDLE_PROTOS=${IDLE_PROTOS:-h1 l4}
idle_max=0
for n in $IDLE_CONNS; do
  [[ $n =~ ^[1-9][0-9]*$ ]] || die "IDLE_CONNS must be positive integers (got '$n')"
  ((n > idle_max)) && idle_max=$n
done
ulimit -Hn $((2 * idle_max + 2000)) 2>/dev/null || true
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
NOFILE=$(ulimit -n)
# The most idle connections a proxy can hold here at PER descriptors each.
idle_cap() { local per=$1 n=$2 cap=$(((NOFILE - 1000) / $1)); echo $((n < cap ? n : cap)); }
MAXCONN=$(idle_cap 2 "$idle_max"); ((MAXCONN > 8000)) || MAXCONN=8000
WORKER_CONNS=$((2 * MAXCONN + 100)); ((WORKER_CONNS > 16384)) || WORKER_CONNS=16384
(($(ulimit -n) >= 2 * CONNS + 1000)) || die "ulimit -n $(ulimit -n) is too low for CONNS=$CONNS"

# ------------------------------------------------------------------- helpers

RAW=$TMP/raw.tsv
META=$TMP/meta.tsv
printf 'rep\tmeasure\tproxy\tvalue\tnote\n' >"$RAW"
: >"$META"
meta() { printf '%s\t%s\n' "$1" "$2" >>"$META"; }

# Bounded runs of the load tools, pinned to the load CPU.
BOUND=$((SECS + 30))
load() { timeout --kill-after=5 "$BOUND" taskset -c "$LOAD_CPU" "$@"; }

# ------------------------------------------------------------------ backends

read -r BACKEND_A BACKEND_B IPERF_PORT < <(py ports 3)
render "$BENCH/nginx-backend.conf.in" "$TMP/nginx-backend.conf" \
  TMP="$TMP" BACKEND_A="$BACKEND_A" BACKEND_B="$BACKEND_B" NOFILE="$NOFILE" \
  WORKER_CONNS="$WORKER_CONNS"
nginx -t -q -p "$TMP/" -e "$TMP/nginx-backend.error.log" -c "$TMP/nginx-backend.conf" \
  || die "backend nginx config invalid"
start nginx-backend "$LOAD_CPU" nginx -p "$TMP/" -e "$TMP/nginx-backend.error.log" \
  -c "$TMP/nginx-backend.conf"
if ! wait_port "$BACKEND_A" "$LAST_PID" || ! wait_port "$BACKEND_B" "$LAST_PID"; then
  die "backend nginx did not start: $(cat "$TMP/nginx-backend.out")"
fi
start iperf3-server "$LOAD_CPU" iperf3 -s -B 127.0.0.1 -p "$IPERF_PORT"
wait_port "$IPERF_PORT" "$LAST_PID" || die "iperf3 -s did not start"
log "backends: http 127.0.0.1:$BACKEND_A, 127.0.0.1:$BACKEND_B; iperf3 127.0.0.1:$IPERF_PORT"

# ------------------------------------------------------------------- proxies

declare -A PID HTTP TCP TCP_IPERF ADMIN
# "direct" = the load generator straight at a backend, no proxy: a reference only.
HTTP[direct]=$BACKEND_A
TCP_IPERF[direct]=$IPERF_PORT

# check_http PORT — 4 requests must all be 200 and reach both backends (round robin).
check_http() {
  local port=$1 seen="" body
  for _ in 1 2 3 4; do
    body=$(curl -fsS --max-time 5 "http://127.0.0.1:$port/") || return 1
    seen+=${body:0:9}
  done
  [[ $seen == *backend-a* && $seen == *backend-b* ]]
}

start_tioga() { # NAME ACCESS_LOG_LINE
  local name=$1 access=$2 cfg=$TMP/$1.yaml ports
  read -r -a ports < <(py ports 4)
  HTTP[$name]=${ports[0]} TCP[$name]=${ports[1]} TCP_IPERF[$name]=${ports[2]}
  ADMIN[$name]=${ports[3]}
  render "$BENCH/tioga.yaml.in" "$cfg" TMP="$TMP" NAME="${name/+/-}" ACCESS_LOG="$access" \
    ADMIN_PORT="${ADMIN[$name]}" HTTP_PORT="${HTTP[$name]}" TCP_PORT="${TCP[$name]}" \
    TCP_IPERF_PORT="${TCP_IPERF[$name]}" BACKEND_A="$BACKEND_A" BACKEND_B="$BACKEND_B" \
    IPERF_PORT="$IPERF_PORT"
  "$TIOGA" -c "$cfg" -t >"$TMP/$name.check" 2>&1 || die "tioga config invalid: $(cat "$TMP/$name.check")"
  start "$name" "$PROXY_CPU" "$TIOGA" -c "$cfg"
}

start_haproxy() {
  local cfg=$TMP/haproxy.cfg ports
  read -r -a ports < <(py ports 3)
  HTTP[haproxy]=${ports[0]} TCP[haproxy]=${ports[1]} TCP_IPERF[haproxy]=${ports[2]}
  render "$BENCH/haproxy.cfg.in" "$cfg" TMP="$TMP" HTTP_PORT="${ports[0]}" \
    TCP_PORT="${ports[1]}" TCP_IPERF_PORT="${ports[2]}" BACKEND_A="$BACKEND_A" \
    BACKEND_B="$BACKEND_B" IPERF_PORT="$IPERF_PORT" MAXCONN="$MAXCONN"
  haproxy -q -c -f "$cfg" || die "haproxy config invalid"
  start haproxy "$PROXY_CPU" haproxy -db -f "$cfg"
}

start_nginx() {
  local cfg=$TMP/nginx-proxy.conf ports
  read -r -a ports < <(py ports 3)
  HTTP[nginx]=${ports[0]} TCP[nginx]=${ports[1]} TCP_IPERF[nginx]=${ports[2]}
  render "$BENCH/nginx-proxy.conf.in" "$cfg" TMP="$TMP" HTTP_PORT="${ports[0]}" \
    TCP_PORT="${ports[1]}" TCP_IPERF_PORT="${ports[2]}" BACKEND_A="$BACKEND_A" \
    BACKEND_B="$BACKEND_B" IPERF_PORT="$IPERF_PORT" NOFILE="$NOFILE" \
    WORKER_CONNS="$WORKER_CONNS"
  nginx -t -q -p "$TMP/" -e "$TMP/nginx-proxy.error.log" -c "$cfg" || die "nginx config invalid"
  start nginx "$PROXY_CPU" nginx -p "$TMP/" -e "$TMP/nginx-proxy.error.log" -c "$cfg"
}

start_pingora() {
  HTTP[pingora]=$(py ports 1)
  TMPDIR=$TMP start pingora "$PROXY_CPU" "$BARE" "127.0.0.1:${HTTP[pingora]}" \
    "127.0.0.1:$BACKEND_A" "127.0.0.1:$BACKEND_B"
}

ACCESS_LOG_FILE=$TMP/tioga-access.log
start_all() {
  start_tioga tioga "# access_log: off (Tioga's default when the key is absent)"
  PID[tioga]=$LAST_PID
  start_tioga tioga+log "access_log: {target: $ACCESS_LOG_FILE, format: json}"
  PID[tioga+log]=$LAST_PID
  start_haproxy; PID[haproxy]=$LAST_PID
  start_nginx; PID[nginx]=$LAST_PID
  # Bare Pingora only when a measure compares with it (`MEASURES=idle` needs no build).
  if ((NEED_PINGORA)); then
    start_pingora
    PID[pingora]=$LAST_PID
  fi
  local p
  for p in tioga tioga+log haproxy nginx pingora; do
    [[ -n ${PID[$p]:-} ]] || continue
    check_ready "$p"
  done
}

# check_ready PROXY — listening on all its ports, and answering through both listeners.
check_ready() {
  local p=$1 port
  for port in "${HTTP[$p]}" ${TCP[$p]:-} ${TCP_IPERF[$p]:-} ${ADMIN[$p]:-}; do
    wait_port "$port" "${PID[$p]}" || die "$p did not listen on $port: $(tail -n 20 "$TMP/$p.out")"
  done
  check_http "${HTTP[$p]}" || die "$p: HTTP check through its L7 listener failed"
  if [[ -n ${TCP[$p]:-} ]]; then
    check_http "${TCP[$p]}" || die "$p: HTTP check through its TCP listener failed"
  fi
}

# restart PROXY — a new process in its place (tioga, haproxy or nginx), so that a
# reading starts from nothing an earlier one left: allocators keep freed memory, and
# RSS growth measured over it would come out low, even negative.
restart() {
  local p=$1
  stop_pids "${PID[$p]}"
  forget "${PID[$p]}"
  case $p in
    tioga) start_tioga tioga "# access_log: off (Tioga's default when the key is absent)" ;;
    haproxy) start_haproxy ;;
    nginx) start_nginx ;;
    *) die "restart: $p" ;;
  esac
  PID[$p]=$LAST_PID
  check_ready "$p"
}

stop_all() {
  local p pids=()
  for p in tioga tioga+log haproxy nginx pingora; do
    if [[ -n ${PID[$p]:-} ]]; then pids+=("${PID[$p]}"); fi
  done
  stop_pids "${pids[@]}"
  forget "${pids[@]}"
}

# ------------------------------------------------------------------ measures

# Each takes REP PROXY and records its numbers; a failed tool run records an anomaly.

measure_mem() {
  local rep=$1 p=$2 out idle loaded alive bad
  # shellcheck disable=SC2046 # pids_of's words are pids
  if ! out=$(timeout 120 taskset -c "$LOAD_CPU" "$PY" "$HELP" mem --port "${HTTP[$p]}" \
    --conns "$CONNS" $(pids_of "${PID[$p]}") 2>"$TMP/mem-$p.err"); then
    record "$rep" rss_idle "$p" "" "memory probe failed: $(tail -n 1 "$TMP/mem-$p.err")"
    return
  fi
  read -r idle loaded alive bad <<<"$out"
  record "$rep" rss_idle "$p" "$idle"
  record "$rep" rss_conns "$p" "$loaded"
  local note=""
  ((alive == CONNS)) || note="only $alive of $CONNS connections still open at the reading"
  ((bad == 0)) || note+="${note:+; }$bad non-200 answers"
  record "$rep" kib_per_conn "$p" "$("$PY" -c "print(round(($loaded - $idle) / $CONNS, 3))")" "$note"
}

# Memory per idle connection at each of IDLE_CONNS, for each of IDLE_PROTOS, and the
# RSS growth left once they close.
measure_idle() {
  local rep=$1 p=$2 proto n want port
  for proto in $IDLE_PROTOS; do
    for want in $IDLE_CONNS; do
      restart "$p"
      case $proto in
        # Two descriptors for h1 too: Tioga's coalescing keeps a duplicate of each
        # client socket (docs/performance.md).
        h1) n=$(idle_cap 2 "$want") port=${HTTP[$p]} ;;
        l4) n=$(idle_cap 2 "$want") port=${TCP[$p]} ;;
        *) die "IDLE_PROTOS: unknown protocol '$proto' (h1, l4)" ;;
      esac
      # shellcheck disable=SC2046 # pids_of's words are pids
      record_idle "$rep" "$proto" "$n" "$want" "$p" idle --port "$port" --conns "$n" \
        $(pids_of "${PID[$p]}")
      sleep 1
    done
  done
}

# wrk_run REP PROXY PORT MEASURE_PREFIX [EXTRA wrk ARGS...] — records rps (and p99).
wrk_run() {
  local rep=$1 p=$2 port=$3 what=$4 out=$TMP/wrk-$4-$2-$1.txt rps p99 total non2xx errs note=""
  shift 4
  if ! load wrk -t1 -c50 -d"${SECS}s" --latency "$@" "http://127.0.0.1:$port/" >"$out" 2>&1; then
    record "$rep" "${what}_rps" "$p" "" "wrk failed: $(tail -n 2 "$out" | tr '\n' ' ')"
    return
  fi
  read -r rps p99 total non2xx errs < <(py wrk "$out")
  ((non2xx == 0)) || note="$non2xx non-2xx answers of $total"
  ((errs == 0)) || note+="${note:+; }$errs socket errors of $total requests"
  case $what in
    l7_ka) record "$rep" l7_ka_rps "$p" "$rps" "$note"; record "$rep" l7_ka_p99 "$p" "$p99" ;;
    l7_close) record "$rep" l7_close_rps "$p" "$rps" "$note" ;;
    l4_conn) record "$rep" l4_conn_rate "$p" "$rps" "$note" ;;
  esac
}

measure_l7_ka() {
  local rep=$1 p=$2
  load wrk -t1 -c50 -d1s "http://127.0.0.1:${HTTP[$p]}/" >/dev/null 2>&1 || true # warm-up
  [[ $p == tioga+log ]] && : >"$ACCESS_LOG_FILE"
  wrk_run "$rep" "$p" "${HTTP[$p]}" l7_ka
  if [[ $p == tioga+log ]]; then
    # The access log must really have been written (and say how much was dropped).
    local lines dropped
    lines=$(wc -l <"$ACCESS_LOG_FILE")
    dropped=$(curl -fsS "http://127.0.0.1:${ADMIN[$p]}/metrics" |
      awk '/^tioga_access_log_dropped_total/ {print $2}')
    log "  tioga+log: $lines access-log lines written, ${dropped:-?} dropped since start"
    ((lines > 0)) || record "$rep" l7_ka_rps "$p" "" "access log is empty"
    [[ ${dropped:-0} == 0 ]] || record "$rep" access_log "$p" "" "${dropped} lines dropped"
    : >"$ACCESS_LOG_FILE"
  fi
}
# Tioga and bare Pingora saturated at the same moment, both on CPU 0 (the scheduler gives
# each about half of it), which one starts first swapped every repetition. One-at-a-time
# keep-alive runs on this kind of VM drift by up to ±20% between identical runs; two
# runs that share the same seconds see the same machine, so the drift cancels out of
# their ratio.
measure_pair() {
  local rep=$1 first=tioga second=pingora p rps p99 total non2xx errs note pids=()
  ((rep % 2)) || { first=pingora; second=tioga; }
  for p in "$first" "$second"; do
    load wrk -t1 -c50 -d"${SECS}s" --latency "http://127.0.0.1:${HTTP[$p]}/" \
      >"$TMP/pair-$p-$rep.txt" 2>&1 &
    pids+=($!)
  done
  local failed=0
  for pid in "${pids[@]}"; do wait "$pid" || failed=1; done
  for p in tioga pingora; do
    if ((failed)); then
      record "$rep" l7_pair_rps "$p" "" "wrk failed: $(tail -n 2 "$TMP/pair-$p-$rep.txt" | tr '\n' ' ')"
      continue
    fi
    read -r rps p99 total non2xx errs < <(py wrk "$TMP/pair-$p-$rep.txt")
    note=""
    ((non2xx == 0)) || note="$non2xx non-2xx answers of $total"
    ((errs == 0)) || note+="${note:+; }$errs socket errors of $total requests"
    record "$rep" l7_pair_rps "$p" "$rps" "$note"
  done
}
measure_l7_close() { wrk_run "$1" "$2" "${HTTP[$2]}" l7_close -H 'Connection: close'; }
measure_l4_conn() { wrk_run "$1" "$2" "${TCP[$2]}" l4_conn -H 'Connection: close'; }

measure_cpu() {
  local rep=$1 p=$2 out=$TMP/h2load-$2-$1.txt pids before after sys_before sys_after ok bad rps
  read -r -a pids < <(pids_of "${PID[$p]}")
  read -r before sys_before < <(py cpu-us "${pids[@]}")
  if ! load h2load --h1 -t1 -c50 --rps="$RPS_PER_CLIENT" -D "$SECS" \
    "http://127.0.0.1:${HTTP[$p]}/" >"$out" 2>&1; then
    record "$rep" cpu_us_per_req "$p" "" "h2load failed: $(tail -n 2 "$out" | tr '\n' ' ')"
    return
  fi
  read -r after sys_after < <(py cpu-us "${pids[@]}")
  read -r ok bad rps < <(py h2load "$out")
  local note=""
  if "$PY" -c "import sys; sys.exit(0 if $rps >= 0.97 * $RATE else 1)"; then :; else
    note="did not sustain the rate: $rps req/s of $RATE"
  fi
  ((bad == 0)) || note+="${note:+; }$bad failed/errored/non-2xx requests"
  ((ok > 0)) || { record "$rep" cpu_us_per_req "$p" "" "no request completed"; return; }
  record "$rep" cpu_us_per_req "$p" "$("$PY" -c "print(round(($after - $before) / $ok, 3))")" "$note"
  ((after > before)) && record "$rep" cpu_sys_pct "$p" \
    "$("$PY" -c "print(round(100 * ($sys_after - $sys_before) / ($after - $before), 1))")"
  return 0
}

measure_l4_bulk() {
  local rep=$1 p=$2 out=$TMP/iperf-$2-$1.json pids=() before=0 after t0 t1
  [[ -n ${PID[$p]:-} ]] && read -r -a pids < <(pids_of "${PID[$p]}")
  ((${#pids[@]})) && read -r before _ < <(py cpu-us "${pids[@]}")
  t0=$(date +%s%N)
  if ! load iperf3 -c 127.0.0.1 -p "${TCP_IPERF[$p]}" -t "$SECS" -J >"$out" 2>&1; then
    record "$rep" l4_bulk_gbps "$p" "" "iperf3 failed: $(grep -o '"error":.*' "$out" | head -n 1)"
    return
  fi
  t1=$(date +%s%N)
  record "$rep" l4_bulk_gbps "$p" "$(py iperf "$out")"
  # The proxy's CPU over the run, in % of one core (Tioga busy-polls spliced directions).
  if ((${#pids[@]})); then
    read -r after _ < <(py cpu-us "${pids[@]}")
    record "$rep" l4_bulk_cpu_pct "$p" "$("$PY" -c "print(round(100 * ($after - $before) * 1000 / ($t1 - $t0), 1))")"
  fi
}

# Who takes part in which measure ("direct": no proxy, reference only).
declare -A WHO=(
  [mem]="tioga haproxy nginx pingora"
  [l7_ka]="tioga tioga+log haproxy nginx pingora direct"
  [pair]="tioga" # runs Tioga and bare Pingora together
  [l7_close]="tioga haproxy nginx pingora direct"
  [cpu]="tioga haproxy nginx pingora"
  [l4_conn]="tioga haproxy nginx"
  [l4_bulk]="tioga haproxy nginx direct"
  [idle]="tioga haproxy nginx"
)
read -r -a MEASURE_ORDER <<<"${MEASURES:-mem l7_ka pair l7_close cpu l4_conn l4_bulk idle}"
BASE_ORDER=(tioga tioga+log haproxy nginx pingora direct)
NEED_PINGORA=0
for m in "${MEASURE_ORDER[@]}"; do
  if [[ " ${WHO[$m]:-} " == *" pingora "* ]]; then NEED_PINGORA=1; fi
done

# The fixed rate: given, or half the slowest proxy's keep-alive throughput in rep 1.
choose_rate() {
  [[ -n $RATE ]] && return 0
  local slowest
  slowest=$(awk -F'\t' '$1 == 1 && $2 == "l7_ka_rps" && $4 != "" &&
      $3 ~ /^(tioga|haproxy|nginx|pingora)$/ {
      if (min == "" || $4 + 0 < min) min = $4 + 0 } END { print int(min) }' "$RAW")
  ((slowest > 0)) || die "no keep-alive result to choose the CPU-measure rate from"
  RATE=$((slowest / 2 / 1000 * 1000))
  ((RATE <= 30000)) || RATE=30000
  ((RATE >= 1000)) || RATE=1000
  RATE_ORIGIN="chosen after repetition 1: half the slowest proxy's keep-alive throughput ($slowest req/s), rounded down to 1000, at most 30000"
  log "CPU measure rate: $RATE req/s"
}
RATE_ORIGIN="given by RATE"

# -------------------------------------------------------------------- the run

meta date "$(date -u '+%Y-%m-%d %H:%M UTC')"
meta load_before "$(cut -d' ' -f1-3 /proc/loadavg)"
py steal "$TMP/steal.json" # start counting hypervisor steal
log "load average now: $(cut -d' ' -f1-3 /proc/loadavg) (others using the machine skew results)"

for ((rep = 1; rep <= REPS; rep++)); do
  # Rotate the order each repetition so that no proxy always runs first or last.
  shift_by=$(((rep - 1) % ${#BASE_ORDER[@]}))
  order=("${BASE_ORDER[@]:shift_by}" "${BASE_ORDER[@]:0:shift_by}")
  meta "order:$rep" "${order[*]}"
  log "repetition $rep/$REPS: order ${order[*]}"
  start_all
  for m in "${MEASURE_ORDER[@]}"; do
    if [[ $m == cpu ]]; then
      choose_rate
      RPS_PER_CLIENT=$((RATE / 50))
    fi
    for p in "${order[@]}"; do
      [[ " ${WHO[$m]} " == *" $p "* ]] || continue
      log "  $m: $p"
      "measure_$m" "$rep" "$p"
      sleep 1 # let closing connections settle between runs
    done
  done
  stop_all
done

# ------------------------------------------------------------------ the report

meta load_after "$(cut -d' ' -f1-3 /proc/loadavg)"
meta steal "$(py steal "$TMP/steal.json")"
meta reps "$REPS"
meta duration "${SECS}s"
meta smoke "$( ((REPS < 5 || SECS < 10)) && echo 1 || echo 0)"
meta cpu "$(lscpu | sed -n 's/^Model name: *//p' | head -n 1)"
meta nproc "$(nproc)"
meta kernel "$(uname -r)"
meta rate "$RATE"
meta rps_per_client "${RPS_PER_CLIENT:-}"
meta rate_origin "$RATE_ORIGIN"
meta version:tioga "$TIOGA_VERSION"
meta version:pingora "$(awk '/^name = "pingora-core"$/ {getline; gsub(/"/, "", $3); print $3}' "$ROOT/Cargo.lock")"
meta version:rustc "$(rustc --version 2>/dev/null || echo '?')"
meta version:haproxy "$(haproxy -v | head -n 1)"
meta version:nginx "$(nginx -v 2>&1)"
meta version:wrk "$(wrk -v 2>&1 | head -n 1 || true)"
meta version:h2load "$(h2load --version)"
meta version:iperf3 "$(iperf3 --version | head -n 1)"
meta method "L7 keep-alive: \`wrk -t1 -c50 -d${SECS}s --latency\` after a 1 s warm-up; p99 from wrk's latency distribution."
meta method "L7 keep-alive, paired with bare Pingora: Tioga and bare Pingora each under \`wrk -t1 -c50 -d${SECS}s\` at the same time, both on CPU 0 (each gets about half of it), start order swapped every repetition; the ratio is immune to the machine's drift between runs, which moves the one-at-a-time row by up to ±20%."
meta method "L7 new connection per request: the same with \`-H 'Connection: close'\` (each proxy keeps its upstream connections)."
meta method "CPU: (utime+stime of the proxy's processes from /proc/PID/stat, delta over the h2load run, in µs) / requests completed; /proc ticks are 10 ms. A proxy below 97 % of the rate is listed under anomalies."
meta method "L4 connection rate: \`wrk -t1 -c50 -H 'Connection: close'\` through the TCP listener (one client and one backend connection per request); bare Pingora has no TCP listener."
meta method "L4 bulk: \`iperf3 -c -t ${SECS}\`, one stream, through a TCP listener whose pool is the single \`iperf3 -s\` (control and data connections both proxied); client and server share CPU 1. Tioga runs with its default \`busy_poll: 50us\` (a spliced direction polls up to 50 µs before it sleeps; the CPU row below shows what that costs); HAProxy with its default, no \`busy-polling\`."
meta method "Memory: 200 warm-up requests, VmRSS summed over the proxy's processes (nginx master + worker), then $CONNS connections opened one after the other, one keep-alive request each, left idle; KiB/conn = (RSS_$CONNS − RSS_idle) / $CONNS. Measured first in each repetition, on freshly started proxies."
meta method "Idle connections (\`idle\`): as Memory, for each protocol (h1: the L7 listener; l4: the TCP listener, whose pool is the two HTTP backends, so each idle client connection also holds one to a backend) and each count in IDLE_CONNS ($IDLE_CONNS), opened from source addresses 127.0.0.1, .2, … (5,000 each); each reading on a freshly started proxy; KiB/conn = (RSS_N − RSS_before) / N; 'RSS growth left' = RSS 4 s after all N closed − RSS_before. Open-file limit of this run: $NOFILE."
meta method "Same work for all: Host passed unchanged, X-Forwarded-For/-Proto/-Host added (HAProxy \`option forwardfor\` + set-header, nginx proxy_set_header, bare Pingora in upstream_request_filter); no logging; nginx \`keepalive_requests\` lifted (its default closes a client connection every 1000 requests). Tioga runs one thread per listener plus its admin endpoint, all pinned to CPU 0."
"$PY" "$HELP" report --raw "$RAW" --meta "$META" --out "$OUT"
log "wrote $OUT"
# The HTTP/2 and TLS rows (Tioga and HAProxy), appended to the same report.
[[ " ${SECTIONS:-h2 udp resilience} " == *" h2 "* ]] &&
  TIOGA="$TIOGA" IDLE_CONNS="$IDLE_CONNS" REPS=$REPS DURATION="${SECS}s" OUT=$OUT BUILD=0 \
    bash "$BENCH/h2.sh"
# UDP rows (Tioga's udp listener against nginx's stream module): their own script and section.
[[ " ${SECTIONS:-h2 udp resilience} " == *" udp "* ]] &&
  REPS=$REPS DURATION=$DURATION OUT=$OUT TIOGA=$TIOGA BUILD=${BUILD:-1} bash "$BENCH/udp.sh"
# Resilient-upstream features on vs off (CPU per request); appends its own section.
[[ " ${SECTIONS:-h2 udp resilience} " == *" resilience "* ]] &&
  BUILD=0 REPS="$REPS" DURATION="${SECS}s" OUT="$OUT" bash "$ROOT/bench/resilience.sh"
exit 0
