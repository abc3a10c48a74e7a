//! Reversible backpropagation: gradients for one batch without storing the activations
//! inside reversible stages.
//!
//! The forward pass runs with gradient graphs dropped after every unit and keeps only the
//! stage boundaries (each stage's input, for both streams) and the inputs of any ordinary
//! unit inside a stage. The backward pass walks the units in reverse: a reversible unit
//! rebuilds its input from its output (RevNet) while recomputing `F` and `G` with gradient
//! tracking; an ordinary unit recomputes from its stored input. Each recomputed subgraph
//! gives its vector-Jacobian product through `Tensor::backward` on `sum(output * grad)`
//! ([`seed::dot`]) and is freed before the next. Appearance stage `s` is processed before
//! motion stage `s`, so the link's gradient reaches the motion state it came from.
//! BatchNorm uses batch statistics throughout and its running statistics are updated once,
//! from the forward pass.

use candle_core::backprop::GradStore;
use candle_core::{Result, Tensor, Var};

use crate::model::norm::{BnMode, Ctx, apply_updates};
use crate::model::reversible::{RevBlock, split};
use crate::model::st_resnet::{Stage, Unit};
use crate::model::{StResNet, StreamLogits};

use super::seed;

/// The outcome of one training step's forward and backward pass.
#[derive(Debug)]
pub struct Step {
    /// The loss value.
    pub loss: f32,
    /// The logits of the batch (detached).
    pub logits: StreamLogits,
    /// Gradients of every trainable variable, ready for `candle_nn::Optimizer::step`.
    pub grads: GradStore,
    /// Gradients with respect to the inputs, when asked for.
    pub input_grads: Option<InputGrads>,
}

/// Gradients of the loss with respect to the network's inputs.
#[derive(Debug)]
pub struct InputGrads {
    /// `(B, T, 3, H, W)`.
    pub rgb: Tensor,
    /// `(B, T, 2L, H, W)`.
    pub flow: Tensor,
}

/// What the forward pass keeps of one stage of one stream.
struct StageTape {
    /// The stage's input (a stage boundary).
    input: Tensor,
    /// Inputs of the ordinary units after the first (`None` for reversible units).
    plain_inputs: Vec<Option<Tensor>>,
}

/// The appearance and motion tapes of one stage.
type StagePair = (StageTape, StageTape);

/// Training step with reversible backpropagation: forward, `loss_fn` on the logits, backward.
pub fn forward_backward<L>(
    model: &StResNet,
    rgb: &Tensor,
    flow: &Tensor,
    input_grads: bool,
    loss_fn: L,
) -> Result<Step>
where
    L: FnOnce(&StreamLogits) -> Result<Tensor>,
{
    let (rgb_flat, flow_flat, frames) = model.flatten_inputs(rgb, flow)?;
    let links = model.config().links;
    let app = &model.appearance;
    let mot = &model.motion;

    let (mut a, mut m, tapes) = forward_keep(model, &rgb_flat, &flow_flat, frames)?;

    // Head: the loss and the gradients at the last stage's outputs.
    let mut ctx = Ctx::new(frames, BnMode::Recompute);
    let a_var = Var::from_tensor(&a)?;
    let m_var = Var::from_tensor(&m)?;
    let logits = model.fuse(app.head(&a_var, frames)?, mot.head(&m_var, frames)?)?;
    let loss = loss_fn(&logits)?;
    let loss_value = loss.to_dtype(candle_core::DType::F32)?.to_scalar::<f32>()?;
    let logits = StreamLogits {
        appearance: logits.appearance.detach(),
        motion: logits.motion.detach(),
        fused: logits.fused.detach(),
    };
    let mut grads = GradStore::default();
    let mut g = backward_into(&loss, &[Some(&a_var), Some(&m_var)], &mut grads)?;
    let mut gm = g.remove(1);
    let mut ga = g.remove(0);
    drop((loss, a_var, m_var));

    // Stages in reverse; appearance first so that its link gradient joins motion's.
    for ((sa, sm), (a_tape, m_tape)) in app.stages.iter().zip(&mot.stages).zip(tapes).rev() {
        let link = links.then_some(&m_tape.input);
        let (ga_in, g_link) = stage_backward(sa, a, ga, &a_tape, link, &mut grads, &mut ctx)?;
        let (gm_in, _) = stage_backward(sm, m, gm, &m_tape, None, &mut grads, &mut ctx)?;
        gm = match g_link {
            Some(g) => (gm_in + g)?,
            None => gm_in,
        };
        ga = ga_in;
        a = a_tape.input;
        m = m_tape.input;
    }

    // Stems.
    let (rgb_in, flow_in) = if input_grads {
        (
            Some(Var::from_tensor(&rgb_flat)?),
            Some(Var::from_tensor(&flow_flat)?),
        )
    } else {
        (None, None)
    };
    let x = rgb_in.as_ref().map_or(&rgb_flat, |v| v.as_tensor());
    let out = app.stem(x, &mut ctx)?;
    let g_rgb = vjp(&out, &ga, &[rgb_in.as_ref()], &mut grads)?;
    let x = flow_in.as_ref().map_or(&flow_flat, |v| v.as_tensor());
    let out = mot.stem(x, &mut ctx)?;
    let g_flow = vjp(&out, &gm, &[flow_in.as_ref()], &mut grads)?;
    let input_grads = match (g_rgb.into_iter().next(), g_flow.into_iter().next()) {
        (Some(r), Some(f)) => Some(InputGrads {
            rgb: r.reshape(rgb.shape())?,
            flow: f.reshape(flow.shape())?,
        }),
        _ => None,
    };

    Ok(Step {
        loss: loss_value,
        logits,
        grads,
        input_grads,
    })
}

