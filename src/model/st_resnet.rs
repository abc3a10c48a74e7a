//! The two-stream Spatiotemporal ResNet: appearance and motion streams, motion→appearance
//! links, temporal max-pooling, per-stream classifiers and weighted score fusion.

use candle_core::{Module, Result, Tensor};
use candle_nn::{Linear, VarBuilder};

use super::blocks::{BranchSpec, ConvBn, ResBlock};
use super::config::Config;
use super::conv::Conv2d;
use super::norm::{BatchNorm, BnMode, Ctx, apply_updates};
use super::reversible::RevBlock;
use super::temporal::UnitConv;
use crate::ops::conv::ConvConfig;

/// Class logits `(B, num_classes)` of each stream and their fusion.
#[derive(Debug, Clone)]
pub struct StreamLogits {
    /// Appearance (RGB) stream logits.
    pub appearance: Tensor,
    /// Motion (flow) stream logits.
    pub motion: Tensor,
    /// Weighted sum of both streams' logits (`Config::fusion_weights`); its softmax is the fused score.
    pub fused: Tensor,
}

/// A residual unit after the first of its stage: ordinary, or a reversible coupling.
#[derive(Debug, Clone)]
pub enum Unit {
    /// `relu(x + F(x))`.
    Plain(ResBlock),
    /// A RevNet coupling.
    Rev(RevBlock),
}

impl Unit {
    /// Applies the unit to `x` `(B * T, C, H, W)`.
    pub fn forward(&self, x: &Tensor, ctx: &mut Ctx) -> Result<Tensor> {
        match self {
            Self::Plain(block) => block.forward(x, None, ctx),
            Self::Rev(block) => block.forward(x, ctx),
        }
    }
}

/// One stage (res2..res5): an ordinary first unit that changes shape and takes the link,
/// then units that keep the shape.
#[derive(Debug, Clone)]
pub struct Stage {
    /// The first unit (`layerN.0`); its residual branch receives the motion link.
    pub first: ResBlock,
    /// The remaining units (`layerN.1`, ...).
    pub rest: Vec<Unit>,
}

impl Stage {
    fn new(cfg: &Config, stage: usize, vb: VarBuilder) -> Result<Self> {
        let in_channels = if stage == 0 {
            cfg.base_width
        } else {
            cfg.stage_width(stage - 1)
        };
        let out_channels = cfg.stage_width(stage);
        let mid_channels = cfg.base_width << stage;
        let spec = |unit: usize| BranchSpec {
            in_channels: if unit == 0 { in_channels } else { out_channels },
            mid_channels,
            out_channels,
            stride: if unit == 0 && stage > 0 { 2 } else { 1 },
            bottleneck: cfg.bottleneck,
            temporal: cfg.is_temporal(stage, unit),
        };
        let (m, eps) = (cfg.bn_momentum, cfg.bn_eps);
        let first = ResBlock::new(spec(0), m, eps, vb.pp("0"))?;
        let rest = (1..cfg.units[stage])
            .map(|unit| {
                let vb = vb.pp(unit.to_string());
                Ok(if cfg.reversible {
                    let s = spec(unit);
                    Unit::Rev(RevBlock::new(
                        out_channels,
                        mid_channels,
                        s.bottleneck,
                        s.temporal,
                        m,
                        eps,
                        vb,
                    )?)
                } else {
                    Unit::Plain(ResBlock::new(spec(unit), m, eps, vb)?)
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self { first, rest })
    }

    /// Applies every unit; `link` feeds the first unit's residual branch.
    pub fn forward(&self, x: &Tensor, link: Option<&Tensor>, ctx: &mut Ctx) -> Result<Tensor> {
        let mut h = self.first.forward(x, link, ctx)?;
        for unit in &self.rest {
            h = unit.forward(&h, ctx)?;
        }
        Ok(h)
    }
}

/// One ResNet stream: stem (`conv1`, `bn1`, optional max-pool), four stages (`layer1`..`layer4`)
/// and a classifier (`fc`) after temporal max-pooling and global spatial pooling.
#[derive(Debug, Clone)]
pub struct Stream {
    /// `conv1` and `bn1`.
    stem: ConvBn,
    pool: bool,
    /// The four stages, res2..res5.
    pub stages: Vec<Stage>,
    fc: Linear,
}

impl Stream {
    /// Builds a stream taking `in_channels` input channels.
    pub fn new(cfg: &Config, in_channels: usize, vb: VarBuilder) -> Result<Self> {
        let k = cfg.stem_kernel;
        let stem = ConvConfig::square(k, cfg.stem_stride, k / 2);
        let stages = (0..4)
            .map(|s| Stage::new(cfg, s, vb.pp(format!("layer{}", s + 1))))
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            stem: ConvBn::new(
                UnitConv::Spatial(Conv2d::new(
                    in_channels,
                    cfg.base_width,
                    stem,
                    false,
                    vb.pp("conv1"),
                )?),
                BatchNorm::new(cfg.base_width, cfg.bn_momentum, cfg.bn_eps, vb.pp("bn1"))?,
            ),
            pool: cfg.stem_pool,
            stages,
            fc: candle_nn::linear(cfg.stage_width(3), cfg.num_classes, vb.pp("fc"))?,
        })
    }

    /// Stem: convolution, BatchNorm, ReLU and (optionally) a 3x3 stride-2 max-pool.
    pub fn stem(&self, x: &Tensor, ctx: &mut Ctx) -> Result<Tensor> {
        let h = self.stem.forward(x, ctx, true)?;
        if self.pool {
            // Zero padding equals -inf padding here: the input is non-negative after ReLU.
            h.pad_with_zeros(2, 1, 1)?
                .pad_with_zeros(3, 1, 1)?
                .max_pool2d_with_stride(3, 2)
        } else {
            Ok(h)
        }
    }

    /// Temporal max-pool over the `frames` frames, global spatial average, classifier.
    pub fn head(&self, x: &Tensor, frames: usize) -> Result<Tensor> {
        let (n, c, h, w) = x.dims4()?;
        let pooled = x
            .reshape((n / frames, frames, c, h, w))?
            .max(1)?
            .mean((2, 3))?;
        self.fc.forward(&pooled)
    }
}

/// The two-stream ST-ResNet (`appearance.*`, `motion.*`).
#[derive(Debug, Clone)]
pub struct StResNet {
    /// The RGB stream.
    pub appearance: Stream,
    /// The optical-flow stream.
    pub motion: Stream,
    cfg: Config,
}

impl StResNet {
    /// Builds (or loads, depending on `vb`) both streams.
    pub fn new(cfg: &Config, vb: VarBuilder) -> Result<Self> {
        if let Err(e) = cfg.validate() {
            candle_core::bail!("invalid model config: {e}");
        }
        Ok(Self {
            appearance: Stream::new(cfg, 3, vb.pp("appearance"))?,
            motion: Stream::new(cfg, cfg.flow_channels(), vb.pp("motion"))?,
            cfg: cfg.clone(),
        })
    }

