//! `checkpoint-autoscaler emulator`: serve the AWS emulator on loopback until Ctrl-C.

use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr},
    path::{Path, PathBuf},
    process::ExitCode,
    time::Duration,
};

use anyhow::Context as _;

use super::{EmulatorConfig, serve, serve_backend, start_time};
use crate::sim::Scenario;

/// `checkpoint-autoscaler emulator`: serve the AWS emulator on loopback.
#[derive(Debug, Clone, clap::Args)]
pub struct EmulatorArgs {
    /// TCP port to listen on (0 picks a free one; the bound address is printed first).
    #[arg(long, default_value_t = 0)]
    pub port: u16,
    /// Address to bind. NB: anything but loopback exposes an unauthenticated control API.
    #[arg(long, default_value_t = IpAddr::V4(Ipv4Addr::LOCALHOST))]
    pub bind: IpAddr,
    /// Real time per virtual minute (one metric period); `0s` freezes virtual time so it
    /// moves only through `POST /_emulator/clock/advance`.
    #[arg(long, default_value = "1s", value_parser = crate::policy::duration::parse)]
    pub period: Duration,
    /// Scenario files (YAML) or directories of them, one application each.
    #[arg(long = "scenario", value_name = "FILE|DIR")]
    pub scenarios: Vec<PathBuf>,
    /// Seed of the model's randomness.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Region used in ARNs.
    #[arg(long, default_value = "us-east-1")]
    pub region: String,
    /// What serves the applications: the model (virtual time) or real Flink jobs on loopback
    /// clusters (see docs/flink-backend.md).
    #[arg(long, value_enum, default_value_t = BackendKind::Model)]
    pub backend: BackendKind,
    /// The Flink distribution for `--backend flink` (default: `$FLINK_HOME`, else what
    /// `scripts/install-flink.sh` installed under `.flink/`).
    #[arg(long, value_name = "DIR")]
    pub flink_home: Option<PathBuf>,
}

/// The emulator's backends.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum BackendKind {
    /// The `sim` model of Managed Flink, in virtual time.
    Model,
    /// Real Apache Flink jobs, one standalone cluster per application.
    Flink,
}

/// Loads scenario files, expanding directories to their `*.yaml`/`*.yml` files (sorted).
pub fn load_scenarios(paths: &[PathBuf]) -> anyhow::Result<Vec<Scenario>> {
    let mut files = Vec::new();
    for path in paths {
        if path.is_dir() {
            let mut found: Vec<PathBuf> = std::fs::read_dir(path)
                .with_context(|| format!("cannot read directory {}", path.display()))?
                .filter_map(|entry| entry.ok().map(|e| e.path()))
                .filter(|p| is_scenario_file(p))
                .collect();
            found.sort();
            files.extend(found);
        } else {
            files.push(path.clone());
        }
    }
    files
        .iter()
        .map(|f| Scenario::load(f).map_err(anyhow::Error::from))
        .collect()
}

fn is_scenario_file(p: &Path) -> bool {
    p.is_file() && p.extension().is_some_and(|e| e == "yaml" || e == "yml")
}

/// Runs `checkpoint-autoscaler emulator` until Ctrl-C (or SIGTERM).
pub fn run(args: EmulatorArgs) -> anyhow::Result<ExitCode> {
    let scenarios = load_scenarios(&args.scenarios)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the tokio runtime")?;
    runtime.block_on(async move {
        let mut config = EmulatorConfig {
            bind: SocketAddr::new(args.bind, args.port),
            period: Some(args.period).filter(|p| !p.is_zero()),
            seed: args.seed,
            start: None,
            region: args.region,
            scenarios,
        };
        // One virtual start for the clock and the backend.
        config.start = Some(start_time(&config));
        let emulator = match args.backend {
            BackendKind::Model => serve(config).await?,
            BackendKind::Flink => {
                let home = crate::flink::FlinkHome::locate(args.flink_home.as_deref())?;
                let options = crate::flink::BackendOptions {
                    seed: config.seed,
                    region: config.region.clone(),
                    ..crate::flink::BackendOptions::default()
                };
                let fleet = crate::flink::FlinkFleet::new(home, options, start_time(&config))?;
                serve_backend(config, Box::new(fleet)).await?
            }
        };
        {
            use std::io::Write as _;
            let mut out = std::io::stdout().lock();
            writeln!(out, "{}", emulator.endpoint_url()).context("cannot write the address to stdout")?;
            out.flush().context("cannot flush stdout")?;
        }
        eprintln!(
            "emulator: kinesisanalyticsv2 and CloudWatch at {url}, control API at {url}/_emulator/ (Ctrl-C stops)",
            url = emulator.endpoint_url()
        );
        shutdown_signal().await;
        emulator.shutdown().await?;
        Ok(ExitCode::SUCCESS)
    })
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        let term = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut s) => {
                    s.recv().await;
                }
                // Without a SIGTERM handler the default action still ends the process.
                Err(_) => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {},
            _ = term => {},
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
