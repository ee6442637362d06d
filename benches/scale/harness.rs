//! The cost of running the controller at scale, measured against the emulator: the core of
//! `cargo bench --bench scale` (benches/scale/main.rs) and of its smoke test
//! (tests/integration/bench_smoke.rs), which include this file as a module.
//!
//! [`run_scale`] writes `budgets` CheckpointBudget manifests into a directory, loads them
//! back with the loader `demo` uses, starts the emulator in-process with one application per
//! budget (the example scenarios, round-robin), and runs the controller's own reconcile core
//! (`Reconciler::reconcile`, the real SDK clients over HTTP, an in-memory status store) over every
//! budget once per cycle, one cycle per emulated minute (`--interval 1m`), with at most
//! `concurrency` reconciles at once. It reports AWS calls by operation, CloudWatch metrics
//! requested, `GetMetricData` calls per cycle against the floor
//! `ceil(queries / max queries per call)`, reconcile latency with and without the time spent
//! waiting on AWS, CPU time of the controller's threads per reconcile, and memory.
//!
//! The emulator runs on its own tokio runtime, so the controller's CPU time is read from the
//! controller runtime's threads only (`/proc/self/task/<tid>/stat`). Memory is per process:
//! [`ScaleReport::rss_emulator_kib`] is taken once the emulated fleet exists, before any
//! controller object does, and [`ScaleReport::rss_peak_kib`] at the end (`VmHWM`).
//!
//! The micro-benchmark of the metric batcher ([`batch_round`], run by `cargo bench --bench
//! policy`) lives here too.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use async_trait::async_trait;
use checkpoint_autoscaler::{
    aws::{
        AwsError, AwsOperation, AwsSettings, BatchConfig, BatchedMetrics, CallStats, MAX_QUERIES_PER_CALL,
        METRICS, MetricsMode, MetricsSource, Target,
        cloudwatch::{MetricDataApi, MetricDataCall, Page, Series},
    },
    controller::{
        reconcile::{BudgetView, Reconciler},
        store::{BudgetKey, MemoryStore},
    },
    crd::{CheckpointBudget, CheckpointBudgetSpec},
    emulator::{self, calllog::CallFilter},
    sim::Scenario,
};
use checkpoint_autoscaler_testkit::rig::{self, Instrumented, Keys, Tally};
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;

/// The namespace of the generated budgets (and the tenancy tag on their applications).
pub const NAMESPACE: &str = "bench";

/// Emulated region.
const REGION: &str = "us-east-1";

/// Why a scale run could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ScaleError {
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A scenario could not be loaded or carries no budget.
    #[error("scenario {0}")]
    Scenario(String),
    /// A generated budget did not load back or is invalid.
    #[error("budget {path}: {message}")]
    Budget {
        /// The manifest.
        path: PathBuf,
        /// What was wrong.
        message: String,
    },
    /// The emulator could not start or refused the fleet.
    #[error("emulator: {0}")]
    Emulator(String),
    /// A tokio runtime could not be built.
    #[error("starting a runtime: {0}")]
    Runtime(#[source] std::io::Error),
    /// Nothing to measure.
    #[error("invalid configuration: {0}")]
    Config(String),
}

/// Which `MetricsSource` a run uses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MetricsPath {
    /// One `GetMetricData` call per budget ([`MetricsMode::Direct`]).
    Direct,
    /// The batcher with the controller's default [`BatchConfig`] (`idle` 50 ms).
    Batched,
    /// The batcher with `idle: None`: partial calls wait the full `max_wait` (1 s).
    BatchedNoIdle,
}

impl MetricsPath {
    /// Every path, in table order.
    pub const ALL: [MetricsPath; 3] = [
        MetricsPath::Direct,
        MetricsPath::Batched,
        MetricsPath::BatchedNoIdle,
    ];

