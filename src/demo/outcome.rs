//! What a demo run showed, judged minute by minute: when the budget was breached, when it
//! was met again, and whether the controller's scaling is what restored it. Pure: the
//! runner feeds it what it observed ([`Tracker::observe`]), nothing here reads a clock or
//! the emulator.

use std::time::Duration;

use crate::{
    aws::UpdateRequest,
    controller::store::Notice,
    crd::CheckpointBudgetStatus,
    policy::{AppConfig, AppStatus, Cause},
};

/// Consecutive evaluations with the SLO met, at a settled configuration, that count as
/// "restored".
pub const RESTORED_AFTER: u32 = 3;

/// Minutes before a scaling that came ahead of any breach whose durations the summary shows
/// as "before".
pub const KEPT_BEFORE_MINUTES: i64 = 5;

/// How soon, once the controller's new configuration runs, a checkpoint within budget must
/// complete for the recovery to be credited to it: the checkpoints of a restored job stay
/// slow while it catches up on the backlog its restart left (17 minutes after a 10-minute
/// restart in the step-up demo); a fault that scaling did not fix keeps them slow until it
/// ends by itself, typically much later.
pub const CREDITED_WITHIN_MINUTES: i64 = 30;

/// One emulated minute of the run, for the chart and the summary.
#[derive(Clone, Debug, PartialEq)]
pub struct Minute {
    /// Minutes since the scenario started.
    pub minute: i64,
    /// The application's status.
    pub status: AppStatus,
    /// The running configuration.
    pub config: AppConfig,
    /// The job's latest checkpoint duration (ms), as the service reports it.
    pub checkpoint_ms: Option<f64>,
    /// KPUs billed.
    pub kpus: u32,
    /// Whether the controller judged the SLO met over its window.
    pub slo_met: Option<bool>,
    /// The cause the controller diagnosed, when it judged.
    pub cause: Option<Cause>,
}

/// A scaling the demo's controller asked for.
#[derive(Clone, Debug, PartialEq)]
pub struct Scaling {
    /// Minute of the request.
    pub minute: i64,
    /// Configuration before.
    pub from: AppConfig,
    /// Configuration asked for.
    pub to: AppConfig,
    /// The policy's reason.
    pub reason: String,
}

/// What the runner saw in one emulated minute, and what the controller did in it.
#[derive(Clone, Debug)]
pub struct Observed {
    /// The application and the controller's judgement.
    pub minute: Minute,
    /// The configuration the controller asked for in this minute, and its reason.
    pub scaled_to: Option<(AppConfig, String)>,
    /// Whether the reconcile succeeded.
    pub reconciled: bool,
    /// Whether the status says no operation is in flight.
    pub nothing_in_flight: bool,
    /// Whether the controller held on a judgement (a diagnosis other than insufficient
    /// data) and did nothing.
    pub held_on_judgement: bool,
}

/// Whether the run has shown what it had to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Progress {
    /// Keep going.
    Going,
    /// The budget is restored (or kept) at a settled configuration: end the run.
    Done,
}

/// The breach/restored judgement, minute by minute.
#[derive(Clone, Debug, Default)]
pub struct Tracker {
    minutes: Vec<Minute>,
    scalings: Vec<Scaling>,
    breached_at: Option<i64>,
    restored_at: Option<i64>,
    met_run: u32,
    held: u32,
    /// Whether the controller judged the current breach (held on a diagnosis while it
    /// lasted): a fault it saw, not the slow first checkpoints of a job warming up.
    breach_judged: bool,
}

impl Tracker {
    /// The scalings so far.
    pub fn scalings(&self) -> &[Scaling] {
        &self.scalings
    }

    /// Whether the budget is breached (and not yet met again).
    pub fn breached(&self) -> bool {
        self.breached_at.is_some()
    }

    /// Consecutive minutes the controller has held on a judgement since the breach, the
    /// application running.
    pub fn held_minutes(&self) -> u32 {
        self.held
    }

