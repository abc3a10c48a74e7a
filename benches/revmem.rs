//! Peak memory and time of one training step, reversible backpropagation vs plain autograd,
//! at 8, 16, 32 and 64 reversible units per stream.
//!
//! Live heap bytes are counted by a global allocator; "peak" is the highest count during the
//! step above the count before it (parameters and inputs excluded). Gradients are part of
//! that peak and grow with depth in both methods, so the activation column subtracts the
//! step's final gradient bytes.
//!
//! `cargo bench --bench revmem` (all depths) or `cargo bench --bench revmem -- 8 16`;
//! `--profile dev` skips the release build (dependencies are optimised there too).

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use candle_core::{DType, Device, Result, Tensor};
use candle_nn::{VarBuilder, VarMap};
use revstream::model::{Config, StResNet, StreamLogits};
use revstream::train::revprop::{Step, forward_backward, plain_forward_backward};

struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

fn grew(bytes: usize) {
    let now = LIVE.fetch_add(bytes, Ordering::Relaxed) + bytes;
    PEAK.fetch_max(now, Ordering::Relaxed);
}

// SAFETY: every call forwards to the system allocator unchanged; only counters are added.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
            grew(new_size);
        }
        p
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// A network with `per_stream` reversible units per stream (a quarter in each stage).
fn config(per_stream: usize) -> Config {
    let n = per_stream / 4;
    Config {
        input_size: 32,
        frames: 2,
        units: [n + 1; 4],
        // A temporal unit in the middle of every stage.
        temporal_units: (0..4).map(|s| [s, n / 2 + 1]).collect(),
        ..Config::tiny(10)
    }
}

/// Timed steps per method and depth (after one warm-up step); the median is reported.
const REPS: usize = 3;

struct Measure {
    peak: usize,
    grads: usize,
    seconds: f64,
}

fn measure(vm: &VarMap, step: &dyn Fn() -> Result<Step>, reps: usize) -> Result<Measure> {
    step()?; // warm-up
    let mut peak = 0;
    let mut grads = 0;
    let mut times = Vec::with_capacity(reps);
    for _ in 0..reps {
        let base = LIVE.load(Ordering::Relaxed);
        PEAK.store(base, Ordering::Relaxed);
        let start = Instant::now();
        let out = step()?;
        times.push(start.elapsed().as_secs_f64());
        peak = peak.max(PEAK.load(Ordering::Relaxed) - base);
        grads = vm
            .all_vars()
            .iter()
            .filter_map(|v| out.grads.get(v.as_tensor()))
            .map(|g| g.elem_count() * g.dtype().size_in_bytes())
            .sum();
    }
    times.sort_by(f64::total_cmp);
    Ok(Measure {
        peak,
        grads,
        seconds: times[reps / 2],
    })
}

fn mb(bytes: usize) -> f64 {
    bytes as f64 / (1 << 20) as f64
}

fn main() -> Result<()> {
    let depths: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let depths = if depths.is_empty() {
        vec![8, 16, 32, 64]
    } else {
        depths
    };
    let dev = Device::Cpu;
    println!("one training step, batch 2 x 2 frames, 32x32, base width 8, both streams; CPU");
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
        let cfg = config(units);
        let vm = VarMap::new();
        let model = StResNet::new(&cfg, VarBuilder::from_varmap(&vm, DType::F32, &dev))?;
        let s = cfg.input_size;
        let rgb = Tensor::randn(0f32, 1.0, (2, cfg.frames, 3, s, s), &dev)?;
        let flow = Tensor::randn(0f32, 1.0, (2, cfg.frames, cfg.flow_channels(), s, s), &dev)?;
        let labels = Tensor::new(&[1u32, 7], &dev)?;
        let loss = |l: &StreamLogits| {
            let ce = |x: &Tensor| candle_nn::loss::cross_entropy(x, &labels);
            (ce(&l.appearance)? + ce(&l.motion)?)? + ce(&l.fused)?
        };
        let plain = measure(
            &vm,
            &|| plain_forward_backward(&model, &rgb, &flow, false, loss),
            REPS,
        )?;
        let rev = measure(
            &vm,
            &|| forward_backward(&model, &rgb, &flow, false, loss),
            REPS,
        )?;
        let (pa, ra) = (
            plain.peak.saturating_sub(plain.grads),
            rev.peak.saturating_sub(rev.grads),
        );
        println!(
            "{:>6} {:>9.1}MB {:>9.1}MB {:>8.1}MB {:>8.1}MB {:>7.1}MB {:>9.3} {:>9.3} {:>7.2}",
            units,
            mb(plain.peak),
            mb(rev.peak),
            mb(pa),
            mb(ra),
            mb(rev.grads),
            plain.seconds,
            rev.seconds,
            rev.seconds / plain.seconds
        );
        plain_act.push(pa);
        rev_act.push(ra);
    }
    if depths.len() > 1 {
        let ratio = |v: &[usize]| *v.last().unwrap() as f64 / v[0] as f64;
        println!(
            "activation growth {} -> {} units: reversible {:.2}x, plain {:.2}x",
            depths[0],
            depths[depths.len() - 1],
            ratio(&rev_act),
            ratio(&plain_act)
        );
    }
    Ok(())
}
