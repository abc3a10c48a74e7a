//! `--backend ort` serves the same predictions as `--backend candle`, and a missing
//! ONNX Runtime library fails the model's start-up with a clear message.
#![cfg(feature = "ort")]

mod common;
mod onnx_common;

use common::server::{TestServer, test_video, tiny_model};
use revstream::backend::BackendKind;
use serde_json::Value;

/// Largest difference allowed between the two servers' class scores (probabilities).
const TOLERANCE: f64 = 1e-4;

async fn predict(server: &TestServer, video: Vec<u8>) -> Vec<(u64, f64)> {
    let response = server.post_video("/v1/predict?top_k=3", video).await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    let mut scores: Vec<(u64, f64)> = body["predictions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["index"].as_u64().unwrap(), p["score"].as_f64().unwrap()))
        .collect();
    scores.sort_by_key(|s| s.0);
    scores
}

#[tokio::test]
async fn ort_backend_serves_the_same_scores_as_candle() {
    let library = onnx_common::ort_library();
    let candle = TestServer::start(|_| {}).await;
    // The very same folder: tiny_model's draws depend on an unseeded initialisation.
    let folder = candle.dir.path().join("tiny");
    let ort = TestServer::start_with_models(
        |_| vec![folder],
        |c| {
            c.backend = BackendKind::Ort;
            c.ort_library = Some(library);
        },
    )
    .await;
    let model: Value = ort
        .client
        .get(ort.url("/v1/models/tiny"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        (model["backend"].as_str(), model["device"].as_str()),
        (Some("ort"), Some("cpu"))
    );
    let video = test_video(candle.dir.path(), "pattern.mp4", 2.0, (96, 96));
    let expected = predict(&candle, video.clone()).await;
    let got = predict(&ort, video).await;
    assert_eq!(expected.len(), 3);
    for ((ci, cs), (oi, os)) in expected.iter().zip(&got) {
        assert_eq!(ci, oi);
        assert!((cs - os).abs() <= TOLERANCE, "{expected:?} vs {got:?}");
    }
    candle.stop().await;
    ort.stop().await;
}

#[tokio::test]
async fn a_missing_library_fails_the_model_with_a_clear_error() {
    let server = TestServer::start_unready(
        |dir| vec![tiny_model(dir, "tiny", 7)],
        |c| {
            c.backend = BackendKind::Ort;
            c.ort_library = Some("/nonexistent/libonnxruntime.so".into());
        },
    )
    .await;
    let err = server.state.models.wait_loaded().await.unwrap_err();
    assert!(err.contains("cannot load ONNX Runtime"), "{err}");
    assert!(err.contains("/nonexistent/libonnxruntime.so"), "{err}");
    server.stop().await;
}
