//! CPU convolution kernels on contiguous NCHW slices, all GEMMs on the `gemm` crate,
//! parallel over images (and groups, pixel tiles) with rayon:
//! - stride 1: implicit GEMM, one accumulating GEMM per kernel tap; "same" convolutions
//!   read the input and write the output in place, others go through a padded copy;
//! - strided, on up to a few dozen channels: the same on each image's phase form
//!   (`phases`), one GEMM per real tap;
//! - large strided kernels on more channels: a stride-1 implicit GEMM on the phase form
//!   with the kernel zero-padded to whole phases;
//! - 1x1 stride 1: one GEMM on the input as it is;
//! - anything else: im2col tiles sized for L2, then GEMM (col2im for the input gradient),
//!   each tile row a few contiguous copies from the padded, stride-split input (`phases`).
//!
//! The input gradient of a stride-1 convolution is a forward convolution of `dy` with the
//! flipped, transposed kernel. Every GEMM is laid out so its destination is column-major
//! with unit row stride, the orientation `gemm`'s micro-kernels prefer.

use gemm::{Parallelism, gemm};
use rayon::prelude::*;

use super::geom::{Geom, IMPLICIT_MIN_CHANNELS, TILE_ALIGN};
use super::phases;
use crate::ops::kernel::{Elem, output_vec};

/// Floats per im2col tile in the forward and input-gradient passes (fits in L2 with room).
const TILE_FLOATS: usize = 48 * 1024;
/// Floats per im2col tile in the weight-gradient pass, whose GEMM depth is the tile width.
const WGRAD_TILE_FLOATS: usize = 192 * 1024;
/// Floats of input plus output rows per implicit-GEMM tile.
const IMPLICIT_TILE_FLOATS: usize = 256 * 1024;

/// What happens to each output channel as it is written: a bias added, then an optional
/// ReLU (inference with BatchNorm folded in), while the outputs are still in cache.
#[derive(Clone, Copy)]
pub struct Epilogue<'a, T> {
    /// One value per output channel.
    pub bias: Option<&'a [T]>,
    /// Clamp negative outputs to zero.
    pub relu: bool,
}

impl<'a, T: Elem> Epilogue<'a, T> {
    /// Leaves outputs as they are.
    pub const NONE: Self = Self {
        bias: None,
        relu: false,
    };

    /// Applies the epilogue to outputs `out` of output channel `channel`.
    fn apply(&self, channel: usize, out: &mut [T]) {
        if let Some(bias) = self.bias {
            let b = bias[channel];
            out.iter_mut().for_each(|v| *v += b);
        }
        if self.relu {
            out.iter_mut().for_each(|v| {
                if *v < T::ZERO {
                    *v = T::ZERO
                }
            });
        }
    }

