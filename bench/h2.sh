#!/usr/bin/env bash
# The HTTP/2 and TLS rows of `make bench`: Tioga against HAProxy, each with ONE worker
# pinned to CPU 0, h2load and the backends (one nginx, two `return 200` servers) on
# CPU 1, all on 127.0.0.1 with free ports; TLS 1.3 with one ECDSA P-256 certificate
# (openssl) on both. bench/run.sh calls it at its end; it appends its own section to
# the report.
#
#   bash bench/h2.sh                        # alone: builds Tioga like run.sh
#   REPS=1 DURATION=3s BUILD=0 bash bench/h2.sh   # quick smoke run
#
# Measures, per repetition and proxy (order swapped every repetition):
#   h2        `h2load -t1 -c50 -m10 -D DURATION` over TLS (h2 by ALPN): req/s, and the
#             proxy's CPU (utime+stime) per request over the same run
#   h1_tls    the same with `--h1` (one request at a time per connection): the h1
#             cost to compare h2's with
#   handshake new TLS connections: `h2load -t1 -c100 -n100` (each client one request
#             on its own connection) again and again for DURATION: handshakes/s, and
#             CPU per handshake
#   idle      memory per idle h2 connection (one request each, then idle) at each count
#             of IDLE_CONNS (default "1000 100000", lowered to what the open-file limit
#             allows), and the RSS growth left once they close
# H2_MEASURES selects and orders them (default "h2 h1_tls handshake idle").
# Ratios Tioga/HAProxy are taken within each repetition; the report shows medians.
#
# Environment: REPS (default 5), DURATION (default 10s), OUT (default
# bench/results.md, appended to), BUILD (1: build Tioga as run.sh does; run.sh passes
# 0), KEEP_TMP (1: keep the temp dir).

set -euo pipefail

REPS=${REPS:-5}
DURATION=${DURATION:-10s}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH=$ROOT/bench
OUT=${OUT:-$BENCH/results.md}
PROXY_CPU=0
LOAD_CPU=1

LOG_NAME=bench-h2
# shellcheck source=bench/lib.sh
source "$BENCH/lib.sh"

[[ $REPS =~ ^[1-9][0-9]*$ ]] || die "REPS must be a positive integer (got '$REPS')"
[[ $DURATION =~ ^([1-9][0-9]*)s?$ ]] || die "DURATION must be seconds, e.g. 10s (got '$DURATION')"
SECS=${BASH_REMATCH[1]}
(($(nproc) >= 2)) || die "needs at least 2 CPUs (proxy on CPU 0, load on CPU 1)"

need haproxy:haproxy nginx:nginx nghttp2-client:h2load openssl:openssl curl:curl \
  python3:python3
PY=$(command -v /usr/bin/python3 || command -v python3)

if [[ ${BUILD:-1} == 1 ]]; then
  log "building tioga (make build: examples/pgo_build.sh)"
  bash "$ROOT/examples/pgo_build.sh"
fi
TIOGA=${TIOGA:-$ROOT/target/release/tioga}
[[ -x $TIOGA ]] || die "$TIOGA is missing: build it (make build) or run with BUILD=1"

bench_temp tioga-bench-h2
IDLE_CONNS=${IDLE_CONNS:-1000 100000}
idle_max=0
for n in $IDLE_CONNS; do
  [[ $n =~ ^[1-9][0-9]*$ ]] || die "IDLE_CONNS must be positive integers (got '$n')"
  ((n > idle_max)) && idle_max=$n
done
ulimit -Hn $((idle_max + 2000)) 2>/dev/null || true
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
NOFILE=$(ulimit -n)
# HAProxy reserves two descriptors per `maxconn` (client and server side) and refuses to
# start when the open-file limit cannot hold them, so both proxies get half the limit.
idle_cap() { local cap=$(((NOFILE - 1000) / 2)); echo $(($1 < cap ? $1 : cap)); }
MAXCONN=$(idle_cap "$idle_max"); ((MAXCONN > 8000)) || MAXCONN=8000

