//! Ground-truth frame pairs for the OpenCV comparison (scripts/peers/flow_opencv.py):
//! `write DIR` saves them as 8-bit PNGs plus .flo ground truth; `run DIR` times our
//! TV-L1 on those same files and prints pairs/s and EPE as JSON.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use clap::{Parser, Subcommand};
use revstream::flow::{Flow, FlowMethod, GrayImage, flo, synth, tvl1};

#[derive(Parser)]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Write `count` pairs (pair_NN_prev.png, pair_NN_next.png, pair_NN_gt.flo) to DIR.
    Write {
        dir: PathBuf,
        #[arg(long, default_value_t = 8)]
        count: usize,
        #[arg(long, default_value_t = 340)]
        width: usize,
        #[arg(long, default_value_t = 256)]
        height: usize,
    },
    /// Time TV-L1 on the pairs in DIR and print {"pairs_per_s", "epe", ...} as JSON.
    Run {
        dir: PathBuf,
        #[arg(long, value_enum, default_value = "accurate")]
        preset: FlowMethod,
        #[arg(long, default_value_t = 2)]
        threads: usize,
        /// Passes over the whole set (after one warm-up pass).
        #[arg(long, default_value_t = 3)]
        repeat: usize,
    },
}

fn main() -> anyhow::Result<()> {
    match Args::parse().command {
        Command::Write {
            dir,
            count,
            width,
            height,
        } => write(&dir, count, width, height),
        Command::Run {
            dir,
            preset,
            threads,
            repeat,
        } => run(&dir, preset, threads, repeat),
    }
}

fn write(dir: &Path, count: usize, width: usize, height: usize) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)?;
    for (i, gt) in synth::bench_set(width, height, count)
        .into_iter()
        .enumerate()
    {
        let gt = gt.quantized();
        for (img, name) in [(&gt.prev, "prev"), (&gt.next, "next")] {
            let bytes: Vec<u8> = img.data.iter().map(|&v| v as u8).collect();
            image::GrayImage::from_raw(width as u32, height as u32, bytes)
                .context("image size")?
                .save(dir.join(format!("pair_{i:02}_{name}.png")))?;
        }
        flo::write(dir.join(format!("pair_{i:02}_gt.flo")), &gt.flow)?;
    }
    Ok(())
}

fn load(path: &Path) -> anyhow::Result<GrayImage> {
    let img = image::open(path)
        .with_context(|| path.display().to_string())?
        .to_luma8();
    Ok(GrayImage::from_luma8(
        img.as_raw(),
        img.width() as usize,
        img.height() as usize,
    )?)
}

/// Valid pixels: those whose true correspondence lies inside the frame (the same rule
/// as the Python peer).
fn valid_mask(gt: &Flow) -> Vec<bool> {
    (0..gt.u.len())
        .map(|i| {
            let (x, y) = (
                (i % gt.width) as f32 + gt.u[i],
                (i / gt.width) as f32 + gt.v[i],
            );
            x >= 0.0 && x <= (gt.width - 1) as f32 && y >= 0.0 && y <= (gt.height - 1) as f32
        })
        .collect()
}

fn run(dir: &Path, preset: FlowMethod, threads: usize, repeat: usize) -> anyhow::Result<()> {
    let mut pairs = Vec::new();
    for i in 0.. {
        let prev = dir.join(format!("pair_{i:02}_prev.png"));
        if !prev.exists() {
            break;
        }
        let next = load(&dir.join(format!("pair_{i:02}_next.png")))?;
        let gt = flo::read(dir.join(format!("pair_{i:02}_gt.flo")))?;
        pairs.push((load(&prev)?, next, gt));
    }
    anyhow::ensure!(!pairs.is_empty(), "no pairs in {}", dir.display());
    let params = preset.params();
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()?;
    let flows: Vec<Flow> =
        pool.install(|| pairs.iter().map(|(a, b, _)| tvl1(a, b, &params)).collect());
    let start = Instant::now();
    for _ in 0..repeat {
        pool.install(|| {
            for (a, b, _) in &pairs {
                std::hint::black_box(tvl1(a, b, &params));
            }
        });
    }
    let seconds = start.elapsed().as_secs_f64();
    let epes: Vec<f64> = flows
        .iter()
        .zip(&pairs)
        .map(|(f, (_, _, gt))| f.epe(gt, Some(&valid_mask(gt))).unwrap_or(f64::NAN))
        .collect();
    let report = serde_json::json!({
        "impl": "revstream",
        "preset": format!("{preset:?}").to_lowercase(),
        "threads": threads,
        "pairs": pairs.len() * repeat,
        "pairs_per_s": (pairs.len() * repeat) as f64 / seconds,
        "epe": epes.iter().sum::<f64>() / epes.len() as f64,
        "epe_per_pair": epes,
    });
    println!("{report}");
    Ok(())
}
