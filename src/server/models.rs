//! The served models: each folder's config and labels, and the backend thread with its
//! batching queue.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use candle_core::{Device, Tensor};

use super::config::{BackendKind, ServerConfig};
use super::metrics::Metrics;
use super::types::{InputSpec, ModelInfo};
use crate::artifact::external::ExternalSpec;
use crate::artifact::{ModelFolder, ModelSpec};
use crate::backend::device::{self, Precision};
use crate::backend::{Backend, candle::CandleBackend};
use crate::flow::Preset;
use crate::pipeline::preprocess::{self, FlowEngine, Prepared, Preprocessing};
use crate::pipeline::queue::{BatchOptions, BatchQueue, LoadState};
use crate::pipeline::rgb::{self, RgbPreprocessing};
use crate::pipeline::{Cancel, PipelineError};
use crate::video::Video;

/// One model being served.
pub struct ServedModel {
    /// Its name (the folder's name).
    pub name: String,
    /// Class labels by index.
    pub labels: Vec<String>,
    /// How to prepare its inputs.
    pub preprocessing: Preparation,
    /// Segments scored per video unless the request says otherwise.
    pub default_segments: usize,
    /// The flow preset's name (`none` for an RGB-only model).
    pub preset: &'static str,
    /// Its backend thread's queue.
    pub queue: BatchQueue,
}

/// How a served model's inputs are made from a video.
#[derive(Debug, Clone)]
pub enum Preparation {
    /// RGB frames and TV-L1 flow for our two-stream network.
    TwoStream(Preprocessing),
    /// RGB frames only, for an external classifier.
    Rgb(RgbPreprocessing),
}

impl Preparation {
    /// Samples `segments` samples over frames `[range.0, range.1)` of `video`.
    pub fn prepare(
        &self,
        video: &mut Video,
        range: (u64, u64),
        segments: usize,
        cancel: &Cancel,
    ) -> Result<Prepared, PipelineError> {
        match self {
            Preparation::TwoStream(p) => preprocess::prepare(video, p, range, segments, cancel),
            Preparation::Rgb(p) => rgb::prepare(video, p, range, segments, cancel),
        }
    }

    /// Frames per sample, crop side and flow stack (0 without flow).
    fn shape(&self) -> (usize, u32, usize) {
        match self {
            Preparation::TwoStream(p) => (p.frames, p.size, p.flow_stack),
            Preparation::Rgb(p) => (p.frames, p.size, 0),
        }
    }

    /// The flow's supersampling factor (0 without flow).
    fn flow_supersample(&self) -> u32 {
        match self {
            Preparation::TwoStream(p) => p.flow_supersample,
            Preparation::Rgb(_) => 0,
        }
    }
}

type Loader = Box<dyn FnOnce() -> crate::Result<Box<dyn Backend>> + Send>;

impl ServedModel {
    /// Reads `dir`'s config.json and starts a backend thread loading its model: our
    /// network on `--backend`, or an external ONNX graph, always on ONNX Runtime.
    pub fn start(
        dir: &Path,
        config: &ServerConfig,
        metrics: &Metrics,
    ) -> crate::Result<ServedModel> {
        let name = dir
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| crate::Error::Model(format!("{} has no folder name", dir.display())))?
            .to_string();
        let folder = ModelFolder::load(dir)?;
        let labels = folder.labels().to_vec();
        let (preprocessing, default_segments, preset, load) = match folder {
            ModelFolder::Native(spec) => native(dir, spec, config),
            ModelFolder::External(spec) => external(dir, spec, config, &name),
        };
        let warmup = warmup_inputs(&preprocessing)?;
        let options = BatchOptions {
            max_batch: config.max_batch,
            max_wait: Duration::from_millis(config.max_batch_wait_ms),
            capacity: config.batch_queue,
        };
        let queue = BatchQueue::start(&name, load, warmup, options, metrics.queue_metrics())?;
        Ok(ServedModel {
            name,
            labels,
            preprocessing,
            default_segments: default_segments.max(1),
            preset,
            queue,
        })
    }

    /// Its description for the API.
    pub fn info(&self) -> ModelInfo {
        let backend = self.queue.info();
        let (frames, size, flow_stack) = self.preprocessing.shape();
        ModelInfo {
            name: self.name.clone(),
            labels: self.labels.clone(),
            input: Some(InputSpec {
                frames: frames as u32,
                size,
                flow_stack: flow_stack as u32,
                preset: self.preset.to_string(),
                segments: self.default_segments as u32,
                flow_supersample: self.preprocessing.flow_supersample(),
            }),
            backend: backend.name,
            device: backend.device,
            dtype: backend.dtype,
            status: match self.queue.state() {
                LoadState::Loading => "loading",
                LoadState::Ready => "ready",
                LoadState::Failed(_) => "failed",
            }
            .to_string(),
        }
    }
}

