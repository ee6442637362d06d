//! [`ApplicationControl`] over the Managed Service for Apache Flink API
//! (`aws-sdk-kinesisanalyticsv2`).

use std::sync::Arc;

use async_trait::async_trait;
use aws_sdk_kinesisanalyticsv2::types::{
    ApplicationConfigurationUpdate, ApplicationDetail, ApplicationOperationInfoDetails,
    ApplicationRestoreConfiguration, ApplicationRestoreType, ApplicationStatus, ConfigurationType,
    FlinkApplicationConfigurationUpdate, OperationStatus as SdkOperationStatus,
    ParallelismConfigurationUpdate, RunConfigurationUpdate,
};
use jiff::Timestamp;
use tracing::debug;

use super::{
    ApplicationControl, ApplicationDescription, AwsClients, AwsError, MAX_OPERATIONS_LISTED, OperationState,
    OperationStatus, OperationSummary, Restore, SnapshotCount, Target, UpdateRequest, stats::AwsOperation,
};
use crate::policy::{AppConfig, AppStatus};

/// The largest page the List operations return (API reference: `Limit` 1..50).
const PAGE: usize = 50;

/// The SDK implementation of [`ApplicationControl`].
#[derive(Clone, Debug)]
pub struct KinesisControl {
    clients: Arc<AwsClients>,
}

impl KinesisControl {
    /// Calls AWS through `clients` (and counts the calls in its [`CallStats`](super::CallStats)).
    pub fn new(clients: Arc<AwsClients>) -> Self {
        Self { clients }
    }

    fn count<T>(&self, operation: AwsOperation, result: &Result<T, AwsError>) {
        let stats = self.clients.stats();
        stats.record_call(operation);
        if let Err(err) = result {
            stats.record_error(err);
            debug!(operation = operation.name(), reason = err.reason(), error = %err, "AWS call failed");
        }
    }
}

#[async_trait]
impl ApplicationControl for KinesisControl {
    async fn describe(&self, target: &Target, name: &str) -> Result<ApplicationDescription, AwsError> {
        let op = AwsOperation::DescribeApplication;
        let client = self.clients.clients(target).await.kinesis;
        let result = client
            .describe_application()
            .application_name(name)
            .customize()
            .interceptor(self.clients.attempt_counter(op))
            .send()
            .await
            .map_err(|e| AwsError::from_sdk(op, e))
            .and_then(|out| match out.application_detail() {
                Some(detail) => description_from_detail(detail),
                None => Err(AwsError::UnexpectedResponse(format!(
                    "DescribeApplication: no ApplicationDetail for {name}"
                ))),
            });
        self.count(op, &result);
        result
    }

    async fn list_tags(&self, target: &Target, arn: &str) -> Result<Vec<(String, String)>, AwsError> {
        let op = AwsOperation::ListTagsForResource;
        let client = self.clients.clients(target).await.kinesis;
        let result = client
            .list_tags_for_resource()
            .resource_arn(arn)
            .customize()
            .interceptor(self.clients.attempt_counter(op))
            .send()
            .await
            .map_err(|e| AwsError::from_sdk(op, e))
            .map(|out| {
                out.tags()
                    .iter()
                    .map(|t| (t.key().to_string(), t.value().unwrap_or_default().to_string()))
                    .collect()
            });
        self.count(op, &result);
        result
    }

    async fn update(&self, target: &Target, request: &UpdateRequest) -> Result<String, AwsError> {
        let op = AwsOperation::UpdateApplication;
        let (configuration, run) = update_parts(request)?;
        let client = self.clients.clients(target).await.kinesis;
        // NB: one attempt, never retried by the SDK. A write that timed out or failed with a
        // 5xx may have taken effect; a retry would then be refused (the version moved) and
        // hide that it did. The controller records its intent first and, on an ambiguous
        // error, learns what happened from the application before it decides again.
        let one_attempt = aws_sdk_kinesisanalyticsv2::config::Builder::default()
            .retry_config(aws_config::retry::RetryConfig::disabled());
        let result = client
            .update_application()
            .application_name(&request.name)
            .current_application_version_id(request.current_version_id)
            .application_configuration_update(configuration)
            .run_configuration_update(run)
            .customize()
            .config_override(one_attempt)
            .interceptor(self.clients.attempt_counter(op))
            .send()
            .await
            .map_err(|e| AwsError::from_sdk(op, e))
            .and_then(|out| match out.operation_id() {
                Some(id) if !id.is_empty() => Ok(id.to_string()),
                // NB: the update may well have been applied: the caller judges it from the
                // application rather than taking this for a refusal.
                _ => Err(AwsError::UnexpectedResponse(format!(
                    "UpdateApplication: {} answered without an OperationId",
                    request.name
                ))),
            });
        self.count(op, &result);
        result
    }

