//! `revstream-trainer flow` end to end: two PNGs to .flo, a video to JPEG flow.

use std::path::Path;
use std::process::Command;

use revstream::flow::synth::{Motion, pair};
use revstream::flow::{GrayImage, flo};

fn trainer() -> Command {
    Command::new(env!("CARGO_BIN_EXE_revstream-trainer"))
}

fn save_png(img: &GrayImage, path: &Path) {
    let bytes = img
        .data
        .iter()
        .map(|&v| v.round().clamp(0.0, 255.0) as u8)
        .collect();
    image::GrayImage::from_raw(img.width as u32, img.height as u32, bytes)
        .unwrap()
        .save(path)
        .unwrap();
}

#[test]
fn two_images_to_flo() {
    let dir = tempfile::tempdir().unwrap();
    let gt = pair(
        128,
        96,
        Motion::Translation {
            dx: 1.75,
            dy: -2.25,
        },
        21,
    )
    .quantized();
    let (a, b, out) = (
        dir.path().join("a.png"),
        dir.path().join("b.png"),
        dir.path().join("ab.flo"),
    );
    save_png(&gt.prev, &a);
    save_png(&gt.next, &b);
    for preset in ["accurate", "fast"] {
        let status = trainer()
            .args([
                "flow",
                a.to_str().unwrap(),
                b.to_str().unwrap(),
                "-o",
                out.to_str().unwrap(),
                "--preset",
                preset,
            ])
            .status()
            .unwrap();
        assert!(status.success());
        let flow = flo::read(&out).unwrap();
        let epe = gt.epe(&flow).unwrap();
        // The library tests' bounds (8-bit frames here, as in the 340x256 test).
        assert!(epe < 0.25, "{preset}: EPE {epe:.4} px");
    }
}

#[test]
fn mismatched_or_missing_inputs_fail_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.png");
    let b = dir.path().join("b.png");
    save_png(&pair(32, 24, Motion::Zoom { factor: 1.0 }, 1).prev, &a);
    save_png(&pair(24, 32, Motion::Zoom { factor: 1.0 }, 1).prev, &b);
    let out = dir.path().join("x.flo");
    for inputs in [
        vec![&a, &b],
        vec![&a],
        vec![&dir.path().join("missing.png"), &b],
    ] {
        let result = trainer()
            .arg("flow")
            .args(inputs)
            .args(["-o", out.to_str().unwrap()])
            .output()
            .unwrap();
        assert_eq!(
            result.status.code(),
            Some(1),
            "{}",
            String::from_utf8_lossy(&result.stderr)
        );
        assert!(String::from_utf8_lossy(&result.stderr).contains("Error"));
    }
}

#[test]
fn video_to_jpeg_flow() {
    let dir = tempfile::tempdir().unwrap();
    // Six frames of a texture translating by (2.5, −1.5) px per frame, losslessly encoded.
    let (dx, dy) = (2.5f32, -1.5f32);
    for k in 0..6 {
        let motion = Motion::Translation {
            dx: dx * k as f32,
            dy: dy * k as f32,
        };
        save_png(
            &pair(160, 120, motion, 5).next,
            &dir.path().join(format!("f{k}.png")),
        );
    }
    let video = dir.path().join("pan.mkv");
    let status = Command::new("ffmpeg")
        .args(["-loglevel", "error", "-y", "-framerate", "10", "-i"])
        .arg(dir.path().join("f%d.png"))
        .args(["-c:v", "ffv1", "-pix_fmt", "gray"])
        .arg(&video)
        .status()
        .expect("ffmpeg CLI");
    assert!(status.success());
    let out = dir.path().join("flow");
    let status = trainer()
        .args([
            "flow",
            video.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
            "--short-side",
            "0",
        ])
        .status()
        .unwrap();
    assert!(status.success());
    let mut names: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    // Six frames: five consecutive pairs, an x and a y image each.
    let expected: Vec<String> = ["x", "y"]
        .iter()
        .flat_map(|c| (1..=5).map(move |i| format!("{c}_{i:05}.jpg")))
        .collect();
    assert_eq!(names, expected);
    for i in 1..=5 {
        let read = |c: &str| {
            image::open(out.join(format!("{c}_{i:05}.jpg")))
                .unwrap()
                .to_luma8()
        };
        let (x, y) = (read("x"), read("y"));
        assert_eq!(x.dimensions(), (160, 120));
        // Median over the frame, dequantised with the default bound of 20 px (one
        // level is 0.16 px; JPEG adds a level or two).
        let median_px = |img: &image::GrayImage| {
            let mut v: Vec<u8> = img.as_raw().clone();
            v.sort_unstable();
            f32::from(v[v.len() / 2]) * 40.0 / 255.0 - 20.0
        };
        let (u, v) = (median_px(&x), median_px(&y));
        assert!((u - dx).abs() < 0.35, "pair {i}: median u {u}");
        assert!((v - dy).abs() < 0.35, "pair {i}: median v {v}");
    }
}
