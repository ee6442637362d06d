//! The log of AWS calls received, so tests and benchmarks can count what a client did.

use std::collections::VecDeque;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::Service;

/// Oldest records are dropped beyond this many, so a long-running emulator stays bounded.
pub const CAPACITY: usize = 100_000;

/// One AWS request as the emulator saw and answered it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CallRecord {
    /// Sequence number, from 1, never reused (also after a reset).
    pub seq: u64,
    /// Wall-clock time the request arrived.
    pub time: Timestamp,
    /// The emulator's virtual time when it was served.
    pub virtual_time: Timestamp,
    /// The service.
    pub service: Service,
    /// The wire protocol the request arrived in.
    pub protocol: super::Protocol,
    /// The operation, e.g. `DescribeApplication` (`Unknown` when it could not be told).
    pub operation: String,
    /// The application the call concerns, when it concerns exactly one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub application: Option<String>,
    /// Every application the call concerns (GetMetricData may read several).
    #[serde(default)]
    pub applications: Vec<String>,
    /// The HTTP status answered; 499 (`errorCode` `ClientClosedRequest`) when the client
    /// closed the connection before the answer was ready.
    pub status: u16,
    /// The error code answered, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_code: Option<String>,
    /// GetMetricData: the number of metric queries in the request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metric_queries: Option<usize>,
    /// The access key id from the credential scope.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_key_id: Option<String>,
    /// The region from the credential scope.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
}

/// Filters for reading the log; every present field must match.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CallFilter {
    /// Only this service.
    pub service: Option<Service>,
    /// Only this operation.
    pub operation: Option<String>,
    /// Only calls concerning this application.
    pub application: Option<String>,
    /// Only records with a sequence number above this.
    pub since: Option<u64>,
}

impl CallFilter {
    fn accepts(&self, r: &CallRecord) -> bool {
        self.service.is_none_or(|s| s == r.service)
            && self.operation.as_deref().is_none_or(|o| o == r.operation)
            && self
                .application
                .as_deref()
                .is_none_or(|a| r.applications.iter().any(|x| x == a))
            && self.since.is_none_or(|s| r.seq > s)
    }
}

/// Counts over the records a filter accepts (for cost measurements: calls per
/// operation, metrics requested).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CallSummary {
    /// Records counted.
    pub total: usize,
    /// Of which answered with an error.
    pub errors: usize,
    /// Metric queries requested by GetMetricData (CloudWatch bills per metric requested).
    pub metric_queries: usize,
    /// Records per `<service>:<operation>`.
    pub by_operation: std::collections::BTreeMap<String, usize>,
}

/// The log itself.
#[derive(Debug, Default)]
pub struct CallLog {
    next_seq: u64,
    records: VecDeque<CallRecord>,
}

impl CallLog {
    /// Appends a record, assigning its sequence number (the given one is ignored).
    pub fn record(&mut self, mut record: CallRecord) -> u64 {
        self.next_seq += 1;
        record.seq = self.next_seq;
        if self.records.len() == CAPACITY {
            self.records.pop_front();
        }
        self.records.push_back(record);
        self.next_seq
    }

    /// The records the filter accepts, oldest first.
    pub fn query(&self, filter: &CallFilter) -> Vec<CallRecord> {
        self.records
            .iter()
            .filter(|r| filter.accepts(r))
            .cloned()
            .collect()
    }

    /// Counts over the records the filter accepts.
    pub fn summary(&self, filter: &CallFilter) -> CallSummary {
        let mut summary = CallSummary::default();
        for r in self.records.iter().filter(|r| filter.accepts(r)) {
            summary.total += 1;
            summary.errors += usize::from(r.error_code.is_some());
            summary.metric_queries += r.metric_queries.unwrap_or(0);
            *summary
                .by_operation
                .entry(format!("{}:{}", r.service.as_str(), r.operation))
                .or_default() += 1;
        }
        summary
    }

    /// Forgets every record (sequence numbers keep counting).
    pub fn reset(&mut self) {
        self.records.clear();
    }

    /// Number of records held.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// Whether the log holds no record.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(service: Service, op: &str, apps: &[&str], status: u16) -> CallRecord {
        CallRecord {
            seq: 0,
            time: Timestamp::UNIX_EPOCH,
            virtual_time: Timestamp::UNIX_EPOCH,
            service,
            protocol: super::super::Protocol::AwsJson1_1,
            operation: op.into(),
            application: (apps.len() == 1).then(|| apps[0].to_string()),
            applications: apps.iter().map(|a| a.to_string()).collect(),
            status,
            error_code: None,
            metric_queries: None,
            access_key_id: None,
            region: None,
        }
    }

    #[test]
    fn filters_and_sequence_numbers() {
        let mut log = CallLog::default();
        log.record(rec(Service::KinesisAnalytics, "DescribeApplication", &["a"], 200));
        log.record(rec(Service::CloudWatch, "GetMetricData", &["a", "b"], 200));
        let third = log.record(rec(Service::KinesisAnalytics, "UpdateApplication", &["b"], 400));
        assert_eq!(third, 3);
        let by_app = log.query(&CallFilter {
            application: Some("b".into()),
            ..Default::default()
        });
        assert_eq!(by_app.iter().map(|r| r.seq).collect::<Vec<_>>(), vec![2, 3]);
        let kda = log.query(&CallFilter {
            service: Some(Service::KinesisAnalytics),
            since: Some(1),
            ..Default::default()
        });
        assert_eq!(kda.len(), 1);
        assert_eq!(kda[0].operation, "UpdateApplication");
        let summary = log.summary(&CallFilter::default());
        assert_eq!((summary.total, summary.errors), (3, 0));
        assert_eq!(summary.by_operation["cloudwatch:GetMetricData"], 1);
        assert_eq!(summary.by_operation["kinesisanalyticsv2:UpdateApplication"], 1);
        log.reset();
        assert!(log.is_empty());
        assert_eq!(log.record(rec(Service::CloudWatch, "ListMetrics", &[], 200)), 4);
    }

    #[test]
    fn the_log_is_bounded() {
        let mut log = CallLog::default();
        for _ in 0..CAPACITY + 5 {
            log.record(rec(Service::CloudWatch, "ListMetrics", &[], 200));
        }
        assert_eq!(log.len(), CAPACITY);
        assert_eq!(log.query(&CallFilter::default())[0].seq, 6);
    }
}
