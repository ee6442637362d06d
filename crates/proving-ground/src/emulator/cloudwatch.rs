//! CloudWatch over Smithy RPC v2 CBOR: `POST /service/GraniteServiceVersion20100801/operation/<Operation>`
//! with `smithy-protocol: rpc-v2-cbor` and CBOR bodies, as `aws-sdk-cloudwatch` 1.140 and
//! botocore 1.4x speak it. Errors are AWS-query compatible: `__type` in the body and the
//! legacy code in the `x-amzn-query-error` header (see [`super::error`]).
//!
//! CloudWatch also speaks awsJson 1.0 (`POST /`, `X-Amz-Target:
//! GraniteServiceVersion20100801.<Operation>`), which botocore 1.42.7 and later pick over
//! CBOR: the shapes and errors are the same, only the encoding differs, so both protocols
//! share one decoder ([`decode_json`] converts JSON to the decoded-CBOR form).

use std::time::Duration;

use jiff::Timestamp;

use super::Backend;
use super::{
    cbor::{Cbor, DecodeError, Struct, decode_body, element_struct, json_body},
    error::{ApiError, ErrorKind},
    faults::MetricMask,
};
use crate::sim::{MetricId, MetricQuery, PutDatum, ServiceError, StatisticSet, store::Statistic};

/// The path prefix of every operation.
pub const PATH_PREFIX: &str = "/service/GraniteServiceVersion20100801/operation/";
/// The `X-Amz-Target` prefix of CloudWatch's awsJson 1.0 protocol.
pub const JSON_TARGET_PREFIX: &str = "GraniteServiceVersion20100801.";
/// The SigV4 signing name.
pub const SIGNING_NAME: &str = "monitoring";
/// The timestamp members of the inputs served (JSON carries them as bare numbers).
const TIMESTAMP_MEMBERS: [&str; 3] = ["StartTime", "EndTime", "Timestamp"];
/// GetMetricData: at most this many queries per request.
pub const MAX_QUERIES: usize = 500;
/// GetMetricData: at most this many datapoints per response (the default MaxDatapoints).
pub const MAX_DATAPOINTS: usize = 100_800;
/// GetMetricStatistics: at most this many datapoints per request.
pub const MAX_STATISTICS_DATAPOINTS: i64 = 1_440;
/// ListMetrics: metrics per page.
pub const LIST_PAGE: usize = 500;
/// PutMetricData: at most this many metric data per request.
pub const MAX_PUT_DATA: usize = 1_000;
/// PutMetricData: at most this many values per datum.
pub const MAX_PUT_VALUES: usize = 150;
/// The dimension that names an application in `AWS/KinesisAnalytics`.
const APPLICATION_DIMENSION: &str = "Application";

/// The operations served.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operation {
    /// `GetMetricData`.
    GetMetricData,
    /// `GetMetricStatistics`.
    GetMetricStatistics,
    /// `ListMetrics`.
    ListMetrics,
    /// `PutMetricData`.
    PutMetricData,
}

impl Operation {
    /// Parses the operation segment of the path.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "GetMetricData" => Some(Self::GetMetricData),
            "GetMetricStatistics" => Some(Self::GetMetricStatistics),
            "ListMetrics" => Some(Self::ListMetrics),
            "PutMetricData" => Some(Self::PutMetricData),
            _ => None,
        }
    }

    /// The operation name.
    pub fn name(self) -> &'static str {
        match self {
            Self::GetMetricData => "GetMetricData",
            Self::GetMetricStatistics => "GetMetricStatistics",
            Self::ListMetrics => "ListMetrics",
            Self::PutMetricData => "PutMetricData",
        }
    }
}

/// One `MetricDataQuery` with a `MetricStat`.
#[derive(Clone, Debug, PartialEq)]
pub struct StatQuery {
    /// `Id`.
    pub id: String,
    /// `Label` (default: the metric name).
    pub label: Option<String>,
    /// The metric.
    pub metric: MetricId,
    /// `Period`, seconds.
    pub period: u64,
    /// `Stat`.
    pub stat: String,
    /// `ReturnData`.
    pub return_data: bool,
}

/// `GetMetricData`.
#[derive(Clone, Debug, PartialEq)]
pub struct GetMetricData {
    /// The queries.
    pub queries: Vec<StatQuery>,
    /// `StartTime`.
    pub start: Timestamp,
    /// `EndTime`.
    pub end: Timestamp,
    /// `NextToken`.
    pub next_token: Option<String>,
    /// `ScanBy` is `TimestampAscending` (default: descending).
    pub ascending: bool,
    /// `MaxDatapoints`.
    pub max_datapoints: usize,
}

