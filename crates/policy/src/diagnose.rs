//! From signals to a diagnosis: which cause of the table in docs/design.md ("Why
//! checkpoints fail") the metrics show, and what it needs (a capacity target with the right
//! knob, fewer KPUs, or nothing that scaling can give).
//!
//! The causes are checked in this order, the first that matches wins:
//! 1. memory pressure (sustained heap/container memory >= 90%, or >= 75% with full
//!    restarts): lower ParallelismPerKPU, also meeting the duration target if breached;
//! 2. catching up: the lag falls and will be gone within `CATCH_UP_MINUTES` (a restart,
//!    failover or load spike left a backlog): hold until the job keeps up; or the job just
//!    started falling behind (fewer than `MIN_SAMPLES` rising periods): hold until the rate
//!    is measured, since it sizes the step;
//! 3. a breach of the duration budget (median of the latest periods above it), a breach a
//!    rising trend projects before a restart could complete, failures beyond the budget
//!    while saturated (checkpoints timing out), or sustained CPU near saturation in a job
//!    without backlog (the cliff before back-pressure): more capacity, unless the last
//!    scale-up proved ineffective (state skew), left even the best allowed configuration
//!    over the budget by the model it fitted (hold: another restart buys no minute within
//!    it), or the checkpoint uploads too little for its duration (not fixable by scaling);
//!    the cause is under-provisioning when CPU, busy time or back-pressure are high, high
//!    key cardinality when the state grows without levelling off, large state otherwise —
//!    where steady state in a job not saturated could as well be a hot key and no step has
//!    shown yet how the duration follows the parallelism, the first step is a proving one
//!    (the smallest whose effect stands out from the noise);
//! 4. failures beyond `maxFailedCheckpoints` with normal durations and resources (or a
//!    saturation explained by failovers): not fixable by scaling (isolated ones that
//!    recovered: transient);
//! 5. a checkpoint size above `maxCheckpointSize`: not fixable by scaling (state TTL);
//! 6. failures within the budget: transient, tolerated;
//! 7. idle headroom (every judged duration at most half the budget, CPU at most 50%,
//!    memory and busy time low, state not growing without bound): fewer KPUs;
//! 8. otherwise healthy (with a warning when the state grows without levelling off).

use jiff::Timestamp;

use super::{
    bounds::{self, Grow, Pick, Space},
    economics,
    explain::{fmt_change, fmt_ms, fmt_pct, format_bytes},
    signals::{Growth, Signals, dur_ms, ts_ms},
    sizing::{
        Basis, DurationModel, Ramp, input_growth, load_factor_for_memory, load_factor_for_throughput,
        ramp_growth,
    },
    stabilization::last_scaling,
    tuning::*,
    types::{AppConfig, Budget, Cause, History, Outcome, Reason},
};

/// Everything the diagnosis reads.
pub(crate) struct Context<'a> {
    pub budget: &'a Budget,
    pub history: &'a History,
    pub space: &'a Space,
    pub current: AppConfig,
    pub signals: &'a Signals,
    pub model: DurationModel,
    pub now: Timestamp,
    pub window_ms: i64,
    pub period_ms: i64,
    pub restart_ms: i64,
    /// The part of the CPU the input does not drive, % (see `cpu`).
    pub cpu_floor: f64,
    /// The ramp the input is on, from its hourly history (see `sizing::ramp`).
    pub ramp: Option<Ramp>,
    /// Whether the input is at a peak the application's own history expects, with no more
    /// expected over the next hours (see `forecast::Profile::at_known_peak`).
    pub at_known_peak: bool,
    /// The input's trend, records/s per ms, when trusted, and the span it was fitted over,
    /// ms: the last half hour of normal running (see `signals::input_trend`).
    pub input_trend: Option<(f64, i64)>,
}

/// What the diagnosed cause needs.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Need {
    /// Nothing scaling can give now.
    Hold(Reason),
    /// More capacity: reach the load factor in `Grow`.
    Grow(Grow),
    /// Fewer KPUs, keeping the load factor at most `max_load`.
    Shrink { max_load: f64 },
}

/// A diagnosis and its need.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Finding {
    pub cause: Cause,
    pub summary: String,
    pub advice: Option<String>,
    pub need: Need,
}

impl Finding {
    fn new(cause: Cause, summary: String, advice: Option<String>, need: Need) -> Self {
        Self {
            cause,
            summary,
            advice,
            need,
        }
    }
}

const ADVICE_TTL: &str = "State keeps growing at an undiminished rate, which usually means keys \
    that never expire: set a state TTL (StateTtlConfig), use smaller or session windows, or \
    drop keys that are no longer needed. Scaling only buys time within the budget's bounds.";

const ADVICE_SKEW: &str = "Look for hot keys (a few keys carrying most records or state): salt \
    or re-key them, pre-aggregate before the keyBy, or split the hot operator. The controller \
    stops scaling up until the input rate changes by more than half or a day passes.";

const ADVICE_NOT_FIXABLE: &str = "Check the job's exceptions at checkpoint time: a state \
    serializer that cannot handle a type (e.g. after a schema change), or an external call in \
    snapshotState/notifyCheckpointComplete that fails or times out. More KPUs cannot fix \
    either.";

const ADVICE_SLOW_CALL: &str = "Look for a slow external call while snapshotting: a sink's \
    pre-commit or flush, a synchronous request in snapshotState, or a blocking \
    notifyCheckpointComplete. More KPUs cannot shorten it.";

