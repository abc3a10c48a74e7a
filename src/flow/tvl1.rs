//! Dual TV-L1 optical flow (Zach, Pock, Bischof 2007; Wedel et al. 2009), following
//! Sánchez, Meinhardt-Llopis, Facciolo, "TV-L1 Optical Flow Estimation", IPOL 2013,
//! with OpenCV's median filtering between outer iterations.
//!
//! Each inner iteration is one sweep over the rows instead of the textbook six passes
//! (thresholding, two divergences, flow update, two gradients, dual update): row y's
//! flow is updated, then row y−1's duals while both rows are still in cache. The
//! row kernels are written so the compiler vectorises them (AVX2 when the CPU has it).

use std::borrow::Cow;

use rayon::prelude::*;
use tracing::debug;

use super::median::median_filter;
use super::pyramid::{resize_bilinear, rows_per_task, zoom_out};
use super::warp::{DataTerm, Target, warp};
use super::{Flow, FlowError, GrayImage, Tvl1Params};

/// Levels below this size in either dimension are not built (as OpenCV).
const MIN_LEVEL_SIZE: usize = 16;

/// TV-L1 flow from `prev` to `next`, so that `next(x + u) ≈ prev(x)`.
///
/// # Panics
/// If the frames differ in size, a buffer does not match its dimensions, or the
/// parameters are invalid; [`try_tvl1`] returns these as errors.
pub fn tvl1(prev: &GrayImage, next: &GrayImage, params: &Tvl1Params) -> Flow {
    match try_tvl1(prev, next, params) {
        Ok(flow) => flow,
        Err(e) => panic!("tvl1: {e}"),
    }
}

/// TV-L1 flow from `prev` to `next`, refusing mismatched frames and invalid parameters.
pub fn try_tvl1(
    prev: &GrayImage,
    next: &GrayImage,
    params: &Tvl1Params,
) -> Result<Flow, FlowError> {
    params.validate()?;
    let (w, h) = (prev.width, prev.height);
    if (w, h) != (next.width, next.height) {
        return Err(FlowError::SizeMismatch(w, h, next.width, next.height));
    }
    if w == 0 || h == 0 {
        return Err(FlowError::Empty(w, h));
    }
    for img in [prev, next] {
        if img.data.len() != w * h {
            return Err(FlowError::BadLength {
                len: img.data.len(),
                width: w,
                height: h,
                channels: 1,
            });
        }
    }

    let next = if params.gain_compensation {
        Cow::Owned(match_gain(&prev.data, &next.data))
    } else {
        Cow::Borrowed(&next.data[..])
    };

    let sizes = pyramid_sizes(w, h, params);
    let mut i0s = vec![Cow::Borrowed(&prev.data[..])];
    let mut i1s = vec![next];
    for s in 1..sizes.len() {
        let ((pw, ph), (nw, nh)) = (sizes[s - 1], sizes[s]);
        let eta = nw as f32 / pw as f32;
        i0s.push(Cow::Owned(zoom_out(&i0s[s - 1], pw, ph, nw, nh, eta)));
        i1s.push(Cow::Owned(zoom_out(&i1s[s - 1], pw, ph, nw, nh, eta)));
    }
    let coarsest = sizes.len() - 1;
    let finest = params.finest_scale.min(coarsest);

    let (cw, ch) = sizes[coarsest];
    let mut u1 = vec![0.0f32; cw * ch];
    let mut u2 = vec![0.0f32; cw * ch];
    for s in (finest..=coarsest).rev() {
        let (lw, lh) = sizes[s];
        let iterations = solve_level(&i0s[s], &i1s[s], lw, lh, &mut u1, &mut u2, params);
        debug!(
            level = s,
            width = lw,
            height = lh,
            iterations,
            "tv-l1 level solved"
        );
        let (tw, th) = if s == finest { (w, h) } else { sizes[s - 1] };
        if (tw, th) != (lw, lh) {
            u1 = resize_bilinear(&u1, lw, lh, tw, th, tw as f32 / lw as f32);
            u2 = resize_bilinear(&u2, lw, lh, tw, th, th as f32 / lh as f32);
        }
    }
    Ok(Flow {
        width: w,
        height: h,
        u: u1,
        v: u2,
    })
}