/// `GetMetricStatistics`.
#[derive(Clone, Debug, PartialEq)]
pub struct GetMetricStatistics {
    /// The metric.
    pub metric: MetricId,
    /// `StartTime`.
    pub start: Timestamp,
    /// `EndTime`.
    pub end: Timestamp,
    /// `Period`, seconds.
    pub period: u64,
    /// `Statistics`.
    pub statistics: Vec<String>,
    /// `ExtendedStatistics` (percentiles).
    pub extended: Vec<String>,
}

/// `ListMetrics`.
#[derive(Clone, Debug, PartialEq)]
pub struct ListMetrics {
    /// `Namespace`.
    pub namespace: Option<String>,
    /// `MetricName`.
    pub metric_name: Option<String>,
    /// `Dimensions` filters (an empty value matches any).
    pub dimensions: Vec<(String, String)>,
    /// Offset from `NextToken`.
    pub offset: usize,
}

/// A decoded request.
#[derive(Clone, Debug, PartialEq)]
pub enum Request {
    /// `GetMetricData`.
    GetMetricData(GetMetricData),
    /// `GetMetricStatistics`.
    GetMetricStatistics(GetMetricStatistics),
    /// `ListMetrics`.
    ListMetrics(ListMetrics),
    /// `PutMetricData`.
    PutMetricData {
        /// `Namespace`.
        namespace: String,
        /// `MetricData`.
        data: Vec<PutDatum>,
    },
}

impl Request {
    /// The applications the request concerns (the `Application` dimension), sorted, distinct.
    pub fn applications(&self) -> Vec<String> {
        let dims: Vec<&[(String, String)]> = match self {
            Request::GetMetricData(g) => g.queries.iter().map(|q| q.metric.dimensions.as_slice()).collect(),
            Request::GetMetricStatistics(g) => vec![g.metric.dimensions.as_slice()],
            Request::ListMetrics(l) => vec![l.dimensions.as_slice()],
            Request::PutMetricData { data, .. } => data.iter().map(|d| d.dimensions.as_slice()).collect(),
        };
        let mut apps: Vec<String> = dims
            .into_iter()
            .flatten()
            .filter(|(k, v)| k == APPLICATION_DIMENSION && !v.is_empty())
            .map(|(_, v)| v.clone())
            .collect();
        apps.sort();
        apps.dedup();
        apps
    }

    /// GetMetricData: the number of queries.
    pub fn metric_queries(&self) -> Option<usize> {
        match self {
            Request::GetMetricData(g) => Some(g.queries.len()),
            _ => None,
        }
    }
}

fn decode_error(e: DecodeError) -> ApiError {
    ApiError::new(ErrorKind::Serialization, e.to_string())
}

fn invalid(message: impl Into<String>) -> ApiError {
    ApiError::new(ErrorKind::InvalidParameterValue, message)
}

fn missing(member: &str) -> ApiError {
    ApiError::new(
        ErrorKind::MissingParameter,
        format!("The parameter {member} is required."),
    )
}

fn dimensions(s: &Struct<'_>, member: &str, value_required: bool) -> Result<Vec<(String, String)>, ApiError> {
    let Some(items) = s.list(member).map_err(decode_error)? else {
        return Ok(Vec::new());
    };
    if items.len() > 30 {
        return Err(invalid(format!(
            "The collection {} must not have a size greater than 30.",
            s.member_path(member)
        )));
    }
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let path = format!("{}.member.{}", s.member_path(member), i + 1);
        let entries = element_struct(item, &path).map_err(decode_error)?;
        let d = Struct::new(entries, &path);
        let name = d
            .string("Name")
            .map_err(decode_error)?
            .ok_or_else(|| missing(&d.member_path("Name")))?;
        let value = d.string("Value").map_err(decode_error)?;
        let value = match value {
            Some(v) => v,
            None if value_required => return Err(missing(&d.member_path("Value"))),
            None => String::new(),
        };
        out.push((name, value));
    }
    Ok(out)
}

fn metric(s: &Struct<'_>) -> Result<MetricId, ApiError> {
    let namespace = s
        .string("Namespace")
        .map_err(decode_error)?
        .ok_or_else(|| missing(&s.member_path("Namespace")))?;
    let metric_name = s
        .string("MetricName")
        .map_err(decode_error)?
        .ok_or_else(|| missing(&s.member_path("MetricName")))?;
    let dims = dimensions(s, "Dimensions", true)?;
    Ok(MetricId::new(&namespace, &metric_name, &dims))
}

/// Periods CloudWatch accepts: 1, 5, 10, 20, 30 (high resolution) or a multiple of 60.
fn period(value: Option<i64>, member: &str) -> Result<u64, ApiError> {
    let p = value.ok_or_else(|| missing(member))?;
    if p <= 0 || !(p % 60 == 0 || [1, 5, 10, 20, 30].contains(&p)) {
        return Err(invalid(format!(
            "The parameter {member} must be 1, 5, 10, 20, 30, or a multiple of 60, not {p}."
        )));
    }
    Ok(p.unsigned_abs())
}

