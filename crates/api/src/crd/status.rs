//! The `CheckpointBudget` status: what the controller observed, concluded and did.
//!
//! The controller writes it with server-side apply, so every field is optional on the wire
//! (a field left out is a field the controller no longer claims). Policy enums (`Cause`,
//! `Outcome`, `AppStatus`) appear under their serde names with a plain `string` schema,
//! so that adding a variant to the policy never makes the API server refuse a status.

use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Serialize};

use super::{duration::format_duration, quantity::format_bytes};
use crate::cost::{self, KpuHourPrice, MonthlyCost};
use crate::policy::duration::human;
use crate::policy::{
    AppConfig, AppStatus, Budget, Cause, CheckpointBaseline, CheckpointFigures, CpuPoint, CpuSpan, Decision,
    Diagnosis, ErrorBudgetState, ForecastPlan, History, Observation, Outcome, RecommendationRecord,
    ScalingRecord, SloBucket,
};

/// Condition type: the controller can observe the application and act on it.
pub const CONDITION_READY: &str = "Ready";
/// Condition type: checkpoints are within budget over the window.
pub const CONDITION_SLO_MET: &str = "SloMet";
/// Condition type: what the controller is doing about scaling, and why.
pub const CONDITION_SCALING: &str = "Scaling";
/// Condition type: the application's snapshots keep its state across a restart, and their
/// count is below the quota.
pub const CONDITION_SNAPSHOTS: &str = "Snapshots";

/// Most past scalings kept in `status.history.scalings` (newest kept).
pub const MAX_HISTORY_SCALINGS: usize = 20;
/// Most past recommendations kept in `status.history.recommendations` (newest kept): an
/// hour of one-minute evaluations and then some.
pub const MAX_HISTORY_RECOMMENDATIONS: usize = 200;

/// What the controller observed, concluded and did for one budget.
#[derive(JsonSchema, Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[schemars(transform = super::kubernetes_int_formats)]
pub struct CheckpointBudgetStatus {
    /// The `metadata.generation` of the spec this status was computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready` (the controller can observe and act on the application), `SloMet`
    /// (checkpoints within budget over the window), `Scaling` (what the controller is
    /// doing about scaling, with the reason) and `Snapshots` (whether a restart keeps the
    /// job's state, and the snapshot count against the quota).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "conditions_schema")]
    pub conditions: Vec<Condition>,
    /// The application as last observed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub application: Option<ObservedApplication>,
    /// Checkpoint figures over the evaluation window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoints: Option<CheckpointWindow>,
    /// Why checkpoints behave as they do, and what the application team can do about it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub diagnosis: Option<DiagnosisStatus>,
    /// The configuration the controller considers right (applied in `Enforce` mode, only
    /// reported in `Recommend` mode).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recommendation: Option<RecommendationStatus>,
    /// The last scaling the controller started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_scaling: Option<LastScaling>,
    /// An `UpdateApplication` the controller has started and not yet seen finish. Recorded
    /// before the call, so a restarted controller resumes it instead of acting twice.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation_in_flight: Option<OperationInFlight>,
    /// What the decision engine remembers between evaluations (bounded), so a restarted
    /// controller decides as the previous one would have.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub history: Option<ScalingHistory>,
    /// A KPU quota AWS enforced: `UpdateApplication` was refused with
    /// `LimitExceededException`. The controller keeps the application below `refusedKpus`
    /// for a while (see `docs/troubleshooting.md`), so a quota does not make it retry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kpu_limit: Option<KpuLimit>,
    /// The application's snapshots: whether the service takes them, how the application
    /// restores, and how many it keeps against the per-application quota.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshots: Option<SnapshotStatus>,
    /// What the controller changed on the application and gives back when the budget is
    /// deleted (`spec.onDelete: Restore`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hand_back: Option<HandBack>,
    /// Which CloudWatch signals the last evaluation had: the application's `MetricsLevel`
    /// and runtime, the signals read and those missing, and what the team could switch on
    /// for better decisions (with its cost).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signals: Option<SignalsReport>,
    /// The error budget (only with `objectives.target`): what is left of it over the
    /// rolling period and how fast it burns.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_budget: Option<ErrorBudgetStatus>,
    /// The input forecast learnt from the application's own history (`numRecordsInPerSecond`
    /// by the hour, once 36 hours are known) and the change the controller plans for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forecast: Option<ForecastStatus>,
}

