//! Reconciler tests: the mocked API server asserts every status patch and Event, the fake
//! AWS records every call.

use std::{sync::Arc, time::Duration};

use kube::runtime::controller::Action;

use super::{Context, Error, error_policy, reconcile, status::*};
use crate::{
    aws::{AwsError, OperationState},
    crd::{CheckpointBudget, CheckpointBudgetStatus, ConfigStatus, Mode, OperationInFlight, ScalingHistory},
    fixtures::{self, APP, ApiServerVerifier, TestBudget as _, timeout_after_1s},
    policy::{AppConfig, AppStatus, Cause, History, Outcome, RecommendationRecord, ScalingRecord},
};

fn cond<'a>(status: &'a CheckpointBudgetStatus, type_: &str) -> (&'a str, &'a str) {
    let c = status
        .condition(type_)
        .unwrap_or_else(|| panic!("condition {type_} missing"));
    (c.status.as_str(), c.reason.as_str())
}

fn failures(ctx: &Context, label: &str) -> bool {
    let text = ctx.metrics.encode().unwrap();
    text.contains(&format!(
        r#"checkpoint_autoscaler_reconcile_failures_total{{budget="streaming/orders",error="{label}"}} 1"#
    ))
}

#[tokio::test]
async fn a_healthy_budget_gets_status_and_no_event() {
    let (ctx, mut api, fake) = Context::test();
    let budget = CheckpointBudget::test();
    let server = {
        let budget = budget.clone();
        tokio::spawn(async move {
            let status = api.status_patch(&budget).await;
            assert_eq!(status.observed_generation, Some(3));
            assert_eq!(cond(&status, READY), ("True", "ApplicationObserved"));
            assert_eq!(cond(&status, SLO_MET), ("True", "WithinBudget"));
            assert_eq!(cond(&status, SCALING).0, "False");
            assert!(status.conditions.iter().all(|c| c.observed_generation == Some(3)));
            let app = status.application.as_ref().unwrap();
            assert_eq!(
                (app.parallelism, app.parallelism_per_kpu, app.kpus, app.version_id),
                (4, 1, 4, 7)
            );
            assert_eq!(
                status.checkpoints.as_ref().unwrap().last_duration.as_deref(),
                Some("1m20s")
            );
            assert_eq!(status.diagnosis.as_ref().unwrap().cause, Cause::Healthy);
            assert!(status.operation_in_flight.is_none());
            assert!(!status.history.as_ref().unwrap().recommendations.is_empty());
            api.expect_silence().await;
        })
    };
    let action = reconcile(Arc::new(budget), ctx.clone()).await.unwrap();
    assert_eq!(action, Action::requeue(Duration::from_secs(60)));
    timeout_after_1s(server).await;
    assert!(fake.read(|s| s.updates.is_empty()));
}

/// Runs one reconcile of `budget` while `script` plays the API server; returns the
/// reconcile's result and what the script returned.
async fn run<T: Send + 'static, F>(
    ctx: &Arc<Context>,
    api: ApiServerVerifier,
    budget: &CheckpointBudget,
    script: impl FnOnce(ApiServerVerifier, CheckpointBudget) -> F,
) -> (Result<Action, Error>, T)
where
    F: Future<Output = T> + Send + 'static,
{
    let server = tokio::spawn(script(api, budget.clone()));
    let result = reconcile(Arc::new(budget.clone()), ctx.clone()).await;
    let out = tokio::time::timeout(Duration::from_secs(1), server)
        .await
        .expect("timeout on mock apiserver")
        .expect("scenario succeeded");
    (result, out)
}

#[tokio::test]
async fn an_unchanged_healthy_status_keeps_its_transition_times() {
    let (ctx, api, _fake) = Context::test();
    let budget = CheckpointBudget::test();
    let (_, (api, first)) = run(&ctx, api, &budget, |mut api, b| async move {
        let status = api.status_patch(&b).await;
        (api, status)
    })
    .await;
    let budget = budget.with_status(first.clone());
    let (result, second) = run(&ctx, api, &budget, |mut api, b| async move {
        let status = api.status_patch(&b).await;
        api.expect_silence().await;
        status
    })
    .await;
    result.unwrap();
    for type_ in [READY, SLO_MET, SCALING] {
        assert_eq!(
            first.condition(type_).unwrap().last_transition_time,
            second.condition(type_).unwrap().last_transition_time,
            "{type_}"
        );
    }
}

#[tokio::test]
async fn an_overloaded_budget_scales_up_with_the_intent_recorded_first() {
    let (ctx, api, fake) = Context::test();
    fake.with(|s| s.samples = fixtures::overloaded());
    let budget = CheckpointBudget::test();
    let probe = fake.clone();
    let (result, (intent, after)) = run(&ctx, api, &budget, |mut api, b| async move {
        let intent = api.status_patch(&b).await;
        // The intent reached status before AWS heard of the update.
        assert!(
            probe.read(|s| s.updates.is_empty()),
            "UpdateApplication before the intent"
        );
        let after = api.status_patch(&b).await;
        api.event("ScaleUpRequired", "Normal").await;
        api.expect_silence().await;
        (intent, after)
    })
    .await;
    assert_eq!(
        result.unwrap(),
        Action::requeue(Duration::from_secs(30)),
        "follow the operation soon"
    );

    let op = intent.operation_in_flight.as_ref().expect("intent recorded");
    assert_eq!(op.operation_id, None);
    assert_eq!(op.version_id_before, 7);
    assert_eq!(op.from, ConfigStatus::from(AppConfig::new(4, 1)));
    assert_eq!(cond(&intent, SCALING), ("True", "ScaleUpRequired"));

    let updates = fake.read(|s| s.updates.clone());
    assert_eq!(updates.len(), 1);
    let update = &updates[0];
    assert_eq!(update.name, APP);
    assert_eq!(
        update.current_version_id, 7,
        "CurrentApplicationVersionId from the observation"
    );
    assert!(!update.service_autoscaling, "serviceAutoScaling: Disable");
    assert!(update.to.kpus() > 4 && update.to.kpus() <= 16, "{}", update.to);
    assert!(update.to.parallelism <= 32, "parallelism.max");
    assert_eq!(ConfigStatus::from(update.to), op.to);

    let op = after.operation_in_flight.as_ref().expect("still in flight");
    assert_eq!(op.operation_id.as_deref(), Some("op-1"));
    let last = after.last_scaling.as_ref().unwrap();
    assert_eq!(
        (last.outcome, last.operation_id.as_deref()),
        (Outcome::InProgress, Some("op-1"))
    );
    let history = after.history.as_ref().unwrap();
    assert_eq!(history.scalings.len(), 1);
    assert_eq!(history.scalings[0].outcome, Outcome::InProgress);
    assert_eq!(cond(&after, SLO_MET), ("False", "OverBudget"));
}

/// The status a controller leaves after calling UpdateApplication (4 -> 8 at 1 per KPU
/// five minutes ago, version 7 before), with or without the operation id.
fn in_flight(operation_id: Option<&str>) -> CheckpointBudgetStatus {
    let at = fixtures::now() - jiff::SignedDuration::from_mins(5);
    let record = ScalingRecord {
        at,
        completed_at: None,
        from: AppConfig::new(4, 1),
        to: AppConfig::new(8, 1),
        cause: Cause::UnderProvisioned,
        checkpoint_duration_before_ms: Some(180_000.0),
        outcome: Outcome::InProgress,
        records_in_before_per_second: Some(5000.0),
    };
    let history = History {
        baseline: None,
        cpu_span: None,
        restarts: Vec::new(),
        slo_minutes: Vec::new(),
        slo_accounted_until: None,
        scalings: vec![record],
        recommendations: vec![],
    };
    CheckpointBudgetStatus {
        observed_generation: Some(3),
        operation_in_flight: Some(OperationInFlight {
            operation_id: operation_id.map(str::to_owned),
            from: AppConfig::new(4, 1).into(),
            to: AppConfig::new(8, 1).into(),
            started_at: k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(at),
            version_id_before: 7,
            application_arn: None,
            cause: Cause::UnderProvisioned,
            reason: "ScaleUpRequired".into(),
            checkpoint_duration_before_ms: Some(180_000.0),
            records_in_before_per_second: Some(5000.0),
        }),
        history: Some(ScalingHistory::from_history(&history)),
        ..CheckpointBudgetStatus::default()
    }
}

/// The application as AWS shows it while the update runs.
fn updating(fake: &fixtures::FakeAws) {
    fake.with(|s| {
        let app = s.app.as_mut().unwrap();
        app.status = AppStatus::Updating;
        app.version_id = 8;
        s.samples = fixtures::overloaded();
    });
}

