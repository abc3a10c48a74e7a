//! The analyses on tiny models with known answers: zero residual branches (deleting a unit
//! changes nothing, every Jacobian is zero), hand-set branches (a known top singular value
//! and alignment), the path decomposition of the gradient, and the binomial path counts.

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use rand::SeedableRng;
use rand::rngs::StdRng;
use revstream::analysis::AnalysisError;
use revstream::analysis::alignment::{self, AlignmentOptions};
use revstream::analysis::inputs::Batch;
use revstream::analysis::lesion::{self, LesionOptions};
use revstream::analysis::paths::{self, PathOptions};
use revstream::analysis::power::{self, PowerOptions};
use revstream::analysis::probe::{self, Intervention, StreamKind, UnitId};
use revstream::model::{Config, StResNet};
use revstream::train::checkpoint::seeded_init;

#[path = "common/tensors.rs"]
mod tensors;
use tensors::max_abs_diff;

const CLASSES: usize = 3;

/// 16x16 clips of 2 frames, widths 4..32, units 2-1-1-1: five units per stream.
fn config(reversible: bool) -> Config {
    Config {
        input_size: 16,
        frames: 2,
        flow_stack: 1,
        base_width: 4,
        units: [2, 1, 1, 1],
        stem_stride: 1,
        temporal_units: vec![],
        reversible,
        ..Config::tiny(CLASSES)
    }
}

fn build(cfg: &Config, seed: u64) -> (VarMap, StResNet) {
    let vars = VarMap::new();
    let vb = VarBuilder::from_varmap(&vars, DType::F32, &Device::Cpu);
    let net = StResNet::new(cfg, vb).unwrap();
    seeded_init(&vars, seed).unwrap();
    (vars, net)
}

/// Sets every variable whose name passes `pick` to `value(shape)`.
fn set_vars(vars: &VarMap, pick: impl Fn(&str) -> bool, value: impl Fn(&[usize]) -> Tensor) {
    let data = vars.data().lock().unwrap();
    for (_, var) in data.iter().filter(|(n, _)| pick(n)) {
        var.set(&value(var.dims())).unwrap();
    }
}

fn batch(cfg: &Config, clips: usize, seed: u64) -> Batch {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut random = |shape: &[usize]| {
        let n: usize = shape.iter().product();
        let v: Vec<f32> = (0..n)
            .map(|_| rand::Rng::random_range(&mut rng, -1.0f32..1.0))
            .collect();
        Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
    };
    let s = cfg.input_size;
    Batch {
        rgb: random(&[clips, cfg.frames, 3, s, s]),
        flow: random(&[clips, cfg.frames, cfg.flow_channels(), s, s]),
        labels: (0..clips).map(|i| i % CLASSES).collect(),
    }
}

/// Zeroes the last BatchNorm (scale and shift) of every residual branch: r(x) = 0.
fn zero_branches(vars: &VarMap) {
    set_vars(
        vars,
        |n| n.contains(".bn2."),
        |dims| Tensor::zeros(dims, DType::F32, &Device::Cpu).unwrap(),
    );
}

#[test]
fn probe_without_intervention_is_the_model_forward() {
    for reversible in [true, false] {
        let cfg = config(reversible);
        let (_vars, net) = build(&cfg, 1);
        let b = batch(&cfg, 2, 7);
        let expected = net.forward(&b.rgb, &b.flow, false).unwrap();
        let got = probe::forward(&net, &b.rgb, &b.flow, &Intervention::default(), None).unwrap();
        assert_eq!(max_abs_diff(&got.fused, &expected.fused), 0.0);
        assert_eq!(max_abs_diff(&got.appearance, &expected.appearance), 0.0);
    }
}

#[test]
fn deleting_a_unit_changes_the_output_of_a_random_model() {
    let cfg = config(true);
    let (_vars, net) = build(&cfg, 2);
    let b = batch(&cfg, 2, 8);
    let intact = probe::forward(&net, &b.rgb, &b.flow, &Intervention::default(), None).unwrap();
    for id in probe::all_units(&net) {
        let iv = Intervention {
            deleted: [id].into(),
            ..Intervention::default()
        };
        let out = probe::forward(&net, &b.rgb, &b.flow, &iv, None).unwrap();
        let d = max_abs_diff(&out.fused, &intact.fused);
        assert!(d > 1e-4, "deleting {id} changed the logits by only {d}");
    }
}

