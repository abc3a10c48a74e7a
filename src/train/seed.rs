//! The scalar that seeds a vector-Jacobian product: `dot(out, g) = Σ out · g` for a
//! constant `g`, whose gradient with respect to `out` is `g` itself.
//!
//! Composed as `(out * g).sum_all()`, it costs five passes over `out`-sized tensors
//! before the first real op: the product and the sum forward; the sum's broadcast
//! gradient made contiguous and both operands' gradients backward (`g`'s, which nobody
//! needs, included). As one op on the CPU it is one read pass forward and none backward.
//! Other devices keep the composed form.

use candle_core::{CpuStorage, CustomOp2, DType, Layout, Result, Shape, Tensor, bail};
use rayon::prelude::*;

use crate::ops::kernel::contiguous;
use crate::ops::sums::lane_sum;

/// Elements per parallel chunk of the dot product.
const CHUNK: usize = 1 << 14;

/// `Σ out · g` as a scalar whose backward hands `g` (detached) to `out` unchanged.
pub fn dot(out: &Tensor, g: &Tensor) -> Result<Tensor> {
    let g = g.detach();
    let fused = out.device().is_cpu() && matches!(out.dtype(), DType::F32 | DType::F64);
    if !fused || out.shape() != g.shape() || out.dtype() != g.dtype() {
        return (out * g)?.sum_all();
    }
    out.contiguous()?.apply_op2(&g.contiguous()?, Dot)
}

struct Dot;

/// Σ a · b in f32 lanes, summed in f64 (`lane_sum`).
fn dot_f32(a: &[f32], b: &[f32]) -> f64 {
    a.par_chunks(CHUNK)
        .zip(b.par_chunks(CHUNK))
        .map(|(a, b)| lane_sum(a, b, |x, y| x * y))
        .sum()
}

/// Σ a · b.
fn dot_f64(a: &[f64], b: &[f64]) -> f64 {
    a.par_chunks(CHUNK)
        .zip(b.par_chunks(CHUNK))
        .map(|(a, b)| a.iter().zip(b).map(|(x, y)| x * y).sum::<f64>())
        .sum()
}

impl CustomOp2 for Dot {
    fn name(&self) -> &'static str {
        "revstream-vjp-dot"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let out = match (s1, s2) {
            (CpuStorage::F32(a), CpuStorage::F32(b)) => {
                CpuStorage::F32(vec![
                    dot_f32(contiguous(a, l1, "dot")?, contiguous(b, l2, "dot")?) as f32,
                ])
            }
            (CpuStorage::F64(a), CpuStorage::F64(b)) => CpuStorage::F64(vec![dot_f64(
                contiguous(a, l1, "dot")?,
                contiguous(b, l2, "dot")?,
            )]),
            _ => bail!("dot: operands must both be f32 or both f64"),
        };
        Ok((out, Shape::from(())))
    }

    fn bwd(
        &self,
        _out: &Tensor,
        g: &Tensor,
        _res: &Tensor,
        grad_res: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        // `backward` seeds the root with one: `g` as it is, no pass over it.
        let seed = grad_res.to_dtype(DType::F64)?.to_scalar::<f64>()?;
        let grad = if seed == 1.0 {
            g.clone()
        } else {
            g.broadcast_mul(grad_res)?
        };
        Ok((Some(grad), None))
    }
}
