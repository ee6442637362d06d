//! Injected faults: what the control API arms and each AWS request consults before it is
//! served. A fault is scoped by service, operation and/or application and lasts for a
//! number of affected requests or until cleared.
//!
//! Three families:
//! - errors instead of an answer (`throttling`, `serverError`, `accessDenied`,
//!   `concurrentModification`, `limitExceeded`) and delays (`latency` before serving,
//!   `responseLatency` after serving, so a client that gives up cannot tell whether a write
//!   took effect);
//! - the application's state as the service shows it (`stuckUpdating`, `resourceInUse` with
//!   a chosen status, `failOperation`: the next update is accepted and its restart fails);
//! - CloudWatch's datapoints (`metricGap`, `metricDelay`, `metricNaN`).

use std::time::Duration;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::{
    Service,
    error::{ApiError, ErrorKind},
};
use crate::policy::AppStatus;

/// What a fault does to the requests it matches.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum FaultKind {
    /// Refuse with the service's throttling error (retried by the SDKs).
    Throttling,
    /// Fail with a 5xx status.
    #[serde(rename_all = "camelCase")]
    ServerError {
        /// The status, 500..=599 (default 500).
        #[serde(default = "default_server_status")]
        status: u16,
    },
    /// Delay the response, then serve it (or apply another matching fault).
    #[serde(rename_all = "camelCase")]
    Latency {
        /// The delay in milliseconds.
        millis: u64,
    },
    /// Refuse a mutating kinesisanalyticsv2 call with `ConcurrentModificationException`, as
    /// if another client had changed the application first.
    ConcurrentModification,
    /// Make the application look stuck in `UPDATING`: DescribeApplication reports
    /// `UPDATING`, its latest operation `IN_PROGRESS`, and UpdateApplication is refused with
    /// `ResourceInUseException`. Clearing the fault reveals the model's real state.
    StuckUpdating,
    /// Refuse with AccessDenied, as IAM would for a role without the permission.
    AccessDenied,
    /// Serve the request, then delay the answer: a client whose attempt timeout is shorter
    /// gives up without knowing that the request took effect (a timed-out write that did
    /// happen).
    #[serde(rename_all = "camelCase")]
    ResponseLatency {
        /// The delay in milliseconds.
        millis: u64,
    },
    /// Refuse a kinesisanalyticsv2 call with `LimitExceededException`, as the service does
    /// when an update would take the application above its KPU quota.
    LimitExceeded,
    /// Make the application look busy in `status` (e.g. `AUTOSCALING`, `STARTING`,
    /// `UPDATING`): DescribeApplication reports that status, and UpdateApplication and
    /// StartApplication are refused with `ResourceInUseException` naming it. Scoped to `UpdateApplication`, the
    /// application looks fine when described but becomes busy before the update lands.
    #[serde(rename_all = "camelCase")]
    ResourceInUse {
        /// The status shown, as the service names it (`AUTOSCALING`, `STARTING`, ...).
        status: AppStatus,
    },
    /// Accept `UpdateApplication` (an operation id comes back, the application goes
    /// `UPDATING`), then fail the restart: the operation ends `FAILED` with `message` and
    /// the service rolls the application back to the previous version. Only updates that
    /// restart a running application can fail this way; the fault matches
    /// `UpdateApplication` only.
    #[serde(rename_all = "camelCase")]
    FailOperation {
        /// The failure details (`OperationFailureDetails.ErrorInfo.ErrorString`).
        #[serde(default = "default_failure")]
        message: String,
    },
    /// Close the connection without answering, after serving the request (`served`, the
    /// default) or instead of serving it: the client sees the connection closed before any
    /// response, as when a proxy or a NAT drops it. A write served this way took effect
    /// although its answer never arrived. Only over a real connection (the emulator's
    /// listener); in process the request is answered with a 500.
    #[serde(rename_all = "camelCase")]
    CloseConnection {
        /// Whether the request is served before the connection is closed.
        #[serde(default = "default_served")]
        served: bool,
    },
    /// Serve the request and answer 200 without its `OperationId` (the kinesisanalyticsv2
    /// calls that start an operation: UpdateApplication, RollbackApplication,
    /// StartApplication, StopApplication).
    MissingOperationId,
    /// GetMetricData leaves out the datapoints whose period starts within `[from, until)`
    /// (either end open when absent) of the matching metrics: a gap in the series that stays
    /// a gap, as when the service published nothing.
    #[serde(rename_all = "camelCase")]
    MetricGap {
        /// Only these metric names (all when absent).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        metrics: Option<Vec<String>>,
        /// First period left out (virtual time, RFC 3339).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        from: Option<Timestamp>,
        /// First period served again.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        until: Option<Timestamp>,
    },
    /// GetMetricData serves a period's datapoint only `seconds` after the period ended
    /// (late datapoints: CloudWatch's publication lag made longer).
    #[serde(rename_all = "camelCase")]
    MetricDelay {
        /// The lag beyond the end of the period.
        seconds: u64,
        /// Only these metric names (all when absent).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        metrics: Option<Vec<String>>,
    },
    /// GetMetricData answers NaN for the datapoints whose period starts within
    /// `[from, until)` of the matching metrics.
    #[serde(rename_all = "camelCase")]
    MetricNaN {
        /// Only these metric names (all when absent).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        metrics: Option<Vec<String>>,
        /// First period made NaN (virtual time, RFC 3339).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        from: Option<Timestamp>,
        /// First period served as published again.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        until: Option<Timestamp>,
    },
}

