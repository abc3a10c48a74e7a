//! The fused training-mode BatchNorm op (CPU, f32) against the composed candle ops in f64:
//! output, running-statistics update and the gradients of input, weight and bias.

use candle_core::{D, DType, Device, Tensor, Var};
use candle_nn::{VarBuilder, VarMap};
use revstream::model::norm::{BatchNorm, BnMode, apply_updates};
use revstream::ops::bn_train;

#[path = "common/tensors.rs"]
mod tensors;
use tensors::max_abs_diff;

const CH: usize = 5;

/// A layer in `dtype` with given weight and bias.
fn layer(dtype: DType, weight: &[f32], bias: &[f32]) -> (VarMap, BatchNorm) {
    let vm = VarMap::new();
    let bn = BatchNorm::new(
        CH,
        0.1,
        1e-5,
        VarBuilder::from_varmap(&vm, dtype, &Device::Cpu),
    )
    .unwrap();
    let data = vm.data().lock().unwrap();
    data["weight"]
        .set(
            &Tensor::new(weight, &Device::Cpu)
                .unwrap()
                .to_dtype(dtype)
                .unwrap(),
        )
        .unwrap();
    data["bias"]
        .set(
            &Tensor::new(bias, &Device::Cpu)
                .unwrap()
                .to_dtype(dtype)
                .unwrap(),
        )
        .unwrap();
    drop(data);
    (vm, bn)
}

/// Deterministic input `(6, CH, 7, 9)` whose channels have large, different means and
/// scales (the case where one-pass variance would lose precision).
fn input() -> Tensor {
    let n = 6 * CH * 7 * 9;
    let x = Tensor::arange(0f32, n as f32, &Device::Cpu).unwrap();
    let wave = (x * 0.917).unwrap().sin().unwrap();
    let ch = Tensor::arange(0f32, CH as f32, &Device::Cpu)
        .unwrap()
        .reshape((1, CH, 1, 1))
        .unwrap();
    let scale = ((&ch * 1.7).unwrap() + 0.3).unwrap();
    let offset = (&ch * 40.0).unwrap();
    wave.reshape((6, CH, 7, 9))
        .unwrap()
        .broadcast_mul(&scale)
        .unwrap()
        .broadcast_add(&offset)
        .unwrap()
}

fn max_abs(a: &Tensor) -> f64 {
    a.to_dtype(DType::F64)
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(D::Minus1)
        .unwrap()
        .to_scalar::<f64>()
        .unwrap()
}

#[test]
fn fused_op_matches_composed_ops_in_f64() {
    matches_composed_ops(false);
}

#[test]
fn fused_op_with_relu_matches_composed_ops_in_f64() {
    matches_composed_ops(true);
}

/// BatchNorm (then ReLU when `relu`) through the fused f32 op and through candle's
/// composed ops in f64: outputs, gradients and running statistics agree.
fn matches_composed_ops(relu: bool) {
    let (weight, bias) = ([0.5, 1.5, -0.7, 2.0, 1.0], [0.1, -0.3, 0.0, 1.2, -2.0]);
    let (vm32, bn32) = layer(DType::F32, &weight, &bias);
    let (vm64, bn64) = layer(DType::F64, &weight, &bias);
    let x32 = Var::from_tensor(&input()).unwrap();
    let x64 = Var::from_tensor(&input().to_dtype(DType::F64).unwrap()).unwrap();
    assert!(bn_train::supported(x32.as_tensor()));
    assert!(!bn_train::supported(x64.as_tensor()));

    // A loss that weights every output differently, so the gradients are not trivial.
    let r = (Tensor::arange(0f32, x32.elem_count() as f32, &Device::Cpu).unwrap() * 0.31)
        .unwrap()
        .cos()
        .unwrap()
        .reshape(x32.shape())
        .unwrap();
    let (mut up32, mut up64) = (Vec::new(), Vec::new());
    let y32 = bn32
        .forward_act(x32.as_tensor(), &mut BnMode::Train(&mut up32), relu)
        .unwrap();
    let y64 = bn64
        .forward_act(x64.as_tensor(), &mut BnMode::Train(&mut up64), relu)
        .unwrap();
    let err = max_abs_diff(&y32, &y64);
    assert!(err < 1e-4 * max_abs(&y64), "output differs by {err}");
    if relu {
        // The bias of -2 clamps nearly all of the last channel; the others are mixed.
        let clamped = y32.eq(0f32).unwrap().to_dtype(DType::F32).unwrap();
        let share = clamped.mean((0, 2, 3)).unwrap().to_vec1::<f32>().unwrap();
        let mixed = share[..4].iter().all(|&s| (0.2..0.8).contains(&s));
        assert!(
            share[4] > 0.9 && mixed,
            "clamped share per channel {share:?}"
        );
    }

    let g32 = (&y32 * &r).unwrap().sum_all().unwrap().backward().unwrap();
    let r64 = r.to_dtype(DType::F64).unwrap();
    let g64 = (&y64 * &r64)
        .unwrap()
        .sum_all()
        .unwrap()
        .backward()
        .unwrap();
    let var = |vm: &VarMap, name: &str| vm.data().lock().unwrap()[name].as_tensor().clone();
    let pairs = [
        ("input", x32.as_tensor().clone(), x64.as_tensor().clone()),
        ("weight", var(&vm32, "weight"), var(&vm64, "weight")),
        ("bias", var(&vm32, "bias"), var(&vm64, "bias")),
    ];
    for (name, a, b) in &pairs {
        let (ga, gb) = (g32.get(a).unwrap(), g64.get(b).unwrap());
        let err = max_abs_diff(ga, gb);
        assert!(
            err <= 1e-4 * max_abs(gb),
            "{name} gradient differs by {err} (max {})",
            max_abs(gb)
        );
    }

    apply_updates(&up32).unwrap();
    apply_updates(&up64).unwrap();
    for (a, b) in [
        (bn32.running_mean(), bn64.running_mean()),
        (bn32.running_var(), bn64.running_var()),
    ] {
        let err = max_abs_diff(a, b);
        assert!(
            err <= 1e-5 * max_abs(b).max(1.0),
            "running statistic differs by {err}"
        );
    }
    // The means were 0, 40, .., 160: the update moved them by the momentum's share.
    let means = bn32.running_mean().to_vec1::<f32>().unwrap();
    assert!((means[4] - 16.0).abs() < 0.05, "running mean {means:?}");
}

