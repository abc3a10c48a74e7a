//! The HTTP service: axum routes over the video → flow → model pipeline.
//!
//! [`serve`] takes a bound listener and a shutdown future, so tests bind 127.0.0.1:0
//! and the binary stops cleanly on SIGTERM or Ctrl-C.

pub mod auth;
pub mod config;
pub mod error;
pub mod events;
pub mod jobs;
pub mod metrics;
pub mod models;
pub mod openapi;
pub mod predict;
pub mod routes;
pub mod spool;
pub mod types;
pub mod upload;

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::{DefaultOnResponse, TraceLayer};
use tracing::Level;
use utoipa::OpenApi;
use utoipa_swagger_ui::SwaggerUi;

pub use config::ServerConfig;

use crate::pipeline::workers::WorkerPool;
use error::ErrorKindTag;
use jobs::JobStore;
use metrics::Metrics;
use models::Models;
use spool::Spool;

/// Everything the handlers share.
#[derive(Clone)]
pub struct AppState {
    /// The settings the server started with.
    pub config: Arc<ServerConfig>,
    /// Prometheus metrics.
    pub metrics: Metrics,
    /// Threads for decoding and optical flow.
    pub pool: Arc<WorkerPool>,
    /// The served models, each with its backend thread.
    pub models: Arc<Models>,
    /// Asynchronous jobs.
    pub jobs: Arc<JobStore>,
    /// Slots for requests in flight.
    pub admission: Arc<Semaphore>,
    /// Where uploads too large for memory wait.
    pub spool: Arc<Spool>,
    /// Slots for uploads being received.
    pub uploads: Arc<Semaphore>,
}

impl AppState {
    /// Starts the worker pool and one backend thread per model; models load in the
    /// background (see [`Models::wait_loaded`]).
    pub fn new(config: ServerConfig) -> crate::Result<AppState> {
        let metrics = Metrics::new()?;
        let models = Models::start(&config, &metrics)?;
        let spool_parent = config.upload_dir.clone().unwrap_or_else(std::env::temp_dir);
        let spool = Spool::new(
            &spool_parent,
            config.upload_memory_bytes,
            config.upload_disk_bytes,
            (metrics.spool_bytes.clone(), metrics.spooled.clone()),
        )
        .map_err(|e| crate::Error::io(&spool_parent, e))?;
        Ok(AppState {
            spool: Arc::new(spool),
            uploads: Arc::new(Semaphore::new(
                config.max_uploads.min(Semaphore::MAX_PERMITS as u64) as usize,
            )),
            pool: Arc::new(WorkerPool::new(config.workers, config.worker_queue)?),
            models: Arc::new(models),
            jobs: Arc::new(JobStore::new(
                config.max_jobs,
                Duration::from_secs(config.job_ttl_s),
            )),
            admission: Arc::new(Semaphore::new(config.max_concurrent.max(1))),
            metrics,
            config: Arc::new(config),
        })
    }
}

/// The application's routes with their middleware.
pub fn router(state: AppState) -> Router {
    let v1 = Router::new()
        .route("/v1/predict", post(routes::predict))
        .route("/v1/jobs", post(routes::create_job))
        .route(
            "/v1/jobs/{id}",
            get(routes::get_job).delete(routes::cancel_job),
        )
        .route("/v1/jobs/{id}/events", get(routes::job_events))
        .route("/v1/models", get(routes::list_models))
        .route("/v1/models/{name}", get(routes::get_model))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            auth::require_api_key,
        ));
    let app = Router::new()
        .merge(v1)
        .route("/health", get(routes::health))
        .route("/metrics", get(routes::metrics))
        .fallback(routes::not_found)
        // Before the layers, so 405s are traced and counted like every other error.
        .method_not_allowed_fallback(routes::method_not_allowed)
        // Uploads are limited (413) while streaming them in, in `upload::read`.
        .layer(DefaultBodyLimit::disable())
        .layer(middleware::from_fn_with_state(state.clone(), record))
        .with_state(state);
    app.merge(SwaggerUi::new("/docs").url("/openapi.json", openapi::ApiDoc::openapi()))
        // The docs' routes too; those above keep theirs.
        .method_not_allowed_fallback(routes::method_not_allowed)
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(TraceLayer::new_for_http().on_response(DefaultOnResponse::new().level(Level::INFO)).make_span_with(|request: &Request| {
            let id = request.headers().get("x-request-id").and_then(|v| v.to_str().ok()).unwrap_or("-");
            tracing::info_span!("request", id, method = %request.method(), path = request.uri().path())
        }))
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
}

/// Counts each request by route and status, and each error by kind.
async fn record(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched".to_string(), |p| p.as_str().to_string());
    let method = request.method().to_string();
    let started = Instant::now();
    let response = next.run(request).await;
    let status = response.status();
    state
        .metrics
        .requests
        .with_label_values(&[&route, &method, status.as_str()])
        .inc();
    if let Some(ErrorKindTag(kind)) = response.extensions().get::<ErrorKindTag>() {
        state.metrics.errors.with_label_values(&[kind]).inc();
    }
    tracing::debug!(
        route,
        status = status.as_u16(),
        ms = started.elapsed().as_millis() as u64,
        "done"
    );
    response
}

/// Serves `state` on `listener` until `shutdown` completes, then finishes the requests
/// in flight.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    tracing::info!(address = %listener.local_addr()?, "listening");
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await
}
