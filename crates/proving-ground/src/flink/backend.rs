//! [`FlinkFleet`]: Managed Flink's service semantics over real Flink jobs.
//!
//! The same surface as [`sim::Fleet`](crate::sim::Fleet) — synchronous methods the emulator
//! calls under its lock, virtual time advanced by [`FlinkFleet::advance_to`] — but every
//! application is a Flink job on its own standalone cluster, driven by one task per
//! application (an actor owning the [`Cluster`]):
//!
//! - `UpdateApplication` with a new parallelism: `UPDATING`; stop-with-savepoint; the
//!   TaskManagers are reshaped for the new `ParallelismPerKPU`; the job is resubmitted at
//!   the new parallelism from the savepoint; once every subtask runs: `RUNNING`, the
//!   operation `SUCCESSFUL`. If the restore fails (above the job's maxParallelism, or any
//!   failure), the operation is `FAILED` with Flink's reason and the service rolls back
//!   (`ROLLING_BACK`, a `RollbackApplication` operation) by resubmitting the previous
//!   configuration from the same savepoint, as AWS does.
//! - CloudWatch metrics: the actor samples the REST API every few seconds; each virtual
//!   period boundary passed in [`FlinkFleet::advance_to`] records the latest sample with
//!   the names and units of `AWS/KinesisAnalytics`.
//!
//! NB: ParallelismPerKPU is physical (slots per TaskManager, one TaskManager per KPU) up
//! to [`BackendOptions::max_taskmanagers`]; above it the KPUs are only accounted and the
//! slots are spread over fewer TaskManagers. See `docs/flink-backend.md`.

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex, MutexGuard},
    time::{Duration, Instant},
};

use jiff::Timestamp;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tokio::{sync::mpsc, task::JoinHandle};

use super::{
    FlinkError,
    cluster::{Cluster, ClusterConfig, FlinkHome},
    job::Workload,
    rest::{CheckpointStats, JobState, SavepointState},
};
use crate::{
    aws::catalogue::{self, Monitoring, Source, SubtaskFigures, TaskFigures},
    policy::{AppConfig, AppStatus},
    sim::{
        ApplicationView, CheckpointView, ConfigurationType, CreateApplication, MetricId, MetricQuery,
        MonitoringView, OperationStatus, OperationView, ParallelismUpdate, ParallelismView, PutDatum,
        RestoreConfig, RestoreType, Scenario, ServiceError, UpdateApplication,
        fleet::SnapshotView,
        fleet::{
            ACCOUNT_ID, DEFAULT_KPU_QUOTA, DEFAULT_RUNTIME, MAX_PARALLELISM, MAX_PARALLELISM_PER_KPU,
            NAMESPACE, PERIOD, check_update, validate_runtime,
        },
        store::MetricStore,
    },
};

/// How the Flink backend runs its clusters.
#[derive(Clone, Debug, PartialEq)]
pub struct BackendOptions {
    /// At most this many TaskManager JVMs per application: one per KPU up to it (physical
    /// ParallelismPerKPU), fewer with more slots beyond (KPUs then only accounted).
    pub max_taskmanagers: u32,
    /// At most this many subtasks per job (the machine's limit; updates beyond are refused
    /// with `LimitExceededException`).
    pub max_parallelism: u32,
    /// `taskmanager.memory.process.size` of each TaskManager, MiB.
    pub taskmanager_memory_mb: u32,
    /// How often the REST API is sampled for metrics.
    pub sample_interval: Duration,
    /// How long a restored job may take until every subtask runs.
    pub restore_timeout: Duration,
    /// How long a stop-with-savepoint may take.
    pub savepoint_timeout: Duration,
    /// Runs each TaskManager on one CPU core, so that a KPU has one vCPU's worth of CPU as
    /// on the service (see [`ClusterConfig::pin_taskmanagers`]).
    pub pin_taskmanagers: bool,
    /// Seed of operation ids and conditional tokens.
    pub seed: u64,
    /// Region in ARNs.
    pub region: String,
}

impl Default for BackendOptions {
    fn default() -> Self {
        Self {
            max_taskmanagers: 2,
            max_parallelism: 8,
            taskmanager_memory_mb: 1728,
            sample_interval: Duration::from_secs(2),
            restore_timeout: Duration::from_secs(240),
            savepoint_timeout: Duration::from_secs(120),
            pin_taskmanagers: true,
            seed: 0,
            region: "us-east-1".into(),
        }
    }
}

/// TaskManagers and slots per TaskManager for a configuration: one TaskManager per KPU
/// with ParallelismPerKPU slots when the machine allows, else the subtasks spread over
/// `max_taskmanagers`.
pub fn layout(config: AppConfig, max_taskmanagers: u32) -> (u32, u32) {
    let kpus = config.kpus();
    let tms = kpus.min(max_taskmanagers.max(1));
    if tms == kpus {
        (tms, config.parallelism_per_kpu.max(1))
    } else {
        (tms, config.parallelism.div_ceil(tms))
    }
}

/// The versioned part of an application's configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Settings {
    configuration_type: ConfigurationType,
    parallelism: u32,
    parallelism_per_kpu: u32,
    auto_scaling_enabled: bool,
    /// `SnapshotsEnabled`: without, an update restarts the job without its state.
    snapshots_enabled: bool,
    /// `MonitoringConfiguration`: which metrics the job publishes.
    monitoring: MonitoringView,
}

impl Settings {
    fn config(&self) -> AppConfig {
        AppConfig::new(self.parallelism, self.parallelism_per_kpu)
    }
}

/// CloudWatch figures of one REST sample.
#[derive(Clone, Debug, Default, PartialEq)]
struct Snapshot {
    last_checkpoint_duration_ms: Option<f64>,
    last_checkpoint_size_bytes: Option<f64>,
    failed_checkpoints: f64,
    uptime_ms: f64,
    full_restarts: f64,
    cpu_utilization: Option<f64>,
    heap_memory_utilization: Option<f64>,
    container_memory_utilization: Option<f64>,
    busy_time_ms_per_second: Option<f64>,
    back_pressured_time_ms_per_second: Option<f64>,
    records_in_per_second: Option<f64>,
    /// Per task (vertex), what each subtask did: the Task, Operator and Parallelism levels.
    tasks: Vec<TaskFigures>,
    checkpoints: CheckpointStats,
}

#[derive(Debug)]
struct App {
    name: String,
    arn: String,
    description: Option<String>,
    runtime: String,
    role: String,
    created: Timestamp,
    updated: Timestamp,
    version_id: i64,
    token: String,
    settings: Settings,
    versions: BTreeMap<i64, Settings>,
    running: AppConfig,
    status: AppStatus,
    workload: Workload,
    operations: Vec<OperationView>,
    tags: Vec<(String, String)>,
    updated_from: Option<i64>,
    rolled_back_from: Option<i64>,
    rolled_back_to: Option<i64>,
    /// The Flink job running now.
    job_id: Option<String>,
    /// Since when the job has not been processing (restarts, updates).
    down_since: Option<Instant>,
    snapshot: Option<Snapshot>,
    /// The most recent savepoint.
    savepoint: Option<String>,
    /// Every savepoint taken, as the snapshots `ListApplicationSnapshots` lists.
    snapshots: Vec<SnapshotView>,
    /// Whether its checkpoints are made to fail.
    checkpoints_failing: bool,
    /// What the job reads (decides its lag metric in the catalogue).
    source: Source,
    commands: mpsc::UnboundedSender<Command>,
}

