//! The controller end to end: the reconcile core with the real SDK clients against the
//! emulator (through `demo`'s runner), and, opt-in, against a real cluster.

use std::path::PathBuf;

use checkpoint_autoscaler::{
    crd::CheckpointBudget,
    demo::{self, DemoOutcome},
    policy::Outcome,
    sim::Scenario,
};

fn step_up() -> Scenario {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples/scenarios/step-up.yaml");
    Scenario::load(&path).expect("the step-up scenario loads")
}

async fn run(scenario: &Scenario, budget: &CheckpointBudget) -> (DemoOutcome, String) {
    let mut out = Vec::new();
    let outcome = demo::run_demo(scenario, budget, 0.0, &mut out)
        .await
        .expect("demo runs");
    (outcome, String::from_utf8(out).expect("utf-8 output"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_budget_breached_by_a_load_step_is_restored_within_bounds() {
    let scenario = step_up();
    let budget = demo::load_budget(None, &scenario).unwrap();
    let typed = budget.spec.to_budget().unwrap();
    let (outcome, log) = run(&scenario, &budget).await;

    assert!(outcome.restored, "not restored:\n{log}");
    let breached = outcome.breached_at.expect("the load step breaches the budget");
    assert!(
        breached >= 30,
        "breached before the load step, at +{breached}m:\n{log}"
    );
    assert!(
        (1..=2).contains(&outcome.scalings.len()),
        "one well-sized step (two at most) should do:\n{log}"
    );
    assert!(
        outcome.minutes_to_restore().unwrap() <= 45,
        "restored too slowly:\n{log}"
    );
    assert!(outcome.kpus_after > outcome.kpus_before);

    // Never above the job's key groups or the budget's bounds, and AWS refused nothing.
    assert_eq!(outcome.updates.len(), outcome.scalings.len());
    for update in &outcome.updates {
        assert!(update.to.parallelism <= typed.max_parallelism, "{}", update.to);
        assert!(update.to.parallelism <= typed.parallelism_max, "{}", update.to);
        assert!(
            typed.max_kpus.is_none_or(|cap| update.to.kpus() <= cap),
            "{}",
            update.to
        );
        assert!(!update.service_autoscaling);
    }
    assert_eq!(
        outcome.update_calls,
        outcome.updates.len(),
        "the emulator saw every update once"
    );
    assert_eq!(outcome.update_calls_refused, 0);

    // The status the controller would have written tells the story.
    let status = outcome.status.as_ref().expect("a status");
    assert!(status.operation_in_flight.is_none());
    let last = status.last_scaling.as_ref().expect("the scaling is recorded");
    assert_eq!(last.outcome, Outcome::Succeeded);
    assert_eq!(status.condition("SloMet").unwrap().status, "True");
    assert_eq!(status.condition("Ready").unwrap().status, "True");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_update_through_the_emulator_stays_within_the_budget_bounds() {
    let scenario = step_up();
    let budget = demo::load_budget(None, &scenario).unwrap();
    let typed = budget.spec.to_budget().unwrap();
    let (outcome, log) = run(&scenario, &budget).await;
    assert!(
        outcome.breached_at.is_some(),
        "the load step breaches the budget:\n{log}"
    );
    assert!(
        !outcome.updates.is_empty(),
        "a breach under load is acted on:\n{log}"
    );
    for update in &outcome.updates {
        assert!(update.to.parallelism <= typed.max_parallelism, "{}", update.to);
        assert!(update.to.parallelism <= typed.parallelism_max, "{}", update.to);
        assert!(
            typed.max_kpus.is_none_or(|cap| update.to.kpus() <= cap),
            "{}",
            update.to
        );
        assert!(
            update.to.kpus() > outcome.kpus_before,
            "scale-ups only: {}",
            update.to
        );
    }
    // The emulator's call log: every UpdateApplication arrived once and none was refused
    // (the service refuses a parallelism above maxParallelism).
    assert_eq!(outcome.update_calls, outcome.updates.len());
    assert_eq!(outcome.update_calls_refused, 0);
    // Each update waited for the previous one to finish: at most one in flight.
    for pair in outcome.scalings.windows(2) {
        assert!(pair[1].minute - pair[0].minute >= 5, "{:?}", outcome.scalings);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_is_reproducible_and_charts_its_run() {
    let scenario = step_up();
    let budget = demo::load_budget(None, &scenario).unwrap();
    let (first, _) = run(&scenario, &budget).await;
    let (second, _) = run(&scenario, &budget).await;
    assert_eq!(
        first.scalings, second.scalings,
        "the emulated clock is the demo's, not the wall's"
    );
    assert_eq!(first.restored_at, second.restored_at);

    let dir = tempfile::tempdir().unwrap();
    let svg = dir.path().join("demo.svg");
    demo::write_chart(&first, &svg).unwrap();
    let text = std::fs::read_to_string(&svg).unwrap();
    assert!(text.starts_with("<svg"), "{}", &text[..text.len().min(80)]);
    assert!(text.contains("lastCheckpointDuration") && text.contains("budget"));

    let mut summary = Vec::new();
    demo::summarize(&first, &svg, &mut summary).unwrap();
    let summary = String::from_utf8(summary).unwrap();
    let verdict = if first.restored {
        "Budget restored"
    } else {
        "Budget NOT restored"
    };
    assert!(summary.contains(verdict), "{summary}");
    assert!(
        summary.contains(&format!("Scalings (restarts): {}", first.scalings.len())),
        "{summary}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recommend_mode_through_the_emulator_never_updates() {
    let scenario = step_up();
    let mut budget = demo::load_budget(None, &scenario).unwrap();
    budget.spec.mode = checkpoint_autoscaler::crd::Mode::Recommend;
    let (outcome, log) = run(&scenario, &budget).await;
    assert!(
        !outcome.restored,
        "nothing restores a budget in Recommend mode:\n{log}"
    );
    assert!(outcome.breached_at.is_some());
    assert_eq!(outcome.update_calls, 0, "{log}");
    assert!(outcome.updates.is_empty());
    let status = outcome.status.unwrap();
    let recommendation = status.recommendation.expect("a recommendation");
    assert!(recommendation.kpus > outcome.kpus_before, "{recommendation:?}");
}

/// Against a real cluster (opt-in): installs the CRD, creates a budget in a fresh
/// namespace, runs the controller against the emulator (a virtual minute per 250 ms) and
/// waits for the status and the Events of a scaling.
///
/// `KUBECONFIG=~/.kube/config cargo test --test integration controller::real_cluster -- --ignored`
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a Kubernetes cluster: set KUBECONFIG and run with --ignored"]
async fn real_cluster_status_and_events() {
    use std::{sync::Arc, time::Duration};

    use aws_config::{BehaviorVersion, Region};
    use aws_credential_types::Credentials;
    use checkpoint_autoscaler::{
        aws::{AwsClients, AwsSettings, KinesisControl, MetricsMode, metrics_source},
        controller::{
            Context,
            reconcile::Core,
            run_controller,
            tenancy::{NAMESPACE_TAG, TagTenancy},
        },
        emulator::{self, EmulatorConfig},
        metrics::Metrics,
    };
    use k8s_openapi::{
        api::{core::v1::Namespace, events::v1::Event},
        apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
    };
    use kube::{
        Client, CustomResourceExt,
        api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams},
        runtime::events::{Recorder, Reporter},
    };

    assert!(
        std::env::var_os("KUBECONFIG").is_some(),
        "this test runs against the cluster named by KUBECONFIG"
    );
    checkpoint_autoscaler::controller::install_crypto_provider();
    let client = Client::try_default().await.expect("a cluster");

    // The CRD, applied as the chart would, and established.
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let crd = CheckpointBudget::crd();
    let crd_name = crd.metadata.name.clone().unwrap();
    crds.patch(
        &crd_name,
        &PatchParams::apply("checkpoint-autoscaler-e2e").force(),
        &Patch::Apply(&crd),
    )
    .await
    .expect("CRD applied");
    for _ in 0..60 {
        let current = crds.get(&crd_name).await.unwrap();
        let established = current
            .status
            .and_then(|s| s.conditions)
            .is_some_and(|c| c.iter().any(|c| c.type_ == "Established" && c.status == "True"));
        if established {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    let namespace = format!("ckb-e2e-{}", std::process::id());
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let mut ns = Namespace::default();
    ns.metadata.name = Some(namespace.clone());
    namespaces
        .create(&PostParams::default(), &ns)
        .await
        .expect("namespace");

    // The emulator with the step-up scenario, its application tagged for the namespace.
    let scenario = step_up();
    let emu = emulator::serve(EmulatorConfig {
        period: Some(Duration::from_millis(250)),
        seed: scenario.seed,
        start: Some(scenario.start_time()),
        region: "us-east-1".into(),
        ..EmulatorConfig::default()
    })
    .await
    .unwrap();
    let state = emu.state().clone();
    let view = state.add_scenario(&scenario, None).unwrap();
    state
        .with_fleet(|f| f.tag_resource(&view.arn, vec![(NAMESPACE_TAG.into(), namespace.clone())]))
        .unwrap();

    let base = aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("AKIDE2E", "e2e-secret", None, None, "e2e"))
        .load()
        .await;
    let clients = Arc::new(AwsClients::from_sdk_config(
        base,
        AwsSettings {
            endpoint_url: Some(emu.endpoint_url()),
            ..AwsSettings::default()
        },
    ));
    let metrics = Metrics::default();
    let clock_state = state.clone();
    let ctx = Arc::new(Context {
        client: client.clone(),
        recorder: Recorder::new(
            client.clone(),
            Reporter {
                controller: "checkpoint-autoscaler".into(),
                instance: Some("e2e".into()),
            },
        ),
        core: Core {
            apps: Arc::new(KinesisControl::new(clients.clone())),
            metrics_source: metrics_source(clients.clone(), MetricsMode::Direct),
            tenancy: Arc::new(TagTenancy::default()),
            default_region: "us-east-1".into(),
            metrics: metrics.clone(),
            period: Duration::from_secs(60),
            // Real time: four emulated minutes, two while an update runs.
            interval: Duration::from_secs(1),
            in_flight_poll: Duration::from_millis(500),
        },
        metrics,
        backoff: Arc::default(),
        clock: Arc::new(move || clock_state.virtual_now()),
    });

    let budgets: Api<CheckpointBudget> = Api::namespaced(client.clone(), &namespace);
    let mut budget = demo::load_budget(None, &scenario).unwrap();
    budget.metadata.namespace = Some(namespace.clone());
    budgets
        .create(&PostParams::default(), &budget)
        .await
        .expect("budget created");

    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let controller = tokio::spawn(run_controller(budgets.clone(), ctx, async move {
        let _ = stop_rx.await;
    }));

    // The load steps up at 30 emulated minutes (7.5 s); allow a minute of real time.
    let name = budget.metadata.name.clone().unwrap();
    let mut scaled = None;
    for _ in 0..120 {
        let current = budgets.get(&name).await.unwrap();
        if let Some(status) = current.status.filter(|s| s.last_scaling.is_some()) {
            scaled = Some(status);
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let _ = stop_tx.send(());
    let _ = controller.await;

    let events: Api<Event> = Api::namespaced(client.clone(), &namespace);
    let events = events.list(&ListParams::default()).await.unwrap();
    let _ = namespaces.delete(&namespace, &DeleteParams::default()).await;
    let _ = emu.shutdown().await;

    let status = scaled.expect("the controller scaled the application and recorded it in status");
    assert_eq!(status.observed_generation, Some(1));
    assert_eq!(status.condition("Ready").map(|c| c.status.as_str()), Some("True"));
    let ours: Vec<_> = events
        .items
        .iter()
        .filter(|e| e.reporting_controller.as_deref() == Some("checkpoint-autoscaler"))
        .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name.as_str()))
        .collect();
    assert!(!ours.is_empty(), "no Events about the budget: {:?}", events.items);
    assert!(
        ours.iter().any(|e| e.action.as_deref() == Some("Scaling")),
        "{ours:?}"
    );
}