fn default_failure() -> String {
    "The application failed to restart with the new configuration: the job could not be restored from the snapshot."
        .into()
}

fn default_served() -> bool {
    true
}

fn default_server_status() -> u16 {
    500
}

/// A fault as armed through the control API.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FaultSpec {
    /// What the fault does.
    #[serde(flatten)]
    pub kind: FaultKind,
    /// Only requests to this service (any when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<Service>,
    /// Only this operation, e.g. `UpdateApplication` (any when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation: Option<String>,
    /// Only requests about this application (any when absent). A GetMetricData call
    /// matches when any of its queries has the dimension `Application=<name>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub application: Option<String>,
    /// How many requests it affects before it disarms (until cleared when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u32>,
}

/// An armed fault and what it has done so far.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Fault {
    /// Id for clearing it.
    pub id: u64,
    /// The fault as armed.
    #[serde(flatten)]
    pub spec: FaultSpec,
    /// Requests it still affects (`None`: until cleared).
    pub remaining: Option<u32>,
    /// Requests it has affected.
    pub hits: u64,
}

/// Why a fault cannot be armed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FaultError {
    /// A server error status outside 500..=599.
    #[error("serverError status must be within 500..=599, got {0}")]
    BadStatus(u16),
    /// A kind that only exists for kinesisanalyticsv2 scoped to CloudWatch.
    #[error("{0} faults apply to kinesisanalyticsv2 only")]
    WrongService(&'static str),
    /// A count of zero would never fire.
    #[error("count must be at least 1 (omit it to keep the fault until cleared)")]
    ZeroCount,
    /// A kind that only exists for CloudWatch scoped to kinesisanalyticsv2.
    #[error("{0} faults apply to CloudWatch GetMetricData only")]
    CloudWatchOnly(&'static str),
    /// `resourceInUse` with a status in which the service accepts updates.
    #[error("resourceInUse needs a busy status (not READY or RUNNING), got {0:?}")]
    NotBusy(AppStatus),
    /// A time range that ends before it starts.
    #[error("until must not be before from")]
    EmptyRange,
}

/// What one request is about, for matching faults.
#[derive(Clone, Debug)]
pub struct RequestScope<'a> {
    /// The service.
    pub service: Service,
    /// The operation name.
    pub operation: &'a str,
    /// The applications the request concerns.
    pub applications: &'a [String],
    /// Whether the operation changes an application (for ConcurrentModification).
    pub mutating: bool,
}

/// What a metric fault does to the datapoints of the queries it matches.
#[derive(Clone, Debug, PartialEq)]
pub enum MetricEffect {
    /// Leave out the periods starting within the range.
    Gap {
        /// First period affected.
        from: Option<Timestamp>,
        /// First period not affected.
        until: Option<Timestamp>,
    },
    /// Serve only periods that ended at or before this instant.
    NotAfter(Timestamp),
    /// Answer NaN for the periods starting within the range.
    NaN {
        /// First period affected.
        from: Option<Timestamp>,
        /// First period not affected.
        until: Option<Timestamp>,
    },
}

/// A metric fault as applied to one GetMetricData request.
#[derive(Clone, Debug, PartialEq)]
pub struct MetricMask {
    /// Only queries with the dimension `Application=<this>` (all when absent).
    pub application: Option<String>,
    /// Only these metric names (all when absent).
    pub metrics: Option<Vec<String>>,
    /// What happens to their datapoints.
    pub effect: MetricEffect,
}

