//! The AWS adapters: two small traits in our own types, and their implementations over the AWS
//! SDK for Rust.
//!
//! - [`ApplicationControl`]: `DescribeApplication`, `ListTagsForResource`,
//!   `UpdateApplication`, `DescribeApplicationOperation` of Managed Service for Apache Flink
//!   (`kinesisanalyticsv2`), and the controller's own AWS account (STS `GetCallerIdentity`,
//!   once, or `--aws-account-id`).
//!   `UpdateApplication`, `DescribeApplicationOperation`, `ListApplicationOperations` and
//!   `ListApplicationSnapshots` of Managed Service for Apache Flink (`kinesisanalyticsv2`).
//! - [`MetricsSource`]: the per-period [`Sample`]s of one application from CloudWatch
//!   `GetMetricData`.
//!
//! No SDK type crosses this boundary, so the controller, `demo`, `recommend` and the tests
//! can swap in a fake. The traits use `#[async_trait]` (boxed futures) because native
//! `async fn` in traits is not object safe and the controller keeps them as
//! `Arc<dyn ApplicationControl>` / `Arc<dyn MetricsSource>` in its `Context`.
//!
//! Building the real ones:
//!
//! ```no_run
//! # async fn build() -> Result<(), checkpoint_autoscaler_aws::AwsError> {
//! use std::sync::Arc;
//! use checkpoint_autoscaler_aws::{AwsClients, AwsSettings, BatchConfig, BatchedMetrics, KinesisControl};
//!
//! let clients = Arc::new(AwsClients::from_env(AwsSettings::default()).await?);
//! let control = KinesisControl::new(clients.clone());
//! // Must be called inside a tokio runtime: it spawns the batching task.
//! let metrics = BatchedMetrics::spawn(clients.clone(), BatchConfig::default());
//! // Or, as a trait object, batched or not:
//! let metrics: Arc<dyn checkpoint_autoscaler_aws::MetricsSource> =
//!     checkpoint_autoscaler_aws::metrics_source(clients.clone(), Default::default());
//! let counters = clients.stats().snapshot();
//! # Ok(()) }
//! ```

use std::{fmt, sync::Arc, time::Duration};

use async_trait::async_trait;
use jiff::Timestamp;

use checkpoint_autoscaler_api::crd;
use checkpoint_autoscaler_policy as policy;

use crate::policy::{AppConfig, AppStatus, HourlyRate, Outcome, Sample};

mod batch;
pub mod catalogue;
mod clients;
pub mod cloudwatch;
mod error;
pub mod history;
mod identity;
mod kinesis;
mod observe;
pub mod signals;
mod stats;

pub use batch::{BatchConfig, BatchedMetrics};
pub use clients::{AwsClients, AwsSettings, DEFAULT_REGION};
pub use cloudwatch::{CloudWatchMetrics, MAX_QUERIES_PER_CALL, METRIC_NAMESPACE, METRICS, MetricSpec};
pub use error::AwsError;
pub use identity::{PARTITIONS, is_account_id, partition_of};
pub use kinesis::KinesisControl;
pub use observe::{observe, observe_application};
pub use signals::{MetricsLevel, SignalPlan, SignalsReport};
pub use stats::{AwsOperation, CallStats, CallStatsSnapshot};

/// How the real [`MetricsSource`] reads CloudWatch.
#[derive(Clone, Debug)]
pub enum MetricsMode {
    /// Coalesce concurrent requests into `GetMetricData` calls of up to 500 queries.
    Batched(BatchConfig),
    /// One `GetMetricData` call (plus pages) per request: the baseline the batching is
    /// measured against, and the simplest path for one-shot use.
    Direct,
}

impl Default for MetricsMode {
    fn default() -> Self {
        MetricsMode::Batched(BatchConfig::default())
    }
}

/// The SDK [`MetricsSource`] in `mode`, counting into `clients`' stats. The batched one
/// spawns its task: call it inside a tokio runtime.
pub fn metrics_source(clients: Arc<AwsClients>, mode: MetricsMode) -> Arc<dyn MetricsSource> {
    match mode {
        MetricsMode::Batched(config) => Arc::new(BatchedMetrics::spawn(clients, config)),
        MetricsMode::Direct => Arc::new(CloudWatchMetrics::new(clients)),
    }
}

/// Whose credentials and which region an AWS call uses: the controller's own identity in
/// `region`, or the role `role_arn` assumed through STS.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Target {
    /// The AWS region of the application.
    pub region: String,
    /// A role to assume (the budget's `spec.application.roleArn`), if any.
    pub role_arn: Option<String>,
}

impl Target {
    /// The controller's own credentials in `region`.
    pub fn new(region: impl Into<String>) -> Self {
        Self {
            region: region.into(),
            role_arn: None,
        }
    }

