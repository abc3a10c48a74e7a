//! Lesion study (Veit et al., 2016): accuracy after deleting residual units (see
//! [`probe`] for what deleting means), after cutting each motion→appearance link, after
//! deleting k random units, and after swapping neighbouring units of a stage.
//!
//! The ensemble view's expectation for k deletions: if units act like independent members
//! of an ensemble, each deletion keeps the same fraction of the skill above chance as it
//! does alone, so the expected accuracy after deleting a set S is
//! `chance + (acc0 - chance) * prod_{u in S} (acc_u - chance) / (acc0 - chance)`, with
//! each factor clipped to [0, 1]. A sequential (non-ensemble) network breaks this: one
//! deletion already drops it to chance.

use std::path::{Path, PathBuf};

use plotters::style::{BLUE, GREEN, RED, RGBColor};
use rand::SeedableRng;
use rand::rngs::StdRng;
use serde::Serialize;

use super::error::{AnalysisError, Result};
use super::inputs::Batch;
use super::paths::{mean_std, subsets};
use super::plots::{self, Series};
use super::probe::{self, Intervention, StreamKind, UnitId};
use crate::model::StResNet;
use crate::train::metrics::Tally;

/// Top-1 accuracy of the fused score and of each stream.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Accuracy {
    /// Fused score.
    pub fused: f64,
    /// Appearance stream alone.
    pub appearance: f64,
    /// Motion stream alone.
    pub motion: f64,
}

/// Accuracy on `batches` under `iv`.
pub fn accuracy(
    net: &StResNet,
    batches: &[Batch],
    classes: usize,
    iv: &Intervention,
) -> Result<Accuracy> {
    let mut tallies = [
        Tally::new(classes),
        Tally::new(classes),
        Tally::new(classes),
    ];
    for b in batches {
        let out = probe::forward(net, &b.rgb, &b.flow, iv, None)?;
        for (tally, logits) in tallies
            .iter_mut()
            .zip([&out.fused, &out.appearance, &out.motion])
        {
            let rows = logits.to_vec2::<f32>()?;
            for (scores, &label) in rows.iter().zip(&b.labels) {
                if label >= classes {
                    return Err(AnalysisError::invalid(format!(
                        "label {label} is outside the model's {classes} classes"
                    )));
                }
                tally.add(scores, label);
            }
        }
    }
    Ok(Accuracy {
        fused: tallies[0].top1(),
        appearance: tallies[1].top1(),
        motion: tallies[2].top1(),
    })
}

/// Settings of the lesion study.
#[derive(Debug, Clone, Copy)]
pub struct LesionOptions {
    /// Random sets drawn per k (all sets when there are fewer).
    pub draws: usize,
    /// Seed of the draws.
    pub seed: u64,
    /// Leave projection units (a stage's shape-changing first unit) out of the random deletions.
    pub exclude_projection: bool,
}

/// Accuracy without one unit.
#[derive(Debug, Clone, Serialize)]
pub struct UnitLesion {
    /// State-dict name of the unit.
    pub name: String,
    /// The unit.
    pub unit: UnitId,
    /// Whether its shortcut is a projection (kept when the unit is deleted).
    pub projection: bool,
    /// Accuracy with the unit deleted.
    pub accuracy: Accuracy,
}

/// Accuracy without one link.
#[derive(Debug, Clone, Serialize)]
pub struct LinkLesion {
    /// Stage (0-based) whose motion→appearance link is cut.
    pub stage: usize,
    /// Accuracy without it.
    pub accuracy: Accuracy,
}

/// Fused error after deleting k random units.
#[derive(Debug, Clone, Serialize)]
pub struct RandomLesion {
    /// Units deleted.
    pub k: usize,
    /// Sets evaluated.
    pub draws: usize,
    /// Mean fused error over the sets.
    pub error_mean: f64,
    /// Its standard deviation.
    pub error_std: f64,
    /// The ensemble view's expected error, averaged over the same sets.
    pub expected_error: f64,
}

/// Accuracy with two neighbouring units of a stage swapped.
#[derive(Debug, Clone, Serialize)]
pub struct SwapLesion {
    /// Which stream.
    pub stream: StreamKind,
    /// Stage (0-based).
    pub stage: usize,
    /// The two unit indices swapped.
    pub units: [usize; 2],
    /// Accuracy after the swap.
    pub accuracy: Accuracy,
}

/// The whole lesion study.
#[derive(Debug, Clone, Serialize)]
pub struct LesionReport {
    /// Clips evaluated.
    pub samples: usize,
    /// Error of guessing (1 - 1 / classes).
    pub chance_error: f64,
    /// Accuracy of the intact model.
    pub baseline: Accuracy,
    /// Each unit deleted alone.
    pub units: Vec<UnitLesion>,
    /// Each link cut alone.
    pub links: Vec<LinkLesion>,
    /// Units the random deletions draw from.
    pub random_pool: Vec<String>,
    /// k random deletions, k = 1..=pool size.
    pub random: Vec<RandomLesion>,
    /// Neighbouring units swapped, where shapes allow.
    pub swaps: Vec<SwapLesion>,
    /// What deleting means.
    pub definition: String,
}

