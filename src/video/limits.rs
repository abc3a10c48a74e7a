//! Resource limits checked before (and while) decoding an untrusted video.

use super::VideoError;

/// Upper bounds on what a video may cost to decode.
#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    /// Largest accepted input, in bytes.
    pub max_bytes: u64,
    /// Largest accepted frame area, width × height in coded pixels.
    pub max_pixels: u64,
    /// Longest accepted duration, in seconds.
    pub max_duration_s: f64,
    /// Most frames a video may hold (and so the most one call decodes).
    pub max_frames: u64,
}

impl Default for Limits {
    /// Generous limits: 4 GiB, 8192×8192, 4 hours, one million frames.
    fn default() -> Self {
        Limits {
            max_bytes: 4 << 30,
            max_pixels: 8192 * 8192,
            max_duration_s: 4.0 * 3600.0,
            max_frames: 1_000_000,
        }
    }
}

impl Limits {
    pub(crate) fn check_bytes(&self, bytes: u64) -> Result<(), VideoError> {
        if bytes > self.max_bytes {
            return Err(VideoError::OverLimit(format!(
                "the input is {bytes} bytes, more than the limit of {} bytes",
                self.max_bytes
            )));
        }
        Ok(())
    }

    pub(crate) fn check_pixels(&self, width: u32, height: u32) -> Result<(), VideoError> {
        let pixels = u64::from(width) * u64::from(height);
        if pixels > self.max_pixels {
            return Err(VideoError::OverLimit(format!(
                "frames are {width}x{height} pixels, more than the limit of {} pixels",
                self.max_pixels
            )));
        }
        Ok(())
    }

    pub(crate) fn check_duration(&self, seconds: f64) -> Result<(), VideoError> {
        if seconds > self.max_duration_s {
            return Err(VideoError::OverLimit(format!(
                "the video lasts {seconds:.1} s, longer than the limit of {:.1} s",
                self.max_duration_s
            )));
        }
        Ok(())
    }

    pub(crate) fn check_frames(&self, frames: u64) -> Result<(), VideoError> {
        if frames > self.max_frames {
            return Err(VideoError::OverLimit(format!(
                "the video has more than {} frames",
                self.max_frames
            )));
        }
        Ok(())
    }
}