#[test]
fn zero_branches_make_every_lesion_harmless() {
    let cfg = config(true);
    let (vars, net) = build(&cfg, 3);
    zero_branches(&vars);
    let b = batch(&cfg, 6, 9);
    let intact = probe::forward(&net, &b.rgb, &b.flow, &Intervention::default(), None).unwrap();
    let all = probe::all_units(&net);
    let everything = Intervention {
        deleted: all.iter().copied().collect(),
        cut_links: (0..4).collect(),
        order: [((StreamKind::Motion, 0), vec![1, 0])].into(),
        ..Intervention::default()
    };
    let out = probe::forward(&net, &b.rgb, &b.flow, &everything, None).unwrap();
    assert!(max_abs_diff(&out.fused, &intact.fused) < 1e-6);

    let opts = LesionOptions {
        draws: 3,
        seed: 0,
        exclude_projection: false,
    };
    let report = lesion::run(&net, &[b], CLASSES, opts).unwrap();
    let base = report.baseline;
    assert_eq!(report.units.len(), 10);
    assert_eq!(report.units.iter().filter(|u| u.projection).count(), 6);
    for u in &report.units {
        assert_eq!(u.accuracy, base, "{}", u.name);
    }
    assert!(report.links.iter().all(|l| l.accuracy == base));
    assert_eq!(report.random.len(), 10);
    for r in &report.random {
        assert!((r.error_mean - (1.0 - base.fused)).abs() < 1e-12);
        assert!(r.error_std < 1e-12);
    }
    // Stage 1 of each stream: its first unit keeps the shape, so the pair can swap.
    assert_eq!(report.swaps.len(), 2);
    assert!(report.swaps.iter().all(|s| s.accuracy == base));

    let dir = tempfile::tempdir().unwrap();
    for png in lesion::plot(&report, dir.path()).unwrap() {
        let img = image::open(&png).unwrap();
        assert_eq!((img.width(), img.height()), (640, 400));
    }
}

#[test]
fn moving_a_projection_unit_is_refused() {
    let cfg = config(false);
    let (_vars, net) = build(&cfg, 4);
    let b = batch(&cfg, 1, 1);
    let id = UnitId {
        stream: StreamKind::Appearance,
        stage: 1,
        unit: 0,
    };
    assert!(probe::is_projection(&net, id).unwrap());
    let cfg2 = Config {
        units: [2, 2, 1, 1],
        ..cfg
    };
    let (_vars, net2) = build(&cfg2, 4);
    let iv = Intervention {
        order: [((StreamKind::Appearance, 1), vec![1, 0])].into(),
        ..Intervention::default()
    };
    let err = probe::forward(&net2, &b.rgb, &b.flow, &iv, None).unwrap_err();
    assert!(
        matches!(
            err,
            AnalysisError::Core(revstream::Error::InvalidArgument(_))
        ),
        "{err}"
    );
    let bad = Intervention {
        order: [((StreamKind::Appearance, 0), vec![0, 0])].into(),
        ..Intervention::default()
    };
    let err = probe::forward(&net, &b.rgb, &b.flow, &bad, None).unwrap_err();
    assert!(
        matches!(
            err,
            AnalysisError::Core(revstream::Error::InvalidArgument(_))
        ),
        "{err}"
    );
}

#[test]
fn path_counts_are_binomial() {
    assert_eq!(paths::path_counts(4), vec![1.0, 4.0, 6.0, 4.0, 1.0]);
    assert_eq!(paths::binomial(54, 27), 1_946_939_425_648_112.0);
    for n in 0..20 {
        let total: f64 = paths::path_counts(n).iter().sum();
        assert_eq!(total, 2f64.powi(n as i32));
    }
    let mut rng = StdRng::seed_from_u64(0);
    let all = paths::subsets(5, 2, 10, &mut rng);
    assert_eq!(all.len(), 10);
    let mut distinct = all.clone();
    distinct.dedup();
    assert_eq!(distinct.len(), 10);
    let drawn = paths::subsets(10, 4, 7, &mut rng);
    assert_eq!(drawn.len(), 7);
    for s in drawn {
        assert_eq!(s.len(), 4);
        assert!(s.windows(2).all(|w| w[0] < w[1]) && s[3] < 10);
    }
    assert_eq!(
        paths::effective_range(&[0.01, 0.04, 0.9, 0.04, 0.01], 0.9),
        [2, 2]
    );
    let binomial: Vec<f64> = paths::path_counts(4).iter().map(|c| c / 16.0).collect();
    assert_eq!(paths::effective_range(&binomial, 0.9), [0, 4]);
    assert_eq!(paths::effective_range(&binomial, 0.8), [1, 3]);
}

