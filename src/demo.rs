//! `checkpoint-autoscaler demo`: the controller restoring a breached checkpoint budget, in
//! about a minute, with no cluster and no AWS account.
//!
//! It starts the AWS emulator in-process on a free loopback port with a scenario (by
//! default `examples/scenarios/step-up.yaml`: the load doubles and 4 KPUs are no longer
//! enough), and runs the controller's own reconcile core against it — the real SDK clients
//! over HTTP, the real policy, the status the controller would write (kept in memory
//! instead of in a cluster) — one reconcile per emulated minute. The emulated clock moves
//! in whole minutes under the demo's control, so a run is reproducible; `--speed` only sets
//! how fast it is shown.

use std::{
    io::Write,
    path::{Path, PathBuf},
    process::ExitCode,
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use checkpoint_autoscaler_testkit::rig::{self, Instrumented, Keys, Tally};
use clap::Args;
use jiff::Timestamp;
use plotters::prelude::*;

use crate::{
    aws::{AwsSettings, MetricsMode, UpdateRequest},
    controller::{
        reconcile::{Act, BudgetView},
        status::{SCALING, SLO_MET},
        store::{BudgetKey, MemoryStore, Notice},
    },
    crd::{CheckpointBudget, CheckpointBudgetSpec, CheckpointBudgetStatus, format_duration},
    emulator::{self, EmulatorConfig, calllog::CallFilter},
    policy::{AppConfig, AppStatus, duration::human_ms, median},
    sim::Scenario,
    telemetry::{self, LogFormat},
};

/// The default scenario, embedded so `cargo run -- demo` works from any directory.
const STEP_UP: &str = include_str!("../examples/scenarios/step-up.yaml");
/// The default scenario of `demo --backend flink`.
const FLINK_STEP_UP: &str = include_str!("../examples/flink/demo.yaml");

/// Consecutive evaluations with the SLO met that count as "restored".
const RESTORED_AFTER: u32 = 3;

/// Minutes before a scaling that came ahead of any breach whose durations the summary shows
/// as "before".
const KEPT_BEFORE_MINUTES: i64 = 5;
/// `demo --backend flink`: minutes of holding after a breach that end a run which cannot
/// be restored (see [`FlinkDemo::settle_minutes`]).
const FLINK_SETTLE_MINUTES: u32 = 15;

/// `checkpoint-autoscaler demo`.
#[derive(Debug, Clone, Args)]
pub struct DemoArgs {
    /// A scenario file (default: the embedded examples/scenarios/step-up.yaml).
    #[arg(long)]
    pub scenario: Option<PathBuf>,
    /// A CheckpointBudget manifest (default: the budget embedded in the scenario).
    #[arg(long)]
    pub budget: Option<PathBuf>,
    /// Emulated minutes per real second while something happens (quiet minutes before
    /// the budget is first breached go four times faster); 0 runs as fast as possible.
    #[arg(long, default_value_t = 1.0)]
    pub speed: f64,
    /// Where to write the SVG chart.
    #[arg(long, default_value = "checkpoint-autoscaler-demo.svg")]
    pub svg: PathBuf,
    /// The emulator's backend: the model (virtual time), or a real Flink job on a loopback
    /// cluster (default scenario: examples/flink/demo.yaml; needs scripts/install-flink.sh).
    #[arg(long, value_enum, default_value_t = emulator::BackendKind::Model)]
    pub backend: emulator::BackendKind,
    /// The Flink distribution for `--backend flink` (default: `$FLINK_HOME`, else `.flink/`).
    #[arg(long, value_name = "DIR")]
    pub flink_home: Option<PathBuf>,
    /// With `--backend flink`: real time per emulated minute (one metric period).
    /// NB: the policy's warm-up after a restart is counted in periods; below about 10 s a
    /// restored JVM's first slow checkpoints outlast it.
    #[arg(long, default_value = "10s", value_parser = crate::policy::duration::parse)]
    pub period: Duration,
    /// With `--backend flink`: a rise of the scenario's rate goes to this multiple of what
    /// the starting configuration was measured to process on this machine (0: the
    /// scenario's own rates).
    #[arg(long, default_value_t = 1.5)]
    pub adapt_load: f64,
}

/// How `demo --backend flink` runs: the emulated minutes pass in real time.
#[derive(Clone, Debug)]
pub struct FlinkDemo {
    /// The installed distribution.
    pub home: crate::flink::FlinkHome,
    /// Real time per emulated minute.
    pub period: Duration,
    /// End the run once the budget was breached and the controller has then held, with
    /// the application running and nothing in flight, for this many consecutive minutes
    /// (it will not act again: a refused update, a cause scaling cannot fix, a bound
    /// reached). `None` runs to the restore or the scenario's end.
    pub settle_minutes: Option<u32>,
    /// Size each rise of the scenario's rate to this multiple of what the starting
    /// configuration was measured to process (records/s per busy second), instead of the
    /// scenario's absolute rate: the same story on an idle fast machine and on a small busy
    /// one. Decreases and the initial rate stay as written. `None`: the scenario's rates.
    pub adapt_load: Option<f64>,
}

/// One emulated minute of the run, for the chart and the summary.
#[derive(Clone, Debug, PartialEq)]
pub struct Minute {
    /// Minutes since the scenario started.
    pub minute: i64,
    /// The application's status.
    pub status: AppStatus,
    /// The running configuration.
    pub config: AppConfig,
    /// The job's latest checkpoint duration (ms), as the service reports it.
    pub checkpoint_ms: Option<f64>,
    /// KPUs billed.
    pub kpus: u32,
    /// Whether the controller judged the SLO met over its window.
    pub slo_met: Option<bool>,
}

/// A scaling the demo's controller asked for.
#[derive(Clone, Debug, PartialEq)]
pub struct Scaling {
    /// Minute of the request.
    pub minute: i64,
    /// Configuration before.
    pub from: AppConfig,
    /// Configuration asked for.
    pub to: AppConfig,
    /// The policy's reason.
    pub reason: String,
}

/// What a demo run showed.
#[derive(Clone, Debug)]
pub struct DemoOutcome {
    /// Whether the budget was breached and then restored.
    pub restored: bool,
    /// Minute of the first evaluation with the SLO not met.
    pub breached_at: Option<i64>,
    /// Minute from which the SLO stayed met.
    pub restored_at: Option<i64>,
    /// Every scaling asked for, in order.
    pub scalings: Vec<Scaling>,
    /// Every `UpdateApplication` request the SDK client sent.
    pub updates: Vec<UpdateRequest>,
    /// `UpdateApplication` calls the emulator received, and how many it refused.
    pub update_calls: usize,
    /// Of which refused (any error status).
    pub update_calls_refused: usize,
    /// KPUs at the start and at the end.
    pub kpus_before: u32,
    /// KPUs at the end.
    pub kpus_after: u32,
    /// The timeline.
    pub minutes: Vec<Minute>,
    /// The budget's `maxCheckpointDuration`.
    pub budget: Duration,
    /// The budget's `parallelism.maxParallelism`.
    pub max_parallelism: u32,
    /// The scenario's name.
    pub scenario: String,
    /// The final status, as the controller would have written it.
    pub status: Option<CheckpointBudgetStatus>,
    /// The Events the controller published, in order.
    pub events: Vec<Notice>,
    /// Real time the run took.
    pub wall: Duration,
}

/// How soon, once the controller's new configuration runs, a checkpoint within budget must
/// complete for the recovery to be credited to it: the checkpoints of a restored job stay
/// slow while it catches up on the backlog its restart left (17 minutes after a 10-minute
/// restart in the step-up demo); a fault that scaling did not fix keeps them slow until it
/// ends by itself, typically much later.
pub const CREDITED_WITHIN_MINUTES: i64 = 30;

impl DemoOutcome {
    /// The minute of the controller's scaling the restore is credited to: the last one
    /// asked for between the breach and the restore, when a checkpoint within budget
    /// completed within [`CREDITED_WITHIN_MINUTES`] of the new configuration running. `None` when the budget recovered
    /// with no scaling of the controller's in between, or when checkpoints kept breaching
    /// under the new configuration until the cause ended by itself (a fault that scaling
    /// did not fix).
    pub fn restored_by(&self) -> Option<i64> {
        let (breached, restored) = (self.breached_at?, self.restored_at?);
        let last = self
            .scalings
            .iter()
            .filter(|s| s.minute >= breached && s.minute <= restored)
            .max_by_key(|s| s.minute)?;
        let budget_ms = self.budget.as_secs_f64() * 1000.0;
        let after: Vec<&Minute> = self.minutes.iter().filter(|m| m.minute > last.minute).collect();
        // The new configuration runs from the end of the restart the scaling caused.
        let running_from = match after.iter().position(|m| m.status != AppStatus::Running) {
            Some(i) => after[i..].iter().find(|m| m.status == AppStatus::Running)?.minute,
            None => after.first()?.minute,
        };
        let fixed_at = after
            .iter()
            .find(|m| {
                m.minute >= running_from
                    && m.status == AppStatus::Running
                    && m.checkpoint_ms.is_some_and(|d| d <= budget_ms)
            })?
            .minute;
        (fixed_at - running_from <= CREDITED_WITHIN_MINUTES).then_some(last.minute)
    }

    /// Minutes from the breach to the restore.
    pub fn minutes_to_restore(&self) -> Option<i64> {
        Some(self.restored_at? - self.breached_at?)
    }

    /// Checkpoint durations (ms) from the breach to the first scaling or, when the controller
    /// scaled before any breach, over the [`KEPT_BEFORE_MINUTES`] minutes up to it.
    pub fn durations_before(&self) -> Vec<f64> {
        let Some(first) = self.scalings.first() else {
            return Vec::new();
        };
        let from = self.breached_at.unwrap_or(first.minute - KEPT_BEFORE_MINUTES);
        self.durations(|m| m.minute >= from && m.minute <= first.minute)
    }

    /// Whether the controller scaled before any breach, the application runs what it last
    /// asked for, and the budget held throughout.
    pub fn kept(&self) -> bool {
        let last = self.scalings.last().map(|s| s.to);
        self.breached_at.is_none() && last.is_some() && last == self.minutes.last().map(|m| m.config)
    }

    /// Checkpoint durations (ms) once the last scaling's configuration runs and is judged
    /// again (from the restore; without one, every minute at that configuration after it).
    pub fn durations_after(&self) -> Vec<f64> {
        let Some(last) = self.scalings.last() else {
            return Vec::new();
        };
        let from = self.restored_at.unwrap_or(last.minute);
        self.durations(|m| {
            m.minute > last.minute
                && m.minute >= from
                && m.config == last.to
                && m.status == AppStatus::Running
        })
    }

    fn durations(&self, keep: impl Fn(&Minute) -> bool) -> Vec<f64> {
        self.minutes
            .iter()
            .filter(|m| keep(m))
            .filter_map(|m| m.checkpoint_ms)
            .collect()
    }
}

/// Runs the `demo` subcommand.
pub fn run(args: DemoArgs) -> anyhow::Result<ExitCode> {
    // The demo prints its own progress; logs only for warnings unless RUST_LOG says more.
    if std::env::var_os("RUST_LOG").is_none() {
        // SAFETY: single-threaded here, before the runtime and any other thread start.
        unsafe { std::env::set_var("RUST_LOG", "warn") };
    }
    telemetry::init(LogFormat::Text);
    let flink = match args.backend {
        emulator::BackendKind::Model => None,
        emulator::BackendKind::Flink => Some(FlinkDemo {
            home: crate::flink::FlinkHome::locate(args.flink_home.as_deref())?,
            period: args.period,
            settle_minutes: Some(FLINK_SETTLE_MINUTES),
            adapt_load: (args.adapt_load > 0.0).then_some(args.adapt_load),
        }),
    };
    let scenario = match (&args.scenario, &flink) {
        (Some(path), _) => Scenario::load(path).with_context(|| format!("loading {}", path.display()))?,
        (None, None) => Scenario::from_yaml(STEP_UP, "examples/scenarios/step-up.yaml")?,
        (None, Some(_)) => Scenario::from_yaml(FLINK_STEP_UP, "examples/flink/demo.yaml")?,
    };
    let budget = load_budget(args.budget.as_deref(), &scenario)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let mut out = std::io::stdout().lock();
    let outcome = runtime.block_on(run_demo_with(&scenario, &budget, args.speed, flink, &mut out))?;
    write_chart(&outcome, &args.svg).with_context(|| format!("writing {}", args.svg.display()))?;
    summarize(&outcome, &args.svg, &mut out)?;
    Ok(if outcome.restored || outcome.kept() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// The budget: a manifest file, or the one the scenario carries.
pub fn load_budget(path: Option<&Path>, scenario: &Scenario) -> anyhow::Result<CheckpointBudget> {
    match path {
        Some(path) => {
            let text =
                std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
            let budget: CheckpointBudget =
                serde_yaml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
            Ok(budget)
        }
        None => {
            let Some(spec) = scenario.budget.clone() else {
                bail!(
                    "scenario {} carries no budget; pass one with --budget FILE",
                    scenario.name
                );
            };
            let mut budget = CheckpointBudget::new(&scenario.application.name, spec);
            budget.metadata.namespace = Some("default".into());
            Ok(budget)
        }
    }
}

/// Runs the scenario under the controller and reports. `speed` is emulated minutes per real
/// second (0: no pauses); progress lines go to `out`.
pub async fn run_demo(
    scenario: &Scenario,
    budget: &CheckpointBudget,
    speed: f64,
    out: &mut dyn Write,
) -> anyhow::Result<DemoOutcome> {
    run_demo_with(scenario, budget, speed, None, out).await
}

/// [`run_demo`] on a chosen backend: with `flink`, the application is a real Flink job
/// (the scenario's initial rate, keys, value size, maxParallelism and checkpointing), the
/// emulated minutes pass in real time, and a change of the scenario's rate restarts the
/// job's source at the new rate from a savepoint.
pub async fn run_demo_with(
    scenario: &Scenario,
    budget: &CheckpointBudget,
    speed: f64,
    flink: Option<FlinkDemo>,
    out: &mut dyn Write,
) -> anyhow::Result<DemoOutcome> {
    let started = Instant::now();
    let mut spec: CheckpointBudgetSpec = budget.spec.clone();
    let typed = spec.to_budget().context("the demo budget is invalid")?;
    if spec.application.role_arn.take().is_some() {
        writeln!(
            out,
            "note: the demo ignores spec.application.roleArn (the emulator has no STS)"
        )?;
    }
    let namespace = budget
        .metadata
        .namespace
        .clone()
        .unwrap_or_else(|| "default".into());
    let name = budget
        .metadata
        .name
        .clone()
        .unwrap_or_else(|| scenario.application.name.clone());
    let app = spec.application.name.clone();
    let region = spec
        .application
        .region
        .clone()
        .unwrap_or_else(|| "us-east-1".into());

    // The emulator, with the clock under our control.
    let start = scenario.start_time();
    let config = EmulatorConfig {
        period: flink.as_ref().map(|f| f.period),
        ..rig::emulator_config(scenario, &region)
    };
    let emu = match &flink {
        None => emulator::serve(config).await,
        Some(f) => {
            let options = crate::flink::BackendOptions {
                seed: scenario.seed,
                region: region.clone(),
                ..crate::flink::BackendOptions::default()
            };
            let fleet = crate::flink::FlinkFleet::new(f.home.clone(), options, start)?;
            emulator::serve_backend(config, Box::new(fleet)).await
        }
    }
    .context("starting the emulator")?;
    let state = emu.state().clone();
    // Under the default tenancy policy the application must be tagged for the namespace.
    let view = rig::add_application(&state, scenario, Some(&app), &namespace)?;

    // The real SDK clients, with static test credentials, pointed at the emulator, and the
    // controller's core over them, its update requests recorded.
    let settings = AwsSettings {
        region: Some(region.clone()),
        ..AwsSettings::default()
    };
    let clients = rig::clients(&Keys::TEST, &region, emu.endpoint_url(), settings).await;
    let tally = Arc::new(Tally::default());
    let core = Instrumented::core(&rig::reconciler(clients, MetricsMode::default()), &tally);
    let store = MemoryStore::default();
    let key = BudgetKey::new(namespace.clone(), name.clone());

    let budget_ms = typed.max_checkpoint_duration.as_millis() as f64;
    writeln!(
        out,
        "checkpoint-autoscaler demo: scenario {} — {}",
        scenario.name,
        scenario.description.as_deref().unwrap_or("")
    )?;
    writeln!(
        out,
        "budget {namespace}/{name}: checkpoints within {} over {}, parallelism {}..{} (maxParallelism {}), \
         perKpu {}..{}{}, mode {:?}",
        format_duration(typed.max_checkpoint_duration),
        format_duration(typed.window),
        typed.parallelism_min,
        typed.parallelism_max,
        typed.max_parallelism,
        typed.per_kpu_min,
        typed.per_kpu_max,
        typed
            .max_kpus
            .map(|k| format!(", at most {k} KPUs"))
            .unwrap_or_default(),
        spec.mode,
    )?;
    writeln!(
        out,
        "emulator on {} (one reconcile per emulated minute{})\n",
        emu.endpoint_url(),
        flink
            .as_ref()
            .map(|f| format!("; a real Flink job, one minute per {:?} of real time", f.period))
            .unwrap_or_default()
    )?;

    if flink.is_some()
        && (scenario.faults.slow_external_call.is_some() || scenario.faults.transient_s3_errors.is_some())
    {
        writeln!(
            out,
            "note: the Flink backend reproduces faults.serializerMismatch only (as checkpoints that \
             fail at once); slowExternalCall and transientS3Errors are ignored"
        )?;
    }

    // Let a full window of metrics exist before the first evaluation (on the Flink backend
    // the job is starting meanwhile: the policy waits for its metrics).
    let window_minutes = typed.window.as_secs().div_ceil(60) as i64;
    let window_minutes = if flink.is_some() { 1 } else { window_minutes };
    state.advance(Duration::from_secs(60 * (window_minutes as u64 - 1)));
    let last_minute = scenario.duration.as_secs().div_ceil(60) as i64;
    let pause = (speed > 0.0).then(|| Duration::from_secs_f64(1.0 / speed));

    let kpus_before = view.running_config().kpus();
    let mut minutes = Vec::new();
    let mut scalings = Vec::new();
    let mut breached_at = None;
    let mut restored_at = None;
    let mut met_run = 0u32;
    let mut last_reason = String::new();
    // Consecutive minutes the controller held after a breach (see `settle_minutes`).
    let mut held = 0u32;
    // What the starting configuration processes per busy second (see `adapt_load`), and
    // the rates applied for the scenario's raised ones.
    let mut capacity: Vec<f64> = Vec::new();
    let mut adapted: Vec<(u64, u64)> = Vec::new();
    // The first minute the application ran (the Flink backend's scenario clock).
    let mut running_since: Option<i64> = None;
    for minute in window_minutes..=last_minute {
        let tick = Instant::now();
        match &flink {
            None => state.advance(Duration::from_secs(60)),
            Some(f) => {
                // Real time: wait for the emulated minute, and apply the scenario's load.
                let due = start + jiff::SignedDuration::from_secs(60 * minute);
                while state.virtual_now() < due {
                    tokio::time::sleep(f.period / 10).await;
                }
                // Scenario time starts when the job first runs (a cluster takes a while).
                let offset = running_since.map_or(0, |since| (minute - since).max(0) as u64);
                let offset = Duration::from_secs(60 * offset);
                let written = (scenario.load.rate_at(offset).round() as u64).max(1);
                // Before any change: how much the starting configuration processes.
                if running_since.is_some() && adapted.is_empty() && scalings.is_empty() {
                    // Two periods back: the newest whole period began before `now - 1m`.
                    let since = now_minus(state.virtual_now(), 120);
                    let last = |metric: &str| {
                        state.with_fleet(|b| {
                            b.metric_data(&crate::sim::MetricQuery {
                                namespace: crate::sim::fleet::NAMESPACE.into(),
                                metric_name: metric.into(),
                                dimensions: vec![(crate::sim::fleet::DIMENSION.into(), app.clone())],
                                start: since,
                                end: state.virtual_now(),
                                period: Duration::from_secs(60),
                                stat: "Average".into(),
                            })
                            .last()
                            .map(|(_, v)| *v)
                        })
                    };
                    // Busy time is published per task only (and not at all at the
                    // APPLICATION metrics level): read Flink's own sample.
                    let busy = state.with_fleet(|b| {
                        b.as_flink()
                            .and_then(|f| f.sampled_busy_time(&app).ok().flatten())
                    });
                    if let (Some(busy), Some(records)) = (busy, last("numRecordsInPerSecond"))
                        && busy >= 100.0
                    {
                        capacity.push(records * 1000.0 / busy);
                    }
                }
                let first = scenario.load.rate_at(Duration::ZERO).round() as u64;
                // The latest estimates: the first minutes of a job run cold (JIT, RocksDB).
                let recent = &capacity[capacity.len().saturating_sub(3)..];
                let rate = match (f.adapt_load, median(recent)) {
                    (_, _) if written <= first => written,
                    (Some(multiple), Some(measured)) => match adapted.iter().find(|(w, _)| *w == written) {
                        Some((_, applied)) => *applied,
                        None => {
                            let applied = (measured * multiple).round().max(1.0) as u64;
                            writeln!(
                                out,
                                "load step: the scenario's {written} records/s becomes {applied} records/s \
                                 ({multiple}× the {measured:.0} records/s that {}×{} processes per busy \
                                 second on this machine; --adapt-load 0 keeps the scenario's rates)",
                                view.running_config().parallelism,
                                view.running_config().parallelism_per_kpu,
                            )?;
                            adapted.push((written, applied));
                            applied
                        }
                    },
                    _ => written,
                };
                // Checkpoints that fail whatever the resources: the scenario's serializer
                // mismatch, reproduced as a checkpoint storage that refuses them.
                let failing = running_since.is_some()
                    && scenario
                        .faults
                        .serializer_mismatch
                        .as_ref()
                        .is_some_and(|w| w.contains(offset));
                state
                    .with_fleet(|b| {
                        let Some(fleet) = b.as_flink() else { return Ok(()) };
                        if fleet.checkpoints_failing(&app)? != failing {
                            fleet.set_checkpoints_failing(&app, failing)?;
                        }
                        let mut workload = fleet.workload(&app)?;
                        if workload.records_per_second == rate.max(1) {
                            return Ok(());
                        }
                        workload.records_per_second = rate.max(1);
                        fleet.set_workload(&app, workload)
                    })
                    .map_err(|e| anyhow::anyhow!("changing the load of {app}: {e}"))?;
            }
        }
        let now: Timestamp = state.virtual_now();
        let (prior, resource_version) = store.get(&key).unzip();
        let budget_view = BudgetView {
            key: key.clone(),
            generation: Some(1),
            spec: &spec,
            status: prior.as_ref(),
            resource_version,
        };
        let report = core.reconcile(&budget_view, &store, now).await;
        let status = store.status(&key);
        let truth = state.with_fleet(|f| {
            let app_view = f.describe_application(&app).ok();
            let period = f.as_model().and_then(|m| m.last_period(&app)).cloned();
            // The Flink backend: the latest datapoint it published.
            let published = f
                .metric_data(&crate::sim::MetricQuery {
                    namespace: crate::sim::fleet::NAMESPACE.into(),
                    metric_name: "lastCheckpointDuration".into(),
                    dimensions: vec![(crate::sim::fleet::DIMENSION.into(), app.clone())],
                    start: now - jiff::SignedDuration::from_secs(120),
                    end: now,
                    period: Duration::from_secs(60),
                    stat: "Maximum".into(),
                })
                .last()
                .map(|(_, v)| *v);
            (app_view, period, published)
        });
        let (Some(app_view), period, published) = truth else {
            bail!("the emulated application {app} disappeared");
        };
        if app_view.status == AppStatus::Running && running_since.is_none() {
            running_since = Some(minute);
        }
        let config = app_view.running_config();
        let checkpoint_ms = match &period {
            Some(p) => p.last_checkpoint_duration_ms,
            None => published,
        };
        let slo_met =
            status
                .as_ref()
                .and_then(|s| s.condition(SLO_MET))
                .and_then(|c| match c.status.as_str() {
                    "True" => Some(true),
                    "False" => Some(false),
                    _ => None,
                });
        minutes.push(Minute {
            minute,
            status: app_view.status,
            config,
            checkpoint_ms,
            kpus: period.as_ref().map_or(config.kpus(), |p| p.kpus),
            slo_met,
        });

        // One line per minute: what the application does, its checkpoints against the
        // budget, and what the controller decided (in words when the decision changes).
        let check = match checkpoint_ms {
            Some(ms) => format!("{:>6}", human_ms(ms)),
            None => "     –".into(),
        };
        let verdict = match slo_met {
            Some(true) => "ok  ",
            Some(false) => "OVER",
            None => "  ? ",
        };
        let mut line = format!(
            "+{minute:>3}m  {:<9} {:>2}×{} = {:>2} KPU  checkpoint {check} / {}  {verdict}",
            app_view.status.as_str(),
            config.parallelism,
            config.parallelism_per_kpu,
            config.kpus(),
            human_ms(budget_ms),
        );
        match &report {
            Ok(report) => {
                let scaling = report
                    .status
                    .condition(SCALING)
                    .map(|c| (c.reason.clone(), c.message.clone()))
                    .unwrap_or_default();
                match &report.act {
                    Act::Scaled { to, .. } => {
                        scalings.push(Scaling {
                            minute,
                            from: config,
                            to: *to,
                            reason: scaling.0.clone(),
                        });
                        line.push_str(&format!("  ▶ {}: {}", scaling.0, scaling.1));
                    }
                    Act::Following { .. } => line.push_str("  … update in progress"),
                    Act::Refused | Act::Failed => line.push_str(&format!("  ✗ {}: {}", scaling.0, scaling.1)),
                    Act::None if scaling.0 != last_reason => {
                        line.push_str(&format!("  {}: {}", scaling.0, scaling.1));
                    }
                    Act::None => {}
                }
                for notice in report.notices.iter().filter(|n| n.reason.starts_with("Scaling")) {
                    if !matches!(report.act, Act::Scaled { .. }) {
                        line.push_str(&format!("  [{}]", notice.reason));
                    }
                }
                last_reason = scaling.0;
            }
            Err(e) => line.push_str(&format!("  error: {e}")),
        }
        writeln!(out, "{line}")?;
        out.flush()?;

        match slo_met {
            Some(false) => {
                breached_at.get_or_insert(minute);
                met_run = 0;
                restored_at = None;
            }
            // A breach that passed before any scaling (e.g. the slow first checkpoints of a
            // job warming up) is not the one the controller restores.
            Some(true)
                if scalings.is_empty()
                    && report
                        .as_ref()
                        .is_ok_and(|r| !matches!(r.act, Act::Scaled { .. })) =>
            {
                breached_at = None;
            }
            Some(true) if breached_at.is_some() => {
                met_run += 1;
                restored_at.get_or_insert(minute);
                let settled = app_view.status == AppStatus::Running
                    && status.as_ref().is_some_and(|s| s.operation_in_flight.is_none());
                if met_run >= RESTORED_AFTER && settled && !scalings.is_empty() {
                    break;
                }
            }
            // The controller scaled before the checkpoints breached the budget (it saw the
            // capacity run out first): the run ends once the new configuration has held the
            // budget, settled, for as long as a restore must.
            Some(true) if !scalings.is_empty() => {
                let settled = app_view.status == AppStatus::Running
                    && status.as_ref().is_some_and(|s| s.operation_in_flight.is_none())
                    && scalings.last().is_some_and(|s| s.to == config);
                met_run = if settled { met_run + 1 } else { 0 };
                if met_run >= RESTORED_AFTER {
                    break;
                }
            }
            _ => {}
        }
        // Holding on a judgement (not for want of data) with nothing in flight.
        let holding = breached_at.is_some()
            && app_view.status == AppStatus::Running
            && status.as_ref().is_some_and(|s| {
                s.operation_in_flight.is_none()
                    && s.diagnosis
                        .as_ref()
                        .is_some_and(|d| d.cause != crate::policy::Cause::InsufficientData)
            })
            && report.as_ref().is_ok_and(|r| matches!(r.act, Act::None));
        held = if holding { held + 1 } else { 0 };
        if flink
            .as_ref()
            .and_then(|f| f.settle_minutes)
            .is_some_and(|n| held >= n)
        {
            writeln!(
                out,
                "(the controller has held for {held} minutes after the breach: ending the run)"
            )?;
            break;
        }
        if let Some(pause) = pause.filter(|_| flink.is_none()) {
            let quiet = breached_at.is_none() && scalings.is_empty();
            let pause = if quiet { pause / 4 } else { pause };
            tokio::time::sleep(pause.saturating_sub(tick.elapsed())).await;
        }
    }

    let update_calls = state.calls(&CallFilter {
        operation: Some("UpdateApplication".into()),
        ..CallFilter::default()
    });
    let refused = update_calls.iter().filter(|c| c.status >= 300).count();
    let kpus_after = minutes.last().map_or(kpus_before, |m| m.config.kpus());
    let restored = restored_at.is_some() && met_run >= RESTORED_AFTER;
    let updates = tally.updates();
    let status = store.status(&key);
    let events = store
        .events()
        .into_iter()
        .filter(|(k, _)| *k == key)
        .map(|(_, notice)| notice)
        .collect();
    emu.shutdown().await.context("stopping the emulator")?;
    Ok(DemoOutcome {
        restored,
        breached_at,
        restored_at: restored_at.filter(|_| restored),
        scalings,
        updates,
        update_calls: update_calls.len(),
        update_calls_refused: refused,
        kpus_before,
        kpus_after,
        minutes,
        budget: typed.max_checkpoint_duration,
        max_parallelism: typed.max_parallelism,
        scenario: scenario.name.clone(),
        status,
        events,
        wall: started.elapsed(),
    })
}

/// `16×1 (16 KPU)`.
fn short(c: AppConfig) -> String {
    format!("{}×{} ({} KPU)", c.parallelism, c.parallelism_per_kpu, c.kpus())
}

/// `t` minus `secs` seconds.
fn now_minus(t: Timestamp, secs: i64) -> Timestamp {
    t - jiff::SignedDuration::from_secs(secs)
}

/// Prints the summary.
pub fn summarize(outcome: &DemoOutcome, svg: &Path, out: &mut dyn Write) -> std::io::Result<()> {
    writeln!(out)?;
    match (outcome.restored, outcome.breached_at) {
        (true, Some(breached)) => match outcome.restored_by() {
            Some(scaled) => writeln!(
                out,
                "Budget restored: breached at +{breached}m, scaled at +{scaled}m, met again from +{}m — {} \
                 emulated minutes.",
                outcome.restored_at.unwrap_or_default(),
                outcome.minutes_to_restore().unwrap_or_default()
            )?,
            None => writeln!(
                out,
                "Budget met again, not by the controller: breached at +{breached}m, met again from +{}m {}; \
                 the cause ended by itself.",
                outcome.restored_at.unwrap_or_default(),
                match outcome
                    .scalings
                    .iter()
                    .filter(|s| s.minute >= breached)
                    .map(|s| s.minute)
                    .max()
                {
                    Some(m) => format!(
                        "{} minutes after the controller's last scaling (+{m}m)",
                        outcome.restored_at.unwrap_or_default() - m
                    ),
                    None => "with no scaling by the controller".to_owned(),
                }
            )?,
        },
        (false, Some(breached)) => {
            writeln!(
                out,
                "Budget NOT restored: breached at +{breached}m and still not met at the end of the scenario."
            )?;
            // Why, when the controller held back on purpose (e.g. snapshots off).
            if let Some(scaling) = outcome
                .status
                .as_ref()
                .and_then(|s| s.condition(SCALING))
                .filter(|c| c.status == "False")
            {
                writeln!(out, "Why: {}: {}", scaling.reason, scaling.message)?;
            }
        }
        (_, None) if outcome.kept() => writeln!(
            out,
            "Budget kept: the controller scaled at +{}m, before the checkpoints breached it, and \
             they stayed within it.",
            outcome.scalings.first().map_or(0, |s| s.minute)
        )?,
        (_, None) => writeln!(
            out,
            "The budget was never breached in this scenario: nothing to restore."
        )?,
    }
    let steps: Vec<String> = outcome
        .scalings
        .iter()
        .map(|s| {
            format!(
                "+{}m {} → {} ({})",
                s.minute,
                short(s.from),
                short(s.to),
                s.reason
            )
        })
        .collect();
    writeln!(
        out,
        "Scalings (restarts): {}{}",
        outcome.scalings.len(),
        if steps.is_empty() {
            String::new()
        } else {
            format!(": {}", steps.join("; "))
        }
    )?;
    let (before, after) = (outcome.durations_before(), outcome.durations_after());
    if !before.is_empty() || !after.is_empty() {
        let describe = |d: &[f64]| match (median(d), d.iter().copied().reduce(f64::max)) {
            (Some(med), Some(max)) => format!(
                "median {} (max {}) over {} minute(s)",
                human_ms(med),
                human_ms(max),
                d.len()
            ),
            _ => "none reported".to_string(),
        };
        writeln!(
            out,
            "Checkpoint durations: before the scaling {}; after it {}.",
            describe(&before),
            describe(&after)
        )?;
    }
    writeln!(
        out,
        "KPUs: {} before, {} after. UpdateApplication calls: {} ({} refused by the service).",
        outcome.kpus_before, outcome.kpus_after, outcome.update_calls, outcome.update_calls_refused
    )?;
    writeln!(
        out,
        "Wall time {:.1} s. Chart: {}",
        outcome.wall.as_secs_f64(),
        svg.display()
    )?;
    Ok(())
}

/// Writes the chart: checkpoint duration against the budget, and KPUs, per emulated minute,
/// with the scalings marked.
pub fn write_chart(outcome: &DemoOutcome, path: &Path) -> anyhow::Result<()> {
    let draw = |e: &dyn std::fmt::Display| anyhow::anyhow!("drawing the chart: {e}");
    let root = SVGBackend::new(path, (1100, 700)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| draw(&e))?;
    let title = format!("checkpoint-autoscaler demo · scenario {}", outcome.scenario);
    let root = root.titled(&title, ("sans-serif", 22)).map_err(|e| draw(&e))?;
    let (upper, lower) = root.split_vertically(420);
    let first = outcome.minutes.first().map_or(0, |m| m.minute);
    let last = outcome.minutes.last().map_or(1, |m| m.minute).max(first + 1);
    let budget_s = outcome.budget.as_secs_f64();
    let top = outcome
        .minutes
        .iter()
        .filter_map(|m| m.checkpoint_ms)
        .fold(budget_s * 1.5, |a, ms| a.max(ms / 1000.0))
        * 1.1;

    let mut chart = ChartBuilder::on(&upper)
        .margin(12)
        .x_label_area_size(30)
        .y_label_area_size(60)
        .caption("checkpoint duration (s) against the budget", ("sans-serif", 16))
        .build_cartesian_2d(first as f64..last as f64, 0.0..top)
        .map_err(|e| draw(&e))?;
    chart
        .configure_mesh()
        .x_desc("emulated minutes")
        .y_desc("seconds")
        .draw()
        .map_err(|e| draw(&e))?;
    chart
        .draw_series(LineSeries::new(
            [(first as f64, budget_s), (last as f64, budget_s)],
            RED.stroke_width(2),
        ))
        .map_err(|e| draw(&e))?
        .label("budget")
        .legend(|(x, y)| PathElement::new([(x, y), (x + 16, y)], RED));
    // Gaps (restarts) stay gaps.
    let mut segment: Vec<(f64, f64)> = Vec::new();
    let mut segments = Vec::new();
    for m in &outcome.minutes {
        match m.checkpoint_ms {
            Some(ms) => segment.push((m.minute as f64, ms / 1000.0)),
            None if !segment.is_empty() => segments.push(std::mem::take(&mut segment)),
            None => {}
        }
    }
    segments.push(segment);
    for (i, s) in segments.into_iter().filter(|s| !s.is_empty()).enumerate() {
        let series = chart
            .draw_series(LineSeries::new(s, BLUE.stroke_width(2)))
            .map_err(|e| draw(&e))?;
        if i == 0 {
            series
                .label("lastCheckpointDuration")
                .legend(|(x, y)| PathElement::new([(x, y), (x + 16, y)], BLUE));
        }
    }
    for s in &outcome.scalings {
        chart
            .draw_series(LineSeries::new(
                [(s.minute as f64, 0.0), (s.minute as f64, top)],
                BLACK.mix(0.4).stroke_width(1),
            ))
            .map_err(|e| draw(&e))?;
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(|e| draw(&e))?;

    let max_kpus = outcome
        .minutes
        .iter()
        .map(|m| m.config.kpus())
        .max()
        .unwrap_or(1)
        .max(1) as f64
        * 1.25;
    let mut chart = ChartBuilder::on(&lower)
        .margin(12)
        .x_label_area_size(30)
        .y_label_area_size(60)
        .caption("KPUs (scalings marked)", ("sans-serif", 16))
        .build_cartesian_2d(first as f64..last as f64, 0.0..max_kpus)
        .map_err(|e| draw(&e))?;
    chart
        .configure_mesh()
        .x_desc("emulated minutes")
        .y_desc("KPUs")
        .draw()
        .map_err(|e| draw(&e))?;
    let steps: Vec<(f64, f64)> = outcome
        .minutes
        .iter()
        .flat_map(|m| {
            let k = m.config.kpus() as f64;
            [(m.minute as f64 - 1.0, k), (m.minute as f64, k)]
        })
        .collect();
    chart
        .draw_series(LineSeries::new(steps, RGBColor(255, 127, 14).stroke_width(2)))
        .map_err(|e| draw(&e))?;
    for s in &outcome.scalings {
        chart
            .draw_series(LineSeries::new(
                [(s.minute as f64, 0.0), (s.minute as f64, max_kpus)],
                BLACK.mix(0.4).stroke_width(1),
            ))
            .map_err(|e| draw(&e))?;
    }
    root.present().map_err(|e| draw(&e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Minute by minute: UPDATING for 3 minutes after each scaling, then running what it
    /// asked for; checkpoints of 3 minutes (over the 1-minute budget) until `fixed_at`, 5 s
    /// after.
    fn outcome(breached: i64, restored: i64, scalings: &[i64], fixed_at: i64) -> DemoOutcome {
        let minutes = (0..200)
            .map(|minute| {
                let updating = scalings.iter().any(|&s| minute > s && minute <= s + 3);
                let scaled = scalings.iter().any(|&s| minute > s);
                Minute {
                    minute,
                    status: if updating {
                        AppStatus::Updating
                    } else {
                        AppStatus::Running
                    },
                    config: AppConfig::new(if scaled { 8 } else { 4 }, 1),
                    checkpoint_ms: (!updating).then_some(if minute >= fixed_at {
                        5_000.0
                    } else {
                        180_000.0
                    }),
                    kpus: if scaled { 8 } else { 4 },
                    slo_met: Some(minute >= fixed_at),
                }
            })
            .collect();
        DemoOutcome {
            restored: true,
            breached_at: Some(breached),
            restored_at: Some(restored),
            scalings: scalings
                .iter()
                .map(|&minute| Scaling {
                    minute,
                    from: AppConfig::new(4, 1),
                    to: AppConfig::new(8, 1),
                    reason: "ScaleUpRequired".into(),
                })
                .collect(),
            updates: Vec::new(),
            update_calls: scalings.len(),
            update_calls_refused: 0,
            kpus_before: 4,
            kpus_after: 8,
            minutes,
            budget: Duration::from_secs(60),
            max_parallelism: 128,
            scenario: "test".into(),
            status: None,
            events: Vec::new(),
            wall: Duration::ZERO,
        }
    }

    fn summary(o: &DemoOutcome) -> String {
        let mut out = Vec::new();
        summarize(o, Path::new("chart.svg"), &mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn a_recovery_is_credited_only_to_a_scaling_that_caused_it() {
        // Scaled 5 minutes after the breach; the new configuration's first checkpoint is
        // within budget: the controller's.
        let o = outcome(10, 27, &[15], 19);
        assert_eq!(o.restored_by(), Some(15));
        assert!(summary(&o).contains("Budget restored"), "{}", summary(&o));
        // However long the catch-up that follows.
        assert_eq!(outcome(10, 80, &[15], 19).restored_by(), Some(15));

        // A fault that ended by itself, no scaling: never "Budget restored".
        let o = outcome(10, 130, &[], 130);
        assert_eq!(o.restored_by(), None);
        let text = summary(&o);
        assert!(!text.contains("Budget restored"), "{text}");
        assert!(
            text.contains("not by the controller") && text.contains("with no scaling"),
            "{text}"
        );

        // Scaled (for nothing): checkpoints kept breaching under the new configuration
        // until the fault ended two hours later. Not credited either.
        let o = outcome(10, 140, &[15, 20], 140);
        assert_eq!(o.restored_by(), None);
        let text = summary(&o);
        assert!(!text.contains("Budget restored"), "{text}");
        assert!(
            text.contains("120 minutes after the controller's last scaling"),
            "{text}"
        );

        // A scaling before the breach does not count for it.
        assert_eq!(outcome(10, 20, &[5], 20).restored_by(), None);
    }
}
