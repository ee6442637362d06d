//! `checkpoint-autoscaler simulate`: runs a scenario in virtual time under a policy and
//! reports SLO-violation minutes, KPU-hours, restarts and failed checkpoints.
//!
//! [`run`] is the reusable loop: one application on a [`Fleet`], stepped one metric period
//! at a time, with a [`Policy`] looking at it after every period — the project's policy
//! through the same observe → decide → act → record cycle the controller runs, or a
//! baseline.

use std::{collections::VecDeque, path::PathBuf, process::ExitCode, time::Duration};

use anyhow::Context as _;
use jiff::{SignedDuration, Timestamp};
use serde::Serialize;

pub use super::cloudwatch::{hourly_input, observe};
use super::{
    baselines::{Builtin, Static},
    chart, compare,
    contenders::{Optimal, Threshold},
    fleet::{Fleet, OperationStatus, PERIOD, ParallelismUpdate, ServiceError, UpdateApplication},
    generate::{self, Family},
    scenario::{PlatformVariant, Scenario, ScenarioError},
};
use crate::{
    aws::catalogue::MetricsLevel,
    crd::{Mode, ServiceAutoScaling},
    policy::duration::human,
    policy::{
        self, Action, AppConfig, AppStatus, Budget, Decision, History, HourlyRate, Outcome, ScalingRecord,
    },
    sim::fleet::ConfigurationType,
};

/// Scalings the history keeps (the controller's status keeps the last few as well).
const MAX_SCALINGS: usize = 10;

/// Why a simulation could not run.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// The scenario is unusable.
    #[error(transparent)]
    Scenario(#[from] ScenarioError),
    /// The service refused to set the scenario up.
    #[error("cannot set up the scenario's application: {0}")]
    Service(#[from] ServiceError),
    /// The policy needs a budget and the scenario has none.
    #[error("scenario {0} has no `budget:`; the checkpoint-autoscaler policy needs one")]
    NoBudget(String),
}

/// Something a policy did or saw, for the timeline.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Note {
    /// When.
    pub at: Timestamp,
    /// What, in one line.
    pub text: String,
}

/// A scaling policy under test. It sees the fleet after every metric period and may act on
/// it through the service's API, as a controller would.
pub trait Policy {
    /// Short name for reports (`checkpoint-autoscaler`, `static`, `builtin`, ...).
    fn name(&self) -> &str;

    /// Whether the application starts with the service's own autoscaling enabled, given
    /// the scenario's setting.
    fn initial_auto_scaling(&self, scenario: &Scenario) -> bool;

    /// Called at every period boundary `now`, after the fleet has advanced to it.
    fn tick(&mut self, fleet: &mut Fleet, app: &str, now: Timestamp) -> Vec<Note>;
}

/// The project's policy driven as the controller drives it: observe (DescribeApplication,
/// the metrics over the budget's window), [`policy::decide`], act (`UpdateApplication` with
/// the version id, honouring `UPDATING`), record (history with the operation's outcome,
/// recommendations trimmed to the stabilization window), and look again after the
/// decision's `requeue_after`.
///
/// NB: always acts as in `Enforce` mode, whatever the budget's `mode` says: the point of a
/// simulation is to see what the policy would do.
#[derive(Clone, Debug)]
pub struct CheckpointAutoscaler {
    budget: Budget,
    service_auto_scaling: ServiceAutoScaling,
    history: History,
    next_evaluation: Option<Timestamp>,
    in_flight: Option<String>,
    last: Option<Decision>,
    /// The input history read in the current clock hour (the controller reads it once an
    /// hour too): the hour, and the rates.
    hourly: Option<(i64, Vec<HourlyRate>)>,
}

impl CheckpointAutoscaler {
    /// The policy for `budget`, with the spec's `serviceAutoScaling` choice.
    pub fn new(budget: Budget, service_auto_scaling: ServiceAutoScaling) -> Self {
        Self {
            budget,
            service_auto_scaling,
            history: History::default(),
            next_evaluation: None,
            in_flight: None,
            last: None,
            hourly: None,
        }
    }

    /// The policy for a scenario's budget.
    pub fn for_scenario(scenario: &Scenario) -> Result<Self, SimError> {
        let budget = scenario
            .policy_budget()?
            .ok_or_else(|| SimError::NoBudget(scenario.name.clone()))?;
        let keep = scenario
            .budget
            .as_ref()
            .map(|b| b.service_auto_scaling)
            .unwrap_or_default();
        Ok(Self::new(budget, keep))
    }

