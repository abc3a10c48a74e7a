//! Training: datasets, MotionShapes synthesis, reversible backpropagation.

pub mod augment;
pub mod batch;
pub mod cache;
pub mod checkpoint;
pub mod dataset;
pub mod metrics;
pub mod optim;
pub mod plots;
pub mod revprop;
pub mod seed;
pub mod synth;
pub mod trainer;

pub use crate::{Error, Result};
