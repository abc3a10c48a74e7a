//! Seek-based sampling returns exactly the frames that decoding everything returns.

mod common;

use std::path::PathBuf;

use common::videos::make_testsrc;
use revstream::video::{Limits, Resize, Sampling, SeekPolicy, Video};

/// 4 s, 25 fps, 128x96 videos with a keyframe every 10 frames (every 250 ms).
fn videos(dir: &std::path::Path) -> Vec<(PathBuf, bool)> {
    let src = |name: &str, args: &[&str]| make_testsrc(dir, name, (128, 96), 25, 4.0, args);
    // (path, whether its timestamps allow seeking)
    vec![
        (
            src("h264.mp4", &["-c:v", "libx264", "-g", "10", "-bf", "3"]),
            true,
        ),
        (
            src(
                "h264_frag.mp4",
                &[
                    "-c:v",
                    "libx264",
                    "-g",
                    "10",
                    "-movflags",
                    "frag_keyframe+empty_moov",
                ],
            ),
            true,
        ),
        (
            src(
                "hevc_open_gop.mkv",
                &[
                    "-c:v",
                    "libx265",
                    "-x265-params",
                    "log-level=none:keyint=10:min-keyint=10:open-gop=1",
                ],
            ),
            true,
        ),
        (
            src(
                "vp9.webm",
                &[
                    "-c:v",
                    "libvpx-vp9",
                    "-deadline",
                    "realtime",
                    "-cpu-used",
                    "8",
                    "-g",
                    "10",
                ],
            ),
            true,
        ),
        (src("h264.ts", &["-c:v", "libx264", "-g", "10"]), true),
        (src("mpeg4.avi", &["-c:v", "mpeg4", "-g", "10"]), true),
        (
            src(
                "mpeg4_bframes.avi",
                &["-c:v", "mpeg4", "-g", "10", "-bf", "2"],
            ),
            false,
        ),
        (src("mjpeg.mov", &["-c:v", "mjpeg"]), true),
    ]
}

fn samplings() -> Vec<Sampling> {
    vec![
        Sampling::Segments {
            segments: 4,
            clip_len: 3,
            stride: 2,
        },
        Sampling::Starts {
            starts: vec![95, 3, 57, 58, 200],
            clip_len: 2,
            stride: 1,
        },
        Sampling::Timestamps(vec![3.5, 0.0, 1.98, 2.0]),
    ]
}

#[test]
fn seeking_returns_the_same_frames_as_decoding_everything() {
    let dir = tempfile::tempdir().unwrap();
    let resize = Resize {
        short_side: 48,
        crop: Some((48, 48)),
    };
    for (path, seekable) in videos(dir.path()) {
        let mut video = Video::open(&path, &Limits::default()).unwrap();
        assert_eq!(video.info().frames, 100, "{}", path.display());
        let all = video.decode_all(&resize).unwrap();
        assert_eq!(all.len(), 100);
        for sampling in samplings() {
            video.set_seek_policy(SeekPolicy::Never);
            let straight = video.sample(&sampling, &resize).unwrap();
            let straight_stats = video.last_stats();
            for policy in [SeekPolicy::Always, SeekPolicy::Auto] {
                video.set_seek_policy(policy);
                let seeking = video.sample(&sampling, &resize).unwrap();
                assert_eq!(
                    seeking,
                    straight,
                    "{} {policy:?} {sampling:?}",
                    path.display()
                );
            }
            video.set_seek_policy(SeekPolicy::Always);
            video.sample(&sampling, &resize).unwrap();
            let stats = video.last_stats();
            if seekable {
                assert!(stats.seeks > 0, "{}: never sought", path.display());
                assert!(
                    stats.frames_decoded < straight_stats.frames_decoded,
                    "{}: seeking decoded {} frames, straight {}",
                    path.display(),
                    stats.frames_decoded,
                    straight_stats.frames_decoded
                );
            }
            // Each sampled frame is the frame decode_all returns for the same time.
            for frame in straight.iter().flat_map(|c| &c.frames) {
                let same_time = all
                    .iter()
                    .find(|f| f.pts_s == frame.pts_s)
                    .expect("a frame of the video");
                assert_eq!(same_time, frame, "{}", path.display());
            }
        }
    }
}

#[test]
fn clips_are_strided_consecutive_frames() {
    let dir = tempfile::tempdir().unwrap();
    let path = make_testsrc(
        dir.path(),
        "a.mp4",
        (128, 96),
        25,
        4.0,
        &["-c:v", "libx264", "-g", "10"],
    );
    let resize = Resize {
        short_side: 48,
        crop: None,
    };
    let mut video = Video::open(&path, &Limits::default()).unwrap();
    let all = video.decode_all(&resize).unwrap();
    let clips = video
        .sample(
            &Sampling::Segments {
                segments: 5,
                clip_len: 4,
                stride: 3,
            },
            &resize,
        )
        .unwrap();
    assert_eq!(clips.len(), 5);
    for clip in &clips {
        for (k, frame) in clip.frames.iter().enumerate() {
            assert_eq!(*frame, all[(clip.start_frame + 3 * k as u64) as usize]);
            assert!((frame.pts_s - (clip.start_frame + 3 * k as u64) as f64 / 25.0).abs() < 1e-6);
        }
    }
    // Segments are centred: 100 frames, 5 segments of 20, span 10 → starts 5, 25, ...
    assert_eq!(
        clips.iter().map(|c| c.start_frame).collect::<Vec<_>>(),
        vec![5, 25, 45, 65, 85]
    );
    let near_end = video
        .sample(
            &Sampling::Starts {
                starts: vec![98],
                clip_len: 4,
                stride: 1,
            },
            &resize,
        )
        .unwrap();
    assert_eq!(
        near_end[0].frames[1..],
        [all[99].clone(), all[99].clone(), all[99].clone()]
    );
}
