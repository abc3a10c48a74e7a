//! Behaviour under pressure and at the edges of the server's life: bursts over capacity
//! get 429 (never 5xx) and the server recovers; a request over the timeout gets 503; a model that fails to load keeps /health
//! at 503; shutdown finishes the requests in flight.

mod common;

use std::time::Duration;

use common::server::{TestServer, expect_error, test_video, tiny_model};
use serde_json::Value;

#[tokio::test]
async fn a_burst_over_capacity_gets_429s_and_no_5xx() {
    let server = TestServer::start(|c| {
        c.max_concurrent = 2;
        c.workers = 1;
        c.worker_queue = 1;
    })
    .await;
    let video = test_video(server.dir.path(), "pattern.mp4", 2.0, (96, 96));
    let requests = (0..12).map(|_| {
        let request = server
            .client
            .post(server.url("/v1/predict?segments=4"))
            .header("content-type", "video/mp4")
            .body(video.clone());
        async move {
            let response = request.send().await.unwrap();
            let status = response.status().as_u16();
            let retry_after = response
                .headers()
                .get("retry-after")
                .map(|v| v.to_str().unwrap().to_string());
            let body: Value = response.json().await.unwrap();
            (status, retry_after, body)
        }
    });
    let results = futures_util::future::join_all(requests).await;
    let ok = results.iter().filter(|r| r.0 == 200).count();
    let refused: Vec<_> = results.iter().filter(|r| r.0 == 429).collect();
    assert!(
        ok >= 1,
        "some requests succeed: {:?}",
        results.iter().map(|r| r.0).collect::<Vec<_>>()
    );
    assert!(!refused.is_empty(), "some requests are refused");
    assert_eq!(
        ok + refused.len(),
        results.len(),
        "only 200 and 429: {:?}",
        results.iter().map(|r| r.0).collect::<Vec<_>>()
    );
    for (_, retry_after, body) in refused {
        assert_eq!(body["kind"], "overloaded");
        assert_eq!(retry_after.as_deref(), Some("1"));
    }
    // Recovered: a request on its own succeeds.
    assert_eq!(server.post_video("/v1/predict", video).await.status(), 200);
    server.stop().await;
}

#[tokio::test]
async fn a_model_that_fails_to_load_keeps_health_at_503() {
    let server = TestServer::start_unready(
        |dir| {
            let folder = tiny_model(dir, "broken", 1);
            std::fs::write(folder.join("model.safetensors"), b"not safetensors").unwrap();
            vec![folder]
        },
        |_| {},
    )
    .await;
    assert!(server.state.models.wait_loaded().await.is_err());
    let health = server
        .client
        .get(server.url("/health"))
        .send()
        .await
        .unwrap();
    let body = expect_error(health, 503, "not_ready").await;
    assert!(
        body["error"].as_str().unwrap().contains("failed to load"),
        "{body}"
    );
    let video = test_video(server.dir.path(), "pattern.mp4", 1.0, (96, 96));
    expect_error(
        server.post_video("/v1/predict", video).await,
        503,
        "not_ready",
    )
    .await;
    let model: Value = server.get_json("/v1/models/broken").await;
    assert_eq!(model["status"], "failed");
    server.stop().await;
}

#[tokio::test]
async fn a_request_over_the_timeout_gets_503() {
    let server = TestServer::start(|c| c.request_timeout_s = 0.001).await;
    let video = test_video(server.dir.path(), "pattern.mp4", 1.0, (96, 96));
    let response = server.post_video("/v1/predict", video).await;
    assert_eq!(
        response
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap()),
        Some("1")
    );
    expect_error(response, 503, "timeout").await;
    server.stop().await;
}

#[tokio::test]
async fn shutdown_finishes_requests_in_flight() {
    let server = TestServer::start(|c| c.max_concurrent = 4).await;
    let video = test_video(server.dir.path(), "long.mp4", 4.0, (160, 120));
    let request = server
        .client
        .post(server.url("/v1/predict?segments=16"))
        .header("content-type", "video/mp4")
        .body(video)
        .send();
    let in_flight = tokio::spawn(request);
    // Wait until the handler holds its slot, i.e. the request is being served.
    let admission = server.state.admission.clone();
    while admission.available_permits() == 4 {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    server.stop().await;
    let response = in_flight.await.unwrap().unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["predictions"].as_array().map(Vec::len), Some(3));
}
