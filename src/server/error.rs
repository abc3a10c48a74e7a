//! The one table from error kind to HTTP status, and the `{error, kind}` JSON body.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::pipeline::PipelineError;
use crate::video::VideoError;

/// What went wrong, as the API names it; each kind has exactly one status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// A query parameter or form field is invalid.
    InvalidParameter,
    /// The request lacks a valid bearer API key.
    Unauthorized,
    /// No such route, model or job.
    NotFound,
    /// The route exists but not for this method (the `Allow` header lists those it has).
    MethodNotAllowed,
    /// The body exceeds the configured size limit.
    PayloadTooLarge,
    /// The body's content type is not a video, octet stream or multipart form.
    UnsupportedMediaType,
    /// The upload is not a usable video; the name is the video module's error kind.
    Video(&'static str),
    /// Every slot or queue is full; retry later.
    Overloaded,
    /// The model is still loading (or failed to load).
    NotReady,
    /// The request ran past the configured per-request timeout.
    Timeout,
    /// Uploads in flight fill the disk budget for upload files; retry later.
    StorageFull,
    /// The upload stalled for longer than the idle timeout.
    UploadTimeout,
    /// Our own bug or an I/O failure on our side.
    Internal,
}

impl ErrorKind {
    /// The HTTP status for this kind.
    pub fn status(self) -> StatusCode {
        match self {
            ErrorKind::InvalidParameter => StatusCode::BAD_REQUEST,
            ErrorKind::Unauthorized => StatusCode::UNAUTHORIZED,
            ErrorKind::NotFound => StatusCode::NOT_FOUND,
            ErrorKind::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ErrorKind::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorKind::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ErrorKind::Video(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ErrorKind::Overloaded => StatusCode::TOO_MANY_REQUESTS,
            ErrorKind::NotReady | ErrorKind::Timeout | ErrorKind::StorageFull => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ErrorKind::UploadTimeout => StatusCode::REQUEST_TIMEOUT,
            ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The stable machine-readable name sent as `kind`.
    pub fn name(self) -> &'static str {
        match self {
            ErrorKind::InvalidParameter => "invalid_parameter",
            ErrorKind::Unauthorized => "unauthorized",
            ErrorKind::NotFound => "not_found",
            ErrorKind::MethodNotAllowed => "method_not_allowed",
            ErrorKind::PayloadTooLarge => "payload_too_large",
            ErrorKind::UnsupportedMediaType => "unsupported_media_type",
            ErrorKind::Video(name) => name,
            ErrorKind::Overloaded => "overloaded",
            ErrorKind::NotReady => "not_ready",
            ErrorKind::Timeout => "timeout",
            ErrorKind::StorageFull => "storage_full",
            ErrorKind::UploadTimeout => "upload_timeout",
            ErrorKind::Internal => "internal",
        }
    }
}

/// The JSON body of every error response.
#[derive(Clone, PartialEq, Serialize, ToSchema, prost::Message)]
pub struct ErrorBody {
    /// A sentence for humans.
    #[prost(string, tag = "1")]
    pub error: String,
    /// A stable name for programs (`invalid_parameter`, `not_a_video`, `overloaded`, ...).
    #[prost(string, tag = "2")]
    pub kind: String,
}

/// An error on its way to becoming an HTTP response.
#[derive(Debug)]
pub struct ApiError {
    /// What went wrong.
    pub kind: ErrorKind,
    /// A sentence for humans.
    pub message: String,
    /// Seconds the client should wait before retrying (429 and 503 only).
    pub retry_after_s: Option<u64>,
}

/// The kind of an error response, left in its extensions for the metrics layer.
#[derive(Debug, Clone, Copy)]
pub struct ErrorKindTag(pub &'static str);

impl ApiError {
    /// An error of `kind` with a message.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        ApiError {
            kind,
            message: message.into(),
            retry_after_s: None,
        }
    }

    /// Adds a Retry-After hint.
    pub fn retry_after(mut self, seconds: u64) -> Self {
        self.retry_after_s = Some(seconds);
        self
    }

    /// 400 for a bad query parameter or form field.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidParameter, message)
    }

    /// 500 for our own failures.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Internal, message)
    }

    /// The JSON body.
    pub fn body(&self) -> ErrorBody {
        ErrorBody {
            error: self.message.clone(),
            kind: self.kind.name().to_string(),
        }
    }
}

impl From<VideoError> for ApiError {
    fn from(e: VideoError) -> Self {
        let kind = if e.is_client_error() {
            ErrorKind::Video(e.kind())
        } else {
            ErrorKind::Internal
        };
        ApiError::new(kind, e.to_string())
    }
}

impl From<crate::Error> for ApiError {
    fn from(e: crate::Error) -> Self {
        match e {
            crate::Error::Video(v) => v.into(),
            crate::Error::InvalidArgument(m) => ApiError::invalid(m),
            other => ApiError::internal(other.to_string()),
        }
    }
}

impl From<PipelineError> for ApiError {
    fn from(e: PipelineError) -> Self {
        match e {
            PipelineError::Overloaded(what) => ApiError::new(
                ErrorKind::Overloaded,
                format!("the {what} is full, retry later"),
            )
            .retry_after(1),
            PipelineError::Failed(inner) => inner.into(),
            PipelineError::Cancelled => ApiError::internal("the request was cancelled"),
            PipelineError::Stopped => {
                ApiError::new(ErrorKind::NotReady, "the model is not serving").retry_after(1)
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.kind.status();
        if status.is_server_error() {
            tracing::error!(kind = self.kind.name(), error = %self.message, "request failed");
        } else {
            tracing::debug!(kind = self.kind.name(), error = %self.message, "request refused");
        }
        let mut response = (status, Json(self.body())).into_response();
        if let Some(seconds) = self.retry_after_s {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
            .extensions_mut()
            .insert(ErrorKindTag(self.kind.name()));
        response
    }
}
