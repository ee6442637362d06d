//! The SVG charts of the proving ground, all drawn here: a simulation (checkpoint duration
//! against the budget, load, configuration over time: [`write_svg`]), a `demo` run (the
//! same as line panels, built by the demo: [`write_lines`]) and `simulate --compare`
//! (grouped bars per scenario: [`write_comparison`]).

use std::{ops::Range, path::Path};

use plotters::prelude::*;

use super::{
    compare::{CompareResult, Comparison, POLICIES, choice_name},
    simulate::RunReport,
};

/// Why a chart could not be drawn.
#[derive(Debug, thiserror::Error)]
#[error("cannot draw the chart: {0}")]
pub struct ChartError(String);

fn err<E: std::fmt::Display>(e: E) -> ChartError {
    ChartError(e.to_string())
}

/// A colour, red, green, blue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rgb(pub u8, pub u8, pub u8);

impl Rgb {
    fn plotters(self) -> RGBColor {
        RGBColor(self.0, self.1, self.2)
    }
}

/// Checkpoint durations.
pub const DURATION: Rgb = Rgb(31, 119, 180);
/// The budget, and failed checkpoints.
pub const BUDGET: Rgb = Rgb(214, 39, 40);
/// The offered load.
pub const OFFERED: Rgb = Rgb(127, 127, 127);
/// The processed load.
pub const PROCESSED: Rgb = Rgb(44, 160, 44);
/// Parallelism.
pub const PARALLELISM: Rgb = Rgb(148, 103, 189);
/// KPUs.
pub const KPUS: Rgb = Rgb(255, 127, 14);
/// Vertical marks (e.g. scalings).
pub const MARK: Rgb = Rgb(0, 0, 0);

/// Charts stacked in panels over one x axis.
#[derive(Clone, Debug)]
pub struct LineChart {
    /// The title above the panels.
    pub title: String,
    /// Width and height in pixels.
    pub size: (u32, u32),
    /// Top to bottom; the first takes `first_share` of the height, the rest share the rest.
    pub panels: Vec<Panel>,
    /// The first panel's share of the height (`None`: all panels alike).
    pub first_share: Option<f64>,
}

/// One panel of a [`LineChart`].
#[derive(Clone, Debug, Default)]
pub struct Panel {
    /// A caption above the panel.
    pub caption: Option<String>,
    /// The x axis.
    pub x: Range<f64>,
    /// The top of the y axis (its bottom is 0).
    pub y_top: f64,
    /// What x counts.
    pub x_desc: String,
    /// What y measures.
    pub y_desc: String,
    /// The lines.
    pub lines: Vec<Line>,
    /// Crosses at these x, near the top, with their legend label.
    pub crosses: Option<(String, Rgb, Vec<f64>)>,
    /// Vertical marks at these x.
    pub marks: Vec<f64>,
}

/// One series of a [`Panel`].
#[derive(Clone, Debug)]
pub struct Line {
    /// The legend label (`None`: no legend entry).
    pub label: Option<String>,
    /// Its colour.
    pub color: Rgb,
    /// Its stroke width.
    pub width: u32,
    /// The points; a missing y is drawn as a gap.
    pub points: Vec<(f64, Option<f64>)>,
    /// Hold each value over the unit before its x (a configuration per minute).
    pub steps: bool,
}

impl Line {
    /// A line from `points`, gaps where y is missing.
    pub fn new(label: &str, color: Rgb, points: impl IntoIterator<Item = (f64, Option<f64>)>) -> Self {
        Self {
            label: Some(label.to_owned()),
            color,
            width: 2,
            points: points.into_iter().collect(),
            steps: false,
        }
    }

    /// A step line: each value held over the minute before it.
    pub fn steps(label: &str, color: Rgb, points: impl IntoIterator<Item = (f64, f64)>) -> Self {
        Self {
            steps: true,
            ..Self::new(label, color, points.into_iter().map(|(x, y)| (x, Some(y))))
        }
    }

    /// A horizontal line at `y` across `x`.
    pub fn level(label: &str, color: Rgb, x: &Range<f64>, y: f64) -> Self {
        Self::new(label, color, [(x.start, Some(y)), (x.end, Some(y))])
    }

    /// The drawn segments: split at the gaps, steps expanded.
    fn segments(&self) -> Vec<Vec<(f64, f64)>> {
        let mut out: Vec<Vec<(f64, f64)>> = vec![Vec::new()];
        for &(x, y) in &self.points {
            match y {
                Some(y) => {
                    if let Some(segment) = out.last_mut() {
                        if self.steps {
                            segment.push((x - 1.0, y));
                        }
                        segment.push((x, y));
                    }
                }
                None if out.last().is_some_and(|s| !s.is_empty()) => out.push(Vec::new()),
                None => {}
            }
        }
        out.retain(|s| !s.is_empty());
        out
    }
}

