#!/usr/bin/env bash
# Puts libonnxruntime.so (ONNX Runtime 1.32.0, CPU) into target/ort/, taken from the PyPI
# wheel: the ort crate loads it at run time (--ort-library / ORT_DYLIB_PATH).
# Prints the library's path. Idempotent.
set -euo pipefail
version="${ORT_VERSION:-1.32.0}"
root="$(cd "$(dirname "$0")/.." && pwd)"
dest="$root/target/ort"
lib="$dest/libonnxruntime.so.$version"
if [[ ! -f "$lib" ]]; then
    wheels="$root/target/ort-wheel"
    mkdir -p "$wheels" "$dest"
    python3 -m pip download --quiet --no-deps --only-binary=:all: \
        "onnxruntime==$version" -d "$wheels" >&2
    wheel="$(ls "$wheels"/onnxruntime-"$version"-*.whl | head -n 1)"
    python3 - "$wheel" "$dest" <<'PY'
import sys, zipfile, pathlib
wheel, dest = sys.argv[1], pathlib.Path(sys.argv[2])
with zipfile.ZipFile(wheel) as z:
    for name in z.namelist():
        base = name.rsplit("/", 1)[-1]
        if name.startswith("onnxruntime/capi/") and base.startswith("libonnxruntime.so"):
            (dest / base).write_bytes(z.read(name))
PY
fi
ln -sf "libonnxruntime.so.$version" "$dest/libonnxruntime.so"
echo "$lib"
