//! The HTTP API through real requests against the real server, with videos made by
//! the ffmpeg CLI and a tiny untrained (seeded) model: result shapes, every error
//! status with its kind, the OpenAPI document, metrics and the protobuf schema.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::server::{LABELS, TestServer, expect_error, test_video, tiny_model};
use common::videos::audio_only;
use prost::Message;
use revstream::backend::device::Precision;
use revstream::server::types::PredictResponse;
use serde_json::Value;

fn check_prediction(body: &Value, top_k: usize) {
    assert_eq!(body["model"], "tiny");
    let predictions = body["predictions"].as_array().unwrap();
    assert_eq!(predictions.len(), top_k, "{body}");
    let scores: Vec<f64> = predictions
        .iter()
        .map(|p| p["score"].as_f64().unwrap())
        .collect();
    assert!(
        scores.windows(2).all(|w| w[0] >= w[1]),
        "scores sorted best first: {scores:?}"
    );
    assert!(scores.iter().all(|s| (0.0..=1.0).contains(s)), "{scores:?}");
    let indices: BTreeSet<u64> = predictions
        .iter()
        .map(|p| p["index"].as_u64().unwrap())
        .collect();
    assert_eq!(indices.len(), top_k, "distinct classes");
    for p in predictions {
        assert_eq!(p["label"], LABELS[p["index"].as_u64().unwrap() as usize]);
    }
    let video = &body["video"];
    assert_eq!(
        (video["width"].as_u64(), video["height"].as_u64()),
        (Some(96), Some(96)),
        "{video}"
    );
    assert!(
        (video["fps"].as_f64().unwrap() - 10.0).abs() < 1e-6,
        "{video}"
    );
    assert!(
        (video["duration_s"].as_f64().unwrap() - 2.0).abs() < 0.15,
        "{video}"
    );
    assert_eq!(video["frames"].as_u64(), Some(20), "{video}");
    let t = &body["timings_ms"];
    let stage = |k: &str| t[k].as_f64().unwrap_or_else(|| panic!("timing {k} in {t}"));
    assert!(
        stage("decode") > 0.0 && stage("flow") > 0.0 && stage("inference") > 0.0,
        "{t}"
    );
    assert!(stage("queue") >= 0.0);
    assert!(
        stage("total") >= stage("decode") + stage("flow") + stage("inference") - 1e-6,
        "{t}"
    );
}

#[tokio::test]
async fn predicts_from_raw_body_multipart_and_protobuf() {
    let server = TestServer::start(|_| {}).await;
    let video = test_video(server.dir.path(), "pattern.mp4", 2.0, (96, 96));

    let raw = server.post_video("/v1/predict", video.clone()).await;
    assert_eq!(raw.status(), 200);
    let timing = raw.headers()["server-timing"].to_str().unwrap().to_string();
    for stage in [
        "decode;dur=",
        "flow;dur=",
        "queue;dur=",
        "inference;dur=",
        "total;dur=",
    ] {
        assert!(timing.contains(stage), "{timing}");
    }
    assert!(raw.headers().contains_key("x-request-id"));
    let raw: Value = raw.json().await.unwrap();
    // Three classes, default top_k 5: every class, so the scores sum to 1.
    check_prediction(&raw, 3);
    let sum: f64 = raw["predictions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["score"].as_f64().unwrap())
        .sum();
    assert!((sum - 1.0).abs() < 1e-4, "softmax scores sum to {sum}");

    let part = reqwest::multipart::Part::bytes(video.clone())
        .file_name("pattern.mp4")
        .mime_str("video/mp4")
        .unwrap();
    let form = reqwest::multipart::Form::new()
        .text("note", "ignored")
        .part("video", part);
    let multipart = server
        .client
        .post(server.url("/v1/predict?top_k=2"))
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(multipart.status(), 200);
    let multipart: Value = multipart.json().await.unwrap();
    check_prediction(&multipart, 2);
    // Same video, same model: the same two best classes and scores.
    for (a, b) in raw["predictions"]
        .as_array()
        .unwrap()
        .iter()
        .zip(multipart["predictions"].as_array().unwrap())
    {
        assert_eq!(a["index"], b["index"]);
        assert!((a["score"].as_f64().unwrap() - b["score"].as_f64().unwrap()).abs() < 1e-5);
    }

    let proto = server
        .client
        .post(server.url("/v1/predict"))
        .header("content-type", "application/octet-stream")
        .header("accept", "application/x-protobuf")
        .body(video)
        .send()
        .await
        .unwrap();
    assert_eq!(proto.status(), 200);
    assert_eq!(proto.headers()["content-type"], "application/x-protobuf");
    let decoded = PredictResponse::decode(proto.bytes().await.unwrap()).unwrap();
    assert_eq!(decoded.model, "tiny");
    assert_eq!(decoded.video.as_ref().map(|v| v.frames), Some(20));
    for (p, j) in decoded
        .predictions
        .iter()
        .zip(raw["predictions"].as_array().unwrap())
    {
        assert_eq!(p.label, j["label"].as_str().unwrap());
        assert!((p.score as f64 - j["score"].as_f64().unwrap()).abs() < 1e-5);
    }
    server.stop().await;
}

/// Sends `len` bytes as a chunked upload (no Content-Length, so the server must count
/// while streaming) and returns the response's status code.
async fn chunked_upload_status(server: &TestServer, len: usize) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let address = server.base.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    let head = format!(
        "POST /v1/predict HTTP/1.1\r\nHost: {address}\r\nContent-Type: video/mp4\r\n\
         Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let chunk = vec![0u8; 10_000];
    for _ in 0..len / chunk.len() {
        let size = format!("{:x}\r\n", chunk.len()).into_bytes();
        let framed = [size, chunk.clone(), b"\r\n".to_vec()].concat();
        // The server may answer and close before the whole body is sent.
        if stream.write_all(&framed).await.is_err() {
            break;
        }
    }
    let _ = stream.write_all(b"0\r\n\r\n").await;
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response).await;
    let text = String::from_utf8_lossy(&response);
    assert!(text.contains("payload_too_large"), "{text}");
    text.split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0)
}

