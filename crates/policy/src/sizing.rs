//! The capacity model: how a configuration's checkpoint duration, CPU and memory change
//! with parallelism and ParallelismPerKPU, and how much capacity a fix needs (DS2-style:
//! size the step from the observation, in one go).
//!
//! ## The model
//! A checkpoint completes when its slowest subtask has uploaded its state, and the job
//! keeps up when its busiest subtask does. Both are driven by the subtask with the most key
//! groups: `ceil(maxParallelism / parallelism)` of them, sharing one KPU's vCPU, memory and
//! network with `min(perKpu, parallelism)` subtasks. Their product is the *load factor*
//! ([`load_factor`]): the work the most loaded vCPU carries, in key groups.
//!
//! - checkpoint duration = fixed part + variable part × load factor, where the fixed part
//!   (barriers, metadata, the synchronous phase) does not shrink with more resources;
//! - CPU utilization and busy time scale with the load factor (times the input rate);
//! - memory = a fixed part (JVM, framework, buffers) + a part that scales with it.
//!
//! So more parallelism (fewer key groups per subtask) and a lower ParallelismPerKPU (fewer
//! subtasks per vCPU) both lower the load factor; the engine picks the cheapest
//! configuration (in KPUs) whose load factor meets the need, with the knob the cause calls
//! for (see `bounds`).

use jiff::Timestamp;

use super::{
    signals::{Signals, ts_ms},
    tuning::*,
    types::{AppConfig, History, HourlyRate, Outcome},
};

/// What a scale-up step was sized on (for the message: what the step promises).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Basis {
    /// The checkpoint duration model.
    Duration,
    /// Throughput: CPU/busy time and the lag trend (the duration is inflated by alignment).
    Throughput,
    /// Memory utilization.
    Memory,
    /// The duration model, for a proving step: the smallest step whose effect tells large
    /// state from a hot key (see `diagnose`).
    Proving,
}

/// The work the most loaded vCPU carries, in key groups:
/// `ceil(maxParallelism / parallelism) * min(perKpu, parallelism)`.
pub(crate) fn load_factor(config: AppConfig, max_parallelism: u32) -> f64 {
    let p = config.parallelism.max(1);
    let k = config.parallelism_per_kpu.max(1);
    f64::from(max_parallelism.max(1).div_ceil(p)) * f64::from(k.min(p))
}

/// The duration model fitted to the running configuration.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct DurationModel {
    /// The part of the duration that no configuration removes, ms.
    pub fixed_ms: f64,
    /// Whether `fixed_ms` was fitted from a past scaling rather than assumed.
    pub fitted: bool,
}

impl DurationModel {
    /// Fits the fixed part from the last completed scaling when it ran at about the same
    /// load and led to the running configuration; otherwise assumes
    /// `DEFAULT_FIXED_DURATION_FRACTION` of the current duration.
    pub fn fit(
        history: &History,
        current: AppConfig,
        max_parallelism: u32,
        duration_ms: f64,
        records_in: Option<f64>,
    ) -> Self {
        let assumed = Self {
            fixed_ms: DEFAULT_FIXED_DURATION_FRACTION * duration_ms,
            fitted: false,
        };
        let Some(last) = history.scalings.iter().max_by_key(|r| r.at) else {
            return assumed;
        };
        let (Some(d0), Some(l0), Some(l1)) = (
            last.checkpoint_duration_before_ms,
            last.records_in_before_per_second,
            records_in,
        ) else {
            return assumed;
        };
        if last.outcome != Outcome::Succeeded || last.to != current || l0 <= 0.0 {
            return assumed;
        }
        if (l1 / l0 - 1.0).abs() > SAME_LOAD_TOLERANCE {
            return assumed;
        }
        let (s0, s1) = (
            load_factor(last.from, max_parallelism),
            load_factor(last.to, max_parallelism),
        );
        if (s0 - s1).abs() < f64::EPSILON {
            return assumed;
        }
        // d0 = a + b*s0 and d1 = a + b*s1 at the same load.
        let b = (d0 - duration_ms) / (s0 - s1);
        if !(b.is_finite() && b > 0.0) {
            return assumed;
        }
        let a = (d0 - b * s0).clamp(0.0, MAX_FIXED_DURATION_FRACTION * duration_ms);
        Self {
            fixed_ms: a,
            fitted: true,
        }
    }