    fn is_none(&self) -> bool {
        self.bias.is_none() && !self.relu
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

/// How a kernel that works image group by image group uses the threads: whole rounds of
/// groups across the threads, one group per thread, and a short last round (at most half
/// the threads busy) one group at a time with the threads inside each GEMM. Five images
/// on two threads are then two rounds and one image on both threads, not three rounds.
struct GroupWork {
    threads: usize,
    /// Image groups `0..outer` run one per thread, the rest inside the GEMMs.
    outer: usize,
}

impl GroupWork {
    fn new(g: &Geom) -> Self {
        let threads = rayon::current_num_threads();
        let items = g.n * g.groups;
        let rest = items % threads;
        let outer = if 2 * rest <= threads {
            items - rest
        } else {
            items
        };
        Self { threads, outer }
    }

    /// Runs `run(buffers, i, chunk, parallelism)` on each `len`-element chunk of `out`
    /// (image group `i`), with per-thread buffers made by `init`.
    fn for_each<T: Send, B>(
        &self,
        out: &mut [T],
        len: usize,
        init: impl Fn() -> B + Sync + Send,
        run: impl Fn(&mut B, usize, &mut [T], Parallelism) + Sync + Send,
    ) {
        let (rounds, rest) = out.split_at_mut(self.outer * len);
        rounds
            .par_chunks_mut(len)
            .enumerate()
            .for_each_init(&init, |bufs, (i, chunk)| {
                run(bufs, i, chunk, Parallelism::None)
            });
        let mut bufs = init();
        for (j, chunk) in rest.chunks_mut(len).enumerate() {
            run(
                &mut bufs,
                self.outer + j,
                chunk,
                Parallelism::Rayon(self.threads),
            );
        }
    }
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

/// Visits every (im2col row, segment) pair of a tile with the run of one image group's
/// phase form (`gs`, see [`phases::form`]) that it holds: `f(row, seg, at)`, where tile
/// row `row`, columns `seg.col..` are phase-form elements `at..at + seg.ox1 - seg.ox0`.
/// Padding and stride are baked into the phase form, so every run is contiguous.
fn for_each_run(g: &Geom, gs: &Geom, segs: &[Segment], mut f: impl FnMut(usize, &Segment, usize)) {
    let (cig, plane) = (g.cig(), gs.h * gs.w);
    let mut row = 0;
    for ci in 0..cig {
        for ky in 0..g.kh {
            for kx in 0..g.kw {
                let phase = (ky % g.sh) * g.sw + kx % g.sw;
                let tap = (phase * cig + ci) * plane + (ky / g.sh) * gs.w + kx / g.sw;
                for seg in segs {
                    f(row, seg, tap + seg.oy * gs.w + seg.ox0);
                }
                row += 1;
            }
        }
    }
}

/// Fills `col` (K x t, row-major) with the im2col tile of one image group's phase form.
fn im2col<T: Elem>(g: &Geom, gs: &Geom, xs: &[T], segs: &[Segment], t: usize, col: &mut [T]) {
    for_each_run(g, gs, segs, |row, seg, at| {
        let len = seg.ox1 - seg.ox0;
        col[row * t + seg.col..][..len].copy_from_slice(&xs[at..][..len]);
    });
}

/// Adds the im2col-shaped tile `col` back into one image group's phase-form gradient.
fn col2im<T: Elem>(g: &Geom, gs: &Geom, col: &[T], segs: &[Segment], t: usize, dxs: &mut [T]) {
    for_each_run(g, gs, segs, |row, seg, at| {
        let len = seg.ox1 - seg.ox0;
        let src = &col[row * t + seg.col..][..len];
        for (d, s) in dxs[at..][..len].iter_mut().zip(src) {
            *d += *s;
        }
    });
}

/// `dst (m x n) = [dst +] lhs (m x k) * rhs (k x n)`, strides as (column, row).
#[allow(clippy::too_many_arguments)]
unsafe fn mm<T: Elem>(
    dims: (usize, usize, usize),
    dst: *mut T,
    dst_strides: (usize, usize),
    accumulate: bool,
    lhs: *const T,
    lhs_strides: (usize, usize),
    rhs: *const T,
    rhs_strides: (usize, usize),
    parallelism: Parallelism,
) {
    // SAFETY: passed on from the caller.
    unsafe {
        mm_scaled(
            dims,
            dst,
            dst_strides,
            accumulate,
            (lhs, lhs_strides),
            (rhs, rhs_strides),
            T::ONE,
            parallelism,
        )
    }
}

/// `dst (m x n) = [dst +] scale * lhs (m x k) * rhs (k x n)`, strides as (column, row).
#[allow(clippy::too_many_arguments)]
unsafe fn mm_scaled<T: Elem>(
    (m, n, k): (usize, usize, usize),
    dst: *mut T,
    (dst_cs, dst_rs): (usize, usize),
    accumulate: bool,
    (lhs, (lhs_cs, lhs_rs)): (*const T, (usize, usize)),
    (rhs, (rhs_cs, rhs_rs)): (*const T, (usize, usize)),
    scale: T,
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
            scale,
            false,
            false,
            false,
            parallelism,
        )
    }
}

/// Forward convolution: `x (N, C_in, H, W)`, `w (C_out, C_in / G, kh, kw)` → `(N, C_out, Ho, Wo)`,
/// with `epi` applied to the outputs.
pub fn forward<T: Elem>(g: &Geom, x: &[T], w: &[T], epi: Epilogue<T>) -> Vec<T> {
    if g.implicit() || g.phased() {
        forward_implicit(g, x, w, epi)
    } else if let Some(gs) = phases::forward_geometry(g) {
        let (xs, ws) = (phases::input(g, &gs, x), phases::weight(g, &gs, w));
        forward_implicit(&gs, &xs, &ws, epi)
    } else {
        forward_im2col(g, x, w, epi)
    }
}

/// Forward as one accumulating GEMM per kernel tap ("implicit GEMM", no im2col): on the
/// source's row pitch (see [`Taps`]), tap (ky, kx) is the source shifted by a fixed offset.
/// Outputs land on that pitch: in place they are the output, else the valid columns are
/// copied out.
fn forward_implicit<T: Elem>(g: &Geom, x: &[T], w: &[T], epi: Epilogue<T>) -> Vec<T> {
    let (p, cig, cog) = (g.p(), g.cig(), g.cog());
    let (ho, wo, khw) = (g.ho(), g.wo(), g.kh * g.kw);
    let taps = Taps::new(g);
    let (pitch, plane, q_len) = (taps.pitch, taps.plane, taps.q_len());
    let grid = ho * pitch;
    let tile = implicit_tile(cig, cog);
    let work = GroupWork::new(g);
    let wt = taps_major(g, w);
    let stacks: Vec<Vec<Vec<T>>> = (0..g.groups)
        .map(|gi| {
            taps.wraps
                .iter()
                .map(|wrap| wrap.weights(g, &wt, gi))
                .collect()
        })
        .collect();
    let run = |(xp, yg, wb): &mut (Vec<T>, Vec<T>, Vec<T>), i: usize, yi: &mut [T], inner| {
        let gi = i % g.groups;
        let xs = taps.source(x, i, xp);
        let weights = |tap: &Tap| wt[(gi * khw + tap.index) * cog * cig..].as_ptr();
        let out = if taps.in_place() {
            &mut *yi
        } else {
            yg.resize(cog * grid, T::ZERO);
            &mut yg[..]
        };
        for q0 in (0..q_len).step_by(tile) {
            for (j, tap) in taps.taps.iter().enumerate() {
                let Some((a, b)) = tap.clip(q0, q0 + tile) else {
                    continue;
                };
                // SAFETY: positions a..b of the cog x grid output; the source rows they
                // read lie inside this group's source (see `Taps`); weight (ci, co) of
                // this tap sits at co * cig + ci inside its cog x cig block.
                unsafe {
                    mm(
                        (b - a, cog, cig),
                        out[a..].as_mut_ptr(),
                        (grid, 1),
                        j > 0,
                        xs[tap.at(a)..].as_ptr(),
                        (plane, 1),
                        weights(tap),
                        (cig, 1),
                        inner,
                    )
                };
            }
        }
        for (wrap, stack) in taps.wraps.iter().zip(&stacks[gi]) {
            wrap.gather(g, xs, wb);
            let depth = wrap.depth(cig);
            // SAFETY: output column `wrap.column` of cog channels, h rows a pitch apart;
            // wb is h x k column-major, the stack k x cog column-major.
            unsafe {
                mm_scaled(
                    (g.h, cog, depth),
                    out[wrap.column..].as_mut_ptr(),
                    (grid, pitch),
                    true,
                    (wb.as_ptr(), (g.h, 1)),
                    (stack.as_ptr(), (depth, 1)),
                    -T::ONE,
                    inner,
                )
            };
        }
        for (co, dst) in yi.chunks_mut(p).enumerate() {
            if !taps.in_place() {
                let src = &yg[co * grid..][..grid];
                for (d, s) in dst.chunks_mut(wo).zip(src.chunks(pitch)) {
                    d.copy_from_slice(&s[..wo]);
                }
            }
            epi.apply(gi * cog + co, dst);
        }
    };
    let mut y: Vec<T> = output_vec(g.n * g.c_out * p);
    let buffers = || (Vec::new(), Vec::new(), Vec::new());
    work.for_each(&mut y, cog * p, buffers, run);
    y
}

/// Where the implicit GEMMs find each kernel tap of one image group. Stride 1 with
/// "same" padding (odd kernel, half of it as padding): in the unpadded input itself (see
/// [`Wrap`]). Other stride-1 convolutions: in the zero-padded input, tap (ky, kx)
/// shifted by `ky * Wp + kx`. Strided: in the phase form (see `phases`), tap (ky, kx) is
/// phase (ky % sh, kx % sw) shifted by `(ky / sh) * Ws + kx / sw`, so each real tap is one
/// GEMM and no zero tap is computed. Either way channels are `plane` apart and a tap's
/// reads stay inside the group's source.
struct Taps<'a> {
    g: &'a Geom,
    /// The phase-form geometry (strided convolutions only).
    phased: Option<Geom>,
    /// Row pitch of the source and of the outputs computed on it.
    pitch: usize,
    /// Elements per source channel.
    plane: usize,
    /// The first covers every position, so its GEMMs may overwrite.
    taps: Vec<Tap>,
    /// Read in place only: the output columns where some taps' reads crossed a row end.
    wraps: Vec<Wrap>,
}

