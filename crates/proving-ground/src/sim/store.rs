//! An in-memory CloudWatch metric store: datapoints per metric (namespace, name,
//! dimensions), aggregated on read to a period with CloudWatch's statistics.

use std::{collections::BTreeMap, time::Duration};

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

/// How long datapoints are kept: CloudWatch keeps one-minute datapoints for 15 days.
pub const RETENTION: Duration = Duration::from_secs(15 * 24 * 3600);

/// One metric: namespace, name and dimensions (sorted by name, as CloudWatch compares them).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct MetricId {
    /// e.g. `AWS/KinesisAnalytics`.
    pub namespace: String,
    /// e.g. `lastCheckpointDuration`.
    pub metric_name: String,
    /// e.g. `[("Application", "orders")]`.
    pub dimensions: Vec<(String, String)>,
}

impl MetricId {
    /// A metric id with its dimensions put in canonical (sorted) order.
    pub fn new(namespace: &str, metric_name: &str, dimensions: &[(String, String)]) -> Self {
        let mut dimensions = dimensions.to_vec();
        dimensions.sort();
        Self {
            namespace: namespace.to_string(),
            metric_name: metric_name.to_string(),
            dimensions,
        }
    }
}

/// A `GetMetricData`/`GetMetricStatistics` query for one metric.
#[derive(Clone, Debug, PartialEq)]
pub struct MetricQuery {
    /// Namespace.
    pub namespace: String,
    /// Metric name.
    pub metric_name: String,
    /// Dimensions (order does not matter; all must match exactly).
    pub dimensions: Vec<(String, String)>,
    /// Inclusive start.
    pub start: Timestamp,
    /// Exclusive end.
    pub end: Timestamp,
    /// Aggregation period.
    pub period: Duration,
    /// `Average`, `Maximum`, `Minimum`, `Sum`, `SampleCount` or `pNN` (e.g. `p99`, `p99.9`).
    pub stat: String,
}

/// A CloudWatch statistic.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Statistic {
    /// Mean of the values.
    Average,
    /// Largest value.
    Maximum,
    /// Smallest value.
    Minimum,
    /// Sum of the values.
    Sum,
    /// Number of values.
    SampleCount,
    /// A percentile, 0..100.
    Percentile(f64),
}

impl Statistic {
    /// Parses a statistic as CloudWatch names it; `None` for anything else.
    pub fn parse(stat: &str) -> Option<Self> {
        match stat {
            "Average" => Some(Self::Average),
            "Maximum" => Some(Self::Maximum),
            "Minimum" => Some(Self::Minimum),
            "Sum" => Some(Self::Sum),
            "SampleCount" => Some(Self::SampleCount),
            _ => {
                let p: f64 = stat.strip_prefix('p')?.parse().ok()?;
                (0.0..=100.0).contains(&p).then_some(Self::Percentile(p))
            }
        }
    }
}

/// Pre-aggregated values (`StatisticValues` of PutMetricData).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct StatisticSet {
    /// Number of samples.
    pub sample_count: f64,
    /// Their sum.
    pub sum: f64,
    /// Their minimum.
    pub minimum: f64,
    /// Their maximum.
    pub maximum: f64,
}

/// One `MetricDatum` of `PutMetricData`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PutDatum {
    /// Metric name.
    pub metric_name: String,
    /// Dimensions.
    pub dimensions: Vec<(String, String)>,
    /// Timestamp (default: the fleet's now).
    pub timestamp: Option<Timestamp>,
    /// A single value.
    pub value: Option<f64>,
    /// Many values, with `counts` (default 1 each).
    pub values: Vec<f64>,
    /// Counts of `values`.
    pub counts: Vec<f64>,
    /// Pre-aggregated values.
    pub statistic_values: Option<StatisticSet>,
    /// Unit, e.g. `Milliseconds`.
    pub unit: Option<String>,
}

/// A datapoint that is more than one plain value (a statistic set, or values with counts).
#[derive(Clone, Debug)]
struct Aggregate {
    at_ms: i64,
    count: f64,
    sum: f64,
    min: f64,
    max: f64,
    /// Values with their counts, for percentiles (empty for statistic sets).
    values: Vec<(f64, f64)>,
}

/// One metric's datapoints. Plain values (all the simulator publishes) are kept as
/// (milliseconds, value) pairs, 16 bytes each, so that thousands of emulated applications
/// stay cheap; the rarer aggregates of `PutMetricData` are kept apart.
#[derive(Clone, Debug, Default)]
struct Series {
    unit: Option<String>,
    /// Plain values, sorted by time.
    values: Vec<(i64, f64)>,
    /// Aggregates, sorted by time.
    aggregates: Vec<Aggregate>,
}