BOUND=$((SECS + 30))
load() { timeout --kill-after=5 "$BOUND" taskset -c "$LOAD_CPU" "$@"; }

RAW=$TMP/raw.tsv
: >"$RAW"

# ------------------------------------------------------- certificate, backends

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
  -subj /CN=localhost -addext subjectAltName=DNS:localhost \
  -keyout "$TMP/h2-key.pem" -out "$TMP/h2-cert.pem" 2>/dev/null || die "openssl req failed"
cat "$TMP/h2-cert.pem" "$TMP/h2-key.pem" >"$TMP/h2-haproxy.pem"

backends "$LOAD_CPU"

# ---------------------------------------------------------------- proxies

declare -A PID PORT
start_proxies() {
  read -r PORT[tioga] PORT[haproxy] < <(py ports 2)
  render "$BENCH/tioga-h2.yaml.in" "$TMP/tioga-h2.yaml" TMP="$TMP" PORT="${PORT[tioga]}" \
    BACKEND_A="$BACKEND_A" BACKEND_B="$BACKEND_B"
  "$TIOGA" -c "$TMP/tioga-h2.yaml" -t >"$TMP/tioga.check" 2>&1 \
    || die "tioga config invalid: $(cat "$TMP/tioga.check")"
  start tioga "$PROXY_CPU" "$TIOGA" -c "$TMP/tioga-h2.yaml"
  PID[tioga]=$LAST_PID
  render "$BENCH/haproxy-h2.cfg.in" "$TMP/haproxy-h2.cfg" TMP="$TMP" PORT="${PORT[haproxy]}" \
    BACKEND_A="$BACKEND_A" BACKEND_B="$BACKEND_B" MAXCONN="$MAXCONN"
  haproxy -q -c -f "$TMP/haproxy-h2.cfg" || die "haproxy config invalid"
  start haproxy "$PROXY_CPU" haproxy -db -f "$TMP/haproxy-h2.cfg"
  PID[haproxy]=$LAST_PID
  local p version
  for p in tioga haproxy; do
    wait_port "${PORT[$p]}" "${PID[$p]}" || die "$p did not listen: $(tail -n 20 "$TMP/$p.out")"
    version=$(curl -fsS -k --http2 --max-time 5 -o /dev/null -w '%{http_version}' \
      "https://localhost:${PORT[$p]}/" --resolve "localhost:${PORT[$p]}:127.0.0.1") \
      || die "$p: h2 check failed"
    [[ $version == 2 ]] || die "$p: answered over HTTP/$version, not h2"
  done
}
stop_proxies() {
  stop_pids "${PID[tioga]}" "${PID[haproxy]}"
  forget "${PID[tioga]}" "${PID[haproxy]}"
}

cpu_us() { # PROXY — its processes' utime+stime in µs
  local pids
  read -r -a pids < <(pids_of "${PID[$1]}")
  py cpu-us "${pids[@]}" | cut -d' ' -f1
}

# ---------------------------------------------------------------- measures

# saturated REP PROXY MEASURE H2LOAD_ARGS... — req/s and CPU µs per request.
saturated() {
  local rep=$1 p=$2 what=$3 out=$TMP/$3-$2-$1.txt before after ok bad rps note=""
  shift 3
  load h2load -t1 -c50 -D 1 "$@" "https://127.0.0.1:${PORT[$p]}/" >/dev/null 2>&1 || true # warm-up
  before=$(cpu_us "$p")
  if ! load h2load -t1 -c50 -D "$SECS" "$@" "https://127.0.0.1:${PORT[$p]}/" >"$out" 2>&1; then
    record "$rep" "${what}_rps" "$p" "" "h2load failed: $(tail -n 2 "$out" | tr '\n' ' ')"
    return
  fi
  after=$(cpu_us "$p")
  read -r ok bad rps < <(py h2load "$out")
  ((bad == 0)) || note="$bad failed/errored/non-2xx requests"
  ((ok > 0)) || { record "$rep" "${what}_rps" "$p" "" "no request completed"; return; }
  record "$rep" "${what}_rps" "$p" "$rps" "$note"
  record "$rep" "${what}_cpu_us" "$p" "$("$PY" -c "print(round(($after - $before) / $ok, 3))")"
}
measure_h2() { saturated "$1" "$2" h2 -m10; }
measure_h1_tls() { saturated "$1" "$2" h1_tls --h1; }

