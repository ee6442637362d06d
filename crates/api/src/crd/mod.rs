//! The `CheckpointBudget` custom resource (`checkpoint-autoscaler.dev/v1alpha1`): spec,
//! status and the CRD generated from them.
//!
//! The Rust types are the single source: the CRD YAML (`checkpoint-autoscaler crd`,
//! `crds/checkpointbudget.yaml`), its CEL rules and the offline `validate` subcommand all
//! come from the derives here.

pub mod admission;
mod duration;
pub(crate) mod quantity;
mod status;

use std::time::Duration;

use kube::{CustomResource, CustomResourceExt, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use duration::{
    DURATION_MAX_LENGTH, DURATION_PATTERN, DURATION_POSITIVE_MESSAGE, DURATION_POSITIVE_RULE, DurationError,
    KubeDuration, format_duration, parse_duration,
};
pub use quantity::{
    ByteQuantity, QUANTITY_MAX_LENGTH, QUANTITY_PATTERN, QuantityError, format_bytes, parse_quantity,
};
pub use status::*;

use crate::policy::{Budget, ErrorBudget};

/// API group of the resource.
pub const GROUP: &str = "checkpoint-autoscaler.dev";
/// API version of the resource.
pub const VERSION: &str = "v1alpha1";
/// Kind of the resource.
pub const KIND: &str = "CheckpointBudget";

/// Lowest `ParallelismPerKPU` the service accepts (the policy's range, one constant).
pub const SERVICE_PER_KPU_MIN: u32 = crate::policy::SERVICE_PER_KPU.0;
/// Highest `ParallelismPerKPU` the service accepts (Managed Flink developer guide,
/// "Application scaling").
pub const SERVICE_PER_KPU_MAX: u32 = crate::policy::SERVICE_PER_KPU.1;
/// Flink's upper bound on `maxParallelism` (key groups): 2^15. `Parallelism` itself has
/// no fixed service maximum (it is bounded by the KPU quota, which can be raised), so this
/// is also the ceiling for every parallelism bound.
pub const FLINK_MAX_PARALLELISM: u32 = 32_768;

/// Longest `objectives.window`: every evaluation reads the whole window from CloudWatch, one
/// datapoint per metric and minute (CloudWatch keeps one-minute datapoints for 15 days), so
/// the window bounds what each reconcile reads and holds: 1440 periods at most.
pub const MAX_WINDOW: Duration = Duration::from_secs(24 * 3600);

/// The schema pattern of `objectives.target`: a percentage strictly between 0 and 100 with at
/// most four decimals, e.g. `99.5%`, `99.95%`, `90%`.
pub const TARGET_PATTERN: &str = "^([1-9][0-9]?(\\.[0-9]{1,4})?|0\\.[0-9]{0,3}[1-9])%$";

/// Shortest `objectives.period`: the error budget is counted in 24 buckets of a period.
pub const MIN_PERIOD: Duration = Duration::from_secs(3600);

/// Longest `objectives.period`: 90 days (`2160h`), a quarter, the longest SLO period in
/// common use.
pub const MAX_PERIOD: Duration = Duration::from_secs(90 * 24 * 3600);

/// `objectives.period` when `objectives.target` is set without one: 30 days.
pub const DEFAULT_PERIOD: Duration = Duration::from_secs(30 * 24 * 3600);

/// The message of the rule that `objectives.period` needs `objectives.target`.
pub const PERIOD_NEEDS_TARGET_MESSAGE: &str =
    "objectives.period needs objectives.target: the period is the one the target is met over";

/// Highest `objectives.maxFailedCheckpoints` accepted (a sanity bound, far above any real
/// window's checkpoint count).
pub const MAX_FAILED_CHECKPOINTS: u32 = 1_000_000;

/// The message of the rule that `maxKpus` can run `parallelism.min`.
pub const MAX_KPUS_MESSAGE: &str = "maxKpus is too low to run parallelism.min at parallelism.perKpu.max: \
     raise maxKpus to at least parallelism.min / perKpu.max (rounded up), or lower parallelism.min";
/// The message of the rule that `parallelism.max` is at most `maxParallelism`.
pub const MAX_PARALLELISM_MESSAGE: &str = "parallelism.max exceeds parallelism.maxParallelism: state cannot be \
     restored above the key groups of the job; lower parallelism.max (or correct maxParallelism)";

/// Pattern of a Managed Flink application name (API reference, `ApplicationName`).
pub const APPLICATION_NAME_PATTERN: &str = "^[a-zA-Z0-9_.-]+$";
/// Pattern of an AWS region name such as `eu-west-1` or `us-gov-west-1`.
pub const REGION_PATTERN: &str = "^[a-z]{2}(-[a-z]+)+-[0-9]+$";
/// Pattern of an IAM role ARN in any partition.
pub const ROLE_ARN_PATTERN: &str = "^arn:aws(-[a-z]+)*:iam::[0-9]{12}:role/[A-Za-z0-9+=,.@_/-]{1,512}$";

/// A checkpoint budget for one Amazon Managed Service for Apache Flink application: the
/// checkpoint SLO, the bounds within which the controller may change `Parallelism` and
/// `ParallelismPerKPU` to meet it, and how cautiously it acts.
#[derive(CustomResource, KubeSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[kube(
    group = "checkpoint-autoscaler.dev",
    version = "v1alpha1",
    kind = "CheckpointBudget",
    namespaced,
    shortname = "ckb",
    status = "CheckpointBudgetStatus",
    derive = "PartialEq",
    cel,
    doc = "A checkpoint budget for an Amazon Managed Service for Apache Flink application. See `spec`.",
    printcolumn = r#"{"name": "Application", "type": "string", "jsonPath": ".spec.application.name"}"#,
    printcolumn = r#"{"name": "Mode", "type": "string", "jsonPath": ".spec.mode"}"#,
    printcolumn = r#"{"name": "Ready", "type": "string", "jsonPath": ".status.conditions[?(@.type==\"Ready\")].status", "description": "The controller can observe the application and act on it"}"#,
    printcolumn = r#"{"name": "Parallelism", "type": "integer", "jsonPath": ".status.application.parallelism"}"#,
    printcolumn = r#"{"name": "Per-KPU", "type": "integer", "jsonPath": ".status.application.parallelismPerKpu", "priority": 1}"#,
    printcolumn = r#"{"name": "KPUs", "type": "integer", "jsonPath": ".status.application.kpus"}"#,
    printcolumn = r#"{"name": "Checkpoint", "type": "string", "jsonPath": ".status.checkpoints.lastDuration", "description": "Latest checkpoint duration in the evaluation window"}"#,
    printcolumn = r#"{"name": "Budget", "type": "string", "jsonPath": ".spec.objectives.maxCheckpointDuration"}"#,
    printcolumn = r#"{"name": "SLO Met", "type": "string", "jsonPath": ".status.conditions[?(@.type==\"SloMet\")].status"}"#,
    printcolumn = r#"{"name": "Recommended", "type": "string", "jsonPath": ".status.recommendation.summary", "priority": 1, "description": "The configuration the controller considers right"}"#,
    printcolumn = r#"{"name": "Cause", "type": "string", "jsonPath": ".status.diagnosis.cause", "priority": 1, "description": "Why checkpoints behave as they do"}"#,
    printcolumn = r#"{"name": "Error Budget", "type": "string", "jsonPath": ".status.errorBudget.remaining", "priority": 1, "description": "What is left of the error budget (objectives.target over objectives.period)"}"#,
    printcolumn = r#"{"name": "Burn", "type": "string", "jsonPath": ".status.errorBudget.burnRate", "priority": 1, "description": "How fast the error budget burns (1: exactly the allowance over the period)"}"#,
    printcolumn = r#"{"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}"#
)]
// NB: static messages only. A `messageExpression` that concatenates `string(<int>)` reads
// better, but the API server cannot bound the size of `string(int)` and refuses the whole CRD
// ("estimated messageExpression cost exceeds budget"; see crates/api/src/crd/admission). `validate` and
// the controller's own errors say the numbers.
#[x_kube(validation = Rule::new(
    "!has(self.maxKpus) || self.maxKpus * self.parallelism.perKpu.max >= self.parallelism.min"
).message(MAX_KPUS_MESSAGE).field_path(".maxKpus").reason(Reason::FieldValueInvalid))]
#[serde(rename_all = "camelCase")]
#[schemars(transform = kubernetes_int_formats)]
pub struct CheckpointBudgetSpec {
    /// The Managed Service for Apache Flink application this budget governs.
    pub application: ApplicationRef,
    /// What "within budget" means: the checkpoint SLO and the window it is judged over.
    pub objectives: Objectives,
    /// The bounds within which the controller may set `Parallelism` and `ParallelismPerKPU`.
    pub parallelism: ParallelismBounds,
    /// Optional cost cap: the controller never chooses a configuration needing more KPUs
    /// (KPUs = ceil(parallelism / parallelismPerKpu)). Must allow `parallelism.min` at
    /// `parallelism.perKpu.max`. Unset means no cap beyond the service's KPU quota.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "max_kpus_schema")]
    pub max_kpus: Option<u32>,
    /// How cautiously the controller scales: cooldowns after a scaling, and how long a lower
    /// recommendation must hold before it scales down. Every change restarts the job from a
    /// snapshot, so these are deliberately long.
    #[serde(default)]
    pub behavior: Behavior,
    /// `Enforce` changes the application; `Recommend` only writes the recommendation to status
    /// and Events (a dry run); `Paused` observes and reports but recommends nothing.
    #[serde(default)]
    pub mode: Mode,
    /// What to do with the service's own CPU-based automatic scaling (`AutoScalingEnabled`).
    /// `Disable` turns it off so the two do not fight (recommended); `Keep` leaves it as it is
    /// and the controller only acts while the application is not autoscaling.
    #[serde(default)]
    pub service_auto_scaling: ServiceAutoScaling,
    /// Whether the controller may restart an application whose restart does not resume
    /// from its current state: snapshots off (`ApplicationSnapshotConfiguration`
    /// `SnapshotsEnabled: false`), or a restore configuration of `SKIP_RESTORE_FROM_SNAPSHOT`
    /// or `RESTORE_FROM_CUSTOM_SNAPSHOT` (which takes the job back to that snapshot). Every
    /// change of parallelism restarts the job. Default `false`: such an application is not
    /// scaled, and the `Scaling` condition says why and what to change. The controller never
    /// changes how an application restores; set this only for a job that may lose its state.
    #[serde(default)]
    pub allow_state_loss: bool,
    /// What happens to the application when this budget is deleted. `Restore` (default)
    /// gives it back as the controller found it: the service's own autoscaling is turned
    /// back on if the controller turned it off (one more restart, under the same snapshot
    /// safety; a finalizer holds the deletion until then, at most 10 minutes). `Leave`
    /// leaves it as it is.
    #[serde(default)]
    pub on_delete: OnDelete,
}