/// Pyramid level sizes, level 0 the input; stops before a level gets too small.
pub(super) fn pyramid_sizes(w: usize, h: usize, params: &Tvl1Params) -> Vec<(usize, usize)> {
    let mut sizes = vec![(w, h)];
    for s in 1..params.nscales {
        let nw = (w as f32 * params.scale_step.powi(s as i32)).round() as usize;
        let nh = (h as f32 * params.scale_step.powi(s as i32)).round() as usize;
        if nw < MIN_LEVEL_SIZE || nh < MIN_LEVEL_SIZE {
            break;
        }
        sizes.push((nw, nh));
    }
    sizes
}

/// `next` mapped affinely to `prev`'s mean and standard deviation: a global gain or
/// offset between the frames (flicker, auto-exposure) otherwise shows up as flow
/// wherever there is texture.
fn match_gain(prev: &[f32], next: &[f32]) -> Vec<f32> {
    let stats = |x: &[f32]| {
        let n = x.len() as f64;
        let mean = x.iter().map(|&v| f64::from(v)).sum::<f64>() / n;
        let var = x
            .iter()
            .map(|&v| (f64::from(v) - mean).powi(2))
            .sum::<f64>()
            / n;
        (mean, var.sqrt())
    };
    let (mp, sp) = stats(prev);
    let (mn, sn) = stats(next);
    // A flat frame has no contrast to match; only shift it.
    let gain = if sn > 1e-3 { sp / sn } else { 1.0 };
    next.iter()
        .map(|&v| ((f64::from(v) - mn) * gain + mp) as f32)
        .collect()
}

/// Solves one level in place from the initial flow (u1, u2); returns the number of
/// inner iterations run.
fn solve_level(
    i0: &[f32],
    i1: &[f32],
    w: usize,
    h: usize,
    u1: &mut [f32],
    u2: &mut [f32],
    params: &Tvl1Params,
) -> usize {
    let n = w * h;
    let target = Target::new(i1, w, h);
    let mut i1wx = vec![0.0f32; n];
    let mut i1wy = vec![0.0f32; n];
    let mut rho_c = vec![0.0f32; n];
    let mut dual = Dual {
        p11: vec![0.0f32; n],
        p12: vec![0.0f32; n],
        p21: vec![0.0f32; n],
        p22: vec![0.0f32; n],
    };
    let rows = rows_per_task(w, h);
    let bands = h.div_ceil(rows);
    let mut work = Work {
        above: vec![0.0f32; bands * 2 * w],
        diff: vec![0.0f32; bands * w],
    };
    let mut scratch = Vec::new();
    let stop = params.epsilon * params.epsilon * n as f32;
    let mut iterations = 0;

    for _ in 0..params.warps {
        warp(
            i0,
            &target,
            u1,
            u2,
            w,
            h,
            DataTerm {
                i1wx: &mut i1wx,
                i1wy: &mut i1wy,
                rho_c: &mut rho_c,
            },
        );
        let step = Step {
            w,
            h,
            rows,
            ix: &i1wx,
            iy: &i1wy,
            rho_c: &rho_c,
            l_t: params.lambda * params.theta,
            theta: params.theta,
            taut: params.tau / params.theta,
        };
        let mut error = f32::INFINITY;
        let mut outer = 0;
        while error > stop && outer < params.outer_iterations {
            outer += 1;
            if params.median_filtering > 1 {
                median_filter(u1, w, h, params.median_filtering, &mut scratch);
                median_filter(u2, w, h, params.median_filtering, &mut scratch);
            }
            let mut inner = 0;
            while error > stop && inner < params.inner_iterations {
                inner += 1;
                error = step.run(u1, u2, &mut dual, &mut work);
            }
            iterations += inner;
        }
    }
    iterations
}