#[tokio::test]
async fn after_a_restart_an_operation_in_flight_is_followed_not_reissued() {
    let (ctx, api, fake) = Context::test();
    updating(&fake);
    fake.operation("op-1", OperationState::InProgress, None);
    let budget = CheckpointBudget::test().with_status(in_flight(Some("op-1")));
    let (result, status) = run(&ctx, api, &budget, |mut api, b| async move {
        let status = api.status_patch(&b).await;
        api.expect_silence().await;
        status
    })
    .await;
    assert_eq!(result.unwrap(), Action::requeue(Duration::from_secs(30)));
    assert_eq!(cond(&status, SCALING), ("True", "ScaleUpRequired"));
    assert_eq!(
        status
            .operation_in_flight
            .as_ref()
            .unwrap()
            .operation_id
            .as_deref(),
        Some("op-1")
    );
    let calls = fake.read(|s| s.calls.clone());
    assert!(calls.contains(&format!("DescribeApplicationOperation:{APP}:op-1")));
    assert!(fake.read(|s| s.updates.is_empty()), "{calls:?}");
}

#[tokio::test]
async fn an_intent_without_operation_id_is_judged_by_the_application_version() {
    // The controller stopped between recording the intent and learning the operation id,
    // and the update did reach AWS: the version moved and the application is UPDATING.
    let (ctx, api, fake) = Context::test();
    updating(&fake);
    let budget = CheckpointBudget::test().with_status(in_flight(None));
    let (result, status) = run(&ctx, api, &budget, |mut api, b| async move {
        let status = api.status_patch(&b).await;
        api.expect_silence().await;
        status
    })
    .await;
    result.unwrap();
    assert!(status.operation_in_flight.is_some());
    assert_eq!(cond(&status, SCALING).0, "True");
    assert!(fake.read(|s| s.updates.is_empty()));

    // Once RUNNING with the asked-for configuration, it is recorded as succeeded.
    let (ctx, api, fake) = Context::test();
    fake.with(|s| {
        let app = s.app.as_mut().unwrap();
        app.version_id = 8;
        app.config = AppConfig::new(8, 1);
    });
    let budget = CheckpointBudget::test().with_status(in_flight(None));
    let (result, status) = run(&ctx, api, &budget, |mut api, b| async move {
        let status = api.status_patch(&b).await;
        api.event("ScalingSucceeded", "Normal").await;
        api.expect_silence().await;
        status
    })
    .await;
    result.unwrap();
    assert!(status.operation_in_flight.is_none());
    assert_eq!(status.last_scaling.as_ref().unwrap().outcome, Outcome::Succeeded);
    assert!(fake.read(|s| s.updates.is_empty()));
}

#[tokio::test]
async fn an_intent_that_never_reached_aws_is_dropped() {
    // Same version, RUNNING: the UpdateApplication never happened.
    let (ctx, api, fake) = Context::test();
    fake.with(|s| s.samples = fixtures::healthy());
    let budget = CheckpointBudget::test().with_status(in_flight(None));
    let (result, status) = run(&ctx, api, &budget, |mut api, b| async move {
        let status = api.status_patch(&b).await;
        api.expect_silence().await;
        status
    })
    .await;
    result.unwrap();
    assert!(status.operation_in_flight.is_none());
    assert!(
        status.history.as_ref().unwrap().scalings.is_empty(),
        "a scaling that never happened leaves no record"
    );
    assert!(fake.read(|s| s.updates.is_empty()));
}

#[tokio::test]
async fn a_failed_operation_is_recorded_and_not_retried() {
    let (ctx, api, fake) = Context::test();
    fake.with(|s| s.app.as_mut().unwrap().version_id = 9); // rolled back: new version, old config
    fake.operation(
        "op-1",
        OperationState::Failed,
        Some("Could not restore from snapshot: parallelism exceeds the maximum"),
    );
    let budget = CheckpointBudget::test().with_status(in_flight(Some("op-1")));
    let (result, status) = run(&ctx, api, &budget, |mut api, b| async move {
        let status = api.status_patch(&b).await;
        let event = api.event("ScalingFailed", "Warning").await;
        assert!(
            event["note"].as_str().unwrap().contains("Could not restore"),
            "{event}"
        );
        api.expect_silence().await;
        status
    })
    .await;
    result.unwrap();
    assert!(status.operation_in_flight.is_none());
    let last = status.last_scaling.as_ref().unwrap();
    assert_eq!(last.outcome, Outcome::Failed);
    assert!(last.message.as_deref().unwrap().contains("Could not restore"));
    let history = status.history.as_ref().unwrap().to_history();
    assert_eq!(history.scalings.last().unwrap().outcome, Outcome::Failed);

    // Still overloaded on the next evaluation: whatever the policy does, it does not ask
    // for the failed configuration again.
    let (ctx, api, fake) = Context::test();
    fake.with(|s| {
        s.app.as_mut().unwrap().version_id = 9;
        s.samples = fixtures::overloaded();
    });
    // Half an hour later, past the warm-up and the cooldown.
    let mut later = history.clone();
    for s in &mut later.scalings {
        s.at -= jiff::SignedDuration::from_mins(30);
        s.completed_at = s.completed_at.map(|t| t - jiff::SignedDuration::from_mins(30));
    }
    let mut status = status;
    status.set_history(&later);
    let budget = CheckpointBudget::test().with_status(status);
    let (result, requests) = run(
        &ctx,
        api,
        &budget,
        |api, b| async move { api.answer_all(&b).await },
    )
    .await;
    result.unwrap();
    assert!(!requests.is_empty());
    assert!(
        fake.read(|s| s.updates.iter().all(|u| u.to != AppConfig::new(8, 1))),
        "{:?}",
        fake.read(|s| s.updates.clone())
    );
}

#[tokio::test]
async fn an_idle_budget_scales_down_only_after_stabilization() {
    // Fresh evidence only: the lower recommendation has to wait out the window.
    let (ctx, api, fake) = Context::test();
    fake.with(|s| {
        s.samples = fixtures::idle();
        s.app.as_mut().unwrap().config = AppConfig::new(16, 1);
    });
    let budget = CheckpointBudget::test();
    let (result, status) = run(&ctx, api, &budget, |mut api, b| async move {
        let status = api.status_patch(&b).await;
        api.expect_silence().await;
        status
    })
    .await;
    result.unwrap();
    assert!(fake.read(|s| s.updates.is_empty()));
    assert_eq!(cond(&status, SCALING), ("False", "ScaleDownPending"));
    let lower = status.recommendation.as_ref().unwrap().config();
    assert!(lower.kpus() < 16, "{lower}");

    // The same lower recommendation held for the restart's payback (without a forecast, at
    // most six hours), and the last scaling was long ago: now it scales down.
    let (ctx, api, fake) = Context::test();
    fake.with(|s| {
        s.samples = fixtures::idle();
        s.app.as_mut().unwrap().config = AppConfig::new(16, 1);
    });
    let held_since = fixtures::now() - jiff::SignedDuration::from_mins(365);
    let history = History {
        baseline: None,
        cpu_span: None,
        restarts: Vec::new(),
        slo_minutes: Vec::new(),
        slo_accounted_until: None,
        scalings: vec![ScalingRecord {
            at: held_since - jiff::SignedDuration::from_hours(2),
            completed_at: Some(held_since - jiff::SignedDuration::from_mins(105)),
            from: AppConfig::new(8, 1),
            to: AppConfig::new(16, 1),
            cause: Cause::UnderProvisioned,
            checkpoint_duration_before_ms: Some(150_000.0),
            outcome: Outcome::Succeeded,
            records_in_before_per_second: Some(9000.0),
        }],
        recommendations: vec![RecommendationRecord {
            at: held_since,
            config: lower,
        }],
    };
    let mut prior = status.clone();
    prior.set_history(&history);
    let budget = CheckpointBudget::test().with_status(prior);
    let (result, _) = run(&ctx, api, &budget, |mut api, b| async move {
        let intent = api.status_patch(&b).await;
        assert!(intent.operation_in_flight.is_some());
        let after = api.status_patch(&b).await;
        api.event("ScaleDownStabilized", "Normal").await;
        api.expect_silence().await;
        after
    })
    .await;
    result.unwrap();
    let updates = fake.read(|s| s.updates.clone());
    assert_eq!(updates.len(), 1);
    assert!(
        updates[0].to.kpus() < 16 && updates[0].to.kpus() >= 8,
        "{}",
        updates[0].to
    );
}

#[tokio::test]
async fn recommend_mode_reports_and_never_writes_to_aws() {
    let (ctx, api, fake) = Context::test();
    fake.with(|s| s.samples = fixtures::overloaded());
    let budget = CheckpointBudget::test().mode(Mode::Recommend);
    let (result, status) = run(&ctx, api, &budget, |mut api, b| async move {
        let status = api.status_patch(&b).await;
        let event = api.event("ScalingRecommended", "Normal").await;
        assert!(
            event["note"].as_str().unwrap().contains("Recommend mode"),
            "{event}"
        );
        api.expect_silence().await;
        status
    })
    .await;
    result.unwrap();
    assert!(fake.read(|s| s.updates.is_empty()));
    assert_eq!(cond(&status, SCALING), ("False", "ScaleUpRequired"));
    assert!(status.operation_in_flight.is_none());
    let rec = status.recommendation.as_ref().unwrap();
    assert!(rec.kpus > 4);
    assert_eq!(rec.action, "Scale");

    // The same recommendation again: no second Event.
    let (ctx, api, fake) = Context::test();
    fake.with(|s| s.samples = fixtures::overloaded());
    let budget = budget.with_status(status);
    let (result, _) = run(&ctx, api, &budget, |mut api, b| async move {
        api.status_patch(&b).await;
        api.expect_silence().await;
    })
    .await;
    result.unwrap();
}