measure_handshake() {
  local rep=$1 p=$2 before after end ok=0 secs=0 bad=0 out=$TMP/hs-$2-$1.txt n b t
  before=$(cpu_us "$p")
  end=$((SECONDS + SECS))
  while ((SECONDS < end)); do
    if ! load h2load -t1 -c100 -n100 "https://127.0.0.1:${PORT[$p]}/" >"$out" 2>&1; then
      record "$rep" handshake_rate "$p" "" "h2load failed: $(tail -n 2 "$out" | tr '\n' ' ')"
      return
    fi
    read -r n b _ < <(py h2load "$out")
    t=$(sed -n 's/^finished in \([0-9.]*\)\(m\?s\),.*/\1 \2/p' "$out")
    secs=$("$PY" -c "v, u = '$t'.split(); print($secs + float(v) / (1000 if u == 'ms' else 1))")
    ok=$((ok + n)) bad=$((bad + b))
  done
  after=$(cpu_us "$p")
  ((ok > 0)) || { record "$rep" handshake_rate "$p" "" "no connection completed"; return; }
  local note=""
  ((bad == 0)) || note="$bad failed connections/requests"
  record "$rep" handshake_rate "$p" "$("$PY" -c "print(round($ok / $secs, 1))")" "$note"
  record "$rep" handshake_cpu_us "$p" "$("$PY" -c "print(round(($after - $before) / $ok, 3))")"
}

# Memory per idle h2 connection at each of IDLE_CONNS, and the RSS growth left after.
measure_idle() {
  local rep=$1 p=$2 want n pids
  for want in $IDLE_CONNS; do
    # Each reading on new processes: allocators keep what an earlier measure freed,
    # and growth over that would come out low.
    stop_proxies
    start_proxies
    read -r -a pids < <(pids_of "${PID[$p]}")
    n=$(idle_cap "$want")
    record_idle "$rep" h2 "$n" "$want" "$p" h2idle --port "${PORT[$p]}" --conns "$n" "${pids[@]}"
    sleep 1
  done
}

read -r -a MEASURES <<<"${H2_MEASURES:-h2 h1_tls handshake idle}"
for ((rep = 1; rep <= REPS; rep++)); do
  order=(tioga haproxy)
  ((rep % 2)) || order=(haproxy tioga)
  log "repetition $rep/$REPS: order ${order[*]}"
  start_proxies
  for m in "${MEASURES[@]}"; do
    for p in "${order[@]}"; do
      log "  $m: $p"
      "measure_$m" "$rep" "$p"
      sleep 1
    done
  done
  stop_proxies
done

# ------------------------------------------------------------------ report

"$PY" - "$RAW" "$OUT" "$REPS" "$SECS" "$(haproxy -v | head -n 1)" "$(h2load --version)" <<'EOF'
import statistics, sys
raw, out, reps, secs, haproxy, h2load = sys.argv[1:]
rows = [l.rstrip("\n").split("\t") for l in open(raw) if l.strip()]
vals, notes = {}, []
for rep, measure, proxy, value, note in rows:
    if value:
        vals.setdefault((measure, proxy), {})[rep] = float(value)
    if note:
        notes.append(f"rep {rep}, {measure}, {proxy}: {note}")
