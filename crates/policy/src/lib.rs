//! The decision engine: a pure function of (budget, observation, history, now).
//!
//! NB: no I/O, no clock reads, no randomness, no async, no SDK or kube types.
//!
//! [`decide`] reads as the order in which it rules:
//! 1. the application must be `RUNNING` with no update in flight (else `ApplicationBusy`);
//! 2. the data must be there and fresh, and the running configuration past its warm-up
//!    (else `MissingMetrics` / `WarmingUp`) — see `signals`;
//! 3. the cause is diagnosed from the judged periods — see `diagnose`;
//! 4. a configuration outside the budget's bounds is brought back into them;
//! 5. the need is met with the right knob and a well-sized step — see `sizing` and
//!    `bounds` — subject to the cooldowns and the scale-down stabilization — see
//!    `stabilization`.
//!
//! Every answer carries a diagnosis, a message a person can act on, the recommendation
//! (the configuration the engine considers right *now*, before cooldowns and stabilization:
//! the running one when nothing should change), the figures, and when to look again.
//! After each decision the caller records it with [`remember`] and persists the history.

mod ahead;
mod bounds;
mod cpu;
mod diagnose;
pub mod duration;
pub mod economics;
mod error_budget;
mod explain;
pub use explain::format_bytes;
pub mod forecast;
mod signals;
mod sizing;
mod stabilization;
mod stats;
mod tuning;
mod types;

#[cfg(test)]
mod diagnose_tests;
#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;

use std::time::Duration;

use jiff::Timestamp;

pub use error_budget::{ErrorBudgetState, SloBucket, account, spending_stopped, state as error_budget_state};
pub use stabilization::{remember, remember_baseline};
pub use stats::median;
pub use types::*;

use self::{
    ahead::{Inputs, Outlook},
    bounds::{Grow, Pick, Space},
    diagnose::{Context, Finding, Need},
    explain::{fmt_change, fmt_ms},
    signals::{Readiness, Signals, Window, dur_ms, ms_duration, ts_ms},
    sizing::{Basis, DurationModel, demand_factor, restart_estimate_ms},
    stabilization::{Stabilized, cooldown_left_ms, in_flight, stabilize},
    tuning::*,
};

/// How far back the metrics for a decision about `budget` are read: its window, and at
/// least the span the input's trend is fitted over (see `sizing::ramp`: ten minutes of a
/// ramp of 12% an hour are lost in 2% noise, thirty are not). Only the window is judged.
pub fn observation_window(budget: &Budget) -> std::time::Duration {
    budget.window.max(INPUT_TREND_SPAN)
}

/// Decides what to do about one application's checkpoints.
///
/// `observation` is `None` when the application could not be observed at all; `history`
/// is what the budget's status remembers (past scalings, recent recommendations); `now` is
/// the evaluation time. Pure and deterministic: the same arguments give the same decision.
///
/// Whenever a need was sized, the decision also says what the policy would recommend
/// without the budget's bounds ([`Decision::desired`]): the same rules run once more over
/// the space that only the service and the job limit, and the bounds that recommendation
/// crosses are the ones holding the budget back.
pub fn decide(
    budget: &Budget,
    observation: Option<&Observation>,
    history: &History,
    now: Timestamp,
) -> Decision {
    let mut decision = decide_within(budget, observation, history, now);
    if observation.is_none()
        || matches!(
            decision.reason,
            Reason::ApplicationBusy | Reason::MissingMetrics | Reason::WarmingUp
        )
    {
        return decision;
    }
    let open = unbounded(budget);
    let wish = if open == *budget {
        decision.clone()
    } else {
        decide_within(&open, observation, history, now)
    };
    decision.desired = Some(desired(budget, &wish));
    decision
}

/// The service's range of `ParallelismPerKPU` (Managed Flink developer guide, "Application
/// scaling"): the bounds a budget may narrow but never widen.
pub const SERVICE_PER_KPU: (u32, u32) = (1, 8);

