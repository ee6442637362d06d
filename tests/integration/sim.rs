//! The simulator's model and `simulate`: the behaviours the policy is judged on must
//! come out of the model (parallelism helps an under-provisioned job, skew limits it, an
//! uneven key-group split wastes KPUs, TTL levels state off, a serializer fault fails
//! every checkpoint, restarts grow with state, memory pressure kills TaskManagers), the
//! runs are deterministic, and every scenario of the library runs under every policy.

use std::path::Path;

use checkpoint_autoscaler::{
    policy::{AppConfig, AppStatus, median},
    sim::{
        ConfigurationType, Fleet, MetricQuery, ParallelismUpdate, PolicyChoice, Scenario, UpdateApplication,
        fleet::{DIMENSION, NAMESPACE, PERIOD},
        model::Workload,
        run,
        simulate::observe,
    },
};
use jiff::{SignedDuration, Timestamp};

const START: Timestamp = Timestamp::constant(1_767_571_200, 0);

/// A scenario with `body` appended to a minimal header (application `app`).
fn scenario(app: &str, body: &str) -> Scenario {
    let text = format!("name: test\napplication: {app}\nduration: 6h\nseed: 3\n{body}");
    Scenario::from_yaml(&text, "<test>").unwrap()
}

fn fleet_for(s: &Scenario) -> Fleet {
    let mut fleet = Fleet::new(s.seed, START);
    fleet.add_scenario(s, None).unwrap();
    fleet
}

fn advance(fleet: &mut Fleet, minutes: i64) {
    fleet.advance_to(fleet.now() + SignedDuration::from_mins(minutes));
}

fn metric(fleet: &Fleet, name: &str, stat: &str, from_minute: i64) -> Vec<f64> {
    fleet
        .metric_data(&MetricQuery {
            namespace: NAMESPACE.into(),
            metric_name: name.into(),
            dimensions: vec![(DIMENSION.into(), "app".into())],
            start: START + SignedDuration::from_mins(from_minute),
            end: fleet.now(),
            period: PERIOD,
            stat: stat.into(),
        })
        .into_iter()
        .map(|(_, v)| v)
        .collect()
}

/// Median `lastCheckpointDuration` (ms) over minutes 30..90 at `config`.
fn checkpoint_ms(body: &str, config: AppConfig, key_groups: u32) -> f64 {
    let app = format!(
        "{{name: app, parallelism: {}, parallelismPerKpu: {}, maxParallelism: {key_groups}}}",
        config.parallelism, config.parallelism_per_kpu
    );
    let mut fleet = fleet_for(&scenario(&app, body));
    advance(&mut fleet, 90);
    median(&metric(&fleet, "lastCheckpointDuration", "Maximum", 30)).expect("datapoints")
}

const UNDER_PROVISIONED: &str = "load: {phases: [{shape: steady, rate: 20000}]}\n\
     state: {keys: 20000000, bytesPerKey: 1Ki, newKeysPerRecord: 0.0005, ttl: 24h}\n";

#[test]
fn more_parallelism_lowers_checkpoint_duration_when_under_provisioned() {
    // 20,000 records/s need ~4.4 vCPU: 2 KPUs fall behind and back-pressure stretches the
    // barrier alignment; 8 keep up with a quarter of the state per subtask.
    let two = checkpoint_ms(UNDER_PROVISIONED, AppConfig::new(2, 1), 128);
    let eight = checkpoint_ms(UNDER_PROVISIONED, AppConfig::new(8, 1), 128);
    assert!(eight * 4.0 < two, "2 → {two:.0} ms, 8 → {eight:.0} ms");
    // Packing the same 8 subtasks on 2 KPUs shares CPU and bandwidth: worse than 8 KPUs.
    let packed = checkpoint_ms(UNDER_PROVISIONED, AppConfig::new(8, 4), 128);
    assert!(
        packed > 2.0 * eight,
        "8 on 2 KPUs → {packed:.0} ms vs 8 KPUs → {eight:.0} ms"
    );
}

const FULL_CHECKPOINTS: &str = "load: {phases: [{shape: steady, rate: 4000}]}\n\
     state: {keys: 20000000, bytesPerKey: 1Ki, ttl: 24h}\n\
     checkpoints: {incremental: false, interval: 5m}\n";

