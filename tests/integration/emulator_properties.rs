//! Property tests of the emulator's request decoding, through the axum router in-process
//! (`tower::ServiceExt::oneshot`, no socket): arbitrary bodies, arbitrary bytes and
//! structurally mutated valid bodies for every kinesisanalyticsv2 operation (awsJson1_1),
//! every CloudWatch operation in both protocols (rpc-v2-cbor, awsJson1_0), and the control
//! API. Every answer must be a well-formed AWS error or success — never a panic, never a
//! 5xx for the client's garbage.
//!
//! Bounded for CI: 256 cases per property unless `PROPTEST_CASES` says otherwise.
//! Failing inputs found so far are kept as regression cases in
//! `tests/integration/emulator_properties.proptest-regressions` and as the explicit tests at the end.

use std::sync::OnceLock;

use axum::{
    Router,
    body::Body,
    http::{Method, Request, Response, StatusCode},
};
use http_body_util::BodyExt as _;
use jiff::Timestamp;
use proptest::{prelude::*, test_runner::TestRunner};
use serde_json::{Value, json};
use tower::ServiceExt as _;

use checkpoint_autoscaler::emulator::{Clock, EmulatorState, router};
use checkpoint_autoscaler::sim::{Fleet, Scenario};
use checkpoint_autoscaler_testkit::strategies::{Mutation, cases, json_value, mutate, mutations};

/// The application every state starts with (so valid requests reach the model).
const APP: &str = "orders";

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    })
}

/// An emulator state over the model with one running application, at a frozen clock.
fn state() -> EmulatorState {
    let start = Timestamp::from_second(1_767_571_200).unwrap();
    let mut fleet = Fleet::new(7, start);
    let scenario_path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/scenarios/step-up.yaml");
    let scenario = Scenario::load(&scenario_path).unwrap();
    checkpoint_autoscaler::emulator::Backend::add_scenario(&mut fleet, &scenario, Some(APP)).unwrap();
    EmulatorState::new(Box::new(fleet), Clock::new(start, None))
}

/// A response, read whole.
struct Answer {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    body: Vec<u8>,
}

fn send(app: &Router, request: Request<Body>) -> Answer {
    runtime().block_on(async {
        let response: Response<Body> = app.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.into_body().collect().await.unwrap().to_bytes().to_vec();
        Answer {
            status,
            headers,
            body,
        }
    })
}

fn signed(builder: axum::http::request::Builder, service: &str) -> axum::http::request::Builder {
    builder.header("x-amz-date", "20260105T000000Z").header(
        "authorization",
        format!(
            "AWS4-HMAC-SHA256 Credential=AKIDFUZZ/20260105/eu-west-1/{service}/aws4_request, \
             SignedHeaders=host;x-amz-date, Signature=00"
        ),
    )
}

fn kinesis_request(operation: &str, body: Vec<u8>) -> Request<Body> {
    signed(
        Request::builder().method(Method::POST).uri("/"),
        "kinesisanalytics",
    )
    .header("x-amz-target", format!("KinesisAnalytics_20180523.{operation}"))
    .header("content-type", "application/x-amz-json-1.1")
    .body(Body::from(body))
    .unwrap()
}

fn cloudwatch_cbor_request(operation: &str, body: Vec<u8>) -> Request<Body> {
    signed(
        Request::builder().method(Method::POST).uri(format!(
            "/service/GraniteServiceVersion20100801/operation/{operation}"
        )),
        "monitoring",
    )
    .header("smithy-protocol", "rpc-v2-cbor")
    .header("content-type", "application/cbor")
    .header("accept", "application/cbor")
    .body(Body::from(body))
    .unwrap()
}

fn cloudwatch_json_request(operation: &str, body: Vec<u8>) -> Request<Body> {
    signed(Request::builder().method(Method::POST).uri("/"), "monitoring")
        .header(
            "x-amz-target",
            format!("GraniteServiceVersion20100801.{operation}"),
        )
        .header("content-type", "application/x-amz-json-1.0")
        .body(Body::from(body))
        .unwrap()
}

