//! The batching queue in front of the backend thread: requests from many clients are
//! gathered into one batch (up to a size, or until a short wait runs out) so the model
//! runs fewer, larger forward passes.

use std::panic::AssertUnwindSafe;
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use candle_core::Tensor;
use prometheus::{Histogram, IntGauge};
use tokio::sync::{oneshot, watch};

use super::{Cancel, PipelineError};
use crate::backend::Backend;

/// Whether a model can serve yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoadState {
    /// Loading weights or warming up.
    Loading,
    /// Loaded and warmed up.
    Ready,
    /// Loading failed; the message says why.
    Failed(String),
}

/// Batching limits.
#[derive(Debug, Clone, Copy)]
pub struct BatchOptions {
    /// Most samples in one forward pass (the backend's own limit also applies).
    pub max_batch: usize,
    /// Longest the first request of a batch waits for company.
    pub max_wait: Duration,
    /// Requests that may wait before new ones are refused.
    pub capacity: usize,
}

/// Gauges and histograms the queue keeps up to date.
#[derive(Clone)]
pub struct QueueMetrics {
    /// Requests waiting for the backend.
    pub depth: IntGauge,
    /// Samples per forward pass.
    pub batch_size: Histogram,
}

/// What the backend answered for one request.
#[derive(Debug, Clone)]
pub struct Scored {
    /// Class probabilities, one row per sample of the request.
    pub probabilities: Vec<Vec<f32>>,
    /// Time spent waiting in the queue, in milliseconds.
    pub queue_ms: f64,
    /// Time of the forward pass(es) that included it, in milliseconds.
    pub inference_ms: f64,
}

struct Pending {
    rgb: Tensor,
    flow: Tensor,
    samples: usize,
    enqueued: Instant,
    cancel: Cancel,
    reply: oneshot::Sender<Result<Scored, PipelineError>>,
}

/// Facts about the loaded backend, known once it is ready.
#[derive(Debug, Clone, Default)]
pub struct BackendInfo {
    /// The engine's name.
    pub name: String,
    /// The device it runs on.
    pub device: String,
    /// The floating-point type it computes in.
    pub dtype: String,
}

/// The sending side of a backend thread's queue.
pub struct BatchQueue {
    sender: SyncSender<Pending>,
    state: watch::Receiver<LoadState>,
    info: Arc<Mutex<BackendInfo>>,
    metrics: QueueMetrics,
}

impl BatchQueue {
    /// Starts the backend thread: it runs `load`, warms the model up with `warmup`
    /// inputs, then serves batches until the queue is dropped.
    pub fn start<L>(
        name: &str,
        load: L,
        warmup: (Tensor, Tensor),
        options: BatchOptions,
        metrics: QueueMetrics,
    ) -> std::io::Result<BatchQueue>
    where
        L: FnOnce() -> crate::Result<Box<dyn Backend>> + Send + 'static,
    {
        let (sender, receiver) = sync_channel(options.capacity.max(1));
        let (state_tx, state) = watch::channel(LoadState::Loading);
        let info = Arc::new(Mutex::new(BackendInfo::default()));
        let thread_info = Arc::clone(&info);
        let thread_metrics = metrics.clone();
        std::thread::Builder::new()
            .name(format!("revstream-backend-{name}"))
            .spawn(move || {
                let mut backend = match load_and_warm_up(load, &warmup) {
                    Ok(backend) => backend,
                    Err(e) => {
                        tracing::error!(error = %e, "model failed to load");
                        let _ = state_tx.send(LoadState::Failed(e.to_string()));
                        return;
                    }
                };
                if let Ok(mut info) = thread_info.lock() {
                    *info = BackendInfo {
                        name: backend.name().to_string(),
                        device: backend.device(),
                        dtype: backend.dtype().to_string(),
                    };
                }
                drop(warmup);
                let _ = state_tx.send(LoadState::Ready);
                serve(backend.as_mut(), &receiver, options, &thread_metrics);
            })?;
        Ok(BatchQueue {
            sender,
            state,
            info,
            metrics,
        })
    }

    /// Queues `samples` inputs (`rgb` (S, T, 3, H, W), `flow` (S, T, 2L, H, W)); fails at
    /// once when the queue is full or the model is not ready.
    pub fn submit(
        &self,
        rgb: Tensor,
        flow: Tensor,
        cancel: Cancel,
    ) -> Result<oneshot::Receiver<Result<Scored, PipelineError>>, PipelineError> {
        if *self.state.borrow() != LoadState::Ready {
            return Err(PipelineError::Stopped);
        }
        let samples = rgb.dims().first().copied().unwrap_or(0);
        let (reply, rx) = oneshot::channel();
        let pending = Pending {
            rgb,
            flow,
            samples,
            enqueued: Instant::now(),
            cancel,
            reply,
        };
        match self.sender.try_send(pending) {
            Ok(()) => {
                self.metrics.depth.inc();
                Ok(rx)
            }
            Err(TrySendError::Full(_)) => Err(PipelineError::Overloaded("model queue")),
            Err(TrySendError::Disconnected(_)) => Err(PipelineError::Stopped),
        }
    }

