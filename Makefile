# Tioga: every set-up step a fresh Debian machine with only the Rust toolchain needs.
#   make run    the demo: example backends in two pools and Tioga on loopback
#   make test   every test (unit, integration, example builds, lint)
#   make build  the release binary at target/release/tioga, profile-guided (PGO=0: plain)

SHELL := /bin/bash
CARGO ?= cargo
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: fuzz bench-overhead deps test-deps build run test lint check-config clean bench

# Installs the Debian packages named in $(1) whose command $(2) is missing.
define apt_install
	@missing=""; \
	for pair in $(1); do pkg=$${pair%%:*}; cmd=$${pair#*:}; \
	  command -v $$cmd >/dev/null || missing="$$missing $$pkg"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  $(SUDO) apt-get update -qq && $(SUDO) DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi
endef

# Pingora builds zlib-ng with cmake and a C compiler.
deps:
	$(call apt_install,cmake:cmake gcc:cc curl:curl)

# The status-page test drives Debian's Chromium through chromedriver.
test-deps: deps
	$(call apt_install,chromium:chromium chromium-driver:chromedriver dnsmasq-base:dnsmasq)

# Profile-guided: an instrumented build, a ~6 s training run on loopback, the final
# build (see examples/pgo_build.sh). PGO=0 make build skips the profile.
build: deps
	bash examples/pgo_build.sh

run: deps
	$(CARGO) build --bin tioga --example demo_backend
	@bash examples/run_demo.sh target/debug

test: test-deps
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets -- -D warnings
	$(CARGO) build --all-targets
	$(CARGO) test --all-targets
	$(CARGO) test --doc
	RUSTDOCFLAGS="-D warnings" $(CARGO) doc --no-deps --lib

lint: deps
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets -- -D warnings

check-config: deps
	$(CARGO) run --quiet --bin tioga -- -c $(or $(CONFIG),conf/demo.yaml) -t

clean:
	$(CARGO) clean

# Side-by-side benchmark against HAProxy, nginx and bare Pingora (installs what it needs;
# REPS=1 DURATION=3s make bench for a quick smoke run); writes bench/results.md.
bench: deps
	bash bench/run.sh

# Tioga against itself: the cost of metrics + access log, and of three header filters.
bench-overhead: deps
	bash bench/overhead.sh

# Fuzzing (not part of `make test`): each target in fuzz/ for FUZZ_TIME seconds
# (default 600), starting from the small corpus committed in fuzz/corpus/. cargo-fuzz
# needs nightly flags; RUSTC_BOOTSTRAP lets the one stable toolchain accept them.
FUZZ_TIME ?= 600
FUZZ_TARGETS ?= config routes normalize_path
fuzz: deps
	@command -v cargo-fuzz >/dev/null || $(CARGO) install cargo-fuzz
	@for t in $(FUZZ_TARGETS); do \
	  mkdir -p fuzz/artifacts/$$t target/fuzz-corpus/$$t; \
	  echo "== fuzz $$t for $(FUZZ_TIME) s"; \
	  (cd fuzz && RUSTC_BOOTSTRAP=1 $(CARGO) fuzz run $$t ../target/fuzz-corpus/$$t corpus/$$t \
	     -- -max_total_time=$(FUZZ_TIME) -print_final_stats=1) || exit 1; \
	done
