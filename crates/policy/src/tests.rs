//! Table tests of `decide`: one per cause and per rule, with the edge cases (tolerance
//! boundary, clamps, cooldown exactly at `now`, empty history, failed configurations,
//! maxKpus, perKpu, key-group alignment).

use std::time::Duration;

use jiff::Timestamp;

use super::*;

const GIB: f64 = 1024.0 * 1024.0 * 1024.0;

/// Minute `m` of the test timeline.
fn t(m: i64) -> Timestamp {
    Timestamp::from_second(1_800_000_000 + m * 60).unwrap()
}

const NOW: i64 = 600;

fn mins(m: u64) -> Duration {
    Duration::from_secs(m * 60)
}

fn budget() -> Budget {
    Budget {
        max_checkpoint_duration: mins(2),
        max_checkpoint_size: None,
        max_failed_checkpoints: 0,
        window: mins(10),
        parallelism_min: 1,
        parallelism_max: 64,
        max_parallelism: 128,
        per_kpu_min: 1,
        per_kpu_max: 4,
        max_kpus: Some(16),
        scale_up_cooldown: mins(5),
        scale_down_cooldown: mins(30),
        scale_down_stabilization: mins(60),
        error_budget: None,
    }
}

/// A steady, healthy period at minute `m`.
fn sample(m: i64, duration_s: f64) -> Sample {
    Sample {
        at: t(m),
        last_checkpoint_duration_ms: Some(duration_s * 1000.0),
        last_checkpoint_size_bytes: Some(GIB),
        failed_checkpoints: Some(0.0),
        cpu_utilization: Some(60.0),
        heap_memory_utilization: Some(40.0),
        container_memory_utilization: Some(45.0),
        busy_time_ms_per_second: Some(400.0),
        back_pressured_time_ms_per_second: Some(0.0),
        millis_behind_latest: Some(500.0),
        records_in_per_second: Some(1000.0),
        full_restarts: Some(0.0),
        downtime_ms: Some(0.0),
    }
}

/// The ten periods of the window ending at `NOW`, each shaped by `f(i, sample)` (i = 0 is
/// the oldest).
fn window(duration_s: f64, f: impl Fn(usize, &mut Sample)) -> Vec<Sample> {
    (0..10)
        .map(|i| {
            let mut s = sample(NOW - 10 + i as i64, duration_s);
            f(i, &mut s);
            s
        })
        .collect()
}

fn obs(config: AppConfig, samples: Vec<Sample>) -> Observation {
    Observation {
        at: t(NOW),
        status: AppStatus::Running,
        config,
        service_autoscaling: false,
        version_id: 7,
        samples,
        period: Duration::from_secs(60),
        hourly_input: Vec::new(),
    }
}

fn run(b: &Budget, o: &Observation, h: &History) -> Decision {
    let d = decide(b, Some(o), h, t(NOW));
    assert_eq!(d, decide(b, Some(o), h, t(NOW)), "deterministic");
    d
}

fn scaled_to(d: &Decision) -> AppConfig {
    match d.action {
        Action::Scale { to } => to,
        other => panic!(
            "expected a scale, got {other:?}: {} / {}",
            d.message, d.diagnosis.summary
        ),
    }
}

fn saturated(_: usize, s: &mut Sample) {
    s.cpu_utilization = Some(95.0);
    s.busy_time_ms_per_second = Some(950.0);
    s.back_pressured_time_ms_per_second = Some(600.0);
}

fn idle(_: usize, s: &mut Sample) {
    s.cpu_utilization = Some(20.0);
    s.busy_time_ms_per_second = Some(150.0);
}

fn record(at: i64, done: Option<i64>, from: AppConfig, to: AppConfig, outcome: Outcome) -> ScalingRecord {
    ScalingRecord {
        at: t(at),
        completed_at: done.map(t),
        from,
        to,
        cause: Cause::UnderProvisioned,
        checkpoint_duration_before_ms: None,
        outcome,
        records_in_before_per_second: None,
    }
}

fn history(scalings: Vec<ScalingRecord>) -> History {
    History {
        baseline: None,
        cpu_span: None,
        restarts: Vec::new(),
        slo_minutes: Vec::new(),
        slo_accounted_until: None,
        scalings,
        recommendations: Vec::new(),
    }
}

/// Whether `p` is the smallest parallelism with its number of key groups per subtask.
fn aligned(p: u32, key_groups: u32) -> bool {
    p == 1 || key_groups.div_ceil(p - 1) > key_groups.div_ceil(p)
}

#[test]
fn healthy_holds_with_figures() {
    let d = run(
        &budget(),
        &obs(AppConfig::new(8, 2), window(70.0, |_, _| {})),
        &History::default(),
    );
    assert_eq!(d.action, Action::Hold);
    assert_eq!(d.reason, Reason::WithinBudget);
    assert_eq!(d.diagnosis.cause, Cause::Healthy);
    assert_eq!(d.recommendation, AppConfig::new(8, 2));
    assert_eq!(d.slo_met, Some(true));
    assert_eq!(d.figures.samples, 10);
    assert_eq!(d.figures.max_duration_ms, Some(70_000.0));
    assert_eq!(d.figures.representative_duration_ms, Some(70_000.0));
    assert_eq!(d.figures.records_in_per_second, Some(1000.0));
    assert_eq!(d.requeue_after, Duration::from_secs(60));
    assert!(d.message.contains("1m10s"), "{}", d.message);
}

#[test]
fn under_provisioned_scales_parallelism_in_one_sized_step() {
    let d = run(
        &budget(),
        &obs(AppConfig::new(8, 2), window(180.0, saturated)),
        &History::default(),
    );
    assert_eq!(d.reason, Reason::ScaleUpRequired);
    assert_eq!(d.diagnosis.cause, Cause::UnderProvisioned);
    let to = scaled_to(&d);
    // Back-pressured: the duration is inflated by alignment, so the step is sized on
    // throughput: load factor 32 -> at most 32 * 70% / 95% = 23.6: 12 subtasks (11 key
    // groups each) at 2 per KPU, 6 KPU; the same perKpu (the parallelism knob).
    assert_eq!(to, AppConfig::new(12, 2));
    assert_eq!(d.recommendation, to);
    assert_eq!(d.slo_met, Some(false));
    assert!(d.message.contains("8 → 12"), "{}", d.message);
}

#[test]
fn lag_growth_sizes_the_step_on_demand() {
    // Falling behind by half of real time: the input is twice what is processed.
    let behind = |i: usize, s: &mut Sample| {
        saturated(i, s);
        s.millis_behind_latest = Some(30_000.0 * i as f64);
    };
    let d = run(
        &budget(),
        &obs(AppConfig::new(8, 2), window(180.0, behind)),
        &History::default(),
    );
    // Demand 2x what is processed at 95%; the 4m30s lag plus a 10-minute restart must drain
    // within 20 minutes (1.725x, more than the 1/70% steady-state headroom): load factor 32
    // -> at most 32 / (0.95 * 2 * 1.725) = 9.8: 32 subtasks at 2 per KPU (load 8).
    assert_eq!(scaled_to(&d), AppConfig::new(32, 2));
    assert!(
        d.diagnosis.summary.contains("falling behind"),
        "{}",
        d.diagnosis.summary
    );
}

#[test]
fn without_back_pressure_the_duration_sizes_the_step() {
    let busy_cpu = |_: usize, s: &mut Sample| {
        s.cpu_utilization = Some(80.0);
        s.busy_time_ms_per_second = Some(800.0);
    };
    let d = run(
        &budget(),
        &obs(AppConfig::new(8, 2), window(180.0, busy_cpu)),
        &History::default(),
    );
    assert_eq!(d.diagnosis.cause, Cause::UnderProvisioned);
    // Load factor 32 -> at most 32 * (78 s - 18 s) / 162 s = 11.9 (CPU asks for less):
    // 26 subtasks at 2 per KPU (5 key groups each, load 10), 13 KPU.
    assert_eq!(scaled_to(&d), AppConfig::new(26, 2));
}

#[test]
fn a_slow_checkpoint_of_little_state_is_not_fixable_by_scaling() {
    let d = run(
        &budget(),
        &obs(
            AppConfig::new(8, 2),
            window(150.0, |_, s| {
                s.last_checkpoint_size_bytes = Some(100.0 * 1024.0 * 1024.0)
            }),
        ),
        &History::default(),
    );
    assert_eq!(d.diagnosis.cause, Cause::NotFixableByScaling);
    assert_eq!((d.action, d.reason), (Action::Hold, Reason::NotFixableByScaling));
    assert!(d.diagnosis.advice.as_deref().unwrap().contains("external call"));
}

#[test]
fn large_state_scales_parallelism() {
    let d = run(
        &budget(),
        &obs(
            AppConfig::new(4, 1),
            window(150.0, |_, s| s.last_checkpoint_size_bytes = Some(40.0 * GIB)),
        ),
        &History::default(),
    );
    assert_eq!(d.diagnosis.cause, Cause::LargeState);
    let to = scaled_to(&d);
    assert!(to.parallelism > 4 && to.parallelism_per_kpu == 1, "{to}");
    assert!(aligned(to.parallelism, 128));
}

