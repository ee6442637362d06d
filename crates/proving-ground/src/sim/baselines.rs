//! The baselines the project's policy is measured against, on the same fleet and traces.
//!
//! - [`Static`]: no scaling at all, the scenario's initial configuration throughout, the
//!   service's autoscaling off — what a team gets by sizing once.
//! - [`Builtin`]: the service's own automatic scaling and nothing else. The rule itself is
//!   implemented by the service model (`fleet::autoscale`), exactly as AWS documents it in
//!   the Managed Service for Apache Flink developer guide, "Use automatic scaling in Managed
//!   Service for Apache Flink"
//!   (<https://docs.aws.amazon.com/managed-flink/latest/java/how-scaling-auto.html>):
//!   scale up when `containerCPUUtilization` is at or above 75 % for 15 minutes (the
//!   application's `CurrentParallelism` doubles, `ParallelismPerKPU` unchanged, up to the
//!   KPU quota), scale down when it stays below 10 % for 6 hours (halved, never below the
//!   configured `Parallelism`); the only signal is CPU. This baseline only switches it on.

use jiff::Timestamp;

use super::{
    fleet::Fleet,
    scenario::Scenario,
    simulate::{Note, Policy},
};

/// No scaling: the scenario's initial configuration, service autoscaling off.
#[derive(Clone, Debug, Default)]
pub struct Static;

impl Policy for Static {
    fn name(&self) -> &str {
        "static"
    }

    fn initial_auto_scaling(&self, _scenario: &Scenario) -> bool {
        false
    }

    fn tick(&mut self, _fleet: &mut Fleet, _app: &str, _now: Timestamp) -> Vec<Note> {
        Vec::new()
    }
}

/// The service's own CPU-based autoscaling (`AutoScalingEnabled: true`) and nothing else.
#[derive(Clone, Debug, Default)]
pub struct Builtin;

impl Policy for Builtin {
    fn name(&self) -> &str {
        "builtin"
    }

    fn initial_auto_scaling(&self, _scenario: &Scenario) -> bool {
        true
    }

    fn tick(&mut self, _fleet: &mut Fleet, _app: &str, _now: Timestamp) -> Vec<Note> {
        // NB: the service acts by itself inside `Fleet::advance_to`; the loop reports its
        // AUTOSCALING transitions like any other restart.
        Vec::new()
    }
}
