//! checkpoint-autoscaler keeps the checkpoints of Amazon Managed Service for Apache Flink
//! applications inside a budget declared as a `CheckpointBudget` custom resource.
//!
//! Data flows one way: budget spec + observation → [`policy::decide`] → action → status.
//!
//! The product is `policy`, `crd`, `validate`, `aws`, `controller`, `recommend` (with
//! `metrics`, `cost`, `telemetry`); `sim`, `emulator`, `flink`, `demo` and `scale` are the
//! proving ground, built with the default feature `proving-ground` only.

/// The AWS side: application control and CloudWatch metrics behind traits, over the SDK.
pub mod aws;
/// The command line: one binary, one subcommand per job.
pub mod cli;
/// The controller: reconcile core, Kubernetes wiring, `run`.
pub mod controller;
/// What a configuration costs: KPUs, KPU-hours a month (orchestration included), a price.
pub mod cost;
/// The `CheckpointBudget` custom resource: spec, status, the generated CRD.
pub mod crd;
/// `demo`: the controller against the built-in emulator, no cluster, no AWS.
#[cfg(feature = "proving-ground")]
pub mod demo;
/// The AWS emulator: the `sim` model behind the kinesisanalyticsv2 and CloudWatch wire protocols.
#[cfg(feature = "proving-ground")]
pub mod emulator;
/// The Flink backend of the emulator: real Flink jobs on loopback clusters.
#[cfg(feature = "proving-ground")]
pub mod flink;
/// Prometheus metrics.
pub mod metrics;
/// The decision engine (pure).
pub mod policy;
/// The cost of the controller at scale: the core of `cargo bench --bench scale`.
#[cfg(feature = "proving-ground")]
pub mod scale;
/// A virtual-time model of Managed Service for Apache Flink (scenarios, service, metrics).
#[cfg(feature = "proving-ground")]
pub mod sim;
/// Logging setup.
pub mod telemetry;
/// `validate`: offline checks of CheckpointBudget manifests against the generated CRD.
pub mod validate;

/// Helper methods only available for tests.
#[cfg(test)]
pub mod fixtures;
/// Property-test inputs and the manifest-loading properties (tests only).
#[cfg(all(test, feature = "proving-ground"))]
mod fuzz;
/// `recommend`: a one-shot evaluation of a live application; changes nothing.
pub mod recommend;