/// What happens to the application when its budget is deleted.
#[derive(JsonSchema, Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum OnDelete {
    /// Give the application back as the controller found it (the service's own autoscaling
    /// as it was).
    #[default]
    Restore,
    /// Leave the application as it is.
    Leave,
}

/// Which application, where, and with which role.
#[derive(KubeSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApplicationRef {
    /// Name of the Managed Service for Apache Flink application (1 to 128 characters:
    /// letters, digits, `_`, `.` and `-`).
    #[schemars(length(min = 1, max = 128), pattern(APPLICATION_NAME_PATTERN))]
    pub name: String,
    /// AWS region of the application, e.g. `eu-west-1`. Unset means the controller's region.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 32), pattern(REGION_PATTERN))]
    pub region: Option<String>,
    /// IAM role the controller assumes to observe and update this application, e.g.
    /// `arn:aws:iam::111122223333:role/flink-scaler`. Unset means the controller's own
    /// identity. Subject to the controller's tenancy policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 2048), pattern(ROLE_ARN_PATTERN))]
    pub role_arn: Option<String>,
}

/// The checkpoint SLO.
#[derive(KubeSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[x_kube(validation = Rule::new("!has(self.period) || has(self.target)").message(PERIOD_NEEDS_TARGET_MESSAGE).field_path(".period").reason(Reason::FieldValueRequired))]
#[serde(rename_all = "camelCase")]
pub struct Objectives {
    /// The SLO on the application's `lastCheckpointDuration` metric: a duration such as
    /// `90s`, `2m` or `1h30m`.
    pub max_checkpoint_duration: KubeDuration,
    /// Optional SLO on the `lastCheckpointSize` metric, as a Kubernetes quantity such as
    /// `512Mi` or `8Gi` (or a number of bytes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_checkpoint_size: Option<ByteQuantity>,
    /// Failed checkpoints tolerated per window before the budget counts as missed. Isolated
    /// transient failures within this allowance never cause scaling.
    #[serde(default)]
    #[schemars(range(max = MAX_FAILED_CHECKPOINTS))]
    pub max_failed_checkpoints: u32,
    /// The evaluation window the SLO is judged over: at least one metric period (`1m`), at
    /// most `24h` (every evaluation reads the whole window from CloudWatch, one datapoint per
    /// metric and minute).
    #[serde(default = "default_window")]
    #[x_kube(validation = Rule::new("duration(self) >= duration('1m')").message("must be at least 1m, one CloudWatch metric period"))]
    #[x_kube(validation = Rule::new("duration(self) <= duration('24h')").message("must be at most 24h: every evaluation reads the whole window from CloudWatch, one datapoint per metric and minute"))]
    pub window: KubeDuration,
    /// Optional error budget: the share of minutes to keep within the budget over
    /// `period`, as a percentage strictly between 0 and 100, e.g. `99.5%`. What is left of
    /// the allowance (`(100% - target) × period`) is what the controller spends on planned
    /// restarts (scale-downs); it stops spending when it runs low. See
    /// docs/error-budget.md.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 2, max = 8), pattern(TARGET_PATTERN))]
    pub target: Option<String>,
    /// The rolling period of `target`: at least `1h`, at most `2160h` (90 days); default
    /// `720h` (30 days). Kubernetes durations have no day unit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("duration(self) >= duration('1h')").message("must be at least 1h"))]
    #[x_kube(validation = Rule::new("duration(self) <= duration('2160h')").message("must be at most 2160h (90 days)"))]
    pub period: Option<KubeDuration>,
}

