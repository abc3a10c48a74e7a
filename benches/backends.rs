//! candle vs ONNX Runtime: forward time of the two-stream network on the CPU, both
//! backends on the same weights and inputs in one run, for the tiny (default) config
//! and the `r18` config with random weights. Prints ms per forward and the ratio, and,
//! for the network alone, candle's eval forward with BatchNorm folded into the
//! convolutions (as served) against the unfolded one (BatchNorm as separate ops).
//!
//! `cargo bench --features ort --bench backends [-- ITERS]` (ITERS per case, default 5;
//! r18 runs a third of them, at least 2). Needs libonnxruntime: scripts/fetch-ort.sh.

#[cfg(feature = "ort")]
fn main() -> anyhow::Result<()> {
    use std::time::Instant;

    use candle_core::{DType, Device, Tensor};
    use candle_nn::{VarBuilder, VarMap};
    use revstream::artifact::{ModelSpec, PreprocessingSpec};
    use revstream::backend::Backend;
    use revstream::backend::candle::CandleBackend;
    use revstream::backend::ort::{OrtBackend, OrtOptions, Provider};
    use revstream::model::norm::BnMode;
    use revstream::model::{Config, StResNet};

    revstream::alloc::keep_freed_memory();
    let iters: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(5);
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let fetched = std::process::Command::new(root.join("scripts/fetch-ort.sh")).output()?;
    anyhow::ensure!(fetched.status.success(), "scripts/fetch-ort.sh failed");
    let library = std::path::PathBuf::from(String::from_utf8(fetched.stdout)?.trim());
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());

    let time = |backend: &mut dyn Backend, rgb: &Tensor, flow: &Tensor, n: usize| {
        backend.predict(rgb, flow)?;
        let start = Instant::now();
        for _ in 0..n {
            backend.predict(rgb, flow)?;
        }
        anyhow::Ok(start.elapsed().as_secs_f64() * 1e3 / n as f64)
    };

    println!("backend forward on the CPU, {threads} threads, ms per forward (after one warm-up)");
    for (label, cfg, batch, n) in [
        ("tiny", Config::tiny(10), 8, iters),
        ("r18", Config::r18(101), 1, (iters / 3).max(2)),
    ] {
        let dir = tempfile::tempdir()?;
        let varmap = VarMap::new();
        StResNet::new(
            &cfg,
            VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu),
        )?;
        varmap.save(dir.path().join("model.safetensors"))?;
        ModelSpec {
            architecture: cfg.clone(),
            preprocessing: PreprocessingSpec::default(),
            labels: (0..cfg.num_classes).map(|i| i.to_string()).collect(),
        }
        .save(dir.path())?;
        let (t, s) = (cfg.frames, cfg.input_size);
        let rgb = Tensor::randn(0f32, 1.0, (batch, t, 3, s, s), &Device::Cpu)?;
        let flow = Tensor::randn(
            0f32,
            0.5,
            (batch, t, cfg.flow_channels(), s, s),
            &Device::Cpu,
        )?;
        let mut candle = CandleBackend::load(
            &cfg,
            &dir.path().join("model.safetensors"),
            Device::Cpu,
            batch,
        )?;
        let options = OrtOptions {
            library: Some(library.clone()),
            provider: Provider::Cpu,
            intra_threads: Some(threads),
        };
        let mut ort = OrtBackend::load_dir(dir.path(), &options, batch)?;
        let candle_ms = time(&mut candle, &rgb, &flow, n)?;
        let ort_ms = time(&mut ort, &rgb, &flow, n)?;
        println!(
            "{label:>5} batch {batch}: candle {candle_ms:9.1} ms  ort {ort_ms:9.1} ms  \
             candle/ort {:.2}x  ({n} iterations each)",
            candle_ms / ort_ms
        );
        let tensors =
            candle_core::safetensors::load(dir.path().join("model.safetensors"), &Device::Cpu)?;
        let net = StResNet::new(
            &cfg,
            VarBuilder::from_tensors(tensors, DType::F32, &Device::Cpu),
        )?;
        let forward_ms = |mode: fn() -> BnMode<'static>| {
            net.forward_with(&rgb, &flow, mode())?;
            let start = Instant::now();
            for _ in 0..n {
                net.forward_with(&rgb, &flow, mode())?;
            }
            anyhow::Ok(start.elapsed().as_secs_f64() * 1e3 / n as f64)
        };
        let unfolded_ms = forward_ms(|| BnMode::EvalUnfolded)?;
        let folded_ms = forward_ms(|| BnMode::Eval)?;
        println!(
            "{label:>5} batch {batch}: network forward, BatchNorm folded {folded_ms:9.1} ms  \
             unfolded {unfolded_ms:9.1} ms  folded/unfolded {:.2}x",
            folded_ms / unfolded_ms
        );
    }
    Ok(())
}

#[cfg(not(feature = "ort"))]
fn main() {
    eprintln!("benches/backends.rs compares with ONNX Runtime: run with --features ort");
}
