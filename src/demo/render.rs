//! What `demo` prints and draws: the heading, one line per emulated minute, the summary,
//! and the chart (drawn by the proving ground's one chart module, `sim::chart`).

use std::{io::Write, path::Path};

use super::outcome::DemoOutcome;
use crate::{
    controller::{
        reconcile::{Effect, Report},
        status::SCALING,
    },
    crd::{CheckpointBudgetSpec, format_duration},
    policy::{AppConfig, AppStatus, Budget, duration::human_ms, median},
    sim::{
        Scenario,
        chart::{self, Line, LineChart, Panel},
    },
};

/// `16×1 (16 KPU)`.
fn short(c: AppConfig) -> String {
    format!("{}×{} ({} KPU)", c.parallelism, c.parallelism_per_kpu, c.kpus())
}

/// The heading: the scenario and the budget.
pub fn heading(
    out: &mut dyn Write,
    scenario: &Scenario,
    key: &str,
    spec: &CheckpointBudgetSpec,
    typed: &Budget,
) -> std::io::Result<()> {
    writeln!(
        out,
        "checkpoint-autoscaler demo: scenario {} — {}",
        scenario.name,
        scenario.description.as_deref().unwrap_or("")
    )?;
    writeln!(
        out,
        "budget {key}: checkpoints within {} over {}, parallelism {}..{} (maxParallelism {}), \
         perKpu {}..{}{}, mode {:?}",
        format_duration(typed.max_checkpoint_duration),
        format_duration(typed.window),
        typed.parallelism_min,
        typed.parallelism_max,
        typed.max_parallelism,
        typed.per_kpu_min,
        typed.per_kpu_max,
        typed
            .max_kpus
            .map(|k| format!(", at most {k} KPUs"))
            .unwrap_or_default(),
        spec.mode,
    )
}

/// One line per minute: what the application does, its checkpoints against the budget.
pub fn minute_line(
    minute: i64,
    status: AppStatus,
    config: AppConfig,
    checkpoint_ms: Option<f64>,
    slo_met: Option<bool>,
    budget_ms: f64,
) -> String {
    let check = match checkpoint_ms {
        Some(ms) => format!("{:>6}", human_ms(ms)),
        None => "     –".into(),
    };
    let verdict = match slo_met {
        Some(true) => "ok  ",
        Some(false) => "OVER",
        None => "  ? ",
    };
    format!(
        "+{minute:>3}m  {:<9} {:>2}×{} = {:>2} KPU  checkpoint {check} / {}  {verdict}",
        status.as_str(),
        config.parallelism,
        config.parallelism_per_kpu,
        config.kpus(),
        human_ms(budget_ms),
    )
}

/// What the controller decided, for the minute's line (in words when the decision
/// changes from `last_reason`), and the Scaling condition's reason.
pub fn decision(report: &Report, last_reason: &str) -> (String, String) {
    let (reason, message) = report
        .status
        .condition(SCALING)
        .map(|c| (c.reason.clone(), c.message.clone()))
        .unwrap_or_default();
    let mut note = match &report.effect {
        Effect::Scaled { .. } => format!("  ▶ {reason}: {message}"),
        Effect::Following { .. } => "  … update in progress".to_owned(),
        Effect::Refused | Effect::Failed => format!("  ✗ {reason}: {message}"),
        Effect::None if reason != last_reason => format!("  {reason}: {message}"),
        Effect::None => String::new(),
    };
    if !matches!(report.effect, Effect::Scaled { .. }) {
        for notice in report.notices.iter().filter(|n| n.reason.starts_with("Scaling")) {
            note.push_str(&format!("  [{}]", notice.reason));
        }
    }
    (note, reason)
}

/// Prints the summary.
pub fn summarize(outcome: &DemoOutcome, svg: &Path, out: &mut dyn Write) -> std::io::Result<()> {
    writeln!(out)?;
    verdict(outcome, out)?;
    let steps: Vec<String> = outcome
        .scalings
        .iter()
        .map(|s| {
            format!(
                "+{}m {} → {} ({})",
                s.minute,
                short(s.from),
                short(s.to),
                s.reason
            )
        })
        .collect();
    writeln!(
        out,
        "Scalings (restarts): {}{}",
        outcome.scalings.len(),
        if steps.is_empty() {
            String::new()
        } else {
            format!(": {}", steps.join("; "))
        }
    )?;
    let (before, after) = (outcome.durations_before(), outcome.durations_after());
    if !before.is_empty() || !after.is_empty() {
        let describe = |d: &[f64]| match (median(d), d.iter().copied().reduce(f64::max)) {
            (Some(med), Some(max)) => format!(
                "median {} (max {}) over {} minute(s)",
                human_ms(med),
                human_ms(max),
                d.len()
            ),
            _ => "none reported".to_string(),
        };
        writeln!(
            out,
            "Checkpoint durations: before the scaling {}; after it {}.",
            describe(&before),
            describe(&after)
        )?;
    }
    writeln!(
        out,
        "KPUs: {} before, {} after. UpdateApplication calls: {} ({} refused by the service).",
        outcome.kpus_before, outcome.kpus_after, outcome.update_calls, outcome.update_calls_refused
    )?;
    writeln!(
        out,
        "Wall time {:.1} s. Chart: {}",
        outcome.wall.as_secs_f64(),
        svg.display()
    )
}

