//! The kinesisanalyticsv2 control plane, once: [`Service`] holds Managed Flink's service
//! semantics — request validation, the `UpdateApplication` merge, application versions,
//! operations, rollback, snapshots, `MonitoringConfiguration`, `RuntimeEnvironment`, tags,
//! the views `DescribeApplication` returns, the service's own autoscaling rule — and
//! publishes the CloudWatch metrics of the one metric catalogue (`aws::catalogue`) by each
//! application's metrics level, runtime and source.
//!
//! What runs the jobs is a [`Runtime`]: the model in virtual time
//! ([`Model`](super::fleet::Model), `Fleet`) or real Flink jobs on loopback clusters
//! (`flink::FlinkRuntime`, `FlinkFleet`). A runtime performs [`Action`]s (start, stop,
//! restart at a new configuration, recover after a failed restart), says when each ended
//! ([`Outcome`]) and what the job did in each metric period ([`Figures`]); everything the
//! service decides from that is here. docs/design.md, "The two runtimes".
//!
//! Synchronous: the caller owns the clock and calls [`Service::advance_to`] (the emulator
//! does before every request).

use std::{collections::BTreeMap, time::Duration};

use jiff::Timestamp;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::{
    scenario::Scenario,
    store::{MetricId, MetricQuery, MetricStore, PutDatum, RETENTION},
};
use crate::{
    aws::catalogue::{self, FLINK_RUNTIMES, MetricsLevel, Monitoring, Source, TaskFigures},
    policy::{AppConfig, AppStatus},
};

pub const PERIOD: Duration = Duration::from_secs(60);
/// CloudWatch namespace of Managed Flink.
pub const NAMESPACE: &str = catalogue::NAMESPACE;
/// The dimension the application-level metrics carry.
pub const DIMENSION: &str = catalogue::APPLICATION;
/// Default KPU quota per application (Managed Flink "Quotas": 64 KPUs).
pub const DEFAULT_KPU_QUOTA: u32 = 64;
/// Default maximum `Parallelism` (developer guide, "Application scaling": 256).
pub const MAX_PARALLELISM: u32 = 256;
/// Highest `ParallelismPerKPU` (API reference, ParallelismConfiguration: 1..8).
pub const MAX_PARALLELISM_PER_KPU: u32 = 8;
/// Tags per resource (API reference, TagResource: at most 50).
pub const MAX_TAGS: usize = 50;
/// The account every emulated ARN uses.
pub const ACCOUNT_ID: &str = "123456789012";
/// The runtime applications get when none is asked for.
pub const DEFAULT_RUNTIME: &str = catalogue::DEFAULT_RUNTIME;
/// Builtin autoscaling: scale up after this many consecutive one-minute datapoints of
/// `containerCPUUtilization` (Maximum) at or above [`AUTOSCALE_UP_PERCENT`].
pub const AUTOSCALE_UP_MINUTES: u32 = 15;
/// Builtin autoscaling scale-up threshold, percent.
pub const AUTOSCALE_UP_PERCENT: f64 = 75.0;
/// Builtin autoscaling: scale down after this many consecutive datapoints below
/// [`AUTOSCALE_DOWN_PERCENT`] (six hours).
pub const AUTOSCALE_DOWN_MINUTES: u32 = 360;
/// Builtin autoscaling scale-down threshold, percent.
pub const AUTOSCALE_DOWN_PERCENT: f64 = 10.0;

/// An error as the service reports it; the `String` is the message AWS would send.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ServiceError {
    /// `ResourceNotFoundException`.
    #[error("{0}")]
    ResourceNotFound(String),
    /// `ConcurrentModificationException`.
    #[error("{0}")]
    ConcurrentModification(String),
    /// `ResourceInUseException`.
    #[error("{0}")]
    ResourceInUse(String),
    /// `InvalidArgumentException`.
    #[error("{0}")]
    InvalidArgument(String),
    /// `InvalidRequestException`.
    #[error("{0}")]
    InvalidRequest(String),
    /// `InvalidApplicationConfigurationException`.
    #[error("{0}")]
    InvalidApplicationConfiguration(String),
    /// `LimitExceededException`.
    #[error("{0}")]
    LimitExceeded(String),
    /// `UnsupportedOperationException`.
    #[error("{0}")]
    UnsupportedOperation(String),
    /// `TooManyTagsException`.
    #[error("{0}")]
    TooManyTags(String),
}

impl ServiceError {
    /// The AWS error code (`__type` of awsJson1_1).
    pub fn code(&self) -> &'static str {
        match self {
            Self::ResourceNotFound(_) => "ResourceNotFoundException",
            Self::ConcurrentModification(_) => "ConcurrentModificationException",
            Self::ResourceInUse(_) => "ResourceInUseException",
            Self::InvalidArgument(_) => "InvalidArgumentException",
            Self::InvalidRequest(_) => "InvalidRequestException",
            Self::InvalidApplicationConfiguration(_) => "InvalidApplicationConfigurationException",
            Self::LimitExceeded(_) => "LimitExceededException",
            Self::UnsupportedOperation(_) => "UnsupportedOperationException",
            Self::TooManyTags(_) => "TooManyTagsException",
        }
    }
}

/// `ConfigurationType` of a parallelism or checkpoint configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ConfigurationType {
    /// The service's defaults (parallelism 1, 1 per KPU, autoscaling on).
    Default,
    /// The values given.
    Custom,
}

impl ConfigurationType {
    /// `DEFAULT` or `CUSTOM`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Default => "DEFAULT",
            Self::Custom => "CUSTOM",
        }
    }
}

/// `MonitoringConfiguration.LogLevel`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum LogLevel {
    /// `INFO` (the default).
    Info,
    /// `WARN`.
    Warn,
    /// `ERROR`.
    Error,
    /// `DEBUG`.
    Debug,
}

impl LogLevel {
    /// The API's spelling.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Info => "INFO",
            Self::Warn => "WARN",
            Self::Error => "ERROR",
            Self::Debug => "DEBUG",
        }
    }

    /// Parses the API's spelling.
    pub fn parse(s: &str) -> Option<Self> {
        [Self::Info, Self::Warn, Self::Error, Self::Debug]
            .into_iter()
            .find(|l| l.as_str() == s)
    }
}

/// `MonitoringConfiguration` / `MonitoringConfigurationUpdate`: each field optional.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MonitoringUpdate {
    /// `ConfigurationType` (CUSTOM is needed for the others to be honoured).
    pub configuration_type: Option<ConfigurationType>,
    /// `MetricsLevel`.
    pub metrics_level: Option<MetricsLevel>,
    /// `LogLevel`.
    pub log_level: Option<LogLevel>,
}

/// The monitoring configuration as `DescribeApplication` reports it
/// (`MonitoringConfigurationDescription`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MonitoringView {
    /// `ConfigurationType`.
    pub configuration_type: ConfigurationType,
    /// `MetricsLevel`.
    pub metrics_level: MetricsLevel,
    /// `LogLevel`.
    pub log_level: LogLevel,
}

impl MonitoringView {
    /// The service's default: APPLICATION metrics, INFO logs.
    pub const DEFAULT: MonitoringView = MonitoringView {
        configuration_type: ConfigurationType::Default,
        metrics_level: MetricsLevel::Application,
        log_level: LogLevel::Info,
    };

    /// A CUSTOM configuration at `level` (INFO logs), or the DEFAULT one for APPLICATION.
    pub fn at_level(level: MetricsLevel) -> Self {
        if level == MetricsLevel::Application {
            Self::DEFAULT
        } else {
            MonitoringView {
                configuration_type: ConfigurationType::Custom,
                metrics_level: level,
                log_level: LogLevel::Info,
            }
        }
    }

    /// The configuration after `update`. `MetricsLevel` and `LogLevel` are honoured only
    /// with `ConfigurationType` CUSTOM (API reference, MonitoringConfiguration: "You must
    /// set this property to CUSTOM in order to set the LogLevel or MetricsLevel
    /// parameters"); DEFAULT means APPLICATION and INFO, whatever else the request says.
    pub fn merge(self, update: &MonitoringUpdate) -> Self {
        match update.configuration_type.unwrap_or(self.configuration_type) {
            ConfigurationType::Default => Self::DEFAULT,
            ConfigurationType::Custom => MonitoringView {
                configuration_type: ConfigurationType::Custom,
                metrics_level: update.metrics_level.unwrap_or(self.metrics_level),
                log_level: update.log_level.unwrap_or(self.log_level),
            },
        }
    }
}

/// Refuses a `RuntimeEnvironment` that is not one of the service's Apache Flink runtimes.
pub fn validate_runtime(runtime: &str) -> Result<(), ServiceError> {
    if catalogue::flink_version(runtime).is_none() {
        return Err(ServiceError::InvalidArgument(format!(
            "RuntimeEnvironment {runtime:?} is not an Apache Flink runtime of the service: use one of {}.",
            FLINK_RUNTIMES.join(", ")
        )));
    }
    Ok(())
}

