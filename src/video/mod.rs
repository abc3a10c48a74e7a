//! Video decoding with FFmpeg: probe, sample frames, enforce limits.

mod error;

pub use error::VideoError;
