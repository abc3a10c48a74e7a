//! `revstream-trainer train`: two-stream training from a prepared cache, then export.

use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use revstream::artifact::{ModelSpec, PreprocessingSpec};
use revstream::model::Config;
use revstream::train::cache::{self, CacheIndex};
use revstream::train::checkpoint;
use revstream::train::dataset::{Dataset, Sample};
use revstream::train::optim::OptimizerKind;
use revstream::train::trainer::{self, Labelled, RunDir, TrainOptions};

/// Options of `train`.
#[derive(Args, Debug)]
pub struct TrainArgs {
    /// Training cache (from `prepare`).
    #[arg(long, env = "REVSTREAM_CACHE")]
    pub cache: PathBuf,
    /// Validation cache; without it, --val-fraction of the training cache, split by --seed.
    #[arg(long)]
    pub val_cache: Option<PathBuf>,
    /// Fraction of each class held out for validation when there is no --val-cache.
    #[arg(long, default_value_t = 0.1)]
    pub val_fraction: f64,
    /// Run folder: checkpoint/, metrics.jsonl, loss.png, accuracy.png, model/.
    #[arg(long)]
    pub out: PathBuf,
    /// Architecture preset: tiny, r18 or r50.
    #[arg(long, default_value = "tiny")]
    pub arch: String,
    /// Positions per clip (T); default: the preset's.
    #[arg(long)]
    pub frames: Option<usize>,
    /// Flow fields per position (L); default: the preset's.
    #[arg(long)]
    pub flow_stack: Option<usize>,
    /// Channels of the first stage; default: the preset's.
    #[arg(long)]
    pub base_width: Option<usize>,
    /// Stem stride; default: the preset's.
    #[arg(long)]
    pub stem_stride: Option<usize>,
    /// Units per stage as a,b,c,d; default: the preset's.
    #[arg(long)]
    pub units: Option<String>,
    /// Units with a temporal convolution (extent 3 over the T positions) as
    /// stage.unit pairs, 0-based: `1.0,2.0,3.0`; `none` for a purely spatial network.
    /// Default: the preset's, moved to the last unit of a stage that `--units` shortens.
    #[arg(long)]
    pub temporal_units: Option<String>,
    /// Epochs.
    #[arg(long, default_value_t = 10, value_parser = positive)]
    pub epochs: usize,
    /// Clips per step.
    #[arg(long, default_value_t = 16, value_parser = positive)]
    pub batch_size: usize,
    /// Peak learning rate.
    #[arg(long, default_value_t = 0.05)]
    pub lr: f64,
    /// sgd (momentum) or adamw.
    #[arg(long, default_value = "sgd")]
    pub optimizer: String,
    /// SGD momentum.
    #[arg(long, default_value_t = 0.9)]
    pub momentum: f64,
    /// Weight decay.
    #[arg(long, default_value_t = 1e-4)]
    pub weight_decay: f64,
    /// Warm-up epochs before the cosine decay.
    #[arg(long, default_value_t = 1.0)]
    pub warmup_epochs: f64,
    /// Plain autograd instead of reversible backpropagation.
    #[arg(long)]
    pub no_reversible: bool,
    /// No horizontal flips (MotionShapes needs this: a flip swaps left and right).
    #[arg(long)]
    pub no_flip: bool,
    /// Smallest random crop as a fraction of the side (1: none).
    #[arg(long, default_value_t = 0.8)]
    pub min_crop_scale: f32,
    /// Seed of initialisation, split, shuffling and augmentation.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Start both streams from a torchvision-named ResNet safetensors file.
    #[arg(long)]
    pub init_from: Option<PathBuf>,
    /// Continue from OUT/checkpoint.
    #[arg(long)]
    pub resume: bool,
    /// Device: auto (the GPU when the build has CUDA and one is present), cpu or cuda:N.
    #[arg(long, env = "REVSTREAM_DEVICE", default_value = "auto")]
    pub device: String,
}

