//! Scenarios: a workload described as data (YAML), documented in `docs/scenarios.md`.
//!
//! A scenario names one application and its initial configuration, the job's real
//! `maxParallelism`, a load trace, a state model, key skew, injected faults, how long to
//! run, the random seed, and optionally the `CheckpointBudget` spec to judge it against.
//! Every field except `name`, `application.name`, `application.parallelism`, `duration`
//! and `load` has a default, so a scenario says only what matters to it.

use std::{path::Path, time::Duration};

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::units;
use crate::{
    aws::catalogue::{DEFAULT_RUNTIME, FLINK_RUNTIMES, MetricsLevel, Source, flink_version},
    crd::CheckpointBudgetSpec,
    policy::Budget,
};

/// Why a scenario could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    /// The file could not be read.
    #[error("cannot read scenario {path}")]
    Read {
        /// The file.
        path: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The YAML does not match the format.
    #[error("scenario {path} is not valid")]
    Parse {
        /// The file (or `<inline>`).
        path: String,
        /// The YAML error, with line and column.
        #[source]
        source: serde_yaml::Error,
    },
    /// The YAML parses but describes something impossible.
    #[error("scenario {name}: {message}")]
    Invalid {
        /// The scenario's name.
        name: String,
        /// What is wrong.
        message: String,
    },
}

/// A workload, as written in a scenario file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Scenario {
    /// Short name of the scenario (used in reports).
    pub name: String,
    /// What the scenario shows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The application and its configuration at the start.
    pub application: ApplicationSpec,
    /// How long to run (virtual time).
    #[serde(with = "units::duration")]
    pub duration: Duration,
    /// Random seed: the same seed gives the same run.
    #[serde(default)]
    pub seed: u64,
    /// Virtual start time (RFC 3339). Default: 2026-01-05T00:00:00Z, a Monday at midnight.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<Timestamp>,
    /// Records per second over time.
    pub load: LoadSpec,
    /// Days of past input CloudWatch holds when the run starts (at most 15, its retention
    /// of one-minute data): the load trace repeated back in time, as a recurring load would
    /// have run before (the run is the latest stretch of it), with the same noise. The
    /// controller learns its forecast from it (`numRecordsInPerSecond` by the hour).
    #[serde(default, skip_serializing_if = "is_zero_days")]
    pub history: u32,
    /// How many times larger each repetition of the trace in `history` is than the one
    /// before it (default 1: alike). A load that grew before the run as it grows in it
    /// (`multiday-growth`: the growth over the run's days) continues that growth back in
    /// time instead of repeating the run's days as a saw-tooth.
    #[serde(default = "one_f64", skip_serializing_if = "is_one_f64")]
    pub history_growth: f64,
    /// What a record costs.
    #[serde(default)]
    pub processing: ProcessingSpec,
    /// Keyed state: size, growth, TTL.
    #[serde(default)]
    pub state: StateSpec,
    /// Key skew.
    #[serde(default)]
    pub skew: SkewSpec,
    /// Checkpoint configuration of the job.
    #[serde(default)]
    pub checkpoints: CheckpointSpec,
    /// Injected faults.
    #[serde(default)]
    pub faults: FaultSpec,
    /// Constants of the platform model (bandwidth, restart times, memory layout). The
    /// defaults are documented in `docs/scenarios.md`; change them only to calibrate.
    #[serde(default)]
    pub platform: PlatformSpec,
    /// The `CheckpointBudget` spec (the public API's YAML shape, `spec:` of the resource)
    /// to judge the run against and to drive the project's policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget: Option<CheckpointBudgetSpec>,
}

