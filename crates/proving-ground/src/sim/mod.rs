//! `sim`: a virtual-time model of Amazon Managed Service for Apache Flink.
//!
//! - [`scenario`]: workloads as data (the YAML format of `examples/scenarios/`).
//! - [`model`]: the physics of one application per metric period (load, capacity,
//!   backlog, state, memory, checkpoints, faults).
//! - [`service`]: the kinesisanalyticsv2 control plane, once, generic over the [`Runtime`]
//!   that runs the jobs: versions, operations, `UPDATING`, rollback, quotas, the service's
//!   own autoscaling, tags, and the CloudWatch metrics ([`store`]).
//! - [`fleet`]: the model as that runtime ([`Fleet`]); the `emulator` serves it over the
//!   real wire protocols.
//! - [`simulate`]: the `simulate` subcommand and its reusable loop ([`run`]) with the
//!   project's policy or a [`baselines`] policy; [`chart`] draws the result as SVG.
//!
//! Everything is deterministic for a seed and runs in virtual time.

pub mod baselines;
pub mod chart;
pub mod cloudwatch;
pub mod compare;
pub mod contenders;
pub mod fleet;
pub mod generate;
pub mod model;
pub mod scenario;
pub mod service;
pub mod simulate;
pub mod store;
pub mod units;

pub use fleet::{
    ApplicationView, CheckpointView, ConfigurationType, CreateApplication, Fleet, LogLevel, MonitoringUpdate,
    MonitoringView, OperationStatus, OperationView, ParallelismUpdate, ParallelismView, RestoreConfig,
    RestoreType, ServiceError, SnapshotView, UpdateApplication,
};
pub use scenario::{Scenario, ScenarioError};
pub use service::{Runtime, Service};
pub use simulate::{CheckpointAutoscaler, Policy, PolicyChoice, RunReport, SimError, SimulateArgs, run};
pub use store::{MetricId, MetricQuery, PutDatum, StatisticSet};
