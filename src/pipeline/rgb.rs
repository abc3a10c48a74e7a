//! Inputs for an RGB-only model: T frames per segment, resized, cropped and normalised
//! as its config says. No optical flow is computed.

use std::time::Instant;

use candle_core::{Device, Tensor};

use super::preprocess::{Prepared, clip_starts};
use super::{Cancel, PipelineError};
use crate::artifact::external::{ChannelOrder, OnnxInput};
use crate::video::{Resize, RgbFrame, Sampling, Video};

/// How an RGB-only model wants its frames.
#[derive(Debug, Clone, PartialEq)]
pub struct RgbPreprocessing {
    /// Frames per sample (T).
    pub frames: usize,
    /// Side of the square crop.
    pub size: u32,
    /// Shorter side after resizing, before the centre crop.
    pub short_side: u32,
    /// `None`: frames spread evenly over each segment; `Some(s)`: consecutive frames `s` apart.
    pub frame_stride: Option<usize>,
    /// Mean per output channel, on the 0..1 scale.
    pub mean: [f32; 3],
    /// Standard deviation per output channel, on the 0..1 scale.
    pub std: [f32; 3],
    /// Channel order of the output.
    pub channels: ChannelOrder,
}

impl From<&OnnxInput> for RgbPreprocessing {
    fn from(input: &OnnxInput) -> Self {
        let (mean, std) = input.unit_mean_std();
        RgbPreprocessing {
            frames: input.frames,
            size: input.size,
            short_side: input.short_side.unwrap_or(input.size).max(input.size),
            frame_stride: input.frame_stride,
            mean,
            std,
            channels: input.channels,
        }
    }
}

impl RgbPreprocessing {
    /// Where to read frames in `[first, end)`: `segments` x T single frames spread evenly,
    /// or one clip of T frames `stride` apart centred in each segment.
    pub fn sampling(&self, (first, end): (u64, u64), segments: usize) -> Sampling {
        match self.frame_stride {
            None => Sampling::Starts {
                starts: clip_starts(first, end, segments * self.frames, 1),
                clip_len: 1,
                stride: 1,
            },
            Some(stride) => Sampling::Starts {
                starts: clip_starts(first, end, segments, (self.frames - 1) * stride + 1),
                clip_len: self.frames,
                stride,
            },
        }
    }

    /// Appends `frame` as three normalised planes in the configured channel order.
    fn push(&self, out: &mut Vec<f32>, frame: &RgbFrame) -> Result<(), PipelineError> {
        let side = self.size as usize;
        if frame.width as usize != side
            || frame.height as usize != side
            || frame.data.len() != side * side * 3
        {
            return Err(PipelineError::Failed(crate::Error::Preprocess(format!(
                "a frame is {}x{}, not {side}x{side}",
                frame.width, frame.height
            ))));
        }
        let order = match self.channels {
            ChannelOrder::Rgb => [0, 1, 2],
            ChannelOrder::Bgr => [2, 1, 0],
        };
        for (c, source) in order.into_iter().enumerate() {
            let (mean, std) = (self.mean[c], self.std[c]);
            out.extend(
                frame
                    .data
                    .iter()
                    .skip(source)
                    .step_by(3)
                    .map(|&v| (v as f32 / 255.0 - mean) / std),
            );
        }
        Ok(())
    }
}