/// The application at the start of the scenario.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ApplicationSpec {
    /// The Managed Flink application name.
    pub name: String,
    /// `Parallelism` at the start.
    pub parallelism: u32,
    /// `ParallelismPerKPU` at the start (1..8).
    #[serde(default = "one")]
    pub parallelism_per_kpu: u32,
    /// Whether the service's own CPU-based autoscaling is on at the start.
    #[serde(default)]
    pub auto_scaling_enabled: bool,
    /// `ApplicationSnapshotConfiguration.SnapshotsEnabled`: whether the service snapshots
    /// the state when the application stops, updates or scales (without, a restart loses
    /// it). Default true.
    #[serde(default = "yes")]
    pub snapshots_enabled: bool,
    /// The job's real `maxParallelism` (its number of key groups). Default: Flink's own
    /// default for the initial parallelism, `roundUpToPowerOfTwo(1.5 × parallelism)`
    /// bounded to [128, 32768].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_parallelism: Option<u32>,
    /// `MonitoringConfiguration.MetricsLevel`: APPLICATION (the service's default), TASK,
    /// OPERATOR or PARALLELISM. Busy and back-pressure times exist only at TASK and finer.
    #[serde(default)]
    pub metrics_level: MetricsLevel,
    /// `RuntimeEnvironment` (default FLINK-1_20); FLINK-2_2 publishes `numRestarts`, not
    /// `fullRestarts`.
    #[serde(default = "default_runtime")]
    pub runtime_environment: String,
    /// What the job reads: a Kinesis data stream (lag: `millisBehindLatest` per stream) or
    /// a Kafka topic (lag: `records_lag_max`). Default: the stream `<name>-input`.
    #[serde(default)]
    pub source: SourceSpec,
}

/// `application.source`: exactly one of `kinesisStream` and `kafkaTopic`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SourceSpec {
    /// A Kinesis data stream's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kinesis_stream: Option<String>,
    /// A Kafka topic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kafka_topic: Option<String>,
}

impl SourceSpec {
    /// The source of the application `name` (the stream `<name>-input` when unset).
    pub fn to_source(&self, name: &str) -> Source {
        match (&self.kinesis_stream, &self.kafka_topic) {
            (_, Some(topic)) => Source::Kafka { topic: topic.clone() },
            (Some(stream), None) => Source::Kinesis {
                stream: stream.clone(),
            },
            (None, None) => Source::default_for(name),
        }
    }
}

fn default_runtime() -> String {
    DEFAULT_RUNTIME.to_string()
}

impl ApplicationSpec {
    /// The job's key groups, with Flink's default when the scenario does not say.
    pub fn key_groups(&self) -> u32 {
        self.max_parallelism
            .unwrap_or_else(|| flink_default_max_parallelism(self.parallelism))
    }
}

/// Flink's default `maxParallelism` for an operator of parallelism `p`
/// (`KeyGroupRangeAssignment.computeDefaultMaxParallelism`).
pub fn flink_default_max_parallelism(p: u32) -> u32 {
    let wanted = u64::from(p) + u64::from(p) / 2;
    let pow = wanted.max(1).next_power_of_two();
    pow.clamp(128, 32768) as u32
}

fn one() -> u32 {
    1
}

/// The most days of `history:` (CloudWatch's retention of one-minute data).
pub const MAX_HISTORY_DAYS: u32 = 15;

fn one_f64() -> f64 {
    1.0
}

fn is_one_f64(v: &f64) -> bool {
    *v == 1.0
}

fn is_zero_days(days: &u32) -> bool {
    *days == 0
}

fn yes() -> bool {
    true
}

/// The load trace: consecutive phases, an optional multiplicative noise, and spikes laid
/// over the phases.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LoadSpec {
    /// Consecutive phases; the last one lasts until the end (its `for` may be omitted).
    pub phases: Vec<Phase>,
    /// Relative noise per minute (0.05 = ±5 % uniform), drawn from the seed.
    #[serde(default)]
    pub noise: f64,
    /// Flash crowds: the load is multiplied by `factor` for `for` from `at`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub spikes: Vec<Spike>,
}

/// One phase of the load trace.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "shape", rename_all = "camelCase", deny_unknown_fields)]
pub enum Phase {
    /// A constant rate.
    #[serde(rename_all = "camelCase")]
    Steady {
        /// Records per second.
        rate: f64,
        /// How long (omit on the last phase).
        #[serde(
            rename = "for",
            default,
            with = "units::opt_duration",
            skip_serializing_if = "Option::is_none"
        )]
        length: Option<Duration>,
    },
    /// A linear ramp.
    #[serde(rename_all = "camelCase")]
    Ramp {
        /// Starting rate; default: where the previous phase ended.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        from: Option<f64>,
        /// Rate at the end of the ramp.
        to: f64,
        /// How long the ramp takes.
        #[serde(
            rename = "for",
            default,
            with = "units::opt_duration",
            skip_serializing_if = "Option::is_none"
        )]
        length: Option<Duration>,
    },
    /// A sine wave, e.g. a diurnal cycle: `mean + amplitude × cos(2π (t − peakAt) / period)`
    /// where `t` is the time of day (or of the period) since the scenario's start.
    #[serde(rename_all = "camelCase")]
    Sine {
        /// Mean records per second.
        mean: f64,
        /// Swing above and below the mean.
        amplitude: f64,
        /// Length of one cycle (24h for diurnal).
        #[serde(with = "units::duration")]
        period: Duration,
        /// Offset into the cycle of the peak (e.g. 14h for 2 pm when the scenario starts at
        /// midnight).
        #[serde(default = "zero", with = "units::duration")]
        peak_at: Duration,
        /// How long (omit on the last phase).
        #[serde(
            rename = "for",
            default,
            with = "units::opt_duration",
            skip_serializing_if = "Option::is_none"
        )]
        length: Option<Duration>,
    },
}

