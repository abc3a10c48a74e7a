//! Warping of the second frame by the current flow (bicubic) and the linearised
//! data term it gives.

use rayon::prelude::*;

use super::pyramid::rows_per_task;

/// Central-difference gradient with replicated borders (half the one-sided
/// difference at the edges, as IPOL's and OpenCV's TV-L1).
pub(crate) fn centered_gradient(src: &[f32], w: usize, h: usize) -> (Vec<f32>, Vec<f32>) {
    let mut gx = vec![0.0f32; w * h];
    let mut gy = vec![0.0f32; w * h];
    let rows = rows_per_task(w, h);
    gx.par_chunks_mut(w * rows)
        .zip(gy.par_chunks_mut(w * rows))
        .enumerate()
        .for_each(|(c, (gxc, gyc))| {
            for (r, (gxr, gyr)) in gxc.chunks_exact_mut(w).zip(gyc.chunks_exact_mut(w)).enumerate() {
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

/// The second frame and its gradient, read for one level.
pub(crate) struct Target<'a> {
    pub i1: &'a [f32],
    pub i1x: &'a [f32],
    pub i1y: &'a [f32],
}

/// The linearised data term at the current flow, written by [`warp`].
pub(crate) struct DataTerm<'a> {
    pub i1wx: &'a mut [f32],
    pub i1wy: &'a mut [f32],
    pub grad: &'a mut [f32],
    pub rho_c: &'a mut [f32],
}

/// Warps `target` by (u1, u2) with bicubic interpolation (borders replicated) and
/// writes the terms of `rho(u) = rho_c + I1wx·u1 + I1wy·u2` and `|∇I1w|²`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn warp(
    i0: &[f32],
    target: &Target<'_>,
    u1: &[f32],
    u2: &[f32],
    w: usize,
    h: usize,
    out: DataTerm<'_>,
) {
    let rows = rows_per_task(w, h);
    let chunk = w * rows;
    let (wmax, hmax) = (w as isize - 1, h as isize - 1);
    out.i1wx
        .par_chunks_mut(chunk)
        .zip(out.i1wy.par_chunks_mut(chunk))
        .zip(out.grad.par_chunks_mut(chunk))
        .zip(out.rho_c.par_chunks_mut(chunk))
        .enumerate()
        .for_each(|(c, (((wx, wy), grad), rho))| {
            let base = c * chunk;
            for k in 0..wx.len() {
                let i = base + k;
                let (x, y) = (i % w, i / w);
                let (a, b) = (u1[i], u2[i]);
                let px = x as f32 + a;
                let py = y as f32 + b;
                let fx = px.floor();
                let fy = py.floor();
                let wxs = cubic_weights(px - fx);
                let wys = cubic_weights(py - fy);
                let (ix, iy) = (fx as isize, fy as isize);
                let mut acc = [0.0f32; 3];
                for (j, wyj) in wys.iter().enumerate() {
                    let yy = (iy - 1 + j as isize).clamp(0, hmax) as usize * w;
                    let mut racc = [0.0f32; 3];
                    for (m, wxm) in wxs.iter().enumerate() {
                        let xx = (ix - 1 + m as isize).clamp(0, wmax) as usize;
                        let p = yy + xx;
                        racc[0] += wxm * target.i1[p];
                        racc[1] += wxm * target.i1x[p];
                        racc[2] += wxm * target.i1y[p];
                    }
                    for (s, r) in acc.iter_mut().zip(racc) {
                        *s += wyj * r;
                    }
                }
                let [i1w, gx, gy] = acc;
                wx[k] = gx;
                wy[k] = gy;
                grad[k] = gx * gx + gy * gy;
                rho[k] = i1w - gx * a - gy * b - i0[i];
            }
        });
}
