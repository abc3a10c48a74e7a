//! Training: datasets, MotionShapes synthesis, reversible backpropagation.

pub mod error;
pub mod synth;

pub use error::{Result, TrainError};
