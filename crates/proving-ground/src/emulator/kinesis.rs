//! `kinesisanalyticsv2` over awsJson1_1: `POST /` with
//! `X-Amz-Target: KinesisAnalytics_20180523.<Operation>`, JSON in and out, errors as
//! `{"__type": ..., "message": ...}`. Field names and shapes follow the API reference
//! (and what `aws-sdk-kinesisanalyticsv2` and botocore send and parse); timestamps are
//! epoch seconds as JSON numbers.

use jiff::Timestamp;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::{
    Backend,
    error::{ApiError, ErrorKind},
};
use crate::{
    aws::catalogue::MetricsLevel,
    sim::{
        self, ApplicationView, ConfigurationType, LogLevel, MonitoringUpdate, OperationStatus, OperationView,
        ParallelismUpdate, RestoreConfig, RestoreType, ServiceError,
    },
};

/// The `X-Amz-Target` prefix of the 2018-05-23 API.
pub const TARGET_PREFIX: &str = "KinesisAnalytics_20180523.";
/// The SigV4 signing name.
pub const SIGNING_NAME: &str = "kinesisanalytics";
/// Page size limit of the List operations (API reference: Limit 1..50).
const MAX_LIMIT: i64 = 50;

/// The operations served.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operation {
    /// `ListApplications`.
    ListApplications,
    /// `DescribeApplication`.
    DescribeApplication,
    /// `UpdateApplication`.
    UpdateApplication,
    /// `DescribeApplicationOperation`.
    DescribeApplicationOperation,
    /// `ListApplicationOperations`.
    ListApplicationOperations,
    /// `RollbackApplication`.
    RollbackApplication,
    /// `CreateApplication`.
    CreateApplication,
    /// `StartApplication`.
    StartApplication,
    /// `StopApplication`.
    StopApplication,
    /// `TagResource`.
    TagResource,
    /// `UntagResource`.
    UntagResource,
    /// `ListTagsForResource`.
    ListTagsForResource,
    /// `ListApplicationSnapshots`.
    ListApplicationSnapshots,
}

impl Operation {
    /// Every operation served.
    pub const ALL: [Operation; 13] = [
        Operation::ListApplications,
        Operation::DescribeApplication,
        Operation::UpdateApplication,
        Operation::DescribeApplicationOperation,
        Operation::ListApplicationOperations,
        Operation::RollbackApplication,
        Operation::CreateApplication,
        Operation::StartApplication,
        Operation::StopApplication,
        Operation::TagResource,
        Operation::UntagResource,
        Operation::ListTagsForResource,
        Operation::ListApplicationSnapshots,
    ];

    /// The operation name as in `X-Amz-Target`.
    pub fn name(self) -> &'static str {
        match self {
            Operation::ListApplications => "ListApplications",
            Operation::DescribeApplication => "DescribeApplication",
            Operation::UpdateApplication => "UpdateApplication",
            Operation::DescribeApplicationOperation => "DescribeApplicationOperation",
            Operation::ListApplicationOperations => "ListApplicationOperations",
            Operation::RollbackApplication => "RollbackApplication",
            Operation::CreateApplication => "CreateApplication",
            Operation::StartApplication => "StartApplication",
            Operation::StopApplication => "StopApplication",
            Operation::TagResource => "TagResource",
            Operation::UntagResource => "UntagResource",
            Operation::ListTagsForResource => "ListTagsForResource",
            Operation::ListApplicationSnapshots => "ListApplicationSnapshots",
        }
    }

    /// Parses an `X-Amz-Target` header value.
    pub fn from_target(target: &str) -> Option<Self> {
        let name = target.strip_prefix(TARGET_PREFIX)?;
        Self::ALL.into_iter().find(|op| op.name() == name)
    }

    /// Whether the operation changes an application.
    pub fn is_mutating(self) -> bool {
        matches!(
            self,
            Operation::UpdateApplication
                | Operation::RollbackApplication
                | Operation::CreateApplication
                | Operation::StartApplication
                | Operation::StopApplication
                | Operation::TagResource
                | Operation::UntagResource
        )
    }
}

/// A decoded request.
#[derive(Clone, Debug, PartialEq)]
pub enum Request {
    /// `ListApplications`.
    ListApplications {
        /// Page size.
        limit: usize,
        /// Offset from a previous page.
        offset: usize,
    },
    /// `DescribeApplication`.
    DescribeApplication {
        /// The application.
        name: String,
    },
    /// `UpdateApplication`.
    UpdateApplication {
        /// The application.
        name: String,
        /// What to change.
        update: sim::UpdateApplication,
    },
    /// `DescribeApplicationOperation`.
    DescribeApplicationOperation {
        /// The application.
        name: String,
        /// The operation.
        operation_id: String,
    },
    /// `ListApplicationOperations`.
    ListApplicationOperations {
        /// The application.
        name: String,
        /// Page size.
        limit: usize,
        /// Offset from a previous page.
        offset: usize,
        /// Only this operation type.
        operation: Option<String>,
        /// Only this status.
        status: Option<OperationStatus>,
    },
    /// `RollbackApplication`.
    RollbackApplication {
        /// The application.
        name: String,
        /// `CurrentApplicationVersionId`.
        version_id: i64,
    },
    /// `CreateApplication` (boxed: it may carry a whole scenario).
    CreateApplication(Box<sim::CreateApplication>),
    /// `StartApplication`.
    StartApplication {
        /// The application.
        name: String,
    },
    /// `StopApplication`.
    StopApplication {
        /// The application.
        name: String,
        /// `Force`.
        force: bool,
    },
    /// `TagResource`.
    TagResource {
        /// The application ARN.
        arn: String,
        /// Tags to add or overwrite.
        tags: Vec<(String, String)>,
    },
    /// `UntagResource`.
    UntagResource {
        /// The application ARN.
        arn: String,
        /// Keys to remove.
        keys: Vec<String>,
    },
    /// `ListTagsForResource`.
    ListTagsForResource {
        /// The application ARN.
        arn: String,
    },
    /// `ListApplicationSnapshots`.
    ListApplicationSnapshots {
        /// The application.
        name: String,
        /// Page size.
        limit: usize,
        /// Offset from a previous page.
        offset: usize,
    },
}

