//! Training-mode BatchNorm (batch statistics), optionally followed by ReLU, as one candle
//! op on the CPU, with its analytic backward.
//!
//! Composed from candle ops, a BatchNorm layer reduces over `(N, H, W)` and its autograd
//! sums broadcast gradients over the same axes; candle runs those strided reductions on
//! one thread, and they took half of a training step. Here the statistics and both
//! passes run per channel in parallel, their sums vectorised. A ReLU after it costs
//! candle a pass forward and four backward (zeros, comparison, cast, product); fused, it
//! is a comparison inside the passes that run anyway. Other devices and dtypes keep the
//! composed form.

use std::sync::{Arc, Mutex};

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp3, DType, Layout, Result, Shape, Tensor, bail};
use rayon::prelude::*;

use super::kernel::output_vec;
use super::sums::{lane_sum, lane_sum2};

/// Per-channel batch statistics of one forward pass, and the affine map it applied.
#[derive(Debug, Clone)]
struct Stats {
    mean: Vec<f32>,
    /// Biased (population) variance, as normalisation uses.
    var: Vec<f32>,
    /// `y = x * scale + shift` before the ReLU: the backward recomputes the ReLU's mask
    /// from `x` with these, bit for bit as the forward did.
    scale: Vec<f32>,
    shift: Vec<f32>,
}

/// Whether `x` can take the fused path: f32 on the CPU.
pub fn supported(x: &Tensor) -> bool {
    x.device().is_cpu() && x.dtype() == DType::F32
}

/// `y = (x - mean) / sqrt(var + eps) * weight + bias` with the batch's per-channel mean
/// and biased variance over every axis but 1, then `max(y, 0)` when `relu`. Returns `y`
/// and the statistics `(mean, var)` as `(C,)` tensors (detached), for the
/// running-statistics update.
pub fn batch_norm_train(
    x: &Tensor,
    weight: &Tensor,
    bias: &Tensor,
    eps: f64,
    relu: bool,
) -> Result<(Tensor, Tensor, Tensor)> {
    let stats = Arc::new(Mutex::new(None));
    let op = Forward {
        eps: eps as f32,
        relu,
        stats: stats.clone(),
    };
    let y = x
        .contiguous()?
        .apply_op3_arc(weight, bias, Arc::new(Box::new(op)))?;
    let Some(Stats { mean, var, .. }) = stats.lock().expect("stats lock").clone() else {
        bail!("batch-norm: forward recorded no statistics");
    };
    let c = mean.len();
    let device = x.device();
    Ok((
        y,
        Tensor::from_vec(mean, c, device)?,
        Tensor::from_vec(var, c, device)?,
    ))
}

/// The contiguous f32 slice of a CPU operand.
fn f32_slice<'a>(s: &'a CpuStorage, l: &Layout, what: &str) -> Result<&'a [f32]> {
    let CpuStorage::F32(v) = s else {
        bail!("batch-norm: {what} must be f32, got {:?}", s.dtype());
    };
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&v[a..b]),
        None => bail!("batch-norm: {what} is not contiguous"),
    }
}

/// `(N, C, S)`: batch, channels and the product of the remaining axes.
fn split_dims(shape: &Shape, channels: usize) -> Result<(usize, usize, usize)> {
    let dims = shape.dims();
    if dims.len() < 2 || dims[1] != channels {
        bail!("batch-norm: input {dims:?} does not have {channels} channels on axis 1");
    }
    Ok((dims[0], dims[1], dims[2..].iter().product()))
}

/// The runs of channel `c` in an `(N, C, S)` buffer.
fn runs(x: &[f32], c: usize, (n, ch, s): (usize, usize, usize)) -> impl Iterator<Item = &[f32]> {
    (0..n).map(move |i| &x[(i * ch + c) * s..(i * ch + c + 1) * s])
}

/// Per-channel mean and biased variance, in two passes: the centred variance stays exact
/// for large means.
fn channel_stats(x: &[f32], dims: (usize, usize, usize)) -> (Vec<f32>, Vec<f32>) {
    let count = (dims.0 * dims.2).max(1) as f64;
    (0..dims.1)
        .into_par_iter()
        .map(|c| {
            let sum: f64 = runs(x, c, dims).map(|r| lane_sum(r, r, |v, _| v)).sum();
            let mean = (sum / count) as f32;
            let sq: f64 = runs(x, c, dims)
                .map(|r| lane_sum(r, r, |v, _| (v - mean) * (v - mean)))
                .sum();
            (mean, (sq / count) as f32)
        })
        .unzip()
}

/// Forward on (x, weight, bias); records the statistics it used.
struct Forward {
    eps: f32,
    relu: bool,
    stats: Arc<Mutex<Option<Stats>>>,
}