/// The same step with ordinary autograd (every activation kept): the reference and the
/// `--no-reversible` path.
pub fn plain_forward_backward<L>(
    model: &StResNet,
    rgb: &Tensor,
    flow: &Tensor,
    input_grads: bool,
    loss_fn: L,
) -> Result<Step>
where
    L: FnOnce(&StreamLogits) -> Result<Tensor>,
{
    let vars = if input_grads {
        Some((Var::from_tensor(rgb)?, Var::from_tensor(flow)?))
    } else {
        None
    };
    let (x_rgb, x_flow) = match &vars {
        Some((r, f)) => (r.as_tensor(), f.as_tensor()),
        None => (rgb, flow),
    };
    let logits = model.forward(x_rgb, x_flow, true)?;
    let loss = loss_fn(&logits)?;
    let loss_value = loss.to_dtype(candle_core::DType::F32)?.to_scalar::<f32>()?;
    let mut grads = loss.backward()?;
    let input_grads = match vars {
        Some((r, f)) => Some(InputGrads {
            rgb: take_grad(&mut grads, &r)?,
            flow: take_grad(&mut grads, &f)?,
        }),
        None => None,
    };
    Ok(Step {
        loss: loss_value,
        logits: StreamLogits {
            appearance: logits.appearance.detach(),
            motion: logits.motion.detach(),
            fused: logits.fused.detach(),
        },
        grads,
        input_grads,
    })
}

/// The forward pass that drops every unit's graph: returns both streams' final outputs and
/// what the backward pass needs of each stage. BatchNorm running statistics are updated as
/// it goes (this is the step's only pass in training mode; recomputation uses batch statistics
/// without updating), so no per-layer state accumulates with depth.
fn forward_keep(
    model: &StResNet,
    rgb: &Tensor,
    flow: &Tensor,
    frames: usize,
) -> Result<(Tensor, Tensor, Vec<StagePair>)> {
    let app = &model.appearance;
    let mot = &model.motion;
    let mut a = train_pass(frames, |ctx| app.stem(rgb, ctx))?;
    let mut m = train_pass(frames, |ctx| mot.stem(flow, ctx))?;
    let mut tapes = Vec::with_capacity(4);
    for (sa, sm) in app.stages.iter().zip(&mot.stages) {
        let link = model.config().links.then_some(&m);
        let (a_next, a_tape) = stage_forward(sa, &a, link, frames)?;
        let (m_next, m_tape) = stage_forward(sm, &m, None, frames)?;
        tapes.push((a_tape, m_tape));
        a = a_next;
        m = m_next;
    }
    Ok((a, m, tapes))
}

/// Runs `f` in training mode, applies its BatchNorm updates and returns its detached output.
fn train_pass(frames: usize, f: impl FnOnce(&mut Ctx) -> Result<Tensor>) -> Result<Tensor> {
    let mut updates = Vec::new();
    let out = f(&mut Ctx::new(frames, BnMode::Train(&mut updates)))?.detach();
    apply_updates(&updates)?;
    Ok(out)
}

/// Runs a stage keeping only what its backward pass needs; returns its output and tape.
fn stage_forward(
    stage: &Stage,
    x: &Tensor,
    link: Option<&Tensor>,
    frames: usize,
) -> Result<(Tensor, StageTape)> {
    let mut h = train_pass(frames, |ctx| stage.first.forward(x, link, ctx))?;
    let mut plain_inputs = Vec::with_capacity(stage.rest.len());
    for unit in &stage.rest {
        plain_inputs.push(matches!(unit, Unit::Plain(_)).then(|| h.clone()));
        h = train_pass(frames, |ctx| unit.forward(&h, ctx))?;
    }
    let tape = StageTape {
        input: x.clone(),
        plain_inputs,
    };
    Ok((h, tape))
}

