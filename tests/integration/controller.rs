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

/// The emulator with the step-up scenario's application (tagged for `default`), its frozen
/// clock `minutes` in, and the scenario's budget as an API server lists it (generation 1,
/// resourceVersion 1, `uid`).
pub(crate) async fn step_up_listed(
    minutes: u64,
    uid: &str,
) -> (
    checkpoint_autoscaler::emulator::Emulator,
    Scenario,
    CheckpointBudget,
) {
    let scenario = step_up();
    let (emu, _) = checkpoint_autoscaler_testkit::rig::serve_scenario(&scenario, "us-east-1", "default")
        .await
        .unwrap();
    emu.state().advance(std::time::Duration::from_secs(minutes * 60));
    let mut budget = demo::load_budget(None, &scenario).unwrap();
    budget.metadata.generation = Some(1);
    budget.metadata.uid = Some(uid.into());
    budget.metadata.resource_version = Some("1".into());
    (emu, scenario, budget)
}

/// The controller's `run_controller` over every namespace, running until [`Running::stop`].
pub(crate) struct Running {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl Running {
    /// Starts the controller with `ctx`, watching budgets in every namespace.
    pub(crate) fn start(ctx: std::sync::Arc<checkpoint_autoscaler::controller::Context>) -> Self {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let budgets = kube::Api::all(ctx.client.clone());
        let task = tokio::spawn(checkpoint_autoscaler::controller::run_controller(
            budgets,
            ctx,
            async move {
                let _ = stopped.await;
            },
        ));
        Self { stop, task }
    }

    /// Whether the controller stopped by itself.
    pub(crate) fn is_finished(&self) -> bool {
        self.task.is_finished()
    }

