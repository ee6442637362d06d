//! Prometheus metrics of the controller, served on `/metrics`.
//!
//! Names carry the `checkpoint_autoscaler` prefix and, where it applies, a unit suffix
//! (`..._seconds`). AWS call counts live in the AWS clients; they are read at scrape time
//! through [`AwsCallSource`] so the counters are never copied or double counted.
//!
//! The per-budget gauges (`checkpoint_autoscaler_budget_*`, labelled `namespace` and
//! `budget`) are read at scrape time from the budgets the controller watches, through
//! [`BudgetSource`](crate::metrics::BudgetSource) (the reflector's store): each is a figure of the budget's status or spec,
//! as kube-state-metrics reads a HorizontalPodAutoscaler's. A deleted budget leaves the store
//! and so the metrics at once; nothing per budget is kept here.

use std::{
    fmt,
    sync::{Arc, Mutex},
};

use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric},
    metrics::{
        counter::{ConstCounter, Counter},
        family::Family,
        gauge::ConstGauge,
        histogram::Histogram,
    },
    registry::{Registry, Unit},
};
use tokio::time::Instant;

use crate::crd::CheckpointBudget;

/// Labels of the failure counter: which budget and which kind of error.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    /// `namespace/name` of the budget.
    pub budget: String,
    /// The error kind ([`crate::Error::metric_label`]).
    pub error: String,
}

/// Labels of the decision counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DecisionLabels {
    /// `hold`, `scale` or `blocked`.
    pub kind: String,
    /// The policy's CamelCase reason.
    pub reason: String,
}

/// Labels of the scaling counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ScalingLabels {
    /// `started`, `succeeded`, `failed` or `refused`.
    pub outcome: String,
}

/// Labels of one AWS call counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AwsCallLabels {
    /// `kinesisanalyticsv2`, `cloudwatch` or `sts`.
    pub service: String,
    /// The API operation, e.g. `GetMetricData`.
    pub operation: String,
}

/// Where the AWS call counts come from (the SDK clients count their own calls).
pub trait AwsCallSource: Send + Sync + 'static {
    /// Calls made so far, by service and operation (monotonic).
    fn calls(&self) -> Vec<(AwsCallLabels, u64)>;
    /// CloudWatch metrics requested so far (one per query in a `GetMetricData` call).
    fn metrics_requested(&self) -> u64;
}

/// The budgets the per-budget gauges describe (the reflector's store in the controller).
pub trait BudgetSource: Send + Sync + 'static {
    /// The budgets as last seen, with their status.
    fn budgets(&self) -> Vec<Arc<CheckpointBudget>>;
}

impl BudgetSource for kube::runtime::reflector::Store<CheckpointBudget> {
    fn budgets(&self) -> Vec<Arc<CheckpointBudget>> {
        self.state()
    }
}

/// The controller's metrics and the registry they are encoded from.
#[derive(Clone)]
pub struct Metrics {
    /// Reconcile runs, failures and duration.
    pub reconcile: ReconcileMetrics,
    /// Decisions by kind and reason.
    pub decisions: Family<DecisionLabels, Counter>,
    /// Scalings by outcome.
    pub scalings: Family<ScalingLabels, Counter>,
    aws: Arc<AwsCollector>,
    budgets: Arc<BudgetCollector>,
    registry: Arc<Registry>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("checkpoint_autoscaler");
        let reconcile = ReconcileMetrics::default().register(&mut registry);
        let decisions = Family::<DecisionLabels, Counter>::default();
        registry.register(
            "decisions",
            "Policy decisions by kind and reason",
            decisions.clone(),
        );
        let scalings = Family::<ScalingLabels, Counter>::default();
        registry.register(
            "scalings",
            "UpdateApplication scalings by outcome",
            scalings.clone(),
        );
        let aws = Arc::new(AwsCollector::default());
        registry.register_collector(Box::new(aws.clone()));
        let budgets = Arc::new(BudgetCollector::default());
        registry.register_collector(Box::new(budgets.clone()));
        Self {
            reconcile,
            decisions,
            scalings,
            aws,
            budgets,
            registry: Arc::new(registry),
        }
    }
}

