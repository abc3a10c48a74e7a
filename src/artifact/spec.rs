//! A model folder's `config.json`: the architecture, how inputs were prepared in
//! training (so serving prepares them the same way), and the class labels.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::flow::FlowMethod;
use crate::model::Config;

/// How RGB frames and optical flow are turned into the network's inputs.
///
/// RGB: the first frame of each position's clip, `(v / 255 - mean) / std` per channel.
/// Flow: the L fields between the clip's L + 1 frames (consecutive, or `1 / flow_fps`
/// seconds apart, see [`flow_timing`]), as planes u0, v0, u1, v1, ..., each clipped to
/// ±`flow_bound` pixels, quantised to 8 bits (`flow::encode::quantize`) and mapped to
/// -1..1 (`q * 2 / 255 - 1`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PreprocessingSpec {
    /// Segments scored and averaged per video by default (each gives one sample of T positions).
    pub segments: usize,
    /// Shorter side after resizing, before the centre crop to `input_size`
    /// (`None`: resize straight to `input_size`).
    pub short_side: Option<u32>,
    /// RGB mean per channel, 0..1 scale.
    pub mean: [f32; 3],
    /// RGB standard deviation per channel, 0..1 scale.
    pub std: [f32; 3],
    /// Flow clip bound in pixels.
    pub flow_bound: f32,
    /// Flow fields per second of video: frames `1 / flow_fps` s apart, displacements
    /// rescaled to that interval, so motion reads the same at any frame rate
    /// (`None`: consecutive frames, in pixels per frame).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub flow_fps: Option<f64>,
    /// The flow method the model was trained with (see [`PreprocessingSpec::flow_method`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub flow_preset: Option<FlowMethod>,
    /// Flow is computed on frames this many times the input size and pooled back
    /// ([`crate::flow::Flow::pool`]), and the RGB frames are the same frames shrunk
    /// ([`crate::video::RgbFrame::box_downsample`]): small objects keep their motion.
    #[serde(skip_serializing_if = "is_one")]
    pub flow_supersample: u32,
}

fn is_one(v: &u32) -> bool {
    *v == 1
}

/// Frame stride and displacement scale for flow `1 / flow_fps` s apart in a video at
/// `video_fps`: the nearest whole stride (at least 1), and the factor that rescales the
/// stride's displacements to exactly that interval. `None`, or an unknown rate, gives
/// consecutive frames unscaled.
pub fn flow_timing(flow_fps: Option<f64>, video_fps: f64) -> (usize, f32) {
    match flow_fps {
        Some(rate) if rate > 0.0 && video_fps.is_finite() && video_fps > 0.0 => {
            let stride = (video_fps / rate).round().max(1.0);
            (stride as usize, (video_fps / (stride * rate)) as f32)
        }
        _ => (1, 1.0),
    }
}

impl PreprocessingSpec {
    /// The flow method inputs are made with: `requested` (a flag), else the one the model
    /// was trained with, else `fast`. The one place this rule lives: the server and the
    /// trainer's caches both ask here.
    pub fn flow_method(&self, requested: Option<FlowMethod>) -> FlowMethod {
        requested.or(self.flow_preset).unwrap_or(FlowMethod::Fast)
    }
}

impl Default for PreprocessingSpec {
    fn default() -> Self {
        PreprocessingSpec {
            segments: 1,
            short_side: None,
            mean: [0.485, 0.456, 0.406],
            std: [0.229, 0.224, 0.225],
            flow_bound: 20.0,
            flow_fps: None,
            flow_preset: None,
            flow_supersample: 1,
        }
    }
}

/// The content of a model folder's `config.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelSpec {
    /// The network.
    pub architecture: Config,
    /// Input preparation.
    #[serde(default)]
    pub preprocessing: PreprocessingSpec,
    /// Class labels, by index.
    pub labels: Vec<String>,
}

impl ModelSpec {
    /// Reads and checks `dir/config.json`.
    pub fn load(dir: &Path) -> crate::Result<ModelSpec> {
        let path = dir.join("config.json");
        let text = std::fs::read_to_string(&path)
            .map_err(|e| crate::Error::Model(format!("reading {}: {e}", path.display())))?;
        let spec: ModelSpec = serde_json::from_str(&text)
            .map_err(|e| crate::Error::Model(format!("parsing {}: {e}", path.display())))?;
        spec.validate()
            .map_err(|e| crate::Error::Model(format!("{}: {e}", path.display())))?;
        Ok(spec)
    }

