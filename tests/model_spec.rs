//! A model folder (config.json + model.safetensors) round trip, and typed errors for bad folders.

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use revstream::Error;
use revstream::model::{Config, ModelSpec, Preprocessing, StResNet, load_model, save_model};

fn spec() -> ModelSpec {
    ModelSpec {
        architecture: Config {
            frames: 2,
            ..Config::tiny(3)
        },
        preprocessing: Preprocessing::default(),
        labels: vec!["wave".into(), "run".into(), "jump".into()],
    }
}

#[test]
fn model_folder_round_trip_gives_identical_logits() {
    let spec = spec();
    let cfg = &spec.architecture;
    let vm = VarMap::new();
    let model = StResNet::new(cfg, VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu)).unwrap();
    let s = cfg.input_size;
    let rgb = Tensor::rand(0f32, 1.0, (2, cfg.frames, 3, s, s), &Device::Cpu).unwrap();
    let flow = Tensor::rand(
        -1f32,
        1.0,
        (2, cfg.frames, cfg.flow_channels(), s, s),
        &Device::Cpu,
    )
    .unwrap();
    model.forward(&rgb, &flow, true).unwrap();
    let expect = model.forward(&rgb, &flow, false).unwrap().fused;

    let dir = tempfile::tempdir().unwrap();
    save_model(dir.path(), &spec, &vm).unwrap();
    let (loaded_spec, loaded) = load_model(dir.path(), &Device::Cpu).unwrap();
    assert_eq!(loaded_spec, spec);
    let got = loaded.forward(&rgb, &flow, false).unwrap().fused;
    let diff = (got - expect).unwrap().abs().unwrap().max_all().unwrap();
    assert_eq!(diff.to_scalar::<f32>().unwrap(), 0.0);
}

#[test]
fn bad_model_folders_are_typed_errors() {
    let dir = tempfile::tempdir().unwrap();
    assert!(matches!(
        load_model(dir.path(), &Device::Cpu),
        Err(Error::Io(_))
    ));

    std::fs::write(dir.path().join("config.json"), "{ not json").unwrap();
    assert!(matches!(
        load_model(dir.path(), &Device::Cpu),
        Err(Error::Model(_))
    ));

    let mut wrong = spec();
    wrong.labels.pop();
    assert!(matches!(wrong.save(dir.path()), Err(Error::Model(_))));

    spec().save(dir.path()).unwrap();
    assert!(matches!(
        load_model(dir.path(), &Device::Cpu),
        Err(Error::Model(_))
    ));

    // Weights of another architecture.
    let vm = VarMap::new();
    let other = Config {
        base_width: 4,
        ..spec().architecture
    };
    StResNet::new(
        &other,
        VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu),
    )
    .unwrap();
    vm.save(dir.path().join("model.safetensors")).unwrap();
    assert!(matches!(
        load_model(dir.path(), &Device::Cpu),
        Err(Error::Model(_))
    ));
}
