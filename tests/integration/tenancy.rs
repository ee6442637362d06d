//! Tenancy and security end to end: the reconcile core with the real SDK clients against
//! the emulator, with recognisable static credentials, through every error path; the
//! controller's JSON log lines (captured at `trace`, the SDK's own included), its Events and
//! its status must never carry the secret key or the session token.

use std::{
    io::Write,
    path::PathBuf,
    sync::{Arc, Mutex},
    time::Duration,
};

use aws_config::{BehaviorVersion, Region};
use aws_credential_types::Credentials;
use checkpoint_autoscaler::{
    aws::{AwsClients, AwsSettings, KinesisControl, MetricsMode, metrics_source},
    controller::{
        Context,
        ownership::NoOtherClaims,
        reconcile::{BudgetView, Core},
        store::{BudgetKey, MemoryStore},
        tenancy::{AllowList, NAMESPACE_TAG, TagTenancy},
    },
    crd::CheckpointBudget,
    demo,
    emulator::{
        self, Emulator, EmulatorConfig, Service,
        faults::{FaultKind, FaultSpec},
    },
    metrics::Metrics,
    sim::Scenario,
    telemetry::{self, LogFormat},
};
use tracing_subscriber::{EnvFilter, fmt::MakeWriter};

const ACCESS_KEY: &str = "AKIATENANCYLEAKTEST7";
const SECRET: &str = "tenancySecretKey/DoNotLog+0123456789abcdefGHIJ";
const TOKEN: &str = "tenancySessionToken/DoNotLog+IQoJb3JpZ2luX2VjEXAMPLEtoken";
const NAMESPACE: &str = "streaming";
const ROLE: &str = "arn:aws:iam::111122223333:role/flink-scaler";

/// Log lines written by the subscriber under test.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

struct CaptureWriter(Arc<Mutex<Vec<u8>>>);

impl Write for CaptureWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'w> MakeWriter<'w> for Capture {
    type Writer = CaptureWriter;

    fn make_writer(&'w self) -> Self::Writer {
        CaptureWriter(self.0.clone())
    }
}

impl Capture {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

fn step_up() -> Scenario {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples/scenarios/step-up.yaml");
    Scenario::load(&path).unwrap()
}

fn fault(kind: FaultKind, service: Service, operation: &str, count: u32) -> FaultSpec {
    FaultSpec {
        kind,
        service: Some(service),
        operation: Some(operation.into()),
        application: None,
        count: Some(count),
    }
}

async fn clients(endpoint: String) -> Arc<AwsClients> {
    let base = aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new(
            ACCESS_KEY,
            SECRET,
            Some(TOKEN.into()),
            None,
            "static",
        ))
        .load()
        .await;
    Arc::new(AwsClients::from_sdk_config(
        base,
        AwsSettings {
            endpoint_url: Some(endpoint),
            max_attempts: 2,
            initial_backoff: Duration::from_millis(1),
            // Generous: every fault here answers at once, and a loaded machine must not
            // turn a throttling error into a timeout.
            attempt_timeout: Duration::from_secs(20),
            operation_timeout: Duration::from_secs(40),
            ..AwsSettings::default()
        },
    ))
}

fn core(clients: Arc<AwsClients>) -> Core {
    let roles: AllowList = serde_yaml::from_str(&format!(
        "namespaces: {{{NAMESPACE}: {{roleArns: [\"{ROLE}\"]}}}}"
    ))
    .unwrap();
    Core {
        apps: Arc::new(KinesisControl::new(clients.clone())),
        metrics_source: metrics_source(clients, MetricsMode::Direct),
        tenancy: Arc::new(TagTenancy::with_roles(roles)),
        claims: Arc::new(NoOtherClaims),
        default_region: "us-east-1".into(),
        metrics: Metrics::default(),
        period: Duration::from_secs(60),
        interval: Duration::from_secs(60),
        in_flight_poll: Duration::from_secs(30),
        kpu_hour_price: None,
        fence: std::sync::Arc::new(checkpoint_autoscaler::controller::fence::AlwaysHeld),
    }
}

