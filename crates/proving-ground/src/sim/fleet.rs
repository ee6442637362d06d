//! The service: many Managed Flink applications in virtual time, with the semantics of
//! `kinesisanalyticsv2` (versions, operations, `UPDATING`, rollback, quotas, the service's
//! own autoscaling, tags) and the CloudWatch metrics the jobs publish.
//!
//! This is the model the `emulator` serves over the real wire protocols and `simulate` drives
//! directly. It is synchronous: the caller owns the clock and calls [`Fleet::advance_to`].

use std::{collections::BTreeMap, time::Duration};

use jiff::Timestamp;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::{
    model::{Job, PeriodReport, Workload},
    scenario::Scenario,
    store::{MetricId, MetricQuery, MetricStore, PutDatum, RETENTION},
};
use crate::{
    aws::catalogue::{self, FLINK_RUNTIMES, MetricsLevel, Monitoring, Source, SubtaskFigures, TaskFigures},
    policy::{AppConfig, AppStatus},
};

/// The metric period: one datapoint per metric per minute, as Managed Flink publishes.
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
/// How long a forced stop takes.
const FORCE_STOP_TIME: Duration = Duration::from_secs(30);
/// Time to stop after the snapshot of a graceful stop.
const STOP_OVERHEAD: Duration = Duration::from_secs(30);

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
struct Settings {
    configuration_type: ConfigurationType,
    parallelism: u32,
    parallelism_per_kpu: u32,
    auto_scaling_enabled: bool,
    /// `SnapshotsEnabled`: a restart keeps the state only with snapshots.
    snapshots_enabled: bool,
    /// `MonitoringConfiguration`: which metrics the job publishes.
    monitoring: MonitoringView,
}

impl Settings {
    const DEFAULT: Settings = Settings {
        configuration_type: ConfigurationType::Default,
        parallelism: 1,
        parallelism_per_kpu: 1,
        auto_scaling_enabled: true,
        snapshots_enabled: true,
        monitoring: MonitoringView::DEFAULT,
    };

    fn config(&self) -> AppConfig {
        AppConfig::new(self.parallelism, self.parallelism_per_kpu)
    }
}

#[derive(Clone, Debug)]
enum Transition {
    Starting {
        op: usize,
        restore: bool,
    },
    Stopping {
        op: usize,
    },
    Updating {
        op: usize,
        to: AppConfig,
        restore: bool,
        failure: Option<String>,
    },
    RollingBack {
        op: usize,
        to: Settings,
        to_version: i64,
    },
    Autoscaling {
        from: u32,
        to: u32,
        failure: bool,
        /// Whether the state was snapshotted and is restored.
        restore: bool,
    },
}

#[derive(Clone, Debug)]
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
    /// Every version's settings, by version id.
    versions: BTreeMap<i64, Settings>,
    current_parallelism: u32,
    status: AppStatus,
    /// What the status is waiting for, and when it ends.
    transition: Option<(Timestamp, Transition)>,
    job: Job,
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
    last_report: Option<PeriodReport>,
    /// What the job reads (decides its lag metric).
    source: Source,
    /// The ids of the application-level metrics it publishes (by its runtime and source),
    /// built once (publishing is the hot path of a fleet of thousands).
    metric_ids: BTreeMap<&'static str, MetricId>,
}

impl App {
    fn running_config(&self) -> AppConfig {
        AppConfig::new(self.current_parallelism, self.settings.parallelism_per_kpu)
    }

    fn view(&self) -> ApplicationView {
        let c = &self.job.workload().checkpoints;
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
                checkpoint_interval_ms: c.interval.as_millis() as i64,
                min_pause_between_checkpoints_ms: c.min_pause.as_millis() as i64,
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
            // NB: the model cannot take a job back to an older state; a named snapshot it
            // keeps restores the state as it is.
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
}

/// Many Managed Flink applications and their CloudWatch metrics, in virtual time.
#[derive(Clone, Debug)]
pub struct Fleet {
    now: Timestamp,
    seed: u64,
    rng: ChaCha8Rng,
    region: String,
    kpu_quota: u32,
    apps: BTreeMap<String, App>,
    store: MetricStore,
    streams: u64,
    /// A failure injected into the restart of the update being served (the emulator's
    /// `failOperation` fault).
    injected_failure: Option<String>,
}

impl Fleet {
    /// An empty fleet at `start` (rounded down to the minute); metric period 60 s.
    pub fn new(seed: u64, start: Timestamp) -> Self {
        let secs = start.as_second() - start.as_second().rem_euclid(60);
        let now = Timestamp::from_second(secs).unwrap_or(start);
        Self {
            now,
            seed,
            rng: ChaCha8Rng::seed_from_u64(seed),
            region: "us-east-1".into(),
            kpu_quota: DEFAULT_KPU_QUOTA,
            apps: BTreeMap::new(),
            store: MetricStore::default(),
            streams: 0,
            injected_failure: None,
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

    /// Steps whole periods while the next boundary is at or before `t`.
    pub fn advance_to(&mut self, t: Timestamp) {
        while self.now + PERIOD <= t {
            self.step_period();
        }
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

    fn app_by_arn(&self, arn: &str) -> Result<&App, ServiceError> {
        self.apps
            .values()
            .find(|a| a.arn == arn)
            .ok_or_else(|| ServiceError::ResourceNotFound(format!("Resource {arn} not found.")))
    }

    fn validate_settings(&self, s: &Settings) -> Result<(), ServiceError> {
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
        Ok(())
    }

    /// Merges a parallelism update into settings, enforcing `CUSTOM` for explicit values.
    fn merge(&self, base: Settings, update: &ParallelismUpdate) -> Result<Settings, ServiceError> {
        let kind = update.configuration_type.unwrap_or(base.configuration_type);
        let explicit = update.parallelism.is_some()
            || update.parallelism_per_kpu.is_some()
            || update.auto_scaling_enabled.is_some();
        let settings = match kind {
            ConfigurationType::Default if explicit => {
                return Err(ServiceError::InvalidArgument(
                    "ConfigurationType must be CUSTOM to set Parallelism, ParallelismPerKPU or AutoScalingEnabled."
                        .into(),
                ));
            }
            ConfigurationType::Default => Settings {
                snapshots_enabled: base.snapshots_enabled,
                monitoring: base.monitoring,
                ..Settings::DEFAULT
            },
            ConfigurationType::Custom => Settings {
                configuration_type: ConfigurationType::Custom,
                parallelism: update.parallelism.unwrap_or(base.parallelism),
                parallelism_per_kpu: update.parallelism_per_kpu.unwrap_or(base.parallelism_per_kpu),
                auto_scaling_enabled: update.auto_scaling_enabled.unwrap_or(base.auto_scaling_enabled),
                snapshots_enabled: base.snapshots_enabled,
                monitoring: base.monitoring,
            },
        };
        self.validate_settings(&settings)?;
        Ok(settings)
    }

    fn insert_app(
        &mut self,
        req: &CreateApplication,
        settings: Settings,
        workload: Workload,
    ) -> Result<&mut App, ServiceError> {
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
        self.streams += 1;
        let job = Job::new(workload, self.now, self.streams);
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
            last_report: None,
            source,
            metric_ids,
        };
        Ok(self.apps.entry(name.clone()).or_insert(app))
    }

    /// Adds one application per scenario (name from the scenario, or `name` override),
    /// already `RUNNING` at the scenario's initial configuration; scenario time zero is now.
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
            configuration_type: ConfigurationType::Custom,
            parallelism: a.parallelism,
            parallelism_per_kpu: a.parallelism_per_kpu,
            auto_scaling_enabled: a.auto_scaling_enabled,
            snapshots_enabled: a.snapshots_enabled,
            monitoring: MonitoringView::at_level(a.metrics_level),
        };
        self.validate_settings(&settings)?;
        if settings.parallelism > a.key_groups() {
            return Err(ServiceError::InvalidApplicationConfiguration(format!(
                "Parallelism {} is higher than the job's maxParallelism {}.",
                settings.parallelism,
                a.key_groups()
            )));
        }
        let req = CreateApplication {
            name: name.unwrap_or(&a.name).to_string(),
            description: scenario.description.clone(),
            runtime: Some(a.runtime_environment.clone()),
            service_execution_role: format!("arn:aws:iam::{ACCOUNT_ID}:role/flink-application"),
            source: Some(a.source.to_source(name.unwrap_or(&a.name))),
            ..CreateApplication::default()
        };
        let now = self.now;
        let app = self.insert_app(&req, settings, Workload::from_scenario(scenario))?;
        app.status = AppStatus::Running;
        app.job.start(now, settings.config());
        Ok(app.view())
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
            None => base,
        };
        let workload = match &req.workload {
            Some(s) => {
                s.validate()
                    .map_err(|e| ServiceError::InvalidArgument(e.to_string()))?;
                Workload::from_scenario(s)
            }
            None => Workload::light(settings.parallelism, self.seed ^ self.streams),
        };
        Ok(self.insert_app(&req, settings, workload)?.view())
    }

