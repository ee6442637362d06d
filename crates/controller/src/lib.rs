//! The controller: a `kube::runtime::Controller` over `CheckpointBudget`s that runs the
//! reconcile core ([`reconcile::Reconciler`]) for each budget, and the `run` subcommand around it
//! (leader election, `/metrics`, `/healthz`, `/readyz`, graceful shutdown).
//!
//! - [`decode`]: budgets decoded one by one, so a malformed one cannot stall the rest.
//! - [`reconcile`](mod@reconcile): observe → decide → act → record, shared with `demo`.
//! - [`status`]: conditions and bounded history.
//! - [`store`]: status and Events, on the cluster or in memory.
//! - [`tenancy`]: which budgets may act on which applications.
//! - [`ownership`]: which of several budgets naming one application acts on it.
//! - [`operation`]: the state machine of an operation in flight (pure).
//! - [`snapshots`]: whether a restart keeps the state; snapshots against the quota (pure).
//! - [`leader`]: leader election on a Lease.
//! - [`fence`]: acting only under a Lease that outlasts the action.
//! - [`kubeclient`]: the Kubernetes client, with a time bound on every call.
//! - [`server`]: the HTTP endpoints.

pub mod decode;
pub mod fence;
/// Fakes of the AWS side and a mocked API server, for this crate's tests and the
/// test-support crate (feature `testing`).
#[cfg(any(test, feature = "testing"))]
pub mod fixtures;
pub mod kubeclient;
pub mod leader;
pub mod limited;
/// Prometheus metrics.
pub mod metrics;
pub mod operation;
pub mod ownership;
/// `recommend`: a one-shot evaluation of a live application; changes nothing.
pub mod recommend;
pub mod reconcile;
pub mod server;
pub mod snapshots;
pub mod status;
pub mod store;
/// Logging setup.
pub mod telemetry;
pub mod tenancy;

use checkpoint_autoscaler_api::{cost, crd, validate};
use checkpoint_autoscaler_aws as aws;
use checkpoint_autoscaler_policy as policy;

use std::{
    collections::HashMap,
    net::SocketAddr,
    path::PathBuf,
    process::ExitCode,
    sync::{Arc, Mutex},
    time::Duration,
};

