//! The on-disk cache: each video decoded once into square frames and quantised TV-L1 flow.
//!
//! Layout: `<dir>/index.json` (settings and entries) and one `<n>.bin` per video holding
//! `frames x size x size x 3` RGB bytes, then the `frames - 1` flow fields between
//! consecutive stored frames (every frame, or every stride frames for `flow_fps`) as u8 planes (all u, then all v), quantised with the bound.
//! Each file is written under a temporary name and renamed, so an interrupted `prepare`
//! resumes where it stopped.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::dataset::Dataset;
use crate::artifact::{ModelSpec, flow_timing};
use crate::flow::{self, FlowMethod, GrayImage};
use crate::video::{Limits, Resize, Video};
use crate::{Error, Result};

/// How videos are turned into cached frames and flow.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CacheSettings {
    /// Side of the square frames (shorter side resized to it, then centre crop).
    pub size: u32,
    /// Flow is clipped to ±bound pixels before quantisation.
    pub flow_bound: f32,
    /// Flow method.
    pub preset: FlowMethod,
    /// At most this many frames per video are kept (from the start), before `flow_fps`
    /// thins them.
    pub max_frames: usize,
    /// Flow fields per second (`artifact::flow_timing`): frames are kept every
    /// stride and the flow between them rescaled; `None`: every frame.
    #[serde(default)]
    pub flow_fps: Option<f64>,
    /// Flow computed at this many times `size` and pooled back; RGB frames shrunk from
    /// the same frames (`artifact::PreprocessingSpec::flow_supersample`).
    #[serde(default = "one")]
    pub flow_supersample: u32,
}

fn one() -> u32 {
    1
}

impl CacheSettings {
    /// How `spec`'s inputs are made, as the server makes them (the flow method by
    /// [`crate::artifact::PreprocessingSpec::flow_method`], `preset` as the request).
    pub fn for_model(spec: &ModelSpec, preset: Option<FlowMethod>) -> CacheSettings {
        CacheSettings {
            size: spec.architecture.input_size as u32,
            flow_bound: spec.preprocessing.flow_bound,
            preset: spec.preprocessing.flow_method(preset),
            max_frames: 300,
            flow_fps: spec.preprocessing.flow_fps,
            flow_supersample: spec.preprocessing.flow_supersample,
        }
    }
}

/// One cached video.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CacheEntry {
    /// The source video.
    pub video: PathBuf,
    /// Class name.
    pub label: String,
    /// The cache file, relative to the cache folder.
    pub file: String,
    /// Frames stored.
    pub frames: usize,
}

/// A video that could not be cached, and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Failure {
    /// The source video.
    pub video: PathBuf,
    /// The error.
    pub error: String,
}

/// `index.json`: settings, labels, entries and failures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CacheIndex {
    /// How the entries were made.
    pub settings: CacheSettings,
    /// Class names, by index.
    pub labels: Vec<String>,
    /// Cached videos.
    pub entries: Vec<CacheEntry>,
    /// Videos skipped because they could not be decoded.
    pub failures: Vec<Failure>,
}

/// A cached video in memory.
#[derive(Debug, Clone)]
pub struct CachedVideo {
    /// Frame side.
    pub size: usize,
    /// Frame count.
    pub frames: usize,
    /// `frames * size * size * 3` RGB bytes.
    pub rgb: Vec<u8>,
    /// `(frames - 1) * size * size` quantised u components.
    pub flow_u: Vec<u8>,
    /// `(frames - 1) * size * size` quantised v components.
    pub flow_v: Vec<u8>,
}

impl CachedVideo {
    /// Frame `i` as packed RGB.
    pub fn frame(&self, i: usize) -> &[u8] {
        let n = self.size * self.size * 3;
        &self.rgb[i * n..(i + 1) * n]
    }

    /// Quantised (u, v) planes of the flow from frame `i` to `i + 1`.
    pub fn flow(&self, i: usize) -> (&[u8], &[u8]) {
        let n = self.size * self.size;
        (
            &self.flow_u[i * n..(i + 1) * n],
            &self.flow_v[i * n..(i + 1) * n],
        )
    }
}

const MAGIC: &[u8; 4] = b"RSC1";

/// Decodes one video and computes its flow, as stored in the cache.
pub fn build_video(path: &Path, settings: &CacheSettings) -> Result<CachedVideo> {
    let mut video = Video::open(path, &Limits::default())?;
    let k = settings.flow_supersample.max(1);
    let big = settings.size * k;
    let resize = Resize {
        short_side: big,
        crop: Some((big, big)),
    };
    let (stride, scale) = flow_timing(settings.flow_fps, video.info().fps);
    let mut frames = video.decode_all(&resize)?;
    frames.truncate(settings.max_frames.max(2));
    let frames: Vec<_> = frames.into_iter().step_by(stride).collect();
    if frames.len() < 2 {
        return Err(Error::Dataset(format!(
            "{}: {} frame(s), need at least 2 for flow",
            path.display(),
            frames.len()
        )));
    }
    let size = settings.size as usize;
    let grays: Vec<GrayImage> = frames
        .iter()
        .map(|f| GrayImage::from_rgb(&f.data, big as usize, big as usize))
        .collect();
    let mut flow_u = Vec::with_capacity((frames.len() - 1) * size * size);
    let mut flow_v = Vec::with_capacity(flow_u.capacity());
    for pair in grays.windows(2) {
        let mut field = settings.preset.compute(&pair[0], &pair[1]).pool(k as usize);
        field.scale(scale);
        let (u, v) = flow::encode::quantize(&field, settings.flow_bound);
        flow_u.extend_from_slice(&u);
        flow_v.extend_from_slice(&v);
    }
    let rgb = frames
        .iter()
        .flat_map(|f| f.box_downsample(k).into_owned().data)
        .collect();
    Ok(CachedVideo {
        size,
        frames: frames.len(),
        rgb,
        flow_u,
        flow_v,
    })
}

