//! Two leaders at once: two controllers — the real `run` wiring ([`controller::serve`]:
//! leader election, fence, controller, shutdown ordering) with shortened Lease timings —
//! against one strict API server ([`crate::apiserver`]) and one emulator, with pauses
//! injected around the Lease. Each test asserts, from the emulator's call log
//! (`/_emulator/calls`), at most one `UpdateApplication` for the one scaling decision the
//! scenario calls for, and that the budget's status history is intact.
//!
//! The emulator's clock is frozen 45 minutes into the step-up scenario, past its load
//! step: the first reconcile decides to scale, and the update it starts stays in flight
//! (the frozen application never finishes updating), so any second `UpdateApplication`
//! would be a second action for the same decision.

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use checkpoint_autoscaler::{
    aws::{AwsSettings, MetricsMode},
    controller::{
        self, Exit, Wiring,
        fence::FenceBounds,
        kubeclient::{self, KubeTimeouts},
        leader::LeaseConfig,
        reconcile::Reconciler,
    },
    crd::{CheckpointBudget, CheckpointBudgetStatus, Mode},
    emulator::Emulator,
};
use checkpoint_autoscaler_testkit::rig::{self, Keys};
use http_body_util::BodyExt;
use serde_json::Value;

use crate::apiserver::{ApiServer, Hold, ServerConfig};

const NAMESPACE: &str = "team-a";
const BUDGET: &str = "orders";
const LEASE_NAMESPACE: &str = "ops";
const LEASE: &str = "checkpoint-autoscaler";

/// The shortened timings, chosen so each pause lands where the test says (see each test).
/// The Lease (8 s) outlasts a renewal period plus the longest guarded action (a 5 s
/// Kubernetes write) plus the fence's margin, as the controller requires.
struct Timing;

impl Timing {
    const LEASE: Duration = Duration::from_secs(8);
    const RENEW_DEADLINE: Duration = Duration::from_secs(7);
    const RETRY: Duration = Duration::from_millis(250);
    /// An UpdateApplication's bound: one SDK attempt.
    const UPDATE: Duration = Duration::from_millis(3500);
    /// Every Kubernetes request but watches.
    const KUBE: Duration = Duration::from_secs(5);
    const MARGIN: Duration = Duration::from_millis(500);
    const GRACE: Duration = Duration::from_secs(4);
}

/// One controller replica: `serve` running in a task.
struct Replica {
    name: &'static str,
    task: tokio::task::JoinHandle<anyhow::Result<Exit>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    /// When `serve` returned.
    ended: Arc<Mutex<Option<Instant>>>,
}

impl Replica {
    /// SIGTERM.
    fn terminate(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }

    async fn exit(self, within: Duration) -> (Exit, Instant) {
        let exit = tokio::time::timeout(within, self.task)
            .await
            .unwrap_or_else(|_| panic!("{} did not exit within {within:?}", self.name))
            .unwrap()
            .unwrap();
        let ended = self.ended.lock().unwrap().expect("ended");
        (exit, ended)
    }
}

/// The emulator with the step-up application tagged for [`NAMESPACE`], 45 frozen minutes
/// in; the API server; the budget, not yet created.
async fn cluster() -> (ApiServer, Emulator, CheckpointBudget) {
    let scenario = crate::harness::scenario("step-up");
    let (emu, _) = rig::serve_scenario(&scenario, "us-east-1", NAMESPACE)
        .await
        .unwrap();
    let state = emu.state().clone();
    state.advance(Duration::from_secs(45 * 60));
    let server = ApiServer::start(&["a", "b"], ServerConfig::default()).await;
    let mut budget = checkpoint_autoscaler::demo::load_budget(None, &scenario).unwrap();
    budget.spec.mode = Mode::Enforce;
    budget.metadata.name = Some(BUDGET.into());
    budget.metadata.namespace = Some(NAMESPACE.into());
    (server, emu, budget)
}

/// What a test changes in a replica's wiring.
struct Tweaks {
    grace: Duration,
    watch: Duration,
    http: Option<tokio::sync::oneshot::Sender<std::net::SocketAddr>>,
}

