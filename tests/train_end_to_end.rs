//! A tiny real training run on MotionShapes (synthesis, H.264, decode, TV-L1, reversible
//! backprop) and checkpoint/resume equivalence.

use std::path::PathBuf;
use std::sync::OnceLock;

use revstream::artifact::{ModelSpec, PreprocessingSpec};
use revstream::flow::FlowMethod;
use revstream::model::Config;
use revstream::train::cache::{self, CacheSettings};
use revstream::train::dataset::Dataset;
use revstream::train::optim::OptimizerKind;
use revstream::train::synth::{self, SynthOptions};
use revstream::train::trainer::{self, Labelled, RunDir, TrainOptions};

const CLASSES: [&str; 3] = ["move_left", "move_right", "still"];

struct Data {
    _dir: tempfile::TempDir,
    root: PathBuf,
    train: Vec<Labelled>,
    val: Vec<Labelled>,
}

/// 14 clips per class of three classes, cached at 32x32; 10 train / 4 validation each.
fn data() -> &'static Data {
    static DATA: OnceLock<Data> = OnceLock::new();
    DATA.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let videos = dir.path().join("videos");
        let opts = SynthOptions {
            width: 48,
            height: 48,
            fps: 10.0,
            seconds: 1.6,
        };
        synth::generate(&videos, 14, 21, &opts, &|| {}).unwrap();
        let mut ds = Dataset::open(&videos).unwrap();
        let keep: Vec<usize> = CLASSES
            .iter()
            .map(|c| ds.labels.iter().position(|l| l == c).unwrap())
            .collect();
        ds.samples.retain(|s| keep.contains(&s.label));
        for s in &mut ds.samples {
            s.label = keep.iter().position(|&k| k == s.label).unwrap();
        }
        ds.labels = CLASSES.iter().map(|s| s.to_string()).collect();
        let settings = CacheSettings {
            size: 32,
            flow_bound: 4.0,
            preset: FlowMethod::Fast,
            max_frames: 100,
            flow_fps: None,
            flow_supersample: 1,
        };
        let (train_ds, val_ds) = ds.split(4.0 / 14.0, 1);
        let load = |d: &Dataset, name: &str| -> Vec<Labelled> {
            let c = dir.path().join(name);
            let index = cache::prepare(d, &c, &settings, &|| {}).unwrap();
            assert!(index.failures.is_empty());
            index
                .entries
                .iter()
                .map(|e| {
                    let label = CLASSES.iter().position(|l| *l == e.label).unwrap();
                    (cache::read_video(&c.join(&e.file)).unwrap(), label)
                })
                .collect()
        };
        let train = load(&train_ds, "cache_train");
        let val = load(&val_ds, "cache_val");
        Data {
            root: dir.path().to_path_buf(),
            _dir: dir,
            train,
            val,
        }
    })
}

fn model_file() -> ModelSpec {
    let mut cfg = Config::tiny(CLASSES.len());
    cfg.input_size = 32;
    cfg.frames = 4;
    cfg.flow_stack = 2;
    cfg.units = [2, 1, 1, 1];
    cfg.temporal_units = vec![[0, 1]];
    ModelSpec {
        architecture: cfg,
        preprocessing: PreprocessingSpec {
            segments: 1,
            short_side: Some(32),
            mean: [0.5; 3],
            std: [0.25; 3],
            flow_bound: 4.0,
            flow_fps: None,
            flow_preset: None,
            flow_supersample: 1,
        },
        labels: CLASSES.iter().map(|s| s.to_string()).collect(),
    }
}

fn options(epochs: usize) -> TrainOptions {
    TrainOptions {
        epochs,
        batch_size: 10,
        lr: 0.02,
        optimizer: OptimizerKind::AdamW {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 1e-4,
        },
        warmup_epochs: 0.5,
        min_lr_factor: 0.05,
        reversible: true,
        flip: false,
        min_crop_scale: 0.9,
        grad_clip: Some(5.0),
        seed: 5,
        init_from: None,
        device: "cpu".to_string(),
    }
}