impl Metrics {
    /// Connects the AWS clients' call counters; until then they read as absent.
    pub fn set_aws_source(&self, source: Arc<dyn AwsCallSource>) {
        if let Ok(mut slot) = self.aws.source.lock() {
            *slot = Some(source);
        }
    }

    /// Connects the budgets the per-budget gauges describe; until then there are none.
    pub fn set_budget_source(&self, source: Arc<dyn BudgetSource>) {
        if let Ok(mut slot) = self.budgets.source.lock() {
            *slot = Some(source);
        }
    }

    /// Counts one policy decision.
    pub fn decision(&self, kind: &str, reason: &str) {
        self.decisions
            .get_or_create(&DecisionLabels {
                kind: kind.to_owned(),
                reason: reason.to_owned(),
            })
            .inc();
    }

    /// Counts one scaling event (`started`, `succeeded`, `failed`, `refused`, `unknown`).
    pub fn scaling(&self, outcome: &str) {
        self.scalings
            .get_or_create(&ScalingLabels {
                outcome: outcome.to_owned(),
            })
            .inc();
    }

    /// The metrics in the Prometheus text format (OpenMetrics flavour).
    pub fn encode(&self) -> Result<String, fmt::Error> {
        let mut buffer = String::new();
        prometheus_client::encoding::text::encode(&mut buffer, &self.registry)?;
        Ok(buffer)
    }
}

/// Reconcile runs, failures by error label, and the duration histogram.
#[derive(Clone)]
pub struct ReconcileMetrics {
    /// Reconcile runs.
    pub runs: Counter,
    /// Failed reconciles by budget and error kind.
    pub failures: Family<ErrorLabels, Counter>,
    /// Reconcile duration in seconds.
    pub duration: Histogram,
    /// The error labels counted per budget, to forget a budget's label sets when it goes.
    labelled: Arc<Mutex<std::collections::BTreeMap<String, std::collections::BTreeSet<String>>>>,
}

impl Default for ReconcileMetrics {
    fn default() -> Self {
        Self {
            runs: Counter::default(),
            failures: Family::default(),
            duration: Histogram::new([0.01, 0.05, 0.1, 0.25, 0.5, 1., 2.5, 5., 15., 60.]),
            labelled: Arc::default(),
        }
    }
}

impl ReconcileMetrics {
    fn register(self, r: &mut Registry) -> Self {
        r.register("reconciles", "Reconcile runs", self.runs.clone());
        r.register(
            "reconcile_failures",
            "Failed reconciles by budget and error kind",
            self.failures.clone(),
        );
        r.register_with_unit(
            "reconcile_duration",
            "Reconcile duration",
            Unit::Seconds,
            self.duration.clone(),
        );
        self
    }

    /// Counts a failed reconcile of `budget` with the error kind `error`.
    pub fn set_failure(&self, budget: &str, error: &str) {
        if let Ok(mut labelled) = self.labelled.lock() {
            labelled
                .entry(budget.to_owned())
                .or_default()
                .insert(error.to_owned());
        }
        self.failures
            .get_or_create(&ErrorLabels {
                budget: budget.to_owned(),
                error: error.to_owned(),
            })
            .inc();
    }

    /// Forgets the failure counters of every budget that `live` does not name
    /// (`namespace/name`): a deleted budget's label sets leave `/metrics`.
    pub fn retain_budgets(&self, live: &std::collections::BTreeSet<String>) {
        let Ok(mut labelled) = self.labelled.lock() else {
            return;
        };
        labelled.retain(|budget, errors| {
            if live.contains(budget) {
                return true;
            }
            for error in errors.iter() {
                self.failures.remove(&ErrorLabels {
                    budget: budget.clone(),
                    error: error.clone(),
                });
            }
            false
        });
    }

    /// Counts a run and times it until the returned guard is dropped.
    pub fn count_and_measure(&self) -> ReconcileMeasurer {
        self.runs.inc();
        ReconcileMeasurer {
            start: Instant::now(),
            metric: self.duration.clone(),
        }
    }
}

/// Observes the reconcile duration when dropped, whichever way the reconcile ends.
pub struct ReconcileMeasurer {
    start: Instant,
    metric: Histogram,
}