/// `ParallelismConfiguration` / `ParallelismConfigurationUpdate`: each field optional.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ParallelismUpdate {
    /// `ConfigurationType` (CUSTOM is needed to set the others).
    pub configuration_type: Option<ConfigurationType>,
    /// `Parallelism`.
    pub parallelism: Option<u32>,
    /// `ParallelismPerKPU`.
    pub parallelism_per_kpu: Option<u32>,
    /// `AutoScalingEnabled`.
    pub auto_scaling_enabled: Option<bool>,
}

/// `ApplicationRestoreType`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RestoreType {
    /// Start without state.
    SkipRestoreFromSnapshot,
    /// Restore the snapshot taken when the application stopped (the default).
    RestoreFromLatestSnapshot,
    /// Restore a named snapshot.
    RestoreFromCustomSnapshot,
}

/// `ApplicationRestoreConfiguration`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RestoreConfig {
    /// How to restore.
    pub application_restore_type: RestoreType,
    /// The snapshot for `RESTORE_FROM_CUSTOM_SNAPSHOT`.
    pub snapshot_name: Option<String>,
}

/// An `UpdateApplication` request (the parts the model acts on).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct UpdateApplication {
    /// `CurrentApplicationVersionId` (this or `conditional_token` is required).
    pub current_application_version_id: Option<i64>,
    /// `ConditionalToken`.
    pub conditional_token: Option<String>,
    /// `ParallelismConfigurationUpdate`.
    pub parallelism: Option<ParallelismUpdate>,
    /// `RunConfigurationUpdate.ApplicationRestoreConfiguration`: how the application
    /// restores from now on (this restart included).
    pub restore: Option<RestoreConfig>,
    /// `ApplicationSnapshotConfigurationUpdate.SnapshotsEnabledUpdate`.
    pub snapshots_enabled: Option<bool>,
    /// `FlinkApplicationConfigurationUpdate.MonitoringConfigurationUpdate`.
    pub monitoring: Option<MonitoringUpdate>,
}

/// A `CreateApplication` request.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CreateApplication {
    /// `ApplicationName`.
    pub name: String,
    /// `ApplicationDescription`.
    pub description: Option<String>,
    /// `RuntimeEnvironment` (default `FLINK-1_20`).
    pub runtime: Option<String>,
    /// `ServiceExecutionRole`.
    pub service_execution_role: String,
    /// `ParallelismConfiguration` (default: the DEFAULT configuration).
    pub parallelism: Option<ParallelismUpdate>,
    /// `ApplicationSnapshotConfiguration.SnapshotsEnabled` (default: true, the emulator's
    /// assumption when the request says nothing).
    pub snapshots_enabled: Option<bool>,
    /// `FlinkApplicationConfiguration.MonitoringConfiguration` (default: DEFAULT, that is
    /// APPLICATION metrics).
    pub monitoring: Option<MonitoringUpdate>,
    /// What the job reads (in AWS, a matter of the application's code and properties);
    /// default: a Kinesis data stream named `<application>-input`.
    pub source: Option<Source>,
    /// `Tags`.
    pub tags: Vec<(String, String)>,
    /// The workload the job will run (load, state, faults); a light steady load without.
    pub workload: Option<Scenario>,
}

/// The parallelism configuration as `DescribeApplication` reports it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ParallelismView {
    /// `ConfigurationType`.
    pub configuration_type: ConfigurationType,
    /// `Parallelism` (configured; the floor for the service's autoscaling).
    pub parallelism: u32,
    /// `ParallelismPerKPU`.
    pub parallelism_per_kpu: u32,
    /// `CurrentParallelism` (what runs, after any autoscaling).
    pub current_parallelism: u32,
    /// `AutoScalingEnabled`.
    pub auto_scaling_enabled: bool,
}

/// The checkpoint configuration as `DescribeApplication` reports it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CheckpointView {
    /// `ConfigurationType`.
    pub configuration_type: ConfigurationType,
    /// `CheckpointingEnabled`.
    pub checkpointing_enabled: bool,
    /// `CheckpointInterval`, ms.
    pub checkpoint_interval_ms: i64,
    /// `MinPauseBetweenCheckpoints`, ms.
    pub min_pause_between_checkpoints_ms: i64,
}

/// Everything `DescribeApplication` returns about an application.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ApplicationView {
    /// `ApplicationName`.
    pub name: String,
    /// `ApplicationARN`.
    pub arn: String,
    /// `ApplicationDescription`.
    pub description: Option<String>,
    /// `ApplicationStatus`.
    pub status: AppStatus,
    /// `ApplicationVersionId`.
    pub version_id: i64,
    /// `RuntimeEnvironment`.
    pub runtime: String,
    /// `ServiceExecutionRole`.
    pub service_execution_role: String,
    /// `CreateTimestamp`.
    pub create_timestamp: Timestamp,
    /// `LastUpdateTimestamp`.
    pub last_update_timestamp: Timestamp,
    /// `ConditionalToken`.
    pub conditional_token: String,
    /// `ApplicationMode` (`STREAMING`).
    pub application_mode: String,
    /// `FlinkApplicationConfigurationDescription.ParallelismConfigurationDescription`.
    pub parallelism: ParallelismView,
    /// `FlinkApplicationConfigurationDescription.CheckpointConfigurationDescription`.
    pub checkpoint: CheckpointView,
    /// `ApplicationVersionUpdatedFrom`.
    pub version_updated_from: Option<i64>,
    /// `ApplicationVersionRolledBackFrom`.
    pub version_rolled_back_from: Option<i64>,
    /// `ApplicationVersionRolledBackTo`.
    pub version_rolled_back_to: Option<i64>,
    /// `ApplicationSnapshotConfigurationDescription.SnapshotsEnabled`.
    pub snapshots_enabled: bool,
    /// `RunConfigurationDescription.ApplicationRestoreConfigurationDescription`.
    pub restore: RestoreConfig,
    /// `FlinkApplicationConfigurationDescription.MonitoringConfigurationDescription`.
    pub monitoring: MonitoringView,
}

/// One snapshot, as `ListApplicationSnapshots` lists it (`SnapshotDetails`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SnapshotView {
    /// `SnapshotName`.
    pub name: String,
    /// `ApplicationVersionId` of the application when it was taken.
    pub version_id: i64,
    /// `SnapshotCreationTimestamp`.
    pub created: Timestamp,
    /// `RuntimeEnvironment`.
    pub runtime: String,
}

impl RestoreConfig {
    /// `RESTORE_FROM_LATEST_SNAPSHOT`, the service's default.
    pub fn latest() -> Self {
        Self {
            application_restore_type: RestoreType::RestoreFromLatestSnapshot,
            snapshot_name: None,
        }
    }
}

impl RestoreType {
    /// The name AWS uses.
    pub fn as_str(&self) -> &'static str {
        match self {
            RestoreType::SkipRestoreFromSnapshot => "SKIP_RESTORE_FROM_SNAPSHOT",
            RestoreType::RestoreFromLatestSnapshot => "RESTORE_FROM_LATEST_SNAPSHOT",
            RestoreType::RestoreFromCustomSnapshot => "RESTORE_FROM_CUSTOM_SNAPSHOT",
        }
    }
}

impl ApplicationView {
    /// The running configuration (`CurrentParallelism`, `ParallelismPerKPU`).
    pub fn running_config(&self) -> AppConfig {
        AppConfig::new(
            self.parallelism.current_parallelism,
            self.parallelism.parallelism_per_kpu,
        )
    }
}

/// `OperationStatus`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum OperationStatus {
    /// Running.
    InProgress,
    /// Done.
    Successful,
    /// Failed (see the failure details).
    Failed,
    /// Cancelled (e.g. by a forced stop).
    Cancelled,
}

impl OperationStatus {
    /// `IN_PROGRESS`, `SUCCESSFUL`, `FAILED`, `CANCELLED`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::InProgress => "IN_PROGRESS",
            Self::Successful => "SUCCESSFUL",
            Self::Failed => "FAILED",
            Self::Cancelled => "CANCELLED",
        }
    }
}

/// What `DescribeApplicationOperation` returns.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OperationView {
    /// `OperationId`.
    pub operation_id: String,
    /// `Operation`: `UpdateApplication`, `StartApplication`, `StopApplication`,
    /// `RollbackApplication`.
    pub operation: String,
    /// `OperationStatus`.
    pub status: OperationStatus,
    /// `StartTime`.
    pub start_time: Timestamp,
    /// `EndTime`.
    pub end_time: Option<Timestamp>,
    /// `OperationFailureDetails.ErrorInfo.ErrorString`.
    pub failure: Option<String>,
    /// `OperationFailureDetails.RollbackOperationId`.
    pub rollback_operation_id: Option<String>,
    /// `ApplicationVersionChangeDetails.ApplicationVersionUpdatedFrom`.
    pub version_updated_from: Option<i64>,
    /// `ApplicationVersionChangeDetails.ApplicationVersionUpdatedTo`.
    pub version_updated_to: Option<i64>,
}

