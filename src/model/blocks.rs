//! Residual units: the residual branch (basic or bottleneck) and the ordinary unit around
//! it, built from convolution + BatchNorm pairs that fold into one convolution at inference.

use std::sync::{Arc, Mutex, PoisonError};

use candle_core::{Result, Tensor};
use candle_nn::VarBuilder;

use super::conv::Conv2d;
use super::norm::{BatchNorm, BnMode, Ctx};
use super::temporal::{UnitConv, stack_taps};
use crate::ops::add_relu::add_relu;
use crate::ops::conv::ConvConfig;

/// A convolution followed by BatchNorm (and optionally ReLU). In [`BnMode::Eval`] the
/// BatchNorm is folded into the convolution's weight and bias and the ReLU runs inside the
/// convolution kernel: one op instead of up to five. The folded weights are computed on
/// first use and kept while every parameter is a plain (loaded, not trainable) tensor;
/// with trainable variables they are recomputed per pass, as the variables may change.
#[derive(Debug, Clone)]
pub struct ConvBn {
    conv: UnitConv,
    bn: BatchNorm,
    /// The folded convolution, and whether its input is stacked over time first.
    folded: Arc<Mutex<Option<(Conv2d, bool)>>>,
}

impl ConvBn {
    /// Pairs a convolution with the BatchNorm that follows it.
    pub fn new(conv: UnitConv, bn: BatchNorm) -> Self {
        Self {
            conv,
            bn,
            folded: Arc::default(),
        }
    }

    /// `bn(conv(x))`, then ReLU when `relu`; `x` is `(B * T, C, H, W)`.
    pub fn forward(&self, x: &Tensor, ctx: &mut Ctx, relu: bool) -> Result<Tensor> {
        if let BnMode::Eval = ctx.bn {
            let (conv, temporal) = self.fold()?;
            let x = if temporal {
                stack_taps(x, ctx.frames)?
            } else {
                x.clone()
            };
            return conv.forward_act(&x, relu);
        }
        if !matches!(ctx.bn, BnMode::EvalUnfolded) {
            // Training may change the running statistics in place: fold again next time.
            *self.cache() = None;
        }
        self.bn
            .forward_act(&self.conv.forward(x, ctx.frames)?, &mut ctx.bn, relu)
    }

    /// The folded convolution (from the cache where allowed).
    fn fold(&self) -> Result<(Conv2d, bool)> {
        let cacheable = !(self.bn.has_variables() || self.conv_is_variable());
        if cacheable && let Some(folded) = self.cache().as_ref() {
            return Ok(folded.clone());
        }
        let (conv, temporal) = self.conv.as_conv2d()?;
        let (scale, shift) = self.bn.folding()?;
        let folded = (conv.fold_bn(&scale, &shift)?, temporal);
        if cacheable {
            *self.cache() = Some(folded.clone());
        }
        Ok(folded)
    }