    /// The role `role_arn`, assumed through STS, in `region`.
    pub fn with_role(region: impl Into<String>, role_arn: impl Into<String>) -> Self {
        Self {
            region: region.into(),
            role_arn: Some(role_arn.into()),
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.role_arn {
            Some(role) => write!(f, "{} as {}", self.region, role),
            None => write!(f, "{}", self.region),
        }
    }
}

/// What `DescribeApplication` says about an application, in our terms.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApplicationDescription {
    /// `ApplicationName`.
    pub name: String,
    /// `ApplicationARN` (the resource for `ListTagsForResource`).
    pub arn: String,
    /// `ApplicationStatus`.
    pub status: AppStatus,
    /// `ApplicationVersionId`: sent back as `CurrentApplicationVersionId` so that AWS refuses
    /// an update racing a concurrent change instead of overwriting it.
    pub version_id: i64,
    /// The running configuration: `CurrentParallelism` (falling back to `Parallelism` when
    /// the service does not report it) and `ParallelismPerKPU`.
    pub config: AppConfig,
    /// The configured `Parallelism`: the floor of the service's own autoscaling, and what
    /// the application starts with.
    pub configured_parallelism: u32,
    /// `ConfigurationType`: `CUSTOM` or `DEFAULT`.
    pub configuration_type: String,
    /// `AutoScalingEnabled`: the service's own CPU-based scaling.
    pub service_autoscaling: bool,
    /// `ConditionalToken`, when the service returns one.
    pub conditional_token: Option<String>,
    /// `CreateTimestamp`: with the ARN, it tells an application from another of the same
    /// name created after the first was deleted (the ARN alone is the same).
    pub created: Option<Timestamp>,
    /// `ApplicationSnapshotConfigurationDescription.SnapshotsEnabled`: whether the service
    /// snapshots the state when the application stops, updates or scales (`None`: not
    /// reported). Without snapshots a restart loses the state.
    pub snapshots_enabled: Option<bool>,
    /// `RunConfigurationDescription.ApplicationRestoreConfigurationDescription`: how the
    /// application restores its state when it restarts (`None`: not reported, the
    /// service's default of the latest snapshot).
    pub restore: Option<Restore>,
    /// `FlinkApplicationConfigurationDescription.MonitoringConfigurationDescription.MetricsLevel`
    /// (`APPLICATION`, `TASK`, `OPERATOR`, `PARALLELISM`; `None`: not reported). Decides
    /// which metrics exist (see [`signals`]).
    pub metrics_level: Option<String>,
    /// `RuntimeEnvironment` (`FLINK-1_20`, `FLINK-2_2`, ...): decides the restart metric.
    pub runtime: Option<String>,
}

/// How an application restores its state when it restarts (`ApplicationRestoreType`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Restore {
    /// `RESTORE_FROM_LATEST_SNAPSHOT`: the snapshot taken as it stopped.
    Latest,
    /// `RESTORE_FROM_CUSTOM_SNAPSHOT` with `SnapshotName`: that snapshot, however old.
    Custom(String),
    /// `SKIP_RESTORE_FROM_SNAPSHOT`: no state at all.
    Skip,
}

impl Restore {
    /// The name AWS uses.
    pub fn as_str(&self) -> &'static str {
        match self {
            Restore::Latest => "RESTORE_FROM_LATEST_SNAPSHOT",
            Restore::Custom(_) => "RESTORE_FROM_CUSTOM_SNAPSHOT",
            Restore::Skip => "SKIP_RESTORE_FROM_SNAPSHOT",
        }
    }
}

impl fmt::Display for Restore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Restore::Custom(name) => write!(f, "{} {name}", self.as_str()),
            _ => f.write_str(self.as_str()),
        }
    }
}

/// An `UpdateApplication` of the parallelism configuration.
///
/// The implementation always sends `ConfigurationTypeUpdate = CUSTOM` (the service ignores
/// the parallelism fields otherwise), and the restore configuration given: the
/// application's own, so the update changes nothing of how it restores.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UpdateRequest {
    /// The application.
    pub name: String,
    /// The `ApplicationVersionId` the decision was made on (`CurrentApplicationVersionId`).
    pub current_version_id: i64,
    /// The new `Parallelism` and `ParallelismPerKPU`.
    pub to: AppConfig,
    /// `AutoScalingEnabledUpdate`: whether the service's own scaling stays on.
    pub service_autoscaling: bool,
    /// `RunConfigurationUpdate.ApplicationRestoreConfiguration`.
    pub restore: Restore,
}