/// What the application's own history says is coming, and what the controller plans.
#[derive(JsonSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ForecastStatus {
    /// Hours of input history the forecast was learnt from.
    pub history_hours: u32,
    /// The highest input expected over the next day, records per second.
    pub peak_records_per_second: u64,
    /// The hour it is expected in.
    pub peak_at: Time,
    /// The configuration the plan changes to next (absent: the running one serves the
    /// whole day ahead).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub planned: Option<ConfigStatus>,
    /// When the restart for `planned` starts: early enough to be over before the load it
    /// is for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub planned_at: Option<Time>,
    /// The forecast and the plan in one sentence.
    pub summary: String,
}

impl From<&ForecastPlan> for ForecastStatus {
    fn from(f: &ForecastPlan) -> Self {
        let peak = f.peak_records_per_second.max(0.0).round() as u64;
        let when = |t: Timestamp| t.strftime("%Y-%m-%dT%H:%MZ").to_string();
        let plan = match &f.planned {
            Some(p) => format!("; planned: {} from {}", p.config, when(p.at)),
            None => "; no change planned".to_string(),
        };
        Self {
            history_hours: f.history_hours,
            peak_records_per_second: peak,
            peak_at: Time(f.peak_at),
            planned: f.planned.map(|p| p.config.into()),
            planned_at: f.planned.map(|p| Time(p.at)),
            summary: format!(
                "Expecting up to {peak} records/s around {} (learnt from {} hours of input){plan}.",
                when(f.peak_at),
                f.history_hours
            ),
        }
    }
}

/// The application as the controller found it, where the controller changed it.
#[derive(JsonSchema, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HandBack {
    /// The application's ARN.
    pub application: String,
    /// `AutoScalingEnabled` before the controller first turned it off.
    pub service_auto_scaling: bool,
    /// When the controller first changed it.
    pub recorded_at: Time,
}

/// The application's snapshots, as `DescribeApplication` and `ListApplicationSnapshots`
/// report them.
#[derive(JsonSchema, Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SnapshotStatus {
    /// `SnapshotsEnabled`: whether the service snapshots the state when the application
    /// stops, updates or scales (absent: not reported).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// `ApplicationRestoreType` (with the snapshot's name for `RESTORE_FROM_CUSTOM_SNAPSHOT`):
    /// what a restart resumes from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore: Option<String>,
    /// Snapshots the application keeps (`ListApplicationSnapshots`), counted up to the quota.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u32>,
    /// The per-application snapshot quota.
    pub quota: u32,
    /// The `ApplicationVersionId` at which they were counted; counted again when it moves.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub counted_at_version: Option<i64>,
}

/// A KPU count AWS refused with `LimitExceededException` (the KPUs-per-application quota).
#[derive(JsonSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KpuLimit {
    /// The KPUs of the refused configuration: the controller stays below them.
    pub refused_kpus: u32,
    /// When AWS refused them.
    pub refused_at: Time,
    /// AWS's message.
    pub message: String,
}

/// A `Parallelism` / `ParallelismPerKPU` configuration with its KPU count.
#[derive(JsonSchema, Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConfigStatus {
    /// `Parallelism`.
    pub parallelism: u32,
    /// `ParallelismPerKPU`.
    pub parallelism_per_kpu: u32,
    /// KPUs = ceil(parallelism / parallelismPerKpu).
    pub kpus: u32,
}

impl From<AppConfig> for ConfigStatus {
    fn from(c: AppConfig) -> Self {
        Self {
            parallelism: c.parallelism,
            parallelism_per_kpu: c.parallelism_per_kpu,
            kpus: c.kpus(),
        }
    }
}

impl From<ConfigStatus> for AppConfig {
    fn from(c: ConfigStatus) -> Self {
        AppConfig::new(c.parallelism, c.parallelism_per_kpu)
    }
}

/// The application as `DescribeApplication` last reported it.
#[derive(JsonSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ObservedApplication {
    /// `ApplicationStatus`, e.g. `RUNNING`, `UPDATING`, `AUTOSCALING`.
    #[schemars(schema_with = "string_schema")]
    pub status: AppStatus,
    /// `ApplicationVersionId`.
    pub version_id: i64,
    /// Running parallelism (`CurrentParallelism`).
    pub parallelism: u32,
    /// `ParallelismPerKPU`.
    pub parallelism_per_kpu: u32,
    /// KPUs = ceil(parallelism / parallelismPerKpu).
    pub kpus: u32,
    /// Whether the service's own CPU-based automatic scaling (`AutoScalingEnabled`) is on.
    pub service_auto_scaling: bool,
    /// When this was observed.
    pub observed_at: Time,
}

