//! Dual TV-L1 for a batch of frame pairs, written with candle tensor ops so it runs on
//! any candle device (a CUDA GPU in serving, the CPU in tests).
//!
//! Same method, parameters and border rules as [`super::tvl1`]: Gaussian pyramid,
//! bicubic warping with replicated borders, the thresholding step and dual update,
//! median filtering between outer iterations, per-pair stopping on ε. The CPU solver's
//! single-sweep inner iteration updates every pixel's flow from the previous duals and
//! then every dual from the new flow; here that is two whole-image steps.
//!
//! Each pair stops on its own: a per-pair mask freezes a converged pair's flow and duals
//! without a host round trip; the host checks the mask once per outer iteration to
//! stop early when every pair has converged.

use candle_core::{D, DType, Device, Tensor};

use super::tvl1::pyramid_sizes;
use super::{Flow, FlowError, GrayImage, Tvl1Params};

type Result<T> = std::result::Result<T, FlowError>;

/// TV-L1 flows from `prev[i]` to `next[i]` for every pair, computed on `device`.
pub fn tvl1_batch(
    prev: &[GrayImage],
    next: &[GrayImage],
    params: &Tvl1Params,
    device: &Device,
) -> Result<Vec<Flow>> {
    params.validate()?;
    if prev.len() != next.len() {
        return Err(FlowError::InvalidParams(format!(
            "{} first frames but {} second frames",
            prev.len(),
            next.len()
        )));
    }
    let Some(first) = prev.first() else {
        return Ok(Vec::new());
    };
    let (w, h) = (first.width, first.height);
    if w == 0 || h == 0 {
        return Err(FlowError::Empty(w, h));
    }
    for img in prev.iter().chain(next) {
        if (img.width, img.height) != (w, h) {
            return Err(FlowError::SizeMismatch(w, h, img.width, img.height));
        }
        if img.data.len() != w * h {
            return Err(FlowError::BadLength {
                len: img.data.len(),
                width: w,
                height: h,
                channels: 1,
            });
        }
    }
    let stack = |imgs: &[GrayImage]| -> Result<Tensor> {
        let data: Vec<f32> = imgs.iter().flat_map(|i| i.data.iter().copied()).collect();
        Ok(Tensor::from_vec(data, (imgs.len(), h, w), device)?)
    };
    let (u, v) = tvl1_tensors(&stack(prev)?, &stack(next)?, params)?;
    let (u, v) = (to_rows(&u)?, to_rows(&v)?);
    Ok(u.into_iter()
        .zip(v)
        .map(|(u, v)| Flow {
            width: w,
            height: h,
            u,
            v,
        })
        .collect())
}

fn to_rows(t: &Tensor) -> Result<Vec<Vec<f32>>> {
    let b = t.dim(0)?;
    Ok(t.reshape((b, ()))?.to_device(&Device::Cpu)?.to_vec2()?)
}

/// Each `next` (B, H, W) mapped affinely to its `prev`'s mean and standard deviation,
/// as the CPU solver does (a flat frame is only shifted).
fn match_gain(prev: &Tensor, next: &Tensor) -> Result<Tensor> {
    let stats = |x: &Tensor| -> Result<(Tensor, Tensor)> {
        let flat = x.flatten_from(1)?;
        let mean = flat.mean_keepdim(1)?;
        let std = flat.broadcast_sub(&mean)?.sqr()?.mean_keepdim(1)?.sqrt()?;
        Ok((mean.unsqueeze(2)?, std.unsqueeze(2)?))
    };
    let (mp, sp) = stats(prev)?;
    let (mn, sn) = stats(next)?;
    let flat = sn.le(1e-3)?;
    let gain = flat.where_cond(&sn.ones_like()?, &(sp / sn.maximum(1e-3)?)?)?;
    Ok(next
        .broadcast_sub(&mn)?
        .broadcast_mul(&gain)?
        .broadcast_add(&mp)?)
}