    /// Stops the controller and waits (at most 5 s) for it to end.
    pub(crate) async fn stop(self) {
        let _ = self.stop.send(());
        let _ = tokio::time::timeout(std::time::Duration::from_secs(5), self.task).await;
    }
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

/// Server-side dry-run apply of every document in `yaml` (`namespace`: where namespaced
/// objects go). A kind the cluster does not serve is skipped with a note only when it comes
/// from an optional operator (the Prometheus Operator's ServiceMonitor and PrometheusRule);
/// anything else the API server refuses fails the test with its answer.
async fn dry_run_apply(client: &kube::Client, namespace: Option<&str>, yaml: &str, source: &str) {
    use kube::{
        api::{Api, DynamicObject, GroupVersionKind, Patch, PatchParams},
        discovery::{Discovery, Scope},
    };
    use serde::Deserialize;

    let discovery = Discovery::new(client.clone()).run().await.expect("API discovery");
    let params = PatchParams::apply("checkpoint-autoscaler-e2e").force().dry_run();
    for doc in serde_yaml::Deserializer::from_str(yaml) {
        let value = serde_yaml::Value::deserialize(doc).expect("YAML");
        if value.is_null() {
            continue;
        }
        let mut object: DynamicObject = serde_yaml::from_value(value).expect("a Kubernetes object");
        let types = object.types.clone().expect("apiVersion and kind");
        let (group, version) = match types.api_version.split_once('/') {
            Some((g, v)) => (g.to_owned(), v.to_owned()),
            None => (String::new(), types.api_version.clone()),
        };
        let gvk = GroupVersionKind::gvk(&group, &version, &types.kind);
        let name = object.metadata.name.clone().expect("a name");
        let Some((resource, caps)) = discovery.resolve_gvk(&gvk) else {
            assert!(
                matches!(types.kind.as_str(), "ServiceMonitor" | "PrometheusRule"),
                "{source}: {} {name}: this cluster does not serve {}",
                types.kind,
                types.api_version
            );
            eprintln!(
                "{source}: {} {name} skipped: the Prometheus Operator is not installed",
                types.kind
            );
            continue;
        };
        let api: Api<DynamicObject> = match (caps.scope, namespace) {
            (Scope::Namespaced, Some(ns)) => {
                object.metadata.namespace = Some(ns.to_owned());
                Api::namespaced_with(client.clone(), ns, &resource)
            }
            (Scope::Namespaced, None) => Api::default_namespaced_with(client.clone(), &resource),
            (Scope::Cluster, _) => Api::all_with(client.clone(), &resource),
        };
        api.patch(&name, &params, &Patch::Apply(&object))
            .await
            .unwrap_or_else(|e| panic!("{source}: {} {name} refused by the API server: {e}", types.kind));
    }
}

/// Against a real cluster (opt-in): server-side dry-runs the committed CRD and the chart's
/// manifests first (what no stand-in can judge), then installs the CRD, creates a budget in a fresh
/// namespace, runs the controller against the emulator (a virtual minute per 250 ms) and
/// waits for the status and the Events of a scaling.
///
/// `KUBECONFIG=~/.kube/config cargo test --test integration controller::real_cluster -- --ignored`
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a Kubernetes cluster: set KUBECONFIG and run with --ignored"]
async fn real_cluster_status_and_events() {
    use std::time::Duration;

    use checkpoint_autoscaler::{
        controller::run_controller,
        emulator::{self, EmulatorConfig},
    };
    use checkpoint_autoscaler_testkit::rig;
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

    // First what no stand-in can judge: does this API server accept the CRD as committed
    // (structural schema, CEL compilation and estimated costs) and the chart's manifests?
    // Server-side dry runs: nothing is persisted.
    let crd_text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/crds/checkpointbudget.yaml"))
            .expect("crds/checkpointbudget.yaml");
    dry_run_apply(&client, None, &crd_text, "crds/checkpointbudget.yaml").await;

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
    // The chart as rendered (tests/data/chart, kept current by tests/python/test_chart.py),
    // every object dry-run into the test namespace.
    for snapshot in ["defaults", "namespaced", "everything"] {
        let path = format!("{}/tests/data/chart/{snapshot}.yaml", env!("CARGO_MANIFEST_DIR"));
        let text = std::fs::read_to_string(&path).expect("a chart snapshot");
        dry_run_apply(&client, Some(&namespace), &text, &path).await;
    }

    // The emulator with the step-up scenario, its application tagged for the namespace.
    let scenario = step_up();
    let emu = emulator::serve(EmulatorConfig {
        period: Some(Duration::from_millis(250)),
        ..rig::emulator_config(&scenario, "us-east-1")
    })
    .await
    .unwrap();
    rig::add_application(emu.state(), &scenario, None, &namespace).unwrap();
    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: "checkpoint-autoscaler".into(),
            instance: Some("e2e".into()),
        },
    );
    // Real time: four emulated minutes, two while an update runs.
    let ctx = context(
        client.clone(),
        recorder,
        &emu,
        Duration::from_secs(1),
        Duration::from_millis(500),
    )
    .await;

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

/// A minimal in-memory Kubernetes API server for one `CheckpointBudget`: list, watch (a
/// chunked stream of events), server-side apply on `/status`, and Events. Enough to run the
/// real `kube::runtime::Controller` wiring without a cluster. Watches can be dropped
/// ([`Fake::drop_watches`]) and expired ([`Fake::expire_watches`]) as an API server does.
pub(crate) mod fake_apiserver {
    use std::{
        net::SocketAddr,
        sync::{
            Arc, Mutex,
            atomic::{AtomicBool, AtomicUsize, Ordering},
        },
    };

    use axum::{
        Json, Router,
        body::{Body, Bytes},
        extract::{Path, RawQuery, State},
        response::IntoResponse,
        routing::{get, patch, post},
    };
    use serde_json::{Value, json};
    use tokio::sync::broadcast;