fn architecture(args: &TrainArgs, index: &CacheIndex) -> anyhow::Result<Config> {
    let classes = index.labels.len();
    let mut cfg = match args.arch.as_str() {
        "tiny" => Config::tiny(classes),
        "r18" => Config::r18(classes),
        "r50" => Config::r50(classes),
        other => bail!("unknown --arch {other:?} (tiny, r18, r50)"),
    };
    cfg.input_size = index.settings.size as usize;
    if let Some(t) = args.frames {
        cfg.frames = t;
    }
    if let Some(l) = args.flow_stack {
        cfg.flow_stack = l;
    }
    if let Some(w) = args.base_width {
        cfg.base_width = w;
    }
    if let Some(s) = args.stem_stride {
        cfg.stem_stride = s;
    }
    if let Some(units) = &args.units {
        let parsed: Vec<usize> = units
            .split(',')
            .map(|u| u.trim().parse())
            .collect::<Result<_, _>>()?;
        cfg.units = parsed
            .try_into()
            .map_err(|_| anyhow::anyhow!("--units needs four numbers"))?;
        // Keep the preset's temporal stages when a stage gets fewer units.
        let mut moved: Vec<[usize; 2]> = Vec::new();
        for [s, u] in &cfg.temporal_units {
            let t = [*s, (*u).min(cfg.units[*s].saturating_sub(1))];
            if cfg.units[*s] > 0 && !moved.contains(&t) {
                moved.push(t);
            }
        }
        cfg.temporal_units = moved;
    }
    if let Some(list) = &args.temporal_units {
        cfg.temporal_units = parse_temporal_units(list)?;
    }
    cfg.validate()
        .map_err(|e| anyhow::anyhow!("architecture: {e}"))?;
    Ok(cfg)
}

/// `stage.unit` pairs separated by commas, or `none`.
fn parse_temporal_units(list: &str) -> anyhow::Result<Vec<[usize; 2]>> {
    if list.trim() == "none" {
        return Ok(Vec::new());
    }
    list.split(',')
        .map(|pair| {
            let parsed = pair
                .trim()
                .split_once('.')
                .and_then(|(s, u)| Some([s.parse().ok()?, u.parse().ok()?]));
            parsed.with_context(|| {
                format!("--temporal-units: {pair:?} is not stage.unit (for example 1.0)")
            })
        })
        .collect()
}

/// A count of at least one (`--epochs`, `--batch-size`).
fn positive(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(0) => Err("must be at least 1".to_string()),
        Ok(n) => Ok(n),
        Err(e) => Err(e.to_string()),
    }
}

/// Loads the cache entries of `samples` with labels mapped into `labels`.
pub fn load_set(
    dir: &std::path::Path,
    index: &CacheIndex,
    labels: &[String],
    which: &[usize],
) -> anyhow::Result<Vec<Labelled>> {
    which
        .iter()
        .map(|&i| {
            let e = &index.entries[i];
            let label = labels
                .iter()
                .position(|l| *l == e.label)
                .with_context(|| format!("label {:?} is not one of the model's", e.label))?;
            Ok((cache::read_video(&dir.join(&e.file))?, label))
        })
        .collect()
}

