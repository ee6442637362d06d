//! From raw samples to what the engine judges: which periods count (the window, minus what
//! ran before the last restart and its warm-up), whether there is enough fresh data, the
//! checkpoint figures, and the summarized [`Signals`].

use std::time::Duration;

use jiff::Timestamp;

use super::{
    stats::{self, Fit},
    tuning::*,
    types::{Budget, CheckpointFigures, History, Observation, Outcome, Sample},
};

/// Milliseconds since the epoch.
pub(crate) fn ts_ms(t: Timestamp) -> i64 {
    t.as_millisecond()
}

/// A duration in milliseconds, saturating.
pub(crate) fn dur_ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// Milliseconds (clamped at zero) as a duration.
pub(crate) fn ms_duration(ms: i64) -> Duration {
    Duration::from_millis(u64::try_from(ms).unwrap_or(0))
}

/// The metric period in ms; a zero period (never sent by a sane observer) counts as a minute.
pub(crate) fn period_ms(obs: &Observation) -> i64 {
    match dur_ms(obs.period) {
        0 => 60_000,
        p => p,
    }
}

/// The periods the decision looks at.
#[derive(Debug)]
pub(crate) struct Window<'a> {
    /// Samples inside the evaluation window, oldest first.
    pub in_window: Vec<&'a Sample>,
    /// The part of `in_window` that belongs to the running configuration and is past its
    /// warm-up: the only samples that are judged.
    pub judged: Vec<&'a Sample>,
    /// Start of the judged part when a restart or a drained backlog cut the window (ms
    /// since the epoch).
    pub judged_from: Option<i64>,
    /// Periods the window holds.
    pub expected: usize,
    /// The metric period, ms.
    pub period_ms: i64,
}

/// Whether the window can be judged.
#[derive(Debug, PartialEq)]
pub(crate) enum Readiness {
    /// Enough fresh data of the running configuration.
    Ready,
    /// Metrics are missing or stale (the text says which and by how much).
    Missing(String),
    /// A restart completed recently; the new configuration has too few periods yet.
    WarmingUp(String),
}

impl<'a> Window<'a> {
    /// Selects the window's samples and the judged part.
    pub fn select(budget: &Budget, obs: &'a Observation, history: &History, now: Timestamp) -> Self {
        let now_ms = ts_ms(now);
        let period_ms = period_ms(obs);
        let window_ms = dur_ms(budget.window).max(period_ms);
        let start = now_ms.saturating_sub(window_ms);
        // A period belongs to the window when it ends inside it: between two period
        // boundaries, the oldest whole period of the window starts before `start`.
        // NB: at a boundary this is the same as `at >= start`; off a boundary (a real
        // controller's requeue) it keeps a window of N periods from judging only N - 1.
        let mut in_window: Vec<&Sample> = obs
            .samples
            .iter()
            .filter(|s| {
                let at = ts_ms(s.at);
                at.saturating_add(period_ms) > start && at <= now_ms
            })
            .collect();
        in_window.sort_by_key(|s| s.at);
        // Samples whose period began before the last restart completed (plus the warm-up)
        // describe the old configuration or the restart itself.
        // NB: restarts by anyone count too (a deploy, the service's own scaling); one still
        // in progress counts from its start (the application is busy anyway).
        let judged_from = history
            .scalings
            .iter()
            .filter(|r| r.outcome != Outcome::InProgress)
            .map(|r| ts_ms(r.completed_at.unwrap_or(r.at)))
            .chain(
                history
                    .restarts
                    .iter()
                    .map(|r| ts_ms(r.completed_at.unwrap_or(r.at))),
            )
            .max()
            .map(|done| done.saturating_add(WARMUP_PERIODS.saturating_mul(period_ms)))
            .filter(|from| *from > start);
        let mut judged_from = judged_from;
        let mut judged: Vec<&Sample> = in_window
            .iter()
            .copied()
            .filter(|s| judged_from.is_none_or(|from| ts_ms(s.at) >= from))
            .collect();
        // A backlog that has drained: the periods until it was gone, and the next one (whose
        // checkpoint began under back-pressure and completes after it), show the catch-up,
        // not the load. It is gone once the lag is down to seconds, not merely below a
        // period: the last minutes of a catch-up still stretch the checkpoints, and a tail
        // still in progress waits. NB: a lag that is still large now is judged (growing:
        // under-provisioned; falling: the catch-up rule in `diagnose`).
        let behind = |share: f64| {
            move |s: &&Sample| {
                s.millis_behind_latest
                    .is_some_and(|l| l > share * period_ms as f64)
            }
        };
        if let Some(backlog) = judged.iter().rposition(behind(CATCH_UP_MIN_LAG_PERIODS))
            && backlog + 1 < judged.len()
            && let Some(last) = judged[backlog..]
                .iter()
                .rposition(behind(CAUGHT_UP_LAG_PERIODS))
                .map(|i| backlog + i)
        {
            let from = ts_ms(judged[last].at).saturating_add(2 * period_ms);
            judged.retain(|s| ts_ms(s.at) >= from);
            judged_from = Some(judged_from.map_or(from, |f| f.max(from)));
        }
        let expected = usize::try_from((window_ms / period_ms).max(1)).unwrap_or(usize::MAX);
        Self {
            in_window,
            judged,
            judged_from,
            expected,
            period_ms,
        }
    }

