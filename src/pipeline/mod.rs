//! The way from upload to scores: decode and flow on a worker pool, then a batching
//! queue in front of the backend thread.

pub mod preparation;
pub mod preprocess;
pub mod queue;
pub mod rgb;
pub mod scores;
pub mod timeline;
pub mod workers;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// Why a piece of work did not produce a result.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// A bounded queue was full; the caller should retry later.
    #[error("the {0} is full")]
    Overloaded(&'static str),
    /// The work was cancelled before it finished.
    #[error("cancelled")]
    Cancelled,
    /// The pool or backend thread has stopped.
    #[error("the pipeline has stopped")]
    Stopped,
    /// The work itself failed.
    #[error(transparent)]
    Failed(#[from] crate::Error),
}

/// A flag shared between a request and the work done for it, set when the request
/// goes away so workers stop early.
#[derive(Debug, Clone, Default)]
pub struct Cancel(Arc<AtomicBool>);

impl Cancel {
    /// Marks the work as no longer wanted.
    pub fn cancel(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    /// Whether the work is no longer wanted.
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }

    /// A guard that cancels when dropped (a dropped request future cancels its work).
    pub fn on_drop(&self) -> CancelOnDrop {
        CancelOnDrop(self.clone())
    }
}

/// Cancels its [`Cancel`] when dropped.
#[derive(Debug)]
pub struct CancelOnDrop(Cancel);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.cancel();
    }
}