/// Runs `train`.
pub fn run(args: TrainArgs) -> anyhow::Result<()> {
    let index = cache::load_index(&args.cache)?;
    let cfg = architecture(&args, &index)?;
    let labels = index.labels.clone();
    // Split entries per class by seed, through the dataset splitter.
    let as_dataset = Dataset {
        labels: labels.clone(),
        samples: index
            .entries
            .iter()
            .enumerate()
            .map(|(i, e)| Sample {
                path: PathBuf::from(i.to_string()),
                label: labels.iter().position(|l| *l == e.label).unwrap_or(0),
            })
            .collect(),
        skipped: Vec::new(),
    };
    let ids = |d: &Dataset| -> Vec<usize> {
        d.samples
            .iter()
            .filter_map(|s| s.path.to_str()?.parse().ok())
            .collect()
    };
    let (train_ids, val_ids) = if args.val_cache.is_some() {
        (ids(&as_dataset), Vec::new())
    } else {
        let (t, v) = as_dataset.split(args.val_fraction, args.seed);
        (ids(&t), ids(&v))
    };
    let bar = ProgressBar::new_spinner();
    bar.set_message("loading cache");
    let train = load_set(&args.cache, &index, &labels, &train_ids)?;
    let val = match &args.val_cache {
        Some(dir) => {
            let vi = cache::load_index(dir)?;
            load_set(
                dir,
                &vi,
                &labels,
                &(0..vi.entries.len()).collect::<Vec<_>>(),
            )?
        }
        None => load_set(&args.cache, &index, &labels, &val_ids)?,
    };
    bar.finish_and_clear();
    tracing::info!(train = train.len(), val = val.len(), ?cfg, "data loaded");

    let model = ModelSpec {
        architecture: cfg,
        preprocessing: PreprocessingSpec {
            segments: 1,
            short_side: Some(index.settings.size),
            mean: [0.485, 0.456, 0.406],
            std: [0.229, 0.224, 0.225],
            flow_bound: index.settings.flow_bound,
            flow_fps: index.settings.flow_fps,
            flow_preset: Some(index.settings.preset),
            flow_supersample: index.settings.flow_supersample,
        },
        labels,
    };
    let optimizer = match args.optimizer.as_str() {
        "sgd" => OptimizerKind::Sgd {
            momentum: args.momentum,
            weight_decay: args.weight_decay,
        },
        "adamw" => OptimizerKind::AdamW {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: args.weight_decay,
        },
        other => bail!("unknown --optimizer {other:?} (sgd, adamw)"),
    };
    let opts = TrainOptions {
        epochs: args.epochs,
        batch_size: args.batch_size,
        lr: args.lr,
        optimizer,
        warmup_epochs: args.warmup_epochs,
        min_lr_factor: 0.01,
        reversible: !args.no_reversible,
        flip: !args.no_flip,
        min_crop_scale: args.min_crop_scale,
        grad_clip: Some(5.0),
        seed: args.seed,
        init_from: args.init_from.clone(),
        device: args.device.clone(),
    };
    let steps = train.len().div_ceil(args.batch_size);
    let bar = ProgressBar::new((steps * args.epochs) as u64).with_style(
        ProgressStyle::with_template("train {bar:40} {pos}/{len} steps {elapsed} eta {eta} {msg}")
            .context("progress template")?,
    );
    let started = std::time::Instant::now();
    let run = RunDir(args.out.clone());
    let trained = trainer::train(
        &model,
        &train,
        &val,
        &run,
        &opts,
        args.resume,
        &mut |epoch, step, loss| {
            bar.set_position(((epoch - 1) * steps + step) as u64);
            bar.set_message(format!("epoch {epoch} loss {loss:.3}"));
        },
    )?;
    bar.finish();
    let seconds = started.elapsed().as_secs_f64();
    let last = trained.history.last().context("no epoch ran")?;
    let readme = format!(
        "# Model trained by revstream-trainer\n\nTwo-stream ST-ResNet ({} backprop), {} classes, \
         {} epochs, {:.0} s of training in this run.\nLast epoch: validation top-1 {:.3} \
         (rgb-only {:.3}, flow-only {:.3}), top-5 {:.3}.\n\nFiles: `config.json` (architecture, \
         preprocessing, labels), `model.safetensors`, `labels.txt`.\n",
        if opts.reversible {
            "reversible"
        } else {
            "plain"
        },
        model.labels.len(),
        last.epoch,
        seconds,
        last.val_top1,
        last.val_top1_rgb,
        last.val_top1_flow,
        last.val_top5
    );
    checkpoint::export(&args.out.join("model"), &trained.vars, &model, &readme)?;
    tracing::info!(seconds, model = %args.out.join("model").display(), "model exported");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::parse_temporal_units;

    #[test]
    fn temporal_units_parse_as_stage_unit_pairs() {
        assert_eq!(
            parse_temporal_units("1.0, 2.1").unwrap(),
            vec![[1, 0], [2, 1]]
        );
        assert!(parse_temporal_units("none").unwrap().is_empty());
        let err = parse_temporal_units("1.0,2-1").unwrap_err().to_string();
        assert!(err.contains("\"2-1\" is not stage.unit"), "{err}");
    }
}
