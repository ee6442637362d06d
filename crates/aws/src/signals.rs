//! Which signals an application can have, and the queries that read them.
//!
//! Managed Service for Apache Flink publishes its metrics at four levels
//! (`MonitoringConfiguration.MetricsLevel`: APPLICATION, the default, TASK, OPERATOR,
//! PARALLELISM; each level also publishes the coarser ones). The checkpoint, CPU, memory,
//! throughput and restart metrics have the `Application` dimension alone;
//! `busyTimeMsPerSecond` and `backPressuredTimeMsPerSecond` are published at the Task,
//! Operator and Parallelism levels only, with the task's (and operator's, subtask's)
//! dimensions; `millisBehindLatest` per Kinesis source stream (`Application`, `Id` = the
//! stream, `Flow` = `Input`); a Kafka source has `records_lag_max` instead; Flink 2.2 has
//! `numRestarts` and no `fullRestarts`. Sources: "Metrics and dimensions in Managed Service
//! for Apache Flink", <https://docs.aws.amazon.com/managed-flink/latest/java/metrics-dimensions.html>,
//! and "Set CloudWatch metrics reporting levels",
//! <https://docs.aws.amazon.com/managed-flink/latest/java/cloudwatch-logs-levels.html>.
//!
//! So the controller asks for what the application can have ([`SignalPlan`]):
//!
//! - the application-level metrics, always, one query each;
//! - the restart count under the name its runtime publishes (`RuntimeEnvironment` from
//!   `DescribeApplication`);
//! - busy and back-pressure time one query per task, the tasks found with `ListMetrics`
//!   only when `MetricsLevel` is TASK or finer (or not reported): the service publishes
//!   neither at the APPLICATION level, so nothing is listed or asked for there;
//! - the source lag with the dimensions `ListMetrics` finds: one query per source stream.
//!
//! NB: the sources of a Managed Flink application are not in `DescribeApplication` (they
//! are in the job's code or its runtime properties, under names the job chooses), so they
//! are found the way a dashboard finds them: `ListMetrics` on `millisBehindLatest` and
//! `records_lag_max` with the application's dimension. `ListMetrics` runs once per
//! application version and [`DISCOVERY_TTL`], cached ([`Discovery`]), so that its cost does
//! not grow with the reconcile rate.
//!
//! Several series of one field (tasks, streams) are aggregated per period by their
//! maximum: the busiest task bounds the job's throughput (a job is as fast as its slowest
//! vertex; a mean would dilute one saturated operator among idle, back-pressured upstream
//! ones), the most back-pressured task is where the pipeline stalls, and the stream furthest
//! behind is the lag to catch up.

use std::{
    collections::HashMap,
    fmt,
    sync::{Arc, Mutex},
    time::Duration,
};

pub use crate::crd::SignalsReport;
use async_trait::async_trait;
use tokio::time::Instant;

use super::{
    AwsError, Target,
    cloudwatch::{APPLICATION_DIMENSION, METRICS},
};

/// `MonitoringConfigurationDescription.MetricsLevel`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum MetricsLevel {
    /// `APPLICATION` (the default): application-level metrics only.
    Application,
    /// `TASK`: also per task.
    Task,
    /// `OPERATOR`: also per operator.
    Operator,
    /// `PARALLELISM`: also per subtask.
    Parallelism,
}

impl MetricsLevel {
    /// The level AWS names `name`, if any.
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "APPLICATION" => Some(Self::Application),
            "TASK" => Some(Self::Task),
            "OPERATOR" => Some(Self::Operator),
            "PARALLELISM" => Some(Self::Parallelism),
            _ => None,
        }
    }

    /// The name AWS uses.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Application => "APPLICATION",
            Self::Task => "TASK",
            Self::Operator => "OPERATOR",
            Self::Parallelism => "PARALLELISM",
        }
    }

    /// Whether busy and back-pressure time are published.
    pub fn has_task_metrics(&self) -> bool {
        *self >= Self::Task
    }
}

impl fmt::Display for MetricsLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Index of each field in [`METRICS`].
pub const BUSY: usize = 6;
pub const BACK_PRESSURE: usize = 7;
pub const LAG: usize = 8;
pub const RESTARTS: usize = 10;

