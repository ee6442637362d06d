//! The diagnosis at the APPLICATION metrics level (no busy or back-pressure time): each
//! cause told apart from duration, size, CPU, input rate, failures, restarts and how the
//! job answered the last step; each summary states its figures and what would confirm it;
//! no restart for what scaling cannot fix.

use std::time::Duration;

use jiff::Timestamp;

use super::*;

const MIB: f64 = 1024.0 * 1024.0;
const NOW: i64 = 600;

fn t(m: i64) -> Timestamp {
    Timestamp::from_second(1_800_000_000 + m * 60).unwrap()
}

fn budget() -> Budget {
    let min = |m: u64| Duration::from_secs(m * 60);
    Budget {
        max_checkpoint_duration: min(2),
        max_checkpoint_size: None,
        max_failed_checkpoints: 0,
        window: min(10),
        parallelism_min: 1,
        parallelism_max: 64,
        max_parallelism: 128,
        per_kpu_min: 1,
        per_kpu_max: 4,
        max_kpus: Some(32),
        scale_up_cooldown: min(5),
        scale_down_cooldown: min(30),
        scale_down_stabilization: min(60),
        error_budget: None,
    }
}

/// The ten one-minute periods ending at `NOW` as the APPLICATION level publishes them
/// (no busy or back-pressure time), shaped by `f(i, sample)` (i = 0 is the oldest).
fn app_level(duration_s: f64, f: impl Fn(usize, &mut Sample)) -> Vec<Sample> {
    (0..10)
        .map(|i| {
            let mut s = Sample {
                at: t(NOW - 10 + i as i64),
                last_checkpoint_duration_ms: Some(duration_s * 1000.0),
                last_checkpoint_size_bytes: Some(1024.0 * MIB),
                failed_checkpoints: Some(0.0),
                cpu_utilization: Some(55.0),
                heap_memory_utilization: Some(40.0),
                container_memory_utilization: Some(45.0),
                busy_time_ms_per_second: None,
                back_pressured_time_ms_per_second: None,
                millis_behind_latest: Some(500.0),
                records_in_per_second: Some(1000.0),
                full_restarts: Some(0.0),
                downtime_ms: Some(0.0),
            };
            f(i, &mut s);
            s
        })
        .collect()
}

fn decide_on(config: AppConfig, samples: Vec<Sample>, history: &History) -> Decision {
    let obs = Observation {
        at: t(NOW),
        status: AppStatus::Running,
        config,
        service_autoscaling: false,
        version_id: 7,
        samples,
        period: Duration::from_secs(60),
        hourly_input: Vec::new(),
    };
    decide(&budget(), Some(&obs), history, t(NOW))
}

/// A history whose last scaling went `from` → `to` for `cause`, completed `ago` minutes
/// before `NOW`, decided at 1000 records/s and a duration of `before_ms`.
fn after_step(cause: Cause, from: AppConfig, to: AppConfig, ago: i64, before_ms: f64) -> History {
    History {
        scalings: vec![ScalingRecord {
            at: t(NOW - ago - 12),
            completed_at: Some(t(NOW - ago)),
            from,
            to,
            cause,
            checkpoint_duration_before_ms: Some(before_ms),
            outcome: Outcome::Succeeded,
            records_in_before_per_second: Some(1000.0),
        }],
        ..History::default()
    }
}

/// What shapes a window's samples.
type Shape<'a> = &'a dyn Fn(usize, &mut Sample);

fn assert_explained(d: &Decision) {
    let summary = &d.diagnosis.summary;
    assert!(summary.contains("What would confirm it"), "{summary}");
    assert!(
        summary.contains("CPU") || summary.contains("Memory") || summary.contains("memory"),
        "{summary}"
    );
    assert!(
        !summary.contains("busy n/a"),
        "the APPLICATION level has no busy time: {summary}"
    );
}