/// Our two-stream network: preparation from its spec, loaded on `--backend`.
fn native(
    dir: &Path,
    spec: ModelSpec,
    config: &ServerConfig,
) -> (Preparation, usize, &'static str, Loader) {
    let arch = spec.architecture;
    let pre = spec.preprocessing;
    let size = arch.input_size as u32;
    let preset: Preset = config
        .flow_preset
        .map(Preset::from)
        .or(pre.flow_preset)
        .unwrap_or(Preset::Fast);
    let preprocessing = Preprocessing {
        frames: arch.frames,
        flow_stack: arch.flow_stack,
        size,
        short_side: pre.short_side.unwrap_or(size).max(size),
        mean: pre.mean,
        std: pre.std,
        flow_bound: pre.flow_bound,
        flow_fps: pre.flow_fps,
        flow_supersample: pre.flow_supersample,
        tvl1: preset.params(),
        flow_engine: FlowEngine::Cpu,
    };
    let weights: PathBuf = dir.join("model.safetensors");
    let device_name = config.device.clone();
    let precision = config.dtype;
    // Resolved here, so flow can follow the model onto a GPU; a bad name fails the
    // load on the backend thread like any other load error.
    let candle_device = match config.backend {
        BackendKind::Candle => Some(device::parse(&device_name)),
        BackendKind::Ort => None,
    };
    let preprocessing = match &candle_device {
        // The model runs on a GPU: the batched tensor TV-L1 runs there too.
        Some(Ok(d)) if d.is_cuda() => Preprocessing {
            flow_engine: FlowEngine::Batched(d.clone()),
            ..preprocessing
        },
        _ => preprocessing,
    };
    let max_batch = config.max_batch;
    let ort_library = config.ort_library.clone();
    let model_dir = dir.to_path_buf();
    let load: Loader = Box::new(move || match candle_device {
        Some(parsed) => {
            let device = parsed?;
            let precision =
                device::precision_for(&device, device::is_auto(&device_name), precision)?;
            Ok(Box::new(CandleBackend::load_as(
                &arch,
                &weights,
                device,
                precision.dtype(),
                max_batch,
            )?) as Box<dyn Backend>)
        }
        None => load_ort(&model_dir, ort_library, &device_name, precision, max_batch),
    });
    let preset = match preset {
        Preset::Accurate => "accurate",
        Preset::Fast => "fast",
    };
    (
        Preparation::TwoStream(preprocessing),
        pre.segments,
        preset,
        load,
    )
}

/// An external RGB-only ONNX model: preparation from its config, loaded on ONNX Runtime
/// whatever `--backend` says (candle cannot run an arbitrary graph).
fn external(
    dir: &Path,
    spec: ExternalSpec,
    config: &ServerConfig,
    name: &str,
) -> (Preparation, usize, &'static str, Loader) {
    if config.backend != BackendKind::Ort {
        tracing::info!(model = name, "external ONNX model: served by ONNX Runtime");
    }
    let preprocessing = RgbPreprocessing::from(&spec.input);
    let segments = spec.segments;
    let device_name = config.device.clone();
    let precision = config.dtype;
    let max_batch = config.max_batch;
    let ort_library = config.ort_library.clone();
    let model_dir = dir.to_path_buf();
    let load: Loader = Box::new(move || {
        load_ort_rgb(
            &model_dir,
            &spec,
            ort_library,
            &device_name,
            precision,
            max_batch,
        )
    });
    (Preparation::Rgb(preprocessing), segments, "none", load)
}

#[cfg(feature = "ort")]
fn ort_options(
    library: Option<PathBuf>,
    device: &str,
    precision: Precision,
) -> crate::Result<crate::backend::ort::OrtOptions> {
    if precision != Precision::F32 {
        return Err(crate::Error::InvalidArgument(
            "--dtype bf16 is for the candle backend; ONNX Runtime runs the f32 graph".to_string(),
        ));
    }
    // ONNX Runtime's CUDA provider is chosen explicitly (cuda:N), never guessed.
    let device = if device::is_auto(device) {
        "cpu"
    } else {
        device
    };
    Ok(crate::backend::ort::OrtOptions {
        library,
        provider: crate::backend::ort::Provider::parse(device)?,
        intra_threads: None,
    })
}

