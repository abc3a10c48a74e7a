//! The model-folder contract: what a folder of revstream's holds (`config.json`,
//! `model.safetensors`, optionally `model.onnx`) or what an external ONNX classifier's
//! folder states, and how inputs are prepared for it. Everything above reads model
//! folders through this module: the backends that load them, the pipeline that prepares
//! their inputs, the trainer that writes them and the ONNX exporter.

pub mod external;
mod folder;
pub mod inputs;
pub mod spec;

pub use external::ExternalSpec;
pub use folder::ModelFolder;
pub use spec::{ModelSpec, PreprocessingSpec, flow_timing};
