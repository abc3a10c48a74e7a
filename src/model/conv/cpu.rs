//! CPU convolution kernels on contiguous NCHW slices: im2col + GEMM (the `gemm` crate),
//! parallel over (image, group, pixel tile) with rayon.
//!
//! Every GEMM is laid out so its destination is column-major with unit row stride, the
//! orientation `gemm`'s micro-kernels prefer; im2col tiles stay small enough for L2.

use gemm::{Parallelism, gemm};
use rayon::prelude::*;

/// Floats per im2col tile in the forward and input-gradient passes (fits in L2 with room).
const TILE_FLOATS: usize = 48 * 1024;
/// Floats per im2col tile in the weight-gradient pass, whose GEMM depth is the tile width.
const WGRAD_TILE_FLOATS: usize = 192 * 1024;
/// Tile widths are multiples of this (a multiple of every f32/f64 micro-kernel height).
const TILE_ALIGN: usize = 48;

/// Element types the kernels run on.
pub trait Elem: Copy + Send + Sync + 'static + std::ops::AddAssign {
    /// Additive identity.
    const ZERO: Self;
    /// Multiplicative identity.
    const ONE: Self;
}

impl Elem for f32 {
    const ZERO: Self = 0.0;
    const ONE: Self = 1.0;
}

impl Elem for f64 {
    const ZERO: Self = 0.0;
    const ONE: Self = 1.0;
}

/// Full geometry of one convolution call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Geom {
    pub n: usize,
    pub c_in: usize,
    pub h: usize,
    pub w: usize,
    pub c_out: usize,
    pub kh: usize,
    pub kw: usize,
    pub sh: usize,
    pub sw: usize,
    pub ph: usize,
    pub pw: usize,
    pub groups: usize,
}

impl Geom {
    /// Output height.
    pub fn ho(&self) -> usize {
        (self.h + 2 * self.ph - self.kh) / self.sh + 1
    }

    /// Output width.
    pub fn wo(&self) -> usize {
        (self.w + 2 * self.pw - self.kw) / self.sw + 1
    }

    /// Input channels per group.
    fn cig(&self) -> usize {
        self.c_in / self.groups
    }

    /// Output channels per group.
    fn cog(&self) -> usize {
        self.c_out / self.groups
    }

    /// GEMM depth of the forward pass: one im2col row per (channel, ky, kx).
    fn k(&self) -> usize {
        self.cig() * self.kh * self.kw
    }

    /// Output pixels per channel.
    fn p(&self) -> usize {
        self.ho() * self.wo()
    }

    /// Input pixels per channel.
    fn hw(&self) -> usize {
        self.h * self.w
    }

    /// A 1x1, stride-1, unpadded convolution: the input already is its im2col matrix.
    fn pointwise(&self) -> bool {
        self.kh == 1 && self.kw == 1 && self.sh == 1 && self.sw == 1 && self.ph == 0 && self.pw == 0
    }

    /// Tile width for a tile of `floats` im2col elements.
    fn tile(&self, floats: usize) -> usize {
        let t = (floats / self.k()).max(TILE_ALIGN) / TILE_ALIGN * TILE_ALIGN;
        t.min(self.p())
    }

    /// Work items (image, group, first pixel) covering the output in tiles of `tile`.
    fn items(&self, tile: usize) -> Vec<(usize, usize, usize)> {
        let p = self.p();
        let mut items = Vec::new();
        for b in 0..self.n {
            for g in 0..self.groups {
                items.extend((0..p).step_by(tile).map(|p0| (b, g, p0)));
            }
        }
        items
    }
}

/// A raw pointer that rayon tasks may share; each task writes a disjoint region.
#[derive(Clone, Copy)]
struct SyncPtr<T>(*mut T);

// SAFETY: the kernels hand each task a disjoint part of the buffer behind the pointer.
unsafe impl<T> Send for SyncPtr<T> {}
// SAFETY: as above.
unsafe impl<T> Sync for SyncPtr<T> {}