impl ObservedApplication {
    /// The status view of an observation.
    pub fn from_observation(obs: &Observation) -> Self {
        Self {
            status: obs.status,
            version_id: obs.version_id,
            parallelism: obs.config.parallelism,
            parallelism_per_kpu: obs.config.parallelism_per_kpu,
            kpus: obs.config.kpus(),
            service_auto_scaling: obs.service_autoscaling,
            observed_at: Time(obs.at),
        }
    }

    /// The running configuration.
    pub fn config(&self) -> AppConfig {
        AppConfig::new(self.parallelism, self.parallelism_per_kpu)
    }
}

/// Checkpoint figures over the evaluation window.
#[derive(JsonSchema, Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CheckpointWindow {
    /// Latest `lastCheckpointDuration` in the window, e.g. `1m32s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_duration: Option<String>,
    /// Latest `lastCheckpointDuration` in the window, milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_duration_ms: Option<u64>,
    /// Highest `lastCheckpointDuration` in the window, e.g. `2m5s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_duration: Option<String>,
    /// Highest `lastCheckpointDuration` in the window, milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_duration_ms: Option<u64>,
    /// Latest `lastCheckpointSize`, e.g. `3.2Gi`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_size: Option<String>,
    /// Latest `lastCheckpointSize`, bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_size_bytes: Option<u64>,
    /// Failed checkpoints in the window.
    pub failed: u32,
    /// Metric periods in the window that had data.
    pub samples: u32,
    /// The budget they are judged against (`spec.objectives.maxCheckpointDuration`).
    pub budget: String,
    /// The evaluation window.
    pub window: String,
}

impl CheckpointWindow {
    /// The status view of the figures the policy decided on.
    pub fn new(figures: &CheckpointFigures, budget: &Budget) -> Self {
        let ms = |v: Option<f64>| v.filter(|v| v.is_finite() && *v >= 0.0).map(|v| v.round() as u64);
        let last_ms = ms(figures.last_duration_ms);
        let max_ms = ms(figures.max_duration_ms);
        let size = figures
            .last_size_bytes
            .filter(|v| v.is_finite() && *v >= 0.0)
            .map(|v| v.round() as u64);
        Self {
            last_duration: last_ms.map(|ms| human(Duration::from_millis(ms))),
            last_duration_ms: last_ms,
            max_duration: max_ms.map(|ms| human(Duration::from_millis(ms))),
            max_duration_ms: max_ms,
            last_size: size.map(format_bytes),
            last_size_bytes: size,
            failed: figures.failed,
            samples: figures.samples,
            budget: format_duration(budget.max_checkpoint_duration),
            window: format_duration(budget.window),
        }
    }
}

/// The diagnosis, in words a person can act on.
#[derive(JsonSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DiagnosisStatus {
    /// The cause: `Healthy`, `UnderProvisioned`, `LargeState`, `MemoryPressure`,
    /// `StateSkew`, `HighKeyCardinality`, `NotFixableByScaling`, `TransientFailures`,
    /// `IdleHeadroom` or `InsufficientData`.
    #[schemars(schema_with = "string_schema")]
    pub cause: Cause,
    /// What is happening, with the figures that show it.
    pub summary: String,
    /// What the application team can do that scaling cannot (state TTL, rebalancing keys,
    /// fixing a serializer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub advice: Option<String>,
}

impl From<&Diagnosis> for DiagnosisStatus {
    fn from(d: &Diagnosis) -> Self {
        Self {
            cause: d.cause,
            summary: d.summary.clone(),
            advice: d.advice.clone(),
        }
    }
}

impl From<&DiagnosisStatus> for Diagnosis {
    fn from(d: &DiagnosisStatus) -> Self {
        Self {
            cause: d.cause,
            summary: d.summary.clone(),
            advice: d.advice.clone(),
        }
    }
}

/// The configuration the controller considers right now.
#[derive(JsonSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RecommendationStatus {
    /// Recommended `Parallelism`.
    pub parallelism: u32,
    /// Recommended `ParallelismPerKPU`.
    pub parallelism_per_kpu: u32,
    /// KPUs of the recommended configuration.
    pub kpus: u32,
    /// What the controller decided: `Hold`, `Scale` or `Blocked`.
    pub action: String,
    /// Why, as a CamelCase reason (e.g. `ScaleUpRequired`, `CooldownActive`).
    pub reason: String,
    /// Why, in a sentence or two.
    pub message: String,
    /// The recommended configuration in a table cell, e.g. `16 at 2/KPU (8 KPU)` (the
    /// `Recommended` column of `kubectl get ckb -o wide`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub summary: String,
    /// What the running and the recommended configuration cost a month.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost: Option<CostStatus>,
}

