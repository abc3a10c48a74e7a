//! ONNX export: the graph passes `onnx.checker.check_model(full_check=True)`, has a
//! dynamic batch, and the Python onnxruntime computes the same scores as candle.

mod onnx_common;

use std::collections::HashMap;
use std::process::Command;

use candle_core::{D, Device, Tensor};
use candle_nn::VarBuilder;
use onnx_protobuf::{Message, ModelProto};
use revstream::model::{Config, StResNet};
use revstream::onnx::{self, OnnxError};
use serde_json::Value;

/// Largest difference allowed between candle and ONNX Runtime, on logits and on
/// probabilities: both are f32, BatchNorm folding and a different summation order only
/// change the last bits.
const TOLERANCE: f32 = 1e-4;

/// A bottleneck, non-reversible variant with a pooled, strided stem, a temporal first
/// unit and unequal fusion weights, so every branch of the exporter runs.
fn bottleneck_config() -> Config {
    Config {
        input_size: 32,
        frames: 3,
        flow_stack: 1,
        num_classes: 4,
        base_width: 4,
        units: [1, 2, 1, 1],
        bottleneck: true,
        stem_kernel: 5,
        stem_stride: 2,
        stem_pool: true,
        temporal_units: vec![[0, 0], [1, 1]],
        reversible: false,
        links: true,
        fusion_weights: [0.3, 0.7],
        ..Config::tiny(4)
    }
}

fn rows(t: &Tensor) -> Vec<Vec<f32>> {
    t.to_vec2::<f32>().unwrap()
}

