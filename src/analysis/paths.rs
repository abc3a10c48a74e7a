//! Path lengths (Veit et al., 2016). A stream of n residual units is a collection of 2^n
//! paths, C(n, k) of them through k residuals. The gradient that reaches the input through
//! paths of length k is estimated as in the paper: the forward pass is the whole network;
//! backward, k sampled units pass gradient through their residual only and the others
//! through their shortcut only, so a single path of length k carries gradient. Its norm
//! times C(n, k) is the gradient all paths of that length deliver.

use std::path::{Path, PathBuf};

use candle_core::{Tensor, Var};
use plotters::style::{BLUE, GREEN, RED};
use rand::SeedableRng;
use rand::rngs::StdRng;
use serde::Serialize;

use super::error::{AnalysisError, Result};
use super::inputs::Batch;
use super::plots::{self, Series};
use super::power::norm;
use super::probe::{self, Intervention, Route, StreamKind, UnitId};
use crate::model::StResNet;

/// C(n, k) as a float (exact up to 2^53).
pub fn binomial(n: usize, k: usize) -> f64 {
    if k > n {
        return 0.0;
    }
    let k = k.min(n - k);
    (0..k).fold(1.0, |acc, i| acc * (n - i) as f64 / (i + 1) as f64)
}

/// Number of paths of each length 0..=n through n units: C(n, k).
pub fn path_counts(n: usize) -> Vec<f64> {
    (0..=n).map(|k| binomial(n, k)).collect()
}

/// k-subsets of 0..n: all of them when there are at most `draws`, otherwise `draws` random ones.
pub fn subsets(n: usize, k: usize, draws: usize, rng: &mut StdRng) -> Vec<Vec<usize>> {
    if binomial(n, k) <= draws as f64 {
        let mut all = Vec::new();
        let mut current = Vec::new();
        combinations(0, n, k, &mut current, &mut all);
        return all;
    }
    (0..draws)
        .map(|_| {
            let mut s = rand::seq::index::sample(rng, n, k).into_vec();
            s.sort_unstable();
            s
        })
        .collect()
}

fn combinations(from: usize, n: usize, k: usize, cur: &mut Vec<usize>, out: &mut Vec<Vec<usize>>) {
    if cur.len() == k {
        out.push(cur.clone());
        return;
    }
    for i in from..n {
        cur.push(i);
        combinations(i + 1, n, k, cur, out);
        cur.pop();
    }
}

/// The intervention under which gradient flows only along the path through `chosen`
/// (indices into `units`): residual-only there, shortcut-only everywhere else.
pub fn path_intervention(units: &[UnitId], chosen: &[usize]) -> Intervention {
    let routes = units
        .iter()
        .enumerate()
        .map(|(i, &id)| {
            let route = if chosen.contains(&i) {
                Route::Residual
            } else {
                Route::Shortcut
            };
            (id, route)
        })
        .collect();
    Intervention {
        routes,
        ..Intervention::default()
    }
}

/// Gradient of the stream's mean cross-entropy with respect to the stream's input under `iv`.
pub fn input_gradient(
    net: &StResNet,
    batch: &Batch,
    stream: StreamKind,
    iv: &Intervention,
) -> Result<Tensor> {
    let input = match stream {
        StreamKind::Appearance => &batch.rgb,
        StreamKind::Motion => &batch.flow,
    };
    let var = Var::from_tensor(input)?;
    let (rgb, flow) = match stream {
        StreamKind::Appearance => (var.as_tensor(), &batch.flow),
        StreamKind::Motion => (&batch.rgb, var.as_tensor()),
    };
    let out = probe::forward(net, rgb, flow, iv, None)?;
    let loss = candle_nn::loss::cross_entropy(stream.logits(&out), &batch.targets()?)?;
    let grads = loss.backward()?;
    Ok(match grads.get(var.as_tensor()) {
        Some(g) => g.clone(),
        None => input.zeros_like()?,
    })
}