impl CustomOp3 for Forward {
    fn name(&self) -> &'static str {
        "revstream-batch-norm-train"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (w, b) = (f32_slice(s2, l2, "weight")?, f32_slice(s3, l3, "bias")?);
        let x = f32_slice(s1, l1, "input")?;
        let dims = split_dims(l1.shape(), w.len())?;
        if b.len() != w.len() {
            bail!("batch-norm: {} weights but {} biases", w.len(), b.len());
        }
        let (mean, var) = channel_stats(x, dims);
        let (scale, shift): (Vec<f32>, Vec<f32>) = (0..dims.1)
            .map(|c| {
                let k = w[c] / (var[c] + self.eps).sqrt();
                (k, b[c] - mean[c] * k)
            })
            .unzip();
        let mut y = output_vec(x.len());
        y.par_chunks_mut(dims.2.max(1))
            .zip(x.par_chunks(dims.2.max(1)))
            .enumerate()
            .for_each(|(i, (yr, xr))| {
                let (k, t) = (scale[i % dims.1], shift[i % dims.1]);
                for (o, &v) in yr.iter_mut().zip(xr) {
                    *o = v * k + t;
                }
                if self.relu {
                    yr.iter_mut().for_each(|o| *o = o.max(0.0));
                }
            });
        *self.stats.lock().expect("stats lock") = Some(Stats {
            mean,
            var,
            scale,
            shift,
        });
        Ok((CpuStorage::F32(y), l1.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        weight: &Tensor,
        _bias: &Tensor,
        _y: &Tensor,
        dy: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let Some(stats) = self.stats.lock().expect("stats lock").clone() else {
            bail!("batch-norm: backward before forward");
        };
        let op = Backward {
            eps: self.eps,
            relu: self.relu,
            stats,
        };
        let packed = x.apply_op3_no_bwd(weight, &dy.contiguous()?, &op)?;
        let (n, c) = (x.elem_count(), weight.elem_count());
        let dx = packed.narrow(0, 0, n)?.reshape(x.shape())?;
        // The parameter gradients get storage of their own (`force_contiguous`; `copy` would
        // clone all of `packed`): as views they would share `packed`'s, and candle stores a
        // node's first gradient as it arrives, so a kept parameter gradient would keep the
        // activation-sized `dx` alive (reversible training keeps every unit's parameter
        // gradients: its memory grew with depth, #31).
        let dw = packed.narrow(0, n, c)?.force_contiguous()?;
        let db = packed.narrow(0, n + c, c)?.force_contiguous()?;
        Ok((x.track_op().then_some(dx), Some(dw), Some(db)))
    }
}

/// Backward on (x, weight, dy): `[dx, dweight, dbias]` packed in one vector, since a
/// custom op has one output.
struct Backward {
    eps: f32,
    relu: bool,
    stats: Stats,
}

impl CustomOp3 for Backward {
    fn name(&self) -> &'static str {
        "revstream-batch-norm-train-backward"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (x, w) = (f32_slice(s1, l1, "input")?, f32_slice(s2, l2, "weight")?);
        let dy = f32_slice(s3, l3, "output gradient")?;
        let dims = split_dims(l1.shape(), w.len())?;
        if dy.len() != x.len() {
            bail!(
                "batch-norm: gradient {:?} vs input {:?}",
                l3.shape(),
                l1.shape()
            );
        }
        let Stats {
            mean,
            var,
            scale,
            shift,
        } = &self.stats;
        let relu = self.relu;
        // The output gradient at channel c past the ReLU: zero where the pre-activation was
        // negative. At exactly zero it passes, as through candle's ReLU, so the op stays
        // interchangeable with the composed ops: an all-zero input channel with zero bias
        // sits exactly there and would otherwise never get a gradient.
        let gate = |c: usize| {
            let (k, t) = (scale[c], shift[c]);
            move |v: f32, g: f32| if relu && v * k + t < 0.0 { 0.0 } else { g }
        };
        let inv: Vec<f32> = var.iter().map(|v| 1.0 / (v + self.eps).sqrt()).collect();
        // dbias = Σ dy, dweight = Σ dy · x̂ per channel.
        let (db, dw): (Vec<f32>, Vec<f32>) = (0..dims.1)
            .into_par_iter()
            .map(|c| {
                let (gate, m) = (gate(c), mean[c]);
                let (sum, dot) = runs(x, c, dims)
                    .zip(runs(dy, c, dims))
                    .map(|(xr, gr)| {
                        lane_sum2(xr, gr, |v, g| {
                            let g = gate(v, g);
                            (g, g * (v - m))
                        })
                    })
                    .fold((0.0, 0.0), |(a, b), (c, d)| (a + c, b + d));
                (sum as f32, (dot * inv[c] as f64) as f32)
            })
            .unzip();
        let count = (dims.0 * dims.2).max(1) as f32;
        let mut out = output_vec(x.len() + 2 * dims.1);
        let (dx, grads) = out.split_at_mut(x.len());
        // dx = weight · inv / M · (M dy − dbias − x̂ dweight)
        dx.par_chunks_mut(dims.2.max(1))
            .zip(
                x.par_chunks(dims.2.max(1))
                    .zip(dy.par_chunks(dims.2.max(1))),
            )
            .enumerate()
            .for_each(|(i, (dr, (xr, gr)))| {
                let c = i % dims.1;
                let (gate, m, k) = (gate(c), mean[c], w[c] * inv[c]);
                let (mb, mw) = (db[c] / count, inv[c] * dw[c] / count);
                for (o, (&v, &g)) in dr.iter_mut().zip(xr.iter().zip(gr)) {
                    *o = k * (gate(v, g) - mb - (v - m) * mw);
                }
            });
        grads[..dims.1].copy_from_slice(&dw);
        grads[dims.1..].copy_from_slice(&db);
        Ok((CpuStorage::F32(out), Shape::from(x.len() + 2 * dims.1)))
    }
}