#[test]
fn gradients_of_all_paths_sum_to_the_full_gradient() {
    for reversible in [true, false] {
        let cfg = config(reversible);
        let (_vars, net) = build(&cfg, 5);
        let b = batch(&cfg, 2, 10);
        for stream in StreamKind::ALL {
            let units = probe::stream_units(&net, stream);
            let full = paths::input_gradient(&net, &b, stream, &Intervention::default()).unwrap();
            let mut sum = full.zeros_like().unwrap();
            for mask in 0..1usize << units.len() {
                let chosen: Vec<usize> = (0..units.len()).filter(|i| mask >> i & 1 == 1).collect();
                let iv = paths::path_intervention(&units, &chosen);
                sum = (sum + paths::input_gradient(&net, &b, stream, &iv).unwrap()).unwrap();
            }
            let rel = power::norm(&(&sum - &full).unwrap()).unwrap() / power::norm(&full).unwrap();
            assert!(rel < 1e-4, "{stream:?} reversible={reversible}: {rel}");
        }
    }
}

#[test]
fn zero_branches_leave_only_the_shortest_path() {
    let cfg = config(true);
    let (vars, net) = build(&cfg, 6);
    zero_branches(&vars);
    let b = batch(&cfg, 2, 11);
    let opts = PathOptions {
        draws: 4,
        seed: 0,
        coverage: 0.9,
    };
    let report = paths::run(&net, &b, opts).unwrap();
    for s in &report.streams {
        assert_eq!(s.lengths.len(), 6);
        assert!(s.lengths[0].gradient_mean > 0.0);
        assert!(
            (s.lengths[0].gradient_mean - s.full_gradient).abs() < 1e-6 * s.full_gradient,
            "the length-0 path is all of the gradient"
        );
        assert!(s.lengths[1..].iter().all(|l| l.gradient_mean == 0.0));
        assert_eq!(s.effective_range, [0, 0]);
        assert_eq!(s.lengths[2].sampled, 4);
        assert_eq!(s.lengths[5].sampled, 1);
    }
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(paths::plot(&report, dir.path()).unwrap().len(), 2);

    let al = alignment::run(
        &net,
        &b,
        AlignmentOptions {
            samples: 1,
            power: PowerOptions::default(),
        },
    )
    .unwrap();
    for s in &al.streams {
        assert!(s.units.iter().all(|u| u.sigma_mean == 0.0));
        assert!(s.ra2.iter().flatten().all(Option::is_none));
    }
}

#[test]
fn power_iteration_finds_known_singular_pairs() {
    let dev = Device::Cpu;
    let x = Tensor::new(&[0.3f32, -1.0, 2.0, 0.5], &dev).unwrap();
    let scaled = power::top_singular(|t| Ok((t * 2.5)?), &x, PowerOptions::default()).unwrap();
    assert!((scaled.value - 2.5).abs() < 1e-3, "{}", scaled.value);
    assert!(
        power::abs_cos(&scaled.left, &scaled.right)
            .unwrap()
            .unwrap()
            > 0.9999
    );

    let d = Tensor::new(&[1.0f32, -3.0, 0.5, 2.0], &dev).unwrap();
    let diag = power::top_singular(|t| Ok(t.mul(&d)?), &x, PowerOptions::default()).unwrap();
    assert!((diag.value - 3.0).abs() < 1e-3, "{}", diag.value);
    let e1 = Tensor::new(&[0f32, 1.0, 0.0, 0.0], &dev).unwrap();
    assert!(power::abs_cos(&diag.right, &e1).unwrap().unwrap() > 0.999);
    assert!(power::abs_cos(&diag.left, &e1).unwrap().unwrap() > 0.999);

    // Rank one, f(x) = 4 <a, x> b with unit a ⟂ b: sigma 4, v = a, u = b, u ⟂ v.
    let a = Tensor::new(&[0.6f32, 0.8, 0.0, 0.0], &dev).unwrap();
    let b = Tensor::new(&[0f32, 0.0, 1.0, 0.0], &dev).unwrap();
    let f = |t: &Tensor| Ok(((t * &a)?.sum_all()?.broadcast_mul(&b)? * 4.0)?);
    let pair = power::top_singular(f, &x, PowerOptions::default()).unwrap();
    assert!((pair.value - 4.0).abs() < 1e-3, "{}", pair.value);
    assert!(power::abs_cos(&pair.right, &a).unwrap().unwrap() > 0.9999);
    assert!(power::abs_cos(&pair.left, &b).unwrap().unwrap() > 0.9999);
    assert!(power::abs_cos(&pair.left, &pair.right).unwrap().unwrap() < 1e-4);

    let line: Vec<Vec<f64>> = (0..4)
        .map(|i| vec![i as f64, 2.0 * i as f64, 1.0])
        .collect();
    assert!((power::line_fraction(&line).unwrap() - 1.0).abs() < 1e-9);
    let h = 3f64.sqrt() / 2.0;
    let triangle = vec![vec![0.0, 0.0], vec![1.0, 0.0], vec![0.5, h]];
    assert!((power::line_fraction(&triangle).unwrap() - 0.5).abs() < 1e-6);
}