fn statistic(stat: &str, member: &str) -> Result<(), ApiError> {
    match Statistic::parse(stat) {
        Some(_) => Ok(()),
        None => Err(invalid(format!(
            "The value {stat} for parameter {member} is not a supported statistic: use Average, Maximum, Minimum, Sum, SampleCount or pNN.NN."
        ))),
    }
}

fn time_range(s: &Struct<'_>) -> Result<(Timestamp, Timestamp), ApiError> {
    let start = s
        .timestamp("StartTime")
        .map_err(decode_error)?
        .ok_or_else(|| missing("StartTime"))?;
    let end = s
        .timestamp("EndTime")
        .map_err(decode_error)?
        .ok_or_else(|| missing("EndTime"))?;
    if start >= end {
        return Err(invalid(
            "The parameter StartTime must be less than the parameter EndTime.",
        ));
    }
    Ok((start, end))
}

/// Decodes the CBOR body of `op`.
pub fn decode(op: Operation, body: &[u8]) -> Result<Request, ApiError> {
    decode_entries(op, &decode_body(body).map_err(decode_error)?)
}

/// Decodes the awsJson 1.0 body of `op`.
pub fn decode_json(op: Operation, body: &[u8]) -> Result<Request, ApiError> {
    decode_entries(op, &json_body(body, &TIMESTAMP_MEMBERS).map_err(decode_error)?)
}

fn decode_entries(
    op: Operation,
    entries: &[(ciborium::Value, ciborium::Value)],
) -> Result<Request, ApiError> {
    let s = Struct::new(entries, "");
    match op {
        Operation::GetMetricData => decode_get_metric_data(&s).map(Request::GetMetricData),
        Operation::GetMetricStatistics => decode_get_metric_statistics(&s).map(Request::GetMetricStatistics),
        Operation::ListMetrics => {
            let offset = match s.string("NextToken").map_err(decode_error)? {
                None => 0,
                Some(t) => t
                    .strip_prefix("metrics-")
                    .and_then(|n| n.parse().ok())
                    .ok_or_else(|| {
                        ApiError::new(ErrorKind::InvalidNextToken, format!("Invalid NextToken {t:?}."))
                    })?,
            };
            if let Some(recent) = s.string("RecentlyActive").map_err(decode_error)?
                && recent != "PT3H"
            {
                return Err(invalid(format!(
                    "The value {recent} for parameter RecentlyActive is invalid: the only valid value is PT3H."
                )));
            }
            Ok(Request::ListMetrics(ListMetrics {
                namespace: s.string("Namespace").map_err(decode_error)?,
                metric_name: s.string("MetricName").map_err(decode_error)?,
                dimensions: dimensions(&s, "Dimensions", false)?,
                offset,
            }))
        }
        Operation::PutMetricData => decode_put_metric_data(&s),
    }
}

fn decode_get_metric_data(s: &Struct<'_>) -> Result<GetMetricData, ApiError> {
    let items = s
        .list("MetricDataQueries")
        .map_err(decode_error)?
        .ok_or_else(|| missing("MetricDataQueries"))?;
    if items.is_empty() {
        return Err(missing("MetricDataQueries"));
    }
    if items.len() > MAX_QUERIES {
        return Err(invalid(format!(
            "The collection MetricDataQueries must not have a size greater than {MAX_QUERIES}."
        )));
    }
    let (start, end) = time_range(s)?;
    let mut queries: Vec<StatQuery> = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let path = format!("MetricDataQueries.member.{}", i + 1);
        let entries = element_struct(item, &path).map_err(decode_error)?;
        let q = Struct::new(entries, &path);
        let id = q
            .string("Id")
            .map_err(decode_error)?
            .ok_or_else(|| missing(&q.member_path("Id")))?;
        let id_ok = id.len() <= 255
            && id.chars().next().is_some_and(|c| c.is_ascii_lowercase())
            && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !id_ok {
            return Err(invalid(format!(
                "The value {id} for parameter {} is invalid: it must start with a lowercase letter and contain only letters, digits and underscores.",
                q.member_path("Id")
            )));
        }
        if queries.iter().any(|other| other.id == id) {
            return Err(invalid(format!(
                "The value {id} for parameter MetricDataQueries.member.N.Id is not unique."
            )));
        }
        if q.get("Expression").is_some() {
            return Err(invalid(format!(
                "The emulator does not evaluate metric math: {} has an Expression; use MetricStat.",
                q.member_path("Expression")
            )));
        }
        let stat_entries = q
            .structure("MetricStat")
            .map_err(decode_error)?
            .ok_or_else(|| missing(&q.member_path("MetricStat")))?;
        let stat_path = q.member_path("MetricStat");
        let ms = Struct::new(stat_entries, &stat_path);
        let metric_entries = ms
            .structure("Metric")
            .map_err(decode_error)?
            .ok_or_else(|| missing(&ms.member_path("Metric")))?;
        let metric_path = ms.member_path("Metric");
        let metric = metric(&Struct::new(metric_entries, &metric_path))?;
        let period = period(ms.int("Period").map_err(decode_error)?, &ms.member_path("Period"))?;
        let stat = ms
            .string("Stat")
            .map_err(decode_error)?
            .ok_or_else(|| missing(&ms.member_path("Stat")))?;
        statistic(&stat, &ms.member_path("Stat"))?;
        queries.push(StatQuery {
            id,
            label: q.string("Label").map_err(decode_error)?,
            metric,
            period,
            stat,
            return_data: q.bool("ReturnData").map_err(decode_error)?.unwrap_or(true),
        });
    }
    let ascending = match s.string("ScanBy").map_err(decode_error)?.as_deref() {
        None | Some("TimestampDescending") => false,
        Some("TimestampAscending") => true,
        Some(other) => {
            return Err(invalid(format!(
                "The value {other} for parameter ScanBy is invalid: use TimestampDescending or TimestampAscending."
            )));
        }
    };
    let max_datapoints = match s.int("MaxDatapoints").map_err(decode_error)? {
        None => MAX_DATAPOINTS,
        Some(n) if n >= 1 => usize::try_from(n).unwrap_or(MAX_DATAPOINTS).min(MAX_DATAPOINTS),
        Some(n) => {
            return Err(invalid(format!(
                "The parameter MaxDatapoints must be at least 1, not {n}."
            )));
        }
    };
    Ok(GetMetricData {
        queries,
        start,
        end,
        next_token: s.string("NextToken").map_err(decode_error)?,
        ascending,
        max_datapoints,
    })
}

