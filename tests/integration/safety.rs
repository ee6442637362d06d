//! State and record safety through the emulator and the real SDK clients (the harness):
//! applications whose restart would lose their state, and the history the controller reads
//! from the application itself.

use std::{path::PathBuf, time::Duration};

use checkpoint_autoscaler::sim::Scenario;

use crate::harness::{Harness, HarnessConfig};

/// A scenario of `examples/safety/`.
fn safety_scenario(name: &str) -> Scenario {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("examples/safety")
        .join(format!("{name}.yaml"));
    Scenario::load(&path).unwrap_or_else(|e| panic!("scenario {name}: {e}"))
}

/// `snapshotsEnabled: false`: the load steps up and the policy wants more KPUs, but a
/// restart would start the job without its state, so the run ends with no UpdateApplication
/// at all and a Scaling reason that names snapshots (and a single Warning Event for it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshots_off_means_no_restart() {
    let mut h = Harness::start(HarnessConfig::default()).await;
    let key = h.add_scenario_budget(&safety_scenario("snapshots-off"), "orders", "team-a");
    h.advance(Duration::from_secs(9 * 60));
    for _ in 0..50 {
        h.step().await;
    }
    assert!(
        h.update_calls("orders").is_empty(),
        "{:#?}",
        h.update_calls("orders")
    );
    let status = h.status(&key).unwrap();
    let scaling = status.condition("Scaling").unwrap();
    assert_eq!(
        (scaling.status.as_str(), scaling.reason.as_str()),
        ("False", "SnapshotsDisabled")
    );
    assert!(
        scaling.message.contains("Snapshots are off"),
        "{}",
        scaling.message
    );
    let snapshots = status.condition("Snapshots").unwrap();
    assert_eq!(
        (snapshots.status.as_str(), snapshots.reason.as_str()),
        ("False", "SnapshotsDisabled")
    );
    assert_eq!(status.snapshots.as_ref().unwrap().enabled, Some(false));
    let warnings = h
        .events(&key)
        .iter()
        .filter(|n| n.reason == "SnapshotsDisabled")
        .count();
    assert_eq!(warnings, 1, "{:#?}", h.events(&key));
    assert_eq!(
        status.condition("SloMet").unwrap().status,
        "False",
        "it did need scaling"
    );

    // The application's owner turns snapshots on: the next decision scales.
    h.emulator()
        .with_fleet(|f| {
            let version = f.describe_application("orders")?.version_id;
            f.update_application(
                "orders",
                checkpoint_autoscaler::sim::UpdateApplication {
                    current_application_version_id: Some(version),
                    snapshots_enabled: Some(true),
                    ..Default::default()
                },
            )
        })
        .unwrap();
    for _ in 0..30 {
        h.step().await;
    }
    assert_eq!(
        h.update_calls("orders")
            .iter()
            .filter(|c| c.status == 200)
            .count(),
        1
    );
    let status = h.status(&key).unwrap();
    assert_eq!(status.condition("Snapshots").unwrap().reason, "SnapshotsEnabled");
    assert!(
        status.snapshots.unwrap().count.is_some_and(|n| n >= 1),
        "the update's snapshot"
    );
    h.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// The record: read from the application, not only from the budget's status.

use checkpoint_autoscaler::{controller::store::BudgetKey, policy::AppConfig};

use crate::harness::scenario;

/// `step-up` under its budget until the controller's first scaling is accepted; returns the
/// budget and its spec.
async fn scaled_once(h: &mut Harness) -> (BudgetKey, checkpoint_autoscaler::crd::CheckpointBudgetSpec) {
    let key = h.add_scenario_budget(&scenario("step-up"), "orders", "team-a");
    let spec = h.budgets()[0].budget.spec.clone();
    h.advance(Duration::from_secs(31 * 60));
    for _ in 0..20 {
        if h.step().await.iter().any(|r| r.accepted_updates().count() > 0) {
            return (key, spec);
        }
    }
    panic!("step-up never scaled");
}

fn accepted(h: &mut Harness) -> usize {
    h.update_calls("orders")
        .iter()
        .filter(|c| c.status == 200)
        .count()
}

fn scaling_reason(h: &Harness, key: &BudgetKey) -> String {
    h.status(key)
        .and_then(|s| s.condition("Scaling").map(|c| c.reason.clone()))
        .unwrap_or_default()
}