    /// How many judged periods with a duration datapoint are needed.
    pub fn required(&self) -> usize {
        let half = (self.expected as f64 * MIN_COVERAGE).ceil() as usize;
        half.max(MIN_SAMPLES).min(self.expected)
    }

    /// Whether the judged part is enough to decide on.
    pub fn readiness(&self, now: Timestamp) -> Readiness {
        let now_ms = ts_ms(now);
        let with_duration = |s: &&&Sample| s.last_checkpoint_duration_ms.is_some_and(f64::is_finite);
        let Some(newest) = self.in_window.iter().rfind(with_duration) else {
            return Readiness::Missing(format!(
                "no lastCheckpointDuration datapoint in the last {} periods",
                self.expected
            ));
        };
        let newest_end = ts_ms(newest.at).saturating_add(self.period_ms);
        let age = now_ms.saturating_sub(newest_end);
        if age > STALE_AFTER_PERIODS.saturating_mul(self.period_ms) {
            return Readiness::Missing(format!(
                "the newest lastCheckpointDuration datapoint is {} old (more than {} periods)",
                super::explain::fmt_ms(age as f64),
                STALE_AFTER_PERIODS
            ));
        }
        let judged = self.judged.iter().filter(with_duration).count();
        let required = self.required();
        if judged >= required {
            Readiness::Ready
        } else if self.judged_from.is_some() {
            Readiness::WarmingUp(format!(
                "the application restarted or caught up with a backlog recently: {judged} of the \
                 {required} periods needed to judge it in its normal running are in"
            ))
        } else {
            Readiness::Missing(format!(
                "only {judged} of the last {} periods have a lastCheckpointDuration datapoint \
                 ({required} needed)",
                self.expected
            ))
        }
    }

    /// The checkpoint figures over the whole window (what status shows).
    pub fn figures(&self) -> CheckpointFigures {
        let durations: Vec<f64> = self
            .in_window
            .iter()
            .filter_map(|s| s.last_checkpoint_duration_ms)
            .filter(|v| v.is_finite())
            .collect();
        let failed: f64 = self
            .in_window
            .iter()
            .filter_map(|s| s.failed_checkpoints)
            .filter(|v| v.is_finite() && *v > 0.0)
            .sum();
        CheckpointFigures {
            last_duration_ms: durations.last().copied(),
            max_duration_ms: stats::max(&durations),
            last_size_bytes: self
                .in_window
                .iter()
                .rev()
                .find_map(|s| s.last_checkpoint_size_bytes.filter(|v| v.is_finite())),
            max_size_bytes: self
                .in_window
                .iter()
                .filter_map(|s| s.last_checkpoint_size_bytes.filter(|v| v.is_finite()))
                .reduce(f64::max),
            failed: failed.round().min(u32::MAX as f64) as u32,
            samples: u32::try_from(durations.len()).unwrap_or(u32::MAX),
            representative_duration_ms: None,
            records_in_per_second: None,
            cpu_percent: None,
        }
    }
}