/// Bounds on `Parallelism` and `ParallelismPerKPU`.
#[derive(KubeSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[x_kube(validation = Rule::new("self.min <= self.max").message("parallelism.min must not exceed parallelism.max").field_path(".min"))]
#[x_kube(validation = Rule::new("self.max <= self.maxParallelism").message(MAX_PARALLELISM_MESSAGE).field_path(".max"))]
#[serde(rename_all = "camelCase")]
pub struct ParallelismBounds {
    /// Lowest `Parallelism` the controller may set.
    #[schemars(range(min = 1, max = 32768))]
    pub min: u32,
    /// Highest `Parallelism` the controller may set; never exceeded. At most `maxParallelism`.
    #[schemars(range(min = 1, max = 32768))]
    pub max: u32,
    /// The Flink job's maximum parallelism (number of key groups). State cannot be restored
    /// above it, and the controller prefers parallelisms that divide it evenly.
    #[schemars(range(min = 1, max = 32768))]
    pub max_parallelism: u32,
    /// Allowed `ParallelismPerKPU` (the service accepts 1 to 8). Lower values give each
    /// subtask more memory (a KPU has 4 GiB) and CPU; higher values cost fewer KPUs.
    /// Defaults to 1..4, which keeps at least 1 GiB per subtask.
    #[serde(default)]
    pub per_kpu: PerKpuBounds,
}

