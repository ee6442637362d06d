//! The AWS emulator: the [`sim::Fleet`](crate::sim::Fleet) model of Managed Service for
//! Apache Flink behind the real wire protocols on loopback, so the unmodified AWS SDKs
//! (Rust and Python) can be pointed at it with an endpoint override.
//!
//! - [`kinesis`]: `kinesisanalyticsv2` over awsJson1_1 (`POST /`, `X-Amz-Target`).
//! - [`cloudwatch`]: CloudWatch over Smithy RPC v2 CBOR
//!   (`POST /service/GraniteServiceVersion20100801/operation/<Operation>`, the Rust SDK)
//!   and over awsJson 1.0 (`POST /`, `X-Amz-Target: GraniteServiceVersion20100801.<Op>`,
//!   what botocore picks since 1.42.7).
//! - [`control`]: the JSON control API under `/_emulator/` (scenarios, faults, call log,
//!   clock), a path AWS never uses.
//! - [`auth`]: the SigV4 presence check; [`faults`]: injected faults; [`calllog`]: the
//!   record of calls received; [`error`]: the error mapping of both protocols.
//!
//! Time: the fleet runs in virtual time. `period` real time is one virtual minute (one
//! metric period), so `--period 1s` shows a test a "minute" per second; before serving any
//! request the fleet is advanced to the virtual now. Without a period, virtual time moves
//! only when the control API (or [`EmulatorState::advance`]) moves it, which makes tests
//! independent of wall-clock timing.

pub mod auth;
pub mod backend;
pub mod calllog;
pub mod cbor;
pub mod cloudwatch;
pub mod control;
pub mod error;
pub mod faults;
pub mod hangup;
pub mod kinesis;

use std::{
    io::Read,
    net::{IpAddr, Ipv4Addr, SocketAddr},
    path::{Path, PathBuf},
    process::ExitCode,
    sync::{
        Arc, Mutex, MutexGuard, PoisonError,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::Context as _;
use axum::{
    Extension, Router,
    body::{Body, Bytes},
    extract::{ConnectInfo, Path as UrlPath, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
    routing::post,
};
use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};
use tokio::{net::TcpListener, sync::oneshot, task::JoinHandle};

pub use self::backend::Backend;
use self::{
    calllog::{CallFilter, CallLog, CallRecord},
    error::{ApiError, ErrorKind},
    faults::{Effects, FaultError, FaultSpec, Faults, RequestScope},
    hangup::{Hangup, HangupListener},
};
use crate::sim::{ApplicationView, Fleet, Scenario, ServiceError};

/// Largest request body accepted (after decompression), bytes. PutMetricData's own limit
/// is 1 MB; this leaves room for 500-query GetMetricData requests.
const MAX_BODY: usize = 8 * 1024 * 1024;

/// The two AWS services the emulator speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Service {
    /// `kinesisanalyticsv2` (Managed Service for Apache Flink).
    #[serde(rename = "kinesisanalyticsv2")]
    KinesisAnalytics,
    /// CloudWatch (`monitoring`).
    #[serde(rename = "cloudwatch")]
    CloudWatch,
}

impl Service {
    /// The name used in the call log and fault scopes.
    pub fn as_str(self) -> &'static str {
        match self {
            Service::KinesisAnalytics => "kinesisanalyticsv2",
            Service::CloudWatch => "cloudwatch",
        }
    }
}

/// The wire protocol a request arrived in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Protocol {
    /// awsJson1_1 (kinesisanalyticsv2).
    #[serde(rename = "awsJson1_1")]
    AwsJson1_1,
    /// awsJson1_0 (CloudWatch, as botocore 1.42.7+ speaks it).
    #[serde(rename = "awsJson1_0")]
    AwsJson1_0,
    /// Smithy RPC v2 CBOR (CloudWatch, as the Rust SDK speaks it).
    #[serde(rename = "rpcv2Cbor")]
    RpcV2Cbor,
}