    /// Writes `dir/config.json`.
    pub fn save(&self, dir: &Path) -> crate::Result<()> {
        let text = serde_json::to_string_pretty(self)
            .map_err(|e| crate::Error::Model(format!("serialising the model spec: {e}")))?;
        let path = dir.join("config.json");
        std::fs::write(&path, text).map_err(|e| crate::Error::io(&path, e))
    }

    /// Checks the parts fit together.
    pub fn validate(&self) -> Result<(), String> {
        self.architecture.validate()?;
        if self.labels.len() != self.architecture.num_classes {
            return Err(format!(
                "{} labels for {} classes",
                self.labels.len(),
                self.architecture.num_classes
            ));
        }
        let p = &self.preprocessing;
        if p.segments == 0 || p.flow_bound <= 0.0 || p.std.iter().any(|&s| s <= 0.0) {
            return Err("segments, flow_bound and std must be positive".to_string());
        }
        if p.flow_fps.is_some_and(|r| !(r.is_finite() && r > 0.0)) {
            return Err("flow_fps must be a positive number of fields per second".to_string());
        }
        if !(1..=4).contains(&p.flow_supersample) {
            return Err("flow_supersample must be 1 to 4".to_string());
        }
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A tiny network's spec with default preprocessing and labels "a", "b", ...
    pub(crate) fn spec(classes: usize) -> ModelSpec {
        ModelSpec {
            architecture: Config::tiny(classes),
            preprocessing: PreprocessingSpec::default(),
            labels: (b'a'..)
                .take(classes)
                .map(|c| (c as char).to_string())
                .collect(),
        }
    }

    #[test]
    fn round_trips_and_rejects_mismatched_labels() {
        let dir = tempfile::tempdir().unwrap();
        let mut spec = spec(3);
        spec.save(dir.path()).unwrap();
        assert_eq!(ModelSpec::load(dir.path()).unwrap(), spec);
        spec.labels.pop();
        spec.save(dir.path()).unwrap();
        let err = ModelSpec::load(dir.path()).unwrap_err().to_string();
        assert!(err.contains("2 labels for 3 classes"), "{err}");
    }

    #[test]
    fn flow_supersample_round_trips_defaults_to_one_and_is_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let mut spec = spec(2);
        // Absent from older configs (and not written at 1): one.
        spec.save(dir.path()).unwrap();
        let text = std::fs::read_to_string(dir.path().join("config.json")).unwrap();
        assert!(!text.contains("flow_supersample"), "{text}");
        assert_eq!(
            ModelSpec::load(dir.path())
                .unwrap()
                .preprocessing
                .flow_supersample,
            1
        );
        spec.preprocessing.flow_supersample = 2;
        spec.save(dir.path()).unwrap();
        assert_eq!(ModelSpec::load(dir.path()).unwrap(), spec);
        for bad in [0, 5] {
            spec.preprocessing.flow_supersample = bad;
            spec.save(dir.path()).unwrap();
            let err = ModelSpec::load(dir.path()).unwrap_err().to_string();
            assert!(err.contains("flow_supersample must be 1 to 4"), "{err}");
        }
    }

    #[test]
    fn a_requested_flow_method_overrides_the_trained_one_and_fast_is_the_fallback() {
        use FlowMethod::{Accurate, Fast};
        let mut pre = PreprocessingSpec::default();
        assert_eq!(pre.flow_method(None), Fast);
        pre.flow_preset = Some(Accurate);
        assert_eq!(pre.flow_method(None), Accurate);
        assert_eq!(pre.flow_method(Some(Fast)), Fast);
    }

    #[test]
    fn flow_timing_picks_the_nearest_stride_and_rescales_to_the_interval() {
        assert_eq!(flow_timing(None, 25.0), (1, 1.0));
        assert_eq!(flow_timing(Some(12.5), 25.0), (2, 1.0));
        // 30 fps at 12 fields/s: stride 2.5 rounds to 3 (0.1 s), rescaled to 1/12 s.
        let (stride, scale) = flow_timing(Some(12.0), 30.0);
        assert_eq!(stride, 3);
        assert!((scale - 30.0 / 36.0).abs() < 1e-6, "{scale}");
        // Slower video than the field rate: consecutive frames, scaled down.
        let (stride, scale) = flow_timing(Some(12.0), 6.0);
        assert_eq!((stride, scale), (1, 0.5));
        assert_eq!(flow_timing(Some(12.0), f64::NAN), (1, 1.0));
    }
}