/// What the running and the recommended configuration cost a month, as the service bills
/// them: the application's KPUs plus one KPU per application for orchestration, for 720
/// hours (24 × 30, as in AWS's pricing example). Running application storage (50 GB per KPU
/// of the application, billed per GB-month) is shown but not priced; durable backups
/// (snapshots) and the ten-minute minimum per start are not counted.
#[derive(JsonSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CostStatus {
    /// The running configuration.
    pub current: MonthlyCostStatus,
    /// The recommended configuration.
    pub recommended: MonthlyCostStatus,
    /// The change in one phrase, e.g. `5 → 10 KPU billed (4 → 9 + 1 for orchestration),
    /// 3,600 → 7,200 KPU-hours a month, 396.00 USD → 792.00 USD a month at 0.11 USD per
    /// KPU-hour`.
    pub summary: String,
    /// The price per KPU-hour the controller was configured with (`--kpu-hour-price`, the
    /// chart's `controller.kpuHourPrice`), e.g. `0.11 USD`. Unset: no prices, figures only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kpu_hour_price: Option<String>,
}

/// What one configuration costs a month.
#[derive(JsonSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MonthlyCostStatus {
    /// KPUs billed: the application's plus the one the service bills per application for
    /// orchestration.
    pub billed_kpus: u32,
    /// KPU-hours a month: `billedKpus` × 720.
    pub kpu_hours_per_month: u64,
    /// Running application storage allocated: 50 GB per KPU of the application (billed
    /// per GB-month; not included in `pricePerMonth`).
    pub running_storage_gb: u64,
    /// `kpuHoursPerMonth` at `kpuHourPrice`, to the cent, e.g. `792.00`; unset without a
    /// configured price.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub price_per_month: Option<String>,
}

impl From<MonthlyCost> for MonthlyCostStatus {
    fn from(c: MonthlyCost) -> Self {
        Self {
            billed_kpus: c.billed_kpus,
            kpu_hours_per_month: c.kpu_hours,
            running_storage_gb: c.running_storage_gb,
            price_per_month: c.price,
        }
    }
}

impl CostStatus {
    /// What running `current` and `recommended` cost a month, priced when `price` is given.
    pub fn new(current: AppConfig, recommended: AppConfig, price: Option<&KpuHourPrice>) -> Self {
        let now = cost::monthly(current, price);
        let then = cost::monthly(recommended, price);
        Self {
            summary: cost::describe_change(&now, &then, price),
            current: now.into(),
            recommended: then.into(),
            kpu_hour_price: price.map(ToString::to_string),
        }
    }
}

impl RecommendationStatus {
    /// The status view of a decision.
    pub fn from_decision(decision: &Decision) -> Self {
        let action = match decision.action {
            crate::policy::Action::Hold => "Hold",
            crate::policy::Action::Scale { .. } => "Scale",
            crate::policy::Action::Blocked => "Blocked",
        };
        Self {
            parallelism: decision.recommendation.parallelism,
            parallelism_per_kpu: decision.recommendation.parallelism_per_kpu,
            kpus: decision.recommendation.kpus(),
            action: action.to_owned(),
            reason: decision.reason.as_str().to_owned(),
            message: decision.message.clone(),
            summary: decision.recommendation.short(),
            cost: None,
        }
    }

    /// With what the running configuration `current` and the recommended one cost a month.
    pub fn with_cost(mut self, current: AppConfig, price: Option<&KpuHourPrice>) -> Self {
        self.cost = Some(CostStatus::new(current, self.config(), price));
        self
    }

    /// The recommended configuration.
    pub fn config(&self) -> AppConfig {
        AppConfig::new(self.parallelism, self.parallelism_per_kpu)
    }
}

/// The last scaling the controller started.
#[derive(JsonSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LastScaling {
    /// When `UpdateApplication` was called.
    pub time: Time,
    /// When the application was running again with the new configuration (or the operation
    /// ended otherwise).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<Time>,
    /// Configuration before.
    pub from: ConfigStatus,
    /// Configuration asked for.
    pub to: ConfigStatus,
    /// The diagnosed cause that prompted it.
    #[schemars(schema_with = "string_schema")]
    pub cause: Cause,
    /// The decision's CamelCase reason, e.g. `ScaleUpRequired`.
    pub reason: String,
    /// The service's operation id (`ListApplicationOperations`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation_id: Option<String>,
    /// `InProgress`, `Succeeded` or `Failed`.
    #[schemars(schema_with = "string_schema")]
    pub outcome: Outcome,
    /// Details, e.g. the service's failure message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// An `UpdateApplication` the controller started and has not yet seen finish.