/// The Kinesis source lag metric (ms; per stream: `Application`, `Id`, `Flow`).
pub const KINESIS_LAG: &str = "millisBehindLatest";
/// The Kafka source lag metric (records, not time).
pub const KAFKA_LAG: &str = "records_lag_max";
/// The restart count before Flink 2.2.
pub const FULL_RESTARTS: &str = "fullRestarts";
/// The restart count from Flink 2.2 on (which removed `fullRestarts`).
pub const NUM_RESTARTS: &str = "numRestarts";

/// Most series read for one field (tasks, streams): bounds the queries per application.
pub const MAX_SERIES_PER_FIELD: usize = 50;

/// How long discovered dimensions are trusted (a new application version re-discovers at
/// once).
pub const DISCOVERY_TTL: Duration = Duration::from_secs(15 * 60);

/// Most applications whose discovery is cached.
pub const MAX_CACHED: usize = 10_000;

/// The restart metric of `runtime` (`FLINK-2_2`, ...): `numRestarts` from Flink 2.2 on.
pub fn restart_metric(runtime: Option<&str>) -> &'static str {
    let version = runtime.and_then(|r| r.strip_prefix("FLINK-")).and_then(|v| {
        let (major, minor) = v.split_once('_')?;
        Some((major.parse::<u32>().ok()?, minor.parse::<u32>().ok()?))
    });
    match version {
        Some(v) if v >= (2, 2) => NUM_RESTARTS,
        _ => FULL_RESTARTS,
    }
}

/// One series to read: field `field` of the samples (index into [`METRICS`]) from metric
/// `name` with `dimensions`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SeriesSpec {
    /// The sample field (index into [`METRICS`]).
    pub field: usize,
    /// The metric name.
    pub name: &'static str,
    /// The statistic.
    pub stat: &'static str,
    /// The dimensions, all of which must match.
    pub dimensions: Vec<(String, String)>,
}

/// What `ListMetrics` found for an application: the dimension sets of each metric.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Discovered {
    /// `busyTimeMsPerSecond`.
    pub busy: Vec<Vec<(String, String)>>,
    /// `backPressuredTimeMsPerSecond`.
    pub back_pressure: Vec<Vec<(String, String)>>,
    /// `millisBehindLatest`.
    pub kinesis_lag: Vec<Vec<(String, String)>>,
    /// `records_lag_max`.
    pub kafka_lag: Vec<Vec<(String, String)>>,
    /// Why discovery failed, if it did (the plan then reads the application level only).
    pub error: Option<String>,
}

/// What the controller reads for one application, and what it could read with more.
#[derive(Clone, Debug, PartialEq)]
pub struct SignalPlan {
    /// The application.
    pub application: String,
    /// `MetricsLevel` (`None`: not reported; then `ListMetrics` decides).
    pub level: Option<MetricsLevel>,
    /// `RuntimeEnvironment`.
    pub runtime: Option<String>,
    /// The series, in field order.
    pub series: Vec<SeriesSpec>,
    /// What discovery found.
    pub discovered: Discovered,
}

/// The dimension sets of the coarsest level among `found` (the fewest dimensions: a task
/// rather than its operators or subtasks, which the service publishes as well at the finer
/// levels), sorted, at most [`MAX_SERIES_PER_FIELD`].
fn coarsest(found: &[Vec<(String, String)>]) -> Vec<Vec<(String, String)>> {
    let Some(fewest) = found.iter().map(Vec::len).min() else {
        return Vec::new();
    };
    let mut sets: Vec<Vec<(String, String)>> = found.iter().filter(|d| d.len() == fewest).cloned().collect();
    for set in &mut sets {
        set.sort();
    }
    sets.sort();
    sets.dedup();
    sets.truncate(MAX_SERIES_PER_FIELD);
    sets
}

impl SignalPlan {
    /// Every metric of [`METRICS`] with the `Application` dimension alone: what a caller
    /// that knows nothing of the application asks (the queries the controller sent before
    /// it read the metrics level).
    pub fn application_dimension_only(application: &str) -> Self {
        let dims = vec![(APPLICATION_DIMENSION.to_string(), application.to_string())];
        Self {
            application: application.to_string(),
            level: None,
            runtime: None,
            series: METRICS
                .iter()
                .enumerate()
                .map(|(field, spec)| SeriesSpec {
                    field,
                    name: spec.name,
                    stat: spec.stat,
                    dimensions: dims.clone(),
                })
                .collect(),
            discovered: Discovered::default(),
        }
    }

