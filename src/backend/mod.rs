//! Inference engines behind one small trait; each runs on its own thread. [`load`] picks
//! and builds the engine for a model folder.

pub mod candle;
pub mod device;
mod load;
#[cfg(feature = "ort")]
pub mod ort;
#[cfg(feature = "ort")]
pub mod ort_rgb;

use candle_core::Tensor;

pub use load::{BackendKind, EngineOptions, Loaded, Loader, load};

/// A loaded model that turns batches of inputs into class probabilities.
pub trait Backend: Send {
    /// The engine's name (`candle`).
    fn name(&self) -> &'static str;
    /// The device it runs on (`cpu`, `cuda:0`).
    fn device(&self) -> String;
    /// The floating-point type it computes in (`f32`, `bf16`).
    fn dtype(&self) -> &'static str {
        "f32"
    }
    /// The most samples one call to [`Backend::predict`] should get.
    fn max_batch(&self) -> usize;
    /// Fused class probabilities, one row per sample, for `rgb` (B, T, 3, H, W) and
    /// `flow` (B, T, 2L, H, W) on the CPU.
    fn predict(&mut self, rgb: &Tensor, flow: &Tensor) -> crate::Result<Vec<Vec<f32>>>;
}
