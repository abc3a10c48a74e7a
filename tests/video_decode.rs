//! Decoding matches the ffmpeg CLI on every generated codec and container.

mod common;

use std::path::Path;

use common::videos::{
    cli_frames, diff, h264_mp4, h264_with_audio, make_testsrc, make_video, scaled_size,
};
use revstream::video::{Limits, Resize, Sampling, Video};

/// Largest mean absolute difference per channel value (0-255) from the CLI's frame.
const MEAN_TOL: f64 = 0.5;
/// Largest single channel-value difference from the CLI's frame.
const MAX_TOL: u8 = 8;

/// What a generated video must probe as.
struct Expect {
    codec: &'static str,
    size: (u32, u32),
    frames: u64,
    fps: f64,
    rotation: i32,
}

/// Probes `path`, then samples a few frames both by file and from memory and compares them
/// with the CLI's decoding of the same frame numbers, scaled and cropped alike.
fn check(path: &Path, expect: Expect) {
    let mut video = Video::open(path, &Limits::default()).expect("opens");
    let info = video.info().clone();
    assert_eq!(info.codec, expect.codec);
    assert_eq!((info.width, info.height), expect.size);
    assert_eq!(info.frames, expect.frames);
    assert_eq!(info.rotation, expect.rotation);
    assert!((info.fps - expect.fps).abs() < 0.01, "fps {}", info.fps);
    let want_duration = expect.frames as f64 / expect.fps;
    assert!(
        (info.duration_s - want_duration).abs() < 0.05,
        "duration {} vs {want_duration}",
        info.duration_s
    );

    let last = expect.frames - 1;
    let mut indices = vec![0, last / 3, (last / 3 + 1).min(last), last];
    indices.dedup();
    indices.sort_unstable();
    indices.dedup();
    let short = 96;
    let scale = scaled_size(info.width, info.height, short);
    let crop = (scale.0.min(88), scale.1.min(72));
    let resize = Resize {
        short_side: short,
        crop: Some(crop),
    };
    let sampling = Sampling::Starts {
        starts: indices.clone(),
        clip_len: 1,
        stride: 1,
    };
    let clips = video.sample(&sampling, &resize).expect("samples");
    let expected = cli_frames(path, &indices, scale, crop);
    let mut from_memory = Video::from_bytes(std::fs::read(path).unwrap(), &Limits::default())
        .expect("opens from memory");
    let memory_clips = from_memory
        .sample(&sampling, &resize)
        .expect("samples from memory");

    for ((clip, want), index) in clips.iter().zip(&expected).zip(&indices) {
        let frame = &clip.frames[0];
        assert_eq!((frame.width, frame.height), crop);
        assert_eq!(clip.start_frame, *index);
        let (mean, max) = diff(&frame.data, want);
        eprintln!(
            "{}: frame {index}: mean {mean:.3} max {max}",
            path.display()
        );
        assert!(
            mean <= MEAN_TOL && max <= MAX_TOL,
            "frame {index}: mean {mean:.3} max {max}"
        );
    }
    for (a, b) in clips.iter().zip(&memory_clips) {
        assert_eq!(
            a.frames[0].data, b.frames[0].data,
            "file and memory decoding differ"
        );
    }
    // The comparison tells frames apart: the first frame is far from the last.
    if expect.frames > 1 {
        let (mean, _) = diff(&clips[0].frames[0].data, &expected[expected.len() - 1]);
        assert!(
            mean > 4.0 * MEAN_TOL,
            "distinct frames look alike (mean {mean:.3})"
        );
    }
}

fn expect(codec: &'static str, size: (u32, u32), frames: u64, fps: f64) -> Expect {
    Expect {
        codec,
        size,
        frames,
        fps,
        rotation: 0,
    }
}

#[test]
fn h264_mp4_matches_cli() {
    let dir = tempfile::tempdir().unwrap();
    check(&h264_mp4(dir.path()), expect("h264", (320, 240), 50, 25.0));
}

#[test]
fn hevc_mkv_matches_cli() {
    let dir = tempfile::tempdir().unwrap();
    let path = make_testsrc(
        dir.path(),
        "hevc.mkv",
        (192, 108),
        25,
        2.0,
        &[
            "-c:v",
            "libx265",
            "-preset",
            "ultrafast",
            "-x265-params",
            "log-level=none",
        ],
    );
    check(&path, expect("hevc", (192, 108), 50, 25.0));
}

#[test]
fn vp9_webm_odd_size_matches_cli() {
    let dir = tempfile::tempdir().unwrap();
    let path = make_testsrc(
        dir.path(),
        "vp9.webm",
        (320, 240),
        25,
        1.0,
        &[
            "-vf",
            "scale=321:241",
            "-c:v",
            "libvpx-vp9",
            "-deadline",
            "realtime",
            "-cpu-used",
            "8",
            "-g",
            "10",
        ],
    );
    check(&path, expect("vp9", (321, 241), 25, 25.0));
}

