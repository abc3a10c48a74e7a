//! Writing RGB frames as an H.264 (libx264) MP4 through ffmpeg-next.

use std::path::Path;
use std::sync::Once;

use ffmpeg_next::format::Pixel;
use ffmpeg_next::software::scaling::{Context as Scaler, Flags};
use ffmpeg_next::{Dictionary, Packet, Rational, codec, encoder, format, frame};

use crate::{Error, Result};

static INIT: Once = Once::new();

/// Encodes packed RGB24 `frames` of `width` x `height` at `fps` into `path` (H.264, yuv420p).
///
/// `crf` is x264's constant rate factor (0 lossless .. 51 worst). One encoder thread,
/// since callers parallelise across files.
pub fn write_h264(
    path: &Path,
    frames: &[Vec<u8>],
    width: u32,
    height: u32,
    fps: f64,
    crf: u32,
) -> Result<()> {
    INIT.call_once(|| {
        if ffmpeg_next::init().is_ok() {
            ffmpeg_next::util::log::set_level(ffmpeg_next::util::log::Level::Error);
        }
    });
    let expected = width as usize * height as usize * 3;
    if let Some(bad) = frames.iter().find(|f| f.len() != expected) {
        return Err(Error::InvalidArgument(format!(
            "frame of {} bytes, expected {expected} for {width}x{height} RGB",
            bad.len()
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
    opts.set("threads", "1");
    let mut enc = enc.open_with(opts)?;
    stream.set_parameters(&enc);
    stream.set_time_base(time_base);
    octx.write_header()?;
    let stream_tb = octx
        .stream(0)
        .ok_or_else(|| Error::Ffmpeg("output stream vanished".into()))?
        .time_base();

    let mut scaler = Scaler::get(
        Pixel::RGB24,
        width,
        height,
        Pixel::YUV420P,
        width,
        height,
        Flags::BILINEAR,
    )?;
    let mut rgb = frame::Video::new(Pixel::RGB24, width, height);
    let row = width as usize * 3;
    for (i, data) in frames.iter().enumerate() {
        let stride = rgb.stride(0);
        let plane = rgb.data_mut(0);
        for (y, src) in data.chunks_exact(row).enumerate() {
            plane[y * stride..y * stride + row].copy_from_slice(src);
        }
        let mut yuv = frame::Video::empty();
        scaler.run(&rgb, &mut yuv)?;
        yuv.set_pts(Some(i as i64));
        enc.send_frame(&yuv)?;
        drain(&mut enc, &mut octx, time_base, stream_tb)?;
    }
    enc.send_eof()?;
    drain(&mut enc, &mut octx, time_base, stream_tb)?;
    octx.write_trailer()?;
    Ok(())
}

fn drain(
    enc: &mut encoder::Video,
    octx: &mut format::context::Output,
    from: Rational,
    to: Rational,
) -> Result<()> {
    let mut packet = Packet::empty();
    while enc.receive_packet(&mut packet).is_ok() {
        packet.set_stream(0);
        packet.rescale_ts(from, to);
        packet.write_interleaved(octx)?;
    }
    Ok(())
}
