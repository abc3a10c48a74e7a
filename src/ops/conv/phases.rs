//! Space-to-depth ("phase") form of a strided convolution: stride (sh, sw) over x equals
//! stride 1 over the sh * sw phase-subsampled copies of the padded input stacked as
//! channels, with a kernel of ceil(kh / sh) x ceil(kw / sw) (zero where a phase has no
//! tap). Strided convolutions then run as implicit GEMMs, no im2col: one GEMM per real
//! tap on each image's phase form, or a stride-1 convolution with that zero-padded
//! kernel; where im2col is used, it copies contiguous runs of this form.

use rayon::prelude::*;

use super::geom::{Geom, IMPLICIT_MIN_CHANNELS};
use crate::ops::kernel::{Elem, output_vec};

/// At most this many percent more multiply-adds than the strided kernel (zero taps).
const MAX_OVERHEAD_PERCENT: usize = 35;
/// With `THIN_CHANNELS` to `FEW_CHANNELS` phase channels, im2col's GEMM is thin and the
/// phase form pays up to this overhead: a 3x3/2 kernel (78 %) on 8 channels (32 phase
/// channels) at (128, 8, 64, 64) → 8 ran forward 5.0 → 4.2 ms, weight gradient 8.4 → 4.4
/// ms; on 16 channels or more it lost (r50's (8, 128, 56, 56) → 128: 11.7 → 14.9 ms), on
/// RGB (12 phase channels) it gained nothing.
const FEW_MAX_OVERHEAD_PERCENT: usize = 80;
/// See `FEW_MAX_OVERHEAD_PERCENT`.
const FEW_CHANNELS: usize = 64;
/// Fewer phase channels than this feeding `THIN_MIN_OUTPUTS` or more outputs: im2col.
const THIN_CHANNELS: usize = 16;
/// See `THIN_CHANNELS`.
const THIN_MIN_OUTPUTS: usize = 64;

/// The stride-1 geometry of `g`'s phase form, where it pays for an implicit GEMM.
pub fn geometry(g: &Geom) -> Option<Geom> {
    let gs = form(g);
    let phases = g.sh * g.sw;
    let channels = gs.c_in / gs.groups;
    let overhead = if (THIN_CHANNELS..FEW_CHANNELS).contains(&channels) {
        FEW_MAX_OVERHEAD_PERCENT
    } else {
        MAX_OVERHEAD_PERCENT
    };
    let cheap = 100 * phases * gs.kh * gs.kw <= (100 + overhead) * g.kh * g.kw;
    // Few phase channels into many outputs (the RGB 7x7/2 stem into 64): im2col's one
    // deep GEMM wins; into 16 outputs the phase form's gradients do (fwd+bwd 15.8 vs
    // 19.0 ms at (32, 3, 112, 112)). The forward decides for itself: `forward_geometry`.
    let thin = channels < THIN_CHANNELS && g.c_out / g.groups >= THIN_MIN_OUTPUTS;
    let wide = channels >= IMPLICIT_MIN_CHANNELS && !thin;
    (phases > 1 && cheap && wide).then_some(gs)
}

/// The phase form for the forward pass: as [`geometry`], but few phase channels always
/// go through im2col, one deep GEMM on contiguous copies (RGB stem into 16: 4.2 vs 4.7 ms).
pub fn forward_geometry(g: &Geom) -> Option<Geom> {
    geometry(g).filter(|gs| gs.c_in / gs.groups >= THIN_CHANNELS)
}

/// The stride-1 geometry of `g`'s phase form. With stride 1 it is the zero-padded input,
/// so every im2col row is a run of contiguous copies (see `cpu::im2col`).
pub fn form(g: &Geom) -> Geom {
    let (ku, kv) = (g.kh.div_ceil(g.sh), g.kw.div_ceil(g.sw));
    Geom {
        n: g.n,
        c_in: g.c_in * g.sh * g.sw,
        h: g.ho() + ku - 1,
        w: g.wo() + kv - 1,
        c_out: g.c_out,
        kh: ku,
        kw: kv,
        sh: 1,
        sw: 1,
        ph: 0,
        pw: 0,
        groups: g.groups,
    }
}

