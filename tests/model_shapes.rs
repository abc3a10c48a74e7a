//! Shapes, batch/single equivalence, input validation and safetensors round trip of the ST-ResNet.

use candle_core::{DType, Device, IndexOp, Tensor};
use candle_nn::{VarBuilder, VarMap};
use revstream::model::{Config, StResNet};

fn small(reversible: bool) -> Config {
    Config {
        frames: 3,
        reversible,
        ..Config::tiny(5)
    }
}

fn build(cfg: &Config) -> (VarMap, StResNet) {
    let vm = VarMap::new();
    let model = StResNet::new(cfg, VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu)).unwrap();
    (vm, model)
}

fn inputs(cfg: &Config, b: usize, seed: f64) -> (Tensor, Tensor) {
    let dev = Device::Cpu;
    let s = cfg.input_size;
    let n = b * cfg.frames * s * s;
    let rgb = Tensor::arange(0f32, (n * 3) as f32, &dev).unwrap();
    let rgb = ((rgb * (0.37 + seed)).unwrap().sin().unwrap())
        .reshape((b, cfg.frames, 3, s, s))
        .unwrap();
    let fc = cfg.flow_channels();
    let flow = Tensor::arange(0f32, (n * fc) as f32, &dev).unwrap();
    let flow = ((flow * (0.11 + seed)).unwrap().cos().unwrap())
        .reshape((b, cfg.frames, fc, s, s))
        .unwrap();
    (rgb, flow)
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
}

#[test]
fn logits_have_batch_by_classes_shape_and_fusion_is_weighted_sum() {
    for reversible in [false, true] {
        let cfg = small(reversible);
        let (_vm, model) = build(&cfg);
        let (rgb, flow) = inputs(&cfg, 2, 0.0);
        let out = model.forward(&rgb, &flow, false).unwrap();
        for t in [&out.appearance, &out.motion, &out.fused] {
            assert_eq!(t.dims(), &[2, 5]);
        }
        let expect = ((&out.appearance * 0.5).unwrap() + (&out.motion * 0.5).unwrap()).unwrap();
        assert!(max_abs_diff(&expect, &out.fused) < 1e-6);
    }
}

#[test]
fn batch_equals_single_in_eval_mode() {
    for reversible in [false, true] {
        let cfg = small(reversible);
        let (_vm, model) = build(&cfg);
        let (rgb, flow) = inputs(&cfg, 3, 0.0);
        // Move the running statistics away from their initial values first.
        model.forward(&rgb, &flow, true).unwrap();
        let batch = model.forward(&rgb, &flow, false).unwrap();
        for i in 0..3 {
            let r = rgb.i(i..i + 1).unwrap();
            let f = flow.i(i..i + 1).unwrap();
            let single = model.forward(&r, &f, false).unwrap();
            let row = batch.fused.i(i..i + 1).unwrap();
            let scale = row
                .abs()
                .unwrap()
                .max_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap();
            assert!(
                max_abs_diff(&row, &single.fused) <= 1e-5 * scale.max(1.0),
                "sample {i}"
            );
        }
    }
}

#[test]
fn other_clip_lengths_run_fully_convolutional_in_time() {
    let cfg = small(true);
    let (_vm, model) = build(&cfg);
    let long = Config {
        frames: 7,
        ..cfg.clone()
    };
    let (rgb, flow) = inputs(&long, 1, 0.0);
    assert_eq!(
        model.forward(&rgb, &flow, false).unwrap().fused.dims(),
        &[1, 5]
    );
}

#[test]
fn bad_inputs_are_errors_not_panics() {
    let cfg = small(true);
    let (_vm, model) = build(&cfg);
    let (rgb, flow) = inputs(&cfg, 1, 0.0);
    let wrong_flow = flow.narrow(2, 0, 1).unwrap();
    assert!(model.forward(&rgb, &wrong_flow, false).is_err());
    let short = flow.narrow(1, 0, 2).unwrap();
    assert!(model.forward(&rgb, &short, false).is_err());
    let four_d = rgb.squeeze(0).unwrap();
    assert!(model.forward(&four_d, &flow, false).is_err());
    let bad = Config {
        base_width: 7,
        ..cfg
    };
    assert!(
        StResNet::new(
            &bad,
            VarBuilder::from_varmap(&VarMap::new(), DType::F32, &Device::Cpu)
        )
        .is_err()
    );
}

#[test]
fn safetensors_round_trip_with_pytorch_names() {
    let cfg = small(true);
    let (vm, model) = build(&cfg);
    let (rgb, flow) = inputs(&cfg, 2, 0.0);
    model.forward(&rgb, &flow, true).unwrap();
    let expect = model.forward(&rgb, &flow, false).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.safetensors");
    vm.save(&path).unwrap();

    let names = candle_core::safetensors::load(&path, &Device::Cpu).unwrap();
    for name in [
        "appearance.conv1.weight",
        "appearance.bn1.running_var",
        "appearance.layer1.0.conv1.weight",
        "appearance.layer2.0.downsample.0.weight",
        "appearance.layer2.1.f.conv1.weight",
        "appearance.layer3.1.g.bn2.running_mean",
        "motion.conv1.weight",
        "motion.fc.weight",
        "motion.fc.bias",
    ] {
        assert!(names.contains_key(name), "missing {name}");
    }
    // Temporal units store a PyTorch Conv3d weight (out, in, 3, kh, kw).
    assert_eq!(
        names["appearance.layer2.1.f.conv1.weight"].dims(),
        &[8, 8, 3, 3, 3]
    );

    let loaded =
        unsafe { VarBuilder::from_mmaped_safetensors(&[&path], DType::F32, &Device::Cpu) }.unwrap();
    let model2 = StResNet::new(&cfg, loaded).unwrap();
    let got = model2.forward(&rgb, &flow, false).unwrap();
    assert_eq!(max_abs_diff(&expect.fused, &got.fused), 0.0);

    let (mut vm3, model3) = build(&cfg);
    vm3.load(&path).unwrap();
    let got3 = model3.forward(&rgb, &flow, false).unwrap();
    assert_eq!(max_abs_diff(&expect.fused, &got3.fused), 0.0);
}
