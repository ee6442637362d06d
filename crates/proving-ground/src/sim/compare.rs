//! `simulate --compare`: every scenario under every policy, on identical traces and seeds,
//! in one table — the project's policy beside `static`, `builtin` (the service's own CPU
//! rule), `threshold` (a naive stepper) and `optimal` (the clairvoyant offline optimum).
//!
//! The clairvoyant optimum is a *frontier*, not one point: planned again at each price of a
//! violation minute of [`FRONTIER_PRICES`] (reported as `optimal@<price>`), it traces the
//! least KPU-hours any schedule that serves its input (never further behind it than the
//! budget's window, see [`best_at`]) needs for a given number of violation minutes. The
//! project's policy is judged by its distance from that frontier ([`FrontierDistance`]:
//! its KPU-hours against the frontier's, interpolated at its own violation minutes) and by
//! its *avoidable* violation minutes (those above the least any policy achieves on the
//! scenario: a hot key or a serializer mismatch costs every policy alike).
//!
//! Nothing aborts the comparison: a scenario on which a policy cannot run is left out
//! whole, with why, and a configuration the service refuses is left out of the plans.

use std::{
    fmt::Write as _,
    path::{Path, PathBuf},
    time::Duration,
};

use serde::Serialize;

use super::{
    contenders::{FRONTIER_PRICES, Planner, falling_behind_minutes, frontier_name},
    scenario::{Phase, Scenario},
    simulate::{PolicyChoice, RunReport, SimError, run},
};

/// The policies compared, in table order.
pub const POLICIES: [PolicyChoice; 5] = [
    PolicyChoice::CheckpointAutoscaler,
    PolicyChoice::Static,
    PolicyChoice::Builtin,
    PolicyChoice::Threshold,
    PolicyChoice::Optimal,
];

/// A load change: the noise-free offered rate moved by this share since the last change.
pub const LOAD_CHANGE: f64 = 0.25;

/// The SLO counts as restored once it holds for this many consecutive minutes.
pub const RECOVERED_AFTER_MINUTES: usize = 10;

/// One scenario under one policy. The first seven fields are the documented JSON names.
#[derive(Clone, Debug, Serialize)]
pub struct CompareResult {
    /// Scenario name.
    pub scenario: String,
    /// Policy name.
    pub policy: String,
    /// Minutes in breach of the budget (including minutes with the job down).
    pub slo_violation_minutes: u64,
    /// KPU-hours used.
    pub kpu_hours: f64,
    /// Restarts: UpdateApplication calls and the service's own autoscaling events.
    pub restarts: u32,
    /// Failed checkpoints.
    pub failed_checkpoints: u32,
    /// Minutes from each load change until the SLO held again for
    /// [`RECOVERED_AFTER_MINUTES`] minutes (0 when it never broke), in order.
    pub recovery_minutes: Vec<u64>,
    /// Load changes detected in the trace.
    pub load_changes: u32,
    /// Minutes with the job down (restarts, failovers).
    pub down_minutes: u64,
    /// Updates that failed.
    pub failed_updates: u32,
    /// Final parallelism.
    pub final_parallelism: u32,
    /// Final ParallelismPerKPU.
    pub final_parallelism_per_kpu: u32,
    /// Simulated minutes.
    pub minutes: u64,
    /// Minutes in which the job fell further behind its input than the budget's window
    /// allows ([`falling_behind_minutes`]): a schedule with any does not serve its input,
    /// whatever its checkpoints do.
    pub falling_behind_minutes: u64,
}

/// Totals of one policy over the suite.
#[derive(Clone, Debug, Serialize)]
pub struct PolicyTotals {
    /// Policy name.
    pub policy: String,
    /// Sum of SLO-violation minutes.
    pub slo_violation_minutes: u64,
    /// Sum of KPU-hours.
    pub kpu_hours: f64,
    /// Sum of restarts.
    pub restarts: u32,
    /// Sum of failed checkpoints.
    pub failed_checkpoints: u32,
    /// Violation minutes above the least any policy achieved, scenario by scenario.
    pub avoidable_violation_minutes: u64,
    /// Mean of all recovery minutes (`None` without load changes).
    pub mean_recovery_minutes: Option<f64>,
    /// Longest recovery.
    pub max_recovery_minutes: Option<u64>,
}

/// One of the project's targets, checked on the results.
#[derive(Clone, Debug, Serialize)]
pub struct Target {
    /// What is promised.
    pub target: String,
    /// What was measured.
    pub measured: String,
    /// Whether it holds.
    pub met: bool,
}

/// One point of the clairvoyant frontier on a scenario.
#[derive(Clone, Debug, Serialize)]
pub struct FrontierPoint {
    /// The price of a violation minute the schedule was planned at, in KPU-minutes (`None`:
    /// `optimal`'s default price, see [`FrontierDistance::default_price`]).
    pub price: Option<f64>,
    /// Its measured SLO-violation minutes.
    pub slo_violation_minutes: u64,
    /// Its measured KPU-hours.
    pub kpu_hours: f64,
}

/// How far the project's policy is from the clairvoyant frontier on one scenario.
#[derive(Clone, Debug, Serialize)]
pub struct FrontierDistance {
    /// Scenario name.
    pub scenario: String,
    /// The frontier's non-dominated points, fewest violation minutes first.
    pub points: Vec<FrontierPoint>,
    /// The least SLO-violation minutes any policy achieved on the scenario.
    pub floor_violation_minutes: u64,
    /// The project's SLO-violation minutes.
    pub slo_violation_minutes: u64,
    /// The project's KPU-hours.
    pub kpu_hours: f64,
    /// The frontier's KPU-hours at the project's violation minutes (linear between its
    /// points; its cheapest point beyond the last, its first point before the first).
    pub frontier_kpu_hours: f64,
    /// The price of a violation minute `optimal` plans at (four minutes of the largest
    /// deployment the budget allows), in KPU-minutes.
    pub default_price: f64,
    /// Candidate configurations the service refused and the plans left out.
    pub refused: Vec<String>,
}