    /// The name used on the command line and in the table.
    pub fn name(&self) -> &'static str {
        match self {
            MetricsPath::Direct => "direct",
            MetricsPath::Batched => "batched",
            MetricsPath::BatchedNoIdle => "batched-idle-none",
        }
    }

    /// The path named `name`.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.name() == name)
    }

    /// The metrics mode it stands for.
    pub fn mode(&self) -> MetricsMode {
        match self {
            MetricsPath::Direct => MetricsMode::Direct,
            MetricsPath::Batched => MetricsMode::Batched(BatchConfig::default()),
            MetricsPath::BatchedNoIdle => MetricsMode::Batched(BatchConfig {
                idle: None,
                ..BatchConfig::default()
            }),
        }
    }
}

/// One scale run.
#[derive(Clone, Debug)]
pub struct ScaleConfig {
    /// Budgets (and emulated applications).
    pub budgets: usize,
    /// Reconcile cycles (one per emulated minute).
    pub cycles: usize,
    /// Most reconciles at once.
    pub concurrency: usize,
    /// How CloudWatch is read; `label` names it in the report.
    pub mode: MetricsMode,
    /// The name of the mode in the report.
    pub label: String,
    /// Scenarios with a budget; application `i` runs scenario `i % len`.
    pub scenarios: Vec<Scenario>,
    /// Where the budget manifests are written (must exist).
    pub dir: PathBuf,
}

/// Order statistics of a set of durations, in milliseconds.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Percentiles {
    /// Median.
    pub p50: f64,
    /// 99th percentile (nearest rank).
    pub p99: f64,
    /// Largest.
    pub max: f64,
}

impl Percentiles {
    /// Nearest-rank percentiles of `values` (ms); zeros when empty.
    pub fn of(mut values: Vec<f64>) -> Self {
        if values.is_empty() {
            return Self::default();
        }
        values.sort_by(f64::total_cmp);
        let rank = |q: f64| values[((q * values.len() as f64).ceil() as usize).clamp(1, values.len()) - 1];
        Self {
            p50: rank(0.50),
            p99: rank(0.99),
            max: values[values.len() - 1],
        }
    }
}

/// What one scale run measured.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ScaleReport {
    /// The metrics path's name.
    pub mode: String,
    /// Budgets.
    pub budgets: usize,
    /// Cycles measured.
    pub cycles: usize,
    /// Most reconciles at once.
    pub concurrency: usize,
    /// Emulated seconds per cycle (the reconcile interval).
    pub interval_secs: u64,
    /// Most queries per `GetMetricData` call the floor is computed with.
    pub max_queries_per_call: usize,
    /// Calls the SDK clients made, by operation, over all cycles.
    pub calls: BTreeMap<String, u64>,
    /// Requests the emulator received, by operation, over all cycles (a cross-check).
    pub emulator_calls: BTreeMap<String, u64>,
    /// CloudWatch metrics requested (the billed unit).
    pub metrics_requested: u64,
    /// `samples()` requests (one per reconcile that read metrics).
    pub sample_requests: u64,
    /// Batcher calls sent before they were full.
    pub partial_batches: u64,
    /// `GetMetricData` calls, per cycle.
    pub get_metric_data_per_cycle: Vec<u64>,
    /// `ceil(queries / max_queries_per_call)`, per cycle.
    pub floor_per_cycle: Vec<u64>,
    /// Reconciles run.
    pub reconciles: u64,
    /// Reconciles that returned an error.
    pub errors: u64,
    /// The first reconcile error, if any.
    pub first_error: Option<String>,
    /// Wall time of a reconcile.
    pub latency_ms: Percentiles,
    /// Wall time of a reconcile minus the time it waited on AWS calls (policy, status,
    /// bookkeeping, and waiting for a core to run on).
    pub latency_excl_aws_ms: Percentiles,
    /// CPU time (user + system) of the controller runtime's threads per reconcile, in ms;
    /// `None` where `/proc` is not available.
    pub cpu_ms_per_reconcile: Option<f64>,
    /// Resident memory once the emulated fleet existed, before the controller (KiB).
    pub rss_emulator_kib: Option<u64>,
    /// Peak resident memory of the process (`VmHWM`, KiB): emulator and controller.
    pub rss_peak_kib: Option<u64>,
    /// Wall time of the measured cycles.
    pub wall_secs: f64,
}