    /// What the policy remembers.
    pub fn history(&self) -> &History {
        &self.history
    }

    /// The last decision.
    pub fn last_decision(&self) -> Option<&Decision> {
        self.last.as_ref()
    }

    /// Follows the operation in flight; records its outcome once the application runs again.
    fn track(&mut self, fleet: &Fleet, app: &str, now: Timestamp, notes: &mut Vec<Note>) {
        let Some(id) = self.in_flight.clone() else { return };
        let Ok(op) = fleet.describe_operation(app, &id) else {
            self.in_flight = None;
            return;
        };
        let (outcome, completed) = match op.status {
            OperationStatus::InProgress => return,
            OperationStatus::Successful => (Outcome::Succeeded, op.end_time),
            OperationStatus::Failed | OperationStatus::Cancelled => {
                // Complete once the service's rollback has the application running again.
                let rollback = op
                    .rollback_operation_id
                    .as_deref()
                    .and_then(|r| fleet.describe_operation(app, r).ok());
                match rollback {
                    Some(r) if r.status == OperationStatus::InProgress => return,
                    Some(r) => (Outcome::Failed, r.end_time),
                    None => (Outcome::Failed, op.end_time),
                }
            }
        };
        if let Some(record) = self
            .history
            .scalings
            .iter_mut()
            .rev()
            .find(|r| r.outcome == Outcome::InProgress)
        {
            record.outcome = outcome;
            record.completed_at = completed.or(Some(now));
        }
        if outcome == Outcome::Failed {
            notes.push(Note {
                at: now,
                text: format!(
                    "UpdateApplication failed: {}",
                    op.failure.as_deref().unwrap_or("no details")
                ),
            });
        }
        self.in_flight = None;
    }
}

impl Policy for CheckpointAutoscaler {
    fn name(&self) -> &str {
        "checkpoint-autoscaler"
    }

    fn initial_auto_scaling(&self, scenario: &Scenario) -> bool {
        // `Disable` turns it off with the controller's first change, so it starts as given.
        scenario.application.auto_scaling_enabled
    }

    fn tick(&mut self, fleet: &mut Fleet, app: &str, now: Timestamp) -> Vec<Note> {
        let mut notes = Vec::new();
        self.track(fleet, app, now, &mut notes);
        if self.next_evaluation.is_some_and(|next| now < next) {
            return notes;
        }
        // Observe.
        let mut observation = observe(fleet, app, policy::observation_window(&self.budget), now).ok();
        let hour = now.as_second().div_euclid(3600);
        if self.hourly.as_ref().is_none_or(|(h, _)| *h != hour) {
            // NB: as the controller, a history that cannot be read is no history.
            self.hourly = Some((hour, hourly_input(fleet, app, now).unwrap_or_default()));
        }
        if let (Some(obs), Some((_, rates))) = (observation.as_mut(), self.hourly.as_ref()) {
            obs.hourly_input = rates.clone();
        }
        // Decide.
        let decision = policy::decide(&self.budget, observation.as_ref(), &self.history, now);
        policy::remember(&mut self.history, &decision, &self.budget, now);
        if let Some(obs) = &observation {
            policy::remember_baseline(&mut self.history, &decision, obs.config, now);
        }
        policy::account(&mut self.history, &self.budget, decision.slo_met, now);
        // Act.
        if let (Action::Scale { to }, Some(obs)) = (decision.action, observation.as_ref()) {
            let auto_scaling = match self.service_auto_scaling {
                ServiceAutoScaling::Disable => false,
                ServiceAutoScaling::Keep => obs.service_autoscaling,
            };
            let request = UpdateApplication {
                current_application_version_id: Some(obs.version_id),
                parallelism: Some(ParallelismUpdate {
                    configuration_type: Some(ConfigurationType::Custom),
                    parallelism: Some(to.parallelism),
                    parallelism_per_kpu: Some(to.parallelism_per_kpu),
                    auto_scaling_enabled: Some(auto_scaling),
                }),
                ..UpdateApplication::default()
            };
            match fleet.update_application(app, request) {
                Ok((_, op)) => {
                    self.history
                        .scalings
                        .push(ScalingRecord::started(now, obs.config, to, &decision));
                    let excess = self.history.scalings.len().saturating_sub(MAX_SCALINGS);
                    self.history.scalings.drain(..excess);
                    self.in_flight = Some(op);
                    notes.push(Note {
                        at: now,
                        text: format!(
                            "{} → {} ({}): {}",
                            obs.config,
                            to,
                            decision.reason.as_str(),
                            decision.message
                        ),
                    });
                }
                Err(e) => notes.push(Note {
                    at: now,
                    text: format!("UpdateApplication refused: {} {e}", e.code()),
                }),
            }
        } else if self.last.as_ref().is_none_or(|l| l.reason != decision.reason) {
            notes.push(Note {
                at: now,
                text: format!("{}: {}", decision.reason.as_str(), decision.message),
            });
        }
        // Requeue.
        let wait = decision.requeue_after.max(PERIOD);
        self.next_evaluation = Some(now + wait);
        self.last = Some(decision);
        notes
    }
}

