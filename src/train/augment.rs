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
        // Source taps of output coordinate `o` along an axis starting at `origin`: the
        // two neighbours and the weight of the second.
        let taps = |origin: f32, o: usize| {
            let s = (origin + (o as f32 + 0.5) * step - 0.5).clamp(0.0, (size - 1) as f32);
            let (i0, t) = (s.floor() as usize, s - s.floor());
            (i0, (i0 + 1).min(size - 1), t)
        };
        // Every row samples the same columns: their taps are computed once per plane.
        let columns: Vec<(usize, usize, f32)> = (0..size)
            .map(|ox| taps(self.x, if self.flip { size - 1 - ox } else { ox }))
            .collect();
        out.reserve(size * size);
        for oy in 0..size {
            let (y0, y1, ty) = taps(self.y, oy);
            let (r0, r1) = (&src[y0 * size..][..size], &src[y1 * size..][..size]);
            out.extend(columns.iter().map(|&(x0, x1, tx)| {
                let top = r0[x0] * (1.0 - tx) + r0[x1] * tx;
                let bottom = r1[x0] * (1.0 - tx) + r1[x1] * tx;
                top * (1.0 - ty) + bottom * ty
            }));
        }
    }
}