impl MetricMask {
    /// Whether the mask applies to a query of `metric_name` about `application`.
    pub fn matches(&self, metric_name: &str, application: Option<&str>) -> bool {
        self.metrics
            .as_ref()
            .is_none_or(|m| m.iter().any(|n| n == metric_name))
            && self.application.as_deref().is_none_or(|a| application == Some(a))
    }

    /// Applies the mask to one query's datapoints (period start, value) of `period`.
    pub fn apply(&self, points: &mut Vec<(Timestamp, f64)>, period: Duration) {
        let within = |t: Timestamp, from: &Option<Timestamp>, until: &Option<Timestamp>| {
            from.is_none_or(|f| t >= f) && until.is_none_or(|u| t < u)
        };
        match &self.effect {
            MetricEffect::Gap { from, until } => points.retain(|(t, _)| !within(*t, from, until)),
            MetricEffect::NotAfter(cutoff) => {
                let period = jiff::SignedDuration::try_from(period).unwrap_or(jiff::SignedDuration::ZERO);
                points.retain(|(t, _)| t.checked_add(period).is_ok_and(|end| end <= *cutoff));
            }
            MetricEffect::NaN { from, until } => {
                for (t, v) in points.iter_mut() {
                    if within(*t, from, until) {
                        *v = f64::NAN;
                    }
                }
            }
        }
    }
}

/// The combined effect of the armed faults on one request.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Effects {
    /// Delay before answering.
    pub latency: Duration,
    /// Delay after serving, before the answer goes out.
    pub response_latency: Duration,
    /// The error to answer with instead of serving the request.
    pub error: Option<ApiError>,
    /// Whether the application is to look stuck in `UPDATING`.
    pub stuck_updating: bool,
    /// The status the application is to look busy in (`resourceInUse`).
    pub busy: Option<AppStatus>,
    /// The failure an accepted `UpdateApplication`'s restart is to end in.
    pub fail_operation: Option<String>,
    /// Close the connection without an answer: after serving the request (`Some(true)`) or
    /// instead of serving it (`Some(false)`).
    pub close_connection: Option<bool>,
    /// Answer without the `OperationId`.
    pub missing_operation_id: bool,
    /// What happens to GetMetricData's datapoints.
    pub metric_masks: Vec<MetricMask>,
}

/// The armed faults.
#[derive(Debug, Default)]
pub struct Faults {
    next_id: u64,
    armed: Vec<Fault>,
}

impl Faults {
    /// Arms a fault and returns its id.
    pub fn arm(&mut self, spec: FaultSpec) -> Result<u64, FaultError> {
        if let FaultKind::ServerError { status } = spec.kind
            && !(500..=599).contains(&status)
        {
            return Err(FaultError::BadStatus(status));
        }
        if spec.service == Some(Service::CloudWatch) {
            match spec.kind {
                FaultKind::ConcurrentModification => {
                    return Err(FaultError::WrongService("concurrentModification"));
                }
                FaultKind::StuckUpdating => return Err(FaultError::WrongService("stuckUpdating")),
                FaultKind::LimitExceeded => return Err(FaultError::WrongService("limitExceeded")),
                FaultKind::ResourceInUse { .. } => return Err(FaultError::WrongService("resourceInUse")),
                FaultKind::FailOperation { .. } => return Err(FaultError::WrongService("failOperation")),
                FaultKind::MissingOperationId => return Err(FaultError::WrongService("missingOperationId")),
                _ => {}
            }
        }
        if spec.service == Some(Service::KinesisAnalytics) {
            match spec.kind {
                FaultKind::MetricGap { .. } => return Err(FaultError::CloudWatchOnly("metricGap")),
                FaultKind::MetricDelay { .. } => return Err(FaultError::CloudWatchOnly("metricDelay")),
                FaultKind::MetricNaN { .. } => return Err(FaultError::CloudWatchOnly("metricNaN")),
                _ => {}
            }
        }
        match &spec.kind {
            FaultKind::ResourceInUse { status }
                if matches!(status, AppStatus::Ready | AppStatus::Running) =>
            {
                return Err(FaultError::NotBusy(*status));
            }
            FaultKind::MetricGap {
                from: Some(f),
                until: Some(u),
                ..
            }
            | FaultKind::MetricNaN {
                from: Some(f),
                until: Some(u),
                ..
            } if u < f => return Err(FaultError::EmptyRange),
            _ => {}
        }
        if spec.count == Some(0) {
            return Err(FaultError::ZeroCount);
        }
        self.next_id += 1;
        self.armed.push(Fault {
            id: self.next_id,
            remaining: spec.count,
            spec,
            hits: 0,
        });
        Ok(self.next_id)
    }