/// One minute of the run.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Row {
    /// End of the period.
    pub at: Timestamp,
    /// Minutes since the start.
    pub minute: u64,
    /// Application status at the end of the period.
    pub status: AppStatus,
    /// Running configuration.
    pub config: AppConfig,
    /// KPUs billed during the period.
    pub kpus: u32,
    /// Whether the service's autoscaling is enabled.
    pub auto_scaling: bool,
    /// Offered load, records/s.
    pub offered_per_second: f64,
    /// Processed, records/s.
    pub records_in_per_second: f64,
    /// `millisBehindLatest`.
    pub millis_behind_latest: f64,
    /// CPU of the busiest TaskManager, percent (when the job ran).
    pub cpu_utilization: Option<f64>,
    /// Heap, percent (when the job ran).
    pub heap_memory_utilization: Option<f64>,
    /// Last completed checkpoint's duration, ms.
    pub last_checkpoint_duration_ms: Option<f64>,
    /// Checkpoints failed in the period.
    pub failed_checkpoints: u32,
    /// Full state, bytes.
    pub state_bytes: f64,
    /// Job failovers (fullRestarts) in the period.
    pub full_restarts: u32,
    /// Whether the minute violates the budget (`None` without a budget).
    pub slo_violated: Option<bool>,
    /// What the policy did or saw.
    pub notes: Vec<String>,
}

/// Totals of a run.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Summary {
    /// Minutes that violated the budget (`None` without a budget).
    pub slo_violation_minutes: Option<u64>,
    /// Of those, minutes the job was not running at all (restarts, failovers).
    pub down_minutes: u64,
    /// KPU-hours billed (the orchestration KPU the service adds per application excluded).
    pub kpu_hours: f64,
    /// Restarts caused by scaling: UpdateApplication restarts plus the service's
    /// autoscaling.
    pub restarts: u32,
    /// Of the restarts, the service's own autoscaling.
    pub autoscaling_restarts: u32,
    /// UpdateApplication operations that failed (and rolled back).
    pub failed_updates: u32,
    /// Job failovers (OOM, full disk, too many failed checkpoints).
    pub full_restarts: u32,
    /// Checkpoints that failed.
    pub failed_checkpoints: u32,
    /// Configuration at the end.
    pub final_config: AppConfig,
    /// Whether the service's autoscaling is on at the end.
    pub final_auto_scaling: bool,
    /// Simulated minutes.
    pub minutes: u64,
    /// For each load change of the trace (phase boundaries, spike edges): the minutes from
    /// the change until the budget held for a whole window again; `None` when it did not
    /// before the next change or the end (and without a budget).
    pub recovery_minutes: Vec<Option<u64>>,
}

/// Minutes from each change until `window` consecutive minutes meet the budget, within the
/// span before the next change.
fn recovery_minutes(rows: &[Row], changes: &[u64], window: usize) -> Vec<Option<u64>> {
    changes
        .iter()
        .enumerate()
        .map(|(i, &change)| {
            let end = changes
                .get(i + 1)
                .copied()
                .unwrap_or(rows.len() as u64)
                .min(rows.len() as u64);
            // Row k covers minute k + 1, i.e. [k, k + 1) minutes after the start.
            let span = rows.get(change as usize..end as usize)?;
            let mut run = 0;
            for (k, row) in span.iter().enumerate() {
                match row.slo_violated {
                    Some(false) => run += 1,
                    Some(true) => run = 0,
                    None => return None,
                }
                if run >= window {
                    return Some((k + 1 - window) as u64);
                }
            }
            None
        })
        .collect()
}

