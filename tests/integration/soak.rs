//! The soak test: many budgets for many emulated hours under random AWS faults and
//! controller crashes, with the safety invariants checked after every reconcile and every
//! emulated minute, not only at the end.
//!
//! Budgets: a mix of the shipped scenarios and randomly generated load shapes (steady,
//! ramps, diurnal sines, flash crowds), with random bounds, `maxKpus`, per-KPU ranges,
//! short cooldowns, modes (mostly Enforce, some Recommend and Paused) and
//! `serviceAutoScaling`; now and then a budget is edited (new bounds, cap or mode). A few
//! younger budgets name applications already managed: they must report `Conflict` and make
//! no call beyond describing the application.
//!
//! Faults, armed through the emulator's control API on a seeded RNG: throttling and 5xx
//! (counted, on one operation or all, on one application or all), latency above the SDK's
//! attempt timeout (never served) and after serving (a write that took effect unanswered),
//! ConcurrentModification on UpdateApplication, an application stuck in UPDATING or busy
//! (AUTOSCALING, STARTING, MAINTENANCE), an update whose restart fails and rolls back,
//! LimitExceeded, AccessDenied, metric gaps, NaN and late datapoints; the controller
//! killed between recording an intent and calling UpdateApplication, or between the call
//! and recording its outcome; plain restarts; budgets edited mid-run; another client
//! changing an application's parallelism behind the controller's back.
//!
//! Invariants, after every reconcile and every minute:
//! - every configuration the controller asks for is within the budget's bounds of the
//!   time: parallelism within `parallelism.min..=max`, never above `maxParallelism` or the
//!   job's key groups, per-KPU within its range, KPUs never above `maxKpus`; and the
//!   application only ever runs (or is configured with) its initial configuration, one
//!   the controller asked for, or one another client set;
//! - UpdateApplication is never called while an operation on that application (an update
//!   or the service's rollback) is IN_PROGRESS (the call log against the service's
//!   operations);
//! - at most one UpdateApplication sent per reconcile (one decision; no SDK retry of it),
//!   none at all in Recommend or Paused mode;
//! - every accepted UpdateApplication is recorded: the operation in flight, `lastScaling`
//!   and the history entry in status, and a Normal `Scaling` Event in the same reconcile;
//!   or, when its answer was lost (crash, response timeout), the intent kept in status,
//!   then the outcome Event and history entry once the operation has been followed;
//! - while the service has an update IN_PROGRESS, the budget's status has it in flight;
//! - at the end, with every fault cleared and 90 minutes passed: Ready=True everywhere, no
//!   operation left in flight from the faulty period, no error meanwhile, and every Enforce
//!   budget's application back within its (possibly edited) bounds, or, when no
//!   configuration meets them all, the budget saying so (`LimitReached`); exactly one
//!   `ScalingSucceeded` Event per update the service completed.
//!
//! Scale with `SOAK_HOURS`, `SOAK_BUDGETS` and `SOAK_SEED` (printed, for reproducing a
//! failure); the defaults fit CI.

use std::{
    collections::BTreeMap,
    fmt::Write as _,
    time::{Duration, Instant},
};

use checkpoint_autoscaler::{
    aws::AwsSettings,
    controller::{
        Error,
        reconcile::Effect,
        status::{READY, SCALING},
        store::{BudgetKey, NoticeType},
    },
    crd::{CheckpointBudgetSpec, KubeDuration, Mode, ServiceAutoScaling},
    emulator::faults::{FaultKind, FaultSpec},
    policy::{AppConfig, AppStatus, Budget, Outcome},
    sim::{
        Scenario,
        fleet::{ConfigurationType, OperationStatus, ParallelismUpdate, UpdateApplication},
        scenario::{Phase, Spike},
    },
};
use jiff::Timestamp;
use rand::{Rng, SeedableRng, seq::IndexedRandom};
use rand_chacha::ChaCha8Rng;

use super::harness::{CrashPoint, Harness, HarnessConfig, Reconciled, scenario, scenario_names};

/// SDK attempts per call in the soak (the invariant "never more attempts than this").
const MAX_ATTEMPTS: u32 = 3;
/// The SDK's attempt timeout while faults are armed; latency faults above it are timeouts.
/// (A real timeout on a loaded machine is just one more fault there; the calm end of the
/// soak uses the SDK's default timeouts.)
const ATTEMPT_TIMEOUT: Duration = Duration::from_millis(200);
/// Chance, each emulated minute, that a new fault is armed.
const FAULTS_PER_MINUTE: f64 = 0.35;
/// Chance, each emulated minute, that a crash is armed on a random Enforce budget (it
/// fires at that budget's next scaling).
const CRASHES_PER_MINUTE: f64 = 0.05;
/// Chance, each emulated minute, that a random budget's spec is edited (bounds, cap, mode).
const SPEC_CHANGES_PER_MINUTE: f64 = 0.01;
/// Chance, each emulated minute, that another client changes a running application's
/// parallelism (the controller must re-observe, never overwrite blindly).
const FOREIGN_UPDATES_PER_MINUTE: f64 = 0.02;
/// Chance, each emulated minute, of a plain controller restart between steps.
const RESTARTS_PER_MINUTE: f64 = 0.01;
/// Minutes of calm at the end, faults cleared, for the statuses to converge.
const TAIL_MINUTES: u32 = 90;

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    match std::env::var(name) {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v} is not a valid value")),
        Err(_) => default,
    }
}