impl ScaleReport {
    /// Budget-hours the cycles covered.
    pub fn budget_hours(&self) -> f64 {
        self.budgets as f64 * self.cycles as f64 * self.interval_secs as f64 / 3600.0
    }

    /// SDK calls of `operation` per budget-hour.
    pub fn per_budget_hour(&self, operation: AwsOperation) -> f64 {
        let calls = self.calls.get(operation.name()).copied().unwrap_or(0);
        calls as f64 / self.budget_hours().max(f64::MIN_POSITIVE)
    }

    /// CloudWatch metrics requested per budget-hour.
    pub fn metrics_per_budget_hour(&self) -> f64 {
        self.metrics_requested as f64 / self.budget_hours().max(f64::MIN_POSITIVE)
    }

    /// Mean `GetMetricData` calls per cycle.
    pub fn calls_per_cycle(&self) -> f64 {
        mean(&self.get_metric_data_per_cycle)
    }

    /// Mean floor per cycle.
    pub fn floor_per_cycle(&self) -> f64 {
        mean(&self.floor_per_cycle)
    }

    /// How far the calls per cycle are above the floor, in percent.
    pub fn over_floor_percent(&self) -> f64 {
        let floor = self.floor_per_cycle();
        if floor == 0.0 {
            return 0.0;
        }
        (self.calls_per_cycle() / floor - 1.0) * 100.0
    }

    /// Peak RSS above the emulator's share, KiB: an upper bound on the controller's own
    /// memory (the emulator's call log and metric history also grow during the run).
    pub fn rss_controller_kib(&self) -> Option<u64> {
        Some(self.rss_peak_kib?.saturating_sub(self.rss_emulator_kib?))
    }
}

fn mean(values: &[u64]) -> f64 {
    if values.is_empty() {
        0.0
    } else {
        values.iter().sum::<u64>() as f64 / values.len() as f64
    }
}

