//! The AWS side through the real SDK clients over HTTP on loopback: a small scripted stub
//! for the wire details (STS AssumeRole, request bodies, error codes, retries).

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use aws_config::{BehaviorVersion, Region};
use aws_credential_types::Credentials;
use axum::{
    Router,
    body::Bytes,
    extract::State,
    http::{HeaderMap, StatusCode},
    response::IntoResponse,
    routing::post,
};
use checkpoint_autoscaler::{
    aws::{
        ApplicationControl, AwsClients, AwsOperation, AwsSettings, KinesisControl, OperationState, Target,
        UpdateRequest,
    },
    policy::{AppConfig, AppStatus},
};
use serde_json::{Value, json};

/// One request the stub received.
#[derive(Clone, Debug)]
struct Seen {
    /// `X-Amz-Target`, or the STS `Action`.
    operation: String,
    /// The access key id the request was signed with.
    access_key: String,
    /// `X-Amz-Security-Token`.
    session_token: Option<String>,
    body: String,
}

/// What the stub answers to kinesisanalyticsv2 calls: `None` for success, or
/// `(status, __type)` for an error.
#[derive(Default)]
struct Stub {
    seen: Mutex<Vec<Seen>>,
    fail_with: Mutex<Option<(u16, String)>>,
}

const ROLE: &str = "arn:aws:iam::111122223333:role/flink-scaler";

fn detail(name: &str, version: i64) -> Value {
    json!({
        "ApplicationARN": format!("arn:aws:kinesisanalytics:eu-west-1:123456789012:application/{name}"),
        "ApplicationName": name,
        "RuntimeEnvironment": "FLINK-1_20",
        "ApplicationStatus": "RUNNING",
        "ApplicationVersionId": version,
        "ConditionalToken": "token-1",
        "ApplicationConfigurationDescription": {
            "FlinkApplicationConfigurationDescription": {
                "ParallelismConfigurationDescription": {
                    "ConfigurationType": "CUSTOM",
                    "Parallelism": 4,
                    "ParallelismPerKPU": 2,
                    "CurrentParallelism": 6,
                    "AutoScalingEnabled": false
                }
            }
        }
    })
}

async fn handle(State(stub): State<Arc<Stub>>, headers: HeaderMap, body: Bytes) -> impl IntoResponse {
    let body = String::from_utf8_lossy(&body).to_string();
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let auth = header("authorization").unwrap_or_default();
    let access_key = auth
        .split("Credential=")
        .nth(1)
        .and_then(|c| c.split('/').next())
        .unwrap_or_default()
        .to_string();
    let operation = match header("x-amz-target") {
        Some(target) => target,
        None if body.contains("Action=AssumeRole") => "AssumeRole".to_string(),
        None => "unknown".to_string(),
    };
    stub.seen.lock().unwrap().push(Seen {
        operation: operation.clone(),
        access_key,
        session_token: header("x-amz-security-token"),
        body: body.clone(),
    });
    if operation == "AssumeRole" {
        let xml = r#"<AssumeRoleResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
  <AssumeRoleResult>
    <AssumedRoleUser>
      <AssumedRoleId>AROAEXAMPLE:checkpoint-autoscaler</AssumedRoleId>
      <Arn>arn:aws:sts::111122223333:assumed-role/flink-scaler/checkpoint-autoscaler</Arn>
    </AssumedRoleUser>
    <Credentials>
      <AccessKeyId>ASIAASSUMED</AccessKeyId>
      <SecretAccessKey>assumed-secret</SecretAccessKey>
      <SessionToken>assumed-session-token</SessionToken>
      <Expiration>2099-01-01T00:00:00Z</Expiration>
    </Credentials>
  </AssumeRoleResult>
  <ResponseMetadata><RequestId>req-1</RequestId></ResponseMetadata>
</AssumeRoleResponse>"#;
        return (StatusCode::OK, [("content-type", "text/xml")], xml.to_string());
    }
    if let Some((status, code)) = stub.fail_with.lock().unwrap().clone() {
        let body = json!({"__type": code, "message": format!("scripted {code}")}).to_string();
        return (
            StatusCode::from_u16(status).unwrap(),
            [("content-type", "application/x-amz-json-1.1")],
            body,
        );
    }
    let request: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    let name = request["ApplicationName"]
        .as_str()
        .unwrap_or("unknown")
        .to_string();
    let reply = match operation.as_str() {
        "KinesisAnalytics_20180523.DescribeApplication" => json!({"ApplicationDetail": detail(&name, 3)}),
        "KinesisAnalytics_20180523.UpdateApplication" => {
            json!({"ApplicationDetail": detail(&name, 4), "OperationId": "op-42"})
        }
        "KinesisAnalytics_20180523.DescribeApplicationOperation" => json!({
            "ApplicationOperationInfoDetails": {
                "Operation": "UpdateApplication",
                "StartTime": 1_700_000_000.0,
                "EndTime": 1_700_000_660.0,
                "OperationStatus": "FAILED",
                "OperationFailureDetails": {
                    "RollbackOperationId": "op-43",
                    "ErrorInfo": {"ErrorString": "Snapshot restore failed"}
                }
            }
        }),
        "KinesisAnalytics_20180523.ListTagsForResource" => json!({
            "Tags": [{"Key": "team", "Value": "payments"}, {"Key": "autoscale"}]
        }),
        _ => json!({}),
    };
    (
        StatusCode::OK,
        [("content-type", "application/x-amz-json-1.1")],
        reply.to_string(),
    )
}

