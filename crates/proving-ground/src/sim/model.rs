//! The physics of one Managed Flink application: load, capacity, backlog, state, memory and
//! checkpoints, stepped in virtual time.
//!
//! The model is deliberately small and every formula is written out here, so that what a
//! simulated number means can be checked by reading one file. Assumptions, constants and
//! their sources are listed in `docs/scenarios.md`.
//!
//! - A KPU is one TaskManager: 1 vCPU, 4 GiB (3 GiB heap, 1 GiB native), 50 GiB disk, with
//!   `ParallelismPerKPU` slots. KPUs = ceil(parallelism / ParallelismPerKPU).
//! - Records and keyed state spread over `maxParallelism` key groups; a subtask owns
//!   ceil or floor of `maxParallelism / parallelism` of them, and the single hottest key
//!   group holds `hotKeyShare` of everything. The hottest subtask sets both the job's
//!   throughput and its checkpoint upload time.
//! - Checkpoint duration = barrier alignment (grows with back-pressure) + synchronous phase
//!   (memtable flush, plus any slow external call) + asynchronous upload of the hottest
//!   subtask's share at its share of the KPU's S3 bandwidth.

use std::time::Duration;

use jiff::Timestamp;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::scenario::{
    CheckpointSpec, FaultSpec, LoadSpec, Phase, PlatformSpec, ProcessingSpec, Scenario, SkewSpec, StateSpec,
};
use crate::policy::AppConfig;

/// Memory of a KPU: 3 GiB heap + 1 GiB native (Managed Flink developer guide, "Application
/// scaling").
pub const KPU_HEAP_BYTES: f64 = 3.0 * GIB;
/// Total memory of a KPU.
pub const KPU_MEMORY_BYTES: f64 = 4.0 * GIB;
/// Running storage of a KPU.
pub const KPU_DISK_BYTES: f64 = 50.0 * GIB;
const GIB: f64 = 1024.0 * 1024.0 * 1024.0;
const MIB: f64 = 1024.0 * 1024.0;
/// Native memory of a TaskManager apart from its subtasks (metaspace, threads, code cache).
const NATIVE_BASE_BYTES: f64 = 256.0 * MIB;
/// RocksDB write buffer flushed in a checkpoint's synchronous phase, per subtask at most.
const WRITE_BUFFER_BYTES: f64 = 64.0 * MIB;
/// Local disk throughput of the memtable flush.
const LOCAL_DISK_BYTES_PER_SEC: f64 = 200.0 * MIB;
/// Fixed latency of a checkpoint (barrier injection, acknowledgements, metadata upload).
const CHECKPOINT_FIXED_SECS: f64 = 0.3;
/// Heap utilisation above which garbage collection eats into processing.
const GC_PRESSURE_FROM: f64 = 0.85;
/// Heap utilisation above which OOM kills become likely (hazard grows to 1 per minute at 100 %).
const OOM_HAZARD_FROM: f64 = 0.92;
/// Sub-step of the flow model.
const SUBSTEP_SECS: f64 = 5.0;

/// The immutable description of a workload (from a scenario, or the default one).
#[derive(Clone, Debug, PartialEq)]
pub struct Workload {
    /// Records per second over time.
    pub load: LoadSpec,
    /// Per-record cost.
    pub processing: ProcessingSpec,
    /// Keyed state.
    pub state: StateSpec,
    /// Key skew.
    pub skew: SkewSpec,
    /// Checkpoint configuration.
    pub checkpoints: CheckpointSpec,
    /// Faults.
    pub faults: FaultSpec,
    /// Platform constants.
    pub platform: PlatformSpec,
    /// The job's `maxParallelism` (key groups).
    pub key_groups: u32,
    /// Seed for noise and random faults.
    pub seed: u64,
}

impl Workload {
    /// The workload of a scenario.
    pub fn from_scenario(s: &Scenario) -> Self {
        Self {
            load: s.load.clone(),
            processing: s.processing.clone(),
            state: s.state.clone(),
            skew: s.skew.clone(),
            checkpoints: s.checkpoints.clone(),
            faults: s.faults.clone(),
            platform: s.platform.clone(),
            key_groups: s.application.key_groups(),
            seed: s.seed,
        }
    }

