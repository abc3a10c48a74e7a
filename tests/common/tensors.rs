//! Tensor comparisons for the numeric tests. Included by path (`#[path]`), so tests that
//! need only this do not build the server and video helpers.

use candle_core::{DType, Tensor};

/// Largest absolute elementwise difference, in f64 whatever the operands' dtype.
pub fn max_abs_diff(a: &Tensor, b: &Tensor) -> f64 {
    let a = a.to_dtype(DType::F64).unwrap().flatten_all().unwrap();
    let b = b.to_dtype(DType::F64).unwrap().flatten_all().unwrap();
    (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar::<f64>()
        .unwrap()
}
