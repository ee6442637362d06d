//! One error model for both services, and its wire form in each protocol: this is the
//! emulator's error mapping, kept in one place so the two protocols cannot drift apart.
//!
//! | kind | kinesisanalyticsv2 (`__type`, status) | CloudWatch (`x-amzn-query-error`, status) |
//! |---|---|---|
//! | missing `Authorization` | `MissingAuthenticationTokenException` 403 | `MissingAuthenticationToken;Sender` 403 |
//! | incomplete `Authorization` | `IncompleteSignatureException` 400 | `IncompleteSignature;Sender` 400 |
//! | credential scoped to another service | `InvalidSignatureException` 403 | `SignatureDoesNotMatch;Sender` 403 |
//! | access denied (fault) | `AccessDeniedException` 400 | `AccessDenied;Sender` 403 |
//! | throttling (fault) | `ThrottlingException` 400 | `Throttling;Sender` 400 |
//! | server error (fault) 500 / 503 / other | `InternalFailure` / `ServiceUnavailableException` / `InternalFailure` | `InternalServiceError;Server` / `ServiceUnavailable;Server` / `InternalFailure;Server` |
//! | undecodable body | `SerializationException` 400 | `SerializationException` 400 (no legacy code) |
//! | unknown operation | `UnknownOperationException` 400 | `UnknownOperationException` 404 |
//! | service errors | the modeled exception, 400 | the modeled error's legacy code, its status |
//!
//! Statuses follow AWS's "Common Errors" (MissingAuthenticationToken 403,
//! IncompleteSignature 400, AccessDenied 400 in the JSON services, ThrottlingException 400).
//!
//! Both SDKs classify `ThrottlingException` and `Throttling` as throttling (retried with
//! backoff), and 500/502/503/504 as transient. NB: the Rust SDK also treats
//! `LimitExceededException` as throttling, so a KPU-quota refusal is retried before it
//! surfaces.

use axum::http::StatusCode;

/// What went wrong, independent of the protocol that reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum ErrorKind {
    /// No SigV4 `Authorization` header.
    MissingAuthenticationToken,
    /// A SigV4 header missing parts.
    IncompleteSignature,
    /// A SigV4 credential scoped to another service.
    InvalidSignature,
    /// IAM refused the call (injected).
    AccessDenied,
    /// The request rate was exceeded (injected).
    Throttling,
    /// The service failed with this 5xx status (injected).
    ServerError(u16),
    /// The body could not be decoded as the operation's input.
    Serialization,
    /// The operation is not one the emulator serves.
    UnknownOperation,
    /// kinesisanalyticsv2: no such application or operation.
    ResourceNotFound,
    /// kinesisanalyticsv2: stale version id or conditional token, or a concurrent change.
    ConcurrentModification,
    /// kinesisanalyticsv2: the application's status does not allow the operation.
    ResourceInUse,
    /// kinesisanalyticsv2: an input value is not valid.
    InvalidArgument,
    /// kinesisanalyticsv2: the request is not valid JSON or not valid for the application.
    InvalidRequest,
    /// kinesisanalyticsv2: the configuration is not valid.
    InvalidApplicationConfiguration,
    /// kinesisanalyticsv2: a quota (e.g. KPUs per application) would be exceeded.
    LimitExceeded,
    /// kinesisanalyticsv2: the operation is not supported for this application.
    UnsupportedOperation,
    /// kinesisanalyticsv2: more than 50 tags.
    TooManyTags,
    /// A required member is missing or violates a constraint (Coral validation).
    Validation,
    /// CloudWatch: a parameter value is not valid.
    InvalidParameterValue,
    /// CloudWatch: parameters that cannot be used together.
    InvalidParameterCombination,
    /// CloudWatch: a required parameter is missing.
    MissingParameter,
    /// CloudWatch: the `NextToken` is not one this server issued for this request.
    InvalidNextToken,
}

/// An error to send back, with AWS's message.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{kind:?}: {message}")]
pub struct ApiError {
    /// What went wrong.
    pub kind: ErrorKind,
    /// The human-readable message, worded as AWS words it where known.
    pub message: String,
}

/// The awsJson1_1 wire form of an error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct JsonWire {
    /// HTTP status.
    pub status: StatusCode,
    /// The `__type` member.
    pub error_type: &'static str,
}

/// The Smithy RPC v2 CBOR wire form of an error (AWS-query compatible).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CborWire {
    /// HTTP status.
    pub status: StatusCode,
    /// The `__type` member: the Smithy shape id.
    pub error_type: &'static str,
    /// The `x-amzn-query-error` header (`<legacy code>;<Sender|Server>`), when the error has one.
    pub query_error: Option<&'static str>,
}