#[test]
fn skew_limits_what_parallelism_can_do() {
    let even_4 = checkpoint_ms(FULL_CHECKPOINTS, AppConfig::new(4, 1), 128);
    let even_32 = checkpoint_ms(FULL_CHECKPOINTS, AppConfig::new(32, 1), 128);
    let skewed = format!("{FULL_CHECKPOINTS}skew: {{hotKeyShare: 0.3}}\n");
    let skewed_4 = checkpoint_ms(&skewed, AppConfig::new(4, 1), 128);
    let skewed_32 = checkpoint_ms(&skewed, AppConfig::new(32, 1), 128);
    assert!(
        even_4 / even_32 > 5.0,
        "without skew 8x parallelism gives {:.1}x",
        even_4 / even_32
    );
    assert!(
        skewed_4 / skewed_32 < 1.6,
        "with a 30% hot key 8x parallelism gives {:.1}x",
        skewed_4 / skewed_32
    );
    // The hot subtask's share has a floor at the hot key's share.
    let s = scenario("{name: app, parallelism: 4}", &skewed);
    assert!(Workload::from_scenario(&s).hottest_share(128) >= 0.3);
}

#[test]
fn an_uneven_key_group_split_is_worse_than_an_even_one() {
    // 128 key groups: 32 subtasks get 4 each; 40 get 3 or 4 — the hottest still has 4, so
    // 25% more KPUs buy nothing. Likewise 96 (1 or 2) against 64 (2 each).
    let at = |p, per_kpu| checkpoint_ms(FULL_CHECKPOINTS, AppConfig::new(p, per_kpu), 128);
    let (p32, p40) = (at(32, 1), at(40, 1));
    // Two per KPU keeps 96 within the 64-KPU quota; both sides of the comparison share it.
    let (p64, p96) = (at(64, 2), at(96, 2));
    assert!(p40 > 0.93 * p32, "40 → {p40:.0} ms vs 32 → {p32:.0} ms");
    assert!(p96 > 0.93 * p64, "96 → {p96:.0} ms vs 64 → {p64:.0} ms");
    assert!(
        at(64, 1) < 0.65 * p32,
        "64 → {:.0} ms vs 32 → {p32:.0} ms",
        at(64, 1)
    );
    // An even split of the same KPUs would have given each of 40 subtasks 3.2 key groups.
    assert!(
        p40 > 1.15 * p32 * 32.0 / 40.0,
        "uneven 40 is measurably worse than a proportional gain"
    );
    let w = Workload::from_scenario(&scenario("{name: app, parallelism: 4}", FULL_CHECKPOINTS));
    assert_eq!(w.hottest_share(40), 4.0 / 128.0);
    assert_eq!(w.hottest_share(32), 4.0 / 128.0);
}

fn state_bytes(fleet: &Fleet) -> f64 {
    fleet.last_period("app").unwrap().state_bytes
}

#[test]
fn ttl_levels_state_off_and_without_it_state_keeps_growing() {
    let body = |ttl: &str| {
        format!(
            "load: {{phases: [{{shape: steady, rate: 10000}}]}}\n\
             state: {{keys: 0, bytesPerKey: 1Ki, newKeysPerRecord: 0.05{ttl}}}\n"
        )
    };
    let growth = |ttl: &str| {
        let mut fleet = fleet_for(&scenario("{name: app, parallelism: 8}", &body(ttl)));
        advance(&mut fleet, 6 * 60);
        let six = state_bytes(&fleet);
        advance(&mut fleet, 6 * 60);
        let twelve = state_bytes(&fleet);
        (six, twelve)
    };
    let (six, twelve) = growth(", ttl: 1h");
    // 500 new keys/s × 1 KiB × 1 h TTL ≈ 1.7 GiB, reached after a few TTLs.
    let level = 10000.0 * 0.05 * 1024.0 * 3600.0;
    assert!(
        (six - level).abs() / level < 0.05,
        "levels at {six:.3e} (expected ~{level:.3e})"
    );
    assert!(
        (twelve - six).abs() / six < 0.01,
        "stays level: {six:.3e} → {twelve:.3e}"
    );
    let (six, twelve) = growth("");
    assert!(
        twelve > 1.9 * six,
        "without TTL it keeps growing: {six:.3e} → {twelve:.3e}"
    );
}

