//! The Flink backend on the real runtime: a real job, real RocksDB checkpoints, real
//! stop-with-savepoint and restore — first driven directly, then by the controller's own
//! reconcile core through the real SDK clients (as `demo --backend flink` runs it).
//! Skipped (with a message) where no Flink distribution or Java is installed;
//! `scripts/test.sh` installs both with `scripts/install-flink.sh`.
//!
//! NB: the tests run one at a time (a lock): each starts its own cluster, and two at once on
//! a small machine only make each other slow. They assert outcomes (scaled or not, rolled
//! back, not retried, diagnosed), never durations.

use std::time::{Duration, Instant};

use checkpoint_autoscaler::{
    controller::store::NoticeType,
    demo::{self, DemoOutcome, FlinkDemo},
    flink::{BackendOptions, FlinkFleet, FlinkHome, Workload},
    policy::{AppConfig, AppStatus, Cause, Outcome},
    sim::{
        ConfigurationType, MetricQuery, OperationStatus, ParallelismUpdate, Scenario, UpdateApplication,
        fleet::{DIMENSION, NAMESPACE, PERIOD},
    },
};
use jiff::Timestamp;

/// One real-runtime test at a time (an async lock: it is held across the whole test, and
/// a failed test does not poison it).
static RUNTIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The distribution, or `None` with the reason printed (the test then passes vacuously
/// only on machines without Flink; CI installs it).
fn flink_home() -> Option<FlinkHome> {
    match FlinkHome::locate(None) {
        Ok(h) => Some(h),
        Err(e) => {
            eprintln!(
                "SKIPPED: the Flink backend tests need Flink and Java ({e}); run scripts/install-flink.sh"
            );
            None
        }
    }
}

/// Polls `f` every half second until it returns `Some`, advancing the fleet's virtual clock
/// one period per poll so that CloudWatch datapoints accumulate.
async fn wait_for<T>(
    fleet: &mut FlinkFleet,
    what: &str,
    timeout: Duration,
    mut f: impl FnMut(&FlinkFleet) -> Option<T>,
) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        let next = fleet.now() + PERIOD;
        fleet.advance_to(next);
        if let Some(v) = f(fleet) {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// An empty Flink fleet sampling the REST API every second.
fn fleet(home: FlinkHome) -> FlinkFleet {
    let options = BackendOptions {
        sample_interval: Duration::from_secs(1),
        ..BackendOptions::default()
    };
    FlinkFleet::new(home, options, Timestamp::from_second(1_800_000_000).unwrap()).unwrap()
}

fn scale_to(fleet: &mut FlinkFleet, name: &str, parallelism: u32) -> String {
    let version = fleet.describe_application(name).unwrap().version_id;
    let (view, op) = fleet
        .update_application(
            name,
            UpdateApplication {
                current_application_version_id: Some(version),
                parallelism: Some(ParallelismUpdate {
                    configuration_type: Some(ConfigurationType::Custom),
                    parallelism: Some(parallelism),
                    ..ParallelismUpdate::default()
                }),
                ..UpdateApplication::default()
            },
        )
        .unwrap();
    assert_eq!(view.status, AppStatus::Updating);
    op
}

/// Latest completed checkpoint (id, bytes) of the running job, once there is one newer
/// than `after`.
fn completed_after(fleet: &FlinkFleet, name: &str, after: u64) -> Option<(u64, u64)> {
    let (_, stats) = fleet.flink_job(name).unwrap();
    let c = stats?.latest.completed?;
    (c.id > after && c.checkpointed_size > 0).then_some((c.id, c.checkpointed_size))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scaling_restores_the_state_and_a_refused_restore_rolls_back() {
    let Some(home) = flink_home() else { return };
    let _serial = RUNTIME.lock().await;
    let mut fleet = fleet(home);
    let name = "flink-it";
    // maxParallelism 2: parallelism 3 cannot restore. Four slots per KPU keep one
    // TaskManager through every update (no TaskManager restarts: a shorter test).
    let workload = Workload {
        records_per_second: 2_000,
        keys: 20_000,
        value_bytes: 64,
        cpu_rounds: 2,
        max_parallelism: 2,
        checkpoint_interval_ms: 1_000,
        checkpoint_timeout_ms: 60_000,
        tolerable_failed_checkpoints: None,
    };
    let long = Duration::from_secs(300);
    fleet
        .add_application(name, None, workload, AppConfig::new(1, 4))
        .unwrap();
    wait_for(&mut fleet, "the application to run", long, |f| {
        (f.describe_application(name).unwrap().status == AppStatus::Running).then_some(())
    })
    .await;
    let (first_id, first_size) =
        wait_for(&mut fleet, "a checkpoint", long, |f| completed_after(f, name, 0)).await;

    // (1) Scale 1 -> 2: snapshot, UPDATING, restore at 2, RUNNING, new version.
    let op = scale_to(&mut fleet, name, 2);
    let done = wait_for(&mut fleet, "the update", long, |f| {
        let o = f.describe_operation(name, &op).unwrap();
        (o.status != OperationStatus::InProgress).then_some(o)
    })
    .await;
    assert_eq!(done.status, OperationStatus::Successful, "{:?}", done.failure);
    let view = fleet.describe_application(name).unwrap();
    assert_eq!(view.status, AppStatus::Running);
    assert_eq!(view.version_id, 2);
    assert_eq!(view.parallelism.current_parallelism, 2);
    // The state survived: the job restored the savepoint, checkpoint ids continue after it
    // and the state is at least as large as before (keys are never dropped).
    let (after_id, after_size) = wait_for(&mut fleet, "a checkpoint after the restore", long, |f| {
        completed_after(f, name, first_id)
    })
    .await;
    let (_, stats) = fleet.flink_job(name).unwrap();
    let restored = stats
        .unwrap()
        .latest
        .restored
        .expect("restored from the savepoint");
    assert!(restored.is_savepoint);
    assert!(restored.id > first_id && after_id > restored.id);
    assert!(
        after_size as f64 >= first_size as f64 * 0.8,
        "state {after_size} B after the restore, {first_size} B before"
    );

    // CloudWatch: the checkpoint metrics were published with AWS's names and units.
    let q = MetricQuery {
        namespace: NAMESPACE.into(),
        metric_name: "lastCheckpointDuration".into(),
        dimensions: vec![(DIMENSION.into(), name.into())],
        start: Timestamp::from_second(1_800_000_000).unwrap(),
        end: fleet.now(),
        period: PERIOD,
        stat: "Maximum".into(),
    };
    assert!(!fleet.metric_data(&q).is_empty());
    let size_id = checkpoint_autoscaler::sim::MetricId::new(
        NAMESPACE,
        "lastCheckpointSize",
        &[(DIMENSION.into(), name.into())],
    );
    assert_eq!(fleet.metric_unit(&size_id), Some("Bytes"));

    // (2) Scale to 3, above the job's maxParallelism of 2: Flink refuses the restore, the
    // operation fails with Flink's reason, and the application rolls back to 2 from the
    // same savepoint and keeps running.
    let op = scale_to(&mut fleet, name, 3);
    let failed = wait_for(&mut fleet, "the refused update", long, |f| {
        let o = f.describe_operation(name, &op).unwrap();
        (o.status != OperationStatus::InProgress).then_some(o)
    })
    .await;
    assert_eq!(failed.status, OperationStatus::Failed);
    let reason = failed.failure.unwrap_or_default();
    assert!(reason.to_lowercase().contains("parallelism"), "{reason}");
    let rollback = failed.rollback_operation_id.expect("a rollback operation");
    let rolled = wait_for(&mut fleet, "the rollback", long, |f| {
        let o = f.describe_operation(name, &rollback).unwrap();
        (o.status != OperationStatus::InProgress).then_some(o)
    })
    .await;
    assert_eq!(rolled.status, OperationStatus::Successful, "{:?}", rolled.failure);
    let view = fleet.describe_application(name).unwrap();
    assert_eq!(view.status, AppStatus::Running);
    assert_eq!(view.parallelism.current_parallelism, 2);
    assert_eq!(view.parallelism.parallelism, 2);
    assert_eq!(
        view.version_id, 4,
        "failed update = version 3, rollback = version 4"
    );
    assert_eq!(view.version_rolled_back_to, Some(2));
    wait_for(&mut fleet, "a checkpoint after the rollback", long, |f| {
        completed_after(f, name, after_id)
    })
    .await;
    fleet.shutdown().await;
}

/// The control-plane suite of tests/integration/service.rs, on real Flink jobs: the same
/// checks as on the model.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_control_plane_on_real_flink() {
    let Some(home) = flink_home() else { return };
    let _serial = RUNTIME.lock().await;
    let mut fleet = fleet(home);
    crate::service::control_plane(&mut fleet, Duration::from_millis(500)).await;
    fleet.shutdown().await;
}

/// Runs the controller's reconcile core against the emulator on the Flink backend (the
/// scenario's job on a real cluster, the real SDK clients, one reconcile per `period`),
/// until the budget is restored or the controller has held for `settle` minutes after a
/// breach; the outcome and the run's log.
async fn controller_run(home: FlinkHome, yaml: &str, settle: u32) -> (DemoOutcome, String) {
    let scenario = Scenario::from_yaml(yaml, "tests/integration/flink.rs").unwrap();
    let budget = demo::load_budget(None, &scenario).unwrap();
    let flink = FlinkDemo {
        home,
        period: Duration::from_secs(2),
        settle_minutes: Some(settle),
        adapt_load: None,
    };
    let mut out = Vec::new();
    let outcome = demo::run_demo_with(&scenario, &budget, 0.0, Some(flink), &mut out)
        .await
        .unwrap();
    let log = String::from_utf8_lossy(&out).into_owned();
    eprintln!("{log}");
    (outcome, log)
}

/// A light job (500 records/s, about 2 MB of keyed state) whose checkpoints can never meet
/// a 5 ms budget: the controller scales up to its budget's bound, parallelism 2 — but the
/// budget declares maxParallelism 4 while the job really has 1 key group, so Flink refuses
/// to restore the savepoint at 2.
const REFUSED: &str = r#"
name: flink-refused
application: {name: flink-refused, parallelism: 1, parallelismPerKpu: 1, maxParallelism: 1}
duration: 200m
load: {phases: [{shape: steady, rate: 500}]}
state: {keys: 20000, bytesPerKey: 64}
checkpoints: {interval: 1s, timeout: 1m}
budget:
  application: {name: flink-refused}
  objectives: {maxCheckpointDuration: 5ms, maxFailedCheckpoints: 5, window: 5m}
  parallelism: {min: 1, max: 2, maxParallelism: 4, perKpu: {min: 1, max: 1}}
  behavior:
    scaleUp: {cooldown: 1m}
    scaleDown: {cooldown: 30m, stabilizationWindow: 1h}
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_controllers_update_refused_by_flink_is_rolled_back_reported_and_not_retried() {
    let Some(home) = flink_home() else { return };
    let _serial = RUNTIME.lock().await;
    // Ten further minutes of holding after the rollback: a retry would show as a second call.
    let (outcome, log) = controller_run(home, REFUSED, 10).await;

    // One UpdateApplication, to parallelism 2, over the whole run.
    assert_eq!(outcome.update_calls, 1, "{log}");
    assert_eq!(outcome.updates.len(), 1, "{log}");
    assert_eq!(outcome.updates[0].to, AppConfig::new(2, 1), "{log}");
    // The service rolled back: the application runs at parallelism 1 again and checkpoints.
    let last = outcome.minutes.last().unwrap();
    assert_eq!(last.status, AppStatus::Running, "{log}");
    assert_eq!(last.config, AppConfig::new(1, 1), "{log}");
    assert!(
        outcome
            .minutes
            .iter()
            .rev()
            .take(3)
            .any(|m| m.checkpoint_ms.is_some()),
        "no checkpoint after the rollback:\n{log}"
    );
    // The budget's status and Events report the failure.
    let status = outcome.status.as_ref().expect("a status");
    let scaling = status.last_scaling.as_ref().expect("the last scaling");
    assert_eq!(scaling.outcome, Outcome::Failed, "{log}");
    assert_eq!(scaling.to.parallelism, 2);
    assert!(status.operation_in_flight.is_none());
    // ScalingFailed when the operation failed; PreviouslyFailed once the controller has
    // judged the rolled-back application again and refused to retry.
    let condition = status.condition("Scaling").expect("a Scaling condition");
    assert!(
        ["ScalingFailed", "PreviouslyFailed"].contains(&condition.reason.as_str()),
        "{condition:?}"
    );
    assert!(
        outcome
            .events
            .iter()
            .any(|e| e.reason == "ScalingFailed" && e.type_ == NoticeType::Warning),
        "{:?}",
        outcome.events
    );
    // The run ended because the controller held, not because the scenario ran out.
    assert!(log.contains("the controller has held"), "{log}");
}

/// A healthy light job whose checkpoints, from its third minute on, all fail at once
/// (the checkpoint storage refuses them: the runtime's version of the scenario's
/// serializer mismatch), whatever the resources.
const FAILING: &str = r#"
name: flink-failing
application: {name: flink-failing, parallelism: 1, parallelismPerKpu: 1, maxParallelism: 4}
duration: 200m
load: {phases: [{shape: steady, rate: 500}]}
state: {keys: 20000, bytesPerKey: 64}
checkpoints: {interval: 1s, timeout: 1m}
faults:
  serializerMismatch: {from: 2m}
budget:
  application: {name: flink-failing}
  objectives: {maxCheckpointDuration: 30s, maxFailedCheckpoints: 0, window: 5m}
  parallelism: {min: 1, max: 2, maxParallelism: 4, perKpu: {min: 1, max: 1}}
  behavior:
    scaleUp: {cooldown: 1m}
    scaleDown: {cooldown: 30m, stabilizationWindow: 1h}
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_checkpoints_that_scaling_cannot_fix_are_diagnosed_and_not_scaled() {
    let Some(home) = flink_home() else { return };
    let _serial = RUNTIME.lock().await;
    let (outcome, log) = controller_run(home, FAILING, 8).await;

    assert!(
        outcome.breached_at.is_some(),
        "the failures never breached the budget:\n{log}"
    );
    assert_eq!(outcome.update_calls, 0, "{log}");
    assert!(outcome.scalings.is_empty(), "{log}");
    let status = outcome.status.as_ref().expect("a status");
    let diagnosis = status.diagnosis.as_ref().expect("a diagnosis");
    assert_eq!(
        diagnosis.cause,
        Cause::NotFixableByScaling,
        "{diagnosis:?}\n{log}"
    );
    assert_eq!(status.condition("SloMet").unwrap().status, "False");
    assert!(
        outcome
            .minutes
            .last()
            .is_some_and(|m| m.status == AppStatus::Running)
    );
    assert!(log.contains("the controller has held"), "{log}");
}