    /// The workload of an application created without a scenario: a steady 1,000 records/s,
    /// 1 GiB of state that does not grow, no skew, no faults, Flink's default key groups.
    pub fn light(parallelism: u32, seed: u64) -> Self {
        Self {
            load: LoadSpec {
                phases: vec![Phase::Steady {
                    rate: 1000.0,
                    length: None,
                }],
                noise: 0.02,
                spikes: Vec::new(),
            },
            processing: ProcessingSpec::default(),
            state: StateSpec::default(),
            skew: SkewSpec::default(),
            checkpoints: CheckpointSpec::default(),
            faults: FaultSpec::default(),
            platform: PlatformSpec::default(),
            key_groups: super::scenario::flink_default_max_parallelism(parallelism),
            seed,
        }
    }

    /// Share (0..1) of records and keyed state on the hottest subtask at `parallelism`:
    /// the hot key group plus the rest of the largest subtask's key groups.
    pub fn hottest_share(&self, parallelism: u32) -> f64 {
        let m = self.key_groups.max(1);
        let p = parallelism.clamp(1, m);
        let groups = m.div_ceil(p);
        let hot = self.skew.hot_key_share;
        hot + (1.0 - hot) * f64::from(groups) / f64::from(m)
    }

    /// Records per second the job can process at `config` (the hottest subtask saturates
    /// first), before garbage-collection pressure.
    pub fn capacity(&self, config: AppConfig) -> f64 {
        let slots = f64::from(slots_on_kpu(config));
        let per_subtask =
            (1.0 - self.platform.cpu_overhead) / slots / self.processing.cpu_per_record.as_secs_f64();
        per_subtask / self.hottest_share(config.parallelism)
    }

    /// S3 bandwidth of one subtask: the KPU's, shared by the subtasks on it.
    pub fn subtask_bandwidth(&self, config: AppConfig) -> f64 {
        self.platform.s3_bandwidth_per_kpu / f64::from(slots_on_kpu(config))
    }

    /// Time to write (snapshot) or read (restore) `state_bytes` of full state at `config`,
    /// bound by the hottest subtask.
    pub fn transfer_time(&self, config: AppConfig, state_bytes: f64) -> Duration {
        let hot = state_bytes * self.hottest_share(config.parallelism);
        seconds(hot / self.subtask_bandwidth(config))
    }

    fn offset(&self, origin: Timestamp, t: Timestamp) -> Duration {
        Duration::try_from(t.duration_since(origin)).unwrap_or(Duration::ZERO)
    }
}

/// `at + d`, or the end of time when a scenario's extreme sizes make `d` absurd (found by
/// the property tests: a state of 10^13 keys overflowed the restore time).
fn later(at: Timestamp, d: Duration) -> Timestamp {
    at.checked_add(d).unwrap_or(Timestamp::MAX)
}

/// The longest time the model computes for one transfer or checkpoint: "never" for any
/// purpose, yet small enough that sums and multiples of a few of them, and the clock plus
/// them, stay far from overflowing.
const FOREVER: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// `secs` as a duration, saturating at [`FOREVER`] (a negative or NaN figure is zero)
/// instead of panicking like `Duration::from_secs_f64` (found by the property tests: a
/// scenario with a load of 1e308 records/s).
fn seconds(secs: f64) -> Duration {
    if secs.is_nan() || secs <= 0.0 {
        return Duration::ZERO;
    }
    Duration::try_from_secs_f64(secs).map_or(FOREVER, |d| d.min(FOREVER))
}

/// Subtasks sharing the busiest KPU.
fn slots_on_kpu(config: AppConfig) -> u32 {
    config
        .parallelism_per_kpu
        .clamp(1, 8)
        .min(config.parallelism.max(1))
}

/// Memory of the busiest TaskManager, in bytes.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Memory {
    /// JVM heap in use.
    pub heap: f64,
    /// Native memory in use.
    pub native: f64,
    /// Local state on disk.
    pub disk: f64,
}

