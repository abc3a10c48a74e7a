//! Walks the architecture the way `model::StResNet` builds it and emits the same
//! computation as ONNX nodes, reading weights by their PyTorch-style names.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use onnx_protobuf::{Message, ModelProto};

use super::builder::{Dim, GraphBuilder, f32_value, int, ints};
use super::{
    INPUT_FLOW, INPUT_RGB, OPSET, OUTPUT_APPEARANCE, OUTPUT_FUSED, OUTPUT_MOTION,
    OUTPUT_PROBABILITIES, OnnxError,
};
use crate::artifact::ModelSpec;
use crate::model::Config;
use crate::ops::conv::ConvConfig;

/// An activation `(N, C, H, W)` in the graph, with its static channel and spatial sizes
/// (N = B * T is dynamic).
#[derive(Debug, Clone)]
struct Act {
    name: String,
    c: usize,
    h: usize,
    w: usize,
}

/// Builds the ONNX model of the two-stream network `cfg` with `weights` (PyTorch-style names).
pub fn export(cfg: &Config, weights: &HashMap<String, Tensor>) -> Result<ModelProto, OnnxError> {
    cfg.validate().map_err(OnnxError::Model)?;
    let mut e = Exporter {
        b: GraphBuilder::default(),
        weights,
        cfg,
    };
    let (t, s) = (cfg.frames, cfg.input_size);
    let a = e.flatten(INPUT_RGB, 3)?;
    let m = e.flatten(INPUT_FLOW, cfg.flow_channels())?;
    let mut a = e.stem("appearance", a)?;
    let mut m = e.stem("motion", m)?;
    for stage in 0..4 {
        let link = cfg.links.then(|| m.clone());
        a = e.stage(&format!("appearance.layer{}", stage + 1), stage, a, link)?;
        m = e.stage(&format!("motion.layer{}", stage + 1), stage, m, None)?;
    }
    let a = e.head("appearance", a, OUTPUT_APPEARANCE)?;
    let m = e.head("motion", m, OUTPUT_MOTION)?;
    e.fuse(&a, &m)?;
    let batch = Dim::Named("batch");
    let k = Dim::Fixed(cfg.num_classes);
    let input = |name, c| {
        let dims = [
            batch.clone(),
            Dim::Fixed(t),
            Dim::Fixed(c),
            Dim::Fixed(s),
            Dim::Fixed(s),
        ];
        f32_value(name, &dims)
    };
    let inputs = vec![input(INPUT_RGB, 3), input(INPUT_FLOW, cfg.flow_channels())];
    let outputs = [
        OUTPUT_PROBABILITIES,
        OUTPUT_FUSED,
        OUTPUT_APPEARANCE,
        OUTPUT_MOTION,
    ]
    .iter()
    .map(|name| f32_value(name, &[batch.clone(), k.clone()]))
    .collect();
    Ok(e.b.finish("st_resnet", OPSET, inputs, outputs))
}

/// Loads `model.safetensors` as a name → tensor map on the CPU.
pub fn load_weights(path: &Path) -> Result<HashMap<String, Tensor>, OnnxError> {
    Ok(candle_core::safetensors::load(path, &Device::Cpu)?)
}

/// Serialises a model to the ONNX file format.
pub fn to_bytes(model: &ModelProto) -> Result<Vec<u8>, OnnxError> {
    model
        .write_to_bytes()
        .map_err(|e| OnnxError::Protobuf(e.to_string()))
}

/// Exports the model folder `dir` (config.json + model.safetensors) to `output`
/// (default `dir/model.onnx`); returns the path written.
pub fn export_dir(dir: &Path, output: Option<&Path>) -> Result<PathBuf, OnnxError> {
    let spec = ModelSpec::load(dir).map_err(|e| OnnxError::Model(e.to_string()))?;
    let weights = load_weights(&dir.join("model.safetensors"))?;
    let model = export(&spec.architecture, &weights)?;
    let path = output.map_or_else(|| dir.join("model.onnx"), Path::to_path_buf);
    std::fs::write(&path, to_bytes(&model)?)?;
    Ok(path)
}

struct Exporter<'a> {
    b: GraphBuilder,
    weights: &'a HashMap<String, Tensor>,
    cfg: &'a Config,
}

