//! Property tests of `decide` over arbitrary budgets, observations and histories: every
//! scale stays within every bound, never targets a failed configuration, never happens in
//! a cooldown, on missing data or during an update; decisions are deterministic.

use std::time::Duration;

use jiff::Timestamp;
use proptest::{option, prelude::*};

use super::*;

const NOW_S: i64 = 1_800_000_000;

fn at_minutes_ago(m: i64) -> Timestamp {
    Timestamp::from_second(NOW_S - m * 60).unwrap()
}

fn budget() -> impl Strategy<Value = Budget> {
    (
        (1u32..=8, 0u32..=64, 0u32..=200),
        (1u32..=4, 0u32..=4),
        option::of(0u32..=48),
        (30u64..=600, 0u32..=3, 3u64..=20),
        (0u64..=60, 0u64..=90, 0u64..=120),
        option::of(1u64..=50),
    )
        .prop_map(
            |((p_min, p_span, kg_span), (k_lo, k_span), kpus, (d, f, w), (up, down, stab), size)| {
                let p_max = p_min + p_span;
                let k_hi = (k_lo + k_span).min(8);
                Budget {
                    max_checkpoint_duration: Duration::from_secs(d),
                    max_checkpoint_size: size.map(|g| g << 30),
                    max_failed_checkpoints: f,
                    window: Duration::from_secs(w * 60),
                    parallelism_min: p_min,
                    parallelism_max: p_max,
                    max_parallelism: p_max + kg_span,
                    per_kpu_min: k_lo,
                    per_kpu_max: k_hi,
                    // A valid budget's cap admits parallelism.min at perKpu.max.
                    max_kpus: kpus.map(|k| k.max(p_min.div_ceil(k_hi))),
                    scale_up_cooldown: Duration::from_secs(up * 60),
                    scale_down_cooldown: Duration::from_secs(down * 60),
                    scale_down_stabilization: Duration::from_secs(stab * 60),
                    error_budget: None,
                }
            },
        )
}

fn config() -> impl Strategy<Value = AppConfig> {
    (1u32..=300, 1u32..=8).prop_map(|(p, k)| AppConfig::new(p, k))
}

fn metric(lo: f64, hi: f64) -> impl Strategy<Value = Option<f64>> {
    prop_oneof![1 => Just(None), 6 => (lo..hi).prop_map(Some)]
}

fn sample() -> impl Strategy<Value = Sample> {
    (
        (metric(0.0, 900_000.0), metric(0.0, 6.0e10), metric(0.0, 3.0)),
        (metric(0.0, 100.0), metric(0.0, 100.0), metric(0.0, 100.0)),
        (metric(0.0, 1000.0), metric(0.0, 1000.0), metric(0.0, 3.0e6)),
        (metric(0.0, 1.0e5), metric(0.0, 2.0)),
    )
        .prop_map(
            |((d, size, failed), (cpu, heap, container), (busy, bp, lag), (rin, restarts))| Sample {
                at: Timestamp::UNIX_EPOCH,
                last_checkpoint_duration_ms: d,
                last_checkpoint_size_bytes: size,
                failed_checkpoints: failed.map(f64::floor),
                cpu_utilization: cpu,
                heap_memory_utilization: heap,
                container_memory_utilization: container,
                busy_time_ms_per_second: busy,
                back_pressured_time_ms_per_second: bp,
                millis_behind_latest: lag,
                records_in_per_second: rin,
                full_restarts: restarts.map(f64::floor),
                downtime_ms: None,
            },
        )
}

fn status() -> impl Strategy<Value = AppStatus> {
    prop_oneof![
        8 => Just(AppStatus::Running),
        1 => Just(AppStatus::Updating),
        1 => Just(AppStatus::Autoscaling),
        1 => Just(AppStatus::Ready),
    ]
}

/// Any configuration, or (as often) one within `b`'s bounds, where the caps bind.
fn running_config(b: &Budget) -> impl Strategy<Value = AppConfig> + use<> {
    let p_hi = b.parallelism_max.min(b.max_parallelism).max(b.parallelism_min);
    let in_bounds =
        (b.parallelism_min..=p_hi, b.per_kpu_min..=b.per_kpu_max).prop_map(|(p, k)| AppConfig::new(p, k));
    prop_oneof![config(), in_bounds]
}