/// The whole comparison.
#[derive(Clone, Debug, Serialize)]
pub struct Comparison {
    /// Scenario × policy (the frontier's `optimal@<price>` rows after `optimal`).
    pub results: Vec<CompareResult>,
    /// One row per policy.
    pub summary: Vec<PolicyTotals>,
    /// The project's distance from the clairvoyant frontier, scenario by scenario.
    pub frontier: Vec<FrontierDistance>,
    /// The targets of the project's policy.
    pub targets: Vec<Target>,
    /// Scenarios left out, with why.
    pub skipped: Vec<String>,
}

/// Minutes (1-based, as the report's rows) at which the noise-free load moved by
/// [`LOAD_CHANGE`] or more since the previous change (or the start).
pub fn load_changes(scenario: &Scenario) -> Vec<usize> {
    let minutes = scenario.duration.as_secs().div_ceil(60) as usize;
    let mut reference = scenario.load.rate_at(Duration::ZERO);
    let mut out = Vec::new();
    for minute in 1..=minutes {
        let rate = scenario.load.rate_at(Duration::from_secs(minute as u64 * 60));
        let moved = if reference > 0.0 {
            (rate - reference).abs() / reference
        } else if rate > 0.0 {
            f64::INFINITY
        } else {
            0.0
        };
        if moved >= LOAD_CHANGE {
            out.push(minute);
            reference = rate;
        }
    }
    out
}

/// Minutes to recover after each change: until the SLO holds for
/// [`RECOVERED_AFTER_MINUTES`] in a row, within the span up to the next change (the whole
/// span when it never does); 0 when nothing broke in the span.
pub fn recovery_minutes(report: &RunReport, changes: &[usize]) -> Vec<u64> {
    let violated: Vec<bool> = report.rows.iter().map(|r| r.slo_violated == Some(true)).collect();
    let mut out = Vec::with_capacity(changes.len());
    for (i, &change) in changes.iter().enumerate() {
        let start = change.saturating_sub(1).min(violated.len());
        let end = changes
            .get(i + 1)
            .map_or(violated.len(), |n| n.saturating_sub(1))
            .min(violated.len());
        let span = &violated[start..end];
        let Some(first_bad) = span.iter().position(|v| *v) else {
            out.push(0);
            continue;
        };
        let mut good_run = 0;
        let mut recovered = None;
        for (j, v) in span.iter().enumerate().skip(first_bad) {
            if *v {
                good_run = 0;
            } else {
                good_run += 1;
                if good_run == RECOVERED_AFTER_MINUTES {
                    recovered = Some(j + 1 - RECOVERED_AFTER_MINUTES);
                    break;
                }
            }
        }
        out.push(recovered.unwrap_or(span.len()) as u64);
    }
    out
}

fn result(scenario: &Scenario, report: &RunReport, changes: &[usize]) -> CompareResult {
    let s = &report.summary;
    let behind = match scenario.policy_budget() {
        Ok(Some(budget)) => falling_behind_minutes(&report.rows, budget.window),
        _ => 0,
    };
    CompareResult {
        scenario: scenario.name.clone(),
        policy: report.policy.clone(),
        slo_violation_minutes: s.slo_violation_minutes.unwrap_or(0),
        kpu_hours: s.kpu_hours,
        restarts: s.restarts,
        failed_checkpoints: s.failed_checkpoints,
        recovery_minutes: recovery_minutes(report, changes),
        load_changes: changes.len() as u32,
        down_minutes: s.down_minutes,
        failed_updates: s.failed_updates,
        final_parallelism: s.final_config.parallelism,
        final_parallelism_per_kpu: s.final_config.parallelism_per_kpu,
        minutes: s.minutes,
        falling_behind_minutes: behind,
    }
}

/// Runs one scenario under one policy, on the scenario's seed (or `seed`).
pub fn run_one(scenario: &Scenario, choice: PolicyChoice, seed: Option<u64>) -> Result<RunReport, SimError> {
    let mut scenario = scenario.clone();
    if let Some(seed) = seed {
        scenario.seed = seed;
    }
    let mut policy = choice.build(&scenario)?;
    run(&scenario, policy.as_mut(), None)
}

/// Every policy on one scenario: the reference policies, then `optimal` at the default
/// price and the frontier's `optimal@<price>`. Each distinct planned schedule is executed
/// once; at each price the row reported is the best known schedule at that price: the
/// executed schedule (of any price's plan, or holding the initial configuration, which is
/// `static`'s run) with the least measured cost ([`total_cost`]). A clairvoyant is never
/// beaten at its own price by a schedule it could have chosen.
fn compare_scenario(
    scenario: &Scenario,
    seed: Option<u64>,
) -> Result<(Vec<CompareResult>, Vec<String>, f64), SimError> {
    let mut scenario = scenario.clone();
    if let Some(seed) = seed {
        scenario.seed = seed;
    }
    let changes = load_changes(&scenario);
    let mut out = Vec::new();
    for choice in POLICIES {
        if choice == PolicyChoice::Optimal {
            continue;
        }
        let report = run_one(&scenario, choice, None)?;
        out.push(result(&scenario, &report, &changes));
    }
    let planner = Planner::new(&scenario)?;
    let prices: Vec<(String, f64)> = std::iter::once(("optimal".to_string(), planner.default_price()))
        .chain(FRONTIER_PRICES.iter().map(|&p| (frontier_name(p), p)))
        .collect();
    // Holding the initial configuration is `static`'s run (no change, autoscaling off).
    let hold = out
        .iter()
        .find(|r| r.policy == choice_name(PolicyChoice::Static))
        .cloned();
    let mut executed: Vec<(Vec<(u64, crate::policy::AppConfig)>, CompareResult)> =
        hold.into_iter().map(|row| (Vec::new(), row)).collect();
    let mut planned = Vec::new();
    for (name, price) in &prices {
        let schedule = planner.schedule(*price);
        if !executed.iter().any(|(s, _)| *s == schedule) {
            let mut policy = planner.scripted(name, *price);
            let report = run(&scenario, &mut policy, None)?;
            executed.push((schedule.clone(), result(&scenario, &report, &changes)));
        }
        planned.push(schedule);
    }
    for ((name, price), schedule) in prices.iter().zip(&planned) {
        // The price's own plan first: it stays on a tie.
        let own = executed.iter().position(|(s, _)| s == schedule);
        let rows: Vec<&CompareResult> = own
            .into_iter()
            .chain(0..executed.len())
            .map(|i| &executed[i].1)
            .collect();
        if let Some(best) = best_at(*price, &rows) {
            out.push(CompareResult {
                policy: name.clone(),
                ..best.clone()
            });
        }
    }
    let price = planner.default_price();
    Ok((out, planner.refused, price))
}

