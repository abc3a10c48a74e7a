//! Image pyramid helpers: Gaussian smoothing, bilinear resampling, rows for rayon.

use rayon::prelude::*;

/// Rows per parallel task: enough tasks to balance the threads, none too small to pay
/// for its scheduling.
pub(crate) fn rows_per_task(width: usize, height: usize) -> usize {
    let threads = rayon::current_num_threads().max(1);
    let balanced = height.div_ceil(4 * threads);
    let worthwhile = 16_384usize.div_ceil(width.max(1));
    balanced.max(worthwhile).clamp(1, height.max(1))
}

/// Separable Gaussian blur with replicated borders.
pub(crate) fn gaussian_blur(src: &[f32], w: usize, h: usize, sigma: f32) -> Vec<f32> {
    let radius = (3.0 * sigma).ceil().max(1.0) as usize;
    let mut kernel: Vec<f32> = (0..=2 * radius)
        .map(|i| {
            let d = i as f32 - radius as f32;
            (-d * d / (2.0 * sigma * sigma)).exp()
        })
        .collect();
    let total: f32 = kernel.iter().sum();
    kernel.iter_mut().for_each(|k| *k /= total);

    let rows = rows_per_task(w, h);
    let mut tmp = vec![0.0f32; w * h];
    tmp.par_chunks_mut(w * rows)
        .zip(src.par_chunks(w * rows))
        .for_each(|(dst, src)| {
            let mut padded = vec![0.0f32; w + 2 * radius];
            for (drow, srow) in dst.chunks_exact_mut(w).zip(src.chunks_exact(w)) {
                padded[..radius].fill(srow[0]);
                padded[radius..radius + w].copy_from_slice(srow);
                padded[radius + w..].fill(srow[w - 1]);
                drow.fill(0.0);
                for (k, &kv) in kernel.iter().enumerate() {
                    for (d, &s) in drow.iter_mut().zip(&padded[k..k + w]) {
                        *d += kv * s;
                    }
                }
            }
        });

    let mut out = vec![0.0f32; w * h];
    out.par_chunks_mut(w * rows)
        .enumerate()
        .for_each(|(c, dst)| {
            for (r, drow) in dst.chunks_exact_mut(w).enumerate() {
                let y = (c * rows + r) as isize;
                drow.fill(0.0);
                for (k, &kv) in kernel.iter().enumerate() {
                    let sy = (y + k as isize - radius as isize).clamp(0, h as isize - 1) as usize;
                    for (d, &s) in drow.iter_mut().zip(&tmp[sy * w..sy * w + w]) {
                        *d += kv * s;
                    }
                }
            }
        });
    out
}

/// Bilinear resampling to `dw x dh`, pixel centres aligned, borders replicated;
/// every value is multiplied by `gain` (the flow's rescaling when it changes level).
pub(crate) fn resize_bilinear(
    src: &[f32],
    sw: usize,
    sh: usize,
    dw: usize,
    dh: usize,
    gain: f32,
) -> Vec<f32> {
    let sx = sw as f32 / dw as f32;
    let sy = sh as f32 / dh as f32;
    // Column taps are the same for every row: compute them once.
    let cols: Vec<(usize, usize, f32)> = (0..dw)
        .map(|x| {
            let fx = ((x as f32 + 0.5) * sx - 0.5).clamp(0.0, (sw - 1) as f32);
            let x0 = fx.floor() as usize;
            (x0, (x0 + 1).min(sw - 1), fx - x0 as f32)
        })
        .collect();
    let mut out = vec![0.0f32; dw * dh];
    let rows = rows_per_task(dw, dh);
    out.par_chunks_mut(dw * rows)
        .enumerate()
        .for_each(|(c, dst)| {
            for (r, drow) in dst.chunks_exact_mut(dw).enumerate() {
                let y = c * rows + r;
                let fy = ((y as f32 + 0.5) * sy - 0.5).clamp(0.0, (sh - 1) as f32);
                let y0 = fy.floor() as usize;
                let y1 = (y0 + 1).min(sh - 1);
                let ty = fy - y0 as f32;
                let r0 = &src[y0 * sw..y0 * sw + sw];
                let r1 = &src[y1 * sw..y1 * sw + sw];
                for (d, &(x0, x1, tx)) in drow.iter_mut().zip(&cols) {
                    let top = r0[x0] + tx * (r0[x1] - r0[x0]);
                    let bottom = r1[x0] + tx * (r1[x1] - r1[x0]);
                    *d = gain * (top + ty * (bottom - top));
                }
            }
        });
    out
}

/// One level down: Gaussian anti-aliasing (IPOL's sigma = 0.6 sqrt(1/η² − 1)) then
/// bilinear sampling.
pub(crate) fn zoom_out(
    src: &[f32],
    sw: usize,
    sh: usize,
    dw: usize,
    dh: usize,
    eta: f32,
) -> Vec<f32> {
    let sigma = 0.6 * (1.0 / (eta * eta) - 1.0).max(0.0).sqrt();
    if sigma < 0.1 {
        return resize_bilinear(src, sw, sh, dw, dh, 1.0);
    }
    let smoothed = gaussian_blur(src, sw, sh, sigma);
    resize_bilinear(&smoothed, sw, sh, dw, dh, 1.0)
}