/// Visits the rows of phase-form channel `c` of `gs`:
/// `f(original channel, phase-plane row, input row, columns)`, where phase-plane
/// column `j` in `columns` reads input column `sw * j + first`, `first` being the third
/// element of `columns`.
fn for_each_row(g: &Geom, gs: &Geom, c: usize, mut f: impl FnMut(usize, usize, usize, Columns)) {
    let cig = g.c_in / g.groups;
    let phases = g.sh * g.sw;
    let (gi, r) = (c / (phases * cig), c % (phases * cig));
    let (phase, ci) = (r / cig, r % cig);
    let (a, b) = (phase / g.sw, phase % g.sw);
    // No tap reads this phase (a 1x1 kernel with stride 2): it stays zero.
    if a >= g.kh || b >= g.kw {
        return;
    }
    let (lo, hi) = valid_range(g.w, g.sw, b, g.pw);
    let hi = hi.min(gs.w);
    if lo >= hi {
        return;
    }
    let cols = Columns {
        lo,
        hi,
        first: g.sw * lo + b - g.pw,
    };
    for i in 0..gs.h {
        if let Some(iy) = (g.sh * i + a).checked_sub(g.ph).filter(|&v| v < g.h) {
            f(gi * cig + ci, i, iy, cols);
        }
    }
}

/// Output columns `lo..hi` whose input column `ox * s + kx - pad` lies inside `0..size`.
fn valid_range(size: usize, s: usize, kx: usize, pad: usize) -> (usize, usize) {
    let lo = if pad > kx { (pad - kx).div_ceil(s) } else { 0 };
    let hi = if size + pad > kx {
        (size - 1 + pad - kx) / s + 1
    } else {
        0
    };
    (lo, hi)
}

/// Phase-plane columns `lo..hi` of a row, reading input columns `first`, `first + sw`, ...
#[derive(Clone, Copy)]
struct Columns {
    lo: usize,
    hi: usize,
    first: usize,
}

/// `x (N, C, H, W)` → phase form `(N, G * sh * sw * C / G, Hs, Ws)`, channels per group
/// ordered (phase, channel).
pub fn input<T: Elem>(g: &Geom, gs: &Geom, x: &[T]) -> Vec<T> {
    let plane = gs.h * gs.w;
    let mut out = output_vec(gs.n * gs.c_in * plane);
    out.par_chunks_mut(plane)
        .enumerate()
        .for_each(|(idx, dst)| input_plane(g, gs, x, idx, dst));
    out
}

/// The phase form of image group `i` alone (image `i / G`, group `i % G`), into `dst`:
/// what [`input`] holds at that group's place.
pub fn group_input<T: Elem>(g: &Geom, gs: &Geom, x: &[T], i: usize, dst: &mut Vec<T>) {
    let (plane, per_group) = (gs.h * gs.w, gs.c_in / gs.groups);
    dst.resize(per_group * plane, T::ZERO);
    for (c, d) in dst.chunks_mut(plane).enumerate() {
        input_plane(g, gs, x, i * per_group + c, d);
    }
}

/// Plane `idx` (image `idx / Cs`, phase-form channel `idx % Cs`) of the phase form.
fn input_plane<T: Elem>(g: &Geom, gs: &Geom, x: &[T], idx: usize, dst: &mut [T]) {
    let hw = g.h * g.w;
    let (b, c) = (idx / gs.c_in, idx % gs.c_in);
    // Zeroed here, in parallel and just before the rows land, rather than in one serial
    // pass over the whole form (36 MB on the flow stem).
    dst.fill(T::ZERO);
    for_each_row(g, gs, c, |ch, i, iy, cols| {
        let src = &x[(b * g.c_in + ch) * hw + iy * g.w..][..g.w];
        let row = &mut dst[i * gs.w + cols.lo..i * gs.w + cols.hi];
        gather(row, &src[cols.first..], g.sw);
    });
}

/// `dst[j] = src[step * j]`.
fn gather<T: Elem>(dst: &mut [T], src: &[T], step: usize) {
    /// Whole runs of `S` (a constant, so the loop vectorises as a shuffle), then the
    /// last element, whose run may be cut short by the end of the row.
    fn runs<T: Elem, const S: usize>(dst: &mut [T], src: &[T]) {
        let Some((last, body)) = dst.split_last_mut() else {
            return;
        };
        for (d, run) in body.iter_mut().zip(src.chunks_exact(S)) {
            *d = run[0];
        }
        *last = src[S * body.len()];
    }
    match step {
        1 => dst.copy_from_slice(&src[..dst.len()]),
        2 => runs::<T, 2>(dst, src),
        _ => {
            for (d, s) in dst.iter_mut().zip(src.iter().step_by(step)) {
                *d = *s;
            }
        }
    }
}

/// Adjoint of [`input`]: the phase-form gradient back onto `(N, C, H, W)`. Every input
/// pixel sits in one phase plane at most, so this is a gather; pixels no output reads
/// get zero.
pub fn input_grad<T: Elem>(g: &Geom, gs: &Geom, dxs: &[T]) -> Vec<T> {
    let per_group = gs.c_in / gs.groups * gs.h * gs.w;
    let mut dx = output_vec(g.n * g.c_in * g.h * g.w);
    dx.par_chunks_mut(g.c_in / g.groups * g.h * g.w)
        .enumerate()
        .for_each(|(i, dst)| group_input_grad(g, gs, &dxs[i * per_group..][..per_group], i, dst));
    dx
}

