//! Faults, through the emulator and the real SDK clients (the harness): throttling, 5xx and
//! timeouts on every AWS call the controller makes, ConcurrentModificationException,
//! ResourceInUseException, the KPU quota, an operation that fails, an application stuck in
//! `UPDATING`, AccessDenied, the application deleted under its budget, metric gaps, late and
//! NaN datapoints, and the controller killed around `UpdateApplication`.
//!
//! Every test checks the same four things: at most one `UpdateApplication` per reconcile
//! (from the emulator's call log), a status that says what happened with a specific reason,
//! the Events, and a status that converges once the fault ends.
//!
//! The scene: `step-up` (the load doubles at 08:30; at 08:33 the controller scales from 4
//! to 9 KPUs, a restart of about ten minutes). [`brink`] stops at 08:32, one reconcile
//! before that decision.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use async_trait::async_trait;
use checkpoint_autoscaler::{
    aws::{
        ApplicationControl, ApplicationDescription, AwsError, BatchConfig, MetricsMode, OperationStatus,
        Target, UpdateRequest,
    },
    controller::{
        reconcile::{Effect, KPU_LIMIT_MEMORY, OPERATION_STUCK_AFTER},
        store::{BudgetKey, NoticeType},
    },
    emulator::{EmulatorState, calllog::CallFilter, faults::FaultSpec},
    policy::{AppConfig, AppStatus, Outcome},
    sim::UpdateApplication,
};

use crate::harness::{CrashPoint, Harness, HarnessConfig, Reconciled, scenario};

const APP: &str = "orders";

/// The configuration the controller scales `step-up` to at 08:33.
const FIRST_STEP: AppConfig = AppConfig {
    parallelism: 9,
    parallelism_per_kpu: 1,
};

/// The harness with an attempt timeout of 1.5 s: long enough that a loaded machine does not
/// time out a call no fault delays, short enough that a persistent injected latency costs
/// seconds, not minutes. NB: injected latencies are 4 s, well beyond it, so that a starved
/// runtime that wakes the client's timer and the server's late answer together still sees
/// the timeout first.
fn config() -> HarnessConfig {
    let mut config = HarnessConfig::default();
    config.aws.attempt_timeout = Duration::from_millis(1500);
    config.aws.operation_timeout = Duration::from_secs(6);
    config
}

fn fault(json: &str) -> FaultSpec {
    serde_json::from_str(json).unwrap_or_else(|e| panic!("fault {json}: {e}"))
}

/// `step-up` under its budget, reconciled once at 08:32: the next step decides to scale.
async fn brink() -> (Harness, BudgetKey) {
    brink_with(config()).await
}

async fn brink_with(config: HarnessConfig) -> (Harness, BudgetKey) {
    let mut h = Harness::start(config).await;
    let key = h.add_scenario_budget(&scenario("step-up"), APP, "team-a");
    h.advance(Duration::from_secs(31 * 60));
    let first = h.step().await;
    assert!(first[0].outcome.is_ok(), "{:?}", first[0].outcome);
    (h, key)
}

/// Steps `minutes` emulated minutes and returns every reconcile, checking that none sent
/// more than one `UpdateApplication`.
///
/// NB: calls are attributed to reconciles by when they *arrived* (wall clock): a request
/// whose client gave up is logged only when the emulator notices, which can be during the
/// next reconcile.
async fn run(h: &mut Harness, minutes: usize) -> Vec<Reconciled> {
    let mut all = Vec::new();
    let mut windows = Vec::new();
    for _ in 0..minutes {
        let from = jiff::Timestamp::now();
        let reconciled = h.step().await;
        windows.push((from, jiff::Timestamp::now(), reconciled.first().map(|r| r.at)));
        all.extend(reconciled);
    }
    // Give a late record (a dropped request) the chance to be logged.
    tokio::time::sleep(Duration::from_millis(5)).await;
    let calls = h.calls(&CallFilter {
        operation: Some("UpdateApplication".into()),
        ..CallFilter::default()
    });
    for (from, to, at) in windows {
        let sent = calls.iter().filter(|c| c.time >= from && c.time < to).count();
        assert!(
            sent <= 1,
            "{sent} UpdateApplication calls in one reconcile at {at:?}"
        );
    }
    all
}

/// Steps until the status has no operation in flight and `Ready` is `True` again, with the
/// last scaling finished; returns the reconciles (at most `limit` minutes).
async fn converge(h: &mut Harness, key: &BudgetKey, limit: usize) -> Vec<Reconciled> {
    let mut all = Vec::new();
    for _ in 0..limit {
        all.extend(run(h, 1).await);
        let s = h.status(key).unwrap();
        let settled = s.operation_in_flight.is_none()
            && s.condition("Ready").is_some_and(|c| c.status == "True")
            && s.last_scaling
                .as_ref()
                .is_some_and(|l| l.outcome != Outcome::InProgress);
        if settled {
            return all;
        }
    }
    panic!(
        "no convergence within {limit} minutes: {:#?}",
        h.status(key).unwrap().conditions
    );
}

/// (status, reason) of a condition.
fn condition(h: &Harness, key: &BudgetKey, type_: &str) -> (String, String) {
    let s = h.status(key).unwrap();
    let c = s
        .condition(type_)
        .unwrap_or_else(|| panic!("no {type_} condition"));
    (c.status.clone(), c.reason.clone())
}

fn events(h: &Harness, key: &BudgetKey, reason: &str) -> usize {
    h.events(key).iter().filter(|n| n.reason == reason).count()
}

fn accepted_updates(h: &mut Harness) -> usize {
    h.update_calls(APP)
        .iter()
        .filter(|c| (200..300).contains(&c.status))
        .count()
}

