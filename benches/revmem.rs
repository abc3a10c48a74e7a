//! Peak memory and time of one training step, reversible backpropagation vs plain autograd,
//! at 8, 16, 32 and 64 reversible units per stream, on the default model's kind of network
//! (basic units) and on a bottleneck (r50-like) one. Bytes are counted exactly by the
//! allocator of `tests/common/revmem.rs`; `tests/revmem.rs` guards the flat-memory claim.
//!
//! `cargo bench --bench revmem` (all depths, 15 timed steps per method and depth) or
//! `cargo bench --bench revmem -- 8 16`; `--reps N` sets the timed steps, `--basic` or
//! `--bottleneck` one kind alone; `--profile dev` skips the release build (dependencies
//! are optimised there too).

#[path = "../tests/common/revmem.rs"]
mod revmem;

use candle_core::Result;
use revmem::{Kind, measure_pair};

fn mb(bytes: usize) -> f64 {
    bytes as f64 / (1 << 20) as f64
}

fn main() -> Result<()> {
    // As the trainer runs: freed tensor buffers are kept for the next step.
    revstream::alloc::keep_freed_memory();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut depths = Vec::new();
    let mut reps = 15;
    let mut kinds = vec![Kind::Basic, Kind::Bottleneck];
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--reps" => {
                reps = it
                    .next()
                    .and_then(|n| n.parse().ok())
                    .filter(|&n| n > 0)
                    .expect("--reps takes a positive count")
            }
            "--basic" => kinds = vec![Kind::Basic],
            "--bottleneck" => kinds = vec![Kind::Bottleneck],
            a => depths.extend(a.parse::<usize>().ok()),
        }
    }
    if depths.is_empty() {
        depths = vec![8, 16, 32, 64];
    }
    for kind in kinds {
        println!(
            "{kind:?} units; one training step, batch 2 x 2 frames, 32x32, base width 8, \
             both streams, links on; CPU, {} threads, median of {reps} steps",
            rayon::current_num_threads()
        );
        println!(
            "{:>6} {:>11} {:>11} {:>10} {:>10} {:>9} {:>9} {:>9} {:>7}",
            "units",
            "plain peak",
            "rev peak",
            "plain act",
            "rev act",
            "grads",
            "plain s",
            "rev s",
            "time x"
        );
        let mut rev_act = Vec::new();
        let mut plain_act = Vec::new();
        for &units in &depths {
            let pair = measure_pair(kind, units, reps, true)?;
            let (plain, rev) = (&pair.plain, &pair.rev);
            println!(
                "{:>6} {:>9.1}MB {:>9.1}MB {:>8.1}MB {:>8.1}MB {:>7.1}MB {:>9.4} {:>9.4} {:>7.2}",
                units,
                mb(plain.peak),
                mb(rev.peak),
                mb(plain.activations()),
                mb(rev.activations()),
                mb(rev.grads),
                plain.seconds,
                rev.seconds,
                rev.seconds / plain.seconds
            );
            plain_act.push(plain.activations());
            rev_act.push(rev.activations());
        }
        if depths.len() > 1 {
            let ratio = |v: &[usize]| *v.last().unwrap() as f64 / v[0] as f64;
            println!(
                "activation growth {} -> {} units: reversible {:.2}x, plain {:.2}x\n",
                depths[0],
                depths[depths.len() - 1],
                ratio(&rev_act),
                ratio(&plain_act)
            );
        }
    }
    Ok(())
}