impl Default for Tweaks {
    fn default() -> Self {
        Self {
            grace: Timing::GRACE,
            watch: Duration::from_secs(10),
            http: None,
        }
    }
}

/// Starts replica `name` (its own API credentials and AWS access key `AKID<NAME>`).
async fn start(server: &ApiServer, emu: &Emulator, name: &'static str) -> Replica {
    start_with(server, emu, name, Tweaks::default()).await
}

async fn start_with(server: &ApiServer, emu: &Emulator, name: &'static str, tweaks: Tweaks) -> Replica {
    controller::install_crypto_provider();
    let timeouts = KubeTimeouts {
        request: Timing::KUBE,
        watch: tweaks.watch,
    };
    let kube = kubeclient::clients(server.config(name), timeouts).unwrap();
    let settings = AwsSettings {
        endpoint_url: Some(emu.endpoint_url()),
        initial_backoff: Duration::from_millis(5),
        attempt_timeout: Timing::UPDATE,
        operation_timeout: Duration::from_secs(6),
        ..AwsSettings::default()
    };
    assert_eq!(settings.update_bound(), Timing::UPDATE);
    let keys = Keys::with_access_key_id(format!("AKID{}", name.to_uppercase()));
    let clients = rig::clients(&keys, "us-east-1", emu.endpoint_url(), settings).await;
    let clock = emu.state().clone();
    let wiring = Wiring {
        kube,
        timeouts,
        namespace: None,
        core: Reconciler {
            interval: Duration::from_secs(1),
            in_flight_poll: Duration::from_millis(500),
            ..rig::reconciler(clients, MetricsMode::Direct)
        },
        clock: Arc::new(move || clock.virtual_now()),
        identity: name.into(),
        leader: Some(LeaseConfig {
            lease_duration: Timing::LEASE,
            renew_deadline: Timing::RENEW_DEADLINE,
            retry_period: Timing::RETRY,
            ..LeaseConfig::new(LEASE_NAMESPACE, LEASE, name)
        }),
        fence: FenceBounds {
            update: Timing::UPDATE,
            write: Timing::KUBE,
            margin: Timing::MARGIN,
        },
        shutdown_grace: tweaks.grace,
        http_addr: "127.0.0.1:0".parse().unwrap(),
    };
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let ended = Arc::new(Mutex::new(None));
    let task = {
        let ended = ended.clone();
        tokio::spawn(async move {
            let http = tweaks.http;
            let exit = controller::serve(
                wiring,
                async move {
                    let _ = stop_rx.await;
                },
                move |addr| {
                    if let Some(http) = http {
                        let _ = http.send(addr);
                    }
                },
            )
            .await;
            *ended.lock().unwrap() = Some(Instant::now());
            exit
        })
    };
    Replica {
        name,
        task,
        stop: Some(stop_tx),
        ended,
    }
}

