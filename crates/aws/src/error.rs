//! [`AwsError`]: what went wrong talking to AWS, classified so the controller can pick a
//! condition reason and a requeue policy without looking at SDK types.

use std::error::Error as StdError;

use aws_credential_types::provider::error::CredentialsError;
use aws_sdk_kinesisanalyticsv2::error::{ProvideErrorMetadata, SdkError};

use super::stats::AwsOperation;

/// An AWS call that failed, by kind. The message names the operation and carries AWS's
/// error code and message (never credentials, never a whole response).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AwsError {
    /// The application (or operation) does not exist: `ResourceNotFoundException`.
    #[error("not found: {0}")]
    NotFound(String),
    /// The credentials are not allowed to do this (IAM policy, tenancy, expired token).
    #[error("access denied: {0}")]
    AccessDenied(String),
    /// AWS throttled the call (after the SDK's own retries).
    #[error("throttled: {0}")]
    Throttled(String),
    /// The application changed since it was described (`CurrentApplicationVersionId` no
    /// longer matches): `ConcurrentModificationException`.
    #[error("concurrent modification: {0}")]
    ConcurrentModification(String),
    /// The application is busy (updating, autoscaling, starting): `ResourceInUseException`.
    #[error("application busy: {0}")]
    ResourceInUse(String),
    /// A service quota (KPUs per application, ...) stops the call.
    #[error("limit exceeded: {0}")]
    LimitExceeded(String),
    /// AWS rejected the request's content (a parallelism it will not take, a bad argument).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// AWS could not be reached or failed on its side (timeouts, connection errors, 5xx).
    #[error("AWS unavailable: {0}")]
    Transient(String),
    /// No usable credentials: the default chain found none, or STS refused the role.
    #[error("credentials unavailable: {0}")]
    Credentials(String),
    /// AWS answered, but without a field we cannot do without.
    #[error("unexpected response: {0}")]
    UnexpectedResponse(String),
    /// Anything else.
    #[error("AWS error: {0}")]
    Other(String),
}

impl AwsError {
    /// Whether retrying soon (with backoff) can succeed without anyone changing anything:
    /// throttling, AWS being unavailable, a busy application, or a concurrent modification
    /// (which needs a fresh `DescribeApplication` first).
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            AwsError::Throttled(_)
                | AwsError::Transient(_)
                | AwsError::ResourceInUse(_)
                | AwsError::ConcurrentModification(_)
        )
    }

    /// The CamelCase condition (and Event) reason for this error.
    pub fn reason(&self) -> &'static str {
        match self {
            AwsError::NotFound(_) => "ApplicationNotFound",
            AwsError::AccessDenied(_) => "AccessDenied",
            AwsError::Throttled(_) => "Throttled",
            AwsError::ConcurrentModification(_) => "ConcurrentModification",
            AwsError::ResourceInUse(_) => "ApplicationBusy",
            AwsError::LimitExceeded(_) => "LimitExceeded",
            AwsError::InvalidArgument(_) => "InvalidArgument",
            AwsError::Transient(_) => "AwsUnavailable",
            AwsError::Credentials(_) => "CredentialsUnavailable",
            AwsError::UnexpectedResponse(_) => "UnexpectedResponse",
            AwsError::Other(_) => "AwsError",
        }
    }

    /// A short snake_case name for metric labels.
    pub fn kind(&self) -> &'static str {
        ErrorKind::of(self).as_str()
    }

    /// The message, without the kind prefix.
    pub fn message(&self) -> &str {
        match self {
            AwsError::NotFound(m)
            | AwsError::AccessDenied(m)
            | AwsError::Throttled(m)
            | AwsError::ConcurrentModification(m)
            | AwsError::ResourceInUse(m)
            | AwsError::LimitExceeded(m)
            | AwsError::InvalidArgument(m)
            | AwsError::Transient(m)
            | AwsError::Credentials(m)
            | AwsError::UnexpectedResponse(m)
            | AwsError::Other(m) => m,
        }
    }

    /// Classifies an SDK error of `operation`.
    pub(crate) fn from_sdk<E>(operation: AwsOperation, err: SdkError<E>) -> Self
    where
        E: ProvideErrorMetadata + StdError + Send + Sync + 'static,
    {
        let op = operation.name();
        match &err {
            SdkError::ServiceError(service) => {
                let status = service.raw().status().as_u16();
                let e = service.err();
                classify_service(op, e.code(), e.message(), Some(status))
            }
            SdkError::TimeoutError(_) => AwsError::Transient(format!("{op}: timed out")),
            SdkError::DispatchFailure(dispatch) => {
                if let Some(creds) = find_source::<CredentialsError>(&err) {
                    AwsError::Credentials(format!("{op}: {}", chain(creds)))
                } else if dispatch.is_user() {
                    // The request could not be sent at all (an invalid request).
                    AwsError::Other(format!("{op}: request not sent: {}", chain(&err)))
                } else {
                    // NB: I/O errors, timeouts and the unclassified rest alike: a connection
                    // closed before the answer (hyper's IncompleteMessage, which the SDK
                    // classes as neither I/O nor timeout) may come after the request was
                    // served, so a write may have taken effect; and nothing AWS said refused
                    // it. The caller learns the outcome from the service.
                    AwsError::Transient(format!("{op}: {}", chain(&err)))
                }
            }
            SdkError::ResponseError(response) => {
                let status = response.raw().status().as_u16();
                if (500..600).contains(&status) || status == 429 {
                    classify_service(op, None, None, Some(status))
                } else {
                    // NB: an unreadable response is most often a connection cut short; retry.
                    AwsError::Transient(format!(
                        "{op}: unreadable response (HTTP {status}): {}",
                        chain(&err)
                    ))
                }
            }
            SdkError::ConstructionFailure(_) => {
                AwsError::Other(format!("{op}: request not built: {}", chain(&err)))
            }
            _ => AwsError::Other(format!("{op}: {}", chain(&err))),
        }
    }
}

