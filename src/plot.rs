//! PNG plots for the long jobs (training curves, evaluation, closed-loop trajectories), drawn
//! with plotters' bitmap backend and the embedded DejaVu Sans font (the `dejavu` crate), so no
//! system font or font library is needed.
//!
//! A figure is a row of [`Panel`]s, each with named [`Series`] of `(x, y)` points in the units
//! its axis labels give. Non-finite points are dropped.

use std::path::Path;
use std::sync::Once;

use plotters::prelude::*;
use thiserror::Error;

/// How a series is drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mark {
    /// A polyline through the points in order.
    Line,
    /// A dot at every point.
    Dots,
}

/// One named data series: `(x, y)` points.
#[derive(Debug, Clone)]
pub struct Series {
    /// Legend entry (empty: no legend entry).
    pub name: String,
    /// Points `(x, y)`.
    pub points: Vec<(f64, f64)>,
    /// Line or dots.
    pub mark: Mark,
}

impl Series {
    /// A line series.
    pub fn line(name: impl Into<String>, points: Vec<(f64, f64)>) -> Self {
        Self { name: name.into(), points, mark: Mark::Line }
    }

    /// A dot series.
    pub fn dots(name: impl Into<String>, points: Vec<(f64, f64)>) -> Self {
        Self { name: name.into(), points, mark: Mark::Dots }
    }
}

/// One chart of a figure.
#[derive(Debug, Clone)]
pub struct Panel {
    /// Title above the chart.
    pub title: String,
    /// x-axis label (with units).
    pub x_label: String,
    /// y-axis label (with units).
    pub y_label: String,
    /// Plot log10(y) instead of y (positive values only; the label says so).
    pub log_y: bool,
    /// The data.
    pub series: Vec<Series>,
}

impl Panel {
    /// A panel with linear axes.
    pub fn new(title: impl Into<String>, x_label: impl Into<String>, y_label: impl Into<String>, series: Vec<Series>) -> Self {
        Self { title: title.into(), x_label: x_label.into(), y_label: y_label.into(), log_y: false, series }
    }

    /// The same panel with a log10 y-axis.
    pub fn log_y(mut self) -> Self {
        self.log_y = true;
        self
    }
}

/// Plotting errors.
#[derive(Debug, Error)]
pub enum PlotError {
    /// Creating the output folder failed.
    #[error("cannot create the plot's folder {path}: {source}")]
    Io {
        /// Folder.
        path: String,
        /// Cause.
        source: std::io::Error,
    },
    /// plotters failed to draw or encode the PNG.
    #[error("cannot draw {path}: {message} (check that the path is writable and ends in .png)")]
    Draw {
        /// Output file.
        path: String,
        /// plotters' message.
        message: String,
    },
}

static FONT: Once = Once::new();

fn register_font() {
    FONT.call_once(|| {
        // both calls only parse embedded, valid TTF data
        let _ = plotters::style::register_font("sans-serif", FontStyle::Normal, dejavu::sans::regular());
        let _ = plotters::style::register_font("sans-serif", FontStyle::Bold, dejavu::sans::bold());
    });
}

const COLORS: [RGBColor; 8] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
];

/// Range of finite values with a margin; a degenerate range is widened to width 1.
fn range(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = values.filter(|v| v.is_finite()).fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| (a.min(v), b.max(v)));
    if !lo.is_finite() {
        return (0.0, 1.0);
    }
    if hi - lo < 1e-12 {
        return (lo - 0.5, hi + 0.5);
    }
    let pad = 0.04 * (hi - lo);
    (lo - pad, hi + pad)
}

/// Writes `panels` into the PNG `path` on a grid `columns` wide (row by row), each panel
/// `panel_size` pixels `(width, height)`. Creates the folder if needed.
///
/// # Errors
/// [`PlotError`] when the folder cannot be created or plotters cannot draw or write the file.
pub fn write_png(path: &Path, panels: &[Panel], panel_size: (u32, u32), columns: usize) -> Result<(), PlotError> {
    register_font();
    if let Some(d) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(d).map_err(|source| PlotError::Io { path: d.display().to_string(), source })?;
    }
    let draw_err = |e: &dyn std::fmt::Display| PlotError::Draw { path: path.display().to_string(), message: e.to_string() };
    let cols = columns.clamp(1, panels.len().max(1));
    let rows = panels.len().max(1).div_ceil(cols);
    let root = BitMapBackend::new(path, (panel_size.0 * cols as u32, panel_size.1 * rows as u32)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| draw_err(&e))?;
    for (area, panel) in root.split_evenly((rows, cols)).iter().zip(panels) {
        let tf = |y: f64| {
            if panel.log_y {
                if y > 0.0 {
                    y.log10()
                } else {
                    f64::NAN
                }
            } else {
                y
            }
        };
        let series: Vec<(&Series, Vec<(f64, f64)>)> =
            panel.series.iter().map(|s| (s, s.points.iter().map(|&(x, y)| (x, tf(y))).filter(|(x, y)| x.is_finite() && y.is_finite()).collect())).collect();
        let (x0, x1) = range(series.iter().flat_map(|(_, p)| p.iter().map(|q| q.0)));
        let (y0, y1) = range(series.iter().flat_map(|(_, p)| p.iter().map(|q| q.1)));
        let y_label = if panel.log_y { format!("log10 {}", panel.y_label) } else { panel.y_label.clone() };
        let mut chart = ChartBuilder::on(area)
            .caption(&panel.title, ("sans-serif", 16))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(x0..x1, y0..y1)
            .map_err(|e| draw_err(&e))?;
        chart.configure_mesh().x_desc(&panel.x_label).y_desc(&y_label).label_style(("sans-serif", 12)).draw().map_err(|e| draw_err(&e))?;
        let mut legend = false;
        for (i, (s, pts)) in series.iter().enumerate() {
            let color = COLORS[i % COLORS.len()];
            let drawn = match s.mark {
                Mark::Line => chart.draw_series(LineSeries::new(pts.iter().copied(), color.stroke_width(2))),
                Mark::Dots => chart.draw_series(pts.iter().map(|p| Circle::new(*p, 2, color.filled()))),
            }
            .map_err(|e| draw_err(&e))?;
            if !s.name.is_empty() {
                legend = true;
                drawn.label(s.name.clone()).legend(move |(x, y)| Rectangle::new([(x, y - 4), (x + 14, y + 4)], color.filled()));
            }
        }
        if legend {
            chart
                .configure_series_labels()
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK)
                .label_font(("sans-serif", 12))
                .position(SeriesLabelPosition::UpperRight)
                .draw()
                .map_err(|e| draw_err(&e))?;
        }
    }
    root.present().map_err(|e| draw_err(&e))?;
    log::info!("wrote {}", path.display());
    Ok(())
}
