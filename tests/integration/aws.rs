//! The AWS side through the real SDK clients over HTTP on loopback: a small scripted stub
//! for the wire details (STS AssumeRole, request bodies, error codes, retries).

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

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
use checkpoint_autoscaler_testkit::rig::{self, Keys};
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
    let settings = AwsSettings {
        max_attempts,
        initial_backoff: Duration::from_millis(1),
        ..AwsSettings::default()
    };
    rig::clients(&base_keys(), "eu-west-1", format!("http://{addr}"), settings).await
}

/// The controller's own keys, as the stub sees them before and after an AssumeRole.
fn base_keys() -> Keys {
    Keys::with_access_key_id("AKIDBASE")
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
                restore: checkpoint_autoscaler::aws::Restore::Latest,
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

/// A server that accepts connections and never answers (AWS hanging): returns its address
/// and the first bytes of every request it received.
async fn black_hole() -> (SocketAddr, Arc<Mutex<Vec<String>>>) {
    use tokio::io::AsyncReadExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let log = log.clone();
            tokio::spawn(async move {
                let mut buf = vec![0; 8192];
                let mut got = Vec::new();
                // Read what comes, answer nothing, keep the connection open.
                while let Ok(n) = socket.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                    got.extend_from_slice(&buf[..n]);
                    log.lock()
                        .unwrap()
                        .push(String::from_utf8_lossy(&got).into_owned());
                }
            });
        }
    });
    (addr, seen)
}

/// Short timeouts for the black hole: an attempt of 150 ms, a call of 400 ms.
fn hasty(addr: SocketAddr) -> AwsSettings {
    AwsSettings {
        endpoint_url: Some(format!("http://{addr}")),
        max_attempts: 3,
        initial_backoff: Duration::from_millis(1),
        attempt_timeout: Duration::from_millis(150),
        operation_timeout: Duration::from_millis(400),
        ..AwsSettings::default()
    }
}

/// Every AWS call the controller makes is bounded when AWS accepts the connection and never
/// answers: DescribeApplication, ListTagsForResource, UpdateApplication (one attempt),
/// DescribeApplicationOperation, GetMetricData, and a role's STS AssumeRole before them.
#[tokio::test]
async fn every_aws_call_is_bounded_when_aws_never_answers() {
    use checkpoint_autoscaler::aws::{MetricsMode, metrics_source};
    let (addr, seen) = black_hole().await;
    let settings = hasty(addr);
    assert_eq!(settings.update_bound(), Duration::from_millis(150));
    let clients = rig::clients(&base_keys(), "eu-west-1", format!("http://{addr}"), settings).await;
    let apps = KinesisControl::new(clients.clone());
    let metrics = metrics_source(clients, MetricsMode::Direct);
    let own = Target::new("eu-west-1");
    let role = Target::with_role("eu-west-1", ROLE);
    let request = UpdateRequest {
        name: "orders".into(),
        current_version_id: 3,
        to: AppConfig::new(8, 2),
        service_autoscaling: false,
        restore: checkpoint_autoscaler::aws::Restore::Latest,
    };
    let bounded = |took: Duration, what: &str| {
        // Attempts of 150 ms within a 400 ms operation; slack for a loaded machine.
        assert!(took < Duration::from_millis(1500), "{what} took {took:?}");
    };
    for target in [&own, &role] {
        let t = std::time::Instant::now();
        let err = apps.describe(target, "orders").await.unwrap_err();
        bounded(t.elapsed(), "DescribeApplication");
        assert!(err.is_transient(), "{err}");
        let t = std::time::Instant::now();
        assert!(
            apps.list_tags(target, "arn:aws:kinesisanalytics:eu-west-1:1:application/orders")
                .await
                .is_err()
        );
        bounded(t.elapsed(), "ListTagsForResource");
        let t = std::time::Instant::now();
        let err = apps.update(target, &request).await.unwrap_err();
        let took = t.elapsed();
        assert!(
            took < Duration::from_millis(1000),
            "UpdateApplication took {took:?}: one attempt"
        );
        assert!(err.is_transient(), "{err}");
        let t = std::time::Instant::now();
        assert!(apps.describe_operation(target, "orders", "op-1").await.is_err());
        bounded(t.elapsed(), "DescribeApplicationOperation");
        let t = std::time::Instant::now();
        let end = jiff::Timestamp::from_second(1_767_225_600).unwrap();
        assert!(
            metrics
                .samples(
                    target,
                    "orders",
                    Duration::from_secs(600),
                    Duration::from_secs(60),
                    end
                )
                .await
                .is_err()
        );
        bounded(t.elapsed(), "GetMetricData");
    }
    let seen = seen.lock().unwrap();
    assert!(
        seen.iter().any(|r| r.contains("Action=AssumeRole")),
        "the role's STS call reached the black hole"
    );
}

