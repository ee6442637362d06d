//! A harness for controller-through-emulator tests: the emulator (model backend, virtual
//! clock under the test's control), the controller's reconcile core with the real SDK
//! clients pointed at it, an in-memory status/Event store, and budgets requeued in virtual
//! time as the controller would requeue them.
//!
//! ```ignore
//! let mut h = Harness::start(HarnessConfig::default()).await;
//! let scenario = harness::scenario("step-up");
//! let key = h.add_scenario_budget(&scenario, "orders", "team-a");
//! h.advance(Duration::from_secs(9 * 60));          // a window of metrics first
//! let id = h.arm_fault(&FaultSpec { .. }).await;   // through the control API
//! for _ in 0..60 { h.step().await; }               // one emulated minute per step
//! assert!(h.update_calls("orders").len() <= 2);
//! ```
//!
//! What it does the way the controller does: ownership (when budgets share an application,
//! the oldest by `creationTimestamp` acts) is answered from the harness's budgets; each
//! budget is reconciled when due (at the
//! report's `requeue_after`, or after an error at the controller's own backoff,
//! [`Error::retry_after`], without jitter), with `now` = the emulator's virtual time. What
//! it does differently: budgets due in the same step are reconciled one after another (in
//! key order, so runs are reproducible and the calls of each reconcile can be told apart),
//! and CloudWatch is read without batching.
//!
//! NB: the harness drains the emulator's call log into its own after every reconcile (so
//! long runs stay fast and the emulator's bounded log never drops records); read calls
//! through [`Harness::calls`], not through the emulator.

// A shared harness: not every test uses every helper.
#![allow(dead_code)]

use std::{
    collections::BTreeMap,
    path::PathBuf,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use async_trait::async_trait;
use checkpoint_autoscaler::{
    aws::{ApplicationControl, AwsSettings, MetricsMode},
    controller::{
        Error,
        ownership::{Claim, Claims},
        reconcile::{BudgetView, Effect, HandedBack, Reconciler, Report},
        store::{BudgetKey, BudgetStore, MemoryStore, Notice, StoreError},
    },
    crd::{CheckpointBudget, CheckpointBudgetSpec, CheckpointBudgetStatus},
    emulator::{
        self, Emulator, EmulatorConfig, EmulatorState,
        calllog::{CallFilter, CallRecord},
        faults::{Fault, FaultSpec},
    },
    sim::{Scenario, fleet::OperationView},
};
use checkpoint_autoscaler_testkit::rig::{self, Keys};
use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use serde_json::Value;

/// A shipped scenario, `examples/scenarios/<name>.yaml`.
pub fn scenario(name: &str) -> Scenario {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("examples/scenarios")
        .join(format!("{name}.yaml"));
    Scenario::load(&path).unwrap_or_else(|e| panic!("scenario {name}: {e}"))
}

/// The names of the shipped scenarios, sorted.
pub fn scenario_names() -> Vec<String> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples/scenarios");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| {
            let path = e.ok()?.path();
            (path.extension()? == "yaml").then(|| path.file_stem()?.to_str().map(str::to_owned))?
        })
        .collect();
    names.sort();
    names
}

/// How the harness is set up.
#[derive(Clone, Debug)]
pub struct HarnessConfig {
    /// The emulator's seed.
    pub seed: u64,
    /// Virtual time at the start.
    pub start: Timestamp,
    /// The region of the emulator and the controller's default.
    pub region: String,
    /// The controller's `--interval`.
    pub interval: Duration,
    /// How soon to look again while an operation is in flight.
    pub in_flight_poll: Duration,
    /// SDK retries and timeouts (the endpoint and region are set by the harness). The
    /// default is short, so a fault costs milliseconds, not seconds, of real time.
    pub aws: AwsSettings,
    /// How CloudWatch is read (default: one GetMetricData per reconcile, since the
    /// harness reconciles one budget at a time and batching would only wait).
    pub metrics: MetricsMode,
    /// The controller's `--kpu-hour-price` (default none).
    pub kpu_hour_price: Option<checkpoint_autoscaler::cost::KpuHourPrice>,
}