#[test]
fn recompute_mode_records_nothing_and_gives_the_same_output() {
    let (_vm, bn) = layer(DType::F32, &[1.0; CH], &[0.0; CH]);
    let x = input();
    let mut updates = Vec::new();
    let a = bn.forward(&x, &mut BnMode::Train(&mut updates)).unwrap();
    let b = bn.forward(&x, &mut BnMode::Recompute).unwrap();
    assert_eq!(updates.len(), 1);
    assert_eq!(max_abs_diff(&a, &b), 0.0);
    // Normalised output: zero mean, unit variance per channel.
    let per_channel = a.transpose(0, 1).unwrap().flatten_from(1).unwrap();
    let mean = per_channel.mean(1).unwrap();
    let var = per_channel.sqr().unwrap().mean(1).unwrap();
    assert!(max_abs(&mean) < 1e-4, "{mean}");
    assert!(max_abs_diff(&var, &Tensor::ones(CH, DType::F32, &Device::Cpu).unwrap()) < 1e-3);
}

#[test]
fn mismatched_parameters_are_an_error_not_a_panic() {
    let x = input();
    let w = Tensor::ones(CH + 1, DType::F32, &Device::Cpu).unwrap();
    let b = Tensor::zeros(CH + 1, DType::F32, &Device::Cpu).unwrap();
    let err = bn_train::batch_norm_train(&x, &w, &b, 1e-5, false).unwrap_err();
    assert!(err.to_string().contains("channels"), "{err}");
}

/// A channel that is constant (all zero: a dead channel) with bias 0 has pre-activations
/// of exactly zero. Through the ReLU its bias still gets the gradient, as through
/// candle's composed ops (ReLU passes the gradient at zero), so such a channel can
/// recover; the other channels are unaffected.
#[test]
fn a_dead_channel_passes_the_gradient_at_zero_as_candle_does() {
    let (weight, bias) = ([1.0; CH], [0.0; CH]);
    let (vm32, bn32) = layer(DType::F32, &weight, &bias);
    let (vm64, bn64) = layer(DType::F64, &weight, &bias);
    let dead = Tensor::new(&[1f32, 1.0, 0.0, 1.0, 1.0], &Device::Cpu)
        .unwrap()
        .reshape((1, CH, 1, 1))
        .unwrap();
    let x = input().broadcast_mul(&dead).unwrap();
    let x32 = Var::from_tensor(&x).unwrap();
    let x64 = Var::from_tensor(&x.to_dtype(DType::F64).unwrap()).unwrap();
    let (mut up32, mut up64) = (Vec::new(), Vec::new());
    let y32 = bn32
        .forward_act(x32.as_tensor(), &mut BnMode::Train(&mut up32), true)
        .unwrap();
    let y64 = bn64
        .forward_act(x64.as_tensor(), &mut BnMode::Train(&mut up64), true)
        .unwrap();
    let zero = y32.narrow(1, 2, 1).unwrap();
    assert_eq!(max_abs(&zero), 0.0, "the dead channel's output is zero");
    let g32 = y32.sum_all().unwrap().backward().unwrap();
    let g64 = y64.sum_all().unwrap().backward().unwrap();
    let bias = |vm: &VarMap| vm.data().lock().unwrap()["bias"].as_tensor().clone();
    let (b32, b64) = (bias(&vm32), bias(&vm64));
    let (d32, d64) = (g32.get(&b32).unwrap(), g64.get(&b64).unwrap());
    // d(Σ y)/d bias of the dead channel: one per element, 6 * 7 * 9 of them.
    let dead_grad = d32.to_vec1::<f32>().unwrap()[2];
    assert_eq!(dead_grad, (6 * 7 * 9) as f32);
    let err = max_abs_diff(d32, d64);
    assert!(err <= 1e-3, "bias gradients differ by {err}");
}