const ADVICE_MEMORY_UNRELIEVED: &str = "Look for what holds memory whatever each subtask's \
    share: a cache or buffer without a bound, large objects kept per key, or a leak in a user \
    function. The controller takes no further step for memory until the input rate changes by \
    more than half or two hours pass.";

const ADVICE_TRANSIENT: &str = "If they recur, check S3 throttling and the application's \
    permissions; raise maxFailedCheckpoints if an occasional failure is acceptable.";

const ADVICE_SIZE: &str = "Parallelism spreads state but does not shrink it: set a state TTL, \
    use smaller windows, or enable incremental checkpoints' compaction to bring the size \
    under the objective.";

/// What would confirm each diagnosis, in the words of the metric or tool that shows it.
const CONFIRM_UNDER_PROVISIONED: &str = "What would confirm it: CPU stays high while the lag \
    (millisBehindLatest) grows, and at the TASK metrics level busyTimeMsPerSecond near 1000 on \
    every subtask.";

const CONFIRM_LARGE_STATE: &str = "What would confirm it: in the Flink UI the asynchronous \
    (upload) phase dominates the checkpoint, and the duration falls with the state each \
    subtask holds after the scale-up; if it does not, a hot key is the cause.";

const CONFIRM_SKEW: &str = "What would confirm it: switch MetricsLevel to TASK (or OPERATOR) to \
    see per-subtask busy time, or compare the subtasks' checkpoint sizes and durations in the \
    Flink UI: one of them carries most.";

const CONFIRM_MEMORY: &str = "What would confirm it: OutOfMemoryError or a killed TaskManager \
    in the application's logs, and heap or container memory falling after the change.";

const CONFIRM_MEMORY_UNRELIEVED: &str = "What would confirm it: a heap dump or the logs \
    (OutOfMemoryError): a leak, a cache without a bound, or one huge object per key holds \
    memory whatever the share of each subtask.";

const CONFIRM_SLOW_CALL: &str = "What would confirm it: the synchronous phase of the \
    checkpoints in the Flink UI, a blocking call in snapshotState or a sink's pre-commit, or \
    per-task busy and back-pressure metrics (the TASK metrics level).";

const CONFIRM_FAILURES: &str = "What would confirm it: the exception of the failed checkpoints \
    in the application's logs (a serializer's, or a timeout of an external call).";

const CONFIRM_TRANSIENT: &str = "What would confirm it: S3 errors (503 Slow Down, throttling) in \
    the application's logs at those minutes, and failures that stop with no change.";

/// The figures a diagnosis rests on: the application-level metrics always, busy and
/// back-pressure time only when the metrics level publishes them.
fn figures(sig: &Signals) -> String {
    let rate = sig
        .records_in
        .map_or_else(|| "n/a".to_owned(), |r| format!("{r:.0} records/s"));
    let task = match (sig.busy, sig.backpressure) {
        (None, None) => String::new(),
        (busy, bp) => format!(
            ", busy {} ms/s, back-pressure {} ms/s",
            busy.map_or_else(|| "n/a".to_owned(), |b| format!("{b:.0}")),
            bp.map_or_else(|| "n/a".to_owned(), |b| format!("{b:.0}")),
        ),
    };
    format!(
        "CPU {}, input {rate}, heap {}{task}",
        fmt_pct(sig.cpu),
        fmt_pct(sig.heap)
    )
}

