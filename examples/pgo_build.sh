#!/usr/bin/env bash
# The release build of `tioga`, profile-guided (PGO); `make build` runs it.
#
#   1. build an instrumented tioga (target/pgo/target/release/tioga);
#   2. run examples/pgo_train against it: backends and load on 127.0.0.1, about 6 s;
#   3. merge the profile with the llvm-profdata of rustc's own LLVM (rustup's
#      llvm-tools component; failing that, Debian's llvm-N of the same major version);
#   4. build target/release/tioga with that profile (fat LTO, one codegen unit, as
#      Cargo.toml's release profile says);
#   5. lay the binary out again with LLVM's BOLT by a second training run of an
#      instrumented copy (Debian's bolt-15 first, else the newest bolt-N, installed
#      when missing; BOLT_VERSION=N picks another, BOLT=0 skips it).
#
# The compiler then lays out and inlines Pingora's, tokio's and Tioga's request path
# by what it measured; bench/results.md says what that is worth. PGO=0, or no
# llvm-profdata to be had, gives a plain release build instead (said on stderr). The
# outcome is written to target/pgo/outcome for bench/run.sh to report. A plain
# `cargo build --release` afterwards rebuilds without the profile.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
CARGO=${CARGO:-cargo}
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
PGO_DIR=$TARGET/pgo
mkdir -p "$PGO_DIR"

log() { printf '[pgo-build] %s\n' "$*" >&2; }

# Installs a Debian package, if apt-get is there; the package lists are refreshed
# once, on a first failure (a fresh machine may have none). Never fails the build.
lists_fresh=""
apt_install() {
  command -v apt-get >/dev/null || return 0
  local sudo=""
  [[ $(id -u) == 0 ]] || sudo=sudo
  log "installing Debian's $1 ($2)"
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$1" >&2 && return 0
  [[ -z $lists_fresh ]] || return 0
  lists_fresh=1
  $sudo apt-get update -qq >&2 || return 0
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$1" >&2 || true
}

plain() {
  log "$1: plain release build, without PGO"
  echo "plain release build ($1)" >"$PGO_DIR/outcome"
  exec "$CARGO" build --release --bin tioga
}

[[ ${PGO:-1} == 0 ]] && plain "PGO=0"

# llvm-profdata must come from the LLVM that rustc was built with: the raw profile's
# format changes between LLVM versions.
host=$(rustc -vV | sed -n 's/^host: //p')
llvm_major=$(rustc -vV | sed -n 's/^LLVM version: \([0-9]*\).*/\1/p')
profdata=$(rustc --print sysroot)/lib/rustlib/$host/bin/llvm-profdata
if [[ ! -x $profdata ]] && command -v rustup >/dev/null; then
  log "adding rustup's llvm-tools component (llvm-profdata for LLVM $llvm_major)"
  rustup component add llvm-tools >&2 || true
fi
if [[ ! -x $profdata ]]; then
  profdata=/usr/lib/llvm-$llvm_major/bin/llvm-profdata
  [[ -x $profdata ]] || apt_install "llvm-$llvm_major" "for llvm-profdata"
fi
[[ -x $profdata ]] || plain "no llvm-profdata for rustc's LLVM $llvm_major"

# Sets `bolt` to LLVM's BOLT, by its real path (it finds its instrumentation runtime
# beside it), installing Debian's package when missing; leaves it empty, and says why
# in `bolt_why`, when there is none to be had. bolt-$BOLT_VERSION (default 15,
# bookworm's) first: it is the one bench/results.md measured, and bolt-22 (from
# bookworm-security) laid the same binary out for about 11% more CPU per request in a
# 4-round A/B. Failing that, the newest there is.
bolt_versions() {
  { compgen -c llvm-bolt- | sed -n 's/^llvm-bolt-\([0-9][0-9]*\)$/\1/p'
    apt-cache search --names-only '^bolt-[0-9]+$' 2>/dev/null | sed -n 's/^bolt-\([0-9][0-9]*\) .*/\1/p'
  } | sort -n -u -r || true
}
find_bolt() {
  local v
  for v in ${BOLT_VERSION:-15} "$(bolt_versions | head -n 1)"; do
    [[ -n $v ]] || continue
    command -v "llvm-bolt-$v" >/dev/null || apt_install "bolt-$v" "for llvm-bolt"
    if command -v "llvm-bolt-$v" >/dev/null; then
      bolt=$(readlink -f "$(command -v "llvm-bolt-$v")")
      return 0
    fi
  done
  bolt_why="no llvm-bolt to be had"
}

