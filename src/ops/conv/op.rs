//! candle custom ops around the CPU kernels (and, with feature `cudnn`, cuDNN's): the
//! forward convolution and, for its backward, one op per gradient so autograd skips the
//! input gradient of a tensor that tracks none (the network's input); and a CPU
//! inference-only forward with the bias and ReLU applied inside the kernel.

use candle_core::{CpuStorage, CustomOp2, CustomOp3, Layout, Result, Shape, Tensor, bail};

use super::cpu::{self, Epilogue};
use super::geom::Geom;
use crate::ops::kernel::{Elem, Map2, Map3, cpu_map2, cpu_map3};

/// A convolution kernel on two operands, with the shapes it expects.
trait Kernel: Map2 {
    /// Expected shapes of the two operands.
    fn operand_shapes(&self) -> (Shape, Shape);
    /// Shape of the output.
    fn out_shape(&self) -> Shape;
}

/// Runs a kernel on CPU storages after checking shapes and dtypes.
fn cpu_apply<K: Kernel>(
    k: &K,
    name: &str,
    (s1, l1): (&CpuStorage, &Layout),
    (s2, l2): (&CpuStorage, &Layout),
) -> Result<(CpuStorage, Shape)> {
    let (e1, e2) = k.operand_shapes();
    if l1.shape() != &e1 || l2.shape() != &e2 {
        bail!(
            "{name}: operands {:?}, {:?}, expected {e1:?}, {e2:?}",
            l1.shape(),
            l2.shape()
        );
    }
    Ok((cpu_map2(k, name, (s1, l1), (s2, l2))?, k.out_shape()))
}

fn input_shape(g: &Geom) -> Shape {
    Shape::from((g.n, g.c_in, g.h, g.w))
}

fn weight_shape(g: &Geom) -> Shape {
    Shape::from((g.c_out, g.c_in / g.groups, g.kh, g.kw))
}

fn output_shape(g: &Geom) -> Shape {
    Shape::from((g.n, g.c_out, g.ho(), g.wo()))
}

/// Forward convolution on (input, weight).
pub struct Forward(pub Geom);

impl Map2 for Forward {
    fn run<T: Elem>(&self, x: &[T], w: &[T]) -> Vec<T> {
        cpu::forward(&self.0, x, w, Epilogue::NONE)
    }
}

impl Kernel for Forward {
    fn operand_shapes(&self) -> (Shape, Shape) {
        (input_shape(&self.0), weight_shape(&self.0))
    }
    fn out_shape(&self) -> Shape {
        output_shape(&self.0)
    }
}

impl CustomOp2 for Forward {
    fn name(&self) -> &'static str {
        "revstream-conv2d"
    }

    #[cfg(feature = "cudnn")]
    fn cuda_fwd(
        &self,
        s1: &candle_core::CudaStorage,
        l1: &Layout,
        s2: &candle_core::CudaStorage,
        l2: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        super::cudnn::run(
            super::cudnn::Pass::Forward,
            &self.0,
            self.name(),
            (s1, l1),
            (s2, l2),
        )
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        cpu_apply(self, self.name(), (s1, l1), (s2, l2))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _y: &Tensor,
        dy: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        // A tensor that neither is a variable nor comes from an op (the network's input)
        // gets no gradient: candle would only drop it.
        gradients(self.0, x, w, dy, (x.track_op(), w.track_op()))
    }
}

/// The input and weight gradients of convolution `g` for output gradient `dy`, each only
/// where asked (`want_dx`, `want_dw`). Side by side: each kernel has serial parts (packing, partial sums) the
/// other's work can fill.
pub fn gradients(
    g: Geom,
    x: &Tensor,
    w: &Tensor,
    dy: &Tensor,
    (want_dx, want_dw): (bool, bool),
) -> Result<(Option<Tensor>, Option<Tensor>)> {
    let dy = dy.contiguous()?;
    let (dx, dw) = rayon::join(
        || {
            want_dx
                .then(|| dy.apply_op2_no_bwd(w, &BackwardInput(g)))
                .transpose()
        },
        || {
            want_dw
                .then(|| x.apply_op2_no_bwd(&dy, &BackwardWeight(g)))
                .transpose()
        },
    );
    Ok((dx?, dw?))
}