impl Phase {
    fn length(&self) -> Option<Duration> {
        match self {
            Phase::Steady { length, .. } | Phase::Ramp { length, .. } | Phase::Sine { length, .. } => *length,
        }
    }
}

fn zero() -> Duration {
    Duration::ZERO
}

/// A flash crowd.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Spike {
    /// When it starts, from the scenario's start.
    #[serde(with = "units::duration")]
    pub at: Duration,
    /// How long it lasts.
    #[serde(rename = "for", with = "units::duration")]
    pub length: Duration,
    /// Load multiplier while it lasts.
    pub factor: f64,
}

impl LoadSpec {
    /// The load changes within `duration`: the boundaries of phases and the edges of spikes
    /// where the rate moves by more than 20%, in order. A sine changes continuously and
    /// contributes none.
    pub fn changes(&self, duration: Duration) -> Vec<Duration> {
        let mut edges: Vec<Duration> = Vec::new();
        let mut at = Duration::ZERO;
        for phase in &self.phases {
            match phase.length() {
                Some(length) => {
                    at += length;
                    edges.push(at);
                }
                None => break,
            }
        }
        for spike in &self.spikes {
            edges.push(spike.at);
            edges.push(spike.at + spike.length);
        }
        edges.sort();
        edges.dedup();
        let step = Duration::from_secs(1);
        edges
            .into_iter()
            .filter(|e| !e.is_zero() && *e < duration)
            .filter(|e| {
                let (before, after) = (self.rate_at(e.saturating_sub(step)), self.rate_at(*e));
                (after - before).abs() > 0.2 * before.max(after).max(f64::MIN_POSITIVE)
            })
            .collect()
    }

    /// Records per second `offset` after the start (before noise).
    pub fn rate_at(&self, offset: Duration) -> f64 {
        let t = offset.as_secs_f64();
        let mut phase_start = 0.0;
        let mut previous_end = 0.0;
        let mut rate = 0.0;
        for (i, phase) in self.phases.iter().enumerate() {
            let last = i + 1 == self.phases.len();
            let len = phase.length().map(|d| d.as_secs_f64());
            let end = len.map(|l| phase_start + l);
            let inside = last || end.is_none_or(|e| t < e);
            let local = (t - phase_start).max(0.0);
            let at = |x: f64| -> f64 {
                match phase {
                    Phase::Steady { rate, .. } => *rate,
                    Phase::Ramp { from, to, .. } => {
                        let from = from.unwrap_or(previous_end);
                        match len {
                            Some(l) if l > 0.0 => from + (to - from) * (x / l).min(1.0),
                            _ => *to,
                        }
                    }
                    Phase::Sine {
                        mean,
                        amplitude,
                        period,
                        peak_at,
                        ..
                    } => {
                        let p = period.as_secs_f64().max(1.0);
                        let phase =
                            2.0 * std::f64::consts::PI * (phase_start + x - peak_at.as_secs_f64()) / p;
                        mean + amplitude * phase.cos()
                    }
                }
            };
            if inside {
                rate = at(local);
                break;
            }
            previous_end = at(len.unwrap_or(0.0));
            phase_start = end.unwrap_or(phase_start);
        }
        let factor: f64 = self
            .spikes
            .iter()
            .filter(|s| offset >= s.at && offset < s.at + s.length)
            .map(|s| s.factor)
            .product();
        (rate * factor).max(0.0)
    }
}

/// What a record costs to process.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct ProcessingSpec {
    /// CPU time per record on one vCPU, e.g. `200us` (5,000 records/s per vCPU).
    #[serde(with = "units::duration")]
    pub cpu_per_record: Duration,
}

impl Default for ProcessingSpec {
    fn default() -> Self {
        Self {
            cpu_per_record: Duration::from_micros(200),
        }
    }
}