/// Runs the lesion study on pre-built evaluation batches.
pub fn run(
    net: &StResNet,
    batches: &[Batch],
    classes: usize,
    opts: LesionOptions,
) -> Result<LesionReport> {
    if batches.is_empty() || opts.draws == 0 || classes == 0 {
        return Err(AnalysisError::invalid(
            "lesion: needs data, classes and at least one draw",
        ));
    }
    let acc = |iv: &Intervention| accuracy(net, batches, classes, iv);
    let baseline = acc(&Intervention::default())?;
    let mut units = Vec::new();
    for id in probe::all_units(net) {
        let iv = Intervention {
            deleted: [id].into(),
            ..Intervention::default()
        };
        let accuracy = acc(&iv)?;
        tracing::info!(unit = %id, fused = accuracy.fused, "deleted one unit");
        units.push(UnitLesion {
            name: id.to_string(),
            unit: id,
            projection: probe::is_projection(net, id)?,
            accuracy,
        });
    }
    let mut links = Vec::new();
    if net.config().links {
        for stage in 0..net.appearance.stages.len() {
            let iv = Intervention {
                cut_links: [stage].into(),
                ..Intervention::default()
            };
            links.push(LinkLesion {
                stage,
                accuracy: acc(&iv)?,
            });
        }
    }
    let chance = 1.0 / classes as f64;
    let pool: Vec<&UnitLesion> = units
        .iter()
        .filter(|u| !(opts.exclude_projection && u.projection))
        .collect();
    let retained: Vec<f64> = pool
        .iter()
        .map(|u| {
            if baseline.fused > chance {
                ((u.accuracy.fused - chance) / (baseline.fused - chance)).clamp(0.0, 1.0)
            } else {
                0.0
            }
        })
        .collect();
    let mut rng = StdRng::seed_from_u64(opts.seed);
    let mut random = Vec::new();
    for k in 1..=pool.len() {
        let sets = subsets(pool.len(), k, opts.draws, &mut rng);
        let (mut errors, mut expected) = (Vec::new(), Vec::new());
        for set in &sets {
            let iv = Intervention {
                deleted: set.iter().map(|&i| pool[i].unit).collect(),
                ..Intervention::default()
            };
            errors.push(1.0 - acc(&iv)?.fused);
            let kept: f64 = set.iter().map(|&i| retained[i]).product();
            expected.push(1.0 - (chance + (baseline.fused - chance).max(0.0) * kept));
        }
        let (error_mean, error_std) = mean_std(&errors);
        tracing::info!(k, error_mean, "deleted k random units");
        random.push(RandomLesion {
            k,
            draws: sets.len(),
            error_mean,
            error_std,
            expected_error: mean_std(&expected).0,
        });
    }
    let random_pool = pool.iter().map(|u| u.name.clone()).collect();
    let mut swaps = Vec::new();
    for stream in StreamKind::ALL {
        for (stage, s) in stream.of(net).stages.iter().enumerate() {
            let n = 1 + s.rest.len();
            for i in 0..n.saturating_sub(1) {
                let id = |unit| UnitId {
                    stream,
                    stage,
                    unit,
                };
                if probe::is_projection(net, id(i))? || probe::is_projection(net, id(i + 1))? {
                    continue;
                }
                let mut order: Vec<usize> = (0..n).collect();
                order.swap(i, i + 1);
                let iv = Intervention {
                    order: [((stream, stage), order)].into(),
                    ..Intervention::default()
                };
                swaps.push(SwapLesion {
                    stream,
                    stage,
                    units: [i, i + 1],
                    accuracy: acc(&iv)?,
                });
            }
        }
    }
    Ok(LesionReport {
        samples: batches.iter().map(|b| b.labels.len()).sum(),
        chance_error: 1.0 - chance,
        baseline,
        units,
        links,
        random_pool,
        random,
        swaps,
        definition:
            "a deleted unit's residual is zero: an ordinary unit becomes relu(shortcut(x)), \
                     the identity when its shortcut is; a reversible unit becomes the identity \
                     (F and G zeroed); a projection unit keeps its projection"
                .into(),
    })
}

/// `lesion.png`: x = units deleted, blue: measured fused error (± std over the sets), red:
/// the ensemble view's expected error, grey: chance error; `lesion_units.png`: one bar
/// per unit (appearance then motion, forward order), the fused error with it deleted (blue;
/// red for projection units), green line: the intact model's error.
pub fn plot(report: &LesionReport, dir: &Path) -> Result<Vec<PathBuf>> {
    let base = 1.0 - report.baseline.fused;
    let k_max = report.random.len() as f64;
    let mut measured = vec![(0.0, base)];
    let mut spread = vec![0.0];
    let mut expected = vec![(0.0, base)];
    for r in &report.random {
        measured.push((r.k as f64, r.error_mean));
        spread.push(r.error_std);
        expected.push((r.k as f64, r.expected_error));
    }
    let grey = RGBColor(120, 120, 120);
    let curve = dir.join("lesion.png");
    plots::chart(
        &curve,
        (0.0, k_max.max(1.0)),
        1.0,
        &[
            Series {
                spread: Some(spread),
                ..Series::line(measured, BLUE)
            },
            Series::line(expected, RED),
            Series::line(
                vec![
                    (0.0, report.chance_error),
                    (k_max.max(1.0), report.chance_error),
                ],
                grey,
            ),
        ],
    )?;
    let bars = dir.join("lesion_units.png");
    let bar = |projection: bool| {
        report
            .units
            .iter()
            .enumerate()
            .filter(|(_, u)| u.projection == projection)
            .map(|(i, u)| (i as f64, 1.0 - u.accuracy.fused))
            .collect::<Vec<_>>()
    };
    let n = report.units.len() as f64;
    plots::chart(
        &bars,
        (-0.5, n - 0.5),
        1.0,
        &[
            Series::bars(bar(false), BLUE),
            Series::bars(bar(true), RED),
            Series::line(vec![(-0.5, base), (n - 0.5, base)], GREEN),
        ],
    )?;
    Ok(vec![curve, bars])
}
