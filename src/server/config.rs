//! Server settings: every flag is also a `REVSTREAM_*` environment variable.

use std::path::PathBuf;
use std::time::Duration;

use super::upload::UploadLimits;
use crate::backend::device::Precision;
use crate::backend::{BackendKind, EngineOptions};
use crate::flow::FlowMethod;
use crate::video::Limits;

/// Everything the server can be told.
#[derive(Debug, Clone, clap::Args)]
pub struct ServerConfig {
    /// Address to listen on.
    #[arg(long, env = "REVSTREAM_ADDRESS", default_value = "0.0.0.0")]
    pub address: String,
    /// Port to listen on (0 picks a free one).
    #[arg(long, env = "REVSTREAM_PORT", default_value_t = 8080)]
    pub port: u16,
    /// Model folders to serve (repeat or comma-separate); each is named after its folder,
    /// the first also answers to `default`.
    #[arg(
        long = "model-dir",
        env = "REVSTREAM_MODEL_DIR",
        value_delimiter = ',',
        default_value = "models/default"
    )]
    pub model_dirs: Vec<PathBuf>,
    /// Inference engine.
    #[arg(long, env = "REVSTREAM_BACKEND", value_enum, default_value = "candle")]
    pub backend: BackendKind,
    /// Device for inference: `auto` (the first GPU when the build has CUDA and one is
    /// present, else the CPU), `cpu`, `cuda` or `cuda:N`.
    #[arg(long, env = "REVSTREAM_DEVICE", default_value = "auto")]
    pub device: String,
    /// Inference precision: `f32`, or `bf16` on CUDA (refused with `--device cpu`;
    /// with `auto` on a machine without a GPU it runs f32 and logs a warning).
    #[arg(long, env = "REVSTREAM_DTYPE", value_enum, default_value = "f32")]
    pub dtype: Precision,
    /// The ONNX Runtime library (`libonnxruntime.so`) for `--backend ort`.
    #[arg(long, env = "ORT_DYLIB_PATH")]
    pub ort_library: Option<PathBuf>,
    /// Threads decoding video and computing optical flow.
    #[arg(long, env = "REVSTREAM_WORKERS", default_value_t = default_workers())]
    pub workers: usize,
    /// Videos that may wait for a free worker before requests get 429.
    #[arg(long, env = "REVSTREAM_WORKER_QUEUE", default_value_t = 16)]
    pub worker_queue: usize,
    /// Most samples the model runs in one batch.
    #[arg(long, env = "REVSTREAM_MAX_BATCH", default_value_t = 8)]
    pub max_batch: usize,
    /// Longest a request waits for others to fill its batch, in milliseconds.
    #[arg(long, env = "REVSTREAM_MAX_BATCH_WAIT_MS", default_value_t = 5)]
    pub max_batch_wait_ms: u64,
    /// Requests that may wait for the model before requests get 429.
    #[arg(long, env = "REVSTREAM_BATCH_QUEUE", default_value_t = 64)]
    pub batch_queue: usize,
    /// Largest accepted upload, in bytes (refused with 413 as soon as it passes).
    #[arg(long, env = "REVSTREAM_MAX_BODY_BYTES", default_value_t = 2 << 30,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub max_body_bytes: u64,
    /// Uploads up to this many bytes stay in memory; larger ones are written to a
    /// temporary file in `--upload-dir`, which FFmpeg reads.
    #[arg(long, env = "REVSTREAM_UPLOAD_MEMORY_BYTES", default_value_t = 8 << 20)]
    pub upload_memory_bytes: u64,
    /// Folder for the temporary upload files (a folder of this server's inside it,
    /// removed at shutdown); default: the system's temporary folder.
    #[arg(long, env = "REVSTREAM_UPLOAD_DIR")]
    pub upload_dir: Option<PathBuf>,
    /// Most bytes of temporary upload files at once, over every request: an upload that
    /// would pass it gets 503 `storage_full` (413 if it alone is larger).
    #[arg(long, env = "REVSTREAM_UPLOAD_DISK_BYTES", default_value_t = 8 << 30)]
    pub upload_disk_bytes: u64,
    /// Longest accepted video, in seconds.
    #[arg(long, env = "REVSTREAM_MAX_DURATION_S", default_value_t = 3600.0,
          value_parser = positive_seconds)]
    pub max_duration_s: f64,
    /// Largest accepted frame, in pixels (width x height).
    #[arg(long, env = "REVSTREAM_MAX_PIXELS", default_value_t = 3840 * 2160,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub max_pixels: u64,
    /// Prediction requests handled at once before requests get 429.
    #[arg(long, env = "REVSTREAM_MAX_CONCURRENT", default_value_t = 32)]
    pub max_concurrent: usize,
    /// Uploads being received at once before new ones get 429 (an upload holds no
    /// prediction slot while it arrives; its memory is what it has sent, up to
    /// `--upload-memory-bytes`).
    #[arg(long, env = "REVSTREAM_MAX_UPLOADS", default_value_t = 256,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub max_uploads: u64,
    /// Seconds an upload may go without receiving a byte before it is cut (408).
    #[arg(long, env = "REVSTREAM_UPLOAD_IDLE_TIMEOUT_S", default_value_t = 30.0,
          value_parser = positive_seconds)]
    pub upload_idle_timeout_s: f64,
    /// Least average upload rate in bytes per second, checked once the idle timeout has
    /// passed since the upload began (408 below it; 0 turns it off).
    #[arg(long, env = "REVSTREAM_UPLOAD_MIN_RATE", default_value_t = 4 * 1024)]
    pub upload_min_rate: u64,
    /// Longest a prediction request may take, in seconds.
    #[arg(long, env = "REVSTREAM_REQUEST_TIMEOUT_S", default_value_t = 120.0,
          value_parser = positive_seconds)]
    pub request_timeout_s: f64,
    /// Bearer API key required on /v1 routes; none means open access.
    #[arg(long, env = "REVSTREAM_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// TV-L1 preset for optical flow (default: the one the model was trained with,
    /// from its config.json, else fast).
    #[arg(long, env = "REVSTREAM_FLOW_PRESET", value_enum)]
    pub flow_preset: Option<FlowMethod>,
    /// Jobs queued or running at once before new jobs get 429.
    #[arg(long, env = "REVSTREAM_MAX_JOBS", default_value_t = 8)]
    pub max_jobs: usize,
    /// Seconds a finished job's result is kept.
    #[arg(long, env = "REVSTREAM_JOB_TTL_S", default_value_t = 3600)]
    pub job_ttl_s: u64,
    /// Length of a job's sliding window, in seconds.
    #[arg(long, env = "REVSTREAM_JOB_WINDOW_S", default_value_t = 2.0)]
    pub job_window_s: f64,
    /// Step between a job's windows, in seconds.
    #[arg(long, env = "REVSTREAM_JOB_STEP_S", default_value_t = 1.0)]
    pub job_step_s: f64,
}

