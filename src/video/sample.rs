//! Which frames to take: sampling plans, resize settings and the frames they yield.

use std::borrow::Cow;

use rand::{Rng, SeedableRng, rngs::StdRng};

/// Which frames [`super::Video::sample`] returns.
#[derive(Debug, Clone, PartialEq)]
pub enum Sampling {
    /// TSN-style: `segments` equal segments, from each a clip of `clip_len` consecutive frames
    /// taken `stride` frames apart, centred in the segment.
    Segments {
        segments: usize,
        clip_len: usize,
        stride: usize,
    },
    /// As `Segments`, but each clip starts at a random place in its segment (training),
    /// drawn from a generator seeded with `seed`.
    RandomSegments {
        segments: usize,
        clip_len: usize,
        stride: usize,
        seed: u64,
    },
    /// Explicit start frame indices, each giving a clip of `clip_len` frames `stride` apart.
    Starts {
        starts: Vec<u64>,
        clip_len: usize,
        stride: usize,
    },
    /// Explicit timestamps in seconds from the first frame, one frame each.
    Timestamps(Vec<f64>),
}

/// How sampled frames are resized: shorter side to `short_side`, then a centre crop.
///
/// Bilinear. `short_side == 0` keeps the decoded size. A crop larger than the resized
/// frame enlarges the frame first so the crop fits; a zero crop side counts as 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resize {
    /// Target length of the frame's shorter side, in pixels (0: unchanged).
    pub short_side: u32,
    /// Centre crop (width, height) taken after resizing.
    pub crop: Option<(u32, u32)>,
}

impl Resize {
    /// Frames at their decoded size (rotation still applied).
    pub fn native() -> Self {
        Resize {
            short_side: 0,
            crop: None,
        }
    }
}

/// Consecutive (strided) frames taken from one place in the video.
#[derive(Debug, Clone, PartialEq)]
pub struct Clip {
    /// Index of the clip's first frame in presentation order.
    pub start_frame: u64,
    /// The clip's frames, in order.
    pub frames: Vec<RgbFrame>,
}

/// One decoded frame as packed RGB24.
#[derive(Debug, Clone, PartialEq)]
pub struct RgbFrame {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Presentation time in seconds from the video's first frame.
    pub pts_s: f64,
    /// Packed RGB24, row-major, no padding: `width * height * 3` bytes.
    pub data: Vec<u8>,
}

impl RgbFrame {
    /// The frame shrunk `factor` times by averaging each `factor` x `factor` block
    /// (rows and columns past the last whole block are dropped); itself for factor 1.
    pub fn box_downsample(&self, factor: u32) -> Cow<'_, RgbFrame> {
        if factor <= 1 {
            return Cow::Borrowed(self);
        }
        let (f, sw) = (factor as usize, self.width as usize);
        let (w, h) = (sw / f, self.height as usize / f);
        let half = (f * f / 2) as u32;
        let mut data = Vec::with_capacity(w * h * 3);
        for by in 0..h {
            for bx in 0..w {
                let mut sum = [0u32; 3];
                for y in by * f..(by + 1) * f {
                    let row = &self.data[(y * sw + bx * f) * 3..(y * sw + (bx + 1) * f) * 3];
                    for px in row.chunks_exact(3) {
                        sum.iter_mut().zip(px).for_each(|(s, &v)| *s += v as u32);
                    }
                }
                data.extend(sum.map(|s| ((s + half) / (f * f) as u32) as u8));
            }
        }
        Cow::Owned(RgbFrame {
            width: w as u32,
            height: h as u32,
            pts_s: self.pts_s,
            data,
        })
    }
}

/// The frame indices one clip needs, in clip order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ClipPlan {
    pub start: u64,
    pub frames: Vec<u64>,
}

impl Sampling {
    /// The frames each clip needs for a video of `frames` frames whose frame `i` starts
    /// at `times[i]` seconds. Indices past the end are clamped to the last frame.
    pub(crate) fn plan(&self, frames: u64, times: &dyn Fn(u64) -> f64) -> Vec<ClipPlan> {
        let last = frames.saturating_sub(1);
        let clip = |start: u64, clip_len: usize, stride: usize| ClipPlan {
            start,
            frames: (0..clip_len as u64)
                .map(|i| {
                    start
                        .saturating_add(i.saturating_mul(stride as u64))
                        .min(last)
                })
                .collect(),
        };
        match self {
            Sampling::Segments {
                segments,
                clip_len,
                stride,
            } => segment_starts(frames, *segments, *clip_len, *stride, None)
                .into_iter()
                .map(|s| clip(s, *clip_len, *stride))
                .collect(),
            Sampling::RandomSegments {
                segments,
                clip_len,
                stride,
                seed,
            } => {
                let mut rng = StdRng::seed_from_u64(*seed);
                segment_starts(frames, *segments, *clip_len, *stride, Some(&mut rng))
                    .into_iter()
                    .map(|s| clip(s, *clip_len, *stride))
                    .collect()
            }
            Sampling::Starts {
                starts,
                clip_len,
                stride,
            } => starts
                .iter()
                .map(|&s| clip(s.min(last), *clip_len, *stride))
                .collect(),
            Sampling::Timestamps(ts) => ts
                .iter()
                .map(|&t| {
                    let index = frame_at(frames, t, times);
                    ClipPlan {
                        start: index,
                        frames: vec![index],
                    }
                })
                .collect(),
        }
    }
}

