//! From a decoded video to the model's two inputs: RGB frames and stacked TV-L1 flow,
//! sampled at evenly spread positions.

use std::time::Instant;

use candle_core::{Device, Tensor};
use rayon::prelude::*;

use super::{Cancel, PipelineError};
use crate::artifact::{flow_timing, inputs};
use crate::flow::{self, Flow, FlowMethod, GrayImage};
use crate::video::{Clip, Resize, RgbFrame, Sampling, Video, VideoInfo};

/// How a model wants its inputs prepared.
#[derive(Debug, Clone)]
pub struct Preprocessing {
    /// Time positions per sample (T).
    pub frames: usize,
    /// Flow fields stacked per position (L).
    pub flow_stack: usize,
    /// Side of the square crop fed to the model.
    pub size: u32,
    /// Shorter side after resizing, before the centre crop.
    pub short_side: u32,
    /// RGB mean per channel, on the 0..1 scale.
    pub mean: [f32; 3],
    /// RGB standard deviation per channel, on the 0..1 scale.
    pub std: [f32; 3],
    /// Flow is clipped to ±bound pixels, quantised to 8 bits and scaled to -1..1.
    pub flow_bound: f32,
    /// Flow fields per second of video (`spec::flow_timing`); `None`: consecutive frames.
    pub flow_fps: Option<f64>,
    /// Frames are decoded at this many times `size` for flow, then shrunk for RGB and
    /// the flow pooled back (`spec::PreprocessingSpec::flow_supersample`).
    pub flow_supersample: u32,
    /// The flow method (TV-L1 with its parameters).
    pub flow_method: FlowMethod,
    /// Which TV-L1 implementation computes the flow.
    pub flow_engine: FlowEngine,
}

/// Which TV-L1 implementation prepares a request's flow.
#[derive(Debug, Clone)]
pub enum FlowEngine {
    /// The CPU solver, one clip per rayon task.
    Cpu,
    /// The batched tensor solver on this device (a GPU in serving), every field of a
    /// request in one call.
    Batched(Device),
}

/// One request's model inputs, with what it cost to make them.
#[derive(Debug)]
pub struct Prepared {
    /// (S, T, 3, H, W), normalised.
    pub rgb: Tensor,
    /// (S, T, 2L, H, W), scaled to -1..1.
    pub flow: Tensor,
    /// Frames decoded.
    pub frames_decoded: u64,
    /// Milliseconds decoding and resizing.
    pub decode_ms: f64,
    /// Milliseconds of optical flow.
    pub flow_ms: f64,
}

/// `count` clip starts spread evenly over frames `[first, end)`, each clip of
/// `clip_len` frames centred in its share of the range (the trainer's evaluation
/// positions, `train::batch::positions`, follow the same rule).
pub fn clip_starts(first: u64, end: u64, count: usize, clip_len: usize) -> Vec<u64> {
    let end = end.max(first + 1);
    let share = (end - first) as f64 / count.max(1) as f64;
    (0..count)
        .map(|i| {
            let centre = first as f64 + (i as f64 + 0.5) * share;
            let start = (centre - clip_len as f64 / 2.0).max(first as f64).floor() as u64;
            // Keep whole clips inside the range when it is long enough.
            start.min(end.saturating_sub(clip_len as u64).max(first))
        })
        .collect()
}

/// `count` starts of clips of `clip_len` frames `stride` apart over frames `[first, end)`:
/// [`clip_starts`] on the grid of every `stride`-th frame from `first`, mapped back. On a
/// whole video that grid is the frames the trainer's cache keeps (`train::cache`), so
/// serving reads the very frames an evaluation batch reads.
pub fn strided_clip_starts(
    (first, end): (u64, u64),
    count: usize,
    clip_len: usize,
    stride: usize,
) -> Vec<u64> {
    let stride = stride.max(1) as u64;
    let grid = end.saturating_sub(first).div_ceil(stride);
    clip_starts(0, grid, count, clip_len)
        .into_iter()
        .map(|j| first + j * stride)
        .collect()
}