/// The result of [`run`].
#[derive(Clone, Debug, Serialize)]
pub struct RunReport {
    /// Scenario name.
    pub scenario: String,
    /// Policy name.
    pub policy: String,
    /// Seed used.
    pub seed: u64,
    /// The budget the minutes were judged against.
    pub budget: Option<Budget>,
    /// Minute by minute.
    pub rows: Vec<Row>,
    /// Totals.
    pub summary: Summary,
}

/// Runs `scenario` under `policy` for the scenario's duration (with `seed` instead of the
/// scenario's when given) and reports minute by minute.
pub fn run(scenario: &Scenario, policy: &mut dyn Policy, seed: Option<u64>) -> Result<RunReport, SimError> {
    let mut scenario = scenario.clone();
    if let Some(seed) = seed {
        scenario.seed = seed;
    }
    scenario.application.auto_scaling_enabled = policy.initial_auto_scaling(&scenario);
    let budget = scenario.policy_budget()?;
    let name = scenario.application.name.clone();
    let mut fleet = Fleet::new(scenario.seed, scenario.start_time());
    fleet.add_scenario(&scenario, None)?;
    let origin = fleet.now();
    record_history(&mut fleet, &scenario, &name, origin)?;
    let minutes = scenario.duration.as_secs().div_ceil(60);
    let window_periods = budget
        .as_ref()
        .map_or(10, |b| b.window.as_secs().div_ceil(60).max(1)) as usize;
    let mut failures: VecDeque<u32> = VecDeque::with_capacity(window_periods);
    let mut rows = Vec::with_capacity(minutes as usize);
    let mut previous_status = AppStatus::Running;
    let mut previous_failed_ops = 0;
    let mut summary = Summary {
        slo_violation_minutes: budget.as_ref().map(|_| 0),
        down_minutes: 0,
        kpu_hours: 0.0,
        restarts: 0,
        autoscaling_restarts: 0,
        failed_updates: 0,
        full_restarts: 0,
        failed_checkpoints: 0,
        final_config: AppConfig::new(
            scenario.application.parallelism,
            scenario.application.parallelism_per_kpu,
        ),
        final_auto_scaling: scenario.application.auto_scaling_enabled,
        minutes,
        recovery_minutes: Vec::new(),
    };
    let mut previous_restarts = 0.0;
    for minute in 1..=minutes {
        let now = origin + SignedDuration::from_mins(minute as i64);
        fleet.advance_to(now);
        let view = fleet.describe_application(&name)?;
        let report = fleet.last_period(&name).cloned().unwrap_or_default();
        let notes = policy.tick(&mut fleet, &name, now);
        // Restarts: every entry into UPDATING or AUTOSCALING, after this period's events and
        // the policy's action.
        let after = fleet.describe_application(&name)?;
        for status in [view.status, after.status] {
            if status != previous_status && matches!(status, AppStatus::Updating | AppStatus::Autoscaling) {
                summary.restarts += 1;
                if status == AppStatus::Autoscaling {
                    summary.autoscaling_restarts += 1;
                }
            }
            previous_status = status;
        }
        let failed_ops = fleet
            .list_operations(&name)?
            .iter()
            .filter(|o| o.operation == "UpdateApplication" && o.status == OperationStatus::Failed)
            .count();
        summary.failed_updates += (failed_ops - previous_failed_ops) as u32;
        previous_failed_ops = failed_ops;
        let restarts_now = if report.full_restarts_total < previous_restarts {
            report.full_restarts_total
        } else {
            report.full_restarts_total - previous_restarts
        };
        previous_restarts = report.full_restarts_total;
        summary.full_restarts += restarts_now as u32;
        summary.failed_checkpoints += report.failed_in_period;
        summary.kpu_hours += f64::from(report.kpus) / 60.0;
        failures.push_back(report.failed_in_period);
        if failures.len() > window_periods {
            failures.pop_front();
        }
        let down = !report.job_reporting || report.downtime_ms >= PERIOD.as_millis() as f64;
        if down {
            summary.down_minutes += 1;
        }
        let slo_violated = budget.as_ref().map(|b| {
            let max_ms = b.max_checkpoint_duration.as_secs_f64() * 1000.0;
            let failed: u32 = failures.iter().sum();
            down || report.last_checkpoint_duration_ms.is_some_and(|d| d > max_ms)
                || report.in_flight_ms.is_some_and(|d| d > max_ms)
                || failed > b.max_failed_checkpoints
                || b.max_checkpoint_size
                    .is_some_and(|s| report.last_checkpoint_size_bytes.is_some_and(|v| v > s as f64))
        });
        if slo_violated == Some(true)
            && let Some(m) = summary.slo_violation_minutes.as_mut()
        {
            *m += 1;
        }
        rows.push(Row {
            at: now,
            minute,
            status: view.status,
            config: view.running_config(),
            kpus: report.kpus,
            auto_scaling: view.parallelism.auto_scaling_enabled,
            offered_per_second: report.offered_per_second,
            records_in_per_second: report.records_in_per_second,
            millis_behind_latest: report.millis_behind_latest,
            cpu_utilization: report.job_reporting.then_some(report.cpu_utilization_max),
            heap_memory_utilization: report.job_reporting.then_some(report.heap_memory_utilization),
            last_checkpoint_duration_ms: report.last_checkpoint_duration_ms,
            failed_checkpoints: report.failed_in_period,
            state_bytes: report.state_bytes,
            full_restarts: restarts_now as u32,
            slo_violated,
            notes: notes.into_iter().map(|n| n.text).collect(),
        });
        summary.final_config = after.running_config();
        summary.final_auto_scaling = after.parallelism.auto_scaling_enabled;
    }
    let changes: Vec<u64> = scenario
        .load
        .changes(scenario.duration)
        .iter()
        .map(|d| d.as_secs() / 60)
        .collect();
    summary.recovery_minutes = recovery_minutes(&rows, &changes, window_periods);
    Ok(RunReport {
        scenario: scenario.name.clone(),
        policy: policy.name().to_string(),
        seed: scenario.seed,
        budget,
        rows,
        summary,
    })
}