///
/// NB: the controller writes this *before* calling `UpdateApplication`, when the operation
/// id is not known yet. A restarted controller that finds it without an `operationId`
/// compares the application's version with `versionIdBefore`: a higher version means the
/// call went through (find it with `ListApplicationOperations`), the same version means it
/// never did.
#[derive(JsonSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OperationInFlight {
    /// The service's operation id, once `UpdateApplication` has returned it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation_id: Option<String>,
    /// Configuration before.
    pub from: ConfigStatus,
    /// Configuration asked for.
    pub to: ConfigStatus,
    /// When the controller decided to call `UpdateApplication`.
    pub started_at: Time,
    /// `ApplicationVersionId` before the call.
    pub version_id_before: i64,
    /// The ARN of the application it was sent to: an intent is never judged on another
    /// application (the budget retargeted, or the application recreated).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub application_arn: Option<String>,
    /// The diagnosed cause that prompted it.
    #[schemars(schema_with = "string_schema")]
    pub cause: Cause,
    /// The decision's CamelCase reason, e.g. `ScaleUpRequired`.
    pub reason: String,
    /// The representative checkpoint duration (ms) that prompted it, to judge afterwards
    /// whether the scaling helped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint_duration_before_ms: Option<f64>,
    /// The input rate (`numRecordsInPerSecond`) when it was decided, to tell "scaling did
    /// not help" apart from "the load changed meanwhile".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub records_in_before_per_second: Option<f64>,
}

impl OperationInFlight {
    /// The intent to scale from `from` to `to` on the strength of `decision`, decided at
    /// `at` while the application was at `version_id_before`; the operation id is filled in
    /// once `UpdateApplication` returns it.
    pub fn started(
        at: Timestamp,
        from: AppConfig,
        to: AppConfig,
        version_id_before: i64,
        decision: &Decision,
    ) -> Self {
        let record = ScalingRecord::started(at, from, to, decision);
        Self {
            operation_id: None,
            from: from.into(),
            to: to.into(),
            started_at: Time(at),
            version_id_before,
            application_arn: None,
            cause: record.cause,
            reason: decision.reason.as_str().to_owned(),
            checkpoint_duration_before_ms: record.checkpoint_duration_before_ms,
            records_in_before_per_second: record.records_in_before_per_second,
        }
    }

    /// The policy's record of this operation, still in progress.
    pub fn to_scaling_record(&self) -> ScalingRecord {
        ScalingRecord {
            at: self.started_at.0,
            completed_at: None,
            from: self.from.into(),
            to: self.to.into(),
            cause: self.cause,
            checkpoint_duration_before_ms: self.checkpoint_duration_before_ms,
            outcome: Outcome::InProgress,
            records_in_before_per_second: self.records_in_before_per_second,
        }
    }
}

/// What the decision engine remembers between evaluations.
#[derive(JsonSchema, Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ScalingHistory {
    /// Past scalings, oldest first (the last 20).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scalings: Vec<ScalingRecordStatus>,
    /// Recent recommendations, oldest first, for the scale-down stabilization window (the
    /// last 200).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub recommendations: Vec<RecommendationRecordStatus>,
    /// The recent restarts of the application, whoever made them, oldest first (the last
    /// 10): read from its operations (`ListApplicationOperations`), so a deploy, the
    /// service's maintenance or autoscaling, and the scalings of a budget deleted or
    /// recreated meanwhile all count for the cooldowns and the warm-up. A cache of what the
    /// application says; it is read again whenever the application's version moves.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub restarts: Vec<RestartStatus>,
    /// The ARN of the application this history is about: when the budget names another
    /// one (or the application is recreated), the history starts afresh.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub application: Option<String>,
    /// The `ApplicationVersionId` at which the application's operations were last read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operations_read_at_version: Option<i64>,
    /// Minutes judged within and outside the budget over the error budget's rolling
    /// period, in at most 24 buckets, oldest first (only with `objectives.target`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub slo_minutes: Vec<SloBucketStatus>,
    /// Up to when minutes were counted into `sloMinutes`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slo_accounted_until: Option<Time>,
    /// The checkpoints of the latest evaluation within budget, in the configuration they ran
    /// in: a later breach at about the same size, many times slower, is not the state's doing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline: Option<CheckpointBaselineStatus>,
    /// The CPU at the lowest and the highest input rate of the last day in the running
    /// configuration: the part of the CPU the input does not drive, so that where a
    /// configuration saturates is not extrapolated through zero.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_span: Option<CpuSpanStatus>,
}

