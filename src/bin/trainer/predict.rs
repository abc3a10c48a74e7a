//! `revstream-trainer predict`: the server's prediction for a video file, without the
//! server: the top-k, optionally a timeline of sliding windows, as text, JSON or CSV, and
//! optionally the video rendered with the current label and a picture of the flow.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::Args;
use revstream::artifact::ModelFolder;
use revstream::backend::{self, BackendKind, EngineOptions, device::Precision};
use revstream::flow::{FlowMethod, GrayImage, colour};
use revstream::pipeline::preparation::Preparation;
use revstream::pipeline::preprocess::frame_range;
use revstream::pipeline::timeline::windows;
use revstream::pipeline::{Cancel, scores};
use revstream::video::encode::H264Writer;
use revstream::video::overlay::Canvas;
use revstream::video::{Limits, Resize, Sampling, Video, VideoInfo};
use serde_json::{Value, json};

/// Arguments of `revstream-trainer predict`.
#[derive(Args, Debug)]
pub struct PredictArgs {
    /// The video file.
    video: PathBuf,
    /// The model folder.
    #[arg(long, default_value = "models/default")]
    model: PathBuf,
    /// Labels to print, best first.
    #[arg(long, default_value_t = 5)]
    top_k: usize,
    /// Segments scored and averaged for the whole video (default: the model's).
    #[arg(long)]
    segments: Option<usize>,
    /// Flow method (default: the model's).
    #[arg(long, value_enum)]
    flow_method: Option<FlowMethod>,
    /// Device: auto, cpu, cuda or cuda:N.
    #[arg(long, default_value = "auto")]
    device: String,
    /// Also predict over sliding windows.
    #[arg(long)]
    timeline: bool,
    /// Timeline window, seconds.
    #[arg(long, default_value_t = 2.0)]
    window_s: f64,
    /// Step between windows, seconds.
    #[arg(long, default_value_t = 1.0)]
    hop_s: f64,
    /// Print JSON (the server's field names).
    #[arg(long, conflicts_with = "csv")]
    json: bool,
    /// Print CSV: `scope,start_s,end_s,rank,label,score` (scope `video` or `window`).
    #[arg(long)]
    csv: bool,
    /// Write the video here (H.264 MP4) with the current label, its score and the flow.
    #[arg(long)]
    render: Option<PathBuf>,
}

/// One scored span: the whole video or a window.
struct Scored {
    start_s: f64,
    end_s: f64,
    /// `(label, class index, probability)`, best first.
    top: Vec<(String, usize, f32)>,
}