/// Keyed state (RocksDB) and working memory.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct StateSpec {
    /// Distinct keys in state at the start.
    pub keys: f64,
    /// Bytes of state per key (as stored in RocksDB and checkpoints).
    #[serde(with = "units::bytes")]
    pub bytes_per_key: f64,
    /// Fraction of processed records that carry a key never seen before (key cardinality
    /// growth).
    pub new_keys_per_record: f64,
    /// State TTL: keys not touched for this long expire, so state levels off at about
    /// `rate × newKeysPerRecord × ttl` keys. Omit for state that never expires.
    #[serde(
        default,
        with = "units::opt_duration",
        skip_serializing_if = "Option::is_none"
    )]
    pub ttl: Option<Duration>,
    /// Operator state that is not keyed (buffers, sources' offsets), spread evenly.
    #[serde(default, with = "units::bytes")]
    pub fixed_bytes: f64,
    /// JVM heap each subtask needs for its working objects (windows, buffers, caches).
    #[serde(with = "units::bytes")]
    pub heap_per_subtask: f64,
}

impl Default for StateSpec {
    fn default() -> Self {
        Self {
            keys: 1_000_000.0,
            bytes_per_key: 1024.0,
            new_keys_per_record: 0.0,
            ttl: None,
            fixed_bytes: 0.0,
            heap_per_subtask: 256.0 * 1024.0 * 1024.0,
        }
    }
}

/// Key skew: one hot key group.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SkewSpec {
    /// Share (0..1) of all records and of all keyed state that belongs to the single
    /// hottest key group (one hot key or a few). The rest spreads evenly over key groups.
    #[serde(default)]
    pub hot_key_share: f64,
}

/// The job's checkpoint configuration.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct CheckpointSpec {
    /// `CheckpointInterval` (Managed Flink default: 60 s).
    #[serde(with = "units::duration")]
    pub interval: Duration,
    /// `MinPauseBetweenCheckpoints` (Managed Flink default: 5 s).
    #[serde(with = "units::duration")]
    pub min_pause: Duration,
    /// Checkpoint timeout (Flink default: 10 min).
    #[serde(with = "units::duration")]
    pub timeout: Duration,
    /// Incremental RocksDB checkpoints (upload only new SST files) or full ones.
    pub incremental: bool,
    /// Fraction of the state rewritten by compaction per checkpoint interval, which an
    /// incremental checkpoint uploads on top of the new keys.
    pub churn: f64,
    /// Consecutive failed checkpoints tolerated before the job fails over
    /// (`execution.checkpointing.tolerable-failed-checkpoints`). Omit for "never fail over
    /// on checkpoint failures".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tolerable_failures: Option<u32>,
}

impl Default for CheckpointSpec {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(60),
            min_pause: Duration::from_secs(5),
            timeout: Duration::from_secs(600),
            incremental: true,
            churn: 0.05,
            tolerable_failures: None,
        }
    }
}

/// A time window within the scenario; either end open.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Window {
    /// From this offset (default: the start).
    #[serde(
        default,
        with = "units::opt_duration",
        skip_serializing_if = "Option::is_none"
    )]
    pub from: Option<Duration>,
    /// Until this offset (default: the end).
    #[serde(
        default,
        with = "units::opt_duration",
        skip_serializing_if = "Option::is_none"
    )]
    pub until: Option<Duration>,
}

impl Window {
    /// Whether `offset` lies in the window.
    pub fn contains(&self, offset: Duration) -> bool {
        self.from.is_none_or(|f| offset >= f) && self.until.is_none_or(|u| offset < u)
    }
}

/// Injected faults.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FaultSpec {
    /// A state serializer that does not match: every checkpoint fails within a second,
    /// whatever the resources.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serializer_mismatch: Option<Window>,
    /// A slow external call made while snapshotting (e.g. a sink's pre-commit): adds
    /// `delay` to every checkpoint's synchronous phase.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slow_external_call: Option<SlowCall>,
    /// Transient S3 errors: each checkpoint fails with probability `rate`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transient_s3_errors: Option<S3Errors>,
}

/// A slow external call during checkpoints.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SlowCall {
    /// Added to every checkpoint.
    #[serde(with = "units::duration")]
    pub delay: Duration,
    /// When.
    #[serde(flatten)]
    pub window: Window,
}

/// Transient S3 errors.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct S3Errors {
    /// Probability (0..1) that a checkpoint fails.
    pub rate: f64,
    /// When.
    #[serde(flatten)]
    pub window: Window,
}

