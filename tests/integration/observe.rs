//! One observation path: `simulate` observes an application through the controller's code.
//! The same CloudWatch answers (the emulator's fleet, seeded and running) read by the
//! controller (the AWS SDK clients against the in-process emulator) and by `simulate`
//! (`sim::simulate::observe` over the same fleet) give identical observations.

use std::{sync::Arc, time::Duration};

use checkpoint_autoscaler::{
    aws::{
        ApplicationControl, AwsSettings, KinesisControl, METRIC_NAMESPACE, METRICS, MetricsMode,
        MetricsSource, Target, metrics_source, observe_application,
    },
    emulator::{self, EmulatorConfig, calllog::CallFilter},
    policy::Observation,
    sim::{CreateApplication, Fleet, MetricId, Scenario, simulate},
};
use checkpoint_autoscaler_testkit::rig::{self, Keys};
use jiff::Timestamp;

const START: i64 = 1_767_225_600;
const SEEDED: &str = "seeded";
const RUNNING: &str = "orders-enrichment";
/// An application with the shapes AWS publishes at the APPLICATION level: lag per source
/// stream, no busy time.
const STREAMS: &str = "streams";

fn id(metric: &str, app: &str) -> MetricId {
    MetricId::new(
        METRIC_NAMESPACE,
        metric,
        &[("Application".to_string(), app.to_string())],
    )
}

/// A fleet with a READY application whose metrics the test writes (gaps, a counter reset,
/// several datapoints per period, points outside the window) and the step-up scenario
/// running beside it.
fn fleet() -> Fleet {
    let mut fleet = Fleet::new(7, Timestamp::from_second(START).unwrap()).with_region("us-east-1");
    fleet
        .create_application(CreateApplication {
            name: SEEDED.into(),
            service_execution_role: "arn:aws:iam::123456789012:role/flink".into(),
            ..CreateApplication::default()
        })
        .unwrap();
    let scenario = Scenario::load(std::path::Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/scenarios/step-up.yaml"
    )))
    .unwrap();
    fleet.add_scenario(&scenario, None).unwrap();
    let at = |minute: i64, second: i64| Timestamp::from_second(START + minute * 60 + second).unwrap();
    for minute in 0..40i64 {
        for (i, spec) in METRICS.iter().enumerate() {
            // A gap every few minutes, different for each metric.
            if (minute + i as i64) % 7 == 3 {
                continue;
            }
            let value = if spec.running_count {
                // Counts up, restarts from zero at minute 22.
                (if minute < 22 { minute * 3 } else { minute - 22 }) as f64
            } else {
                1000.0 + (minute * 17 + i as i64 * 5) as f64
            };
            fleet.record_service_metric(&id(spec.name, SEEDED), "Count", at(minute, 5), value);
            // A second, larger datapoint in the same period: Maximum picks it, Average
            // mixes it in.
            if minute % 5 == 0 && !spec.running_count {
                fleet.record_service_metric(&id(spec.name, SEEDED), "Count", at(minute, 40), value * 2.0);
            }
        }
    }
    fleet
        .create_application(CreateApplication {
            name: STREAMS.into(),
            service_execution_role: "arn:aws:iam::123456789012:role/flink".into(),
            ..CreateApplication::default()
        })
        .unwrap();
    let with = |app: &str, extra: &[(&str, &str)]| -> Vec<(String, String)> {
        let mut d = vec![("Application".to_string(), app.to_string())];
        d.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        d
    };
    for minute in 0..40i64 {
        let t = at(minute, 10);
        fleet.record_service_metric(&id("lastCheckpointDuration", STREAMS), "Milliseconds", t, 900.0);
        // Two Kinesis source streams: the lag to catch up is the larger.
        for (stream, lag) in [
            ("orders", 1000.0 * minute as f64),
            ("payments", 500.0 + 700.0 * minute as f64),
        ] {
            let dims = with(STREAMS, &[("Id", stream), ("Flow", "Input")]);
            let metric = MetricId::new(METRIC_NAMESPACE, "millisBehindLatest", &dims);
            fleet.record_service_metric(&metric, "Milliseconds", t, lag);
        }
    }
    fleet
}

