//! Warping of the second frame by the current flow (bicubic) and the linearised
//! data term it gives.

use rayon::prelude::*;

use super::pyramid::rows_per_task;

/// Central-difference gradient with replicated borders (half the one-sided
/// difference at the edges, as IPOL's and OpenCV's TV-L1).
fn centered_gradient(src: &[f32], w: usize, h: usize) -> (Vec<f32>, Vec<f32>) {
    let mut gx = vec![0.0f32; w * h];
    let mut gy = vec![0.0f32; w * h];
    let rows = rows_per_task(w, h);
    gx.par_chunks_mut(w * rows)
        .zip(gy.par_chunks_mut(w * rows))
        .enumerate()
        .for_each(|(c, (gxc, gyc))| {
            for (r, (gxr, gyr)) in gxc
                .chunks_exact_mut(w)
                .zip(gyc.chunks_exact_mut(w))
                .enumerate()
            {
                let y = c * rows + r;
                let row = &src[y * w..y * w + w];
                let up = &src[y.saturating_sub(1) * w..][..w];
                let down = &src[(y + 1).min(h - 1) * w..][..w];
                for x in 0..w {
                    let l = row[x.saturating_sub(1)];
                    let r = row[(x + 1).min(w - 1)];
                    gxr[x] = 0.5 * (r - l);
                }
                for ((g, &d), &u) in gyr.iter_mut().zip(down).zip(up) {
                    *g = 0.5 * (d - u);
                }
            }
        });
    (gx, gy)
}

/// `x.floor()` without the libm call SSE2 needs (exact for |x| < 2^31).
#[inline(always)]
fn floor(x: f32) -> f32 {
    let t = x as i32 as f32;
    if t > x { t - 1.0 } else { t }
}

/// Keys' cubic convolution weights (a = −0.5, as IPOL) for the four taps around `t`.
#[inline(always)]
fn cubic_weights(t: f32) -> [f32; 4] {
    let t2 = t * t;
    let t3 = t2 * t;
    [
        -0.5 * t3 + t2 - 0.5 * t,
        1.5 * t3 - 2.5 * t2 + 1.0,
        -1.5 * t3 + 2.0 * t2 + 0.5 * t,
        0.5 * t3 - 0.5 * t2,
    ]
}

/// The second frame and its gradient interleaved per pixel as (I1, I1x, I1y, 0), so
/// each interpolation tap is one four-lane load.
pub(crate) struct Target {
    texels: Vec<[f32; 4]>,
}

impl Target {
    /// Interleaves the frame with its centred gradient.
    pub(crate) fn new(i1: &[f32], w: usize, h: usize) -> Target {
        let (gx, gy) = centered_gradient(i1, w, h);
        let texels = i1
            .iter()
            .zip(gx.iter().zip(&gy))
            .map(|(&v, (&x, &y))| [v, x, y, 0.0])
            .collect();
        Target { texels }
    }
}

/// Bicubic interpolation of the interleaved texels at (px, py), borders replicated.
#[inline(always)]
fn sample(texels: &[[f32; 4]], w: usize, wmax: isize, hmax: isize, px: f32, py: f32) -> [f32; 4] {
    let (fx, fy) = (floor(px), floor(py));
    let wxs = cubic_weights(px - fx);
    let wys = cubic_weights(py - fy);
    let (ix, iy) = (fx as isize, fy as isize);
    let xs = [-1isize, 0, 1, 2].map(|d| (ix + d).clamp(0, wmax) as usize);
    let mut acc = [0.0f32; 4];
    for (j, wyj) in wys.iter().enumerate() {
        let yy = (iy - 1 + j as isize).clamp(0, hmax) as usize * w;
        let mut racc = [0.0f32; 4];
        for (xx, wxm) in xs.iter().zip(&wxs) {
            let t = texels[yy + xx];
            for (r, v) in racc.iter_mut().zip(t) {
                *r += wxm * v;
            }
        }
        for (s, r) in acc.iter_mut().zip(racc) {
            *s += wyj * r;
        }
    }
    acc
}

/// The linearised data term at the current flow, written by [`warp`].
pub(crate) struct DataTerm<'a> {
    pub i1wx: &'a mut [f32],
    pub i1wy: &'a mut [f32],
    pub rho_c: &'a mut [f32],
}

/// Warps `target` by (u1, u2) with bicubic interpolation (borders replicated) and
/// writes the terms of `rho(u) = rho_c + I1wx·u1 + I1wy·u2`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn warp(
    i0: &[f32],
    target: &Target,
    u1: &[f32],
    u2: &[f32],
    w: usize,
    h: usize,
    out: DataTerm<'_>,
) {
    let rows = rows_per_task(w, h);
    let chunk = w * rows;
    let (wmax, hmax) = (w as isize - 1, h as isize - 1);
    let texels = &target.texels[..];
    out.i1wx
        .par_chunks_mut(chunk)
        .zip(out.i1wy.par_chunks_mut(chunk))
        .zip(out.rho_c.par_chunks_mut(chunk))
        .enumerate()
        .for_each(|(c, ((wx, wy), rho))| {
            let rows = wx
                .chunks_exact_mut(w)
                .zip(wy.chunks_exact_mut(w))
                .zip(rho.chunks_exact_mut(w));
            for (r, ((wx, wy), rho)) in rows.enumerate() {
                let y = c * chunk / w + r;
                let row = y * w..y * w + w;
                let (u1, u2, i0) = (&u1[row.clone()], &u2[row.clone()], &i0[row]);
                for x in 0..w {
                    let (a, b) = (u1[x], u2[x]);
                    let [i1w, gx, gy, _] =
                        sample(texels, w, wmax, hmax, x as f32 + a, y as f32 + b);
                    wx[x] = gx;
                    wy[x] = gy;
                    rho[x] = i1w - gx * a - gy * b - i0[x];
                }
            }
        });
}
