//! Time rules over the history: updates in flight, cooldowns, and the HPA-style scale-down
//! stabilization (the highest recommendation within the window wins), persisted in the
//! [`History`] rather than in controller memory.

use std::time::Duration;

use jiff::Timestamp;

use super::{
    signals::{dur_ms, ts_ms},
    tuning::{MAX_RECOMMENDATIONS, PAYBACK_WINDOW_MAX},
    types::{
        AppConfig, Budget, CheckpointBaseline, Decision, History, Outcome, Reason, RecommendationRecord,
        ScalingRecord,
    },
};

/// The most recent scaling (by start time).
pub(crate) fn last_scaling(history: &History) -> Option<&ScalingRecord> {
    history.scalings.iter().max_by_key(|r| r.at)
}

/// The scaling still in progress, if any.
pub(crate) fn in_flight(history: &History) -> Option<&ScalingRecord> {
    history
        .scalings
        .iter()
        .filter(|r| r.outcome == Outcome::InProgress)
        .max_by_key(|r| r.at)
}

/// Time left (ms) of a cooldown of `cooldown` after the last scaling or restart, whoever
/// made it; 0 when over. A cooldown that ends exactly at `now` is over.
pub(crate) fn cooldown_left_ms(history: &History, cooldown: Duration, now: Timestamp) -> i64 {
    let last = history
        .scalings
        .iter()
        .map(|r| r.at)
        .chain(history.restarts.iter().map(|r| r.at))
        .max();
    last.map_or(0, |at| {
        ts_ms(at)
            .saturating_add(dur_ms(cooldown))
            .saturating_sub(ts_ms(now))
            .max(0)
    })
}

/// The outcome of scale-down stabilization.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Stabilized {
    /// The window is covered and its highest recommendation is `0`.
    Settled(AppConfig),
    /// The recommendations do not cover the window yet; `ms` until they can.
    Pending { ms: i64 },
}

/// The highest recommendation (most KPUs, then the lowest load factor via the highest
/// parallelism) over the stabilization window `[now - window, now]`, counting `raw` as the
/// recommendation made now. A record holds from its `at` until the next one, so the record
/// in force at the window's start counts too. The window must be covered by records: at
/// least one at or before its start (a fresh budget, or one whose history was lost, never
/// scales down before a full window of evidence).
pub(crate) fn stabilize(history: &History, window: Duration, raw: AppConfig, now: Timestamp) -> Stabilized {
    let now_ms = ts_ms(now);
    let window_ms = dur_ms(window);
    if window_ms == 0 {
        return Stabilized::Settled(raw);
    }
    let start = now_ms.saturating_sub(window_ms);
    let mut records: Vec<&RecommendationRecord> = history
        .recommendations
        .iter()
        .filter(|r| ts_ms(r.at) <= now_ms)
        .collect();
    records.sort_by_key(|r| r.at);
    let Some(first) = records.first() else {
        return Stabilized::Pending { ms: window_ms };
    };
    if ts_ms(first.at) > start {
        return Stabilized::Pending {
            ms: ts_ms(first.at) - start,
        };
    }
    // The last record at or before the start is in force at the start.
    let from = records.iter().rposition(|r| ts_ms(r.at) <= start).unwrap_or(0);
    let highest = records[from..]
        .iter()
        .map(|r| r.config)
        .chain(std::iter::once(raw))
        .max_by(|a, b| {
            a.kpus()
                .cmp(&b.kpus())
                .then(a.parallelism.cmp(&b.parallelism))
                .then(b.parallelism_per_kpu.cmp(&a.parallelism_per_kpu))
        })
        .unwrap_or(raw);
    Stabilized::Settled(highest)
}

/// Records `decision`'s recommendation in `history` at `now` and forgets what the
/// stabilization window no longer needs. Call it after every [`super::decide`] (whatever
/// the action), before persisting the history.
///
/// A recommendation equal to the latest record is not stored again (a record holds until
/// the next one); the record in force at the window's start is kept; at most
/// `MAX_RECOMMENDATIONS` records are kept.
pub fn remember(history: &mut History, decision: &Decision, budget: &Budget, now: Timestamp) {
    let latest = history
        .recommendations
        .iter()
        .max_by_key(|r| r.at)
        .map(|r| r.config);
    if latest != Some(decision.recommendation) {
        history.recommendations.push(RecommendationRecord {
            at: now,
            config: decision.recommendation,
        });
    }
    history.recommendations.sort_by_key(|r| r.at);
    // NB: kept over the payback window too, which may stretch the stabilization window.
    let kept = dur_ms(budget.scale_down_stabilization).max(dur_ms(PAYBACK_WINDOW_MAX));
    let start = ts_ms(now).saturating_sub(kept);
    if let Some(in_force) = history.recommendations.iter().rposition(|r| ts_ms(r.at) <= start) {
        history.recommendations.drain(..in_force);
    }
    let excess = history.recommendations.len().saturating_sub(MAX_RECOMMENDATIONS);
    if excess > 0 {
        // NB: dropping the oldest shortens the evidence, which only delays a scale-down.
        history.recommendations.drain(..excess);
    }
}

