//! The network's architecture as a serde config, with the presets tiny, r18 and r50.

use serde::{Deserialize, Serialize};

/// Architecture of the two-stream ST-ResNet (both streams share it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Config {
    /// Input height and width in pixels (square crops).
    pub input_size: usize,
    /// Frames per clip (T); the network is fully convolutional in time.
    pub frames: usize,
    /// Flow fields stacked per frame (L); the motion stream sees 2L channels.
    pub flow_stack: usize,
    /// Number of action classes.
    pub num_classes: usize,
    /// Channels after the stem and in the first stage (64 in ResNets).
    pub base_width: usize,
    /// Residual units in each of the four stages (res2..res5).
    pub units: [usize; 4],
    /// Bottleneck units (1x1, 3x3, 1x1; 4x expansion) instead of basic ones (3x3, 3x3).
    pub bottleneck: bool,
    /// Stem convolution kernel size (7 in ResNets).
    pub stem_kernel: usize,
    /// Stem convolution stride (2 in ResNets).
    pub stem_stride: usize,
    /// Whether a 3x3 stride-2 max-pool follows the stem.
    pub stem_pool: bool,
    /// Units whose first convolution gets a temporal extent of 3, as `[stage, unit]` (0-based).
    pub temporal_units: Vec<[usize; 2]>,
    /// Whether units after the first of each stage are RevNet couplings.
    pub reversible: bool,
    /// Whether the motion stream feeds the appearance stream's first unit of each stage.
    pub links: bool,
    /// Weights of the appearance and motion logits in the fused score.
    pub fusion_weights: [f64; 2],
    /// BatchNorm running-statistics momentum (PyTorch convention: new = (1 - m) old + m batch).
    pub bn_momentum: f64,
    /// BatchNorm epsilon.
    pub bn_eps: f64,
}

impl Config {
    /// A small model for tests and the default CPU model: 32x32, 4 frames, L = 2.
    pub fn tiny(num_classes: usize) -> Self {
        Self {
            input_size: 32,
            frames: 4,
            flow_stack: 2,
            num_classes,
            base_width: 8,
            units: [2, 2, 2, 2],
            bottleneck: false,
            stem_kernel: 3,
            stem_stride: 1,
            stem_pool: false,
            temporal_units: vec![[1, 1], [2, 1]],
            reversible: true,
            links: true,
            fusion_weights: [0.5, 0.5],
            bn_momentum: 0.1,
            bn_eps: 1e-5,
        }
    }

    /// ResNet-18 streams (basic units 2-2-2-2) at 224x224, 5 frames, L = 10.
    pub fn r18(num_classes: usize) -> Self {
        Self {
            input_size: 224,
            frames: 5,
            flow_stack: 10,
            num_classes,
            base_width: 64,
            units: [2, 2, 2, 2],
            bottleneck: false,
            stem_kernel: 7,
            stem_stride: 2,
            stem_pool: true,
            temporal_units: vec![[0, 1], [1, 1], [2, 1], [3, 1]],
            reversible: true,
            links: true,
            fusion_weights: [0.5, 0.5],
            bn_momentum: 0.1,
            bn_eps: 1e-5,
        }
    }

    /// ResNet-50 streams (bottleneck units 3-4-6-3) at 224x224, 5 frames, L = 10, as in the paper.
    pub fn r50(num_classes: usize) -> Self {
        Self {
            units: [3, 4, 6, 3],
            bottleneck: true,
            temporal_units: vec![[0, 2], [1, 3], [2, 5], [3, 2]],
            ..Self::r18(num_classes)
        }
    }

    /// Channels of each stage's output.
    pub fn stage_width(&self, stage: usize) -> usize {
        let expansion = if self.bottleneck { 4 } else { 1 };
        self.base_width * (1 << stage) * expansion
    }

    /// Whether unit `unit` of stage `stage` has a temporal convolution.
    pub fn is_temporal(&self, stage: usize, unit: usize) -> bool {
        self.temporal_units.contains(&[stage, unit])
    }

    /// Input channels of the motion stream (u and v of L flows).
    pub fn flow_channels(&self) -> usize {
        2 * self.flow_stack
    }

    /// Checks the config describes a buildable network.
    pub fn validate(&self) -> Result<(), String> {
        if self.input_size == 0 || self.frames == 0 || self.flow_stack == 0 {
            return Err("input_size, frames and flow_stack must be positive".into());
        }
        if self.num_classes == 0 || self.base_width == 0 {
            return Err("num_classes and base_width must be positive".into());
        }
        if self.units.contains(&0) {
            return Err("every stage needs at least one unit".into());
        }
        if self.reversible && !self.base_width.is_multiple_of(2) {
            return Err("reversible units split channels in two: base_width must be even".into());
        }
        if self.stem_kernel == 0 || self.stem_stride == 0 {
            return Err("stem kernel and stride must be positive".into());
        }
        if let Some(t) = self
            .temporal_units
            .iter()
            .find(|[s, u]| *s >= 4 || *u >= self.units[*s])
        {
            return Err(format!("temporal unit {t:?} does not exist"));
        }
        Ok(())
    }
}