/// Bounds on `ParallelismPerKPU`.
#[derive(KubeSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[x_kube(validation = Rule::new("self.min <= self.max").message("perKpu.min must not exceed perKpu.max").field_path(".min"))]
#[serde(rename_all = "camelCase")]
pub struct PerKpuBounds {
    /// Lowest `ParallelismPerKPU` the controller may set (1 to 8).
    #[serde(default = "default_per_kpu_min")]
    #[schemars(range(min = 1, max = 8))]
    pub min: u32,
    /// Highest `ParallelismPerKPU` the controller may set (1 to 8).
    #[serde(default = "default_per_kpu_max")]
    #[schemars(range(min = 1, max = 8))]
    pub max: u32,
}

impl Default for PerKpuBounds {
    fn default() -> Self {
        Self {
            min: default_per_kpu_min(),
            max: default_per_kpu_max(),
        }
    }
}

/// Scaling behaviour.
#[derive(KubeSchema, Clone, Debug, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct Behavior {
    /// Scale-up behaviour.
    #[serde(default)]
    pub scale_up: ScaleUpBehavior,
    /// Scale-down behaviour.
    #[serde(default)]
    pub scale_down: ScaleDownBehavior,
}

/// Scale-up behaviour.
#[derive(KubeSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ScaleUpBehavior {
    /// Minimum time after any scaling before the next scale-up, e.g. `5m`.
    #[serde(default = "default_scale_up_cooldown")]
    pub cooldown: KubeDuration,
}

impl Default for ScaleUpBehavior {
    fn default() -> Self {
        Self {
            cooldown: default_scale_up_cooldown(),
        }
    }
}

/// Scale-down behaviour.
#[derive(KubeSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ScaleDownBehavior {
    /// Minimum time after any scaling before the next scale-down, e.g. `30m`.
    #[serde(default = "default_scale_down_cooldown")]
    pub cooldown: KubeDuration,
    /// How long every recommendation must have allowed the lower configuration before the
    /// controller scales down, e.g. `1h` (as the HorizontalPodAutoscaler's
    /// `stabilizationWindowSeconds`).
    #[serde(default = "default_stabilization_window")]
    pub stabilization_window: KubeDuration,
}

impl Default for ScaleDownBehavior {
    fn default() -> Self {
        Self {
            cooldown: default_scale_down_cooldown(),
            stabilization_window: default_stabilization_window(),
        }
    }
}

/// What the controller does with its decisions.
#[derive(JsonSchema, Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Mode {
    /// Change the application's parallelism when the policy decides to.
    #[default]
    Enforce,
    /// Dry run: write the recommendation to status and Events, change nothing.
    Recommend,
    /// Observe and report only; no recommendation, no change.
    Paused,
}

/// What to do with the service's CPU-based automatic scaling.
#[derive(JsonSchema, Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ServiceAutoScaling {
    /// Turn `AutoScalingEnabled` off (with the first change the controller makes).
    #[default]
    Disable,
    /// Leave `AutoScalingEnabled` as it is.
    Keep,
}

/// Rewrites schemars' unsigned integer formats (`uint32`, `uint64`) to the `int32` and
/// `int64` formats Kubernetes knows, which keeps `kubectl apply` of the CRD free of
/// "unrecognized format" warnings; the `minimum: 0` schemars adds keeps them unsigned.
pub(crate) fn kubernetes_int_formats(schema: &mut schemars::Schema) {
    fn walk(value: &mut serde_json::Value) {
        match value {
            serde_json::Value::Object(map) => {
                if let Some(serde_json::Value::String(format)) = map.get_mut("format") {
                    match format.as_str() {
                        "uint8" | "uint16" | "uint32" | "int8" | "int16" => *format = "int32".to_owned(),
                        "uint64" | "uint" | "int" => *format = "int64".to_owned(),
                        _ => {}
                    }
                }
                map.values_mut().for_each(walk);
            }
            serde_json::Value::Array(items) => items.iter_mut().for_each(walk),
            _ => {}
        }
    }
    if let Some(map) = schema.as_object_mut() {
        map.values_mut().for_each(walk);
    }
}