impl Request {
    /// The application the request concerns (from the name or the ARN).
    pub fn application(&self) -> Option<String> {
        match self {
            Request::ListApplications { .. } => None,
            Request::DescribeApplication { name }
            | Request::UpdateApplication { name, .. }
            | Request::DescribeApplicationOperation { name, .. }
            | Request::ListApplicationOperations { name, .. }
            | Request::ListApplicationSnapshots { name, .. }
            | Request::RollbackApplication { name, .. }
            | Request::StartApplication { name }
            | Request::StopApplication { name, .. } => Some(name.clone()),
            Request::CreateApplication(c) => Some(c.name.clone()),
            Request::TagResource { arn, .. }
            | Request::UntagResource { arn, .. }
            | Request::ListTagsForResource { arn } => application_from_arn(arn).map(str::to_string),
        }
    }
}

/// The application name in `arn:aws:kinesisanalytics:<region>:<account>:application/<name>`.
pub fn application_from_arn(arn: &str) -> Option<&str> {
    let (prefix, name) = arn.split_once(":application/")?;
    (prefix.starts_with("arn:") && !name.is_empty()).then_some(name)
}

// ---------------------------------------------------------------------------------------
// Request shapes (the members the emulator reads; others are ignored, as AWS ignores
// members it does not know).

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
struct ListInput {
    limit: Option<i64>,
    next_token: Option<String>,
    application_name: Option<String>,
    operation: Option<String>,
    operation_status: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
struct NameInput {
    application_name: Option<String>,
    operation_id: Option<String>,
    current_application_version_id: Option<i64>,
    force: Option<bool>,
    run_configuration: Option<StartRunConfiguration>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
struct StartRunConfiguration {
    application_restore_configuration: Option<RestoreInput>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
struct UpdateInput {
    application_name: Option<String>,
    current_application_version_id: Option<i64>,
    conditional_token: Option<String>,
    application_configuration_update: Option<Map<String, Value>>,
    run_configuration_update: Option<RunConfigurationUpdate>,
    service_execution_role_update: Option<String>,
    runtime_environment_update: Option<String>,
    cloud_watch_logging_option_updates: Option<Value>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
struct RunConfigurationUpdate {
    application_restore_configuration: Option<RestoreInput>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RestoreInput {
    application_restore_type: Option<String>,
    snapshot_name: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
struct ParallelismInput {
    // Update form.
    configuration_type_update: Option<String>,
    parallelism_update: Option<i64>,
    #[serde(rename = "ParallelismPerKPUUpdate")]
    parallelism_per_kpu_update: Option<i64>,
    auto_scaling_enabled_update: Option<bool>,
    // Create form.
    configuration_type: Option<String>,
    parallelism: Option<i64>,
    #[serde(rename = "ParallelismPerKPU")]
    parallelism_per_kpu: Option<i64>,
    auto_scaling_enabled: Option<bool>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
struct CreateInput {
    application_name: Option<String>,
    application_description: Option<String>,
    runtime_environment: Option<String>,
    service_execution_role: Option<String>,
    application_configuration: Option<Map<String, Value>>,
    tags: Option<Vec<TagInput>>,
    application_mode: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct TagInput {
    key: Option<String>,
    value: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
struct TagsInput {
    #[serde(rename = "ResourceARN")]
    resource_arn: Option<String>,
    tags: Option<Vec<TagInput>>,
    tag_keys: Option<Vec<String>>,
}

fn parse<T: for<'de> Deserialize<'de> + Default>(body: &[u8]) -> Result<T, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(body).map_err(|e| {
        ApiError::new(
            ErrorKind::Serialization,
            format!("Cannot read the request body: {e}"),
        )
    })
}

/// Coral's wording for a missing required member.
fn required<T>(value: Option<T>, member: &str) -> Result<T, ApiError> {
    value.ok_or_else(|| {
        ApiError::new(
            ErrorKind::Validation,
            format!("1 validation error detected: Value null at '{member}' failed to satisfy constraint: Member must not be null"),
        )
    })
}

fn name_of(value: Option<String>) -> Result<String, ApiError> {
    let name = required(value, "applicationName")?;
    if name.is_empty()
        || name.len() > 128
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
    {
        return Err(ApiError::new(
            ErrorKind::Validation,
            format!(
                "1 validation error detected: Value '{name}' at 'applicationName' failed to satisfy constraint: Member must satisfy regular expression pattern: [a-zA-Z0-9_.-]+"
            ),
        ));
    }
    Ok(name)
}

fn page(limit: Option<i64>, next_token: Option<String>) -> Result<(usize, usize), ApiError> {
    let limit = match limit {
        None => MAX_LIMIT,
        Some(l) if (1..=MAX_LIMIT).contains(&l) => l,
        Some(l) => {
            return Err(ApiError::new(
                ErrorKind::InvalidArgument,
                format!("Limit {l} is out of range: it must be between 1 and {MAX_LIMIT}."),
            ));
        }
    };
    let offset = match next_token {
        None => 0,
        Some(t) => t
            .strip_prefix("page-")
            .and_then(|n| n.parse::<usize>().ok())
            .ok_or_else(|| {
                ApiError::new(
                    ErrorKind::InvalidRequest,
                    format!("NextToken {t:?} is not valid."),
                )
            })?,
    };
    Ok((limit as usize, offset))
}

fn token_for(offset: usize) -> String {
    format!("page-{offset}")
}

fn positive(value: Option<i64>, member: &str) -> Result<Option<u32>, ApiError> {
    match value {
        None => Ok(None),
        Some(v) if v >= 1 => u32::try_from(v).map(Some).map_err(|_| {
            ApiError::new(
                ErrorKind::InvalidArgument,
                format!("{member} {v} is out of range."),
            )
        }),
        Some(v) => Err(ApiError::new(
            ErrorKind::InvalidArgument,
            format!("{member} {v} is out of range: it must be at least 1."),
        )),
    }
}

fn configuration_type(value: Option<String>, member: &str) -> Result<Option<ConfigurationType>, ApiError> {
    match value.as_deref() {
        None => Ok(None),
        Some("CUSTOM") => Ok(Some(ConfigurationType::Custom)),
        Some("DEFAULT") => Ok(Some(ConfigurationType::Default)),
        Some(other) => Err(ApiError::new(
            ErrorKind::InvalidArgument,
            format!("{member} {other:?} is not valid: use CUSTOM or DEFAULT."),
        )),
    }
}

fn parallelism_update(v: &Value, create: bool) -> Result<ParallelismUpdate, ApiError> {
    let p: ParallelismInput = serde_json::from_value(v.clone()).map_err(|e| {
        ApiError::new(
            ErrorKind::Serialization,
            format!("Cannot read the parallelism configuration: {e}"),
        )
    })?;
    Ok(if create {
        ParallelismUpdate {
            configuration_type: Some(required(
                configuration_type(p.configuration_type, "ConfigurationType")?,
                "applicationConfiguration.flinkApplicationConfiguration.parallelismConfiguration.configurationType",
            )?),
            parallelism: positive(p.parallelism, "Parallelism")?,
            parallelism_per_kpu: positive(p.parallelism_per_kpu, "ParallelismPerKPU")?,
            auto_scaling_enabled: p.auto_scaling_enabled,
        }
    } else {
        ParallelismUpdate {
            configuration_type: configuration_type(p.configuration_type_update, "ConfigurationTypeUpdate")?,
            parallelism: positive(p.parallelism_update, "ParallelismUpdate")?,
            parallelism_per_kpu: positive(p.parallelism_per_kpu_update, "ParallelismPerKPUUpdate")?,
            auto_scaling_enabled: p.auto_scaling_enabled_update,
        }
    })
}

fn restore_config(r: RestoreInput) -> Result<RestoreConfig, ApiError> {
    let kind = match required(r.application_restore_type, "applicationRestoreType")?.as_str() {
        "SKIP_RESTORE_FROM_SNAPSHOT" => RestoreType::SkipRestoreFromSnapshot,
        "RESTORE_FROM_LATEST_SNAPSHOT" => RestoreType::RestoreFromLatestSnapshot,
        "RESTORE_FROM_CUSTOM_SNAPSHOT" => RestoreType::RestoreFromCustomSnapshot,
        other => {
            return Err(ApiError::new(
                ErrorKind::InvalidArgument,
                format!("ApplicationRestoreType {other:?} is not valid."),
            ));
        }
    };
    if kind == RestoreType::RestoreFromCustomSnapshot && r.snapshot_name.is_none() {
        return Err(ApiError::new(
            ErrorKind::InvalidArgument,
            "SnapshotName is required with RESTORE_FROM_CUSTOM_SNAPSHOT.",
        ));
    }
    Ok(RestoreConfig {
        application_restore_type: kind,
        snapshot_name: r.snapshot_name,
    })
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct MonitoringInput {
    // Create form.
    configuration_type: Option<String>,
    metrics_level: Option<String>,
    log_level: Option<String>,
    // Update form.
    configuration_type_update: Option<String>,
    metrics_level_update: Option<String>,
    log_level_update: Option<String>,
}

/// `MonitoringConfiguration` (create) or `MonitoringConfigurationUpdate` (update).
/// `ConfigurationType` is required on create; `MetricsLevel` is one of APPLICATION, TASK,
/// OPERATOR, PARALLELISM and `LogLevel` one of INFO, WARN, ERROR, DEBUG (API reference,
/// MonitoringConfiguration). Whether the levels are honoured (CUSTOM only) is the
/// service's merge, [`sim::MonitoringView::merge`].
fn monitoring_update(v: &Value, create: bool) -> Result<MonitoringUpdate, ApiError> {
    let m: MonitoringInput = serde_json::from_value(v.clone()).map_err(|e| {
        ApiError::new(
            ErrorKind::Serialization,
            format!("Cannot read the monitoring configuration: {e}"),
        )
    })?;
    let (kind, metrics, log, suffix) = if create {
        (m.configuration_type, m.metrics_level, m.log_level, "")
    } else {
        (
            m.configuration_type_update,
            m.metrics_level_update,
            m.log_level_update,
            "Update",
        )
    };
    let configuration_type = configuration_type(kind, &format!("ConfigurationType{suffix}"))?;
    if create && configuration_type.is_none() {
        required(
            None::<()>,
            "applicationConfiguration.flinkApplicationConfiguration.monitoringConfiguration.configurationType",
        )?;
    }
    let metrics_level = metrics
        .map(|l| {
            MetricsLevel::parse(&l).ok_or_else(|| {
                ApiError::new(
                    ErrorKind::InvalidArgument,
                    format!("MetricsLevel{suffix} {l:?} is not valid: use APPLICATION, TASK, OPERATOR or PARALLELISM."),
                )
            })
        })
        .transpose()?;
    let log_level = log
        .map(|l| {
            LogLevel::parse(&l).ok_or_else(|| {
                ApiError::new(
                    ErrorKind::InvalidArgument,
                    format!("LogLevel{suffix} {l:?} is not valid: use INFO, WARN, ERROR or DEBUG."),
                )
            })
        })
        .transpose()?;
    Ok(MonitoringUpdate {
        configuration_type,
        metrics_level,
        log_level,
    })
}

/// The required boolean `member` of an `ApplicationSnapshotConfiguration(Update)` object.
fn snapshot_flag(v: &Value, member: &str, path: &str) -> Result<bool, ApiError> {
    let object = v.as_object().ok_or_else(|| {
        ApiError::new(
            ErrorKind::Serialization,
            format!("{member}'s parent must be an object."),
        )
    })?;
    match object.get(member) {
        Some(Value::Bool(b)) => Ok(*b),
        None | Some(Value::Null) => required(None, path),
        Some(other) => Err(ApiError::new(
            ErrorKind::Serialization,
            format!("{member} must be a boolean, not {other}."),
        )),
    }
}

/// Refuses configuration members the model does not carry, rather than dropping them:
/// a caller that changes, say, the checkpoint interval must not believe it did.
fn only_members(map: &Map<String, Value>, allowed: &[&str], context: &str) -> Result<(), ApiError> {
    match map.keys().find(|k| !allowed.contains(&k.as_str())) {
        None => Ok(()),
        Some(k) => Err(ApiError::new(
            ErrorKind::UnsupportedOperation,
            format!(
                "The emulator does not model {context}.{k}; it supports {}.",
                allowed.join(", ")
            ),
        )),
    }
}

fn tags(input: Option<Vec<TagInput>>) -> Result<Vec<(String, String)>, ApiError> {
    input
        .unwrap_or_default()
        .into_iter()
        .map(|t| Ok((required(t.key, "tags.member.key")?, t.value.unwrap_or_default())))
        .collect()
}

fn operation_status(s: &str) -> Result<OperationStatus, ApiError> {
    match s {
        "IN_PROGRESS" => Ok(OperationStatus::InProgress),
        "SUCCESSFUL" => Ok(OperationStatus::Successful),
        "FAILED" => Ok(OperationStatus::Failed),
        "CANCELLED" => Ok(OperationStatus::Cancelled),
        other => Err(ApiError::new(
            ErrorKind::InvalidArgument,
            format!("OperationStatus {other:?} is not valid."),
        )),
    }
}

/// Decodes the JSON body of `op`.
pub fn decode(op: Operation, body: &[u8]) -> Result<Request, ApiError> {
    Ok(match op {
        Operation::ListApplications => {
            let i: ListInput = parse(body)?;
            let (limit, offset) = page(i.limit, i.next_token)?;
            Request::ListApplications { limit, offset }
        }
        Operation::DescribeApplication => {
            let i: NameInput = parse(body)?;
            Request::DescribeApplication {
                name: name_of(i.application_name)?,
            }
        }
        Operation::DescribeApplicationOperation => {
            let i: NameInput = parse(body)?;
            Request::DescribeApplicationOperation {
                name: name_of(i.application_name)?,
                operation_id: required(i.operation_id, "operationId")?,
            }
        }
        Operation::ListApplicationOperations => {
            let i: ListInput = parse(body)?;
            let (limit, offset) = page(i.limit, i.next_token)?;
            Request::ListApplicationOperations {
                name: name_of(i.application_name)?,
                limit,
                offset,
                operation: i.operation,
                status: i.operation_status.as_deref().map(operation_status).transpose()?,
            }
        }
        Operation::ListApplicationSnapshots => {
            let i: ListInput = parse(body)?;
            let (limit, offset) = page(i.limit, i.next_token)?;
            Request::ListApplicationSnapshots {
                name: name_of(i.application_name)?,
                limit,
                offset,
            }
        }
        Operation::RollbackApplication => {
            let i: NameInput = parse(body)?;
            Request::RollbackApplication {
                name: name_of(i.application_name)?,
                version_id: required(i.current_application_version_id, "currentApplicationVersionId")?,
            }
        }
        Operation::StartApplication => {
            let i: NameInput = parse(body)?;
            let name = name_of(i.application_name)?;
            let restore = i
                .run_configuration
                .and_then(|r| r.application_restore_configuration)
                .map(restore_config)
                .transpose()?;
            // The model starts from the snapshot taken when the application stopped.
            match restore.map(|r| (r.application_restore_type, r.snapshot_name)) {
                None | Some((RestoreType::RestoreFromLatestSnapshot, _)) => {}
                Some((RestoreType::RestoreFromCustomSnapshot, snapshot)) => {
                    return Err(ApiError::new(
                        ErrorKind::ResourceNotFound,
                        format!(
                            "Snapshot {} does not exist for application {name}.",
                            snapshot.unwrap_or_default()
                        ),
                    ));
                }
                Some((RestoreType::SkipRestoreFromSnapshot, _)) => {
                    return Err(ApiError::new(
                        ErrorKind::UnsupportedOperation,
                        "The emulator starts applications from their latest snapshot only; \
                         SKIP_RESTORE_FROM_SNAPSHOT is not modelled.",
                    ));
                }
            }
            Request::StartApplication { name }
        }
        Operation::StopApplication => {
            let i: NameInput = parse(body)?;
            Request::StopApplication {
                name: name_of(i.application_name)?,
                force: i.force.unwrap_or(false),
            }
        }
        Operation::UpdateApplication => decode_update(body)?,
        Operation::CreateApplication => decode_create(body)?,
        Operation::TagResource => {
            let i: TagsInput = parse(body)?;
            Request::TagResource {
                arn: required(i.resource_arn, "resourceARN")?,
                tags: tags(Some(required(i.tags, "tags")?))?,
            }
        }
        Operation::UntagResource => {
            let i: TagsInput = parse(body)?;
            Request::UntagResource {
                arn: required(i.resource_arn, "resourceARN")?,
                keys: required(i.tag_keys, "tagKeys")?,
            }
        }
        Operation::ListTagsForResource => {
            let i: TagsInput = parse(body)?;
            Request::ListTagsForResource {
                arn: required(i.resource_arn, "resourceARN")?,
            }
        }
    })
}

fn decode_update(body: &[u8]) -> Result<Request, ApiError> {
    let i: UpdateInput = parse(body)?;
    let name = name_of(i.application_name)?;
    for (present, member) in [
        (
            i.service_execution_role_update.is_some(),
            "ServiceExecutionRoleUpdate",
        ),
        (i.runtime_environment_update.is_some(), "RuntimeEnvironmentUpdate"),
        (
            i.cloud_watch_logging_option_updates.is_some(),
            "CloudWatchLoggingOptionUpdates",
        ),
    ] {
        if present {
            return Err(ApiError::new(
                ErrorKind::UnsupportedOperation,
                format!("The emulator does not model {member}."),
            ));
        }
    }
    let mut parallelism = None;
    let mut snapshots_enabled = None;
    let mut monitoring = None;
    if let Some(cfg) = &i.application_configuration_update {
        only_members(
            cfg,
            &[
                "FlinkApplicationConfigurationUpdate",
                "ApplicationSnapshotConfigurationUpdate",
            ],
            "ApplicationConfigurationUpdate",
        )?;
        if let Some(snapshots) = cfg.get("ApplicationSnapshotConfigurationUpdate") {
            snapshots_enabled = Some(snapshot_flag(
                snapshots,
                "SnapshotsEnabledUpdate",
                "applicationConfigurationUpdate.applicationSnapshotConfigurationUpdate.snapshotsEnabledUpdate",
            )?);
        }
        if let Some(flink) = cfg.get("FlinkApplicationConfigurationUpdate") {
            let flink = flink.as_object().ok_or_else(|| {
                ApiError::new(
                    ErrorKind::Serialization,
                    "FlinkApplicationConfigurationUpdate must be an object.",
                )
            })?;
            only_members(
                flink,
                &["ParallelismConfigurationUpdate", "MonitoringConfigurationUpdate"],
                "ApplicationConfigurationUpdate.FlinkApplicationConfigurationUpdate",
            )?;
            if let Some(p) = flink.get("ParallelismConfigurationUpdate") {
                parallelism = Some(parallelism_update(p, false)?);
            }
            if let Some(m) = flink.get("MonitoringConfigurationUpdate") {
                monitoring = Some(monitoring_update(m, false)?);
            }
        }
    }
    let restore = i
        .run_configuration_update
        .and_then(|r| r.application_restore_configuration)
        .map(restore_config)
        .transpose()?;
    Ok(Request::UpdateApplication {
        name,
        update: sim::UpdateApplication {
            current_application_version_id: i.current_application_version_id,
            conditional_token: i.conditional_token,
            parallelism,
            restore,
            snapshots_enabled,
            monitoring,
        },
    })
}

fn decode_create(body: &[u8]) -> Result<Request, ApiError> {
    let i: CreateInput = parse(body)?;
    let name = name_of(i.application_name)?;
    let runtime = required(i.runtime_environment, "runtimeEnvironment")?;
    if !runtime.starts_with("FLINK-") {
        return Err(ApiError::new(
            ErrorKind::UnsupportedOperation,
            format!("The emulator models Managed Service for Apache Flink applications only, not {runtime}."),
        ));
    }
    if let Some(mode) = i.application_mode.as_deref()
        && mode != "STREAMING"
    {
        return Err(ApiError::new(
            ErrorKind::UnsupportedOperation,
            format!("The emulator models STREAMING applications only, not {mode}."),
        ));
    }
    let mut parallelism = None;
    let mut snapshots_enabled = None;
    let mut monitoring = None;
    if let Some(cfg) = &i.application_configuration {
        if let Some(snapshots) = cfg.get("ApplicationSnapshotConfiguration") {
            snapshots_enabled = Some(snapshot_flag(
                snapshots,
                "SnapshotsEnabled",
                "applicationConfiguration.applicationSnapshotConfiguration.snapshotsEnabled",
            )?);
        }
        // Code, environment properties and VPC settings do not change how the model
        // behaves; they are accepted like the service accepts them.
        if let Some(flink) = cfg.get("FlinkApplicationConfiguration") {
            let flink = flink.as_object().ok_or_else(|| {
                ApiError::new(
                    ErrorKind::Serialization,
                    "FlinkApplicationConfiguration must be an object.",
                )
            })?;
            if let Some(p) = flink.get("ParallelismConfiguration") {
                parallelism = Some(parallelism_update(p, true)?);
            }
            if let Some(m) = flink.get("MonitoringConfiguration") {
                monitoring = Some(monitoring_update(m, true)?);
            }
        }
    }
    Ok(Request::CreateApplication(Box::new(sim::CreateApplication {
        name,
        description: i.application_description,
        runtime: Some(runtime),
        service_execution_role: required(i.service_execution_role, "serviceExecutionRole")?,
        parallelism,
        snapshots_enabled,
        monitoring,
        source: None,
        tags: tags(i.tags)?,
        workload: None,
    })))
}

// ---------------------------------------------------------------------------------------
// Execution and responses.

/// Maps the model's refusal to the error the service sends.
pub fn service_error(e: ServiceError) -> ApiError {
    match e {
        ServiceError::ResourceNotFound(m) => ApiError::new(ErrorKind::ResourceNotFound, m),
        ServiceError::ConcurrentModification(m) => ApiError::new(ErrorKind::ConcurrentModification, m),
        ServiceError::ResourceInUse(m) => ApiError::new(ErrorKind::ResourceInUse, m),
        ServiceError::InvalidArgument(m) => ApiError::new(ErrorKind::InvalidArgument, m),
        ServiceError::InvalidRequest(m) => ApiError::new(ErrorKind::InvalidRequest, m),
        ServiceError::InvalidApplicationConfiguration(m) => {
            ApiError::new(ErrorKind::InvalidApplicationConfiguration, m)
        }
        ServiceError::LimitExceeded(m) => ApiError::new(ErrorKind::LimitExceeded, m),
        ServiceError::UnsupportedOperation(m) => ApiError::new(ErrorKind::UnsupportedOperation, m),
        ServiceError::TooManyTags(m) => ApiError::new(ErrorKind::TooManyTags, m),
    }
}

/// Epoch seconds as a JSON number (awsJson1_1's timestamp format), millisecond precision.
fn ts(t: Timestamp) -> Value {
    json!(super::cbor::epoch_seconds(t))
}

/// The view with the StuckUpdating fault's mask applied.
fn masked(mut view: ApplicationView, stuck: bool) -> ApplicationView {
    if stuck {
        view.status = crate::policy::AppStatus::Updating;
    }
    view
}

/// `ApplicationDetail` as DescribeApplication returns it.
pub fn application_detail(v: &ApplicationView) -> Value {
    let p = &v.parallelism;
    let c = &v.checkpoint;
    let mut d = json!({
        "ApplicationARN": v.arn,
        "ApplicationName": v.name,
        "RuntimeEnvironment": v.runtime,
        "ServiceExecutionRole": v.service_execution_role,
        "ApplicationStatus": v.status.as_str(),
        "ApplicationVersionId": v.version_id,
        "CreateTimestamp": ts(v.create_timestamp),
        "LastUpdateTimestamp": ts(v.last_update_timestamp),
        "ConditionalToken": v.conditional_token,
        "ApplicationMode": v.application_mode,
        "ApplicationConfigurationDescription": {
            "FlinkApplicationConfigurationDescription": {
                "ParallelismConfigurationDescription": {
                    "ConfigurationType": p.configuration_type.as_str(),
                    "Parallelism": p.parallelism,
                    "ParallelismPerKPU": p.parallelism_per_kpu,
                    "CurrentParallelism": p.current_parallelism,
                    "AutoScalingEnabled": p.auto_scaling_enabled,
                },
                "CheckpointConfigurationDescription": {
                    "ConfigurationType": c.configuration_type.as_str(),
                    "CheckpointingEnabled": c.checkpointing_enabled,
                    "CheckpointInterval": c.checkpoint_interval_ms,
                    "MinPauseBetweenCheckpoints": c.min_pause_between_checkpoints_ms,
                },
                "MonitoringConfigurationDescription": {
                    "ConfigurationType": v.monitoring.configuration_type.as_str(),
                    "MetricsLevel": v.monitoring.metrics_level.as_str(),
                    "LogLevel": v.monitoring.log_level.as_str(),
                },
            },
            "ApplicationSnapshotConfigurationDescription": { "SnapshotsEnabled": v.snapshots_enabled },
            "RunConfigurationDescription": {
                "ApplicationRestoreConfigurationDescription": restore_description(&v.restore),
                "FlinkRunConfigurationDescription": { "AllowNonRestoredState": false },
            },
        },
    });
    if let Some(obj) = d.as_object_mut() {
        if let Some(desc) = &v.description {
            obj.insert("ApplicationDescription".into(), json!(desc));
        }
        for (key, value) in [
            ("ApplicationVersionUpdatedFrom", v.version_updated_from),
            ("ApplicationVersionRolledBackFrom", v.version_rolled_back_from),
            ("ApplicationVersionRolledBackTo", v.version_rolled_back_to),
        ] {
            if let Some(value) = value {
                obj.insert(key.into(), json!(value));
            }
        }
    }
    d
}

/// `ApplicationRestoreConfiguration` as DescribeApplication reports it.
fn restore_description(r: &RestoreConfig) -> Value {
    let mut d = json!({ "ApplicationRestoreType": r.application_restore_type.as_str() });
    if let (Some(name), Some(obj)) = (&r.snapshot_name, d.as_object_mut()) {
        obj.insert("SnapshotName".into(), json!(name));
    }
    d
}

fn application_summary(v: &ApplicationView) -> Value {
    json!({
        "ApplicationName": v.name,
        "ApplicationARN": v.arn,
        "ApplicationStatus": v.status.as_str(),
        "ApplicationVersionId": v.version_id,
        "RuntimeEnvironment": v.runtime,
        "ApplicationMode": v.application_mode,
    })
}

fn operation_info(o: &OperationView) -> Value {
    let mut info = json!({
        "Operation": o.operation,
        "OperationId": o.operation_id,
        "StartTime": ts(o.start_time),
        "OperationStatus": o.status.as_str(),
    });
    if let (Some(end), Some(obj)) = (o.end_time, info.as_object_mut()) {
        obj.insert("EndTime".into(), ts(end));
    }
    info
}

fn operation_details(o: &OperationView) -> Value {
    let mut d = Map::new();
    d.insert("Operation".into(), json!(o.operation));
    d.insert("StartTime".into(), ts(o.start_time));
    if let Some(end) = o.end_time {
        d.insert("EndTime".into(), ts(end));
    }
    d.insert("OperationStatus".into(), json!(o.status.as_str()));
    if let (Some(from), Some(to)) = (o.version_updated_from, o.version_updated_to) {
        d.insert(
            "ApplicationVersionChangeDetails".into(),
            json!({ "ApplicationVersionUpdatedFrom": from, "ApplicationVersionUpdatedTo": to }),
        );
    }
    if o.failure.is_some() || o.rollback_operation_id.is_some() {
        let mut f = Map::new();
        if let Some(id) = &o.rollback_operation_id {
            f.insert("RollbackOperationId".into(), json!(id));
        }
        if let Some(err) = &o.failure {
            f.insert("ErrorInfo".into(), json!({ "ErrorString": err }));
        }
        d.insert("OperationFailureDetails".into(), Value::Object(f));
    }
    Value::Object(d)
}

/// The operation a StuckUpdating fault keeps in flight: the application's newest.
fn stuck_operation(fleet: &dyn Backend, name: &str) -> Option<String> {
    fleet
        .list_operations(name)
        .ok()?
        .into_iter()
        .max_by_key(|o| o.start_time)
        .map(|o| o.operation_id)
}

fn mask_operation(mut o: OperationView, stuck_id: Option<&str>) -> OperationView {
    if stuck_id == Some(o.operation_id.as_str()) {
        o.status = OperationStatus::InProgress;
        o.end_time = None;
        o.failure = None;
        o.rollback_operation_id = None;
    }
    o
}

/// The applications a StuckUpdating fault masks for one request.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stuck(Vec<Option<String>>);

impl Stuck {
    /// Nothing is stuck.
    pub fn none() -> Self {
        Self(Vec::new())
    }

    /// The application the request is about is stuck.
    pub fn this() -> Self {
        Self(vec![None])
    }

    /// These scopes are stuck (`None`: every application), for listings.
    pub fn scopes(scopes: Vec<Option<String>>) -> Self {
        Self(scopes)
    }

    fn applies(&self, name: &str) -> bool {
        self.0.iter().any(|s| s.as_deref().is_none_or(|a| a == name))
    }
}

/// What the faults other than errors change about one request (see
/// [`faults`](super::faults)): the StuckUpdating mask, a busy status (`resourceInUse`), and a
/// failure for the restart of an accepted update (`failOperation`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Injected {
    /// The applications that look stuck in `UPDATING`.
    pub stuck: Stuck,
    /// The status the request's application looks busy in.
    pub busy: Option<crate::policy::AppStatus>,
    /// The failure an accepted `UpdateApplication`'s restart ends in.
    pub fail_operation: Option<String>,
}

/// Serves one decoded request against the fleet, with the faults' masks applied.
pub fn execute(fleet: &mut dyn Backend, req: Request, injected: &Injected) -> Result<Value, ApiError> {
    let stuck_mask = &injected.stuck;
    let stuck = req.application().is_some_and(|name| stuck_mask.applies(&name));
    if let (Some(busy), Some(name)) = (injected.busy, req.application())
        && matches!(
            req,
            Request::UpdateApplication { .. } | Request::StartApplication { .. }
        )
    {
        // The service checks the application exists before it refuses a busy one.
        fleet.describe_application(&name).map_err(service_error)?;
        return Err(ApiError::new(
            ErrorKind::ResourceInUse,
            format!(
                "Application {name} is in {} status; the operation is not allowed until it is READY or RUNNING.",
                busy.as_str()
            ),
        ));
    }
    match req {
        Request::ListApplications { limit, offset } => {
            let apps = fleet.list_applications();
            let page: Vec<Value> = apps
                .iter()
                .skip(offset)
                .take(limit)
                .map(|v| {
                    let stuck = stuck_mask.applies(&v.name);
                    application_summary(&masked(v.clone(), stuck))
                })
                .collect();
            let mut out = json!({ "ApplicationSummaries": page });
            if offset + limit < apps.len() {
                out["NextToken"] = json!(token_for(offset + limit));
            }
            Ok(out)
        }
        Request::DescribeApplication { name } => {
            let mut view = masked(fleet.describe_application(&name).map_err(service_error)?, stuck);
            if let Some(busy) = injected.busy {
                view.status = busy;
            }
            Ok(json!({ "ApplicationDetail": application_detail(&view) }))
        }
        Request::UpdateApplication { name, update } => {
            if stuck {
                // The service refuses changes while an update is in flight.
                fleet.describe_application(&name).map_err(service_error)?;
                return Err(ApiError::new(
                    ErrorKind::ResourceInUse,
                    format!(
                        "Application {name} is in UPDATING status; it can be updated only when READY or RUNNING."
                    ),
                ));
            }
            let (view, operation_id) = match &injected.fail_operation {
                None => fleet.update_application(&name, update),
                Some(failure) => fleet.update_application_failing(&name, update, failure),
            }
            .map_err(service_error)?;
            Ok(json!({ "ApplicationDetail": application_detail(&view), "OperationId": operation_id }))
        }
        Request::DescribeApplicationOperation { name, operation_id } => {
            let op = fleet
                .describe_operation(&name, &operation_id)
                .map_err(service_error)?;
            let stuck_id = stuck.then(|| stuck_operation(fleet, &name)).flatten();
            Ok(
                json!({ "ApplicationOperationInfoDetails": operation_details(&mask_operation(op, stuck_id.as_deref())) }),
            )
        }
        Request::ListApplicationOperations {
            name,
            limit,
            offset,
            operation,
            status,
        } => {
            let stuck_id = stuck.then(|| stuck_operation(fleet, &name)).flatten();
            let ops: Vec<OperationView> = fleet
                .list_operations(&name)
                .map_err(service_error)?
                .into_iter()
                .map(|o| mask_operation(o, stuck_id.as_deref()))
                .filter(|o| operation.as_deref().is_none_or(|op| op == o.operation))
                .filter(|o| status.is_none_or(|s| s == o.status))
                .collect();
            let page: Vec<Value> = ops.iter().skip(offset).take(limit).map(operation_info).collect();
            let mut out = json!({ "ApplicationOperationInfoList": page });
            if offset + limit < ops.len() {
                out["NextToken"] = json!(token_for(offset + limit));
            }
            Ok(out)
        }
        Request::RollbackApplication { name, version_id } => {
            let (view, operation_id) = fleet
                .rollback_application(&name, version_id)
                .map_err(service_error)?;
            Ok(json!({ "ApplicationDetail": application_detail(&view), "OperationId": operation_id }))
        }
        Request::CreateApplication(create) => {
            let view = fleet.create_application(*create).map_err(service_error)?;
            Ok(json!({ "ApplicationDetail": application_detail(&view) }))
        }
        Request::StartApplication { name } => {
            let operation_id = fleet.start_application(&name).map_err(service_error)?;
            Ok(json!({ "OperationId": operation_id }))
        }
        Request::StopApplication { name, force } => {
            let operation_id = fleet.stop_application(&name, force).map_err(service_error)?;
            Ok(json!({ "OperationId": operation_id }))
        }
        Request::TagResource { arn, tags } => {
            fleet.tag_resource(&arn, tags).map_err(service_error)?;
            Ok(json!({}))
        }
        Request::UntagResource { arn, keys } => {
            fleet.untag_resource(&arn, &keys).map_err(service_error)?;
            Ok(json!({}))
        }
        Request::ListApplicationSnapshots { name, limit, offset } => {
            let snapshots = fleet.list_snapshots(&name).map_err(service_error)?;
            let page: Vec<Value> = snapshots
                .iter()
                .skip(offset)
                .take(limit)
                .map(|s| {
                    json!({
                        "SnapshotName": s.name,
                        "SnapshotStatus": "READY",
                        "ApplicationVersionId": s.version_id,
                        "SnapshotCreationTimestamp": ts(s.created),
                        "RuntimeEnvironment": s.runtime,
                    })
                })
                .collect();
            let mut out = json!({ "SnapshotSummaries": page });
            if offset + limit < snapshots.len() {
                out["NextToken"] = json!(token_for(offset + limit));
            }
            Ok(out)
        }
        Request::ListTagsForResource { arn } => {
            let tags: Vec<Value> = fleet
                .list_tags(&arn)
                .map_err(service_error)?
                .into_iter()
                .map(|(k, v)| json!({ "Key": k, "Value": v }))
                .collect();
            Ok(json!({ "Tags": tags }))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_str(op: Operation, body: &str) -> Result<Request, ApiError> {
        decode(op, body.as_bytes())
    }

    #[test]
    fn targets_parse_to_operations() {
        for op in Operation::ALL {
            assert_eq!(
                Operation::from_target(&format!("{TARGET_PREFIX}{}", op.name())),
                Some(op)
            );
        }
        assert_eq!(
            Operation::from_target("KinesisAnalytics_20180523.DeleteApplication"),
            None
        );
        assert_eq!(Operation::from_target("Kinesis_20131202.DescribeStream"), None);
    }

    #[test]
    fn update_decodes_parallelism_and_restore() {
        let req = decode_str(
            Operation::UpdateApplication,
            r#"{"ApplicationName":"orders","CurrentApplicationVersionId":3,
                "ApplicationConfigurationUpdate":{"FlinkApplicationConfigurationUpdate":{"ParallelismConfigurationUpdate":
                  {"ConfigurationTypeUpdate":"CUSTOM","ParallelismUpdate":8,"ParallelismPerKPUUpdate":2,"AutoScalingEnabledUpdate":false}}},
                "RunConfigurationUpdate":{"ApplicationRestoreConfiguration":{"ApplicationRestoreType":"RESTORE_FROM_LATEST_SNAPSHOT"}}}"#,
        )
        .unwrap();
        let Request::UpdateApplication { name, update } = req else {
            panic!("not an update")
        };
        assert_eq!(name, "orders");
        assert_eq!(update.current_application_version_id, Some(3));
        assert_eq!(
            update.parallelism,
            Some(ParallelismUpdate {
                configuration_type: Some(ConfigurationType::Custom),
                parallelism: Some(8),
                parallelism_per_kpu: Some(2),
                auto_scaling_enabled: Some(false),
            })
        );
        assert_eq!(
            update.restore.unwrap().application_restore_type,
            RestoreType::RestoreFromLatestSnapshot
        );
    }

    #[test]
    fn snapshot_configuration_is_read_on_create_and_update() {
        let req = decode_str(
            Operation::UpdateApplication,
            r#"{"ApplicationName":"a","CurrentApplicationVersionId":1,"ApplicationConfigurationUpdate":
                {"ApplicationSnapshotConfigurationUpdate":{"SnapshotsEnabledUpdate":false}}}"#,
        )
        .unwrap();
        let Request::UpdateApplication { update, .. } = req else {
            panic!("not an update")
        };
        assert_eq!(update.snapshots_enabled, Some(false));
        let e = decode_str(
            Operation::UpdateApplication,
            r#"{"ApplicationName":"a","CurrentApplicationVersionId":1,"ApplicationConfigurationUpdate":
                {"ApplicationSnapshotConfigurationUpdate":{}}}"#,
        )
        .unwrap_err();
        assert_eq!(e.kind, ErrorKind::Validation);
        assert!(e.message.contains("snapshotsEnabledUpdate"), "{}", e.message);
        let e = decode_str(
            Operation::UpdateApplication,
            r#"{"ApplicationName":"a","CurrentApplicationVersionId":1,"ApplicationConfigurationUpdate":
                {"ApplicationSnapshotConfigurationUpdate":{"SnapshotsEnabledUpdate":"yes"}}}"#,
        )
        .unwrap_err();
        assert_eq!(e.kind, ErrorKind::Serialization);
        let req = decode_str(
            Operation::CreateApplication,
            r#"{"ApplicationName":"n","RuntimeEnvironment":"FLINK-1_20","ServiceExecutionRole":"r",
                "ApplicationConfiguration":{"ApplicationSnapshotConfiguration":{"SnapshotsEnabled":false}}}"#,
        )
        .unwrap();
        let Request::CreateApplication(c) = req else {
            panic!("not a create")
        };
        assert_eq!(c.snapshots_enabled, Some(false));
        let req = decode_str(
            Operation::ListApplicationSnapshots,
            r#"{"ApplicationName":"n","Limit":2,"NextToken":"page-2"}"#,
        )
        .unwrap();
        assert_eq!(
            req,
            Request::ListApplicationSnapshots {
                name: "n".into(),
                limit: 2,
                offset: 2
            }
        );
    }

    #[test]
    fn update_refuses_members_the_model_does_not_carry() {
        let e = decode_str(
            Operation::UpdateApplication,
            r#"{"ApplicationName":"a","CurrentApplicationVersionId":1,"ApplicationConfigurationUpdate":
                {"FlinkApplicationConfigurationUpdate":{"CheckpointConfigurationUpdate":{"CheckpointIntervalUpdate":1000}}}}"#,
        )
        .unwrap_err();
        assert_eq!(e.kind, ErrorKind::UnsupportedOperation);
        assert!(
            e.message.contains("CheckpointConfigurationUpdate"),
            "{}",
            e.message
        );
    }

