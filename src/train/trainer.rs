//! The training loop: TSN sampling, augmentation, reversible (or plain) backward,
//! per-stream plus fused losses, schedule, validation, checkpoints, logs and plots.

use std::path::{Path, PathBuf};
use std::time::Instant;

use candle_core::{D, DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};

use super::augment::Transform;
use super::batch::{self, InputSpec};
use super::cache::CachedVideo;
use super::checkpoint::{self, TrainState};
use super::metrics::{self, EpochMetrics, Tally};
use super::optim::{Optimizer, OptimizerKind, Schedule};
use super::plots;
use super::revprop;
use crate::artifact::ModelSpec;
use crate::model::{StResNet, StreamLogits};
use crate::{Error, Result};

/// Training hyper-parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainOptions {
    /// Passes over the training set.
    pub epochs: usize,
    /// Clips per step.
    pub batch_size: usize,
    /// Peak learning rate.
    pub lr: f64,
    /// Update rule.
    pub optimizer: OptimizerKind,
    /// Warm-up length in epochs (fractions allowed).
    pub warmup_epochs: f64,
    /// Final rate as a fraction of the peak (cosine).
    pub min_lr_factor: f64,
    /// Reversible backpropagation (false: plain autograd).
    pub reversible: bool,
    /// Random horizontal flips (u negated).
    pub flip: bool,
    /// Smallest random crop, as a fraction of the side (1: no cropping).
    pub min_crop_scale: f32,
    /// Global gradient-norm clip.
    pub grad_clip: Option<f64>,
    /// Seed of initialisation, shuffling, sampling and augmentation.
    pub seed: u64,
    /// A torchvision-named ResNet safetensors file to start both streams from.
    pub init_from: Option<PathBuf>,
    /// Device to train on (`auto`, `cpu`, `cuda:N`), always in f32.
    #[serde(default = "cpu")]
    pub device: String,
}

fn cpu() -> String {
    "cpu".to_string()
}

impl Default for TrainOptions {
    fn default() -> Self {
        TrainOptions {
            epochs: 10,
            batch_size: 16,
            lr: 0.05,
            optimizer: OptimizerKind::Sgd {
                momentum: 0.9,
                weight_decay: 1e-4,
            },
            warmup_epochs: 1.0,
            min_lr_factor: 0.01,
            reversible: true,
            flip: true,
            min_crop_scale: 0.8,
            grad_clip: Some(5.0),
            seed: 0,
            init_from: None,
            device: cpu(),
        }
    }
}

/// A cached video with its class index.
pub type Labelled = (CachedVideo, usize);

/// What a training run produces.
pub struct Trained {
    /// Weights (and BatchNorm statistics).
    pub vars: VarMap,
    /// The network, sharing `vars`.
    pub model: StResNet,
    /// Per-epoch figures.
    pub history: Vec<EpochMetrics>,
}

/// Where a run writes: `checkpoint/`, `metrics.jsonl`, `loss.png`, `accuracy.png`.
#[derive(Debug, Clone)]
pub struct RunDir(pub PathBuf);

impl RunDir {
    fn checkpoint(&self) -> PathBuf {
        self.0.join("checkpoint")
    }
    fn metrics(&self) -> PathBuf {
        self.0.join("metrics.jsonl")
    }
}

/// Builds the network on fresh, seeded variables on the CPU.
pub fn build(model: &ModelSpec, seed: u64) -> Result<(VarMap, StResNet)> {
    build_on(model, seed, &Device::Cpu)
}

/// Builds the network on fresh, seeded f32 variables on `device`.
pub fn build_on(model: &ModelSpec, seed: u64, device: &Device) -> Result<(VarMap, StResNet)> {
    let vars = VarMap::new();
    let vb = VarBuilder::from_varmap(&vars, DType::F32, device);
    let net = StResNet::new(&model.architecture, vb)?;
    checkpoint::seeded_init(&vars, seed)?;
    Ok((vars, net))
}

/// Sum of the appearance, motion and fused cross-entropies.
fn loss(logits: &StreamLogits, targets: &Tensor) -> candle_core::Result<Tensor> {
    let ce = |l: &Tensor| candle_nn::loss::cross_entropy(l, targets);
    (ce(&logits.appearance)? + ce(&logits.motion)?)? + ce(&logits.fused)?
}

fn rows(t: &Tensor) -> Result<Vec<Vec<f32>>> {
    Ok(t.to_dtype(DType::F32)?.to_vec2::<f32>()?)
}

/// Scores a labelled set with centred positions; returns (fused, rgb, flow) tallies and mean fused loss.
pub fn evaluate(
    model: &StResNet,
    spec: &InputSpec,
    set: &[Labelled],
    classes: usize,
    batch_size: usize,
) -> Result<(Tally, Tally, Tally, f64)> {
    evaluate_on(&Device::Cpu, model, spec, set, classes, batch_size)
}

