//! The ONNX Runtime backend: an exported ST-ResNet (see [`crate::onnx`]) run by ONNX
//! Runtime through the `ort` crate, the library loaded at run time from `--ort-library`
//! or `ORT_DYLIB_PATH` (`scripts/fetch-ort.sh` puts one in `target/ort/`).

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use candle_core::Tensor;
use ort::environment::Environment;
use ort::ep;
use ort::session::Session;
use ort::session::builder::GraphOptimizationLevel;

use super::Backend;
use crate::onnx;

/// Where ONNX Runtime runs the graph.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provider {
    /// ONNX Runtime's CPU kernels.
    Cpu,
    /// The CUDA execution provider on this device; loading fails if the library lacks it.
    Cuda(i32),
}

impl Provider {
    /// Parses the server's device syntax: `cpu`, `cuda` or `cuda:N`.
    pub fn parse(device: &str) -> crate::Result<Provider> {
        match device {
            "cpu" => Ok(Provider::Cpu),
            "cuda" => Ok(Provider::Cuda(0)),
            _ => device
                .strip_prefix("cuda:")
                .and_then(|n| n.parse().ok())
                .map(Provider::Cuda)
                .ok_or_else(|| {
                    crate::Error::InvalidArgument(format!(
                        "device {device:?}: expected cpu, cuda or cuda:N"
                    ))
                }),
        }
    }

    /// The name `parse` accepts.
    pub fn name(self) -> String {
        match self {
            Provider::Cpu => "cpu".to_string(),
            Provider::Cuda(n) => format!("cuda:{n}"),
        }
    }
}

/// How to load ONNX Runtime and where to run.
#[derive(Debug, Clone)]
pub struct OrtOptions {
    /// The `libonnxruntime` file; `None` reads `ORT_DYLIB_PATH`.
    pub library: Option<PathBuf>,
    /// The execution provider.
    pub provider: Provider,
    /// Threads inside one operator (`None`: ONNX Runtime's default, one per core).
    pub intra_threads: Option<usize>,
}

/// The process's one ONNX Runtime environment and the library it came from.
static ENVIRONMENT: Mutex<Option<(PathBuf, Environment)>> = Mutex::new(None);

/// Loads ONNX Runtime from `library` (or `ORT_DYLIB_PATH`) once per process and returns
/// its environment; a missing, foreign or too old library is an error, never a panic.
pub fn environment(library: Option<&Path>) -> crate::Result<Environment> {
    let path = match library {
        Some(p) => p.to_path_buf(),
        None => std::env::var_os("ORT_DYLIB_PATH")
            .map(PathBuf::from)
            .ok_or_else(|| {
                load_error(
                    "no library given: pass --ort-library or set ORT_DYLIB_PATH \
                     (scripts/fetch-ort.sh downloads libonnxruntime.so into target/ort/)",
                )
            })?,
    };
    // Absolute, because ort resolves relative paths against the executable's folder.
    let path = std::fs::canonicalize(&path)
        .ok()
        .filter(|p| p.is_file())
        .ok_or_else(|| {
            load_error(&format!(
                "{} does not exist or is not a file (scripts/fetch-ort.sh downloads one)",
                path.display()
            ))
        })?;
    let mut current = ENVIRONMENT.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((loaded, env)) = current.as_ref() {
        if *loaded == path {
            return Ok(env.clone());
        }
        return Err(load_error(&format!(
            "{} was asked for, but this process already loaded {} (one library per process)",
            path.display(),
            loaded.display()
        )));
    }
    let env = ort::init_from(&path)
        .map_err(|e| load_error(&format!("{}: {e}", path.display())))?
        .with_name("revstream")
        .with_telemetry(false)
        .build()
        .map_err(|e| load_error(&format!("{}: {e}", path.display())))?;
    tracing::info!(library = %path.display(), "loaded ONNX Runtime");
    *current = Some((path, env.clone()));
    Ok(env)
}

/// An ONNX Runtime session over the graph in `model`, on `options`' execution provider.
pub fn session(model: &[u8], options: &OrtOptions) -> crate::Result<Session> {
    let env = environment(options.library.as_deref())?;
    let mut builder = Session::builder(&env)
        .map_err(|e| ort_error("session builder", e))?
        .with_optimization_level(GraphOptimizationLevel::Level3)
        .map_err(|e| ort_error("optimisation level", e))?;
    if let Some(n) = options.intra_threads {
        builder = builder
            .with_intra_threads(n)
            .map_err(|e| ort_error("threads", e))?;
    }
    if let Provider::Cuda(device) = options.provider {
        // Without error_on_failure ONNX Runtime silently falls back to its CPU kernels.
        let cuda = ep::CUDA::default()
            .with_device_id(device)
            .build()
            .error_on_failure();
        builder = builder
            .with_execution_providers([cuda])
            .map_err(|e| ort_error("CUDA execution provider unavailable", e))?;
    }
    builder
        .commit_from_memory(model)
        .map_err(|e| ort_error("loading the model", e))
}

