//! The convolution layer every part of the model uses: weights and bias under a
//! `VarBuilder`, run by [`crate::ops::conv`].

use candle_core::{Module, Result, Tensor, bail};
use candle_nn::VarBuilder;

use crate::ops::conv::{ConvConfig, conv2d, conv2d_bias_inference};

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

    /// Folds a following inference-mode BatchNorm, `z = y * scale + shift` per output
    /// channel, into this convolution's weight and bias (one op instead of three).
    pub fn fold_bn(&self, scale: &Tensor, shift: &Tensor) -> Result<Self> {
        let c_out = self.weight.dim(0)?;
        if scale.dims() != [c_out] || shift.dims() != [c_out] {
            bail!(
                "fold_bn: scale {:?} and shift {:?} must be ({c_out},)",
                scale.dims(),
                shift.dims()
            );
        }
        let weight = self
            .weight
            .broadcast_mul(&scale.reshape((c_out, 1, 1, 1))?)?;
        let bias = match &self.bias {
            Some(b) => ((b * scale)? + shift)?,
            None => shift.clone(),
        };
        Ok(Self {
            weight,
            bias: Some(bias),
            cfg: self.cfg,
        })
    }
}

impl Conv2d {
    /// The convolution, then a ReLU when `relu` is set.
    pub fn forward_act(&self, x: &Tensor, relu: bool) -> Result<Tensor> {
        if let Some(b) = &self.bias
            && let Some(y) = conv2d_bias_inference(x, &self.weight, b, &self.cfg, relu)?
        {
            return Ok(y);
        }
        let y = conv2d(x, &self.weight, &self.cfg)?;
        let y = match &self.bias {
            Some(b) => y.broadcast_add(&b.reshape((1, (), 1, 1))?)?,
            None => y,
        };
        if relu { y.relu() } else { Ok(y) }
    }
}

impl Module for Conv2d {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.forward_act(x, false)
    }
}