/// The versioned part of an application's configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Settings {
    pub(crate) configuration_type: ConfigurationType,
    pub(crate) parallelism: u32,
    pub(crate) parallelism_per_kpu: u32,
    pub(crate) auto_scaling_enabled: bool,
    /// `SnapshotsEnabled`: a restart keeps the state only with snapshots.
    pub(crate) snapshots_enabled: bool,
    /// `MonitoringConfiguration`: which metrics the job publishes.
    pub(crate) monitoring: MonitoringView,
}

impl Settings {
    /// The service's default configuration (`ConfigurationType` DEFAULT: parallelism 1, one
    /// per KPU, autoscaling on; API reference, ParallelismConfiguration), snapshots on,
    /// APPLICATION metrics.
    pub(crate) const DEFAULT: Settings = Settings {
        configuration_type: ConfigurationType::Default,
        parallelism: 1,
        parallelism_per_kpu: 1,
        auto_scaling_enabled: true,
        snapshots_enabled: true,
        monitoring: MonitoringView::DEFAULT,
    };

    /// A CUSTOM configuration at `config`.
    pub(crate) fn custom(config: AppConfig, auto_scaling_enabled: bool) -> Self {
        Settings {
            configuration_type: ConfigurationType::Custom,
            parallelism: config.parallelism,
            parallelism_per_kpu: config.parallelism_per_kpu,
            auto_scaling_enabled,
            ..Settings::DEFAULT
        }
    }

    pub(crate) fn config(&self) -> AppConfig {
        AppConfig::new(self.parallelism, self.parallelism_per_kpu)
    }
}

/// Why a runtime restarts a job at another configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Purpose {
    /// `UpdateApplication`: a failed restore leaves the job stopped; the service then rolls
    /// back ([`Action::Recover`]).
    Update,
    /// The service's autoscaling: a failed restore goes back to `from` within the action.
    Autoscale,
    /// `RollbackApplication`.
    Rollback,
}

/// What the service asks a runtime to do with a job.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// Start the job at `config`, from the latest snapshot when `restore`.
    Start {
        /// The configuration.
        config: AppConfig,
        /// Whether it resumes from the latest snapshot.
        restore: bool,
    },
    /// Stop the job: forced (cancelled), or gracefully, snapshotting first when `snapshot`.
    Stop {
        /// The configuration it runs at.
        config: AppConfig,
        /// `Force`.
        force: bool,
        /// Whether the service snapshots the state as it stops.
        snapshot: bool,
    },
    /// Stop the job and start it at another configuration.
    Restart(Restart),
    /// After a failed [`Purpose::Update`] restart: start at `to` (the previous version) from
    /// the snapshot the restart took.
    Recover {
        /// The configuration.
        to: AppConfig,
    },
}

/// A restart of a job: stop it (snapshotting when `snapshot`) and start it at `to`, from
/// that snapshot when `restore`.
#[derive(Clone, Debug, PartialEq)]
pub struct Restart {
    /// What runs now.
    pub from: AppConfig,
    /// What runs after.
    pub to: AppConfig,
    /// Whether the service snapshots the state as the job stops.
    pub snapshot: bool,
    /// Whether the job resumes from the state.
    pub restore: bool,
    /// A failure to report instead of restoring (the emulator's `failOperation`).
    pub failure: Option<String>,
    /// Why.
    pub purpose: Purpose,
}

/// How an action ended.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// As asked.
    Done,
    /// It failed with the service's failure string. A failed restart leaves the job stopped
    /// ([`Purpose::Update`]) or running at `from` again ([`Purpose::Autoscale`]); a failed
    /// start leaves it stopped; a failed stop leaves it running.
    Failed(String),
    /// The job was never stopped (the snapshot before a restart failed): it runs on at the
    /// configuration it had.
    Kept(String),
}

/// What an application's job did in one metric period, as the runtime measured it: the
/// figures the metric catalogue publishes.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Figures {
    /// KPUs billed (0 when `READY`).
    pub kpus: u32,
    /// Whether the job ran and reported metrics in the period.
    pub job_reporting: bool,
    /// `downtime`, ms.
    pub downtime_ms: f64,
    /// `uptime`, ms.
    pub uptime_ms: f64,
    /// `fullRestarts` / `numRestarts` (running count), when known.
    pub restarts: Option<f64>,
    /// `numberOfFailedCheckpoints` (running count), when known.
    pub failed_checkpoints: Option<f64>,
    /// `lastCheckpointDuration`, ms.
    pub last_checkpoint_duration_ms: Option<f64>,
    /// `lastCheckpointSize`, bytes.
    pub last_checkpoint_size_bytes: Option<f64>,
    /// How many TaskManagers sample the container metrics (one sample each per period).
    pub task_managers: u32,
    /// The busiest TaskManager's sample.
    pub busiest: TaskManagerFigures,
    /// Every other TaskManager's sample.
    pub rest: TaskManagerFigures,
    /// The source's lag: (ms behind latest, records behind), when the source has one.
    pub source_lag: Option<(f64, f64)>,
    /// `numRecordsInPerSecond` (and out).
    pub records_in_per_second: Option<f64>,
    /// Per task, what each subtask did (published at the TASK level and finer).
    pub tasks: Vec<TaskFigures>,
}

/// One TaskManager's container sample, percent.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct TaskManagerFigures {
    /// `cpuUtilization` / `containerCPUUtilization`.
    pub cpu: Option<f64>,
    /// `heapMemoryUtilization`.
    pub heap: Option<f64>,
    /// `containerMemoryUtilization`.
    pub container_memory: Option<f64>,
}

/// What the service tells a runtime about an application when it asks for a period's
/// figures.
#[derive(Clone, Copy, Debug)]
pub struct PeriodContext<'a> {
    /// KPUs billed in the period.
    pub kpus: u32,
    /// Whether the application is `RUNNING`.
    pub running: bool,
    /// `CurrentParallelism`.
    pub parallelism: u32,
    /// Whether per-task figures are published (the metrics level is finer than APPLICATION).
    pub tasks: bool,
    /// What the job reads.
    pub source: &'a Source,
}

/// What runs the jobs of a [`Service`]: the model or a real Flink cluster.
pub trait Runtime: std::fmt::Debug {
    /// One application's job.
    type Job: std::fmt::Debug;
    /// What a job runs (the runtime's workload).
    type Spec;

    /// The workload of a new application: the scenario's (already validated), or the
    /// runtime's default light load at `parallelism`.
    fn spec(&self, workload: Option<&Scenario>, parallelism: u32) -> Result<Self::Spec, ServiceError>;
    /// A new (stopped) job.
    fn job(&mut self, name: &str, spec: Self::Spec, now: Timestamp) -> Self::Job;
    /// Runs a new job at `config` at once when the runtime can (the model, in virtual
    /// time): `true`. Otherwise `false`, and the service starts it with `StartApplication`.
    fn run_now(&mut self, job: &mut Self::Job, config: AppConfig, now: Timestamp) -> bool;
    /// Refuses a configuration this runtime cannot run (beyond the service's own limits).
    fn check(&self, config: AppConfig) -> Result<(), ServiceError>;
    /// The job's maxParallelism (its key groups): a start above it cannot restore.
    fn job_max_parallelism(&self, job: &Self::Job) -> u32;
    /// The highest parallelism the service's autoscaling may reach on this runtime.
    fn max_parallelism(&self) -> u32;
    /// `CheckpointInterval` and `MinPauseBetweenCheckpoints` of the job, ms.
    fn checkpointing(&self, job: &Self::Job) -> (i64, i64);
    /// Begins `action` at `now` (replacing any action in flight).
    fn begin(&mut self, job: &mut Self::Job, action: Action, now: Timestamp);
    /// The end of the action in flight, if it ended at or before `to`, with the time it
    /// ended (not before `from`); the job has run until then.
    fn poll(&mut self, job: &mut Self::Job, from: Timestamp, to: Timestamp) -> Option<(Timestamp, Outcome)>;
    /// Runs the job to `to` and returns the period's figures.
    fn period(
        &mut self,
        job: &mut Self::Job,
        from: Timestamp,
        to: Timestamp,
        ctx: PeriodContext<'_>,
    ) -> Figures;
}

/// What the application is waiting for.
#[derive(Clone, Debug)]
enum Transition {
    Starting {
        op: usize,
    },
    Stopping {
        op: usize,
    },
    Updating {
        op: usize,
        to: AppConfig,
        /// Whether the service recorded a snapshot as the job stopped.
        snapshot: bool,
    },
    RollingBack {
        op: usize,
        to: Settings,
        to_version: i64,
    },
    Autoscaling {
        from: u32,
        to: u32,
    },
}

#[derive(Clone, Debug)]
pub(crate) struct App<J> {
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
    /// Every version's settings, by version id.
    versions: BTreeMap<i64, Settings>,
    current_parallelism: u32,
    status: AppStatus,
    transition: Option<Transition>,
    pub(crate) job: J,
    operations: Vec<OperationView>,
    tags: Vec<(String, String)>,
    updated_from: Option<i64>,
    rolled_back_from: Option<i64>,
    rolled_back_to: Option<i64>,
    /// How the application restores when it restarts.
    restore: RestoreConfig,
    /// The snapshots the service took (it never deletes them), oldest first.
    snapshots: Vec<SnapshotView>,
    cpu_high: u32,
    cpu_low: u32,
    /// What the job reads (decides its lag metric).
    source: Source,
    /// The ids of the application-level metrics it publishes (by its runtime and source),
    /// built once (publishing is the hot path of a fleet of thousands).
    metric_ids: BTreeMap<&'static str, MetricId>,
}