fn load_error(detail: &str) -> crate::Error {
    crate::Error::Backend(format!("cannot load ONNX Runtime: {detail}"))
}

pub(crate) fn ort_error(context: &str, e: impl std::fmt::Display) -> crate::Error {
    crate::Error::Backend(format!("onnx runtime: {context}: {e}"))
}

/// Per-stream scores of one batch, one row per sample.
#[derive(Debug, Clone, PartialEq)]
pub struct OrtScores {
    /// Fused class probabilities.
    pub probabilities: Vec<Vec<f32>>,
    /// Fused logits.
    pub fused: Vec<Vec<f32>>,
    /// Appearance stream logits.
    pub appearance: Vec<Vec<f32>>,
    /// Motion stream logits.
    pub motion: Vec<Vec<f32>>,
}

/// An ONNX Runtime session over an exported two-stream model.
pub struct OrtBackend {
    session: Session,
    provider: Provider,
    max_batch: usize,
}

impl OrtBackend {
    /// Builds a session from ONNX bytes.
    pub fn load(model: &[u8], options: &OrtOptions, max_batch: usize) -> crate::Result<Self> {
        Ok(OrtBackend {
            session: session(model, options)?,
            provider: options.provider,
            max_batch,
        })
    }

    /// Uses `dir/model.onnx`, or exports `dir`'s safetensors weights to ONNX in memory.
    pub fn load_dir(dir: &Path, options: &OrtOptions, max_batch: usize) -> crate::Result<Self> {
        let file = dir.join("model.onnx");
        let bytes = if file.is_file() {
            std::fs::read(&file)?
        } else {
            let spec = crate::artifact::ModelSpec::load(dir)?;
            let weights = onnx::load_weights(&dir.join("model.safetensors"))?;
            onnx::to_bytes(&onnx::export(&spec.architecture, &weights)?)?
        };
        Self::load(&bytes, options, max_batch)
    }

    /// Runs the graph on rgb `(B, T, 3, H, W)` and flow `(B, T, 2L, H, W)`.
    pub fn scores(&mut self, rgb: &Tensor, flow: &Tensor) -> crate::Result<OrtScores> {
        let rgb = input(rgb)?;
        let flow = input(flow)?;
        let outputs = self
            .session
            .run(ort::inputs![onnx::INPUT_RGB => rgb, onnx::INPUT_FLOW => flow])
            .map_err(|e| ort_error("run", e))?;
        let rows = |name: &str| -> crate::Result<Vec<Vec<f32>>> {
            let value = outputs
                .get(name)
                .ok_or_else(|| ort_error("outputs", format!("the model has no output {name}")))?;
            let (shape, data) = value
                .try_extract_tensor::<f32>()
                .map_err(|e| ort_error(name, e))?;
            let width = match **shape {
                [_, k] if k > 0 => k as usize,
                _ => return Err(ort_error(name, format!("unexpected shape {shape:?}"))),
            };
            Ok(data.chunks(width).map(<[f32]>::to_vec).collect())
        };
        Ok(OrtScores {
            probabilities: rows(onnx::OUTPUT_PROBABILITIES)?,
            fused: rows(onnx::OUTPUT_FUSED)?,
            appearance: rows(onnx::OUTPUT_APPEARANCE)?,
            motion: rows(onnx::OUTPUT_MOTION)?,
        })
    }
}

/// A CPU tensor as an owned ONNX Runtime f32 tensor of the same shape.
pub(crate) fn input(t: &Tensor) -> crate::Result<ort::value::Tensor<f32>> {
    let shape: Vec<i64> = t.dims().iter().map(|&d| d as i64).collect();
    let data = t
        .to_dtype(candle_core::DType::F32)?
        .flatten_all()?
        .to_vec1::<f32>()?;
    ort::value::Tensor::from_array((shape, data)).map_err(|e| ort_error("input", e))
}

impl Backend for OrtBackend {
    fn name(&self) -> &'static str {
        "ort"
    }

    fn device(&self) -> String {
        self.provider.name()
    }

    fn max_batch(&self) -> usize {
        self.max_batch
    }

    fn predict(&mut self, rgb: &Tensor, flow: &Tensor) -> crate::Result<Vec<Vec<f32>>> {
        Ok(self.scores(rgb, flow)?.probabilities)
    }
}
