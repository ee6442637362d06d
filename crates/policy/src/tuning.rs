//! Every threshold of the decision engine in one place, each with the reason for its value.
//!
//! NB: these are deliberately not per-budget settings. The budget says *what* to achieve
//! (the duration SLO, bounds, cooldowns); these say how the engine reads the metrics, and a
//! platform team should not need to tune them.

/// Scale up to a configuration predicted to bring the checkpoint duration to this fraction
/// of the budget. A third of headroom absorbs the estimate's error and load growth until
/// the next evaluation, so one restart is usually enough (DS2 aims at the same kind of
/// margin with its target utilization).
pub(crate) const DURATION_TARGET: f64 = 0.65;

/// A scale-down must keep the predicted checkpoint duration at or below this fraction of
/// the budget, so it never trades KPUs for a breach.
pub(crate) const SCALE_DOWN_MAX_DURATION: f64 = 0.70;

/// "Far below the budget": the highest duration of the window at or below this fraction of
/// the budget is one of the conditions for idle headroom.
pub(crate) const IDLE_DURATION: f64 = 0.50;

/// Share of a checkpoint's duration assumed not to shrink with more parallelism (barrier
/// travel, metadata, the synchronous phase) when history gives no better estimate.
pub(crate) const DEFAULT_FIXED_DURATION_FRACTION: f64 = 0.10;

/// Upper clamp of a fitted fixed part, as a fraction of the current duration: a fit above it
/// is more likely noise than a job whose checkpoints ignore parallelism.
pub(crate) const MAX_FIXED_DURATION_FRACTION: f64 = 0.50;

/// Loads that differ by less than this ratio are "the same load" for fitting the fixed part.
pub(crate) const SAME_LOAD_TOLERANCE: f64 = 0.20;

/// CPU (%) at or above which the application counts as saturated. The same threshold the
/// service's own autoscaling uses (75%).
pub(crate) const CPU_SATURATED: f64 = 75.0;

/// CPU (%) to aim at after a scale-up: the remaining 30% drains the backlog a restart leaves
/// behind (the Flink autoscaler also counts restart time into its target capacity).
pub(crate) const CPU_TARGET: f64 = 70.0;

/// CPU (%) at or below which (together with a short duration) there is idle headroom.
pub(crate) const IDLE_CPU: f64 = 50.0;

/// A scale-down must keep the predicted CPU (%) at or below this.
pub(crate) const SCALE_DOWN_MAX_CPU: f64 = 60.0;

/// `busyTimeMsPerSecond` at or above which an operator counts as saturated.
pub(crate) const BUSY_SATURATED: f64 = 750.0;

/// `backPressuredTimeMsPerSecond` at or above which the job counts as back-pressured.
pub(crate) const BACKPRESSURE_HIGH: f64 = 500.0;

/// `backPressuredTimeMsPerSecond` from which the checkpoint duration is taken to be inflated
/// by barrier alignment: the job cannot keep up, so the step is sized on throughput
/// (DS2: processing rate and lag), not on a duration that shrinks once it keeps up.
pub(crate) const BACKPRESSURE_INFLATES_DURATION: f64 = 100.0;

/// Sustained CPU (%) at or above which the job is about to saturate: a little more load
/// and back-pressure stretches barrier alignment, so checkpoints break the budget in a
/// cliff, not a slope. Scaling up before the cliff avoids the backlog of a late restart.
pub(crate) const CPU_NEAR_SATURATION: f64 = 90.0;

/// A scale-up is sized for the input expected over the scale-down stabilization window
/// (at least `GROWTH_HORIZON_MIN_MINUTES`): the configuration cannot come down sooner
/// anyway, and a rising load would otherwise need another restart. The growth is the
/// input's since the last scaling (at least `GROWTH_MIN_ELAPSED_MINUTES` ago), never more
/// than `MAX_GROWTH_FACTOR`.
pub(crate) const GROWTH_HORIZON_MIN_MINUTES: i64 = 30;

/// See `GROWTH_HORIZON_MIN_MINUTES`.
pub(crate) const GROWTH_MIN_ELAPSED_MINUTES: i64 = 30;

/// See `GROWTH_HORIZON_MIN_MINUTES`.
pub(crate) const MAX_GROWTH_FACTOR: f64 = 1.5;

