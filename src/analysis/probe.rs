//! A forward pass of [`StResNet`] with interventions: delete residual units, cut the
//! motion→appearance links, reorder the units of a stage, route gradients along chosen
//! paths, and record each unit's input and output.
//!
//! Every unit maps `x` to `s(x) + r(x)`: `s` is the shortcut (the identity, or a strided
//! projection in a stage's first unit) and `r` the residual. An ordinary unit applies a ReLU
//! after the sum, `relu(s(x) + branch(x + link))`; a reversible coupling is `x + r(x)` with
//! `r(x) = (F(x2), G(x1 + F(x2)))`. Deleting a unit sets `r = 0`: an ordinary unit becomes
//! `relu(s(x))`, which is `x` itself when the shortcut is the identity and `x` is
//! non-negative (a ReLU output); a coupling becomes the identity (F and G both zeroed). A
//! deleted projection unit keeps its projection, since its input cannot pass through
//! unchanged.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use candle_core::Tensor;
use serde::{Deserialize, Serialize};

use super::error::{AnalysisError, Result};
use crate::model::blocks::ResBlock;
use crate::model::norm::{BnMode, Ctx};
use crate::model::reversible::RevBlock;
use crate::model::st_resnet::{Stream, Unit};
use crate::model::{StResNet, StreamLogits};

/// One of the two streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StreamKind {
    /// The RGB stream.
    Appearance,
    /// The optical-flow stream.
    Motion,
}

impl StreamKind {
    /// Both streams, appearance first.
    pub const ALL: [StreamKind; 2] = [StreamKind::Appearance, StreamKind::Motion];

    /// The stream's state-dict prefix.
    pub fn name(self) -> &'static str {
        match self {
            StreamKind::Appearance => "appearance",
            StreamKind::Motion => "motion",
        }
    }

    /// The stream inside `net`.
    pub fn of(self, net: &StResNet) -> &Stream {
        match self {
            StreamKind::Appearance => &net.appearance,
            StreamKind::Motion => &net.motion,
        }
    }

    /// This stream's logits.
    pub fn logits(self, out: &StreamLogits) -> &Tensor {
        match self {
            StreamKind::Appearance => &out.appearance,
            StreamKind::Motion => &out.motion,
        }
    }
}

/// A residual unit: stream, stage (0-based: layer1 is 0) and position in the stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct UnitId {
    /// Which stream.
    pub stream: StreamKind,
    /// Stage index, 0..4.
    pub stage: usize,
    /// Unit index within the stage (0 is the stage's first unit).
    pub unit: usize,
}

impl fmt::Display for UnitId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}.layer{}.{}",
            self.stream.name(),
            self.stage + 1,
            self.unit
        )
    }
}

/// A unit's block: ordinary or reversible.
#[derive(Debug, Clone, Copy)]
pub enum UnitRef<'a> {
    /// `relu(s(x) + branch(x + link))`.
    Plain(&'a ResBlock),
    /// A RevNet coupling.
    Rev(&'a RevBlock),
}

/// The block of unit `id`.
pub fn unit(net: &StResNet, id: UnitId) -> Result<UnitRef<'_>> {
    let missing = || AnalysisError::invalid(format!("the model has no unit {id}"));
    let stage = id.stream.of(net).stages.get(id.stage).ok_or_else(missing)?;
    if id.unit == 0 {
        return Ok(UnitRef::Plain(&stage.first));
    }
    match stage.rest.get(id.unit - 1).ok_or_else(missing)? {
        Unit::Plain(block) => Ok(UnitRef::Plain(block)),
        Unit::Rev(block) => Ok(UnitRef::Rev(block)),
    }
}

/// Every unit of one stream in forward order.
pub fn stream_units(net: &StResNet, stream: StreamKind) -> Vec<UnitId> {
    let stages = &stream.of(net).stages;
    stages
        .iter()
        .enumerate()
        .flat_map(|(stage, s)| {
            (0..1 + s.rest.len()).map(move |unit| UnitId {
                stream,
                stage,
                unit,
            })
        })
        .collect()
}

/// Every unit of both streams, appearance first.
pub fn all_units(net: &StResNet) -> Vec<UnitId> {
    StreamKind::ALL
        .iter()
        .flat_map(|&s| stream_units(net, s))
        .collect()
}

/// Whether the unit's shortcut is a projection (it changes stride or width).
pub fn is_projection(net: &StResNet, id: UnitId) -> Result<bool> {
    Ok(match unit(net, id)? {
        UnitRef::Plain(block) => block.has_projection(),
        UnitRef::Rev(_) => false,
    })
}

/// Which way gradients flow through a unit; the forward value is the same for all three.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Route {
    /// Through the shortcut and the residual (ordinary backpropagation).
    #[default]
    Both,
    /// Through the residual only (the shortcut's output is detached).
    Residual,
    /// Through the shortcut only (the residual's output is detached).
    Shortcut,
}

/// What to change in a forward pass; the default changes nothing.
#[derive(Debug, Clone, Default)]
pub struct Intervention {
    /// Units whose residual is removed.
    pub deleted: BTreeSet<UnitId>,
    /// Stages whose motion→appearance link is removed.
    pub cut_links: BTreeSet<usize>,
    /// For a (stream, stage), the order its units run in (a permutation of their indices).
    /// A unit keeps its link when it moves; projection units cannot move.
    pub order: BTreeMap<(StreamKind, usize), Vec<usize>>,
    /// Gradient routes of chosen units (the rest: [`Route::Both`]).
    pub routes: BTreeMap<UnitId, Route>,
}