impl Default for HarnessConfig {
    fn default() -> Self {
        Self {
            seed: 1,
            start: "2026-01-05T08:00:00Z".parse().unwrap(),
            region: "eu-west-1".into(),
            interval: Duration::from_secs(60),
            in_flight_poll: Duration::from_secs(30),
            aws: AwsSettings {
                max_attempts: 3,
                initial_backoff: Duration::from_millis(5),
                attempt_timeout: Duration::from_millis(500),
                operation_timeout: Duration::from_secs(2),
                ..AwsSettings::default()
            },
            metrics: MetricsMode::Direct,
            kpu_hour_price: None,
        }
    }
}

/// Where the controller is "killed" by [`Harness::crash_at`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CrashPoint {
    /// Right after the intent (`status.operationInFlight` without an operation id) is
    /// written, before `UpdateApplication` is called.
    AfterIntent,
    /// Right after `UpdateApplication` succeeded, before its outcome (the operation id,
    /// `lastScaling`, the Event) is recorded.
    AfterUpdate,
}

/// One budget under the harness's controller.
#[derive(Clone, Debug)]
pub struct Managed {
    /// The object, as it would be in the cluster (namespace, name, creation time,
    /// generation, spec).
    pub budget: CheckpointBudget,
    /// Its key in the store.
    pub key: BudgetKey,
    /// When it is next reconciled (`None`: waits for a spec change).
    pub due: Option<Timestamp>,
    /// Consecutive failed reconciles (the controller's backoff).
    pub failures: u32,
}

/// One reconcile as the harness ran it.
#[derive(Debug)]
pub struct Reconciled {
    /// The budget.
    pub key: BudgetKey,
    /// The virtual time it ran at.
    pub at: Timestamp,
    /// What the core answered.
    pub outcome: Result<Report, Error>,
    /// Every AWS call that arrived at the emulator during it, in order.
    pub calls: Vec<CallRecord>,
    /// Set when the controller was "killed" during this reconcile (and restarted).
    pub crashed: Option<CrashPoint>,
}

impl Reconciled {
    /// The `UpdateApplication` calls it made (every attempt the SDK sent).
    pub fn update_calls(&self) -> impl Iterator<Item = &CallRecord> {
        self.calls.iter().filter(|c| c.operation == "UpdateApplication")
    }

    /// The `UpdateApplication` calls the emulator accepted.
    pub fn accepted_updates(&self) -> impl Iterator<Item = &CallRecord> {
        self.update_calls().filter(|c| (200..300).contains(&c.status))
    }

    /// What the core did, if it answered.
    pub fn effect(&self) -> Option<&Effect> {
        self.outcome.as_ref().ok().map(|r| &r.effect)
    }
}

/// The status store the core writes through: the [`MemoryStore`], plus the crash points.
struct CrashStore {
    inner: MemoryStore,
    /// The Events published, by budget (cheaper to read than the store's single list).
    events: Mutex<BTreeMap<BudgetKey, Vec<Notice>>>,
    armed: Mutex<BTreeMap<BudgetKey, CrashPoint>>,
    crashed: Mutex<Option<CrashPoint>>,
    /// Set once a crash happened in this reconcile: the "dead" process writes nothing more.
    dead: AtomicBool,
    /// The status each budget had before its last write, with its resourceVersion (what a
    /// watch cache one write behind would hand the controller).
    previous: Mutex<BTreeMap<BudgetKey, (CheckpointBudgetStatus, String)>>,
}

impl CrashStore {
    fn remember(&self, key: &BudgetKey, before: Option<(CheckpointBudgetStatus, String)>) {
        if let Some(before) = before {
            self.previous.lock().unwrap().insert(key.clone(), before);
        }
    }