/// One kernel tap: output position `q` on the pitch reads source position `q + offset`,
/// for `q` in `range`.
struct Tap {
    /// Position in `(ky, kx)` order, as in the weights.
    index: usize,
    offset: isize,
    range: std::ops::Range<usize>,
}

impl Tap {
    /// Tap `index`, `(ky, kx)`, of a "same" convolution read in place: output pixel
    /// `(oy, ox)` reads input pixel `(oy + ky - ph, ox + kx - pw)`, for every position
    /// whose read lands inside the plane (across a row end for some: see [`Wrap`]).
    fn same(g: &Geom, index: usize, (ky, kx): (usize, usize)) -> Self {
        let (dy, dx) = (ky as isize - g.ph as isize, kx as isize - g.pw as isize);
        let offset = dy * g.w as isize + dx;
        let hw = g.hw() as isize;
        let lo = (-offset).clamp(0, hw) as usize;
        let hi = ((hw - offset).clamp(0, hw) as usize).max(lo);
        Self {
            index,
            offset,
            range: lo..hi,
        }
    }

    /// Source index read by output position `q`.
    fn at(&self, q: usize) -> usize {
        q.checked_add_signed(self.offset)
            .expect("tap reads before the source")
    }

    /// The part of positions `q0..q1` this tap reads, if any.
    fn clip(&self, q0: usize, q1: usize) -> Option<(usize, usize)> {
        let (a, b) = (q0.max(self.range.start), q1.min(self.range.end));
        (a < b).then_some((a, b))
    }
}