/// Publishes the scenario's `history:` days of past input before `origin`, minute by
/// minute, into the metrics the controller reads the input history from (as the service
/// would have published them while the application ran).
fn record_history(
    fleet: &mut Fleet,
    scenario: &Scenario,
    app: &str,
    origin: Timestamp,
) -> Result<(), SimError> {
    if scenario.history == 0 {
        return Ok(());
    }
    let ids = super::cloudwatch::input_metrics(fleet, app).map_err(|e| match e {
        super::cloudwatch::ObserveError::Describe { source, .. } => SimError::Service(source),
        super::cloudwatch::ObserveError::Metrics { source, .. } => SimError::Service(
            ServiceError::InvalidArgument(format!("the input history of {app}: {source}")),
        ),
    })?;
    let minutes = u64::from(scenario.history) * 24 * 60;
    for id in &ids {
        for back in (1..=minutes).rev() {
            let before = Duration::from_secs(back * 60);
            let at = origin - SignedDuration::from_secs(before.as_secs() as i64);
            fleet.record_service_metric(id, "Count/Second", at, scenario.past_rate(before));
        }
    }
    Ok(())
}

/// The policies `simulate` knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum PolicyChoice {
    /// The project's policy, in Enforce mode, with the scenario's budget.
    CheckpointAutoscaler,
    /// No scaling.
    Static,
    /// The service's own CPU-based autoscaling.
    Builtin,
    /// A naive stepper: +1 parallelism on a breach, -1 when far under, fixed cooldown.
    Threshold,
    /// The clairvoyant offline optimum for the trace (planned knowing the whole trace).
    Optimal,
}

impl PolicyChoice {
    /// The policy for a scenario.
    pub fn build(self, scenario: &Scenario) -> Result<Box<dyn Policy>, SimError> {
        Ok(match self {
            PolicyChoice::CheckpointAutoscaler => Box::new(CheckpointAutoscaler::for_scenario(scenario)?),
            PolicyChoice::Static => Box::new(Static),
            PolicyChoice::Builtin => Box::new(Builtin),
            PolicyChoice::Threshold => Box::new(Threshold::for_scenario(scenario)?),
            PolicyChoice::Optimal => Box::new(Optimal::scripted(scenario)?),
        })
    }
}