/// TV-L1 flows for `prev` and `next`, each `(B, H, W)` intensities 0..255, on their
/// device; returns `(u, v)`, each `(B, H, W)` f32 on the same device.
pub fn tvl1_tensors(prev: &Tensor, next: &Tensor, params: &Tvl1Params) -> Result<(Tensor, Tensor)> {
    params.validate()?;
    let (b, h, w) = prev.dims3()?;
    if next.dims() != prev.dims() {
        let (_, nh, nw) = next.dims3()?;
        return Err(FlowError::SizeMismatch(w, h, nw, nh));
    }
    if b == 0 || w == 0 || h == 0 {
        return Err(FlowError::Empty(w, h));
    }
    let prev = prev.to_dtype(DType::F32)?;
    let next = next.to_dtype(DType::F32)?;
    let next = if params.gain_compensation {
        match_gain(&prev, &next)?
    } else {
        next
    };

    let sizes = pyramid_sizes(w, h, params);
    let mut i0s = vec![prev];
    let mut i1s = vec![next];
    for s in 1..sizes.len() {
        let ((pw, ph), (nw, nh)) = (sizes[s - 1], sizes[s]);
        let eta = nw as f32 / pw as f32;
        i0s.push(zoom_out(&i0s[s - 1], (pw, ph), (nw, nh), eta)?);
        i1s.push(zoom_out(&i1s[s - 1], (pw, ph), (nw, nh), eta)?);
    }
    let coarsest = sizes.len() - 1;
    let finest = params.finest_scale.min(coarsest);

    let (cw, ch) = sizes[coarsest];
    let device = i0s[0].device().clone();
    let mut u1 = Tensor::zeros((b, ch, cw), DType::F32, &device)?;
    let mut u2 = u1.clone();
    for s in (finest..=coarsest).rev() {
        let (lw, lh) = sizes[s];
        (u1, u2) = solve_level(&i0s[s], &i1s[s], u1, u2, params)?;
        tracing::debug!(
            level = s,
            width = lw,
            height = lh,
            "tv-l1 (tensor) level solved"
        );
        let (tw, th) = if s == finest { (w, h) } else { sizes[s - 1] };
        if (tw, th) != (lw, lh) {
            u1 = resize_bilinear(&u1, (lw, lh), (tw, th), tw as f32 / lw as f32)?;
            u2 = resize_bilinear(&u2, (lw, lh), (tw, th), th as f32 / lh as f32)?;
        }
    }
    Ok((u1, u2))
}

/// The dual variables of one level: p1 = (p11, p12) for u1, p2 = (p21, p22) for u2.
struct Dual {
    p11: Tensor,
    p12: Tensor,
    p21: Tensor,
    p22: Tensor,
}

/// The linearised data term at one warping: I1 warped's gradient, |∇I1|² and ρ's constant.
struct DataTerm {
    gx: Tensor,
    gy: Tensor,
    grad: Tensor,
    rho_c: Tensor,
}