impl<T> SyncPtr<T> {
    /// The pointer; a method so closures capture the wrapper, not the bare pointer.
    fn get(self) -> *mut T {
        self.0
    }
}

/// A run of output pixels on one output row: `ox` in `ox0..ox1`, at tile column `col`.
#[derive(Clone, Copy)]
struct Segment {
    oy: usize,
    ox0: usize,
    ox1: usize,
    col: usize,
}

/// Splits output pixels `p0..p0 + t` into row segments.
fn segments(g: &Geom, p0: usize, t: usize) -> Vec<Segment> {
    let wo = g.wo();
    let mut segs = Vec::new();
    let mut p = p0;
    while p < p0 + t {
        let (oy, ox0) = (p / wo, p % wo);
        let ox1 = wo.min(ox0 + p0 + t - p);
        segs.push(Segment {
            oy,
            ox0,
            ox1,
            col: p - p0,
        });
        p += ox1 - ox0;
    }
    segs
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

/// Visits every (im2col row, segment) pair of a tile with the input row it reads:
/// `f(row, seg, iy, ox_lo, ox_hi, kx)`, `iy` `None` where the row falls in the padding.
fn for_each_tap(
    g: &Geom,
    segs: &[Segment],
    mut f: impl FnMut(usize, &Segment, Option<usize>, usize, usize, usize),
) {
    let mut row = 0;
    for _c in 0..g.cig() {
        for ky in 0..g.kh {
            for kx in 0..g.kw {
                let (lo, hi) = valid_range(g.w, g.sw, kx, g.pw);
                for seg in segs {
                    let iy = (seg.oy * g.sh + ky)
                        .checked_sub(g.ph)
                        .filter(|&iy| iy < g.h);
                    let ox_lo = lo.clamp(seg.ox0, seg.ox1);
                    let ox_hi = hi.clamp(ox_lo, seg.ox1);
                    f(row, seg, iy, ox_lo, ox_hi, kx);
                }
                row += 1;
            }
        }
    }
}

/// Fills `col` (K x t, row-major) with the im2col tile of one image's group `x`.
fn im2col<T: Elem>(g: &Geom, x: &[T], segs: &[Segment], t: usize, col: &mut [T]) {
    let (hw, khw) = (g.hw(), g.kh * g.kw);
    for_each_tap(g, segs, |row, seg, iy, ox_lo, ox_hi, kx| {
        let dst = &mut col[row * t + seg.col..row * t + seg.col + seg.ox1 - seg.ox0];
        let Some(iy) = iy else {
            dst.fill(T::ZERO);
            return;
        };
        let plane = &x[(row / khw) * hw + iy * g.w..][..g.w];
        let (a, b) = (ox_lo - seg.ox0, ox_hi - seg.ox0);
        dst[..a].fill(T::ZERO);
        dst[b..].fill(T::ZERO);
        if a < b {
            let ix0 = ox_lo * g.sw + kx - g.pw;
            if g.sw == 1 {
                dst[a..b].copy_from_slice(&plane[ix0..ix0 + b - a]);
            } else {
                for (d, s) in dst[a..b].iter_mut().zip(plane[ix0..].iter().step_by(g.sw)) {
                    *d = *s;
                }
            }
        }
    });
}

/// Adds the im2col-shaped tile `col` back into one image's group gradient `dx`.
fn col2im<T: Elem>(g: &Geom, col: &[T], segs: &[Segment], t: usize, dx: &mut [T]) {
    let (hw, khw) = (g.hw(), g.kh * g.kw);
    for_each_tap(g, segs, |row, seg, iy, ox_lo, ox_hi, kx| {
        let Some(iy) = iy else { return };
        if ox_lo >= ox_hi {
            return;
        }
        let src = &col[row * t + seg.col + ox_lo - seg.ox0..][..ox_hi - ox_lo];
        let plane = &mut dx[(row / khw) * hw + iy * g.w..][..g.w];
        let ix0 = ox_lo * g.sw + kx - g.pw;
        for (d, s) in plane[ix0..].iter_mut().step_by(g.sw).zip(src) {
            *d += *s;
        }
    });
}

/// `dst (m x n) = [dst +] lhs (m x k) * rhs (k x n)`, strides as (column, row).
#[allow(clippy::too_many_arguments)]
unsafe fn mm<T: Elem>(
    (m, n, k): (usize, usize, usize),
    dst: *mut T,
    (dst_cs, dst_rs): (usize, usize),
    accumulate: bool,
    lhs: *const T,
    (lhs_cs, lhs_rs): (usize, usize),
    rhs: *const T,
    (rhs_cs, rhs_rs): (usize, usize),
    parallelism: Parallelism,
) {
    // SAFETY: the caller guarantees every index the strides reach is in bounds.
    unsafe {
        gemm(
            m,
            n,
            k,
            dst,
            dst_cs as isize,
            dst_rs as isize,
            accumulate,
            lhs,
            lhs_cs as isize,
            lhs_rs as isize,
            rhs,
            rhs_cs as isize,
            rhs_rs as isize,
            T::ONE,
            T::ONE,
            false,
            false,
            false,
            parallelism,
        )
    }
}

/// Forward convolution: `x (N, C_in, H, W)`, `w (C_out, C_in / G, kh, kw)` → `(N, C_out, Ho, Wo)`.
pub fn forward<T: Elem>(g: &Geom, x: &[T], w: &[T]) -> Vec<T> {
    let (p, k, hw, cig, cog) = (g.p(), g.k(), g.hw(), g.cig(), g.cog());
    let mut y = vec![T::ZERO; g.n * g.c_out * p];
    let tile = g.tile(TILE_FLOATS);
    let yp = SyncPtr(y.as_mut_ptr());
    g.items(tile)
        .into_par_iter()
        .for_each_init(Vec::new, |col: &mut Vec<T>, (b, gi, p0)| {
            let t = tile.min(p - p0);
            let xg = &x[(b * g.c_in + gi * cig) * hw..][..cig * hw];
            let (lhs, lhs_cs) = if g.pointwise() {
                (xg[p0..].as_ptr(), hw)
            } else {
                col.resize(k * t, T::ZERO);
                im2col(g, xg, &segments(g, p0, t), t, col);
                (col.as_ptr(), t)
            };
            // SAFETY: the destination block (cog rows of p, columns p0..p0 + t) belongs to
            // this item alone; lhs and rhs strides stay inside xg/col and w.
            unsafe {
                mm(
                    (t, cog, k),
                    yp.get().add((b * g.c_out + gi * cog) * p + p0),
                    (p, 1),
                    false,
                    lhs,
                    (lhs_cs, 1),
                    w[gi * cog * k..].as_ptr(),
                    (k, 1),
                    Parallelism::None,
                )
            }
        });
    y
}

/// Input gradient: `dy (N, C_out, Ho, Wo)`, `w` → `dx (N, C_in, H, W)`, as `W^T dy` then col2im.
pub fn backward_input<T: Elem>(g: &Geom, dy: &[T], w: &[T]) -> Vec<T> {
    let (p, k, hw, cig, cog) = (g.p(), g.k(), g.hw(), g.cig(), g.cog());
    let mut dx = vec![T::ZERO; g.n * g.c_in * hw];
    let tile = g.tile(TILE_FLOATS);
    let threads = rayon::current_num_threads();
    // Tiles of one image overlap in dx, so parallelism is over (image, group), or inside
    // the GEMM when there are too few of those.
    let outer = g.n * g.groups >= threads;
    let inner = if outer {
        Parallelism::None
    } else {
        Parallelism::Rayon(threads)
    };
    let run = |col: &mut Vec<T>, (b, gi): (usize, usize), dxg: &mut [T]| {
        let dyg = &dy[(b * g.c_out + gi * cog) * p..][..cog * p];
        let wg = &w[gi * cog * k..][..cog * k];
        if g.pointwise() {
            // SAFETY: dxg is cig x hw and dyg cog x p with p == hw; wg is cog x k, k == cig.
            unsafe {
                mm(
                    (p, cig, cog),
                    dxg.as_mut_ptr(),
                    (hw, 1),
                    false,
                    dyg.as_ptr(),
                    (p, 1),
                    wg.as_ptr(),
                    (1, k),
                    inner,
                )
            };
            return;
        }
        for p0 in (0..p).step_by(tile) {
            let t = tile.min(p - p0);
            col.resize(k * t, T::ZERO);
            // SAFETY: col is k x t; dyg columns p0..p0 + t of cog rows; wg is cog x k.
            unsafe {
                mm(
                    (t, k, cog),
                    col.as_mut_ptr(),
                    (t, 1),
                    false,
                    dyg[p0..].as_ptr(),
                    (p, 1),
                    wg.as_ptr(),
                    (1, k),
                    inner,
                )
            };
            col2im(g, col, &segments(g, p0, t), t, dxg);
        }
    };
    if outer {
        dx.par_chunks_mut(cig * hw)
            .enumerate()
            .for_each_init(Vec::new, |col, (i, dxg)| {
                run(col, (i / g.groups, i % g.groups), dxg)
            });
    } else {
        let mut col = Vec::new();
        for (i, dxg) in dx.chunks_mut(cig * hw).enumerate() {
            run(&mut col, (i / g.groups, i % g.groups), dxg);
        }
    }
    dx
}

/// Weight gradient: `x`, `dy` → `dw (C_out, C_in / G, kh, kw)`, as the sum over images of
/// `dy col^T`; each thread sums its share of tiles, then the partial sums are added.
pub fn backward_weight<T: Elem>(g: &Geom, x: &[T], dy: &[T]) -> Vec<T> {
    let (p, k, hw, cig, cog) = (g.p(), g.k(), g.hw(), g.cig(), g.cog());
    let tile = if g.pointwise() {
        p
    } else {
        g.tile(WGRAD_TILE_FLOATS)
    };
    let items = g.items(tile);
    let parts = rayon::current_num_threads().min(items.len()).max(1);
    let per_part = items.len().div_ceil(parts);
    let partials: Vec<Vec<T>> = items
        .par_chunks(per_part)
        .map(|chunk| {
            let mut dw = vec![T::ZERO; g.c_out * k];
            let mut col = Vec::new();
            for &(b, gi, p0) in chunk {
                let t = tile.min(p - p0);
                let xg = &x[(b * g.c_in + gi * cig) * hw..][..cig * hw];
                let (lhs, lhs_rs) = if g.pointwise() {
                    (xg[p0..].as_ptr(), hw)
                } else {
                    col.resize(k * t, T::ZERO);
                    im2col(g, xg, &segments(g, p0, t), t, &mut col);
                    (col.as_ptr(), t)
                };
                // SAFETY: dw block is cog x k of this group; lhs is k x t (row stride
                // lhs_rs); dy rows of this image and group, columns p0..p0 + t.
                unsafe {
                    mm(
                        (k, cog, t),
                        dw[gi * cog * k..].as_mut_ptr(),
                        (k, 1),
                        true,
                        lhs,
                        (1, lhs_rs),
                        dy[(b * g.c_out + gi * cog) * p + p0..].as_ptr(),
                        (p, 1),
                        Parallelism::None,
                    )
                };
            }
            dw
        })
        .collect();
    let mut parts = partials.into_iter();
    let mut dw = parts.next().unwrap_or_else(|| vec![T::ZERO; g.c_out * k]);
    for part in parts {
        for (a, b) in dw.iter_mut().zip(part) {
            *a += b;
        }
    }
    dw
}