/// Frame range `[first, end)` covering seconds `[start_s, end_s)` of a video.
pub fn frame_range(info: &VideoInfo, start_s: f64, end_s: f64) -> (u64, u64) {
    let to_frame = |s: f64| ((s * info.fps).round().max(0.0) as u64).min(info.frames);
    let first = to_frame(start_s).min(info.frames.saturating_sub(1));
    (first, to_frame(end_s).max(first + 1))
}

/// Samples `segments` x T positions over frames `[range.0, range.1)` of `video` and builds
/// the model's inputs; checks `cancel` between flow fields.
pub fn prepare(
    video: &mut Video,
    pre: &Preprocessing,
    range: (u64, u64),
    segments: usize,
    cancel: &Cancel,
) -> Result<Prepared, PipelineError> {
    let (t, l) = (pre.frames, pre.flow_stack);
    let (stride, flow_scale) = flow_timing(pre.flow_fps, video.info().fps);
    let started = Instant::now();
    let decode_span = tracing::debug_span!("decode", positions = segments * t).entered();
    let sampling = Sampling::Starts {
        starts: strided_clip_starts(range, segments * t, l + 1, stride),
        clip_len: l + 1,
        stride,
    };
    let k = pre.flow_supersample.max(1);
    let resize = Resize {
        short_side: pre.short_side * k,
        crop: Some((pre.size * k, pre.size * k)),
    };
    let clips = video
        .sample(&sampling, &resize)
        .map_err(crate::Error::from)?;
    let decode_ms = started.elapsed().as_secs_f64() * 1e3;
    let frames_decoded = clips.iter().map(|c| c.frames.len() as u64).sum();
    drop(decode_span);

    let side = pre.size as usize;
    let mut rgb = Vec::with_capacity(clips.len() * 3 * side * side);
    for clip in &clips {
        push_rgb(
            &mut rgb,
            &first_frame(clip, l)?.box_downsample(k),
            side,
            pre,
        )?;
    }

    let started = Instant::now();
    let flow_span = tracing::debug_span!("flow", fields = clips.len() * l).entered();
    let stacks = match &pre.flow_engine {
        FlowEngine::Cpu => clips
            .par_iter()
            .map(|clip| flow_stack(clip, side, pre, flow_scale, cancel))
            .collect::<Result<Vec<_>, _>>()?,
        FlowEngine::Batched(device) => {
            flow_stacks_batched(&clips, side, pre, flow_scale, device, cancel)?
        }
    };
    let flow_ms = started.elapsed().as_secs_f64() * 1e3;
    drop(flow_span);
    tracing::debug!(decode_ms, flow_ms, frames_decoded, "inputs ready");

    let (h, w) = (side, side);
    let rgb =
        Tensor::from_vec(rgb, (segments, t, 3, h, w), &Device::Cpu).map_err(crate::Error::from)?;
    let flow = Tensor::from_vec(stacks.concat(), (segments, t, 2 * l, h, w), &Device::Cpu)
        .map_err(crate::Error::from)?;
    Ok(Prepared {
        rgb,
        flow,
        frames_decoded,
        decode_ms,
        flow_ms,
    })
}

/// The clip's first frame, after checking the clip has the L + 1 frames asked for.
fn first_frame(clip: &Clip, l: usize) -> Result<&RgbFrame, PipelineError> {
    if clip.frames.len() != l + 1 {
        return Err(internal(format!(
            "a clip has {} frames, not {}",
            clip.frames.len(),
            l + 1
        )));
    }
    Ok(&clip.frames[0])
}

fn check_size(frame: &RgbFrame, side: usize) -> Result<(), PipelineError> {
    if frame.width as usize != side
        || frame.height as usize != side
        || frame.data.len() != side * side * 3
    {
        return Err(internal(format!(
            "a frame is {}x{} ({} bytes), not {side}x{side}",
            frame.width,
            frame.height,
            frame.data.len()
        )));
    }
    Ok(())
}

/// Appends one frame as three normalised planes (channel-first).
fn push_rgb(
    out: &mut Vec<f32>,
    frame: &RgbFrame,
    side: usize,
    pre: &Preprocessing,
) -> Result<(), PipelineError> {
    check_size(frame, side)?;
    for c in 0..3 {
        out.extend(inputs::rgb_channel(&frame.data, c, pre.mean[c], pre.std[c]));
    }
    Ok(())
}