#[tokio::test]
async fn every_error_has_its_status_and_kind() {
    let server = TestServer::start(|c| c.max_body_bytes = 200_000).await;
    let dir = server.dir.path();
    let video = test_video(dir, "pattern.mp4", 1.0, (96, 96));

    for query in [
        "top_k=0",
        "top_k=4",
        "top_k=abc",
        "segments=0",
        "segments=1000",
    ] {
        let response = server
            .post_video(&format!("/v1/predict?{query}"), video.clone())
            .await;
        expect_error(response, 400, "invalid_parameter").await;
    }
    expect_error(
        server
            .post_video("/v1/predict?model=nope", video.clone())
            .await,
        404,
        "not_found",
    )
    .await;
    expect_error(
        server
            .client
            .get(server.url("/v2/nothing"))
            .send()
            .await
            .unwrap(),
        404,
        "not_found",
    )
    .await;

    for (method, path, allow) in [
        (reqwest::Method::GET, "/v1/predict", "POST"),
        (reqwest::Method::PUT, "/v1/jobs/123", "GET,HEAD,DELETE"),
        (reqwest::Method::POST, "/health", "GET,HEAD"),
        (reqwest::Method::POST, "/openapi.json", "GET,HEAD"),
    ] {
        let response = server
            .client
            .request(method.clone(), server.url(path))
            .send()
            .await
            .unwrap();
        assert_eq!(response.headers()["allow"], allow, "{method} {path}");
        let body = expect_error(response, 405, "method_not_allowed").await;
        assert!(body["error"].as_str().unwrap().contains(path), "{body}");
    }

    let too_big = vec![0u8; 300_000];
    expect_error(
        server.post_video("/v1/predict", too_big).await,
        413,
        "payload_too_large",
    )
    .await;

    assert_eq!(
        chunked_upload_status(&server, 300_000).await,
        413,
        "streamed past the limit"
    );

    let text = server
        .client
        .post(server.url("/v1/predict"))
        .header("content-type", "text/plain");
    expect_error(
        text.body("hello").send().await.unwrap(),
        415,
        "unsupported_media_type",
    )
    .await;
    let untyped = server
        .client
        .post(server.url("/v1/predict"))
        .body(video.clone());
    let body = expect_error(untyped.send().await.unwrap(), 415, "unsupported_media_type").await;
    assert!(
        body["error"].as_str().unwrap().contains("no content type"),
        "{body}"
    );
    // What `curl --data-binary @clip.mp4` sends: the message says how to fix it.
    let curl_default = server
        .client
        .post(server.url("/v1/predict"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(video.clone());
    let body = expect_error(
        curl_default.send().await.unwrap(),
        415,
        "unsupported_media_type",
    )
    .await;
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("-H 'Content-Type: video/mp4'"),
        "{body}"
    );
    let form = reqwest::multipart::Form::new().text("other", "no video here");
    let no_field = server
        .client
        .post(server.url("/v1/predict"))
        .multipart(form);
    expect_error(no_field.send().await.unwrap(), 400, "invalid_parameter").await;

    let not_video = b"this is plain text, not a video at all".repeat(20);
    expect_error(
        server.post_video("/v1/predict", not_video).await,
        422,
        "not_a_video",
    )
    .await;
    let audio = std::fs::read(audio_only(dir)).unwrap();
    expect_error(
        server.post_video("/v1/predict", audio).await,
        422,
        "no_video_stream",
    )
    .await;
    let truncated = video[..video.len() / 2].to_vec();
    let response = server.post_video("/v1/predict", truncated).await;
    assert_eq!(response.status(), 422);
    let body: Value = response.json().await.unwrap();
    assert!(
        ["corrupt_video", "not_a_video"].contains(&body["kind"].as_str().unwrap()),
        "{body}"
    );
    server.stop().await;
}

#[tokio::test]
async fn api_key_guards_v1_but_not_health() {
    let server = TestServer::start(|c| c.api_key = Some("s3cret".to_string())).await;
    let models = server.url("/v1/models");
    expect_error(
        server.client.get(&models).send().await.unwrap(),
        401,
        "unauthorized",
    )
    .await;
    let wrong = server.client.get(&models).bearer_auth("guess");
    expect_error(wrong.send().await.unwrap(), 401, "unauthorized").await;
    let right = server
        .client
        .get(&models)
        .bearer_auth("s3cret")
        .send()
        .await
        .unwrap();
    assert_eq!(right.status(), 200);
    assert_eq!(
        server
            .client
            .get(server.url("/health"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    server.stop().await;
}

#[tokio::test]
async fn describes_models_and_health() {
    let server = TestServer::start(|_| {}).await;
    let health: Value = server.get_json("/health").await;
    assert_eq!(health["status"], "ok");
    // The default device is `auto`: the CPU in a build without CUDA.
    assert_eq!(health["models"][0]["device"], "cpu");
    assert_eq!(health["models"][0]["dtype"], "f32");
    for path in ["/v1/models/default", "/v1/models/tiny"] {
        let model: Value = server.get_json(path).await;
        assert_eq!(model["name"], "tiny");
        assert_eq!(model["labels"], serde_json::json!(LABELS));
        assert_eq!(
            model["input"],
            serde_json::json!({
                "frames": 4, "size": 32, "flow_stack": 2, "preset": "fast", "segments": 1,
                "flow_supersample": 1
            })
        );
        assert_eq!(
            (model["backend"].as_str(), model["device"].as_str()),
            (Some("candle"), Some("cpu"))
        );
        assert_eq!(model["dtype"], "f32");
        assert_eq!(model["status"], "ready");
    }
    let list: Value = server.get_json("/v1/models").await;
    assert_eq!(list["models"].as_array().map(Vec::len), Some(1));
    server.stop().await;
}

#[tokio::test]
async fn bf16_on_an_explicit_cpu_is_refused_and_downgraded_under_auto() {
    let server = TestServer::start_unready(
        |dir| vec![tiny_model(dir, "tiny", 1)],
        |c| {
            c.device = "cpu".to_string();
            c.dtype = Precision::Bf16;
        },
    )
    .await;
    let failure = server.state.models.wait_loaded().await.unwrap_err();
    assert!(
        failure.contains("bf16 inference needs a CUDA device"),
        "{failure}"
    );
    let body = expect_error(
        server
            .client
            .get(server.url("/health"))
            .send()
            .await
            .unwrap(),
        503,
        "not_ready",
    )
    .await;
    assert!(body["error"].as_str().unwrap().contains("bf16"), "{body}");
    server.stop().await;

    let server = TestServer::start(|c| {
        c.device = "auto".to_string();
        c.dtype = Precision::Bf16;
    })
    .await;
    let model: Value = server.get_json("/v1/models/default").await;
    assert_eq!(
        (model["device"].as_str(), model["dtype"].as_str()),
        (Some("cpu"), Some("f32"))
    );
    server.stop().await;
}

#[tokio::test]
async fn openapi_lists_every_route_and_docs_are_served() {
    let server = TestServer::start(|_| {}).await;
    let spec: Value = server.get_json("/openapi.json").await;
    let expected = [
        ("/v1/predict", "post"),
        ("/v1/jobs", "post"),
        ("/v1/jobs/{id}", "get"),
        ("/v1/jobs/{id}", "delete"),
        ("/v1/jobs/{id}/events", "get"),
        ("/v1/models", "get"),
        ("/v1/models/{name}", "get"),
        ("/health", "get"),
        ("/metrics", "get"),
    ];
    for (path, method) in expected {
        assert!(
            spec["paths"][path][method].is_object(),
            "{method} {path} missing from the spec"
        );
    }
    assert_eq!(
        spec["paths"].as_object().unwrap().len(),
        8,
        "no undocumented extras"
    );
    let predict = &spec["paths"]["/v1/predict"]["post"]["responses"];
    for status in ["200", "400", "401", "413", "415", "422", "429", "503"] {
        assert!(predict[status].is_object(), "predict documents {status}");
    }
    let docs = server
        .client
        .get(server.url("/docs/"))
        .send()
        .await
        .unwrap();
    assert_eq!(docs.status(), 200);
    assert!(
        docs.text()
            .await
            .unwrap()
            .to_lowercase()
            .contains("swagger")
    );
    server.stop().await;
}

/// The value of the metric line that starts with `prefix`.
fn metric(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find(|l| {
            let (series, _) = l.rsplit_once(' ').unwrap();
            series.split('{').next() == Some(name)
                && labels
                    .iter()
                    .all(|(k, v)| series.contains(&format!("{k}=\"{v}\"")))
        })
        .map(|l| l.rsplit_once(' ').unwrap().1.parse().unwrap())
        .unwrap_or(0.0)
}

#[tokio::test]
async fn metrics_count_what_happened() {
    let server = TestServer::start(|_| {}).await;
    let video = test_video(server.dir.path(), "pattern.mp4", 1.0, (96, 96));
    for _ in 0..2 {
        assert_eq!(
            server
                .post_video("/v1/predict", video.clone())
                .await
                .status(),
            200
        );
    }
    let text = server
        .client
        .post(server.url("/v1/predict"))
        .header("content-type", "text/plain");
    assert_eq!(text.body("x").send().await.unwrap().status(), 415);
    assert_eq!(
        server
            .post_video("/v1/predict", b"not a video".repeat(10))
            .await
            .status(),
        422
    );

    let m = server
        .client
        .get(server.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let requests = "revstream_http_requests_total";
    assert_eq!(
        metric(&m, requests, &[("route", "/v1/predict"), ("status", "200")]),
        2.0,
        "{m}"
    );
    assert_eq!(
        metric(&m, requests, &[("route", "/v1/predict"), ("status", "415")]),
        1.0
    );
    assert_eq!(
        metric(&m, requests, &[("route", "/v1/predict"), ("status", "422")]),
        1.0
    );
    assert_eq!(
        metric(
            &m,
            "revstream_errors_total",
            &[("kind", "unsupported_media_type")]
        ),
        1.0
    );
    assert_eq!(
        metric(&m, "revstream_errors_total", &[("kind", "not_a_video")]),
        1.0
    );
    assert_eq!(metric(&m, "revstream_videos_processed_total", &[]), 2.0);
    // Tiny model: T = 4 positions of L + 1 = 3 frames each, per video.
    assert_eq!(metric(&m, "revstream_frames_processed_total", &[]), 24.0);
    for stage in ["decode", "flow", "queue", "inference", "total"] {
        assert_eq!(
            metric(
                &m,
                "revstream_stage_duration_seconds_count",
                &[("stage", stage)]
            ),
            2.0,
            "{stage}"
        );
    }
    // Two forward passes (plus none for the refused requests), each of one sample.
    assert_eq!(metric(&m, "revstream_batch_size_count", &[]), 2.0);
    assert_eq!(
        metric(&m, "revstream_queue_depth", &[("queue", "model")]),
        0.0
    );
    server.stop().await;
}

/// Messages and their fields (name → tag) from proto/revstream.proto.
fn proto_messages() -> BTreeMap<String, BTreeMap<String, u32>> {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/proto/revstream.proto"
    ))
    .unwrap();
    let mut messages = BTreeMap::new();
    let mut current: Option<(String, BTreeMap<String, u32>)> = None;
    for line in text.lines().map(|l| l.split("//").next().unwrap().trim()) {
        if let Some(name) = line.strip_prefix("message ") {
            current = Some((
                name.trim_end_matches('{').trim().to_string(),
                BTreeMap::new(),
            ));
        } else if line == "}" {
            let (name, fields) = current.take().unwrap();
            messages.insert(name, fields);
        } else if let (Some((_, fields)), Some((decl, tag))) =
            (current.as_mut(), line.split_once('='))
        {
            let name = decl.split_whitespace().last().unwrap().to_string();
            fields.insert(name, tag.trim_end_matches(';').trim().parse().unwrap());
        }
    }
    messages
}

fn keys(value: &Value) -> BTreeSet<String> {
    value.as_object().unwrap().keys().cloned().collect()
}

#[tokio::test]
async fn json_and_protobuf_share_one_schema() {
    let proto = proto_messages();
    let fields = |m: &str| proto[m].keys().cloned().collect::<BTreeSet<_>>();
    let server = TestServer::start(|_| {}).await;
    let video = test_video(server.dir.path(), "pattern.mp4", 1.0, (96, 96));
    let body: Value = server
        .post_video("/v1/predict", video)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(keys(&body), fields("PredictResponse"));
    assert_eq!(keys(&body["predictions"][0]), fields("Prediction"));
    assert_eq!(keys(&body["video"]), fields("VideoSummary"));
    assert_eq!(keys(&body["timings_ms"]), fields("Timings"));
    let model: Value = server.get_json("/v1/models/tiny").await;
    assert_eq!(keys(&model), fields("ModelInfo"));
    assert_eq!(keys(&model["input"]), fields("InputSpec"));
    let error: Value = server
        .post_video("/v1/predict?top_k=0", vec![0])
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(keys(&error), fields("ErrorBody"));
    // Tags: a message encoded by the server's types decodes field by field as the
    // .proto numbers them (label = 1, index = 2, score = 3).
    let p = revstream::server::types::Prediction {
        label: "x".into(),
        index: 2,
        score: 0.5,
    };
    let bytes = p.encode_to_vec();
    assert_eq!(proto["Prediction"]["label"], 1);
    assert_eq!(bytes[0] >> 3, 1, "label tag");
    assert_eq!(bytes[3] >> 3, 2, "index tag");
    assert_eq!(bytes[5] >> 3, 3, "score tag");
    server.stop().await;
}

#[tokio::test]
async fn concurrent_requests_share_forward_passes() {
    // A long batch wait makes requests that finish decoding close together meet in
    // one batch.
    let server = TestServer::start(|c| {
        c.max_batch = 8;
        c.max_batch_wait_ms = 1500;
    })
    .await;
    let video = test_video(server.dir.path(), "pattern.mp4", 1.0, (96, 96));
    let requests = (0..4).map(|_| server.post_video("/v1/predict", video.clone()));
    let responses = futures_util::future::join_all(requests).await;
    let mut bodies = Vec::new();
    for response in responses {
        assert_eq!(response.status(), 200);
        bodies.push(response.json::<Value>().await.unwrap());
    }
    // Batched or not, every request gets the same answer for the same video.
    for body in &bodies[1..] {
        let (a, b) = (
            body["predictions"].as_array().unwrap(),
            bodies[0]["predictions"].as_array().unwrap(),
        );
        for (x, y) in a.iter().zip(b) {
            assert_eq!(x["index"], y["index"]);
            assert!((x["score"].as_f64().unwrap() - y["score"].as_f64().unwrap()).abs() < 1e-5);
        }
    }
    let m = server
        .client
        .get(server.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let passes = metric(&m, "revstream_batch_size_count", &[]);
    assert_eq!(
        metric(&m, "revstream_batch_size_sum", &[]),
        4.0,
        "four samples in all"
    );
    assert!(
        passes < 4.0,
        "{passes} forward passes for 4 concurrent requests"
    );
    server.stop().await;
}