/// `simulate`: run a scenario in virtual time under a policy.
#[derive(Clone, Debug, clap::Args)]
pub struct SimulateArgs {
    /// The scenario file (see docs/scenarios.md and examples/scenarios/); with
    /// `--compare`, a file or a directory of scenarios (default: examples/scenarios).
    #[arg(long, value_name = "FILE|DIR", required_unless_present_any = ["compare", "generate"])]
    pub scenario: Option<PathBuf>,
    /// The policy to run.
    #[arg(long, value_enum, default_value = "checkpoint-autoscaler")]
    pub policy: PolicyChoice,
    /// Print the minute-by-minute table.
    #[arg(long)]
    pub timeline: bool,
    /// Draw checkpoint duration against the budget, with load, parallelism and KPUs, to
    /// this SVG file.
    #[arg(long, value_name = "FILE")]
    pub svg: Option<PathBuf>,
    /// Seed instead of the scenario's.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Run every scenario under every policy (checkpoint-autoscaler, static, builtin,
    /// threshold, optimal) on identical traces and seeds, and print one table.
    #[arg(long, conflicts_with_all = ["policy", "timeline"])]
    pub compare: bool,
    /// With `--compare`: also write the results as JSON to this file.
    #[arg(long, value_name = "FILE", requires = "compare")]
    pub json: Option<PathBuf>,
    /// Run every scenario at this CloudWatch metrics level instead of its own
    /// (`application:` `metricsLevel`): `application` is the service's default and what most
    /// applications publish; `task` adds per-task busy and back-pressure times.
    #[arg(long, value_name = "LEVEL", value_parser = parse_metrics_level)]
    pub metrics_level: Option<MetricsLevel>,
    /// The model's platform constants: each scenario's own, or `alternative` (S3 bandwidth
    /// ½×, restart 1.5×, failover 2×, alignment ⅓×, CPU overhead 15%), to check that the
    /// results do not hang on one set of assumptions.
    #[arg(long, value_enum, default_value = "scenario")]
    pub platform: PlatformVariant,
    /// Instead of reading scenarios, generate N unseen ones from `--generate-seed`: families
    /// of real load shapes (one-day and multi-day diurnal, weekly, growth, steps, flash
    /// crowds, noisy and idle jobs) with random parameters, budgets and state, each feasible
    /// within its budget (docs/benchmarks.md, "Unseen workloads"). With `--compare`, compare
    /// every policy on them (with totals by family); with `--write-scenarios DIR`, write them.
    #[arg(long, value_name = "N", conflicts_with = "scenario", value_parser = clap::value_parser!(u32).range(1..))]
    pub generate: Option<u32>,
    /// The seed of `--generate`: the same seed gives the same scenarios (scenario i does not
    /// depend on N).
    #[arg(long, value_name = "SEED", default_value_t = 1, requires = "generate")]
    pub generate_seed: u64,
    /// With `--generate`: write the scenarios to DIR, one `<name>.yaml` each, to inspect,
    /// replay one (`--scenario DIR/<name>.yaml`) or compare them all again (`--compare
    /// --scenario DIR`).
    #[arg(long, value_name = "DIR", requires = "generate")]
    pub write_scenarios: Option<PathBuf>,
}

/// The scenarios of `--generate`, written to `--write-scenarios` if asked.
fn generated_scenarios(args: &SimulateArgs, count: u32) -> anyhow::Result<Vec<Scenario>> {
    let seed = args.generate_seed;
    let scenarios = generate::generate(seed, count as usize)?;
    if let Some(dir) = &args.write_scenarios {
        let origin = format!(
            "generated by `checkpoint-autoscaler simulate --generate {count} --generate-seed {seed}`"
        );
        let files = generate::write_scenarios(dir, &scenarios, &origin)?;
        println!("{} scenario(s) written to {}", files.len(), dir.display());
    }
    Ok(scenarios)
}

/// `--metrics-level`: the API's levels, in any case.
fn parse_metrics_level(s: &str) -> Result<MetricsLevel, String> {
    MetricsLevel::parse(&s.to_ascii_uppercase()).ok_or_else(|| {
        let levels: Vec<String> = MetricsLevel::ALL
            .iter()
            .map(|l| l.as_str().to_ascii_lowercase())
            .collect();
        format!("unknown metrics level {s:?}: one of {}", levels.join(", "))
    })
}