#[tokio::test]
async fn paused_observes_only() {
    let (ctx, api, fake) = Context::test();
    fake.with(|s| s.samples = fixtures::overloaded());
    let budget = CheckpointBudget::test().mode(Mode::Paused);
    let (result, status) = run(&ctx, api, &budget, |mut api, b| async move {
        let status = api.status_patch(&b).await;
        api.expect_silence().await;
        status
    })
    .await;
    result.unwrap();
    assert!(fake.read(|s| s.updates.is_empty()));
    assert_eq!(cond(&status, SCALING), ("False", "Paused"));
    assert_eq!(cond(&status, SLO_MET), ("False", "OverBudget"));
    assert!(status.recommendation.is_none());
    assert!(status.application.is_some() && status.checkpoints.is_some());
}

#[tokio::test]
async fn a_missing_application_is_a_condition_an_event_and_a_slow_retry() {
    let (ctx, api, fake) = Context::test();
    fake.with(|s| s.app = None);
    let budget = CheckpointBudget::test();
    let (result, status) = run(&ctx, api, &budget, |mut api, b| async move {
        let status = api.status_patch(&b).await;
        let event = api.event("ApplicationNotFound", "Warning").await;
        assert!(event["note"].as_str().unwrap().contains(APP), "{event}");
        api.expect_silence().await;
        status
    })
    .await;
    let err = result.unwrap_err();
    assert!(matches!(err, Error::Aws(AwsError::NotFound(_))), "{err}");
    assert_eq!(cond(&status, READY), ("False", "ApplicationNotFound"));
    assert_eq!(cond(&status, SCALING).0, "False");

    let delay = ctx
        .on_error(&budget, &err)
        .expect("a missing application is retried");
    assert!(
        failures(&ctx, "aws_application_not_found"),
        "{}",
        ctx.metrics.encode().unwrap()
    );
    assert!(
        delay >= Duration::from_secs(60) && delay <= Duration::from_secs(72),
        "{delay:?}"
    );

    // Still missing on the next try: the condition stays, no second Event.
    let (ctx, api, fake) = Context::test();
    fake.with(|s| s.app = None);
    let budget = budget.with_status(status);
    let (result, _) = run(&ctx, api, &budget, |mut api, b| async move {
        api.status_patch(&b).await;
        api.expect_silence().await;
    })
    .await;
    assert!(result.is_err());
}

#[tokio::test]
async fn a_conflicting_spec_is_reported_and_waits_for_a_change() {
    let (ctx, api, fake) = Context::test();
    let budget = CheckpointBudget::test().conflicting();
    let (result, status) = run(&ctx, api, &budget, |mut api, b| async move {
        let status = api.status_patch(&b).await;
        let event = api.event("InvalidSpec", "Warning").await;
        assert!(
            event["note"].as_str().unwrap().contains("spec.parallelism.max"),
            "{event}"
        );
        api.expect_silence().await;
        status
    })
    .await;
    let err = result.unwrap_err();
    assert!(matches!(err, Error::InvalidSpec(_)));
    assert_eq!(cond(&status, READY), ("False", "InvalidSpec"));
    assert!(
        fake.read(|s| s.calls.is_empty()),
        "no AWS call for an invalid spec"
    );
    let action = error_policy(Arc::new(budget), &err, ctx.clone());
    assert_eq!(action, Action::await_change());
    assert!(failures(&ctx, "invalid_spec"));
}

#[tokio::test]
async fn an_untagged_application_is_forbidden() {
    let (ctx, api, fake) = Context::test();
    fake.with(|s| {
        s.tags = vec![(crate::tenancy::NAMESPACE_TAG.into(), "payments".into())];
        s.samples = fixtures::overloaded();
    });
    let budget = CheckpointBudget::test();
    let (result, (status, event)) = run(&ctx, api, &budget, |mut api, b| async move {
        let status = api.status_patch(&b).await;
        let event = api.event("Forbidden", "Warning").await;
        api.expect_silence().await;
        (status, event)
    })
    .await;
    let err = result.unwrap_err();
    assert!(matches!(err, Error::Forbidden(_)));
    assert_eq!(cond(&status, READY), ("False", "Forbidden"));
    // The budget learns what would allow it, and not which namespace the application is
    // tagged for: not in status, not in the Event, not in the error the controller logs.
    let message = &status.condition(READY).unwrap().message;
    assert!(
        message.contains("checkpoint-autoscaler.dev/namespace=streaming"),
        "{message}"
    );
    for shown in [
        message.as_str(),
        event["note"].as_str().unwrap(),
        &err.to_string(),
    ] {
        assert!(!shown.contains("payments"), "{shown}");
    }
    assert!(fake.read(|s| s.updates.is_empty()));
}

#[tokio::test]
async fn throttling_backs_off_soon_with_growing_delays() {
    let (ctx, api, fake) = Context::test();
    fake.with(|s| s.metrics_error = Some(AwsError::Throttled("GetMetricData: Rate exceeded".into())));
    let budget = CheckpointBudget::test();
    let (result, status) = run(&ctx, api, &budget, |mut api, b| async move {
        let status = api.status_patch(&b).await;
        api.event("Throttled", "Warning").await;
        status
    })
    .await;
    let err = result.unwrap_err();
    assert_eq!(cond(&status, READY), ("False", "Throttled"));
    let first = ctx.on_error(&budget, &err).unwrap();
    let second = ctx.on_error(&budget, &err).unwrap();
    let third = ctx.on_error(&budget, &err).unwrap();
    assert!(
        first >= Duration::from_secs(5) && first <= Duration::from_secs(6),
        "{first:?}"
    );
    assert!(
        second >= Duration::from_secs(10) && second <= Duration::from_secs(12),
        "{second:?}"
    );
    assert!(
        third >= Duration::from_secs(20) && third <= Duration::from_secs(24),
        "{third:?}"
    );
    assert!(ctx.metrics.encode().unwrap().contains(
        r#"checkpoint_autoscaler_reconcile_failures_total{budget="streaming/orders",error="aws_throttled"} 3"#
    ));
}

#[tokio::test]
async fn an_operation_the_service_forgot_is_judged_by_the_application() {
    // The operation id is recorded, but DescribeApplicationOperation no longer knows it;
    // the application runs the asked-for configuration on a newer version: succeeded.
    let (ctx, api, fake) = Context::test();
    fake.with(|s| {
        let app = s.app.as_mut().unwrap();
        app.version_id = 8;
        app.config = AppConfig::new(8, 1);
    });
    let budget = CheckpointBudget::test().with_status(in_flight(Some("op-gone")));
    let (result, status) = run(&ctx, api, &budget, |mut api, b| async move {
        let status = api.status_patch(&b).await;
        api.event("ScalingSucceeded", "Normal").await;
        api.expect_silence().await;
        status
    })
    .await;
    result.unwrap();
    assert!(status.operation_in_flight.is_none());
    assert_eq!(status.last_scaling.as_ref().unwrap().outcome, Outcome::Succeeded);
    assert!(fake.read(|s| s.updates.is_empty()));
}

#[tokio::test]
async fn a_throttled_follow_keeps_the_operation_in_flight() {
    let (ctx, api, fake) = Context::test();
    updating(&fake);
    fake.with(|s| s.operation_error = Some(AwsError::Throttled("Rate exceeded".into())));
    let budget = CheckpointBudget::test().with_status(in_flight(Some("op-1")));
    let (result, status) = run(&ctx, api, &budget, |mut api, b| async move {
        let status = api.status_patch(&b).await;
        api.event("Throttled", "Warning").await;
        api.expect_silence().await;
        status
    })
    .await;
    assert!(matches!(result.unwrap_err(), Error::Aws(AwsError::Throttled(_))));
    assert_eq!(cond(&status, READY), ("False", "Throttled"));
    let op = status
        .operation_in_flight
        .as_ref()
        .expect("still recorded, to be followed");
    assert_eq!(op.operation_id.as_deref(), Some("op-1"));
    assert!(status.condition(SCALING).is_none_or(|c| c.reason != "Throttled"));
    assert!(fake.read(|s| s.updates.is_empty()));
}

/// `ctx` with its core changed by `f` (another tenancy policy, other claims).
fn with_core(ctx: Arc<Context>, f: impl FnOnce(&mut super::reconcile::Reconciler)) -> Arc<Context> {
    let mut ctx = Context::clone(&ctx);
    f(&mut ctx.core);
    Arc::new(ctx)
}