    /// Takes one minute into account.
    pub fn observe(&mut self, seen: Observed) -> Progress {
        let Observed {
            minute,
            scaled_to,
            reconciled,
            nothing_in_flight,
            held_on_judgement,
        } = seen;
        if let Some((to, reason)) = scaled_to {
            self.scalings.push(Scaling {
                minute: minute.minute,
                from: minute.config,
                to,
                reason,
            });
        }
        let running = minute.status == AppStatus::Running;
        let settled = running && nothing_in_flight;
        let mut progress = Progress::Going;
        match minute.slo_met {
            Some(false) => {
                self.breached_at.get_or_insert(minute.minute);
                self.met_run = 0;
                self.restored_at = None;
                self.breach_judged |= running && held_on_judgement;
            }
            // A breach that passed before any scaling and before the controller judged it
            // (e.g. the slow first checkpoints of a job warming up) is not the one the
            // controller restores. One it judged and held on (a fault scaling cannot fix) is
            // kept: its end is reported, as the cause's, not the controller's.
            Some(true) if self.scalings.is_empty() && reconciled && !self.breach_judged => {
                self.breached_at = None;
            }
            Some(true) if self.breached_at.is_some() => {
                self.met_run += 1;
                self.restored_at.get_or_insert(minute.minute);
                if self.met_run >= RESTORED_AFTER && settled && !self.scalings.is_empty() {
                    progress = Progress::Done;
                }
            }
            // The controller scaled before the checkpoints breached the budget (it saw the
            // capacity run out first): the run ends once the new configuration has held the
            // budget, settled, for as long as a restore must.
            Some(true) if !self.scalings.is_empty() => {
                let at_last = self.scalings.last().is_some_and(|s| s.to == minute.config);
                self.met_run = if settled && at_last { self.met_run + 1 } else { 0 };
                if self.met_run >= RESTORED_AFTER {
                    progress = Progress::Done;
                }
            }
            _ => {}
        }
        let holding = self.breached_at.is_some() && running && held_on_judgement;
        self.held = if holding { self.held + 1 } else { 0 };
        self.minutes.push(minute);
        progress
    }

    /// Whether the budget was breached and then met again for [`RESTORED_AFTER`] minutes.
    pub fn restored(&self) -> bool {
        self.restored_at.is_some() && self.met_run >= RESTORED_AFTER
    }

    /// Minute of the breach (not one that passed before any scaling).
    pub fn breached_at(&self) -> Option<i64> {
        self.breached_at
    }

    /// Minute from which the SLO stayed met, when [`Tracker::restored`].
    pub fn restored_at(&self) -> Option<i64> {
        self.restored_at.filter(|_| self.restored())
    }

    /// The timeline: every scaling asked for, and every minute, in order.
    pub fn into_timeline(self) -> (Vec<Scaling>, Vec<Minute>) {
        (self.scalings, self.minutes)
    }
}

/// Causes whose end a scaling cannot claim: the controller holds on them because more
/// capacity does not help.
fn scaling_cannot_fix(cause: Cause) -> bool {
    matches!(
        cause,
        Cause::StateSkew | Cause::NotFixableByScaling | Cause::TransientFailures
    )
}

/// What a demo run showed.
#[derive(Clone, Debug)]
pub struct DemoOutcome {
    /// Whether the budget was breached and then restored.
    pub restored: bool,
    /// Minute of the first evaluation with the SLO not met.
    pub breached_at: Option<i64>,
    /// Minute from which the SLO stayed met.
    pub restored_at: Option<i64>,
    /// Every scaling asked for, in order.
    pub scalings: Vec<Scaling>,
    /// Every `UpdateApplication` request the SDK client sent.
    pub updates: Vec<UpdateRequest>,
    /// `UpdateApplication` calls the emulator received, and how many it refused.
    pub update_calls: usize,
    /// Of which refused (any error status).
    pub update_calls_refused: usize,
    /// KPUs at the start and at the end.
    pub kpus_before: u32,
    /// KPUs at the end.
    pub kpus_after: u32,
    /// The timeline.
    pub minutes: Vec<Minute>,
    /// The budget's `maxCheckpointDuration`.
    pub budget: Duration,
    /// The budget's `parallelism.maxParallelism`.
    pub max_parallelism: u32,
    /// The scenario's name.
    pub scenario: String,
    /// The final status, as the controller would have written it.
    pub status: Option<CheckpointBudgetStatus>,
    /// The Events the controller published, in order.
    pub events: Vec<Notice>,
    /// Real time the run took.
    pub wall: Duration,
}

