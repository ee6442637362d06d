//! The plain types the decision engine speaks: what it is told (a [`Budget`], an
//! [`Observation`], a [`History`]) and what it answers (a [`Decision`]).
//!
//! NB: nothing here knows about Kubernetes or AWS. The controller maps the CRD and the SDK
//! responses into these types, the simulator produces them directly, so one policy serves
//! the controller, `demo`, `recommend` and `simulate` alike.

use std::time::Duration;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

/// A validated, typed budget: the `CheckpointBudget` spec with durations and sizes parsed
/// and defaults applied. Built by `crd::CheckpointBudgetSpec::to_budget`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Budget {
    /// The SLO on `lastCheckpointDuration`.
    pub max_checkpoint_duration: Duration,
    /// Optional SLO on `lastCheckpointSize`, in bytes.
    pub max_checkpoint_size: Option<u64>,
    /// Failed checkpoints tolerated per evaluation window.
    pub max_failed_checkpoints: u32,
    /// The evaluation window.
    pub window: Duration,
    /// Lowest parallelism the policy may choose.
    pub parallelism_min: u32,
    /// Highest parallelism the policy may choose (never exceeded).
    pub parallelism_max: u32,
    /// The job's number of key groups: restore fails above it.
    pub max_parallelism: u32,
    /// Lowest allowed ParallelismPerKPU.
    pub per_kpu_min: u32,
    /// Highest allowed ParallelismPerKPU.
    pub per_kpu_max: u32,
    /// Optional cap on KPUs = ceil(parallelism / perKpu).
    pub max_kpus: Option<u32>,
    /// Minimum time between a scaling and the next scale-up.
    pub scale_up_cooldown: Duration,
    /// Minimum time between a scaling and the next scale-down.
    pub scale_down_cooldown: Duration,
    /// How long a lower recommendation must hold before scaling down.
    pub scale_down_stabilization: Duration,
    /// Optional error budget (`objectives.target` over `objectives.period`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_budget: Option<ErrorBudget>,
}

/// An error budget: the share of minutes to keep within the checkpoint budget over a
/// rolling period.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ErrorBudget {
    /// Share of minutes within budget, in (0, 1), e.g. 0.995.
    pub target: f64,
    /// The rolling period.
    pub period: Duration,
}

/// The knobs the controller turns.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AppConfig {
    /// `Parallelism` (the service's `CurrentParallelism` once running).
    pub parallelism: u32,
    /// `ParallelismPerKPU`.
    pub parallelism_per_kpu: u32,
}

impl AppConfig {
    /// Builds a configuration.
    pub fn new(parallelism: u32, parallelism_per_kpu: u32) -> Self {
        Self {
            parallelism,
            parallelism_per_kpu,
        }
    }

    /// KPUs billed for this configuration: ceil(parallelism / perKpu), at least 1.
    pub fn kpus(&self) -> u32 {
        self.parallelism.div_ceil(self.parallelism_per_kpu.max(1)).max(1)
    }
}

impl AppConfig {
    /// `16 at 2/KPU (8 KPU)`: the configuration in a table cell.
    pub fn short(&self) -> String {
        format!(
            "{} at {}/KPU ({} KPU)",
            self.parallelism,
            self.parallelism_per_kpu,
            self.kpus()
        )
    }
}

impl std::fmt::Display for AppConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "parallelism {} at {} per KPU ({} KPU)",
            self.parallelism,
            self.parallelism_per_kpu,
            self.kpus()
        )
    }
}

/// The application's status as `DescribeApplication` reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AppStatus {
    Deleting,
    Starting,
    Stopping,
    Ready,
    Running,
    Updating,
    Autoscaling,
    ForceStopping,
    RollingBack,
    Maintenance,
    RolledBack,
    /// A status this version does not know; treated as "not safe to act".
    Unknown,
}

