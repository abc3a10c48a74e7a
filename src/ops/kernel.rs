//! What every CPU custom op shares: the float types kernels run on, output buffers
//! without a zero fill, and candle storages seen as contiguous slices.

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, Layout, Result, bail};

/// Element types the kernels run on.
pub trait Elem:
    Copy
    + Send
    + Sync
    + 'static
    + PartialOrd
    + std::ops::AddAssign
    + std::ops::SubAssign
    + std::ops::Neg<Output = Self>
{
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

/// A vector of `len` elements that the caller overwrites in full before anything reads it.
/// Skipping the zero fill saves a single-threaded pass over the output (up to 25 MB per
/// call on the r50 stem, 10–15 % of its forward), as candle's own `alloc_uninit` does.
#[allow(clippy::uninit_vec)]
pub fn output_vec<T: Elem>(len: usize) -> Vec<T> {
    let mut v = Vec::with_capacity(len);
    // SAFETY: `Elem` types are plain floats, valid for any bits, and every caller writes
    // each element (GEMMs without accumulation, copies, or a fill) before reading it.
    unsafe { v.set_len(len) };
    v
}

/// A computation on two contiguous operands of one float type.
pub trait Map2 {
    /// The output from the two operands.
    fn run<T: Elem>(&self, a: &[T], b: &[T]) -> Vec<T>;
}

/// A computation on three contiguous operands of one float type.
pub trait Map3 {
    /// The output from the three operands.
    fn run<T: Elem>(&self, a: &[T], b: &[T], c: &[T]) -> Vec<T>;
}

/// Runs `m` on two f32 or two f64 CPU storages.
pub fn cpu_map2<M: Map2>(
    m: &M,
    name: &str,
    (s1, l1): (&CpuStorage, &Layout),
    (s2, l2): (&CpuStorage, &Layout),
) -> Result<CpuStorage> {
    Ok(match (s1, s2) {
        (CpuStorage::F32(a), CpuStorage::F32(b)) => {
            CpuStorage::F32(m.run(contiguous(a, l1, name)?, contiguous(b, l2, name)?))
        }
        (CpuStorage::F64(a), CpuStorage::F64(b)) => {
            CpuStorage::F64(m.run(contiguous(a, l1, name)?, contiguous(b, l2, name)?))
        }
        (a, b) => bail!(
            "{name}: unsupported dtypes {:?}, {:?}",
            a.dtype(),
            b.dtype()
        ),
    })
}

/// Runs `m` on three f32 or three f64 CPU storages.
pub fn cpu_map3<M: Map3>(
    m: &M,
    name: &str,
    (s1, l1): (&CpuStorage, &Layout),
    (s2, l2): (&CpuStorage, &Layout),
    (s3, l3): (&CpuStorage, &Layout),
) -> Result<CpuStorage> {
    Ok(match (s1, s2, s3) {
        (CpuStorage::F32(a), CpuStorage::F32(b), CpuStorage::F32(c)) => CpuStorage::F32(m.run(
            contiguous(a, l1, name)?,
            contiguous(b, l2, name)?,
            contiguous(c, l3, name)?,
        )),
        (CpuStorage::F64(a), CpuStorage::F64(b), CpuStorage::F64(c)) => CpuStorage::F64(m.run(
            contiguous(a, l1, name)?,
            contiguous(b, l2, name)?,
            contiguous(c, l3, name)?,
        )),
        (a, b, c) => bail!(
            "{name}: unsupported dtypes {:?}, {:?}, {:?}",
            a.dtype(),
            b.dtype(),
            c.dtype()
        ),
    })
}

/// The contiguous slice a layout describes.
pub fn contiguous<'a, T>(s: &'a [T], l: &Layout, name: &str) -> Result<&'a [T]> {
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&s[a..b]),
        None => bail!("{name}: operand is not contiguous"),
    }
}
