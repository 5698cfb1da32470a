//! The picture of a run for people (`--plot FILE.svg`): per-second throughput above, per-second
//! p50 and p99 latency below, the warm-up shaded.

use std::path::Path;

use plotters::prelude::*;

use crate::{Report, SecondReport};

/// Draws `report` as an SVG file.
pub fn svg(report: &Report, path: &Path) -> Result<(), String> {
    let root = SVGBackend::new(path, (960, 720)).into_drawing_area();
    draw(report, &root).map_err(|error| error.to_string())?;
    root.present().map_err(|error| error.to_string())
}

/// One line of a chart: its legend, its colour, and its value in a second of the run.
type Line = (&'static str, RGBColor, fn(&SecondReport) -> f64);

fn draw<DB: DrawingBackend>(
    report: &Report,
    root: &DrawingArea<DB, plotters::coord::Shift>,
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    root.fill(&WHITE)?;
    let title = format!(
        "{}: {} connections{}",
        report.scenario,
        report.connections,
        report
            .rate
            .map_or_else(String::new, |rate| format!(", {rate} req/s open loop"))
    );
    let root = root.titled(&title, ("sans-serif", 20))?;
    let (upper, lower) = root.split_vertically(340);
    chart(
        report,
        &upper,
        "requests/s",
        &[
            ("answered", BLUE, |s| s.requests as f64),
            ("errors", RED, |s| s.errors as f64),
        ],
    )?;
    chart(
        report,
        &lower,
        "latency (ms)",
        &[("p50", GREEN, |s| s.p50_ms), ("p99", MAGENTA, |s| s.p99_ms)],
    )
}

/// Per-second lines over the run, the warm-up shaded.
fn chart<DB: DrawingBackend>(
    report: &Report,
    area: &DrawingArea<DB, plotters::coord::Shift>,
    y_desc: &str,
    lines: &[Line],
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    let seconds = report.per_second.len().max(1) as f64;
    let top = lines
        .iter()
        .flat_map(|(_, _, value)| report.per_second.iter().map(value))
        .fold(1.0, f64::max)
        * 1.1;
    let mut chart = ChartBuilder::on(area)
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(70)
        .build_cartesian_2d(0f64..seconds, 0f64..top)?;
    chart
        .configure_mesh()
        .x_desc("second")
        .y_desc(y_desc)
        .draw()?;
    chart.draw_series(std::iter::once(Rectangle::new(
        [(0.0, 0.0), (report.warmup_seconds, top)],
        RGBColor(230, 230, 230).filled(),
    )))?;
    for &(label, color, value) in lines {
        chart
            .draw_series(LineSeries::new(
                report
                    .per_second
                    .iter()
                    .map(|s| (s.second as f64 + 0.5, value(s))),
                &color,
            ))?
            .label(label)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()?;
    Ok(())
}