impl App {
    fn view(&self) -> ApplicationView {
        ApplicationView {
            name: self.name.clone(),
            arn: self.arn.clone(),
            description: self.description.clone(),
            status: self.status,
            version_id: self.version_id,
            runtime: self.runtime.clone(),
            service_execution_role: self.role.clone(),
            create_timestamp: self.created,
            last_update_timestamp: self.updated,
            conditional_token: self.token.clone(),
            application_mode: "STREAMING".into(),
            parallelism: ParallelismView {
                configuration_type: self.settings.configuration_type,
                parallelism: self.settings.parallelism,
                parallelism_per_kpu: self.settings.parallelism_per_kpu,
                current_parallelism: self.running.parallelism,
                auto_scaling_enabled: self.settings.auto_scaling_enabled,
            },
            checkpoint: CheckpointView {
                configuration_type: ConfigurationType::Custom,
                checkpointing_enabled: true,
                checkpoint_interval_ms: self.workload.checkpoint_interval_ms as i64,
                min_pause_between_checkpoints_ms: 0,
            },
            version_updated_from: self.updated_from,
            version_rolled_back_from: self.rolled_back_from,
            version_rolled_back_to: self.rolled_back_to,
            snapshots_enabled: self.settings.snapshots_enabled,
            restore: RestoreConfig::latest(),
            monitoring: self.settings.monitoring,
        }
    }

    /// What and how it publishes, for the metric catalogue.
    fn monitoring(&self) -> Monitoring {
        Monitoring {
            application: self.name.clone(),
            level: self.settings.monitoring.metrics_level,
            version: catalogue::flink_version(&self.runtime)
                .unwrap_or(catalogue::FlinkVersion { major: 1, minor: 20 }),
            source: self.source.clone(),
        }
    }

    /// Records a savepoint as the snapshot the service would list.
    fn record_savepoint(&mut self, path: &str, at: Timestamp) {
        self.savepoint = Some(path.to_owned());
        self.snapshots.push(SnapshotView {
            name: format!("{}-v{}-{}", self.name, self.version_id, at.as_second()),
            version_id: self.version_id,
            created: at,
            runtime: self.runtime.clone(),
        });
    }

    fn finish_op(&mut self, id: &str, at: Timestamp, status: OperationStatus, failure: Option<String>) {
        if let Some(o) = self.operations.iter_mut().find(|o| o.operation_id == id) {
            o.status = status;
            o.end_time = Some(at);
            if failure.is_some() {
                o.failure = failure;
            }
        }
    }
}

#[derive(Debug)]
struct State {
    now: Timestamp,
    rng: ChaCha8Rng,
    region: String,
    apps: BTreeMap<String, App>,
    store: MetricStore,
}

impl State {
    fn app(&self, name: &str) -> Result<&App, ServiceError> {
        self.apps
            .get(name)
            .ok_or_else(|| ServiceError::ResourceNotFound(format!("Application {name} not found.")))
    }

    fn app_mut(&mut self, name: &str) -> Result<&mut App, ServiceError> {
        self.apps
            .get_mut(name)
            .ok_or_else(|| ServiceError::ResourceNotFound(format!("Application {name} not found.")))
    }

    fn token(&mut self) -> String {
        format!(
            "{:016x}{:016x}",
            self.rng.random::<u64>(),
            self.rng.random::<u64>()
        )
    }

    fn new_op(
        &mut self,
        name: &str,
        operation: &str,
        versions: Option<(i64, i64)>,
    ) -> Result<String, ServiceError> {
        const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
        let id: String = (0..16)
            .map(|_| ALPHABET[self.rng.random_range(0..ALPHABET.len())] as char)
            .collect();
        let now = self.now;
        self.app_mut(name)?.operations.push(OperationView {
            operation_id: id.clone(),
            operation: operation.into(),
            status: OperationStatus::InProgress,
            start_time: now,
            end_time: None,
            failure: None,
            rollback_operation_id: None,
            version_updated_from: versions.map(|v| v.0),
            version_updated_to: versions.map(|v| v.1),
        });
        Ok(id)
    }

    /// Records the latest REST sample of every application as the metric catalogue says
    /// it publishes (its runtime's metrics, its source's lag, the task levels its
    /// `MetricsLevel` asks for).
    fn publish(&mut self, at: Timestamp) {
        let mut points: Vec<catalogue::Datum> = Vec::new();
        for app in self.apps.values() {
            if app.status == AppStatus::Ready {
                continue;
            }
            let m = app.monitoring();
            let mut put = |metric: &str, v: f64| points.extend(m.application(metric, v));
            put("KPUs", f64::from(app.running.kpus()));
            let processing = app.status == AppStatus::Running && app.down_since.is_none();
            match (&app.snapshot, processing) {
                (Some(s), true) => {
                    put("uptime", s.uptime_ms);
                    put("downtime", 0.0);
                    put("fullRestarts", s.full_restarts);
                    put("numRestarts", s.full_restarts);
                    put("numberOfFailedCheckpoints", s.failed_checkpoints);
                    let optional = [
                        ("lastCheckpointDuration", s.last_checkpoint_duration_ms),
                        ("lastCheckpointSize", s.last_checkpoint_size_bytes),
                        ("cpuUtilization", s.cpu_utilization),
                        ("containerCPUUtilization", s.cpu_utilization),
                        ("heapMemoryUtilization", s.heap_memory_utilization),
                        ("containerMemoryUtilization", s.container_memory_utilization),
                        ("numRecordsInPerSecond", s.records_in_per_second),
                        ("numRecordsOutPerSecond", s.records_in_per_second),
                    ];
                    for (metric, v) in optional {
                        if let Some(v) = v {
                            put(metric, v);
                        }
                    }
                    // NB: no source lag: `datagen` is a rate-limited generator, not a queue;
                    // there is no backlog to be behind on (docs/flink-backend.md).
                    points.extend(m.tasks(&s.tasks));
                }
                _ => {
                    let down = app.down_since.map_or(0.0, |d| d.elapsed().as_millis() as f64);
                    put("uptime", 0.0);
                    put("downtime", down);
                }
            }
        }
        for d in points {
            self.store.record(
                &MetricId::new(NAMESPACE, d.name, &d.dimensions),
                d.unit,
                at,
                d.value,
            );
        }
    }
}

/// What the service asks of an application's actor.
#[derive(Debug)]
enum Command {
    /// Start the job (restoring the latest savepoint when `restore`).
    Start { op: String, restore: bool },
    /// Stop (with a savepoint unless forced).
    Stop { op: String, force: bool },
    /// Snapshot, then restore at `to`; on failure roll back to `from` (version `from_version`).
    Update {
        op: String,
        from: Settings,
        from_version: i64,
        to: Settings,
        restore: bool,
    },
    /// Restart the source at a new rate (snapshot, resubmit at the same parallelism).
    SetWorkload(Workload),
    /// Make the checkpoint storage refuse checkpoints, or accept them again.
    FailCheckpoints(bool),
}

/// Many applications, each a real Flink job on its own loopback cluster, with the
/// service semantics of `kinesisanalyticsv2` and CloudWatch metrics from Flink's REST API.
#[derive(Debug)]
pub struct FlinkFleet {
    state: Arc<Mutex<State>>,
    home: FlinkHome,
    options: BackendOptions,
    runtime: tokio::runtime::Handle,
    actors: Vec<JoinHandle<()>>,
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    // NB: a panic while holding the lock leaves plain data behind; keep serving it.
    state.lock().unwrap_or_else(|p| p.into_inner())
}

