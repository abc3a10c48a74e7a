//! The analyses' PNG charts. Like `train::plots` they carry no text (plotters is built
//! without fonts): axes, a grid of tenths, coloured series; each analysis documents what
//! its colours mean.

use std::path::Path;

use plotters::prelude::*;

use super::error::{AnalysisError, Result};

/// How a series is drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    /// Connected points.
    Line,
    /// Vertical bars from 0, centred on each x, a fifth of a unit wide on each side.
    Bars,
}

/// One coloured series, optionally with ± error bars.
#[derive(Debug, Clone)]
pub struct Series {
    /// (x, y) points.
    pub points: Vec<(f64, f64)>,
    /// Half-height of an error bar at each point.
    pub spread: Option<Vec<f64>>,
    /// Colour.
    pub colour: RGBColor,
    /// Line or bars.
    pub style: Style,
}

impl Series {
    /// A line series without error bars.
    pub fn line(points: Vec<(f64, f64)>, colour: RGBColor) -> Self {
        Self {
            points,
            spread: None,
            colour,
            style: Style::Line,
        }
    }

    /// A bar series.
    pub fn bars(points: Vec<(f64, f64)>, colour: RGBColor) -> Self {
        Self {
            style: Style::Bars,
            ..Self::line(points, colour)
        }
    }
}

fn plot_err(path: &Path) -> impl Fn(&dyn std::fmt::Display) -> AnalysisError + '_ {
    move |e| AnalysisError::Plot {
        path: path.display().to_string(),
        message: e.to_string(),
    }
}

/// Draws `series` over x in `x_range`, y from 0 to `y_max` (at least the data's maximum).
pub fn chart(path: &Path, x_range: (f64, f64), y_max: f64, series: &[Series]) -> Result<()> {
    let err = plot_err(path);
    let top = series
        .iter()
        .flat_map(|s| {
            s.points.iter().enumerate().map(|(i, p)| {
                p.1 + s
                    .spread
                    .as_ref()
                    .and_then(|d| d.get(i))
                    .copied()
                    .unwrap_or(0.0)
            })
        })
        .fold(y_max, f64::max)
        .max(1e-9);
    let (x0, x1) = x_range;
    let root = BitMapBackend::new(path, (640, 400)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let mut chart = ChartBuilder::on(&root)
        .margin(20)
        .build_cartesian_2d(x0..x1, 0.0..top)
        .map_err(|e| err(&e))?;
    let grid = RGBColor(220, 220, 220);
    for i in 0..=10 {
        let x = x0 + (x1 - x0) * i as f64 / 10.0;
        let y = top * i as f64 / 10.0;
        chart
            .draw_series(LineSeries::new([(x, 0.0), (x, top)], grid))
            .map_err(|e| err(&e))?;
        chart
            .draw_series(LineSeries::new([(x0, y), (x1, y)], grid))
            .map_err(|e| err(&e))?;
    }
    for axis in [[(x0, 0.0), (x1, 0.0)], [(x0, 0.0), (x0, top)]] {
        chart
            .draw_series(LineSeries::new(axis, BLACK))
            .map_err(|e| err(&e))?;
    }
    for s in series {
        match s.style {
            Style::Line => chart
                .draw_series(LineSeries::new(
                    s.points.iter().copied(),
                    s.colour.stroke_width(2),
                ))
                .map(|_| ()),
            Style::Bars => chart
                .draw_series(s.points.iter().map(|&(x, y)| {
                    Rectangle::new([(x - 0.2, 0.0), (x + 0.2, y)], s.colour.mix(0.6).filled())
                }))
                .map(|_| ()),
        }
        .map_err(|e| err(&e))?;
        for (&(x, y), &d) in s.points.iter().zip(s.spread.iter().flatten()) {
            chart
                .draw_series(LineSeries::new([(x, y - d), (x, y + d)], s.colour))
                .map_err(|e| err(&e))?;
        }
    }
    root.present().map_err(|e| err(&e))
}

/// Draws a matrix of values in [0, 1] as a heat map (white 0, dark blue 1, grey: none),
/// row 0 at the top.
pub fn heatmap(path: &Path, matrix: &[Vec<Option<f64>>]) -> Result<()> {
    let err = plot_err(path);
    let n = matrix.len().max(1);
    let cell = (480 / n).max(8) as i32;
    let side = cell as u32 * n as u32;
    let root = BitMapBackend::new(path, (side + 20, side + 20)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    for (r, row) in matrix.iter().enumerate() {
        for (c, value) in row.iter().enumerate() {
            let colour = match value {
                Some(f) => {
                    let f = f.clamp(0.0, 1.0);
                    let shade = |full: f64| (255.0 - (255.0 - full) * f) as u8;
                    RGBColor(shade(20.0), shade(50.0), shade(160.0))
                }
                None => RGBColor(190, 190, 190),
            };
            let (x, y) = (10 + c as i32 * cell, 10 + r as i32 * cell);
            root.draw(&Rectangle::new(
                [(x, y), (x + cell - 1, y + cell - 1)],
                colour.filled(),
            ))
            .map_err(|e| err(&e))?;
        }
    }
    root.present().map_err(|e| err(&e))
}