/// Writes `chart` to `path` as SVG.
pub fn write_lines(chart: &LineChart, path: &Path) -> Result<(), ChartError> {
    let root = SVGBackend::new(path, chart.size).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let root = root.titled(&chart.title, ("sans-serif", 22)).map_err(err)?;
    let areas = match (chart.first_share, chart.panels.len()) {
        (Some(share), n) if n > 1 => {
            let height = root.dim_in_pixel().1 as f64;
            let (first, rest) = root.split_vertically((height * share) as u32);
            let mut areas = vec![first];
            areas.extend(rest.split_evenly((n - 1, 1)));
            areas
        }
        (_, n) => root.split_evenly((n.max(1), 1)),
    };
    for (panel, area) in chart.panels.iter().zip(&areas) {
        draw_panel(panel, area)?;
    }
    root.present().map_err(err)?;
    Ok(())
}

fn draw_panel<DB: DrawingBackend>(
    panel: &Panel,
    area: &DrawingArea<DB, plotters::coord::Shift>,
) -> Result<(), ChartError>
where
    DB::ErrorType: 'static,
{
    let mut builder = ChartBuilder::on(area);
    builder.margin(10).x_label_area_size(30).y_label_area_size(60);
    if let Some(caption) = &panel.caption {
        builder.caption(caption, ("sans-serif", 16));
    }
    let mut chart = builder
        .build_cartesian_2d(panel.x.clone(), 0f64..panel.y_top)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc(panel.x_desc.as_str())
        .y_desc(panel.y_desc.as_str())
        .label_style(("sans-serif", 13))
        .axis_desc_style(("sans-serif", 14))
        .draw()
        .map_err(err)?;
    for line in &panel.lines {
        let color = line.color.plotters();
        let style = color.stroke_width(line.width);
        for (i, segment) in line.segments().into_iter().enumerate() {
            let drawn = chart.draw_series(LineSeries::new(segment, style)).map_err(err)?;
            if let (0, Some(label)) = (i, &line.label) {
                drawn
                    .label(label.as_str())
                    .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], style));
            }
        }
    }
    if let Some((label, color, xs)) = panel.crosses.as_ref().filter(|(_, _, xs)| !xs.is_empty()) {
        let style = color.plotters().stroke_width(2);
        let top = panel.y_top * 0.97;
        chart
            .draw_series(xs.iter().map(|&x| Cross::new((x, top), 4, style)))
            .map_err(err)?
            .label(label.as_str())
            .legend(move |(x, y)| Cross::new((x + 10, y), 4, style));
    }
    for &x in &panel.marks {
        chart
            .draw_series(LineSeries::new(
                [(x, 0.0), (x, panel.y_top)],
                MARK.plotters().mix(0.4).stroke_width(1),
            ))
            .map_err(err)?;
    }
    chart
        .configure_series_labels()
        .label_font(("sans-serif", 13))
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(err)?;
    Ok(())
}

/// Writes the chart of the simulation `report` to `path` as SVG.
pub fn write_svg(report: &RunReport, path: &Path) -> Result<(), ChartError> {
    let rows = &report.rows;
    let x = 0f64..rows.len().max(1) as f64;
    let minute = |r: &super::simulate::Row| r.minute as f64;
    let panel = |y_desc: &str, y_top: f64, lines: Vec<Line>| Panel {
        x: x.clone(),
        y_top,
        x_desc: "minutes".into(),
        y_desc: y_desc.into(),
        lines,
        ..Panel::default()
    };

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
    let mut lines = vec![Line::new(
        "lastCheckpointDuration",
        DURATION,
        rows.iter()
            .map(|r| (minute(r), r.last_checkpoint_duration_ms.map(|ms| ms / 1000.0))),
    )];
    lines.extend(budget_s.map(|b| Line::level("budget (maxCheckpointDuration)", BUDGET, &x, b)));
    let failures = rows
        .iter()
        .filter(|r| r.failed_checkpoints > 0)
        .map(minute)
        .collect();
    let durations = Panel {
        crosses: Some(("failed checkpoint".into(), BUDGET, failures)),
        ..panel("checkpoint duration (s)", top, lines)
    };

    // 2. Load.
    let max_load = rows
        .iter()
        .map(|r| r.offered_per_second.max(r.records_in_per_second))
        .fold(1.0_f64, f64::max)
        * 1.1;
    let offered = Line {
        width: 1,
        ..Line::new(
            "offered",
            OFFERED,
            rows.iter().map(|r| (minute(r), Some(r.offered_per_second))),
        )
    };
    let processed = Line::new(
        "numRecordsInPerSecond",
        PROCESSED,
        rows.iter().map(|r| (minute(r), Some(r.records_in_per_second))),
    );
    let load = panel("records/s", max_load, vec![offered, processed]);

    // 3. Configuration.
    let max_config = rows
        .iter()
        .map(|r| r.config.parallelism.max(r.kpus))
        .max()
        .unwrap_or(1) as f64
        * 1.2
        + 1.0;
    let parallelism = Line::steps(
        "parallelism",
        PARALLELISM,
        rows.iter().map(|r| (minute(r), f64::from(r.config.parallelism))),
    );
    let kpus = Line::steps("KPUs", KPUS, rows.iter().map(|r| (minute(r), f64::from(r.kpus))));
    let config = panel("parallelism / KPUs", max_config, vec![parallelism, kpus]);

    let chart = LineChart {
        title: format!("{} · policy {}", report.scenario, report.policy),
        size: (1200, 900),
        panels: vec![durations, load, config],
        first_share: None,
    };
    write_lines(&chart, path)
}