/// The row with the least [`total_cost`] at `price` (the first of equals) among the
/// schedules that serve the input: a row whose job fell further behind its input than the
/// budget's window (`falling_behind_minutes`) is not eligible while any row kept up (when
/// none did, those that fell behind the fewest minutes are).
pub fn best_at<'a>(price: f64, rows: &[&'a CompareResult]) -> Option<&'a CompareResult> {
    let least_behind = rows.iter().map(|r| r.falling_behind_minutes).min()?;
    rows.iter()
        .copied()
        .filter(|r| r.falling_behind_minutes == least_behind)
        .reduce(|best, r| {
            if total_cost(r, price) < total_cost(best, price) {
                r
            } else {
                best
            }
        })
}

/// Compares every policy on every scenario that has a budget. Nothing aborts it: a
/// scenario on which any policy cannot run is left out whole (in `skipped`, with why), so
/// that the totals compare every policy on the same scenarios.
pub fn compare(scenarios: &[Scenario], seed: Option<u64>) -> Result<Comparison, SimError> {
    let mut results = Vec::new();
    let mut skipped = Vec::new();
    let mut refused = Vec::new();
    for scenario in scenarios {
        if scenario.budget.is_none() {
            skipped.push(format!("{}: no budget to judge the SLO against", scenario.name));
            continue;
        }
        match compare_scenario(scenario, seed) {
            Ok((rows, r, price)) => {
                results.extend(rows);
                refused.push((scenario.name.clone(), r, price));
            }
            Err(e) => skipped.push(format!("{}: {e}", scenario.name)),
        }
    }
    let floors = floors(&results);
    let mut names: Vec<String> = Vec::new();
    for r in &results {
        if !names.contains(&r.policy) {
            names.push(r.policy.clone());
        }
    }
    let summary = names
        .iter()
        .map(|name| totals(&results, name, &floors))
        .collect::<Vec<_>>();
    let frontier = refused
        .into_iter()
        .filter_map(|(scenario, refused, price)| {
            frontier_distance(&results, &scenario, &floors, refused, price)
        })
        .collect::<Vec<_>>();
    let targets = targets(scenarios, &results, &summary, &frontier);
    Ok(Comparison {
        results,
        summary,
        frontier,
        targets,
        skipped,
    })
}

/// The totals of every policy over one group of scenarios (e.g. a family of generated
/// ones).
#[derive(Clone, Debug, Serialize)]
pub struct GroupTotals {
    /// The group's name.
    pub group: String,
    /// Its scenarios in the comparison.
    pub scenarios: usize,
    /// One row per policy, as [`Comparison::summary`] over the group alone.
    pub summary: Vec<PolicyTotals>,
}

/// The comparison's totals by group: `group_of` names each scenario's group (`None`: in
/// none). Avoidable minutes are measured against each scenario's floor, as in the summary.
pub fn group_totals(c: &Comparison, group_of: impl Fn(&str) -> Option<String>) -> Vec<GroupTotals> {
    let floors = floors(&c.results);
    let mut groups: Vec<(String, Vec<CompareResult>)> = Vec::new();
    for r in &c.results {
        let Some(group) = group_of(&r.scenario) else {
            continue;
        };
        match groups.iter_mut().find(|(g, _)| *g == group) {
            Some((_, rows)) => rows.push(r.clone()),
            None => groups.push((group, vec![r.clone()])),
        }
    }
    groups
        .into_iter()
        .map(|(group, rows)| {
            let mut scenarios: Vec<&str> = rows.iter().map(|r| r.scenario.as_str()).collect();
            scenarios.dedup();
            let summary = c
                .summary
                .iter()
                .map(|t| totals(&rows, &t.policy, &floors))
                .collect();
            GroupTotals {
                scenarios: scenarios.len(),
                group,
                summary,
            }
        })
        .collect()
}

/// The groups' totals as text: `ours` against `theirs` (violation minutes, avoidable,
/// KPU-hours, restarts), one line per group.
pub fn format_groups(groups: &[GroupTotals], ours: &str, theirs: &str) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "by family: {ours} / {theirs}\n{:<18} {:>3} {:>11} {:>11} {:>15} {:>9}",
        "family", "n", "slo-min", "avoidable", "kpu-h", "restarts"
    );
    for g in groups {
        let (Some(a), Some(b)) = (
            g.summary.iter().find(|t| t.policy == ours),
            g.summary.iter().find(|t| t.policy == theirs),
        ) else {
            continue;
        };
        let _ = writeln!(
            out,
            "{:<18} {:>3} {:>11} {:>11} {:>15} {:>9}",
            g.group,
            g.scenarios,
            format!("{}/{}", a.slo_violation_minutes, b.slo_violation_minutes),
            format!(
                "{}/{}",
                a.avoidable_violation_minutes, b.avoidable_violation_minutes
            ),
            format!("{:.1}/{:.1}", a.kpu_hours, b.kpu_hours),
            format!("{}/{}", a.restarts, b.restarts),
        );
    }
    out
}