/// A budget with an observation and a history.
fn case() -> impl Strategy<Value = (Budget, Observation, History)> {
    budget().prop_flat_map(|b| {
        let config = running_config(&b);
        (Just(b), observation(config), history())
    })
}

fn observation(config: impl Strategy<Value = AppConfig>) -> impl Strategy<Value = Observation> {
    (
        status(),
        config,
        // Samples with their age in minutes; some ages repeat or exceed the window.
        proptest::collection::vec((0i64..=25, sample()), 0..=24),
    )
        .prop_map(|(status, config, samples)| {
            let mut samples: Vec<Sample> = samples
                .into_iter()
                .map(|(age, mut s)| {
                    s.at = at_minutes_ago(age);
                    s
                })
                .collect();
            samples.sort_by_key(|s| s.at);
            Observation {
                at: at_minutes_ago(0),
                status,
                config,
                service_autoscaling: false,
                version_id: 1,
                samples,
                period: Duration::from_secs(60),
                hourly_input: Vec::new(),
            }
        })
}

fn outcome() -> impl Strategy<Value = Outcome> {
    prop_oneof![
        1 => Just(Outcome::InProgress),
        4 => Just(Outcome::Succeeded),
        2 => Just(Outcome::Failed),
    ]
}

fn scaling() -> impl Strategy<Value = ScalingRecord> {
    (
        0i64..=400,
        option::of(0i64..=30),
        config(),
        config(),
        outcome(),
        option::of(1_000.0f64..900_000.0),
        option::of(1.0f64..1.0e5),
    )
        .prop_map(|(ago, took, from, to, outcome, before, load)| ScalingRecord {
            at: at_minutes_ago(ago),
            completed_at: took.map(|t| at_minutes_ago((ago - t).max(0))),
            from,
            to,
            cause: Cause::UnderProvisioned,
            checkpoint_duration_before_ms: before,
            outcome,
            records_in_before_per_second: load,
        })
}

fn history() -> impl Strategy<Value = History> {
    (
        proptest::collection::vec(scaling(), 0..=4),
        proptest::collection::vec((0i64..=200, config()), 0..=6),
    )
        .prop_map(|(mut scalings, recs)| {
            scalings.sort_by_key(|r| r.at);
            let mut recommendations: Vec<RecommendationRecord> = recs
                .into_iter()
                .map(|(ago, config)| RecommendationRecord {
                    at: at_minutes_ago(ago),
                    config,
                })
                .collect();
            recommendations.sort_by_key(|r| r.at);
            History {
                baseline: None,
                cpu_span: None,
                restarts: Vec::new(),
                slo_minutes: Vec::new(),
                slo_accounted_until: None,
                scalings,
                recommendations,
            }
        })
}

/// Whether the observation has a fresh duration datapoint in the budget's window.
fn has_fresh_duration(b: &Budget, o: &Observation) -> bool {
    let now = NOW_S * 1000;
    let window = i64::try_from(b.window.as_millis()).unwrap();
    o.samples.iter().any(|s| {
        let at = s.at.as_millisecond();
        s.last_checkpoint_duration_ms.is_some() && at >= now - window && at + 4 * 60_000 >= now
    })
}

