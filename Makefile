# Quick start: `make serve` starts the server on models/default, `make test` runs every test.
# Both install what is missing first (Debian/Ubuntu; the Rust toolchain is assumed).

APT_PACKAGES := libavcodec-dev libavformat-dev libavutil-dev libswscale-dev \
                pkg-config clang libclang-dev ffmpeg python3-venv python3-pip
SUDO := $(shell [ "$$(id -u)" -eq 0 ] || echo sudo)

.PHONY: deps serve test bench fmt lint check-cuda gpu-bundle

deps:
	@missing=$$(for p in $(APT_PACKAGES); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q 'install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "installing:" $$missing; \
		$(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing; \
	fi

serve: deps
	cargo run --release --bin revstream-server -- $(ARGS)

# Benches are compiled (not run) so they cannot rot; the ort feature's tests fetch
# ONNX Runtime from PyPI themselves (scripts/fetch-ort.sh). Incremental compilation is
# off: a one-shot build gains nothing from it, and without its caches a fresh clone's
# target/ after `make test` is 2.7 GB instead of 3.8 GB (CI once failed on a full disk).
test: deps
	CARGO_INCREMENTAL=0 cargo test --features ort --no-fail-fast
	CARGO_INCREMENTAL=0 cargo test --features ort --benches --no-run

# The `cuda` and `cudnn` features need a CUDA toolkit (nvcc for candle's kernels) but no
# GPU; check-cuda type-checks both (checking needs no libcudnn):
# scripts/setup-cuda-root.sh assembles CUDA 13.0 from PyPI wheels into
# $(CUDA_PREFIX). Separate target dir, so CPU builds are not invalidated. Not part of
# `make test`: from scratch it takes 9 minutes on an idle 2-core machine, but downloads
# 1.2 GB of CUDA wheels and adds 2.8 GB on disk beside test's 2.7 GB (CI once failed on a
# full disk); see docs/benchmarks.md, GPU path.
CUDA_PREFIX ?= $(HOME)/.cache/revstream-cuda
CUDA_CARGO = . $(CUDA_PREFIX)/env.sh && CARGO_TARGET_DIR=target-cuda cargo

check-cuda: deps
	cargo fetch
	scripts/setup-cuda-root.sh $(CUDA_PREFIX)
	$(CUDA_CARGO) check --features cuda --all-targets
	$(CUDA_CARGO) check --features cudnn --all-targets

# target-cuda/gpu-bundle.tar.gz: revstream-gpu-check built with cuDNN convolutions
# (feature `cudnn`; links libcudnn.so.9, hence WITH_CUDNN), scripts/gpu-check.sh, the
# PyTorch peers and models/default, for a GPU machine without Rust
# (tar xzf gpu-bundle.tar.gz && gpu-bundle/scripts/gpu-check.sh results).
gpu-bundle: deps
	cargo fetch
	WITH_CUDNN=1 scripts/setup-cuda-root.sh $(CUDA_PREFIX)
	$(CUDA_CARGO) build --release --features cudnn --bin revstream-gpu-check
	rm -rf target-cuda/gpu-bundle
	mkdir -p target-cuda/gpu-bundle/bin target-cuda/gpu-bundle/scripts/peers target-cuda/gpu-bundle/models
	cp target-cuda/release/revstream-gpu-check target-cuda/gpu-bundle/bin/
	strip target-cuda/gpu-bundle/bin/revstream-gpu-check
	cp scripts/gpu-check.sh target-cuda/gpu-bundle/scripts/
	cp scripts/peers/torch_forward.py scripts/peers/torch_conv.py target-cuda/gpu-bundle/scripts/peers/
	cp -r models/default target-cuda/gpu-bundle/models/
	tar -C target-cuda -czf target-cuda/gpu-bundle.tar.gz gpu-bundle
	@ls -lh target-cuda/gpu-bundle.tar.gz

bench: deps
	cargo bench

fmt:
	cargo fmt --all

# Run by .ci/run before the tests.
lint: deps
	cargo fmt --all --check
	CARGO_INCREMENTAL=0 cargo clippy --all-targets --features ort -- -D warnings