    /// Clears one fault; false when there is none with that id.
    pub fn clear(&mut self, id: u64) -> bool {
        let before = self.armed.len();
        self.armed.retain(|f| f.id != id);
        self.armed.len() != before
    }

    /// Clears every fault.
    pub fn clear_all(&mut self) {
        self.armed.clear();
    }

    /// The armed faults.
    pub fn list(&self) -> &[Fault] {
        &self.armed
    }

    /// The application scopes (`None`: all) of the StuckUpdating faults that apply to
    /// ListApplications, so a listing agrees with DescribeApplication. Counts are not used.
    pub fn stuck_scopes(&self) -> Vec<Option<String>> {
        self.armed
            .iter()
            .filter(|f| {
                f.spec.kind == FaultKind::StuckUpdating
                    && f.spec.service.is_none_or(|s| s == Service::KinesisAnalytics)
                    && f.spec
                        .operation
                        .as_deref()
                        .is_none_or(|o| o == "ListApplications")
            })
            .map(|f| f.spec.application.clone())
            .collect()
    }

    /// Applies the armed faults to one request at virtual time `now`: every matching
    /// latency fault adds its delay, the first matching error fault answers, a matching
    /// StuckUpdating or ResourceInUse fault masks the application, a FailOperation fault
    /// marks the update, metric faults mask datapoints. Each fault that affects the request
    /// uses up one of its count.
    pub fn apply(&mut self, req: &RequestScope<'_>, now: Timestamp) -> Effects {
        let mut effects = Effects::default();
        for fault in &mut self.armed {
            if !matches(&fault.spec, req) {
                continue;
            }
            let mask = |effect: MetricEffect, metrics: &Option<Vec<String>>| MetricMask {
                application: fault.spec.application.clone(),
                metrics: metrics.clone(),
                effect,
            };
            let affected = match &fault.spec.kind {
                FaultKind::Latency { millis } => {
                    effects.latency += Duration::from_millis(*millis);
                    true
                }
                FaultKind::ResponseLatency { millis } => {
                    effects.response_latency += Duration::from_millis(*millis);
                    true
                }
                FaultKind::StuckUpdating => {
                    effects.stuck_updating = true;
                    true
                }
                FaultKind::ResourceInUse { status } if effects.busy.is_none() => {
                    effects.busy = Some(*status);
                    true
                }
                FaultKind::FailOperation { message } if effects.fail_operation.is_none() => {
                    effects.fail_operation = Some(message.clone());
                    true
                }
                FaultKind::CloseConnection { served } if effects.close_connection.is_none() => {
                    effects.close_connection = Some(*served);
                    true
                }
                FaultKind::MissingOperationId => {
                    effects.missing_operation_id = true;
                    true
                }
                FaultKind::MetricGap { metrics, from, until } => {
                    let m = mask(
                        MetricEffect::Gap {
                            from: *from,
                            until: *until,
                        },
                        metrics,
                    );
                    effects.metric_masks.push(m);
                    true
                }
                FaultKind::MetricNaN { metrics, from, until } => {
                    let m = mask(
                        MetricEffect::NaN {
                            from: *from,
                            until: *until,
                        },
                        metrics,
                    );
                    effects.metric_masks.push(m);
                    true
                }
                FaultKind::MetricDelay { seconds, metrics } => {
                    let cutoff = now
                        .checked_sub(jiff::SignedDuration::from_secs(
                            i64::try_from(*seconds).unwrap_or(i64::MAX),
                        ))
                        .unwrap_or(Timestamp::MIN);
                    let m = mask(MetricEffect::NotAfter(cutoff), metrics);
                    effects.metric_masks.push(m);
                    true
                }
                FaultKind::ResourceInUse { .. }
                | FaultKind::FailOperation { .. }
                | FaultKind::CloseConnection { .. } => false,
                kind if effects.error.is_none() => {
                    effects.error = Some(fault_error(kind, req));
                    true
                }
                _ => false,
            };
            if affected {
                fault.hits += 1;
                if let Some(n) = fault.remaining.as_mut() {
                    *n = n.saturating_sub(1);
                }
            }
        }
        self.armed.retain(|f| f.remaining != Some(0));
        effects
    }
}