impl Series {
    fn is_empty(&self) -> bool {
        self.values.is_empty() && self.aggregates.is_empty()
    }
}

/// What one bucket of a query has seen.
#[derive(Clone, Debug)]
struct Bucket {
    count: f64,
    sum: f64,
    min: f64,
    max: f64,
    /// Values with counts; `exact` is false once a statistic set (without values) joined.
    values: Vec<(f64, f64)>,
    exact: bool,
}

impl Bucket {
    fn new() -> Self {
        Self {
            count: 0.0,
            sum: 0.0,
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
            values: Vec::new(),
            exact: true,
        }
    }

    fn add_value(&mut self, v: f64) {
        self.count += 1.0;
        self.sum += v;
        self.min = self.min.min(v);
        self.max = self.max.max(v);
        self.values.push((v, 1.0));
    }

    fn add_aggregate(&mut self, a: &Aggregate) {
        self.count += a.count;
        self.sum += a.sum;
        self.min = self.min.min(a.min);
        self.max = self.max.max(a.max);
        if a.values.is_empty() {
            self.exact = false;
        }
        self.values.extend_from_slice(&a.values);
    }
}

/// Datapoints of many metrics.
#[derive(Clone, Debug, Default)]
pub struct MetricStore {
    series: BTreeMap<MetricId, Series>,
}

fn ms(t: Timestamp) -> i64 {
    t.as_millisecond()
}

impl MetricStore {
    /// Records one value.
    pub fn record(&mut self, id: &MetricId, unit: &str, at: Timestamp, value: f64) {
        let series = self.series_mut(id, Some(unit));
        insert_sorted(&mut series.values, (ms(at), value), |p| p.0);
    }

    /// Records a `PutMetricData` datum (already validated).
    pub fn put(&mut self, namespace: &str, datum: &PutDatum, now: Timestamp) {
        let id = MetricId::new(namespace, &datum.metric_name, &datum.dimensions);
        let at = ms(datum.timestamp.unwrap_or(now));
        let series = self.series_mut(&id, datum.unit.as_deref());
        if let Some(v) = datum.value {
            insert_sorted(&mut series.values, (at, v), |p| p.0);
        }
        if !datum.values.is_empty() {
            let values: Vec<(f64, f64)> = datum
                .values
                .iter()
                .enumerate()
                .map(|(i, v)| (*v, datum.counts.get(i).copied().unwrap_or(1.0)))
                .collect();
            let count = values.iter().map(|(_, c)| c).sum();
            let sum = values.iter().map(|(v, c)| v * c).sum();
            let min = values.iter().map(|(v, _)| *v).fold(f64::INFINITY, f64::min);
            let max = values.iter().map(|(v, _)| *v).fold(f64::NEG_INFINITY, f64::max);
            insert_sorted(
                &mut series.aggregates,
                Aggregate {
                    at_ms: at,
                    count,
                    sum,
                    min,
                    max,
                    values,
                },
                |a| a.at_ms,
            );
        }
        if let Some(s) = datum.statistic_values {
            let aggregate = Aggregate {
                at_ms: at,
                count: s.sample_count,
                sum: s.sum,
                min: s.minimum,
                max: s.maximum,
                values: Vec::new(),
            };
            insert_sorted(&mut series.aggregates, aggregate, |a| a.at_ms);
        }
    }

    fn series_mut(&mut self, id: &MetricId, unit: Option<&str>) -> &mut Series {
        // NB: a lookup before the insert avoids cloning the id for every datapoint.
        if !self.series.contains_key(id) {
            self.series.insert(id.clone(), Series::default());
        }
        let series = self.series.get_mut(id).expect("inserted above");
        if let Some(u) = unit
            && series.unit.as_deref() != Some(u)
        {
            series.unit = Some(u.to_string());
        }
        series
    }

    /// The unit a metric was published with.
    pub fn unit(&self, id: &MetricId) -> Option<&str> {
        self.series.get(id).and_then(|s| s.unit.as_deref())
    }

