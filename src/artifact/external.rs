//! A model folder holding an RGB-only ONNX video classifier made elsewhere: its
//! `config.json` (`"format": "onnx"`) states the graph's input and output contract and
//! how frames are prepared, so nothing about the network is assumed.

use serde::{Deserialize, Serialize};

/// The one external format served so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ExternalFormat {
    /// An ONNX graph run by ONNX Runtime.
    #[serde(rename = "onnx")]
    Onnx,
}

/// How the input tensor's axes are ordered (N batch, C channels, T time, H, W).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Layout {
    /// `(N, 3, T, H, W)`: PyTorch's 3-D convolutions (C3D, R(2+1)D, X3D, ...).
    #[serde(rename = "NCTHW")]
    Ncthw,
    /// `(N, T, 3, H, W)`: one image after another (TSM, most video transformers).
    #[serde(rename = "NTCHW")]
    Ntchw,
    /// `(N, 3, H, W)`: a single-frame image classifier (`frames` must be 1).
    #[serde(rename = "NCHW")]
    Nchw,
}

impl std::fmt::Display for Layout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Layout::Ncthw => "NCTHW",
            Layout::Ntchw => "NTCHW",
            Layout::Nchw => "NCHW",
        })
    }
}

impl Layout {
    /// The tensor's rank.
    pub fn rank(self) -> usize {
        match self {
            Layout::Ncthw | Layout::Ntchw => 5,
            Layout::Nchw => 4,
        }
    }

    /// The dimensions of one sample of `t` frames of `size` x `size` (after the batch axis).
    pub fn sample_dims(self, t: usize, size: usize) -> Vec<usize> {
        match self {
            Layout::Ncthw => vec![3, t, size, size],
            Layout::Ntchw => vec![t, 3, size, size],
            Layout::Nchw => vec![3, size, size],
        }
    }
}

/// The scale pixel values are on before `mean` and `std` apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum ValueRange {
    /// 0 to 1 (`v / 255`).
    #[default]
    #[serde(rename = "0..1")]
    Unit,
    /// 0 to 255 (`v`).
    #[serde(rename = "0..255")]
    Byte,
}

/// The order of the three colour channels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChannelOrder {
    /// Red, green, blue.
    #[default]
    Rgb,
    /// Blue, green, red (Caffe-era models).
    Bgr,
}

/// The graph input fed with the video's frames, and how they are prepared.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OnnxInput {
    /// The graph input's name.
    pub name: String,
    /// Axis order of the input tensor.
    pub layout: Layout,
    /// Frames per sample (T; 1 for `NCHW`).
    pub frames: usize,
    /// Side of the square centre crop, in pixels.
    pub size: u32,
    /// Shorter side after resizing, before the crop (`None`: resize straight to `size`).
    #[serde(default)]
    pub short_side: Option<u32>,
    /// `None`: the T frames are spread evenly over each segment. `Some(s)`: they are
    /// consecutive frames `s` apart, from a clip centred in each segment (as 3-D CNNs
    /// are usually trained).
    #[serde(default)]
    pub frame_stride: Option<usize>,
    /// The scale `mean` and `std` are given on.
    #[serde(default)]
    pub value_range: ValueRange,
    /// Channel order.
    #[serde(default)]
    pub channels: ChannelOrder,
    /// Mean per channel (in `channels` order, on the `value_range` scale).
    #[serde(default)]
    pub mean: [f32; 3],
    /// Standard deviation per channel (in `channels` order, on the `value_range` scale).
    #[serde(default = "unit_std")]
    pub std: [f32; 3],
}

fn unit_std() -> [f32; 3] {
    [1.0; 3]
}

impl OnnxInput {
    /// Mean and standard deviation on the 0..1 scale: `(v / 255 - mean) / std` then gives
    /// exactly the values the model expects.
    pub fn unit_mean_std(&self) -> ([f32; 3], [f32; 3]) {
        match self.value_range {
            ValueRange::Unit => (self.mean, self.std),
            ValueRange::Byte => (self.mean.map(|m| m / 255.0), self.std.map(|s| s / 255.0)),
        }
    }
}

/// What the graph's class output holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OutputKind {
    /// Unnormalised scores: the server applies softmax.
    Logits,
    /// Probabilities already (the graph ends in Softmax).
    Probabilities,
}

/// The graph output holding the class scores, `(N, classes)`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OnnxOutput {
    /// The graph output's name.
    pub name: String,
    /// Logits or probabilities.
    pub kind: OutputKind,
}

