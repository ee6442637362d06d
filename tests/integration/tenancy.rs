//! Tenancy and security end to end: the reconcile core with the real SDK clients against
//! the emulator, with recognisable static credentials, through every error path; the
//! controller's JSON log lines (captured at `trace`, the SDK's own included), its Events and
//! its status must never carry the secret key or the session token.

use std::{
    borrow::Cow,
    io::Write,
    path::PathBuf,
    sync::{Arc, Mutex},
    time::Duration,
};

use checkpoint_autoscaler::{
    aws::{ApplicationControl, AwsClients, AwsSettings, KinesisControl, MetricsMode, Target},
    controller::{
        Context,
        reconcile::{BudgetView, Effect, Reconciler},
        store::{BudgetKey, MemoryStore},
        tenancy::{AllowList, TagTenancy, TenancyCheck},
    },
    crd::CheckpointBudget,
    demo,
    emulator::{
        self, Emulator, Service,
        faults::{FaultKind, FaultSpec},
    },
    metrics::Metrics,
    sim::Scenario,
    telemetry::{self, LogFormat},
};
use checkpoint_autoscaler_testkit::rig::{self, Keys};
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

/// The recognisable keys, with a session token, as temporary credentials carry.
const KEYS: Keys = Keys {
    access_key_id: Cow::Borrowed(ACCESS_KEY),
    secret_access_key: Cow::Borrowed(SECRET),
    session_token: Some(Cow::Borrowed(TOKEN)),
};

async fn clients(endpoint: String) -> Arc<AwsClients> {
    let settings = AwsSettings {
        max_attempts: 2,
        initial_backoff: Duration::from_millis(1),
        // Generous: every fault here answers at once, and a loaded machine must not
        // turn a throttling error into a timeout.
        attempt_timeout: Duration::from_secs(20),
        operation_timeout: Duration::from_secs(40),
        ..AwsSettings::default()
    };
    rig::clients(&KEYS, "us-east-1", endpoint, settings).await
}