/// One budget and its application, as the soak follows them.
struct Subject {
    key: BudgetKey,
    app: String,
    origin: String,
    budget: Budget,
    mode: Mode,
    /// The job's key groups (the scenario's maxParallelism).
    key_groups: u32,
    /// The application's configuration before the controller acted (the user's, which the
    /// bounds do not judge; a rollback may return to it).
    initial: AppConfig,
    /// Every configuration the controller asked for (each checked against the bounds of
    /// its time): the only ones, besides the initial, the application may be given.
    requested: Vec<AppConfig>,
    /// Operations another client (a person with the AWS CLI) started on the application.
    foreign_ops: Vec<String>,
    /// UpdateApplication calls refused for good (recorded as failed scalings at once).
    refusals: usize,
    /// ScalingSuperseded Events already matched with an accepted update left unrecorded.
    superseded_seen: usize,
    /// Times of accepted UpdateApplication calls whose outcome status has not recorded yet.
    pending: Vec<Timestamp>,
    /// Outcome Events (ScalingSucceeded / ScalingFailed) seen so far.
    outcome_events: usize,
    /// Outcomes recorded for accepted updates so far.
    outcomes_recorded: usize,
}

/// What the soak counted, and the invariants it saw broken.
#[derive(Default)]
struct Tally {
    reconciles: u64,
    errors: u64,
    accepted_updates: u64,
    refused_updates: u64,
    /// Accepted UpdateApplication calls whose answer the controller never got.
    unanswered_updates: u64,
    faults: BTreeMap<&'static str, u32>,
    crashes: BTreeMap<&'static str, u32>,
    restarts: u32,
    spec_changes: u32,
    foreign_updates: u32,
    violations: Vec<String>,
}

impl Tally {
    fn violation(&mut self, at: Timestamp, what: String) {
        if self.violations.len() < 100 {
            self.violations.push(format!("{at}: {what}"));
        }
    }
}

/// A fault the soak armed and when it clears it (counted faults may disarm sooner).
struct Armed {
    id: u64,
    clear_at: Timestamp,
}

fn within_bounds(to: &AppConfig, s: &Subject) -> Result<(), String> {
    let b = &s.budget;
    let mut broken = Vec::new();
    if to.parallelism > s.key_groups {
        broken.push(format!(
            "parallelism {} above the job's key groups {}",
            to.parallelism, s.key_groups
        ));
    }
    if to.parallelism > b.max_parallelism {
        broken.push(format!(
            "parallelism {} above maxParallelism {}",
            to.parallelism, b.max_parallelism
        ));
    }
    if to.parallelism > b.parallelism_max || to.parallelism < b.parallelism_min {
        broken.push(format!(
            "parallelism {} outside {}..={}",
            to.parallelism, b.parallelism_min, b.parallelism_max
        ));
    }
    if to.parallelism_per_kpu > b.per_kpu_max || to.parallelism_per_kpu < b.per_kpu_min {
        broken.push(format!(
            "per-KPU {} outside {}..={}",
            to.parallelism_per_kpu, b.per_kpu_min, b.per_kpu_max
        ));
    }
    if let Some(cap) = b.max_kpus
        && to.kpus() > cap
    {
        broken.push(format!("{} KPUs above maxKpus {cap}", to.kpus()));
    }
    if broken.is_empty() {
        Ok(())
    } else {
        Err(format!("{} ({to}): {}", s.key, broken.join("; ")))
    }
}

/// The operations of an application, for a violation's message.
fn ops_summary(ops: &[checkpoint_autoscaler::sim::fleet::OperationView]) -> Vec<String> {
    ops.iter()
        .map(|op| {
            format!(
                "{} {} {} {:?} v{:?}",
                op.start_time, op.operation, op.operation_id, op.status, op.version_updated_to
            )
        })
        .collect()
}

/// Whether any configuration meets every bound of `b`.
fn satisfiable(b: &Budget) -> bool {
    let p_max = b.parallelism_max.min(b.max_parallelism);
    (b.parallelism_min..=p_max)
        .any(|p| (b.per_kpu_min..=b.per_kpu_max).any(|k| b.max_kpus.is_none_or(|cap| p.div_ceil(k) <= cap)))
}

/// A random load shape on the step-up scenario's job (per-record cost, state).
fn random_scenario(rng: &mut ChaCha8Rng, name: &str) -> Scenario {
    let mut s = scenario("step-up");
    s.name = name.into();
    s.description = Some("random load shape (soak)".into());
    s.seed = rng.random();
    let rate = |rng: &mut ChaCha8Rng| f64::from(rng.random_range(2u32..40) * 1000);
    let minutes =
        |rng: &mut ChaCha8Rng, lo: u64, hi: u64| Duration::from_secs(60 * rng.random_range(lo..=hi));
    let mut phases = Vec::new();
    for i in 0..rng.random_range(3..=8) {
        let length = minutes(rng, 20, 90);
        phases.push(match rng.random_range(0..5) {
            0..=1 => Phase::Steady {
                rate: rate(rng),
                length: Some(length),
            },
            2 => Phase::Ramp {
                from: (i == 0).then(|| rate(rng)),
                to: rate(rng),
                length: Some(length),
            },
            _ => {
                let mean = rate(rng);
                Phase::Sine {
                    mean,
                    amplitude: mean * rng.random_range(0.2..0.8),
                    period: minutes(rng, 60, 6 * 60),
                    peak_at: minutes(rng, 0, 12 * 60),
                    length: Some(length),
                }
            }
        });
    }
    // The last phase runs on for the rest of the soak.
    if matches!(phases.last(), Some(Phase::Ramp { .. })) {
        phases.push(Phase::Steady {
            rate: rate(rng),
            length: None,
        });
    } else if let Some(Phase::Steady { length, .. } | Phase::Sine { length, .. }) = phases.last_mut() {
        *length = None;
    }
    s.load.phases = phases;
    s.load.noise = rng.random_range(0.0..0.08);
    s.load.spikes = (0..rng.random_range(0..3))
        .map(|_| Spike {
            at: minutes(rng, 20, 20 * 60),
            length: minutes(rng, 5, 40),
            factor: rng.random_range(1.5..3.0),
        })
        .collect();
    s.state.keys = f64::from(rng.random_range(1u32..30)) * 1e6;
    let key_groups = *[64u32, 90, 128, 256, 720].choose(rng).unwrap();
    s.application.max_parallelism = Some(key_groups);
    s.application.parallelism_per_kpu = rng.random_range(1..=2);
    s.application.parallelism = rng.random_range(2..=12).min(key_groups);
    s.application.auto_scaling_enabled = false;
    s
}

