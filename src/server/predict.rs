//! One prediction: decode and flow on the worker pool, then the model through its
//! batching queue, then the top-k labels.

use std::sync::Arc;
use std::time::Instant;

use super::AppState;
use super::error::ApiError;
use super::models::ServedModel;
use super::spool::Upload;
use super::types::{PredictParams, PredictResponse, Prediction, Timings, VideoSummary};
use crate::pipeline::preprocess::Prepared;
use crate::pipeline::scores;
use crate::pipeline::{Cancel, PipelineError};
use crate::video::VideoInfo;

/// Most segments a request may ask for (each costs T x L flow fields).
pub const MAX_SEGMENTS: usize = 64;

/// A request's validated parameters.
#[derive(Clone)]
pub struct Request {
    /// The model to use.
    pub model: Arc<ServedModel>,
    /// Labels to return.
    pub top_k: usize,
    /// Segments to score and average.
    pub segments: usize,
}

impl Request {
    /// Checks `params` against the served models: 404 for an unknown model, 400 for a
    /// `top_k` or `segments` out of range.
    pub fn validate(state: &AppState, params: &PredictParams) -> Result<Request, ApiError> {
        let name = params.model.as_deref().unwrap_or("default");
        let model = state.models.get(name).cloned().ok_or_else(|| {
            ApiError::new(
                super::error::ErrorKind::NotFound,
                format!("no model named {name:?}"),
            )
        })?;
        let classes = model.labels.len();
        let top_k = params.top_k.unwrap_or(5).min(classes);
        if params.top_k.is_some_and(|k| k == 0 || k > classes) {
            return Err(ApiError::invalid(format!(
                "top_k must be between 1 and {classes}"
            )));
        }
        let segments = params.segments.unwrap_or(model.default_segments);
        if segments == 0 || segments > MAX_SEGMENTS {
            return Err(ApiError::invalid(format!(
                "segments must be between 1 and {MAX_SEGMENTS}"
            )));
        }
        Ok(Request {
            model,
            top_k,
            segments,
        })
    }
}

/// The video's properties as the API reports them.
pub fn summary(info: &VideoInfo) -> VideoSummary {
    VideoSummary {
        duration_s: info.duration_s,
        fps: info.fps,
        width: info.width,
        height: info.height,
        frames: info.frames,
    }
}

/// The `k` most probable classes of `probabilities`, best first.
pub fn top_k(probabilities: &[f32], labels: &[String], k: usize) -> Vec<Prediction> {
    scores::ranked(probabilities, k)
        .into_iter()
        .map(|(i, score)| Prediction {
            label: labels.get(i).cloned().unwrap_or_default(),
            index: i as u32,
            score,
        })
        .collect()
}

/// Decodes and prepares a whole video on the worker pool.
pub async fn prepare_on_pool(
    state: &AppState,
    request: &Request,
    upload: Upload,
    cancel: &Cancel,
) -> Result<(VideoInfo, Prepared, f64), ApiError> {
    let limits = state.config.limits();
    let pre = request.model.preprocessing.clone();
    let segments = request.segments;
    let worker_cancel = cancel.clone();
    let submitted = Instant::now();
    // The worker thread logs inside the request's span, so its lines carry the request id.
    let span = tracing::Span::current();
    let receiver = state.pool.submit(move || {
        let _entered = span.enter();
        let waited_ms = submitted.elapsed().as_secs_f64() * 1e3;
        let started = Instant::now();
        let mut opened = upload.open(&limits).map_err(crate::Error::from)?;
        let video = &mut opened.video;
        let open_ms = started.elapsed().as_secs_f64() * 1e3;
        let info = video.info().clone();
        let mut prepared = pre.prepare(video, (0, info.frames), segments, &worker_cancel)?;
        prepared.decode_ms += open_ms;
        Ok::<_, PipelineError>((info, prepared, waited_ms))
    })?;
    let (info, prepared, waited_ms) = receiver
        .await
        .map_err(|_| ApiError::internal("the decoding task panicked"))??;
    state.metrics.videos.inc();
    state.metrics.frames.inc_by(prepared.frames_decoded);
    state.metrics.observe_ms("decode", prepared.decode_ms);
    state.metrics.observe_ms("flow", prepared.flow_ms);
    Ok((info, prepared, waited_ms))
}

/// Runs a whole prediction for `upload`.
pub async fn predict(
    state: &AppState,
    request: &Request,
    upload: Upload,
    cancel: &Cancel,
) -> Result<PredictResponse, ApiError> {
    let started = Instant::now();
    let (info, prepared, worker_wait_ms) = prepare_on_pool(state, request, upload, cancel).await?;
    let (decode_ms, flow_ms) = (prepared.decode_ms, prepared.flow_ms);
    let scored = request
        .model
        .queue
        .submit(prepared.rgb, prepared.flow, cancel.clone())?
        .await
        .map_err(|_| ApiError::internal("the backend thread dropped a request"))??;
    let queue_ms = worker_wait_ms + scored.queue_ms;
    state.metrics.observe_ms("queue", queue_ms);
    state.metrics.observe_ms("inference", scored.inference_ms);
    let probabilities = scores::mean_rows(&scored.probabilities);
    let total_ms = started.elapsed().as_secs_f64() * 1e3;
    state.metrics.observe_ms("total", total_ms);
    Ok(PredictResponse {
        model: request.model.name.clone(),
        predictions: top_k(&probabilities, &request.model.labels, request.top_k),
        video: Some(summary(&info)),
        timings_ms: Some(Timings {
            decode: decode_ms,
            flow: flow_ms,
            queue: queue_ms,
            inference: scored.inference_ms,
            total: total_ms,
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_k_orders_by_score_and_averages_segments() {
        let labels: Vec<String> = ["a", "b", "c"].iter().map(|s| s.to_string()).collect();
        let mean = scores::mean_rows(&[vec![0.2, 0.5, 0.3], vec![0.4, 0.1, 0.5]]);
        assert!((mean[0] - 0.3).abs() < 1e-6 && (mean[2] - 0.4).abs() < 1e-6);
        let top = top_k(&mean, &labels, 2);
        assert_eq!(top.iter().map(|p| p.index).collect::<Vec<_>>(), vec![2, 0]);
        assert_eq!(top[0].label, "c");
    }
}