/// The scenarios of `dir` (`*.yaml`, sorted) that carry a budget.
pub fn load_scenarios(dir: &Path) -> Result<Vec<Scenario>, ScaleError> {
    let entries = std::fs::read_dir(dir).map_err(|source| ScaleError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    let mut paths: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
        .collect();
    paths.sort();
    let mut scenarios = Vec::new();
    for path in paths {
        let scenario =
            Scenario::load(&path).map_err(|e| ScaleError::Scenario(format!("{}: {e}", path.display())))?;
        if scenario.budget.is_some() {
            scenarios.push(scenario);
        }
    }
    if scenarios.is_empty() {
        return Err(ScaleError::Scenario(format!(
            "none with a budget in {}",
            dir.display()
        )));
    }
    Ok(scenarios)
}

/// The application of budget `i`.
pub fn application_name(i: usize) -> String {
    format!("app-{i:05}")
}

/// Writes `budgets` manifests `budget-NNNNN.yaml` into `dir`: budget `i` is scenario
/// `i % len`'s budget, for application [`application_name`]`(i)`. Returns the paths.
pub fn write_budgets(dir: &Path, budgets: usize, scenarios: &[Scenario]) -> Result<Vec<PathBuf>, ScaleError> {
    if scenarios.is_empty() {
        return Err(ScaleError::Config("no scenarios".into()));
    }
    let mut paths = Vec::with_capacity(budgets);
    for i in 0..budgets {
        let scenario = &scenarios[i % scenarios.len()];
        let Some(mut spec) = scenario.budget.clone() else {
            return Err(ScaleError::Scenario(format!(
                "{} carries no budget",
                scenario.name
            )));
        };
        spec.application.name = application_name(i);
        spec.application.role_arn = None;
        let mut budget = CheckpointBudget::new(&format!("budget-{i:05}"), spec);
        budget.metadata.namespace = Some(NAMESPACE.into());
        let path = dir.join(format!("budget-{i:05}.yaml"));
        let text = serde_yaml::to_string(&budget).map_err(|e| ScaleError::Budget {
            path: path.clone(),
            message: e.to_string(),
        })?;
        std::fs::write(&path, text).map_err(|source| ScaleError::Io {
            path: path.clone(),
            source,
        })?;
        paths.push(path);
    }
    Ok(paths)
}

/// A loaded budget: its key and its spec.
struct Loaded {
    key: BudgetKey,
    spec: CheckpointBudgetSpec,
}

/// Loads the manifests with `demo`'s loader and checks each spec converts.
fn load_budgets(paths: &[PathBuf], scenario: &Scenario) -> Result<Vec<Loaded>, ScaleError> {
    paths
        .iter()
        .map(|path| {
            let bad = |message: String| ScaleError::Budget {
                path: path.clone(),
                message,
            };
            let budget = checkpoint_autoscaler::demo::load_budget(Some(path), scenario)
                .map_err(|e| bad(format!("{e:#}")))?;
            budget.spec.to_budget().map_err(|e| bad(e.to_string()))?;
            let name = budget
                .metadata
                .name
                .clone()
                .ok_or_else(|| bad("no metadata.name".into()))?;
            let namespace = budget
                .metadata
                .namespace
                .clone()
                .unwrap_or_else(|| NAMESPACE.into());
            Ok(Loaded {
                key: BudgetKey::new(namespace, name),
                spec: budget.spec,
            })
        })
        .collect()
}

/// Runs one scale measurement (blocking; builds its own runtimes).
pub fn run_scale(config: &ScaleConfig) -> Result<ScaleReport, ScaleError> {
    if config.budgets == 0 || config.cycles == 0 || config.concurrency == 0 {
        return Err(ScaleError::Config(
            "budgets, cycles and concurrency must be positive".into(),
        ));
    }
    let first = config
        .scenarios
        .first()
        .ok_or_else(|| ScaleError::Config("no scenarios".into()))?;
    let paths = write_budgets(&config.dir, config.budgets, &config.scenarios)?;
    let budgets = load_budgets(&paths, first)?;

    // The emulator on its own runtime, so that its threads are not the controller's.
    let emu_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("emulator")
        .enable_all()
        .build()
        .map_err(ScaleError::Runtime)?;
    let emu = emu_rt
        .block_on(emulator::serve(rig::emulator_config(first, REGION)))
        .map_err(|e| ScaleError::Emulator(e.to_string()))?;
    let state = emu.state().clone();
    for i in 0..config.budgets {
        let scenario = &config.scenarios[i % config.scenarios.len()];
        rig::add_application(&state, scenario, Some(&application_name(i)), NAMESPACE)
            .map_err(|e| ScaleError::Emulator(e.to_string()))?;
    }
    // A full window of metrics before the first cycle; the fleet steps here, not inside a
    // measured request.
    let window = budgets
        .iter()
        .filter_map(|b| b.spec.to_budget().ok())
        .map(|b| b.window)
        .max()
        .unwrap_or(Duration::from_secs(600));
    state.advance(Duration::from_secs(window.as_secs().div_ceil(60) * 60));
    state.with_fleet(|_| ());
    let rss_emulator_kib = proc_status_kib("VmRSS");

    // The controller's runtime, its threads recorded for CPU accounting.
    let tids: Arc<Mutex<Vec<u32>>> = Arc::default();
    let recorded = tids.clone();
    let ctl_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("controller")
        .on_thread_start(move || {
            if let (Some(tid), Ok(mut tids)) = (current_tid(), recorded.lock()) {
                tids.push(tid);
            }
        })
        .enable_all()
        .build()
        .map_err(ScaleError::Runtime)?;
    let endpoint = emu.endpoint_url();
    let report = ctl_rt.block_on(async {
        let driver = tokio::spawn(drive(
            config.clone(),
            budgets,
            endpoint,
            state.clone(),
            tids.clone(),
        ));
        driver
            .await
            .map_err(|e| ScaleError::Config(format!("the benchmark task failed: {e}")))
    })?;
    drop(ctl_rt);
    emu_rt
        .block_on(emu.shutdown())
        .map_err(|e| ScaleError::Emulator(e.to_string()))?;
    let mut report = report;
    report.rss_emulator_kib = rss_emulator_kib;
    report.rss_peak_kib = proc_status_kib("VmHWM");
    Ok(report)
}

/// The cycles, on the controller's runtime.
async fn drive(
    config: ScaleConfig,
    budgets: Vec<Loaded>,
    endpoint: String,
    state: emulator::EmulatorState,
    tids: Arc<Mutex<Vec<u32>>>,
) -> ScaleReport {
    let settings = AwsSettings {
        region: Some(REGION.into()),
        ..AwsSettings::default()
    };
    let clients = rig::clients(&Keys::TEST, REGION, endpoint, settings).await;
    let max_queries_per_call = match &config.mode {
        MetricsMode::Batched(b) => b.max_queries_per_call.clamp(1, MAX_QUERIES_PER_CALL),
        MetricsMode::Direct => MAX_QUERIES_PER_CALL,
    };
    let interval = Duration::from_secs(60);
    let core = Reconciler {
        interval,
        ..rig::reconciler(clients.clone(), config.mode.clone())
    };
    let store = MemoryStore::default();
    let budgets: Arc<Vec<Loaded>> = Arc::new(budgets);
    let permits = Arc::new(Semaphore::new(config.concurrency));

    let mut per_cycle = Vec::new();
    let mut floors = Vec::new();
    let mut latencies = Vec::new();
    let mut local = Vec::new();
    let mut errors = 0u64;
    let mut first_error = None;
    let mut emulator_calls: BTreeMap<String, u64> = BTreeMap::new();
    let before_all = clients.stats().snapshot();
    let cpu_before = threads_cpu(&tids);
    let wall = Instant::now();
    for _ in 0..config.cycles {
        state.advance(interval);
        // Step the fleet now rather than inside the first measured request.
        state.with_fleet(|_| ());
        state.reset_calls();
        let now = state.virtual_now();
        let before = clients.stats().snapshot();
        let mut tasks = tokio::task::JoinSet::new();
        for index in 0..budgets.len() {
            let (core, store, budgets, permits) =
                (core.clone(), store.clone(), budgets.clone(), permits.clone());
            tasks.spawn(async move {
                let _permit = permits.acquire_owned().await;
                reconcile_timed(&core, &store, &budgets[index], now).await
            });
        }
        while let Some(joined) = tasks.join_next().await {
            match joined {
                Ok(outcome) => {
                    latencies.push(outcome.total.as_secs_f64() * 1e3);
                    local.push(outcome.total.saturating_sub(outcome.aws).as_secs_f64() * 1e3);
                    if let Some(e) = outcome.error {
                        errors += 1;
                        first_error.get_or_insert(e);
                    }
                }
                Err(e) => {
                    errors += 1;
                    first_error.get_or_insert(format!("reconcile task failed: {e}"));
                }
            }
        }
        let delta = clients.stats().snapshot().since(&before);
        per_cycle.push(delta.calls_of(AwsOperation::GetMetricData));
        floors.push((delta.sample_requests * METRICS.len() as u64).div_ceil(max_queries_per_call as u64));
        for call in state.calls(&CallFilter::default()) {
            *emulator_calls.entry(call.operation).or_default() += 1;
        }
    }
    let wall_secs = wall.elapsed().as_secs_f64();
    let cpu = match (cpu_before, threads_cpu(&tids)) {
        (Some(before), Some(after)) => Some(after.saturating_sub(before)),
        _ => None,
    };
    let total = clients.stats().snapshot().since(&before_all);
    let reconciles = latencies.len() as u64;
    ScaleReport {
        mode: config.label.clone(),
        budgets: config.budgets,
        cycles: config.cycles,
        concurrency: config.concurrency,
        interval_secs: interval.as_secs(),
        max_queries_per_call,
        calls: total
            .calls
            .iter()
            .map(|(op, n)| (op.name().to_string(), *n))
            .collect(),
        emulator_calls,
        metrics_requested: total.metrics_requested,
        sample_requests: total.sample_requests,
        partial_batches: total.partial_batches,
        get_metric_data_per_cycle: per_cycle,
        floor_per_cycle: floors,
        reconciles,
        errors,
        first_error,
        latency_ms: Percentiles::of(latencies),
        latency_excl_aws_ms: Percentiles::of(local),
        cpu_ms_per_reconcile: cpu.map(|d| d.as_secs_f64() * 1e3 / reconciles.max(1) as f64),
        rss_emulator_kib: None,
        rss_peak_kib: None,
        wall_secs,
    }
}

/// One reconcile's timings.
struct Timed {
    total: Duration,
    aws: Duration,
    error: Option<String>,
}

/// Reconciles one budget through AWS ports that add up the time spent waiting on them.
async fn reconcile_timed(core: &Reconciler, store: &MemoryStore, budget: &Loaded, now: Timestamp) -> Timed {
    let tally = Arc::new(Tally::default());
    let core = Instrumented::reconciler(core, &tally);
    let started = Instant::now();
    let (prior, resource_version) = store.get(&budget.key).unzip();
    let view = BudgetView {
        key: budget.key.clone(),
        generation: Some(1),
        spec: &budget.spec,
        status: prior.as_ref(),
        resource_version,
    };
    let result = core.reconcile(&view, store, now).await;
    Timed {
        total: started.elapsed(),
        aws: tally.waited(),
        error: result.err().map(|e| format!("{}: {e}", budget.key.name)),
    }
}

/// A `/proc/self/status` field in KiB (`VmRSS`, `VmHWM`); `None` off Linux.
pub fn proc_status_kib(field: &str) -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/status").ok()?;
    text.lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
}