/// Constants of the platform model. Defaults and their sources are in `docs/scenarios.md`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct PlatformSpec {
    /// Checkpoint upload bandwidth of one KPU to S3, shared by its subtasks.
    #[serde(with = "units::bytes")]
    pub s3_bandwidth_per_kpu: f64,
    /// Fixed part of an `UpdateApplication` restart (snapshot, stop, new cluster, submit),
    /// on top of the time to write and restore the state.
    #[serde(with = "units::duration")]
    pub restart_base: Duration,
    /// Fixed part of a job failover (in-place restart after a crash), on top of the restore.
    #[serde(with = "units::duration")]
    pub failover_base: Duration,
    /// Barrier alignment time when the job is fully back-pressured (aligned checkpoints).
    #[serde(with = "units::duration")]
    pub alignment_at_full_backpressure: Duration,
    /// Share of each vCPU used by the JVM, the Flink runtime and the state backend, not
    /// available for records.
    pub cpu_overhead: f64,
    /// Heap a TaskManager uses apart from its subtasks' working objects.
    #[serde(with = "units::bytes")]
    pub heap_base: f64,
    /// Native memory per subtask (network buffers, RocksDB memtables and block cache).
    #[serde(with = "units::bytes")]
    pub native_per_subtask: f64,
    /// Native memory RocksDB pins per byte of local state (index and filter blocks).
    pub native_per_state_byte: f64,
}

impl PlatformSpec {
    /// These constants varied as `variant` says (see [`PlatformVariant`]).
    pub fn varied(&self, variant: PlatformVariant) -> Self {
        match variant {
            PlatformVariant::Scenario => self.clone(),
            PlatformVariant::Alternative => Self {
                s3_bandwidth_per_kpu: self.s3_bandwidth_per_kpu * 0.5,
                restart_base: self.restart_base.mul_f64(1.5),
                failover_base: self.failover_base.mul_f64(2.0),
                alignment_at_full_backpressure: self.alignment_at_full_backpressure.div_f64(3.0),
                cpu_overhead: 0.15,
                ..self.clone()
            },
        }
    }
}

/// Which platform constants a run uses: the scenario's own, or an alternative reading of
/// the assumptions AWS publishes no figure for, so that a policy tuned to one set of
/// constants is found out.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum PlatformVariant {
    /// The scenario's constants (the defaults of docs/scenarios.md unless it sets them).
    #[default]
    Scenario,
    /// S3 bandwidth ½×, restart 1.5×, failover 2×, alignment at full back-pressure ⅓×, CPU
    /// overhead 15%.
    Alternative,
}

impl Default for PlatformSpec {
    fn default() -> Self {
        Self {
            s3_bandwidth_per_kpu: 50.0 * 1024.0 * 1024.0,
            restart_base: Duration::from_secs(7 * 60),
            failover_base: Duration::from_secs(20),
            alignment_at_full_backpressure: Duration::from_secs(120),
            cpu_overhead: 0.08,
            heap_base: 512.0 * 1024.0 * 1024.0,
            native_per_subtask: 160.0 * 1024.0 * 1024.0,
            native_per_state_byte: 0.01,
        }
    }
}

/// The default virtual start: Monday 2026-01-05 00:00 UTC.
pub const DEFAULT_START: Timestamp = Timestamp::constant(1_767_571_200, 0);

impl Scenario {
    /// Parses and validates a scenario from YAML text.
    pub fn from_yaml(text: &str, origin: &str) -> Result<Self, ScenarioError> {
        let scenario: Scenario = serde_yaml::from_str(text).map_err(|source| ScenarioError::Parse {
            path: origin.to_string(),
            source,
        })?;
        scenario.validate()?;
        Ok(scenario)
    }