/// `maxKpus` without `nullable`: the API server then prunes an explicit `maxKpus: null`
/// (meaning "no cap") instead of keeping a null that the CEL rule on the spec would have to
/// guard against.
fn max_kpus_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({"type": "integer", "format": "int32", "minimum": 1, "maximum": FLINK_MAX_PARALLELISM})
}

fn default_window() -> KubeDuration {
    KubeDuration::from_std(Duration::from_secs(600))
}
fn default_per_kpu_min() -> u32 {
    1
}
fn default_per_kpu_max() -> u32 {
    4
}
fn default_scale_up_cooldown() -> KubeDuration {
    KubeDuration::from_std(Duration::from_secs(300))
}
fn default_scale_down_cooldown() -> KubeDuration {
    KubeDuration::from_std(Duration::from_secs(1800))
}
fn default_stabilization_window() -> KubeDuration {
    KubeDuration::from_std(Duration::from_secs(3600))
}

/// A spec the reconciler cannot act on: which field, what is wrong with it, and how to fix
/// it. The CRD's schema and CEL rules reject all of these at apply time; this is the guard
/// for specs that bypassed them (an older CRD, a direct write).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {problem}; {fix}")]
pub struct SpecError {
    /// The field's path, e.g. `spec.parallelism.max`.
    pub field: String,
    /// What is wrong.
    pub problem: String,
    /// How to fix it.
    pub fix: String,
}

impl SpecError {
    fn new(field: &str, problem: impl Into<String>, fix: impl Into<String>) -> Self {
        Self {
            field: field.to_owned(),
            problem: truncate_message(&problem.into()),
            fix: fix.into(),
        }
    }
}

/// Longest `problem` a [`SpecError`] carries into a status condition and an Event.
pub const MAX_PROBLEM_LENGTH: usize = 256;

/// Cuts `text` to [`MAX_PROBLEM_LENGTH`] characters, saying how long it was: the problem
/// quotes the offending value, and a value that bypassed the schema can be megabytes long
/// (the status would then be too large to write, and no one would read it).
pub fn truncate_message(text: &str) -> String {
    let chars = text.chars().count();
    if chars <= MAX_PROBLEM_LENGTH {
        return text.to_owned();
    }
    let head: String = text.chars().take(MAX_PROBLEM_LENGTH).collect();
    format!("{head}… ({chars} characters in all)")
}

fn positive_duration(field: &str, value: &KubeDuration) -> Result<Duration, SpecError> {
    let length = value.as_str().chars().count();
    if length as u64 > DURATION_MAX_LENGTH {
        return Err(SpecError::new(
            field,
            format!("is {length} characters long, more than {DURATION_MAX_LENGTH}"),
            "write a shorter duration such as 90s, 2m or 1h30m",
        ));
    }
    value.parse().map_err(|err| {
        SpecError::new(
            field,
            err.to_string(),
            "write a positive duration such as 90s, 2m or 1h30m",
        )
    })
}

impl CheckpointBudgetSpec {
    /// A spec with the required fields set and every other field at its default (as the
    /// API server would default it).
    pub fn new(
        application: impl Into<String>,
        max_checkpoint_duration: Duration,
        min: u32,
        max: u32,
        max_parallelism: u32,
    ) -> Self {
        Self {
            application: ApplicationRef {
                name: application.into(),
                region: None,
                role_arn: None,
            },
            objectives: Objectives {
                max_checkpoint_duration: KubeDuration::from_std(max_checkpoint_duration),
                max_checkpoint_size: None,
                max_failed_checkpoints: 0,
                window: default_window(),
                target: None,
                period: None,
            },
            parallelism: ParallelismBounds {
                min,
                max,
                max_parallelism,
                per_kpu: PerKpuBounds::default(),
            },
            max_kpus: None,
            behavior: Behavior::default(),
            mode: Mode::default(),
            service_auto_scaling: ServiceAutoScaling::default(),
            allow_state_loss: false,
            on_delete: OnDelete::default(),
        }
    }

    /// The spec that [`CheckpointBudgetSpec::to_budget`] turns back into `budget` (for the
    /// simulator and the demo, which start from a policy budget), in `Enforce` mode with
    /// the service's autoscaling disabled.
    pub fn from_budget(application: impl Into<String>, budget: &Budget) -> Self {
        let mut spec = Self::new(
            application,
            budget.max_checkpoint_duration,
            budget.parallelism_min,
            budget.parallelism_max,
            budget.max_parallelism,
        );
        spec.objectives.max_checkpoint_size = budget.max_checkpoint_size.map(ByteQuantity::from_bytes);
        spec.objectives.max_failed_checkpoints = budget.max_failed_checkpoints;
        spec.objectives.window = KubeDuration::from_std(budget.window);
        if let Some(eb) = &budget.error_budget {
            spec.objectives.target = Some(format_target(eb.target));
            spec.objectives.period = Some(KubeDuration::from_std(eb.period));
        }
        spec.parallelism.per_kpu = PerKpuBounds {
            min: budget.per_kpu_min,
            max: budget.per_kpu_max,
        };
        spec.max_kpus = budget.max_kpus;
        spec.behavior = Behavior {
            scale_up: ScaleUpBehavior {
                cooldown: KubeDuration::from_std(budget.scale_up_cooldown),
            },
            scale_down: ScaleDownBehavior {
                cooldown: KubeDuration::from_std(budget.scale_down_cooldown),
                stabilization_window: KubeDuration::from_std(budget.scale_down_stabilization),
            },
        };
        spec
    }

