//! ONNX Runtime serving an RGB-only video classifier made elsewhere: the input and output
//! named in the folder's config ([`ExternalSpec`]), checked against the graph's declared
//! inputs and outputs when it loads.

use std::path::Path;

use candle_core::Tensor;
use ort::session::Session;
use ort::value::{Outlet, TensorElementType, ValueType};

use super::Backend;
use super::ort::{OrtOptions, Provider, input, ort_error, session};
use crate::artifact::external::{ExternalSpec, Layout, OutputKind};

/// A session over an external graph, fed and read as its config says.
pub struct OrtRgbBackend {
    session: Session,
    provider: Provider,
    spec: ExternalSpec,
    max_batch: usize,
}

impl OrtRgbBackend {
    /// Loads `dir/<spec.file>` and checks it against `spec`: a missing input or output
    /// name, a wrong rank or size, or a class count that differs from the labels is an
    /// error naming both sides.
    pub fn load_dir(
        dir: &Path,
        spec: &ExternalSpec,
        options: &OrtOptions,
        max_batch: usize,
    ) -> crate::Result<Self> {
        let path = dir.join(&spec.file);
        let bytes = std::fs::read(&path).map_err(|e| crate::Error::io(&path, e))?;
        let session = session(&bytes, options)?;
        let batch = check_contract(session.inputs(), session.outputs(), spec).map_err(|e| {
            crate::Error::Model(format!(
                "{} does not match its config.json: {e}",
                path.display()
            ))
        })?;
        // A graph exported with a fixed batch of 1 runs one sample at a time.
        let max_batch = if batch == Some(1) { 1 } else { max_batch };
        tracing::info!(
            model = %path.display(),
            input = %spec.input.name,
            output = %spec.output.name,
            max_batch,
            "external ONNX model loaded"
        );
        Ok(OrtRgbBackend {
            session,
            provider: options.provider,
            spec: spec.clone(),
            max_batch,
        })
    }

    /// Class probabilities for rgb `(B, T, 3, H, W)`, one row per sample.
    pub fn probabilities(&mut self, rgb: &Tensor) -> crate::Result<Vec<Vec<f32>>> {
        let x = match self.spec.input.layout {
            Layout::Ncthw => rgb.permute((0, 2, 1, 3, 4))?.contiguous()?,
            Layout::Ntchw => rgb.clone(),
            Layout::Nchw => rgb.squeeze(1)?,
        };
        let samples = x.dim(0)?;
        let name = self.spec.output.name.as_str();
        let outputs = self
            .session
            .run(ort::inputs![self.spec.input.name.as_str() => input(&x)?])
            .map_err(|e| ort_error("run", e))?;
        let value = outputs
            .get(name)
            .ok_or_else(|| ort_error("outputs", format!("the model has no output {name}")))?;
        let (shape, data) = value
            .try_extract_tensor::<f32>()
            .map_err(|e| ort_error(name, e))?;
        let classes = self.spec.labels.len();
        if **shape != [samples as i64, classes as i64] {
            return Err(ort_error(
                name,
                format!("shape {shape:?}, expected [{samples}, {classes}] (samples, labels)"),
            ));
        }
        Ok(data
            .chunks(classes)
            .map(|row| match self.spec.output.kind {
                OutputKind::Probabilities => row.to_vec(),
                OutputKind::Logits => softmax(row),
            })
            .collect())
    }
}

/// Softmax of one row, shifted by its maximum so large logits do not overflow.
fn softmax(row: &[f32]) -> Vec<f32> {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let exp: Vec<f32> = row.iter().map(|v| (v - max).exp()).collect();
    let sum: f32 = exp.iter().sum();
    exp.into_iter().map(|e| e / sum).collect()
}

/// The element type and declared shape (`-1` for a dynamic axis) of a tensor outlet.
fn tensor(outlet: &Outlet) -> Result<(TensorElementType, &[i64]), String> {
    match outlet.dtype() {
        ValueType::Tensor { ty, shape, .. } => Ok((*ty, shape)),
        other => Err(format!("{} is a {other}, not a tensor", outlet.name())),
    }
}