/// The scaling converged: one accepted update in all, the status records it as succeeded,
/// and the application runs what was asked.
async fn assert_scaled_once(h: &mut Harness, key: &BudgetKey) {
    converge(h, key, 30).await;
    assert_eq!(accepted_updates(h), 1, "{:#?}", h.update_calls(APP));
    let s = h.status(key).unwrap();
    let last = s.last_scaling.unwrap();
    assert_eq!(last.outcome, Outcome::Succeeded, "{last:?}");
    // The size depends on when the decision was made (the backlog grows meanwhile).
    let to = AppConfig::from(last.to);
    assert!(to.kpus() >= FIRST_STEP.kpus() && to.kpus() <= 16, "{to}");
    let app = s.application.unwrap();
    assert_eq!((app.status, app.config()), (AppStatus::Running, to));
    assert_eq!(events(h, key, "ScalingSucceeded"), 1);
    assert_eq!(h.operations(APP).len(), 1, "one operation on the service");
}

// ---------------------------------------------------------------------------------------------
// Throttling, 5xx and timeouts on the calls that read.

/// The three transient faults and the `Ready` reason each leaves when it outlasts the SDK's
/// retries. Latency is well beyond the attempt timeout of [`config`].
const TRANSIENT: [(&str, &str); 3] = [
    (r#""kind":"throttling""#, "Throttled"),
    (r#""kind":"serverError","status":503"#, "AwsUnavailable"),
    (r#""kind":"latency","millis":4000"#, "AwsUnavailable"),
];

/// Failing reconciles to run under a persistent fault: two show that a repeat publishes no
/// second Event; a latency costs every attempt's timeout in real time, so one.
fn rounds(kind: &str) -> usize {
    if kind.contains("latency") { 1 } else { 2 }
}

/// A read that fails at the decision: no update, Ready=False with the reason, one Event;
/// then the fault ends and the scaling goes through once. A fault shorter than the SDK's
/// retries is absorbed.
async fn read_fault_before_the_decision(operation: &str, config: HarnessConfig) {
    for (kind, reason) in TRANSIENT {
        let (mut h, key) = brink_with(config.clone()).await;
        let id = h
            .arm_fault(&fault(&format!(r#"{{{kind},"operation":"{operation}"}}"#)))
            .await;
        let failed = run(&mut h, rounds(kind)).await;
        assert_eq!(
            failed.len(),
            rounds(kind),
            "retried at the next step ({operation}, {kind})"
        );
        for r in &failed {
            assert!(r.outcome.is_err(), "{operation} {kind}: {:?}", r.effect());
            assert_eq!(r.update_calls().count(), 0);
        }
        assert_eq!(
            condition(&h, &key, "Ready"),
            ("False".into(), reason.into()),
            "{operation} {kind}"
        );
        assert_eq!(condition(&h, &key, "Scaling").1, reason);
        let s = h.status(&key).unwrap();
        assert!(s.operation_in_flight.is_none());
        assert!(
            s.condition("Ready").unwrap().message.contains(operation),
            "the message names the call: {}",
            s.condition("Ready").unwrap().message
        );
        let warnings: Vec<_> = h
            .events(&key)
            .into_iter()
            .filter(|n| n.reason == reason)
            .collect();
        assert_eq!(
            warnings.len(),
            1,
            "one Event for the transition, not one per retry"
        );
        assert_eq!(warnings[0].type_, NoticeType::Warning);

        assert!(h.clear_fault(id).await);
        let r = run(&mut h, 1).await;
        assert!(matches!(r[0].effect(), Some(Effect::Scaled { to, .. }) if *to == FIRST_STEP));
        assert_eq!(condition(&h, &key, "Ready").0, "True");
        assert_scaled_once(&mut h, &key).await;
        h.shutdown().await;
    }

    // Shorter than the SDK's three attempts: absorbed, the decision goes through.
    for (kind, _) in TRANSIENT {
        let (mut h, key) = brink_with(config.clone()).await;
        h.arm_fault(&fault(&format!(
            r#"{{{kind},"operation":"{operation}","count":2}}"#
        )))
        .await;
        let r = run(&mut h, 1).await;
        assert!(
            matches!(r[0].effect(), Some(Effect::Scaled { .. })),
            "{operation} {kind}: {:?}",
            r[0].outcome
        );
        assert!(h.faults().is_empty(), "both faulted attempts were retried");
        assert_eq!(condition(&h, &key, "Ready").0, "True");
        assert_scaled_once(&mut h, &key).await;
        h.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn describe_application_throttled_failing_and_timing_out() {
    read_fault_before_the_decision("DescribeApplication", config()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_metric_data_throttled_failing_and_timing_out() {
    read_fault_before_the_decision("GetMetricData", config()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_metric_data_faults_through_the_batcher() {
    // The controller's own way of reading CloudWatch: one batched call for many budgets,
    // whose failure reaches every budget in it.
    let config = HarnessConfig {
        metrics: MetricsMode::Batched(BatchConfig::default()),
        ..config()
    };
    read_fault_before_the_decision("GetMetricData", config).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_tags_throttled_failing_and_timing_out() {
    for (kind, reason) in TRANSIENT {
        // The tag check runs on the first reconcile (its answer is cached afterwards).
        let mut h = Harness::start(config()).await;
        let key = h.add_scenario_budget(&scenario("step-up"), APP, "team-a");
        h.advance(Duration::from_secs(31 * 60));
        let id = h
            .arm_fault(&fault(&format!(
                r#"{{{kind},"operation":"ListTagsForResource"}}"#
            )))
            .await;
        let failed = run(&mut h, 1).await;
        assert!(failed[0].outcome.is_err());
        assert_eq!(
            condition(&h, &key, "Ready"),
            ("False".into(), reason.into()),
            "{kind}"
        );
        assert!(
            h.status(&key)
                .unwrap()
                .condition("Ready")
                .unwrap()
                .message
                .contains("tags"),
            "says it was the tag check"
        );
        assert_eq!(events(&h, &key, reason), 1);
        assert!(h.clear_fault(id).await);
        // Observed again, and the breach is acted on once.
        let r = run(&mut h, 1).await;
        assert!(r[0].outcome.is_ok(), "{:?}", r[0].outcome);
        assert_eq!(condition(&h, &key, "Ready").0, "True");
        run(&mut h, 1).await;
        assert_scaled_once(&mut h, &key).await;
        h.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn describe_operation_throttled_failing_and_timing_out_while_following() {
    for (kind, reason) in TRANSIENT {
        let (mut h, key) = brink().await;
        let scaled = run(&mut h, 1).await;
        assert!(matches!(scaled[0].effect(), Some(Effect::Scaled { .. })));
        let id = h
            .arm_fault(&fault(&format!(
                r#"{{{kind},"operation":"DescribeApplicationOperation"}}"#
            )))
            .await;
        let failed = run(&mut h, rounds(kind)).await;
        assert!(
            failed
                .iter()
                .all(|r| r.outcome.is_err() && r.update_calls().count() == 0)
        );
        // The operation stays recorded (and Scaling True): it is followed, never re-issued.
        let s = h.status(&key).unwrap();
        let op = s.operation_in_flight.as_ref().expect("still in flight");
        assert!(op.operation_id.is_some());
        assert_eq!(
            condition(&h, &key, "Ready"),
            ("False".into(), reason.into()),
            "{kind}"
        );
        assert_eq!(
            condition(&h, &key, "Scaling"),
            ("True".into(), "ScaleUpRequired".into())
        );
        assert_eq!(events(&h, &key, reason), 1);
        assert!(h.clear_fault(id).await);
        assert_scaled_once(&mut h, &key).await;
        h.shutdown().await;
    }
}

// ---------------------------------------------------------------------------------------------
// Throttling, 5xx and timeouts on UpdateApplication: sent once, never retried blindly.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_throttled_update_is_dropped_and_decided_afresh() {
    let (mut h, key) = brink().await;
    h.arm_fault(&fault(
        r#"{"kind":"throttling","operation":"UpdateApplication","count":1}"#,
    ))
    .await;
    let r = run(&mut h, 1).await;
    assert!(r[0].outcome.is_err());
    assert_eq!(r[0].update_calls().count(), 1, "the SDK does not retry the write");
    let s = h.status(&key).unwrap();
    assert!(s.operation_in_flight.is_none(), "nothing reached AWS");
    assert_eq!(
        condition(&h, &key, "Scaling"),
        ("False".into(), "Throttled".into())
    );
    assert_eq!(
        condition(&h, &key, "Ready").0,
        "True",
        "the application was observed"
    );
    assert!(h.faults().is_empty());
    // The next reconcile decides again on a fresh observation: one accepted update.
    assert_scaled_once(&mut h, &key).await;
    assert_eq!(h.update_calls(APP).len(), 2);
    h.shutdown().await;
}

/// A 5xx or a timeout on UpdateApplication: the outcome is unknown. The intent stays; the
/// next reconcile judges by the application whether the update took effect.
async fn ambiguous_update(kind: &str, took_effect: bool) {
    let (mut h, key) = brink().await;
    h.arm_fault(&fault(&format!(
        r#"{{{kind},"operation":"UpdateApplication","count":1}}"#
    )))
    .await;
    let r = run(&mut h, 1).await;
    assert!(r[0].outcome.is_err(), "{kind}");
    let s = h.status(&key).unwrap();
    let intent = s.operation_in_flight.as_ref().expect("the intent is kept");
    assert!(intent.operation_id.is_none());
    assert_eq!(AppConfig::from(intent.to), FIRST_STEP);
    assert_eq!(
        condition(&h, &key, "Scaling"),
        ("Unknown".into(), "UpdateOutcomeUnknown".into())
    );
    assert_eq!(events(&h, &key, "UpdateOutcomeUnknown"), 1);

    let all = converge(&mut h, &key, 30).await;
    let updates_after: usize = all.iter().map(|r| r.update_calls().count()).sum();
    if took_effect {
        assert_eq!(
            updates_after, 0,
            "{kind}: the update took effect; it is followed, not sent again"
        );
        assert_eq!(h.update_calls(APP).len(), 1);
    } else {
        assert_eq!(updates_after, 1, "{kind}: it did not; decided and sent once more");
    }
    assert_eq!(h.operations(APP).len(), 1, "one operation on the service");
    let s = h.status(&key).unwrap();
    let last = s.last_scaling.unwrap();
    assert_eq!(
        (last.outcome, AppConfig::from(last.to)),
        (Outcome::Succeeded, FIRST_STEP)
    );
    assert_eq!(s.application.unwrap().config(), FIRST_STEP);
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_update_answered_with_a_5xx_is_judged_by_the_application() {
    // The emulator fails it before serving: it did not take effect.
    ambiguous_update(r#""kind":"serverError","status":500"#, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_update_that_timed_out_after_taking_effect_is_followed_not_repeated() {
    // Served, then answered after the SDK's attempt timeout: it did take effect.
    ambiguous_update(r#""kind":"responseLatency","millis":4000"#, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_update_whose_connection_closed_after_taking_effect_is_followed_not_repeated() {
    // Served, then the connection closed before any answer (hyper's IncompleteMessage,
    // which the SDK classes as neither I/O nor timeout): it did take effect.
    ambiguous_update(r#""kind":"closeConnection""#, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_update_whose_connection_closed_before_being_served_is_decided_again() {
    // The same to the client, but the request never reached the service.
    ambiguous_update(r#""kind":"closeConnection","served":false"#, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_update_answered_without_an_operation_id_is_followed_not_repeated() {
    // A 200 without OperationId: applied, but the controller cannot follow it by id.
    ambiguous_update(r#""kind":"missingOperationId""#, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_update_that_timed_out_before_being_served_is_resolved_once() {
    // Delayed before serving, beyond the attempt timeout: whether the server went on to
    // serve it after the client gave up is the server's business; either way the
    // controller finds out from the application and ends with one operation.
    let (mut h, key) = brink().await;
    h.arm_fault(&fault(
        r#"{"kind":"latency","millis":4000,"operation":"UpdateApplication","count":1}"#,
    ))
    .await;
    let r = run(&mut h, 1).await;
    assert!(r[0].outcome.is_err());
    assert_eq!(
        condition(&h, &key, "Scaling"),
        ("Unknown".into(), "UpdateOutcomeUnknown".into())
    );
    converge(&mut h, &key, 30).await;
    // The request the client gave up on is logged as 499 (dropped before it was served),
    // or as served if the server went on with it; either way one update took effect.
    let calls = h.update_calls(APP);
    assert!(calls.len() <= 2, "{calls:#?}");
    assert!(
        calls.iter().all(|c| c.status == 200 || c.status == 499),
        "{calls:#?}"
    );
    assert_eq!(accepted_updates(&mut h), 1);
    assert_eq!(h.operations(APP).len(), 1);
    let last = h.status(&key).unwrap().last_scaling.unwrap();
    assert_eq!(
        (last.outcome, AppConfig::from(last.to)),
        (Outcome::Succeeded, FIRST_STEP)
    );
    h.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// ConcurrentModificationException and ResourceInUseException.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_concurrent_modification_is_reobserved_never_overwritten() {
    let (mut h, key) = brink().await;
    h.arm_fault(&fault(
        r#"{"kind":"concurrentModification","operation":"UpdateApplication","count":1}"#,
    ))
    .await;
    let r = run(&mut h, 1).await;
    assert_eq!(r[0].effect(), Some(&Effect::Refused));
    let s = h.status(&key).unwrap();
    assert!(s.operation_in_flight.is_none());
    assert!(
        s.last_scaling.is_none(),
        "nothing happened, nothing recorded as a scaling"
    );
    assert_eq!(
        condition(&h, &key, "Scaling"),
        ("False".into(), "ConcurrentModification".into())
    );
    assert_eq!(events(&h, &key, "ScalingRefused"), 1);
    assert_scaled_once(&mut h, &key).await;
    h.shutdown().await;
}

/// Another client that changes the application between the controller's describe and its
/// update: a real version conflict in the model, not an injected error.
struct Meddler {
    inner: Arc<dyn ApplicationControl>,
    emulator: EmulatorState,
    to: AppConfig,
    done: Mutex<bool>,
}

#[async_trait]
impl ApplicationControl for Meddler {
    async fn describe(&self, target: &Target, name: &str) -> Result<ApplicationDescription, AwsError> {
        self.inner.describe(target, name).await
    }

    async fn list_tags(&self, target: &Target, arn: &str) -> Result<Vec<(String, String)>, AwsError> {
        self.inner.list_tags(target, arn).await
    }

    async fn list_operations(
        &self,
        target: &Target,
        name: &str,
    ) -> Result<Vec<checkpoint_autoscaler::aws::OperationSummary>, AwsError> {
        self.inner.list_operations(target, name).await
    }

    async fn count_snapshots(
        &self,
        target: &Target,
        name: &str,
        limit: u32,
    ) -> Result<checkpoint_autoscaler::aws::SnapshotCount, AwsError> {
        self.inner.count_snapshots(target, name, limit).await
    }

    async fn update(&self, target: &Target, request: &UpdateRequest) -> Result<String, AwsError> {
        let first = !std::mem::replace(&mut *self.done.lock().unwrap(), true);
        if first {
            let to = self.to;
            self.emulator
                .with_fleet(|f| {
                    let version = f.describe_application(&request.name)?.version_id;
                    f.update_application(
                        &request.name,
                        UpdateApplication {
                            current_application_version_id: Some(version),
                            conditional_token: None,
                            parallelism: Some(checkpoint_autoscaler::sim::ParallelismUpdate {
                                configuration_type: Some(
                                    checkpoint_autoscaler::sim::ConfigurationType::Custom,
                                ),
                                parallelism: Some(to.parallelism),
                                parallelism_per_kpu: Some(to.parallelism_per_kpu),
                                auto_scaling_enabled: None,
                            }),
                            restore: None,
                            snapshots_enabled: None,
                            monitoring: None,
                        },
                    )
                })
                .expect("the other client's update");
        }
        self.inner.update(target, request).await
    }

    async fn describe_operation(
        &self,
        target: &Target,
        name: &str,
        operation_id: &str,
    ) -> Result<OperationStatus, AwsError> {
        self.inner.describe_operation(target, name, operation_id).await
    }

    async fn own_account(&self) -> Result<String, AwsError> {
        self.inner.own_account().await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn someone_elses_change_between_describe_and_update_is_never_overwritten() {
    let (mut h, key) = brink().await;
    let other = AppConfig::new(12, 1);
    let emulator = h.emulator().clone();
    h.wrap_apps(|inner| {
        Arc::new(Meddler {
            inner,
            emulator,
            to: other,
            done: Mutex::new(false),
        })
    });
    let r = run(&mut h, 1).await;
    assert_eq!(r[0].effect(), Some(&Effect::Refused));
    assert_eq!(
        r[0].update_calls().next().unwrap().error_code.as_deref(),
        Some("ConcurrentModificationException")
    );
    assert_eq!(
        condition(&h, &key, "Scaling"),
        ("False".into(), "ConcurrentModification".into())
    );
    // The controller re-observes: the other client's restart runs (the controller does not
    // touch it), then the application runs what the other client asked, which meets the
    // budget: nothing more to do.
    let after = run(&mut h, 40).await;
    let sent: usize = after.iter().map(|r| r.update_calls().count()).sum();
    assert_eq!(sent, 0, "the other client's configuration stands");
    let s = h.status(&key).unwrap();
    assert_eq!(s.application.as_ref().unwrap().config(), other);
    assert!(s.operation_in_flight.is_none());
    assert_eq!(condition(&h, &key, "Ready").0, "True");
    assert_eq!(h.operations(APP).len(), 1, "only the other client's operation");
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_application_is_never_updated() {
    for status in ["UPDATING", "AUTOSCALING", "STARTING"] {
        // Busy as described: the controller holds and sends nothing.
        let (mut h, key) = brink().await;
        let id = h
            .arm_fault(&fault(&format!(
                r#"{{"kind":"resourceInUse","status":"{status}","application":"{APP}"}}"#
            )))
            .await;
        let held = run(&mut h, 10).await;
        assert!(
            held.iter()
                .all(|r| r.outcome.is_ok() && r.update_calls().count() == 0)
        );
        assert_eq!(
            condition(&h, &key, "Scaling"),
            ("False".into(), "ApplicationBusy".into()),
            "{status}"
        );
        assert_eq!(condition(&h, &key, "Ready").0, "True");
        assert_eq!(
            serde_json::to_value(h.status(&key).unwrap().application.unwrap().status).unwrap(),
            status
        );
        assert!(h.clear_fault(id).await);
        assert_scaled_once(&mut h, &key).await;
        h.shutdown().await;

        // Busy between the describe and the update: refused, nothing recorded as a scaling.
        let (mut h, key) = brink().await;
        h.arm_fault(&fault(&format!(
            r#"{{"kind":"resourceInUse","status":"{status}","operation":"UpdateApplication","count":1}}"#
        )))
        .await;
        let r = run(&mut h, 1).await;
        assert_eq!(r[0].effect(), Some(&Effect::Refused), "{status}");
        assert_eq!(
            r[0].update_calls().next().unwrap().error_code.as_deref(),
            Some("ResourceInUseException")
        );
        let s = h.status(&key).unwrap();
        assert!(s.operation_in_flight.is_none() && s.last_scaling.is_none());
        let scaling = s.condition("Scaling").unwrap();
        assert_eq!(
            (scaling.status.as_str(), scaling.reason.as_str()),
            ("False", "ApplicationBusy")
        );
        assert!(scaling.message.contains(status), "{}", scaling.message);
        assert_eq!(events(&h, &key, "ScalingRefused"), 1);
        assert_scaled_once(&mut h, &key).await;
        h.shutdown().await;
    }
}

// ---------------------------------------------------------------------------------------------
// LimitExceededException: the KPU quota.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_kpu_quota_is_remembered_without_a_retry_storm() {
    let (mut h, key) = brink().await;
    // The model enforces a quota of 6 KPUs; the controller wants 9.
    h.set_kpu_quota(6).await;
    let r = run(&mut h, 1).await;
    assert_eq!(r[0].effect(), Some(&Effect::Failed));
    let call = r[0].update_calls().next().unwrap().clone();
    assert_eq!(call.error_code.as_deref(), Some("LimitExceededException"));
    let s = h.status(&key).unwrap();
    assert_eq!(
        condition(&h, &key, "Scaling"),
        ("False".into(), "LimitExceeded".into())
    );
    let limit = s.kpu_limit.clone().expect("the quota is remembered");
    assert_eq!(limit.refused_kpus, FIRST_STEP.kpus());
    let last = s.last_scaling.unwrap();
    assert_eq!(
        (last.outcome, AppConfig::from(last.to)),
        (Outcome::Failed, FIRST_STEP)
    );
    assert!(s.operation_in_flight.is_none());
    assert_eq!(events(&h, &key, "LimitExceeded"), 1);
    let warning = h
        .events(&key)
        .into_iter()
        .find(|n| n.reason == "LimitExceeded")
        .unwrap();
    assert_eq!(
        (warning.type_, warning.action.as_str()),
        (NoticeType::Warning, "Scaling")
    );

    // Three emulated hours: the controller settles within the quota; every refused KPU
    // count is tried at most once, no configuration is asked twice, and once settled
    // nothing more is sent.
    let all = run(&mut h, 180).await;
    let calls = h.update_calls(APP);
    let refused: Vec<_> = calls.iter().filter(|c| c.status >= 300).collect();
    let accepted = calls.iter().filter(|c| c.status < 300).count();
    // Each KPU count above the quota is refused at most once (9, 8, 7 at worst), spaced by
    // the scale-up cooldown.
    assert!(
        refused.len() <= (FIRST_STEP.kpus() - 6) as usize,
        "a retry storm: {} refusals in 3 hours",
        refused.len()
    );
    for pair in refused.windows(2) {
        let gap = pair[1].virtual_time.duration_since(pair[0].virtual_time);
        assert!(
            gap >= jiff::SignedDuration::from_mins(5),
            "refusals {gap:?} apart"
        );
    }
    assert_eq!(accepted, 1, "settles on one configuration within the quota");
    let last_call = all.iter().rposition(|r| r.update_calls().count() > 0).unwrap();
    assert!(
        all[last_call].at < h.now() - jiff::SignedDuration::from_mins(120),
        "nothing sent for the last two hours"
    );
    let s = h.status(&key).unwrap();
    let app = s.application.unwrap();
    assert!(app.kpus <= 6, "within the quota: {app:?}");
    assert!(app.kpus > 4, "and scaled as far as it allows: {app:?}");
    assert_eq!(s.last_scaling.unwrap().outcome, Outcome::Succeeded);
    let history = s.history.unwrap();
    let mut asked: Vec<AppConfig> = history.scalings.iter().map(|r| AppConfig::from(r.to)).collect();
    let n = asked.len();
    asked.sort();
    asked.dedup();
    assert_eq!(asked.len(), n, "no configuration asked twice");

    // The quota is raised (by AWS Support); after the memory ends the controller may look
    // above it again, and forgets the refusal.
    h.set_kpu_quota(64).await;
    h.advance(KPU_LIMIT_MEMORY);
    run(&mut h, 2).await;
    assert!(
        h.status(&key).unwrap().kpu_limit.is_none(),
        "forgotten after {KPU_LIMIT_MEMORY:?}"
    );
    h.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// An operation that fails, and one stuck in UPDATING.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_operation_is_remembered_and_the_application_rolled_back() {
    let (mut h, key) = brink().await;
    h.arm_fault(&fault(
        r#"{"kind":"failOperation","message":"The job failed to restore: corrupt snapshot.","count":1}"#,
    ))
    .await;
    let r = run(&mut h, 1).await;
    assert!(matches!(r[0].effect(), Some(Effect::Scaled { to, .. }) if *to == FIRST_STEP));
    // Followed to its failure: condition, Warning Event, lastScaling with AWS's words.
    let mut failed_at = None;
    for _ in 0..20 {
        let r = run(&mut h, 1).await;
        if failed_at.is_none() && condition(&h, &key, "Scaling").1 == "ScalingFailed" {
            failed_at = Some(r[0].at);
        }
    }
    assert!(failed_at.is_some(), "the failure was reported");
    let s = h.status(&key).unwrap();
    let last = s.last_scaling.clone().unwrap();
    assert_eq!(
        (last.outcome, AppConfig::from(last.to)),
        (Outcome::Failed, FIRST_STEP)
    );
    assert!(last.message.unwrap().contains("corrupt snapshot"));
    assert_eq!(events(&h, &key, "ScalingFailed"), 1);
    // The service rolled the application back; it is not left rolled forward.
    let ops = h.operations(APP);
    assert!(ops.iter().any(|o| o.operation == "RollbackApplication"));

    // Later: the failed configuration is never asked again.
    run(&mut h, 90).await;
    let s = h.status(&key).unwrap();
    let history = s.history.unwrap();
    let to_failed = history
        .scalings
        .iter()
        .filter(|r| AppConfig::from(r.to) == FIRST_STEP)
        .count();
    assert_eq!(to_failed, 1, "{:#?}", history.scalings);
    for r in history
        .scalings
        .iter()
        .filter(|r| AppConfig::from(r.to) != FIRST_STEP)
    {
        assert_ne!(r.outcome, Outcome::InProgress);
    }
    assert!(s.operation_in_flight.is_none());
    assert_eq!(s.application.unwrap().status, AppStatus::Running);
    let updates = h.update_calls(APP);
    assert!(updates.len() <= 2, "one failed, at most one other: {updates:#?}");
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_application_stuck_in_updating_is_followed_and_reported_once() {
    let (mut h, key) = brink().await;
    let r = run(&mut h, 1).await;
    assert!(matches!(r[0].effect(), Some(Effect::Scaled { .. })));
    let id = h
        .arm_fault(&fault(&format!(
            r#"{{"kind":"stuckUpdating","application":"{APP}"}}"#
        )))
        .await;
    let bound_minutes = OPERATION_STUCK_AFTER.as_secs() as usize / 60;
    let stuck = run(&mut h, bound_minutes + 15).await;
    for r in &stuck {
        assert_eq!(r.update_calls().count(), 0, "never a second update");
        assert!(
            matches!(r.effect(), Some(Effect::Following { .. })),
            "{:?}",
            r.outcome
        );
    }
    let s = h.status(&key).unwrap();
    assert!(s.operation_in_flight.is_some());
    let scaling = s.condition("Scaling").unwrap();
    assert_eq!(
        (scaling.status.as_str(), scaling.reason.as_str()),
        ("True", "OperationStuck")
    );
    assert!(
        scaling.message.contains("describe-application-operation"),
        "{}",
        scaling.message
    );
    // When it was reported: not before the bound.
    let reported = stuck
        .iter()
        .position(|r| {
            r.outcome
                .as_ref()
                .is_ok_and(|rep| rep.notices.iter().any(|n| n.reason == "OperationStuck"))
        })
        .expect("reported");
    assert!(reported + 2 >= bound_minutes, "reported after {reported} minutes");
    assert_eq!(events(&h, &key, "OperationStuck"), 1, "one Warning Event");
    let warning = h
        .events(&key)
        .into_iter()
        .find(|n| n.reason == "OperationStuck")
        .unwrap();
    assert_eq!(warning.type_, NoticeType::Warning);

    // Unstuck: followed to its end, still one update.
    assert!(h.clear_fault(id).await);
    assert_scaled_once(&mut h, &key).await;
    h.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// AccessDenied.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_denied_sets_ready_false_and_writes_nothing() {
    // Every call denied: nothing is written, Ready says why.
    let (mut h, key) = brink().await;
    let id = h.arm_fault(&fault(r#"{"kind":"accessDenied"}"#)).await;
    let denied = run(&mut h, 20).await;
    assert!(!denied.is_empty());
    assert!(
        denied
            .iter()
            .all(|r| r.outcome.is_err() && r.update_calls().count() == 0)
    );
    assert!(
        denied.len() < 20,
        "backs off slowly: {} reconciles in 20 minutes",
        denied.len()
    );
    assert_eq!(
        condition(&h, &key, "Ready"),
        ("False".into(), "AccessDenied".into())
    );
    assert!(
        h.status(&key)
            .unwrap()
            .condition("Ready")
            .unwrap()
            .message
            .contains("kinesisanalytics:DescribeApplication")
    );
    assert_eq!(events(&h, &key, "AccessDenied"), 1);
    assert!(h.clear_fault(id).await);
    converge_after_backoff(&mut h, &key).await;
    h.shutdown().await;

    // Only UpdateApplication denied: the refusal is a permission problem, not a bad
    // configuration, so nothing is remembered as failed; one call per decision.
    let (mut h, key) = brink().await;
    let id = h
        .arm_fault(&fault(
            r#"{"kind":"accessDenied","operation":"UpdateApplication"}"#,
        ))
        .await;
    let denied = run(&mut h, 20).await;
    assert_eq!(
        condition(&h, &key, "Ready"),
        ("False".into(), "AccessDenied".into())
    );
    let s = h.status(&key).unwrap();
    assert!(s.operation_in_flight.is_none() && s.last_scaling.is_none());
    let history = s.history.unwrap_or_default();
    assert!(history.scalings.is_empty(), "{:#?}", history.scalings);
    let sent: usize = denied.iter().map(|r| r.update_calls().count()).sum();
    assert!((1..=5).contains(&sent), "{sent} denied updates in 20 minutes");
    assert_eq!(events(&h, &key, "AccessDenied"), 1);
    assert!(h.clear_fault(id).await);
    converge_after_backoff(&mut h, &key).await;
    h.shutdown().await;
}

/// After a slow backoff: the budget acts on the breach once it can, and converges.
async fn converge_after_backoff(h: &mut Harness, key: &BudgetKey) {
    for _ in 0..20 {
        run(h, 1).await;
        if accepted_updates(h) > 0 {
            break;
        }
    }
    assert_scaled_once(h, key).await;
}

// ---------------------------------------------------------------------------------------------
// The application deleted under its budget.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_application_drops_its_operation_and_is_taken_up_again() {
    let (mut h, key) = brink().await;
    let r = run(&mut h, 1).await;
    assert!(matches!(r[0].effect(), Some(Effect::Scaled { .. })));
    h.delete_application(APP).await;

    let gone = run(&mut h, 30).await;
    assert!(
        gone.iter()
            .all(|r| r.outcome.is_err() && r.update_calls().count() == 0)
    );
    assert!(
        gone.iter()
            .flat_map(|r| &r.calls)
            .all(|c| c.operation == "DescribeApplication"),
        "nothing but looking for it"
    );
    let s = h.status(&key).unwrap();
    assert_eq!(
        condition(&h, &key, "Ready"),
        ("False".into(), "ApplicationNotFound".into())
    );
    assert_eq!(
        condition(&h, &key, "Scaling"),
        ("False".into(), "ApplicationNotFound".into())
    );
    assert!(s.operation_in_flight.is_none(), "the operation was dropped");
    let last = s.last_scaling.unwrap();
    assert!(last.message.unwrap().contains("deleted"));
    assert_eq!(last.outcome, Outcome::Failed);
    let history = s.history.unwrap_or_default();
    assert!(
        history.scalings.iter().all(|r| r.outcome != Outcome::InProgress),
        "{:#?}",
        history.scalings
    );
    assert_eq!(events(&h, &key, "ApplicationNotFound"), 1);

    // It appears again (a new application of the same name): taken up afresh.
    h.add_application(&scenario("step-up"), APP, "team-a");
    let mut back = false;
    for _ in 0..20 {
        run(&mut h, 1).await;
        if condition(&h, &key, "Ready").0 == "True" {
            back = true;
            break;
        }
    }
    assert!(back, "Ready again once the application exists");
    let s = h.status(&key).unwrap();
    let app = s.application.unwrap();
    assert_eq!((app.status, app.version_id), (AppStatus::Running, 1));
    assert!(s.operation_in_flight.is_none());
    h.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// Metric gaps, late and NaN datapoints.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_scaling_on_a_metric_gap_and_scaling_once_data_returns() {
    let (mut h, key) = brink().await;
    // No datapoint published from 08:20 to 08:50: the window holds nothing to judge.
    let start = h.now() - jiff::SignedDuration::from_mins(12);
    let until = start + jiff::SignedDuration::from_mins(30);
    h.arm_fault(&fault(&format!(
        r#"{{"kind":"metricGap","application":"{APP}","from":"{start}","until":"{until}"}}"#
    )))
    .await;
    let blind = run(&mut h, 10).await;
    assert!(
        blind
            .iter()
            .all(|r| r.outcome.is_ok() && r.update_calls().count() == 0)
    );
    assert_eq!(
        condition(&h, &key, "SloMet"),
        ("Unknown".into(), "MissingMetrics".into())
    );
    assert_eq!(
        condition(&h, &key, "Scaling"),
        ("False".into(), "MissingMetrics".into())
    );
    assert_eq!(condition(&h, &key, "Ready").0, "True");
    let checkpoints = h.status(&key).unwrap().checkpoints.unwrap();
    assert_eq!(checkpoints.samples, 0);
    assert_eq!(checkpoints.last_duration_ms, None);
    // The gap stays a gap; new periods arrive after it and the breach is acted on once.
    let mut scaled = false;
    for _ in 0..40 {
        let r = run(&mut h, 1).await;
        if r.iter()
            .any(|r| matches!(r.effect(), Some(Effect::Scaled { .. })))
        {
            scaled = true;
            assert!(h.now() > until, "not before data is back");
            break;
        }
    }
    assert!(scaled, "the breach is acted on once data is back");
    converge(&mut h, &key, 30).await;
    assert_eq!(accepted_updates(&mut h), 1);
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_datapoints_are_waited_for_not_taken_as_zero() {
    let (mut h, key) = brink().await;
    // Every period arrives 15 minutes late: the 10-minute window is empty.
    let id = h
        .arm_fault(&fault(r#"{"kind":"metricDelay","seconds":900}"#))
        .await;
    let waited = run(&mut h, 5).await;
    assert!(
        waited
            .iter()
            .all(|r| r.outcome.is_ok() && r.update_calls().count() == 0)
    );
    assert_eq!(condition(&h, &key, "SloMet").0, "Unknown");
    assert_eq!(condition(&h, &key, "Scaling").1, "MissingMetrics");
    // The late datapoints arrive: the breach they show is acted on, once.
    assert!(h.clear_fault(id).await);
    assert_scaled_once(&mut h, &key).await;
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nan_datapoints_never_reach_the_policy_as_numbers() {
    let (mut h, key) = brink().await;
    // The real SDK decodes the CBOR NaNs; the observer must drop them.
    let target = Target::new("eu-west-1");
    let now = h.now();
    h.arm_fault(&fault(
        r#"{"kind":"metricNaN","metrics":["lastCheckpointDuration","cpuUtilization"]}"#,
    ))
    .await;
    let samples = h
        .core()
        .metrics_source
        .samples(
            &target,
            APP,
            Duration::from_secs(600),
            Duration::from_secs(60),
            now,
        )
        .await
        .unwrap();
    assert!(!samples.is_empty(), "the other metrics still arrive");
    assert!(
        samples
            .iter()
            .all(|s| s.last_checkpoint_duration_ms.is_none() && s.cpu_utilization.is_none())
    );
    assert!(samples.iter().any(|s| s.heap_memory_utilization.is_some()));

    // Through the controller: never a scaling on a number made of NaN, figures without NaN.
    let r = run(&mut h, 10).await;
    for rec in &r {
        let report = rec.outcome.as_ref().expect("observing works");
        assert_eq!(
            rec.update_calls().count(),
            0,
            "no duration data, no scaling for it"
        );
        if let Some(d) = &report.decision {
            for v in [
                d.figures.last_duration_ms,
                d.figures.max_duration_ms,
                d.figures.representative_duration_ms,
                d.figures.last_size_bytes,
            ]
            .into_iter()
            .flatten()
            {
                assert!(v.is_finite(), "{:?}", d.figures);
            }
        }
    }
    let s = h.status(&key).unwrap();
    assert_eq!(s.checkpoints.unwrap().last_duration_ms, None);
    assert_eq!(condition(&h, &key, "SloMet").0, "Unknown");
    // Real numbers again: the breach is acted on once.
    h.clear_faults().await;
    assert_scaled_once(&mut h, &key).await;
    h.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// The controller killed around UpdateApplication.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_after_recording_the_intent_the_update_is_sent_once() {
    let (mut h, key) = brink().await;
    h.crash_at(&key, CrashPoint::AfterIntent);
    let r = run(&mut h, 1).await;
    assert_eq!(r[0].crashed, Some(CrashPoint::AfterIntent));
    assert_eq!(r[0].update_calls().count(), 0, "died before the call");
    let intent = h.status(&key).unwrap().operation_in_flight.unwrap();
    assert!(intent.operation_id.is_none());
    assert_eq!(h.restarts(), 1);
    // The fresh controller finds the intent, sees from the application's version that it
    // never reached AWS, drops it and decides again: one UpdateApplication in all.
    assert_scaled_once(&mut h, &key).await;
    assert_eq!(h.update_calls(APP).len(), 1);
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_after_update_application_the_operation_is_followed_not_repeated() {
    let (mut h, key) = brink().await;
    h.crash_at(&key, CrashPoint::AfterUpdate);
    let r = run(&mut h, 1).await;
    assert_eq!(r[0].crashed, Some(CrashPoint::AfterUpdate));
    assert_eq!(r[0].accepted_updates().count(), 1);
    let intent = h.status(&key).unwrap().operation_in_flight.unwrap();
    assert!(
        intent.operation_id.is_none(),
        "the operation id was never recorded"
    );
    // The fresh controller never calls UpdateApplication again for that decision: it
    // follows the update it finds on the application (version moved, UPDATING).
    let after = converge(&mut h, &key, 30).await;
    assert_eq!(after.iter().map(|r| r.update_calls().count()).sum::<usize>(), 0);
    assert!(
        after
            .iter()
            .any(|r| matches!(r.effect(), Some(Effect::Following { .. })))
    );
    assert_eq!(h.update_calls(APP).len(), 1);
    let s = h.status(&key).unwrap();
    let last = s.last_scaling.unwrap();
    assert_eq!(
        (last.outcome, AppConfig::from(last.to)),
        (Outcome::Succeeded, FIRST_STEP)
    );
    assert_eq!(events(&h, &key, "ScalingSucceeded"), 1);
    assert_eq!(h.operations(APP).len(), 1);
    h.shutdown().await;
}

/// Killed after UpdateApplication, and the restarted controller's first read comes from a
/// cache one write behind: the budget as it was before the intent. It decides on that read,
/// but its status write is conditioned on the stale resourceVersion and refused, so the
/// intent survives; the next read is current and the update is followed to its end, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_read_after_a_crash_never_erases_the_intent() {
    let (mut h, key) = brink().await;
    h.crash_at(&key, CrashPoint::AfterUpdate);
    let r = run(&mut h, 1).await;
    assert_eq!(r[0].crashed, Some(CrashPoint::AfterUpdate));
    assert_eq!(r[0].accepted_updates().count(), 1);
    assert!(h.status(&key).unwrap().operation_in_flight.is_some());

    h.serve_stale_read(&key);
    let stale = run(&mut h, 1).await;
    let err = stale[0].outcome.as_ref().expect_err("the stale write is refused");
    assert_eq!(err.metric_label(), "status_conflict", "{err}");
    assert_eq!(stale[0].update_calls().count(), 0);
    let intent = h.status(&key).unwrap().operation_in_flight;
    assert!(intent.is_some(), "the intent survives the stale read");

    let after = converge(&mut h, &key, 30).await;
    assert_eq!(after.iter().map(|r| r.update_calls().count()).sum::<usize>(), 0);
    assert_eq!(h.update_calls(APP).len(), 1);
    let last = h.status(&key).unwrap().last_scaling.unwrap();
    assert_eq!(
        (last.outcome, AppConfig::from(last.to)),
        (Outcome::Succeeded, FIRST_STEP)
    );
    assert_eq!(events(&h, &key, "ScalingSucceeded"), 1);
    h.shutdown().await;
}
