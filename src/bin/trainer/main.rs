//! revstream-trainer: datasets, optical flow, training and evaluation.

mod synth;

use clap::{Parser, Subcommand};

/// Train and evaluate revstream models.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Generate the MotionShapes synthetic dataset as H.264 videos.
    Synth(synth::SynthArgs),
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    match Args::parse().command {
        Command::Synth(args) => synth::run(args),
    }
}
