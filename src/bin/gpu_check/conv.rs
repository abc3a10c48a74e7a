//! The `conv` section: the model's convolution op on the GPU (cuDNN with an algorithm
//! search when built with feature `cudnn`) against our CPU op in f32, and its speed
//! against candle's stock CUDA op in the same run; `scripts/peers/torch_conv.py` times
//! PyTorch/cuDNN on the shapes this section writes.

use std::time::Instant;

use candle_core::{DType, Device, Tensor, Var};
use revstream::ops::conv::{benchmark_cases, conv2d, conv2d_grads, conv2d_stock};
use serde_json::{Value, json};

use crate::rel_error;

/// Seconds per call of `f` on `device`: two warm-up calls (cuDNN's algorithm search runs
/// in the first), then the mean of `reps`.
fn time(
    device: &Device,
    reps: usize,
    mut f: impl FnMut() -> anyhow::Result<()>,
) -> anyhow::Result<f64> {
    f()?;
    f()?;
    device.synchronize()?;
    let started = Instant::now();
    for _ in 0..reps {
        f()?;
    }
    device.synchronize()?;
    Ok(started.elapsed().as_secs_f64() / reps as f64)
}

/// Per shape: our op's GPU output and both gradients against the CPU op (f32 inputs,
/// f32 and bf16 on the GPU), and forward / forward+both-gradients times of our op and of
/// candle's stock op (gradients through autograd, as training would get them).
pub fn conv(gpu: Option<&Device>) -> anyhow::Result<Value> {
    let shapes: Vec<Value> = benchmark_cases()
        .iter()
        .map(|c| {
            json!({ "name": c.name, "x": [c.x.0, c.x.1, c.x.2, c.x.3], "c_out": c.c_out,
                "kernel": [c.cfg.kernel.0, c.cfg.kernel.1], "stride": [c.cfg.stride.0, c.cfg.stride.1],
                "padding": [c.cfg.padding.0, c.cfg.padding.1] })
        })
        .collect();
    let Some(gpu) = gpu else {
        return Ok(json!({ "gpu": "skipped", "shapes": shapes }));
    };
    let ours = if cfg!(feature = "cudnn") {
        "cudnn (algorithm search)"
    } else {
        "candle stock (build without feature cudnn)"
    };
    let mut rows = Vec::new();
    for c in benchmark_cases() {
        let cpu = Device::Cpu;
        let x = Tensor::randn(0f32, 1.0, c.x, &cpu)?;
        let (kh, kw) = c.cfg.kernel;
        let fan_in = (c.x.1 * kh * kw) as f32;
        let w = (Tensor::randn(0f32, 1.0, (c.c_out, c.x.1, kh, kw), &cpu)? / fan_in.sqrt() as f64)?;
        let y = conv2d(&x, &w, &c.cfg)?;
        let dy = Tensor::randn(0f32, 1.0, y.dims(), &cpu)?;
        let (dx, dw) = conv2d_grads(&x, &w, &dy, &c.cfg)?;
        let mut row = json!({ "name": c.name });
        for (name, dtype) in [("f32", DType::F32), ("bf16", DType::BF16)] {
            let on =
                |t: &Tensor| -> anyhow::Result<Tensor> { Ok(t.to_device(gpu)?.to_dtype(dtype)?) };
            let (gx, gw, gdy) = (on(&x)?, on(&w)?, on(&dy)?);
            let gy = conv2d(&gx, &gw, &c.cfg)?;
            row[format!("{name}_rel_error_y")] = json!(rel_error(&y, &gy)?);
            match conv2d_grads(&gx, &gw, &gdy, &c.cfg) {
                Ok((gdx, gdw)) => {
                    row[format!("{name}_rel_error_dx")] = json!(rel_error(&dx, &gdx)?);
                    row[format!("{name}_rel_error_dw")] = json!(rel_error(&dw, &gdw)?);
                    let fwd_bwd = time(gpu, 10, || {
                        let _ = conv2d(&gx, &gw, &c.cfg)?;
                        let _ = conv2d_grads(&gx, &gw, &gdy, &c.cfg)?;
                        Ok(())
                    })?;
                    row[format!("{name}_ours_fwd_bwd_ms")] = json!(fwd_bwd * 1e3);
                }
                Err(e) => row[format!("{name}_grads")] = json!(e.to_string()),
            }
            let fwd = time(gpu, 10, || {
                let _ = conv2d(&gx, &gw, &c.cfg)?;
                Ok(())
            })?;
            row[format!("{name}_ours_fwd_ms")] = json!(fwd * 1e3);
            let stock_fwd = time(gpu, 10, || {
                let _ = conv2d_stock(&gx, &gw, &c.cfg)?;
                Ok(())
            })?;
            row[format!("{name}_stock_fwd_ms")] = json!(stock_fwd * 1e3);
            let (vx, vw) = (Var::from_tensor(&gx)?, Var::from_tensor(&gw)?);
            let stock_fwd_bwd = time(gpu, 3, || {
                let y = conv2d_stock(vx.as_tensor(), vw.as_tensor(), &c.cfg)?;
                let _ = (y * &gdy)?.sum_all()?.backward()?;
                Ok(())
            })?;
            row[format!("{name}_stock_fwd_bwd_ms")] = json!(stock_fwd_bwd * 1e3);
        }
        eprintln!("gpu-check: conv {} done", c.name);
        rows.push(row);
    }
    Ok(json!({ "ours": ours, "shapes": shapes, "runs": rows }))
}