use anyhow::Context as _;
use clap::Args;
use futures::{FutureExt, StreamExt};
use jiff::Timestamp;
use kube::{
    Client, ResourceExt,
    api::{Api, DynamicObject, ListParams},
    runtime::{
        Controller, WatchStreamExt,
        controller::Action,
        events::{Recorder, Reporter},
        predicates, reflector, watcher,
    },
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tokio::sync::watch;
use tracing::{error, info, warn};

use crate::{
    aws::{AwsClients, AwsError, AwsSettings, BatchConfig, BatchedMetrics, KinesisControl},
    crd::CheckpointBudget,
    metrics::{AwsCallLabels, AwsCallSource, Metrics},
    telemetry::LogFormat,
};
use leader::{LeaderElector, LeaseConfig, Role};
use reconcile::{BudgetView, Reconciler};
use store::{BudgetKey, KubeStore};
use tenancy::TenancyMode;

/// The name the controller reports Events under.
pub const CONTROLLER_NAME: &str = "checkpoint-autoscaler";

/// Why a reconcile failed. The status already says so; this decides when to try again.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The spec bypassed the schema and cannot be acted on; waits for a change.
    #[error("invalid spec: {0}")]
    InvalidSpec(String),
    /// The tenancy policy forbids this budget to manage the application.
    #[error("forbidden: {0}")]
    Forbidden(String),
    /// An older budget names the same application and owns it.
    #[error("conflict: {0}")]
    Conflict(String),
    /// An AWS call failed.
    #[error("AWS: {0}")]
    Aws(#[source] AwsError),
    /// Writing status failed.
    #[error("status: {0}")]
    Store(#[source] store::StoreError),
    /// The budget has no namespace (it is a namespaced resource; this is a broken object).
    #[error("the budget has no namespace")]
    MissingNamespace,
    /// This replica does not hold the Lease for long enough to act: nothing was done.
    #[error("not acting without the Lease: {0}")]
    Fenced(#[source] fence::Fenced),
}

/// How soon to retry after an error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Retry {
    /// Only a spec change can help.
    AwaitChange,
    /// Throttling, AWS or the API server unavailable: soon, with backoff.
    Soon,
    /// Needs a person (missing application, access, tenancy): slowly, with backoff.
    Slowly,
    /// Waits for another budget to go away: at the regular interval, without backoff, so
    /// the takeover comes within one interval of the owner's deletion.
    Interval,
}

impl Error {
    /// A snake_case label for the failure metric.
    pub fn metric_label(&self) -> String {
        match self {
            Error::InvalidSpec(_) => "invalid_spec".into(),
            Error::Forbidden(_) => "forbidden".into(),
            Error::Conflict(_) => "conflict".into(),
            Error::Aws(e) => format!("aws_{}", snake(e.reason())),
            Error::Fenced(_) | Error::Store(store::StoreError::Fenced(_)) => "fenced".into(),
            Error::Store(store::StoreError::Conflict(_)) => "status_conflict".into(),
            Error::Store(_) => "status_write".into(),
            Error::MissingNamespace => "missing_namespace".into(),
        }
    }

    /// When to retry after the `failures`-th consecutive failure (counting from 1), before
    /// jitter: throttling and unavailable services soon (5 s doubling to 5 min), what needs
    /// a person slowly (`interval`, at least 30 s, doubling to 15 min), a conflict with an
    /// older budget at every `interval` (so the takeover is prompt); `None` when only a
    /// change to the budget can help. Test drivers of the core use it to requeue as the
    /// controller would.
    pub fn retry_after(&self, failures: u32, interval: Duration) -> Option<Duration> {
        match self.retry() {
            Retry::AwaitChange => None,
            Retry::Soon => Some(exponential(
                failures,
                Duration::from_secs(5),
                Duration::from_secs(300),
            )),
            Retry::Slowly => Some(exponential(
                failures,
                interval.max(Duration::from_secs(30)),
                Duration::from_secs(900),
            )),
            Retry::Interval => Some(interval),
        }
    }

    fn retry(&self) -> Retry {
        match self {
            Error::InvalidSpec(_) | Error::MissingNamespace => Retry::AwaitChange,
            Error::Aws(e) if e.is_transient() => Retry::Soon,
            Error::Store(_) | Error::Fenced(_) => Retry::Soon,
            Error::Aws(_) | Error::Forbidden(_) => Retry::Slowly,
            Error::Conflict(_) => Retry::Interval,
        }
    }
}

/// `base * 2^(n-1)`, capped.
fn exponential(n: u32, base: Duration, cap: Duration) -> Duration {
    base.saturating_mul(1u32 << n.saturating_sub(1).min(16)).min(cap)
}

/// `ApplicationNotFound` → `application_not_found`.
fn snake(camel: &str) -> String {
    let mut out = String::with_capacity(camel.len() + 4);
    for (i, c) in camel.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// Consecutive failures per budget, for exponential backoff; reset by a success.
pub struct Backoff {
    failures: Mutex<HashMap<String, u32>>,
    jitter: Mutex<ChaCha8Rng>,
}

impl Default for Backoff {
    fn default() -> Self {
        // Jitter needs no cryptographic seed, only one that differs between replicas.
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or_default()
            ^ u64::from(std::process::id());
        Self {
            failures: Mutex::default(),
            jitter: Mutex::new(ChaCha8Rng::seed_from_u64(seed)),
        }
    }
}

impl Backoff {
    /// `delay` plus up to 20% jitter, so budgets failing together (an AWS throttle, an API
    /// server restart) do not retry in lockstep.
    fn jittered(&self, delay: Duration) -> Duration {
        let jitter = self
            .jitter
            .lock()
            .map(|mut r| r.random_range(0.0..0.2))
            .unwrap_or(0.1);
        delay.mul_f64(1.0 + jitter)
    }

    fn bump(&self, key: &str) -> u32 {
        let Ok(mut failures) = self.failures.lock() else {
            return 1;
        };
        let n = failures.entry(key.to_owned()).or_insert(0);
        *n = n.saturating_add(1);
        *n
    }

    fn reset(&self, key: &str) {
        if let Ok(mut failures) = self.failures.lock() {
            failures.remove(key);
        }
    }

    /// Forgets the budgets `live` does not name.
    fn retain(&self, live: &std::collections::BTreeSet<String>) {
        if let Ok(mut failures) = self.failures.lock() {
            failures.retain(|key, _| live.contains(key));
        }
    }
}

/// What every reconcile shares.
#[derive(Clone)]
pub struct Context {
    /// Kubernetes client.
    pub client: Client,
    /// Event recorder (one for the process, so repeated Events fold into series).
    pub recorder: Recorder,
    /// The reconcile core (AWS clients, tenancy, metrics, timing).
    pub core: Reconciler,
    /// Prometheus metrics.
    pub metrics: Metrics,
    /// Consecutive failures per budget.
    pub backoff: Arc<Backoff>,
    /// The clock (real time in the cluster; tests pin it).
    pub clock: Arc<dyn Fn() -> Timestamp + Send + Sync>,
    /// The budgets whose status cannot be read (see [`decode`]): left alone.
    pub unreadable: Arc<decode::UnreadableStatuses>,
}

/// How long the deletion of a budget may wait for the application to be given back
/// ([`reconcile::Reconciler::hand_back`]) before the controller gives up (with a Warning Event)
/// and lets the deletion complete: AWS errors never hold a budget forever.
pub const HAND_BACK_DEADLINE: Duration = Duration::from_secs(10 * 60);

/// The deletion of a budget that carries the controller's finalizer: the application is
/// given back, then the finalizer is removed (so the API server completes the deletion),
/// at the latest [`HAND_BACK_DEADLINE`] after the deletion began.
async fn delete(budget: &CheckpointBudget, key: &BudgetKey, ctx: &Context) -> Result<Action, Error> {
    let finalized = budget
        .metadata
        .finalizers
        .as_ref()
        .is_some_and(|f| f.iter().any(|f| f == store::FINALIZER));
    if !finalized {
        return Ok(Action::await_change());
    }
    let store = KubeStore::new(ctx.client.clone(), ctx.recorder.clone(), budget);
    let view = BudgetView {
        key: key.clone(),
        generation: budget.metadata.generation,
        spec: &budget.spec,
        status: budget.status.as_ref(),
        resource_version: budget.metadata.resource_version.clone(),
    };
    let outcome = ctx.core.hand_back(&view, &store).await;
    let now = (ctx.clock)();
    let since = budget.metadata.deletion_timestamp.as_ref().map_or(now, |t| t.0);
    let overdue =
        now.duration_since(since) >= jiff::SignedDuration::try_from(HAND_BACK_DEADLINE).unwrap_or_default();
    match outcome {
        Ok(done) => info!(budget = %key, ?done, "handed back; removing the finalizer"),
        Err(e) if !overdue => return Err(e),
        Err(e) => {
            let note = format!(
                "The application could not be given back within {} of the deletion ({e}); the \
                 budget is deleted anyway and the application left as it is. Check the service's own \
                 autoscaling (AutoScalingEnabled) of {}.",
                crate::crd::format_duration(HAND_BACK_DEADLINE),
                budget.spec.application.name
            );
            warn!(budget = %key, error = %e, "hand-back abandoned");
            let notice = store::Notice {
                type_: store::NoticeType::Warning,
                reason: "HandBackAbandoned".into(),
                action: "Deleting".into(),
                note,
            };
            if let Err(e) = store::BudgetStore::publish(&store, key, &notice).await {
                warn!(budget = %key, error = %e, "event not published");
            }
        }
    }
    store
        .remove_finalizer(key, budget.metadata.resource_version.as_deref())
        .await
        .map_err(Error::Store)?;
    Ok(Action::await_change())
}

/// Reconciles one budget: the core, timed and counted.
#[tracing::instrument(skip(budget, ctx), fields(budget = %format!("{}/{}", budget.namespace().unwrap_or_default(), budget.name_any())))]
pub async fn reconcile(budget: Arc<CheckpointBudget>, ctx: Arc<Context>) -> Result<Action, Error> {
    let _timer = ctx.metrics.reconcile.count_and_measure();
    let namespace = budget.namespace().ok_or(Error::MissingNamespace)?;
    let key = BudgetKey::new(namespace, budget.name_any());
    if budget.metadata.deletion_timestamp.is_some() {
        // NB: a budget being deleted never scales; it only gives the application back.
        let action = delete(&budget, &key, &ctx).await?;
        ctx.backoff.reset(&key.to_string());
        return Ok(action);
    }
    if ctx.unreadable.get(&key).is_some() {
        // NB: a reconcile would replace a status it cannot read (and the operation in
        // flight it may hold); the decoder has reported it. Looked at again each interval,
        // in case the status was fixed without a spec change.
        tracing::debug!(budget = %key, "status unreadable; not reconciled");
        return Ok(Action::requeue(ctx.core.interval));
    }
    let store = fence::FencedStore::new(
        KubeStore::new(ctx.client.clone(), ctx.recorder.clone(), &budget),
        ctx.core.fence.clone(),
    );
    let view = BudgetView {
        key: key.clone(),
        generation: budget.metadata.generation,
        spec: &budget.spec,
        status: budget.status.as_ref(),
        resource_version: budget.metadata.resource_version.clone(),
    };
    let report = ctx.core.reconcile(&view, &store, (ctx.clock)()).await?;
    ctx.backoff.reset(&key.to_string());
    Ok(Action::requeue(report.requeue_after))
}

/// Classifies a failed reconcile: counts it, and picks when to try again.
pub fn error_policy(budget: Arc<CheckpointBudget>, error: &Error, ctx: Arc<Context>) -> Action {
    match ctx.on_error(&budget, error) {
        Some(delay) => Action::requeue(delay),
        None => Action::await_change(),
    }
}

impl Context {
    /// Forgets what the process keeps per budget — failure counters (their label sets leave
    /// `/metrics`), backoff counts, unreadable statuses — for every budget not in `live`
    /// (`namespace/name`): memory follows the budgets that exist, not every one ever seen.
    pub fn prune(&self, live: &std::collections::BTreeSet<String>) {
        self.metrics.reconcile.retain_budgets(live);
        self.backoff.retain(live);
        self.unreadable.retain(live);
    }

    /// Counts a failed reconcile of `budget` and returns when to retry (`None`: only a
    /// change to the budget can help).
    pub fn on_error(&self, budget: &CheckpointBudget, error: &Error) -> Option<Duration> {
        let key = format!("{}/{}", budget.namespace().unwrap_or_default(), budget.name_any());
        self.metrics.reconcile.set_failure(&key, &error.metric_label());
        let n = self.backoff.bump(&key);
        let delay = error
            .retry_after(n, self.core.interval)
            .map(|d| self.backoff.jittered(d));
        warn!(budget = %key, error = %error, failures = n, retry_in = ?delay, "reconcile failed");
        delay
    }
}

/// `checkpoint-autoscaler run`: the controller.
#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// Watch budgets in this namespace only (default: all namespaces).
    #[arg(long, env = "WATCH_NAMESPACE")]
    pub namespace: Option<String>,
    /// How often each budget is evaluated (the policy may ask for sooner, e.g. while an
    /// operation is in flight).
    #[arg(long, default_value = "1m", value_parser = crate::policy::duration::parse)]
    pub interval: Duration,
    /// Act only while holding a coordination.k8s.io Lease, so replicas never both act.
    #[arg(long)]
    pub leader_election: bool,
    /// Namespace of the Lease (default: the pod's namespace from POD_NAMESPACE, else
    /// `default`).
    #[arg(long, env = "POD_NAMESPACE")]
    pub leader_election_namespace: Option<String>,
    /// Name of the Lease.
    #[arg(long, default_value = "checkpoint-autoscaler")]
    pub lease_name: String,
    /// This replica's identity in the Lease (default: POD_NAME, else the hostname).
    #[arg(long, env = "POD_NAME")]
    pub leader_identity: Option<String>,
    /// How long a Lease record must stay unchanged before a standby takes over. Must exceed
    /// the renew deadline, and a retry period plus an UpdateApplication's bound (10 s) plus
    /// the fence's 5 s margin.
    #[arg(long, default_value = "30s", value_parser = crate::policy::duration::parse)]
    pub lease_duration: Duration,
    /// How long the leader keeps failing to renew before it steps down (and stops acting).
    #[arg(long, default_value = "20s", value_parser = crate::policy::duration::parse)]
    pub lease_renew_deadline: Duration,
    /// Time between attempts to acquire or renew the Lease.
    #[arg(long, default_value = "2s", value_parser = crate::policy::duration::parse)]
    pub lease_retry_period: Duration,
    /// Limit on every Kubernetes request but watches (Lease, status, Events), retries
    /// included.
    #[arg(long, default_value = "10s", value_parser = crate::policy::duration::parse)]
    pub kube_timeout: Duration,
    /// On SIGTERM, how long the reconciles in flight may take to finish before the process
    /// exits anyway (then without releasing the Lease, which expires by itself). Keep it
    /// below the pod's terminationGracePeriodSeconds minus the time to release the Lease
    /// (up to the renew deadline).
    #[arg(long, default_value = "20s", value_parser = crate::policy::duration::parse)]
    pub shutdown_grace: Duration,
    /// Address of the HTTP server for /metrics, /healthz and /readyz.
    #[arg(long, default_value = "0.0.0.0:8080")]
    pub http_addr: SocketAddr,
    /// Log line format.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Send AWS requests to this endpoint instead of AWS (e.g. the emulator).
    #[arg(long, env = "AWS_ENDPOINT_URL")]
    pub aws_endpoint_url: Option<String>,
    /// AWS region for budgets that name none.
    #[arg(long, env = "AWS_REGION")]
    pub region: Option<String>,
    /// The AWS account of the controller's own credentials (twelve digits): the account of
    /// budgets that name no role, which allow-list entries are matched in. Without it the
    /// controller asks STS GetCallerIdentity once (no IAM permission needed). Give it where
    /// there is no STS (the emulator's account is 123456789012).
    #[arg(long, value_parser = parse_account_id)]
    pub aws_account_id: Option<String>,
    /// Tenancy policy: `tag` (the application must carry the tag
    /// `checkpoint-autoscaler.dev/namespace=<namespace>`) or `allow-list` (see
    /// --tenancy-config).
    #[arg(long, value_enum, default_value_t = TenancyMode::Tag)]
    pub tenancy: TenancyMode,
    /// The allow-list file: per namespace, the applications as ARN patterns
    /// (`arn:aws:kinesisanalytics:<region>:<account>:application/<name>`, `*` for any run of
    /// characters in a segment; read under `allow-list` only) and the role ARNs its budgets
    /// may name in spec.application.roleArn (read under both policies; without the file no
    /// budget may name a role). Required with `--tenancy allow-list`.
    #[arg(long)]
    pub tenancy_config: Option<PathBuf>,
    /// Price one KPU-hour at this amount, optionally with a currency code (`0.11`,
    /// `0.11 USD`): each budget's status then shows what the running and the recommended
    /// configuration cost a month. Unset: KPUs and KPU-hours only (prices differ per region;
    /// none is assumed).
    #[arg(long, value_name = "PRICE", env = "KPU_HOUR_PRICE")]
    pub kpu_hour_price: Option<crate::cost::KpuHourPrice>,
}

/// `--aws-account-id`: twelve digits.
fn parse_account_id(text: &str) -> Result<String, String> {
    if crate::aws::is_account_id(text) {
        Ok(text.to_owned())
    } else {
        Err(format!("{text:?} is not an AWS account id (twelve digits)"))
    }
}

impl RunArgs {
    /// The AWS settings of the flags.
    pub fn aws_settings(&self) -> AwsSettings {
        AwsSettings {
            region: self.region.clone(),
            endpoint_url: self.aws_endpoint_url.clone(),
            account_id: self.aws_account_id.clone(),
            ..AwsSettings::default()
        }
    }

    /// The Kubernetes client's timeouts.
    pub fn kube_timeouts(&self) -> kubeclient::KubeTimeouts {
        kubeclient::KubeTimeouts {
            request: self.kube_timeout,
            ..kubeclient::KubeTimeouts::default()
        }
    }

    /// The fence's bounds: an UpdateApplication's, a Kubernetes write's, and the margin.
    pub fn fence_bounds(&self) -> fence::FenceBounds {
        fence::FenceBounds {
            update: self.aws_settings().update_bound(),
            write: self.kube_timeout,
            margin: FENCE_MARGIN,
        }
    }

    /// The leader election of the flags for the replica `identity` (`None` when off).
    pub fn lease_config(&self, identity: &str) -> Option<LeaseConfig> {
        self.leader_election.then(|| LeaseConfig {
            lease_duration: self.lease_duration,
            renew_deadline: self.lease_renew_deadline,
            retry_period: self.lease_retry_period,
            ..LeaseConfig::new(
                self.leader_election_namespace
                    .clone()
                    .unwrap_or_else(|| "default".into()),
                self.lease_name.clone(),
                identity,
            )
        })
    }
}

/// Exposes the AWS clients' counters to Prometheus.
struct ClientStats(Arc<AwsClients>);

impl AwsCallSource for ClientStats {
    fn calls(&self) -> Vec<(AwsCallLabels, u64)> {
        self.0
            .stats()
            .snapshot()
            .calls
            .into_iter()
            .map(|(op, n)| {
                (
                    AwsCallLabels {
                        service: op.service().to_owned(),
                        operation: op.name().to_owned(),
                    },
                    n,
                )
            })
            .collect()
    }

    fn metrics_requested(&self) -> u64 {
        self.0.stats().snapshot().metrics_requested
    }
}

/// Selects rustls' process-wide crypto provider for the Kubernetes client.
///
/// NB: the dependency tree enables both of rustls' providers (`ring` for kube,
/// `aws-lc-rs` for the AWS SDK, which configures its own), and rustls then refuses to guess
/// a process default: without this the first TLS connection to the API server panics.
pub fn install_crypto_provider() {
    // An error means a provider is already installed, which is just as good.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Runs `checkpoint-autoscaler run` to completion.
pub fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    telemetry::init(args.log_format);
    install_crypto_provider();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(run_async(args))
}

/// How the budget watch runs.
#[derive(Clone, Debug)]
pub struct WatchOptions {
    /// The watch's server-side timeout (`timeoutSeconds`).
    pub timeout: Duration,
    /// Where the watch's progress is recorded (for `/healthz`), if anywhere: it is marked
    /// running while the controller runs.
    pub progress: Option<kubeclient::WatchProgress>,
}

impl Default for WatchOptions {
    fn default() -> Self {
        Self {
            timeout: kubeclient::KubeTimeouts::default().watch,
            progress: None,
        }
    }
}

/// Runs the `kube::runtime::Controller` over `budgets` until `stop` resolves (then lets the
/// reconciles in flight finish), with the default [`WatchOptions`].
pub async fn run_controller(
    budgets: Api<CheckpointBudget>,
    ctx: Arc<Context>,
    stop: impl Future<Output = ()> + Send + Sync + 'static,
) {
    run_controller_with(budgets, ctx, stop, WatchOptions::default()).await
}

/// Runs the `kube::runtime::Controller` over `budgets` until `stop` resolves: from then on
/// no reconcile starts, the watch ends, and the future resolves once the reconciles in
/// flight have finished (the caller bounds that wait).
///
/// Reconciles are triggered by spec changes only (`metadata.generation`): the controller's
/// own status writes do not trigger another reconcile; the periodic requeue does the rest.
///
/// The core's [`Claims`](ownership::Claims) are the reflector store's budgets (whatever
/// `ctx.core.claims` was): ownership is judged among every budget the controller watches.
pub async fn run_controller_with(
    budgets: Api<CheckpointBudget>,
    ctx: Arc<Context>,
    stop: impl Future<Output = ()> + Send + Sync + 'static,
    options: WatchOptions,
) {
    let (reader, writer) = reflector::store();
    // The per-budget gauges read the budgets' status from the same store.
    ctx.metrics.set_budget_source(Arc::new(reader.clone()));
    let ctx = {
        let mut ctx = Context::clone(&ctx);
        ctx.core.claims = Arc::new(ownership::StoreClaims(reader.clone()));
        Arc::new(ctx)
    };
    // NB: watched untyped and decoded per object (see `decode`): a typed watch fails the
    // whole list on one malformed budget and so stalls every other.
    let resource = decode::api_resource();
    let raw: Api<DynamicObject> = match budgets.namespace() {
        Some(ns) => Api::namespaced_with(budgets.clone().into_client(), ns, &resource),
        None => Api::all_with(budgets.into_client(), &resource),
    };
    let decoder = Arc::new(decode::Decoder::new(ctx.clone(), reader.clone()));
    // The reports of undecodable budgets are written beside the stream, never in it.
    let _reports = AbortOnDrop(tokio::spawn({
        let decoder = decoder.clone();
        async move { decoder.write_reports().await }
    }));
    let seconds = u32::try_from(options.timeout.as_secs().max(1)).unwrap_or(u32::MAX);
    let stream = watcher(raw, watcher::Config::default().any_semantic().timeout(seconds))
        .default_backoff()
        .filter_map(move |event| {
            futures::future::ready(match event {
                Ok(event) => decoder.event(event).map(Ok),
                Err(e) => Some(Err(e)),
            })
        })
        .reflect(writer)
        .applied_objects()
        .predicate_filter(predicates::generation, Default::default());
    let _watching = options.progress.map(Watching::start);
    // What the process keeps per budget follows the budgets that exist: pruned every
    // interval against the reflector's view (a deletion seen as a re-list included).
    let pruning = {
        let ctx = ctx.clone();
        let reader = reader.clone();
        async move {
            let mut every = tokio::time::interval(ctx.core.interval.max(Duration::from_secs(1)));
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                every.tick().await;
                if reader.wait_until_ready().await.is_err() {
                    continue;
                }
                let live: std::collections::BTreeSet<String> = reader
                    .state()
                    .iter()
                    .map(|b| format!("{}/{}", b.namespace().unwrap_or_default(), b.name_any()))
                    .collect();
                ctx.prune(&live);
            }
        }
    };
    let controller = Controller::for_stream(stream, reader)
        .graceful_shutdown_on(stop)
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            if let Err(e) = result {
                // Reconciler errors are already logged by error_policy.
                if !matches!(e, kube::runtime::controller::Error::ReconcilerFailed(..)) {
                    warn!(error = %e, "controller");
                }
            }
        });
    tokio::select! {
        () = controller => {}
        () = pruning => {}
    }
    // NB: a report not yet written when the controller stops (`_reports` aborts it) is
    // queued again when the budget is next listed.
}