/// Diagnoses the judged signals.
pub(crate) fn diagnose(ctx: &Context<'_>) -> Finding {
    let sig = ctx.signals;
    let budget_ms = dur_ms(ctx.budget.max_checkpoint_duration) as f64;
    let s_now = ctx.space.load(ctx.current);
    let d = sig.duration;
    let memory = sig.memory();
    let figures = figures(sig);
    // What it takes to bring the duration back under the budget with margin, from the
    // recent duration projected over a restart and a window when it trends up.
    let rising = sig.duration_trend.filter(|t| t.slope > 0.0);
    let projected = |horizon_ms: i64| {
        rising.map_or(d, |t| {
            (d + t.slope * horizon_ms as f64)
                .min(MAX_PROJECTION_FACTOR * d)
                .max(d)
        })
    };
    let sizing_duration = projected(ctx.restart_ms + ctx.window_ms);
    let floor = s_now / MAX_SCALE_UP_FACTOR;
    let duration_load = ctx
        .model
        .load_factor_for(sizing_duration, s_now, DURATION_TARGET * budget_ms)
        .unwrap_or(floor);
    // A job that keeps up processes its input: its growth since the last scaling is the
    // input's (behind, the processed rate is the capacity and says nothing of it).
    let keeps_up = sig.lag_growth.is_none_or(|g| g <= 0.0)
        && sig
            .backpressure
            .is_none_or(|b| b < BACKPRESSURE_INFLATES_DURATION);
    // On a ramp, the step is sized for where the input will be over the step's economic
    // horizon: one sufficient step rather than one per stretch of the ramp.
    let growth = if keeps_up {
        let horizon = dur_ms(ctx.budget.scale_down_stabilization).max(GROWTH_HORIZON_MIN_MINUTES * 60_000);
        let since_scaling = input_growth(ctx.history, sig.records_in, ts_ms(ctx.now), horizon);
        let restart_cost = economics::restart_minutes(ctx.restart_ms, CPU_TARGET / 100.0)
            * economics::violation_price(ctx.space.largest_kpus(ctx.current));
        let kpus_needed =
            f64::from(ctx.current.kpus()) * sig.cpu.unwrap_or(CPU_TARGET).max(CPU_TARGET) / CPU_TARGET;
        let on_ramp = ctx
            .ramp
            .map_or(1.0, |r| ramp_growth(r, restart_cost, kpus_needed));
        // Before the hourly history shows a ramp, the window's own minutes may: a rise the
        // last half hour's minutes trust is one that has lasted that long, and is sized
        // ahead by the same reckoning (as likely to last as long again as not).
        let on_trend = match (ctx.ramp, ctx.input_trend, sig.records_in) {
            (None, Some((slope, span_ms)), Some(rate)) if slope > 0.0 && rate > 0.0 => ramp_growth(
                Ramp {
                    per_hour: slope * 3_600_000.0 / rate,
                    hours: span_ms as f64 / 3_600_000.0,
                },
                restart_cost,
                kpus_needed,
            ),
            _ => 1.0,
        };
        let on_ramp = on_ramp.max(on_trend);
        since_scaling.max(on_ramp)
    } else {
        1.0
    };
    let cpu_load = load_factor_for_throughput(sig, s_now, ctx.restart_ms, growth, ctx.cpu_floor);

    // 1. Memory pressure.
    let memory_pressure =
        memory.is_some_and(|m| m >= MEMORY_HIGH || (sig.restarts > 0.0 && m >= MEMORY_HIGH_WITH_RESTARTS));
    if let (true, Some(mem)) = (memory_pressure, memory) {
        if let Some(unrelieved) = memory_unrelieved(ctx, mem, &figures) {
            return unrelieved;
        }
        let mut target = load_factor_for_memory(mem, s_now, MEMORY_TARGET);
        if d > budget_ms {
            target = target.min(duration_load);
        }
        let summary = format!(
            "Memory is under pressure: heap {}, container memory {}, {} full restart(s) in the \
             window; each subtask needs more memory (checkpoints take {} against a {} budget). \
             {CONFIRM_MEMORY}",
            fmt_pct(sig.heap),
            fmt_pct(sig.container),
            sig.restarts.round(),
            fmt_ms(d),
            fmt_ms(budget_ms),
        );
        return Finding::new(
            Cause::MemoryPressure,
            summary,
            None,
            Need::Grow(Grow {
                target: target.max(floor),
                lower_per_kpu: true,
                prefer_keep_parallelism: true,
                // Heap holds each subtask's working objects whatever its share of the
                // state; only native (container) memory shrinks when state is spread.
                spread_state_helps: sig.heap.is_none_or(|h| h < MEMORY_HIGH_WITH_RESTARTS),
                basis: Basis::Memory,
            }),
        );
    }

    // 2. Catching up: a falling lag that will be gone soon explains saturation,
    // back-pressure and long checkpoints; judge the job once it keeps up.
    if let Some(eta) = sig.catch_up_eta_ms()
        && sig
            .lag
            .is_some_and(|l| l > CATCH_UP_MIN_LAG_PERIODS * ctx.period_ms as f64)
        && eta <= CATCH_UP_MINUTES * 60_000.0
    {
        return Finding::new(
            Cause::InsufficientData,
            format!(
                "The job is draining a backlog: {} behind the input and catching up, gone in about {} \
                 at this rate (checkpoints take {}, {figures}).",
                fmt_ms(sig.lag.unwrap_or(0.0)),
                fmt_ms(eta),
                fmt_ms(d),
            ),
            None,
            Need::Hold(Reason::WarmingUp),
        );
    }

    // 2. (continued) Just started falling behind: how fast decides the size of the step, and a
    // restart is too expensive to size on two datapoints.
    if sig.saturated()
        && sig.lag_growth.is_none_or(|g| g > 0.0)
        && (1..MIN_SAMPLES).contains(&sig.lag_rising_periods)
    {
        return Finding::new(
            Cause::UnderProvisioned,
            format!(
                "The job started falling behind its input {} period(s) ago ({} behind, {figures}); \
                 measuring how fast before sizing the step.",
                sig.lag_rising_periods,
                fmt_ms(sig.lag.unwrap_or(0.0)),
            ),
            None,
            Need::Hold(Reason::WarmingUp),
        );
    }

    // 3. Breach, projected breach, or saturated failures.
    let breach = d > budget_ms;
    let projected_breach =
        !breach && d >= PROACTIVE_FLOOR * budget_ms && projected(ctx.restart_ms) > budget_ms;
    let over_failed = sig.failed > f64::from(ctx.budget.max_failed_checkpoints);
    let saturated = sig.saturated();
    // Failing checkpoints of a saturated job are timeouts, unless the job restarted (a
    // failover leaves a backlog that saturates it while the real cause fails checkpoints)
    // or is catching up.
    let timing_out =
        over_failed && saturated && sig.restarts == 0.0 && sig.lag_growth.is_none_or(|g| g >= 0.0);
    // Sustained CPU near saturation that is not easing off, in a job that keeps up without
    // a backlog and did not fail over (a catch-up saturates it too): the cliff is a few
    // percent of load away. (CPU, not busy time: one busy subtask with idle others is skew.)
    // NB: at most once per stabilization window (at least half an hour): if CPU stays up
    // after such a step, more KPUs are not what it needs, and a breach still acts.
    let proactive_recently = last_scaling(ctx.history).is_some_and(|r| {
        ctx.space.load(r.to) < ctx.space.load(r.from)
            && ts_ms(ctx.now) - ts_ms(r.at)
                < dur_ms(ctx.budget.scale_down_stabilization).max(GROWTH_HORIZON_MIN_MINUTES * 60_000)
    });
    // NB: not at a peak the history expects, which passes before the load grows further:
    // a plan sized for the day's busiest minute runs it close to the cliff by design, and a
    // restart there would cost minutes for an hour the job carries (a breach still acts).
    let near_cliff = sig.cpu.is_some_and(|c| c >= CPU_NEAR_SATURATION)
        && sig.cpu_trend.is_none_or(|t| t >= 0.0)
        && sig.restarts == 0.0
        && sig
            .lag
            .is_none_or(|l| l <= CATCH_UP_MIN_LAG_PERIODS * ctx.period_ms as f64)
        && !proactive_recently;
    let saturating = near_cliff && !ctx.at_known_peak;
    if breach || projected_breach || timing_out || saturating {
        if let Some(skew) = ineffective_scale_up(ctx, budget_ms) {
            return skew;
        }
        // Back-pressure inflates the duration with barrier alignment, which vanishes once
        // the job keeps up: size such a step on throughput alone (DS2); a remaining breach
        // is then sized on the duration of a job that keeps up.
        let throughput_bound = sig
            .backpressure
            .is_some_and(|b| b >= BACKPRESSURE_INFLATES_DURATION)
            || (sig.busy.is_some_and(|b| b >= BUSY_SATURATED) && sig.lag_growth.is_some_and(|g| g > 0.0));
        let (target, basis) = match cpu_load {
            Some(c) if throughput_bound => (c, Basis::Throughput),
            Some(c) if c < duration_load => (c, Basis::Throughput),
            _ => (duration_load, Basis::Duration),
        };
        let state = sig
            .size
            .map_or_else(String::new, |s| format!(", state {}", format_bytes(s)));
        let what = if breach {
            format!(
                "Checkpoints take {} against a {} budget",
                fmt_ms(d),
                fmt_ms(budget_ms)
            )
        } else if projected_breach {
            format!(
                "Checkpoints take {} and rise towards the {} budget (projected {} within a restart)",
                fmt_ms(d),
                fmt_ms(budget_ms),
                fmt_ms(projected(ctx.restart_ms)),
            )
        } else if timing_out {
            format!(
                "{} checkpoints failed in the window (budget {}) while the job is saturated",
                sig.failed.round(),
                ctx.budget.max_failed_checkpoints
            )
        } else {
            format!(
                "Checkpoints take {} against a {} budget, but CPU has been at {} and is about to \
                 saturate, when back-pressure will stretch barrier alignment past the budget",
                fmt_ms(d),
                fmt_ms(budget_ms),
                fmt_pct(sig.cpu)
            )
        };
        let need = Need::Grow(Grow {
            target: target.max(floor),
            lower_per_kpu: false,
            prefer_keep_parallelism: false,
            spread_state_helps: true,
            basis,
        });
        if saturated {
            let lag = match sig.lag_growth {
                Some(g) if g > 0.0 => format!(", falling behind the input by {:.0}%", g * 100.0),
                _ => String::new(),
            };
            // Without back-pressure time (the APPLICATION metrics level), a saturated CPU while
            // the job falls further behind shows the back-pressure that stretches barrier
            // alignment.
            let alignment = if sig.backpressure.is_none() && sig.cpu_saturated() && !lag.is_empty() {
                " Barrier alignment under back-pressure stretches the checkpoints (shown by the \
                 saturated CPU and the growing lag; this metrics level publishes no \
                 back-pressure time); it goes once the job keeps up."
            } else {
                ""
            };
            return Finding::new(
                Cause::UnderProvisioned,
                format!(
                    "{what} ({figures}{state}{lag}): the job lacks capacity.{alignment} \
                     {CONFIRM_UNDER_PROVISIONED}"
                ),
                (sig.growth == Growth::Unbounded).then(|| ADVICE_TTL.to_owned()),
                need,
            );
        }
        // The upload rate of the latest checkpoint, or of the slowest long one of the window
        // (checkpoint sizes vary; a blocking call makes a small one as slow as a large one).
        let upload = sig
            .size
            .filter(|_| d > 0.0)
            .map(|size| size / (d / 1000.0))
            .into_iter()
            .chain(sig.slowest_upload)
            .min_by(f64::total_cmp);
        if let Some(size) = sig.size
            && upload.is_some_and(|u| {
                u / f64::from(ctx.current.kpus()) < MIN_PLAUSIBLE_UPLOAD_BYTES_PER_KPU_SECOND
            })
        {
            return Finding::new(
                Cause::NotFixableByScaling,
                format!(
                    "{what} ({figures}{state}) while uploading only {} per checkpoint over {} KPU: \
                     the time is not spent on state, so scaling cannot shorten it. {CONFIRM_SLOW_CALL}",
                    format_bytes(size),
                    ctx.current.kpus()
                ),
                Some(ADVICE_SLOW_CALL.to_owned()),
                Need::Hold(Reason::NotFixableByScaling),
            );
        }
        if sig.duration_follows_size == Some(false)
            && let Some(size) = sig.size
        {
            return Finding::new(
                Cause::NotFixableByScaling,
                format!(
                    "{what} ({figures}{state}) whatever the checkpoint's size: the long checkpoints of \
                     the window differ in size by half or more while their durations stay within 15% \
                     ({} per checkpoint over {} KPU now), so the time is not spent uploading state \
                     and scaling cannot shorten it. {CONFIRM_SLOW_CALL}",
                    format_bytes(size),
                    ctx.current.kpus()
                ),
                Some(ADVICE_SLOW_CALL.to_owned()),
                Need::Hold(Reason::NotFixableByScaling),
            );
        }
        // A breach in the configuration that checkpointed within budget, uploading many times
        // slower than it did then: the time is not spent uploading state (a blocking call in
        // the synchronous phase, a slow sink's pre-commit), so more KPUs would not shorten it.
        // NB: the rate, not the size: checkpoints that take longer carry more changes each
        // (incremental checkpoints), so a slow phase makes them larger too.
        if let (Some(base), Some(size)) = (ctx.history.baseline, sig.size)
            && base.config == ctx.current
            && base.duration_ms > 0.0
            && d > 0.0
            && d - base.duration_ms >= budget_ms * BASELINE_MIN_STEP_OF_BUDGET
        {
            let rate_then = base.size_bytes / (base.duration_ms / 1000.0);
            let rate_now = size / (d / 1000.0);
            if rate_now * BASELINE_SLOWDOWN <= rate_then {
                return Finding::new(
                    Cause::NotFixableByScaling,
                    format!(
                        "{what} ({figures}{state}) uploading {} per checkpoint, {}/s, where this \
                         configuration uploaded {} in {} ({}/s) at {} within budget: the time is not \
                         spent uploading state, so scaling cannot shorten it. {CONFIRM_SLOW_CALL}",
                        format_bytes(size),
                        format_bytes(rate_now),
                        format_bytes(base.size_bytes),
                        fmt_ms(base.duration_ms),
                        format_bytes(rate_then),
                        base.at.strftime("%Y-%m-%d %H:%M UTC"),
                    ),
                    Some(ADVICE_SLOW_CALL.to_owned()),
                    Need::Hold(Reason::NotFixableByScaling),
                );
            }
        }
        if sig.growth == Growth::Unbounded {
            return Finding::new(
                Cause::HighKeyCardinality,
                format!(
                    "{what} ({figures}{state}, growing {:.0}% per hour without levelling off): \
                     the state per subtask is too large and keeps growing. What would confirm it: \
                     lastCheckpointSize rising at the same rate after the change, with the number \
                     of distinct keys.",
                    sig.size_growth_per_hour.unwrap_or(0.0) * 100.0
                ),
                Some(ADVICE_TTL.to_owned()),
                need,
            );
        }
        if let Some(hold) = beyond_reach(ctx, breach, budget_ms, &figures) {
            return hold;
        }
        // Large state or a hot key: at the APPLICATION level they look alike until a step
        // shows whether the duration follows the parallelism. Where nothing tells them apart
        // yet, the first step is a proving one, the smallest whose effect stands out from the
        // duration's noise: a hot key then costs that step's KPUs, not the full step's.
        if let Some(proving) = proving_load(ctx, breach, target.max(floor)) {
            return Finding::new(
                Cause::LargeState,
                format!(
                    "{what} ({figures}{state}) while the job is not saturated: the state each \
                     subtask uploads is too large, or a hot key holds much of it. Nothing at this \
                     metrics level tells the two apart before a step (the state is steady and no \
                     earlier step showed how the duration follows the parallelism), so this is a \
                     proving step: the smallest whose effect stands out from the duration's noise \
                     ({} at this size). {CONFIRM_LARGE_STATE}",
                    fmt_ms(duration_noise(sig)),
                ),
                None,
                Need::Grow(Grow {
                    target: proving,
                    lower_per_kpu: false,
                    prefer_keep_parallelism: false,
                    spread_state_helps: true,
                    basis: Basis::Proving,
                }),
            );
        }
        return Finding::new(
            Cause::LargeState,
            format!(
                "{what} ({figures}{state}) while the job is not saturated: the state each subtask \
                 uploads is too large. {CONFIRM_LARGE_STATE}"
            ),
            None,
            need,
        );
    }

    // 4. Failures beyond the budget, with normal durations and resources.
    if over_failed {
        let isolated = sig.failed_periods <= ISOLATED_FAILURE_PERIODS && !sig.failing_now;
        let counts = format!(
            "{} checkpoint(s) failed in {} period(s) of the window, above maxFailedCheckpoints {}",
            sig.failed.round(),
            sig.failed_periods,
            ctx.budget.max_failed_checkpoints
        );
        if isolated {
            return Finding::new(
                Cause::TransientFailures,
                format!(
                    "{counts}, but none in the latest {RECOVERED_PERIODS} periods and durations are \
                     normal ({}, {figures}): isolated failures that recovered, such as transient S3 \
                     errors. \
                     {CONFIRM_TRANSIENT}",
                    fmt_ms(d)
                ),
                Some(ADVICE_TRANSIENT.to_owned()),
                Need::Hold(Reason::NotFixableByScaling),
            );
        }
        let resources = if saturated && sig.restarts > 0.0 {
            format!(
                "the job is saturated only by the backlog of {} failover(s)",
                sig.restarts.round()
            )
        } else if saturated {
            "the job is saturated only while it catches up".to_owned()
        } else {
            "resources look normal".to_owned()
        };
        return Finding::new(
            Cause::NotFixableByScaling,
            format!(
                "{counts}, while completed checkpoints take {} against a {} budget and {resources} \
                 ({figures}): scaling cannot fix this. {CONFIRM_FAILURES}",
                fmt_ms(d),
                fmt_ms(budget_ms)
            ),
            Some(ADVICE_NOT_FIXABLE.to_owned()),
            Need::Hold(Reason::NotFixableByScaling),
        );
    }

    // 5. Size objective.
    if let (Some(size), Some(max)) = (sig.size, ctx.budget.max_checkpoint_size)
        && size > max as f64
    {
        let unbounded = sig.growth == Growth::Unbounded;
        return Finding::new(
            if unbounded {
                Cause::HighKeyCardinality
            } else {
                Cause::LargeState
            },
            format!(
                "The latest checkpoint is {}, above the {} size objective (duration {} within the {} budget).",
                format_bytes(size),
                format_bytes(max as f64),
                fmt_ms(d),
                fmt_ms(budget_ms)
            ),
            Some(if unbounded { ADVICE_TTL } else { ADVICE_SIZE }.to_owned()),
            Need::Hold(Reason::NotFixableByScaling),
        );
    }

    // 6. Failures within the budget.
    if sig.failed > 0.0 {
        return Finding::new(
            Cause::TransientFailures,
            format!(
                "{} checkpoint(s) failed in the window, within maxFailedCheckpoints {}; durations are \
                 normal ({} against {}).",
                sig.failed.round(),
                ctx.budget.max_failed_checkpoints,
                fmt_ms(d),
                fmt_ms(budget_ms)
            ),
            None,
            Need::Hold(Reason::FailuresWithinBudget),
        );
    }

    // 7. Idle headroom.
    let idle = sig.duration_max <= IDLE_DURATION * budget_ms
        && sig.cpu_max.is_some_and(|c| c <= IDLE_CPU)
        && sig.busy_max.is_none_or(|b| b < BUSY_SATURATED)
        && sig.backpressure.is_none_or(|b| b < BACKPRESSURE_HIGH / 2.0)
        && memory.is_none_or(|m| m < SCALE_DOWN_MAX_MEMORY)
        && sig.growth != Growth::Unbounded;
    if idle {
        let cpu_max = sig.cpu_max.unwrap_or(IDLE_CPU).max(1.0);
        let by_duration = ctx
            .model
            .load_factor_for(sig.duration_max, s_now, SCALE_DOWN_MAX_DURATION * budget_ms)
            .unwrap_or(s_now);
        // The busiest subtask must stay as far from saturation as the average CPU.
        // (The CPU above its floor scales with the load factor; busy time has no floor.)
        let by_cpu = super::cpu::load_for(
            cpu_max,
            ctx.cpu_floor.min(cpu_max / 2.0),
            s_now,
            SCALE_DOWN_MAX_CPU,
        )
        .min(sig.busy_max.map_or(f64::INFINITY, |b| {
            s_now * SCALE_DOWN_MAX_CPU / (b / 10.0).max(1.0)
        }));
        let by_memory = memory.map_or(f64::INFINITY, |m| {
            load_factor_for_memory(m, s_now, SCALE_DOWN_MAX_MEMORY)
        });
        return Finding::new(
            Cause::IdleHeadroom,
            format!(
                "Checkpoints take at most {} ({:.0}% of the {} budget) with CPU at most {} and memory {}: \
                 capacity is idle.",
                fmt_ms(sig.duration_max),
                100.0 * sig.duration_max / budget_ms.max(1.0),
                fmt_ms(budget_ms),
                fmt_pct(sig.cpu_max),
                fmt_pct(memory),
            ),
            None,
            Need::Shrink {
                max_load: by_duration.min(by_cpu).min(by_memory),
            },
        );
    }

    // 8. Healthy.
    let summary = format!(
        "Checkpoints take {} (at most {} in the window) against a {} budget ({figures}).",
        fmt_ms(d),
        fmt_ms(sig.duration_max),
        fmt_ms(budget_ms)
    );
    if sig.growth == Growth::Unbounded {
        return Finding::new(
            Cause::HighKeyCardinality,
            format!(
                "{summary} The state grows {:.0}% per hour without levelling off.",
                sig.size_growth_per_hour.unwrap_or(0.0) * 100.0
            ),
            Some(ADVICE_TTL.to_owned()),
            Need::Hold(Reason::WithinBudget),
        );
    }
    // Say so when CPU near the cliff was left alone because the history knows this peak:
    // status must not read as if nothing were close.
    let summary = if near_cliff && ctx.at_known_peak {
        format!(
            "{summary} CPU is at {}, near saturation, but at the busiest minute the application's \
             history typically brings at this hour of the day, with no busier hour expected in \
             the next {} hours: the peak passes before the load grows, so the \
             near-saturation rule leaves it to the plan for the coming hours (a breach still \
             acts).",
            fmt_pct(sig.cpu),
            super::forecast::KNOWN_PEAK_HOURS
        )
    } else {
        summary
    };
    Finding::new(Cause::Healthy, summary, None, Need::Hold(Reason::WithinBudget))
}

