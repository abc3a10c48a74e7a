//! Keeps the decoded frames that were asked for, converted, in the order asked.

use ffmpeg_next::util::frame;

use super::convert::Converter;
use super::{RgbFrame, VideoError};

/// Collects target frames (presentation indices, sorted and unique) as they are decoded.
pub(crate) struct Collector<'a> {
    targets: &'a [u64],
    out: Vec<RgbFrame>,
    conv: Converter,
    /// The previously decoded frame and its time, shown for targets that were lost.
    last: frame::Video,
    last_time: Option<f64>,
}

impl<'a> Collector<'a> {
    pub fn new(targets: &'a [u64], conv: Converter) -> Self {
        Collector {
            targets,
            out: Vec::with_capacity(targets.len()),
            conv,
            last: frame::Video::empty(),
            last_time: None,
        }
    }

    /// The next target still missing.
    pub fn next_target(&self) -> Option<u64> {
        self.targets.get(self.out.len()).copied()
    }

    /// Whether frame `rank` is one of the targets.
    pub fn wants(&self, rank: u64) -> bool {
        self.targets.binary_search(&rank).is_ok()
    }

    /// Forgets the previous frame (after a seek it is no longer the one before).
    pub fn forget_last(&mut self) {
        self.last_time = None;
    }

    /// Takes decoded frame `rank`, shown at `time` seconds. The frame buffer is swapped
    /// with the previous one, not copied.
    pub fn take(
        &mut self,
        frame: &mut frame::Video,
        rank: u64,
        time: f64,
    ) -> Result<(), VideoError> {
        // Targets this frame passed over were lost (damaged data): show the frame before.
        while self.next_target().is_some_and(|t| t < rank) {
            let converted = match self.last_time {
                Some(t) => self.conv.convert(&self.last, t)?,
                None => self.conv.convert(frame, time)?,
            };
            self.out.push(converted);
        }
        if self.next_target() == Some(rank) {
            let converted = self.conv.convert(frame, time)?;
            self.out.push(converted);
        }
        std::mem::swap(frame, &mut self.last);
        self.last_time = Some(time);
        Ok(())
    }

    /// The target frames; targets past the last decodable frame repeat it.
    pub fn finish(mut self, decode_errors: u64) -> Result<Vec<RgbFrame>, VideoError> {
        if let Some(t) = self.last_time
            && self.out.len() < self.targets.len()
        {
            let repeat = self.conv.convert(&self.last, t)?;
            self.out.resize(self.targets.len(), repeat);
        }
        if self.out.len() < self.targets.len() {
            return Err(VideoError::Corrupt(format!(
                "no frame could be decoded ({decode_errors} decoding errors)"
            )));
        }
        Ok(self.out)
    }
}