    /// Predicted duration at load factor `s` when `duration_ms` was measured at `s_now`.
    pub fn predict(&self, duration_ms: f64, s_now: f64, s: f64) -> f64 {
        let variable = (duration_ms - self.fixed_ms).max(0.0);
        self.fixed_ms + variable * s / s_now.max(f64::MIN_POSITIVE)
    }

    /// The highest load factor at which the duration is predicted at or below `target_ms`;
    /// `None` when the fixed part alone reaches the target (no configuration helps).
    pub fn load_factor_for(&self, duration_ms: f64, s_now: f64, target_ms: f64) -> Option<f64> {
        let variable = duration_ms - self.fixed_ms;
        if variable <= 0.0 {
            return Some(f64::INFINITY);
        }
        if target_ms <= self.fixed_ms {
            return None;
        }
        Some(s_now * (target_ms - self.fixed_ms) / variable)
    }
}

/// The ratio of input demand to what the job processes now, from the lag trend: consuming
/// at rate C while R is produced grows `millisBehindLatest` by `1 - C/R` ms per ms, so
/// `R/C = 1 / (1 - growth)`. Clamped to [0.5, 4] because a steep lag slope over a few
/// points is a noisy estimate.
pub(crate) fn demand_factor(signals: &Signals) -> f64 {
    match signals.lag_growth {
        Some(g) if g.is_finite() => 1.0 / (1.0 - g.clamp(-1.0, 0.75)),
        _ => 1.0,
    }
}

/// The highest load factor that gives the job the throughput it needs, DS2-style, when
/// it runs at capacity (CPU or busy time saturated; `None` otherwise):
/// - the input rate is what it processes now times the demand factor (lag trend);
/// - in steady state that rate must fit in `CPU_TARGET` % of the new capacity;
/// - and the backlog (the current lag plus what a restart of `restart_ms` adds) must drain
///   within `CATCH_UP_MINUTES`;
/// - `growth` scales the input for the load expected ahead (see [`input_growth`] and
///   [`ramp_growth`]), which must fit under [`AHEAD_CPU_CEILING`].
///
/// The CPU above `cpu_floor` (what the input does not drive, see `cpu`) scales with the
/// input; busy time has no floor.
pub(crate) fn load_factor_for_throughput(
    signals: &Signals,
    s_now: f64,
    restart_ms: i64,
    growth: f64,
    cpu_floor: f64,
) -> Option<f64> {
    let cpu = signals.cpu.filter(|c| *c >= CPU_SATURATED);
    let busy = signals
        .busy
        .map(|b| b / 10.0)
        .filter(|b| *b >= BUSY_SATURATED / 10.0);
    // The share of the running configuration's capacity the input takes now, and the floor
    // of the reading it comes from.
    let (utilization, floor) = match (cpu, busy) {
        (Some(c), Some(b)) if b > c => (b, 0.0),
        (Some(c), _) => (c, cpu_floor.min(c / 2.0)),
        (None, Some(b)) => (b, 0.0),
        (None, None) => return None,
    };
    let demand = (utilization - floor) * demand_factor(signals);
    let steady = demand / (CPU_TARGET - floor);
    // The load expected ahead need not leave the target's headroom as well (it is a
    // projection, and by the time it comes the restart's backlog is long drained): it must
    // stay clear of the cliff, with room for the busier minutes.
    let ahead = demand * growth.max(1.0) / (AHEAD_CPU_CEILING - floor).max(f64::MIN_POSITIVE);
    let backlog_ms = signals.lag.unwrap_or(0.0).max(0.0) + restart_ms as f64;
    let catch_up = demand * (1.0 + backlog_ms / (CATCH_UP_MINUTES * 60_000.0)) / (100.0 - floor);
    Some(s_now / steady.max(ahead).max(catch_up).max(f64::MIN_POSITIVE))
}

