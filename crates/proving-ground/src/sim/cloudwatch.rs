//! The model's CloudWatch, read the way the controller reads CloudWatch.
//!
//! `simulate` observes an application through the controller's own code: the request
//! (window aligned to whole periods, one period fetched early for the running counts), the
//! `GetMetricData` queries and their paging ([`crate::aws::cloudwatch`]), the assembly
//! (running counts to per-period increases, NaN and gaps to missing data) and
//! [`aws::observe`](crate::aws::observe). Only the transport differs: instead of the SDK and
//! the emulator's wire protocol, `ModelCloudWatch` answers each query from the fleet's
//! metric store with the function the emulator's `GetMetricData` serves it with
//! (`stat_datapoints`). `tests/integration/observe.rs` checks that both transports give
//! identical observations.

use std::time::Duration;

use async_trait::async_trait;
use futures::FutureExt as _;
use jiff::Timestamp;

use super::{
    ApplicationView, Fleet,
    fleet::{NAMESPACE, PERIOD},
    store::MetricId,
};
use crate::{
    aws::{
        ApplicationDescription, AwsError, Restore, Target,
        cloudwatch::{
            APPLICATION_DIMENSION, MetricDataApi, MetricDataCall, Page, SampleRequest, Series, read_samples,
        },
        history,
        signals::{ListMetricsApi, MetricsLevel, SignalPlan, discover},
    },
    emulator::cloudwatch::stat_datapoints,
    policy::{AppConfig, HourlyRate, Observation},
    sim::RestoreType,
};

/// `GetMetricData` over the fleet's metric store, one page per call.
pub(crate) struct ModelCloudWatch<'a> {
    fleet: &'a Fleet,
}

impl<'a> ModelCloudWatch<'a> {
    pub(crate) fn new(fleet: &'a Fleet) -> Self {
        Self { fleet }
    }
}

#[async_trait]
impl MetricDataApi for ModelCloudWatch<'_> {
    async fn get_metric_data_page(
        &self,
        _target: &Target,
        call: &MetricDataCall,
        _next_token: Option<&str>,
    ) -> Result<Page, AwsError> {
        let at = |s: i64| {
            Timestamp::from_second(s)
                .map_err(|e| AwsError::InvalidArgument(format!("GetMetricData: time {s} out of range: {e}")))
        };
        let (start, end) = (at(call.start)?, at(call.end)?);
        let period = u64::try_from(call.period)
            .map_err(|_| AwsError::InvalidArgument(format!("GetMetricData: period {}", call.period)))?;
        let series = call
            .queries
            .iter()
            .map(|q| {
                let metric = MetricId::new(NAMESPACE, q.metric_name(), &q.dimensions());
                let points = stat_datapoints(
                    &|mq| self.fleet.metric_data(mq),
                    &metric,
                    start,
                    end,
                    period,
                    q.stat(),
                );
                Series {
                    id: q.id.clone(),
                    points: points.into_iter().map(|(t, v)| (t.as_second(), v)).collect(),
                    error: None,
                }
            })
            .collect();
        Ok(Page {
            series,
            next_token: None,
        })
    }
}

#[async_trait]
impl ListMetricsApi for ModelCloudWatch<'_> {
    async fn list_dimensions(
        &self,
        _target: &Target,
        metric: &str,
        application: &str,
    ) -> Result<Vec<Vec<(String, String)>>, AwsError> {
        Ok(self
            .fleet
            .list_metrics(
                Some(NAMESPACE),
                Some(metric),
                &[(APPLICATION_DIMENSION.to_string(), application.to_string())],
            )
            .into_iter()
            .map(|m| m.dimensions)
            .collect())
    }
}

/// What `DescribeApplication` reports of `view`, in the controller's terms (as
/// `KinesisControl::describe` maps the service's answer).
pub(crate) fn description(view: &ApplicationView) -> ApplicationDescription {
    ApplicationDescription {
        name: view.name.clone(),
        arn: view.arn.clone(),
        status: view.status,
        version_id: view.version_id,
        config: AppConfig::new(
            view.parallelism.current_parallelism,
            view.parallelism.parallelism_per_kpu,
        ),
        configured_parallelism: view.parallelism.parallelism,
        configuration_type: view.parallelism.configuration_type.as_str().to_string(),
        service_autoscaling: view.parallelism.auto_scaling_enabled,
        conditional_token: Some(view.conditional_token.clone()),
        created: Some(view.create_timestamp),
        snapshots_enabled: Some(view.snapshots_enabled),
        metrics_level: Some(view.monitoring.metrics_level.as_str().to_string()),
        runtime: Some(view.runtime.clone()),
        restore: Some(match view.restore.application_restore_type {
            RestoreType::SkipRestoreFromSnapshot => Restore::Skip,
            RestoreType::RestoreFromLatestSnapshot => Restore::Latest,
            RestoreType::RestoreFromCustomSnapshot => {
                Restore::Custom(view.restore.snapshot_name.clone().unwrap_or_default())
            }
        }),
    }
}