/// Backpropagates `gy` through a stage whose output is `y`; returns the gradients of the
/// stage input and of the link.
fn stage_backward(
    stage: &Stage,
    y: Tensor,
    gy: Tensor,
    tape: &StageTape,
    link: Option<&Tensor>,
    grads: &mut GradStore,
    ctx: &mut Ctx,
) -> Result<(Tensor, Option<Tensor>)> {
    let (mut y, mut gy) = (y, gy);
    for (unit, stored) in stage.rest.iter().zip(&tape.plain_inputs).rev() {
        (y, gy) = match (unit, stored) {
            (Unit::Rev(block), _) => rev_backward(block, &y, &gy, grads, ctx)?,
            (Unit::Plain(block), Some(x)) => {
                let xv = Var::from_tensor(x)?;
                let out = block.forward(&xv, None, ctx)?;
                let gx = vjp(&out, &gy, &[Some(&xv)], grads)?.remove(0);
                (x.clone(), gx)
            }
            (Unit::Plain(_), None) => {
                candle_core::bail!("revprop: an ordinary unit's input was not kept")
            }
        };
    }
    drop(y);
    let xv = Var::from_tensor(&tape.input)?;
    let lv = link.map(Var::from_tensor).transpose()?;
    let out = stage
        .first
        .forward(&xv, lv.as_ref().map(|v| v.as_tensor()), ctx)?;
    let mut g = vjp(&out, &gy, &[Some(&xv), lv.as_ref()], grads)?;
    let g_link = (g.len() == 2).then(|| g.remove(1));
    Ok((g.remove(0), g_link))
}

/// RevNet's backward for one coupling: from output `y` and its gradient, returns the input
/// and its gradient, accumulating `F` and `G` parameter gradients into `grads`.
fn rev_backward(
    block: &RevBlock,
    y: &Tensor,
    gy: &Tensor,
    grads: &mut GradStore,
    ctx: &mut Ctx,
) -> Result<(Tensor, Tensor)> {
    let (y1, y2) = split(y)?;
    let (gy1, gy2) = split(gy)?;
    // y2 = x2 + G(y1): rebuild x2 and push gy2 through G.
    let y1_var = Var::from_tensor(&y1)?;
    let g_out = block.g.forward(&y1_var, ctx)?;
    let x2 = (&y2 - g_out.detach())?;
    let gy1_total = (gy1 + vjp(&g_out, &gy2, &[Some(&y1_var)], grads)?.remove(0))?;
    drop((g_out, y1_var, y2));
    // y1 = x1 + F(x2): rebuild x1 and push the total y1 gradient through F.
    let x2_var = Var::from_tensor(&x2)?;
    let f_out = block.f.forward(&x2_var, ctx)?;
    let x1 = (&y1 - f_out.detach())?;
    let gx2 = (gy2 + vjp(&f_out, &gy1_total, &[Some(&x2_var)], grads)?.remove(0))?;
    Ok((
        Tensor::cat(&[x1, x2], 1)?,
        Tensor::cat(&[gy1_total, gx2], 1)?,
    ))
}

/// Vector-Jacobian product of `out` with `grad_out`: adds parameter gradients to `grads`
/// and returns the gradients of `inputs` that are given (zeros where `out` ignores one).
fn vjp(
    out: &Tensor,
    grad_out: &Tensor,
    inputs: &[Option<&Var>],
    grads: &mut GradStore,
) -> Result<Vec<Tensor>> {
    let total = seed::dot(out, grad_out)?;
    backward_into(&total, inputs, grads)
}

/// Backpropagates from the scalar `total`, adds the gradients of the variables it depends on
/// (other than `inputs`) to `grads`, and returns those of `inputs`.
fn backward_into(
    total: &Tensor,
    inputs: &[Option<&Var>],
    grads: &mut GradStore,
) -> Result<Vec<Tensor>> {
    let vars: Vec<Tensor> = total
        .sorted_nodes()
        .into_iter()
        .filter(|t| t.is_variable())
        .cloned()
        .collect();
    let mut local = total.backward()?;
    let input_grads = inputs
        .iter()
        .flatten()
        .map(|v| take_grad(&mut local, v))
        .collect::<Result<Vec<_>>>()?;
    // Only variables' gradients are kept: candle's store also holds gradients of untracked
    // operands (such as `grad_out`), which would otherwise pile up across units. Gradients
    // are detached: candle leaves those of variables linked to the forward graph.
    for var in &vars {
        if let Some(g) = local.remove(var) {
            let sum = match grads.remove(var) {
                Some(old) => (old + g)?.detach(),
                None => g.detach(),
            };
            grads.insert(var, sum);
        }
    }
    Ok(input_grads)
}

/// Removes `var`'s gradient (detached) from `grads`, or zeros when the loss ignores `var`.
fn take_grad(grads: &mut GradStore, var: &Var) -> Result<Tensor> {
    match grads.remove(var.as_tensor()) {
        Some(g) => Ok(g.detach()),
        None => var.zeros_like(),
    }
}
