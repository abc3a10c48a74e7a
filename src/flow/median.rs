//! 3x3 and 5x5 median filters of a flow component (borders replicated), computed with
//! selection networks over eight pixels at a time so they vectorise.

use rayon::prelude::*;

use super::pyramid::rows_per_task;

const LANES: usize = 8;

/// Values a selection network can order: lanes of pixels, or bit-sliced 0/1 inputs in tests.
pub(crate) trait Lane: Copy {
    /// The smaller and the larger of `a` and `b`, lane by lane.
    fn sort2(a: Self, b: Self) -> (Self, Self);
}

impl Lane for [f32; LANES] {
    #[inline(always)]
    fn sort2(a: Self, b: Self) -> (Self, Self) {
        let mut lo = a;
        let mut hi = b;
        for i in 0..LANES {
            lo[i] = if a[i] < b[i] { a[i] } else { b[i] };
            hi[i] = if a[i] < b[i] { b[i] } else { a[i] };
        }
        (lo, hi)
    }
}

impl Lane for f32 {
    #[inline(always)]
    fn sort2(a: Self, b: Self) -> (Self, Self) {
        if a < b { (a, b) } else { (b, a) }
    }
}

macro_rules! network {
    ($p:ident; $(($a:literal, $b:literal)),* $(,)?) => {
        $( let (lo, hi) = T::sort2($p[$a], $p[$b]); $p[$a] = lo; $p[$b] = hi; )*
    };
}

/// Median of 9 (Paeth's network); the result is left in `p[4]`.
#[inline(always)]
pub(crate) fn median9<T: Lane>(p: &mut [T; 9]) -> T {
    network!(p; (1, 2), (4, 5), (7, 8), (0, 1), (3, 4), (6, 7), (1, 2), (4, 5), (7, 8),
        (0, 3), (5, 8), (4, 7), (3, 6), (1, 4), (2, 5), (4, 7), (4, 2), (6, 4), (4, 2));
    p[4]
}

/// Median of 25 (Devillard's 99-exchange network); the result is left in `p[12]`.
#[inline(always)]
pub(crate) fn median25<T: Lane>(p: &mut [T; 25]) -> T {
    network!(p;
        (0, 1), (3, 4), (2, 4), (2, 3), (6, 7), (5, 7), (5, 6), (9, 10), (8, 10),
        (8, 9), (12, 13), (11, 13), (11, 12), (15, 16), (14, 16), (14, 15), (18, 19), (17, 19),
        (17, 18), (21, 22), (20, 22), (20, 21), (23, 24), (2, 5), (3, 6), (0, 6), (0, 3),
        (4, 7), (1, 7), (1, 4), (11, 14), (8, 14), (8, 11), (12, 15), (9, 15), (9, 12),
        (13, 16), (10, 16), (10, 13), (20, 23), (17, 23), (17, 20), (21, 24), (18, 24), (18, 21),
        (19, 22), (8, 17), (9, 18), (0, 18), (0, 9), (10, 19), (1, 19), (1, 10), (11, 20),
        (2, 20), (2, 11), (12, 21), (3, 21), (3, 12), (13, 22), (4, 22), (4, 13), (14, 23),
        (5, 23), (5, 14), (15, 24), (6, 24), (6, 15), (7, 16), (7, 19), (13, 21), (15, 23),
        (7, 13), (7, 15), (1, 9), (3, 11), (5, 17), (11, 17), (9, 17), (4, 10), (6, 12),
        (7, 14), (4, 6), (4, 7), (12, 14), (10, 14), (6, 7), (10, 12), (6, 10), (6, 17),
        (12, 17), (7, 17), (7, 10), (12, 18), (7, 12), (10, 18), (12, 20), (10, 20), (10, 12),
    );
    p[12]
}

/// A median selection network over N values (a trait, so it inlines into the
/// AVX2-compiled row loop).
trait Network<const N: usize> {
    fn select<T: Lane>(p: &mut [T; N]) -> T;
}

struct Median9;
struct Median25;

impl Network<9> for Median9 {
    #[inline(always)]
    fn select<T: Lane>(p: &mut [T; 9]) -> T {
        median9(p)
    }
}

impl Network<25> for Median25 {
    #[inline(always)]
    fn select<T: Lane>(p: &mut [T; 25]) -> T {
        median25(p)
    }
}

/// Median-filters `field` (w x h) in place with a `size` x `size` window (3 or 5);
/// `padded` is scratch space reused across calls.
pub(crate) fn median_filter(
    field: &mut [f32],
    w: usize,
    h: usize,
    size: usize,
    padded: &mut Vec<f32>,
) {
    let r = size / 2;
    let pw = w + 2 * r;
    let ph = h + 2 * r;
    padded.resize(pw * ph, 0.0);
    for py in 0..ph {
        let sy = py.saturating_sub(r).min(h - 1);
        let src = &field[sy * w..sy * w + w];
        let dst = &mut padded[py * pw..py * pw + pw];
        dst[..r].fill(src[0]);
        dst[r..r + w].copy_from_slice(src);
        dst[r + w..].fill(src[w - 1]);
    }
    let padded = &padded[..];
    let rows = rows_per_task(w, h);
    field
        .par_chunks_mut(w * rows)
        .enumerate()
        .for_each(|(c, out)| {
            for (k, orow) in out.chunks_exact_mut(w).enumerate() {
                let y = c * rows + k;
                // Window rows y..y+size of the padded field are rows y-r..y+r of the field.
                let win = &padded[y * pw..(y + size) * pw];
                filter_row(orow, win, pw, size);
            }
        });
}