/// Solves one level from the initial flow (u1, u2), every pair of the batch at once.
fn solve_level(
    i0: &Tensor,
    i1: &Tensor,
    mut u1: Tensor,
    mut u2: Tensor,
    params: &Tvl1Params,
) -> Result<(Tensor, Tensor)> {
    let (b, h, w) = i0.dims3()?;
    let device = i0.device();
    let (i1x, i1y) = centered_gradient(i1)?;
    // Frame and gradient side by side, so one gather per tap samples all three.
    let texels = Tensor::stack(&[i1, &i1x, &i1y], 1)?.reshape((b, 3, h * w))?;
    let zeros = Tensor::zeros((b, h, w), DType::F32, device)?;
    let mut dual = Dual {
        p11: zeros.clone(),
        p12: zeros.clone(),
        p21: zeros.clone(),
        p22: zeros,
    };
    let stop = f64::from(params.epsilon * params.epsilon) * (w * h) as f64;
    let l_t = f64::from(params.lambda * params.theta);
    let theta = f64::from(params.theta);
    let taut = f64::from(params.tau / params.theta);

    for _ in 0..params.warps {
        let data = warp(i0, &texels, &u1, &u2)?;
        // Pairs still iterating at this warping: 1, or 0 once their change fell below ε.
        let mut active = Tensor::ones((b, 1, 1), DType::F32, device)?;
        for _ in 0..params.outer_iterations {
            if params.median_filtering > 1 {
                u1 = blend(&u1, &median_filter(&u1, params.median_filtering)?, &active)?;
                u2 = blend(&u2, &median_filter(&u2, params.median_filtering)?, &active)?;
            }
            for _ in 0..params.inner_iterations {
                let (n1, n2) = flow_step(&u1, &u2, &data, &dual, l_t, theta)?;
                let d1 = n1.broadcast_sub(&u1)?.broadcast_mul(&active)?;
                let d2 = n2.broadcast_sub(&u2)?.broadcast_mul(&active)?;
                let change = (d1.sqr()? + d2.sqr()?)?.sum_keepdim((1, 2))?;
                u1 = (u1 + d1)?;
                u2 = (u2 + d2)?;
                dual = dual_step(&dual, &u1, &u2, taut, &active)?;
                active = active.mul(&change.gt(stop)?.to_dtype(DType::F32)?)?;
            }
            // One host round trip per outer iteration: stop once every pair converged.
            if active.sum_all()?.to_scalar::<f32>()? == 0.0 {
                break;
            }
        }
    }
    Ok((u1, u2))
}

/// `old + active · (new − old)`: the new value for pairs still iterating.
fn blend(old: &Tensor, new: &Tensor, active: &Tensor) -> Result<Tensor> {
    Ok((old + (new - old)?.broadcast_mul(active)?)?)
}

/// The thresholding step then u = v + θ div p, for every pixel; returns the new flow.
fn flow_step(
    u1: &Tensor,
    u2: &Tensor,
    d: &DataTerm,
    p: &Dual,
    l_t: f64,
    theta: f64,
) -> Result<(Tensor, Tensor)> {
    let rho = ((&d.rho_c + (&d.gx * u1)?)? + (&d.gy * u2)?)?;
    let step = (rho.neg()? / &d.grad)?.clamp(-l_t, l_t)?;
    let div1 = (backward_x(&p.p11)? + backward_y(&p.p12)?)?;
    let div2 = (backward_x(&p.p21)? + backward_y(&p.p22)?)?;
    let n1 = ((u1 + (&step * &d.gx)?)? + (div1 * theta)?)?;
    let n2 = ((u2 + (&step * &d.gy)?)? + (div2 * theta)?)?;
    Ok((n1, n2))
}

/// p ← (p + τ/θ ∇u) / (1 + τ/θ |∇u|) with forward differences, for pairs still iterating.
fn dual_step(p: &Dual, u1: &Tensor, u2: &Tensor, taut: f64, active: &Tensor) -> Result<Dual> {
    let (u1x, u1y) = (forward_x(u1)?, forward_y(u1)?);
    let (u2x, u2y) = (forward_x(u2)?, forward_y(u2)?);
    let ng1 = (((u1x.sqr()? + u1y.sqr()?)?.sqrt()? * taut)? + 1.0)?;
    let ng2 = (((u2x.sqr()? + u2y.sqr()?)?.sqrt()? * taut)? + 1.0)?;
    let update = |old: &Tensor, g: &Tensor, ng: &Tensor| -> Result<Tensor> {
        let new = ((old + (g * taut)?)? / ng)?;
        blend(old, &new, active)
    };
    Ok(Dual {
        p11: update(&p.p11, &u1x, &ng1)?,
        p12: update(&p.p12, &u1y, &ng1)?,
        p21: update(&p.p21, &u2x, &ng2)?,
        p22: update(&p.p22, &u2y, &ng2)?,
    })
}