/// The highest load factor that brings memory `memory` % down to `target` %.
pub(crate) fn load_factor_for_memory(memory: f64, s_now: f64, target: f64) -> f64 {
    let variable = memory - MEMORY_FIXED;
    if variable <= 0.0 {
        return f64::INFINITY;
    }
    s_now * (target - MEMORY_FIXED).max(0.0) / variable
}

/// How much the input is expected to grow over `horizon_ms`, from its growth since the
/// last completed scaling (at least `GROWTH_MIN_ELAPSED_MINUTES` ago): 1 when it did not
/// grow or nothing is known, at most `MAX_GROWTH_FACTOR`. NB: meant for a job that keeps up
/// (its processed rate is its input rate).
pub(crate) fn input_growth(history: &History, records_in: Option<f64>, now_ms: i64, horizon_ms: i64) -> f64 {
    let Some(last) = history
        .scalings
        .iter()
        .filter(|r| r.outcome == Outcome::Succeeded)
        .max_by_key(|r| r.at)
    else {
        return 1.0;
    };
    let elapsed = now_ms - ts_ms(last.at);
    let (Some(before), Some(now)) = (last.records_in_before_per_second, records_in) else {
        return 1.0;
    };
    if elapsed < GROWTH_MIN_ELAPSED_MINUTES * 60_000 || before <= 0.0 || now <= before {
        return 1.0;
    }
    let per_ms = (now - before) / elapsed as f64;
    (1.0 + per_ms * horizon_ms as f64 / now).clamp(1.0, MAX_GROWTH_FACTOR)
}

/// A sustained rise of the input, from its hourly averages (the same `numRecordsInPerSecond`
/// history the forecast learns from, available from the first hours on).
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Ramp {
    /// Growth per hour, relative to the current rate.
    pub per_hour: f64,
    /// How long the input has been rising, hours.
    pub hours: f64,
}

