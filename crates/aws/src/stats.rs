//! Counters of what the controller asks of AWS: calls by service and operation (each one is
//! an API request, and for CloudWatch each metric requested is billed), errors by kind, and
//! how well the metric batching packs its requests.
//!
//! Plain atomics: cheap enough to bump on every call, read as a [`CallStatsSnapshot`] by the
//! Prometheus exporter and the benchmarks.

use std::sync::atomic::{AtomicU64, Ordering};

use super::error::{AwsError, ErrorKind};

/// The AWS operations the controller calls.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AwsOperation {
    /// `kinesisanalyticsv2:DescribeApplication`.
    DescribeApplication,
    /// `kinesisanalyticsv2:UpdateApplication`.
    UpdateApplication,
    /// `kinesisanalyticsv2:DescribeApplicationOperation`.
    DescribeApplicationOperation,
    /// `kinesisanalyticsv2:ListTagsForResource`.
    ListTagsForResource,
    /// `monitoring:GetMetricData` (one call = one request page).
    GetMetricData,
    /// `sts:GetCallerIdentity`: the controller's own account, once (needs no permission).
    GetCallerIdentity,
    /// `kinesisanalyticsv2:ListApplicationOperations` (one call = one page).
    ListApplicationOperations,
    /// `kinesisanalyticsv2:ListApplicationSnapshots` (one call = one page).
    ListApplicationSnapshots,
    /// `monitoring:ListMetrics` (one call = one page): the tasks and source streams of an
    /// application, once per version and discovery period.
    ListMetrics,
}

impl AwsOperation {
    /// Every operation, in counter order.
    pub const ALL: [AwsOperation; 9] = [
        AwsOperation::DescribeApplication,
        AwsOperation::UpdateApplication,
        AwsOperation::DescribeApplicationOperation,
        AwsOperation::ListTagsForResource,
        AwsOperation::GetMetricData,
        AwsOperation::GetCallerIdentity,
        AwsOperation::ListApplicationOperations,
        AwsOperation::ListApplicationSnapshots,
        AwsOperation::ListMetrics,
    ];