    /// Checks the spec and turns it into the policy's typed [`Budget`], with durations and
    /// sizes parsed. Applies the same checks as the CRD's schema and CEL rules, so a spec
    /// that bypassed them is reported instead of acted on.
    pub fn to_budget(&self) -> Result<Budget, SpecError> {
        check_application(&self.application)?;
        let objectives = &self.objectives;
        let (max_checkpoint_duration, window) = checkpoint_objectives(objectives)?;
        let max_checkpoint_size = max_checkpoint_size(objectives)?;
        if objectives.max_failed_checkpoints > MAX_FAILED_CHECKPOINTS {
            return Err(SpecError::new(
                "spec.objectives.maxFailedCheckpoints",
                format!("{} is out of range", objectives.max_failed_checkpoints),
                format!("use a value from 0 to {MAX_FAILED_CHECKPOINTS}"),
            ));
        }
        let p = &self.parallelism;
        check_parallelism(p)?;
        if let Some(max_kpus) = self.max_kpus {
            check_max_kpus(max_kpus, p)?;
        }
        let error_budget = error_budget(objectives)?;
        let behavior = &self.behavior;
        Ok(Budget {
            error_budget,
            max_checkpoint_duration,
            max_checkpoint_size,
            max_failed_checkpoints: objectives.max_failed_checkpoints,
            window,
            parallelism_min: p.min,
            parallelism_max: p.max,
            max_parallelism: p.max_parallelism,
            per_kpu_min: p.per_kpu.min,
            per_kpu_max: p.per_kpu.max,
            max_kpus: self.max_kpus,
            scale_up_cooldown: positive_duration(
                "spec.behavior.scaleUp.cooldown",
                &behavior.scale_up.cooldown,
            )?,
            scale_down_cooldown: positive_duration(
                "spec.behavior.scaleDown.cooldown",
                &behavior.scale_down.cooldown,
            )?,
            scale_down_stabilization: positive_duration(
                "spec.behavior.scaleDown.stabilizationWindow",
                &behavior.scale_down.stabilization_window,
            )?,
        })
    }
}

/// `spec.application`: a Managed Flink application name, an AWS region, an IAM role ARN.
fn check_application(application: &ApplicationRef) -> Result<(), SpecError> {
    let name = &application.name;
    if name.is_empty()
        || name.len() > 128
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
    {
        return Err(SpecError::new(
            "spec.application.name",
            format!("{name:?} is not a Managed Flink application name"),
            "use 1 to 128 letters, digits, '_', '.' or '-'",
        ));
    }
    if let Some(region) = &application.region
        && !is_region(region)
    {
        return Err(SpecError::new(
            "spec.application.region",
            format!("{region:?} is not an AWS region name"),
            "write a region such as eu-west-1, or leave it unset for the controller's region",
        ));
    }
    if let Some(role) = &application.role_arn
        && !is_role_arn(role)
    {
        return Err(SpecError::new(
            "spec.application.roleArn",
            format!("{role:?} is not an IAM role ARN"),
            "write an ARN such as arn:aws:iam::111122223333:role/flink-scaler, or leave it unset",
        ));
    }
    Ok(())
}

/// `objectives.maxCheckpointDuration` and `objectives.window` (one metric period to 24h).
fn checkpoint_objectives(objectives: &Objectives) -> Result<(Duration, Duration), SpecError> {
    let max_checkpoint_duration = positive_duration(
        "spec.objectives.maxCheckpointDuration",
        &objectives.max_checkpoint_duration,
    )?;
    let window = positive_duration("spec.objectives.window", &objectives.window)?;
    if window < Duration::from_secs(60) {
        return Err(SpecError::new(
            "spec.objectives.window",
            format!("{} is shorter than one metric period", objectives.window),
            "use a window of at least 1m",
        ));
    }
    if window > MAX_WINDOW {
        return Err(SpecError::new(
            "spec.objectives.window",
            format!(
                "{} is longer than {} (every evaluation reads the whole window from CloudWatch)",
                objectives.window,
                format_duration(MAX_WINDOW)
            ),
            "use a window of at most 24h",
        ));
    }
    Ok((max_checkpoint_duration, window))
}

/// `objectives.maxCheckpointSize` in bytes, when set.
fn max_checkpoint_size(objectives: &Objectives) -> Result<Option<u64>, SpecError> {
    let invalid = |message: String| {
        SpecError::new(
            "spec.objectives.maxCheckpointSize",
            message,
            "write a size such as 512Mi or 8Gi",
        )
    };
    let Some(quantity) = &objectives.max_checkpoint_size else {
        return Ok(None);
    };
    let length = quantity.to_string().chars().count();
    if length as u64 > QUANTITY_MAX_LENGTH {
        return Err(invalid(format!(
            "is {length} characters long, more than {QUANTITY_MAX_LENGTH}"
        )));
    }
    quantity.bytes().map(Some).map_err(|err| invalid(err.to_string()))
}

