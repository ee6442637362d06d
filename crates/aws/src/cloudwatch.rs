//! CloudWatch `GetMetricData`: the metrics the policy needs, turned into [`Sample`]s.
//!
//! The request side (which metrics, which statistic, which time range) and the assembly
//! side (datapoints → per-period samples, running counts → per-period increases, NaN and
//! gaps → `None`) are plain functions over our own types, shared by the direct
//! [`CloudWatchMetrics`] and the batching [`BatchedMetrics`](super::BatchedMetrics). Only
//! [`MetricDataApi`] touches the SDK.

use std::{collections::HashMap, sync::Arc, time::Duration};

use async_trait::async_trait;
use aws_sdk_cloudwatch::types::{
    Dimension, DimensionFilter, Metric, MetricDataQuery, MetricStat, RecentlyActive, ScanBy, StatusCode,
};
use aws_smithy_types::DateTime;
use jiff::Timestamp;

use super::{
    ApplicationDescription, AwsClients, AwsError, MetricsSource, Target,
    signals::{Discovery, ListMetricsApi, SeriesSpec, SignalPlan},
    stats::AwsOperation,
};
use crate::policy::Sample;

/// The CloudWatch namespace of Managed Service for Apache Flink.
pub const METRIC_NAMESPACE: &str = "AWS/KinesisAnalytics";

/// The dimension that names the application.
pub const APPLICATION_DIMENSION: &str = "Application";

/// Most queries one `GetMetricData` call may carry.
pub const MAX_QUERIES_PER_CALL: usize = 500;

/// Most datapoints one `GetMetricData` call returns before paging.
pub const MAX_DATAPOINTS_PER_CALL: usize = 100_800;

/// One metric the policy reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MetricSpec {
    /// The CloudWatch metric name.
    pub name: &'static str,
    /// The statistic requested per period.
    pub stat: &'static str,
    /// A running count (reset when the job restarts) that the policy wants as a
    /// per-period increase.
    pub running_count: bool,
}

/// The metrics behind each [`Sample`] field, in field order; each application costs
/// `METRICS.len()` queries.
///
/// NB: `Maximum` for the gauges because the policy reasons about the worst subtask and the
/// worst moment of the period; the running counts are read as `Maximum` too (the count at
/// the end of the period, the counts never decreasing between restarts).
///
/// NB: these are the fields and their default queries (the `Application` dimension
/// alone). What the controller asks of an application is its [`SignalPlan`]
/// (`aws::signals`): busy and back-pressure time per task where the service lists them,
/// the source lag per stream, the restart count its runtime publishes.
pub const METRICS: [MetricSpec; 12] = [
    MetricSpec {
        name: "lastCheckpointDuration",
        stat: "Maximum",
        running_count: false,
    },
    MetricSpec {
        name: "lastCheckpointSize",
        stat: "Maximum",
        running_count: false,
    },
    MetricSpec {
        name: "numberOfFailedCheckpoints",
        stat: "Maximum",
        running_count: true,
    },
    MetricSpec {
        name: "cpuUtilization",
        stat: "Maximum",
        running_count: false,
    },
    MetricSpec {
        name: "heapMemoryUtilization",
        stat: "Maximum",
        running_count: false,
    },
    MetricSpec {
        name: "containerMemoryUtilization",
        stat: "Maximum",
        running_count: false,
    },
    MetricSpec {
        name: "busyTimeMsPerSecond",
        stat: "Maximum",
        running_count: false,
    },
    MetricSpec {
        name: "backPressuredTimeMsPerSecond",
        stat: "Maximum",
        running_count: false,
    },
    MetricSpec {
        name: "millisBehindLatest",
        stat: "Maximum",
        running_count: false,
    },
    MetricSpec {
        name: "numRecordsInPerSecond",
        stat: "Average",
        running_count: false,
    },
    MetricSpec {
        name: "fullRestarts",
        stat: "Maximum",
        running_count: true,
    },
    MetricSpec {
        name: "downtime",
        stat: "Maximum",
        running_count: false,
    },
];

