//! Reading an uploaded video: the raw body (`video/*`, `application/octet-stream`) or
//! the `video` field of a multipart form, streamed once into the spool (memory, then a
//! temporary file) under the size limit.

use std::time::{Duration, Instant};

use axum::extract::{FromRequest, Multipart, Request};
use axum::http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use futures_util::StreamExt;

use super::error::{ApiError, ErrorKind};
use super::spool::{Spool, SpoolWriter, Upload};

/// How much and how slowly a client may upload.
#[derive(Debug, Clone, Copy)]
pub struct UploadLimits {
    /// Most bytes (413 past it).
    pub max_bytes: u64,
    /// Longest time without a byte (408 past it).
    pub idle: Duration,
    /// Least average bytes per second, checked once `idle` has passed since the start
    /// (408 below it), so a client that trickles a byte at a time cannot hold a slot.
    pub min_rate: u64,
}

/// Reads the video from `request` into `spool`, refusing other content types (415),
/// bodies over the limit (413), forms without a `video` field (400), bodies the spool's
/// disk budget cannot take (503, or 413 if they never could) and uploads that stall or
/// trickle (408).
pub async fn read(
    request: Request,
    limits: UploadLimits,
    spool: &Spool,
) -> Result<Upload, ApiError> {
    let limit = limits.max_bytes;
    let content_type = request
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    let declared = request
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(too_large(limit));
    }
    if let Some(n) = declared {
        spool.check_declared(n)?;
    }
    let essence = content_type.split(';').next().unwrap_or("").trim();
    if essence == "multipart/form-data" {
        read_multipart(request, limits, spool).await
    } else if essence.starts_with("video/") || essence == "application/octet-stream" {
        let writer = spool.writer(declared);
        collect(request.into_body().into_data_stream(), limits, writer).await
    } else {
        Err(ApiError::new(
            ErrorKind::UnsupportedMediaType,
            format!("{}: {ACCEPTED}", refused(essence)),
        ))
    }
}

/// What an accepted upload looks like.
const ACCEPTED: &str =
    "send video/*, application/octet-stream or multipart/form-data with a `video` field";

/// Why content type `essence` is refused, naming the usual cause where there is one.
fn refused(essence: &str) -> String {
    match essence {
        "" => "the request has no content type".to_string(),
        // What `curl --data-binary @clip.mp4` sends unless told otherwise.
        "application/x-www-form-urlencoded" => {
            "content type \"application/x-www-form-urlencoded\" \
            (curl's default for --data-binary; add -H 'Content-Type: video/mp4') is not accepted"
                .to_string()
        }
        other => format!("content type {other:?} is not accepted"),
    }
}

async fn read_multipart(
    request: Request,
    limits: UploadLimits,
    spool: &Spool,
) -> Result<Upload, ApiError> {
    let idle = limits.idle;
    let mut form = Multipart::from_request(request, &())
        .await
        .map_err(|e| ApiError::invalid(format!("bad multipart form: {}", e.body_text())))?;
    loop {
        let field = tokio::time::timeout(idle, form.next_field())
            .await
            .map_err(|_| stalled(idle))?
            .map_err(|e| multipart_error(&e.body_text(), e.status()))?;
        let Some(field) = field else {
            return Err(ApiError::invalid("the multipart form has no `video` field"));
        };
        if field.name() == Some("video") {
            // A form's length covers every field: the video's own is unknown.
            return collect(field, limits, spool.writer(None)).await;
        }
    }
}

fn multipart_error(text: &str, status: axum::http::StatusCode) -> ApiError {
    if status == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::new(ErrorKind::PayloadTooLarge, text.to_string())
    } else {
        ApiError::invalid(format!("bad multipart form: {text}"))
    }
}

/// Writes every chunk of `stream` to `writer`, failing as soon as it passes a limit.
async fn collect<S, E>(
    mut stream: S,
    limits: UploadLimits,
    mut writer: SpoolWriter<'_>,
) -> Result<Upload, ApiError>
where
    S: futures_util::Stream<Item = Result<axum::body::Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    let started = Instant::now();
    let mut received = 0u64;
    while let Some(chunk) = tokio::time::timeout(limits.idle, stream.next())
        .await
        .map_err(|_| stalled(limits.idle))?
    {
        let chunk =
            chunk.map_err(|e| ApiError::invalid(format!("reading the upload failed: {e}")))?;
        received += chunk.len() as u64;
        if received > limits.max_bytes {
            return Err(too_large(limits.max_bytes));
        }
        let elapsed = started.elapsed();
        if elapsed > limits.idle
            && (received as f64) < limits.min_rate as f64 * elapsed.as_secs_f64()
        {
            return Err(ApiError::new(
                ErrorKind::UploadTimeout,
                format!(
                    "the upload averaged {:.0} bytes/s over {:.0} s, under the server's minimum of {} bytes/s, and was cut",
                    received as f64 / elapsed.as_secs_f64(),
                    elapsed.as_secs_f64(),
                    limits.min_rate
                ),
            ));
        }
        writer.push(&chunk).await?;
    }
    writer.finish().await
}

fn stalled(idle: Duration) -> ApiError {
    ApiError::new(
        ErrorKind::UploadTimeout,
        format!(
            "the upload sent nothing for {:.0} s and was cut",
            idle.as_secs_f64()
        ),
    )
}

fn too_large(limit: u64) -> ApiError {
    ApiError::new(
        ErrorKind::PayloadTooLarge,
        format!("the upload is over the {limit}-byte limit"),
    )
}