/// The state of an application operation (`DescribeApplicationOperation`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OperationState {
    /// `IN_PROGRESS`.
    InProgress,
    /// `SUCCESSFUL`.
    Successful,
    /// `FAILED` (the service rolls the application back).
    Failed,
    /// `CANCELLED`.
    Cancelled,
}

impl OperationState {
    /// Whether the operation has finished, one way or the other.
    pub fn is_terminal(&self) -> bool {
        !matches!(self, OperationState::InProgress)
    }

    /// The policy's view: a cancelled operation did not produce the asked-for configuration,
    /// so it counts as failed.
    pub fn outcome(&self) -> Outcome {
        match self {
            OperationState::InProgress => Outcome::InProgress,
            OperationState::Successful => Outcome::Succeeded,
            OperationState::Failed | OperationState::Cancelled => Outcome::Failed,
        }
    }

    /// The name AWS uses.
    pub fn as_str(&self) -> &'static str {
        match self {
            OperationState::InProgress => "IN_PROGRESS",
            OperationState::Successful => "SUCCESSFUL",
            OperationState::Failed => "FAILED",
            OperationState::Cancelled => "CANCELLED",
        }
    }
}

impl fmt::Display for OperationState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What `DescribeApplicationOperation` says about one operation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OperationStatus {
    /// `OperationId`.
    pub operation_id: String,
    /// `Operation`: `UpdateApplication`, `StartApplication`, `RollbackApplication`, ...
    pub operation: Option<String>,
    /// `ApplicationVersionChangeDetails`: the versions it moved the application from and to.
    pub version_change: Option<(i64, i64)>,
    /// `OperationStatus`.
    pub status: OperationState,
    /// `StartTime`.
    pub started: Option<Timestamp>,
    /// `EndTime`.
    pub ended: Option<Timestamp>,
    /// `OperationFailureDetails`, in words (the error string AWS gives), when it failed.
    pub failure: Option<String>,
}

/// One operation as `ListApplicationOperations` lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OperationSummary {
    /// `OperationId`.
    pub operation_id: String,
    /// `Operation`: `UpdateApplication`, `StartApplication`, `StopApplication`,
    /// `RollbackApplication`, or a system operation.
    pub operation: String,
    /// `OperationStatus`.
    pub status: OperationState,
    /// `StartTime`.
    pub started: Option<Timestamp>,
    /// `EndTime` (a finished operation's).
    pub ended: Option<Timestamp>,
}

/// Most operations [`ApplicationControl::list_operations`] reads: four pages of 50 (the
/// API's largest page). NB: the service keeps a bounded record; an application with more
/// operations than this is judged on the newest of those read.
pub const MAX_OPERATIONS_LISTED: usize = 200;

/// What `ListApplicationSnapshots` says about an application's snapshots.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SnapshotCount {
    /// Snapshots counted.
    pub count: u32,
    /// Whether every snapshot was counted (false: there are more than `count`, the limit
    /// asked for).
    pub complete: bool,
}

/// Managed Service for Apache Flink application control.
#[async_trait]
pub trait ApplicationControl: Send + Sync {
    /// `DescribeApplication`.
    async fn describe(&self, target: &Target, name: &str) -> Result<ApplicationDescription, AwsError>;

    /// `ListTagsForResource` on the application's ARN (for the tag tenancy policy).
    async fn list_tags(&self, target: &Target, arn: &str) -> Result<Vec<(String, String)>, AwsError>;

    /// `UpdateApplication`; returns the `OperationId` to follow.
    async fn update(&self, target: &Target, request: &UpdateRequest) -> Result<String, AwsError>;

    /// `DescribeApplicationOperation`.
    async fn describe_operation(
        &self,
        target: &Target,
        name: &str,
        operation_id: &str,
    ) -> Result<OperationStatus, AwsError>;

    /// The AWS account of the controller's own credentials (the account of budgets that
    /// name no role): `--aws-account-id` when given, else STS `GetCallerIdentity`, called
    /// once (with the clients' timeout) and remembered; a failure is not remembered.
    async fn own_account(&self) -> Result<String, AwsError>;
    /// `ListApplicationOperations`: the application's operations, whoever started them (a
    /// CI deploy, the service's own maintenance, this controller), newest first by start
    /// time; at most [`MAX_OPERATIONS_LISTED`].
    async fn list_operations(&self, target: &Target, name: &str) -> Result<Vec<OperationSummary>, AwsError>;

    /// `ListApplicationSnapshots`: how many snapshots the application keeps, counting no
    /// further than `limit`.
    async fn count_snapshots(
        &self,
        target: &Target,
        name: &str,
        limit: u32,
    ) -> Result<SnapshotCount, AwsError>;
}

