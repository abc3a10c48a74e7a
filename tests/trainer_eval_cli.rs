//! `revstream-trainer eval` end to end: the bundled default model on freshly synthesised
//! MotionShapes clips, through the CLI; the report's figures agree with each other.

use std::collections::HashMap;
use std::process::Command;

use serde_json::Value;

fn trainer() -> Command {
    Command::new(env!("CARGO_BIN_EXE_revstream-trainer"))
}

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn eval_reports_accuracy_confusion_and_the_misclassified_videos() {
    let dir = tempfile::tempdir().unwrap();
    let (data, cache, out) = (
        dir.path().join("clips"),
        dir.path().join("cache"),
        dir.path().join("eval"),
    );
    run(trainer()
        .args(["synth", "--per-class", "2", "--seed", "4242"])
        .args(["--size", "96x96", "--fps", "20", "--seconds", "2"])
        .arg("--out")
        .arg(&data));
    let model = concat!(env!("CARGO_MANIFEST_DIR"), "/models/default");
    run(trainer()
        .args(["eval", "--model", model, "--data"])
        .arg(&data)
        .arg("--cache")
        .arg(&cache)
        .arg("--out")
        .arg(&out));

    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    assert_eq!(report["samples"], 20);
    assert_eq!(report["failed_videos"], 0);
    let fused = &report["fused"];
    let top1 = fused["top1"].as_f64().unwrap();
    // 20 unseen clips of 10 classes: chance is 0.1; the model is far above it.
    assert!(top1 >= 0.6, "fused top-1 {top1}");
    assert!(fused["top5"].as_f64().unwrap() >= top1);

    // The misclassified list is exactly the confusion matrix's off-diagonal.
    let confusion: Vec<Vec<u64>> = serde_json::from_value(fused["confusion"].clone()).unwrap();
    let labels: Vec<String> = fused["per_class"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p[0].as_str().unwrap().to_string())
        .collect();
    let mut off_diagonal = HashMap::new();
    for (i, row) in confusion.iter().enumerate() {
        for (j, &n) in row.iter().enumerate() {
            if i != j && n > 0 {
                off_diagonal.insert((labels[i].clone(), labels[j].clone()), n);
            }
        }
    }
    let mut listed = HashMap::new();
    for miss in report["misclassified"].as_array().unwrap() {
        let (label, predicted) = (
            miss["label"].as_str().unwrap(),
            miss["predicted"].as_str().unwrap(),
        );
        let video = miss["video"].as_str().unwrap();
        assert!(
            video.contains(&format!("/{label}/")),
            "{video} listed as {label}"
        );
        *listed
            .entry((label.to_string(), predicted.to_string()))
            .or_insert(0u64) += 1;
    }
    assert_eq!(listed, off_diagonal);
    let misses = report["misclassified"].as_array().unwrap().len();
    assert!((1.0 - misses as f64 / 20.0 - top1).abs() < 1e-9);
    assert!(out.join("confusion.png").metadata().unwrap().len() > 1000);
}

#[test]
fn eval_refuses_a_class_the_model_lacks_before_decoding_anything() {
    let dir = tempfile::tempdir().unwrap();
    let (data, cache) = (dir.path().join("clips"), dir.path().join("cache"));
    run(trainer()
        .args(["synth", "--per-class", "1", "--seed", "7"])
        .args(["--size", "64x64", "--fps", "10", "--seconds", "1"])
        .arg("--out")
        .arg(&data));
    std::fs::rename(data.join("wave"), data.join("jump")).unwrap();
    let model = concat!(env!("CARGO_MANIFEST_DIR"), "/models/default");
    let out = trainer()
        .args(["eval", "--model", model, "--data"])
        .arg(&data)
        .arg("--cache")
        .arg(&cache)
        .arg("--out")
        .arg(dir.path().join("eval"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(r#"dataset labels ["jump"] are not among the model's"#),
        "{stderr}"
    );
    // Refused up front: no video was decoded into a cache.
    assert!(
        !cache.exists(),
        "a cache was made before the labels were checked"
    );
}