const ROLE: &str = "arn:aws:iam::111122223333:role/flink-scaler";

fn with_role(mut budget: CheckpointBudget, role: &str) -> CheckpointBudget {
    budget.spec.application.role_arn = Some(role.into());
    budget
}

#[tokio::test]
async fn a_role_the_tag_policy_was_not_told_about_is_forbidden_before_any_aws_call() {
    let (ctx, api, fake) = Context::test();
    fake.with(|s| s.samples = fixtures::overloaded());
    let budget = with_role(CheckpointBudget::test(), ROLE);
    let (result, (status, event)) = run(&ctx, api, &budget, |mut api, b| async move {
        let status = api.status_patch(&b).await;
        let event = api.event("Forbidden", "Warning").await;
        api.expect_silence().await;
        (status, event)
    })
    .await;
    assert!(matches!(result.unwrap_err(), Error::Forbidden(_)));
    assert_eq!(cond(&status, READY), ("False", "Forbidden"));
    assert_eq!(cond(&status, SCALING), ("False", "Forbidden"));
    let message = &status.condition(READY).unwrap().message;
    assert!(message.contains(ROLE), "{message}");
    assert!(
        message.contains("--tenancy-config") && message.contains("namespaces.streaming.roleArns"),
        "the message says how to allow the role: {message}"
    );
    assert_eq!(event["note"].as_str().unwrap(), message);
    // Not even a describe: the role's credentials are never used (so never assumed).
    assert_eq!(fake.read(|s| s.calls.clone()), Vec::<String>::new());
    assert!(status.application.is_none());
}

#[tokio::test]
async fn a_role_allowed_for_the_namespace_is_used_under_either_policy() {
    use crate::tenancy::{AllowList, TagTenancy};
    let arn = format!("arn:aws:kinesisanalytics:eu-west-1:111122223333:application/{APP}");
    let list: AllowList = serde_yaml::from_str(&format!(
        "namespaces:\n  streaming:\n    applications: [\"{arn}\"]\n    roleArns: [\"{ROLE}\"]\n  payments:\n    applications: [\"{arn}\"]\n"
    ))
    .unwrap();
    let budget = with_role(CheckpointBudget::test(), ROLE);
    for tenancy in [
        Arc::new(TagTenancy::with_roles(list.clone())) as Arc<dyn crate::tenancy::TenancyCheck>,
        Arc::new(list.clone()),
    ] {
        let (ctx, api, fake) = Context::test();
        let ctx = with_core(ctx, |core| core.tenancy = tenancy.clone());
        let (result, status) = run(&ctx, api, &budget, |mut api, b| async move {
            let status = api.status_patch(&b).await;
            api.expect_silence().await;
            status
        })
        .await;
        result.unwrap();
        assert_eq!(cond(&status, READY), ("True", "ApplicationObserved"));
        assert!(fake.read(|s| s.calls.iter().any(|c| c.starts_with("GetMetricData"))));
    }

    // The same role from a namespace that may not use it: forbidden under both.
    let mut elsewhere = budget.clone();
    elsewhere.metadata.namespace = Some("payments".into());
    for tenancy in [
        Arc::new(TagTenancy::with_roles(list.clone())) as Arc<dyn crate::tenancy::TenancyCheck>,
        Arc::new(list.clone()),
    ] {
        let (ctx, _api, fake) = Context::test();
        let ctx = with_core(ctx, |core| core.tenancy = tenancy.clone());
        let view = super::reconcile::BudgetView {
            key: super::store::BudgetKey::new("payments", fixtures::NAME),
            generation: Some(3),
            spec: &elsewhere.spec,
            status: None,
            resource_version: None,
        };
        let store = super::store::MemoryStore::default();
        let err = ctx
            .core
            .reconcile(&view, &store, fixtures::now())
            .await
            .unwrap_err();
        assert!(matches!(err, Error::Forbidden(_)), "{err}");
        assert!(err.to_string().contains("namespaces.payments.roleArns"), "{err}");
        assert!(fake.read(|s| s.calls.is_empty()));
    }
}

/// A budget naming the test application, created at `created`.
fn claimant(namespace: &str, name: &str, created: &str) -> CheckpointBudget {
    let mut budget = CheckpointBudget::test();
    budget.metadata.namespace = Some(namespace.into());
    budget.metadata.name = Some(name.into());
    budget.metadata.creation_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
        created.parse().unwrap(),
    ));
    budget
}

fn claims(budgets: Vec<CheckpointBudget>) -> Arc<super::ownership::StaticClaims> {
    Arc::new(super::ownership::StaticClaims(budgets))
}

#[tokio::test]
async fn the_younger_of_two_budgets_on_one_application_reports_conflict_and_never_acts() {
    let owner = claimant(fixtures::NAMESPACE, "orders-first", "2026-01-01T00:00:00Z");
    let budget = claimant(fixtures::NAMESPACE, fixtures::NAME, "2026-03-01T00:00:00Z");
    let (ctx, api, fake) = Context::test();
    fake.with(|s| s.samples = fixtures::overloaded());
    let ctx = with_core(ctx, |core| {
        core.claims = claims(vec![budget.clone(), owner.clone()]);
    });
    let (result, (status, event)) = run(&ctx, api, &budget, |mut api, b| async move {
        let status = api.status_patch(&b).await;
        let event = api.event("Conflict", "Warning").await;
        api.expect_silence().await;
        (status, event)
    })
    .await;
    let err = result.unwrap_err();
    assert!(matches!(err, Error::Conflict(_)), "{err}");
    assert_eq!(cond(&status, READY), ("False", "Conflict"));
    assert_eq!(cond(&status, SCALING), ("False", "Conflict"));
    let message = &status.condition(READY).unwrap().message;
    assert!(message.contains("streaming/orders-first"), "{message}");
    assert!(message.contains(APP), "{message}");
    assert!(event["note"].as_str().unwrap().contains("streaming/orders-first"));
    // It described the application (to check its tags) and stopped: no metrics, no write.
    let calls = fake.read(|s| s.calls.clone());
    assert!(
        calls
            .iter()
            .all(|c| c.starts_with("DescribeApplication:") || c.starts_with("ListTagsForResource:")),
        "{calls:?}"
    );
    assert!(fake.read(|s| s.updates.is_empty()));
    // It looks again at the regular interval, without backoff, to take over promptly.
    let within_interval =
        |d: Option<Duration>| d.is_some_and(|d| d >= Duration::from_secs(60) && d <= Duration::from_secs(72));
    assert!(within_interval(ctx.on_error(&budget, &err)));
    assert!(failures(&ctx, "conflict"), "{}", ctx.metrics.encode().unwrap());
    for _ in 0..3 {
        assert!(within_interval(ctx.on_error(&budget, &err)), "no backoff growth");
    }
    assert_eq!(
        err.retry_after(5, Duration::from_secs(60)),
        Some(Duration::from_secs(60))
    );

    // Still in conflict on the next look: no second Event.
    let (ctx, api, fake) = Context::test();
    let ctx = with_core(ctx, |core| {
        core.claims = claims(vec![budget.clone(), owner.clone()]);
    });
    let again = budget.clone().with_status(status.clone());
    let (result, _) = run(&ctx, api, &again, |mut api, b| async move {
        api.status_patch(&b).await;
        api.expect_silence().await;
    })
    .await;
    assert!(matches!(result.unwrap_err(), Error::Conflict(_)));
    assert!(fake.read(|s| s.updates.is_empty()));

    // The owner itself is not held back (the fixtures' status URI names the test budget,
    // so here it is the older one).
    let (ctx, api, fake) = Context::test();
    fake.with(|s| s.samples = fixtures::overloaded());
    let owner = claimant(fixtures::NAMESPACE, fixtures::NAME, "2026-01-01T00:00:00Z");
    let younger = claimant(fixtures::NAMESPACE, "orders-second", "2026-03-01T00:00:00Z");
    let ctx = with_core(ctx, |core| core.claims = claims(vec![younger, owner.clone()]));
    let (result, _) = run(
        &ctx,
        api,
        &owner,
        |api, b| async move { api.answer_all(&b).await },
    )
    .await;
    result.unwrap();
    assert_eq!(fake.read(|s| s.updates.len()), 1);
}