/// Serves the stub on 127.0.0.1:0; the server stops when the test's runtime ends.
async fn serve(stub: Arc<Stub>) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = Router::new().route("/", post(handle)).with_state(stub);
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

async fn clients(addr: SocketAddr, max_attempts: u32) -> Arc<AwsClients> {
    let base = aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new("eu-west-1"))
        .credentials_provider(Credentials::new("AKIDBASE", "base-secret", None, None, "test"))
        .load()
        .await;
    Arc::new(AwsClients::from_sdk_config(
        base,
        AwsSettings {
            endpoint_url: Some(format!("http://{addr}")),
            max_attempts,
            initial_backoff: Duration::from_millis(1),
            ..AwsSettings::default()
        },
    ))
}

fn seen(stub: &Stub, operation: &str) -> Vec<Seen> {
    stub.seen
        .lock()
        .unwrap()
        .iter()
        .filter(|s| s.operation.ends_with(operation))
        .cloned()
        .collect()
}

#[tokio::test]
async fn describe_maps_the_sdk_answer() {
    let stub = Arc::new(Stub::default());
    let clients = clients(serve(stub.clone()).await, 1).await;
    let control = KinesisControl::new(clients.clone());
    let d = control
        .describe(&Target::new("eu-west-1"), "orders")
        .await
        .unwrap();
    assert_eq!(d.name, "orders");
    assert_eq!(d.status, AppStatus::Running);
    assert_eq!(d.version_id, 3);
    assert_eq!(d.config, AppConfig::new(6, 2), "running = CurrentParallelism");
    assert_eq!(d.configured_parallelism, 4);
    assert_eq!(d.configuration_type, "CUSTOM");
    assert!(!d.service_autoscaling);
    assert_eq!(d.conditional_token.as_deref(), Some("token-1"));
    let describes = seen(&stub, "DescribeApplication");
    assert_eq!(describes.len(), 1);
    assert_eq!(describes[0].access_key, "AKIDBASE");
    assert_eq!(
        clients
            .stats()
            .snapshot()
            .calls_of(AwsOperation::DescribeApplication),
        1
    );
}

#[tokio::test]
async fn a_role_is_assumed_through_sts_once_and_signs_the_calls() {
    let stub = Arc::new(Stub::default());
    let clients = clients(serve(stub.clone()).await, 1).await;
    let control = KinesisControl::new(clients.clone());
    let target = clients.target(Some("eu-west-1"), Some(ROLE));
    control.describe(&target, "orders").await.unwrap();
    control.describe(&target, "orders").await.unwrap();
    control
        .describe(&Target::new("eu-west-1"), "orders")
        .await
        .unwrap();

    let assumes = seen(&stub, "AssumeRole");
    assert_eq!(assumes.len(), 1, "credentials are cached per target");
    assert!(
        assumes[0]
            .body
            .contains("RoleArn=arn%3Aaws%3Aiam%3A%3A111122223333%3Arole%2Fflink-scaler")
    );
    assert!(assumes[0].body.contains("RoleSessionName=checkpoint-autoscaler"));
    assert_eq!(
        assumes[0].access_key, "AKIDBASE",
        "STS is called with the base credentials"
    );

    let describes = seen(&stub, "DescribeApplication");
    assert_eq!(describes.len(), 3);
    for d in &describes[..2] {
        assert_eq!(d.access_key, "ASIAASSUMED");
        assert_eq!(d.session_token.as_deref(), Some("assumed-session-token"));
    }
    assert_eq!(describes[2].access_key, "AKIDBASE");
    assert_eq!(describes[2].session_token, None);
}