/// The smallest and largest length inside the central `coverage` of a distribution
/// `shares` over lengths (summing to 1): each tail holds at most `(1 - coverage) / 2`.
pub fn effective_range(shares: &[f64], coverage: f64) -> [usize; 2] {
    let tail = (1.0 - coverage) / 2.0;
    let mut cumulative = 0.0;
    let (mut lo, mut hi) = (None, None);
    for (k, s) in shares.iter().enumerate() {
        cumulative += s;
        // The tolerance keeps rounding in the running sum from moving a boundary.
        if lo.is_none() && cumulative > tail + 1e-12 {
            lo = Some(k);
        }
        if hi.is_none() && cumulative >= 1.0 - tail - 1e-12 {
            hi = Some(k);
        }
    }
    let last = shares.len().saturating_sub(1);
    [lo.unwrap_or(0), hi.unwrap_or(last)]
}

/// Settings of the path study.
#[derive(Debug, Clone, Copy)]
pub struct PathOptions {
    /// Paths sampled per length (all of them when there are fewer).
    pub draws: usize,
    /// Seed of the sampling.
    pub seed: u64,
    /// Share of the gradient the effective range must hold.
    pub coverage: f64,
}

/// Gradient through the paths of one length.
#[derive(Debug, Clone, Serialize)]
pub struct LengthGradient {
    /// Residual units on the path.
    pub length: usize,
    /// Paths of this length, C(n, k).
    pub paths: f64,
    /// Their share of all 2^n paths.
    pub path_share: f64,
    /// Paths sampled.
    pub sampled: usize,
    /// Mean input-gradient norm through one path.
    pub gradient_mean: f64,
    /// Its standard deviation over the sampled paths.
    pub gradient_std: f64,
    /// `gradient_mean * paths`: the gradient all paths of this length deliver.
    pub total_gradient: f64,
    /// Share of the total over all lengths.
    pub gradient_share: f64,
}

/// The path study of one stream.
#[derive(Debug, Clone, Serialize)]
pub struct StreamPaths {
    /// Which stream.
    pub stream: StreamKind,
    /// Its residual units, in forward order.
    pub units: Vec<String>,
    /// Lengths 0..=n.
    pub lengths: Vec<LengthGradient>,
    /// Shortest and longest length in the central `coverage` of the gradient.
    pub effective_range: [usize; 2],
    /// The share that range holds at least.
    pub coverage: f64,
    /// Mean length over all paths (n / 2).
    pub mean_path_length: f64,
    /// Mean length weighted by delivered gradient.
    pub mean_gradient_length: f64,
    /// Input-gradient norm of ordinary backpropagation (the sum over all paths' gradients).
    pub full_gradient: f64,
}

/// The path study of both streams.
#[derive(Debug, Clone, Serialize)]
pub struct PathsReport {
    /// Clips in the batch the gradients are taken on.
    pub clips: usize,
    /// Paths sampled per length.
    pub draws: usize,
    /// Seed of the sampling.
    pub seed: u64,
    /// How the figures were obtained.
    pub method: String,
    /// Appearance, then motion.
    pub streams: Vec<StreamPaths>,
}

/// Runs the path study of both streams on `batch`.
pub fn run(net: &StResNet, batch: &Batch, opts: PathOptions) -> Result<PathsReport> {
    if opts.draws == 0 || !(0.0..=1.0).contains(&opts.coverage) {
        return Err(AnalysisError::invalid(
            "paths: draws must be positive and coverage within [0, 1]",
        ));
    }
    let mut rng = StdRng::seed_from_u64(opts.seed);
    let streams = StreamKind::ALL
        .iter()
        .map(|&stream| stream_paths(net, batch, stream, opts, &mut rng))
        .collect::<Result<Vec<_>>>()?;
    Ok(PathsReport {
        clips: batch.labels.len(),
        draws: opts.draws,
        seed: opts.seed,
        method: "full forward pass; backward through the residual of k sampled units and the \
                 shortcut of the rest; norm of the gradient of the stream's mean cross-entropy \
                 at the stream's input"
            .into(),
        streams,
    })
}