/// A client error or a success, never a server error; an error names its type.
fn check_json_answer(what: &str, answer: &Answer) -> Result<(), TestCaseError> {
    prop_assert!(
        answer.status.is_success() || answer.status.is_client_error(),
        "{what}: status {} body {}",
        answer.status,
        String::from_utf8_lossy(&answer.body)
    );
    prop_assert!(
        answer.headers.contains_key("x-amzn-requestid"),
        "{what}: no request id"
    );
    let body: Value = serde_json::from_slice(&answer.body)
        .map_err(|e| TestCaseError::fail(format!("{what}: body is not JSON ({e})")))?;
    prop_assert!(body.is_object(), "{what}: {body}");
    if !answer.status.is_success() {
        prop_assert!(
            body["__type"].as_str().is_some_and(|t| !t.is_empty()),
            "{what}: {body}"
        );
        prop_assert!(body["message"].is_string(), "{what}: {body}");
    }
    Ok(())
}

fn check_cbor_answer(what: &str, answer: &Answer) -> Result<(), TestCaseError> {
    prop_assert!(
        answer.status.is_success() || answer.status.is_client_error(),
        "{what}: status {}",
        answer.status
    );
    prop_assert_eq!(
        answer
            .headers
            .get("smithy-protocol")
            .and_then(|v| v.to_str().ok()),
        Some("rpc-v2-cbor"),
        "{}",
        what
    );
    let body: ciborium::Value = ciborium::de::from_reader(answer.body.as_slice())
        .map_err(|e| TestCaseError::fail(format!("{what}: body is not CBOR ({e})")))?;
    let map = body
        .as_map()
        .ok_or_else(|| TestCaseError::fail(format!("{what}: body is not a map")))?;
    if !answer.status.is_success() {
        let type_ = map.iter().find_map(|(k, v)| match (k, v) {
            (ciborium::Value::Text(k), ciborium::Value::Text(v)) if k == "__type" => Some(v.clone()),
            _ => None,
        });
        prop_assert!(type_.is_some_and(|t| !t.is_empty()), "{what}: no __type");
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Inputs.

/// Valid kinesisanalyticsv2 requests, one or more per operation.
fn kinesis_examples() -> Vec<(&'static str, Value)> {
    let arn = format!("arn:aws:kinesisanalytics:us-east-1:123456789012:application/{APP}");
    vec![
        ("ListApplications", json!({"Limit": 10})),
        ("DescribeApplication", json!({"ApplicationName": APP})),
        (
            "UpdateApplication",
            json!({"ApplicationName": APP, "CurrentApplicationVersionId": 1,
                "ApplicationConfigurationUpdate": {"FlinkApplicationConfigurationUpdate": {"ParallelismConfigurationUpdate":
                    {"ConfigurationTypeUpdate": "CUSTOM", "ParallelismUpdate": 8, "ParallelismPerKPUUpdate": 2, "AutoScalingEnabledUpdate": false}}},
                "RunConfigurationUpdate": {"ApplicationRestoreConfiguration": {"ApplicationRestoreType": "RESTORE_FROM_LATEST_SNAPSHOT"}}}),
        ),
        (
            "DescribeApplicationOperation",
            json!({"ApplicationName": APP, "OperationId": "op-1"}),
        ),
        (
            "ListApplicationOperations",
            json!({"ApplicationName": APP, "Limit": 5, "Operation": "UpdateApplication", "OperationStatus": "SUCCESSFUL"}),
        ),
        (
            "ListApplicationSnapshots",
            json!({"ApplicationName": APP, "Limit": 10}),
        ),
        (
            "RollbackApplication",
            json!({"ApplicationName": APP, "CurrentApplicationVersionId": 1}),
        ),
        (
            "CreateApplication",
            json!({"ApplicationName": "fuzzed", "RuntimeEnvironment": "FLINK-1_20",
                "ServiceExecutionRole": "arn:aws:iam::123456789012:role/flink",
                "ApplicationMode": "STREAMING",
                "ApplicationConfiguration": {"FlinkApplicationConfiguration": {"ParallelismConfiguration":
                    {"ConfigurationType": "CUSTOM", "Parallelism": 4, "ParallelismPerKPU": 1, "AutoScalingEnabled": false}},
                    "ApplicationSnapshotConfiguration": {"SnapshotsEnabled": true}},
                "Tags": [{"Key": "team", "Value": "streaming"}]}),
        ),
        (
            "StartApplication",
            json!({"ApplicationName": APP, "RunConfiguration": {"ApplicationRestoreConfiguration": {"ApplicationRestoreType": "RESTORE_FROM_LATEST_SNAPSHOT"}}}),
        ),
        ("StopApplication", json!({"ApplicationName": APP, "Force": true})),
        (
            "TagResource",
            json!({"ResourceARN": arn, "Tags": [{"Key": "k", "Value": "v"}]}),
        ),
        ("UntagResource", json!({"ResourceARN": arn, "TagKeys": ["k"]})),
        ("ListTagsForResource", json!({"ResourceARN": arn})),
    ]
}

/// Valid CloudWatch requests (timestamps as epoch seconds; the CBOR form tags them).
fn cloudwatch_examples() -> Vec<(&'static str, Value)> {
    let start = 1_767_571_200_i64 - 3600;
    let end = 1_767_571_200_i64;
    let metric = json!({"Namespace": "AWS/KinesisAnalytics", "MetricName": "lastCheckpointDuration",
        "Dimensions": [{"Name": "Application", "Value": APP}]});
    vec![
        (
            "GetMetricData",
            json!({"MetricDataQueries": [
                    {"Id": "q0", "MetricStat": {"Metric": metric, "Period": 60, "Stat": "Maximum"}, "ReturnData": true},
                    {"Id": "q1", "MetricStat": {"Metric": metric, "Period": 300, "Stat": "p99"}}],
                "StartTime": start, "EndTime": end, "ScanBy": "TimestampAscending", "MaxDatapoints": 1000}),
        ),
        (
            "GetMetricStatistics",
            json!({"Namespace": "AWS/KinesisAnalytics", "MetricName": "cpuUtilization",
                "Dimensions": [{"Name": "Application", "Value": APP}],
                "StartTime": start, "EndTime": end, "Period": 60,
                "Statistics": ["Average", "Maximum"]}),
        ),
        (
            "GetMetricStatistics",
            json!({"Namespace": "AWS/KinesisAnalytics", "MetricName": "lastCheckpointSize",
                "Dimensions": [{"Name": "Application", "Value": APP}],
                "StartTime": start, "EndTime": end, "Period": 300, "ExtendedStatistics": ["p90", "p99.9"]}),
        ),
        (
            "ListMetrics",
            json!({"Namespace": "AWS/KinesisAnalytics", "MetricName": "KPUs",
                "Dimensions": [{"Name": "Application", "Value": APP}]}),
        ),
        (
            "PutMetricData",
            json!({"Namespace": "Custom/Fuzz", "MetricData": [
                {"MetricName": "m", "Dimensions": [{"Name": "Application", "Value": APP}],
                 "Timestamp": end, "Value": 1.5, "Unit": "Count"},
                {"MetricName": "n", "Values": [1.0, 2.0], "Counts": [1.0, 3.0]},
                {"MetricName": "o", "StatisticValues": {"SampleCount": 2.0, "Sum": 3.0, "Minimum": 1.0, "Maximum": 2.0}}]}),
        ),
    ]
}

/// JSON as the SDK's CBOR: objects as maps, members named `StartTime`, `EndTime` or
/// `Timestamp` as tag-1 epoch seconds (when numeric), everything else as is.
fn to_cbor(value: &Value, member: Option<&str>) -> ciborium::Value {
    use ciborium::Value as C;
    match value {
        Value::Number(n) if matches!(member, Some("StartTime" | "EndTime" | "Timestamp")) => {
            C::Tag(1, Box::new(to_cbor(&Value::Number(n.clone()), None)))
        }
        Value::Null => C::Null,
        Value::Bool(b) => C::Bool(*b),
        Value::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => C::Integer(i.into()),
            (_, Some(u), _) => C::Integer(u.into()),
            (_, _, Some(f)) => C::Float(f),
            _ => C::Null,
        },
        Value::String(s) => C::Text(s.clone()),
        Value::Array(items) => C::Array(items.iter().map(|v| to_cbor(v, None)).collect()),
        Value::Object(map) => C::Map(
            map.iter()
                .map(|(k, v)| (C::Text(k.clone()), to_cbor(v, Some(k))))
                .collect(),
        ),
    }
}

fn cbor_bytes(value: &ciborium::Value) -> Vec<u8> {
    let mut out = Vec::new();
    ciborium::ser::into_writer(value, &mut out).unwrap();
    out
}

/// A body: the example mutated, an arbitrary document, or arbitrary bytes.
#[derive(Clone, Debug)]
enum Body_ {
    Mutated(usize, Vec<Mutation>),
    Arbitrary(Value),
    Bytes(Vec<u8>),
}

fn bodies() -> impl Strategy<Value = Body_> {
    prop_oneof![
        6 => (any::<usize>(), mutations()).prop_map(|(i, m)| Body_::Mutated(i, m)),
        2 => json_value().prop_map(Body_::Arbitrary),
        1 => proptest::collection::vec(any::<u8>(), 0..256).prop_map(Body_::Bytes),
    ]
}

fn run(strategy: impl Strategy<Value = Body_>, test: impl Fn(Body_) -> Result<(), TestCaseError>) {
    let mut runner = TestRunner::new(ProptestConfig {
        cases: cases(),
        failure_persistence: None,
        ..ProptestConfig::default()
    });
    if let Err(e) = runner.run(&strategy, test) {
        panic!("{e}");
    }
}

// ---------------------------------------------------------------------------------------
// Properties.

#[test]
fn kinesis_requests_always_get_a_well_formed_answer() {
    let app = router(state());
    let examples = kinesis_examples();
    // Every example is itself accepted or refused as the service would, not crashed on.
    for (operation, body) in &examples {
        let answer = send(&app, kinesis_request(operation, body.to_string().into_bytes()));
        check_json_answer(operation, &answer).unwrap();
        // Past the signature check and the decoding: answered by the model.
        let body: Value = serde_json::from_slice(&answer.body).unwrap();
        let type_ = body["__type"].as_str().unwrap_or_default();
        assert!(
            answer.status.is_success()
                || [
                    "ResourceNotFoundException",
                    "ConcurrentModificationException",
                    "ResourceInUseException"
                ]
                .contains(&type_),
            "{operation}: {body}"
        );
    }
    run(bodies(), |body| {
        let (operation, bytes) = match body {
            Body_::Mutated(i, m) => {
                let (op, example) = &examples[i % examples.len()];
                (*op, mutate(example.clone(), &m).to_string().into_bytes())
            }
            Body_::Arbitrary(v) => ("UpdateApplication", v.to_string().into_bytes()),
            Body_::Bytes(b) => ("CreateApplication", b),
        };
        let answer = send(&app, kinesis_request(operation, bytes));
        check_json_answer(operation, &answer)
    });
}

#[test]
fn arbitrary_documents_for_every_kinesis_operation() {
    let app = router(state());
    let examples = kinesis_examples();
    let strategy = (0..examples.len(), json_value());
    let mut runner = TestRunner::new(ProptestConfig {
        cases: cases(),
        failure_persistence: None,
        ..ProptestConfig::default()
    });
    runner
        .run(&strategy, |(i, value)| {
            let operation = examples[i].0;
            let answer = send(&app, kinesis_request(operation, value.to_string().into_bytes()));
            check_json_answer(operation, &answer)
        })
        .unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn cloudwatch_cbor_requests_always_get_a_well_formed_answer() {
    let app = router(state());
    let examples = cloudwatch_examples();
    for (operation, body) in &examples {
        let answer = send(
            &app,
            cloudwatch_cbor_request(operation, cbor_bytes(&to_cbor(body, None))),
        );
        assert!(
            answer.status.is_success(),
            "{operation}: {} {:?}",
            answer.status,
            String::from_utf8_lossy(&answer.body)
        );
        check_cbor_answer(operation, &answer).unwrap();
    }
    run(bodies(), |body| {
        let (operation, bytes) = match body {
            Body_::Mutated(i, m) => {
                let (op, example) = &examples[i % examples.len()];
                (*op, cbor_bytes(&to_cbor(&mutate(example.clone(), &m), None)))
            }
            Body_::Arbitrary(v) => ("GetMetricData", cbor_bytes(&to_cbor(&v, None))),
            Body_::Bytes(b) => ("PutMetricData", b),
        };
        let answer = send(&app, cloudwatch_cbor_request(operation, bytes));
        check_cbor_answer(operation, &answer)
    });
}

#[test]
fn cloudwatch_json_requests_always_get_a_well_formed_answer() {
    let app = router(state());
    let examples = cloudwatch_examples();
    for (operation, body) in &examples {
        let answer = send(
            &app,
            cloudwatch_json_request(operation, body.to_string().into_bytes()),
        );
        assert!(
            answer.status.is_success(),
            "{operation}: {} {:?}",
            answer.status,
            String::from_utf8_lossy(&answer.body)
        );
        check_json_answer(operation, &answer).unwrap();
    }
    run(bodies(), |body| {
        let (operation, bytes) = match body {
            Body_::Mutated(i, m) => {
                let (op, example) = &examples[i % examples.len()];
                (*op, mutate(example.clone(), &m).to_string().into_bytes())
            }
            Body_::Arbitrary(v) => ("GetMetricStatistics", v.to_string().into_bytes()),
            Body_::Bytes(b) => ("ListMetrics", b),
        };
        let answer = send(&app, cloudwatch_json_request(operation, bytes));
        check_json_answer(operation, &answer)
    });
}

/// The control API under `/_emulator/`: JSON errors with a 4xx for any garbage. Whatever
/// it accepted (a fault, a scenario, a clock jump), the next AWS request is still answered
/// in form — with the armed fault's status, if one was armed.
#[test]
fn control_requests_always_get_a_well_formed_answer() {
    let scenario: Value = serde_yaml::from_str(
        &std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/scenarios/step-up.yaml"),
        )
        .unwrap(),
    )
    .unwrap();
    let examples: Vec<(Method, String, Value)> = vec![
        (
            Method::POST,
            "/_emulator/clock/advance".into(),
            json!({"seconds": 60}),
        ),
        (
            Method::POST,
            "/_emulator/faults".into(),
            json!({"kind": "serverError", "status": 503, "operation": "DescribeApplication", "count": 1}),
        ),
        (
            Method::PATCH,
            format!("/_emulator/applications/{APP}/workload"),
            json!({"load": 2.0}),
        ),
        (Method::POST, "/_emulator/scenarios?name=fuzzed".into(), scenario),
    ];
    let strategy = (0..examples.len(), bodies());
    let mut runner = TestRunner::new(ProptestConfig {
        cases: cases(),
        failure_persistence: None,
        ..ProptestConfig::default()
    });
    runner
        .run(&strategy, |(i, body)| {
            let app = router(state());
            let (method, uri, example) = &examples[i];
            let bytes = match body {
                Body_::Mutated(_, m) => mutate(example.clone(), &m).to_string().into_bytes(),
                Body_::Arbitrary(v) => v.to_string().into_bytes(),
                Body_::Bytes(b) => b,
            };
            let body_text = bytes.clone();
            let request = Request::builder()
                .method(method.clone())
                .uri(uri.as_str())
                .header("content-type", "application/json")
                .body(Body::from(bytes))
                .unwrap();
            let answer = send(&app, request);
            prop_assert!(
                answer.status.is_success() || answer.status.is_client_error(),
                "{uri}: status {} {}",
                answer.status,
                String::from_utf8_lossy(&answer.body)
            );
            if !answer.status.is_success() {
                let body: Value = serde_json::from_slice(&answer.body)
                    .map_err(|e| TestCaseError::fail(format!("{uri}: error body is not JSON ({e})")))?;
                prop_assert!(body["error"].is_string(), "{uri}: {body}");
            }
            if String::from_utf8_lossy(&body_text).contains("latency") {
                // A latency fault delays the next request by design.
                return Ok(());
            }
            let describe = json!({"ApplicationName": APP}).to_string().into_bytes();
            let after = send(&app, kinesis_request("DescribeApplication", describe));
            if after.status.is_server_error() {
                // Only an armed fault answers 5xx; it still answers in form.
                prop_assert!(uri.ends_with("/faults"), "{uri}: then {}", after.status);
                let body: Value = serde_json::from_slice(&after.body)
                    .map_err(|e| TestCaseError::fail(format!("{uri}: fault body is not JSON ({e})")))?;
                prop_assert!(body["__type"].is_string(), "{body}");
                Ok(())
            } else if uri.ends_with("/faults") && answer.status.is_success() {
                // A throttling or access fault answers 4xx in form; latency is bounded by
                // what the test armed.
                check_json_answer("DescribeApplication after a fault", &after)
            } else {
                check_json_answer("DescribeApplication", &after)
            }
        })
        .unwrap_or_else(|e| panic!("{e}"));
}

// ---------------------------------------------------------------------------------------
// Regressions: inputs the properties above found.

/// `{"seconds": 1e9}` was accepted, and the next request stepped the model through 16
/// million periods.
#[test]
fn a_clock_jump_of_years_is_refused() {
    let app = router(state());
    for seconds in [json!(1e9), json!(31 * 24 * 3600 + 1), json!(1e308)] {
        let request = Request::builder()
            .method(Method::POST)
            .uri("/_emulator/clock/advance")
            .body(Body::from(json!({ "seconds": seconds }).to_string()))
            .unwrap();
        let answer = send(&app, request);
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{seconds}");
    }
    let request = Request::builder()
        .method(Method::POST)
        .uri("/_emulator/clock/advance")
        .body(Body::from(json!({"seconds": 31 * 24 * 3600}).to_string()))
        .unwrap();
    assert_eq!(send(&app, request).status, StatusCode::OK);
}