impl FlinkFleet {
    /// An empty fleet at virtual time `start`; must be called inside a tokio runtime (the
    /// actors run on it).
    pub fn new(home: FlinkHome, options: BackendOptions, start: Timestamp) -> Result<Self, FlinkError> {
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|e| FlinkError::Home(format!("the Flink backend needs a tokio runtime: {e}")))?;
        let secs = start.as_second() - start.as_second().rem_euclid(60);
        let state = State {
            now: Timestamp::from_second(secs).unwrap_or(start),
            rng: ChaCha8Rng::seed_from_u64(options.seed),
            region: options.region.clone(),
            apps: BTreeMap::new(),
            store: MetricStore::default(),
        };
        Ok(Self {
            state: Arc::new(Mutex::new(state)),
            home,
            options,
            runtime,
            actors: Vec::new(),
        })
    }

    /// The current virtual time (a period boundary).
    pub fn now(&self) -> Timestamp {
        lock(&self.state).now
    }

    /// Records one datapoint per metric and application for every period boundary at or
    /// before `t`, from the latest REST sample.
    pub fn advance_to(&mut self, t: Timestamp) {
        let mut s = lock(&self.state);
        while s.now + PERIOD <= t {
            let at = s.now;
            s.publish(at);
            s.now = at + PERIOD;
        }
    }

    fn validate(&self, s: &Settings) -> Result<(), ServiceError> {
        if s.parallelism < 1 || s.parallelism > MAX_PARALLELISM {
            return Err(ServiceError::InvalidArgument(format!(
                "Parallelism {} is out of range: it must be between 1 and {MAX_PARALLELISM}.",
                s.parallelism
            )));
        }
        if !(1..=MAX_PARALLELISM_PER_KPU).contains(&s.parallelism_per_kpu) {
            return Err(ServiceError::InvalidArgument(format!(
                "ParallelismPerKPU {} is out of range: it must be between 1 and {MAX_PARALLELISM_PER_KPU}.",
                s.parallelism_per_kpu
            )));
        }
        let kpus = s.config().kpus();
        if kpus > DEFAULT_KPU_QUOTA {
            return Err(ServiceError::LimitExceeded(format!(
                "The application would use {kpus} KPUs, above the limit of {DEFAULT_KPU_QUOTA} KPUs per application."
            )));
        }
        if s.parallelism > self.options.max_parallelism {
            return Err(ServiceError::LimitExceeded(format!(
                "Parallelism {} is above what the Flink backend runs on this machine ({}).",
                s.parallelism, self.options.max_parallelism
            )));
        }
        Ok(())
    }

    /// Adds an application running `workload` at `config` and starts it (`STARTING` until
    /// every subtask of the job runs, then `RUNNING`).
    pub fn add_application(
        &mut self,
        name: &str,
        description: Option<String>,
        workload: Workload,
        config: AppConfig,
    ) -> Result<ApplicationView, ServiceError> {
        self.add_configured_application(
            CreateApplication {
                name: name.to_string(),
                description,
                service_execution_role: format!("arn:aws:iam::{ACCOUNT_ID}:role/flink-application"),
                ..CreateApplication::default()
            },
            workload,
            config,
            true,
            MonitoringView::DEFAULT,
        )
    }

    /// [`add_application`](Self::add_application) with the runtime, source, snapshot and
    /// monitoring settings of `req` (a scenario's `application:`).
    fn add_configured_application(
        &mut self,
        req: CreateApplication,
        workload: Workload,
        config: AppConfig,
        snapshots_enabled: bool,
        monitoring: MonitoringView,
    ) -> Result<ApplicationView, ServiceError> {
        let name = req.name.as_str();
        workload
            .validate()
            .map_err(|e| ServiceError::InvalidArgument(e.to_string()))?;
        let settings = Settings {
            configuration_type: ConfigurationType::Custom,
            parallelism: config.parallelism,
            parallelism_per_kpu: config.parallelism_per_kpu,
            auto_scaling_enabled: false,
            snapshots_enabled,
            monitoring,
        };
        self.validate(&settings)?;
        self.insert(&req, settings, workload)?;
        let mut s = lock(&self.state);
        let op = s.new_op(name, "StartApplication", None)?;
        let app = s.app_mut(name)?;
        app.status = AppStatus::Starting;
        app.down_since = Some(Instant::now());
        let _ = app.commands.send(Command::Start { op, restore: false });
        Ok(app.view())
    }

    /// Adds one application for a scenario, running: the scenario's initial rate, keys,
    /// bytes per key, maxParallelism, checkpoint interval and timeout become the job's
    /// workload (the per-record CPU cost is [`Workload::cpu_rounds`]'s default; the load
    /// trace after its start is not replayed — use [`FlinkFleet::set_workload`]).
    pub fn add_scenario(
        &mut self,
        scenario: &Scenario,
        name: Option<&str>,
    ) -> Result<ApplicationView, ServiceError> {
        scenario
            .validate()
            .map_err(|e| ServiceError::InvalidArgument(e.to_string()))?;
        let a = &scenario.application;
        let name = name.unwrap_or(&a.name);
        self.add_configured_application(
            CreateApplication {
                name: name.to_string(),
                description: scenario.description.clone(),
                runtime: Some(a.runtime_environment.clone()),
                service_execution_role: format!("arn:aws:iam::{ACCOUNT_ID}:role/flink-application"),
                source: Some(a.source.to_source(name)),
                ..CreateApplication::default()
            },
            workload_of(scenario),
            AppConfig::new(a.parallelism, a.parallelism_per_kpu),
            a.snapshots_enabled,
            MonitoringView::at_level(a.metrics_level),
        )
    }

    fn insert(
        &mut self,
        req: &CreateApplication,
        settings: Settings,
        workload: Workload,
    ) -> Result<(), ServiceError> {
        let name = &req.name;
        let valid = !name.is_empty()
            && name.len() <= 128
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
        if !valid {
            return Err(ServiceError::InvalidArgument(format!(
                "ApplicationName {name:?} must be 1 to 128 characters of [a-zA-Z0-9_.-]."
            )));
        }
        if req.service_execution_role.is_empty() {
            return Err(ServiceError::InvalidArgument(
                "ServiceExecutionRole is required.".into(),
            ));
        }
        let runtime = req.runtime.clone().unwrap_or_else(|| DEFAULT_RUNTIME.into());
        validate_runtime(&runtime)?;
        let mut s = lock(&self.state);
        if s.apps.contains_key(name) {
            return Err(ServiceError::ResourceInUse(format!(
                "Application {name} already exists."
            )));
        }
        let (tx, rx) = mpsc::unbounded_channel();
        let token = s.token();
        let now = s.now;
        let arn = format!(
            "arn:aws:kinesisanalytics:{}:{ACCOUNT_ID}:application/{name}",
            s.region
        );
        s.apps.insert(
            name.clone(),
            App {
                name: name.clone(),
                arn,
                description: req.description.clone(),
                runtime,
                role: req.service_execution_role.clone(),
                created: now,
                updated: now,
                version_id: 1,
                token,
                settings,
                versions: BTreeMap::from([(1, settings)]),
                running: settings.config(),
                status: AppStatus::Ready,
                workload: workload.clone(),
                operations: Vec::new(),
                tags: req.tags.clone(),
                updated_from: None,
                rolled_back_from: None,
                rolled_back_to: None,
                job_id: None,
                down_since: None,
                snapshot: None,
                savepoint: None,
                snapshots: Vec::new(),
                checkpoints_failing: false,
                source: req.source.clone().unwrap_or_else(|| Source::default_for(name)),
                commands: tx,
            },
        );
        drop(s);
        let actor = Actor {
            name: name.clone(),
            state: self.state.clone(),
            home: self.home.clone(),
            options: self.options.clone(),
            cluster: None,
            job: None,
            workload,
            checkpoints_failing: false,
        };
        self.actors.push(self.runtime.spawn(actor.run(rx)));
        Ok(())
    }

    /// `CreateApplication`: `READY`, not running (its cluster starts with the application).
    pub fn create_application(&mut self, req: CreateApplication) -> Result<ApplicationView, ServiceError> {
        let base = Settings {
            configuration_type: ConfigurationType::Custom,
            parallelism: 1,
            parallelism_per_kpu: 1,
            auto_scaling_enabled: false,
            snapshots_enabled: req.snapshots_enabled.unwrap_or(true),
            monitoring: req
                .monitoring
                .as_ref()
                .map_or(MonitoringView::DEFAULT, |m| MonitoringView::DEFAULT.merge(m)),
        };
        let settings = match &req.parallelism {
            Some(p) => merge(base, p)?,
            None => Settings {
                configuration_type: ConfigurationType::Default,
                ..base
            },
        };
        self.validate(&settings)?;
        let workload = req.workload.as_ref().map(workload_of).unwrap_or_default();
        workload
            .validate()
            .map_err(|e| ServiceError::InvalidArgument(e.to_string()))?;
        self.insert(&req, settings, workload)?;
        self.describe_application(&req.name)
    }

    /// All applications, by name.
    pub fn list_applications(&self) -> Vec<ApplicationView> {
        lock(&self.state).apps.values().map(App::view).collect()
    }

    /// One application.
    pub fn describe_application(&self, name: &str) -> Result<ApplicationView, ServiceError> {
        Ok(lock(&self.state).app(name)?.view())
    }

    /// `UpdateApplication`: a new parallelism of a running application is a real
    /// stop-with-savepoint and restore (see the module docs); otherwise the new version
    /// takes effect at once.
    pub fn update_application(
        &mut self,
        name: &str,
        req: UpdateApplication,
    ) -> Result<(ApplicationView, String), ServiceError> {
        let (settings, from, from_version, running, restore) = {
            let s = lock(&self.state);
            let app = s.app(name)?;
            check_update(name, &req, app.version_id, &app.token, app.status)?;
            let mut settings = match &req.parallelism {
                Some(p) => merge(app.settings, p)?,
                None => app.settings,
            };
            if let Some(enabled) = req.snapshots_enabled {
                settings.snapshots_enabled = enabled;
            }
            if let Some(m) = &req.monitoring {
                settings.monitoring = settings.monitoring.merge(m);
            }
            let restore = match &req.restore {
                None => true,
                Some(r) => match r.application_restore_type {
                    RestoreType::RestoreFromLatestSnapshot => true,
                    RestoreType::SkipRestoreFromSnapshot => false,
                    RestoreType::RestoreFromCustomSnapshot => {
                        return Err(ServiceError::ResourceNotFound(format!(
                            "Snapshot {} does not exist for application {name}.",
                            r.snapshot_name.as_deref().unwrap_or("")
                        )));
                    }
                },
            };
            (
                settings,
                app.settings,
                app.version_id,
                app.status == AppStatus::Running,
                restore,
            )
        };
        self.validate(&settings)?;
        let mut s = lock(&self.state);
        let token = s.token();
        let op = s.new_op(name, "UpdateApplication", Some((from_version, from_version + 1)))?;
        let now = s.now;
        let app = s.app_mut(name)?;
        app.version_id += 1;
        app.versions.insert(app.version_id, settings);
        app.updated_from = Some(from_version);
        app.token = token;
        app.updated = now;
        app.settings = settings;
        let restart = running && (settings.config() != app.running || !restore);
        if restart {
            app.status = AppStatus::Updating;
            let _ = app.commands.send(Command::Update {
                op: op.clone(),
                from,
                from_version,
                to: settings,
                // Without snapshots the job restarts without its state (the service
                // snapshots as it stops only when snapshots are on).
                restore: restore && settings.snapshots_enabled,
            });
        } else {
            if !running {
                app.running = settings.config();
            }
            app.finish_op(&op, now, OperationStatus::Successful, None);
        }
        Ok((app.view(), op))
    }

    /// One operation of an application.
    pub fn describe_operation(&self, name: &str, operation_id: &str) -> Result<OperationView, ServiceError> {
        lock(&self.state)
            .app(name)?
            .operations
            .iter()
            .find(|o| o.operation_id == operation_id)
            .cloned()
            .ok_or_else(|| ServiceError::ResourceNotFound(format!("Operation {operation_id} not found.")))
    }

    /// `ListApplicationSnapshots`: the savepoints taken, oldest first.
    pub fn list_snapshots(&self, name: &str) -> Result<Vec<SnapshotView>, ServiceError> {
        Ok(lock(&self.state).app(name)?.snapshots.clone())
    }

    /// All operations of an application, newest first.
    pub fn list_operations(&self, name: &str) -> Result<Vec<OperationView>, ServiceError> {
        Ok(lock(&self.state)
            .app(name)?
            .operations
            .iter()
            .rev()
            .cloned()
            .collect())
    }

    /// `RollbackApplication` of a `RUNNING` application: back to the previous version's
    /// configuration through a real savepoint and restore.
    pub fn rollback_application(
        &mut self,
        name: &str,
        current_version_id: i64,
    ) -> Result<(ApplicationView, String), ServiceError> {
        let mut s = lock(&self.state);
        let app = s.app(name)?;
        if current_version_id != app.version_id {
            return Err(ServiceError::ConcurrentModification(format!(
                "Current application version id {current_version_id} does not match the application's version id {}.",
                app.version_id
            )));
        }
        if app.status != AppStatus::Running {
            return Err(ServiceError::ResourceInUse(format!(
                "Application {name} is in {} status; the Flink backend rolls back only RUNNING applications.",
                app.status.as_str()
            )));
        }
        let Some((&to_version, &to)) = app.versions.range(..app.version_id).next_back() else {
            return Err(ServiceError::InvalidRequest(format!(
                "Application {name} has no previous version to roll back to."
            )));
        };
        let from = app.settings;
        let op = s.new_op(
            name,
            "RollbackApplication",
            Some((current_version_id, current_version_id + 1)),
        )?;
        let now = s.now;
        let app = s.app_mut(name)?;
        app.version_id += 1;
        app.versions.insert(app.version_id, to);
        app.settings = to;
        app.rolled_back_from = Some(current_version_id);
        app.rolled_back_to = Some(to_version);
        app.updated = now;
        app.status = AppStatus::RollingBack;
        let _ = app.commands.send(Command::Update {
            op: op.clone(),
            from,
            from_version: current_version_id,
            to,
            restore: true,
        });
        Ok((app.view(), op))
    }

    /// `StartApplication` (from `READY`): starts the job, restoring the latest savepoint.
    pub fn start_application(&mut self, name: &str) -> Result<String, ServiceError> {
        let mut s = lock(&self.state);
        let app = s.app(name)?;
        if app.status != AppStatus::Ready {
            return Err(ServiceError::ResourceInUse(format!(
                "Application {name} is in {} status; it can be started only when READY.",
                app.status.as_str()
            )));
        }
        let op = s.new_op(name, "StartApplication", None)?;
        let app = s.app_mut(name)?;
        app.status = AppStatus::Starting;
        app.down_since = Some(Instant::now());
        let _ = app.commands.send(Command::Start {
            op: op.clone(),
            restore: true,
        });
        Ok(op)
    }

    /// `StopApplication`: stop-with-savepoint, or a cancel when forced.
    pub fn stop_application(&mut self, name: &str, force: bool) -> Result<String, ServiceError> {
        let mut s = lock(&self.state);
        let app = s.app(name)?;
        if app.status != AppStatus::Running {
            return Err(ServiceError::ResourceInUse(format!(
                "Application {name} is in {} status; the Flink backend stops only RUNNING applications.",
                app.status.as_str()
            )));
        }
        let op = s.new_op(name, "StopApplication", None)?;
        let app = s.app_mut(name)?;
        app.status = if force {
            AppStatus::ForceStopping
        } else {
            AppStatus::Stopping
        };
        let _ = app.commands.send(Command::Stop {
            op: op.clone(),
            force,
        });
        Ok(op)
    }

    /// Changes the workload of a running application (a load step): Flink's `datagen`
    /// cannot change its rate live, so the job is stopped with a savepoint and resubmitted
    /// at the same parallelism from it; the application stays `RUNNING` (with downtime).
    pub fn set_workload(&mut self, name: &str, workload: Workload) -> Result<(), ServiceError> {
        workload
            .validate()
            .map_err(|e| ServiceError::InvalidArgument(e.to_string()))?;
        let mut s = lock(&self.state);
        let app = s.app_mut(name)?;
        if app.workload.max_parallelism != workload.max_parallelism {
            return Err(ServiceError::InvalidArgument(
                "maxParallelism is part of the job's state layout and cannot change at run time.".into(),
            ));
        }
        app.workload = workload.clone();
        let _ = app.commands.send(Command::SetWorkload(workload));
        Ok(())
    }

    /// Makes every checkpoint of the application fail at once (its checkpoint storage
    /// refuses them: see [`Cluster::set_checkpoint_storage_failing`]), or succeed again; the
    /// job keeps running and stays failing across restarts until switched back. The
    /// signature of a fault no scaling fixes (a serializer mismatch, a failing external
    /// call or storage) on the real runtime.
    pub fn set_checkpoints_failing(&mut self, name: &str, failing: bool) -> Result<(), ServiceError> {
        let mut s = lock(&self.state);
        let app = s.app_mut(name)?;
        app.checkpoints_failing = failing;
        let _ = app.commands.send(Command::FailCheckpoints(failing));
        Ok(())
    }

    /// Whether the application's checkpoints are made to fail
    /// ([`FlinkFleet::set_checkpoints_failing`]).
    pub fn checkpoints_failing(&self, name: &str) -> Result<bool, ServiceError> {
        Ok(lock(&self.state).app(name)?.checkpoints_failing)
    }

    /// The workload of an application.
    pub fn workload(&self, name: &str) -> Result<Workload, ServiceError> {
        Ok(lock(&self.state).app(name)?.workload.clone())
    }

    /// The Flink job id running now, and the latest checkpoint statistics sampled from it
    /// (for tests and the docs' comparison: checkpoint ids continue across a restore).
    pub fn flink_job(&self, name: &str) -> Result<(Option<String>, Option<CheckpointStats>), ServiceError> {
        let s = lock(&self.state);
        let app = s.app(name)?;
        Ok((
            app.job_id.clone(),
            app.snapshot.as_ref().map(|s| s.checkpoints.clone()),
        ))
    }

    /// The latest sampled busy time of the job's busiest subtask after the source, ms/s,
    /// read from Flink directly whatever the application's metrics level (for `demo`'s
    /// calibration of the load to the machine; CloudWatch has it only per task).
    pub fn sampled_busy_time(&self, name: &str) -> Result<Option<f64>, ServiceError> {
        let s = lock(&self.state);
        Ok(s.app(name)?
            .snapshot
            .as_ref()
            .and_then(|s| s.busy_time_ms_per_second))
    }

    /// `TagResource`.
    pub fn tag_resource(&mut self, arn: &str, tags: Vec<(String, String)>) -> Result<(), ServiceError> {
        let mut s = lock(&self.state);
        let app = app_by_arn(&mut s, arn)?;
        for (k, v) in tags {
            match app.tags.iter_mut().find(|(mk, _)| *mk == k) {
                Some(existing) => existing.1 = v,
                None => app.tags.push((k, v)),
            }
        }
        Ok(())
    }

    /// `UntagResource`.
    pub fn untag_resource(&mut self, arn: &str, keys: &[String]) -> Result<(), ServiceError> {
        let mut s = lock(&self.state);
        app_by_arn(&mut s, arn)?.tags.retain(|(k, _)| !keys.contains(k));
        Ok(())
    }

    /// `ListTagsForResource`.
    pub fn list_tags(&self, arn: &str) -> Result<Vec<(String, String)>, ServiceError> {
        let mut s = lock(&self.state);
        Ok(app_by_arn(&mut s, arn)?.tags.clone())
    }

    /// Datapoints of one metric aggregated to `period` with `stat`, in [start, end).
    pub fn metric_data(&self, q: &MetricQuery) -> Vec<(Timestamp, f64)> {
        lock(&self.state).store.query(q)
    }

    /// The unit a metric is published with.
    pub fn metric_unit(&self, id: &MetricId) -> Option<String> {
        lock(&self.state).store.unit(id).map(str::to_string)
    }

    /// Metrics matching the filters.
    pub fn list_metrics(
        &self,
        namespace: Option<&str>,
        metric_name: Option<&str>,
        dims: &[(String, String)],
    ) -> Vec<MetricId> {
        lock(&self.state).store.list(namespace, metric_name, dims)
    }

    /// `PutMetricData` (namespaces `AWS/...` are reserved, as in CloudWatch).
    pub fn put_metric_data(&mut self, namespace: &str, data: Vec<PutDatum>) -> Result<(), ServiceError> {
        if namespace.starts_with("AWS/") || namespace.is_empty() {
            return Err(ServiceError::InvalidArgument(format!(
                "The value {namespace} for parameter Namespace is invalid: namespaces starting with AWS/ are reserved."
            )));
        }
        let mut s = lock(&self.state);
        let now = s.now;
        for d in &data {
            s.store.put(namespace, d, now);
        }
        Ok(())
    }

    /// Stops every actor and waits until their clusters are gone (dropping the fleet also
    /// stops them, without waiting).
    pub async fn shutdown(mut self) {
        lock(&self.state).apps.clear();
        for actor in std::mem::take(&mut self.actors) {
            let _ = actor.await;
        }
    }
}