    /// The service, as the SDK names it (`kinesisanalyticsv2`, `cloudwatch`, `sts`).
    pub fn service(&self) -> &'static str {
        match self {
            AwsOperation::GetMetricData | AwsOperation::ListMetrics => "cloudwatch",
            AwsOperation::GetCallerIdentity => "sts",
            _ => "kinesisanalyticsv2",
        }
    }

    /// The operation name as AWS spells it.
    pub fn name(&self) -> &'static str {
        match self {
            AwsOperation::DescribeApplication => "DescribeApplication",
            AwsOperation::UpdateApplication => "UpdateApplication",
            AwsOperation::DescribeApplicationOperation => "DescribeApplicationOperation",
            AwsOperation::ListTagsForResource => "ListTagsForResource",
            AwsOperation::GetMetricData => "GetMetricData",
            AwsOperation::GetCallerIdentity => "GetCallerIdentity",
            AwsOperation::ListApplicationOperations => "ListApplicationOperations",
            AwsOperation::ListApplicationSnapshots => "ListApplicationSnapshots",
            AwsOperation::ListMetrics => "ListMetrics",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Counters shared by every client of one [`AwsClients`](super::AwsClients).
#[derive(Debug, Default)]
pub struct CallStats {
    calls: [AtomicU64; AwsOperation::ALL.len()],
    attempts: [AtomicU64; AwsOperation::ALL.len()],
    errors: [AtomicU64; ErrorKind::ALL.len()],
    metrics_requested: AtomicU64,
    datapoints_received: AtomicU64,
    sample_requests: AtomicU64,
    partial_batches: AtomicU64,
}

impl CallStats {
    /// Fresh counters at zero.
    pub fn new() -> Self {
        Self::default()
    }

    /// One request of `operation` was sent (counted whether or not it succeeds).
    pub fn record_call(&self, operation: AwsOperation) {
        self.calls[operation.index()].fetch_add(1, Ordering::Relaxed);
    }

    /// One HTTP attempt of `operation` went out (the first one and every SDK retry).
    pub fn record_attempt(&self, operation: AwsOperation) {
        self.attempts[operation.index()].fetch_add(1, Ordering::Relaxed);
    }

    /// A call failed with `err`.
    pub fn record_error(&self, err: &AwsError) {
        self.errors[ErrorKind::of(err).index()].fetch_add(1, Ordering::Relaxed);
    }

    /// A `GetMetricData` call asked for `metrics` metrics (CloudWatch bills per metric).
    pub fn record_metrics_requested(&self, metrics: u64) {
        self.metrics_requested.fetch_add(metrics, Ordering::Relaxed);
    }

    /// A `GetMetricData` page carried `datapoints` datapoints.
    pub fn record_datapoints(&self, datapoints: u64) {
        self.datapoints_received.fetch_add(datapoints, Ordering::Relaxed);
    }

    /// One `samples()` request was served (batched or not).
    pub fn record_sample_request(&self) {
        self.sample_requests.fetch_add(1, Ordering::Relaxed);
    }

    /// The batcher sent a call before it was full (its wait ran out).
    pub fn record_partial_batch(&self) {
        self.partial_batches.fetch_add(1, Ordering::Relaxed);
    }

    /// The counters now.
    pub fn snapshot(&self) -> CallStatsSnapshot {
        CallStatsSnapshot {
            calls: AwsOperation::ALL
                .iter()
                .map(|op| (*op, self.calls[op.index()].load(Ordering::Relaxed)))
                .collect(),
            attempts: AwsOperation::ALL
                .iter()
                .map(|op| (*op, self.attempts[op.index()].load(Ordering::Relaxed)))
                .collect(),
            errors: ErrorKind::ALL
                .iter()
                .map(|k| (k.as_str(), self.errors[k.index()].load(Ordering::Relaxed)))
                .collect(),
            metrics_requested: self.metrics_requested.load(Ordering::Relaxed),
            datapoints_received: self.datapoints_received.load(Ordering::Relaxed),
            sample_requests: self.sample_requests.load(Ordering::Relaxed),
            partial_batches: self.partial_batches.load(Ordering::Relaxed),
        }
    }
}

/// A point-in-time copy of [`CallStats`]. Counters only ever grow.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CallStatsSnapshot {
    /// Requests sent, by operation (every operation listed, zeros included). Use
    /// [`AwsOperation::service`] and [`AwsOperation::name`] for labels.
    pub calls: Vec<(AwsOperation, u64)>,
    /// HTTP attempts by operation: calls plus the SDK's retries (what AWS actually serves,
    /// bills and rate-limits).
    pub attempts: Vec<(AwsOperation, u64)>,
    /// Failed calls by error kind ([`AwsError::kind`], zeros included).
    pub errors: Vec<(&'static str, u64)>,
    /// Metrics requested from `GetMetricData` (the billed unit).
    pub metrics_requested: u64,
    /// Datapoints received from `GetMetricData`.
    pub datapoints_received: u64,
    /// `samples()` requests served.
    pub sample_requests: u64,
    /// Calls the metric batcher sent before they were full (their wait ran out).
    pub partial_batches: u64,
}

impl CallStatsSnapshot {
    /// Requests of one operation.
    pub fn calls_of(&self, operation: AwsOperation) -> u64 {
        self.calls
            .iter()
            .find(|(op, _)| *op == operation)
            .map(|(_, n)| *n)
            .unwrap_or(0)
    }

    /// HTTP attempts of one operation.
    pub fn attempts_of(&self, operation: AwsOperation) -> u64 {
        self.attempts
            .iter()
            .find(|(op, _)| *op == operation)
            .map(|(_, n)| *n)
            .unwrap_or(0)
    }

    /// Errors of one kind ([`AwsError::kind`]).
    pub fn errors_of(&self, kind: &str) -> u64 {
        self.errors
            .iter()
            .find(|(k, _)| *k == kind)
            .map(|(_, n)| *n)
            .unwrap_or(0)
    }

    /// The increase from `earlier` to `self` (for per-cycle figures in benchmarks).
    pub fn since(&self, earlier: &CallStatsSnapshot) -> CallStatsSnapshot {
        CallStatsSnapshot {
            calls: self
                .calls
                .iter()
                .map(|(op, n)| (*op, n.saturating_sub(earlier.calls_of(*op))))
                .collect(),
            attempts: self
                .attempts
                .iter()
                .map(|(op, n)| (*op, n.saturating_sub(earlier.attempts_of(*op))))
                .collect(),
            errors: self
                .errors
                .iter()
                .map(|(k, n)| (*k, n.saturating_sub(earlier.errors_of(k))))
                .collect(),
            metrics_requested: self.metrics_requested.saturating_sub(earlier.metrics_requested),
            datapoints_received: self
                .datapoints_received
                .saturating_sub(earlier.datapoints_received),
            sample_requests: self.sample_requests.saturating_sub(earlier.sample_requests),
            partial_batches: self.partial_batches.saturating_sub(earlier.partial_batches),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_differences() {
        let stats = CallStats::new();
        stats.record_call(AwsOperation::GetMetricData);
        stats.record_attempt(AwsOperation::GetMetricData);
        stats.record_metrics_requested(500);
        let before = stats.snapshot();
        stats.record_call(AwsOperation::GetMetricData);
        stats.record_call(AwsOperation::DescribeApplication);
        stats.record_attempt(AwsOperation::GetMetricData);
        stats.record_attempt(AwsOperation::GetMetricData);
        stats.record_metrics_requested(12);
        stats.record_error(&AwsError::Throttled("GetMetricData: Throttling".into()));
        let after = stats.snapshot();
        assert_eq!(after.calls_of(AwsOperation::GetMetricData), 2);
        assert_eq!(after.calls_of(AwsOperation::UpdateApplication), 0);
        assert_eq!(after.calls.len(), AwsOperation::ALL.len());
        let delta = after.since(&before);
        assert_eq!(delta.calls_of(AwsOperation::GetMetricData), 1);
        assert_eq!(delta.calls_of(AwsOperation::DescribeApplication), 1);
        assert_eq!(delta.attempts_of(AwsOperation::GetMetricData), 2);
        assert_eq!(after.attempts_of(AwsOperation::GetMetricData), 3);
        assert_eq!(delta.metrics_requested, 12);
        assert_eq!(delta.errors_of("throttled"), 1);
        assert_eq!(delta.errors_of("not_found"), 0);
    }
}
