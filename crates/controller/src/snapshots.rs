//! Snapshot safety, pure: whether restarting an application keeps its state, what restore
//! configuration an update sends, and how its snapshot count stands against the quota.
//!
//! Every change of `Parallelism` or `ParallelismPerKPU` restarts the job. It resumes from
//! its current state only when the service snapshots it as it stops
//! (`ApplicationSnapshotConfiguration.SnapshotsEnabled`) *and* the application restores from
//! that latest snapshot (`ApplicationRestoreType` `RESTORE_FROM_LATEST_SNAPSHOT`). With
//! snapshots off, or `SKIP_RESTORE_FROM_SNAPSHOT`, it starts without state; with
//! `RESTORE_FROM_CUSTOM_SNAPSHOT` it goes back to that snapshot, however old. The controller
//! never changes how an application restores (an update carries the application's own
//! restore configuration), so in those three cases it does not restart the application at
//! all — unless the budget says the job may lose its state (`spec.allowStateLoss`).
//!
//! The service never deletes snapshots, and every update, scaling and stop adds one. Past
//! the per-application quota, creating a snapshot by hand fails with
//! `LimitExceededException`; the service's own snapshots (on update, scaling and stop) still
//! succeed (Managed Service for Apache Flink developer guide, "Manage application backups
//! using snapshots"). So the quota does not block scaling, but an application that keeps
//! scaling fills it: the status counts them and warns from 90% of the quota on.

use crate::aws::{ApplicationDescription, Restore, SnapshotCount};

/// Snapshots per application (Managed Service for Apache Flink quotas, default).
pub const SNAPSHOT_QUOTA: u32 = 1000;

/// The share of [`SNAPSHOT_QUOTA`] from which the status warns.
pub const SNAPSHOT_WARNING_SHARE: f64 = 0.9;

/// Why the controller does not restart an application.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// The `Scaling` condition (and Event) reason.
    pub reason: &'static str,
    /// What, why, and what to change.
    pub message: String,
}

/// The restore configuration an `UpdateApplication` of `app` sends (its own), or why the
/// controller does not restart it: its restart would not resume from its current state and
/// the budget does not allow losing state.
pub fn restart_plan(app: &ApplicationDescription, allow_state_loss: bool) -> Result<Restore, Refusal> {
    let restore = app.restore.clone().unwrap_or(Restore::Latest);
    if allow_state_loss {
        return Ok(restore);
    }
    let enable = format!(
        "aws kinesisanalyticsv2 update-application --application-name {} --current-application-version-id {} \
         --application-configuration-update '{{\"ApplicationSnapshotConfigurationUpdate\":{{\"SnapshotsEnabledUpdate\":true}}}}'",
        app.name, app.version_id
    );
    let allow = "or set spec.allowStateLoss: true if the job may lose its state on a restart";
    match app.snapshots_enabled {
        Some(true) => {}
        enabled => {
            let what = if enabled.is_none() {
                "The service does not say whether snapshots are enabled for this application \
                 (ApplicationSnapshotConfigurationDescription), so they are taken to be off"
            } else {
                "Snapshots are off for this application (ApplicationSnapshotConfiguration.SnapshotsEnabled \
                 is false)"
            };
            return Err(Refusal {
                reason: "SnapshotsDisabled",
                message: format!(
                    "{what}: a restart — every change of parallelism is one — would start the job without \
                     its state. Not scaling. Enable snapshots ({enable}), {allow}."
                ),
            });
        }
    }
    match &restore {
        Restore::Latest => Ok(restore),
        Restore::Skip => Err(Refusal {
            reason: "RestoreSkipped",
            message: format!(
                "The application restarts without its state (ApplicationRestoreType \
                 SKIP_RESTORE_FROM_SNAPSHOT): a restart — every change of parallelism is one — would lose \
                 it, and the controller does not change how an application restores. Not scaling. Set its \
                 restore type to RESTORE_FROM_LATEST_SNAPSHOT with its next update ({}), {allow}.",
                restore_hint(app)
            ),
        }),
        Restore::Custom(name) => Err(Refusal {
            reason: "RestoreFromCustomSnapshot",
            message: format!(
                "The application restarts from the snapshot {name} (ApplicationRestoreType \
                 RESTORE_FROM_CUSTOM_SNAPSHOT): a restart — every change of parallelism is one — would take \
                 the job back to that snapshot's state, and the controller does not change how an \
                 application restores. Not scaling. Set its restore type to RESTORE_FROM_LATEST_SNAPSHOT \
                 with its next update ({}), {allow}.",
                restore_hint(app)
            ),
        }),
    }
}

fn restore_hint(app: &ApplicationDescription) -> String {
    format!(
        "aws kinesisanalyticsv2 update-application --application-name {} --current-application-version-id {} \
         --run-configuration-update '{{\"ApplicationRestoreConfiguration\":{{\"ApplicationRestoreType\":\
         \"RESTORE_FROM_LATEST_SNAPSHOT\"}}}}'",
        app.name, app.version_id
    )
}

