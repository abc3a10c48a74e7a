//! Looking inside a trained model: lesion studies and path lengths (Veit et al., 2016)
//! and residual alignment (Li & Papyan, 2023).
//!
//! Every analysis runs the network through [`probe::forward`], which can delete residual
//! units, cut motion→appearance links, reorder units, route gradients along chosen paths
//! and record each unit's input. BatchNorm always uses its running statistics.

pub mod alignment;
pub mod error;
pub mod inputs;
pub mod lesion;
pub mod paths;
pub mod plots;
pub mod power;
pub mod probe;

pub use error::{AnalysisError, Result};
