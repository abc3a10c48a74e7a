//! Spatiotemporal convolution with a temporal extent of 3, zero-padded in time.
//!
//! candle has no conv3d. The three time-shifted copies of the input are stacked on the
//! channel axis and one [`Conv2d`] with `3 * in` input channels runs over them, so the
//! whole layer is a single call of the shared convolution (and of its fast kernels).

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp1, DType, Layout, Module, Result, Shape, Tensor, bail};
use candle_nn::{Init, VarBuilder};
use rayon::prelude::*;

use super::conv::Conv2d;
use crate::ops::conv::ConvConfig;
use crate::ops::kernel::{Elem, contiguous, output_vec};

/// Name of the stacking op in errors.
const NAME: &str = "stack taps";

/// A `3 x kh x kw` convolution over clips laid out `(B * T, C, H, W)`; weight in PyTorch's
/// Conv3d layout `(out, in, 3, kh, kw)`.
#[derive(Debug, Clone)]
pub struct TemporalConv {
    weight: Tensor,
    cfg: ConvConfig,
}

impl TemporalConv {
    /// Loads `weight`, or initialises it as a Kaiming-uniform 2-D weight `W` divided by 3 on
    /// each tap, so that on a clip of identical frames it equals the 2-D convolution `W`
    /// (away from the first and last frame, where the zero padding drops one tap).
    pub fn new(
        in_channels: usize,
        out_channels: usize,
        cfg: ConvConfig,
        vb: VarBuilder,
    ) -> Result<Self> {
        if cfg.groups != 1 {
            candle_core::bail!("temporal conv: groups are not supported");
        }
        let (kh, kw) = cfg.kernel;
        let fresh = !vb.contains_tensor("weight");
        let bound = (6.0 / (in_channels * kh * kw) as f64).sqrt();
        let weight = vb.get_with_hints(
            (out_channels, in_channels, 3, kh, kw),
            "weight",
            Init::Uniform {
                lo: -bound,
                up: bound,
            },
        )?;
        if fresh {
            // The variable was just created: overwrite its storage with W/3 on every tap.
            let tap = (weight.narrow(2, 1, 1)? / 3.0)?;
            let taps = Tensor::cat(&[&tap, &tap, &tap], 2)?;
            weight.slice_set(&taps, 0, 0)?;
        }
        Ok(Self { weight, cfg })
    }

    /// Wraps an existing weight `(out, in, 3, kh, kw)` (for tests and weight surgery).
    pub fn from_weight(weight: Tensor, cfg: ConvConfig) -> Self {
        Self { weight, cfg }
    }

    /// The weight `(out, in, 3, kh, kw)`.
    pub fn weight(&self) -> &Tensor {
        &self.weight
    }

    /// Convolves `x` `(B * T, C, H, W)` over time (zero-padded) and space.
    pub fn forward(&self, x: &Tensor, frames: usize) -> Result<Tensor> {
        self.as_conv2d()?.forward(&stack_taps(x, frames)?)
    }

    /// The same layer as a 2-D convolution over [`stack_taps`]'s output.
    pub fn as_conv2d(&self) -> Result<Conv2d> {
        let (out, cin, kt, kh, kw) = self.weight.dims5()?;
        let weight = self.weight.reshape((out, cin * kt, kh, kw))?;
        Ok(Conv2d::from_weights(weight, None, self.cfg))
    }
}

/// `(B * T, C, H, W)` → `(B * T, 3 * C, H, W)`: each frame with its predecessor and
/// successor (zero at the clip's ends) stacked on the channel axis, channel `c * 3 + tap`
/// (the weight's `(in, 3)` order).
///
/// On the CPU (f32, f64) one op copies planes, and its backward gathers them: composed from
/// pad, narrow and stack, candle spent four copies forward and as many backward.
pub fn stack_taps(x: &Tensor, frames: usize) -> Result<Tensor> {
    let (n, _, _, _) = x.dims4()?;
    if frames == 0 || n % frames != 0 {
        bail!("temporal conv: {n} images are not clips of {frames} frames");
    }
    if x.device().is_cpu() && matches!(x.dtype(), DType::F32 | DType::F64) {
        x.contiguous()?.apply_op1(StackTaps { frames })
    } else {
        stack_taps_composed(x, frames)
    }
}

