//! MotionShapes: a synthetic action dataset where only motion tells the classes apart.
//!
//! Every clip shows one or two textured shapes doing the class's motion on a random
//! static background, plus optional distractors that stay still or drift slowly, with
//! sensor noise and flicker. Appearance (shape, colour, texture, size, position) is
//! drawn from the same distribution for every class, so a single frame carries no label.

mod paint;

use std::path::{Path, PathBuf};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rayon::prelude::*;

pub use crate::video::encode::write_h264;
use crate::{Error, Result};
use paint::{Rgb, Shape, Texture, contrasting_colour, random_colour};

/// The ten MotionShapes labels, in class-index order.
pub const LABELS: [&str; 10] = [
    "move_left",
    "move_right",
    "move_up",
    "move_down",
    "rotate_cw",
    "rotate_ccw",
    "grow",
    "shrink",
    "still",
    "wave",
];

/// Size, rate and length of generated clips.
#[derive(Debug, Clone, PartialEq)]
pub struct SynthOptions {
    /// Frame width in pixels (even).
    pub width: u32,
    /// Frame height in pixels (even).
    pub height: u32,
    /// Frames per second.
    pub fps: f64,
    /// Clip length in seconds.
    pub seconds: f64,
}

impl Default for SynthOptions {
    fn default() -> Self {
        SynthOptions {
            width: 112,
            height: 112,
            fps: 25.0,
            seconds: 2.0,
        }
    }
}

impl SynthOptions {
    /// Checks sizes (H.264 4:2:0 needs even sides), rate and length.
    pub fn validate(&self) -> Result<()> {
        if self.width < 32
            || self.height < 32
            || !self.width.is_multiple_of(2)
            || !self.height.is_multiple_of(2)
        {
            return Err(Error::InvalidArgument(format!(
                "size {}x{}: sides must be even and at least 32",
                self.width, self.height
            )));
        }
        if !(1.0..=240.0).contains(&self.fps) {
            return Err(Error::InvalidArgument(format!(
                "fps {} not in 1..=240",
                self.fps
            )));
        }
        if !(0.2..=60.0).contains(&self.seconds) || self.frames() < 4 {
            return Err(Error::InvalidArgument(format!(
                "{} s at {} fps: need at least 4 frames and at most 60 s",
                self.seconds, self.fps
            )));
        }
        Ok(())
    }

    /// Number of frames per clip.
    pub fn frames(&self) -> usize {
        (self.seconds * self.fps).round() as usize
    }
}

/// Where an object is at a moment: centre, rotation (radians, clockwise on screen) and radius (px).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Pose {
    /// Centre x in pixels.
    pub x: f32,
    /// Centre y in pixels (downwards).
    pub y: f32,
    /// Rotation; increasing means clockwise as seen on screen.
    pub angle: f32,
    /// Radius in pixels.
    pub radius: f32,
}

/// How an object's pose evolves over normalised clip time 0..1.
#[derive(Debug, Clone)]
enum Motion {
    /// Linear change of every pose component from `from` to `to`, with optional easing.
    Lerp { from: Pose, to: Pose, ease: f32 },
    /// Horizontal sine oscillation around `centre`.
    Wave {
        centre: Pose,
        amplitude: f32,
        cycles: f32,
        phase: f32,
    },
}

impl Motion {
    fn pose(&self, t: f32) -> Pose {
        match self {
            Motion::Lerp { from, to, ease } => {
                let smooth = t * t * (3.0 - 2.0 * t);
                let s = (1.0 - ease) * t + ease * smooth;
                let l = |a: f32, b: f32| a + (b - a) * s;
                Pose {
                    x: l(from.x, to.x),
                    y: l(from.y, to.y),
                    angle: l(from.angle, to.angle),
                    radius: l(from.radius, to.radius),
                }
            }
            Motion::Wave {
                centre,
                amplitude,
                cycles,
                phase,
            } => Pose {
                x: centre.x + amplitude * (std::f32::consts::TAU * cycles * t + phase).sin(),
                ..*centre
            },
        }
    }
}

