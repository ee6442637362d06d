//! The application's own input history: `numRecordsInPerSecond` (the source's rate as the
//! job reads it) at one-hour periods over the last [`HISTORY_DAYS`] days, for the policy's
//! forecast (see docs/design.md, "Ahead of the load").
//!
//! CloudWatch keeps one-minute datapoints for 15 days and aggregates them to hours on
//! request, so one query per statistic and application returns the whole history (336
//! datapoints): the hours' `Average`, and their `Maximum` (the busiest one-minute
//! datapoint of each hour: how far the minutes the controller judges run above the hour).
//! It changes once an hour: [`HourlyCache`] keeps each application's answer until the
//! clock hour changes, so the history costs two queries per application per hour, batched
//! with the other applications' by the same `GetMetricData` batcher as the per-minute
//! samples.

use std::{collections::HashMap, sync::Mutex};

use jiff::Timestamp;

use super::{
    AwsError, Target,
    cloudwatch::{MetricDataApi, SampleRequest, read_samples},
    signals::{SeriesSpec, SignalPlan},
};
use crate::policy::{HourlyRate, Sample};

/// Days of hourly input the forecast learns from (CloudWatch keeps one-minute data 15
/// days; the last two weeks hold two of each weekday).
pub const HISTORY_DAYS: i64 = 14;

/// The history's period, seconds.
pub const HOUR_S: i64 = 3600;

/// The field of [`METRICS`](super::METRICS) the history reads: `numRecordsInPerSecond`
/// (found by name at compile time, so reordering the list cannot point it elsewhere).
const INPUT_FIELD: usize = field_of("numRecordsInPerSecond");

/// The index of the metric `name` in [`METRICS`](super::METRICS); a name not in the list
/// fails the build.
const fn field_of(name: &str) -> usize {
    let mut i = 0;
    while i < super::METRICS.len() {
        let candidate = super::METRICS[i].name.as_bytes();
        let wanted = name.as_bytes();
        if candidate.len() == wanted.len() {
            let mut j = 0;
            while j < wanted.len() && candidate[j] == wanted[j] {
                j += 1;
            }
            if j == wanted.len() {
                return i;
            }
        }
        i += 1;
    }
    panic!("the metric is not in METRICS")
}

/// The request for the complete hours of the last [`HISTORY_DAYS`] days before `now` (the
/// hour in progress is left out: its average is not final).
pub fn request(application: &str, now: Timestamp) -> SampleRequest {
    let end = now.as_second().div_euclid(HOUR_S) * HOUR_S;
    SampleRequest {
        application: application.to_string(),
        start: end - HISTORY_DAYS * 24 * HOUR_S,
        end,
        period: HOUR_S,
    }
}

/// `plan` reduced to the series of the input rate (its dimensions as the plan found them).
pub fn input_plan(plan: &SignalPlan) -> SignalPlan {
    SignalPlan {
        series: plan
            .series
            .iter()
            .filter(|s| s.field == INPUT_FIELD)
            .cloned()
            .collect::<Vec<SeriesSpec>>(),
        ..plan.clone()
    }
}

/// `plan`'s input series read with the statistic `Maximum`: each hour's busiest minute.
pub fn busiest_plan(plan: &SignalPlan) -> SignalPlan {
    let mut input = input_plan(plan);
    for s in &mut input.series {
        s.stat = "Maximum";
    }
    input
}

/// The hourly rates in `averages` (hours without a datapoint left out), oldest first, with
/// each hour's busiest minute from `busiest` where it has one.
pub fn hourly(averages: &[Sample], busiest: &[Sample]) -> Vec<HourlyRate> {
    let valid = |v: Option<f64>| v.filter(|v| v.is_finite() && *v >= 0.0);
    let peaks: HashMap<Timestamp, f64> = busiest
        .iter()
        .filter_map(|s| valid(s.records_in_per_second).map(|v| (s.at, v)))
        .collect();
    let mut out: Vec<HourlyRate> = averages
        .iter()
        .filter_map(|s| {
            valid(s.records_in_per_second).map(|records_per_second| HourlyRate {
                at: s.at,
                records_per_second,
                busiest_minute_per_second: peaks.get(&s.at).copied(),
            })
        })
        .collect();
    out.sort_by_key(|h| h.at);
    out
}