/// `budget` with its bounds opened to what the service and the job allow: parallelism 1 to
/// `maxParallelism`, every ParallelismPerKPU the service accepts, no KPU cap.
fn unbounded(budget: &Budget) -> Budget {
    Budget {
        parallelism_min: 1,
        parallelism_max: budget.max_parallelism.max(1),
        per_kpu_min: SERVICE_PER_KPU.0,
        per_kpu_max: SERVICE_PER_KPU.1,
        max_kpus: None,
        ..budget.clone()
    }
}

/// The bounds of `budget` that the unbounded decision `wish` crosses, the most binding
/// first (capacity before savings).
fn desired(budget: &Budget, wish: &Decision) -> Desired {
    let c = wish.recommendation;
    let mut limits = Vec::new();
    if let Some(m) = budget.max_kpus
        && c.kpus() > m
    {
        limits.push(Limit::MaxKpus(m));
    }
    if c.parallelism > budget.parallelism_max {
        limits.push(Limit::ParallelismMax(budget.parallelism_max));
    }
    if c.parallelism_per_kpu < budget.per_kpu_min {
        limits.push(Limit::PerKpuMin(budget.per_kpu_min));
    }
    // Even without the budget's bounds the need is not met, at the job's key groups.
    if wish.reason == Reason::LimitReached && c.parallelism >= budget.max_parallelism {
        limits.push(Limit::MaxParallelism(budget.max_parallelism));
    }
    if c.parallelism < budget.parallelism_min {
        limits.push(Limit::ParallelismMin(budget.parallelism_min));
    }
    if c.parallelism_per_kpu > budget.per_kpu_max {
        limits.push(Limit::PerKpuMax(budget.per_kpu_max));
    }
    Desired { config: c, limits }
}

/// [`decide`] within the budget's bounds only.
fn decide_within(
    budget: &Budget,
    observation: Option<&Observation>,
    history: &History,
    now: Timestamp,
) -> Decision {
    let space = Space::new(budget, history);
    let Some(obs) = observation else {
        return no_observation(&space, history);
    };
    let period_ms = signals::period_ms(obs);
    let window = Window::select(budget, obs, history, now);
    let figures = window.figures();
    let mut draft = Draft {
        current: obs.config,
        slo_met: slo_met(budget, &figures),
        figures,
        period: ms_duration(period_ms),
    };

    // 1. Busy.
    if obs.status != AppStatus::Running {
        return draft.hold(
            Reason::ApplicationBusy,
            insufficient(format!(
                "The application is {}, not RUNNING.",
                obs.status.as_str()
            )),
            "Waiting for the application to be RUNNING before judging or changing it.".to_owned(),
        );
    }
    if let Some(op) = in_flight(history) {
        return draft.hold(
            Reason::ApplicationBusy,
            insufficient(format!(
                "An update to {} started at {} is still in progress.",
                op.to,
                op.at.strftime("%Y-%m-%dT%H:%M:%SZ")
            )),
            "Waiting for the update in flight to finish.".to_owned(),
        );
    }

    // 2. Data.
    match window.readiness(now) {
        Readiness::Ready => {}
        Readiness::Missing(why) => {
            return draft.hold(
                Reason::MissingMetrics,
                insufficient(format!("Not enough fresh metrics: {why}.")),
                "Holding until CloudWatch has fresh datapoints; gaps are never read as zero.".to_owned(),
            );
        }
        Readiness::WarmingUp(why) => {
            return draft.hold(
                Reason::WarmingUp,
                insufficient(format!("Warming up: {why}.")),
                "Holding until the new configuration has run long enough to be judged.".to_owned(),
            );
        }
    }
    let Some(sig) = Signals::from_samples(&window.judged, now) else {
        return draft.hold(
            Reason::MissingMetrics,
            insufficient("No checkpoint duration of the running configuration.".to_owned()),
            "Holding until CloudWatch has fresh datapoints.".to_owned(),
        );
    };
    draft.figures.representative_duration_ms = Some(sig.duration);
    draft.figures.records_in_per_second = sig.records_in;
    draft.figures.cpu_percent = sig.cpu;
    let window_ms = dur_ms(budget.window).max(period_ms);

    // 3. Diagnosis.
    let profile = forecast::Profile::learn(&obs.hourly_input, now);
    let input_trend = signals::input_trend(&obs.samples, window.judged_from, now);
    // The span the trend was fitted over: the last half hour, or less since the last
    // restart completed.
    let trend_span_ms =
        dur_ms(INPUT_TREND_SPAN).min(ts_ms(now).saturating_sub(window.judged_from.unwrap_or(i64::MIN)));
    let ctx = Context {
        budget,
        history,
        space: &space,
        current: obs.config,
        signals: &sig,
        model: DurationModel::fit(
            history,
            obs.config,
            space.max_parallelism,
            sig.duration,
            sig.records_in,
        ),
        now,
        window_ms,
        period_ms,
        restart_ms: restart_estimate_ms(history),
        cpu_floor: cpu::floor(history),
        ramp: sizing::ramp(
            &obs.hourly_input,
            sig.records_in,
            now,
            input_trend.is_some_and(|t| t > 0.0),
        ),
        input_trend: input_trend.map(|t| (t, trend_span_ms)),
        at_known_peak: match (&profile, sig.records_in) {
            (Some(p), Some(rate)) => p.at_known_peak(rate, now),
            _ => false,
        },
    };
    let finding = diagnose::diagnose(&ctx);

    // 4. Bounds.
    if !space.in_bounds(obs.config) {
        return enforce_bounds(&ctx, &draft, finding);
    }

    // 5. The need, ahead of the load when the application's history allows a forecast.
    let outlook = profile.and_then(|profile| outlook(&ctx, &profile, &finding));
    let mut decision = match (
        finding.need,
        outlook
            .as_ref()
            .and_then(|o| pre_scale(&ctx, &draft, &finding, o)),
    ) {
        (Need::Hold(_) | Need::Shrink { .. }, Some(ahead)) => ahead,
        (Need::Hold(reason), _) => {
            let message = hold_message(reason, &finding);
            draft.hold(reason, finding.diagnosis(), message)
        }
        (Need::Grow(need), _) => grow(&ctx, &draft, finding, need, outlook.as_ref()),
        (Need::Shrink { max_load }, _) => shrink(&ctx, &draft, finding, max_load, outlook.as_ref()),
    };
    decision.forecast = outlook.map(|o| o.report());
    decision
}