/// The `Snapshots` condition: (status, reason, message).
pub fn condition(
    enabled: Option<bool>,
    count: Option<SnapshotCount>,
    quota: u32,
) -> (Option<bool>, &'static str, String) {
    if enabled != Some(true) {
        return (
            Some(false),
            "SnapshotsDisabled",
            "Snapshots are off (or not reported): a restart would lose the job's state, so the controller \
             does not restart it unless spec.allowStateLoss is true."
                .to_owned(),
        );
    }
    let Some(count) = count else {
        return (
            None,
            "SnapshotsNotCounted",
            "Snapshots are on; how many the application keeps could not be counted (see the controller's \
             log; ListApplicationSnapshots must be allowed)."
                .to_owned(),
        );
    };
    let counted = if count.complete {
        count.count.to_string()
    } else {
        format!("at least {}", count.count)
    };
    let advice = "The service never deletes snapshots and adds one with every update, scaling and stop: \
                  delete the ones no longer needed (aws kinesisanalyticsv2 delete-application-snapshot).";
    if count.count >= quota {
        (
            Some(false),
            "SnapshotQuotaReached",
            format!(
                "The application keeps {counted} snapshots, the per-application quota is {quota}: creating a \
                 snapshot by hand now fails with LimitExceededException (the service's own snapshots on \
                 update and scaling still succeed). {advice}"
            ),
        )
    } else if f64::from(count.count) >= f64::from(quota) * SNAPSHOT_WARNING_SHARE {
        (
            Some(false),
            "SnapshotQuotaNear",
            format!(
                "The application keeps {counted} snapshots of the per-application quota of {quota}; past it, \
                 creating a snapshot by hand fails with LimitExceededException. {advice}"
            ),
        )
    } else {
        (
            Some(true),
            "SnapshotsEnabled",
            format!(
                "Snapshots are on; the application keeps {counted} of the per-application quota of {quota}."
            ),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{AppConfig, AppStatus};

    fn app(enabled: Option<bool>, restore: Option<Restore>) -> ApplicationDescription {
        ApplicationDescription {
            name: "orders".into(),
            arn: "arn:aws:kinesisanalytics:eu-west-1:123456789012:application/orders".into(),
            status: AppStatus::Running,
            version_id: 7,
            config: AppConfig::new(4, 1),
            configured_parallelism: 4,
            configuration_type: "CUSTOM".into(),
            service_autoscaling: false,
            conditional_token: None,
            created: None,
            snapshots_enabled: enabled,
            restore,
            metrics_level: None,
            runtime: None,
        }
    }

    /// A row: snapshots enabled, the restore configuration, allowStateLoss, the plan (the
    /// restore sent, or the refusal's reason).
    type Row = (Option<bool>, Option<Restore>, bool, Result<Restore, &'static str>);

    #[test]
    fn a_restart_goes_ahead_only_when_it_resumes_from_the_current_state() {
        let custom = Some(Restore::Custom("before-migration".into()));
        let cases: Vec<Row> = vec![
            (Some(true), None, false, Ok(Restore::Latest)),
            (Some(true), Some(Restore::Latest), false, Ok(Restore::Latest)),
            (
                Some(false),
                Some(Restore::Latest),
                false,
                Err("SnapshotsDisabled"),
            ),
            (None, Some(Restore::Latest), false, Err("SnapshotsDisabled")),
            (Some(true), Some(Restore::Skip), false, Err("RestoreSkipped")),
            (
                Some(true),
                custom.clone(),
                false,
                Err("RestoreFromCustomSnapshot"),
            ),
            // Allowed: the application's own configuration goes with the update.
            (Some(false), Some(Restore::Latest), true, Ok(Restore::Latest)),
            (Some(true), Some(Restore::Skip), true, Ok(Restore::Skip)),
            (Some(true), custom.clone(), true, Ok(custom.clone().unwrap())),
        ];
        for (enabled, restore, allow, want) in cases {
            let got = restart_plan(&app(enabled, restore.clone()), allow);
            match (&got, want) {
                (Ok(r), Ok(w)) => assert_eq!(r, &w, "{enabled:?} {restore:?} {allow}"),
                (Err(refusal), Err(reason)) => {
                    assert_eq!(refusal.reason, reason, "{enabled:?} {restore:?}");
                    assert!(refusal.message.contains("Not scaling"), "{}", refusal.message);
                    assert!(
                        refusal.message.contains("spec.allowStateLoss"),
                        "{}",
                        refusal.message
                    );
                }
                _ => panic!("{enabled:?} {restore:?} {allow}: {got:?}"),
            }
        }
        let off = restart_plan(&app(Some(false), None), false).unwrap_err();
        assert!(
            off.message.contains("SnapshotsEnabledUpdate"),
            "the advice: {}",
            off.message
        );
        let custom = restart_plan(&app(Some(true), custom), false).unwrap_err();
        assert!(custom.message.contains("before-migration"), "{}", custom.message);
    }

    #[test]
    fn the_snapshot_count_is_judged_against_the_quota() {
        let count = |n, complete| Some(SnapshotCount { count: n, complete });
        let reason = |enabled, c| condition(enabled, c, 1000).1;
        assert_eq!(reason(Some(true), count(12, true)), "SnapshotsEnabled");
        assert_eq!(reason(Some(true), count(899, true)), "SnapshotsEnabled");
        assert_eq!(reason(Some(true), count(900, true)), "SnapshotQuotaNear");
        assert_eq!(reason(Some(true), count(1000, false)), "SnapshotQuotaReached");
        assert_eq!(reason(Some(true), None), "SnapshotsNotCounted");
        assert_eq!(reason(Some(false), count(3, true)), "SnapshotsDisabled");
        let (status, _, message) = condition(Some(true), count(1000, false), 1000);
        assert_eq!(status, Some(false));
        assert!(message.contains("at least 1000"), "{message}");
        assert!(message.contains("LimitExceededException"), "{message}");
    }
}
