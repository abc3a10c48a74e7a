//! `revstream-trainer predict` end to end with the bundled model: the same top-k and
//! timeline as the server gives for the same file, CSV with a row per label, a rendered
//! video of the same length with the label drawn on it, and clear errors.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::server::TestServer;
use revstream::video::{Limits, Resize, Sampling, Video};
use serde_json::Value;

fn trainer() -> Command {
    Command::new(env!("CARGO_BIN_EXE_revstream-trainer"))
}

fn ok(out: Output) -> String {
    assert!(
        out.status.success(),
        "failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

const MODEL: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/models/default");

/// Asserts two prediction lists name the same classes in the same order, with scores
/// equal to float noise.
fn assert_same(cli: &Value, server: &Value) {
    let (a, b) = (cli.as_array().unwrap(), server.as_array().unwrap());
    assert_eq!(a.len(), b.len(), "{cli} vs {server}");
    for (x, y) in a.iter().zip(b) {
        assert_eq!(x["label"], y["label"], "{cli} vs {server}");
        let (p, q) = (x["score"].as_f64().unwrap(), y["score"].as_f64().unwrap());
        assert!((p - q).abs() < 1e-5, "{cli} vs {server}");
    }
}

fn first_clip(dir: &Path) -> std::path::PathBuf {
    ok(trainer()
        .args([
            "synth",
            "--per-class",
            "1",
            "--seed",
            "515",
            "--size",
            "96x96",
        ])
        .args(["--fps", "20", "--seconds", "4", "--out"])
        .arg(dir)
        .output()
        .unwrap());
    let class = dir.join("move_left");
    let clip = std::fs::read_dir(&class)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    assert!(
        clip.extension().is_some_and(|e| e == "mp4"),
        "{}",
        clip.display()
    );
    clip
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn predict_matches_the_server_and_renders_what_the_model_saw() {
    let dir = tempfile::tempdir().unwrap();
    let clip = first_clip(&dir.path().join("clips"));
    let run = |extra: &[&str]| {
        let clip = clip.clone();
        let extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        async move {
            tokio::task::spawn_blocking(move || {
                ok(trainer()
                    .args([
                        "predict", "--model", MODEL, "--device", "cpu", "--top-k", "3",
                    ])
                    .arg(&clip)
                    .args(&extra)
                    .output()
                    .unwrap())
            })
            .await
            .unwrap()
        }
    };
    let cli: Value = serde_json::from_str(
        &run(&["--json", "--timeline", "--window-s", "2", "--hop-s", "1"]).await,
    )
    .unwrap();

    let server = TestServer::start_with_models(|_| vec![MODEL.into()], |_| {}).await;
    let bytes = std::fs::read(&clip).unwrap();
    let whole: Value = server
        .post_video("/v1/predict?top_k=3", bytes.clone())
        .await
        .json()
        .await
        .unwrap();
    assert_same(&cli["predictions"], &whole["predictions"]);
    assert_eq!(cli["video"]["frames"], whole["video"]["frames"]);
    // The bundled model knows this class: the clip is recognised.
    assert_eq!(cli["predictions"][0]["label"], "move_left", "{cli}");

    let response = server
        .post_video("/v1/jobs?top_k=3&window_s=2&hop_s=1", bytes)
        .await;
    let id = response.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let job = loop {
        let view = server.get_json(&format!("/v1/jobs/{id}")).await;
        if view["status"] != "queued" && view["status"] != "running" {
            break view;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    let served = job["result"]["timeline"].as_array().unwrap();
    let ours = cli["timeline"].as_array().unwrap();
    assert_eq!(ours.len(), 3, "{cli}");
    assert_eq!(ours.len(), served.len());
    for (a, b) in ours.iter().zip(served) {
        assert_eq!((&a["start_s"], &a["end_s"]), (&b["start_s"], &b["end_s"]));
        assert_same(&a["predictions"], &b["predictions"]);
    }
    server.stop().await;

    // CSV: a header, then top-k rows for the video and for each window.
    let csv = run(&["--csv", "--timeline"]).await;
    let rows: Vec<&str> = csv.lines().collect();
    assert_eq!(rows[0], "scope,start_s,end_s,rank,label,score");
    assert_eq!(rows.len(), 1 + 3 * (1 + 3), "{csv}");
    let first: Vec<&str> = rows[1].split(',').collect();
    assert_eq!(
        (first[0], first[1], first[3], first[4]),
        ("video", "0.000", "1", "move_left"),
        "{csv}"
    );

    // The rendered video: every frame, at the source's size, with the label band drawn.
    let out = dir.path().join("rendered.mp4");
    run(&["--render", out.to_str().unwrap()]).await;
    let limits = Limits::default();
    let (mut source, mut rendered) = (
        Video::open(&clip, &limits).unwrap(),
        Video::open(&out, &limits).unwrap(),
    );
    let (si, ri) = (source.info().clone(), rendered.info().clone());
    assert_eq!(
        (ri.frames, ri.width, ri.height),
        (si.frames, si.width, si.height)
    );
    let one = |v: &mut Video| {
        let sampling = Sampling::Starts {
            starts: vec![40],
            clip_len: 1,
            stride: 1,
        };
        v.sample(&sampling, &Resize::native()).unwrap()[0].frames[0].clone()
    };
    let (a, b) = (one(&mut source), one(&mut rendered));
    let row = a.width as usize * 3;
    // The band on top is black with white text: far from the source's pixels there.
    let band_diff = a.data[..row * 8]
        .iter()
        .zip(&b.data[..row * 8])
        .filter(|(x, y)| x.abs_diff(**y) > 64)
        .count();
    assert!(
        band_diff > row * 4,
        "the label band is missing: {band_diff} bytes differ"
    );
    // Below it (and away from the flow picture) the frame is the source's, re-encoded.
    let middle = (a.height as usize / 2) * row;
    let (x, y) = (
        &a.data[middle..middle + row / 2],
        &b.data[middle..middle + row / 2],
    );
    let mean = x
        .iter()
        .zip(y)
        .map(|(p, q)| p.abs_diff(*q) as f64)
        .sum::<f64>()
        / x.len() as f64;
    assert!(
        mean < 12.0,
        "the picture itself changed: mean difference {mean}"
    );
}

#[test]
fn bad_input_gets_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("none.mp4");
    let out = trainer()
        .args(["predict", "--model", MODEL])
        .arg(&missing)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("none.mp4"), "{err}");
    let out = trainer()
        .args(["predict", "--model", MODEL, "--hop-s", "0"])
        .arg(&missing)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--hop-s"));
}