fn set_field(sample: &mut Sample, metric: usize, value: Option<f64>) {
    let field = match metric {
        0 => &mut sample.last_checkpoint_duration_ms,
        1 => &mut sample.last_checkpoint_size_bytes,
        2 => &mut sample.failed_checkpoints,
        3 => &mut sample.cpu_utilization,
        4 => &mut sample.heap_memory_utilization,
        5 => &mut sample.container_memory_utilization,
        6 => &mut sample.busy_time_ms_per_second,
        7 => &mut sample.back_pressured_time_ms_per_second,
        8 => &mut sample.millis_behind_latest,
        9 => &mut sample.records_in_per_second,
        10 => &mut sample.full_restarts,
        _ => &mut sample.downtime_ms,
    };
    *field = value;
}

/// One application's `samples()` request, in whole seconds since the epoch.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SampleRequest {
    pub application: String,
    /// First period of the window.
    pub start: i64,
    /// End of the window (exclusive), a multiple of `period`.
    pub end: i64,
    /// Seconds per period.
    pub period: i64,
}

impl SampleRequest {
    /// The window `[floor(end) - window, floor(end))`, in whole periods.
    pub fn new(
        application: &str,
        window: Duration,
        period: Duration,
        end: Timestamp,
    ) -> Result<Self, AwsError> {
        let period_s = period.as_secs() as i64;
        if period_s <= 0 || period.subsec_nanos() != 0 || period_s > i32::MAX as i64 {
            return Err(AwsError::InvalidArgument(format!(
                "GetMetricData: period {period:?} is not a whole number of seconds"
            )));
        }
        if window.is_zero() {
            return Err(AwsError::InvalidArgument("GetMetricData: empty window".into()));
        }
        // NB: the budget's validation bounds the window; this guards every other caller,
        // so that no request (and no allocation) grows with an unchecked duration.
        if window > crate::crd::MAX_WINDOW {
            return Err(AwsError::InvalidArgument(format!(
                "GetMetricData: a window of {} is longer than the {} the controller reads",
                crate::crd::format_duration(window),
                crate::crd::format_duration(crate::crd::MAX_WINDOW)
            )));
        }
        let periods = window.as_secs().div_ceil(period_s as u64).max(1) as i64;
        let end = end.as_second().div_euclid(period_s) * period_s;
        Ok(Self {
            application: application.to_string(),
            start: end - periods * period_s,
            end,
            period: period_s,
        })
    }

    /// Where the query range starts: one period early, so that the running counts have a
    /// value to take the first period's increase from.
    pub fn fetch_start(&self) -> i64 {
        self.start - self.period
    }

    /// Periods in the window.
    pub fn periods(&self) -> usize {
        ((self.end - self.start) / self.period) as usize
    }
}

/// One query of a `GetMetricData` call: one series of a [`SignalPlan`] (for field
/// `metric`, an index into [`METRICS`]) of one application, under a call-unique id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Query {
    pub id: String,
    pub application: String,
    /// The sample field it fills (index into [`METRICS`]).
    pub metric: usize,
    /// The CloudWatch metric name.
    pub name: &'static str,
    /// The statistic.
    pub stat: &'static str,
    /// The dimensions, all of which must match.
    pub dimensions: Vec<(String, String)>,
}

impl Query {
    /// The query of `series` of `application`, under `id`.
    pub fn of(id: String, application: &str, series: &SeriesSpec) -> Self {
        Self {
            id,
            application: application.to_string(),
            metric: series.field,
            name: series.name,
            stat: series.stat,
            dimensions: series.dimensions.clone(),
        }
    }

    /// The CloudWatch metric name it reads.
    pub fn metric_name(&self) -> &'static str {
        self.name
    }

    /// The statistic it asks for.
    pub fn stat(&self) -> &'static str {
        self.stat
    }

    /// The dimensions of the metric it reads (all must match, as CloudWatch compares them).
    pub fn dimensions(&self) -> Vec<(String, String)> {
        self.dimensions.clone()
    }
}

