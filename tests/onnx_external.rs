//! An RGB-only ONNX classifier made elsewhere (scripts/make_rgb3d_onnx.py: a 3-D CNN
//! whose classes are the clip's mean colour) served through the real HTTP server: its
//! config.json alone drives preprocessing and I/O, in each layout, and a config that
//! disagrees with the graph stops the model at start-up with a message naming both.
#![cfg(feature = "ort")]

mod common;
mod onnx_common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::server::{TestServer, expect_error};
use common::videos::make_video;
use serde_json::Value;

/// Largest difference allowed between the layouts' probabilities: the same arithmetic
/// in another axis order, so only float summation order differs.
const LAYOUT_TOLERANCE: f64 = 1e-5;

/// `e^4 / (e^4 + 2)`: the top probability for a pure colour (features (1, 0, 0), gain 4).
const PURE: f64 = 0.964_663;

/// H.264 and yuv420p move a pure colour by a few levels, so the colour's normalised
/// value is between 0.96 and 1 and its logit between 3.84 and 4: p in [0.9588, PURE].
const PURE_LOW: f64 = 0.9588;

/// Writes a model folder with scripts/make_rgb3d_onnx.py.
fn make_model(python: &Path, dir: &Path, name: &str, args: &[&str]) -> PathBuf {
    let folder = dir.join(name);
    let out = Command::new(python)
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/make_rgb3d_onnx.py"))
        .arg(&folder)
        .args(["--frames", "4", "--size", "32"])
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "make_rgb3d_onnx.py failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    folder
}

/// A 2-second 64x48 clip of one colour.
fn colour_video(dir: &Path, hex: &str) -> Vec<u8> {
    let source = format!("color=c=0x{hex}:size=64x48:rate=10:duration=2");
    let name = format!("{hex}.mp4");
    let args = [
        "-f", "lavfi", "-i", &source, "-c:v", "libx264", "-pix_fmt", "yuv420p",
    ];
    std::fs::read(make_video(dir, &name, &args)).unwrap()
}

/// Probabilities by class index, from a top_k=3 answer.
fn scores(body: &Value) -> [f64; 3] {
    let mut out = [f64::NAN; 3];
    for p in body["predictions"].as_array().unwrap() {
        out[p["index"].as_u64().unwrap() as usize] = p["score"].as_f64().unwrap();
    }
    out
}