/// The least SLO-violation minutes any policy achieved, per scenario.
fn floors(results: &[CompareResult]) -> Vec<(String, u64)> {
    let mut out: Vec<(String, u64)> = Vec::new();
    for r in results {
        match out.iter_mut().find(|(s, _)| *s == r.scenario) {
            Some((_, floor)) => *floor = (*floor).min(r.slo_violation_minutes),
            None => out.push((r.scenario.clone(), r.slo_violation_minutes)),
        }
    }
    out
}

fn floor_of(floors: &[(String, u64)], scenario: &str) -> u64 {
    floors.iter().find(|(s, _)| s == scenario).map_or(0, |(_, f)| *f)
}

/// Whether a row is one of the clairvoyant plans (`optimal`, `optimal@<price>`).
pub fn is_clairvoyant(policy: &str) -> bool {
    policy == "optimal" || policy.starts_with("optimal@")
}

/// The non-dominated (violation minutes, KPU-hours) points among `points`, fewest
/// violation minutes first: each has fewer KPU-hours than every point with fewer or as
/// many violation minutes.
pub fn pareto(points: &[(u64, f64)]) -> Vec<(u64, f64)> {
    let mut sorted = points.to_vec();
    sorted.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.total_cmp(&b.1)));
    let mut out: Vec<(u64, f64)> = Vec::new();
    for p in sorted {
        if out.last().is_none_or(|last| p.1 < last.1 && p.0 > last.0) {
            out.push(p);
        }
    }
    out
}

/// The frontier's KPU-hours at `violations` minutes: linear between its points, its first
/// (most expensive) point's before it, its last (cheapest) point's beyond it.
pub fn interpolate(frontier: &[(u64, f64)], violations: u64) -> Option<f64> {
    let first = frontier.first()?;
    let last = frontier.last()?;
    if violations <= first.0 {
        return Some(first.1);
    }
    if violations >= last.0 {
        return Some(last.1);
    }
    frontier.windows(2).find_map(|w| {
        let (a, b) = (w[0], w[1]);
        (violations >= a.0 && violations <= b.0).then(|| {
            let t = (violations - a.0) as f64 / (b.0 - a.0) as f64;
            a.1 + t * (b.1 - a.1)
        })
    })
}

fn frontier_distance(
    results: &[CompareResult],
    scenario: &str,
    floors: &[(String, u64)],
    refused: Vec<String>,
    default_price: f64,
) -> Option<FrontierDistance> {
    let rows: Vec<&CompareResult> = results.iter().filter(|r| r.scenario == scenario).collect();
    let ours = rows.iter().find(|r| r.policy == "checkpoint-autoscaler")?;
    let plans: Vec<(&CompareResult, Option<f64>)> = rows
        .iter()
        .filter(|r| is_clairvoyant(&r.policy))
        .map(|r| {
            let price = r
                .policy
                .strip_prefix("optimal@")
                .and_then(|p| p.parse::<f64>().ok());
            (*r, price)
        })
        .collect();
    let hull = pareto(
        &plans
            .iter()
            .map(|(r, _)| (r.slo_violation_minutes, r.kpu_hours))
            .collect::<Vec<_>>(),
    );
    let points = hull
        .iter()
        .filter_map(|&(v, k)| {
            let (r, price) = plans
                .iter()
                .filter(|(r, _)| r.slo_violation_minutes == v && r.kpu_hours == k)
                .max_by_key(|(_, price)| price.is_some())?;
            Some(FrontierPoint {
                price: *price,
                slo_violation_minutes: r.slo_violation_minutes,
                kpu_hours: r.kpu_hours,
            })
        })
        .collect();
    Some(FrontierDistance {
        scenario: scenario.to_string(),
        points,
        floor_violation_minutes: floor_of(floors, scenario),
        slo_violation_minutes: ours.slo_violation_minutes,
        kpu_hours: ours.kpu_hours,
        frontier_kpu_hours: interpolate(&hull, ours.slo_violation_minutes)?,
        default_price,
        refused,
    })
}

/// The name a policy reports under.
pub fn choice_name(choice: PolicyChoice) -> &'static str {
    match choice {
        PolicyChoice::CheckpointAutoscaler => "checkpoint-autoscaler",
        PolicyChoice::Static => "static",
        PolicyChoice::Builtin => "builtin",
        PolicyChoice::Threshold => "threshold",
        PolicyChoice::Optimal => "optimal",
    }
}

fn totals(results: &[CompareResult], policy: &str, floors: &[(String, u64)]) -> PolicyTotals {
    let rows: Vec<&CompareResult> = results.iter().filter(|r| r.policy == policy).collect();
    let recoveries: Vec<u64> = rows
        .iter()
        .flat_map(|r| r.recovery_minutes.iter().copied())
        .collect();
    PolicyTotals {
        policy: policy.to_string(),
        slo_violation_minutes: rows.iter().map(|r| r.slo_violation_minutes).sum(),
        kpu_hours: rows.iter().map(|r| r.kpu_hours).sum(),
        restarts: rows.iter().map(|r| r.restarts).sum(),
        failed_checkpoints: rows.iter().map(|r| r.failed_checkpoints).sum(),
        avoidable_violation_minutes: rows
            .iter()
            .map(|r| r.slo_violation_minutes - floor_of(floors, &r.scenario).min(r.slo_violation_minutes))
            .sum(),
        mean_recovery_minutes: (!recoveries.is_empty())
            .then(|| recoveries.iter().sum::<u64>() as f64 / recoveries.len() as f64),
        max_recovery_minutes: recoveries.iter().copied().max(),
    }
}