/// One `GetMetricData` call (before paging): one time range, one period, up to 500 queries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MetricDataCall {
    pub start: i64,
    pub end: i64,
    pub period: i64,
    pub queries: Vec<Query>,
}

impl MetricDataCall {
    /// Datapoints this call can return at most (for the 100,800-per-call limit).
    pub fn max_datapoints(&self) -> usize {
        self.queries.len() * ((self.end - self.start) / self.period).max(1) as usize
    }
}

/// The datapoints of one query, as far as one page goes.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Series {
    pub id: String,
    /// (seconds since epoch, value), any order.
    pub points: Vec<(i64, f64)>,
    /// Set when CloudWatch refused or failed this query.
    pub error: Option<AwsError>,
}

/// One page of a `GetMetricData` answer.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Page {
    pub series: Vec<Series>,
    pub next_token: Option<String>,
}

/// One `GetMetricData` request (one page). The SDK implementation is [`AwsClients`]; tests
/// count and page with fakes.
#[async_trait]
pub trait MetricDataApi: Send + Sync {
    async fn get_metric_data_page(
        &self,
        target: &Target,
        call: &MetricDataCall,
        next_token: Option<&str>,
    ) -> Result<Page, AwsError>;
}

/// Runs `call`, following `NextToken`, and merges the pages by query id.
pub async fn fetch_all(
    api: &dyn MetricDataApi,
    target: &Target,
    call: &MetricDataCall,
) -> Result<HashMap<String, Series>, AwsError> {
    let mut merged: HashMap<String, Series> = HashMap::with_capacity(call.queries.len());
    let mut token: Option<String> = None;
    // NB: a bound on pages guards against a service that keeps handing out tokens.
    let max_pages = call.max_datapoints() / MAX_DATAPOINTS_PER_CALL + call.queries.len() + 2;
    for _ in 0..max_pages {
        let page = api.get_metric_data_page(target, call, token.as_deref()).await?;
        for series in page.series {
            let entry = merged.entry(series.id.clone()).or_insert_with(|| Series {
                id: series.id.clone(),
                ..Series::default()
            });
            entry.points.extend(series.points);
            if series.error.is_some() {
                entry.error = series.error;
            }
        }
        match page.next_token {
            Some(t) if !t.is_empty() => token = Some(t),
            _ => return Ok(merged),
        }
    }
    Err(AwsError::UnexpectedResponse(format!(
        "GetMetricData: still paging after {max_pages} pages"
    )))
}

/// Assembles one application's samples from its series (indexed like [`METRICS`]; `None`
/// for a metric without datapoints).
///
/// NB: it holds only the periods that have a datapoint (as many as CloudWatch answered), not
/// one slot per period of the window.
pub fn assemble(request: &SampleRequest, series: &[Option<&[(i64, f64)]>]) -> Vec<Sample> {
    let periods = request.periods();
    let mut values: std::collections::BTreeMap<usize, [Option<f64>; METRICS.len()]> =
        std::collections::BTreeMap::new();
    for (metric, spec) in METRICS.iter().enumerate() {
        let Some(points) = series.get(metric).copied().flatten() else {
            continue;
        };
        let mut points: Vec<(i64, f64)> = points.iter().copied().filter(|(_, v)| v.is_finite()).collect();
        points.sort_by_key(|(t, _)| *t);
        // Several series of one field (tasks, source streams) meet here: the period's value
        // is their maximum (see `signals`).
        points.dedup_by(|later, kept| {
            let same = later.0 == kept.0;
            if same {
                kept.1 = kept.1.max(later.1);
            }
            same
        });
        let mut previous: Option<f64> = None;
        for (t, v) in points {
            let value = if spec.running_count {
                let delta = increase(previous, v);
                previous = Some(v);
                delta
            } else {
                Some(v)
            };
            if t < request.start || t >= request.end {
                continue;
            }
            let index = ((t - request.start) / request.period) as usize;
            if index < periods {
                values.entry(index).or_insert([None; METRICS.len()])[metric] = value;
            }
        }
    }
    values
        .into_iter()
        .filter(|(_, fields)| fields.iter().any(Option::is_some))
        .filter_map(|(i, fields)| {
            let at = Timestamp::from_second(request.start + i as i64 * request.period).ok()?;
            let mut sample = Sample {
                at,
                ..Sample::default()
            };
            for (metric, value) in fields.into_iter().enumerate() {
                set_field(&mut sample, metric, value);
            }
            Some(sample)
        })
        .collect()
}

