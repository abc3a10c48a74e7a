//! Optimisers (SGD with momentum, AdamW) and learning-rate schedules, with savable state.
//!
//! candle-nn's optimisers keep their state private; these expose it so a checkpoint can
//! resume training exactly.

use std::collections::HashMap;

use candle_core::backprop::GradStore;
use candle_core::{Result, Tensor, Var};
use serde::{Deserialize, Serialize};

/// Which update rule, and its hyper-parameters.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum OptimizerKind {
    /// PyTorch's SGD: `g += wd p; buf = momentum buf + g; p -= lr buf`.
    Sgd {
        /// Momentum coefficient.
        momentum: f64,
        /// L2 weight decay (weights of rank ≥ 2 only).
        weight_decay: f64,
    },
    /// AdamW (decoupled weight decay on weights of rank ≥ 2).
    AdamW {
        /// First-moment decay.
        beta1: f64,
        /// Second-moment decay.
        beta2: f64,
        /// Denominator guard.
        eps: f64,
        /// Decoupled weight decay.
        weight_decay: f64,
    },
}

/// Learning rate as a function of the step.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Schedule {
    /// Linear warm-up from 0 over `warmup` steps, then cosine decay to `min_factor * base` at `total`.
    Cosine {
        /// Warm-up steps.
        warmup: usize,
        /// Last step.
        total: usize,
        /// Final rate as a fraction of the base rate.
        min_factor: f64,
    },
    /// Linear warm-up, then multiply by `gamma` every `every` steps.
    Step {
        /// Warm-up steps.
        warmup: usize,
        /// Steps between decays.
        every: usize,
        /// Decay factor.
        gamma: f64,
    },
}

impl Schedule {
    /// The rate at `step` (0-based) for base rate `base`.
    pub fn lr(&self, base: f64, step: usize) -> f64 {
        let warm = |warmup: usize| {
            if step < warmup {
                Some(base * (step + 1) as f64 / warmup as f64)
            } else {
                None
            }
        };
        match *self {
            Schedule::Cosine {
                warmup,
                total,
                min_factor,
            } => warm(warmup).unwrap_or_else(|| {
                let span = total.saturating_sub(warmup).max(1) as f64;
                let p = ((step - warmup) as f64 / span).min(1.0);
                let min = base * min_factor;
                min + (base - min) * 0.5 * (1.0 + (std::f64::consts::PI * p).cos())
            }),
            Schedule::Step {
                warmup,
                every,
                gamma,
            } => warm(warmup)
                .unwrap_or_else(|| base * gamma.powi(((step - warmup) / every.max(1)) as i32)),
        }
    }
}

/// An optimiser over named variables, its per-variable state kept as tensors.
pub struct Optimizer {
    kind: OptimizerKind,
    params: Vec<(String, Var)>,
    /// SGD momentum buffers or Adam first moments, by parameter name.
    first: HashMap<String, Tensor>,
    /// Adam second moments, by parameter name.
    second: HashMap<String, Tensor>,
    /// Updates applied so far.
    pub step: usize,
}

/// Whether weight decay applies to a parameter: conv and linear weights, not biases or BatchNorm.
fn decays(name: &str, var: &Var) -> bool {
    var.rank() >= 2 && name.ends_with("weight")
}

impl Optimizer {
    /// An optimiser over `params` (sorted by name for a deterministic order).
    pub fn new(kind: OptimizerKind, mut params: Vec<(String, Var)>) -> Self {
        params.sort_by(|a, b| a.0.cmp(&b.0));
        Optimizer {
            kind,
            params,
            first: HashMap::new(),
            second: HashMap::new(),
            step: 0,
        }
    }

    /// The optimised variables, by name.
    pub fn params(&self) -> &[(String, Var)] {
        &self.params
    }

    /// Scales gradients so their global L2 norm is at most `max_norm`; returns the norm before.
    pub fn clip_grad_norm(&self, grads: &mut GradStore, max_norm: f64) -> Result<f64> {
        let mut total = 0.0;
        for (_, var) in &self.params {
            if let Some(g) = grads.get(var.as_tensor()) {
                total += g.sqr()?.sum_all()?.to_scalar::<f32>()? as f64;
            }
        }
        let norm = total.sqrt();
        if norm > max_norm && norm.is_finite() {
            let scale = max_norm / norm;
            for (_, var) in &self.params {
                if let Some(g) = grads.remove(var.as_tensor()) {
                    grads.insert(var.as_tensor(), (g * scale)?);
                }
            }
        }
        Ok(norm)
    }

    /// Applies one update at rate `lr`; variables without a gradient are left alone.
    pub fn apply(&mut self, grads: &GradStore, lr: f64) -> Result<()> {
        self.step += 1;
        let t = self.step as i32;
        for (name, var) in &self.params {
            let Some(g) = grads.get(var.as_tensor()) else {
                continue;
            };
            let p = var.as_tensor();
            match self.kind {
                OptimizerKind::Sgd {
                    momentum,
                    weight_decay,
                } => {
                    let g = if weight_decay > 0.0 && decays(name, var) {
                        (g + (p * weight_decay)?)?
                    } else {
                        g.clone()
                    };
                    let buf = match self.first.get(name) {
                        Some(b) if momentum > 0.0 => ((b * momentum)? + &g)?,
                        _ => g,
                    };
                    var.set(&(p - (&buf * lr)?)?)?;
                    self.first.insert(name.clone(), buf);
                }
                OptimizerKind::AdamW {
                    beta1,
                    beta2,
                    eps,
                    weight_decay,
                } => {
                    let m = match self.first.get(name) {
                        Some(m) => ((m * beta1)? + (g * (1.0 - beta1))?)?,
                        None => (g * (1.0 - beta1))?,
                    };
                    let v = match self.second.get(name) {
                        Some(v) => ((v * beta2)? + (g.sqr()? * (1.0 - beta2))?)?,
                        None => (g.sqr()? * (1.0 - beta2))?,
                    };
                    let m_hat = (&m / (1.0 - beta1.powi(t)))?;
                    let v_hat = (&v / (1.0 - beta2.powi(t)))?;
                    let update = (m_hat / (v_hat.sqrt()? + eps)?)?;
                    let p = if weight_decay > 0.0 && decays(name, var) {
                        (p * (1.0 - lr * weight_decay))?
                    } else {
                        p.clone()
                    };
                    var.set(&(p - (update * lr)?)?)?;
                    self.first.insert(name.clone(), m);
                    self.second.insert(name.clone(), v);
                }
            }
        }
        Ok(())
    }

    /// The state as named tensors (`first.<param>`, `second.<param>`) for a checkpoint.
    pub fn state_tensors(&self) -> HashMap<String, Tensor> {
        let mut out = HashMap::new();
        for (k, v) in &self.first {
            out.insert(format!("first.{k}"), v.clone());
        }
        for (k, v) in &self.second {
            out.insert(format!("second.{k}"), v.clone());
        }
        out
    }

    /// Restores state saved by [`Optimizer::state_tensors`] and the step count.
    pub fn load_state(&mut self, tensors: HashMap<String, Tensor>, step: usize) {
        self.first.clear();
        self.second.clear();
        for (k, v) in tensors {
            if let Some(name) = k.strip_prefix("first.") {
                self.first.insert(name.to_string(), v);
            } else if let Some(name) = k.strip_prefix("second.") {
                self.second.insert(name.to_string(), v);
            }
        }
        self.step = step;
    }
}