    /// What the fake holds and saw.
    pub struct Fake {
        pub object: Mutex<Value>,
        /// More budgets, served after `object` ([`serve_more`]).
        pub others: Mutex<Vec<Value>>,
        pub version: Mutex<u64>,
        pub patches: Mutex<Vec<(String, Value)>>,
        /// The `Authorization` header of the last status patch.
        pub authorization: Mutex<Option<String>>,
        pub events: Mutex<Vec<Value>>,
        pub changes: broadcast::Sender<Value>,
        /// Ends every open watch stream (as an API server restart or a load balancer does).
        pub drops: broadcast::Sender<()>,
        /// When set, the next watch answers `410 Gone` (its resourceVersion is too old),
        /// which makes a client list again.
        pub expire_next_watch: AtomicBool,
        /// List requests served.
        pub lists: AtomicUsize,
        /// Watch requests served.
        pub watches: AtomicUsize,
    }

    impl Fake {
        /// Replaces the spec, bumping generation and resourceVersion, and tells watchers.
        pub fn set_spec(&self, spec: Value) {
            let mut object = self.object.lock().unwrap();
            object["spec"] = spec;
            let generation = object["metadata"]["generation"].as_i64().unwrap_or(1) + 1;
            object["metadata"]["generation"] = json!(generation);
            self.bump(&mut object);
        }

        /// The status of the budget `name`.
        pub fn status_of(&self, name: &str) -> Value {
            let object = self.object.lock().unwrap();
            if object["metadata"]["name"] == name {
                return object["status"].clone();
            }
            let others = self.others.lock().unwrap();
            let other = others.iter().find(|o| o["metadata"]["name"] == name);
            other.map(|o| o["status"].clone()).unwrap_or(Value::Null)
        }

        /// Deletes the budget `name` from `others`, and tells watchers.
        pub fn delete(&self, name: &str) {
            let mut others = self.others.lock().unwrap();
            let at = others.iter().position(|o| o["metadata"]["name"] == name).unwrap();
            let mut gone = others.remove(at);
            let mut version = self.version.lock().unwrap();
            *version += 1;
            gone["metadata"]["resourceVersion"] = json!(version.to_string());
            let _ = self.changes.send(json!({"type": "DELETED", "object": gone}));
        }

        /// Ends every open watch: the response bodies end cleanly.
        pub fn drop_watches(&self) {
            let _ = self.drops.send(());
        }

        /// Ends every open watch, and answers the next one with a `410 Gone` ERROR event.
        pub fn expire_watches(&self) {
            self.expire_next_watch.store(true, Ordering::SeqCst);
            self.drop_watches();
        }

        fn bump(&self, object: &mut Value) {
            let mut version = self.version.lock().unwrap();
            *version += 1;
            object["metadata"]["resourceVersion"] = json!(version.to_string());
            let _ = self
                .changes
                .send(json!({"type": "MODIFIED", "object": object.clone()}));
        }
    }

    type Shared = Arc<Fake>;

