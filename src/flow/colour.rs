//! Flow as a picture: hue for the direction, brightness for the speed (the usual HSV
//! coding of optical flow), so a person can see what the motion stream sees.

use super::Flow;

/// Packed RGB24 of `flow`, `width x height x 3` bytes: direction as hue (right red,
/// down yellow-green, left cyan, up violet), speed as brightness, full at `max` pixels.
pub fn to_rgb(flow: &Flow, max: f32) -> Vec<u8> {
    let max = if max > 0.0 { max } else { 1.0 };
    let mut out = Vec::with_capacity(flow.u.len() * 3);
    for (&u, &v) in flow.u.iter().zip(&flow.v) {
        let value = ((u * u + v * v).sqrt() / max).clamp(0.0, 1.0);
        let hue = v.atan2(u).rem_euclid(std::f32::consts::TAU) / std::f32::consts::TAU * 6.0;
        out.extend(hsv(hue, value));
    }
    out
}

/// Fully saturated HSV to RGB, `hue` in sextants (0..6), `value` 0..1.
fn hsv(hue: f32, value: f32) -> [u8; 3] {
    let x = 1.0 - (hue % 2.0 - 1.0).abs();
    let (r, g, b) = match hue as u32 {
        0 => (1.0, x, 0.0),
        1 => (x, 1.0, 0.0),
        2 => (0.0, 1.0, x),
        3 => (0.0, x, 1.0),
        4 => (x, 0.0, 1.0),
        _ => (1.0, 0.0, x),
    };
    [r, g, b].map(|c| (c * value * 255.0).round() as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn direction_is_hue_and_speed_is_brightness() {
        let flow = Flow {
            width: 4,
            height: 1,
            u: vec![2.0, 0.0, -1.0, 0.0],
            v: vec![0.0, 0.0, 0.0, -4.0],
        };
        let rgb = to_rgb(&flow, 2.0);
        assert_eq!(&rgb[0..3], &[255, 0, 0]); // right, at full speed: red
        assert_eq!(&rgb[3..6], &[0, 0, 0]); // still: black
        assert_eq!(&rgb[6..9], &[0, 128, 128]); // left, half speed: dim cyan
        assert_eq!(&rgb[9..12], &[128, 0, 255]); // up (v < 0), clipped: violet
    }
}
