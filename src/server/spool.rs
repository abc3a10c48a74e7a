//! Where an upload waits for the decoder: in memory up to a threshold, beyond it in a
//! temporary file, so a request's memory stays bounded whatever the body's size. Files
//! live in one folder per server (removed with the server) and count against a disk budget
//! shared by every request; each is removed when its upload is dropped, however the
//! request ends (answered, failed, client gone, server shutting down).

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use prometheus::{IntCounter, IntGauge};
use tempfile::{NamedTempFile, TempDir};
use tokio::io::{AsyncWriteExt, BufWriter};

use super::error::{ApiError, ErrorKind};
use crate::video::{Limits, Video, VideoError};

/// Bytes written to a spool file per system call.
const WRITE_BUFFER: usize = 1 << 20;

/// The temporary files of every upload in flight, and their budget.
pub struct Spool {
    dir: TempDir,
    memory_limit: u64,
    budget: Budget,
    spooled: IntCounter,
}

/// Disk bytes in use against the total allowed.
#[derive(Clone)]
struct Budget {
    used: Arc<AtomicU64>,
    total: u64,
    gauge: IntGauge,
}

impl Spool {
    /// A spool in a new folder under `parent` (created if missing): bodies over `memory_limit` bytes go to
    /// files there, at most `budget` bytes of files at once (`gauge` shows the bytes in
    /// use, `spooled` counts the files).
    pub fn new(
        parent: &Path,
        memory_limit: u64,
        budget: u64,
        (gauge, spooled): (IntGauge, IntCounter),
    ) -> std::io::Result<Spool> {
        std::fs::create_dir_all(parent)?;
        let dir = tempfile::Builder::new()
            .prefix("revstream-uploads-")
            .tempdir_in(parent)?;
        Ok(Spool {
            dir,
            memory_limit,
            budget: Budget {
                used: Arc::new(AtomicU64::new(0)),
                total: budget,
                gauge,
            },
            spooled,
        })
    }

    /// The folder the files are in.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Refuses an upload that declares more bytes than the budget can ever hold (413) or
    /// than it holds free now (503), before any is read.
    pub fn check_declared(&self, bytes: u64) -> Result<(), ApiError> {
        if bytes <= self.memory_limit {
            return Ok(());
        }
        self.budget.check(bytes)?;
        let used = self.budget.used.load(Ordering::Relaxed);
        if used + bytes > self.budget.total {
            return Err(full(self.budget.total));
        }
        Ok(())
    }

    /// A writer for one upload of `declared` bytes if the client said: one over the
    /// threshold goes to a file from its first byte, one under it into a buffer of its
    /// size (no growing buffer and copies on the way).
    pub fn writer(&self, declared: Option<u64>) -> SpoolWriter<'_> {
        let to_file = declared.is_some_and(|n| n > self.memory_limit);
        let capacity = declared.filter(|_| !to_file).unwrap_or(0);
        SpoolWriter {
            spool: self,
            memory: Vec::with_capacity(capacity as usize),
            file: None,
            to_file,
        }
    }
}

impl Budget {
    /// Whether an upload of `bytes` could ever fit (else 413).
    fn check(&self, bytes: u64) -> Result<(), ApiError> {
        if bytes > self.total {
            return Err(ApiError::new(
                ErrorKind::PayloadTooLarge,
                format!(
                    "the upload is over the server's {}-byte disk budget for uploads",
                    self.total
                ),
            ));
        }
        Ok(())
    }

    /// Takes `bytes` more from the budget for an upload that holds `held` already: 413
    /// if the upload alone would pass the budget, 503 if the uploads in flight would.
    fn reserve(&self, held: u64, bytes: u64) -> Result<(), ApiError> {
        self.check(held + bytes)?;
        self.used
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |used| {
                (used + bytes <= self.total).then_some(used + bytes)
            })
            .map_err(|_| full(self.total))?;
        self.gauge.add(bytes as i64);
        Ok(())
    }

    fn release(&self, bytes: u64) {
        self.used.fetch_sub(bytes, Ordering::Relaxed);
        self.gauge.sub(bytes as i64);
    }
}

