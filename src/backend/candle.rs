//! The candle backend: the two-stream ST-ResNet on the CPU or a CUDA device.

use std::path::Path;

use candle_core::{D, DType, Device, Tensor};
use candle_nn::VarBuilder;

use super::Backend;
use crate::model::{Config, StResNet};

/// An ST-ResNet loaded from safetensors onto a device, in f32 or bf16.
pub struct CandleBackend {
    model: StResNet,
    device: Device,
    dtype: DType,
    max_batch: usize,
}

impl CandleBackend {
    /// Builds the network described by `config` with the weights in `weights`, in f32.
    pub fn load(
        config: &Config,
        weights: &Path,
        device: Device,
        max_batch: usize,
    ) -> crate::Result<Self> {
        Self::load_as(config, weights, device, DType::F32, max_batch)
    }

    /// Like [`CandleBackend::load`], with the weights converted to `dtype` (f32 or bf16);
    /// inputs are converted on the way in and scores come back as f32.
    pub fn load_as(
        config: &Config,
        weights: &Path,
        device: Device,
        dtype: DType,
        max_batch: usize,
    ) -> crate::Result<Self> {
        if !matches!(dtype, DType::F32 | DType::BF16) {
            return Err(crate::Error::InvalidArgument(format!(
                "inference runs in f32 or bf16, not {dtype:?}"
            )));
        }
        let tensors = candle_core::safetensors::load(weights, &device)?;
        let vb = VarBuilder::from_tensors(tensors, dtype, &device);
        let model = StResNet::new(config, vb)?;
        Ok(CandleBackend {
            model,
            device,
            dtype,
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

    fn dtype(&self) -> &'static str {
        if self.dtype == DType::BF16 {
            "bf16"
        } else {
            "f32"
        }
    }

    fn max_batch(&self) -> usize {
        self.max_batch
    }

    fn predict(&mut self, rgb: &Tensor, flow: &Tensor) -> crate::Result<Vec<Vec<f32>>> {
        let rgb = rgb.to_device(&self.device)?.to_dtype(self.dtype)?;
        let flow = flow.to_device(&self.device)?.to_dtype(self.dtype)?;
        let logits = self.model.forward(&rgb, &flow, false)?;
        // Softmax in f32: bf16's 8-bit mantissa would round the probabilities.
        let fused = logits.fused.to_dtype(DType::F32)?;
        let probabilities = candle_nn::ops::softmax(&fused, D::Minus1)?;
        Ok(probabilities.to_device(&Device::Cpu)?.to_vec2::<f32>()?)
    }
}