/// `checkpoint-autoscaler emulator`: serve the AWS emulator on loopback.
#[derive(Debug, Clone, clap::Args)]
pub struct EmulatorArgs {
    /// TCP port to listen on (0 picks a free one; the bound address is printed first).
    #[arg(long, default_value_t = 0)]
    pub port: u16,
    /// Address to bind. NB: anything but loopback exposes an unauthenticated control API.
    #[arg(long, default_value_t = IpAddr::V4(Ipv4Addr::LOCALHOST))]
    pub bind: IpAddr,
    /// Real time per virtual minute (one metric period); `0s` freezes virtual time so it
    /// moves only through `POST /_emulator/clock/advance`.
    #[arg(long, default_value = "1s", value_parser = crate::policy::duration::parse)]
    pub period: Duration,
    /// Scenario files (YAML) or directories of them, one application each.
    #[arg(long = "scenario", value_name = "FILE|DIR")]
    pub scenarios: Vec<PathBuf>,
    /// Seed of the model's randomness.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Region used in ARNs.
    #[arg(long, default_value = "us-east-1")]
    pub region: String,
    /// What serves the applications: the model (virtual time) or real Flink jobs on loopback
    /// clusters (see docs/flink-backend.md).
    #[arg(long, value_enum, default_value_t = BackendKind::Model)]
    pub backend: BackendKind,
    /// The Flink distribution for `--backend flink` (default: `$FLINK_HOME`, else what
    /// `scripts/install-flink.sh` installed under `.flink/`).
    #[arg(long, value_name = "DIR")]
    pub flink_home: Option<PathBuf>,
}

/// The emulator's backends.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum BackendKind {
    /// The `sim` model of Managed Flink, in virtual time.
    Model,
    /// Real Apache Flink jobs, one standalone cluster per application.
    Flink,
}

/// How to run an embedded emulator.
#[derive(Clone, Debug)]
pub struct EmulatorConfig {
    /// Address to bind; port 0 picks a free one.
    pub bind: SocketAddr,
    /// Real time per virtual minute; `None` freezes virtual time (see [`EmulatorState::advance`]).
    pub period: Option<Duration>,
    /// Seed of the model.
    pub seed: u64,
    /// Virtual start time (default: the wall clock, rounded down to the minute).
    pub start: Option<Timestamp>,
    /// Region used in ARNs.
    pub region: String,
    /// Applications to create at start, one per scenario, named by the scenario.
    pub scenarios: Vec<Scenario>,
}

impl Default for EmulatorConfig {
    fn default() -> Self {
        Self {
            bind: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            period: Some(Duration::from_secs(1)),
            seed: 0,
            start: None,
            region: "us-east-1".into(),
            scenarios: Vec::new(),
        }
    }
}

