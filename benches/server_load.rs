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

use common::server::{TestServer, test_video, tiny_model};

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

/// Runs `concurrency` clients back to back for `seconds`; returns latencies (ms) of
/// successful requests and the number of failed ones.
async fn run_level(
    client: &reqwest::Client,
    url: &str,
    video: &[u8],
    concurrency: usize,
    seconds: f64,
) -> (Vec<f64>, usize, f64) {
    let started = Instant::now();
    let deadline = started + Duration::from_secs_f64(seconds);
    let clients = (0..concurrency).map(|_| {
        let client = client.clone();
        let url = url.to_string();
        let video = video.to_vec();
        tokio::spawn(async move {
            let (mut latencies, mut failures) = (Vec::new(), 0);
            while Instant::now() < deadline {
                let sent = Instant::now();
                let response = client
                    .post(&url)
                    .header("content-type", "video/mp4")
                    .body(video.clone())
                    .send()
                    .await;
                let ok = match response {
                    Ok(r) => r.status() == 200 && r.bytes().await.is_ok(),
                    Err(_) => false,
                };
                if ok {
                    latencies.push(sent.elapsed().as_secs_f64() * 1e3);
                } else {
                    failures += 1;
                }
            }
            (latencies, failures)
        })
    });
    let mut all = Vec::new();
    let mut failures = 0;
    for handle in clients.collect::<Vec<_>>() {
        let (latencies, failed) = handle.await.expect("client task");
        all.extend(latencies);
        failures += failed;
    }
    all.sort_by(f64::total_cmp);
    (all, failures, started.elapsed().as_secs_f64())
}

#[tokio::main]
async fn main() {
    let seconds: f64 = std::env::var("LOAD_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10.0);
    let scratch = tempfile::tempdir().expect("temp dir");
    let video = test_video(scratch.path(), "load.mp4", 10.0, (640, 360));
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
        "server_load: {} KiB 10 s 640x360 H.264 upload, model {} (input {}), {} s per level",
        video.len() / 1024,
        model["name"],
        model["input"],
        seconds
    );
    for concurrency in [1, 4, 16] {
        let (latencies, failures, elapsed) =
            run_level(&client, &url, &video, concurrency, seconds).await;
        println!(
            "concurrency {concurrency:>2}: {:>4} ok, {failures} failed, {:.2} req/s, latency ms p50 {:.0} p90 {:.0} p99 {:.0} max {:.0}",
            latencies.len(),
            latencies.len() as f64 / elapsed,
            percentile(&latencies, 50.0),
            percentile(&latencies, 90.0),
            percentile(&latencies, 99.0),
            latencies.last().copied().unwrap_or(f64::NAN),
        );
    }
    if let Some(server) = server {
        server.stop().await;
    }
}