/// The emulator over [`fleet`], its clock frozen at [`START`], and the controller's two AWS
/// ports over the real SDK clients pointed at it.
async fn serve() -> (
    emulator::Emulator,
    KinesisControl,
    Arc<dyn checkpoint_autoscaler::aws::MetricsSource>,
) {
    let config = EmulatorConfig {
        period: None,
        start: Some(Timestamp::from_second(START).unwrap()),
        ..EmulatorConfig::default()
    };
    let emu = emulator::serve_backend(config, Box::new(fleet())).await.unwrap();
    let settings = AwsSettings {
        initial_backoff: Duration::from_millis(1),
        ..AwsSettings::default()
    };
    let clients = rig::clients(&Keys::TEST, "us-east-1", emu.endpoint_url(), settings).await;
    let control = KinesisControl::new(clients.clone());
    (emu, control, metrics_source(clients, MetricsMode::Direct))
}

#[tokio::test]
async fn simulate_and_the_controller_observe_identically() {
    let (emu, control, metrics) = serve().await;
    let target = Target::new("us-east-1");
    let period = Duration::from_secs(60);
    let mut compared = 0;
    let mut seen_samples = 0;
    // Whole and partial periods, ends on and off the minute, windows past the data.
    for (advance_s, window_s) in [
        (45 * 60, 600),
        (45 * 60 + 37, 900),
        (47 * 60 + 59, 90),
        (60 * 60, 3600),
    ] {
        let now = Timestamp::from_second(START + advance_s).unwrap();
        let by = now.as_second() - emu.state().virtual_now().as_second();
        emu.state().advance(Duration::from_secs(by as u64));
        let window = Duration::from_secs(window_s);
        for app in [SEEDED, RUNNING, STREAMS] {
            let (_, controller, _) =
                observe_application(&control, metrics.as_ref(), &target, app, window, period, now)
                    .await
                    .unwrap();
            let simulated: Observation = emu
                .state()
                .with_fleet(|b| simulate::observe(b.as_model().unwrap(), app, window, now))
                .unwrap();
            assert_eq!(simulated, controller, "{app} at +{advance_s}s over {window_s}s");
            compared += 1;
            seen_samples += controller.samples.len();
        }
    }
    assert_eq!(compared, 12);
    assert!(
        seen_samples > 40,
        "the comparison saw data: {seen_samples} periods"
    );
    // ListMetrics once per application and metric (the versions did not change): the source
    // lag for all three, busy and back-pressure only for step-up, the one at the TASK level
    // (the two others run at APPLICATION, where the service publishes neither); one
    // GetMetricData per observation.
    let calls = |operation: &str| {
        emu.state()
            .calls(&CallFilter {
                operation: Some(operation.to_string()),
                ..CallFilter::default()
            })
            .len()
    };
    assert_eq!(calls("ListMetrics"), 1 + 3 + 1);
    assert_eq!(calls("GetMetricData"), 12);
}

/// The source lag is read per stream with its real dimensions, the maximum over streams;
/// without per-task busy time (the APPLICATION level publishes none) status says what the
/// TASK level would add.
#[tokio::test]
async fn the_controller_reads_per_stream_lag_and_only_what_the_level_publishes() {
    let (emu, control, metrics) = serve().await;
    emu.state().advance(Duration::from_secs(30 * 60));
    let now = emu.state().virtual_now();
    let (_, observation, plan) = observe_application(
        &control,
        metrics.as_ref(),
        &Target::new("us-east-1"),
        STREAMS,
        Duration::from_secs(600),
        Duration::from_secs(60),
        now,
    )
    .await
    .unwrap();
    assert_eq!(observation.samples.len(), 10);
    for s in &observation.samples {
        let minute = (s.at.as_second() - START) / 60;
        let want = (1000.0 * minute as f64).max(500.0 + 700.0 * minute as f64);
        assert_eq!(s.millis_behind_latest, Some(want), "minute {minute}");
        assert_eq!(s.busy_time_ms_per_second, None);
    }
    let report = plan.report();
    assert_eq!(report.metrics_level.as_deref(), Some("APPLICATION"));
    assert!(
        report
            .available
            .iter()
            .any(|a| a.contains("millisBehindLatest (max of 2")),
        "{report:?}"
    );
    assert!(
        report.missing.iter().any(|m| m.contains("TASK level")),
        "{report:?}"
    );
    // The lag queries name the stream and the flow, as AWS publishes them.
    let lag: Vec<_> = plan
        .series
        .iter()
        .filter(|s| s.name == "millisBehindLatest")
        .collect();
    assert_eq!(lag.len(), 2);
    assert!(
        lag.iter()
            .all(|s| s.dimensions.iter().any(|(k, v)| k == "Flow" && v == "Input"))
    );
}

