//! Helper methods only available for tests: a scripted, mocked API server
//! ([`ApiServerVerifier`](crate::fixtures::ApiServerVerifier)) and fake AWS clients.
//!
//! The mocked API server sits at the HTTP layer (`tower_test::mock`), so a test asserts the
//! exact requests the controller sends (method, URI with `fieldManager` and `force`, body)
//! and answers them as the API server would. A request the script does not expect fails the
//! reconcile with `Service(Closed(()))`; an expected request that never comes fails the
//! test through [`timeout_after_1s`](crate::fixtures::timeout_after_1s).

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use async_trait::async_trait;
use http::{Method, Request, Response};
use jiff::Timestamp;
use kube::{Client, Resource, client::Body, runtime::events::Recorder};
use serde::Serialize;
use serde_json::Value;

use crate::{
    Context,
    aws::{
        ApplicationControl, ApplicationDescription, AwsError, MetricsSource, OperationState, OperationStatus,
        OperationSummary, SnapshotCount, Target, UpdateRequest,
    },
    crd::{CheckpointBudget, CheckpointBudgetSpec, CheckpointBudgetStatus, Mode},
    metrics::Metrics,
    policy::{AppConfig, AppStatus, Sample},
    reconcile::Reconciler,
    store::FIELD_MANAGER,
    tenancy::NAMESPACE_TAG,
};

type ApiServerHandle = tower_test::mock::Handle<Request<Body>, Response<Body>>;

/// The scripted API server: tests pull the controller's requests one at a time.
pub struct ApiServerVerifier(ApiServerHandle);

/// One request received by the mocked API server, waiting for its reply.
pub struct Exchange {
    method: Method,
    uri: String,
    body: Vec<u8>,
    reply: tower_test::mock::SendResponse<Response<Body>>,
}

/// Awaits a scenario, failing the test when it does not complete within a second (a call
/// the controller never made) or when one of its assertions failed.
pub async fn timeout_after_1s(handle: tokio::task::JoinHandle<()>) {
    tokio::time::timeout(std::time::Duration::from_secs(1), handle)
        .await
        .expect("timeout on mock apiserver")
        .expect("scenario succeeded")
}

impl ApiServerVerifier {
    /// Wraps the handle half of `tower_test::mock::pair()`.
    pub fn new(handle: ApiServerHandle) -> Self {
        Self(handle)
    }

    /// Takes the next request and asserts its method and exact URI (query included).
    pub async fn expect(&mut self, method: Method, uri: &str) -> Exchange {
        let exchange = self.next().await;
        assert_eq!(exchange.method, method, "method of {}", exchange.uri);
        assert_eq!(exchange.uri, uri);
        exchange
    }

    /// Takes the next request, whatever it is.
    pub async fn next(&mut self) -> Exchange {
        let (request, reply) = self.0.next_request().await.expect("service not called");
        let method = request.method().clone();
        let uri = request.uri().to_string();
        let body = request
            .into_body()
            .collect_bytes()
            .await
            .expect("request body")
            .to_vec();
        Exchange {
            method,
            uri,
            body,
            reply,
        }
    }

    /// Asserts that no further request arrives (the controller is done).
    pub async fn expect_silence(mut self) {
        let next = tokio::time::timeout(std::time::Duration::from_millis(50), self.0.next_request()).await;
        if let Ok(Some((request, _))) = next {
            panic!("unexpected request {} {}", request.method(), request.uri());
        }
    }
}

impl Exchange {
    /// The request body as JSON.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("request body is JSON")
    }

    /// The request URI.
    pub fn uri(&self) -> &str {
        &self.uri
    }

    /// The request method.
    pub fn method(&self) -> &Method {
        &self.method
    }

    /// Replies 200 with `body` as JSON.
    pub fn reply_json(self, body: &impl Serialize) {
        let bytes = serde_json::to_vec(body).expect("serializable reply");
        self.reply.send_response(
            Response::builder()
                .status(200)
                .body(Body::from(bytes))
                .expect("response"),
        );
    }

    /// Replies 200 with the request body itself (what an API server answers to a create).
    pub fn echo(self) {
        let body = self.body.clone();
        self.reply.send_response(
            Response::builder()
                .status(200)
                .body(Body::from(body))
                .expect("response"),
        );
    }

    /// Replies with a `Status` failure of `code` and `reason`.
    pub fn reply_status(self, code: u16, reason: &str) {
        let status = serde_json::json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": format!("{reason} (mocked)"), "reason": reason, "code": code,
        });
        let bytes = serde_json::to_vec(&status).expect("serializable status");
        self.reply.send_response(
            Response::builder()
                .status(code)
                .body(Body::from(bytes))
                .expect("response"),
        );
    }
}

