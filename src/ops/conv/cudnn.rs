//! The convolution passes on CUDA through cuDNN (feature `cudnn`): forward, input
//! gradient and weight gradient of NCHW tensors in f32, f64, f16 and bf16.
//!
//! - Each pass, shape and dtype gets the fastest algorithm cuDNN measures for it
//!   (`cudnnFind*`, what PyTorch's `cudnn.benchmark` does), found once per process and
//!   cached. Candle's own cuDNN path takes the heuristic's first pick, which on an H200
//!   ran bf16 7x slower than its im2col path.
//! - f32 runs on FMA units unless candle's `gemm_reduced_precision_f32` allows TF32 (the
//!   same switch as its cuBLAS matmuls); f16/bf16 use tensor cores and accumulate in f32.
//!
//! cudarc's safe cuDNN layer picks algorithms by heuristic only and keeps its raw
//! descriptors private, so this module owns small RAII wrappers over the raw calls.

use std::cell::RefCell;
use std::collections::HashMap;
use std::ffi::c_void;
use std::rc::Rc;
use std::sync::{Arc, Mutex, OnceLock};

use candle_core::backend::BackendStorage;
use candle_core::cuda_backend::{CudaDType, CudaDevice, DeviceId};
use candle_core::{CudaStorage, DType, Layout, Result, Shape, bail};
use cudarc::cudnn::{CudnnDataType, result, sys};
use cudarc::driver::{CudaStream, DevicePtr, DevicePtrMut, DeviceRepr};
use half::{bf16, f16};

use super::geom::Geom;

/// One of the three convolution passes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Pass {
    /// `y = conv(x, w)` on (x, w).
    Forward,
    /// `dx` on (dy, w).
    BackwardInput,
    /// `dw` on (x, dy).
    BackwardWeight,
}

/// Runs pass `pass` of convolution `g` on two CUDA operands (see [`Pass`] for which),
/// returning its result.
pub fn run(
    pass: Pass,
    g: &Geom,
    name: &str,
    (s1, l1): (&CudaStorage, &Layout),
    (s2, l2): (&CudaStorage, &Layout),
) -> Result<(CudaStorage, Shape)> {
    let (x, w, y) = shapes(g);
    let (e1, e2, out) = match pass {
        Pass::Forward => (x, w, y),
        Pass::BackwardInput => (y, w, x),
        Pass::BackwardWeight => (x, y, w),
    };
    if l1.shape() != &e1 || l2.shape() != &e2 {
        bail!(
            "{name}: operands {:?}, {:?}, expected {e1:?}, {e2:?}",
            l1.shape(),
            l2.shape()
        );
    }
    let dev = &s1.device;
    let storage = match (s1.dtype(), s2.dtype()) {
        (DType::F32, DType::F32) => typed::<f32>(pass, g, dev, (s1, l1), (s2, l2), &out)?,
        (DType::F64, DType::F64) => typed::<f64>(pass, g, dev, (s1, l1), (s2, l2), &out)?,
        (DType::F16, DType::F16) => typed::<f16>(pass, g, dev, (s1, l1), (s2, l2), &out)?,
        (DType::BF16, DType::BF16) => typed::<bf16>(pass, g, dev, (s1, l1), (s2, l2), &out)?,
        (a, b) => bail!("{name}: unsupported dtypes {a:?}, {b:?}"),
    };
    Ok((storage, out))
}

/// Input, weight and output shapes of `g`.
fn shapes(g: &Geom) -> (Shape, Shape, Shape) {
    (
        Shape::from((g.n, g.c_in, g.h, g.w)),
        Shape::from((g.c_out, g.c_in / g.groups, g.kh, g.kw)),
        Shape::from((g.n, g.c_out, g.ho(), g.wo())),
    )
}

/// An element type cuDNN convolves, with the type it accumulates in.
trait Element: CudaDType + CudnnDataType + DeviceRepr {
    const DTYPE: DType;
    /// The convolution descriptor's compute type.
    const COMPUTE: sys::cudnnDataType_t;
}

impl Element for f32 {
    const DTYPE: DType = DType::F32;
    const COMPUTE: sys::cudnnDataType_t = sys::cudnnDataType_t::CUDNN_DATA_FLOAT;
}

impl Element for f64 {
    const DTYPE: DType = DType::F64;
    const COMPUTE: sys::cudnnDataType_t = sys::cudnnDataType_t::CUDNN_DATA_DOUBLE;
}

impl Element for f16 {
    const DTYPE: DType = DType::F16;
    const COMPUTE: sys::cudnnDataType_t = sys::cudnnDataType_t::CUDNN_DATA_FLOAT;
}

