//! Spawns the real server in-process on 127.0.0.1:0 with a real (untrained, seeded)
//! tiny model, and makes its test videos with the ffmpeg CLI.

use std::path::{Path, PathBuf};
use std::time::Duration;

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use rand::{Rng, SeedableRng};
use revstream::artifact::{ModelSpec, PreprocessingSpec};
use revstream::model::{Config, StResNet};
use revstream::server::{self, AppState, ServerConfig};
use tempfile::TempDir;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

use super::videos::make_testsrc;

/// The labels of the test model.
pub const LABELS: [&str; 3] = ["waving", "walking", "jumping"];

/// Writes a model folder `dir/name` for `Config::tiny`, its weights freshly initialised
/// and then redrawn from a seeded RNG with each tensor's own mean and spread.
pub fn tiny_model(dir: &Path, name: &str, seed: u64) -> PathBuf {
    let folder = dir.join(name);
    std::fs::create_dir_all(&folder).unwrap();
    let config = Config::tiny(LABELS.len());
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
    StResNet::new(&config, vb).unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let vars = varmap.data().lock().unwrap();
    let mut names: Vec<_> = vars.keys().cloned().collect();
    names.sort();
    for name in names {
        let var = &vars[&name];
        let values: Vec<f32> = var.flatten_all().unwrap().to_vec1().unwrap();
        let n = values.len() as f32;
        let mean = values.iter().sum::<f32>() / n;
        let std = (values.iter().map(|v| (v - mean).powi(2)).sum::<f32>() / n).sqrt();
        // Uniform on ±√3·std has the tensor's standard deviation.
        let spread = 3f32.sqrt() * std;
        let drawn: Vec<f32> = (0..values.len())
            .map(|_| mean + spread * rng.random_range(-1.0f32..=1.0))
            .collect();
        var.set(&Tensor::from_vec(drawn, var.shape(), &Device::Cpu).unwrap())
            .unwrap();
    }
    drop(vars);
    varmap.save(folder.join("model.safetensors")).unwrap();
    let spec = ModelSpec {
        architecture: config,
        preprocessing: PreprocessingSpec::default(),
        labels: LABELS.iter().map(|s| s.to_string()).collect(),
    };
    spec.save(&folder).unwrap();
    folder
}

/// A small H.264 MP4 of a moving test pattern.
pub fn test_video(dir: &Path, name: &str, seconds: f64, size: (u32, u32)) -> Vec<u8> {
    let codec = ["-c:v", "libx264", "-pix_fmt", "yuv420p"];
    std::fs::read(make_testsrc(dir, name, size, 10, seconds, &codec)).unwrap()
}

/// A server running in this process.
pub struct TestServer {
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    /// A client for it.
    pub client: reqwest::Client,
    /// The handlers' shared state (for its metrics and models).
    pub state: AppState,
    /// Where the model and videos live.
    pub dir: TempDir,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl TestServer {
    /// Starts a server on a tiny seeded model, after `configure` adjusts the settings;
    /// waits until the model is ready.
    pub async fn start(configure: impl FnOnce(&mut ServerConfig)) -> TestServer {
        Self::start_with_models(|dir| vec![tiny_model(dir, "tiny", 7)], configure).await
    }

    /// Starts a server on the model folders `models` makes; waits until they are ready.
    pub async fn start_with_models(
        models: impl FnOnce(&Path) -> Vec<PathBuf>,
        configure: impl FnOnce(&mut ServerConfig),
    ) -> TestServer {
        let server = Self::start_unready(models, configure).await;
        server
            .state
            .models
            .wait_loaded()
            .await
            .expect("the models load");
        server
    }

    /// Starts a server on the model folders `models` makes, without waiting for them.
    pub async fn start_unready(
        models: impl FnOnce(&Path) -> Vec<PathBuf>,
        configure: impl FnOnce(&mut ServerConfig),
    ) -> TestServer {
        let dir = tempfile::tempdir().unwrap();
        let mut config = ServerConfig::with_models(models(dir.path()));
        config.workers = 2;
        configure(&mut config);
        let state = AppState::new(config).expect("server state");
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (shutdown, stop) = oneshot::channel::<()>();
        let task = tokio::spawn(server::serve(listener, state.clone(), async {
            let _ = stop.await;
        }));
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(120))
            .build()
            .unwrap();
        TestServer {
            base,
            client,
            state,
            dir,
            shutdown: Some(shutdown),
            task: Some(task),
        }
    }

    /// The absolute URL of `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// GETs `path` and parses its JSON body.
    pub async fn get_json(&self, path: &str) -> serde_json::Value {
        let response = self.client.get(self.url(path)).send().await.unwrap();
        response.json().await.unwrap()
    }

    /// POSTs `bytes` as an MP4 body to `path`.
    pub async fn post_video(&self, path: &str, bytes: Vec<u8>) -> reqwest::Response {
        self.client
            .post(self.url(path))
            .header("content-type", "video/mp4")
            .body(bytes)
            .send()
            .await
            .unwrap()
    }

    /// Asks the server to stop and waits until it has finished its requests.
    pub async fn stop(mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.unwrap().unwrap();
        }
    }
}

/// Reads an error response, checking its status and `{error, kind}` body.
pub async fn expect_error(
    response: reqwest::Response,
    status: u16,
    kind: &str,
) -> serde_json::Value {
    assert_eq!(response.status().as_u16(), status, "status for kind {kind}");
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["kind"], kind, "{body}");
    assert!(
        body["error"].as_str().is_some_and(|e| !e.is_empty()),
        "{body}"
    );
    body
}
