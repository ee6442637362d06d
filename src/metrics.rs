//! Prometheus metrics of the controller, served on `/metrics`.
//!
//! Names carry the `checkpoint_autoscaler` prefix and, where it applies, a unit suffix
//! (`..._seconds`). AWS call counts live in the AWS clients; they are read at scrape time
//! through [`AwsCallSource`] so the counters are never copied or double counted.

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
        histogram::Histogram,
    },
    registry::{Registry, Unit},
};
use tokio::time::Instant;

/// Labels of the failure counter: which budget and which kind of error.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    /// `namespace/name` of the budget.
    pub budget: String,
    /// The error kind ([`crate::controller::Error::metric_label`]).
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
        Self {
            reconcile,
            decisions,
            scalings,
            aws,
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
}

impl Default for ReconcileMetrics {
    fn default() -> Self {
        Self {
            runs: Counter::default(),
            failures: Family::default(),
            duration: Histogram::new([0.01, 0.05, 0.1, 0.25, 0.5, 1., 2.5, 5., 15., 60.]),
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
        self.failures
            .get_or_create(&ErrorLabels {
                budget: budget.to_owned(),
                error: error.to_owned(),
            })
            .inc();
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