/// The calling thread's id (Linux).
fn current_tid() -> Option<u32> {
    let link = std::fs::read_link("/proc/thread-self").ok()?;
    link.file_name()?.to_str()?.parse().ok()
}

/// Clock ticks per second of `/proc` CPU times (`USER_HZ`, 100 on every Linux ABI).
const USER_HZ: u64 = 100;

/// User + system CPU time of the threads `tids` (threads that exited are not counted).
fn threads_cpu(tids: &Mutex<Vec<u32>>) -> Option<Duration> {
    let tids = tids.lock().ok()?.clone();
    let mut ticks = 0u64;
    for tid in tids {
        let Ok(stat) = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")) else {
            continue;
        };
        // Fields after the command name (which may hold spaces) start at the state (3rd).
        let Some((_, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let utime: u64 = fields.get(11)?.parse().ok()?;
        let stime: u64 = fields.get(12)?.parse().ok()?;
        ticks += utime + stime;
    }
    Some(Duration::from_millis(ticks * 1000 / USER_HZ))
}

/// Renders reports as the benchmark's table (Markdown).
pub fn render_table(reports: &[ScaleReport]) -> String {
    let mut out = String::new();
    let ops = [
        AwsOperation::DescribeApplication,
        AwsOperation::ListTagsForResource,
        AwsOperation::GetMetricData,
        AwsOperation::UpdateApplication,
        AwsOperation::DescribeApplicationOperation,
        AwsOperation::ListApplicationOperations,
        AwsOperation::ListApplicationSnapshots,
    ];
    out.push_str(
        "| budgets | metrics path | Describe/bh | ListTags/bh | GetMetricData/bh | Update/bh | DescribeOp/bh \
         | ListOps/bh | ListSnapshots/bh | metrics/bh | GetMetricData/cycle | floor/cycle | over floor | p50 ms \
         | p99 ms | p99 excl. AWS ms | CPU ms/reconcile | RSS peak MiB | RSS emulator MiB | errors |\n",
    );
    out.push_str(
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    let mib = |k: Option<u64>| k.map_or("–".to_string(), |k| format!("{:.1}", k as f64 / 1024.0));
    for r in reports {
        let per_op: Vec<String> = ops
            .iter()
            .map(|op| format!("{:.2}", r.per_budget_hour(*op)))
            .collect();
        out.push_str(&format!(
            "| {} | {} | {} | {:.0} | {:.1} | {:.1} | {:+.1}% | {:.1} | {:.1} | {:.3} | {} | {} | {} | {} |\n",
            r.budgets,
            r.mode,
            per_op.join(" | "),
            r.metrics_per_budget_hour(),
            r.calls_per_cycle(),
            r.floor_per_cycle(),
            r.over_floor_percent(),
            r.latency_ms.p50,
            r.latency_ms.p99,
            r.latency_excl_aws_ms.p99,
            r.cpu_ms_per_reconcile.map_or("–".into(), |c| format!("{c:.2}")),
            mib(r.rss_peak_kib),
            mib(r.rss_emulator_kib),
            r.errors,
        ));
    }
    out
}

/// What one [`batch_round`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchRound {
    /// `GetMetricData` pages the batcher sent.
    pub calls: u64,
    /// Queries across them.
    pub queries: u64,
    /// Samples answered across all requests.
    pub samples: u64,
}

/// An in-memory CloudWatch that answers every query with one datapoint per period.
struct InstantCloudWatch {
    calls: AtomicU64,
    queries: AtomicU64,
}

#[async_trait]
impl MetricDataApi for InstantCloudWatch {
    async fn get_metric_data_page(
        &self,
        _target: &Target,
        call: &MetricDataCall,
        _next_token: Option<&str>,
    ) -> Result<Page, AwsError> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        self.queries
            .fetch_add(call.queries.len() as u64, Ordering::Relaxed);
        let series = call
            .queries
            .iter()
            .map(|q| Series {
                id: q.id.clone(),
                points: (call.start..call.end)
                    .step_by(call.period.max(1) as usize)
                    .map(|t| (t, (t / 60 % 7) as f64 + q.metric as f64))
                    .collect(),
                error: None,
            })
            .collect();
        Ok(Page {
            series,
            next_token: None,
        })
    }
}