impl AppStatus {
    /// The status as the API spells it (`RUNNING`, `FORCE_STOPPING`): its serde name.
    pub const fn as_str(self) -> &'static str {
        match self {
            AppStatus::Deleting => "DELETING",
            AppStatus::Starting => "STARTING",
            AppStatus::Stopping => "STOPPING",
            AppStatus::Ready => "READY",
            AppStatus::Running => "RUNNING",
            AppStatus::Updating => "UPDATING",
            AppStatus::Autoscaling => "AUTOSCALING",
            AppStatus::ForceStopping => "FORCE_STOPPING",
            AppStatus::RollingBack => "ROLLING_BACK",
            AppStatus::Maintenance => "MAINTENANCE",
            AppStatus::RolledBack => "ROLLED_BACK",
            AppStatus::Unknown => "UNKNOWN",
        }
    }
}

impl std::fmt::Display for AppStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
#[test]
fn app_status_names_are_the_apis() {
    use AppStatus::*;
    for status in [
        Deleting,
        Starting,
        Stopping,
        Ready,
        Running,
        Updating,
        Autoscaling,
        ForceStopping,
        RollingBack,
        Maintenance,
        RolledBack,
        Unknown,
    ] {
        // The exhaustive match makes a new status a compile error here, so it is listed.
        match status {
            Deleting | Starting | Stopping | Ready | Running | Updating | Autoscaling | ForceStopping
            | RollingBack | Maintenance | RolledBack | Unknown => {}
        }
        assert_eq!(
            serde_json::to_value(status).unwrap(),
            serde_json::Value::String(status.as_str().to_owned())
        );
        let parsed: AppStatus = serde_json::from_value(serde_json::json!(status.as_str())).unwrap();
        assert_eq!(parsed, status);
    }
}

/// One metric period (one minute in production) of the CloudWatch metrics of namespace
/// `AWS/KinesisAnalytics`. A field is `None` when CloudWatch returned no datapoint (or a
/// NaN) for that period: the policy treats gaps as missing data, never as zero.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Sample {
    /// Start of the period.
    pub at: Timestamp,
    /// `lastCheckpointDuration` (Maximum), milliseconds.
    pub last_checkpoint_duration_ms: Option<f64>,
    /// `lastCheckpointSize` (Maximum), bytes.
    pub last_checkpoint_size_bytes: Option<f64>,
    /// `numberOfFailedCheckpoints` increase within the period (the metric is a running
    /// count; the observer turns it into a per-period delta).
    pub failed_checkpoints: Option<f64>,
    /// `cpuUtilization` (Maximum), percent.
    pub cpu_utilization: Option<f64>,
    /// `heapMemoryUtilization` (Maximum), percent.
    pub heap_memory_utilization: Option<f64>,
    /// `containerMemoryUtilization` (Maximum), percent.
    pub container_memory_utilization: Option<f64>,
    /// `busyTimeMsPerSecond` (Maximum over operators), ms per second.
    pub busy_time_ms_per_second: Option<f64>,
    /// `backPressuredTimeMsPerSecond` (Maximum over operators), ms per second.
    pub back_pressured_time_ms_per_second: Option<f64>,
    /// `millisBehindLatest` (Maximum), milliseconds.
    pub millis_behind_latest: Option<f64>,
    /// `numRecordsInPerSecond` (Average), records per second.
    pub records_in_per_second: Option<f64>,
    /// `fullRestarts` increase within the period.
    pub full_restarts: Option<f64>,
    /// `downtime` (Maximum), milliseconds.
    pub downtime_ms: Option<f64>,
}

/// What the controller saw of an application at `at`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Observation {
    /// When the observation was taken.
    pub at: Timestamp,
    /// The application's status.
    pub status: AppStatus,
    /// The running configuration.
    pub config: AppConfig,
    /// Whether the service's own CPU-based autoscaling is enabled.
    pub service_autoscaling: bool,
    /// `ApplicationVersionId`.
    pub version_id: i64,
    /// Metric periods over the observation window (the budget's window, and at least the
    /// span the input's trend is fitted over: see [`observation_window`](crate::observation_window)),
    /// oldest first; may have gaps. Only the budget's window is judged.
    pub samples: Vec<Sample>,
    /// The metric period (one minute in production).
    pub period: Duration,
    /// The input rate per clock hour over the last days (hourly averages of
    /// `numRecordsInPerSecond`), oldest first; empty when the caller has none. The
    /// forecast (see docs/design.md) uses it once it spans enough days.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hourly_input: Vec<HourlyRate>,
}

