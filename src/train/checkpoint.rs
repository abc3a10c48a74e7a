//! Checkpoints (weights, optimiser state, progress) and exported model folders.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{Device, Tensor};
use candle_nn::VarMap;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use super::batch::InputSpec;
use super::error::{Result, TrainError};
use super::metrics::EpochMetrics;
use crate::model::Config;

/// Input preparation recorded in `config.json` (the server's `PreprocessingSpec` fields).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Preprocessing {
    /// Segments scored and averaged per video by default.
    pub segments: usize,
    /// Shorter side after resizing, before the centre crop to `input_size`.
    pub short_side: Option<u32>,
    /// RGB mean per channel, 0..1 scale.
    pub mean: [f32; 3],
    /// RGB standard deviation per channel, 0..1 scale.
    pub std: [f32; 3],
    /// Flow clip bound in pixels; flow is divided by it.
    pub flow_bound: f32,
}

/// The content of a model folder's `config.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelFile {
    /// The network.
    pub architecture: Config,
    /// Input preparation.
    pub preprocessing: Preprocessing,
    /// Class labels, by index.
    pub labels: Vec<String>,
}

impl ModelFile {
    /// Reads `dir/config.json`.
    pub fn load(dir: &Path) -> Result<ModelFile> {
        let path = dir.join("config.json");
        let text = std::fs::read_to_string(&path).map_err(|e| TrainError::io(&path, e))?;
        let spec: ModelFile = serde_json::from_str(&text)?;
        if spec.labels.len() != spec.architecture.num_classes {
            return Err(TrainError::InvalidArgument(format!(
                "{}: {} labels for {} classes",
                path.display(),
                spec.labels.len(),
                spec.architecture.num_classes
            )));
        }
        Ok(spec)
    }

    /// The input spec the trainer and evaluator use.
    pub fn input_spec(&self) -> InputSpec {
        InputSpec {
            frames: self.architecture.frames,
            flow_stack: self.architecture.flow_stack,
            size: self.architecture.input_size,
            mean: self.preprocessing.mean,
            std: self.preprocessing.std,
        }
    }
}

/// Training progress saved with each checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainState {
    /// Epochs completed.
    pub epoch: usize,
    /// Optimiser steps taken.
    pub step: usize,
    /// Metrics of every completed epoch.
    pub history: Vec<EpochMetrics>,
    /// The model being trained.
    pub model: ModelFile,
}

/// Writes `dir/{model,optim}.safetensors` and `dir/state.json` (atomically per file).
pub fn save(
    dir: &Path,
    vars: &VarMap,
    optim: HashMap<String, Tensor>,
    state: &TrainState,
) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| TrainError::io(dir, e))?;
    let tmp = dir.join("model.safetensors.tmp");
    vars.save(&tmp)?;
    std::fs::rename(&tmp, dir.join("model.safetensors")).map_err(|e| TrainError::io(dir, e))?;
    let tmp = dir.join("optim.safetensors.tmp");
    candle_core::safetensors::save(&optim, &tmp)?;
    std::fs::rename(&tmp, dir.join("optim.safetensors")).map_err(|e| TrainError::io(dir, e))?;
    let tmp = dir.join("state.json.tmp");
    std::fs::write(&tmp, serde_json::to_string_pretty(state)?)
        .map_err(|e| TrainError::io(&tmp, e))?;
    std::fs::rename(&tmp, dir.join("state.json")).map_err(|e| TrainError::io(dir, e))
}

/// Loads a checkpoint's weights into `vars`; returns the optimiser state and progress.
pub fn load(dir: &Path, vars: &mut VarMap) -> Result<(HashMap<String, Tensor>, TrainState)> {
    vars.load(dir.join("model.safetensors"))?;
    let optim = candle_core::safetensors::load(dir.join("optim.safetensors"), &Device::Cpu)?;
    let path = dir.join("state.json");
    let text = std::fs::read_to_string(&path).map_err(|e| TrainError::io(&path, e))?;
    Ok((optim, serde_json::from_str(&text)?))
}

/// Writes a servable model folder: `config.json`, `model.safetensors` and a README.
pub fn export(dir: &Path, vars: &VarMap, model: &ModelFile, readme: &str) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| TrainError::io(dir, e))?;
    vars.save(dir.join("model.safetensors"))?;
    let config = dir.join("config.json");
    std::fs::write(&config, serde_json::to_string_pretty(model)?)
        .map_err(|e| TrainError::io(&config, e))?;
    let labels = dir.join("labels.txt");
    std::fs::write(&labels, model.labels.join("\n") + "\n")
        .map_err(|e| TrainError::io(&labels, e))?;
    let path = dir.join("README.md");
    std::fs::write(&path, readme).map_err(|e| TrainError::io(&path, e))
}

/// Re-initialises every conv/linear weight from `seed` (Kaiming-uniform, as candle-nn
/// does) and zeroes linear biases, so a run is reproducible: candle's CPU generator
/// cannot be seeded. BatchNorm parameters and statistics keep their constant inits.
pub fn seeded_init(vars: &VarMap, seed: u64) -> Result<()> {
    let data = vars
        .data()
        .lock()
        .map_err(|_| TrainError::InvalidArgument("poisoned var map".into()))?;
    let mut names: Vec<&String> = data.keys().collect();
    names.sort();
    let mut rng = StdRng::seed_from_u64(seed);
    for name in names {
        let var = &data[name];
        let dims = var.dims().to_vec();
        if name.ends_with("weight") && dims.len() >= 2 {
            let fan_in: usize = dims[1..].iter().product();
            let bound = (6.0 / fan_in as f64).sqrt() as f32;
            let values: Vec<f32> = (0..var.elem_count())
                .map(|_| rng.random_range(-bound..bound))
                .collect();
            var.set(&Tensor::from_vec(values, dims, &Device::Cpu)?)?;
        } else if name.ends_with("fc.bias") {
            var.set(&var.zeros_like()?)?;
        }
    }
    Ok(())
}