impl Drop for ReconcileMeasurer {
    fn drop(&mut self) {
        self.metric.observe(self.start.elapsed().as_secs_f64());
    }
}

/// Encodes the AWS clients' counters at scrape time.
#[derive(Default)]
struct AwsCollector {
    source: Mutex<Option<Arc<dyn AwsCallSource>>>,
}

impl fmt::Debug for AwsCollector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AwsCollector").finish_non_exhaustive()
    }
}

impl Collector for AwsCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), fmt::Error> {
        // NB: clone the Arc out of the lock so a slow source never blocks `set_aws_source`.
        let source = match self.source.lock() {
            Ok(slot) => slot.clone(),
            Err(_) => None,
        };
        let Some(source) = source else {
            return Ok(());
        };
        let calls = source.calls();
        let probe = ConstCounter::new(0u64);
        let mut family = encoder.encode_descriptor(
            "aws_calls",
            "AWS API calls by service and operation",
            None,
            probe.metric_type(),
        )?;
        for (labels, count) in &calls {
            ConstCounter::new(*count).encode(family.encode_family(labels)?)?;
        }
        let requested = ConstCounter::new(source.metrics_requested());
        let metric = encoder.encode_descriptor(
            "cloudwatch_metrics_requested",
            "CloudWatch metrics requested (queries in GetMetricData calls)",
            None,
            requested.metric_type(),
        )?;
        requested.encode(metric)?;
        Ok(())
    }
}

/// Encodes the per-budget gauges from the budgets' status at scrape time.
#[derive(Default)]
struct BudgetCollector {
    source: Mutex<Option<Arc<dyn BudgetSource>>>,
}

impl fmt::Debug for BudgetCollector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BudgetCollector").finish_non_exhaustive()
    }
}

/// One per-budget gauge: its name (before the unit), help, unit and how to read it.
struct BudgetGauge {
    name: &'static str,
    help: &'static str,
    unit: Option<Unit>,
    value: fn(&CheckpointBudget) -> Option<f64>,
}

const BUDGET_GAUGES: &[BudgetGauge] = &[
    BudgetGauge {
        name: "budget_checkpoint_duration",
        help: "Latest lastCheckpointDuration in the budget's evaluation window (status.checkpoints.lastDurationMs)",
        unit: Some(Unit::Seconds),
        value: |b| Some(b.status.as_ref()?.checkpoints.as_ref()?.last_duration_ms? as f64 / 1000.0),
    },
    BudgetGauge {
        name: "budget_checkpoint_duration_max",
        help: "Highest lastCheckpointDuration in the budget's evaluation window (status.checkpoints.maxDurationMs)",
        unit: Some(Unit::Seconds),
        value: |b| Some(b.status.as_ref()?.checkpoints.as_ref()?.max_duration_ms? as f64 / 1000.0),
    },
    BudgetGauge {
        name: "budget_max_checkpoint_duration",
        help: "The budget: spec.objectives.maxCheckpointDuration",
        unit: Some(Unit::Seconds),
        value: |b| {
            b.spec
                .objectives
                .max_checkpoint_duration
                .parse()
                .ok()
                .map(|d: std::time::Duration| d.as_secs_f64())
        },
    },
    BudgetGauge {
        name: "budget_failed_checkpoints",
        help: "Failed checkpoints in the budget's evaluation window (status.checkpoints.failed)",
        unit: None,
        value: |b| Some(f64::from(b.status.as_ref()?.checkpoints.as_ref()?.failed)),
    },
    BudgetGauge {
        name: "budget_parallelism",
        help: "The application's running parallelism (status.application.parallelism)",
        unit: None,
        value: |b| Some(f64::from(b.status.as_ref()?.application.as_ref()?.parallelism)),
    },
    BudgetGauge {
        name: "budget_kpus",
        help: "The application's KPUs (status.application.kpus; the service bills one more for orchestration)",
        unit: None,
        value: |b| Some(f64::from(b.status.as_ref()?.application.as_ref()?.kpus)),
    },
    BudgetGauge {
        name: "budget_recommended_kpus",
        help: "KPUs of the recommended configuration (status.recommendation.kpus)",
        unit: None,
        value: |b| Some(f64::from(b.status.as_ref()?.recommendation.as_ref()?.kpus)),
    },
];