    /// Datapoints of one metric aggregated to `period` buckets starting at `start`, in
    /// [start, end), oldest first; buckets without data are absent. An unknown statistic
    /// or a zero period gives no datapoints.
    pub fn query(&self, q: &MetricQuery) -> Vec<(Timestamp, f64)> {
        let Some(stat) = Statistic::parse(&q.stat) else {
            return Vec::new();
        };
        if q.period.is_zero() || q.end <= q.start {
            return Vec::new();
        }
        let period_ms = (q.period.as_millis() as i64).max(1);
        let id = MetricId::new(&q.namespace, &q.metric_name, &q.dimensions);
        let Some(series) = self.series.get(&id) else {
            return Vec::new();
        };
        let (start, end) = (ms(q.start), ms(q.end));
        let mut buckets: BTreeMap<i64, Bucket> = BTreeMap::new();
        let from = series.values.partition_point(|p| p.0 < start);
        let to = series.values.partition_point(|p| p.0 < end);
        for (at, v) in &series.values[from..to] {
            buckets
                .entry((at - start) / period_ms)
                .or_insert_with(Bucket::new)
                .add_value(*v);
        }
        let from = series.aggregates.partition_point(|a| a.at_ms < start);
        let to = series.aggregates.partition_point(|a| a.at_ms < end);
        for a in &series.aggregates[from..to] {
            buckets
                .entry((a.at_ms - start) / period_ms)
                .or_insert_with(Bucket::new)
                .add_aggregate(a);
        }
        buckets
            .into_iter()
            .map(|(i, b)| {
                (
                    q.start + jiff::SignedDuration::from_millis(i * period_ms),
                    aggregate(b, stat),
                )
            })
            .collect()
    }