impl Drop for FlinkFleet {
    fn drop(&mut self) {
        // Dropping the command senders ends each actor at its next await; its Cluster's
        // Drop then stops the JVMs.
        lock(&self.state).apps.clear();
    }
}

fn app_by_arn<'a>(s: &'a mut State, arn: &str) -> Result<&'a mut App, ServiceError> {
    s.apps
        .values_mut()
        .find(|a| a.arn == arn)
        .ok_or_else(|| ServiceError::ResourceNotFound(format!("Resource {arn} not found.")))
}

/// Merges a parallelism update, enforcing `CUSTOM` for explicit values.
fn merge(base: Settings, update: &ParallelismUpdate) -> Result<Settings, ServiceError> {
    let kind = update.configuration_type.unwrap_or(base.configuration_type);
    let explicit = update.parallelism.is_some()
        || update.parallelism_per_kpu.is_some()
        || update.auto_scaling_enabled.is_some();
    match kind {
        ConfigurationType::Default if explicit => Err(ServiceError::InvalidArgument(
            "ConfigurationType must be CUSTOM to set Parallelism, ParallelismPerKPU or AutoScalingEnabled."
                .into(),
        )),
        ConfigurationType::Default => Ok(Settings {
            configuration_type: ConfigurationType::Default,
            parallelism: 1,
            parallelism_per_kpu: 1,
            auto_scaling_enabled: base.auto_scaling_enabled,
            ..base
        }),
        ConfigurationType::Custom => Ok(Settings {
            configuration_type: ConfigurationType::Custom,
            parallelism: update.parallelism.unwrap_or(base.parallelism),
            parallelism_per_kpu: update.parallelism_per_kpu.unwrap_or(base.parallelism_per_kpu),
            auto_scaling_enabled: update.auto_scaling_enabled.unwrap_or(base.auto_scaling_enabled),
            ..base
        }),
    }
}

