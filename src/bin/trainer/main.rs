//! revstream-trainer: datasets, optical flow, training and evaluation.

use clap::Parser;

/// Train and evaluate revstream models.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {}

fn main() -> anyhow::Result<()> {
    let _args = Args::parse();
    anyhow::bail!("no subcommands yet; see README.md")
}