    async fn describe_operation(
        &self,
        target: &Target,
        name: &str,
        operation_id: &str,
    ) -> Result<OperationStatus, AwsError> {
        let op = AwsOperation::DescribeApplicationOperation;
        let client = self.clients.clients(target).await.kinesis;
        let result = client
            .describe_application_operation()
            .application_name(name)
            .operation_id(operation_id)
            .customize()
            .interceptor(self.clients.attempt_counter(op))
            .send()
            .await
            .map_err(|e| AwsError::from_sdk(op, e))
            .and_then(|out| match out.application_operation_info_details() {
                Some(details) => operation_from_details(operation_id, details),
                None => Err(AwsError::UnexpectedResponse(format!(
                    "DescribeApplicationOperation: no details for operation {operation_id} of {name}"
                ))),
            });
        self.count(op, &result);
        result
    }

    async fn own_account(&self) -> Result<String, AwsError> {
        self.clients.own_account().await
    }
    async fn list_operations(&self, target: &Target, name: &str) -> Result<Vec<OperationSummary>, AwsError> {
        let op = AwsOperation::ListApplicationOperations;
        let client = self.clients.clients(target).await.kinesis;
        let mut listed = Vec::new();
        let mut token: Option<String> = None;
        // NB: bounded pages, whatever the service says: a NextToken that never ends (or an
        // application with a long history) costs at most four calls.
        for _ in 0..MAX_OPERATIONS_LISTED.div_ceil(PAGE) {
            let result = client
                .list_application_operations()
                .application_name(name)
                .limit(PAGE as i32)
                .set_next_token(token.take())
                .customize()
                .interceptor(self.clients.attempt_counter(op))
                .send()
                .await
                .map_err(|e| AwsError::from_sdk(op, e));
            self.count(op, &result);
            let out = result?;
            listed.extend(
                out.application_operation_info_list()
                    .iter()
                    .filter_map(summary_from_info),
            );
            match out.next_token() {
                Some(next) if !next.is_empty() && listed.len() < MAX_OPERATIONS_LISTED => {
                    token = Some(next.to_string())
                }
                _ => break,
            }
        }
        listed.sort_by_key(|o| std::cmp::Reverse(o.started));
        listed.truncate(MAX_OPERATIONS_LISTED);
        Ok(listed)
    }

    async fn count_snapshots(
        &self,
        target: &Target,
        name: &str,
        limit: u32,
    ) -> Result<SnapshotCount, AwsError> {
        let op = AwsOperation::ListApplicationSnapshots;
        let client = self.clients.clients(target).await.kinesis;
        let mut count: u32 = 0;
        let mut token: Option<String> = None;
        loop {
            let result = client
                .list_application_snapshots()
                .application_name(name)
                .limit(PAGE as i32)
                .set_next_token(token.take())
                .customize()
                .interceptor(self.clients.attempt_counter(op))
                .send()
                .await
                .map_err(|e| AwsError::from_sdk(op, e));
            self.count(op, &result);
            let out = result?;
            let page = u32::try_from(out.snapshot_summaries().len()).unwrap_or(u32::MAX);
            count = count.saturating_add(page);
            let next = out.next_token().filter(|t| !t.is_empty() && page > 0);
            match next {
                None => {
                    return Ok(SnapshotCount {
                        count,
                        complete: true,
                    });
                }
                // NB: at most ceil(limit / 50) calls, however many snapshots there are.
                Some(_) if count >= limit => {
                    return Ok(SnapshotCount {
                        count,
                        complete: false,
                    });
                }
                Some(next) => token = Some(next.to_string()),
            }
        }
    }
}

