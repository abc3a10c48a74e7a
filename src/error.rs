//! The crate's error type: each kind says whether it is the client's fault or ours.

use crate::video::VideoError;

/// Every error the library returns.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The input video could not be used (client's fault).
    #[error(transparent)]
    Video(#[from] VideoError),
    /// A tensor operation failed (our fault unless shapes came from the client).
    #[error("tensor error: {0}")]
    Candle(#[from] candle_core::Error),
    /// An I/O error outside video decoding.
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
    /// A model folder, config or weights file is invalid.
    #[error("invalid model: {0}")]
    Model(String),
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
            Error::Candle(_) | Error::Io(_) | Error::Model(_) => false,
        }
    }
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
