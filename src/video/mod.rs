//! Video decoding with FFmpeg: probe, sample frames, enforce limits.

mod convert;
mod decode;
mod error;
mod index;
mod input;
mod limits;
mod sample;

pub use decode::{DecodeStats, SeekPolicy, Video, VideoInfo};
pub use error::VideoError;
pub use limits::Limits;
pub use sample::{Clip, Resize, RgbFrame, Sampling, segment_starts};
