//! Optimisers, schedules, metrics, sampling/augmentation and the cache, each against
//! hand-computed values.

use candle_core::{Device, Tensor, Var};
use revstream::flow::FlowMethod;
use revstream::train::augment::Transform;
use revstream::train::batch::{self, InputSpec};
use revstream::train::cache::{self, CacheSettings, CachedVideo};
use revstream::train::dataset::Dataset;
use revstream::train::metrics::Tally;
use revstream::train::optim::{Optimizer, OptimizerKind, Schedule};

#[test]
fn cosine_schedule_warms_up_linearly_then_decays_to_the_floor() {
    let s = Schedule::Cosine {
        warmup: 4,
        total: 104,
        min_factor: 0.1,
    };
    assert!((s.lr(1.0, 0) - 0.25).abs() < 1e-12);
    assert!((s.lr(1.0, 3) - 1.0).abs() < 1e-12);
    assert!((s.lr(1.0, 4) - 1.0).abs() < 1e-12);
    assert!((s.lr(1.0, 54) - 0.55).abs() < 1e-12);
    assert!((s.lr(1.0, 104) - 0.1).abs() < 1e-12);
    let st = Schedule::Step {
        warmup: 0,
        every: 10,
        gamma: 0.5,
    };
    assert_eq!(st.lr(2.0, 25), 0.5);
}

fn quadratic_grads(var: &Var) -> candle_core::backprop::GradStore {
    // loss = sum(x^2) / 2, gradient x.
    let loss = (var.as_tensor().sqr().unwrap().sum_all().unwrap() * 0.5).unwrap();
    loss.backward().unwrap()
}

#[test]
fn sgd_momentum_matches_pytorch_update_rule() {
    let var = Var::from_tensor(&Tensor::new(&[[1.0f32, -2.0]], &Device::Cpu).unwrap()).unwrap();
    let kind = OptimizerKind::Sgd {
        momentum: 0.9,
        weight_decay: 0.1,
    };
    let mut opt = Optimizer::new(kind, vec![("fc.weight".into(), var.clone())]);
    // Step 1: g = x + 0.1 x = 1.1 x; buf = g; x = x - 0.5 * 1.1 x = 0.45 x.
    opt.apply(&quadratic_grads(&var), 0.5).unwrap();
    let x1 = var.as_tensor().to_vec2::<f32>().unwrap()[0].clone();
    assert!(
        (x1[0] - 0.45).abs() < 1e-6 && (x1[1] + 0.9).abs() < 1e-6,
        "{x1:?}"
    );
    // Step 2: g = 1.1 * 0.45 = 0.495; buf = 0.9 * 1.1 + 0.495 = 1.485; x = 0.45 - 0.7425.
    opt.apply(&quadratic_grads(&var), 0.5).unwrap();
    let x2 = var.as_tensor().to_vec2::<f32>().unwrap()[0][0];
    assert!((x2 - (0.45 - 0.7425)).abs() < 1e-6, "{x2}");
}

#[test]
fn adamw_first_step_moves_each_weight_by_the_learning_rate() {
    let var = Var::from_tensor(&Tensor::new(&[3.0f32, -0.01], &Device::Cpu).unwrap()).unwrap();
    let kind = OptimizerKind::AdamW {
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-12,
        weight_decay: 0.0,
    };
    let mut opt = Optimizer::new(kind, vec![("b".into(), var.clone())]);
    opt.apply(&quadratic_grads(&var), 0.1).unwrap();
    let x = var.as_tensor().to_vec1::<f32>().unwrap();
    // Bias-corrected Adam's first step is lr * sign(g).
    assert!(
        (x[0] - 2.9).abs() < 1e-5 && (x[1] - 0.09).abs() < 1e-5,
        "{x:?}"
    );
    // State survives a save/restore round trip.
    let state = opt.state_tensors();
    assert_eq!(state.len(), 2);
    let mut other = Optimizer::new(kind, vec![("b".into(), var.clone())]);
    other.load_state(state, 1);
    assert_eq!(other.step, 1);
}

