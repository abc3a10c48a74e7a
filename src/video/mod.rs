//! Video with FFmpeg: decoding (probe, sample frames, enforce limits), and writing
//! H.264 files.

mod collect;
mod convert;
mod decode;
pub mod encode;
mod error;
mod index;
mod input;
mod limits;
pub mod overlay;
mod sample;

pub use decode::{DecodeStats, SeekPolicy, Video, VideoInfo};
pub use error::VideoError;
pub use limits::Limits;
pub use sample::{Clip, Resize, RgbFrame, Sampling, segment_starts};