/// Aborts a task when dropped (also when the future owning it is dropped mid-way).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Marks the watch running while it lives.
struct Watching(kubeclient::WatchProgress);

impl Watching {
    fn start(progress: kubeclient::WatchProgress) -> Self {
        progress.start();
        Self(progress)
    }
}

impl Drop for Watching {
    fn drop(&mut self) {
        self.0.stop();
    }
}

/// Resolves when SIGTERM or Ctrl+C arrives.
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

async fn run_async(args: RunArgs) -> anyhow::Result<ExitCode> {
    let tenancy = tenancy::build(args.tenancy, args.tenancy_config.as_deref())?;
    let timeouts = args.kube_timeouts();
    let config = kube::Config::infer()
        .await
        .context("connecting to Kubernetes (in-cluster config or KUBECONFIG)")?;
    let kube = kubeclient::clients(config, timeouts).context("building the Kubernetes client")?;
    let budgets: Api<CheckpointBudget> = match &args.namespace {
        Some(ns) => Api::namespaced(kube.calls.clone(), ns),
        None => Api::all(kube.calls.clone()),
    };
    if let Err(e) = budgets.list(&ListParams::default().limit(1)).await {
        error!(error = %e, "CheckpointBudget is not queryable");
        let hint = match &e {
            kube::Error::Api(status) if status.code == 404 => {
                "The CheckpointBudget CRD is not installed. Install it with:\n  \
                 kubectl apply -f crds/checkpointbudget.yaml   (or: checkpoint-autoscaler crd | kubectl apply -f -)"
            }
            kube::Error::Api(status) if status.code == 401 || status.code == 403 => {
                "The controller may not list CheckpointBudgets: check its RBAC \
                 (get/list/watch on checkpointbudgets.checkpoint-autoscaler.dev)."
            }
            _ => {
                "The Kubernetes API server could not be reached: check KUBECONFIG or the in-cluster service account."
            }
        };
        eprintln!("error: cannot list CheckpointBudgets: {e}\n{hint}");
        return Ok(ExitCode::FAILURE);
    }

    let clients = Arc::new(
        AwsClients::from_env(args.aws_settings())
            .await
            .context("setting up AWS clients")?,
    );
    let metrics = Metrics::default();
    metrics.set_aws_source(Arc::new(ClientStats(clients.clone())));
    let apps = Arc::new(KinesisControl::new(clients.clone()));
    // NB: no idle flush: calls go when full or after `max_wait` (1 s), which packs a
    // cycle's queries to the floor of ceil(queries / 500) calls whatever the machine's
    // speed (see the scale bench in docs/benchmarks.md); 1 s is nothing against the interval.
    let metrics_source = Arc::new(BatchedMetrics::spawn(
        clients.clone(),
        BatchConfig {
            idle: None,
            ..BatchConfig::default()
        },
    ));
    let core = Reconciler {
        tenancy,
        metrics: metrics.clone(),
        interval: args.interval,
        in_flight_poll: Duration::from_secs(30).min(args.interval),
        kpu_hour_price: args.kpu_hour_price.clone(),
        // The claims (no other claims) are replaced by the reflector store's view in
        // `run_controller`, the fence (always held) by `serve` under leader election.
        ..Reconciler::new(apps, metrics_source, clients.default_region())
    };
    let identity = args
        .leader_identity
        .clone()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| format!("{CONTROLLER_NAME}-{}", std::process::id()));
    let wiring = Wiring {
        kube,
        timeouts,
        namespace: args.namespace.clone(),
        core,
        clock: Arc::new(Timestamp::now),
        leader: args.lease_config(&identity),
        identity,
        fence: args.fence_bounds(),
        shutdown_grace: args.shutdown_grace,
        http_addr: args.http_addr,
    };
    let exit = serve(wiring, shutdown_signal(), |_| {}).await?;
    Ok(match exit {
        Exit::Stopped => ExitCode::SUCCESS,
        Exit::LostLeadership => ExitCode::FAILURE,
    })
}