/// One output row of a 3x3 or 5x5 median; `win` holds the window's padded rows.
fn filter_row(orow: &mut [f32], win: &[f32], pw: usize, size: usize) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::is_x86_feature_detected as has;
        if has!("avx512f") && has!("avx512vl") {
            // SAFETY: the CPU supports AVX-512F and VL, checked just above.
            return unsafe { filter_row_avx512(orow, win, pw, size) };
        }
        if has!("avx2") {
            // SAFETY: the CPU supports AVX2, checked just above.
            return unsafe { filter_row_avx2(orow, win, pw, size) };
        }
    }
    filter_row_body(orow, win, pw, size)
}

/// [`filter_row_body`] compiled for AVX2 (one instruction per eight-lane min or max).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn filter_row_avx2(orow: &mut [f32], win: &[f32], pw: usize, size: usize) {
    filter_row_body(orow, win, pw, size)
}

/// [`filter_row_body`] compiled for AVX-512: its 32 vector registers hold all 25
/// lanes of the 5x5 network without spilling.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512vl")]
unsafe fn filter_row_avx512(orow: &mut [f32], win: &[f32], pw: usize, size: usize) {
    filter_row_body(orow, win, pw, size)
}

#[inline(always)]
fn filter_row_body(orow: &mut [f32], win: &[f32], pw: usize, size: usize) {
    if size == 5 {
        filter_row_n::<Median25, 25>(orow, win, pw, 5);
    } else {
        filter_row_n::<Median9, 9>(orow, win, pw, 3);
    }
}

/// Eight pixels at a time through the network, the rest one by one.
#[inline(always)]
fn filter_row_n<M: Network<N>, const N: usize>(
    orow: &mut [f32],
    win: &[f32],
    pw: usize,
    size: usize,
) {
    let w = orow.len();
    // Tap j of every pixel's window, as one row-long slice per tap.
    let taps: [&[f32]; N] = std::array::from_fn(|j| {
        let start = (j / size) * pw + j % size;
        &win[start..start + w]
    });
    let full = w / LANES * LANES;
    for (b, chunk) in orow[..full].chunks_exact_mut(LANES).enumerate() {
        let x0 = b * LANES;
        let mut p = [[0.0f32; LANES]; N];
        for (lanes, tap) in p.iter_mut().zip(&taps) {
            lanes.copy_from_slice(&tap[x0..x0 + LANES]);
        }
        chunk.copy_from_slice(&M::select(&mut p));
    }
    for (x, o) in orow.iter_mut().enumerate().skip(full) {
        let mut p = [0.0f32; N];
        for (v, tap) in p.iter_mut().zip(&taps) {
            *v = tap[x];
        }
        *o = M::select(&mut p);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Bit-sliced 0/1 inputs: bit k of lane j is input j of test case k.
    impl Lane for u64 {
        fn sort2(a: Self, b: Self) -> (Self, Self) {
            (a & b, a | b)
        }
    }

    /// By the 0-1 principle a comparator network selects the median of every input
    /// if it does so for every 0/1 input: check all 2^n of them, 64 at a time.
    fn check_all_binary<const N: usize>(net: impl Fn(&mut [u64; N]) -> u64) {
        let total = 1u64 << N;
        let mut case = 0u64;
        while case < total {
            let mut p = [0u64; N];
            let mut expected = 0u64;
            for bit in 0..64u64 {
                let input = case + bit;
                let mut ones = 0;
                for (j, lane) in p.iter_mut().enumerate() {
                    if input >> j & 1 == 1 {
                        *lane |= 1 << bit;
                        ones += 1;
                    }
                }
                // The median is 1 when more than half the inputs are 1.
                if ones > N / 2 {
                    expected |= 1 << bit;
                }
            }
            assert_eq!(net(&mut p), expected, "network fails from case {case}");
            case += 64;
        }
    }

    #[test]
    fn median9_network_is_exact() {
        check_all_binary::<9>(median9);
    }

    #[test]
    fn median25_network_is_exact() {
        check_all_binary::<25>(median25);
    }

    #[test]
    fn filter_matches_sorting() {
        let (w, h) = (21usize, 7usize);
        let field: Vec<f32> = (0..w * h)
            .map(|i| ((i * 7919) % 101) as f32 - 50.0)
            .collect();
        for size in [3usize, 5] {
            let mut out = field.clone();
            median_filter(&mut out, w, h, size, &mut Vec::new());
            let r = size as isize / 2;
            for y in 0..h as isize {
                for x in 0..w as isize {
                    let mut win = Vec::new();
                    for dy in -r..=r {
                        for dx in -r..=r {
                            let sy = (y + dy).clamp(0, h as isize - 1) as usize;
                            let sx = (x + dx).clamp(0, w as isize - 1) as usize;
                            win.push(field[sy * w + sx]);
                        }
                    }
                    win.sort_by(f32::total_cmp);
                    assert_eq!(out[y as usize * w + x as usize], win[win.len() / 2]);
                }
            }
        }
    }
}