    /// Metrics matching the filters; a dimension filter with an empty value matches any
    /// value of that dimension.
    pub fn list(
        &self,
        namespace: Option<&str>,
        metric_name: Option<&str>,
        dims: &[(String, String)],
    ) -> Vec<MetricId> {
        self.series
            .iter()
            .filter(|(id, s)| {
                !s.is_empty()
                    && namespace.is_none_or(|n| n == id.namespace)
                    && metric_name.is_none_or(|n| n == id.metric_name)
                    && dims.iter().all(|(k, v)| {
                        id.dimensions
                            .iter()
                            .any(|(dk, dv)| dk == k && (v.is_empty() || dv == v))
                    })
            })
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// Drops datapoints older than `before`.
    pub fn expire(&mut self, before: Timestamp) {
        let before = ms(before);
        for series in self.series.values_mut() {
            let n = series.values.partition_point(|p| p.0 < before);
            series.values.drain(..n);
            let n = series.aggregates.partition_point(|a| a.at_ms < before);
            series.aggregates.drain(..n);
        }
        self.series.retain(|_, s| !s.is_empty());
    }
}

/// Appends (the common case: the simulator publishes in time order) or inserts in order.
fn insert_sorted<T>(items: &mut Vec<T>, item: T, key: impl Fn(&T) -> i64) {
    let k = key(&item);
    if items.last().is_none_or(|last| key(last) <= k) {
        items.push(item);
    } else {
        let i = items.partition_point(|x| key(x) <= k);
        items.insert(i, item);
    }
}

fn aggregate(b: Bucket, stat: Statistic) -> f64 {
    match stat {
        Statistic::Average => b.sum / b.count.max(f64::MIN_POSITIVE),
        Statistic::Maximum => b.max,
        Statistic::Minimum => b.min,
        Statistic::Sum => b.sum,
        Statistic::SampleCount => b.count,
        Statistic::Percentile(q) => {
            if b.values.is_empty() || !b.exact {
                // Statistic sets carry no values: CloudWatch cannot compute percentiles from
                // them either; the closest honest answer is the maximum for p >= 50, the
                // minimum below.
                return if q >= 50.0 { b.max } else { b.min };
            }
            let mut values = b.values;
            values.sort_by(|x, y| x.0.total_cmp(&y.0));
            let total: f64 = values.iter().map(|(_, c)| c).sum();
            let rank = (q / 100.0 * total).max(f64::MIN_POSITIVE);
            let mut seen = 0.0;
            for (v, c) in &values {
                seen += c;
                if seen >= rank {
                    return *v;
                }
            }
            values.last().map_or(f64::NAN, |(v, _)| *v)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(min: i64) -> Timestamp {
        Timestamp::from_second(1_767_571_200 + min * 60).unwrap()
    }

    fn query(stat: &str, period_min: u64) -> MetricQuery {
        MetricQuery {
            namespace: "AWS/KinesisAnalytics".into(),
            metric_name: "cpuUtilization".into(),
            dimensions: vec![("Application".into(), "a".into())],
            start: at(0),
            end: at(10),
            period: Duration::from_secs(period_min * 60),
            stat: stat.into(),
        }
    }

    #[test]
    fn aggregates_with_cloudwatch_statistics() {
        let mut store = MetricStore::default();
        let id = MetricId::new(
            "AWS/KinesisAnalytics",
            "cpuUtilization",
            &[("Application".into(), "a".into())],
        );
        for m in 0..10 {
            store.record(&id, "Percent", at(m), m as f64);
        }
        store.record(&id, "Percent", at(12), 99.0);
        assert_eq!(
            store.query(&query("Maximum", 5)),
            vec![(at(0), 4.0), (at(5), 9.0)]
        );
        assert_eq!(
            store.query(&query("Average", 5)),
            vec![(at(0), 2.0), (at(5), 7.0)]
        );
        assert_eq!(store.query(&query("Sum", 10)), vec![(at(0), 45.0)]);
        assert_eq!(store.query(&query("SampleCount", 10)), vec![(at(0), 10.0)]);
        assert_eq!(store.query(&query("Minimum", 10)), vec![(at(0), 0.0)]);
        assert_eq!(store.query(&query("p90", 10)), vec![(at(0), 8.0)]);
        assert!(store.query(&query("Median", 10)).is_empty());
        assert_eq!(store.unit(&id), Some("Percent"));
        store.expire(at(5));
        assert_eq!(store.query(&query("SampleCount", 10)), vec![(at(0), 5.0)]);
    }

    #[test]
    fn put_metric_data_values_counts_and_statistic_sets() {
        let mut store = MetricStore::default();
        let datum =
            |value: Option<f64>, values: Vec<f64>, counts: Vec<f64>, set: Option<StatisticSet>| PutDatum {
                metric_name: "latency".into(),
                timestamp: Some(at(1)),
                value,
                values,
                counts,
                statistic_values: set,
                unit: Some("Milliseconds".into()),
                ..PutDatum::default()
            };
        store.put("App", &datum(Some(10.0), vec![], vec![], None), at(0));
        store.put("App", &datum(None, vec![20.0, 30.0], vec![2.0, 1.0], None), at(0));
        let q = |stat: &str| MetricQuery {
            namespace: "App".into(),
            metric_name: "latency".into(),
            dimensions: vec![],
            start: at(0),
            end: at(10),
            period: Duration::from_secs(600),
            stat: stat.into(),
        };
        assert_eq!(store.query(&q("SampleCount")), vec![(at(0), 4.0)]);
        assert_eq!(store.query(&q("Sum")), vec![(at(0), 80.0)]);
        assert_eq!(store.query(&q("p50")), vec![(at(0), 20.0)]);
        assert_eq!(store.query(&q("p100")), vec![(at(0), 30.0)]);
        let set = StatisticSet {
            sample_count: 4.0,
            sum: 400.0,
            minimum: 50.0,
            maximum: 150.0,
        };
        store.put("App", &datum(None, vec![], vec![], Some(set)), at(0));
        assert_eq!(store.query(&q("Average")), vec![(at(0), 60.0)]);
        assert_eq!(store.query(&q("Maximum")), vec![(at(0), 150.0)]);
        assert_eq!(
            store.query(&q("p99")),
            vec![(at(0), 150.0)],
            "no exact percentile across a statistic set"
        );
        // Out-of-order timestamps are kept in order.
        let mut early = datum(Some(1.0), vec![], vec![], None);
        early.timestamp = Some(at(0));
        store.put("App", &early, at(0));
        let mut q1 = q("Minimum");
        q1.period = Duration::from_secs(60);
        assert_eq!(store.query(&q1), vec![(at(0), 1.0), (at(1), 10.0)]);
    }

    #[test]
    fn lists_with_dimension_filters() {
        let mut store = MetricStore::default();
        let dims = |app: &str| vec![("Application".to_string(), app.to_string())];
        store.record(
            &MetricId::new("AWS/KinesisAnalytics", "KPUs", &dims("a")),
            "Count",
            at(0),
            1.0,
        );
        store.record(
            &MetricId::new("AWS/KinesisAnalytics", "KPUs", &dims("b")),
            "Count",
            at(0),
            2.0,
        );
        store.record(&MetricId::new("Custom", "x", &[]), "None", at(0), 2.0);
        assert_eq!(store.list(Some("AWS/KinesisAnalytics"), None, &[]).len(), 2);
        assert_eq!(store.list(None, Some("KPUs"), &dims("b")).len(), 1);
        assert_eq!(
            store
                .list(None, None, &[("Application".into(), String::new())])
                .len(),
            2
        );
    }
}
