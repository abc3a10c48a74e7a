//! Evaluation batches built once and reused by every pass of an analysis.

use candle_core::Tensor;

use super::error::Result;
use crate::train::augment::Transform;
use crate::train::batch::{self, InputSpec};
use crate::train::trainer::Labelled;

/// A batch of clips with their class indices.
#[derive(Debug, Clone)]
pub struct Batch {
    /// `(B, T, 3, S, S)`.
    pub rgb: Tensor,
    /// `(B, T, 2L, S, S)`.
    pub flow: Tensor,
    /// Class index of each clip.
    pub labels: Vec<usize>,
}

impl Batch {
    /// Clips `start..start + len` of this batch.
    pub fn narrow(&self, start: usize, len: usize) -> Result<Batch> {
        Ok(Batch {
            rgb: self.rgb.narrow(0, start, len)?,
            flow: self.flow.narrow(0, start, len)?,
            labels: self.labels[start..start + len].to_vec(),
        })
    }

    /// The labels as a `u32` tensor for the loss.
    pub fn targets(&self) -> Result<Tensor> {
        let labels: Vec<u32> = self.labels.iter().map(|&l| l as u32).collect();
        Ok(Tensor::new(labels.as_slice(), self.rgb.device())?)
    }
}

/// Samples every video as evaluation does (centred positions, no augmentation), in batches.
pub fn batches(set: &[Labelled], spec: &InputSpec, batch_size: usize) -> Result<Vec<Batch>> {
    set.chunks(batch_size.max(1))
        .map(|chunk| {
            let (mut rgb, mut flow) = (Vec::new(), Vec::new());
            for (video, _) in chunk {
                let starts = batch::positions(video.frames, spec.frames, spec.flow_stack, None);
                let identity = Transform::identity(spec.size);
                batch::push_sample(video, spec, &starts, &identity, &mut rgb, &mut flow);
            }
            let (rgb, flow) = batch::to_tensors(rgb, flow, chunk.len(), spec)?;
            let labels = chunk.iter().map(|(_, l)| *l).collect();
            Ok(Batch { rgb, flow, labels })
        })
        .collect()
}