    /// All applications, by name.
    pub fn list_applications(&self) -> Vec<ApplicationView> {
        self.apps.values().map(App::view).collect()
    }

    /// One application.
    pub fn describe_application(&self, name: &str) -> Result<ApplicationView, ServiceError> {
        Ok(self.app(name)?.view())
    }

    /// `UpdateApplication`. On a running application a parallelism change is a snapshot,
    /// stop and restore: the application is `UPDATING` for a time that grows with its
    /// state, then `RUNNING` at the new configuration — or, when the job cannot restore at
    /// that parallelism (above its `maxParallelism`), the operation fails and the service
    /// rolls back to the previous version. Returns the view and the operation id.
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
        let app = self.app_mut(name)?;
        // The snapshot is taken as the job stops, under the configuration it ran with.
        let snapshot_taken = restart && app.take_snapshot(now);
        app.version_id += 1;
        app.versions.insert(app.version_id, settings);
        app.updated_from = Some(from_version);
        app.token = token;
        app.updated = now;
        app.settings = settings;
        app.restore = restore_config;
        let restore = app.resumes_with_state(snapshot_taken);
        if restart {
            let to = settings.config();
            let failure = injected.or_else(|| {
                (!app.job.accepts_parallelism(to.parallelism)).then(|| {
                    format!(
                        "The job failed to start: parallelism {} is higher than the job's maxParallelism {}; \
                         state cannot be restored.",
                        to.parallelism,
                        app.job.workload().key_groups
                    )
                })
            });
            let from = app.running_config();
            // A failing restore is noticed once the snapshot is written and the new job submitted.
            let duration = match failure {
                None => app.job.restart_time(from, to),
                Some(_) => app.job.restart_time(from, from) - app.job.restore_time(from),
            };
            app.job.stop();
            app.status = AppStatus::Updating;
            app.transition = Some((
                now + duration,
                Transition::Updating {
                    op,
                    to,
                    restore,
                    failure,
                },
            ));
        } else {
            if !running {
                app.current_parallelism = settings.parallelism;
            }
            app.finish_op(op, now, OperationStatus::Successful, None);
        }
        let id = app.operations[op].operation_id.clone();
        Ok((app.view(), id))
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
    /// operations in flight included. Its published metrics stay in CloudWatch, as they do
    /// on AWS; a new application of the same name starts afresh (version 1).
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
    /// allowed when `RUNNING`, `UPDATING` or `AUTOSCALING`; an update in flight is cancelled.
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
        let app = self.app_mut(name)?;
        if let Some((
            _,
            Transition::Updating { op: update_op, .. } | Transition::Starting { op: update_op, .. },
        )) = app.transition.take()
        {
            app.finish_op(update_op, now, OperationStatus::Cancelled, None);
        }
        let from = app.running_config();
        let duration = app.job.restart_time(from, to.config());
        app.job.stop();
        app.status = AppStatus::RollingBack;
        app.transition = Some((now + duration, Transition::RollingBack { op, to, to_version }));
        let id = app.operations[op].operation_id.clone();
        Ok((app.view(), id))
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
        if !app.job.accepts_parallelism(app.current_parallelism) {
            return Err(ServiceError::InvalidApplicationConfiguration(format!(
                "Parallelism {} is higher than the job's maxParallelism {}.",
                app.current_parallelism,
                app.job.workload().key_groups
            )));
        }
        let op = self.new_op(name, "StartApplication", None)?;
        let now = self.now;
        let app = self.app_mut(name)?;
        let duration =
            app.job.workload().platform.restart_base / 2 + app.job.restore_time(app.running_config());
        app.status = AppStatus::Starting;
        app.transition = Some((now + duration, Transition::Starting { op, restore: true }));
        Ok(app.operations[op].operation_id.clone())
    }

    /// `StopApplication`: a graceful stop (from `RUNNING`) snapshots the state first; a
    /// forced one (also from `STARTING`, `UPDATING`, `AUTOSCALING`, `ROLLING_BACK`) does
    /// not, and cancels what was in flight.
    pub fn stop_application(&mut self, name: &str, force: bool) -> Result<String, ServiceError> {
        let app = self.app(name)?;
        let allowed = if force {
            matches!(
                app.status,
                AppStatus::Running
                    | AppStatus::Starting
                    | AppStatus::Updating
                    | AppStatus::Autoscaling
                    | AppStatus::RollingBack
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
        let app = self.app_mut(name)?;
        if let Some((_, t)) = app.transition.take() {
            match t {
                Transition::Starting { op, .. }
                | Transition::Stopping { op }
                | Transition::Updating { op, .. }
                | Transition::RollingBack { op, .. } => {
                    app.finish_op(op, now, OperationStatus::Cancelled, None)
                }
                Transition::Autoscaling { from, .. } => app.current_parallelism = from,
            }
        }
        let duration = if force {
            app.job.stop();
            app.status = AppStatus::ForceStopping;
            FORCE_STOP_TIME
        } else {
            // A graceful stop snapshots the state (when snapshots are on).
            app.take_snapshot(now);
            app.status = AppStatus::Stopping;
            app.job
                .workload()
                .transfer_time(app.running_config(), app.job.state_bytes())
                + STOP_OVERHEAD
        };
        app.transition = Some((now + duration, Transition::Stopping { op }));
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
    /// the model does not publish (`PutMetricData` refuses `AWS/` namespaces, as CloudWatch
    /// does).
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

    /// What the model did in the last period for an application (beyond CloudWatch's
    /// metrics: offered load, backlog, state size); for `simulate`'s timeline.
    pub fn last_period(&self, name: &str) -> Option<&PeriodReport> {
        self.apps.get(name).and_then(|a| a.last_report.as_ref())
    }

    fn step_period(&mut self) {
        let t0 = self.now;
        let t1 = t0 + PERIOD;
        let quota = self.kpu_quota;
        for app in self.apps.values_mut() {
            let mut cursor = t0;
            while let Some((until, _)) = &app.transition {
                let until = *until;
                if until > t1 {
                    break;
                }
                let at = until.max(cursor);
                app.job.advance(cursor, at);
                cursor = at;
                if let Some((_, t)) = app.transition.take() {
                    complete_transition(app, t, at);
                }
            }
            app.job.advance(cursor, t1);
            let mut report = app.job.take_period(t1);
            // KPUs are billed (and reported) whenever the application is not READY, including
            // while it restarts.
            report.kpus = if app.status == AppStatus::Ready {
                0
            } else {
                app.running_config().kpus()
            };
            autoscale(app, &report, t1, quota);
            publish(&mut self.store, app, t0, &report);
            app.last_report = Some(report);
        }
        self.now = t1;
        if t1.as_second().rem_euclid(86_400) == 0 {
            self.store.expire(t1 - RETENTION);
        }
    }
}

/// Applies the end of a transition at `at`.
fn complete_transition(app: &mut App, t: Transition, at: Timestamp) {
    match t {
        Transition::Starting { op, restore } => {
            if !restore {
                app.job.clear_state();
            }
            app.job.start(at, app.running_config());
            app.status = AppStatus::Running;
            app.finish_op(op, at, OperationStatus::Successful, None);
        }
        Transition::Stopping { op } => {
            app.job.stop();
            app.status = AppStatus::Ready;
            app.finish_op(op, at, OperationStatus::Successful, None);
        }
        Transition::Updating {
            op,
            to,
            restore,
            failure: None,
        } => {
            if !restore {
                app.job.clear_state();
            }
            app.current_parallelism = to.parallelism;
            app.job.start(at, to);
            app.status = AppStatus::Running;
            app.finish_op(op, at, OperationStatus::Successful, None);
        }
        Transition::Updating {
            op,
            failure: Some(message),
            ..
        } => {
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
            let duration = app.job.workload().platform.restart_base + app.job.restore_time(to.config());
            app.status = AppStatus::RollingBack;
            app.transition = Some((
                at + duration,
                Transition::RollingBack {
                    op: rollback_op,
                    to,
                    to_version,
                },
            ));
        }
        Transition::RollingBack { op, to, to_version } => {
            let from_version = app.version_id;
            app.version_id += 1;
            app.versions.insert(app.version_id, to);
            app.settings = to;
            app.rolled_back_from = Some(from_version);
            app.rolled_back_to = Some(to_version);
            app.updated = at;
            app.current_parallelism = to.parallelism;
            app.job.start(at, to.config());
            app.status = AppStatus::Running;
            app.finish_op(op, at, OperationStatus::Successful, None);
        }
        Transition::Autoscaling {
            from,
            to,
            failure,
            restore,
        } => {
            if !restore {
                app.job.clear_state();
            }
            app.current_parallelism = if failure { from } else { to };
            app.job.start(at, app.running_config());
            app.status = AppStatus::Running;
        }
    }
}

/// The service's own automatic scaling, exactly as AWS documents it (Managed Service for
/// Apache Flink developer guide, "Use automatic scaling in Managed Service for Apache
/// Flink"): the only signal is CPU. Scale up when `containerCPUUtilization` (Maximum) is at
/// or above 75 % for 15 consecutive one-minute datapoints: `CurrentParallelism` doubles,
/// `ParallelismPerKPU` unchanged, capped by the KPU quota. Scale down when it stays below
/// 10 % for six hours: parallelism halves (rounded up), never below the configured
/// `Parallelism`. While it scales the application is `AUTOSCALING`.
fn autoscale(app: &mut App, report: &PeriodReport, at: Timestamp, kpu_quota: u32) {
    if app.status != AppStatus::Running || !app.settings.auto_scaling_enabled || !report.job_reporting {
        app.cpu_high = 0;
        app.cpu_low = 0;
        return;
    }
    // The Maximum of the per-TaskManager samples: the busiest TaskManager.
    let cpu = report.cpu_utilization_max;
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
    let per_kpu = app.settings.parallelism_per_kpu;
    let target = if app.cpu_high >= AUTOSCALE_UP_MINUTES {
        (current * 2).min(kpu_quota * per_kpu).min(MAX_PARALLELISM)
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
    let to = AppConfig::new(target, per_kpu);
    let failure = !app.job.accepts_parallelism(target);
    // A failed restore costs the attempt and the way back.
    let duration = if failure {
        app.job.restart_time(from, from) * 2 - app.job.restore_time(from)
    } else {
        app.job.restart_time(from, to)
    };
    // The service snapshots the state as it scales (when snapshots are on); without one
    // the job restarts without it.
    let restore = app.take_snapshot(at);
    app.job.stop();
    app.status = AppStatus::Autoscaling;
    app.transition = Some((
        at + duration,
        Transition::Autoscaling {
            from: current,
            to: target,
            failure,
            restore,
        },
    ));
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

/// The job's tasks as Flink names them, with what each subtask did in the period: the
/// source (`Source: <stream>`), back-pressured when the keyed operator cannot keep up, and
/// the keyed operator chained with the sink, whose hottest subtask is the busiest.
///
/// NB: the model charges every record's work to the keyed operator; the source's own
/// (small) work is not modelled, so its busy time is 0 and its time is idle or
/// back-pressured.
fn task_figures(app: &App, r: &PeriodReport) -> Vec<TaskFigures> {
    let p = app.current_parallelism.max(1) as usize;
    let per_subtask = r.records_in_per_second / p as f64;
    let source = SubtaskFigures {
        busy_ms_per_second: 0.0,
        back_pressured_ms_per_second: r.back_pressured_time_ms_per_second,
        records_in_per_second: per_subtask,
        records_out_per_second: per_subtask,
    };
    let share = if r.hottest_share > 0.0 {
        r.hottest_share
    } else {
        1.0 / p as f64
    };
    let keyed = (0..p)
        .map(|i| {
            let records = if i == 0 {
                r.records_in_per_second * share
            } else {
                r.records_in_per_second * (1.0 - share) / (p - 1) as f64
            };
            SubtaskFigures {
                busy_ms_per_second: if i == 0 {
                    r.busy_time_ms_per_second
                } else {
                    r.busy_time_ms_per_second_rest
                },
                back_pressured_ms_per_second: 0.0,
                records_in_per_second: records,
                records_out_per_second: records,
            }
        })
        .collect();
    vec![
        TaskFigures {
            task: app.source.task_name(),
            operator: app.source.task_name(),
            subtasks: vec![source; p],
        },
        TaskFigures {
            task: "KeyedProcess -> Sink: Writer".into(),
            operator: "KeyedProcess".into(),
            subtasks: keyed,
        },
    ]
}

/// Publishes one period's metrics at `at` (the period's start), with AWS's names, units
/// and dimensions, as the metric catalogue says the application publishes them: the
/// application-level metrics of its runtime, its source's lag, and — at the TASK level and
/// finer — the per-task, per-operator or per-subtask metrics. Job metrics are absent for a
/// period in which the job never ran.
fn publish(store: &mut MetricStore, app: &App, at: Timestamp, r: &PeriodReport) {
    let ids = &app.metric_ids;
    let mut put = |name: &str, value: f64| {
        debug_assert!(
            catalogue::metric(name).is_some(),
            "{name} is missing from the catalogue"
        );
        // A metric the application does not publish (its runtime's or source's) has no id.
        if let (Some(id), Some(def)) = (ids.get(name), catalogue::metric(name)) {
            store.record(id, def.unit, at, value);
        }
    };
    if r.kpus > 0 {
        put("KPUs", f64::from(r.kpus));
    }
    if !r.job_reporting && r.downtime_ms == 0.0 {
        return;
    }
    put("downtime", r.downtime_ms);
    put("uptime", r.uptime_ms);
    put("fullRestarts", r.full_restarts_total);
    put("numRestarts", r.full_restarts_total);
    put("numberOfFailedCheckpoints", r.failed_checkpoints_total);
    if !r.job_reporting {
        return;
    }
    if let Some(d) = r.last_checkpoint_duration_ms {
        put("lastCheckpointDuration", d);
    }
    if let Some(s) = r.last_checkpoint_size_bytes {
        put("lastCheckpointSize", s);
    }
    // One sample per TaskManager per period, as Managed Flink publishes these: the busiest
    // first, then the others (so Maximum is the busiest and Average the mean).
    for tm in 0..r.task_managers.max(1) {
        let busiest = tm == 0;
        let pick = |hot: f64, rest: f64| if busiest { hot } else { rest };
        put(
            "cpuUtilization",
            pick(r.cpu_utilization_max, r.cpu_utilization_rest),
        );
        put(
            "containerCPUUtilization",
            pick(r.cpu_utilization_max, r.cpu_utilization_rest),
        );
        put(
            "heapMemoryUtilization",
            pick(r.heap_memory_utilization, r.heap_memory_utilization_rest),
        );
        put(
            "containerMemoryUtilization",
            pick(
                r.container_memory_utilization,
                r.container_memory_utilization_rest,
            ),
        );
    }
    put("millisBehindLatest", r.millis_behind_latest);
    put("records_lag_max", r.backlog);
    put("numRecordsInPerSecond", r.records_in_per_second);
    put("numRecordsOutPerSecond", r.records_in_per_second);
    if app.settings.monitoring.metrics_level > MetricsLevel::Application {
        for d in app.monitoring().tasks(&task_figures(app, r)) {
            store.record(
                &MetricId::new(NAMESPACE, d.name, &d.dimensions),
                d.unit,
                at,
                d.value,
            );
        }
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

    fn scenario(extra: &str) -> Scenario {
        let text = format!(
            "name: t\napplication: {{name: orders, parallelism: 4, maxParallelism: 16{extra}}}\nduration: 24h\n\
             load: {{phases: [{{shape: steady, rate: 10000}}]}}\nstate: {{keys: 10000000, bytesPerKey: 1Ki, newKeysPerRecord: 0, heapPerSubtask: 256Mi}}\n"
        );
        Scenario::from_yaml(&text, "<test>").unwrap()
    }

    fn fleet_with(extra: &str) -> Fleet {
        let mut fleet = Fleet::new(7, Timestamp::constant(1_767_571_200, 0));
        fleet.add_scenario(&scenario(extra), None).unwrap();
        fleet
    }

    fn minutes(fleet: &mut Fleet, n: i64) {
        fleet.advance_to(fleet.now() + jiff::SignedDuration::from_mins(n));
    }

    fn update(p: u32, version: i64) -> UpdateApplication {
        UpdateApplication {
            current_application_version_id: Some(version),
            parallelism: Some(ParallelismUpdate {
                configuration_type: Some(ConfigurationType::Custom),
                parallelism: Some(p),
                ..ParallelismUpdate::default()
            }),
            ..UpdateApplication::default()
        }
    }

    fn metric(fleet: &Fleet, name: &str, stat: &str) -> Vec<(Timestamp, f64)> {
        fleet.metric_data(&MetricQuery {
            namespace: NAMESPACE.into(),
            metric_name: name.into(),
            dimensions: vec![(DIMENSION.into(), "orders".into())],
            start: Timestamp::constant(1_767_571_200, 0),
            end: fleet.now(),
            period: PERIOD,
            stat: stat.into(),
        })
    }

    /// Each restart of a running application with snapshots on adds a snapshot (never
    /// deleted) and keeps the state; with them off the restart starts the job empty.
    #[test]
    fn snapshots_keep_the_state_across_a_restart_and_accumulate() {
        let size = |fleet: &Fleet| {
            metric(fleet, "lastCheckpointSize", "Maximum")
                .last()
                .map(|(_, v)| *v)
                .unwrap()
        };
        for enabled in [true, false] {
            let extra = if enabled { "" } else { ", snapshotsEnabled: false" };
            let mut fleet = fleet_with(extra);
            minutes(&mut fleet, 10);
            let view = fleet.describe_application("orders").unwrap();
            assert_eq!(view.snapshots_enabled, enabled);
            assert_eq!(view.restore, RestoreConfig::latest());
            let before = size(&fleet);
            fleet.update_application("orders", update(8, 1)).unwrap();
            minutes(&mut fleet, 40);
            let after = size(&fleet);
            let snapshots = fleet.list_snapshots("orders").unwrap();
            if enabled {
                assert_eq!(snapshots.len(), 1);
                assert_eq!(snapshots[0].version_id, 1, "taken as version 1 stopped");
                assert!(after > before * 0.9, "state kept: {before} -> {after}");
            } else {
                assert!(snapshots.is_empty());
                assert!(after < before * 0.1, "state lost: {before} -> {after}");
            }
        }
        // Turned off by an update (a versioned setting); on again by another.
        let mut fleet = fleet_with("");
        let off = UpdateApplication {
            current_application_version_id: Some(1),
            snapshots_enabled: Some(false),
            ..UpdateApplication::default()
        };
        let (view, _) = fleet.update_application("orders", off).unwrap();
        assert!(!view.snapshots_enabled);
        // A named snapshot that does not exist is refused; a skip is kept as configured.
        let missing = UpdateApplication {
            current_application_version_id: Some(2),
            restore: Some(RestoreConfig {
                application_restore_type: RestoreType::RestoreFromCustomSnapshot,
                snapshot_name: Some("nope".into()),
            }),
            ..UpdateApplication::default()
        };
        assert!(matches!(
            fleet.update_application("orders", missing),
            Err(ServiceError::ResourceNotFound(_))
        ));
    }

    #[test]
    fn update_restarts_for_a_while_then_runs_the_new_version() {
        let mut fleet = fleet_with("");
        minutes(&mut fleet, 5);
        let (view, op) = fleet.update_application("orders", update(8, 1)).unwrap();
        assert_eq!(view.status, AppStatus::Updating);
        assert_eq!(view.version_id, 2);
        assert_eq!(view.parallelism.parallelism, 8);
        assert_eq!(
            view.parallelism.current_parallelism, 4,
            "still the old job until the restart ends"
        );
        assert_eq!(
            fleet.describe_operation("orders", &op).unwrap().status,
            OperationStatus::InProgress
        );
        // Busy: a second update is refused, a stale version is a concurrent modification.
        assert!(matches!(
            fleet.update_application("orders", update(6, 2)),
            Err(ServiceError::ResourceInUse(_))
        ));
        assert!(matches!(
            fleet.update_application("orders", update(6, 1)),
            Err(ServiceError::ConcurrentModification(_))
        ));
        minutes(&mut fleet, 5);
        assert_eq!(
            fleet.describe_application("orders").unwrap().status,
            AppStatus::Updating,
            "restarts take minutes"
        );
        minutes(&mut fleet, 20);
        let view = fleet.describe_application("orders").unwrap();
        assert_eq!(view.status, AppStatus::Running);
        assert_eq!(view.running_config(), AppConfig::new(8, 1));
        let done = fleet.describe_operation("orders", &op).unwrap();
        assert_eq!(done.status, OperationStatus::Successful);
        let took = done.end_time.unwrap().duration_since(done.start_time);
        assert!(
            took >= jiff::SignedDuration::from_mins(7),
            "restart took {took:?}"
        );
        assert_eq!(metric(&fleet, "KPUs", "Maximum").last().unwrap().1, 8.0);
        // No job metrics while the job was down; the conditional token changed.
        let cpu = metric(&fleet, "cpuUtilization", "Maximum");
        assert!(cpu.len() < 28, "gap while UPDATING: {} datapoints", cpu.len());
        assert_ne!(
            view.conditional_token,
            fleet_with("")
                .describe_application("orders")
                .unwrap()
                .conditional_token
        );
    }

    #[test]
    fn parallelism_above_max_parallelism_fails_and_rolls_back() {
        let mut fleet = fleet_with("");
        let (_, op) = fleet.update_application("orders", update(32, 1)).unwrap();
        minutes(&mut fleet, 60);
        let failed = fleet.describe_operation("orders", &op).unwrap();
        assert_eq!(failed.status, OperationStatus::Failed);
        assert!(
            failed.failure.as_deref().unwrap().contains("maxParallelism 16"),
            "{failed:?}"
        );
        let rollback = fleet
            .describe_operation("orders", failed.rollback_operation_id.as_deref().unwrap())
            .unwrap();
        assert_eq!(rollback.operation, "RollbackApplication");
        assert_eq!(rollback.status, OperationStatus::Successful);
        let view = fleet.describe_application("orders").unwrap();
        assert_eq!(view.status, AppStatus::Running);
        assert_eq!(view.running_config(), AppConfig::new(4, 1));
        assert_eq!(view.parallelism.parallelism, 4);
        assert_eq!(
            (
                view.version_id,
                view.version_rolled_back_from,
                view.version_rolled_back_to
            ),
            (3, Some(2), Some(1))
        );
        assert_eq!(fleet.list_operations("orders").unwrap().len(), 2);
    }

    #[test]
    fn requests_outside_the_api_limits_are_refused() {
        let mut fleet = fleet_with("");
        let per_kpu = |n| UpdateApplication {
            current_application_version_id: Some(1),
            parallelism: Some(ParallelismUpdate {
                configuration_type: Some(ConfigurationType::Custom),
                parallelism_per_kpu: Some(n),
                ..ParallelismUpdate::default()
            }),
            ..UpdateApplication::default()
        };
        assert!(matches!(
            fleet.update_application("orders", per_kpu(9)),
            Err(ServiceError::InvalidArgument(_))
        ));
        fleet.set_kpu_quota(3);
        assert!(matches!(
            fleet.update_application("orders", update(6, 1)),
            Err(ServiceError::LimitExceeded(_))
        ));
        let default_with_value = UpdateApplication {
            conditional_token: Some(fleet.describe_application("orders").unwrap().conditional_token),
            parallelism: Some(ParallelismUpdate {
                configuration_type: Some(ConfigurationType::Default),
                parallelism: Some(2),
                ..ParallelismUpdate::default()
            }),
            ..UpdateApplication::default()
        };
        assert!(matches!(
            fleet.update_application("orders", default_with_value),
            Err(ServiceError::InvalidArgument(_))
        ));
        assert!(matches!(
            fleet.update_application("orders", UpdateApplication::default()),
            Err(ServiceError::InvalidArgument(_))
        ));
        assert!(matches!(
            fleet.update_application("nope", update(2, 1)),
            Err(ServiceError::ResourceNotFound(_))
        ));
        assert!(matches!(
            fleet.describe_operation("orders", "x"),
            Err(ServiceError::ResourceNotFound(_))
        ));
        assert_eq!(
            fleet.describe_application("orders").unwrap().version_id,
            1,
            "nothing changed"
        );
    }

    #[test]
    fn builtin_autoscaling_doubles_after_fifteen_minutes_of_high_cpu() {
        // 10,000 records/s at 200 µs each need ~2.2 vCPU: 2 KPUs run hot.
        let mut fleet = Fleet::new(7, Timestamp::constant(1_767_571_200, 0));
        let mut s = scenario(", autoScalingEnabled: true");
        s.application.parallelism = 2;
        fleet.add_scenario(&s, None).unwrap();
        minutes(&mut fleet, 14);
        assert_eq!(
            fleet.describe_application("orders").unwrap().status,
            AppStatus::Running
        );
        assert!(
            metric(&fleet, "containerCPUUtilization", "Maximum")
                .iter()
                .all(|(_, v)| *v >= 75.0)
        );
        minutes(&mut fleet, 1);
        let view = fleet.describe_application("orders").unwrap();
        assert_eq!(view.status, AppStatus::Autoscaling, "after the 15th datapoint");
        assert!(matches!(
            fleet.update_application("orders", update(3, 1)),
            Err(ServiceError::ResourceInUse(_))
        ));
        assert!(matches!(
            fleet.stop_application("orders", false),
            Err(ServiceError::ResourceInUse(_))
        ));
        minutes(&mut fleet, 30);
        let view = fleet.describe_application("orders").unwrap();
        assert_eq!(view.status, AppStatus::Running);
        assert_eq!(view.parallelism.current_parallelism, 4, "doubled");
        assert_eq!(
            view.parallelism.parallelism, 2,
            "the configured floor is unchanged"
        );
        assert_eq!(view.version_id, 1, "autoscaling is not a new version");
        assert_eq!(metric(&fleet, "KPUs", "Maximum").last().unwrap().1, 4.0);
        // Force stop is allowed while autoscaling; a graceful stop from RUNNING works too.
        fleet.stop_application("orders", false).unwrap();
        assert_eq!(
            fleet.describe_application("orders").unwrap().status,
            AppStatus::Stopping
        );
        minutes(&mut fleet, 10);
        assert_eq!(
            fleet.describe_application("orders").unwrap().status,
            AppStatus::Ready
        );
    }

    #[test]
    fn builtin_autoscaling_respects_the_kpu_quota() {
        let mut fleet = Fleet::new(7, Timestamp::constant(1_767_571_200, 0));
        fleet.set_kpu_quota(3);
        let mut s = scenario(", autoScalingEnabled: true");
        s.application.parallelism = 2;
        fleet.add_scenario(&s, None).unwrap();
        minutes(&mut fleet, 60);
        assert_eq!(
            fleet
                .describe_application("orders")
                .unwrap()
                .parallelism
                .current_parallelism,
            3
        );
    }

    #[test]
    fn lifecycle_create_start_stop_and_rollback() {
        let mut fleet = Fleet::new(1, Timestamp::constant(1_767_571_200, 0));
        let view = fleet
            .create_application(CreateApplication {
                name: "app".into(),
                service_execution_role: "arn:aws:iam::123456789012:role/r".into(),
                tags: vec![("team".into(), "data".into())],
                ..CreateApplication::default()
            })
            .unwrap();
        assert_eq!(view.status, AppStatus::Ready);
        assert_eq!(
            view.arn,
            "arn:aws:kinesisanalytics:us-east-1:123456789012:application/app"
        );
        assert_eq!(view.parallelism.configuration_type, ConfigurationType::Default);
        assert!(view.parallelism.auto_scaling_enabled);
        assert!(matches!(
            fleet.create_application(CreateApplication {
                name: "app".into(),
                service_execution_role: "r".into(),
                ..CreateApplication::default()
            }),
            Err(ServiceError::ResourceInUse(_))
        ));
        // Updating a READY application applies at once.
        let (view, op) = fleet.update_application("app", update(2, 1)).unwrap();
        assert_eq!(
            (view.status, view.parallelism.current_parallelism),
            (AppStatus::Ready, 2)
        );
        assert_eq!(
            fleet.describe_operation("app", &op).unwrap().status,
            OperationStatus::Successful
        );
        let start = fleet.start_application("app").unwrap();
        assert!(matches!(
            fleet.start_application("app"),
            Err(ServiceError::ResourceInUse(_))
        ));
        minutes(&mut fleet, 10);
        assert_eq!(
            fleet.describe_application("app").unwrap().status,
            AppStatus::Running
        );
        assert_eq!(
            fleet.describe_operation("app", &start).unwrap().status,
            OperationStatus::Successful
        );
        // Roll back to version 1 (parallelism 1).
        let (view, _) = fleet.rollback_application("app", 2).unwrap();
        assert_eq!(view.status, AppStatus::RollingBack);
        minutes(&mut fleet, 20);
        let view = fleet.describe_application("app").unwrap();
        assert_eq!(
            (view.status, view.version_id, view.running_config()),
            (AppStatus::Running, 3, AppConfig::new(1, 1))
        );
        fleet.stop_application("app", true).unwrap();
        assert_eq!(
            fleet.describe_application("app").unwrap().status,
            AppStatus::ForceStopping
        );
        minutes(&mut fleet, 1);
        assert_eq!(
            fleet.describe_application("app").unwrap().status,
            AppStatus::Ready
        );
        assert!(matches!(
            fleet.stop_application("app", true),
            Err(ServiceError::ResourceInUse(_))
        ));
    }

    #[test]
    fn tags() {
        let mut fleet = fleet_with("");
        let arn = fleet.describe_application("orders").unwrap().arn;
        fleet
            .tag_resource(&arn, vec![("a".into(), "1".into()), ("b".into(), "2".into())])
            .unwrap();
        fleet.tag_resource(&arn, vec![("a".into(), "3".into())]).unwrap();
        assert_eq!(
            fleet.list_tags(&arn).unwrap(),
            vec![("a".into(), "3".into()), ("b".into(), "2".into())]
        );
        fleet.untag_resource(&arn, &["a".into()]).unwrap();
        assert_eq!(fleet.list_tags(&arn).unwrap(), vec![("b".into(), "2".into())]);
        assert!(matches!(
            fleet.tag_resource(&arn, vec![("aws:x".into(), "1".into())]),
            Err(ServiceError::InvalidArgument(_))
        ));
        let many = (0..50).map(|i| (format!("k{i}"), String::new())).collect();
        assert!(matches!(
            fleet.tag_resource(&arn, many),
            Err(ServiceError::TooManyTags(_))
        ));
        assert!(matches!(
            fleet.list_tags("arn:aws:kinesisanalytics:x"),
            Err(ServiceError::ResourceNotFound(_))
        ));
    }

    #[test]
    fn publishes_aws_metric_names_and_units() {
        let mut fleet = fleet_with("");
        minutes(&mut fleet, 5);
        let names: Vec<String> = fleet
            .list_metrics(Some(NAMESPACE), None, &[(DIMENSION.into(), "orders".into())])
            .into_iter()
            .map(|m| m.metric_name)
            .collect();
        for name in [
            "lastCheckpointDuration",
            "lastCheckpointSize",
            "numberOfFailedCheckpoints",
            "cpuUtilization",
            "heapMemoryUtilization",
            "containerMemoryUtilization",
            "KPUs",
            "fullRestarts",
            "downtime",
            "uptime",
            "numRecordsInPerSecond",
        ] {
            assert!(names.iter().any(|n| n == name), "{name} missing from {names:?}");
        }
        // At the default APPLICATION level: no task metrics with the Application dimension
        // alone, the lag per source stream, no Flink 2.2 metric on Flink 1.20.
        for name in [
            "busyTimeMsPerSecond",
            "backPressuredTimeMsPerSecond",
            "idleTimeMsPerSecond",
            "millisBehindLatest",
            "numRestarts",
            "records_lag_max",
        ] {
            let application_only = fleet
                .list_metrics(Some(NAMESPACE), Some(name), &[])
                .into_iter()
                .any(|m| m.dimensions == [(DIMENSION.to_string(), "orders".to_string())]);
            assert!(
                !application_only,
                "{name} published with the Application dimension alone"
            );
        }
        let lag = fleet.list_metrics(Some(NAMESPACE), Some("millisBehindLatest"), &[]);
        assert_eq!(lag.len(), 1);
        assert_eq!(
            lag[0].dimensions,
            vec![
                ("Application".to_string(), "orders".to_string()),
                ("Flow".into(), "Input".into()),
                ("Id".into(), "orders-input".into())
            ]
        );
        assert!(
            fleet
                .list_metrics(Some(NAMESPACE), Some("busyTimeMsPerSecond"), &[])
                .is_empty()
        );
        let id = MetricId::new(
            NAMESPACE,
            "lastCheckpointDuration",
            &[(DIMENSION.into(), "orders".into())],
        );
        assert_eq!(fleet.metric_unit(&id), Some("Milliseconds"));
        assert_eq!(metric(&fleet, "numRecordsInPerSecond", "SampleCount").len(), 5);
        assert!(fleet.put_metric_data("AWS/KinesisAnalytics", vec![]).is_err());
        fleet
            .put_metric_data(
                "Custom",
                vec![PutDatum {
                    metric_name: "x".into(),
                    value: Some(1.0),
                    ..PutDatum::default()
                }],
            )
            .unwrap();
        assert_eq!(fleet.list_metrics(Some("Custom"), None, &[]).len(), 1);
    }

    #[test]
    fn per_task_manager_metrics_one_sample_each_busiest_is_the_maximum() {
        let mut fleet = Fleet::new(7, Timestamp::constant(1_767_571_200, 0));
        let mut s = scenario("");
        s.skew.hot_key_share = 0.2;
        fleet.add_scenario(&s, None).unwrap();
        minutes(&mut fleet, 3);
        assert_eq!(
            metric(&fleet, "cpuUtilization", "SampleCount"),
            metric(&fleet, "KPUs", "Maximum")
        );
        let max = metric(&fleet, "cpuUtilization", "Maximum");
        let avg = metric(&fleet, "cpuUtilization", "Average");
        for (m, a) in max.iter().zip(&avg) {
            assert!(
                m.1 > a.1 + 10.0,
                "the hot key's TaskManager is busier: max {} vs average {}",
                m.1,
                a.1
            );
        }
        assert_eq!(metric(&fleet, "heapMemoryUtilization", "SampleCount")[0].1, 4.0);
    }

    fn names_with(fleet: &Fleet, dims: &[&str]) -> Vec<String> {
        fleet
            .list_metrics(Some(NAMESPACE), None, &[])
            .into_iter()
            .filter(|m| {
                m.dimensions
                    .iter()
                    .map(|(k, _)| k.as_str())
                    .eq(dims.iter().copied())
            })
            .map(|m| m.metric_name)
            .collect()
    }

    #[test]
    fn task_level_publishes_busy_and_back_pressure_per_task() {
        let mut fleet = fleet_with(", metricsLevel: TASK");
        minutes(&mut fleet, 3);
        let view = fleet.describe_application("orders").unwrap();
        assert_eq!(view.monitoring.metrics_level, MetricsLevel::Task);
        assert_eq!(view.monitoring.configuration_type, ConfigurationType::Custom);
        let per_task = names_with(&fleet, &["Application", "Task"]);
        for name in [
            "busyTimeMsPerSecond",
            "backPressuredTimeMsPerSecond",
            "idleTimeMsPerSecond",
            "numRecordsInPerSecond",
        ] {
            assert!(
                per_task.iter().any(|n| n == name),
                "{name} missing from {per_task:?}"
            );
        }
        assert!(names_with(&fleet, &["Application", "Operator", "Task"]).is_empty());
        // The keyed task's busiest subtask is the Maximum; one sample per subtask.
        let busy = |stat: &str| {
            fleet.metric_data(&MetricQuery {
                namespace: NAMESPACE.into(),
                metric_name: "busyTimeMsPerSecond".into(),
                dimensions: vec![
                    ("Application".into(), "orders".into()),
                    ("Task".into(), "KeyedProcess -> Sink: Writer".into()),
                ],
                start: Timestamp::constant(1_767_571_200, 0),
                end: fleet.now(),
                period: PERIOD,
                stat: stat.into(),
            })
        };
        assert_eq!(busy("SampleCount")[0].1, 4.0);
        let report = fleet.last_period("orders").unwrap().clone();
        assert_eq!(busy("Maximum").last().unwrap().1, report.busy_time_ms_per_second);
        // The largest over the tasks of each task's Maximum is what the model measured for
        // the job: the busiest subtask's busy time, the sources' back-pressure.
        let largest = |metric: &str| {
            fleet
                .list_metrics(
                    Some(NAMESPACE),
                    Some(metric),
                    &[(DIMENSION.into(), "orders".into())],
                )
                .into_iter()
                .filter_map(|id| {
                    fleet
                        .metric_data(&MetricQuery {
                            namespace: NAMESPACE.into(),
                            metric_name: metric.into(),
                            dimensions: id.dimensions,
                            start: fleet.now() - PERIOD,
                            end: fleet.now(),
                            period: PERIOD,
                            stat: "Maximum".into(),
                        })
                        .last()
                        .map(|p| p.1)
                })
                .fold(f64::NEG_INFINITY, f64::max)
        };
        assert_eq!(largest("busyTimeMsPerSecond"), report.busy_time_ms_per_second);
        assert_eq!(
            largest("backPressuredTimeMsPerSecond"),
            report.back_pressured_time_ms_per_second
        );
        // Still nothing with the Application dimension alone.
        assert!(
            !names_with(&fleet, &["Application"])
                .iter()
                .any(|n| n == "busyTimeMsPerSecond")
        );
    }

    #[test]
    fn parallelism_level_publishes_one_series_per_subtask() {
        let mut fleet = fleet_with(", metricsLevel: PARALLELISM");
        minutes(&mut fleet, 2);
        let busy: Vec<_> = fleet
            .list_metrics(Some(NAMESPACE), Some("busyTimeMsPerSecond"), &[])
            .into_iter()
            .filter(|m| m.dimensions.iter().any(|(k, _)| k == "Subtask"))
            .collect();
        // Two tasks of four subtasks each.
        assert_eq!(busy.len(), 8);
        assert!(!names_with(&fleet, &["Application", "Operator", "Task"]).is_empty());
    }

    #[test]
    fn flink_2_2_publishes_num_restarts_not_full_restarts() {
        let mut fleet = fleet_with(", runtimeEnvironment: FLINK-2_2");
        minutes(&mut fleet, 2);
        let app_level = names_with(&fleet, &["Application"]);
        assert!(app_level.iter().any(|n| n == "numRestarts"), "{app_level:?}");
        assert!(!app_level.iter().any(|n| n == "fullRestarts"), "{app_level:?}");
        assert_eq!(fleet.describe_application("orders").unwrap().runtime, "FLINK-2_2");
    }

    #[test]
    fn a_kafka_source_has_records_lag_max_and_no_millis_behind_latest() {
        let mut fleet = fleet_with(", source: {kafkaTopic: orders}");
        minutes(&mut fleet, 2);
        let app_level = names_with(&fleet, &["Application"]);
        assert!(app_level.iter().any(|n| n == "records_lag_max"), "{app_level:?}");
        assert!(
            fleet
                .list_metrics(Some(NAMESPACE), Some("millisBehindLatest"), &[])
                .is_empty()
        );
    }

    #[test]
    fn monitoring_configuration_is_created_updated_and_honoured_only_when_custom() {
        let mut fleet = Fleet::new(7, Timestamp::constant(1_767_571_200, 0));
        let created = fleet
            .create_application(CreateApplication {
                name: "m".into(),
                service_execution_role: "arn:aws:iam::123456789012:role/r".into(),
                // DEFAULT: the level is not honoured.
                monitoring: Some(MonitoringUpdate {
                    configuration_type: Some(ConfigurationType::Default),
                    metrics_level: Some(MetricsLevel::Task),
                    log_level: None,
                }),
                snapshots_enabled: Some(false),
                ..CreateApplication::default()
            })
            .unwrap();
        assert_eq!(created.monitoring, MonitoringView::DEFAULT);
        assert!(!created.snapshots_enabled);
        let (view, _) = fleet
            .update_application(
                "m",
                UpdateApplication {
                    current_application_version_id: Some(1),
                    monitoring: Some(MonitoringUpdate {
                        configuration_type: Some(ConfigurationType::Custom),
                        metrics_level: Some(MetricsLevel::Operator),
                        log_level: Some(LogLevel::Warn),
                    }),
                    snapshots_enabled: Some(true),
                    ..UpdateApplication::default()
                },
            )
            .unwrap();
        assert_eq!(
            view.monitoring,
            MonitoringView {
                configuration_type: ConfigurationType::Custom,
                metrics_level: MetricsLevel::Operator,
                log_level: LogLevel::Warn,
            }
        );
        assert!(view.snapshots_enabled);
        // A parallelism update keeps the monitoring configuration.
        let (view, _) = fleet.update_application("m", update(2, 2)).unwrap();
        assert_eq!(view.monitoring.metrics_level, MetricsLevel::Operator);
        // An unknown runtime is refused.
        let bad = fleet.create_application(CreateApplication {
            name: "r".into(),
            runtime: Some("FLINK-0_1".into()),
            service_execution_role: "arn:aws:iam::123456789012:role/r".into(),
            ..CreateApplication::default()
        });
        assert!(matches!(bad, Err(ServiceError::InvalidArgument(m)) if m.contains("FLINK-2_2")));
    }

    #[test]
    fn same_seed_same_fleet() {
        let run = || {
            let mut fleet = fleet_with(", parallelismPerKpu: 2");
            minutes(&mut fleet, 30);
            let (_, _) = fleet.update_application("orders", update(6, 1)).unwrap();
            minutes(&mut fleet, 60);
            (
                metric(&fleet, "lastCheckpointDuration", "Maximum"),
                fleet.describe_application("orders").unwrap(),
            )
        };
        assert_eq!(run(), run());
    }
}