/// Samples `segments` x T frames over `[range.0, range.1)` of `video`: rgb
/// `(S, T, 3, H, W)` normalised, flow an empty `(S, T, 0, H, W)`.
pub fn prepare(
    video: &mut Video,
    pre: &RgbPreprocessing,
    range: (u64, u64),
    segments: usize,
    cancel: &Cancel,
) -> Result<Prepared, PipelineError> {
    let (t, side) = (pre.frames, pre.size as usize);
    let started = Instant::now();
    let _span = tracing::debug_span!("decode", positions = segments * t).entered();
    let resize = Resize {
        short_side: pre.short_side,
        crop: Some((pre.size, pre.size)),
    };
    let clips = video
        .sample(&pre.sampling(range, segments), &resize)
        .map_err(crate::Error::from)?;
    if cancel.is_cancelled() {
        return Err(PipelineError::Cancelled);
    }
    let frames: Vec<&RgbFrame> = clips.iter().flat_map(|c| &c.frames).collect();
    if frames.len() != segments * t {
        return Err(PipelineError::Failed(crate::Error::Preprocess(format!(
            "sampled {} frames, not {}",
            frames.len(),
            segments * t
        ))));
    }
    let mut rgb = Vec::with_capacity(frames.len() * 3 * side * side);
    for frame in &frames {
        pre.push(&mut rgb, frame)?;
    }
    let rgb = Tensor::from_vec(rgb, (segments, t, 3, side, side), &Device::Cpu)
        .map_err(crate::Error::from)?;
    let flow = Tensor::zeros(
        (segments, t, 0, side, side),
        candle_core::DType::F32,
        &Device::Cpu,
    )
    .map_err(crate::Error::from)?;
    Ok(Prepared {
        rgb,
        flow,
        frames_decoded: frames.len() as u64,
        decode_ms: started.elapsed().as_secs_f64() * 1e3,
        flow_ms: 0.0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::preprocess::tests::ffmpeg_video;

    fn pre(channels: ChannelOrder, frame_stride: Option<usize>) -> RgbPreprocessing {
        RgbPreprocessing {
            frames: 4,
            size: 16,
            short_side: 16,
            frame_stride,
            mean: [0.5, 0.25, 0.0],
            std: [0.5, 0.25, 1.0],
            channels,
        }
    }

    /// Per (sample, frame, channel) mean of a prepared rgb tensor.
    fn plane_means(p: &Prepared) -> Vec<f32> {
        let (s, t, c, h, w) = p.rgb.dims5().unwrap();
        p.rgb
            .reshape((s * t * c, h * w))
            .unwrap()
            .mean(1)
            .unwrap()
            .to_vec1()
            .unwrap()
    }

    #[test]
    fn a_blue_video_normalises_per_channel_in_either_order_without_flow() {
        let mut v = ffmpeg_video("color=c=0x0000FF:size=40x30:rate=10:duration=2");
        let frames = v.info().frames;
        let rgb = prepare(
            &mut v,
            &pre(ChannelOrder::Rgb, None),
            (0, frames),
            2,
            &Cancel::default(),
        )
        .unwrap();
        assert_eq!(rgb.rgb.dims(), &[2, 4, 3, 16, 16]);
        assert_eq!(rgb.flow.dims(), &[2, 4, 0, 16, 16]);
        assert_eq!((rgb.frames_decoded, rgb.flow_ms), (8, 0.0));
        // Blue (0, 0, 255) within a few levels after yuv420p: (0-.5)/.5, (0-.25)/.25, 1.
        for (i, m) in plane_means(&rgb).iter().enumerate() {
            let expected = [-1.0, -1.0, 1.0][i % 3];
            assert!((m - expected).abs() < 0.04, "plane {i}: {m} vs {expected}");
        }
        let bgr = prepare(
            &mut v,
            &pre(ChannelOrder::Bgr, Some(2)),
            (0, frames),
            1,
            &Cancel::default(),
        )
        .unwrap();
        // Blue comes first now: (1-.5)/.5, (0-.25)/.25, 0 / 1.
        for (i, m) in plane_means(&bgr).iter().enumerate() {
            let expected = [1.0, -1.0, 0.0][i % 3];
            assert!((m - expected).abs() < 0.04, "plane {i}: {m} vs {expected}");
        }
    }

    #[test]
    fn requests_without_flow_batch_like_any_other() {
        // The batching queue concatenates requests and splits batches along the sample
        // axis, empty flow included.
        let mut v = ffmpeg_video("color=c=0xFF0000:size=32x32:rate=10:duration=1");
        let frames = v.info().frames;
        let pre = pre(ChannelOrder::Rgb, None);
        let a = prepare(&mut v, &pre, (0, frames), 1, &Cancel::default()).unwrap();
        let b = prepare(&mut v, &pre, (0, frames), 2, &Cancel::default()).unwrap();
        let flow = Tensor::cat(&[&a.flow, &b.flow], 0).unwrap();
        assert_eq!(flow.dims(), &[3, 4, 0, 16, 16]);
        assert_eq!(flow.narrow(0, 1, 2).unwrap().dims(), &[2, 4, 0, 16, 16]);
        let rgb = Tensor::cat(&[&a.rgb, &b.rgb], 0).unwrap();
        assert_eq!(rgb.narrow(0, 1, 2).unwrap().dims(), &[2, 4, 3, 16, 16]);
    }

    #[test]
    fn spread_and_strided_sampling_pick_the_configured_frames() {
        let starts = |s: Sampling| match s {
            Sampling::Starts {
                starts,
                clip_len,
                stride,
            } => (starts, clip_len, stride),
            other => panic!("{other:?}"),
        };
        // Spread: 2 segments x 4 frames over 80 frames, one every 10 frames, centred.
        let (s, len, _) = starts(pre(ChannelOrder::Rgb, None).sampling((0, 80), 2));
        assert_eq!((s, len), (vec![4, 14, 24, 34, 44, 54, 64, 74], 1));
        // Strided: per segment of 40 frames, a clip spanning 7 frames centred at 20 and 60.
        let (s, len, stride) = starts(pre(ChannelOrder::Rgb, Some(2)).sampling((0, 80), 2));
        assert_eq!((s, len, stride), (vec![16, 56], 4, 2));
    }
}