/// Random bounds, cap, mode and service setting on a scenario's budget.
fn randomize_budget(rng: &mut ChaCha8Rng, spec: &mut CheckpointBudgetSpec, key_groups: u32) {
    let max_parallelism = if rng.random_bool(0.8) {
        key_groups
    } else {
        rng.random_range(key_groups / 2..=key_groups).max(1)
    };
    let max = rng.random_range(4..=48u32).min(max_parallelism);
    let min = rng.random_range(1..=4u32).min(max);
    spec.parallelism.max_parallelism = max_parallelism;
    spec.parallelism.max = max;
    spec.parallelism.min = min;
    let per_kpu_min = rng.random_range(1..=2);
    spec.parallelism.per_kpu.min = per_kpu_min;
    spec.parallelism.per_kpu.max = rng.random_range(per_kpu_min..=4);
    spec.max_kpus = if rng.random_bool(0.6) {
        Some(rng.random_range(4..=24))
    } else {
        None
    };
    // Short cooldowns and stabilization make budgets scale often, so faults meet scalings.
    let minutes = |m: u32| KubeDuration::new(&format!("{m}m")).expect("a valid duration");
    spec.behavior.scale_up.cooldown = minutes(rng.random_range(2..=10));
    spec.behavior.scale_down.cooldown = minutes(rng.random_range(5..=30));
    spec.behavior.scale_down.stabilization_window = minutes(rng.random_range(10..=60));
    spec.mode = match rng.random_range(0..10) {
        0 => Mode::Recommend,
        1 => Mode::Paused,
        _ => Mode::Enforce,
    };
    spec.service_auto_scaling = if rng.random_bool(0.2) {
        ServiceAutoScaling::Keep
    } else {
        ServiceAutoScaling::Disable
    };
}

/// A random fault on a random application (sometimes on all) armed at `now`, and for how
/// many minutes it stays armed.
fn random_fault(rng: &mut ChaCha8Rng, apps: &[String], now: Timestamp) -> (&'static str, FaultSpec, u32) {
    const OPERATIONS: [&str; 5] = [
        "DescribeApplication",
        "UpdateApplication",
        "DescribeApplicationOperation",
        "ListTagsForResource",
        "GetMetricData",
    ];
    const METRICS: [&str; 4] = [
        "lastCheckpointDuration",
        "cpuUtilization",
        "numRecordsInPerSecond",
        "heapMemoryUtilization",
    ];
    // Faults on one application mostly; on all of them sometimes, which makes a counted
    // fault on UpdateApplication hit whichever budget scales next.
    let app = if rng.random_bool(0.7) {
        apps.choose(rng).cloned()
    } else {
        None
    };
    let one_app = apps.choose(rng).cloned();
    // For faults on UpdateApplication: on whichever budget scales next, mostly (scalings
    // are rare next to reconciles, and these faults only matter when one happens).
    let next_scaling = if rng.random_bool(0.8) {
        None
    } else {
        one_app.clone()
    };
    // An operation, mostly; UpdateApplication more often than the others, since that is
    // where a fault can do harm.
    let operation = |rng: &mut ChaCha8Rng| match rng.random_range(0..4) {
        0 => None,
        1 => Some("UpdateApplication".to_string()),
        _ => OPERATIONS.choose(rng).map(|o| o.to_string()),
    };
    let metrics = |rng: &mut ChaCha8Rng| {
        rng.random_bool(0.5)
            .then(|| vec![METRICS.choose(rng).map(|m| m.to_string()).unwrap_or_default()])
    };
    let spec = |kind, operation, application, count| FaultSpec {
        kind,
        service: None,
        operation,
        application,
        count,
    };
    let minutes: u32 = rng.random_range(3..=40);
    let until = now + jiff::SignedDuration::from_mins(i64::from(minutes));
    match rng.random_range(0..20) {
        0..=2 => {
            let count = rng.random_range(1..=6);
            let op = operation(rng);
            (
                "throttling",
                spec(FaultKind::Throttling, op, app, Some(count)),
                10,
            )
        }
        3..=4 => {
            let status = *[500u16, 502, 503].choose(rng).unwrap();
            let count = rng.random_range(1..=6);
            let op = operation(rng);
            (
                "5xx",
                spec(FaultKind::ServerError { status }, op, app, Some(count)),
                10,
            )
        }
        5..=6 => {
            // Above the attempt timeout: the SDK gives up on the attempt (and retries the
            // reads); the request is never served.
            let millis = ATTEMPT_TIMEOUT.as_millis() as u64 + 50;
            let count = rng.random_range(1..=2);
            let op = operation(rng);
            (
                "timeout",
                spec(FaultKind::Latency { millis }, op, app, Some(count)),
                10,
            )
        }
        7..=8 => {
            // Served, then answered too late: a write that took effect without the client
            // knowing.
            let millis = ATTEMPT_TIMEOUT.as_millis() as u64 + 50;
            let (op, app, minutes) = if rng.random_bool(0.6) {
                (Some("UpdateApplication".to_string()), next_scaling.clone(), 90)
            } else {
                (operation(rng), app, 10)
            };
            (
                "responseTimeout",
                spec(FaultKind::ResponseLatency { millis }, op, app, Some(1)),
                minutes,
            )
        }
        9..=10 => (
            "concurrentModification",
            spec(
                FaultKind::ConcurrentModification,
                Some("UpdateApplication".into()),
                next_scaling.clone(),
                Some(rng.random_range(1..=2)),
            ),
            rng.random_range(10..=90),
        ),
        11 => (
            "stuckUpdating",
            spec(FaultKind::StuckUpdating, None, one_app, None),
            minutes,
        ),
        12 => {
            let status = *[
                AppStatus::Autoscaling,
                AppStatus::Starting,
                AppStatus::Maintenance,
            ]
            .choose(rng)
            .unwrap();
            let op = rng.random_bool(0.3).then(|| "UpdateApplication".to_string());
            (
                "resourceInUse",
                spec(FaultKind::ResourceInUse { status }, op, one_app, None),
                minutes,
            )
        }
        13 => (
            "failOperation",
            spec(
                FaultKind::FailOperation {
                    message: "The job could not be restored from the snapshot (soak).".into(),
                },
                Some("UpdateApplication".into()),
                next_scaling.clone(),
                Some(1),
            ),
            rng.random_range(10..=90),
        ),
        14 => (
            "limitExceeded",
            spec(
                FaultKind::LimitExceeded,
                Some("UpdateApplication".into()),
                next_scaling,
                Some(1),
            ),
            rng.random_range(10..=90),
        ),
        15 => (
            "accessDenied",
            spec(FaultKind::AccessDenied, operation(rng), app, None),
            minutes.min(30),
        ),
        16 => {
            let kind = FaultKind::MetricGap {
                metrics: metrics(rng),
                from: Some(now),
                until: Some(until),
            };
            ("metricGap", spec(kind, None, one_app, None), minutes)
        }
        17 => {
            let kind = FaultKind::MetricNaN {
                metrics: metrics(rng),
                from: Some(now),
                until: Some(until),
            };
            ("metricNaN", spec(kind, None, one_app, None), minutes)
        }
        _ => {
            let kind = FaultKind::MetricDelay {
                seconds: rng.random_range(2..=15) * 60,
                metrics: metrics(rng),
            };
            ("metricDelay", spec(kind, None, one_app, None), minutes)
        }
    }
}