/// The most a step on a detected ramp is sized ahead (`sizing::ramp_growth`): the ramp's
/// economics (the restart against the idle KPUs, and the rise as likely to end as to last as
/// long again) already bound the step; this only bounds a misread trend. Capped at
/// `MAX_GROWTH_FACTOR` like the growth since the last scaling, a steep morning ramp took a
/// restart per 1.5× of it (unseen `u3-25-diurnal-2peak`: 3 -> 5 -> 8 -> 13 KPUs, 56
/// violation minutes; with 2×, 30).
pub(crate) const RAMP_MAX_GROWTH_FACTOR: f64 = 2.0;

/// A scale-down must save at least this share of the KPUs: every change restarts the job
/// (10-20 minutes without checkpoints, then a backlog to drain), which a saving of one KPU
/// in seven does not pay for.
pub(crate) const MIN_SCALE_DOWN_SAVING: f64 = 0.30;

/// A checkpoint that uploads less than this per KPU and second is not slow because of its
/// state: S3 gives a KPU tens of MiB/s. Such a breach (a slow external call in the
/// synchronous phase, a sink's pre-commit) is not fixable by scaling.
pub(crate) const MIN_PLAUSIBLE_UPLOAD_BYTES_PER_KPU_SECOND: f64 = 1024.0 * 1024.0;

/// In the configuration of the baseline, an upload rate (bytes per checkpoint over its
/// duration) at most a third of the baseline's is not the state's doing: the same KPUs
/// upload at about the same rate whatever the size, and even a halved S3 bandwidth only
/// halves it.
pub(crate) const BASELINE_SLOWDOWN: f64 = 3.0;

/// ... with a duration longer than the baseline's by at least this share of the budget, so
/// that seconds-long checkpoints growing by seconds are not read as a step.
pub(crate) const BASELINE_MIN_STEP_OF_BUDGET: f64 = 0.5;

/// Heap or container memory (%) at or above which memory is under pressure.
pub(crate) const MEMORY_HIGH: f64 = 90.0;

/// With OOM-like full restarts in the window, memory at or above this (%) already counts
/// as pressure: a restart resets the heap, so the peak before it is rarely sampled.
pub(crate) const MEMORY_HIGH_WITH_RESTARTS: f64 = 75.0;

/// Memory (%) to aim at after lowering ParallelismPerKPU.
pub(crate) const MEMORY_TARGET: f64 = 70.0;

/// Memory (%) a scale-down must stay under (predicted).
pub(crate) const SCALE_DOWN_MAX_MEMORY: f64 = 70.0;

/// Part of the memory utilization (%) that does not depend on how much work a KPU holds
/// (JVM, framework, network buffers).
pub(crate) const MEMORY_FIXED: f64 = 25.0;

/// A single scale-up never shrinks the work per vCPU by more than this factor: guards
/// against a wild estimate from a few noisy datapoints.
pub(crate) const MAX_SCALE_UP_FACTOR: f64 = 8.0;

/// A single scale-down keeps at least this fraction of the KPUs (cuts at most half; the
/// Flink autoscaler allows 60%, we are a little more careful because a restart here takes
/// 10-20 minutes).
pub(crate) const MIN_KEPT_ON_SCALE_DOWN: f64 = 0.50;

/// The newest duration datapoint's period must have ended at most this many periods ago.
/// CloudWatch publishes Managed Flink metrics with a delay of one to two minutes.
pub(crate) const STALE_AFTER_PERIODS: i64 = 3;

/// Periods after a restart completes that are never judged: the restore, the first
/// checkpoint after it and the start of the catch-up are not the new configuration's
/// steady state.
pub(crate) const WARMUP_PERIODS: i64 = 2;

/// Fraction of the window's periods that must carry a duration datapoint (and, after a
/// restart, that must be of the new configuration) before judging.
pub(crate) const MIN_COVERAGE: f64 = 0.50;

/// Fewer datapoints than this are never judged (a median and a trend need a few).
pub(crate) const MIN_SAMPLES: usize = 3;

/// How many of the latest periods make the "recent" figures (median): one outlier is
/// ignored, two consecutive high periods are not.
pub(crate) const RECENT_PERIODS: usize = 3;

/// How many of the latest periods are searched for sustained memory pressure (the second
/// highest value of them is used, so one spike is ignored).
pub(crate) const MEMORY_PERIODS: usize = 5;

