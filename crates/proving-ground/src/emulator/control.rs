//! The control API under `/_emulator/` (JSON; no SigV4): what tests and demos use to set
//! the stage and to check what a client did. AWS never serves this path.
//!
//! | method and path | body / query | answer |
//! |---|---|---|
//! | `GET /_emulator/health` | | `{"status": "ok", "virtualNow": ...}` |
//! | `GET /_emulator/clock` | | `{"virtualNow": ..., "periodMillis": ...}` |
//! | `POST /_emulator/clock/advance` | `{"seconds": 600}` (at most 31 days) | the clock after advancing |
//! | `POST /_emulator/scenarios?name=N` | a scenario, YAML or JSON | 201, `{"application": <ApplicationDetail>}` |
//! | `GET /_emulator/applications` | | `{"applications": [<ApplicationDetail>...]}` |
//! | `DELETE /_emulator/applications/{name}` | | 204 (the application is deleted under its clients; add it again with `POST /_emulator/scenarios`), or 404 |
//! | `GET /_emulator/applications/{name}/workload` | | the Flink backend's [`Workload`] |
//! | `PATCH /_emulator/applications/{name}/workload` | fields of a [`Workload`] (JSON) | 204; the Flink backend restarts the source from a savepoint with them (400 on the model backend) |
//! | `PUT /_emulator/quotas` | `{"kpusPerApplication": N}` | 204; updates above N KPUs get `LimitExceededException` (default 64; model backend) |
//! | `GET /_emulator/faults` | | `{"faults": [...]}` |
//! | `POST /_emulator/faults` | a [`FaultSpec`] (kinds: see [`FaultKind`](super::faults::FaultKind)) | 201, `{"id": N}` |
//! | `DELETE /_emulator/faults` | | 204, all cleared |
//! | `DELETE /_emulator/faults/{id}` | | 204, or 404 |
//! | `GET /_emulator/calls` | `?service=&operation=&application=&since=` | `{"calls": [<CallRecord>...]}` |
//! | `GET /_emulator/calls/summary` | same filters | `{"total", "errors", "metricQueries", "byOperation"}` |
//! | `DELETE /_emulator/calls` | | 204, log reset |
//!
//! Fault kinds (`"kind"`, plus `service`, `operation`, `application`, `count` to scope them):
//! `throttling`, `serverError` (`status`), `latency` (`millis`, before serving),
//! `responseLatency` (`millis`, after serving), `accessDenied`, `concurrentModification`,
//! `limitExceeded`, `stuckUpdating`, `resourceInUse` (`status`: `AUTOSCALING`, `STARTING`,
//! ...), `failOperation` (`message`), `closeConnection` (`served`), `missingOperationId`,
//! `metricGap` (`metrics`, `from`, `until`),
//! `metricDelay` (`seconds`, `metrics`), `metricNaN` (`metrics`, `from`, `until`).
//!
//! Errors: `{"error": "..."}` with 400 (bad input) or 404 (no such fault or application).

use std::time::Duration;

use axum::{
    Json, Router,
    body::Bytes,
    extract::{Path, Query, State},
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::{delete, get, post, put},
};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{EmulatorState, calllog::CallFilter, faults::FaultSpec, kinesis};
use crate::{flink::Workload, sim::Scenario};

/// The control routes, to be nested under `/_emulator`.
pub fn router() -> Router<EmulatorState> {
    Router::new()
        .route("/health", get(health))
        .route("/clock", get(clock))
        .route("/clock/advance", post(advance))
        .route("/scenarios", post(add_scenario))
        .route("/applications", get(applications))
        .route("/applications/{name}", delete(delete_application))
        .route(
            "/applications/{name}/workload",
            get(get_workload).patch(set_workload),
        )
        .route("/quotas", put(set_quotas))
        .route("/faults", get(list_faults).post(arm_fault).delete(clear_faults))
        .route("/faults/{id}", delete(clear_fault))
        .route("/calls", get(calls).delete(reset_calls))
        .route("/calls/summary", get(call_summary))
}

fn error(status: StatusCode, message: impl std::fmt::Display) -> Response {
    (status, Json(json!({ "error": message.to_string() }))).into_response()
}

fn clock_json(state: &EmulatorState) -> Value {
    json!({
        "virtualNow": state.virtual_now().to_string(),
        "periodMillis": state.clock().period().map(|p| p.as_millis() as u64),
    })
}

async fn health(State(state): State<EmulatorState>) -> Json<Value> {
    Json(json!({ "status": "ok", "virtualNow": state.virtual_now().to_string() }))
}

async fn clock(State(state): State<EmulatorState>) -> Json<Value> {
    Json(clock_json(&state))
}

/// The longest jump of the clock one `POST /clock/advance` may ask for.
const MAX_ADVANCE: Duration = Duration::from_secs(31 * 24 * 3600);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Advance {
    seconds: f64,
}

async fn advance(State(state): State<EmulatorState>, body: Bytes) -> Response {
    let advance: Advance = match serde_json::from_slice(&body) {
        Ok(a) => a,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("expected {{\"seconds\": N}}: {e}"),
            );
        }
    };
    match Duration::try_from_secs_f64(advance.seconds) {
        // NB: the model steps every period up to the new now on the next request, so one
        // call may not ask for years of them (found by the property tests: a jump of 1e9 s
        // held the emulator for hours).
        Ok(by) if by > MAX_ADVANCE => error(
            StatusCode::BAD_REQUEST,
            format!(
                "seconds must be at most {} (31 days) per call",
                MAX_ADVANCE.as_secs()
            ),
        ),
        Ok(by) => {
            state.advance(by);
            Json(clock_json(&state)).into_response()
        }
        Err(_) => error(
            StatusCode::BAD_REQUEST,
            "seconds must be a finite, non-negative number",
        ),
    }
}

