//! SVG charts of a simulation: checkpoint duration against the budget, load, and the
//! configuration (parallelism, KPUs) over time.

use std::path::Path;

use plotters::prelude::*;

use super::simulate::RunReport;

/// Why a chart could not be drawn.
#[derive(Debug, thiserror::Error)]
#[error("cannot draw the chart: {0}")]
pub struct ChartError(String);

fn err<E: std::fmt::Display>(e: E) -> ChartError {
    ChartError(e.to_string())
}

const DURATION: RGBColor = RGBColor(31, 119, 180);
const BUDGET: RGBColor = RGBColor(214, 39, 40);
const OFFERED: RGBColor = RGBColor(127, 127, 127);
const PROCESSED: RGBColor = RGBColor(44, 160, 44);
const PARALLELISM: RGBColor = RGBColor(148, 103, 189);
const KPUS: RGBColor = RGBColor(255, 127, 14);

/// Splits a series at its gaps so that missing data is drawn as missing.
fn segments(points: impl Iterator<Item = (f64, Option<f64>)>) -> Vec<Vec<(f64, f64)>> {
    let mut out: Vec<Vec<(f64, f64)>> = vec![Vec::new()];
    for (x, y) in points {
        match y {
            Some(y) => out.last_mut().map(|s| s.push((x, y))).unwrap_or_default(),
            None if out.last().is_some_and(|s| !s.is_empty()) => out.push(Vec::new()),
            None => {}
        }
    }
    out.retain(|s| !s.is_empty());
    out
}

/// Step line: holds each value over its minute.
fn steps(points: impl Iterator<Item = (f64, f64)>) -> Vec<(f64, f64)> {
    points.flat_map(|(x, y)| [(x - 1.0, y), (x, y)]).collect()
}

/// Writes the chart of `report` to `path` as SVG.
pub fn write_svg(report: &RunReport, path: &Path) -> Result<(), ChartError> {
    let rows = &report.rows;
    let minutes = rows.len().max(1) as f64;
    let root = SVGBackend::new(path, (1200, 900)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let title = format!("{} · policy {}", report.scenario, report.policy);
    let root = root.titled(&title, ("sans-serif", 22)).map_err(err)?;
    let panels = root.split_evenly((3, 1));

    // 1. Checkpoint duration against the budget.
    let budget_s = report
        .budget
        .as_ref()
        .map(|b| b.max_checkpoint_duration.as_secs_f64());
    let max_duration = rows
        .iter()
        .filter_map(|r| r.last_checkpoint_duration_ms)
        .fold(0.0_f64, f64::max)
        / 1000.0;
    let top = max_duration.max(budget_s.unwrap_or(0.0) * 1.5).max(1.0) * 1.1;
    let mut chart = ChartBuilder::on(&panels[0])
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(60)
        .build_cartesian_2d(0f64..minutes, 0f64..top)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("minutes")
        .y_desc("checkpoint duration (s)")
        .label_style(("sans-serif", 13))
        .axis_desc_style(("sans-serif", 14))
        .draw()
        .map_err(err)?;
    let series = segments(rows.iter().map(|r| {
        (
            r.minute as f64,
            r.last_checkpoint_duration_ms.map(|ms| ms / 1000.0),
        )
    }));
    for (i, segment) in series.into_iter().enumerate() {
        let drawn = chart
            .draw_series(LineSeries::new(segment, DURATION.stroke_width(2)))
            .map_err(err)?;
        if i == 0 {
            drawn
                .label("lastCheckpointDuration")
                .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], DURATION.stroke_width(2)));
        }
    }
    if let Some(b) = budget_s {
        chart
            .draw_series(LineSeries::new(
                vec![(0.0, b), (minutes, b)],
                BUDGET.stroke_width(2),
            ))
            .map_err(err)?
            .label("budget (maxCheckpointDuration)")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BUDGET.stroke_width(2)));
    }
    let failures: Vec<(f64, f64)> = rows
        .iter()
        .filter(|r| r.failed_checkpoints > 0)
        .map(|r| (r.minute as f64, top * 0.97))
        .collect();
    if !failures.is_empty() {
        chart
            .draw_series(
                failures
                    .into_iter()
                    .map(|p| Cross::new(p, 4, BUDGET.stroke_width(2))),
            )
            .map_err(err)?
            .label("failed checkpoint")
            .legend(|(x, y)| Cross::new((x + 10, y), 4, BUDGET.stroke_width(2)));
    }
    chart
        .configure_series_labels()
        .label_font(("sans-serif", 13))
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(err)?;

    // 2. Load.
    let max_load = rows
        .iter()
        .map(|r| r.offered_per_second.max(r.records_in_per_second))
        .fold(1.0_f64, f64::max)
        * 1.1;
    let mut chart = ChartBuilder::on(&panels[1])
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(60)
        .build_cartesian_2d(0f64..minutes, 0f64..max_load)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("minutes")
        .y_desc("records/s")
        .label_style(("sans-serif", 13))
        .axis_desc_style(("sans-serif", 14))
        .draw()
        .map_err(err)?;
    chart
        .draw_series(LineSeries::new(
            rows.iter().map(|r| (r.minute as f64, r.offered_per_second)),
            OFFERED.stroke_width(1),
        ))
        .map_err(err)?
        .label("offered")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], OFFERED.stroke_width(2)));
    chart
        .draw_series(LineSeries::new(
            rows.iter().map(|r| (r.minute as f64, r.records_in_per_second)),
            PROCESSED.stroke_width(2),
        ))
        .map_err(err)?
        .label("numRecordsInPerSecond")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], PROCESSED.stroke_width(2)));
    chart
        .configure_series_labels()
        .label_font(("sans-serif", 13))
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(err)?;

    // 3. Configuration.
    let max_config = rows
        .iter()
        .map(|r| r.config.parallelism.max(r.kpus))
        .max()
        .unwrap_or(1) as f64
        * 1.2
        + 1.0;
    let mut chart = ChartBuilder::on(&panels[2])
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(60)
        .build_cartesian_2d(0f64..minutes, 0f64..max_config)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("minutes")
        .y_desc("parallelism / KPUs")
        .label_style(("sans-serif", 13))
        .axis_desc_style(("sans-serif", 14))
        .draw()
        .map_err(err)?;
    chart
        .draw_series(LineSeries::new(
            steps(
                rows.iter()
                    .map(|r| (r.minute as f64, f64::from(r.config.parallelism))),
            ),
            PARALLELISM.stroke_width(2),
        ))
        .map_err(err)?
        .label("parallelism")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], PARALLELISM.stroke_width(2)));
    chart
        .draw_series(LineSeries::new(
            steps(rows.iter().map(|r| (r.minute as f64, f64::from(r.kpus)))),
            KPUS.stroke_width(2),
        ))
        .map_err(err)?
        .label("KPUs")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], KPUS.stroke_width(2)));
    chart
        .configure_series_labels()
        .label_font(("sans-serif", 13))
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(err)?;

    root.present().map_err(err)?;
    Ok(())
}
