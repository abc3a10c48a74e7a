//! Training: datasets, MotionShapes synthesis, reversible backpropagation.

pub mod dataset;
pub mod error;
pub mod optim;
pub mod revprop;
pub mod synth;

pub use error::{Result, TrainError};
