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
use crate::backend::device::{self, Precision};
use crate::backend::{Backend, candle::CandleBackend};
use crate::flow::Preset;
use crate::pipeline::preprocess::{FlowEngine, Preprocessing};
use crate::pipeline::queue::{BatchOptions, BatchQueue, LoadState};
use crate::pipeline::spec::ModelSpec;

/// One model being served.
pub struct ServedModel {
    /// Its name (the folder's name).
    pub name: String,
    /// Class labels by index.
    pub labels: Vec<String>,
    /// How to prepare its inputs.
    pub preprocessing: Preprocessing,
    /// Segments scored per video unless the request says otherwise.
    pub default_segments: usize,
    /// The flow preset's name.
    pub preset: &'static str,
    /// Its backend thread's queue.
    pub queue: BatchQueue,
}

impl ServedModel {
    /// Reads `dir`'s config.json and starts a backend thread loading its weights.
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
        let spec = ModelSpec::load(dir)?;
        let arch = spec.architecture;
        let pre = spec.preprocessing;
        let size = arch.input_size as u32;
        let preset: Preset = config.flow_preset.into();
        let preprocessing = Preprocessing {
            frames: arch.frames,
            flow_stack: arch.flow_stack,
            size,
            short_side: pre.short_side.unwrap_or(size).max(size),
            mean: pre.mean,
            std: pre.std,
            flow_bound: pre.flow_bound,
            tvl1: preset.params(),
            flow_engine: FlowEngine::Cpu,
        };
        let warmup = warmup_inputs(&preprocessing)?;
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
        let backend = config.backend;
        let ort_library = config.ort_library.clone();
        let model_dir = dir.to_path_buf();
        let load = move || -> crate::Result<Box<dyn Backend>> {
            match backend {
                BackendKind::Candle => {
                    let device = match candle_device {
                        Some(parsed) => parsed?,
                        None => device::parse(&device_name)?,
                    };
                    let precision =
                        device::precision_for(&device, device::is_auto(&device_name), precision)?;
                    Ok(Box::new(CandleBackend::load_as(
                        &arch,
                        &weights,
                        device,
                        precision.dtype(),
                        max_batch,
                    )?))
                }
                BackendKind::Ort => {
                    if precision != Precision::F32 {
                        return Err(crate::Error::InvalidArgument(
                            "--dtype bf16 is for the candle backend; ONNX Runtime runs the f32 graph"
                                .to_string(),
                        ));
                    }
                    // ONNX Runtime's CUDA provider is chosen explicitly (cuda:N), never guessed.
                    let ort_device = if device::is_auto(&device_name) {
                        "cpu".to_string()
                    } else {
                        device_name
                    };
                    load_ort(&model_dir, ort_library, &ort_device, max_batch)
                }
            }
        };
        let options = BatchOptions {
            max_batch: config.max_batch,
            max_wait: Duration::from_millis(config.max_batch_wait_ms),
            capacity: config.batch_queue,
        };
        let queue = BatchQueue::start(&name, load, warmup, options, metrics.queue_metrics())?;
        Ok(ServedModel {
            name,
            labels: spec.labels,
            preprocessing,
            default_segments: pre.segments.max(1),
            preset: match preset {
                Preset::Accurate => "accurate",
                Preset::Fast => "fast",
            },
            queue,
        })
    }

    /// Its description for the API.
    pub fn info(&self) -> ModelInfo {
        let backend = self.queue.info();
        let p = &self.preprocessing;
        ModelInfo {
            name: self.name.clone(),
            labels: self.labels.clone(),
            input: Some(InputSpec {
                frames: p.frames as u32,
                size: p.size,
                flow_stack: p.flow_stack as u32,
                preset: self.preset.to_string(),
                segments: self.default_segments as u32,
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

/// The ONNX Runtime backend for `dir` (its model.onnx, or its weights exported in memory).
#[cfg(feature = "ort")]
fn load_ort(
    dir: &Path,
    library: Option<PathBuf>,
    device: &str,
    max_batch: usize,
) -> crate::Result<Box<dyn Backend>> {
    use crate::backend::ort::{OrtBackend, OrtOptions, Provider};
    let options = OrtOptions {
        library,
        provider: Provider::parse(device)?,
        intra_threads: None,
    };
    Ok(Box::new(OrtBackend::load_dir(dir, &options, max_batch)?))
}

/// Without the `ort` feature there is no ONNX Runtime backend to load.
#[cfg(not(feature = "ort"))]
fn load_ort(
    _dir: &Path,
    _library: Option<PathBuf>,
    _device: &str,
    _max_batch: usize,
) -> crate::Result<Box<dyn Backend>> {
    Err(crate::Error::InvalidArgument(
        "--backend ort needs a build with the `ort` feature (cargo build --features ort)"
            .to_string(),
    ))
}

/// One sample of zeros, to run the model once before declaring it ready.
fn warmup_inputs(p: &Preprocessing) -> crate::Result<(Tensor, Tensor)> {
    let (t, s) = (p.frames, p.size as usize);
    let rgb = Tensor::zeros((1, t, 3, s, s), candle_core::DType::F32, &Device::Cpu)?;
    let flow = Tensor::zeros(
        (1, t, 2 * p.flow_stack, s, s),
        candle_core::DType::F32,
        &Device::Cpu,
    )?;
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