/// Runs `controller` until it ends; once `stop` resolves, gives it `grace` to end. `false`
/// when the grace ran out (the controller, and the reconciles in it, are dropped).
async fn drain(
    controller: impl Future<Output = ()>,
    stop: impl Future<Output = ()>,
    grace: Duration,
) -> bool {
    let mut controller = std::pin::pin!(controller);
    tokio::select! {
        _ = &mut controller => return true,
        _ = stop => {}
    }
    tokio::time::timeout(grace, controller).await.is_ok()
}

/// The safety margin of the fence: how much longer than an action the Lease must still be
/// held for the action to start (see [`fence`]).
pub const FENCE_MARGIN: Duration = Duration::from_secs(5);

/// Everything `run` wires together, built from its flags in the cluster and by hand in
/// tests (which run two controllers against one API server).
pub struct Wiring {
    /// The Kubernetes clients (calls and watches).
    pub kube: kubeclient::KubeClients,
    /// Their timeouts.
    pub timeouts: kubeclient::KubeTimeouts,
    /// Watch budgets in this namespace only.
    pub namespace: Option<String>,
    /// The reconcile core (its `fence` and `claims` are replaced).
    pub core: Reconciler,
    /// The clock of the reconciles.
    pub clock: Arc<dyn Fn() -> Timestamp + Send + Sync>,
    /// This replica's identity (Events, Lease).
    pub identity: String,
    /// Leader election, or `None` for a replica that always leads.
    pub leader: Option<LeaseConfig>,
    /// The fence's bounds (used under leader election).
    pub fence: fence::FenceBounds,
    /// How long the reconciles in flight may take to finish on shutdown.
    pub shutdown_grace: Duration,
    /// The HTTP server's address.
    pub http_addr: SocketAddr,
}