/// Runs the subcommand.
pub fn run(args: PredictArgs) -> anyhow::Result<()> {
    for (name, v) in [("--window-s", args.window_s), ("--hop-s", args.hop_s)] {
        if !(v.is_finite() && v > 0.0) {
            bail!("{name} must be a positive number of seconds, not {v}");
        }
    }
    if args.top_k == 0 {
        bail!("--top-k must be at least 1");
    }
    let folder = ModelFolder::load(&args.model)?;
    let engine = EngineOptions {
        backend: BackendKind::Candle,
        device: args.device.clone(),
        precision: Precision::F32,
        ort_library: None,
        max_batch: 8,
    };
    let loaded = backend::load(&args.model, &folder, &engine);
    let preparation = Preparation::for_folder(&folder, args.flow_method, loaded.flow_device);
    let mut model = (loaded.loader)().context("loading the model")?;
    let labels = folder.labels().to_vec();
    let segments = args.segments.unwrap_or(folder.segments()).max(1);
    let limits = Limits::default();
    let mut video = Video::open(&args.video, &limits)
        .with_context(|| format!("opening {}", args.video.display()))?;
    let info = video.info().clone();
    let cancel = Cancel::default();
    let mut score =
        |video: &mut Video, range, segments, (start_s, end_s)| -> anyhow::Result<Scored> {
            let prepared = preparation.prepare(video, range, segments, &cancel)?;
            let rows = model.predict(&prepared.rgb, &prepared.flow)?;
            let top = scores::ranked(&scores::mean_rows(&rows), args.top_k.min(labels.len()))
                .into_iter()
                .map(|(i, p)| (labels[i].clone(), i, p))
                .collect();
            Ok(Scored {
                start_s,
                end_s,
                top,
            })
        };
    let whole = score(
        &mut video,
        (0, info.frames),
        segments,
        (0.0, info.duration_s),
    )?;
    let mut timeline = Vec::new();
    if args.timeline || args.render.is_some() {
        for span in windows(info.duration_s, args.window_s, args.hop_s) {
            timeline.push(score(
                &mut video,
                frame_range(&info, span.0, span.1),
                1,
                span,
            )?);
        }
    }
    let shown = if args.timeline { &timeline[..] } else { &[] };
    let mut out = std::io::stdout().lock();
    if args.json {
        writeln!(
            out,
            "{}",
            serde_json::to_string_pretty(&as_json(&args, &info, &whole, shown))?
        )?;
    } else if args.csv {
        writeln!(out, "scope,start_s,end_s,rank,label,score")?;
        for (scope, s) in
            std::iter::once(("video", &whole)).chain(shown.iter().map(|s| ("window", s)))
        {
            for (rank, (label, _, p)) in s.top.iter().enumerate() {
                writeln!(
                    out,
                    "{scope},{:.3},{:.3},{},{},{p:.6}",
                    s.start_s,
                    s.end_s,
                    rank + 1,
                    csv_field(label)
                )?;
            }
        }
    } else {
        print_text(&mut out, &args, &info, &whole, shown)?;
    }
    if let Some(path) = &args.render {
        let spans = if timeline.is_empty() {
            std::slice::from_ref(&whole)
        } else {
            &timeline[..]
        };
        render(&mut video, &info, spans, path)?;
        eprintln!("rendered {}", path.display());
    }
    Ok(())
}

fn as_json(args: &PredictArgs, info: &VideoInfo, whole: &Scored, timeline: &[Scored]) -> Value {
    let predictions = |s: &Scored| -> Vec<Value> {
        s.top
            .iter()
            .map(|(label, index, score)| json!({"label": label, "index": index, "score": score}))
            .collect()
    };
    let mut v = json!({
        "video": {"duration_s": info.duration_s, "fps": info.fps, "frames": info.frames,
                  "width": info.width, "height": info.height},
        "predictions": predictions(whole),
    });
    if args.timeline {
        v["timeline"] = timeline
            .iter()
            .map(|s| json!({"start_s": s.start_s, "end_s": s.end_s, "predictions": predictions(s)}))
            .collect();
    }
    v
}

/// A label as one CSV field (quoted when it holds a comma, quote or line break).
fn csv_field(label: &str) -> String {
    if label.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", label.replace('"', "\"\""))
    } else {
        label.to_string()
    }
}

fn print_text(
    out: &mut impl Write,
    args: &PredictArgs,
    info: &VideoInfo,
    whole: &Scored,
    timeline: &[Scored],
) -> std::io::Result<()> {
    writeln!(
        out,
        "{}: {:.1} s, {} frames, {}x{} at {:.2} fps",
        args.video.display(),
        info.duration_s,
        info.frames,
        info.width,
        info.height,
        info.fps
    )?;
    for (label, _, p) in &whole.top {
        writeln!(out, "  {p:.3}  {label}")?;
    }
    if !timeline.is_empty() {
        writeln!(
            out,
            "timeline (window {} s, hop {} s):",
            args.window_s, args.hop_s
        )?;
        for s in timeline {
            let (label, _, p) = &s.top[0];
            writeln!(
                out,
                "  {:7.2} - {:7.2} s  {p:.3}  {label}",
                s.start_s, s.end_s
            )?;
        }
    }
    Ok(())
}

/// Frames decoded per pass when rendering (the memory a render holds).
const RENDER_CHUNK: usize = 32;
/// Shorter side of a rendered video at most (larger videos are shrunk).
const RENDER_SHORT_SIDE: u32 = 480;
/// Flow for the picture is computed on frames shrunk to about this shorter side.
const FLOW_SHORT_SIDE: u32 = 96;
/// Displacement (pixels per frame, at the flow's size) drawn at full brightness.
const FLOW_FULL_PX: f32 = 0.5;