/// The input rate of one clock hour.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HourlyRate {
    /// Start of the hour.
    pub at: Timestamp,
    /// Average records per second over the hour.
    pub records_per_second: f64,
    /// The hour's busiest one-minute datapoint, records per second (CloudWatch's `Maximum`
    /// over the hour), when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub busiest_minute_per_second: Option<f64>,
}

/// What the decision engine concluded the cause is. The variants mirror the causes table of
/// docs/design.md.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Cause {
    /// Checkpoints within budget, nothing to fix.
    Healthy,
    /// Too few KPUs for the load: CPU, busy and back-pressure high.
    UnderProvisioned,
    /// Large or growing state makes the upload slow.
    LargeState,
    /// Heap or container memory high, or OOM restarts.
    MemoryPressure,
    /// Scaling up did not help: one subtask dominates.
    StateSkew,
    /// State grows with distinct keys and does not level off.
    HighKeyCardinality,
    /// Checkpoints fail while duration and resources look normal (serializer, external call).
    NotFixableByScaling,
    /// Isolated failures that recover, within the failure budget.
    TransientFailures,
    /// Far below budget with low CPU for a long time.
    IdleHeadroom,
    /// Not enough (or not fresh enough) data to judge.
    InsufficientData,
}

/// The diagnosis, in words a person can act on.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Diagnosis {
    /// The cause.
    pub cause: Cause,
    /// One sentence: what is happening, with the figures that show it.
    pub summary: String,
    /// What the application team can do that the controller cannot (TTL, rebalancing keys,
    /// fixing a serializer); `None` when scaling is the whole fix.
    pub advice: Option<String>,
}

/// The outcome of an `UpdateApplication` the controller started.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    /// Still running.
    InProgress,
    /// The application runs with the new configuration.
    Succeeded,
    /// The operation failed (and the service rolled back).
    Failed,
}

/// One past scaling, as recorded in the budget's status.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ScalingRecord {
    /// When `UpdateApplication` was called.
    pub at: Timestamp,
    /// When the application was `RUNNING` again (None while in progress).
    pub completed_at: Option<Timestamp>,
    /// Configuration before.
    pub from: AppConfig,
    /// Configuration asked for.
    pub to: AppConfig,
    /// Why.
    pub cause: Cause,
    /// The representative checkpoint duration (ms) that prompted the scaling.
    pub checkpoint_duration_before_ms: Option<f64>,
    /// Outcome.
    pub outcome: Outcome,
    /// The input rate (`numRecordsInPerSecond`) when the scaling was decided, so the policy
    /// can tell "scaling did not help" apart from "the load changed meanwhile".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub records_in_before_per_second: Option<f64>,
}

impl ScalingRecord {
    /// The record of a scaling started at `at` on the strength of `decision` (whose action
    /// is `Scale { to }`), from the running configuration `from`. Fills the "before" figures
    /// the policy later compares against, so every caller records them the same way.
    pub fn started(at: Timestamp, from: AppConfig, to: AppConfig, decision: &Decision) -> Self {
        Self {
            at,
            completed_at: None,
            from,
            to,
            cause: decision.diagnosis.cause,
            checkpoint_duration_before_ms: decision.figures.representative_duration_ms,
            outcome: Outcome::InProgress,
            records_in_before_per_second: decision.figures.records_in_per_second,
        }
    }
}

/// A past recommendation, kept for scale-down stabilization (HPA style, but persisted in
/// status rather than in controller memory).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RecommendationRecord {
    /// When it was made.
    pub at: Timestamp,
    /// What was recommended.
    pub config: AppConfig,
}