/// The checks after one reconcile.
fn check_reconcile(h: &mut Harness, s: &mut Subject, r: &Reconciled, tally: &mut Tally) {
    tally.reconciles += 1;
    if r.outcome.is_err() {
        tally.errors += 1;
    }
    let at = r.at;
    let updates: Vec<_> = r.update_calls().cloned().collect();
    let accepted: Vec<_> = r.accepted_updates().cloned().collect();
    tally.accepted_updates += accepted.len() as u64;
    tally.refused_updates += (updates.len() - accepted.len()) as u64;
    if accepted.len() > 1 {
        tally.violation(
            at,
            format!(
                "{}: {} UpdateApplication accepted in one reconcile",
                s.key,
                accepted.len()
            ),
        );
    }
    // UpdateApplication is sent once, never retried by the SDK: a retry after a lost answer
    // could be a second update.
    if updates.len() > 1 {
        tally.violation(
            at,
            format!(
                "{}: {} UpdateApplication attempts in one reconcile",
                s.key,
                updates.len()
            ),
        );
    }
    if s.mode != Mode::Enforce && !updates.is_empty() {
        tally.violation(at, format!("{}: UpdateApplication in {:?} mode", s.key, s.mode));
    }

    // Never while an operation is in progress: every operation started before the call
    // had ended by then.
    if !updates.is_empty() {
        for op in h.operations(&s.app) {
            let running_at_call = op.start_time < at && op.end_time.is_none_or(|end| end > at);
            if running_at_call {
                tally.violation(
                    at,
                    format!(
                        "{}: UpdateApplication called while operation {} ({}, started {}) was {:?}",
                        s.key, op.operation_id, op.operation, op.start_time, op.status
                    ),
                );
            }
        }
    }

    if matches!(r.effect(), Some(Effect::Failed)) {
        s.refusals += 1;
    }
    let status = h.status(&s.key);
    let events = h.events(&s.key);
    if let Some(call) = accepted.first() {
        s.pending.push(call.virtual_time);
        let in_flight = status.as_ref().and_then(|st| st.operation_in_flight.clone());
        // Killed after the call, or the answer never came (a response timeout): the
        // intent stays recorded, for the next reconcile to judge from the application.
        let unanswered =
            r.crashed == Some(CrashPoint::AfterUpdate) || !matches!(r.effect(), Some(Effect::Scaled { .. }));
        match unanswered {
            true => match &in_flight {
                Some(intent) if intent.operation_id.is_none() => {
                    if r.crashed.is_none() {
                        tally.unanswered_updates += 1;
                    }
                    let to: AppConfig = intent.to.into();
                    if let Err(e) = within_bounds(&to, s) {
                        tally.violation(at, format!("intent out of bounds: {e}"));
                    }
                    s.requested.push(to);
                }
                other => tally.violation(
                    at,
                    format!(
                        "{}: UpdateApplication accepted, its answer lost ({:?}, core: {:?} {:?}), and the intent is not kept: {other:?}",
                        s.key,
                        r.crashed,
                        r.effect(),
                        r.outcome.as_ref().err()
                    ),
                ),
            },
            false => match r.effect() {
                Some(Effect::Scaled { to, operation_id }) => {
                    if let Err(e) = within_bounds(to, s) {
                        tally.violation(at, format!("scaled out of bounds: {e}"));
                    }
                    s.requested.push(*to);
                    let report = r.outcome.as_ref().ok();
                    let noticed = report.is_some_and(|rep| {
                        rep.notices
                            .iter()
                            .any(|n| n.type_ == NoticeType::Normal && n.action == "Scaling")
                    });
                    let published = events
                        .iter()
                        .rev()
                        .take(report.map_or(0, |rep| rep.notices.len()))
                        .any(|n| n.type_ == NoticeType::Normal && n.action == "Scaling");
                    if !noticed || !published {
                        tally.violation(
                            at,
                            format!("{}: UpdateApplication without a Normal Scaling Event", s.key),
                        );
                    }
                    let st = status.as_ref();
                    let last_ok = st
                        .and_then(|st| st.last_scaling.as_ref())
                        .is_some_and(|l| l.operation_id.as_ref() == Some(operation_id) && l.time.0 == at);
                    let flight_ok = in_flight
                        .as_ref()
                        .is_some_and(|o| o.operation_id.as_ref() == Some(operation_id));
                    let history_ok = st
                        .map(|st| st.to_history())
                        .is_some_and(|hist| hist.scalings.iter().any(|rec| rec.at == at));
                    if !(last_ok && flight_ok && history_ok) {
                        tally.violation(
                            at,
                            format!(
                                "{}: UpdateApplication not recorded in status (lastScaling {last_ok}, in flight {flight_ok}, history {history_ok})",
                                s.key
                            ),
                        );
                    }
                }
                other => tally.violation(
                    at,
                    format!(
                        "{}: UpdateApplication accepted but the core reported {other:?} ({:?})",
                        s.key,
                        r.outcome.as_ref().err()
                    ),
                ),
            },
        }
    } else if matches!(r.effect(), Some(Effect::Scaled { .. })) {
        tally.violation(
            at,
            format!("{}: reported Scaled without an accepted UpdateApplication", s.key),
        );
    }

    // Outcomes: once nothing is in flight, every accepted update has its history entry
    // (not in progress) and an outcome Event.
    s.outcome_events = events
        .iter()
        .filter(|n| n.action == "Scaling" && (n.reason == "ScalingSucceeded" || n.reason == "ScalingFailed"))
        .count();
    let idle = status.as_ref().is_some_and(|st| st.operation_in_flight.is_none());
    if idle && !s.pending.is_empty() {
        let history = status.as_ref().map(|st| st.to_history()).unwrap_or_default();
        for t in std::mem::take(&mut s.pending) {
            match history
                .scalings
                .iter()
                .find(|rec| rec.at.as_second() == t.as_second())
            {
                Some(rec) if rec.outcome != Outcome::InProgress => s.outcomes_recorded += 1,
                Some(rec) => tally.violation(
                    at,
                    format!(
                        "{}: scaling of {t} left {:?} with nothing in flight",
                        s.key, rec.outcome
                    ),
                ),
                // Dropped because another client changed the application before the outcome
                // could be told, which the controller must have said.
                None if s.superseded_seen
                    < events.iter().filter(|n| n.reason == "ScalingSuperseded").count() =>
                {
                    s.superseded_seen += 1;
                }
                None => tally.violation(
                    at,
                    format!(
                        "{}: accepted UpdateApplication of {t} missing from the history (last Events: {:?})",
                        s.key,
                        events
                            .iter()
                            .rev()
                            .take(4)
                            .map(|n| format!("{}: {}", n.reason, n.note))
                            .collect::<Vec<_>>()
                    ),
                ),
            }
        }
        if s.outcome_events < s.outcomes_recorded {
            tally.violation(
                at,
                format!(
                    "{}: {} scaling outcomes recorded but {} outcome Events",
                    s.key, s.outcomes_recorded, s.outcome_events
                ),
            );
        }
    }
}

