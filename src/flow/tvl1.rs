//! Dual TV-L1 optical flow (Zach, Pock, Bischof 2007; Wedel et al. 2009), following
//! Sánchez, Meinhardt-Llopis, Facciolo, "TV-L1 Optical Flow Estimation", IPOL 2013,
//! with OpenCV's median filtering between outer iterations.
//!
//! Each inner iteration is two fused passes over the image instead of the textbook
//! six: (thresholding + divergence + flow update) and (forward gradient + dual update).

use rayon::prelude::*;
use tracing::debug;

use super::median::median_filter;
use super::pyramid::{resize_bilinear, rows_per_task, zoom_out};
use super::warp::{DataTerm, Target, centered_gradient, warp};
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
pub fn try_tvl1(prev: &GrayImage, next: &GrayImage, params: &Tvl1Params) -> Result<Flow, FlowError> {
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

    // Pyramid: level 0 is the input; stop before a level gets too small.
    let mut sizes = vec![(w, h)];
    let mut i0s = vec![prev.data.clone()];
    let mut i1s = vec![next.data.clone()];
    for s in 1..params.nscales {
        let (pw, ph) = sizes[s - 1];
        let nw = (w as f32 * params.scale_step.powi(s as i32)).round() as usize;
        let nh = (h as f32 * params.scale_step.powi(s as i32)).round() as usize;
        if nw < MIN_LEVEL_SIZE || nh < MIN_LEVEL_SIZE {
            break;
        }
        let eta = nw as f32 / pw as f32;
        i0s.push(zoom_out(&i0s[s - 1], pw, ph, nw, nh, eta));
        i1s.push(zoom_out(&i1s[s - 1], pw, ph, nw, nh, eta));
        sizes.push((nw, nh));
    }
    let coarsest = sizes.len() - 1;
    let finest = params.finest_scale.min(coarsest);

    let (cw, ch) = sizes[coarsest];
    let mut u1 = vec![0.0f32; cw * ch];
    let mut u2 = vec![0.0f32; cw * ch];
    for s in (finest..=coarsest).rev() {
        let (lw, lh) = sizes[s];
        let iterations = solve_level(&i0s[s], &i1s[s], lw, lh, &mut u1, &mut u2, params);
        debug!(level = s, width = lw, height = lh, iterations, "tv-l1 level solved");
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
    let (i1x, i1y) = centered_gradient(i1, w, h);
    let target = Target {
        i1,
        i1x: &i1x,
        i1y: &i1y,
    };
    let mut i1wx = vec![0.0f32; n];
    let mut i1wy = vec![0.0f32; n];
    let mut grad = vec![0.0f32; n];
    let mut rho_c = vec![0.0f32; n];
    let mut dual = Dual {
        p11: vec![0.0f32; n],
        p12: vec![0.0f32; n],
        p21: vec![0.0f32; n],
        p22: vec![0.0f32; n],
    };
    let mut scratch = Vec::new();
    let zeros = vec![0.0f32; w];

    let l_t = params.lambda * params.theta;
    let taut = params.tau / params.theta;
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
                grad: &mut grad,
                rho_c: &mut rho_c,
            },
        );
        let data = Data {
            i1wx: &i1wx,
            i1wy: &i1wy,
            grad: &grad,
            rho_c: &rho_c,
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
                error = update_flow(&data, &dual, u1, u2, w, l_t, params.theta, &zeros);
                update_dual(&mut dual, u1, u2, w, h, taut);
            }
            iterations += inner;
        }
    }
    iterations
}

/// The linearised data term of the current warping.
struct Data<'a> {
    i1wx: &'a [f32],
    i1wy: &'a [f32],
    grad: &'a [f32],
    rho_c: &'a [f32],
}

/// The dual variables: p1 = (p11, p12) for u1, p2 = (p21, p22) for u2.
struct Dual {
    p11: Vec<f32>,
    p12: Vec<f32>,
    p21: Vec<f32>,
    p22: Vec<f32>,
}

/// Thresholding step (v from u), then u = v + θ div p; returns Σ |Δu|².
#[allow(clippy::too_many_arguments)]
fn update_flow(
    data: &Data<'_>,
    dual: &Dual,
    u1: &mut [f32],
    u2: &mut [f32],
    w: usize,
    l_t: f32,
    theta: f32,
    zeros: &[f32],
) -> f32 {
    let h = u1.len() / w;
    let rows = rows_per_task(w, h);
    u1.par_chunks_mut(w * rows)
        .zip(u2.par_chunks_mut(w * rows))
        .enumerate()
        .map(|(c, (u1c, u2c))| {
            let mut diff = vec![0.0f32; w];
            let mut error = 0.0f32;
            for (r, (u1r, u2r)) in u1c.chunks_exact_mut(w).zip(u2c.chunks_exact_mut(w)).enumerate() {
                let y = c * rows + r;
                let row = y * w..y * w + w;
                let up = if y == 0 { None } else { Some((y - 1) * w..y * w) };
                flow_row(
                    FlowRow {
                        u1: u1r,
                        u2: u2r,
                        diff: &mut diff,
                        ix: &data.i1wx[row.clone()],
                        iy: &data.i1wy[row.clone()],
                        grad: &data.grad[row.clone()],
                        rho_c: &data.rho_c[row.clone()],
                        p11: &dual.p11[row.clone()],
                        p12: &dual.p12[row.clone()],
                        p12_up: up.clone().map_or(zeros, |r| &dual.p12[r]),
                        p21: &dual.p21[row.clone()],
                        p22: &dual.p22[row],
                        p22_up: up.map_or(zeros, |r| &dual.p22[r]),
                    },
                    l_t,
                    theta,
                );
                error += sum(&diff);
            }
            error
        })
        .sum()
}