impl<J> App<J> {
    fn running_config(&self) -> AppConfig {
        AppConfig::new(self.current_parallelism, self.settings.parallelism_per_kpu)
    }

    fn view(&self, checkpointing: (i64, i64)) -> ApplicationView {
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
                current_parallelism: self.current_parallelism,
                auto_scaling_enabled: self.settings.auto_scaling_enabled,
            },
            checkpoint: CheckpointView {
                configuration_type: ConfigurationType::Custom,
                checkpointing_enabled: true,
                checkpoint_interval_ms: checkpointing.0,
                min_pause_between_checkpoints_ms: checkpointing.1,
            },
            version_updated_from: self.updated_from,
            version_rolled_back_from: self.rolled_back_from,
            version_rolled_back_to: self.rolled_back_to,
            snapshots_enabled: self.settings.snapshots_enabled,
            restore: self.restore.clone(),
            monitoring: self.settings.monitoring,
        }
    }

    /// What and how it publishes, for the metric catalogue.
    fn monitoring(&self) -> Monitoring {
        monitoring_of(
            &self.name,
            &self.runtime,
            self.settings.monitoring.metrics_level,
            &self.source,
        )
    }

    /// The service snapshots the state as a running application stops for an update, a
    /// scaling or a stop, when snapshots are on; returns whether it did.
    fn take_snapshot(&mut self, at: Timestamp) -> bool {
        if !self.settings.snapshots_enabled {
            return false;
        }
        self.snapshots.push(SnapshotView {
            name: format!("{}-v{}-{}", self.name, self.version_id, at.as_second()),
            version_id: self.version_id,
            created: at,
            runtime: self.runtime.clone(),
        });
        true
    }

    /// Whether a restart now resumes from the state: a snapshot was taken as it stopped and
    /// the application restores from it (or from a named snapshot it keeps).
    fn resumes_with_state(&self, snapshot_taken: bool) -> bool {
        match self.restore.application_restore_type {
            RestoreType::SkipRestoreFromSnapshot => false,
            RestoreType::RestoreFromLatestSnapshot => snapshot_taken,
            // NB: neither runtime takes a job back to an older state; a named snapshot it
            // keeps restores the latest state.
            RestoreType::RestoreFromCustomSnapshot => true,
        }
    }

    fn finish_op(&mut self, op: usize, at: Timestamp, status: OperationStatus, failure: Option<String>) {
        if let Some(o) = self.operations.get_mut(op) {
            o.status = status;
            o.end_time = Some(at);
            if failure.is_some() {
                o.failure = failure;
            }
        }
    }

    /// A new version with the settings of the version before the current one (a rollback
    /// by the service); `None` when there is none.
    fn roll_back_version(&mut self, at: Timestamp) -> Option<()> {
        let failed = self.version_id;
        let (&to_version, &to) = self.versions.range(..failed).next_back()?;
        self.version_id += 1;
        self.versions.insert(self.version_id, to);
        self.settings = to;
        self.rolled_back_from = Some(failed);
        self.rolled_back_to = Some(to_version);
        self.updated = at;
        self.current_parallelism = to.parallelism;
        Some(())
    }
}

/// Many Managed Flink applications and their CloudWatch metrics, run by `R`.
#[derive(Debug)]
pub struct Service<R: Runtime> {
    now: Timestamp,
    rng: ChaCha8Rng,
    region: String,
    kpu_quota: u32,
    pub(crate) apps: BTreeMap<String, App<R::Job>>,
    store: MetricStore,
    /// A failure injected into the restart of the update being served (the emulator's
    /// `failOperation` fault).
    injected_failure: Option<String>,
    pub(crate) runtime: R,
}

impl<R: Runtime> Service<R> {
    /// An empty service at `start` (rounded down to the minute) over `runtime`; operation
    /// ids and conditional tokens drawn from `seed`.
    pub fn with_runtime(runtime: R, seed: u64, start: Timestamp) -> Self {
        let secs = start.as_second() - start.as_second().rem_euclid(60);
        let now = Timestamp::from_second(secs).unwrap_or(start);
        Self {
            now,
            rng: ChaCha8Rng::seed_from_u64(seed),
            region: "us-east-1".into(),
            kpu_quota: DEFAULT_KPU_QUOTA,
            apps: BTreeMap::new(),
            store: MetricStore::default(),
            injected_failure: None,
            runtime,
        }
    }

    /// Sets the region used in ARNs (default `us-east-1`).
    pub fn with_region(mut self, region: &str) -> Self {
        self.region = region.to_string();
        self
    }

    /// The region used in ARNs.
    pub fn region(&self) -> &str {
        &self.region
    }

    /// Sets the KPU quota per application (default 64).
    pub fn set_kpu_quota(&mut self, kpus: u32) {
        self.kpu_quota = kpus.max(1);
    }

    /// The current virtual time (a period boundary).
    pub fn now(&self) -> Timestamp {
        self.now
    }

    /// Applies the actions that ended by now, then steps whole periods while the next
    /// boundary is at or before `t`.
    pub fn advance_to(&mut self, t: Timestamp) {
        let now = self.now;
        for app in self.apps.values_mut() {
            settle(&mut self.runtime, app, now, now);
        }
        while self.now + PERIOD <= t {
            self.step_period();
        }
    }

    /// The job of an application.
    pub(crate) fn job(&self, name: &str) -> Result<&R::Job, ServiceError> {
        Ok(&self.app(name)?.job)
    }

    /// The job of an application, and the runtime.
    pub(crate) fn job_mut(&mut self, name: &str) -> Result<(&mut R, &mut R::Job), ServiceError> {
        let (runtime, app) = self.runtime_and_app(name)?;
        Ok((runtime, &mut app.job))
    }

    fn runtime_and_app(&mut self, name: &str) -> Result<(&mut R, &mut App<R::Job>), ServiceError> {
        let app = self
            .apps
            .get_mut(name)
            .ok_or_else(|| ServiceError::ResourceNotFound(format!("Application {name} not found.")))?;
        Ok((&mut self.runtime, app))
    }

    fn arn(&self, name: &str) -> String {
        format!(
            "arn:aws:kinesisanalytics:{}:{ACCOUNT_ID}:application/{name}",
            self.region
        )
    }

    fn token(&mut self) -> String {
        format!(
            "{:016x}{:016x}",
            self.rng.random::<u64>(),
            self.rng.random::<u64>()
        )
    }

    fn operation_id(&mut self) -> String {
        const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
        (0..16)
            .map(|_| ALPHABET[self.rng.random_range(0..ALPHABET.len())] as char)
            .collect()
    }

    fn new_op(
        &mut self,
        app: &str,
        operation: &str,
        version: Option<(i64, i64)>,
    ) -> Result<usize, ServiceError> {
        let id = self.operation_id();
        let now = self.now;
        let a = self.app_mut(app)?;
        a.operations.push(OperationView {
            operation_id: id,
            operation: operation.into(),
            status: OperationStatus::InProgress,
            start_time: now,
            end_time: None,
            failure: None,
            rollback_operation_id: None,
            version_updated_from: version.map(|v| v.0),
            version_updated_to: version.map(|v| v.1),
        });
        Ok(a.operations.len() - 1)
    }

    fn app(&self, name: &str) -> Result<&App<R::Job>, ServiceError> {
        self.apps
            .get(name)
            .ok_or_else(|| ServiceError::ResourceNotFound(format!("Application {name} not found.")))
    }

    fn app_mut(&mut self, name: &str) -> Result<&mut App<R::Job>, ServiceError> {
        Ok(self.runtime_and_app(name)?.1)
    }

    fn app_by_arn(&self, arn: &str) -> Result<&App<R::Job>, ServiceError> {
        self.apps
            .values()
            .find(|a| a.arn == arn)
            .ok_or_else(|| ServiceError::ResourceNotFound(format!("Resource {arn} not found.")))
    }

    fn view(&self, app: &App<R::Job>) -> ApplicationView {
        app.view(self.runtime.checkpointing(&app.job))
    }

    pub(crate) fn validate_settings(&self, s: &Settings) -> Result<(), ServiceError> {
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
        if kpus > self.kpu_quota {
            return Err(ServiceError::LimitExceeded(format!(
                "The application would use {kpus} KPUs, above the limit of {} KPUs per application.",
                self.kpu_quota
            )));
        }
        self.runtime.check(s.config())
    }

    /// Merges a parallelism update into settings (`UpdateApplication` semantics), enforcing
    /// `CUSTOM` for explicit values: DEFAULT is the service's default configuration
    /// (parallelism 1, one per KPU, autoscaling on).
    fn merge(&self, base: Settings, update: &ParallelismUpdate) -> Result<Settings, ServiceError> {
        let settings = merge(base, update)?;
        self.validate_settings(&settings)?;
        Ok(settings)
    }