/// Writes `video` to `path` with, on each frame, the label of the span whose centre is
/// nearest and its score (a bar as long as it), and the flow from the previous frame.
fn render(
    video: &mut Video,
    info: &VideoInfo,
    spans: &[Scored],
    path: &Path,
) -> anyhow::Result<()> {
    let short = info.width.min(info.height).max(1);
    let target = short.min(RENDER_SHORT_SIDE) / 2 * 2;
    // Even sides for H.264's 4:2:0.
    let scale = f64::from(target) / f64::from(short);
    let (w, h) = (
        ((f64::from(info.width) * scale) as u32 / 2 * 2).max(2),
        ((f64::from(info.height) * scale) as u32 / 2 * 2).max(2),
    );
    let resize = Resize {
        short_side: target,
        crop: Some((w, h)),
    };
    let fps = if info.fps.is_finite() && info.fps > 0.0 {
        info.fps
    } else {
        25.0
    };
    let mut writer = H264Writer::create(path, (w, h), fps, 23, 0)?;
    // Flow on frames shrunk to at most a third of the frame, so its picture fits a corner.
    let k = (target / FLOW_SHORT_SIDE.min(target / 3).max(1)).max(1);
    let method = FlowMethod::Fast;
    let mut previous: Option<GrayImage> = None;
    let mut start = 0u64;
    while start < info.frames {
        let len = RENDER_CHUNK.min((info.frames - start) as usize);
        let sampling = Sampling::Starts {
            starts: vec![start],
            clip_len: len,
            stride: 1,
        };
        let clips = video.sample(&sampling, &resize)?;
        let frames = clips.into_iter().flat_map(|c| c.frames);
        for mut frame in frames {
            let small = frame.box_downsample(k).into_owned();
            let gray =
                GrayImage::from_rgb(&small.data, small.width as usize, small.height as usize);
            let flow = previous.as_ref().map(|p| method.compute(p, &gray));
            previous = Some(gray);
            let t = frame.pts_s;
            let span = spans
                .iter()
                .min_by(|a, b| distance(a, t).total_cmp(&distance(b, t)))
                .expect("at least the whole video");
            let (label, _, p) = &span.top[0];
            let (fw, fh) = (frame.width as usize, frame.height as usize);
            let mut canvas = Canvas {
                data: &mut frame.data,
                width: fw,
                height: fh,
            };
            let glyph = (fh / 160).max(1);
            let band = 8 * glyph + 8;
            canvas.fill((0, 0), (fw, band), [0, 0, 0]);
            canvas.fill(
                (0, band - 3),
                (((fw as f32) * p) as usize, 3),
                colour_of(*p),
            );
            canvas.text((4, 4), &format!("{label} {p:.2}"), glyph, [255, 255, 255]);
            if let Some(flow) = flow {
                let picture = colour::to_rgb(&flow, FLOW_FULL_PX);
                let inset = (fh / 3 / flow.height.max(1)).max(1);
                let (iw, ih) = (flow.width * inset, flow.height * inset);
                if iw + 4 <= fw && ih + band + 4 <= fh {
                    canvas.paste(
                        (fw - iw - 4, fh - ih - 4),
                        &picture,
                        (flow.width, flow.height),
                        inset,
                    );
                }
            }
            writer.push(&frame.data)?;
        }
        start += len as u64;
    }
    writer.finish()?;
    Ok(())
}

/// Seconds between `t` and the centre of `span`.
fn distance(span: &Scored, t: f64) -> f64 {
    ((span.start_s + span.end_s) / 2.0 - t).abs()
}

/// Red for an unsure label, through yellow, to green for a sure one.
fn colour_of(p: f32) -> [u8; 3] {
    let p = p.clamp(0.0, 1.0);
    [((1.0 - p) * 2.0).min(1.0), (p * 2.0).min(1.0), 0.0].map(|c| (c * 255.0) as u8)
}