fn elapsed_since_last_scaling(h: &History) -> Option<Duration> {
    h.scalings
        .iter()
        .map(|r| r.at)
        .max()
        .map(|at| Duration::from_millis(u64::try_from(NOW_S * 1000 - at.as_millisecond()).unwrap_or(0)))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 600, ..ProptestConfig::default() })]

    #[test]
    fn decisions_are_safe((b, o, h) in case(), observed in any::<bool>()) {
        let o = observed.then_some(o);
        let now = at_minutes_ago(0);
        let d = decide(&b, o.as_ref(), &h, now);
        prop_assert_eq!(&d, &decide(&b, o.as_ref(), &h, now), "deterministic");
        prop_assert!(!d.message.is_empty() && !d.diagnosis.summary.is_empty());
        prop_assert!(d.requeue_after >= Duration::from_secs(1));
        if let Action::Scale { to } = d.action {
            let o = o.as_ref().expect("never scales without an observation");
            // Within every bound.
            prop_assert!(to.parallelism >= b.parallelism_min && to.parallelism <= b.parallelism_max, "{}", to);
            prop_assert!(to.parallelism <= b.max_parallelism, "{}", to);
            prop_assert!(to.parallelism_per_kpu >= b.per_kpu_min && to.parallelism_per_kpu <= b.per_kpu_max, "{}", to);
            prop_assert!(b.max_kpus.is_none_or(|m| to.kpus() <= m), "{}", to);
            prop_assert_ne!(to, o.config);
            // Key-group aligned: the smallest parallelism with its number of key groups per
            // subtask, unless it is the floor or the running parallelism (perKpu change only).
            let kg = b.max_parallelism;
            let aligned = to.parallelism == 1 || kg.div_ceil(to.parallelism - 1) > kg.div_ceil(to.parallelism);
            prop_assert!(
                aligned || to.parallelism == b.parallelism_min || to.parallelism == o.config.parallelism,
                "{} is not aligned to {} key groups", to, kg
            );
            // Never a configuration that failed.
            prop_assert!(!h.scalings.iter().any(|r| r.outcome == Outcome::Failed && r.to == to));
            // Never while busy or on missing data.
            prop_assert_eq!(o.status, AppStatus::Running);
            prop_assert!(!h.scalings.iter().any(|r| r.outcome == Outcome::InProgress));
            prop_assert!(has_fresh_duration(&b, o));
            // Never within a cooldown.
            if let Some(elapsed) = elapsed_since_last_scaling(&h) {
                let cooldown = if to.kpus() < o.config.kpus() { b.scale_down_cooldown } else { b.scale_up_cooldown };
                prop_assert!(elapsed >= cooldown, "scaled {:?} after the last scaling", elapsed);
            }
        }
        // The recommendation never exceeds maxParallelism unless it is what already runs.
        if let Some(o) = &o {
            prop_assert!(d.recommendation.parallelism <= b.max_parallelism || d.recommendation == o.config);
        }
    }

    #[test]
    fn recommendations_respect_bounds_when_acting((b, o, h) in case()) {
        // With the application running normally, any change the engine recommends is allowed.
        let d = decide(&b, Some(&o), &h, at_minutes_ago(0));
        if d.recommendation != o.config && d.action != Action::Blocked {
            let r = d.recommendation;
            prop_assert!(r.parallelism >= b.parallelism_min && r.parallelism <= b.parallelism_max.min(b.max_parallelism), "{}", r);
            prop_assert!(r.parallelism_per_kpu >= b.per_kpu_min && r.parallelism_per_kpu <= b.per_kpu_max, "{}", r);
            prop_assert!(b.max_kpus.is_none_or(|m| r.kpus() <= m), "{}", r);
            prop_assert!(!h.scalings.iter().any(|s| s.outcome == Outcome::Failed && s.to == r));
        }
    }

    #[test]
    fn never_scales_on_missing_durations((b, o, h) in case()) {
        let mut o = o;
        for s in &mut o.samples {
            s.last_checkpoint_duration_ms = None;
        }
        let d = decide(&b, Some(&o), &h, at_minutes_ago(0));
        let scaled = matches!(d.action, Action::Scale { .. });
        prop_assert!(!scaled, "scaled without durations");
        prop_assert_eq!(d.slo_met, None);
    }
}

/// The properties above are only as good as the inputs that reach a scale: this checks that
/// the generators exercise every kind of action, so the properties cannot pass vacuously.
#[test]
fn generators_reach_every_action() {
    use proptest::{strategy::ValueTree, test_runner::TestRunner};
    let mut runner = TestRunner::deterministic();
    let strategy = case();
    let (mut scales, mut blocked, mut holds) = (0, 0, 0);
    for _ in 0..2000 {
        let (b, o, h) = strategy.new_tree(&mut runner).unwrap().current();
        match decide(&b, Some(&o), &h, at_minutes_ago(0)).action {
            Action::Scale { .. } => scales += 1,
            Action::Blocked => blocked += 1,
            Action::Hold => holds += 1,
        }
    }
    assert!(
        scales >= 20 && blocked >= 5 && holds >= 200,
        "scales {scales}, blocked {blocked}, holds {holds}"
    );
}