fn budget_labels(b: &CheckpointBudget) -> Option<Vec<(&'static str, String)>> {
    Some(vec![
        ("namespace", b.metadata.namespace.clone()?),
        ("budget", b.metadata.name.clone()?),
    ])
}

impl Collector for BudgetCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), fmt::Error> {
        let source = match self.source.lock() {
            Ok(slot) => slot.clone(),
            Err(_) => None,
        };
        let Some(source) = source else {
            return Ok(());
        };
        let mut budgets = source.budgets();
        budgets.sort_by(|a, b| {
            (&a.metadata.namespace, &a.metadata.name).cmp(&(&b.metadata.namespace, &b.metadata.name))
        });
        let probe = ConstGauge::new(0.0f64);
        for gauge in BUDGET_GAUGES {
            let mut family = encoder.encode_descriptor(
                gauge.name,
                gauge.help,
                gauge.unit.as_ref(),
                probe.metric_type(),
            )?;
            for budget in &budgets {
                let (Some(labels), Some(value)) = (budget_labels(budget), (gauge.value)(budget)) else {
                    continue;
                };
                if value.is_finite() {
                    ConstGauge::new(value).encode(family.encode_family(&labels)?)?;
                }
            }
        }
        let mut family = encoder.encode_descriptor(
            "budget_condition",
            "The budget's status conditions: 1 for the condition's current status and reason",
            None,
            probe.metric_type(),
        )?;
        for budget in &budgets {
            let (Some(labels), Some(status)) = (budget_labels(budget), budget.status.as_ref()) else {
                continue;
            };
            for c in &status.conditions {
                let mut labels = labels.clone();
                labels.extend([
                    ("type", c.type_.clone()),
                    ("status", c.status.clone()),
                    ("reason", c.reason.clone()),
                ]);
                ConstGauge::new(1.0f64).encode(family.encode_family(&labels)?)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct FixedCalls;

    impl AwsCallSource for FixedCalls {
        fn calls(&self) -> Vec<(AwsCallLabels, u64)> {
            vec![(
                AwsCallLabels {
                    service: "cloudwatch".into(),
                    operation: "GetMetricData".into(),
                },
                3,
            )]
        }

        fn metrics_requested(&self) -> u64 {
            42
        }
    }

    /// A deleted budget's failure counters leave `/metrics`; the others stay.
    #[test]
    fn the_failure_counters_of_deleted_budgets_are_forgotten() {
        let metrics = Metrics::default();
        metrics.reconcile.set_failure("ns/gone", "aws_throttled");
        metrics.reconcile.set_failure("ns/gone", "conflict");
        metrics.reconcile.set_failure("ns/kept", "conflict");
        let live = std::collections::BTreeSet::from(["ns/kept".to_owned()]);
        metrics.reconcile.retain_budgets(&live);
        let text = metrics.encode().unwrap();
        assert!(!text.contains("ns/gone"), "{text}");
        assert!(
            text.contains(
                r#"checkpoint_autoscaler_reconcile_failures_total{budget="ns/kept",error="conflict"} 1"#
            ),
            "{text}"
        );
    }

    #[test]
    fn encodes_every_family_with_prefix_and_labels() {
        let metrics = Metrics::default();
        metrics.reconcile.count_and_measure();
        metrics.reconcile.set_failure("ns/a", "aws");
        metrics.decision("scale", "ScaleUpRequired");
        metrics.scaling("started");
        metrics.set_aws_source(Arc::new(FixedCalls));
        let text = metrics.encode().unwrap();
        assert!(
            text.contains("checkpoint_autoscaler_reconciles_total 1"),
            "{text}"
        );
        assert!(
            text.contains(r#"checkpoint_autoscaler_reconcile_failures_total{budget="ns/a",error="aws"} 1"#),
            "{text}"
        );
        assert!(
            text.contains("checkpoint_autoscaler_reconcile_duration_seconds_count 1"),
            "{text}"
        );
        assert!(
            text.contains(
                r#"checkpoint_autoscaler_decisions_total{kind="scale",reason="ScaleUpRequired"} 1"#
            ),
            "{text}"
        );
        assert!(
            text.contains(r#"checkpoint_autoscaler_scalings_total{outcome="started"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(
                r#"checkpoint_autoscaler_aws_calls_total{service="cloudwatch",operation="GetMetricData"} 3"#
            ),
            "{text}"
        );
        assert!(
            text.contains("checkpoint_autoscaler_cloudwatch_metrics_requested_total 42"),
            "{text}"
        );
    }
}

#[cfg(test)]
mod budget_tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    use super::*;
    use crate::{
        crd::{CheckpointBudgetSpec, CheckpointBudgetStatus, CheckpointWindow, ObservedApplication},
        policy::AppStatus,
    };

    fn budget(name: &str, status: Option<CheckpointBudgetStatus>) -> Arc<CheckpointBudget> {
        let spec = CheckpointBudgetSpec::new(name, std::time::Duration::from_secs(90), 1, 8, 128);
        let mut b = CheckpointBudget::new(name, spec);
        b.metadata.namespace = Some("streaming".into());
        b.status = status;
        Arc::new(b)
    }

    #[test]
    fn budget_gauges_come_from_the_status_and_leave_with_the_budget() {
        let now = jiff::Timestamp::from_second(1_800_000_000).unwrap();
        let mut status = CheckpointBudgetStatus {
            application: Some(ObservedApplication {
                status: AppStatus::Running,
                version_id: 3,
                parallelism: 8,
                parallelism_per_kpu: 2,
                kpus: 4,
                service_auto_scaling: false,
                observed_at: Time(now),
            }),
            checkpoints: Some(CheckpointWindow {
                last_duration_ms: Some(41_500),
                max_duration_ms: Some(52_000),
                failed: 2,
                ..CheckpointWindow::default()
            }),
            ..CheckpointBudgetStatus::default()
        };
        crate::status::set_condition(
            &mut status.conditions,
            "SloMet",
            crate::status::ConditionStatus::True,
            "WithinBudget",
            "ok",
            Some(1),
            now,
        );
        let metrics = Metrics::default();
        let source = Arc::new(std::sync::Mutex::new(vec![
            budget("orders", Some(status)),
            budget("fresh", None),
        ]));
        struct Shared(Arc<std::sync::Mutex<Vec<Arc<CheckpointBudget>>>>);
        impl BudgetSource for Shared {
            fn budgets(&self) -> Vec<Arc<CheckpointBudget>> {
                self.0.lock().unwrap().clone()
            }
        }
        metrics.set_budget_source(Arc::new(Shared(source.clone())));
        let text = metrics.encode().unwrap();
        for line in [
            r#"checkpoint_autoscaler_budget_checkpoint_duration_seconds{namespace="streaming",budget="orders"} 41.5"#,
            r#"checkpoint_autoscaler_budget_checkpoint_duration_max_seconds{namespace="streaming",budget="orders"} 52.0"#,
            r#"checkpoint_autoscaler_budget_max_checkpoint_duration_seconds{namespace="streaming",budget="orders"} 90.0"#,
            r#"checkpoint_autoscaler_budget_max_checkpoint_duration_seconds{namespace="streaming",budget="fresh"} 90.0"#,
            r#"checkpoint_autoscaler_budget_failed_checkpoints{namespace="streaming",budget="orders"} 2.0"#,
            r#"checkpoint_autoscaler_budget_parallelism{namespace="streaming",budget="orders"} 8.0"#,
            r#"checkpoint_autoscaler_budget_kpus{namespace="streaming",budget="orders"} 4.0"#,
            r#"checkpoint_autoscaler_budget_condition{namespace="streaming",budget="orders",type="SloMet",status="True",reason="WithinBudget"} 1.0"#,
        ] {
            assert!(text.contains(line), "{line} missing from\n{text}");
        }
        // Figures a fresh budget does not have yet are absent, not zero.
        assert!(
            !text.contains(r#"budget_kpus{namespace="streaming",budget="fresh"}"#),
            "{text}"
        );
        // A deleted budget is gone at the next scrape.
        source
            .lock()
            .unwrap()
            .retain(|b| b.metadata.name.as_deref() != Some("orders"));
        let text = metrics.encode().unwrap();
        assert!(!text.contains(r#"budget="orders""#), "{text}");
    }
}
