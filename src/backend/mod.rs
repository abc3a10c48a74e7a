//! Inference engines behind one small trait; each runs on its own thread. [`load`] is the
//! one place that knows which engine serves which kind of model folder: a new backend is
//! a module beside this file, a [`BackendKind`] variant and an arm in [`load`].

pub mod candle;
pub mod device;
#[cfg(feature = "ort")]
pub mod ort;
#[cfg(feature = "ort")]
pub mod ort_rgb;

use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};

use crate::artifact::{ExternalSpec, ModelFolder, ModelSpec};
use candle::CandleBackend;
use device::Precision;

/// A loaded model that turns batches of inputs into class probabilities.
pub trait Backend: Send {
    /// The engine's name (`candle`).
    fn name(&self) -> &'static str;
    /// The device it runs on (`cpu`, `cuda:0`).
    fn device(&self) -> String;
    /// The floating-point type it computes in (`f32`, `bf16`).
    fn dtype(&self) -> &'static str {
        "f32"
    }
    /// The most samples one call to [`Backend::predict`] should get.
    fn max_batch(&self) -> usize;
    /// Fused class probabilities, one row per sample, for `rgb` (B, T, 3, H, W) and
    /// `flow` (B, T, 2L, H, W) on the CPU.
    fn predict(&mut self, rgb: &Tensor, flow: &Tensor) -> crate::Result<Vec<Vec<f32>>>;
}

/// Which inference engine runs our two-stream network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BackendKind {
    /// candle on the CPU or a CUDA device.
    Candle,
    /// ONNX Runtime (built with the `ort` feature; the library from `--ort-library`).
    Ort,
}

/// How models are run (the server's engine flags).
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// The engine for our networks; external ONNX models always run on ONNX Runtime.
    pub backend: BackendKind,
    /// `auto`, `cpu`, `cuda` or `cuda:N` ([`device::parse`]).
    pub device: String,
    /// f32, or bf16 on CUDA (candle only).
    pub precision: Precision,
    /// The ONNX Runtime library; `None` reads `ORT_DYLIB_PATH`.
    pub ort_library: Option<PathBuf>,
    /// The most samples one forward pass gets.
    pub max_batch: usize,
}

/// Builds the backend, on the thread that will own it: loading takes seconds and a GPU
/// context belongs to the thread that made it.
pub type Loader = Box<dyn FnOnce() -> crate::Result<Box<dyn Backend>> + Send>;

/// What [`load`] gives the caller.
pub struct Loaded {
    /// Builds the backend.
    pub loader: Loader,
    /// The GPU our network will run on, when candle runs it on one: flow can follow it
    /// there (`None` for the CPU, ONNX Runtime and external models).
    pub flow_device: Option<Device>,
}

/// The loader for the model in `dir`, whose config is `folder`: our network on
/// `options.backend`; an external ONNX graph on ONNX Runtime whatever it says (candle
/// cannot run an arbitrary graph). A bad device name fails on the backend thread, as any
/// other load error does.
pub fn load(dir: &Path, folder: &ModelFolder, options: &EngineOptions) -> Loaded {
    match folder {
        ModelFolder::Native(spec) => native(dir, spec, options),
        ModelFolder::External(spec) => {
            if options.backend != BackendKind::Ort {
                tracing::info!(model = %dir.display(), "external ONNX model: served by ONNX Runtime");
            }
            let (dir, spec, options) = (dir.to_path_buf(), spec.clone(), options.clone());
            Loaded {
                loader: Box::new(move || ort_rgb(&dir, &spec, &options)),
                flow_device: None,
            }
        }
    }
}

/// Our two-stream network on candle or ONNX Runtime.
fn native(dir: &Path, spec: &ModelSpec, options: &EngineOptions) -> Loaded {
    let dir = dir.to_path_buf();
    let options = options.clone();
    match options.backend {
        BackendKind::Candle => {
            // Parsed here, so flow can follow the model onto a GPU.
            let parsed = device::parse(&options.device);
            let flow_device = parsed.as_ref().ok().filter(|d| d.is_cuda()).cloned();
            let arch = spec.architecture.clone();
            Loaded {
                loader: Box::new(move || {
                    let device = parsed?;
                    let auto = device::is_auto(&options.device);
                    let precision = device::precision_for(&device, auto, options.precision)?;
                    Ok(Box::new(CandleBackend::load_as(
                        &arch,
                        &dir.join("model.safetensors"),
                        device,
                        precision.dtype(),
                        options.max_batch,
                    )?) as Box<dyn Backend>)
                }),
                flow_device,
            }
        }
        BackendKind::Ort => Loaded {
            loader: Box::new(move || ort_native(&dir, &options)),
            flow_device: None,
        },
    }
}

/// ONNX Runtime's settings from the engine options.
#[cfg(feature = "ort")]
fn ort_options(options: &EngineOptions) -> crate::Result<ort::OrtOptions> {
    if options.precision != Precision::F32 {
        return Err(crate::Error::InvalidArgument(
            "--dtype bf16 is for the candle backend; ONNX Runtime runs the f32 graph".to_string(),
        ));
    }
    // ONNX Runtime's CUDA provider is chosen explicitly (cuda:N), never guessed.
    let device = if device::is_auto(&options.device) {
        "cpu"
    } else {
        &options.device
    };
    Ok(ort::OrtOptions {
        library: options.ort_library.clone(),
        provider: ort::Provider::parse(device)?,
        intra_threads: None,
    })
}

/// Our network on ONNX Runtime (its model.onnx, or its weights exported in memory).
fn ort_native(dir: &Path, options: &EngineOptions) -> crate::Result<Box<dyn Backend>> {
    #[cfg(feature = "ort")]
    {
        let backend = ort::OrtBackend::load_dir(dir, &ort_options(options)?, options.max_batch)?;
        Ok(Box::new(backend))
    }
    #[cfg(not(feature = "ort"))]
    {
        let _ = (dir, options);
        Err(no_ort("--backend ort"))
    }
}

/// An external RGB-only model on ONNX Runtime.
fn ort_rgb(
    dir: &Path,
    spec: &ExternalSpec,
    options: &EngineOptions,
) -> crate::Result<Box<dyn Backend>> {
    #[cfg(feature = "ort")]
    {
        let options_ort = ort_options(options)?;
        let backend = ort_rgb::OrtRgbBackend::load_dir(dir, spec, &options_ort, options.max_batch)?;
        Ok(Box::new(backend))
    }
    #[cfg(not(feature = "ort"))]
    {
        let _ = (spec, options);
        Err(no_ort(&format!("the ONNX model in {}", dir.display())))
    }
}

#[cfg(not(feature = "ort"))]
fn no_ort(what: &str) -> crate::Error {
    crate::Error::InvalidArgument(format!(
        "{what} needs a build with the `ort` feature (cargo build --features ort)"
    ))
}