impl Element for bf16 {
    const DTYPE: DType = DType::BF16;
    const COMPUTE: sys::cudnnDataType_t = sys::cudnnDataType_t::CUDNN_DATA_FLOAT;
}

/// The contiguous part of `s` that `l` describes, as a view.
fn operand<'a, T: Element>(
    s: &'a CudaStorage,
    l: &Layout,
) -> Result<cudarc::driver::CudaView<'a, T>> {
    let Some((start, end)) = l.contiguous_offsets() else {
        bail!("cudnn conv: operand is not contiguous");
    };
    Ok(s.as_cuda_slice::<T>()?.slice(start..end))
}

fn typed<T: Element>(
    pass: Pass,
    g: &Geom,
    dev: &CudaDevice,
    (s1, l1): (&CudaStorage, &Layout),
    (s2, l2): (&CudaStorage, &Layout),
    out: &Shape,
) -> Result<CudaStorage> {
    let stream = dev.cuda_stream();
    let a = operand::<T>(s1, l1)?;
    let b = operand::<T>(s2, l2)?;
    // SAFETY: cuDNN writes every output element (beta = 0 never reads them).
    let mut dst = unsafe { dev.alloc::<T>(out.elem_count())? };
    let math = math_for::<T>();
    let key = Key {
        device: dev.id(),
        geom: *g,
        dtype: T::DTYPE,
        pass,
        math,
    };
    with_handle(dev, |handle| {
        let desc = Descriptors::new::<T>(g, math).map_err(wrap)?;
        let plan = plan(handle, &desc, key)?;
        desc.set_math(plan.math).map_err(wrap)?;
        let mut workspace = if plan.workspace > 0 {
            // SAFETY: scratch memory cuDNN writes before it reads.
            Some(unsafe { dev.alloc::<u8>(plan.workspace)? })
        } else {
            None
        };
        let (pa, _ga) = a.device_ptr(&stream);
        let (pb, _gb) = b.device_ptr(&stream);
        let (pd, _gd) = dst.device_ptr_mut(&stream);
        let (pw, _gw) = match workspace.as_mut() {
            Some(ws) => {
                let (p, guard) = ws.device_ptr_mut(&stream);
                (p as *mut c_void, Some(guard))
            }
            None => (std::ptr::null_mut(), None),
        };
        let (alpha, beta) = scaling::<T>();
        let (alpha, beta) = (alpha.as_ptr(), beta.as_ptr());
        let (a, b, d) = (pa as *const c_void, pb as *const c_void, pd as *mut c_void);
        // SAFETY: the descriptors describe these contiguous buffers (shapes checked in
        // `run`), the workspace has the size the plan asks for, and all run on `stream`.
        let status = unsafe {
            match plan.algo {
                Algo::Forward(algo) => result::convolution_forward(
                    handle,
                    alpha,
                    desc.x.0,
                    a,
                    desc.w.0,
                    b,
                    desc.conv.0,
                    algo,
                    pw,
                    plan.workspace,
                    beta,
                    desc.y.0,
                    d,
                ),
                Algo::BackwardInput(algo) => result::convolution_backward_data(
                    handle,
                    alpha,
                    desc.w.0,
                    b,
                    desc.y.0,
                    a,
                    desc.conv.0,
                    algo,
                    pw,
                    plan.workspace,
                    beta,
                    desc.x.0,
                    d,
                ),
                Algo::BackwardWeight(algo) => result::convolution_backward_filter(
                    handle,
                    alpha,
                    desc.x.0,
                    a,
                    desc.y.0,
                    b,
                    desc.conv.0,
                    algo,
                    pw,
                    plan.workspace,
                    beta,
                    desc.w.0,
                    d,
                ),
            }
        };
        status.map_err(wrap)
    })?;
    Ok(CudaStorage::wrap_cuda_slice(dst, dev.clone()))
}

/// alpha = 1 and beta = 0 in the scaling type cuDNN reads for `T` (double for f64,
/// float for everything else).
fn scaling<T: Element>() -> (Scalar, Scalar) {
    match T::DTYPE {
        DType::F64 => (Scalar::F64(1.0), Scalar::F64(0.0)),
        _ => (Scalar::F32(1.0), Scalar::F32(0.0)),
    }
}

/// A host scaling factor that cuDNN reads through a pointer.
enum Scalar {
    F32(f32),
    F64(f64),
}

impl Scalar {
    fn as_ptr(&self) -> *const c_void {
        match self {
            Scalar::F32(v) => v as *const f32 as *const c_void,
            Scalar::F64(v) => v as *const f64 as *const c_void,
        }
    }
}

