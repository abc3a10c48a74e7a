//! revstream-gpu-check: the GPU checks of `scripts/gpu-check.sh`, in one binary built
//! beforehand (`make gpu-bundle`) for a GPU machine without a Rust toolchain.
//!
//! Each section writes `OUT/<section>.json`; a section that needs a GPU records
//! `"skipped"` when this build has no CUDA backend or no device answers, and the CPU
//! halves still run. The script prints the table from these files.

mod conv;

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use clap::Parser;
use revstream::artifact::ModelSpec;
use revstream::backend::device;
use revstream::flow::synth::{Motion, pair};
use revstream::flow::{Flow, FlowMethod, Tvl1Params, tvl1, tvl1_batch};
use revstream::model::{Config, StResNet, StreamLogits};
use revstream::train::checkpoint;
use revstream::train::revprop::{Step, forward_backward, plain_forward_backward};
use serde_json::{Value, json};

/// GPU vs CPU results and GPU timings for revstream.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Folder for the JSON results.
    #[arg(long)]
    out: PathBuf,
    /// The served model to compare on both devices.
    #[arg(long, default_value = "models/default")]
    model_dir: PathBuf,
    /// Clips per r50 forward timing (T = 4, so 8/16/32 clips are 32/64/128 frames per stream).
    #[arg(long, value_delimiter = ',', default_value = "8,16,32")]
    clips: Vec<usize>,
    /// Pairs per batched TV-L1 call for the GPU flow timing.
    #[arg(long, value_delimiter = ',', default_value = "64,128,256")]
    flow_batches: Vec<usize>,
    /// Reversible units per stream for the training-step comparison.
    #[arg(long, value_delimiter = ',', default_value = "8,16,32,64")]
    units: Vec<usize>,
    /// Only these sections (parity, conv, forward, flow, train); default all.
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    std::fs::create_dir_all(&args.out).with_context(|| format!("creating {:?}", args.out))?;
    let gpu = gpu();
    let gpu_note = match &gpu {
        Some(_) => "cuda:0".to_string(),
        None if !candle_core::utils::cuda_is_available() => {
            "skipped: this build has no CUDA backend (make gpu-bundle builds one)".to_string()
        }
        None => "skipped: no CUDA device answered".to_string(),
    };
    write(&args.out, "device", &json!({ "gpu": gpu_note }))?;
    eprintln!("gpu-check: GPU {gpu_note}");
    let wanted = |s: &str| args.only.is_empty() || args.only.iter().any(|o| o == s);
    if wanted("parity") {
        let v = parity(&args.model_dir, gpu.as_ref())?;
        write(&args.out, "parity", &v)?;
    }
    if wanted("conv") {
        let v = conv::conv(gpu.as_ref())?;
        write(&args.out, "conv", &v)?;
    }
    if wanted("forward") {
        let v = forward_speed(&args.clips, gpu.as_ref())?;
        write(&args.out, "forward", &v)?;
    }
    if wanted("flow") {
        let v = flow(&args.flow_batches, gpu.as_ref())?;
        write(&args.out, "flow", &v)?;
    }
    if wanted("train") {
        let v = train_steps(&args.units, gpu.as_ref())?;
        write(&args.out, "train", &v)?;
    }
    Ok(())
}

/// The first CUDA device, if this build can use one.
fn gpu() -> Option<Device> {
    if !candle_core::utils::cuda_is_available() {
        return None;
    }
    device::parse("cuda:0").ok()
}

fn write(dir: &Path, name: &str, v: &Value) -> anyhow::Result<()> {
    let path = dir.join(format!("{name}.json"));
    std::fs::write(&path, serde_json::to_string_pretty(v)?)
        .with_context(|| format!("writing {path:?}"))?;
    eprintln!("gpu-check: {name} done");
    Ok(())
}

/// ‖a − b‖ / ‖a‖ over all elements, in f32.
fn rel_error(a: &Tensor, b: &Tensor) -> anyhow::Result<f64> {
    let a = a.to_device(&Device::Cpu)?.to_dtype(DType::F32)?;
    let b = b.to_device(&Device::Cpu)?.to_dtype(DType::F32)?;
    let num = (&a - &b)?.sqr()?.sum_all()?.to_scalar::<f32>()?;
    let den = a.sqr()?.sum_all()?.to_scalar::<f32>()?;
    Ok((f64::from(num) / f64::from(den).max(1e-30)).sqrt())
}

/// A network's tensors by name, on `device` (for building the same weights elsewhere).
fn tensors_on(
    vars: &VarMap,
    device: &Device,
) -> anyhow::Result<std::collections::HashMap<String, Tensor>> {
    let data = vars
        .data()
        .lock()
        .map_err(|_| anyhow::anyhow!("poisoned var map"))?;
    data.iter()
        .map(|(k, v)| Ok((k.clone(), v.as_tensor().to_device(device)?)))
        .collect()
}

