//! The candle backend: the two-stream ST-ResNet on the CPU or a CUDA device.

use std::path::Path;

use candle_core::{D, DType, Device, Tensor};
use candle_nn::VarBuilder;

use super::Backend;
use crate::model::{Config, StResNet};

/// An ST-ResNet loaded from safetensors onto a device.
pub struct CandleBackend {
    model: StResNet,
    device: Device,
    max_batch: usize,
}

impl CandleBackend {
    /// Builds the network described by `config` with the weights in `weights`.
    pub fn load(
        config: &Config,
        weights: &Path,
        device: Device,
        max_batch: usize,
    ) -> crate::Result<Self> {
        let tensors = candle_core::safetensors::load(weights, &device)?;
        let vb = VarBuilder::from_tensors(tensors, DType::F32, &device);
        let model = StResNet::new(config, vb)?;
        Ok(CandleBackend {
            model,
            device,
            max_batch,
        })
    }
}

impl Backend for CandleBackend {
    fn name(&self) -> &'static str {
        "candle"
    }

    fn device(&self) -> String {
        super::device::name(&self.device)
    }

    fn max_batch(&self) -> usize {
        self.max_batch
    }

    fn predict(&mut self, rgb: &Tensor, flow: &Tensor) -> crate::Result<Vec<Vec<f32>>> {
        let rgb = rgb.to_device(&self.device)?;
        let flow = flow.to_device(&self.device)?;
        let logits = self.model.forward(&rgb, &flow, false)?;
        let probabilities = candle_nn::ops::softmax(&logits.fused, D::Minus1)?;
        Ok(probabilities.to_device(&Device::Cpu)?.to_vec2::<f32>()?)
    }
}