/// The Flink workload of a scenario (see [`FlinkFleet::add_scenario`]).
pub fn workload_of(scenario: &Scenario) -> Workload {
    let d = Workload::default();
    let c = &scenario.checkpoints;
    Workload {
        records_per_second: scenario.load.rate_at(Duration::ZERO).round().max(1.0) as u64,
        keys: scenario.state.keys.round().max(1.0) as u64,
        value_bytes: scenario.state.bytes_per_key.round().clamp(1.0, 1_000_000.0) as u32,
        cpu_rounds: d.cpu_rounds,
        max_parallelism: scenario.application.key_groups(),
        checkpoint_interval_ms: (c.interval.as_millis() as u64).max(10),
        checkpoint_timeout_ms: (c.timeout.as_millis() as u64).max(10),
        tolerable_failed_checkpoints: c.tolerable_failures,
    }
}

/// One application's worker: owns its cluster and runs the service's transitions.
struct Actor {
    name: String,
    state: Arc<Mutex<State>>,
    home: FlinkHome,
    options: BackendOptions,
    cluster: Option<Cluster>,
    job: Option<String>,
    workload: Workload,
    /// Whether checkpoints are made to fail (applied to every job it launches).
    checkpoints_failing: bool,
}

impl Actor {
    async fn run(mut self, mut commands: mpsc::UnboundedReceiver<Command>) {
        let mut tick = tokio::time::interval(self.options.sample_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                cmd = commands.recv() => match cmd {
                    Some(cmd) => self.handle(cmd).await,
                    None => break,
                },
                _ = tick.tick() => self.sample().await,
            }
        }
        if let Some(job) = self.job.take()
            && let Some(c) = &self.cluster
        {
            let _ = c.rest().cancel(&job).await;
        }
        // Dropping the cluster stops its JVMs.
        self.cluster = None;
    }

    /// Runs `f` on this application's shared record (a no-op once the fleet is gone).
    fn with_app(&self, f: impl FnOnce(&mut App, Timestamp)) {
        let mut s = lock(&self.state);
        let now = s.now;
        if let Some(app) = s.apps.get_mut(&self.name) {
            f(app, now);
        }
    }

    async fn handle(&mut self, cmd: Command) {
        match cmd {
            Command::Start { op, restore } => {
                let config = self.config();
                let savepoint = if restore { self.savepoint() } else { None };
                match self.launch(config, savepoint.as_deref()).await {
                    Ok(()) => self.with_app(|app, now| {
                        app.status = AppStatus::Running;
                        app.running = config;
                        app.down_since = None;
                        app.finish_op(&op, now, OperationStatus::Successful, None);
                    }),
                    Err(e) => self.with_app(|app, now| {
                        app.status = AppStatus::Ready;
                        app.down_since = None;
                        app.finish_op(&op, now, OperationStatus::Failed, Some(e.to_string()));
                    }),
                }
            }
            Command::Stop { op, force } => {
                let result = match (force, self.job.clone()) {
                    (_, None) => Ok(None),
                    (true, Some(job)) => self.cancel(&job).await.map(|()| None),
                    (false, Some(job)) => self.take_savepoint(&job).await.map(Some),
                };
                match result {
                    Ok(savepoint) => {
                        self.job = None;
                        self.with_app(|app, now| {
                            app.status = AppStatus::Ready;
                            app.job_id = None;
                            app.snapshot = None;
                            if let Some(path) = &savepoint {
                                app.record_savepoint(path, now);
                            }
                            app.finish_op(&op, now, OperationStatus::Successful, None);
                        });
                    }
                    Err(e) => self.with_app(|app, now| {
                        app.status = AppStatus::Running;
                        app.finish_op(&op, now, OperationStatus::Failed, Some(e.to_string()));
                    }),
                }
            }
            Command::Update {
                op,
                from,
                from_version,
                to,
                restore,
            } => self.update(op, from, from_version, to, restore).await,
            Command::FailCheckpoints(failing) => {
                self.checkpoints_failing = failing;
                if let (Some(job), Some(cluster)) = (&self.job, &self.cluster)
                    && let Err(e) = cluster.set_checkpoint_storage_failing(job, failing)
                {
                    tracing::warn!(application = %self.name, error = %e, "switching the checkpoint storage failed");
                }
            }
            Command::SetWorkload(workload) => {
                self.workload = workload;
                let Some(job) = self.job.clone() else { return };
                self.with_app(|app, _| app.down_since = Some(Instant::now()));
                let config = self.config();
                let result = match self.take_savepoint(&job).await {
                    Ok(sp) => self.launch(config, Some(&sp)).await,
                    Err(e) => Err(e),
                };
                if let Err(e) = result {
                    tracing::warn!(application = %self.name, error = %e, "restarting the source at the new rate failed");
                }
                self.with_app(|app, _| app.down_since = None);
            }
        }
    }

    /// Snapshot, restore at `to`; if the restore fails, roll back to `from` from the same
    /// snapshot and report the failure, as the service does.
    async fn update(&mut self, op: String, from: Settings, from_version: i64, to: Settings, restore: bool) {
        let Some(job) = self.job.clone() else {
            self.with_app(|app, now| {
                app.status = AppStatus::Ready;
                app.finish_op(
                    &op,
                    now,
                    OperationStatus::Failed,
                    Some("the job was not running".into()),
                );
            });
            return;
        };
        self.with_app(|app, _| app.down_since = Some(Instant::now()));
        let savepoint = match self.take_savepoint(&job).await {
            Ok(sp) => sp,
            Err(e) => {
                // The job keeps running at the old configuration: a rollback without restart.
                self.with_app(|app, now| {
                    rollback_version(app, from, from_version, now);
                    app.status = AppStatus::Running;
                    app.down_since = None;
                    app.finish_op(
                        &op,
                        now,
                        OperationStatus::Failed,
                        Some(format!("Snapshot before the update failed: {e}")),
                    );
                });
                return;
            }
        };
        self.with_app(|app, now| app.record_savepoint(&savepoint, now));
        let restore_from = restore.then_some(savepoint.as_str());
        match self.launch(to.config(), restore_from).await {
            Ok(()) => self.with_app(|app, now| {
                app.status = AppStatus::Running;
                app.running = to.config();
                app.down_since = None;
                app.finish_op(&op, now, OperationStatus::Successful, None);
            }),
            Err(e) => {
                tracing::warn!(application = %self.name, error = %e, "restore failed; rolling back");
                let rollback_op = format!("{op}-rollback");
                self.with_app(|app, now| {
                    app.finish_op(&op, now, OperationStatus::Failed, Some(failure_message(&e)));
                    if let Some(o) = app.operations.iter_mut().find(|o| o.operation_id == op) {
                        o.rollback_operation_id = Some(rollback_op.clone());
                    }
                    app.operations.push(OperationView {
                        operation_id: rollback_op.clone(),
                        operation: "RollbackApplication".into(),
                        status: OperationStatus::InProgress,
                        start_time: now,
                        end_time: None,
                        failure: None,
                        rollback_operation_id: None,
                        version_updated_from: Some(app.version_id),
                        version_updated_to: Some(app.version_id + 1),
                    });
                    app.status = AppStatus::RollingBack;
                });
                match self.launch(from.config(), Some(&savepoint)).await {
                    Ok(()) => self.with_app(|app, now| {
                        rollback_version(app, from, from_version, now);
                        app.status = AppStatus::Running;
                        app.running = from.config();
                        app.down_since = None;
                        app.finish_op(&rollback_op, now, OperationStatus::Successful, None);
                    }),
                    Err(e) => self.with_app(|app, now| {
                        app.status = AppStatus::Ready;
                        app.down_since = None;
                        app.job_id = None;
                        app.finish_op(
                            &rollback_op,
                            now,
                            OperationStatus::Failed,
                            Some(failure_message(&e)),
                        );
                    }),
                }
            }
        }
    }

    fn config(&self) -> AppConfig {
        let s = lock(&self.state);
        s.apps
            .get(&self.name)
            .map_or(AppConfig::new(1, 1), |a| a.settings.config())
    }

    fn savepoint(&self) -> Option<String> {
        lock(&self.state)
            .apps
            .get(&self.name)
            .and_then(|a| a.savepoint.clone())
    }

    /// Starts (or reshapes) the cluster for `config`, submits the job and waits until every
    /// subtask runs; a job that fails meanwhile is cancelled and its reason returned.
    async fn launch(&mut self, config: AppConfig, savepoint: Option<&str>) -> Result<(), FlinkError> {
        let (tms, slots) = layout(config, self.options.max_taskmanagers);
        match &mut self.cluster {
            Some(c) => c.reshape(tms, slots).await?,
            None => {
                let cfg = ClusterConfig {
                    taskmanagers: tms,
                    slots_per_taskmanager: slots,
                    taskmanager_memory: format!("{}m", self.options.taskmanager_memory_mb),
                    pin_taskmanagers: self.options.pin_taskmanagers,
                    ..ClusterConfig::default()
                };
                self.cluster = Some(Cluster::start(&self.home, cfg).await?);
            }
        }
        let Some(cluster) = self.cluster.as_mut() else {
            return Err(FlinkError::ProcessExited("the cluster is gone".into()));
        };
        let job = cluster
            .submit(&self.name, &self.workload, config.parallelism, savepoint)
            .await?;
        self.with_app(|app, _| app.job_id = Some(job.clone()));
        match self.wait_running(&job).await {
            Ok(()) => {
                if self.checkpoints_failing
                    && let Some(cluster) = &self.cluster
                {
                    cluster.set_checkpoint_storage_failing(&job, true)?;
                }
                self.job = Some(job);
                Ok(())
            }
            Err(e) => {
                let _ = self.cancel(&job).await;
                self.with_app(|app, _| app.job_id = None);
                self.job = None;
                Err(e)
            }
        }
    }

    async fn wait_running(&self, job: &str) -> Result<(), FlinkError> {
        let Some(cluster) = &self.cluster else {
            return Err(FlinkError::ProcessExited("the cluster is gone".into()));
        };
        let rest = cluster.rest();
        let deadline = Instant::now() + self.options.restore_timeout;
        loop {
            match rest.job(job).await {
                Ok(d) if d.all_running() => return Ok(()),
                Ok(d)
                    if matches!(
                        d.state,
                        JobState::Failing | JobState::Failed | JobState::Restarting | JobState::Canceled
                    ) =>
                {
                    let reason = rest
                        .root_exception(job)
                        .await
                        .ok()
                        .flatten()
                        .unwrap_or_else(|| format!("the job went {:?}", d.state));
                    return Err(FlinkError::JobFailed(reason));
                }
                Ok(_) => {}
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(e.into()),
            }
            if Instant::now() > deadline {
                return Err(FlinkError::Timeout {
                    what: "the restored job to run".into(),
                    after: self.options.restore_timeout,
                });
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    async fn cancel(&self, job: &str) -> Result<(), FlinkError> {
        let Some(cluster) = &self.cluster else {
            return Ok(());
        };
        match cluster.rest().cancel(job).await {
            Ok(()) => {}
            // Already ended.
            Err(e) if e.is_not_found() => return Ok(()),
            Err(e) => return Err(e.into()),
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            match cluster.rest().job(job).await {
                Ok(d) if d.state.is_terminal() => return Ok(()),
                Err(e) if e.is_not_found() => return Ok(()),
                _ => tokio::time::sleep(Duration::from_millis(300)).await,
            }
        }
        Err(FlinkError::Timeout {
            what: "the job to cancel".into(),
            after: Duration::from_secs(60),
        })
    }

    /// Stop-with-savepoint; returns the savepoint's location once the job has stopped.
    async fn take_savepoint(&mut self, job: &str) -> Result<String, FlinkError> {
        let Some(cluster) = &self.cluster else {
            return Err(FlinkError::ProcessExited("the cluster is gone".into()));
        };
        let rest = cluster.rest();
        let request = rest.stop_with_savepoint(job, &cluster.savepoint_uri()).await?;
        let deadline = Instant::now() + self.options.savepoint_timeout;
        loop {
            match rest.savepoint_status(job, &request).await? {
                SavepointState::Completed { location } => {
                    self.job = None;
                    self.with_app(|app, _| {
                        app.job_id = None;
                        app.snapshot = None;
                    });
                    return Ok(location);
                }
                SavepointState::Failed { cause } => return Err(FlinkError::Savepoint(cause)),
                SavepointState::InProgress => {}
            }
            if Instant::now() > deadline {
                return Err(FlinkError::Timeout {
                    what: "the savepoint".into(),
                    after: self.options.savepoint_timeout,
                });
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// One REST sample of the running job into the shared record.
    async fn sample(&mut self) {
        let (Some(job), Some(cluster)) = (&self.job, &self.cluster) else {
            return;
        };
        let (tms, _) = cluster.layout();
        // The vCPUs the job really has: one core per pinned TaskManager; unpinned, the
        // KPUs billed (each JVM may use any core).
        let vcpus = cluster
            .taskmanager_cores()
            .unwrap_or_else(|| self.config().kpus());
        match sample(cluster, job, tms, vcpus, self.options.taskmanager_memory_mb).await {
            Ok(snapshot) => self.with_app(|app, _| app.snapshot = Some(snapshot)),
            Err(e) => tracing::debug!(application = %self.name, error = %e, "sampling the REST API failed"),
        }
    }
}

/// A rollback's new version: the settings of `from_version` again, as a new version id.
fn rollback_version(app: &mut App, from: Settings, from_version: i64, now: Timestamp) {
    let failed = app.version_id;
    app.version_id += 1;
    app.versions.insert(app.version_id, from);
    app.settings = from;
    app.rolled_back_from = Some(failed);
    app.rolled_back_to = Some(from_version);
    app.updated = now;
}

/// AWS's failure string for a failed restore.
fn failure_message(e: &FlinkError) -> String {
    format!("The application failed to restore its state at the new configuration: {e}")
}

async fn sample(
    cluster: &Cluster,
    job: &str,
    taskmanagers: u32,
    vcpus: u32,
    tm_memory_mb: u32,
) -> Result<Snapshot, FlinkError> {
    let rest = cluster.rest();
    let details = rest.job(job).await?;
    let checkpoints = rest.checkpoints(job).await?;
    let job_metrics = rest.job_metrics(job, &["uptime", "numRestarts"]).await?;
    let mut busy: Option<f64> = None;
    let mut back_pressured: Option<f64> = None;
    let mut records_in = None::<f64>;
    let mut tasks = Vec::new();
    for v in &details.vertices {
        let m = rest
            .vertex_metrics(
                job,
                &v.id,
                &[
                    "busyTimeMsPerSecond",
                    "backPressuredTimeMsPerSecond",
                    "numRecordsOutPerSecond",
                ],
            )
            .await?;
        let source = v.name.starts_with("Source");
        // NB: a `datagen` source waits for its rate limiter inside the task thread, which
        // Flink counts as busy time (1000 ms/s at any rate it keeps up with): throttling,
        // not work. The operators after it carry the job's real busy time.
        if let Some(a) = m.get("busyTimeMsPerSecond").filter(|_| !source) {
            busy = Some(busy.map_or(a.max, |b| b.max(a.max)));
        }
        if let Some(a) = m.get("backPressuredTimeMsPerSecond") {
            back_pressured = Some(back_pressured.map_or(a.max, |b| b.max(a.max)));
        }
        // What the application ingests: the records its sources emit.
        if source && let Some(a) = m.get("numRecordsOutPerSecond") {
            records_in = Some(records_in.unwrap_or(0.0) + a.sum);
        }
        let per_subtask = rest
            .subtask_metrics(
                job,
                &v.id,
                v.parallelism,
                &[
                    "busyTimeMsPerSecond",
                    "backPressuredTimeMsPerSecond",
                    "numRecordsInPerSecond",
                    "numRecordsOutPerSecond",
                ],
            )
            .await?;
        let value = |m: &BTreeMap<String, f64>, name: &str| m.get(name).copied().filter(|x| x.is_finite());
        tasks.push(TaskFigures {
            task: v.name.clone(),
            // NB: a chain's operators are not listed by the job details; the Operator
            // level names the chain's first operator.
            operator: v.name.split(" -> ").next().unwrap_or(&v.name).to_string(),
            subtasks: per_subtask
                .iter()
                .map(|m| SubtaskFigures {
                    // The same NB as above: the datagen source's busy time is throttling.
                    busy_ms_per_second: if source {
                        0.0
                    } else {
                        value(m, "busyTimeMsPerSecond").unwrap_or(0.0)
                    },
                    back_pressured_ms_per_second: value(m, "backPressuredTimeMsPerSecond").unwrap_or(0.0),
                    records_in_per_second: value(m, "numRecordsInPerSecond").unwrap_or(0.0),
                    records_out_per_second: value(m, "numRecordsOutPerSecond").unwrap_or(0.0),
                })
                .collect(),
        });
    }
    let mut jvms = Vec::new();
    for tm in rest.taskmanagers().await? {
        jvms.push(rest.taskmanager_jvm(&tm).await?);
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    let (cpu, heap, container) = if jvms.is_empty() {
        (None, None, None)
    } else {
        // JVM CPU load is a share of the whole machine: times its cores, the cores used, of
        // the vCPUs the TaskManagers really have (so a saturated job reads 100% even when
        // more KPUs are billed than the machine has cores).
        let cpu = jvms.iter().map(|j| j.cpu_load).sum::<f64>() * cores / f64::from(vcpus.max(1)) * 100.0;
        let heap_max: f64 = jvms.iter().map(|j| j.heap_max).sum();
        let heap_used: f64 = jvms.iter().map(|j| j.heap_used).sum();
        let used: f64 = jvms
            .iter()
            .map(|j| j.heap_used + j.non_heap_used + j.direct_used + j.managed_used)
            .sum();
        let process = f64::from(taskmanagers.max(1)) * f64::from(tm_memory_mb) * 1024.0 * 1024.0;
        (
            Some(cpu.clamp(0.0, 100.0)),
            (heap_max > 0.0).then(|| heap_used / heap_max * 100.0),
            Some((used / process * 100.0).clamp(0.0, 100.0)),
        )
    };
    let completed = checkpoints.latest.completed.as_ref();
    Ok(Snapshot {
        last_checkpoint_duration_ms: completed.map(|c| c.end_to_end_duration as f64),
        last_checkpoint_size_bytes: completed.map(|c| c.checkpointed_size as f64),
        failed_checkpoints: checkpoints.counts.failed as f64,
        uptime_ms: job_metrics.get("uptime").copied().unwrap_or(0.0),
        full_restarts: job_metrics.get("numRestarts").copied().unwrap_or(0.0),
        cpu_utilization: cpu,
        heap_memory_utilization: heap,
        container_memory_utilization: container,
        busy_time_ms_per_second: busy,
        back_pressured_time_ms_per_second: back_pressured,
        records_in_per_second: records_in,
        tasks,
        checkpoints,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_is_physical_up_to_the_taskmanager_limit() {
        assert_eq!(layout(AppConfig::new(1, 1), 2), (1, 1));
        assert_eq!(layout(AppConfig::new(2, 1), 2), (2, 1));
        assert_eq!(layout(AppConfig::new(2, 2), 2), (1, 2));
        assert_eq!(layout(AppConfig::new(3, 2), 2), (2, 2));
        // 4 KPUs on at most 2 TaskManagers: 2 slots each, KPUs only accounted.
        assert_eq!(layout(AppConfig::new(4, 1), 2), (2, 2));
        assert_eq!(layout(AppConfig::new(5, 1), 2), (2, 3));
    }

    #[test]
    fn merge_requires_custom_for_explicit_values() {
        let base = Settings {
            configuration_type: ConfigurationType::Custom,
            parallelism: 1,
            parallelism_per_kpu: 1,
            auto_scaling_enabled: false,
            snapshots_enabled: true,
            monitoring: MonitoringView::DEFAULT,
        };
        let up = ParallelismUpdate {
            configuration_type: Some(ConfigurationType::Custom),
            parallelism: Some(2),
            ..ParallelismUpdate::default()
        };
        assert_eq!(merge(base, &up).unwrap().parallelism, 2);
        let bad = ParallelismUpdate {
            configuration_type: Some(ConfigurationType::Default),
            parallelism: Some(2),
            ..ParallelismUpdate::default()
        };
        assert!(matches!(merge(base, &bad), Err(ServiceError::InvalidArgument(_))));
    }
}
