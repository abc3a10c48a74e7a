//! The vector-Jacobian seed `dot(out, g)`: its value, and the gradient it hands to `out`
//! through autograd, against the composed `(out * g).sum_all()`.

use candle_core::{DType, Device, Tensor, Var};
use revstream::train::seed;

#[path = "common/tensors.rs"]
mod tensors;
use tensors::max_abs_diff;

/// Values with a large range, so f32 partial sums would show their error.
fn pair(dtype: DType) -> (Var, Tensor) {
    let n = 50_000;
    let i = Tensor::arange(0f64, n as f64, &Device::Cpu).unwrap();
    let out = ((&i * 0.37).unwrap().sin().unwrap() * 100.0).unwrap();
    let g = (&i * 0.011).unwrap().cos().unwrap();
    let shape = (10, 5, 1000);
    (
        Var::from_tensor(&out.to_dtype(dtype).unwrap().reshape(shape).unwrap()).unwrap(),
        g.to_dtype(dtype).unwrap().reshape(shape).unwrap(),
    )
}

#[test]
fn dot_value_and_gradient_match_the_composed_ops() {
    for dtype in [DType::F32, DType::F64] {
        let (out, g) = pair(dtype);
        let fused = seed::dot(out.as_tensor(), &g).unwrap();
        let composed = (out.as_tensor() * &g).unwrap().sum_all().unwrap();
        let reference = (out.as_tensor().to_dtype(DType::F64).unwrap()
            * g.to_dtype(DType::F64).unwrap())
        .unwrap()
        .sum_all()
        .unwrap()
        .to_scalar::<f64>()
        .unwrap();
        assert_eq!(fused.dims(), composed.dims());
        let value = fused
            .to_dtype(DType::F64)
            .unwrap()
            .to_scalar::<f64>()
            .unwrap();
        assert!(
            (value - reference).abs() <= 1e-5 * reference.abs().max(1.0),
            "{dtype:?}: {value} vs {reference}"
        );

        // Seeded with one (the gradient is `g` itself) and scaled (it is 3 g).
        let grad = fused.backward().unwrap();
        assert_eq!(max_abs_diff(grad.get(out.as_tensor()).unwrap(), &g), 0.0);
        let grad = (fused * 3.0).unwrap().backward().unwrap();
        let expected = (&g * 3.0).unwrap();
        let err = max_abs_diff(grad.get(out.as_tensor()).unwrap(), &expected);
        assert!(err < 1e-6, "{dtype:?}: scaled gradient differs by {err}");
    }
}

#[test]
fn mismatched_operands_fall_back_to_the_composed_ops() {
    let (out, g) = pair(DType::F32);
    // A broadcastable but differently shaped `g`: the composed form's error, not a panic.
    let short = g.narrow(2, 0, 1).unwrap();
    assert!(seed::dot(out.as_tensor(), &short).is_err());
    // Strided operands are made contiguous first.
    let t = out.as_tensor().transpose(0, 2).unwrap();
    let gt = g.transpose(0, 2).unwrap();
    let a = seed::dot(&t, &gt).unwrap().to_scalar::<f32>().unwrap();
    let b = seed::dot(out.as_tensor(), &g)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    assert!((a - b).abs() <= 1e-3 * b.abs(), "{a} vs {b}");
}