impl<'a> Taps<'a> {
    fn new(g: &'a Geom) -> Self {
        let cig = g.cig();
        let (ho, wo) = (g.ho(), g.wo());
        let ks = (0..g.kh).flat_map(|ky| (0..g.kw).map(move |kx| (ky, kx)));
        // Taps on a padded source or phase form at row pitch `pitch`: every one reads all
        // positions up to the last valid output.
        let plain = |offsets: Vec<usize>, pitch: usize| {
            let q_len = (ho - 1) * pitch + wo;
            let tap = |(index, offset)| Tap {
                index,
                offset: offset as isize,
                range: 0..q_len,
            };
            offsets.into_iter().enumerate().map(tap).collect()
        };
        if g.sh == 1 && g.sw == 1 {
            if g.in_place() {
                let mut taps: Vec<Tap> = ks.enumerate().map(|(i, k)| Tap::same(g, i, k)).collect();
                // The centre tap reads every position: first, its GEMMs overwrite.
                taps.swap(0, g.kh / 2 * g.kw + g.kw / 2);
                let wraps = Wrap::all(g, &taps);
                return Self {
                    g,
                    phased: None,
                    pitch: g.w,
                    plane: g.hw(),
                    taps,
                    wraps,
                };
            }
            let (hp, wp) = (g.h + 2 * g.ph, g.w + 2 * g.pw);
            return Self {
                g,
                phased: None,
                pitch: wp,
                plane: hp * wp,
                taps: plain(ks.map(|(ky, kx)| ky * wp + kx).collect(), wp),
                wraps: Vec::new(),
            };
        }
        let gs = phases::form(g);
        let plane = gs.h * gs.w;
        let offsets = ks
            .map(|(ky, kx)| {
                let phase = (ky % g.sh) * g.sw + kx % g.sw;
                phase * cig * plane + (ky / g.sh) * gs.w + kx / g.sw
            })
            .collect();
        Self {
            g,
            pitch: gs.w,
            plane,
            taps: plain(offsets, gs.w),
            wraps: Vec::new(),
            phased: Some(gs),
        }
    }

    /// The source is the input as it is, and outputs on its pitch are the output itself.
    fn in_place(&self) -> bool {
        self.phased.is_none() && self.g.in_place()
    }

    /// Output positions on the pitch up to the last valid one.
    fn q_len(&self) -> usize {
        (self.g.ho() - 1) * self.pitch + self.g.wo()
    }

    /// The source of image group `i` (image `i / G`, group `i % G`) of input `x`: read in
    /// place, or built in `buf`.
    fn source<'b, T: Elem>(&self, x: &'b [T], i: usize, buf: &'b mut Vec<T>) -> &'b [T] {
        let g = self.g;
        match &self.phased {
            Some(gs) => {
                phases::group_input(g, gs, x, i, buf);
                buf
            }
            None => {
                let cig = g.cig();
                let xg = &x[i * cig * g.hw()..][..cig * g.hw()];
                if self.in_place() {
                    return xg;
                }
                let rows = self.plane / self.pitch;
                repitched(xg, (g.h, g.w), buf, (rows, self.pitch), (g.ph, g.pw))
            }
        }
    }
}

/// One output column of an in-place "same" convolution where some taps read across a
/// row end into the neighbouring row instead of the zero padding: those taps' GEMMs
/// add these reads' products with the rest, and one thin GEMM per column subtracts them
/// again (3x3: the first and last columns, in exchange for no padded copy of the input).
struct Wrap {
    column: usize,
    /// Per tap that wraps here: its weight index, its offset and its output rows.
    reads: Vec<(usize, isize, std::ops::Range<usize>)>,
}

impl Wrap {
    /// The wrapping columns of in-place taps `taps` (see [`Taps`]).
    fn all(g: &Geom, taps: &[Tap]) -> Vec<Self> {
        let w = g.w;
        (0..w)
            .filter_map(|column| {
                let reads: Vec<_> = taps
                    .iter()
                    .filter_map(|tap| {
                        let dx = (tap.index % g.kw) as isize - g.pw as isize;
                        let wraps = (dx < 0 && column < dx.unsigned_abs())
                            || (dx > 0 && column + dx.unsigned_abs() >= w);
                        let first = tap.range.start.saturating_sub(column).div_ceil(w);
                        let end = tap.range.end.saturating_sub(column).div_ceil(w);
                        (wraps && end > first).then_some((tap.index, tap.offset, first..end))
                    })
                    .collect();
                (!reads.is_empty()).then_some(Self { column, reads })
            })
            .collect()
    }

    /// Depth of the correcting GEMM: every wrapping tap's channels.
    fn depth(&self, cig: usize) -> usize {
        self.reads.len() * cig
    }

    /// The wrapped reads from one group's source `xs` as an `(H, reads x cig)` matrix,
    /// column-major: each tap's reads per channel and output row, zero on rows where the
    /// tap reads nothing wrapped.
    fn gather<T: Elem>(&self, g: &Geom, xs: &[T], buf: &mut Vec<T>) {
        let (h, w, plane) = (g.h, g.w, g.hw());
        buf.clear();
        buf.resize(self.depth(g.cig()) * h, T::ZERO);
        let mut cols = buf.chunks_mut(h);
        for (_, offset, rows) in &self.reads {
            for ci in 0..g.cig() {
                let col = cols.next().expect("one column per tap and channel");
                for oy in rows.clone() {
                    let q = oy * w + self.column;
                    col[oy] =
                        xs[ci * plane + q.checked_add_signed(*offset).expect("inside the plane")];
                }
            }
        }
    }