/// GitOps prunes the budget while its update runs and creates it again: the new budget has
/// no status, but reads the restart from the application's operations, so it waits for the
/// update to finish and then warms up before it judges, as the old one would have; no
/// second update follows the first within the hour.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_budget_recreated_mid_operation_reads_the_restart_from_the_application() {
    let mut h = Harness::start(HarnessConfig::default()).await;
    let (key, spec) = scaled_once(&mut h).await;
    h.delete_budget(&key);
    h.step().await;
    let key = h.add_budget("team-a", "orders", spec);
    let mut reasons = Vec::new();
    for _ in 0..60 {
        h.step().await;
        reasons.push(scaling_reason(&h, &key));
    }
    assert_eq!(accepted(&mut h), 1, "{reasons:?}");
    let status = h.status(&key).unwrap();
    assert!(
        status.last_scaling.is_none(),
        "the new budget scaled nothing itself"
    );
    let restarts = &status.history.as_ref().unwrap().restarts;
    let update = restarts
        .iter()
        .find(|r| r.cause == "UpdateApplication")
        .unwrap_or_else(|| panic!("the old budget's update is in the history: {restarts:#?}"));
    assert!(update.completed_at.is_some(), "{update:?}");
    assert_waited(&reasons, &["ApplicationBusy"]);
    h.shutdown().await;
}

/// The reasons of a budget around a restart: `before` (busy, conflict) while it runs, then
/// only missing metrics and the warm-up until the first judgement, which is not a scaling.
fn assert_waited(reasons: &[String], before: &[&str]) {
    let settled = reasons
        .iter()
        .position(|r| !before.contains(&r.as_str()))
        .unwrap_or_else(|| panic!("never settled: {reasons:?}"));
    let judged = reasons[settled..]
        .iter()
        .position(|r| r != "MissingMetrics" && r != "WarmingUp")
        .map_or(reasons.len(), |i| settled + i);
    assert!(
        reasons[settled..judged].iter().any(|r| r == "WarmingUp"),
        "a warm-up after the restart: {reasons:?}"
    );
    assert!(
        reasons.get(judged).is_none_or(|r| r == "WithinBudget"),
        "judged within budget after the warm-up: {reasons:?}"
    );
}

/// Two budgets name one application; the owner scales and is deleted mid-operation. The
/// younger one takes over: it never acts while the update runs, and warms up after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_budget_handed_the_application_mid_operation_waits_for_it() {
    let mut h = Harness::start(HarnessConfig::default()).await;
    let owner = h.add_scenario_budget(&scenario("step-up"), "orders", "team-a");
    let spec = h.budgets()[0].budget.spec.clone();
    h.advance(Duration::from_secs(60));
    let younger = h.add_budget("team-a", "orders-too", spec);
    h.advance(Duration::from_secs(30 * 60));
    let mut scaled = false;
    for _ in 0..20 {
        if h.step().await.iter().any(|r| r.accepted_updates().count() > 0) {
            scaled = true;
            break;
        }
    }
    assert!(scaled);
    assert_eq!(scaling_reason(&h, &younger), "Conflict");
    h.delete_budget(&owner);
    let mut reasons = Vec::new();
    for _ in 0..60 {
        h.step().await;
        reasons.push(scaling_reason(&h, &younger));
    }
    assert_eq!(accepted(&mut h), 1, "{reasons:?}");
    assert_waited(&reasons, &["ApplicationBusy", "Conflict"]);
    let restarts = h.status(&younger).unwrap().history.unwrap().restarts;
    assert!(
        restarts.iter().any(|r| r.cause == "UpdateApplication"),
        "{restarts:#?}"
    );
    h.shutdown().await;
}

/// A maintenance restart by another client (stop and start, the way a deploy or an
/// operator restarts a job): the controller reads it from the application's operations and
/// warms up after it before judging — it does not take the restart's backlog for a need to
/// scale.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_clients_restart_is_seen_and_counted() {
    let mut h = Harness::start(HarnessConfig::default()).await;
    let key = h.add_scenario_budget(&scenario("steady"), "orders", "team-a");
    h.advance(Duration::from_secs(20 * 60));
    for _ in 0..5 {
        h.step().await;
    }
    assert_eq!(scaling_reason(&h, &key), "WithinBudget");
    h.emulator()
        .with_fleet(|f| f.stop_application("orders", false))
        .unwrap();
    let mut reasons = Vec::new();
    let mut started = false;
    for _ in 0..40 {
        if !started
            && h.emulator()
                .with_fleet(|f| f.describe_application("orders"))
                .is_ok_and(|a| a.status == checkpoint_autoscaler::policy::AppStatus::Ready)
        {
            h.emulator()
                .with_fleet(|f| f.start_application("orders"))
                .unwrap();
            started = true;
        }
        h.step().await;
        reasons.push(scaling_reason(&h, &key));
    }
    assert!(started);
    assert_eq!(accepted(&mut h), 0, "{reasons:?}");
    let restarts = h.status(&key).unwrap().history.unwrap().restarts;
    assert!(
        restarts
            .iter()
            .any(|r| r.cause == "StartApplication" && r.completed_at.is_some()),
        "{restarts:#?}"
    );
    assert_waited(&reasons, &["WithinBudget", "ApplicationBusy"]);
    h.shutdown().await;
}

