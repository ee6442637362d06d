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

use self::{
    load::FlinkLoad,
    outcome::{Minute, Observed, Progress, Tracker},
};
pub use self::{
    outcome::{CREDITED_WITHIN_MINUTES, DemoOutcome, Scaling},
    render::{summarize, write_chart},
};
use crate::{
    aws::{AwsSettings, MetricsMode},
    controller::{
        reconcile::{BudgetView, Effect, Report},
        status::SLO_MET,
        store::{BudgetKey, MemoryStore},
    },
    crd::{CheckpointBudget, CheckpointBudgetSpec, CheckpointBudgetStatus},
    emulator::{self, EmulatorConfig, EmulatorState, calllog::CallFilter},
    policy::AppStatus,
    sim::Scenario,
    telemetry::{self, LogFormat},
};

mod load;
pub mod outcome;
pub mod render;

/// The default scenario, embedded so `cargo run -- demo` works from any directory.
const STEP_UP: &str = include_str!("../../examples/scenarios/step-up.yaml");
/// The default scenario of `demo --backend flink`.
const FLINK_STEP_UP: &str = include_str!("../../examples/flink/demo.yaml");

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
    let emu = start_emulator(scenario, &region, flink.as_ref()).await?;
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
    let core = Instrumented::reconciler(&rig::reconciler(clients, MetricsMode::default()), &tally);
    let store = MemoryStore::default();
    let key = BudgetKey::new(namespace.clone(), name.clone());

    let budget_ms = typed.max_checkpoint_duration.as_millis() as f64;
    render::heading(out, scenario, &key.to_string(), &spec, &typed)?;
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
    let mut tracker = Tracker::default();
    let mut last_reason = String::new();
    let mut load = FlinkLoad::new(view.running_config(), flink.as_ref().and_then(|f| f.adapt_load));
    for minute in window_minutes..=last_minute {
        let tick = Instant::now();
        match &flink {
            None => state.advance(Duration::from_secs(60)),
            Some(f) => {
                // Real time: wait for the emulated minute, and apply the scenario's load.
                load::wait_for_minute(&state, start, minute, f.period).await;
                let scaled = !tracker.scalings().is_empty();
                load.apply(&state, scenario, &app, minute, scaled, out)?;
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
        let seen = observe(&state, &app, minute, now, status.as_ref())?;
        if seen.status == AppStatus::Running {
            load.seen_running(minute);
        }

        // One line per minute: what the application does, its checkpoints against the
        // budget, and what the controller decided (in words when the decision changes).
        let mut line = render::minute_line(
            minute,
            seen.status,
            seen.config,
            seen.checkpoint_ms,
            seen.slo_met,
            budget_ms,
        );
        let scaled_to = match &report {
            Ok(report) => {
                let (note, reason) = render::decision(report, &last_reason);
                line.push_str(&note);
                last_reason = reason.clone();
                match report.effect {
                    Effect::Scaled { to, .. } => Some((to, reason)),
                    _ => None,
                }
            }
            Err(e) => {
                line.push_str(&format!("  error: {e}"));
                None
            }
        };
        writeln!(out, "{line}")?;
        out.flush()?;

        let nothing_in_flight = status.as_ref().is_some_and(|s| s.operation_in_flight.is_none());
        let progress = tracker.observe(Observed {
            minute: seen,
            scaled_to,
            reconciled: report.is_ok(),
            nothing_in_flight,
            held_on_judgement: nothing_in_flight && held_on_judgement(status.as_ref(), report.as_ref().ok()),
        });
        if progress == Progress::Done {
            break;
        }
        let held = tracker.held_minutes();
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
            let quiet = !tracker.breached() && tracker.scalings().is_empty();
            let pause = if quiet { pause / 4 } else { pause };
            tokio::time::sleep(pause.saturating_sub(tick.elapsed())).await;
        }
    }

    let update_calls = state.calls(&CallFilter {
        operation: Some("UpdateApplication".into()),
        ..CallFilter::default()
    });
    let refused = update_calls.iter().filter(|c| c.status >= 300).count();
    let (restored, breached_at, restored_at) =
        (tracker.restored(), tracker.breached_at(), tracker.restored_at());
    let (scalings, minutes) = tracker.into_timeline();
    let kpus_after = minutes.last().map_or(kpus_before, |m| m.config.kpus());
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
        restored_at,
        scalings,
        updates: tally.updates(),
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

/// The emulator for `scenario` in `region`: over the model, or with `flink` over real Flink
/// jobs (emulated minutes then pass in real time, one per `flink.period`).
async fn start_emulator(
    scenario: &Scenario,
    region: &str,
    flink: Option<&FlinkDemo>,
) -> anyhow::Result<emulator::Emulator> {
    let config = EmulatorConfig {
        period: flink.map(|f| f.period),
        ..rig::emulator_config(scenario, region)
    };
    let emu = match flink {
        None => emulator::serve(config).await,
        Some(f) => {
            let options = crate::flink::BackendOptions {
                seed: scenario.seed,
                region: region.to_owned(),
                ..crate::flink::BackendOptions::default()
            };
            let fleet = crate::flink::FlinkFleet::new(f.home.clone(), options, scenario.start_time())?;
            emulator::serve_backend(config, Box::new(fleet)).await
        }
    };
    emu.context("starting the emulator")
}

/// Whether the controller held on a judgement (a diagnosis, not a want of data) and did
/// nothing in this reconcile.
fn held_on_judgement(status: Option<&CheckpointBudgetStatus>, report: Option<&Report>) -> bool {
    status.is_some_and(|s| {
        s.diagnosis
            .as_ref()
            .is_some_and(|d| d.cause != crate::policy::Cause::InsufficientData)
    }) && report.is_some_and(|r| matches!(r.effect, Effect::None))
}

/// The application at `minute` as the demo shows it: its status and configuration, its
/// latest checkpoint duration (the model's last period, else the latest datapoint the
/// backend published), and the controller's SLO judgement from `status`.
fn observe(
    state: &EmulatorState,
    app: &str,
    minute: i64,
    now: Timestamp,
    status: Option<&CheckpointBudgetStatus>,
) -> anyhow::Result<Minute> {
    let (app_view, period, published) = state.with_fleet(|f| {
        let app_view = f.describe_application(app).ok();
        let period = f.as_model().and_then(|m| m.last_period(app)).cloned();
        // The Flink backend: the latest datapoint it published.
        let published = load::latest(f, app, "lastCheckpointDuration", "Maximum", now);
        (app_view, period, published)
    });
    let Some(app_view) = app_view else {
        bail!("the emulated application {app} disappeared");
    };
    let config = app_view.running_config();
    let slo_met = status
        .and_then(|s| s.condition(SLO_MET))
        .and_then(|c| match c.status.as_str() {
            "True" => Some(true),
            "False" => Some(false),
            _ => None,
        });
    Ok(Minute {
        minute,
        status: app_view.status,
        config,
        checkpoint_ms: match &period {
            Some(p) => p.last_checkpoint_duration_ms,
            None => published,
        },
        kpus: period.as_ref().map_or(config.kpus(), |p| p.kpus),
        slo_met,
        cause: status.and_then(|s| s.diagnosis.as_ref()).map(|d| d.cause),
    })
}
