//! Drawing on packed RGB24 frames: filled boxes, text in an 8x8 bitmap font (font8x8),
//! and pictures pasted in, for videos rendered with what the model saw.

/// A packed RGB24 image being drawn on.
pub struct Canvas<'a> {
    /// `width * height * 3` bytes, row-major.
    pub data: &'a mut [u8],
    /// Width in pixels.
    pub width: usize,
    /// Height in pixels.
    pub height: usize,
}

impl Canvas<'_> {
    /// Fills the box at `(x, y)` of `w x h` (clipped to the image) with `colour`.
    pub fn fill(&mut self, (x, y): (usize, usize), (w, h): (usize, usize), colour: [u8; 3]) {
        for row in y..(y + h).min(self.height) {
            for col in x..(x + w).min(self.width) {
                let at = (row * self.width + col) * 3;
                self.data[at..at + 3].copy_from_slice(&colour);
            }
        }
    }

    /// Writes `text` (ASCII; other characters as `?`) with its top left at `(x, y)`, each
    /// glyph 8 x 8 pixels times `scale`; returns the width drawn.
    pub fn text(
        &mut self,
        (x, y): (usize, usize),
        text: &str,
        scale: usize,
        colour: [u8; 3],
    ) -> usize {
        let scale = scale.max(1);
        for (i, c) in text.chars().enumerate() {
            let glyph = font8x8::legacy::BASIC_LEGACY[if c.is_ascii() {
                c as usize
            } else {
                b'?' as usize
            }];
            for (gy, bits) in glyph.iter().enumerate() {
                for gx in 0..8 {
                    if bits >> gx & 1 == 1 {
                        let at = (x + (i * 8 + gx) * scale, y + gy * scale);
                        self.fill(at, (scale, scale), colour);
                    }
                }
            }
        }
        text.chars().count() * 8 * scale
    }

    /// Pastes `src` (packed RGB24, `w x h`) enlarged `scale` times (nearest neighbour)
    /// with its top left at `(x, y)`, clipped to the image.
    pub fn paste(
        &mut self,
        (x, y): (usize, usize),
        src: &[u8],
        (w, h): (usize, usize),
        scale: usize,
    ) {
        let scale = scale.max(1);
        for sy in 0..h * scale {
            let row = y + sy;
            if row >= self.height {
                break;
            }
            for sx in 0..w * scale {
                let col = x + sx;
                if col >= self.width {
                    break;
                }
                let from = ((sy / scale) * w + sx / scale) * 3;
                let at = (row * self.width + col) * 3;
                self.data[at..at + 3].copy_from_slice(&src[from..from + 3]);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_lights_the_glyphs_pixels_and_nothing_past_the_image() {
        let mut data = vec![0u8; 20 * 10 * 3];
        let mut canvas = Canvas {
            data: &mut data,
            width: 20,
            height: 10,
        };
        // "I" in font8x8 lights columns 1..=4 of its first row... and the canvas clips "II".
        let drawn = canvas.text((0, 0), "II", 2, [255, 255, 255]);
        assert_eq!(drawn, 32);
        let lit = data.chunks_exact(3).filter(|p| p[0] == 255).count();
        assert!(lit > 0 && lit < 200, "{lit}");
        let mut data = vec![0u8; 4 * 4 * 3];
        Canvas {
            data: &mut data,
            width: 4,
            height: 4,
        }
        .paste((2, 2), &[9, 9, 9], (1, 1), 3);
        let pasted: Vec<usize> = (0..16).filter(|i| data[i * 3] == 9).collect();
        assert_eq!(pasted, vec![10, 11, 14, 15]);
    }
}