/// The bar colours of the policies, in [`POLICIES`] order.
const POLICY_COLORS: [Rgb; 5] = [DURATION, OFFERED, KPUS, BUDGET, PROCESSED];

/// Writes the comparison `c` to `path` as SVG: grouped bars per scenario of SLO-violation
/// minutes, KPU-hours and restarts per policy.
pub fn write_comparison(c: &Comparison, path: &Path) -> Result<(), ChartError> {
    let mut scenarios: Vec<&str> = Vec::new();
    for r in &c.results {
        if !scenarios.contains(&r.scenario.as_str()) {
            scenarios.push(&r.scenario);
        }
    }
    let root = SVGBackend::new(path, (1400, 1000)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let root = root
        .titled(
            "checkpoint-autoscaler vs the alternatives (same traces, same seeds)",
            ("sans-serif", 24),
        )
        .map_err(err)?;
    let panels = root.split_evenly((3, 1));
    type Metric = fn(&CompareResult) -> f64;
    let metrics: [(&str, Metric); 3] = [
        ("SLO-violation minutes", |r| r.slo_violation_minutes as f64),
        ("KPU-hours", |r| r.kpu_hours),
        ("restarts", |r| f64::from(r.restarts)),
    ];
    let n = scenarios.len().max(1) as f64;
    let width = 0.8 / POLICIES.len() as f64;
    for (panel, (label, value)) in panels.iter().zip(metrics) {
        // Headroom above the tallest bar keeps the legend clear of the bars.
        let top = c.results.iter().map(value).fold(0.0_f64, f64::max).max(1.0) * 1.45;
        let mut chart = ChartBuilder::on(panel)
            .margin(10)
            .caption(label, ("sans-serif", 18))
            .x_label_area_size(30)
            .y_label_area_size(60)
            .build_cartesian_2d(0.0..n, 0.0..top)
            .map_err(err)?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            // Quarter steps put a tick at each group's centre, the only one labelled.
            .x_labels(scenarios.len().max(1) * 4)
            .x_label_formatter(&|x| {
                if (x - x.floor() - 0.5).abs() > 0.01 {
                    return String::new();
                }
                scenarios
                    .get(x.floor() as usize)
                    .map_or(String::new(), |s| s.to_string())
            })
            .draw()
            .map_err(err)?;
        for (pi, choice) in POLICIES.iter().enumerate() {
            let name = choice_name(*choice);
            let color = POLICY_COLORS[pi % POLICY_COLORS.len()].plotters();
            let bars = scenarios.iter().enumerate().filter_map(|(si, s)| {
                let r = c.results.iter().find(|r| r.scenario == *s && r.policy == name)?;
                let x0 = si as f64 + 0.1 + pi as f64 * width;
                Some(Rectangle::new(
                    [(x0, 0.0), (x0 + width * 0.9, value(r))],
                    color.filled(),
                ))
            });
            chart
                .draw_series(bars)
                .map_err(err)?
                .label(name)
                .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], color.filled()));
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()
            .map_err(err)?;
    }
    root.present().map_err(err)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_split_at_gaps_and_steps_hold_each_value_over_its_minute() {
        let line = Line::new(
            "d",
            DURATION,
            [(0.0, Some(1.0)), (1.0, None), (2.0, Some(3.0)), (3.0, Some(4.0))],
        );
        assert_eq!(
            line.segments(),
            vec![vec![(0.0, 1.0)], vec![(2.0, 3.0), (3.0, 4.0)]]
        );
        let steps = Line::steps("k", KPUS, [(1.0, 4.0), (2.0, 8.0)]);
        assert_eq!(
            steps.segments(),
            vec![vec![(0.0, 4.0), (1.0, 4.0), (1.0, 8.0), (2.0, 8.0)]]
        );
    }
}
