#!/usr/bin/env bash
# One run of every GPU check: GPU vs CPU results (model forward, conv op and its
# gradients, TV-L1), the conv op's speed against candle's stock op and PyTorch, the two-stream
# r50 forward in f32/bf16 against PyTorch eager in the same run, batched TV-L1 pairs/s,
# and reversible vs plain training steps (time, and peak device memory at 8 to 64 units:
# reversible training's memory must stay flat in depth). Full results go to RESULTS_DIR as JSON; one
# short table is printed at the end.
#
#   scripts/gpu-check.sh RESULTS_DIR [revstream-gpu-check options, e.g. --only conv,parity]
#
# Needs no Rust toolchain: it runs a prebuilt revstream-gpu-check (`make gpu-bundle`
# builds one with CUDA and packs it with this script, the default model and the PyTorch
# peer; on the GPU machine: tar xzf gpu-bundle.tar.gz && gpu-bundle/scripts/gpu-check.sh out).
# Binary: $REVSTREAM_GPU_CHECK_BIN, else bin/ beside scripts/ (the bundle), else
# target-cuda/release, target/release, target/debug. Python for the peer and the table:
# $REVSTREAM_PEER_PYTHON, else /opt/torch/.venv/bin/python when present, else python3.
# Without a GPU (or with a CPU-only build) the CPU parts run and the GPU parts are
# reported as skipped.
set -euo pipefail
[ $# -ge 1 ] || { echo "usage: $0 RESULTS_DIR [revstream-gpu-check options]" >&2; exit 2; }
OUT=$1
shift
ROOT=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$OUT"

BIN=${REVSTREAM_GPU_CHECK_BIN:-}
if [ -z "$BIN" ]; then
  for b in bin target-cuda/release target/release target/debug; do
    if [ -x "$ROOT/$b/revstream-gpu-check" ]; then BIN=$ROOT/$b/revstream-gpu-check; break; fi
  done
fi
[ -n "$BIN" ] || { echo "no revstream-gpu-check binary: run 'make gpu-bundle' (or cargo build --bin revstream-gpu-check)" >&2; exit 1; }
PY=${REVSTREAM_PEER_PYTHON:-}
if [ -z "$PY" ]; then
  if [ -x /opt/torch/.venv/bin/python ]; then PY=/opt/torch/.venv/bin/python; else PY=python3; fi
fi

echo "gpu-check: $BIN -> $OUT" >&2
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader > "$OUT/gpu.txt" 2>&1 || true
"$BIN" --out "$OUT" --model-dir "$ROOT/models/default" "$@" 2> >(tee "$OUT/gpu-check.log" >&2)

# The PyTorch peers, only for the sections whose GPU runs happened (same frames per
# stream, same conv shapes).
peer() {  # peer NAME SECTION SCRIPT ARGS...
  local name=$1 section=$2; shift 2
  if grep -q '"runs"' "$OUT/$section.json" 2>/dev/null; then
    "$PY" "$@" --out "$OUT/$name.json" 2> >(tee "$OUT/$name.log" >&2) \
      || echo "{\"skipped\": \"the PyTorch run failed: see $name.log\"}" > "$OUT/$name.json"
  else
    echo '{"skipped": "no GPU run of this section"}' > "$OUT/$name.json"
  fi
}
peer torch forward "$ROOT/scripts/peers/torch_forward.py" --frames 32,64,128
peer torch_conv conv "$ROOT/scripts/peers/torch_conv.py" --shapes "$OUT/conv.json"

"$PY" - "$OUT" <<'PYEOF' | tee "$OUT/table.md"
import json, os, sys
out = sys.argv[1]
def load(name):
    try:
        with open(os.path.join(out, name + ".json")) as f:
            return json.load(f)
    except FileNotFoundError:
        return {"skipped": "missing"}
def num(x, fmt="{:.3g}"):
    return fmt.format(x) if isinstance(x, (int, float)) else str(x)
device, parity, fwd, flow, train, torch = (load(n) for n in ("device", "parity", "forward", "flow", "train", "torch"))
conv, torch_conv = load("conv"), load("torch_conv")
print(f"## revstream GPU check ({device.get('gpu')})\n")
print("| check | result |\n|---|---|")
missing = [n for n, d in (("parity", parity), ("conv", conv), ("forward", fwd), ("flow", flow), ("train", train)) if d.get("skipped") == "missing"]
if missing:
    print(f"| sections not run (--only) | {', '.join(missing)} |")
for name in ("default", "r50_random") if "parity" not in missing else ():
    p = parity.get(name, {})
    print(f"| forward {name}: GPU vs CPU rel. error f32 / bf16 | {num(p.get('rel_error_f32', p.get('gpu')))} / {num(p.get('rel_error_bf16', p.get('gpu')))} (CPU f32 forward {num(p.get('cpu_f32_forward_s'))} s) |")
for row in flow.get("parity", []):
    print(f"| TV-L1 {row['preset']} EPE: tensor-GPU vs CPU solver / tensor-CPU vs CPU solver | {num(row.get('tensor_gpu_epe_vs_cpu_solver', 'skipped'))} / {num(row.get('tensor_cpu_epe_vs_cpu_solver'))} px |")
    print(f"| TV-L1 {row['preset']} EPE vs truth: CPU solver / tensor-GPU | {num(row.get('cpu_solver_epe_vs_truth'))} / {num(row.get('tensor_gpu_epe_vs_truth', 'skipped'))} px |")
speed = flow.get("gpu_speed_fast")
if "flow" in missing:
    pass
elif isinstance(speed, list):
    print("| TV-L1 fast 340x256 on GPU, pairs/s (batch) | " + ", ".join(f"{r['pairs_per_s']:.0f} ({r['batch']})" for r in speed) + " |")
else:
    print(f"| TV-L1 fast 340x256 on GPU | {speed} |")
if "runs" in conv:
    peer = {r["name"]: r for r in torch_conv.get("runs", [])}
    print(f"| conv op on the GPU | {conv.get('ours')}; PyTorch {torch_conv.get('torch', torch_conv.get('skipped'))} |")
    for r in conv["runs"]:
        errs = " / ".join(num(r.get(f"{d}_rel_error_{t}", "n/a"), "{:.1e}") for d in ("f32", "bf16") for t in ("y", "dx", "dw"))
        print(f"| conv {r['name']}: rel. error vs CPU f32 y/dx/dw, bf16 y/dx/dw | {errs} |")
        t = peer.get(r["name"], {})
        for d in ("f32", "bf16"):
            cells = []
            for col in ("fwd", "fwd_bwd"):
                ours, stock, pt = r.get(f"{d}_ours_{col}_ms"), r.get(f"{d}_stock_{col}_ms"), t.get(f"{d}_{col}_ms")
                ratio = f", {ours / pt:.2f}x PyTorch" if isinstance(ours, float) and isinstance(pt, float) else ""
                cells.append(f"{col} {num(ours)} ms (stock {num(stock)}, PyTorch {num(pt)}{ratio})")
            nhwc = f"; PyTorch NHWC fwd {num(t.get('bf16_nhwc_fwd_ms'))} ms" if d == "bf16" else ""
            print(f"| conv {r['name']} {d} | " + "; ".join(cells) + nhwc + " |")
elif "conv" not in missing:
    print(f"| conv op on the GPU | {conv.get('gpu')} |")
torch_runs = {(r["dtype"], r["frames_per_stream"]): r for r in torch.get("runs", [])}
if "runs" in fwd:
    for r in fwd["runs"]:
        t = torch_runs.get((r["dtype"], r["frames_per_stream"]))
        peer = f"; PyTorch {t['frames_per_s']:.0f}, ratio {r['frames_per_s'] / t['frames_per_s']:.2f}x" if t else f"; PyTorch {torch.get('skipped', 'n/a')}"
        print(f"| r50 two-stream forward {r['dtype']}, {r['frames_per_stream']} frames/stream | {r['frames_per_s']:.0f} frames/s{peer} |")
elif "forward" not in missing:
    print(f"| r50 two-stream forward f32/bf16 | {fwd.get('gpu')} |")
for r in train.get("runs", []):
    print(f"| train step {r['units']} units ({train.get('device')}): plain / reversible | "
          f"{num(r.get('plain_s'))} s, {num(r.get('plain_peak_mb'), '{:.0f}')} MB / {num(r.get('reversible_s'))} s, {num(r.get('reversible_peak_mb'), '{:.0f}')} MB |")
# Reversible training's claim on the device (issue 31): peak memory flat in depth.
runs = [r for r in train.get("runs", []) if isinstance(r.get("reversible_peak_mb"), (int, float))]
if len(runs) > 1 and runs[0]["reversible_peak_mb"] > 0:
    lo, hi = runs[0], runs[-1]
    growth = lambda k: hi[k] / lo[k] if lo[k] > 0 else float("nan")
    verdict = "met" if growth("reversible_peak_mb") <= 1.1 else "NOT met"
    print(f"| train peak memory growth {lo['units']} -> {hi['units']} units: reversible / plain (goal reversible <= 1.1x) | "
          f"{growth('reversible_peak_mb'):.2f}x / {growth('plain_peak_mb'):.2f}x ({verdict}) |")
PYEOF
echo "gpu-check: full results in $OUT" >&2
