# Helpers shared by the bench scripts, sourced after the script has set LOG_NAME. The script owns TMP and PIDS; `bench_temp` makes
# both and installs the cleanup that stops every process in PIDS and removes TMP (kept
# with KEEP_TMP=1, or when the script failed).

LIB_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

log() { printf '[%s %s] %s\n' "$LOG_NAME" "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# bench.py's subcommands (PY: the script's python3, if it chose one).
py() { "${PY:-python3}" "$LIB_DIR/bench.py" "$@"; }
# A free TCP port on 127.0.0.1 (free a moment ago).
free_port() { py ports 1; }

# need PACKAGE:COMMAND-OR-PATH... — installs the Debian packages whose command (or file,
# for an absolute path) is missing.
need() {
  local pair pkg what missing=() sudo=""
  for pair in "$@"; do
    pkg=${pair%%:*} what=${pair#*:}
    if [[ $what == /* ]]; then [[ -e $what ]] || missing+=("$pkg")
    else command -v "$what" >/dev/null || missing+=("$pkg"); fi
  done
  ((${#missing[@]})) || return 0
  log "installing: ${missing[*]}"
  [[ $(id -u) == 0 ]] || sudo=sudo
  $sudo apt-get update -qq
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
}

# Succeeds while any of the given processes is still running (not gone, not a zombie
# waiting to be reaped).
any_alive() {
  local pid stat
  for pid in "$@"; do
    stat=$(cat "/proc/$pid/stat" 2>/dev/null) || continue
    stat=${stat##*) }
    [[ ${stat:0:1} == Z ]] || return 0
  done
  return 1
}

# Stops the given processes and their direct children (nginx workers): SIGINT first
# (fast shutdown; SIGTERM would make Pingora drain for its grace period), then SIGTERM
# (HAProxy started in the background of a script inherits an ignored SIGINT), then
# SIGKILL.
stop_pids() {
  local pid sig all=()
  for pid in "$@"; do
    all+=("$pid")
    mapfile -t -O "${#all[@]}" all < <(pgrep -P "$pid" || true)
  done
  ((${#all[@]})) || return 0
  for sig in INT TERM KILL; do
    kill -"$sig" "${all[@]}" 2>/dev/null || true
    for _ in $(seq 20); do
      any_alive "${all[@]}" || break 2
      sleep 0.1
    done
  done
  wait "$@" 2>/dev/null || true
}

# Forget stopped pids.
forget() {
  local keep=() p q drop
  for p in "${PIDS[@]}"; do
    drop=0
    for q in "$@"; do [[ $p == "$q" ]] && drop=1; done
    ((drop)) || keep+=("$p")
  done
  PIDS=("${keep[@]}")
}

# bench_temp PREFIX — a new temp dir in TMP, an empty PIDS, and the cleanup on exit.
bench_temp() {
  TMP=$(mktemp -d "${TMPDIR:-/tmp}/$1.XXXXXX")
  PIDS=()
  trap bench_cleanup EXIT
  trap 'exit 130' INT TERM
}
bench_cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  ((${#PIDS[@]})) && stop_pids "${PIDS[@]}"
  if [[ ${KEEP_TMP:-0} == 1 || $rc != 0 ]]; then log "temp dir kept: $TMP"; else rm -rf "$TMP"; fi
  exit "$rc"
}

# start NAME CPU CMD... — runs CMD pinned to CPU in the background; its pid in LAST_PID.
start() {
  local name=$1 cpu=$2
  shift 2
  taskset -c "$cpu" "$@" >"$TMP/$name.out" 2>&1 &
  LAST_PID=$!
  PIDS+=("$LAST_PID")
}

# wait_port PORT [PID [TRIES]] — until 127.0.0.1:PORT accepts, or fail if PID (when
# given) died or TRIES × 0.1 s (default 10 s) passed.
wait_port() {
  local port=$1 pid=${2:-}
  for _ in $(seq "${3:-100}"); do
    [[ -z $pid ]] || kill -0 "$pid" 2>/dev/null || return 1
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && return 0
    sleep 0.1
  done
  return 1
}

# render TEMPLATE OUT KEY=VALUE... — replaces every @KEY@ in TEMPLATE.
render() {
  local in=$1 out=$2 kv args=()
  shift 2
  for kv in "$@"; do args+=(-e "s|@${kv%%=*}@|${kv#*=}|g"); done
  sed "${args[@]}" "$in" >"$out"
  ! grep -n '@[A-Z_]*@' "$out" || die "unfilled placeholder in $out"
}

# backends [CPU] — one nginx (pinned to CPU when given) serving the two fast backends of
# nginx-backend.conf.in on free ports, BACKEND_A and BACKEND_B.
backends() {
  local pin=() pid
  [[ -z ${1:-} ]] || pin=(taskset -c "$1")
  read -r BACKEND_A BACKEND_B < <(py ports 2)
  render "$LIB_DIR/nginx-backend.conf.in" "$TMP/nginx-backend.conf" TMP="$TMP" \
    BACKEND_A="$BACKEND_A" BACKEND_B="$BACKEND_B" NOFILE=20000 WORKER_CONNS=16384
  "${pin[@]}" nginx -p "$TMP/" -e "$TMP/nginx-backend.error.log" \
    -c "$TMP/nginx-backend.conf" >"$TMP/nginx-backend.out" 2>&1 &
  pid=$!
  PIDS+=("$pid")
  { wait_port "$BACKEND_A" "$pid" && wait_port "$BACKEND_B" "$pid"; } ||
    die "backend nginx did not start: $(cat "$TMP/nginx-backend.out")"
}

# The process ids whose CPU and memory count for a proxy: it and its children.
pids_of() { echo "$1" "$(pgrep -P "$1" | tr '\n' ' ')"; }

# record REP MEASURE PROXY VALUE [NOTE] — one row of the script's RAW table.
record() { printf '%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" "${5:-}" >>"$RAW"; }

# record_idle REP PROTO N WANT PROXY PROBE-ARGS... — runs bench.py's idle probe (PROBE-ARGS:
# its subcommand and arguments) on the load CPU for N connections (WANT were asked) and
# records the memory per idle connection and the RSS growth left once they closed.
record_idle() {
  local rep=$1 proto=$2 n=$3 want=$4 p=$5 out idle loaded alive bad closed note=""
  shift 5
  ((n == want)) || note="$want asked, $n held: the open-file limit is $NOFILE (the hard limit could not be raised)"
  if ! out=$(timeout 1800 taskset -c "$LOAD_CPU" "$PY" "$BENCH/bench.py" "$@" 2>"$TMP/idle-$p.err"); then
    record "$rep" "idle_kib:$proto:$n" "$p" "" "idle probe failed: $(tail -n 1 "$TMP/idle-$p.err")"
    return
  fi
  read -r idle loaded alive bad closed <<<"$out"
  ((alive == n)) || note+="${note:+; }only $alive of $n connections still open at the reading"
  ((bad == 0)) || note+="${note:+; }$bad non-200 answers"
  record "$rep" "idle_kib:$proto:$n" "$p" "$("$PY" -c "print(round(($loaded - $idle) / $n, 3))")" "$note"
  record "$rep" "idle_closed:$proto:$n" "$p" "$((closed - idle))"
}
