//! Residual units: the residual branch (basic or bottleneck) and the ordinary unit around it.

use candle_core::{Module, Result, Tensor};
use candle_nn::VarBuilder;

use super::conv::{Conv2d, ConvConfig};
use super::norm::{BatchNorm, Ctx};
use super::temporal::UnitConv;

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
    layers: Vec<(UnitConv, BatchNorm)>,
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
                Ok((conv, bn))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self { layers })
    }

    /// Applies the branch to `x` `(B * T, C, H, W)`.
    pub fn forward(&self, x: &Tensor, ctx: &mut Ctx) -> Result<Tensor> {
        let mut h = x.clone();
        for (i, (conv, bn)) in self.layers.iter().enumerate() {
            h = bn.forward(&conv.forward(&h, ctx.frames)?, &mut ctx.bn)?;
            if i + 1 < self.layers.len() {
                h = h.relu()?;
            }
        }
        Ok(h)
    }
}

/// An ordinary residual unit, `relu(shortcut(x) + branch(x + link))`; the shortcut is a
/// strided 1x1 projection with BatchNorm (`downsample.0`, `downsample.1`) when shape changes.
#[derive(Debug, Clone)]
pub struct ResBlock {
    branch: Branch,
    downsample: Option<(Conv2d, BatchNorm)>,
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
            Some((conv, bn))
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
        (shortcut + self.branch.forward(&branch_in, ctx)?)?.relu()
    }

    /// The shortcut path: `x` itself, or its projection when the unit changes shape.
    pub fn shortcut(&self, x: &Tensor, ctx: &mut Ctx) -> Result<Tensor> {
        match &self.downsample {
            Some((conv, bn)) => bn.forward(&conv.forward(x)?, &mut ctx.bn),
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