    fn killed(&self, point: CrashPoint) -> StoreError {
        self.dead.store(true, Ordering::SeqCst);
        *self.crashed.lock().unwrap() = Some(point);
        StoreError::Kube(kube::Error::Service(
            format!("the harness killed the controller ({point:?})").into(),
        ))
    }
}

#[async_trait]
impl BudgetStore for CrashStore {
    async fn save_status(
        &self,
        key: &BudgetKey,
        status: &CheckpointBudgetStatus,
        resource_version: Option<&str>,
    ) -> Result<Option<String>, StoreError> {
        if self.dead.load(Ordering::SeqCst) {
            return Err(self.killed(CrashPoint::AfterIntent));
        }
        let before = self.inner.get(key);
        let point = self.armed.lock().unwrap().get(key).copied();
        let op = status.operation_in_flight.as_ref();
        match point {
            Some(CrashPoint::AfterIntent) if op.is_some_and(|o| o.operation_id.is_none()) => {
                self.inner.save_status(key, status, resource_version).await?;
                self.remember(key, before);
                self.armed.lock().unwrap().remove(key);
                Err(self.killed(CrashPoint::AfterIntent))
            }
            Some(CrashPoint::AfterUpdate)
                if op.is_some_and(|o| o.operation_id.is_some())
                    && self
                        .inner
                        .status(key)
                        .and_then(|s| s.operation_in_flight)
                        .is_some_and(|o| o.operation_id.is_none()) =>
            {
                // The write that would record the operation id never happens.
                self.armed.lock().unwrap().remove(key);
                Err(self.killed(CrashPoint::AfterUpdate))
            }
            _ => {
                let written = self.inner.save_status(key, status, resource_version).await?;
                self.remember(key, before);
                Ok(written)
            }
        }
    }

    async fn ensure_finalizer(
        &self,
        key: &BudgetKey,
        resource_version: Option<&str>,
    ) -> Result<Option<String>, StoreError> {
        if self.dead.load(Ordering::SeqCst) {
            return Err(self.killed(CrashPoint::AfterIntent));
        }
        self.inner.ensure_finalizer(key, resource_version).await
    }

    async fn publish(&self, key: &BudgetKey, notice: &Notice) -> Result<(), StoreError> {
        if self.dead.load(Ordering::SeqCst) {
            return Ok(());
        }
        self.inner.publish(key, notice).await?;
        self.events
            .lock()
            .unwrap()
            .entry(key.clone())
            .or_default()
            .push(notice.clone());
        Ok(())
    }
}

/// Ownership answered from the harness's budgets, as the controller answers from its
/// reflector: when two budgets name one application, the oldest acts.
struct BudgetClaims(Arc<Mutex<Vec<CheckpointBudget>>>);

impl Claims for BudgetClaims {
    fn naming(&self, application: &str) -> Vec<Claim> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter(|b| b.spec.application.name == application)
            .filter_map(Claim::of)
            .collect()
    }
}

/// The emulator, the controller's core over it, and the budgets.
pub struct Harness {
    emu: Emulator,
    config: HarnessConfig,
    store: Arc<CrashStore>,
    core: Reconciler,
    budgets: Vec<Managed>,
    /// The budgets as the controller's reflector would hold them (for ownership).
    claims: Arc<Mutex<Vec<CheckpointBudget>>>,
    calls: Vec<CallRecord>,
    restarts: u32,
    /// Budgets whose next reconcile reads the status from before its last write.
    stale_reads: std::collections::BTreeSet<BudgetKey>,
}

impl Harness {
    /// Starts the emulator (model backend, virtual clock at `config.start`) and a
    /// controller core over it with an empty store.
    pub async fn start(config: HarnessConfig) -> Self {
        let emu = emulator::serve(EmulatorConfig {
            // Virtual time moves only when the test says so.
            period: None,
            seed: config.seed,
            start: Some(config.start),
            region: config.region.clone(),
            ..EmulatorConfig::default()
        })
        .await
        .expect("the emulator starts");
        let claims = Arc::new(Mutex::new(Vec::new()));
        let core = build_core(&config, &emu.endpoint_url(), claims.clone()).await;
        Self {
            emu,
            config,
            store: Arc::new(CrashStore {
                inner: MemoryStore::default(),
                events: Mutex::default(),
                armed: Mutex::default(),
                crashed: Mutex::default(),
                dead: AtomicBool::new(false),
                previous: Mutex::default(),
            }),
            core,
            budgets: Vec::new(),
            claims,
            calls: Vec::new(),
            restarts: 0,
            stale_reads: Default::default(),
        }
    }