fn decode_get_metric_statistics(s: &Struct<'_>) -> Result<GetMetricStatistics, ApiError> {
    let metric = metric(s)?;
    let (start, end) = time_range(s)?;
    let period = period(s.int("Period").map_err(decode_error)?, "Period")?;
    let statistics = s
        .string_list("Statistics")
        .map_err(decode_error)?
        .unwrap_or_default();
    let extended = s
        .string_list("ExtendedStatistics")
        .map_err(decode_error)?
        .unwrap_or_default();
    match (statistics.is_empty(), extended.is_empty()) {
        (true, true) => {
            return Err(missing("Statistics or ExtendedStatistics"));
        }
        (false, false) => {
            return Err(ApiError::new(
                ErrorKind::InvalidParameterCombination,
                "You must specify either Statistics or ExtendedStatistics, but not both.",
            ));
        }
        _ => {}
    }
    for stat in &statistics {
        if !["Average", "Maximum", "Minimum", "Sum", "SampleCount"].contains(&stat.as_str()) {
            return Err(invalid(format!(
                "The value {stat} for parameter Statistics is not valid."
            )));
        }
    }
    for stat in &extended {
        if !stat.starts_with('p') || Statistic::parse(stat).is_none() {
            return Err(invalid(format!(
                "The value {stat} for parameter ExtendedStatistics is not valid."
            )));
        }
    }
    let requested = (end.as_second() - start.as_second())
        .div_euclid(period as i64)
        .max(1);
    if requested > MAX_STATISTICS_DATAPOINTS {
        return Err(ApiError::new(
            ErrorKind::InvalidParameterCombination,
            format!(
                "You have requested up to {requested} datapoints, which exceeds the limit of {MAX_STATISTICS_DATAPOINTS}. You may reduce the datapoints requested by increasing Period, or decreasing the time range."
            ),
        ));
    }
    Ok(GetMetricStatistics {
        metric,
        start,
        end,
        period,
        statistics,
        extended,
    })
}

