//! How a served model's inputs are made from a video, chosen by what its folder holds.

use candle_core::{DType, Device, Tensor};

use super::preprocess::{self, FlowEngine, Prepared, Preprocessing};
use super::rgb::{self, RgbPreprocessing};
use super::{Cancel, PipelineError};
use crate::artifact::{ModelFolder, ModelSpec};
use crate::flow::FlowMethod;
use crate::video::Video;

/// The preparation of one model's inputs.
#[derive(Debug, Clone)]
pub enum Preparation {
    /// RGB frames and TV-L1 flow for our two-stream network.
    TwoStream(Preprocessing),
    /// RGB frames only, for an external classifier.
    Rgb(RgbPreprocessing),
}

impl Preparation {
    /// What `folder`'s config asks for; `flow_method` is the server's override (see
    /// [`crate::artifact::PreprocessingSpec::flow_method`]), and with `flow_device` (the
    /// GPU the model runs on) the batched TV-L1 solver runs there too.
    pub fn for_folder(
        folder: &ModelFolder,
        flow_method: Option<FlowMethod>,
        flow_device: Option<Device>,
    ) -> Preparation {
        match folder {
            ModelFolder::Native(spec) => {
                Preparation::TwoStream(two_stream(spec, flow_method, flow_device))
            }
            ModelFolder::External(spec) => Preparation::Rgb(RgbPreprocessing::from(&spec.input)),
        }
    }

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
    pub fn shape(&self) -> (usize, u32, usize) {
        match self {
            Preparation::TwoStream(p) => (p.frames, p.size, p.flow_stack),
            Preparation::Rgb(p) => (p.frames, p.size, 0),
        }
    }

    /// The flow's supersampling factor (0 without flow).
    pub fn flow_supersample(&self) -> u32 {
        match self {
            Preparation::TwoStream(p) => p.flow_supersample,
            Preparation::Rgb(_) => 0,
        }
    }

    /// The flow method (`None` without flow).
    pub fn flow_method(&self) -> Option<FlowMethod> {
        match self {
            Preparation::TwoStream(p) => Some(p.flow_method),
            Preparation::Rgb(_) => None,
        }
    }

    /// One sample of zeros, to run the model once before declaring it ready.
    pub fn warmup_inputs(&self) -> crate::Result<(Tensor, Tensor)> {
        let (t, s, l) = self.shape();
        let s = s as usize;
        let rgb = Tensor::zeros((1, t, 3, s, s), DType::F32, &Device::Cpu)?;
        let flow = Tensor::zeros((1, t, 2 * l, s, s), DType::F32, &Device::Cpu)?;
        Ok((rgb, flow))
    }
}

/// Our network's preparation from its spec.
fn two_stream(
    spec: &ModelSpec,
    flow_method: Option<FlowMethod>,
    flow_device: Option<Device>,
) -> Preprocessing {
    let (arch, pre) = (&spec.architecture, &spec.preprocessing);
    let size = arch.input_size as u32;
    Preprocessing {
        frames: arch.frames,
        flow_stack: arch.flow_stack,
        size,
        short_side: pre.short_side.unwrap_or(size).max(size),
        mean: pre.mean,
        std: pre.std,
        flow_bound: pre.flow_bound,
        flow_fps: pre.flow_fps,
        flow_supersample: pre.flow_supersample,
        flow_method: pre.flow_method(flow_method),
        flow_engine: match flow_device {
            Some(device) => FlowEngine::Batched(device),
            None => FlowEngine::Cpu,
        },
    }
}