impl ApiError {
    /// Builds an error.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }

    /// The error code clients see (`e.response['Error']['Code']`, `ProvideErrorMetadata::code`).
    pub fn code(&self, service: super::Service) -> &'static str {
        match service {
            super::Service::KinesisAnalytics => self.json_wire().error_type,
            super::Service::CloudWatch => {
                let wire = self.cbor_wire();
                match wire.query_error {
                    Some(q) => q.split(';').next().unwrap_or(q),
                    None => wire.error_type.rsplit('#').next().unwrap_or(wire.error_type),
                }
            }
        }
    }

    /// The HTTP status in the given service's protocol.
    pub fn status(&self, service: super::Service) -> StatusCode {
        match service {
            super::Service::KinesisAnalytics => self.json_wire().status,
            super::Service::CloudWatch => self.cbor_wire().status,
        }
    }

    /// How kinesisanalyticsv2 (awsJson1_1) reports this error.
    pub fn json_wire(&self) -> JsonWire {
        let bad = StatusCode::BAD_REQUEST;
        let (status, error_type) = match self.kind {
            ErrorKind::MissingAuthenticationToken => {
                (StatusCode::FORBIDDEN, "MissingAuthenticationTokenException")
            }
            ErrorKind::IncompleteSignature => (bad, "IncompleteSignatureException"),
            ErrorKind::InvalidSignature => (StatusCode::FORBIDDEN, "InvalidSignatureException"),
            ErrorKind::AccessDenied => (bad, "AccessDeniedException"),
            ErrorKind::Throttling => (bad, "ThrottlingException"),
            ErrorKind::ServerError(code) => {
                let status = server_status(code);
                let name = if status == StatusCode::SERVICE_UNAVAILABLE {
                    "ServiceUnavailableException"
                } else {
                    "InternalFailure"
                };
                (status, name)
            }
            ErrorKind::Serialization => (bad, "SerializationException"),
            ErrorKind::UnknownOperation => (bad, "UnknownOperationException"),
            ErrorKind::ResourceNotFound => (bad, "ResourceNotFoundException"),
            ErrorKind::ConcurrentModification => (bad, "ConcurrentModificationException"),
            ErrorKind::ResourceInUse => (bad, "ResourceInUseException"),
            ErrorKind::InvalidArgument
            | ErrorKind::InvalidParameterValue
            | ErrorKind::InvalidParameterCombination => (bad, "InvalidArgumentException"),
            ErrorKind::InvalidRequest | ErrorKind::InvalidNextToken => (bad, "InvalidRequestException"),
            ErrorKind::InvalidApplicationConfiguration => (bad, "InvalidApplicationConfigurationException"),
            ErrorKind::LimitExceeded => (bad, "LimitExceededException"),
            ErrorKind::UnsupportedOperation => (bad, "UnsupportedOperationException"),
            ErrorKind::TooManyTags => (bad, "TooManyTagsException"),
            ErrorKind::Validation | ErrorKind::MissingParameter => (bad, "ValidationException"),
        };
        JsonWire { status, error_type }
    }

    /// How CloudWatch (rpc-v2-cbor with AWS-query-compatible errors) reports this error.
    pub fn cbor_wire(&self) -> CborWire {
        let bad = StatusCode::BAD_REQUEST;
        let (status, error_type, query_error) = match self.kind {
            ErrorKind::MissingAuthenticationToken => (
                StatusCode::FORBIDDEN,
                "MissingAuthenticationTokenException",
                Some("MissingAuthenticationToken;Sender"),
            ),
            ErrorKind::IncompleteSignature => (
                bad,
                "IncompleteSignatureException",
                Some("IncompleteSignature;Sender"),
            ),
            ErrorKind::InvalidSignature => (
                StatusCode::FORBIDDEN,
                "InvalidSignatureException",
                Some("SignatureDoesNotMatch;Sender"),
            ),
            ErrorKind::AccessDenied => (
                StatusCode::FORBIDDEN,
                "AccessDeniedException",
                Some("AccessDenied;Sender"),
            ),
            ErrorKind::Throttling => (bad, "ThrottlingException", Some("Throttling;Sender")),
            ErrorKind::ServerError(code) => {
                let status = server_status(code);
                match status {
                    StatusCode::INTERNAL_SERVER_ERROR => (
                        status,
                        "com.amazonaws.cloudwatch#InternalServiceFault",
                        Some("InternalServiceError;Server"),
                    ),
                    StatusCode::SERVICE_UNAVAILABLE => (
                        status,
                        "ServiceUnavailableException",
                        Some("ServiceUnavailable;Server"),
                    ),
                    _ => (status, "InternalFailure", Some("InternalFailure;Server")),
                }
            }
            ErrorKind::Serialization => (bad, "SerializationException", None),
            ErrorKind::UnknownOperation => (StatusCode::NOT_FOUND, "UnknownOperationException", None),
            ErrorKind::InvalidParameterValue
            | ErrorKind::InvalidArgument
            | ErrorKind::InvalidRequest
            | ErrorKind::InvalidApplicationConfiguration
            | ErrorKind::ResourceInUse
            | ErrorKind::UnsupportedOperation
            | ErrorKind::TooManyTags => (
                bad,
                "com.amazonaws.cloudwatch#InvalidParameterValueException",
                Some("InvalidParameterValue;Sender"),
            ),
            ErrorKind::InvalidParameterCombination => (
                bad,
                "com.amazonaws.cloudwatch#InvalidParameterCombinationException",
                Some("InvalidParameterCombination;Sender"),
            ),
            ErrorKind::MissingParameter => (
                bad,
                "com.amazonaws.cloudwatch#MissingRequiredParameterException",
                Some("MissingParameter;Sender"),
            ),
            ErrorKind::Validation => (bad, "ValidationException", Some("ValidationError;Sender")),
            ErrorKind::InvalidNextToken => (
                bad,
                "com.amazonaws.cloudwatch#InvalidNextToken",
                Some("InvalidNextToken;Sender"),
            ),
            ErrorKind::ResourceNotFound => (
                StatusCode::NOT_FOUND,
                "com.amazonaws.cloudwatch#ResourceNotFound",
                Some("ResourceNotFound;Sender"),
            ),
            ErrorKind::ConcurrentModification => (
                StatusCode::TOO_MANY_REQUESTS,
                "com.amazonaws.cloudwatch#ConcurrentModificationException",
                Some("ConcurrentModificationException;Sender"),
            ),
            ErrorKind::LimitExceeded => (
                bad,
                "com.amazonaws.cloudwatch#LimitExceededFault",
                Some("LimitExceeded;Sender"),
            ),
        };
        CborWire {
            status,
            error_type,
            query_error,
        }
    }
}