/// The seeded shapes come through as the controller reads them: a gap is no value, the
/// running count's restart is an increase from zero, Maximum takes the larger datapoint.
#[test]
fn simulate_reads_gaps_resets_and_statistics_as_the_controller_does() {
    let mut fleet = fleet();
    let now = Timestamp::from_second(START + 30 * 60).unwrap();
    fleet.advance_to(now);
    let o = simulate::observe(&fleet, SEEDED, Duration::from_secs(600), now).unwrap();
    assert_eq!(o.samples.len(), 10);
    let at_minute = |m: i64| {
        o.samples
            .iter()
            .find(|s| s.at.as_second() == START + m * 60)
            .unwrap_or_else(|| panic!("no sample at minute {m}"))
    };
    // lastCheckpointDuration (metric 0) has a gap at minutes 24 (24 % 7 == 3).
    assert_eq!(at_minute(24).last_checkpoint_duration_ms, None);
    assert_eq!(
        at_minute(25).last_checkpoint_duration_ms,
        Some(2.0 * (1000.0 + 25.0 * 17.0))
    );
    assert_eq!(
        at_minute(26).last_checkpoint_duration_ms,
        Some(1000.0 + 26.0 * 17.0)
    );
    // numberOfFailedCheckpoints (metric 2) counts 3 a minute, has gaps at minutes 22 and 29
    // ((minute + 2) % 7 == 3) and restarts from zero at minute 22: the increase after the
    // gap is what was counted since the restart.
    assert_eq!(at_minute(21).failed_checkpoints, Some(3.0));
    assert_eq!(at_minute(22).failed_checkpoints, None);
    assert_eq!(at_minute(23).failed_checkpoints, Some(1.0));
    assert_eq!(at_minute(24).failed_checkpoints, Some(1.0));
    assert_eq!(at_minute(29).failed_checkpoints, None);
}

/// One history path: the input history (`numRecordsInPerSecond` by the hour, for the
/// forecast) read by the controller's source through the SDK and the emulator, and by
/// `simulate` over the same fleet, is the same; and the controller's source reads it once
/// per application and hour.
#[tokio::test]
async fn simulate_and_the_controller_read_the_same_input_history() {
    let emu = emulator::serve_backend(
        EmulatorConfig {
            period: None,
            start: Some(Timestamp::from_second(START).unwrap()),
            ..EmulatorConfig::default()
        },
        Box::new(fleet()),
    )
    .await
    .unwrap();
    emu.state().advance(Duration::from_secs(3 * 3600 + 600));
    let now = emu.state().virtual_now();
    let settings = AwsSettings {
        initial_backoff: Duration::from_millis(1),
        ..AwsSettings::default()
    };
    let clients = rig::clients(&Keys::TEST, "us-east-1", emu.endpoint_url(), settings).await;
    let control = KinesisControl::new(clients.clone());
    let metrics = metrics_source(clients, MetricsMode::Direct);
    let target = Target::new("us-east-1");
    let get_metric_data = || {
        emu.state()
            .calls(&CallFilter {
                operation: Some("GetMetricData".to_string()),
                ..CallFilter::default()
            })
            .len()
    };
    for app in [SEEDED, RUNNING, STREAMS] {
        let description = control.describe(&target, app).await.unwrap();
        let plan = metrics.plan(&target, &description).await;
        let before = get_metric_data();
        let controller = metrics.hourly_input(&target, &plan, now).await.unwrap();
        let again = metrics.hourly_input(&target, &plan, now).await.unwrap();
        // Two statistics (the hours' averages and busiest minutes), once per hour.
        assert_eq!(get_metric_data(), before + 2, "{app}: once per hour");
        assert_eq!(again, controller);
        let simulated = emu
            .state()
            .with_fleet(|b| simulate::hourly_input(b.as_model().unwrap(), app, now))
            .unwrap();
        assert_eq!(simulated, controller, "{app}");
        if app == RUNNING {
            // Three complete hours of the step-up scenario: 12k, then 24k records/s.
            assert_eq!(controller.len(), 3, "{controller:?}");
            assert!(
                controller.iter().all(|h| h.records_per_second > 10_000.0),
                "{controller:?}"
            );
            // Each hour's busiest minute, read with the statistic Maximum, is at least its
            // average.
            assert!(
                controller.iter().all(|h| h
                    .busiest_minute_per_second
                    .is_some_and(|b| b >= h.records_per_second)),
                "{controller:?}"
            );
        }
    }
}