/// Why `app` could not be observed.
#[derive(Debug, thiserror::Error)]
pub enum ObserveError {
    /// `DescribeApplication` refused.
    #[error("DescribeApplication {app}: {source}")]
    Describe {
        /// The application.
        app: String,
        /// The service's refusal.
        #[source]
        source: super::ServiceError,
    },
    /// The metrics could not be read (a bad window, a time out of range).
    #[error("GetMetricData {app}: {source}")]
    Metrics {
        /// The application.
        app: String,
        /// Why.
        #[source]
        source: AwsError,
    },
}

/// What the controller knows of `app` before it reads a metric: the model's CloudWatch, the
/// application's description, its target, and the signal plan the controller would make.
struct Planned<'a> {
    api: ModelCloudWatch<'a>,
    description: ApplicationDescription,
    target: Target,
    plan: SignalPlan,
}

/// The controller's view of `app` over `fleet` ([`description`] and [`plan`]).
fn planned<'a>(fleet: &'a Fleet, app: &str) -> Result<Planned<'a>, ObserveError> {
    let view = fleet
        .describe_application(app)
        .map_err(|source| ObserveError::Describe {
            app: app.to_string(),
            source,
        })?;
    let api = ModelCloudWatch::new(fleet);
    let description = description(&view);
    let target = Target::new(fleet.region());
    let plan = at_once(app, async { Ok(plan(&api, &target, &description).await) })?;
    Ok(Planned {
        api,
        description,
        target,
        plan,
    })
}

/// The answer of a controller future over the model, which answers at once: the futures
/// never wait, so they complete on their first poll (one that does not is an error, not a
/// hang).
fn at_once<T>(
    app: &str,
    future: impl std::future::Future<Output = Result<T, AwsError>>,
) -> Result<T, ObserveError> {
    future
        .now_or_never()
        .unwrap_or_else(|| {
            Err(AwsError::Other(
                "CloudWatch over the model did not answer at once".into(),
            ))
        })
        .map_err(|source| ObserveError::Metrics {
            app: app.to_string(),
            source,
        })
}

/// The policy's [`Observation`] of `app` at `now` over `window`, built by the controller's
/// code from the fleet's `DescribeApplication` and CloudWatch metrics.
pub fn observe(
    fleet: &Fleet,
    app: &str,
    window: Duration,
    now: Timestamp,
) -> Result<Observation, ObserveError> {
    let request = SampleRequest::new(app, window, PERIOD, now).map_err(|source| ObserveError::Metrics {
        app: app.to_string(),
        source,
    })?;
    let p = planned(fleet, app)?;
    let samples = at_once(app, read_samples(&p.api, &p.target, &p.plan, &request))?;
    Ok(crate::aws::observe(&p.description, samples, PERIOD, now))
}

/// The input history of `app` before `now`, read as the controller reads it
/// ([`history::read`]: `numRecordsInPerSecond` by the hour over the last two weeks).
pub fn hourly_input(fleet: &Fleet, app: &str, now: Timestamp) -> Result<Vec<HourlyRate>, ObserveError> {
    let p = planned(fleet, app)?;
    at_once(app, history::read(&p.api, &p.target, &p.plan, now))
}

/// The metrics the controller reads the input history of `app` from (the series of its
/// plan), for a scenario's past load.
pub(crate) fn input_metrics(fleet: &Fleet, app: &str) -> Result<Vec<MetricId>, ObserveError> {
    let p = planned(fleet, app)?;
    Ok(history::input_plan(&p.plan)
        .series
        .iter()
        .map(|s| MetricId::new(NAMESPACE, s.name, &s.dimensions))
        .collect())
}

/// The controller's plan for `description` ([`discover`] and [`SignalPlan::new`], uncached:
/// the model answers `ListMetrics` for free).
async fn plan(
    api: &ModelCloudWatch<'_>,
    target: &Target,
    description: &ApplicationDescription,
) -> SignalPlan {
    let level = description.metrics_level.as_deref().and_then(MetricsLevel::parse);
    let found = discover(api, target, &description.name, level).await;
    SignalPlan::new(&description.name, level, description.runtime.as_deref(), found)
}