#[test]
fn the_serializer_fault_fails_checkpoints_whatever_the_resources() {
    for (p, per_kpu) in [(2, 1), (32, 1), (8, 4)] {
        let app = format!("{{name: app, parallelism: {p}, parallelismPerKpu: {per_kpu}}}");
        let body =
            "load: {phases: [{shape: steady, rate: 2000}]}\nfaults: {serializerMismatch: {from: 20m}}\n";
        let mut fleet = fleet_for(&scenario(&app, body));
        advance(&mut fleet, 80);
        let failed = metric(&fleet, "numberOfFailedCheckpoints", "Maximum", 0);
        let total = failed.last().copied().unwrap();
        assert!(
            (55.0..=61.0).contains(&total),
            "parallelism {p}: {total} failed in the last hour"
        );
        // Resources look normal and the last completed duration stays from before the fault.
        assert!(
            metric(&fleet, "cpuUtilization", "Maximum", 30)
                .iter()
                .all(|c| *c < 50.0)
        );
        let durations = metric(&fleet, "lastCheckpointDuration", "Maximum", 0);
        assert!(
            durations.len() >= 79,
            "the last completed checkpoint is still reported"
        );
        assert!(
            durations[21..].windows(2).all(|w| w[0] == w[1]),
            "no checkpoint completes after the fault"
        );
    }
}

/// How long `UpdateApplication` keeps the application UPDATING, with `keys` keys of 1 KiB.
fn restart_minutes(keys: u64) -> f64 {
    let body = format!(
        "load: {{phases: [{{shape: steady, rate: 1000}}]}}\nstate: {{keys: {keys}, bytesPerKey: 1Ki}}\n"
    );
    let mut fleet = fleet_for(&scenario("{name: app, parallelism: 4}", &body));
    advance(&mut fleet, 5);
    let request = UpdateApplication {
        current_application_version_id: Some(1),
        parallelism: Some(ParallelismUpdate {
            configuration_type: Some(ConfigurationType::Custom),
            parallelism: Some(8),
            ..ParallelismUpdate::default()
        }),
        ..UpdateApplication::default()
    };
    let (_, op) = fleet.update_application("app", request).unwrap();
    advance(&mut fleet, 120);
    let op = fleet.describe_operation("app", &op).unwrap();
    assert_eq!(
        fleet.describe_application("app").unwrap().status,
        AppStatus::Running
    );
    op.end_time.unwrap().duration_since(op.start_time).as_secs_f64() / 60.0
}

#[test]
fn restart_time_grows_with_state() {
    let small = restart_minutes(1_000_000); // ~1 GiB
    let large = restart_minutes(100_000_000); // ~95 GiB
    assert!(
        (7.0..9.0).contains(&small),
        "small state restarts in {small:.1} min"
    );
    assert!(
        large > small + 5.0,
        "large state restarts in {large:.1} min vs {small:.1}"
    );
}

#[test]
fn memory_pressure_kills_task_managers_until_each_subtask_gets_more_memory() {
    let body = "load: {phases: [{shape: steady, rate: 3000}]}\nstate: {keys: 1000000, bytesPerKey: 1Ki, heapPerSubtask: 600Mi}\n";
    let restarts = |per_kpu: u32| {
        let app = format!("{{name: app, parallelism: 8, parallelismPerKpu: {per_kpu}}}");
        let mut fleet = fleet_for(&scenario(&app, body));
        advance(&mut fleet, 120);
        let heap = median(&metric(&fleet, "heapMemoryUtilization", "Maximum", 0)).expect("datapoints");
        (
            metric(&fleet, "fullRestarts", "Maximum", 0)
                .last()
                .copied()
                .unwrap(),
            heap,
        )
    };
    let (crowded, crowded_heap) = restarts(4);
    let (roomy, roomy_heap) = restarts(2);
    assert!(
        crowded >= 5.0 && crowded_heap > 90.0,
        "4 per KPU: {crowded} restarts at {crowded_heap:.0}% heap"
    );
    assert!(
        roomy == 0.0 && roomy_heap < 70.0,
        "2 per KPU: {roomy} restarts at {roomy_heap:.0}% heap"
    );
}