/// The dual variables: p1 = (p11, p12) for u1, p2 = (p21, p22) for u2.
struct Dual {
    p11: Vec<f32>,
    p12: Vec<f32>,
    p21: Vec<f32>,
    p22: Vec<f32>,
}

/// Per-band scratch of [`Step::run`], allocated once per level.
struct Work {
    /// Each band's copy of (p12, p22) in the row above it, before the iteration.
    above: Vec<f32>,
    /// Each band's row of squared flow changes.
    diff: Vec<f32>,
}

/// One inner iteration at the current warping.
struct Step<'a> {
    w: usize,
    h: usize,
    /// Rows per band (parallel task).
    rows: usize,
    ix: &'a [f32],
    iy: &'a [f32],
    rho_c: &'a [f32],
    l_t: f32,
    theta: f32,
    taut: f32,
}

impl Step<'_> {
    /// Thresholding, u = v + θ div p, and the dual update, in one sweep over the rows:
    /// row y's flow, then row y−1's duals while both rows are in cache. Returns Σ |Δu|².
    ///
    /// Bands run in parallel; a band reads the duals of the row above it from a copy
    /// taken before the sweep, and the duals of each band's last row (which need the
    /// next band's new flow) are updated after it.
    fn run(&self, u1: &mut [f32], u2: &mut [f32], dual: &mut Dual, work: &mut Work) -> f32 {
        let (w, h, rows) = (self.w, self.h, self.rows);
        let chunk = w * rows;
        for (k, above) in work.above.chunks_exact_mut(2 * w).enumerate().skip(1) {
            let y = k * rows - 1;
            above[..w].copy_from_slice(&dual.p12[y * w..y * w + w]);
            above[w..].copy_from_slice(&dual.p22[y * w..y * w + w]);
        }
        let error = u1
            .par_chunks_mut(chunk)
            .zip(u2.par_chunks_mut(chunk))
            .zip(dual.p11.par_chunks_mut(chunk))
            .zip(dual.p12.par_chunks_mut(chunk))
            .zip(dual.p21.par_chunks_mut(chunk))
            .zip(dual.p22.par_chunks_mut(chunk))
            .zip(work.above.par_chunks(2 * w))
            .zip(work.diff.par_chunks_mut(w))
            .enumerate()
            .map(
                |(k, (((((((u1, u2), p11), p12), p21), p22), above), diff))| {
                    let band = Band {
                        u1,
                        u2,
                        p: [p11, p12, p21, p22],
                    };
                    self.band(k * rows, band, above, diff)
                },
            )
            .sum();
        // The duals of each band's last row, now that the next band's flow is updated.
        for y in (rows..h).step_by(rows).map(|y0| y0 - 1) {
            let (cur, down) = (y * w..y * w + w, (y + 1) * w..(y + 2) * w);
            let p = [&mut dual.p11, &mut dual.p12, &mut dual.p21, &mut dual.p22]
                .map(|p| &mut p[cur.clone()]);
            dual_row(
                p,
                [&u1[cur.clone()], &u1[down.clone()], &u2[cur], &u2[down]],
                self.taut,
            );
        }
        error
    }

    /// Sweeps one band starting at row `y0`; returns its Σ |Δu|².
    fn band(&self, y0: usize, b: Band<'_>, above: &[f32], diff: &mut [f32]) -> f32 {
        let w = self.w;
        let n = b.u1.len() / w;
        let [p11, p12, p21, p22] = b.p;
        let mut error = 0.0;
        for r in 0..n {
            let y = y0 + r;
            let (cur, data) = (r * w..r * w + w, y * w..y * w + w);
            // Duals of the row above: still this iteration's inputs (see `run`).
            let (p12_up, p22_up) = match r {
                0 => (&above[..w], &above[w..]),
                _ => (
                    &p12[cur.start - w..cur.start],
                    &p22[cur.start - w..cur.start],
                ),
            };
            flow_row(
                FlowRow {
                    u1: &mut b.u1[cur.clone()],
                    u2: &mut b.u2[cur.clone()],
                    diff: &mut diff[..],
                    ix: &self.ix[data.clone()],
                    iy: &self.iy[data.clone()],
                    rho_c: &self.rho_c[data],
                    p11: &p11[cur.clone()],
                    p12: &p12[cur.clone()],
                    p12_up,
                    p21: &p21[cur.clone()],
                    p22: &p22[cur.clone()],
                    p22_up,
                },
                self.l_t,
                self.theta,
            );
            error += sum(diff);
            if r > 0 {
                let prev = cur.start - w..cur.start;
                let p = [&mut *p11, &mut *p12, &mut *p21, &mut *p22].map(|p| &mut p[prev.clone()]);
                let u = [
                    &b.u1[prev.clone()],
                    &b.u1[cur.clone()],
                    &b.u2[prev.clone()],
                    &b.u2[cur.clone()],
                ];
                dual_row(p, u, self.taut);
            }
        }
        if y0 + n == self.h {
            // The image's last row has no row below: zero vertical gradient.
            let last = (n - 1) * w..n * w;
            let p = [&mut *p11, &mut *p12, &mut *p21, &mut *p22].map(|p| &mut p[last.clone()]);
            let u = [
                &b.u1[last.clone()],
                &b.u1[last.clone()],
                &b.u2[last.clone()],
                &b.u2[last],
            ];
            dual_row(p, u, self.taut);
        }
        error
    }
}