    #[test]
    fn validation_and_serialization_errors() {
        let e = decode_str(Operation::DescribeApplication, "{}").unwrap_err();
        assert_eq!(e.kind, ErrorKind::Validation);
        assert!(e.message.contains("'applicationName'"));
        let e = decode_str(Operation::DescribeApplication, "{not json").unwrap_err();
        assert_eq!(e.kind, ErrorKind::Serialization);
        let e = decode_str(
            Operation::DescribeApplication,
            r#"{"ApplicationName":"bad name!"}"#,
        )
        .unwrap_err();
        assert_eq!(e.kind, ErrorKind::Validation);
        let e = decode_str(
            Operation::UpdateApplication,
            r#"{"ApplicationName":"a","CurrentApplicationVersionId":1,"ApplicationConfigurationUpdate":
                {"FlinkApplicationConfigurationUpdate":{"ParallelismConfigurationUpdate":{"ParallelismUpdate":0}}}}"#,
        )
        .unwrap_err();
        assert_eq!(e.kind, ErrorKind::InvalidArgument);
        let e = decode_str(Operation::ListApplications, r#"{"Limit":51}"#).unwrap_err();
        assert_eq!(e.kind, ErrorKind::InvalidArgument);
        let e = decode_str(Operation::ListApplications, r#"{"NextToken":"bogus"}"#).unwrap_err();
        assert_eq!(e.kind, ErrorKind::InvalidRequest);
    }

    #[test]
    fn create_reads_the_flink_parallelism_configuration_and_tags() {
        let req = decode_str(
            Operation::CreateApplication,
            r#"{"ApplicationName":"n","RuntimeEnvironment":"FLINK-1_20","ServiceExecutionRole":"arn:aws:iam::1:role/r",
                "ApplicationConfiguration":{"FlinkApplicationConfiguration":{"ParallelismConfiguration":
                  {"ConfigurationType":"CUSTOM","Parallelism":4,"ParallelismPerKPU":1,"AutoScalingEnabled":false}}},
                "Tags":[{"Key":"team","Value":"payments"}]}"#,
        )
        .unwrap();
        let Request::CreateApplication(c) = req else {
            panic!("not a create")
        };
        assert_eq!(c.parallelism.unwrap().parallelism, Some(4));
        assert_eq!(c.tags, vec![("team".to_string(), "payments".to_string())]);
        let e = decode_str(
            Operation::CreateApplication,
            r#"{"ApplicationName":"n","RuntimeEnvironment":"SQL-1_0","ServiceExecutionRole":"r"}"#,
        )
        .unwrap_err();
        assert_eq!(e.kind, ErrorKind::UnsupportedOperation);
    }