/// An owner in another namespace (both allowed to manage the application) is not named:
/// the younger budget learns that another budget manages the application, not which, in
/// which namespace, or since when.
#[tokio::test]
async fn a_conflict_with_another_namespace_does_not_name_its_budget() {
    use crate::tenancy::AllowList;
    let arn = format!(
        "arn:aws:kinesisanalytics:eu-west-1:{}:application/{APP}",
        fixtures::ACCOUNT
    );
    let list: AllowList = serde_yaml::from_str(&format!(
        "namespaces:\n  streaming:\n    applications: [\"{arn}\"]\n  payments-secret:\n    applications: [\"{arn}\"]\n"
    ))
    .unwrap();
    let owner = claimant("payments-secret", "fraud-scoring", "2026-01-01T00:00:00Z");
    let budget = claimant(fixtures::NAMESPACE, fixtures::NAME, "2026-03-01T00:00:00Z");
    let (ctx, api, fake) = Context::test();
    let ctx = with_core(ctx, |core| {
        core.tenancy = Arc::new(list.clone());
        core.claims = claims(vec![budget.clone(), owner.clone()]);
    });
    let (result, (status, event)) = run(&ctx, api, &budget, |mut api, b| async move {
        let status = api.status_patch(&b).await;
        let event = api.event("Conflict", "Warning").await;
        api.expect_silence().await;
        (status, event)
    })
    .await;
    let err = result.unwrap_err();
    assert!(matches!(err, Error::Conflict(_)), "{err}");
    let message = &status.condition(READY).unwrap().message;
    assert!(message.contains("managed by another budget"), "{message}");
    assert!(message.contains(APP), "{message}");
    for shown in [
        message.as_str(),
        event["note"].as_str().unwrap(),
        &err.to_string(),
    ] {
        for secret in ["payments-secret", "fraud-scoring", "2026-01-01"] {
            assert!(!shown.contains(secret), "{secret} in: {shown}");
        }
    }
    assert!(fake.read(|s| s.updates.is_empty()));
}

#[tokio::test]
async fn the_younger_budget_takes_over_when_the_owner_is_deleted_or_renames_its_application() {
    let owner = claimant(fixtures::NAMESPACE, "orders-first", "2026-01-01T00:00:00Z");
    let budget = claimant(fixtures::NAMESPACE, fixtures::NAME, "2026-03-01T00:00:00Z");
    let mut conflicted = CheckpointBudgetStatus::default();
    set_condition(
        &mut conflicted.conditions,
        READY,
        ConditionStatus::False,
        "Conflict",
        "managed by streaming/orders-first",
        Some(3),
        fixtures::now(),
    );
    let mut deleted = owner.clone();
    deleted.metadata.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
        fixtures::now(),
    ));
    let mut renamed = owner.clone();
    renamed.spec.application.name = "orders-enrichment-v2".into();
    for others in [vec![], vec![deleted], vec![renamed]] {
        let (ctx, api, fake) = Context::test();
        fake.with(|s| s.samples = fixtures::overloaded());
        let mut all = others.clone();
        all.push(budget.clone());
        let ctx = with_core(ctx, |core| core.claims = claims(all));
        let prior = budget.clone().with_status(conflicted.clone());
        let (result, requests) = run(
            &ctx,
            api,
            &prior,
            |api, b| async move { api.answer_all(&b).await },
        )
        .await;
        result.unwrap();
        let last: CheckpointBudgetStatus = requests
            .iter()
            .rev()
            .find(|(_, uri, _)| uri.contains("/status"))
            .map(|(_, _, body)| serde_json::from_value(body["status"].clone()).unwrap())
            .unwrap();
        assert_eq!(cond(&last, READY), ("True", "ApplicationObserved"));
        assert_eq!(fake.read(|s| s.updates.len()), 1, "{others:?}");
    }
}

#[tokio::test]
async fn budgets_on_other_targets_or_forbidden_ones_do_not_conflict() {
    let budget = claimant(fixtures::NAMESPACE, fixtures::NAME, "2026-03-01T00:00:00Z");
    // Older, same name, but another region; another account; or a namespace the
    // application's tag does not name (the tag policy would forbid it).
    let mut other_region = claimant(fixtures::NAMESPACE, "a", "2026-01-01T00:00:00Z");
    other_region.spec.application.region = Some("us-east-1".into());
    let other_account = with_role(claimant(fixtures::NAMESPACE, "b", "2026-01-01T00:00:00Z"), ROLE);
    let squatter = claimant("payments", "c", "2026-01-01T00:00:00Z");
    let (ctx, api, fake) = Context::test();
    let ctx = with_core(ctx, |core| {
        core.claims = claims(vec![other_region, other_account, squatter, budget.clone()]);
    });
    let (result, status) = run(&ctx, api, &budget, |mut api, b| async move {
        let status = api.status_patch(&b).await;
        api.expect_silence().await;
        status
    })
    .await;
    result.unwrap();
    assert_eq!(cond(&status, READY), ("True", "ApplicationObserved"));
    assert!(fake.read(|s| s.calls.iter().any(|c| c.starts_with("GetMetricData"))));

    // The same region spelt out or left to the default is the same application.
    let mut same_by_default = claimant(fixtures::NAMESPACE, "d", "2026-01-01T00:00:00Z");
    same_by_default.spec.application.region = None;
    let (ctx, api, _fake) = Context::test();
    let ctx = with_core(ctx, |core| {
        core.claims = claims(vec![same_by_default, budget.clone()]);
    });
    let (result, _) = run(
        &ctx,
        api,
        &budget,
        |api, b| async move { api.answer_all(&b).await },
    )
    .await;
    assert!(matches!(result.unwrap_err(), Error::Conflict(_)));
}

/// A fence whose answers to [`Guarded::Update`] are scripted, in order (then refuses), and
/// which allows or refuses every write.
struct ScriptedFence {
    updates: std::sync::Mutex<std::collections::VecDeque<bool>>,
    writes: bool,
}

impl super::fence::Fence for ScriptedFence {
    fn check(&self, action: super::fence::Guarded) -> Result<(), super::fence::Fenced> {
        let allowed = match action {
            super::fence::Guarded::Update => self.updates.lock().unwrap().pop_front().unwrap_or(false),
            super::fence::Guarded::Write => self.writes,
        };
        if allowed {
            Ok(())
        } else {
            Err(super::fence::Fenced(format!(
                "scripted: no {}",
                action.describe()
            )))
        }
    }
}

fn fenced(ctx: Arc<Context>, updates: &[bool], writes: bool) -> Arc<Context> {
    with_core(ctx, |core| {
        core.fence = Arc::new(ScriptedFence {
            updates: std::sync::Mutex::new(updates.iter().copied().collect()),
            writes,
        })
    })
}

fn scalings(ctx: &Context, outcome: &str) -> bool {
    ctx.metrics.encode().unwrap().contains(&format!(
        r#"checkpoint_autoscaler_scalings_total{{outcome="{outcome}"}} 1"#
    ))
}

/// A replica that no longer holds the Lease (or not for as long as the call can take)
/// decides to scale but neither records an intent nor calls AWS, writes no status and
/// publishes no Event: it is counted and retried soon.
#[tokio::test]
async fn without_the_lease_no_intent_is_recorded_and_no_update_is_made() {
    let (ctx, api, fake) = Context::test();
    fake.with(|s| s.samples = fixtures::overloaded());
    let ctx = fenced(ctx, &[false], false);
    let budget = CheckpointBudget::test();
    let (result, ()) = run(&ctx, api, &budget, |api, _| async move {
        api.expect_silence().await;
    })
    .await;
    let err = result.unwrap_err();
    assert!(matches!(err, Error::Fenced(_)), "{err}");
    assert!(err.to_string().contains("no an UpdateApplication call"), "{err}");
    assert!(fake.read(|s| s.updates.is_empty()));
    assert!(scalings(&ctx, "fenced"));
    let retry = ctx.on_error(&budget, &err).unwrap();
    assert!(
        retry >= Duration::from_secs(5) && retry <= Duration::from_secs(6),
        "retried soon: {retry:?}"
    );
    assert!(failures(&ctx, "fenced"));
}

/// The Lease runs short between the intent's write and the call: no call, and the intent
/// of the call never made is cleared (history, operation in flight, Scaling condition as
/// they were) while this replica may still write.
#[tokio::test]
async fn a_lease_lost_after_the_intent_clears_the_intent_and_makes_no_update() {
    let (ctx, api, fake) = Context::test();
    fake.with(|s| s.samples = fixtures::overloaded());
    let ctx = fenced(ctx, &[true, false], true);
    let budget = CheckpointBudget::test();
    let (result, (intent, cleared)) = run(&ctx, api, &budget, |mut api, b| async move {
        let intent = api.status_patch(&b).await;
        let cleared = api.status_patch(&b).await;
        api.expect_silence().await;
        (intent, cleared)
    })
    .await;
    assert!(matches!(result, Err(Error::Fenced(_))), "{result:?}");
    assert!(fake.read(|s| s.updates.is_empty()));
    assert!(intent.operation_in_flight.is_some());
    assert_eq!(intent.history.as_ref().unwrap().scalings.len(), 1);
    assert!(cleared.operation_in_flight.is_none());
    assert!(cleared.history.as_ref().unwrap().scalings.is_empty());
    assert!(cleared.last_scaling.is_none());
    assert!(cleared.condition(SCALING).is_none(), "no scaling was started");
    assert_eq!(cond(&cleared, READY), ("True", "ApplicationObserved"));
}

