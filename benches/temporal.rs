//! Ways to compute the temporal (3 x kh x kw) convolution with 2-D convolutions, forward and
//! backward: channel-stacked taps in one Conv2d (what `TemporalConv` does), three per-tap
//! Conv2d shifted in time and summed, and, for 1x1 kernels, a (3, 1) Conv2d over (B, C, T, H*W).
//!
//! `cargo bench --profile dev --bench temporal`

use std::time::Instant;

use candle_core::{DType, Device, Module, Result, Tensor, Var};
use candle_nn::{VarBuilder, VarMap};
use revstream::model::conv::Conv2d;
use revstream::model::temporal::TemporalConv;
use revstream::ops::conv::ConvConfig;

const REPS: usize = 7;

/// Median seconds of `f` (forward and backward) over `REPS` runs after a warm-up.
fn time(f: &dyn Fn() -> Result<Tensor>) -> Result<(f64, Tensor)> {
    let out = f()?;
    let mut times = Vec::with_capacity(REPS);
    for _ in 0..REPS {
        let start = Instant::now();
        let y = f()?;
        y.sum_all()?.backward()?;
        times.push(start.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    Ok((times[REPS / 2], out))
}

/// `y_t = sum_k W_k x_{t - 1 + k}`: each tap's convolution over all frames, shifted and summed.
fn shifted_sum(x: &Tensor, weight: &Tensor, cfg: ConvConfig, b: usize, t: usize) -> Result<Tensor> {
    let mut sum: Option<Tensor> = None;
    for k in 0..3 {
        let w = weight.narrow(2, k, 1)?.squeeze(2)?.contiguous()?;
        let z = Conv2d::from_weights(w, None, cfg).forward(x)?;
        let (n, c, h, wd) = z.dims4()?;
        let z = z.reshape((b, t, c, h, wd))?.pad_with_zeros(1, 1, 1)?;
        // Output frame t reads input frame t - 1 + k, at padded index t + k.
        let z = z.narrow(1, k, t)?.reshape((n, c, h, wd))?;
        sum = Some(match sum {
            Some(s) => (s + z)?,
            None => z,
        });
    }
    sum.ok_or_else(|| candle_core::Error::Msg("no taps".into()))
}

/// For 1x1 kernels: a (3, 1) Conv2d over the clip laid out (B, C, T, H * W).
fn time_major(x: &Tensor, weight: &Tensor, b: usize, t: usize) -> Result<Tensor> {
    let (n, c, h, w) = x.dims4()?;
    let (out, cin, kt, _, _) = weight.dims5()?;
    let xt = x.reshape((b, t, c, h * w))?.transpose(1, 2)?.contiguous()?;
    let cfg = ConvConfig {
        kernel: (3, 1),
        stride: (1, 1),
        padding: (1, 0),
        groups: 1,
    };
    let y = Conv2d::from_weights(weight.reshape((out, cin, kt, 1))?, None, cfg).forward(&xt)?;
    y.transpose(1, 2)?.contiguous()?.reshape((n, out, h, w))
}

fn main() -> Result<()> {
    let dev = Device::Cpu;
    let (b, t, c, side) = (2, 4, 32, 16);
    println!(
        "temporal conv, {b} clips x {t} frames, {c} -> {c} channels, {side}x{side}; forward + backward, CPU"
    );
    println!(
        "{:>7} {:>12} {:>12} {:>12} {:>9}",
        "kernel", "stacked s", "shifted s", "time-major s", "max diff"
    );
    for k in [1, 3] {
        let cfg = ConvConfig::square(k, 1, k / 2);
        let vm = VarMap::new();
        let conv = TemporalConv::new(c, c, cfg, VarBuilder::from_varmap(&vm, DType::F32, &dev))?;
        // Distinct taps, so that a wrong shift would show in the difference.
        let weight = Var::randn(0f32, 0.1, conv.weight().shape(), &dev)?;
        let stacked = TemporalConv::from_weight(weight.as_tensor().clone(), cfg);
        let x = Var::randn(0f32, 1.0, (b * t, c, side, side), &dev)?;
        let (ts, ys) = time(&|| stacked.forward(&x, t))?;
        let (tf, yf) = time(&|| shifted_sum(&x, &weight, cfg, b, t))?;
        let mut diff = (&ys - &yf)?.abs()?.max_all()?.to_scalar::<f32>()?;
        let tm = if k == 1 {
            let (tm, ym) = time(&|| time_major(&x, &weight, b, t))?;
            diff = diff.max((&ys - &ym)?.abs()?.max_all()?.to_scalar::<f32>()?);
            format!("{tm:.4}")
        } else {
            "-".into()
        };
        println!("{:>5}x{k} {ts:>12.4} {tf:>12.4} {tm:>12} {diff:>9.1e}", k);
    }
    Ok(())
}