/// The summary's first line: restored (by the controller or not), not restored and why,
/// kept, or never breached.
fn verdict(outcome: &DemoOutcome, out: &mut dyn Write) -> std::io::Result<()> {
    let restored_at = outcome.restored_at.unwrap_or_default();
    match (outcome.restored, outcome.breached_at) {
        (true, Some(breached)) => match outcome.restored_by() {
            Some(scaled) => writeln!(
                out,
                "Budget restored: breached at +{breached}m, scaled at +{scaled}m, met again from \
                 +{restored_at}m — {} emulated minutes.",
                outcome.minutes_to_restore().unwrap_or_default()
            ),
            None => {
                let last_scaling = outcome
                    .scalings
                    .iter()
                    .filter(|s| s.minute >= breached)
                    .map(|s| s.minute)
                    .max();
                let when = match last_scaling {
                    Some(m) => format!(
                        "{} minutes after the controller's last scaling (+{m}m)",
                        restored_at - m
                    ),
                    None => "with no scaling by the controller".to_owned(),
                };
                writeln!(
                    out,
                    "Budget met again, not by the controller: breached at +{breached}m, met again \
                     from +{restored_at}m {when}; the cause ended by itself."
                )
            }
        },
        (false, Some(breached)) => {
            writeln!(
                out,
                "Budget NOT restored: breached at +{breached}m and still not met at the end of the scenario."
            )?;
            // Why, when the controller held back on purpose (e.g. snapshots off).
            if let Some(scaling) = outcome
                .status
                .as_ref()
                .and_then(|s| s.condition(SCALING))
                .filter(|c| c.status == "False")
            {
                writeln!(out, "Why: {}: {}", scaling.reason, scaling.message)?;
            }
            Ok(())
        }
        (_, None) if outcome.kept() => writeln!(
            out,
            "Budget kept: the controller scaled at +{}m, before the checkpoints breached it, and \
             they stayed within it.",
            outcome.scalings.first().map_or(0, |s| s.minute)
        ),
        (_, None) => writeln!(
            out,
            "The budget was never breached in this scenario: nothing to restore."
        ),
    }
}

/// Writes the chart: checkpoint duration against the budget, and KPUs, per emulated minute,
/// with the scalings marked.
pub fn write_chart(outcome: &DemoOutcome, path: &Path) -> Result<(), chart::ChartError> {
    let first = outcome.minutes.first().map_or(0, |m| m.minute);
    let last = outcome.minutes.last().map_or(1, |m| m.minute).max(first + 1);
    let x = first as f64..last as f64;
    let budget_s = outcome.budget.as_secs_f64();
    let top = outcome
        .minutes
        .iter()
        .filter_map(|m| m.checkpoint_ms)
        .fold(budget_s * 1.5, |a, ms| a.max(ms / 1000.0))
        * 1.1;
    let marks: Vec<f64> = outcome.scalings.iter().map(|s| s.minute as f64).collect();
    let durations = Panel {
        caption: Some("checkpoint duration (s) against the budget".into()),
        x: x.clone(),
        y_top: top,
        x_desc: "emulated minutes".into(),
        y_desc: "seconds".into(),
        lines: vec![
            Line::level("budget", chart::BUDGET, &x, budget_s),
            Line::new(
                "lastCheckpointDuration",
                chart::DURATION,
                outcome
                    .minutes
                    .iter()
                    .map(|m| (m.minute as f64, m.checkpoint_ms.map(|ms| ms / 1000.0))),
            ),
        ],
        crosses: None,
        marks: marks.clone(),
    };
    let max_kpus = outcome
        .minutes
        .iter()
        .map(|m| m.config.kpus())
        .max()
        .unwrap_or(1)
        .max(1) as f64
        * 1.25;
    let kpus = Panel {
        caption: Some("KPUs (scalings marked)".into()),
        x,
        y_top: max_kpus,
        x_desc: "emulated minutes".into(),
        y_desc: "KPUs".into(),
        lines: vec![Line::steps(
            "KPUs",
            chart::KPUS,
            outcome
                .minutes
                .iter()
                .map(|m| (m.minute as f64, f64::from(m.config.kpus()))),
        )],
        crosses: None,
        marks,
    };
    chart::write_lines(
        &LineChart {
            title: format!("checkpoint-autoscaler demo · scenario {}", outcome.scenario),
            size: (1100, 700),
            panels: vec![durations, kpus],
            first_share: Some(0.62),
        },
        path,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::demo::outcome::tests::outcome;

    fn summary(o: &DemoOutcome) -> String {
        let mut out = Vec::new();
        summarize(o, Path::new("chart.svg"), &mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn the_summary_says_budget_restored_only_for_a_recovery_the_controller_caused() {
        let text = summary(&outcome(10, 27, &[15], 19));
        assert!(text.contains("Budget restored"), "{text}");

        // A fault that ended by itself, no scaling: never "Budget restored".
        let text = summary(&outcome(10, 130, &[], 130));
        assert!(!text.contains("Budget restored"), "{text}");
        assert!(
            text.contains("not by the controller") && text.contains("with no scaling"),
            "{text}"
        );

        // Scaled for nothing: checkpoints kept breaching until the fault ended.
        let text = summary(&outcome(10, 140, &[15, 20], 140));
        assert!(!text.contains("Budget restored"), "{text}");
        assert!(
            text.contains("120 minutes after the controller's last scaling"),
            "{text}"
        );

        // Met again soon after a scaling, but the controller had judged a hot key under its
        // new configuration: the cause ended by itself.
        let mut skew = outcome(10, 40, &[15], 40);
        skew.minutes[30].cause = Some(crate::policy::Cause::StateSkew);
        let text = summary(&skew);
        assert!(!text.contains("Budget restored"), "{text}");
        assert!(text.contains("the cause ended by itself"), "{text}");
    }
}
