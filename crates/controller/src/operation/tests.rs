//! Table tests of the operation state machine: (intent, application, record, now) ->
//! verdict, one row per rule and edge.

use std::time::Duration;

use jiff::{SignedDuration, Timestamp};

use super::*;
use crate::aws::{ApplicationDescription, OperationState, OperationStatus};

const ARN: &str = "arn:aws:kinesisanalytics:eu-west-1:123456789012:application/orders";
const BOUND: Duration = Duration::from_secs(30 * 60);

fn t(minutes: i64) -> Timestamp {
    Timestamp::from_second(1_800_000_000).unwrap() + SignedDuration::from_mins(minutes)
}

fn c(p: u32) -> AppConfig {
    AppConfig::new(p, 1)
}

/// 4 -> 8 decided at minute 0 on version 7, for [`ARN`].
fn intent(operation_id: Option<&str>) -> Intent {
    Intent {
        operation_id: operation_id.map(str::to_owned),
        from: c(4),
        to: c(8),
        started_at: t(0),
        version_id_before: 7,
        application_arn: Some(ARN.into()),
    }
}

fn app(status: AppStatus, version: i64, p: u32) -> ApplicationDescription {
    ApplicationDescription {
        name: "orders".into(),
        arn: ARN.into(),
        status,
        version_id: version,
        config: c(p),
        configured_parallelism: p,
        configuration_type: "CUSTOM".into(),
        service_autoscaling: false,
        conditional_token: None,
        created: None,
        snapshots_enabled: Some(true),
        restore: Some(crate::aws::Restore::Latest),
        metrics_level: None,
        runtime: None,
    }
}

fn op(status: OperationState, from_version: Option<i64>, failure: Option<&str>) -> OperationStatus {
    OperationStatus {
        operation_id: "op-1".into(),
        operation: Some("UpdateApplication".into()),
        version_change: from_version.map(|v| (v, v + 1)),
        status,
        started: Some(t(0)),
        ended: (status != OperationState::InProgress).then(|| t(12)),
        failure: failure.map(str::to_owned),
    }
}

use AppStatus::{Ready, RollingBack, Running, Updating};

/// A row: name, the intent's operation id, the application, the record, minutes since the
/// intent, the verdict.
type Row<'a> = (
    &'a str,
    Option<&'a str>,
    ApplicationDescription,
    Record<'a>,
    i64,
    Verdict,
);

#[test]
fn verdicts_from_the_service_record() {
    let running = op(OperationState::InProgress, Some(7), None);
    let done = op(OperationState::Successful, Some(7), None);
    let failed = op(OperationState::Failed, Some(7), Some("restore failed"));
    let cancelled = op(OperationState::Cancelled, Some(7), None);
    let cases: Vec<(&str, Intent, ApplicationDescription, Record<'_>, i64, Verdict)> = vec![
        (
            "in progress",
            intent(Some("op-1")),
            app(Updating, 8, 4),
            Record::Described(&running),
            10,
            Verdict::Running,
        ),
        (
            "in progress exactly at the bound is stuck",
            intent(Some("op-1")),
            app(Updating, 8, 4),
            Record::Described(&running),
            30,
            Verdict::Stuck { running_for: BOUND },
        ),
        (
            "just below the bound is not",
            intent(Some("op-1")),
            app(Updating, 8, 4),
            Record::Described(&running),
            29,
            Verdict::Running,
        ),
        (
            "successful",
            intent(Some("op-1")),
            app(Running, 8, 8),
            Record::Described(&done),
            13,
            Verdict::Succeeded {
                ended: Some(t(12)),
                operation_id: None,
            },
        ),
        (
            "successful, changed again since by someone else: still the controller's success",
            intent(Some("op-1")),
            app(Running, 9, 16),
            Record::Described(&done),
            40,
            Verdict::Succeeded {
                ended: Some(t(12)),
                operation_id: None,
            },
        ),
        (
            "failed, with the service's words",
            intent(Some("op-1")),
            app(RollingBack, 8, 4),
            Record::Described(&failed),
            13,
            Verdict::Failed {
                why: "restore failed".into(),
                ended: Some(t(12)),
                operation_id: None,
            },
        ),
        (
            "cancelled counts as failed",
            intent(Some("op-1")),
            app(Running, 9, 4),
            Record::Described(&cancelled),
            13,
            Verdict::Failed {
                why: "operation CANCELLED".into(),
                ended: Some(t(12)),
                operation_id: None,
            },
        ),
    ];
    for (name, intent, app, record, now, want) in cases {
        assert_eq!(judge(&intent, Some(&app), record, t(now), BOUND), want, "{name}");
    }
}