/// The ramp the input is on, when the last [`RAMP_MIN_HOURS`] complete hours rose one after
/// the other, each by a fair share of the rise (a step, one hour's jump, is not a ramp),
/// and the rate now is above the last hour's: the slope is the least-squares line through
/// the rising hours (at their midpoints) and the rate now.
///
/// When the input is still rising now (`rising_now`: a trusted upward trend over the last
/// half hour, see `signals::input_trend`), the last two complete hours will do if each rose
/// for real (at least [`RAMP_MIN_RISE`]: an accelerating ramp rises least in its first
/// hour, and the flat hours before it rise by noise alone) and the rise since the last
/// hour's midpoint keeps pace with the mean rise: a step that came an hour ago has levelled
/// off since, one inside the window follows hours that did not rise, and a ramp that goes
/// on shows in the last half hour's minutes.
pub(crate) fn ramp(
    hourly: &[HourlyRate],
    rate_now: Option<f64>,
    now: Timestamp,
    rising_now: bool,
) -> Option<Ramp> {
    const HOUR_S: i64 = 3600;
    let rate_now = rate_now.filter(|r| r.is_finite() && *r > 0.0)?;
    let this_hour = now.as_second().div_euclid(HOUR_S) * HOUR_S;
    let mut hours: Vec<(i64, f64)> = hourly
        .iter()
        .map(|h| (h.at.as_second().div_euclid(HOUR_S) * HOUR_S, h.records_per_second))
        .filter(|(s, v)| *s < this_hour && v.is_finite() && *v >= 0.0)
        .collect();
    hours.sort_by_key(|h| h.0);
    hours.dedup_by_key(|h| h.0);
    // The run of consecutive, rising hours that ends with the last complete one.
    let last = hours
        .last()
        .filter(|h| h.0 == this_hour - HOUR_S && h.1 < rate_now)?;
    let mut run = vec![*last];
    for h in hours.iter().rev().skip(1) {
        let next = run[run.len() - 1];
        if h.0 != next.0 - HOUR_S || h.1 >= next.1 {
            break;
        }
        run.push(*h);
    }
    run.reverse();
    // Each rise at least a fair share of the mean rise: a ramp rises every hour, a step
    // all at once.
    let even = |steps: &[f64]| {
        let mean = steps.iter().sum::<f64>() / steps.len().max(1) as f64;
        steps.iter().all(|d| *d >= RAMP_EVENNESS * mean)
    };
    let rises = |hours: &[(i64, f64)]| hours.windows(2).map(|w| w[1].1 - w[0].1).collect::<Vec<f64>>();
    let recent = &run[run.len().saturating_sub(RAMP_MIN_HOURS)..];
    if !(run.len() >= RAMP_MIN_HOURS && even(&rises(recent))) {
        // Still rising now: one complete hour fewer will do (the older hours of a longer
        // run may be the flat input before the ramp, rising by noise alone), with the rise
        // per hour from the last hour's midpoint to now as the last of the fair shares.
        if !rising_now || run.len() + 1 < RAMP_MIN_HOURS {
            return None;
        }
        run.drain(..run.len() + 1 - RAMP_MIN_HOURS);
        let mid = |s: i64| (s + HOUR_S / 2) as f64 / 3600.0;
        let since = now.as_second() as f64 / 3600.0 - mid(last.0);
        if since <= 0.0 {
            return None;
        }
        // The hours' rises need only be real (an accelerating ramp's first hour rises
        // least); the rise since the last hour must keep pace with the mean rise.
        let mut steps = rises(&run);
        if steps.iter().zip(&run).any(|(d, h)| *d < RAMP_MIN_RISE * h.1) {
            return None;
        }
        steps.push((rate_now - last.1) / since);
        let mean = steps.iter().sum::<f64>() / steps.len() as f64;
        if steps.last().is_none_or(|d| *d < RAMP_EVENNESS * mean) {
            return None;
        }
    }
    let mut points: Vec<(f64, f64)> = run
        .iter()
        .map(|(s, v)| ((s + HOUR_S / 2 - now.as_second()) as f64 / 3600.0, *v))
        .collect();
    points.push((0.0, rate_now));
    let n = points.len() as f64;
    let (mx, my) = (
        points.iter().map(|p| p.0).sum::<f64>() / n,
        points.iter().map(|p| p.1).sum::<f64>() / n,
    );
    let sxx: f64 = points.iter().map(|p| (p.0 - mx).powi(2)).sum();
    let sxy: f64 = points.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    let slope = sxy / sxx;
    (slope.is_finite() && slope > 0.0).then(|| Ramp {
        per_hour: slope / rate_now,
        hours: -points[0].0,
    })
}

/// How much to size a step ahead of a ramp: the input expected after the step's economic
/// horizon. The EOQ trade-off: a step sized `H` hours ahead over-provisions about half the
/// ramp's added KPUs over those hours and saves a restart every `H` hours, so
/// `H = sqrt(2 × restart cost / (KPUs added per hour × 60))` — were the ramp sure to go on.
/// It is not: a rise that has lasted `T` hours goes on for another `t` with probability
/// `T / (T + t)` (as likely to last as long again as not), so the rise expected within `H`
/// is that of `T × ln(1 + H / T)` hours of the ramp (more than `T` when the economic horizon
/// is far beyond it, less than `H` when the ramp is young). At most
/// [`RAMP_MAX_GROWTH_FACTOR`].
///
/// `restart_cost` is a restart in KPU-minutes (violation minutes priced in), `kpus_needed`
/// the KPUs the input needs now.
pub(crate) fn ramp_growth(ramp: Ramp, restart_cost: f64, kpus_needed: f64) -> f64 {
    let added_per_hour = kpus_needed * ramp.per_hour;
    if !(added_per_hour.is_finite() && added_per_hour > 0.0 && restart_cost > 0.0 && ramp.hours > 0.0) {
        return 1.0;
    }
    let economic = (2.0 * restart_cost / (added_per_hour * 60.0)).sqrt();
    let expected = ramp.hours * (economic / ramp.hours).ln_1p();
    (1.0 + ramp.per_hour * expected).clamp(1.0, RAMP_MAX_GROWTH_FACTOR)
}