/// The CloudWatch metrics of an application, as the policy's [`Sample`]s.
#[async_trait]
pub trait MetricsSource: Send + Sync {
    /// Per-period samples for one application over the window ending at `end`, oldest
    /// first: the periods `[floor(end) - window, floor(end))`, with `floor` rounding down to
    /// a multiple of `period` (CloudWatch aligns datapoints that way).
    ///
    /// A period for which no metric has a datapoint is left out; a metric without a
    /// datapoint (or with a NaN) is `None`. Running counts (`numberOfFailedCheckpoints`,
    /// `fullRestarts`) come back as per-period increases.
    ///
    /// The batched implementation coalesces concurrent calls into `GetMetricData` requests
    /// of up to 500 queries.
    async fn samples(
        &self,
        target: &Target,
        application: &str,
        window: Duration,
        period: Duration,
        end: Timestamp,
    ) -> Result<Vec<Sample>, AwsError>;

    /// What to read for the application `description` describes: its metrics level and
    /// runtime, and the tasks and source streams CloudWatch lists for it (cached). Never
    /// fails: a failed discovery reads the application level and says so in the plan.
    ///
    /// The default (for sources that cannot list metrics) reads every metric with the
    /// `Application` dimension alone.
    async fn plan(&self, target: &Target, description: &ApplicationDescription) -> SignalPlan {
        let _ = target;
        SignalPlan::application_dimension_only(&description.name)
    }

    /// [`samples`](Self::samples) of the series of `plan`, several series of a field
    /// (tasks, streams) aggregated per period by their maximum.
    ///
    /// The default (for sources that answer per application) ignores the plan's series.
    async fn samples_for(
        &self,
        target: &Target,
        plan: &SignalPlan,
        window: Duration,
        period: Duration,
        end: Timestamp,
    ) -> Result<Vec<Sample>, AwsError> {
        self.samples(target, &plan.application, window, period, end).await
    }

    /// The application's input rate per clock hour over the last
    /// [`history::HISTORY_DAYS`] days, for the policy's forecast (see [`history`]): the
    /// plan's `numRecordsInPerSecond` series at one-hour periods, read at most once per
    /// application and hour.
    ///
    /// The default (for sources that keep no history) has none.
    async fn hourly_input(
        &self,
        target: &Target,
        plan: &SignalPlan,
        now: Timestamp,
    ) -> Result<Vec<HourlyRate>, AwsError> {
        let _ = (target, plan, now);
        Ok(Vec::new())
    }
}

#[async_trait]
impl<T: ApplicationControl + ?Sized> ApplicationControl for Arc<T> {
    async fn describe(&self, target: &Target, name: &str) -> Result<ApplicationDescription, AwsError> {
        (**self).describe(target, name).await
    }

    async fn list_tags(&self, target: &Target, arn: &str) -> Result<Vec<(String, String)>, AwsError> {
        (**self).list_tags(target, arn).await
    }

    async fn update(&self, target: &Target, request: &UpdateRequest) -> Result<String, AwsError> {
        (**self).update(target, request).await
    }

    async fn describe_operation(
        &self,
        target: &Target,
        name: &str,
        operation_id: &str,
    ) -> Result<OperationStatus, AwsError> {
        (**self).describe_operation(target, name, operation_id).await
    }

    async fn own_account(&self) -> Result<String, AwsError> {
        (**self).own_account().await
    }

    async fn list_operations(&self, target: &Target, name: &str) -> Result<Vec<OperationSummary>, AwsError> {
        (**self).list_operations(target, name).await
    }

    async fn count_snapshots(
        &self,
        target: &Target,
        name: &str,
        limit: u32,
    ) -> Result<SnapshotCount, AwsError> {
        (**self).count_snapshots(target, name, limit).await
    }
}

#[async_trait]
impl<T: MetricsSource + ?Sized> MetricsSource for Arc<T> {
    async fn samples(
        &self,
        target: &Target,
        application: &str,
        window: Duration,
        period: Duration,
        end: Timestamp,
    ) -> Result<Vec<Sample>, AwsError> {
        (**self).samples(target, application, window, period, end).await
    }

    async fn plan(&self, target: &Target, description: &ApplicationDescription) -> SignalPlan {
        (**self).plan(target, description).await
    }

    async fn samples_for(
        &self,
        target: &Target,
        plan: &SignalPlan,
        window: Duration,
        period: Duration,
        end: Timestamp,
    ) -> Result<Vec<Sample>, AwsError> {
        (**self).samples_for(target, plan, window, period, end).await
    }

    async fn hourly_input(
        &self,
        target: &Target,
        plan: &SignalPlan,
        now: Timestamp,
    ) -> Result<Vec<HourlyRate>, AwsError> {
        (**self).hourly_input(target, plan, now).await
    }
}
