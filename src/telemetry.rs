//! Logging: `tracing` to stderr, human-readable text or one JSON object per line.
//!
//! The filter comes from `RUST_LOG` (default `info`), so `RUST_LOG=checkpoint_autoscaler=debug`
//! works as usual.

use clap::ValueEnum;
use tracing::Subscriber;
use tracing_subscriber::{EnvFilter, fmt, prelude::*};

/// The log line format (`--log-format`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Compact human-readable lines.
    #[default]
    Text,
    /// One JSON object per line, for log pipelines.
    Json,
}

/// Installs the global subscriber. Returns `false` when one was already installed (tests,
/// or a second subcommand in the same process), which is harmless.
pub fn init(format: LogFormat) -> bool {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    subscriber(format, filter, std::io::stderr).try_init().is_ok()
}

/// The subscriber [`init`] installs, with `filter`, writing to `writer`: tests capture the
/// exact log lines the controller would print this way.
pub fn subscriber<W>(format: LogFormat, filter: EnvFilter, writer: W) -> Box<dyn Subscriber + Send + Sync>
where
    W: for<'w> fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    let registry = tracing_subscriber::registry().with(filter);
    match format {
        LogFormat::Text => Box::new(registry.with(fmt::layer().compact().with_writer(writer))),
        LogFormat::Json => Box::new(
            registry.with(
                fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_current_span(true)
                    .with_writer(writer),
            ),
        ),
    }
}