/// How long a restart takes, from the completed scalings in history (mean), clamped to
/// [1 min, 1 h]; `DEFAULT_RESTART_MINUTES` without any.
pub(crate) fn restart_estimate_ms(history: &History) -> i64 {
    let spans: Vec<i64> = history
        .scalings
        .iter()
        .filter(|r| r.outcome == Outcome::Succeeded)
        .filter_map(|r| r.completed_at.map(|c| ts_ms(c) - ts_ms(r.at)))
        .filter(|d| *d > 0)
        .collect();
    if spans.is_empty() {
        return DEFAULT_RESTART_MINUTES * 60_000;
    }
    let mean = spans.iter().sum::<i64>() / spans.len() as i64;
    mean.clamp(60_000, 3_600_000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn load_factor_counts_key_groups_and_shared_vcpus() {
        // 128 key groups over 32 subtasks: 4 each, 2 per vCPU -> 8.
        assert_eq!(load_factor(AppConfig::new(32, 2), 128), 8.0);
        // 43 subtasks: the busiest holds 3 key groups, alone on its vCPU.
        assert_eq!(load_factor(AppConfig::new(43, 1), 128), 3.0);
        // perKpu above parallelism: the lone subtask has the whole KPU.
        assert_eq!(load_factor(AppConfig::new(1, 4), 128), 128.0);
    }

    #[test]
    fn duration_model_solves_for_the_target() {
        let m = DurationModel {
            fixed_ms: 10_000.0,
            fitted: false,
        };
        // 100 s at s=16 -> 90 s variable; 55 s needs 45 s variable -> s = 8.
        assert_eq!(m.load_factor_for(100_000.0, 16.0, 55_000.0), Some(8.0));
        assert_eq!(m.predict(100_000.0, 16.0, 8.0), 55_000.0);
        assert_eq!(m.load_factor_for(100_000.0, 16.0, 9_000.0), None);
    }

    fn hourly(now_h: i64, rates: &[f64]) -> Vec<HourlyRate> {
        let start = now_h - rates.len() as i64;
        rates
            .iter()
            .enumerate()
            .map(|(i, r)| HourlyRate {
                at: Timestamp::from_second((start + i as i64) * 3600).unwrap(),
                records_per_second: *r,
                busiest_minute_per_second: None,
            })
            .collect()
    }

    #[test]
    fn a_ramp_rises_hour_after_hour_and_a_step_does_not() {
        let h = 500_000;
        let now = Timestamp::from_second(h * 3600 + 1800).unwrap();
        // 5k to 13k over four hours, 14k now: 2,500 records/s an hour (18%), for four hours.
        let r = ramp(
            &hourly(h, &[5000.0, 6000.0, 9500.0, 13000.0]),
            Some(14_000.0),
            now,
            false,
        )
        .unwrap();
        assert!((r.per_hour - 2500.0 / 14_000.0).abs() < 1e-9, "{r:?}");
        assert!((r.hours - 4.0).abs() < 1e-9, "{r:?}");
        // One hour's jump is a step, not a ramp.
        assert_eq!(
            ramp(
                &hourly(h, &[6000.0, 6100.0, 6200.0, 13000.0]),
                Some(13_100.0),
                now,
                false
            ),
            None
        );
        // Flat, falling, or below the last hour now.
        assert_eq!(
            ramp(&hourly(h, &[6000.0, 6000.0, 6000.0]), Some(6000.0), now, false),
            None
        );
        assert_eq!(
            ramp(&hourly(h, &[9000.0, 8000.0, 7000.0]), Some(6000.0), now, false),
            None
        );
        assert_eq!(
            ramp(&hourly(h, &[6000.0, 8000.0, 10000.0]), Some(9000.0), now, false),
            None
        );
        // A gap in the hours ends the run.
        let mut gap = hourly(h, &[6000.0, 8000.0, 10000.0, 12000.0]);
        gap.remove(1);
        assert_eq!(ramp(&gap, Some(13_000.0), now, false), None);

        // Two rising hours make a ramp only while the input still rises in the window, and
        // only when the rise since the last hour keeps pace: 6k, 8k at the hours' midpoints,
        // 10k now (an hour after the last midpoint) is 2,000 an hour throughout.
        let two = hourly(h, &[6000.0, 6000.0, 8000.0]);
        let r = ramp(&two, Some(10_000.0), now, true).expect("a ramp that goes on");
        assert!((r.per_hour - 2000.0 / 10_000.0).abs() < 1e-9, "{r:?}");
        // The same hours are what a step half-way through the last hour (6k, then 10k)
        // leaves; the window no longer rises then, so it is no ramp.
        assert_eq!(ramp(&two, Some(10_000.0), now, false), None);
        // A rise since the last hour far behind the hours' pace is not one either.
        assert_eq!(
            ramp(&hourly(h, &[4000.0, 4000.0, 8000.0]), Some(8_300.0), now, true),
            None
        );

        // An accelerating ramp out of a flat input: the flat hours before it rose by noise
        // alone, the last hour by 7%, and the input far faster since. While it still rises
        // now that is a ramp, from the last two hours on (the first rose least).
        let onset = hourly(h, &[13_780.0, 13_784.0, 14_742.0]);
        let r = ramp(&onset, Some(24_500.0), now, true).expect("a ramp under way");
        assert!((r.hours - 2.0).abs() < 1e-9, "{r:?}");
        assert!(r.per_hour > 0.2, "{r:?}");
        assert_eq!(ramp(&onset, Some(24_500.0), now, false), None);
        // A step inside the window after flat hours rises now too, but the hours before it
        // did not rise for real.
        assert_eq!(
            ramp(&hourly(h, &[6000.0, 6002.0]), Some(12_000.0), now, true),
            None
        );
    }

    #[test]
    fn a_ramp_step_balances_restarts_against_idle_kpus() {
        let ramp = Ramp {
            per_hour: 0.1,
            hours: 10.0,
        };
        // A restart worth 600 KPU-minutes, 10 KPUs needed now growing 1 KPU an hour:
        // sqrt(2 × 600 / 60) ≈ 4.5 hours ahead, of which a ramp ten hours old is expected to
        // rise for 10 × ln(1 + 4.5 / 10) ≈ 3.7.
        let g = ramp_growth(ramp, 600.0, 10.0);
        let expected = 10.0 * (1.0 + 20f64.sqrt() / 10.0).ln();
        assert!((g - (1.0 + 0.1 * expected)).abs() < 1e-9, "{g}");
        assert!((g - 1.37).abs() < 0.01, "{g}");
        // A ramp of two hours is expected to go on for less (2 × ln(1 + 4.5 / 2) ≈ 2.35
        // hours), yet further than it has lasted: the economic horizon is far beyond it.
        let young = ramp_growth(Ramp { hours: 2.0, ..ramp }, 600.0, 10.0);
        assert!((young - 1.235).abs() < 0.001, "{young}");
        // One that has barely begun is not sized ahead.
        assert!(ramp_growth(Ramp { hours: 0.0, ..ramp }, 600.0, 10.0) == 1.0);
        // Never beyond the cap.
        assert_eq!(
            ramp_growth(
                Ramp {
                    per_hour: 1.0,
                    ..ramp
                },
                600.0,
                10.0
            ),
            RAMP_MAX_GROWTH_FACTOR
        );
        // A cheap restart is not worth sizing ahead for.
        assert!(ramp_growth(ramp, 0.6, 10.0) < 1.02);
    }

    #[test]
    fn memory_model_keeps_the_fixed_part() {
        // 95% with 25% fixed: 70% variable; 70% target needs 45/70 of the load factor.
        let s = load_factor_for_memory(95.0, 70.0, 70.0);
        assert!((s - 45.0).abs() < 1e-9);
        assert_eq!(load_factor_for_memory(20.0, 70.0, 70.0), f64::INFINITY);
    }
}
