//! `checkpoint-autoscaler validate`: checks `CheckpointBudget` manifests offline, as the API
//! server would at apply time, so a GitOps pipeline fails before the cluster does. The
//! engine ([`BudgetValidator`](crate::validate::BudgetValidator)) is the API crate's (checkpoint-autoscaler-api), re-exported
//! here; this module is the subcommand: its arguments and its report.

use std::{path::PathBuf, process::ExitCode};

pub use checkpoint_autoscaler_api::validate::*;
/// The report formats every subcommand offers (text for people, one JSON document for
/// scripts).
pub use checkpoint_autoscaler_controller::recommend::OutputFormat;

/// Arguments of `checkpoint-autoscaler validate`.
#[derive(Debug, clap::Args)]
pub struct ValidateArgs {
    /// Files or directories (searched recursively for *.yaml and *.yml) of Kubernetes
    /// manifests, or `-` for standard input (e.g. `helm template … | … validate -`);
    /// documents that are not CheckpointBudgets are skipped.
    #[arg(required = true, value_name = "PATH")]
    pub paths: Vec<PathBuf>,
    /// Report format: one line per budget (OK) or per problem with a summary on stderr, or
    /// one JSON document listing every budget and its problems.
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
}

/// Runs `checkpoint-autoscaler validate`.
pub fn run(args: ValidateArgs) -> anyhow::Result<ExitCode> {
    let validator = BudgetValidator::new()?;
    let report = validator.validate_paths(&args.paths);
    match args.output {
        OutputFormat::Json => println!("{}", serde_json::to_string_pretty(&report)?),
        OutputFormat::Text => {
            for doc in &report.documents {
                if doc.is_valid() {
                    println!("{}: OK", doc.location());
                } else {
                    for problem in &doc.problems {
                        println!("{}: {problem}", doc.location());
                    }
                }
            }
            let invalid = report.documents.iter().filter(|d| !d.is_valid()).count();
            eprintln!(
                "{} budget(s) checked, {invalid} invalid, {} other document(s) skipped",
                report.documents.len(),
                report.skipped
            );
            if report.documents.is_empty() {
                eprintln!("warning: no CheckpointBudget documents found");
            }
        }
    }
    Ok(if report.is_valid() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