/// Everything one reconcile left for people to read: the status and Events as JSON, and
/// the error as the controller's error policy logs it.
async fn reconcile(
    ctx: &Context,
    budget: &CheckpointBudget,
    now: jiff::Timestamp,
    shown: &mut Vec<String>,
) -> Option<String> {
    let store = MemoryStore::default();
    let key = BudgetKey::new(NAMESPACE, budget.metadata.name.clone().unwrap());
    let view = BudgetView {
        key: key.clone(),
        generation: Some(1),
        spec: &budget.spec,
        status: None,
    };
    let result = ctx.core.reconcile(&view, &store, now).await;
    if let Some(status) = store.status(&key) {
        shown.push(serde_json::to_string(&status).unwrap());
    }
    for (_, notice) in store.events() {
        shown.push(format!("{} {} {}", notice.reason, notice.action, notice.note));
    }
    match result {
        Ok(_) => None,
        Err(e) => {
            // The controller's error policy logs it (the `reconcile failed` line).
            let _ = ctx.on_error(budget, &e);
            shown.push(format!("{e} / {e:?}"));
            Some(e.to_string())
        }
    }
}

/// Set in the child process that runs one log-capturing test alone.
const ALONE: &str = "CHECKPOINT_AUTOSCALER_TEST_ALONE";

