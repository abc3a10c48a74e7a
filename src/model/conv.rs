//! The one convolution type every layer of the model uses.
//!
//! Layers build a [`Conv2d`] and call `forward`; which implementation runs behind it is
//! this module's business: our own GEMM-based custom op (forward and both gradients,
//! see `cpu`) for f32/f64 on the CPU; on CUDA, with feature `cudnn`, the same op runs
//! cuDNN with a per-shape algorithm search (see `cudnn`); candle's stock op elsewhere.
//! At inference on the CPU (no operand tracks gradients) the bias and a following ReLU
//! are applied inside our kernel as outputs are written, instead of as two more passes.

mod cases;
mod cpu;
#[cfg(feature = "cudnn")]
mod cudnn;
mod op;
mod phases;

use candle_core::{DType, Device, Module, Result, Tensor, bail};
use candle_nn::VarBuilder;

pub use cases::{ConvCase, benchmark_cases};
use cpu::Geom;
pub(crate) use cpu::{Elem, output_vec};
pub(crate) use op::{Map2, Map3, contiguous, cpu_map2, cpu_map3};

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

/// A 2-D convolution over NCHW tensors; weight `(out, in / groups, kh, kw)`.
#[derive(Debug, Clone)]
pub struct Conv2d {
    weight: Tensor,
    bias: Option<Tensor>,
    cfg: ConvConfig,
}

impl Conv2d {
    /// Loads or initialises `weight` (and `bias` when asked) under `vb`, Kaiming-uniform.
    pub fn new(
        in_channels: usize,
        out_channels: usize,
        cfg: ConvConfig,
        bias: bool,
        vb: VarBuilder,
    ) -> Result<Self> {
        let (kh, kw) = cfg.kernel;
        let fan_in = in_channels / cfg.groups * kh * kw;
        let bound = 1.0 / (fan_in as f64).sqrt();
        let init = candle_nn::Init::Uniform {
            lo: -bound,
            up: bound,
        };
        let weight = vb.get_with_hints(
            (out_channels, in_channels / cfg.groups, kh, kw),
            "weight",
            candle_nn::init::DEFAULT_KAIMING_UNIFORM,
        )?;
        let bias = if bias {
            Some(vb.get_with_hints(out_channels, "bias", init)?)
        } else {
            None
        };
        Ok(Self { weight, bias, cfg })
    }

    /// Wraps existing tensors (for tests and weight surgery).
    pub fn from_weights(weight: Tensor, bias: Option<Tensor>, cfg: ConvConfig) -> Self {
        Self { weight, bias, cfg }
    }

    /// The weight tensor `(out, in / groups, kh, kw)`.
    pub fn weight(&self) -> &Tensor {
        &self.weight
    }

    /// The bias, if any.
    pub fn bias(&self) -> Option<&Tensor> {
        self.bias.as_ref()
    }

    /// The geometry.
    pub fn config(&self) -> ConvConfig {
        self.cfg
    }

    /// Folds a following inference-mode BatchNorm, `z = y * scale + shift` per output
    /// channel, into this convolution's weight and bias (one op instead of three).
    pub fn fold_bn(&self, scale: &Tensor, shift: &Tensor) -> Result<Self> {
        let c_out = self.weight.dim(0)?;
        if scale.dims() != [c_out] || shift.dims() != [c_out] {
            bail!(
                "fold_bn: scale {:?} and shift {:?} must be ({c_out},)",
                scale.dims(),
                shift.dims()
            );
        }
        let weight = self
            .weight
            .broadcast_mul(&scale.reshape((c_out, 1, 1, 1))?)?;
        let bias = match &self.bias {
            Some(b) => ((b * scale)? + shift)?,
            None => shift.clone(),
        };
        Ok(Self {
            weight,
            bias: Some(bias),
            cfg: self.cfg,
        })
    }
}

impl Conv2d {
    /// The convolution, then a ReLU when `relu` is set.
    pub fn forward_act(&self, x: &Tensor, relu: bool) -> Result<Tensor> {
        if let Some(b) = &self.bias {
            let inference = !(x.track_op() || self.weight.track_op() || b.track_op());
            if inference
                && x.device().is_cpu()
                && ours(x, &self.weight)
                && b.device().is_cpu()
                && b.dtype() == x.dtype()
            {
                let op = op::ForwardFused {
                    geom: geometry(x, &self.weight, &self.cfg)?,
                    relu,
                };
                return x.contiguous()?.apply_op3_no_bwd(
                    &self.weight.contiguous()?,
                    &b.contiguous()?,
                    &op,
                );
            }
        }
        let y = conv2d(x, &self.weight, &self.cfg)?;
        let y = match &self.bias {
            Some(b) => y.broadcast_add(&b.reshape((1, (), 1, 1))?)?,
            None => y,
        };
        if relu { y.relu() } else { Ok(y) }
    }
}

impl Module for Conv2d {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.forward_act(x, false)
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

/// 2-D convolution of `x (N, C_in, H, W)` with `w (C_out, C_in / G, kh, kw)`, no bias:
/// our op where it runs (see [`Conv2d`]), [`conv2d_stock`] elsewhere.
pub fn conv2d(x: &Tensor, w: &Tensor, cfg: &ConvConfig) -> Result<Tensor> {
    let g = geometry(x, w, cfg)?;
    if !ours(x, w) {
        return conv2d_stock(x, w, cfg);
    }
    x.contiguous()?.apply_op2(&w.contiguous()?, op::Forward(g))
}

/// Both gradients of [`conv2d`] for output gradient `dy`, computed directly: what the
/// op's backward runs inside `Tensor::backward`, without autograd's bookkeeping (its
/// y-sized seed, the graph walk). Only where our op runs (see [`Conv2d`]).
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
