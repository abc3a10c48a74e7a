# Quick start: `make serve` starts the server on models/default, `make test` runs every test.
# Both install what is missing first (Debian/Ubuntu; the Rust toolchain is assumed).

APT_PACKAGES := libavcodec-dev libavformat-dev libavutil-dev libswscale-dev \
                pkg-config clang libclang-dev ffmpeg python3-venv python3-pip
SUDO := $(shell [ "$$(id -u)" -eq 0 ] || echo sudo)

.PHONY: deps serve test bench fmt lint

deps:
	@missing=$$(for p in $(APT_PACKAGES); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q 'install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "installing:" $$missing; \
		$(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing; \
	fi

serve: deps
	cargo run --release --bin revstream-server -- $(ARGS)

# Benches are compiled (not run) so they cannot rot; the ort feature's tests fetch
# ONNX Runtime from PyPI themselves (scripts/fetch-ort.sh).
test: deps
	cargo test --features ort --no-fail-fast
	cargo test --features ort --benches --no-run

bench: deps
	cargo bench

fmt:
	cargo fmt --all

lint: deps
	cargo fmt --all --check
	cargo clippy --all-targets --features ort -- -D warnings