impl DemoOutcome {
    /// The minute of the controller's scaling the restore is credited to: the last one
    /// asked for between the breach and the restore, when a checkpoint within budget
    /// completed within [`CREDITED_WITHIN_MINUTES`] of the new configuration running.
    /// `None` when the budget recovered with no scaling of the controller's in between, or
    /// when checkpoints kept breaching under the new configuration until the cause ended by
    /// itself (a fault that scaling did not fix).
    pub fn restored_by(&self) -> Option<i64> {
        let (breached, restored) = (self.breached_at?, self.restored_at?);
        let last = self
            .scalings
            .iter()
            .filter(|s| s.minute >= breached && s.minute <= restored)
            .max_by_key(|s| s.minute)?;
        let budget_ms = self.budget.as_secs_f64() * 1000.0;
        let after: Vec<&Minute> = self.minutes.iter().filter(|m| m.minute > last.minute).collect();
        // The new configuration runs from the end of the restart the scaling caused.
        let running_from = match after.iter().position(|m| m.status != AppStatus::Running) {
            Some(i) => after[i..].iter().find(|m| m.status == AppStatus::Running)?.minute,
            None => after.first()?.minute,
        };
        let fixed_at = after
            .iter()
            .find(|m| {
                m.minute >= running_from
                    && m.status == AppStatus::Running
                    && m.checkpoint_ms.is_some_and(|d| d <= budget_ms)
            })?
            .minute;
        // The controller itself judged, under its new configuration and before the recovery,
        // that scaling was not what the cause needed (the step did not help: a hot key; or a
        // fault scaling cannot fix): the cause ended by itself.
        let disowned = after.iter().any(|m| {
            m.minute >= running_from && m.minute < fixed_at && m.cause.is_some_and(scaling_cannot_fix)
        });
        (fixed_at - running_from <= CREDITED_WITHIN_MINUTES && !disowned).then_some(last.minute)
    }

    /// Minutes from the breach to the restore.
    pub fn minutes_to_restore(&self) -> Option<i64> {
        Some(self.restored_at? - self.breached_at?)
    }

    /// Checkpoint durations (ms) from the breach to the first scaling or, when the controller
    /// scaled before any breach, over the [`KEPT_BEFORE_MINUTES`] minutes up to it.
    pub fn durations_before(&self) -> Vec<f64> {
        let Some(first) = self.scalings.first() else {
            return Vec::new();
        };
        let from = self.breached_at.unwrap_or(first.minute - KEPT_BEFORE_MINUTES);
        self.durations(|m| m.minute >= from && m.minute <= first.minute)
    }

    /// Whether the controller scaled before any breach, the application runs what it last
    /// asked for, and the budget held throughout.
    pub fn kept(&self) -> bool {
        let last = self.scalings.last().map(|s| s.to);
        self.breached_at.is_none() && last.is_some() && last == self.minutes.last().map(|m| m.config)
    }

    /// Checkpoint durations (ms) once the last scaling's configuration runs and is judged
    /// again (from the restore; without one, every minute at that configuration after it).
    pub fn durations_after(&self) -> Vec<f64> {
        let Some(last) = self.scalings.last() else {
            return Vec::new();
        };
        let from = self.restored_at.unwrap_or(last.minute);
        self.durations(|m| {
            m.minute > last.minute
                && m.minute >= from
                && m.config == last.to
                && m.status == AppStatus::Running
        })
    }