/// Reads the history directly (a `GetMetricData` call per statistic, and their pages).
pub async fn read(
    api: &dyn MetricDataApi,
    target: &Target,
    plan: &SignalPlan,
    now: Timestamp,
) -> Result<Vec<HourlyRate>, AwsError> {
    let input = input_plan(plan);
    if input.series.is_empty() {
        return Ok(Vec::new());
    }
    let request = request(&plan.application, now);
    let averages = read_samples(api, target, &input, &request).await?;
    let busiest = read_samples(api, target, &busiest_plan(plan), &request).await?;
    Ok(hourly(&averages, &busiest))
}

/// An application's history, by the clock hour it was read in.
type Entries = HashMap<(Target, String), (i64, Vec<HourlyRate>)>;

/// Each application's history until the clock hour changes.
#[derive(Debug, Default)]
pub struct HourlyCache {
    entries: Mutex<Entries>,
}

impl HourlyCache {
    /// The cached history of `application`, when it was read within the hour of `now`.
    pub fn get(&self, target: &Target, application: &str, now: Timestamp) -> Option<Vec<HourlyRate>> {
        let hour = now.as_second().div_euclid(HOUR_S);
        let entries = self
            .entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        entries
            .get(&(target.clone(), application.to_string()))
            .filter(|(at, _)| *at == hour)
            .map(|(_, rates)| rates.clone())
    }

    /// Keeps `rates` as the history of `application` for the hour of `now`.
    pub fn put(&self, target: &Target, application: &str, now: Timestamp, rates: Vec<HourlyRate>) {
        let hour = now.as_second().div_euclid(HOUR_S);
        let mut entries = self
            .entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        entries.insert((target.clone(), application.to_string()), (hour, rates));
    }

    /// Forgets `application` (deleted budgets).
    pub fn forget(&self, target: &Target, application: &str) {
        let mut entries = self
            .entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        entries.remove(&(target.clone(), application.to_string()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_request_covers_complete_hours_of_two_weeks() {
        let now = Timestamp::from_second(1_767_571_200 + 1_800).unwrap();
        let r = request("orders", now);
        assert_eq!(r.end, 1_767_571_200);
        assert_eq!(r.periods(), 14 * 24);
        assert_eq!(r.period, 3600);
    }

    #[test]
    fn the_input_plan_keeps_only_the_input_series() {
        let plan = SignalPlan::application_dimension_only("orders");
        let input = input_plan(&plan);
        assert_eq!(input.series.len(), 1);
        assert_eq!(input.series[0].name, "numRecordsInPerSecond");
        assert_eq!(input.series[0].stat, "Average");
        let busiest = busiest_plan(&plan);
        assert_eq!(busiest.series.len(), 1);
        assert_eq!(busiest.series[0].name, "numRecordsInPerSecond");
        assert_eq!(busiest.series[0].stat, "Maximum");
    }

    #[test]
    fn hourly_rates_skip_gaps_and_non_numbers() {
        let at = |s| Timestamp::from_second(s).unwrap();
        let samples = vec![
            Sample {
                at: at(7200),
                records_in_per_second: Some(5.0),
                ..Sample::default()
            },
            Sample {
                at: at(0),
                records_in_per_second: Some(3.0),
                ..Sample::default()
            },
            Sample {
                at: at(3600),
                records_in_per_second: Some(f64::NAN),
                ..Sample::default()
            },
        ];
        let busiest = vec![
            Sample {
                at: at(7200),
                records_in_per_second: Some(6.0),
                ..Sample::default()
            },
            Sample {
                at: at(3600),
                records_in_per_second: Some(9.0),
                ..Sample::default()
            },
        ];
        let h = hourly(&samples, &busiest);
        assert_eq!(h.len(), 2);
        assert_eq!(h[0].at, at(0));
        assert_eq!(h[0].busiest_minute_per_second, None);
        assert_eq!(h[1].records_per_second, 5.0);
        assert_eq!(h[1].busiest_minute_per_second, Some(6.0));
    }

    #[test]
    fn the_cache_holds_an_answer_for_its_hour_only() {
        let cache = HourlyCache::default();
        let target = Target::new("eu-west-1");
        let t = |s| Timestamp::from_second(s).unwrap();
        let rates = vec![HourlyRate {
            at: t(0),
            records_per_second: 1.0,
            busiest_minute_per_second: Some(1.2),
        }];
        cache.put(&target, "orders", t(3600 + 10), rates.clone());
        assert_eq!(cache.get(&target, "orders", t(3600 + 3599)), Some(rates));
        assert_eq!(cache.get(&target, "orders", t(7200)), None);
        assert_eq!(cache.get(&target, "other", t(3600 + 10)), None);
        cache.forget(&target, "orders");
        assert_eq!(cache.get(&target, "orders", t(3600 + 10)), None);
    }
}
