//! The API's messages: one definition each, serialised as JSON (serde), described in
//! OpenAPI (utoipa) and encoded as protobuf (prost) to match `proto/revstream.proto`.

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// Query parameters of `POST /v1/predict` and `POST /v1/jobs`.
#[derive(Debug, Clone, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PredictParams {
    /// How many labels to return, best first (1 to the number of classes; default 5).
    pub top_k: Option<usize>,
    /// How many segments of the video to score and average (1 to 64; default from the model).
    pub segments: Option<usize>,
    /// Which model to use (default `default`).
    pub model: Option<String>,
    /// `POST /v1/jobs` only: seconds per timeline window (0.1 to 3600; default the
    /// server's `--job-window-s`).
    pub window_s: Option<f64>,
    /// `POST /v1/jobs` only: seconds between windows' starts (0.1 to 3600; default the
    /// server's `--job-step-s`).
    pub hop_s: Option<f64>,
}

/// One recognised action.
#[derive(Clone, PartialEq, Serialize, ToSchema, prost::Message)]
pub struct Prediction {
    /// The class's label.
    #[prost(string, tag = "1")]
    pub label: String,
    /// The class's index in the model's output.
    #[prost(uint32, tag = "2")]
    pub index: u32,
    /// Probability after softmax of the fused scores, 0 to 1.
    #[prost(float, tag = "3")]
    pub score: f32,
}

/// What the server learnt about the uploaded video.
#[derive(Clone, PartialEq, Serialize, ToSchema, prost::Message)]
pub struct VideoSummary {
    /// Duration in seconds.
    #[prost(double, tag = "1")]
    pub duration_s: f64,
    /// Frames per second.
    #[prost(double, tag = "2")]
    pub fps: f64,
    /// Width in pixels, after rotation.
    #[prost(uint32, tag = "3")]
    pub width: u32,
    /// Height in pixels, after rotation.
    #[prost(uint32, tag = "4")]
    pub height: u32,
    /// Number of frames.
    #[prost(uint64, tag = "5")]
    pub frames: u64,
}

/// Milliseconds spent in each stage.
#[derive(Clone, PartialEq, Serialize, ToSchema, prost::Message)]
pub struct Timings {
    /// Opening, decoding, sampling and resizing frames.
    #[prost(double, tag = "1")]
    pub decode: f64,
    /// TV-L1 optical flow.
    #[prost(double, tag = "2")]
    pub flow: f64,
    /// Waiting for a worker and for the model.
    #[prost(double, tag = "3")]
    pub queue: f64,
    /// The model's forward pass.
    #[prost(double, tag = "4")]
    pub inference: f64,
    /// The whole request, upload excluded.
    #[prost(double, tag = "5")]
    pub total: f64,
}

/// The answer of `POST /v1/predict`.
#[derive(Clone, PartialEq, Serialize, ToSchema, prost::Message)]
pub struct PredictResponse {
    /// The model's name.
    #[prost(string, tag = "1")]
    pub model: String,
    /// The top-k actions, best first.
    #[prost(message, repeated, tag = "2")]
    pub predictions: Vec<Prediction>,
    /// The video's properties.
    #[prost(message, optional, tag = "3")]
    pub video: Option<VideoSummary>,
    /// Time per stage.
    #[prost(message, optional, tag = "4")]
    pub timings_ms: Option<Timings>,
}

/// The answer of `POST /v1/jobs`.
#[derive(Clone, PartialEq, Serialize, ToSchema, prost::Message)]
pub struct JobCreated {
    /// The job's id, for `GET /v1/jobs/{id}`.
    #[prost(string, tag = "1")]
    pub id: String,
}

/// Predictions for one window of a long video.
#[derive(Clone, PartialEq, Serialize, ToSchema, prost::Message)]
pub struct Window {
    /// Start of the window, in seconds.
    #[prost(double, tag = "1")]
    pub start_s: f64,
    /// End of the window, in seconds.
    #[prost(double, tag = "2")]
    pub end_s: f64,
    /// The top-k actions in this window, best first.
    #[prost(message, repeated, tag = "3")]
    pub predictions: Vec<Prediction>,
}

