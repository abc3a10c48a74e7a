//! The trainer and the server prepare the same video into the same input tensors: the
//! trainer through its cache and an evaluation batch (centred positions, no augmentation),
//! the server through its pipeline. Any drift between the two (normalisation, positions,
//! resizing, flow quantisation) would make a model see in serving what it never saw in
//! training.

#[allow(dead_code)] // the helpers other tests use
#[path = "common/videos.rs"]
mod videos;

use revstream::artifact::{ModelFolder, ModelSpec, PreprocessingSpec};
use revstream::flow::FlowMethod;
use revstream::model::Config;
use revstream::pipeline::Cancel;
use revstream::pipeline::preparation::Preparation;
use revstream::train::augment::Transform;
use revstream::train::batch::{self, InputSpec};
use revstream::train::cache::{self, CacheSettings};
use revstream::video::{Limits, Video};

fn spec(mean: [f32; 3], std: [f32; 3], flow_fps: Option<f64>, supersample: u32) -> ModelSpec {
    let cfg = Config {
        input_size: 32,
        frames: 4,
        flow_stack: 2,
        ..Config::tiny(2)
    };
    ModelSpec {
        architecture: cfg,
        preprocessing: PreprocessingSpec {
            mean,
            std,
            flow_bound: 8.0,
            flow_fps,
            flow_preset: Some(FlowMethod::Fast),
            flow_supersample: supersample,
            ..PreprocessingSpec::default()
        },
        labels: vec!["a".into(), "b".into()],
    }
}

/// Asserts both sides' RGB and flow tensors for `path` are equal to the bit.
fn assert_same_inputs(path: &std::path::Path, spec: &ModelSpec) {
    // The trainer: the cached video, T centred positions, the identity transform.
    let settings = CacheSettings::for_model(spec, None);
    let cached = cache::build_video(path, &settings).unwrap();
    let input = InputSpec::of(spec);
    let starts = batch::positions(cached.frames, input.frames, input.flow_stack, None);
    let (mut rgb, mut flow) = (Vec::new(), Vec::new());
    let identity = Transform::identity(input.size);
    batch::push_sample(&cached, &input, &starts, &identity, &mut rgb, &mut flow);
    let (train_rgb, train_flow) = batch::to_tensors(rgb, flow, 1, &input).unwrap();

    // The server: the pipeline a request for this model's folder runs.
    let preparation = Preparation::for_folder(&ModelFolder::Native(spec.clone()), None, None);
    let mut video = Video::open(path, &Limits::default()).unwrap();
    let frames = video.info().frames;
    let served = preparation
        .prepare(&mut video, (0, frames), 1, &Cancel::default())
        .unwrap();

    assert_eq!(served.rgb.dims(), train_rgb.dims());
    assert_eq!(served.flow.dims(), train_flow.dims());
    let values = |t: &candle_core::Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let (a, b) = (values(&served.rgb), values(&train_rgb));
    let rgb_diffs = a.iter().zip(&b).filter(|(x, y)| x != y).count();
    let (a, b) = (values(&served.flow), values(&train_flow));
    let flow_diffs = a.iter().zip(&b).filter(|(x, y)| x != y).count();
    assert_eq!(
        (rgb_diffs, flow_diffs),
        (0, 0),
        "values that differ between serving and training (RGB, flow) for {}",
        path.display()
    );
    // The flow is not trivially equal: the clip moves.
    assert!(
        a.iter().any(|&v| v.abs() > 0.05),
        "no motion in {}",
        path.display()
    );
}

#[test]
fn trainer_and_server_prepare_identical_tensors_for_the_same_video() {
    let dir = tempfile::tempdir().unwrap();
    // A 4:3 clip (resized and centre-cropped) with B-frames, whose 50 frames give the
    // positions fractional segment centres.
    let h264 = videos::h264_mp4(dir.path());
    let imagenet = ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225]);
    assert_same_inputs(&h264, &spec(imagenet.0, imagenet.1, None, 1));
    // Other statistics, and flow between frames 1/12.5 s apart (every second frame,
    // rescaled): the clips sit on the frames the trainer's cache keeps (they did not
    // before this test: the server centred them on every frame).
    let other = ([0.5, 0.4, 0.3], [0.25, 0.2, 0.3]);
    assert_same_inputs(&h264, &spec(other.0, other.1, Some(12.5), 1));
    // The bundled model's recipe: 12.5 fields/s, flow at twice the input size.
    assert_same_inputs(&h264, &spec(imagenet.0, imagenet.1, Some(12.5), 2));
}
