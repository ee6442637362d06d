//! The real `aws-sdk-kinesisanalyticsv2` and `aws-sdk-cloudwatch` clients against an
//! in-process emulator on 127.0.0.1:0: every operation served, the typed errors AWS would
//! send, injected faults and the control API.
//!
//! Virtual time is frozen (no period) and moved explicitly, so nothing here depends on
//! wall-clock timing.

use std::{net::SocketAddr, time::Duration};

use aws_sdk_cloudwatch as cw;
use aws_sdk_kinesisanalyticsv2 as kda;
use checkpoint_autoscaler::{
    emulator::{
        self, Emulator, EmulatorConfig, Service,
        calllog::CallFilter,
        faults::{FaultKind, FaultSpec},
    },
    sim::Scenario,
};
use checkpoint_autoscaler_testkit::rig::{self, Keys};
use cw::error::ProvideErrorMetadata as _;
use jiff::Timestamp;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const REGION: &str = "eu-west-1";
const START: i64 = 1_767_571_200; // 2026-01-05T00:00:00Z

fn scenario(name: &str, parallelism: u32) -> Scenario {
    let yaml = format!(
        "name: {name}\napplication: {{name: {name}, parallelism: {parallelism}, maxParallelism: 128}}\nduration: 6h\nload:\n  phases: [{{shape: steady, rate: 2000}}]\n"
    );
    Scenario::from_yaml(&yaml, "<test>").unwrap()
}

struct Env {
    emu: Emulator,
    kda: kda::Client,
    cw: cw::Client,
}

impl Env {
    async fn start(apps: &[&str], attempts: u32) -> Env {
        let emu = emulator::serve(EmulatorConfig {
            period: None,
            start: Some(Timestamp::from_second(START).unwrap()),
            region: REGION.into(),
            scenarios: apps.iter().map(|a| scenario(a, 4)).collect(),
            ..EmulatorConfig::default()
        })
        .await
        .unwrap();
        let url = emu.endpoint_url();
        Env {
            kda: kda_client(&url, attempts, false).await,
            cw: cw_client(&url, attempts, false).await,
            emu,
        }
    }

    fn advance(&self, minutes: u64) {
        self.emu.state().advance(Duration::from_secs(minutes * 60));
    }

    fn now(&self) -> Timestamp {
        self.emu.state().virtual_now()
    }

    fn arm(
        &self,
        kind: FaultKind,
        operation: Option<&str>,
        application: Option<&str>,
        count: Option<u32>,
    ) -> u64 {
        self.emu
            .state()
            .arm_fault(FaultSpec {
                kind,
                service: None,
                operation: operation.map(str::to_string),
                application: application.map(str::to_string),
                count,
            })
            .unwrap()
    }
}

/// Removes the SigV4 header after signing, to see how the service answers an unsigned call.
#[derive(Debug)]
struct StripAuthorization;

impl kda::config::Intercept for StripAuthorization {
    fn name(&self) -> &'static str {
        "StripAuthorization"
    }

    fn modify_before_transmit(
        &self,
        context: &mut kda::config::interceptors::BeforeTransmitInterceptorContextMut<'_>,
        _components: &kda::config::RuntimeComponents,
        _cfg: &mut kda::config::ConfigBag,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        context.request_mut().headers_mut().remove("authorization");
        Ok(())
    }
}

fn retry(attempts: u32) -> kda::config::retry::RetryConfig {
    kda::config::retry::RetryConfig::standard()
        .with_max_attempts(attempts)
        .with_initial_backoff(Duration::from_millis(1))
        .with_max_backoff(Duration::from_millis(5))
}

fn timeouts() -> kda::config::timeout::TimeoutConfig {
    kda::config::timeout::TimeoutConfig::builder()
        .operation_timeout(Duration::from_secs(20))
        .build()
}

/// The SDKs' shared configuration for the emulator at `url`: the rig's keys, `attempts`
/// attempts with short backoffs.
async fn sdk_config(url: &str, attempts: u32) -> aws_config::SdkConfig {
    rig::sdk_config(&Keys::TEST, REGION)
        .await
        .into_builder()
        .endpoint_url(url)
        .retry_config(retry(attempts))
        .timeout_config(timeouts())
        .build()
}

/// A kinesisanalyticsv2 client for the emulator at `url` (unsigned with `strip_auth`).
async fn kda_client(url: &str, attempts: u32, strip_auth: bool) -> kda::Client {
    let mut b = kda::config::Builder::from(&sdk_config(url, attempts).await);
    if strip_auth {
        b = b.interceptor(StripAuthorization);
    }
    kda::Client::from_conf(b.build())
}

/// A CloudWatch client for the emulator at `url` (unsigned with `strip_auth`).
async fn cw_client(url: &str, attempts: u32, strip_auth: bool) -> cw::Client {
    let mut b = cw::config::Builder::from(&sdk_config(url, attempts).await);
    if strip_auth {
        b = b.interceptor(StripAuthorization);
    }
    cw::Client::from_conf(b.build())
}