    /// The plan for an application at `level` on `runtime`, with what discovery found.
    pub fn new(
        application: &str,
        level: Option<MetricsLevel>,
        runtime: Option<&str>,
        discovered: Discovered,
    ) -> Self {
        let app_dims = vec![(APPLICATION_DIMENSION.to_string(), application.to_string())];
        let mut series = Vec::new();
        for (field, spec) in METRICS.iter().enumerate() {
            let found: Vec<Vec<(String, String)>> = match field {
                BUSY => coarsest(&discovered.busy),
                BACK_PRESSURE => coarsest(&discovered.back_pressure),
                LAG => coarsest(&discovered.kinesis_lag),
                _ => vec![app_dims.clone()],
            };
            let name = if field == RESTARTS {
                restart_metric(runtime)
            } else {
                spec.name
            };
            series.extend(found.into_iter().map(|dimensions| SeriesSpec {
                field,
                name,
                stat: spec.stat,
                dimensions,
            }));
        }
        Self {
            application: application.to_string(),
            level,
            runtime: runtime.map(str::to_string),
            series,
            discovered,
        }
    }

    /// Series read for `field`.
    pub fn count(&self, field: usize) -> usize {
        self.series.iter().filter(|s| s.field == field).count()
    }

    /// The summary for status and `recommend`.
    pub fn report(&self) -> SignalsReport {
        let level = self.level.unwrap_or(MetricsLevel::Application);
        let mut available =
            vec!["application metrics (checkpoints, CPU, memory, throughput, restarts)".to_string()];
        let mut missing = Vec::new();
        let tasks = self.count(BUSY).max(self.count(BACK_PRESSURE));
        if tasks > 0 {
            available.push(format!(
                "busyTimeMsPerSecond and backPressuredTimeMsPerSecond (max of {tasks} series)"
            ));
        } else if self.level.is_some_and(|l| !l.has_task_metrics()) {
            missing.push(format!(
                "busyTimeMsPerSecond, backPressuredTimeMsPerSecond: published at the TASK level and finer; MetricsLevel is {level}"
            ));
        } else {
            missing.push("busyTimeMsPerSecond, backPressuredTimeMsPerSecond: none published".to_string());
        }
        let streams = self.count(LAG);
        if streams > 0 {
            available.push(format!("millisBehindLatest (max of {streams} source series)"));
        } else if !self.discovered.kafka_lag.is_empty() {
            missing.push(format!(
                "source lag in time: the Kafka source publishes records_lag_max ({} series), a lag in records, which the catch-up rules (a lag in time) do not use",
                self.discovered.kafka_lag.len()
            ));
        } else {
            missing.push("millisBehindLatest: no Kinesis source publishes it".to_string());
        }
        if let Some(error) = &self.discovered.error {
            missing.push(format!(
                "ListMetrics failed ({error}); read the application level only"
            ));
        }
        let advice = (tasks == 0 && !level.has_task_metrics()).then(|| TASK_LEVEL_ADVICE.to_string());
        SignalsReport {
            metrics_level: self.level.map(|l| l.as_str().to_string()),
            runtime: self.runtime.clone(),
            restarts_metric: self
                .series
                .iter()
                .find(|s| s.field == RESTARTS)
                .map(|s| s.name.to_string()),
            queries: self.series.len() as u32,
            available,
            missing,
            advice,
        }
    }
}

/// What switching on the TASK level gives, and costs.
///
/// NB: the costs are CloudWatch's list prices in us-east-1
/// (<https://aws.amazon.com/cloudwatch/pricing/>): metrics $0.30 per metric-month for the
/// first 10,000, `GetMetricData` $0.01 per 1,000 metrics requested. AWS warns against the
/// PARALLELISM level above a parallelism of 64 for its cost
/// (<https://docs.aws.amazon.com/managed-flink/latest/apiv2/API_MonitoringConfiguration.html>).
pub const TASK_LEVEL_ADVICE: &str = "MetricsLevel TASK (UpdateApplication \
FlinkApplicationConfigurationUpdate.MonitoringConfigurationUpdate: ConfigurationTypeUpdate \
CUSTOM, MetricsLevelUpdate TASK) publishes busyTimeMsPerSecond and \
backPressuredTimeMsPerSecond per task, so that the policy can size throughput and see \
back-pressure instead of judging on CPU and checkpoints alone. Cost: each task's \
task-level metrics are billed as CloudWatch metrics ($0.30 per metric-month, us-east-1 \
list price), and this controller reads 2 more metrics per task per evaluation ($0.01 per \
1,000 metrics requested); OPERATOR and PARALLELISM cost more and add nothing the policy uses.";

