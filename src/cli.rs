//! The `checkpoint-autoscaler` command line.

use clap::{Parser, Subcommand};

/// Keeps Managed Service for Apache Flink checkpoints inside a declared budget.
#[derive(Debug, Parser)]
#[command(name = "checkpoint-autoscaler", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print the CheckpointBudget CustomResourceDefinition as YAML (or, with --admission, what
    /// each Kubernetes API server makes of it).
    Crd(crate::crd::CrdArgs),
    /// Check CheckpointBudget manifests against the CRD's schema and CEL rules, offline.
    Validate(crate::validate::ValidateArgs),
    /// Run the controller: reconcile CheckpointBudgets against Managed Service for Apache Flink.
    Run(Box<crate::controller::RunArgs>),
    #[cfg(feature = "proving-ground")]
    /// Serve the AWS emulator (kinesisanalyticsv2 and CloudWatch) on loopback.
    Emulator(crate::emulator::EmulatorArgs),
    #[cfg(feature = "proving-ground")]
    /// Run a scenario in virtual time under a policy (or a baseline) and report SLO-violation
    /// minutes, KPU-hours and restarts.
    Simulate(crate::sim::SimulateArgs),
    /// Evaluate one live application against a budget, once: print the observed
    /// configuration, checkpoint figures, diagnosis and recommendation. Changes nothing.
    Recommend(Box<crate::recommend::RecommendArgs>),
    #[cfg(feature = "proving-ground")]
    /// Watch the controller restore a breached checkpoint budget against the built-in emulator (no cluster, no AWS).
    Demo(crate::demo::DemoArgs),
}

/// Runs the chosen subcommand and returns the process exit code.
pub fn run(cli: Cli) -> anyhow::Result<std::process::ExitCode> {
    match cli.command {
        Command::Crd(args) => crate::crd::run_crd(args),
        Command::Validate(args) => crate::validate::run(args),
        Command::Run(args) => crate::controller::run(*args),
        #[cfg(feature = "proving-ground")]
        Command::Emulator(args) => crate::emulator::run(args),
        #[cfg(feature = "proving-ground")]
        Command::Simulate(args) => crate::sim::simulate::run_command(args),
        Command::Recommend(args) => crate::recommend::run(*args),
        #[cfg(feature = "proving-ground")]
        Command::Demo(args) => crate::demo::run(args),
    }
}