fn matches(spec: &FaultSpec, req: &RequestScope<'_>) -> bool {
    let applicable = match spec.kind {
        FaultKind::ConcurrentModification => req.service == Service::KinesisAnalytics && req.mutating,
        FaultKind::StuckUpdating | FaultKind::LimitExceeded | FaultKind::ResourceInUse { .. } => {
            req.service == Service::KinesisAnalytics
        }
        FaultKind::FailOperation { .. } => {
            req.service == Service::KinesisAnalytics && req.operation == "UpdateApplication"
        }
        FaultKind::MissingOperationId => {
            req.service == Service::KinesisAnalytics
                && matches!(
                    req.operation,
                    "UpdateApplication" | "RollbackApplication" | "StartApplication" | "StopApplication"
                )
        }
        FaultKind::MetricGap { .. } | FaultKind::MetricDelay { .. } | FaultKind::MetricNaN { .. } => {
            req.service == Service::CloudWatch && req.operation == "GetMetricData"
        }
        _ => true,
    };
    applicable
        && spec.service.is_none_or(|s| s == req.service)
        && spec.operation.as_deref().is_none_or(|op| op == req.operation)
        && spec
            .application
            .as_deref()
            .is_none_or(|app| req.applications.iter().any(|a| a == app))
}

fn fault_error(kind: &FaultKind, req: &RequestScope<'_>) -> ApiError {
    let (prefix, action) = match req.service {
        Service::KinesisAnalytics => ("kinesisanalytics", req.operation),
        Service::CloudWatch => ("cloudwatch", req.operation),
    };
    match kind {
        FaultKind::Throttling => ApiError::new(ErrorKind::Throttling, "Rate exceeded"),
        FaultKind::ServerError { status } => ApiError::new(
            ErrorKind::ServerError(*status),
            "The service encountered an internal error. Please try again.",
        ),
        FaultKind::AccessDenied => ApiError::new(
            ErrorKind::AccessDenied,
            format!(
                "User: arn:aws:sts::123456789012:assumed-role/emulator/session is not authorized to perform: {prefix}:{action} because no identity-based policy allows the {prefix}:{action} action"
            ),
        ),
        FaultKind::ConcurrentModification => ApiError::new(
            ErrorKind::ConcurrentModification,
            format!(
                "Unable to {action} {}: another request modified the application concurrently. Describe the application and retry with its current version.",
                req.applications
                    .first()
                    .map(String::as_str)
                    .unwrap_or("the application")
            ),
        ),
        FaultKind::LimitExceeded => ApiError::new(
            ErrorKind::LimitExceeded,
            format!(
                "Unable to {action} {}: the application would use more KPUs than the limit of KPUs per application allows. Request a quota increase or use fewer KPUs.",
                req.applications
                    .first()
                    .map(String::as_str)
                    .unwrap_or("the application")
            ),
        ),
        // The other kinds never answer with an error (see `apply`).
        FaultKind::Latency { .. }
        | FaultKind::ResponseLatency { .. }
        | FaultKind::StuckUpdating
        | FaultKind::ResourceInUse { .. }
        | FaultKind::FailOperation { .. }
        | FaultKind::CloseConnection { .. }
        | FaultKind::MissingOperationId
        | FaultKind::MetricGap { .. }
        | FaultKind::MetricDelay { .. }
        | FaultKind::MetricNaN { .. } => {
            ApiError::new(ErrorKind::ServerError(500), "internal error in fault injection")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: Timestamp = Timestamp::UNIX_EPOCH;

    fn spec(kind: FaultKind) -> FaultSpec {
        FaultSpec {
            kind,
            service: None,
            operation: None,
            application: None,
            count: None,
        }
    }

    fn req<'a>(service: Service, operation: &'a str, apps: &'a [String], mutating: bool) -> RequestScope<'a> {
        RequestScope {
            service,
            operation,
            applications: apps,
            mutating,
        }
    }

    #[test]
    fn parses_the_documented_json() {
        let s: FaultSpec = serde_json::from_str(
            r#"{"kind":"serverError","status":503,"service":"cloudwatch","operation":"GetMetricData","count":2}"#,
        )
        .unwrap();
        assert_eq!(s.kind, FaultKind::ServerError { status: 503 });
        assert_eq!(s.service, Some(Service::CloudWatch));
        let l: FaultSpec =
            serde_json::from_str(r#"{"kind":"latency","millis":20,"application":"a"}"#).unwrap();
        assert_eq!(l.kind, FaultKind::Latency { millis: 20 });
        let d: FaultSpec = serde_json::from_str(r#"{"kind":"serverError"}"#).unwrap();
        assert_eq!(d.kind, FaultKind::ServerError { status: 500 });
        assert!(serde_json::from_str::<FaultSpec>(r#"{"kind":"meteor"}"#).is_err());
    }

    /// `closeConnection` and `missingOperationId`: parsed as documented, matched where they
    /// apply, counted like the others.
    #[test]
    fn lost_answers_parse_and_match() {
        let close: FaultSpec = serde_json::from_str(r#"{"kind":"closeConnection","count":1}"#).unwrap();
        assert_eq!(close.kind, FaultKind::CloseConnection { served: true });
        let unserved: FaultSpec =
            serde_json::from_str(r#"{"kind":"closeConnection","served":false}"#).unwrap();
        assert_eq!(unserved.kind, FaultKind::CloseConnection { served: false });
        let missing: FaultSpec = serde_json::from_str(r#"{"kind":"missingOperationId"}"#).unwrap();
        assert_eq!(missing.kind, FaultKind::MissingOperationId);

        let mut f = Faults::default();
        f.arm(close).unwrap();
        f.arm(unserved).unwrap();
        f.arm(missing.clone()).unwrap();
        let apps = vec!["a".to_string()];
        let update = req(Service::KinesisAnalytics, "UpdateApplication", &apps, true);
        let effects = f.apply(&update, T0);
        // The first matching closeConnection decides; the counted one is used up.
        assert_eq!(effects.close_connection, Some(true));
        assert!(effects.missing_operation_id);
        assert!(effects.error.is_none());
        assert_eq!(f.list().len(), 2);
        // Not an operation that answers with an OperationId.
        let describe = req(Service::KinesisAnalytics, "DescribeApplication", &apps, false);
        let effects = f.apply(&describe, T0);
        assert!(!effects.missing_operation_id);
        assert_eq!(effects.close_connection, Some(false));
        assert_eq!(
            f.arm(FaultSpec {
                service: Some(Service::CloudWatch),
                ..missing
            }),
            Err(FaultError::WrongService("missingOperationId"))
        );
    }

    #[test]
    fn counted_faults_disarm_after_their_count() {
        let mut f = Faults::default();
        f.arm(FaultSpec {
            count: Some(2),
            ..spec(FaultKind::Throttling)
        })
        .unwrap();
        let apps = vec!["a".to_string()];
        let r = req(Service::KinesisAnalytics, "DescribeApplication", &apps, false);
        assert!(f.apply(&r, T0).error.is_some());
        assert!(f.apply(&r, T0).error.is_some());
        assert!(f.apply(&r, T0).error.is_none());
        assert!(f.list().is_empty());
    }

    #[test]
    fn scope_by_operation_application_and_service() {
        let mut f = Faults::default();
        f.arm(FaultSpec {
            operation: Some("UpdateApplication".into()),
            application: Some("orders".into()),
            ..spec(FaultKind::AccessDenied)
        })
        .unwrap();
        let orders = vec!["orders".to_string()];
        let other = vec!["payments".to_string()];
        assert!(
            f.apply(
                &req(Service::KinesisAnalytics, "DescribeApplication", &orders, false),
                T0
            )
            .error
            .is_none()
        );
        assert!(
            f.apply(
                &req(Service::KinesisAnalytics, "UpdateApplication", &other, true),
                T0
            )
            .error
            .is_none()
        );
        let e = f
            .apply(
                &req(Service::KinesisAnalytics, "UpdateApplication", &orders, true),
                T0,
            )
            .error
            .unwrap();
        assert_eq!(e.kind, ErrorKind::AccessDenied);
        assert!(e.message.contains("kinesisanalytics:UpdateApplication"));
        assert_eq!(f.list()[0].hits, 1);

        f.clear_all();
        f.arm(FaultSpec {
            service: Some(Service::CloudWatch),
            ..spec(FaultKind::ServerError { status: 503 })
        })
        .unwrap();
        assert!(
            f.apply(
                &req(Service::KinesisAnalytics, "DescribeApplication", &orders, false),
                T0
            )
            .error
            .is_none()
        );
        assert_eq!(
            f.apply(&req(Service::CloudWatch, "GetMetricData", &orders, false), T0)
                .error
                .unwrap()
                .kind,
            ErrorKind::ServerError(503)
        );
    }

    #[test]
    fn concurrent_modification_only_hits_mutating_kinesis_calls() {
        let mut f = Faults::default();
        let id = f.arm(spec(FaultKind::ConcurrentModification)).unwrap();
        let apps = vec!["a".to_string()];
        assert!(
            f.apply(
                &req(Service::KinesisAnalytics, "DescribeApplication", &apps, false),
                T0
            )
            .error
            .is_none()
        );
        assert!(
            f.apply(&req(Service::CloudWatch, "GetMetricData", &apps, false), T0)
                .error
                .is_none()
        );
        assert_eq!(
            f.apply(
                &req(Service::KinesisAnalytics, "UpdateApplication", &apps, true),
                T0
            )
            .error
            .unwrap()
            .kind,
            ErrorKind::ConcurrentModification
        );
        assert!(f.clear(id));
        assert!(!f.clear(id));
    }

    #[test]
    fn latencies_add_up_and_only_the_first_error_fault_is_used() {
        let mut f = Faults::default();
        f.arm(spec(FaultKind::Latency { millis: 10 })).unwrap();
        f.arm(spec(FaultKind::Latency { millis: 5 })).unwrap();
        f.arm(FaultSpec {
            count: Some(1),
            ..spec(FaultKind::Throttling)
        })
        .unwrap();
        f.arm(FaultSpec {
            count: Some(1),
            ..spec(FaultKind::AccessDenied)
        })
        .unwrap();
        let r = req(Service::CloudWatch, "ListMetrics", &[], false);
        let first = f.apply(&r, T0);
        assert_eq!(first.latency, Duration::from_millis(15));
        assert_eq!(first.error.unwrap().kind, ErrorKind::Throttling);
        let second = f.apply(&r, T0);
        assert_eq!(second.error.unwrap().kind, ErrorKind::AccessDenied);
        assert!(f.apply(&r, T0).error.is_none());
    }

    #[test]
    fn invalid_faults_are_refused() {
        let mut f = Faults::default();
        assert_eq!(
            f.arm(spec(FaultKind::ServerError { status: 404 })),
            Err(FaultError::BadStatus(404))
        );
        assert_eq!(
            f.arm(FaultSpec {
                service: Some(Service::CloudWatch),
                ..spec(FaultKind::StuckUpdating)
            }),
            Err(FaultError::WrongService("stuckUpdating"))
        );
        assert_eq!(
            f.arm(FaultSpec {
                count: Some(0),
                ..spec(FaultKind::Throttling)
            }),
            Err(FaultError::ZeroCount)
        );
    }

    #[test]
    fn stuck_updating_masks_without_an_error() {
        let mut f = Faults::default();
        f.arm(FaultSpec {
            application: Some("a".into()),
            ..spec(FaultKind::StuckUpdating)
        })
        .unwrap();
        let apps = vec!["a".to_string()];
        let e = f.apply(
            &req(Service::KinesisAnalytics, "DescribeApplication", &apps, false),
            T0,
        );
        assert!(e.stuck_updating);
        assert!(e.error.is_none());
    }

    #[test]
    fn the_new_kinds_parse_and_are_checked() {
        let busy: FaultSpec = serde_json::from_str(
            r#"{"kind":"resourceInUse","status":"AUTOSCALING","operation":"UpdateApplication"}"#,
        )
        .unwrap();
        assert_eq!(
            busy.kind,
            FaultKind::ResourceInUse {
                status: AppStatus::Autoscaling
            }
        );
        let fail: FaultSpec = serde_json::from_str(r#"{"kind":"failOperation"}"#).unwrap();
        assert!(matches!(fail.kind, FaultKind::FailOperation { ref message } if !message.is_empty()));
        let gap: FaultSpec = serde_json::from_str(
            r#"{"kind":"metricGap","metrics":["cpuUtilization"],"from":"2026-01-05T00:00:00Z"}"#,
        )
        .unwrap();
        assert!(matches!(
            gap.kind,
            FaultKind::MetricGap {
                from: Some(_),
                until: None,
                ..
            }
        ));
        let mut f = Faults::default();
        assert_eq!(
            f.arm(spec(FaultKind::ResourceInUse {
                status: AppStatus::Running
            })),
            Err(FaultError::NotBusy(AppStatus::Running))
        );
        assert_eq!(
            f.arm(FaultSpec {
                service: Some(Service::KinesisAnalytics),
                ..spec(FaultKind::MetricDelay {
                    seconds: 60,
                    metrics: None
                })
            }),
            Err(FaultError::CloudWatchOnly("metricDelay"))
        );
        assert_eq!(
            f.arm(FaultSpec {
                service: Some(Service::CloudWatch),
                ..spec(FaultKind::LimitExceeded)
            }),
            Err(FaultError::WrongService("limitExceeded"))
        );
        let t = |s: i64| Timestamp::from_second(s).unwrap();
        assert_eq!(
            f.arm(spec(FaultKind::MetricNaN {
                metrics: None,
                from: Some(t(120)),
                until: Some(t(60)),
            })),
            Err(FaultError::EmptyRange)
        );
    }

    #[test]
    fn limit_exceeded_busy_and_failing_updates() {
        let mut f = Faults::default();
        f.arm(FaultSpec {
            operation: Some("UpdateApplication".into()),
            count: Some(1),
            ..spec(FaultKind::LimitExceeded)
        })
        .unwrap();
        f.arm(FaultSpec {
            application: Some("a".into()),
            ..spec(FaultKind::ResourceInUse {
                status: AppStatus::Starting,
            })
        })
        .unwrap();
        f.arm(FaultSpec {
            count: Some(1),
            ..spec(FaultKind::FailOperation {
                message: "boom".into(),
            })
        })
        .unwrap();
        let apps = vec!["a".to_string()];
        let describe = f.apply(
            &req(Service::KinesisAnalytics, "DescribeApplication", &apps, false),
            T0,
        );
        assert_eq!(describe.busy, Some(AppStatus::Starting));
        assert!(describe.error.is_none() && describe.fail_operation.is_none());
        let update = f.apply(
            &req(Service::KinesisAnalytics, "UpdateApplication", &apps, true),
            T0,
        );
        assert_eq!(update.error.unwrap().kind, ErrorKind::LimitExceeded);
        assert_eq!(update.fail_operation.as_deref(), Some("boom"));
        let again = f.apply(
            &req(Service::KinesisAnalytics, "UpdateApplication", &apps, true),
            T0,
        );
        assert!(again.error.is_none() && again.fail_operation.is_none());
        assert_eq!(again.busy, Some(AppStatus::Starting));
        assert_eq!(
            f.apply(&req(Service::CloudWatch, "GetMetricData", &apps, false), T0)
                .busy,
            None
        );
    }

    #[test]
    fn metric_masks_gap_delay_and_nan() {
        let t = |m: i64| Timestamp::from_second(1_767_571_200 + 60 * m).unwrap();
        let period = Duration::from_secs(60);
        let series = || (0..6).map(|m| (t(m), m as f64)).collect::<Vec<_>>();
        let mut f = Faults::default();
        f.arm(FaultSpec {
            application: Some("a".into()),
            ..spec(FaultKind::MetricGap {
                metrics: Some(vec!["cpuUtilization".into()]),
                from: Some(t(2)),
                until: Some(t(4)),
            })
        })
        .unwrap();
        f.arm(spec(FaultKind::MetricDelay {
            seconds: 120,
            metrics: None,
        }))
        .unwrap();
        f.arm(spec(FaultKind::MetricNaN {
            metrics: Some(vec!["lastCheckpointDuration".into()]),
            from: Some(t(1)),
            until: None,
        }))
        .unwrap();
        let apps = vec!["a".to_string()];
        // Not a GetMetricData request: nothing.
        assert!(
            f.apply(&req(Service::CloudWatch, "ListMetrics", &apps, false), t(6))
                .metric_masks
                .is_empty()
        );
        let e = f.apply(&req(Service::CloudWatch, "GetMetricData", &apps, false), t(6));
        assert_eq!(e.metric_masks.len(), 3);
        let apply = |name: &str, app: &str| {
            let mut points = series();
            for m in e.metric_masks.iter().filter(|m| m.matches(name, Some(app))) {
                m.apply(&mut points, period);
            }
            points
        };
        // The gap (periods 2 and 3) and the delay (periods ending after t(4)).
        let cpu: Vec<i64> = apply("cpuUtilization", "a")
            .iter()
            .map(|(_, v)| *v as i64)
            .collect();
        assert_eq!(cpu, vec![0, 1]);
        let other_app: Vec<i64> = apply("cpuUtilization", "b")
            .iter()
            .map(|(_, v)| *v as i64)
            .collect();
        assert_eq!(other_app, vec![0, 1, 2, 3]);
        let duration = apply("lastCheckpointDuration", "b");
        assert_eq!(duration.len(), 4);
        assert_eq!(duration[0].1, 0.0);
        assert!(duration[1..].iter().all(|(_, v)| v.is_nan()));
    }
}
