//! From cached videos to the network's input tensors, sampled as the server samples.
//!
//! T positions are spread over the video (TSN segments); each position is a clip of
//! L + 1 consecutive frames: its first frame is the RGB input and its L flow fields the
//! motion input, through the same arithmetic as the server's (`artifact::inputs`).
//! Evaluation centres each position in its segment exactly as the server does
//! (`pipeline::preprocess::strided_clip_starts`; `tests/train_serve_inputs.rs`);
//! training picks a random point in each segment.

use candle_core::{Device, Tensor};
use rand::Rng;
use rand::rngs::StdRng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::augment::Transform;
use super::cache::CachedVideo;
use crate::Result;
use crate::artifact::{ModelSpec, inputs};

/// Input geometry and normalisation (what `config.json`'s preprocessing records).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InputSpec {
    /// Positions per clip (T).
    pub frames: usize,
    /// Flow fields per position (L).
    pub flow_stack: usize,
    /// Square input side.
    pub size: usize,
    /// RGB mean per channel (0..1 scale).
    pub mean: [f32; 3],
    /// RGB standard deviation per channel (0..1 scale).
    pub std: [f32; 3],
}

impl InputSpec {
    /// The input a model folder's config describes.
    pub fn of(spec: &ModelSpec) -> InputSpec {
        InputSpec {
            frames: spec.architecture.frames,
            flow_stack: spec.architecture.flow_stack,
            size: spec.architecture.input_size,
            mean: spec.preprocessing.mean,
            std: spec.preprocessing.std,
        }
    }
}

/// First frame of each of `t` positions with `l` flows in a video of `n` frames;
/// `rng` picks a random point in each segment (training), otherwise its centre.
pub fn positions(n: usize, t: usize, l: usize, rng: Option<&mut StdRng>) -> Vec<usize> {
    let share = n as f64 / t.max(1) as f64;
    let last = n.saturating_sub(l + 1);
    let half = (l + 1) as f64 / 2.0;
    let mut rng = rng;
    (0..t)
        .map(|i| {
            let centre = match rng.as_deref_mut() {
                Some(r) => i as f64 * share + r.random_range(0.0..share.max(f64::EPSILON)),
                None => (i as f64 + 0.5) * share,
            };
            ((centre - half).max(0.0).floor() as usize).min(last)
        })
        .collect()
}

/// Appends one sample's RGB `(T, 3, S, S)` and flow `(T, 2L, S, S)` values.
pub fn push_sample(
    video: &CachedVideo,
    spec: &InputSpec,
    starts: &[usize],
    transform: &Transform,
    rgb: &mut Vec<f32>,
    flow: &mut Vec<f32>,
) {
    let s = spec.size;
    let plane = s * s;
    let zoom = transform.zoom(s);
    let mut buf = vec![0f32; plane];
    for &start in starts {
        let frame = video.frame(start.min(video.frames - 1));
        for c in 0..3 {
            for (b, x) in
                buf.iter_mut()
                    .zip(inputs::rgb_channel(frame, c, spec.mean[c], spec.std[c]))
            {
                *b = x;
            }
            transform.apply(&buf, s, rgb);
        }
        for k in 0..spec.flow_stack {
            let (u, v) = video.flow((start + k).min(video.frames - 2));
            for (q, sign) in [(u, if transform.flip { -1.0 } else { 1.0 }), (v, 1.0)] {
                for (b, x) in buf.iter_mut().zip(inputs::flow_plane(q)) {
                    *b = x;
                }
                let from = flow.len();
                transform.apply(&buf, s, flow);
                for x in &mut flow[from..] {
                    *x = (*x * zoom * sign).clamp(-1.0, 1.0);
                }
            }
        }
    }
}

/// Builds the samples `(video index, starts, transform)` of `set` in parallel and
/// concatenates them in order: the RGB and flow values [`to_tensors`] takes.
pub fn build(
    plans: &[(usize, Vec<usize>, Transform)],
    set: &[(CachedVideo, usize)],
    spec: &InputSpec,
) -> (Vec<f32>, Vec<f32>) {
    let parts: Vec<(Vec<f32>, Vec<f32>)> = plans
        .par_iter()
        .map(|(k, starts, t)| {
            let (mut rgb, mut flow) = (Vec::new(), Vec::new());
            push_sample(&set[*k].0, spec, starts, t, &mut rgb, &mut flow);
            (rgb, flow)
        })
        .collect();
    let (rgb, flow): (Vec<_>, Vec<_>) = parts.into_iter().unzip();
    (rgb.concat(), flow.concat())
}

/// Stacks samples into `(B, T, 3, S, S)` and `(B, T, 2L, S, S)` tensors.
pub fn to_tensors(
    rgb: Vec<f32>,
    flow: Vec<f32>,
    batch: usize,
    spec: &InputSpec,
) -> Result<(Tensor, Tensor)> {
    let (t, s) = (spec.frames, spec.size);
    let rgb = Tensor::from_vec(rgb, (batch, t, 3, s, s), &Device::Cpu)?;
    let flow = Tensor::from_vec(flow, (batch, t, 2 * spec.flow_stack, s, s), &Device::Cpu)?;
    Ok((rgb, flow))
}