#[test]
fn transient_s3_errors_fail_checkpoints_at_about_their_rate() {
    let body = "load: {phases: [{shape: steady, rate: 2000}]}\nfaults: {transientS3Errors: {rate: 0.1}}\n";
    let mut fleet = fleet_for(&scenario("{name: app, parallelism: 4}", body));
    advance(&mut fleet, 600);
    let failed = metric(&fleet, "numberOfFailedCheckpoints", "Maximum", 0)
        .last()
        .copied()
        .unwrap();
    assert!(
        (35.0..=90.0).contains(&failed),
        "{failed} of ~600 checkpoints failed at a 10% rate"
    );
}

#[test]
fn the_observation_reads_the_metrics_like_the_controller() {
    let body = "load: {phases: [{shape: steady, rate: 2000}]}\nfaults: {serializerMismatch: {from: 5m}}\n";
    let mut fleet = fleet_for(&scenario("{name: app, parallelism: 4}", body));
    advance(&mut fleet, 20);
    let obs = observe(&fleet, "app", std::time::Duration::from_secs(600), fleet.now()).unwrap();
    assert_eq!(obs.samples.len(), 10);
    assert_eq!(obs.config, AppConfig::new(4, 1));
    // Running counts arrive as per-period increases.
    assert!(
        obs.samples.iter().all(|s| s.failed_checkpoints == Some(1.0)),
        "{:?}",
        obs.samples[0]
    );
    assert!(
        obs.samples
            .iter()
            .all(|s| s.records_in_per_second.is_some_and(|r| r > 1800.0))
    );
}

#[test]
fn a_run_is_deterministic_for_a_seed() {
    let s = Scenario::load(&library().join("flash-crowd.yaml")).unwrap();
    let once = || {
        let mut policy = PolicyChoice::CheckpointAutoscaler.build(&s).unwrap();
        run(&s, policy.as_mut(), None).unwrap()
    };
    let (a, b) = (once(), once());
    assert_eq!(a.rows, b.rows);
    assert_eq!(a.summary, b.summary);
    let mut policy = PolicyChoice::Static.build(&s).unwrap();
    let other = run(&s, policy.as_mut(), Some(12345)).unwrap();
    let mut policy = PolicyChoice::Static.build(&s).unwrap();
    let same = run(&s, policy.as_mut(), None).unwrap();
    assert_ne!(other.rows, same.rows, "another seed draws other noise");
}

fn library() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/scenarios")
}

#[test]
fn every_scenario_in_the_library_loads_and_runs_under_every_policy() {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(library()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "yaml") {
            continue;
        }
        let s = Scenario::load(&path).unwrap_or_else(|e| panic!("{}: {e:?}", path.display()));
        assert!(
            s.budget.is_some(),
            "{}: every library scenario carries a budget",
            s.name
        );
        for choice in [
            PolicyChoice::CheckpointAutoscaler,
            PolicyChoice::Static,
            PolicyChoice::Builtin,
        ] {
            let mut policy = choice.build(&s).unwrap();
            let report = run(&s, policy.as_mut(), None).unwrap();
            assert_eq!(
                report.rows.len() as u64,
                s.duration.as_secs() / 60,
                "{} {choice:?}",
                s.name
            );
            assert!(report.summary.kpu_hours > 0.0);
        }
        names.push(s.name);
    }
    names.sort();
    assert_eq!(
        names,
        [
            "diurnal",
            "diurnal-3day",
            "diurnal-weekly",
            "external-call",
            "flash-crowd",
            "hot-key-skew",
            "memory-pressure",
            "noisy-right-sized",
            "over-provisioned-idle",
            "serializer-failure",
            "state-growth-without-ttl",
            "steady",
            "steady-growth",
            "step-up",
            "transient-s3"
        ]
    );
}

#[test]
fn the_static_baseline_breaks_the_step_up_budget_and_writes_a_chart() {
    let s = Scenario::load(&library().join("step-up.yaml")).unwrap();
    let mut policy = PolicyChoice::Static.build(&s).unwrap();
    let report = run(&s, policy.as_mut(), None).unwrap();
    assert!(
        report.summary.slo_violation_minutes.unwrap() > 30,
        "{:?}",
        report.summary
    );
    assert_eq!(report.summary.restarts, 0);
    let dir = tempfile::tempdir().unwrap();
    let svg = dir.path().join("step-up.svg");
    checkpoint_autoscaler::sim::chart::write_svg(&report, &svg).unwrap();
    let text = std::fs::read_to_string(&svg).unwrap();
    assert!(text.starts_with("<svg") && text.contains("lastCheckpointDuration") && text.contains("budget"));
}

