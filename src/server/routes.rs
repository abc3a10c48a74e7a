//! The HTTP handlers, each documented for the OpenAPI spec.

use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, Request, State};
use axum::http::header::{ACCEPT, CONTENT_TYPE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::sse::{KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use super::AppState;
use super::error::{ApiError, ErrorBody, ErrorKind};
use super::predict::{self, Request as Validated};
use super::spool::Upload;
use super::types::{
    Health, JobCreated, JobView, ModelInfo, ModelList, PredictParams, PredictResponse,
};
use super::{events, jobs, upload};
use crate::pipeline::Cancel;
use crate::pipeline::queue::LoadState;

/// The media type of protobuf responses.
pub const PROTOBUF: &str = "application/x-protobuf";

/// `message` as protobuf when the client accepts it, JSON otherwise.
fn respond<M: Serialize + prost::Message>(
    headers: &HeaderMap,
    status: StatusCode,
    message: M,
) -> Response {
    let wants_protobuf = headers
        .get(ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim().starts_with(PROTOBUF)));
    if wants_protobuf {
        (
            status,
            [(CONTENT_TYPE, HeaderValue::from_static(PROTOBUF))],
            message.encode_to_vec(),
        )
            .into_response()
    } else {
        (status, Json(message)).into_response()
    }
}

fn params(query: Result<Query<PredictParams>, QueryRejection>) -> Result<PredictParams, ApiError> {
    query
        .map(|Query(p)| p)
        .map_err(|e| ApiError::invalid(e.body_text()))
}

/// Takes one of the request slots; 429 when all are busy.
/// A prediction slot (`--max-concurrent`), or 429.
fn admit(state: &AppState) -> Result<tokio::sync::OwnedSemaphorePermit, ApiError> {
    state
        .admission
        .clone()
        .try_acquire_owned()
        .map_err(|_| overloaded())
}

fn overloaded() -> ApiError {
    ApiError::new(
        ErrorKind::Overloaded,
        "too many requests in flight, retry later",
    )
    .retry_after(1)
}

/// Receives the request's upload under an upload slot (`--max-uploads`, else 429),
/// cutting it when it stalls or trickles (`--upload-idle-timeout-s`,
/// `--upload-min-rate`, 408): a slow client holds an upload slot, never a prediction
/// slot, and not for long.
async fn receive(state: &AppState, request: Request) -> Result<Upload, ApiError> {
    let _slot = state.uploads.clone().try_acquire_owned().map_err(|_| {
        ApiError::new(
            ErrorKind::Overloaded,
            "too many uploads in flight, retry later",
        )
        .retry_after(1)
    })?;
    upload::read(request, state.config.upload_limits(), &state.spool).await
}

fn ensure_ready(request: &Validated) -> Result<(), ApiError> {
    match request.model.queue.state() {
        LoadState::Ready => Ok(()),
        LoadState::Loading => {
            Err(ApiError::new(ErrorKind::NotReady, "the model is still loading").retry_after(1))
        }
        LoadState::Failed(e) => Err(ApiError::new(
            ErrorKind::NotReady,
            format!("the model failed to load: {e}"),
        )),
    }
}

/// Recognise the actions in an uploaded video.
#[utoipa::path(
    post,
    path = "/v1/predict",
    tag = "predict",
    params(PredictParams),
    request_body(
        description = "The video as the raw body (video/* or application/octet-stream), or as the `video` field of a multipart form",
        content(
            (Vec<u8> = "application/octet-stream"),
            (Vec<u8> = "video/*"),
            (Vec<u8> = "multipart/form-data"),
        )
    ),
    responses(
        (status = 200, description = "The top-k actions (JSON, or protobuf `PredictResponse` for Accept: application/x-protobuf); stage timings also in the Server-Timing header", body = PredictResponse),
        (status = 400, description = "Bad parameters", body = ErrorBody),
        (status = 401, description = "Missing or wrong API key", body = ErrorBody),
        (status = 404, description = "No such model", body = ErrorBody),
        (status = 413, description = "Upload over the size limit", body = ErrorBody),
        (status = 415, description = "Unsupported content type", body = ErrorBody),
        (status = 422, description = "Not a video, no video stream, corrupt or over a limit", body = ErrorBody),
        (status = 429, description = "Overloaded; see Retry-After", body = ErrorBody),
        (status = 503, description = "Model not ready, the request timed out, or uploads in flight fill the disk budget (storage_full)", body = ErrorBody),
    ),
    security((), ("api_key" = []))
)]
pub async fn predict(
    State(state): State<AppState>,
    query: Result<Query<PredictParams>, QueryRejection>,
    headers: HeaderMap,
    request: Request,
) -> Result<Response, ApiError> {
    // Refused before the body when no slot is free; taken only once the upload is in.
    if state.admission.available_permits() == 0 {
        return Err(overloaded());
    }
    let params = params(query)?;
    if params.window_s.is_some() || params.hop_s.is_some() {
        return Err(ApiError::invalid(
            "window_s and hop_s are for timelines: POST /v1/jobs",
        ));
    }
    let validated = Validated::validate(&state, &params)?;
    ensure_ready(&validated)?;
    let upload = receive(&state, request).await?;
    let _permit = admit(&state)?;
    let cancel = Cancel::default();
    let _cancel_when_dropped = cancel.on_drop();
    let work = predict::predict(&state, &validated, upload, &cancel);
    let response = tokio::time::timeout(state.config.request_timeout(), work)
        .await
        .map_err(|_| {
            ApiError::new(ErrorKind::Timeout, "the request took too long").retry_after(1)
        })??;
    let mut reply = respond(&headers, StatusCode::OK, response.clone());
    if let Some(t) = &response.timings_ms {
        let timing = format!(
            "decode;dur={:.1}, flow;dur={:.1}, queue;dur={:.1}, inference;dur={:.1}, total;dur={:.1}",
            t.decode, t.flow, t.queue, t.inference, t.total
        );
        if let Ok(value) = HeaderValue::from_str(&timing) {
            reply.headers_mut().insert("server-timing", value);
        }
    }
    Ok(reply)
}