    fn durations(&self, keep: impl Fn(&Minute) -> bool) -> Vec<f64> {
        self.minutes
            .iter()
            .filter(|m| keep(m))
            .filter_map(|m| m.checkpoint_ms)
            .collect()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A minute of a 4×1 application scaled to 8×1 (`scaled`), `updating` or running.
    fn minute_at(
        minute: i64,
        scaled: bool,
        updating: bool,
        checkpoint_ms: Option<f64>,
        slo_met: Option<bool>,
    ) -> Minute {
        let config = AppConfig::new(if scaled { 8 } else { 4 }, 1);
        Minute {
            minute,
            status: if updating {
                AppStatus::Updating
            } else {
                AppStatus::Running
            },
            config,
            checkpoint_ms,
            kpus: config.kpus(),
            slo_met,
            cause: None,
        }
    }

    /// Minute by minute: UPDATING for 3 minutes after each scaling, then running what it
    /// asked for; checkpoints of 3 minutes (over the 1-minute budget) until `fixed_at`, 5 s
    /// after.
    pub(crate) fn outcome(breached: i64, restored: i64, scalings: &[i64], fixed_at: i64) -> DemoOutcome {
        let minutes = (0..200)
            .map(|minute| {
                let updating = scalings.iter().any(|&s| minute > s && minute <= s + 3);
                let scaled = scalings.iter().any(|&s| minute > s);
                let checkpoint_ms = if minute >= fixed_at { 5_000.0 } else { 180_000.0 };
                minute_at(
                    minute,
                    scaled,
                    updating,
                    (!updating).then_some(checkpoint_ms),
                    Some(minute >= fixed_at),
                )
            })
            .collect();
        DemoOutcome {
            restored: true,
            breached_at: Some(breached),
            restored_at: Some(restored),
            scalings: scalings
                .iter()
                .map(|&minute| Scaling {
                    minute,
                    from: AppConfig::new(4, 1),
                    to: AppConfig::new(8, 1),
                    reason: "ScaleUpRequired".into(),
                })
                .collect(),
            updates: Vec::new(),
            update_calls: scalings.len(),
            update_calls_refused: 0,
            kpus_before: 4,
            kpus_after: 8,
            minutes,
            budget: Duration::from_secs(60),
            max_parallelism: 128,
            scenario: "test".into(),
            status: None,
            events: Vec::new(),
            wall: Duration::ZERO,
        }
    }

    #[test]
    fn a_recovery_is_credited_only_to_a_scaling_that_caused_it() {
        // Scaled 5 minutes after the breach; the new configuration's first checkpoint is
        // within budget: the controller's, however long the catch-up that follows.
        assert_eq!(outcome(10, 27, &[15], 19).restored_by(), Some(15));
        assert_eq!(outcome(10, 80, &[15], 19).restored_by(), Some(15));
        // A fault that ended by itself, no scaling.
        assert_eq!(outcome(10, 130, &[], 130).restored_by(), None);
        // Scaled (for nothing): checkpoints kept breaching under the new configuration
        // until the fault ended two hours later.
        assert_eq!(outcome(10, 140, &[15, 20], 140).restored_by(), None);
        // A scaling before the breach does not count for it.
        assert_eq!(outcome(10, 20, &[5], 20).restored_by(), None);
    }

    /// Soon after a scaling the checkpoints met the budget again, but in between the
    /// controller had judged, under its new configuration, that scaling does not help
    /// (a hot key, or a fault scaling cannot fix): the fault ended by itself.
    #[test]
    fn a_recovery_the_controller_disowned_is_not_credited_to_it() {
        for (cause, credited) in [
            (Cause::StateSkew, false),
            (Cause::NotFixableByScaling, false),
            (Cause::TransientFailures, false),
            (Cause::InsufficientData, true),
            (Cause::UnderProvisioned, true),
        ] {
            let mut o = outcome(10, 40, &[15], 40);
            // The new configuration runs from minute 19; judged at minute 30.
            o.minutes[30].cause = Some(cause);
            assert_eq!(o.restored_by().is_some(), credited, "{cause:?}");
        }
        // A judgement after the recovery does not disown it.
        let mut o = outcome(10, 40, &[15], 40);
        o.minutes[45].cause = Some(Cause::StateSkew);
        assert_eq!(o.restored_by(), Some(15));
    }

    /// Feeds `slo` (one judgement a minute from minute 0) with a scaling to 8×1 at
    /// `scaled_at`, the application updating for the two minutes after it.
    fn track(slo: &[Option<bool>], scaled_at: Option<i64>) -> (Tracker, Option<i64>) {
        let mut tracker = Tracker::default();
        for (minute, &slo_met) in slo.iter().enumerate() {
            let minute = minute as i64;
            let scaled = scaled_at.is_some_and(|s| minute > s);
            let updating = scaled_at.is_some_and(|s| minute > s && minute <= s + 2);
            let seen = Observed {
                minute: minute_at(minute, scaled, updating, None, slo_met),
                scaled_to: (scaled_at == Some(minute)).then(|| (AppConfig::new(8, 1), "ScaleUp".into())),
                reconciled: true,
                nothing_in_flight: !updating && scaled_at != Some(minute),
                held_on_judgement: scaled_at.is_none(),
            };
            if tracker.observe(seen) == Progress::Done {
                return (tracker, Some(minute));
            }
        }
        (tracker, None)
    }

    /// A breach the controller judged and held on (a fault scaling cannot fix), that ended
    /// by itself: kept and met again, with no scaling to credit.
    #[test]
    fn a_judged_breach_that_ends_by_itself_is_met_again_by_no_scaling() {
        let slo = [vec![Some(true); 3], vec![Some(false); 5], vec![Some(true); 10]].concat();
        let mut tracker = Tracker::default();
        for (minute, &slo_met) in slo.iter().enumerate() {
            let seen = Observed {
                minute: minute_at(minute as i64, false, false, None, slo_met),
                scaled_to: None,
                reconciled: true,
                nothing_in_flight: true,
                held_on_judgement: slo_met == Some(false),
            };
            assert_eq!(tracker.observe(seen), Progress::Going);
        }
        assert!(tracker.restored());
        assert_eq!((tracker.breached_at(), tracker.restored_at()), (Some(3), Some(8)));
        assert!(tracker.scalings().is_empty());
    }

    #[test]
    fn a_breach_scaled_for_and_met_again_at_a_settled_configuration_is_restored() {
        let slo = [vec![Some(true); 3], vec![Some(false); 5], vec![Some(true); 10]].concat();
        let (tracker, done) = track(&slo, Some(5));
        // Met from minute 8; the configuration settles at minute 8 (updating 6 and 7).
        assert_eq!(done, Some(10));
        assert!(tracker.restored());
        assert_eq!((tracker.breached_at(), tracker.restored_at()), (Some(3), Some(8)));
        let (scalings, minutes) = tracker.into_timeline();
        assert_eq!((scalings.len(), minutes.len()), (1, 11));
    }

    #[test]
    fn a_breach_that_passes_before_any_scaling_is_forgotten_and_not_restored() {
        // The slow first checkpoints of a job warming up: the controller holds for want of
        // data (no judgement).
        let slo = [vec![Some(false); 2], vec![Some(true); 6]].concat();
        let mut tracker = Tracker::default();
        for (minute, &slo_met) in slo.iter().enumerate() {
            let seen = Observed {
                minute: minute_at(minute as i64, false, false, None, slo_met),
                scaled_to: None,
                reconciled: true,
                nothing_in_flight: true,
                held_on_judgement: false,
            };
            assert_eq!(tracker.observe(seen), Progress::Going);
        }
        assert!(!tracker.restored());
        assert_eq!((tracker.breached_at(), tracker.restored_at()), (None, None));
    }

    #[test]
    fn a_breach_still_on_at_the_end_is_not_restored_and_holding_is_counted() {
        let slo = [vec![Some(true); 2], vec![Some(false); 6]].concat();
        let (tracker, done) = track(&slo, None);
        assert_eq!(done, None);
        assert_eq!(tracker.held_minutes(), 6);
        assert!(!tracker.restored());
        assert_eq!((tracker.breached_at(), tracker.restored_at()), (Some(2), None));
    }

    #[test]
    fn a_scaling_ahead_of_any_breach_ends_the_run_once_its_configuration_held_the_budget() {
        let (tracker, done) = track(&[Some(true); 12], Some(4));
        // Updating at 5 and 6; settled at 8×1 from minute 7: three minutes met by 9.
        assert_eq!(done, Some(9));
        assert!(!tracker.restored());
        assert_eq!(tracker.breached_at(), None);
    }
}