/// How the checkpoint size evolves over the judged periods.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Growth {
    /// No significant growth (or not enough data to tell).
    Steady,
    /// Growing, and the growth slows down (or too few points to tell).
    LevellingOff,
    /// Growing at an undiminished rate: keys accumulate without expiry.
    Unbounded,
}

/// The judged periods, summarized. Gaps are skipped, never read as zero.
#[derive(Clone, Debug)]
pub(crate) struct Signals {
    /// Median duration of the latest periods, ms.
    pub duration: f64,
    /// Highest judged duration, ms.
    pub duration_max: f64,
    /// Duration trend (ms per ms of time), when trusted.
    pub duration_trend: Option<Fit>,
    /// Latest checkpoint size, bytes.
    pub size: Option<f64>,
    /// Relative size growth per hour, when trusted.
    pub size_growth_per_hour: Option<f64>,
    /// How the size grows.
    pub growth: Growth,
    /// Median CPU of the latest periods, %.
    pub cpu: Option<f64>,
    /// Highest judged CPU, %.
    pub cpu_max: Option<f64>,
    /// CPU trend (% per ms), when trusted.
    pub cpu_trend: Option<f64>,
    /// Median busy time of the latest periods, ms/s.
    pub busy: Option<f64>,
    /// Highest judged busy time, ms/s.
    pub busy_max: Option<f64>,
    /// Median back-pressured time of the latest periods, ms/s.
    pub backpressure: Option<f64>,
    /// Sustained heap utilization (second highest of the latest periods), %.
    pub heap: Option<f64>,
    /// Sustained container memory utilization, %.
    pub container: Option<f64>,
    /// Full restarts in the judged periods.
    pub restarts: f64,
    /// Failed checkpoints in the judged periods.
    pub failed: f64,
    /// Periods with at least one failed checkpoint.
    pub failed_periods: u32,
    /// Whether the latest periods had failures.
    pub failing_now: bool,
    /// Latest `millisBehindLatest`.
    pub lag: Option<f64>,
    /// Lag growth in ms of lag per ms of time, when trusted.
    pub lag_growth: Option<f64>,
    /// How many of the latest periods carry a lag that has been rising since it was zero
    /// (0 when the latest lag is zero or not higher than the one before).
    pub lag_rising_periods: usize,
    /// Median input rate of the latest periods.
    pub records_in: Option<f64>,
    /// The slowest upload among the long checkpoints of the window (those taking at least
    /// half the longest): each one's size over its own duration, bytes per second. A
    /// checkpoint slow because of its upload moves its bytes at the storage's rate, whatever
    /// its size; one slow for another reason (a blocking call in the synchronous phase) moves
    /// a small one as slowly as a large one.
    pub slowest_upload: Option<f64>,
    /// Whether the long checkpoints' durations follow their sizes: `Some(false)` when
    /// their sizes differ by half or more while their durations stay within 15% (the time
    /// is spent on something else than bytes); `None` when sizes are too alike to tell.
    pub duration_follows_size: Option<bool>,
}

/// See [`Signals::duration_follows_size`].
fn follows(samples: &[&Sample], duration_max: f64) -> Option<bool> {
    let long: Vec<(f64, f64)> = samples
        .iter()
        .filter_map(
            |s| match (s.last_checkpoint_duration_ms, s.last_checkpoint_size_bytes) {
                (Some(d), Some(size)) if d > 0.0 && size > 0.0 && d >= duration_max / 2.0 => Some((d, size)),
                _ => None,
            },
        )
        .collect();
    if long.len() < 3 {
        return None;
    }
    let smallest = long.iter().min_by(|a, b| a.1.total_cmp(&b.1))?;
    let largest = long.iter().max_by(|a, b| a.1.total_cmp(&b.1))?;
    if largest.1 < 1.5 * smallest.1 {
        return None;
    }
    Some(largest.0 > 1.15 * smallest.0)
}