/// Maps one `ApplicationOperationInfo`; one without an id or a status it cannot read is
/// left out (it cannot be followed or judged).
fn summary_from_info(
    info: &aws_sdk_kinesisanalyticsv2::types::ApplicationOperationInfo,
) -> Option<OperationSummary> {
    let status = match info.operation_status()? {
        SdkOperationStatus::InProgress => OperationState::InProgress,
        SdkOperationStatus::Successful => OperationState::Successful,
        SdkOperationStatus::Failed => OperationState::Failed,
        SdkOperationStatus::Cancelled => OperationState::Cancelled,
        _ => return None,
    };
    Some(OperationSummary {
        operation_id: info.operation_id().filter(|id| !id.is_empty())?.to_string(),
        operation: info.operation().unwrap_or_default().to_string(),
        status,
        started: info.start_time().and_then(timestamp),
        ended: if status.is_terminal() {
            info.end_time().and_then(timestamp)
        } else {
            None
        },
    })
}

/// Maps `DescribeApplication`'s `ApplicationDetail` into our description.
pub(crate) fn description_from_detail(
    detail: &ApplicationDetail,
) -> Result<ApplicationDescription, AwsError> {
    let name = detail.application_name();
    let unexpected =
        |what: &str| AwsError::UnexpectedResponse(format!("DescribeApplication: {name}: {what}"));
    let parallelism = detail
        .application_configuration_description()
        .and_then(|c| c.flink_application_configuration_description())
        .and_then(|f| f.parallelism_configuration_description())
        .ok_or_else(|| unexpected("no ParallelismConfigurationDescription (not a Flink application?)"))?;
    let positive = |value: Option<i32>, field: &str| -> Result<Option<u32>, AwsError> {
        match value {
            None => Ok(None),
            Some(v) if v >= 1 => Ok(Some(v as u32)),
            Some(v) => Err(unexpected(&format!("{field} is {v}"))),
        }
    };
    let configured =
        positive(parallelism.parallelism(), "Parallelism")?.ok_or_else(|| unexpected("no Parallelism"))?;
    // NB: the service reports CurrentParallelism once the job runs; before that the
    // configured Parallelism is what it will start with.
    let current = positive(parallelism.current_parallelism(), "CurrentParallelism")?.unwrap_or(configured);
    // ParallelismPerKPU defaults to 1 in the service when never set.
    let per_kpu = positive(parallelism.parallelism_per_kpu(), "ParallelismPerKPU")?.unwrap_or(1);
    let configuration_type = parallelism
        .configuration_type()
        .map(|t| t.as_str().to_string())
        .unwrap_or_else(|| ConfigurationType::Default.as_str().to_string());
    // With ConfigurationType DEFAULT the service scales on its own.
    let service_autoscaling = parallelism
        .auto_scaling_enabled()
        .unwrap_or(configuration_type == ConfigurationType::Default.as_str());
    let configuration = detail.application_configuration_description();
    let snapshots_enabled = configuration
        .and_then(|c| c.application_snapshot_configuration_description())
        .map(|s| s.snapshots_enabled());
    let restore = configuration
        .and_then(|c| c.run_configuration_description())
        .and_then(|r| r.application_restore_configuration_description())
        .map(|r| match r.application_restore_type() {
            ApplicationRestoreType::RestoreFromLatestSnapshot => Ok(Restore::Latest),
            ApplicationRestoreType::RestoreFromCustomSnapshot => {
                Ok(Restore::Custom(r.snapshot_name().unwrap_or_default().to_string()))
            }
            ApplicationRestoreType::SkipRestoreFromSnapshot => Ok(Restore::Skip),
            other => Err(unexpected(&format!(
                "unknown ApplicationRestoreType {}",
                other.as_str()
            ))),
        })
        .transpose()?;
    // NB: AWS reports MetricsLevel under FlinkApplicationConfigurationDescription
    // (https://docs.aws.amazon.com/managed-flink/latest/apiv2/API_MonitoringConfigurationDescription.html);
    // a level this controller does not know is kept as reported and read as APPLICATION.
    let metrics_level = configuration
        .and_then(|c| c.flink_application_configuration_description())
        .and_then(|f| f.monitoring_configuration_description())
        .and_then(|m| m.metrics_level())
        .map(|l| l.as_str().to_string());
    let runtime = Some(detail.runtime_environment().as_str().to_string()).filter(|r| !r.is_empty());
    Ok(ApplicationDescription {
        metrics_level,
        runtime,
        name: name.to_string(),
        arn: detail.application_arn().to_string(),
        status: app_status(detail.application_status()),
        version_id: detail.application_version_id(),
        config: AppConfig::new(current, per_kpu),
        configured_parallelism: configured,
        configuration_type,
        service_autoscaling,
        conditional_token: detail.conditional_token().map(str::to_string),
        created: detail.create_timestamp().and_then(timestamp),
        snapshots_enabled,
        restore,
    })
}

