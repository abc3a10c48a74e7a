//! The two-stream Spatiotemporal ResNet: its layers, units and reversible couplings (the
//! compute kernels they run are in [`crate::ops`]).

pub mod blocks;
pub mod config;
pub mod conv;
pub mod norm;
pub mod reversible;
pub mod st_resnet;
pub mod temporal;

pub use config::Config;
pub use st_resnet::{StResNet, StreamLogits};