/// A trend is trusted when a least-squares line explains at least this share of the
/// variance (r²) over at least `MIN_TREND_SAMPLES` points.
pub(crate) const TREND_MIN_R2: f64 = 0.6;

/// Points a trend needs.
pub(crate) const MIN_TREND_SAMPLES: usize = 5;

/// A rising duration is acted on before it breaches only from this fraction of the budget
/// up, and only if the trend projects a breach before a restart could complete.
pub(crate) const PROACTIVE_FLOOR: f64 = 0.80;

/// A projected duration never counts for more than this multiple of the recent one.
pub(crate) const MAX_PROJECTION_FACTOR: f64 = 2.0;

/// State growth per hour (relative to the current size) below which the size is "steady".
pub(crate) const SIZE_GROWTH_PER_HOUR: f64 = 0.05;

/// Growth "levels off" when the second half of the window grows at less than this fraction
/// of the first half's rate; otherwise it is unbounded (key cardinality, missing TTL).
pub(crate) const LEVELLING_OFF_RATIO: f64 = 0.5;

/// Restart time assumed when history has none: AWS's workshop gives 10-15 minutes.
pub(crate) const DEFAULT_RESTART_MINUTES: i64 = 10;

/// A falling `millisBehindLatest` means the job drains a backlog (left by a restart, a
/// failover or a load spike): its CPU, back-pressure and checkpoint durations describe the
/// catch-up, not the load. It is not judged while the lag, at its current rate of fall,
/// is gone within this many minutes; a slower catch-up is under-provisioning, and the step
/// is sized to drain the backlog (plus what the restart adds) within the same time, as the
/// Flink autoscaler's catch-up duration does.
pub(crate) const CATCH_UP_MINUTES: f64 = 20.0;

/// A backlog below this many periods of lag is not worth waiting for.
pub(crate) const CATCH_UP_MIN_LAG_PERIODS: f64 = 1.0;

/// After such a backlog, a lag above this share of a period is still the catch-up (a
/// consumer that keeps up reads within a few seconds of the stream's tip).
pub(crate) const CAUGHT_UP_LAG_PERIODS: f64 = 0.1;

/// The lag trend is fitted over this many latest periods: the rate of the last minutes, not
/// an average diluted by the periods before the load changed.
pub(crate) const LAG_TREND_PERIODS: usize = 5;

/// A scale-up is ineffective when it achieved less than this share of the improvement the
/// model predicted (load-adjusted) while the job was not saturated.
pub(crate) const INEFFECTIVE_GAIN: f64 = 0.30;

/// The relative noise assumed of a checkpoint duration at least (the spread of the window,
/// highest judged against the median, when it is larger): checkpoints of the same state at
/// the same load differ by a few percent with S3's latency and the input's noise.
pub(crate) const DURATION_NOISE_FLOOR: f64 = 0.05;

/// A proving step (the first step on a breach whose cause may be a hot key, see `diagnose`)
/// must predict an improvement this many times the duration's noise above the share
/// [`INEFFECTIVE_GAIN`] that judges it, so that neither a step that helps nor one that does
/// not is mistaken for the other.
pub(crate) const PROVING_MARGIN: f64 = 2.0;

/// A fixed part (the part of the checkpoint that does not shrink with the parallelism,
/// fitted from a step) of at least this share of the duration is a hot key's, not state
/// spread evenly: three times the share assumed without history
/// ([`DEFAULT_FIXED_DURATION_FRACTION`]), and more than twice the noise a fit from a
/// proving step carries.
pub(crate) const SKEWED_FIXED_SHARE: f64 = 0.30;

/// The "scaling is ineffective" verdict is lifted when the input rate moved by more than
/// this ratio since the scale-up (the situation changed) ...
pub(crate) const INEFFECTIVE_LOAD_CHANGE: f64 = 0.50;

/// ... or after this many hours: hot keys are a property of the data and rarely go away by
/// themselves, so the engine retries at most once a day.
pub(crate) const INEFFECTIVE_RETRY_HOURS: i64 = 24;

/// A step made for memory pressure that leaves memory at or above [`MEMORY_HIGH`] this soon
/// after the new configuration runs did not relieve it (a leak, an unbounded cache): the
/// engine holds instead of taking another step. Later, memory that climbs again is judged
/// afresh (state that grew since).
pub(crate) const MEMORY_UNRELIEVED_MINUTES: i64 = 120;