#[test]
fn unbounded_state_growth_is_high_key_cardinality_with_ttl_advice() {
    let growing = |i: usize, s: &mut Sample| {
        s.last_checkpoint_size_bytes = Some(10.0 * GIB * (1.0 + 0.01 * i as f64));
    };
    let d = run(
        &budget(),
        &obs(AppConfig::new(4, 1), window(150.0, growing)),
        &History::default(),
    );
    assert_eq!(d.diagnosis.cause, Cause::HighKeyCardinality);
    assert!(d.diagnosis.advice.as_deref().unwrap().contains("TTL"));
    scaled_to(&d);
    // Within budget it is only a warning.
    let d = run(
        &budget(),
        &obs(AppConfig::new(4, 1), window(70.0, growing)),
        &History::default(),
    );
    assert_eq!(d.diagnosis.cause, Cause::HighKeyCardinality);
    assert_eq!((d.action, d.reason), (Action::Hold, Reason::WithinBudget));
}

#[test]
fn memory_pressure_lowers_per_kpu_and_keeps_parallelism() {
    let d = run(
        &budget(),
        &obs(
            AppConfig::new(8, 4),
            window(70.0, |_, s| s.heap_memory_utilization = Some(95.0)),
        ),
        &History::default(),
    );
    assert_eq!(d.diagnosis.cause, Cause::MemoryPressure);
    assert_eq!(d.reason, Reason::MoreMemoryRequired);
    // Load factor 64 -> at most 64 * 45/70 = 41: 2 per KPU (load 32).
    assert_eq!(scaled_to(&d), AppConfig::new(8, 2));
}

#[test]
fn one_memory_spike_is_not_pressure_but_restarts_lower_the_bar() {
    let spike = |i: usize, s: &mut Sample| {
        if i == 9 {
            s.heap_memory_utilization = Some(97.0);
        }
    };
    let d = run(
        &budget(),
        &obs(AppConfig::new(8, 4), window(70.0, spike)),
        &History::default(),
    );
    assert_eq!(d.action, Action::Hold);
    let restarts = |i: usize, s: &mut Sample| {
        s.heap_memory_utilization = Some(80.0);
        if i == 5 {
            s.full_restarts = Some(1.0);
        }
    };
    let d = run(
        &budget(),
        &obs(AppConfig::new(8, 4), window(70.0, restarts)),
        &History::default(),
    );
    assert_eq!(d.diagnosis.cause, Cause::MemoryPressure);
    assert!(scaled_to(&d).parallelism_per_kpu < 4);
}

#[test]
fn memory_pressure_at_min_per_kpu_spreads_state_or_blocks() {
    let mut b = budget();
    b.per_kpu_min = 2;
    // Heap holds working objects per subtask: more subtasks do not help.
    let d = run(
        &b,
        &obs(
            AppConfig::new(8, 2),
            window(70.0, |_, s| s.heap_memory_utilization = Some(95.0)),
        ),
        &History::default(),
    );
    assert_eq!((d.action, d.reason), (Action::Blocked, Reason::LimitReached));
    assert!(d.message.contains("perKpu.min 2"), "{}", d.message);
    // Native memory pinned by state does shrink when the state is spread.
    let d = run(
        &b,
        &obs(
            AppConfig::new(8, 2),
            window(70.0, |_, s| s.container_memory_utilization = Some(95.0)),
        ),
        &History::default(),
    );
    assert_eq!(d.reason, Reason::MoreMemoryRequired);
    let to = scaled_to(&d);
    assert_eq!(to.parallelism_per_kpu, 2);
    assert!(to.parallelism > 8);
    assert!(d.message.contains("minimum"), "{}", d.message);
}

fn skewed_history(before_ms: f64, load_before: f64, completed: i64) -> History {
    let mut r = record(
        completed - 12,
        Some(completed),
        AppConfig::new(8, 2),
        AppConfig::new(16, 2),
        Outcome::Succeeded,
    );
    r.checkpoint_duration_before_ms = Some(before_ms);
    r.records_in_before_per_second = Some(load_before);
    history(vec![r])
}

#[test]
fn ineffective_scale_up_is_state_skew_and_stops_scaling() {
    let h = skewed_history(180_000.0, 1000.0, NOW - 30);
    let hot = |_: usize, s: &mut Sample| {
        s.cpu_utilization = Some(40.0);
        s.busy_time_ms_per_second = Some(1000.0);
    };
    let d = run(&budget(), &obs(AppConfig::new(16, 2), window(175.0, hot)), &h);
    assert_eq!(d.diagnosis.cause, Cause::StateSkew);
    assert_eq!((d.action, d.reason), (Action::Hold, Reason::ScalingIneffective));
    assert!(d.diagnosis.advice.is_some());
    assert_eq!(d.recommendation, AppConfig::new(16, 2));

    // The load doubled since: the situation changed, scaling is judged again.
    let doubled = |i: usize, s: &mut Sample| {
        hot(i, s);
        s.records_in_per_second = Some(2000.0);
    };
    let d = run(&budget(), &obs(AppConfig::new(16, 2), window(175.0, doubled)), &h);
    assert_ne!(d.diagnosis.cause, Cause::StateSkew);

    // A day later, one more try.
    let h = skewed_history(180_000.0, 1000.0, NOW - 25 * 60);
    let d = run(&budget(), &obs(AppConfig::new(16, 2), window(175.0, hot)), &h);
    assert_ne!(d.reason, Reason::ScalingIneffective);

    // A scale-up that worked as predicted is not skew (and the budget is met).
    let h = skewed_history(180_000.0, 1000.0, NOW - 30);
    let d = run(
        &budget(),
        &obs(AppConfig::new(16, 2), window(95.0, |_, _| {})),
        &h,
    );
    assert_ne!(d.diagnosis.cause, Cause::StateSkew);
}

#[test]
fn failures_with_normal_duration_are_not_fixable_by_scaling() {
    let failing = |i: usize, s: &mut Sample| {
        if i % 2 == 1 {
            s.failed_checkpoints = Some(1.0);
        }
    };
    let d = run(
        &budget(),
        &obs(AppConfig::new(8, 2), window(30.0, failing)),
        &History::default(),
    );
    assert_eq!(d.diagnosis.cause, Cause::NotFixableByScaling);
    assert_eq!((d.action, d.reason), (Action::Hold, Reason::NotFixableByScaling));
    assert!(d.diagnosis.advice.as_deref().unwrap().contains("serializer"));
    assert_eq!(d.slo_met, Some(false));
    assert_eq!(d.figures.failed, 5);
}

#[test]
fn a_window_of_three_periods_is_judged_between_period_boundaries() {
    // A 3-minute window, evaluated 20 s after a boundary: the three whole periods that
    // CloudWatch returns (the oldest began 3m20s ago) are all judged.
    let b = Budget {
        window: mins(3),
        ..budget()
    };
    let samples: Vec<Sample> = (1..=3).map(|m| sample(NOW - m, 30.0)).collect();
    let o = obs(AppConfig::new(8, 2), samples);
    let now = t(NOW) + jiff::SignedDuration::from_secs(20);
    let d = decide(&b, Some(&o), &History::default(), now);
    assert_ne!(
        d.diagnosis.cause,
        Cause::InsufficientData,
        "{}",
        d.diagnosis.summary
    );
    assert_eq!(d.figures.samples, 3);
}

#[test]
fn failures_within_budget_are_tolerated() {
    let mut b = budget();
    b.max_failed_checkpoints = 2;
    let once = |i: usize, s: &mut Sample| {
        if i == 4 {
            s.failed_checkpoints = Some(1.0);
        }
    };
    let d = run(
        &b,
        &obs(AppConfig::new(8, 2), window(30.0, once)),
        &History::default(),
    );
    assert_eq!(d.diagnosis.cause, Cause::TransientFailures);
    assert_eq!((d.action, d.reason), (Action::Hold, Reason::FailuresWithinBudget));
    assert_eq!(d.slo_met, Some(true));

    // Beyond the budget but isolated and recovered: still transient, still no scaling.
    b.max_failed_checkpoints = 0;
    let d = run(
        &b,
        &obs(AppConfig::new(8, 2), window(30.0, once)),
        &History::default(),
    );
    assert_eq!(d.diagnosis.cause, Cause::TransientFailures);
    assert_eq!((d.action, d.reason), (Action::Hold, Reason::NotFixableByScaling));
}

#[test]
fn saturated_with_failures_is_under_provisioning() {
    let d = run(
        &budget(),
        &obs(
            AppConfig::new(8, 2),
            window(100.0, |i, s| {
                saturated(i, s);
                s.failed_checkpoints = Some(1.0);
            }),
        ),
        &History::default(),
    );
    assert_eq!(d.diagnosis.cause, Cause::UnderProvisioned);
    scaled_to(&d);
}