/// Whether scaling cannot fix what breaks this scenario's checkpoints (faults), or can fix
/// it only partly (a hot key): the scenarios where the policy must hold back.
fn scaling_cannot_fix(scenario: &Scenario) -> Option<(&'static str, u32)> {
    let f = &scenario.faults;
    if f.serializer_mismatch.is_some() || f.transient_s3_errors.is_some() || f.slow_external_call.is_some() {
        Some(("failures scaling cannot fix", 0))
    } else if scenario.skew.hot_key_share > 0.0 {
        Some(("a hot key", 1))
    } else {
        None
    }
}

/// Whether the load recurs or grows (a sine phase, or a ramp upwards): where a policy
/// that plans ahead must not lose to the service's reactive rule.
fn recurring_or_growing(scenario: &Scenario) -> bool {
    let mut previous_end = 0.0;
    scenario.load.phases.iter().any(|phase| match phase {
        Phase::Sine { .. } => true,
        Phase::Ramp { from, to, .. } => {
            let grows = *to > from.unwrap_or(previous_end);
            previous_end = *to;
            grows
        }
        Phase::Steady { rate, .. } => {
            previous_end = *rate;
            false
        }
    })
}

/// Total cost of a run with a violation minute priced at `price` KPU-minutes, in
/// KPU-minutes.
pub fn total_cost(r: &CompareResult, price: f64) -> f64 {
    r.kpu_hours * 60.0 + r.slo_violation_minutes as f64 * price
}

fn targets(
    scenarios: &[Scenario],
    results: &[CompareResult],
    summary: &[PolicyTotals],
    frontier: &[FrontierDistance],
) -> Vec<Target> {
    let find = |p: &str| summary.iter().find(|t| t.policy == p);
    let mut out = Vec::new();
    if let (Some(us), Some(builtin), Some(threshold)) =
        (find("checkpoint-autoscaler"), find("builtin"), find("threshold"))
    {
        let ours = us.avoidable_violation_minutes as f64;
        let theirs = builtin.avoidable_violation_minutes as f64;
        out.push(Target {
            target: "avoidable SLO-violation minutes at most half of builtin's".into(),
            measured: format!("{ours} vs {theirs} (limit {:.0})", theirs / 2.0),
            met: ours <= theirs / 2.0,
        });
        let ours = us.slo_violation_minutes as f64;
        out.push(Target {
            target: "SLO-violation minutes at most a third of threshold's".into(),
            measured: format!(
                "{} vs {} (limit {:.0})",
                ours,
                threshold.slo_violation_minutes,
                threshold.slo_violation_minutes as f64 / 3.0
            ),
            met: ours <= threshold.slo_violation_minutes as f64 / 3.0,
        });
    }
    if !frontier.is_empty() {
        let ours: f64 = frontier.iter().map(|f| f.kpu_hours).sum();
        let theirs: f64 = frontier.iter().map(|f| f.frontier_kpu_hours).sum();
        out.push(Target {
            target: "KPU-hours within 15% of the clairvoyant frontier at the same violation minutes".into(),
            measured: format!(
                "{ours:.1} vs {theirs:.1} ({:+.1}%)",
                (ours / theirs.max(f64::MIN_POSITIVE) - 1.0) * 100.0
            ),
            met: ours <= theirs * 1.15,
        });
    }
    for f in frontier {
        let row = |p: &str| results.iter().find(|r| r.scenario == f.scenario && r.policy == p);
        if let (Some(ours), Some(builtin)) = (row("checkpoint-autoscaler"), row("builtin")) {
            let (a, b) = (
                total_cost(ours, f.default_price),
                total_cost(builtin, f.default_price),
            );
            out.push(Target {
                target: format!(
                    "{}: total cost no higher than builtin's (a violation minute at {:.0} KPU-minutes)",
                    f.scenario, f.default_price
                ),
                measured: format!("{:.0} vs {:.0} KPU-minutes", a, b),
                met: a <= b,
            });
        }
    }
    for scenario in scenarios {
        let Some(ours) = results
            .iter()
            .find(|r| r.scenario == scenario.name && r.policy == "checkpoint-autoscaler")
        else {
            continue;
        };
        if recurring_or_growing(scenario)
            && let Some(builtin) = results
                .iter()
                .find(|r| r.scenario == scenario.name && r.policy == "builtin")
        {
            let limit = builtin.slo_violation_minutes as f64 * 1.1 + 5.0;
            out.push(Target {
                target: format!(
                    "{}: a recurring or growing load, no more violation minutes than builtin (+10% +5)",
                    scenario.name
                ),
                measured: format!(
                    "{} vs {} (limit {limit:.0})",
                    ours.slo_violation_minutes, builtin.slo_violation_minutes
                ),
                met: ours.slo_violation_minutes as f64 <= limit,
            });
        }
        match scaling_cannot_fix(scenario) {
            Some((what, allowed)) => out.push(Target {
                target: format!("{}: at most {allowed} scaling(s) ({what})", scenario.name),
                measured: format!("{} restart(s)", ours.restarts),
                met: ours.restarts <= allowed,
            }),
            None => {
                let limit = 2 * ours.load_changes.max(1);
                out.push(Target {
                    target: format!("{}: at most 2 restarts per load change", scenario.name),
                    measured: format!(
                        "{} restart(s), {} load change(s)",
                        ours.restarts, ours.load_changes
                    ),
                    met: ours.restarts <= limit,
                });
            }
        }
    }
    out
}

fn fmt_recovery(r: &[u64]) -> String {
    if r.is_empty() {
        return "-".into();
    }
    let shown: Vec<String> = r.iter().take(4).map(|m| m.to_string()).collect();
    let more = if r.len() > 4 {
        format!(" +{}", r.len() - 4)
    } else {
        String::new()
    };
    format!("{}{more}", shown.join(","))
}

