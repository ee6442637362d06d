//! Starting and stopping an emulator: its configuration, the listener, the routes.

use std::{
    net::{Ipv4Addr, SocketAddr},
    time::Duration,
};

use axum::{Router, routing::post};
use jiff::Timestamp;
use tokio::{net::TcpListener, sync::oneshot, task::JoinHandle};

use super::{
    Backend, EmulatorState, control,
    handlers::{cbor::cloudwatch_handler, root_handler},
    hangup::{Hangup, HangupListener},
    state::Clock,
};
use crate::sim::{Fleet, Scenario, ServiceError};

/// How to run an embedded emulator.
#[derive(Clone, Debug)]
pub struct EmulatorConfig {
    /// Address to bind; port 0 picks a free one.
    pub bind: SocketAddr,
    /// Real time per virtual minute; `None` freezes virtual time (see [`EmulatorState::advance`]).
    pub period: Option<Duration>,
    /// Seed of the model.
    pub seed: u64,
    /// Virtual start time (default: the wall clock, rounded down to the minute).
    pub start: Option<Timestamp>,
    /// Region used in ARNs.
    pub region: String,
    /// Applications to create at start, one per scenario, named by the scenario.
    pub scenarios: Vec<Scenario>,
}

impl Default for EmulatorConfig {
    fn default() -> Self {
        Self {
            bind: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            period: Some(Duration::from_secs(1)),
            seed: 0,
            start: None,
            region: "us-east-1".into(),
            scenarios: Vec::new(),
        }
    }
}

/// Why the emulator could not start.
#[derive(Debug, thiserror::Error)]
pub enum EmulatorError {
    /// The address could not be bound.
    #[error("cannot bind {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A scenario could not be added to the fleet.
    #[error("scenario {name}: {source}")]
    Scenario {
        /// The scenario's name.
        name: String,
        /// The model's refusal.
        #[source]
        source: ServiceError,
    },
    /// The server stopped with an error.
    #[error("server error: {0}")]
    Serve(#[source] std::io::Error),
    /// The server task panicked or was cancelled.
    #[error("server task failed: {0}")]
    Join(#[source] tokio::task::JoinError),
}

/// A running emulator. Dropping it stops the server.
#[derive(Debug)]
pub struct Emulator {
    addr: SocketAddr,
    state: EmulatorState,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<std::io::Result<()>>>,
}

impl Emulator {
    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The endpoint URL to give the SDKs (`http://127.0.0.1:<port>`).
    pub fn endpoint_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The shared state (fleet, clock, faults, call log).
    pub fn state(&self) -> &EmulatorState {
        &self.state
    }

    /// Stops accepting connections, lets requests in flight finish, and waits.
    pub async fn shutdown(mut self) -> Result<(), EmulatorError> {
        if let Some(tx) = self.shutdown.take() {
            // The server may already have stopped; then there is nobody to tell.
            let _ = tx.send(());
        }
        match self.task.take() {
            Some(task) => task
                .await
                .map_err(EmulatorError::Join)?
                .map_err(EmulatorError::Serve),
            None => Ok(()),
        }
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// The virtual start of `config`: its `start`, or the wall clock rounded down to the minute.
pub fn start_time(config: &EmulatorConfig) -> Timestamp {
    config.start.unwrap_or_else(|| {
        let now = Timestamp::now();
        Timestamp::from_second(now.as_second() - now.as_second().rem_euclid(60)).unwrap_or(now)
    })
}

/// Starts an emulator over the model ([`Fleet`]) in this tokio runtime and returns once it
/// is listening.
pub async fn serve(config: EmulatorConfig) -> Result<Emulator, EmulatorError> {
    let start = start_time(&config);
    let fleet = Fleet::new(config.seed, start).with_region(&config.region);
    serve_backend(config, Box::new(fleet)).await
}

/// Starts an emulator over `backend` (whose virtual time starts at [`start_time`]); the
/// config's scenarios are added to it first.
pub async fn serve_backend(
    config: EmulatorConfig,
    mut fleet: Box<dyn Backend>,
) -> Result<Emulator, EmulatorError> {
    let start = start_time(&config);
    for scenario in &config.scenarios {
        fleet
            .add_scenario(scenario, None)
            .map_err(|source| EmulatorError::Scenario {
                name: scenario.name.clone(),
                source,
            })?;
    }
    let state = EmulatorState::new(fleet, Clock::new(start, config.period));
    let listener = TcpListener::bind(config.bind)
        .await
        .map_err(|source| EmulatorError::Bind {
            addr: config.bind,
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| EmulatorError::Bind {
        addr: config.bind,
        source,
    })?;
    let (tx, rx) = oneshot::channel::<()>();
    let app = router(state.clone()).into_make_service_with_connect_info::<Hangup>();
    let task = tokio::spawn(async move {
        axum::serve(HangupListener(listener), app)
            .with_graceful_shutdown(async move {
                // Either an explicit shutdown or the handle being dropped.
                let _ = rx.await;
            })
            .await
    });
    tracing::info!(%addr, "emulator listening");
    Ok(Emulator {
        addr,
        state,
        shutdown: Some(tx),
        task: Some(task),
    })
}

/// The HTTP routes: AWS on `/` and `/service/...`, control under `/_emulator/`.
pub fn router(state: EmulatorState) -> Router {
    Router::new()
        .route("/", post(root_handler))
        .route(
            "/service/GraniteServiceVersion20100801/operation/{operation}",
            post(cloudwatch_handler),
        )
        .nest("/_emulator", control::router())
        .with_state(state)
}
