//! `export-onnx`: writes a trained model folder's network as `model.onnx`.

use std::path::PathBuf;

use anyhow::Context;

/// Export a model folder (config.json + model.safetensors) to ONNX (opset 17).
#[derive(clap::Args, Debug)]
pub struct ExportOnnxArgs {
    /// The model folder.
    #[arg(long)]
    model: PathBuf,
    /// Where to write the ONNX file (default: `model.onnx` in the model folder).
    #[arg(long)]
    output: Option<PathBuf>,
}

/// Exports the model and logs where it went.
pub fn run(args: ExportOnnxArgs) -> anyhow::Result<()> {
    let path = revstream::onnx::export_dir(&args.model, args.output.as_deref())
        .with_context(|| format!("exporting {}", args.model.display()))?;
    let bytes = std::fs::metadata(&path)?.len();
    tracing::info!(path = %path.display(), bytes, "wrote the ONNX model");
    Ok(())
}
