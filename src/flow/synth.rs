//! Frame pairs with known flow, for tests and benches: a smooth analytic texture
//! seen before and after a known motion, so the ground truth has no interpolation error.

use std::f32::consts::PI;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::{Flow, GrayImage};

/// A known motion of the whole frame.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Motion {
    /// Every pixel moves by (dx, dy).
    Translation { dx: f32, dy: f32 },
    /// Rotation about the frame's centre, counter-clockwise in image coordinates.
    Rotation { degrees: f32 },
    /// Scaling about the frame's centre (> 1: zoom in).
    Zoom { factor: f32 },
    /// A smooth random field: a sum of low-frequency waves, at most `amplitude` px.
    Smooth { amplitude: f32, seed: u64 },
}

/// A frame pair and its true flow.
#[derive(Debug, Clone)]
pub struct GroundTruth {
    /// First frame.
    pub prev: GrayImage,
    /// Second frame.
    pub next: GrayImage,
    /// The true flow from `prev` to `next`.
    pub flow: Flow,
    /// Pixels of `prev` still inside `next` (the others have no correspondence).
    pub valid: Vec<bool>,
}

/// A texture: a sum of sinusoids of random orientation, wavelength and phase.
struct Texture {
    waves: Vec<[f32; 4]>, // kx, ky, phase, amplitude
}

impl Texture {
    fn new(rng: &mut StdRng) -> Texture {
        let count = 24;
        let waves = (0..count)
            .map(|_| {
                let angle = rng.random_range(0.0..PI);
                let wavelength: f32 = rng.random_range(5.0..48.0);
                let k = 2.0 * PI / wavelength;
                // Longer waves get more weight, as in natural images (and so the
                // coarse pyramid levels keep texture).
                let amplitude = wavelength.sqrt();
                [
                    k * angle.cos(),
                    k * angle.sin(),
                    rng.random_range(0.0..2.0 * PI),
                    amplitude,
                ]
            })
            .collect::<Vec<_>>();
        let total: f32 = waves.iter().map(|w| w[3]).sum();
        // Scale to 128 ± 100 at most: never clipped by 8-bit quantisation.
        let waves = waves
            .into_iter()
            .map(|[kx, ky, p, a]| [kx, ky, p, a * 100.0 / total])
            .collect();
        Texture { waves }
    }

    fn at(&self, x: f32, y: f32) -> f32 {
        128.0
            + self
                .waves
                .iter()
                .map(|[kx, ky, p, a]| a * (kx * x + ky * y + p).sin())
                .sum::<f32>()
    }
}

/// The smooth random displacement field of [`Motion::Smooth`].
struct Field {
    waves: Vec<[f32; 5]>, // kx, ky, phase, amplitude u, amplitude v
}

impl Field {
    fn new(amplitude: f32, seed: u64) -> Field {
        let mut rng = StdRng::seed_from_u64(seed);
        let count = 4;
        let waves = (0..count)
            .map(|_| {
                let angle = rng.random_range(0.0..2.0 * PI);
                // Wavelengths of 80+ px keep |∇u| ≤ 2π·amplitude/80 small: the field
                // is smooth and invertible.
                let k = 2.0 * PI / rng.random_range(80.0..200.0f32);
                let a = amplitude / count as f32;
                [
                    k * angle.cos(),
                    k * angle.sin(),
                    rng.random_range(0.0..2.0 * PI),
                    a * rng.random_range(-1.0..1.0f32),
                    a * rng.random_range(-1.0..1.0f32),
                ]
            })
            .collect();
        Field { waves }
    }

    fn at(&self, x: f32, y: f32) -> (f32, f32) {
        self.waves
            .iter()
            .fold((0.0, 0.0), |(u, v), [kx, ky, p, au, av]| {
                let s = (kx * x + ky * y + p).sin();
                (u + au * s, v + av * s)
            })
    }
}

