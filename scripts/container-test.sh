#!/usr/bin/env bash
# Builds the CPU runtime image with podman from binaries built on this (Debian 12) host,
# runs it, sends a real video to /v1/predict, checks the answer and /health, then
# removes everything it made. Needs root (apt-get, debootstrap). Prints image size and
# start-up time.
set -euo pipefail
cd "$(dirname "$0")/.."

PORT=${PORT:-18080}
IMAGE=localhost/revstream:container-test
CTR=$(mktemp -d /tmp/revstream-ctr.XXXXXX)
NAME=revstream-test-$$

cleanup() {
  podman rm -f "$NAME" >/dev/null 2>&1 || true
  podman rmi -f "$IMAGE" localhost/debian:bookworm-slim >/dev/null 2>&1 || true
  rm -rf "$CTR"
}
trap cleanup EXIT

need=()
for p in podman buildah runc debootstrap ffmpeg curl; do command -v "$p" >/dev/null || need+=("$p"); done
if ((${#need[@]})); then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}"
fi

# Podman without a daemon, on host networking, with runc (crun fails on hybrid cgroups).
cat >"$CTR/storage.conf" <<CONF
[storage]
driver = "overlay"
graphroot = "$CTR/storage"
runroot = "$CTR/run"
CONF
cat >"$CTR/containers.conf" <<CONF
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]
netns = "host"
[engine]
runtime = "runc"
events_logger = "file"
CONF
export CONTAINERS_STORAGE_CONF=$CTR/storage.conf CONTAINERS_CONF=$CTR/containers.conf

# No registry is reachable: make the slim base from Debian's packages.
mirror=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.sources 2>/dev/null \
  | grep -E '^(URIs:|deb )' | grep -oE 'https?://[^ ]+/debian/?' | head -n1 || true)
debootstrap --variant=minbase bookworm "$CTR/rootfs" "${mirror:-http://deb.debian.org/debian}" >/dev/null
tar -C "$CTR/rootfs" -c . | podman import - localhost/debian:bookworm-slim >/dev/null

cargo build --release --bins
podman build --format docker --network=host --target prebuilt -t "$IMAGE" -f docker/Dockerfile . >/dev/null
size=$(podman image inspect "$IMAGE" --format '{{.Size}}')

start=$(date +%s.%N)
podman run -d --name "$NAME" --network=host -e REVSTREAM_PORT="$PORT" "$IMAGE" >/dev/null
until curl -fsS "http://127.0.0.1:$PORT/health" >/dev/null 2>&1; do
  if ! podman ps --format '{{.Names}}' | grep -q "^$NAME$"; then
    podman logs "$NAME"; echo "container exited before becoming healthy" >&2; exit 1
  fi
  sleep 0.1
done
ready=$(date +%s.%N)

ffmpeg -loglevel error -f lavfi -i testsrc=size=320x240:rate=25:duration=2 -pix_fmt yuv420p "$CTR/clip.mp4"
body=$(curl -fsS -H 'Content-Type: video/mp4' --data-binary @"$CTR/clip.mp4" "http://127.0.0.1:$PORT/v1/predict?top_k=3")
echo "$body" | python3 -c 'import json,sys; r=json.load(sys.stdin); p=r["predictions"]; assert len(p)==3 and all(0<=x["score"]<=1 for x in p), r; print("top-1:", p[0]["label"], round(p[0]["score"],3))'
code=$(curl -s -o /dev/null -w '%{http_code}' -H 'Content-Type: video/mp4' --data-binary 'not a video' "http://127.0.0.1:$PORT/v1/predict")
[ "$code" = 422 ] || { echo "expected 422 for a non-video upload, got $code" >&2; exit 1; }
[ "$(podman inspect "$NAME" --format '{{.State.Running}}')" = true ]
podman healthcheck run "$NAME" || { echo "the image's HEALTHCHECK failed" >&2; exit 1; }

awk -v s="$size" -v a="$start" -v b="$ready" \
  'BEGIN { printf "image size: %.1f MB\nstart-up to healthy: %.2f s\ncontainer test passed\n", s / 1e6, b - a }'
