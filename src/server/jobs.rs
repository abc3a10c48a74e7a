//! Asynchronous jobs for long videos: a timeline of sliding-window predictions plus the
//! whole-video prediction. Jobs run detached from the request that created them and
//! their results expire a while after they finish.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use super::AppState;
use super::error::{ApiError, ErrorBody, ErrorKind};
use super::predict::{self, Request};
use super::spool::Upload;
use super::types::{JobResult, JobView, PredictResponse, Timings, Window};
use crate::pipeline::preprocess::{self, Prepared};
use crate::pipeline::{Cancel, PipelineError};
use crate::video::VideoInfo;

/// A job's stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobStatus {
    /// Waiting for a worker.
    Queued,
    /// Being processed.
    Running,
    /// Finished with a result.
    Done,
    /// Finished with an error.
    Failed,
    /// Stopped by `DELETE /v1/jobs/{id}`.
    Cancelled,
}

impl JobStatus {
    fn name(self) -> &'static str {
        match self {
            JobStatus::Queued => "queued",
            JobStatus::Running => "running",
            JobStatus::Done => "done",
            JobStatus::Failed => "failed",
            JobStatus::Cancelled => "cancelled",
        }
    }

    fn is_finished(self) -> bool {
        matches!(
            self,
            JobStatus::Done | JobStatus::Failed | JobStatus::Cancelled
        )
    }
}

struct Job {
    status: JobStatus,
    progress: f32,
    result: Option<JobResult>,
    error: Option<ErrorBody>,
    cancel: Cancel,
    finished: Option<Instant>,
}

/// Every job the server knows, bounded in how many may be unfinished.
pub struct JobStore {
    jobs: Mutex<HashMap<String, Job>>,
    max_active: usize,
    ttl: Duration,
}