/// The table, the per-policy summary and the targets, as text.
pub fn format_table(c: &Comparison) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<26} {:<22} {:>9} {:>9} {:>8} {:>7} {:>14}  final",
        "scenario", "policy", "slo-min", "kpu-h", "restarts", "failed", "recovery-min"
    );
    let mut last = "";
    for r in &c.results {
        if r.scenario != last && !last.is_empty() {
            out.push('\n');
        }
        last = &r.scenario;
        let _ = writeln!(
            out,
            "{:<26} {:<22} {:>9} {:>9.1} {:>8} {:>7} {:>14}  {}/{}",
            r.scenario,
            r.policy,
            r.slo_violation_minutes,
            r.kpu_hours,
            r.restarts,
            r.failed_checkpoints,
            fmt_recovery(&r.recovery_minutes),
            r.final_parallelism,
            r.final_parallelism_per_kpu
        );
    }
    let _ = writeln!(out, "\nsummary over {} scenario(s)", c.frontier.len());
    let _ = writeln!(
        out,
        "{:<22} {:>9} {:>9} {:>9} {:>8} {:>7} {:>14}",
        "policy", "slo-min", "avoidable", "kpu-h", "restarts", "failed", "recovery mean/max"
    );
    for t in &c.summary {
        let recovery = match (t.mean_recovery_minutes, t.max_recovery_minutes) {
            (Some(mean), Some(max)) => format!("{mean:.1}/{max}"),
            _ => "-".into(),
        };
        let _ = writeln!(
            out,
            "{:<22} {:>9} {:>9} {:>9.1} {:>8} {:>7} {:>14}",
            t.policy,
            t.slo_violation_minutes,
            t.avoidable_violation_minutes,
            t.kpu_hours,
            t.restarts,
            t.failed_checkpoints,
            recovery
        );
    }
    if !c.frontier.is_empty() {
        let _ = writeln!(
            out,
            "\ncheckpoint-autoscaler against the clairvoyant frontier (KPU-hours at its violation minutes)"
        );
        let _ = writeln!(
            out,
            "{:<26} {:>7} {:>7} {:>9} {:>10} {:>8}  frontier (price: slo-min/kpu-h)",
            "scenario", "slo-min", "floor", "kpu-h", "frontier", "excess"
        );
        for f in &c.frontier {
            let points: Vec<String> = f
                .points
                .iter()
                .map(|p| {
                    let price = p.price.map_or("default".to_string(), |p| format!("{p:.0}"));
                    format!("{price}: {}/{:.1}", p.slo_violation_minutes, p.kpu_hours)
                })
                .collect();
            let _ = writeln!(
                out,
                "{:<26} {:>7} {:>7} {:>9.1} {:>10.1} {:>+7.1}%  {}",
                f.scenario,
                f.slo_violation_minutes,
                f.floor_violation_minutes,
                f.kpu_hours,
                f.frontier_kpu_hours,
                (f.kpu_hours / f.frontier_kpu_hours.max(f64::MIN_POSITIVE) - 1.0) * 100.0,
                points.join(", ")
            );
            for r in &f.refused {
                let _ = writeln!(out, "{:<26} refused by the service: {r}", "");
            }
        }
        let ours: f64 = c.frontier.iter().map(|f| f.kpu_hours).sum();
        let theirs: f64 = c.frontier.iter().map(|f| f.frontier_kpu_hours).sum();
        let _ = writeln!(
            out,
            "{:<26} {:>7} {:>7} {:>9.1} {:>10.1} {:>+7.1}%",
            "total",
            c.frontier.iter().map(|f| f.slo_violation_minutes).sum::<u64>(),
            c.frontier.iter().map(|f| f.floor_violation_minutes).sum::<u64>(),
            ours,
            theirs,
            (ours / theirs.max(f64::MIN_POSITIVE) - 1.0) * 100.0
        );
    }
    if !c.targets.is_empty() {
        let _ = writeln!(out, "\ntargets of checkpoint-autoscaler");
        for t in &c.targets {
            let _ = writeln!(
                out,
                "  [{}] {} — {}",
                if t.met { "met" } else { "MISSED" },
                t.target,
                t.measured
            );
        }
    }
    for s in &c.skipped {
        let _ = writeln!(out, "skipped {s}");
    }
    out
}

