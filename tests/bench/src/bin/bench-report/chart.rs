//! The one line chart both reports draw: a metric against a count of
//! sessions or players on a log x axis, one line per path and variant.

use std::path::{Path, PathBuf};

use plotters::prelude::*;

use super::{color, plot_err};

/// One line of a chart: the path measured, its variant (the loop or the
/// flow), whether it is the bold one of its path, and its points.
pub(crate) struct Line<'a> {
    pub(crate) path: &'a str,
    pub(crate) label: String,
    pub(crate) bold: bool,
    pub(crate) points: Vec<(f64, f64)>,
}

/// Draws `lines` into the SVG `file`, the x axis (`x_desc`) spanning `xs`.
pub(crate) fn log_x_chart(
    file: &Path,
    title: &str,
    x_desc: &str,
    xs: &[u64],
    lines: Vec<Line<'_>>,
) -> Result<PathBuf, String> {
    let ymax = lines
        .iter()
        .flat_map(|l| l.points.iter().map(|&(_, y)| y))
        .fold(0.0f64, f64::max)
        * 1.15;
    let xmin = xs.first().copied().unwrap_or(1) as f64 * 0.8;
    let xmax = xs.last().copied().unwrap_or(10) as f64 * 1.25;
    let root = SVGBackend::new(file, (760, 460)).into_drawing_area();
    root.fill(&WHITE).map_err(plot_err)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(64)
        .build_cartesian_2d((xmin..xmax).log_scale(), 0.0..ymax.max(1e-9))
        .map_err(plot_err)?;
    chart
        .configure_mesh()
        .x_desc(x_desc)
        .x_labels(8)
        .x_label_formatter(&|x| format!("{x:.0}"))
        .draw()
        .map_err(plot_err)?;
    for line in lines {
        let col = color(line.path);
        let style = if line.bold {
            col.stroke_width(3)
        } else {
            col.mix(0.55).stroke_width(2)
        };
        chart
            .draw_series(LineSeries::new(line.points.clone(), style))
            .map_err(plot_err)?
            .label(line.label)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], style));
        chart
            .draw_series(line.points.iter().map(|&p| Circle::new(p, 4, col.filled())))
            .map_err(plot_err)?;
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperLeft)
        .draw()
        .map_err(plot_err)?;
    root.present().map_err(plot_err)?;
    Ok(file.to_path_buf())
}