/// The checkpoints of the latest evaluation that met the budget, in the configuration they
/// ran in: what "normal" looked like, so a later breach at about the same checkpoint size
/// can be told from one the state causes (the window alone cannot: once every checkpoint of
/// it is slow, nothing in it contrasts).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CheckpointBaseline {
    /// When it was judged.
    pub at: Timestamp,
    /// The configuration the checkpoints ran in.
    pub config: AppConfig,
    /// The representative checkpoint duration, ms.
    pub duration_ms: f64,
    /// The largest checkpoint size of the window, bytes.
    pub size_bytes: f64,
}

/// One evaluation's CPU at its input rate.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CpuPoint {
    /// When it was judged.
    pub at: Timestamp,
    /// `numRecordsInPerSecond`.
    pub records_per_second: f64,
    /// `cpuUtilization`, %.
    pub cpu_percent: f64,
}

/// CPU against the input rate in one configuration: the evaluations at the lowest and the
/// highest input rate of the last day. Two rates far enough apart tell the part of the CPU
/// that the input does not drive (the JVM, the framework, timers, checkpointing) from the
/// part it does, so where a configuration saturates is not extrapolated through zero (which
/// from a night's readings would make every configuration look smaller than it is).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CpuSpan {
    /// The configuration both points ran in.
    pub config: AppConfig,
    /// The evaluation at the lowest input rate.
    pub low: CpuPoint,
    /// The evaluation at the highest input rate.
    pub high: CpuPoint,
    /// The CPU floor (% of each KPU's vCPU that does not scale with the input) fitted in
    /// an earlier configuration, kept across a scaling: it is the runtime's, not the
    /// configuration's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub floor_percent: Option<f64>,
}

/// A restart of the application, whoever made it — a deploy from CI, the service's own
/// autoscaling or maintenance, another controller, this one — as the application's own
/// operations (or its running configuration) show it. Cooldowns and the warm-up count from
/// these as from the controller's own scalings.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RestartRecord {
    /// When the restart began.
    pub at: Timestamp,
    /// When the application ran again (None while it restarts).
    pub completed_at: Option<Timestamp>,
}

/// What the policy remembers between evaluations. The controller persists it in status,
/// so a restarted controller decides exactly as the old one would have.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct History {
    /// Past scalings, oldest first (the controller keeps the last few).
    pub scalings: Vec<ScalingRecord>,
    /// Restarts of the application, whoever made them (the controller derives them from the
    /// application's operations), oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub restarts: Vec<RestartRecord>,
    /// Recommendations within the scale-down stabilization window, oldest first. Each one
    /// holds from its `at` until the next one, so a run of equal recommendations may be
    /// stored once (`policy::remember` appends and prunes).
    pub recommendations: Vec<RecommendationRecord>,
    /// Minutes judged within and outside the budget over the error budget's rolling period,
    /// oldest first (only with `objectives.target`; see `policy::account`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub slo_minutes: Vec<super::error_budget::SloBucket>,
    /// Up to when minutes were counted into `slo_minutes`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slo_accounted_until: Option<Timestamp>,
    /// The checkpoints of the latest evaluation within budget (see
    /// `policy::remember_baseline`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline: Option<CheckpointBaseline>,
    /// CPU against the input rate in the running configuration (see
    /// `policy::remember_baseline`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_span: Option<CpuSpan>,
}

/// What to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Action {
    /// Change nothing now.
    Hold,
    /// Call `UpdateApplication` with this configuration.
    Scale {
        /// The new configuration.
        to: AppConfig,
    },
    /// Scaling would be the fix but a bound, a cap or a past failure forbids it.
    Blocked,
}