/// `p[x] − p[x−1]`, with zero left of the image (the divergence's backward difference).
fn backward_x(p: &Tensor) -> Result<Tensor> {
    let w = p.dim(2)?;
    Ok((p - p.pad_with_zeros(2, 1, 0)?.narrow(2, 0, w)?)?)
}

/// `p[y] − p[y−1]`, with zero above the image.
fn backward_y(p: &Tensor) -> Result<Tensor> {
    let h = p.dim(1)?;
    Ok((p - p.pad_with_zeros(1, 1, 0)?.narrow(1, 0, h)?)?)
}

/// `u[x+1] − u[x]`, zero in the last column.
fn forward_x(u: &Tensor) -> Result<Tensor> {
    let w = u.dim(2)?;
    Ok((u.pad_with_same(2, 0, 1)?.narrow(2, 1, w)? - u)?)
}

/// `u[y+1] − u[y]`, zero in the last row.
fn forward_y(u: &Tensor) -> Result<Tensor> {
    let h = u.dim(1)?;
    Ok((u.pad_with_same(1, 0, 1)?.narrow(1, 1, h)? - u)?)
}

/// Central differences with replicated borders (half the one-sided difference at the edges).
fn centered_gradient(img: &Tensor) -> Result<(Tensor, Tensor)> {
    let (_, h, w) = img.dims3()?;
    let px = img.pad_with_same(2, 1, 1)?;
    let gx = ((px.narrow(2, 2, w)? - px.narrow(2, 0, w)?)? * 0.5)?;
    let py = img.pad_with_same(1, 1, 1)?;
    let gy = ((py.narrow(1, 2, h)? - py.narrow(1, 0, h)?)? * 0.5)?;
    Ok((gx, gy))
}

/// Keys' cubic convolution weights (a = −0.5) for the four taps around fraction `t`.
fn cubic_weights(t: &Tensor) -> Result<[Tensor; 4]> {
    let t2 = t.sqr()?;
    let t3 = (&t2 * t)?;
    Ok([
        (((&t3 * -0.5)? + &t2)? - (t * 0.5)?)?,
        (((&t3 * 1.5)? - (&t2 * 2.5)?)? + 1.0)?,
        (((&t3 * -1.5)? + (&t2 * 2.0)?)? + (t * 0.5)?)?,
        ((&t3 * 0.5)? - (&t2 * 0.5)?)?,
    ])
}