    #[test]
    fn start_reads_the_restore_configuration() {
        let ok = decode_str(
            Operation::StartApplication,
            r#"{"ApplicationName":"a","RunConfiguration":{"ApplicationRestoreConfiguration":
                {"ApplicationRestoreType":"RESTORE_FROM_LATEST_SNAPSHOT"},"FlinkRunConfiguration":{"AllowNonRestoredState":true}}}"#,
        )
        .unwrap();
        assert_eq!(ok, Request::StartApplication { name: "a".into() });
        let custom = decode_str(
            Operation::StartApplication,
            r#"{"ApplicationName":"a","RunConfiguration":{"ApplicationRestoreConfiguration":
                {"ApplicationRestoreType":"RESTORE_FROM_CUSTOM_SNAPSHOT","SnapshotName":"s1"}}}"#,
        )
        .unwrap_err();
        assert_eq!(custom.kind, ErrorKind::ResourceNotFound);
        assert!(custom.message.contains("s1"));
        let skip = decode_str(
            Operation::StartApplication,
            r#"{"ApplicationName":"a","RunConfiguration":{"ApplicationRestoreConfiguration":
                {"ApplicationRestoreType":"SKIP_RESTORE_FROM_SNAPSHOT"}}}"#,
        )
        .unwrap_err();
        assert_eq!(skip.kind, ErrorKind::UnsupportedOperation);
    }

    #[test]
    fn arns_name_their_application() {
        assert_eq!(
            application_from_arn("arn:aws:kinesisanalytics:eu-west-1:123456789012:application/orders"),
            Some("orders")
        );
        assert_eq!(application_from_arn("orders"), None);
        let req = decode_str(
            Operation::ListTagsForResource,
            r#"{"ResourceARN":"arn:aws:kinesisanalytics:eu-west-1:123456789012:application/orders"}"#,
        )
        .unwrap();
        assert_eq!(req.application().as_deref(), Some("orders"));
    }
}