/// One round of the metric batcher against an in-memory CloudWatch: `requests` concurrent
/// `samples()` calls (10-minute windows, one per application) packed into calls, answered,
/// split back and assembled. Measures the batcher's own work, no network. Call inside a
/// tokio runtime.
pub async fn batch_round(requests: usize, config: BatchConfig) -> Result<BatchRound, AwsError> {
    let api = Arc::new(InstantCloudWatch {
        calls: AtomicU64::new(0),
        queries: AtomicU64::new(0),
    });
    let metrics = BatchedMetrics::spawn_with(api.clone(), Arc::new(CallStats::new()), config);
    let end = Timestamp::from_second(1_767_225_600).map_err(|e| AwsError::InvalidArgument(e.to_string()))?;
    let target = Target::new(REGION);
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..requests {
        let (metrics, target) = (metrics.clone(), target.clone());
        tasks.spawn(async move {
            metrics
                .samples(
                    &target,
                    &application_name(i),
                    Duration::from_secs(600),
                    Duration::from_secs(60),
                    end,
                )
                .await
        });
    }
    let mut samples = 0u64;
    while let Some(joined) = tasks.join_next().await {
        let answer = joined.map_err(|e| AwsError::Other(format!("batch task failed: {e}")))??;
        samples += answer.len() as u64;
    }
    Ok(BatchRound {
        calls: api.calls.load(Ordering::Relaxed),
        queries: api.queries.load(Ordering::Relaxed),
        samples,
    })
}
