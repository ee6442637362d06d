//! From AWS's answers to the policy's [`Observation`].

use std::time::Duration;

use jiff::Timestamp;

use super::{ApplicationControl, ApplicationDescription, AwsError, MetricsSource, SignalPlan, Target};
use crate::policy::{Observation, Sample};

/// The policy's view of an application: its description (status, running configuration,
/// version, service autoscaling) and its metric periods, taken at `at`.
///
/// Every value the policy gets is a number: a non-finite one (NaN, infinity), from
/// whatever [`MetricsSource`] produced the samples, becomes missing data, and a period left
/// with no value at all is dropped.
pub fn observe(
    description: &ApplicationDescription,
    mut samples: Vec<Sample>,
    period: Duration,
    at: Timestamp,
) -> Observation {
    for sample in &mut samples {
        for value in sample_values(sample) {
            if value.is_some_and(|v| !v.is_finite()) {
                *value = None;
            }
        }
    }
    samples.retain_mut(|s| sample_values(s).into_iter().any(|v| v.is_some()));
    Observation {
        at,
        status: description.status,
        config: description.config,
        service_autoscaling: description.service_autoscaling,
        version_id: description.version_id,
        samples,
        period,
        hourly_input: Vec::new(),
    }
}

/// Every metric field of a sample.
fn sample_values(s: &mut Sample) -> [&mut Option<f64>; 12] {
    let Sample {
        at: _,
        last_checkpoint_duration_ms,
        last_checkpoint_size_bytes,
        failed_checkpoints,
        cpu_utilization,
        heap_memory_utilization,
        container_memory_utilization,
        busy_time_ms_per_second,
        back_pressured_time_ms_per_second,
        millis_behind_latest,
        records_in_per_second,
        full_restarts,
        downtime_ms,
    } = s;
    [
        last_checkpoint_duration_ms,
        last_checkpoint_size_bytes,
        failed_checkpoints,
        cpu_utilization,
        heap_memory_utilization,
        container_memory_utilization,
        busy_time_ms_per_second,
        back_pressured_time_ms_per_second,
        millis_behind_latest,
        records_in_per_second,
        full_restarts,
        downtime_ms,
    ]
}

/// Describes `name`, plans what to read from its metrics level, runtime and the metrics
/// CloudWatch lists for it ([`MetricsSource::plan`]), reads them over `window` ending at
/// `now`, and builds the [`Observation`]. The description and the plan come back too: the
/// ARN, configured parallelism and configuration type are not part of the observation, and
/// the plan says which signals were available.
pub async fn observe_application(
    control: &dyn ApplicationControl,
    metrics: &dyn MetricsSource,
    target: &Target,
    name: &str,
    window: Duration,
    period: Duration,
    now: Timestamp,
) -> Result<(ApplicationDescription, Observation, SignalPlan), AwsError> {
    let description = control.describe(target, name).await?;
    let plan = metrics.plan(target, &description).await;
    let samples = metrics.samples_for(target, &plan, window, period, now).await?;
    let observation = observe(&description, samples, period, now);
    Ok((description, observation, plan))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{AppConfig, AppStatus};

    #[test]
    fn observation_carries_the_description_and_samples() {
        let description = ApplicationDescription {
            name: "orders".into(),
            arn: "arn:aws:kinesisanalytics:eu-west-1:123456789012:application/orders".into(),
            status: AppStatus::Updating,
            version_id: 9,
            config: AppConfig::new(12, 3),
            configured_parallelism: 4,
            configuration_type: "CUSTOM".into(),
            service_autoscaling: true,
            conditional_token: None,
            created: None,
            snapshots_enabled: Some(true),
            restore: Some(crate::Restore::Latest),
            metrics_level: None,
            runtime: None,
        };
        let at = Timestamp::from_second(1_700_000_000).unwrap();
        let samples = vec![Sample {
            at,
            cpu_utilization: Some(50.0),
            ..Sample::default()
        }];
        let o = observe(&description, samples.clone(), Duration::from_secs(60), at);
        assert_eq!(o.status, AppStatus::Updating);
        assert_eq!(o.config, AppConfig::new(12, 3));
        assert_eq!(o.version_id, 9);
        assert!(o.service_autoscaling);
        assert_eq!(o.samples, samples);
        assert_eq!(o.period, Duration::from_secs(60));
        assert_eq!(o.at, at);
    }

    #[test]
    fn non_finite_values_never_reach_the_policy() {
        let description = ApplicationDescription {
            name: "orders".into(),
            arn: "arn:aws:kinesisanalytics:eu-west-1:123456789012:application/orders".into(),
            status: AppStatus::Running,
            version_id: 1,
            config: AppConfig::new(4, 1),
            configured_parallelism: 4,
            configuration_type: "CUSTOM".into(),
            service_autoscaling: false,
            conditional_token: None,
            created: None,
            snapshots_enabled: Some(true),
            restore: Some(crate::Restore::Latest),
            metrics_level: None,
            runtime: None,
        };
        let at = Timestamp::from_second(1_700_000_000).unwrap();
        let samples = vec![
            Sample {
                at,
                last_checkpoint_duration_ms: Some(f64::NAN),
                cpu_utilization: Some(40.0),
                heap_memory_utilization: Some(f64::INFINITY),
                ..Sample::default()
            },
            Sample {
                at,
                last_checkpoint_duration_ms: Some(f64::NAN),
                ..Sample::default()
            },
        ];
        let o = observe(&description, samples, Duration::from_secs(60), at);
        assert_eq!(o.samples.len(), 1, "a period of NaN only is no data");
        assert_eq!(o.samples[0].last_checkpoint_duration_ms, None);
        assert_eq!(o.samples[0].heap_memory_utilization, None);
        assert_eq!(o.samples[0].cpu_utilization, Some(40.0));
    }
}