/// `ListMetrics` in the application's namespace: the dimension sets of `metric` that have
/// the application's dimension (and any others).
#[async_trait]
pub trait ListMetricsApi: Send + Sync {
    async fn list_dimensions(
        &self,
        target: &Target,
        metric: &str,
        application: &str,
    ) -> Result<Vec<Vec<(String, String)>>, AwsError>;
}

/// Lists what the application publishes of busy time, back-pressure time and source lag
/// (`records_lag_max` only without `millisBehindLatest`): one or two `ListMetrics` calls at
/// the APPLICATION level, three or four at TASK and finer or when the level is not reported.
///
/// At the APPLICATION level busy and back-pressure time are not listed: the service
/// publishes neither there, and what is listed of them then (with `RecentlyActive` three
/// hours) are the stale series of a finer level the application has just left, whose reads
/// would only bring gaps. Most applications run at APPLICATION, so this keeps `ListMetrics`
/// to one call per application and discovery period (CloudWatch's `ListMetrics` rate quota
/// is per account and region, shared by every budget).
pub async fn discover(
    api: &dyn ListMetricsApi,
    target: &Target,
    application: &str,
    level: Option<MetricsLevel>,
) -> Discovered {
    let mut found = Discovered::default();
    let result: Result<(), AwsError> = async {
        if level != Some(MetricsLevel::Application) {
            found.busy = api
                .list_dimensions(target, METRICS[BUSY].name, application)
                .await?;
            found.back_pressure = api
                .list_dimensions(target, METRICS[BACK_PRESSURE].name, application)
                .await?;
        }
        found.kinesis_lag = api.list_dimensions(target, KINESIS_LAG, application).await?;
        if found.kinesis_lag.is_empty() {
            found.kafka_lag = api.list_dimensions(target, KAFKA_LAG, application).await?;
        }
        Ok(())
    }
    .await;
    if let Err(e) = result {
        found = Discovered {
            error: Some(e.to_string()),
            ..Discovered::default()
        };
    }
    found
}

/// The cache key: an application version at a level (a new version, an update of the
/// level or a redeploy, re-discovers).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Key {
    target: Target,
    application: String,
    version_id: i64,
    level: Option<MetricsLevel>,
}

#[derive(Debug)]
struct Entry {
    found: Discovered,
    expires: Instant,
}

/// Discovered dimensions, cached per application version for [`DISCOVERY_TTL`], at most
/// [`MAX_CACHED`] applications (the expired pruned first, then the soonest to expire). A
/// failed discovery is not cached.
#[derive(Clone, Debug)]
pub struct Discovery {
    entries: Arc<Mutex<HashMap<Key, Entry>>>,
    ttl: Duration,
    max: usize,
}

impl Default for Discovery {
    fn default() -> Self {
        Self::new(DISCOVERY_TTL, MAX_CACHED)
    }
}