/// The run's outcome varies between processes (same code, same seeds): it follows one of a
/// few trajectories, probably because H.264 synthesis is not bit-stable across processes.
/// At 8 epochs the slowest ended at 0.67 and still rising; at 12 it ends at 0.83 (another
/// at 0.92).
const LEARN_EPOCHS: usize = 12;

#[test]
fn tiny_reversible_run_learns_motion_well_above_chance() {
    let d = data();
    let run = RunDir(d.root.join("run_learn"));
    let trained = trainer::train(
        &model_file(),
        &d.train,
        &d.val,
        &run,
        &options(LEARN_EPOCHS),
        false,
        &mut |_, _, _| {},
    )
    .unwrap();
    let last = trained.history.last().unwrap();
    let curve: Vec<String> = trained
        .history
        .iter()
        .map(|m| format!("{:.2}", m.val_top1))
        .collect();
    eprintln!("validation top-1 by epoch: {}", curve.join(" "));
    // Three classes: chance is 1/3. Validation clips were never trained on.
    assert!(
        last.val_top1 >= 2.0 / 3.0,
        "validation top-1 {:.3}",
        last.val_top1
    );
    assert!(last.train_loss < trained.history[0].train_loss);
    assert!(run.0.join("metrics.jsonl").is_file());
    let lines = std::fs::read_to_string(run.0.join("metrics.jsonl")).unwrap();
    assert_eq!(lines.lines().count(), LEARN_EPOCHS);
    for png in ["loss.png", "accuracy.png"] {
        let img = image::open(run.0.join(png)).unwrap().to_rgb8();
        assert_eq!(img.dimensions(), (640, 400));
        // The curves are drawn: some pixels are neither white nor grid grey.
        assert!(
            img.pixels()
                .any(|p| p.0 == [0, 0, 255] || p.0 == [255, 0, 0])
        );
    }
}

fn weights(v: &candle_nn::VarMap) -> Vec<(String, Vec<f32>)> {
    let data = v.data().lock().unwrap();
    let mut out: Vec<(String, Vec<f32>)> = data
        .iter()
        .map(|(k, t)| {
            (
                k.clone(),
                t.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            )
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

#[test]
fn resuming_from_a_checkpoint_equals_an_uninterrupted_run() {
    let d = data();
    let train = &d.train[..12];
    let val = &d.val[..6];
    let mut opts = options(2);
    opts.batch_size = 6;
    let whole = RunDir(d.root.join("run_whole"));
    let a = trainer::train(
        &model_file(),
        train,
        val,
        &whole,
        &opts,
        false,
        &mut |_, _, _| {},
    )
    .unwrap();

    let parts = RunDir(d.root.join("run_parts"));
    let mut first = opts.clone();
    first.epochs = 1;
    trainer::train(
        &model_file(),
        train,
        val,
        &parts,
        &first,
        false,
        &mut |_, _, _| {},
    )
    .unwrap();
    let b = trainer::train(
        &model_file(),
        train,
        val,
        &parts,
        &opts,
        true,
        &mut |_, _, _| {},
    )
    .unwrap();

    // Everything but wall-clock time must match.
    let strip = |h: &[revstream::train::metrics::EpochMetrics]| {
        h.iter()
            .map(|m| revstream::train::metrics::EpochMetrics {
                seconds: 0.0,
                ..m.clone()
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(strip(&a.history), strip(&b.history));
    let (wa, wb) = (weights(&a.vars), weights(&b.vars));
    assert_eq!(wa.len(), wb.len());
    for ((name, x), (_, y)) in wa.iter().zip(&wb) {
        let max = x
            .iter()
            .zip(y)
            .map(|(p, q)| (p - q).abs())
            .fold(0.0f32, f32::max);
        assert!(max == 0.0, "{name} differs by {max}");
    }
}
