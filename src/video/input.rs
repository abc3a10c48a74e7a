//! Opening an input (file or memory) with FFmpeg and telling bad inputs apart.

use std::ffi::CStr;
use std::fs::File;
use std::io::{Cursor, Read};
use std::path::PathBuf;
use std::sync::{Arc, Once};

use ffmpeg::ffi;
use ffmpeg::format::context::{Input, StreamIo};
use ffmpeg_next as ffmpeg;

use super::VideoError;

/// AVIO buffer size: large reads make demuxing from files and memory equally cheap.
const IO_BUFFER: usize = 64 * 1024;

/// Demuxers that open single images or text as "video"; an upload of those is not a video.
const NOT_VIDEO_DEMUXERS: &[&str] = &["image2", "tty", "bin", "xbin", "adf", "idf"];

/// FFmpeg's AVPROBE_SCORE_RETRY (a macro bindgen does not export): below it a guess is weak.
const PROBE_SCORE_RETRY: i32 = 25;

/// Where the bytes come from; kept so the input can be reopened.
#[derive(Debug, Clone)]
pub(crate) enum Source {
    Path(PathBuf),
    Bytes(SharedBytes),
}

/// Bytes shared between reopenings of the same in-memory input, without copies.
#[derive(Debug, Clone)]
pub(crate) struct SharedBytes(pub Arc<Vec<u8>>);

impl AsRef<[u8]> for SharedBytes {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

/// Initialises FFmpeg once and silences its log, which would otherwise go to stderr.
pub(crate) fn init() {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        // Only fails on very old FFmpeg versions that need explicit registration.
        let _ = ffmpeg::init();
        ffmpeg::util::log::set_level(ffmpeg::util::log::Level::Quiet);
    });
}

impl Source {
    /// Size of the input in bytes.
    pub fn len(&self) -> Result<u64, VideoError> {
        match self {
            Source::Path(p) => Ok(std::fs::metadata(p)?.len()),
            Source::Bytes(b) => Ok(b.0.len() as u64),
        }
    }

    /// Opens the input through a custom AVIO context. Files are read through `File`
    /// rather than FFmpeg's protocols so a path is never taken for a URL or a protocol
    /// string, and files and memory are probed by content alike.
    pub fn open(&self) -> Result<Input, VideoError> {
        let io = match self {
            Source::Path(p) => StreamIo::from_read_seek_with_capacity(File::open(p)?, IO_BUFFER),
            Source::Bytes(b) => {
                StreamIo::from_read_seek_with_capacity(Cursor::new(b.clone()), IO_BUFFER)
            }
        }
        .map_err(|e| VideoError::Io(std::io::Error::other(e.to_string())))?;
        let input =
            ffmpeg::format::input_from_stream(io, None, None).map_err(|e| self.open_error(e))?;
        let name = input.format().name().to_string();
        if NOT_VIDEO_DEMUXERS.contains(&name.as_str()) || name.ends_with("_pipe") {
            let what = name.trim_end_matches("_pipe");
            return Err(VideoError::NotAVideo(format!(
                "it is a single {what} image or text, not a video"
            )));
        }
        Ok(input)
    }

    /// Tells "not a media file at all" from "a media file FFmpeg could not read".
    fn open_error(&self, err: ffmpeg::Error) -> VideoError {
        match self.head() {
            Ok(head) if head.is_empty() => VideoError::NotAVideo("the input is empty".into()),
            Ok(head) => match probe_format(&head) {
                Some(format) => VideoError::Corrupt(format!(
                    "it looks like a {format} file but could not be read ({err}); it may be cut short or damaged"
                )),
                None => {
                    VideoError::NotAVideo("its content is not a format FFmpeg recognises".into())
                }
            },
            Err(e) => e,
        }
    }

    /// The first bytes of the input, for format probing.
    fn head(&self) -> Result<Vec<u8>, VideoError> {
        const HEAD: usize = 1 << 20;
        match self {
            Source::Path(p) => {
                let mut head = Vec::new();
                File::open(p)?.take(HEAD as u64).read_to_end(&mut head)?;
                Ok(head)
            }
            Source::Bytes(b) => Ok(b.0[..b.0.len().min(HEAD)].to_vec()),
        }
    }
}

/// Long name of the container format FFmpeg recognises in `head`, if any.
fn probe_format(head: &[u8]) -> Option<String> {
    let mut buf = head.to_vec();
    buf.resize(head.len() + ffi::AVPROBE_PADDING_SIZE as usize, 0);
    let probe = ffi::AVProbeData {
        filename: c"".as_ptr(),
        buf: buf.as_mut_ptr(),
        buf_size: head.len() as i32,
        mime_type: std::ptr::null(),
    };
    let mut score = 0;
    // SAFETY: `probe` points at a buffer padded with AVPROBE_PADDING_SIZE zero bytes as
    // FFmpeg requires; the returned format is a static descriptor.
    let format = unsafe { ffi::av_probe_input_format3(&probe, 1, &mut score) };
    if format.is_null() || score <= PROBE_SCORE_RETRY {
        return None;
    }
    // SAFETY: a non-null AVInputFormat has a valid, static, NUL-terminated long_name or name.
    unsafe {
        let name = if (*format).long_name.is_null() {
            (*format).name
        } else {
            (*format).long_name
        };
        Some(CStr::from_ptr(name).to_string_lossy().into_owned())
    }
}

/// Clockwise rotation in degrees (0, 90, 180, 270) that displays the stream upright,
/// read from its display matrix as the ffmpeg CLI does.
pub(crate) fn rotation(stream: &ffmpeg::format::stream::Stream) -> i32 {
    for side in stream.side_data() {
        if side.kind() == ffmpeg::codec::packet::side_data::Type::DisplayMatrix
            && side.data().len() >= 36
        {
            let mut matrix = [0i32; 9];
            for (m, bytes) in matrix.iter_mut().zip(side.data().chunks_exact(4)) {
                *m = i32::from_ne_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
            }
            // SAFETY: `matrix` holds the 9 values av_display_rotation_get reads.
            let ccw = unsafe { ffi::av_display_rotation_get(matrix.as_ptr()) };
            if !ccw.is_finite() {
                return 0;
            }
            let quarter = (-ccw / 90.0).round() as i64;
            return (quarter.rem_euclid(4) * 90) as i32;
        }
    }
    0
}
