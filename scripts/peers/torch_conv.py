#!/usr/bin/env python3
"""PyTorch peer of revstream-gpu-check's `conv` section.

Times F.conv2d on the shapes that section wrote (its conv.json), eager mode,
cudnn.benchmark on: forward, and forward plus both gradients (autograd, as training
gets them). Three layouts per shape: f32 NCHW without TF32 (as our f32 op runs unless
candle's reduced-precision switch is set), bf16 NCHW (our layout) and bf16 channels_last.

    python3 scripts/peers/torch_conv.py --shapes OUT/conv.json --out OUT/torch_conv.json

Without torch, or without a CUDA device, it writes {"skipped": why}.
"""
import argparse
import json
import sys
import time


def skipped(path, why):
    with open(path, "w") as f:
        json.dump({"skipped": why}, f, indent=2)
    print(f"torch_conv: skipped: {why}", file=sys.stderr)
    return 0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shapes", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--reps", type=int, default=10)
    args = ap.parse_args()
    try:
        import torch
        import torch.nn.functional as F
    except ImportError as e:
        return skipped(args.out, f"no torch ({e})")
    if not torch.cuda.is_available():
        return skipped(args.out, "torch sees no CUDA device")
    with open(args.shapes) as f:
        shapes = json.load(f)["shapes"]
    dev = torch.device("cuda")
    torch.backends.cudnn.benchmark = True
    torch.backends.cudnn.allow_tf32 = False

    def timed(fn, reps):
        fn()
        fn()  # warm-up and cudnn's algorithm search
        torch.cuda.synchronize()
        started = time.perf_counter()
        for _ in range(reps):
            fn()
        torch.cuda.synchronize()
        return (time.perf_counter() - started) / reps * 1e3

    runs = []
    for s in shapes:
        n, c, h, w = s["x"]
        kh, kw = s["kernel"]
        row = {"name": s["name"]}
        for name, dtype, fmt in (("f32", torch.float32, torch.contiguous_format),
                                 ("bf16", torch.bfloat16, torch.contiguous_format),
                                 ("bf16_nhwc", torch.bfloat16, torch.channels_last)):
            x = torch.randn(n, c, h, w, device=dev, dtype=dtype).contiguous(memory_format=fmt)
            wt = torch.randn(s["c_out"], c, kh, kw, device=dev, dtype=dtype).contiguous(
                memory_format=fmt)
            conv = lambda a, b: F.conv2d(a, b, stride=tuple(s["stride"]),
                                         padding=tuple(s["padding"]))
            with torch.no_grad():
                row[f"{name}_fwd_ms"] = timed(lambda: conv(x, wt), args.reps)
            xg = x.detach().requires_grad_()
            wg = wt.detach().requires_grad_()
            dy = torch.randn_like(conv(x, wt))

            def fwd_bwd():
                xg.grad = None
                wg.grad = None
                conv(xg, wg).backward(dy)

            row[f"{name}_fwd_bwd_ms"] = timed(fwd_bwd, args.reps)
        print(f"torch_conv: {s['name']} done", file=sys.stderr)
        runs.append(row)
    with open(args.out, "w") as f:
        json.dump({"torch": torch.__version__, "cudnn": torch.backends.cudnn.version(),
                   "runs": runs}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