fn stream_paths(
    net: &StResNet,
    batch: &Batch,
    stream: StreamKind,
    opts: PathOptions,
    rng: &mut StdRng,
) -> Result<StreamPaths> {
    let units = probe::stream_units(net, stream);
    let n = units.len();
    let full = norm(&input_gradient(
        net,
        batch,
        stream,
        &Intervention::default(),
    )?)?;
    let mut lengths = Vec::with_capacity(n + 1);
    for k in 0..=n {
        let norms = subsets(n, k, opts.draws, rng)
            .iter()
            .map(|chosen| {
                let iv = path_intervention(&units, chosen);
                norm(&input_gradient(net, batch, stream, &iv)?)
            })
            .collect::<Result<Vec<f64>>>()?;
        let (mean, std) = mean_std(&norms);
        let paths = binomial(n, k);
        lengths.push(LengthGradient {
            length: k,
            paths,
            path_share: paths / 2f64.powi(n as i32),
            sampled: norms.len(),
            gradient_mean: mean,
            gradient_std: std,
            total_gradient: mean * paths,
            gradient_share: 0.0,
        });
        tracing::debug!(stream = stream.name(), k, mean, "path gradient");
    }
    let total: f64 = lengths.iter().map(|l| l.total_gradient).sum();
    for l in &mut lengths {
        l.gradient_share = if total > 0.0 {
            l.total_gradient / total
        } else {
            0.0
        };
    }
    let shares: Vec<f64> = lengths.iter().map(|l| l.gradient_share).collect();
    Ok(StreamPaths {
        stream,
        units: units.iter().map(UnitId::to_string).collect(),
        effective_range: effective_range(&shares, opts.coverage),
        coverage: opts.coverage,
        mean_path_length: n as f64 / 2.0,
        mean_gradient_length: shares.iter().enumerate().map(|(k, s)| k as f64 * s).sum(),
        full_gradient: full,
        lengths,
    })
}

/// Mean and (population) standard deviation.
pub fn mean_std(xs: &[f64]) -> (f64, f64) {
    if xs.is_empty() {
        return (0.0, 0.0);
    }
    let mean = xs.iter().sum::<f64>() / xs.len() as f64;
    let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / xs.len() as f64;
    (mean, var.sqrt())
}

/// `paths_<stream>.png` per stream, x = path length: blue bars, share of paths; red line,
/// gradient through one path (scaled to its maximum, ± std); green line, share of the
/// total gradient delivered by paths of that length.
pub fn plot(report: &PathsReport, dir: &Path) -> Result<Vec<PathBuf>> {
    report
        .streams
        .iter()
        .map(|s| {
            let path = dir.join(format!("paths_{}.png", s.stream.name()));
            let peak = s
                .lengths
                .iter()
                .map(|l| l.gradient_mean)
                .fold(0.0, f64::max)
                .max(1e-30);
            let per_path = Series {
                spread: Some(s.lengths.iter().map(|l| l.gradient_std / peak).collect()),
                ..Series::line(
                    s.lengths
                        .iter()
                        .map(|l| (l.length as f64, l.gradient_mean / peak))
                        .collect(),
                    RED,
                )
            };
            let xy = |f: fn(&LengthGradient) -> f64| {
                s.lengths
                    .iter()
                    .map(|l| (l.length as f64, f(l)))
                    .collect::<Vec<_>>()
            };
            let x_max = s.lengths.len().saturating_sub(1) as f64 + 0.5;
            plots::chart(
                &path,
                (-0.5, x_max),
                1.0,
                &[
                    Series::bars(xy(|l| l.path_share), BLUE),
                    per_path,
                    Series::line(xy(|l| l.gradient_share), GREEN),
                ],
            )?;
            Ok(path)
        })
        .collect()
}
