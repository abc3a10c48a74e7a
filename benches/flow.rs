//! TV-L1 on 340x256 frame pairs (the two-stream frame size), both presets, on a
//! two-thread pool. The OpenCV comparison on the same pairs, with the ratio from one
//! run, is scripts/peers/flow_opencv.py.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use revstream::flow::{FlowMethod, synth, tvl1};

fn bench(c: &mut Criterion) {
    let pairs: Vec<_> = synth::bench_set(340, 256, 4)
        .into_iter()
        .map(|gt| gt.quantized())
        .collect();
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .build()
        .expect("thread pool");
    let mut group = c.benchmark_group("tvl1_340x256_2threads");
    group.throughput(Throughput::Elements(pairs.len() as u64));
    group.sample_size(10);
    for preset in [FlowMethod::Accurate, FlowMethod::Fast] {
        let params = preset.params();
        group.bench_function(format!("{preset:?}").to_lowercase(), |b| {
            b.iter(|| {
                pool.install(|| {
                    for gt in &pairs {
                        black_box(tvl1(&gt.prev, &gt.next, &params));
                    }
                })
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
