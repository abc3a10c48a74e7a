//! Training-time augmentation of one sample: random resized crop and horizontal flip.
//!
//! RGB and flow get the same geometric transform; flow values scale with the zoom
//! (motion in pixels grows when the view is magnified) and u changes sign under a flip.

use rand::Rng;
use rand::rngs::StdRng;

/// A crop window in source pixels and whether to mirror it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Transform {
    /// Left edge of the crop.
    pub x: f32,
    /// Top edge of the crop.
    pub y: f32,
    /// Side of the (square) crop.
    pub side: f32,
    /// Mirror left to right.
    pub flip: bool,
}

impl Transform {
    /// The identity on a `size` x `size` image.
    pub fn identity(size: usize) -> Self {
        Transform {
            x: 0.0,
            y: 0.0,
            side: size as f32,
            flip: false,
        }
    }

    /// A random square crop covering `min_scale..=1` of the side, mirrored with
    /// probability 1/2 when `flip` is allowed.
    pub fn random(size: usize, min_scale: f32, flip: bool, rng: &mut StdRng) -> Self {
        let s = size as f32;
        let side = if min_scale < 1.0 {
            s * rng.random_range(min_scale..=1.0)
        } else {
            s
        };
        Transform {
            x: rng.random_range(0.0..=s - side),
            y: rng.random_range(0.0..=s - side),
            side,
            flip: flip && rng.random_bool(0.5),
        }
    }

    /// Factor by which displacements grow in the output.
    pub fn zoom(&self, size: usize) -> f32 {
        size as f32 / self.side
    }

    /// Resamples one `size` x `size` plane through the transform (bilinear).
    pub fn apply(&self, src: &[f32], size: usize, out: &mut Vec<f32>) {
        let step = self.side / size as f32;
        let max = (size - 1) as f32;
        for oy in 0..size {
            let sy = (self.y + (oy as f32 + 0.5) * step - 0.5).clamp(0.0, max);
            let (y0, ty) = (sy.floor() as usize, sy - sy.floor());
            let y1 = (y0 + 1).min(size - 1);
            for ox in 0..size {
                let ox = if self.flip { size - 1 - ox } else { ox };
                let sx = (self.x + (ox as f32 + 0.5) * step - 0.5).clamp(0.0, max);
                let (x0, tx) = (sx.floor() as usize, sx - sx.floor());
                let x1 = (x0 + 1).min(size - 1);
                let top = src[y0 * size + x0] * (1.0 - tx) + src[y0 * size + x1] * tx;
                let bottom = src[y1 * size + x0] * (1.0 - tx) + src[y1 * size + x1] * tx;
                out.push(top * (1.0 - ty) + bottom * ty);
            }
        }
    }
}