/// Failures are "isolated" when they happened in at most this many periods and the latest
/// `RECOVERED_PERIODS` periods had none.
pub(crate) const ISOLATED_FAILURE_PERIODS: u32 = 2;

/// See `ISOLATED_FAILURE_PERIODS`.
pub(crate) const RECOVERED_PERIODS: usize = 2;

/// `policy::remember` keeps at most this many recommendation records (a run of equal
/// recommendations is stored once, so this only bites with a flapping input).
pub(crate) const MAX_RECOMMENDATIONS: usize = 256;

/// The longest a lower load must last before a scale-down when no forecast says how long
/// it will (the payback of the restart, see `economics`): the service's own automatic
/// scaling waits six hours below its threshold before it scales down, and the policy is
/// never more reluctant than that. The recommendations are kept this long.
pub(crate) const PAYBACK_WINDOW_MAX: std::time::Duration = std::time::Duration::from_secs(6 * 3600);

/// No planned scale-up (ahead of a forecast peak) within this long after a scale-up: the
/// step is not refined by another restart on the figures of a configuration that has just
/// restarted (see `pre_scale`).
pub(crate) const PLANNED_STEP_SPACING: std::time::Duration = std::time::Duration::from_secs(2 * 3600);

/// How long an evaluation stays one end of the CPU span (see `cpu`): a day, so a daily
/// cycle shows both its trough and its peak, and a changed job (a deploy) is learned anew.
pub(crate) const CPU_SPAN_MAX_AGE_HOURS: i64 = 24;

/// How far apart the span's input rates must be for the line through them to be trusted
/// (CloudWatch's one-minute averages are noisy by a few percent).
pub(crate) const CPU_SPAN_MIN_RATIO: f64 = 1.5;

/// The highest CPU floor believed, %: beyond it the span's line is more likely noise than
/// a runtime idling at that share of its vCPU.
pub(crate) const MAX_CPU_FLOOR: f64 = 40.0;

/// Complete hours the input must have risen one after another to be a ramp (see
/// `sizing::ramp`).
pub(crate) const RAMP_MIN_HOURS: usize = 3;

/// The least share of the mean hourly rise each of those hours must show: a ramp rises
/// every hour, a step all at once.
pub(crate) const RAMP_EVENNESS: f64 = 0.25;

/// The span of one-minute `numRecordsInPerSecond` datapoints the input's trend ("still
/// rising now", see `sizing::ramp`) is fitted over, when the running configuration has run
/// that long (the metrics are read this far back even when the budget's window is shorter).
pub(crate) const INPUT_TREND_SPAN: std::time::Duration = std::time::Duration::from_secs(30 * 60);

/// The least rise of an hour's average input over the hour before, relative to it, that is
/// a real rise when the input still rises now (one-minute noise of a few percent moves an
/// hour's average by a fraction of a percent); see `sizing::ramp`.
pub(crate) const RAMP_MIN_RISE: f64 = 0.02;

/// How far the busiest minutes of an hour run above its average input (CloudWatch's
/// one-minute `numRecordsInPerSecond` varies by a few percent from minute to minute, and the
/// controller judges every minute), when the application's history does not measure it
/// (see `forecast::Profile::busiest_minute`), and at least while the load runs above its
/// history (see `ahead`). Ramps sized from the window (`AHEAD_CPU_CEILING`) keep it too.
pub(crate) const MINUTES_OVER_HOURLY_AVERAGE: f64 = 1.1;

/// A load running this far above the days learnt from (the forecast profile's level
/// correction) is growing past them, and the hours ahead may grow further: the plan keeps
/// the full margin for the busiest minutes rather than the history's own, and a peak the
/// history knows is not one (see `forecast::Profile::at_known_peak`).
pub(crate) const GROWN_LEVEL: f64 = 1.05;

/// The CPU, %, the load expected ahead (a ramp's, a rising input's) may take of a step sized
/// for it: clear of the cliff (`CPU_NEAR_SATURATION`) by the busier minutes' margin. The
/// load of now keeps `CPU_TARGET`.
pub(crate) const AHEAD_CPU_CEILING: f64 = CPU_NEAR_SATURATION / MINUTES_OVER_HOURLY_AVERAGE;