#[test]
fn the_policy_loop_records_outcomes_including_a_failed_update_and_its_rollback() {
    use checkpoint_autoscaler::{
        policy::Outcome,
        sim::{CheckpointAutoscaler, Policy},
    };
    // The budget declares 128 key groups but the job really has 4: any scale-up fails to
    // restore and the service rolls back.
    let mut s = Scenario::load(&library().join("step-up.yaml")).unwrap();
    s.application.max_parallelism = Some(4);
    let mut policy = CheckpointAutoscaler::for_scenario(&s).unwrap();
    let report = run(&s, &mut policy as &mut dyn Policy, None).unwrap();
    assert!(report.summary.failed_updates >= 1, "{:?}", report.summary);
    assert_eq!(
        report.summary.final_config,
        AppConfig::new(4, 1),
        "rolled back to what runs"
    );
    let failed: Vec<_> = policy
        .history()
        .scalings
        .iter()
        .filter(|r| r.outcome == Outcome::Failed)
        .collect();
    assert!(!failed.is_empty(), "{:?}", policy.history());
    for r in &failed {
        let completed = r.completed_at.expect("completed once the rollback ran");
        assert!(
            completed.duration_since(r.at) > SignedDuration::from_mins(10),
            "failure, then rollback"
        );
    }
    assert!(report.rows.iter().any(|r| r.status == AppStatus::RollingBack));
    assert!(
        report
            .rows
            .iter()
            .any(|r| r.notes.iter().any(|n| n.contains("UpdateApplication failed")))
    );

    // With the real key groups, the same policy's scale-ups succeed and are recorded so.
    let s = Scenario::load(&library().join("step-up.yaml")).unwrap();
    let mut policy = CheckpointAutoscaler::for_scenario(&s).unwrap();
    let report = run(&s, &mut policy as &mut dyn Policy, None).unwrap();
    assert!(
        report.summary.restarts >= 1 && report.summary.failed_updates == 0,
        "{:?}",
        report.summary
    );
    let first = &policy.history().scalings[0];
    assert_eq!(
        (first.outcome, first.from),
        (Outcome::Succeeded, AppConfig::new(4, 1))
    );
    assert!(first.to.parallelism > 4 && first.completed_at.is_some());
}