/// Why the emulator could not start.
#[derive(Debug, thiserror::Error)]
pub enum EmulatorError {
    /// The address could not be bound.
    #[error("cannot bind {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A scenario could not be added to the fleet.
    #[error("scenario {name}: {source}")]
    Scenario {
        /// The scenario's name.
        name: String,
        /// The model's refusal.
        #[source]
        source: ServiceError,
    },
    /// The server stopped with an error.
    #[error("server error: {0}")]
    Serve(#[source] std::io::Error),
    /// The server task panicked or was cancelled.
    #[error("server task failed: {0}")]
    Join(#[source] tokio::task::JoinError),
}

/// Maps real time to virtual time.
#[derive(Debug)]
pub struct Clock {
    origin_real: Instant,
    origin_virtual: Timestamp,
    period: Option<Duration>,
    manual: Mutex<Duration>,
}

impl Clock {
    /// A clock at `start` now, moving one virtual minute per `period` of real time.
    pub fn new(start: Timestamp, period: Option<Duration>) -> Self {
        Self {
            origin_real: Instant::now(),
            origin_virtual: start,
            period: period.filter(|p| !p.is_zero()),
            manual: Mutex::new(Duration::ZERO),
        }
    }

    /// The virtual now.
    pub fn now(&self) -> Timestamp {
        let scaled = match self.period {
            None => Duration::ZERO,
            Some(p) => {
                // One virtual minute (60e9 ns) per period of real time.
                let nanos = self.origin_real.elapsed().as_nanos() * 60_000_000_000 / p.as_nanos().max(1);
                Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
            }
        };
        let total = scaled.saturating_add(*lock(&self.manual));
        self.origin_virtual
            .checked_add(SignedDuration::try_from(total).unwrap_or(SignedDuration::MAX))
            .unwrap_or(Timestamp::MAX)
    }

    /// Moves virtual time forward by `by`.
    pub fn advance(&self, by: Duration) {
        let mut manual = lock(&self.manual);
        *manual = manual.saturating_add(by);
    }

    /// Real time per virtual minute (`None`: frozen).
    pub fn period(&self) -> Option<Duration> {
        self.period
    }
}

/// Locks a mutex, recovering the data if a panicking request poisoned it: every critical
/// section leaves the state consistent, so a poisoned lock is still usable.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

#[derive(Debug)]
struct Inner {
    fleet: Mutex<Box<dyn Backend>>,
    clock: Clock,
    faults: Mutex<Faults>,
    calls: Mutex<CallLog>,
    requests: AtomicU64,
    nonce: u64,
}

/// A handle on a running emulator's state, shared with its request handlers.
#[derive(Clone, Debug)]
pub struct EmulatorState(Arc<Inner>);

impl EmulatorState {
    pub fn new(fleet: Box<dyn Backend>, clock: Clock) -> Self {
        let nonce = Timestamp::now().as_nanosecond().unsigned_abs() as u64;
        Self(Arc::new(Inner {
            fleet: Mutex::new(fleet),
            clock,
            faults: Mutex::new(Faults::default()),
            calls: Mutex::new(CallLog::default()),
            requests: AtomicU64::new(0),
            nonce,
        }))
    }

    /// The virtual now.
    pub fn virtual_now(&self) -> Timestamp {
        self.0.clock.now()
    }

    /// The clock.
    pub fn clock(&self) -> &Clock {
        &self.0.clock
    }

    /// Moves virtual time forward by `by` (the fleet steps on the next request).
    pub fn advance(&self, by: Duration) {
        self.0.clock.advance(by);
    }

    /// Runs `f` on the backend (the model's [`Fleet`] or the Flink backend), advanced to
    /// the virtual now.
    pub fn with_fleet<R>(&self, f: impl FnOnce(&mut dyn Backend) -> R) -> R {
        let mut fleet = lock(&self.0.fleet);
        fleet.advance_to(self.0.clock.now());
        f(fleet.as_mut())
    }

    /// Adds an application running `scenario`, named by it or by `name`.
    pub fn add_scenario(
        &self,
        scenario: &Scenario,
        name: Option<&str>,
    ) -> Result<ApplicationView, ServiceError> {
        self.with_fleet(|f| f.add_scenario(scenario, name))
    }

    /// Arms a fault; returns its id.
    pub fn arm_fault(&self, spec: FaultSpec) -> Result<u64, FaultError> {
        lock(&self.0.faults).arm(spec)
    }

    /// Clears one fault; false when there is none with that id.
    pub fn clear_fault(&self, id: u64) -> bool {
        lock(&self.0.faults).clear(id)
    }

    /// Clears every fault.
    pub fn clear_faults(&self) {
        lock(&self.0.faults).clear_all();
    }

    /// The armed faults.
    pub fn faults(&self) -> Vec<faults::Fault> {
        lock(&self.0.faults).list().to_vec()
    }

    /// The calls received that the filter accepts, oldest first.
    pub fn calls(&self, filter: &CallFilter) -> Vec<CallRecord> {
        lock(&self.0.calls).query(filter)
    }

    /// Counts over the calls received that the filter accepts.
    pub fn call_summary(&self, filter: &CallFilter) -> calllog::CallSummary {
        lock(&self.0.calls).summary(filter)
    }

    /// Forgets the calls received so far.
    pub fn reset_calls(&self) {
        lock(&self.0.calls).reset();
    }

    fn apply_faults(&self, scope: &RequestScope<'_>) -> Effects {
        let now = self.virtual_now();
        lock(&self.0.faults).apply(scope, now)
    }

    /// Sets the KPU quota per application (the model backend only).
    pub fn set_kpu_quota(&self, kpus: u32) -> Result<(), ServiceError> {
        self.with_fleet(|f| f.set_kpu_quota(kpus))
    }

    /// Deletes an application, as `DeleteApplication` would (the model backend only).
    pub fn delete_application(&self, name: &str) -> Result<(), ServiceError> {
        self.with_fleet(|f| f.delete_application(name))
    }

    fn record(&self, record: CallRecord) {
        lock(&self.0.calls).record(record);
    }

    /// A request id shaped like AWS's (a UUID), unique per emulator.
    fn request_id(&self) -> String {
        let n = self.0.requests.fetch_add(1, Ordering::Relaxed);
        let a = self.0.nonce ^ n.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        format!(
            "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
            (a >> 32) as u32,
            (a >> 16) as u16,
            a as u16 & 0x0fff,
            (n >> 48) as u16 & 0x0fff,
            n & 0xffff_ffff_ffff
        )
    }
}

/// A running emulator. Dropping it stops the server.
#[derive(Debug)]
pub struct Emulator {
    addr: SocketAddr,
    state: EmulatorState,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<std::io::Result<()>>>,
}

impl Emulator {
    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The endpoint URL to give the SDKs (`http://127.0.0.1:<port>`).
    pub fn endpoint_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The shared state (fleet, clock, faults, call log).
    pub fn state(&self) -> &EmulatorState {
        &self.state
    }

    /// Stops accepting connections, lets requests in flight finish, and waits.
    pub async fn shutdown(mut self) -> Result<(), EmulatorError> {
        if let Some(tx) = self.shutdown.take() {
            // The server may already have stopped; then there is nobody to tell.
            let _ = tx.send(());
        }
        match self.task.take() {
            Some(task) => task
                .await
                .map_err(EmulatorError::Join)?
                .map_err(EmulatorError::Serve),
            None => Ok(()),
        }
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// The virtual start of `config`: its `start`, or the wall clock rounded down to the minute.
pub fn start_time(config: &EmulatorConfig) -> Timestamp {
    config.start.unwrap_or_else(|| {
        let now = Timestamp::now();
        Timestamp::from_second(now.as_second() - now.as_second().rem_euclid(60)).unwrap_or(now)
    })
}

/// Starts an emulator over the model ([`Fleet`]) in this tokio runtime and returns once it
/// is listening.
pub async fn serve(config: EmulatorConfig) -> Result<Emulator, EmulatorError> {
    let start = start_time(&config);
    let fleet = Fleet::new(config.seed, start).with_region(&config.region);
    serve_backend(config, Box::new(fleet)).await
}

/// Starts an emulator over `backend` (whose virtual time starts at [`start_time`]); the
/// config's scenarios are added to it first.
pub async fn serve_backend(
    config: EmulatorConfig,
    mut fleet: Box<dyn Backend>,
) -> Result<Emulator, EmulatorError> {
    let start = start_time(&config);
    for scenario in &config.scenarios {
        fleet
            .add_scenario(scenario, None)
            .map_err(|source| EmulatorError::Scenario {
                name: scenario.name.clone(),
                source,
            })?;
    }
    let state = EmulatorState::new(fleet, Clock::new(start, config.period));
    let listener = TcpListener::bind(config.bind)
        .await
        .map_err(|source| EmulatorError::Bind {
            addr: config.bind,
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| EmulatorError::Bind {
        addr: config.bind,
        source,
    })?;
    let (tx, rx) = oneshot::channel::<()>();
    let app = router(state.clone()).into_make_service_with_connect_info::<Hangup>();
    let task = tokio::spawn(async move {
        axum::serve(HangupListener(listener), app)
            .with_graceful_shutdown(async move {
                // Either an explicit shutdown or the handle being dropped.
                let _ = rx.await;
            })
            .await
    });
    tracing::info!(%addr, "emulator listening");
    Ok(Emulator {
        addr,
        state,
        shutdown: Some(tx),
        task: Some(task),
    })
}

/// The HTTP routes: AWS on `/` and `/service/...`, control under `/_emulator/`.
pub fn router(state: EmulatorState) -> Router {
    Router::new()
        .route("/", post(root_handler))
        .route(
            "/service/GraniteServiceVersion20100801/operation/{operation}",
            post(cloudwatch_handler),
        )
        .nest("/_emulator", control::router())
        .with_state(state)
}

/// What is known about a request for the call log, filled in as it is understood.
///
/// Every request that arrives is logged once: with the status answered, or, when the client
/// gives up first (its handler is dropped, e.g. while an injected latency waits), as 499
/// `ClientClosedRequest`.
struct Call {
    state: EmulatorState,
    time: Timestamp,
    service: Service,
    protocol: Protocol,
    operation: String,
    applications: Vec<String>,
    metric_queries: Option<usize>,
    credential: Option<auth::Credential>,
    /// Delay between serving and answering (the `responseLatency` fault).
    response_latency: Duration,
    /// Close the connection instead of answering (the `closeConnection` fault): after
    /// serving the request (`Some(true)`) or without serving it (`Some(false)`).
    close_connection: Option<bool>,
    /// Answer without `OperationId` (the `missingOperationId` fault).
    missing_operation_id: bool,
    recorded: bool,
}

impl Call {
    fn new(state: &EmulatorState, service: Service, protocol: Protocol, operation: String) -> Self {
        Self {
            state: state.clone(),
            time: Timestamp::now(),
            service,
            protocol,
            operation,
            applications: Vec::new(),
            metric_queries: None,
            credential: None,
            response_latency: Duration::ZERO,
            close_connection: None,
            missing_operation_id: false,
            recorded: false,
        }
    }

    fn record(&mut self, status: StatusCode, error: Option<&ApiError>) {
        let code = error.map(|e| e.code(self.service).to_string());
        self.record_raw(status.as_u16(), code);
    }

    fn record_raw(&mut self, status: u16, error_code: Option<String>) {
        if std::mem::replace(&mut self.recorded, true) {
            return;
        }
        self.state.record(CallRecord {
            seq: 0,
            time: self.time,
            virtual_time: self.state.virtual_now(),
            service: self.service,
            protocol: self.protocol,
            application: (self.applications.len() == 1).then(|| self.applications[0].clone()),
            applications: std::mem::take(&mut self.applications),
            operation: std::mem::take(&mut self.operation),
            status,
            error_code,
            metric_queries: self.metric_queries,
            access_key_id: self.credential.as_ref().map(|c| c.access_key_id.clone()),
            region: self.credential.take().map(|c| c.region),
        });
    }

    /// Waits out the `responseLatency` fault, after the call is logged as answered.
    async fn answer_late(&self) {
        if !self.response_latency.is_zero() {
            tokio::time::sleep(self.response_latency).await;
        }
    }

    /// Carries out the `closeConnection` fault, if armed for this call: logs the call (with
    /// the status of `result` when the request was served, 444 when it was not, and the
    /// error code `ConnectionClosed`) and closes the connection; the response returned is
    /// never sent. `None` when the call is to be answered: no such fault, or no connection
    /// to close (a request served in process), in which case `result` becomes a 500.
    fn hang_up<T>(
        &mut self,
        hangup: Option<&Hangup>,
        result: &mut Result<T, ApiError>,
        status_of: impl Fn(&ApiError) -> StatusCode,
    ) -> Option<Response> {
        let served = self.close_connection?;
        let Some(hangup) = hangup else {
            *result = Err(ApiError::new(
                ErrorKind::ServerError(500),
                "closeConnection needs a real connection; this request was served in process.",
            ));
            return None;
        };
        let status = match (&*result, served) {
            (_, false) => 444,
            (Ok(_), true) => 200,
            (Err(e), true) => status_of(e).as_u16(),
        };
        self.record_raw(status, Some("ConnectionClosed".into()));
        hangup.hang_up();
        Some(StatusCode::INTERNAL_SERVER_ERROR.into_response())
    }
}

impl Drop for Call {
    fn drop(&mut self) {
        // nginx's code for a request whose client closed the connection first.
        self.record_raw(499, Some("ClientClosedRequest".into()));
    }
}

fn auth_error(e: auth::AuthError) -> ApiError {
    let kind = match e {
        auth::AuthError::Missing => ErrorKind::MissingAuthenticationToken,
        auth::AuthError::Incomplete(_) => ErrorKind::IncompleteSignature,
        auth::AuthError::WrongScope(_) => ErrorKind::InvalidSignature,
    };
    ApiError::new(kind, e.to_string())
}

/// The connection's [`Hangup`] switch, when the request came over the emulator's listener.
type Connection = Option<Extension<ConnectInfo<Hangup>>>;

/// `POST /`: kinesisanalyticsv2, or CloudWatch's awsJson 1.0, by `X-Amz-Target`.
async fn root_handler(
    State(state): State<EmulatorState>,
    connection: Connection,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let hangup = connection.map(|Extension(ConnectInfo(h))| h);
    let target = headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if let Some(operation) = target.strip_prefix(cloudwatch::JSON_TARGET_PREFIX) {
        let operation = operation.to_string();
        return cloudwatch_response(state, operation, headers, body, Protocol::AwsJson1_0, hangup).await;
    }
    kinesis_response(state, headers, body, hangup).await
}

async fn kinesis_response(
    state: EmulatorState,
    headers: HeaderMap,
    body: Bytes,
    hangup: Option<Hangup>,
) -> Response {
    let request_id = state.request_id();
    let target = headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let op = kinesis::Operation::from_target(target);
    let operation = match op {
        Some(op) => op.name().to_string(),
        None => target
            .rsplit('.')
            .next()
            .filter(|s| !s.is_empty())
            .unwrap_or("Unknown")
            .to_string(),
    };
    let mut call = Call::new(&state, Service::KinesisAnalytics, Protocol::AwsJson1_1, operation);
    let mut result = serve_kinesis(&state, &headers, &body, op, target, &mut call).await;
    if let Some(unanswered) = call.hang_up(hangup.as_ref(), &mut result, |e| e.json_wire().status) {
        return unanswered;
    }
    let response = match result {
        Ok(mut json) => {
            call.record(StatusCode::OK, None);
            if call.missing_operation_id
                && let Some(answer) = json.as_object_mut()
            {
                answer.remove("OperationId");
            }
            json_response(StatusCode::OK, &json, &request_id)
        }
        Err(e) => {
            let wire = e.json_wire();
            let body = serde_json::json!({ "__type": wire.error_type, "message": e.message });
            call.record(wire.status, Some(&e));
            json_response(wire.status, &body, &request_id)
        }
    };
    call.answer_late().await;
    response
}

async fn serve_kinesis(
    state: &EmulatorState,
    headers: &HeaderMap,
    body: &[u8],
    op: Option<kinesis::Operation>,
    target: &str,
    call: &mut Call,
) -> Result<serde_json::Value, ApiError> {
    call.credential = Some(auth::check(headers, kinesis::SIGNING_NAME).map_err(auth_error)?);
    let Some(op) = op else {
        let form = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
        let message = if form {
            "This endpoint speaks kinesisanalyticsv2 (awsJson1_1) and CloudWatch over Smithy RPC v2 CBOR; \
             a form-encoded request is the CloudWatch query protocol, which older SDKs speak."
                .to_string()
        } else if target.is_empty() {
            "Missing X-Amz-Target header.".to_string()
        } else {
            format!("Unknown operation {target}.")
        };
        return Err(ApiError::new(ErrorKind::UnknownOperation, message));
    };
    let req = kinesis::decode(op, body)?;
    call.applications = req.application().into_iter().collect();
    let effects = state.apply_faults(&RequestScope {
        service: Service::KinesisAnalytics,
        operation: op.name(),
        applications: &call.applications,
        mutating: op.is_mutating(),
    });
    if !effects.latency.is_zero() {
        tokio::time::sleep(effects.latency).await;
    }
    call.close_connection = effects.close_connection;
    call.missing_operation_id = effects.missing_operation_id;
    if effects.close_connection == Some(false) {
        // Closed before the request is served: it never takes effect.
        return Ok(serde_json::Value::Null);
    }
    if let Some(e) = effects.error {
        return Err(e);
    }
    let stuck = if op == kinesis::Operation::ListApplications {
        kinesis::Stuck::scopes(lock(&state.0.faults).stuck_scopes())
    } else if effects.stuck_updating {
        kinesis::Stuck::this()
    } else {
        kinesis::Stuck::none()
    };
    let injected = kinesis::Injected {
        stuck,
        busy: effects.busy,
        fail_operation: effects.fail_operation,
    };
    // Served first, answered late (by the caller, once the call is logged): a client that
    // gives up meanwhile cannot tell that it took effect.
    call.response_latency = effects.response_latency;
    on_fleet(state, move |fleet| kinesis::execute(fleet, req, &injected)).await
}

fn json_response(status: StatusCode, body: &serde_json::Value, request_id: &str) -> Response {
    let mut response = (status, body.to_string()).into_response();
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-amz-json-1.1"),
    );
    if let Ok(id) = HeaderValue::from_str(request_id) {
        h.insert("x-amzn-requestid", id);
    }
    response
}

async fn cloudwatch_handler(
    State(state): State<EmulatorState>,
    UrlPath(operation): UrlPath<String>,
    connection: Connection,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let hangup = connection.map(|Extension(ConnectInfo(h))| h);
    cloudwatch_response(state, operation, headers, body, Protocol::RpcV2Cbor, hangup).await
}

async fn cloudwatch_response(
    state: EmulatorState,
    operation: String,
    headers: HeaderMap,
    body: Bytes,
    protocol: Protocol,
    hangup: Option<Hangup>,
) -> Response {
    let request_id = state.request_id();
    let op = cloudwatch::Operation::from_name(&operation);
    let mut call = Call::new(&state, Service::CloudWatch, protocol, operation.clone());
    let mut result = serve_cloudwatch(&state, &headers, &body, op, &operation, protocol, &mut call).await;
    if let Some(unanswered) = call.hang_up(hangup.as_ref(), &mut result, |e| e.cbor_wire().status) {
        return unanswered;
    }
    let response = match result {
        Ok(item) => {
            call.record(StatusCode::OK, None);
            match protocol {
                Protocol::AwsJson1_0 => {
                    cloudwatch_json_response(StatusCode::OK, &item.to_json(), &request_id, None)
                }
                _ => cbor_response(StatusCode::OK, item.encode(), &request_id, None),
            }
        }
        Err(e) => {
            let wire = e.cbor_wire();
            call.record(wire.status, Some(&e));
            match protocol {
                Protocol::AwsJson1_0 => {
                    let body = serde_json::json!({ "__type": wire.error_type, "message": e.message });
                    cloudwatch_json_response(wire.status, &body, &request_id, wire.query_error)
                }
                _ => {
                    let body = cbor::Cbor::Map(vec![
                        ("__type".into(), cbor::Cbor::text(wire.error_type)),
                        ("message".into(), cbor::Cbor::text(&e.message)),
                    ]);
                    cbor_response(wire.status, body.encode(), &request_id, wire.query_error)
                }
            }
        }
    };
    call.answer_late().await;
    response
}

#[allow(clippy::too_many_arguments)]
async fn serve_cloudwatch(
    state: &EmulatorState,
    headers: &HeaderMap,
    body: &[u8],
    op: Option<cloudwatch::Operation>,
    operation: &str,
    protocol: Protocol,
    call: &mut Call,
) -> Result<cbor::Cbor, ApiError> {
    call.credential = Some(auth::check(headers, cloudwatch::SIGNING_NAME).map_err(auth_error)?);
    let Some(op) = op else {
        return Err(ApiError::new(
            ErrorKind::UnknownOperation,
            format!("The emulator does not serve CloudWatch operation {operation}."),
        ));
    };
    let body = decompress(headers, body)?;
    let req = match protocol {
        Protocol::AwsJson1_0 => cloudwatch::decode_json(op, &body)?,
        _ => cloudwatch::decode(op, &body)?,
    };
    call.applications = req.applications();
    call.metric_queries = req.metric_queries();
    let effects = state.apply_faults(&RequestScope {
        service: Service::CloudWatch,
        operation: op.name(),
        applications: &call.applications,
        mutating: op == cloudwatch::Operation::PutMetricData,
    });
    if !effects.latency.is_zero() {
        tokio::time::sleep(effects.latency).await;
    }
    call.close_connection = effects.close_connection;
    if effects.close_connection == Some(false) {
        // Closed before the request is served: a PutMetricData never takes effect.
        return Ok(cbor::Cbor::Map(Vec::new()));
    }
    if let Some(e) = effects.error {
        return Err(e);
    }
    let masks = effects.metric_masks;
    call.response_latency = effects.response_latency;
    on_fleet(state, move |fleet| cloudwatch::execute(fleet, &req, &masks)).await
}

fn cloudwatch_json_response(
    status: StatusCode,
    body: &serde_json::Value,
    request_id: &str,
    query_error: Option<&str>,
) -> Response {
    let mut response = (status, body.to_string()).into_response();
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-amz-json-1.0"),
    );
    if let Ok(id) = HeaderValue::from_str(request_id) {
        h.insert("x-amzn-requestid", id);
    }
    if let Some(q) = query_error.and_then(|q| HeaderValue::from_str(q).ok()) {
        h.insert("x-amzn-query-error", q);
    }
    response
}

/// Runs `f` on the fleet (advanced to the virtual now) off the async workers: stepping many
/// applications through a long idle stretch of virtual time is CPU work.
async fn on_fleet<T: Send + 'static>(
    state: &EmulatorState,
    f: impl FnOnce(&mut dyn Backend) -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    let state = state.clone();
    tokio::task::spawn_blocking(move || state.with_fleet(f))
        .await
        .map_err(|e| ApiError::new(ErrorKind::ServerError(500), format!("The model failed: {e}")))?
}

/// PutMetricData bodies may arrive gzip-compressed (both SDKs compress above 10 KiB).
fn decompress<'a>(headers: &HeaderMap, body: &'a [u8]) -> Result<std::borrow::Cow<'a, [u8]>, ApiError> {
    let gzip = headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|e| e.trim().eq_ignore_ascii_case("gzip")));
    if !gzip {
        return Ok(std::borrow::Cow::Borrowed(body));
    }
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(body)
        .take(MAX_BODY as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| {
            ApiError::new(
                ErrorKind::Serialization,
                format!("Cannot gunzip the request body: {e}"),
            )
        })?;
    if out.len() > MAX_BODY {
        return Err(ApiError::new(
            ErrorKind::Serialization,
            format!("The decompressed request body exceeds {MAX_BODY} bytes."),
        ));
    }
    Ok(std::borrow::Cow::Owned(out))
}