    /// This column's taps' weights of group `gi` from `wt` (see [`taps_major`]) stacked
    /// as one `(reads x cig, cog)` block, column-major.
    fn weights<T: Elem>(&self, g: &Geom, wt: &[T], gi: usize) -> Vec<T> {
        let (cig, cog, khw) = (g.cig(), g.cog(), g.kh * g.kw);
        let depth = self.depth(cig);
        let mut stack = vec![T::ZERO; depth * cog];
        for (r, (index, _, _)) in self.reads.iter().enumerate() {
            let block = &wt[(gi * khw + index) * cog * cig..][..cog * cig];
            for (co, src) in block.chunks(cig).enumerate() {
                stack[co * depth + r * cig..][..cig].copy_from_slice(src);
            }
        }
        stack
    }
}

/// `w (C_out, C_in / G, kh, kw)` → `(G, kh * kw, C_out / G, C_in / G)`: each tap's
/// weights as one block with unit stride along the GEMM depth, which `gemm` reads in
/// place instead of packing them on every call.
fn taps_major<T: Elem>(g: &Geom, w: &[T]) -> Vec<T> {
    let (cig, cog, khw) = (g.cig(), g.cog(), g.kh * g.kw);
    let mut wt = output_vec(w.len());
    for gi in 0..g.groups {
        for co in 0..cog {
            for ci in 0..cig {
                let src = &w[((gi * cog + co) * cig + ci) * khw..][..khw];
                for (tap, v) in src.iter().enumerate() {
                    wt[((gi * khw + tap) * cog + co) * cig + ci] = *v;
                }
            }
        }
    }
    wt
}

/// Output positions per implicit-GEMM tile: input and output rows of a tile share L2,
/// and each call's fixed costs serve many rows.
fn implicit_tile(cig: usize, cog: usize) -> usize {
    (IMPLICIT_TILE_FLOATS / (cig + cog)).max(TILE_ALIGN) / TILE_ALIGN * TILE_ALIGN
}

/// `dy` of one image group, `(C, ho, wo)`, as `(ho * pitch, C)` in `buf`: position-major
/// with zeros in the pitch's gap columns. As the weight gradient's left operand it has
/// unit stride along the output channels: `gemm` reads it in place (channel counts that
/// are a multiple of its vector width) or packs it as a plain copy, instead of
/// transposing it once per tap.
fn positions_major<T: Elem>(dyg: &[T], (ho, wo): (usize, usize), pitch: usize, buf: &mut Vec<T>) {
    const BLOCK: usize = 16;
    let (hw, c) = (ho * wo, dyg.len() / (ho * wo));
    buf.clear();
    buf.resize(ho * pitch * c, T::ZERO);
    // Blocks of channels: a cache line of each output row per position, one read stream
    // per channel of the block.
    for c0 in (0..c).step_by(BLOCK) {
        let cb = BLOCK.min(c - c0);
        for oy in 0..ho {
            for ox in 0..wo {
                let dst = &mut buf[(oy * pitch + ox) * c + c0..][..cb];
                for (j, d) in dst.iter_mut().enumerate() {
                    *d = dyg[(c0 + j) * hw + oy * wo + ox];
                }
            }
        }
    }
}

/// Copies planes of `rows x cols` into zeroed planes of `(rows_to, pitch)` at offset
/// `(top, left)`: zero padding, or a wider row pitch.
fn repitch<T: Elem>(
    src: &[T],
    (rows, cols): (usize, usize),
    dst: &mut Vec<T>,
    (rows_to, pitch): (usize, usize),
    (top, left): (usize, usize),
) {
    let planes = src.len() / (rows * cols);
    dst.clear();
    dst.resize(planes * rows_to * pitch, T::ZERO);
    for (s, d) in src.chunks(rows * cols).zip(dst.chunks_mut(rows_to * pitch)) {
        for (row, d) in s.chunks(cols).zip(d[top * pitch..].chunks_mut(pitch)) {
            d[left..left + cols].copy_from_slice(row);
        }
    }
}

/// `src` with the row pitch and padding asked for: itself where they change nothing,
/// else a copy made in `buf`.
fn repitched<'a, T: Elem>(
    src: &'a [T],
    dims: (usize, usize),
    buf: &'a mut Vec<T>,
    to: (usize, usize),
    offset: (usize, usize),
) -> &'a [T] {
    if dims == to && offset == (0, 0) {
        src
    } else {
        repitch(src, dims, buf, to, offset);
        buf
    }
}

