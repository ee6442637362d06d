//! The kinesisanalyticsv2 control plane is one `Service`, generic over the runtime that runs
//! the jobs. [`control_plane`] is one suite of its checks — requests refused with AWS's
//! exception names and messages, the `UpdateApplication` merge, versions, operations,
//! rollback, snapshots, `MonitoringConfiguration`, tags, the published metrics — run here on
//! the model, on a runtime whose actions end only at the service's next look (as real
//! Flink's do) and, in tests/integration/flink.rs, on real Flink jobs (skipped there
//! without a Flink distribution).

use std::time::{Duration, Instant};

use checkpoint_autoscaler::{
    aws::catalogue::MetricsLevel,
    policy::AppConfig,
    policy::AppStatus,
    sim::{
        ConfigurationType, CreateApplication, Fleet, LogLevel, MetricQuery, MonitoringUpdate, MonitoringView,
        OperationStatus, ParallelismUpdate, Runtime, Scenario, Service, ServiceError, UpdateApplication,
        fleet::{DIMENSION, NAMESPACE, PERIOD},
        service::{Action, Figures, Outcome, PeriodContext, Restart},
    },
};
use jiff::Timestamp;

const APP: &str = "core-suite";
const ROLE: &str = "arn:aws:iam::123456789012:role/flink-application";