#[test]
fn verdicts_from_the_application_alone() {
    let cases: Vec<Row<'_>> = vec![
        ("same version, running: never applied", None, app(Running, 7, 4), Record::None, 5, Verdict::NeverApplied),
        ("same version, ready: never applied", None, app(Ready, 7, 4), Record::None, 5, Verdict::NeverApplied),
        ("same version but shown updating: not judged", None, app(Updating, 7, 4), Record::None, 5, Verdict::Unsettled),
        ("moved, updating", None, app(Updating, 8, 4), Record::None, 5, Verdict::Unsettled),
        ("moved, rolling back", None, app(RollingBack, 8, 4), Record::None, 5, Verdict::Unsettled),
        ("moved, autoscaling", None, app(AppStatus::Autoscaling, 8, 4), Record::None, 5, Verdict::Unsettled),
        (
            "unsettled past the bound is stuck",
            None,
            app(Updating, 8, 4),
            Record::None,
            45,
            Verdict::Stuck {
                running_for: Duration::from_secs(45 * 60),
            },
        ),
        (
            "moved and running the target",
            None,
            app(Running, 8, 8),
            Record::None,
            15,
            Verdict::Succeeded {
                ended: None,
                operation_id: None,
            },
        ),
        (
            "the service forgot the id; the application runs the target",
            Some("op-1"),
            app(Running, 8, 8),
            Record::Forgotten,
            15,
            Verdict::Succeeded {
                ended: None,
                operation_id: None,
            },
        ),
        (
            "two steps and back at the origin: rolled back",
            None,
            app(Running, 9, 4),
            Record::None,
            20,
            Verdict::Failed {
                why: "the application's version moved to 9 and it runs parallelism 4 at 1 per KPU (4 KPU) again (rolled back)".into(),
                ended: None,
                operation_id: None,
            },
        ),
        ("one step, at the origin: someone else's update", None, app(Running, 8, 4), Record::None, 20, Verdict::Superseded),
        ("one step, elsewhere: someone else's update", None, app(Running, 8, 6), Record::None, 20, Verdict::Superseded),
        ("several steps, elsewhere", None, app(Running, 11, 12), Record::None, 20, Verdict::Superseded),
    ];
    for (name, id, app, record, now, want) in cases {
        assert_eq!(
            judge(&intent(id), Some(&app), record, t(now), BOUND),
            want,
            "{name}"
        );
    }
}

