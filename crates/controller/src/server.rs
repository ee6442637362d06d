//! The HTTP endpoints: `/metrics` (Prometheus), `/healthz` (the process is alive and not
//! stuck) and `/readyz` (the CRD is reachable and this replica is leader or a healthy
//! standby).
//!
//! `/healthz` answers 503, saying why, when the budget watch has made no progress (no
//! answer, event, bookmark or list) for longer than its bound while this replica leads, or
//! when the leader elector has not completed an attempt for longer than its bound (cf.
//! client-go's `HealthzAdaptor`, which fails a leader that could not renew): the kubelet
//! then restarts the container, which neither can do from inside.

use std::{net::SocketAddr, time::Duration};

use axum::{Router, extract::State as AxumState, http::StatusCode, response::IntoResponse, routing::get};
use kube::api::{Api, ListParams};
use tokio::sync::watch;

use super::{
    fence::brief,
    kubeclient::WatchProgress,
    leader::{Role, Tenure},
};
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
    /// What `/healthz` checks.
    pub health: Health,
}

/// What `/healthz` checks, and the bounds.
#[derive(Clone, Debug)]
pub struct Health {
    /// The budget watch's progress (checked only while the watch runs).
    pub watch: WatchProgress,
    /// How long the watch may go without progress.
    pub watch_stall: Duration,
    /// The elector's tenure and how long it may go without completing an attempt (`None`
    /// without leader election).
    pub elector: Option<(Tenure, Duration)>,
}

impl Health {
    /// Why the process is stuck, if it is.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if let Some(since) = self.watch.since()
            && since > self.watch_stall
        {
            problems.push(format!(
                "the CheckpointBudget watch has made no progress (no answer, event, bookmark or list) for {} \
                 (bound {})",
                brief(since),
                brief(self.watch_stall)
            ));
        }
        if let Some((tenure, bound)) = &self.elector {
            let since = tenure.since_cycle();
            if since > *bound {
                problems.push(format!(
                    "the leader elector has not completed an attempt on the Lease for {} (bound {})",
                    brief(since),
                    brief(*bound)
                ));
            }
        }
        problems
    }
}

/// The router, separate from the listener so tests can call it directly.
pub fn router(state: State) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(state)
}

/// A running HTTP server.
pub struct Server {
    /// The bound address.
    pub addr: SocketAddr,
    /// The serving task; ends after the shutdown future resolves.
    pub task: tokio::task::JoinHandle<()>,
}

/// Binds `addr` and serves until `shutdown` resolves.
pub async fn serve(
    addr: SocketAddr,
    state: State,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<Server> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let addr = listener.local_addr()?;
    tracing::info!(%addr, "serving /metrics, /healthz, /readyz");
    let app = router(state);
    let task = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).with_graceful_shutdown(shutdown).await {
            tracing::error!(error = %e, "HTTP server failed");
        }
    });
    Ok(Server { addr, task })
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