/// The web-identity path (IRSA) of the default credentials chain: its STS
/// AssumeRoleWithWebIdentity is bounded too, so a hung STS cannot hang the calls that wait
/// for credentials. Runs in a child process, which alone may set the environment.
#[tokio::test]
async fn the_web_identity_sts_call_is_bounded_when_sts_never_answers() {
    const CHILD: &str = "CHECKPOINT_AUTOSCALER_TEST_WEB_IDENTITY";
    if std::env::var_os(CHILD).is_none() {
        let dir = tempfile::tempdir().unwrap();
        let token = dir.path().join("token");
        std::fs::write(&token, "eyJhbGciOiJSUzI1NiJ9.test-web-identity-token.sig").unwrap();
        let output = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "aws::the_web_identity_sts_call_is_bounded_when_sts_never_answers",
                "--exact",
                "--test-threads=1",
            ])
            .env(CHILD, "1")
            .env("AWS_WEB_IDENTITY_TOKEN_FILE", &token)
            .env("AWS_ROLE_ARN", ROLE)
            .env("AWS_ROLE_SESSION_NAME", "bounded")
            .env("AWS_REGION", "eu-west-1")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("AWS_CONFIG_FILE", dir.path().join("none"))
            .env("AWS_SHARED_CREDENTIALS_FILE", dir.path().join("none"))
            .env_remove("AWS_ACCESS_KEY_ID")
            .env_remove("AWS_SECRET_ACCESS_KEY")
            .env_remove("AWS_SESSION_TOKEN")
            .env_remove("AWS_PROFILE")
            .env_remove("AWS_CONTAINER_CREDENTIALS_FULL_URI")
            .env_remove("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI")
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success() && stdout.contains("1 passed"),
            "failed in its own process:\n{stdout}\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        return;
    }
    let (addr, seen) = black_hole().await;
    // SAFETY: this child process runs this one test, on one thread, before any other use of
    // the environment.
    unsafe { std::env::set_var("AWS_ENDPOINT_URL", format!("http://{addr}")) };
    let clients = Arc::new(AwsClients::from_env(hasty(addr)).await.unwrap());
    let t = std::time::Instant::now();
    let err = KinesisControl::new(clients)
        .describe(&Target::new("eu-west-1"), "orders")
        .await
        .unwrap_err();
    let took = t.elapsed();
    assert!(took < Duration::from_secs(3), "took {took:?}");
    assert!(
        err.is_transient() || err.reason() == "CredentialsUnavailable",
        "{err}"
    );
    let seen = seen.lock().unwrap();
    assert!(
        seen.iter().any(|r| r.contains("AssumeRoleWithWebIdentity")),
        "STS was asked for web-identity credentials: {seen:?}"
    );
}

// ---------------------------------------------------------------------------------------
// Against the in-process emulator (sim::Fleet behind the real wire protocols), on a frozen
// virtual clock that only the test moves.

mod emulated {
    use std::{sync::Arc, time::Duration};

    use checkpoint_autoscaler::{
        aws::{
            ApplicationControl, AwsClients, AwsOperation, AwsSettings, BatchConfig, KinesisControl,
            MetricsMode, MetricsSource, OperationState, Target, UpdateRequest, metrics_source,
        },
        emulator::{
            self, Emulator, EmulatorConfig, Service,
            calllog::CallFilter,
            faults::{FaultKind, FaultSpec},
        },
        policy::{AppConfig, AppStatus},
        sim::Scenario,
    };
    use checkpoint_autoscaler_testkit::rig::{self, Keys};
    use jiff::Timestamp;

    const APP: &str = "orders-enrichment";