/// The clip's L flow fields as 2L planes (u0, v0, u1, v1, ...), multiplied by `scale`
/// (the frame-rate correction), clipped and scaled to -1..1.
fn flow_stack(
    clip: &Clip,
    side: usize,
    pre: &Preprocessing,
    scale: f32,
    cancel: &Cancel,
) -> Result<Vec<f32>, PipelineError> {
    let k = pre.flow_supersample.max(1) as usize;
    let grays = grays(clip, side * k)?;
    let mut planes = Vec::with_capacity(2 * pre.flow_stack * side * side);
    for pair in grays.windows(2) {
        if cancel.is_cancelled() {
            return Err(PipelineError::Cancelled);
        }
        let mut field = pre.flow_method.compute(&pair[0], &pair[1]).pool(k);
        push_planes(&mut planes, &mut field, scale, pre.flow_bound);
    }
    Ok(planes)
}

/// The clip's frames as grey images, after checking their size.
fn grays(clip: &Clip, side: usize) -> Result<Vec<GrayImage>, PipelineError> {
    clip.frames
        .iter()
        .map(|f| {
            check_size(f, side)?;
            Ok(GrayImage::from_rgb(&f.data, side, side))
        })
        .collect()
}

/// Every clip's flow stack from one call of the batched tensor solver on `device`.
fn flow_stacks_batched(
    clips: &[Clip],
    side: usize,
    pre: &Preprocessing,
    scale: f32,
    device: &Device,
    cancel: &Cancel,
) -> Result<Vec<Vec<f32>>, PipelineError> {
    let k = pre.flow_supersample.max(1) as usize;
    let (mut prev, mut next) = (Vec::new(), Vec::new());
    for clip in clips {
        let grays = grays(clip, side * k)?;
        for pair in grays.windows(2) {
            prev.push(pair[0].clone());
            next.push(pair[1].clone());
        }
    }
    if cancel.is_cancelled() {
        return Err(PipelineError::Cancelled);
    }
    let fields = pre
        .flow_method
        .compute_batch(&prev, &next, device)
        .map_err(crate::Error::from)?;
    let mut fields: Vec<Flow> = fields.into_iter().map(|f| f.pool(k)).collect();
    let per_clip = fields.len() / clips.len().max(1);
    Ok(fields
        .chunks_mut(per_clip.max(1))
        .map(|clip_fields| {
            let mut planes = Vec::with_capacity(2 * clip_fields.len() * side * side);
            for field in clip_fields {
                push_planes(&mut planes, field, scale, pre.flow_bound);
            }
            planes
        })
        .collect())
}

/// Appends a field's u and v planes: multiplied by `scale` (the frame-rate correction),
/// then through the same 8-bit quantisation as the trainer's flow cache, so the model
/// sees the values it was trained on, and mapped to -1..1.
fn push_planes(planes: &mut Vec<f32>, field: &mut Flow, scale: f32, bound: f32) {
    field.scale(scale);
    let (u, v) = flow::encode::quantize(field, bound);
    for plane in [u, v] {
        planes.extend(inputs::flow_plane(&plane));
    }
}