    fn insert_app(
        &mut self,
        req: &CreateApplication,
        settings: Settings,
        spec: R::Spec,
    ) -> Result<&mut App<R::Job>, ServiceError> {
        let name = &req.name;
        let valid_name = !name.is_empty()
            && name.len() <= 128
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
        if !valid_name {
            return Err(ServiceError::InvalidArgument(format!(
                "ApplicationName {name:?} must be 1 to 128 characters of [a-zA-Z0-9_.-]."
            )));
        }
        if self.apps.contains_key(name) {
            return Err(ServiceError::ResourceInUse(format!(
                "Application {name} already exists."
            )));
        }
        if req.service_execution_role.is_empty() {
            return Err(ServiceError::InvalidArgument(
                "ServiceExecutionRole is required.".into(),
            ));
        }
        let runtime = req.runtime.clone().unwrap_or_else(|| DEFAULT_RUNTIME.into());
        validate_runtime(&runtime)?;
        validate_tags(&req.tags)?;
        if req.tags.len() > MAX_TAGS {
            return Err(ServiceError::TooManyTags(format!(
                "At most {MAX_TAGS} tags are allowed."
            )));
        }
        let token = self.token();
        let source = req.source.clone().unwrap_or_else(|| Source::default_for(name));
        let metric_ids = application_metric_ids(&monitoring_of(
            name,
            &runtime,
            settings.monitoring.metrics_level,
            &source,
        ));
        let job = self.runtime.job(name, spec, self.now);
        let app = App {
            name: name.clone(),
            arn: self.arn(name),
            description: req.description.clone(),
            runtime,
            role: req.service_execution_role.clone(),
            created: self.now,
            updated: self.now,
            version_id: 1,
            token,
            settings,
            versions: BTreeMap::from([(1, settings)]),
            current_parallelism: settings.parallelism,
            status: AppStatus::Ready,
            transition: None,
            job,
            operations: Vec::new(),
            tags: req.tags.clone(),
            updated_from: None,
            rolled_back_from: None,
            rolled_back_to: None,
            restore: RestoreConfig::latest(),
            snapshots: Vec::new(),
            cpu_high: 0,
            cpu_low: 0,
            source,
            metric_ids,
        };
        Ok(self.apps.entry(name.clone()).or_insert(app))
    }

    /// Adds an application running `spec` at `settings`: `RUNNING` at once where the runtime
    /// can, else `STARTING` (a `StartApplication` operation) until the job runs.
    pub(crate) fn add_running(
        &mut self,
        req: &CreateApplication,
        settings: Settings,
        spec: R::Spec,
    ) -> Result<ApplicationView, ServiceError> {
        self.validate_settings(&settings)?;
        let now = self.now;
        let config = settings.config();
        self.insert_app(req, settings, spec)?;
        let (runtime, app) = self.runtime_and_app(&req.name)?;
        if runtime.run_now(&mut app.job, config, now) {
            app.status = AppStatus::Running;
        } else {
            let op = self.new_op(&req.name, "StartApplication", None)?;
            let (runtime, app) = self.runtime_and_app(&req.name)?;
            app.status = AppStatus::Starting;
            app.transition = Some(Transition::Starting { op });
            let action = Action::Start {
                config,
                restore: false,
            };
            runtime.begin(&mut app.job, action, now);
        }
        let app = self.app(&req.name)?;
        Ok(self.view(app))
    }

    /// Adds one application per scenario (name from the scenario, or `name` override),
    /// running at the scenario's initial configuration (at once on the model: scenario time
    /// zero is now); the scenario's `application:` gives its runtime, source, snapshot and
    /// monitoring settings.
    pub fn add_scenario(
        &mut self,
        scenario: &Scenario,
        name: Option<&str>,
    ) -> Result<ApplicationView, ServiceError> {
        scenario
            .validate()
            .map_err(|e| ServiceError::InvalidArgument(e.to_string()))?;
        let a = &scenario.application;
        let settings = Settings {
            snapshots_enabled: a.snapshots_enabled,
            monitoring: MonitoringView::at_level(a.metrics_level),
            ..Settings::custom(
                AppConfig::new(a.parallelism, a.parallelism_per_kpu),
                a.auto_scaling_enabled,
            )
        };
        self.validate_settings(&settings)?;
        if settings.parallelism > a.key_groups() {
            return Err(ServiceError::InvalidApplicationConfiguration(format!(
                "Parallelism {} is higher than the job's maxParallelism {}.",
                settings.parallelism,
                a.key_groups()
            )));
        }
        let name = name.unwrap_or(&a.name);
        let req = CreateApplication {
            name: name.to_string(),
            description: scenario.description.clone(),
            runtime: Some(a.runtime_environment.clone()),
            service_execution_role: format!("arn:aws:iam::{ACCOUNT_ID}:role/flink-application"),
            source: Some(a.source.to_source(name)),
            ..CreateApplication::default()
        };
        let spec = self.runtime.spec(Some(scenario), settings.parallelism)?;
        self.add_running(&req, settings, spec)
    }

    /// Creates an application in `READY` status (not running), as `CreateApplication` does.
    pub fn create_application(&mut self, req: CreateApplication) -> Result<ApplicationView, ServiceError> {
        let base = Settings {
            snapshots_enabled: req.snapshots_enabled.unwrap_or(true),
            monitoring: req
                .monitoring
                .as_ref()
                .map_or(MonitoringView::DEFAULT, |m| MonitoringView::DEFAULT.merge(m)),
            ..Settings::DEFAULT
        };
        let settings = match &req.parallelism {
            Some(p) => self.merge(
                Settings {
                    configuration_type: ConfigurationType::Custom,
                    ..base
                },
                p,
            )?,
            None => {
                self.validate_settings(&base)?;
                base
            }
        };
        if let Some(s) = &req.workload {
            s.validate()
                .map_err(|e| ServiceError::InvalidArgument(e.to_string()))?;
        }
        let spec = self.runtime.spec(req.workload.as_ref(), settings.parallelism)?;
        self.insert_app(&req, settings, spec)?;
        self.describe_application(&req.name)
    }

    /// All applications, by name.
    pub fn list_applications(&self) -> Vec<ApplicationView> {
        self.apps.values().map(|a| self.view(a)).collect()
    }

    /// One application.
    pub fn describe_application(&self, name: &str) -> Result<ApplicationView, ServiceError> {
        Ok(self.view(self.app(name)?))
    }

    /// `UpdateApplication`. On a running application a parallelism change is a snapshot,
    /// stop and restore: the application is `UPDATING` until the job runs at the new
    /// configuration — or, when the job cannot restore there (above its `maxParallelism`),
    /// the operation fails and the service rolls back to the previous version. Returns the
    /// view and the operation id.
    pub fn update_application(
        &mut self,
        name: &str,
        req: UpdateApplication,
    ) -> Result<(ApplicationView, String), ServiceError> {
        let injected = self.injected_failure.take();
        let app = self.app(name)?;
        check_update(name, &req, app.version_id, &app.token, app.status)?;
        let mut settings = match &req.parallelism {
            Some(p) => self.merge(app.settings, p)?,
            None => app.settings,
        };
        if let Some(enabled) = req.snapshots_enabled {
            settings.snapshots_enabled = enabled;
        }
        if let Some(m) = &req.monitoring {
            settings.monitoring = settings.monitoring.merge(m);
        }
        if let Some(r) = &req.restore
            && r.application_restore_type == RestoreType::RestoreFromCustomSnapshot
        {
            let name_given = r.snapshot_name.as_deref().unwrap_or("");
            if !app.snapshots.iter().any(|s| s.name == name_given) {
                return Err(ServiceError::ResourceNotFound(format!(
                    "Snapshot {name_given} does not exist for application {name}."
                )));
            }
        }
        let restore_config = req.restore.clone().unwrap_or_else(|| app.restore.clone());
        let skip = restore_config.application_restore_type == RestoreType::SkipRestoreFromSnapshot;
        let from_version = app.version_id;
        let running = app.status == AppStatus::Running;
        let restart = running && (settings.config() != app.running_config() || skip);
        let token = self.token();
        let op = self.new_op(name, "UpdateApplication", Some((from_version, from_version + 1)))?;
        let now = self.now;
        let (runtime, app) = self.runtime_and_app(name)?;
        // The snapshot is taken as the job stops, under the configuration it ran with.
        let snapshot = restart && app.take_snapshot(now);
        app.version_id += 1;
        app.versions.insert(app.version_id, settings);
        app.updated_from = Some(from_version);
        app.token = token;
        app.updated = now;
        app.settings = settings;
        app.restore = restore_config;
        let restore = app.resumes_with_state(snapshot);
        if restart {
            let to = settings.config();
            let action = Action::Restart(Restart {
                from: app.running_config(),
                to,
                snapshot,
                restore,
                failure: injected,
                purpose: Purpose::Update,
            });
            runtime.begin(&mut app.job, action, now);
            app.status = AppStatus::Updating;
            app.transition = Some(Transition::Updating { op, to, snapshot });
        } else {
            if !running {
                app.current_parallelism = settings.parallelism;
            }
            app.finish_op(op, now, OperationStatus::Successful, None);
        }
        let id = app.operations[op].operation_id.clone();
        let app = self.app(name)?;
        Ok((self.view(app), id))
    }

