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

#[derive(Clone, Debug)]
struct Point {
    at: Timestamp,
    count: f64,
    sum: f64,
    min: f64,
    max: f64,
    /// Values with their counts, for percentiles (empty for statistic sets).
    values: Vec<(f64, f64)>,
}

#[derive(Clone, Debug, Default)]
struct Series {
    unit: Option<String>,
    points: Vec<Point>,
}

/// Datapoints of many metrics.
#[derive(Clone, Debug, Default)]
pub struct MetricStore {
    series: BTreeMap<MetricId, Series>,
}

impl MetricStore {
    /// Records one value.
    pub fn record(&mut self, id: &MetricId, unit: &str, at: Timestamp, value: f64) {
        self.insert(
            id,
            Some(unit),
            Point {
                at,
                count: 1.0,
                sum: value,
                min: value,
                max: value,
                values: vec![(value, 1.0)],
            },
        );
    }

    /// Records a `PutMetricData` datum (already validated).
    pub fn put(&mut self, namespace: &str, datum: &PutDatum, now: Timestamp) {
        let id = MetricId::new(namespace, &datum.metric_name, &datum.dimensions);
        let at = datum.timestamp.unwrap_or(now);
        let unit = datum.unit.as_deref();
        if let Some(v) = datum.value {
            self.insert(
                &id,
                unit,
                Point {
                    at,
                    count: 1.0,
                    sum: v,
                    min: v,
                    max: v,
                    values: vec![(v, 1.0)],
                },
            );
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
            self.insert(
                &id,
                unit,
                Point {
                    at,
                    count,
                    sum,
                    min,
                    max,
                    values,
                },
            );
        }
        if let Some(s) = datum.statistic_values {
            self.insert(
                &id,
                unit,
                Point {
                    at,
                    count: s.sample_count,
                    sum: s.sum,
                    min: s.minimum,
                    max: s.maximum,
                    values: Vec::new(),
                },
            );
        }
    }

    fn insert(&mut self, id: &MetricId, unit: Option<&str>, point: Point) {
        let series = self.series.entry(id.clone()).or_default();
        if let Some(u) = unit {
            series.unit = Some(u.to_string());
        }
        // Appends are the common case (the simulator publishes in time order).
        if series.points.last().is_none_or(|p| p.at <= point.at) {
            series.points.push(point);
        } else {
            let i = series.points.partition_point(|p| p.at <= point.at);
            series.points.insert(i, point);
        }
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
        let period = q.period.as_secs().max(1) as i64;
        if q.period.is_zero() || q.end <= q.start {
            return Vec::new();
        }
        let id = MetricId::new(&q.namespace, &q.metric_name, &q.dimensions);
        let Some(series) = self.series.get(&id) else {
            return Vec::new();
        };
        let from = series.points.partition_point(|p| p.at < q.start);
        let to = series.points.partition_point(|p| p.at < q.end);
        let mut out = Vec::new();
        let mut bucket: Option<(i64, Vec<&Point>)> = None;
        for p in &series.points[from..to] {
            let index = p.at.duration_since(q.start).as_secs() / period;
            match &mut bucket {
                Some((i, points)) if *i == index => points.push(p),
                _ => {
                    if let Some((i, points)) = bucket.take() {
                        out.push((bucket_start(q.start, i, period), aggregate(&points, stat)));
                    }
                    bucket = Some((index, vec![p]));
                }
            }
        }
        if let Some((i, points)) = bucket {
            out.push((bucket_start(q.start, i, period), aggregate(&points, stat)));
        }
        out
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
                !s.points.is_empty()
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
        for series in self.series.values_mut() {
            let n = series.points.partition_point(|p| p.at < before);
            if n > 0 {
                series.points.drain(..n);
            }
        }
        self.series.retain(|_, s| !s.points.is_empty());
    }
}

fn bucket_start(start: Timestamp, index: i64, period: i64) -> Timestamp {
    start + jiff::SignedDuration::from_secs(index * period)
}

fn aggregate(points: &[&Point], stat: Statistic) -> f64 {
    let count: f64 = points.iter().map(|p| p.count).sum();
    match stat {
        Statistic::Average => points.iter().map(|p| p.sum).sum::<f64>() / count.max(f64::MIN_POSITIVE),
        Statistic::Maximum => points.iter().map(|p| p.max).fold(f64::NEG_INFINITY, f64::max),
        Statistic::Minimum => points.iter().map(|p| p.min).fold(f64::INFINITY, f64::min),
        Statistic::Sum => points.iter().map(|p| p.sum).sum(),
        Statistic::SampleCount => count,
        Statistic::Percentile(q) => {
            let mut values: Vec<(f64, f64)> = points.iter().flat_map(|p| p.values.iter().copied()).collect();
            if values.is_empty() {
                // Only statistic sets: CloudWatch cannot compute percentiles from them either;
                // the closest honest answer is the maximum for p >= 50, the minimum below.
                return if q >= 50.0 {
                    points.iter().map(|p| p.max).fold(f64::NEG_INFINITY, f64::max)
                } else {
                    points.iter().map(|p| p.min).fold(f64::INFINITY, f64::min)
                };
            }
            values.sort_by(|a, b| a.0.total_cmp(&b.0));
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