fn internal(message: String) -> PipelineError {
    PipelineError::Failed(crate::Error::Preprocess(message))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::flow::FlowMethod;
    use crate::video::Limits;

    /// A lavfi `source` encoded to H.264 and opened from memory.
    pub(crate) fn ffmpeg_video(source: &str) -> Video {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v.mp4");
        let status = std::process::Command::new("ffmpeg")
            .args(["-v", "error", "-y", "-f", "lavfi", "-i", source])
            .args(["-c:v", "libx264", "-pix_fmt", "yuv420p"])
            .arg(&path)
            .status()
            .unwrap();
        assert!(status.success());
        Video::from_bytes(std::fs::read(&path).unwrap(), &Limits::default()).unwrap()
    }

    fn tiny() -> Preprocessing {
        Preprocessing {
            frames: 3,
            flow_stack: 2,
            size: 32,
            short_side: 32,
            mean: [0.485, 0.456, 0.406],
            std: [0.229, 0.224, 0.225],
            flow_bound: 20.0,
            flow_fps: None,
            flow_supersample: 1,
            flow_method: FlowMethod::Fast,
            flow_engine: FlowEngine::Cpu,
        }
    }

    /// Mean horizontal flow in pixels of a pan at 40 px/s (20 px/s after the resize to 32).
    fn pan_flow(fps: u32, flow_fps: Option<f64>) -> f32 {
        pan_flow_with(fps, &Preprocessing { flow_fps, ..tiny() })
    }

    fn pan_flow_with(fps: u32, pre: &Preprocessing) -> f32 {
        let mut video = ffmpeg_video(&format!(
            "smptebars=size=400x64:rate={fps}:duration=3,crop=64:64:x='t*40':y=0"
        ));
        let frames = video.info().frames;
        let p = prepare(&mut video, pre, (0, frames), 1, &Cancel::default()).unwrap();
        // Planes alternate u, v: take the u planes, back to pixels.
        let flow = p.flow.reshape((3, 2, 2, 32 * 32)).unwrap();
        let u = flow.narrow(2, 0, 1).unwrap().mean_all().unwrap();
        u.to_scalar::<f32>().unwrap() * pre.flow_bound
    }

    #[test]
    fn supersampled_flow_is_in_input_pixels() {
        // Flow solved at 64x64 and pooled to 32x32 reads like flow solved at 32x32:
        // the same pan, in the same units, within TV-L1's fill-in differences.
        let pre = Preprocessing {
            flow_fps: Some(5.0),
            ..tiny()
        };
        let plain = pan_flow_with(20, &pre);
        let fine = pan_flow_with(
            20,
            &Preprocessing {
                flow_supersample: 2,
                ..pre
            },
        );
        assert!(plain < -1.5, "{plain} px per field");
        assert!(
            (fine / plain - 1.0).abs() < 0.25,
            "{fine} vs {plain} px per field"
        );
    }

    #[test]
    fn flow_fps_makes_motion_independent_of_the_frame_rate() {
        // Per frame, the pan is twice as fast at 10 fps as at 20 fps...
        let (slow, fast) = (pan_flow(20, None), pan_flow(10, None));
        assert!(
            fast.abs() > 1.6 * slow.abs(),
            "per frame: {fast} at 10 fps vs {slow} at 20 fps"
        );
        // ...while at 5 fields per second both read the same (TV-L1 fills the bars' flat
        // regions only partly, so the frame mean is below the 4 px of the edges).
        let (at10, at20) = (pan_flow(10, Some(5.0)), pan_flow(20, Some(5.0)));
        assert!(at10 < -1.5 && at20 < -1.5, "{at10} and {at20} px per field");
        let ratio = at10 / at20;
        assert!(
            (0.8..1.25).contains(&ratio),
            "{at10} vs {at20} px per field"
        );
    }

    #[test]
    fn a_still_red_video_gives_red_frames_and_no_motion() {
        let pre = tiny();
        let mut video = ffmpeg_video("color=c=red:size=64x48:rate=10:duration=1");
        let frames = video.info().frames;
        let p = prepare(&mut video, &pre, (0, frames), 2, &Cancel::default()).unwrap();
        assert_eq!(p.rgb.dims(), &[2, 3, 3, 32, 32]);
        assert_eq!(p.flow.dims(), &[2, 3, 4, 32, 32]);
        assert_eq!(p.frames_decoded, 2 * 3 * 3);
        // Red through yuv420p comes back within a few levels of (255, 0, 0).
        let rgb = p
            .rgb
            .mean_keepdim(3)
            .unwrap()
            .mean_keepdim(4)
            .unwrap()
            .flatten_all()
            .unwrap();
        let rgb: Vec<f32> = rgb.to_vec1().unwrap();
        for (i, value) in rgb.iter().enumerate() {
            let c = i % 3;
            let expected = ([1.0, 0.0, 0.0][c] - pre.mean[c]) / pre.std[c];
            assert!(
                (value - expected).abs() < 0.1,
                "channel {c}: {value} vs {expected}"
            );
        }
        // No motion: every flow value is the quantised zero, within one level of 0.
        let flow: Vec<f32> = p.flow.flatten_all().unwrap().to_vec1().unwrap();
        assert!(
            flow.iter().all(|v| v.abs() <= 2.0 / 255.0 + 1e-6),
            "still video has flow"
        );
    }

    #[test]
    fn a_moving_pattern_gives_motion_and_cancel_stops_the_work() {
        let pre = tiny();
        let mut video = ffmpeg_video("testsrc2=size=64x64:rate=10:duration=2");
        let frames = video.info().frames;
        let p = prepare(&mut video, &pre, (0, frames), 1, &Cancel::default()).unwrap();
        let flow: Vec<f32> = p.flow.flatten_all().unwrap().to_vec1().unwrap();
        assert!(flow.iter().all(|v| (-1.0..=1.0).contains(v)));
        let moving = flow.iter().filter(|v| v.abs() > 0.05).count();
        assert!(
            moving > flow.len() / 100,
            "only {moving} of {} flow values move",
            flow.len()
        );
        let cancel = Cancel::default();
        cancel.cancel();
        let err = prepare(&mut video, &pre, (0, frames), 1, &cancel).unwrap_err();
        assert!(matches!(err, PipelineError::Cancelled), "{err}");
    }

    #[test]
    fn the_batched_engine_gives_the_cpu_engine_s_inputs() {
        let mut video = ffmpeg_video("testsrc2=size=64x64:rate=10:duration=2");
        let frames = video.info().frames;
        // Plain, and with flow solved at twice the size and pooled back.
        for k in [1, 2] {
            let cpu = Preprocessing {
                flow_supersample: k,
                ..tiny()
            };
            let batched = Preprocessing {
                flow_engine: FlowEngine::Batched(Device::Cpu),
                ..cpu.clone()
            };
            let a = prepare(&mut video, &cpu, (0, frames), 2, &Cancel::default()).unwrap();
            let b = prepare(&mut video, &batched, (0, frames), 2, &Cancel::default()).unwrap();
            assert_eq!(a.flow.dims(), b.flow.dims());
            assert_eq!(a.flow.dims(), &[2, 3, 4, 32, 32]);
            let diff = (&a.flow - &b.flow).unwrap().abs().unwrap();
            // In pixels: -1..1 spans ±flow_bound = ±20 px, so one unit is 20 px.
            let mean_px = diff.mean_all().unwrap().to_scalar::<f32>().unwrap() * 20.0;
            assert!(
                mean_px < 0.1,
                "k = {k}: mean |Δ| between engines {mean_px} px"
            );
            let rgb = (&a.rgb - &b.rgb).unwrap().abs().unwrap().max_all().unwrap();
            assert_eq!(rgb.to_scalar::<f32>().unwrap(), 0.0);
        }
    }

    #[test]
    fn clip_starts_spread_evenly_and_stay_in_range() {
        assert_eq!(clip_starts(0, 100, 4, 3), vec![11, 36, 61, 86]);
        // A range shorter than the count repeats positions rather than leaving it.
        let starts = clip_starts(10, 12, 5, 3);
        assert!(starts.iter().all(|&s| (10..12).contains(&s)), "{starts:?}");
        assert_eq!(clip_starts(0, 0, 2, 3), vec![0, 0]);
        // The last clip ends at the range's end rather than past it.
        assert_eq!(clip_starts(0, 8, 2, 5), vec![0, 3]);
    }

    #[test]
    fn strided_clips_sit_on_the_grid_the_trainer_caches() {
        for (range, count) in [((0, 100), 4), ((7, 31), 3)] {
            assert_eq!(
                strided_clip_starts(range, count, 3, 1),
                clip_starts(range.0, range.1, count, 3)
            );
        }
        // 50 frames at stride 2: the cache keeps 25, whose centred positions for 4
        // clips of 3 are 1, 7, 14, 20 (`train::batch::positions`).
        assert_eq!(strided_clip_starts((0, 50), 4, 3, 2), vec![2, 14, 28, 40]);
        // A window's grid starts at its first frame; its last clip ends inside it.
        let starts = strided_clip_starts((10, 31), 2, 4, 3);
        assert!(
            starts.iter().all(|s| (s - 10) % 3 == 0 && s + 9 < 31),
            "{starts:?}"
        );
    }
}