fn names(outlets: &[Outlet]) -> Vec<&str> {
    outlets.iter().map(Outlet::name).collect()
}

/// Checks the graph's declared inputs and outputs against `spec`; returns the input's
/// batch size when the graph fixes it.
fn check_contract(
    inputs: &[Outlet],
    outputs: &[Outlet],
    spec: &ExternalSpec,
) -> Result<Option<usize>, String> {
    let want = &spec.input;
    let outlet = inputs
        .iter()
        .find(|o| o.name() == want.name)
        .ok_or_else(|| {
            format!(
                "the graph has no input {:?} (its inputs: {:?})",
                want.name,
                names(inputs)
            )
        })?;
    if inputs.len() > 1 {
        return Err(format!(
            "the graph needs inputs {:?}, config.json feeds only {:?}",
            names(inputs),
            want.name
        ));
    }
    let (ty, shape) = tensor(outlet)?;
    if ty != TensorElementType::Float32 {
        return Err(format!("input {:?} takes {ty}, not float32", want.name));
    }
    let layout = want.layout;
    if shape.len() != layout.rank() {
        return Err(format!(
            "input {:?} has rank {} (shape {shape:?}), layout {layout} needs rank {}",
            want.name,
            shape.len(),
            layout.rank()
        ));
    }
    let expected: Vec<i64> = layout
        .sample_dims(want.frames, want.size as usize)
        .into_iter()
        .map(|d| d as i64)
        .collect();
    let clash = shape[1..]
        .iter()
        .zip(&expected)
        .any(|(&declared, &wanted)| declared >= 0 && declared != wanted);
    if clash {
        return Err(format!(
            "input {:?} has shape {shape:?}, but layout {layout} with frames {} and size {} \
             gives [N, {}]",
            want.name,
            want.frames,
            want.size,
            expected
                .iter()
                .map(i64::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    let batch = match shape[0] {
        n if n < 0 => None,
        1 => Some(1),
        n => {
            return Err(format!(
                "input {:?} fixes the batch at {n}; export it with a dynamic or 1 batch",
                want.name
            ));
        }
    };
    let name = &spec.output.name;
    let output = outputs.iter().find(|o| o.name() == name).ok_or_else(|| {
        format!(
            "the graph has no output {name:?} (its outputs: {:?})",
            names(outputs)
        )
    })?;
    let (ty, shape) = tensor(output)?;
    if ty != TensorElementType::Float32 || shape.len() != 2 {
        return Err(format!(
            "output {name:?} is {ty} {shape:?}, expected float32 (N, classes)"
        ));
    }
    let classes = spec.labels.len() as i64;
    if shape[1] >= 0 && shape[1] != classes {
        return Err(format!(
            "output {name:?} gives {} classes, config.json has {classes} labels",
            shape[1]
        ));
    }
    Ok(batch)
}

impl Backend for OrtRgbBackend {
    fn name(&self) -> &'static str {
        "ort"
    }

    fn device(&self) -> String {
        self.provider.name()
    }

    fn max_batch(&self) -> usize {
        self.max_batch
    }

    /// `flow` is empty for an RGB-only model and ignored.
    fn predict(&mut self, rgb: &Tensor, _flow: &Tensor) -> crate::Result<Vec<Vec<f32>>> {
        self.probabilities(rgb)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn softmax_is_shift_invariant_and_sums_to_one() {
        let p = softmax(&[1000.0, 1001.0, 999.0]);
        let q = softmax(&[0.0, 1.0, -1.0]);
        assert!((p.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        assert!(p.iter().zip(&q).all(|(a, b)| (a - b).abs() < 1e-6));
        assert!((q[1] - 1f32.exp() / (1.0 + 1f32.exp() + (-1f32).exp())).abs() < 1e-6);
    }
}
