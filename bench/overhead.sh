#!/usr/bin/env bash
# What Tioga's own features cost, Tioga against Tioga: L7 keep-alive requests/s of the
# same proxy (one worker pinned to CPU 0; wrk and two nginx `return 200` backends on
# CPU 1) in four variants, interleaved over REPS repetitions:
#   off    no admin endpoint (metrics not recorded), no access log, no filters
#   obs    admin endpoint (metrics recorded) + JSON access log to a file
#   plain  admin endpoint, no filters (as `make bench` runs Tioga)
#   3f     admin endpoint, the route with three header filters
# Two measures per variant: keep-alive requests/s (`wrk -t1 -c50`), and proxy CPU µs per
# request at a fixed 5000 req/s (`h2load --h1 -c50 --rps=100`; utime+stime from
# /proc/PID/stat), which is far steadier on a shared VM. Ratios obs/off and 3f/plain
# are computed within each repetition; the report gives their median. Writes
# bench/overhead.md.
#
#   bash bench/overhead.sh            # or: make bench-overhead
#   REPS=1 DURATION=3s bash bench/overhead.sh
set -euo pipefail

REPS=${REPS:-5}
DURATION=${DURATION:-10s}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUT=${OUT:-$ROOT/bench/overhead.md}
SECS=${DURATION%s}
log() { printf '[overhead %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

for pair in nginx:nginx wrk:wrk nghttp2-client:h2load; do
  command -v "${pair#*:}" >/dev/null || { apt-get update -qq && apt-get install -y -qq "${pair%%:*}"; }
done
[[ ${BUILD:-1} == 1 ]] && (cd "$ROOT" && cargo build --release --quiet --bin tioga)
TIOGA=$ROOT/target/release/tioga

TMP=$(mktemp -d /tmp/tioga-overhead.XXXXXX)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$TMP"; }
trap cleanup EXIT INT TERM

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 200); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.05; done; log "port $1 never opened"; exit 1; }

# Two fast backends (100-byte body) in one nginx on CPU 1.
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

declare -A PORT PID
start() { # name admin(yes/no) access_log(yes/no) filters(yes/no)
  local name=$1 port admin=""
  port=$(free_port); PORT[$name]=$port
  [[ $2 == yes ]] && admin="admin: {bind: 127.0.0.1:$(free_port)}"
  local alog="" filters=""
  [[ $3 == yes ]] && alog="access_log: {target: $TMP/$name.access.log, format: json}"
  [[ $4 == yes ]] && filters="filters: [{set_request_headers: {x-env: prod}}, {remove_request_headers: [x-debug]}, {set_response_headers: {x-served-by: tioga}}]"
  cat >"$TMP/$name.yaml" <<YAML
server: {threads: 1, pid_file: $TMP/$name.pid, upgrade_sock: $TMP/$name.sock}
$admin
$alog
pools: {web: {backends: [127.0.0.1:$A, 127.0.0.1:$B]}}
listeners:
  http:
    protocol: http
    bind: 127.0.0.1:$port
    routes:
      - pool: web
        $filters
YAML
  RUST_LOG=error taskset -c 0 "$TIOGA" -c "$TMP/$name.yaml" >"$TMP/$name.log" 2>&1 & PIDS+=($!)
  PID[$name]=$!
  wait_port "$port"
}
start off no no no
start obs yes yes no
start plain yes no no
start 3f yes no yes

# CPU ticks (utime + stime) of a process.
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
HZ=$(getconf CLK_TCK)