/// The pinned "now" of reconciler tests.
pub fn now() -> Timestamp {
    "2026-11-26T08:00:00Z".parse().expect("timestamp")
}

/// Namespace of the test budget.
pub const NAMESPACE: &str = "streaming";
/// Name of the test budget.
pub const NAME: &str = "orders";
/// The application the test budget governs.
pub const APP: &str = "orders-enrichment";
/// The AWS account of the fake application and of the controller's own credentials.
pub const ACCOUNT: &str = "123456789012";
/// The test budget's `metadata.resourceVersion` as read.
pub const RESOURCE_VERSION: &str = "100";

/// The resourceVersion the API server gives an object written at `version` (the next one).
pub fn next_version(version: Option<&str>) -> String {
    version
        .and_then(|v| v.parse::<u64>().ok())
        .map_or(1, |v| v + 1)
        .to_string()
}

/// Test budgets: [`TestBudget::test`] and its variations (the type lives in the API crate,
/// so the constructors are a trait).
pub trait TestBudget: Sized {
    /// A budget in Enforce mode: 2m checkpoint SLO over 10m, parallelism 2..32 of 128 key
    /// groups, perKpu 1..4, at most 16 KPUs, default cooldowns and stabilization.
    fn test() -> Self;
    /// Sets the mode.
    fn mode(self, mode: Mode) -> Self;
    /// A spec the schema would have refused: parallelism.max above maxParallelism.
    fn conflicting(self) -> Self;
    /// Sets the status (as the previous reconcile left it).
    fn with_status(self, status: CheckpointBudgetStatus) -> Self;
}

impl TestBudget for CheckpointBudget {
    /// A budget in Enforce mode: 2m checkpoint SLO over 10m, parallelism 2..32 of 128 key
    /// groups, perKpu 1..4, at most 16 KPUs, default cooldowns and stabilization.
    fn test() -> Self {
        let spec: CheckpointBudgetSpec = serde_json::from_value(serde_json::json!({
            "application": {"name": APP, "region": "eu-west-1"},
            "objectives": {"maxCheckpointDuration": "2m", "maxFailedCheckpoints": 0, "window": "10m"},
            "parallelism": {"min": 2, "max": 32, "maxParallelism": 128, "perKpu": {"min": 1, "max": 4}},
            "maxKpus": 16,
            "behavior": {"scaleUp": {"cooldown": "5m"}, "scaleDown": {"cooldown": "30m", "stabilizationWindow": "1h"}},
            "mode": "Enforce",
            "serviceAutoScaling": "Disable",
        }))
        .expect("valid test spec");
        let mut b = CheckpointBudget::new(NAME, spec);
        b.meta_mut().namespace = Some(NAMESPACE.into());
        b.meta_mut().generation = Some(3);
        b.meta_mut().uid = Some("0b9c1e4e-uid".into());
        b.meta_mut().resource_version = Some(RESOURCE_VERSION.into());
        b
    }

    /// Sets the mode.
    fn mode(mut self, mode: Mode) -> Self {
        self.spec.mode = mode;
        self
    }

    /// A spec the schema would have refused: parallelism.max above maxParallelism.
    fn conflicting(mut self) -> Self {
        self.spec.parallelism.max = 256;
        self
    }

    /// Sets the status (as the previous reconcile left it).
    fn with_status(mut self, status: CheckpointBudgetStatus) -> Self {
        self.status = Some(status);
        self
    }
}

/// One minute of metrics from `at` with the given checkpoint duration (ms) and CPU (%).
pub fn sample(at: Timestamp, duration_ms: f64, cpu: f64) -> Sample {
    let hot = cpu >= 75.0;
    Sample {
        at,
        last_checkpoint_duration_ms: Some(duration_ms),
        last_checkpoint_size_bytes: Some(2.0e9),
        failed_checkpoints: Some(0.0),
        cpu_utilization: Some(cpu),
        heap_memory_utilization: Some(40.0),
        container_memory_utilization: Some(45.0),
        busy_time_ms_per_second: Some(if hot { 920.0 } else { cpu * 8.0 }),
        back_pressured_time_ms_per_second: Some(if hot { 650.0 } else { 0.0 }),
        millis_behind_latest: Some(0.0),
        records_in_per_second: Some(5000.0),
        full_restarts: Some(0.0),
        downtime_ms: Some(0.0),
    }
}

/// The window's ten one-minute samples before [`now`], all alike.
pub fn window(duration_ms: f64, cpu: f64) -> Vec<Sample> {
    (1..=10)
        .rev()
        .map(|m| sample(now() - jiff::SignedDuration::from_mins(m), duration_ms, cpu))
        .collect()
}

