//! Optical flow: dual TV-L1, flow encoding and stacking, Middlebury .flo files.

pub mod colour;
pub mod encode;
pub mod flo;
mod median;
mod method;
mod pyramid;
pub mod synth;
mod tvl1;
pub mod tvl1_tensor;
mod warp;

use serde::{Deserialize, Serialize};

pub use method::FlowMethod;
pub use tvl1::{try_tvl1, tvl1};
pub use tvl1_tensor::tvl1_batch;

/// Why a flow computation or a flow file was refused.
#[derive(Debug, thiserror::Error)]
pub enum FlowError {
    /// The two frames differ in size.
    #[error("frame sizes differ: {0}x{1} vs {2}x{3}")]
    SizeMismatch(usize, usize, usize, usize),
    /// A frame has no pixels.
    #[error("empty frame ({0}x{1})")]
    Empty(usize, usize),
    /// A buffer's length does not match its stated dimensions.
    #[error("buffer of {len} values does not match {width}x{height}x{channels}")]
    BadLength {
        /// Values in the buffer.
        len: usize,
        /// Stated width.
        width: usize,
        /// Stated height.
        height: usize,
        /// Values per pixel.
        channels: usize,
    },
    /// A parameter is out of its valid range.
    #[error("invalid flow parameter: {0}")]
    InvalidParams(String),
    /// A tensor operation of the batched solver failed (our fault, not the input's).
    #[error("flow tensor op: {0}")]
    Tensor(#[from] candle_core::Error),
}

impl From<FlowError> for crate::Error {
    fn from(e: FlowError) -> Self {
        match e {
            FlowError::Tensor(e) => crate::Error::Candle(e),
            e => crate::Error::InvalidArgument(e.to_string()),
        }
    }
}

/// A grayscale frame, values 0..255, row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct GrayImage {
    /// Columns.
    pub width: usize,
    /// Rows.
    pub height: usize,
    /// `width * height` intensities, row-major.
    pub data: Vec<f32>,
}

impl GrayImage {
    /// Luma (ITU-R BT.601, as OpenCV's RGB2GRAY) of a packed RGB24 frame.
    ///
    /// A buffer shorter than `3 * width * height` gives zeros for the missing pixels;
    /// use [`GrayImage::try_from_rgb`] to refuse it instead.
    pub fn from_rgb(frame: &[u8], width: usize, height: usize) -> GrayImage {
        let mut data = vec![0.0f32; width * height];
        for (d, px) in data.iter_mut().zip(frame.chunks_exact(3)) {
            *d = 0.299 * f32::from(px[0]) + 0.587 * f32::from(px[1]) + 0.114 * f32::from(px[2]);
        }
        GrayImage {
            width,
            height,
            data,
        }
    }

    /// Like [`GrayImage::from_rgb`], but refuses a buffer of the wrong length.
    pub fn try_from_rgb(frame: &[u8], width: usize, height: usize) -> Result<GrayImage, FlowError> {
        if frame.len() != 3 * width * height {
            return Err(FlowError::BadLength {
                len: frame.len(),
                width,
                height,
                channels: 3,
            });
        }
        Ok(Self::from_rgb(frame, width, height))
    }

    /// A frame from 8-bit luma values.
    pub fn from_luma8(luma: &[u8], width: usize, height: usize) -> Result<GrayImage, FlowError> {
        if luma.len() != width * height {
            return Err(FlowError::BadLength {
                len: luma.len(),
                width,
                height,
                channels: 1,
            });
        }
        Ok(GrayImage {
            width,
            height,
            data: luma.iter().map(|&l| f32::from(l)).collect(),
        })
    }
}

/// A dense flow field in pixels: `next(x + u, y + v) ≈ prev(x, y)`.
#[derive(Debug, Clone, PartialEq)]
pub struct Flow {
    /// Columns.
    pub width: usize,
    /// Rows.
    pub height: usize,
    /// Horizontal displacement per pixel, row-major.
    pub u: Vec<f32>,
    /// Vertical displacement per pixel, row-major.
    pub v: Vec<f32>,
}

impl Flow {
    /// A zero flow of the given size.
    pub fn zeros(width: usize, height: usize) -> Flow {
        Flow {
            width,
            height,
            u: vec![0.0; width * height],
            v: vec![0.0; width * height],
        }
    }

    /// Multiplies every displacement by `factor`.
    pub fn scale(&mut self, factor: f32) {
        if factor != 1.0 {
            self.u
                .iter_mut()
                .chain(&mut self.v)
                .for_each(|x| *x *= factor);
        }
    }

    /// The field of the frames shrunk `factor` times, from this finer one: each
    /// `factor` x `factor` block averaged and its displacement divided by `factor`
    /// (rows and columns past the last whole block are dropped).
    pub fn pool(self, factor: usize) -> Flow {
        if factor <= 1 {
            return self;
        }
        let (w, h) = (self.width / factor, self.height / factor);
        let norm = 1.0 / (factor * factor * factor) as f32;
        let block = |plane: &[f32], bx: usize, by: usize| {
            let rows = (by * factor..(by + 1) * factor).map(|y| y * self.width + bx * factor);
            rows.map(|start| plane[start..start + factor].iter().sum::<f32>())
                .sum::<f32>()
                * norm
        };
        let pooled = |plane: &[f32]| -> Vec<f32> {
            (0..h)
                .flat_map(|by| (0..w).map(move |bx| (bx, by)))
                .map(|(bx, by)| block(plane, bx, by))
                .collect()
        };
        Flow {
            width: w,
            height: h,
            u: pooled(&self.u),
            v: pooled(&self.v),
        }
    }