/// [`evaluate`] for a model whose weights live on `device`.
fn evaluate_on(
    device: &Device,
    model: &StResNet,
    spec: &InputSpec,
    set: &[Labelled],
    classes: usize,
    batch_size: usize,
) -> Result<(Tally, Tally, Tally, f64)> {
    let (mut fused, mut rgb_t, mut flow_t) = (
        Tally::new(classes),
        Tally::new(classes),
        Tally::new(classes),
    );
    let mut loss_sum = 0.0;
    for chunk in set.chunks(batch_size.max(1)) {
        let plans: Vec<(usize, Vec<usize>, Transform)> = chunk
            .iter()
            .enumerate()
            .map(|(k, (video, _))| {
                let starts = batch::positions(video.frames, spec.frames, spec.flow_stack, None);
                (k, starts, Transform::identity(spec.size))
            })
            .collect();
        let (rgb, flow) = batch::build(&plans, chunk, spec);
        let (rgb, flow) = batch::to_tensors(rgb, flow, chunk.len(), spec)?;
        let out = model.forward(&rgb.to_device(device)?, &flow.to_device(device)?, false)?;
        let labels: Vec<u32> = chunk.iter().map(|(_, l)| *l as u32).collect();
        let targets = Tensor::new(labels.as_slice(), device)?;
        let ce = candle_nn::loss::cross_entropy(&out.fused, &targets)?.to_scalar::<f32>()?;
        loss_sum += ce as f64 * chunk.len() as f64;
        for (tally, logits) in [
            (&mut fused, &out.fused),
            (&mut rgb_t, &out.appearance),
            (&mut flow_t, &out.motion),
        ] {
            for (scores, (_, label)) in rows(logits)?.iter().zip(chunk) {
                tally.add(scores, *label);
            }
        }
    }
    Ok((fused, rgb_t, flow_t, loss_sum / set.len().max(1) as f64))
}