/// Checkpoints at 3 minutes against a 2 minute budget, CPU saturated.
pub fn overloaded() -> Vec<Sample> {
    window(180_000.0, 95.0)
}

/// Checkpoints at 80 s against 2 minutes, CPU 60%.
pub fn healthy() -> Vec<Sample> {
    window(80_000.0, 60.0)
}

/// Checkpoints at 15 s, CPU 15%: far more capacity than needed.
pub fn idle() -> Vec<Sample> {
    window(15_000.0, 15.0)
}

/// What the fake AWS holds and records.
pub struct FakeState {
    /// The application (`None`: ResourceNotFoundException).
    pub app: Option<ApplicationDescription>,
    /// Its tags.
    pub tags: Vec<(String, String)>,
    /// What `samples` returns.
    pub samples: Vec<Sample>,
    /// An error `samples` returns instead.
    pub metrics_error: Option<AwsError>,
    /// What `update` returns (the operation id, or an error).
    pub update_result: Result<String, AwsError>,
    /// Operations by id.
    pub operations: HashMap<String, OperationStatus>,
    /// An error `describe_operation` returns instead.
    pub operation_error: Option<AwsError>,
    /// Snapshots the application keeps (`ListApplicationSnapshots`).
    pub snapshots: u32,
    /// Every update asked for.
    pub updates: Vec<UpdateRequest>,
    /// Every call, as `Operation:argument`.
    pub calls: Vec<String>,
    /// What `own_account` returns (STS `GetCallerIdentity`).
    pub account: Result<String, AwsError>,
}

/// A fake Managed Flink + CloudWatch with one application.
pub struct FakeAws(pub Mutex<FakeState>);

impl FakeAws {
    /// One RUNNING application at parallelism 4, 1 per KPU, version 7, tagged for
    /// [`NAMESPACE`], with healthy metrics.
    pub fn new() -> Self {
        Self(Mutex::new(FakeState {
            app: Some(ApplicationDescription {
                name: APP.into(),
                arn: format!("arn:aws:kinesisanalytics:eu-west-1:{ACCOUNT}:application/{APP}"),
                status: AppStatus::Running,
                version_id: 7,
                config: AppConfig::new(4, 1),
                configured_parallelism: 4,
                configuration_type: "CUSTOM".into(),
                service_autoscaling: false,
                conditional_token: None,
                created: Some(Timestamp::from_second(1_767_225_600).expect("a timestamp")),
                snapshots_enabled: Some(true),
                restore: Some(crate::aws::Restore::Latest),
                metrics_level: None,
                runtime: None,
            }),
            tags: vec![(NAMESPACE_TAG.into(), NAMESPACE.into())],
            samples: healthy(),
            metrics_error: None,
            update_result: Ok("op-1".into()),
            operations: HashMap::new(),
            operation_error: None,
            snapshots: 3,
            updates: Vec::new(),
            calls: Vec::new(),
            account: Ok(ACCOUNT.into()),
        }))
    }

    /// Changes the state.
    pub fn with(&self, f: impl FnOnce(&mut FakeState)) {
        f(&mut self.0.lock().expect("fake state"));
    }

    /// Reads the state.
    pub fn read<T>(&self, f: impl FnOnce(&FakeState) -> T) -> T {
        f(&self.0.lock().expect("fake state"))
    }

    /// Registers an operation.
    pub fn operation(&self, id: &str, status: OperationState, failure: Option<&str>) {
        self.with(|s| {
            s.operations.insert(
                id.into(),
                OperationStatus {
                    operation_id: id.into(),
                    operation: Some("UpdateApplication".into()),
                    version_change: None,
                    status,
                    started: None,
                    ended: None,
                    failure: failure.map(str::to_owned),
                },
            );
        });
    }
}

impl Default for FakeAws {
    fn default() -> Self {
        Self::new()
    }
}

#[async_trait]
impl ApplicationControl for FakeAws {
    async fn describe(&self, target: &Target, name: &str) -> Result<ApplicationDescription, AwsError> {
        let mut s = self.0.lock().expect("fake state");
        s.calls.push(format!("DescribeApplication:{name}"));
        let mut app = s.app.clone().filter(|a| a.name == name).ok_or_else(|| {
            AwsError::NotFound(format!("DescribeApplication: Application {name} not found"))
        })?;
        // Through a role, the application is the one in the role's account.
        let role_account = target
            .role_arn
            .as_deref()
            .and_then(|role| role.split(':').nth(4))
            .filter(|account| crate::aws::is_account_id(account));
        if let Some(account) = role_account {
            app.arn = app.arn.replace(&format!(":{ACCOUNT}:"), &format!(":{account}:"));
        }
        Ok(app)
    }

