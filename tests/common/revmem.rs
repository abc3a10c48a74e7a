//! Heap bytes of one training step, reversible backpropagation vs plain autograd, counted
//! exactly by a global allocator. Included by path (`#[path]`) in `tests/revmem.rs` (the
//! guard) and `benches/revmem.rs` (the table); installing the allocator is this module's
//! doing, so a binary that includes it counts every allocation of every thread.
//!
//! "Peak" is the highest live count during a step above the count before it (parameters
//! and inputs excluded). Gradients are part of that peak and grow with depth in both
//! methods, so activations are the peak less the bytes of the step's gradients, counted as
//! fresh tensors that own exactly their elements (storage a gradient keeps alive beyond
//! them counts as activations).

// The test reads the byte counts, the bench the times too.
#![allow(dead_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use candle_core::{DType, Device, Result, Tensor};
use candle_nn::{VarBuilder, VarMap};
use revstream::model::{Config, StResNet, StreamLogits};
use revstream::train::checkpoint::seeded_init;
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

/// The kinds of network measured.
#[derive(Debug, Clone, Copy)]
pub enum Kind {
    /// The default model's: basic units, a temporal unit in every stage, links on.
    Basic,
    /// r50's: bottleneck units (4x expansion), temporal units and links as in `Basic`.
    Bottleneck,
}

/// A network of `kind` with `per_stream` reversible units per stream, a quarter in each
/// stage after its ordinary first unit, and a temporal unit in the middle of every stage.
pub fn config(kind: Kind, per_stream: usize) -> Config {
    let n = per_stream / 4;
    Config {
        input_size: 32,
        frames: 2,
        units: [n + 1; 4],
        temporal_units: (0..4).map(|s| [s, n / 2 + 1]).collect(),
        bottleneck: matches!(kind, Kind::Bottleneck),
        links: true,
        reversible: true,
        ..Config::tiny(10)
    }
}

/// What one method's steps cost.
pub struct Measure {
    /// Highest live bytes above the step's start, over the measured steps.
    pub peak: usize,
    /// Bytes of the parameter gradients the last step returned ([`owned_bytes`]).
    pub grads: usize,
    /// Median wall time of a measured step, seconds.
    pub seconds: f64,
}

impl Measure {
    /// Peak bytes less the gradients': what the step held for its activations.
    pub fn activations(&self) -> usize {
        self.peak.saturating_sub(self.grads)
    }
}

/// Both methods on one network: plain autograd, then reversible.
pub struct Pair {
    pub plain: Measure,
    pub rev: Measure,
}

/// One warm-up step, then `reps` measured steps of `step`.
fn measure(vm: &VarMap, step: &dyn Fn() -> Result<Step>, reps: usize) -> Result<Measure> {
    step()?;
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
        grads = owned_bytes(vm, &out)?;
    }
    times.sort_by(f64::total_cmp);
    Ok(Measure {
        peak,
        grads,
        seconds: times[reps / 2],
    })
}

/// Heap bytes of `out`'s parameter gradients as tensors that own exactly their elements:
/// allocated afresh (elements and each tensor's own bookkeeping, which grows with depth too)
/// and counted. Storage a returned gradient keeps alive beyond its elements is not in it, so
/// it shows up as activations.
fn owned_bytes(vm: &VarMap, out: &Step) -> Result<usize> {
    let before = LIVE.load(Ordering::Relaxed);
    let owned = vm
        .all_vars()
        .iter()
        .filter_map(|v| out.grads.get(v.as_tensor()))
        .map(Tensor::force_contiguous)
        .collect::<Result<Vec<_>>>()?;
    let bytes = LIVE.load(Ordering::Relaxed) - before;
    drop(owned);
    Ok(bytes)
}

/// Measures `reps` training steps (batch 2 x 2 frames at 32x32, both streams, CPU) of a
/// seeded network of `kind` with `per_stream` reversible units, with each method. `plain`
/// false skips plain autograd (its `Measure` is then all zeros).
pub fn measure_pair(kind: Kind, per_stream: usize, reps: usize, plain: bool) -> Result<Pair> {
    let dev = Device::Cpu;
    let cfg = config(kind, per_stream);
    let vm = VarMap::new();
    let model = StResNet::new(&cfg, VarBuilder::from_varmap(&vm, DType::F32, &dev))?;
    seeded_init(&vm, 0).map_err(candle_core::Error::wrap)?;
    let s = cfg.input_size;
    // Deterministic, varied inputs (byte counts do not depend on values; times might).
    let wave = |c: usize, freq: f64| {
        let n = 2 * cfg.frames * c * s * s;
        (Tensor::arange(0f32, n as f32, &dev)? * freq)?
            .sin()?
            .reshape((2, cfg.frames, c, s, s))
    };
    let rgb = wave(3, 0.731)?;
    let flow = wave(cfg.flow_channels(), 0.377)?;
    let labels = Tensor::new(&[1u32, 7], &dev)?;
    let loss = |l: &StreamLogits| {
        let ce = |x: &Tensor| candle_nn::loss::cross_entropy(x, &labels);
        (ce(&l.appearance)? + ce(&l.motion)?)? + ce(&l.fused)?
    };
    let plain = if plain {
        measure(
            &vm,
            &|| plain_forward_backward(&model, &rgb, &flow, false, loss),
            reps,
        )?
    } else {
        Measure {
            peak: 0,
            grads: 0,
            seconds: 0.0,
        }
    };
    let rev = measure(
        &vm,
        &|| forward_backward(&model, &rgb, &flow, false, loss),
        reps,
    )?;
    Ok(Pair { plain, rev })
}