impl Exporter<'_> {
    /// A weight as f32 values, checked against the expected shape.
    fn weight(&self, name: &str, expected: &[usize]) -> Result<Vec<f32>, OnnxError> {
        let t = self
            .weights
            .get(name)
            .ok_or_else(|| OnnxError::MissingWeight(name.to_string()))?;
        if t.dims() != expected {
            return Err(OnnxError::Shape {
                name: name.to_string(),
                expected: expected.to_vec(),
                got: t.dims().to_vec(),
            });
        }
        Ok(t.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?)
    }

    /// `(B, T, C, H, W)` input to `(B * T, C, H, W)`.
    fn flatten(&mut self, input: &str, c: usize) -> Result<Act, OnnxError> {
        let s = self.cfg.input_size;
        let shape = self
            .b
            .i64_tensor("shape", &[-1, c as i64, s as i64, s as i64]);
        let name = self.b.node("Reshape", &[input, &shape], Vec::new());
        Ok(Act {
            name,
            c,
            h: s,
            w: s,
        })
    }

    /// A bias-free convolution followed by BatchNorm in inference mode, folded into one
    /// convolution with bias: `w' = w * g / sqrt(v + eps)`, `b' = beta - mean * g / sqrt(v + eps)`.
    /// A temporal convolution (`(out, in, 3, kh, kw)` weight) runs as a Conv over
    /// `(B, C, T, H, W)`, zero-padded by one frame in time.
    fn conv_bn(
        &mut self,
        x: &Act,
        conv: &str,
        bn: &str,
        out: usize,
        geometry: ConvConfig,
        temporal: bool,
    ) -> Result<Act, OnnxError> {
        let (kh, kw) = geometry.kernel;
        let (sh, sw) = geometry.stride;
        let (ph, pw) = geometry.padding;
        let dims: Vec<usize> = if temporal {
            vec![out, x.c, 3, kh, kw]
        } else {
            vec![out, x.c, kh, kw]
        };
        let mut w = self.weight(&format!("{conv}.weight"), &dims)?;
        let gamma = self.weight(&format!("{bn}.weight"), &[out])?;
        let beta = self.weight(&format!("{bn}.bias"), &[out])?;
        let mean = self.weight(&format!("{bn}.running_mean"), &[out])?;
        let var = self.weight(&format!("{bn}.running_var"), &[out])?;
        let per_out = w.len() / out;
        let mut bias = Vec::with_capacity(out);
        for o in 0..out {
            let scale = f64::from(gamma[o]) / (f64::from(var[o]) + self.cfg.bn_eps).sqrt();
            for v in &mut w[o * per_out..(o + 1) * per_out] {
                *v = (f64::from(*v) * scale) as f32;
            }
            bias.push((f64::from(beta[o]) - f64::from(mean[o]) * scale) as f32);
        }
        let w = self.b.f32_tensor(&format!("{conv}.weight"), &dims, w);
        let bias = self.b.f32_tensor(&format!("{conv}.bias"), &[out], bias);
        let h = (x.h + 2 * ph - kh) / sh + 1;
        let wd = (x.w + 2 * pw - kw) / sw + 1;
        let (kh, kw, sh, sw, ph, pw) = (
            kh as i64, kw as i64, sh as i64, sw as i64, ph as i64, pw as i64,
        );
        let name = if temporal {
            let t = self.cfg.frames as i64;
            let clips = self
                .b
                .i64_tensor("shape", &[-1, t, x.c as i64, x.h as i64, x.w as i64]);
            let clips = self.b.node("Reshape", &[&x.name, &clips], Vec::new());
            let perm = ints("perm", &[0, 2, 1, 3, 4]);
            let ncthw = self.b.node("Transpose", &[&clips], vec![perm.clone()]);
            let attrs = vec![
                ints("kernel_shape", &[3, kh, kw]),
                ints("strides", &[1, sh, sw]),
                ints("pads", &[1, ph, pw, 1, ph, pw]),
            ];
            let y = self.b.node("Conv", &[&ncthw, &w, &bias], attrs);
            let ntchw = self.b.node("Transpose", &[&y], vec![perm]);
            let flat = self
                .b
                .i64_tensor("shape", &[-1, out as i64, h as i64, wd as i64]);
            self.b.node("Reshape", &[&ntchw, &flat], Vec::new())
        } else {
            let attrs = vec![
                ints("kernel_shape", &[kh, kw]),
                ints("strides", &[sh, sw]),
                ints("pads", &[ph, pw, ph, pw]),
            ];
            self.b.node("Conv", &[&x.name, &w, &bias], attrs)
        };
        Ok(Act {
            name,
            c: out,
            h,
            w: wd,
        })
    }

    fn relu(&mut self, x: Act) -> Act {
        let name = self.b.node("Relu", &[&x.name], Vec::new());
        Act { name, ..x }
    }

    fn add(&mut self, x: &Act, y: &Act) -> Act {
        let name = self.b.node("Add", &[&x.name, &y.name], Vec::new());
        Act { name, ..x.clone() }
    }

    /// conv1, bn1, ReLU and the optional 3x3 stride-2 max-pool.
    fn stem(&mut self, stream: &str, x: Act) -> Result<Act, OnnxError> {
        let k = self.cfg.stem_kernel;
        let geometry = ConvConfig::square(k, self.cfg.stem_stride, k / 2);
        let conv = format!("{stream}.conv1");
        let bn = format!("{stream}.bn1");
        let h = self.conv_bn(&x, &conv, &bn, self.cfg.base_width, geometry, false)?;
        let h = self.relu(h);
        if !self.cfg.stem_pool {
            return Ok(h);
        }
        // ONNX pads max-pools with -inf, candle with zeros: equal after the ReLU.
        let attrs = vec![
            ints("kernel_shape", &[3, 3]),
            ints("strides", &[2, 2]),
            ints("pads", &[1, 1, 1, 1]),
        ];
        let name = self.b.node("MaxPool", &[&h.name], attrs);
        Ok(Act {
            name,
            c: h.c,
            h: (h.h - 1) / 2 + 1,
            w: (h.w - 1) / 2 + 1,
        })
    }

    /// The residual branch: (conv, bn) layers with ReLU between them, none after the last.
    fn branch(
        &mut self,
        prefix: &str,
        x: &Act,
        mid: usize,
        out: usize,
        stride: usize,
        temporal: bool,
    ) -> Result<Act, OnnxError> {
        let plan = if self.cfg.bottleneck {
            vec![
                (mid, ConvConfig::square(1, 1, 0)),
                (mid, ConvConfig::square(3, stride, 1)),
                (out, ConvConfig::square(1, 1, 0)),
            ]
        } else {
            vec![
                (mid, ConvConfig::square(3, stride, 1)),
                (out, ConvConfig::square(3, 1, 1)),
            ]
        };
        let last = plan.len() - 1;
        let mut h = x.clone();
        for (i, (cout, geometry)) in plan.into_iter().enumerate() {
            let conv = format!("{prefix}.conv{}", i + 1);
            let bn = format!("{prefix}.bn{}", i + 1);
            h = self.conv_bn(&h, &conv, &bn, cout, geometry, temporal && i == 0)?;
            if i < last {
                h = self.relu(h);
            }
        }
        Ok(h)
    }

    /// One stage: the ordinary first unit (projection shortcut, link into its branch),
    /// then ordinary units or RevNet couplings.
    fn stage(
        &mut self,
        prefix: &str,
        stage: usize,
        x: Act,
        link: Option<Act>,
    ) -> Result<Act, OnnxError> {
        let cfg = self.cfg;
        let out = cfg.stage_width(stage);
        let mid = cfg.base_width << stage;
        let stride = if stage > 0 { 2 } else { 1 };
        let mut h = self.unit(
            &format!("{prefix}.0"),
            stage,
            0,
            x,
            link.as_ref(),
            out,
            mid,
            stride,
        )?;
        for unit in 1..cfg.units[stage] {
            let unit_prefix = format!("{prefix}.{unit}");
            h = if cfg.reversible {
                self.coupling(&unit_prefix, h, mid, cfg.is_temporal(stage, unit))?
            } else {
                self.unit(&unit_prefix, stage, unit, h, None, out, mid, 1)?
            };
        }
        Ok(h)
    }

    /// `relu(shortcut(x) + branch(x + link))`.
    #[allow(clippy::too_many_arguments)]
    fn unit(
        &mut self,
        prefix: &str,
        stage: usize,
        unit: usize,
        x: Act,
        link: Option<&Act>,
        out: usize,
        mid: usize,
        stride: usize,
    ) -> Result<Act, OnnxError> {
        let shortcut = if stride != 1 || x.c != out {
            let conv = format!("{prefix}.downsample.0");
            let bn = format!("{prefix}.downsample.1");
            self.conv_bn(&x, &conv, &bn, out, ConvConfig::square(1, stride, 0), false)?
        } else {
            x.clone()
        };
        let branch_in = match link {
            Some(l) => self.add(&x, l),
            None => x,
        };
        let temporal = self.cfg.is_temporal(stage, unit);
        let y = self.branch(prefix, &branch_in, mid, out, stride, temporal)?;
        let sum = self.add(&shortcut, &y);
        Ok(self.relu(sum))
    }

    /// `(x1, x2) -> (x1 + F(x2), x2 + G(y1))` on the two channel halves.
    fn coupling(
        &mut self,
        prefix: &str,
        x: Act,
        mid: usize,
        temporal: bool,
    ) -> Result<Act, OnnxError> {
        let half = x.c / 2;
        // Without a `split` input, Split cuts into equal parts (along axis 0 by default).
        let halves = self.b.node_n("Split", &[&x.name], vec![int("axis", 1)], 2);
        let part = |name: &String| Act {
            name: name.clone(),
            c: half,
            h: x.h,
            w: x.w,
        };
        let (x1, x2) = (part(&halves[0]), part(&halves[1]));
        let f = self.branch(&format!("{prefix}.f"), &x2, mid / 2, half, 1, temporal)?;
        let y1 = self.add(&x1, &f);
        let g = self.branch(&format!("{prefix}.g"), &y1, mid / 2, half, 1, temporal)?;
        let y2 = self.add(&x2, &g);
        let name = self
            .b
            .node("Concat", &[&y1.name, &y2.name], vec![int("axis", 1)]);
        Ok(Act { name, ..x })
    }

    /// Max over the clip's frames, mean over space, then `fc`; the logits are named `output`.
    fn head(&mut self, stream: &str, x: Act, output: &str) -> Result<String, OnnxError> {
        let t = self.cfg.frames as i64;
        let shape = self
            .b
            .i64_tensor("shape", &[-1, t, x.c as i64, x.h as i64, x.w as i64]);
        let clips = self.b.node("Reshape", &[&x.name, &shape], Vec::new());
        let keep = int("keepdims", 0);
        let maxed = self.b.node(
            "ReduceMax",
            &[&clips],
            vec![ints("axes", &[1]), keep.clone()],
        );
        let pooled = self
            .b
            .node("ReduceMean", &[&maxed], vec![ints("axes", &[2, 3]), keep]);
        let k = self.cfg.num_classes;
        let w = self.weight(&format!("{stream}.fc.weight"), &[k, x.c])?;
        let bias = self.weight(&format!("{stream}.fc.bias"), &[k])?;
        let w = self
            .b
            .f32_tensor(&format!("{stream}.fc.weight"), &[k, x.c], w);
        let bias = self.b.f32_tensor(&format!("{stream}.fc.bias"), &[k], bias);
        self.b.node_to(
            "Gemm",
            &[&pooled, &w, &bias],
            vec![int("transB", 1)],
            &[output],
        );
        Ok(output.to_string())
    }

    /// `fused = wa * appearance + wm * motion` and its softmax.
    fn fuse(&mut self, appearance: &str, motion: &str) -> Result<(), OnnxError> {
        let [wa, wm] = self.cfg.fusion_weights;
        let wa = self.b.f32_tensor("fusion.appearance", &[], vec![wa as f32]);
        let wm = self.b.f32_tensor("fusion.motion", &[], vec![wm as f32]);
        let a = self.b.node("Mul", &[appearance, &wa], Vec::new());
        let m = self.b.node("Mul", &[motion, &wm], Vec::new());
        self.b
            .node_to("Add", &[&a, &m], Vec::new(), &[OUTPUT_FUSED]);
        self.b.node_to(
            "Softmax",
            &[OUTPUT_FUSED],
            vec![int("axis", -1)],
            &[OUTPUT_PROBABILITIES],
        );
        Ok(())
    }
}
