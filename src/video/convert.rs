//! Decoded frame → resized, rotated, centre-cropped packed RGB24.

use ffmpeg::ffi;
use ffmpeg::format::Pixel;
use ffmpeg::software::scaling;
use ffmpeg::util::frame;
use ffmpeg_next as ffmpeg;

use super::{Resize, RgbFrame, VideoError};

/// Converts frames of one video with a cached swscale context.
pub(crate) struct Converter {
    resize: Resize,
    rotation: i32,
    /// Largest resized frame area allowed (an extreme aspect ratio could ask for a huge one).
    max_pixels: u64,
    /// Source format and size the cached context was made for.
    key: Option<(Pixel, u32, u32)>,
    sws: Option<scaling::Context>,
    scaled: frame::Video,
}

impl Converter {
    pub fn new(resize: Resize, rotation: i32, max_pixels: u64) -> Self {
        Converter {
            resize,
            rotation,
            max_pixels,
            key: None,
            sws: None,
            scaled: frame::Video::empty(),
        }
    }

    /// Displayed size after rotation.
    fn rotated(&self, w: u32, h: u32) -> (u32, u32) {
        if self.rotation % 180 == 0 {
            (w, h)
        } else {
            (h, w)
        }
    }

    /// Size (displayed orientation) the frame is scaled to before cropping.
    fn scaled_size(&self, dw: u32, dh: u32) -> (u32, u32) {
        let s = self.resize.short_side;
        let (mut w, mut h) = if s == 0 {
            (dw, dh)
        } else if dw <= dh {
            (
                s,
                ((dh as f64 * s as f64 / dw as f64).round() as u32).max(1),
            )
        } else {
            (
                ((dw as f64 * s as f64 / dh as f64).round() as u32).max(1),
                s,
            )
        };
        if let Some((cw, ch)) = self.resize.crop
            && (cw > w || ch > h)
        {
            let f = (cw as f64 / w as f64).max(ch as f64 / h as f64);
            w = ((w as f64 * f).round() as u32).max(cw);
            h = ((h as f64 * f).round() as u32).max(ch);
        }
        (w, h)
    }

    /// Converts one decoded frame.
    pub fn convert(&mut self, src: &frame::Video, pts_s: f64) -> Result<RgbFrame, VideoError> {
        let (w, h) = (src.width(), src.height());
        if w == 0 || h == 0 {
            return Err(VideoError::Corrupt("a decoded frame has no pixels".into()));
        }
        let (dw, dh) = self.rotated(w, h);
        let (sw_d, sh_d) = self.scaled_size(dw, dh);
        if u64::from(sw_d) * u64::from(sh_d) > self.max_pixels {
            return Err(VideoError::OverLimit(format!(
                "resizing {dw}x{dh} frames as asked would make them {sw_d}x{sh_d} pixels"
            )));
        }
        // Scale in coded orientation, rotate the (smaller) RGB result afterwards.
        let (sw, sh) = self.rotated(sw_d, sh_d);
        let key = (src.format(), w, h);
        if self.key != Some(key) || self.scaled.width() != sw || self.scaled.height() != sh {
            let mut sws = scaling::Context::get(
                src.format(),
                w,
                h,
                Pixel::RGB24,
                sw,
                sh,
                scaling::Flags::BILINEAR,
            )
            .map_err(|e| {
                VideoError::UnsupportedCodec(format!(
                    "pixel format {:?} cannot be converted: {e}",
                    src.format()
                ))
            })?;
            set_colorspace(&mut sws, src);
            self.sws = Some(sws);
            self.key = Some(key);
            self.scaled = frame::Video::new(Pixel::RGB24, sw, sh);
        }
        let sws = self.sws.as_mut().expect("context created above");
        sws.run(src, &mut self.scaled).map_err(|e| {
            VideoError::Corrupt(format!("a frame could not be converted to RGB: {e}"))
        })?;
        Ok(self.rotate_crop(pts_s))
    }

    /// Copies the scaled frame into a packed buffer, rotated and centre-cropped.
    fn rotate_crop(&self, pts_s: f64) -> RgbFrame {
        let (sw, sh) = (self.scaled.width() as usize, self.scaled.height() as usize);
        let (dw, dh) = self.rotated(sw as u32, sh as u32);
        let (cw, ch) = self.resize.crop.unwrap_or((dw, dh));
        let (cw, ch) = (cw.min(dw) as usize, ch.min(dh) as usize);
        let (x0, y0) = ((dw as usize - cw) / 2, (dh as usize - ch) / 2);
        let stride = self.scaled.stride(0);
        let src = self.scaled.data(0);
        let mut data = vec![0u8; cw * ch * 3];
        if self.rotation == 0 {
            for (y, row) in data.chunks_exact_mut(cw * 3).enumerate() {
                let start = (y0 + y) * stride + x0 * 3;
                row.copy_from_slice(&src[start..start + cw * 3]);
            }
        } else {
            for (y, row) in data.chunks_exact_mut(cw * 3).enumerate() {
                let dy = y0 + y;
                for (x, px) in row.chunks_exact_mut(3).enumerate() {
                    let dx = x0 + x;
                    let (sx, sy) = match self.rotation {
                        90 => (dy, sh - 1 - dx),
                        180 => (sw - 1 - dx, sh - 1 - dy),
                        _ => (sw - 1 - dy, dx),
                    };
                    let at = sy * stride + sx * 3;
                    px.copy_from_slice(&src[at..at + 3]);
                }
            }
        }
        RgbFrame {
            width: cw as u32,
            height: ch as u32,
            pts_s,
            data,
        }
    }
}

/// Uses the frame's YUV matrix and range, as the ffmpeg CLI's scale filter does;
/// swscale alone would assume BT.601 limited range.
fn set_colorspace(sws: &mut scaling::Context, src: &frame::Video) {
    let Some(desc) = src.format().descriptor() else {
        return;
    };
    if desc.nb_components() < 3 || is_rgb(src.format()) {
        return;
    }
    let space = match src.color_space() {
        ffmpeg::color::Space::Unspecified | ffmpeg::color::Space::Reserved => ffi::SWS_CS_DEFAULT,
        s => ffi::AVColorSpace::from(s) as i32,
    };
    let full = src.color_range() == ffmpeg::color::Range::JPEG
        || matches!(
            src.format(),
            Pixel::YUVJ420P | Pixel::YUVJ422P | Pixel::YUVJ444P | Pixel::YUVJ440P | Pixel::YUVJ411P
        );
    // SAFETY: the context is valid; the coefficient tables are static.
    unsafe {
        let table = ffi::sws_getCoefficients(space);
        let rgb = ffi::sws_getCoefficients(ffi::SWS_CS_DEFAULT);
        ffi::sws_setColorspaceDetails(
            sws.as_mut_ptr(),
            table,
            full as i32,
            rgb,
            1,
            0,
            1 << 16,
            1 << 16,
        );
    }
}

fn is_rgb(format: Pixel) -> bool {
    // SAFETY: av_pix_fmt_desc_get returns null or a static descriptor.
    unsafe {
        let desc = ffi::av_pix_fmt_desc_get(format.into());
        !desc.is_null() && (*desc).flags & ffi::AV_PIX_FMT_FLAG_RGB as u64 != 0
    }
}
