//! The error budget in the SRE sense: an optional `objectives.target` (the share of minutes
//! within the checkpoint budget, e.g. 99.5%) over a rolling `objectives.period` (e.g.
//! `720h`, 30 days). What is left of it is what the policy may spend on planned restarts
//! (scale-downs): each costs minutes without checkpoints.
//!
//! The minutes are counted by the caller after every decision with [`account`], into at
//! most [`BUCKETS`] buckets of `period / BUCKETS` each (the status stays small whatever the
//! period); [`state`] reads what is left and how fast it burns. Pure: time comes in as an
//! argument.

use std::time::Duration;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::{
    signals::{dur_ms, ts_ms},
    sizing::restart_estimate_ms,
    types::{Budget, History},
};

/// Buckets the rolling period is counted in.
pub const BUCKETS: i64 = 24;

/// Below this share of the period's allowance left, or with fewer minutes left than
/// [`RESERVE_RESTARTS`] restarts cost, no planned restart is spent: what is left is kept
/// for breaches that scaling up must fix.
pub const LOW_SHARE: f64 = 0.25;

/// Restarts' worth of minutes always kept in reserve.
pub const RESERVE_RESTARTS: f64 = 2.0;

/// Above this share left, with a burn rate at most 1, the budget is plentiful: a planned
/// scale-down waits only half the stabilization window.
pub const PLENTIFUL_SHARE: f64 = 0.5;

/// Minutes counted in one bucket of the rolling period.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SloBucket {
    /// Start of the bucket (aligned on multiples of `period / BUCKETS` since the epoch).
    pub start: Timestamp,
    /// Minutes judged in the bucket.
    pub minutes: u32,
    /// Of those, minutes outside the checkpoint budget.
    pub bad_minutes: u32,
}

/// What the minutes counted so far say about the error budget.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ErrorBudgetState {
    /// Minutes outside the budget the period allows: `(1 - target) × period`.
    pub allowed_minutes: f64,
    /// Minutes outside the budget counted within the period.
    pub bad_minutes: u64,
    /// Minutes judged within the period.
    pub judged_minutes: u64,
    /// `allowed - bad`, in minutes (negative once overspent).
    pub remaining_minutes: f64,
    /// `remaining / allowed` (1 untouched, 0 spent, negative overspent).
    pub remaining_share: f64,
    /// How fast the budget burns in the latest bucket: its share of bad minutes over
    /// `1 - target` (1 spends exactly the allowance over the period).
    pub burn_rate: f64,
}

impl ErrorBudgetState {
    /// Whether planned restarts must stop: less than `LOW_SHARE` left, or fewer minutes
    /// than `RESERVE_RESTARTS` restarts of `restart_ms` plus the one planned.
    pub fn is_low(&self, restart_ms: i64) -> bool {
        let restart_minutes = restart_ms as f64 / 60_000.0;
        self.remaining_share < LOW_SHARE
            || self.remaining_minutes < (RESERVE_RESTARTS + 1.0) * restart_minutes
    }

    /// Whether the budget is plentiful enough to spend early (see `PLENTIFUL_SHARE`).
    pub fn is_plentiful(&self) -> bool {
        self.remaining_share > PLENTIFUL_SHARE && self.burn_rate <= 1.0
    }
}

fn bucket_ms(period: Duration) -> i64 {
    (dur_ms(period) / BUCKETS).max(60_000)
}

fn from_ms(ms: i64) -> Timestamp {
    Timestamp::from_millisecond(ms).unwrap_or(Timestamp::UNIX_EPOCH)
}

/// Counts the minutes since the last count into the rolling period: judged within budget
/// when `slo_met` is `Some(true)`, outside it when `Some(false)`, not judged (missing data)
/// when `None`. At most one window's worth of minutes is counted at once (a gap longer than
/// that was not observed). Without an error budget the count is cleared.
pub fn account(history: &mut History, budget: &Budget, slo_met: Option<bool>, now: Timestamp) {
    let Some(eb) = &budget.error_budget else {
        history.slo_minutes.clear();
        history.slo_accounted_until = None;
        return;
    };
    let now_ms = ts_ms(now);
    let since = history.slo_accounted_until.map_or(now_ms, ts_ms);
    let cap = dur_ms(budget.window).max(60_000);
    let raw = now_ms - since;
    let minutes = raw.clamp(0, cap) / 60_000;
    history.slo_accounted_until = Some(if raw < 0 || raw > cap {
        now
    } else {
        // The part of a minute not yet counted is carried to the next count.
        from_ms(since + minutes * 60_000)
    });
    let size = bucket_ms(eb.period);
    let start = from_ms(now_ms.div_euclid(size) * size);
    if let Some(met) = slo_met
        && minutes > 0
    {
        let minutes = u32::try_from(minutes).unwrap_or(u32::MAX);
        match history.slo_minutes.iter_mut().find(|b| b.start == start) {
            Some(b) => {
                b.minutes = b.minutes.saturating_add(minutes);
                if !met {
                    b.bad_minutes = b.bad_minutes.saturating_add(minutes);
                }
            }
            None => history.slo_minutes.push(SloBucket {
                start,
                minutes,
                bad_minutes: if met { 0 } else { minutes },
            }),
        }
    }
    let oldest = now_ms - dur_ms(eb.period);
    history
        .slo_minutes
        .retain(|b| ts_ms(b.start) + size > oldest && ts_ms(b.start) <= now_ms);
    history.slo_minutes.sort_by_key(|b| b.start);
}

/// The error budget's state at `now`, or `None` without `objectives.target`.
pub fn state(budget: &Budget, history: &History, now: Timestamp) -> Option<ErrorBudgetState> {
    let eb = budget.error_budget.as_ref()?;
    let size = bucket_ms(eb.period);
    let oldest = ts_ms(now) - dur_ms(eb.period);
    let within: Vec<&SloBucket> = history
        .slo_minutes
        .iter()
        .filter(|b| ts_ms(b.start) + size > oldest)
        .collect();
    let bad: u64 = within.iter().map(|b| u64::from(b.bad_minutes)).sum();
    let judged: u64 = within.iter().map(|b| u64::from(b.minutes)).sum();
    let allowance = (1.0 - eb.target).max(0.0);
    let allowed = allowance * dur_ms(eb.period) as f64 / 60_000.0;
    let remaining = allowed - bad as f64;
    let burn_rate = within
        .iter()
        .max_by_key(|b| b.start)
        .filter(|b| b.minutes > 0)
        .map_or(0.0, |b| {
            let share = f64::from(b.bad_minutes) / f64::from(b.minutes);
            if allowance > 0.0 {
                share / allowance
            } else if share > 0.0 {
                f64::INFINITY
            } else {
                0.0
            }
        });
    Some(ErrorBudgetState {
        allowed_minutes: allowed,
        bad_minutes: bad,
        judged_minutes: judged,
        remaining_minutes: remaining,
        remaining_share: if allowed > 0.0 {
            remaining / allowed
        } else if bad > 0 {
            -1.0
        } else {
            0.0
        },
        burn_rate,
    })
}

/// Whether planned restarts are held back now: what is left is low for the restart the
/// history predicts (see [`ErrorBudgetState::is_low`]).
pub fn spending_stopped(state: &ErrorBudgetState, history: &History) -> bool {
    state.is_low(restart_estimate_ms(history))
}