#[test]
fn tally_counts_top1_top5_and_per_class() {
    let mut t = Tally::new(6);
    t.add(&[0.9, 0.1, 0.0, 0.0, 0.0, 0.0], 0); // hit
    t.add(&[0.9, 0.1, 0.0, 0.0, 0.0, 0.0], 1); // top-5 only
    t.add(&[0.0, 0.1, 0.2, 0.3, 0.4, 0.5], 0); // 6th: miss both
    t.add(&[0.0, 0.0, 0.0, 0.0, 0.0, 1.0], 5); // hit
    assert_eq!(t.total(), 4);
    assert_eq!(t.top1(), 0.5);
    assert_eq!(t.top5(), 0.75);
    assert_eq!(t.per_class()[0], 0.5);
    assert_eq!(t.per_class()[1], 0.0);
    assert_eq!(t.confusion[1][0], 1);
}

/// A 4x4 video of `frames` frames whose flow u is +1 px on the left half, 0 elsewhere.
fn toy_video(frames: usize) -> CachedVideo {
    let (size, bound) = (4usize, 4.0f32);
    let q = |px: f32| (((px + bound) * 255.0 / (2.0 * bound)).round()) as u8;
    let mut u = Vec::new();
    for _ in 0..frames - 1 {
        for _y in 0..size {
            for x in 0..size {
                u.push(if x < 2 { q(1.0) } else { q(0.0) });
            }
        }
    }
    CachedVideo {
        size,
        frames,
        rgb: (0..frames * size * size * 3)
            .map(|i| (i % 251) as u8)
            .collect(),
        flow_u: u,
        flow_v: vec![q(0.0); (frames - 1) * size * size],
    }
}

fn toy_spec() -> InputSpec {
    InputSpec {
        frames: 2,
        flow_stack: 1,
        size: 4,
        mean: [0.0; 3],
        std: [1.0; 3],
    }
}

#[test]
fn centred_positions_match_the_servers_clip_starts() {
    // Server: share = n / T, centre = (i + 0.5) share, start = floor(max(centre - (L+1)/2, 0)).
    assert_eq!(
        batch::positions(50, 8, 2, None),
        [1, 7, 14, 20, 26, 32, 39, 45]
    );
    assert_eq!(batch::positions(5, 4, 2, None), [0, 0, 1, 2]);
    let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(3);
    for _ in 0..100 {
        let p = batch::positions(40, 4, 3, Some(&mut rng));
        assert!(p.iter().all(|&s| s + 3 < 40));
        assert!(p.windows(2).all(|w| w[0] <= w[1] + 10));
    }
}

#[test]
fn identity_keeps_values_and_flip_mirrors_and_negates_u() {
    let v = toy_video(3);
    let spec = toy_spec();
    let (mut rgb, mut flow) = (Vec::new(), Vec::new());
    batch::push_sample(
        &v,
        &spec,
        &[0, 1],
        &Transform::identity(4),
        &mut rgb,
        &mut flow,
    );
    assert_eq!(rgb.len(), 2 * 3 * 16);
    assert_eq!(flow.len(), 2 * 2 * 16);
    // R plane of frame 0 is bytes 0, 3, 6, ... divided by 255.
    assert!((rgb[1] - 3.0 / 255.0).abs() < 1e-6);
    // u is +1 px / bound 4 = 0.25 on the left half (quantisation step 8/255 px).
    assert!((flow[0] - 0.25).abs() < 0.01 && flow[3].abs() < 0.01);

    let flip = Transform {
        flip: true,
        ..Transform::identity(4)
    };
    let (mut rgb_f, mut flow_f) = (Vec::new(), Vec::new());
    batch::push_sample(&v, &spec, &[0, 1], &flip, &mut rgb_f, &mut flow_f);
    // Mirrored: the moving half is now on the right, moving left.
    assert!(flow_f[0].abs() < 0.01 && (flow_f[3] + 0.25).abs() < 0.01);
    assert_eq!(rgb_f[0], rgb[3]);

    // A 2x zoom doubles displacements.
    let zoom = Transform {
        x: 0.0,
        y: 0.0,
        side: 2.0,
        flip: false,
    };
    let (mut r, mut f) = (Vec::new(), Vec::new());
    batch::push_sample(&v, &spec, &[0, 1], &zoom, &mut r, &mut f);
    assert!((f[0] - 0.5).abs() < 0.02, "{}", f[0]);
}