/// The 3x3 kernel that copies channel c to channel c, times `a`, for a square weight.
fn identity_kernel(dims: &[usize], a: f32) -> Tensor {
    let (out, inp) = (dims[0], dims[1]);
    let mut w = vec![0f32; out * inp * 9];
    for c in 0..out.min(inp) {
        w[(c * inp + c) * 9 + 4] = a;
    }
    Tensor::from_vec(w, dims, &Device::Cpu).unwrap()
}

#[test]
fn hand_set_branches_have_known_singular_values_and_alignment() {
    let cfg = config(true);
    let (vars, net) = build(&cfg, 7);
    let eps = cfg.bn_eps as f32;
    // BatchNorm with mean 0, variance 1 - eps, scale 1, shift 0 is exactly the identity.
    set_vars(
        &vars,
        |n| n.contains("layer1.") && n.ends_with("running_var"),
        |dims| Tensor::full(1.0 - eps, dims, &Device::Cpu).unwrap(),
    );
    // appearance.layer1.0: branch = 2 relu(x + link); its input is a ReLU output.
    set_vars(
        &vars,
        |n| n == "appearance.layer1.0.conv1.weight",
        |dims| identity_kernel(dims, 1.0),
    );
    set_vars(
        &vars,
        |n| n == "appearance.layer1.0.conv2.weight",
        |dims| identity_kernel(dims, 2.0),
    );
    // appearance.layer1.1 (reversible): F = 0.5 relu, G = 0, so r(x) = (0.5 relu(x2), 0).
    set_vars(
        &vars,
        |n| n.starts_with("appearance.layer1.1.f.conv1"),
        |dims| identity_kernel(dims, 1.0),
    );
    set_vars(
        &vars,
        |n| n.starts_with("appearance.layer1.1.f.conv2"),
        |dims| identity_kernel(dims, 0.5),
    );
    set_vars(
        &vars,
        |n| n.starts_with("appearance.layer1.1.g.bn2"),
        |dims| Tensor::zeros(dims, DType::F32, &Device::Cpu).unwrap(),
    );
    let b = batch(&cfg, 2, 12);
    let report = alignment::run(
        &net,
        &b,
        AlignmentOptions {
            samples: 2,
            power: PowerOptions::default(),
        },
    )
    .unwrap();
    let app = &report.streams[0];
    assert_eq!(app.stream, StreamKind::Appearance);
    assert!(
        (app.units[0].sigma_mean - 2.0).abs() < 1e-3,
        "{:?}",
        app.units[0]
    );
    assert!(
        (app.units[1].sigma_mean - 0.5).abs() < 1e-3,
        "{:?}",
        app.units[1]
    );
    // Unit 0's Jacobian is 2 D (D a 0/1 diagonal): u = v. Unit 1 maps x2 into x1: u ⟂ v.
    assert!(app.ra2[0][0].unwrap() > 0.999, "{:?}", app.ra2);
    assert!(app.ra2[1][1].unwrap() < 1e-3, "{:?}", app.ra2);
    // Unit 1's output (x1 + 0.5 relu(x2), x2) vs its input: RA1 needs three points in stage 1.
    assert_eq!(app.ra1[0].points, 3);
    assert!(app.ra1[0].line_fraction.is_some());
    assert_eq!(app.ra1[1].points, 1);
    assert!(app.ra1[1].line_fraction.is_none());
    let dir = tempfile::tempdir().unwrap();
    for png in alignment::plot(&report, dir.path()).unwrap() {
        assert!(image::open(&png).is_ok());
    }
}
