//! `revstream-trainer prepare`: decode and compute flow once into the on-disk cache.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use revstream::flow::FlowMethod;
use revstream::train::cache::{self, CacheIndex, CacheSettings};
use revstream::train::dataset::Dataset;

/// Options of `prepare`.
#[derive(Args, Debug)]
pub struct PrepareArgs {
    /// Dataset: a class-folder root, a UCF101 list (.txt) or a CSV (path,label).
    #[arg(long, env = "REVSTREAM_DATA")]
    pub data: PathBuf,
    /// Cache folder (created; an interrupted run resumes).
    #[arg(long, env = "REVSTREAM_CACHE")]
    pub cache: PathBuf,
    /// Square frame side (the model's input size).
    #[arg(long, default_value_t = 64)]
    pub size: u32,
    /// Flow clip bound in pixels.
    #[arg(long, default_value_t = 8.0)]
    pub flow_bound: f32,
    /// TV-L1 preset: fast (what the server uses by default) or accurate.
    #[arg(long, value_enum, default_value = "fast")]
    pub preset: FlowMethod,
    /// Frames kept per video, from the start.
    #[arg(long, default_value_t = 300)]
    pub max_frames: usize,
    /// Flow fields per second: flow between frames 1/F s apart, rescaled to that
    /// interval, so motion reads the same at any frame rate (default: consecutive frames).
    #[arg(long)]
    pub flow_fps: Option<f64>,
    /// Compute flow at this many times the frame size and pool it back (1 to 4), so
    /// small objects' motion survives; RGB frames are shrunk from the same frames.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=4))]
    pub flow_supersample: u32,
}

/// Caches `data` into `cache` with a progress bar; used by `prepare`, `eval` and `analyze`.
/// With `model_labels`, a dataset label the model lacks is refused before any video is
/// decoded, not after the whole cache is made.
pub fn prepare(
    data: &Path,
    cache_dir: &Path,
    settings: &CacheSettings,
    model_labels: Option<&[String]>,
) -> anyhow::Result<CacheIndex> {
    let dataset = Dataset::open(data).with_context(|| format!("reading {}", data.display()))?;
    if let Some(known) = model_labels {
        let unknown: Vec<&String> = dataset
            .labels
            .iter()
            .filter(|l| !known.contains(l))
            .collect();
        if !unknown.is_empty() {
            bail!("dataset labels {unknown:?} are not among the model's {known:?}");
        }
    }
    if !dataset.skipped.is_empty() {
        tracing::warn!(
            skipped = dataset.skipped.len(),
            "dataset entries skipped while reading"
        );
    }
    let bar = ProgressBar::new(dataset.samples.len() as u64).with_style(
        ProgressStyle::with_template("prepare {bar:40} {pos}/{len} videos {elapsed} eta {eta}")
            .context("progress template")?,
    );
    let index = cache::prepare(&dataset, cache_dir, settings, &|| bar.inc(1))?;
    bar.finish();
    tracing::info!(
        cached = index.entries.len(),
        failed = index.failures.len(),
        cache = %cache_dir.display(),
        "cache ready"
    );
    Ok(index)
}

/// Runs `prepare`.
pub fn run(args: PrepareArgs) -> anyhow::Result<()> {
    let preset = args.preset;
    let settings = CacheSettings {
        size: args.size,
        flow_bound: args.flow_bound,
        preset,
        max_frames: args.max_frames,
        flow_fps: args.flow_fps,
        flow_supersample: args.flow_supersample,
    };
    prepare(&args.data, &args.cache, &settings, None)?;
    Ok(())
}
