//! Every bad input gets its typed error, limits are enforced, and nothing panics.

mod common;

use std::path::Path;

use common::videos::{audio_only, h264_mp4, make_testsrc, png_image};
use revstream::video::{Limits, Resize, Sampling, Video, VideoError};

/// The error kind opening `bytes` from memory gives (and the same from a file).
fn kind_of(dir: &Path, bytes: Vec<u8>) -> &'static str {
    let path = dir.join("input.bin");
    std::fs::write(&path, &bytes).unwrap();
    let from_file = Video::open(&path, &Limits::default())
        .expect_err("must fail")
        .kind();
    let from_memory = Video::from_bytes(bytes, &Limits::default())
        .expect_err("must fail")
        .kind();
    assert_eq!(from_file, from_memory, "file and memory disagree");
    from_memory
}

/// Deterministic pseudo-random bytes (xorshift).
fn random_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.max(1);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

#[test]
fn empty_input_is_not_a_video() {
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(kind_of(dir.path(), Vec::new()), "not_a_video");
}

#[test]
fn random_bytes_are_not_a_video() {
    let dir = tempfile::tempdir().unwrap();
    for seed in 1..=5 {
        assert_eq!(
            kind_of(dir.path(), random_bytes(seed, 64 * 1024)),
            "not_a_video",
            "seed {seed}"
        );
    }
}

#[test]
fn text_is_not_a_video() {
    let dir = tempfile::tempdir().unwrap();
    let text = "This is a plain text file, not a video.\n"
        .repeat(200)
        .into_bytes();
    assert_eq!(kind_of(dir.path(), text.clone()), "not_a_video");
    // By content, not by name: a .txt name must not select FFmpeg's text-art demuxer.
    let path = dir.path().join("notes.txt");
    std::fs::write(&path, text).unwrap();
    assert_eq!(
        Video::open(&path, &Limits::default()).unwrap_err().kind(),
        "not_a_video"
    );
}

#[test]
fn an_image_is_not_a_video() {
    let dir = tempfile::tempdir().unwrap();
    let png = std::fs::read(png_image(dir.path())).unwrap();
    assert_eq!(kind_of(dir.path(), png), "not_a_video");
}

#[test]
fn audio_only_has_no_video_stream() {
    let dir = tempfile::tempdir().unwrap();
    let m4a = std::fs::read(audio_only(dir.path())).unwrap();
    assert!(matches!(
        Video::from_bytes(m4a.clone(), &Limits::default()),
        Err(VideoError::NoVideoStream)
    ));
    assert_eq!(kind_of(dir.path(), m4a), "no_video_stream");
}

#[test]
fn truncated_files_are_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    let src = ["-c:v", "libx264", "-g", "10"];
    let plain =
        std::fs::read(make_testsrc(dir.path(), "a.mp4", (160, 120), 25, 2.0, &src)).unwrap();
    let faststart = std::fs::read(make_testsrc(
        dir.path(),
        "b.mp4",
        (160, 120),
        25,
        2.0,
        &[&src[..], &["-movflags", "+faststart"]].concat(),
    ))
    .unwrap();
    let mkv = std::fs::read(make_testsrc(dir.path(), "c.mkv", (160, 120), 25, 2.0, &src)).unwrap();
    // mp4 with its index at the end (lost), at the start (frames lost), and mkv.
    for (name, bytes) in [("mp4", plain), ("faststart mp4", faststart), ("mkv", mkv)] {
        let cut = bytes[..bytes.len() * 6 / 10].to_vec();
        assert_eq!(kind_of(dir.path(), cut), "corrupt_video", "{name}");
    }
}

#[test]
fn unknown_codec_is_unsupported() {
    let dir = tempfile::tempdir().unwrap();
    let mut mkv = std::fs::read(make_testsrc(
        dir.path(),
        "a.mkv",
        (160, 120),
        25,
        1.0,
        &["-c:v", "libx264"],
    ))
    .unwrap();
    // Same-length edit of the Matroska CodecID keeps the file well formed.
    let at = mkv
        .windows(15)
        .position(|w| w == b"V_MPEG4/ISO/AVC")
        .expect("codec id present");
    mkv[at..at + 15].copy_from_slice(b"V_MPEG4/ISO/XYZ");
    let err = Video::from_bytes(mkv, &Limits::default()).unwrap_err();
    assert_eq!(err.kind(), "unsupported_codec", "{err}");
}

