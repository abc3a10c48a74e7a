//! A model folder on disk: `config.json` (a [`ModelSpec`]) and `model.safetensors`.

use std::path::Path;

use candle_core::{DType, Device};
use candle_nn::{VarBuilder, VarMap};
use serde::{Deserialize, Serialize};

use super::{Config, StResNet};
use crate::{Error, Result};

/// File name of the architecture, preprocessing and labels inside a model folder.
pub const CONFIG_FILE: &str = "config.json";
/// File name of the weights inside a model folder.
pub const WEIGHTS_FILE: &str = "model.safetensors";

/// How raw frames and flow become the network's input tensors.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Preprocessing {
    /// Shorter side of a frame after resizing, before the centre crop of `input_size`.
    pub short_side: u32,
    /// Frames between consecutive frames of a clip.
    pub frame_stride: usize,
    /// Per-channel mean subtracted from RGB scaled to [0, 1].
    pub rgb_mean: [f32; 3],
    /// Per-channel standard deviation dividing RGB after the mean.
    pub rgb_std: [f32; 3],
    /// Flow is clipped to ±`flow_bound` pixels and divided by it (input in [-1, 1]).
    pub flow_bound: f32,
    /// TV-L1 preset the flow was computed with ("fast" or "accurate").
    pub flow_preset: String,
}

impl Default for Preprocessing {
    /// ImageNet RGB statistics, flow bound 20 px as in the two-stream literature.
    fn default() -> Self {
        Self {
            short_side: 36,
            frame_stride: 1,
            rgb_mean: [0.485, 0.456, 0.406],
            rgb_std: [0.229, 0.224, 0.225],
            flow_bound: 20.0,
            flow_preset: "fast".into(),
        }
    }
}

/// Everything but the weights: architecture, preprocessing and class names.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelSpec {
    /// The network.
    pub architecture: Config,
    /// Input preparation.
    pub preprocessing: Preprocessing,
    /// Class names, index = class id.
    pub labels: Vec<String>,
}

impl ModelSpec {
    /// Checks the parts agree (labels per class, a buildable architecture).
    pub fn validate(&self) -> Result<()> {
        self.architecture.validate().map_err(Error::Model)?;
        if self.labels.len() != self.architecture.num_classes {
            return Err(Error::Model(format!(
                "{} labels for {} classes",
                self.labels.len(),
                self.architecture.num_classes
            )));
        }
        Ok(())
    }

    /// Reads and validates `dir/config.json`.
    pub fn load(dir: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(dir.join(CONFIG_FILE))?;
        let spec: Self = serde_json::from_str(&text)
            .map_err(|e| Error::Model(format!("{}: {e}", dir.join(CONFIG_FILE).display())))?;
        spec.validate()?;
        Ok(spec)
    }

    /// Writes `dir/config.json` (creating `dir`).
    pub fn save(&self, dir: &Path) -> Result<()> {
        self.validate()?;
        std::fs::create_dir_all(dir)?;
        let text = serde_json::to_string_pretty(self).map_err(|e| Error::Model(e.to_string()))?;
        std::fs::write(dir.join(CONFIG_FILE), text)?;
        Ok(())
    }
}

/// Writes a model folder: the spec and every variable of `weights` under PyTorch-style names.
pub fn save_model(dir: &Path, spec: &ModelSpec, weights: &VarMap) -> Result<()> {
    spec.save(dir)?;
    weights.save(dir.join(WEIGHTS_FILE))?;
    Ok(())
}

/// Loads a model folder onto `device` for inference (f32 weights).
pub fn load_model(dir: &Path, device: &Device) -> Result<(ModelSpec, StResNet)> {
    let spec = ModelSpec::load(dir)?;
    let weights = dir.join(WEIGHTS_FILE);
    if !weights.is_file() {
        return Err(Error::Model(format!("{} is missing", weights.display())));
    }
    // SAFETY: the file is mapped read-only and copied into tensors before this returns.
    let vb = unsafe { VarBuilder::from_mmaped_safetensors(&[weights], DType::F32, device)? };
    let model = StResNet::new(&spec.architecture, vb)
        .map_err(|e| Error::Model(format!("{}: {e}", dir.display())))?;
    Ok((spec, model))
}