#[test]
fn size_objective_breach_is_not_fixed_by_scaling() {
    let mut b = budget();
    b.max_checkpoint_size = Some((8.0 * GIB) as u64);
    let d = run(
        &b,
        &obs(
            AppConfig::new(8, 2),
            window(70.0, |_, s| s.last_checkpoint_size_bytes = Some(9.0 * GIB)),
        ),
        &History::default(),
    );
    assert_eq!(d.diagnosis.cause, Cause::LargeState);
    assert_eq!((d.action, d.reason), (Action::Hold, Reason::NotFixableByScaling));
    assert_eq!(d.slo_met, Some(false));
}

#[test]
fn tolerance_boundary_at_exactly_the_budget() {
    let at_budget = run(
        &budget(),
        &obs(AppConfig::new(8, 2), window(120.0, |_, _| {})),
        &History::default(),
    );
    assert_eq!(at_budget.action, Action::Hold);
    assert_eq!(at_budget.slo_met, Some(true));
    let over = run(
        &budget(),
        &obs(AppConfig::new(8, 2), window(120.001, |_, _| {})),
        &History::default(),
    );
    scaled_to(&over);
    assert_eq!(over.slo_met, Some(false));
    // One breached period is noise: the median of the latest periods decides.
    let one = run(
        &budget(),
        &obs(
            AppConfig::new(8, 2),
            window(70.0, |i, s| {
                if i == 9 {
                    s.last_checkpoint_duration_ms = Some(200_000.0);
                }
            }),
        ),
        &History::default(),
    );
    assert_eq!(one.action, Action::Hold);
    assert_eq!(one.slo_met, Some(false));
}

#[test]
fn rising_duration_scales_before_the_breach() {
    let rising =
        |i: usize, s: &mut Sample| s.last_checkpoint_duration_ms = Some(65_000.0 + 5_000.0 * i as f64);
    let d = run(
        &budget(),
        &obs(AppConfig::new(8, 2), window(0.0, rising)),
        &History::default(),
    );
    assert_eq!(d.reason, Reason::ScaleUpRequired);
    assert!(
        d.diagnosis.summary.contains("projected"),
        "{}",
        d.diagnosis.summary
    );
    scaled_to(&d);
}

#[test]
fn parallelism_capped_lowers_per_kpu_then_blocks_at_max_kpus() {
    let mut b = budget();
    b.parallelism_max = 32;
    b.max_kpus = None;
    let d = run(
        &b,
        &obs(AppConfig::new(32, 2), window(180.0, saturated)),
        &History::default(),
    );
    assert_eq!(scaled_to(&d), AppConfig::new(32, 1));

    b.max_kpus = Some(16);
    let d = run(
        &b,
        &obs(AppConfig::new(32, 2), window(180.0, saturated)),
        &History::default(),
    );
    assert_eq!((d.action, d.reason), (Action::Blocked, Reason::LimitReached));
    assert_eq!(d.recommendation, AppConfig::new(32, 2));
    assert!(d.message.contains("maxKpus"), "{}", d.message);
}

#[test]
fn max_kpus_caps_the_step_and_reports_limit_reached() {
    let mut b = budget();
    b.max_kpus = Some(10);
    // Falling behind by 45 s a minute: the input is four times what is processed.
    let far_behind = |i: usize, s: &mut Sample| {
        saturated(i, s);
        s.millis_behind_latest = Some(45_000.0 * i as f64);
    };
    let d = run(
        &b,
        &obs(AppConfig::new(4, 1), window(400.0, far_behind)),
        &History::default(),
    );
    assert_eq!(d.reason, Reason::LimitReached);
    let to = scaled_to(&d);
    assert!(to.kpus() <= 10 && to.parallelism > 4, "{to}");
    assert!(aligned(to.parallelism, 128));
}

#[test]
fn parallelism_stays_aligned_to_key_groups() {
    let mut b = budget();
    b.max_parallelism = 100;
    b.parallelism_max = 100;
    b.max_kpus = None;
    for duration in [130.0, 200.0, 300.0, 600.0] {
        let d = run(
            &b,
            &obs(AppConfig::new(5, 1), window(duration, saturated)),
            &History::default(),
        );
        let to = scaled_to(&d);
        assert!(aligned(to.parallelism, 100), "{to} for {duration}s");
        assert!(to.parallelism <= 100);
    }
}

#[test]
fn never_retries_a_failed_configuration() {
    let failed = record(
        NOW - 120,
        Some(NOW - 110),
        AppConfig::new(8, 2),
        AppConfig::new(12, 2),
        Outcome::Failed,
    );
    let h = history(vec![failed]);
    let d = run(
        &budget(),
        &obs(AppConfig::new(8, 2), window(180.0, saturated)),
        &h,
    );
    assert_eq!(scaled_to(&d), AppConfig::new(13, 2));
    assert!(d.message.contains("failed before"), "{}", d.message);

    // When the failed one was the only way up: PreviouslyFailed, blocked.
    // 16 key groups: from 8 subtasks (2 key groups each) the only step up is 16.
    let mut b = budget();
    b.parallelism_max = 16;
    b.max_parallelism = 16;
    b.per_kpu_min = 2;
    let failed = record(
        NOW - 120,
        Some(NOW - 110),
        AppConfig::new(8, 2),
        AppConfig::new(16, 2),
        Outcome::Failed,
    );
    let d = run(
        &b,
        &obs(AppConfig::new(8, 2), window(180.0, saturated)),
        &history(vec![failed]),
    );
    assert_eq!((d.action, d.reason), (Action::Blocked, Reason::PreviouslyFailed));
}

#[test]
fn scale_up_cooldown_ends_exactly_at_now() {
    let mut b = budget();
    b.scale_up_cooldown = mins(20);
    let just_over = history(vec![record(
        NOW - 20,
        Some(NOW - 19),
        AppConfig::new(4, 2),
        AppConfig::new(8, 2),
        Outcome::Succeeded,
    )]);
    let d = run(
        &b,
        &obs(AppConfig::new(8, 2), window(180.0, saturated)),
        &just_over,
    );
    scaled_to(&d);

    let mut one_second_short = just_over.clone();
    one_second_short.scalings[0].at = Timestamp::from_second(t(NOW - 20).as_second() + 1).unwrap();
    let d = run(
        &b,
        &obs(AppConfig::new(8, 2), window(180.0, saturated)),
        &one_second_short,
    );
    assert_eq!((d.action, d.reason), (Action::Hold, Reason::CooldownActive));
    assert_eq!(d.requeue_after, Duration::from_secs(1));
    assert!(
        d.recommendation.parallelism > 8,
        "the recommendation shows the target"
    );
}

#[test]
fn holds_while_an_update_is_in_flight_or_not_running() {
    let h = history(vec![record(
        NOW - 3,
        None,
        AppConfig::new(8, 2),
        AppConfig::new(16, 2),
        Outcome::InProgress,
    )]);
    let d = run(
        &budget(),
        &obs(AppConfig::new(8, 2), window(180.0, saturated)),
        &h,
    );
    assert_eq!((d.action, d.reason), (Action::Hold, Reason::ApplicationBusy));
    assert_eq!(d.recommendation, AppConfig::new(8, 2));

    let mut o = obs(AppConfig::new(8, 2), window(180.0, saturated));
    o.status = AppStatus::Updating;
    let d = run(&budget(), &o, &History::default());
    assert_eq!((d.action, d.reason), (Action::Hold, Reason::ApplicationBusy));
    assert!(
        d.diagnosis.summary.contains("UPDATING"),
        "{}",
        d.diagnosis.summary
    );
}

#[test]
fn missing_or_stale_data_holds() {
    let b = budget();
    let d = decide(&b, None, &History::default(), t(NOW));
    assert_eq!((d.action, d.reason), (Action::Hold, Reason::MissingMetrics));
    assert_eq!(d.slo_met, None);

    // Gaps are missing, not zero.
    let gaps = window(180.0, |i, s| {
        saturated(i, s);
        if i < 7 {
            s.last_checkpoint_duration_ms = None;
        }
    });
    let d = run(&b, &obs(AppConfig::new(8, 2), gaps), &History::default());
    assert_eq!((d.action, d.reason), (Action::Hold, Reason::MissingMetrics));

    // Stale: nothing in the last five periods.
    let stale: Vec<Sample> = window(180.0, saturated).into_iter().take(5).collect();
    let d = run(&b, &obs(AppConfig::new(8, 2), stale), &History::default());
    assert_eq!((d.action, d.reason), (Action::Hold, Reason::MissingMetrics));
    assert!(d.diagnosis.summary.contains("old"), "{}", d.diagnosis.summary);

    let d = run(&b, &obs(AppConfig::new(8, 2), Vec::new()), &History::default());
    assert_eq!((d.action, d.reason), (Action::Hold, Reason::MissingMetrics));
    assert_eq!(d.diagnosis.cause, Cause::InsufficientData);
}