/// The content of an external model folder's `config.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExternalSpec {
    /// Always `onnx`; its presence marks the folder as external.
    pub format: ExternalFormat,
    /// The graph file, relative to the folder.
    #[serde(default = "default_file")]
    pub file: String,
    /// The input fed with frames.
    pub input: OnnxInput,
    /// The output read as class scores.
    pub output: OnnxOutput,
    /// Segments scored and averaged per video by default.
    #[serde(default = "one")]
    pub segments: usize,
    /// Class labels, by output index.
    pub labels: Vec<String>,
}

fn default_file() -> String {
    "model.onnx".to_string()
}

fn one() -> usize {
    1
}

impl ExternalSpec {
    /// Checks the settings make sense on their own (the graph is checked when loaded).
    pub fn validate(&self) -> Result<(), String> {
        let input = &self.input;
        if input.name.is_empty() || self.output.name.is_empty() {
            return Err("input.name and output.name must not be empty".to_string());
        }
        if input.frames == 0 || input.size == 0 || self.segments == 0 {
            return Err("input.frames, input.size and segments must be positive".to_string());
        }
        if input.layout == Layout::Nchw && input.frames != 1 {
            return Err(format!(
                "layout NCHW takes one frame per sample, not input.frames = {}",
                input.frames
            ));
        }
        if input.frame_stride == Some(0) {
            return Err("input.frame_stride must be positive".to_string());
        }
        if input.std.iter().any(|&s| s <= 0.0 || !s.is_finite())
            || input.mean.iter().any(|m| !m.is_finite())
        {
            return Err("input.std must be positive and input.mean finite".to_string());
        }
        if self.labels.is_empty() {
            return Err("labels must not be empty".to_string());
        }
        let file = std::path::Path::new(&self.file);
        if file.is_absolute() || file.components().count() != 1 {
            return Err(format!(
                "file {:?} must name a file inside the model folder",
                self.file
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(json: &str) -> Result<ExternalSpec, String> {
        let spec: ExternalSpec = serde_json::from_str(json).map_err(|e| e.to_string())?;
        spec.validate()?;
        Ok(spec)
    }

    const MINIMAL: &str = r#"{"format": "onnx",
        "input": {"name": "video", "layout": "NCTHW", "frames": 16, "size": 112},
        "output": {"name": "logits", "kind": "logits"},
        "labels": ["a", "b"]}"#;

    #[test]
    fn defaults_fill_the_optional_fields() {
        let s = spec(MINIMAL).unwrap();
        assert_eq!(s.file, "model.onnx");
        assert_eq!(s.segments, 1);
        assert_eq!(s.input.value_range, ValueRange::Unit);
        assert_eq!(s.input.channels, ChannelOrder::Rgb);
        assert_eq!(s.input.unit_mean_std(), ([0.0; 3], [1.0; 3]));
        assert_eq!(s.input.frame_stride, None);
        assert_eq!(Layout::Ncthw.sample_dims(16, 112), vec![3, 16, 112, 112]);
        let back: ExternalSpec = serde_json::from_str(&serde_json::to_string(&s).unwrap()).unwrap();
        assert_eq!(back, s);
    }

    #[test]
    fn byte_scale_statistics_become_unit_scale() {
        let s = spec(&MINIMAL.replace(
            r#""size": 112"#,
            r#""size": 112, "value_range": "0..255", "mean": [127.5, 102, 51], "std": [255, 51, 25.5]"#,
        ))
        .unwrap();
        let (mean, std) = s.input.unit_mean_std();
        assert_eq!(mean, [0.5, 0.4, 0.2]);
        assert_eq!(std, [1.0, 0.2, 0.1]);
    }

    #[test]
    fn refuses_inconsistent_or_misspelt_settings() {
        let nchw = MINIMAL.replace("NCTHW", "NCHW");
        assert!(spec(&nchw).unwrap_err().contains("one frame per sample"));
        let typo = MINIMAL.replace(r#""size": 112"#, r#""size": 112, "sise": 3"#);
        assert!(spec(&typo).unwrap_err().contains("unknown field `sise`"));
        let layout = MINIMAL.replace("NCTHW", "NHWC");
        assert!(
            spec(&layout)
                .unwrap_err()
                .contains("unknown variant `NHWC`")
        );
        let escape = MINIMAL.replace(
            r#""format": "onnx","#,
            r#""format": "onnx", "file": "../x.onnx","#,
        );
        assert!(
            spec(&escape)
                .unwrap_err()
                .contains("inside the model folder")
        );
        let no_labels = MINIMAL.replace(r#"["a", "b"]"#, "[]");
        assert!(spec(&no_labels).unwrap_err().contains("labels"));
    }
}
