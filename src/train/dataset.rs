//! Labelled video lists: a folder per class, UCF101-style lists, or a CSV of `path,label`.
//!
//! Readers never abort on one bad entry: malformed lines, unknown labels and missing
//! files are skipped with a warning and recorded in [`Dataset::skipped`].

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;

use crate::{Error, Result};

/// File extensions taken as videos when scanning class folders.
pub const VIDEO_EXTENSIONS: [&str; 9] = [
    "mp4", "avi", "mkv", "webm", "mov", "mpg", "mpeg", "ts", "ogv",
];

/// One labelled video.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sample {
    /// Where the video is.
    pub path: PathBuf,
    /// Index into [`Dataset::labels`].
    pub label: usize,
}

/// An entry that was left out, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    /// The line or path as written.
    pub entry: String,
    /// Why it was left out.
    pub reason: String,
}

/// A list of labelled videos with its label names.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Dataset {
    /// Class names; a sample's label indexes this.
    pub labels: Vec<String>,
    /// The usable videos.
    pub samples: Vec<Sample>,
    /// Entries left out while reading.
    pub skipped: Vec<Skipped>,
}

impl Dataset {
    /// Reads whatever `spec` points at: a folder (class folders, or a UCF101 list folder
    /// with `classInd.txt` and `trainlist01.txt`), a `.csv` file, or a UCF101 list file.
    pub fn open(spec: &Path) -> Result<Dataset> {
        if spec.is_dir() {
            if spec.join("classInd.txt").is_file() && spec.join("trainlist01.txt").is_file() {
                return Dataset::from_ucf101(&spec.join("trainlist01.txt"), None);
            }
            return Dataset::from_folder(spec);
        }
        match spec.extension().and_then(|e| e.to_str()) {
            Some(e) if e.eq_ignore_ascii_case("csv") => Dataset::from_csv(spec),
            Some(e) if e.eq_ignore_ascii_case("txt") => Dataset::from_ucf101(spec, None),
            _ => Err(Error::Dataset(format!(
                "{}: expected a folder, a .csv file or a UCF101 .txt list",
                spec.display()
            ))),
        }
    }

    /// Reads `root/<label>/*.<video ext>`; labels are the sorted folder names.
    pub fn from_folder(root: &Path) -> Result<Dataset> {
        let mut labels = Vec::new();
        for entry in read_dir_sorted(root)? {
            if let (true, Some(name)) = (entry.is_dir(), entry.file_name().and_then(|n| n.to_str()))
            {
                labels.push(name.to_string());
            }
        }
        if labels.is_empty() {
            return Err(Error::Dataset(format!(
                "{}: no class folders",
                root.display()
            )));
        }
        let mut ds = Dataset {
            labels,
            ..Dataset::default()
        };
        for (label, name) in ds.labels.clone().iter().enumerate() {
            for path in read_dir_sorted(&root.join(name))? {
                let is_video = path
                    .extension()
                    .and_then(|e| e.to_str())
                    .is_some_and(|e| VIDEO_EXTENSIONS.iter().any(|v| e.eq_ignore_ascii_case(v)));
                if path.is_file() && is_video {
                    ds.samples.push(Sample { path, label });
                } else if path.is_file() {
                    ds.skip(path.display().to_string(), "not a video file extension");
                }
            }
        }
        ds.finish(root)
    }

