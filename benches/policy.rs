//! Micro-benchmarks: `policy::decide` on representative observations, and one round of the
//! metric batcher for 5,000 budgets. `cargo bench --bench policy`.
//!
//! A plain `harness = false` timer (`std::time::Instant` around `black_box`ed calls, best
//! of several runs) rather than criterion: criterion is a dev-dependency every
//! `cargo test --all-targets` would compile on our small CI machines, for figures this
//! simple.

use std::{
    hint::black_box,
    time::{Duration, Instant},
};

use checkpoint_autoscaler::{
    aws::BatchConfig,
    policy::{
        self, AppConfig, AppStatus, Budget, Cause, History, Observation, Outcome, RecommendationRecord,
        Sample, ScalingRecord,
    },
};

/// The scale harness (benches/scale/harness.rs): its metric batcher round.
#[path = "scale/harness.rs"]
#[allow(dead_code)]
mod scale;
use checkpoint_autoscaler_testkit::fixtures::{now, window};
use jiff::SignedDuration;

fn budget() -> Budget {
    Budget {
        max_checkpoint_duration: Duration::from_secs(120),
        max_checkpoint_size: None,
        max_failed_checkpoints: 0,
        window: Duration::from_secs(600),
        parallelism_min: 2,
        parallelism_max: 32,
        max_parallelism: 128,
        per_kpu_min: 1,
        per_kpu_max: 4,
        max_kpus: Some(16),
        scale_up_cooldown: Duration::from_secs(300),
        scale_down_cooldown: Duration::from_secs(1800),
        scale_down_stabilization: Duration::from_secs(3600),
        error_budget: None,
    }
}

fn observation(samples: Vec<Sample>, config: AppConfig) -> Observation {
    Observation {
        at: now(),
        status: AppStatus::Running,
        config,
        service_autoscaling: false,
        version_id: 7,
        samples,
        period: Duration::from_secs(60),
        hourly_input: Vec::new(),
    }
}

/// An hour of per-minute recommendations (the scale-down stabilization window) and a few
/// past scalings: the most history `decide` walks.
fn full_history() -> History {
    let config = AppConfig::new(8, 1);
    History {
        baseline: None,
        cpu_span: None,
        restarts: Vec::new(),
        slo_minutes: Vec::new(),
        slo_accounted_until: None,
        scalings: (1..=5)
            .map(|h| ScalingRecord {
                at: now() - SignedDuration::from_hours(h * 3),
                completed_at: Some(now() - SignedDuration::from_hours(h * 3) + SignedDuration::from_mins(3)),
                from: AppConfig::new(4, 1),
                to: config,
                cause: Cause::UnderProvisioned,
                checkpoint_duration_before_ms: Some(150_000.0),
                outcome: Outcome::Succeeded,
                records_in_before_per_second: Some(5000.0),
            })
            .collect(),
        recommendations: (1..=60)
            .rev()
            .map(|m| RecommendationRecord {
                at: now() - SignedDuration::from_mins(m),
                config: AppConfig::new(2, 1),
            })
            .collect(),
    }
}

/// Best mean time per call over `rounds` rounds of `iters` calls.
fn time_per_call(rounds: usize, iters: usize, mut f: impl FnMut()) -> Duration {
    (0..rounds)
        .map(|_| {
            let started = Instant::now();
            for _ in 0..iters {
                f();
            }
            started.elapsed() / iters as u32
        })
        .min()
        .unwrap_or_default()
}

fn main() {
    // `cargo bench` passes `--bench`; under `cargo test --all-targets` this only has to build.
    if !std::env::args().any(|a| a == "--bench") {
        println!("policy: skipped outside `cargo bench --bench policy`");
        return;
    }
    let b = budget();
    let empty = History::default();
    let cases = [
        (
            "decide: healthy (80 s of 120 s, CPU 60%)",
            observation(window(80_000.0, 60.0), AppConfig::new(4, 1)),
            &empty,
        ),
        (
            "decide: under-provisioned (180 s, CPU 95%)",
            observation(window(180_000.0, 95.0), AppConfig::new(4, 1)),
            &empty,
        ),
    ];
    let history = full_history();
    let idle = observation(window(15_000.0, 15.0), AppConfig::new(8, 1));
    println!("| benchmark | time per call |\n|---|---:|");
    for (name, obs, history) in &cases {
        let t = time_per_call(7, 20_000, || {
            black_box(policy::decide(
                black_box(&b),
                black_box(Some(obs)),
                black_box(history),
                now(),
            ));
        });
        println!("| {name} | {:.2} µs |", t.as_secs_f64() * 1e6);
    }
    let t = time_per_call(7, 20_000, || {
        black_box(policy::decide(
            black_box(&b),
            black_box(Some(&idle)),
            black_box(&history),
            now(),
        ));
    });
    println!(
        "| decide: idle (15 s, CPU 15%) with 60 recommendations and 5 scalings of history | {:.2} µs |",
        t.as_secs_f64() * 1e6
    );

    // The batcher: 5,000 concurrent samples() packed into 120 calls, answered in memory,
    // split back and assembled.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    // NB: the batcher sends a full call when the next query arrives, so the last of the
    // 120 full calls waits for `idle`: 1 ms of each round is that wait.
    let config = BatchConfig {
        idle: Some(Duration::from_millis(1)),
        ..BatchConfig::default()
    };
    let mut rounds = Vec::new();
    let mut calls = 0;
    for _ in 0..5 {
        let started = Instant::now();
        let round = runtime
            .block_on(scale::batch_round(5000, config.clone()))
            .expect("an in-memory round cannot fail");
        rounds.push(started.elapsed());
        calls = round.calls;
    }
    let best = rounds.iter().min().copied().unwrap_or_default();
    println!(
        "| batching: 5,000 samples() → {calls} GetMetricData calls (build, split, assemble; in-memory CloudWatch) \
         | {:.1} ms per round, {:.2} µs per budget |",
        best.as_secs_f64() * 1e3,
        best.as_secs_f64() * 1e6 / 5000.0
    );
}
