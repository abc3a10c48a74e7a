//! The training side's error type.

use crate::video::VideoError;

/// Errors from datasets, synthesis, caching, training and evaluation.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// A file could not be read or written.
    #[error("i/o error on {path}: {source}")]
    Io {
        /// The file or folder involved.
        path: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// FFmpeg refused to encode (synthesis) or another FFmpeg call failed.
    #[error("ffmpeg: {0}")]
    Ffmpeg(String),
    /// A video could not be decoded.
    #[error(transparent)]
    Video(#[from] VideoError),
    /// A tensor operation failed.
    #[error("tensor error: {0}")]
    Candle(#[from] candle_core::Error),
    /// A dataset description (list, CSV, folder) is malformed.
    #[error("dataset: {0}")]
    Dataset(String),
    /// A JSON file (config, checkpoint state, metrics) is malformed.
    #[error("json: {0}")]
    Json(#[from] serde_json::Error),
    /// Bad parameters given by the caller.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
}

impl TrainError {
    /// Wraps an I/O error with the path it concerns.
    pub fn io(path: impl AsRef<std::path::Path>, source: std::io::Error) -> Self {
        TrainError::Io {
            path: path.as_ref().display().to_string(),
            source,
        }
    }
}

impl From<ffmpeg_next::Error> for TrainError {
    fn from(e: ffmpeg_next::Error) -> Self {
        TrainError::Ffmpeg(e.to_string())
    }
}

/// The training side's result type.
pub type Result<T, E = TrainError> = std::result::Result<T, E>;