    /// Reads a CSV of `path,label` (optional header; relative paths are relative to the
    /// CSV's folder). Labels are the sorted distinct label names.
    pub fn from_csv(csv: &Path) -> Result<Dataset> {
        let text = std::fs::read_to_string(csv).map_err(|e| Error::io(csv, e))?;
        let base = csv.parent().unwrap_or(Path::new("."));
        let mut rows = Vec::new();
        let mut ds = Dataset::default();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let Some((path, label)) = line.rsplit_once(',') else {
                ds.skip(format!("line {}: {line}", n + 1), "expected path,label");
                continue;
            };
            let (path, label) = (unquote(path), unquote(label));
            if n == 0 && path.eq_ignore_ascii_case("path") && label.eq_ignore_ascii_case("label") {
                continue;
            }
            if path.is_empty() || label.is_empty() {
                ds.skip(format!("line {}: {line}", n + 1), "empty path or label");
                continue;
            }
            rows.push((base.join(path), label.to_string()));
        }
        ds.labels = rows
            .iter()
            .map(|(_, l)| l.clone())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        for (path, label) in rows {
            let label = ds.labels.iter().position(|l| *l == label).unwrap_or(0);
            ds.push_existing(path, label);
        }
        ds.finish(csv)
    }

    /// Reads a UCF101 list (`trainlist0N.txt`: `Class/v_x.avi 7`; `testlist0N.txt`:
    /// `Class/v_x.avi`) with `classInd.txt` (`7 Class`) from `class_ind` or the list's
    /// folder. Video paths are relative to `video_root`, by default the list's folder.
    pub fn from_ucf101(list: &Path, video_root: Option<&Path>) -> Result<Dataset> {
        let dir = list.parent().unwrap_or(Path::new("."));
        let class_ind = dir.join("classInd.txt");
        let ind = std::fs::read_to_string(&class_ind).map_err(|e| Error::io(&class_ind, e))?;
        let mut classes: Vec<(usize, String)> = Vec::new();
        for (n, line) in ind.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() {
                continue;
            }
            let mut parts = line.split_whitespace();
            match (parts.next().map(str::parse::<usize>), parts.next()) {
                (Some(Ok(i)), Some(name)) if i >= 1 => classes.push((i, name.to_string())),
                _ => {
                    return Err(Error::Dataset(format!(
                        "{} line {}: expected `index ClassName`, got {line:?}",
                        class_ind.display(),
                        n + 1
                    )));
                }
            }
        }
        classes.sort();
        if classes.iter().enumerate().any(|(k, (i, _))| *i != k + 1) {
            return Err(Error::Dataset(format!(
                "{}: class indices must run 1..N without gaps",
                class_ind.display()
            )));
        }
        let mut ds = Dataset {
            labels: classes.into_iter().map(|(_, n)| n).collect(),
            ..Dataset::default()
        };
        let root = video_root.unwrap_or(dir);
        let text = std::fs::read_to_string(list).map_err(|e| Error::io(list, e))?;
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() {
                continue;
            }
            let mut parts = line.split_whitespace();
            let rel = parts.next().unwrap_or_default();
            let label = match parts.next() {
                Some(idx) => match idx.parse::<usize>() {
                    Ok(i) if (1..=ds.labels.len()).contains(&i) => Some(i - 1),
                    _ => None,
                },
                // Test lists carry no index: the class is the folder name.
                None => rel
                    .split('/')
                    .next()
                    .and_then(|c| ds.labels.iter().position(|l| l == c)),
            };
            match label {
                Some(label) => ds.push_existing(root.join(rel), label),
                None => ds.skip(format!("line {}: {line}", n + 1), "unknown class"),
            }
        }
        ds.finish(list)
    }

    /// Splits per class into (train, validation), `val_fraction` of each class to
    /// validation (at least one when the class has two or more), shuffled by `seed`.
    pub fn split(&self, val_fraction: f64, seed: u64) -> (Dataset, Dataset) {
        let mut rng = StdRng::seed_from_u64(seed);
        let empty = || Dataset {
            labels: self.labels.clone(),
            ..Dataset::default()
        };
        let (mut train, mut val) = (empty(), empty());
        for label in 0..self.labels.len() {
            let mut of_class: Vec<&Sample> =
                self.samples.iter().filter(|s| s.label == label).collect();
            of_class.shuffle(&mut rng);
            let mut n_val = (of_class.len() as f64 * val_fraction).round() as usize;
            if n_val == 0 && of_class.len() >= 2 && val_fraction > 0.0 {
                n_val = 1;
            }
            val.samples
                .extend(of_class[..n_val].iter().map(|s| (*s).clone()));
            train
                .samples
                .extend(of_class[n_val..].iter().map(|s| (*s).clone()));
        }
        (train, val)
    }

    /// Number of samples of each class.
    pub fn class_counts(&self) -> Vec<usize> {
        let mut counts = vec![0; self.labels.len()];
        for s in &self.samples {
            counts[s.label] += 1;
        }
        counts
    }

    fn skip(&mut self, entry: String, reason: &str) {
        tracing::warn!(entry, reason, "dataset entry skipped");
        self.skipped.push(Skipped {
            entry,
            reason: reason.to_string(),
        });
    }

    fn push_existing(&mut self, path: PathBuf, label: usize) {
        if path.is_file() {
            self.samples.push(Sample { path, label });
        } else {
            self.skip(path.display().to_string(), "file not found");
        }
    }

    fn finish(self, source: &Path) -> Result<Dataset> {
        if self.samples.is_empty() {
            return Err(Error::Dataset(format!(
                "{}: no usable videos ({} entries skipped)",
                source.display(),
                self.skipped.len()
            )));
        }
        if !self.skipped.is_empty() {
            tracing::warn!(
                source = %source.display(),
                skipped = self.skipped.len(),
                used = self.samples.len(),
                "some dataset entries were skipped"
            );
        }
        Ok(self)
    }
}

fn unquote(s: &str) -> &str {
    let s = s.trim();
    s.strip_prefix('"')
        .and_then(|s| s.strip_suffix('"'))
        .unwrap_or(s)
}

fn read_dir_sorted(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| Error::io(dir, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    out.sort();
    Ok(out)
}