    fn scenario() -> Scenario {
        Scenario::load(std::path::Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/examples/scenarios/step-up.yaml"
        )))
        .unwrap()
    }

    /// An emulator with the step-up scenario, `minutes` virtual minutes in.
    async fn emulator(minutes: u64) -> Emulator {
        let emu = emulator::serve(EmulatorConfig {
            period: None,
            start: Some(Timestamp::from_second(1_767_225_600).unwrap()),
            scenarios: vec![scenario()],
            ..EmulatorConfig::default()
        })
        .await
        .unwrap();
        emu.state().advance(Duration::from_secs(minutes * 60));
        emu
    }

    async fn clients(emu: &Emulator) -> Arc<AwsClients> {
        let settings = AwsSettings {
            initial_backoff: Duration::from_millis(1),
            ..AwsSettings::default()
        };
        rig::clients(&Keys::TEST, "us-east-1", emu.endpoint_url(), settings).await
    }

    fn calls(emu: &Emulator, operation: &str) -> Vec<emulator::calllog::CallRecord> {
        emu.state().calls(&CallFilter {
            operation: Some(operation.to_string()),
            ..CallFilter::default()
        })
    }

    #[tokio::test]
    async fn describe_update_and_follow_the_operation() {
        let emu = emulator(40).await;
        let clients = clients(&emu).await;
        let control = KinesisControl::new(clients.clone());
        let target = Target::new("us-east-1");

        let before = control.describe(&target, APP).await.unwrap();
        assert_eq!(before.status, AppStatus::Running);
        assert_eq!(before.config, AppConfig::new(4, 1));
        assert!(
            before.arn.ends_with(&format!("application/{APP}")),
            "{}",
            before.arn
        );

        let op = control
            .update(
                &target,
                &UpdateRequest {
                    name: APP.into(),
                    current_version_id: before.version_id,
                    to: AppConfig::new(8, 2),
                    service_autoscaling: false,
                    restore: checkpoint_autoscaler::aws::Restore::Latest,
                },
            )
            .await
            .unwrap();
        let started = control.describe_operation(&target, APP, &op).await.unwrap();
        assert_eq!(started.operation_id, op);
        assert_eq!(started.status, OperationState::InProgress);
        assert!(started.started.is_some());
        assert_eq!(started.ended, None);
        assert_eq!(
            control.describe(&target, APP).await.unwrap().status,
            AppStatus::Updating
        );

        // A restart with ~19 GiB of state takes minutes; half an hour is plenty.
        emu.state().advance(Duration::from_secs(30 * 60));
        let done = control.describe_operation(&target, APP, &op).await.unwrap();
        assert_eq!(done.status, OperationState::Successful, "{done:?}");
        assert!(done.ended.is_some() && done.ended >= done.started);
        let after = control.describe(&target, APP).await.unwrap();
        assert_eq!(after.status, AppStatus::Running);
        assert_eq!(after.config, AppConfig::new(8, 2));
        assert_eq!(after.configured_parallelism, 8);
        assert_eq!(after.configuration_type, "CUSTOM");
        assert!(!after.service_autoscaling);
        assert!(after.version_id > before.version_id);

        let updates = calls(&emu, "UpdateApplication");
        assert_eq!(updates.len(), 1);
        assert_eq!(
            updates[0].access_key_id.as_deref(),
            Some(Keys::TEST.access_key_id.as_ref())
        );
        let snap = clients.stats().snapshot();
        assert_eq!(snap.calls_of(AwsOperation::UpdateApplication), 1);
        assert_eq!(snap.calls_of(AwsOperation::DescribeApplication), 3);
        assert_eq!(snap.calls_of(AwsOperation::DescribeApplicationOperation), 2);
    }

    #[tokio::test]
    async fn service_refusals_are_typed() {
        let emu = emulator(40).await;
        let clients = clients(&emu).await;
        let control = KinesisControl::new(clients.clone());
        let target = Target::new("us-east-1");

        let missing = control.describe(&target, "no-such-app").await.unwrap_err();
        assert_eq!(missing.reason(), "ApplicationNotFound", "{missing}");

        let current = control.describe(&target, APP).await.unwrap();
        let stale = UpdateRequest {
            name: APP.into(),
            current_version_id: current.version_id - 1,
            to: AppConfig::new(8, 1),
            service_autoscaling: false,
            restore: checkpoint_autoscaler::aws::Restore::Latest,
        };
        let conflict = control.update(&target, &stale).await.unwrap_err();
        assert_eq!(conflict.reason(), "ConcurrentModification", "{conflict}");
        assert!(conflict.is_transient());

        emu.state()
            .arm_fault(FaultSpec {
                kind: FaultKind::StuckUpdating,
                service: None,
                operation: None,
                application: Some(APP.into()),
                count: None,
            })
            .unwrap();
        let busy = control
            .update(
                &target,
                &UpdateRequest {
                    current_version_id: current.version_id,
                    ..stale.clone()
                },
            )
            .await
            .unwrap_err();
        assert_eq!(busy.reason(), "ApplicationBusy", "{busy}");
        emu.state().clear_faults();

        emu.state()
            .arm_fault(FaultSpec {
                kind: FaultKind::AccessDenied,
                service: Some(Service::KinesisAnalytics),
                operation: Some("DescribeApplication".into()),
                application: None,
                count: Some(1),
            })
            .unwrap();
        let denied = control.describe(&target, APP).await.unwrap_err();
        assert_eq!(denied.reason(), "AccessDenied", "{denied}");
        assert!(!denied.is_transient());

        // Throttled on every attempt: the SDK retries (3 attempts), then we report it.
        emu.state()
            .arm_fault(FaultSpec {
                kind: FaultKind::Throttling,
                service: Some(Service::KinesisAnalytics),
                operation: Some("DescribeApplication".into()),
                application: None,
                count: Some(3),
            })
            .unwrap();
        let before = clients.stats().snapshot();
        let throttled = control.describe(&target, APP).await.unwrap_err();
        assert_eq!(throttled.reason(), "Throttled", "{throttled}");
        let delta = clients.stats().snapshot().since(&before);
        assert_eq!(delta.calls_of(AwsOperation::DescribeApplication), 1);
        assert_eq!(delta.attempts_of(AwsOperation::DescribeApplication), 3);
        assert_eq!(delta.errors_of("throttled"), 1);

        // Throttled once, then served: the SDK's retry hides it.
        emu.state()
            .arm_fault(FaultSpec {
                kind: FaultKind::Throttling,
                service: Some(Service::CloudWatch),
                operation: None,
                application: None,
                count: Some(1),
            })
            .unwrap();
        let metrics = metrics_source(clients.clone(), MetricsMode::Direct);
        let samples = metrics
            .samples(
                &target,
                APP,
                Duration::from_secs(600),
                Duration::from_secs(60),
                emu.state().virtual_now(),
            )
            .await
            .unwrap();
        assert!(!samples.is_empty());
        let snap = clients.stats().snapshot();
        assert_eq!(snap.calls_of(AwsOperation::GetMetricData), 1);
        assert_eq!(snap.attempts_of(AwsOperation::GetMetricData), 2);
    }

    #[tokio::test]
    async fn metrics_are_read_per_period_with_increases() {
        let emu = emulator(45).await;
        let clients = clients(&emu).await;
        let metrics = metrics_source(clients.clone(), MetricsMode::Direct);
        let now = emu.state().virtual_now();
        let samples = metrics
            .samples(
                &Target::new("us-east-1"),
                APP,
                Duration::from_secs(600),
                Duration::from_secs(60),
                now,
            )
            .await
            .unwrap();
        assert!(
            samples.len() >= 8 && samples.len() <= 10,
            "{} periods",
            samples.len()
        );
        let first = now.as_second() - 600;
        for pair in samples.windows(2) {
            assert!(pair[0].at < pair[1].at);
        }
        for s in &samples {
            assert!(s.at.as_second() >= first && s.at.as_second() < now.as_second());
            assert_eq!(s.at.as_second() % 60, 0);
            assert!(s.last_checkpoint_duration_ms.is_some_and(|d| d > 0.0), "{s:?}");
            assert!(s.cpu_utilization.is_some());
            assert!(s.failed_checkpoints.is_some_and(|f| f >= 0.0), "{s:?}");
            assert!(s.records_in_per_second.is_some_and(|r| r > 10_000.0), "{s:?}");
        }
        let queries = calls(&emu, "GetMetricData");
        assert_eq!(queries.len(), 1);
        assert_eq!(
            queries[0].metric_queries,
            Some(checkpoint_autoscaler::aws::METRICS.len())
        );
        assert_eq!(
            clients.stats().snapshot().metrics_requested,
            checkpoint_autoscaler::aws::METRICS.len() as u64
        );
    }

    #[tokio::test]
    async fn batching_reaches_the_floor_of_calls_and_matches_the_direct_answers() {
        const BUDGETS: usize = 100;
        let emu = emulator(0).await;
        let s = scenario();
        for i in 0..BUDGETS {
            emu.state()
                .add_scenario(&s, Some(&format!("app-{i:03}")))
                .unwrap();
        }
        emu.state().advance(Duration::from_secs(15 * 60));
        let now = emu.state().virtual_now();
        let clients = clients(&emu).await;
        let target = Target::new("us-east-1");
        let window = Duration::from_secs(600);
        let period = Duration::from_secs(60);

        let batched = metrics_source(clients.clone(), MetricsMode::Batched(BatchConfig::default()));
        // NB: on this single-threaded test runtime every spawned request is queued before the
        // batcher task runs, so the round holds all of them whatever the machine's speed.
        let tasks: Vec<_> = (0..BUDGETS)
            .map(|i| {
                let batched = batched.clone();
                let target = target.clone();
                tokio::spawn(async move {
                    batched
                        .samples(&target, &format!("app-{i:03}"), window, period, now)
                        .await
                })
            })
            .collect();
        let mut answers = Vec::new();
        for t in tasks {
            answers.push(t.await.unwrap().unwrap());
        }
        let queries = BUDGETS * checkpoint_autoscaler::aws::METRICS.len();
        let floor = queries.div_ceil(checkpoint_autoscaler::aws::MAX_QUERIES_PER_CALL);
        let batched_calls = calls(&emu, "GetMetricData");
        assert_eq!(batched_calls.len(), floor);
        assert_eq!(
            batched_calls
                .iter()
                .filter_map(|c| c.metric_queries)
                .sum::<usize>(),
            queries
        );
        assert_eq!(
            clients.stats().snapshot().calls_of(AwsOperation::GetMetricData),
            floor as u64
        );

        emu.state().reset_calls();
        let direct = metrics_source(clients.clone(), MetricsMode::Direct);
        for (i, answer) in answers.iter().enumerate() {
            let app = format!("app-{i:03}");
            let expected = direct.samples(&target, &app, window, period, now).await.unwrap();
            assert!(!expected.is_empty());
            assert_eq!(answer, &expected, "{app}");
        }
        assert_eq!(calls(&emu, "GetMetricData").len(), BUDGETS);
    }

    const BUDGET: &str = r#"