    /// [`update_application`](Self::update_application) whose restart fails with
    /// `failure` (as a job that cannot restore does): the operation ends `FAILED` and the
    /// service rolls back to the previous version. An update that does not restart a
    /// running application cannot fail this way and completes as usual.
    pub fn update_application_failing(
        &mut self,
        name: &str,
        req: UpdateApplication,
        failure: &str,
    ) -> Result<(ApplicationView, String), ServiceError> {
        self.injected_failure = Some(failure.to_string());
        let result = self.update_application(name, req);
        // Consumed by a restart; dropped otherwise, so it never reaches a later update.
        self.injected_failure = None;
        result
    }

    /// Deletes an application (`DeleteApplication`): it is gone from every call at once,
    /// operations in flight included (its job is dropped). Its published metrics stay in
    /// CloudWatch, as they do on AWS; a new application of the same name starts afresh
    /// (version 1).
    pub fn delete_application(&mut self, name: &str) -> Result<(), ServiceError> {
        self.apps
            .remove(name)
            .map(|_| ())
            .ok_or_else(|| ServiceError::ResourceNotFound(format!("Application {name} not found.")))
    }

    /// One operation of an application.
    pub fn describe_operation(&self, name: &str, operation_id: &str) -> Result<OperationView, ServiceError> {
        self.app(name)?
            .operations
            .iter()
            .find(|o| o.operation_id == operation_id)
            .cloned()
            .ok_or_else(|| ServiceError::ResourceNotFound(format!("Operation {operation_id} not found.")))
    }

    /// All operations of an application, newest first (as `ListApplicationOperations`).
    pub fn list_operations(&self, name: &str) -> Result<Vec<OperationView>, ServiceError> {
        Ok(self.app(name)?.operations.iter().rev().cloned().collect())
    }

    /// The snapshots of an application, oldest first (as `ListApplicationSnapshots`).
    pub fn list_snapshots(&self, name: &str) -> Result<Vec<SnapshotView>, ServiceError> {
        Ok(self.app(name)?.snapshots.clone())
    }

    /// `RollbackApplication`: back to the previous version's configuration (a restart),
    /// allowed when `RUNNING`, `UPDATING` or `AUTOSCALING` (API reference,
    /// RollbackApplication); an update in flight is cancelled.
    pub fn rollback_application(
        &mut self,
        name: &str,
        current_version_id: i64,
    ) -> Result<(ApplicationView, String), ServiceError> {
        let app = self.app(name)?;
        if current_version_id != app.version_id {
            return Err(ServiceError::ConcurrentModification(format!(
                "Current application version id {current_version_id} does not match the application's version id {}.",
                app.version_id
            )));
        }
        if !matches!(
            app.status,
            AppStatus::Running | AppStatus::Updating | AppStatus::Autoscaling
        ) {
            return Err(ServiceError::ResourceInUse(format!(
                "Application {name} is in {} status; it can be rolled back only when RUNNING, UPDATING or AUTOSCALING.",
                app.status.as_str()
            )));
        }
        let Some((&to_version, &to)) = app.versions.range(..app.version_id).next_back() else {
            return Err(ServiceError::InvalidRequest(format!(
                "Application {name} has no previous version to roll back to."
            )));
        };
        let op = self.new_op(
            name,
            "RollbackApplication",
            Some((current_version_id, current_version_id + 1)),
        )?;
        let now = self.now;
        let (runtime, app) = self.runtime_and_app(name)?;
        if let Some(Transition::Updating { op: update_op, .. } | Transition::Starting { op: update_op }) =
            app.transition.take()
        {
            app.finish_op(update_op, now, OperationStatus::Cancelled, None);
        }
        let action = Action::Restart(Restart {
            from: app.running_config(),
            to: to.config(),
            snapshot: false,
            restore: true,
            failure: None,
            purpose: Purpose::Rollback,
        });
        runtime.begin(&mut app.job, action, now);
        app.status = AppStatus::RollingBack;
        app.transition = Some(Transition::RollingBack { op, to, to_version });
        let id = app.operations[op].operation_id.clone();
        let app = self.app(name)?;
        Ok((self.view(app), id))
    }

    /// `StartApplication` (from `READY`): `STARTING` while the cluster comes up and the
    /// latest snapshot is restored, then `RUNNING`.
    pub fn start_application(&mut self, name: &str) -> Result<String, ServiceError> {
        let app = self.app(name)?;
        if app.status != AppStatus::Ready {
            return Err(ServiceError::ResourceInUse(format!(
                "Application {name} is in {} status; it can be started only when READY.",
                app.status.as_str()
            )));
        }
        let key_groups = self.runtime.job_max_parallelism(&app.job);
        if app.current_parallelism > key_groups {
            return Err(ServiceError::InvalidApplicationConfiguration(format!(
                "Parallelism {} is higher than the job's maxParallelism {key_groups}.",
                app.current_parallelism
            )));
        }
        let op = self.new_op(name, "StartApplication", None)?;
        let now = self.now;
        let (runtime, app) = self.runtime_and_app(name)?;
        let action = Action::Start {
            config: app.running_config(),
            restore: true,
        };
        runtime.begin(&mut app.job, action, now);
        app.status = AppStatus::Starting;
        app.transition = Some(Transition::Starting { op });
        Ok(app.operations[op].operation_id.clone())
    }

    /// `StopApplication`: a graceful stop (from `RUNNING`) snapshots the state first; a
    /// forced one does not, and cancels what was in flight. The service allows a forced
    /// stop from `STARTING`, `UPDATING`, `STOPPING`, `AUTOSCALING` and `RUNNING` (API
    /// reference, StopApplication: "The application must be in the STARTING, UPDATING,
    /// STOPPING, AUTOSCALING, or RUNNING status").
    pub fn stop_application(&mut self, name: &str, force: bool) -> Result<String, ServiceError> {
        let app = self.app(name)?;
        let allowed = if force {
            matches!(
                app.status,
                AppStatus::Running
                    | AppStatus::Starting
                    | AppStatus::Updating
                    | AppStatus::Autoscaling
                    | AppStatus::Stopping
            )
        } else {
            app.status == AppStatus::Running
        };
        if !allowed {
            return Err(ServiceError::ResourceInUse(format!(
                "Application {name} is in {} status and cannot be stopped{}.",
                app.status.as_str(),
                if force { "" } else { " without Force" }
            )));
        }
        let op = self.new_op(name, "StopApplication", None)?;
        let now = self.now;
        let (runtime, app) = self.runtime_and_app(name)?;
        if let Some(t) = app.transition.take() {
            match t {
                Transition::Starting { op }
                | Transition::Stopping { op }
                | Transition::Updating { op, .. }
                | Transition::RollingBack { op, .. } => {
                    app.finish_op(op, now, OperationStatus::Cancelled, None)
                }
                Transition::Autoscaling { from, .. } => app.current_parallelism = from,
            }
        }
        // A graceful stop snapshots the state (when snapshots are on).
        let snapshot = !force && app.take_snapshot(now);
        let action = Action::Stop {
            config: app.running_config(),
            force,
            snapshot,
        };
        runtime.begin(&mut app.job, action, now);
        app.status = if force {
            AppStatus::ForceStopping
        } else {
            AppStatus::Stopping
        };
        app.transition = Some(Transition::Stopping { op });
        Ok(app.operations[op].operation_id.clone())
    }

    /// `TagResource`.
    pub fn tag_resource(&mut self, arn: &str, tags: Vec<(String, String)>) -> Result<(), ServiceError> {
        validate_tags(&tags)?;
        let name = self.app_by_arn(arn)?.name.clone();
        let app = self.app_mut(&name)?;
        let mut merged = app.tags.clone();
        for (k, v) in tags {
            match merged.iter_mut().find(|(mk, _)| *mk == k) {
                Some(existing) => existing.1 = v,
                None => merged.push((k, v)),
            }
        }
        if merged.len() > MAX_TAGS {
            return Err(ServiceError::TooManyTags(format!(
                "Resource {arn} would have {} tags; at most {MAX_TAGS} are allowed.",
                merged.len()
            )));
        }
        app.tags = merged;
        Ok(())
    }

    /// `UntagResource`.
    pub fn untag_resource(&mut self, arn: &str, keys: &[String]) -> Result<(), ServiceError> {
        let name = self.app_by_arn(arn)?.name.clone();
        self.app_mut(&name)?.tags.retain(|(k, _)| !keys.contains(k));
        Ok(())
    }

    /// `ListTagsForResource`.
    pub fn list_tags(&self, arn: &str) -> Result<Vec<(String, String)>, ServiceError> {
        Ok(self.app_by_arn(arn)?.tags.clone())
    }

    /// Datapoints of one metric aggregated to `period` with `stat` ("Average" | "Maximum" |
    /// "Minimum" | "Sum" | "SampleCount" | "pNN"), in [start, end), oldest first.
    pub fn metric_data(&self, q: &MetricQuery) -> Vec<(Timestamp, f64)> {
        self.store.query(q)
    }