/// The Lease is lost for writes too: the intent stays as written (the store refuses to
/// clear it), and the next leader, finding the application's version unmoved, drops it and
/// decides afresh: one UpdateApplication in all.
#[tokio::test]
async fn an_intent_left_by_a_fenced_leader_is_dropped_by_the_next() {
    let (ctx, api, fake) = Context::test();
    fake.with(|s| s.samples = fixtures::overloaded());
    let deposed = fenced(ctx.clone(), &[true, false], true);
    // Writes are allowed for the intent, then refused: a fence that changes its mind.
    struct Deposing(std::sync::atomic::AtomicUsize);
    impl super::fence::Fence for Deposing {
        fn check(&self, _: super::fence::Guarded) -> Result<(), super::fence::Fenced> {
            // 1: the update check before the intent, 2: the intent's write; then nothing.
            match self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst) {
                0 | 1 => Ok(()),
                _ => Err(super::fence::Fenced("lost".into())),
            }
        }
    }
    let deposed = with_core(deposed, |core| {
        core.fence = Arc::new(Deposing(Default::default()));
    });
    let budget = CheckpointBudget::test();
    let (result, (api, intent)) = run(&deposed, api, &budget, |mut api, b| async move {
        let intent = api.status_patch(&b).await;
        (api, intent)
    })
    .await;
    assert!(matches!(result, Err(Error::Fenced(_))), "{result:?}");
    assert!(fake.read(|s| s.updates.is_empty()));
    assert!(
        intent
            .operation_in_flight
            .as_ref()
            .unwrap()
            .operation_id
            .is_none()
    );

    // The next leader (the fence allows everything) finds the intent.
    let budget = budget.with_status(intent);
    let (result, ()) = run(&ctx, api, &budget, |mut api, b| async move {
        let intent = api.status_patch(&b).await;
        let op = intent.operation_in_flight.as_ref().expect("its own intent");
        assert_eq!(op.version_id_before, 7);
        api.status_patch(&b).await;
        api.event("ScaleUpRequired", "Normal").await;
        api.expect_silence().await;
    })
    .await;
    result.unwrap();
    assert_eq!(fake.read(|s| s.updates.len()), 1, "one update in all");
}

/// The shutdown grace counts from the stop: a controller that finishes its reconciles
/// within it is drained (and the Lease may be released); one that does not is abandoned.
#[tokio::test(start_paused = true)]
async fn the_drain_waits_the_grace_from_the_stop_and_no_longer() {
    use tokio::time::{Instant, sleep};
    let grace = Duration::from_secs(20);
    // Runs for a minute before the stop, then ends 5 s after it: drained.
    let start = Instant::now();
    let drained = super::drain(
        sleep(Duration::from_secs(65)),
        sleep(Duration::from_secs(60)),
        grace,
    )
    .await;
    assert!(drained);
    assert_eq!(start.elapsed(), Duration::from_secs(65));
    // Never ends: abandoned at the stop plus the grace.
    let start = Instant::now();
    let drained = super::drain(std::future::pending::<()>(), sleep(Duration::from_secs(1)), grace).await;
    assert!(!drained);
    assert_eq!(start.elapsed(), Duration::from_secs(21));
    // Ends on its own before any stop.
    assert!(super::drain(sleep(Duration::from_secs(1)), std::future::pending::<()>(), grace).await);
}

// ---------------------------------------------------------------------------------------------
// Status writes are conditioned on the resourceVersion the decision was made on.

/// The intent is written on the condition that the budget is still at the resourceVersion
/// read; a 409 (someone wrote the budget meanwhile, or the read was stale) means nothing is
/// done: no UpdateApplication, and the error asks for a fresh read soon.
#[tokio::test]
async fn a_conflict_on_the_intent_write_means_no_update() {
    let (ctx, api, fake) = Context::test();
    fake.with(|s| s.samples = fixtures::overloaded());
    let budget = CheckpointBudget::test();
    let (result, precondition) = run(&ctx, api, &budget, |mut api, _| async move {
        let exchange = api.expect(http::Method::PATCH, &fixtures::status_uri()).await;
        let (intent, precondition) = fixtures::applied_status(&exchange.json());
        assert!(intent.operation_in_flight.is_some(), "the intent write");
        exchange.reply_status(409, "Conflict");
        api.expect_silence().await;
        precondition
    })
    .await;
    assert_eq!(precondition.as_deref(), Some(fixtures::RESOURCE_VERSION));
    let err = result.unwrap_err();
    assert!(
        matches!(err, Error::Store(super::store::StoreError::Conflict(_))),
        "{err:?}"
    );
    assert!(
        fake.read(|s| s.updates.is_empty()),
        "never acted on a refused intent"
    );
    let retry = ctx.on_error(&budget, &err).unwrap();
    assert!(retry <= Duration::from_secs(6), "{retry:?}");
    assert!(failures(&ctx, "status_conflict"));
}

/// The case a forced apply without a precondition lost: the write after UpdateApplication
/// fails, and the retry reads the budget from a cache still behind the intent's write. It
/// decides on that stale read (no intent in sight), but its write carries the stale
/// resourceVersion, so the API server refuses it and the intent in the cluster survives;
/// nothing is sent to AWS. The next read, current, follows the operation.
#[tokio::test]
async fn a_stale_read_after_a_failed_write_never_erases_the_intent() {
    let (ctx, api, fake) = Context::test();
    fake.with(|s| s.samples = fixtures::overloaded());
    let budget = CheckpointBudget::test();
    let (result, (api, intent, preconditions)) = run(&ctx, api, &budget, |mut api, b| async move {
        let (intent, first) = api.status_patch_at(&b).await;
        let exchange = api.expect(http::Method::PATCH, &fixtures::status_uri()).await;
        let (recorded, second) = fixtures::applied_status(&exchange.json());
        assert_eq!(
            recorded
                .operation_in_flight
                .as_ref()
                .and_then(|o| o.operation_id.as_deref()),
            Some("op-1")
        );
        exchange.reply_status(500, "InternalError");
        (api, intent, (first, second))
    })
    .await;
    assert!(result.is_err());
    assert_eq!(fake.read(|s| s.updates.len()), 1);
    // The second write was conditioned on what the first one returned.
    assert_eq!(
        preconditions,
        (
            Some(fixtures::RESOURCE_VERSION.to_owned()),
            Some(fixtures::next_version(Some(fixtures::RESOURCE_VERSION)))
        )
    );

    // The retry, on the stale read: the budget as it was before the intent.
    let (result, (api, stale)) = run(&ctx, api, &budget, |mut api, _| async move {
        let exchange = api.expect(http::Method::PATCH, &fixtures::status_uri()).await;
        let (written, precondition) = fixtures::applied_status(&exchange.json());
        assert!(
            written.operation_in_flight.is_none(),
            "what it would have written"
        );
        exchange.reply_status(409, "Conflict");
        (api, precondition)
    })
    .await;
    assert!(matches!(
        result,
        Err(Error::Store(super::store::StoreError::Conflict(_)))
    ));
    assert_eq!(stale.as_deref(), Some(fixtures::RESOURCE_VERSION));
    assert_eq!(fake.read(|s| s.updates.len()), 1, "nothing sent on a stale read");

    // The current read has the intent (without the operation id, whose write failed): it is
    // followed from the application, never sent again.
    let mut current = budget.clone().with_status(intent);
    current.metadata.resource_version = Some(fixtures::next_version(Some(fixtures::RESOURCE_VERSION)));
    let (result, status) = run(&ctx, api, &current, |mut api, b| async move {
        let status = api.status_patch(&b).await;
        api.expect_silence().await;
        status
    })
    .await;
    result.unwrap();
    assert!(status.operation_in_flight.is_some());
    assert_eq!(cond(&status, SCALING).0, "True");
    assert_eq!(fake.read(|s| s.updates.len()), 1);
}

/// An intent without operation id whose application moved: the controller looks for the
/// update that started from the intent's version (ListApplicationOperations, then
/// DescribeApplicationOperation), learns its id and end from the service, and judges whose
/// it was from the application.
#[tokio::test]
async fn an_intent_without_operation_id_finds_its_operation_on_the_service() {
    let (ctx, api, fake) = Context::test();
    fake.with(|s| {
        let app = s.app.as_mut().unwrap();
        app.version_id = 8;
        app.config = AppConfig::new(8, 1);
        s.operations.insert(
            "op-77".into(),
            crate::aws::OperationStatus {
                operation_id: "op-77".into(),
                operation: Some("UpdateApplication".into()),
                version_change: Some((7, 8)),
                status: OperationState::Successful,
                started: Some(fixtures::now() - jiff::SignedDuration::from_mins(5)),
                ended: Some(fixtures::now() - jiff::SignedDuration::from_mins(1)),
                failure: None,
            },
        );
    });
    let budget = CheckpointBudget::test().with_status(in_flight(None));
    let (result, status) = run(&ctx, api, &budget, |mut api, b| async move {
        let status = api.status_patch(&b).await;
        api.event("ScalingSucceeded", "Normal").await;
        api.expect_silence().await;
        status
    })
    .await;
    result.unwrap();
    let last = status.last_scaling.unwrap();
    assert_eq!(last.outcome, Outcome::Succeeded);
    assert_eq!(last.operation_id.as_deref(), Some("op-77"));
    assert_eq!(
        last.completed_at.map(|t| t.0),
        Some(fixtures::now() - jiff::SignedDuration::from_mins(1)),
        "the end the service recorded"
    );
    let calls = fake.read(|s| s.calls.clone());
    assert!(
        calls.contains(&format!("ListApplicationOperations:{APP}")),
        "{calls:?}"
    );
    assert!(
        calls.contains(&format!("DescribeApplicationOperation:{APP}:op-77")),
        "{calls:?}"
    );
    assert!(fake.read(|s| s.updates.is_empty()));
}