async fn until(what: &str, within: Duration, done: impl Fn() -> bool) {
    let deadline = Instant::now() + within;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn holder(server: &ApiServer) -> Option<String> {
    server
        .lease(LEASE_NAMESPACE, LEASE)
        .and_then(|l| l["spec"]["holderIdentity"].as_str().map(str::to_owned))
}

/// The `UpdateApplication` calls in the emulator's log, read through its control API.
async fn update_calls(emu: &Emulator) -> Vec<Value> {
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Empty<axum::body::Bytes>>();
    let uri = format!(
        "http://{}/_emulator/calls?operation=UpdateApplication",
        emu.addr()
    );
    let response = client.get(uri.parse().unwrap()).await.unwrap();
    assert_eq!(response.status(), 200);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    let value: Value = serde_json::from_slice(&body).unwrap();
    value["calls"].as_array().cloned().unwrap_or_default()
}

/// When `client` first wrote the Lease as its holder, after `after`.
fn acquired(server: &ApiServer, client: &str, after: Instant) -> Option<Instant> {
    server
        .lease_writes()
        .into_iter()
        .find(|w| w.client == client && w.at >= after && w.holder.as_deref() == Some(client))
        .map(|w| w.at)
}

/// The last time `client` wrote the Lease as its holder.
fn last_renewal(server: &ApiServer, client: &str) -> Instant {
    server
        .lease_writes()
        .into_iter()
        .rev()
        .find(|w| w.client == client && w.holder.as_deref() == Some(client))
        .map(|w| w.at)
        .expect("a renewal")
}

/// The history of the one scaling is intact in `status`: in flight with its operation id,
/// the same id in `lastScaling`, one scaling in the history.
fn assert_one_scaling_recorded(status: &CheckpointBudgetStatus) {
    let op = status
        .operation_in_flight
        .as_ref()
        .expect("the update is recorded as in flight");
    let id = op.operation_id.as_deref().expect("with its operation id");
    let last = status.last_scaling.as_ref().expect("lastScaling");
    assert_eq!(last.operation_id.as_deref(), Some(id));
    let history = status.history.as_ref().expect("a history");
    assert_eq!(history.scalings.len(), 1, "{:?}", history.scalings);
}

/// Starts `a`, waits for it to lead, then starts `b` as a standby.
async fn a_leads_b_stands_by(server: &ApiServer, emu: &Emulator) -> (Replica, Replica) {
    let a = start(server, emu, "a").await;
    until("a to lead", Duration::from_secs(5), || {
        holder(server).as_deref() == Some("a")
    })
    .await;
    let b = start(server, emu, "b").await;
    // B has seen the Lease held by A.
    until("b to look at the Lease", Duration::from_secs(5), || {
        server
            .requests()
            .iter()
            .any(|r| r.client == "b" && r.uri.contains("/leases/"))
    })
    .await;
    (a, b)
}

/// A leader whose renewals hang (the API server takes them and never answers) must not act
/// once its Lease no longer outlasts an update, and must step down at its renew deadline,
/// before the standby takes over: the standby makes the one update.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_whose_renewals_hang_stops_acting_and_the_standby_makes_the_one_update() {
    let (server, emu, budget) = cluster().await;
    let (a, b) = a_leads_b_stands_by(&server, &emu).await;
    let hung = server.hold(Hold {
        client: Some("a".into()),
        path_contains: Some("/leases".into()),
        ..Hold::default()
    });
    let hung_at = Instant::now();
    let renewed = last_renewal(&server, "a");
    // Past the point where A's Lease outlasts an update (3.5 s) and a write (5 s) plus the
    // margin: A may neither scale nor write.
    let fenced_from = renewed + Timing::LEASE - (Timing::KUBE + Timing::MARGIN);
    tokio::time::sleep_until(fenced_from.into()).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    server.create_budget(&budget);

    // A steps down at its renew deadline; B takes over once the Lease expired.
    let (exit, a_ended) = a
        .exit(Timing::RENEW_DEADLINE + Timing::GRACE + Duration::from_secs(3))
        .await;
    assert_eq!(exit, Exit::LostLeadership);
    // It stopped before its Lease expired for the others (its last renewal plus 8 s).
    assert!(
        a_ended < renewed + Timing::LEASE,
        "A still ran {:?} after its last renewal",
        a_ended - renewed
    );
    until("B to lead", Duration::from_secs(10), || {
        holder(&server).as_deref() == Some("b")
    })
    .await;
    let b_led = acquired(&server, "b", hung_at).expect("B took the Lease over");
    until("B's update", Duration::from_secs(10), || {
        server
            .status_writes()
            .iter()
            .any(|w| w.client == "b" && w.status["operationInFlight"]["operationId"].is_string())
    })
    .await;
    assert!(
        b_led >= renewed + Timing::LEASE,
        "B took over {:?} after A's last renewal, inside its Lease",
        b_led - renewed
    );
    // A few more follow-ups of B: still the one update.
    tokio::time::sleep(Duration::from_secs(1)).await;

    let calls = update_calls(&emu).await;
    assert_eq!(
        calls.len(),
        1,
        "one UpdateApplication for the one decision: {calls:?}"
    );
    assert_eq!(calls[0]["accessKeyId"], "AKIDB", "made by B: {calls:?}");
    assert_eq!(calls[0]["status"], 200);
    let a_writes: Vec<_> = server
        .status_writes()
        .into_iter()
        .filter(|w| w.client == "a")
        .collect();
    assert!(
        a_writes.is_empty(),
        "A wrote status without its Lease: {a_writes:?}"
    );
    assert_one_scaling_recorded(&server.status(NAMESPACE, BUDGET).unwrap());

    server.release(hung);
    let mut b = b;
    b.terminate();
    let (exit, _) = b.exit(Timing::GRACE + Timing::RENEW_DEADLINE).await;
    assert_eq!(exit, Exit::Stopped);
    let _ = emu.shutdown().await;
}

