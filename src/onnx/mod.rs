//! ONNX export of a trained two-stream ST-ResNet: both inputs, fused probabilities and
//! per-stream logits as outputs, a dynamic batch dimension, opset 17, BatchNorm folded
//! into the convolutions (inference mode).

mod builder;
mod export;

pub use export::{export, export_dir, load_weights, to_bytes};

/// The opset the exported graphs use (17: the last with `axes` as attributes of reductions).
pub const OPSET: i64 = 17;
/// Name of the RGB input `(B, T, 3, H, W)`.
pub const INPUT_RGB: &str = "rgb";
/// Name of the flow input `(B, T, 2L, H, W)`.
pub const INPUT_FLOW: &str = "flow";
/// Name of the fused class probabilities output `(B, num_classes)`.
pub const OUTPUT_PROBABILITIES: &str = "probabilities";
/// Name of the fused logits output `(B, num_classes)`.
pub const OUTPUT_FUSED: &str = "fused";
/// Name of the appearance stream's logits output `(B, num_classes)`.
pub const OUTPUT_APPEARANCE: &str = "appearance";
/// Name of the motion stream's logits output `(B, num_classes)`.
pub const OUTPUT_MOTION: &str = "motion";

/// Why an export failed.
#[derive(Debug, thiserror::Error)]
pub enum OnnxError {
    /// The weights lack a tensor the architecture needs.
    #[error("missing weight {0}")]
    MissingWeight(String),
    /// A weight's shape does not match the architecture.
    #[error("weight {name} has shape {got:?}, expected {expected:?}")]
    Shape {
        /// The tensor's name.
        name: String,
        /// The shape the config implies.
        expected: Vec<usize>,
        /// The shape found.
        got: Vec<usize>,
    },
    /// The model folder's config is invalid or unreadable.
    #[error("invalid model: {0}")]
    Model(String),
    /// Reading a weight failed.
    #[error("tensor error: {0}")]
    Tensor(#[from] candle_core::Error),
    /// Reading or writing a file failed.
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
    /// Serialising the protobuf failed.
    #[error("protobuf error: {0}")]
    Protobuf(String),
}

impl From<OnnxError> for crate::Error {
    fn from(e: OnnxError) -> Self {
        match e {
            OnnxError::Io(e) => crate::Error::Io(e),
            OnnxError::Tensor(e) => crate::Error::Candle(e),
            other => crate::Error::Model(other.to_string()),
        }
    }
}
