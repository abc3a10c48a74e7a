//! Flow as network input: quantisation to 8 bits (the two-stream JPEG convention),
//! stacking of consecutive flows, horizontal flips, mean-flow subtraction.

use super::{Flow, FlowError};

/// The usual clipping bound, in pixels.
pub const DEFAULT_BOUND: f32 = 20.0;

/// Clips u and v to ±`bound` (> 0) and maps them linearly to 0..=255 (0 px → 127.5);
/// NaN maps to 0.
pub fn quantize(flow: &Flow, bound: f32) -> (Vec<u8>, Vec<u8>) {
    let q = |c: &[f32]| -> Vec<u8> {
        let scale = 255.0 / (2.0 * bound);
        // max/min rather than clamp: no panic on a bad bound; `as u8` saturates.
        c.iter()
            .map(|&x| ((x.max(-bound).min(bound) + bound) * scale).round() as u8)
            .collect()
    };
    (q(&flow.u), q(&flow.v))
}

/// The inverse of [`quantize`]: u8 images back to a flow in pixels (within
/// `bound / 255` of the clipped original).
pub fn dequantize(
    x: &[u8],
    y: &[u8],
    width: usize,
    height: usize,
    bound: f32,
) -> Result<Flow, FlowError> {
    for c in [x, y] {
        if c.len() != width * height {
            return Err(FlowError::BadLength {
                len: c.len(),
                width,
                height,
                channels: 1,
            });
        }
    }
    let d = |c: &[u8]| -> Vec<f32> {
        let step = 2.0 * bound / 255.0;
        c.iter().map(|&q| f32::from(q) * step - bound).collect()
    };
    Ok(Flow {
        width,
        height,
        u: d(x),
        v: d(y),
    })
}

/// 2L channels of L consecutive flows (u1, v1, u2, v2, …), channel-major, in pixels.
#[derive(Debug, Clone, PartialEq)]
pub struct FlowStack {
    /// Columns.
    pub width: usize,
    /// Rows.
    pub height: usize,
    /// Number of channels (twice the number of flows).
    pub channels: usize,
    /// `channels * height * width` values.
    pub data: Vec<f32>,
}

/// Stacks consecutive flows of one size into 2L channels.
pub fn stack(flows: &[Flow]) -> Result<FlowStack, FlowError> {
    let first = flows
        .first()
        .ok_or_else(|| FlowError::InvalidParams("cannot stack zero flows".into()))?;
    let (w, h) = (first.width, first.height);
    let mut data = Vec::with_capacity(2 * flows.len() * w * h);
    for f in flows {
        if (f.width, f.height) != (w, h) {
            return Err(FlowError::SizeMismatch(w, h, f.width, f.height));
        }
        if f.u.len() != w * h || f.v.len() != w * h {
            return Err(FlowError::BadLength {
                len: f.u.len().min(f.v.len()),
                width: w,
                height: h,
                channels: 1,
            });
        }
        data.extend_from_slice(&f.u);
        data.extend_from_slice(&f.v);
    }
    Ok(FlowStack {
        width: w,
        height: h,
        channels: 2 * flows.len(),
        data,
    })
}

/// Mirrors every channel left to right and negates the u channels (a flipped scene
/// moves the other way horizontally).
pub fn flip_horizontal(stack: &mut FlowStack) {
    let plane = stack.width * stack.height;
    for (c, channel) in stack.data.chunks_exact_mut(plane.max(1)).enumerate() {
        let negate = c % 2 == 0;
        for row in channel.chunks_exact_mut(stack.width.max(1)) {
            row.reverse();
            if negate {
                row.iter_mut().for_each(|x| *x = -*x);
            }
        }
    }
}

/// Subtracts each channel's mean: removes a global (camera) translation per flow.
pub fn subtract_mean(stack: &mut FlowStack) {
    let plane = stack.width * stack.height;
    for channel in stack.data.chunks_exact_mut(plane.max(1)) {
        let mean = channel.iter().map(|&x| f64::from(x)).sum::<f64>() / channel.len() as f64;
        channel.iter_mut().for_each(|x| *x -= mean as f32);
    }
}