    fn conv_is_variable(&self) -> bool {
        match &self.conv {
            UnitConv::Spatial(c) => c.weight().is_variable(),
            UnitConv::Temporal(c) => c.weight().is_variable(),
        }
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, Option<(Conv2d, bool)>> {
        // The cache holds no invariant a panicking holder could break.
        self.folded.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Shape of a residual branch: channels in, in the middle, out, and the stride.
#[derive(Debug, Clone, Copy)]
pub struct BranchSpec {
    /// Input channels.
    pub in_channels: usize,
    /// Channels of the inner layer(s).
    pub mid_channels: usize,
    /// Output channels.
    pub out_channels: usize,
    /// Spatial stride (on the 3x3 convolution).
    pub stride: usize,
    /// Bottleneck (1x1, 3x3, 1x1) rather than basic (3x3, 3x3).
    pub bottleneck: bool,
    /// Whether the first convolution has a temporal extent of 3.
    pub temporal: bool,
}

/// A residual branch: convolutions each followed by BatchNorm, ReLU between them, none at
/// the end. Names `conv1`, `bn1`, `conv2`, `bn2` (and `conv3`, `bn3` for a bottleneck).
#[derive(Debug, Clone)]
pub struct Branch {
    layers: Vec<ConvBn>,
}

impl Branch {
    /// Builds the branch described by `spec` under `vb`.
    pub fn new(spec: BranchSpec, bn_momentum: f64, bn_eps: f64, vb: VarBuilder) -> Result<Self> {
        let BranchSpec {
            in_channels: cin,
            mid_channels: mid,
            out_channels: cout,
            stride,
            ..
        } = spec;
        let plan: Vec<(usize, usize, ConvConfig)> = if spec.bottleneck {
            vec![
                (cin, mid, ConvConfig::square(1, 1, 0)),
                (mid, mid, ConvConfig::square(3, stride, 1)),
                (mid, cout, ConvConfig::square(1, 1, 0)),
            ]
        } else {
            vec![
                (cin, mid, ConvConfig::square(3, stride, 1)),
                (mid, cout, ConvConfig::square(3, 1, 1)),
            ]
        };
        let layers = plan
            .into_iter()
            .enumerate()
            .map(|(i, (cin, cout, cfg))| {
                let temporal = spec.temporal && i == 0;
                let conv =
                    UnitConv::new(cin, cout, cfg, temporal, vb.pp(format!("conv{}", i + 1)))?;
                let bn = BatchNorm::new(cout, bn_momentum, bn_eps, vb.pp(format!("bn{}", i + 1)))?;
                Ok(ConvBn::new(conv, bn))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self { layers })
    }

    /// Applies the branch to `x` `(B * T, C, H, W)`.
    pub fn forward(&self, x: &Tensor, ctx: &mut Ctx) -> Result<Tensor> {
        let mut h = x.clone();
        for (i, layer) in self.layers.iter().enumerate() {
            h = layer.forward(&h, ctx, i + 1 < self.layers.len())?;
        }
        Ok(h)
    }
}

/// An ordinary residual unit, `relu(shortcut(x) + branch(x + link))`; the shortcut is a
/// strided 1x1 projection with BatchNorm (`downsample.0`, `downsample.1`) when shape changes.
#[derive(Debug, Clone)]
pub struct ResBlock {
    branch: Branch,
    downsample: Option<ConvBn>,
}

impl ResBlock {
    /// Builds the unit; a projection shortcut is added when stride or width change.
    pub fn new(spec: BranchSpec, bn_momentum: f64, bn_eps: f64, vb: VarBuilder) -> Result<Self> {
        let branch = Branch::new(spec, bn_momentum, bn_eps, vb.clone())?;
        let downsample = if spec.stride != 1 || spec.in_channels != spec.out_channels {
            let cfg = ConvConfig::square(1, spec.stride, 0);
            let conv = Conv2d::new(
                spec.in_channels,
                spec.out_channels,
                cfg,
                false,
                vb.pp("downsample.0"),
            )?;
            let bn = BatchNorm::new(
                spec.out_channels,
                bn_momentum,
                bn_eps,
                vb.pp("downsample.1"),
            )?;
            Some(ConvBn::new(UnitConv::Spatial(conv), bn))
        } else {
            None
        };
        Ok(Self { branch, downsample })
    }

    /// Applies the unit; `link` (same shape as `x`) is added to the residual branch's input only.
    pub fn forward(&self, x: &Tensor, link: Option<&Tensor>, ctx: &mut Ctx) -> Result<Tensor> {
        let shortcut = self.shortcut(x, ctx)?;
        let branch_in = match link {
            Some(l) => (x + l)?,
            None => x.clone(),
        };
        add_relu(&shortcut, &self.branch.forward(&branch_in, ctx)?)
    }

    /// The shortcut path: `x` itself, or its projection when the unit changes shape.
    pub fn shortcut(&self, x: &Tensor, ctx: &mut Ctx) -> Result<Tensor> {
        match &self.downsample {
            Some(layer) => layer.forward(x, ctx, false),
            None => Ok(x.clone()),
        }
    }

    /// The residual branch (for analyses that run or remove it on its own).
    pub fn branch(&self) -> &Branch {
        &self.branch
    }

    /// Whether the shortcut is a projection (the unit changes stride or width).
    pub fn has_projection(&self) -> bool {
        self.downsample.is_some()
    }
}
