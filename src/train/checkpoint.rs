//! Checkpoints (weights, optimiser state, progress) and exported model folders.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{Device, Tensor};
use candle_nn::VarMap;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use super::metrics::EpochMetrics;
use crate::artifact::ModelSpec;
use crate::{Error, Result};

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
    pub model: ModelSpec,
}

/// Writes `dir/{model,optim}.safetensors` and `dir/state.json` (atomically per file).
pub fn save(
    dir: &Path,
    vars: &VarMap,
    optim: HashMap<String, Tensor>,
    state: &TrainState,
) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let tmp = dir.join("model.safetensors.tmp");
    vars.save(&tmp)?;
    std::fs::rename(&tmp, dir.join("model.safetensors")).map_err(|e| Error::io(dir, e))?;
    let tmp = dir.join("optim.safetensors.tmp");
    candle_core::safetensors::save(&optim, &tmp)?;
    std::fs::rename(&tmp, dir.join("optim.safetensors")).map_err(|e| Error::io(dir, e))?;
    let tmp = dir.join("state.json.tmp");
    std::fs::write(&tmp, serde_json::to_string_pretty(state)?).map_err(|e| Error::io(&tmp, e))?;
    std::fs::rename(&tmp, dir.join("state.json")).map_err(|e| Error::io(dir, e))
}

/// Loads a checkpoint's weights into `vars`; returns the optimiser state and progress.
pub fn load(dir: &Path, vars: &mut VarMap) -> Result<(HashMap<String, Tensor>, TrainState)> {
    vars.load(dir.join("model.safetensors"))?;
    let optim = candle_core::safetensors::load(dir.join("optim.safetensors"), &Device::Cpu)?;
    let path = dir.join("state.json");
    let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
    Ok((optim, serde_json::from_str(&text)?))
}

/// Writes a servable model folder: `config.json`, `model.safetensors` and a README.
pub fn export(dir: &Path, vars: &VarMap, model: &ModelSpec, readme: &str) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    vars.save(dir.join("model.safetensors"))?;
    let config = dir.join("config.json");
    std::fs::write(&config, serde_json::to_string_pretty(model)?)
        .map_err(|e| Error::io(&config, e))?;
    let labels = dir.join("labels.txt");
    std::fs::write(&labels, model.labels.join("\n") + "\n").map_err(|e| Error::io(&labels, e))?;
    let path = dir.join("README.md");
    std::fs::write(&path, readme).map_err(|e| Error::io(&path, e))
}

/// Re-initialises every conv/linear weight from `seed` (Kaiming-uniform, as candle-nn
/// does) and zeroes linear biases, so a run is reproducible: candle's CPU generator
/// cannot be seeded. Temporal weights `(out, in, 3, kh, kw)` get one 2-D draw divided by
/// 3 on each tap, as the model initialises them. BatchNorm keeps its constant inits.
pub fn seeded_init(vars: &VarMap, seed: u64) -> Result<()> {
    let data = vars
        .data()
        .lock()
        .map_err(|_| Error::InvalidArgument("poisoned var map".into()))?;
    let mut names: Vec<&String> = data.keys().collect();
    names.sort();
    let mut rng = StdRng::seed_from_u64(seed);
    for name in names {
        let var = &data[name];
        let dims = var.dims().to_vec();
        if name.ends_with("weight") && dims.len() >= 2 {
            let temporal = dims.len() == 5;
            let spatial: Vec<usize> = if temporal {
                vec![dims[0], dims[1], dims[3], dims[4]]
            } else {
                dims.clone()
            };
            let fan_in: usize = spatial[1..].iter().product();
            let bound = (6.0 / fan_in as f64).sqrt() as f32;
            let n: usize = spatial.iter().product();
            let values: Vec<f32> = (0..n).map(|_| rng.random_range(-bound..bound)).collect();
            let w = Tensor::from_vec(values, spatial, var.device())?;
            var.set(&spatial_to_var(&w, &dims)?.to_dtype(var.dtype())?)?;
        } else if name.ends_with("fc.bias") {
            var.set(&var.zeros_like()?)?;
        }
    }
    Ok(())
}

/// A 2-D weight `(out, in, kh, kw)` shaped for a variable of `dims`: as is, or for a
/// temporal variable `(out, in, 3, kh, kw)` divided by 3 on each tap.
fn spatial_to_var(w: &Tensor, dims: &[usize]) -> Result<Tensor> {
    if dims.len() == 5 && w.rank() == 4 {
        let tap = (w.unsqueeze(2)? / 3.0)?;
        return Ok(Tensor::cat(&[&tap, &tap, &tap], 2)?);
    }
    Ok(w.clone())
}

/// Initialises both streams from a torchvision-named ResNet (`conv1.weight`,
/// `layer1.0.bn1.running_mean`, ...): the appearance stream takes the tensors as they are,
/// the motion stream the same except `conv1`, averaged over the RGB channels and
/// replicated to its 2L channels. Temporal convolutions get the 2-D weight / 3 per tap.
/// Tensors that do not fit (the classifier, other widths) are left as they were.
/// Returns (tensors loaded, tensors skipped).
pub fn init_from(vars: &VarMap, path: &Path) -> Result<(usize, usize)> {
    let file = candle_core::safetensors::load(path, &Device::Cpu)?;
    let data = vars
        .data()
        .lock()
        .map_err(|_| Error::InvalidArgument("poisoned var map".into()))?;
    let (mut loaded, mut skipped) = (0, 0);
    for (key, tensor) in &file {
        for stream in ["appearance", "motion"] {
            let Some(var) = data.get(&format!("{stream}.{key}")) else {
                skipped += 1;
                continue;
            };
            let dims = var.dims().to_vec();
            let mut t = tensor.to_dtype(candle_core::DType::F32)?;
            if stream == "motion" && key == "conv1.weight" && t.rank() == 4 && dims.len() == 4 {
                t = t.mean_keepdim(1)?.repeat((1, dims[1], 1, 1))?;
            }
            let t = spatial_to_var(&t, &dims)?;
            if t.dims() == dims.as_slice() {
                var.set(&t.to_device(var.device())?)?;
                loaded += 1;
            } else {
                tracing::debug!(key, stream, "init-from: shape differs, left as initialised");
                skipped += 1;
            }
        }
    }
    Ok((loaded, skipped))
}