/// Forward convolution through explicit im2col tiles, copied from the phase form.
fn forward_im2col<T: Elem>(g: &Geom, x: &[T], w: &[T], epi: Epilogue<T>) -> Vec<T> {
    let (p, k, hw, cig, cog) = (g.p(), g.k(), g.hw(), g.cig(), g.cog());
    let mut y: Vec<T> = output_vec(g.n * g.c_out * p);
    let tile = g.tile(TILE_FLOATS);
    let (gs, xs) = phase_form(g, x);
    let yp = SyncPtr(y.as_mut_ptr());
    g.items(tile)
        .into_par_iter()
        .for_each_init(Vec::new, |col: &mut Vec<T>, (b, gi, p0)| {
            let t = tile.min(p - p0);
            let (lhs, lhs_cs) = if g.pointwise() {
                (x[(b * g.c_in + gi * cig) * hw + p0..].as_ptr(), hw)
            } else {
                col.resize(k * t, T::ZERO);
                let xs = group_of(&gs, &xs, b * g.groups + gi);
                im2col(g, &gs, xs, &segments(g, p0, t), t, col);
                (col.as_ptr(), t)
            };
            let first = (b * g.c_out + gi * cog) * p + p0;
            // SAFETY: the destination block (cog rows of p, columns p0..p0 + t) belongs to
            // this item alone; lhs and rhs strides stay inside xg/col and w.
            unsafe {
                mm(
                    (t, cog, k),
                    yp.get().add(first),
                    (p, 1),
                    false,
                    lhs,
                    (lhs_cs, 1),
                    w[gi * cog * k..].as_ptr(),
                    (k, 1),
                    Parallelism::None,
                )
            }
            if !epi.is_none() {
                for co in 0..cog {
                    // SAFETY: row co of this item's block, just written by the GEMM above.
                    let row =
                        unsafe { std::slice::from_raw_parts_mut(yp.get().add(first + co * p), t) };
                    epi.apply(gi * cog + co, row);
                }
            }
        });
    y
}

/// The phase form of `x` for im2col (empty for a pointwise convolution, which reads `x`).
fn phase_form<T: Elem>(g: &Geom, x: &[T]) -> (Geom, Vec<T>) {
    let gs = phases::form(g);
    let xs = if g.pointwise() {
        Vec::new()
    } else {
        phases::input(g, &gs, x)
    };
    (gs, xs)
}

/// Image group `i` (image `i / G`, group `i % G`) of a phase-form tensor.
fn group_of<'a, T>(gs: &Geom, xs: &'a [T], i: usize) -> &'a [T] {
    let len = gs.c_in / gs.groups * gs.h * gs.w;
    &xs[i * len..][..len]
}

/// Input gradient: `dy (N, C_out, Ho, Wo)`, `w` → `dx (N, C_in, H, W)`.
pub fn backward_input<T: Elem>(g: &Geom, dy: &[T], w: &[T]) -> Vec<T> {
    if let Some(gt) = transposed(g) {
        forward(&gt, dy, &flip_transpose(g, w), Epilogue::NONE)
    } else if g.phased() {
        backward_input_implicit(g, dy, w)
    } else if let Some(gs) = phases::geometry(g) {
        let dxs = backward_input(&gs, dy, &phases::weight(g, &gs, w));
        phases::input_grad(g, &gs, &dxs)
    } else {
        backward_input_col2im(g, dy, w)
    }
}

/// The geometry under which a stride-1 convolution's input gradient is a forward
/// convolution of `dy` ("full" correlation with the flipped, transposed kernel); `None`
/// for strided convolutions and padding beyond the kernel's reach.
fn transposed(g: &Geom) -> Option<Geom> {
    (g.sh == 1 && g.sw == 1 && g.ph < g.kh && g.pw < g.kw).then(|| Geom {
        n: g.n,
        c_in: g.c_out,
        h: g.ho(),
        w: g.wo(),
        c_out: g.c_in,
        kh: g.kh,
        kw: g.kw,
        sh: 1,
        sw: 1,
        ph: g.kh - 1 - g.ph,
        pw: g.kw - 1 - g.pw,
        groups: g.groups,
    })
}

/// `w (C_out, C_in / G, kh, kw)` → `(C_in, C_out / G, kh, kw)`, per group, kernel rotated 180°.
fn flip_transpose<T: Elem>(g: &Geom, w: &[T]) -> Vec<T> {
    let (cig, cog, khw) = (g.cig(), g.cog(), g.kh * g.kw);
    let mut wt = vec![T::ZERO; w.len()];
    for gi in 0..g.groups {
        for co in 0..cog {
            for ci in 0..cig {
                let src = &w[((gi * cog + co) * cig + ci) * khw..][..khw];
                let dst = &mut wt[((gi * cig + ci) * cog + co) * khw..][..khw];
                for (d, s) in dst.iter_mut().zip(src.iter().rev()) {
                    *d = *s;
                }
            }
        }
    }
    wt
}

/// Input gradient of a strided convolution: `W^T dy` per pixel tile, col2im into the
/// phase form's gradient, then back to the input's layout.
fn backward_input_col2im<T: Elem>(g: &Geom, dy: &[T], w: &[T]) -> Vec<T> {
    let (p, k, cog) = (g.p(), g.k(), g.cog());
    let gs = phases::form(g);
    let mut dxs = output_vec(g.n * gs.c_in * gs.h * gs.w);
    let tile = g.tile(TILE_FLOATS);
    // Tiles of one image overlap in dx, so parallelism is over (image, group), or inside
    // the GEMM when there are too few of those.
    let work = GroupWork::new(g);
    let run = |col: &mut Vec<T>, i: usize, dxg: &mut [T], inner| {
        let (b, gi) = (i / g.groups, i % g.groups);
        // col2im adds into it; zeroed per task rather than in one serial pass.
        dxg.fill(T::ZERO);
        let dyg = &dy[(b * g.c_out + gi * cog) * p..][..cog * p];
        let wg = &w[gi * cog * k..][..cog * k];
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
            col2im(g, &gs, col, &segments(g, p0, t), t, dxg);
        }
    };
    work.for_each(&mut dxs, gs.c_in / g.groups * gs.h * gs.w, Vec::new, run);
    phases::input_grad(g, &gs, &dxs)
}

