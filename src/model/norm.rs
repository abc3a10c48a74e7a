//! BatchNorm whose running-statistics update is returned, not applied, in training mode.
//!
//! Reversible backpropagation runs every unit's forward twice per step; keeping the
//! update separate lets the second (recomputing) pass leave the running statistics alone.
//! At inference the layers fold BatchNorm into the preceding convolution
//! ([`BatchNorm::folding`], used by `blocks::ConvBn`).

use candle_core::{Result, Tensor};
use candle_nn::{Init, VarBuilder};

use crate::ops::bn_train::{self, batch_norm_train};

/// How BatchNorm layers normalise during one forward pass.
pub enum BnMode<'a> {
    /// Running statistics (inference), folded into the preceding convolution.
    Eval,
    /// Running statistics applied as a separate op after each convolution: the reference
    /// the folded form of [`BnMode::Eval`] is checked against.
    EvalUnfolded,
    /// Batch statistics; each layer records its running-statistics update here.
    Train(&'a mut Vec<StatUpdate>),
    /// Batch statistics, no update recorded (reversible recomputation of a training pass).
    Recompute,
}

/// What a forward pass needs besides its input: frames per clip and the BatchNorm mode.
pub struct Ctx<'a> {
    /// Frames per clip (T); activations are laid out `(B * T, C, H, W)`.
    pub frames: usize,
    /// How BatchNorm normalises.
    pub bn: BnMode<'a>,
}

impl<'a> Ctx<'a> {
    /// A context for `frames` frames per clip in the given mode.
    pub fn new(frames: usize, bn: BnMode<'a>) -> Self {
        Self { frames, bn }
    }
}

/// A pending update of one layer's running mean and variance.
#[derive(Debug)]
pub struct StatUpdate {
    running_mean: Tensor,
    running_var: Tensor,
    mean: Tensor,
    var: Tensor,
}

impl StatUpdate {
    /// Writes the new statistics into the layer's running-statistics tensors, in place.
    pub fn apply(&self) -> Result<()> {
        self.running_mean.slice_set(&self.mean, 0, 0)?;
        self.running_var.slice_set(&self.var, 0, 0)
    }
}

/// Applies every update in order.
pub fn apply_updates(updates: &[StatUpdate]) -> Result<()> {
    updates.iter().try_for_each(StatUpdate::apply)
}

/// 2-D batch normalisation over `(N, C, H, W)` with PyTorch's parameter names.
#[derive(Debug, Clone)]
pub struct BatchNorm {
    weight: Tensor,
    bias: Tensor,
    running_mean: Tensor,
    running_var: Tensor,
    momentum: f64,
    eps: f64,
}

impl BatchNorm {
    /// Loads or initialises `weight` (1), `bias` (0), `running_mean` (0) and `running_var` (1).
    pub fn new(channels: usize, momentum: f64, eps: f64, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            weight: vb.get_with_hints(channels, "weight", Init::Const(1.0))?,
            bias: vb.get_with_hints(channels, "bias", Init::Const(0.0))?,
            running_mean: vb.get_with_hints(channels, "running_mean", Init::Const(0.0))?,
            running_var: vb.get_with_hints(channels, "running_var", Init::Const(1.0))?,
            momentum,
            eps,
        })
    }

    /// The running mean (for tests and inspection).
    pub fn running_mean(&self) -> &Tensor {
        &self.running_mean
    }

    /// The running variance (for tests and inspection).
    pub fn running_var(&self) -> &Tensor {
        &self.running_var
    }

    /// Normalises `x` as `mode` says, recording the running-statistics update in training.
    pub fn forward(&self, x: &Tensor, mode: &mut BnMode) -> Result<Tensor> {
        self.forward_act(x, mode, false)
    }

    /// [`Self::forward`], then ReLU when `relu`: inside the fused training op where it
    /// runs, as a separate op elsewhere.
    pub fn forward_act(&self, x: &Tensor, mode: &mut BnMode, relu: bool) -> Result<Tensor> {
        let c = x.dim(1)?;
        let (centred, var) = match mode {
            BnMode::Eval | BnMode::EvalUnfolded => {
                let mean = self.running_mean.reshape((1, c, 1, 1))?;
                let var = self.running_var.reshape((1, c, 1, 1))?;
                (x.broadcast_sub(&mean)?, var)
            }
            BnMode::Train(_) | BnMode::Recompute if bn_train::supported(x) => {
                let (y, mean, var) = batch_norm_train(x, &self.weight, &self.bias, self.eps, relu)?;
                if let BnMode::Train(updates) = mode {
                    updates.push(self.update(&mean, &var, x.elem_count() / c)?);
                }
                return Ok(y);
            }
            BnMode::Train(_) | BnMode::Recompute => {
                let mean = x.mean_keepdim((0, 2, 3))?;
                let centred = x.broadcast_sub(&mean)?;
                let var = centred.sqr()?.mean_keepdim((0, 2, 3))?;
                if let BnMode::Train(updates) = mode {
                    updates.push(self.update(&mean, &var, x.elem_count() / c)?);
                }
                (centred, var)
            }
        };
        let scale = (var + self.eps)?.sqrt()?.recip()?;
        let weight = self.weight.reshape((1, c, 1, 1))?;
        let bias = self.bias.reshape((1, c, 1, 1))?;
        let y = centred
            .broadcast_mul(&scale.broadcast_mul(&weight)?)?
            .broadcast_add(&bias)?;
        if relu { y.relu() } else { Ok(y) }
    }

    /// The inference-mode layer as `y = x * scale + shift` per channel: `scale =
    /// weight / sqrt(running_var + eps)`, `shift = bias - running_mean * scale`.
    pub fn folding(&self) -> Result<(Tensor, Tensor)> {
        let scale = self
            .weight
            .broadcast_div(&(&self.running_var + self.eps)?.sqrt()?)?;
        let shift = (&self.bias - (&self.running_mean * &scale)?)?;
        Ok((scale, shift))
    }

    /// Whether any parameter or statistic is a trainable variable (may change in place).
    pub fn has_variables(&self) -> bool {
        [
            &self.weight,
            &self.bias,
            &self.running_mean,
            &self.running_var,
        ]
        .iter()
        .any(|t| t.is_variable())
    }

    /// PyTorch's rule: unbiased batch variance, `new = (1 - m) old + m batch`.
    fn update(&self, mean: &Tensor, var: &Tensor, n: usize) -> Result<StatUpdate> {
        let m = self.momentum;
        let unbias = n as f64 / (n.max(2) - 1) as f64;
        // Detached throughout, so an update holds two small tensors and no graph.
        let mean = mean.detach().flatten_all()?;
        let var = (var.detach().flatten_all()? * unbias)?;
        let (old_mean, old_var) = (self.running_mean.detach(), self.running_var.detach());
        Ok(StatUpdate {
            running_mean: self.running_mean.clone(),
            running_var: self.running_var.clone(),
            mean: ((old_mean * (1.0 - m))? + (mean * m)?)?,
            var: ((old_var * (1.0 - m))? + (var * m)?)?,
        })
    }
}
