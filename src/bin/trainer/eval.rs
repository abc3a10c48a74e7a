//! `revstream-trainer eval`: accuracy of a model folder on a labelled dataset.

use std::path::PathBuf;

use anyhow::{Context, bail};
use candle_core::{DType, Device};
use candle_nn::VarBuilder;
use clap::Args;
use revstream::artifact::ModelSpec;
use revstream::flow::FlowMethod;
use revstream::model::StResNet;
use revstream::train::batch::InputSpec;
use revstream::train::cache::CacheSettings;
use revstream::train::metrics::Tally;
use revstream::train::{plots, trainer};
use serde::Serialize;

use crate::prepare::prepare;
use crate::train::load_set;

/// Options of `eval`.
#[derive(Args, Debug)]
pub struct EvalArgs {
    /// Model folder (config.json, model.safetensors).
    #[arg(long, env = "REVSTREAM_MODEL")]
    pub model: PathBuf,
    /// Dataset: a class-folder root, a UCF101 list (.txt) or a CSV (path,label).
    #[arg(long)]
    pub data: PathBuf,
    /// Cache folder for the dataset's frames and flow (made if missing; reused).
    #[arg(long)]
    pub cache: PathBuf,
    /// Which score to report as the headline: rgb, flow or both (fused). All three are in the report.
    #[arg(long, default_value = "both")]
    pub streams: String,
    /// Flow method (default: the model's, as the server does).
    #[arg(long, value_enum)]
    pub preset: Option<FlowMethod>,
    /// Where report.json and confusion.png go (default: the cache folder).
    #[arg(long)]
    pub out: Option<PathBuf>,
}

#[derive(Serialize)]
struct StreamReport {
    top1: f64,
    top5: f64,
    per_class: Vec<(String, f64)>,
    confusion: Vec<Vec<usize>>,
}

/// A video the fused score got wrong.
#[derive(Serialize)]
struct Miss {
    video: String,
    label: String,
    predicted: String,
}

#[derive(Serialize)]
struct Report {
    model: String,
    data: String,
    samples: usize,
    failed_videos: usize,
    streams: String,
    top1: f64,
    top5: f64,
    fused: StreamReport,
    rgb: StreamReport,
    flow: StreamReport,
    misclassified: Vec<Miss>,
}

fn stream_report(t: &Tally, labels: &[String]) -> StreamReport {
    StreamReport {
        top1: t.top1(),
        top5: t.top5(),
        per_class: labels.iter().cloned().zip(t.per_class()).collect(),
        confusion: t.confusion.clone(),
    }
}

/// Runs `eval`.
pub fn run(args: EvalArgs) -> anyhow::Result<()> {
    let spec = ModelSpec::load(&args.model)?;
    let settings = CacheSettings::for_model(&spec, args.preset);
    let index = prepare(&args.data, &args.cache, &settings, Some(&spec.labels))?;
    let set = load_set(
        &args.cache,
        &index,
        &spec.labels,
        &(0..index.entries.len()).collect::<Vec<_>>(),
    )?;
    let weights = args.model.join("model.safetensors");
    // SAFETY: the weights file is only read and not modified while mapped.
    let vb = unsafe { VarBuilder::from_mmaped_safetensors(&[&weights], DType::F32, &Device::Cpu)? };
    let net = StResNet::new(&spec.architecture, vb)
        .with_context(|| format!("loading {}", weights.display()))?;
    let input = InputSpec::of(&spec);
    let (fused, rgb, flow, _) = trainer::evaluate(&net, &input, &set, spec.labels.len(), 16)?;
    let headline = match args.streams.as_str() {
        "both" => &fused,
        "rgb" => &rgb,
        "flow" => &flow,
        other => bail!("unknown --streams {other:?} (rgb, flow, both)"),
    };
    let report = Report {
        model: args.model.display().to_string(),
        data: args.data.display().to_string(),
        samples: set.len(),
        failed_videos: index.failures.len(),
        streams: args.streams.clone(),
        top1: headline.top1(),
        top5: headline.top5(),
        fused: stream_report(&fused, &spec.labels),
        rgb: stream_report(&rgb, &spec.labels),
        flow: stream_report(&flow, &spec.labels),
        misclassified: index
            .entries
            .iter()
            .zip(&set)
            .zip(&fused.predicted)
            .filter(|((_, (_, label)), p)| label != *p)
            .map(|((entry, (_, label)), p)| Miss {
                video: entry.video.display().to_string(),
                label: spec.labels[*label].clone(),
                predicted: spec.labels[*p].clone(),
            })
            .collect(),
    };
    let out = args.out.unwrap_or(args.cache.clone());
    std::fs::create_dir_all(&out)?;
    std::fs::write(
        out.join("report.json"),
        serde_json::to_string_pretty(&report)?,
    )?;
    plots::confusion_png(&out.join("confusion.png"), &headline.confusion)?;
    tracing::info!(
        samples = report.samples,
        failed = report.failed_videos,
        top1 = format!("{:.4}", report.top1),
        top5 = format!("{:.4}", report.top5),
        fused_top1 = format!("{:.4}", fused.top1()),
        rgb_top1 = format!("{:.4}", rgb.top1()),
        flow_top1 = format!("{:.4}", flow.top1()),
        report = %out.join("report.json").display(),
        "evaluated"
    );
    Ok(())
}
