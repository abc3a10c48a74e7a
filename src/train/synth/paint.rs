//! Shapes, textures and backgrounds for MotionShapes, all defined in continuous coordinates.

use rand::Rng;
use rand::rngs::StdRng;

/// An RGB colour with components in 0..255.
pub type Rgb = [f32; 3];

/// The outline of an object in its own unit coordinates (radius about 1).
#[derive(Debug, Clone)]
pub enum Shape {
    /// The unit disc.
    Circle,
    /// An ellipse with semi-axes 1 and `minor`.
    Ellipse { minor: f32 },
    /// A rectangle with half-sides 1 and `aspect`.
    Rect { aspect: f32 },
    /// A polygon (triangle, pentagon, star, cross...) as vertices in order.
    Polygon(Vec<(f32, f32)>),
}

impl Shape {
    /// A random shape; rotationally symmetric outlines are paired with textures by the caller.
    pub fn random(rng: &mut StdRng) -> Shape {
        match rng.random_range(0..8) {
            0 => Shape::Circle,
            1 => Shape::Ellipse {
                minor: rng.random_range(0.4..0.65),
            },
            2 => Shape::Rect { aspect: 1.0 },
            3 => Shape::Rect {
                aspect: rng.random_range(0.4..0.7),
            },
            4 => Shape::Polygon(regular(3, 0.0, 1.0)),
            5 => Shape::Polygon(star(5, rng.random_range(0.4..0.55))),
            6 => Shape::Polygon(regular(rng.random_range(5..7), 0.0, 1.0)),
            _ => Shape::Polygon(cross(rng.random_range(0.3..0.45))),
        }
    }

    /// Whether the outline looks the same under any rotation (rotation would be invisible).
    pub fn is_round(&self) -> bool {
        matches!(self, Shape::Circle)
    }

    /// Whether the local point lies inside the shape.
    pub fn contains(&self, x: f32, y: f32) -> bool {
        match self {
            Shape::Circle => x * x + y * y <= 1.0,
            Shape::Ellipse { minor } => x * x + (y / minor) * (y / minor) <= 1.0,
            Shape::Rect { aspect } => x.abs() <= 1.0 && y.abs() <= *aspect,
            Shape::Polygon(v) => inside_polygon(v, x, y),
        }
    }
}

fn regular(n: usize, phase: f32, r: f32) -> Vec<(f32, f32)> {
    (0..n)
        .map(|i| {
            let a =
                phase + i as f32 * std::f32::consts::TAU / n as f32 - std::f32::consts::FRAC_PI_2;
            (r * a.cos(), r * a.sin())
        })
        .collect()
}

fn star(points: usize, inner: f32) -> Vec<(f32, f32)> {
    (0..2 * points)
        .map(|i| {
            let a = i as f32 * std::f32::consts::PI / points as f32 - std::f32::consts::FRAC_PI_2;
            let r = if i % 2 == 0 { 1.0 } else { inner };
            (r * a.cos(), r * a.sin())
        })
        .collect()
}

fn cross(w: f32) -> Vec<(f32, f32)> {
    vec![
        (-w, -1.0),
        (w, -1.0),
        (w, -w),
        (1.0, -w),
        (1.0, w),
        (w, w),
        (w, 1.0),
        (-w, 1.0),
        (-w, w),
        (-1.0, w),
        (-1.0, -w),
        (-w, -w),
    ]
}

/// Even-odd rule point-in-polygon test.
fn inside_polygon(v: &[(f32, f32)], x: f32, y: f32) -> bool {
    let mut inside = false;
    let mut j = v.len() - 1;
    for i in 0..v.len() {
        let (xi, yi) = v[i];
        let (xj, yj) = v[j];
        if (yi > y) != (yj > y) && x < (xj - xi) * (y - yi) / (yj - yi) + xi {
            inside = !inside;
        }
        j = i;
    }
    inside
}

/// A smooth random field on the unit square: bilinear interpolation of a coarse lattice.
#[derive(Debug, Clone)]
pub struct ValueNoise {
    n: usize,
    values: Vec<f32>,
}

impl ValueNoise {
    /// A lattice of `n` x `n` random values in 0..1.
    pub fn new(n: usize, rng: &mut StdRng) -> Self {
        let values = (0..n * n).map(|_| rng.random::<f32>()).collect();
        ValueNoise { n, values }
    }

    /// The field at (x, y); coordinates wrap around, so any real input is valid.
    pub fn at(&self, x: f32, y: f32) -> f32 {
        let n = self.n as f32;
        let (fx, fy) = ((x * n).rem_euclid(n), (y * n).rem_euclid(n));
        let (x0, y0) = (fx.floor() as usize % self.n, fy.floor() as usize % self.n);
        let (x1, y1) = ((x0 + 1) % self.n, (y0 + 1) % self.n);
        let (tx, ty) = (fx - fx.floor(), fy - fy.floor());
        let v = |x: usize, y: usize| self.values[y * self.n + x];
        let top = v(x0, y0) * (1.0 - tx) + v(x1, y0) * tx;
        let bottom = v(x0, y1) * (1.0 - tx) + v(x1, y1) * tx;
        top * (1.0 - ty) + bottom * ty
    }
}