/// Runs the log-capturing test `name` (of this module) in a child process of this test
/// binary, alone, and says whether the caller is that child (and so should run the body).
///
/// NB: the capture is a thread-scoped subscriber, but tracing's per-callsite interest and
/// its global maximum level are caches shared by every test of the binary: a callsite first
/// reached on another test's thread, while other subscribers come and go, can miss this
/// one, and the capture then lacks lines (a rare failure seen with `faults::` running
/// alongside). Alone in its process, the capture sees every line.
fn run_alone(name: &str) -> bool {
    if std::env::var_os(ALONE).is_some() {
        return true;
    }
    let module = module_path!().split_once("::").map_or("", |(_, m)| m);
    let test = format!("{module}::{name}");
    let output = std::process::Command::new(std::env::current_exe().unwrap())
        .args([test.as_str(), "--exact", "--test-threads=1"])
        .env(ALONE, "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && stdout.contains("1 passed"),
        "{test} failed in its own process:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    false
}

#[tokio::test]
async fn no_secret_or_session_token_reaches_logs_events_or_status() {
    if !run_alone("no_secret_or_session_token_reaches_logs_events_or_status") {
        return;
    }
    checkpoint_autoscaler::controller::install_crypto_provider();
    let capture = Capture::default();
    let _guard = tracing::subscriber::set_default(telemetry::subscriber(
        LogFormat::Json,
        EnvFilter::new("trace"),
        capture.clone(),
    ));

    let scenario = step_up();
    let emu: Emulator = emulator::serve(EmulatorConfig {
        period: None,
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
        .with_fleet(|f| f.tag_resource(&view.arn, vec![(NAMESPACE_TAG.into(), NAMESPACE.into())]))
        .unwrap();
    // Past the load step: the budget is breached and Enforce mode asks for a scale-up.
    state.advance(Duration::from_secs(45 * 60));
    let now = state.virtual_now();

    let clients = clients(emu.endpoint_url()).await;
    let kube = kube::Client::try_from(kube::Config::new("http://127.0.0.1:9".parse().unwrap())).unwrap();
    let ctx = Context {
        client: kube.clone(),
        recorder: kube::runtime::events::Recorder::new(kube, "checkpoint-autoscaler".into()),
        core: core(clients.clone()),
        metrics: Metrics::default(),
        backoff: Arc::default(),
        clock: Arc::new(move || now),
    };
    let mut budget = demo::load_budget(None, &scenario).unwrap();
    budget.metadata.namespace = Some(NAMESPACE.into());
    budget.spec.mode = checkpoint_autoscaler::crd::Mode::Enforce;
    let mut shown = Vec::new();
    let mut errors = Vec::new();

    // AccessDenied, throttling (beyond the SDK's retries) and 5xx on each kind of call.
    let k = Service::KinesisAnalytics;
    let cw = Service::CloudWatch;
    for spec in [
        fault(FaultKind::AccessDenied, k, "DescribeApplication", 5),
        fault(FaultKind::AccessDenied, k, "ListTagsForResource", 5),
        fault(FaultKind::Throttling, cw, "GetMetricData", 5),
        fault(
            FaultKind::ServerError { status: 503 },
            k,
            "DescribeApplication",
            5,
        ),
        fault(FaultKind::AccessDenied, cw, "GetMetricData", 5),
        fault(FaultKind::AccessDenied, k, "UpdateApplication", 5),
    ] {
        state.clear_faults();
        state.arm_fault(spec.clone()).unwrap();
        let failed = reconcile(&ctx, &budget, now, &mut shown).await;
        // UpdateApplication's refusal is recorded as a failed scaling, not an error.
        let recorded = spec.operation.as_deref() == Some("UpdateApplication");
        assert!(
            failed.is_some() || recorded,
            "{spec:?} should have failed the reconcile"
        );
        errors.extend(failed);
    }
    state.clear_faults();

    // STS: the allowed role is assumed through the emulator, which has no STS.
    let mut with_role = budget.clone();
    with_role.spec.application.role_arn = Some(ROLE.into());
    errors.extend(reconcile(&ctx, &with_role, now, &mut shown).await);
    // A role the namespace may not use: forbidden before any call.
    with_role.spec.application.role_arn = Some("arn:aws:iam::999999999999:role/other".into());
    errors.extend(reconcile(&ctx, &with_role, now, &mut shown).await);

    // The SDK's dispatch failures (connection refused: nothing listens on port 9).
    let unreachable = Context {
        core: core(self::clients("http://127.0.0.1:9".into()).await),
        ..ctx.clone()
    };
    errors.extend(reconcile(&unreachable, &budget, now, &mut shown).await);

    // And one that succeeds (and scales), for the ordinary log lines.
    assert_eq!(reconcile(&ctx, &budget, now, &mut shown).await, None);
    let _ = emu.shutdown().await;

    // The Debug forms of what a careless log line might print.
    shown.push(format!("{clients:?}"));
    shown.push(format!("{:?}", clients.target(Some("us-east-1"), Some(ROLE))));

    let joined = errors.join("\n");
    for expected in [
        "access denied",
        "throttled",
        "AWS unavailable",
        "credentials unavailable",
        "forbidden",
    ] {
        assert!(
            joined.contains(expected),
            "no {expected:?} error among:\n{joined}"
        );
    }
    let logs = capture.text();
    assert!(
        logs.lines().count() > 50,
        "the subscriber captured too little:\n{logs}"
    );
    for line in logs.lines() {
        let json: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not a JSON log line ({e}): {line}"));
        assert!(json.get("level").is_some(), "{line}");
    }
    assert!(logs.contains("reconcile failed"), "the error policy logged");
    assert!(
        logs.contains(ACCESS_KEY),
        "the SDK's trace output names the access key id (not a secret), so it was captured"
    );
    for (what, text) in [("logs", &logs), ("events, status and errors", &shown.join("\n"))] {
        for secret in [SECRET, TOKEN] {
            if let Some(at) = text.find(secret) {
                let from = text[..at].rfind('\n').map_or(0, |i| i + 1);
                let to = text[at..].find('\n').map_or(text.len(), |i| at + i);
                panic!("{what} carry a credential: {}", &text[from..to]);
            }
        }
    }
}

/// A role the namespace may not use never reaches the network: no STS `AssumeRole`, no
/// `DescribeApplication`. The SDK clients point at a listener that counts connections; an
/// allowed role, for contrast, does connect (to assume the role).
#[tokio::test]
async fn a_forbidden_role_makes_no_connection_at_all() {
    use std::sync::atomic::{AtomicUsize, Ordering};

    checkpoint_autoscaler::controller::install_crypto_provider();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let connections = Arc::new(AtomicUsize::new(0));
    let counter = connections.clone();
    let server = tokio::spawn(async move {
        // Accept and hang up: every call fails, which is all this test needs.
        while let Ok((socket, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            drop(socket);
        }
    });
    let core = core(clients(format!("http://{addr}")).await);
    let scenario = step_up();
    let mut budget = demo::load_budget(None, &scenario).unwrap();
    fn view(budget: &CheckpointBudget) -> BudgetView<'_> {
        BudgetView {
            key: BudgetKey::new(NAMESPACE, "orders"),
            generation: Some(1),
            spec: &budget.spec,
            status: None,
        }
    }
    let now = scenario.start_time();

    budget.spec.application.role_arn = Some("arn:aws:iam::999999999999:role/not-allowed".into());
    let store = MemoryStore::default();
    let err = core.reconcile(&view(&budget), &store, now).await.unwrap_err();
    assert!(err.to_string().contains("forbidden"), "{err}");
    let status = store.status(&BudgetKey::new(NAMESPACE, "orders")).unwrap();
    assert_eq!(status.condition("Ready").unwrap().reason, "Forbidden");
    assert_eq!(store.events().len(), 1);
    assert_eq!(
        connections.load(Ordering::SeqCst),
        0,
        "a forbidden role reached the network"
    );

    budget.spec.application.role_arn = Some(ROLE.into());
    let err = core
        .reconcile(&view(&budget), &MemoryStore::default(), now)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("credentials unavailable"), "{err}");
    assert!(
        connections.load(Ordering::SeqCst) > 0,
        "the allowed role was assumed"
    );
    server.abort();
}

/// The Kubernetes side: the controller's service-account token is sent to the API server
/// and never written to the logs (captured at `trace`, kube's and hyper's included), the
/// Events or the status.
#[tokio::test]
async fn the_kubernetes_token_never_reaches_the_logs() {
    if !run_alone("the_kubernetes_token_never_reaches_the_logs") {
        return;
    }
    use checkpoint_autoscaler::controller::run_controller;
    use kube::{Api, runtime::events::Recorder};

    const K8S_TOKEN: &str = "eyJhbGciOiJSUzI1NiJ9.tenancyServiceAccountToken.DoNotLog";

    checkpoint_autoscaler::controller::install_crypto_provider();
    let capture = Capture::default();
    let _guard = tracing::subscriber::set_default(telemetry::subscriber(
        LogFormat::Json,
        EnvFilter::new("trace"),
        capture.clone(),
    ));

    let scenario = step_up();
    let emu = emulator::serve(EmulatorConfig {
        period: None,
        seed: scenario.seed,
        start: Some(scenario.start_time()),
        region: "us-east-1".into(),
        ..EmulatorConfig::default()
    })
    .await
    .unwrap();
    let view = emu.state().add_scenario(&scenario, None).unwrap();
    emu.state()
        .with_fleet(|f| f.tag_resource(&view.arn, vec![(NAMESPACE_TAG.into(), "default".into())]))
        .unwrap();
    emu.state().advance(Duration::from_secs(15 * 60));
    let mut budget = demo::load_budget(None, &scenario).unwrap();
    budget.metadata.generation = Some(1);
    budget.metadata.uid = Some("5e1f-token".into());
    budget.metadata.resource_version = Some("1".into());
    let (addr, fake) = crate::controller::fake_apiserver::serve(serde_json::to_value(&budget).unwrap()).await;

    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, K8S_TOKEN).unwrap();
    let mut config = kube::Config::new(format!("http://{addr}").parse().unwrap());
    config.auth_info.token_file = Some(token_file.display().to_string());
    let client = kube::Client::try_from(config).unwrap();
    let base = crate::controller::context_over(addr, &emu, Duration::from_secs(3600)).await;
    let ctx = Arc::new(Context {
        client: client.clone(),
        recorder: Recorder::new(client.clone(), "checkpoint-autoscaler".into()),
        ..Context::clone(&base)
    });
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let controller = tokio::spawn(run_controller(Api::all(client), ctx, async move {
        let _ = stop_rx.await;
    }));
    for _ in 0..200 {
        if !fake.patches.lock().unwrap().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = stop_tx.send(());
    let _ = tokio::time::timeout(Duration::from_secs(5), controller).await;
    let _ = emu.shutdown().await;

    assert_eq!(
        fake.authorization.lock().unwrap().as_deref(),
        Some(format!("Bearer {K8S_TOKEN}").as_str()),
        "the token was in use"
    );
    let logs = capture.text();
    assert!(
        logs.contains("checkpointbudgets"),
        "kube's requests were logged:\n{logs}"
    );
    let shown = format!(
        "{}\n{}",
        serde_json::to_string(&*fake.patches.lock().unwrap()).unwrap(),
        serde_json::to_string(&*fake.events.lock().unwrap()).unwrap()
    );
    for (what, text) in [("logs", &logs), ("status and Events", &shown)] {
        assert!(
            !text.contains(K8S_TOKEN),
            "{what} carry the service-account token"
        );
        assert!(
            !text.contains("tenancyServiceAccountToken"),
            "{what} carry part of the token"
        );
    }
}