    async fn list(State(fake): State<Shared>, RawQuery(query): RawQuery) -> axum::response::Response {
        let query = query.unwrap_or_default();
        if query.contains("watch=true") {
            fake.watches.fetch_add(1, Ordering::SeqCst);
            if fake.expire_next_watch.swap(false, Ordering::SeqCst) {
                // What an API server sends for a resourceVersion it no longer has.
                let gone = json!({"type": "ERROR", "object": {
                    "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                    "message": "too old resource version", "reason": "Expired", "code": 410,
                }});
                let mut line = serde_json::to_vec(&gone).unwrap();
                line.push(b'\n');
                return axum::response::Response::builder()
                    .header("content-type", "application/json")
                    .body(Body::from(line))
                    .unwrap();
            }
            // Only changes after the watch starts; the list gave the state before.
            let rx = fake.changes.subscribe();
            let drops = fake.drops.subscribe();
            let stream = futures::stream::unfold((rx, drops), |(mut rx, mut drops)| async move {
                loop {
                    tokio::select! {
                        _ = drops.recv() => return None,
                        event = rx.recv() => match event {
                            Ok(event) => {
                                let mut line = serde_json::to_vec(&event).unwrap();
                                line.push(b'\n');
                                return Some((Ok::<_, std::io::Error>(Bytes::from(line)), (rx, drops)));
                            }
                            Err(broadcast::error::RecvError::Lagged(_)) => continue,
                            Err(broadcast::error::RecvError::Closed) => return None,
                        },
                    }
                }
            });
            return axum::response::Response::builder()
                .header("content-type", "application/json")
                .body(Body::from_stream(stream))
                .unwrap();
        }
        fake.lists.fetch_add(1, Ordering::SeqCst);
        let mut items = vec![fake.object.lock().unwrap().clone()];
        items.extend(fake.others.lock().unwrap().iter().cloned());
        let version = fake.version.lock().unwrap().to_string();
        Json(json!({
            "apiVersion": "checkpoint-autoscaler.dev/v1alpha1",
            "kind": "CheckpointBudgetList",
            "metadata": {"resourceVersion": version},
            "items": items,
        }))
        .into_response()
    }

    async fn patch_status(
        State(fake): State<Shared>,
        Path((_ns, name)): Path<(String, String)>,
        RawQuery(query): RawQuery,
        headers: axum::http::HeaderMap,
        body: Bytes,
    ) -> Json<Value> {
        // Server-side apply: the content type says so; the body is JSON (valid YAML).
        assert_eq!(
            headers.get("content-type").and_then(|v| v.to_str().ok()),
            Some("application/apply-patch+yaml")
        );
        let body: Value = serde_json::from_slice(&body).unwrap();
        *fake.authorization.lock().unwrap() = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        fake.patches
            .lock()
            .unwrap()
            .push((query.unwrap_or_default(), body.clone()));
        let mut object = fake.object.lock().unwrap();
        if object["metadata"]["name"] == name.as_str() {
            object["status"] = body["status"].clone();
            fake.bump(&mut object);
            return Json(object.clone());
        }
        drop(object);
        let mut others = fake.others.lock().unwrap();
        let other = others
            .iter_mut()
            .find(|o| o["metadata"]["name"] == name.as_str())
            .unwrap_or_else(|| panic!("status patch for an unknown budget {name}"));
        other["status"] = body["status"].clone();
        fake.bump(other);
        Json(other.clone())
    }

    async fn event(State(fake): State<Shared>, Json(body): Json<Value>) -> Json<Value> {
        fake.events.lock().unwrap().push(body.clone());
        Json(body)
    }

    /// Serves `object` on 127.0.0.1:0; the server lives as long as the test's runtime.
    pub async fn serve(object: Value) -> (SocketAddr, Shared) {
        serve_more(object, Vec::new()).await
    }

    /// Serves `object` and `others`.
    pub async fn serve_more(object: Value, others: Vec<Value>) -> (SocketAddr, Shared) {
        let (changes, _) = broadcast::channel(64);
        let (drops, _) = broadcast::channel(4);
        let fake = Arc::new(Fake {
            object: Mutex::new(object),
            others: Mutex::new(others),
            version: Mutex::new(1),
            patches: Mutex::default(),
            authorization: Mutex::default(),
            events: Mutex::default(),
            changes,
            drops,
            expire_next_watch: AtomicBool::new(false),
            lists: AtomicUsize::new(0),
            watches: AtomicUsize::new(0),
        });
        let app = Router::new()
            .route(
                "/apis/checkpoint-autoscaler.dev/v1alpha1/checkpointbudgets",
                get(list),
            )
            .route(
                "/apis/checkpoint-autoscaler.dev/v1alpha1/namespaces/{ns}/checkpointbudgets/{name}/status",
                patch(patch_status),
            )
            .route("/apis/events.k8s.io/v1/namespaces/{ns}/events", post(event))
            .with_state(fake.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        (addr, fake)
    }
}

/// The real `Controller` wiring over a fake API server: a budget is reconciled once when
/// it appears; the controller's own status write does not trigger another reconcile (the
/// generation predicate); a spec change does. The emulator's clock is frozen, so every
/// reconcile sees the same minute.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_controller_reconciles_on_spec_changes_not_on_its_own_status_writes() {
    use std::time::Duration;

