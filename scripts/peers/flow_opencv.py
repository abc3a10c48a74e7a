#!/usr/bin/env python3
"""OpenCV's DualTVL1 against revstream's TV-L1 on the same ground-truth pairs.

Writes the pairs with `cargo run --example flow_pairs -- write` (8-bit PNGs and .flo
ground truth), then per preset times both implementations on identical inputs with
the same parameters and thread count, and prints pairs/s, EPE and the speed ratio
from this one run.

    pip install opencv-contrib-python-headless
    python3 scripts/peers/flow_opencv.py --threads 2

The Rust side is built with the dev profile, our crate at opt-level 3 without debug
assertions (dependencies are already at opt-level 3), to avoid a full release build;
pass --release to use the release profile instead.
"""

import argparse
import json
import os
import resource
import subprocess
import time

import cv2
import numpy as np

# OpenCV DualTVL1 parameters of each preset (Tvl1Params::accurate / ::fast). OpenCV
# has no `finest_scale`: its fast run solves the finest level too.
PRESETS = {
    "accurate": dict(tau=0.25, lambda_=0.15, theta=0.3, nscales=5, warps=5, epsilon=0.01,
                     innnerIterations=30, outerIterations=10, scaleStep=0.8, gamma=0.0,
                     medianFiltering=5),
    "fast": dict(tau=0.25, lambda_=0.15, theta=0.3, nscales=4, warps=2, epsilon=0.01,
                 innnerIterations=10, outerIterations=2, scaleStep=0.5, gamma=0.0,
                 medianFiltering=5),
}

OPT_FLAGS = ["--config", "profile.dev.package.revstream.opt-level=3",
             "--config", "profile.dev.package.revstream.debug-assertions=false",
             "--config", "profile.dev.package.revstream.overflow-checks=false"]


def build(release):
    """Builds the pair writer / timer and returns its path."""
    profile = ["--release"] if release else OPT_FLAGS
    subprocess.run(["cargo", "build", "-q", *profile, "--example", "flow_pairs"], check=True)
    target = os.environ.get("CARGO_TARGET_DIR", "target")
    return os.path.join(target, "release" if release else "debug", "examples", "flow_pairs")


def cpu_seconds(who):
    r = resource.getrusage(who)
    return r.ru_utime + r.ru_stime


def rust(binary, args):
    """Runs the Rust timer; also returns its CPU seconds (all threads, warm-up included)."""
    before = cpu_seconds(resource.RUSAGE_CHILDREN)
    out = subprocess.run([binary, *args], check=True, capture_output=True, text=True).stdout
    return json.loads(out), cpu_seconds(resource.RUSAGE_CHILDREN) - before


def read_flo(path):
    with open(path, "rb") as f:
        magic, = np.frombuffer(f.read(4), "<f4")
        assert magic == 202021.25, f"{path}: not a .flo file"
        w, h = np.frombuffer(f.read(8), "<i4")
        data = np.frombuffer(f.read(), "<f4").reshape(h, w, 2)
    return data


def epe(flow, gt):
    h, w = gt.shape[:2]
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    tx, ty = xs + gt[..., 0], ys + gt[..., 1]
    # Same rule as the Rust side: pixels whose true correspondence stays in the frame.
    valid = (tx >= 0) & (tx <= w - 1) & (ty >= 0) & (ty <= h - 1)
    err = np.sqrt(((flow.astype(np.float64) - gt) ** 2).sum(-1))
    return float(err[valid].mean())


def opencv_run(pairs, preset, repeat):
    tvl1 = cv2.optflow.DualTVL1OpticalFlow_create(**PRESETS[preset])
    cpu_before = cpu_seconds(resource.RUSAGE_SELF)
    flows = [tvl1.calc(a, b, None) for a, b, _ in pairs]  # also the warm-up pass
    start = time.perf_counter()
    for _ in range(repeat):
        for a, b, _ in pairs:
            tvl1.calc(a, b, None)
    seconds = time.perf_counter() - start
    cpu = cpu_seconds(resource.RUSAGE_SELF) - cpu_before
    epes = [epe(f, gt) for f, (_, _, gt) in zip(flows, pairs)]
    return {"pairs_per_s": len(pairs) * repeat / seconds, "epe": float(np.mean(epes)),
            "epe_per_pair": epes}, cpu


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dir", default="/tmp/revstream_flow_pairs")
    ap.add_argument("--count", type=int, default=8)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--presets", default="accurate,fast")
    ap.add_argument("--release", action="store_true")
    ap.add_argument("--json", help="also write every figure to this file")
    args = ap.parse_args()

    binary = build(args.release)
    subprocess.run([binary, "write", args.dir, "--count", str(args.count)], check=True)
    pairs = []
    for i in range(args.count):
        p = os.path.join(args.dir, f"pair_{i:02d}")
        pairs.append((cv2.imread(p + "_prev.png", cv2.IMREAD_GRAYSCALE),
                      cv2.imread(p + "_next.png", cv2.IMREAD_GRAYSCALE),
                      read_flo(p + "_gt.flo")))
    cv2.setNumThreads(args.threads)
    h, w = pairs[0][0].shape
    print(f"{len(pairs)} pairs of {w}x{h}, {args.threads} threads, "
          f"OpenCV {cv2.__version__}, {args.repeat} timed passes")
    # CPU ms per pair (all threads, warm-up pass included) is reported beside
    # wall-clock pairs/s because it is less sensitive to other load on the machine.
    print(f"{'preset':9} {'impl':10} {'pairs/s':>9} {'CPU ms/pair':>12} {'EPE':>8}")
    results = {}
    passes = len(pairs) * (args.repeat + 1)
    for preset in args.presets.split(","):
        ours, our_cpu = rust(binary, ["run", args.dir, "--preset", preset, "--threads",
                                      str(args.threads), "--repeat", str(args.repeat)])
        theirs, their_cpu = opencv_run(pairs, preset, args.repeat)
        for name, r, cpu in (("revstream", ours, our_cpu), ("opencv", theirs, their_cpu)):
            r["cpu_ms_per_pair"] = 1e3 * cpu / passes
            print(f"{preset:9} {name:10} {r['pairs_per_s']:9.2f} {r['cpu_ms_per_pair']:12.1f}"
                  f" {r['epe']:8.4f}")
        ratio = ours["pairs_per_s"] / theirs["pairs_per_s"]
        cpu_ratio = theirs["cpu_ms_per_pair"] / ours["cpu_ms_per_pair"]
        print(f"{preset:9} speed ratio revstream/opencv: {ratio:.2f}x wall-clock, "
              f"{cpu_ratio:.2f}x CPU time")
        results[preset] = {"revstream": ours, "opencv": theirs, "speed_ratio": ratio,
                           "cpu_ratio": cpu_ratio}
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
