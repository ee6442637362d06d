//! The HTTP handlers of the AWS protocols: what every call records ([`Call`]), the
//! dispatch of `POST /` by `X-Amz-Target`, and the fleet run off the async workers. The
//! protocols: [`json`] (kinesisanalyticsv2, awsJson1_1) and [`cbor`] (CloudWatch, Smithy
//! RPC v2 CBOR and awsJson 1.0).

use std::time::Duration;

use axum::{
    Extension,
    body::Bytes,
    extract::{ConnectInfo, State},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
};
use jiff::Timestamp;

use super::{
    Backend, EmulatorState, Protocol, Service, auth,
    calllog::CallRecord,
    cloudwatch,
    error::{ApiError, ErrorKind},
    hangup::Hangup,
};

pub(super) mod cbor;
pub(super) mod json;

/// What is known about a request for the call log, filled in as it is understood.
///
/// Every request that arrives is logged once: with the status answered, or, when the client
/// gives up first (its handler is dropped, e.g. while an injected latency waits), as 499
/// `ClientClosedRequest`.
pub(super) struct Call {
    state: EmulatorState,
    time: Timestamp,
    service: Service,
    protocol: Protocol,
    operation: String,
    applications: Vec<String>,
    metric_queries: Option<usize>,
    credential: Option<auth::Credential>,
    /// Delay between serving and answering (the `responseLatency` fault).
    response_latency: Duration,
    /// Close the connection instead of answering (the `closeConnection` fault): after
    /// serving the request (`Some(true)`) or without serving it (`Some(false)`).
    close_connection: Option<bool>,
    /// Answer without `OperationId` (the `missingOperationId` fault).
    missing_operation_id: bool,
    recorded: bool,
}

impl Call {
    fn new(state: &EmulatorState, service: Service, protocol: Protocol, operation: String) -> Self {
        Self {
            state: state.clone(),
            time: Timestamp::now(),
            service,
            protocol,
            operation,
            applications: Vec::new(),
            metric_queries: None,
            credential: None,
            response_latency: Duration::ZERO,
            close_connection: None,
            missing_operation_id: false,
            recorded: false,
        }
    }

    fn record(&mut self, status: StatusCode, error: Option<&ApiError>) {
        let code = error.map(|e| e.code(self.service).to_string());
        self.record_raw(status.as_u16(), code);
    }

    fn record_raw(&mut self, status: u16, error_code: Option<String>) {
        if std::mem::replace(&mut self.recorded, true) {
            return;
        }
        self.state.record(CallRecord {
            seq: 0,
            time: self.time,
            virtual_time: self.state.virtual_now(),
            service: self.service,
            protocol: self.protocol,
            application: (self.applications.len() == 1).then(|| self.applications[0].clone()),
            applications: std::mem::take(&mut self.applications),
            operation: std::mem::take(&mut self.operation),
            status,
            error_code,
            metric_queries: self.metric_queries,
            access_key_id: self.credential.as_ref().map(|c| c.access_key_id.clone()),
            region: self.credential.take().map(|c| c.region),
        });
    }

    /// Waits out the `responseLatency` fault, after the call is logged as answered.
    async fn answer_late(&self) {
        if !self.response_latency.is_zero() {
            tokio::time::sleep(self.response_latency).await;
        }
    }

    /// Carries out the `closeConnection` fault, if armed for this call: logs the call (with
    /// the status of `result` when the request was served, 444 when it was not, and the
    /// error code `ConnectionClosed`) and closes the connection; the response returned is
    /// never sent. `None` when the call is to be answered: no such fault, or no connection
    /// to close (a request served in process), in which case `result` becomes a 500.
    fn hang_up<T>(
        &mut self,
        hangup: Option<&Hangup>,
        result: &mut Result<T, ApiError>,
        status_of: impl Fn(&ApiError) -> StatusCode,
    ) -> Option<Response> {
        let served = self.close_connection?;
        let Some(hangup) = hangup else {
            *result = Err(ApiError::new(
                ErrorKind::ServerError(500),
                "closeConnection needs a real connection; this request was served in process.",
            ));
            return None;
        };
        let status = match (&*result, served) {
            (_, false) => 444,
            (Ok(_), true) => 200,
            (Err(e), true) => status_of(e).as_u16(),
        };
        self.record_raw(status, Some("ConnectionClosed".into()));
        hangup.hang_up();
        Some(StatusCode::INTERNAL_SERVER_ERROR.into_response())
    }
}

impl Drop for Call {
    fn drop(&mut self) {
        // nginx's code for a request whose client closed the connection first.
        self.record_raw(499, Some("ClientClosedRequest".into()));
    }
}

pub(super) fn auth_error(e: auth::AuthError) -> ApiError {
    let kind = match e {
        auth::AuthError::Missing => ErrorKind::MissingAuthenticationToken,
        auth::AuthError::Incomplete(_) => ErrorKind::IncompleteSignature,
        auth::AuthError::WrongScope(_) => ErrorKind::InvalidSignature,
    };
    ApiError::new(kind, e.to_string())
}

/// The connection's [`Hangup`] switch, when the request came over the emulator's listener.
pub(super) type Connection = Option<Extension<ConnectInfo<Hangup>>>;

/// `POST /`: kinesisanalyticsv2, or CloudWatch's awsJson 1.0, by `X-Amz-Target`.
pub(super) async fn root_handler(
    State(state): State<EmulatorState>,
    connection: Connection,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let hangup = connection.map(|Extension(ConnectInfo(h))| h);
    let target = headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if let Some(operation) = target.strip_prefix(cloudwatch::JSON_TARGET_PREFIX) {
        let operation = operation.to_string();
        return cbor::cloudwatch_response(state, operation, headers, body, Protocol::AwsJson1_0, hangup)
            .await;
    }
    json::kinesis_response(state, headers, body, hangup).await
}

/// Runs `f` on the fleet (advanced to the virtual now) off the async workers: stepping many
/// applications through a long idle stretch of virtual time is CPU work.
pub(super) async fn on_fleet<T: Send + 'static>(
    state: &EmulatorState,
    f: impl FnOnce(&mut dyn Backend) -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    let state = state.clone();
    tokio::task::spawn_blocking(move || state.with_fleet(f))
        .await
        .map_err(|e| ApiError::new(ErrorKind::ServerError(500), format!("The model failed: {e}")))?
}
