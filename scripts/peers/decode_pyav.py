#!/usr/bin/env python3
"""PyAV peer of benches/decode.rs: the same sampling, resize and crop, the same algorithm.

Opens the video, demuxes every packet once to index frames and keyframes, then decodes
the sampled frames, seeking only when a keyframe lets it skip packets and skipping
unreferenced frames that are not sampled (as revstream does), converts each sampled frame to RGB24 (bilinear) and centre-crops it.

    python3 scripts/peers/decode_pyav.py VIDEO --case frames16 --repeat 5

prints one JSON line: {"case", "video", "median_s", "times_s", "frames"}.
"""

import argparse
import json
import statistics
import time

import av

MIN_SKIP = 4  # as revstream's SeekPolicy::Auto

CASES = {"frames16": (16, 1, 1), "clips8x11": (8, 11, 1)}  # (segments, clip_len, stride)


def segment_starts(frames, segments, clip_len, stride):
    """Centred clip starts, exactly as revstream::video::segment_starts."""
    span = (max(clip_len, 1) - 1) * stride + 1
    max_start = max(frames - span, 0)
    seg_len = frames / max(segments, 1)
    starts = []
    for k in range(segments):
        offset = (seg_len - span) / 2.0
        starts.append(min(max(int(round_half_away(k * seg_len + offset)), 0), max_start))
    return starts


def round_half_away(x):
    return int(x + 0.5) if x >= 0 else -int(-x + 0.5)


def scaled_size(w, h, s):
    if w <= h:
        return s, round_half_away(h * s / w)
    return round_half_away(w * s / h), s


def index(container, stream):
    """Demux every packet: sorted presentation timestamps and keyframes (pos, safe rank, pts)."""
    packets = [(p.pts, p.is_keyframe) for p in container.demux(stream) if p.size > 0]
    pts_sorted = sorted(p for p, _ in packets)
    rank = {p: i for i, p in enumerate(pts_sorted)}
    keys, seen = [], -1
    for pos, (pts, key) in enumerate(packets):
        if key:
            keys.append((pos, max(seen + 1, rank[pts]), pts))
        seen = max(seen, rank[pts])
    pos_of = {pts: pos for pos, (pts, _) in enumerate(packets)}
    return packets, pts_sorted, rank, keys, pos_of


def sample(path, case, short_side, crop):
    segments, clip_len, stride = CASES[case]
    container = av.open(path)
    stream = container.streams.video[0]
    stream.thread_type = "FRAME"
    stream.thread_count = 2
    packets, pts_sorted, rank, keys, pos_of = index(container, stream)
    frames = len(pts_sorted)
    starts = segment_starts(frames, segments, clip_len, stride)
    plans = [[min(s + i * stride, frames - 1) for i in range(clip_len)] for s in starts]
    targets = sorted({t for plan in plans for t in plan})
    sw, sh = scaled_size(stream.codec_context.width, stream.codec_context.height, short_side)
    x0, y0 = (sw - crop) // 2, (sh - crop) // 2

    wanted_ranks = set(targets)
    decoding_all = True
    out = {}
    container.seek(packets[0][0], stream=stream, backward=True)
    pos, nxt = 0, 0
    accept_from = 0
    done = False
    while not done and nxt < len(targets):
        sought = False
        key = max((k for k in keys if k[1] <= targets[nxt]), default=None)
        if key is not None and key[0] > pos + MIN_SKIP:
            container.seek(key[2], stream=stream, backward=True)
            sought = True
        for packet in container.demux(stream):
            if sought:
                if not packet.is_keyframe or packet.pts not in pos_of:
                    continue
                k = next((k for k in keys if k[0] == pos_of[packet.pts]), None)
                pos, accept_from, sought = k[0], k[1], False
            pos += 1
            # As revstream: frames nothing needs and nothing references are skipped.
            wanted = packet.pts is None or rank.get(packet.pts) in wanted_ranks
            if wanted != decoding_all:
                decoding_all = wanted
                stream.codec_context.skip_frame = "DEFAULT" if wanted else "NONREF"
            for frame in packet.decode():
                r = rank.get(frame.pts)
                if r is None or r < accept_from:
                    continue
                while nxt < len(targets) and targets[nxt] <= r:
                    rgb = frame.reformat(width=sw, height=sh, format="rgb24", interpolation="BILINEAR")
                    out[targets[nxt]] = rgb.to_ndarray()[y0 : y0 + crop, x0 : x0 + crop].copy()
                    nxt += 1
            if packet.size == 0:
                done = True
            if nxt < len(targets):
                key = max((k for k in keys if k[1] <= targets[nxt]), default=None)
                if key is not None and key[0] > pos + MIN_SKIP:
                    break  # seek for the next target
            else:
                break
        else:
            done = True
    container.close()
    return [[out[t] for t in plan] for plan in plans]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("video")
    parser.add_argument("--case", choices=sorted(CASES), default="frames16")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--short-side", type=int, default=256)
    parser.add_argument("--crop", type=int, default=224)
    args = parser.parse_args()
    sample(args.video, args.case, args.short_side, args.crop)  # warm-up
    times = []
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        clips = sample(args.video, args.case, args.short_side, args.crop)
        times.append(time.perf_counter() - t0)
    print(json.dumps({
        "case": args.case,
        "video": args.video,
        "median_s": statistics.median(times),
        "times_s": times,
        "frames": sum(len(c) for c in clips),
        "pyav": av.__version__,
    }))


if __name__ == "__main__":
    main()