/// Start a job for a long video: a timeline over sliding windows (`window_s`, `hop_s`),
/// each visible as it finishes, then the whole video.
#[utoipa::path(
    post,
    path = "/v1/jobs",
    tag = "jobs",
    params(PredictParams),
    request_body(
        description = "The video, as for /v1/predict",
        content(
            (Vec<u8> = "application/octet-stream"),
            (Vec<u8> = "video/*"),
            (Vec<u8> = "multipart/form-data"),
        )
    ),
    responses(
        (status = 202, description = "The job was queued", body = JobCreated),
        (status = 400, description = "Bad parameters", body = ErrorBody),
        (status = 401, description = "Missing or wrong API key", body = ErrorBody),
        (status = 413, description = "Upload over the size limit", body = ErrorBody),
        (status = 415, description = "Unsupported content type", body = ErrorBody),
        (status = 429, description = "Too many jobs; see Retry-After", body = ErrorBody),
        (status = 503, description = "Model not ready, or uploads in flight fill the disk budget (storage_full)", body = ErrorBody),
    ),
    security((), ("api_key" = []))
)]
pub async fn create_job(
    State(state): State<AppState>,
    query: Result<Query<PredictParams>, QueryRejection>,
    headers: HeaderMap,
    request: Request,
) -> Result<Response, ApiError> {
    let job = jobs::JobRequest::validate(&state, &params(query)?)?;
    ensure_ready(&job.request)?;
    let upload = receive(&state, request).await?;
    let (id, cancel) = state.jobs.create()?;
    // Detached: the job goes on if the client disconnects.
    tokio::spawn(jobs::run(state.clone(), id.clone(), job, upload, cancel));
    Ok(respond(&headers, StatusCode::ACCEPTED, JobCreated { id }))
}

/// A job's status, progress and result.
#[utoipa::path(
    get,
    path = "/v1/jobs/{id}",
    tag = "jobs",
    params(("id" = String, Path, description = "The job's id")),
    responses(
        (status = 200, description = "The job", body = JobView),
        (status = 401, description = "Missing or wrong API key", body = ErrorBody),
        (status = 404, description = "No such job (or it expired)", body = ErrorBody),
    ),
    security((), ("api_key" = []))
)]
pub async fn get_job(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let view = state.jobs.view(&id).ok_or_else(|| no_job(&id))?;
    Ok(respond(&headers, StatusCode::OK, view))
}

/// The job's timeline as Server-Sent Events: `window` for each finished window in time
/// order (those before the client connected first), then `done` with the job's final
/// state, or `error` (kind `cancelled` for a cancelled job).
#[utoipa::path(
    get,
    path = "/v1/jobs/{id}/events",
    tag = "jobs",
    params(("id" = String, Path, description = "The job's id")),
    responses(
        (status = 200, description = "text/event-stream: `window` events (data: a Window), then `done` (data: the JobView) or `error` (data: an ErrorBody)", content_type = "text/event-stream"),
        (status = 401, description = "Missing or wrong API key", body = ErrorBody),
        (status = 404, description = "No such job (or it expired)", body = ErrorBody),
    ),
    security((), ("api_key" = []))
)]
pub async fn job_events(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let changes = state.jobs.subscribe(&id).ok_or_else(|| no_job(&id))?;
    let events = events::job(Arc::clone(&state.jobs), id, changes, &state.metrics);
    Ok(Sse::new(events)
        .keep_alive(KeepAlive::default())
        .into_response())
}