/// Another client (a person with the AWS CLI) changes a running application's parallelism.
fn foreign_update(h: &Harness, rng: &mut ChaCha8Rng, s: &mut Subject, tally: &mut Tally) {
    let to = AppConfig {
        parallelism: rng.random_range(1..=s.key_groups.min(24)),
        parallelism_per_kpu: rng.random_range(1..=2),
    };
    let app = s.app.clone();
    let started = h.emulator().with_fleet(|f| {
        let version = f.describe_application(&app).ok()?.version_id;
        let request = UpdateApplication {
            current_application_version_id: Some(version),
            parallelism: Some(ParallelismUpdate {
                configuration_type: Some(ConfigurationType::Custom),
                parallelism: Some(to.parallelism),
                parallelism_per_kpu: Some(to.parallelism_per_kpu),
                auto_scaling_enabled: Some(false),
            }),
            ..UpdateApplication::default()
        };
        // Refused while the application is busy: then nothing happened.
        f.update_application(&app, request).ok().map(|(_, op)| op)
    });
    if let Some(op) = started {
        s.requested.push(to);
        s.foreign_ops.push(op);
        tally.foreign_updates += 1;
    }
}

/// The checks after one reconcile of a younger budget naming a managed application.
fn check_shadow(r: &Reconciled, tally: &mut Tally) {
    tally.reconciles += 1;
    // Conflict is how such a budget answers (requeued at every interval); count the rest.
    if r.outcome
        .as_ref()
        .is_err_and(|e| !matches!(e, Error::Conflict(_)))
    {
        tally.errors += 1;
    }
    let writes: Vec<&str> = r
        .calls
        .iter()
        .filter(|c| c.operation != "DescribeApplication" && c.operation != "ListTagsForResource")
        .map(|c| c.operation.as_str())
        .collect();
    if !writes.is_empty() {
        tally.violation(
            r.at,
            format!(
                "{}: a budget that does not own its application called {writes:?}",
                r.key
            ),
        );
    }
    if matches!(r.effect(), Some(Effect::Scaled { .. })) {
        tally.violation(
            r.at,
            format!("{}: a budget that does not own its application scaled it", r.key),
        );
    }
}