    async fn list_tags(&self, _target: &Target, arn: &str) -> Result<Vec<(String, String)>, AwsError> {
        let mut s = self.0.lock().expect("fake state");
        s.calls.push(format!("ListTagsForResource:{arn}"));
        Ok(s.tags.clone())
    }

    async fn update(&self, _target: &Target, request: &UpdateRequest) -> Result<String, AwsError> {
        let mut s = self.0.lock().expect("fake state");
        s.calls.push(format!("UpdateApplication:{}", request.name));
        s.updates.push(request.clone());
        let result = s.update_result.clone();
        if let (Ok(id), Some(app)) = (&result, s.app.as_mut()) {
            app.version_id += 1;
            app.status = AppStatus::Updating;
            let version = app.version_id;
            s.operations.insert(
                id.clone(),
                OperationStatus {
                    operation_id: id.clone(),
                    operation: Some("UpdateApplication".into()),
                    version_change: Some((version - 1, version)),
                    status: OperationState::InProgress,
                    started: None,
                    ended: None,
                    failure: None,
                },
            );
        }
        result
    }

    async fn describe_operation(
        &self,
        _target: &Target,
        name: &str,
        operation_id: &str,
    ) -> Result<OperationStatus, AwsError> {
        let mut s = self.0.lock().expect("fake state");
        s.calls
            .push(format!("DescribeApplicationOperation:{name}:{operation_id}"));
        if let Some(e) = &s.operation_error {
            return Err(e.clone());
        }
        s.operations
            .get(operation_id)
            .cloned()
            .ok_or_else(|| AwsError::NotFound(format!("operation {operation_id} not found")))
    }

    async fn own_account(&self) -> Result<String, AwsError> {
        let mut s = self.0.lock().expect("fake state");
        s.calls.push("GetCallerIdentity".into());
        s.account.clone()
    }

    async fn list_operations(&self, _target: &Target, name: &str) -> Result<Vec<OperationSummary>, AwsError> {
        self.list(name).await
    }

    async fn count_snapshots(
        &self,
        _target: &Target,
        name: &str,
        limit: u32,
    ) -> Result<SnapshotCount, AwsError> {
        let mut s = self.0.lock().expect("fake state");
        s.calls.push(format!("ListApplicationSnapshots:{name}"));
        Ok(SnapshotCount {
            count: s.snapshots.min(limit),
            complete: s.snapshots <= limit,
        })
    }
}

impl FakeAws {
    async fn list(&self, name: &str) -> Result<Vec<OperationSummary>, AwsError> {
        let mut s = self.0.lock().expect("fake state");
        s.calls.push(format!("ListApplicationOperations:{name}"));
        if s.app.as_ref().is_none_or(|a| a.name != name) {
            return Err(AwsError::NotFound(format!(
                "ListApplicationOperations: {name} not found"
            )));
        }
        let mut listed: Vec<OperationSummary> = s
            .operations
            .values()
            .map(|o| OperationSummary {
                operation_id: o.operation_id.clone(),
                operation: o.operation.clone().unwrap_or_default(),
                status: o.status,
                started: o.started,
                ended: o.ended,
            })
            .collect();
        listed.sort_by(|a, b| {
            b.started
                .cmp(&a.started)
                .then(b.operation_id.cmp(&a.operation_id))
        });
        Ok(listed)
    }
}

#[async_trait]
impl MetricsSource for FakeAws {
    async fn samples(
        &self,
        _target: &Target,
        application: &str,
        _window: Duration,
        _period: Duration,
        _end: Timestamp,
    ) -> Result<Vec<Sample>, AwsError> {
        let mut s = self.0.lock().expect("fake state");
        s.calls.push(format!("GetMetricData:{application}"));
        match &s.metrics_error {
            Some(e) => Err(e.clone()),
            None => Ok(s.samples.clone()),
        }
    }
}

impl Context {
    /// A context over a mocked API server and a fake AWS, with the clock pinned at [`now`].
    pub fn test() -> (Arc<Self>, ApiServerVerifier, Arc<FakeAws>) {
        let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let client = Client::new(service, "default");
        let recorder = Recorder::new(client.clone(), "checkpoint-autoscaler-test".into());
        let fake = Arc::new(FakeAws::new());
        let metrics = Metrics::default();
        let core = Reconciler {
            metrics: metrics.clone(),
            ..Reconciler::new(fake.clone(), fake.clone(), "eu-west-1")
        };
        let ctx = Context {
            client,
            recorder,
            core,
            metrics,
            backoff: Arc::default(),
            clock: Arc::new(now),
            unreadable: Arc::default(),
        };
        (Arc::new(ctx), ApiServerVerifier::new(handle), fake)
    }
}