    /// Makes the next reconcile of `key` read the budget as a watch cache one write behind
    /// would: the status (and resourceVersion) from before the last write.
    pub fn serve_stale_read(&mut self, key: &BudgetKey) {
        self.stale_reads.insert(key.clone());
    }

    /// The emulator's state (clock, fleet); prefer the harness's own helpers.
    pub fn emulator(&self) -> &EmulatorState {
        self.emu.state()
    }

    /// The virtual now.
    pub fn now(&self) -> Timestamp {
        self.emu.state().virtual_now()
    }

    /// The controller's core (replaced by [`Harness::restart`]).
    pub fn core(&self) -> &Reconciler {
        &self.core
    }

    /// Adds an application running `scenario` under the name `app`, tagged for
    /// `namespace` (the default tenancy policy requires it).
    pub fn add_application(&mut self, scenario: &Scenario, app: &str, namespace: &str) {
        rig::add_application(self.emu.state(), scenario, Some(app), namespace)
            .unwrap_or_else(|e| panic!("{e}"));
    }

    /// Adds a budget created now, first reconciled at the next step.
    pub fn add_budget(&mut self, namespace: &str, name: &str, spec: CheckpointBudgetSpec) -> BudgetKey {
        let mut budget = CheckpointBudget::new(name, spec);
        budget.metadata.namespace = Some(namespace.into());
        budget.metadata.creation_timestamp = Some(Time(self.now()));
        budget.metadata.generation = Some(1);
        budget.metadata.uid = Some(format!("uid-{namespace}-{name}"));
        let key = BudgetKey::new(namespace, name);
        assert!(
            self.budgets.iter().all(|m| m.key != key),
            "budget {key} added twice"
        );
        self.budgets.push(Managed {
            budget,
            key: key.clone(),
            due: Some(self.now()),
            failures: 0,
        });
        self.budgets.sort_by(|a, b| a.key.cmp(&b.key));
        self.sync_claims();
        key
    }

    /// Deletes a budget: it is reconciled no more, no longer claims its application, and its
    /// status is gone with it (one created again under its name starts without).
    pub fn delete_budget(&mut self, key: &BudgetKey) {
        self.budgets.retain(|m| &m.key != key);
        self.store.inner.remove(key);
        self.store.previous.lock().unwrap().remove(key);
        self.sync_claims();
    }

    fn sync_claims(&self) {
        *self.claims.lock().unwrap() = self.budgets.iter().map(|m| m.budget.clone()).collect();
    }

    /// An application running `scenario` as `app` in `namespace`, with the scenario's own
    /// budget (named `app`, pointed at it).
    pub fn add_scenario_budget(&mut self, scenario: &Scenario, app: &str, namespace: &str) -> BudgetKey {
        let mut spec = scenario
            .budget
            .clone()
            .unwrap_or_else(|| panic!("scenario {} carries no budget", scenario.name));
        spec.application.name = app.into();
        spec.application.region = None;
        spec.application.role_arn = None;
        self.add_application(scenario, app, namespace);
        self.add_budget(namespace, app, spec)
    }

    /// Changes a budget's spec (bumping its generation) and reconciles it at the next step.
    pub fn update_spec(&mut self, key: &BudgetKey, change: impl FnOnce(&mut CheckpointBudgetSpec)) {
        let now = self.now();
        let m = self.managed_mut(key);
        change(&mut m.budget.spec);
        m.budget.metadata.generation = Some(m.budget.metadata.generation.unwrap_or(0) + 1);
        m.due = Some(now);
        self.sync_claims();
    }