/// The plan for the coming hours (see `ahead`), when the finding says what the running
/// configuration can carry: a need sized now (capacity), or a job that keeps up within
/// budget (healthy or idle). `None` for every other cause (a plan on the figures of a
/// fault, a hot key or memory would size the wrong thing).
fn outlook(ctx: &Context<'_>, profile: &forecast::Profile, finding: &Finding) -> Option<Outlook> {
    let sig = ctx.signals;
    let rate = sig.records_in.filter(|r| *r > 0.0)?;
    let s_now = ctx.space.load(ctx.current);
    let (rate_now, saturating_load, first_at_most, cliff) = match finding.need {
        Need::Grow(g)
            if !g.lower_per_kpu
                && g.basis != Basis::Proving
                && matches!(finding.cause, Cause::UnderProvisioned | Cause::LargeState) =>
        {
            // The target aims at the CPU target or the duration target: it saturates beyond.
            // (CPU above its floor scales with the load factor, see `cpu`.)
            let (saturating, cliff) = match g.basis {
                Basis::Duration => (g.target / DURATION_TARGET, 1.0),
                _ => {
                    let floor = ctx.cpu_floor.min(CPU_TARGET / 2.0);
                    (
                        g.target * (100.0 - floor) / (CPU_TARGET - floor),
                        cliff_by_cpu(floor),
                    )
                }
            };
            (rate * demand_factor(sig), saturating, Some(g.target), cliff)
        }
        Need::Hold(Reason::WithinBudget) | Need::Shrink { .. }
            if matches!(finding.cause, Cause::Healthy | Cause::IdleHeadroom) =>
        {
            let budget_ms = dur_ms(ctx.budget.max_checkpoint_duration) as f64;
            let by_duration = ctx
                .model
                .load_factor_for(sig.duration, s_now, budget_ms)
                .unwrap_or(s_now);
            // NB: the CPU of the same recent periods as the rate (the window's maximum may
            // be a catch-up's, or a noisy minute's, against another minute's rate).
            // Read off the configuration's own line when it has one (its busier reading is
            // nearer saturation than a night's), else from the recent reading and the floor.
            let (by_cpu, floor) = match cpu::rate_at(ctx.history, ctx.current, 100.0) {
                Some(r) if r > rate => (s_now * r / rate, ctx.cpu_floor),
                _ => sig.cpu.filter(|c| *c > 0.0).map_or((f64::INFINITY, 0.0), |c| {
                    let floor = ctx.cpu_floor.min(c / 2.0);
                    (cpu::load_for(c, floor, s_now, 100.0), floor)
                }),
            };
            let cliff = if by_cpu < by_duration {
                cliff_by_cpu(floor)
            } else {
                1.0
            };
            (rate, by_duration.min(by_cpu).max(s_now), None, cliff)
        }
        _ => return None,
    };
    Outlook::new(
        profile,
        &Inputs {
            space: ctx.space,
            current: ctx.current,
            rate_now,
            saturating_load,
            cliff,
            first_at_most,
            restart_ms: ctx.restart_ms,
            period_ms: ctx.period_ms,
            now: ctx.now,
        },
    )
}