/// [`stack_taps`] from candle's ops, for every device and dtype.
fn stack_taps_composed(x: &Tensor, frames: usize) -> Result<Tensor> {
    let (n, c, h, w) = x.dims4()?;
    let b = n / frames;
    let padded = x.reshape((b, frames, c, h, w))?.pad_with_zeros(1, 1, 1)?;
    let taps = (0..3)
        .map(|k| padded.narrow(1, k, frames))
        .collect::<Result<Vec<_>>>()?;
    // (B, T, C, 3, H, W): channel index c * 3 + tap.
    Tensor::stack(&taps, 3)?.reshape((n, c * 3, h, w))
}

/// [`stack_taps`] on the CPU.
struct StackTaps {
    frames: usize,
}

/// Frame of the same clip that tap `k` of frame `t` reads (`t + k - 1`), if any.
fn tap_source(t: usize, k: usize, frames: usize) -> Option<usize> {
    (t + k).checked_sub(1).filter(|&s| s < frames)
}

/// `(n, c, hw)` of a 4-D operand with `taps` channels per input channel.
fn planes(l: &Layout, taps: usize) -> Result<(usize, usize, usize)> {
    let (n, c, h, w) = l.shape().dims4()?;
    if !c.is_multiple_of(taps) {
        bail!(
            "stack taps: operand {:?} is not (N, {taps}C, H, W)",
            l.shape()
        );
    }
    Ok((n, c / taps, h * w))
}

/// `x (n, c, hw)` → `(n, 3c, hw)`, planes copied or zeroed.
fn stack<T: Elem>(x: &[T], (n, c, hw): (usize, usize, usize), frames: usize) -> Vec<T> {
    let mut out = output_vec(n * 3 * c * hw);
    out.par_chunks_mut(3 * c * hw)
        .enumerate()
        .for_each(|(i, dst)| {
            let (clip, t) = (i / frames, i % frames);
            for (j, plane) in dst.chunks_mut(hw).enumerate() {
                match tap_source(t, j % 3, frames) {
                    Some(s) => {
                        let src = ((clip * frames + s) * c + j / 3) * hw;
                        plane.copy_from_slice(&x[src..][..hw]);
                    }
                    None => plane.fill(T::ZERO),
                }
            }
        });
    out
}

/// Adjoint of [`stack`]: `dy (n, 3c, hw)` → `dx (n, c, hw)`, each input plane the sum of
/// the (up to three) output planes that copied it.
fn unstack<T: Elem>(dy: &[T], (n, c, hw): (usize, usize, usize), frames: usize) -> Vec<T> {
    let mut dx = output_vec(n * c * hw);
    dx.par_chunks_mut(c * hw).enumerate().for_each(|(i, dst)| {
        let (clip, s) = (i / frames, i % frames);
        for (ci, plane) in dst.chunks_mut(hw).enumerate() {
            // Tap k of frame t reads frame s when t = s + 1 - k; tap 1 always does.
            let from =
                |t: usize, k: usize| &dy[(((clip * frames + t) * c + ci) * 3 + k) * hw..][..hw];
            plane.copy_from_slice(from(s, 1));
            for (t, k) in [(s + 1, 0), (s.wrapping_sub(1), 2)] {
                if t < frames {
                    plane.iter_mut().zip(from(t, k)).for_each(|(d, g)| *d += *g);
                }
            }
        }
    });
    dx
}

impl CustomOp1 for StackTaps {
    fn name(&self) -> &'static str {
        "revstream-stack-taps"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let dims = planes(l, 1)?;
        let out = match s {
            CpuStorage::F32(x) => {
                CpuStorage::F32(stack(contiguous(x, l, NAME)?, dims, self.frames))
            }
            CpuStorage::F64(x) => {
                CpuStorage::F64(stack(contiguous(x, l, NAME)?, dims, self.frames))
            }
            other => bail!("{NAME}: unsupported dtype {:?}", other.dtype()),
        };
        let (n, c, h, w) = l.shape().dims4()?;
        Ok((out, Shape::from((n, 3 * c, h, w))))
    }

    fn bwd(&self, _x: &Tensor, _res: &Tensor, dy: &Tensor) -> Result<Option<Tensor>> {
        let op = UnstackTaps {
            frames: self.frames,
        };
        Ok(Some(dy.contiguous()?.apply_op1_no_bwd(&op)?))
    }
}

/// The backward of [`StackTaps`].
struct UnstackTaps {
    frames: usize,
}