/// Start frames of `segments` clips spanning `(clip_len - 1) * stride + 1` frames each:
/// centred in their segment, or uniformly random in it when `rng` is given.
pub fn segment_starts(
    frames: u64,
    segments: usize,
    clip_len: usize,
    stride: usize,
    mut rng: Option<&mut StdRng>,
) -> Vec<u64> {
    let span = (clip_len.max(1) as u64 - 1).saturating_mul(stride as u64) + 1;
    let max_start = frames.saturating_sub(span);
    let seg_len = frames as f64 / segments.max(1) as f64;
    (0..segments)
        .map(|k| {
            let seg_start = k as f64 * seg_len;
            let room = seg_len - span as f64;
            let offset = match rng.as_deref_mut() {
                Some(rng) if room > 0.0 => rng.random_range(0.0..=room),
                _ => room / 2.0,
            };
            ((seg_start + offset).round().max(0.0) as u64).min(max_start)
        })
        .collect()
}

/// The frame on screen at `t` seconds: the last one starting at or before `t`.
fn frame_at(frames: u64, t: f64, times: &dyn Fn(u64) -> f64) -> u64 {
    if frames == 0 || t.is_nan() {
        return 0;
    }
    // Timestamps are rounded in containers; a tolerance keeps `t = i / fps` on frame i.
    let t = t + 1e-6;
    let (mut lo, mut hi) = (0u64, frames);
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if times(mid) <= t { lo = mid } else { hi = mid }
    }
    lo
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn box_downsample_averages_blocks_with_rounding() {
        // 4x2 frame, factor 2: two blocks; red channel 0,1,2,3 and 10,11,12,13.
        let px = |r: u8| [r, 200, 7];
        let rows = [[0u8, 1, 10, 11], [2, 3, 12, 13]];
        let data = rows
            .iter()
            .flat_map(|r| r.iter().flat_map(|&v| px(v)))
            .collect();
        let frame = RgbFrame {
            width: 4,
            height: 2,
            pts_s: 0.5,
            data,
        };
        let small = frame.box_downsample(2);
        assert_eq!((small.width, small.height, small.pts_s), (2, 1, 0.5));
        // (0+1+2+3)/4 = 1.5 -> 2, (10+11+12+13)/4 = 11.5 -> 12.
        assert_eq!(small.data, vec![2, 200, 7, 12, 200, 7]);
        assert!(matches!(frame.box_downsample(1), Cow::Borrowed(f) if *f == frame));
    }

    #[test]
    fn centred_segments_cover_the_video_evenly() {
        // 100 frames, 4 segments of 25, clips of 5 frames: centred at 12.5, 37.5, ...
        let starts = segment_starts(100, 4, 5, 1, None);
        assert_eq!(starts, vec![10, 35, 60, 85]);
        let plans = Sampling::Segments {
            segments: 4,
            clip_len: 5,
            stride: 1,
        }
        .plan(100, &|i| i as f64);
        assert_eq!(plans[3].frames, vec![85, 86, 87, 88, 89]);
    }

    #[test]
    fn random_segments_stay_inside_their_segment_and_repeat_with_the_seed() {
        let mut a = StdRng::seed_from_u64(7);
        let mut b = StdRng::seed_from_u64(7);
        let sa = segment_starts(300, 3, 8, 2, Some(&mut a));
        assert_eq!(sa, segment_starts(300, 3, 8, 2, Some(&mut b)));
        for (k, s) in sa.iter().enumerate() {
            assert!(
                *s >= k as u64 * 100 && s + 15 <= (k as u64 + 1) * 100,
                "start {s} in segment {k}"
            );
        }
    }

    #[test]
    fn clips_past_the_end_repeat_the_last_frame() {
        let plans = Sampling::Starts {
            starts: vec![8],
            clip_len: 4,
            stride: 2,
        }
        .plan(10, &|i| i as f64);
        assert_eq!(plans[0].frames, vec![8, 9, 9, 9]);
        let short = Sampling::Segments {
            segments: 2,
            clip_len: 11,
            stride: 1,
        }
        .plan(3, &|i| i as f64);
        assert!(
            short
                .iter()
                .all(|c| c.start == 0 && c.frames.len() == 11 && c.frames[10] == 2)
        );
    }

    #[test]
    fn timestamps_pick_the_frame_on_screen() {
        let times = |i: u64| i as f64 / 25.0;
        let plans = Sampling::Timestamps(vec![0.0, 0.039, 0.04, 1.0, 99.0, -1.0]).plan(50, &times);
        let picked: Vec<u64> = plans.iter().map(|p| p.start).collect();
        assert_eq!(picked, vec![0, 0, 1, 25, 49, 0]);
    }
}
