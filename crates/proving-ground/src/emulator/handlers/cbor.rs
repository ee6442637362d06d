//! CloudWatch over Smithy RPC v2 CBOR (`POST /service/GraniteServiceVersion20100801/
//! operation/<Operation>`) and over awsJson 1.0 (`POST /` by `X-Amz-Target`), both with the
//! query protocol's legacy error code in `x-amzn-query-error`; gzip-compressed bodies.

use std::io::Read;

use axum::{
    Extension,
    body::{Body, Bytes},
    extract::{ConnectInfo, Path as UrlPath, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};

use super::{Call, Connection, auth_error, on_fleet};
use crate::emulator::{
    EmulatorState, MAX_BODY, Protocol, Service, auth, cbor, cloudwatch,
    error::{ApiError, ErrorKind},
    faults::RequestScope,
    hangup::Hangup,
};

pub(in crate::emulator) async fn cloudwatch_handler(
    State(state): State<EmulatorState>,
    UrlPath(operation): UrlPath<String>,
    connection: Connection,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let hangup = connection.map(|Extension(ConnectInfo(h))| h);
    cloudwatch_response(state, operation, headers, body, Protocol::RpcV2Cbor, hangup).await
}

pub(super) async fn cloudwatch_response(
    state: EmulatorState,
    operation: String,
    headers: HeaderMap,
    body: Bytes,
    protocol: Protocol,
    hangup: Option<Hangup>,
) -> Response {
    let request_id = state.request_id();
    let op = cloudwatch::Operation::from_name(&operation);
    let mut call = Call::new(&state, Service::CloudWatch, protocol, operation.clone());
    let mut result = serve_cloudwatch(&state, &headers, &body, op, &operation, protocol, &mut call).await;
    if let Some(unanswered) = call.hang_up(hangup.as_ref(), &mut result, |e| e.cbor_wire().status) {
        return unanswered;
    }
    let response = match result {
        Ok(item) => {
            call.record(StatusCode::OK, None);
            match protocol {
                Protocol::AwsJson1_0 => {
                    cloudwatch_json_response(StatusCode::OK, &item.to_json(), &request_id, None)
                }
                _ => cbor_response(StatusCode::OK, item.encode(), &request_id, None),
            }
        }
        Err(e) => {
            let wire = e.cbor_wire();
            call.record(wire.status, Some(&e));
            match protocol {
                Protocol::AwsJson1_0 => {
                    let body = serde_json::json!({ "__type": wire.error_type, "message": e.message });
                    cloudwatch_json_response(wire.status, &body, &request_id, wire.query_error)
                }
                _ => {
                    let body = cbor::Cbor::Map(vec![
                        ("__type".into(), cbor::Cbor::text(wire.error_type)),
                        ("message".into(), cbor::Cbor::text(&e.message)),
                    ]);
                    cbor_response(wire.status, body.encode(), &request_id, wire.query_error)
                }
            }
        }
    };
    call.answer_late().await;
    response
}

#[allow(clippy::too_many_arguments)]
async fn serve_cloudwatch(
    state: &EmulatorState,
    headers: &HeaderMap,
    body: &[u8],
    op: Option<cloudwatch::Operation>,
    operation: &str,
    protocol: Protocol,
    call: &mut Call,
) -> Result<cbor::Cbor, ApiError> {
    call.credential = Some(auth::check(headers, cloudwatch::SIGNING_NAME).map_err(auth_error)?);
    let Some(op) = op else {
        return Err(ApiError::new(
            ErrorKind::UnknownOperation,
            format!("The emulator does not serve CloudWatch operation {operation}."),
        ));
    };
    let body = decompress(headers, body)?;
    let req = match protocol {
        Protocol::AwsJson1_0 => cloudwatch::decode_json(op, &body)?,
        _ => cloudwatch::decode(op, &body)?,
    };
    call.applications = req.applications();
    call.metric_queries = req.metric_queries();
    let effects = state.apply_faults(&RequestScope {
        service: Service::CloudWatch,
        operation: op.name(),
        applications: &call.applications,
        mutating: op == cloudwatch::Operation::PutMetricData,
    });
    if !effects.latency.is_zero() {
        tokio::time::sleep(effects.latency).await;
    }
    call.close_connection = effects.close_connection;
    if effects.close_connection == Some(false) {
        // Closed before the request is served: a PutMetricData never takes effect.
        return Ok(cbor::Cbor::Map(Vec::new()));
    }
    if let Some(e) = effects.error {
        return Err(e);
    }
    let masks = effects.metric_masks;
    call.response_latency = effects.response_latency;
    on_fleet(state, move |fleet| cloudwatch::execute(fleet, &req, &masks)).await
}

fn cloudwatch_json_response(
    status: StatusCode,
    body: &serde_json::Value,
    request_id: &str,
    query_error: Option<&str>,
) -> Response {
    let mut response = (status, body.to_string()).into_response();
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-amz-json-1.0"),
    );
    if let Ok(id) = HeaderValue::from_str(request_id) {
        h.insert("x-amzn-requestid", id);
    }
    if let Some(q) = query_error.and_then(|q| HeaderValue::from_str(q).ok()) {
        h.insert("x-amzn-query-error", q);
    }
    response
}

/// PutMetricData bodies may arrive gzip-compressed (both SDKs compress above 10 KiB).
fn decompress<'a>(headers: &HeaderMap, body: &'a [u8]) -> Result<std::borrow::Cow<'a, [u8]>, ApiError> {
    let gzip = headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|e| e.trim().eq_ignore_ascii_case("gzip")));
    if !gzip {
        return Ok(std::borrow::Cow::Borrowed(body));
    }
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(body)
        .take(MAX_BODY as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| {
            ApiError::new(
                ErrorKind::Serialization,
                format!("Cannot gunzip the request body: {e}"),
            )
        })?;
    if out.len() > MAX_BODY {
        return Err(ApiError::new(
            ErrorKind::Serialization,
            format!("The decompressed request body exceeds {MAX_BODY} bytes."),
        ));
    }
    Ok(std::borrow::Cow::Owned(out))
}

fn cbor_response(status: StatusCode, body: Vec<u8>, request_id: &str, query_error: Option<&str>) -> Response {
    let mut response = (status, Body::from(body)).into_response();
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/cbor"));
    h.insert("smithy-protocol", HeaderValue::from_static("rpc-v2-cbor"));
    if let Ok(id) = HeaderValue::from_str(request_id) {
        h.insert("x-amzn-requestid", id);
    }
    if let Some(q) = query_error.and_then(|q| HeaderValue::from_str(q).ok()) {
        h.insert("x-amzn-query-error", q);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gzip_bodies_are_decompressed() {
        use std::io::Write as _;
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        enc.write_all(b"hello").unwrap();
        let gz = enc.finish().unwrap();
        let mut headers = HeaderMap::new();
        assert_eq!(&*decompress(&headers, &gz).unwrap(), gz.as_slice());
        headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        assert_eq!(&*decompress(&headers, &gz).unwrap(), b"hello");
        assert_eq!(
            decompress(&headers, b"not gzip").unwrap_err().kind,
            ErrorKind::Serialization
        );
    }
}