/// `spec.parallelism`: its bounds within Flink's and the service's ranges, and in order.
fn check_parallelism(p: &ParallelismBounds) -> Result<(), SpecError> {
    for (field, value) in [
        ("spec.parallelism.min", p.min),
        ("spec.parallelism.max", p.max),
        ("spec.parallelism.maxParallelism", p.max_parallelism),
    ] {
        if !(1..=FLINK_MAX_PARALLELISM).contains(&value) {
            return Err(SpecError::new(
                field,
                format!("{value} is out of range"),
                format!("use a value from 1 to {FLINK_MAX_PARALLELISM}"),
            ));
        }
    }
    if p.min > p.max {
        return Err(SpecError::new(
            "spec.parallelism.min",
            format!("min {} exceeds max {}", p.min, p.max),
            "lower parallelism.min or raise parallelism.max",
        ));
    }
    if p.max > p.max_parallelism {
        return Err(SpecError::new(
            "spec.parallelism.max",
            format!("max {} exceeds maxParallelism {}", p.max, p.max_parallelism),
            "lower parallelism.max to at most the job's maxParallelism (state cannot be restored above it)",
        ));
    }
    for (field, value) in [
        ("spec.parallelism.perKpu.min", p.per_kpu.min),
        ("spec.parallelism.perKpu.max", p.per_kpu.max),
    ] {
        if !(SERVICE_PER_KPU_MIN..=SERVICE_PER_KPU_MAX).contains(&value) {
            return Err(SpecError::new(
                field,
                format!("{value} is outside the service's range"),
                format!("use a value from {SERVICE_PER_KPU_MIN} to {SERVICE_PER_KPU_MAX}"),
            ));
        }
    }
    if p.per_kpu.min > p.per_kpu.max {
        return Err(SpecError::new(
            "spec.parallelism.perKpu.min",
            format!("min {} exceeds max {}", p.per_kpu.min, p.per_kpu.max),
            "lower perKpu.min or raise perKpu.max",
        ));
    }
    Ok(())
}

/// `spec.maxKpus`: in range, and enough to run `parallelism.min` at `perKpu.max`.
fn check_max_kpus(max_kpus: u32, p: &ParallelismBounds) -> Result<(), SpecError> {
    if !(1..=FLINK_MAX_PARALLELISM).contains(&max_kpus) {
        return Err(SpecError::new(
            "spec.maxKpus",
            format!("{max_kpus} is out of range"),
            format!("use a value from 1 to {FLINK_MAX_PARALLELISM}, or leave it unset for no cap"),
        ));
    }
    let needed = p.min.div_ceil(p.per_kpu.max);
    if max_kpus < needed {
        return Err(SpecError::new(
            "spec.maxKpus",
            format!(
                "{max_kpus} KPUs cannot run parallelism.min {} at perKpu.max {}",
                p.min, p.per_kpu.max
            ),
            format!("raise maxKpus to at least {needed} or lower parallelism.min"),
        ));
    }
    Ok(())
}

/// `objectives.target` and `objectives.period` checked as the schema checks them.
fn error_budget(objectives: &Objectives) -> Result<Option<ErrorBudget>, SpecError> {
    let Some(target) = &objectives.target else {
        if objectives.period.is_some() {
            return Err(SpecError::new(
                "spec.objectives.period",
                "is set without objectives.target".to_owned(),
                "set objectives.target (e.g. 99.5%) or remove objectives.period",
            ));
        }
        return Ok(None);
    };
    let Some(share) = parse_target(target) else {
        return Err(SpecError::new(
            "spec.objectives.target",
            format!("{target:?} is not a percentage strictly between 0% and 100%"),
            "write the share of minutes to keep within budget, e.g. 99.5%",
        ));
    };
    let period = match &objectives.period {
        None => DEFAULT_PERIOD,
        Some(p) => {
            let period = positive_duration("spec.objectives.period", p)?;
            if !(MIN_PERIOD..=MAX_PERIOD).contains(&period) {
                return Err(SpecError::new(
                    "spec.objectives.period",
                    format!("{p} is outside 1h..2160h"),
                    "use a period of at least 1h and at most 2160h (90 days), e.g. 720h for 30 days",
                ));
            }
            period
        }
    };
    Ok(Some(ErrorBudget {
        target: share,
        period,
    }))
}

/// The share in `99.5%` (0.995), when the text matches [`TARGET_PATTERN`]: one or two
/// digits (no leading zero) or `0`, up to four decimals, a `%`, strictly between 0 and 100.
pub fn parse_target(text: &str) -> Option<f64> {
    let number = text.strip_suffix('%')?;
    let (whole, fraction) = match number.split_once('.') {
        Some((w, f)) => (w, Some(f)),
        None => (number, None),
    };
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let whole_ok = digits(whole) && whole.len() <= 2 && (whole == "0" || !whole.starts_with('0'));
    let fraction_ok =
        fraction.is_none_or(|f| digits(f) && f.len() <= 4 && (whole != "0" || !f.ends_with('0')));
    if !whole_ok || !fraction_ok {
        return None;
    }
    let percent: f64 = number.parse().ok()?;
    (percent > 0.0 && percent < 100.0).then_some(percent / 100.0)
}

