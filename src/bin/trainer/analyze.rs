//! `revstream-trainer analyze lesion|paths|alignment`: look inside a model folder on a
//! labelled dataset; each study writes `<study>.json` and PNG charts into `--out`.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use candle_core::{DType, Device};
use candle_nn::VarBuilder;
use clap::{Args, Subcommand};
use revstream::analysis::inputs::{self, Batch};
use revstream::analysis::power::PowerOptions;
use revstream::analysis::{alignment, lesion, paths};
use revstream::artifact::ModelSpec;
use revstream::flow::FlowMethod;
use revstream::model::StResNet;
use revstream::train::batch::InputSpec;
use revstream::train::cache::CacheSettings;
use revstream::train::trainer::Labelled;
use serde::Serialize;

use crate::prepare::prepare;
use crate::train::load_set;

/// Options of `analyze`.
#[derive(Args, Debug)]
pub struct AnalyzeArgs {
    #[command(subcommand)]
    pub study: Study,
}

/// The three studies.
#[derive(Subcommand, Debug)]
pub enum Study {
    /// Accuracy after deleting units or links, k random units, swapped units (Veit et al.).
    Lesion(LesionArgs),
    /// Path-length distribution and the gradient each length carries (Veit et al.).
    Paths(PathsArgs),
    /// Residual alignment RA1, RA2, RA4 of the units' Jacobians (Li & Papyan).
    Alignment(AlignmentArgs),
}

/// Model, data and output folder, as `eval` takes them.
#[derive(Args, Debug)]
pub struct DataArgs {
    /// Model folder (config.json, model.safetensors).
    #[arg(long, env = "REVSTREAM_MODEL")]
    pub model: PathBuf,
    /// Dataset: a class-folder root, a UCF101 list (.txt) or a CSV (path,label).
    #[arg(long)]
    pub data: PathBuf,
    /// Cache folder for the dataset's frames and flow (default: <out>/cache; reused).
    #[arg(long)]
    pub cache: Option<PathBuf>,
    /// Flow method (default: the model's, as `eval` does).
    #[arg(long, value_enum)]
    pub preset: Option<FlowMethod>,
    /// Where the JSON report and the PNG charts go.
    #[arg(long)]
    pub out: PathBuf,
}

/// Options of `analyze lesion`.
#[derive(Args, Debug)]
pub struct LesionArgs {
    #[command(flatten)]
    pub data: DataArgs,
    /// Random sets of units deleted per k.
    #[arg(long, default_value_t = 10)]
    pub draws: usize,
    /// Seed of the random sets.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Leave shape-changing (projection) units out of the random deletions.
    #[arg(long)]
    pub exclude_projection: bool,
}

/// Options of `analyze paths`.
#[derive(Args, Debug)]
pub struct PathsArgs {
    #[command(flatten)]
    pub data: DataArgs,
    /// Clips in the batch the gradients are taken on (spread over the dataset).
    #[arg(long, default_value_t = 8)]
    pub clips: usize,
    /// Paths sampled per length.
    #[arg(long, default_value_t = 20)]
    pub draws: usize,
    /// Seed of the sampling.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Share of the gradient the reported effective path range holds.
    #[arg(long, default_value_t = 0.9)]
    pub coverage: f64,
}