impl JobStore {
    /// A store allowing `max_active` unfinished jobs, keeping results for `ttl`.
    pub fn new(max_active: usize, ttl: Duration) -> Self {
        JobStore {
            jobs: Mutex::new(HashMap::new()),
            max_active,
            ttl,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Job>> {
        // A panic while holding the lock leaves plain data behind; keep serving it.
        let mut jobs = self.jobs.lock().unwrap_or_else(|e| e.into_inner());
        let ttl = self.ttl;
        jobs.retain(|_, job| job.finished.is_none_or(|t| t.elapsed() < ttl));
        jobs
    }

    /// Registers a queued job; 429 when too many are unfinished.
    pub fn create(&self) -> Result<(String, Cancel), ApiError> {
        let mut jobs = self.lock();
        if jobs.values().filter(|j| !j.status.is_finished()).count() >= self.max_active {
            return Err(ApiError::new(
                ErrorKind::Overloaded,
                "too many jobs are running, retry later",
            )
            .retry_after(1));
        }
        let id = format!("{:032x}", rand::random::<u128>());
        let cancel = Cancel::default();
        let job = Job {
            status: JobStatus::Queued,
            progress: 0.0,
            result: None,
            error: None,
            cancel: cancel.clone(),
            finished: None,
        };
        jobs.insert(id.clone(), job);
        Ok((id, cancel))
    }

    /// The job's current state.
    pub fn view(&self, id: &str) -> Option<JobView> {
        self.lock().get(id).map(|job| view(id, job))
    }

    /// Cancels the job (if unfinished) and returns its state.
    pub fn cancel(&self, id: &str) -> Option<JobView> {
        let mut jobs = self.lock();
        let job = jobs.get_mut(id)?;
        if !job.status.is_finished() {
            job.cancel.cancel();
            job.status = JobStatus::Cancelled;
            job.finished = Some(Instant::now());
        }
        Some(view(id, job))
    }

    fn update(&self, id: &str, change: impl FnOnce(&mut Job)) {
        if let Some(job) = self.lock().get_mut(id) {
            // A cancelled job stays cancelled whatever its worker reports later.
            if job.status != JobStatus::Cancelled {
                change(job);
            }
        }
    }

    fn finish(&self, id: &str, outcome: Result<JobResult, ApiError>) -> JobStatus {
        let mut status = JobStatus::Cancelled;
        self.update(id, |job| {
            match outcome {
                Ok(result) => {
                    job.status = JobStatus::Done;
                    job.progress = 1.0;
                    job.result = Some(result);
                }
                Err(e) => {
                    job.status = JobStatus::Failed;
                    job.error = Some(e.body());
                }
            }
            job.finished = Some(Instant::now());
            status = job.status;
        });
        status
    }
}

fn view(id: &str, job: &Job) -> JobView {
    JobView {
        id: id.to_string(),
        status: job.status.name().to_string(),
        progress: job.progress,
        result: job.result.clone(),
        error: job.error.clone(),
    }
}

/// The sliding windows `(start_s, end_s)` over a video of `duration_s` seconds.
pub fn windows(duration_s: f64, window_s: f64, step_s: f64) -> Vec<(f64, f64)> {
    if duration_s <= window_s || window_s <= 0.0 || step_s <= 0.0 {
        return vec![(0.0, duration_s.max(0.0))];
    }
    let count = ((duration_s - window_s) / step_s - 1e-9).ceil() as usize + 1;
    (0..count)
        .map(|i| {
            let start = (i as f64 * step_s).min(duration_s - window_s);
            (start, start + window_s)
        })
        .collect()
}

/// What the worker hands the job task, piece by piece.
enum Piece {
    Whole(VideoInfo, usize, Prepared),
    Window(f64, f64, Prepared),
}

/// Runs job `id` to the end (or until cancelled), recording progress and the result.
pub async fn run(state: AppState, id: String, request: Request, upload: Upload, cancel: Cancel) {
    let outcome = run_inner(&state, &id, &request, upload, &cancel).await;
    let status = state.jobs.finish(&id, outcome);
    state.metrics.jobs.with_label_values(&[status.name()]).inc();
    tracing::info!(job = %id, status = status.name(), "job finished");
}

async fn run_inner(
    state: &AppState,
    id: &str,
    request: &Request,
    upload: Upload,
    cancel: &Cancel,
) -> Result<JobResult, ApiError> {
    let started = Instant::now();
    let (tx, mut rx) = mpsc::channel::<Result<Piece, PipelineError>>(2);
    submit_when_free(state, id, request, upload, cancel, tx).await?;
    state.jobs.update(id, |job| job.status = JobStatus::Running);

    let mut whole = None;
    let mut timeline = Vec::new();
    let mut total_pieces = 1;
    while let Some(piece) = rx.recv().await {
        let (prepared, window, info) = match piece? {
            Piece::Whole(info, windows, prepared) => {
                total_pieces = windows + 1;
                (prepared, None, Some(info))
            }
            Piece::Window(start, end, prepared) => (prepared, Some((start, end)), None),
        };
        let (decode, flow) = (prepared.decode_ms, prepared.flow_ms);
        let scored = request
            .model
            .queue
            .submit(prepared.rgb, prepared.flow, cancel.clone())?
            .await
            .map_err(|_| ApiError::internal("the backend thread dropped a request"))??;
        let predictions = predict::top_k(
            &predict::mean_rows(&scored.probabilities),
            &request.model.labels,
            request.top_k,
        );
        match (window, info) {
            (Some((start_s, end_s)), _) => timeline.push(Window {
                start_s,
                end_s,
                predictions,
            }),
            (None, info) => {
                whole = Some(PredictResponse {
                    model: request.model.name.clone(),
                    predictions,
                    video: info.as_ref().map(predict::summary),
                    timings_ms: Some(Timings {
                        decode,
                        flow,
                        queue: scored.queue_ms,
                        inference: scored.inference_ms,
                        total: started.elapsed().as_secs_f64() * 1e3,
                    }),
                });
            }
        }
        let done = timeline.len() + 1;
        state
            .jobs
            .update(id, |job| job.progress = done as f32 / total_pieces as f32);
    }
    if cancel.is_cancelled() {
        return Err(PipelineError::Cancelled.into());
    }
    Ok(JobResult { whole, timeline })
}

/// Hands the decoding to the worker pool, waiting (as the job stays `queued`) while the
/// pool is full.
async fn submit_when_free(
    state: &AppState,
    id: &str,
    request: &Request,
    upload: Upload,
    cancel: &Cancel,
    tx: mpsc::Sender<Result<Piece, PipelineError>>,
) -> Result<(), ApiError> {
    // The work sits in a shared slot so a refused submission does not lose it.
    let slot = Arc::new(Mutex::new(Some(work(
        state, id, request, upload, cancel, tx,
    ))));
    loop {
        let task = Arc::clone(&slot);
        let submitted = state.pool.submit(move || {
            if let Some(work) = task.lock().unwrap_or_else(|e| e.into_inner()).take() {
                work();
            }
        });
        match submitted {
            Ok(_) => return Ok(()),
            Err(PipelineError::Overloaded(_)) if !cancel.is_cancelled() => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// The worker's part of a job: decode the video once, then prepare the whole-video
/// inputs and each window's, handing them over one at a time.
fn work(
    state: &AppState,
    id: &str,
    request: &Request,
    upload: Upload,
    cancel: &Cancel,
    tx: mpsc::Sender<Result<Piece, PipelineError>>,
) -> impl FnOnce() + Send + 'static {
    let limits = state.config.limits();
    let (window_s, step_s) = (state.config.job_window_s, state.config.job_step_s);
    let pre = request.model.preprocessing.clone();
    let segments = request.segments;
    let cancel = cancel.clone();
    let span = tracing::info_span!("job", id = %id);
    move || {
        let _entered = span.enter();
        let result = (|| -> Result<(), PipelineError> {
            let mut opened = upload.open(&limits).map_err(crate::Error::from)?;
            let video = &mut opened.video;
            let info = video.info().clone();
            let spans = windows(info.duration_s, window_s, step_s);
            let whole = pre.prepare(video, (0, info.frames), segments, &cancel)?;
            if tx
                .blocking_send(Ok(Piece::Whole(info.clone(), spans.len(), whole)))
                .is_err()
            {
                return Ok(());
            }
            for (start_s, end_s) in spans {
                if cancel.is_cancelled() {
                    return Err(PipelineError::Cancelled);
                }
                let range = preprocess::frame_range(&info, start_s, end_s);
                let prepared = pre.prepare(video, range, 1, &cancel)?;
                if tx
                    .blocking_send(Ok(Piece::Window(start_s, end_s, prepared)))
                    .is_err()
                {
                    return Ok(());
                }
            }
            Ok(())
        })();
        if let Err(e) = result {
            let _ = tx.blocking_send(Err(e));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::windows;

    #[test]
    fn windows_cover_the_video() {
        assert_eq!(windows(1.5, 2.0, 1.0), vec![(0.0, 1.5)]);
        assert_eq!(
            windows(4.0, 2.0, 1.0),
            vec![(0.0, 2.0), (1.0, 3.0), (2.0, 4.0)]
        );
        // The last window ends at the video's end even when the step does not divide it.
        assert_eq!(windows(4.5, 2.0, 1.0).last(), Some(&(2.5, 4.5)));
    }
}