/// The math cuDNN may use for `T`: tensor cores for half types; for f32 only where
/// candle allows reduced precision (TF32), as for its matmuls.
fn math_for<T: Element>() -> sys::cudnnMathType_t {
    use sys::cudnnMathType_t as M;
    match T::DTYPE {
        DType::F16 | DType::BF16 => M::CUDNN_TENSOR_OP_MATH,
        DType::F32 if candle_core::cuda_backend::gemm_reduced_precision_f32() => {
            M::CUDNN_DEFAULT_MATH
        }
        DType::F32 => M::CUDNN_FMA_MATH,
        _ => M::CUDNN_DEFAULT_MATH,
    }
}

fn wrap(e: cudarc::cudnn::CudnnError) -> candle_core::Error {
    candle_core::Error::Cuda(Box::new(e))
}

/// What the algorithm cache is keyed on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Key {
    device: DeviceId,
    geom: Geom,
    dtype: DType,
    pass: Pass,
    math: sys::cudnnMathType_t,
}

/// An algorithm of one of the three passes.
#[derive(Debug, Clone, Copy)]
enum Algo {
    Forward(sys::cudnnConvolutionFwdAlgo_t),
    BackwardInput(sys::cudnnConvolutionBwdDataAlgo_t),
    BackwardWeight(sys::cudnnConvolutionBwdFilterAlgo_t),
}

/// The fastest algorithm found for a key, the math it ran with and its workspace.
#[derive(Debug, Clone, Copy)]
struct Plan {
    algo: Algo,
    math: sys::cudnnMathType_t,
    workspace: usize,
}

/// Found plans, for the whole process (a search times every algorithm: milliseconds).
fn plans() -> &'static Mutex<HashMap<Key, Plan>> {
    static PLANS: OnceLock<Mutex<HashMap<Key, Plan>>> = OnceLock::new();
    PLANS.get_or_init(Default::default)
}

/// The cached plan for `key`, searching on first use.
fn plan(handle: sys::cudnnHandle_t, d: &Descriptors, key: Key) -> Result<Plan> {
    if let Some(p) = plans().lock().map_err(|_| poisoned())?.get(&key) {
        return Ok(*p);
    }
    let found = search(handle, d, key.pass).map_err(wrap)?;
    let Some(p) = found else {
        bail!(
            "cudnn conv: no algorithm runs {:?} {:?}",
            key.pass,
            key.geom
        );
    };
    tracing::debug!(?key, plan = ?p, "cudnn conv: algorithm found");
    plans().lock().map_err(|_| poisoned())?.insert(key, p);
    Ok(p)
}

fn poisoned() -> candle_core::Error {
    candle_core::Error::Msg("cudnn conv: algorithm cache poisoned".into())
}

/// Times every algorithm for `pass` (cuDNN allocates its own buffers) and returns the
/// fastest that succeeded; cuDNN sorts its results by time.
fn search(
    handle: sys::cudnnHandle_t,
    d: &Descriptors,
    pass: Pass,
) -> std::result::Result<Option<Plan>, cudarc::cudnn::CudnnError> {
    const MAX: usize = 16;
    let mut count = 0;
    // One arm per pass: its perf-result type, its find call's descriptors, its variant.
    macro_rules! find {
        ($perf:ty, $find:path, ($($desc:expr),*), $variant:path) => {{
            let mut perf = [std::mem::zeroed::<$perf>(); MAX];
            $find(handle, $($desc,)* MAX as i32, &mut count, perf.as_mut_ptr()).result()?;
            perf[..count as usize]
                .iter()
                .find(|p| p.status == sys::cudnnStatus_t::CUDNN_STATUS_SUCCESS)
                .map(|p| Plan {
                    algo: $variant(p.algo),
                    math: p.mathType,
                    workspace: p.memory,
                })
        }};
    }
    // SAFETY: valid descriptors and handle; `count` bounds what cuDNN wrote.
    let plan = unsafe {
        match pass {
            Pass::Forward => find!(
                sys::cudnnConvolutionFwdAlgoPerf_t,
                sys::cudnnFindConvolutionForwardAlgorithm,
                (d.x.0, d.w.0, d.conv.0, d.y.0),
                Algo::Forward
            ),
            Pass::BackwardInput => find!(
                sys::cudnnConvolutionBwdDataAlgoPerf_t,
                sys::cudnnFindConvolutionBackwardDataAlgorithm,
                (d.w.0, d.y.0, d.conv.0, d.x.0),
                Algo::BackwardInput
            ),
            Pass::BackwardWeight => find!(
                sys::cudnnConvolutionBwdFilterAlgoPerf_t,
                sys::cudnnFindConvolutionBackwardFilterAlgorithm,
                (d.x.0, d.y.0, d.conv.0, d.w.0),
                Algo::BackwardWeight
            ),
        }
    };
    Ok(plan)
}