// ---------------------------------------------------------------------------------------------
// Snapshot safety: no restart that would not resume from the job's state.

/// Snapshots off: the policy would scale, but a restart would start the job without its
/// state, so no UpdateApplication; `Scaling=False SnapshotsDisabled` with the advice, one
/// Warning Event, and `Snapshots=False`.
#[tokio::test]
async fn an_application_without_snapshots_is_not_restarted() {
    let (ctx, api, fake) = Context::test();
    fake.with(|s| {
        s.samples = fixtures::overloaded();
        s.app.as_mut().unwrap().snapshots_enabled = Some(false);
    });
    let budget = CheckpointBudget::test();
    let (result, (status, event)) = run(&ctx, api, &budget, |mut api, b| async move {
        let status = api.status_patch(&b).await;
        let event = api.event("SnapshotsDisabled", "Warning").await;
        api.expect_silence().await;
        (status, event)
    })
    .await;
    result.unwrap();
    assert!(
        fake.read(|s| s.updates.is_empty()),
        "no restart without snapshots"
    );
    assert_eq!(cond(&status, SCALING), ("False", "SnapshotsDisabled"));
    assert_eq!(cond(&status, SNAPSHOTS), ("False", "SnapshotsDisabled"));
    let message = &status.condition(SCALING).unwrap().message;
    assert!(
        message.contains("SnapshotsEnabledUpdate"),
        "the advice: {message}"
    );
    assert!(
        message.contains("would scale from"),
        "what it would have done: {message}"
    );
    assert!(
        event["note"].as_str().unwrap().contains("Snapshots are off"),
        "{event}"
    );
    assert_eq!(status.snapshots.as_ref().unwrap().enabled, Some(false));
    assert!(status.operation_in_flight.is_none());

    // The budget accepts losing state: it scales, with the application's own restore.
    let (ctx, api, fake) = Context::test();
    fake.with(|s| {
        s.samples = fixtures::overloaded();
        s.app.as_mut().unwrap().snapshots_enabled = Some(false);
    });
    let mut budget = CheckpointBudget::test();
    budget.spec.allow_state_loss = true;
    let (result, _) = run(
        &ctx,
        api,
        &budget,
        |api, b| async move { api.answer_all(&b).await },
    )
    .await;
    result.unwrap();
    let updates = fake.read(|s| s.updates.clone());
    assert_eq!(updates.len(), 1);
    assert_eq!(updates[0].restore, crate::aws::Restore::Latest);
}

/// The application's restore configuration is kept: one that restarts without state or
/// from an old named snapshot is not restarted (unless the budget accepts losing state,
/// and then the update carries that configuration unchanged).
#[tokio::test]
async fn the_applications_restore_configuration_is_kept() {
    use crate::aws::Restore;
    for (restore, reason) in [
        (Restore::Skip, "RestoreSkipped"),
        (
            Restore::Custom("before-migration".into()),
            "RestoreFromCustomSnapshot",
        ),
    ] {
        let (ctx, api, fake) = Context::test();
        fake.with(|s| {
            s.samples = fixtures::overloaded();
            s.app.as_mut().unwrap().restore = Some(restore.clone());
        });
        let budget = CheckpointBudget::test();
        let (result, status) = run(&ctx, api, &budget, |mut api, b| async move {
            let status = api.status_patch(&b).await;
            api.event(reason, "Warning").await;
            api.expect_silence().await;
            status
        })
        .await;
        result.unwrap();
        assert!(fake.read(|s| s.updates.is_empty()), "{reason}");
        assert_eq!(cond(&status, SCALING), ("False", reason));
        assert_eq!(
            status.snapshots.as_ref().unwrap().restore.as_deref(),
            Some(restore.to_string().as_str())
        );

        let (ctx, api, fake) = Context::test();
        fake.with(|s| {
            s.samples = fixtures::overloaded();
            s.app.as_mut().unwrap().restore = Some(restore.clone());
        });
        let mut budget = CheckpointBudget::test();
        budget.spec.allow_state_loss = true;
        let (result, _) = run(
            &ctx,
            api,
            &budget,
            |api, b| async move { api.answer_all(&b).await },
        )
        .await;
        result.unwrap();
        let updates = fake.read(|s| s.updates.clone());
        assert_eq!(updates.len(), 1, "{reason}");
        assert_eq!(updates[0].restore, restore, "sent as the application has it");
    }
}

/// The snapshot count against the quota: counted once per application version, and a
/// Warning Event as it nears the quota.
#[tokio::test]
async fn snapshots_are_counted_against_the_quota_once_per_version() {
    let (ctx, api, fake) = Context::test();
    fake.with(|s| s.snapshots = 950);
    let budget = CheckpointBudget::test();
    let (result, (api, status)) = run(&ctx, api, &budget, |mut api, b| async move {
        let status = api.status_patch(&b).await;
        api.event("SnapshotQuotaNear", "Warning").await;
        (api, status)
    })
    .await;
    result.unwrap();
    assert_eq!(cond(&status, SNAPSHOTS), ("False", "SnapshotQuotaNear"));
    let snapshots = status.snapshots.clone().unwrap();
    assert_eq!(
        (snapshots.count, snapshots.quota, snapshots.counted_at_version),
        (Some(950), 1000, Some(7))
    );
    // The same version: not counted again, no second Event.
    let budget = budget.with_status(status);
    let (result, _) = run(&ctx, api, &budget, |mut api, b| async move {
        api.status_patch(&b).await;
        api.expect_silence().await;
    })
    .await;
    result.unwrap();
    let counts = fake.read(|s| {
        s.calls
            .iter()
            .filter(|c| c.starts_with("ListApplicationSnapshots"))
            .count()
    });
    assert_eq!(counts, 1);
}

// ---------------------------------------------------------------------------------------------
// History from the application.

/// Someone else restarted the application (a CI deploy: an UpdateApplication the controller
/// never made). The budget's status knows nothing of it, but the application's operations
/// do: the scale-up cooldown counts from that restart, so the overloaded application is not
/// restarted again so soon; the restart is cached in `status.history.restarts`, read again
/// only when the version moves.
#[tokio::test]
async fn another_clients_restart_holds_the_cooldown() {
    let (ctx, api, fake) = Context::test();
    let deploy = |fake: &fixtures::FakeAws| {
        fake.with(|s| {
            s.samples = fixtures::overloaded();
            s.operations.insert(
                "ci-deploy".into(),
                crate::aws::OperationStatus {
                    operation_id: "ci-deploy".into(),
                    operation: Some("UpdateApplication".into()),
                    version_change: Some((6, 7)),
                    status: OperationState::Successful,
                    started: Some(fixtures::now() - jiff::SignedDuration::from_mins(40)),
                    ended: Some(fixtures::now() - jiff::SignedDuration::from_mins(30)),
                    failure: None,
                },
            );
        })
    };
    deploy(&fake);
    let mut budget = CheckpointBudget::test();
    budget.spec.behavior.scale_up.cooldown = crate::crd::KubeDuration::new("1h").unwrap();
    let (result, (api, status)) = run(&ctx, api, &budget, |mut api, b| async move {
        let status = api.status_patch(&b).await;
        (api, status)
    })
    .await;
    result.unwrap();
    assert!(
        fake.read(|s| s.updates.is_empty()),
        "not within the cooldown of the deploy"
    );
    assert_eq!(cond(&status, SCALING), ("False", "CooldownActive"));
    let history = status.history.clone().unwrap();
    assert_eq!(history.restarts.len(), 1);
    assert_eq!(history.restarts[0].operation_id.as_deref(), Some("ci-deploy"));
    assert_eq!(history.operations_read_at_version, Some(7));
    assert!(history.application.as_deref().unwrap().ends_with(APP));

    // The same version: the cache holds, the application's operations are not read again.
    let budget = budget.with_status(status);
    let (result, _) = run(
        &ctx,
        api,
        &budget,
        |api, b| async move { api.answer_all(&b).await },
    )
    .await;
    result.unwrap();
    let lists = fake.read(|s| {
        s.calls
            .iter()
            .filter(|c| c.starts_with("ListApplicationOperations"))
            .count()
    });
    assert_eq!(lists, 1);

    // Without the deploy in the application's history, the same budget scales at once.
    let (ctx, api, fake) = Context::test();
    fake.with(|s| s.samples = fixtures::overloaded());
    let mut budget = CheckpointBudget::test();
    budget.spec.behavior.scale_up.cooldown = crate::crd::KubeDuration::new("1h").unwrap();
    let (result, _) = run(
        &ctx,
        api,
        &budget,
        |api, b| async move { api.answer_all(&b).await },
    )
    .await;
    result.unwrap();
    assert_eq!(fake.read(|s| s.updates.len()), 1);
}