raw=$PGO_DIR/raw
rm -rf "$raw"
mkdir -p "$raw"
log "1/5 building the trainer (examples/pgo_train, dev profile) and an instrumented tioga"
"$CARGO" build --quiet --example pgo_train
RUSTFLAGS="${RUSTFLAGS:-} -Cprofile-generate=$raw" CARGO_TARGET_DIR=$PGO_DIR/target \
  "$CARGO" build --release --bin tioga

log "2/5 training run"
LLVM_PROFILE_FILE="$raw/tioga-%p-%m.profraw" \
  "$TARGET/debug/examples/pgo_train" "$PGO_DIR/target/release/tioga"

log "3/5 merging the profile"
compgen -G "$raw/*.profraw" >/dev/null || { log "the training run wrote no profile"; exit 1; }
"$profdata" merge -o "$PGO_DIR/tioga.profdata" "$raw"

bolt="" bolt_why="BOLT=0"
[[ ${BOLT:-1} == 0 ]] || find_bolt
relocs=""
# BOLT moves functions only in a binary that keeps its relocations.
[[ -z $bolt ]] || relocs="-Clink-arg=-Wl,--emit-relocs"

log "4/5 building target/release/tioga with the profile"
RUSTFLAGS="${RUSTFLAGS:-} -Cprofile-use=$PGO_DIR/tioga.profdata $relocs" \
  "$CARGO" build --release --bin tioga
outcome="PGO (profile from examples/pgo_train, merged by $profdata)"

if [[ -z $bolt ]]; then
  log "5/5 skipped: $bolt_why"
  echo "$outcome; no BOLT ($bolt_why)" >"$PGO_DIR/outcome"
  log "done: $TARGET/release/tioga"
  exit 0
fi

# Step 5; any failure keeps the PGO binary (said in the outcome).
bolt_layout() {
  local dir=$PGO_DIR/bolt pgo=$PGO_DIR/tioga-pgo
  # Cargo relinks only when something changed; otherwise target/release/tioga is still
  # the last run's laid-out binary, and the profile-guided one is kept beside it.
  if readelf -SW "$TARGET/release/tioga" 2>/dev/null | grep -q '\.note\.bolt_info'; then
    [[ -f $pgo ]] || { log "target/release/tioga is laid out already and no PGO copy is kept"; return 1; }
  else
    cp "$TARGET/release/tioga" "$pgo"
  fi
  rm -rf "$dir"
  mkdir -p "$dir"
  "$bolt" "$pgo" -instrument -o "$dir/tioga-instrumented" \
    --instrumentation-file="$dir/profile" --instrumentation-file-append-pid \
    >"$dir/instrument.log" 2>&1 || { log "instrumenting failed, see $dir/instrument.log"; return 1; }
  "$TARGET/debug/examples/pgo_train" "$dir/tioga-instrumented" || return 1
  compgen -G "$dir/profile.*.fdata" >/dev/null || { log "the training run wrote no profile"; return 1; }
  "$(dirname "$bolt")/merge-fdata" "$dir"/profile.*.fdata >"$dir/tioga.fdata" 2>"$dir/merge.log" \
    || { log "merging failed, see $dir/merge.log"; return 1; }
  "$bolt" "$pgo" -o "$dir/tioga" -data="$dir/tioga.fdata" \
    -reorder-blocks=ext-tsp -reorder-functions=hfsort+ -split-functions -split-all-cold \
    -split-eh -icf=1 -use-gnu-stack -dyno-stats >"$dir/optimize.log" 2>&1 \
    || { log "laying out failed, see $dir/optimize.log"; return 1; }
  # The laid-out binary must serve the training mix, which checks every answer.
  log "checking the laid-out binary with the training run"
  "$TARGET/debug/examples/pgo_train" "$dir/tioga" || { log "the laid-out binary failed it"; return 1; }
  # A new file, not written through cargo's hard link to its own artifact.
  cp --remove-destination "$dir/tioga" "$TARGET/release/tioga"
}

log "5/5 BOLT ($bolt): instrumenting, a second training run, laying out"
if bolt_layout; then
  echo "$outcome, then BOLT ($bolt, profile from examples/pgo_train)" >"$PGO_DIR/outcome"
else
  echo "$outcome; BOLT failed, not applied" >"$PGO_DIR/outcome"
fi
log "done: $TARGET/release/tioga ($(cat "$PGO_DIR/outcome"))"