/// Input gradient on (output gradient, weight).
struct BackwardInput(Geom);

impl Map2 for BackwardInput {
    fn run<T: Elem>(&self, dy: &[T], w: &[T]) -> Vec<T> {
        cpu::backward_input(&self.0, dy, w)
    }
}

impl Kernel for BackwardInput {
    fn operand_shapes(&self) -> (Shape, Shape) {
        (output_shape(&self.0), weight_shape(&self.0))
    }
    fn out_shape(&self) -> Shape {
        input_shape(&self.0)
    }
}

impl CustomOp2 for BackwardInput {
    fn name(&self) -> &'static str {
        "revstream-conv2d-backward-input"
    }

    #[cfg(feature = "cudnn")]
    fn cuda_fwd(
        &self,
        s1: &candle_core::CudaStorage,
        l1: &Layout,
        s2: &candle_core::CudaStorage,
        l2: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        super::cudnn::run(
            super::cudnn::Pass::BackwardInput,
            &self.0,
            self.name(),
            (s1, l1),
            (s2, l2),
        )
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        cpu_apply(self, self.name(), (s1, l1), (s2, l2))
    }
}

/// Weight gradient on (input, output gradient).
struct BackwardWeight(Geom);

impl Map2 for BackwardWeight {
    fn run<T: Elem>(&self, x: &[T], dy: &[T]) -> Vec<T> {
        cpu::backward_weight(&self.0, x, dy)
    }
}

impl Kernel for BackwardWeight {
    fn operand_shapes(&self) -> (Shape, Shape) {
        (input_shape(&self.0), output_shape(&self.0))
    }
    fn out_shape(&self) -> Shape {
        weight_shape(&self.0)
    }
}

impl CustomOp2 for BackwardWeight {
    fn name(&self) -> &'static str {
        "revstream-conv2d-backward-weight"
    }

    #[cfg(feature = "cudnn")]
    fn cuda_fwd(
        &self,
        s1: &candle_core::CudaStorage,
        l1: &Layout,
        s2: &candle_core::CudaStorage,
        l2: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        super::cudnn::run(
            super::cudnn::Pass::BackwardWeight,
            &self.0,
            self.name(),
            (s1, l1),
            (s2, l2),
        )
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        cpu_apply(self, self.name(), (s1, l1), (s2, l2))
    }
}

/// Inference forward on (input, weight, bias): `relu?(conv(x, w) + bias)` in one pass.
/// It has no backward; [`super::Conv2d`] uses it only when no operand tracks gradients.
pub struct ForwardFused {
    /// The convolution's geometry.
    pub geom: Geom,
    /// Whether a ReLU follows the bias.
    pub relu: bool,
}

impl CustomOp3 for ForwardFused {
    fn name(&self) -> &'static str {
        "revstream-conv2d-bias-act"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let g = &self.geom;
        let name = self.name();
        if l1.shape() != &input_shape(g)
            || l2.shape() != &weight_shape(g)
            || l3.shape().dims() != [g.c_out]
        {
            bail!(
                "{name}: operands {:?}, {:?}, {:?} do not fit {g:?}",
                l1.shape(),
                l2.shape(),
                l3.shape()
            );
        }
        let out = cpu_map3(self, name, (s1, l1), (s2, l2), (s3, l3))?;
        Ok((out, output_shape(g)))
    }
}

impl Map3 for ForwardFused {
    fn run<T: Elem>(&self, x: &[T], w: &[T], b: &[T]) -> Vec<T> {
        let epi = Epilogue {
            bias: Some(b),
            relu: self.relu,
        };
        cpu::forward(&self.geom, x, w, epi)
    }
}
