//! revstream-trainer: datasets, optical flow, training and evaluation.

mod analyze;
mod eval;
mod export_onnx;
mod flow;
mod predict;
mod prepare;
mod synth;
mod train;

use clap::{Parser, Subcommand};

/// Train and evaluate revstream models.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    #[command(subcommand)]
    command: Command,
}

/// The trainer's subcommands, each in its own file beside this one.
#[derive(Subcommand, Debug)]
enum Command {
    /// TV-L1 optical flow of two images (.flo) or of a whole video (JPEG pairs).
    Flow(flow::FlowArgs),
    /// Export a trained model folder to ONNX (model.onnx).
    ExportOnnx(export_onnx::ExportOnnxArgs),
    /// Generate the MotionShapes synthetic dataset as H.264 videos.
    Synth(synth::SynthArgs),
    /// Decode videos and compute their flow once into an on-disk cache.
    Prepare(prepare::PrepareArgs),
    /// Train a two-stream model from a cache and export it.
    Train(Box<train::TrainArgs>),
    /// Evaluate a model folder on a labelled dataset.
    Eval(eval::EvalArgs),
    /// Lesion study, path lengths or residual alignment of a model folder.
    Analyze(analyze::AnalyzeArgs),
    /// Predict the actions in a video file (and its timeline), or render what the model saw.
    Predict(predict::PredictArgs),
}

fn main() -> anyhow::Result<()> {
    revstream::alloc::keep_freed_memory();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match Args::parse().command {
        Command::Flow(args) => flow::run(args),
        Command::ExportOnnx(args) => export_onnx::run(args),
        Command::Synth(args) => synth::run(args),
        Command::Prepare(args) => prepare::run(args),
        Command::Train(args) => train::run(*args),
        Command::Eval(args) => eval::run(args),
        Command::Analyze(args) => analyze::run(args),
        Command::Predict(args) => predict::run(args),
    }
}