/// A breach that, by the duration model the last step fitted, no allowed configuration
/// brings under the budget: the step showed how much of the checkpoint shrinks with the
/// parallelism, and the rest keeps even the best allowed configuration over the budget. A
/// violation minute is a minute over the budget, however far over, so another restart
/// would cost its minutes and KPUs and buy none within it (a job that is not saturated has
/// no backlog for more capacity to drain): hold. Most often a hot key (the hottest
/// subtask's share shrinks only with the rest of the state: a fitted fixed part of at least
/// [`SKEWED_FIXED_SHARE`]); otherwise state beyond what the bounds can spread. `None` without a
/// fitted model (nothing measured yet), when a configuration meets the budget, when none
/// has more capacity (blocked), or [`INEFFECTIVE_RETRY_HOURS`] after that step.
fn beyond_reach(ctx: &Context<'_>, breach: bool, budget_ms: f64, figures: &str) -> Option<Finding> {
    let sig = ctx.signals;
    let last = last_scaling(ctx.history)?;
    let completed = last.completed_at?;
    if !breach || !ctx.model.fitted || ts_ms(ctx.now) - ts_ms(completed) > INEFFECTIVE_RETRY_HOURS * 3_600_000
    {
        return None;
    }
    let d = sig.duration;
    let s_now = ctx.space.load(ctx.current);
    let need = Grow {
        target: ctx.model.load_factor_for(d, s_now, budget_ms).unwrap_or(0.0),
        lower_per_kpu: false,
        prefer_keep_parallelism: false,
        spread_state_helps: true,
        basis: Basis::Duration,
    };
    let Pick::Partial(best) = bounds::grow(ctx.space, ctx.current, need, false) else {
        return None;
    };
    let at_best = ctx.model.predict(d, s_now, ctx.space.load(best));
    if at_best <= budget_ms {
        return None;
    }
    // What an even spread of the state would have given the last step.
    let d0 = last.checkpoint_duration_before_ms?;
    let (s0, s1) = (ctx.space.load(last.from), ctx.space.load(last.to));
    let fixed = DEFAULT_FIXED_DURATION_FRACTION * d0;
    let even = fixed + (d0 - fixed) * s1 / s0.max(f64::MIN_POSITIVE);
    let (cause, reason, what, advice) = if ctx.model.fixed_ms < SKEWED_FIXED_SHARE * d {
        (
            Cause::LargeState,
            Reason::LimitReached,
            "the state each subtask uploads stays too large at every allowed configuration; \
             raise the bounds (maxKpus, parallelism.max) to meet the budget",
            None,
        )
    } else {
        (
            Cause::StateSkew,
            Reason::ScalingIneffective,
            "one subtask dominates (a hot key): its share shrinks only with the rest of the state",
            Some(ADVICE_SKEW.to_owned()),
        )
    };
    Some(Finding::new(
        cause,
        format!(
            "Checkpoints take {} against a {} budget ({figures}) after the last scale-up ({}) \
             shortened them from {} (an even spread of the state would have given about {}): \
             about {} of each checkpoint does not shrink with the parallelism, so the best \
             allowed configuration, {best}, is predicted at {}, still over the budget. Another \
             restart would cost its minutes and KPUs and buy no minute within the budget, so the \
             job stays on this configuration: {what}. {CONFIRM_SKEW}",
            fmt_ms(d),
            fmt_ms(budget_ms),
            fmt_change(last.from, last.to),
            fmt_ms(d0),
            fmt_ms(even),
            fmt_ms(ctx.model.fixed_ms),
            fmt_ms(at_best),
        ),
        advice,
        Need::Hold(reason),
    ))
}