/// Options of `analyze alignment`.
#[derive(Args, Debug)]
pub struct AlignmentArgs {
    #[command(flatten)]
    pub data: DataArgs,
    /// Clips analysed one by one (spread over the dataset).
    #[arg(long, default_value_t = 4)]
    pub clips: usize,
    /// Most power iterations per Jacobian.
    #[arg(long, default_value_t = 50)]
    pub iterations: usize,
    /// Seed of the power iterations' start vectors.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

struct Loaded {
    spec: ModelSpec,
    set: Vec<Labelled>,
    net: StResNet,
}

fn load(args: &DataArgs) -> anyhow::Result<Loaded> {
    let spec = ModelSpec::load(&args.model)?;
    let settings = CacheSettings::for_model(&spec, args.preset);
    let cache = args.cache.clone().unwrap_or_else(|| args.out.join("cache"));
    let index = prepare(&args.data, &cache, &settings, Some(&spec.labels))?;
    if index.entries.is_empty() {
        bail!("no usable videos in {}", args.data.display());
    }
    let all: Vec<usize> = (0..index.entries.len()).collect();
    let set = load_set(&cache, &index, &spec.labels, &all)?;
    let weights = args.model.join("model.safetensors");
    // SAFETY: the weights file is only read and not modified while mapped.
    let vb = unsafe { VarBuilder::from_mmaped_safetensors(&[&weights], DType::F32, &Device::Cpu)? };
    let net = StResNet::new(&spec.architecture, vb)
        .with_context(|| format!("loading {}", weights.display()))?;
    std::fs::create_dir_all(&args.out)?;
    Ok(Loaded { spec, set, net })
}

/// `count` clips spread evenly over the set (the cache lists videos class by class), as one batch.
fn spread_batch(loaded: &Loaded, count: usize) -> anyhow::Result<Batch> {
    if count == 0 {
        bail!("--clips must be positive");
    }
    let n = loaded.set.len();
    let count = count.min(n);
    let picked: Vec<Labelled> = (0..count)
        .map(|i| loaded.set[i * n / count].clone())
        .collect();
    let mut batches = inputs::batches(&picked, &InputSpec::of(&loaded.spec), count)?;
    Ok(batches.remove(0))
}

fn write_json<T: Serialize>(path: &Path, report: &T) -> anyhow::Result<()> {
    std::fs::write(path, serde_json::to_string_pretty(report)?)
        .with_context(|| format!("writing {}", path.display()))
}

/// Runs `analyze`.
pub fn run(args: AnalyzeArgs) -> anyhow::Result<()> {
    match args.study {
        Study::Lesion(a) => run_lesion(a),
        Study::Paths(a) => run_paths(a),
        Study::Alignment(a) => run_alignment(a),
    }
}

fn run_lesion(args: LesionArgs) -> anyhow::Result<()> {
    let loaded = load(&args.data)?;
    let batches = inputs::batches(&loaded.set, &InputSpec::of(&loaded.spec), 16)?;
    let opts = lesion::LesionOptions {
        draws: args.draws,
        seed: args.seed,
        exclude_projection: args.exclude_projection,
    };
    let report = lesion::run(&loaded.net, &batches, loaded.spec.labels.len(), opts)?;
    let out = &args.data.out;
    write_json(&out.join("lesion.json"), &report)?;
    let charts = lesion::plot(&report, out)?;
    tracing::info!(
        samples = report.samples,
        baseline_fused = report.baseline.fused,
        charts = charts.len(),
        report = %out.join("lesion.json").display(),
        "lesion study written"
    );
    Ok(())
}

fn run_paths(args: PathsArgs) -> anyhow::Result<()> {
    let loaded = load(&args.data)?;
    let batch = spread_batch(&loaded, args.clips)?;
    let opts = paths::PathOptions {
        draws: args.draws,
        seed: args.seed,
        coverage: args.coverage,
    };
    let report = paths::run(&loaded.net, &batch, opts)?;
    let out = &args.data.out;
    write_json(&out.join("paths.json"), &report)?;
    paths::plot(&report, out)?;
    for s in &report.streams {
        tracing::info!(
            stream = s.stream.name(),
            units = s.units.len(),
            range = ?s.effective_range,
            mean_gradient_length = s.mean_gradient_length,
            "path study"
        );
    }
    Ok(())
}

fn run_alignment(args: AlignmentArgs) -> anyhow::Result<()> {
    let loaded = load(&args.data)?;
    let batch = spread_batch(&loaded, args.clips)?;
    let opts = alignment::AlignmentOptions {
        samples: args.clips,
        power: PowerOptions {
            iterations: args.iterations,
            seed: args.seed,
            ..PowerOptions::default()
        },
    };
    let report = alignment::run(&loaded.net, &batch, opts)?;
    let out = &args.data.out;
    write_json(&out.join("alignment.json"), &report)?;
    alignment::plot(&report, out)?;
    for s in &report.streams {
        let sigmas: Vec<String> = s
            .units
            .iter()
            .map(|u| format!("{:.3}", u.sigma_mean))
            .collect();
        tracing::info!(stream = s.stream.name(), sigmas = ?sigmas, "alignment study");
    }
    Ok(())
}
