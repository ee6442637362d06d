//! The HTTP endpoints: `/metrics` (Prometheus), `/healthz` (the process is alive) and
//! `/readyz` (the CRD is reachable and this replica is leader or a healthy standby).

use std::net::SocketAddr;

use axum::{Router, extract::State as AxumState, http::StatusCode, response::IntoResponse, routing::get};
use kube::api::{Api, ListParams};
use tokio::sync::watch;

use super::leader::Role;
use crate::{crd::CheckpointBudget, metrics::Metrics};

/// What the endpoints read.
#[derive(Clone)]
pub struct State {
    /// The metrics to encode.
    pub metrics: Metrics,
    /// The budgets API, to check the CRD is reachable.
    pub budgets: Api<CheckpointBudget>,
    /// This replica's leader election role.
    pub role: watch::Receiver<Role>,
}

/// The router, separate from the listener so tests can call it directly.
pub fn router(state: State) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .with_state(state)
}

/// Binds `addr` and serves until `shutdown` resolves; returns the server's task.
pub async fn serve(
    addr: SocketAddr,
    state: State,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<tokio::task::JoinHandle<()>> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!(addr = %listener.local_addr()?, "serving /metrics, /healthz, /readyz");
    let app = router(state);
    Ok(tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).with_graceful_shutdown(shutdown).await {
            tracing::error!(error = %e, "HTTP server failed");
        }
    }))
}

async fn metrics(AxumState(state): AxumState<State>) -> impl IntoResponse {
    match state.metrics.encode() {
        Ok(text) => (
            StatusCode::OK,
            [(
                "content-type",
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Err(_) => (StatusCode::INTERNAL_SERVER_ERROR, "metrics encoding failed").into_response(),
    }
}

async fn readyz(AxumState(state): AxumState<State>) -> impl IntoResponse {
    let role = state.role.borrow().clone();
    match role {
        Role::Leader | Role::Standby { .. } => {}
        Role::Candidate => {
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                "leader election pending".to_owned(),
            );
        }
        Role::Lost => return (StatusCode::SERVICE_UNAVAILABLE, "leadership lost".to_owned()),
    }
    match state.budgets.list(&ListParams::default().limit(1)).await {
        Ok(_) => (StatusCode::OK, format!("ok ({})", describe(&role))),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("CheckpointBudget API unreachable: {e}"),
        ),
    }
}

fn describe(role: &Role) -> String {
    match role {
        Role::Leader => "leader".into(),
        Role::Standby { holder: Some(h) } => format!("standby, leader is {h}"),
        Role::Standby { holder: None } => "standby".into(),
        Role::Candidate | Role::Lost => "not ready".into(),
    }
}