fn decode_put_metric_data(s: &Struct<'_>) -> Result<Request, ApiError> {
    let namespace = s
        .string("Namespace")
        .map_err(decode_error)?
        .ok_or_else(|| missing("Namespace"))?;
    let items = s
        .list("MetricData")
        .map_err(decode_error)?
        .ok_or_else(|| missing("MetricData"))?;
    if items.len() > MAX_PUT_DATA {
        return Err(invalid(format!(
            "The collection MetricData must not have a size greater than {MAX_PUT_DATA}."
        )));
    }
    let mut data = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let path = format!("MetricData.member.{}", i + 1);
        let entries = element_struct(item, &path).map_err(decode_error)?;
        let d = Struct::new(entries, &path);
        let metric_name = d
            .string("MetricName")
            .map_err(decode_error)?
            .ok_or_else(|| missing(&d.member_path("MetricName")))?;
        let values = d.double_list("Values").map_err(decode_error)?.unwrap_or_default();
        let counts = d.double_list("Counts").map_err(decode_error)?.unwrap_or_default();
        if values.len() > MAX_PUT_VALUES {
            return Err(invalid(format!(
                "The collection {} must not have a size greater than {MAX_PUT_VALUES}.",
                d.member_path("Values")
            )));
        }
        if !counts.is_empty() && counts.len() != values.len() {
            return Err(ApiError::new(
                ErrorKind::InvalidParameterCombination,
                format!(
                    "The parameters {0}.Values and {0}.Counts must be of the same size.",
                    path
                ),
            ));
        }
        let statistic_values = match d.structure("StatisticValues").map_err(decode_error)? {
            None => None,
            Some(entries) => {
                let sp = d.member_path("StatisticValues");
                let sv = Struct::new(entries, &sp);
                let get = |m: &str| -> Result<f64, ApiError> {
                    sv.double(m)
                        .map_err(decode_error)?
                        .ok_or_else(|| missing(&sv.member_path(m)))
                };
                Some(StatisticSet {
                    sample_count: get("SampleCount")?,
                    sum: get("Sum")?,
                    minimum: get("Minimum")?,
                    maximum: get("Maximum")?,
                })
            }
        };
        let value = d.double("Value").map_err(decode_error)?;
        let forms = usize::from(value.is_some())
            + usize::from(!values.is_empty())
            + usize::from(statistic_values.is_some());
        if forms > 1 {
            return Err(ApiError::new(
                ErrorKind::InvalidParameterCombination,
                format!(
                    "The parameters {path}.Value, {path}.Values and {path}.StatisticValues are mutually exclusive."
                ),
            ));
        }
        data.push(PutDatum {
            metric_name,
            dimensions: dimensions(&d, "Dimensions", true)?,
            timestamp: d.timestamp("Timestamp").map_err(decode_error)?,
            value,
            values,
            counts,
            statistic_values,
            unit: d.string("Unit").map_err(decode_error)?,
        });
    }
    Ok(Request::PutMetricData { namespace, data })
}

// ---------------------------------------------------------------------------------------
// Execution.

/// A GetMetricData continuation: a fingerprint of the request, the query to resume at
/// and the datapoint offset within it.
fn fingerprint(g: &GetMetricData) -> u64 {
    // FNV-1a over what must not change between pages.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |bytes: &[u8]| {
        for b in bytes {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    };
    eat(&g.start.as_millisecond().to_be_bytes());
    eat(&g.end.as_millisecond().to_be_bytes());
    for q in &g.queries {
        eat(q.id.as_bytes());
        eat(&[0]);
    }
    h
}

fn parse_token(token: &str, g: &GetMetricData) -> Result<(usize, usize), ApiError> {
    let bad = || {
        ApiError::new(
            ErrorKind::InvalidNextToken,
            format!("The NextToken {token:?} is not valid for this request."),
        )
    };
    let mut parts = token.split('.');
    let (Some(f), Some(q), Some(o), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return Err(bad());
    };
    let f = u64::from_str_radix(f, 16).map_err(|_| bad())?;
    let q: usize = q.parse().map_err(|_| bad())?;
    let o: usize = o.parse().map_err(|_| bad())?;
    if f != fingerprint(g) || q >= g.queries.len() {
        return Err(bad());
    }
    Ok((q, o))
}

fn metric_query(metric: &MetricId, start: Timestamp, end: Timestamp, period: u64, stat: &str) -> MetricQuery {
    // CloudWatch aligns periods to whole minutes; the first bucket starts at the minute.
    let start = Timestamp::from_second(start.as_second() - start.as_second().rem_euclid(60)).unwrap_or(start);
    MetricQuery {
        namespace: metric.namespace.clone(),
        metric_name: metric.metric_name.clone(),
        dimensions: metric.dimensions.clone(),
        start,
        end,
        period: Duration::from_secs(period),
        stat: stat.to_string(),
    }
}

/// The datapoints CloudWatch answers for one `MetricStat` over `[start, end)`, oldest
/// first, from `data` (the backend's metric store): periods align to whole minutes, and
/// standard-resolution metrics have no sub-minute datapoints. `GetMetricData` serves its
/// queries with it, and `simulate` reads the model's store through it.
pub(crate) fn stat_datapoints(
    data: &dyn Fn(&MetricQuery) -> Vec<(Timestamp, f64)>,
    metric: &MetricId,
    start: Timestamp,
    end: Timestamp,
    period: u64,
    stat: &str,
) -> Vec<(Timestamp, f64)> {
    if period < 60 {
        return Vec::new();
    }
    data(&metric_query(metric, start, end, period, stat))
}

