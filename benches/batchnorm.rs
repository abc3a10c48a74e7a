//! Training-mode BatchNorm + ReLU, forward and forward + backward: the fused CPU op
//! (`bn_train`, what the model runs) against the same layer composed from candle's ops
//! (what runs on other devices and dtypes), on the default model's and ResNet-50's shapes.
//! The backward is seeded with a given output gradient, as reversible backpropagation does.
//!
//! `cargo bench --bench batchnorm`

use std::time::Instant;

use candle_core::{Device, Result, Tensor, Var};
use revstream::ops::bn_train::batch_norm_train;
use revstream::train::seed;

const REPS: usize = 9;
const EPS: f64 = 1e-5;

/// Median milliseconds of `f` over `REPS` runs after a warm-up.
fn time(f: &dyn Fn() -> Result<()>) -> Result<f64> {
    f()?;
    let mut times = Vec::with_capacity(REPS);
    for _ in 0..REPS {
        let start = Instant::now();
        f()?;
        times.push(start.elapsed().as_secs_f64() * 1e3);
    }
    times.sort_by(f64::total_cmp);
    Ok(times[REPS / 2])
}

/// The layer from candle's ops, as `BatchNorm::forward_act` composes it off the CPU.
fn composed(x: &Tensor, weight: &Tensor, bias: &Tensor) -> Result<Tensor> {
    let c = x.dim(1)?;
    let mean = x.mean_keepdim((0, 2, 3))?;
    let centred = x.broadcast_sub(&mean)?;
    let var = centred.sqr()?.mean_keepdim((0, 2, 3))?;
    let scale = (var + EPS)?.sqrt()?.recip()?;
    let y = centred
        .broadcast_mul(&scale.broadcast_mul(&weight.reshape((1, c, 1, 1))?)?)?
        .broadcast_add(&bias.reshape((1, c, 1, 1))?)?;
    y.relu()
}

fn fused(x: &Tensor, weight: &Tensor, bias: &Tensor) -> Result<Tensor> {
    Ok(batch_norm_train(x, weight, bias, EPS, true)?.0)
}

fn main() -> Result<()> {
    revstream::alloc::keep_freed_memory();
    let dev = Device::Cpu;
    println!(
        "| input | fused fwd | composed fwd | ratio | fused fwd+bwd | composed fwd+bwd | ratio | threads |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    let shapes = [
        (128, 8, 32, 32),
        (128, 16, 16, 16),
        (128, 32, 8, 8),
        (8, 64, 56, 56),
        (8, 256, 14, 14),
    ];
    for shape in shapes {
        let c = shape.1;
        let x = Var::from_tensor(&Tensor::randn(0.5f32, 2.0, shape, &dev)?)?;
        let weight = Var::from_tensor(&Tensor::randn(1f32, 0.2, c, &dev)?)?;
        let bias = Var::from_tensor(&Tensor::randn(0f32, 0.2, c, &dev)?)?;
        let dy = Tensor::randn(0f32, 1.0, shape, &dev)?;
        let (x, weight, bias, dy) = (&x, &weight, &bias, &dy);
        let layer = |f: fn(&Tensor, &Tensor, &Tensor) -> Result<Tensor>, backward: bool| {
            move || -> Result<()> {
                let y = f(x.as_tensor(), weight.as_tensor(), bias.as_tensor())?;
                if backward {
                    seed::dot(&y, dy)?.backward()?;
                }
                Ok(())
            }
        };
        let ff = time(&layer(fused, false))?;
        let cf = time(&layer(composed, false))?;
        let fb = time(&layer(fused, true))?;
        let cb = time(&layer(composed, true))?;
        println!(
            "| {shape:?} | {ff:.2} ms | {cf:.2} ms | {:.1}x | {fb:.2} ms | {cb:.2} ms | {:.1}x | {} |",
            cf / ff,
            cb / fb,
            rayon::current_num_threads()
        );
    }
    Ok(())
}