declare -A RPS CPU
VARIANTS=(off obs plain 3f)
for rep in $(seq "$REPS"); do
  order=("${VARIANTS[@]:rep%4}" "${VARIANTS[@]:0:rep%4}")
  for v in "${order[@]}"; do
    taskset -c 1 wrk -t1 -c50 -d1s "http://127.0.0.1:${PORT[$v]}/" >/dev/null # warm-up
    r=$(taskset -c 1 wrk -t1 -c50 -d"${SECS}s" "http://127.0.0.1:${PORT[$v]}/" | awk '/Requests\/sec/ {print $2}')
    RPS[$v,$rep]=$r
    t0=$(ticks "${PID[$v]}")
    done_reqs=$(taskset -c 1 h2load --h1 -t1 -c50 --rps=100 -D "$SECS" "http://127.0.0.1:${PORT[$v]}/" 2>/dev/null |
      awk '/^requests:/ {print $8}')
    t1=$(ticks "${PID[$v]}")
    CPU[$v,$rep]=$(python3 -c "print(($t1-$t0)*1e6/$HZ/max(1,$done_reqs))")
    log "rep $rep $v: $r req/s, ${CPU[$v,$rep]} µs/req (${done_reqs} requests at the fixed rate)"
  done
done

CPUK=(); CPUV=()
for k in "${!CPU[@]}"; do CPUK+=("cpu:$k"); CPUV+=("${CPU[$k]}"); done
python3 - "$REPS" "$OUT" "${!RPS[@]}" "${CPUK[@]}" -- "${RPS[@]}" "${CPUV[@]}" <<'PY'
import statistics, sys, datetime, subprocess
reps, out = int(sys.argv[1]), sys.argv[2]
rest = sys.argv[3:]; sep = rest.index("--")
data = dict(zip(rest[:sep], map(float, rest[sep+1:])))
c = lambda name, r: data[f"cpu:{name},{r}"]
v = lambda name, r: data[f"{name},{r}"]
med = lambda xs: statistics.median(xs)
R = range(1, reps+1)
rows = [(n, med([v(n, r) for r in R]), med([c(n, r) for r in R])) for n in ["off", "obs", "plain", "3f"]]
obs = [v("obs", r) / v("off", r) for r in R]
flt = [v("3f", r) / v("plain", r) for r in R]
obs_cpu = [c("obs", r) / c("off", r) for r in R]
flt_cpu = [c("3f", r) / c("plain", r) for r in R]
cpu = subprocess.run(["sh", "-c", "grep -m1 'model name' /proc/cpuinfo | cut -d: -f2"], capture_output=True, text=True).stdout.strip()
with open(out, "w") as f:
    f.write("# What Tioga's own features cost\n\n")
    f.write(f"Generated by `bench/overhead.sh` on {datetime.datetime.utcnow():%Y-%m-%d %H:%M} UTC: {reps} interleaved repetitions, "
            f"`wrk -t1 -c50` keep-alive, Tioga with one worker on CPU 0, wrk and two nginx `return 200` backends on CPU 1 ({cpu}).\n\n")
    f.write("| variant | what | keep-alive req/s (median) | CPU µs/req at 5000 req/s (median) |\n|---|---|---|---|\n")
    what = {"off": "no admin (metrics not recorded), no access log", "obs": "admin (metrics) + JSON access log to a file",
            "plain": "admin, route without filters", "3f": "admin, route with 3 header filters"}
    for name, m, cpu_us in rows:
        f.write(f"| {name} | {what[name]} | {m:,.0f} | {cpu_us:.1f} |\n")
    fmt = lambda xs: ', '.join(f'{x:.3f}' for x in xs)
    f.write("\nRatios, median of the per-repetition ratios (requests/s: higher is better; CPU: lower is better):\n\n")
    f.write(f"- metrics + access log on / both off: requests/s **{med(obs):.3f}** (per rep: {fmt(obs)}); CPU per request **{med(obs_cpu):.3f}** (per rep: {fmt(obs_cpu)})\n")
    f.write(f"- three header filters / none: requests/s **{med(flt):.3f}** (per rep: {fmt(flt)}); CPU per request **{med(flt_cpu):.3f}** (per rep: {fmt(flt_cpu)})\n")
print(open(out).read())
PY
