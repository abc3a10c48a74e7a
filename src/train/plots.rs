//! PNG charts with plotters' bitmap backend: training curves and confusion matrices.
//!
//! plotters draws text only with a system font stack (fontconfig, freetype) or a font
//! shipped in the binary; neither is available everywhere, so charts carry no text:
//! axes, grid and coloured series only, and the series are documented beside the file.

use std::path::Path;

use plotters::prelude::*;

use crate::{Error, Result};

fn plot_err<E: std::fmt::Display>(e: E) -> Error {
    Error::InvalidArgument(format!("plot: {e}"))
}

/// Series colours, in the order series are passed.
pub const SERIES_COLOURS: [RGBColor; 4] = [BLUE, RED, GREEN, MAGENTA];

/// Draws `series` (each a list of (x, y)) as lines on one chart, y from 0 to the maximum.
pub fn line_chart(path: &Path, series: &[Vec<(f64, f64)>]) -> Result<()> {
    let root = BitMapBackend::new(path, (640, 400)).into_drawing_area();
    root.fill(&WHITE).map_err(plot_err)?;
    let xs = series.iter().flatten().map(|p| p.0);
    let x_max = xs.fold(1.0f64, f64::max);
    let y_max = series.iter().flatten().map(|p| p.1).fold(1e-6f64, f64::max) * 1.05;
    let mut chart = ChartBuilder::on(&root)
        .margin(20)
        .build_cartesian_2d(0.0..x_max, 0.0..y_max)
        .map_err(plot_err)?;
    // Ten grid lines each way: each division is a tenth of the range.
    for i in 0..=10 {
        let x = x_max * i as f64 / 10.0;
        let y = y_max * i as f64 / 10.0;
        let grid = RGBColor(220, 220, 220);
        chart
            .draw_series(LineSeries::new([(x, 0.0), (x, y_max)], grid))
            .map_err(plot_err)?;
        chart
            .draw_series(LineSeries::new([(0.0, y), (x_max, y)], grid))
            .map_err(plot_err)?;
    }
    chart
        .draw_series(LineSeries::new([(0.0, 0.0), (x_max, 0.0)], BLACK))
        .map_err(plot_err)?;
    chart
        .draw_series(LineSeries::new([(0.0, 0.0), (0.0, y_max)], BLACK))
        .map_err(plot_err)?;
    for (s, colour) in series.iter().zip(SERIES_COLOURS.iter().cycle()) {
        chart
            .draw_series(LineSeries::new(s.iter().copied(), colour.stroke_width(2)))
            .map_err(plot_err)?;
    }
    root.present().map_err(plot_err)
}

/// Draws a confusion matrix (rows: true class, columns: predicted) as a heat map,
/// each row normalised to its class count: white 0, dark blue 1.
pub fn confusion_png(path: &Path, confusion: &[Vec<usize>]) -> Result<()> {
    let n = confusion.len().max(1);
    let cell = (480 / n).max(8) as u32;
    let side = cell * n as u32;
    let root = BitMapBackend::new(path, (side + 20, side + 20)).into_drawing_area();
    root.fill(&WHITE).map_err(plot_err)?;
    for (r, row) in confusion.iter().enumerate() {
        let total = row.iter().sum::<usize>().max(1) as f64;
        for (c, &count) in row.iter().enumerate() {
            let f = count as f64 / total;
            let shade = |full: f64| (255.0 - (255.0 - full) * f) as u8;
            let colour = RGBColor(shade(20.0), shade(50.0), shade(160.0));
            let (x, y) = (10 + c as i32 * cell as i32, 10 + r as i32 * cell as i32);
            root.draw(&Rectangle::new(
                [(x, y), (x + cell as i32 - 1, y + cell as i32 - 1)],
                colour.filled(),
            ))
            .map_err(plot_err)?;
        }
    }
    root.present().map_err(plot_err)
}