fn get_metric_data(fleet: &dyn Backend, g: &GetMetricData, masks: &[MetricMask]) -> Result<Cbor, ApiError> {
    let (mut qi, mut offset) = match &g.next_token {
        None => (0, 0),
        Some(t) => parse_token(t, g)?,
    };
    let mut budget = g.max_datapoints;
    let mut results = Vec::new();
    let mut next = None;
    while qi < g.queries.len() {
        let q = &g.queries[qi];
        if !q.return_data {
            qi += 1;
            offset = 0;
            continue;
        }
        if budget == 0 {
            next = Some((qi, 0));
            break;
        }
        let mut points = stat_datapoints(
            &|mq| fleet.metric_data(mq),
            &q.metric,
            g.start,
            g.end,
            q.period,
            &q.stat,
        );
        let application = q
            .metric
            .dimensions
            .iter()
            .find(|(k, _)| k == APPLICATION_DIMENSION)
            .map(|(_, v)| v.as_str());
        for mask in masks
            .iter()
            .filter(|m| m.matches(&q.metric.metric_name, application))
        {
            mask.apply(&mut points, Duration::from_secs(q.period));
        }
        if !g.ascending {
            points.reverse();
        }
        let rest = points.get(offset..).unwrap_or_default();
        let take = rest.len().min(budget);
        budget -= take;
        let complete = take == rest.len();
        results.push(Cbor::Map(vec![
            ("Id".into(), Cbor::text(&q.id)),
            (
                "Label".into(),
                Cbor::text(q.label.clone().unwrap_or_else(|| q.metric.metric_name.clone())),
            ),
            (
                "Timestamps".into(),
                Cbor::Array(rest[..take].iter().map(|(t, _)| Cbor::Timestamp(*t)).collect()),
            ),
            (
                "Values".into(),
                Cbor::Array(rest[..take].iter().map(|(_, v)| Cbor::Double(*v)).collect()),
            ),
            (
                "StatusCode".into(),
                Cbor::text(if complete { "Complete" } else { "PartialData" }),
            ),
        ]));
        if !complete {
            next = Some((qi, offset + take));
            break;
        }
        qi += 1;
        offset = 0;
    }
    let mut out = vec![("MetricDataResults".to_string(), Cbor::Array(results))];
    if let Some((q, o)) = next {
        out.push((
            "NextToken".into(),
            Cbor::text(format!("{:016x}.{q}.{o}", fingerprint(g))),
        ));
    }
    Ok(Cbor::Map(out))
}

fn get_metric_statistics(fleet: &dyn Backend, g: &GetMetricStatistics) -> Cbor {
    let unit = fleet.metric_unit(&g.metric);
    // One series per statistic, merged by timestamp.
    let mut rows: std::collections::BTreeMap<Timestamp, Vec<(String, f64)>> = Default::default();
    for stat in g.statistics.iter().chain(&g.extended) {
        for (t, v) in fleet.metric_data(&metric_query(&g.metric, g.start, g.end, g.period, stat)) {
            rows.entry(t).or_default().push((stat.clone(), v));
        }
    }
    let datapoints = rows
        .into_iter()
        .map(|(t, values)| {
            let mut m = vec![("Timestamp".to_string(), Cbor::Timestamp(t))];
            let mut extended = Vec::new();
            for (stat, v) in values {
                if g.extended.contains(&stat) {
                    extended.push((stat, Cbor::Double(v)));
                } else {
                    m.push((stat, Cbor::Double(v)));
                }
            }
            if !extended.is_empty() {
                m.push(("ExtendedStatistics".into(), Cbor::Map(extended)));
            }
            if let Some(u) = &unit {
                m.push(("Unit".into(), Cbor::text(u)));
            }
            Cbor::Map(m)
        })
        .collect();
    Cbor::Map(vec![
        ("Label".into(), Cbor::text(&g.metric.metric_name)),
        ("Datapoints".into(), Cbor::Array(datapoints)),
    ])
}

fn metric_cbor(m: &MetricId) -> Cbor {
    Cbor::Map(vec![
        ("Namespace".into(), Cbor::text(&m.namespace)),
        ("MetricName".into(), Cbor::text(&m.metric_name)),
        (
            "Dimensions".into(),
            Cbor::Array(
                m.dimensions
                    .iter()
                    .map(|(k, v)| {
                        Cbor::Map(vec![
                            ("Name".into(), Cbor::text(k)),
                            ("Value".into(), Cbor::text(v)),
                        ])
                    })
                    .collect(),
            ),
        ),
    ])
}