/// How [`serve`] ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    /// Asked to stop; the reconciles in flight finished (or the grace ran out).
    Stopped,
    /// This replica led and lost the Lease: it stopped acting and exits, to restart as a
    /// candidate.
    LostLeadership,
}

/// Runs the controller as `run` does: leader election (if any), the HTTP endpoints, the
/// controller while leading, and the shutdown in order — on `shutdown` (or a lost Lease)
/// no reconcile starts; those in flight get `shutdown_grace` to finish while the elector
/// keeps renewing; only then is the Lease released. If they do not finish in time they are
/// dropped and the Lease is *not* released: it expires by itself, after every
/// `UpdateApplication` the fence let start has ended. `on_http` receives the HTTP server's
/// bound address.
pub async fn serve(
    wiring: Wiring,
    shutdown: impl Future<Output = ()> + Send + 'static,
    on_http: impl FnOnce(SocketAddr),
) -> anyhow::Result<Exit> {
    let Wiring {
        kube,
        timeouts,
        namespace,
        mut core,
        clock,
        identity,
        leader,
        fence: bounds,
        shutdown_grace,
        http_addr,
    } = wiring;
    let metrics = core.metrics.clone();
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        info!("shutdown requested");
        shutdown_tx.send_replace(true);
    });
    let wait_shutdown = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };

    // Leader election, or a single replica that always leads.
    let (role_tx, role_rx) = watch::channel(if leader.is_some() {
        Role::Candidate
    } else {
        Role::Leader
    });
    let (release_tx, release_rx) = tokio::sync::oneshot::channel::<()>();
    let elector = match leader {
        Some(config) => {
            config
                .validate(&bounds)
                .map_err(|e| anyhow::anyhow!("leader election: {e}"))?;
            let namespace = config.namespace.clone();
            let lease = config.describe();
            let stuck_after = config.stuck_after();
            let elector = LeaderElector::new(Api::namespaced(kube.calls.clone(), &namespace), config);
            let tenure = elector.tenure();
            core.fence = Arc::new(leader::LeaseFence::new(tenure.clone(), bounds, lease.clone()));
            info!(%lease, %identity, "leader election on");
            let task = tokio::spawn(elector.run(role_tx, async move {
                let _ = release_rx.await;
            }));
            Some((task, tenure, stuck_after))
        }
        None => {
            drop(role_tx);
            core.fence = Arc::new(fence::AlwaysHeld);
            None
        }
    };

    let budgets: Api<CheckpointBudget> = match &namespace {
        Some(ns) => Api::namespaced(kube.calls.clone(), ns),
        None => Api::all(kube.calls.clone()),
    };
    let (http_stop_tx, http_stop_rx) = tokio::sync::oneshot::channel::<()>();
    let http = server::serve(
        http_addr,
        server::State {
            metrics: metrics.clone(),
            budgets,
            role: role_rx.clone(),
            health: server::Health {
                watch: kube.progress.clone(),
                watch_stall: timeouts.watch_stall(),
                elector: elector
                    .as_ref()
                    .map(|(_, tenure, stuck_after)| (tenure.clone(), *stuck_after)),
            },
        },
        async move {
            let _ = http_stop_rx.await;
        },
    )
    .await
    .with_context(|| format!("serving HTTP on {http_addr}"))?;
    on_http(http.addr);

    let reporter = Reporter {
        controller: CONTROLLER_NAME.into(),
        instance: Some(identity.clone()),
    };
    let ctx = Arc::new(Context {
        client: kube.calls.clone(),
        recorder: Recorder::new(kube.calls.clone(), reporter),
        core,
        metrics,
        backoff: Arc::default(),
        clock,
        unreadable: Arc::default(),
    });

    // Standby until leader (or shutdown).
    let mut role = role_rx.clone();
    let leading = tokio::select! {
        r = role.wait_for(|r| *r == Role::Leader || *r == Role::Lost) => r.map(|r| *r == Role::Leader).unwrap_or(false),
        _ = wait_shutdown(shutdown_rx.clone()) => false,
    };
    let (exit, drained) = if leading {
        info!(
            namespace = namespace.as_deref().unwrap_or("(all)"),
            "controller starting"
        );
        let mut lost = role_rx.clone();
        let stop = {
            let shutdown = shutdown_rx.clone();
            async move {
                tokio::select! {
                    _ = wait_shutdown(shutdown) => {}
                    _ = lost.wait_for(|r| *r == Role::Lost) => {}
                }
            }
        }
        .boxed()
        .shared();
        let watched: Api<CheckpointBudget> = match &namespace {
            Some(ns) => Api::namespaced(kube.watches.clone(), ns),
            None => Api::all(kube.watches.clone()),
        };
        let options = WatchOptions {
            timeout: timeouts.watch,
            progress: Some(kube.progress.clone()),
        };
        // The grace counts from the stop, not from the start.
        let controller = run_controller_with(watched, ctx, stop.clone(), options);
        let drained = drain(controller, stop, shutdown_grace).await;
        if !drained {
            warn!(grace = ?shutdown_grace, "reconciles still in flight when the shutdown grace ran out; \
                  exiting without releasing the Lease, which expires by itself");
        }
        let lost = *role_rx.borrow() == Role::Lost;
        (if lost { Exit::LostLeadership } else { Exit::Stopped }, drained)
    } else if *role_rx.borrow() == Role::Lost {
        (Exit::LostLeadership, true)
    } else {
        (Exit::Stopped, true)
    };

    if let Some((task, tenure, _)) = elector {
        if drained {
            // Nothing guarded by the Lease runs any more: give it up, so a standby need not
            // wait for it to expire.
            let _ = release_tx.send(());
            let _ = task.await;
        } else {
            tenure.end();
            task.abort();
        }
    }
    let _ = http_stop_tx.send(());
    let _ = http.task.await;
    match exit {
        Exit::LostLeadership => error!("leadership lost; exiting so a restart rejoins as a candidate"),
        Exit::Stopped => info!("stopped"),
    }
    Ok(exit)
}

#[cfg(test)]
mod tests;