fn values(samples: &[&Sample], f: impl Fn(&Sample) -> Option<f64>) -> Vec<f64> {
    samples
        .iter()
        .filter_map(|s| f(s))
        .filter(|v| v.is_finite())
        .collect()
}

fn recent(v: &[f64], n: usize) -> &[f64] {
    &v[v.len().saturating_sub(n)..]
}

fn points(samples: &[&Sample], now_ms: i64, f: impl Fn(&Sample) -> Option<f64>) -> Vec<(f64, f64)> {
    samples
        .iter()
        .filter_map(|s| {
            f(s).filter(|v| v.is_finite())
                .map(|v| ((ts_ms(s.at) - now_ms) as f64, v))
        })
        .collect()
}

/// The input's trend, records/s per ms, when trusted: fitted over the one-minute
/// `numRecordsInPerSecond` datapoints of the last [`INPUT_TREND_SPAN`] in `samples` that
/// are of the running configuration in normal running (from `judged_from`: a restart's
/// zeros and a catch-up's rates above the input are not the input's).
pub(crate) fn input_trend(samples: &[Sample], judged_from: Option<i64>, now: Timestamp) -> Option<f64> {
    let now_ms = ts_ms(now);
    let from = now_ms
        .saturating_sub(dur_ms(INPUT_TREND_SPAN))
        .max(judged_from.unwrap_or(i64::MIN));
    let recent: Vec<&Sample> = samples
        .iter()
        .filter(|s| (from..=now_ms).contains(&ts_ms(s.at)))
        .collect();
    trusted(&points(&recent, now_ms, |s| s.records_in_per_second)).map(|f| f.slope)
}

/// The lag trend: over the trailing run of periods with a lag (when it has at least
/// `MIN_SAMPLES`: the rate since the job started falling behind, not diluted by the periods
/// before), else over the latest `LAG_TREND_PERIODS`.
fn lag_growth(pts: &[(f64, f64)]) -> Option<f64> {
    let run = pts.iter().rev().take_while(|p| p.1 > 0.0).count();
    let fit = if run >= MIN_SAMPLES {
        stats::linear_fit(&pts[pts.len() - run..]).filter(|f| f.r2 >= TREND_MIN_R2)
    } else {
        trusted(recent_points(pts, LAG_TREND_PERIODS))
    };
    fit.map(|f| f.slope)
}

/// Length of the trailing run of positive, strictly rising lags that started from (about)
/// zero — the job *started* falling behind; 0 otherwise (a lag that was already there and
/// wobbles up is not a start).
fn rising_run(pts: &[(f64, f64)]) -> usize {
    /// A lag this small (ms) is a job that keeps up.
    const KEEPS_UP_MS: f64 = 1000.0;
    let mut run = 0;
    for w in pts.iter().rev().collect::<Vec<_>>().windows(2) {
        if w[0].1 > w[1].1 && w[0].1 > 0.0 {
            run += 1;
        } else {
            break;
        }
    }
    match pts.len().checked_sub(run + 1).map(|i| pts[i].1) {
        Some(before) if before > KEEPS_UP_MS => 0,
        _ => run,
    }
}

fn recent_points(pts: &[(f64, f64)], n: usize) -> &[(f64, f64)] {
    &pts[pts.len().saturating_sub(n)..]
}

fn trusted(pts: &[(f64, f64)]) -> Option<Fit> {
    if pts.len() < MIN_TREND_SAMPLES {
        return None;
    }
    stats::linear_fit(pts).filter(|f| f.r2 >= TREND_MIN_R2)
}