#[test]
fn warms_up_after_a_restart_and_waits_for_the_backlog() {
    let h = history(vec![record(
        NOW - 16,
        Some(NOW - 4),
        AppConfig::new(8, 2),
        AppConfig::new(16, 2),
        Outcome::Succeeded,
    )]);
    let d = run(
        &budget(),
        &obs(AppConfig::new(16, 2), window(180.0, saturated)),
        &h,
    );
    assert_eq!((d.action, d.reason), (Action::Hold, Reason::WarmingUp));

    // Completed 12 minutes ago, past the warm-up, but the lag is still draining.
    let h = history(vec![record(
        NOW - 25,
        Some(NOW - 12),
        AppConfig::new(8, 2),
        AppConfig::new(16, 2),
        Outcome::Succeeded,
    )]);
    let draining = |i: usize, s: &mut Sample| {
        saturated(i, s);
        s.millis_behind_latest = Some(600_000.0 - 50_000.0 * i as f64);
    };
    let d = run(
        &budget(),
        &obs(AppConfig::new(16, 2), window(180.0, draining)),
        &h,
    );
    assert_eq!((d.action, d.reason), (Action::Hold, Reason::WarmingUp));
    assert!(d.diagnosis.summary.contains("behind"), "{}", d.diagnosis.summary);
}

fn idle_obs() -> Observation {
    obs(AppConfig::new(16, 1), window(20.0, idle))
}

#[test]
fn idle_headroom_waits_for_the_stabilization_window() {
    let d = run(&budget(), &idle_obs(), &History::default());
    assert_eq!(d.diagnosis.cause, Cause::IdleHeadroom);
    assert_eq!((d.action, d.reason), (Action::Hold, Reason::ScaleDownPending));
    let raw = d.recommendation;
    assert!(raw.kpus() < 16 && raw.kpus() >= 8, "{raw}");

    // Recommended for the whole hour: not yet, the restart (10 minutes and the catch-up, at
    // 64 KPU-minutes per violation minute) takes longer to pay back with 8 KPUs saved.
    let mut h = History::default();
    h.recommendations.push(RecommendationRecord {
        at: t(NOW - 61),
        config: raw,
    });
    let d = run(&budget(), &idle_obs(), &h);
    assert_eq!((d.action, d.reason), (Action::Hold, Reason::ScaleDownPending));
    // Recommended for the payback (at most six hours): scale down, at most by half.
    h.recommendations[0].at = t(NOW - 361);
    let d = run(&budget(), &idle_obs(), &h);
    assert_eq!(d.reason, Reason::ScaleDownStabilized);
    assert_eq!(scaled_to(&d), raw);

    // A higher recommendation within the hour wins.
    h.recommendations.push(RecommendationRecord {
        at: t(NOW - 30),
        config: AppConfig::new(16, 1),
    });
    let d = run(&budget(), &idle_obs(), &h);
    assert_eq!((d.action, d.reason), (Action::Hold, Reason::ScaleDownPending));
}

fn with_error_budget(target: f64, period_hours: u64) -> Budget {
    Budget {
        error_budget: Some(ErrorBudget {
            target,
            period: Duration::from_secs(period_hours * 3600),
        }),
        ..budget()
    }
}

/// A history whose error budget counted `bad` bad minutes of `judged` in the bucket at
/// `NOW` (recorded through `account`, as the controller does).
fn spent(b: &Budget, judged: i64, bad: i64) -> History {
    let mut h = History::default();
    let start = NOW - judged;
    account(&mut h, b, Some(true), t(start));
    let mut at = start;
    for i in 0..judged {
        at += 1;
        account(&mut h, b, Some(i < judged - bad), t(at));
    }
    h
}

#[test]
fn error_budget_counts_minutes_and_burn_rate() {
    // 99% over 10 hours allows 6 bad minutes.
    let b = with_error_budget(0.99, 10);
    let h = spent(&b, 20, 3);
    let s = error_budget_state(&b, &h, t(NOW)).unwrap();
    assert_eq!((s.judged_minutes, s.bad_minutes), (20, 3));
    assert!((s.allowed_minutes - 6.0).abs() < 1e-9, "{s:?}");
    assert!((s.remaining_share - 0.5).abs() < 1e-9, "{s:?}");
    // Buckets of 25 minutes: the 20 minutes may straddle two; the burn rate is the newest
    // bucket's bad share over 1%.
    let newest = h.slo_minutes.last().unwrap();
    let want = f64::from(newest.bad_minutes) / f64::from(newest.minutes) / 0.01;
    assert!((s.burn_rate - want).abs() < 1e-9, "{s:?}");
    assert!(s.burn_rate > 1.0);

    // Minutes without data are not judged; a gap longer than the window is not counted.
    let mut h2 = h.clone();
    account(&mut h2, &b, None, t(NOW + 5));
    assert_eq!(
        error_budget_state(&b, &h2, t(NOW + 5)).unwrap().judged_minutes,
        20
    );
    account(&mut h2, &b, Some(false), t(NOW + 500));
    assert_eq!(
        error_budget_state(&b, &h2, t(NOW + 500)).unwrap().bad_minutes,
        3 + 10
    );

    // Minutes older than the period fall out of it.
    let later = t(NOW + 11 * 60);
    let mut h3 = h.clone();
    account(&mut h3, &b, Some(true), later);
    let s = error_budget_state(&b, &h3, later).unwrap();
    assert_eq!(s.bad_minutes, 0, "{:?}", h3.slo_minutes);
    assert!(h3.slo_minutes.len() <= 24 + 1);

    // Without a target nothing is counted, and a count left over is cleared.
    let mut h4 = h.clone();
    account(&mut h4, &budget(), Some(false), t(NOW + 1));
    assert!(h4.slo_minutes.is_empty() && h4.slo_accounted_until.is_none());
    assert!(error_budget_state(&budget(), &h4, t(NOW)).is_none());
}

#[test]
fn a_low_error_budget_holds_a_planned_scale_down() {
    // 99.9% over 30 days allows 43.2 bad minutes; 40 spent leaves less than a quarter.
    let b = with_error_budget(0.999, 720);
    let mut h = spent(&b, 100, 40);
    let d = run(&b, &idle_obs(), &h);
    let raw = d.recommendation;
    h.recommendations.push(RecommendationRecord {
        at: t(NOW - 361),
        config: raw,
    });
    let d = run(&b, &idle_obs(), &h);
    assert_eq!((d.action, d.reason), (Action::Hold, Reason::ScaleDownPending));
    assert!(
        d.diagnosis.summary.contains("error budget is low") || d.message.contains("error budget is low"),
        "{d:?}"
    );
    let s = error_budget_state(&b, &h, t(NOW)).unwrap();
    assert!(spending_stopped(&s, &h));

    // The same budget untouched scales down as without an error budget.
    let mut fresh = spent(&b, 100, 0);
    fresh.recommendations = h.recommendations.clone();
    let d = run(&b, &idle_obs(), &fresh);
    assert_eq!(d.reason, Reason::ScaleDownStabilized);
}

#[test]
fn a_plentiful_error_budget_spends_after_half_the_stabilization_window() {
    let b = with_error_budget(0.99, 720);
    let mut h = spent(&b, 100, 0);
    let raw = run(&b, &idle_obs(), &h).recommendation;
    h.recommendations.push(RecommendationRecord {
        at: t(NOW - 141),
        config: raw,
    });
    // Without a forecast the 8 KPUs saved pay for the restart and the one back up (10
    // minutes each and the catch-up at 40% utilization, at 64 KPU-minutes per violation
    // minute) in about 267 minutes: 141 minutes are enough with a plentiful budget (half of
    // it), not without one.
    assert_eq!(run(&b, &idle_obs(), &h).reason, Reason::ScaleDownStabilized);
    let mut without = h.clone();
    without.slo_minutes.clear();
    assert_eq!(
        run(&budget(), &idle_obs(), &without).reason,
        Reason::ScaleDownPending
    );
    // Burning faster than the allowance: no early spending.
    let burning = spent(&b, 100, 30);
    let mut hb = burning;
    hb.recommendations = h.recommendations.clone();
    let s = error_budget_state(&b, &hb, t(NOW)).unwrap();
    assert!(s.burn_rate > 1.0 && !s.is_plentiful(), "{s:?}");
    assert_eq!(run(&b, &idle_obs(), &hb).reason, Reason::ScaleDownPending);
}

#[test]
fn scale_down_respects_its_cooldown() {
    let mut b = budget();
    b.scale_down_stabilization = mins(10);
    let h = History {
        baseline: None,
        cpu_span: None,
        restarts: Vec::new(),
        slo_minutes: Vec::new(),
        slo_accounted_until: None,
        scalings: vec![record(
            NOW - 20,
            Some(NOW - 19),
            AppConfig::new(32, 1),
            AppConfig::new(16, 1),
            Outcome::Succeeded,
        )],
        recommendations: vec![RecommendationRecord {
            at: t(NOW - 361),
            config: AppConfig::new(8, 1),
        }],
    };
    let d = run(&b, &idle_obs(), &h);
    assert_eq!((d.action, d.reason), (Action::Hold, Reason::CooldownActive));
    assert_eq!(d.requeue_after, Duration::from_secs(60));
}