/// One row's slices for [`flow_row`], all of the same length.
struct FlowRow<'a> {
    u1: &'a mut [f32],
    u2: &'a mut [f32],
    diff: &'a mut [f32],
    ix: &'a [f32],
    iy: &'a [f32],
    grad: &'a [f32],
    rho_c: &'a [f32],
    p11: &'a [f32],
    p12: &'a [f32],
    p12_up: &'a [f32],
    p21: &'a [f32],
    p22: &'a [f32],
    p22_up: &'a [f32],
}

#[inline(always)]
fn flow_row(r: FlowRow<'_>, l_t: f32, theta: f32) {
    let w = r.u1.len();
    // Equal lengths let the compiler drop bounds checks and vectorise the loop.
    let (u1, u2, diff) = (&mut r.u1[..w], &mut r.u2[..w], &mut r.diff[..w]);
    let (ix, iy, grad, rho_c) = (&r.ix[..w], &r.iy[..w], &r.grad[..w], &r.rho_c[..w]);
    let (p11, p12, p12_up) = (&r.p11[..w], &r.p12[..w], &r.p12_up[..w]);
    let (p21, p22, p22_up) = (&r.p21[..w], &r.p22[..w], &r.p22_up[..w]);
    // x = 0 has no left neighbour; the loop over the rest then has no branch.
    let mut cell = |x: usize, left11: f32, left21: f32| {
        // The thresholding operator TH: v = u + clamp(−ρ/|∇I1|², ±λθ) ∇I1.
        let a = u1[x];
        let b = u2[x];
        let rho = rho_c[x] + ix[x] * a + iy[x] * b;
        let step = (-rho / grad[x].max(1e-10)).max(-l_t).min(l_t);
        let v1 = a + step * ix[x];
        let v2 = b + step * iy[x];
        // Backward-difference divergence, zero flux through the left and top borders.
        let div1 = p11[x] - left11 + p12[x] - p12_up[x];
        let div2 = p21[x] - left21 + p22[x] - p22_up[x];
        let n1 = v1 + theta * div1;
        let n2 = v2 + theta * div2;
        u1[x] = n1;
        u2[x] = n2;
        diff[x] = (n1 - a) * (n1 - a) + (n2 - b) * (n2 - b);
    };
    cell(0, 0.0, 0.0);
    for x in 1..w {
        cell(x, p11[x - 1], p21[x - 1]);
    }
}

/// p ← (p + τ/θ ∇u) / (1 + τ/θ |∇u|), with forward differences (zero past the borders).
fn update_dual(dual: &mut Dual, u1: &[f32], u2: &[f32], w: usize, h: usize, taut: f32) {
    let rows = rows_per_task(w, h);
    let chunk = w * rows;
    dual.p11
        .par_chunks_mut(chunk)
        .zip(dual.p12.par_chunks_mut(chunk))
        .zip(dual.p21.par_chunks_mut(chunk))
        .zip(dual.p22.par_chunks_mut(chunk))
        .enumerate()
        .for_each(|(c, (((p11c, p12c), p21c), p22c))| {
            let rows_iter = p11c
                .chunks_exact_mut(w)
                .zip(p12c.chunks_exact_mut(w))
                .zip(p21c.chunks_exact_mut(w))
                .zip(p22c.chunks_exact_mut(w));
            for (r, (((p11, p12), p21), p22)) in rows_iter.enumerate() {
                let y = c * rows + r;
                let row = y * w..y * w + w;
                // The last row has no row below: its vertical gradient is zero.
                let down = if y + 1 < h { (y + 1) * w..(y + 2) * w } else { row.clone() };
                dual_row(
                    [p11, p12, p21, p22],
                    &u1[row.clone()],
                    &u1[down.clone()],
                    &u2[row],
                    &u2[down],
                    taut,
                );
            }
        });
}

#[inline(always)]
fn dual_row(p: [&mut [f32]; 4], u1: &[f32], u1_down: &[f32], u2: &[f32], u2_down: &[f32], taut: f32) {
    let w = u1.len();
    let [p11, p12, p21, p22] = p;
    let (p11, p12, p21, p22) = (&mut p11[..w], &mut p12[..w], &mut p21[..w], &mut p22[..w]);
    let (u1, u1_down, u2, u2_down) = (&u1[..w], &u1_down[..w], &u2[..w], &u2_down[..w]);
    let mut cell = |x: usize, u1_right: f32, u2_right: f32| {
        let u1x = u1_right - u1[x];
        let u1y = u1_down[x] - u1[x];
        let u2x = u2_right - u2[x];
        let u2y = u2_down[x] - u2[x];
        let ng1 = 1.0 + taut * (u1x * u1x + u1y * u1y).sqrt();
        let ng2 = 1.0 + taut * (u2x * u2x + u2y * u2y).sqrt();
        p11[x] = (p11[x] + taut * u1x) / ng1;
        p12[x] = (p12[x] + taut * u1y) / ng1;
        p21[x] = (p21[x] + taut * u2x) / ng2;
        p22[x] = (p22[x] + taut * u2y) / ng2;
    };
    for x in 0..w - 1 {
        cell(x, u1[x + 1], u2[x + 1]);
    }
    // The last column has no right neighbour: its horizontal gradient is zero.
    cell(w - 1, u1[w - 1], u2[w - 1]);
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
