//! Residual alignment (Li & Papyan, 2023). Each unit's residual `r` (see [`probe`]) is
//! linearised at a clip by its Jacobian, whose top singular pair comes from power iteration
//! ([`power`]). Reported per stream:
//! - RA2: `|cos|` between the top left singular vector of unit i and the top right singular
//!   vector of unit j (the diagonal: a Jacobian's own left/right alignment), where the two
//!   live in the same space; averaged over clips.
//! - RA4: the top singular value against depth.
//! - RA1: how close a stage's successive representations (its input, when the first unit
//!   keeps the shape, and each unit's output) lie to a line: the share of their spread along
//!   the first principal direction, and how even the steps between them are.

use std::path::{Path, PathBuf};

use plotters::style::{BLUE, RED};
use serde::Serialize;

use super::error::{AnalysisError, Result};
use super::inputs::Batch;
use super::paths::mean_std;
use super::plots::{self, Series};
use super::power::{self, PowerOptions, SingularPair, abs_cos, line_fraction};
use super::probe::{self, Intervention, StreamKind, UnitId, UnitRecord};
use crate::model::StResNet;
use crate::model::norm::{BnMode, Ctx};

/// Settings of the alignment study.
#[derive(Debug, Clone, Copy)]
pub struct AlignmentOptions {
    /// Clips analysed (taken from the start of the batch).
    pub samples: usize,
    /// Power iteration settings; unit u of clip c starts from seed `seed + 1000 c + u`.
    pub power: PowerOptions,
}

/// One unit's top singular value and own alignment, over the clips.
#[derive(Debug, Clone, Serialize)]
pub struct UnitAlignment {
    /// State-dict name.
    pub name: String,
    /// The unit.
    pub unit: UnitId,
    /// Position in the stream (0 = first unit).
    pub depth: usize,
    /// Mean top singular value.
    pub sigma_mean: f64,
    /// Its standard deviation over clips.
    pub sigma_std: f64,
    /// Mean power iterations to converge.
    pub iterations_mean: f64,
}

/// RA1 for one stage.
#[derive(Debug, Clone, Serialize)]
pub struct StageLine {
    /// Stage (0-based).
    pub stage: usize,
    /// Representations in the stage's own space.
    pub points: usize,
    /// Mean share of their spread along the first principal direction (needs 3 points:
    /// two always lie on a line).
    pub line_fraction: Option<f64>,
    /// Mean coefficient of variation of the step lengths between them (0: equispaced).
    pub step_cv: Option<f64>,
}

/// The alignment study of one stream.
#[derive(Debug, Clone, Serialize)]
pub struct StreamAlignment {
    /// Which stream.
    pub stream: StreamKind,
    /// Its units in forward order (RA4).
    pub units: Vec<UnitAlignment>,
    /// `ra2[i][j]`: mean `|cos(u_i, v_j)|`; null where the spaces differ or a Jacobian is zero.
    pub ra2: Vec<Vec<Option<f64>>>,
    /// RA1 per stage.
    pub ra1: Vec<StageLine>,
}

/// The alignment study of both streams.
#[derive(Debug, Clone, Serialize)]
pub struct AlignmentReport {
    /// Clips analysed.
    pub samples: usize,
    /// Most power iterations per Jacobian.
    pub iterations: usize,
    /// How the singular pairs were obtained.
    pub method: String,
    /// Appearance, then motion.
    pub streams: Vec<StreamAlignment>,
}

/// Top singular pair of the residual of the recorded unit at its recorded input.
pub fn unit_singular(
    net: &StResNet,
    rec: &UnitRecord,
    frames: usize,
    opts: PowerOptions,
) -> Result<SingularPair> {
    let block = probe::unit(net, rec.id)?;
    let f = |x: &candle_core::Tensor| {
        let mut ctx = Ctx::new(frames, BnMode::Eval);
        probe::residual(block, x, rec.link.as_ref(), &mut ctx)
    };
    power::top_singular(f, &rec.input, opts)
}

#[derive(Default, Clone)]
struct Mean {
    sum: f64,
    count: usize,
}

impl Mean {
    fn add(&mut self, x: Option<f64>) {
        if let Some(x) = x {
            self.sum += x;
            self.count += 1;
        }
    }
    fn get(&self) -> Option<f64> {
        (self.count > 0).then(|| self.sum / self.count as f64)
    }
}

fn flat(t: &candle_core::Tensor) -> Result<Vec<f64>> {
    Ok(t.flatten_all()?
        .to_dtype(candle_core::DType::F64)?
        .to_vec1::<f64>()?)
}