/// The ONNX Runtime backend for `dir` (its model.onnx, or its weights exported in memory).
#[cfg(feature = "ort")]
fn load_ort(
    dir: &Path,
    library: Option<PathBuf>,
    device: &str,
    precision: Precision,
    max_batch: usize,
) -> crate::Result<Box<dyn Backend>> {
    let options = ort_options(library, device, precision)?;
    Ok(Box::new(crate::backend::ort::OrtBackend::load_dir(
        dir, &options, max_batch,
    )?))
}

/// The ONNX Runtime backend for an external model folder.
#[cfg(feature = "ort")]
fn load_ort_rgb(
    dir: &Path,
    spec: &ExternalSpec,
    library: Option<PathBuf>,
    device: &str,
    precision: Precision,
    max_batch: usize,
) -> crate::Result<Box<dyn Backend>> {
    let options = ort_options(library, device, precision)?;
    Ok(Box::new(crate::backend::ort_rgb::OrtRgbBackend::load_dir(
        dir, spec, &options, max_batch,
    )?))
}

/// Without the `ort` feature there is no ONNX Runtime backend to load.
#[cfg(not(feature = "ort"))]
fn load_ort(
    _dir: &Path,
    _library: Option<PathBuf>,
    _device: &str,
    _precision: Precision,
    _max_batch: usize,
) -> crate::Result<Box<dyn Backend>> {
    Err(no_ort("--backend ort"))
}

/// Without the `ort` feature an external ONNX model cannot be served.
#[cfg(not(feature = "ort"))]
fn load_ort_rgb(
    dir: &Path,
    _spec: &ExternalSpec,
    _library: Option<PathBuf>,
    _device: &str,
    _precision: Precision,
    _max_batch: usize,
) -> crate::Result<Box<dyn Backend>> {
    Err(no_ort(&format!("the ONNX model in {}", dir.display())))
}

#[cfg(not(feature = "ort"))]
fn no_ort(what: &str) -> crate::Error {
    crate::Error::InvalidArgument(format!(
        "{what} needs a build with the `ort` feature (cargo build --features ort)"
    ))
}

/// One sample of zeros, to run the model once before declaring it ready.
fn warmup_inputs(p: &Preparation) -> crate::Result<(Tensor, Tensor)> {
    let (t, s, l) = p.shape();
    let s = s as usize;
    let rgb = Tensor::zeros((1, t, 3, s, s), candle_core::DType::F32, &Device::Cpu)?;
    let flow = Tensor::zeros((1, t, 2 * l, s, s), candle_core::DType::F32, &Device::Cpu)?;
    Ok((rgb, flow))
}

/// Every served model by name; the first folder also answers to `default`.
pub struct Models {
    by_name: HashMap<String, Arc<ServedModel>>,
    order: Vec<Arc<ServedModel>>,
}

impl Models {
    /// Starts a backend thread for each model folder.
    pub fn start(config: &ServerConfig, metrics: &Metrics) -> crate::Result<Models> {
        if config.model_dirs.is_empty() {
            return Err(crate::Error::Model("no model folder given".to_string()));
        }
        let mut by_name = HashMap::new();
        let mut order = Vec::new();
        for dir in &config.model_dirs {
            let model = Arc::new(ServedModel::start(dir, config, metrics)?);
            if by_name
                .insert(model.name.clone(), Arc::clone(&model))
                .is_some()
            {
                return Err(crate::Error::Model(format!(
                    "two model folders are named {}",
                    model.name
                )));
            }
            order.push(model);
        }
        by_name
            .entry("default".to_string())
            .or_insert_with(|| Arc::clone(&order[0]));
        Ok(Models { by_name, order })
    }

    /// The model called `name`.
    pub fn get(&self, name: &str) -> Option<&Arc<ServedModel>> {
        self.by_name.get(name)
    }

    /// Every model, in the order given.
    pub fn all(&self) -> &[Arc<ServedModel>] {
        &self.order
    }

    /// Waits until every model is ready or one failed; returns the first failure.
    pub async fn wait_loaded(&self) -> Result<(), String> {
        for model in &self.order {
            if let LoadState::Failed(e) = model.queue.wait_loaded().await {
                return Err(format!("model {}: {e}", model.name));
            }
        }
        Ok(())
    }
}