/// The budget is retargeted (`spec.application` names another application) with an
/// operation in flight and a failed configuration remembered: neither is applied to the new
/// application. The intent is abandoned (not judged on the other application), the history
/// starts afresh, and the failed configuration is free to be tried on the new one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retargeted_budget_applies_nothing_of_the_old_application_to_the_new() {
    let mut h = Harness::start(HarnessConfig::default()).await;
    let sc = scenario("step-up");
    let key = h.add_scenario_budget(&sc, "orders", "team-a");
    h.add_application(&sc, "payments", "team-a");
    h.advance(Duration::from_secs(31 * 60));
    // The first scaling fails on `orders` (and is remembered as failed); the next one runs.
    h.arm_fault(
        &serde_json::from_str(r#"{"kind":"failOperation","application":"orders","count":1}"#).unwrap(),
    )
    .await;
    let mut failed = None;
    for _ in 0..40 {
        h.step().await;
        let status = h.status(&key).unwrap();
        if let Some(last) = status
            .last_scaling
            .as_ref()
            .filter(|l| l.outcome == checkpoint_autoscaler::policy::Outcome::Failed)
        {
            failed = Some(AppConfig::from(last.to));
        }
        if failed.is_some() && status.operation_in_flight.is_some() {
            break;
        }
    }
    let failed = failed.expect("the failed scaling on orders");
    let in_flight = h
        .status(&key)
        .unwrap()
        .operation_in_flight
        .expect("a second scaling in flight");
    assert_eq!(
        in_flight
            .application_arn
            .as_deref()
            .map(|a| a.ends_with("/orders")),
        Some(true)
    );

    h.update_spec(&key, |spec| spec.application.name = "payments".into());
    let mut reasons = Vec::new();
    for _ in 0..40 {
        h.step().await;
        reasons.push(scaling_reason(&h, &key));
    }
    assert!(!reasons.iter().any(|r| r == "PreviouslyFailed"), "{reasons:?}");
    let events = h.events(&key);
    assert!(
        events.iter().any(|n| n.reason == "ApplicationChanged"),
        "{events:#?}"
    );
    assert!(
        events.iter().any(|n| n.reason == "OperationAbandoned"),
        "{events:#?}"
    );
    let status = h.status(&key).unwrap();
    assert!(
        status
            .history
            .as_ref()
            .unwrap()
            .application
            .as_deref()
            .is_some_and(|a| a.ends_with("/payments"))
    );
    // What orders remembered does not hold for payments: it scales, and may pick the
    // configuration that failed on orders.
    let payments: Vec<_> = h
        .update_calls("payments")
        .into_iter()
        .filter(|c| c.status == 200)
        .collect();
    assert_eq!(payments.len(), 1, "payments needs scaling too");
    let last = status.last_scaling.unwrap();
    assert!(
        last.to.kpus >= failed.kpus() - 1,
        "sized for payments' load: {last:?}"
    );
    assert!(
        status
            .history
            .unwrap()
            .to_history()
            .scalings
            .iter()
            .all(|s| s.outcome != checkpoint_autoscaler::policy::Outcome::Failed),
        "no failure of orders is held against payments"
    );
    h.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// Handing back.

/// An application with the service's own autoscaling on: the controller turns it off with
/// its first scaling (`serviceAutoScaling: Disable`), recording that and putting its
/// finalizer on the budget first; when the budget is deleted it turns it back on — through
/// the real SDK, the emulator's application shows `AutoScalingEnabled` again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_budget_gives_the_application_back_as_it_found_it() {
    use checkpoint_autoscaler::controller::reconcile::HandedBack;
    let mut h = Harness::start(HarnessConfig::default()).await;
    let mut sc = scenario("step-up");
    sc.application.auto_scaling_enabled = true;
    let key = h.add_scenario_budget(&sc, "orders", "team-a");
    h.advance(Duration::from_secs(31 * 60));
    let mut scaled = false;
    for _ in 0..20 {
        if h.step().await.iter().any(|r| r.accepted_updates().count() > 0) {
            scaled = true;
            break;
        }
    }
    assert!(scaled);
    assert!(h.has_finalizer(&key));
    let record = h.status(&key).unwrap().hand_back.expect("what it was, recorded");
    assert!(record.service_auto_scaling);
    let autoscaling = |h: &Harness| {
        h.emulator()
            .with_fleet(|f| f.describe_application("orders"))
            .unwrap()
            .parallelism
            .auto_scaling_enabled
    };
    assert!(!autoscaling(&h), "turned off by the scaling");
    // While the update runs, handing back waits (the application is busy).
    assert!(h.hand_back(&key).await.is_err());
    for _ in 0..30 {
        h.step().await;
    }
    match h.hand_back(&key).await {
        Ok(HandedBack::Restored(_)) => {}
        other => panic!("not handed back: {other:?}"),
    }
    assert!(autoscaling(&h), "on again, as the controller found it");
    assert!(
        h.events(&key)
            .iter()
            .any(|n| n.reason == "ServiceAutoScalingRestored"),
        "{:#?}",
        h.events(&key)
    );
    // Twice is harmless: it is as found.
    assert!(matches!(h.hand_back(&key).await, Ok(HandedBack::Nothing(_))));
    assert_eq!(accepted(&mut h), 2, "the scaling and the hand-back");
    h.shutdown().await;
}