def med(measure, proxy):
    v = list(vals.get((measure, proxy), {}).values())
    return statistics.median(v) if v else None
def ratio(measure):
    a, b = vals.get((measure, "tioga"), {}), vals.get((measure, "haproxy"), {})
    r = [a[k] / b[k] for k in a if k in b and b[k]]
    return statistics.median(r) if r else None
def f(v, unit=""):
    return "–" if v is None else (f"{v:,.0f}{unit}" if v >= 100 else f"{v:.2f}{unit}")
def fr(v):
    return "–" if v is None else f"{v:.2f}×"
lines = ["", "## HTTP/2 and TLS (bench/h2.sh)", ""]
if int(reps) < 5 or int(secs) < 10:
    lines += [f"**Smoke run** ({reps} repetition(s) of {secs} s): not a measurement.", ""]
lines += ["| measure | Tioga | HAProxy | Tioga / HAProxy (median of per-rep ratios) |",
          "|---|---|---|---|"]
for measure, label, unit in [
    ("h2_rps", "h2 over TLS, 50 clients × 10 streams: req/s", ""),
    ("h2_cpu_us", "h2 over TLS: proxy CPU per request", " µs"),
    ("h1_tls_rps", "HTTP/1.1 over TLS, 50 clients: req/s", ""),
    ("h1_tls_cpu_us", "HTTP/1.1 over TLS: proxy CPU per request", " µs"),
    ("handshake_rate", "new TLS 1.3 connections (ECDSA P-256): handshakes/s", ""),
    ("handshake_cpu_us", "new TLS 1.3 connections: proxy CPU per handshake", " µs"),
]:
    if med(measure, "tioga") is None and med(measure, "haproxy") is None:
        continue
    lines.append(f"| {label} | {f(med(measure, 'tioga'), unit)} | "
                 f"{f(med(measure, 'haproxy'), unit)} | {fr(ratio(measure))} |")
idle = sorted({m for m, _ in vals if m.startswith("idle_")},
              key=lambda m: (int(m.split(":")[2]), m))
for measure in idle:
    what, _, n = measure.split(":")
    label, unit = ((f"idle h2 over TLS, {int(n):,} connections: memory per connection", " KiB")
                   if what == "idle_kib" else
                   (f"idle h2, RSS growth left after the {int(n):,} close", " KiB"))
    lines.append(f"| {label} | {f(med(measure, 'tioga'), unit)} | "
                 f"{f(med(measure, 'haproxy'), unit)} | {fr(ratio(measure))} |")
h2, h1 = med("h2_cpu_us", "tioga"), med("h1_tls_cpu_us", "tioga")
lines += ["", "Tioga's CPU per request over h2 relative to HTTP/1.1 over TLS: "
          + (f"{h2 / h1:.2f}×" if h2 and h1 else "–") + ".", ""]
lines += [f"Method: each proxy one worker on CPU 0, h2load ({h2load}) and nginx backends on "
          f"CPU 1; {reps} repetition(s) of {secs} s, order swapped each repetition; "
          "saturated runs (`h2load -t1 -c50 [-m10 | --h1] -D`) after a 1 s warm-up, CPU = "
          "utime+stime of the proxy's processes over the run / requests completed; "
          "handshakes: `h2load -t1 -c100 -n100` repeated for the duration (one request "
          f"per new connection); idle: N TLS connections opened one after the other, one h2 GET "
          "each, left idle, KiB/conn = (RSS_N - RSS_before) / N, 'growth left' read 4 s after "
          f"all N closed. Peer: {haproxy}, `ssl-min-ver TLSv1.3`, "
          "`alpn h2,http/1.1`, same X-Forwarded-* headers.", ""]
if notes:
    lines += ["Anomalies:", ""] + [f"- {n}" for n in notes] + [""]
with open(out, "a") as fh:
    fh.write("\n".join(lines))
print("\n".join(lines))
EOF
log "appended the h2 section to $OUT"
