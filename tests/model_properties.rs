//! Properties of the ST-ResNet's parts: reversible reconstruction, temporal initialisation,
//! and the one-way motion→appearance links.

use candle_core::{DType, Device, IndexOp, Tensor};
use candle_nn::{VarBuilder, VarMap};
use revstream::model::blocks::{BranchSpec, ResBlock};
use revstream::model::norm::{BnMode, Ctx, apply_updates};
use revstream::model::st_resnet::Unit;
use revstream::model::{Config, StResNet};
use revstream::train::checkpoint::seeded_init;

fn wave(shape: &[usize], freq: f64) -> Tensor {
    let n: usize = shape.iter().product();
    let x = Tensor::arange(0f32, n as f32, &Device::Cpu).unwrap();
    (x * freq).unwrap().sin().unwrap().reshape(shape).unwrap()
}

fn norm(t: &Tensor) -> f32 {
    t.sqr()
        .unwrap()
        .sum_all()
        .unwrap()
        .sqrt()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
}

fn rel_err(a: &Tensor, b: &Tensor) -> f32 {
    norm(&(a - b).unwrap()) / norm(b)
}

/// Runs every reversible unit of appearance stage `stage` forward, then inverts them all, in
/// training (batch statistics, as revprop reconstructs) and inference mode; returns the
/// worst relative error of the recovered stage input.
fn stage_reconstruction_error(cfg: &Config, stage: usize) -> f32 {
    let vm = VarMap::new();
    let model = StResNet::new(cfg, VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu)).unwrap();
    // candle's default initialisation draws from an unseeded generator: the error bounds
    // below held for most draws, not all (one CI run saw 1.5e-4).
    seeded_init(&vm, 0).unwrap();
    let stage_ref = &model.appearance.stages[stage];
    let side = cfg.input_size >> stage;
    let x = wave(
        &[4 * cfg.frames, cfg.stage_width(stage), side, side],
        12.9898,
    );
    let mut updates = Vec::new();
    let mut train = Ctx::new(cfg.frames, BnMode::Train(&mut updates));
    stage_ref
        .rest
        .iter()
        .try_fold(x.clone(), |h, u| u.forward(&h, &mut train))
        .unwrap();
    apply_updates(&updates).unwrap();
    let mut worst = 0f32;
    for training in [true, false] {
        let mode = || {
            if training {
                BnMode::Recompute
            } else {
                BnMode::Eval
            }
        };
        let mut h = x.clone();
        for unit in &stage_ref.rest {
            h = unit.forward(&h, &mut Ctx::new(cfg.frames, mode())).unwrap();
        }
        assert!(rel_err(&h, &x) > 0.1, "the stage should change its input");
        for unit in stage_ref.rest.iter().rev() {
            let Unit::Rev(block) = unit else {
                panic!("expected a reversible unit")
            };
            h = block
                .inverse(&h, &mut Ctx::new(cfg.frames, mode()))
                .unwrap();
        }
        worst = worst.max(rel_err(&h, &x));
    }
    worst
}

#[test]
fn inverse_recovers_the_input_of_a_whole_reversible_stage() {
    // Every stage of the r18 and r50 shapes (at small width); running statistics are set to
    // the last batch's (momentum 1) so that inference mode sees realistic scales.
    let r50 = Config {
        frames: 2,
        units: [3, 4, 6, 3],
        bottleneck: true,
        temporal_units: vec![[0, 2], [1, 3], [2, 5], [3, 2]],
        bn_momentum: 1.0,
        ..Config::tiny(3)
    };
    let r18 = Config {
        units: [2, 2, 2, 2],
        bottleneck: false,
        temporal_units: vec![[0, 1], [1, 1], [2, 1], [3, 1]],
        ..r50.clone()
    };
    for cfg in [&r18, &r50] {
        for stage in 0..4 {
            let units = cfg.units[stage] - 1;
            let e = stage_reconstruction_error(cfg, stage);
            // f32 round-off is amplified by each coupling's conditioning (BatchNorm with batch
            // statistics, gamma = 1 at init): about 3e-7 after one unit, up to 5e-5 after five.
            let bound = if units == 1 { 1e-5 } else { 1e-4 };
            assert!(
                e <= bound,
                "{units} units of res{}: relative error {e}",
                stage + 2
            );
        }
    }
}