/// How a surface is coloured, as a function of a point in the surface's own coordinates.
#[derive(Debug, Clone)]
pub enum Texture {
    /// One colour.
    Solid(Rgb),
    /// Parallel stripes of two colours.
    Stripes {
        a: Rgb,
        b: Rgb,
        period: f32,
        angle: f32,
    },
    /// A checkerboard of two colours.
    Checker {
        a: Rgb,
        b: Rgb,
        cell: f32,
        angle: f32,
    },
    /// A smooth random blend of two colours.
    Noise {
        a: Rgb,
        b: Rgb,
        field: ValueNoise,
        scale: f32,
    },
    /// A linear gradient between two colours (backgrounds).
    Gradient { a: Rgb, b: Rgb, angle: f32 },
}

/// A random saturated-enough colour.
pub fn random_colour(rng: &mut StdRng) -> Rgb {
    [
        rng.random_range(0.0..255.0),
        rng.random_range(0.0..255.0),
        rng.random_range(0.0..255.0),
    ]
}

/// Euclidean distance between two colours.
pub fn colour_distance(a: Rgb, b: Rgb) -> f32 {
    ((a[0] - b[0]).powi(2) + (a[1] - b[1]).powi(2) + (a[2] - b[2]).powi(2)).sqrt()
}

/// A colour at least `min_distance` away from `avoid`.
pub fn contrasting_colour(rng: &mut StdRng, avoid: Rgb, min_distance: f32) -> Rgb {
    loop {
        let c = random_colour(rng);
        if colour_distance(c, avoid) >= min_distance {
            return c;
        }
    }
}

/// A colour near `base` (for the second colour of a texture).
fn nearby_colour(rng: &mut StdRng, base: Rgb, spread: f32) -> Rgb {
    base.map(|c| (c + rng.random_range(-spread..spread)).clamp(0.0, 255.0))
}

impl Texture {
    /// An object texture whose main colour is `a`; `allow_solid` false forces a patterned one.
    pub fn random_object(rng: &mut StdRng, a: Rgb, allow_solid: bool) -> Texture {
        let b = nearby_colour(rng, a, 110.0);
        let angle = rng.random_range(0.0..std::f32::consts::PI);
        let lo = if allow_solid { 0 } else { 1 };
        match rng.random_range(lo..4) {
            0 => Texture::Solid(a),
            1 => Texture::Stripes {
                a,
                b,
                period: rng.random_range(0.35..0.9),
                angle,
            },
            2 => Texture::Checker {
                a,
                b,
                cell: rng.random_range(0.3..0.7),
                angle,
            },
            _ => Texture::Noise {
                a,
                b,
                field: ValueNoise::new(5, rng),
                scale: rng.random_range(0.25..0.5),
            },
        }
    }

    /// A background texture around colour `a`, in frame coordinates scaled to 0..1.
    pub fn random_background(rng: &mut StdRng, a: Rgb) -> Texture {
        let b = nearby_colour(rng, a, 70.0);
        let angle = rng.random_range(0.0..std::f32::consts::PI);
        match rng.random_range(0..5) {
            0 => Texture::Solid(a),
            1 => Texture::Gradient { a, b, angle },
            2 => Texture::Noise {
                a,
                b,
                field: ValueNoise::new(rng.random_range(4..12), rng),
                scale: 1.0,
            },
            3 => Texture::Stripes {
                a,
                b: nearby_colour(rng, a, 35.0),
                period: rng.random_range(0.04..0.2),
                angle,
            },
            _ => Texture::Checker {
                a,
                b: nearby_colour(rng, a, 35.0),
                cell: rng.random_range(0.04..0.2),
                angle,
            },
        }
    }

    /// The mean colour, used to keep objects distinguishable from the background.
    pub fn main_colour(&self) -> Rgb {
        match self {
            Texture::Solid(a)
            | Texture::Stripes { a, .. }
            | Texture::Checker { a, .. }
            | Texture::Noise { a, .. }
            | Texture::Gradient { a, .. } => *a,
        }
    }

    /// The colour at surface point (x, y).
    pub fn at(&self, x: f32, y: f32) -> Rgb {
        let rot = |angle: &f32| x * angle.cos() + y * angle.sin();
        match self {
            Texture::Solid(a) => *a,
            Texture::Stripes {
                a,
                b,
                period,
                angle,
            } => {
                if (rot(angle) / period).floor() as i64 % 2 == 0 {
                    *a
                } else {
                    *b
                }
            }
            Texture::Checker { a, b, cell, angle } => {
                let u = rot(angle) / cell;
                let v = (-x * angle.sin() + y * angle.cos()) / cell;
                if (u.floor() as i64 + v.floor() as i64) % 2 == 0 {
                    *a
                } else {
                    *b
                }
            }
            Texture::Noise { a, b, field, scale } => {
                let t = field.at(x * scale, y * scale);
                mix(*a, *b, t)
            }
            Texture::Gradient { a, b, angle } => {
                let t = (rot(angle) * 0.7 + 0.5).clamp(0.0, 1.0);
                mix(*a, *b, t)
            }
        }
    }
}

fn mix(a: Rgb, b: Rgb, t: f32) -> Rgb {
    [
        a[0] + (b[0] - a[0]) * t,
        a[1] + (b[1] - a[1]) * t,
        a[2] + (b[2] - a[2]) * t,
    ]
}