fn parallelism_update(
    parallelism: i32,
    per_kpu: i32,
    autoscaling: bool,
) -> kda::types::ApplicationConfigurationUpdate {
    use kda::types::*;
    ApplicationConfigurationUpdate::builder()
        .flink_application_configuration_update(
            FlinkApplicationConfigurationUpdate::builder()
                .parallelism_configuration_update(
                    ParallelismConfigurationUpdate::builder()
                        .configuration_type_update(ConfigurationType::Custom)
                        .parallelism_update(parallelism)
                        .parallelism_per_kpu_update(per_kpu)
                        .auto_scaling_enabled_update(autoscaling)
                        .build(),
                )
                .build(),
        )
        .build()
}

fn parallelism_of(detail: &kda::types::ApplicationDetail) -> (i32, i32, i32) {
    let p = detail
        .application_configuration_description()
        .and_then(|c| c.flink_application_configuration_description())
        .and_then(|f| f.parallelism_configuration_description())
        .unwrap();
    (
        p.parallelism().unwrap(),
        p.parallelism_per_kpu().unwrap(),
        p.current_parallelism().unwrap(),
    )
}

async fn describe(kda: &kda::Client, name: &str) -> kda::types::ApplicationDetail {
    kda.describe_application()
        .application_name(name)
        .send()
        .await
        .unwrap()
        .application_detail
        .unwrap()
}