/// The checks every minute, on every application.
fn check_fleet(h: &Harness, subjects: &[Subject], tally: &mut Tally) {
    let at = h.now();
    for s in subjects {
        let view = h
            .emulator()
            .with_fleet(|f| f.describe_application(&s.app))
            .unwrap_or_else(|e| panic!("{}: {e}", s.app));
        // The configuration asked for (Parallelism, ParallelismPerKPU) at all times, and the
        // one running once the application runs (while it updates, CurrentParallelism is
        // still the old one next to the new ParallelismPerKPU).
        let configured = AppConfig {
            parallelism: view.parallelism.parallelism,
            parallelism_per_kpu: view.parallelism.parallelism_per_kpu,
        };
        let running = view.running_config();
        let mut judged = vec![("configured", configured)];
        if view.status == AppStatus::Running {
            judged.push(("running", running));
        }
        for (what, config) in judged {
            if config.parallelism > s.key_groups {
                tally.violation(
                    at,
                    format!(
                        "{}: {what} {config} above the job's key groups {}",
                        s.app, s.key_groups
                    ),
                );
            }
            // Only the controller changes these applications, and each configuration it
            // asked for was checked against the bounds of its time.
            if config != s.initial && !s.requested.contains(&config) {
                tally.violation(
                    at,
                    format!(
                        "{}: {what} {config} was never asked for (initially {}; asked {:?}; operations {:?})",
                        s.app,
                        s.initial,
                        s.requested,
                        ops_summary(&h.operations(&s.app))
                    ),
                );
            }
        }
        let ops = h.operations(&s.app);
        let in_progress = |kind: Option<&str>| {
            ops.iter()
                .filter(|op| op.status == OperationStatus::InProgress)
                .filter(|op| kind.is_none_or(|k| op.operation == k))
                .count()
        };
        if in_progress(None) > 1 {
            tally.violation(
                at,
                format!("{}: {} operations IN_PROGRESS", s.app, in_progress(None)),
            );
        }
        // A rollback is the service's own, and so is another client's update; the others
        // are the controller's.
        let running = ops
            .iter()
            .filter(|op| op.status == OperationStatus::InProgress && op.operation == "UpdateApplication")
            .filter(|op| !s.foreign_ops.contains(&op.operation_id))
            .count();
        let in_flight = h
            .status(&s.key)
            .is_some_and(|st| st.operation_in_flight.is_some());
        if running > 0 && !in_flight {
            tally.violation(
                at,
                format!(
                    "{}: an operation is IN_PROGRESS but the status has none in flight",
                    s.key
                ),
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soak_many_budgets_under_random_faults_and_crashes() {
    let seed: u64 = env_or("SOAK_SEED", 20_261_126);
    let hours: u32 = env_or("SOAK_HOURS", 8);
    let count: usize = env_or("SOAK_BUDGETS", 12);
    eprintln!("soak: seed {seed} (SOAK_SEED), {count} budgets (SOAK_BUDGETS), {hours} h (SOAK_HOURS)");
    let started = Instant::now();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);

    let mut h = Harness::start(HarnessConfig {
        seed,
        aws: AwsSettings {
            max_attempts: MAX_ATTEMPTS,
            initial_backoff: Duration::from_millis(2),
            attempt_timeout: ATTEMPT_TIMEOUT,
            operation_timeout: Duration::from_secs(2),
            ..AwsSettings::default()
        },
        ..HarnessConfig::default()
    })
    .await;

    let shipped = scenario_names();
    let mut subjects = Vec::with_capacity(count);
    for i in 0..count {
        let app = format!("app-{i:03}");
        let namespace = format!("team-{}", i % 4);
        // Half the shipped scenarios in turn, half random shapes.
        let (origin, mut sc) = if i % 2 == 0 {
            let name = shipped[(i / 2) % shipped.len()].clone();
            let sc = scenario(&name);
            (name, sc)
        } else {
            ("random".to_string(), random_scenario(&mut rng, &app))
        };
        let key_groups = sc.application.key_groups();
        randomize_budget(
            &mut rng,
            sc.budget.as_mut().expect("the scenarios carry a budget"),
            key_groups,
        );
        let key = h.add_scenario_budget(&sc, &app, &namespace);
        let spec = &h.budgets().iter().find(|m| m.key == key).unwrap().budget.spec;
        subjects.push(Subject {
            key,
            app,
            origin,
            budget: spec.to_budget().expect("a valid random budget"),
            mode: spec.mode,
            key_groups: sc.application.key_groups(),
            initial: AppConfig {
                parallelism: sc.application.parallelism,
                parallelism_per_kpu: sc.application.parallelism_per_kpu,
            },
            requested: Vec::new(),
            foreign_ops: Vec::new(),
            refusals: 0,
            superseded_seen: 0,
            pending: Vec::new(),
            outcome_events: 0,
            outcomes_recorded: 0,
        });
    }
    let index: BTreeMap<BudgetKey, usize> = subjects
        .iter()
        .enumerate()
        .map(|(i, s)| (s.key.clone(), i))
        .collect();
    let apps: Vec<String> = subjects.iter().map(|s| s.app.clone()).collect();

    let sim_start = h.now();
    // Younger budgets naming an application another budget already manages: they must
    // report Conflict and never act.
    h.advance(Duration::from_secs(60));
    let mut shadows: BTreeMap<BudgetKey, String> = BTreeMap::new();
    for _ in 0..count.div_ceil(6) {
        let owner = subjects.choose(&mut rng).unwrap();
        let m = h.budgets().iter().find(|m| m.key == owner.key).unwrap();
        let mut spec = m.budget.spec.clone();
        randomize_budget(&mut rng, &mut spec, owner.key_groups);
        spec.mode = Mode::Enforce;
        let name = format!("{}-shadow-{}", owner.app, shadows.len());
        let (namespace, app) = (owner.key.namespace.clone(), owner.app.clone());
        shadows.insert(h.add_budget(&namespace, &name, spec), app);
    }
    // A window of metrics before the first evaluation.
    h.advance(Duration::from_secs(8 * 60));
    let mut tally = Tally::default();
    let mut armed: Vec<Armed> = Vec::new();
    let total = hours * 60;
    for _minute in 0..total {
        let now = h.now();
        // Clear the faults whose time is up.
        let mut keep = Vec::with_capacity(armed.len());
        for a in armed.drain(..) {
            if a.clear_at <= now {
                h.clear_fault(a.id).await;
            } else {
                keep.push(a);
            }
        }
        armed = keep;
        if rng.random_bool(FAULTS_PER_MINUTE) {
            let (kind, spec, minutes) = random_fault(&mut rng, &apps, now);
            let id = h.arm_fault(&spec).await;
            *tally.faults.entry(kind).or_default() += 1;
            armed.push(Armed {
                id,
                clear_at: now + jiff::SignedDuration::from_mins(i64::from(minutes)),
            });
        }
        if rng.random_bool(CRASHES_PER_MINUTE) {
            // A crash fires at the budget's next scaling, so only Enforce budgets can.
            let s = subjects
                .iter()
                .filter(|s| s.mode == Mode::Enforce)
                .collect::<Vec<_>>()
                .choose(&mut rng)
                .map(|s| s.key.clone());
            let point = if rng.random_bool(0.5) {
                CrashPoint::AfterIntent
            } else {
                CrashPoint::AfterUpdate
            };
            if let Some(key) = s {
                h.crash_at(&key, point);
            }
        }
        if rng.random_bool(SPEC_CHANGES_PER_MINUTE) {
            // A person edits a budget: new bounds, cap, mode; the next reconcile sees it.
            let i = rng.random_range(0..subjects.len());
            let s = &mut subjects[i];
            let key_groups = s.key_groups;
            h.update_spec(&s.key, |spec| randomize_budget(&mut rng, spec, key_groups));
            let spec = &h.budgets().iter().find(|m| m.key == s.key).unwrap().budget.spec;
            s.budget = spec.to_budget().expect("a valid random budget");
            s.mode = spec.mode;
            tally.spec_changes += 1;
        }
        if rng.random_bool(FOREIGN_UPDATES_PER_MINUTE) {
            let i = rng.random_range(0..subjects.len());
            foreign_update(&h, &mut rng, &mut subjects[i], &mut tally);
        }
        if rng.random_bool(RESTARTS_PER_MINUTE) {
            h.restart().await;
            tally.restarts += 1;
        }

        for r in h.step().await {
            if let Some(point) = r.crashed {
                *tally
                    .crashes
                    .entry(match point {
                        CrashPoint::AfterIntent => "afterIntent",
                        CrashPoint::AfterUpdate => "afterUpdate",
                    })
                    .or_default() += 1;
            }
            match index.get(&r.key) {
                Some(&i) => {
                    check_reconcile(&mut h, &mut subjects[i], &r, &mut tally);
                    // Someone changes the application while the controller is down with an
                    // intent recorded: the restarted controller must not take that change
                    // for its own update, nor call its own a failure.
                    if r.crashed == Some(CrashPoint::AfterIntent) && rng.random_bool(0.5) {
                        foreign_update(&h, &mut rng, &mut subjects[i], &mut tally);
                    }
                }
                None => check_shadow(&r, &mut tally),
            }
        }
        check_fleet(&h, &subjects, &mut tally);
    }

    // Calm: every fault cleared, no crash armed; the statuses converge.
    h.clear_faults().await;
    for s in &subjects {
        h.disarm_crash(&s.key);
    }
    // Generous timeouts from here on: a slow answer on a loaded machine is not a fault.
    h.set_aws_settings(AwsSettings {
        max_attempts: MAX_ATTEMPTS,
        ..AwsSettings::default()
    });
    h.restart().await;
    let calm_from = h.now();
    for _ in 0..TAIL_MINUTES {
        for r in h.step().await {
            if let Err(e) = &r.outcome
                && !shadows.contains_key(&r.key)
            {
                tally.violation(
                    r.at,
                    format!("{}: reconcile failed with every fault cleared: {e}", r.key),
                );
            }
            match index.get(&r.key) {
                Some(&i) => check_reconcile(&mut h, &mut subjects[i], &r, &mut tally),
                None => check_shadow(&r, &mut tally),
            }
        }
        check_fleet(&h, &subjects, &mut tally);
    }
    let end = h.now();
    for s in &subjects {
        let status = h.status(&s.key).unwrap_or_else(|| panic!("{}: no status", s.key));
        match status.condition(READY) {
            Some(c) if c.status == "True" => {}
            other => tally.violation(end, format!("{}: not Ready at the end: {other:?}", s.key)),
        }
        if let Some(op) = &status.operation_in_flight
            && op.started_at.0 < calm_from
        {
            tally.violation(
                end,
                format!(
                    "{}: operation from {} still in flight at the end",
                    s.key, op.started_at.0
                ),
            );
        }
        // Brought within the bounds (of the budget as last edited) in the calm hour, unless
        // no configuration satisfies them all, which the controller must then say.
        let running = h
            .emulator()
            .with_fleet(|f| f.describe_application(&s.app))
            .map(|v| v.running_config())
            .unwrap_or_else(|e| panic!("{}: {e}", s.app));
        if s.mode == Mode::Enforce
            && let Err(e) = within_bounds(&running, s)
        {
            let reason = status.condition(SCALING).map(|c| c.reason.clone());
            // NB: with no checkpoint data at all (e.g. a serializer failure) the policy holds
            // on missing data and does not enforce the bounds either.
            let excused = match reason.as_deref() {
                Some("LimitReached") => !satisfiable(&s.budget),
                Some("MissingMetrics") => true,
                _ => false,
            };
            if !excused {
                tally.violation(
                    end,
                    format!("still out of bounds at the end (Scaling reason {reason:?}): {e}"),
                );
            }
        }
        // Exactly one outcome Event per finished update, whoever followed it (the controller
        // that called, or one restarted after a crash or a lost answer).
        let ops = h.operations(&s.app);
        let finished = |state: OperationStatus| {
            ops.iter()
                .filter(|op| op.operation == "UpdateApplication" && op.status == state)
                .filter(|op| !s.foreign_ops.contains(&op.operation_id))
                .count()
        };
        let events = h.events(&s.key);
        let outcome_events = |reason: &str| {
            events
                .iter()
                .filter(|n| n.action == "Scaling" && n.reason == reason)
                .count()
        };
        let in_flight_now = usize::from(status.operation_in_flight.is_some());
        let succeeded = finished(OperationStatus::Successful);
        // NB: another client's update that happens to set exactly the configuration of an
        // intent the controller could not confirm is (rightly) taken for it: one more Event.
        if outcome_events("ScalingSucceeded") + in_flight_now < succeeded
            || outcome_events("ScalingSucceeded") > succeeded + s.foreign_ops.len()
        {
            tally.violation(
                end,
                format!(
                    "{}: {succeeded} updates succeeded, {} ScalingSucceeded Events ({:?}; operations {:?}; foreign {:?})",
                    s.key,
                    outcome_events("ScalingSucceeded"),
                    events
                        .iter()
                        .filter(|n| n.action == "Scaling")
                        .map(|n| format!("{}: {}", n.reason, n.note))
                        .collect::<Vec<_>>(),
                    ops_summary(&ops),
                    s.foreign_ops
                ),
            );
        }
        // Failures are never invented: each failed scaling in the history is an update the
        // service failed, or one it refused for good.
        let failed_records = status
            .to_history()
            .scalings
            .iter()
            .filter(|rec| rec.outcome == Outcome::Failed)
            .count();
        let failures = finished(OperationStatus::Failed) + s.refusals;
        if failed_records > failures {
            tally.violation(
                end,
                format!(
                    "{}: {failed_records} scalings recorded as failed, but the service failed {} updates and refused {}: {:?}",
                    s.key,
                    finished(OperationStatus::Failed),
                    s.refusals,
                    events
                        .iter()
                        .filter(|n| n.reason == "ScalingFailed")
                        .map(|n| n.note.as_str())
                        .collect::<Vec<_>>()
                ),
            );
        }
        for op in &ops {
            if op.status == OperationStatus::InProgress && op.start_time < calm_from {
                tally.violation(
                    end,
                    format!(
                        "{}: operation {} from the faulty period still IN_PROGRESS",
                        s.app, op.operation_id
                    ),
                );
            }
        }
    }

    for key in shadows.keys() {
        let reason = h
            .status(key)
            .and_then(|st| st.condition(READY).map(|c| (c.status.clone(), c.reason.clone())));
        if reason != Some(("False".into(), "Conflict".into())) {
            tally.violation(end, format!("{key}: a younger budget on a managed application ended with Ready {reason:?}, not Conflict"));
        }
    }

    let failed_ops = subjects
        .iter()
        .flat_map(|s| h.operations(&s.app))
        .filter(|op| op.operation == "UpdateApplication" && op.status == OperationStatus::Failed)
        .count();
    let faults: u32 = tally.faults.values().sum();
    let crashes: u32 = tally.crashes.values().sum();
    let mut by_kind = String::new();
    for (k, n) in &tally.faults {
        let _ = write!(by_kind, " {k}={n}");
    }
    let origins = subjects.iter().filter(|s| s.origin == "random").count();
    let shadow_count = shadows.len();
    eprintln!(
        "soak: seed {seed}: {count} budgets ({origins} random shapes) + {shadow_count} younger on the same applications, {:.1} emulated hours, {} reconciles ({} failed), \
         {} updates ({} unanswered, {failed_ops} failed and rolled back; {} refused attempts), {faults} faults [{}], {crashes} crashes {:?}, {} restarts ({} in all), {} spec changes, {} foreign updates, {:.1} s real",
        end.duration_since(sim_start).as_secs_f64() / 3600.0,
        tally.reconciles,
        tally.errors,
        tally.accepted_updates,
        tally.unanswered_updates,
        tally.refused_updates,
        by_kind.trim(),
        tally.crashes,
        tally.restarts,
        h.restarts(),
        tally.spec_changes,
        tally.foreign_updates,
        started.elapsed().as_secs_f64(),
    );
    assert!(
        tally.accepted_updates > 0,
        "the soak never scaled anything: it tests nothing"
    );
    assert!(
        tally.violations.is_empty(),
        "seed {seed}: {} invariant violations:\n{}",
        tally.violations.len(),
        tally.violations.join("\n")
    );
    h.shutdown().await;
}

/// Regression (found by the soak): the controller killed after recording an intent, and
/// another client changing the application before it restarts. The restarted controller
/// used to record its own update — which never reached AWS — as failed ("the application's
/// version moved ... but it runs ..."), and then refused to ask for that configuration again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_by_another_client_is_not_taken_for_a_failed_update() {
    let mut h = Harness::start(HarnessConfig::default()).await;
    let key = h.add_scenario_budget(&scenario("step-up"), "orders", "team-a");
    h.advance(Duration::from_secs(9 * 60));
    h.crash_at(&key, CrashPoint::AfterIntent);
    let mut crashed = None;
    for _ in 0..60 {
        if let Some(r) = h.step().await.into_iter().find(|r| r.crashed.is_some()) {
            crashed = Some(r);
            break;
        }
    }
    let crashed = crashed.expect("the load step makes the controller scale");
    assert_eq!(crashed.update_calls().count(), 0);
    let intent = h.status(&key).unwrap().operation_in_flight.unwrap();

    // While the controller is down, someone sets a configuration of their own.
    let theirs = AppConfig {
        parallelism: 6,
        parallelism_per_kpu: 1,
    };
    assert_ne!(AppConfig::from(intent.to), theirs);
    h.emulator()
        .with_fleet(|f| {
            let version = f.describe_application("orders")?.version_id;
            f.update_application(
                "orders",
                UpdateApplication {
                    current_application_version_id: Some(version),
                    parallelism: Some(ParallelismUpdate {
                        configuration_type: Some(ConfigurationType::Custom),
                        parallelism: Some(theirs.parallelism),
                        parallelism_per_kpu: Some(theirs.parallelism_per_kpu),
                        auto_scaling_enabled: Some(false),
                    }),
                    ..UpdateApplication::default()
                },
            )
        })
        .unwrap();

    // The restarted controller waits for that change, drops its intent without calling it a
    // failure, and is free to scale again (6 is not enough for the load either).
    let mut accepted = 0;
    for _ in 0..45 {
        for r in h.step().await {
            accepted += r.accepted_updates().count();
        }
    }
    let status = h.status(&key).unwrap();
    let events = h.events(&key);
    assert!(events.iter().all(|n| n.reason != "ScalingFailed"), "{events:#?}");
    assert!(
        events.iter().any(|n| n.reason == "ScalingSuperseded"),
        "{events:#?}"
    );
    assert!(
        status
            .to_history()
            .scalings
            .iter()
            .all(|rec| rec.outcome != Outcome::Failed),
        "{:#?}",
        status.history
    );
    assert!(
        accepted >= 1,
        "the controller scales the application itself afterwards"
    );
    h.shutdown().await;
}
