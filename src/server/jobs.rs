//! Asynchronous jobs for long videos: a timeline of sliding-window predictions, computed
//! in order and visible as each window finishes (`GET /v1/jobs/{id}` and its event
//! stream), then the whole-video prediction. Jobs run detached from the request that
//! created them and their results expire a while after they finish.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};

use super::AppState;
use super::error::{ApiError, ErrorBody, ErrorKind};
use super::predict::{self, Request};
use super::spool::Upload;
use super::types::{JobResult, JobView, PredictParams, PredictResponse, Timings, Window};
use crate::pipeline::preprocess::{self, Prepared};
use crate::pipeline::scores;
use crate::pipeline::timeline::windows;
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
    timeline: Vec<Window>,
    whole: Option<PredictResponse>,
    error: Option<ErrorBody>,
    cancel: Cancel,
    finished: Option<Instant>,
    /// Bumped on every change, for the job's event streams.
    changes: watch::Sender<u64>,
}

impl Job {
    fn changed(&self) {
        self.changes.send_modify(|n| *n += 1);
    }
}

/// How a finished job ended, for its event stream.
pub enum Ending {
    /// With its result (the job's final state).
    Done(Box<JobView>),
    /// With an error, or cancelled (kind `cancelled`).
    Failed(ErrorBody),
}