/// `simulate --compare`: the table of every scenario under every policy.
fn compare_command(args: SimulateArgs) -> anyhow::Result<ExitCode> {
    let mut scenarios = match args.generate {
        Some(count) => {
            println!("{count} generated scenario(s), seed {}", args.generate_seed);
            generated_scenarios(&args, count)?
        }
        None => {
            let dir = args
                .scenario
                .clone()
                .unwrap_or_else(|| PathBuf::from("examples/scenarios"));
            let files =
                compare::scenario_files(&dir).with_context(|| format!("reading {}", dir.display()))?;
            if files.is_empty() {
                anyhow::bail!("no scenario files (*.yaml) in {}", dir.display());
            }
            files
                .iter()
                .map(|f| Scenario::load(f))
                .collect::<Result<Vec<_>, _>>()?
        }
    };
    if let Some(level) = args.metrics_level {
        for scenario in &mut scenarios {
            scenario.application.metrics_level = level;
        }
        println!("metrics level: {level} for every scenario");
    }
    if args.platform != PlatformVariant::Scenario {
        for scenario in &mut scenarios {
            scenario.platform = scenario.platform.varied(args.platform);
        }
        println!("platform constants: {:?} for every scenario", args.platform);
    }
    let started = std::time::Instant::now();
    let comparison = compare::compare(&scenarios, args.seed)?;
    print!("{}", compare::format_table(&comparison));
    // Generated scenarios (from --generate or written by it): the totals by family too (the
    // family is in each name).
    let families = Some(compare::group_totals(&comparison, |name| {
        Family::of_scenario(name).map(|f| f.name().to_string())
    }))
    .filter(|groups| !groups.is_empty());
    if let Some(families) = &families {
        println!();
        print!(
            "{}",
            compare::format_groups(
                families,
                compare::choice_name(PolicyChoice::CheckpointAutoscaler),
                "builtin"
            )
        );
    }
    println!(
        "({} scenario(s) × {} policies in {:.1} s)",
        scenarios.len(),
        compare::POLICIES.len(),
        started.elapsed().as_secs_f64()
    );
    if let Some(path) = &args.json {
        #[derive(Serialize)]
        struct WithFamilies<'a> {
            #[serde(flatten)]
            comparison: &'a compare::Comparison,
            #[serde(skip_serializing_if = "Option::is_none")]
            families: Option<&'a Vec<compare::GroupTotals>>,
        }
        let text = serde_json::to_string_pretty(&WithFamilies {
            comparison: &comparison,
            families: families.as_ref(),
        })?;
        std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
        println!("results written to {}", path.display());
    }
    if let Some(path) = &args.svg {
        chart::write_comparison(&comparison, path).with_context(|| format!("writing {}", path.display()))?;
        println!("chart written to {}", path.display());
    }
    Ok(ExitCode::SUCCESS)
}

/// Runs the `simulate` subcommand.
pub fn run_command(args: SimulateArgs) -> anyhow::Result<ExitCode> {
    if args.compare {
        return compare_command(args);
    }
    if let Some(count) = args.generate {
        if args.write_scenarios.is_none() {
            anyhow::bail!(
                "--generate N needs --compare (to compare on them) or --write-scenarios DIR (to write them)"
            );
        }
        generated_scenarios(&args, count)?;
        return Ok(ExitCode::SUCCESS);
    }
    let Some(path) = &args.scenario else {
        anyhow::bail!("--scenario FILE is required without --compare");
    };
    let mut scenario = Scenario::load(path)?;
    if let Some(seed) = args.seed {
        scenario.seed = seed;
    }
    if let Some(level) = args.metrics_level {
        scenario.application.metrics_level = level;
    }
    scenario.platform = scenario.platform.varied(args.platform);
    if let Some(spec) = &scenario.budget
        && spec.mode != Mode::Enforce
    {
        eprintln!(
            "note: the budget's mode is {:?}; simulate runs the policy as in Enforce mode",
            spec.mode
        );
    }
    let mut policy = args.policy.build(&scenario)?;
    let started = std::time::Instant::now();
    let report = run(&scenario, policy.as_mut(), None)?;
    let elapsed = started.elapsed();
    if args.timeline {
        print!("{}", format_timeline(&report));
        println!();
    }
    print!("{}", format_summary(&report, elapsed));
    if let Some(path) = &args.svg {
        chart::write_svg(&report, path).with_context(|| format!("writing {}", path.display()))?;
        println!("chart written to {}", path.display());
    }
    Ok(ExitCode::SUCCESS)
}