/// The increase of a running count from `previous` (the last value seen before, across any
/// gap) to `current`. A drop means the job restarted and its count started again from zero,
/// so everything counted since is new. Without an earlier value the increase is unknown.
pub fn increase(previous: Option<f64>, current: f64) -> Option<f64> {
    let previous = previous?;
    if current >= previous {
        Some(current - previous)
    } else {
        Some(current.max(0.0))
    }
}

/// The queries of `plan`, with ids `{prefix}_{n}` (ids must start with a lower-case letter
/// and be unique within a call).
pub fn queries_for(plan: &SignalPlan, prefix: &str) -> Vec<Query> {
    plan.series
        .iter()
        .enumerate()
        .map(|(n, series)| Query::of(format!("{prefix}_{n}"), &plan.application, series))
        .collect()
}

/// Samples of one request from a merged answer whose queries were `queries`.
pub fn samples_from(
    request: &SampleRequest,
    queries: &[Query],
    answer: &HashMap<String, Series>,
) -> Result<Vec<Sample>, AwsError> {
    let mut merged: Vec<Option<Vec<(i64, f64)>>> = vec![None; METRICS.len()];
    for query in queries {
        if let Some(found) = answer.get(&query.id) {
            if let Some(err) = &found.error {
                return Err(err.clone());
            }
            merged[query.metric]
                .get_or_insert_with(Vec::new)
                .extend_from_slice(&found.points);
        }
    }
    let series: Vec<Option<&[(i64, f64)]>> = merged.iter().map(|s| s.as_deref()).collect();
    Ok(assemble(request, &series))
}

/// One request's samples through `api`, in one `GetMetricData` call (plus pages): the
/// queries of [`queries_for`], [`fetch_all`], [`samples_from`]. The direct
/// [`CloudWatchMetrics`] reads this way, and so does `simulate` (over the model's metric
/// store), so that the simulator sees exactly what the controller sees.
pub async fn read_samples(
    api: &dyn MetricDataApi,
    target: &Target,
    plan: &SignalPlan,
    request: &SampleRequest,
) -> Result<Vec<Sample>, AwsError> {
    let call = MetricDataCall {
        start: request.fetch_start(),
        end: request.end,
        period: request.period,
        queries: queries_for(plan, "m"),
    };
    let answer = fetch_all(api, target, &call).await?;
    samples_from(request, &call.queries, &answer)
}

/// The direct [`MetricsSource`]: one `GetMetricData` call (plus pages) per `samples()`.
/// Kept for comparison with [`BatchedMetrics`](super::BatchedMetrics) and for one-shot use
/// (`recommend`), where there is nothing to batch with.
#[derive(Clone)]
pub struct CloudWatchMetrics {
    api: Arc<dyn MetricDataApi>,
    clients: Arc<AwsClients>,
    discovery: Discovery,
    history: Arc<super::history::HourlyCache>,
}

impl std::fmt::Debug for CloudWatchMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CloudWatchMetrics").finish_non_exhaustive()
    }
}

impl CloudWatchMetrics {
    /// Calls CloudWatch through `clients`.
    pub fn new(clients: Arc<AwsClients>) -> Self {
        Self {
            api: clients.clone(),
            clients,
            discovery: Discovery::default(),
            history: Arc::default(),
        }
    }
}

