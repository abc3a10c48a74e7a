//! The top singular pair of a function's Jacobian, by power iteration on `J^T J`.
//!
//! candle's autograd gives vector-Jacobian products `J^T w` exactly. It has no forward
//! mode, so `J v` is the central difference `(f(x + h v) - f(x - h v)) / 2h`. The residual
//! branches are piecewise linear in inference mode (convolution, affine BatchNorm, ReLU),
//! so the difference is exact unless the step crosses a ReLU kink; the step is kept small
//! (a thousandth of |x|) for that reason.

use candle_core::{DType, Tensor, Var};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::error::Result;

/// Relative size of the finite-difference step, `h |v| = STEP * max(|x|, 1)`.
const STEP: f64 = 1e-3;

/// The largest singular value of `J` and its singular vectors (unit norm, shaped like `f`'s
/// output and input); both vectors are zero when `J` is zero.
#[derive(Debug, Clone)]
pub struct SingularPair {
    /// The top singular value.
    pub value: f64,
    /// Left singular vector `u` (output space).
    pub left: Tensor,
    /// Right singular vector `v` (input space).
    pub right: Tensor,
    /// Power iterations run.
    pub iterations: usize,
}

/// Settings of the power iteration.
#[derive(Debug, Clone, Copy)]
pub struct PowerOptions {
    /// Most iterations.
    pub iterations: usize,
    /// Stop when the singular value changes by less than this fraction.
    pub tolerance: f64,
    /// Seed of the random start vector.
    pub seed: u64,
}

impl Default for PowerOptions {
    fn default() -> Self {
        Self {
            iterations: 50,
            tolerance: 1e-4,
            seed: 0,
        }
    }
}

/// Euclidean norm of a tensor, in f64.
pub fn norm(t: &Tensor) -> Result<f64> {
    Ok(t.to_dtype(DType::F64)?
        .sqr()?
        .sum_all()?
        .to_scalar::<f64>()?
        .sqrt())
}

/// `|cos|` of the angle between two same-shaped tensors; `None` when the shapes differ or
/// either is zero.
pub fn abs_cos(a: &Tensor, b: &Tensor) -> Result<Option<f64>> {
    if a.dims() != b.dims() {
        return Ok(None);
    }
    let (na, nb) = (norm(a)?, norm(b)?);
    if na == 0.0 || nb == 0.0 {
        return Ok(None);
    }
    let dot = (a.to_dtype(DType::F64)? * b.to_dtype(DType::F64)?)?
        .sum_all()?
        .to_scalar::<f64>()?;
    Ok(Some((dot / (na * nb)).abs().min(1.0)))
}

/// `J v` at `x`, by central difference.
pub fn jvp<F>(f: &F, x: &Tensor, v: &Tensor) -> Result<Tensor>
where
    F: Fn(&Tensor) -> Result<Tensor>,
{
    let v_norm = norm(v)?;
    if v_norm == 0.0 {
        return Ok(f(x)?.zeros_like()?);
    }
    let h = STEP * norm(x)?.max(1.0) / v_norm;
    let step = (v * h)?;
    let plus = f(&(x + &step)?)?;
    let minus = f(&(x - &step)?)?;
    Ok(((plus - minus)? / (2.0 * h))?)
}

/// `J^T w` at `x`, by backpropagation.
pub fn vjp<F>(f: &F, x: &Tensor, w: &Tensor) -> Result<Tensor>
where
    F: Fn(&Tensor) -> Result<Tensor>,
{
    let var = Var::from_tensor(&x.detach())?;
    let y = f(var.as_tensor())?;
    let grads = (y * w.detach())?.sum_all()?.backward()?;
    Ok(match grads.get(var.as_tensor()) {
        Some(g) => g.clone(),
        None => x.zeros_like()?,
    })
}

/// Power iteration on `J^T J` for the Jacobian of `f` at `x`.
pub fn top_singular<F>(f: F, x: &Tensor, opts: PowerOptions) -> Result<SingularPair>
where
    F: Fn(&Tensor) -> Result<Tensor>,
{
    let mut rng = StdRng::seed_from_u64(opts.seed);
    let start: Vec<f32> = (0..x.elem_count())
        .map(|_| rng.random_range(-1.0f32..1.0))
        .collect();
    let mut v = Tensor::from_vec(start, x.shape(), x.device())?.to_dtype(x.dtype())?;
    v = (&v / norm(&v)?)?;
    let mut value = 0.0;
    let mut iterations = 0;
    while iterations < opts.iterations.max(1) {
        iterations += 1;
        let jv = jvp(&f, x, &v)?;
        let sigma = norm(&jv)?;
        if sigma == 0.0 {
            return Ok(SingularPair {
                value: 0.0,
                left: jv,
                right: v.zeros_like()?,
                iterations,
            });
        }
        let jtu = vjp(&f, x, &(jv / sigma)?)?;
        let jtu_norm = norm(&jtu)?;
        if jtu_norm == 0.0 {
            break;
        }
        v = (jtu / jtu_norm)?;
        let converged = (sigma - value).abs() <= opts.tolerance * sigma;
        value = sigma;
        if converged {
            break;
        }
    }
    let jv = jvp(&f, x, &v)?;
    let value = norm(&jv)?;
    let left = if value == 0.0 { jv } else { (jv / value)? };
    Ok(SingularPair {
        value,
        left,
        right: v,
        iterations,
    })
}

/// Fraction of the spread of `points` (equal-length vectors) along their first principal
/// direction: the largest eigenvalue of the centred Gram matrix over its trace (1: on a line).
pub fn line_fraction(points: &[Vec<f64>]) -> Option<f64> {
    let n = points.len();
    if n < 2 {
        return None;
    }
    let dim = points[0].len();
    let mean: Vec<f64> = (0..dim)
        .map(|i| points.iter().map(|p| p[i]).sum::<f64>() / n as f64)
        .collect();
    let centred: Vec<Vec<f64>> = points
        .iter()
        .map(|p| p.iter().zip(&mean).map(|(a, m)| a - m).collect())
        .collect();
    let dot = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f64>();
    let gram: Vec<Vec<f64>> = centred
        .iter()
        .map(|a| centred.iter().map(|b| dot(a, b)).collect())
        .collect();
    let trace: f64 = (0..n).map(|i| gram[i][i]).sum();
    if trace <= 0.0 {
        return None;
    }
    // The Gram matrix is small (points x points) and positive semi-definite, with the
    // constant vector in its null space: start from a generic vector instead.
    let mut v: Vec<f64> = (0..n).map(|i| (i as f64 + 1.0).sin()).collect();
    let mut lambda = 0.0;
    for i in 0..1000 {
        let w: Vec<f64> = gram.iter().map(|row| dot(row, &v)).collect();
        let w_norm = dot(&w, &w).sqrt();
        if w_norm == 0.0 {
            return Some(0.0);
        }
        v = w.iter().map(|x| x / w_norm).collect();
        let converged = (w_norm - lambda).abs() <= 1e-12 * w_norm;
        lambda = w_norm;
        if converged && i > 2 {
            break;
        }
    }
    Some((lambda / trace).min(1.0))
}