    /// Average end-point error against `truth` over the pixels where `mask` is true
    /// (all pixels when `mask` is `None`); `None` when the sizes differ or nothing is counted.
    pub fn epe(&self, truth: &Flow, mask: Option<&[bool]>) -> Option<f64> {
        if (self.width, self.height) != (truth.width, truth.height) {
            return None;
        }
        let (mut sum, mut n) = (0.0f64, 0usize);
        for i in 0..self.u.len().min(truth.u.len()) {
            if mask.is_none_or(|m| m.get(i).copied().unwrap_or(false)) {
                let du = f64::from(self.u[i] - truth.u[i]);
                let dv = f64::from(self.v[i] - truth.v[i]);
                sum += (du * du + dv * dv).sqrt();
                n += 1;
            }
        }
        (n > 0).then(|| sum / n as f64)
    }
}

/// Dual TV-L1 parameters (names as in OpenCV's `DualTVL1OpticalFlow`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tvl1Params {
    /// Time step of the dual ascent (≤ 0.25 for convergence).
    pub tau: f32,
    /// Weight of the data term (smaller: smoother flow).
    pub lambda: f32,
    /// Coupling between the TV and data sub-problems.
    pub theta: f32,
    /// Stopping threshold on the RMS change of the flow per iteration, in pixels.
    pub epsilon: f32,
    /// Pyramid levels.
    pub nscales: usize,
    /// Warpings of the second frame per level.
    pub warps: usize,
    /// Iterations between median filterings.
    pub inner_iterations: usize,
    /// Median filterings per warping.
    pub outer_iterations: usize,
    /// Size ratio between consecutive pyramid levels, in (0, 1).
    pub scale_step: f32,
    /// Median filter size applied to the flow (0 or 1: off; 3 or 5).
    pub median_filtering: usize,
    /// Finest pyramid level solved; the flow is upsampled from it (0: full resolution).
    pub finest_scale: usize,
    /// Match the second frame's mean and contrast to the first's before solving, so a
    /// global brightness change (flicker, auto-exposure) is not mistaken for motion.
    #[serde(default)]
    pub gain_compensation: bool,
}

impl Tvl1Params {
    /// OpenCV DualTVL1's defaults: the reference accuracy.
    pub fn accurate() -> Self {
        Tvl1Params {
            tau: 0.25,
            lambda: 0.15,
            theta: 0.3,
            epsilon: 0.01,
            nscales: 5,
            warps: 5,
            inner_iterations: 30,
            outer_iterations: 10,
            scale_step: 0.8,
            median_filtering: 5,
            finest_scale: 0,
            gain_compensation: true,
        }
    }

    /// Tuned for serving: fewer levels, warps and iterations; solved at half
    /// resolution and upsampled.
    pub fn fast() -> Self {
        Tvl1Params {
            tau: 0.25,
            lambda: 0.15,
            theta: 0.3,
            epsilon: 0.01,
            nscales: 4,
            warps: 2,
            inner_iterations: 10,
            outer_iterations: 2,
            scale_step: 0.5,
            median_filtering: 5,
            finest_scale: 1,
            gain_compensation: true,
        }
    }

    /// Checks every parameter's range.
    pub fn validate(&self) -> Result<(), FlowError> {
        let bad = |what: &str| Err(FlowError::InvalidParams(what.to_string()));
        let positive = |x: f32| x.is_finite() && x > 0.0;
        if !(positive(self.tau) && self.tau <= 0.25) {
            return bad("tau must be in (0, 0.25]");
        }
        if !positive(self.lambda) || !positive(self.theta) {
            return bad("lambda and theta must be positive");
        }
        if !(self.epsilon.is_finite() && self.epsilon >= 0.0) {
            return bad("epsilon must be non-negative");
        }
        if !(self.scale_step > 0.0 && self.scale_step < 1.0) {
            return bad("scale_step must be in (0, 1)");
        }
        if self.nscales == 0 || self.nscales > 32 {
            return bad("nscales must be in 1..=32");
        }
        if self.warps == 0 || self.inner_iterations == 0 || self.outer_iterations == 0 {
            return bad("warps and iteration counts must be at least 1");
        }
        if !matches!(self.median_filtering, 0 | 1 | 3 | 5) {
            return bad("median_filtering must be 0, 1, 3 or 5");
        }
        if self.finest_scale >= self.nscales {
            return bad("finest_scale must be below nscales");
        }
        Ok(())
    }
}

impl Default for Tvl1Params {
    fn default() -> Self {
        Self::accurate()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pooling_averages_blocks_and_rescales_displacements() {
        // A field of 6x4 where u = x and v = -2: pooled by 2, each block's mean u over
        // columns 2bx and 2bx + 1 is 2bx + 0.5, halved; v halves to -1.
        let (w, h) = (6, 4);
        let field = Flow {
            width: w,
            height: h,
            u: (0..w * h).map(|i| (i % w) as f32).collect(),
            v: vec![-2.0; w * h],
        };
        let pooled = field.clone().pool(2);
        assert_eq!((pooled.width, pooled.height), (3, 2));
        for (i, &u) in pooled.u.iter().enumerate() {
            let bx = (i % 3) as f32;
            assert!((u - (2.0 * bx + 0.5) / 2.0).abs() < 1e-6, "u[{i}] = {u}");
        }
        assert!(pooled.v.iter().all(|&v| (v + 1.0).abs() < 1e-6));
        assert_eq!(field.clone().pool(1), field);
    }
}
