//! Load test: throughput and latency percentiles of `POST /v1/predict` for a 10 s
//! 640x360 upload at concurrency 1, 4 and 16.
//!
//! Starts the real server in-process on 127.0.0.1:0 (models/default when present, else a
//! tiny seeded model), or targets `REVSTREAM_LOAD_URL` when set. `LOAD_SECONDS` sets the
//! time per concurrency level (default 10). Run: `cargo bench --bench server_load`.

#[path = "../tests/common/mod.rs"]
mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::server::{TestServer, tiny_model};
use common::videos::make_testsrc;

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

const STAGES: [&str; 4] = ["decode", "flow", "queue", "inference"];

/// What one concurrency level measured.
struct Level {
    /// Latencies of successful requests, ms, sorted.
    latencies: Vec<f64>,
    /// Requests that did not get a 200.
    failures: usize,
    /// Wall time of the level, s.
    elapsed: f64,
    /// Sum of the server-reported stage timings (ms), in `STAGES` order.
    stage_sums: [f64; 4],
}

/// Runs `concurrency` clients back to back for `seconds`.
async fn run_level(
    client: &reqwest::Client,
    url: &str,
    video: &[u8],
    concurrency: usize,
    seconds: f64,
) -> Level {
    let started = Instant::now();
    let deadline = started + Duration::from_secs_f64(seconds);
    let clients = (0..concurrency).map(|_| {
        let client = client.clone();
        let url = url.to_string();
        let video = video.to_vec();
        tokio::spawn(async move {
            let (mut latencies, mut failures, mut stage_sums) = (Vec::new(), 0, [0.0; 4]);
            while Instant::now() < deadline {
                let sent = Instant::now();
                let response = client
                    .post(&url)
                    .header("content-type", "video/mp4")
                    .body(video.clone())
                    .send()
                    .await;
                let body = match response {
                    Ok(r) if r.status() == 200 => r.json::<serde_json::Value>().await.ok(),
                    _ => None,
                };
                match body {
                    Some(body) => {
                        latencies.push(sent.elapsed().as_secs_f64() * 1e3);
                        for (sum, stage) in stage_sums.iter_mut().zip(STAGES) {
                            *sum += body["timings_ms"][stage].as_f64().unwrap_or(0.0);
                        }
                    }
                    None => failures += 1,
                }
            }
            (latencies, failures, stage_sums)
        })
    });
    let mut level = Level {
        latencies: Vec::new(),
        failures: 0,
        elapsed: 0.0,
        stage_sums: [0.0; 4],
    };
    for handle in clients.collect::<Vec<_>>() {
        let (latencies, failed, sums) = handle.await.expect("client task");
        level.latencies.extend(latencies);
        level.failures += failed;
        for (total, sum) in level.stage_sums.iter_mut().zip(sums) {
            *total += sum;
        }
    }
    level.latencies.sort_by(f64::total_cmp);
    level.elapsed = started.elapsed().as_secs_f64();
    level
}

#[tokio::main]
async fn main() {
    let seconds: f64 = std::env::var("LOAD_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10.0);
    let scratch = tempfile::tempdir().expect("temp dir");
    let codec = ["-c:v", "libx264", "-pix_fmt", "yuv420p"];
    let path = make_testsrc(scratch.path(), "load.mp4", (640, 360), 25, 10.0, &codec);
    let video = std::fs::read(path).expect("the load video");
    let (server, url) = match std::env::var("REVSTREAM_LOAD_URL") {
        Ok(base) => (None, format!("{base}/v1/predict")),
        Err(_) => {
            let default = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/default");
            let server = if default.join("config.json").exists() {
                TestServer::start_with_models(|_| vec![default.clone()], |_| {}).await
            } else {
                TestServer::start_with_models(|dir| vec![tiny_model(dir, "tiny", 7)], |_| {}).await
            };
            let url = server.url("/v1/predict");
            (Some(server), url)
        }
    };
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(300))
        .build()
        .expect("client");
    let model: serde_json::Value = client
        .get(url.replace("/v1/predict", "/v1/models/default"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    println!(
        "server_load: {} KiB 10 s 640x360 25 fps H.264 upload, model {} (input {}), {} s per level",
        video.len() / 1024,
        model["name"],
        model["input"],
        seconds
    );
    for concurrency in [1, 4, 16] {
        let level = run_level(&client, &url, &video, concurrency, seconds).await;
        let l = &level.latencies;
        let n = l.len().max(1) as f64;
        let stages: Vec<String> = STAGES
            .iter()
            .zip(level.stage_sums)
            .map(|(stage, sum)| format!("{stage} {:.0}", sum / n))
            .collect();
        println!(
            "concurrency {concurrency:>2}: {:>4} ok, {} failed, {:.2} req/s, latency ms p50 {:.0} p90 {:.0} p99 {:.0} max {:.0}; mean stage ms: {}",
            l.len(),
            level.failures,
            l.len() as f64 / level.elapsed,
            percentile(l, 50.0),
            percentile(l, 90.0),
            percentile(l, 99.0),
            l.last().copied().unwrap_or(f64::NAN),
            stages.join(", "),
        );
    }
    if let Some(server) = server {
        server.stop().await;
    }
}