impl Memory {
    /// `heapMemoryUtilization` as a fraction.
    pub fn heap_utilization(&self) -> f64 {
        self.heap / KPU_HEAP_BYTES
    }

    /// `containerMemoryUtilization` as a fraction.
    pub fn container_utilization(&self) -> f64 {
        (self.heap + self.native) / KPU_MEMORY_BYTES
    }
}

/// The last completed checkpoint.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Completed {
    /// When it completed.
    pub at: Timestamp,
    /// How long it took.
    pub duration: Duration,
    /// Bytes uploaded (Flink's `lastCheckpointSize` is the checkpointed size, which is the
    /// increment for incremental checkpoints).
    pub size: f64,
}

/// Why a checkpoint failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailureKind {
    /// Declined by a task: state serializer mismatch.
    Serializer,
    /// Upload failed: transient S3 error.
    S3,
    /// Expired before completing.
    Timeout,
}

#[derive(Clone, Copy, Debug)]
struct InFlight {
    started: Timestamp,
    ends: Timestamp,
    duration: Duration,
    size: f64,
    failure: Option<FailureKind>,
}

/// One submission of the job (from a start or an update until the next).
#[derive(Clone, Debug)]
struct Run {
    config: AppConfig,
    /// Start of the current uninterrupted run (for `uptime`).
    running_since: Timestamp,
    /// A failover in progress: down until then.
    down_until: Option<Timestamp>,
    /// Start of the current outage (for `downtime`).
    outage_since: Option<Timestamp>,
    full_restarts: u64,
    failed: u64,
    completed: u64,
    consecutive_failures: u32,
    last: Option<Completed>,
    next_trigger: Timestamp,
    last_trigger: Option<Timestamp>,
    in_flight: Option<InFlight>,
    /// Records processed since the last checkpoint was triggered.
    updates_since_trigger: f64,
}

/// What happened in one metric period, for the metrics and the timeline.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PeriodReport {
    /// Whether the job ran during the period (its metrics exist).
    pub job_reporting: bool,
    /// KPUs billed at the end of the period (0 when not running).
    pub kpus: u32,
    /// Offered load, records per second (average over the period).
    pub offered_per_second: f64,
    /// `numRecordsInPerSecond`.
    pub records_in_per_second: f64,
    /// Records waiting in the source.
    pub backlog: f64,
    /// `millisBehindLatest`.
    pub millis_behind_latest: f64,
    /// TaskManagers (= KPUs) that reported, one sample each for the per-TaskManager metrics.
    pub task_managers: u32,
    /// `cpuUtilization` / `containerCPUUtilization`, percent, average over TaskManagers.
    pub cpu_utilization: f64,
    /// The same on the busiest TaskManager (the `Maximum` statistic).
    pub cpu_utilization_max: f64,
    /// The same on each of the other TaskManagers.
    pub cpu_utilization_rest: f64,
    /// `heapMemoryUtilization`, percent, busiest TaskManager.
    pub heap_memory_utilization: f64,
    /// The same on each of the other TaskManagers.
    pub heap_memory_utilization_rest: f64,
    /// `containerMemoryUtilization`, percent, busiest TaskManager.
    pub container_memory_utilization: f64,
    /// The same on each of the other TaskManagers.
    pub container_memory_utilization_rest: f64,
    /// `busyTimeMsPerSecond` of the busiest subtask.
    pub busy_time_ms_per_second: f64,
    /// The same of each of the other subtasks of the keyed operator.
    pub busy_time_ms_per_second_rest: f64,
    /// The hottest subtask's share of the records (1 / parallelism without skew).
    pub hottest_share: f64,
    /// `backPressuredTimeMsPerSecond` of the sources.
    pub back_pressured_time_ms_per_second: f64,
    /// `lastCheckpointDuration` (ms) of the last completed checkpoint of this run.
    pub last_checkpoint_duration_ms: Option<f64>,
    /// `lastCheckpointSize` (bytes).
    pub last_checkpoint_size_bytes: Option<f64>,
    /// `numberOfFailedCheckpoints` (running count for this run).
    pub failed_checkpoints_total: f64,
    /// Checkpoints that failed within the period.
    pub failed_in_period: u32,
    /// Checkpoints that completed within the period.
    pub completed_in_period: u32,
    /// Longest checkpoint completed within the period, ms.
    pub longest_completed_ms: Option<f64>,
    /// `fullRestarts` (running count for this run).
    pub full_restarts_total: f64,
    /// `downtime`, ms.
    pub downtime_ms: f64,
    /// `uptime`, ms.
    pub uptime_ms: f64,
    /// Full keyed state, bytes.
    pub state_bytes: f64,
    /// Age of the checkpoint in flight at the end of the period, ms.
    pub in_flight_ms: Option<f64>,
}