#[test]
fn limits_are_enforced_before_decoding() {
    let dir = tempfile::tempdir().unwrap();
    let path = h264_mp4(dir.path()); // 2 s, 50 frames, 320x240
    let bytes = std::fs::metadata(&path).unwrap().len();
    let base = Limits::default();
    let cases = [
        (
            "bytes",
            Limits {
                max_bytes: bytes - 1,
                ..base.clone()
            },
        ),
        (
            "pixels",
            Limits {
                max_pixels: 320 * 240 - 1,
                ..base.clone()
            },
        ),
        (
            "duration",
            Limits {
                max_duration_s: 1.5,
                ..base.clone()
            },
        ),
        (
            "frames",
            Limits {
                max_frames: 49,
                ..base.clone()
            },
        ),
    ];
    for (what, limits) in cases {
        let err = Video::open(&path, &limits).unwrap_err();
        assert_eq!(err.kind(), "over_limit", "{what}: {err}");
    }
    let exact = Limits {
        max_bytes: bytes,
        max_pixels: 320 * 240,
        max_duration_s: 2.0,
        max_frames: 50,
    };
    assert_eq!(Video::open(&path, &exact).unwrap().info().frames, 50);
}

#[test]
fn damaged_inputs_never_panic() {
    let dir = tempfile::tempdir().unwrap();
    let good = std::fs::read(h264_mp4(dir.path())).unwrap();
    let webm = std::fs::read(make_testsrc(
        dir.path(),
        "v.webm",
        (64, 48),
        25,
        1.0,
        &["-c:v", "libvpx-vp9", "-deadline", "realtime"],
    ))
    .unwrap();
    let sampling = Sampling::Segments {
        segments: 3,
        clip_len: 4,
        stride: 2,
    };
    let resize = Resize {
        short_side: 32,
        crop: Some((32, 32)),
    };
    let (mut ok, mut failed) = (0, 0);
    for (i, base) in [good, webm].iter().enumerate() {
        for seed in 0..20u64 {
            let mut bytes = base.clone();
            let noise = random_bytes(seed + 100 * i as u64 + 1, 64);
            // Overwrite a few spans (headers included for low seeds) and sometimes cut the end.
            for (k, chunk) in noise.chunks(8).enumerate() {
                let at = (seed as usize * 997 + k * bytes.len() / 8) % bytes.len();
                let end = (at + chunk.len()).min(bytes.len());
                bytes[at..end].copy_from_slice(&chunk[..end - at]);
            }
            if seed % 3 == 0 {
                bytes.truncate(bytes.len() * (seed as usize % 7 + 2) / 10);
            }
            let result = Video::from_bytes(bytes, &Limits::default())
                .and_then(|mut v| v.sample(&sampling, &resize));
            match result {
                Ok(clips) => {
                    assert_eq!(clips.len(), 3);
                    assert!(
                        clips
                            .iter()
                            .all(|c| c.frames.iter().all(|f| f.data.len() == 32 * 32 * 3))
                    );
                    ok += 1;
                }
                Err(e) => {
                    assert!(
                        e.is_client_error(),
                        "damaged input reported as a server error: {e}"
                    );
                    failed += 1;
                }
            }
        }
    }
    eprintln!("damaged inputs: {ok} decoded with concealment, {failed} refused");
}

#[test]
fn extreme_aspect_ratio_cannot_force_a_huge_resize() {
    let dir = tempfile::tempdir().unwrap();
    let path = make_testsrc(
        dir.path(),
        "tall.mkv",
        (16, 1024),
        5,
        1.0,
        &["-c:v", "ffv1"],
    );
    let limits = Limits {
        max_pixels: 1_000_000,
        ..Limits::default()
    };
    let mut video = Video::open(&path, &limits).unwrap();
    // Shorter side 16 → 256 would make the long side 16384: 4.2 M pixels.
    let resize = Resize {
        short_side: 256,
        crop: Some((224, 224)),
    };
    let err = video
        .sample(&Sampling::Timestamps(vec![0.0]), &resize)
        .unwrap_err();
    assert_eq!(err.kind(), "over_limit", "{err}");
}

#[test]
fn video_can_move_to_a_worker_thread() {
    fn assert_send<T: Send>() {}
    assert_send::<Video>();
    assert_send::<VideoError>();
}