#[tokio::test]
async fn update_sends_version_custom_parallelism_and_snapshot_restore() {
    let stub = Arc::new(Stub::default());
    let clients = clients(serve(stub.clone()).await, 1).await;
    let control = KinesisControl::new(clients);
    let op = control
        .update(
            &Target::new("eu-west-1"),
            &UpdateRequest {
                name: "orders".into(),
                current_version_id: 3,
                to: AppConfig::new(12, 3),
                service_autoscaling: false,
            },
        )
        .await
        .unwrap();
    assert_eq!(op, "op-42");
    let updates = seen(&stub, "UpdateApplication");
    assert_eq!(updates.len(), 1);
    let body: Value = serde_json::from_str(&updates[0].body).unwrap();
    assert_eq!(body["ApplicationName"], "orders");
    assert_eq!(body["CurrentApplicationVersionId"], 3);
    let p = &body["ApplicationConfigurationUpdate"]["FlinkApplicationConfigurationUpdate"]["ParallelismConfigurationUpdate"];
    assert_eq!(p["ConfigurationTypeUpdate"], "CUSTOM");
    assert_eq!(p["ParallelismUpdate"], 12);
    assert_eq!(p["ParallelismPerKPUUpdate"], 3);
    assert_eq!(p["AutoScalingEnabledUpdate"], false);
    assert_eq!(
        body["RunConfigurationUpdate"]["ApplicationRestoreConfiguration"]["ApplicationRestoreType"],
        "RESTORE_FROM_LATEST_SNAPSHOT"
    );
}

#[tokio::test]
async fn operations_and_tags_are_read() {
    let stub = Arc::new(Stub::default());
    let clients = clients(serve(stub.clone()).await, 1).await;
    let control = KinesisControl::new(clients);
    let target = Target::new("eu-west-1");
    let status = control
        .describe_operation(&target, "orders", "op-42")
        .await
        .unwrap();
    assert_eq!(status.operation_id, "op-42");
    assert_eq!(status.status, OperationState::Failed);
    assert_eq!(status.started.map(|t| t.as_second()), Some(1_700_000_000));
    assert_eq!(status.ended.map(|t| t.as_second()), Some(1_700_000_660));
    assert_eq!(
        status.failure.as_deref(),
        Some("Snapshot restore failed (rolled back by operation op-43)")
    );
    let tags = control
        .list_tags(
            &target,
            "arn:aws:kinesisanalytics:eu-west-1:123456789012:application/orders",
        )
        .await
        .unwrap();
    assert_eq!(
        tags,
        vec![
            ("team".to_string(), "payments".to_string()),
            ("autoscale".to_string(), String::new())
        ]
    );
}

#[tokio::test]
async fn error_codes_become_typed_errors() {
    let cases = [
        (400, "ResourceNotFoundException", "ApplicationNotFound", 1),
        (
            400,
            "ConcurrentModificationException",
            "ConcurrentModification",
            1,
        ),
        (400, "ResourceInUseException", "ApplicationBusy", 1),
        (400, "AccessDeniedException", "AccessDenied", 1),
        (400, "InvalidArgumentException", "InvalidArgument", 1),
        // The SDK's standard retry mode retries throttling and 5xx: 3 attempts each. NB: it
        // counts LimitExceededException as throttling, though for this service it is a
        // quota that retrying will not lift; we still report it as LimitExceeded.
        (400, "LimitExceededException", "LimitExceeded", 3),
        (400, "ThrottlingException", "Throttled", 3),
        (503, "ServiceUnavailableException", "AwsUnavailable", 3),
    ];
    for (status, code, reason, attempts) in cases {
        let stub = Arc::new(Stub::default());
        *stub.fail_with.lock().unwrap() = Some((status, code.to_string()));
        let clients = clients(serve(stub.clone()).await, 3).await;
        let control = KinesisControl::new(clients.clone());
        let err = control
            .describe(&Target::new("eu-west-1"), "orders")
            .await
            .unwrap_err();
        assert_eq!(err.reason(), reason, "{code}: {err}");
        assert!(err.message().contains(&format!("scripted {code}")), "{err}");
        assert_eq!(seen(&stub, "DescribeApplication").len(), attempts, "{code}");
        let snap = clients.stats().snapshot();
        assert_eq!(snap.calls_of(AwsOperation::DescribeApplication), 1);
        assert_eq!(
            snap.attempts_of(AwsOperation::DescribeApplication),
            attempts as u64
        );
        assert_eq!(snap.errors_of(err.kind()), 1);
    }
}

#[tokio::test]
async fn an_unreachable_endpoint_is_transient() {
    // Bind and drop: nothing listens on this port any more.
    let addr = {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        listener.local_addr().unwrap()
    };
    let clients = clients(addr, 1).await;
    let err = KinesisControl::new(clients)
        .describe(&Target::new("eu-west-1"), "orders")
        .await
        .unwrap_err();
    assert_eq!(err.reason(), "AwsUnavailable", "{err}");
    assert!(err.is_transient());
}
