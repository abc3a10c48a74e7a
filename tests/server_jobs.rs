//! Jobs through real HTTP: a long video's timeline of sliding windows plus the whole
//! video, windows streamed as Server-Sent Events while the job runs, cancellation, and
//! expiry of finished jobs.

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
    let at_cancel: Value = response.json().await.unwrap();
    assert_eq!(at_cancel["status"], "cancelled");
    // It stays cancelled (the worker's later reports do not overwrite it): the windows
    // finished before the cancel are all it has, and no whole-video result.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let view = job(&server, &id).await;
    assert_eq!(view["status"], "cancelled");
    assert_eq!(view["result"], at_cancel["result"], "{view}");
    assert!(view["result"]["whole"].is_null(), "{view}");
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

/// One Server-Sent Event: its name and JSON data.
type SseEvent = (String, Value);

/// Reads events from `response` until one named `done` or `error` (inclusive), calling
/// `on_event` with each as it arrives.
async fn read_events(
    mut response: reqwest::Response,
    mut on_event: impl AsyncFnMut(&SseEvent),
) -> Vec<SseEvent> {
    assert_eq!(response.status(), 200);
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        content_type.starts_with("text/event-stream"),
        "{content_type}"
    );
    let mut buffer = String::new();
    let mut events = Vec::new();
    loop {
        let chunk = tokio::time::timeout(Duration::from_secs(60), response.chunk())
            .await
            .expect("an event within 60 s")
            .unwrap()
            .expect("the stream ended before `done` or `error`");
        buffer.push_str(std::str::from_utf8(&chunk).unwrap());
        while let Some(at) = buffer.find("\n\n") {
            let block: String = buffer.drain(..at + 2).collect();
            let mut name = None;
            let mut data = String::new();
            for line in block.lines() {
                if let Some(v) = line.strip_prefix("event: ") {
                    name = Some(v.to_string());
                } else if let Some(v) = line.strip_prefix("data: ") {
                    data.push_str(v);
                }
            }
            // Keep-alive comments have neither.
            let Some(name) = name else { continue };
            let event = (name, serde_json::from_str(&data).unwrap());
            on_event(&event).await;
            let last = event.0 == "done" || event.0 == "error";
            events.push(event);
            if last {
                return events;
            }
        }
    }
}

async fn events(server: &TestServer, id: &str) -> reqwest::Response {
    server
        .client
        .get(server.url(&format!("/v1/jobs/{id}/events")))
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn windows_stream_as_events_in_order_while_the_job_runs() {
    let server = TestServer::start(|_| {}).await;
    let video = test_video(server.dir.path(), "long.mp4", 8.0, (64, 64));
    let id = create(&server, video, "?window_s=2&hop_s=0.5&top_k=1").await;
    let mut seen_in_get = 0;
    let streamed = read_events(events(&server, &id).await, async |(name, data)| {
        if name == "window" && seen_in_get == 0 {
            // Whatever the job's state by now, GET shows at least this window.
            let view = job(&server, &id).await;
            let timeline = view["result"]["timeline"].as_array().unwrap().clone();
            assert_eq!(timeline.first(), Some(data), "{view}");
            seen_in_get = timeline.len();
        }
    })
    .await;
    assert!(seen_in_get >= 1);
    let (last, windows) = streamed.split_last().unwrap();
    assert_eq!(last.0, "done", "{}", last.1);
    let starts: Vec<f64> = windows
        .iter()
        .map(|(name, w)| {
            assert_eq!(name, "window");
            assert_eq!(w["predictions"].as_array().map(Vec::len), Some(1), "{w}");
            w["start_s"].as_f64().unwrap()
        })
        .collect();
    // 8 s in windows of 2 s every 0.5 s: 13 windows, in time order.
    let expected: Vec<f64> = (0..13).map(|i| i as f64 * 0.5).collect();
    assert_eq!(starts, expected);
    let view = job(&server, &id).await;
    assert_eq!(last.1, view, "the `done` event carries the final state");
    let timeline: Vec<Value> = windows.iter().map(|(_, w)| w.clone()).collect();
    assert_eq!(view["result"]["timeline"].as_array(), Some(&timeline));
    assert_eq!(
        view["result"]["whole"]["video"]["frames"].as_u64(),
        Some(80)
    );

    // A client that connects after the end gets the whole story at once.
    let replay = read_events(events(&server, &id).await, async |_| {}).await;
    assert_eq!(replay, streamed);
    let started = Instant::now();
    while !server
        .state
        .metrics
        .render()
        .contains("revstream_sse_clients 0")
    {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "SSE clients not released"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    server.stop().await;
}

#[tokio::test]
async fn a_cancelled_jobs_stream_ends_with_an_error_event() {
    let server = TestServer::start(|_| {}).await;
    let video = test_video(server.dir.path(), "long.mp4", 20.0, (96, 96));
    let id = create(&server, video, "?segments=16").await;
    // Cancelled as soon as its first window arrives: a job that published its windows
    // only at the end would send `done` before any window, and never be cancelled.
    let mut cancelled = false;
    let streamed = read_events(events(&server, &id).await, async |(name, _)| {
        if name == "window" && !cancelled {
            let url = server.url(&format!("/v1/jobs/{id}"));
            let response = server.client.delete(url).send().await.unwrap();
            assert_eq!(response.status(), 200);
            cancelled = true;
        }
    })
    .await;
    let (last, windows) = streamed.split_last().unwrap();
    assert_eq!(
        (last.0.as_str(), last.1["kind"].as_str()),
        ("error", Some("cancelled")),
        "{}",
        last.1
    );
    // 19 windows of 2 s every 1 s over 20 s: the stream stopped part way.
    assert!(
        (1..19).contains(&windows.len()),
        "{} windows",
        windows.len()
    );
    let view = job(&server, &id).await;
    assert_eq!(
        view["result"]["timeline"].as_array().map(Vec::len),
        Some(windows.len())
    );
    server.stop().await;
}

#[tokio::test]
async fn window_parameters_are_checked() {
    let server = TestServer::start(|_| {}).await;
    let video = test_video(server.dir.path(), "short.mp4", 1.0, (64, 64));
    for query in [
        "?window_s=0",
        "?hop_s=0.01",
        "?window_s=NaN",
        "?hop_s=1e9",
        "?window_s=x",
    ] {
        let response = server
            .post_video(&format!("/v1/jobs{query}"), video.clone())
            .await;
        expect_error(response, 400, "invalid_parameter").await;
    }
    let response = server.post_video("/v1/predict?window_s=2", video).await;
    expect_error(response, 400, "invalid_parameter").await;
    expect_error(events(&server, "unknown").await, 404, "not_found").await;
    server.stop().await;
}