/// Input gradient of a strided convolution on its phase form, one accumulating GEMM per
/// real kernel tap (see [`Taps`]): each tap adds `dy Wᵀ` into the phase-form gradient at
/// its shift, which then goes back to the input's layout.
fn backward_input_implicit<T: Elem>(g: &Geom, dy: &[T], w: &[T]) -> Vec<T> {
    let (p, cig, cog) = (g.p(), g.cig(), g.cog());
    let (ho, wo, khw) = (g.ho(), g.wo(), g.kh * g.kw);
    let taps = Taps::new(g);
    let gs = phases::form(g);
    let (pitch, plane, q_len) = (taps.pitch, taps.plane, taps.q_len());
    let grid = ho * pitch;
    let tile = implicit_tile(cig, cog);
    let work = GroupWork::new(g);
    let wt = taps_major(g, w);
    let per_group = gs.c_in / g.groups * plane;
    let run = |(dyp, dxs): &mut (Vec<T>, Vec<T>), i: usize, dxg: &mut [T], inner| {
        let gi = i % g.groups;
        // The taps add into it.
        dxs.clear();
        dxs.resize(per_group, T::ZERO);
        let dyg = &dy[i * cog * p..][..cog * p];
        let dys = repitched(dyg, (ho, wo), dyp, (ho, pitch), (0, 0));
        for q0 in (0..q_len).step_by(tile) {
            let t = tile.min(q_len - q0);
            for tap in &taps.taps {
                // SAFETY: the t x cig block at shift + q0 (channels plane apart) lies inside
                // this group's phase-form gradient, as the forward's and the weight
                // gradient's reads of the phase form do (see `Taps`); dyp is cog x grid;
                // this tap's weights are cog x cig, (co, ci) at co * cig + ci.
                unsafe {
                    mm(
                        (t, cig, cog),
                        dxs[tap.at(q0)..].as_mut_ptr(),
                        (plane, 1),
                        true,
                        dys[q0..].as_ptr(),
                        (grid, 1),
                        wt[(gi * khw + tap.index) * cog * cig..].as_ptr(),
                        (1, cig),
                        inner,
                    )
                };
            }
        }
        phases::group_input_grad(g, &gs, dxs, i, dxg);
    };
    let mut dx = output_vec(g.n * g.c_in * g.hw());
    work.for_each(&mut dx, cig * g.hw(), || (Vec::new(), Vec::new()), run);
    dx
}

