//! BatchNorm folded into the convolutions at inference: the eval-mode forward of the
//! whole two-stream model equals the unfolded one (BatchNorm as its own op) on weights
//! with non-trivial running statistics, for plain (loaded) and trainable weights, and
//! after a training pass has moved the running statistics.

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use revstream::model::norm::BnMode;
use revstream::model::{Config, StResNet};

/// Worst |a - b| over the largest |b|, across the three logit tensors.
const TOLERANCE: f32 = 1e-4;

/// Random BatchNorm affine parameters and running statistics (variance in 0.2..3).
fn randomise_batchnorm(vars: &VarMap, seed: u64) {
    let mut rng = StdRng::seed_from_u64(seed);
    let data = vars.data().lock().unwrap();
    let mut names: Vec<&String> = data.keys().collect();
    names.sort();
    for name in names {
        let var = &data[name];
        let n = var.elem_count();
        let batchnorm = name.contains(".bn") || name.contains("downsample.1.");
        let (lo, hi) = match (batchnorm, name.ends_with("running_var")) {
            (true, true) => (0.2, 3.0),
            (true, false) => (-1.0, 1.0),
            (false, _) => continue,
        };
        let values: Vec<f32> = (0..n).map(|_| rng.random_range(lo..hi)).collect();
        let t = Tensor::from_vec(values, var.shape(), &Device::Cpu).unwrap();
        var.set(&t).unwrap();
    }
}

fn inputs(cfg: &Config, batch: usize, seed: u64) -> (Tensor, Tensor) {
    let (t, s) = (cfg.frames, cfg.input_size);
    let dev = Device::Cpu;
    let rgb = Tensor::randn(0f32, 1.0, (batch, t, 3, s, s), &dev).unwrap();
    let flow = Tensor::randn(0f32, 1.0, (batch, t, cfg.flow_channels(), s, s), &dev).unwrap();
    // randn draws from a global generator; mix in the seed so cases differ.
    ((rgb + seed as f64 * 1e-3).unwrap(), flow)
}

/// Worst relative difference of the three logit tensors.
fn logits_diff(model: &StResNet, rgb: &Tensor, flow: &Tensor) -> (f32, f32) {
    let folded = model.forward_with(rgb, flow, BnMode::Eval).unwrap();
    let unfolded = model.forward_with(rgb, flow, BnMode::EvalUnfolded).unwrap();
    let mut worst = 0f32;
    let mut scale = 0f32;
    for (a, b) in [
        (&folded.appearance, &unfolded.appearance),
        (&folded.motion, &unfolded.motion),
        (&folded.fused, &unfolded.fused),
    ] {
        let d = (a - b).unwrap().abs().unwrap().max_all().unwrap();
        let m = b.abs().unwrap().max_all().unwrap();
        worst = worst.max(d.to_scalar::<f32>().unwrap());
        scale = scale.max(m.to_scalar::<f32>().unwrap());
    }
    (worst / scale, scale)
}

fn check_config(cfg: &Config, seed: u64) {
    let vars = VarMap::new();
    let trainable = StResNet::new(
        cfg,
        VarBuilder::from_varmap(&vars, DType::F32, &Device::Cpu),
    )
    .unwrap();
    randomise_batchnorm(&vars, seed);
    let (rgb, flow) = inputs(cfg, 2, seed);

    // Trainable variables: folded afresh on every pass, composed ops.
    let (err, scale) = logits_diff(&trainable, &rgb, &flow);
    assert!(scale > 1e-3, "degenerate logits (max {scale})");
    assert!(
        err <= TOLERANCE,
        "trainable weights: folded vs unfolded {err:e}"
    );

    // Plain tensors, as the server loads them: folded once and cached, fused kernel.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.safetensors");
    vars.save(&path).unwrap();
    let tensors = candle_core::safetensors::load(&path, &Device::Cpu).unwrap();
    let loaded = StResNet::new(
        cfg,
        VarBuilder::from_tensors(tensors, DType::F32, &Device::Cpu),
    )
    .unwrap();
    for _ in 0..2 {
        let (err, _) = logits_diff(&loaded, &rgb, &flow);
        assert!(
            err <= TOLERANCE,
            "loaded weights: folded vs unfolded {err:e}"
        );
    }
    // Same numbers either way.
    let a = trainable.forward(&rgb, &flow, false).unwrap().fused;
    let b = loaded.forward(&rgb, &flow, false).unwrap().fused;
    let d = (a - &b).unwrap().abs().unwrap().max_all().unwrap();
    let m = b.abs().unwrap().max_all().unwrap();
    let rel = d.to_scalar::<f32>().unwrap() / m.to_scalar::<f32>().unwrap();
    assert!(rel <= TOLERANCE, "loaded vs trainable eval forward {rel:e}");

    // A training pass updates the running statistics in place; the cached folding must
    // follow them.
    let before = loaded.forward(&rgb, &flow, false).unwrap().fused;
    loaded.forward(&rgb, &flow, true).unwrap();
    let (err, _) = logits_diff(&loaded, &rgb, &flow);
    assert!(
        err <= TOLERANCE,
        "after a training pass: folded vs unfolded {err:e}"
    );
    let after = loaded.forward(&rgb, &flow, false).unwrap().fused;
    let moved = (after - before)
        .unwrap()
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    assert!(moved > 1e-6, "the training pass changed nothing");
}

#[test]
fn tiny_model_folded_eval_matches_unfolded() {
    check_config(&Config::tiny(5), 1);
}

#[test]
fn bottleneck_strided_stem_model_folded_eval_matches_unfolded() {
    let cfg = Config {
        bottleneck: true,
        stem_kernel: 7,
        stem_stride: 2,
        stem_pool: true,
        reversible: false,
        ..Config::tiny(4)
    };
    check_config(&cfg, 2);
}