/// The parallelism change and the restore mode of an `UpdateApplication`.
pub(crate) fn update_parts(
    request: &UpdateRequest,
) -> Result<(ApplicationConfigurationUpdate, RunConfigurationUpdate), AwsError> {
    let invalid = |field: &str, value: u32| {
        AwsError::InvalidArgument(format!(
            "UpdateApplication: {}: {field} {value} is out of range",
            request.name
        ))
    };
    let to_i32 = |field: &str, value: u32| match i32::try_from(value) {
        Ok(v) if v >= 1 => Ok(v),
        _ => Err(invalid(field, value)),
    };
    let parallelism = to_i32("Parallelism", request.to.parallelism)?;
    let per_kpu = to_i32("ParallelismPerKPU", request.to.parallelism_per_kpu)?;
    let configuration = ApplicationConfigurationUpdate::builder()
        .flink_application_configuration_update(
            FlinkApplicationConfigurationUpdate::builder()
                .parallelism_configuration_update(
                    ParallelismConfigurationUpdate::builder()
                        // The service ignores the parallelism fields unless CUSTOM.
                        .configuration_type_update(ConfigurationType::Custom)
                        .parallelism_update(parallelism)
                        .parallelism_per_kpu_update(per_kpu)
                        .auto_scaling_enabled_update(request.service_autoscaling)
                        .build(),
                )
                .build(),
        )
        .build();
    let restore = match &request.restore {
        Restore::Latest => ApplicationRestoreConfiguration::builder()
            .application_restore_type(ApplicationRestoreType::RestoreFromLatestSnapshot),
        Restore::Custom(name) => ApplicationRestoreConfiguration::builder()
            .application_restore_type(ApplicationRestoreType::RestoreFromCustomSnapshot)
            .snapshot_name(name),
        Restore::Skip => ApplicationRestoreConfiguration::builder()
            .application_restore_type(ApplicationRestoreType::SkipRestoreFromSnapshot),
    }
    .build()
    .map_err(|e| AwsError::Other(format!("UpdateApplication: restore configuration: {e}")))?;
    let run = RunConfigurationUpdate::builder()
        .application_restore_configuration(restore)
        .build();
    Ok((configuration, run))
}

/// Maps `DescribeApplicationOperation`'s details.
pub(crate) fn operation_from_details(
    operation_id: &str,
    details: &ApplicationOperationInfoDetails,
) -> Result<OperationStatus, AwsError> {
    let status = match details.operation_status() {
        SdkOperationStatus::InProgress => OperationState::InProgress,
        SdkOperationStatus::Successful => OperationState::Successful,
        SdkOperationStatus::Failed => OperationState::Failed,
        SdkOperationStatus::Cancelled => OperationState::Cancelled,
        other => {
            return Err(AwsError::UnexpectedResponse(format!(
                "DescribeApplicationOperation: operation {operation_id}: unknown status {}",
                other.as_str()
            )));
        }
    };
    let failure = details.operation_failure_details().map(|f| {
        let text = f
            .error_info()
            .and_then(|e| e.error_string())
            .unwrap_or("the operation failed without details");
        match f.rollback_operation_id() {
            Some(rollback) => format!("{text} (rolled back by operation {rollback})"),
            None => text.to_string(),
        }
    });
    Ok(OperationStatus {
        operation_id: operation_id.to_string(),
        operation: Some(details.operation().to_string()).filter(|o| !o.is_empty()),
        version_change: details.application_version_change_details().map(|c| {
            (
                c.application_version_updated_from(),
                c.application_version_updated_to(),
            )
        }),
        status,
        started: timestamp(details.start_time()),
        // NB: the SDK models EndTime as required, so an operation still in progress
        // deserializes with the epoch; only a finished one has a meaningful end.
        ended: if status.is_terminal() {
            timestamp(details.end_time())
        } else {
            None
        },
        failure: if status == OperationState::Successful {
            None
        } else {
            failure
        },
    })
}