/// The kinds of [`AwsError`], for counters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum ErrorKind {
    NotFound,
    AccessDenied,
    Throttled,
    ConcurrentModification,
    ResourceInUse,
    LimitExceeded,
    InvalidArgument,
    Transient,
    Credentials,
    UnexpectedResponse,
    Other,
}

impl ErrorKind {
    pub(crate) const ALL: [ErrorKind; 11] = [
        ErrorKind::NotFound,
        ErrorKind::AccessDenied,
        ErrorKind::Throttled,
        ErrorKind::ConcurrentModification,
        ErrorKind::ResourceInUse,
        ErrorKind::LimitExceeded,
        ErrorKind::InvalidArgument,
        ErrorKind::Transient,
        ErrorKind::Credentials,
        ErrorKind::UnexpectedResponse,
        ErrorKind::Other,
    ];

    pub(crate) fn of(err: &AwsError) -> Self {
        match err {
            AwsError::NotFound(_) => ErrorKind::NotFound,
            AwsError::AccessDenied(_) => ErrorKind::AccessDenied,
            AwsError::Throttled(_) => ErrorKind::Throttled,
            AwsError::ConcurrentModification(_) => ErrorKind::ConcurrentModification,
            AwsError::ResourceInUse(_) => ErrorKind::ResourceInUse,
            AwsError::LimitExceeded(_) => ErrorKind::LimitExceeded,
            AwsError::InvalidArgument(_) => ErrorKind::InvalidArgument,
            AwsError::Transient(_) => ErrorKind::Transient,
            AwsError::Credentials(_) => ErrorKind::Credentials,
            AwsError::UnexpectedResponse(_) => ErrorKind::UnexpectedResponse,
            AwsError::Other(_) => ErrorKind::Other,
        }
    }

    pub(crate) fn index(self) -> usize {
        self as usize
    }

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            ErrorKind::NotFound => "not_found",
            ErrorKind::AccessDenied => "access_denied",
            ErrorKind::Throttled => "throttled",
            ErrorKind::ConcurrentModification => "concurrent_modification",
            ErrorKind::ResourceInUse => "resource_in_use",
            ErrorKind::LimitExceeded => "limit_exceeded",
            ErrorKind::InvalidArgument => "invalid_argument",
            ErrorKind::Transient => "transient",
            ErrorKind::Credentials => "credentials",
            ErrorKind::UnexpectedResponse => "unexpected_response",
            ErrorKind::Other => "other",
        }
    }
}

