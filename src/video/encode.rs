//! Writing RGB frames as an H.264 (libx264) MP4 through ffmpeg-next, one frame at a time.

use std::path::Path;
use std::sync::Once;

use ffmpeg_next::format::Pixel;
use ffmpeg_next::software::scaling::{Context as Scaler, Flags};
use ffmpeg_next::{Dictionary, Packet, Rational, codec, encoder, format, frame};

use crate::{Error, Result};

static INIT: Once = Once::new();

/// An MP4 being written: packed RGB24 frames in, H.264 (yuv420p) out.
pub struct H264Writer {
    octx: format::context::Output,
    enc: encoder::Video,
    scaler: Scaler,
    rgb: frame::Video,
    time_base: Rational,
    stream_tb: Rational,
    frames: i64,
    row: usize,
    height: usize,
}

impl H264Writer {
    /// Starts `path` for frames of `width` x `height` at `fps`. `crf` is x264's constant
    /// rate factor (0 lossless .. 51 worst); `threads` x264's threads (0: its choice).
    pub fn create(
        path: &Path,
        (width, height): (u32, u32),
        fps: f64,
        crf: u32,
        threads: u32,
    ) -> Result<H264Writer> {
        INIT.call_once(|| {
            if ffmpeg_next::init().is_ok() {
                ffmpeg_next::util::log::set_level(ffmpeg_next::util::log::Level::Error);
            }
        });
        // yuv420p halves both dimensions.
        if width == 0 || height == 0 || width % 2 == 1 || height % 2 == 1 {
            return Err(Error::InvalidArgument(format!(
                "H.264 frames must have even, non-zero sides, not {width}x{height}"
            )));
        }
        let mut octx = format::output(&path)?;
        let codec = encoder::find(codec::Id::H264)
            .ok_or_else(|| Error::Ffmpeg("no H.264 encoder in this FFmpeg".into()))?;
        let global_header = octx.format().flags().contains(format::Flags::GLOBAL_HEADER);
        let mut stream = octx.add_stream(codec)?;
        let mut enc = codec::context::Context::new_with_codec(codec)
            .encoder()
            .video()?;
        // av_d2q keeps fractional rates such as 29.97 exact enough.
        let rate = Rational::from(fps);
        let time_base = rate.invert();
        enc.set_width(width);
        enc.set_height(height);
        enc.set_format(Pixel::YUV420P);
        enc.set_time_base(time_base);
        enc.set_frame_rate(Some(rate));
        if global_header {
            enc.set_flags(codec::Flags::GLOBAL_HEADER);
        }
        let mut opts = Dictionary::new();
        opts.set("preset", "veryfast");
        opts.set("crf", &crf.to_string());
        opts.set("threads", &threads.to_string());
        let enc = enc.open_with(opts)?;
        stream.set_parameters(&enc);
        stream.set_time_base(time_base);
        octx.write_header()?;
        let stream_tb = octx
            .stream(0)
            .ok_or_else(|| Error::Ffmpeg("output stream vanished".into()))?
            .time_base();
        let scaler = Scaler::get(
            Pixel::RGB24,
            width,
            height,
            Pixel::YUV420P,
            width,
            height,
            Flags::BILINEAR,
        )?;
        Ok(H264Writer {
            octx,
            enc,
            scaler,
            rgb: frame::Video::new(Pixel::RGB24, width, height),
            time_base,
            stream_tb,
            frames: 0,
            row: width as usize * 3,
            height: height as usize,
        })
    }

    /// Encodes the next frame (packed RGB24, `width x height x 3` bytes).
    pub fn push(&mut self, data: &[u8]) -> Result<()> {
        if data.len() != self.row * self.height {
            return Err(Error::InvalidArgument(format!(
                "frame of {} bytes, expected {} for {}x{} RGB",
                data.len(),
                self.row * self.height,
                self.row / 3,
                self.height
            )));
        }
        let stride = self.rgb.stride(0);
        let plane = self.rgb.data_mut(0);
        for (y, src) in data.chunks_exact(self.row).enumerate() {
            plane[y * stride..y * stride + self.row].copy_from_slice(src);
        }
        let mut yuv = frame::Video::empty();
        self.scaler.run(&self.rgb, &mut yuv)?;
        yuv.set_pts(Some(self.frames));
        self.frames += 1;
        self.enc.send_frame(&yuv)?;
        self.drain()
    }

    /// Flushes the encoder and closes the file.
    pub fn finish(mut self) -> Result<()> {
        self.enc.send_eof()?;
        self.drain()?;
        self.octx.write_trailer()?;
        Ok(())
    }

    fn drain(&mut self) -> Result<()> {
        let mut packet = Packet::empty();
        while self.enc.receive_packet(&mut packet).is_ok() {
            packet.set_stream(0);
            packet.rescale_ts(self.time_base, self.stream_tb);
            packet.write_interleaved(&mut self.octx)?;
        }
        Ok(())
    }
}

/// Encodes packed RGB24 `frames` of `width` x `height` at `fps` into `path` (H.264,
/// yuv420p, one encoder thread since callers parallelise across files).
pub fn write_h264(
    path: &Path,
    frames: &[Vec<u8>],
    width: u32,
    height: u32,
    fps: f64,
    crf: u32,
) -> Result<()> {
    let mut writer = H264Writer::create(path, (width, height), fps, crf, 1)?;
    for frame in frames {
        writer.push(frame)?;
    }
    writer.finish()
}
