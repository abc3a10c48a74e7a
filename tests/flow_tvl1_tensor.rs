//! The batched tensor TV-L1 (`flow::tvl1_batch`) on the CPU device against the CPU
//! solver and against ground truth, on the synthetic pairs of `flow::synth`.
//!
//! Both solvers run the same algorithm in f32 (whole-image steps here, one sweep per
//! iteration there), so their flows differ only by rounding: measured mean EPE between
//! them ≤ 0.00001 px on these 128x96 8-bit pairs, bound 0.001 px. Against the truth both
//! measure 0.051–0.104 px (`fast`) and 0.016–0.079 px (`accurate`, the rotation being the
//! hardest after 8-bit quantisation) without gain compensation; with it (both presets'
//! default) the accurate worst case is 0.121 px, because a large motion moves texture
//! across the border and shifts the mean brightness the compensation matches. Bounds
//! 0.16 and 0.15 px.

use candle_core::Device;
use revstream::flow::synth::{GroundTruth, Motion, pair};
use revstream::flow::{Tvl1Params, tvl1, tvl1_batch};

const W: usize = 128;
const H: usize = 96;
const BETWEEN_SOLVERS: f64 = 0.001;

fn pairs() -> Vec<GroundTruth> {
    [
        Motion::Translation { dx: 2.35, dy: -1.4 },
        Motion::Translation { dx: -6.6, dy: 3.1 },
        Motion::Rotation { degrees: 4.0 },
        Motion::Smooth {
            amplitude: 3.0,
            seed: 11,
        },
    ]
    .into_iter()
    .enumerate()
    .map(|(i, m)| pair(W, H, m, i as u64 + 7).quantized())
    .collect()
}

fn check(params: &Tvl1Params, truth_bound: f64) {
    let gts = pairs();
    let prev: Vec<_> = gts.iter().map(|g| g.prev.clone()).collect();
    let next: Vec<_> = gts.iter().map(|g| g.next.clone()).collect();
    let batched = tvl1_batch(&prev, &next, params, &Device::Cpu).unwrap();
    assert_eq!(batched.len(), gts.len());
    for (gt, flow) in gts.iter().zip(&batched) {
        let cpu = tvl1(&gt.prev, &gt.next, params);
        let between = flow.epe(&cpu, None).unwrap();
        let truth = gt.epe(flow).unwrap();
        let cpu_truth = gt.epe(&cpu).unwrap();
        assert!(
            between < BETWEEN_SOLVERS,
            "EPE between solvers {between:.5} px (truth: tensor {truth:.4}, cpu {cpu_truth:.4})"
        );
        assert!(
            truth < truth_bound,
            "tensor solver EPE vs truth {truth:.4} px"
        );
    }
}

#[test]
fn fast_preset_matches_the_cpu_solver_and_the_truth() {
    check(&Tvl1Params::fast(), 0.16);
}

#[test]
fn accurate_preset_matches_the_cpu_solver_and_the_truth() {
    check(&Tvl1Params::accurate(), 0.15);
}

#[test]
fn a_pair_s_flow_does_not_depend_on_its_batch() {
    // Per-pair stopping: a pair converging early must not change another's result.
    let gts = pairs();
    let params = Tvl1Params::fast();
    let alone = tvl1_batch(
        std::slice::from_ref(&gts[2].prev),
        std::slice::from_ref(&gts[2].next),
        &params,
        &Device::Cpu,
    )
    .unwrap();
    let prev: Vec<_> = gts.iter().map(|g| g.prev.clone()).collect();
    let next: Vec<_> = gts.iter().map(|g| g.next.clone()).collect();
    let together = tvl1_batch(&prev, &next, &params, &Device::Cpu).unwrap();
    assert!(alone[0].epe(&together[2], None).unwrap() < 1e-6);
}