    /// The unit a metric is published with (for `GetMetricStatistics`).
    pub fn metric_unit(&self, id: &MetricId) -> Option<&str> {
        self.store.unit(id)
    }

    /// Metrics with datapoints in the last 15 days matching the filters (a dimension with an
    /// empty value matches any value).
    pub fn list_metrics(
        &self,
        namespace: Option<&str>,
        metric_name: Option<&str>,
        dims: &[(String, String)],
    ) -> Vec<MetricId> {
        self.store.list(namespace, metric_name, dims)
    }

    /// Records one datapoint of a service metric (an `AWS/` namespace included) as if the
    /// service had published it: for tests and tools that need data of shapes or at times
    /// the runtime does not publish (`PutMetricData` refuses `AWS/` namespaces, as
    /// CloudWatch does).
    pub fn record_service_metric(&mut self, id: &MetricId, unit: &str, at: Timestamp, value: f64) {
        self.store.record(id, unit, at, value);
    }

    /// `PutMetricData`. Namespaces starting with `AWS/` are reserved, as in CloudWatch.
    pub fn put_metric_data(&mut self, namespace: &str, data: Vec<PutDatum>) -> Result<(), ServiceError> {
        if namespace.starts_with("AWS/") || namespace.is_empty() {
            return Err(ServiceError::InvalidArgument(format!(
                "The value {namespace} for parameter Namespace is invalid: namespaces starting with AWS/ are reserved."
            )));
        }
        for d in &data {
            let values_ok = d.value.is_some_and(f64::is_finite)
                || (!d.values.is_empty() && d.values.iter().all(|v| v.is_finite()))
                || d.statistic_values.is_some();
            if d.metric_name.is_empty() || !values_ok {
                return Err(ServiceError::InvalidArgument(format!(
                    "MetricDatum {:?} needs a name and a finite Value, Values or StatisticValues.",
                    d.metric_name
                )));
            }
        }
        for d in &data {
            self.store.put(namespace, d, self.now);
        }
        Ok(())
    }

    fn step_period(&mut self) {
        let t0 = self.now;
        let t1 = t0 + PERIOD;
        let quota = self.kpu_quota;
        let max_parallelism = self.runtime.max_parallelism();
        for app in self.apps.values_mut() {
            let cursor = settle(&mut self.runtime, app, t0, t1);
            // KPUs are billed (and reported) whenever the application is not READY,
            // including while it restarts.
            let kpus = if app.status == AppStatus::Ready {
                0
            } else {
                app.running_config().kpus()
            };
            let ctx = PeriodContext {
                kpus,
                running: app.status == AppStatus::Running,
                parallelism: app.current_parallelism,
                tasks: app.settings.monitoring.metrics_level > MetricsLevel::Application,
                source: &app.source,
            };
            let figures = self.runtime.period(&mut app.job, cursor, t1, ctx);
            autoscale(
                &mut self.runtime,
                app,
                &figures,
                t1,
                quota * app.settings.parallelism_per_kpu,
                max_parallelism,
            );
            publish(&mut self.store, app, t0, &figures);
        }
        self.now = t1;
        if t1.as_second().rem_euclid(86_400) == 0 {
            self.store.expire(t1 - RETENTION);
        }
    }
}

/// Applies every action of `app` that ended in [`from`, `to`], in order; returns the time
/// the job has run to.
fn settle<R: Runtime>(runtime: &mut R, app: &mut App<R::Job>, from: Timestamp, to: Timestamp) -> Timestamp {
    let mut cursor = from;
    while app.transition.is_some() {
        let Some((at, outcome)) = runtime.poll(&mut app.job, cursor, to) else {
            break;
        };
        cursor = at;
        if let Some(t) = app.transition.take() {
            complete_transition(runtime, app, t, outcome, at);
        }
    }
    cursor
}

/// Applies the end of a transition at `at`.
fn complete_transition<R: Runtime>(
    runtime: &mut R,
    app: &mut App<R::Job>,
    t: Transition,
    outcome: Outcome,
    at: Timestamp,
) {
    match (t, outcome) {
        (Transition::Starting { op }, Outcome::Done) => {
            app.status = AppStatus::Running;
            app.finish_op(op, at, OperationStatus::Successful, None);
        }
        (Transition::Starting { op }, Outcome::Failed(message) | Outcome::Kept(message)) => {
            app.status = AppStatus::Ready;
            app.finish_op(op, at, OperationStatus::Failed, Some(message));
        }
        (Transition::Stopping { op }, Outcome::Done) => {
            app.status = AppStatus::Ready;
            app.finish_op(op, at, OperationStatus::Successful, None);
        }
        (Transition::Stopping { op }, Outcome::Failed(message) | Outcome::Kept(message)) => {
            app.status = AppStatus::Running;
            app.finish_op(op, at, OperationStatus::Failed, Some(message));
        }
        (Transition::Updating { op, to, .. }, Outcome::Done) => {
            app.current_parallelism = to.parallelism;
            app.status = AppStatus::Running;
            app.finish_op(op, at, OperationStatus::Successful, None);
        }
        (Transition::Updating { op, snapshot, .. }, Outcome::Kept(message)) => {
            // The job never stopped (its snapshot failed): no snapshot, and a rollback
            // without a restart.
            if snapshot {
                app.snapshots.pop();
            }
            app.roll_back_version(at);
            app.status = AppStatus::Running;
            app.finish_op(op, at, OperationStatus::Failed, Some(message));
        }
        (Transition::Updating { op, .. }, Outcome::Failed(message)) => {
            // The service rolls back to the version before the failed one.
            let failed_version = app.version_id;
            let previous = app
                .versions
                .range(..failed_version)
                .next_back()
                .map(|(v, s)| (*v, *s));
            let Some((to_version, to)) = previous else {
                app.status = AppStatus::Ready;
                app.finish_op(op, at, OperationStatus::Failed, Some(message));
                return;
            };
            let rollback_id = format!("{}-rollback", app.operations[op].operation_id);
            app.finish_op(op, at, OperationStatus::Failed, Some(message));
            app.operations[op].rollback_operation_id = Some(rollback_id.clone());
            app.operations.push(OperationView {
                operation_id: rollback_id,
                operation: "RollbackApplication".into(),
                status: OperationStatus::InProgress,
                start_time: at,
                end_time: None,
                failure: None,
                rollback_operation_id: None,
                version_updated_from: Some(failed_version),
                version_updated_to: Some(failed_version + 1),
            });
            let rollback_op = app.operations.len() - 1;
            runtime.begin(&mut app.job, Action::Recover { to: to.config() }, at);
            app.status = AppStatus::RollingBack;
            app.transition = Some(Transition::RollingBack {
                op: rollback_op,
                to,
                to_version,
            });
        }
        (Transition::RollingBack { op, to, to_version }, Outcome::Done) => {
            let from_version = app.version_id;
            app.version_id += 1;
            app.versions.insert(app.version_id, to);
            app.settings = to;
            app.rolled_back_from = Some(from_version);
            app.rolled_back_to = Some(to_version);
            app.updated = at;
            app.current_parallelism = to.parallelism;
            app.status = AppStatus::Running;
            app.finish_op(op, at, OperationStatus::Successful, None);
        }
        (Transition::RollingBack { op, .. }, Outcome::Failed(message)) => {
            app.status = AppStatus::Ready;
            app.finish_op(op, at, OperationStatus::Failed, Some(message));
        }
        (Transition::RollingBack { op, .. }, Outcome::Kept(message)) => {
            app.status = AppStatus::Running;
            app.finish_op(op, at, OperationStatus::Failed, Some(message));
        }
        (Transition::Autoscaling { from, to }, outcome) => {
            app.current_parallelism = if outcome == Outcome::Done { to } else { from };
            app.status = AppStatus::Running;
        }
    }
}

/// The service's own automatic scaling, exactly as AWS documents it (Managed Service for
/// Apache Flink developer guide, "Use automatic scaling in Managed Service for Apache
/// Flink"): the only signal is CPU. Scale up when `containerCPUUtilization` (Maximum) is at
/// or above 75 % for 15 consecutive one-minute datapoints: `CurrentParallelism` doubles,
/// `ParallelismPerKPU` unchanged, capped by the KPU quota (`cap` subtasks). Scale down when
/// it stays below 10 % for six hours: parallelism halves (rounded up), never below the
/// configured `Parallelism`. While it scales the application is `AUTOSCALING`.
fn autoscale<R: Runtime>(
    runtime: &mut R,
    app: &mut App<R::Job>,
    figures: &Figures,
    at: Timestamp,
    cap: u32,
    max_parallelism: u32,
) {
    // The Maximum of the per-TaskManager samples: the busiest TaskManager.
    let cpu = figures.busiest.cpu.filter(|_| figures.job_reporting);
    let (AppStatus::Running, true, Some(cpu)) = (app.status, app.settings.auto_scaling_enabled, cpu) else {
        app.cpu_high = 0;
        app.cpu_low = 0;
        return;
    };
    app.cpu_high = if cpu >= AUTOSCALE_UP_PERCENT {
        app.cpu_high + 1
    } else {
        0
    };
    app.cpu_low = if cpu < AUTOSCALE_DOWN_PERCENT {
        app.cpu_low + 1
    } else {
        0
    };
    let current = app.current_parallelism;
    let target = if app.cpu_high >= AUTOSCALE_UP_MINUTES {
        (current * 2).min(cap).min(max_parallelism)
    } else if app.cpu_low >= AUTOSCALE_DOWN_MINUTES {
        current.div_ceil(2).max(app.settings.parallelism)
    } else {
        return;
    };
    app.cpu_high = 0;
    app.cpu_low = 0;
    if target == current {
        return;
    }
    let from = app.running_config();
    // The service snapshots the state as it scales (when snapshots are on); without one
    // the job restarts without it.
    let snapshot = app.take_snapshot(at);
    let action = Action::Restart(Restart {
        from,
        to: AppConfig::new(target, from.parallelism_per_kpu),
        snapshot,
        restore: snapshot,
        failure: None,
        purpose: Purpose::Autoscale,
    });
    runtime.begin(&mut app.job, action, at);
    app.status = AppStatus::Autoscaling;
    app.transition = Some(Transition::Autoscaling {
        from: current,
        to: target,
    });
}