#[derive(Deserialize)]
struct ScenarioQuery {
    name: Option<String>,
}

async fn add_scenario(
    State(state): State<EmulatorState>,
    Query(q): Query<ScenarioQuery>,
    body: Bytes,
) -> Response {
    let text = match std::str::from_utf8(&body) {
        Ok(t) => t,
        Err(_) => return error(StatusCode::BAD_REQUEST, "the scenario must be UTF-8 YAML or JSON"),
    };
    // JSON is YAML, so one parser takes both.
    let scenario = match Scenario::from_yaml(text, "<request body>") {
        Ok(s) => s,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    match state.add_scenario(&scenario, q.name.as_deref()) {
        Ok(view) => (
            StatusCode::CREATED,
            Json(json!({ "application": kinesis::application_detail(&view) })),
        )
            .into_response(),
        Err(e) => {
            let e = kinesis::service_error(e);
            error(
                StatusCode::BAD_REQUEST,
                format!("{}: {}", e.json_wire().error_type, e.message),
            )
        }
    }
}

async fn applications(State(state): State<EmulatorState>) -> Json<Value> {
    let apps: Vec<Value> = state.with_fleet(|f| {
        f.list_applications()
            .iter()
            .map(kinesis::application_detail)
            .collect()
    });
    Json(json!({ "applications": apps }))
}

async fn delete_application(State(state): State<EmulatorState>, Path(name): Path<String>) -> Response {
    match state.delete_application(&name) {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e @ crate::sim::ServiceError::ResourceNotFound(_)) => error(StatusCode::NOT_FOUND, e),
        Err(e) => error(StatusCode::BAD_REQUEST, e),
    }
}

const NOT_FLINK: &str = "workloads are data of the Flink backend (emulator --backend flink); the model's load comes from its scenario";

async fn get_workload(State(state): State<EmulatorState>, Path(name): Path<String>) -> Response {
    match state.with_fleet(|f| f.as_flink().map(|flink| flink.workload(&name))) {
        None => error(StatusCode::BAD_REQUEST, NOT_FLINK),
        Some(Ok(w)) => Json(json!(w)).into_response(),
        Some(Err(e)) => error(StatusCode::NOT_FOUND, e),
    }
}

async fn set_workload(State(state): State<EmulatorState>, Path(name): Path<String>, body: Bytes) -> Response {
    let changes: serde_json::Map<String, Value> = match serde_json::from_slice(&body) {
        Ok(c) => c,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("not a JSON object: {e}")),
    };
    let result = state.with_fleet(|f| {
        f.as_flink().map(|flink| {
            // The fields given replace the current ones.
            let mut current = match serde_json::to_value(flink.workload(&name)?) {
                Ok(Value::Object(m)) => m,
                _ => serde_json::Map::new(),
            };
            current.extend(changes);
            let workload: Workload = serde_json::from_value(Value::Object(current))
                .map_err(|e| crate::sim::ServiceError::InvalidArgument(format!("not a workload: {e}")))?;
            flink.set_workload(&name, workload)
        })
    });
    match result {
        None => error(StatusCode::BAD_REQUEST, NOT_FLINK),
        Some(Ok(())) => StatusCode::NO_CONTENT.into_response(),
        Some(Err(e @ crate::sim::ServiceError::ResourceNotFound(_))) => error(StatusCode::NOT_FOUND, e),
        Some(Err(e)) => error(StatusCode::BAD_REQUEST, e),
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Quotas {
    kpus_per_application: u32,
}

async fn set_quotas(State(state): State<EmulatorState>, body: Bytes) -> Response {
    let quotas: Quotas = match serde_json::from_slice(&body) {
        Ok(q) => q,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("expected {{\"kpusPerApplication\": N}}: {e}"),
            );
        }
    };
    if quotas.kpus_per_application == 0 {
        return error(StatusCode::BAD_REQUEST, "kpusPerApplication must be at least 1");
    }
    match state.set_kpu_quota(quotas.kpus_per_application) {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => error(StatusCode::BAD_REQUEST, e),
    }
}

async fn list_faults(State(state): State<EmulatorState>) -> Json<Value> {
    Json(json!({ "faults": state.faults() }))
}

async fn arm_fault(State(state): State<EmulatorState>, body: Bytes) -> Response {
    let spec: FaultSpec = match serde_json::from_slice(&body) {
        Ok(s) => s,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("not a fault: {e}")),
    };
    match state.arm_fault(spec) {
        Ok(id) => (StatusCode::CREATED, Json(json!({ "id": id }))).into_response(),
        Err(e) => error(StatusCode::BAD_REQUEST, e),
    }
}

async fn clear_faults(State(state): State<EmulatorState>) -> StatusCode {
    state.clear_faults();
    StatusCode::NO_CONTENT
}

async fn clear_fault(State(state): State<EmulatorState>, Path(id): Path<u64>) -> Response {
    if state.clear_fault(id) {
        StatusCode::NO_CONTENT.into_response()
    } else {
        error(StatusCode::NOT_FOUND, format!("no fault with id {id}"))
    }
}

async fn calls(State(state): State<EmulatorState>, Query(filter): Query<CallFilter>) -> Json<Value> {
    Json(json!({ "calls": state.calls(&filter) }))
}

async fn call_summary(State(state): State<EmulatorState>, Query(filter): Query<CallFilter>) -> Json<Value> {
    Json(json!(state.call_summary(&filter)))
}

async fn reset_calls(State(state): State<EmulatorState>) -> StatusCode {
    state.reset_calls();
    StatusCode::NO_CONTENT
}
