//! revstream: video action recognition with a two-stream Spatiotemporal ResNet.
//!
//! Modules, bottom up (each uses only those above it in this list; `docs/architecture.md`
//! draws the request and training paths through them):
//! - [`video`]: FFmpeg decoding, frame sampling, resizing and input limits;
//! - [`flow`]: TV-L1 optical flow (CPU solver and batched tensor solver), its methods and
//!   8-bit encoding;
//! - [`ops`]: compute kernels as candle custom ops (convolution, fused BatchNorm + ReLU,
//!   add + ReLU, sums);
//! - [`model`]: the two-stream ST-ResNet and its reversible units;
//! - [`artifact`]: the model-folder contract (config, preprocessing, external models);
//! - [`onnx`]: exporting the network to ONNX;
//! - [`backend`]: inference engines (candle, ONNX Runtime) and loading one for a folder;
//! - [`pipeline`]: from a video to a model's inputs, and the batching queue in front of a
//!   backend;
//! - [`train`]: datasets, caches and training with reversible backpropagation;
//!   [`analysis`]: lesion, path-length and alignment studies of a trained model;
//! - [`server`]: the HTTP service; [`alloc`]: the process's allocator settings.
//!
//! Errors: one crate-wide [`Error`] whose variants each name what failed ([`Error::Model`]
//! a model folder, [`Error::Backend`] an inference engine, [`Error::Preprocess`] our own
//! input preparation, [`Error::Dataset`] a training list, [`Error::File`] a named file, ...)
//! and say whose fault it is ([`Error::is_client_error`]). Modules with failures of
//! their own that callers tell apart have their own type beside it ([`video::VideoError`],
//! [`flow::FlowError`], [`onnx::OnnxError`], [`pipeline::PipelineError`],
//! [`analysis::AnalysisError`]); such a type holds only its own kinds and converts into,
//! or wraps, [`Error`] whole, never copies its variants. The HTTP layer maps errors to
//! statuses in one table (`server/error.rs`).

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