/// Random inputs of `clips` samples for `cfg`, made on the CPU (so every device gets the same).
fn inputs(cfg: &Config, clips: usize) -> anyhow::Result<(Tensor, Tensor)> {
    let s = cfg.input_size;
    let rgb = Tensor::randn(0f32, 1.0, (clips, cfg.frames, 3, s, s), &Device::Cpu)?;
    let flow = Tensor::randn(
        0f32,
        1.0,
        (clips, cfg.frames, cfg.flow_channels(), s, s),
        &Device::Cpu,
    )?;
    Ok((rgb, flow))
}

/// Fused logits of `model` on inputs moved to `device` in `dtype`.
fn logits(
    model: &StResNet,
    rgb: &Tensor,
    flow: &Tensor,
    device: &Device,
    dtype: DType,
) -> anyhow::Result<Tensor> {
    let rgb = rgb.to_device(device)?.to_dtype(dtype)?;
    let flow = flow.to_device(device)?.to_dtype(dtype)?;
    Ok(model.forward(&rgb, &flow, false)?.fused)
}

/// The default model and r50 with random weights: CPU f32 against the GPU in f32 and bf16.
fn parity(model_dir: &Path, gpu: Option<&Device>) -> anyhow::Result<Value> {
    let spec = ModelSpec::load(model_dir)?;
    let weights =
        candle_core::safetensors::load(model_dir.join("model.safetensors"), &Device::Cpu)?;
    let default = compare(
        &spec.architecture,
        |device, dtype| {
            let t = weights
                .iter()
                .map(|(k, v)| Ok((k.clone(), v.to_device(device)?)))
                .collect::<anyhow::Result<_>>()?;
            Ok(StResNet::new(
                &spec.architecture,
                VarBuilder::from_tensors(t, dtype, device),
            )?)
        },
        4,
        gpu,
    )?;
    let r50 = Config::r50(101);
    let vars = VarMap::new();
    let _ = StResNet::new(
        &r50,
        VarBuilder::from_varmap(&vars, DType::F32, &Device::Cpu),
    )?;
    checkpoint::seeded_init(&vars, 7)?;
    let r50_result = compare(
        &r50,
        |device, dtype| {
            Ok(StResNet::new(
                &r50,
                VarBuilder::from_tensors(tensors_on(&vars, device)?, dtype, device),
            )?)
        },
        1,
        gpu,
    )?;
    Ok(json!({ "default": default, "r50_random": r50_result }))
}

/// CPU f32 logits (timed) and, with a GPU, the relative error of GPU f32 and bf16.
fn compare(
    cfg: &Config,
    build: impl Fn(&Device, DType) -> anyhow::Result<StResNet>,
    clips: usize,
    gpu: Option<&Device>,
) -> anyhow::Result<Value> {
    let (rgb, flow) = inputs(cfg, clips)?;
    let cpu_model = build(&Device::Cpu, DType::F32)?;
    let started = Instant::now();
    let reference = logits(&cpu_model, &rgb, &flow, &Device::Cpu, DType::F32)?;
    let cpu_s = started.elapsed().as_secs_f64();
    let mut v = json!({ "clips": clips, "frames": cfg.frames, "cpu_f32_forward_s": cpu_s });
    match gpu {
        None => v["gpu"] = json!("skipped"),
        Some(gpu) => {
            for (name, dtype) in [("f32", DType::F32), ("bf16", DType::BF16)] {
                let model = build(gpu, dtype)?;
                let out = logits(&model, &rgb, &flow, gpu, dtype)?;
                v[format!("rel_error_{name}")] = json!(rel_error(&reference, &out)?);
            }
        }
    }
    Ok(v)
}

/// Frames per stream per second of the r50 two-stream forward (T = 4), f32 and bf16.
fn forward_speed(clips: &[usize], gpu: Option<&Device>) -> anyhow::Result<Value> {
    let Some(gpu) = gpu else {
        return Ok(json!({ "gpu": "skipped" }));
    };
    let cfg = Config {
        frames: 4,
        ..Config::r50(101)
    };
    let vars = VarMap::new();
    let _ = StResNet::new(&cfg, VarBuilder::from_varmap(&vars, DType::F32, gpu))?;
    let mut rows = Vec::new();
    for (name, dtype) in [("f32", DType::F32), ("bf16", DType::BF16)] {
        let model = StResNet::new(
            &cfg,
            VarBuilder::from_tensors(tensors_on(&vars, gpu)?, dtype, gpu),
        )?;
        for &b in clips {
            let (rgb, flow) = inputs(&cfg, b)?;
            let (rgb, flow) = (
                rgb.to_device(gpu)?.to_dtype(dtype)?,
                flow.to_device(gpu)?.to_dtype(dtype)?,
            );
            model.forward(&rgb, &flow, false)?; // warm-up
            gpu.synchronize()?;
            let reps = 5;
            let started = Instant::now();
            for _ in 0..reps {
                model.forward(&rgb, &flow, false)?;
            }
            gpu.synchronize()?;
            let s = started.elapsed().as_secs_f64() / reps as f64;
            let frames = b * cfg.frames;
            rows.push(
                json!({ "dtype": name, "clips": b, "frames_per_stream": frames,
                "ms": s * 1e3, "frames_per_s": frames as f64 / s }),
            );
        }
    }
    Ok(json!({ "config": "r50 two-stream, 224x224, T=4, L=10", "runs": rows }))
}

