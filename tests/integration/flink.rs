//! The Flink backend on the real runtime: a real job, real RocksDB checkpoints, real
//! stop-with-savepoint and restore. Skipped (with a message) where no Flink distribution or
//! Java is installed; `scripts/test.sh` installs both with `scripts/install-flink.sh`.

use std::time::{Duration, Instant};

use checkpoint_autoscaler::{
    flink::{BackendOptions, FlinkFleet, FlinkHome, Workload},
    policy::{AppConfig, AppStatus},
    sim::{
        ConfigurationType, MetricQuery, OperationStatus, ParallelismUpdate, UpdateApplication,
        fleet::{DIMENSION, NAMESPACE, PERIOD},
    },
};
use jiff::Timestamp;

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
    let options = BackendOptions {
        sample_interval: Duration::from_secs(1),
        ..BackendOptions::default()
    };
    let mut fleet = FlinkFleet::new(home, options, Timestamp::from_second(1_800_000_000).unwrap()).unwrap();
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
    assert_eq!(fleet.metric_unit(&size_id).as_deref(), Some("Bytes"));

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
