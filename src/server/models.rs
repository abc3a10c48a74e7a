//! The served models: each folder's labels and input preparation, and the backend thread
//! with its batching queue. Which engine runs a folder is the backend module's choice
//! ([`crate::backend::load`]).

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use super::config::ServerConfig;
use super::metrics::Metrics;
use super::types::{InputSpec, ModelInfo};
use crate::artifact::ModelFolder;
use crate::backend;
use crate::pipeline::preparation::Preparation;
use crate::pipeline::queue::{BatchOptions, BatchQueue, LoadState};

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
    /// Its backend thread's queue.
    pub queue: BatchQueue,
}

impl ServedModel {
    /// Reads `dir`'s config.json and starts a backend thread loading its model.
    pub fn start(
        dir: &Path,
        config: &ServerConfig,
        metrics: &Metrics,
    ) -> crate::Result<ServedModel> {
        let name = dir
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| crate::Error::Config(format!("{} has no folder name", dir.display())))?
            .to_string();
        let folder = ModelFolder::load(dir)?;
        let loaded = backend::load(dir, &folder, &config.engine());
        let preprocessing =
            Preparation::for_folder(&folder, config.flow_preset, loaded.flow_device);
        let options = BatchOptions {
            max_batch: config.max_batch,
            max_wait: Duration::from_millis(config.max_batch_wait_ms),
            capacity: config.batch_queue,
        };
        let warmup = preprocessing.warmup_inputs()?;
        let queue = BatchQueue::start(
            &name,
            loaded.loader,
            warmup,
            options,
            metrics.queue_metrics(),
        )?;
        Ok(ServedModel {
            name,
            labels: folder.labels().to_vec(),
            preprocessing,
            default_segments: folder.segments().max(1),
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
                preset: self
                    .preprocessing
                    .flow_method()
                    .map_or("none", |m| m.name())
                    .to_string(),
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

/// Every served model by name; the first folder also answers to `default`.
pub struct Models {
    by_name: HashMap<String, Arc<ServedModel>>,
    order: Vec<Arc<ServedModel>>,
}

impl Models {
    /// Starts a backend thread for each model folder.
    pub fn start(config: &ServerConfig, metrics: &Metrics) -> crate::Result<Models> {
        if config.model_dirs.is_empty() {
            return Err(crate::Error::Config("no model folder given".to_string()));
        }
        let mut by_name = HashMap::new();
        let mut order = Vec::new();
        for dir in &config.model_dirs {
            let model = Arc::new(ServedModel::start(dir, config, metrics)?);
            if by_name
                .insert(model.name.clone(), Arc::clone(&model))
                .is_some()
            {
                return Err(crate::Error::Config(format!(
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