/// The scenario files under `path` (a file, or every *.yaml / *.yml in a directory,
/// sorted).
pub fn scenario_files(path: &Path) -> std::io::Result<Vec<PathBuf>> {
    if path.is_file() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(path)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
        .collect();
    files.sort();
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    const STEP: &str = r#"
name: tiny-step
application: {name: tiny, parallelism: 2, parallelismPerKpu: 1, maxParallelism: 32}
duration: 3h
seed: 7
load:
  phases:
    - {shape: steady, rate: 4000, for: 40m}
    - {shape: steady, rate: 12000}
processing: {cpuPerRecord: 200us}
state: {keys: 200000, bytesPerKey: 1Ki}
budget:
  application: {name: tiny}
  objectives: {maxCheckpointDuration: 1m, window: 10m}
  parallelism: {min: 1, max: 16, maxParallelism: 32, perKpu: {min: 1, max: 1}}
"#;

    #[test]
    fn a_step_is_one_load_change_and_everyone_is_measured_on_it() {
        let scenario = Scenario::from_yaml(STEP, "tiny-step").unwrap();
        assert_eq!(load_changes(&scenario), vec![40]);
        let c = compare(std::slice::from_ref(&scenario), None).unwrap();
        assert_eq!(c.results.len(), POLICIES.len() + FRONTIER_PRICES.len());
        assert!(c.skipped.is_empty(), "{:?}", c.skipped);
        let get = |p: &str| c.results.iter().find(|r| r.policy == p).unwrap();
        // Holding 2 subtasks against a load of 12,000 records/s breaks the budget for the
        // rest of the run; the optimum, which knows the step is coming, does far better.
        let stat = get("static");
        assert_eq!(stat.restarts, 0);
        assert!(stat.slo_violation_minutes > 60, "{stat:?}");
        let optimal = get("optimal");
        assert!(
            optimal.slo_violation_minutes < stat.slo_violation_minutes / 2,
            "{optimal:?}"
        );
        assert!(optimal.restarts >= 1);
        // The project's policy restores the budget after the change. At the APPLICATION
        // metrics level (the service's default) there is no busy time to size from, so it
        // may take a step more than with task-level signals (measured: 3).
        let ours = get("checkpoint-autoscaler");
        assert!(ours.restarts >= 1 && ours.restarts <= 3, "{ours:?}");
        assert_eq!(ours.recovery_minutes.len(), 1);
        assert!(ours.recovery_minutes[0] < 60, "{ours:?}");
        let text = format_table(&c);
        assert!(text.contains("optimal") && text.contains("targets of checkpoint-autoscaler"));
        let json = serde_json::to_value(&c).unwrap();
        for key in [
            "scenario",
            "policy",
            "slo_violation_minutes",
            "kpu_hours",
            "restarts",
            "failed_checkpoints",
            "recovery_minutes",
        ] {
            assert!(json["results"][0].get(key).is_some(), "missing {key}");
        }
    }

    /// The budget declares maxParallelism 40; the job really has 16 key groups.
    const LYING_BUDGET: &str = r#"
name: lying-budget
application: {name: tiny, parallelism: 2, parallelismPerKpu: 1, maxParallelism: 16}
duration: 2h
seed: 3
load:
  phases:
    - {shape: steady, rate: 4000, for: 30m}
    - {shape: steady, rate: 30000}
processing: {cpuPerRecord: 200us}
state: {keys: 200000, bytesPerKey: 1Ki}
budget:
  application: {name: tiny}
  objectives: {maxCheckpointDuration: 1m, window: 10m}
  parallelism: {min: 1, max: 24, maxParallelism: 40, perKpu: {min: 1, max: 1}}
"#;

    #[test]
    fn a_budget_overstating_max_parallelism_does_not_abort_the_comparison() {
        let scenario = Scenario::from_yaml(LYING_BUDGET, "lying-budget").unwrap();
        let c = compare(std::slice::from_ref(&scenario), None).unwrap();
        assert!(c.skipped.is_empty(), "{:?}", c.skipped);
        assert_eq!(c.results.len(), POLICIES.len() + FRONTIER_PRICES.len());
        let f = &c.frontier[0];
        // Parallelism above 16 is refused as the service refuses it, and left out of plans.
        assert!(!f.refused.is_empty(), "{f:?}");
        assert!(
            f.refused
                .iter()
                .all(|r| r.contains("higher than the job's maxParallelism 16")),
            "{:?}",
            f.refused
        );
        for r in c.results.iter().filter(|r| is_clairvoyant(&r.policy)) {
            assert!(r.final_parallelism <= 16, "{r:?}");
            assert_eq!(r.failed_updates, 0, "{r:?}");
        }
    }

    #[test]
    fn the_frontier_is_planned_at_every_price_and_dearer_violations_buy_fewer() {
        let scenario = Scenario::from_yaml(STEP, "tiny-step").unwrap();
        let c = compare(std::slice::from_ref(&scenario), None).unwrap();
        let get = |p: &str| c.results.iter().find(|r| r.policy == p).unwrap();
        for price in FRONTIER_PRICES {
            get(&frontier_name(price));
        }
        // The dearest price never ends with more violation minutes than the cheapest.
        assert!(get("optimal@256").slo_violation_minutes <= get("optimal@1").slo_violation_minutes);
        let f = &c.frontier[0];
        assert!(!f.points.is_empty());
        assert!(
            f.points
                .windows(2)
                .all(|w| w[0].slo_violation_minutes < w[1].slo_violation_minutes
                    && w[0].kpu_hours > w[1].kpu_hours),
            "{:?}",
            f.points
        );
        // The floor is the least any policy achieved; avoidable minutes are measured above it.
        let floor = c.results.iter().map(|r| r.slo_violation_minutes).min().unwrap();
        assert_eq!(f.floor_violation_minutes, floor);
        let ours = c
            .summary
            .iter()
            .find(|t| t.policy == "checkpoint-autoscaler")
            .unwrap();
        assert_eq!(
            ours.avoidable_violation_minutes,
            get("checkpoint-autoscaler").slo_violation_minutes - floor
        );
        let json = serde_json::to_value(&c).unwrap();
        assert!(json["frontier"][0]["frontier_kpu_hours"].is_number());
        assert!(format_table(&c).contains("clairvoyant frontier"));
    }

    #[test]
    fn the_schedule_reported_at_a_price_is_never_dearer_there_than_one_that_keeps_up() {
        let scenario = Scenario::from_yaml(STEP, "tiny-step").unwrap();
        let c = compare(std::slice::from_ref(&scenario), None).unwrap();
        let get = |p: &str| c.results.iter().find(|r| r.policy == p).unwrap();
        let hold = get("static");
        // Among the schedules that serve the input, when any does.
        let least_behind = c.results.iter().map(|r| r.falling_behind_minutes).min().unwrap();
        let eligible = |r: &CompareResult| r.falling_behind_minutes == least_behind;
        let default_price = c.frontier[0].default_price;
        let prices = FRONTIER_PRICES
            .iter()
            .map(|&p| (frontier_name(p), p))
            .chain([("optimal".to_string(), default_price)]);
        for (name, price) in prices {
            let row = get(&name);
            assert!(eligible(row), "{name}: {row:?}");
            assert!(
                !eligible(hold) || total_cost(row, price) <= total_cost(hold, price),
                "{name}: {row:?} against {hold:?}"
            );
            // Nor dearer than any other price's schedule, at this price.
            for other in c
                .results
                .iter()
                .filter(|r| is_clairvoyant(&r.policy) && eligible(r))
            {
                assert!(
                    total_cost(row, price) <= total_cost(other, price),
                    "{name} vs {other:?}"
                );
            }
        }
    }

    #[test]
    fn the_best_schedule_at_a_price_is_the_least_measured_cost_there() {
        let row = |policy: &str, violations: u64, kpu_hours: f64| CompareResult {
            scenario: "s".into(),
            policy: policy.into(),
            slo_violation_minutes: violations,
            kpu_hours,
            restarts: 0,
            failed_checkpoints: 0,
            recovery_minutes: Vec::new(),
            load_changes: 0,
            down_minutes: 0,
            failed_updates: 0,
            final_parallelism: 1,
            final_parallelism_per_kpu: 1,
            minutes: 360,
            falling_behind_minutes: 0,
        };
        // A plan that scaled down and spent 63 violation minutes on the catch-up, against
        // holding 16 KPUs for six hours without one.
        let plan = row("plan", 63, 7.2);
        let hold = row("hold", 0, 96.0);
        let rows = [&plan, &hold];
        assert_eq!(best_at(1.0, &rows).unwrap().policy, "plan");
        assert_eq!(best_at(256.0, &rows).unwrap().policy, "hold");
        // On a tie the first (the price's own plan) stays.
        let twin = row("twin", 63, 7.2);
        assert_eq!(best_at(4.0, &[&plan, &twin]).unwrap().policy, "plan");
        assert!(best_at(4.0, &[]).is_none());
        // A schedule that falls behind its input is not eligible, however cheap; when
        // every one does, those that fall behind the least are.
        let lagging = CompareResult {
            falling_behind_minutes: 300,
            ..row("lagging", 0, 1.0)
        };
        assert_eq!(best_at(1.0, &[&lagging, &plan, &hold]).unwrap().policy, "plan");
        let worse = CompareResult {
            falling_behind_minutes: 301,
            ..row("worse", 0, 0.5)
        };
        assert_eq!(best_at(1.0, &[&worse, &lagging]).unwrap().policy, "lagging");
    }

    /// Two subtasks cannot keep up with 12,000 records/s, but barrier alignment under full
    /// back-pressure is short enough that their checkpoints stay within the budget.
    const BEHIND: &str = r#"
name: tiny-behind
application: {name: tiny, parallelism: 2, parallelismPerKpu: 1, maxParallelism: 32}
duration: 3h
seed: 7
load:
  phases:
    - {shape: steady, rate: 12000}
processing: {cpuPerRecord: 200us}
state: {keys: 20000, bytesPerKey: 1Ki}
platform: {alignmentAtFullBackpressure: 2s}
budget:
  application: {name: tiny}
  objectives: {maxCheckpointDuration: 1m, window: 10m}
  parallelism: {min: 1, max: 16, maxParallelism: 32, perKpu: {min: 1, max: 1}}
"#;

    #[test]
    fn a_configuration_that_falls_behind_within_the_budget_is_not_on_the_frontier() {
        let scenario = Scenario::from_yaml(BEHIND, "tiny-behind").unwrap();
        let c = compare(std::slice::from_ref(&scenario), None).unwrap();
        let get = |p: &str| c.results.iter().find(|r| r.policy == p).unwrap();
        // Holding 2 subtasks meets the checkpoint budget and falls hours behind.
        let hold = get("static");
        assert!(hold.slo_violation_minutes < 10, "{hold:?}");
        assert!(hold.falling_behind_minutes > 120, "{hold:?}");
        // The plan scales up, and no price reports a schedule that falls behind, however
        // cheap a violation minute.
        let planner = Planner::new(&scenario).unwrap();
        let schedule = planner.schedule(planner.default_price());
        assert!(
            schedule.iter().any(|(_, config)| config.parallelism > 2),
            "{schedule:?}"
        );
        for price in FRONTIER_PRICES {
            let row = get(&frontier_name(price));
            assert_eq!(row.falling_behind_minutes, 0, "{row:?}");
            assert!(row.restarts >= 1, "{row:?}");
        }
    }

    #[test]
    fn pareto_keeps_the_non_dominated_points_and_interpolates_between_them() {
        let points = [(10, 5.0), (0, 20.0), (5, 8.0), (7, 9.0), (30, 5.0), (5, 12.0)];
        let hull = pareto(&points);
        assert_eq!(hull, vec![(0, 20.0), (5, 8.0), (10, 5.0)]);
        assert_eq!(interpolate(&hull, 0), Some(20.0));
        assert_eq!(interpolate(&hull, 5), Some(8.0));
        assert!((interpolate(&hull, 7).unwrap() - 6.8).abs() < 1e-9);
        // Beyond the cheapest point, its KPU-hours; below the first, the first's.
        assert_eq!(interpolate(&hull, 50), Some(5.0));
        assert_eq!(interpolate(&[], 3), None);
        assert_eq!(interpolate(&[(4, 2.0)], 1), Some(2.0));
    }

    #[test]
    fn recovery_counts_until_ten_good_minutes() {
        let scenario = Scenario::from_yaml(STEP, "tiny-step").unwrap();
        let mut report = run_one(&scenario, PolicyChoice::Static, None).unwrap();
        for (i, row) in report.rows.iter_mut().enumerate() {
            // Bad from minute 40 to 54, good after.
            row.slo_violated = Some((39..54).contains(&i));
        }
        assert_eq!(recovery_minutes(&report, &[40]), vec![15]);
        for row in report.rows.iter_mut() {
            row.slo_violated = Some(false);
        }
        assert_eq!(recovery_minutes(&report, &[40]), vec![0]);
    }
}
