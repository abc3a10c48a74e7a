//! The analyses' error type: the crate's errors, and charts that could not be drawn.

/// Errors from running an analysis or drawing its plots.
#[derive(Debug, thiserror::Error)]
pub enum AnalysisError {
    /// Loading the model or data, a tensor operation, or a parameter that does not fit.
    #[error(transparent)]
    Core(#[from] crate::Error),
    /// A chart could not be drawn or written.
    #[error("plot {path}: {message}")]
    Plot {
        /// The PNG file.
        path: String,
        /// What plotters reported.
        message: String,
    },
}

impl From<candle_core::Error> for AnalysisError {
    fn from(e: candle_core::Error) -> Self {
        AnalysisError::Core(e.into())
    }
}

impl AnalysisError {
    /// A parameter that does not fit the model or the data.
    pub fn invalid(message: impl Into<String>) -> Self {
        AnalysisError::Core(crate::Error::InvalidArgument(message.into()))
    }
}

/// The analyses' result type.
pub type Result<T, E = AnalysisError> = std::result::Result<T, E>;
