#!/usr/bin/env bash
# Trains the bundled default model from nothing: MotionShapes clips, flow cache, reversible
# training, then evaluation on a fresh test split and two differently rendered sets.
# Usage: scripts/train-default-model.sh [WORK_DIR]   (default: data/default-model)
# The model lands in WORK_DIR/run/model; copy config.json, model.safetensors and
# labels.txt into models/default/ to ship it. Prints the wall time of each stage.
set -euo pipefail

cd "$(dirname "$0")/.."
W=${1:-data/default-model}
mkdir -p "$W"
cargo build --release --bin revstream-trainer
T=target/release/revstream-trainer

stage() { # stage NAME CMD...: runs CMD, logs to $W/NAME.log, prints its wall time
    local name=$1 t0=$SECONDS
    shift
    "$@" >"$W/$name.log" 2>&1
    echo "$name: $((SECONDS - t0)) s"
}

start=$SECONDS
# Training clips: five renderings (sizes, rates, lengths) in one folder.
synth_train() {
    $T synth --out "$W/clips" --per-class 60 --seed 1 --size 112x112 --fps 25 --seconds 2
    $T synth --out "$W/clips" --per-class 50 --seed 2 --size 128x96 --fps 15 --seconds 2.4
    $T synth --out "$W/clips" --per-class 50 --seed 3 --size 96x96 --fps 30 --seconds 1.6
    $T synth --out "$W/clips" --per-class 50 --seed 4 --size 112x112 --fps 25 --seconds 2
    $T synth --out "$W/clips" --per-class 30 --seed 5 --size 160x120 --fps 12 --seconds 3
}
stage synth synth_train
stage prepare $T prepare --data "$W/clips" --cache "$W/cache" --size 64 --flow-bound 4 \
    --preset accurate --flow-fps 12.5 --flow-supersample 2
stage train $T train --cache "$W/cache" --out "$W/run" --arch tiny --frames 8 --flow-stack 4 \
    --base-width 8 --stem-stride 2 --units 2,1,1,1 --temporal-units 1.0,2.0 --epochs 10 --batch-size 16 \
    --optimizer adamw --lr 0.004 --weight-decay 0.0001 --warmup-epochs 0.3 \
    --no-flip --min-crop-scale 0.85 --seed 0
echo "end to end (synth + prepare + train): $((SECONDS - start)) s"

# Evaluation: a fresh test split like the first rendering, and two robustness sets in
# other sizes, rates and codecs (VP9/WebM and MPEG-4 part 2/AVI through the ffmpeg CLI).
test_sets() {
    $T synth --out "$W/test" --per-class 20 --seed 100 --size 112x112 --fps 25 --seconds 2
    $T synth --out "$W/robust_h264" --per-class 10 --seed 500 --size 160x120 --fps 12 --seconds 3
    $T synth --out "$W/robust2_h264" --per-class 10 --seed 600 --size 200x150 --fps 50 --seconds 1.6
    for f in "$W"/robust_h264/*/*.mp4; do
        d=$W/robust_vp9/$(basename "$(dirname "$f")")
        mkdir -p "$d"
        ffmpeg -nostdin -v error -y -i "$f" -c:v libvpx-vp9 -b:v 300k -deadline realtime \
            -cpu-used 8 "$d/$(basename "$f" .mp4).webm"
    done
    for f in "$W"/robust2_h264/*/*.mp4; do
        d=$W/robust2_mpeg4/$(basename "$(dirname "$f")")
        mkdir -p "$d"
        ffmpeg -nostdin -v error -y -i "$f" -c:v mpeg4 -q:v 6 "$d/$(basename "$f" .mp4).avi"
    done
}
stage test_sets test_sets
for set in test robust_vp9 robust2_mpeg4; do
    stage "eval_$set" $T eval --model "$W/run/model" --data "$W/$set" \
        --cache "$W/cache_$set" --out "$W/eval_$set"
    python3 - "$W/eval_$set/report.json" "$set" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
f, g, m = r["fused"], r["rgb"], r["flow"]
print(f"{sys.argv[2]}: fused {f['top1']:.3f} rgb {g['top1']:.3f} flow {m['top1']:.3f} top-5 {f['top5']:.3f}")
PY
done
