#!/usr/bin/env python3
"""PyTorch peer of revstream-gpu-check's two-stream r50 forward.

torchvision resnet50 on RGB (3 channels) and a copy whose conv1 takes 20 flow channels,
eager mode, channels_last, cudnn.benchmark on, in f32 (PyTorch's default: TF32 convs)
and bf16, at the same frames per stream as the Rust run. Frames/s counts frames per
stream: one "frame" is one RGB image plus one 20-channel flow stack.

    python3 scripts/peers/torch_forward.py --out torch.json [--frames 32,64,128] [--device cuda]

Without torch/torchvision, or without the asked device, it writes {"skipped": why}.
"""
import argparse
import json
import sys
import time


def skipped(path, why):
    with open(path, "w") as f:
        json.dump({"skipped": why}, f, indent=2)
    print(f"torch_forward: skipped: {why}", file=sys.stderr)
    return 0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--frames", default="32,64,128")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--reps", type=int, default=5)
    args = ap.parse_args()
    try:
        import torch
        import torchvision
    except ImportError as e:
        return skipped(args.out, f"no torch/torchvision ({e})")
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        return skipped(args.out, "torch sees no CUDA device")
    dev = torch.device(args.device)
    torch.backends.cudnn.benchmark = True

    def stream(in_channels):
        m = torchvision.models.resnet50(num_classes=101)
        if in_channels != 3:
            m.conv1 = torch.nn.Conv2d(in_channels, 64, 7, 2, 3, bias=False)
        return m.eval().to(dev, memory_format=torch.channels_last)

    rgb_net, flow_net = stream(3), stream(20)
    runs = []
    for name, dtype in (("f32", torch.float32), ("bf16", torch.bfloat16)):
        rgb_net.to(dtype)
        flow_net.to(dtype)
        for n in (int(x) for x in args.frames.split(",")):
            x = torch.randn(n, 3, 224, 224, device=dev, dtype=dtype).contiguous(
                memory_format=torch.channels_last)
            y = torch.randn(n, 20, 224, 224, device=dev, dtype=dtype).contiguous(
                memory_format=torch.channels_last)
            with torch.inference_mode():
                for _ in range(2):  # warm-up and cudnn's algorithm search
                    rgb_net(x), flow_net(y)
                if dev.type == "cuda":
                    torch.cuda.synchronize()
                started = time.perf_counter()
                for _ in range(args.reps):
                    rgb_net(x), flow_net(y)
                if dev.type == "cuda":
                    torch.cuda.synchronize()
                s = (time.perf_counter() - started) / args.reps
            runs.append({"dtype": name, "frames_per_stream": n, "ms": s * 1e3,
                         "frames_per_s": n / s})
            print(f"torch {name} {n} frames: {n / s:.0f} frames/s", file=sys.stderr)
    with open(args.out, "w") as f:
        json.dump({"torch": torch.__version__, "torchvision": torchvision.__version__,
                   "device": str(dev), "runs": runs}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