/// A 5xx status from an injected fault; anything outside 500..=599 becomes 500.
fn server_status(code: u16) -> StatusCode {
    match StatusCode::from_u16(code) {
        Ok(s) if s.is_server_error() => s,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

#[cfg(test)]
mod tests {
    use super::{super::Service, *};

    #[test]
    fn kinesis_errors_use_the_modeled_exception_names() {
        let e = ApiError::new(ErrorKind::ResourceNotFound, "Application x not found");
        assert_eq!(e.json_wire().error_type, "ResourceNotFoundException");
        assert_eq!(e.status(Service::KinesisAnalytics), StatusCode::BAD_REQUEST);
        let t = ApiError::new(ErrorKind::Throttling, "Rate exceeded");
        assert_eq!(t.code(Service::KinesisAnalytics), "ThrottlingException");
    }

    #[test]
    fn cloudwatch_errors_carry_the_legacy_code_in_the_header() {
        let e = ApiError::new(ErrorKind::InvalidParameterValue, "bad");
        let wire = e.cbor_wire();
        assert_eq!(wire.query_error, Some("InvalidParameterValue;Sender"));
        assert_eq!(e.code(Service::CloudWatch), "InvalidParameterValue");
        let s = ApiError::new(ErrorKind::Serialization, "bad cbor");
        assert_eq!(s.code(Service::CloudWatch), "SerializationException");
    }

    #[test]
    fn server_errors_keep_their_status() {
        let e = ApiError::new(ErrorKind::ServerError(503), "down");
        assert_eq!(
            e.status(Service::KinesisAnalytics),
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(e.code(Service::KinesisAnalytics), "ServiceUnavailableException");
        assert_eq!(e.code(Service::CloudWatch), "ServiceUnavailable");
        let weird = ApiError::new(ErrorKind::ServerError(200), "not a 5xx");
        assert_eq!(
            weird.status(Service::CloudWatch),
            StatusCode::INTERNAL_SERVER_ERROR
        );
        assert_eq!(weird.code(Service::CloudWatch), "InternalServiceError");
        let gw = ApiError::new(ErrorKind::ServerError(502), "bad gateway");
        assert_eq!(gw.code(Service::KinesisAnalytics), "InternalFailure");
        assert_eq!(gw.status(Service::KinesisAnalytics), StatusCode::BAD_GATEWAY);
    }
}