/// Cancel a job; its state stays readable until it expires.
#[utoipa::path(
    delete,
    path = "/v1/jobs/{id}",
    tag = "jobs",
    params(("id" = String, Path, description = "The job's id")),
    responses(
        (status = 200, description = "The job, now cancelled (or already finished)", body = JobView),
        (status = 401, description = "Missing or wrong API key", body = ErrorBody),
        (status = 404, description = "No such job (or it expired)", body = ErrorBody),
    ),
    security((), ("api_key" = []))
)]
pub async fn cancel_job(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let view: JobView = state.jobs.cancel(&id).ok_or_else(|| no_job(&id))?;
    Ok(respond(&headers, StatusCode::OK, view))
}

fn no_job(id: &str) -> ApiError {
    ApiError::new(
        ErrorKind::NotFound,
        format!("no job {id:?} (finished jobs expire)"),
    )
}

/// Every served model.
#[utoipa::path(
    get,
    path = "/v1/models",
    tag = "models",
    responses(
        (status = 200, description = "The models", body = ModelList),
        (status = 401, description = "Missing or wrong API key", body = ErrorBody),
    ),
    security((), ("api_key" = []))
)]
pub async fn list_models(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let models = state.models.all().iter().map(|m| m.info()).collect();
    respond(&headers, StatusCode::OK, ModelList { models })
}

/// One model: labels, input spec, backend and device.
#[utoipa::path(
    get,
    path = "/v1/models/{name}",
    tag = "models",
    params(("name" = String, Path, description = "The model's name, or `default`")),
    responses(
        (status = 200, description = "The model", body = ModelInfo),
        (status = 401, description = "Missing or wrong API key", body = ErrorBody),
        (status = 404, description = "No such model", body = ErrorBody),
    ),
    security((), ("api_key" = []))
)]
pub async fn get_model(
    State(state): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let model = state
        .models
        .get(&name)
        .ok_or_else(|| ApiError::new(ErrorKind::NotFound, format!("no model named {name:?}")))?;
    Ok(respond(&headers, StatusCode::OK, model.info()))
}

/// Ready when every model is loaded and warmed up.
#[utoipa::path(
    get,
    path = "/health",
    tag = "operations",
    responses(
        (status = 200, description = "Every model is ready", body = Health),
        (status = 503, description = "A model is loading or failed to load", body = ErrorBody),
    )
)]
pub async fn health(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let models: Vec<ModelInfo> = state.models.all().iter().map(|m| m.info()).collect();
    for model in state.models.all() {
        match model.queue.state() {
            LoadState::Ready => {}
            LoadState::Loading => {
                return Err(ApiError::new(
                    ErrorKind::NotReady,
                    format!("model {} is loading", model.name),
                )
                .retry_after(1));
            }
            LoadState::Failed(e) => {
                return Err(ApiError::new(
                    ErrorKind::NotReady,
                    format!("model {} failed to load: {e}", model.name),
                ));
            }
        }
    }
    Ok(respond(
        &headers,
        StatusCode::OK,
        Health {
            status: "ok".to_string(),
            models,
        },
    ))
}

/// Prometheus metrics in the text exposition format.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "operations",
    responses((status = 200, description = "Metrics", body = String, content_type = "text/plain"))
)]
pub async fn metrics(State(state): State<AppState>) -> Response {
    state
        .metrics
        .queue_depth
        .with_label_values(&["workers"])
        .set(state.pool.queued() as i64);
    (
        [(
            CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4"),
        )],
        state.metrics.render(),
    )
        .into_response()
}

/// 404 for every unknown route.
pub async fn not_found(request: Request) -> ApiError {
    ApiError::new(
        ErrorKind::NotFound,
        format!("no route for {} {}", request.method(), request.uri().path()),
    )
}

/// 405 for a route that exists but not for this method; axum adds the `Allow` header.
pub async fn method_not_allowed(request: Request) -> ApiError {
    ApiError::new(
        ErrorKind::MethodNotAllowed,
        format!(
            "{} is not allowed on {} (the Allow header lists the methods that are)",
            request.method(),
            request.uri().path()
        ),
    )
}
