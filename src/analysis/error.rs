//! The analyses' error type.

use crate::train::TrainError;

/// Errors from running an analysis or drawing its plots.
#[derive(Debug, thiserror::Error)]
pub enum AnalysisError {
    /// A tensor operation failed.
    #[error("tensor error: {0}")]
    Candle(#[from] candle_core::Error),
    /// Loading or batching the evaluation data failed.
    #[error(transparent)]
    Train(#[from] TrainError),
    /// A parameter does not fit the model or the data.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// A chart could not be drawn or written.
    #[error("plot {path}: {message}")]
    Plot {
        /// The PNG file.
        path: String,
        /// What plotters reported.
        message: String,
    },
}

/// The analyses' result type.
pub type Result<T, E = AnalysisError> = std::result::Result<T, E>;