/// Classifies an error response by its code (the `__type` of awsJson, the query-compatible
/// code of CloudWatch), falling back on the HTTP status when there is no code.
pub(crate) fn classify_service(
    op: &str,
    code: Option<&str>,
    message: Option<&str>,
    status: Option<u16>,
) -> AwsError {
    let text = match (code, message) {
        (Some(c), Some(m)) => format!("{op}: {c}: {m}"),
        (Some(c), None) => format!("{op}: {c}"),
        (None, Some(m)) => format!("{op}: {m}"),
        (None, None) => match status {
            Some(s) => format!("{op}: HTTP {s}"),
            None => format!("{op}: error without code"),
        },
    };
    if let Some(code) = code {
        // awsJson codes may carry a namespace prefix (`com.amazonaws...#Code`).
        let code = code.rsplit('#').next().unwrap_or(code);
        let by_code = match code {
            "ResourceNotFoundException" | "ResourceNotFound" => Some(AwsError::NotFound(text.clone())),
            "AccessDeniedException"
            | "AccessDenied"
            | "UnrecognizedClientException"
            | "InvalidClientTokenId"
            | "InvalidSignatureException"
            | "SignatureDoesNotMatch"
            | "IncompleteSignature"
            | "MissingAuthenticationToken"
            | "ExpiredToken"
            | "ExpiredTokenException"
            | "NotAuthorized"
            | "AuthFailure"
            | "OptInRequired" => Some(AwsError::AccessDenied(text.clone())),
            "ThrottlingException"
            | "Throttling"
            | "ThrottledException"
            | "TooManyRequestsException"
            | "RequestLimitExceeded"
            | "RequestThrottled"
            | "RequestThrottledException"
            | "ProvisionedThroughputExceededException"
            | "ResourceProvisionedThroughputExceededException"
            | "SlowDown"
            | "PriorRequestNotComplete"
            | "BandwidthLimitExceeded" => Some(AwsError::Throttled(text.clone())),
            "ConcurrentModificationException" => Some(AwsError::ConcurrentModification(text.clone())),
            "ResourceInUseException" => Some(AwsError::ResourceInUse(text.clone())),
            "LimitExceededException" | "LimitExceeded" | "LimitExceededFault" | "TooManyTagsException" => {
                Some(AwsError::LimitExceeded(text.clone()))
            }
            "InvalidArgumentException"
            | "InvalidRequestException"
            | "InvalidApplicationConfigurationException"
            | "UnsupportedOperationException"
            | "CodeValidationException"
            | "ValidationException"
            | "ValidationError"
            | "InvalidParameterValue"
            | "InvalidParameterValueException"
            | "InvalidParameterCombination"
            | "InvalidParameterCombinationException"
            | "MissingParameter"
            | "MissingRequiredParameterException"
            | "InvalidNextToken"
            | "InvalidFormatFault" => Some(AwsError::InvalidArgument(text.clone())),
            "ServiceUnavailableException"
            | "ServiceUnavailable"
            | "InternalFailure"
            | "InternalServiceError"
            | "InternalServiceFault"
            | "InternalServerError"
            | "InternalError"
            | "RequestTimeout"
            | "RequestTimeoutException" => Some(AwsError::Transient(text.clone())),
            _ => None,
        };
        if let Some(err) = by_code {
            return err;
        }
    }
    match status {
        Some(429) => AwsError::Throttled(text),
        Some(403) => AwsError::AccessDenied(text),
        Some(s) if (500..600).contains(&s) => AwsError::Transient(text),
        _ => AwsError::Other(text),
    }
}

