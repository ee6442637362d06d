//! Injected faults: what the control API arms and each AWS request consults before it is
//! served. A fault is scoped by service, operation and/or application and lasts for a
//! number of affected requests or until cleared.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{
    Service,
    error::{ApiError, ErrorKind},
};

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

/// The combined effect of the armed faults on one request.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Effects {
    /// Delay before answering.
    pub latency: Duration,
    /// The error to answer with instead of serving the request.
    pub error: Option<ApiError>,
    /// Whether the application is to look stuck in `UPDATING`.
    pub stuck_updating: bool,
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
                _ => {}
            }
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

    /// Applies the armed faults to one request: every matching latency fault adds its
    /// delay, the first matching error fault answers, a matching StuckUpdating fault masks
    /// the application. Each fault that affects the request uses up one of its count.
    pub fn apply(&mut self, req: &RequestScope<'_>) -> Effects {
        let mut effects = Effects::default();
        for fault in &mut self.armed {
            if !matches(&fault.spec, req) {
                continue;
            }
            let affected = match &fault.spec.kind {
                FaultKind::Latency { millis } => {
                    effects.latency += Duration::from_millis(*millis);
                    true
                }
                FaultKind::StuckUpdating => {
                    effects.stuck_updating = true;
                    true
                }
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
        FaultKind::StuckUpdating => req.service == Service::KinesisAnalytics,
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
        // Latency and StuckUpdating never answer with an error (see `apply`).
        FaultKind::Latency { .. } | FaultKind::StuckUpdating => {
            ApiError::new(ErrorKind::ServerError(500), "internal error in fault injection")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert!(f.apply(&r).error.is_some());
        assert!(f.apply(&r).error.is_some());
        assert!(f.apply(&r).error.is_none());
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
            f.apply(&req(
                Service::KinesisAnalytics,
                "DescribeApplication",
                &orders,
                false
            ))
            .error
            .is_none()
        );
        assert!(
            f.apply(&req(Service::KinesisAnalytics, "UpdateApplication", &other, true))
                .error
                .is_none()
        );
        let e = f
            .apply(&req(
                Service::KinesisAnalytics,
                "UpdateApplication",
                &orders,
                true,
            ))
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
            f.apply(&req(
                Service::KinesisAnalytics,
                "DescribeApplication",
                &orders,
                false
            ))
            .error
            .is_none()
        );
        assert_eq!(
            f.apply(&req(Service::CloudWatch, "GetMetricData", &orders, false))
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
            f.apply(&req(
                Service::KinesisAnalytics,
                "DescribeApplication",
                &apps,
                false
            ))
            .error
            .is_none()
        );
        assert!(
            f.apply(&req(Service::CloudWatch, "GetMetricData", &apps, false))
                .error
                .is_none()
        );
        assert_eq!(
            f.apply(&req(Service::KinesisAnalytics, "UpdateApplication", &apps, true))
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
        let first = f.apply(&r);
        assert_eq!(first.latency, Duration::from_millis(15));
        assert_eq!(first.error.unwrap().kind, ErrorKind::Throttling);
        let second = f.apply(&r);
        assert_eq!(second.error.unwrap().kind, ErrorKind::AccessDenied);
        assert!(f.apply(&r).error.is_none());
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
        let e = f.apply(&req(
            Service::KinesisAnalytics,
            "DescribeApplication",
            &apps,
            false,
        ));
        assert!(e.stuck_updating);
        assert!(e.error.is_none());
    }
}
