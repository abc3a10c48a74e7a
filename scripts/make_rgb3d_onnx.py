#!/usr/bin/env python3
"""Writes a model folder for revstream-server holding a small RGB-only video classifier
made outside revstream: model.onnx (built with the `onnx` helper, no PyTorch) and the
config.json that tells the server its input/output contract.

The network is Conv (3-D, or 2-D for NCHW) -> ReLU -> GlobalAveragePool -> Flatten ->
Gemm [-> Softmax], with weights chosen so the answer is known: each convolution output
channel averages its own input channel over the kernel, so after ReLU and pooling the
features are the mean normalised red, green and blue values above zero, and the Gemm
scales them by --gain. Classes: red, green, blue. A pure red clip, normalised with
mean 0.5 and std 0.5, gives features (1, 0, 0) and probability
e^gain / (e^gain + 2) for "red" (0.9647 for gain 4).

    pip install onnx numpy
    python scripts/make_rgb3d_onnx.py models/rgb3d --layout NCTHW --frames 8 --size 112
    revstream-server --model-dir models/rgb3d   # a build with --features ort
"""

import argparse
import json
import pathlib

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

LABELS = ["red", "green", "blue"]


def build(layout, frames, size, kind, input_name, output_name, gain, batch):
    """The ONNX model for one layout; `batch` is "batch" (dynamic) or a number."""
    if layout == "NCTHW":
        shape = [batch, 3, frames, size, size]
    elif layout == "NTCHW":
        shape = [batch, frames, 3, size, size]
    else:
        shape = [batch, 3, size, size]
    spatial = [min(3, size)] * 2
    kernel = ([min(3, frames)] if layout != "NCHW" else []) + spatial
    weight = np.zeros([3, 3] + kernel, dtype=np.float32)
    for c in range(3):
        weight[c, c] = 1.0 / np.prod(kernel)
    init = [
        numpy_helper.from_array(weight, "conv.weight"),
        numpy_helper.from_array(np.zeros(3, np.float32), "conv.bias"),
        numpy_helper.from_array(gain * np.eye(3, dtype=np.float32), "fc.weight"),
        numpy_helper.from_array(np.zeros(3, np.float32), "fc.bias"),
    ]
    nodes = []
    x = input_name
    if layout == "NTCHW":
        nodes.append(helper.make_node("Transpose", [x], ["ncthw"], perm=[0, 2, 1, 3, 4]))
        x = "ncthw"
    scores = output_name if kind == "logits" else "logits"
    nodes += [
        helper.make_node("Conv", [x, "conv.weight", "conv.bias"], ["conv"], kernel_shape=kernel),
        helper.make_node("Relu", ["conv"], ["relu"]),
        helper.make_node("GlobalAveragePool", ["relu"], ["pool"]),
        helper.make_node("Flatten", ["pool"], ["features"], axis=1),
        helper.make_node("Gemm", ["features", "fc.weight", "fc.bias"], [scores], transB=1),
    ]
    if kind == "probabilities":
        nodes.append(helper.make_node("Softmax", [scores], [output_name], axis=1))
    graph = helper.make_graph(
        nodes,
        f"rgb_colour_{layout.lower()}",
        [helper.make_tensor_value_info(input_name, TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info(output_name, TensorProto.FLOAT, [batch, 3])],
        init,
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="make_rgb3d_onnx"
    )
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    return model


def config(args):
    """The folder's config.json: the model's I/O contract and preprocessing."""
    byte = args.value_range == "0..255"
    input_spec = {
        "name": args.input_name,
        "layout": args.layout,
        "frames": args.frames,
        "size": args.size,
        "short_side": args.short_side,
        "value_range": args.value_range,
        "mean": [127.5] * 3 if byte else [0.5] * 3,
        "std": [127.5] * 3 if byte else [0.5] * 3,
    }
    if args.frame_stride:
        input_spec["frame_stride"] = args.frame_stride
    return {
        "format": "onnx",
        "file": "model.onnx",
        "input": input_spec,
        "output": {"name": args.output_name, "kind": args.output_kind},
        "segments": args.segments,
        "labels": LABELS,
    }


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("out", type=pathlib.Path, help="model folder to write")
    p.add_argument("--layout", choices=["NCTHW", "NTCHW", "NCHW"], default="NCTHW")
    p.add_argument("--frames", type=int, default=8, help="T (1 for NCHW)")
    p.add_argument("--size", type=int, default=112, help="crop side")
    p.add_argument("--short-side", type=int, help="resize before the crop (default size * 8 / 7)")
    p.add_argument("--frame-stride", type=int, default=0, help="0: spread the T frames")
    p.add_argument("--value-range", choices=["0..1", "0..255"], default="0..1")
    p.add_argument("--output-kind", choices=["logits", "probabilities"], default="logits")
    p.add_argument("--input-name", default="video")
    p.add_argument("--output-name", default="scores")
    p.add_argument("--segments", type=int, default=1)
    p.add_argument("--gain", type=float, default=4.0, help="logit per unit of colour")
    p.add_argument("--fixed-batch", action="store_true", help="batch axis fixed at 1")
    args = p.parse_args()
    if args.layout == "NCHW":
        args.frames = 1
    if args.short_side is None:
        args.short_side = args.size * 8 // 7
    model = build(
        args.layout,
        args.frames,
        args.size,
        args.output_kind,
        args.input_name,
        args.output_name,
        args.gain,
        1 if args.fixed_batch else "batch",
    )
    args.out.mkdir(parents=True, exist_ok=True)
    onnx.save(model, args.out / "model.onnx")
    (args.out / "config.json").write_text(json.dumps(config(args), indent=2) + "\n")
    print(args.out / "model.onnx")


if __name__ == "__main__":
    main()