/// One object: outline, surface and motion.
#[derive(Debug, Clone)]
struct Object {
    shape: Shape,
    texture: Texture,
    motion: Motion,
    /// Whether it performs the class's motion (rather than being a distractor).
    main: bool,
}

/// A whole clip's description; rendering it is deterministic.
#[derive(Debug, Clone)]
struct Scene {
    width: f32,
    height: f32,
    background: Texture,
    /// Drawn in order (later on top).
    objects: Vec<Object>,
    noise_sigma: f32,
    flicker: f32,
}

fn uniform(rng: &mut StdRng, lo: f32, hi: f32) -> f32 {
    if hi <= lo {
        lo
    } else {
        rng.random_range(lo..hi)
    }
}

/// A main object's motion for `class`, kept inside the frame.
fn class_motion(class: usize, w: f32, h: f32, rng: &mut StdRng) -> Motion {
    let m = w.min(h);
    let angle = uniform(rng, 0.0, std::f32::consts::TAU);
    let ease = uniform(rng, 0.0, 1.0);
    let radius = uniform(rng, 0.1, 0.2) * m;
    let place = |rng: &mut StdRng, r: f32| Pose {
        x: uniform(rng, r, w - r),
        y: uniform(rng, r, h - r),
        angle,
        radius: r,
    };
    match LABELS[class] {
        "move_left" | "move_right" | "move_up" | "move_down" => {
            let horizontal = class < 2;
            let extent = if horizontal { w } else { h };
            let room = extent - 2.0 * radius;
            let d = uniform(rng, 0.3 * extent, 0.6 * extent).min(room);
            let start = uniform(rng, radius, extent - radius - d);
            let from = place(rng, radius);
            let mut a = from;
            let mut b = from;
            let (s, e) = if class.is_multiple_of(2) {
                (start + d, start)
            } else {
                (start, start + d)
            };
            if horizontal {
                (a.x, b.x) = (s, e);
            } else {
                (a.y, b.y) = (s, e);
            }
            Motion::Lerp {
                from: a,
                to: b,
                ease,
            }
        }
        "rotate_cw" | "rotate_ccw" => {
            let from = place(rng, radius);
            let turn = uniform(rng, 0.5, 2.0) * std::f32::consts::PI;
            let sign = if LABELS[class] == "rotate_cw" {
                1.0
            } else {
                -1.0
            };
            let to = Pose {
                angle: from.angle + sign * turn,
                ..from
            };
            Motion::Lerp { from, to, ease }
        }
        "grow" | "shrink" => {
            let small = uniform(rng, 0.07, 0.12) * m;
            let big = (small * uniform(rng, 1.7, 2.5)).min(0.3 * m);
            let centre = place(rng, big);
            let a = Pose {
                radius: small,
                ..centre
            };
            let b = Pose {
                radius: big,
                ..centre
            };
            if LABELS[class] == "grow" {
                Motion::Lerp {
                    from: a,
                    to: b,
                    ease,
                }
            } else {
                Motion::Lerp {
                    from: b,
                    to: a,
                    ease,
                }
            }
        }
        "wave" => {
            let amplitude = uniform(rng, 0.1 * w, 0.22 * w).min((w - 2.0 * radius) / 2.0);
            let mut centre = place(rng, radius);
            centre.x = uniform(rng, radius + amplitude, w - radius - amplitude);
            Motion::Wave {
                centre,
                amplitude,
                cycles: uniform(rng, 1.5, 3.0),
                phase: uniform(rng, 0.0, std::f32::consts::TAU),
            }
        }
        _ => {
            let p = place(rng, radius);
            Motion::Lerp {
                from: p,
                to: p,
                ease,
            }
        }
    }
}