fn write_video(path: &Path, v: &CachedVideo) -> Result<()> {
    let mut bytes = Vec::with_capacity(12 + v.rgb.len() + 2 * v.flow_u.len());
    bytes.extend_from_slice(MAGIC);
    bytes.extend_from_slice(&(v.frames as u32).to_le_bytes());
    bytes.extend_from_slice(&(v.size as u32).to_le_bytes());
    bytes.extend_from_slice(&v.rgb);
    bytes.extend_from_slice(&v.flow_u);
    bytes.extend_from_slice(&v.flow_v);
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, &bytes).map_err(|e| Error::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))
}

/// Reads one cache file.
pub fn read_video(path: &Path) -> Result<CachedVideo> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let bad = |what: &str| Error::Dataset(format!("{}: {what}", path.display()));
    if bytes.len() < 12 || &bytes[..4] != MAGIC {
        return Err(bad("not a revstream cache file"));
    }
    let word = |at: usize| {
        u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]) as usize
    };
    let (frames, size) = (word(4), word(8));
    let plane = size * size;
    let rgb_len = frames * plane * 3;
    let flow_len = frames.saturating_sub(1) * plane;
    if frames < 2 || bytes.len() != 12 + rgb_len + 2 * flow_len {
        return Err(bad("truncated or inconsistent cache file"));
    }
    let body = &bytes[12..];
    Ok(CachedVideo {
        size,
        frames,
        rgb: body[..rgb_len].to_vec(),
        flow_u: body[rgb_len..rgb_len + flow_len].to_vec(),
        flow_v: body[rgb_len + flow_len..].to_vec(),
    })
}

/// Caches every sample of `dataset` into `dir` in parallel, skipping files already
/// there (resume) and videos that fail to decode (recorded in the index's failures).
/// `on_video` is called after each video (for progress bars).
pub fn prepare(
    dataset: &Dataset,
    dir: &Path,
    settings: &CacheSettings,
    on_video: &(dyn Fn() + Sync),
) -> Result<CacheIndex> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let index_path = dir.join("index.json");
    if let Ok(text) = std::fs::read_to_string(&index_path) {
        let old: CacheIndex = serde_json::from_str(&text)?;
        if old.settings != settings.clone() {
            return Err(Error::InvalidArgument(format!(
                "{} was made with other settings ({:?}); use another folder",
                dir.display(),
                old.settings
            )));
        }
    }
    let done = AtomicUsize::new(0);
    let results: Vec<std::result::Result<CacheEntry, Failure>> = dataset
        .samples
        .par_iter()
        .enumerate()
        .map(|(i, sample)| {
            let file = format!("{i:06}.bin");
            let path = dir.join(&file);
            let outcome = match std::fs::metadata(&path) {
                Ok(_) => read_header_frames(&path),
                Err(_) => build_video(&sample.path, settings)
                    .and_then(|v| write_video(&path, &v).map(|_| v.frames)),
            };
            done.fetch_add(1, Ordering::Relaxed);
            on_video();
            match outcome {
                Ok(frames) => Ok(CacheEntry {
                    video: sample.path.clone(),
                    label: dataset.labels[sample.label].clone(),
                    file,
                    frames,
                }),
                Err(e) => {
                    tracing::warn!(video = %sample.path.display(), error = %e, "video skipped");
                    Err(Failure {
                        video: sample.path.clone(),
                        error: e.to_string(),
                    })
                }
            }
        })
        .collect();
    let mut index = CacheIndex {
        settings: settings.clone(),
        labels: dataset.labels.clone(),
        entries: Vec::new(),
        failures: Vec::new(),
    };
    for r in results {
        match r {
            Ok(e) => index.entries.push(e),
            Err(f) => index.failures.push(f),
        }
    }
    if !index.failures.is_empty() {
        tracing::warn!(
            failed = index.failures.len(),
            cached = index.entries.len(),
            "some videos could not be decoded and were skipped"
        );
    }
    let text = serde_json::to_string_pretty(&index)?;
    std::fs::write(&index_path, text).map_err(|e| Error::io(&index_path, e))?;
    Ok(index)
}

fn read_header_frames(path: &Path) -> Result<usize> {
    Ok(read_video(path)?.frames)
}

/// Reads `dir/index.json`.
pub fn load_index(dir: &Path) -> Result<CacheIndex> {
    let path = dir.join("index.json");
    let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
    Ok(serde_json::from_str(&text)?)
}