/// CPU against the input rate in one configuration.
#[derive(JsonSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CpuSpanStatus {
    /// `Parallelism` both points ran at.
    pub parallelism: u32,
    /// `ParallelismPerKPU` both points ran at.
    pub parallelism_per_kpu: u32,
    /// The evaluation at the lowest input rate.
    pub low: CpuPointStatus,
    /// The evaluation at the highest input rate.
    pub high: CpuPointStatus,
    /// The CPU floor (% of each KPU's vCPU the input does not drive) fitted in an earlier
    /// configuration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub floor_percent: Option<f64>,
}

/// One evaluation's CPU at its input rate.
#[derive(JsonSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CpuPointStatus {
    /// When it was judged.
    pub at: Time,
    /// `numRecordsInPerSecond`.
    pub records_per_second: f64,
    /// `cpuUtilization`, %.
    pub cpu_percent: f64,
}

impl From<&CpuSpan> for CpuSpanStatus {
    fn from(s: &CpuSpan) -> Self {
        let point = |p: &CpuPoint| CpuPointStatus {
            at: Time(p.at),
            records_per_second: p.records_per_second,
            cpu_percent: p.cpu_percent,
        };
        Self {
            parallelism: s.config.parallelism,
            parallelism_per_kpu: s.config.parallelism_per_kpu,
            low: point(&s.low),
            high: point(&s.high),
            floor_percent: s.floor_percent,
        }
    }
}

impl From<&CpuSpanStatus> for CpuSpan {
    fn from(s: &CpuSpanStatus) -> Self {
        let point = |p: &CpuPointStatus| CpuPoint {
            at: p.at.0,
            records_per_second: p.records_per_second,
            cpu_percent: p.cpu_percent,
        };
        Self {
            config: AppConfig::new(s.parallelism, s.parallelism_per_kpu),
            low: point(&s.low),
            high: point(&s.high),
            floor_percent: s.floor_percent,
        }
    }
}

/// The checkpoints of the latest evaluation within budget.
#[derive(JsonSchema, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CheckpointBaselineStatus {
    /// When they were judged.
    pub at: Time,
    /// `Parallelism` they ran at.
    pub parallelism: u32,
    /// `ParallelismPerKPU` they ran at.
    pub parallelism_per_kpu: u32,
    /// Their representative duration, in milliseconds.
    pub duration_ms: u64,
    /// The largest checkpoint size among them, in bytes.
    pub size_bytes: u64,
}

impl From<&CheckpointBaseline> for CheckpointBaselineStatus {
    fn from(b: &CheckpointBaseline) -> Self {
        Self {
            at: Time(b.at),
            parallelism: b.config.parallelism,
            parallelism_per_kpu: b.config.parallelism_per_kpu,
            // NB: rounded to whole milliseconds and bytes (saturating casts of finite,
            // non-negative figures: `remember_baseline` records no other).
            duration_ms: b.duration_ms.round() as u64,
            size_bytes: b.size_bytes.round() as u64,
        }
    }
}

impl From<&CheckpointBaselineStatus> for CheckpointBaseline {
    fn from(b: &CheckpointBaselineStatus) -> Self {
        Self {
            at: b.at.0,
            config: AppConfig::new(b.parallelism, b.parallelism_per_kpu),
            duration_ms: b.duration_ms as f64,
            size_bytes: b.size_bytes as f64,
        }
    }
}

/// Minutes counted in one bucket of the error budget's rolling period.
#[derive(JsonSchema, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SloBucketStatus {
    /// Start of the bucket.
    pub start: Time,
    /// Minutes judged in the bucket.
    pub minutes: u32,
    /// Of those, minutes outside the checkpoint budget.
    pub bad_minutes: u32,
}

/// The error budget (`objectives.target` over `objectives.period`): what is left and how
/// fast it burns.
#[derive(JsonSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ErrorBudgetStatus {
    /// What is left of the period's allowance, e.g. `62.5%` (negative once overspent).
    pub remaining: String,
    /// Minutes outside the budget still allowed within the period (negative once
    /// overspent).
    pub remaining_minutes: i64,
    /// Minutes outside the budget the period allows: `(1 - target) × period`.
    pub allowed_minutes: i64,
    /// Minutes outside the budget counted within the period.
    pub bad_minutes: u64,
    /// How fast the budget burns in the latest twenty-fourth of the period, e.g. `2.5`
    /// (`1` spends exactly the allowance over the period; `0` spends nothing).
    pub burn_rate: String,
    /// Whether planned restarts (scale-downs) are held back to keep what is left.
    pub spending_stopped: bool,
}