/// Where the cliff is when a configuration saturates on CPU whose `floor` % the input does
/// not drive, relative to the plan's (a share of the rate at 100% CPU): the reactive rule
/// acts at [`CPU_NEAR_SATURATION`] % CPU, which the input reaches at `(90 - floor) / (100 -
/// floor)` of that rate, not 90% of it (with a floor of 20%, 87.5%): a plan that counts on
/// 90% puts its busiest minutes past the point where the reactive rule scales up.
fn cliff_by_cpu(floor: f64) -> f64 {
    let floor = floor.clamp(0.0, CPU_NEAR_SATURATION / 2.0);
    ((CPU_NEAR_SATURATION - floor) / (100.0 - floor)) / (CPU_NEAR_SATURATION / 100.0)
}

/// A scale-up the forecast wants started now, before a recurring peak ramps up.
fn pre_scale(ctx: &Context<'_>, draft: &Draft, finding: &Finding, outlook: &Outlook) -> Option<Decision> {
    let (to, need, at) = outlook.scale_up_due()?;
    if !ctx.space.allowed(to) || to == ctx.current {
        return None;
    }
    // One planned step per rise: right after a scale-up the new configuration's figures
    // (catch-up, warm-up, a rate far from the peak) are a poor guide to refine it by
    // another restart; should it fall short, the breach is handled when it shows.
    if stabilization::last_scaling(ctx.history).is_some_and(|r| {
        r.to.kpus() > r.from.kpus() && dur_ms(PLANNED_STEP_SPACING) > ts_ms(ctx.now) - ts_ms(r.at)
    }) {
        return None;
    }
    let message = format!(
        "{} The application's own history expects about {need:.0} records/s from {}: scaling {} now, \
         so the restart is over before the load ramps up; checkpoints predicted at {} today.",
        finding.summary,
        at.strftime("%Y-%m-%dT%H:%MZ"),
        fmt_change(ctx.current, to),
        predicted(ctx, to)
    );
    Some(scale_or_cool(
        ctx,
        draft,
        finding,
        to,
        Reason::ScaleUpRequired,
        message,
    ))
}

/// The parts of a decision that do not depend on the action.
struct Draft {
    current: AppConfig,
    figures: CheckpointFigures,
    slo_met: Option<bool>,
    period: Duration,
}

impl Draft {
    fn decision(
        &self,
        action: Action,
        reason: Reason,
        message: String,
        diagnosis: Diagnosis,
        recommendation: AppConfig,
        requeue_after: Duration,
    ) -> Decision {
        Decision {
            action,
            reason,
            message,
            diagnosis,
            recommendation,
            slo_met: self.slo_met,
            figures: self.figures.clone(),
            requeue_after,
            desired: None,
            forecast: None,
        }
    }

    fn hold(&self, reason: Reason, diagnosis: Diagnosis, message: String) -> Decision {
        self.decision(
            Action::Hold,
            reason,
            message,
            diagnosis,
            self.current,
            self.period,
        )
    }

    /// Requeue when a wait of `left_ms` ends, but never later than one period (status and
    /// the stabilization history stay current).
    fn requeue_within(&self, left_ms: i64) -> Duration {
        ms_duration(left_ms).clamp(Duration::from_secs(1), self.period.max(Duration::from_secs(1)))
    }
}