/// The duration's noise, ms: how far the highest judged duration is above the recent
/// median, at least [`DURATION_NOISE_FLOOR`] of it.
fn duration_noise(sig: &Signals) -> f64 {
    (sig.duration_max - sig.duration).max(DURATION_NOISE_FLOOR * sig.duration)
}

/// The load factor of a proving step, when the cause of a breach is uncertain between large
/// state and a hot key; `None` when it is not, or when the full step (to `full`) is as small.
///
/// Uncertain: an actual breach (a projected one is state growing into the budget), in a job
/// that is not saturated (the caller's), whose state is steady (state that grows explains
/// the breach: the duration follows the size) and whose duration model was not fitted by an
/// earlier step at this load (that step showed the duration follows the parallelism). At
/// the APPLICATION level nothing else tells them apart: average CPU, input and the total
/// checkpoint size look the same whether one subtask or all carry the state.
///
/// The step predicts an improvement of at least [`PROVING_MARGIN`] times the noise above
/// the [`INEFFECTIVE_GAIN`] share that judges it ([`ineffective_scale_up`]), so that the
/// answer of the job tells the two apart; no more, so that a hot key costs only that step.
fn proving_load(ctx: &Context<'_>, breach: bool, full: f64) -> Option<f64> {
    let sig = ctx.signals;
    if !breach || ctx.model.fitted || sig.growth != Growth::Steady {
        return None;
    }
    let d = sig.duration;
    let gain = PROVING_MARGIN * duration_noise(sig) / INEFFECTIVE_GAIN;
    let s_now = ctx.space.load(ctx.current);
    let s = ctx.model.load_factor_for(d, s_now, d - gain)?;
    (s.is_finite() && s > full && s < s_now).then_some(s)
}