/// `0.995` as `99.5%`.
pub fn format_target(share: f64) -> String {
    let text = format!("{:.4}", share * 100.0);
    let text = text.trim_end_matches('0').trim_end_matches('.');
    format!("{text}%")
}

/// Whether `s` matches [`REGION_PATTERN`] (and the schema's length bound): `eu-west-1`,
/// `us-gov-west-1`. The reconciler's guard, written out because the crate has no regex engine
/// of its own; a test checks it against the pattern.
pub fn is_region(s: &str) -> bool {
    let mut parts = s.split('-');
    let (Some(first), Some(last)) = (parts.next(), s.rsplit('-').next()) else {
        return false;
    };
    let middle: Vec<&str> = s.split('-').skip(1).collect();
    s.len() <= 32
        && first.len() == 2
        && first.bytes().all(|b| b.is_ascii_lowercase())
        && middle.len() >= 2
        && !last.is_empty()
        && last.bytes().all(|b| b.is_ascii_digit())
        && middle[..middle.len() - 1]
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_lowercase()))
}

/// Whether `s` matches [`ROLE_ARN_PATTERN`] (and the schema's length bound):
/// `arn:aws:iam::111122223333:role/flink-scaler`, in any partition (`aws-cn`, `aws-us-gov`).
pub fn is_role_arn(s: &str) -> bool {
    let Some(rest) = s.strip_prefix("arn:aws") else {
        return false;
    };
    let Some((partition, rest)) = rest.split_once(":iam::") else {
        return false;
    };
    let Some((account, path)) = rest.split_once(":role/") else {
        return false;
    };
    s.len() <= 2048
        && partition
            .split('-')
            .skip(1)
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_lowercase()))
        && (partition.is_empty() || partition.starts_with('-'))
        && account.len() == 12
        && account.bytes().all(|b| b.is_ascii_digit())
        && (1..=512).contains(&path.len())
        && path
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+=,.@_/-".contains(&b))
}

/// The CRD as YAML, exactly as `checkpoint-autoscaler crd` prints it and
/// `crds/checkpointbudget.yaml` holds it.
pub fn crd_yaml() -> Result<String, serde_yaml::Error> {
    serde_yaml::to_string(&CheckpointBudget::crd())
}

/// The `crd` subcommand's options.
#[derive(Debug, Default, clap::Args)]
pub struct CrdArgs {
    /// Instead of the YAML, report what the Kubernetes API servers the project knows (1.25 to
    /// the newest) make of the CRD: which accept it, each rule's estimated cost against the
    /// API server's budgets, and the hazards (crates/api/src/crd/admission). Exits 1 when a version
    /// from --kubernetes on refuses it.
    #[arg(long)]
    pub admission: bool,
    /// With --admission: the oldest Kubernetes version that must accept the CRD, as `1.N`.
    #[arg(long, value_name = "1.N", requires = "admission", value_parser = parse_kube_version)]
    pub kubernetes: Option<admission::KubeVersion>,
}

fn parse_kube_version(text: &str) -> Result<admission::KubeVersion, String> {
    let minor = text
        .trim_start_matches('v')
        .strip_prefix("1.")
        .and_then(|m| m.split('.').next())
        .and_then(|m| m.parse::<u32>().ok())
        .ok_or_else(|| format!("{text:?} is not a Kubernetes version; write it as 1.N, e.g. 1.30"))?;
    if minor < admission::OLDEST_MINOR {
        return Err(format!(
            "Kubernetes {text} has no x-kubernetes-validations; the check starts at 1.{}",
            admission::OLDEST_MINOR
        ));
    }
    Ok(admission::KubeVersion::new(minor))
}

/// Prints the CRD YAML, or its admission report (the `crd` subcommand).
pub fn run_crd(args: CrdArgs) -> anyhow::Result<std::process::ExitCode> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    if !args.admission {
        out.write_all(crd_yaml()?.as_bytes())?;
        out.flush()?;
        return Ok(std::process::ExitCode::SUCCESS);
    }
    let crd = serde_json::to_value(CheckpointBudget::crd())?;
    let reports = admission::check_all(&crd)?;
    out.write_all(admission::render(&reports).as_bytes())?;
    out.flush()?;
    let from = args
        .kubernetes
        .unwrap_or_else(|| admission::KubeVersion::new(admission::NEWEST_MINOR));
    let refused = reports.iter().any(|r| r.version >= from && !r.accepted());
    Ok(if refused {
        std::process::ExitCode::FAILURE
    } else {
        std::process::ExitCode::SUCCESS
    })
}

#[cfg(test)]
mod tests;
