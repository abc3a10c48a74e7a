//! Spatiotemporal convolution with a temporal extent of 3, zero-padded in time.
//!
//! candle has no conv3d. The three time-shifted copies of the input are stacked on the
//! channel axis and one [`Conv2d`] with `3 * in` input channels runs over them, so the
//! whole layer is a single call of the shared convolution (and of its fast kernels).

use candle_core::{Module, Result, Tensor};
use candle_nn::{Init, VarBuilder};

use super::conv::{Conv2d, ConvConfig};

/// A `3 x kh x kw` convolution over clips laid out `(B * T, C, H, W)`; weight in PyTorch's
/// Conv3d layout `(out, in, 3, kh, kw)`.
#[derive(Debug, Clone)]
pub struct TemporalConv {
    weight: Tensor,
    cfg: ConvConfig,
}

impl TemporalConv {
    /// Loads `weight`, or initialises it as a Kaiming-uniform 2-D weight `W` divided by 3 on
    /// each tap, so that on a clip of identical frames it equals the 2-D convolution `W`
    /// (away from the first and last frame, where the zero padding drops one tap).
    pub fn new(
        in_channels: usize,
        out_channels: usize,
        cfg: ConvConfig,
        vb: VarBuilder,
    ) -> Result<Self> {
        if cfg.groups != 1 {
            candle_core::bail!("temporal conv: groups are not supported");
        }
        let (kh, kw) = cfg.kernel;
        let fresh = !vb.contains_tensor("weight");
        let bound = (6.0 / (in_channels * kh * kw) as f64).sqrt();
        let weight = vb.get_with_hints(
            (out_channels, in_channels, 3, kh, kw),
            "weight",
            Init::Uniform {
                lo: -bound,
                up: bound,
            },
        )?;
        if fresh {
            // The variable was just created: overwrite its storage with W/3 on every tap.
            let tap = (weight.narrow(2, 1, 1)? / 3.0)?;
            let taps = Tensor::cat(&[&tap, &tap, &tap], 2)?;
            weight.slice_set(&taps, 0, 0)?;
        }
        Ok(Self { weight, cfg })
    }

    /// Wraps an existing weight `(out, in, 3, kh, kw)` (for tests and weight surgery).
    pub fn from_weight(weight: Tensor, cfg: ConvConfig) -> Self {
        Self { weight, cfg }
    }

    /// The weight `(out, in, 3, kh, kw)`.
    pub fn weight(&self) -> &Tensor {
        &self.weight
    }

    /// Convolves `x` `(B * T, C, H, W)` over time (zero-padded) and space.
    pub fn forward(&self, x: &Tensor, frames: usize) -> Result<Tensor> {
        self.as_conv2d()?.forward(&stack_taps(x, frames)?)
    }

    /// The same layer as a 2-D convolution over [`stack_taps`]'s output.
    pub fn as_conv2d(&self) -> Result<Conv2d> {
        let (out, cin, kt, kh, kw) = self.weight.dims5()?;
        let weight = self.weight.reshape((out, cin * kt, kh, kw))?;
        Ok(Conv2d::from_weights(weight, None, self.cfg))
    }
}

/// `(B * T, C, H, W)` → `(B * T, 3 * C, H, W)`: each frame with its predecessor and
/// successor (zero at the clip's ends) stacked on the channel axis.
pub fn stack_taps(x: &Tensor, frames: usize) -> Result<Tensor> {
    let (n, c, h, w) = x.dims4()?;
    if frames == 0 || n % frames != 0 {
        candle_core::bail!("temporal conv: {n} images are not clips of {frames} frames");
    }
    let b = n / frames;
    let padded = x.reshape((b, frames, c, h, w))?.pad_with_zeros(1, 1, 1)?;
    let taps = (0..3)
        .map(|k| padded.narrow(1, k, frames))
        .collect::<Result<Vec<_>>>()?;
    // (B, T, C, 3, H, W): channel index c * 3 + tap, matching the weight's (in, 3) order.
    Tensor::stack(&taps, 3)?.reshape((n, c * 3, h, w))
}

/// A unit's convolution: purely spatial, or spatiotemporal with a temporal extent of 3.
#[derive(Debug, Clone)]
pub enum UnitConv {
    /// A 2-D convolution applied to each frame.
    Spatial(Conv2d),
    /// A `3 x kh x kw` convolution over time and space.
    Temporal(TemporalConv),
}

impl UnitConv {
    /// Builds a bias-free convolution, temporal when `temporal` is set.
    pub fn new(
        in_channels: usize,
        out_channels: usize,
        cfg: ConvConfig,
        temporal: bool,
        vb: VarBuilder,
    ) -> Result<Self> {
        Ok(if temporal {
            Self::Temporal(TemporalConv::new(in_channels, out_channels, cfg, vb)?)
        } else {
            Self::Spatial(Conv2d::new(in_channels, out_channels, cfg, false, vb)?)
        })
    }

    /// The layer as a 2-D convolution and whether its input must go through
    /// [`stack_taps`] first.
    pub fn as_conv2d(&self) -> Result<(Conv2d, bool)> {
        Ok(match self {
            Self::Spatial(conv) => (conv.clone(), false),
            Self::Temporal(conv) => (conv.as_conv2d()?, true),
        })
    }

    /// Applies the convolution to `x` `(B * T, C, H, W)`.
    pub fn forward(&self, x: &Tensor, frames: usize) -> Result<Tensor> {
        match self {
            Self::Spatial(conv) => conv.forward(x),
            Self::Temporal(conv) => conv.forward(x, frames),
        }
    }
}