/// One unit's input, link and output during a recorded pass, each `(B * T, C, H, W)`.
#[derive(Debug, Clone)]
pub struct UnitRecord {
    /// The unit.
    pub id: UnitId,
    /// Its input `x`.
    pub input: Tensor,
    /// The motion link added to its branch input, if any.
    pub link: Option<Tensor>,
    /// Its output.
    pub output: Tensor,
}

/// rgb `(B, T, 3, H, W)` and flow `(B, T, 2L, H, W)` to logits under `iv`, BatchNorm in
/// inference mode; with `record`, every unit's input and output is appended to it.
pub fn forward(
    net: &StResNet,
    rgb: &Tensor,
    flow: &Tensor,
    iv: &Intervention,
    mut record: Option<&mut Vec<UnitRecord>>,
) -> Result<StreamLogits> {
    let (rgb, flow, frames) = net.flatten_inputs(rgb, flow)?;
    let mut ctx = Ctx::new(frames, BnMode::Eval);
    let mut a = net.appearance.stem(&rgb, &mut ctx)?;
    let mut m = net.motion.stem(&flow, &mut ctx)?;
    for stage in 0..net.appearance.stages.len() {
        let link = (net.config().links && !iv.cut_links.contains(&stage)).then(|| m.clone());
        let pass = |stream, x: &Tensor, link, ctx: &mut Ctx, rec: Option<&mut Vec<_>>| {
            run_stage(net, stream, stage, x, link, iv, ctx, rec)
        };
        let a_next = pass(
            StreamKind::Appearance,
            &a,
            link.as_ref(),
            &mut ctx,
            record.as_deref_mut(),
        )?;
        m = pass(
            StreamKind::Motion,
            &m,
            None,
            &mut ctx,
            record.as_deref_mut(),
        )?;
        a = a_next;
    }
    let appearance = net.appearance.head(&a, frames)?;
    let motion = net.motion.head(&m, frames)?;
    Ok(net.fuse(appearance, motion)?)
}

#[allow(clippy::too_many_arguments)]
fn run_stage(
    net: &StResNet,
    stream: StreamKind,
    stage: usize,
    x: &Tensor,
    link: Option<&Tensor>,
    iv: &Intervention,
    ctx: &mut Ctx,
    mut record: Option<&mut Vec<UnitRecord>>,
) -> Result<Tensor> {
    let n = 1 + stream.of(net).stages[stage].rest.len();
    let order = match iv.order.get(&(stream, stage)) {
        Some(order) => {
            let mut sorted = order.clone();
            sorted.sort_unstable();
            if sorted != (0..n).collect::<Vec<_>>() {
                return Err(AnalysisError::invalid(format!(
                    "order {order:?} of {}.layer{} is not a permutation of its {n} units",
                    stream.name(),
                    stage + 1
                )));
            }
            order.clone()
        }
        None => (0..n).collect(),
    };
    for (position, &index) in order.iter().enumerate() {
        let id = UnitId {
            stream,
            stage,
            unit: index,
        };
        if position != index && is_projection(net, id)? {
            return Err(AnalysisError::invalid(format!(
                "{id} changes shape and cannot be moved"
            )));
        }
    }
    let mut h = x.clone();
    for &index in &order {
        let id = UnitId {
            stream,
            stage,
            unit: index,
        };
        let unit_link = if index == 0 { link } else { None };
        let route = iv.routes.get(&id).copied().unwrap_or_default();
        let out = apply(
            unit(net, id)?,
            &h,
            unit_link,
            iv.deleted.contains(&id),
            route,
            ctx,
        )?;
        if let Some(rec) = record.as_deref_mut() {
            rec.push(UnitRecord {
                id,
                input: h.clone(),
                link: unit_link.cloned(),
                output: out.clone(),
            });
        }
        h = out;
    }
    Ok(h)
}

fn apply(
    unit: UnitRef,
    x: &Tensor,
    link: Option<&Tensor>,
    deleted: bool,
    route: Route,
    ctx: &mut Ctx,
) -> Result<Tensor> {
    match unit {
        UnitRef::Plain(block) => {
            let s = block.shortcut(x, ctx)?;
            if deleted {
                return Ok(s.relu()?);
            }
            let r = residual(unit, x, link, ctx)?;
            let (s, r) = match route {
                Route::Both => (s, r),
                Route::Residual => (s.detach(), r),
                Route::Shortcut => (s, r.detach()),
            };
            Ok((s + r)?.relu()?)
        }
        UnitRef::Rev(_) if deleted => Ok(x.clone()),
        UnitRef::Rev(block) if route == Route::Both => Ok(block.forward(x, ctx)?),
        UnitRef::Rev(_) => {
            let r = residual(unit, x, link, ctx)?;
            Ok(match route {
                Route::Residual => (x.detach() + r)?,
                _ => (x + r.detach())?,
            })
        }
    }
}

/// The unit's residual `r(x)`: an ordinary unit's branch applied to `x + link` (before the
/// ReLU that follows the sum), or a coupling's output minus its input.
pub fn residual(unit: UnitRef, x: &Tensor, link: Option<&Tensor>, ctx: &mut Ctx) -> Result<Tensor> {
    Ok(match unit {
        UnitRef::Plain(block) => {
            let branch_in = match link {
                Some(l) => (x + l)?,
                None => x.clone(),
            };
            block.branch().forward(&branch_in, ctx)?
        }
        UnitRef::Rev(block) => (block.forward(x, ctx)? - x)?,
    })
}