#[tokio::test]
async fn colour_models_in_every_layout_answer_through_the_server() {
    let Some(python) = onnx_common::python() else {
        return;
    };
    let library = onnx_common::ort_library();
    // NCTHW: 4 frames spread over the clip, 0..1 values, logits out.
    // NTCHW: 4 consecutive frames 2 apart, 0..255 values, a Softmax in the graph.
    // NCHW: one frame, as an image classifier exported with a fixed batch of 1.
    let server = TestServer::start_with_models(
        |dir| {
            vec![
                make_model(&python, dir, "ncthw", &["--layout", "NCTHW"]),
                make_model(
                    &python,
                    dir,
                    "ntchw",
                    &[
                        "--layout",
                        "NTCHW",
                        "--frame-stride",
                        "2",
                        "--value-range",
                        "0..255",
                        "--output-kind",
                        "probabilities",
                        "--input-name",
                        "clip",
                        "--output-name",
                        "probs",
                    ],
                ),
                make_model(&python, dir, "nchw", &["--layout", "NCHW", "--fixed-batch"]),
            ]
        },
        // The default backend is candle: an external folder picks ONNX Runtime itself.
        |c| {
            c.ort_library = Some(library);
            c.job_window_s = 1.0;
            c.job_step_s = 1.0;
        },
    )
    .await;

    let info = server.get_json("/v1/models/ntchw").await;
    assert_eq!(info["backend"], "ort", "{info}");
    assert_eq!(info["labels"], serde_json::json!(["red", "green", "blue"]));
    let input = &info["input"];
    assert_eq!(
        (
            &input["frames"],
            &input["size"],
            &input["flow_stack"],
            &input["preset"]
        ),
        (
            &Value::from(4),
            &Value::from(32),
            &Value::from(0),
            &Value::from("none")
        ),
        "{info}"
    );

    for (class, (label, hex)) in [("red", "FF0000"), ("green", "00FF00"), ("blue", "0000FF")]
        .into_iter()
        .enumerate()
    {
        let video = colour_video(server.dir.path(), hex);
        let mut by_layout = Vec::new();
        for model in ["ncthw", "ntchw", "nchw"] {
            let path = format!("/v1/predict?model={model}&top_k=3");
            let response = server.post_video(&path, video.clone()).await;
            assert_eq!(response.status(), 200, "{model} {label}");
            let body: Value = response.json().await.unwrap();
            assert_eq!(body["predictions"][0]["label"], label, "{model}: {body}");
            let s = scores(&body);
            assert!(
                (PURE_LOW..=PURE + 1e-5).contains(&s[class]),
                "{model} {label}: p = {}",
                s[class]
            );
            // The two other colours are both at zero after ReLU: equal shares.
            let others: Vec<f64> = (0..3).filter(|&i| i != class).map(|i| s[i]).collect();
            assert!((others[0] - others[1]).abs() < 1e-6, "{model}: {s:?}");
            assert!(
                ((s.iter().sum::<f64>()) - 1.0).abs() < 1e-5,
                "{model}: {s:?}"
            );
            // No optical flow is computed for an RGB-only model.
            assert_eq!(body["timings_ms"]["flow"], 0.0, "{model}: {body}");
            eprintln!("{model} {label}: {s:?}");
            by_layout.push(s);
        }
        for (model, s) in ["ntchw", "nchw"].iter().zip(&by_layout[1..]) {
            let diff = (0..3)
                .map(|i| (s[i] - by_layout[0][i]).abs())
                .fold(0.0, f64::max);
            assert!(
                diff <= LAYOUT_TOLERANCE,
                "{label}: {model} differs from ncthw by {diff}"
            );
        }
    }

    // Three segments on the fixed-batch graph run one sample at a time.
    let green = colour_video(server.dir.path(), "00FF00");
    let response = server
        .post_video("/v1/predict?model=nchw&segments=3&top_k=3", green)
        .await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["predictions"][0]["label"], "green", "{body}");
    assert!(
        (PURE_LOW..=PURE + 1e-5).contains(&scores(&body)[1]),
        "{body}"
    );

    // Segments and jobs use the same sampling: a clip that is red for 2 s, then blue
    // for 2 s, gives a timeline of 1 s windows red, red, blue, blue, and two segments
    // of the whole clip average to a tie between red and blue.
    let args = [
        "-filter_complex",
        "color=c=0xFF0000:size=64x48:rate=10:duration=2[a];\
         color=c=0x0000FF:size=64x48:rate=10:duration=2[b];[a][b]concat=n=2:v=1",
        "-c:v",
        "libx264",
        "-pix_fmt",
        "yuv420p",
    ];
    let video = std::fs::read(make_video(server.dir.path(), "red-blue.mp4", &args)).unwrap();
    let response = server
        .post_video("/v1/jobs?model=ntchw&top_k=1&segments=2", video)
        .await;
    assert_eq!(response.status(), 202);
    let id = response.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let view = loop {
        let view = server.get_json(&format!("/v1/jobs/{id}")).await;
        if !matches!(view["status"].as_str(), Some("queued" | "running")) {
            break view;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert_eq!(view["status"], "done", "{view}");
    let timeline: Vec<&str> = view["result"]["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["predictions"][0]["label"].as_str().unwrap())
        .collect();
    assert_eq!(timeline, ["red", "red", "blue", "blue"], "{view}");
    let whole = &view["result"]["whole"]["predictions"][0];
    // One segment per colour: each at about (PURE + share) / 2, far from green's share.
    let score = whole["score"].as_f64().unwrap();
    assert!((0.48..0.50).contains(&score), "{view}");
    server.stop().await;
}

/// Starts a server on one folder and returns the model's start-up failure.
async fn load_error(folder: PathBuf, library: PathBuf) -> String {
    let server =
        TestServer::start_unready(|_| vec![folder], |c| c.ort_library = Some(library)).await;
    let err = server.state.models.wait_loaded().await.unwrap_err();
    // A failed model answers 503 not_ready, never a wrong prediction.
    let response = server.post_video("/v1/predict", vec![0; 16]).await;
    expect_error(response, 503, "not_ready").await;
    server.stop().await;
    err
}

/// Rewrites one part of a folder's config.json.
fn edit_config(folder: &Path, edit: impl FnOnce(&mut Value)) {
    let path = folder.join("config.json");
    let mut config: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    edit(&mut config);
    std::fs::write(&path, config.to_string()).unwrap();
}

#[tokio::test]
async fn a_config_that_disagrees_with_the_graph_fails_at_start_up() {
    let Some(python) = onnx_common::python() else {
        return;
    };
    let library = onnx_common::ort_library();
    let dir = tempfile::tempdir().unwrap();
    let folder = |name: &str, edit: &dyn Fn(&mut Value)| {
        let f = make_model(&python, dir.path(), name, &["--layout", "NCTHW"]);
        edit_config(&f, edit);
        f
    };

    let wrong_name = folder("name", &|c| c["input"]["name"] = "frames".into());
    let err = load_error(wrong_name, library.clone()).await;
    assert!(err.contains("model name:"), "{err}");
    assert!(
        err.contains(r#"no input "frames" (its inputs: ["video"])"#),
        "{err}"
    );

    let wrong_rank = folder("rank", &|c| {
        c["input"]["layout"] = "NCHW".into();
        c["input"]["frames"] = 1.into();
    });
    let err = load_error(wrong_rank, library.clone()).await;
    assert!(
        err.contains("has rank 5") && err.contains("layout NCHW needs rank 4"),
        "{err}"
    );

    let wrong_frames = folder("frames", &|c| c["input"]["frames"] = 8.into());
    let err = load_error(wrong_frames, library.clone()).await;
    assert!(
        err.contains("[-1, 3, 4, 32, 32]") && err.contains("gives [N, 3, 8, 32, 32]"),
        "{err}"
    );

    let wrong_labels = folder("labels", &|c| {
        c["labels"] = serde_json::json!(["red", "green"])
    });
    let err = load_error(wrong_labels, library.clone()).await;
    assert!(
        err.contains(r#"output "scores" gives 3 classes, config.json has 2 labels"#),
        "{err}"
    );

    let wrong_output = folder("output", &|c| c["output"]["name"] = "logits".into());
    let err = load_error(wrong_output, library.clone()).await;
    assert!(
        err.contains(r#"no output "logits" (its outputs: ["scores"])"#),
        "{err}"
    );

    // A config that makes no sense on its own stops the server before any loading.
    let nonsense = folder("nonsense", &|c| c["input"]["layuot"] = "NCTHW".into());
    let mut config = revstream::server::ServerConfig::with_models(vec![nonsense]);
    config.ort_library = Some(library);
    let err = revstream::server::AppState::new(config)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("unknown field `layuot`"), "{err}");
}