impl Discovery {
    pub fn new(ttl: Duration, max: usize) -> Self {
        Self {
            entries: Arc::new(Mutex::new(HashMap::new())),
            ttl,
            max: max.max(1),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Key, Entry>> {
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Entries held.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.lock().len()
    }

    /// The plan for `description`, discovering through `api` unless cached.
    pub async fn plan(
        &self,
        api: &dyn ListMetricsApi,
        target: &Target,
        description: &super::ApplicationDescription,
    ) -> SignalPlan {
        let level = description.metrics_level.as_deref().and_then(MetricsLevel::parse);
        let key = Key {
            target: target.clone(),
            application: description.name.clone(),
            version_id: description.version_id,
            level,
        };
        let now = Instant::now();
        let cached = self
            .lock()
            .get(&key)
            .filter(|e| e.expires > now)
            .map(|e| e.found.clone());
        let found = match cached {
            Some(found) => found,
            None => {
                let found = discover(api, target, &description.name, level).await;
                if found.error.is_none() {
                    self.insert(key, found.clone(), Instant::now());
                }
                found
            }
        };
        SignalPlan::new(&description.name, level, description.runtime.as_deref(), found)
    }

    fn insert(&self, key: Key, found: Discovered, now: Instant) {
        let mut entries = self.lock();
        // Older versions of this application are of no more use.
        entries
            .retain(|k, e| e.expires > now && !(k.application == key.application && k.target == key.target));
        while entries.len() >= self.max {
            let Some(soonest) = entries
                .iter()
                .min_by_key(|(_, e)| e.expires)
                .map(|(k, _)| k.clone())
            else {
                break;
            };
            entries.remove(&soonest);
        }
        entries.insert(
            key,
            Entry {
                found,
                expires: now + self.ttl,
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::{
        ApplicationDescription,
        policy::{AppConfig, AppStatus},
    };

    fn dims(app: &str, extra: &[(&str, &str)]) -> Vec<(String, String)> {
        let mut d = vec![(APPLICATION_DIMENSION.to_string(), app.to_string())];
        d.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        d
    }

    #[test]
    fn levels_and_runtimes_decide_the_metric_names() {
        assert_eq!(MetricsLevel::parse("TASK"), Some(MetricsLevel::Task));
        assert_eq!(MetricsLevel::parse("task"), None);
        assert!(!MetricsLevel::Application.has_task_metrics());
        assert!(MetricsLevel::Operator.has_task_metrics());
        assert_eq!(restart_metric(Some("FLINK-1_20")), FULL_RESTARTS);
        assert_eq!(restart_metric(Some("FLINK-2_2")), NUM_RESTARTS);
        assert_eq!(restart_metric(Some("FLINK-2_10")), NUM_RESTARTS);
        assert_eq!(restart_metric(Some("FLINK-2_1")), FULL_RESTARTS);
        assert_eq!(restart_metric(Some("SQL-1_0")), FULL_RESTARTS);
        assert_eq!(restart_metric(None), FULL_RESTARTS);
    }

    #[test]
    fn the_application_level_reads_no_task_metrics_and_says_what_it_misses() {
        let found = Discovered {
            kinesis_lag: vec![
                dims("a", &[("Id", "orders"), ("Flow", "Input")]),
                dims("a", &[("Id", "payments"), ("Flow", "Input")]),
            ],
            ..Discovered::default()
        };
        let plan = SignalPlan::new("a", Some(MetricsLevel::Application), Some("FLINK-2_2"), found);
        assert_eq!(plan.count(BUSY), 0);
        assert_eq!(plan.count(BACK_PRESSURE), 0);
        assert_eq!(plan.count(LAG), 2);
        assert_eq!(plan.series.len(), 9 + 2);
        let restarts: Vec<_> = plan.series.iter().filter(|s| s.field == RESTARTS).collect();
        assert_eq!(restarts.len(), 1);
        assert_eq!(restarts[0].name, NUM_RESTARTS);
        let report = plan.report();
        assert_eq!(report.metrics_level.as_deref(), Some("APPLICATION"));
        assert_eq!(report.restarts_metric.as_deref(), Some("numRestarts"));
        assert_eq!(report.queries, 11);
        assert!(report.missing[0].contains("TASK level"), "{report:?}");
        assert!(report.advice.as_deref().is_some_and(|a| a.contains("$0.30")));
    }

    #[test]
    fn the_task_level_reads_one_series_per_task_at_the_coarsest_level() {
        let found = Discovered {
            // OPERATOR publishes the task level and the operator level: tasks are enough.
            busy: vec![
                dims("a", &[("Task", "source")]),
                dims("a", &[("Task", "sink")]),
                dims("a", &[("Task", "sink"), ("Operator", "map")]),
            ],
            back_pressure: vec![dims("a", &[("Task", "source")])],
            kafka_lag: vec![dims("a", &[("Id", "topic")])],
            ..Discovered::default()
        };
        let plan = SignalPlan::new("a", Some(MetricsLevel::Operator), None, found);
        assert_eq!(plan.count(BUSY), 2);
        assert_eq!(plan.count(BACK_PRESSURE), 1);
        assert_eq!(plan.count(LAG), 0, "records_lag_max is not a lag in time");
        let report = plan.report();
        assert!(report.advice.is_none());
        assert!(
            report.missing.iter().any(|m| m.contains("records_lag_max")),
            "{report:?}"
        );
        // Bounded however many tasks the job has.
        let many = Discovered {
            busy: (0..500)
                .map(|i| dims("a", &[("Task", &format!("t{i}"))]))
                .collect(),
            ..Discovered::default()
        };
        let plan = SignalPlan::new("a", Some(MetricsLevel::Task), None, many);
        assert_eq!(plan.count(BUSY), MAX_SERIES_PER_FIELD);
    }

    /// Counts `ListMetrics` calls; lists two tasks for busy and back-pressure and one
    /// stream, or fails.
    #[derive(Default)]
    struct Lister {
        calls: AtomicUsize,
        fail: std::sync::atomic::AtomicBool,
    }

    #[async_trait]
    impl ListMetricsApi for Lister {
        async fn list_dimensions(
            &self,
            _target: &Target,
            metric: &str,
            application: &str,
        ) -> Result<Vec<Vec<(String, String)>>, AwsError> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            if self.fail.load(Ordering::SeqCst) {
                return Err(AwsError::Throttled("ListMetrics: Rate exceeded".into()));
            }
            Ok(match metric {
                KINESIS_LAG => vec![dims(application, &[("Id", "s"), ("Flow", "Input")])],
                KAFKA_LAG => Vec::new(),
                _ => vec![
                    dims(application, &[("Task", "x")]),
                    dims(application, &[("Task", "y")]),
                ],
            })
        }
    }

    fn description(name: &str, version_id: i64, level: Option<&str>) -> ApplicationDescription {
        ApplicationDescription {
            name: name.into(),
            arn: format!("arn:aws:kinesisanalytics:eu-west-1:123456789012:application/{name}"),
            status: AppStatus::Running,
            version_id,
            config: AppConfig::new(4, 1),
            configured_parallelism: 4,
            configuration_type: "CUSTOM".into(),
            service_autoscaling: false,
            conditional_token: None,
            created: None,
            snapshots_enabled: Some(true),
            restore: None,
            metrics_level: level.map(str::to_string),
            runtime: Some("FLINK-1_20".into()),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn discovery_runs_once_per_version_and_expires_and_is_bounded() {
        let lister = Lister::default();
        let cache = Discovery::new(Duration::from_secs(600), 2);
        let target = Target::new("eu-west-1");
        let calls = || lister.calls.load(Ordering::SeqCst);
        let plan = cache
            .plan(&lister, &target, &description("a", 1, Some("TASK")))
            .await;
        assert_eq!(calls(), 3, "busy, back-pressure, millisBehindLatest");
        assert_eq!(plan.count(BUSY), 2);
        assert_eq!(plan.count(LAG), 1);
        cache
            .plan(&lister, &target, &description("a", 1, Some("TASK")))
            .await;
        assert_eq!(calls(), 3, "cached");
        // At the APPLICATION level only the source lag is listed: the service publishes no
        // busy or back-pressure time there, and stale series of a finer level are not read.
        let plan = cache
            .plan(&lister, &target, &description("b", 1, Some("APPLICATION")))
            .await;
        assert_eq!(calls(), 4, "millisBehindLatest only");
        assert_eq!(plan.count(BUSY), 0);
        assert_eq!(plan.count(LAG), 1);
        // A new version re-discovers, and replaces the old one's entry.
        cache
            .plan(&lister, &target, &description("a", 2, Some("TASK")))
            .await;
        assert_eq!(calls(), 7);
        assert_eq!(cache.len(), 2);
        // Bounded: a third application evicts the soonest to expire.
        cache
            .plan(&lister, &target, &description("c", 1, Some("APPLICATION")))
            .await;
        assert_eq!(cache.len(), 2);
        // Expiry.
        tokio::time::advance(Duration::from_secs(601)).await;
        cache
            .plan(&lister, &target, &description("a", 2, Some("TASK")))
            .await;
        assert_eq!(calls(), 11);
        // A failure reads the application level, says so, and is not cached.
        lister.fail.store(true, Ordering::SeqCst);
        let plan = cache
            .plan(&lister, &target, &description("d", 1, Some("TASK")))
            .await;
        assert_eq!(plan.count(BUSY), 0);
        assert!(
            plan.report()
                .missing
                .iter()
                .any(|m| m.contains("ListMetrics failed"))
        );
        lister.fail.store(false, Ordering::SeqCst);
        let plan = cache
            .plan(&lister, &target, &description("d", 1, Some("TASK")))
            .await;
        assert_eq!(plan.count(BUSY), 2);
    }
}