fn cbor_response(status: StatusCode, body: Vec<u8>, request_id: &str, query_error: Option<&str>) -> Response {
    let mut response = (status, Body::from(body)).into_response();
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/cbor"));
    h.insert("smithy-protocol", HeaderValue::from_static("rpc-v2-cbor"));
    if let Ok(id) = HeaderValue::from_str(request_id) {
        h.insert("x-amzn-requestid", id);
    }
    if let Some(q) = query_error.and_then(|q| HeaderValue::from_str(q).ok()) {
        h.insert("x-amzn-query-error", q);
    }
    response
}

/// Loads scenario files, expanding directories to their `*.yaml`/`*.yml` files (sorted).
pub fn load_scenarios(paths: &[PathBuf]) -> anyhow::Result<Vec<Scenario>> {
    let mut files = Vec::new();
    for path in paths {
        if path.is_dir() {
            let mut found: Vec<PathBuf> = std::fs::read_dir(path)
                .with_context(|| format!("cannot read directory {}", path.display()))?
                .filter_map(|entry| entry.ok().map(|e| e.path()))
                .filter(|p| is_scenario_file(p))
                .collect();
            found.sort();
            files.extend(found);
        } else {
            files.push(path.clone());
        }
    }
    files
        .iter()
        .map(|f| Scenario::load(f).map_err(anyhow::Error::from))
        .collect()
}