impl Signals {
    /// Summarizes the judged samples; `None` without any duration datapoint.
    pub fn from_samples(samples: &[&Sample], now: Timestamp) -> Option<Self> {
        let now_ms = ts_ms(now);
        let durations = values(samples, |s| s.last_checkpoint_duration_ms);
        let duration = stats::median(recent(&durations, RECENT_PERIODS))?;
        let duration_max = stats::max(&durations)?;
        let duration_trend = trusted(&points(samples, now_ms, |s| s.last_checkpoint_duration_ms));

        let size_pts = points(samples, now_ms, |s| s.last_checkpoint_size_bytes);
        let size = size_pts.last().map(|p| p.1);
        let size_growth_per_hour = match (trusted(&size_pts), size) {
            (Some(fit), Some(sz)) if sz > 0.0 => Some(fit.slope * 3_600_000.0 / sz),
            _ => None,
        };
        let growth = match size_growth_per_hour {
            Some(g) if g >= SIZE_GROWTH_PER_HOUR => {
                let half = size_pts.len() / 2;
                match (
                    stats::linear_fit(&size_pts[..half]),
                    stats::linear_fit(&size_pts[half..]),
                ) {
                    (Some(first), Some(second)) if half >= 3 && first.slope > 0.0 => {
                        if second.slope >= LEVELLING_OFF_RATIO * first.slope {
                            Growth::Unbounded
                        } else {
                            Growth::LevellingOff
                        }
                    }
                    _ => Growth::LevellingOff,
                }
            }
            _ => Growth::Steady,
        };

        let cpu_v = values(samples, |s| s.cpu_utilization);
        let busy_v = values(samples, |s| s.busy_time_ms_per_second);
        let mem = |f: fn(&Sample) -> Option<f64>| {
            let v = values(samples, f);
            stats::second_highest(recent(&v, MEMORY_PERIODS))
        };
        let failures = values(samples, |s| s.failed_checkpoints);
        let failing_now = samples[samples.len().saturating_sub(RECOVERED_PERIODS)..]
            .iter()
            .any(|s| s.failed_checkpoints.is_some_and(|f| f > 0.0));
        let lag_pts = points(samples, now_ms, |s| s.millis_behind_latest);
        Some(Self {
            duration,
            duration_max,
            duration_trend,
            size,
            size_growth_per_hour,
            growth,
            cpu: stats::median(recent(&cpu_v, RECENT_PERIODS)),
            cpu_max: stats::max(&cpu_v),
            cpu_trend: trusted(&points(samples, now_ms, |s| s.cpu_utilization)).map(|f| f.slope),
            busy: stats::median(recent(&busy_v, RECENT_PERIODS)),
            busy_max: stats::max(&busy_v),
            backpressure: stats::median(recent(
                &values(samples, |s| s.back_pressured_time_ms_per_second),
                RECENT_PERIODS,
            )),
            heap: mem(|s| s.heap_memory_utilization),
            container: mem(|s| s.container_memory_utilization),
            restarts: values(samples, |s| s.full_restarts)
                .iter()
                .filter(|v| **v > 0.0)
                .sum(),
            failed: failures.iter().filter(|v| **v > 0.0).sum(),
            failed_periods: u32::try_from(failures.iter().filter(|v| **v > 0.0).count()).unwrap_or(u32::MAX),
            failing_now,
            lag: lag_pts.last().map(|p| p.1),
            lag_growth: lag_growth(&lag_pts),
            lag_rising_periods: rising_run(&lag_pts),
            records_in: stats::median(recent(
                &values(samples, |s| s.records_in_per_second),
                RECENT_PERIODS,
            )),
            slowest_upload: samples
                .iter()
                .filter_map(
                    |s| match (s.last_checkpoint_duration_ms, s.last_checkpoint_size_bytes) {
                        (Some(d), Some(size)) if d > 0.0 && d >= duration_max / 2.0 => {
                            Some(size / (d / 1000.0))
                        }
                        _ => None,
                    },
                )
                .min_by(f64::total_cmp),
            duration_follows_size: follows(samples, duration_max),
        })
    }

