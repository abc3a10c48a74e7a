//! `revstream-trainer flow`: TV-L1 flow of two images to a .flo file, or of every pair
//! of consecutive frames of a video to quantised JPEGs (DIR/x_00001.jpg, y_00001.jpg,
//! the two-stream convention).

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::Args;
use image::codecs::jpeg::JpegEncoder;
use indicatif::{ProgressBar, ProgressStyle};
use revstream::flow::{FlowMethod, GrayImage, encode, flo, try_tvl1};
use revstream::video::{Limits, Resize, Video};

/// Arguments of `revstream-trainer flow`.
#[derive(Args, Debug)]
pub struct FlowArgs {
    /// FRAME1 FRAME2 (images) or VIDEO.
    #[arg(required = true, num_args = 1..=2, value_name = "INPUT")]
    inputs: Vec<PathBuf>,
    /// Output: a .flo file for two images, a directory for a video.
    #[arg(short, long)]
    output: PathBuf,
    /// Parameter preset.
    #[arg(
        long,
        value_enum,
        default_value = "accurate",
        env = "REVSTREAM_FLOW_PRESET"
    )]
    preset: FlowMethod,
    /// Video frames are resized to this shorter side before flow (0: native size).
    #[arg(long, default_value_t = 256)]
    short_side: u32,
    /// JPEG flow is clipped to ±bound pixels before quantisation.
    #[arg(long, default_value_t = encode::DEFAULT_BOUND)]
    bound: f32,
    /// JPEG quality of the flow images.
    #[arg(long, default_value_t = 95, value_parser = clap::value_parser!(u8).range(1..=100))]
    quality: u8,
}

/// Runs the subcommand.
pub fn run(args: FlowArgs) -> anyhow::Result<()> {
    if !(args.bound.is_finite() && args.bound > 0.0) {
        bail!("--bound must be a positive number of pixels");
    }
    match &args.inputs[..] {
        [a, b] => flow_of_images(a, b, &args),
        [video] => flow_of_video(video, &args),
        _ => bail!("give two images or one video"),
    }
}

fn load_gray(path: &Path) -> anyhow::Result<GrayImage> {
    let img = image::open(path)
        .with_context(|| format!("reading image {}", path.display()))?
        .to_rgb8();
    let (w, h) = (img.width() as usize, img.height() as usize);
    Ok(GrayImage::try_from_rgb(img.as_raw(), w, h)?)
}

fn flow_of_images(first: &Path, second: &Path, args: &FlowArgs) -> anyhow::Result<()> {
    let (prev, next) = (load_gray(first)?, load_gray(second)?);
    let flow = try_tvl1(&prev, &next, &args.preset.params())?;
    flo::write(&args.output, &flow)
        .with_context(|| format!("writing {}", args.output.display()))?;
    tracing::info!(output = %args.output.display(), width = flow.width, height = flow.height, "flow written");
    Ok(())
}

fn flow_of_video(path: &Path, args: &FlowArgs) -> anyhow::Result<()> {
    let mut video = Video::open(path, &Limits::default())
        .with_context(|| format!("opening {}", path.display()))?;
    let resize = Resize {
        short_side: args.short_side,
        crop: None,
    };
    let frames = video
        .decode_all(&resize)
        .with_context(|| format!("decoding {}", path.display()))?;
    if frames.len() < 2 {
        bail!(
            "{} has {} frame(s): flow needs two",
            path.display(),
            frames.len()
        );
    }
    std::fs::create_dir_all(&args.output)
        .with_context(|| format!("creating {}", args.output.display()))?;
    let params = args.preset.params();
    let bar = ProgressBar::new(frames.len() as u64 - 1).with_style(ProgressStyle::with_template(
        "{prefix} {bar:40} {pos}/{len} pairs [{elapsed} < {eta}]",
    )?);
    bar.set_prefix("flow");
    let gray = |f: &revstream::video::RgbFrame| {
        GrayImage::try_from_rgb(&f.data, f.width as usize, f.height as usize)
    };
    let mut prev = gray(&frames[0])?;
    for (i, frame) in frames.iter().enumerate().skip(1) {
        let next = gray(frame)?;
        let flow = try_tvl1(&prev, &next, &params)?;
        let (x, y) = encode::quantize(&flow, args.bound);
        for (name, channel) in [("x", x), ("y", y)] {
            let out = args.output.join(format!("{name}_{i:05}.jpg"));
            write_jpeg(&out, &channel, flow.width, flow.height, args.quality)?;
        }
        prev = next;
        bar.inc(1);
    }
    bar.finish();
    tracing::info!(pairs = frames.len() - 1, output = %args.output.display(), "flow images written");
    Ok(())
}

fn write_jpeg(
    path: &Path,
    luma: &[u8],
    width: usize,
    height: usize,
    quality: u8,
) -> anyhow::Result<()> {
    let file =
        std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let mut out = std::io::BufWriter::new(file);
    JpegEncoder::new_with_quality(&mut out, quality).encode(
        luma,
        width as u32,
        height as u32,
        image::ExtendedColorType::L8,
    )?;
    Ok(())
}
