//! Where a video's timeline windows fall.

/// The sliding windows `(start_s, end_s)` over a video of `duration_s` seconds.
pub fn windows(duration_s: f64, window_s: f64, step_s: f64) -> Vec<(f64, f64)> {
    if duration_s <= window_s || window_s <= 0.0 || step_s <= 0.0 {
        return vec![(0.0, duration_s.max(0.0))];
    }
    let count = ((duration_s - window_s) / step_s - 1e-9).ceil() as usize + 1;
    (0..count)
        .map(|i| {
            let start = (i as f64 * step_s).min(duration_s - window_s);
            (start, start + window_s)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::windows;

    #[test]
    fn windows_cover_the_video() {
        assert_eq!(windows(1.5, 2.0, 1.0), vec![(0.0, 1.5)]);
        assert_eq!(
            windows(4.0, 2.0, 1.0),
            vec![(0.0, 2.0), (1.0, 3.0), (2.0, 4.0)]
        );
        // The last window ends at the video's end even when the step does not divide it.
        assert_eq!(windows(4.5, 2.0, 1.0).last(), Some(&(2.5, 4.5)));
    }
}