#[test]
fn out_of_bounds_configuration_is_brought_back() {
    let mut b = budget();
    b.parallelism_max = 32;
    let d = run(
        &b,
        &obs(AppConfig::new(40, 2), window(70.0, |_, _| {})),
        &History::default(),
    );
    assert_eq!(d.reason, Reason::LimitReached);
    let to = scaled_to(&d);
    assert!(to.parallelism <= 32 && to.kpus() <= 16, "{to}");
}

#[test]
fn remember_stores_changes_and_prunes_the_window() {
    let b = budget();
    let mut h = History::default();
    let mut d = run(&b, &idle_obs(), &h);
    for m in 0..120 {
        remember(&mut h, &d, &b, t(NOW - 120 + m));
    }
    assert_eq!(
        h.recommendations.len(),
        1,
        "a run of equal recommendations is stored once"
    );
    d.recommendation = AppConfig::new(9, 1);
    remember(&mut h, &d, &b, t(NOW));
    assert_eq!(h.recommendations.len(), 2);
    // Seven hours later (past the six hours kept for the payback) only the record in force
    // at the window's start remains.
    remember(&mut h, &d, &b, t(NOW + 420));
    assert_eq!(h.recommendations.len(), 1);
    assert_eq!(h.recommendations[0].config, AppConfig::new(9, 1));
}

#[test]
fn without_observation_the_last_known_configuration_is_recommended() {
    let b = budget();
    let mut h = history(vec![record(
        NOW - 100,
        Some(NOW - 90),
        AppConfig::new(8, 2),
        AppConfig::new(16, 2),
        Outcome::Succeeded,
    )]);
    assert_eq!(decide(&b, None, &h, t(NOW)).recommendation, AppConfig::new(16, 2));
    h.scalings.push(record(
        NOW - 50,
        Some(NOW - 40),
        AppConfig::new(16, 2),
        AppConfig::new(32, 2),
        Outcome::Failed,
    ));
    assert_eq!(decide(&b, None, &h, t(NOW)).recommendation, AppConfig::new(16, 2));
}

#[test]
fn a_slow_catch_up_is_under_provisioning_sized_to_drain_the_backlog() {
    // The lag falls by 10 s a minute from 50 minutes: gone in about 5 hours.
    let slow = |i: usize, s: &mut Sample| {
        saturated(i, s);
        s.millis_behind_latest = Some(3_000_000.0 - 10_000.0 * i as f64);
    };
    let d = run(
        &budget(),
        &obs(AppConfig::new(4, 1), window(180.0, slow)),
        &History::default(),
    );
    assert_eq!(d.diagnosis.cause, Cause::UnderProvisioned);
    // Input = 95% / (1 + 1/6) of capacity; 48.5 + 10 minutes of backlog in 20 minutes:
    // load factor 32 -> at most 32 / (0.95 * 0.857 * 3.93) = 10.
    assert_eq!(scaled_to(&d), AppConfig::new(13, 1));
}

#[test]
fn a_drained_backlog_is_not_judged() {
    // The lag was gone two periods ago; the durations still show the catch-up.
    let drained = |i: usize, s: &mut Sample| {
        saturated(i, s);
        s.millis_behind_latest = Some(if i < 8 {
            400_000.0 - 50_000.0 * i as f64
        } else {
            0.0
        });
    };
    let d = run(
        &budget(),
        &obs(AppConfig::new(8, 2), window(180.0, drained)),
        &History::default(),
    );
    assert_eq!((d.action, d.reason), (Action::Hold, Reason::WarmingUp));
    assert!(
        d.diagnosis.summary.contains("caught up"),
        "{}",
        d.diagnosis.summary
    );
}

#[test]
fn the_tail_of_a_catch_up_waits_until_the_lag_is_down_to_seconds() {
    // A five-minute window at the end of a catch-up: 89 s behind, then 52 s, 16 s and
    // nothing. The checkpoints of those minutes ran under back-pressure (2 minutes against
    // 1m30s); the first one of the job keeping up takes 10 s. Judging the minutes behind by
    // seconds would scale a job that has just caught up.
    let mut b = budget();
    b.window = Duration::from_secs(300);
    b.max_checkpoint_duration = Duration::from_secs(90);
    let lags = [89_000.0, 52_000.0, 16_000.0, 0.0, 0.0];
    let tail = |i: usize, s: &mut Sample| {
        let i = i.saturating_sub(5);
        if i < 3 {
            saturated(i, s);
        } else {
            s.cpu_utilization = Some(45.0);
        }
        s.last_checkpoint_duration_ms = Some(if i < 4 { 121_000.0 } else { 10_000.0 });
        s.millis_behind_latest = Some(lags[i]);
    };
    let d = run(
        &b,
        &obs(AppConfig::new(8, 2), window(121.0, tail)),
        &History::default(),
    );
    assert_eq!(
        (d.action, d.reason),
        (Action::Hold, Reason::WarmingUp),
        "{}",
        d.message
    );

    // A lag of seconds that was never a backlog is judged as it is.
    let steady = |_: usize, s: &mut Sample| s.millis_behind_latest = Some(16_000.0);
    let d = run(
        &budget(),
        &obs(AppConfig::new(8, 2), window(70.0, steady)),
        &History::default(),
    );
    assert_eq!(
        (d.action, d.reason),
        (Action::Hold, Reason::WithinBudget),
        "{}",
        d.message
    );
}

#[test]
fn failover_backlog_with_failing_checkpoints_is_not_scaled() {
    // Every checkpoint fails and the job failed over: the backlog saturates it, but the
    // failures are the cause, not the capacity.
    let crashed = |i: usize, s: &mut Sample| {
        saturated(i, s);
        s.failed_checkpoints = Some(1.0);
        if i == 3 {
            s.full_restarts = Some(1.0);
        }
    };
    let d = run(
        &budget(),
        &obs(AppConfig::new(8, 2), window(40.0, crashed)),
        &History::default(),
    );
    assert_eq!((d.action, d.reason), (Action::Hold, Reason::NotFixableByScaling));
    assert_eq!(d.diagnosis.cause, Cause::NotFixableByScaling);
    assert!(
        d.diagnosis.summary.contains("failover"),
        "{}",
        d.diagnosis.summary
    );
}

fn near_saturation(_: usize, s: &mut Sample) {
    s.cpu_utilization = Some(92.0);
    s.busy_time_ms_per_second = Some(900.0);
    s.millis_behind_latest = Some(0.0);
}

#[test]
fn sustained_cpu_near_saturation_scales_before_the_cliff() {
    let d = run(
        &budget(),
        &obs(AppConfig::new(8, 2), window(10.0, near_saturation)),
        &History::default(),
    );
    assert_eq!(d.diagnosis.cause, Cause::UnderProvisioned);
    assert!(
        d.diagnosis.summary.contains("about to saturate"),
        "{}",
        d.diagnosis.summary
    );
    assert_eq!(d.slo_met, Some(true));
    let to = scaled_to(&d);
    assert!(to.kpus() > 4, "{to}");

    // Easing off: no need.
    let easing = |i: usize, s: &mut Sample| {
        near_saturation(i, s);
        s.cpu_utilization = Some(99.0 - i as f64);
    };
    let d = run(
        &budget(),
        &obs(AppConfig::new(8, 2), window(10.0, easing)),
        &History::default(),
    );
    assert_eq!(d.action, Action::Hold);
}

#[test]
fn the_plans_cliff_is_where_cpu_reaches_the_reactive_rules_threshold() {
    // Without a floor, 90% of the rate at 100% CPU; with 20% of CPU the input does not
    // drive, (90 - 20) / (100 - 20) = 87.5% of it.
    assert!((cliff_by_cpu(0.0) - 1.0).abs() < 1e-12);
    assert!((cliff_by_cpu(20.0) * 0.9 - 0.875).abs() < 1e-12);
    // A floor beyond half the threshold is not believed.
    assert_eq!(cliff_by_cpu(80.0), cliff_by_cpu(45.0));
}

#[test]
fn cpu_near_saturation_at_a_peak_the_history_knows_is_left_to_the_plan() {
    // 92% CPU at 18:00, the busiest hour of the last three days (1,000 records/s, its
    // busiest minute 3% above), the hours after it quieter: the load passes before it grows.
    let o = obs(AppConfig::new(8, 2), window(10.0, near_saturation));
    let mut known = o.clone();
    known.hourly_input = hourly_history(3, |h| {
        if h == 18 {
            1000.0
        } else {
            400.0 + 30.0 * (h % 18) as f64
        }
    });
    for h in &mut known.hourly_input {
        h.busiest_minute_per_second = Some(h.records_per_second * 1.03);
    }
    let d = run(&budget(), &known, &History::default());
    assert!(
        !d.diagnosis.summary.contains("about to saturate"),
        "{}",
        d.diagnosis.summary
    );
    // Status says why CPU near the cliff was left alone.
    assert!(
        d.diagnosis
            .summary
            .contains("near saturation, but at the busiest minute"),
        "{}",
        d.message
    );
    // The same minutes without the history, or above the minutes the history saw at this
    // hour: the cliff is a few percent of load away.
    let d = run(&budget(), &o, &History::default());
    assert!(
        d.diagnosis.summary.contains("about to saturate"),
        "{}",
        d.diagnosis.summary
    );
    let mut above = known.clone();
    for s in &mut above.samples {
        s.records_in_per_second = s.records_in_per_second.map(|r| r * 1.1);
    }
    let d = run(&budget(), &above, &History::default());
    assert!(
        d.diagnosis.summary.contains("about to saturate"),
        "{}",
        d.diagnosis.summary
    );
}