impl Finding {
    fn diagnosis(&self) -> Diagnosis {
        Diagnosis {
            cause: self.cause,
            summary: self.summary.clone(),
            advice: self.advice.clone(),
        }
    }
}

fn insufficient(summary: String) -> Diagnosis {
    Diagnosis {
        cause: Cause::InsufficientData,
        summary,
        advice: None,
    }
}

/// Whether the window meets every objective: no duration above the budget, failures within
/// `maxFailedCheckpoints`, the size within `maxCheckpointSize`. `None` without data.
fn slo_met(budget: &Budget, figures: &CheckpointFigures) -> Option<bool> {
    let max = figures.max_duration_ms?;
    let duration_ok = max <= dur_ms(budget.max_checkpoint_duration) as f64;
    let failures_ok = figures.failed <= budget.max_failed_checkpoints;
    let size_ok = match (figures.last_size_bytes, budget.max_checkpoint_size) {
        (Some(size), Some(limit)) => size <= limit as f64,
        _ => true,
    };
    Some(duration_ok && failures_ok && size_ok)
}

/// Nothing observed: hold, recommending the last configuration the history knows.
fn no_observation(space: &Space, history: &History) -> Decision {
    // The last configuration known to run: the target of a scaling that succeeded, the
    // origin of one that failed (rolled back) or is still in progress.
    let known = stabilization::last_scaling(history)
        .map(|r| match r.outcome {
            Outcome::Succeeded => r.to,
            Outcome::Failed | Outcome::InProgress => r.from,
        })
        .unwrap_or_else(|| AppConfig::new(space.p_lo, space.k_hi.max(1)));
    Decision {
        action: Action::Hold,
        reason: Reason::MissingMetrics,
        message: "The application could not be observed; holding until it can.".to_owned(),
        diagnosis: insufficient("No observation of the application.".to_owned()),
        recommendation: known,
        slo_met: None,
        figures: CheckpointFigures::default(),
        requeue_after: Duration::from_secs(60),
        desired: None,
        forecast: None,
    }
}

fn hold_message(reason: Reason, finding: &Finding) -> String {
    let tail = match reason {
        Reason::WithinBudget => "No change needed.",
        Reason::NotFixableByScaling => "Not scaling: more KPUs would not fix this.",
        Reason::ScalingIneffective => "Not scaling again: the last step did not help.",
        Reason::FailuresWithinBudget => "Tolerated within the failure budget; no change.",
        Reason::WarmingUp => "Holding until the job keeps up with its input.",
        _ => "No change.",
    };
    match &finding.advice {
        Some(advice) => format!("{} {tail} {advice}", finding.summary),
        None => format!("{} {tail}", finding.summary),
    }
}

/// Which bounds stop `c` from going further up.
fn binding_bounds(space: &Space, c: AppConfig) -> String {
    let mut hit = Vec::new();
    if c.parallelism >= space.p_hi {
        hit.push(if space.p_hi == space.max_parallelism {
            format!("maxParallelism {}", space.max_parallelism)
        } else {
            format!("parallelism.max {}", space.p_hi)
        });
    }
    if space.max_kpus.is_some_and(|m| c.kpus() >= m) {
        hit.push(format!("maxKpus {}", c.kpus()));
    }
    if c.parallelism_per_kpu <= space.k_lo {
        hit.push(format!("perKpu.min {}", space.k_lo));
    }
    if hit.is_empty() {
        "the budget's bounds".to_owned()
    } else {
        hit.join(", ")
    }
}

fn predicted(ctx: &Context<'_>, to: AppConfig) -> String {
    let s_now = ctx.space.load(ctx.current);
    let d = ctx.model.predict(ctx.signals.duration, s_now, ctx.space.load(to));
    let budget_ms = dur_ms(ctx.budget.max_checkpoint_duration) as f64;
    format!(
        "about {} ({:.0}% of the budget)",
        fmt_ms(d),
        100.0 * d / budget_ms.max(1.0)
    )
}