#[test]
fn figures_name_the_input_and_leave_out_what_the_level_does_not_publish() {
    let d = decide_on(
        AppConfig::new(8, 2),
        app_level(150.0, |_, _| {}),
        &History::default(),
    );
    assert_eq!(d.diagnosis.cause, Cause::LargeState);
    assert!(
        d.diagnosis.summary.contains("input 1000 records/s"),
        "{}",
        d.diagnosis.summary
    );
    assert!(
        !d.diagnosis.summary.contains("back-pressure"),
        "{}",
        d.diagnosis.summary
    );
    assert_explained(&d);
    assert!(matches!(d.action, Action::Scale { .. }), "{d:?}");
}

/// Every cause scaling cannot fix holds, and says what it rests on and what would confirm it.
#[test]
fn causes_scaling_cannot_fix_never_restart() {
    let serializer = |_: usize, s: &mut Sample| s.failed_checkpoints = Some(1.0);
    let external_call = |_: usize, s: &mut Sample| s.last_checkpoint_size_bytes = Some(20.0 * MIB);
    let transient_s3 = |i: usize, s: &mut Sample| {
        if i == 3 {
            s.failed_checkpoints = Some(2.0);
        }
    };
    let cases: [(&str, f64, Shape<'_>, Cause, &str); 3] = [
        (
            "serializer",
            30.0,
            &serializer,
            Cause::NotFixableByScaling,
            "serializer",
        ),
        (
            "external call",
            170.0,
            &external_call,
            Cause::NotFixableByScaling,
            "snapshotState",
        ),
        (
            "transient S3",
            30.0,
            &transient_s3,
            Cause::TransientFailures,
            "S3",
        ),
    ];
    for (case, duration_s, shape, cause, confirm) in cases {
        let d = decide_on(
            AppConfig::new(4, 1),
            app_level(duration_s, shape),
            &History::default(),
        );
        assert_eq!(d.diagnosis.cause, cause, "{case}: {}", d.diagnosis.summary);
        assert_eq!(d.action, Action::Hold, "{case}: {d:?}");
        assert_eq!(d.reason, Reason::NotFixableByScaling, "{case}");
        assert_explained(&d);
        assert!(
            d.diagnosis.summary.contains(confirm),
            "{case}: {}",
            d.diagnosis.summary
        );
    }
}

/// A scale-up made for a breach that left the duration where it was, at the same input,
/// proves a hot key: hold, and say how to see the hot subtask. A scale-up that shortened
/// the checkpoints as predicted is not skew.
#[test]
fn a_first_step_that_did_not_help_proves_skew_and_stops_there() {
    let history = after_step(
        Cause::LargeState,
        AppConfig::new(4, 1),
        AppConfig::new(16, 1),
        30,
        170_000.0,
    );
    let d = decide_on(AppConfig::new(16, 1), app_level(165.0, |_, _| {}), &history);
    assert_eq!(d.diagnosis.cause, Cause::StateSkew, "{}", d.diagnosis.summary);
    assert_eq!((d.action, d.reason), (Action::Hold, Reason::ScalingIneffective));
    assert_explained(&d);
    assert!(d.diagnosis.summary.contains("TASK"), "{}", d.diagnosis.summary);
    assert!(
        d.diagnosis.summary.contains("1000 records/s"),
        "{}",
        d.diagnosis.summary
    );

    let d = decide_on(AppConfig::new(16, 1), app_level(70.0, |_, _| {}), &history);
    assert_ne!(d.diagnosis.cause, Cause::StateSkew, "{}", d.diagnosis.summary);
}

/// Memory pressure takes one step; memory that the step left as high, at the same input,
/// is not relieved by more: hold. Later, or at another input, it is judged afresh.
#[test]
fn memory_a_step_did_not_relieve_holds() {
    let high = |_: usize, s: &mut Sample| s.heap_memory_utilization = Some(95.0);
    let d = decide_on(AppConfig::new(8, 4), app_level(60.0, high), &History::default());
    assert_eq!(d.diagnosis.cause, Cause::MemoryPressure);
    assert_eq!(d.reason, Reason::MoreMemoryRequired);
    assert_explained(&d);

    let stepped = |ago| {
        after_step(
            Cause::MemoryPressure,
            AppConfig::new(8, 4),
            AppConfig::new(8, 2),
            ago,
            60_000.0,
        )
    };
    let d = decide_on(AppConfig::new(8, 2), app_level(60.0, high), &stepped(30));
    assert_eq!(
        d.diagnosis.cause,
        Cause::MemoryPressure,
        "{}",
        d.diagnosis.summary
    );
    assert_eq!((d.action, d.reason), (Action::Hold, Reason::ScalingIneffective));
    assert!(
        d.diagnosis.summary.contains("did not relieve"),
        "{}",
        d.diagnosis.summary
    );
    assert_explained(&d);

    // Hours later: judged afresh.
    let d = decide_on(AppConfig::new(8, 2), app_level(60.0, high), &stepped(180));
    assert_eq!(d.reason, Reason::MoreMemoryRequired, "{d:?}");
    // The input doubled since the step: judged afresh.
    let doubled = |i: usize, s: &mut Sample| {
        high(i, s);
        s.records_in_per_second = Some(2000.0);
    };
    let d = decide_on(AppConfig::new(8, 2), app_level(60.0, doubled), &stepped(30));
    assert_eq!(d.reason, Reason::MoreMemoryRequired, "{d:?}");
    // A step for another cause says nothing of memory.
    let other = after_step(
        Cause::LargeState,
        AppConfig::new(8, 4),
        AppConfig::new(8, 2),
        30,
        60_000.0,
    );
    let d = decide_on(AppConfig::new(8, 2), app_level(60.0, high), &other);
    assert_eq!(d.reason, Reason::MoreMemoryRequired, "{d:?}");
}

/// A saturated job falling behind at the APPLICATION level (CPU and lag, no busy time) is
/// under-provisioned, and the summary says how to confirm it.
#[test]
fn saturation_without_busy_time_is_under_provisioning() {
    let saturated = |i: usize, s: &mut Sample| {
        s.cpu_utilization = Some(96.0);
        s.millis_behind_latest = Some(60_000.0 * (i as f64 + 1.0));
    };
    let d = decide_on(
        AppConfig::new(4, 1),
        app_level(170.0, saturated),
        &History::default(),
    );
    assert_eq!(
        d.diagnosis.cause,
        Cause::UnderProvisioned,
        "{}",
        d.diagnosis.summary
    );
    assert!(matches!(d.action, Action::Scale { .. }), "{d:?}");
    assert_explained(&d);
    assert!(
        d.diagnosis.summary.contains("millisBehindLatest"),
        "{}",
        d.diagnosis.summary
    );
    assert!(
        d.diagnosis.summary.contains("Barrier alignment"),
        "{}",
        d.diagnosis.summary
    );

    // Saturated but keeping up (no growing lag): nothing shows back-pressure.
    let keeping_up = |_: usize, s: &mut Sample| s.cpu_utilization = Some(96.0);
    let d = decide_on(
        AppConfig::new(4, 1),
        app_level(170.0, keeping_up),
        &History::default(),
    );
    assert_eq!(
        d.diagnosis.cause,
        Cause::UnderProvisioned,
        "{}",
        d.diagnosis.summary
    );
    assert!(
        !d.diagnosis.summary.contains("Barrier alignment"),
        "{}",
        d.diagnosis.summary
    );
}

/// Full checkpoints of 28 GiB: an upload rate that is the state's, not a slow call's.
fn large(_: usize, s: &mut Sample) {
    s.last_checkpoint_size_bytes = Some(28.0 * 1024.0 * MIB);
}

fn scaled_to(d: &Decision) -> AppConfig {
    match d.action {
        Action::Scale { to } => to,
        _ => panic!("expected a scale-up: {d:?}"),
    }
}

/// A breach of steady state in a job that is not saturated, with nothing to tell large state
/// from a hot key (no earlier step), takes a proving step: the smallest whose predicted
/// effect stands out from the noise, not the full step to the target. Where an earlier step
/// showed that the duration follows the parallelism, the full step; where the job is
/// saturated, the full step too.
#[test]
fn an_uncertain_breach_takes_a_proving_step_and_a_clear_one_the_full_step() {
    let proving = decide_on(AppConfig::new(4, 1), app_level(170.0, large), &History::default());
    assert_eq!(proving.diagnosis.cause, Cause::LargeState);
    assert!(proving.message.contains("proving step"), "{}", proving.message);
    let to = scaled_to(&proving);
    // Predicted: 17 s fixed + 153 s × 19/32 = 108 s, a gain of 62 s, at least
    // PROVING_MARGIN × 8.5 s noise / INEFFECTIVE_GAIN = 57 s; 6 subtasks (22 key groups)
    // would predict 122 s, a gain of 48 s.
    assert_eq!(to, AppConfig::new(7, 1), "{}", proving.message);

    // An earlier step at this load halved the duration with the load factor: large state.
    let followed = after_step(
        Cause::LargeState,
        AppConfig::new(2, 1),
        AppConfig::new(4, 1),
        60,
        340_000.0,
    );
    let full = decide_on(AppConfig::new(4, 1), app_level(170.0, large), &followed);
    assert!(!full.message.contains("proving step"), "{}", full.message);
    assert!(scaled_to(&full).kpus() > to.kpus(), "{}", full.message);

    // Saturated and falling behind: under-provisioned, sized to the target at once.
    let saturated = |i: usize, s: &mut Sample| {
        large(i, s);
        s.cpu_utilization = Some(96.0);
        s.millis_behind_latest = Some(60_000.0 * (i as f64 + 1.0));
    };
    let d = decide_on(
        AppConfig::new(4, 1),
        app_level(170.0, saturated),
        &History::default(),
    );
    assert_eq!(d.diagnosis.cause, Cause::UnderProvisioned);
    assert!(scaled_to(&d).kpus() > to.kpus(), "{}", d.message);
}

/// After a proving step that shortened the checkpoints by less than an even spread of the
/// state would, the fitted model leaves even the best allowed configuration over the
/// budget: another restart buys no minute within it, so the job holds where it is (no
/// second restart, neither further up nor back). A step that answered as even spread
/// predicts is large state: the next step is sized on it.
#[test]
fn a_proving_step_that_leaves_the_budget_out_of_reach_holds() {
    let history = after_step(
        Cause::LargeState,
        AppConfig::new(4, 1),
        AppConfig::new(7, 1),
        60,
        288_000.0,
    );
    let d = decide_on(AppConfig::new(7, 1), app_level(222.0, large), &history);
    assert_eq!(d.diagnosis.cause, Cause::StateSkew, "{}", d.diagnosis.summary);
    assert_eq!(
        (d.action, d.reason),
        (Action::Hold, Reason::ScalingIneffective),
        "{d:?}"
    );
    assert!(
        d.diagnosis.summary.contains("still over the budget"),
        "{}",
        d.diagnosis.summary
    );
    assert_explained(&d);

    let d = decide_on(AppConfig::new(7, 1), app_level(185.0, large), &history);
    assert_eq!(d.diagnosis.cause, Cause::LargeState, "{}", d.diagnosis.summary);
    assert!(scaled_to(&d).kpus() > 7, "{d:?}");
}

/// A scale-up that helped more than `INEFFECTIVE_GAIN` of the prediction but left a part of
/// the checkpoint beyond the budget that parallelism does not shorten (the two durations'
/// fit) proves a hot key as well.
#[test]
fn a_step_that_leaves_an_unshrinking_part_beyond_the_budget_proves_skew() {
    // 288 s at load factor 32, 200 s at 8: about 171 s does not shrink with parallelism.
    let history = after_step(
        Cause::LargeState,
        AppConfig::new(4, 1),
        AppConfig::new(16, 1),
        60,
        288_000.0,
    );
    let d = decide_on(AppConfig::new(16, 1), app_level(200.0, large), &history);
    assert_eq!(d.diagnosis.cause, Cause::StateSkew, "{}", d.diagnosis.summary);
    assert_eq!(
        (d.action, d.reason),
        (Action::Hold, Reason::ScalingIneffective),
        "{d:?}"
    );
    assert!(d.diagnosis.summary.contains("does not") || d.diagnosis.summary.contains("did not"));
}
