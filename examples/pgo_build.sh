#!/usr/bin/env bash
# The release build of `tioga`, profile-guided (PGO); `make build` runs it.
#
#   1. build an instrumented tioga (target/pgo/target/release/tioga);
#   2. run examples/pgo_train against it: backends and load on 127.0.0.1, about 6 s;
#   3. merge the profile with the llvm-profdata of rustc's own LLVM (rustup's
#      llvm-tools component; failing that, Debian's llvm-N of the same major version);
#   4. build target/release/tioga with that profile (fat LTO, one codegen unit, as
#      Cargo.toml's release profile says).
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
  if [[ ! -x $profdata ]] && command -v apt-get >/dev/null; then
    log "installing Debian's llvm-$llvm_major for llvm-profdata"
    sudo=""; [[ $(id -u) == 0 ]] || sudo=sudo
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "llvm-$llvm_major" >&2 || true
  fi
fi
[[ -x $profdata ]] || plain "no llvm-profdata for rustc's LLVM $llvm_major"

raw=$PGO_DIR/raw
rm -rf "$raw"
mkdir -p "$raw"
log "1/4 building the trainer (examples/pgo_train, dev profile) and an instrumented tioga"
"$CARGO" build --quiet --example pgo_train
RUSTFLAGS="${RUSTFLAGS:-} -Cprofile-generate=$raw" CARGO_TARGET_DIR=$PGO_DIR/target \
  "$CARGO" build --release --bin tioga

log "2/4 training run"
LLVM_PROFILE_FILE="$raw/tioga-%p-%m.profraw" \
  "$TARGET/debug/examples/pgo_train" "$PGO_DIR/target/release/tioga"

log "3/4 merging the profile"
compgen -G "$raw/*.profraw" >/dev/null || { log "the training run wrote no profile"; exit 1; }
"$profdata" merge -o "$PGO_DIR/tioga.profdata" "$raw"

log "4/4 building target/release/tioga with the profile"
RUSTFLAGS="${RUSTFLAGS:-} -Cprofile-use=$PGO_DIR/tioga.profdata" \
  "$CARGO" build --release --bin tioga
echo "PGO (profile from examples/pgo_train, merged by $profdata)" >"$PGO_DIR/outcome"
log "done: $TARGET/release/tioga"