    /// The budgets, in key order.
    pub fn budgets(&self) -> &[Managed] {
        &self.budgets
    }

    fn managed_mut(&mut self, key: &BudgetKey) -> &mut Managed {
        self.budgets
            .iter_mut()
            .find(|m| &m.key == key)
            .unwrap_or_else(|| panic!("no budget {key}"))
    }

    /// Moves virtual time forward without reconciling.
    pub fn advance(&mut self, by: Duration) {
        self.emu.state().advance(by);
    }

    /// One emulated minute: the clock moves on, then every budget due reconciles.
    pub async fn step(&mut self) -> Vec<Reconciled> {
        self.advance(Duration::from_secs(60));
        self.reconcile_due().await
    }

    /// Reconciles every budget due at the virtual now, in key order.
    pub async fn reconcile_due(&mut self) -> Vec<Reconciled> {
        let now = self.now();
        let due: Vec<BudgetKey> = self
            .budgets
            .iter()
            .filter(|m| m.due.is_some_and(|d| d <= now))
            .map(|m| m.key.clone())
            .collect();
        let mut out = Vec::with_capacity(due.len());
        for key in due {
            out.push(self.reconcile(&key).await);
        }
        out
    }

    /// Reconciles one budget now, due or not, and schedules its next reconcile as the
    /// controller would. A crash armed with [`Harness::crash_at`] that fires restarts the
    /// controller.
    pub async fn reconcile(&mut self, key: &BudgetKey) -> Reconciled {
        self.drain_calls();
        let first = self.calls.len();
        let now = self.now();
        let index = self
            .budgets
            .iter()
            .position(|m| &m.key == key)
            .unwrap_or_else(|| panic!("no budget {key}"));
        let read = if self.stale_reads.remove(key) {
            self.store.previous.lock().unwrap().get(key).cloned()
        } else {
            self.store.inner.get(key)
        };
        let (prior, resource_version) = read.unzip();
        let managed = &self.budgets[index];
        let view = BudgetView {
            key: key.clone(),
            generation: managed.budget.metadata.generation,
            spec: &managed.budget.spec,
            status: prior.as_ref(),
            resource_version,
        };
        let wall_start = Timestamp::now();
        let outcome = self.core.reconcile(&view, self.store.as_ref(), now).await;
        self.drain_calls();
        let crashed = self.store.crashed.lock().unwrap().take();
        let m = &mut self.budgets[index];
        match &outcome {
            Ok(report) => {
                m.failures = 0;
                m.due = Some(now + report.requeue_after);
            }
            Err(e) => {
                m.failures += 1;
                m.due = e.retry_after(m.failures, self.config.interval).map(|d| now + d);
            }
        }
        if crashed.is_some() {
            self.restart().await;
        }
        Reconciled {
            key: key.clone(),
            at: now,
            outcome,
            // NB: a request the client gave up on is logged (499) when the server notices,
            // which may be during a later reconcile: calls are told apart by arrival time.
            calls: self.calls[first..]
                .iter()
                .filter(|c| c.time >= wall_start)
                .cloned()
                .collect(),
            crashed,
        }
    }

    /// Hands the application of `key` back, as the controller does when the budget is
    /// deleted (before its finalizer goes).
    pub async fn hand_back(&mut self, key: &BudgetKey) -> Result<HandedBack, Error> {
        let (prior, resource_version) = self.store.inner.get(key).unzip();
        let managed = self
            .budgets
            .iter()
            .find(|m| &m.key == key)
            .unwrap_or_else(|| panic!("no budget {key}"));
        let view = BudgetView {
            key: key.clone(),
            generation: managed.budget.metadata.generation,
            spec: &managed.budget.spec,
            status: prior.as_ref(),
            resource_version,
        };
        self.core.hand_back(&view, self.store.as_ref()).await
    }

    /// Whether the budget carries the controller's finalizer.
    pub fn has_finalizer(&self, key: &BudgetKey) -> bool {
        self.store.inner.has_finalizer(key)
    }

