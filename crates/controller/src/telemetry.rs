//! Logging: `tracing` to stderr, human-readable text or one JSON object per line.
//!
//! The filter comes from `RUST_LOG` (default `info`), so `RUST_LOG=checkpoint_autoscaler=debug`
//! works as usual, with one exception that no filter lifts: the AWS SDK's `trace` events
//! that can print HTTP bodies ([`WIRE_TARGETS`](crate::telemetry::WIRE_TARGETS)) are always dropped. The SDK redacts the
//! bodies of sensitive operations by default, but prints them whole when the environment
//! sets `LOG_SENSITIVE_BODIES=true` or `LOG_SIGNABLE_BODY=true` — and STS's answers carry
//! secret keys and session tokens, DescribeApplication's an application's environment
//! properties. No setting may put those in the controller's logs.

use clap::ValueEnum;
use tracing::{Level, Metadata, Subscriber};
use tracing_subscriber::{EnvFilter, filter::filter_fn, fmt, prelude::*};

/// The SDK's log targets whose `trace` events print HTTP request or response bodies (and
/// the requests signed): kept at `debug` at most, whatever `RUST_LOG` says.
pub const WIRE_TARGETS: [&str; 2] = [
    // "read HTTP response body": the whole response, when LOG_SENSITIVE_BODIES is set or
    // the operation's output is not modelled as sensitive.
    "aws_smithy_runtime::client::orchestrator::http",
    // "signing request": the signable body, when LOG_SIGNABLE_BODY is set.
    "aws_sigv4",
];

/// Whether an event or span may be logged at all: not a `trace` one of [`WIRE_TARGETS`].
fn outside_the_wire(metadata: &Metadata<'_>) -> bool {
    *metadata.level() != Level::TRACE
        || !WIRE_TARGETS.iter().any(|target| {
            metadata
                .target()
                .strip_prefix(target)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with("::"))
        })
}

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
    let registry = tracing_subscriber::registry()
        .with(filter)
        .with(filter_fn(outside_the_wire));
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_level_traces_are_dropped_whatever_the_filter() {
        use std::sync::{Arc, Mutex};
        let lines = Arc::new(Mutex::new(Vec::<u8>::new()));
        let sink = lines.clone();
        let writer = move || {
            struct W(Arc<Mutex<Vec<u8>>>);
            impl std::io::Write for W {
                fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                    self.0.lock().unwrap().extend_from_slice(buf);
                    Ok(buf.len())
                }
                fn flush(&mut self) -> std::io::Result<()> {
                    Ok(())
                }
            }
            W(sink.clone())
        };
        let subscriber = subscriber(
            LogFormat::Json,
            EnvFilter::new("trace,aws_sigv4=trace,aws_smithy_runtime::client::orchestrator::http=trace"),
            writer,
        );
        tracing::subscriber::with_default(subscriber, || {
            tracing::trace!(target: "aws_smithy_runtime::client::orchestrator::http", "body-of-a-response");
            tracing::trace!(target: "aws_sigv4::http_request::sign", "body-of-a-request");
            tracing::debug!(target: "aws_sigv4::http_request::sign", "debug-is-kept");
            tracing::trace!(target: "aws_sigv4x", "another-crate-is-kept");
            tracing::trace!(target: "aws_smithy_runtime::client::orchestrator", "the-orchestrator-is-kept");
        });
        let text = String::from_utf8(lines.lock().unwrap().clone()).unwrap();
        assert!(!text.contains("body-of-a-"), "{text}");
        for kept in [
            "debug-is-kept",
            "another-crate-is-kept",
            "the-orchestrator-is-kept",
        ] {
            assert!(text.contains(kept), "{kept} missing: {text}");
        }
    }
}
