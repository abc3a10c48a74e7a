#!/usr/bin/env python3
"""Checks an ONNX file with the reference checker and, given inputs, runs it with the
Python onnxruntime (the peer of revstream's Rust ONNX Runtime backend and of candle).

Usage: onnx_check.py MODEL [--inputs DIR]

DIR holds rgb.f32 and flow.f32 (little-endian float32, C order) and shapes.json
({"rgb": [...], "flow": [...]}); every graph output is written to DIR/outputs.json as
{name: {"shape": [...], "data": [...]}}. Prints a JSON summary on stdout: ir_version,
opsets, and each input's and output's dims (strings for symbolic ones).
Needs: pip install onnx onnxruntime numpy.
"""
import argparse
import json
import pathlib
import sys

import numpy as np
import onnx
import onnxruntime


def dims(value):
    return [d.dim_param if d.dim_param else d.dim_value for d in value.type.tensor_type.shape.dim]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("model")
    parser.add_argument("--inputs")
    args = parser.parse_args()

    model = onnx.load(args.model)
    # full_check also runs strict shape inference over the whole graph.
    onnx.checker.check_model(model, full_check=True)
    summary = {
        "ir_version": model.ir_version,
        "opsets": {o.domain or "ai.onnx": o.version for o in model.opset_import},
        "inputs": {v.name: dims(v) for v in model.graph.input},
        "outputs": {v.name: dims(v) for v in model.graph.output},
        "nodes": len(model.graph.node),
        "onnx": onnx.__version__,
        "onnxruntime": onnxruntime.__version__,
    }
    if args.inputs:
        folder = pathlib.Path(args.inputs)
        shapes = json.loads((folder / "shapes.json").read_text())
        feeds = {
            name: np.fromfile(folder / f"{name}.f32", dtype="<f4").reshape(shape)
            for name, shape in shapes.items()
        }
        session = onnxruntime.InferenceSession(args.model, providers=["CPUExecutionProvider"])
        names = [o.name for o in session.get_outputs()]
        results = session.run(names, feeds)
        outputs = {
            name: {"shape": list(r.shape), "data": r.astype(np.float64).ravel().tolist()}
            for name, r in zip(names, results)
        }
        (folder / "outputs.json").write_text(json.dumps(outputs))
    json.dump(summary, sys.stdout)
    print()


if __name__ == "__main__":
    main()
