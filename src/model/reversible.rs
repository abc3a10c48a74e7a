//! RevNet coupling: a residual unit whose input can be recomputed from its output.

use candle_core::{Result, Tensor};
use candle_nn::VarBuilder;

use super::blocks::{Branch, BranchSpec};
use super::norm::Ctx;

/// `(x1, x2) -> (y1, y2)` with `y1 = x1 + F(x2)`, `y2 = x2 + G(y1)`, channels split in half;
/// `F` (`f.*`) and `G` (`g.*`) are the unit's residual branch at half width.
#[derive(Debug, Clone)]
pub struct RevBlock {
    /// The first coupling function, applied to `x2`.
    pub f: Branch,
    /// The second coupling function, applied to `y1`.
    pub g: Branch,
}

impl RevBlock {
    /// Builds a coupling for `channels` channels with inner width `mid_channels` (both halved).
    pub fn new(
        channels: usize,
        mid_channels: usize,
        bottleneck: bool,
        temporal: bool,
        bn_momentum: f64,
        bn_eps: f64,
        vb: VarBuilder,
    ) -> Result<Self> {
        if !channels.is_multiple_of(2) || !mid_channels.is_multiple_of(2) {
            candle_core::bail!("reversible unit: {channels}/{mid_channels} channels do not halve");
        }
        let spec = BranchSpec {
            in_channels: channels / 2,
            mid_channels: mid_channels / 2,
            out_channels: channels / 2,
            stride: 1,
            bottleneck,
            temporal,
        };
        Ok(Self {
            f: Branch::new(spec, bn_momentum, bn_eps, vb.pp("f"))?,
            g: Branch::new(spec, bn_momentum, bn_eps, vb.pp("g"))?,
        })
    }

    /// `(x1, x2) -> (x1 + F(x2), x2 + G(y1))`.
    pub fn forward(&self, x: &Tensor, ctx: &mut Ctx) -> Result<Tensor> {
        let (x1, x2) = split(x)?;
        let y1 = (x1 + self.f.forward(&x2, ctx)?)?;
        let y2 = (x2 + self.g.forward(&y1, ctx)?)?;
        Tensor::cat(&[y1, y2], 1)
    }

    /// Recovers the input from the output: `x2 = y2 - G(y1)`, `x1 = y1 - F(x2)`.
    ///
    /// BatchNorm must run in the same mode as the forward pass (batch statistics in training).
    pub fn inverse(&self, y: &Tensor, ctx: &mut Ctx) -> Result<Tensor> {
        let (y1, y2) = split(y)?;
        let x2 = (y2 - self.g.forward(&y1, ctx)?)?;
        let x1 = (y1 - self.f.forward(&x2, ctx)?)?;
        Tensor::cat(&[x1, x2], 1)
    }
}

/// Splits `(N, C, H, W)` into its two contiguous channel halves.
pub fn split(x: &Tensor) -> Result<(Tensor, Tensor)> {
    let half = x.dim(1)? / 2;
    Ok((
        x.narrow(1, 0, half)?.contiguous()?,
        x.narrow(1, half, half)?.contiguous()?,
    ))
}
