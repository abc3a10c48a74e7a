//! The bundled default model through the real server: MotionShapes clips it never saw
//! (a seed no training or test split used), rendered and encoded to H.264 as a user's
//! upload would be, come back with their class on top.
//!
//! The bound follows `models/default/README.md` (over 90 % top-1 on its 200-clip test
//! split through the trainer's cache): 3 clips per class here, through the server's own
//! decode and flow path, must reach 80 % top-1 and 90 % top-3 (chance 10 % and 30 %).
//! The server must also prepare inputs as the folder's `config.json` says.

mod common;

use std::path::Path;

use common::server::TestServer;
use revstream::train::synth::{self, LABELS, SynthOptions};
use serde_json::Value;

const SEED: u64 = 9_001;
const CLIPS_PER_CLASS: usize = 3;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn motion_classes_are_recognised_by_the_default_model() {
    let default = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/default");
    let server = TestServer::start_with_models(|_| vec![default.clone()], |_| {}).await;
    let config: Value =
        serde_json::from_slice(&std::fs::read(default.join("config.json")).unwrap()).unwrap();
    let info = server.get_json("/v1/models/default").await;
    let pre = &config["preprocessing"];
    assert_eq!(info["input"]["flow_supersample"], pre["flow_supersample"]);
    assert_eq!(info["input"]["preset"], pre["flow_preset"]);
    assert_eq!(info["input"]["frames"], config["architecture"]["frames"]);
    assert_eq!(
        info["input"]["flow_stack"],
        config["architecture"]["flow_stack"]
    );
    let opts = SynthOptions::default();
    let mut correct = 0;
    let mut in_top3 = 0;
    let mut total = 0;
    for (class, label) in LABELS.iter().enumerate() {
        for index in 0..CLIPS_PER_CLASS {
            let seed = synth::clip_seed(SEED, class, index);
            let frames = synth::render_clip(class, &opts, seed);
            let path = server.dir.path().join(format!("{label}_{index}.mp4"));
            synth::write_h264(&path, &frames, opts.width, opts.height, opts.fps, 23).unwrap();
            let response = server
                .post_video("/v1/predict?top_k=3", std::fs::read(&path).unwrap())
                .await;
            assert_eq!(response.status(), 200);
            let body: Value = response.json().await.unwrap();
            let top: Vec<&str> = body["predictions"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| p["label"].as_str().unwrap())
                .collect();
            if top[0] != *label {
                eprintln!("{label} {index}: predicted {top:?}");
            }
            total += 1;
            correct += usize::from(top[0] == *label);
            in_top3 += usize::from(top.contains(label));
        }
    }
    let top1 = correct as f64 / total as f64;
    let top3 = in_top3 as f64 / total as f64;
    eprintln!("all classes: top-1 {top1:.2}, top-3 {top3:.2} over {total} clips");
    assert!(top1 >= 0.8, "top-1 {top1:.2} (chance 0.10)");
    assert!(top3 >= 0.9, "top-3 {top3:.2} (chance 0.30)");
    server.stop().await;
}