/// Why the decision is what it is: becomes the `Scaling` condition's reason and the Event
/// reason, so the names are CamelCase facts in the HPA's vocabulary.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Reason {
    /// Within budget and no cheaper configuration is warranted.
    WithinBudget,
    /// Scale up to restore the budget.
    ScaleUpRequired,
    /// Lower ParallelismPerKPU for memory.
    MoreMemoryRequired,
    /// Scale down after stabilization.
    ScaleDownStabilized,
    /// A lower recommendation is waiting out the stabilization window.
    ScaleDownPending,
    /// Within a cooldown after the last scaling.
    CooldownActive,
    /// An update is in flight or the application is not RUNNING.
    ApplicationBusy,
    /// Metrics are missing or stale.
    MissingMetrics,
    /// Scaling is not the fix (serializer, external call, skew).
    NotFixableByScaling,
    /// The last step did not do what it was for, so another would not either: a scale-up
    /// made for a breach shortened the checkpoints by less than 30% of the prediction, or
    /// left a part that no parallelism shortens beyond the budget, or every allowed
    /// configuration over it (state skew, a hot key); or a step for memory pressure left
    /// memory as high. Holds until the input rate moves by more than half, or a day (skew)
    /// or two hours (memory) after the step.
    ScalingIneffective,
    /// Failures within `maxFailedCheckpoints`.
    FailuresWithinBudget,
    /// A bound (parallelism.max, maxParallelism, maxKpus, perKpu) stops the fix.
    LimitReached,
    /// The desired configuration failed before; not retried blindly.
    PreviouslyFailed,
    /// The application is not in a state that can be judged yet: it restarted recently,
    /// drains a backlog, or just started falling behind (the step is sized once the rate is
    /// measured).
    WarmingUp,
}

impl Reason {
    /// The CamelCase name used as condition and Event reason.
    pub fn as_str(&self) -> &'static str {
        match self {
            Reason::WithinBudget => "WithinBudget",
            Reason::ScaleUpRequired => "ScaleUpRequired",
            Reason::MoreMemoryRequired => "MoreMemoryRequired",
            Reason::ScaleDownStabilized => "ScaleDownStabilized",
            Reason::ScaleDownPending => "ScaleDownPending",
            Reason::CooldownActive => "CooldownActive",
            Reason::ApplicationBusy => "ApplicationBusy",
            Reason::MissingMetrics => "MissingMetrics",
            Reason::NotFixableByScaling => "NotFixableByScaling",
            Reason::ScalingIneffective => "ScalingIneffective",
            Reason::FailuresWithinBudget => "FailuresWithinBudget",
            Reason::LimitReached => "LimitReached",
            Reason::PreviouslyFailed => "PreviouslyFailed",
            Reason::WarmingUp => "WarmingUp",
        }
    }
}

/// Checkpoint figures over the window, for status and the `SloMet` condition.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CheckpointFigures {
    /// Latest `lastCheckpointDuration` in the window, ms.
    pub last_duration_ms: Option<f64>,
    /// Highest `lastCheckpointDuration` in the window, ms.
    pub max_duration_ms: Option<f64>,
    /// Latest `lastCheckpointSize`, bytes.
    pub last_size_bytes: Option<f64>,
    /// Largest `lastCheckpointSize` in the window, bytes (incremental checkpoints vary in
    /// size from one to the next).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_size_bytes: Option<f64>,
    /// Failed checkpoints in the window.
    pub failed: u32,
    /// Periods in the window that had data.
    pub samples: u32,
    /// The checkpoint duration the decision was judged on (median of the latest periods of
    /// the current configuration), ms; recorded as a scaling's "before" figure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub representative_duration_ms: Option<f64>,
    /// The input rate (`numRecordsInPerSecond`) the decision was judged on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub records_in_per_second: Option<f64>,
    /// The CPU (`cpuUtilization`, %) of the same periods as the input rate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_percent: Option<f64>,
}