#[test]
fn av1_mkv_matches_cli() {
    let dir = tempfile::tempdir().unwrap();
    let path = make_testsrc(
        dir.path(),
        "av1.mkv",
        (160, 120),
        24,
        1.0,
        &["-c:v", "libsvtav1", "-preset", "12", "-g", "12"],
    );
    check(&path, expect("av1", (160, 120), 24, 24.0));
}

#[test]
fn mpeg4_avi_matches_cli() {
    let dir = tempfile::tempdir().unwrap();
    let path = make_testsrc(
        dir.path(),
        "mpeg4.avi",
        (176, 144),
        25,
        2.0,
        &["-c:v", "mpeg4", "-q:v", "3", "-bf", "2"],
    );
    check(&path, expect("mpeg4", (176, 144), 50, 25.0));
}

#[test]
fn mjpeg_mov_matches_cli() {
    let dir = tempfile::tempdir().unwrap();
    let path = make_testsrc(
        dir.path(),
        "mjpeg.mov",
        (160, 120),
        10,
        2.0,
        &["-c:v", "mjpeg", "-q:v", "3"],
    );
    check(&path, expect("mjpeg", (160, 120), 20, 10.0));
}

#[test]
fn prores_mov_matches_cli() {
    let dir = tempfile::tempdir().unwrap();
    let path = make_testsrc(
        dir.path(),
        "prores.mov",
        (128, 96),
        10,
        1.0,
        &["-c:v", "prores_ks", "-profile:v", "0"],
    );
    check(&path, expect("prores", (128, 96), 10, 10.0));
}

#[test]
fn yuv444_h264_matches_cli() {
    let dir = tempfile::tempdir().unwrap();
    let path = make_testsrc(
        dir.path(),
        "yuv444.mp4",
        (160, 120),
        25,
        1.0,
        &["-c:v", "libx264", "-pix_fmt", "yuv444p"],
    );
    check(&path, expect("h264", (160, 120), 25, 25.0));
}

#[test]
fn gray_ffv1_odd_size_matches_cli() {
    let dir = tempfile::tempdir().unwrap();
    let path = make_testsrc(
        dir.path(),
        "gray.mkv",
        (160, 100),
        25,
        1.0,
        &["-vf", "scale=161:99", "-c:v", "ffv1", "-pix_fmt", "gray"],
    );
    check(&path, expect("ffv1", (161, 99), 25, 25.0));
}

/// Turns packed RGB24 `w`x`h` by 90° counter-clockwise.
fn rotate_ccw(data: &[u8], w: usize, h: usize) -> Vec<u8> {
    let mut out = vec![0u8; data.len()];
    for y in 0..w {
        for x in 0..h {
            let (sx, sy) = (w - 1 - y, x);
            out[(y * h + x) * 3..][..3].copy_from_slice(&data[(sy * w + sx) * 3..][..3]);
        }
    }
    out
}

#[test]
fn rotation_metadata_is_turned_upright_like_cli() {
    let dir = tempfile::tempdir().unwrap();
    let plain = h264_mp4(dir.path());
    let rotated = make_video(
        dir.path(),
        "rotated.mp4",
        &[
            "-i",
            plain.to_str().unwrap(),
            "-c",
            "copy",
            "-metadata:s:v",
            "rotate=90",
        ],
    );
    let mut video = Video::open(&rotated, &Limits::default()).unwrap();
    let info = video.info().clone();
    // FFmpeg 5.1 stores `rotate=90` as a 90° counter-clockwise display matrix, which the
    // CLI (and so revstream) undoes by turning the frames 270° clockwise.
    assert_eq!(
        (info.width, info.height, info.rotation, info.frames),
        (240, 320, 270, 50)
    );
    let sampling = Sampling::Starts {
        starts: vec![0, 30],
        clip_len: 1,
        stride: 1,
    };
    let clips = video
        .sample(
            &sampling,
            &Resize {
                short_side: 96,
                crop: None,
            },
        )
        .unwrap();
    let upright = cli_frames(&plain, &[0, 30], (128, 96), (128, 96));
    let autorotated = cli_frames(&rotated, &[0, 30], (96, 128), (96, 128));
    for ((clip, plain), auto) in clips.iter().zip(&upright).zip(&autorotated) {
        let frame = &clip.frames[0];
        assert_eq!((frame.width, frame.height), (96, 128));
        // Exactly the CLI's scaled frame, turned.
        let (mean, max) = diff(&frame.data, &rotate_ccw(plain, 128, 96));
        assert!(
            mean <= MEAN_TOL && max <= MAX_TOL,
            "mean {mean:.3} max {max}"
        );
        // The CLI turns before scaling, so its chroma is resampled differently: close, not equal.
        let (mean, _) = diff(&frame.data, auto);
        assert!(mean <= 8.0, "mean {mean:.3} against the CLI's autorotation");
        let wrong_way: Vec<u8> = rotate_ccw(&rotate_ccw(auto, 96, 128), 128, 96);
        assert!(
            diff(&frame.data, &wrong_way).0 > 30.0,
            "a 180° error would go unnoticed"
        );
    }
}