#[async_trait]
impl MetricsSource for CloudWatchMetrics {
    async fn samples(
        &self,
        target: &Target,
        application: &str,
        window: Duration,
        period: Duration,
        end: Timestamp,
    ) -> Result<Vec<Sample>, AwsError> {
        let plan = SignalPlan::application_dimension_only(application);
        self.samples_for(target, &plan, window, period, end).await
    }

    async fn plan(&self, target: &Target, description: &ApplicationDescription) -> SignalPlan {
        self.discovery
            .plan(self.clients.as_ref(), target, description)
            .await
    }

    async fn samples_for(
        &self,
        target: &Target,
        plan: &SignalPlan,
        window: Duration,
        period: Duration,
        end: Timestamp,
    ) -> Result<Vec<Sample>, AwsError> {
        self.clients.stats().record_sample_request();
        let request = SampleRequest::new(&plan.application, window, period, end)?;
        read_samples(self.api.as_ref(), target, plan, &request).await
    }

    async fn hourly_input(
        &self,
        target: &Target,
        plan: &SignalPlan,
        now: Timestamp,
    ) -> Result<Vec<crate::policy::HourlyRate>, AwsError> {
        if let Some(cached) = self.history.get(target, &plan.application, now) {
            return Ok(cached);
        }
        self.clients.stats().record_sample_request();
        let rates = super::history::read(self.api.as_ref(), target, plan, now).await?;
        self.history.put(target, &plan.application, now, rates.clone());
        Ok(rates)
    }
}

#[async_trait]
impl MetricDataApi for AwsClients {
    async fn get_metric_data_page(
        &self,
        target: &Target,
        call: &MetricDataCall,
        next_token: Option<&str>,
    ) -> Result<Page, AwsError> {
        let op = AwsOperation::GetMetricData;
        let client = self.clients(target).await.cloudwatch;
        let queries: Vec<MetricDataQuery> = call
            .queries
            .iter()
            .map(|q| {
                let dimensions = q
                    .dimensions()
                    .into_iter()
                    .map(|(name, value)| Dimension::builder().name(name).value(value).build())
                    .collect();
                MetricDataQuery::builder()
                    .id(&q.id)
                    .metric_stat(
                        MetricStat::builder()
                            .metric(
                                Metric::builder()
                                    .namespace(METRIC_NAMESPACE)
                                    .metric_name(q.metric_name())
                                    .set_dimensions(Some(dimensions))
                                    .build(),
                            )
                            // Checked to fit in SampleRequest::new.
                            .period(call.period as i32)
                            .stat(q.stat())
                            .build(),
                    )
                    .return_data(true)
                    .build()
            })
            .collect();
        let stats = self.stats();
        stats.record_call(op);
        stats.record_metrics_requested(queries.len() as u64);
        let result = client
            .get_metric_data()
            .set_metric_data_queries(Some(queries))
            .start_time(DateTime::from_secs(call.start))
            .end_time(DateTime::from_secs(call.end))
            .scan_by(ScanBy::TimestampAscending)
            .set_next_token(next_token.map(str::to_string))
            .customize()
            .interceptor(self.attempt_counter(op))
            .send()
            .await;
        let out = match result {
            Ok(out) => out,
            Err(e) => {
                let err = AwsError::from_sdk(op, e);
                stats.record_error(&err);
                return Err(err);
            }
        };
        let mut datapoints = 0u64;
        let series = out
            .metric_data_results()
            .iter()
            .filter_map(|r| {
                let id = r.id()?.to_string();
                let points: Vec<(i64, f64)> = r
                    .timestamps()
                    .iter()
                    .zip(r.values().iter())
                    .map(|(t, v)| (t.secs(), *v))
                    .collect();
                datapoints += points.len() as u64;
                let why = || {
                    r.messages()
                        .iter()
                        .filter_map(|m| m.value())
                        .collect::<Vec<_>>()
                        .join("; ")
                };
                let error = match r.status_code() {
                    Some(StatusCode::Forbidden) => Some(AwsError::AccessDenied(format!(
                        "GetMetricData: query {id} forbidden: {}",
                        why()
                    ))),
                    Some(StatusCode::InternalError) => Some(AwsError::Transient(format!(
                        "GetMetricData: query {id} failed: {}",
                        why()
                    ))),
                    _ => None,
                };
                Some(Series { id, points, error })
            })
            .collect();
        stats.record_datapoints(datapoints);
        Ok(Page {
            series,
            next_token: out.next_token().map(str::to_string),
        })
    }
}

