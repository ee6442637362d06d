//! Building the budget's status: conditions in the HPA's style, and the bounded history.

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use crate::policy::{History, ScalingRecord};

/// Condition type: the controller can observe the application and act on it.
pub const READY: &str = "Ready";
/// Condition type: checkpoints are within the budget over the window.
pub const SLO_MET: &str = "SloMet";
/// Condition type: a scaling is in flight (True) or why none is (False).
pub const SCALING: &str = "Scaling";
/// Condition type: a restart keeps the job's state, and the snapshots stay below the quota.
pub const SNAPSHOTS: &str = "Snapshots";

/// How many past scalings the status keeps.
pub const MAX_SCALINGS: usize = 10;

/// A condition's status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConditionStatus {
    /// `True`.
    True,
    /// `False`.
    False,
    /// `Unknown`.
    Unknown,
}

impl ConditionStatus {
    fn as_str(self) -> &'static str {
        match self {
            ConditionStatus::True => "True",
            ConditionStatus::False => "False",
            ConditionStatus::Unknown => "Unknown",
        }
    }
}

impl From<bool> for ConditionStatus {
    fn from(b: bool) -> Self {
        if b {
            ConditionStatus::True
        } else {
            ConditionStatus::False
        }
    }
}

impl From<Option<bool>> for ConditionStatus {
    fn from(b: Option<bool>) -> Self {
        b.map_or(ConditionStatus::Unknown, ConditionStatus::from)
    }
}

/// Sets (or adds) the condition `type_`. `lastTransitionTime` moves only when the status
/// changes, as Kubernetes conventions require; reason and message always follow the latest
/// evaluation.
pub fn set_condition(
    conditions: &mut Vec<Condition>,
    type_: &str,
    status: ConditionStatus,
    reason: &str,
    message: impl Into<String>,
    generation: Option<i64>,
    now: Timestamp,
) {
    let status = status.as_str();
    let message = message.into();
    match conditions.iter_mut().find(|c| c.type_ == type_) {
        Some(c) => {
            if c.status != status {
                c.last_transition_time = Time(now);
            }
            c.status = status.to_owned();
            c.reason = reason.to_owned();
            c.message = message;
            c.observed_generation = generation;
        }
        None => conditions.push(Condition {
            type_: type_.to_owned(),
            status: status.to_owned(),
            reason: reason.to_owned(),
            message,
            observed_generation: generation,
            last_transition_time: Time(now),
        }),
    }
    // A stable order keeps server-side apply diffs and `kubectl describe` tidy.
    conditions.sort_by_key(|c| match c.type_.as_str() {
        READY => 0,
        SLO_MET => 1,
        SCALING => 2,
        super::limited::SCALING_LIMITED => 3,
        SNAPSHOTS => 4,
        _ => 5,
    });
}

/// The condition `type_`, if set.
pub fn condition<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

/// Whether the condition `type_` currently has `status` and `reason`.
pub fn has_condition(conditions: &[Condition], type_: &str, status: ConditionStatus, reason: &str) -> bool {
    condition(conditions, type_).is_some_and(|c| c.status == status.as_str() && c.reason == reason)
}

/// Appends a scaling, keeping the last [`MAX_SCALINGS`].
pub fn push_scaling(history: &mut History, record: ScalingRecord) {
    history.scalings.push(record);
    let excess = history.scalings.len().saturating_sub(MAX_SCALINGS);
    history.scalings.drain(..excess);
}

/// Replaces the history entry of the scaling started at `record.at` (the one in flight).
///
/// NB: status keeps whole seconds, so entries are matched at second precision.
pub fn update_scaling(history: &mut History, record: ScalingRecord) {
    let second = record.at.as_second();
    match history
        .scalings
        .iter_mut()
        .rev()
        .find(|s| s.at.as_second() == second)
    {
        Some(existing) => *existing = record,
        None => push_scaling(history, record),
    }
}

/// Removes the scaling started at `at` (an intent that never reached AWS).
pub fn remove_scaling(history: &mut History, at: Timestamp) {
    let second = at.as_second();
    history.scalings.retain(|s| s.at.as_second() != second);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + s).unwrap()
    }

    #[test]
    fn transition_time_moves_only_when_status_changes() {
        let mut c = Vec::new();
        set_condition(
            &mut c,
            SLO_MET,
            ConditionStatus::True,
            "WithinBudget",
            "ok",
            Some(1),
            ts(0),
        );
        set_condition(
            &mut c,
            SLO_MET,
            ConditionStatus::True,
            "WithinBudget",
            "still ok",
            Some(2),
            ts(60),
        );
        assert_eq!(c[0].last_transition_time, Time(ts(0)));
        assert_eq!(c[0].message, "still ok");
        assert_eq!(c[0].observed_generation, Some(2));
        set_condition(
            &mut c,
            SLO_MET,
            ConditionStatus::False,
            "ScaleUpRequired",
            "slow",
            Some(2),
            ts(120),
        );
        assert_eq!(c[0].last_transition_time, Time(ts(120)));
    }

    #[test]
    fn conditions_keep_a_stable_order() {
        let mut c = Vec::new();
        set_condition(
            &mut c,
            SCALING,
            ConditionStatus::False,
            "WithinBudget",
            "",
            None,
            ts(0),
        );
        set_condition(
            &mut c,
            READY,
            ConditionStatus::True,
            "ApplicationObserved",
            "",
            None,
            ts(0),
        );
        set_condition(
            &mut c,
            SLO_MET,
            ConditionStatus::Unknown,
            "MissingMetrics",
            "",
            None,
            ts(0),
        );
        let types: Vec<_> = c.iter().map(|c| c.type_.as_str()).collect();
        assert_eq!(types, [READY, SLO_MET, SCALING]);
    }
}