/// A cuDNN handle bound to one device's stream.
struct Handle(sys::cudnnHandle_t);

impl Drop for Handle {
    fn drop(&mut self) {
        // SAFETY: created by `create_handle`, destroyed once.
        unsafe {
            let _ = result::destroy_handle(self.0);
        }
    }
}

/// Runs `f` with this thread's handle for `dev` (handles are not thread-safe; candle
/// keeps its own the same way).
fn with_handle<R>(dev: &CudaDevice, f: impl FnOnce(sys::cudnnHandle_t) -> Result<R>) -> Result<R> {
    thread_local! {
        static HANDLES: RefCell<HashMap<DeviceId, Rc<Handle>>> = RefCell::new(HashMap::new());
    }
    let handle = HANDLES.with(|h| -> Result<Rc<Handle>> {
        if let Some(handle) = h.borrow().get(&dev.id()) {
            return Ok(handle.clone());
        }
        let handle = Handle(result::create_handle().map_err(wrap)?);
        let stream: Arc<CudaStream> = dev.cuda_stream();
        // SAFETY: a fresh handle and the device's live stream.
        unsafe { result::set_stream(handle.0, stream.cu_stream() as sys::cudaStream_t) }
            .map_err(wrap)?;
        let handle = Rc::new(handle);
        h.borrow_mut().insert(dev.id(), handle.clone());
        Ok(handle)
    })?;
    f(handle.0)
}

/// The four descriptors of one convolution (input, weight, output, convolution).
struct Descriptors {
    x: TensorDesc,
    w: FilterDesc,
    y: TensorDesc,
    conv: ConvDesc,
}

struct TensorDesc(sys::cudnnTensorDescriptor_t);
struct FilterDesc(sys::cudnnFilterDescriptor_t);
struct ConvDesc(sys::cudnnConvolutionDescriptor_t);

impl Drop for TensorDesc {
    fn drop(&mut self) {
        // SAFETY: created once, destroyed once.
        unsafe {
            let _ = result::destroy_tensor_descriptor(self.0);
        }
    }
}

impl Drop for FilterDesc {
    fn drop(&mut self) {
        // SAFETY: created once, destroyed once.
        unsafe {
            let _ = result::destroy_filter_descriptor(self.0);
        }
    }
}

impl Drop for ConvDesc {
    fn drop(&mut self) {
        // SAFETY: created once, destroyed once.
        unsafe {
            let _ = result::destroy_convolution_descriptor(self.0);
        }
    }
}

impl Descriptors {
    fn new<T: Element>(
        g: &Geom,
        math: sys::cudnnMathType_t,
    ) -> std::result::Result<Self, cudarc::cudnn::CudnnError> {
        use sys::cudnnTensorFormat_t::CUDNN_TENSOR_NCHW as NCHW;
        let i = |v: usize| v as i32;
        let x = TensorDesc(result::create_tensor_descriptor()?);
        let y = TensorDesc(result::create_tensor_descriptor()?);
        let w = FilterDesc(result::create_filter_descriptor()?);
        let conv = ConvDesc(result::create_convolution_descriptor()?);
        // SAFETY: fresh descriptors, set once each.
        unsafe {
            result::set_tensor4d_descriptor(
                x.0,
                NCHW,
                T::DATA_TYPE,
                [i(g.n), i(g.c_in), i(g.h), i(g.w)],
            )?;
            result::set_tensor4d_descriptor(
                y.0,
                NCHW,
                T::DATA_TYPE,
                [i(g.n), i(g.c_out), i(g.ho()), i(g.wo())],
            )?;
            result::set_filter4d_descriptor(
                w.0,
                T::DATA_TYPE,
                NCHW,
                [i(g.c_out), i(g.c_in / g.groups), i(g.kh), i(g.kw)],
            )?;
            result::set_convolution2d_descriptor(
                conv.0,
                i(g.ph),
                i(g.pw),
                i(g.sh),
                i(g.sw),
                1,
                1,
                sys::cudnnConvolutionMode_t::CUDNN_CROSS_CORRELATION,
                T::COMPUTE,
            )?;
            result::set_convolution_group_count(conv.0, i(g.groups))?;
            result::set_convolution_math_type(conv.0, math)?;
        }
        Ok(Self { x, w, y, conv })
    }

    /// Runs with the math the search measured (it may differ from the one allowed).
    fn set_math(
        &self,
        math: sys::cudnnMathType_t,
    ) -> std::result::Result<(), cudarc::cudnn::CudnnError> {
        // SAFETY: a live descriptor.
        unsafe { result::set_convolution_math_type(self.conv.0, math) }
    }
}
