//! Prometheus metrics: per-stage durations, queue depths, batch sizes, requests by
//! status and error kind, videos and frames processed, upload bytes spooled to disk.

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

use crate::pipeline::queue::QueueMetrics;

/// Every metric the server exports, registered in its own registry.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    /// Requests by route, method and status code.
    pub requests: IntCounterVec,
    /// Error responses by kind.
    pub errors: IntCounterVec,
    /// Seconds per stage (decode, flow, queue, inference, total).
    pub stage_seconds: HistogramVec,
    /// Work waiting, by queue (workers, model).
    pub queue_depth: IntGaugeVec,
    /// Samples per forward pass.
    pub batch_size: Histogram,
    /// Videos decoded successfully.
    pub videos: IntCounter,
    /// Frames decoded for the model.
    pub frames: IntCounter,
    /// Jobs by final status.
    pub jobs: IntCounterVec,
    /// Bytes of uploads in spool files now.
    pub spool_bytes: IntGauge,
    /// Uploads written to a spool file.
    pub spooled: IntCounter,
    /// Clients connected to an event stream.
    pub sse_clients: IntGauge,
}

impl Metrics {
    /// Creates and registers every metric.
    pub fn new() -> prometheus::Result<Self> {
        let registry = Registry::new_custom(Some("revstream".to_string()), None)?;
        let requests = IntCounterVec::new(
            Opts::new(
                "http_requests_total",
                "HTTP requests by route, method and status",
            ),
            &["route", "method", "status"],
        )?;
        let errors = IntCounterVec::new(
            Opts::new("errors_total", "Error responses by kind"),
            &["kind"],
        )?;
        let stage_seconds = HistogramVec::new(
            HistogramOpts::new("stage_duration_seconds", "Time per pipeline stage")
                .buckets(prometheus::exponential_buckets(0.001, 2.0, 18)?),
            &["stage"],
        )?;
        let queue_depth = IntGaugeVec::new(
            Opts::new("queue_depth", "Work waiting, by queue"),
            &["queue"],
        )?;
        let batch_size = Histogram::with_opts(
            HistogramOpts::new("batch_size", "Samples per forward pass")
                .buckets(prometheus::exponential_buckets(1.0, 2.0, 8)?),
        )?;
        let videos = IntCounter::new("videos_processed_total", "Videos decoded")?;
        let frames = IntCounter::new("frames_processed_total", "Frames decoded for the model")?;
        let jobs =
            IntCounterVec::new(Opts::new("jobs_total", "Jobs by final status"), &["status"])?;
        let spool_bytes = IntGauge::new(
            "upload_spool_bytes",
            "Bytes of uploads held in temporary files now",
        )?;
        let spooled = IntCounter::new(
            "uploads_spooled_total",
            "Uploads too large for memory, written to a temporary file",
        )?;
        let sse_clients = IntGauge::new("sse_clients", "Clients connected to an event stream")?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(errors.clone()))?;
        registry.register(Box::new(stage_seconds.clone()))?;
        registry.register(Box::new(queue_depth.clone()))?;
        registry.register(Box::new(batch_size.clone()))?;
        registry.register(Box::new(videos.clone()))?;
        registry.register(Box::new(frames.clone()))?;
        registry.register(Box::new(jobs.clone()))?;
        registry.register(Box::new(spool_bytes.clone()))?;
        registry.register(Box::new(spooled.clone()))?;
        registry.register(Box::new(sse_clients.clone()))?;
        Ok(Metrics {
            registry,
            requests,
            errors,
            stage_seconds,
            queue_depth,
            batch_size,
            videos,
            frames,
            jobs,
            spool_bytes,
            spooled,
            sse_clients,
        })
    }

    /// The metrics the batching queue of one model updates.
    pub fn queue_metrics(&self) -> QueueMetrics {
        QueueMetrics {
            depth: self.queue_depth.with_label_values(&["model"]),
            batch_size: self.batch_size.clone(),
        }
    }

    /// Records one stage's duration in milliseconds.
    pub fn observe_ms(&self, stage: &str, ms: f64) {
        self.stage_seconds
            .with_label_values(&[stage])
            .observe(ms / 1e3);
    }

    /// The text exposition format of every metric.
    pub fn render(&self) -> String {
        let mut buffer = Vec::new();
        // Encoding into a Vec cannot fail on I/O; a failure would be a metric name bug.
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut buffer) {
            tracing::error!(error = %e, "encoding metrics failed");
        }
        String::from_utf8(buffer).unwrap_or_default()
    }
}