apiVersion: checkpoint-autoscaler.dev/v1alpha1
kind: CheckpointBudget
metadata: {name: orders-enrichment, namespace: streaming}
spec:
  application: {name: orders-enrichment}
  objectives: {maxCheckpointDuration: 1m, maxFailedCheckpoints: 0, window: 10m}
  parallelism: {min: 2, max: 32, maxParallelism: 128, perKpu: {min: 1, max: 4}}
  maxKpus: 16
"#;

    /// Runs the binary's `recommend` against the emulator with credentials from the
    /// environment only (the default chain), as a user would.
    async fn recommend(emu: &Emulator, args: &[&str]) -> std::process::Output {
        let now = emu.state().virtual_now().to_string();
        let url = emu.endpoint_url();
        tokio::process::Command::new(env!("CARGO_BIN_EXE_checkpoint-autoscaler"))
            .arg("recommend")
            .args(args)
            .args(["--aws-endpoint-url", &url, "--region", "us-east-1", "--at", &now])
            .env_clear()
            .env("AWS_ACCESS_KEY_ID", "AKIDRECOMMEND")
            .env("AWS_SECRET_ACCESS_KEY", "secret")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("AWS_CONFIG_FILE", "/nonexistent/config")
            .env("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/credentials")
            .output()
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn recommend_reads_diagnoses_and_changes_nothing() {
        let emu = emulator(50).await;
        let version = emu
            .state()
            .with_fleet(|f| f.describe_application(APP).unwrap().version_id);
        let dir = tempfile::tempdir().unwrap();
        let budget = dir.path().join("budget.yaml");
        std::fs::write(&budget, BUDGET).unwrap();

        let out = recommend(
            &emu,
            &[
                "--budget",
                budget.to_str().unwrap(),
                "--output",
                "json",
                "--kpu-hour-price",
                "0.11 USD",
            ],
        )
        .await;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{stderr}");
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(report["application"]["name"], APP);
        assert_eq!(report["application"]["status"], "RUNNING");
        assert_eq!(report["application"]["parallelism"], 4);
        assert_eq!(report["application"]["parallelismPerKpu"], 1);
        assert_eq!(report["application"]["versionId"], version);
        assert_eq!(report["budget"]["parallelismMax"], 32);
        // The window's periods (10 minutes), though the input's trend reads half an hour.
        let periods = report["periodsWithData"].as_u64().unwrap();
        assert!((8..=10).contains(&periods), "{report}");
        // Twice the load on the same 4 KPUs since minute 30: the budget is broken and more
        // parallelism is the fix.
        let decision = &report["decision"];
        assert_eq!(decision["sloMet"], false, "{decision}");
        let to = &decision["action"]["Scale"]["to"];
        let parallelism = to["parallelism"].as_u64().unwrap_or(0);
        assert!((5..=32).contains(&parallelism), "{decision}");
        // What it costs: 4 KPUs + 1 for orchestration now, 720 hours a month at 0.11 USD.
        let cost = &report["cost"];
        assert_eq!(cost["current"]["billedKpus"], 5, "{cost}");
        assert_eq!(cost["current"]["kpuHoursPerMonth"], 3600, "{cost}");
        assert_eq!(cost["current"]["pricePerMonth"], "396.00", "{cost}");
        let kpus = to["parallelism"]
            .as_u64()
            .unwrap()
            .div_ceil(to["parallelismPerKpu"].as_u64().unwrap());
        assert_eq!(cost["recommended"]["billedKpus"], kpus + 1, "{cost}");
        assert_eq!(cost["kpuHourPrice"], "0.11 USD");
        assert_eq!(
            report["scalingLimited"]["reason"], "DesiredWithinRange",
            "{report}"
        );
        // The signals read: step-up runs at the TASK level, so per-task busy and
        // back-pressure times are there and nothing is missing.
        assert_eq!(report["signals"]["metricsLevel"], "TASK", "{report}");
        assert_eq!(report["signals"]["missing"], serde_json::json!([]), "{report}");
        assert!(
            report["signals"]["queries"].as_u64().is_some_and(|q| q >= 12),
            "{report}"
        );

        // Read-only: one describe and three metrics calls (the window, and the input history
        // by the hour for the forecast: its averages and its busiest minutes), signed with
        // the environment's keys.
        assert!(calls(&emu, "UpdateApplication").is_empty());
        let describes = calls(&emu, "DescribeApplication");
        assert_eq!(describes.len(), 1);
        assert_eq!(describes[0].access_key_id.as_deref(), Some("AKIDRECOMMEND"));
        assert_eq!(calls(&emu, "GetMetricData").len(), 3);
        let after = emu.state().with_fleet(|f| f.describe_application(APP).unwrap());
        assert_eq!(after.version_id, version);

        // The same from flags, for people.
        let out = recommend(
            &emu,
            &[
                "--application",
                APP,
                "--max-checkpoint-duration",
                "1m",
                "--min",
                "2",
                "--max",
                "32",
                "--max-parallelism",
                "128",
                "--max-kpus",
                "16",
            ],
        )
        .await;
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        for label in [
            "Application",
            "Running",
            "Budget",
            "Checkpoints",
            "SLO",
            "Diagnosis",
            "Decision",
        ] {
            assert!(
                text.lines().any(|l| l.starts_with(label)),
                "{label} missing in\n{text}"
            );
        }
        assert!(text.contains("SLO             not met"), "{text}");
        assert!(text.contains("Recommendation  change to parallelism"), "{text}");
        assert!(text.contains("Nothing was changed"), "{text}");
        assert!(
            text.lines().any(|l| l.starts_with("Cost            5 → ")),
            "{text}"
        );
        assert!(!text.contains("Limited"), "{text}");

        // A cap below what is needed: the report says which bound holds it back, and prices it.
        let out = recommend(
            &emu,
            &["--budget", budget.to_str().unwrap(), "--kpu-hour-price", "0.11"],
        )
        .await;
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(!text.contains("Limited"), "{text}");
        let capped = BUDGET.replace("maxKpus: 16", "maxKpus: 6");
        std::fs::write(&budget, capped).unwrap();
        let out = recommend(
            &emu,
            &["--budget", budget.to_str().unwrap(), "--kpu-hour-price", "0.11"],
        )
        .await;
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains("Limited         MaxKpusReached: The budget's maxKpus 6 holds"),
            "{text}"
        );
        assert!(text.contains("a month at 0.11 per KPU-hour"), "{text}");
        assert!(calls(&emu, "UpdateApplication").is_empty());
    }

    #[tokio::test]
    async fn recommend_reports_a_missing_application() {
        let emu = emulator(5).await;
        let out = recommend(
            &emu,
            &[
                "--application",
                "no-such-app",
                "--max-checkpoint-duration",
                "1m",
                "--max",
                "8",
                "--max-parallelism",
                "128",
            ],
        )
        .await;
        assert!(!out.status.success());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("ApplicationNotFound"), "{stderr}");
        assert!(stderr.contains("no-such-app"), "{stderr}");
    }

    /// Snapshots through the real SDK: DescribeApplication reports SnapshotsEnabled and the
    /// restore configuration as configured; each update of the running application adds a
    /// snapshot that ListApplicationSnapshots lists (paged, counted up to a limit);
    /// ApplicationSnapshotConfigurationUpdate turns them off, and then an update adds none.
    /// ListApplicationOperations lists the update with its times.
    #[tokio::test]
    async fn snapshots_and_operations_through_the_sdk() {
        let emu = emulator(40).await;
        let clients = clients(&emu).await;
        let control = KinesisControl::new(clients.clone());
        let target = Target::new("us-east-1");
        let before = control.describe(&target, APP).await.unwrap();
        assert_eq!(before.snapshots_enabled, Some(true));
        assert_eq!(before.restore, Some(checkpoint_autoscaler::aws::Restore::Latest));
        let none = control.count_snapshots(&target, APP, 1000).await.unwrap();
        assert_eq!((none.count, none.complete), (0, true));

        let update = |version: i64, p: u32| UpdateRequest {
            name: APP.into(),
            current_version_id: version,
            to: AppConfig::new(p, 1),
            service_autoscaling: false,
            restore: checkpoint_autoscaler::aws::Restore::Latest,
        };
        let op = control
            .update(&target, &update(before.version_id, 6))
            .await
            .unwrap();
        let listed = control.list_operations(&target, APP).await.unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(
            (
                listed[0].operation_id.as_str(),
                listed[0].operation.as_str(),
                listed[0].status
            ),
            (op.as_str(), "UpdateApplication", OperationState::InProgress)
        );
        assert!(listed[0].started.is_some() && listed[0].ended.is_none());
        let described = control.describe_operation(&target, APP, &op).await.unwrap();
        assert_eq!(
            described.version_change,
            Some((before.version_id, before.version_id + 1))
        );
        assert_eq!(described.operation.as_deref(), Some("UpdateApplication"));
        let one = control.count_snapshots(&target, APP, 1000).await.unwrap();
        assert_eq!((one.count, one.complete), (1, true));
        emu.state().advance(Duration::from_secs(30 * 60));
        let done = control.list_operations(&target, APP).await.unwrap();
        assert_eq!(done[0].status, OperationState::Successful);
        assert!(done[0].ended.is_some());

        // Counting stops at the limit (one page here).
        for p in [8, 10] {
            let now = control.describe(&target, APP).await.unwrap();
            control.update(&target, &update(now.version_id, p)).await.unwrap();
            emu.state().advance(Duration::from_secs(30 * 60));
        }
        let capped = control.count_snapshots(&target, APP, 2).await.unwrap();
        assert_eq!(capped.count, 3, "a whole page is counted");
        let all = control.count_snapshots(&target, APP, 1000).await.unwrap();
        assert_eq!((all.count, all.complete), (3, true));

        // Snapshots off (another client): the next restart adds none.
        emu.state()
            .with_fleet(|f| {
                let version = f.describe_application(APP)?.version_id;
                f.update_application(
                    APP,
                    checkpoint_autoscaler::sim::UpdateApplication {
                        current_application_version_id: Some(version),
                        snapshots_enabled: Some(false),
                        ..Default::default()
                    },
                )
            })
            .unwrap();
        let off = control.describe(&target, APP).await.unwrap();
        assert_eq!(off.snapshots_enabled, Some(false));
        control.update(&target, &update(off.version_id, 4)).await.unwrap();
        assert_eq!(
            control.count_snapshots(&target, APP, 1000).await.unwrap().count,
            3
        );
        assert_eq!(
            calls(&emu, "ListApplicationSnapshots")
                .iter()
                .filter(|c| c.status == 200)
                .count(),
            5
        );
        emu.shutdown().await.unwrap();
    }
}