/// Records in `history` the checkpoints `decision` judged within budget, in `current`: only
/// a full window within budget (SLO met, nothing warming up or missing) with a duration and
/// a size, so the baseline is what this configuration does when all is well. Also records
/// the CPU at the input rate of any judged window (the CPU span, see `cpu`).
pub fn remember_baseline(history: &mut History, decision: &Decision, current: AppConfig, now: Timestamp) {
    super::cpu::record(history, &decision.figures, current, now);
    if decision.slo_met != Some(true)
        || !matches!(
            decision.reason,
            Reason::WithinBudget
                | Reason::ScaleDownPending
                | Reason::ScaleDownStabilized
                | Reason::CooldownActive
        )
    {
        return;
    }
    let (Some(duration_ms), Some(size_bytes)) = (
        decision.figures.representative_duration_ms,
        decision
            .figures
            .max_size_bytes
            .or(decision.figures.last_size_bytes),
    ) else {
        return;
    };
    if duration_ms.is_finite() && size_bytes.is_finite() && duration_ms >= 0.0 && size_bytes > 0.0 {
        history.baseline = Some(CheckpointBaseline {
            at: now,
            config: current,
            duration_ms,
            size_bytes,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(m: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + m * 60).unwrap()
    }

    fn rec(m: i64, p: u32) -> RecommendationRecord {
        RecommendationRecord {
            at: t(m),
            config: AppConfig::new(p, 1),
        }
    }

    fn hist(recs: Vec<RecommendationRecord>) -> History {
        History {
            baseline: None,
            cpu_span: None,
            restarts: Vec::new(),
            slo_minutes: Vec::new(),
            slo_accounted_until: None,
            scalings: Vec::new(),
            recommendations: recs,
        }
    }

    const HOUR: Duration = Duration::from_secs(3600);

    #[test]
    fn zero_window_takes_the_raw_recommendation() {
        let raw = AppConfig::new(4, 1);
        assert_eq!(
            stabilize(&History::default(), Duration::ZERO, raw, t(0)),
            Stabilized::Settled(raw)
        );
    }

    #[test]
    fn an_uncovered_window_is_pending_for_what_is_missing() {
        let h = hist(vec![rec(-40, 4)]);
        assert_eq!(
            stabilize(&h, HOUR, AppConfig::new(4, 1), t(0)),
            Stabilized::Pending { ms: 20 * 60_000 }
        );
        assert_eq!(
            stabilize(&History::default(), HOUR, AppConfig::new(4, 1), t(0)),
            Stabilized::Pending { ms: 3_600_000 }
        );
    }

    #[test]
    fn the_record_in_force_at_the_start_counts_and_older_ones_do_not() {
        // 16 until minute -61, 12 from -61 (in force at the start, -60), 6 from -30.
        let h = hist(vec![rec(-90, 16), rec(-61, 12), rec(-30, 6)]);
        assert_eq!(
            stabilize(&h, HOUR, AppConfig::new(4, 1), t(0)),
            Stabilized::Settled(AppConfig::new(12, 1))
        );
        // Exactly at the start is in force too.
        let h = hist(vec![rec(-90, 16), rec(-60, 8)]);
        assert_eq!(
            stabilize(&h, HOUR, AppConfig::new(4, 1), t(0)),
            Stabilized::Settled(AppConfig::new(8, 1))
        );
    }

    #[test]
    fn cooldown_is_over_exactly_at_its_end() {
        let h = History {
            baseline: None,
            cpu_span: None,
            restarts: Vec::new(),
            slo_minutes: Vec::new(),
            slo_accounted_until: None,
            scalings: vec![ScalingRecord {
                at: t(-5),
                completed_at: Some(t(-1)),
                from: AppConfig::new(2, 1),
                to: AppConfig::new(4, 1),
                cause: crate::Cause::UnderProvisioned,
                checkpoint_duration_before_ms: None,
                outcome: Outcome::Succeeded,
                records_in_before_per_second: None,
            }],
            recommendations: Vec::new(),
        };
        assert_eq!(cooldown_left_ms(&h, Duration::from_secs(300), t(0)), 0);
        assert_eq!(cooldown_left_ms(&h, Duration::from_secs(301), t(0)), 1000);
        assert_eq!(cooldown_left_ms(&History::default(), HOUR, t(0)), 0);
    }
}