impl ErrorBudgetStatus {
    /// The status form of the policy's error budget state, with whether planned restarts
    /// are held back (`policy::spending_stopped`).
    pub fn new(state: &ErrorBudgetState, spending_stopped: bool) -> Self {
        Self {
            remaining: format!("{:.1}%", state.remaining_share * 100.0),
            remaining_minutes: state.remaining_minutes.floor() as i64,
            allowed_minutes: state.allowed_minutes.floor() as i64,
            bad_minutes: state.bad_minutes,
            burn_rate: if state.burn_rate.is_finite() {
                format!("{:.2}", state.burn_rate)
            } else {
                "Inf".to_owned()
            },
            spending_stopped,
        }
    }
}

/// One restart of the application, whoever made it.
#[derive(JsonSchema, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RestartStatus {
    /// The operation that restarted it (`ListApplicationOperations`), if one did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation_id: Option<String>,
    /// What restarted it: the operation (`UpdateApplication`, `RollbackApplication`,
    /// `StartApplication`, a system operation), or `RunningParallelismChanged` for a change of
    /// the running parallelism at the same version (the service's own autoscaling).
    pub cause: String,
    /// When it began.
    pub at: Time,
    /// When the application ran again (absent while it restarts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<Time>,
}

impl From<&RestartStatus> for crate::policy::RestartRecord {
    fn from(r: &RestartStatus) -> Self {
        Self {
            at: r.at.0,
            completed_at: r.completed_at.as_ref().map(|t| t.0),
        }
    }
}

/// One past scaling.
#[derive(JsonSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ScalingRecordStatus {
    /// When `UpdateApplication` was called.
    pub at: Time,
    /// When the application was running again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<Time>,
    /// Configuration before.
    pub from: ConfigStatus,
    /// Configuration asked for.
    pub to: ConfigStatus,
    /// The diagnosed cause.
    #[schemars(schema_with = "string_schema")]
    pub cause: Cause,
    /// The checkpoint duration (ms) that prompted it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint_duration_before_ms: Option<f64>,
    /// `InProgress`, `Succeeded` or `Failed`.
    #[schemars(schema_with = "string_schema")]
    pub outcome: Outcome,
    /// The input rate (`numRecordsInPerSecond`) when it was decided.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub records_in_before_per_second: Option<f64>,
}

impl From<&ScalingRecord> for ScalingRecordStatus {
    fn from(r: &ScalingRecord) -> Self {
        Self {
            at: Time(r.at),
            completed_at: r.completed_at.map(Time),
            from: r.from.into(),
            to: r.to.into(),
            cause: r.cause,
            checkpoint_duration_before_ms: r.checkpoint_duration_before_ms,
            outcome: r.outcome,
            records_in_before_per_second: r.records_in_before_per_second,
        }
    }
}

impl From<&ScalingRecordStatus> for ScalingRecord {
    fn from(r: &ScalingRecordStatus) -> Self {
        Self {
            at: r.at.0,
            completed_at: r.completed_at.as_ref().map(|t| t.0),
            from: r.from.into(),
            to: r.to.into(),
            cause: r.cause,
            checkpoint_duration_before_ms: r.checkpoint_duration_before_ms,
            outcome: r.outcome,
            records_in_before_per_second: r.records_in_before_per_second,
        }
    }
}

/// One past recommendation.
#[derive(JsonSchema, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RecommendationRecordStatus {
    /// When it was made.
    pub at: Time,
    /// Recommended `Parallelism`.
    pub parallelism: u32,
    /// Recommended `ParallelismPerKPU`.
    pub parallelism_per_kpu: u32,
}

impl From<&RecommendationRecord> for RecommendationRecordStatus {
    fn from(r: &RecommendationRecord) -> Self {
        Self {
            at: Time(r.at),
            parallelism: r.config.parallelism,
            parallelism_per_kpu: r.config.parallelism_per_kpu,
        }
    }
}

impl From<&RecommendationRecordStatus> for RecommendationRecord {
    fn from(r: &RecommendationRecordStatus) -> Self {
        Self {
            at: r.at.0,
            config: AppConfig::new(r.parallelism, r.parallelism_per_kpu),
        }
    }
}

fn newest<T>(items: &[T], keep: usize) -> &[T] {
    &items[items.len().saturating_sub(keep)..]
}