/// A leader paused right before `UpdateApplication` — its intent's status write stalls in
/// the API server while its renewals hang — finds, when it resumes, that its Lease no
/// longer outlasts the call: it does not call, and cannot clear its intent (a write would
/// not fit either). The next leader finds the intent, sees from the application's unmoved
/// version that the call never reached AWS, drops it and makes the one update itself.
///
/// Timings: A's intent write needs the Lease for 5.5 s more and the update 4 s more. The
/// write is held 4.5 s (inside A's 5 s request timeout), so after it 8 − 4.5 = 3.5 s at
/// most are left: fenced, whenever within 2.5 s of its last renewal A reached the write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_paused_before_update_application_leaves_the_decision_to_the_next() {
    let (server, emu, budget) = cluster().await;
    let (a, b) = a_leads_b_stands_by(&server, &emu).await;
    let partitioned = server.hold(Hold {
        client: Some("a".into()),
        path_contains: Some("/leases".into()),
        ..Hold::default()
    });
    let paused = server.hold(Hold {
        client: Some("a".into()),
        method: Some(http::Method::PATCH),
        path_contains: Some("/status".into()),
        body_contains: Some("operationInFlight".into()),
        delay: Some(Duration::from_millis(4500)),
        times: Some(1),
    });
    let since = Instant::now();
    server.create_budget(&budget);

    let (exit, _) = a
        .exit(Timing::RENEW_DEADLINE + Timing::GRACE + Duration::from_secs(3))
        .await;
    assert_eq!(exit, Exit::LostLeadership);
    assert_eq!(server.held(paused), 1, "A reached its intent's write");
    until("B's update", Duration::from_secs(15), || {
        server
            .status_writes()
            .iter()
            .any(|w| w.client == "b" && w.status["operationInFlight"]["operationId"].is_string())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;

    let calls = update_calls(&emu).await;
    assert_eq!(
        calls.len(),
        1,
        "one UpdateApplication for the one decision: {calls:?}"
    );
    assert_eq!(
        calls[0]["accessKeyId"], "AKIDB",
        "made by B, A never called: {calls:?}"
    );
    // A wrote its intent (the paused write) and nothing after it.
    let a_writes: Vec<_> = server
        .status_writes()
        .into_iter()
        .filter(|w| w.client == "a")
        .collect();
    assert_eq!(a_writes.len(), 1, "{a_writes:?}");
    let intent: CheckpointBudgetStatus = serde_json::from_value(a_writes[0].status.clone()).unwrap();
    let op = intent.operation_in_flight.expect("A's intent");
    assert!(op.operation_id.is_none());
    let b_led = acquired(&server, "b", since).expect("B took over");
    assert!(a_writes[0].at < b_led, "A's write landed before B led");
    // B dropped A's intent (it never reached AWS) and recorded its own update alone.
    let status = server.status(NAMESPACE, BUDGET).unwrap();
    assert_one_scaling_recorded(&status);
    assert!(status.history.unwrap().scalings[0].at.0.as_second() >= op.started_at.0.as_second());

    server.release(partitioned);
    let mut b = b;
    b.terminate();
    assert_eq!(
        b.exit(Timing::GRACE + Timing::RENEW_DEADLINE).await.0,
        Exit::Stopped
    );
    let _ = emu.shutdown().await;
}

/// SIGTERM while a reconcile is in flight (its last status write, with the operation id,
/// stalls in the API server): the leader starts nothing new, lets the reconcile finish,
/// and only then releases the Lease; the standby takes over at once (not after the Lease's
/// expiry) and follows the update instead of making another.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_the_reconcile_in_flight_then_hands_the_lease_over() {
    let (server, emu, budget) = cluster().await;
    let (mut a, b) = a_leads_b_stands_by(&server, &emu).await;
    let stalled = server.hold(Hold {
        client: Some("a".into()),
        method: Some(http::Method::PATCH),
        path_contains: Some("/status".into()),
        body_contains: Some("operationId".into()),
        delay: Some(Duration::from_millis(1500)),
        times: Some(1),
    });
    let since = Instant::now();
    server.create_budget(&budget);
    // A's update is made; its outcome's write is stalled. SIGTERM now.
    let mut calls = Vec::new();
    for _ in 0..250 {
        calls = update_calls(&emu).await;
        if !calls.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(calls.len(), 1, "A's update");
    a.terminate();
    let terminated = Instant::now();

    let (exit, a_ended) = a.exit(Timing::GRACE + Timing::RENEW_DEADLINE).await;
    assert_eq!(exit, Exit::Stopped);
    assert_eq!(server.held(stalled), 1);
    let a_final = server
        .status_writes()
        .into_iter()
        .filter(|w| w.client == "a")
        .find(|w| w.status["operationInFlight"]["operationId"].is_string())
        .expect("A recorded its update's operation id before it stopped");
    let released = server
        .lease_writes()
        .into_iter()
        .find(|w| w.client == "a" && w.holder.is_none() && w.at >= since)
        .expect("A released the Lease");
    assert!(
        a_final.at < released.at,
        "the Lease was released before the reconcile finished"
    );
    assert!(released.at >= terminated && released.at <= a_ended);

    until("B to lead", Duration::from_secs(5), || {
        holder(&server).as_deref() == Some("b")
    })
    .await;
    let b_led = acquired(&server, "b", since).unwrap();
    assert!(
        b_led < released.at + Duration::from_secs(2),
        "B took over {:?} after the release: it waited for the Lease to expire",
        b_led - released.at
    );
    // B follows the operation (a reconcile or two), never issuing it again.
    until("B's status write", Duration::from_secs(10), || {
        server.status_writes().iter().any(|w| w.client == "b")
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let calls = update_calls(&emu).await;
    assert_eq!(calls.len(), 1, "B followed A's update: {calls:?}");
    assert_eq!(calls[0]["accessKeyId"], "AKIDA");
    let status = server.status(NAMESPACE, BUDGET).unwrap();
    assert_one_scaling_recorded(&status);
    assert_eq!(
        status.operation_in_flight.unwrap().operation_id,
        a_final.status["operationInFlight"]["operationId"]
            .as_str()
            .map(str::to_owned)
    );
    // No status write of A after B took over.
    assert!(
        server
            .status_writes()
            .iter()
            .filter(|w| w.client == "a")
            .all(|w| w.at < b_led)
    );

    let mut b = b;
    b.terminate();
    assert_eq!(
        b.exit(Timing::GRACE + Timing::RENEW_DEADLINE).await.0,
        Exit::Stopped
    );
    let _ = emu.shutdown().await;
}

/// SIGTERM while a reconcile is stalled for longer than the shutdown grace: the leader
/// exits without releasing the Lease (a reconcile may still be acting), so the standby
/// takes over only once the Lease has expired — and follows the one update.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_shutdown_grace_the_lease_is_left_to_expire() {
    let (server, emu, budget) = cluster().await;
    let mut a = start_with(
        &server,
        &emu,
        "a",
        Tweaks {
            grace: Duration::from_secs(1),
            ..Tweaks::default()
        },
    )
    .await;
    until("a to lead", Duration::from_secs(5), || {
        holder(&server).as_deref() == Some("a")
    })
    .await;
    let b = start(&server, &emu, "b").await;
    let stalled = server.hold(Hold {
        client: Some("a".into()),
        method: Some(http::Method::PATCH),
        path_contains: Some("/status".into()),
        body_contains: Some("operationId".into()),
        delay: Some(Duration::from_millis(2500)),
        times: Some(1),
    });
    let since = Instant::now();
    server.create_budget(&budget);
    for _ in 0..250 {
        if !update_calls(&emu).await.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    a.terminate();
    let terminated = Instant::now();
    let (exit, a_ended) = a.exit(Duration::from_secs(5)).await;
    assert_eq!(exit, Exit::Stopped);
    assert!(
        a_ended - terminated < Duration::from_millis(1800),
        "exited {:?} after SIGTERM, past the 1 s grace",
        a_ended - terminated
    );
    assert_eq!(server.held(stalled), 1);
    assert!(
        !server
            .lease_writes()
            .iter()
            .any(|w| w.client == "a" && w.holder.is_none()),
        "A released the Lease with a reconcile still running"
    );
    until("B to lead", Duration::from_secs(12), || {
        holder(&server).as_deref() == Some("b")
    })
    .await;
    let renewed = last_renewal(&server, "a");
    let b_led = acquired(&server, "b", since).unwrap();
    assert!(b_led >= renewed + Timing::LEASE, "B took over inside A's Lease");
    until("B's status write", Duration::from_secs(10), || {
        server.status_writes().iter().any(|w| w.client == "b")
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let calls = update_calls(&emu).await;
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert_eq!(calls[0]["accessKeyId"], "AKIDA");
    // A's stalled write of the operation id was abandoned with the process (or landed
    // late): either way the update is recorded in flight, once, and B follows it (without
    // its id, by the application's version and state).
    let status = server.status(NAMESPACE, BUDGET).unwrap();
    let op = status
        .operation_in_flight
        .as_ref()
        .expect("the update stays recorded in flight");
    assert_eq!(status.history.as_ref().unwrap().scalings.len(), 1);
    if let Some(id) = &op.operation_id {
        assert_one_scaling_recorded(&status);
        assert!(!id.is_empty());
    }
    let mut b = b;
    b.terminate();
    assert_eq!(
        b.exit(Timing::GRACE + Timing::RENEW_DEADLINE).await.0,
        Exit::Stopped
    );
    let _ = emu.shutdown().await;
}

/// `/healthz` of a running replica: ok while the budget watch progresses (bookmarks and
/// watch restarts count), 503 naming the watch once its requests stall past the bound
/// (three watch timeouts), ok again once they flow.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_fails_while_the_budget_watch_is_stuck() {
    let (server, emu, budget) = cluster().await;
    server.create_budget(&budget);
    let (addr_tx, addr_rx) = tokio::sync::oneshot::channel();
    let mut a = start_with(
        &server,
        &emu,
        "a",
        Tweaks {
            watch: Duration::from_secs(1),
            http: Some(addr_tx),
            ..Tweaks::default()
        },
    )
    .await;
    let addr = addr_rx.await.unwrap();
    let health = || async move {
        let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .build_http::<http_body_util::Empty<axum::body::Bytes>>();
        let response = client
            .get(format!("http://{addr}/healthz").parse().unwrap())
            .await
            .unwrap();
        let status = response.status().as_u16();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8_lossy(&body).into_owned())
    };
    until("a to lead", Duration::from_secs(5), || {
        holder(&server).as_deref() == Some("a")
    })
    .await;
    // Past one stall bound, with watches ending every second: healthy.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let (status, body) = health().await;
    assert_eq!(status, 200, "{body}");
    // Every new watch (and list) of A stalls: the open one ends within its 1 s timeout.
    let stuck = server.hold(Hold {
        client: Some("a".into()),
        path_contains: Some("/checkpointbudgets?".into()),
        ..Hold::default()
    });
    let mut seen = (0, String::new());
    for _ in 0..100 {
        seen = health().await;
        if seen.0 == 503 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(seen.0, 503, "{}", seen.1);
    assert!(
        seen.1.contains("CheckpointBudget watch has made no progress"),
        "{}",
        seen.1
    );
    server.release(stuck);
    until("a watch again", Duration::from_secs(5), || {
        server.requests().iter().any(|r| {
            r.client == "a" && r.uri.contains("watch=true") && r.answered > r.arrived + Duration::from_secs(1)
        })
    })
    .await;
    let mut recovered = (0, String::new());
    for _ in 0..50 {
        recovered = health().await;
        if recovered.0 == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(recovered.0, 200, "{}", recovered.1);
    a.terminate();
    assert_eq!(
        a.exit(Timing::GRACE + Timing::RENEW_DEADLINE).await.0,
        Exit::Stopped
    );
    let _ = emu.shutdown().await;
}