fn is_scenario_file(p: &Path) -> bool {
    p.is_file() && p.extension().is_some_and(|e| e == "yaml" || e == "yml")
}

/// Runs `checkpoint-autoscaler emulator` until Ctrl-C (or SIGTERM).
pub fn run(args: EmulatorArgs) -> anyhow::Result<ExitCode> {
    let scenarios = load_scenarios(&args.scenarios)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the tokio runtime")?;
    runtime.block_on(async move {
        let mut config = EmulatorConfig {
            bind: SocketAddr::new(args.bind, args.port),
            period: Some(args.period).filter(|p| !p.is_zero()),
            seed: args.seed,
            start: None,
            region: args.region,
            scenarios,
        };
        // One virtual start for the clock and the backend.
        config.start = Some(start_time(&config));
        let emulator = match args.backend {
            BackendKind::Model => serve(config).await?,
            BackendKind::Flink => {
                let home = crate::flink::FlinkHome::locate(args.flink_home.as_deref())?;
                let options = crate::flink::BackendOptions {
                    seed: config.seed,
                    region: config.region.clone(),
                    ..crate::flink::BackendOptions::default()
                };
                let fleet = crate::flink::FlinkFleet::new(home, options, start_time(&config))?;
                serve_backend(config, Box::new(fleet)).await?
            }
        };
        {
            use std::io::Write as _;
            let mut out = std::io::stdout().lock();
            writeln!(out, "{}", emulator.endpoint_url()).context("cannot write the address to stdout")?;
            out.flush().context("cannot flush stdout")?;
        }
        eprintln!(
            "emulator: kinesisanalyticsv2 and CloudWatch at {url}, control API at {url}/_emulator/ (Ctrl-C stops)",
            url = emulator.endpoint_url()
        );
        shutdown_signal().await;
        emulator.shutdown().await?;
        Ok(ExitCode::SUCCESS)
    })
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        let term = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut s) => {
                    s.recv().await;
                }
                // Without a SIGTERM handler the default action still ends the process.
                Err(_) => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {},
            _ = term => {},
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_clock_maps_a_period_of_real_time_to_a_virtual_minute() {
        let start = Timestamp::from_second(1_767_571_200).unwrap();
        let clock = Clock::new(start, Some(Duration::from_millis(10)));
        std::thread::sleep(Duration::from_millis(20));
        // At least two virtual minutes have passed; the upper bound is not asserted (timing).
        assert!(clock.now() >= start + SignedDuration::from_secs(120));
    }

    #[test]
    fn a_frozen_clock_moves_only_when_advanced() {
        let start = Timestamp::from_second(1_767_571_200).unwrap();
        let clock = Clock::new(start, None);
        assert_eq!(clock.now(), start);
        clock.advance(Duration::from_secs(600));
        assert_eq!(clock.now(), start + SignedDuration::from_secs(600));
        assert_eq!(Clock::new(start, Some(Duration::ZERO)).period(), None);
    }

    #[test]
    fn gzip_bodies_are_decompressed() {
        use std::io::Write as _;
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        enc.write_all(b"hello").unwrap();
        let gz = enc.finish().unwrap();
        let mut headers = HeaderMap::new();
        assert_eq!(&*decompress(&headers, &gz).unwrap(), gz.as_slice());
        headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        assert_eq!(&*decompress(&headers, &gz).unwrap(), b"hello");
        assert_eq!(
            decompress(&headers, b"not gzip").unwrap_err().kind,
            ErrorKind::Serialization
        );
    }

    #[test]
    fn request_ids_are_unique_and_uuid_shaped() {
        let state = EmulatorState::new(
            Box::new(Fleet::new(0, Timestamp::UNIX_EPOCH)),
            Clock::new(Timestamp::UNIX_EPOCH, None),
        );
        let a = state.request_id();
        let b = state.request_id();
        assert_ne!(a, b);
        assert_eq!(a.len(), 36);
        assert_eq!(a.matches('-').count(), 4);
    }
}