/// Advances the service one metric period at a time, pausing `pause` of real time between
/// periods (real Flink runs in real time; the model needs none), until `f` returns `Some`:
/// at most two days of virtual time and five minutes of real time.
pub async fn wait_for<R: Runtime, T>(
    svc: &mut Service<R>,
    pause: Duration,
    what: &str,
    mut f: impl FnMut(&Service<R>) -> Option<T>,
) -> T {
    let deadline = Instant::now() + Duration::from_secs(300);
    for _ in 0..2880 {
        let next = svc.now() + PERIOD;
        svc.advance_to(next);
        if let Some(v) = f(svc) {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        if !pause.is_zero() {
            tokio::time::sleep(pause).await;
        }
    }
    panic!("{what} did not happen within two days of virtual time");
}

/// Waits until the application's operation `op` has ended; returns how.
async fn finished<R: Runtime>(svc: &mut Service<R>, pause: Duration, op: &str) -> OperationStatus {
    wait_for(svc, pause, op, |s| {
        let o = s.describe_operation(APP, op).unwrap();
        (o.status != OperationStatus::InProgress).then_some(o.status)
    })
    .await
}

fn custom(parallelism: u32, auto_scaling: Option<bool>) -> ParallelismUpdate {
    ParallelismUpdate {
        configuration_type: Some(ConfigurationType::Custom),
        parallelism: Some(parallelism),
        auto_scaling_enabled: auto_scaling,
        ..ParallelismUpdate::default()
    }
}

fn update<R: Runtime>(svc: &Service<R>, parallelism: Option<ParallelismUpdate>) -> UpdateApplication {
    UpdateApplication {
        current_application_version_id: Some(svc.describe_application(APP).unwrap().version_id),
        parallelism,
        ..UpdateApplication::default()
    }
}

/// The exception name and message of a refused request.
fn refused<T: std::fmt::Debug>(r: Result<T, ServiceError>) -> (&'static str, String) {
    let e = r.expect_err("the service refuses the request");
    (e.code(), e.to_string())
}

/// The suite: creates [`APP`] and drives it through the whole control plane. `pause` is
/// the real time between metric periods while waiting (zero on the model).
pub async fn control_plane<R: Runtime>(svc: &mut Service<R>, pause: Duration) {
    // CreateApplication: READY, version 1, the DEFAULT configuration, the default runtime,
    // APPLICATION metrics, snapshots on.
    let created = svc
        .create_application(CreateApplication {
            name: APP.into(),
            service_execution_role: ROLE.into(),
            tags: vec![("team".into(), "core".into())],
            ..CreateApplication::default()
        })
        .unwrap();
    assert_eq!(created.status, AppStatus::Ready);
    assert_eq!(created.version_id, 1);
    assert_eq!(created.runtime, "FLINK-1_20");
    assert_eq!(created.parallelism.configuration_type, ConfigurationType::Default);
    assert_eq!(created.parallelism.parallelism, 1);
    assert!(created.parallelism.auto_scaling_enabled);
    assert_eq!(created.monitoring, MonitoringView::DEFAULT);
    assert!(created.snapshots_enabled);
    let arn = created.arn.clone();
    assert!(arn.ends_with(":application/core-suite"), "{arn}");

    // Refused creations.
    let again = CreateApplication {
        name: APP.into(),
        service_execution_role: ROLE.into(),
        ..CreateApplication::default()
    };
    assert_eq!(
        refused(svc.create_application(again.clone())),
        (
            "ResourceInUseException",
            "Application core-suite already exists.".into()
        )
    );
    let bad_name = CreateApplication {
        name: "no spaces".into(),
        ..again.clone()
    };
    assert_eq!(
        refused(svc.create_application(bad_name)).0,
        "InvalidArgumentException"
    );
    let bad_runtime = CreateApplication {
        name: "other".into(),
        runtime: Some("SQL-1_0".into()),
        ..again.clone()
    };
    assert_eq!(
        refused(svc.create_application(bad_runtime)).0,
        "InvalidArgumentException"
    );
    assert_eq!(
        refused(svc.describe_application("missing")),
        (
            "ResourceNotFoundException",
            "Application missing not found.".into()
        )
    );

    // UpdateApplication of a READY application: the new version at once.
    let (view, op) = svc
        .update_application(APP, update(svc, Some(custom(2, Some(false)))))
        .unwrap();
    assert_eq!(view.version_id, 2);
    assert_eq!(view.status, AppStatus::Ready);
    assert_eq!(view.parallelism.configuration_type, ConfigurationType::Custom);
    assert_eq!(view.parallelism.current_parallelism, 2);
    assert!(!view.parallelism.auto_scaling_enabled);
    assert_eq!(
        svc.describe_operation(APP, &op).unwrap().status,
        OperationStatus::Successful
    );
    // DEFAULT is the service's default configuration: parallelism 1, one per KPU, and
    // autoscaling on again.
    let default = ParallelismUpdate {
        configuration_type: Some(ConfigurationType::Default),
        ..ParallelismUpdate::default()
    };
    let (view, _) = svc.update_application(APP, update(svc, Some(default))).unwrap();
    assert_eq!(view.version_id, 3);
    assert_eq!(view.parallelism.configuration_type, ConfigurationType::Default);
    assert_eq!(view.parallelism.parallelism, 1);
    assert_eq!(view.parallelism.parallelism_per_kpu, 1);
    assert!(view.parallelism.auto_scaling_enabled);
    // Explicit values need CUSTOM; stale or missing versions are refused.
    let explicit = ParallelismUpdate {
        configuration_type: Some(ConfigurationType::Default),
        parallelism: Some(2),
        ..ParallelismUpdate::default()
    };
    assert_eq!(
        refused(svc.update_application(APP, update(svc, Some(explicit)))),
        (
            "InvalidArgumentException",
            "ConfigurationType must be CUSTOM to set Parallelism, ParallelismPerKPU or AutoScalingEnabled."
                .into()
        )
    );
    let stale = UpdateApplication {
        current_application_version_id: Some(1),
        ..UpdateApplication::default()
    };
    assert_eq!(
        refused(svc.update_application(APP, stale)).0,
        "ConcurrentModificationException"
    );
    assert_eq!(
        refused(svc.update_application(APP, UpdateApplication::default())).0,
        "InvalidArgumentException"
    );
    assert_eq!(
        refused(svc.update_application(APP, update(svc, Some(custom(0, None))))).0,
        "InvalidArgumentException"
    );
    assert_eq!(
        refused(svc.update_application(APP, update(svc, Some(custom(65, None))))).0,
        "LimitExceededException"
    );
    // MonitoringConfiguration: honoured with CUSTOM, DEFAULT means APPLICATION and INFO.
    let task_level = UpdateApplication {
        monitoring: Some(MonitoringUpdate {
            configuration_type: Some(ConfigurationType::Custom),
            metrics_level: Some(MetricsLevel::Task),
            log_level: Some(LogLevel::Warn),
        }),
        ..update(svc, None)
    };
    let (view, _) = svc.update_application(APP, task_level).unwrap();
    assert_eq!(view.monitoring.metrics_level, MetricsLevel::Task);
    assert_eq!(view.monitoring.log_level, LogLevel::Warn);
    let back = UpdateApplication {
        monitoring: Some(MonitoringUpdate {
            configuration_type: Some(ConfigurationType::Default),
            ..MonitoringUpdate::default()
        }),
        ..update(svc, None)
    };
    let (view, _) = svc.update_application(APP, back).unwrap();
    assert_eq!(view.monitoring, MonitoringView::DEFAULT);
    assert_eq!(view.version_id, 5);

    // Tags.
    svc.tag_resource(
        &arn,
        vec![("team".into(), "platform".into()), ("env".into(), "test".into())],
    )
    .unwrap();
    svc.untag_resource(&arn, &["env".into()]).unwrap();
    assert_eq!(
        svc.list_tags(&arn).unwrap(),
        vec![("team".into(), "platform".into())]
    );
    assert_eq!(
        refused(svc.tag_resource(&arn, vec![("aws:owner".into(), "x".into())])).0,
        "InvalidArgumentException"
    );
    let many = (0..50).map(|i| (format!("k{i}"), "v".to_string())).collect();
    assert_eq!(refused(svc.tag_resource(&arn, many)).0, "TooManyTagsException");
    assert_eq!(
        refused(svc.list_tags("arn:nothing")).0,
        "ResourceNotFoundException"
    );

    // A READY application can be neither stopped (even forced) nor rolled back.
    assert_eq!(
        refused(svc.stop_application(APP, false)).0,
        "ResourceInUseException"
    );
    assert_eq!(
        refused(svc.stop_application(APP, true)).0,
        "ResourceInUseException"
    );
    assert_eq!(
        refused(svc.rollback_application(APP, 5)).0,
        "ResourceInUseException"
    );

    // StartApplication: STARTING, then RUNNING; KPUs are published with the Application
    // dimension, and at the APPLICATION level no busy time with that dimension alone.
    let start = svc.start_application(APP).unwrap();
    assert_eq!(svc.describe_application(APP).unwrap().status, AppStatus::Starting);
    assert_eq!(refused(svc.start_application(APP)).0, "ResourceInUseException");
    assert_eq!(finished(svc, pause, &start).await, OperationStatus::Successful);
    assert_eq!(svc.describe_application(APP).unwrap().status, AppStatus::Running);
    let started = svc.now();
    wait_for(svc, pause, "a published KPUs datapoint", |s| {
        (!metric(s, "KPUs", started).is_empty()).then_some(())
    })
    .await;
    assert!(metric(svc, "busyTimeMsPerSecond", started).is_empty());
    let ops = svc.list_operations(APP).unwrap();
    assert_eq!(ops[0].operation, "StartApplication");
    assert_eq!(ops.len(), 5, "{ops:?}");

    // UpdateApplication of a RUNNING application: UPDATING (refusing other updates), a
    // snapshot, then RUNNING at the new configuration.
    let snapshots = svc.list_snapshots(APP).unwrap().len();
    let (view, op) = svc
        .update_application(APP, update(svc, Some(custom(2, Some(false)))))
        .unwrap();
    assert_eq!(view.status, AppStatus::Updating);
    assert_eq!(view.version_id, 6);
    assert_eq!(
        refused(svc.update_application(APP, update(svc, Some(custom(1, None))))).0,
        "ResourceInUseException"
    );
    assert_eq!(finished(svc, pause, &op).await, OperationStatus::Successful);
    let view = svc.describe_application(APP).unwrap();
    assert_eq!(view.status, AppStatus::Running);
    assert_eq!(view.parallelism.current_parallelism, 2);
    assert_eq!(svc.list_snapshots(APP).unwrap().len(), snapshots + 1);

    // RollbackApplication: back to the previous version (5: the DEFAULT configuration)
    // as version 7; a stale version id is refused, and so is a forced stop while
    // ROLLING_BACK (API reference, StopApplication: STARTING, UPDATING, STOPPING,
    // AUTOSCALING or RUNNING only).
    assert_eq!(
        refused(svc.rollback_application(APP, 3)).0,
        "ConcurrentModificationException"
    );
    let (view, op) = svc.rollback_application(APP, 6).unwrap();
    assert_eq!(view.status, AppStatus::RollingBack);
    assert_eq!(
        refused(svc.stop_application(APP, true)),
        (
            "ResourceInUseException",
            "Application core-suite is in ROLLING_BACK status and cannot be stopped.".into()
        )
    );
    assert_eq!(finished(svc, pause, &op).await, OperationStatus::Successful);
    let view = svc.describe_application(APP).unwrap();
    assert_eq!(view.status, AppStatus::Running);
    assert_eq!(view.version_id, 7);
    assert_eq!(view.version_rolled_back_from, Some(6));
    assert_eq!(view.version_rolled_back_to, Some(5));
    assert_eq!(view.parallelism.configuration_type, ConfigurationType::Default);
    assert_eq!(view.parallelism.current_parallelism, 1);

    // A restart that fails: the operation FAILED with the reason, and the service rolls
    // back to the version before (a RollbackApplication operation, a new version).
    let (_, op) = svc
        .update_application_failing(
            APP,
            update(svc, Some(custom(2, None))),
            "injected restore failure",
        )
        .unwrap();
    assert_eq!(finished(svc, pause, &op).await, OperationStatus::Failed);
    let failed = svc.describe_operation(APP, &op).unwrap();
    assert_eq!(failed.failure.as_deref(), Some("injected restore failure"));
    let rollback = failed.rollback_operation_id.expect("a rollback operation");
    assert_eq!(finished(svc, pause, &rollback).await, OperationStatus::Successful);
    let view = svc.describe_application(APP).unwrap();
    assert_eq!(view.status, AppStatus::Running);
    assert_eq!(view.parallelism.current_parallelism, 1);
    assert_eq!(
        view.version_id, 9,
        "failed update = version 8, rollback = version 9"
    );
    assert_eq!(view.version_rolled_back_from, Some(8));
    assert_eq!(view.version_rolled_back_to, Some(7));

    // StopApplication: graceful from RUNNING (a snapshot), then READY.
    let snapshots = svc.list_snapshots(APP).unwrap().len();
    let stop = svc.stop_application(APP, false).unwrap();
    assert_eq!(svc.describe_application(APP).unwrap().status, AppStatus::Stopping);
    assert_eq!(finished(svc, pause, &stop).await, OperationStatus::Successful);
    assert_eq!(svc.describe_application(APP).unwrap().status, AppStatus::Ready);
    assert_eq!(svc.list_snapshots(APP).unwrap().len(), snapshots + 1);
    let names: Vec<String> = svc
        .list_operations(APP)
        .unwrap()
        .into_iter()
        .map(|o| o.operation)
        .collect();
    assert_eq!(names[0], "StopApplication");
    assert_eq!(names.len(), 10, "{names:?}");
}

/// The metric's datapoints with the Application dimension alone, since `from`.
fn metric<R: Runtime>(svc: &Service<R>, name: &str, from: Timestamp) -> Vec<(Timestamp, f64)> {
    svc.metric_data(&MetricQuery {
        namespace: NAMESPACE.into(),
        metric_name: name.into(),
        dimensions: vec![(DIMENSION.into(), APP.into())],
        start: from,
        end: svc.now(),
        period: PERIOD,
        stat: "Maximum".into(),
    })
}

#[tokio::test]
async fn the_control_plane_on_the_model() {
    let mut fleet = Fleet::new(7, Timestamp::from_second(1_800_000_000).unwrap());
    control_plane(&mut fleet, Duration::ZERO).await;
}

/// A runtime whose every action ends at the service's next look, as real Flink's do (in
/// real time, seen at the next `advance_to`), and whose snapshots can be made to fail.
#[derive(Debug, Default)]
struct Prompt {
    refuse_snapshots: bool,
}

#[derive(Debug, Default)]
struct PromptJob {
    running: bool,
    ended: Option<Outcome>,
}

impl Runtime for Prompt {
    type Job = PromptJob;
    type Spec = ();

    fn spec(&self, _: Option<&Scenario>, _: u32) -> Result<(), ServiceError> {
        Ok(())
    }
    fn job(&mut self, _: &str, _: (), _: Timestamp) -> PromptJob {
        PromptJob::default()
    }
    fn run_now(&mut self, _: &mut PromptJob, _: AppConfig, _: Timestamp) -> bool {
        false
    }
    fn check(&self, _: AppConfig) -> Result<(), ServiceError> {
        Ok(())
    }
    fn job_max_parallelism(&self, _: &PromptJob) -> u32 {
        128
    }
    fn max_parallelism(&self) -> u32 {
        256
    }
    fn checkpointing(&self, _: &PromptJob) -> (i64, i64) {
        (60_000, 0)
    }
    fn begin(&mut self, job: &mut PromptJob, action: Action, _: Timestamp) {
        let outcome = match action {
            Action::Restart(r) if r.snapshot && self.refuse_snapshots => {
                Outcome::Kept("Snapshot before the update failed: refused".into())
            }
            Action::Restart(Restart {
                failure: Some(message),
                ..
            }) => {
                job.running = false;
                Outcome::Failed(message)
            }
            Action::Stop { .. } => {
                job.running = false;
                Outcome::Done
            }
            Action::Start { .. } | Action::Restart(_) | Action::Recover { .. } => {
                job.running = true;
                Outcome::Done
            }
        };
        job.ended = Some(outcome);
    }
    fn poll(&mut self, job: &mut PromptJob, from: Timestamp, _: Timestamp) -> Option<(Timestamp, Outcome)> {
        job.ended.take().map(|o| (from, o))
    }
    fn period(&mut self, job: &mut PromptJob, _: Timestamp, _: Timestamp, ctx: PeriodContext<'_>) -> Figures {
        Figures {
            kpus: ctx.kpus,
            job_reporting: job.running && ctx.running,
            uptime_ms: 60_000.0,
            ..Figures::default()
        }
    }
}

#[tokio::test]
async fn the_control_plane_on_a_runtime_whose_actions_end_later() {
    let mut svc = Service::with_runtime(
        Prompt::default(),
        3,
        Timestamp::from_second(1_800_000_000).unwrap(),
    );
    control_plane(&mut svc, Duration::ZERO).await;
}

/// A snapshot that fails before a restart leaves the job running at its configuration: the
/// update's operation fails with the reason, the version rolls back without a restart, and
/// no snapshot is listed.
#[tokio::test]
async fn a_failed_snapshot_keeps_the_job_and_rolls_the_version_back() {
    let runtime = Prompt {
        refuse_snapshots: true,
    };
    let mut svc = Service::with_runtime(runtime, 3, Timestamp::from_second(1_800_000_000).unwrap());
    svc.create_application(CreateApplication {
        name: APP.into(),
        service_execution_role: ROLE.into(),
        ..CreateApplication::default()
    })
    .unwrap();
    let start = svc.start_application(APP).unwrap();
    assert_eq!(
        finished(&mut svc, Duration::ZERO, &start).await,
        OperationStatus::Successful
    );
    let (view, op) = svc
        .update_application(APP, update(&svc, Some(custom(2, None))))
        .unwrap();
    assert_eq!(view.status, AppStatus::Updating);
    assert_eq!(
        finished(&mut svc, Duration::ZERO, &op).await,
        OperationStatus::Failed
    );
    let failed = svc.describe_operation(APP, &op).unwrap();
    assert_eq!(
        failed.failure.as_deref(),
        Some("Snapshot before the update failed: refused")
    );
    assert_eq!(failed.rollback_operation_id, None);
    let view = svc.describe_application(APP).unwrap();
    assert_eq!(view.status, AppStatus::Running);
    assert_eq!(view.version_id, 3);
    assert_eq!(view.version_rolled_back_from, Some(2));
    assert_eq!(view.version_rolled_back_to, Some(1));
    assert_eq!(view.parallelism.parallelism, 1);
    assert_eq!(view.parallelism.current_parallelism, 1);
    assert!(svc.list_snapshots(APP).unwrap().is_empty());
}