    /// Reads, parses and validates a scenario file.
    pub fn load(path: &Path) -> Result<Self, ScenarioError> {
        let text = std::fs::read_to_string(path).map_err(|source| ScenarioError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_yaml(&text, &path.display().to_string())
    }

    /// The input rate (with noise) `before` ahead of the start, when the trace repeats
    /// back in time (see [`Scenario::history`]), each repetition `history_growth` times
    /// smaller than the one after it.
    pub fn past_rate(&self, before: Duration) -> f64 {
        let cycle = self.duration.as_secs().max(60);
        let back = before.as_secs() % cycle;
        let offset = Duration::from_secs((cycle - back) % cycle);
        // The repetition `before` falls in: 1 for the one right before the run.
        let repetition = before.as_secs().div_ceil(cycle).max(1);
        let scale = self
            .history_growth
            .powi(-(i32::try_from(repetition).unwrap_or(i32::MAX)));
        // NB: the past's noise is drawn apart from the run's (another seed stream).
        let seed = self.seed.rotate_left(32) ^ 0x4849_5354_4f52_5921;
        self.load.rate_at(offset) * scale * super::model::noise_factor(seed, self.load.noise, before)
    }

    /// The virtual start time.
    pub fn start_time(&self) -> Timestamp {
        self.start.unwrap_or(DEFAULT_START)
    }

    /// The budget as the policy reads it (`None` when the scenario has none).
    pub fn policy_budget(&self) -> Result<Option<Budget>, ScenarioError> {
        self.budget
            .as_ref()
            .map(|spec| {
                spec.to_budget().map_err(|e| ScenarioError::Invalid {
                    name: self.name.clone(),
                    message: format!("budget: {e}"),
                })
            })
            .transpose()
    }

    /// Checks what serde cannot: ranges and consistency.
    pub fn validate(&self) -> Result<(), ScenarioError> {
        let bad = |message: String| {
            Err(ScenarioError::Invalid {
                name: self.name.clone(),
                message,
            })
        };
        if self.history > MAX_HISTORY_DAYS {
            return bad(format!(
                "history {} must be at most {MAX_HISTORY_DAYS} days (CloudWatch keeps one-minute data 15 days)",
                self.history
            ));
        }
        if !(self.history_growth.is_finite() && (0.1..=10.0).contains(&self.history_growth)) {
            return bad(format!(
                "historyGrowth {} must be within 0.1..10 (how many times larger each repetition \
                 of the trace in the history is than the one before it; 1 for alike)",
                self.history_growth
            ));
        }
        let app = &self.application;
        if app.parallelism < 1 || app.parallelism > 256 {
            return bad(format!(
                "application.parallelism {} must be within 1..256",
                app.parallelism
            ));
        }
        if !(1..=8).contains(&app.parallelism_per_kpu) {
            return bad(format!(
                "application.parallelismPerKpu {} must be within 1..8",
                app.parallelism_per_kpu
            ));
        }
        if app.max_parallelism.is_some_and(|m| !(1..=32768).contains(&m)) {
            return bad("application.maxParallelism must be within 1..32768".into());
        }
        if flink_version(&app.runtime_environment).is_none() {
            return bad(format!(
                "application.runtimeEnvironment {:?} is not an Apache Flink runtime of the service: use one of {}",
                app.runtime_environment,
                FLINK_RUNTIMES.join(", ")
            ));
        }
        match (&app.source.kinesis_stream, &app.source.kafka_topic) {
            (Some(_), Some(_)) => {
                return bad(
                    "application.source names both kinesisStream and kafkaTopic: a job here reads one source"
                        .into(),
                );
            }
            (Some(n), None) | (None, Some(n)) if n.trim().is_empty() => {
                return bad("application.source: the stream or topic name must not be empty".into());
            }
            _ => {}
        }
        if self.duration < Duration::from_secs(60) {
            return bad("duration must be at least one minute".into());
        }
        if self.load.phases.is_empty() {
            return bad("load.phases needs at least one phase".into());
        }
        let last = self.load.phases.len() - 1;
        for (i, p) in self.load.phases.iter().enumerate() {
            if i < last && p.length().is_none() {
                return bad(format!(
                    "load.phases[{i}] needs `for` (only the last phase may omit it)"
                ));
            }
            let negative = match p {
                Phase::Steady { rate, .. } => *rate < 0.0,
                Phase::Ramp { from, to, .. } => *to < 0.0 || from.is_some_and(|f| f < 0.0),
                Phase::Sine { mean, amplitude, .. } => *mean < 0.0 || *amplitude < 0.0,
            };
            if negative {
                return bad(format!("load.phases[{i}] has a negative rate"));
            }
        }
        if !(0.0..1.0).contains(&self.load.noise) {
            return bad("load.noise must be within [0, 1)".into());
        }
        if self.load.spikes.iter().any(|s| s.factor < 0.0) {
            return bad("load.spikes[].factor must be non-negative".into());
        }
        if self.processing.cpu_per_record.is_zero() {
            return bad("processing.cpuPerRecord must be positive".into());
        }
        let s = &self.state;
        if s.keys < 0.0 || !(0.0..=1.0).contains(&s.new_keys_per_record) {
            return bad("state.keys must be >= 0 and state.newKeysPerRecord within [0, 1]".into());
        }
        if s.ttl.is_some_and(|t| t.is_zero()) {
            return bad("state.ttl must be positive (omit it for no TTL)".into());
        }
        if !(0.0..1.0).contains(&self.skew.hot_key_share) {
            return bad("skew.hotKeyShare must be within [0, 1)".into());
        }
        let c = &self.checkpoints;
        if c.interval < Duration::from_secs(1) || c.timeout < Duration::from_secs(1) {
            return bad("checkpoints.interval and checkpoints.timeout must be at least 1s".into());
        }
        if !(0.0..=1.0).contains(&c.churn) {
            return bad("checkpoints.churn must be within [0, 1]".into());
        }
        if let Some(e) = &self.faults.transient_s3_errors
            && !(0.0..=1.0).contains(&e.rate)
        {
            return bad("faults.transientS3Errors.rate must be within [0, 1]".into());
        }
        self.policy_budget()?;
        let p = &self.platform;
        if p.s3_bandwidth_per_kpu <= 0.0 || !(0.0..0.9).contains(&p.cpu_overhead) {
            return bad("platform.s3BandwidthPerKpu must be positive and cpuOverhead within [0, 0.9)".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn minimal(load: &str) -> Scenario {
        let text =
            format!("name: t\napplication: {{name: app, parallelism: 4}}\nduration: 2h\nload:\n{load}");
        Scenario::from_yaml(&text, "<test>").unwrap()
    }

    #[test]
    fn defaults_follow_flink_and_managed_flink() {
        let s = minimal("  phases: [{shape: steady, rate: 1000}]\n");
        assert_eq!(s.application.parallelism_per_kpu, 1);
        assert_eq!(s.application.key_groups(), 128);
        assert_eq!(flink_default_max_parallelism(100), 256);
        assert_eq!(s.checkpoints.interval, Duration::from_secs(60));
        assert_eq!(s.start_time().to_string(), "2026-01-05T00:00:00Z");
        assert_eq!(s.application.metrics_level, MetricsLevel::Application);
        assert_eq!(s.application.runtime_environment, "FLINK-1_20");
        assert!(s.application.snapshots_enabled);
        assert_eq!(
            s.application.source.to_source("app"),
            Source::Kinesis {
                stream: "app-input".into()
            }
        );
    }

    #[test]
    fn monitoring_runtime_and_source_fields_and_their_errors() {
        let with = |extra: &str| {
            Scenario::from_yaml(
                &format!(
                    "name: t\napplication: {{name: a, parallelism: 4{extra}}}\nduration: 1h\nload: {{phases: [{{shape: steady, rate: 1}}]}}\n"
                ),
                "x",
            )
        };
        let s =
            with(", metricsLevel: OPERATOR, runtimeEnvironment: FLINK-2_2, source: {kafkaTopic: t}").unwrap();
        assert_eq!(s.application.metrics_level, MetricsLevel::Operator);
        assert_eq!(
            s.application.source.to_source("a"),
            Source::Kafka { topic: "t".into() }
        );
        let level = with(", metricsLevel: task").unwrap_err();
        let text = anyhow_chain(&level);
        assert!(text.contains("APPLICATION") && text.contains("TASK"), "{text}");
        let runtime = with(", runtimeEnvironment: FLINK-1_99").unwrap_err().to_string();
        assert!(
            runtime.contains("runtimeEnvironment") && runtime.contains("FLINK-2_2"),
            "{runtime}"
        );
        let both = with(", source: {kinesisStream: s, kafkaTopic: t}")
            .unwrap_err()
            .to_string();
        assert!(both.contains("both kinesisStream and kafkaTopic"), "{both}");
        assert!(matches!(
            with(", source: {pulsar: x}"),
            Err(ScenarioError::Parse { .. })
        ));
    }

    /// The error and its sources, one per line.
    fn anyhow_chain(e: &dyn std::error::Error) -> String {
        let mut out = e.to_string();
        let mut source = e.source();
        while let Some(s) = source {
            out.push('\n');
            out.push_str(&s.to_string());
            source = s.source();
        }
        out
    }

    #[test]
    fn phases_steps_ramps_sines_and_spikes() {
        let s = minimal(
            "  phases:\n    - {shape: steady, rate: 1000, for: 10m}\n    - {shape: ramp, to: 3000, for: 10m}\n    - {shape: sine, mean: 3000, amplitude: 1000, period: 1h, peakAt: 30m}\n  spikes: [{at: 50m, for: 5m, factor: 2}]\n",
        );
        let m = |min: u64| s.load.rate_at(Duration::from_secs(min * 60));
        assert_eq!(m(5), 1000.0);
        assert!((m(15) - 2000.0).abs() < 1e-9);
        assert!(
            (m(30) - 4000.0).abs() < 1e-6,
            "peak of the sine at 30m: {}",
            m(30)
        );
        assert!((m(60) - 2000.0).abs() < 1e-6, "trough at 60m: {}", m(60));
        assert_eq!(
            s.load.changes(Duration::from_secs(2 * 3600)),
            [50, 55].map(|m| Duration::from_secs(m * 60)),
            "the ramp's ends are no jumps (3000 → 3500 is within 20%); the spike's edges are"
        );
        let without_spike = {
            let mut s2 = s.clone();
            s2.load.spikes.clear();
            s2.load.rate_at(Duration::from_secs(52 * 60))
        };
        assert!((m(52) - 2.0 * without_spike).abs() < 1e-9);
    }

    #[test]
    fn rejects_what_cannot_run() {
        let text = "name: t\napplication: {name: a, parallelism: 4, parallelismPerKpu: 9}\nduration: 1h\nload: {phases: [{shape: steady, rate: 1}]}\n";
        assert!(matches!(
            Scenario::from_yaml(text, "x"),
            Err(ScenarioError::Invalid { .. })
        ));
        let typo = "name: t\napplication: {name: a, parallelism: 4}\nduration: 1h\nload: {phases: [{shape: steady, rate: 1}]}\nstat: {}\n";
        assert!(matches!(
            Scenario::from_yaml(typo, "x"),
            Err(ScenarioError::Parse { .. })
        ));
        let open = "name: t\napplication: {name: a, parallelism: 4}\nduration: 1h\nload: {phases: [{shape: steady, rate: 1}, {shape: steady, rate: 2}]}\n";
        assert!(matches!(
            Scenario::from_yaml(open, "x"),
            Err(ScenarioError::Invalid { .. })
        ));
        let shrunk = "name: t\napplication: {name: a, parallelism: 4}\nduration: 1h\nload: {phases: [{shape: steady, rate: 1}]}\nhistory: 2\nhistoryGrowth: 0\n";
        match Scenario::from_yaml(shrunk, "x") {
            Err(ScenarioError::Invalid { message, .. }) => {
                assert!(message.contains("historyGrowth 0"), "{message}")
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_history_that_grew_continues_the_growth_back_in_time() {
        let text = "name: t\napplication: {name: a, parallelism: 4}\nduration: 24h\nload: {phases: [{shape: steady, rate: 1000}]}\nhistory: 3\nhistoryGrowth: 1.25\n";
        let s = Scenario::from_yaml(text, "x").unwrap();
        let day = Duration::from_secs(86_400);
        assert!((s.past_rate(Duration::from_secs(60)) - 800.0).abs() < 1e-9);
        assert!((s.past_rate(day) - 800.0).abs() < 1e-9);
        assert!((s.past_rate(day + Duration::from_secs(60)) - 640.0).abs() < 1e-9);
        let alike = Scenario {
            history_growth: 1.0,
            ..s
        };
        assert!((alike.past_rate(2 * day) - 1000.0).abs() < 1e-9);
    }

    #[test]
    fn the_alternative_platform_varies_each_assumption_and_keeps_the_rest() {
        let base = PlatformSpec::default();
        assert_eq!(base.varied(PlatformVariant::Scenario), base);
        let alt = base.varied(PlatformVariant::Alternative);
        assert_eq!(alt.s3_bandwidth_per_kpu, base.s3_bandwidth_per_kpu / 2.0);
        assert_eq!(alt.restart_base, base.restart_base.mul_f64(1.5));
        assert_eq!(alt.failover_base, base.failover_base * 2);
        assert_eq!(
            alt.alignment_at_full_backpressure,
            base.alignment_at_full_backpressure / 3
        );
        assert_eq!(alt.cpu_overhead, 0.15);
        assert_eq!(
            (alt.heap_base, alt.native_per_subtask, alt.native_per_state_byte),
            (
                base.heap_base,
                base.native_per_subtask,
                base.native_per_state_byte
            )
        );
    }
}