/// Samples `texels` (B, 3, H·W: I1, I1x, I1y) bicubically at (x + u1, y + u2), borders
/// replicated, and builds the data term `rho = rho_c + I1wx·u1 + I1wy·u2`.
fn warp(i0: &Tensor, texels: &Tensor, u1: &Tensor, u2: &Tensor) -> Result<DataTerm> {
    let (b, h, w) = u1.dims3()?;
    let device = u1.device();
    let xs = Tensor::arange(0u32, w as u32, device)?
        .to_dtype(DType::F32)?
        .reshape((1, 1, w))?;
    let ys = Tensor::arange(0u32, h as u32, device)?
        .to_dtype(DType::F32)?
        .reshape((1, h, 1))?;
    let px = u1.broadcast_add(&xs)?;
    let py = u2.broadcast_add(&ys)?;
    let (fx, fy) = (px.floor()?, py.floor()?);
    let wxs = cubic_weights(&(&px - &fx)?)?;
    let wys = cubic_weights(&(&py - &fy)?)?;
    // Clamped tap coordinates, as row offsets and columns of the flattened frame.
    let cols: Vec<Tensor> = (-1..=2)
        .map(|d| Ok((&fx + f64::from(d))?.clamp(0.0, (w - 1) as f64)?))
        .collect::<Result<_>>()?;
    let rows: Vec<Tensor> = (-1..=2)
        .map(|d| Ok(((&fy + f64::from(d))?.clamp(0.0, (h - 1) as f64)? * w as f64)?))
        .collect::<Result<_>>()?;
    let mut acc: Option<Tensor> = None;
    for (row, wy) in rows.iter().zip(&wys) {
        let mut line: Option<Tensor> = None;
        for (col, wx) in cols.iter().zip(&wxs) {
            let index = (row + col)?
                .to_dtype(DType::U32)?
                .reshape((b, 1, h * w))?
                .broadcast_as((b, 3, h * w))?
                .contiguous()?;
            let tap = texels
                .gather(&index, 2)?
                .broadcast_mul(&wx.reshape((b, 1, h * w))?)?;
            line = Some(match line {
                Some(l) => (l + tap)?,
                None => tap,
            });
        }
        let line = line
            .expect("four taps")
            .broadcast_mul(&wy.reshape((b, 1, h * w))?)?;
        acc = Some(match acc {
            Some(a) => (a + line)?,
            None => line,
        });
    }
    let sampled = acc.expect("four rows").reshape((b, 3, h, w))?;
    let i1w = sampled.narrow(1, 0, 1)?.squeeze(1)?;
    let gx = sampled.narrow(1, 1, 1)?.squeeze(1)?;
    let gy = sampled.narrow(1, 2, 1)?.squeeze(1)?;
    let rho_c = (((i1w - (&gx * u1)?)? - (&gy * u2)?)? - i0)?;
    let grad = (gx.sqr()? + gy.sqr()?)?.maximum(1e-10)?;
    Ok(DataTerm {
        gx,
        gy,
        grad,
        rho_c,
    })
}

/// Median of each `size` x `size` window (3 or 5), borders replicated.
fn median_filter(u: &Tensor, size: usize) -> Result<Tensor> {
    let (_, h, w) = u.dims3()?;
    let r = size / 2;
    let padded = u.pad_with_same(1, r, r)?.pad_with_same(2, r, r)?;
    let mut taps = Vec::with_capacity(size * size);
    for dy in 0..size {
        let rows = padded.narrow(1, dy, h)?;
        for dx in 0..size {
            taps.push(rows.narrow(2, dx, w)?);
        }
    }
    let window = Tensor::stack(&taps, 3)?.contiguous()?;
    let order = window.arg_sort_last_dim(true)?;
    let middle = order.narrow(D::Minus1, size * size / 2, 1)?.contiguous()?;
    Ok(window.gather(&middle, D::Minus1)?.squeeze(D::Minus1)?)
}

/// Bilinear resampling of (B, sh, sw) to (B, dh, dw), pixel centres aligned, borders
/// replicated, every value times `gain`.
fn resize_bilinear(
    src: &Tensor,
    (sw, sh): (usize, usize),
    (dw, dh): (usize, usize),
    gain: f32,
) -> Result<Tensor> {
    let device = src.device();
    // Source taps and weights per output position, shaped to broadcast along `dim`.
    let taps = |s: usize, d: usize, dim: usize| -> Result<(Tensor, Tensor, Tensor)> {
        let scale = s as f32 / d as f32;
        let (mut i0, mut i1, mut t) = (Vec::new(), Vec::new(), Vec::new());
        for x in 0..d {
            let f = ((x as f32 + 0.5) * scale - 0.5).clamp(0.0, (s - 1) as f32);
            let x0 = f.floor() as usize;
            i0.push(x0 as u32);
            i1.push((x0 + 1).min(s - 1) as u32);
            t.push(f - x0 as f32);
        }
        let mut shape = vec![1, 1, 1];
        shape[dim] = d;
        Ok((
            Tensor::new(i0, device)?,
            Tensor::new(i1, device)?,
            Tensor::from_vec(t, shape.as_slice(), device)?,
        ))
    };
    let (x0, x1, tx) = taps(sw, dw, 2)?;
    let left = src.index_select(&x0, 2)?;
    let right = src.index_select(&x1, 2)?;
    let across = (&left + (right - &left)?.broadcast_mul(&tx)?)?;
    let (y0, y1, ty) = taps(sh, dh, 1)?;
    let top = across.index_select(&y0, 1)?;
    let bottom = across.index_select(&y1, 1)?;
    Ok(((&top + (bottom - &top)?.broadcast_mul(&ty)?)? * f64::from(gain))?)
}