/// A job's result so far: the timeline's finished windows in time order, and the
/// whole-video prediction once the job is done.
#[derive(Clone, PartialEq, Serialize, ToSchema, prost::Message)]
pub struct JobResult {
    /// The prediction for the whole video.
    #[prost(message, optional, tag = "1")]
    pub whole: Option<PredictResponse>,
    /// Predictions per window, in time order.
    #[prost(message, repeated, tag = "2")]
    pub timeline: Vec<Window>,
}

/// A job's state, as `GET /v1/jobs/{id}` reports it.
#[derive(Clone, PartialEq, Serialize, ToSchema, prost::Message)]
pub struct JobView {
    /// The job's id.
    #[prost(string, tag = "1")]
    pub id: String,
    /// `queued`, `running`, `done`, `failed` or `cancelled`.
    #[prost(string, tag = "2")]
    pub status: String,
    /// Fraction of the work done, 0 to 1.
    #[prost(float, tag = "3")]
    pub progress: f32,
    /// The result so far (absent until the first window finishes).
    #[prost(message, optional, tag = "4")]
    pub result: Option<JobResult>,
    /// Why it failed, if it did.
    #[prost(message, optional, tag = "5")]
    pub error: Option<crate::server::error::ErrorBody>,
}

/// What a model expects as input.
#[derive(Clone, PartialEq, Serialize, ToSchema, prost::Message)]
pub struct InputSpec {
    /// Time positions per sample (T).
    #[prost(uint32, tag = "1")]
    pub frames: u32,
    /// Side of the square input, in pixels.
    #[prost(uint32, tag = "2")]
    pub size: u32,
    /// Optical flows stacked per position (L).
    #[prost(uint32, tag = "3")]
    pub flow_stack: u32,
    /// TV-L1 preset used to compute flow.
    #[prost(string, tag = "4")]
    pub preset: String,
    /// Segments scored per video by default.
    #[prost(uint32, tag = "5")]
    pub segments: u32,
    /// Flow is computed on frames this many times the input size, then pooled back
    /// (1: at the input size; 0 for an RGB-only model).
    #[prost(uint32, tag = "6")]
    pub flow_supersample: u32,
}

/// A served model, as `GET /v1/models/{name}` describes it.
#[derive(Clone, PartialEq, Serialize, ToSchema, prost::Message)]
pub struct ModelInfo {
    /// The model's name.
    #[prost(string, tag = "1")]
    pub name: String,
    /// Class labels, by index.
    #[prost(string, repeated, tag = "2")]
    pub labels: Vec<String>,
    /// Input specification.
    #[prost(message, optional, tag = "3")]
    pub input: Option<InputSpec>,
    /// Inference engine.
    #[prost(string, tag = "4")]
    pub backend: String,
    /// Device it runs on (`cpu`, `cuda:0`; empty while loading).
    #[prost(string, tag = "5")]
    pub device: String,
    /// `loading`, `ready` or `failed`.
    #[prost(string, tag = "6")]
    pub status: String,
    /// Floating-point type of the forward pass (`f32`, `bf16`; empty while loading).
    #[prost(string, tag = "7")]
    pub dtype: String,
}

/// The answer of `GET /v1/models`.
#[derive(Clone, PartialEq, Serialize, ToSchema, prost::Message)]
pub struct ModelList {
    /// Every served model.
    #[prost(message, repeated, tag = "1")]
    pub models: Vec<ModelInfo>,
}

/// The answer of `GET /health`.
#[derive(Clone, PartialEq, Serialize, ToSchema, prost::Message)]
pub struct Health {
    /// `ok`, `loading` or `failed`.
    #[prost(string, tag = "1")]
    pub status: String,
    /// Each model's name and status.
    #[prost(message, repeated, tag = "2")]
    pub models: Vec<ModelInfo>,
}