#[test]
fn on_a_ramp_the_step_is_sized_ahead_of_it_and_a_step_change_is_not() {
    let o = obs(AppConfig::new(8, 2), window(10.0, near_saturation));
    let flat = scaled_to(&run(&budget(), &o, &History::default()));
    // The same minutes after four hours of input rising evenly to 1,000 records/s.
    let rising = |h: i64| 1000.0 - 100.0 * (18 - h) as f64;
    let mut on_ramp = o.clone();
    on_ramp.hourly_input = hourly_history(1, |h| if h < 14 { 500.0 } else { rising(h) });
    let ahead = scaled_to(&run(&budget(), &on_ramp, &History::default()));
    assert!(ahead.kpus() > flat.kpus(), "{ahead} vs {flat}");
    // One hour's jump to the same rate is a step: sized as without history.
    let mut stepped = o.clone();
    stepped.hourly_input = hourly_history(1, |h| if h < 17 { 500.0 } else { 950.0 });
    assert_eq!(scaled_to(&run(&budget(), &stepped, &History::default())), flat);
}

#[test]
fn a_rise_the_last_half_hour_trusts_is_sized_ahead_before_the_hours_show_it() {
    // Thirty minutes of near-saturation minutes ending at NOW; the input rises 0.5% of
    // today's rate a minute (30% an hour) in one run and stays flat in the other; no hourly
    // history yet.
    let minutes = |rising: bool| -> Vec<Sample> {
        (0..30)
            .map(|i| {
                let mut s = sample(NOW - 29 + i, 10.0);
                near_saturation(i as usize, &mut s);
                s.records_in_per_second = Some(if rising {
                    1000.0 * (1.0 - 0.005 * (29 - i) as f64)
                } else {
                    1000.0
                });
                s
            })
            .collect()
    };
    let flat = scaled_to(&run(
        &budget(),
        &obs(AppConfig::new(8, 2), minutes(false)),
        &History::default(),
    ));
    let rising = scaled_to(&run(
        &budget(),
        &obs(AppConfig::new(8, 2), minutes(true)),
        &History::default(),
    ));
    assert!(rising.kpus() > flat.kpus(), "{rising} vs {flat}");
}

#[test]
fn a_steep_morning_ramp_is_sized_past_the_growth_cap_in_one_step() {
    // Thirty near-saturation minutes in which the input rises by `per_minute` of today's
    // rate a minute; no hourly history yet.
    let step = |per_minute: f64| -> AppConfig {
        let minutes: Vec<Sample> = (0..30)
            .map(|i| {
                let mut s = sample(NOW - 29 + i, 10.0);
                near_saturation(i as usize, &mut s);
                s.records_in_per_second = Some(1000.0 * (1.0 - per_minute * (29 - i) as f64));
                s
            })
            .collect();
        scaled_to(&run(
            &budget(),
            &obs(AppConfig::new(8, 2), minutes),
            &History::default(),
        ))
    };
    let (flat, gentle, steep) = (step(0.0), step(0.005), step(0.02));
    assert!(
        flat.kpus() < gentle.kpus() && gentle.kpus() < steep.kpus(),
        "{flat} {gentle} {steep}"
    );
    // 2% a minute (120% an hour) for half an hour: expected to rise for about another hour
    // on the restart's economics, sized well past the 1.5× that bounds the growth since
    // the last scaling (no more than 1.5× what a flat input gets would need a restart per
    // stretch of the ramp).
    assert!(
        f64::from(steep.kpus()) > 1.5 * f64::from(flat.kpus()),
        "{steep} vs {flat}"
    );
}

#[test]
fn a_rising_input_sizes_the_step_for_the_load_ahead() {
    let mut before = record(
        NOW - 60,
        Some(NOW - 50),
        AppConfig::new(4, 2),
        AppConfig::new(8, 2),
        Outcome::Succeeded,
    );
    before.records_in_before_per_second = Some(600.0);
    let grown = run(
        &budget(),
        &obs(AppConfig::new(8, 2), window(10.0, near_saturation)),
        &history(vec![before]),
    );
    let flat = run(
        &budget(),
        &obs(AppConfig::new(8, 2), window(10.0, near_saturation)),
        &History::default(),
    );
    // From 600 to 1000 records/s in an hour: 40% more expected over the next hour.
    assert!(
        scaled_to(&grown).kpus() > scaled_to(&flat).kpus(),
        "{} vs {}",
        scaled_to(&grown),
        scaled_to(&flat)
    );
}

#[test]
fn the_step_waits_until_the_rate_of_falling_behind_is_measured() {
    let starting = |i: usize, s: &mut Sample| {
        saturated(i, s);
        s.millis_behind_latest = Some(if i < 8 { 0.0 } else { 20_000.0 * (i - 7) as f64 });
    };
    let d = run(
        &budget(),
        &obs(AppConfig::new(8, 2), window(130.0, starting)),
        &History::default(),
    );
    assert_eq!((d.action, d.reason), (Action::Hold, Reason::WarmingUp));
    assert!(
        d.diagnosis.summary.contains("measuring"),
        "{}",
        d.diagnosis.summary
    );
}

#[test]
fn a_scale_down_must_be_worth_a_restart() {
    // 4 KPU at 35% CPU: 3 KPU would do, but saves only a quarter.
    let light = |_: usize, s: &mut Sample| {
        s.cpu_utilization = Some(40.0);
        s.busy_time_ms_per_second = Some(400.0);
    };
    let d = run(
        &budget(),
        &obs(AppConfig::new(4, 1), window(20.0, light)),
        &History::default(),
    );
    assert_eq!(d.diagnosis.cause, Cause::IdleHeadroom);
    assert_eq!((d.action, d.reason), (Action::Hold, Reason::WithinBudget));
    assert_eq!(d.recommendation, AppConfig::new(4, 1));
    assert!(d.message.contains("30% fewer KPUs"), "{}", d.message);
}

#[test]
fn cpu_near_saturation_scales_up_at_most_once_per_stabilization_window() {
    let recent = history(vec![record(
        NOW - 40,
        Some(NOW - 30),
        AppConfig::new(4, 2),
        AppConfig::new(8, 2),
        Outcome::Succeeded,
    )]);
    let d = run(
        &budget(),
        &obs(AppConfig::new(8, 2), window(10.0, near_saturation)),
        &recent,
    );
    assert_eq!(d.action, Action::Hold);
    // A breach still acts.
    let d = run(
        &budget(),
        &obs(AppConfig::new(8, 2), window(180.0, near_saturation)),
        &recent,
    );
    scaled_to(&d);
}

#[test]
fn a_proactive_scale_up_is_not_judged_as_skew() {
    // Scaled up while checkpoints took 8 s; now the load grew a little and they breach.
    let h = skewed_history(8_000.0, 1000.0, NOW - 90);
    let calm = |_: usize, s: &mut Sample| {
        s.cpu_utilization = Some(40.0);
        s.last_checkpoint_size_bytes = Some(30.0 * GIB);
    };
    let d = run(&budget(), &obs(AppConfig::new(16, 2), window(180.0, calm)), &h);
    assert_ne!(d.diagnosis.cause, Cause::StateSkew);
    scaled_to(&d);
}

// ---------------------------------------------------------------------------------------------
// What the policy wanted before the bounds (`Decision::desired`, the ScalingLimited condition)

#[test]
fn desired_names_max_kpus_when_it_caps_the_step() {
    let mut b = budget();
    b.max_kpus = Some(10);
    let far_behind = |i: usize, s: &mut Sample| {
        saturated(i, s);
        s.millis_behind_latest = Some(45_000.0 * i as f64);
    };
    let d = run(
        &b,
        &obs(AppConfig::new(4, 1), window(400.0, far_behind)),
        &History::default(),
    );
    let desired = d.desired.expect("a sized need has a desired configuration");
    assert_eq!(desired.limits.first(), Some(&Limit::MaxKpus(10)), "{desired:?}");
    assert!(desired.config.kpus() > 10, "{desired:?}");
    assert!(desired.config.kpus() > d.recommendation.kpus());
}

