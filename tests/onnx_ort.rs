//! The ONNX Runtime backend gives candle's scores on the same inputs; CUDA asked of a
//! CPU-only library is an error, not a silent CPU fallback.
#![cfg(feature = "ort")]

mod onnx_common;

use std::path::Path;

use candle_core::Device;
use revstream::artifact::ModelSpec;
use revstream::backend::Backend;
use revstream::backend::candle::CandleBackend;
use revstream::backend::ort::{OrtBackend, OrtOptions, Provider};
use revstream::model::Config;

/// Largest difference allowed between the backends' fused probabilities and logits (f32;
/// folding BatchNorm and ONNX Runtime's kernels only change the last bits).
const TOLERANCE: f32 = 1e-4;

fn options(provider: Provider) -> OrtOptions {
    OrtOptions {
        library: Some(onnx_common::ort_library()),
        provider,
        intra_threads: Some(2),
    }
}

/// Compares both backends on `dir` for several batch sizes; returns the largest difference.
fn compare(dir: &Path, seed: u64) -> f32 {
    let spec = ModelSpec::load(dir).unwrap();
    let cfg = &spec.architecture;
    let mut candle =
        CandleBackend::load(cfg, &dir.join("model.safetensors"), Device::Cpu, 8).unwrap();
    let mut ort = OrtBackend::load_dir(dir, &options(Provider::Cpu), 8).unwrap();
    assert_eq!((ort.name(), ort.device().as_str()), ("ort", "cpu"));
    let mut worst: f32 = 0.0;
    for batch in [1, 4] {
        let (rgb, flow) = onnx_common::inputs(cfg, batch, seed + batch as u64);
        let expected = candle.predict(&rgb, &flow).unwrap();
        let got = ort.predict(&rgb, &flow).unwrap();
        assert_eq!(got.len(), batch);
        for row in &got {
            let sum: f32 = row.iter().sum();
            assert!((sum - 1.0).abs() < 1e-5, "probabilities sum to {sum}");
        }
        worst = worst.max(onnx_common::max_abs_diff(&expected, &got));
    }
    worst
}

#[test]
fn ort_and_candle_give_the_same_fused_scores_on_a_tiny_model() {
    let dir = tempfile::tempdir().unwrap();
    onnx_common::write_model(dir.path(), &Config::tiny(6), 21);
    let diff = compare(dir.path(), 100);
    eprintln!("tiny: max |candle - ort| over fused probabilities = {diff:e}");
    assert!(diff <= TOLERANCE, "max |candle - ort| = {diff}");
}

#[test]
fn ort_serves_an_exported_model_file_and_reports_per_stream_scores() {
    let cfg = Config::tiny(3);
    let dir = tempfile::tempdir().unwrap();
    onnx_common::write_model(dir.path(), &cfg, 5);
    revstream::onnx::export_dir(dir.path(), None).unwrap();
    let mut ort = OrtBackend::load_dir(dir.path(), &options(Provider::Cpu), 4).unwrap();
    let (rgb, flow) = onnx_common::inputs(&cfg, 2, 9);
    let scores = ort.scores(&rgb, &flow).unwrap();
    let [wa, wm] = cfg.fusion_weights;
    for i in 0..2 {
        for k in 0..3 {
            let fused = wa as f32 * scores.appearance[i][k] + wm as f32 * scores.motion[i][k];
            assert!((fused - scores.fused[i][k]).abs() < 1e-5);
        }
    }
}

#[test]
fn the_default_model_matches_when_present() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/default");
    if !dir.join("model.safetensors").is_file() {
        eprintln!("SKIPPED: models/default is not in this checkout");
        return;
    }
    let diff = compare(&dir, 200);
    assert!(
        diff <= TOLERANCE,
        "models/default: max |candle - ort| = {diff}"
    );
}

#[test]
fn cuda_on_a_cpu_only_library_is_an_error_not_a_fallback() {
    let dir = tempfile::tempdir().unwrap();
    onnx_common::write_model(dir.path(), &Config::tiny(2), 2);
    let err = OrtBackend::load_dir(dir.path(), &options(Provider::Cuda(0)), 1)
        .err()
        .expect("the PyPI onnxruntime library has no CUDA execution provider");
    let message = err.to_string();
    assert!(message.contains("CUDA"), "{message}");
}

#[test]
fn provider_parsing_follows_the_device_flag() {
    assert_eq!(Provider::parse("cpu").unwrap(), Provider::Cpu);
    assert_eq!(Provider::parse("cuda:1").unwrap(), Provider::Cuda(1));
    assert!(Provider::parse("tpu").is_err());
}
