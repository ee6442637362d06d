//! [`FlinkRuntime`]: real Flink jobs as the runtime of the service, and [`FlinkFleet`], the
//! service over it.
//!
//! The control plane (validation, versions, operations, `UPDATING`, rollback, snapshots,
//! tags, the views, the service's autoscaling, the metrics) is the one
//! [`Service`] of the model as well; here every application is a Flink
//! job on its own standalone cluster, driven by one task per application (an actor owning
//! the [`Cluster`]) that performs the service's [`Action`]s:
//!
//! - a restart at a new parallelism: stop-with-savepoint; the TaskManagers are reshaped for
//!   the new `ParallelismPerKPU`; the job is resubmitted at the new parallelism from the
//!   savepoint; done once every subtask runs. If the restore fails (above the job's
//!   maxParallelism, or any failure) the action fails with Flink's reason and the service
//!   rolls back, resubmitting the previous configuration from the same savepoint, as AWS
//!   does.
//! - CloudWatch figures: the actor samples the REST API every few seconds; each virtual
//!   period boundary passed in [`Service::advance_to`] publishes the latest sample.
//!
//! An action ends in real time; the service sees it at its next
//! [`advance_to`](Service::advance_to) (the emulator calls it before every request).
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
use tokio::{sync::mpsc, task::JoinHandle};