/// What a scale-up to `to` promises, on the basis it was sized on.
fn promise(ctx: &Context<'_>, need: Grow, to: AppConfig) -> String {
    let ratio = ctx.space.load(ctx.current) / ctx.space.load(to).max(f64::MIN_POSITIVE);
    match need.basis {
        Basis::Duration => format!("bring checkpoints to {}", predicted(ctx, to)),
        Basis::Throughput => format!(
            "process about {ratio:.1}× as much with headroom to drain the backlog (sized on CPU, busy \
             time and lag: back-pressure inflates the duration until the job keeps up)"
        ),
        Basis::Memory => format!("give each subtask about {ratio:.1}× the memory"),
        Basis::Proving => format!(
            "bring checkpoints to {} if the state is spread evenly; the next step, if one is \
             needed, is sized on how the duration answers, and none follows if it does not",
            predicted(ctx, to)
        ),
    }
}

/// Scales to `to` unless the cooldown for its direction is running.
fn scale_or_cool(
    ctx: &Context<'_>,
    draft: &Draft,
    finding: &Finding,
    to: AppConfig,
    reason: Reason,
    message: String,
) -> Decision {
    let down = to.kpus() < ctx.current.kpus();
    let (cooldown, which) = if down {
        (ctx.budget.scale_down_cooldown, "scale-down")
    } else {
        (ctx.budget.scale_up_cooldown, "scale-up")
    };
    let left = cooldown_left_ms(ctx.history, cooldown, ctx.now);
    if left > 0 {
        return draft.decision(
            Action::Hold,
            Reason::CooldownActive,
            format!(
                "{message} Waiting: the {which} cooldown has {} left.",
                fmt_ms(left as f64)
            ),
            finding.diagnosis(),
            to,
            draft.requeue_within(left),
        );
    }
    draft.decision(
        Action::Scale { to },
        reason,
        message,
        finding.diagnosis(),
        to,
        draft.period,
    )
}

fn grow(
    ctx: &Context<'_>,
    draft: &Draft,
    finding: Finding,
    need: Grow,
    outlook: Option<&Outlook>,
) -> Decision {
    let space = ctx.space;
    let mut need = need;
    let mut pick = bounds::grow(space, ctx.current, need, false);
    // One sufficient step: when the forecast's plan runs a larger configuration this hour
    // (the load keeps rising into a recurring peak), take it now rather than a step per
    // stretch of the ramp.
    let mut ahead = String::new();
    if let (Pick::Meets(to), Some(o)) = (pick, outlook) {
        let planned = o.now_config();
        if planned.kpus() > to.kpus() && space.allowed(planned) && space.load(planned) <= space.load(to) {
            let report = o.report();
            ahead = format!(
                " Sized for the {:.0} records/s the application's own history expects by {}, so the \
                 ramp needs one restart.",
                report.peak_records_per_second,
                report.peak_at.strftime("%Y-%m-%dT%H:%MZ")
            );
            pick = Pick::Meets(planned);
        }
    }
    let mut fallback = String::new();
    if need.lower_per_kpu && need.spread_state_helps && pick == Pick::Nothing {
        // ParallelismPerKPU cannot go lower: spread the state over more subtasks instead.
        need.lower_per_kpu = false;
        need.prefer_keep_parallelism = false;
        pick = bounds::grow(space, ctx.current, need, false);
        fallback = format!(
            " ParallelismPerKPU is already at its minimum ({}), so the state is spread over more subtasks instead.",
            space.k_lo
        );
    }
    let ideal = bounds::grow(space, ctx.current, need, true);
    let ideal_failed = match ideal {
        Pick::Meets(c) | Pick::Partial(c) => space.is_failed(c).then_some(c),
        Pick::Nothing => None,
    };
    let up_reason = if need.lower_per_kpu || finding.cause == Cause::MemoryPressure {
        Reason::MoreMemoryRequired
    } else {
        Reason::ScaleUpRequired
    };
    let failed_note = ideal_failed.map_or_else(String::new, |c| {
        format!(" ({c} would fit better but failed before, so it is not retried.)")
    });
    match pick {
        Pick::Meets(to) => {
            let message = format!(
                "{}{fallback} Scaling {} to {}.{ahead}{failed_note}",
                finding.summary,
                fmt_change(ctx.current, to),
                promise(ctx, need, to)
            );
            scale_or_cool(ctx, draft, &finding, to, up_reason, message)
        }
        Pick::Partial(to) => {
            let (reason, why) = match (ideal, ideal_failed) {
                (Pick::Meets(_), Some(c)) => (
                    Reason::PreviouslyFailed,
                    format!("{c}, which would meet the target, failed before and is not retried"),
                ),
                _ => (
                    Reason::LimitReached,
                    format!("the target needs more than {} allow", binding_bounds(space, to)),
                ),
            };
            let message = format!(
                "{}{fallback} Scaling to the best allowed, {}, to {}: {why}. Raise the bounds or \
                 reduce the load to meet the budget.",
                finding.summary,
                fmt_change(ctx.current, to),
                promise(ctx, need, to)
            );
            scale_or_cool(ctx, draft, &finding, to, reason, message)
        }
        Pick::Nothing => {
            let (reason, why) = match ideal_failed {
                Some(c) => (
                    Reason::PreviouslyFailed,
                    format!(
                        "the configuration that would help ({c}) failed before and is not retried; \
                         check the failed operation"
                    ),
                ),
                None => (
                    Reason::LimitReached,
                    format!(
                        "no allowed configuration has more capacity: {} reached",
                        binding_bounds(space, ctx.current)
                    ),
                ),
            };
            draft.decision(
                Action::Blocked,
                reason,
                format!(
                    "{}{fallback} Blocked: {why}. Raise the bounds or reduce the load.",
                    finding.summary
                ),
                finding.diagnosis(),
                ctx.current,
                draft.period,
            )
        }
    }
}