fn python_rows(outputs: &Value, name: &str) -> Vec<Vec<f32>> {
    let shape = outputs[name]["shape"].as_array().unwrap();
    let width = shape[1].as_u64().unwrap() as usize;
    let data: Vec<f32> = outputs[name]["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap() as f32)
        .collect();
    data.chunks(width).map(<[f32]>::to_vec).collect()
}

/// Exports `cfg` with seeded weights, checks it in Python and compares every output with candle.
fn check_against_candle(cfg: &Config, batch: usize) {
    let Some(python) = onnx_common::python() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    onnx_common::write_model(dir.path(), cfg, 7);
    let path = onnx::export_dir(dir.path(), None).unwrap();
    assert_eq!(path, dir.path().join("model.onnx"));

    let (rgb, flow) = onnx_common::inputs(cfg, batch, 11);
    let io = dir.path().join("io");
    std::fs::create_dir(&io).unwrap();
    for (name, t) in [("rgb", &rgb), ("flow", &flow)] {
        let bytes: Vec<u8> = t
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap()
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        std::fs::write(io.join(format!("{name}.f32")), bytes).unwrap();
    }
    let shapes = serde_json::json!({ "rgb": rgb.dims(), "flow": flow.dims() });
    std::fs::write(io.join("shapes.json"), shapes.to_string()).unwrap();

    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/peers/onnx_check.py");
    let out = Command::new(&python)
        .arg(script)
        .arg(&path)
        .arg("--inputs")
        .arg(&io)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "onnx checker or onnxruntime failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["opsets"]["ai.onnx"], 17);
    let (t, s, l2) = (cfg.frames, cfg.input_size, cfg.flow_channels());
    assert_eq!(
        summary["inputs"],
        serde_json::json!({ "rgb": ["batch", t, 3, s, s], "flow": ["batch", t, l2, s, s] })
    );
    for name in ["probabilities", "fused", "appearance", "motion"] {
        assert_eq!(
            summary["outputs"][name],
            serde_json::json!(["batch", cfg.num_classes])
        );
    }

    let weights =
        candle_core::safetensors::load(dir.path().join("model.safetensors"), &Device::Cpu).unwrap();
    let vb = VarBuilder::from_tensors(weights, candle_core::DType::F32, &Device::Cpu);
    let model = StResNet::new(cfg, vb).unwrap();
    let logits = model.forward(&rgb, &flow, false).unwrap();
    let probabilities = candle_nn::ops::softmax(&logits.fused, D::Minus1).unwrap();

    let outputs: Value =
        serde_json::from_str(&std::fs::read_to_string(io.join("outputs.json")).unwrap()).unwrap();
    for (name, candle) in [
        ("probabilities", &probabilities),
        ("fused", &logits.fused),
        ("appearance", &logits.appearance),
        ("motion", &logits.motion),
    ] {
        let ort = python_rows(&outputs, name);
        assert_eq!(ort.len(), batch);
        let diff = onnx_common::max_abs_diff(&rows(candle), &ort);
        eprintln!("{name}: max |candle - onnxruntime| = {diff:e}");
        assert!(
            diff <= TOLERANCE,
            "{name}: max |candle - onnxruntime| = {diff}"
        );
    }
    // The scores are not degenerate: the streams disagree and classes are told apart.
    let fused = rows(&logits.fused);
    let spread = fused[0].iter().cloned().fold(f32::MIN, f32::max)
        - fused[0].iter().cloned().fold(f32::MAX, f32::min);
    assert!(spread > 1e-3, "fused logits are flat: {fused:?}");
}

#[test]
fn tiny_reversible_model_matches_candle_in_onnxruntime() {
    check_against_candle(&Config::tiny(5), 3);
}

#[test]
fn bottleneck_model_with_pooled_stem_matches_candle_in_onnxruntime() {
    check_against_candle(&bottleneck_config(), 2);
}

#[test]
fn export_names_the_missing_or_misshapen_weight() {
    let cfg = Config::tiny(3);
    let dir = tempfile::tempdir().unwrap();
    onnx_common::write_model(dir.path(), &cfg, 1);
    let weights = onnx::load_weights(&dir.path().join("model.safetensors")).unwrap();

    let mut missing: HashMap<_, _> = weights.clone();
    missing.remove("motion.layer3.1.g.bn2.running_var");
    match onnx::export(&cfg, &missing) {
        Err(OnnxError::MissingWeight(name)) => {
            assert_eq!(name, "motion.layer3.1.g.bn2.running_var")
        }
        other => panic!("expected a missing weight, got {:?}", other.map(|_| ())),
    }

    let mut wrong = weights;
    wrong.insert(
        "appearance.fc.weight".to_string(),
        Tensor::zeros((3, 7), candle_core::DType::F32, &Device::Cpu).unwrap(),
    );
    match onnx::export(&cfg, &wrong) {
        Err(OnnxError::Shape {
            name,
            expected,
            got,
        }) => {
            assert_eq!(name, "appearance.fc.weight");
            assert_eq!(expected, vec![3, cfg.stage_width(3)]);
            assert_eq!(got, vec![3, 7]);
        }
        other => panic!("expected a shape error, got {:?}", other.map(|_| ())),
    }
}

#[test]
fn trainer_export_onnx_writes_a_parsable_model() {
    let cfg = Config::tiny(2);
    let dir = tempfile::tempdir().unwrap();
    onnx_common::write_model(dir.path(), &cfg, 3);
    let out = Command::new(env!("CARGO_BIN_EXE_revstream-trainer"))
        .args(["export-onnx", "--model"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "export-onnx failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let bytes = std::fs::read(dir.path().join("model.onnx")).unwrap();
    let model = ModelProto::parse_from_bytes(&bytes).unwrap();
    let outputs: Vec<&str> = model.graph.output.iter().map(|o| o.name.as_str()).collect();
    assert_eq!(outputs, ["probabilities", "fused", "appearance", "motion"]);
    // BatchNorm is folded away: only convolutions and the classifier carry weights.
    let ops: Vec<&str> = model
        .graph
        .node
        .iter()
        .map(|n| n.op_type.as_str())
        .collect();
    assert!(!ops.contains(&"BatchNormalization"));
    assert_eq!(ops.iter().filter(|op| **op == "Gemm").count(), 2);

    let missing = Command::new(env!("CARGO_BIN_EXE_revstream-trainer"))
        .args(["export-onnx", "--model", "/nonexistent/model"])
        .output()
        .unwrap();
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("config.json"));
}