use super::{
    FlinkError,
    cluster::{Cluster, ClusterConfig, FlinkHome},
    job::Workload,
    rest::{CheckpointStats, JobState, SavepointState},
};
use crate::{
    aws::catalogue::{SubtaskFigures, TaskFigures},
    policy::AppConfig,
    sim::{
        ApplicationView, CreateApplication, Scenario, ServiceError,
        fleet::{ACCOUNT_ID, MAX_PARALLELISM},
        service::{
            Action, Figures, Outcome, PeriodContext, Purpose, Restart, Runtime, Service, Settings,
            TaskManagerFigures,
        },
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

/// CloudWatch figures of one REST sample.
#[derive(Clone, Debug, Default, PartialEq)]
struct Sample {
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

/// Many applications, each a real Flink job on its own loopback cluster, with the
/// service semantics of `kinesisanalyticsv2` and CloudWatch metrics from Flink's REST API.
pub type FlinkFleet = Service<FlinkRuntime>;

/// Real Flink jobs on loopback clusters, one cluster per application.
#[derive(Debug)]
pub struct FlinkRuntime {
    home: FlinkHome,
    options: BackendOptions,
    handle: tokio::runtime::Handle,
    actors: Vec<JoinHandle<()>>,
}

/// What an application's actor shares with the service.
#[derive(Debug, Default)]
struct Shared {
    /// The Flink job running now.
    job_id: Option<String>,
    /// The latest REST sample of the running job.
    sample: Option<Sample>,
    /// Since when the job has not been processing (starts, restarts, load changes).
    down_since: Option<Instant>,
    /// How the latest action ended, by its sequence number.
    outcome: Option<(u64, Outcome)>,
}

/// One application's job: its actor's mailbox and what the actor reports.
#[derive(Debug)]
pub struct FlinkJob {
    commands: mpsc::UnboundedSender<Command>,
    shared: Arc<Mutex<Shared>>,
    workload: Workload,
    checkpoints_failing: bool,
    /// The sequence number of the action in flight (older outcomes are stale).
    seq: u64,
}

impl FlinkJob {
    fn shared(&self) -> MutexGuard<'_, Shared> {
        lock(&self.shared)
    }
}

/// What the service asks of an application's actor.
#[derive(Debug)]
enum Command {
    /// Perform an action of the service.
    Act { seq: u64, action: Action },
    /// Restart the source at a new rate (snapshot, resubmit at the same parallelism).
    SetWorkload(Workload),
    /// Make the checkpoint storage refuse checkpoints, or accept them again.
    FailCheckpoints(bool),
}

fn lock(shared: &Mutex<Shared>) -> MutexGuard<'_, Shared> {
    // NB: a panic while holding the lock leaves plain data behind; keep serving it.
    shared.lock().unwrap_or_else(|p| p.into_inner())
}

impl FlinkFleet {
    /// An empty fleet at virtual time `start`; must be called inside a tokio runtime (the
    /// actors run on it).
    pub fn new(home: FlinkHome, options: BackendOptions, start: Timestamp) -> Result<Self, FlinkError> {
        let handle = tokio::runtime::Handle::try_current()
            .map_err(|e| FlinkError::Home(format!("the Flink backend needs a tokio runtime: {e}")))?;
        let (seed, region) = (options.seed, options.region.clone());
        let runtime = FlinkRuntime {
            home,
            options,
            handle,
            actors: Vec::new(),
        };
        Ok(Service::with_runtime(runtime, seed, start).with_region(&region))
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
        workload
            .validate()
            .map_err(|e| ServiceError::InvalidArgument(e.to_string()))?;
        let req = CreateApplication {
            name: name.to_string(),
            description,
            service_execution_role: format!("arn:aws:iam::{ACCOUNT_ID}:role/flink-application"),
            ..CreateApplication::default()
        };
        self.add_running(&req, Settings::custom(config, false), workload)
    }

    /// Changes the workload of a running application (a load step): Flink's `datagen`
    /// cannot change its rate live, so the job is stopped with a savepoint and resubmitted
    /// at the same parallelism from it; the application stays `RUNNING` (with downtime).
    pub fn set_workload(&mut self, name: &str, workload: Workload) -> Result<(), ServiceError> {
        workload
            .validate()
            .map_err(|e| ServiceError::InvalidArgument(e.to_string()))?;
        let (_, job) = self.job_mut(name)?;
        if job.workload.max_parallelism != workload.max_parallelism {
            return Err(ServiceError::InvalidArgument(
                "maxParallelism is part of the job's state layout and cannot change at run time.".into(),
            ));
        }
        job.workload = workload.clone();
        let _ = job.commands.send(Command::SetWorkload(workload));
        Ok(())
    }

    /// Makes every checkpoint of the application fail at once (its checkpoint storage
    /// refuses them: see [`Cluster::set_checkpoint_storage_failing`]), or succeed again; the
    /// job keeps running and stays failing across restarts until switched back. The
    /// signature of a fault no scaling fixes (a serializer mismatch, a failing external
    /// call or storage) on the real runtime.
    pub fn set_checkpoints_failing(&mut self, name: &str, failing: bool) -> Result<(), ServiceError> {
        let (_, job) = self.job_mut(name)?;
        job.checkpoints_failing = failing;
        let _ = job.commands.send(Command::FailCheckpoints(failing));
        Ok(())
    }

    /// Whether the application's checkpoints are made to fail
    /// ([`FlinkFleet::set_checkpoints_failing`]).
    pub fn checkpoints_failing(&self, name: &str) -> Result<bool, ServiceError> {
        Ok(self.job(name)?.checkpoints_failing)
    }

    /// The workload of an application.
    pub fn workload(&self, name: &str) -> Result<Workload, ServiceError> {
        Ok(self.job(name)?.workload.clone())
    }

    /// The Flink job id running now, and the latest checkpoint statistics sampled from it
    /// (for tests and the docs' comparison: checkpoint ids continue across a restore).
    pub fn flink_job(&self, name: &str) -> Result<(Option<String>, Option<CheckpointStats>), ServiceError> {
        let shared = self.job(name)?.shared();
        Ok((
            shared.job_id.clone(),
            shared.sample.as_ref().map(|s| s.checkpoints.clone()),
        ))
    }

    /// The latest sampled busy time of the job's busiest subtask after the source, ms/s,
    /// read from Flink directly whatever the application's metrics level (for `demo`'s
    /// calibration of the load to the machine; CloudWatch has it only per task).
    pub fn sampled_busy_time(&self, name: &str) -> Result<Option<f64>, ServiceError> {
        Ok(self
            .job(name)?
            .shared()
            .sample
            .as_ref()
            .and_then(|s| s.busy_time_ms_per_second))
    }

    /// Stops every actor and waits until their clusters are gone (dropping the fleet also
    /// stops them, without waiting).
    pub async fn shutdown(mut self) {
        // Dropping the jobs drops the command senders: each actor ends at its next await,
        // and its Cluster's Drop stops the JVMs.
        self.apps.clear();
        for actor in std::mem::take(&mut self.runtime.actors) {
            let _ = actor.await;
        }
    }
}

impl Runtime for FlinkRuntime {
    type Job = FlinkJob;
    type Spec = Workload;

    fn spec(&self, workload: Option<&Scenario>, _parallelism: u32) -> Result<Workload, ServiceError> {
        let workload = workload.map(workload_of).unwrap_or_default();
        workload
            .validate()
            .map_err(|e| ServiceError::InvalidArgument(e.to_string()))?;
        Ok(workload)
    }

    fn job(&mut self, name: &str, workload: Workload, _now: Timestamp) -> FlinkJob {
        let (tx, rx) = mpsc::unbounded_channel();
        let shared = Arc::new(Mutex::new(Shared::default()));
        let actor = Actor {
            name: name.to_string(),
            shared: shared.clone(),
            home: self.home.clone(),
            options: self.options.clone(),
            cluster: None,
            job: None,
            config: AppConfig::new(1, 1),
            savepoint: None,
            workload: workload.clone(),
            checkpoints_failing: false,
        };
        self.actors.push(self.handle.spawn(actor.run(rx)));
        FlinkJob {
            commands: tx,
            shared,
            workload,
            checkpoints_failing: false,
            seq: 0,
        }
    }

    fn run_now(&mut self, _job: &mut FlinkJob, _config: AppConfig, _now: Timestamp) -> bool {
        false
    }

    fn check(&self, config: AppConfig) -> Result<(), ServiceError> {
        if config.parallelism > self.options.max_parallelism {
            return Err(ServiceError::LimitExceeded(format!(
                "Parallelism {} is above what the Flink backend runs on this machine ({}).",
                config.parallelism, self.options.max_parallelism
            )));
        }
        Ok(())
    }

    fn job_max_parallelism(&self, job: &FlinkJob) -> u32 {
        job.workload.max_parallelism
    }

    fn max_parallelism(&self) -> u32 {
        self.options.max_parallelism.min(MAX_PARALLELISM)
    }

    fn checkpointing(&self, job: &FlinkJob) -> (i64, i64) {
        (job.workload.checkpoint_interval_ms as i64, 0)
    }

    fn begin(&mut self, job: &mut FlinkJob, action: Action, _now: Timestamp) {
        job.seq += 1;
        if !matches!(action, Action::Stop { .. }) {
            job.shared().down_since = Some(Instant::now());
        }
        let _ = job.commands.send(Command::Act { seq: job.seq, action });
    }

    fn poll(&mut self, job: &mut FlinkJob, from: Timestamp, _to: Timestamp) -> Option<(Timestamp, Outcome)> {
        let mut shared = job.shared();
        match shared.outcome.take() {
            Some((seq, outcome)) if seq == job.seq => Some((from, outcome)),
            // An outcome of an action the service has since replaced.
            _ => None,
        }
    }

    fn period(
        &mut self,
        job: &mut FlinkJob,
        _from: Timestamp,
        _to: Timestamp,
        ctx: PeriodContext<'_>,
    ) -> Figures {
        let shared = job.shared();
        let processing = ctx.running && shared.down_since.is_none();
        match (&shared.sample, processing) {
            (Some(s), true) => Figures {
                kpus: ctx.kpus,
                job_reporting: true,
                uptime_ms: s.uptime_ms,
                restarts: Some(s.full_restarts),
                failed_checkpoints: Some(s.failed_checkpoints),
                last_checkpoint_duration_ms: s.last_checkpoint_duration_ms,
                last_checkpoint_size_bytes: s.last_checkpoint_size_bytes,
                // One sample of the TaskManagers together.
                task_managers: 1,
                busiest: TaskManagerFigures {
                    cpu: s.cpu_utilization,
                    heap: s.heap_memory_utilization,
                    container_memory: s.container_memory_utilization,
                },
                // NB: no source lag: `datagen` is a rate-limited generator, not a queue;
                // there is no backlog to be behind on (docs/flink-backend.md).
                source_lag: None,
                records_in_per_second: s.records_in_per_second,
                tasks: if ctx.tasks { s.tasks.clone() } else { Vec::new() },
                ..Figures::default()
            },
            _ => Figures {
                kpus: ctx.kpus,
                downtime_ms: shared.down_since.map_or(0.0, |d| d.elapsed().as_millis() as f64),
                ..Figures::default()
            },
        }
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

/// One application's worker: owns its cluster and performs the service's actions.
struct Actor {
    name: String,
    shared: Arc<Mutex<Shared>>,
    home: FlinkHome,
    options: BackendOptions,
    cluster: Option<Cluster>,
    job: Option<String>,
    /// The configuration the job runs at.
    config: AppConfig,
    /// The most recent savepoint.
    savepoint: Option<String>,
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

    fn shared(&self) -> MutexGuard<'_, Shared> {
        lock(&self.shared)
    }

    async fn handle(&mut self, cmd: Command) {
        match cmd {
            Command::Act { seq, action } => {
                let outcome = self.act(action).await;
                let mut shared = self.shared();
                // Running again, or stopped (not down: nothing runs until the service's
                // next action, which marks its own downtime).
                shared.down_since = None;
                if self.job.is_none() {
                    shared.job_id = None;
                    shared.sample = None;
                }
                shared.outcome = Some((seq, outcome));
            }
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
                self.shared().down_since = Some(Instant::now());
                let config = self.config;
                let result = match self.take_savepoint(&job).await {
                    Ok(sp) => self.launch(config, Some(&sp)).await,
                    Err(e) => Err(e),
                };
                if let Err(e) = result {
                    tracing::warn!(application = %self.name, error = %e, "restarting the source at the new rate failed");
                }
                self.shared().down_since = None;
            }
        }
    }

    /// Performs one action of the service.
    async fn act(&mut self, action: Action) -> Outcome {
        match action {
            Action::Start { config, restore } => {
                let savepoint = if restore { self.savepoint.clone() } else { None };
                match self.launch(config, savepoint.as_deref()).await {
                    Ok(()) => Outcome::Done,
                    Err(e) => Outcome::Failed(e.to_string()),
                }
            }
            Action::Stop { force, snapshot, .. } => {
                let Some(job) = self.job.clone() else {
                    return Outcome::Done;
                };
                let result = if snapshot && !force {
                    self.take_savepoint(&job)
                        .await
                        .map(|sp| self.savepoint = Some(sp))
                } else {
                    self.cancel(&job).await
                };
                match result {
                    Ok(()) => {
                        self.job = None;
                        Outcome::Done
                    }
                    Err(e) => Outcome::Failed(e.to_string()),
                }
            }
            Action::Restart(r) => self.restart(r).await,
            Action::Recover { to } => {
                let savepoint = self.savepoint.clone();
                match self.launch(to, savepoint.as_deref()).await {
                    Ok(()) => Outcome::Done,
                    Err(e) => Outcome::Failed(failure_message(&e)),
                }
            }
        }
    }

    /// Stop (with a savepoint when the job resumes from its state) and resubmit at `to`; a
    /// failed restore of the service's autoscaling goes back to `from` from the same
    /// savepoint.
    async fn restart(&mut self, r: Restart) -> Outcome {
        let Restart {
            from,
            to,
            restore,
            failure,
            purpose,
            ..
        } = r;
        let Some(job) = self.job.clone() else {
            return Outcome::Failed("the job was not running".into());
        };
        let savepoint = if restore {
            match self.take_savepoint(&job).await {
                Ok(sp) => {
                    self.savepoint = Some(sp.clone());
                    Some(sp)
                }
                // The job keeps running at the old configuration.
                Err(e) => return Outcome::Kept(format!("Snapshot before the update failed: {e}")),
            }
        } else {
            match self.cancel(&job).await {
                Ok(()) => None,
                Err(e) => return Outcome::Kept(format!("Stopping the job before the update failed: {e}")),
            }
        };
        self.job = None;
        let message = match failure {
            Some(message) => message,
            None => match self.launch(to, savepoint.as_deref()).await {
                Ok(()) => return Outcome::Done,
                Err(e) => failure_message(&e),
            },
        };
        tracing::warn!(application = %self.name, failure = %message, "restore failed");
        if purpose == Purpose::Autoscale
            && let Err(e) = self.launch(from, savepoint.as_deref()).await
        {
            tracing::warn!(application = %self.name, error = %e, "going back after a failed scaling failed");
        }
        Outcome::Failed(message)
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
        self.shared().job_id = Some(job.clone());
        self.config = config;
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
                self.shared().job_id = None;
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
                    let mut shared = self.shared();
                    shared.job_id = None;
                    shared.sample = None;
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
        let vcpus = cluster.taskmanager_cores().unwrap_or_else(|| self.config.kpus());
        match sample(cluster, job, tms, vcpus, self.options.taskmanager_memory_mb).await {
            Ok(sample) => self.shared().sample = Some(sample),
            Err(e) => tracing::debug!(application = %self.name, error = %e, "sampling the REST API failed"),
        }
    }
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
) -> Result<Sample, FlinkError> {
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
    Ok(Sample {
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
}