#[test]
fn cache_skips_undecodable_videos_and_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let videos = dir.path().join("videos");
    let opts = revstream::train::synth::SynthOptions {
        width: 32,
        height: 32,
        fps: 8.0,
        seconds: 1.0,
    };
    revstream::train::synth::generate(&videos, 1, 4, &opts, &|| {}).unwrap();
    std::fs::write(
        videos.join("grow").join("broken.mp4"),
        b"this is not a video",
    )
    .unwrap();
    std::fs::write(videos.join("wave").join("empty.mp4"), b"").unwrap();
    let ds = Dataset::open(&videos).unwrap();
    assert_eq!(ds.samples.len(), 12);
    let settings = CacheSettings {
        size: 16,
        flow_bound: 4.0,
        preset: FlowMethod::Fast,
        max_frames: 50,
        flow_fps: None,
        flow_supersample: 1,
    };
    let c = dir.path().join("cache");
    let index = cache::prepare(&ds, &c, &settings, &|| {}).unwrap();
    assert_eq!(index.entries.len(), 10);
    assert_eq!(index.failures.len(), 2);
    let v = cache::read_video(&c.join(&index.entries[0].file)).unwrap();
    assert_eq!((v.frames, v.size), (8, 16));
    assert_eq!(v.flow_u.len(), 7 * 256);

    // Resume: cached files are reused untouched, the index is the same.
    let before = std::fs::metadata(c.join(&index.entries[0].file))
        .unwrap()
        .modified()
        .unwrap();
    let again = cache::prepare(&ds, &c, &settings, &|| {}).unwrap();
    assert_eq!(again, index);
    let after = std::fs::metadata(c.join(&index.entries[0].file))
        .unwrap()
        .modified()
        .unwrap();
    assert_eq!(before, after);

    // Other settings in the same folder are refused rather than mixed.
    let other = CacheSettings {
        size: 24,
        ..settings.clone()
    };
    assert!(cache::prepare(&ds, &c, &other, &|| {}).is_err());
    // Four flow fields per second of these 8 fps clips: every second frame is kept.
    let thinned = CacheSettings {
        flow_fps: Some(4.0),
        ..settings.clone()
    };
    let index4 = cache::prepare(&ds, &dir.path().join("cache4"), &thinned, &|| {}).unwrap();
    let v4 = cache::read_video(&dir.path().join("cache4").join(&index4.entries[0].file)).unwrap();
    assert_eq!((v4.frames, v4.flow_u.len()), (4, 3 * 256));
    assert_eq!(v4.frame(1), v.frame(2));
    // Flow solved at twice the size: the RGB frames are the double-size frames shrunk,
    // the flow is at the cached size.
    let fine = CacheSettings {
        flow_supersample: 2,
        ..settings.clone()
    };
    let double = CacheSettings {
        size: 32,
        ..settings.clone()
    };
    let index_fine = cache::prepare(&ds, &dir.path().join("fine"), &fine, &|| {}).unwrap();
    let index_32 = cache::prepare(&ds, &dir.path().join("c32"), &double, &|| {}).unwrap();
    let vf = cache::read_video(&dir.path().join("fine").join(&index_fine.entries[0].file)).unwrap();
    let v32 = cache::read_video(&dir.path().join("c32").join(&index_32.entries[0].file)).unwrap();
    assert_eq!((vf.frames, vf.size, vf.flow_u.len()), (8, 16, 7 * 256));
    let big = revstream::video::RgbFrame {
        width: 32,
        height: 32,
        pts_s: 0.0,
        data: v32.frame(1).to_vec(),
    };
    assert_eq!(vf.frame(1), big.box_downsample(2).data.as_slice());
    // A truncated cache file is a typed error.
    let path = c.join(&index.entries[0].file);
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    assert!(cache::read_video(&path).is_err());
}