    let (emu, _, budget) = step_up_listed(15, "4a1c0b5e-e2e").await;
    let (addr, fake) = fake_apiserver::serve(serde_json::to_value(&budget).unwrap()).await;

    // Long enough that only watch events can trigger a reconcile in this test.
    let ctx = context_over(addr, &emu, Duration::from_secs(3600)).await;
    let metrics = ctx.metrics.clone();
    let controller = Running::start(ctx);

    let patches = |fake: &fake_apiserver::Fake| fake.patches.lock().unwrap().len();
    let wait_for = |n: usize| {
        let fake = fake.clone();
        async move {
            for _ in 0..200 {
                if patches(&fake) >= n {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            panic!("expected {n} status patches, saw {}", patches(&fake));
        }
    };
    wait_for(1).await;
    // The status write came back as a MODIFIED event; it must not cause a reconcile.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(patches(&fake), 1, "a status write triggered a reconcile");
    {
        let seen = fake.patches.lock().unwrap();
        let (query, body) = &seen[0];
        assert!(
            query.contains("fieldManager=checkpoint-autoscaler") && query.contains("force=true"),
            "{query}"
        );
        assert_eq!(body["status"]["observedGeneration"], 1);
        assert_eq!(body["status"]["conditions"][0]["type"], "Ready");
        assert_eq!(body["status"]["conditions"][0]["status"], "True");
        assert_eq!(body["status"]["application"]["parallelism"], 4);
    }

    // A spec change is reconciled.
    let mut spec = serde_json::to_value(&budget.spec).unwrap();
    spec["mode"] = serde_json::json!("Paused");
    fake.set_spec(spec);
    wait_for(2).await;
    {
        let seen = fake.patches.lock().unwrap();
        let (_, body) = &seen[1];
        assert_eq!(body["status"]["observedGeneration"], 2);
        let scaling = body["status"]["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["type"] == "Scaling")
            .cloned()
            .unwrap();
        assert_eq!(scaling["reason"], "Paused");
    }
    assert!(
        metrics
            .encode()
            .unwrap()
            .contains("checkpoint_autoscaler_reconciles_total 2"),
        "{}",
        metrics.encode().unwrap()
    );
    controller.stop().await;
    let _ = emu.shutdown().await;
}

/// A watch that drops and resumes: the API server ends the watch stream, then answers the
/// next watch with `410 Gone`. The controller watches again, lists again, keeps
/// reconciling spec changes, does not crash, and never repeats the UpdateApplication it
/// already made (the re-listed budget has the same generation; a later spec change finds
/// the operation recorded in status and follows it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_and_expired_watch_is_resumed_without_repeating_an_update() {
    use std::{sync::atomic::Ordering, time::Duration};

    use checkpoint_autoscaler::emulator::calllog::CallFilter;

    // Past the load step: the first reconcile scales up; the frozen clock keeps the
    // operation in flight for the rest of the test.
    let (emu, _, mut budget) = step_up_listed(45, "7d2e9c1a-watch").await;
    let state = emu.state().clone();
    budget.spec.mode = checkpoint_autoscaler::crd::Mode::Enforce;
    let (addr, fake) = fake_apiserver::serve(serde_json::to_value(&budget).unwrap()).await;

    // Only watch events trigger a reconcile in this test.
    let ctx = context_over(addr, &emu, Duration::from_secs(3600)).await;
    let controller = Running::start(ctx);

    let updates = || {
        state
            .call_summary(&CallFilter {
                operation: Some("UpdateApplication".into()),
                ..CallFilter::default()
            })
            .total
    };
    async fn until(what: &str, done: impl Fn() -> bool) {
        for _ in 0..200 {
            if done() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("timed out waiting for {what}");
    }
    let patches = || fake.patches.lock().unwrap().len();

    // The first reconcile: the intent, then the update, then the outcome in status.
    until("the scaling", || patches() >= 2).await;
    assert_eq!(updates(), 1);
    assert!(fake.object.lock().unwrap()["status"]["operationInFlight"]["operationId"].is_string());

    // The watch ends: the controller watches again (from where it was, no list).
    let (lists, watches) = (
        fake.lists.load(Ordering::SeqCst),
        fake.watches.load(Ordering::SeqCst),
    );
    fake.drop_watches();
    until("a new watch", || fake.watches.load(Ordering::SeqCst) > watches).await;

    // The watch expires (410 Gone): the controller lists again, then watches.
    let watches = fake.watches.load(Ordering::SeqCst);
    fake.expire_watches();
    until("a new list", || fake.lists.load(Ordering::SeqCst) > lists).await;
    // The watch answered 410, then the one after the list.
    until("a watch after the list", || {
        fake.watches.load(Ordering::SeqCst) >= watches + 2
    })
    .await;
    // The re-listed budget has the same generation: not reconciled again.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before_change = patches();
    assert_eq!(before_change, 2, "a re-list reconciled an unchanged budget");

    // Still reconciling: a spec change over the resumed watch is acted on, and the
    // operation in flight is followed, not requested again.
    let mut spec = serde_json::to_value(&budget.spec).unwrap();
    spec["behavior"]["scaleUp"]["cooldown"] = serde_json::json!("6m");
    fake.set_spec(spec);
    until("the reconcile of the spec change", || patches() > before_change).await;
    {
        let seen = fake.patches.lock().unwrap();
        let (_, body) = seen.last().unwrap();
        assert_eq!(body["status"]["observedGeneration"], 2);
        assert!(body["status"]["operationInFlight"]["operationId"].is_string());
    }
    assert_eq!(updates(), 1, "no second UpdateApplication for the same decision");
    assert!(!controller.is_finished(), "the controller stopped");

    controller.stop().await;
    let _ = emu.shutdown().await;
}

/// The controller's context over the fake API server at `addr` and the emulator, with the
/// emulator's clock; `interval` paces the periodic requeue (and the follow-up polls).
pub(crate) async fn context_over(
    addr: std::net::SocketAddr,
    emu: &checkpoint_autoscaler::emulator::Emulator,
    interval: std::time::Duration,
) -> std::sync::Arc<checkpoint_autoscaler::controller::Context> {
    checkpoint_autoscaler::controller::install_crypto_provider();
    let client =
        kube::Client::try_from(kube::Config::new(format!("http://{addr}").parse().unwrap())).unwrap();
    let recorder = kube::runtime::events::Recorder::new(client.clone(), "checkpoint-autoscaler".into());
    context(client, recorder, emu, interval, interval).await
}

/// The controller's context over `client` and the emulator (the rig's reconcile core, its
/// CloudWatch read without batching), with the emulator's clock.
async fn context(
    client: kube::Client,
    recorder: kube::runtime::events::Recorder,
    emu: &checkpoint_autoscaler::emulator::Emulator,
    interval: std::time::Duration,
    in_flight_poll: std::time::Duration,
) -> std::sync::Arc<checkpoint_autoscaler::controller::Context> {
    use std::sync::Arc;

    use checkpoint_autoscaler::{
        aws::{AwsSettings, MetricsMode},
        controller::{Context, reconcile::Reconciler},
    };
    use checkpoint_autoscaler_testkit::rig::{self, Keys};

    let clients = rig::clients(
        &Keys::TEST,
        "us-east-1",
        emu.endpoint_url(),
        AwsSettings::default(),
    )
    .await;
    // `run_controller` replaces the core's claims with its watch cache.
    let core = Reconciler {
        interval,
        in_flight_poll,
        ..rig::reconciler(clients, MetricsMode::Direct)
    };
    let clock = emu.state().clone();
    Arc::new(Context {
        client,
        recorder,
        metrics: core.metrics.clone(),
        core,
        backoff: Arc::default(),
        clock: Arc::new(move || clock.virtual_now()),
        unreadable: Arc::default(),
    })
}

/// Two budgets on one application through the real `Controller` wiring: the older one
/// scales it, the younger reports `Conflict` naming it and makes no UpdateApplication;
/// once the owner is deleted, the younger takes over at its next periodic requeue.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn of_two_budgets_on_one_application_the_older_acts_and_the_younger_takes_over_after_it() {
    use std::time::Duration;

    use checkpoint_autoscaler::emulator::calllog::CallFilter;

    let (emu, _, listed) = step_up_listed(45, "").await;
    let state = emu.state().clone();

    let budget = |name: &str, created: &str, uid: &str| {
        let mut b = listed.clone();
        b.spec.mode = checkpoint_autoscaler::crd::Mode::Enforce;
        b.metadata.name = Some(name.into());
        b.metadata.uid = Some(uid.into());
        b.metadata.creation_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            created.parse().unwrap(),
        ));
        serde_json::to_value(&b).unwrap()
    };
    // The younger is listed first, so it is not merely first come, first served.
    let (addr, fake) = fake_apiserver::serve_more(
        budget("orders-new", "2026-02-01T00:00:00Z", "uid-new"),
        vec![budget("orders-old", "2026-01-01T00:00:00Z", "uid-old")],
    )
    .await;
    let ctx = context_over(addr, &emu, Duration::from_millis(300)).await;
    let controller = Running::start(ctx);