    /// Sustained memory utilization: the higher of heap and container, %.
    pub fn memory(&self) -> Option<f64> {
        match (self.heap, self.container) {
            (Some(h), Some(c)) => Some(h.max(c)),
            (h, c) => h.or(c),
        }
    }

    /// Whether CPU, busy time or back-pressure say the job runs at its capacity.
    pub fn saturated(&self) -> bool {
        self.cpu.is_some_and(|c| c >= CPU_SATURATED)
            || self.busy.is_some_and(|b| b >= BUSY_SATURATED)
            || self.backpressure.is_some_and(|b| b >= BACKPRESSURE_HIGH)
    }

    /// When the lag falls: how long (ms) until it is gone at the current rate.
    pub fn catch_up_eta_ms(&self) -> Option<f64> {
        match (self.lag_growth, self.lag) {
            (Some(g), Some(lag)) if g < 0.0 && lag > 0.0 => Some(lag / -g),
            _ => None,
        }
    }

    /// Whether CPU itself is saturated (skew keeps average CPU low while one subtask is busy).
    pub fn cpu_saturated(&self) -> bool {
        self.cpu.is_some_and(|c| c >= CPU_SATURATED)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_input_trend_shows_a_ramp_in_half_an_hour_that_ten_minutes_lose_in_noise() {
        // 8,500 records/s rising 30 a minute (21% an hour) with ±2% noise (a fixed
        // pattern), one datapoint a minute for the last hour.
        let now = Timestamp::from_second(1_767_600_000).unwrap();
        let noise = [
            0.02, -0.015, 0.005, -0.02, 0.01, 0.018, -0.008, -0.019, 0.012, 0.0,
        ];
        let samples: Vec<Sample> = (1..=60)
            .map(|back: i64| Sample {
                at: Timestamp::from_second(now.as_second() - back * 60).unwrap(),
                records_in_per_second: Some(
                    (8500.0 - 30.0 * back as f64) * (1.0 + noise[back as usize % noise.len()]),
                ),
                ..Sample::default()
            })
            .collect();
        let per_minute = input_trend(&samples, None, now).expect("trusted over half an hour") * 60_000.0;
        assert!((per_minute - 30.0).abs() < 6.0, "{per_minute}");
        // The last ten minutes alone (a restart twenty minutes ago) do not trust it.
        let restarted = Some(ts_ms(now) - 10 * 60_000);
        assert_eq!(input_trend(&samples, restarted, now), None);
        // A flat input has no trend.
        let flat: Vec<Sample> = samples
            .iter()
            .map(|s| Sample {
                records_in_per_second: s.records_in_per_second.map(|_| 8500.0),
                ..s.clone()
            })
            .collect();
        assert!(input_trend(&flat, None, now).is_none_or(|t| t.abs() < 1e-9));
    }

    fn pts(lags: &[f64]) -> Vec<(f64, f64)> {
        lags.iter()
            .enumerate()
            .map(|(i, l)| (i as f64 * 60_000.0, *l))
            .collect()
    }

    #[test]
    fn a_rising_run_counts_only_a_start_from_zero() {
        assert_eq!(rising_run(&pts(&[0.0, 0.0, 13_000.0, 46_000.0])), 2);
        assert_eq!(rising_run(&pts(&[0.0, 500.0, 20_000.0])), 2);
        // A lag that was already there and wobbles up is not a start.
        assert_eq!(rising_run(&pts(&[100_000.0, 90_000.0, 95_000.0, 99_000.0])), 0);
        assert_eq!(rising_run(&pts(&[0.0, 20_000.0, 10_000.0])), 0);
    }

    #[test]
    fn the_lag_trend_follows_the_run_since_falling_behind() {
        // Zeros before the run would halve the slope of a fit over the last five periods.
        let g = lag_growth(&pts(&[0.0, 0.0, 10_000.0, 30_000.0, 50_000.0])).unwrap();
        assert!((g - 20_000.0 / 60_000.0).abs() < 1e-9, "{g}");
        assert_eq!(lag_growth(&pts(&[0.0, 0.0])), None);
    }
}