impl Motion {
    /// Where the point (x, y) of the first frame is in the second.
    fn forward(&self, field: Option<&Field>, c: (f32, f32), x: f32, y: f32) -> (f32, f32) {
        match *self {
            Motion::Translation { dx, dy } => (x + dx, y + dy),
            Motion::Rotation { degrees } => {
                let (s, co) = degrees.to_radians().sin_cos();
                let (rx, ry) = (x - c.0, y - c.1);
                (c.0 + co * rx - s * ry, c.1 + s * rx + co * ry)
            }
            Motion::Zoom { factor } => (c.0 + factor * (x - c.0), c.1 + factor * (y - c.1)),
            Motion::Smooth { .. } => {
                let (u, v) = field.map_or((0.0, 0.0), |f| f.at(x, y));
                (x + u, y + v)
            }
        }
    }

    /// The point of the first frame that lands on (x, y) of the second.
    fn backward(&self, field: Option<&Field>, c: (f32, f32), x: f32, y: f32) -> (f32, f32) {
        match *self {
            Motion::Translation { dx, dy } => (x - dx, y - dy),
            Motion::Rotation { degrees } => {
                Motion::Rotation { degrees: -degrees }.forward(None, c, x, y)
            }
            Motion::Zoom { factor } => (c.0 + (x - c.0) / factor, c.1 + (y - c.1) / factor),
            Motion::Smooth { .. } => {
                // Fixed point of p = (x, y) − u(p): a contraction since |∇u| < 1.
                let (mut px, mut py) = (x, y);
                for _ in 0..40 {
                    let (u, v) = field.map_or((0.0, 0.0), |f| f.at(px, py));
                    (px, py) = (x - u, y - v);
                }
                (px, py)
            }
        }
    }
}

/// A `width` x `height` pair of a seeded texture under `motion`.
pub fn pair(width: usize, height: usize, motion: Motion, seed: u64) -> GroundTruth {
    let mut rng = StdRng::seed_from_u64(seed);
    let texture = Texture::new(&mut rng);
    let field = match motion {
        Motion::Smooth { amplitude, seed } => Some(Field::new(amplitude, seed)),
        _ => None,
    };
    let c = ((width as f32 - 1.0) / 2.0, (height as f32 - 1.0) / 2.0);
    let n = width * height;
    let mut prev = vec![0.0f32; n];
    let mut next = vec![0.0f32; n];
    let mut flow = Flow::zeros(width, height);
    let mut valid = vec![false; n];
    for y in 0..height {
        for x in 0..width {
            let i = y * width + x;
            let (xf, yf) = (x as f32, y as f32);
            prev[i] = texture.at(xf, yf);
            let (bx, by) = motion.backward(field.as_ref(), c, xf, yf);
            next[i] = texture.at(bx, by);
            let (fx, fy) = motion.forward(field.as_ref(), c, xf, yf);
            flow.u[i] = fx - xf;
            flow.v[i] = fy - yf;
            valid[i] =
                fx >= 0.0 && fx <= width as f32 - 1.0 && fy >= 0.0 && fy <= height as f32 - 1.0;
        }
    }
    GroundTruth {
        prev: GrayImage {
            width,
            height,
            data: prev,
        },
        next: GrayImage {
            width,
            height,
            data: next,
        },
        flow,
        valid,
    }
}

impl GroundTruth {
    /// The frames rounded to 8-bit values, as they are after saving to PNG.
    pub fn quantized(mut self) -> GroundTruth {
        for v in self.prev.data.iter_mut().chain(self.next.data.iter_mut()) {
            *v = v.round().clamp(0.0, 255.0);
        }
        self
    }

    /// Average end-point error of `flow` over the valid pixels.
    pub fn epe(&self, flow: &Flow) -> Option<f64> {
        flow.epe(&self.flow, Some(&self.valid))
    }
}

/// The benchmark set: `count` pairs of varied motions at `width` x `height`.
pub fn bench_set(width: usize, height: usize, count: usize) -> Vec<GroundTruth> {
    (0..count)
        .map(|i| {
            let seed = 1000 + i as u64;
            let motion = match i % 4 {
                0 => Motion::Translation {
                    dx: 3.3 - i as f32 * 0.7,
                    dy: -1.6 + i as f32 * 0.45,
                },
                1 => Motion::Rotation {
                    degrees: 2.0 + i as f32 * 0.25,
                },
                2 => Motion::Zoom {
                    factor: 1.03 + i as f32 * 0.005,
                },
                _ => Motion::Smooth {
                    amplitude: 4.0 + i as f32 * 0.5,
                    seed,
                },
            };
            pair(width, height, motion, seed)
        })
        .collect()
}