fn core(clients: Arc<AwsClients>) -> Reconciler {
    let roles: AllowList = serde_yaml::from_str(&format!(
        "namespaces: {{{NAMESPACE}: {{roleArns: [\"{ROLE}\"]}}}}"
    ))
    .unwrap();
    Reconciler {
        tenancy: Arc::new(TagTenancy::with_roles(roles)),
        ..rig::reconciler(clients, MetricsMode::Direct)
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
        resource_version: None,
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
    let (emu, _) = rig::serve_scenario(&scenario, "us-east-1", NAMESPACE)
        .await
        .unwrap();
    let state = emu.state().clone();
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
        unreadable: Arc::default(),
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
            resource_version: None,
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
    use kube::runtime::events::Recorder;

    const K8S_TOKEN: &str = "eyJhbGciOiJSUzI1NiJ9.tenancyServiceAccountToken.DoNotLog";

    checkpoint_autoscaler::controller::install_crypto_provider();
    let capture = Capture::default();
    let _guard = tracing::subscriber::set_default(telemetry::subscriber(
        LogFormat::Json,
        EnvFilter::new("trace"),
        capture.clone(),
    ));

    let (emu, _, budget) = crate::controller::step_up_listed(15, "5e1f-token").await;
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
    let controller = crate::controller::Running::start(ctx);
    for _ in 0..200 {
        if !fake.patches.lock().unwrap().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    controller.stop().await;
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

/// The emulator's account (it has no STS: `--aws-account-id` gives it to the controller).
const EMULATED_ACCOUNT: &str = checkpoint_autoscaler::sim::fleet::ACCOUNT_ID;

/// An emulator with the step-up scenario's application, past its load step (a budget in
/// Enforce mode asks for a scale-up), tagged for `tag_for`.
async fn breached(tag_for: &str) -> (Emulator, String, jiff::Timestamp) {
    let scenario = step_up();
    let (emu, view) = rig::serve_scenario(&scenario, "us-east-1", tag_for)
        .await
        .unwrap();
    emu.state().advance(Duration::from_secs(45 * 60));
    let now = emu.state().virtual_now();
    (emu, view.name, now)
}

/// The real SDK clients against `emu`, told their own account (as `--aws-account-id`).
async fn clients_in(emu: &Emulator, account: &str) -> Arc<AwsClients> {
    let keys = Keys {
        session_token: None,
        ..KEYS
    };
    let settings = AwsSettings {
        max_attempts: 1,
        attempt_timeout: Duration::from_secs(20),
        operation_timeout: Duration::from_secs(40),
        account_id: Some(account.into()),
        ..AwsSettings::default()
    };
    rig::clients(&keys, "us-east-1", emu.endpoint_url(), settings).await
}

fn core_with(clients: Arc<AwsClients>, tenancy: Arc<dyn TenancyCheck>) -> Reconciler {
    Reconciler {
        tenancy,
        ..core(clients)
    }
}

fn allow(patterns: &[String]) -> Arc<dyn TenancyCheck> {
    let text = format!("namespaces:\n  {NAMESPACE}:\n    applications: {patterns:?}\n");
    Arc::new(serde_yaml::from_str::<AllowList>(&text).unwrap())
}

/// Reconciles `budget` (in [`NAMESPACE`]) once; the outcome and the messages shown.
async fn reconcile_once(
    core: &Reconciler,
    budget: &CheckpointBudget,
    now: jiff::Timestamp,
) -> (Result<Effect, String>, String) {
    let store = MemoryStore::default();
    let key = BudgetKey::new(NAMESPACE, budget.metadata.name.clone().unwrap());
    let view = BudgetView {
        key: key.clone(),
        generation: Some(1),
        spec: &budget.spec,
        status: None,
        resource_version: None,
    };
    let result = core.reconcile(&view, &store, now).await;
    let mut shown = Vec::new();
    if let Some(status) = store.status(&key) {
        shown.extend(
            status
                .conditions
                .iter()
                .map(|c| format!("{} {}: {}", c.type_, c.reason, c.message)),
        );
    }
    shown.extend(
        store
            .events()
            .into_iter()
            .map(|(_, n)| format!("{} {}", n.reason, n.note)),
    );
    (
        result.map(|r| r.effect).map_err(|e| e.to_string()),
        shown.join("\n"),
    )
}

/// The calls the emulator received about the application.
fn calls(emu: &Emulator, application: &str) -> Vec<String> {
    emu.state()
        .calls(&emulator::calllog::CallFilter {
            application: Some(application.into()),
            ..Default::default()
        })
        .into_iter()
        .map(|c| c.operation)
        .collect()
}

/// An allow-list entry for the application's name in another region, or in another account,
/// does not reach it: the budget is refused before any call about the application (no
/// DescribeApplication, no metrics, no UpdateApplication). The entry that names its region
/// and account does, and the controller scales it.
#[tokio::test]
async fn an_allowed_name_in_another_region_or_account_reaches_nothing() {
    checkpoint_autoscaler::controller::install_crypto_provider();
    let (emu, app, now) = breached(NAMESPACE).await;
    let clients = clients_in(&emu, EMULATED_ACCOUNT).await;
    let mut budget = demo::load_budget(None, &step_up()).unwrap();
    budget.metadata.namespace = Some(NAMESPACE.into());
    budget.spec.mode = checkpoint_autoscaler::crd::Mode::Enforce;

    for (elsewhere, expected) in [
        (
            format!("arn:aws:kinesisanalytics:eu-west-1:{EMULATED_ACCOUNT}:application/{app}"),
            format!("arn:aws:kinesisanalytics:us-east-1:{EMULATED_ACCOUNT}:application/{app}"),
        ),
        (
            format!("arn:aws:kinesisanalytics:us-east-1:111122223333:application/{app}"),
            format!("arn:aws:kinesisanalytics:us-east-1:{EMULATED_ACCOUNT}:application/{app}"),
        ),
        (
            format!("arn:aws-cn:kinesisanalytics:*:*:application/{app}"),
            format!("arn:aws:kinesisanalytics:us-east-1:{EMULATED_ACCOUNT}:application/{app}"),
        ),
    ] {
        let core = core_with(clients.clone(), allow(std::slice::from_ref(&elsewhere)));
        let (result, shown) = reconcile_once(&core, &budget, now).await;
        let err = result.expect_err(&elsewhere);
        assert!(err.starts_with("forbidden"), "{err}");
        assert!(
            shown.contains(&expected),
            "the refusal names the ARN to allow: {shown}"
        );
        assert_eq!(calls(&emu, &app), Vec::<String>::new(), "{elsewhere}");
    }

    let core = core_with(
        clients.clone(),
        allow(&[format!(
            "arn:aws:kinesisanalytics:us-east-1:{EMULATED_ACCOUNT}:application/{app}"
        )]),
    );
    let (result, shown) = reconcile_once(&core, &budget, now).await;
    assert!(matches!(result, Ok(Effect::Scaled { .. })), "{result:?}\n{shown}");
    assert!(calls(&emu, &app).contains(&"UpdateApplication".to_string()));
    let _ = emu.shutdown().await;
}

/// The controller told a wrong account of its own (`--aws-account-id`) believes an entry for
/// another account allows the budget; the ARN DescribeApplication returns says otherwise,
/// and nothing is written.
#[tokio::test]
async fn the_arn_aws_returns_decides_before_any_write() {
    checkpoint_autoscaler::controller::install_crypto_provider();
    let (emu, app, now) = breached(NAMESPACE).await;
    let clients = clients_in(&emu, "111122223333").await;
    let mut budget = demo::load_budget(None, &step_up()).unwrap();
    budget.metadata.namespace = Some(NAMESPACE.into());
    budget.spec.mode = checkpoint_autoscaler::crd::Mode::Enforce;
    let core = core_with(
        clients,
        allow(&[format!(
            "arn:aws:kinesisanalytics:us-east-1:111122223333:application/{app}"
        )]),
    );
    let (result, shown) = reconcile_once(&core, &budget, now).await;
    let err = result.unwrap_err();
    assert!(err.starts_with("forbidden"), "{err}");
    assert!(
        shown.contains(&format!(
            "arn:aws:kinesisanalytics:us-east-1:{EMULATED_ACCOUNT}:application/{app}"
        )) && shown.contains("--aws-account-id"),
        "{shown}"
    );
    assert_eq!(calls(&emu, &app), ["DescribeApplication"]);
    let _ = emu.shutdown().await;
}

/// Under the tag policy, an application deleted and created again under the same name (the
/// same ARN) by another team, tagged for its own namespace, is checked again at once, well
/// within the tag cache's five minutes: its CreateTimestamp changed. Nothing is written to
/// it, and the refusal does not say whose it is.
#[tokio::test]
async fn a_recreated_application_is_not_taken_for_the_old_one() {
    checkpoint_autoscaler::controller::install_crypto_provider();
    let (emu, app, now) = breached(NAMESPACE).await;
    let clients = clients_in(&emu, EMULATED_ACCOUNT).await;
    let control = KinesisControl::new(clients.clone());
    let target = Target::new("us-east-1");
    let first = control.describe(&target, &app).await.unwrap();
    let mut budget = demo::load_budget(None, &step_up()).unwrap();
    budget.metadata.namespace = Some(NAMESPACE.into());
    budget.spec.mode = checkpoint_autoscaler::crd::Mode::Recommend;
    // One policy object for both reconciles, as in the controller: its cache is shared.
    let core = core_with(clients.clone(), Arc::new(TagTenancy::default()));
    let (result, shown) = reconcile_once(&core, &budget, now).await;
    result.unwrap_or_else(|e| panic!("{e}\n{shown}"));

    // Another team deletes it and, a minute later, creates its own under the same name.
    emu.state().delete_application(&app).unwrap();
    emu.state().advance(Duration::from_secs(60));
    let scenario = step_up();
    rig::add_application(emu.state(), &scenario, None, "team-b-secret").unwrap();
    emu.state().advance(Duration::from_secs(45 * 60));
    let second = control.describe(&target, &app).await.unwrap();
    assert_eq!(second.arn, first.arn, "the same name, the same ARN");
    assert!(
        second.created.is_some() && second.created > first.created,
        "the emulator gives the new application a later CreateTimestamp: {:?} then {:?}",
        first.created,
        second.created
    );

    budget.spec.mode = checkpoint_autoscaler::crd::Mode::Enforce;
    emu.state().reset_calls();
    let (result, shown) = reconcile_once(&core, &budget, emu.state().virtual_now()).await;
    let err = result.unwrap_err();
    assert!(err.starts_with("forbidden"), "{err}");
    assert!(
        !shown.contains("team-b-secret") && !err.contains("team-b-secret"),
        "{shown}"
    );
    assert_eq!(
        calls(&emu, &app),
        ["DescribeApplication", "ListTagsForResource"],
        "the tag was read again at once, and nothing was written"
    );
    let _ = emu.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// The web-identity path (IRSA): the controller's real credential chain, a token file, STS

/// The IRSA web-identity token (a JWT's shape) the test writes to the token file.
const WEB_TOKEN: &str =
    "eyJhbGciOiJSUzI1NiIsImtpZCI6InRlbmFuY3kifQ.webIdentityTokenDoNotLog.c2lnbmF0dXJlRG9Ob3RMb2c";
/// What the fake STS answers AssumeRoleWithWebIdentity with.
const WEB_KEY_ID: &str = "ASIAWEBIDENTITYTEST7";
const WEB_SECRET: &str = "webIdentitySecret/DoNotLog+0123456789abcdefGHIJ";
const WEB_SESSION: &str = "webIdentitySession/DoNotLog+FwoGZXIvYXdzEXAMPLE";
/// What the fake STS answers AssumeRole with (for a budget's roleArn).
const ROLE_KEY_ID: &str = "ASIAASSUMEDROLETEST7";
const ROLE_SECRET: &str = "assumedRoleSecret/DoNotLog+0123456789abcdefGHIJ";
const ROLE_SESSION: &str = "assumedRoleSession/DoNotLog+FwoGZXIvYXdzEXAMPLE";
/// The role IRSA assumes (`AWS_ROLE_ARN`) and the one a budget names, in the emulator's
/// account.
const IRSA_ROLE: &str = "arn:aws:iam::123456789012:role/checkpoint-autoscaler";
const BUDGET_ROLE: &str = "arn:aws:iam::123456789012:role/flink-scaler";

/// One request the fake STS received.
#[derive(Clone, Debug)]
struct StsCall {
    action: String,
    authorization: String,
    body: String,
}

/// A small STS on loopback: AssumeRoleWithWebIdentity, AssumeRole and GetCallerIdentity
/// (the query protocol: a form body in, AWS's XML out).
async fn fake_sts() -> (
    std::net::SocketAddr,
    Arc<Mutex<Vec<StsCall>>>,
    tokio::task::JoinHandle<()>,
) {
    use axum::{Router, http::HeaderMap, response::IntoResponse, routing::post};

    let calls: Arc<Mutex<Vec<StsCall>>> = Arc::default();
    let seen = calls.clone();
    let handler = move |headers: HeaderMap, body: String| {
        let seen = seen.clone();
        async move {
            let field = |name: &str| {
                body.split('&')
                    .find_map(|kv| kv.strip_prefix(&format!("{name}=")))
                    .unwrap_or_default()
                    .to_owned()
            };
            let action = field("Action");
            seen.lock().unwrap().push(StsCall {
                action: action.clone(),
                authorization: headers
                    .get("authorization")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_owned(),
                body: body.clone(),
            });
            let expiration = jiff::Timestamp::now() + jiff::SignedDuration::from_hours(1);
            let credentials = |key: &str, secret: &str, session: &str| {
                format!(
                    "<Credentials><AccessKeyId>{key}</AccessKeyId><SecretAccessKey>{secret}</SecretAccessKey>\
                     <SessionToken>{session}</SessionToken><Expiration>{expiration}</Expiration></Credentials>"
                )
            };
            let user = "<AssumedRoleUser><Arn>arn:aws:sts::123456789012:assumed-role/r/s</Arn>\
                        <AssumedRoleId>AROATEST:s</AssumedRoleId></AssumedRoleUser>";
            let result = match action.as_str() {
                "AssumeRoleWithWebIdentity" => format!(
                    "{}{user}<SubjectFromWebIdentityToken>system:serviceaccount:ca:ca</SubjectFromWebIdentityToken>\
                     <Provider>oidc.eks.us-east-1.amazonaws.com</Provider><Audience>sts.amazonaws.com</Audience>",
                    credentials(WEB_KEY_ID, WEB_SECRET, WEB_SESSION)
                ),
                "AssumeRole" => format!("{}{user}", credentials(ROLE_KEY_ID, ROLE_SECRET, ROLE_SESSION)),
                "GetCallerIdentity" => "<UserId>AROATEST:s</UserId><Account>123456789012</Account>\
                                        <Arn>arn:aws:sts::123456789012:assumed-role/r/s</Arn>"
                    .to_owned(),
                _ => return (axum::http::StatusCode::BAD_REQUEST, "unknown action").into_response(),
            };
            let xml = format!(
                "<{action}Response xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\"><{action}Result>{result}</{action}Result>\
                 <ResponseMetadata><RequestId>c6104cbe-af31-11e0-8154-cbc7ccf896c7</RequestId></ResponseMetadata></{action}Response>"
            );
            ([("content-type", "text/xml")], xml).into_response()
        }
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, Router::new().route("/", post(handler))).await;
    });
    (addr, calls, server)
}

/// The whole web-identity path, as a controller on EKS with IRSA runs it: the default
/// credential chain reads the token file named by `AWS_WEB_IDENTITY_TOKEN_FILE` and calls
/// STS `AssumeRoleWithWebIdentity` (the token in the request body) for `AWS_ROLE_ARN`; the
/// controller asks STS `GetCallerIdentity` for its own account (allow-list tenancy) and
/// `AssumeRole` for a budget's role, signed with the credentials STS returned. With every
/// log line captured at `trace` (the SDK's, hyper's and kube's included), neither the token,
/// nor either secret key, nor either session token reaches the logs, the Events or the
/// status — even with the SDK's own switches for printing bodies on (`LOG_SENSITIVE_BODIES`,
/// `LOG_SIGNABLE_BODY`), which made it print STS's answer, secret key and session token
/// included, until the controller's subscriber dropped those events (`telemetry::WIRE_TARGETS`).
///
/// The parent process plays AWS (a fake STS and the emulator, on loopback); a child process
/// of this test binary is the controller, with the IRSA environment and nothing else.
#[tokio::test]
async fn no_secret_reaches_logs_on_the_web_identity_path() {
    const NAME: &str = "no_secret_reaches_logs_on_the_web_identity_path";
    if std::env::var_os(ALONE).is_none() {
        return web_identity_parent(NAME).await;
    }
    checkpoint_autoscaler::controller::install_crypto_provider();
    let capture = Capture::default();
    let _guard = tracing::subscriber::set_default(telemetry::subscriber(
        LogFormat::Json,
        EnvFilter::new("trace"),
        capture.clone(),
    ));
    let now: jiff::Timestamp = std::env::var("TENANCY_TEST_NOW").unwrap().parse().unwrap();
    let app = std::env::var("TENANCY_TEST_APP").unwrap();

    // The controller's own construction: the default chain, no endpoint or account given.
    let clients = Arc::new(
        AwsClients::from_env(AwsSettings {
            region: Some("us-east-1".into()),
            ..AwsSettings::default()
        })
        .await
        .unwrap(),
    );
    let allow: AllowList = serde_yaml::from_str(&format!(
        "namespaces:\n  {NAMESPACE}:\n    applications: [\"arn:aws:kinesisanalytics:us-east-1:{EMULATED_ACCOUNT}:application/{app}\"]\n    roleArns: [\"{BUDGET_ROLE}\"]\n"
    ))
    .unwrap();
    let kube = kube::Client::try_from(kube::Config::new("http://127.0.0.1:9".parse().unwrap())).unwrap();
    let ctx = Context {
        client: kube.clone(),
        recorder: kube::runtime::events::Recorder::new(kube, "checkpoint-autoscaler".into()),
        core: core_with(clients.clone(), Arc::new(allow)),
        metrics: Metrics::default(),
        backoff: Arc::default(),
        clock: Arc::new(move || now),
        unreadable: Arc::default(),
    };
    let mut budget = demo::load_budget(None, &step_up()).unwrap();
    budget.metadata.namespace = Some(NAMESPACE.into());
    budget.spec.mode = checkpoint_autoscaler::crd::Mode::Recommend;
    let mut shown = Vec::new();
    // Its own identity (web identity, then GetCallerIdentity), then through a role.
    let own = reconcile(&ctx, &budget, now, &mut shown).await;
    assert_eq!(own, None, "{shown:?}");
    let mut with_role = budget.clone();
    with_role.spec.application.role_arn = Some(BUDGET_ROLE.into());
    with_role.spec.mode = checkpoint_autoscaler::crd::Mode::Enforce;
    let assumed = reconcile(&ctx, &with_role, now, &mut shown).await;
    assert_eq!(assumed, None, "{shown:?}");
    shown.push(format!("{clients:?}"));

    let logs = capture.text();
    for line in logs.lines() {
        serde_json::from_str::<serde_json::Value>(line)
            .unwrap_or_else(|e| panic!("not a JSON log line ({e}): {line}"));
    }
    for expected in [
        "AssumeRoleWithWebIdentity",
        "GetCallerIdentity",
        "AssumeRole",
        "UpdateApplication",
    ] {
        assert!(logs.contains(expected), "the trace logs cover {expected}");
    }
    assert!(
        logs.contains(WEB_KEY_ID),
        "the SDK's trace output names the access key id (not a secret), so it was captured"
    );
    for (what, text) in [("logs", &logs), ("events, status and errors", &shown.join("\n"))] {
        for secret in [
            WEB_TOKEN,
            "webIdentityTokenDoNotLog",
            WEB_SECRET,
            WEB_SESSION,
            ROLE_SECRET,
            ROLE_SESSION,
        ] {
            if let Some(at) = text.find(secret) {
                let from = text[..at].rfind('\n').map_or(0, |i| i + 1);
                let to = text[at..].find('\n').map_or(text.len(), |i| at + i);
                panic!("{what} carry {secret}: {}", &text[from..to]);
            }
        }
    }
}

/// The parent of [`no_secret_reaches_logs_on_the_web_identity_path`]: AWS on loopback, and
/// the child with the IRSA environment.
async fn web_identity_parent(name: &str) {
    let (sts, sts_calls, sts_server) = fake_sts().await;
    let (emu, app, now) = breached(NAMESPACE).await;
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, WEB_TOKEN).unwrap();
    let module = module_path!().split_once("::").map_or("", |(_, m)| m);
    let test = format!("{module}::{name}");
    let mut child = tokio::process::Command::new(std::env::current_exe().unwrap());
    child
        .args([test.as_str(), "--exact", "--test-threads=1", "--nocapture"])
        .env(ALONE, "1")
        .env("TENANCY_TEST_NOW", now.to_string())
        .env("TENANCY_TEST_APP", &app)
        // What EKS's pod identity webhook sets for IRSA, and nothing else of AWS's.
        .env("AWS_WEB_IDENTITY_TOKEN_FILE", &token_file)
        .env("AWS_ROLE_ARN", IRSA_ROLE)
        .env("AWS_ROLE_SESSION_NAME", "checkpoint-autoscaler")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ENDPOINT_URL_STS", format!("http://{sts}"))
        .env("AWS_ENDPOINT_URL_KINESIS_ANALYTICS_V2", emu.endpoint_url())
        .env("AWS_ENDPOINT_URL_CLOUDWATCH", emu.endpoint_url())
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_CONFIG_FILE", dir.path().join("no-config"))
        .env("AWS_SHARED_CREDENTIALS_FILE", dir.path().join("no-credentials"))
        // The SDK's switches to print bodies, as someone debugging might set them.
        .env("LOG_SENSITIVE_BODIES", "true")
        .env("LOG_SIGNABLE_BODY", "true");
    for unset in [
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_PROFILE",
        "AWS_DEFAULT_PROFILE",
        "AWS_ENDPOINT_URL",
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
        "RUST_LOG",
    ] {
        child.env_remove(unset);
    }
    let output = child.output().await.unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && stdout.contains("1 passed"),
        "{test} failed in its own process:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );

    // The path was the one meant: the token went to STS, and what STS returned signed the
    // calls that followed.
    let calls = sts_calls.lock().unwrap().clone();
    let actions: Vec<&str> = calls.iter().map(|c| c.action.as_str()).collect();
    assert!(
        actions.contains(&"AssumeRoleWithWebIdentity")
            && actions.contains(&"GetCallerIdentity")
            && actions.contains(&"AssumeRole"),
        "{actions:?}"
    );
    for call in &calls {
        match call.action.as_str() {
            "AssumeRoleWithWebIdentity" => assert!(call.body.contains(WEB_TOKEN), "{call:?}"),
            _ => assert!(call.authorization.contains(WEB_KEY_ID), "{call:?}"),
        }
    }
    let updates = emu.state().calls(&emulator::calllog::CallFilter {
        operation: Some("UpdateApplication".into()),
        ..Default::default()
    });
    assert_eq!(updates.len(), 1, "the budget with a role scaled");
    sts_server.abort();
    let _ = emu.shutdown().await;
}