    /// "Kills" the controller and starts a new one: fresh SDK clients and core, no
    /// in-memory state (backoff counters included); only what the store holds survives.
    /// Like a new process after its initial list, it reconciles every budget at the next
    /// step.
    pub async fn restart(&mut self) {
        self.core = build_core(&self.config, &self.emu.endpoint_url(), self.claims.clone()).await;
        self.store.dead.store(false, Ordering::SeqCst);
        let now = self.now();
        for m in &mut self.budgets {
            m.due = Some(now);
            m.failures = 0;
        }
        self.restarts += 1;
    }

    /// Changes the SDK settings a restarted controller uses (e.g. generous timeouts once
    /// latency faults are over); takes effect at the next [`Harness::restart`].
    pub fn set_aws_settings(&mut self, settings: AwsSettings) {
        self.config.aws = settings;
    }

    /// How many times the controller was restarted.
    pub fn restarts(&self) -> u32 {
        self.restarts
    }

    /// Arms a crash: the controller is killed at `point` of the next scaling of `key`
    /// (then restarted by the harness). It stays armed until a scaling reaches that point.
    pub fn crash_at(&mut self, key: &BudgetKey, point: CrashPoint) {
        self.store.armed.lock().unwrap().insert(key.clone(), point);
    }

    /// Whether a crash is still armed for `key` (it fires only when a scaling happens).
    pub fn crash_armed(&self, key: &BudgetKey) -> bool {
        self.store.armed.lock().unwrap().contains_key(key)
    }

    /// Disarms the crash of `key`, if any.
    pub fn disarm_crash(&mut self, key: &BudgetKey) {
        self.store.armed.lock().unwrap().remove(key);
    }

    // --- faults, through the control API as a user would arm them ---

    /// Arms a fault with `POST /_emulator/faults`; returns its id.
    pub async fn arm_fault(&self, spec: &FaultSpec) -> u64 {
        let body = serde_json::to_string(spec).unwrap();
        let (status, answer) =
            crate::emulator::http(self.emu.addr(), "POST", "/_emulator/faults", &body).await;
        assert_eq!(status, 201, "arming {body}: {answer}");
        let v: Value = serde_json::from_str(&answer).unwrap();
        v["id"].as_u64().unwrap_or_else(|| panic!("no id in {answer}"))
    }

    /// Clears one fault with `DELETE /_emulator/faults/{id}`; false if it was gone (a
    /// counted fault disarms itself).
    pub async fn clear_fault(&self, id: u64) -> bool {
        let path = format!("/_emulator/faults/{id}");
        let (status, answer) = crate::emulator::http(self.emu.addr(), "DELETE", &path, "").await;
        assert!(
            status == 204 || status == 404,
            "clearing fault {id}: {status} {answer}"
        );
        status == 204
    }

    /// Clears every fault with `DELETE /_emulator/faults`.
    pub async fn clear_faults(&self) {
        let (status, answer) =
            crate::emulator::http(self.emu.addr(), "DELETE", "/_emulator/faults", "").await;
        assert_eq!(status, 204, "clearing faults: {answer}");
    }

    /// Deletes an application under its budgets with `DELETE /_emulator/applications/{app}`.
    pub async fn delete_application(&self, app: &str) {
        let path = format!("/_emulator/applications/{app}");
        let (status, answer) = crate::emulator::http(self.emu.addr(), "DELETE", &path, "").await;
        assert_eq!(status, 204, "deleting {app}: {answer}");
    }