#[test]
fn one_frame_video_matches_cli() {
    let dir = tempfile::tempdir().unwrap();
    let path = make_testsrc(
        dir.path(),
        "one.mp4",
        (160, 120),
        25,
        1.0,
        &["-frames:v", "1", "-c:v", "libx264"],
    );
    check(&path, expect("h264", (160, 120), 1, 25.0));
}

#[test]
fn video_with_audio_matches_cli() {
    let dir = tempfile::tempdir().unwrap();
    check(
        &h264_with_audio(dir.path()),
        expect("h264", (320, 240), 50, 25.0),
    );
}

#[test]
fn native_size_frames_match_cli_exactly_sized() {
    let dir = tempfile::tempdir().unwrap();
    let path = make_testsrc(
        dir.path(),
        "odd.webm",
        (320, 240),
        25,
        1.0,
        &[
            "-vf",
            "scale=321:241",
            "-c:v",
            "libvpx-vp9",
            "-deadline",
            "realtime",
            "-cpu-used",
            "8",
        ],
    );
    let mut video = Video::open(&path, &Limits::default()).unwrap();
    let all = video.decode_all(&Resize::native()).unwrap();
    assert_eq!(all.len(), 25);
    let expected = cli_frames(&path, &[0, 12, 24], (321, 241), (321, 241));
    for (i, want) in [0usize, 12, 24].iter().zip(&expected) {
        assert_eq!((all[*i].width, all[*i].height), (321, 241));
        let (mean, max) = diff(&all[*i].data, want);
        assert!(
            mean <= MEAN_TOL && max <= MAX_TOL,
            "frame {i}: mean {mean:.3} max {max}"
        );
        assert!(
            (all[*i].pts_s - *i as f64 / 25.0).abs() < 1e-3,
            "pts {}",
            all[*i].pts_s
        );
    }
}

#[test]
fn variable_frame_rate_timestamps_pick_the_frame_on_screen() {
    let dir = tempfile::tempdir().unwrap();
    // 40 frames: the first 20 at 1/30 s spacing, the rest at 2/30 s.
    let path = make_testsrc(
        dir.path(),
        "vfr.mp4",
        (160, 120),
        30,
        40.0 / 30.0,
        &[
            "-vf",
            "setpts='if(lt(N,20),N,2*N-20)/30/TB'",
            "-fps_mode",
            "vfr",
            "-c:v",
            "libx264",
            "-video_track_timescale",
            "30",
        ],
    );
    let mut video = Video::open(&path, &Limits::default()).unwrap();
    let info = video.info().clone();
    assert_eq!(info.frames, 40);
    assert!(
        (info.duration_s - 60.0 / 30.0).abs() < 0.1,
        "duration {}",
        info.duration_s
    );
    // t = 1.0 s: frame 25 starts at (2*25-20)/30 = 1.0; t = 0.5 s: frame 15.
    let clips = video
        .sample(
            &Sampling::Timestamps(vec![0.5, 1.0, 1.05]),
            &Resize {
                short_side: 0,
                crop: None,
            },
        )
        .unwrap();
    let expected = cli_frames(&path, &[15, 25, 25], (160, 120), (160, 120));
    assert_eq!(
        clips.iter().map(|c| c.start_frame).collect::<Vec<_>>(),
        vec![15, 25, 25]
    );
    for (clip, want) in clips.iter().zip(&expected) {
        let (mean, max) = diff(&clip.frames[0].data, want);
        assert!(
            mean <= MEAN_TOL && max <= MAX_TOL,
            "mean {mean:.3} max {max}"
        );
    }
    assert!((clips[1].frames[0].pts_s - 1.0).abs() < 1e-6);
}

#[test]
fn bt709_tagged_h264_matches_cli() {
    let dir = tempfile::tempdir().unwrap();
    let path = make_testsrc(
        dir.path(),
        "bt709.mp4",
        (160, 120),
        25,
        1.0,
        &[
            "-c:v",
            "libx264",
            "-colorspace",
            "bt709",
            "-color_primaries",
            "bt709",
            "-color_trc",
            "bt709",
        ],
    );
    check(&path, expect("h264", (160, 120), 25, 25.0));
}
