//! Shared by the ONNX tests: a tiny model folder with seeded random weights (BatchNorm
//! statistics included, so folding is exercised), seeded inputs, the Python checker
//! environment and the ONNX Runtime library.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use revstream::artifact::{ModelSpec, PreprocessingSpec};
use revstream::model::{Config, StResNet};

/// Writes config.json and model.safetensors for `cfg` with weights drawn from `seed`.
pub fn write_model(dir: &Path, cfg: &Config, seed: u64) {
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
    StResNet::new(cfg, vb).unwrap();
    let mut rng = StdRng::seed_from_u64(seed);
    let data = varmap.data().lock().unwrap();
    let mut names: Vec<&String> = data.keys().collect();
    names.sort();
    for name in names {
        let var = &data[name];
        let dims = var.dims().to_vec();
        let n = var.elem_count();
        let (lo, hi) = if name.ends_with("running_var") {
            (0.5, 1.5)
        } else if name.ends_with("running_mean") || name.ends_with("bias") {
            (-0.2, 0.2)
        } else if dims.len() == 1 {
            (0.6, 1.4)
        } else {
            let fan_in = (n / dims[0]) as f32;
            let bound = (3.0 / fan_in).sqrt();
            (-bound, bound)
        };
        let values: Vec<f32> = (0..n).map(|_| rng.random_range(lo..hi)).collect();
        var.set(&Tensor::from_vec(values, dims, &Device::Cpu).unwrap())
            .unwrap();
    }
    drop(data);
    varmap.save(dir.join("model.safetensors")).unwrap();
    let spec = ModelSpec {
        architecture: cfg.clone(),
        preprocessing: PreprocessingSpec::default(),
        labels: (0..cfg.num_classes).map(|i| format!("class{i}")).collect(),
    };
    spec.save(dir).unwrap();
}

/// Seeded inputs `(B, T, 3, S, S)` in -2..2 and `(B, T, 2L, S, S)` in -1..1.
pub fn inputs(cfg: &Config, batch: usize, seed: u64) -> (Tensor, Tensor) {
    let mut rng = StdRng::seed_from_u64(seed);
    let (t, s) = (cfg.frames, cfg.input_size);
    let mut draw = |c: usize, bound: f32| {
        let n = batch * t * c * s * s;
        let v: Vec<f32> = (0..n).map(|_| rng.random_range(-bound..bound)).collect();
        Tensor::from_vec(v, (batch, t, c, s, s), &Device::Cpu).unwrap()
    };
    let rgb = draw(3, 2.0);
    let flow = draw(cfg.flow_channels(), 1.0);
    (rgb, flow)
}

/// Largest absolute difference between two equally shaped tables.
pub fn max_abs_diff(a: &[Vec<f32>], b: &[Vec<f32>]) -> f32 {
    assert_eq!(a.len(), b.len(), "row counts differ");
    a.iter()
        .zip(b)
        .flat_map(|(x, y)| {
            assert_eq!(x.len(), y.len(), "row widths differ");
            x.iter().zip(y).map(|(p, q)| (p - q).abs())
        })
        .fold(0.0, f32::max)
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A Python with onnx and onnxruntime: target/onnx-venv, created on first use.
/// `None` (with a message) only when Python or PyPI is unavailable.
pub fn python() -> Option<PathBuf> {
    let venv = root().join("target/onnx-venv");
    let python = venv.join("bin/python");
    let ready = |p: &Path| {
        Command::new(p)
            .args(["-c", "import onnx, onnxruntime, numpy"])
            .status()
            .is_ok_and(|s| s.success())
    };
    if python.is_file() && ready(&python) {
        return Some(python);
    }
    let created = Command::new("python3")
        .args(["-m", "venv"])
        .arg(&venv)
        .status()
        .is_ok_and(|s| s.success());
    if !created {
        eprintln!("SKIPPED: python3 -m venv failed; the ONNX checker needs Python 3");
        return None;
    }
    let installed = Command::new(venv.join("bin/pip"))
        .args(["install", "-q", "onnx", "onnxruntime==1.32.0", "numpy"])
        .status()
        .is_ok_and(|s| s.success());
    if !installed || !ready(&python) {
        eprintln!("SKIPPED: pip install onnx onnxruntime numpy failed (no PyPI?)");
        return None;
    }
    Some(python)
}

/// libonnxruntime.so from scripts/fetch-ort.sh (run on first use).
pub fn ort_library() -> PathBuf {
    let out = Command::new(root().join("scripts/fetch-ort.sh"))
        .output()
        .expect("running scripts/fetch-ort.sh");
    assert!(
        out.status.success(),
        "scripts/fetch-ort.sh failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
}