    /// The architecture.
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// rgb `(B, T, 3, H, W)`, flow `(B, T, 2L, H, W)` to logits; `train` uses batch statistics
    /// and updates BatchNorm running statistics once.
    pub fn forward(&self, rgb: &Tensor, flow: &Tensor, train: bool) -> Result<StreamLogits> {
        if train {
            let mut updates = Vec::new();
            let logits = self.forward_with(rgb, flow, BnMode::Train(&mut updates))?;
            apply_updates(&updates)?;
            Ok(logits)
        } else {
            self.forward_with(rgb, flow, BnMode::Eval)
        }
    }

    /// Like [`StResNet::forward`] with an explicit BatchNorm mode (updates are left to the caller).
    pub fn forward_with(&self, rgb: &Tensor, flow: &Tensor, bn: BnMode) -> Result<StreamLogits> {
        let (rgb, flow, frames) = self.flatten_inputs(rgb, flow)?;
        let mut ctx = Ctx::new(frames, bn);
        let mut a = self.appearance.stem(&rgb, &mut ctx)?;
        let mut m = self.motion.stem(&flow, &mut ctx)?;
        for (sa, sm) in self.appearance.stages.iter().zip(&self.motion.stages) {
            let link = self.cfg.links.then_some(&m);
            let a_next = sa.forward(&a, link, &mut ctx)?;
            m = sm.forward(&m, None, &mut ctx)?;
            a = a_next;
        }
        let appearance = self.appearance.head(&a, frames)?;
        let motion = self.motion.head(&m, frames)?;
        self.fuse(appearance, motion)
    }

    /// Combines per-stream logits into [`StreamLogits`] with the configured fusion weights.
    pub fn fuse(&self, appearance: Tensor, motion: Tensor) -> Result<StreamLogits> {
        let [wa, wm] = self.cfg.fusion_weights;
        let fused = ((&appearance * wa)? + (&motion * wm)?)?;
        Ok(StreamLogits {
            appearance,
            motion,
            fused,
        })
    }

    /// Checks both inputs and lays them out `(B * T, C, H, W)`; returns them and T.
    pub fn flatten_inputs(&self, rgb: &Tensor, flow: &Tensor) -> Result<(Tensor, Tensor, usize)> {
        let (b, t, c, h, w) = rgb.dims5()?;
        let (fb, ft, fc, fh, fw) = flow.dims5()?;
        if c != 3 {
            candle_core::bail!("rgb input has {c} channels, expected 3");
        }
        if fc != self.cfg.flow_channels() {
            candle_core::bail!(
                "flow input has {fc} channels, expected {}",
                self.cfg.flow_channels()
            );
        }
        if (b, t, h, w) != (fb, ft, fh, fw) {
            candle_core::bail!(
                "rgb {:?} and flow {:?} disagree in batch, frames or size",
                rgb.dims(),
                flow.dims()
            );
        }
        if b == 0 || t == 0 || h == 0 || w == 0 {
            candle_core::bail!("empty input {:?}", rgb.dims());
        }
        Ok((
            rgb.reshape((b * t, c, h, w))?,
            flow.reshape((b * t, fc, h, w))?,
            t,
        ))
    }
}