/// What a job's event stream has not sent yet.
pub struct Events {
    /// Windows after those already sent, in order.
    pub windows: Vec<Window>,
    /// Set once the job has finished.
    pub ending: Option<Ending>,
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
            timeline: Vec::new(),
            whole: None,
            error: None,
            cancel: cancel.clone(),
            finished: None,
            changes: watch::Sender::new(0),
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
            job.changed();
        }
        Some(view(id, job))
    }

    /// A receiver that sees every change of the job (`None`: no such job).
    pub fn subscribe(&self, id: &str) -> Option<watch::Receiver<u64>> {
        self.lock().get(id).map(|job| job.changes.subscribe())
    }

    /// The windows after the first `sent`, and how the job ended if it has (`None`: no
    /// such job, or it expired).
    pub fn events_since(&self, id: &str, sent: usize) -> Option<Events> {
        let jobs = self.lock();
        let job = jobs.get(id)?;
        let windows = job.timeline.get(sent..).unwrap_or_default().to_vec();
        let ending = match job.status {
            JobStatus::Done => Some(Ending::Done(Box::new(view(id, job)))),
            JobStatus::Failed => Some(Ending::Failed(job.error.clone().unwrap_or(ErrorBody {
                error: "the job failed".to_string(),
                kind: ErrorKind::Internal.name().to_string(),
            }))),
            JobStatus::Cancelled => Some(Ending::Failed(ErrorBody {
                error: "the job was cancelled".to_string(),
                kind: "cancelled".to_string(),
            })),
            JobStatus::Queued | JobStatus::Running => None,
        };
        Some(Events { windows, ending })
    }

    fn update(&self, id: &str, change: impl FnOnce(&mut Job)) {
        if let Some(job) = self.lock().get_mut(id) {
            // A cancelled job stays cancelled whatever its worker reports later.
            if job.status != JobStatus::Cancelled {
                change(job);
                job.changed();
            }
        }
    }

    fn finish(&self, id: &str, outcome: Result<PredictResponse, ApiError>) -> JobStatus {
        let mut status = JobStatus::Cancelled;
        self.update(id, |job| {
            match outcome {
                Ok(whole) => {
                    job.status = JobStatus::Done;
                    job.progress = 1.0;
                    job.whole = Some(whole);
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
    let started = job.whole.is_some() || !job.timeline.is_empty();
    JobView {
        id: id.to_string(),
        status: job.status.name().to_string(),
        progress: job.progress,
        result: started.then(|| JobResult {
            whole: job.whole.clone(),
            timeline: job.timeline.clone(),
        }),
        error: job.error.clone(),
    }
}

/// Most windows one job may have (a two-hour video at the smallest hop has 72 000).
const MAX_WINDOWS: usize = 100_000;
/// Shortest window and hop a request may ask for, in seconds.
const MIN_SPAN_S: f64 = 0.1;
/// Longest window or hop, in seconds.
const MAX_SPAN_S: f64 = 3600.0;

/// A job request's validated parameters.
#[derive(Clone)]
pub struct JobRequest {
    /// The prediction's parameters, for every window and the whole video.
    pub request: Request,
    /// Length of a window, seconds.
    pub window_s: f64,
    /// Step between windows' starts, seconds.
    pub hop_s: f64,
}

impl JobRequest {
    /// Checks `params` (see [`Request::validate`]); `window_s` and `hop_s` default to the
    /// server's `--job-window-s` and `--job-step-s`.
    pub fn validate(state: &AppState, params: &PredictParams) -> Result<JobRequest, ApiError> {
        let span = |name: &str, value: Option<f64>, default: f64| {
            let v = value.unwrap_or(default);
            if v.is_finite() && (MIN_SPAN_S..=MAX_SPAN_S).contains(&v) {
                Ok(v)
            } else {
                Err(ApiError::invalid(format!(
                    "{name} must be between {MIN_SPAN_S} and {MAX_SPAN_S} seconds"
                )))
            }
        };
        Ok(JobRequest {
            window_s: span("window_s", params.window_s, state.config.job_window_s)?,
            hop_s: span("hop_s", params.hop_s, state.config.job_step_s)?,
            request: Request::validate(state, params)?,
        })
    }
}

/// What the worker hands the job task, piece by piece: the windows in order (`count` in
/// all), then the whole video.
enum Piece {
    Window {
        count: usize,
        start_s: f64,
        end_s: f64,
        prepared: Prepared,
    },
    Whole(VideoInfo, Prepared),
}

/// Runs job `id` to the end (or until cancelled), recording each window as it finishes,
/// then the whole-video result.
pub async fn run(state: AppState, id: String, job: JobRequest, upload: Upload, cancel: Cancel) {
    let outcome = run_inner(&state, &id, &job, upload, &cancel).await;
    let status = state.jobs.finish(&id, outcome);
    state.metrics.jobs.with_label_values(&[status.name()]).inc();
    tracing::info!(job = %id, status = status.name(), "job finished");
}

async fn run_inner(
    state: &AppState,
    id: &str,
    job: &JobRequest,
    upload: Upload,
    cancel: &Cancel,
) -> Result<PredictResponse, ApiError> {
    let started = Instant::now();
    let request = &job.request;
    let (tx, mut rx) = mpsc::channel::<Result<Piece, PipelineError>>(2);
    submit_when_free(state, id, job, upload, cancel, tx).await?;
    state.jobs.update(id, |job| job.status = JobStatus::Running);

    while let Some(piece) = rx.recv().await {
        let (prepared, window, info) = match piece? {
            Piece::Window {
                count,
                start_s,
                end_s,
                prepared,
            } => (prepared, Some((count, start_s, end_s)), None),
            Piece::Whole(info, prepared) => (prepared, None, Some(info)),
        };
        let (decode, flow) = (prepared.decode_ms, prepared.flow_ms);
        let scored = request
            .model
            .queue
            .submit(prepared.rgb, prepared.flow, cancel.clone())?
            .await
            .map_err(|_| ApiError::internal("the backend thread dropped a request"))??;
        let predictions = predict::top_k(
            &scores::mean_rows(&scored.probabilities),
            &request.model.labels,
            request.top_k,
        );
        match (window, info) {
            (Some((count, start_s, end_s)), _) => state.jobs.update(id, |job| {
                job.timeline.push(Window {
                    start_s,
                    end_s,
                    predictions,
                });
                // The whole video is one more piece after the windows.
                job.progress = job.timeline.len() as f32 / (count + 1) as f32;
            }),
            (None, info) => {
                if cancel.is_cancelled() {
                    break;
                }
                return Ok(PredictResponse {
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
    }
    if cancel.is_cancelled() {
        return Err(PipelineError::Cancelled.into());
    }
    Err(ApiError::internal(
        "the job's worker stopped before the whole-video result",
    ))
}

/// Hands the decoding to the worker pool, waiting (as the job stays `queued`) while the
/// pool is full.
async fn submit_when_free(
    state: &AppState,
    id: &str,
    job: &JobRequest,
    upload: Upload,
    cancel: &Cancel,
    tx: mpsc::Sender<Result<Piece, PipelineError>>,
) -> Result<(), ApiError> {
    // The work sits in a shared slot so a refused submission does not lose it.
    let slot = Arc::new(Mutex::new(Some(work(state, id, job, upload, cancel, tx))));
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

/// The worker's part of a job: open the video once, then prepare each window's inputs
/// in order and the whole video's last, handing them over one at a time (the channel
/// holds two, so memory does not grow with the video's length).
fn work(
    state: &AppState,
    id: &str,
    job: &JobRequest,
    upload: Upload,
    cancel: &Cancel,
    tx: mpsc::Sender<Result<Piece, PipelineError>>,
) -> impl FnOnce() + Send + 'static {
    let limits = state.config.limits();
    let (window_s, hop_s) = (job.window_s, job.hop_s);
    let pre = job.request.model.preprocessing.clone();
    let segments = job.request.segments;
    let cancel = cancel.clone();
    let span = tracing::info_span!("job", id = %id);
    move || {
        let _entered = span.enter();
        let result = (|| -> Result<(), PipelineError> {
            let mut opened = upload.open(&limits).map_err(crate::Error::from)?;
            let video = &mut opened.video;
            let info = video.info().clone();
            let spans = windows(info.duration_s, window_s, hop_s);
            if spans.len() > MAX_WINDOWS {
                return Err(PipelineError::Failed(crate::Error::InvalidArgument(
                    format!(
                        "{} windows of {window_s} s every {hop_s} s over {:.0} s: more than \
                     {MAX_WINDOWS}; ask for a longer hop_s",
                        spans.len(),
                        info.duration_s
                    ),
                )));
            }
            let count = spans.len();
            for (start_s, end_s) in spans {
                if cancel.is_cancelled() {
                    return Err(PipelineError::Cancelled);
                }
                let range = preprocess::frame_range(&info, start_s, end_s);
                let prepared = pre.prepare(video, range, 1, &cancel)?;
                let piece = Piece::Window {
                    count,
                    start_s,
                    end_s,
                    prepared,
                };
                if tx.blocking_send(Ok(piece)).is_err() {
                    return Ok(());
                }
            }
            let whole = pre.prepare(video, (0, info.frames), segments, &cancel)?;
            let _ = tx.blocking_send(Ok(Piece::Whole(info, whole)));
            Ok(())
        })();
        if let Err(e) = result {
            let _ = tx.blocking_send(Err(e));
        }
    }
}