/// `simulate --generate`: the comparison on unseen workloads runs end to end through the
/// binary (two scenarios, the shortest families), writes them as YAML that reads back as
/// the generator's scenarios, and its JSON carries the rows, the targets and the totals by
/// family.
#[test]
fn simulate_compares_on_generated_scenarios_and_writes_them_for_replay() {
    use checkpoint_autoscaler::sim::generate::{Family, generate};
    let bin = env!("CARGO_BIN_EXE_checkpoint-autoscaler");
    let dir = tempfile::tempdir().unwrap();
    let (json, written) = (dir.path().join("unseen.json"), dir.path().join("unseen"));
    let out = std::process::Command::new(bin)
        .args([
            "simulate",
            "--compare",
            "--generate",
            "2",
            "--generate-seed",
            "9",
            "--json",
        ])
        .arg(&json)
        .arg("--write-scenarios")
        .arg(&written)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("2 generated scenario(s), seed 9"), "{text}");
    assert!(
        text.contains("targets of checkpoint-autoscaler") && text.contains("by family"),
        "{text}"
    );

    let expected = generate(9, 2).unwrap();
    for s in &expected {
        let file = written.join(format!("{}.yaml", s.name));
        assert_eq!(&Scenario::load(&file).unwrap(), s, "{}", file.display());
    }
    let doc: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let results = doc["results"].as_array().unwrap();
    for s in &expected {
        let rows = results
            .iter()
            .filter(|r| r["scenario"] == s.name.as_str())
            .count();
        assert!(rows >= 5 + 5, "{}: {rows} rows", s.name);
    }
    assert!(!doc["targets"].as_array().unwrap().is_empty());
    let families: Vec<&str> = doc["families"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["group"].as_str().unwrap())
        .collect();
    assert_eq!(families, [Family::ALL[0].name(), Family::ALL[1].name()]);

    // The written files compare to the same figures, by family too.
    let replayed = dir.path().join("replayed.json");
    let out = std::process::Command::new(bin)
        .args(["simulate", "--compare", "--scenario"])
        .arg(&written)
        .arg("--json")
        .arg(&replayed)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let again: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&replayed).unwrap()).unwrap();
    for key in ["results", "summary", "targets", "families"] {
        assert_eq!(again[key], doc[key], "{key}");
    }

    // Without --compare, --generate only writes (and says it needs somewhere to write).
    let again = dir.path().join("again");
    let out = std::process::Command::new(bin)
        .args([
            "simulate",
            "--generate",
            "2",
            "--generate-seed",
            "9",
            "--write-scenarios",
        ])
        .arg(&again)
        .output()
        .unwrap();
    assert!(out.status.success());
    for s in &expected {
        let name = format!("{}.yaml", s.name);
        assert_eq!(
            std::fs::read(again.join(&name)).unwrap(),
            std::fs::read(written.join(&name)).unwrap()
        );
    }
    let out = std::process::Command::new(bin)
        .args(["simulate", "--generate", "2"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--write-scenarios"));
    let out = std::process::Command::new(bin)
        .args(["simulate", "--compare", "--generate", "0"])
        .output()
        .unwrap();
    assert!(!out.status.success());
}

/// Memory that a step does not relieve: most of each TaskManager's heap is held whatever
/// its subtasks (a cache without a bound, a leak in a user function), so the step the
/// policy takes for memory pressure (a lower ParallelismPerKPU) leaves the heap as high.
/// The policy holds (`ScalingIneffective`, "did not relieve") instead of restarting again
/// while the verdict stands (`MEMORY_UNRELIEVED_MINUTES`, two hours after the step).
#[test]
fn memory_a_step_does_not_relieve_holds_instead_of_restarting_again() {
    use checkpoint_autoscaler::{
        policy::{Cause, Outcome},
        sim::{CheckpointAutoscaler, Policy},
    };
    const MIB: f64 = 1024.0 * 1024.0;
    let mut s = Scenario::load(&library().join("memory-pressure.yaml")).unwrap();
    // 2.7 GiB of the 3 GiB heap held per TaskManager, 32 MiB per subtask: 94% at 4 subtasks
    // per KPU, still 92% at 2 and 91% at 1.
    s.platform.heap_base = 2.7 * 1024.0 * MIB;
    s.state.heap_per_subtask = 32.0 * MIB;
    s.duration = std::time::Duration::from_secs(2 * 3600);
    let mut policy = CheckpointAutoscaler::for_scenario(&s).unwrap();
    let report = run(&s, &mut policy as &mut dyn Policy, None).unwrap();

    let scalings = &policy.history().scalings;
    assert_eq!(
        scalings.len(),
        1,
        "one step for memory, then a hold: {scalings:?}"
    );
    let step = &scalings[0];
    assert_eq!(step.cause, Cause::MemoryPressure, "{step:?}");
    assert_eq!(step.outcome, Outcome::Succeeded, "{step:?}");
    assert!(
        step.to.parallelism_per_kpu < step.from.parallelism_per_kpu,
        "a step for memory lowers ParallelismPerKPU: {step:?}"
    );
    let after = |r: &&checkpoint_autoscaler::sim::simulate::Row| r.config == step.to;
    let heap = median(
        &report
            .rows
            .iter()
            .filter(after)
            .filter_map(|r| r.heap_memory_utilization)
            .collect::<Vec<_>>(),
    )
    .expect("heap datapoints after the step");
    assert!(heap >= 90.0, "the step left the heap high: {heap:.0}%");
    assert!(
        report.rows.iter().filter(after).any(|r| r
            .notes
            .iter()
            .any(|n| n.starts_with("ScalingIneffective") && n.contains("did not relieve"))),
        "the policy says why it holds"
    );
    assert_eq!(report.summary.restarts, 1, "{:?}", report.summary);
}