fn timestamp(t: &aws_smithy_types::DateTime) -> Option<Timestamp> {
    if t.secs() == 0 && t.subsec_nanos() == 0 {
        return None;
    }
    Timestamp::new(t.secs(), t.subsec_nanos() as i32).ok()
}

fn app_status(status: &ApplicationStatus) -> AppStatus {
    match status {
        ApplicationStatus::Deleting => AppStatus::Deleting,
        ApplicationStatus::Starting => AppStatus::Starting,
        ApplicationStatus::Stopping => AppStatus::Stopping,
        ApplicationStatus::Ready => AppStatus::Ready,
        ApplicationStatus::Running => AppStatus::Running,
        ApplicationStatus::Updating => AppStatus::Updating,
        ApplicationStatus::Autoscaling => AppStatus::Autoscaling,
        ApplicationStatus::ForceStopping => AppStatus::ForceStopping,
        ApplicationStatus::RollingBack => AppStatus::RollingBack,
        ApplicationStatus::Maintenance => AppStatus::Maintenance,
        ApplicationStatus::RolledBack => AppStatus::RolledBack,
        _ => AppStatus::Unknown,
    }
}

#[cfg(test)]
mod tests {
    use aws_sdk_kinesisanalyticsv2::types::{
        ApplicationConfigurationDescription, ErrorInfo, FlinkApplicationConfigurationDescription,
        OperationFailureDetails, ParallelismConfigurationDescription, RuntimeEnvironment,
    };
    use aws_smithy_types::DateTime;

    use super::*;

    fn detail(parallelism: ParallelismConfigurationDescription) -> ApplicationDetail {
        ApplicationDetail::builder()
            .application_arn("arn:aws:kinesisanalytics:eu-west-1:123456789012:application/orders")
            .application_name("orders")
            .runtime_environment(RuntimeEnvironment::Flink120)
            .application_status(ApplicationStatus::Running)
            .application_version_id(7)
            .conditional_token("tok")
            .create_timestamp(DateTime::from_secs(1_700_000_000))
            .application_configuration_description(
                ApplicationConfigurationDescription::builder()
                    .flink_application_configuration_description(
                        FlinkApplicationConfigurationDescription::builder()
                            .parallelism_configuration_description(parallelism)
                            .build(),
                    )
                    .build(),
            )
            .build()
            .unwrap()
    }

    #[test]
    fn describe_maps_current_parallelism_and_per_kpu() {
        let d = description_from_detail(&detail(
            ParallelismConfigurationDescription::builder()
                .configuration_type(ConfigurationType::Custom)
                .parallelism(4)
                .current_parallelism(8)
                .parallelism_per_kpu(2)
                .auto_scaling_enabled(true)
                .build(),
        ))
        .unwrap();
        assert_eq!(d.name, "orders");
        assert_eq!(d.status, AppStatus::Running);
        assert_eq!(d.version_id, 7);
        assert_eq!(d.config, AppConfig::new(8, 2));
        assert_eq!(d.configured_parallelism, 4);
        assert_eq!(d.configuration_type, "CUSTOM");
        assert!(d.service_autoscaling);
        assert_eq!(d.conditional_token.as_deref(), Some("tok"));
        assert_eq!(d.created, Some(Timestamp::from_second(1_700_000_000).unwrap()));
    }