/// Most `ListMetrics` pages read for one metric of one application (500 metrics a page).
const MAX_LIST_PAGES: usize = 4;

#[async_trait]
impl ListMetricsApi for AwsClients {
    async fn list_dimensions(
        &self,
        target: &Target,
        metric: &str,
        application: &str,
    ) -> Result<Vec<Vec<(String, String)>>, AwsError> {
        let op = AwsOperation::ListMetrics;
        let client = self.clients(target).await.cloudwatch;
        let stats = self.stats();
        let mut found = Vec::new();
        let mut token: Option<String> = None;
        for _ in 0..MAX_LIST_PAGES {
            stats.record_call(op);
            // NB: RecentlyActive PT3H leaves out the tasks of an older job graph (ListMetrics
            // otherwise lists two weeks of them); the only value CloudWatch accepts.
            let result = client
                .list_metrics()
                .namespace(METRIC_NAMESPACE)
                .metric_name(metric)
                .dimensions(
                    DimensionFilter::builder()
                        .name(APPLICATION_DIMENSION)
                        .value(application)
                        .build(),
                )
                .recently_active(RecentlyActive::Pt3H)
                .set_next_token(token.take())
                .customize()
                .interceptor(self.attempt_counter(op))
                .send()
                .await;
            let out = match result {
                Ok(out) => out,
                Err(e) => {
                    let err = AwsError::from_sdk(op, e);
                    stats.record_error(&err);
                    return Err(err);
                }
            };
            found.extend(out.metrics().iter().map(|m| {
                m.dimensions()
                    .iter()
                    .filter_map(|d| Some((d.name()?.to_string(), d.value()?.to_string())))
                    .collect::<Vec<_>>()
            }));
            match out.next_token() {
                Some(next) if !next.is_empty() => token = Some(next.to_string()),
                _ => break,
            }
        }
        Ok(found)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    const T0: i64 = 1_700_000_040; // a multiple of 60

    fn request(periods: i64) -> SampleRequest {
        SampleRequest {
            application: "a".into(),
            start: T0,
            end: T0 + periods * 60,
            period: 60,
        }
    }

    #[test]
    fn windows_align_to_whole_periods() {
        let end = Timestamp::from_second(T0 + 10 * 60 + 17).unwrap();
        let r = SampleRequest::new("a", Duration::from_secs(600), Duration::from_secs(60), end).unwrap();
        assert_eq!(r.end, T0 + 600);
        assert_eq!(r.start, T0);
        assert_eq!(r.periods(), 10);
        assert_eq!(r.fetch_start(), T0 - 60);
        let odd = SampleRequest::new("a", Duration::from_secs(90), Duration::from_secs(60), end).unwrap();
        assert_eq!(odd.periods(), 2, "a partial period counts as a whole one");
        assert!(SampleRequest::new("a", Duration::from_secs(60), Duration::from_millis(1500), end).is_err());
        assert!(SampleRequest::new("a", Duration::ZERO, Duration::from_secs(60), end).is_err());
    }

    /// No request, and no allocation, grows with an unchecked window: a window past the
    /// budget's bound is refused before anything is asked of CloudWatch (`window: 20000h`
    /// used to allocate a slot for each of its 1.2 million periods), and the samples of the
    /// longest window allowed hold only the periods CloudWatch answered for.
    #[test]
    fn windows_are_bounded_and_sparse_answers_stay_small() {
        let end = Timestamp::from_second(T0 + 24 * 3600).unwrap();
        let huge = SampleRequest::new(
            "a",
            Duration::from_secs(20_000 * 3600),
            Duration::from_secs(60),
            end,
        );
        assert!(
            matches!(&huge, Err(AwsError::InvalidArgument(m)) if m.contains("24h")),
            "{huge:?}"
        );
        let day = SampleRequest::new("a", crate::crd::MAX_WINDOW, Duration::from_secs(60), end).unwrap();
        assert_eq!(day.periods(), 1440);
        let points = [(T0 + 60, 1000.0), (T0 + 23 * 3600, 2000.0)];
        let mut series: Vec<Option<&[(i64, f64)]>> = vec![None; METRICS.len()];
        series[0] = Some(&points);
        let samples = assemble(&day, &series);
        assert_eq!(samples.len(), 2);
    }

    #[test]
    fn running_counts_become_increases_and_survive_resets() {
        assert_eq!(increase(None, 5.0), None);
        assert_eq!(increase(Some(5.0), 7.0), Some(2.0));
        assert_eq!(increase(Some(7.0), 7.0), Some(0.0));
        assert_eq!(
            increase(Some(7.0), 1.0),
            Some(1.0),
            "restart: counting from zero again"
        );
        assert_eq!(increase(Some(7.0), 0.0), Some(0.0));
    }

    #[test]
    fn assembly_maps_fields_deltas_nan_and_gaps() {
        let r = request(4);
        let duration = [(T0, 1000.0), (T0 + 60, f64::NAN), (T0 + 180, 3000.0)];
        // The extra period before the window seeds the first increase; a gap at T0 + 120
        // and a reset (restart) at T0 + 180.
        let failed = [(T0 - 60, 10.0), (T0, 12.0), (T0 + 60, 12.0), (T0 + 180, 1.0)];
        let records = [(T0 - 60, 5.0), (T0 + 60, 6.0)];
        let mut series: Vec<Option<&[(i64, f64)]>> = vec![None; METRICS.len()];
        series[0] = Some(&duration);
        series[2] = Some(&failed);
        series[9] = Some(&records);
        let samples = assemble(&r, &series);
        let at: Vec<i64> = samples.iter().map(|s| s.at.as_second()).collect();
        assert_eq!(at, vec![T0, T0 + 60, T0 + 180], "the empty period is left out");
        assert_eq!(samples[0].last_checkpoint_duration_ms, Some(1000.0));
        assert_eq!(samples[0].failed_checkpoints, Some(2.0));
        assert_eq!(
            samples[0].records_in_per_second, None,
            "before-window gauges are dropped"
        );
        assert_eq!(
            samples[1].last_checkpoint_duration_ms, None,
            "NaN is missing data"
        );
        assert_eq!(samples[1].failed_checkpoints, Some(0.0));
        assert_eq!(samples[1].records_in_per_second, Some(6.0));
        assert_eq!(samples[2].failed_checkpoints, Some(1.0));
        assert_eq!(samples[2].cpu_utilization, None);
    }

    #[test]
    fn a_counter_without_history_is_unknown_not_zero() {
        let r = request(2);
        let restarts = [(T0, 3.0), (T0 + 60, 3.0)];
        let mut series: Vec<Option<&[(i64, f64)]>> = vec![None; METRICS.len()];
        series[10] = Some(&restarts);
        let samples = assemble(&r, &series);
        assert_eq!(samples.len(), 1);
        assert_eq!(samples[0].at.as_second(), T0 + 60);
        assert_eq!(samples[0].full_restarts, Some(0.0));
    }

    #[test]
    fn every_field_has_its_own_metric() {
        let r = request(1);
        let points: Vec<Vec<(i64, f64)>> = (0..METRICS.len())
            .map(|m| vec![(T0 - 60, 0.0), (T0, m as f64 + 1.0)])
            .collect();
        let series: Vec<Option<&[(i64, f64)]>> = points.iter().map(|p| Some(p.as_slice())).collect();
        let s = &assemble(&r, &series)[0];
        let got = [
            s.last_checkpoint_duration_ms,
            s.last_checkpoint_size_bytes,
            s.failed_checkpoints,
            s.cpu_utilization,
            s.heap_memory_utilization,
            s.container_memory_utilization,
            s.busy_time_ms_per_second,
            s.back_pressured_time_ms_per_second,
            s.millis_behind_latest,
            s.records_in_per_second,
            s.full_restarts,
            s.downtime_ms,
        ];
        let want: Vec<Option<f64>> = (0..METRICS.len()).map(|m| Some(m as f64 + 1.0)).collect();
        assert_eq!(got.to_vec(), want);
        let names: std::collections::HashSet<_> = METRICS.iter().map(|m| m.name).collect();
        assert_eq!(names.len(), METRICS.len());
    }

    /// Serves each query's points over several pages of `per_page` results.
    struct Paging {
        pages: Mutex<u32>,
        per_page: usize,
    }

    #[async_trait]
    impl MetricDataApi for Paging {
        async fn get_metric_data_page(
            &self,
            _target: &Target,
            call: &MetricDataCall,
            next_token: Option<&str>,
        ) -> Result<Page, AwsError> {
            *self.pages.lock().unwrap() += 1;
            let all: Vec<(String, (i64, f64))> = call
                .queries
                .iter()
                .flat_map(|q| {
                    (call.start..call.end)
                        .step_by(call.period as usize)
                        .map(move |t| (q.id.clone(), (t, q.metric as f64)))
                })
                .collect();
            let from: usize = next_token.map(|t| t.parse().unwrap()).unwrap_or(0);
            let to = (from + self.per_page).min(all.len());
            let mut series: Vec<Series> = Vec::new();
            for (id, point) in &all[from..to] {
                match series.last_mut() {
                    Some(s) if &s.id == id => s.points.push(*point),
                    _ => series.push(Series {
                        id: id.clone(),
                        points: vec![*point],
                        error: None,
                    }),
                }
            }
            Ok(Page {
                series,
                next_token: (to < all.len()).then(|| to.to_string()),
            })
        }
    }

    #[tokio::test]
    async fn paging_is_followed_and_merged() {
        let api = Paging {
            pages: Mutex::new(0),
            per_page: 7,
        };
        let call = MetricDataCall {
            start: T0 - 60,
            end: T0 + 300,
            period: 60,
            queries: queries_for(&SignalPlan::application_dimension_only("a"), "m"),
        };
        let answer = fetch_all(&api, &Target::new("eu-west-1"), &call).await.unwrap();
        // 12 queries × 6 points = 72 points over pages of 7.
        assert_eq!(*api.pages.lock().unwrap(), 11);
        assert_eq!(answer.len(), 12);
        assert!(answer.values().all(|s| s.points.len() == 6));
        let samples = samples_from(&request(5), &call.queries, &answer).unwrap();
        assert_eq!(samples.len(), 5);
        assert_eq!(samples[4].cpu_utilization, Some(3.0));
        assert_eq!(samples[4].failed_checkpoints, Some(0.0));
    }

    #[test]
    fn a_refused_query_fails_its_request() {
        let queries = queries_for(&SignalPlan::application_dimension_only("a"), "m");
        let mut answer = HashMap::new();
        answer.insert(
            "m_3".to_string(),
            Series {
                id: "m_3".into(),
                points: vec![],
                error: Some(AwsError::AccessDenied(
                    "GetMetricData: query m_3 forbidden".into(),
                )),
            },
        );
        let err = samples_from(&request(1), &queries, &answer).unwrap_err();
        assert_eq!(err.reason(), "AccessDenied");
    }
}