async fn healthz(AxumState(state): AxumState<State>) -> impl IntoResponse {
    let problems = state.health.problems();
    if problems.is_empty() {
        (StatusCode::OK, "ok".to_owned())
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("unhealthy: {}", problems.join("; ")),
        )
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

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, SocketAddr};

    use http::Method;
    use kube::Client;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;
    use crate::fixtures::{ApiServerVerifier, NAMESPACE};

    /// One HTTP/1.1 GET over a fresh connection; returns the status line and the body.
    async fn get(addr: SocketAddr, path: &str) -> (String, String) {
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).await.unwrap();
        let status = response.lines().next().unwrap_or_default().to_owned();
        let body = response.split("\r\n\r\n").nth(1).unwrap_or_default().to_owned();
        (status, body)
    }

    #[tokio::test]
    async fn serves_health_readiness_and_metrics() {
        let (service, handle) = tower_test::mock::pair();
        let mut api = ApiServerVerifier::new(handle);
        let budgets = Api::namespaced(Client::new(service, "default"), NAMESPACE);
        let (role_tx, role) = watch::channel(Role::Candidate);
        let metrics = Metrics::default();
        metrics.decision("hold", "WithinBudget");
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let server = serve(
            SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            State {
                metrics,
                budgets,
                role,
                health: Health {
                    watch: WatchProgress::default(),
                    watch_stall: Duration::from_secs(180),
                    elector: None,
                },
            },
            async move {
                let _ = stop_rx.await;
            },
        )
        .await
        .unwrap();
        let addr = server.addr;

        assert!(get(addr, "/healthz").await.0.contains("200"));
        let (status, body) = get(addr, "/readyz").await;
        assert!(
            status.contains("503") && body.contains("pending"),
            "{status} {body}"
        );

        role_tx.send_replace(Role::Standby {
            holder: Some("pod-b".into()),
        });
        let apiserver = tokio::spawn(async move {
            let exchange = api
                .expect(
                    Method::GET,
                    &format!("/apis/checkpoint-autoscaler.dev/v1alpha1/namespaces/{NAMESPACE}/checkpointbudgets?&limit=1"),
                )
                .await;
            exchange.reply_json(&serde_json::json!({
                "apiVersion": "checkpoint-autoscaler.dev/v1alpha1", "kind": "CheckpointBudgetList",
                "metadata": {}, "items": []
            }));
            api
        });
        let (status, body) = get(addr, "/readyz").await;
        assert!(
            status.contains("200") && body.contains("standby, leader is pod-b"),
            "{status} {body}"
        );
        let api = apiserver.await.unwrap();

        // The API server is gone: not ready.
        drop(api);
        let (status, body) = get(addr, "/readyz").await;
        assert!(
            status.contains("503") && body.contains("unreachable"),
            "{status} {body}"
        );

        let (status, body) = get(addr, "/metrics").await;
        assert!(status.contains("200"));
        assert!(
            body.contains(r#"checkpoint_autoscaler_decisions_total{kind="hold",reason="WithinBudget"} 1"#)
        );

        role_tx.send_replace(Role::Lost);
        assert!(get(addr, "/readyz").await.0.contains("503"));
        let _ = stop_tx.send(());
        server.task.await.unwrap();
    }

    /// `/healthz` fails, saying why, once the watch has made no progress for longer than its
    /// bound while it runs, or the elector has not completed an attempt for longer than its
    /// bound; it recovers with either.
    #[tokio::test(start_paused = true)]
    async fn health_fails_when_the_watch_or_the_elector_is_stuck() {
        use axum::body::to_bytes;
        use tower::ServiceExt;

        let (service, _handle) =
            tower_test::mock::pair::<http::Request<kube::client::Body>, http::Response<kube::client::Body>>();
        let budgets = Api::namespaced(Client::new(service, "default"), NAMESPACE);
        let (_role_tx, role) = watch::channel(Role::Leader);
        let watch = WatchProgress::default();
        let tenure = Tenure::default();
        let app = router(State {
            metrics: Metrics::default(),
            budgets,
            role,
            health: Health {
                watch: watch.clone(),
                watch_stall: Duration::from_secs(180),
                elector: Some((tenure.clone(), Duration::from_secs(44))),
            },
        });
        let health = || async {
            let response = app
                .clone()
                .oneshot(
                    http::Request::get("/healthz")
                        .body(axum::body::Body::empty())
                        .unwrap(),
                )
                .await
                .unwrap();
            let status = response.status();
            let body = to_bytes(response.into_body(), 4096).await.unwrap();
            (status, String::from_utf8(body.to_vec()).unwrap())
        };
        // A standby: no watch runs; the elector cycles.
        tokio::time::advance(Duration::from_secs(40)).await;
        assert_eq!(health().await.0, StatusCode::OK);
        tokio::time::advance(Duration::from_secs(5)).await;
        let (status, body) = health().await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(
            body.contains("leader elector has not completed an attempt"),
            "{body}"
        );
        assert!(body.contains("for 45s (bound 44s)"), "{body}");

        // The leader's watch: fine while it progresses, stuck past its bound.
        let problems = Health {
            watch: watch.clone(),
            watch_stall: Duration::from_secs(180),
            elector: None,
        };
        watch.start();
        tokio::time::advance(Duration::from_secs(179)).await;
        assert!(problems.problems().is_empty());
        watch.stamp();
        tokio::time::advance(Duration::from_secs(181)).await;
        let stuck = problems.problems();
        assert_eq!(stuck.len(), 1);
        assert!(
            stuck[0].contains("CheckpointBudget watch has made no progress"),
            "{stuck:?}"
        );
        let (status, body) = health().await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(body.contains("watch") && body.contains("elector"), "{body}");
        watch.stamp();
        assert!(problems.problems().is_empty());
        watch.stop();
        tokio::time::advance(Duration::from_secs(600)).await;
        assert!(problems.problems().is_empty(), "no watch, nothing to check");
    }
}