/// Runs the alignment study on the first `opts.samples` clips of `batch`.
pub fn run(net: &StResNet, batch: &Batch, opts: AlignmentOptions) -> Result<AlignmentReport> {
    let clips = opts.samples.min(batch.labels.len());
    if clips == 0 {
        return Err(AnalysisError::invalid("alignment: no clips to analyse"));
    }
    let frames = batch.rgb.dim(1)?;
    let mut out = Vec::new();
    for stream in StreamKind::ALL {
        let units = probe::stream_units(net, stream);
        let n = units.len();
        let mut sigmas = vec![Vec::new(); n];
        let mut iterations = vec![Vec::new(); n];
        let mut ra2 = vec![vec![Mean::default(); n]; n];
        let stages = stream.of(net).stages.len();
        let mut lines = vec![(Mean::default(), Mean::default(), 0usize); stages];
        for c in 0..clips {
            let one = batch.narrow(c, 1)?;
            let mut records = Vec::new();
            probe::forward(
                net,
                &one.rgb,
                &one.flow,
                &Intervention::default(),
                Some(&mut records),
            )?;
            records.retain(|r| r.id.stream == stream);
            let mut pairs = Vec::with_capacity(n);
            for (u, rec) in records.iter().enumerate() {
                let seed = opts.power.seed + 1000 * c as u64 + u as u64;
                let pair = unit_singular(net, rec, frames, PowerOptions { seed, ..opts.power })?;
                tracing::debug!(unit = %rec.id, clip = c, sigma = pair.value, "top singular value");
                sigmas[u].push(pair.value);
                iterations[u].push(pair.iterations as f64);
                pairs.push(pair);
            }
            for (i, pi) in pairs.iter().enumerate() {
                for (j, pj) in pairs.iter().enumerate() {
                    ra2[i][j].add(abs_cos(&pi.left, &pj.right)?);
                }
            }
            for (stage, line) in lines.iter_mut().enumerate() {
                let in_stage: Vec<&UnitRecord> =
                    records.iter().filter(|r| r.id.stage == stage).collect();
                let mut points = Vec::new();
                if let Some(first) = in_stage.first()
                    && first.input.dims() == first.output.dims()
                {
                    points.push(flat(&first.input)?);
                }
                for r in &in_stage {
                    points.push(flat(&r.output)?);
                }
                line.2 = points.len();
                if points.len() >= 3 {
                    line.0.add(line_fraction(&points));
                    line.1.add(step_cv(&points));
                }
            }
        }
        out.push(StreamAlignment {
            stream,
            units: units
                .iter()
                .enumerate()
                .map(|(u, &id)| {
                    let (sigma_mean, sigma_std) = mean_std(&sigmas[u]);
                    UnitAlignment {
                        name: id.to_string(),
                        unit: id,
                        depth: u,
                        sigma_mean,
                        sigma_std,
                        iterations_mean: mean_std(&iterations[u]).0,
                    }
                })
                .collect(),
            ra2: ra2
                .iter()
                .map(|row| row.iter().map(Mean::get).collect())
                .collect(),
            ra1: lines
                .iter()
                .enumerate()
                .map(|(stage, (fraction, cv, points))| StageLine {
                    stage,
                    points: *points,
                    line_fraction: fraction.get(),
                    step_cv: cv.get(),
                })
                .collect(),
        });
    }
    Ok(AlignmentReport {
        samples: clips,
        iterations: opts.power.iterations,
        method: "power iteration on J^T J per clip: J v by central difference, J^T w by \
                 backpropagation; BatchNorm in inference mode"
            .into(),
        streams: out,
    })
}

/// Coefficient of variation of the distances between successive points.
fn step_cv(points: &[Vec<f64>]) -> Option<f64> {
    let steps: Vec<f64> = points
        .windows(2)
        .map(|w| {
            w[0].iter()
                .zip(&w[1])
                .map(|(a, b)| (a - b).powi(2))
                .sum::<f64>()
                .sqrt()
        })
        .collect();
    let (mean, std) = mean_std(&steps);
    (mean > 0.0).then(|| std / mean)
}

/// `alignment_ra2_<stream>.png`: the RA2 matrix (row i: left vector of unit i, column j:
/// right vector of unit j; white 0, dark blue 1, grey: not comparable); `alignment_ra4.png`:
/// top singular value against depth, blue appearance, red motion, ± std over clips.
pub fn plot(report: &AlignmentReport, dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for s in &report.streams {
        let path = dir.join(format!("alignment_ra2_{}.png", s.stream.name()));
        plots::heatmap(&path, &s.ra2)?;
        files.push(path);
    }
    let series: Vec<Series> = report
        .streams
        .iter()
        .zip([BLUE, RED])
        .map(|(s, colour)| Series {
            spread: Some(s.units.iter().map(|u| u.sigma_std).collect()),
            ..Series::line(
                s.units
                    .iter()
                    .map(|u| (u.depth as f64, u.sigma_mean))
                    .collect(),
                colour,
            )
        })
        .collect();
    let depth = report
        .streams
        .iter()
        .map(|s| s.units.len())
        .max()
        .unwrap_or(1);
    let path = dir.join("alignment_ra4.png");
    plots::chart(
        &path,
        (0.0, depth.saturating_sub(1).max(1) as f64),
        0.0,
        &series,
    )?;
    files.push(path);
    Ok(files)
}
