//! `revstream-trainer synth`: write the MotionShapes dataset.

use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use revstream::train::synth::{self, SynthOptions};

/// Options of `synth`.
#[derive(Args, Debug)]
pub struct SynthArgs {
    /// Output folder; clips go to OUT/<label>/<label>_s<SEED>_NNNN.mp4.
    #[arg(long, env = "REVSTREAM_SYNTH_OUT")]
    out: PathBuf,
    /// Clips per class.
    #[arg(long, default_value_t = 100)]
    per_class: usize,
    /// Random seed; the same seed gives the same clips.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Frame size as WxH (even sides).
    #[arg(long, default_value = "112x112")]
    size: String,
    /// Frames per second.
    #[arg(long, default_value_t = 25.0)]
    fps: f64,
    /// Clip length in seconds.
    #[arg(long, default_value_t = 2.0)]
    seconds: f64,
}

fn parse_size(s: &str) -> anyhow::Result<(u32, u32)> {
    let Some((w, h)) = s.split_once(['x', 'X']) else {
        bail!("--size must look like 112x112, got {s:?}");
    };
    Ok((
        w.trim().parse().context("--size width")?,
        h.trim().parse().context("--size height")?,
    ))
}

/// Runs `synth`.
pub fn run(args: SynthArgs) -> anyhow::Result<()> {
    let (width, height) = parse_size(&args.size)?;
    let opts = SynthOptions {
        width,
        height,
        fps: args.fps,
        seconds: args.seconds,
    };
    opts.validate()?;
    let total = args.per_class * synth::LABELS.len();
    let bar = ProgressBar::new(total as u64).with_style(
        ProgressStyle::with_template("synth {bar:40} {pos}/{len} clips {elapsed} eta {eta}")
            .context("progress template")?,
    );
    let started = std::time::Instant::now();
    let paths = synth::generate(&args.out, args.per_class, args.seed, &opts, &|| bar.inc(1))?;
    bar.finish();
    tracing::info!(
        clips = paths.len(),
        seconds = started.elapsed().as_secs_f64(),
        out = %args.out.display(),
        "MotionShapes written"
    );
    Ok(())
}