/// An error and its sources, joined with ": " (the SDK's wrappers repeat their source's
/// text, so repeats are dropped). Unlike `DisplayErrorContext`, no `Debug` dump.
fn chain(err: &(dyn StdError + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut current: Option<&(dyn StdError + 'static)> = Some(err);
    while let Some(e) = current {
        let text = e.to_string();
        if !text.is_empty() && !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        current = e.source();
    }
    parts.join(": ")
}

/// The first error of type `T` in `err`'s source chain.
fn find_source<'a, T: StdError + 'static>(err: &'a (dyn StdError + 'static)) -> Option<&'a T> {
    let mut current: Option<&(dyn StdError + 'static)> = Some(err);
    while let Some(e) = current {
        if let Some(found) = e.downcast_ref::<T>() {
            return Some(found);
        }
        current = e.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_map_to_kinds() {
        let cases: &[(&str, &str, bool)] = &[
            ("ResourceNotFoundException", "ApplicationNotFound", false),
            ("AccessDeniedException", "AccessDenied", false),
            ("UnrecognizedClientException", "AccessDenied", false),
            ("ExpiredTokenException", "AccessDenied", false),
            ("ThrottlingException", "Throttled", true),
            ("Throttling", "Throttled", true),
            ("TooManyRequestsException", "Throttled", true),
            ("ConcurrentModificationException", "ConcurrentModification", true),
            ("ResourceInUseException", "ApplicationBusy", true),
            ("LimitExceededException", "LimitExceeded", false),
            ("InvalidArgumentException", "InvalidArgument", false),
            ("InvalidRequestException", "InvalidArgument", false),
            (
                "InvalidApplicationConfigurationException",
                "InvalidArgument",
                false,
            ),
            ("UnsupportedOperationException", "InvalidArgument", false),
            ("InvalidParameterValue", "InvalidArgument", false),
            ("InvalidNextToken", "InvalidArgument", false),
            ("ServiceUnavailableException", "AwsUnavailable", true),
            ("InternalServiceError", "AwsUnavailable", true),
            (
                "com.amazonaws.kinesisanalyticsv2#ResourceInUseException",
                "ApplicationBusy",
                true,
            ),
        ];
        for (code, reason, transient) in cases {
            let err = classify_service("DescribeApplication", Some(code), Some("boom"), Some(400));
            assert_eq!(err.reason(), *reason, "{code}");
            assert_eq!(err.is_transient(), *transient, "{code}");
            assert!(err.message().starts_with("DescribeApplication: "), "{err}");
            assert!(err.message().ends_with(": boom"), "{err}");
        }
    }

    #[test]
    fn unknown_codes_fall_back_on_status() {
        let throttled = classify_service("GetMetricData", Some("SomethingNew"), None, Some(429));
        assert_eq!(throttled.reason(), "Throttled");
        let unavailable = classify_service("GetMetricData", None, None, Some(503));
        assert_eq!(unavailable.reason(), "AwsUnavailable");
        assert_eq!(unavailable.message(), "GetMetricData: HTTP 503");
        let denied = classify_service("GetMetricData", None, Some("no"), Some(403));
        assert_eq!(denied.reason(), "AccessDenied");
        let other = classify_service("GetMetricData", Some("Weird"), Some("x"), Some(400));
        assert_eq!(other.reason(), "AwsError");
        assert!(!other.is_transient());
    }

    #[test]
    fn kinds_are_distinct_and_indexed_in_order() {
        for (i, kind) in ErrorKind::ALL.iter().enumerate() {
            assert_eq!(kind.index(), i);
        }
        let names: std::collections::HashSet<_> = ErrorKind::ALL.iter().map(|k| k.as_str()).collect();
        assert_eq!(names.len(), ErrorKind::ALL.len());
        assert_eq!(AwsError::ResourceInUse("x".into()).kind(), "resource_in_use");
    }

    #[test]
    fn chains_join_sources_without_repeats() {
        #[derive(Debug, thiserror::Error)]
        #[error("dispatch failure")]
        struct Outer(#[source] std::io::Error);
        let err = Outer(std::io::Error::new(
            std::io::ErrorKind::ConnectionRefused,
            "connection refused",
        ));
        assert_eq!(chain(&err), "dispatch failure: connection refused");
    }

    /// A connection closed before any answer (hyper's `IncompleteMessage`, which the SDK's
    /// connector classes as neither I/O nor timeout) may come after the request was served:
    /// the write may have taken effect, so it is transient, never a definite failure. A
    /// request that could not be sent at all is not.
    #[test]
    fn a_connection_closed_before_the_answer_is_transient() {
        use aws_sdk_kinesisanalyticsv2::{
            error::ConnectorError, operation::update_application::UpdateApplicationError,
        };
        use aws_smithy_types::retry::ErrorKind as RetryKind;
        type Sdk = SdkError<UpdateApplicationError>;
        let closed: Sdk = SdkError::dispatch_failure(ConnectorError::other(
            "connection closed before message completed".into(),
            Some(RetryKind::TransientError),
        ));
        let err = AwsError::from_sdk(AwsOperation::UpdateApplication, closed);
        assert_eq!(err.reason(), "AwsUnavailable", "{err}");
        assert!(
            err.message()
                .contains("connection closed before message completed"),
            "{err}"
        );
        let unclassified: Sdk =
            SdkError::dispatch_failure(ConnectorError::other("something new in hyper".into(), None));
        assert!(AwsError::from_sdk(AwsOperation::UpdateApplication, unclassified).is_transient());
        let invalid: Sdk = SdkError::dispatch_failure(ConnectorError::user("invalid header value".into()));
        let err = AwsError::from_sdk(AwsOperation::UpdateApplication, invalid);
        assert_eq!(err.reason(), "AwsError", "{err}");
        assert!(err.message().contains("request not sent"), "{err}");
    }

    #[test]
    fn credentials_errors_are_found_in_the_source_chain() {
        #[derive(Debug, thiserror::Error)]
        #[error("outer")]
        struct Outer(#[source] CredentialsError);
        let outer = Outer(CredentialsError::not_loaded("no providers in chain"));
        assert!(find_source::<CredentialsError>(&outer).is_some());
        assert!(find_source::<std::io::Error>(&outer).is_none());
    }
}