/// What the process keeps per budget follows the budgets that exist: a deleted budget's
/// failure counters leave `/metrics` and its backoff count is forgotten.
#[tokio::test]
async fn a_deleted_budgets_counters_are_pruned() {
    let (ctx, _api, _fake) = Context::test();
    let gone = CheckpointBudget::test();
    let mut kept = CheckpointBudget::test();
    kept.metadata.name = Some("kept".into());
    let err = Error::Aws(AwsError::Throttled("x".into()));
    ctx.on_error(&gone, &err);
    ctx.on_error(&kept, &err);
    let live = std::collections::BTreeSet::from(["streaming/kept".to_owned()]);
    ctx.prune(&live);
    let text = ctx.metrics.encode().unwrap();
    assert!(!text.contains("streaming/orders"), "{text}");
    assert!(text.contains("streaming/kept"), "{text}");
    // A new failure of the deleted name starts from the first backoff step again.
    let first = ctx.on_error(&gone, &err).unwrap();
    assert!(first <= Duration::from_secs(6), "{first:?}");
}

// ---------------------------------------------------------------------------------------------
// Handing back: a deleted budget gives the application back as it found it.

/// The URI of a merge patch of the test budget itself (its finalizers).
fn budget_uri() -> String {
    format!(
        "/apis/checkpoint-autoscaler.dev/v1alpha1/namespaces/{}/checkpointbudgets/{}?&fieldManager={}",
        fixtures::NAMESPACE,
        fixtures::NAME,
        super::store::FIELD_MANAGER
    )
}

/// The first update that turns the service's own autoscaling off records what it was
/// (`status.handBack`) and puts the finalizer on the budget — before the intent, before
/// AWS hears of it.
#[tokio::test]
async fn turning_the_service_autoscaling_off_records_it_behind_a_finalizer() {
    let (ctx, api, fake) = Context::test();
    fake.with(|s| {
        s.samples = fixtures::overloaded();
        s.app.as_mut().unwrap().service_autoscaling = true;
    });
    let budget = CheckpointBudget::test();
    let probe = fake.clone();
    let (result, intent) = run(&ctx, api, &budget, |mut api, b| async move {
        let patch = api.expect(http::Method::PATCH, &budget_uri()).await;
        let body = patch.json();
        assert_eq!(
            body["metadata"]["finalizers"],
            serde_json::json!([super::store::FINALIZER])
        );
        assert_eq!(body["metadata"]["resourceVersion"], fixtures::RESOURCE_VERSION);
        assert!(probe.read(|s| s.updates.is_empty()), "the finalizer comes first");
        let mut reply = b.clone();
        reply.metadata.finalizers = Some(vec![super::store::FINALIZER.into()]);
        reply.metadata.resource_version = Some("101".into());
        patch.reply_json(&reply);
        let (intent, precondition) = api.status_patch_at(&b).await;
        assert_eq!(
            precondition.as_deref(),
            Some("101"),
            "conditioned on the finalizer's write"
        );
        api.status_patch(&b).await;
        api.event("ScaleUpRequired", "Normal").await;
        api.expect_silence().await;
        intent
    })
    .await;
    result.unwrap();
    let hand_back = intent.hand_back.unwrap();
    assert!(hand_back.service_auto_scaling);
    assert!(hand_back.application.ends_with(APP));
    let updates = fake.read(|s| s.updates.clone());
    assert_eq!(updates.len(), 1);
    assert!(!updates[0].service_autoscaling, "serviceAutoScaling: Disable");
}

/// A budget being deleted with the finalizer: it never scales; it turns the service's own
/// autoscaling back on (one UpdateApplication, with the application's own restore
/// configuration), says so in an Event, and removes its finalizer.
#[tokio::test]
async fn a_deleted_budget_gives_the_service_autoscaling_back() {
    let (ctx, api, fake) = Context::test();
    fake.with(|s| {
        s.samples = fixtures::overloaded();
        s.app.as_mut().unwrap().service_autoscaling = false;
    });
    let mut budget = CheckpointBudget::test().with_status(CheckpointBudgetStatus {
        hand_back: Some(crate::crd::HandBack {
            application: format!("arn:aws:kinesisanalytics:eu-west-1:123456789012:application/{APP}"),
            service_auto_scaling: true,
            recorded_at: k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(fixtures::now()),
        }),
        ..CheckpointBudgetStatus::default()
    });
    budget.metadata.finalizers = Some(vec![super::store::FINALIZER.into()]);
    budget.metadata.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
        fixtures::now() - jiff::SignedDuration::from_secs(30),
    ));
    let (result, ()) = run(&ctx, api, &budget, |mut api, b| async move {
        let event = api.event("ServiceAutoScalingRestored", "Normal").await;
        assert!(event["note"].as_str().unwrap().contains("on again"), "{event}");
        let patch = api.expect(http::Method::PATCH, &budget_uri()).await;
        assert_eq!(patch.json()["metadata"]["finalizers"], serde_json::json!([]));
        patch.reply_json(&b);
        api.expect_silence().await;
    })
    .await;
    assert_eq!(result.unwrap(), Action::await_change());
    let updates = fake.read(|s| s.updates.clone());
    assert_eq!(updates.len(), 1, "only the hand-back, never a scaling");
    assert!(updates[0].service_autoscaling);
    assert_eq!(updates[0].to, AppConfig::new(4, 1), "the parallelism as it is");
}

/// Deleting never hangs on AWS: within the bound an error is retried (the finalizer stays);
/// past it the controller gives up, says so in a Warning Event, and removes the finalizer.
/// `onDelete: Leave` removes it at once, with no AWS call.
#[tokio::test]
async fn deleting_is_bounded_and_leave_means_leave() {
    let deleting = |since_mins: i64, on_delete: crate::crd::OnDelete| {
        let mut budget = CheckpointBudget::test().with_status(CheckpointBudgetStatus {
            hand_back: Some(crate::crd::HandBack {
                application: format!("arn:aws:kinesisanalytics:eu-west-1:123456789012:application/{APP}"),
                service_auto_scaling: true,
                recorded_at: k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(fixtures::now()),
            }),
            ..CheckpointBudgetStatus::default()
        });
        budget.spec.on_delete = on_delete;
        budget.metadata.finalizers = Some(vec![super::store::FINALIZER.into()]);
        budget.metadata.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            fixtures::now() - jiff::SignedDuration::from_mins(since_mins),
        ));
        budget
    };
    let throttled = |fake: &fixtures::FakeAws| {
        fake.with(|s| {
            s.app.as_mut().unwrap().service_autoscaling = false;
            s.update_result = Err(AwsError::Throttled("UpdateApplication: Rate exceeded".into()));
        })
    };

    // Within the bound: retried, the finalizer stays.
    let (ctx, api, fake) = Context::test();
    throttled(&fake);
    let budget = deleting(2, crate::crd::OnDelete::Restore);
    let (result, ()) = run(
        &ctx,
        api,
        &budget,
        |api, _| async move { api.expect_silence().await },
    )
    .await;
    assert!(
        matches!(result, Err(Error::Aws(AwsError::Throttled(_)))),
        "{result:?}"
    );

    // Past it: given up, with a Warning Event, and the finalizer removed.
    let (ctx, api, fake) = Context::test();
    throttled(&fake);
    let budget = deleting(11, crate::crd::OnDelete::Restore);
    let (result, ()) = run(&ctx, api, &budget, |mut api, b| async move {
        let event = api.event("HandBackAbandoned", "Warning").await;
        assert!(event["note"].as_str().unwrap().contains("10m"), "{event}");
        let patch = api.expect(http::Method::PATCH, &budget_uri()).await;
        patch.reply_json(&b);
        api.expect_silence().await;
    })
    .await;
    assert_eq!(result.unwrap(), Action::await_change());

    // Leave: nothing asked of AWS.
    let (ctx, api, fake) = Context::test();
    throttled(&fake);
    let budget = deleting(0, crate::crd::OnDelete::Leave);
    let (result, ()) = run(&ctx, api, &budget, |mut api, b| async move {
        let patch = api.expect(http::Method::PATCH, &budget_uri()).await;
        patch.reply_json(&b);
        api.expect_silence().await;
    })
    .await;
    assert_eq!(result.unwrap(), Action::await_change());
    assert!(
        fake.read(|s| s.calls.is_empty()),
        "{:?}",
        fake.read(|s| s.calls.clone())
    );
}
