//! The one convolution type every layer of the model uses.
//!
//! Layers build a [`Conv2d`] and call `forward`; which implementation runs behind it
//! (candle's stock op today, our own fast CPU/CUDA ops later) is this module's business.

use candle_core::{Module, Result, Tensor};
use candle_nn::VarBuilder;

/// Geometry of a 2-D convolution: (height, width) pairs and channel groups.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvConfig {
    /// Kernel size (kh, kw).
    pub kernel: (usize, usize),
    /// Stride (sh, sw).
    pub stride: (usize, usize),
    /// Zero padding on each side (ph, pw).
    pub padding: (usize, usize),
    /// Channel groups (1 for a dense convolution).
    pub groups: usize,
}

impl ConvConfig {
    /// A square kernel `k` with stride `s` and padding `p`, one group.
    pub fn square(k: usize, s: usize, p: usize) -> Self {
        Self {
            kernel: (k, k),
            stride: (s, s),
            padding: (p, p),
            groups: 1,
        }
    }
}

/// A 2-D convolution over NCHW tensors; weight `(out, in / groups, kh, kw)`.
#[derive(Debug, Clone)]
pub struct Conv2d {
    weight: Tensor,
    bias: Option<Tensor>,
    cfg: ConvConfig,
}

impl Conv2d {
    /// Loads or initialises `weight` (and `bias` when asked) under `vb`, Kaiming-uniform.
    pub fn new(
        in_channels: usize,
        out_channels: usize,
        cfg: ConvConfig,
        bias: bool,
        vb: VarBuilder,
    ) -> Result<Self> {
        let (kh, kw) = cfg.kernel;
        let fan_in = in_channels / cfg.groups * kh * kw;
        let bound = 1.0 / (fan_in as f64).sqrt();
        let init = candle_nn::Init::Uniform {
            lo: -bound,
            up: bound,
        };
        let weight = vb.get_with_hints(
            (out_channels, in_channels / cfg.groups, kh, kw),
            "weight",
            candle_nn::init::DEFAULT_KAIMING_UNIFORM,
        )?;
        let bias = if bias {
            Some(vb.get_with_hints(out_channels, "bias", init)?)
        } else {
            None
        };
        Ok(Self { weight, bias, cfg })
    }

    /// Wraps existing tensors (for tests and weight surgery).
    pub fn from_weights(weight: Tensor, bias: Option<Tensor>, cfg: ConvConfig) -> Self {
        Self { weight, bias, cfg }
    }

    /// The weight tensor `(out, in / groups, kh, kw)`.
    pub fn weight(&self) -> &Tensor {
        &self.weight
    }

    /// The bias, if any.
    pub fn bias(&self) -> Option<&Tensor> {
        self.bias.as_ref()
    }

    /// The geometry.
    pub fn config(&self) -> ConvConfig {
        self.cfg
    }
}

impl Module for Conv2d {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let ConvConfig {
            stride,
            padding,
            groups,
            ..
        } = self.cfg;
        if stride.0 != stride.1 {
            candle_core::bail!("conv2d: unequal strides {stride:?} are not supported yet");
        }
        // candle pads both spatial dims alike; pad unequal amounts ourselves.
        let (x, pad) = if padding.0 == padding.1 {
            (x.clone(), padding.0)
        } else {
            let x = x.pad_with_zeros(2, padding.0, padding.0)?;
            (x.pad_with_zeros(3, padding.1, padding.1)?, 0)
        };
        let y = x.conv2d(&self.weight, pad, stride.0, 1, groups)?;
        match &self.bias {
            Some(b) => y.broadcast_add(&b.reshape((1, (), 1, 1))?),
            None => Ok(y),
        }
    }
}
