//! Flow quantisation, stacking, flipping and mean subtraction.

use revstream::flow::Flow;
use revstream::flow::encode::{
    DEFAULT_BOUND, dequantize, flip_horizontal, quantize, stack, subtract_mean,
};

fn ramp(w: usize, h: usize, scale: f32) -> Flow {
    let n = w * h;
    Flow {
        width: w,
        height: h,
        u: (0..n).map(|i| scale * ((i as f32 * 0.37).sin())).collect(),
        v: (0..n)
            .map(|i| scale * ((i as f32 * 0.11).cos()) - 1.5)
            .collect(),
    }
}

#[test]
fn quantisation_round_trip_within_half_a_step() {
    let bound = DEFAULT_BOUND;
    let flow = ramp(17, 9, 19.0);
    let (x, y) = quantize(&flow, bound);
    let back = dequantize(&x, &y, 17, 9, bound).unwrap();
    // Rounding to the nearest of 256 levels over 2·bound: at most half a step off.
    let half_step = bound / 255.0 + 1e-5;
    for (a, b) in flow
        .u
        .iter()
        .chain(&flow.v)
        .zip(back.u.iter().chain(&back.v))
    {
        let clipped = a.clamp(-bound, bound);
        assert!((clipped - b).abs() <= half_step, "{a} -> {b}");
    }
}

#[test]
fn quantisation_clips_and_centres() {
    let flow = Flow {
        width: 4,
        height: 1,
        u: vec![-100.0, -20.0, 0.0, 35.0],
        v: vec![20.0, 10.0, -10.0, f32::INFINITY],
    };
    let (x, y) = quantize(&flow, 20.0);
    assert_eq!(x, vec![0, 0, 128, 255]);
    assert_eq!(y, vec![255, 191, 64, 255]);
    let back = dequantize(&x, &y, 4, 1, 20.0).unwrap();
    assert_eq!(back.u[0], -20.0);
    assert_eq!(back.u[3], 20.0);
    assert!(dequantize(&x, &y[..3], 4, 1, 20.0).is_err());
}

#[test]
fn stack_orders_channels_u1_v1_u2_v2() {
    let (a, b) = (ramp(5, 3, 2.0), ramp(5, 3, 4.0));
    let s = stack(&[a.clone(), b.clone()]).unwrap();
    assert_eq!((s.channels, s.width, s.height), (4, 5, 3));
    let plane = 15;
    assert_eq!(&s.data[..plane], &a.u[..]);
    assert_eq!(&s.data[plane..2 * plane], &a.v[..]);
    assert_eq!(&s.data[2 * plane..3 * plane], &b.u[..]);
    assert_eq!(&s.data[3 * plane..], &b.v[..]);
    assert!(stack(&[]).is_err());
    assert!(stack(&[a, ramp(3, 5, 1.0)]).is_err());
}

#[test]
fn flip_mirrors_and_negates_u_only() {
    let (w, h) = (6, 4);
    let flows = [ramp(w, h, 3.0), ramp(w, h, 5.0)];
    let original = stack(&flows).unwrap();
    let mut flipped = original.clone();
    flip_horizontal(&mut flipped);
    let plane = w * h;
    for c in 0..4 {
        for y in 0..h {
            for x in 0..w {
                let before = original.data[c * plane + y * w + x];
                let after = flipped.data[c * plane + y * w + (w - 1 - x)];
                let expected = if c % 2 == 0 { -before } else { before };
                assert_eq!(after, expected, "channel {c} ({x}, {y})");
            }
        }
    }
    flip_horizontal(&mut flipped);
    assert_eq!(flipped, original);
}

#[test]
fn mean_subtraction_zeroes_each_channel_mean() {
    let mut s = stack(&[ramp(8, 8, 3.0), ramp(8, 8, 1.0)]).unwrap();
    let before = s.clone();
    subtract_mean(&mut s);
    for (c, channel) in s.data.chunks_exact(64).enumerate() {
        let mean: f32 = channel.iter().sum::<f32>() / 64.0;
        assert!(mean.abs() < 1e-5, "channel {c} mean {mean}");
        // Differences between pixels are kept.
        let d0 = before.data[c * 64 + 5] - before.data[c * 64];
        assert!((channel[5] - channel[0] - d0).abs() < 1e-5);
    }
}
