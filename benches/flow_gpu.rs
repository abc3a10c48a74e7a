//! The batched tensor TV-L1 (`flow::tvl1_batch`) against the CPU solver on the same
//! 340x256 pairs, `fast` preset: pairs/s for each and their ratio from one run.
//!
//! The tensor solver runs on `REVSTREAM_BENCH_DEVICE` (default `auto`: the GPU in a
//! `--features cuda` build on a GPU machine, else the CPU) with `REVSTREAM_BENCH_BATCH`
//! pairs per call (default 64 on a GPU, 8 on the CPU).

use std::hint::black_box;
use std::time::Instant;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use revstream::backend::device;
use revstream::flow::{FlowMethod, GrayImage, synth, tvl1, tvl1_batch};

fn bench(c: &mut Criterion) {
    let name = std::env::var("REVSTREAM_BENCH_DEVICE").unwrap_or_else(|_| "auto".into());
    let device = device::parse(&name).expect("device");
    let batch: usize = std::env::var("REVSTREAM_BENCH_BATCH")
        .ok()
        .and_then(|b| b.parse().ok())
        .unwrap_or(if device.is_cpu() { 8 } else { 64 });
    let base: Vec<_> = synth::bench_set(340, 256, 4)
        .into_iter()
        .map(|gt| gt.quantized())
        .collect();
    let prev: Vec<GrayImage> = (0..batch).map(|i| base[i % 4].prev.clone()).collect();
    let next: Vec<GrayImage> = (0..batch).map(|i| base[i % 4].next.clone()).collect();
    let params = FlowMethod::Fast.params();
    let device_name = device::name(&device);

    let mut group = c.benchmark_group("tvl1_fast_340x256");
    group.throughput(Throughput::Elements(batch as u64));
    group.sample_size(10);
    group.bench_function(format!("tensor_{device_name}_batch{batch}"), |b| {
        b.iter(|| black_box(tvl1_batch(&prev, &next, &params, &device).expect("flow")))
    });
    group.bench_function(format!("cpu_solver_batch{batch}"), |b| {
        b.iter(|| {
            for (p, n) in prev.iter().zip(&next) {
                black_box(tvl1(p, n, &params));
            }
        })
    });
    group.finish();

    // The ratio from this run, on one timed pass each after a warm-up.
    let time = |f: &dyn Fn()| {
        f();
        let started = Instant::now();
        f();
        batch as f64 / started.elapsed().as_secs_f64()
    };
    let tensor = time(&|| {
        black_box(tvl1_batch(&prev, &next, &params, &device).expect("flow"));
    });
    let cpu = time(&|| {
        for (p, n) in prev.iter().zip(&next) {
            black_box(tvl1(p, n, &params));
        }
    });
    eprintln!(
        "tvl1 fast 340x256: tensor solver on {device_name} {tensor:.1} pairs/s, \
         CPU solver {cpu:.1} pairs/s, ratio {:.2}x",
        tensor / cpu
    );
}

criterion_group!(benches, bench);
criterion_main!(benches);