/// One band's rows of the flow and the duals.
struct Band<'a> {
    u1: &'a mut [f32],
    u2: &'a mut [f32],
    p: [&'a mut [f32]; 4],
}

/// One row's slices for [`flow_row`], all of the same length.
struct FlowRow<'a> {
    u1: &'a mut [f32],
    u2: &'a mut [f32],
    diff: &'a mut [f32],
    ix: &'a [f32],
    iy: &'a [f32],
    rho_c: &'a [f32],
    p11: &'a [f32],
    p12: &'a [f32],
    p12_up: &'a [f32],
    p21: &'a [f32],
    p22: &'a [f32],
    p22_up: &'a [f32],
}

/// Thresholding step (v from u), then u = v + θ div p, for one row.
fn flow_row(r: FlowRow<'_>, l_t: f32, theta: f32) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU supports AVX2, checked just above.
        return unsafe { flow_row_avx2(r, l_t, theta) };
    }
    flow_row_body(r, l_t, theta)
}

/// [`flow_row_body`] compiled for AVX2 (eight lanes instead of SSE2's four).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn flow_row_avx2(r: FlowRow<'_>, l_t: f32, theta: f32) {
    flow_row_body(r, l_t, theta)
}

#[inline(always)]
fn flow_row_body(r: FlowRow<'_>, l_t: f32, theta: f32) {
    let w = r.u1.len();
    // Equal lengths let the compiler drop bounds checks and vectorise the loop.
    let (u1, u2, diff) = (&mut r.u1[..w], &mut r.u2[..w], &mut r.diff[..w]);
    let (ix, iy, rho_c) = (&r.ix[..w], &r.iy[..w], &r.rho_c[..w]);
    let (p11, p12, p12_up) = (&r.p11[..w], &r.p12[..w], &r.p12_up[..w]);
    let (p21, p22, p22_up) = (&r.p21[..w], &r.p22[..w], &r.p22_up[..w]);
    // x = 0 has no left neighbour; the loop over the rest then has no branch.
    let div1 = p11[0] + p12[0] - p12_up[0];
    let div2 = p21[0] + p22[0] - p22_up[0];
    (u1[0], u2[0], diff[0]) = flow_cell(
        [u1[0], u2[0]],
        [ix[0], iy[0], rho_c[0]],
        [div1, div2],
        l_t,
        theta,
    );
    for x in 1..w {
        let div1 = p11[x] - p11[x - 1] + p12[x] - p12_up[x];
        let div2 = p21[x] - p21[x - 1] + p22[x] - p22_up[x];
        (u1[x], u2[x], diff[x]) = flow_cell(
            [u1[x], u2[x]],
            [ix[x], iy[x], rho_c[x]],
            [div1, div2],
            l_t,
            theta,
        );
    }
}