/// Separable Gaussian blur with replicated borders, as shifted weighted sums.
fn gaussian_blur(src: &Tensor, sigma: f32) -> Result<Tensor> {
    let radius = (3.0 * sigma).ceil().max(1.0) as usize;
    let kernel: Vec<f32> = (0..=2 * radius)
        .map(|i| {
            let d = i as f32 - radius as f32;
            (-d * d / (2.0 * sigma * sigma)).exp()
        })
        .collect();
    let total: f32 = kernel.iter().sum();
    let pass = |t: &Tensor, dim: usize| -> Result<Tensor> {
        let n = t.dim(dim)?;
        let padded = t.pad_with_same(dim, radius, radius)?;
        let mut out: Option<Tensor> = None;
        for (k, &kv) in kernel.iter().enumerate() {
            let term = (padded.narrow(dim, k, n)? * f64::from(kv / total))?;
            out = Some(match out {
                Some(o) => (o + term)?,
                None => term,
            });
        }
        Ok(out.expect("a kernel has taps"))
    };
    pass(&pass(src, 2)?, 1)
}

/// One pyramid level down: Gaussian anti-aliasing then bilinear sampling.
fn zoom_out(src: &Tensor, from: (usize, usize), to: (usize, usize), eta: f32) -> Result<Tensor> {
    let sigma = 0.6 * (1.0 / (eta * eta) - 1.0).max(0.0).sqrt();
    if sigma < 0.1 {
        return resize_bilinear(src, from, to, 1.0);
    }
    resize_bilinear(&gaussian_blur(src, sigma)?, from, to, 1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn helpers_match_the_cpu_solver_s_borders() {
        let img = Tensor::new(&[[[1f32, 2., 4.], [8., 16., 32.]]], &Device::Cpu).unwrap();
        let (gx, gy) = centered_gradient(&img).unwrap();
        assert_eq!(
            gx.to_vec3::<f32>().unwrap(),
            [[[0.5, 1.5, 1.0], [4.0, 12.0, 8.0]]]
        );
        assert_eq!(
            gy.to_vec3::<f32>().unwrap(),
            [[[3.5, 7.0, 14.0], [3.5, 7.0, 14.0]]]
        );
        assert_eq!(
            forward_x(&img).unwrap().to_vec3::<f32>().unwrap(),
            [[[1., 2., 0.], [8., 16., 0.]]]
        );
        assert_eq!(
            backward_y(&img).unwrap().to_vec3::<f32>().unwrap(),
            [[[1., 2., 4.], [7., 14., 28.]]]
        );
        let med = median_filter(&img, 3).unwrap().to_vec3::<f32>().unwrap();
        // Top-left window, replicated: 1 1 2 / 1 1 2 / 8 8 16 → median 2.
        assert_eq!(med[0][0][0], 2.0);
    }

    #[test]
    fn refuses_mismatched_batches() {
        let a = GrayImage::from_luma8(&[0; 16 * 16], 16, 16).unwrap();
        let b = GrayImage::from_luma8(&[0; 16 * 20], 16, 20).unwrap();
        let p = Tvl1Params::fast();
        assert!(matches!(
            tvl1_batch(std::slice::from_ref(&a), &[b], &p, &Device::Cpu),
            Err(FlowError::SizeMismatch(..))
        ));
        assert!(matches!(
            tvl1_batch(&[a.clone(), a.clone()], &[a], &p, &Device::Cpu),
            Err(FlowError::InvalidParams(_))
        ));
        assert!(tvl1_batch(&[], &[], &p, &Device::Cpu).unwrap().is_empty());
    }
}
