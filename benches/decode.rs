//! Decode bench: sample 16 frames, and 8 clips of 11 consecutive frames, from a 10 s
//! 1080p H.264 and a 10 min 360p H.264 (open + sample, resized to 256 and cropped to 224).
//!
//! After criterion's groups, runs the PyAV peer (`scripts/peers/decode_pyav.py`) on the
//! same videos and prints revstream/PyAV median-time ratios measured in this run.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use criterion::{Criterion, criterion_group, criterion_main};
use revstream::video::{Limits, Resize, Sampling, Video};

const RESIZE: Resize = Resize {
    short_side: 256,
    crop: Some((224, 224)),
};
/// Timed runs per case in the peer comparison (after one warm-up).
const PEER_RUNS: usize = 5;

/// Whether this is a real bench run (`cargo bench`), not `cargo test`'s single pass.
fn benching() -> bool {
    std::env::args().any(|a| a == "--bench")
}

/// The bench videos, generated once with the ffmpeg CLI into target/bench-videos/.
/// Under `cargo test` small stand-ins keep the single pass quick.
fn videos() -> Vec<(&'static str, PathBuf)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench-videos");
    std::fs::create_dir_all(&dir).expect("target/bench-videos is writable");
    let specs = if benching() {
        [
            ("h264_1080p_10s", "1920x1080", 10),
            ("h264_360p_10min", "640x360", 600),
        ]
    } else {
        [
            ("test_h264_240p_2s", "320x240", 2),
            ("test_h264_90p_20s", "160x90", 20),
        ]
    };
    specs
        .into_iter()
        .map(|(name, size, seconds)| {
            let path = dir.join(format!("{name}.mp4"));
            if !path.exists() {
                let source = format!("testsrc2=size={size}:rate=30:duration={seconds}");
                let status = Command::new("ffmpeg")
                    .args([
                        "-y", "-v", "error", "-nostdin", "-f", "lavfi", "-i", &source,
                    ])
                    .args([
                        "-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p",
                    ])
                    .arg(&path)
                    .status()
                    .expect("the ffmpeg CLI is installed");
                assert!(status.success(), "could not generate {}", path.display());
            }
            (name, path)
        })
        .collect()
}

fn cases() -> [(&'static str, Sampling); 2] {
    [
        (
            "frames16",
            Sampling::Segments {
                segments: 16,
                clip_len: 1,
                stride: 1,
            },
        ),
        (
            "clips8x11",
            Sampling::Segments {
                segments: 8,
                clip_len: 11,
                stride: 1,
            },
        ),
    ]
}

fn open_and_sample(path: &Path, sampling: &Sampling) -> usize {
    let mut video = Video::open(path, &Limits::default()).expect("bench video opens");
    let clips = video
        .sample(sampling, &RESIZE)
        .expect("bench video samples");
    clips.iter().map(|c| c.frames.len()).sum()
}

fn decode(c: &mut Criterion) {
    let mut group = c.benchmark_group("decode");
    group.sample_size(10);
    for (video, path) in videos() {
        for (case, sampling) in cases() {
            group.bench_function(format!("{video}/{case}"), |b| {
                b.iter(|| open_and_sample(&path, &sampling))
            });
        }
    }
    group.finish();
}

/// The Python that has PyAV: `REVSTREAM_PEER_PYTHON`, else the venv scripts/peers/README.md sets up.
fn peer_python() -> String {
    std::env::var("REVSTREAM_PEER_PYTHON").unwrap_or_else(|_| {
        let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/peer-venv/bin/python");
        if venv.exists() {
            venv.display().to_string()
        } else {
            "python3".into()
        }
    })
}

fn median(mut times: Vec<f64>) -> f64 {
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

/// Times revstream and PyAV alternately on each case and prints the ratio.
fn versus_pyav(_: &mut Criterion) {
    if !benching() {
        return;
    }
    let python = peer_python();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/peers/decode_pyav.py");
    println!("\nrevstream vs PyAV ({python}), median of {PEER_RUNS} runs, open + sample:");
    for (video, path) in videos() {
        for (case, sampling) in cases() {
            open_and_sample(&path, &sampling);
            let ours = median(
                (0..PEER_RUNS)
                    .map(|_| {
                        let t = Instant::now();
                        open_and_sample(&path, &sampling);
                        t.elapsed().as_secs_f64()
                    })
                    .collect(),
            );
            let out = Command::new(&python)
                .arg(&script)
                .arg(&path)
                .args(["--case", case, "--repeat", &PEER_RUNS.to_string()])
                .output();
            let peer = match out {
                Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout)
                    .split("\"median_s\": ")
                    .nth(1)
                    .and_then(|s| s.split([',', '}']).next())
                    .and_then(|s| s.trim().parse::<f64>().ok()),
                Ok(o) => {
                    println!(
                        "  PyAV peer failed: {}",
                        String::from_utf8_lossy(&o.stderr)
                            .lines()
                            .last()
                            .unwrap_or("")
                    );
                    None
                }
                Err(e) => {
                    println!("  PyAV peer not runnable: {e}");
                    None
                }
            };
            match peer {
                Some(p) => println!(
                    "  {video}/{case}: revstream {:.1} ms, PyAV {:.1} ms, ratio revstream/PyAV {:.2}",
                    ours * 1e3,
                    p * 1e3,
                    ours / p
                ),
                None => println!("  {video}/{case}: revstream {:.1} ms, PyAV n/a", ours * 1e3),
            }
        }
    }
}

criterion_group!(benches, decode, versus_pyav);
criterion_main!(benches);
