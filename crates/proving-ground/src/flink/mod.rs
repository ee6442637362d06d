//! `flink`: the emulator's second backend — each application is a real Apache Flink job on
//! a standalone cluster on loopback, with real RocksDB checkpoints, stop-with-savepoint and
//! restore at a new parallelism, and Flink's own refusal to restore above maxParallelism.
//!
//! - [`cluster`]: finds the distribution ([`FlinkHome`]), starts and stops a cluster.
//! - [`job`]: the workload as data ([`Workload`]) and the Table-API job that runs it.
//! - [`rest`]: the client of Flink's REST API.
//! - [`backend`]: [`FlinkFleet`], the Managed Flink service semantics (versions,
//!   operations, `UPDATING`, rollback) over real jobs, and CloudWatch metrics sampled from
//!   the REST API.
//!
//! Setup and what is physical versus only accounted: `docs/flink-backend.md`.

pub mod backend;
pub mod cluster;
pub mod job;
pub mod rest;

use std::time::Duration;

pub use backend::{BackendOptions, FlinkFleet};
pub use cluster::{Cluster, ClusterConfig, FlinkHome};
pub use job::{Workload, WorkloadError};
pub use rest::{RestClient, RestError};

/// What can go wrong running Flink.
#[derive(Debug, thiserror::Error)]
pub enum FlinkError {
    /// No usable distribution or Java.
    #[error("Flink installation: {0}")]
    Home(String),
    /// A file or process operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: &'static str,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// `config.yaml` could not be read or written.
    #[error("config.yaml: {0}")]
    Config(String),
    /// A JobManager or TaskManager process exited; the JobManager log's tail follows.
    #[error("a Flink process exited; JobManager log:\n{0}")]
    ProcessExited(String),
    /// Something did not happen in time.
    #[error("timed out after {after:?} waiting for {what}")]
    Timeout {
        /// What was awaited.
        what: String,
        /// How long.
        after: Duration,
    },
    /// `flink run` did not submit the job; the tail of its output follows.
    #[error("flink run failed:\n{0}")]
    Submit(String),
    /// The job failed (e.g. its state could not be restored); Flink's reason.
    #[error("the job failed: {0}")]
    JobFailed(String),
    /// A stop-with-savepoint failed; the job keeps running.
    #[error("the savepoint failed: {0}")]
    Savepoint(String),
    /// The REST API failed.
    #[error(transparent)]
    Rest(#[from] RestError),
    /// The workload is not runnable.
    #[error(transparent)]
    Workload(#[from] WorkloadError),
}

impl FlinkError {
    fn io(context: &'static str, source: std::io::Error) -> Self {
        Self::Io { context, source }
    }
}