    #[test]
    fn describe_defaults_when_fields_are_absent() {
        let d = description_from_detail(&detail(
            ParallelismConfigurationDescription::builder()
                .configuration_type(ConfigurationType::Default)
                .parallelism(1)
                .build(),
        ))
        .unwrap();
        assert_eq!(d.config, AppConfig::new(1, 1));
        assert!(d.service_autoscaling, "DEFAULT configuration scales on its own");
    }

    #[test]
    fn describe_rejects_missing_or_invalid_parallelism() {
        let missing =
            description_from_detail(&detail(ParallelismConfigurationDescription::builder().build()));
        assert_eq!(missing.unwrap_err().reason(), "UnexpectedResponse");
        let zero = description_from_detail(&detail(
            ParallelismConfigurationDescription::builder()
                .parallelism(4)
                .parallelism_per_kpu(0)
                .build(),
        ));
        assert!(zero.unwrap_err().message().contains("ParallelismPerKPU is 0"));
    }

    #[test]
    fn update_sends_custom_parallelism_and_restores_from_latest_snapshot() {
        let (conf, run) = update_parts(&UpdateRequest {
            name: "orders".into(),
            current_version_id: 7,
            to: AppConfig::new(16, 2),
            service_autoscaling: false,
            restore: Restore::Latest,
        })
        .unwrap();
        let p = conf
            .flink_application_configuration_update()
            .and_then(|f| f.parallelism_configuration_update())
            .unwrap();
        assert_eq!(p.configuration_type_update(), Some(&ConfigurationType::Custom));
        assert_eq!(p.parallelism_update(), Some(16));
        assert_eq!(p.parallelism_per_kpu_update(), Some(2));
        assert_eq!(p.auto_scaling_enabled_update(), Some(false));
        assert_eq!(
            run.application_restore_configuration()
                .map(|r| r.application_restore_type()),
            Some(&ApplicationRestoreType::RestoreFromLatestSnapshot)
        );
    }

    #[test]
    fn update_rejects_out_of_range_values_before_calling_aws() {
        let err = update_parts(&UpdateRequest {
            name: "orders".into(),
            current_version_id: 7,
            to: AppConfig::new(u32::MAX, 1),
            service_autoscaling: false,
            restore: Restore::Latest,
        })
        .unwrap_err();
        assert_eq!(err.reason(), "InvalidArgument");
        let zero = update_parts(&UpdateRequest {
            name: "orders".into(),
            current_version_id: 7,
            to: AppConfig::new(4, 0),
            service_autoscaling: false,
            restore: Restore::Latest,
        });
        assert!(zero.is_err());
    }

    #[test]
    fn operations_map_states_times_and_failures() {
        let running = ApplicationOperationInfoDetails::builder()
            .operation("UpdateApplication")
            .start_time(DateTime::from_secs(1_700_000_000))
            .end_time(DateTime::from_secs(0))
            .operation_status(SdkOperationStatus::InProgress)
            .build()
            .unwrap();
        let s = operation_from_details("op-1", &running).unwrap();
        assert_eq!(s.status, OperationState::InProgress);
        assert_eq!(s.started, Some(Timestamp::from_second(1_700_000_000).unwrap()));
        assert_eq!(s.ended, None);
        assert_eq!(s.failure, None);

        let failed = ApplicationOperationInfoDetails::builder()
            .operation("UpdateApplication")
            .start_time(DateTime::from_secs(1_700_000_000))
            .end_time(DateTime::from_secs(1_700_000_600))
            .operation_status(SdkOperationStatus::Failed)
            .operation_failure_details(
                OperationFailureDetails::builder()
                    .rollback_operation_id("op-2")
                    .error_info(ErrorInfo::builder().error_string("restore failed").build())
                    .build(),
            )
            .build()
            .unwrap();
        let s = operation_from_details("op-1", &failed).unwrap();
        assert_eq!(s.status, OperationState::Failed);
        assert_eq!(s.status.outcome(), crate::policy::Outcome::Failed);
        assert_eq!(s.ended, Some(Timestamp::from_second(1_700_000_600).unwrap()));
        assert_eq!(
            s.failure.as_deref(),
            Some("restore failed (rolled back by operation op-2)")
        );
    }
}
