//! Accuracy measures (top-k, per class, confusion matrix) and the JSON-lines metrics log.

use std::io::Write;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// Counts predictions against labels for `classes` classes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tally {
    /// `confusion[label][predicted]`.
    pub confusion: Vec<Vec<usize>>,
    /// Samples whose label is among the 5 highest scores.
    pub top5_hits: usize,
    /// Each sample's top-1 class, in the order added.
    pub predicted: Vec<usize>,
}

impl Tally {
    /// An empty tally.
    pub fn new(classes: usize) -> Self {
        Tally {
            confusion: vec![vec![0; classes]; classes],
            top5_hits: 0,
            predicted: Vec::new(),
        }
    }

    /// Adds one sample's scores (any monotone scale: logits or probabilities).
    pub fn add(&mut self, scores: &[f32], label: usize) {
        let mut order: Vec<usize> = (0..scores.len()).collect();
        order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
        self.confusion[label][order[0]] += 1;
        self.predicted.push(order[0]);
        if order.iter().take(5).any(|&c| c == label) {
            self.top5_hits += 1;
        }
    }

    /// Samples counted.
    pub fn total(&self) -> usize {
        self.confusion.iter().flatten().sum()
    }

    /// Fraction predicted correctly.
    pub fn top1(&self) -> f64 {
        let hits: usize = (0..self.confusion.len())
            .map(|c| self.confusion[c][c])
            .sum();
        hits as f64 / self.total().max(1) as f64
    }

    /// Fraction whose label is among the five highest scores.
    pub fn top5(&self) -> f64 {
        self.top5_hits as f64 / self.total().max(1) as f64
    }

    /// Top-1 accuracy of each class (NaN-free: 0 for classes without samples).
    pub fn per_class(&self) -> Vec<f64> {
        self.confusion
            .iter()
            .enumerate()
            .map(|(c, row)| row[c] as f64 / row.iter().sum::<usize>().max(1) as f64)
            .collect()
    }
}

/// One epoch's figures, a line of `metrics.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochMetrics {
    /// 1-based epoch.
    pub epoch: usize,
    /// Optimiser steps so far.
    pub step: usize,
    /// Learning rate at the epoch's last step.
    pub lr: f64,
    /// Mean training loss (sum of the three cross-entropies).
    pub train_loss: f64,
    /// Training top-1 of the fused score.
    pub train_top1: f64,
    /// Validation loss of the fused score.
    pub val_loss: f64,
    /// Validation top-1, fused.
    pub val_top1: f64,
    /// Validation top-5, fused.
    pub val_top5: f64,
    /// Validation top-1 of the appearance stream alone.
    pub val_top1_rgb: f64,
    /// Validation top-1 of the motion stream alone.
    pub val_top1_flow: f64,
    /// Seconds spent in this epoch.
    pub seconds: f64,
}

/// Appends one record to a JSON-lines file.
pub fn append_jsonl<T: Serialize>(path: &Path, record: &T) -> Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| Error::io(path, e))?;
    let line = serde_json::to_string(record)?;
    writeln!(f, "{line}").map_err(|e| Error::io(path, e))
}