#[test]
fn temporal_unit_at_init_equals_the_2d_unit_on_a_constant_clip() {
    for bottleneck in [false, true] {
        let spec = BranchSpec {
            in_channels: 16,
            mid_channels: 4,
            out_channels: 16,
            stride: 1,
            bottleneck,
            temporal: true,
        };
        let dev = Device::Cpu;
        let vm_t = VarMap::new();
        let temporal = ResBlock::new(
            spec,
            0.1,
            1e-5,
            VarBuilder::from_varmap(&vm_t, DType::F32, &dev),
        )
        .unwrap();
        let vm_s = VarMap::new();
        let spatial_spec = BranchSpec {
            temporal: false,
            ..spec
        };
        let spatial = ResBlock::new(
            spatial_spec,
            0.1,
            1e-5,
            VarBuilder::from_varmap(&vm_s, DType::F32, &dev),
        )
        .unwrap();
        // Give the 2-D unit the temporal unit's weights, its conv1 being the sum of the taps.
        let t_vars = vm_t.data().lock().unwrap();
        for (name, var) in vm_s.data().lock().unwrap().iter() {
            let src = t_vars[name].as_tensor();
            let value = if name == "conv1.weight" {
                src.sum(2).unwrap()
            } else {
                src.clone()
            };
            var.set(&value).unwrap();
        }
        let taps = t_vars["conv1.weight"].as_tensor();
        assert!(rel_err(&taps.i((.., .., 0)).unwrap(), &taps.i((.., .., 2)).unwrap()) < 1e-7);

        let (b, t) = (2, 5);
        let frame = wave(&[b, 1, 16, 8, 8], 0.417);
        let clip = frame
            .repeat((1, t, 1, 1, 1))
            .unwrap()
            .reshape((b * t, 16, 8, 8))
            .unwrap();
        let yt = temporal
            .forward(&clip, None, &mut Ctx::new(t, BnMode::Eval))
            .unwrap();
        let ys = spatial
            .forward(&clip, None, &mut Ctx::new(t, BnMode::Eval))
            .unwrap();
        let (yt, ys) = (
            yt.reshape((b, t, 16, 8, 8)).unwrap(),
            ys.reshape((b, t, 16, 8, 8)).unwrap(),
        );
        // Interior frames see all three taps; the zero padding drops one at either end.
        let inner = 1..t - 1;
        let e = rel_err(
            &yt.i((.., inner.clone())).unwrap(),
            &ys.i((.., inner)).unwrap(),
        );
        assert!(
            e <= 1e-5,
            "bottleneck {bottleneck}: interior frames differ by {e}"
        );
        let edge = rel_err(&yt.i((.., 0)).unwrap(), &ys.i((.., 0)).unwrap());
        assert!(edge > 1e-3, "the first frame should see the zero padding");
    }
}

#[test]
fn motion_feeds_appearance_only_through_the_links() {
    let linked = Config {
        frames: 2,
        ..Config::tiny(4)
    };
    let vm = VarMap::new();
    let model = StResNet::new(
        &linked,
        VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu),
    )
    .unwrap();
    // The same weights without links.
    let unlinked_cfg = Config {
        links: false,
        ..linked.clone()
    };
    let unlinked = StResNet::new(
        &unlinked_cfg,
        VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu),
    )
    .unwrap();

    let s = linked.input_size;
    let rgb = wave(&[2, 2, 3, s, s], 0.71);
    let other_rgb = wave(&[2, 2, 3, s, s], 0.23);
    let flow = wave(&[2, 2, linked.flow_channels(), s, s], 0.37);
    let zero_flow = flow.zeros_like().unwrap();

    let out = model.forward(&rgb, &flow, false).unwrap();
    let out_zero = model.forward(&rgb, &zero_flow, false).unwrap();
    let out_other = model.forward(&other_rgb, &flow, false).unwrap();
    // Links carry motion into appearance...
    assert!(rel_err(&out.appearance, &out_zero.appearance) > 1e-3);
    // ...and nothing flows back: motion ignores the RGB input entirely.
    assert_eq!(norm(&(&out.motion - &out_other.motion).unwrap()), 0.0);

    // Without the links, appearance ignores the flow entirely, and with flow zeroed the
    // linked and unlinked appearance streams differ only by what the links add.
    let plain = unlinked.forward(&rgb, &flow, false).unwrap();
    let plain_zero = unlinked.forward(&rgb, &zero_flow, false).unwrap();
    assert_eq!(
        norm(&(&plain.appearance - &plain_zero.appearance).unwrap()),
        0.0
    );
    assert_eq!(norm(&(&plain.motion - &out.motion).unwrap()), 0.0);
    assert!(rel_err(&plain.appearance, &out.appearance) > 1e-3);
}

#[test]
fn temporal_conv_matches_per_frame_reference_with_distinct_taps() {
    use candle_core::Module;
    use revstream::model::conv::Conv2d;
    use revstream::model::temporal::TemporalConv;
    use revstream::ops::conv::ConvConfig;
    let (b, t, c, o, side) = (2, 4, 3, 5, 6);
    let cfg = ConvConfig::square(3, 1, 1);
    let weight = wave(&[o, c, 3, 3, 3], 0.91);
    let conv = TemporalConv::from_weight(weight.clone(), cfg);
    let x = wave(&[b * t, c, side, side], 0.53);
    let y = conv
        .forward(&x, t)
        .unwrap()
        .reshape((b, t, o, side, side))
        .unwrap();
    let clips = x.reshape((b, t, c, side, side)).unwrap();
    for clip in 0..b {
        for frame in 0..t {
            // y_t = sum_k W_k * x_{t - 1 + k}, frames outside the clip being zero.
            let mut expect = Tensor::zeros((1, o, side, side), DType::F32, &Device::Cpu).unwrap();
            for k in 0..3 {
                let Some(src) = (frame + k).checked_sub(1).filter(|&s| s < t) else {
                    continue;
                };
                let w = weight.i((.., .., k)).unwrap().contiguous().unwrap();
                let xf = clips.i((clip, src)).unwrap().unsqueeze(0).unwrap();
                let yk = Conv2d::from_weights(w, None, cfg).forward(&xf).unwrap();
                expect = (expect + yk).unwrap();
            }
            let got = y.i((clip, frame)).unwrap().unsqueeze(0).unwrap();
            let e = rel_err(&got, &expect);
            assert!(e <= 1e-6, "clip {clip} frame {frame}: {e}");
        }
    }
}