#[derive(Clone, Debug, Default)]
struct Accumulator {
    seconds: f64,
    up_seconds: f64,
    arrivals: f64,
    processed: f64,
    cpu_seconds: f64,
    cpu_hot_seconds: f64,
    kpu_seconds: f64,
    rest_heap_max: f64,
    rest_container_max: f64,
    busy_max: f64,
    /// Busy share of each of the other subtasks, at the same moment as `busy_max`'s peers.
    busy_rest_max: f64,
    /// The hottest subtask's share of the records (the last substep's).
    hottest_share: f64,
    backpressure_max: f64,
    heap_max: f64,
    container_max: f64,
    failed: u32,
    completed: u32,
    longest_ms: Option<f64>,
}

/// The mutable state of one application's job.
#[derive(Clone, Debug)]
pub struct Job {
    workload: Workload,
    /// Scenario time zero (load trace and fault windows are offsets from it).
    origin: Timestamp,
    rng: ChaCha8Rng,
    keys: f64,
    backlog: f64,
    /// Back-pressure of the last sub-step, which the next checkpoint's alignment sees.
    backpressure: f64,
    run: Option<Run>,
    /// Down (stopped or restarting) since, for `downtime` while the service restarts us.
    acc: Accumulator,
}

impl Job {
    /// A job that is not running yet.
    pub fn new(workload: Workload, origin: Timestamp, stream: u64) -> Self {
        let keys = workload.state.keys;
        let rng = ChaCha8Rng::seed_from_u64(workload.seed ^ stream.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        Self {
            workload,
            origin,
            rng,
            keys,
            backlog: 0.0,
            backpressure: 0.0,
            run: None,
            acc: Accumulator::default(),
        }
    }

    /// The workload.
    pub fn workload(&self) -> &Workload {
        &self.workload
    }

    /// Full keyed state now, bytes.
    pub fn state_bytes(&self) -> f64 {
        self.workload.state.fixed_bytes + self.keys * self.workload.state.bytes_per_key
    }

    /// Records waiting in the source.
    pub fn backlog(&self) -> f64 {
        self.backlog
    }

    /// Whether a run is in progress (started and not stopped).
    pub fn is_running(&self) -> bool {
        self.run.is_some()
    }

    /// How long an `UpdateApplication` from `from` to `to` keeps the application `UPDATING`:
    /// the fixed restart cost, plus writing a full snapshot at `from`, plus restoring it at
    /// `to`. Both transfers are bound by the hottest subtask, so more state means a longer
    /// restart.
    pub fn restart_time(&self, from: AppConfig, to: AppConfig) -> Duration {
        let s = self.state_bytes();
        self.workload.platform.restart_base
            + self.workload.transfer_time(from, s)
            + self.workload.transfer_time(to, s)
    }

    /// How long it takes to restore the state at `to` when starting from a snapshot.
    pub fn restore_time(&self, to: AppConfig) -> Duration {
        self.workload.transfer_time(to, self.state_bytes())
    }

    /// Whether the job's key groups allow `parallelism` (Flink refuses to run or restore
    /// an operator above its `maxParallelism`).
    pub fn accepts_parallelism(&self, parallelism: u32) -> bool {
        parallelism <= self.workload.key_groups
    }

    /// Submits the job at `config` (start, or the end of an update): counters of the run
    /// start from zero, as Flink's do for a new job.
    pub fn start(&mut self, at: Timestamp, config: AppConfig) {
        let first = later(at, self.workload.checkpoints.interval);
        self.run = Some(Run {
            config,
            running_since: at,
            down_until: None,
            outage_since: None,
            full_restarts: 0,
            failed: 0,
            completed: 0,
            consecutive_failures: 0,
            last: None,
            next_trigger: first,
            last_trigger: None,
            in_flight: None,
            updates_since_trigger: 0.0,
        });
    }

    /// Stops the job (update, stop): in-flight checkpoints are discarded; the source keeps
    /// accumulating records until the next start.
    pub fn stop(&mut self) {
        self.run = None;
    }

    /// Drops all state (a start without restoring from a snapshot).
    pub fn clear_state(&mut self) {
        self.keys = 0.0;
    }

    /// Advances the model over [from, to).
    pub fn advance(&mut self, from: Timestamp, to: Timestamp) {
        let mut t = from;
        while t < to {
            let grid = SUBSTEP_SECS - (t.as_millisecond() as f64 / 1000.0).rem_euclid(SUBSTEP_SECS);
            let remaining = to.duration_since(t).as_secs_f64();
            let dt = grid.min(remaining);
            let next = t + Duration::from_secs_f64(dt);
            let next = if next > to || dt >= remaining { to } else { next };
            self.substep(t, next);
            t = next;
        }
    }

    fn substep(&mut self, a: Timestamp, b: Timestamp) {
        let dt = b.duration_since(a).as_secs_f64();
        if dt <= 0.0 {
            return;
        }
        let w = &self.workload;
        let offset = w.offset(self.origin, a);
        let rate = w.load.rate_at(offset) * noise_factor(w.seed, w.load.noise, offset);
        let arrivals = rate * dt;
        self.acc.seconds += dt;
        self.acc.arrivals += arrivals;

        // Failover finished?
        if let Some(run) = &mut self.run
            && let Some(until) = run.down_until
            && until <= a
        {
            run.down_until = None;
            run.outage_since = None;
            run.running_since = until;
            run.next_trigger = later(until, w.checkpoints.interval);
        }
        let up = self.run.as_ref().is_some_and(|r| r.down_until.is_none());
        let Some(run) = self.run.as_mut().filter(|_| up) else {
            self.backlog += arrivals;
            self.backpressure = 0.0;
            if let Some(run) = &self.run {
                self.acc.kpu_seconds += f64::from(run.config.kpus()) * dt;
            }
            return;
        };
        let config = run.config;
        let kpus = f64::from(config.kpus());
        let share = w.hottest_share(config.parallelism);
        let slots = f64::from(slots_on_kpu(config));
        let p = f64::from(config.parallelism.max(1));

        // Memory of the busiest TaskManager.
        let state = w.state.fixed_bytes + self.keys * w.state.bytes_per_key;
        let others = if p > 1.0 { (1.0 - share) / (p - 1.0) } else { 0.0 };
        let kpu_state = state * (share + (slots - 1.0) * others);
        let memory = Memory {
            heap: w.platform.heap_base + slots * w.state.heap_per_subtask,
            native: NATIVE_BASE_BYTES
                + slots * w.platform.native_per_subtask
                + kpu_state * w.platform.native_per_state_byte,
            disk: kpu_state,
        };
        // The other TaskManagers share the rest of the subtasks and state.
        let rest_memory = (kpus > 1.0).then(|| {
            let rest_slots = (p - slots) / (kpus - 1.0);
            let rest_state = (state - kpu_state).max(0.0) / (kpus - 1.0);
            Memory {
                heap: w.platform.heap_base + rest_slots * w.state.heap_per_subtask,
                native: NATIVE_BASE_BYTES
                    + rest_slots * w.platform.native_per_subtask
                    + rest_state * w.platform.native_per_state_byte,
                disk: rest_state,
            }
        });
        let heap_util = memory.heap_utilization();
        let gc = if heap_util > GC_PRESSURE_FROM {
            (1.0 - 2.0 * (heap_util - GC_PRESSURE_FROM)).max(0.5)
        } else {
            1.0
        };

        // Throughput: the hottest subtask saturates first.
        let capacity = w.capacity(config) * gc;
        let demand = self.backlog + arrivals;
        let processed = demand.min(capacity * dt);
        self.backlog = demand - processed;
        let offered_rate = demand / dt;
        let backpressure = if offered_rate > capacity {
            1.0 - capacity / offered_rate
        } else {
            0.0
        };
        self.backpressure = backpressure;
        let busy = (processed / dt / capacity).min(1.0);
        let cpu_used =
            processed * w.processing.cpu_per_record.as_secs_f64() / gc + w.platform.cpu_overhead * kpus * dt;
        // The busiest TaskManager runs the hottest subtask and its neighbours.
        let hot_share = share + (slots - 1.0) * others;
        let cpu_hot = (processed * hot_share * w.processing.cpu_per_record.as_secs_f64() / gc
            + w.platform.cpu_overhead * dt)
            .min(dt);

        self.acc.up_seconds += dt;
        self.acc.processed += processed;
        self.acc.cpu_seconds += cpu_used.min(kpus * dt);
        self.acc.cpu_hot_seconds += cpu_hot;
        self.acc.kpu_seconds += kpus * dt;
        self.acc.busy_max = self.acc.busy_max.max(busy);
        // The other subtasks see `others` of the records each against the same per-subtask
        // capacity as the hottest (which sees `share`).
        if share > 0.0 {
            self.acc.busy_rest_max = self.acc.busy_rest_max.max(busy * others / share);
        }
        self.acc.hottest_share = share;
        self.acc.backpressure_max = self.acc.backpressure_max.max(backpressure);
        self.acc.heap_max = self.acc.heap_max.max(heap_util);
        self.acc.container_max = self.acc.container_max.max(memory.container_utilization());
        if let Some(rest) = rest_memory {
            self.acc.rest_heap_max = self.acc.rest_heap_max.max(rest.heap_utilization());
            self.acc.rest_container_max = self.acc.rest_container_max.max(rest.container_utilization());
        }

        // State: new keys arrive with processed records; TTL expires untouched keys.
        if let Some(ttl) = w.state.ttl {
            self.keys *= (-dt / ttl.as_secs_f64()).exp();
        }
        self.keys += processed * w.state.new_keys_per_record;
        run.updates_since_trigger += processed;

        // Checkpoints: complete, fail, trigger — at their exact times within the sub-step.
        let mut crash = None;
        loop {
            if let Some(f) = run.in_flight
                && f.ends <= b
            {
                run.in_flight = None;
                match f.failure {
                    None => {
                        run.completed += 1;
                        run.consecutive_failures = 0;
                        run.last = Some(Completed {
                            at: f.ends,
                            duration: f.duration,
                            size: f.size,
                        });
                        self.acc.completed += 1;
                        let ms = f.duration.as_secs_f64() * 1000.0;
                        self.acc.longest_ms = Some(self.acc.longest_ms.map_or(ms, |l: f64| l.max(ms)));
                    }
                    Some(_) => {
                        run.failed += 1;
                        run.consecutive_failures += 1;
                        self.acc.failed += 1;
                        if w.checkpoints
                            .tolerable_failures
                            .is_some_and(|n| run.consecutive_failures > n)
                        {
                            crash = Some(f.ends);
                        }
                    }
                }
                let pause = later(f.ends, w.checkpoints.min_pause);
                let interval = later(f.started, w.checkpoints.interval);
                run.next_trigger = pause.max(interval);
                continue;
            }
            if run.in_flight.is_none() && crash.is_none() && run.next_trigger < b {
                let at = run.next_trigger.max(a);
                let flight = plan_checkpoint(
                    w,
                    &mut self.rng,
                    self.origin,
                    at,
                    config,
                    state,
                    self.keys,
                    run.updates_since_trigger,
                    run.last_trigger,
                    backpressure,
                );
                run.last_trigger = Some(at);
                run.updates_since_trigger = 0.0;
                run.in_flight = Some(flight);
                continue;
            }
            break;
        }

        // Crashes: OOM (heap or container), a full disk, or too many failed checkpoints.
        let oom_hazard_per_sec =
            if heap_util >= 1.0 || memory.container_utilization() >= 1.0 || memory.disk > KPU_DISK_BYTES {
                f64::INFINITY
            } else if heap_util > OOM_HAZARD_FROM {
                ((heap_util - OOM_HAZARD_FROM) / (1.0 - OOM_HAZARD_FROM)).powi(2) / 60.0
            } else {
                0.0
            };
        if crash.is_none() && oom_hazard_per_sec > 0.0 {
            let p_crash = 1.0 - (-oom_hazard_per_sec * dt).exp();
            if self.rng.random::<f64>() < p_crash {
                crash = Some(a);
            }
        }
        if let Some(at) = crash {
            let restore = w
                .platform
                .failover_base
                .saturating_add(w.transfer_time(config, state));
            run.full_restarts += 1;
            run.in_flight = None;
            run.consecutive_failures = 0;
            run.down_until = Some(later(at, restore));
            run.outage_since = Some(at);
        }
    }

    /// Closes the metric period ending at `end` and returns what it showed.
    pub fn take_period(&mut self, end: Timestamp) -> PeriodReport {
        let acc = std::mem::take(&mut self.acc);
        let seconds = acc.seconds.max(1e-9);
        let offset = self.workload.offset(self.origin, end);
        let rate_now = self.workload.load.rate_at(offset).max(1.0);
        let mut report = PeriodReport {
            job_reporting: acc.up_seconds > 0.0,
            offered_per_second: acc.arrivals / seconds,
            records_in_per_second: acc.processed / seconds,
            backlog: self.backlog,
            millis_behind_latest: if self.backlog < 1.0 {
                0.0
            } else {
                self.backlog / rate_now * 1000.0
            },
            state_bytes: self.state_bytes(),
            failed_in_period: acc.failed,
            completed_in_period: acc.completed,
            longest_completed_ms: acc.longest_ms,
            ..PeriodReport::default()
        };
        if let Some(run) = &self.run {
            report.kpus = run.config.kpus();
            report.failed_checkpoints_total = run.failed as f64;
            report.full_restarts_total = run.full_restarts as f64;
            report.last_checkpoint_duration_ms = run.last.map(|c| c.duration.as_secs_f64() * 1000.0);
            report.last_checkpoint_size_bytes = run.last.map(|c| c.size);
            report.in_flight_ms = run
                .in_flight
                .map(|f| end.duration_since(f.started).as_secs_f64().max(0.0) * 1000.0);
            match run.outage_since {
                Some(since) => report.downtime_ms = end.duration_since(since).as_secs_f64().max(0.0) * 1000.0,
                None => {
                    report.uptime_ms = end.duration_since(run.running_since).as_secs_f64().max(0.0) * 1000.0
                }
            }
        }
        if acc.up_seconds > 0.0 {
            let cpu = acc.cpu_seconds / acc.kpu_seconds.max(1e-9);
            report.cpu_utilization = (cpu * 100.0).clamp(0.0, 100.0);
            let kpus = (acc.kpu_seconds / acc.up_seconds).round().max(1.0);
            report.task_managers = kpus as u32;
            report.cpu_utilization_max = (acc.cpu_hot_seconds / acc.up_seconds * 100.0).clamp(0.0, 100.0);
            report.cpu_utilization_rest = if kpus > 1.0 {
                ((acc.cpu_seconds - acc.cpu_hot_seconds) / (kpus - 1.0) / acc.up_seconds * 100.0)
                    .clamp(0.0, 100.0)
            } else {
                report.cpu_utilization_max
            };
            report.heap_memory_utilization_rest = acc.rest_heap_max * 100.0;
            report.container_memory_utilization_rest = acc.rest_container_max * 100.0;
            report.heap_memory_utilization = acc.heap_max * 100.0;
            report.container_memory_utilization = acc.container_max * 100.0;
            report.busy_time_ms_per_second = acc.busy_max * 1000.0;
            report.busy_time_ms_per_second_rest = acc.busy_rest_max * 1000.0;
            report.hottest_share = acc.hottest_share;
            report.back_pressured_time_ms_per_second = acc.backpressure_max * 1000.0;
        }
        report
    }
}

/// Plans one checkpoint triggered at `at`: its duration, size and whether (and when) it fails.
#[allow(clippy::too_many_arguments)]
fn plan_checkpoint(
    w: &Workload,
    rng: &mut ChaCha8Rng,
    origin: Timestamp,
    at: Timestamp,
    config: AppConfig,
    state: f64,
    keys: f64,
    updates: f64,
    last_trigger: Option<Timestamp>,
    backpressure: f64,
) -> InFlight {
    let offset = w.offset(origin, at);
    let share = w.hottest_share(config.parallelism);
    let c = &w.checkpoints;
    // What is uploaded: everything (full), or the keys touched since the last checkpoint plus
    // the SST files compaction rewrote (incremental).
    let size = if c.incremental {
        let touched_keys = if keys > 0.0 {
            keys * (1.0 - (-updates / keys).exp())
        } else {
            0.0
        };
        let since = last_trigger.map_or(c.interval, |l| {
            Duration::try_from(at.duration_since(l)).unwrap_or(c.interval)
        });
        let churn = state * c.churn * (since.as_secs_f64() / c.interval.as_secs_f64());
        (touched_keys * w.state.bytes_per_key + churn).min(state)
    } else {
        state
    };
    let hot = size * share;
    let alignment = 0.02 + w.platform.alignment_at_full_backpressure.as_secs_f64() * backpressure;
    let mut sync = 0.05 + hot.min(WRITE_BUFFER_BYTES) / LOCAL_DISK_BYTES_PER_SEC;
    if let Some(call) = &w.faults.slow_external_call
        && call.window.contains(offset)
    {
        sync += call.delay.as_secs_f64();
    }
    let upload = CHECKPOINT_FIXED_SECS + hot / w.subtask_bandwidth(config);
    let jitter = 0.95 + 0.1 * rng.random::<f64>();
    let total = seconds((alignment + sync + upload) * jitter);
    let s3_roll: f64 = rng.random();
    let mut flight = InFlight {
        started: at,
        ends: later(at, total),
        duration: total,
        size,
        failure: None,
    };
    if w.faults
        .serializer_mismatch
        .as_ref()
        .is_some_and(|win| win.contains(offset))
    {
        // Declined in the synchronous phase, whatever the resources.
        let fail_after = seconds(alignment.min(1.0) + 0.2);
        flight.ends = later(at, fail_after);
        flight.failure = Some(FailureKind::Serializer);
    } else if let Some(e) = w
        .faults
        .transient_s3_errors
        .as_ref()
        .filter(|e| e.window.contains(offset))
        && s3_roll < e.rate
    {
        let fail_after = total.mul_f64(0.2 + 0.8 * (s3_roll / e.rate.max(1e-9)));
        flight.ends = later(at, fail_after.min(c.timeout));
        flight.failure = Some(FailureKind::S3);
    } else if total > c.timeout {
        flight.ends = later(at, c.timeout);
        flight.failure = Some(FailureKind::Timeout);
    }
    flight
}

/// Multiplicative load noise for the minute containing `offset`: uniform in ±`noise`, a pure
/// function of the seed and the minute, so it does not depend on how time is stepped.
pub(crate) fn noise_factor(seed: u64, noise: f64, offset: Duration) -> f64 {
    if noise <= 0.0 {
        return 1.0;
    }
    let minute = offset.as_secs() / 60;
    let mut z = seed ^ minute.wrapping_mul(0xD1B5_4A32_D192_ED03);
    // splitmix64
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    let unit = (z >> 11) as f64 / (1u64 << 53) as f64;
    1.0 + noise * (2.0 * unit - 1.0)
}