    let updates = || {
        state
            .call_summary(&CallFilter {
                operation: Some("UpdateApplication".into()),
                ..CallFilter::default()
            })
            .total
    };
    let ready = |name: &str| {
        let status = fake.status_of(name);
        let ready = status["conditions"]
            .as_array()
            .and_then(|c| c.iter().find(|c| c["type"] == "Ready").cloned());
        ready.map(|c| {
            (
                c["reason"].as_str().unwrap_or_default().to_owned(),
                c["message"].as_str().unwrap_or_default().to_owned(),
            )
        })
    };
    async fn until(what: &str, done: impl Fn() -> bool) {
        for _ in 0..200 {
            if done() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("timed out waiting for {what}");
    }

    until("the older budget's scaling", || {
        fake.status_of("orders-old")["operationInFlight"]["operationId"].is_string()
    })
    .await;
    until("the younger budget's Conflict", || {
        ready("orders-new").is_some_and(|(reason, _)| reason == "Conflict")
    })
    .await;
    let (_, message) = ready("orders-new").unwrap();
    assert!(message.contains("default/orders-old"), "{message}");
    // A few requeues of the younger later: still one update, still in conflict.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(updates(), 1);
    assert_eq!(ready("orders-new").unwrap().0, "Conflict");
    let conflict_events = fake
        .events
        .lock()
        .unwrap()
        .iter()
        .filter(|e| e["reason"] == "Conflict")
        .count();
    assert_eq!(conflict_events, 1, "one Event, not one per requeue");

    // The owner goes: the younger takes over within an interval or so.
    fake.delete("orders-old");
    until("the takeover", || {
        ready("orders-new").is_some_and(|(reason, _)| reason == "ApplicationObserved")
    })
    .await;
    // The application is still UPDATING with the old owner's operation: not updated again.
    assert_eq!(updates(), 1);
    assert!(!controller.is_finished());

    controller.stop().await;
    let _ = emu.shutdown().await;
}