/// The summary as printed.
pub fn format_summary(report: &RunReport, elapsed: std::time::Duration) -> String {
    let s = &report.summary;
    let mut out = String::new();
    let simulated = human(Duration::from_secs(s.minutes * 60));
    out += &format!(
        "scenario {} · policy {} · {simulated} simulated in {} ms (seed {})\n",
        report.scenario,
        report.policy,
        elapsed.as_millis(),
        report.seed
    );
    if let Some(b) = &report.budget {
        out += &format!(
            "budget: lastCheckpointDuration <= {}, at most {} failed checkpoint(s) per {}\n",
            human(b.max_checkpoint_duration),
            b.max_failed_checkpoints,
            human(b.window)
        );
    }
    let violations = s
        .slo_violation_minutes
        .map_or("n/a (no budget)".to_string(), |m| {
            format!("{m} of {} ({} with the job down)", s.minutes, s.down_minutes)
        });
    out += &format!("  SLO-violation minutes  {violations}\n");
    out += &format!("  KPU-hours              {:.1}\n", s.kpu_hours);
    out += &format!(
        "  restarts               {} ({} by the service's autoscaling; {} failed update(s))\n",
        s.restarts, s.autoscaling_restarts, s.failed_updates
    );
    if !s.recovery_minutes.is_empty() {
        let each: Vec<String> = s
            .recovery_minutes
            .iter()
            .map(|m| m.map_or("not recovered".to_string(), |m| format!("{m} min")))
            .collect();
        out += &format!("  recovery after change  {}\n", each.join(", "));
    }
    out += &format!("  job failovers          {} (fullRestarts)\n", s.full_restarts);
    out += &format!("  failed checkpoints     {}\n", s.failed_checkpoints);
    out += &format!(
        "  final configuration    {}, service autoscaling {}\n",
        s.final_config,
        if s.final_auto_scaling { "on" } else { "off" }
    );
    out
}

/// The minute-by-minute table.
pub fn format_timeline(report: &RunReport) -> String {
    let mut out = format!(
        "{:>6} {:<12} {:>5} {:>4} {:>9} {:>9} {:>8} {:>5} {:>5} {:>9} {:>4} {:>10} {:>3}  notes\n",
        "min",
        "status",
        "par",
        "kpu",
        "offered/s",
        "in/s",
        "lag",
        "cpu%",
        "heap%",
        "ckpt",
        "fail",
        "state",
        "slo"
    );
    for r in &report.rows {
        let pct = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.0}"));
        let ckpt = r
            .last_checkpoint_duration_ms
            .map_or("-".to_string(), |ms| human(Duration::from_secs_f64(ms / 1000.0)));
        let slo = match r.slo_violated {
            Some(true) => "✗",
            Some(false) => "✓",
            None => "",
        };
        out += &format!(
            "{:>6} {:<12} {:>5} {:>4} {:>9.0} {:>9.0} {:>8} {:>5} {:>5} {:>9} {:>4} {:>10} {:>3}  {}\n",
            r.minute,
            r.status.as_str(),
            format!("{}/{}", r.config.parallelism, r.config.parallelism_per_kpu),
            r.kpus,
            r.offered_per_second,
            r.records_in_per_second,
            human(Duration::from_secs_f64(r.millis_behind_latest / 1000.0)),
            pct(r.cpu_utilization),
            pct(r.heap_memory_utilization),
            ckpt,
            r.failed_checkpoints,
            crate::policy::format_bytes(r.state_bytes),
            slo,
            r.notes.join(" | ")
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(minute: u64, violated: bool) -> Row {
        Row {
            at: Timestamp::UNIX_EPOCH,
            minute,
            status: AppStatus::Running,
            config: AppConfig::new(1, 1),
            kpus: 1,
            auto_scaling: false,
            offered_per_second: 0.0,
            records_in_per_second: 0.0,
            millis_behind_latest: 0.0,
            cpu_utilization: None,
            heap_memory_utilization: None,
            last_checkpoint_duration_ms: None,
            failed_checkpoints: 0,
            state_bytes: 0.0,
            full_restarts: 0,
            slo_violated: Some(violated),
            notes: Vec::new(),
        }
    }

    #[test]
    fn recovery_counts_minutes_until_a_whole_window_meets_the_budget() {
        // Change at minute 2: violated for 3 minutes, a 1-minute blip, then fine.
        let pattern = [
            false, false, true, true, true, false, true, false, false, false, false, true, true,
        ];
        let rows: Vec<Row> = pattern
            .iter()
            .enumerate()
            .map(|(i, v)| row(i as u64 + 1, *v))
            .collect();
        assert_eq!(recovery_minutes(&rows, &[2], 3), vec![Some(5)]);
        assert_eq!(
            recovery_minutes(&rows, &[0], 2),
            vec![Some(0)],
            "never broken: recovered at once"
        );
        assert_eq!(
            recovery_minutes(&rows, &[2, 6], 3),
            vec![None, Some(1)],
            "cut short by the next change"
        );
        assert_eq!(
            recovery_minutes(&rows, &[11], 1),
            vec![None],
            "not recovered by the end"
        );
    }
}