    /// The model's load state.
    pub fn state(&self) -> LoadState {
        self.state.borrow().clone()
    }

    /// Waits until the model is ready or has failed to load.
    pub async fn wait_loaded(&self) -> LoadState {
        let mut state = self.state.clone();
        match state.wait_for(|s| *s != LoadState::Loading).await {
            Ok(s) => s.clone(),
            Err(_) => LoadState::Failed("the backend thread stopped".to_string()),
        }
    }

    /// The backend's name and device (empty until ready).
    pub fn info(&self) -> BackendInfo {
        self.info.lock().map(|i| i.clone()).unwrap_or_default()
    }
}

fn load_and_warm_up<L>(load: L, warmup: &(Tensor, Tensor)) -> crate::Result<Box<dyn Backend>>
where
    L: FnOnce() -> crate::Result<Box<dyn Backend>>,
{
    let started = Instant::now();
    let mut backend = load()?;
    let loaded = started.elapsed();
    backend.predict(&warmup.0, &warmup.1)?;
    tracing::info!(
        backend = backend.name(),
        device = %backend.device(),
        dtype = backend.dtype(),
        load_ms = loaded.as_millis() as u64,
        warmup_ms = (started.elapsed() - loaded).as_millis() as u64,
        "model ready"
    );
    Ok(backend)
}

fn serve(
    backend: &mut dyn Backend,
    receiver: &Receiver<Pending>,
    options: BatchOptions,
    metrics: &QueueMetrics,
) {
    let max_batch = options.max_batch.min(backend.max_batch()).max(1);
    while let Ok(first) = receiver.recv() {
        let mut batch = vec![first];
        let mut samples = batch[0].samples;
        let deadline = Instant::now() + options.max_wait;
        while samples < max_batch {
            let left = deadline.saturating_duration_since(Instant::now());
            match receiver.recv_timeout(left) {
                Ok(next) => {
                    samples += next.samples;
                    batch.push(next);
                }
                Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => break,
            }
        }
        metrics.depth.sub(batch.len() as i64);
        batch.retain(|p| !p.cancel.is_cancelled() && !p.reply.is_closed());
        if !batch.is_empty() {
            run_batch(backend, batch, max_batch, metrics);
        }
    }
}

/// Runs the gathered requests through the model in chunks of at most `max_batch`
/// samples and hands each request its rows.
fn run_batch(
    backend: &mut dyn Backend,
    batch: Vec<Pending>,
    max_batch: usize,
    metrics: &QueueMetrics,
) {
    let started = Instant::now();
    let result = forward_all(backend, &batch, max_batch, metrics);
    let inference_ms = started.elapsed().as_secs_f64() * 1e3;
    tracing::debug!(requests = batch.len(), inference_ms, "batch done");
    match result {
        Ok(mut rows) => {
            for pending in batch {
                let rest = rows.split_off(pending.samples.min(rows.len()));
                let scored = Scored {
                    probabilities: std::mem::replace(&mut rows, rest),
                    queue_ms: (started - pending.enqueued).as_secs_f64() * 1e3,
                    inference_ms,
                };
                let _ = pending.reply.send(Ok(scored));
            }
        }
        Err(e) => {
            tracing::error!(error = %e, "forward pass failed");
            for pending in batch {
                let _ = pending
                    .reply
                    .send(Err(PipelineError::Failed(crate::Error::Backend(format!(
                        "forward pass failed: {e}"
                    )))));
            }
        }
    }
}

fn forward_all(
    backend: &mut dyn Backend,
    batch: &[Pending],
    max_batch: usize,
    metrics: &QueueMetrics,
) -> crate::Result<Vec<Vec<f32>>> {
    let rgb = Tensor::cat(&batch.iter().map(|p| &p.rgb).collect::<Vec<_>>(), 0)?;
    let flow = Tensor::cat(&batch.iter().map(|p| &p.flow).collect::<Vec<_>>(), 0)?;
    let total = rgb.dim(0)?;
    let mut rows = Vec::with_capacity(total);
    let mut start = 0;
    while start < total {
        let len = max_batch.min(total - start);
        metrics.batch_size.observe(len as f64);
        let (rgb, flow) = (rgb.narrow(0, start, len)?, flow.narrow(0, start, len)?);
        // A panic in the engine fails this batch, not the backend thread.
        let predicted = std::panic::catch_unwind(AssertUnwindSafe(|| backend.predict(&rgb, &flow)))
            .map_err(|_| crate::Error::Backend("the backend panicked".to_string()))?;
        rows.extend(predicted?);
        start += len;
    }
    Ok(rows)
}