/// A distractor: small, and either still or drifting by at most 6% of the frame.
fn distractor_motion(w: f32, h: f32, rng: &mut StdRng) -> Motion {
    let m = w.min(h);
    let r = uniform(rng, 0.05, 0.1) * m;
    let from = Pose {
        x: uniform(rng, r, w - r),
        y: uniform(rng, r, h - r),
        angle: uniform(rng, 0.0, std::f32::consts::TAU),
        radius: r,
    };
    let mut to = from;
    if rng.random_bool(0.5) {
        let dir = uniform(rng, 0.0, std::f32::consts::TAU);
        let d = uniform(rng, 0.0, 0.06) * m;
        to.x = (from.x + d * dir.cos()).clamp(r, w - r);
        to.y = (from.y + d * dir.sin()).clamp(r, h - r);
    }
    Motion::Lerp {
        from,
        to,
        ease: 0.0,
    }
}

fn random_object(rng: &mut StdRng, background: Rgb, motion: Motion, main: bool) -> Object {
    let shape = Shape::random(rng);
    let colour = contrasting_colour(rng, background, 90.0);
    // A plain disc would make rotation invisible, so round outlines always get a pattern.
    let texture = Texture::random_object(rng, colour, !shape.is_round());
    Object {
        shape,
        texture,
        motion,
        main,
    }
}

impl Scene {
    fn random(class: usize, opts: &SynthOptions, rng: &mut StdRng) -> Scene {
        let (w, h) = (opts.width as f32, opts.height as f32);
        let base = random_colour(rng);
        let background = Texture::random_background(rng, base);
        let bg = background.main_colour();
        let mains = if rng.random_bool(0.3) { 2 } else { 1 };
        let distractors = rng.random_range(0..3);
        let mut objects: Vec<Object> = (0..mains)
            .map(|_| {
                let motion = class_motion(class, w, h, rng);
                random_object(rng, bg, motion, true)
            })
            .collect();
        for _ in 0..distractors {
            let motion = distractor_motion(w, h, rng);
            let object = random_object(rng, bg, motion, false);
            let at = rng.random_range(0..=objects.len());
            objects.insert(at, object);
        }
        Scene {
            width: w,
            height: h,
            background,
            objects,
            noise_sigma: uniform(rng, 0.0, 6.0),
            flicker: uniform(rng, 0.0, 0.04),
        }
    }

    /// Paints the static background once (frame coordinates scaled by the shorter side).
    fn paint_background(&self) -> Vec<Rgb> {
        let (w, h) = (self.width as usize, self.height as usize);
        let m = self.width.min(self.height);
        let mut out = Vec::with_capacity(w * h);
        for y in 0..h {
            for x in 0..w {
                let (fx, fy) = ((x as f32 + 0.5) / m - 0.5, (y as f32 + 0.5) / m - 0.5);
                out.push(self.background.at(fx, fy));
            }
        }
        out
    }

    /// Draws one object at `pose` with 2x2 supersampled edges.
    fn paint_object(&self, canvas: &mut [Rgb], object: &Object, pose: Pose) {
        let (w, h) = (self.width as i64, self.height as i64);
        let reach = pose.radius * 1.5 + 1.0;
        let x0 = ((pose.x - reach).floor() as i64).max(0);
        let x1 = ((pose.x + reach).ceil() as i64).min(w - 1);
        let y0 = ((pose.y - reach).floor() as i64).max(0);
        let y1 = ((pose.y + reach).ceil() as i64).min(h - 1);
        let (sin, cos) = pose.angle.sin_cos();
        let inv = 1.0 / pose.radius.max(0.5);
        let local = |px: f32, py: f32| {
            let (dx, dy) = (px - pose.x, py - pose.y);
            ((cos * dx + sin * dy) * inv, (-sin * dx + cos * dy) * inv)
        };
        const SUB: [f32; 2] = [0.25, 0.75];
        for y in y0..=y1 {
            for x in x0..=x1 {
                let mut hits = 0;
                for sy in SUB {
                    for sx in SUB {
                        let (u, v) = local(x as f32 + sx, y as f32 + sy);
                        hits += object.shape.contains(u, v) as u32;
                    }
                }
                if hits == 0 {
                    continue;
                }
                let (u, v) = local(x as f32 + 0.5, y as f32 + 0.5);
                let c = object.texture.at(u, v);
                let alpha = hits as f32 / 4.0;
                let px = &mut canvas[(y * w + x) as usize];
                for k in 0..3 {
                    px[k] = px[k] * (1.0 - alpha) + c[k] * alpha;
                }
            }
        }
    }

