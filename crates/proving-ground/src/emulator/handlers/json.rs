//! kinesisanalyticsv2 over awsJson1_1: `POST /` with `X-Amz-Target`.

use axum::{
    body::Bytes,
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};

use super::{Call, auth_error, on_fleet};
use crate::emulator::{
    EmulatorState, Protocol, Service, auth,
    error::{ApiError, ErrorKind},
    faults::RequestScope,
    hangup::Hangup,
    kinesis,
    state::lock,
};

pub(super) async fn kinesis_response(
    state: EmulatorState,
    headers: HeaderMap,
    body: Bytes,
    hangup: Option<Hangup>,
) -> Response {
    let request_id = state.request_id();
    let target = headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let op = kinesis::Operation::from_target(target);
    let operation = match op {
        Some(op) => op.name().to_string(),
        None => target
            .rsplit('.')
            .next()
            .filter(|s| !s.is_empty())
            .unwrap_or("Unknown")
            .to_string(),
    };
    let mut call = Call::new(&state, Service::KinesisAnalytics, Protocol::AwsJson1_1, operation);
    let mut result = serve_kinesis(&state, &headers, &body, op, target, &mut call).await;
    if let Some(unanswered) = call.hang_up(hangup.as_ref(), &mut result, |e| e.json_wire().status) {
        return unanswered;
    }
    let response = match result {
        Ok(mut json) => {
            call.record(StatusCode::OK, None);
            if call.missing_operation_id
                && let Some(answer) = json.as_object_mut()
            {
                answer.remove("OperationId");
            }
            json_response(StatusCode::OK, &json, &request_id)
        }
        Err(e) => {
            let wire = e.json_wire();
            let body = serde_json::json!({ "__type": wire.error_type, "message": e.message });
            call.record(wire.status, Some(&e));
            json_response(wire.status, &body, &request_id)
        }
    };
    call.answer_late().await;
    response
}

async fn serve_kinesis(
    state: &EmulatorState,
    headers: &HeaderMap,
    body: &[u8],
    op: Option<kinesis::Operation>,
    target: &str,
    call: &mut Call,
) -> Result<serde_json::Value, ApiError> {
    call.credential = Some(auth::check(headers, kinesis::SIGNING_NAME).map_err(auth_error)?);
    let Some(op) = op else {
        let form = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
        let message = if form {
            "This endpoint speaks kinesisanalyticsv2 (awsJson1_1) and CloudWatch over Smithy RPC v2 CBOR; \
             a form-encoded request is the CloudWatch query protocol, which older SDKs speak."
                .to_string()
        } else if target.is_empty() {
            "Missing X-Amz-Target header.".to_string()
        } else {
            format!("Unknown operation {target}.")
        };
        return Err(ApiError::new(ErrorKind::UnknownOperation, message));
    };
    let req = kinesis::decode(op, body)?;
    call.applications = req.application().into_iter().collect();
    let effects = state.apply_faults(&RequestScope {
        service: Service::KinesisAnalytics,
        operation: op.name(),
        applications: &call.applications,
        mutating: op.is_mutating(),
    });
    if !effects.latency.is_zero() {
        tokio::time::sleep(effects.latency).await;
    }
    call.close_connection = effects.close_connection;
    call.missing_operation_id = effects.missing_operation_id;
    if effects.close_connection == Some(false) {
        // Closed before the request is served: it never takes effect.
        return Ok(serde_json::Value::Null);
    }
    if let Some(e) = effects.error {
        return Err(e);
    }
    let stuck = if op == kinesis::Operation::ListApplications {
        kinesis::Stuck::scopes(lock(&state.0.faults).stuck_scopes())
    } else if effects.stuck_updating {
        kinesis::Stuck::this()
    } else {
        kinesis::Stuck::none()
    };
    let injected = kinesis::Injected {
        stuck,
        busy: effects.busy,
        fail_operation: effects.fail_operation,
    };
    // Served first, answered late (by the caller, once the call is logged): a client that
    // gives up meanwhile cannot tell that it took effect.
    call.response_latency = effects.response_latency;
    on_fleet(state, move |fleet| kinesis::execute(fleet, req, &injected)).await
}

fn json_response(status: StatusCode, body: &serde_json::Value, request_id: &str) -> Response {
    let mut response = (status, body.to_string()).into_response();
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-amz-json-1.1"),
    );
    if let Ok(id) = HeaderValue::from_str(request_id) {
        h.insert("x-amzn-requestid", id);
    }
    response
}