/// An update found to start from the intent's version is the controller's only if its
/// request reached AWS, which is what is unknown: it tells whether it still runs, its id,
/// end and failure; whose it was is told by the application.
#[test]
fn verdicts_on_an_update_found_by_its_version() {
    let running = op(OperationState::InProgress, Some(7), None);
    let done = op(OperationState::Successful, Some(7), None);
    let failed = op(OperationState::Failed, Some(7), Some("restore failed"));
    let cases: Vec<(&str, ApplicationDescription, &OperationStatus, i64, Verdict)> = vec![
        ("running", app(Updating, 8, 4), &running, 5, Verdict::Running),
        (
            "running past the bound",
            app(Updating, 8, 4),
            &running,
            31,
            Verdict::Stuck {
                running_for: Duration::from_secs(31 * 60),
            },
        ),
        (
            "done, and the application runs the target: the id is learnt",
            app(Running, 8, 8),
            &done,
            13,
            Verdict::Succeeded {
                ended: Some(t(12)),
                operation_id: Some("op-1".into()),
            },
        ),
        (
            "done, but the application runs something else: another client's update",
            app(Running, 8, 6),
            &done,
            13,
            Verdict::Superseded,
        ),
        (
            "failed and rolled back to the origin: the service's words",
            app(Running, 9, 4),
            &failed,
            20,
            Verdict::Failed {
                why: "restore failed".into(),
                ended: Some(t(12)),
                operation_id: Some("op-1".into()),
            },
        ),
        (
            "failed, still rolling back",
            app(RollingBack, 8, 4),
            &failed,
            13,
            Verdict::Unsettled,
        ),
        (
            "failed, and now elsewhere",
            app(Running, 10, 6),
            &failed,
            20,
            Verdict::Superseded,
        ),
    ];
    for (name, app, found, now, want) in cases {
        assert_eq!(
            judge(&intent(None), Some(&app), Record::Found(found), t(now), BOUND),
            want,
            "{name}"
        );
    }
}

#[test]
fn an_intent_for_another_application_is_not_judged_on_this_one() {
    let gone = judge(&intent(Some("op-1")), None, Record::None, t(5), BOUND);
    assert_eq!(gone, Verdict::ApplicationGone);

    let mut elsewhere = app(Running, 8, 8);
    elsewhere.arn = "arn:aws:kinesisanalytics:eu-west-1:123456789012:application/payments".into();
    assert_eq!(
        judge(&intent(None), Some(&elsewhere), Record::None, t(5), BOUND),
        Verdict::OtherApplication
    );
    // Recreated under the same name: its versions start again.
    assert_eq!(
        judge(
            &intent(None),
            Some(&app(Running, 2, 8)),
            Record::None,
            t(5),
            BOUND
        ),
        Verdict::OtherApplication
    );
    // An intent recorded before the ARN was: judged as before.
    let mut legacy = intent(None);
    legacy.application_arn = None;
    assert_eq!(
        judge(&legacy, Some(&app(Running, 8, 8)), Record::None, t(5), BOUND),
        Verdict::Succeeded {
            ended: None,
            operation_id: None
        }
    );
}

#[test]
fn the_update_from_the_intents_version_is_the_controllers() {
    let ours = op(OperationState::Successful, Some(7), None);
    let later = op(OperationState::Successful, Some(8), None);
    let mut start = op(OperationState::Successful, Some(7), None);
    start.operation = Some("StartApplication".into());
    let unknown_versions = op(OperationState::Successful, None, None);
    assert!(started_from_intent(&intent(None), &ours));
    assert!(!started_from_intent(&intent(None), &later));
    assert!(!started_from_intent(&intent(None), &start));
    assert!(!started_from_intent(&intent(None), &unknown_versions));

    assert!(needs_lookup(&intent(None), &app(Updating, 8, 4)));
    assert!(
        !needs_lookup(&intent(None), &app(Running, 7, 4)),
        "the version did not move"
    );
    assert!(
        !needs_lookup(&intent(Some("op-1")), &app(Updating, 8, 4)),
        "the id is known"
    );
    assert!(Verdict::Unsettled.is_pending() && !Verdict::Superseded.is_pending());
}

#[test]
fn which_operations_restart_the_job() {
    for restarts in [
        "UpdateApplication",
        "StartApplication",
        "RollbackApplication",
        "SomeSystemOperation",
    ] {
        assert!(restarts_the_job(restarts), "{restarts}");
    }
    for not in [
        "StopApplication",
        "CreateApplicationSnapshot",
        "DeleteApplicationSnapshot",
        "TagResource",
        "",
    ] {
        assert!(!restarts_the_job(not), "{not}");
    }
}