fn shrink(
    ctx: &Context<'_>,
    draft: &Draft,
    finding: Finding,
    max_load: f64,
    outlook: Option<&Outlook>,
) -> Decision {
    let kpus = ctx.current.kpus();
    let min_kpus = (f64::from(kpus) * MIN_KEPT_ON_SCALE_DOWN).ceil() as u32;
    let max_kpus = (f64::from(kpus) * (1.0 - MIN_SCALE_DOWN_SAVING)).floor() as u32;
    // With a forecast, the plan's configuration for this hour when it is a step the margins
    // allow now: the plan chose it among every allowed shape with the coming hours and their
    // restarts priced, where the search below only raises ParallelismPerKPU or lowers the
    // parallelism (a shape the plan would leave again at the next rise). NB: still at most
    // half the KPUs a step: going down to the plan's KPUs whatever the cut made daily round
    // trips of weekly loads (unseen `u1-16-weekly` 23 -> 113 violation minutes).
    let planned = outlook.map(Outlook::now_config).filter(|p| {
        (min_kpus..=max_kpus).contains(&p.kpus())
            && ctx.space.allowed(*p)
            && ctx.space.load(*p) <= max_load * (1.0 + 1e-9)
    });
    let Some(raw) = planned.or_else(|| bounds::shrink(ctx.space, ctx.current, max_load, min_kpus, max_kpus))
    else {
        return draft.hold(
            Reason::WithinBudget,
            finding.diagnosis(),
            format!(
                "{} No allowed configuration with at least {:.0}% fewer KPUs (what a restart is worth) \
                 keeps the margin (duration at most {:.0}% of the budget, CPU and busy time at most \
                 {SCALE_DOWN_MAX_CPU:.0}%); no change.",
                finding.summary,
                MIN_SCALE_DOWN_SAVING * 100.0,
                SCALE_DOWN_MAX_DURATION * 100.0
            ),
        );
    };
    // An error budget with plenty left (and not burning faster than it allows) spends on a
    // scale-down after half the window (the stabilization window, or the payback when it
    // is longer); one running low spends nothing.
    let error_budget = error_budget::state(ctx.budget, ctx.history, ctx.now);
    let mut window = ctx.budget.scale_down_stabilization;
    // Without a forecast, the lower load must have lasted as long as the scale-down takes
    // to pay back its restart (up to the service's own scale-down wait): a trough that
    // has lasted that long is as likely as not to last as long again.
    if outlook.is_none() {
        let saved = kpus.saturating_sub(raw.kpus());
        let utilization = ctx.signals.cpu_max.or(ctx.signals.cpu).unwrap_or(CPU_TARGET) / 100.0
            * ctx.space.load(raw)
            / ctx.space.load(ctx.current).max(f64::MIN_POSITIVE);
        let payback =
            ahead::payback_without_forecast_ms(ctx.space, ctx.current, saved, ctx.restart_ms, utilization)
                .min(dur_ms(PAYBACK_WINDOW_MAX));
        window = window.max(ms_duration(payback));
    }
    if error_budget.as_ref().is_some_and(ErrorBudgetState::is_plentiful) {
        window /= 2;
    }
    let pending = |why: String| {
        draft.decision(
            Action::Hold,
            Reason::ScaleDownPending,
            format!(
                "{} {} would suffice; {why}.",
                finding.summary,
                fmt_change(ctx.current, raw)
            ),
            finding.diagnosis(),
            raw,
            draft.period,
        )
    };
    match stabilize(ctx.history, window, raw, ctx.now) {
        Stabilized::Pending { ms } => pending(format!(
            "waiting until fewer KPUs have been recommended for the whole {} stabilization window \
             ({} to go)",
            fmt_ms(dur_ms(window) as f64),
            fmt_ms(ms as f64)
        )),
        Stabilized::Settled(target) => {
            if target.kpus() >= kpus {
                return pending(format!(
                    "a higher recommendation ({target}) within the last {} keeps the current configuration",
                    fmt_ms(dur_ms(window) as f64)
                ));
            }
            let safe = ctx.space.allowed(target)
                && target.kpus() >= min_kpus
                && target.kpus() <= max_kpus
                && ctx.space.load(target) <= max_load * (1.0 + 1e-9);
            if !safe {
                return pending(format!(
                    "the highest recommendation of the last {} ({target}) no longer keeps the margin",
                    fmt_ms(dur_ms(window) as f64)
                ));
            }
            if let Some(Err(why)) = outlook.map(|o| o.scale_down_pays(ctx.space, target)) {
                return pending(why);
            }
            if let Some(eb) = error_budget.as_ref().filter(|eb| eb.is_low(ctx.restart_ms)) {
                return pending(format!(
                    "the error budget is low ({:.0} of {:.0} minutes outside the budget left, burn rate \
                     {:.1}): a planned restart costs about {} without checkpoints, so what is left is \
                     kept for breaches",
                    eb.remaining_minutes.max(0.0),
                    eb.allowed_minutes,
                    eb.burn_rate,
                    fmt_ms(ctx.restart_ms as f64)
                ));
            }
            let message = format!(
                "{} Scaling down {}, the highest recommendation of the last {}; checkpoints predicted at {}.",
                finding.summary,
                fmt_change(ctx.current, target),
                fmt_ms(dur_ms(window) as f64),
                predicted(ctx, target)
            );
            let mut decision =
                scale_or_cool(ctx, draft, &finding, target, Reason::ScaleDownStabilized, message);
            // NB: the stabilization history must keep seeing the raw recommendation.
            decision.recommendation = raw;
            decision
        }
    }
}

fn enforce_bounds(ctx: &Context<'_>, draft: &Draft, finding: Finding) -> Decision {
    let s_now = ctx.space.load(ctx.current);
    let wanted = match finding.need {
        Need::Grow(g) => g.target,
        _ => s_now,
    };
    match bounds::into_bounds(ctx.space, ctx.current, wanted) {
        Some(to) => {
            let message = format!(
                "{} The running configuration ({}) is outside the budget's bounds; scaling {} to \
                 bring it back, checkpoints predicted at {}.",
                finding.summary,
                ctx.current,
                fmt_change(ctx.current, to),
                predicted(ctx, to)
            );
            scale_or_cool(ctx, draft, &finding, to, Reason::LimitReached, message)
        }
        None => draft.decision(
            Action::Blocked,
            Reason::LimitReached,
            format!(
                "{} The running configuration ({}) is outside the budget's bounds and no allowed \
                 configuration remains (check parallelism, perKpu and maxKpus).",
                finding.summary, ctx.current
            ),
            finding.diagnosis(),
            ctx.current,
            draft.period,
        ),
    }
}