    /// Sets the model's KPU quota per application with `PUT /_emulator/quotas`.
    pub async fn set_kpu_quota(&self, kpus: u32) {
        let body = format!(r#"{{"kpusPerApplication": {kpus}}}"#);
        let (status, answer) =
            crate::emulator::http(self.emu.addr(), "PUT", "/_emulator/quotas", &body).await;
        assert_eq!(status, 204, "setting the KPU quota: {answer}");
    }

    /// Wraps the current controller's [`ApplicationControl`] (e.g. to act as another client
    /// between its calls). NB: a restart builds a fresh core without the wrapper.
    pub fn wrap_apps(
        &mut self,
        wrap: impl FnOnce(Arc<dyn ApplicationControl>) -> Arc<dyn ApplicationControl>,
    ) {
        self.core.apps = wrap(self.core.apps.clone());
    }

    /// The armed faults, with their hit counts.
    pub fn faults(&self) -> Vec<Fault> {
        self.emu.state().faults()
    }

    // --- what happened ---

    fn drain_calls(&mut self) {
        let state = self.emu.state();
        let new = state.calls(&CallFilter::default());
        if !new.is_empty() {
            state.reset_calls();
            self.calls.extend(new);
        }
    }

    /// Every AWS call received so far that `filter` accepts, oldest first.
    pub fn calls(&mut self, filter: &CallFilter) -> Vec<CallRecord> {
        self.drain_calls();
        let all = CallFilter {
            since: None,
            ..filter.clone()
        };
        self.calls
            .iter()
            .filter(|c| filter.since.is_none_or(|s| c.seq > s))
            .filter(|c| {
                all.service.is_none_or(|s| s == c.service)
                    && all.operation.as_deref().is_none_or(|o| o == c.operation)
                    && all
                        .application
                        .as_deref()
                        .is_none_or(|a| c.applications.iter().any(|x| x == a))
            })
            .cloned()
            .collect()
    }

    /// The `UpdateApplication` calls about `app` (every attempt; `status` tells which the
    /// emulator accepted, `virtual_time` when).
    pub fn update_calls(&mut self, app: &str) -> Vec<CallRecord> {
        self.calls(&CallFilter {
            operation: Some("UpdateApplication".into()),
            application: Some(app.into()),
            ..CallFilter::default()
        })
    }

    /// The service's operations on `app` (the model's truth, not masked by faults).
    pub fn operations(&self, app: &str) -> Vec<OperationView> {
        self.emu
            .state()
            .with_fleet(|f| f.list_operations(app))
            .unwrap_or_else(|e| panic!("operations of {app}: {e}"))
    }

    /// The status last saved for `key`.
    pub fn status(&self, key: &BudgetKey) -> Option<CheckpointBudgetStatus> {
        self.store.inner.status(key)
    }

    /// The Events published about `key`, in order.
    pub fn events(&self, key: &BudgetKey) -> Vec<Notice> {
        self.store
            .events
            .lock()
            .unwrap()
            .get(key)
            .cloned()
            .unwrap_or_default()
    }

    /// Every Event published, in order.
    pub fn all_events(&self) -> Vec<(BudgetKey, Notice)> {
        self.store.inner.events()
    }

    /// Stops the emulator.
    pub async fn shutdown(self) {
        self.emu.shutdown().await.expect("the emulator stops");
    }
}

/// A fresh core (new SDK clients, no shared state) over the emulator at `endpoint`.
async fn build_core(
    config: &HarnessConfig,
    endpoint: &str,
    claims: Arc<Mutex<Vec<CheckpointBudget>>>,
) -> Reconciler {
    let settings = AwsSettings {
        region: Some(config.region.clone()),
        ..config.aws.clone()
    };
    let clients = rig::clients(&Keys::TEST, &config.region, endpoint.to_owned(), settings).await;
    Reconciler {
        claims: Arc::new(BudgetClaims(claims)),
        interval: config.interval,
        in_flight_poll: config.in_flight_poll,
        kpu_hour_price: config.kpu_hour_price.clone(),
        ..rig::reconciler(clients, config.metrics.clone())
    }
}

/// Steps until a reconcile of the harness crashes the controller; returns it.
async fn step_until_crash(h: &mut Harness, limit: usize) -> Reconciled {
    for _ in 0..limit {
        if let Some(r) = h.step().await.into_iter().find(|r| r.crashed.is_some()) {
            return r;
        }
    }
    panic!("no crash within {limit} minutes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_harness_drives_a_scaling_through_both_crash_points() {
    let mut h = Harness::start(HarnessConfig::default()).await;
    let key = h.add_scenario_budget(&scenario("step-up"), "orders", "team-a");
    h.advance(Duration::from_secs(9 * 60));

    // Killed after recording the intent: no UpdateApplication, the intent survives.
    h.crash_at(&key, CrashPoint::AfterIntent);
    let crash = step_until_crash(&mut h, 60).await;
    assert_eq!(crash.crashed, Some(CrashPoint::AfterIntent));
    assert_eq!(crash.update_calls().count(), 0);
    assert_eq!(h.restarts(), 1);
    let intent = h.status(&key).unwrap().operation_in_flight.unwrap();
    assert!(intent.operation_id.is_none());

    // The restarted controller drops that intent and decides again; killed this time after
    // UpdateApplication: the call was accepted, its operation id never recorded.
    h.crash_at(&key, CrashPoint::AfterUpdate);
    let crash = step_until_crash(&mut h, 10).await;
    assert_eq!(crash.crashed, Some(CrashPoint::AfterUpdate));
    assert_eq!(crash.accepted_updates().count(), 1);
    assert!(
        h.status(&key)
            .unwrap()
            .operation_in_flight
            .unwrap()
            .operation_id
            .is_none()
    );
    assert_eq!(h.restarts(), 2);

    // A fault armed through the control API is listed, hit, and cleared.
    let id = h
        .arm_fault(
            &serde_json::from_str(r#"{"kind":"throttling","operation":"DescribeApplication"}"#).unwrap(),
        )
        .await;
    assert_eq!(h.faults().len(), 1);
    let r = h.step().await;
    assert!(r[0].outcome.is_err(), "throttled past the SDK's retries");
    assert!(h.faults()[0].hits >= 1);
    assert!(h.clear_fault(id).await);
    h.clear_faults().await;

    // The new controller follows the operation to its end: one update in all, recorded.
    for _ in 0..45 {
        h.step().await;
    }
    assert_eq!(
        h.update_calls("orders")
            .iter()
            .filter(|c| c.status == 200)
            .count(),
        1
    );
    let status = h.status(&key).unwrap();
    assert!(status.operation_in_flight.is_none());
    let last = status.last_scaling.unwrap();
    assert_eq!(last.outcome, checkpoint_autoscaler::policy::Outcome::Succeeded);
    assert!(
        h.events(&key)
            .iter()
            .any(|n| n.action == "Scaling" && n.reason == "ScalingSucceeded")
    );
    assert_eq!(h.operations("orders").len(), 1);
    h.shutdown().await;
}

fn ready_reason(h: &Harness, key: &BudgetKey) -> Option<String> {
    h.status(key)
        .and_then(|s| s.condition("Ready").map(|c| c.reason.clone()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_harness_answers_ownership_from_its_budgets() {
    let mut h = Harness::start(HarnessConfig::default()).await;
    let sc = scenario("step-up");
    let owner = h.add_scenario_budget(&sc, "orders", "team-a");
    h.advance(Duration::from_secs(60));
    let spec = h.budgets()[0].budget.spec.clone();
    let younger = h.add_budget("team-a", "orders-again", spec);
    h.advance(Duration::from_secs(8 * 60));
    for _ in 0..45 {
        h.step().await;
    }
    assert_eq!(ready_reason(&h, &younger).as_deref(), Some("Conflict"));
    assert_ne!(ready_reason(&h, &owner).as_deref(), Some("Conflict"));
    assert!(h.status(&younger).unwrap().last_scaling.is_none());
    assert!(
        h.status(&owner).unwrap().last_scaling.is_some(),
        "the owner scaled"
    );

    // Once the owner is gone, the other budget takes over.
    h.delete_budget(&owner);
    for _ in 0..3 {
        h.step().await;
    }
    assert_eq!(ready_reason(&h, &younger).as_deref(), Some("ApplicationObserved"));
    h.shutdown().await;
}