/// Mean EPE between two flows and each flow's EPE against ground truth.
fn flow(batches: &[usize], gpu: Option<&Device>) -> anyhow::Result<Value> {
    let (w, h) = (340, 256);
    let motions = [
        Motion::Translation { dx: 2.35, dy: -1.4 },
        Motion::Rotation { degrees: 3.0 },
        Motion::Zoom { factor: 1.04 },
        Motion::Smooth {
            amplitude: 4.0,
            seed: 3,
        },
    ];
    let gts: Vec<_> = motions
        .iter()
        .enumerate()
        .map(|(i, m)| pair(w, h, *m, i as u64 + 1).quantized())
        .collect();
    let prev: Vec<_> = gts.iter().map(|g| g.prev.clone()).collect();
    let next: Vec<_> = gts.iter().map(|g| g.next.clone()).collect();
    let mean = |xs: &[f64]| xs.iter().sum::<f64>() / xs.len() as f64;
    let mut parity = Vec::new();
    for preset in [FlowMethod::Fast, FlowMethod::Accurate] {
        let params = preset.params();
        let started = Instant::now();
        let cpu: Vec<Flow> = gts
            .iter()
            .map(|g| tvl1(&g.prev, &g.next, &params))
            .collect();
        let cpu_pairs_s = gts.len() as f64 / started.elapsed().as_secs_f64();
        let cpu_gt: Vec<f64> = cpu
            .iter()
            .zip(&gts)
            .map(|(f, g)| g.epe(f).unwrap_or(f64::NAN))
            .collect();
        let mut row = json!({ "preset": format!("{preset:?}").to_lowercase(),
            "cpu_solver_pairs_s": cpu_pairs_s, "cpu_solver_epe_vs_truth": mean(&cpu_gt) });
        // The tensor solver on the CPU device always runs: it is the same code as on the GPU.
        let devices: Vec<(&str, Device)> = match gpu {
            Some(g) => vec![("tensor_cpu", Device::Cpu), ("tensor_gpu", g.clone())],
            None => vec![("tensor_cpu", Device::Cpu)],
        };
        for (name, device) in devices {
            let flows = tvl1_batch(&prev, &next, &params, &device)?;
            let vs_cpu: Vec<f64> = flows
                .iter()
                .zip(&cpu)
                .map(|(a, b)| a.epe(b, None).unwrap_or(f64::NAN))
                .collect();
            let vs_gt: Vec<f64> = flows
                .iter()
                .zip(&gts)
                .map(|(f, g)| g.epe(f).unwrap_or(f64::NAN))
                .collect();
            row[format!("{name}_epe_vs_cpu_solver")] = json!(mean(&vs_cpu));
            row[format!("{name}_epe_vs_truth")] = json!(mean(&vs_gt));
        }
        if gpu.is_none() {
            row["tensor_gpu"] = json!("skipped");
        }
        parity.push(row);
    }
    let mut speed = Vec::new();
    if let Some(gpu) = gpu {
        let params = Tvl1Params::fast();
        for &b in batches {
            let bp: Vec<_> = (0..b).map(|i| prev[i % prev.len()].clone()).collect();
            let bn: Vec<_> = (0..b).map(|i| next[i % next.len()].clone()).collect();
            tvl1_batch(&bp, &bn, &params, gpu)?; // warm-up
            let reps = 3;
            let started = Instant::now();
            for _ in 0..reps {
                tvl1_batch(&bp, &bn, &params, gpu)?;
            }
            let s = started.elapsed().as_secs_f64() / reps as f64;
            speed.push(json!({ "batch": b, "ms": s * 1e3, "pairs_per_s": b as f64 / s }));
        }
    }
    Ok(
        json!({ "size": "340x256", "pairs": gts.len(), "parity": parity,
        "gpu_speed_fast": if gpu.is_some() { json!(speed) } else { json!("skipped") } }),
    )
}