/// A duration in seconds above zero: a limit of zero would refuse every request.
fn positive_seconds(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v > 0.0 => Ok(v),
        Ok(_) => Err("must be above 0 seconds".to_string()),
        Err(e) => Err(e.to_string()),
    }
}

fn default_workers() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}

impl ServerConfig {
    /// Defaults for everything, serving the given model folders (for tests and embedding).
    pub fn with_models(model_dirs: Vec<PathBuf>) -> Self {
        let mut config = Self::try_parse_from(["revstream-server"]).expect("the defaults parse");
        config.model_dirs = model_dirs;
        config
    }

    /// Parses a command line (program name first) and the `REVSTREAM_*` variables.
    pub fn try_parse_from<I, T>(args: I) -> Result<Self, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        use clap::Parser;
        #[derive(clap::Parser)]
        struct Wrapper {
            #[command(flatten)]
            config: ServerConfig,
        }
        Wrapper::try_parse_from(args).map(|w| w.config)
    }

    /// The engine settings backends are loaded with.
    pub fn engine(&self) -> EngineOptions {
        EngineOptions {
            backend: self.backend,
            device: self.device.clone(),
            precision: self.dtype,
            ort_library: self.ort_library.clone(),
            max_batch: self.max_batch,
        }
    }

    /// Decoding limits for uploads.
    pub fn limits(&self) -> Limits {
        Limits {
            max_bytes: self.max_body_bytes,
            max_pixels: self.max_pixels,
            max_duration_s: self.max_duration_s,
            ..Limits::default()
        }
    }

    /// How much and how slowly a client may upload.
    pub fn upload_limits(&self) -> UploadLimits {
        UploadLimits {
            max_bytes: self.max_body_bytes,
            idle: Duration::try_from_secs_f64(self.upload_idle_timeout_s).unwrap_or(Duration::MAX),
            min_rate: self.upload_min_rate,
        }
    }

    /// The per-request timeout.
    pub fn request_timeout(&self) -> Duration {
        Duration::try_from_secs_f64(self.request_timeout_s).unwrap_or(Duration::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::ServerConfig;

    #[test]
    fn limits_that_would_refuse_every_request_are_refused_at_start() {
        for (flag, value) in [
            ("--max-body-bytes", "0"),
            ("--max-pixels", "0"),
            ("--max-duration-s", "0"),
            ("--request-timeout-s", "0"),
            ("--request-timeout-s", "-2"),
            ("--request-timeout-s", "nan"),
        ] {
            let parsed =
                ServerConfig::try_parse_from(["revstream-server", &format!("{flag}={value}")]);
            assert!(parsed.is_err(), "{flag}={value} was accepted");
        }
        let ok =
            ServerConfig::try_parse_from(["revstream-server", "--request-timeout-s=0.5"]).unwrap();
        assert_eq!(ok.request_timeout().as_millis(), 500);
    }
}
