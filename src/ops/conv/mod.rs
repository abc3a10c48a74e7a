//! The one convolution every layer of the model runs.
//!
//! Which implementation runs is this module's business: our own GEMM-based custom op
//! (forward and both gradients, see `cpu`) for f32/f64 on the CPU; on CUDA, with feature
//! `cudnn`, the same op runs cuDNN with a per-shape algorithm search (see `cudnn`);
//! candle's stock op elsewhere. At inference on the CPU (no operand tracks gradients) the
//! bias and a following ReLU are applied inside our kernel as outputs are written, instead
//! of as two more passes ([`conv2d_bias_inference`]).

mod cases;
mod cpu;
#[cfg(feature = "cudnn")]
mod cudnn;
mod geom;
mod op;
mod phases;

use candle_core::{DType, Device, Result, Tensor, bail};

pub use cases::{ConvCase, benchmark_cases};
use geom::Geom;

/// Geometry of a 2-D convolution: (height, width) pairs and channel groups.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvConfig {
    /// Kernel size (kh, kw).
    pub kernel: (usize, usize),
    /// Stride (sh, sw).
    pub stride: (usize, usize),
    /// Zero padding on each side (ph, pw).
    pub padding: (usize, usize),
    /// Channel groups (1 for a dense convolution).
    pub groups: usize,
}

impl ConvConfig {
    /// A square kernel `k` with stride `s` and padding `p`, one group.
    pub fn square(k: usize, s: usize, p: usize) -> Self {
        Self {
            kernel: (k, k),
            stride: (s, s),
            padding: (p, p),
            groups: 1,
        }
    }
}

/// Whether our op runs this convolution: f32/f64 on the CPU, and with feature `cudnn`
/// every float type on CUDA; both operands on one device, in one dtype.
fn ours(x: &Tensor, w: &Tensor) -> bool {
    if x.dtype() != w.dtype() || !x.device().same_device(w.device()) {
        return false;
    }
    match x.device() {
        Device::Cpu => matches!(x.dtype(), DType::F32 | DType::F64),
        Device::Cuda(_) => {
            cfg!(feature = "cudnn")
                && matches!(
                    x.dtype(),
                    DType::F32 | DType::F64 | DType::F16 | DType::BF16
                )
        }
        _ => false,
    }
}

/// Checks `x (N, C_in, H, W)` and `w (C_out, C_in / G, kh, kw)` against `cfg`.
fn geometry(x: &Tensor, w: &Tensor, cfg: &ConvConfig) -> Result<Geom> {
    let (n, c_in, h, wd) = x.dims4()?;
    let (c_out, cig, kh, kw) = w.dims4()?;
    let ConvConfig {
        kernel,
        stride: (sh, sw),
        padding: (ph, pw),
        groups,
    } = *cfg;
    if kernel != (kh, kw) {
        bail!(
            "conv2d: weight kernel {:?} differs from config {kernel:?}",
            (kh, kw)
        );
    }
    if [c_in, c_out, h, wd, kh, kw].contains(&0) {
        bail!(
            "conv2d: empty input {:?} or weight {:?}",
            x.dims(),
            w.dims()
        );
    }
    if groups == 0 || sh == 0 || sw == 0 {
        bail!("conv2d: groups and strides must be positive, got {cfg:?}");
    }
    if cig * groups != c_in || c_out % groups != 0 {
        bail!(
            "conv2d: {c_in} input / {c_out} output channels do not fit weight {:?} in {groups} groups",
            w.dims()
        );
    }
    if h + 2 * ph < kh || wd + 2 * pw < kw {
        bail!(
            "conv2d: padded input {:?} smaller than kernel {kernel:?}",
            (h + 2 * ph, wd + 2 * pw)
        );
    }
    Ok(Geom {
        n,
        c_in,
        h,
        w: wd,
        c_out,
        kh,
        kw,
        sh,
        sw,
        ph,
        pw,
        groups,
    })
}

/// Convolution, bias and (when `relu`) a ReLU in one pass, applied as the outputs are
/// written: only at inference on the CPU (no operand tracks gradients) where our op runs;
/// `None` elsewhere, for the caller to compose.
pub fn conv2d_bias_inference(
    x: &Tensor,
    w: &Tensor,
    b: &Tensor,
    cfg: &ConvConfig,
    relu: bool,
) -> Result<Option<Tensor>> {
    let inference = !(x.track_op() || w.track_op() || b.track_op());
    if !(inference
        && x.device().is_cpu()
        && ours(x, w)
        && b.device().is_cpu()
        && b.dtype() == x.dtype())
    {
        return Ok(None);
    }
    let op = op::ForwardFused {
        geom: geometry(x, w, cfg)?,
        relu,
    };
    x.contiguous()?
        .apply_op3_no_bwd(&w.contiguous()?, &b.contiguous()?, &op)
        .map(Some)
}

/// 2-D convolution of `x (N, C_in, H, W)` with `w (C_out, C_in / G, kh, kw)`, no bias:
/// our op where it runs (see the module's note), [`conv2d_stock`] elsewhere.
pub fn conv2d(x: &Tensor, w: &Tensor, cfg: &ConvConfig) -> Result<Tensor> {
    let g = geometry(x, w, cfg)?;
    if !ours(x, w) {
        return conv2d_stock(x, w, cfg);
    }
    x.contiguous()?.apply_op2(&w.contiguous()?, op::Forward(g))
}

/// Both gradients of [`conv2d`] for output gradient `dy`, computed directly: what the
/// op's backward runs inside `Tensor::backward`, without autograd's bookkeeping (its
/// y-sized seed, the graph walk). Only where our op runs.
pub fn conv2d_grads(
    x: &Tensor,
    w: &Tensor,
    dy: &Tensor,
    cfg: &ConvConfig,
) -> Result<(Tensor, Tensor)> {
    if !ours(x, w) {
        bail!(
            "conv2d_grads: our op does not run {:?} on {:?}",
            x.dtype(),
            x.device()
        );
    }
    let g = geometry(x, w, cfg)?;
    let (x, w) = (x.contiguous()?, w.contiguous()?);
    let (Some(dx), Some(dw)) = op::gradients(g, &x, &w, dy, (true, true))? else {
        bail!("conv2d_grads: a gradient was not computed");
    };
    Ok((dx, dw))
}

/// The same convolution through candle's stock `conv2d` (the reference we test against).
pub fn conv2d_stock(x: &Tensor, w: &Tensor, cfg: &ConvConfig) -> Result<Tensor> {
    let ConvConfig {
        stride,
        padding,
        groups,
        ..
    } = *cfg;
    if stride.0 != stride.1 {
        bail!("conv2d: candle's op has no unequal strides {stride:?}");
    }
    // candle pads both spatial dims alike; pad unequal amounts ourselves.
    let (x, pad) = if padding.0 == padding.1 {
        (x.clone(), padding.0)
    } else {
        let x = x.pad_with_zeros(2, padding.0, padding.0)?;
        (x.pad_with_zeros(3, padding.1, padding.1)?, 0)
    };
    x.conv2d(w, pad, stride.0, 1, groups)
}
