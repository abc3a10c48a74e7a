//! Memory of a job against its video's length: the peak RSS of the `revstream-server`
//! process (started by the bench on 127.0.0.1, port 0, a tiny seeded model) while it runs
//! a timeline job on a 1-minute and on a 60-minute video (64x64, 10 fps H.264, made with
//! the ffmpeg CLI), and the windows per second it sustains. Issue 26's goal: the
//! 60-minute peak within 1.2x of the 1-minute one. The peak is the server's from the
//! job's acceptance to its end (the upload's own bound is the spool's,
//! `tests/server_uploads.rs`).
//!
//! Run: `cargo bench --bench job_memory` (`JOB_MINUTES=1,60` sets the lengths, first is
//! the reference; `JOB_HOP_S` the hop, default 2).

#[path = "../tests/common/mod.rs"]
mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::memory;
use common::server::tiny_model;
use common::videos::make_testsrc;
use serde_json::Value;

const MIB: f64 = (1 << 20) as f64;

/// The server binary on `model`, and its base URL once it listens.
fn start_server(model: &Path) -> (Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_revstream-server"))
        .args([
            "--address",
            "127.0.0.1",
            "--port",
            "0",
            "--log-format",
            "json",
        ])
        .arg("--model-dir")
        .arg(model)
        .stdout(Stdio::piped())
        .spawn()
        .expect("starting revstream-server");
    let stdout = BufReader::new(child.stdout.take().unwrap());
    let mut stdout = stdout;
    let mut line = String::new();
    while stdout.read_line(&mut line).unwrap() > 0 {
        let text = std::mem::take(&mut line);
        let Ok(log) = serde_json::from_str::<Value>(&text) else {
            continue;
        };
        if log["fields"]["message"] == "listening" {
            let address = log["fields"]["address"].as_str().unwrap().to_string();
            // Its later log lines are read and dropped, so its writes never fail.
            std::thread::spawn(move || stdout.lines().for_each(drop));
            return (child, format!("http://{address}"));
        }
    }
    let status = child.wait().expect("waiting for revstream-server");
    panic!("the server exited ({status}) before listening");
}

/// Waits until the server at `base` answers /health with 200.
async fn wait_ready(client: &reqwest::Client, base: &str) {
    let started = Instant::now();
    while !client
        .get(format!("{base}/health"))
        .send()
        .await
        .is_ok_and(|r| r.status() == reqwest::StatusCode::OK)
    {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the model never loaded"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Runs a timeline job on the video at `path` to its end, calling `accepted` once the
/// server has taken it; returns its windows.
async fn run_job(
    client: &reqwest::Client,
    base: &str,
    path: &Path,
    hop_s: f64,
    accepted: impl FnOnce(),
) -> usize {
    let started = Instant::now();
    let response = client
        .post(format!("{base}/v1/jobs?window_s=2&hop_s={hop_s}&top_k=1"))
        .header("content-type", "video/mp4")
        .body(std::fs::read(path).unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    let id = response.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    accepted();
    loop {
        let view: Value = client
            .get(format!("{base}/v1/jobs/{id}"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if !matches!(view["status"].as_str(), Some("queued" | "running")) {
            assert_eq!(view["status"], "done", "{view}");
            return view["result"]["timeline"].as_array().unwrap().len();
        }
        assert!(
            started.elapsed() < Duration::from_secs(1800),
            "the job took over 30 min"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let minutes: Vec<u32> = std::env::var("JOB_MINUTES")
        .unwrap_or_else(|_| "1,60".into())
        .split(',')
        .map(|m| {
            m.trim()
                .parse()
                .expect("JOB_MINUTES: minutes, comma-separated")
        })
        .collect();
    let hop_s: f64 = std::env::var("JOB_HOP_S")
        .ok()
        .map_or(2.0, |v| v.parse().expect("JOB_HOP_S: seconds"));
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(dir.path(), "tiny", 7);
    let codec = [
        "-c:v",
        "libx264",
        "-pix_fmt",
        "yuv420p",
        "-preset",
        "ultrafast",
    ];
    let warmup = make_testsrc(dir.path(), "warmup.mp4", (64, 64), 10, 60.0, &codec);
    println!("job memory: window 2 s, hop {hop_s} s, 64x64 10 fps H.264, tiny model, CPU");
    println!("each length on a fresh server after a 1-minute warm-up job");
    println!(
        "{:>8} {:>9} {:>8} {:>10} {:>10} {:>10}",
        "minutes", "MB", "windows", "windows/s", "RSS MiB", "peak MiB"
    );
    let mut reference = None;
    for &m in &minutes {
        let (mut child, base) = start_server(&model);
        let client = reqwest::Client::new();
        wait_ready(&client, &base).await;
        run_job(&client, &base, &warmup, hop_s, || {}).await;
        let path = make_testsrc(
            dir.path(),
            &format!("{m}min.mp4"),
            (64, 64),
            10,
            f64::from(m) * 60.0,
            &codec,
        );
        let megabytes = std::fs::metadata(&path).unwrap().len() as f64 / 1e6;
        let pid = child.id();
        let started = Instant::now();
        // The peak from the job's acceptance on (the upload's bound is the spool's).
        let windows = run_job(&client, &base, &path, hop_s, || {
            std::fs::write(format!("/proc/{pid}/clear_refs"), "5").unwrap()
        })
        .await;
        let elapsed = started.elapsed().as_secs_f64();
        let (rss, peak) = memory::rss(pid);
        let (rss, peak) = (rss as f64 / MIB, peak as f64 / MIB);
        println!(
            "{m:>8} {megabytes:>9.1} {windows:>8} {:>10.1} {rss:>10.1} {peak:>10.1}",
            windows as f64 / elapsed
        );
        let reference = *reference.get_or_insert(peak);
        if m != minutes[0] {
            println!(
                "peak RSS {m} min / {} min: {:.2}x",
                minutes[0],
                peak / reference
            );
        }
        std::fs::remove_file(&path).unwrap();
        child.kill().unwrap();
        child.wait().unwrap();
    }
}