/// The status of a server-side apply body and its resourceVersion precondition, checking
/// that nothing but the status (and the precondition) is applied.
pub fn applied_status(body: &Value) -> (CheckpointBudgetStatus, Option<String>) {
    assert_eq!(body["apiVersion"], "checkpoint-autoscaler.dev/v1alpha1");
    assert_eq!(body["kind"], "CheckpointBudget");
    let keys: Vec<_> = body
        .as_object()
        .expect("object")
        .keys()
        .filter(|k| *k != "metadata")
        .cloned()
        .collect();
    assert_eq!(
        keys,
        ["apiVersion", "kind", "status"],
        "only the status is applied"
    );
    let precondition = body.get("metadata").map(|m| {
        let fields: Vec<_> = m.as_object().expect("metadata").keys().cloned().collect();
        assert_eq!(
            fields,
            ["resourceVersion"],
            "metadata carries the precondition only"
        );
        m["resourceVersion"]
            .as_str()
            .expect("a resourceVersion")
            .to_owned()
    });
    let status: CheckpointBudgetStatus =
        serde_json::from_value(body["status"].clone()).expect("a valid status");
    (status, precondition)
}

/// The URI of the status subresource of the test budget, as server-side apply sends it.
pub fn status_uri() -> String {
    format!(
        "/apis/checkpoint-autoscaler.dev/v1alpha1/namespaces/{NAMESPACE}/checkpointbudgets/{NAME}/status?&force=true&fieldManager={FIELD_MANAGER}"
    )
}

impl ApiServerVerifier {
    /// Expects a server-side apply of the status alone (no spec, no metadata beyond the
    /// type and the resourceVersion precondition), replies as the API server would (the
    /// object at the next resourceVersion), and returns the status sent.
    pub async fn status_patch(&mut self, budget: &CheckpointBudget) -> CheckpointBudgetStatus {
        self.status_patch_at(budget).await.0
    }

    /// [`status_patch`](Self::status_patch), also returning the resourceVersion the write
    /// was conditioned on.
    pub async fn status_patch_at(
        &mut self,
        budget: &CheckpointBudget,
    ) -> (CheckpointBudgetStatus, Option<String>) {
        let exchange = self.expect(Method::PATCH, &status_uri()).await;
        let body = exchange.json();
        let (status, precondition) = applied_status(&body);
        let mut reply = budget.clone().with_status(status.clone());
        reply.metadata.resource_version = Some(next_version(precondition.as_deref()));
        exchange.reply_json(&reply);
        (status, precondition)
    }

    /// Expects an Event about the test budget with `reason` and `type_` (`Normal` or
    /// `Warning`); returns it.
    pub async fn event(&mut self, reason: &str, type_: &str) -> Value {
        let exchange = self
            .expect(
                Method::POST,
                &format!("/apis/events.k8s.io/v1/namespaces/{NAMESPACE}/events?"),
            )
            .await;
        let event = exchange.json();
        assert_eq!(event["reason"], reason, "{event}");
        assert_eq!(event["type"], type_, "{event}");
        assert_eq!(event["regarding"]["kind"], "CheckpointBudget");
        assert_eq!(event["regarding"]["name"], NAME);
        exchange.echo();
        event
    }
}

impl ApiServerVerifier {
    /// Answers every status patch and Event until the controller is quiet; returns the
    /// requests as (method, URI, body).
    pub async fn answer_all(mut self, budget: &CheckpointBudget) -> Vec<(Method, String, Value)> {
        let mut seen = Vec::new();
        loop {
            let next =
                tokio::time::timeout(std::time::Duration::from_millis(100), self.0.next_request()).await;
            let Ok(Some((request, reply))) = next else {
                return seen;
            };
            let method = request.method().clone();
            let uri = request.uri().to_string();
            let body = request.into_body().collect_bytes().await.expect("body").to_vec();
            let json: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            let exchange = Exchange {
                method: method.clone(),
                uri: uri.clone(),
                body,
                reply,
            };
            if uri == status_uri() {
                let (status, precondition) = applied_status(&json);
                let mut reply = budget.clone().with_status(status);
                reply.metadata.resource_version = Some(next_version(precondition.as_deref()));
                exchange.reply_json(&reply);
            } else {
                exchange.echo();
            }
            seen.push((method, uri, json));
        }
    }
}