fn full(total: u64) -> ApiError {
    ApiError::new(
        ErrorKind::StorageFull,
        format!("uploads in flight fill the server's {total}-byte disk budget, retry later"),
    )
    .retry_after(5)
}

/// An upload being received.
pub struct SpoolWriter<'a> {
    spool: &'a Spool,
    memory: Vec<u8>,
    file: Option<(SpoolFile, BufWriter<tokio::fs::File>)>,
    /// Whether the body goes to a file whatever its first chunks' size.
    to_file: bool,
}

impl SpoolWriter<'_> {
    /// Adds `chunk`: in memory while the body stays under the threshold, else to the file
    /// (created with what was in memory), reserving its bytes from the disk budget.
    pub async fn push(&mut self, chunk: &[u8]) -> Result<(), ApiError> {
        if self.file.is_none() {
            if !self.to_file && (self.memory.len() + chunk.len()) as u64 <= self.spool.memory_limit
            {
                self.memory.extend_from_slice(chunk);
                return Ok(());
            }
            self.spill().await?;
        }
        let (file, writer) = self.file.as_mut().expect("spilled above");
        self.spool
            .budget
            .reserve(file.reserved, chunk.len() as u64)?;
        file.reserved += chunk.len() as u64;
        writer.write_all(chunk).await.map_err(write_failed)
    }

    /// Moves the body so far into a new file.
    async fn spill(&mut self) -> Result<(), ApiError> {
        let head = std::mem::take(&mut self.memory);
        self.spool.budget.reserve(0, head.len() as u64)?;
        let mut file = SpoolFile {
            reserved: head.len() as u64,
            budget: self.spool.budget.clone(),
            path: None,
        };
        let temp = NamedTempFile::new_in(self.spool.dir()).map_err(write_failed)?;
        self.spool.spooled.inc();
        let (std_file, path) = temp.into_parts();
        file.path = Some(path);
        let mut writer =
            BufWriter::with_capacity(WRITE_BUFFER, tokio::fs::File::from_std(std_file));
        writer.write_all(&head).await.map_err(write_failed)?;
        self.file = Some((file, writer));
        Ok(())
    }

    /// The whole upload.
    pub async fn finish(self) -> Result<Upload, ApiError> {
        match self.file {
            None => Ok(Upload::Memory(self.memory)),
            Some((file, mut writer)) => {
                writer.flush().await.map_err(write_failed)?;
                Ok(Upload::File(file))
            }
        }
    }
}

fn write_failed(e: std::io::Error) -> ApiError {
    ApiError::internal(format!(
        "writing the upload to the spool folder failed: {e}"
    ))
}

/// A spooled upload's file: removed, and its bytes given back to the budget, when dropped.
pub struct SpoolFile {
    reserved: u64,
    budget: Budget,
    path: Option<tempfile::TempPath>,
}

impl Drop for SpoolFile {
    fn drop(&mut self) {
        // The path's own drop removes the file; the budget is released after it.
        drop(self.path.take());
        self.budget.release(self.reserved);
    }
}

/// A received upload.
pub enum Upload {
    /// A small body, kept in memory.
    Memory(Vec<u8>),
    /// A larger one, in a spool file.
    File(SpoolFile),
}

impl Upload {
    /// Opens the video; a spooled file lives as long as the returned [`OpenVideo`].
    pub fn open(self, limits: &Limits) -> Result<OpenVideo, VideoError> {
        match self {
            Upload::Memory(bytes) => Ok(OpenVideo {
                video: Video::from_bytes(bytes, limits)?,
                _file: None,
            }),
            Upload::File(file) => {
                let path = file.path.as_deref().expect("a spool file has a path");
                Ok(OpenVideo {
                    video: Video::open(path, limits)?,
                    _file: Some(file),
                })
            }
        }
    }
}

/// A video opened from an upload, with the file it reads kept alive.
pub struct OpenVideo {
    /// The video.
    pub video: Video,
    _file: Option<SpoolFile>,
}