/// Weight gradient: `x`, `dy` → `dw (C_out, C_in / G, kh, kw)`, as the sum over images of
/// `dy col^T`; each thread sums its share of tiles, then the partial sums are added.
pub fn backward_weight<T: Elem>(g: &Geom, x: &[T], dy: &[T]) -> Vec<T> {
    // 1x1 included: its implicit form is one GEMM per image in the fast orientation.
    if (g.sh == 1 && g.sw == 1 && g.cig() >= IMPLICIT_MIN_CHANNELS && !g.deep_and_small())
        || g.phased()
    {
        return backward_weight_implicit(g, x, dy);
    }
    if let Some(gs) = phases::geometry(g) {
        let dws = backward_weight_implicit(&gs, &phases::input(g, &gs, x), dy);
        return phases::weight_grad(g, &gs, &dws);
    }
    let (p, k, hw, cig, cog) = (g.p(), g.k(), g.hw(), g.cig(), g.cog());
    let tile = if g.pointwise() {
        p
    } else {
        g.tile(WGRAD_TILE_FLOATS)
    };
    let (gs, xs) = phase_form(g, x);
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
                let (cols, cols_rs) = if g.pointwise() {
                    (x[(b * g.c_in + gi * cig) * hw + p0..].as_ptr(), hw)
                } else {
                    col.resize(k * t, T::ZERO);
                    let xs = group_of(&gs, &xs, b * g.groups + gi);
                    im2col(g, &gs, xs, &segments(g, p0, t), t, &mut col);
                    (col.as_ptr(), t)
                };
                // dw (cog x k) = dy (cog x t) · colsᵀ, rather than dwᵀ = cols · dyᵀ: faster
                // where the outputs are few (24 → 16 channels 3x3/2 at (128, 24, 32, 32):
                // 6.9 → 5.1 ms; the r50 stem's 10.4 → 10.2 ms).
                // SAFETY: dw block is cog x k of this group; cols is k x t (row stride
                // cols_rs); dy rows of this image and group, columns p0..p0 + t.
                unsafe {
                    mm(
                        (cog, k, t),
                        dw[gi * cog * k..].as_mut_ptr(),
                        (1, k),
                        true,
                        dy[(b * g.c_out + gi * cog) * p + p0..].as_ptr(),
                        (1, p),
                        cols,
                        (cols_rs, 1),
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

/// The implicit weight gradient's scratch per thread: the source, `dy` on its pitch, the
/// wrapped reads and their products.
type WgradBuffers<T> = (Vec<T>, Vec<T>, Vec<T>, Vec<T>);

/// Weight gradient as one accumulating GEMM per kernel tap (see [`forward_implicit`]):
/// `dy` on the source's row pitch times the shifted source.
fn backward_weight_implicit<T: Elem>(g: &Geom, x: &[T], dy: &[T]) -> Vec<T> {
    let (p, k, cig, cog) = (g.p(), g.k(), g.cig(), g.cog());
    let (ho, wo, khw) = (g.ho(), g.wo(), g.kh * g.kw);
    let taps = Taps::new(g);
    let (pitch, plane, q_len) = (taps.pitch, taps.plane, taps.q_len());
    let tile = implicit_tile(cig, cog);
    let work = GroupWork::new(g);
    // `gemm` computes blocks of up to 16 x 16 outputs as dot products when both operands
    // are contiguous along the depth, as dy is. Larger blocks go through its packing,
    // which would transpose dy once per tap: there dy is transposed once per image and
    // read in place (flow stem on its phase form, 80 → 16 channels and 16 taps: 39 → 25
    // ms). One tap gains nothing from the copy.
    let transpose_dy = khw > 1 && cig * cog > 256;
    // Accumulates image group `i` into `acc`, per group as (tap, ci, co): column-major
    // (co, ci) blocks for the GEMM.
    let accumulate = |acc: &mut [T], (xp, dyp, wb, db): &mut WgradBuffers<T>, i: usize, inner| {
        let gi = i % g.groups;
        let dyg = &dy[i * cog * p..][..cog * p];
        let xs = taps.source(x, i, xp);
        let (dys, (q_step, co_step)) = if transpose_dy {
            positions_major(dyg, (ho, wo), pitch, dyp);
            (&dyp[..], (cog, 1))
        } else {
            let dys = repitched(dyg, (ho, wo), dyp, (ho, pitch), (0, 0));
            (dys, (1, ho * pitch))
        };
        let accg = &mut acc[gi * cog * k..][..cog * k];
        for q0 in (0..q_len).step_by(tile) {
            for tap in &taps.taps {
                let Some((a, b)) = tap.clip(q0, q0 + tile) else {
                    continue;
                };
                // SAFETY: accg block of this tap is cog x cig column-major; dys
                // holds positions a..b of cog channels on the pitch; source reads
                // stay inside the group's source as in the forward.
                unsafe {
                    mm(
                        (cog, cig, b - a),
                        accg[tap.index * cig * cog..].as_mut_ptr(),
                        (cog, 1),
                        true,
                        dys[a * q_step..].as_ptr(),
                        (q_step, co_step),
                        xs[tap.at(a)..].as_ptr(),
                        (plane, 1),
                        inner,
                    )
                };
            }
        }
        for wrap in &taps.wraps {
            wrap.gather(g, xs, wb);
            let depth = wrap.depth(cig);
            db.resize(cog * depth, T::ZERO);
            // SAFETY: db is cog x k column-major; dys holds output column
            // `wrap.column` of cog channels, h rows a pitch apart; wb is h x k
            // column-major.
            unsafe {
                mm(
                    (cog, depth, g.h),
                    db.as_mut_ptr(),
                    (cog, 1),
                    false,
                    dys[wrap.column * q_step..].as_ptr(),
                    (q_step * pitch, co_step),
                    wb.as_ptr(),
                    (g.h, 1),
                    inner,
                )
            };
            for (r, (index, _, _)) in wrap.reads.iter().enumerate() {
                let block = &mut accg[index * cig * cog..][..cig * cog];
                for (a, d) in block.iter_mut().zip(&db[r * cig * cog..]) {
                    *a -= *d;
                }
            }
        }
    };
    let parts = work.threads.min(work.outer);
    let mut partials: Vec<Vec<T>> = (0..parts)
        .into_par_iter()
        .map(|part| {
            let mut acc = vec![T::ZERO; g.c_out * k];
            let mut bufs = WgradBuffers::default();
            for i in (part..work.outer).step_by(parts) {
                accumulate(&mut acc, &mut bufs, i, Parallelism::None);
            }
            acc
        })
        .collect();
    if work.outer < g.n * g.groups {
        let mut acc = vec![T::ZERO; g.c_out * k];
        let mut bufs = WgradBuffers::default();
        for i in work.outer..g.n * g.groups {
            accumulate(&mut acc, &mut bufs, i, Parallelism::Rayon(work.threads));
        }
        partials.push(acc);
    }
    let mut dw = vec![T::ZERO; g.c_out * k];
    for acc in partials {
        for gi in 0..g.groups {
            let (src, dst) = (
                &acc[gi * cog * k..][..cog * k],
                &mut dw[gi * cog * k..][..cog * k],
            );
            for (tap, block) in src.chunks(cig * cog).enumerate() {
                for (ci, col) in block.chunks(cog).enumerate() {
                    for (co, v) in col.iter().enumerate() {
                        dst[co * k + ci * khw + tap] += *v;
                    }
                }
            }
        }
    }
    dw
}