/// Serves one decoded request against the fleet.
/// Serves one decoded request; `masks` (the metric faults) change GetMetricData's
/// datapoints.
pub fn execute(fleet: &mut dyn Backend, req: &Request, masks: &[MetricMask]) -> Result<Cbor, ApiError> {
    match req {
        Request::GetMetricData(g) => get_metric_data(fleet, g, masks),
        Request::GetMetricStatistics(g) => Ok(get_metric_statistics(fleet, g)),
        Request::ListMetrics(l) => {
            let all = fleet.list_metrics(l.namespace.as_deref(), l.metric_name.as_deref(), &l.dimensions);
            let page: Vec<Cbor> = all
                .iter()
                .skip(l.offset)
                .take(LIST_PAGE)
                .map(metric_cbor)
                .collect();
            let mut out = vec![("Metrics".to_string(), Cbor::Array(page))];
            if l.offset + LIST_PAGE < all.len() {
                out.push((
                    "NextToken".into(),
                    Cbor::text(format!("metrics-{}", l.offset + LIST_PAGE)),
                ));
            }
            Ok(Cbor::Map(out))
        }
        Request::PutMetricData { namespace, data } => {
            fleet
                .put_metric_data(namespace, data.clone())
                .map_err(|e| match e {
                    ServiceError::InvalidArgument(m) => invalid(m),
                    other => super::kinesis::service_error(other),
                })?;
            Ok(Cbor::Map(Vec::new()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: i64) -> Cbor {
        Cbor::Timestamp(Timestamp::from_second(s).unwrap())
    }

    fn query(id: &str, app: &str, metric: &str, stat: &str) -> Cbor {
        Cbor::Map(vec![
            ("Id".into(), Cbor::text(id)),
            (
                "MetricStat".into(),
                Cbor::Map(vec![
                    (
                        "Metric".into(),
                        Cbor::Map(vec![
                            ("Namespace".into(), Cbor::text("AWS/KinesisAnalytics")),
                            ("MetricName".into(), Cbor::text(metric)),
                            (
                                "Dimensions".into(),
                                Cbor::Array(vec![Cbor::Map(vec![
                                    ("Name".into(), Cbor::text("Application")),
                                    ("Value".into(), Cbor::text(app)),
                                ])]),
                            ),
                        ]),
                    ),
                    ("Period".into(), Cbor::Int(60)),
                    ("Stat".into(), Cbor::text(stat)),
                ]),
            ),
        ])
    }

    fn gmd(queries: Vec<Cbor>) -> Vec<u8> {
        Cbor::Map(vec![
            ("MetricDataQueries".into(), Cbor::Array(queries)),
            ("StartTime".into(), ts(1_767_571_200)),
            ("EndTime".into(), ts(1_767_574_800)),
        ])
        .encode()
    }

    #[test]
    fn get_metric_data_decodes_queries_and_applications() {
        let body = gmd(vec![
            query("a", "orders", "lastCheckpointDuration", "Maximum"),
            query("b", "payments", "cpuUtilization", "p99"),
            query("c", "orders", "KPUs", "Average"),
        ]);
        let req = decode(Operation::GetMetricData, &body).unwrap();
        assert_eq!(
            req.applications(),
            vec!["orders".to_string(), "payments".to_string()]
        );
        assert_eq!(req.metric_queries(), Some(3));
        let Request::GetMetricData(g) = req else { panic!() };
        assert_eq!(g.queries[1].stat, "p99");
        assert_eq!(g.queries[0].period, 60);
        assert!(!g.ascending);
        assert_eq!(g.max_datapoints, MAX_DATAPOINTS);
    }

    #[test]
    fn more_than_500_queries_is_invalid_parameter_value() {
        let queries = (0..501)
            .map(|i| query(&format!("q{i}"), "a", "KPUs", "Average"))
            .collect();
        let e = decode(Operation::GetMetricData, &gmd(queries)).unwrap_err();
        assert_eq!(e.kind, ErrorKind::InvalidParameterValue);
        assert_eq!(
            e.message,
            "The collection MetricDataQueries must not have a size greater than 500."
        );
        let ok = (0..500)
            .map(|i| query(&format!("q{i}"), "a", "KPUs", "Average"))
            .collect();
        assert!(decode(Operation::GetMetricData, &gmd(ok)).is_ok());
    }

    #[test]
    fn query_validation() {
        let dup = gmd(vec![
            query("a", "x", "KPUs", "Average"),
            query("a", "x", "KPUs", "Sum"),
        ]);
        assert_eq!(
            decode(Operation::GetMetricData, &dup).unwrap_err().kind,
            ErrorKind::InvalidParameterValue
        );
        let upper = gmd(vec![query("Abc", "x", "KPUs", "Average")]);
        assert_eq!(
            decode(Operation::GetMetricData, &upper).unwrap_err().kind,
            ErrorKind::InvalidParameterValue
        );
        let stat = gmd(vec![query("a", "x", "KPUs", "Median")]);
        assert_eq!(
            decode(Operation::GetMetricData, &stat).unwrap_err().kind,
            ErrorKind::InvalidParameterValue
        );
        let none = gmd(vec![]);
        assert_eq!(
            decode(Operation::GetMetricData, &none).unwrap_err().kind,
            ErrorKind::MissingParameter
        );
        let reversed = Cbor::Map(vec![
            (
                "MetricDataQueries".into(),
                Cbor::Array(vec![query("a", "x", "KPUs", "Average")]),
            ),
            ("StartTime".into(), ts(200)),
            ("EndTime".into(), ts(100)),
        ])
        .encode();
        assert_eq!(
            decode(Operation::GetMetricData, &reversed).unwrap_err().kind,
            ErrorKind::InvalidParameterValue
        );
        let wrong_type = Cbor::Map(vec![("MetricDataQueries".into(), Cbor::text("nope"))]).encode();
        assert_eq!(
            decode(Operation::GetMetricData, &wrong_type).unwrap_err().kind,
            ErrorKind::Serialization
        );
    }

    #[test]
    fn get_metric_statistics_limits() {
        let body = |stats: Vec<Cbor>, ext: Vec<Cbor>, end: i64| {
            let mut m = vec![
                ("Namespace".into(), Cbor::text("AWS/KinesisAnalytics")),
                ("MetricName".into(), Cbor::text("KPUs")),
                ("StartTime".into(), ts(0)),
                ("EndTime".into(), ts(end)),
                ("Period".into(), Cbor::Int(60)),
            ];
            if !stats.is_empty() {
                m.push(("Statistics".into(), Cbor::Array(stats)));
            }
            if !ext.is_empty() {
                m.push(("ExtendedStatistics".into(), Cbor::Array(ext)));
            }
            Cbor::Map(m).encode()
        };
        assert!(
            decode(
                Operation::GetMetricStatistics,
                &body(vec![Cbor::text("Average")], vec![], 3600)
            )
            .is_ok()
        );
        let e = decode(
            Operation::GetMetricStatistics,
            &body(vec![Cbor::text("Average")], vec![], 86_400 * 2),
        )
        .unwrap_err();
        assert_eq!(e.kind, ErrorKind::InvalidParameterCombination);
        assert!(e.message.contains("exceeds the limit of 1440"), "{}", e.message);
        let both = body(vec![Cbor::text("Average")], vec![Cbor::text("p99")], 3600);
        assert_eq!(
            decode(Operation::GetMetricStatistics, &both).unwrap_err().kind,
            ErrorKind::InvalidParameterCombination
        );
        let neither = body(vec![], vec![], 3600);
        assert_eq!(
            decode(Operation::GetMetricStatistics, &neither).unwrap_err().kind,
            ErrorKind::MissingParameter
        );
    }

    #[test]
    fn put_metric_data_decodes_every_form() {
        let body = Cbor::Map(vec![
            ("Namespace".into(), Cbor::text("Custom/Test")),
            (
                "MetricData".into(),
                Cbor::Array(vec![
                    Cbor::Map(vec![
                        ("MetricName".into(), Cbor::text("a")),
                        ("Value".into(), Cbor::Double(1.0)),
                    ]),
                    Cbor::Map(vec![
                        ("MetricName".into(), Cbor::text("b")),
                        (
                            "Values".into(),
                            Cbor::Array(vec![Cbor::Double(1.0), Cbor::Double(2.0)]),
                        ),
                        (
                            "Counts".into(),
                            Cbor::Array(vec![Cbor::Double(3.0), Cbor::Double(1.0)]),
                        ),
                        ("Unit".into(), Cbor::text("Count")),
                    ]),
                ]),
            ),
        ])
        .encode();
        let Request::PutMetricData { namespace, data } = decode(Operation::PutMetricData, &body).unwrap()
        else {
            panic!()
        };
        assert_eq!(namespace, "Custom/Test");
        assert_eq!(data[1].counts, vec![3.0, 1.0]);
        assert_eq!(data[1].unit.as_deref(), Some("Count"));
        let both = Cbor::Map(vec![
            ("Namespace".into(), Cbor::text("Custom/Test")),
            (
                "MetricData".into(),
                Cbor::Array(vec![Cbor::Map(vec![
                    ("MetricName".into(), Cbor::text("a")),
                    ("Value".into(), Cbor::Double(1.0)),
                    ("Values".into(), Cbor::Array(vec![Cbor::Double(1.0)])),
                ])]),
            ),
        ])
        .encode();
        assert_eq!(
            decode(Operation::PutMetricData, &both).unwrap_err().kind,
            ErrorKind::InvalidParameterCombination
        );
    }

    #[test]
    fn list_metrics_tokens_and_filters() {
        let body = Cbor::Map(vec![
            ("Namespace".into(), Cbor::text("AWS/KinesisAnalytics")),
            (
                "Dimensions".into(),
                Cbor::Array(vec![Cbor::Map(vec![("Name".into(), Cbor::text("Application"))])]),
            ),
            ("NextToken".into(), Cbor::text("metrics-500")),
        ])
        .encode();
        let Request::ListMetrics(l) = decode(Operation::ListMetrics, &body).unwrap() else {
            panic!()
        };
        assert_eq!(l.offset, 500);
        assert_eq!(l.dimensions, vec![("Application".to_string(), String::new())]);
        let bad = Cbor::Map(vec![("NextToken".into(), Cbor::text("zzz"))]).encode();
        assert_eq!(
            decode(Operation::ListMetrics, &bad).unwrap_err().kind,
            ErrorKind::InvalidNextToken
        );
    }
}
