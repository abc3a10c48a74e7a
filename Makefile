# Quick start: `make serve` starts the server on models/default, `make test` runs every test.
# Both install what is missing first (Debian/Ubuntu; the Rust toolchain is assumed).

APT_PACKAGES := libavcodec-dev libavformat-dev libavutil-dev libswscale-dev \
                pkg-config clang libclang-dev ffmpeg
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

test: deps
	cargo test --all-targets --no-fail-fast

bench: deps
	cargo bench

fmt:
	cargo fmt --all

lint: deps
	cargo fmt --all --check
	cargo clippy --all-targets -- -D warnings
