//! checkpoint-autoscaler keeps the checkpoints of Amazon Managed Service for Apache Flink
//! applications inside a budget declared as a `CheckpointBudget` custom resource.
//!
//! Data flows one way: budget spec + observation → [`policy::decide`] → action → status.
//!
//! This crate is the binary's: its subcommands ([`cli`]) and `demo`. The product lives in
//! the workspace's crates, re-exported here under the names the code and the docs use:
//! `policy` (checkpoint-autoscaler-policy, pure), `crd`, `cost` and the engine of
//! [`validate`] (checkpoint-autoscaler-api; the subcommand is this crate's), `aws`
//! (checkpoint-autoscaler-aws), `controller`, `metrics`, `recommend`, `telemetry`
//! (checkpoint-autoscaler-controller). The proving ground — `sim`, `emulator`, `flink`
//! (checkpoint-autoscaler-proving-ground) and `demo` — comes with the default feature
//! `proving-ground` only. docs/design.md draws the crate graph.

pub use checkpoint_autoscaler_api::{cost, crd};
pub use checkpoint_autoscaler_aws as aws;
pub use checkpoint_autoscaler_controller as controller;
pub use checkpoint_autoscaler_controller::{metrics, recommend, telemetry};
pub use checkpoint_autoscaler_policy as policy;
#[cfg(feature = "proving-ground")]
pub use checkpoint_autoscaler_proving_ground::{emulator, flink, sim};

/// The command line: one binary, one subcommand per job.
pub mod cli;
/// `demo`: the controller against the built-in emulator, no cluster, no AWS.
#[cfg(feature = "proving-ground")]
pub mod demo;
/// `validate`: the subcommand over the API's validation engine.
pub mod validate;