#[test]
fn init_from_a_torchvision_resnet_fills_both_streams_and_averages_flow_conv1() {
    use revstream::artifact::{ModelSpec, PreprocessingSpec};
    use revstream::model::Config;
    use revstream::train::checkpoint;
    use std::collections::HashMap;

    let mut cfg = Config::tiny(4);
    cfg.reversible = false;
    cfg.temporal_units = vec![[1, 1]];
    let model = ModelSpec {
        architecture: cfg,
        preprocessing: PreprocessingSpec {
            segments: 1,
            short_side: None,
            mean: [0.5; 3],
            std: [0.25; 3],
            flow_bound: 20.0,
            flow_fps: None,
            flow_preset: None,
            flow_supersample: 1,
        },
        labels: (0..4).map(|i| i.to_string()).collect(),
    };
    // A "torchvision" file: another model's appearance stream with the prefix removed,
    // its temporal weight given as the 2-D centre tap, and a 1000-class classifier.
    let (source, _) = revstream::train::trainer::build(&model, 1).unwrap();
    let mut file: HashMap<String, Tensor> = HashMap::new();
    for (k, v) in source.data().lock().unwrap().iter() {
        if let Some(name) = k.strip_prefix("appearance.") {
            let t = v.as_tensor().clone();
            let t = if t.rank() == 5 {
                t.narrow(2, 1, 1).unwrap().squeeze(2).unwrap()
            } else {
                t
            };
            file.insert(name.to_string(), t);
        }
    }
    file.insert(
        "fc.weight".into(),
        Tensor::zeros((1000, 64), candle_core::DType::F32, &Device::Cpu).unwrap(),
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("resnet.safetensors");
    candle_core::safetensors::save(&file, &path).unwrap();

    let (target, _) = revstream::train::trainer::build(&model, 2).unwrap();
    let (loaded, skipped) = checkpoint::init_from(&target, &path).unwrap();
    assert!(
        loaded > 20 && skipped >= 2,
        "{loaded} loaded, {skipped} skipped"
    );
    let data = target.data().lock().unwrap();
    let src = source.data().lock().unwrap();
    let get = |m: &HashMap<String, Var>, k: &str| {
        m[k].as_tensor()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap()
    };
    assert_eq!(
        get(&data, "appearance.layer1.0.conv1.weight"),
        get(&src, "appearance.layer1.0.conv1.weight")
    );
    assert_eq!(
        get(&data, "motion.layer3.1.conv2.weight"),
        get(&src, "appearance.layer3.1.conv2.weight")
    );
    // Temporal unit: each tap is the 2-D weight / 3.
    let tw = data["motion.layer2.1.conv1.weight"].as_tensor().clone();
    let centre = src["appearance.layer2.1.conv1.weight"]
        .as_tensor()
        .narrow(2, 1, 1)
        .unwrap();
    let diff = (tw.narrow(2, 0, 1).unwrap() - (centre / 3.0).unwrap())
        .unwrap()
        .abs()
        .unwrap();
    assert!(diff.max_all().unwrap().to_scalar::<f32>().unwrap() < 1e-6);
    // Flow conv1: the RGB conv1 averaged over its 3 input channels, on each of 2L channels.
    let rgb = data["appearance.conv1.weight"].as_tensor().clone();
    let flow = data["motion.conv1.weight"].as_tensor().clone();
    assert_eq!(flow.dim(1).unwrap(), 4);
    let mean = rgb.mean_keepdim(1).unwrap();
    for c in 0..4 {
        let d = (flow.narrow(1, c, 1).unwrap() - &mean)
            .unwrap()
            .abs()
            .unwrap();
        assert!(d.max_all().unwrap().to_scalar::<f32>().unwrap() < 1e-6);
    }
    // The classifier (1000 classes) did not fit and kept its own initialisation.
    assert_eq!(data["appearance.fc.weight"].dims(), &[4, 64]);
}