/// [`input_grad`] of image group `i` alone: its phase-form gradient `dxs` onto its
/// `(C / G, H, W)` slice `dst` of the input gradient.
pub fn group_input_grad<T: Elem>(g: &Geom, gs: &Geom, dxs: &[T], i: usize, dst: &mut [T]) {
    let (hw, plane, cig) = (g.h * g.w, gs.h * gs.w, g.c_in / g.groups);
    let per_group = gs.c_in / gs.groups;
    let first = (i % g.groups) * cig;
    dst.fill(T::ZERO);
    for (c, src) in dxs.chunks(plane).enumerate() {
        for_each_row(g, gs, (i % g.groups) * per_group + c, |ch, r, iy, cols| {
            let row = &src[r * gs.w + cols.lo..r * gs.w + cols.hi];
            let out = &mut dst[(ch - first) * hw + iy * g.w..][..g.w];
            scatter(&mut out[cols.first..], row, g.sw);
        });
    }
}

/// `dst[step * j] = src[j]`, the adjoint of [`gather`].
fn scatter<T: Elem>(dst: &mut [T], src: &[T], step: usize) {
    /// As in `gather`: whole runs of a constant `S`, then the last element.
    fn runs<T: Elem, const S: usize>(dst: &mut [T], src: &[T]) {
        let Some((last, body)) = src.split_last() else {
            return;
        };
        for (run, s) in dst.chunks_exact_mut(S).zip(body) {
            run[0] = *s;
        }
        dst[S * body.len()] = *last;
    }
    match step {
        1 => dst[..src.len()].copy_from_slice(src),
        2 => runs::<T, 2>(dst, src),
        _ => {
            for (d, s) in dst.iter_mut().step_by(step).zip(src) {
                *d = *s;
            }
        }
    }
}

/// Weight index pairs (original, phase form) of every real tap: `f(w_idx, ws_idx)`.
fn for_each_tap(g: &Geom, gs: &Geom, mut f: impl FnMut(usize, usize)) {
    let cig = g.c_in / g.groups;
    let (cis, ku, kv) = (gs.c_in / gs.groups, gs.kh, gs.kw);
    for co in 0..g.c_out {
        for ci in 0..cig {
            for ky in 0..g.kh {
                for kx in 0..g.kw {
                    let phase = (ky % g.sh) * g.sw + kx % g.sw;
                    let (u, v) = (ky / g.sh, kx / g.sw);
                    let w_idx = ((co * cig + ci) * g.kh + ky) * g.kw + kx;
                    let s_idx = ((co * cis + phase * cig + ci) * ku + u) * kv + v;
                    f(w_idx, s_idx);
                }
            }
        }
    }
}

/// `w (C_out, C / G, kh, kw)` → phase-form kernel `(C_out, sh * sw * C / G, ku, kv)`.
pub fn weight<T: Elem>(g: &Geom, gs: &Geom, w: &[T]) -> Vec<T> {
    let mut ws = vec![T::ZERO; gs.c_out * gs.c_in / gs.groups * gs.kh * gs.kw];
    for_each_tap(g, gs, |wi, si| ws[si] = w[wi]);
    ws
}

/// Phase-form kernel gradient → gradient of the original kernel (zero taps dropped).
pub fn weight_grad<T: Elem>(g: &Geom, gs: &Geom, dws: &[T]) -> Vec<T> {
    let mut dw = vec![T::ZERO; g.c_out * g.c_in / g.groups * g.kh * g.kw];
    for_each_tap(g, gs, |wi, si| dw[wi] = dws[si]);
    dw
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Both copies equal the plain strided loops, for the specialised and general steps.
    #[test]
    fn gather_and_scatter_are_strided_copies() {
        for step in 1..=3 {
            for n in 0..9 {
                let len = if n == 0 { 0 } else { step * (n - 1) + 1 };
                let src: Vec<f32> = (0..len + step).map(|i| i as f32 + 0.5).collect();
                let mut got = vec![0f32; n];
                gather(&mut got, &src[..len], step);
                let want: Vec<f32> = (0..n).map(|j| src[step * j]).collect();
                assert_eq!(got, want, "gather step {step} n {n}");

                let mut dst = vec![-1f32; len];
                scatter(&mut dst, &want, step);
                let mut expect = vec![-1f32; len];
                for (j, v) in want.iter().enumerate() {
                    expect[step * j] = *v;
                }
                assert_eq!(dst, expect, "scatter step {step} n {n}");
            }
        }
    }
}