impl CustomOp1 for UnstackTaps {
    fn name(&self) -> &'static str {
        "revstream-stack-taps-backward"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let dims = planes(l, 3)?;
        let out = match s {
            CpuStorage::F32(g) => {
                CpuStorage::F32(unstack(contiguous(g, l, NAME)?, dims, self.frames))
            }
            CpuStorage::F64(g) => {
                CpuStorage::F64(unstack(contiguous(g, l, NAME)?, dims, self.frames))
            }
            other => bail!("{NAME}: unsupported dtype {:?}", other.dtype()),
        };
        let (n, c3, h, w) = l.shape().dims4()?;
        Ok((out, Shape::from((n, c3 / 3, h, w))))
    }
}

/// A unit's convolution: purely spatial, or spatiotemporal with a temporal extent of 3.
#[derive(Debug, Clone)]
pub enum UnitConv {
    /// A 2-D convolution applied to each frame.
    Spatial(Conv2d),
    /// A `3 x kh x kw` convolution over time and space.
    Temporal(TemporalConv),
}

impl UnitConv {
    /// Builds a bias-free convolution, temporal when `temporal` is set.
    pub fn new(
        in_channels: usize,
        out_channels: usize,
        cfg: ConvConfig,
        temporal: bool,
        vb: VarBuilder,
    ) -> Result<Self> {
        Ok(if temporal {
            Self::Temporal(TemporalConv::new(in_channels, out_channels, cfg, vb)?)
        } else {
            Self::Spatial(Conv2d::new(in_channels, out_channels, cfg, false, vb)?)
        })
    }

    /// The layer as a 2-D convolution and whether its input must go through
    /// [`stack_taps`] first.
    pub fn as_conv2d(&self) -> Result<(Conv2d, bool)> {
        Ok(match self {
            Self::Spatial(conv) => (conv.clone(), false),
            Self::Temporal(conv) => (conv.as_conv2d()?, true),
        })
    }

    /// Applies the convolution to `x` `(B * T, C, H, W)`.
    pub fn forward(&self, x: &Tensor, frames: usize) -> Result<Tensor> {
        match self {
            Self::Spatial(conv) => conv.forward(x),
            Self::Temporal(conv) => conv.forward(x, frames),
        }
    }
}

#[cfg(test)]
mod tests {
    use candle_core::{Device, Var};

    use super::*;

    /// The op and the composed form agree, forward exactly and backward up to the order of
    /// a three-term sum, at clip lengths 1 (both neighbours padding), 2 and 5.
    #[test]
    fn stack_taps_op_equals_the_composed_ops() {
        for (frames, dtype) in [(1, DType::F32), (2, DType::F64), (5, DType::F32)] {
            let n = 2 * frames;
            let x = Tensor::randn(0f32, 1.0, (n, 3, 4, 5), &Device::Cpu)
                .and_then(|t| t.to_dtype(dtype))
                .and_then(|t| Var::from_tensor(&t))
                .unwrap();
            let r = Tensor::randn(0f32, 1.0, (n, 9, 4, 5), &Device::Cpu)
                .and_then(|t| t.to_dtype(dtype))
                .unwrap();
            let grad = |y: Tensor| {
                let g = (y * &r).unwrap().sum_all().unwrap().backward().unwrap();
                g.get(x.as_tensor()).unwrap().clone()
            };
            let (a, b) = (
                stack_taps(x.as_tensor(), frames).unwrap(),
                stack_taps_composed(x.as_tensor(), frames).unwrap(),
            );
            let diff = |a: &Tensor, b: &Tensor| {
                (a - b)
                    .unwrap()
                    .abs()
                    .unwrap()
                    .flatten_all()
                    .unwrap()
                    .max(0)
                    .unwrap()
                    .to_dtype(DType::F64)
                    .unwrap()
                    .to_scalar::<f64>()
                    .unwrap()
            };
            assert_eq!(a.dims(), b.dims());
            assert_eq!(diff(&a, &b), 0.0, "forward, {frames} frames");
            let err = diff(&grad(a), &grad(b));
            assert!(err <= 1e-6, "backward, {frames} frames: {err}");
        }
        let x = Tensor::zeros((5, 2, 3, 3), DType::F32, &Device::Cpu).unwrap();
        assert!(stack_taps(&x, 2).is_err());
    }
}