/// One pixel's new flow and squared change, from its flow `u`, data term
/// `d` = (I1wx, I1wy, rho_c) and dual divergence `div`.
#[inline(always)]
fn flow_cell(u: [f32; 2], d: [f32; 3], div: [f32; 2], l_t: f32, theta: f32) -> (f32, f32, f32) {
    let [a, b] = u;
    let [gx, gy, rho_c] = d;
    // The thresholding operator TH: v = u + clamp(−ρ/|∇I1|², ±λθ) ∇I1.
    let rho = rho_c + gx * a + gy * b;
    let grad = (gx * gx + gy * gy).max(1e-10);
    let step = (-rho / grad).max(-l_t).min(l_t);
    // u = v + θ div p.
    let n1 = a + step * gx + theta * div[0];
    let n2 = b + step * gy + theta * div[1];
    (n1, n2, (n1 - a) * (n1 - a) + (n2 - b) * (n2 - b))
}

/// p ← (p + τ/θ ∇u) / (1 + τ/θ |∇u|) for one row, with forward differences (zero past
/// the right border); `u` is [u1, u1 one row down, u2, u2 one row down].
fn dual_row(p: [&mut [f32]; 4], u: [&[f32]; 4], taut: f32) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU supports AVX2, checked just above.
        return unsafe { dual_row_avx2(p, u, taut) };
    }
    dual_row_body(p, u, taut)
}

/// [`dual_row_body`] compiled for AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn dual_row_avx2(p: [&mut [f32]; 4], u: [&[f32]; 4], taut: f32) {
    dual_row_body(p, u, taut)
}

#[inline(always)]
fn dual_row_body(p: [&mut [f32]; 4], u: [&[f32]; 4], taut: f32) {
    let w = u[0].len();
    let [p11, p12, p21, p22] = p;
    let (p11, p12, p21, p22) = (&mut p11[..w], &mut p12[..w], &mut p21[..w], &mut p22[..w]);
    let (u1, u1_down, u2, u2_down) = (&u[0][..w], &u[1][..w], &u[2][..w], &u[3][..w]);
    for x in 0..w - 1 {
        let g = [
            u1[x + 1] - u1[x],
            u1_down[x] - u1[x],
            u2[x + 1] - u2[x],
            u2_down[x] - u2[x],
        ];
        (p11[x], p12[x], p21[x], p22[x]) = dual_cell([p11[x], p12[x], p21[x], p22[x]], g, taut);
    }
    // The last column has no right neighbour: its horizontal gradient is zero.
    let x = w - 1;
    let g = [0.0, u1_down[x] - u1[x], 0.0, u2_down[x] - u2[x]];
    (p11[x], p12[x], p21[x], p22[x]) = dual_cell([p11[x], p12[x], p21[x], p22[x]], g, taut);
}

/// One pixel's duals from their old values and the flow gradient g = (u1x, u1y, u2x, u2y).
#[inline(always)]
fn dual_cell(p: [f32; 4], g: [f32; 4], taut: f32) -> (f32, f32, f32, f32) {
    let ng1 = 1.0 + taut * (g[0] * g[0] + g[1] * g[1]).sqrt();
    let ng2 = 1.0 + taut * (g[2] * g[2] + g[3] * g[3]).sqrt();
    (
        (p[0] + taut * g[0]) / ng1,
        (p[1] + taut * g[1]) / ng1,
        (p[2] + taut * g[2]) / ng2,
        (p[3] + taut * g[3]) / ng2,
    )
}

/// Sum with eight independent accumulators, so it vectorises.
fn sum(xs: &[f32]) -> f32 {
    let mut acc = [0.0f32; 8];
    let chunks = xs.chunks_exact(8);
    let rest: f32 = chunks.remainder().iter().sum();
    for c in chunks {
        for i in 0..8 {
            acc[i] += c[i];
        }
    }
    acc.iter().sum::<f32>() + rest
}