impl ScalingHistory {
    /// The status form of the policy's history, keeping the newest
    /// [`MAX_HISTORY_SCALINGS`] scalings and [`MAX_HISTORY_RECOMMENDATIONS`] recommendations.
    ///
    /// NB: timestamps in status have whole-second precision (Kubernetes `Time`), so a
    /// round trip truncates sub-second parts.
    pub fn from_history(history: &History) -> Self {
        Self {
            scalings: newest(&history.scalings, MAX_HISTORY_SCALINGS)
                .iter()
                .map(Into::into)
                .collect(),
            recommendations: newest(&history.recommendations, MAX_HISTORY_RECOMMENDATIONS)
                .iter()
                .map(Into::into)
                .collect(),
            restarts: Vec::new(),
            application: None,
            operations_read_at_version: None,
            slo_minutes: history
                .slo_minutes
                .iter()
                .map(|b| SloBucketStatus {
                    start: Time(b.start),
                    minutes: b.minutes,
                    bad_minutes: b.bad_minutes,
                })
                .collect(),
            slo_accounted_until: history.slo_accounted_until.map(Time),
            baseline: history.baseline.as_ref().map(Into::into),
            cpu_span: history.cpu_span.as_ref().map(Into::into),
        }
    }

    /// The policy's history.
    pub fn to_history(&self) -> History {
        History {
            scalings: self.scalings.iter().map(Into::into).collect(),
            restarts: self.restarts.iter().map(Into::into).collect(),
            recommendations: self.recommendations.iter().map(Into::into).collect(),
            slo_minutes: self
                .slo_minutes
                .iter()
                .map(|b| SloBucket {
                    start: b.start.0,
                    minutes: b.minutes,
                    bad_minutes: b.bad_minutes,
                })
                .collect(),
            slo_accounted_until: self.slo_accounted_until.as_ref().map(|t| t.0),
            baseline: self.baseline.as_ref().map(Into::into),
            cpu_span: self.cpu_span.as_ref().map(Into::into),
        }
    }
}

impl CheckpointBudgetStatus {
    /// The policy's history as persisted here (empty when there is none yet).
    pub fn to_history(&self) -> History {
        self.history
            .as_ref()
            .map(ScalingHistory::to_history)
            .unwrap_or_default()
    }

    /// Persists the policy's history (bounded, see [`ScalingHistory::from_history`]),
    /// keeping what the status records of the application's own restarts.
    pub fn set_history(&mut self, history: &History) {
        let mut next = ScalingHistory::from_history(history);
        if let Some(old) = self.history.take() {
            next.restarts = old.restarts;
            next.application = old.application;
            next.operations_read_at_version = old.operations_read_at_version;
        }
        self.history = Some(next);
    }

    /// The condition of type `type_`, if set.
    pub fn condition(&self, type_: &str) -> Option<&Condition> {
        self.conditions.iter().find(|c| c.type_ == type_)
    }
}

/// A plain string: policy enums are written under their serde names without an `enum`
/// list, so a new variant never makes the API server refuse a status update.
fn string_schema(_: &mut SchemaGenerator) -> Schema {
    json_schema!({"type": "string"})
}

/// Standard Kubernetes conditions: a list keyed by `type`, as server-side apply expects.
fn conditions_schema(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "array",
        "x-kubernetes-list-type": "map",
        "x-kubernetes-list-map-keys": ["type"],
        "items": {
            "type": "object",
            "properties": {
                "lastTransitionTime": {"format": "date-time", "type": "string"},
                "message": {"type": "string", "maxLength": 32768},
                "observedGeneration": {"type": "integer", "format": "int64", "minimum": 0},
                "reason": {"type": "string", "maxLength": 1024},
                "status": {"type": "string", "enum": ["True", "False", "Unknown"]},
                "type": {"type": "string", "maxLength": 316}
            },
            "required": ["lastTransitionTime", "message", "reason", "status", "type"]
        }
    })
}

/// Which signals the controller had for an application, for status and `recommend`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SignalsReport {
    /// `MetricsLevel` as `DescribeApplication` reported it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics_level: Option<String>,
    /// `RuntimeEnvironment`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime: Option<String>,
    /// The restart count read (`fullRestarts`, or `numRestarts` from Flink 2.2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restarts_metric: Option<String>,
    /// `GetMetricData` queries per evaluation.
    #[serde(default)]
    pub queries: u32,
    /// The signals read.
    #[serde(default)]
    pub available: Vec<String>,
    /// The signals the policy could use and did not have, and why.
    #[serde(default)]
    pub missing: Vec<String>,
    /// What the team could switch on for better decisions, and its cost.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub advice: Option<String>,
}