/// Trains `model` on `train`, validating on `val` after each epoch, writing into `run`.
/// With `resume`, continues from `run/checkpoint` when it exists. `on_step(epoch, step_in_epoch, loss)`
/// reports progress.
pub fn train(
    model_file: &ModelSpec,
    train: &[Labelled],
    val: &[Labelled],
    run: &RunDir,
    opts: &TrainOptions,
    resume: bool,
    on_step: &mut dyn FnMut(usize, usize, f32),
) -> Result<Trained> {
    if train.is_empty() {
        return Err(Error::InvalidArgument("empty training set".into()));
    }
    std::fs::create_dir_all(&run.0).map_err(|e| Error::io(&run.0, e))?;
    let spec = InputSpec::of(model_file);
    let classes = model_file.labels.len();
    let device = crate::backend::device::parse(&opts.device)
        .map_err(|e| Error::InvalidArgument(e.to_string()))?;
    tracing::info!(device = %crate::backend::device::name(&device), "training in f32");
    let (mut vars, net) = build_on(model_file, opts.seed, &device)?;
    let params: Vec<(String, candle_core::Var)> = {
        let data = vars
            .data()
            .lock()
            .map_err(|_| Error::InvalidArgument("poisoned var map".into()))?;
        data.iter()
            .filter(|(n, _)| !n.ends_with("running_mean") && !n.ends_with("running_var"))
            .map(|(n, v)| (n.clone(), v.clone()))
            .collect()
    };
    let mut optim = Optimizer::new(opts.optimizer, params);
    let steps_per_epoch = train.len().div_ceil(opts.batch_size.max(1));
    let schedule = Schedule::Cosine {
        warmup: (opts.warmup_epochs * steps_per_epoch as f64).round() as usize,
        total: opts.epochs * steps_per_epoch,
        min_factor: opts.min_lr_factor,
    };
    let mut state = TrainState {
        epoch: 0,
        step: 0,
        history: Vec::new(),
        model: model_file.clone(),
    };
    if resume && run.checkpoint().join("state.json").is_file() {
        let (optim_state, saved) = checkpoint::load(&run.checkpoint(), &mut vars)?;
        let optim_state = optim_state
            .into_iter()
            .map(|(k, t)| Ok((k, t.to_device(&device)?)))
            .collect::<Result<_>>()?;
        if saved.model.architecture != model_file.architecture
            || saved.model.labels != model_file.labels
        {
            return Err(Error::InvalidArgument(
                "the checkpoint was made for another architecture or label set".into(),
            ));
        }
        optim.load_state(optim_state, saved.step);
        tracing::info!(epoch = saved.epoch, step = saved.step, "resuming");
        state = saved;
    } else {
        if run.metrics().exists() {
            std::fs::remove_file(run.metrics()).map_err(|e| Error::io(run.metrics(), e))?;
        }
        if let Some(path) = &opts.init_from {
            let (loaded, skipped) = checkpoint::init_from(&vars, path)?;
            tracing::info!(loaded, skipped, from = %path.display(), "initialised from a ResNet");
        }
    }

    for epoch in state.epoch..opts.epochs {
        let started = Instant::now();
        // One generator per epoch, so a resumed run draws exactly what an uninterrupted one would.
        let mut rng = StdRng::seed_from_u64(opts.seed ^ ((epoch as u64 + 1) << 32));
        let mut order: Vec<usize> = (0..train.len()).collect();
        order.shuffle(&mut rng);
        let (mut loss_sum, mut tally, mut lr) = (0.0, Tally::new(classes), 0.0);
        for (i, chunk) in order.chunks(opts.batch_size.max(1)).enumerate() {
            // Draws stay sequential (reproducible); the samples are then built in parallel.
            let plans: Vec<(usize, Vec<usize>, Transform)> = chunk
                .iter()
                .map(|&k| {
                    let frames = train[k].0.frames;
                    let starts =
                        batch::positions(frames, spec.frames, spec.flow_stack, Some(&mut rng));
                    let t = Transform::random(spec.size, opts.min_crop_scale, opts.flip, &mut rng);
                    (k, starts, t)
                })
                .collect();
            let (rgb, flow) = batch::build(&plans, train, &spec);
            let (rgb, flow) = batch::to_tensors(rgb, flow, chunk.len(), &spec)?;
            let (rgb, flow) = (rgb.to_device(&device)?, flow.to_device(&device)?);
            let labels: Vec<u32> = chunk.iter().map(|&k| train[k].1 as u32).collect();
            let targets = Tensor::new(labels.as_slice(), &device)?;
            let loss_fn = |l: &StreamLogits| loss(l, &targets);
            let mut step = if opts.reversible {
                revprop::forward_backward(&net, &rgb, &flow, false, loss_fn)?
            } else {
                revprop::plain_forward_backward(&net, &rgb, &flow, false, loss_fn)?
            };
            if !step.loss.is_finite() {
                return Err(Error::InvalidArgument(format!(
                    "loss became {} at epoch {} step {i}; lower --lr",
                    step.loss,
                    epoch + 1
                )));
            }
            if let Some(max) = opts.grad_clip {
                optim.clip_grad_norm(&mut step.grads, max)?;
            }
            lr = schedule.lr(opts.lr, optim.step);
            optim.apply(&step.grads, lr)?;
            loss_sum += step.loss as f64 * chunk.len() as f64;
            for (scores, &k) in rows(&step.logits.fused)?.iter().zip(chunk) {
                tally.add(scores, train[k].1);
            }
            on_step(epoch + 1, i + 1, step.loss);
        }
        let (val_fused, val_rgb, val_flow, val_loss) = if val.is_empty() {
            (
                Tally::new(classes),
                Tally::new(classes),
                Tally::new(classes),
                0.0,
            )
        } else {
            evaluate_on(
                &device,
                &net,
                &spec,
                val,
                classes,
                opts.batch_size.max(1) * 2,
            )?
        };
        let m = EpochMetrics {
            epoch: epoch + 1,
            step: optim.step,
            lr,
            train_loss: loss_sum / train.len() as f64,
            train_top1: tally.top1(),
            val_loss,
            val_top1: val_fused.top1(),
            val_top5: val_fused.top5(),
            val_top1_rgb: val_rgb.top1(),
            val_top1_flow: val_flow.top1(),
            seconds: started.elapsed().as_secs_f64(),
        };
        tracing::info!(
            epoch = m.epoch,
            train_loss = format!("{:.4}", m.train_loss),
            train_top1 = format!("{:.3}", m.train_top1),
            val_top1 = format!("{:.3}", m.val_top1),
            val_top5 = format!("{:.3}", m.val_top5),
            val_top1_rgb = format!("{:.3}", m.val_top1_rgb),
            val_top1_flow = format!("{:.3}", m.val_top1_flow),
            seconds = format!("{:.1}", m.seconds),
            "epoch done"
        );
        metrics::append_jsonl(&run.metrics(), &m)?;
        state.epoch = epoch + 1;
        state.step = optim.step;
        state.history.push(m);
        checkpoint::save(&run.checkpoint(), &vars, optim.state_tensors(), &state)?;
        write_plots(&run.0, &state.history)?;
    }
    Ok(Trained {
        vars,
        model: net,
        history: state.history,
    })
}

/// `loss.png` (blue: training loss, red: validation loss) and `accuracy.png` (blue: train
/// top-1, red: val top-1, green: val rgb-only, magenta: val flow-only), x = epoch.
pub fn write_plots(dir: &Path, history: &[EpochMetrics]) -> Result<()> {
    let series = |f: &dyn Fn(&EpochMetrics) -> f64| {
        history
            .iter()
            .map(|m| (m.epoch as f64, f(m)))
            .collect::<Vec<_>>()
    };
    plots::line_chart(
        &dir.join("loss.png"),
        &[series(&|m| m.train_loss), series(&|m| m.val_loss)],
    )?;
    plots::line_chart(
        &dir.join("accuracy.png"),
        &[
            series(&|m| m.train_top1),
            series(&|m| m.val_top1),
            series(&|m| m.val_top1_rgb),
            series(&|m| m.val_top1_flow),
        ],
    )
}

/// Index of the largest score in each row.
pub fn argmax_rows(t: &Tensor) -> Result<Vec<u32>> {
    Ok(t.argmax(D::Minus1)?.to_vec1::<u32>()?)
}