/// Memory that the last step, made for memory pressure, did not relieve: a completed change
/// to the running configuration, at most [`MEMORY_UNRELIEVED_MINUTES`] ago, at about the
/// same input rate, and memory still at or above [`MEMORY_HIGH`]. More memory per subtask
/// did not help, so another restart would not either: hold.
fn memory_unrelieved(ctx: &Context<'_>, mem: f64, figures: &str) -> Option<Finding> {
    let sig = ctx.signals;
    let last = last_scaling(ctx.history)?;
    let completed = last.completed_at?;
    if last.cause != Cause::MemoryPressure
        || last.outcome != Outcome::Succeeded
        || last.to != ctx.current
        || last.from == last.to
        || mem < MEMORY_HIGH
        || ts_ms(ctx.now) - ts_ms(completed) > MEMORY_UNRELIEVED_MINUTES * 60_000
    {
        return None;
    }
    if let (Some(l0), Some(l1)) = (last.records_in_before_per_second, sig.records_in)
        && l0 > 0.0
        && (l1 / l0 - 1.0).abs() > INEFFECTIVE_LOAD_CHANGE
    {
        return None;
    }
    Some(Finding::new(
        Cause::MemoryPressure,
        format!(
            "Memory is still at {} after the last step for memory pressure ({}) at about the \
             same input ({figures}, {} full restart(s) in the window): more memory per subtask \
             did not relieve it, so another restart would not either. {CONFIRM_MEMORY_UNRELIEVED}",
            fmt_pct(Some(mem)),
            fmt_change(last.from, last.to),
            sig.restarts.round(),
        ),
        Some(ADVICE_MEMORY_UNRELIEVED.to_owned()),
        Need::Hold(Reason::ScalingIneffective),
    ))
}