#[test]
fn desired_names_parallelism_max_and_the_policy_stays_pure_without_it() {
    let mut b = budget();
    b.parallelism_max = 32;
    b.max_kpus = None;
    let o = obs(AppConfig::new(32, 2), window(180.0, saturated));
    let d = run(&b, &o, &History::default());
    let desired = d.desired.clone().unwrap();
    assert!(desired.limits.contains(&Limit::ParallelismMax(32)), "{desired:?}");
    assert!(desired.config.parallelism > 32, "{desired:?}");
    // The unbounded wish is what the same policy decides for a budget without the bounds.
    let mut open = b.clone();
    (open.parallelism_min, open.parallelism_max) = (1, 128);
    (open.per_kpu_min, open.per_kpu_max) = (1, 8);
    let unbounded = run(&open, &o, &History::default());
    assert_eq!(unbounded.recommendation, desired.config);
    assert_eq!(unbounded.desired.map(|d| d.limits), Some(Vec::new()));
}

#[test]
fn desired_is_within_range_when_no_bound_binds() {
    let d = run(
        &budget(),
        &obs(AppConfig::new(8, 2), window(40.0, |_, _| {})),
        &History::default(),
    );
    let desired = d.desired.unwrap();
    assert!(!desired.is_limited(), "{desired:?}");
}

#[test]
fn desired_names_the_lower_bounds_that_keep_kpus_idle() {
    let mut b = budget();
    (b.parallelism_min, b.parallelism_max) = (8, 8);
    (b.per_kpu_min, b.per_kpu_max) = (1, 1);
    let d = run(
        &b,
        &obs(AppConfig::new(8, 1), window(5.0, idle)),
        &History::default(),
    );
    assert_eq!(d.action, Action::Hold, "{}", d.message);
    assert_eq!(d.recommendation, AppConfig::new(8, 1));
    let desired = d.desired.unwrap();
    assert!(desired.is_limited(), "{desired:?}: {}", d.message);
    assert!(desired.config.kpus() < 8, "{desired:?}");
    for limit in &desired.limits {
        assert!(!limit.holds_back_capacity(), "{limit:?}");
        assert!(
            matches!(limit, Limit::ParallelismMin(8) | Limit::PerKpuMax(1)),
            "{limit:?}"
        );
    }
}

#[test]
fn desired_names_the_key_groups_when_nothing_meets_the_need() {
    let mut b = budget();
    (b.max_parallelism, b.parallelism_max) = (8, 8);
    (b.per_kpu_min, b.per_kpu_max) = (1, 1);
    b.max_kpus = None;
    let d = run(
        &b,
        &obs(AppConfig::new(8, 1), window(400.0, saturated)),
        &History::default(),
    );
    assert_eq!((d.action, d.reason), (Action::Blocked, Reason::LimitReached));
    assert_eq!(d.desired.unwrap().limits, [Limit::MaxParallelism(8)]);
}

#[test]
fn nothing_is_desired_while_the_application_is_busy() {
    let mut o = obs(AppConfig::new(8, 2), window(400.0, saturated));
    o.status = AppStatus::Updating;
    let d = run(&budget(), &o, &History::default());
    assert_eq!(d.reason, Reason::ApplicationBusy);
    assert_eq!(d.desired, None);
    assert_eq!(decide(&budget(), None, &History::default(), t(NOW)).desired, None);
}
/// A restart the controller did not make (a deploy from CI, the service's maintenance or
/// autoscaling, a budget deleted meanwhile) holds the policy as its own scaling would: the
/// warm-up after it completes, then the cooldown from its start; long after, nothing.
#[test]
fn a_restart_by_anyone_warms_up_and_cools_down() {
    let b = Budget {
        scale_up_cooldown: mins(60),
        ..budget()
    };
    let o = obs(AppConfig::new(4, 1), window(180.0, saturated));
    let with_restart = |at: i64, done: Option<i64>| History {
        restarts: vec![RestartRecord {
            at: t(at),
            completed_at: done.map(t),
        }],
        ..History::default()
    };
    let cases: Vec<(&str, History, Reason)> = vec![
        ("no restart: scales", History::default(), Reason::ScaleUpRequired),
        (
            "completed a minute ago: warming up",
            with_restart(NOW - 12, Some(NOW - 1)),
            Reason::WarmingUp,
        ),
        (
            "warmed up, but within the cooldown from its start",
            with_restart(NOW - 40, Some(NOW - 30)),
            Reason::CooldownActive,
        ),
        (
            "the cooldown over exactly now",
            with_restart(NOW - 60, Some(NOW - 50)),
            Reason::ScaleUpRequired,
        ),
        (
            "long ago",
            with_restart(NOW - 120, Some(NOW - 110)),
            Reason::ScaleUpRequired,
        ),
    ];
    for (name, h, want) in cases {
        let d = run(&b, &o, &h);
        assert_eq!(d.reason, want, "{name}: {}", d.message);
    }
}

/// At the APPLICATION metrics level: no busy time, no back-pressure.
fn application_level(s: &mut Sample) {
    s.busy_time_ms_per_second = None;
    s.back_pressured_time_ms_per_second = None;
}

#[test]
fn application_level_tells_a_blocking_call_from_an_upload_bound_state() {
    // A 3-minute blocking call over a 3.6 GiB state at 4 KPUs: incremental checkpoints of
    // 0.6 GiB take 3m09s (0.8 MiB/s per KPU), and so does the odd 1.8 GiB one: the time does
    // not follow the bytes, so it is not the upload.
    let table: [(&str, f64, f64, f64, f64, Cause, bool); 5] = [
        // (case, duration s, size GiB of the window's checkpoints, of the latest, CPU %,
        //  cause, scales)
        (
            "blocking call",
            189.0,
            0.6,
            0.6,
            48.0,
            Cause::NotFixableByScaling,
            false,
        ),
        (
            "blocking call, a larger latest checkpoint",
            189.0,
            0.6,
            1.8,
            48.0,
            Cause::NotFixableByScaling,
            false,
        ),
        // Sizes of 1.2 to 2.4 GiB, every one taking 3m09s: 2.4 MiB/s per KPU is a plausible
        // upload, but the time does not follow the bytes.
        (
            "blocking call, sizes that vary",
            189.0,
            1.2,
            2.4,
            48.0,
            Cause::NotFixableByScaling,
            false,
        ),
        // Large uploads whose time follows their size.
        ("upload-bound", 150.0, 14.6, 14.6, 40.0, Cause::LargeState, true),
        (
            "upload-bound, varying sizes",
            240.0,
            14.6,
            29.0,
            40.0,
            Cause::LargeState,
            true,
        ),
    ];
    for (case, duration, size, latest, cpu, cause, scales) in table {
        let d = run(
            &budget(),
            &obs(
                AppConfig::new(4, 1),
                window(duration, |i, s| {
                    application_level(s);
                    s.cpu_utilization = Some(cpu);
                    // The latest and every third one larger; an upload's time follows its
                    // bytes (the larger ones take proportionally longer, up to the latest).
                    let bytes = if i % 3 == 0 { latest } else { size };
                    s.last_checkpoint_size_bytes = Some(bytes * GIB);
                    if cause == Cause::LargeState {
                        s.last_checkpoint_duration_ms = Some(duration * 1000.0 * bytes / latest);
                    }
                }),
            ),
            &History::default(),
        );
        assert_eq!(d.diagnosis.cause, cause, "{case}: {}", d.diagnosis.summary);
        assert_eq!(matches!(d.action, Action::Scale { .. }), scales, "{case}: {d:?}");
        if !scales {
            // It says what it rests on and what to look for.
            assert!(
                d.diagnosis.summary.contains("per checkpoint over 4 KPU"),
                "{case}: {}",
                d.diagnosis.summary
            );
            assert!(d.diagnosis.advice.is_some(), "{case}");
        }
    }
}

/// Once every checkpoint of the window is slow, the window alone cannot tell a blocking call
/// from a state that outgrew its upload: the baseline can. 3m01s for 1.8 GiB at 4 KPUs
/// (2.5 MiB/s per KPU, a plausible upload) where the same configuration uploaded 0.62 GiB in
/// 3.7 s within budget is not the state's doing; the same figures after a baseline in another
/// configuration, or at the baseline's own rate, are.
#[test]
fn a_breach_far_below_the_baselines_upload_rate_is_not_scaled() {
    let current = AppConfig::new(4, 1);
    let baseline = |config: AppConfig, duration_ms: f64, size_gib: f64| History {
        baseline: Some(CheckpointBaseline {
            at: t(NOW - 20),
            config,
            duration_ms,
            size_bytes: size_gib * GIB,
        }),
        ..History::default()
    };
    let slow = obs(
        current,
        window(181.0, |_, s| {
            application_level(s);
            s.cpu_utilization = Some(49.0);
            s.last_checkpoint_size_bytes = Some(1.8 * GIB);
        }),
    );
    let cases: [(&str, History, Cause, bool); 4] = [
        ("no baseline", History::default(), Cause::LargeState, true),
        (
            "a baseline of this configuration, 17 times the rate",
            baseline(current, 3_700.0, 0.62),
            Cause::NotFixableByScaling,
            false,
        ),
        (
            "a baseline of another configuration",
            baseline(AppConfig::new(8, 1), 3_700.0, 0.62),
            Cause::LargeState,
            true,
        ),
        (
            "a baseline at about the rate: the state grew",
            baseline(current, 60_000.0, 0.7),
            Cause::LargeState,
            true,
        ),
    ];
    for (case, history, cause, scales) in cases {
        let d = run(&budget(), &slow, &history);
        assert_eq!(d.diagnosis.cause, cause, "{case}: {}", d.diagnosis.summary);
        assert_eq!(matches!(d.action, Action::Scale { .. }), scales, "{case}: {d:?}");
        if cause == Cause::NotFixableByScaling {
            assert!(
                d.diagnosis.summary.contains("within budget"),
                "{}",
                d.diagnosis.summary
            );
            assert!(
                d.diagnosis.summary.contains("What would confirm it"),
                "{}",
                d.diagnosis.summary
            );
        }
    }
}

