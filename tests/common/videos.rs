//! Test videos generated with the ffmpeg CLI, and the CLI's own decoding as reference.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Runs `ffmpeg -y -v error <args> <dir/name>` and returns the output path.
/// Panics with ffmpeg's message if it fails (the test cannot go on without its input).
pub fn make_video(dir: &Path, name: &str, args: &[&str]) -> PathBuf {
    let out = dir.join(name);
    let result = Command::new("ffmpeg")
        .args(["-y", "-v", "error", "-nostdin"])
        .args(args)
        .arg(&out)
        .output()
        .expect("the ffmpeg CLI is installed (make deps)");
    assert!(
        result.status.success(),
        "ffmpeg {args:?} failed: {}",
        String::from_utf8_lossy(&result.stderr)
    );
    out
}

/// Arguments for a moving synthetic source: `testsrc2` of `w`x`h` at `fps` for `seconds`.
pub fn source(w: u32, h: u32, fps: u32, seconds: f64) -> Vec<String> {
    ["-f", "lavfi", "-i"]
        .iter()
        .map(|s| s.to_string())
        .chain([format!(
            "testsrc2=size={w}x{h}:rate={fps}:duration={seconds}"
        )])
        .collect()
}

/// `make_video` with a `testsrc2` source followed by `codec_args`.
pub fn make_testsrc(
    dir: &Path,
    name: &str,
    (w, h): (u32, u32),
    fps: u32,
    seconds: f64,
    codec_args: &[&str],
) -> PathBuf {
    let mut args = source(w, h, fps, seconds);
    args.extend(codec_args.iter().map(|s| s.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    make_video(dir, name, &args)
}

/// A 2 s, 25 fps, 320x240 H.264 mp4 (keyframe every 12 frames, B-frames on).
pub fn h264_mp4(dir: &Path) -> PathBuf {
    make_testsrc(
        dir,
        "h264.mp4",
        (320, 240),
        25,
        2.0,
        &[
            "-c:v", "libx264", "-pix_fmt", "yuv420p", "-g", "12", "-bf", "2",
        ],
    )
}

/// A 2 s 320x240 H.264 mp4 with a 440 Hz AAC audio track.
pub fn h264_with_audio(dir: &Path) -> PathBuf {
    let mut args = source(320, 240, 25, 2.0);
    args.extend(
        [
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=440:duration=2",
            "-c:v",
            "libx264",
            "-pix_fmt",
            "yuv420p",
            "-c:a",
            "aac",
            "-shortest",
        ]
        .map(String::from),
    );
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    make_video(dir, "with_audio.mp4", &args)
}

/// A 2 s AAC audio-only file.
pub fn audio_only(dir: &Path) -> PathBuf {
    make_video(
        dir,
        "audio.m4a",
        &[
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=440:duration=2",
            "-c:a",
            "aac",
        ],
    )
}

/// A single 64x48 PNG image.
pub fn png_image(dir: &Path) -> PathBuf {
    make_testsrc(dir, "image.png", (64, 48), 1, 1.0, &["-frames:v", "1"])
}

/// Size after scaling the shorter side of `w`x`h` to `s` (as revstream rounds it).
pub fn scaled_size(w: u32, h: u32, s: u32) -> (u32, u32) {
    if s == 0 {
        (w, h)
    } else if w <= h {
        (s, (h as f64 * s as f64 / w as f64).round() as u32)
    } else {
        ((w as f64 * s as f64 / h as f64).round() as u32, s)
    }
}

/// Frames `indices` (decode output order, after rotation) as decoded by the ffmpeg CLI,
/// scaled bilinearly to `scale` (w, h) and centre-cropped to `crop`, as packed RGB24.
pub fn cli_frames(
    path: &Path,
    indices: &[u64],
    scale: (u32, u32),
    crop: (u32, u32),
) -> Vec<Vec<u8>> {
    let select: Vec<String> = indices.iter().map(|i| format!("eq(n\\,{i})")).collect();
    let (x, y) = ((scale.0 - crop.0) / 2, (scale.1 - crop.1) / 2);
    let filter = format!(
        "select='{}',scale={}:{}:flags=bilinear,format=rgb24,crop={}:{}:{x}:{y}",
        select.join("+"),
        scale.0,
        scale.1,
        crop.0,
        crop.1
    );
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-nostdin", "-i"])
        .arg(path)
        .args([
            "-vf",
            &filter,
            "-fps_mode",
            "passthrough",
            "-f",
            "rawvideo",
            "-pix_fmt",
            "rgb24",
            "-",
        ])
        .output()
        .expect("the ffmpeg CLI is installed");
    assert!(
        out.status.success(),
        "ffmpeg decode failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let size = (crop.0 * crop.1 * 3) as usize;
    let frames: Vec<Vec<u8>> = out.stdout.chunks_exact(size).map(<[u8]>::to_vec).collect();
    let mut unique = indices.to_vec();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(
        frames.len(),
        unique.len(),
        "the CLI returned {} frames for {unique:?}",
        frames.len()
    );
    // Back to the caller's order (select emits frames in stream order, once each).
    indices
        .iter()
        .map(|i| frames[unique.binary_search(i).unwrap()].clone())
        .collect()
}

/// Mean and maximum absolute difference between two equally long byte buffers.
pub fn diff(a: &[u8], b: &[u8]) -> (f64, u8) {
    assert_eq!(a.len(), b.len(), "frames differ in size");
    let mut sum = 0u64;
    let mut max = 0u8;
    for (x, y) in a.iter().zip(b) {
        let d = x.abs_diff(*y);
        sum += u64::from(d);
        max = max.max(d);
    }
    (sum as f64 / a.len().max(1) as f64, max)
}