/// The "scaling is ineffective" verdict: the last scaling was a completed scale-up to the
/// running configuration, made for a breach of the budget, and it achieved less than
/// `INEFFECTIVE_GAIN` of the improvement the model predicted (adjusted for the change of
/// input rate), or the two durations put the part no parallelism shortens beyond the budget
/// (allowing for the noise), while CPU is not saturated (saturation means the step was too
/// small or the load grew, not skew). The job stays on the running configuration: going
/// back would be a second restart, and the target for a hot key is one (the proving
/// step, kept small by [`proving_load`] so that staying costs little). The verdict is
/// lifted when the input rate moved by more than `INEFFECTIVE_LOAD_CHANGE` since the
/// scale-up, or `INEFFECTIVE_RETRY_HOURS` after it completed.
fn ineffective_scale_up(ctx: &Context<'_>, budget_ms: f64) -> Option<Finding> {
    let sig = ctx.signals;
    if sig.cpu_saturated() {
        return None;
    }
    let last = last_scaling(ctx.history)?;
    let completed = last.completed_at?;
    let d0 = last.checkpoint_duration_before_ms?;
    // Only a scale-up made for a breach promised a shorter duration (a proactive one, made
    // while checkpoints were fine, is judged by the breach that comes later, not as skew).
    if last.outcome != Outcome::Succeeded || last.to != ctx.current || d0 <= budget_ms {
        return None;
    }
    let (s0, s1) = (ctx.space.load(last.from), ctx.space.load(last.to));
    if s1 >= s0 {
        return None;
    }
    if ts_ms(ctx.now) - ts_ms(completed) > INEFFECTIVE_RETRY_HOURS * 3_600_000 {
        return None;
    }
    let load_ratio = match (last.records_in_before_per_second, sig.records_in) {
        (Some(l0), Some(l1)) if l0 > 0.0 => {
            let r = l1 / l0;
            if (r - 1.0).abs() > INEFFECTIVE_LOAD_CHANGE {
                return None;
            }
            r
        }
        _ => 1.0,
    };
    let fixed = DEFAULT_FIXED_DURATION_FRACTION * d0;
    let predicted = fixed + (d0 - fixed) * (s1 / s0) * load_ratio;
    let expected_gain = d0 - predicted;
    let d1 = sig.duration;
    let gain = d0 - d1;
    // The two durations fit `d = a + b * s`: `a` is the part no parallelism shortens (the
    // hot subtask's share of the state, a slow synchronous phase). Beyond the budget even
    // allowing for the noise (which the fit multiplies by `s1 / (s0 - s1)`), no allowed
    // configuration brings the checkpoints under it, however much the step helped.
    let unscalable = (d1 * s0 - d0 * load_ratio * s1) / (s0 - s1);
    let unscalable_beyond = unscalable - duration_noise(sig) * s1 / (s0 - s1) >= budget_ms && d1 > budget_ms;
    if expected_gain <= 0.0 || (gain >= INEFFECTIVE_GAIN * expected_gain && !unscalable_beyond) {
        return None;
    }
    let why = if gain >= INEFFECTIVE_GAIN * expected_gain {
        format!(
            "the part of the checkpoint that parallelism did not shorten is about {}, above the \
             budget, so no configuration brings the checkpoints under it",
            fmt_ms(unscalable)
        )
    } else {
        "more parallelism does not help".to_owned()
    };
    Some(Finding::new(
        Cause::StateSkew,
        format!(
            "The last scale-up ({}) changed the checkpoint duration from {} to {} where about {} \
             was expected, while CPU stayed at {} and the input at {} (budget {}): one subtask \
             dominates, and {why}. The job stays on this configuration: going back would be a \
             second restart for a hot key. {CONFIRM_SKEW}",
            fmt_change(last.from, last.to),
            fmt_ms(d0),
            fmt_ms(d1),
            fmt_ms(predicted),
            fmt_pct(sig.cpu),
            sig.records_in
                .map_or_else(|| "n/a".to_owned(), |r| format!("{r:.0} records/s")),
            fmt_ms(budget_ms)
        ),
        Some(ADVICE_SKEW.to_owned()),
        Need::Hold(Reason::ScalingIneffective),
    ))
}