/// The baseline is what the running configuration does within budget: a breach, a decision
/// without figures or one while warming up leaves the last one in place.
#[test]
fn the_baseline_records_only_a_window_within_budget() {
    let current = AppConfig::new(4, 1);
    let mut history = History::default();
    let within = run(
        &budget(),
        &obs(
            current,
            window(4.0, |_, s| s.last_checkpoint_size_bytes = Some(0.5 * GIB)),
        ),
        &history,
    );
    assert_eq!(within.slo_met, Some(true), "{}", within.message);
    remember_baseline(&mut history, &within, current, t(NOW));
    let base = history.baseline.expect("recorded");
    assert_eq!(base.config, current);
    assert_eq!(base.at, t(NOW));
    assert!((base.size_bytes - 0.5 * GIB).abs() < 1.0);
    let breach = run(
        &budget(),
        &obs(
            current,
            window(181.0, |_, s| s.last_checkpoint_size_bytes = Some(1.8 * GIB)),
        ),
        &history,
    );
    assert_eq!(breach.slo_met, Some(false));
    remember_baseline(&mut history, &breach, current, t(NOW + 1));
    assert_eq!(
        history.baseline,
        Some(base),
        "a breach does not move the baseline"
    );
    let missing = decide(&budget(), None, &history, t(NOW + 2));
    remember_baseline(&mut history, &missing, current, t(NOW + 2));
    assert_eq!(history.baseline, Some(base), "nor does a decision without data");
}

/// `days` days of hourly input before `NOW` (18:00 UTC), the rate of each hour of the day
/// given by `rate`.
fn hourly_history(days: i64, rate: impl Fn(i64) -> f64) -> Vec<HourlyRate> {
    let now_s = t(NOW).as_second();
    (1..=days * 24)
        .rev()
        .map(|back| {
            let s = now_s - back * 3600;
            HourlyRate {
                at: Timestamp::from_second(s).unwrap(),
                records_per_second: rate(s.div_euclid(3600).rem_euclid(24)),
                busiest_minute_per_second: None,
            }
        })
        .collect()
}

/// A healthy window of `periods` ending at minute `end`, CPU at `cpu` % for 1,000
/// records/s.
fn healthy_until(end: i64, cpu: f64) -> Vec<Sample> {
    (0..10)
        .map(|i| {
            let mut s = sample(end - 10 + i, 20.0);
            s.cpu_utilization = Some(cpu);
            s
        })
        .collect()
}

#[test]
fn no_forecast_below_36_hours_of_history() {
    assert_eq!(
        t(NOW).as_second().div_euclid(3600).rem_euclid(24),
        18,
        "NOW is 18:00 UTC"
    );
    let mut o = obs(AppConfig::new(4, 1), healthy_until(NOW, 60.0));
    o.hourly_input = hourly_history(1, |_| 1000.0);
    assert_eq!(run(&budget(), &o, &History::default()).forecast, None);
    o.hourly_input = hourly_history(2, |_| 1000.0);
    let f = run(&budget(), &o, &History::default()).forecast.unwrap();
    assert_eq!(f.history_hours, 48);
    assert_eq!(f.planned, None, "a flat load needs no change");
}

#[test]
fn a_recurring_peak_is_planned_and_met_before_it_ramps_up() {
    // Three days at 1,000 records/s but 2,000 from 22:00 to 23:59; at 55% CPU the 4 KPUs
    // saturate at about 1,800 records/s, and the cliff begins at 1,640.
    let peak_at_22 = |h: i64| if (22..24).contains(&h) { 2000.0 } else { 1000.0 };
    let mut o = obs(AppConfig::new(4, 1), healthy_until(NOW, 55.0));
    o.hourly_input = hourly_history(3, peak_at_22);
    let d = run(&budget(), &o, &History::default());
    assert_eq!(
        (d.action, d.reason),
        (Action::Hold, Reason::WithinBudget),
        "{}",
        d.message
    );
    let f = d.forecast.clone().unwrap();
    assert!((f.peak_records_per_second - 2000.0).abs() < 1.0, "{f:?}");
    assert_eq!(f.peak_at, t(NOW + 240));
    let planned = f.planned.unwrap();
    assert!(
        planned.config.kpus() > 4 && planned.config.kpus() <= 8,
        "{planned:?}"
    );
    // Started a restart (10 minutes) and a period ahead of the hour the load ramps in
    // (21:00, halfway to the peak), not now.
    assert!(
        planned.at > t(NOW + 1) && planned.at <= t(NOW + 180 - 11),
        "{planned:?}"
    );

    // Ten minutes before the hour the load ramps in, with a restart of 10 minutes: now.
    let peak_at_20 = |h: i64| if (20..23).contains(&h) { 2000.0 } else { 1000.0 };
    let at = NOW + 50;
    let mut o = obs(AppConfig::new(4, 1), healthy_until(at, 55.0));
    o.at = t(at);
    o.hourly_input = hourly_history(3, peak_at_20);
    let d = decide(&budget(), Some(&o), &History::default(), t(at));
    let to = scaled_to(&d);
    assert!(to.kpus() > 4 && to.kpus() <= 8, "{to}");
    assert!(d.message.contains("history expects"), "{}", d.message);
}

#[test]
fn with_a_forecast_a_scale_down_takes_the_plans_shape() {
    // 12 subtasks at 2 per KPU (6 KPUs), nearly idle; the day ahead stays so. Without
    // history the search only raises ParallelismPerKPU or lowers the parallelism; the plan
    // chooses among every allowed shape, and the step takes its choice.
    let quiet = || {
        obs(
            AppConfig::new(12, 2),
            window(5.0, |i, s| {
                idle(i, s);
                s.cpu_utilization = Some(28.0);
                s.heap_memory_utilization = Some(27.0);
                s.container_memory_utilization = Some(27.0);
            }),
        )
    };
    let settle = |o: &Observation| {
        let first = run(&budget(), o, &History::default());
        let mut h = History::default();
        h.recommendations.push(RecommendationRecord {
            at: t(NOW - 61),
            config: first.recommendation,
        });
        run(&budget(), o, &h)
    };
    let without = settle(&quiet());
    let mut o = quiet();
    o.hourly_input = hourly_history(3, |_| 1000.0);
    let with = settle(&o);
    assert_eq!(with.reason, Reason::ScaleDownStabilized, "{}", with.message);
    let planned = with
        .forecast
        .as_ref()
        .and_then(|f| f.planned.as_ref())
        .map(|p| p.config);
    assert_eq!(Some(scaled_to(&with)), planned, "{}", with.message);
    // Without the history: another shape (and a longer wait, the payback unknown).
    assert_eq!(without.reason, Reason::ScaleDownPending, "{}", without.message);
    assert_ne!(scaled_to(&with), without.recommendation, "{}", without.message);
    assert_eq!(scaled_to(&with).kpus(), without.recommendation.kpus());
}

#[test]
fn a_trough_shorter_than_the_payback_is_held_through() {
    // 16 KPUs idle at 1,000 records/s (20% CPU): 8 would do. The load comes back to 3,000
    // (which the 16 carry) in two hours: 8 KPUs saved for an hour or two do not pay for
    // two restarts.
    let back_at_20 = |h: i64| if (20..24).contains(&h) { 3000.0 } else { 1000.0 };
    let mut h = History::default();
    let probe = run(&budget(), &idle_obs(), &h);
    h.recommendations.push(RecommendationRecord {
        at: t(NOW - 61),
        config: probe.recommendation,
    });
    let mut o = idle_obs();
    o.hourly_input = hourly_history(3, back_at_20);
    let d = run(&budget(), &o, &h);
    assert_eq!(
        (d.action, d.reason),
        (Action::Hold, Reason::ScaleDownPending),
        "{}",
        d.message
    );
    assert!(d.message.contains("forecast"), "{}", d.message);

    // A load that stays low for the day ahead pays for it after the stabilization window.
    o.hourly_input = hourly_history(3, |_| 1000.0);
    let d = run(&budget(), &o, &h);
    assert_eq!(d.reason, Reason::ScaleDownStabilized, "{}", d.message);
}