/// The catalogue's view of an application (an unknown runtime, refused at creation, reads
/// as the default one).
fn monitoring_of(name: &str, runtime: &str, level: MetricsLevel, source: &Source) -> Monitoring {
    Monitoring {
        application: name.to_string(),
        level,
        version: catalogue::flink_version(runtime)
            .or_else(|| catalogue::flink_version(DEFAULT_RUNTIME))
            .unwrap_or(catalogue::FlinkVersion { major: 1, minor: 20 }),
        source: source.clone(),
    }
}

/// The ids of the application-level metrics the catalogue says this application publishes
/// (its runtime's, its source's lag), by metric name.
fn application_metric_ids(m: &Monitoring) -> BTreeMap<&'static str, MetricId> {
    let mut ids: BTreeMap<&'static str, MetricId> = catalogue::CATALOGUE
        .iter()
        .filter_map(|def| m.application(def.name, 0.0))
        .map(|d| (d.name, MetricId::new(NAMESPACE, d.name, &d.dimensions)))
        .collect();
    if let Some(d) = m.source_lag(0.0, 0.0) {
        ids.insert(d.name, MetricId::new(NAMESPACE, d.name, &d.dimensions));
    }
    ids
}

/// Publishes one period's figures at `at` (the period's start), with AWS's names, units
/// and dimensions, as the metric catalogue says the application publishes them: the
/// application-level metrics of its runtime, its source's lag, and — at the TASK level and
/// finer — the per-task, per-operator or per-subtask metrics. Job metrics are absent for a
/// period in which the job never ran.
fn publish<J>(store: &mut MetricStore, app: &App<J>, at: Timestamp, f: &Figures) {
    let ids = &app.metric_ids;
    let mut put = |name: &str, value: Option<f64>| {
        debug_assert!(
            catalogue::metric(name).is_some(),
            "{name} is missing from the catalogue"
        );
        // A metric the application does not publish (its runtime's or source's) has no id.
        if let (Some(value), Some(id), Some(def)) = (value, ids.get(name), catalogue::metric(name)) {
            store.record(id, def.unit, at, value);
        }
    };
    if f.kpus > 0 {
        put("KPUs", Some(f64::from(f.kpus)));
    }
    if !f.job_reporting && f.downtime_ms == 0.0 {
        return;
    }
    put("downtime", Some(f.downtime_ms));
    put("uptime", Some(f.uptime_ms));
    put("fullRestarts", f.restarts);
    put("numRestarts", f.restarts);
    put("numberOfFailedCheckpoints", f.failed_checkpoints);
    if !f.job_reporting {
        return;
    }
    put("lastCheckpointDuration", f.last_checkpoint_duration_ms);
    put("lastCheckpointSize", f.last_checkpoint_size_bytes);
    // One sample per TaskManager per period, as Managed Flink publishes these: the busiest
    // first, then the others (so Maximum is the busiest and Average the mean).
    for tm in 0..f.task_managers.max(1) {
        let s = if tm == 0 { &f.busiest } else { &f.rest };
        put("cpuUtilization", s.cpu);
        put("containerCPUUtilization", s.cpu);
        put("heapMemoryUtilization", s.heap);
        put("containerMemoryUtilization", s.container_memory);
    }
    put("millisBehindLatest", f.source_lag.map(|l| l.0));
    put("records_lag_max", f.source_lag.map(|l| l.1));
    put("numRecordsInPerSecond", f.records_in_per_second);
    put("numRecordsOutPerSecond", f.records_in_per_second);
    if app.settings.monitoring.metrics_level > MetricsLevel::Application {
        for d in app.monitoring().tasks(&f.tasks) {
            store.record(
                &MetricId::new(NAMESPACE, d.name, &d.dimensions),
                d.unit,
                at,
                d.value,
            );
        }
    }
}

/// Merges a parallelism update (`UpdateApplication` semantics), enforcing `CUSTOM` for
/// explicit values; DEFAULT is the service's default configuration, autoscaling on
/// (API reference, ParallelismConfigurationUpdate).
pub(crate) fn merge(base: Settings, update: &ParallelismUpdate) -> Result<Settings, ServiceError> {
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
            snapshots_enabled: base.snapshots_enabled,
            monitoring: base.monitoring,
            ..Settings::DEFAULT
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

fn validate_tags(tags: &[(String, String)]) -> Result<(), ServiceError> {
    for (k, v) in tags {
        if k.is_empty() || k.len() > 128 || v.len() > 256 {
            return Err(ServiceError::InvalidArgument(format!(
                "Tag key {k:?} must be 1 to 128 characters and its value at most 256."
            )));
        }
        if k.starts_with("aws:") {
            return Err(ServiceError::InvalidArgument(format!(
                "Tag key {k:?} uses the reserved prefix aws:."
            )));
        }
    }
    Ok(())
}

/// `UpdateApplication`'s preconditions, as the service checks them before anything else:
/// a version id or conditional token that matches the application's (else
/// ConcurrentModification), and an application that is READY or RUNNING (else
/// ResourceInUse). Shared by every backend of the emulator.
pub fn check_update(
    name: &str,
    req: &UpdateApplication,
    version_id: i64,
    token: &str,
    status: AppStatus,
) -> Result<(), ServiceError> {
    match (req.current_application_version_id, &req.conditional_token) {
        (None, None) => {
            return Err(ServiceError::InvalidArgument(
                "Either CurrentApplicationVersionId or ConditionalToken must be provided.".into(),
            ));
        }
        (Some(v), _) if v != version_id => {
            return Err(ServiceError::ConcurrentModification(format!(
                "Current application version id {v} does not match the application's version id {version_id}."
            )));
        }
        (_, Some(t)) if t != token => {
            return Err(ServiceError::ConcurrentModification(
                "The conditional token does not match the application's current token.".into(),
            ));
        }
        _ => {}
    }
    if !matches!(status, AppStatus::Running | AppStatus::Ready) {
        return Err(ServiceError::ResourceInUse(format!(
            "Application {name} is in {} status; it can be updated only when READY or RUNNING.",
            status.as_str()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn update(kind: ConfigurationType, parallelism: Option<u32>) -> ParallelismUpdate {
        ParallelismUpdate {
            configuration_type: Some(kind),
            parallelism,
            ..ParallelismUpdate::default()
        }
    }

    #[test]
    fn default_is_the_services_default_configuration_autoscaling_on() {
        let base = Settings {
            snapshots_enabled: false,
            monitoring: MonitoringView::at_level(MetricsLevel::Task),
            ..Settings::custom(AppConfig::new(4, 2), false)
        };
        let merged = merge(base, &update(ConfigurationType::Default, None)).unwrap();
        assert_eq!(merged.configuration_type, ConfigurationType::Default);
        assert_eq!(merged.config(), AppConfig::new(1, 1));
        assert!(merged.auto_scaling_enabled);
        // What is not part of the parallelism configuration stays.
        assert!(!merged.snapshots_enabled);
        assert_eq!(merged.monitoring.metrics_level, MetricsLevel::Task);
    }

    #[test]
    fn explicit_values_need_custom_and_custom_keeps_what_it_does_not_name() {
        let base = Settings::custom(AppConfig::new(4, 2), false);
        assert!(matches!(
            merge(base, &update(ConfigurationType::Default, Some(2))),
            Err(ServiceError::InvalidArgument(_))
        ));
        let merged = merge(base, &update(ConfigurationType::Custom, Some(6))).unwrap();
        assert_eq!(merged.config(), AppConfig::new(6, 2));
        assert!(!merged.auto_scaling_enabled);
        // Without a ConfigurationType the application's own applies.
        let merged = merge(
            Settings::DEFAULT,
            &ParallelismUpdate {
                parallelism: Some(2),
                ..ParallelismUpdate::default()
            },
        );
        assert!(matches!(merged, Err(ServiceError::InvalidArgument(_))));
    }
}
