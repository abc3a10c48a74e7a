//! Which kind of model a folder holds, read from its `config.json`.

use std::path::Path;

use super::external::ExternalSpec;
use super::spec::ModelSpec;

/// What a model folder holds: one of our networks, or an ONNX model made elsewhere.
#[derive(Debug, Clone, PartialEq)]
pub enum ModelFolder {
    /// A two-stream ST-ResNet with safetensors weights ([`ModelSpec`]).
    Native(ModelSpec),
    /// An external graph whose config has a `format` key ([`ExternalSpec`]).
    External(ExternalSpec),
}

impl ModelFolder {
    /// Reads and checks `dir/config.json`; configs without a `format` key are native,
    /// so every existing folder loads as before.
    pub fn load(dir: &Path) -> crate::Result<ModelFolder> {
        let path = dir.join("config.json");
        let text = std::fs::read_to_string(&path)
            .map_err(|e| crate::Error::Model(format!("reading {}: {e}", path.display())))?;
        let value: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| crate::Error::Model(format!("parsing {}: {e}", path.display())))?;
        if value.get("format").is_none() {
            return ModelSpec::load(dir).map(ModelFolder::Native);
        }
        let spec: ExternalSpec = serde_json::from_value(value)
            .map_err(|e| crate::Error::Model(format!("parsing {}: {e}", path.display())))?;
        spec.validate()
            .map_err(|e| crate::Error::Model(format!("{}: {e}", path.display())))?;
        Ok(ModelFolder::External(spec))
    }

    /// Segments scored and averaged per video unless a request says otherwise.
    pub fn segments(&self) -> usize {
        match self {
            ModelFolder::Native(spec) => spec.preprocessing.segments,
            ModelFolder::External(spec) => spec.segments,
        }
    }

    /// Class labels, by index.
    pub fn labels(&self) -> &[String] {
        match self {
            ModelFolder::Native(spec) => &spec.labels,
            ModelFolder::External(spec) => &spec.labels,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::artifact::spec::tests::spec;

    #[test]
    fn a_folder_is_native_unless_its_config_names_a_format() {
        let dir = tempfile::tempdir().unwrap();
        let spec = spec(2);
        spec.save(dir.path()).unwrap();
        assert_eq!(
            ModelFolder::load(dir.path()).unwrap(),
            ModelFolder::Native(spec)
        );
        let external = r#"{"format": "onnx",
            "input": {"name": "x", "layout": "NTCHW", "frames": 8, "size": 64},
            "output": {"name": "y", "kind": "probabilities"}, "labels": ["a", "b"]}"#;
        std::fs::write(dir.path().join("config.json"), external).unwrap();
        let folder = ModelFolder::load(dir.path()).unwrap();
        assert!(matches!(&folder, ModelFolder::External(s) if s.input.frames == 8));
        assert_eq!(folder.labels(), ["a", "b"]);
        let unknown = external.replace(r#""onnx""#, r#""tflite""#);
        std::fs::write(dir.path().join("config.json"), unknown).unwrap();
        let err = ModelFolder::load(dir.path()).unwrap_err().to_string();
        assert!(err.contains("unknown variant `tflite`"), "{err}");
        // The bundled model's config, written before external folders existed, is native.
        let bundled = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/default");
        assert!(matches!(
            ModelFolder::load(&bundled).unwrap(),
            ModelFolder::Native(_)
        ));
    }
}
