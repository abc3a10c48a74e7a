//! The geometry of one convolution call, and which CPU kernel it calls for.

/// Fewer input channels per group than this make per-tap GEMMs too thin: use im2col.
/// At 4 channels the per-tap GEMMs still win (4 → 4 at (128, 4, 32, 32): forward 0.63 vs
/// 1.01 ms, weight gradient 0.37 vs 0.90 ms).
pub(super) const IMPLICIT_MIN_CHANNELS: usize = 4;
/// On padded planes up to `DEEP_MAX_PLANE` pixels, this many input channels or more run
/// through im2col: one deep GEMM beats a short per-tap GEMM per image (measured at 14x14:
/// 256 channels 8.8 ms im2col vs 10.5 ms implicit; 64 channels 3.4 vs 2.7 ms).
const DEEP_MIN_CHANNELS: usize = 128;
/// See `DEEP_MIN_CHANNELS`.
const DEEP_MAX_PLANE: usize = 1024;
/// Strided convolutions with fewer input channels per group than this, and at least
/// `PHASED_MIN_OUTPUTS` outputs per image, run all three passes as per-tap GEMMs on the
/// phase form (3x3/2 24 → 16 at 32x32, 128 images: forward 3.4 → 2.9 ms, input gradient
/// 4.0 → 3.1 ms, weight gradient 5.2 → 3.7 ms; the 7x7/2 flow stem's forward 36 → 21
/// ms). From 64 channels im2col's one deep GEMM wins (r50's 3x3/2 64 → 128 at 56x56),
/// and so it does on planes of 4x4 outputs.
const PHASED_MAX_CHANNELS: usize = 64;
/// See `PHASED_MAX_CHANNELS`.
const PHASED_MIN_OUTPUTS: usize = 64;
/// Tile widths are multiples of this (a multiple of every f32/f64 micro-kernel height).
pub(super) const TILE_ALIGN: usize = 48;

/// Full geometry of one convolution call: batch, channels, input size, kernel, stride,
/// padding (per side) and groups.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
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
    pub(super) fn cig(&self) -> usize {
        self.c_in / self.groups
    }

    /// Output channels per group.
    pub(super) fn cog(&self) -> usize {
        self.c_out / self.groups
    }

    /// GEMM depth of the forward pass: one im2col row per (channel, ky, kx).
    pub(super) fn k(&self) -> usize {
        self.cig() * self.kh * self.kw
    }

    /// Output pixels per channel.
    pub(super) fn p(&self) -> usize {
        self.ho() * self.wo()
    }

    /// Input pixels per channel.
    pub(super) fn hw(&self) -> usize {
        self.h * self.w
    }

    /// A 1x1, stride-1, unpadded convolution: the input already is its im2col matrix.
    pub(super) fn pointwise(&self) -> bool {
        self.kh == 1 && self.kw == 1 && self.sh == 1 && self.sw == 1 && self.ph == 0 && self.pw == 0
    }

    /// Stride 1, a real kernel and enough channels for per-tap GEMMs, but not so many on
    /// so small a plane that one im2col GEMM is faster.
    pub(super) fn implicit(&self) -> bool {
        self.sh == 1
            && self.sw == 1
            && !self.pointwise()
            && self.cig() >= IMPLICIT_MIN_CHANNELS
            && !self.deep_and_small()
    }

    /// Strided, with some channels but not many, on a plane of enough outputs: per-tap
    /// GEMMs on each image's phase form (see `cpu::Taps`) in all three passes.
    pub(super) fn phased(&self) -> bool {
        (self.sh > 1 || self.sw > 1)
            && (IMPLICIT_MIN_CHANNELS..PHASED_MAX_CHANNELS).contains(&self.cig())
            && self.p() >= PHASED_MIN_OUTPUTS
    }

    /// Stride 1, "same" padding (odd kernel, half of it each side): the implicit GEMMs
    /// read the input and write the output as they are (see `cpu::Taps`).
    pub(super) fn in_place(&self) -> bool {
        self.sh == 1
            && self.sw == 1
            && self.kh % 2 == 1
            && self.kw % 2 == 1
            && (self.ph, self.pw) == (self.kh / 2, self.kw / 2)
    }

    /// Many channels on a small plane (`DEEP_MIN_CHANNELS`).
    pub(super) fn deep_and_small(&self) -> bool {
        self.cig() >= DEEP_MIN_CHANNELS
            && (self.h + 2 * self.ph) * (self.w + 2 * self.pw) <= DEEP_MAX_PLANE
    }

    /// Tile width for a tile of `floats` im2col elements.
    pub(super) fn tile(&self, floats: usize) -> usize {
        let t = (floats / self.k()).max(TILE_ALIGN) / TILE_ALIGN * TILE_ALIGN;
        t.min(self.p())
    }

    /// Work items (image, group, first pixel) covering the output in tiles of `tile`.
    pub(super) fn items(&self, tile: usize) -> Vec<(usize, usize, usize)> {
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
