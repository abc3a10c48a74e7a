//! revstream: video action recognition with a two-stream Spatiotemporal ResNet.
//!
//! The data's way through: [`video`] decodes and samples frames, [`flow`] computes
//! TV-L1 optical flow, [`model`] is the two-stream network, [`train`] learns its
//! weights with reversible backpropagation, and [`server`] serves it over HTTP.

pub mod alloc;
pub mod analysis;
pub mod artifact;
pub mod backend;
pub mod error;
pub mod flow;
pub mod model;
pub mod onnx;
pub mod ops;
pub mod pipeline;
pub mod server;
pub mod train;
pub mod video;

pub use error::{Error, Result};
