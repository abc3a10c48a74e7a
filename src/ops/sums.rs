//! Vectorised sums for the CPU ops: f32 lanes inside fixed blocks, f64 across blocks.
//!
//! A plain `iter().sum()` is one dependent chain the compiler may not reorder, so it
//! runs at one add per few cycles; f64 accumulation of every element is slower still.

/// Elements per block: no f32 partial sum covers more than `BLOCK / LANES` values.
const BLOCK: usize = 256;
/// Independent f32 accumulators: enough for the compiler to vectorise.
const LANES: usize = 16;

/// `Σ f(a_i, b_i)` over the pairs of `a` and `b`.
pub fn lane_sum(a: &[f32], b: &[f32], f: impl Fn(f32, f32) -> f32) -> f64 {
    a.chunks(BLOCK)
        .zip(b.chunks(BLOCK))
        .map(|(ab, bb)| {
            let mut acc = [0f32; LANES];
            let (mut ac, mut bc) = (ab.chunks_exact(LANES), bb.chunks_exact(LANES));
            for (x, y) in (&mut ac).zip(&mut bc) {
                for i in 0..LANES {
                    acc[i] += f(x[i], y[i]);
                }
            }
            let tail: f32 = (ac.remainder().iter().zip(bc.remainder()))
                .map(|(&x, &y)| f(x, y))
                .sum();
            (acc.iter().sum::<f32>() + tail) as f64
        })
        .sum()
}

/// `(Σ p, Σ q)` of `(p, q) = f(a_i, b_i)` over the pairs of `a` and `b`.
pub fn lane_sum2(a: &[f32], b: &[f32], f: impl Fn(f32, f32) -> (f32, f32)) -> (f64, f64) {
    a.chunks(BLOCK)
        .zip(b.chunks(BLOCK))
        .map(|(ab, bb)| {
            let (mut sp, mut sq) = ([0f32; LANES], [0f32; LANES]);
            let (mut ac, mut bc) = (ab.chunks_exact(LANES), bb.chunks_exact(LANES));
            for (x, y) in (&mut ac).zip(&mut bc) {
                for i in 0..LANES {
                    let (p, q) = f(x[i], y[i]);
                    sp[i] += p;
                    sq[i] += q;
                }
            }
            let (mut tp, mut tq) = (0f32, 0f32);
            for (&x, &y) in ac.remainder().iter().zip(bc.remainder()) {
                let (p, q) = f(x, y);
                tp += p;
                tq += q;
            }
            (
                (sp.iter().sum::<f32>() + tp) as f64,
                (sq.iter().sum::<f32>() + tq) as f64,
            )
        })
        .fold((0.0, 0.0), |(a, b), (c, d)| (a + c, b + d))
}