/// A network with `per_stream` reversible units per stream (a quarter in each stage), as
/// benches/revmem.rs, wider and larger on a GPU.
fn train_config(per_stream: usize, on_gpu: bool) -> Config {
    let n = per_stream / 4;
    let base = Config::tiny(10);
    Config {
        input_size: if on_gpu { 112 } else { 32 },
        base_width: if on_gpu { 32 } else { 8 },
        frames: 2,
        units: [n + 1; 4],
        temporal_units: (0..4).map(|s| [s, n / 2 + 1]).collect(),
        ..base
    }
}

/// Step time (and on a GPU, peak device memory) of reversible vs plain training steps.
fn train_steps(units: &[usize], gpu: Option<&Device>) -> anyhow::Result<Value> {
    let (device, units, clips) = match gpu {
        Some(g) => (g.clone(), units.to_vec(), 8),
        // On the CPU only the two smallest depths, small and narrow: a sanity run.
        None => (Device::Cpu, units.iter().copied().take(2).collect(), 2),
    };
    let mut rows = Vec::new();
    for &u in &units {
        let cfg = train_config(u, gpu.is_some());
        let vars = VarMap::new();
        let model = StResNet::new(&cfg, VarBuilder::from_varmap(&vars, DType::F32, &device))?;
        let (rgb, flow) = inputs(&cfg, clips)?;
        let (rgb, flow) = (rgb.to_device(&device)?, flow.to_device(&device)?);
        let labels: Vec<u32> = (0..clips as u32).map(|i| i % 10).collect();
        let labels = Tensor::new(labels.as_slice(), &device)?;
        let loss = |l: &StreamLogits| {
            let ce = |x: &Tensor| candle_nn::loss::cross_entropy(x, &labels);
            (ce(&l.appearance)? + ce(&l.motion)?)? + ce(&l.fused)?
        };
        let mut row =
            json!({ "units": u, "clips": clips, "size": cfg.input_size, "width": cfg.base_width });
        for (name, reversible) in [("plain", false), ("reversible", true)] {
            let step = || -> candle_core::Result<Step> {
                if reversible {
                    forward_backward(&model, &rgb, &flow, false, loss)
                } else {
                    plain_forward_backward(&model, &rgb, &flow, false, loss)
                }
            };
            step()?; // warm-up
            device.synchronize()?;
            let meter = memory::Meter::start(&device)?;
            let started = Instant::now();
            let out = step()?;
            device.synchronize()?;
            let s = started.elapsed().as_secs_f64();
            drop(out);
            row[format!("{name}_s")] = json!(s);
            row[format!("{name}_peak_mb")] = match meter.stop()? {
                Some(bytes) => json!(bytes as f64 / (1 << 20) as f64),
                None => json!("gpu only"),
            };
        }
        rows.push(row);
    }
    Ok(json!({ "device": device::name(&device), "runs": rows }))
}

/// Peak device memory during a step: a thread samples the driver's free memory every
/// 0.2 ms; the peak is the largest use above the use when sampling started.
#[cfg(feature = "cuda")]
mod memory {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::thread::JoinHandle;
    use std::time::Duration;

    use candle_core::Device;

    /// A running sampler (none on the CPU).
    pub struct Meter(Option<(Arc<AtomicBool>, JoinHandle<anyhow::Result<usize>>)>);

    impl Meter {
        pub fn start(device: &Device) -> anyhow::Result<Meter> {
            let Device::Cuda(cuda) = device else {
                return Ok(Meter(None));
            };
            let ctx = cuda.cuda_stream().context().clone();
            let (free, total) = ctx.mem_get_info()?;
            let base = total - free;
            let stop = Arc::new(AtomicBool::new(false));
            let flag = Arc::clone(&stop);
            let handle = std::thread::spawn(move || -> anyhow::Result<usize> {
                let mut peak = base;
                while !flag.load(Ordering::Relaxed) {
                    let (free, total) = ctx.mem_get_info()?;
                    peak = peak.max(total - free);
                    std::thread::sleep(Duration::from_micros(200));
                }
                Ok(peak - base)
            });
            Ok(Meter(Some((stop, handle))))
        }

        pub fn stop(self) -> anyhow::Result<Option<usize>> {
            let Some((stop, handle)) = self.0 else {
                return Ok(None);
            };
            stop.store(true, Ordering::Relaxed);
            let peak = handle
                .join()
                .map_err(|_| anyhow::anyhow!("memory sampler panicked"))??;
            Ok(Some(peak))
        }
    }
}

/// Without CUDA there is no device memory to sample.
#[cfg(not(feature = "cuda"))]
mod memory {
    use candle_core::Device;

    /// Nothing to sample on the CPU.
    pub struct Meter;

    impl Meter {
        pub fn start(_device: &Device) -> anyhow::Result<Meter> {
            Ok(Meter)
        }

        pub fn stop(self) -> anyhow::Result<Option<usize>> {
            Ok(None)
        }
    }
}