#[tokio::test]
async fn kinesis_operations_round_trip() {
    use kda::types::{
        ApplicationRestoreConfiguration, ApplicationRestoreType, ApplicationStatus, OperationStatus,
        RunConfigurationUpdate,
    };
    let env = Env::start(&["orders", "payments"], 1).await;
    let kda = &env.kda;

    // ListApplications, one per page.
    let first = kda.list_applications().limit(1).send().await.unwrap();
    assert_eq!(first.application_summaries().len(), 1);
    let token = first.next_token().unwrap().to_string();
    let second = kda
        .list_applications()
        .limit(1)
        .next_token(token)
        .send()
        .await
        .unwrap();
    assert_eq!(second.next_token(), None);
    let names: Vec<&str> = first
        .application_summaries()
        .iter()
        .chain(second.application_summaries())
        .map(|s| s.application_name())
        .collect();
    assert_eq!(names, vec!["orders", "payments"]);
    assert_eq!(
        first.application_summaries()[0].runtime_environment().as_str(),
        "FLINK-1_20"
    );

    // DescribeApplication.
    let detail = describe(kda, "orders").await;
    assert_eq!(
        detail.application_arn(),
        "arn:aws:kinesisanalytics:eu-west-1:123456789012:application/orders"
    );
    assert_eq!(detail.application_status(), &ApplicationStatus::Running);
    assert_eq!(parallelism_of(&detail), (4, 1, 4));
    assert_eq!(detail.create_timestamp().unwrap().secs(), START);
    let checkpoint = detail
        .application_configuration_description()
        .and_then(|c| c.flink_application_configuration_description())
        .and_then(|f| f.checkpoint_configuration_description())
        .unwrap();
    assert_eq!(checkpoint.checkpoint_interval(), Some(60_000));
    let version = detail.application_version_id();

    // UpdateApplication: parallelism and restore configuration.
    let updated = kda
        .update_application()
        .application_name("orders")
        .current_application_version_id(version)
        .application_configuration_update(parallelism_update(8, 2, false))
        .run_configuration_update(
            RunConfigurationUpdate::builder()
                .application_restore_configuration(
                    ApplicationRestoreConfiguration::builder()
                        .application_restore_type(ApplicationRestoreType::RestoreFromLatestSnapshot)
                        .build()
                        .unwrap(),
                )
                .build(),
        )
        .send()
        .await
        .unwrap();
    let op_id = updated.operation_id().unwrap().to_string();
    let after = updated.application_detail().unwrap();
    assert_eq!(after.application_version_id(), version + 1);
    assert_eq!(after.application_status(), &ApplicationStatus::Updating);
    assert_eq!(after.application_version_updated_from(), Some(version));

    let op = kda
        .describe_application_operation()
        .application_name("orders")
        .operation_id(&op_id)
        .send()
        .await
        .unwrap();
    let info = op.application_operation_info_details().unwrap();
    assert_eq!(info.operation(), "UpdateApplication");
    assert_eq!(info.operation_status(), &OperationStatus::InProgress);
    let change = info.application_version_change_details().unwrap();
    assert_eq!(
        (
            change.application_version_updated_from(),
            change.application_version_updated_to()
        ),
        (version, version + 1)
    );

    // The restart completes in virtual time.
    env.advance(120);
    let op = kda
        .describe_application_operation()
        .application_name("orders")
        .operation_id(&op_id)
        .send()
        .await
        .unwrap();
    let info = op.application_operation_info_details().unwrap();
    assert_eq!(info.operation_status(), &OperationStatus::Successful);
    assert!(info.end_time().secs() > info.start_time().secs());
    let detail = describe(kda, "orders").await;
    assert_eq!(detail.application_status(), &ApplicationStatus::Running);
    assert_eq!(parallelism_of(&detail), (8, 2, 8));

    let ops = kda
        .list_application_operations()
        .application_name("orders")
        .send()
        .await
        .unwrap();
    let listed = ops.application_operation_info_list();
    assert!(listed.iter().any(|o| o.operation_id() == Some(op_id.as_str())
        && o.operation_status() == Some(&OperationStatus::Successful)));
    let filtered = kda
        .list_application_operations()
        .application_name("orders")
        .operation("StartApplication")
        .send()
        .await
        .unwrap();
    assert!(filtered.application_operation_info_list().is_empty());

    // UpdateApplication with the ConditionalToken instead of the version id.
    let token = detail.conditional_token().unwrap().to_string();
    let by_token = kda
        .update_application()
        .application_name("orders")
        .conditional_token(token)
        .application_configuration_update(parallelism_update(8, 2, true))
        .send()
        .await
        .unwrap();
    assert_eq!(
        by_token.application_detail().unwrap().application_version_id(),
        version + 2
    );

    // RollbackApplication returns to the previous version's configuration.
    let rolled = kda
        .rollback_application()
        .application_name("orders")
        .current_application_version_id(version + 2)
        .send()
        .await
        .unwrap();
    assert!(rolled.operation_id().is_some());
    assert_eq!(
        rolled.application_detail().unwrap().application_status(),
        &ApplicationStatus::RollingBack
    );
    env.advance(120);
    let detail = describe(kda, "orders").await;
    assert_eq!(detail.application_status(), &ApplicationStatus::Running);
    assert_eq!(detail.application_version_rolled_back_from(), Some(version + 2));

    // CreateApplication, StartApplication, StopApplication.
    let created = kda
        .create_application()
        .application_name("fresh")
        .runtime_environment(kda::types::RuntimeEnvironment::Flink120)
        .service_execution_role("arn:aws:iam::123456789012:role/flink")
        .application_configuration(
            kda::types::ApplicationConfiguration::builder()
                .flink_application_configuration(
                    kda::types::FlinkApplicationConfiguration::builder()
                        .parallelism_configuration(
                            kda::types::ParallelismConfiguration::builder()
                                .configuration_type(kda::types::ConfigurationType::Custom)
                                .parallelism(2)
                                .parallelism_per_kpu(1)
                                .auto_scaling_enabled(false)
                                .build()
                                .unwrap(),
                        )
                        .build(),
                )
                .build(),
        )
        .tags(
            kda::types::Tag::builder()
                .key("team")
                .value("streaming")
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    let created = created.application_detail().unwrap();
    assert_eq!(created.application_status(), &ApplicationStatus::Ready);
    assert_eq!(parallelism_of(created).0, 2);
    let fresh_arn = created.application_arn().to_string();

    let started = kda
        .start_application()
        .application_name("fresh")
        .send()
        .await
        .unwrap();
    assert!(started.operation_id().is_some());
    assert_eq!(
        describe(kda, "fresh").await.application_status(),
        &ApplicationStatus::Starting
    );
    env.advance(60);
    assert_eq!(
        describe(kda, "fresh").await.application_status(),
        &ApplicationStatus::Running
    );
    let stopped = kda
        .stop_application()
        .application_name("fresh")
        .force(false)
        .send()
        .await
        .unwrap();
    assert!(stopped.operation_id().is_some());
    env.advance(60);
    assert_eq!(
        describe(kda, "fresh").await.application_status(),
        &ApplicationStatus::Ready
    );

    // TagResource, UntagResource, ListTagsForResource.
    kda.tag_resource()
        .resource_arn(&fresh_arn)
        .tags(
            kda::types::Tag::builder()
                .key("env")
                .value("test")
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    let tags = kda
        .list_tags_for_resource()
        .resource_arn(&fresh_arn)
        .send()
        .await
        .unwrap();
    let mut keys: Vec<&str> = tags.tags().iter().map(|t| t.key()).collect();
    keys.sort();
    assert_eq!(keys, vec!["env", "team"]);
    kda.untag_resource()
        .resource_arn(&fresh_arn)
        .tag_keys("team")
        .send()
        .await
        .unwrap();
    let tags = kda
        .list_tags_for_resource()
        .resource_arn(&fresh_arn)
        .send()
        .await
        .unwrap();
    assert_eq!(tags.tags().len(), 1);
    assert_eq!(tags.tags()[0].value(), Some("test"));

    // Every call was logged under its operation.
    let calls = env.emu.state().calls(&CallFilter {
        service: Some(Service::KinesisAnalytics),
        application: Some("fresh".into()),
        ..CallFilter::default()
    });
    assert!(
        calls
            .iter()
            .any(|c| c.operation == "CreateApplication" && c.status == 200)
    );
    assert!(
        calls
            .iter()
            .any(|c| c.operation == "TagResource" && c.status == 200)
    );
    assert!(calls.iter().all(|c| c.region.as_deref() == Some(REGION)));
}

#[tokio::test]
async fn kinesis_errors_are_typed_as_aws_sends_them() {
    use kda::operation::{
        create_application::CreateApplicationError, describe_application::DescribeApplicationError,
        describe_application_operation::DescribeApplicationOperationError,
        rollback_application::RollbackApplicationError, start_application::StartApplicationError,
        tag_resource::TagResourceError, update_application::UpdateApplicationError,
    };
    use kda::types::OperationStatus;
    let env = Env::start(&["orders"], 1).await;
    let kda = &env.kda;

    let e = kda
        .describe_application()
        .application_name("nope")
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(
        matches!(e, DescribeApplicationError::ResourceNotFoundException(_)),
        "{e:?}"
    );
    assert!(e.meta().message().unwrap().contains("nope"));

    let version = describe(kda, "orders").await.application_version_id();
    let update = |v: i64, p: i32, k: i32| {
        kda.update_application()
            .application_name("orders")
            .current_application_version_id(v)
            .application_configuration_update(parallelism_update(p, k, false))
            .send()
    };
    let e = update(version + 5, 8, 1).await.unwrap_err().into_service_error();
    assert!(
        matches!(e, UpdateApplicationError::ConcurrentModificationException(_)),
        "{e:?}"
    );
    let e = update(version, 300, 4).await.unwrap_err().into_service_error();
    assert!(
        matches!(e, UpdateApplicationError::InvalidArgumentException(_)),
        "{e:?}"
    );
    // 128 KPUs is above the default quota of 64 per application.
    let e = update(version, 128, 1).await.unwrap_err().into_service_error();
    assert!(
        matches!(e, UpdateApplicationError::LimitExceededException(_)),
        "{e:?}"
    );

    // Above the job's maxParallelism (128) the service accepts the call, the restore fails
    // and the application rolls back.
    let accepted = update(version, 200, 4).await.unwrap();
    let op_id = accepted.operation_id().unwrap().to_string();
    let e = update(version + 1, 8, 1).await.unwrap_err().into_service_error();
    assert!(
        matches!(e, UpdateApplicationError::ResourceInUseException(_)),
        "{e:?}"
    );
    env.advance(180);
    let op = kda
        .describe_application_operation()
        .application_name("orders")
        .operation_id(&op_id)
        .send()
        .await
        .unwrap();
    let info = op.application_operation_info_details().unwrap();
    assert_eq!(info.operation_status(), &OperationStatus::Failed);
    let failure = info.operation_failure_details().unwrap();
    assert!(
        failure
            .error_info()
            .unwrap()
            .error_string()
            .unwrap()
            .contains("maxParallelism"),
        "{failure:?}"
    );
    assert_eq!(parallelism_of(&describe(kda, "orders").await).2, 4);

    let e = kda
        .describe_application_operation()
        .application_name("orders")
        .operation_id("no-such-operation")
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(
        matches!(e, DescribeApplicationOperationError::ResourceNotFoundException(_)),
        "{e:?}"
    );
    let e = kda
        .rollback_application()
        .application_name("orders")
        .current_application_version_id(1_000)
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(
        matches!(e, RollbackApplicationError::ConcurrentModificationException(_)),
        "{e:?}"
    );
    let e = kda
        .start_application()
        .application_name("orders")
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(
        matches!(e, StartApplicationError::ResourceInUseException(_)),
        "{e:?}"
    );

    let arn = describe(kda, "orders").await.application_arn().to_string();
    let mut tag = kda.tag_resource().resource_arn(&arn);
    for i in 0..51 {
        tag = tag.tags(
            kda::types::Tag::builder()
                .key(format!("k{i}"))
                .value("v")
                .build()
                .unwrap(),
        );
    }
    let e = tag.send().await.unwrap_err().into_service_error();
    assert!(matches!(e, TagResourceError::TooManyTagsException(_)), "{e:?}");

    let create = |name: &str, runtime: kda::types::RuntimeEnvironment| {
        kda.create_application()
            .application_name(name)
            .runtime_environment(runtime)
            .service_execution_role("arn:aws:iam::123456789012:role/flink")
            .send()
    };
    let e = create("orders", kda::types::RuntimeEnvironment::Flink120)
        .await
        .unwrap_err()
        .into_service_error();
    assert!(
        matches!(e, CreateApplicationError::ResourceInUseException(_)),
        "{e:?}"
    );
    let e = create("sql", kda::types::RuntimeEnvironment::Sql10)
        .await
        .unwrap_err()
        .into_service_error();
    assert!(
        matches!(e, CreateApplicationError::UnsupportedOperationException(_)),
        "{e:?}"
    );

    // Unsigned requests are refused before anything else.
    let unsigned = kda_client(&env.emu.endpoint_url(), 1, true).await;
    let e = unsigned
        .describe_application()
        .application_name("orders")
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert_eq!(
        e.meta().code(),
        Some("MissingAuthenticationTokenException"),
        "{e:?}"
    );
    let last = env.emu.state().calls(&CallFilter::default()).pop().unwrap();
    assert_eq!(
        (last.status, last.error_code.as_deref()),
        (403, Some("MissingAuthenticationTokenException"))
    );
}

fn metric_query(id: &str, app: &str, metric: &str, stat: &str, period: i32) -> cw::types::MetricDataQuery {
    use cw::types::*;
    MetricDataQuery::builder()
        .id(id)
        .metric_stat(
            MetricStat::builder()
                .metric(
                    Metric::builder()
                        .namespace("AWS/KinesisAnalytics")
                        .metric_name(metric)
                        .dimensions(Dimension::builder().name("Application").value(app).build())
                        .build(),
                )
                .period(period)
                .stat(stat)
                .build(),
        )
        .build()
}

fn datetime(t: Timestamp) -> cw::primitives::DateTime {
    cw::primitives::DateTime::from_millis(t.as_millisecond())
}

const METRICS: [&str; 7] = [
    "lastCheckpointDuration",
    "lastCheckpointSize",
    "numberOfFailedCheckpoints",
    "cpuUtilization",
    "heapMemoryUtilization",
    "KPUs",
    "numRecordsInPerSecond",
];

#[tokio::test]
async fn cloudwatch_operations_round_trip() {
    use cw::types::{ScanBy, Statistic, StatusCode};
    let env = Env::start(&["orders", "payments"], 1).await;
    env.advance(30);
    let cw = &env.cw;
    let end = env.now();
    let start = end - jiff::SignedDuration::from_mins(30);

    // Many queries in one GetMetricData call, newest first by default.
    let mut req = cw
        .get_metric_data()
        .start_time(datetime(start))
        .end_time(datetime(end));
    let mut n = 0;
    for app in ["orders", "payments"] {
        for metric in METRICS {
            req = req.metric_data_queries(metric_query(&format!("m{n}"), app, metric, "Maximum", 60));
            n += 1;
        }
    }
    let out = req.send().await.unwrap();
    let results = out.metric_data_results();
    assert_eq!(results.len(), 14);
    assert_eq!(out.next_token(), None);
    for r in results {
        assert_eq!(r.status_code(), Some(&StatusCode::Complete));
        assert!(
            r.timestamps().len() >= 25,
            "{} has {} points",
            r.id().unwrap(),
            r.timestamps().len()
        );
        assert_eq!(r.timestamps().len(), r.values().len());
        assert!(
            r.timestamps().windows(2).all(|w| w[0].secs() > w[1].secs()),
            "newest first"
        );
        assert!(r.values().iter().all(|v| v.is_finite()));
        assert!(
            r.timestamps()
                .iter()
                .all(|t| t.secs() >= start.as_second() && t.secs() < end.as_second())
        );
    }
    assert_eq!(results[0].label(), Some("lastCheckpointDuration"));
    let kpus = results.iter().find(|r| r.id() == Some("m5")).unwrap();
    assert!(
        kpus.values().iter().all(|v| *v == 4.0),
        "4 KPUs at parallelism 4: {:?}",
        kpus.values()
    );

    // Label, ReturnData and ScanBy.
    let out = cw
        .get_metric_data()
        .start_time(datetime(start))
        .end_time(datetime(end))
        .scan_by(ScanBy::TimestampAscending)
        .metric_data_queries({
            let mut q = metric_query("a", "orders", "cpuUtilization", "Average", 300);
            q.label = Some("cpu".into());
            q
        })
        .metric_data_queries({
            let mut q = metric_query("hidden", "orders", "KPUs", "Average", 60);
            q.return_data = Some(false);
            q
        })
        .send()
        .await
        .unwrap();
    let results = out.metric_data_results();
    assert_eq!(results.len(), 1);
    assert_eq!(results[0].label(), Some("cpu"));
    assert_eq!(results[0].timestamps().len(), 6);
    assert!(
        results[0]
            .timestamps()
            .windows(2)
            .all(|w| w[0].secs() + 300 == w[1].secs())
    );

    // Paging with MaxDatapoints gives the same datapoints as one page.
    let query = || {
        cw.get_metric_data()
            .start_time(datetime(start))
            .end_time(datetime(end))
            .metric_data_queries(metric_query(
                "x",
                "orders",
                "lastCheckpointDuration",
                "Maximum",
                60,
            ))
            .metric_data_queries(metric_query("y", "payments", "cpuUtilization", "Maximum", 60))
    };
    let whole = query().send().await.unwrap();
    let mut paged: Vec<(String, Vec<f64>)> = Vec::new();
    let mut token: Option<String> = None;
    let mut pages = 0;
    loop {
        let out = query()
            .max_datapoints(7)
            .set_next_token(token.clone())
            .send()
            .await
            .unwrap();
        pages += 1;
        for r in out.metric_data_results() {
            let id = r.id().unwrap().to_string();
            match paged.iter_mut().find(|(i, _)| *i == id) {
                Some((_, v)) => v.extend_from_slice(r.values()),
                None => paged.push((id, r.values().to_vec())),
            }
            let total: usize = out.metric_data_results().iter().map(|r| r.values().len()).sum();
            assert!(total <= 7);
        }
        token = out.next_token().map(str::to_string);
        if token.is_none() {
            break;
        }
        assert_eq!(
            out.metric_data_results().last().unwrap().status_code(),
            Some(&StatusCode::PartialData),
            "a page that stops mid-series marks it partial"
        );
    }
    assert!(pages > 2);
    let whole: Vec<(String, Vec<f64>)> = whole
        .metric_data_results()
        .iter()
        .map(|r| (r.id().unwrap().to_string(), r.values().to_vec()))
        .collect();
    assert_eq!(paged, whole);

    // A token from another request is refused.
    let e = cw
        .get_metric_data()
        .start_time(datetime(start - jiff::SignedDuration::from_mins(5)))
        .end_time(datetime(end))
        .metric_data_queries(metric_query(
            "x",
            "orders",
            "lastCheckpointDuration",
            "Maximum",
            60,
        ))
        .next_token(
            query()
                .max_datapoints(7)
                .send()
                .await
                .unwrap()
                .next_token()
                .unwrap(),
        )
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(e.is_invalid_next_token(), "{e:?}");

    // AWS's limit: 500 queries per request.
    let mut too_many = cw
        .get_metric_data()
        .start_time(datetime(start))
        .end_time(datetime(end));
    for i in 0..501 {
        too_many =
            too_many.metric_data_queries(metric_query(&format!("q{i}"), "orders", "KPUs", "Average", 60));
    }
    let e = too_many.send().await.unwrap_err().into_service_error();
    assert_eq!(e.code(), Some("InvalidParameterValue"), "{e:?}");
    assert!(e.message().unwrap().contains("500"));

    // GetMetricStatistics.
    let stats = cw
        .get_metric_statistics()
        .namespace("AWS/KinesisAnalytics")
        .metric_name("cpuUtilization")
        .dimensions(
            cw::types::Dimension::builder()
                .name("Application")
                .value("orders")
                .build(),
        )
        .start_time(datetime(start))
        .end_time(datetime(end))
        .period(300)
        .statistics(Statistic::Average)
        .statistics(Statistic::Maximum)
        .send()
        .await
        .unwrap();
    assert_eq!(stats.label(), Some("cpuUtilization"));
    assert_eq!(stats.datapoints().len(), 6);
    for d in stats.datapoints() {
        assert!(d.maximum().unwrap() >= d.average().unwrap());
        assert_eq!(d.unit(), Some(&cw::types::StandardUnit::Percent));
    }
    let e = cw
        .get_metric_statistics()
        .namespace("AWS/KinesisAnalytics")
        .metric_name("cpuUtilization")
        .start_time(datetime(start - jiff::SignedDuration::from_hours(48)))
        .end_time(datetime(end))
        .period(60)
        .statistics(Statistic::Average)
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(e.is_invalid_parameter_combination_exception(), "{e:?}");

    // ListMetrics.
    let listed = cw
        .list_metrics()
        .namespace("AWS/KinesisAnalytics")
        .dimensions(
            cw::types::DimensionFilter::builder()
                .name("Application")
                .value("orders")
                .build(),
        )
        .send()
        .await
        .unwrap();
    let names: Vec<&str> = listed.metrics().iter().filter_map(|m| m.metric_name()).collect();
    for metric in METRICS {
        assert!(names.contains(&metric), "{metric} missing from {names:?}");
    }
    assert!(
        listed
            .metrics()
            .iter()
            .all(|m| m.dimensions()[0].value() == Some("orders"))
    );

    // PutMetricData, small and gzip-compressed (above the SDK's 10 KiB threshold).
    cw.put_metric_data()
        .namespace("Custom/Emulator")
        .metric_data(
            cw::types::MetricDatum::builder()
                .metric_name("jobs")
                .value(3.0)
                .timestamp(datetime(end - jiff::SignedDuration::from_mins(1)))
                .build(),
        )
        .send()
        .await
        .unwrap();
    let mut big = cw.put_metric_data().namespace("Custom/Emulator");
    for i in 0..40 {
        big = big.metric_data(
            cw::types::MetricDatum::builder()
                .metric_name(format!("series{i}"))
                .dimensions(
                    cw::types::Dimension::builder()
                        .name("Shard")
                        .value(format!("shard-{i}"))
                        .build(),
                )
                .set_values(Some((0..150).map(f64::from).collect()))
                .timestamp(datetime(end - jiff::SignedDuration::from_mins(1)))
                .build(),
        );
    }
    big.send().await.unwrap();
    let custom = cw
        .list_metrics()
        .namespace("Custom/Emulator")
        .send()
        .await
        .unwrap();
    assert_eq!(custom.metrics().len(), 41);
    let read = cw
        .get_metric_data()
        .start_time(datetime(start))
        .end_time(datetime(end))
        .metric_data_queries(
            cw::types::MetricDataQuery::builder()
                .id("jobs")
                .metric_stat(
                    cw::types::MetricStat::builder()
                        .metric(
                            cw::types::Metric::builder()
                                .namespace("Custom/Emulator")
                                .metric_name("jobs")
                                .build(),
                        )
                        .period(60)
                        .stat("Sum")
                        .build(),
                )
                .build(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(read.metric_data_results()[0].values(), &[3.0]);
    let e = cw
        .put_metric_data()
        .namespace("AWS/KinesisAnalytics")
        .metric_data(
            cw::types::MetricDatum::builder()
                .metric_name("x")
                .value(1.0)
                .build(),
        )
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(e.is_invalid_parameter_value_exception(), "{e:?}");

    let unsigned = cw_client(&env.emu.endpoint_url(), 1, true).await;
    let e = unsigned
        .list_metrics()
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert_eq!(e.code(), Some("MissingAuthenticationToken"), "{e:?}");

    let gmd = env.emu.state().calls(&CallFilter {
        operation: Some("GetMetricData".into()),
        ..CallFilter::default()
    });
    assert_eq!(gmd[0].metric_queries, Some(14));
    assert_eq!(
        gmd[0].applications,
        vec!["orders".to_string(), "payments".to_string()]
    );
}

#[tokio::test]
async fn faults_are_injected_and_calls_counted() {
    use kda::{
        error::ProvideErrorMetadata as _, operation::update_application::UpdateApplicationError,
        types::ApplicationStatus,
    };
    let env = Env::start(&["orders", "payments"], 3).await;
    let kda = &env.kda;
    let state = env.emu.state();

    // Throttling once: the SDK retries and succeeds; the log shows both attempts.
    env.arm(
        FaultKind::Throttling,
        Some("DescribeApplication"),
        Some("orders"),
        Some(1),
    );
    describe(kda, "orders").await;
    let calls = state.calls(&CallFilter {
        operation: Some("DescribeApplication".into()),
        ..CallFilter::default()
    });
    assert_eq!(calls.len(), 2);
    assert_eq!(
        (calls[0].status, calls[0].error_code.as_deref()),
        (400, Some("ThrottlingException"))
    );
    assert_eq!(calls[1].status, 200);

    // Throttling that outlasts the retries surfaces as ThrottlingException.
    let id = env.arm(FaultKind::Throttling, Some("DescribeApplication"), None, None);
    let e = kda
        .describe_application()
        .application_name("orders")
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert_eq!(e.code(), Some("ThrottlingException"));
    assert!(state.clear_fault(id));
    assert_eq!(state.faults().len(), 0);

    // A 503 from CloudWatch is retried as transient.
    state.reset_calls();
    env.emu
        .state()
        .arm_fault(FaultSpec {
            kind: FaultKind::ServerError { status: 503 },
            service: Some(Service::CloudWatch),
            operation: None,
            application: None,
            count: Some(1),
        })
        .unwrap();
    env.cw.list_metrics().send().await.unwrap();
    let statuses: Vec<u16> = state
        .calls(&CallFilter::default())
        .iter()
        .map(|c| c.status)
        .collect();
    assert_eq!(statuses, vec![503, 200]);

    // AccessDenied, scoped to one application and operation.
    env.arm(
        FaultKind::AccessDenied,
        Some("UpdateApplication"),
        Some("orders"),
        None,
    );
    let version = describe(kda, "orders").await.application_version_id();
    let update = |name: &'static str, version: i64| {
        kda.update_application()
            .application_name(name)
            .current_application_version_id(version)
            .application_configuration_update(parallelism_update(4, 1, true))
            .send()
    };
    let e = update("orders", version).await.unwrap_err().into_service_error();
    assert_eq!(e.code(), Some("AccessDeniedException"), "{e:?}");
    let payments_version = describe(kda, "payments").await.application_version_id();
    update("payments", payments_version).await.unwrap();
    state.clear_faults();

    // An injected ConcurrentModification looks like a lost race.
    env.arm(FaultKind::ConcurrentModification, None, Some("orders"), Some(1));
    describe(kda, "orders").await; // reads are not affected
    let e = update("orders", version).await.unwrap_err().into_service_error();
    assert!(
        matches!(e, UpdateApplicationError::ConcurrentModificationException(_)),
        "{e:?}"
    );

    // Stuck UPDATING: reported as UPDATING and refusing updates until cleared.
    let stuck = env.arm(FaultKind::StuckUpdating, None, Some("orders"), None);
    assert_eq!(
        describe(kda, "orders").await.application_status(),
        &ApplicationStatus::Updating
    );
    let e = update("orders", version).await.unwrap_err().into_service_error();
    assert!(
        matches!(e, UpdateApplicationError::ResourceInUseException(_)),
        "{e:?}"
    );
    env.advance(600);
    assert_eq!(
        describe(kda, "orders").await.application_status(),
        &ApplicationStatus::Updating
    );
    let listed = kda.list_applications().send().await.unwrap();
    let statuses: Vec<(&str, &ApplicationStatus)> = listed
        .application_summaries()
        .iter()
        .map(|s| (s.application_name(), s.application_status()))
        .collect();
    assert_eq!(
        statuses,
        vec![
            ("orders", &ApplicationStatus::Updating),
            ("payments", &ApplicationStatus::Running)
        ]
    );
    state.clear_fault(stuck);
    assert_eq!(
        describe(kda, "orders").await.application_status(),
        &ApplicationStatus::Running
    );

    // Latency delays without failing (the delay itself is not timed here).
    env.arm(
        FaultKind::Latency { millis: 20 },
        Some("ListApplications"),
        None,
        Some(1),
    );
    kda.list_applications().send().await.unwrap();
    assert!(state.faults().is_empty());

    // CloudWatch's AccessDenied uses its legacy code.
    env.emu
        .state()
        .arm_fault(FaultSpec {
            kind: FaultKind::AccessDenied,
            service: Some(Service::CloudWatch),
            operation: Some("GetMetricData".into()),
            application: Some("orders".into()),
            count: None,
        })
        .unwrap();
    let end = env.now();
    let e = env
        .cw
        .get_metric_data()
        .start_time(datetime(end - jiff::SignedDuration::from_mins(10)))
        .end_time(datetime(end))
        .metric_data_queries(metric_query("a", "orders", "KPUs", "Average", 60))
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert_eq!(e.code(), Some("AccessDenied"), "{e:?}");
    env.cw
        .get_metric_data()
        .start_time(datetime(end - jiff::SignedDuration::from_mins(10)))
        .end_time(datetime(end))
        .metric_data_queries(metric_query("a", "payments", "KPUs", "Average", 60))
        .send()
        .await
        .unwrap();
}

/// One HTTP/1.1 exchange over a fresh connection; returns the status and the body (the
/// harness speaks to the control API with it too).
pub(crate) async fn http(addr: SocketAddr, method: &str, path: &str, body: &str) -> (u16, String) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.unwrap();
    let text = String::from_utf8(response).unwrap();
    let status: u16 = text.split(' ').nth(1).unwrap().parse().unwrap();
    let (head, rest) = text.split_once("\r\n\r\n").unwrap();
    let body = if head.to_ascii_lowercase().contains("transfer-encoding: chunked") {
        // Join the chunks (sizes in hex on their own lines).
        let mut out = String::new();
        let mut lines = rest.split("\r\n");
        while let Some(size) = lines.next() {
            let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
            if n == 0 {
                break;
            }
            out.push_str(lines.next().unwrap_or(""));
        }
        out
    } else {
        rest.to_string()
    };
    (status, body)
}

#[tokio::test]
async fn the_control_api_sets_the_stage() {
    let env = Env::start(&[], 1).await;
    let addr = env.emu.addr();

    let (status, body) = http(addr, "GET", "/_emulator/health", "").await;
    assert_eq!(status, 200);
    assert!(body.contains("\"ok\""));

    let yaml = "name: steady\napplication: {name: ignored, parallelism: 2}\nduration: 1h\nload:\n  phases: [{shape: steady, rate: 500}]\n";
    let (status, body) = http(addr, "POST", "/_emulator/scenarios?name=from-control", yaml).await;
    assert_eq!(status, 201, "{body}");
    let created: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(created["application"]["ApplicationName"], "from-control");
    assert_eq!(created["application"]["ApplicationStatus"], "RUNNING");
    let (status, _) = http(addr, "POST", "/_emulator/scenarios?name=from-control", yaml).await;
    assert_eq!(status, 400, "a second application of the same name is refused");
    let json = r#"{"name": "json", "application": {"name": "as-json", "parallelism": 3}, "duration": "1h",
                   "load": {"phases": [{"shape": "steady", "rate": 100}]}}"#;
    let (status, body) = http(addr, "POST", "/_emulator/scenarios", json).await;
    assert_eq!(status, 201, "{body}");
    assert!(body.contains("\"ApplicationName\":\"as-json\""), "{body}");
    let (status, body) = http(addr, "POST", "/_emulator/scenarios", "name: x\n").await;
    assert_eq!(status, 400);
    assert!(body.contains("error"));

    let (_, body) = http(addr, "GET", "/_emulator/applications", "").await;
    let apps: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(apps["applications"].as_array().unwrap().len(), 2);
    assert_eq!(
        apps["applications"][1]["ApplicationConfigurationDescription"]["FlinkApplicationConfigurationDescription"]
            ["ParallelismConfigurationDescription"]["Parallelism"],
        2
    );

    let (status, body) = http(
        addr,
        "POST",
        "/_emulator/faults",
        r#"{"kind":"throttling","operation":"DescribeApplication","application":"from-control","count":2}"#,
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let id = serde_json::from_str::<serde_json::Value>(&body).unwrap()["id"]
        .as_u64()
        .unwrap();
    let (_, body) = http(addr, "GET", "/_emulator/faults", "").await;
    assert!(body.contains("\"remaining\":2"), "{body}");
    let (status, _) = http(
        addr,
        "POST",
        "/_emulator/faults",
        r#"{"kind":"serverError","status":404}"#,
    )
    .await;
    assert_eq!(status, 400);
    let (status, _) = http(addr, "DELETE", &format!("/_emulator/faults/{id}"), "").await;
    assert_eq!(status, 204);
    let (status, _) = http(addr, "DELETE", &format!("/_emulator/faults/{id}"), "").await;
    assert_eq!(status, 404);

    describe(&env.kda, "from-control").await;
    let (_, body) = http(
        addr,
        "GET",
        "/_emulator/calls?service=kinesisanalyticsv2&application=from-control",
        "",
    )
    .await;
    let calls: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(calls["calls"].as_array().unwrap().len(), 1);
    assert_eq!(calls["calls"][0]["operation"], "DescribeApplication");
    assert_eq!(calls["calls"][0]["status"], 200);
    let (_, body) = http(
        addr,
        "GET",
        "/_emulator/calls/summary?service=kinesisanalyticsv2",
        "",
    )
    .await;
    let summary: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(summary["total"], 1);
    assert_eq!(
        summary["byOperation"]["kinesisanalyticsv2:DescribeApplication"],
        1
    );
    let (status, _) = http(addr, "DELETE", "/_emulator/calls", "").await;
    assert_eq!(status, 204);
    let (_, body) = http(addr, "GET", "/_emulator/calls", "").await;
    assert_eq!(body, r#"{"calls":[]}"#);

    let before = env.now();
    let (status, body) = http(addr, "POST", "/_emulator/clock/advance", r#"{"seconds": 600}"#).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(env.now(), before + jiff::SignedDuration::from_secs(600));
    let (status, _) = http(addr, "POST", "/_emulator/clock/advance", r#"{"seconds": -1}"#).await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn the_server_stops_on_shutdown() {
    let env = Env::start(&["orders"], 1).await;
    let addr = env.emu.addr();
    env.emu.shutdown().await.unwrap();
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}
