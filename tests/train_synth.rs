//! MotionShapes: each class's motion has the stated direction and size, clips are real
//! H.264 files, and generation is deterministic.

use revstream::train::synth::{self, LABELS, Pose, SynthOptions};

fn poses(label: &str, index: usize) -> Vec<Vec<Pose>> {
    let class = LABELS.iter().position(|l| *l == label).unwrap();
    let opts = SynthOptions::default();
    synth::main_object_poses(class, &opts, synth::clip_seed(7, class, index))
}

#[test]
fn every_class_moves_as_its_label_says() {
    let w = SynthOptions::default().width as f32;
    for index in 0..40 {
        for o in poses("move_left", index) {
            let (a, b) = (o[0], o[o.len() - 1]);
            assert!(a.x - b.x >= 0.25 * w, "move_left moved {}", a.x - b.x);
            assert_eq!(a.y, b.y);
        }
        for o in poses("move_down", index) {
            let (a, b) = (o[0], o[o.len() - 1]);
            assert!(b.y - a.y >= 0.25 * w && a.x == b.x);
        }
        for o in poses("rotate_cw", index) {
            assert!(o.windows(2).all(|p| p[1].angle >= p[0].angle));
            assert!(o[o.len() - 1].angle - o[0].angle >= 0.5 * std::f32::consts::PI - 1e-3);
            assert!(o.iter().all(|p| p.x == o[0].x && p.radius == o[0].radius));
        }
        for o in poses("rotate_ccw", index) {
            assert!(o[o.len() - 1].angle < o[0].angle);
        }
        for o in poses("grow", index) {
            assert!(o[o.len() - 1].radius >= 1.5 * o[0].radius);
            assert!(o.iter().all(|p| p.x == o[0].x && p.y == o[0].y));
        }
        for o in poses("shrink", index) {
            assert!(o[0].radius >= 1.5 * o[o.len() - 1].radius);
        }
        for o in poses("still", index) {
            assert!(o.iter().all(|p| *p == o[0]));
        }
        for o in poses("wave", index) {
            let mean = o.iter().map(|p| p.x).sum::<f32>() / o.len() as f32;
            let crossings = o
                .windows(2)
                .filter(|p| (p[0].x - mean).signum() != (p[1].x - mean).signum())
                .count();
            // 1.5 cycles or more cross the centre line at least 3 times.
            assert!(crossings >= 3, "wave crossed its centre {crossings} times");
            assert!(o.iter().all(|p| p.y == o[0].y));
        }
    }
}

#[test]
fn objects_stay_inside_the_frame() {
    let opts = SynthOptions::default();
    let (w, h) = (opts.width as f32, opts.height as f32);
    for class in 0..LABELS.len() {
        for index in 0..30 {
            for o in synth::main_object_poses(class, &opts, synth::clip_seed(3, class, index)) {
                for p in o {
                    assert!(p.x >= p.radius - 0.5 && p.x <= w - p.radius + 0.5, "{p:?}");
                    assert!(p.y >= p.radius - 0.5 && p.y <= h - p.radius + 0.5, "{p:?}");
                }
            }
        }
    }
}

#[test]
fn still_clips_change_only_by_noise_and_moving_clips_change_more() {
    let opts = SynthOptions::default();
    let mean_diff = |frames: &[Vec<u8>]| {
        let (a, b) = (&frames[0], &frames[frames.len() - 1]);
        a.iter()
            .zip(b)
            .map(|(x, y)| (*x as f32 - *y as f32).abs())
            .sum::<f32>()
            / a.len() as f32
    };
    let still = LABELS.iter().position(|l| *l == "still").unwrap();
    let mut moving_total = 0.0;
    let mut still_total = 0.0;
    for index in 0..6 {
        still_total += mean_diff(&synth::render_clip(
            still,
            &opts,
            synth::clip_seed(5, still, index),
        ));
        moving_total += mean_diff(&synth::render_clip(0, &opts, synth::clip_seed(5, 0, index)));
    }
    // Noise sigma ≤ 6 and flicker ≤ 4% keep a still clip's first/last difference small.
    assert!(
        still_total / 6.0 < 8.0,
        "still clips differ by {}",
        still_total / 6.0
    );
    assert!(
        moving_total > 1.5 * still_total,
        "{moving_total} vs {still_total}"
    );
}

#[test]
fn generation_is_deterministic_and_writes_h264_files() {
    let opts = SynthOptions {
        width: 64,
        height: 48,
        fps: 12.0,
        seconds: 1.0,
    };
    assert_eq!(
        synth::render_clip(4, &opts, 11),
        synth::render_clip(4, &opts, 11)
    );
    assert_ne!(
        synth::render_clip(4, &opts, 11),
        synth::render_clip(4, &opts, 12)
    );

    let dir = tempfile::tempdir().unwrap();
    let paths = synth::generate(dir.path(), 1, 9, &opts, &|| {}).unwrap();
    assert_eq!(paths.len(), LABELS.len());
    for label in LABELS {
        let path = dir.path().join(label).join(format!("{label}_s9_0000.mp4"));
        let out = std::process::Command::new("ffprobe")
            .args(["-v", "error", "-count_frames", "-select_streams", "v:0"])
            .args([
                "-show_entries",
                "stream=codec_name,width,height,nb_read_frames",
            ])
            .args(["-of", "csv=p=0"])
            .arg(&path)
            .output()
            .unwrap();
        let text = String::from_utf8(out.stdout).unwrap();
        assert_eq!(text.trim(), "h264,64,48,12", "{label}: {text}");
    }
}

#[test]
fn bad_options_are_refused() {
    let odd = SynthOptions {
        width: 63,
        ..SynthOptions::default()
    };
    assert!(odd.validate().is_err());
    let short = SynthOptions {
        seconds: 0.1,
        ..SynthOptions::default()
    };
    assert!(short.validate().is_err());
}