    /// Renders frame `i` of `n` as packed RGB24.
    fn render_frame(&self, background: &[Rgb], i: usize, n: usize, rng: &mut StdRng) -> Vec<u8> {
        let t = if n > 1 {
            i as f32 / (n - 1) as f32
        } else {
            0.0
        };
        let mut canvas = background.to_vec();
        for object in &self.objects {
            self.paint_object(&mut canvas, object, object.motion.pose(t));
        }
        let gain = 1.0 + uniform(rng, -self.flicker, self.flicker);
        let mut out = Vec::with_capacity(canvas.len() * 3);
        for px in canvas {
            for c in px {
                let noise = if self.noise_sigma > 0.0 {
                    gaussian(rng) * self.noise_sigma
                } else {
                    0.0
                };
                out.push((c * gain + noise).round().clamp(0.0, 255.0) as u8);
            }
        }
        out
    }
}

/// A standard normal sample (Box-Muller).
fn gaussian(rng: &mut StdRng) -> f32 {
    let u1: f32 = rng.random_range(f32::EPSILON..1.0);
    let u2: f32 = rng.random();
    (-2.0 * u1.ln()).sqrt() * (std::f32::consts::TAU * u2).cos()
}

/// The poses of the main (class-performing) objects over the clip, for tests and inspection.
pub fn main_object_poses(class: usize, opts: &SynthOptions, seed: u64) -> Vec<Vec<Pose>> {
    let mut rng = StdRng::seed_from_u64(seed);
    let scene = Scene::random(class, opts, &mut rng);
    let n = opts.frames();
    scene
        .objects
        .iter()
        .filter(|o| o.main)
        .map(|o| {
            (0..n)
                .map(|i| o.motion.pose(i as f32 / (n - 1) as f32))
                .collect()
        })
        .collect()
}

/// Renders clip `seed` of `class` as RGB24 frames.
pub fn render_clip(class: usize, opts: &SynthOptions, seed: u64) -> Vec<Vec<u8>> {
    let mut rng = StdRng::seed_from_u64(seed);
    let scene = Scene::random(class, opts, &mut rng);
    let background = scene.paint_background();
    let n = opts.frames();
    (0..n)
        .map(|i| scene.render_frame(&background, i, n, &mut rng))
        .collect()
}

/// The seed of clip `index` of `class` in a dataset generated with `seed`.
pub fn clip_seed(seed: u64, class: usize, index: usize) -> u64 {
    let mut z = seed
        .wrapping_add((class as u64) << 40)
        .wrapping_add(index as u64)
        .wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Writes `per_class` H.264 clips per class to `out/<label>/<label>_s<seed>_NNNN.mp4`, in parallel.
///
/// The seed in the name lets several runs (other sizes, rates) share one folder.
///
/// `on_clip` is called after each clip is written (for progress bars). Returns the paths.
pub fn generate(
    out: &Path,
    per_class: usize,
    seed: u64,
    opts: &SynthOptions,
    on_clip: &(dyn Fn() + Sync),
) -> Result<Vec<PathBuf>> {
    opts.validate()?;
    for label in LABELS {
        let dir = out.join(label);
        std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
    }
    let jobs: Vec<(usize, usize)> = (0..LABELS.len())
        .flat_map(|c| (0..per_class).map(move |i| (c, i)))
        .collect();
    jobs.par_iter()
        .map(|&(class, index)| {
            let clip = clip_seed(seed, class, index);
            let frames = render_clip(class, opts, clip);
            let label = LABELS[class];
            let path = out
                .join(label)
                .join(format!("{label}_s{seed}_{index:04}.mp4"));
            // Vary the compression too, so the model does not rely on one codec setting.
            let crf = 18 + (clip % 13) as u32;
            write_h264(&path, &frames, opts.width, opts.height, opts.fps, crf)?;
            on_clip();
            Ok(path)
        })
        .collect()
}
