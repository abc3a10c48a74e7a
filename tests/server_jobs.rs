//! Jobs through real HTTP: a long video's timeline of sliding windows plus the whole
//! video, cancellation, and expiry of finished jobs.

mod common;

use std::time::{Duration, Instant};

use common::server::{TestServer, expect_error, test_video};
use serde_json::Value;

async fn job(server: &TestServer, id: &str) -> Value {
    let response = server
        .client
        .get(server.url(&format!("/v1/jobs/{id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

async fn wait_finished(server: &TestServer, id: &str) -> Value {
    let started = Instant::now();
    loop {
        let view = job(server, id).await;
        let status = view["status"].as_str().unwrap().to_string();
        let progress = view["progress"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&progress), "{view}");
        match status.as_str() {
            "queued" | "running" => {}
            _ => return view,
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "job never finished: {view}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn create(server: &TestServer, bytes: Vec<u8>, query: &str) -> String {
    let response = server.post_video(&format!("/v1/jobs{query}"), bytes).await;
    assert_eq!(response.status(), 202);
    let body: Value = response.json().await.unwrap();
    body["id"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn a_job_gives_a_timeline_and_the_whole_video() {
    let server = TestServer::start(|c| {
        c.job_window_s = 2.0;
        c.job_step_s = 1.0;
    })
    .await;
    let video = test_video(server.dir.path(), "long.mp4", 5.0, (96, 96));
    let id = create(&server, video, "?top_k=2").await;
    assert_eq!(id.len(), 32);
    let view = wait_finished(&server, &id).await;
    assert_eq!(view["status"], "done", "{view}");
    assert_eq!(view["progress"].as_f64(), Some(1.0));
    let result = &view["result"];
    let whole = &result["whole"];
    assert_eq!(whole["predictions"].as_array().map(Vec::len), Some(2));
    assert_eq!(whole["video"]["frames"].as_u64(), Some(50));
    let timeline = result["timeline"].as_array().unwrap();
    let spans: Vec<(f64, f64)> = timeline
        .iter()
        .map(|w| (w["start_s"].as_f64().unwrap(), w["end_s"].as_f64().unwrap()))
        .collect();
    assert_eq!(spans, vec![(0.0, 2.0), (1.0, 3.0), (2.0, 4.0), (3.0, 5.0)]);
    for window in timeline {
        assert_eq!(
            window["predictions"].as_array().map(Vec::len),
            Some(2),
            "{window}"
        );
    }
    let metrics = server
        .client
        .get(server.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("revstream_jobs_total{status=\"done\"} 1"),
        "{metrics}"
    );
    server.stop().await;
}

#[tokio::test]
async fn a_cancelled_job_stops_and_says_so() {
    let server = TestServer::start(|_| {}).await;
    let video = test_video(server.dir.path(), "long.mp4", 20.0, (96, 96));
    let id = create(&server, video, "?segments=16").await;
    let response = server
        .client
        .delete(server.url(&format!("/v1/jobs/{id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let view: Value = response.json().await.unwrap();
    assert_eq!(view["status"], "cancelled");
    // It stays cancelled (the worker's later report does not overwrite it) and has no result.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let view = job(&server, &id).await;
    assert_eq!(view["status"], "cancelled");
    assert!(view["result"].is_null(), "{view}");
    // The cancelled work stops: the worker pool is free for new work soon after.
    let started = Instant::now();
    while server.state.pool.queued() > 0 {
        assert!(started.elapsed() < Duration::from_secs(30));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    expect_error(
        server
            .client
            .delete(server.url("/v1/jobs/unknown"))
            .send()
            .await
            .unwrap(),
        404,
        "not_found",
    )
    .await;
    server.stop().await;
}

#[tokio::test]
async fn finished_jobs_expire() {
    let server = TestServer::start(|c| c.job_ttl_s = 1).await;
    let video = test_video(server.dir.path(), "short.mp4", 1.0, (96, 96));
    let id = create(&server, video, "").await;
    let view = wait_finished(&server, &id).await;
    assert_eq!(view["status"], "done");
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let response = server
        .client
        .get(server.url(&format!("/v1/jobs/{id}")))
        .send()
        .await
        .unwrap();
    expect_error(response, 404, "not_found").await;
    server.stop().await;
}
