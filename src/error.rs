//! The crate's error type: each kind says what failed, and whether it is the client's
//! fault or ours (see the error strategy in the crate's documentation).

use crate::video::VideoError;

/// Every error the library returns, apart from the domain errors that convert into it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The input video could not be used (client's fault).
    #[error(transparent)]
    Video(#[from] VideoError),
    /// A tensor operation failed (our fault unless shapes came from the client).
    #[error("tensor error: {0}")]
    Candle(#[from] candle_core::Error),
    /// An I/O error outside video decoding, where no file is named.
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
    /// Reading or writing a named file or folder failed.
    #[error("i/o error on {path}: {source}")]
    File {
        /// The file or folder involved.
        path: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A model folder, config or weights file is invalid.
    #[error("invalid model: {0}")]
    Model(String),
    /// The inference engine failed to load or run, or its thread stopped.
    #[error("backend: {0}")]
    Backend(String),
    /// Preparing a model's inputs broke an invariant of our own (not the video's fault).
    #[error("preparing inputs: {0}")]
    Preprocess(String),
    /// Settings that cannot work together (given at start-up).
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The metrics registry refused a metric.
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    /// A dataset description (list, CSV, folder) is malformed.
    #[error("dataset: {0}")]
    Dataset(String),
    /// A JSON file (config, checkpoint state, metrics) is malformed.
    #[error("json: {0}")]
    Json(#[from] serde_json::Error),
    /// FFmpeg refused to encode (synthesis).
    #[error("ffmpeg: {0}")]
    Ffmpeg(String),
    /// Bad parameters given by the caller.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
}

impl Error {
    /// Whether the error is the client's fault (maps to a 4xx status).
    pub fn is_client_error(&self) -> bool {
        match self {
            Error::Video(e) => e.is_client_error(),
            Error::InvalidArgument(_) => true,
            _ => false,
        }
    }

    /// Wraps an I/O error with the path it concerns.
    pub fn io(path: impl AsRef<std::path::Path>, source: std::io::Error) -> Self {
        Error::File {
            path: path.as_ref().display().to_string(),
            source,
        }
    }
}

impl From<ffmpeg_next::Error> for Error {
    fn from(e: ffmpeg_next::Error) -> Self {
        Error::Ffmpeg(e.to_string())
    }
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