/// The decision engine's answer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Decision {
    /// What to do.
    pub action: Action,
    /// Why (machine-readable).
    pub reason: Reason,
    /// Why, in one or two sentences a person can act on.
    pub message: String,
    /// The diagnosis.
    pub diagnosis: Diagnosis,
    /// The configuration the policy considers right now, even when holding (for status,
    /// `Recommend` mode, and the stabilization history).
    pub recommendation: AppConfig,
    /// Whether the SLO is met over the window (`None` without data).
    pub slo_met: Option<bool>,
    /// The checkpoint figures the decision was made on.
    pub figures: CheckpointFigures,
    /// When the policy wants to look again (the controller's requeue).
    pub requeue_after: Duration,
    /// What the policy would recommend without the budget's bounds, and which bounds hold
    /// the recommendation back from it (the `ScalingLimited` condition). `None` when no
    /// need was sized: the application is busy, the metrics are missing, or it warms up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub desired: Option<Desired>,
    /// The input forecast from the application's own history and the change it plans,
    /// when the history spans enough days (see docs/design.md).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forecast: Option<ForecastPlan>,
}

/// What the forecast expects and what the policy plans for it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ForecastPlan {
    /// Hours of input history the profile was learnt from.
    pub history_hours: u32,
    /// The highest input expected over the planning horizon, records per second.
    pub peak_records_per_second: f64,
    /// The start of the hour it is expected in.
    pub peak_at: Timestamp,
    /// The next change of configuration the plan makes (`None`: the running configuration
    /// serves the whole horizon).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub planned: Option<PlannedChange>,
}

/// A change of configuration the plan makes ahead of the load.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PlannedChange {
    /// The configuration.
    pub config: AppConfig,
    /// When the restart starts (so that it is over before the load it is for).
    pub at: Timestamp,
}

/// What the policy wanted before the budget's bounds applied (HPA's "desired" replica count
/// before `minReplicas`/`maxReplicas`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Desired {
    /// The configuration the policy recommends when only the service's and the job's own
    /// limits apply: ParallelismPerKPU 1 to 8, parallelism 1 to `maxParallelism`, no KPU cap.
    pub config: AppConfig,
    /// The bounds of the budget that hold the recommendation back from `config`, the most
    /// binding first; empty when none does.
    pub limits: Vec<Limit>,
}

impl Desired {
    /// Whether a bound holds the recommendation back.
    pub fn is_limited(&self) -> bool {
        !self.limits.is_empty()
    }
}

/// A bound of the budget that holds the policy's recommendation back, with its value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Limit {
    /// `maxKpus`: more KPUs are wanted.
    MaxKpus(u32),
    /// `parallelism.max`: more parallelism is wanted.
    ParallelismMax(u32),
    /// `parallelism.perKpu.min`: fewer subtasks per KPU (more memory and CPU each) are wanted.
    PerKpuMin(u32),
    /// `parallelism.maxParallelism`, the job's key groups: even the most capacity they
    /// allow (one key group per subtask, one subtask per KPU) falls short of the need.
    MaxParallelism(u32),
    /// `parallelism.min`: less parallelism would do (fewer KPUs).
    ParallelismMin(u32),
    /// `parallelism.perKpu.max`: more subtasks per KPU would do (fewer KPUs).
    PerKpuMax(u32),
}

impl Limit {
    /// Whether the bound holds back capacity (an upper bound on resources) rather than a
    /// saving (a lower bound).
    pub fn holds_back_capacity(&self) -> bool {
        !matches!(self, Limit::ParallelismMin(_) | Limit::PerKpuMax(_))
    }
}

impl std::fmt::Display for Limit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Limit::MaxKpus(v) => write!(f, "maxKpus {v}"),
            Limit::ParallelismMax(v) => write!(f, "parallelism.max {v}"),
            Limit::PerKpuMin(v) => write!(f, "perKpu.min {v}"),
            Limit::MaxParallelism(v) => write!(f, "the job's maxParallelism {v}"),
            Limit::ParallelismMin(v) => write!(f, "parallelism.min {v}"),
            Limit::PerKpuMax(v) => write!(f, "perKpu.max {v}"),
        }
    }
}
