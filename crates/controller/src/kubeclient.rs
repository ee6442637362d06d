//! The Kubernetes client: a time bound on every call, and the progress of the budget watch.
//!
//! kube's `Config` has no read timeout by default, so a request the API server accepts and
//! never answers hangs for ever: a Lease renewal, a status patch, an Event. The controller
//! builds two clients from one `Config`:
//!
//! - **calls** (Leases, status writes, Events, the readiness check): every request must be
//!   answered within [`KubeTimeouts::request`] (the whole request, the client's own retries
//!   of 429/503/504 included), and the socket read and write timeouts are the same;
//! - **watches** (the budget watch and its lists): a watch asks the server to end it after
//!   [`KubeTimeouts::watch`] (`timeoutSeconds`), and the socket read timeout is longer than
//!   that, so a connection that goes silent is dropped and the watch resumed; its lists are
//!   bounded like calls, by [`KubeTimeouts::watch`]. Every answer and every chunk received
//!   (events, bookmarks, lists) is progress ([`WatchProgress`]), which `/healthz` watches.

use std::{
    pin::Pin,
    sync::{Arc, Mutex},
    task::{Context, Poll},
    time::Duration,
};

use http::{Request, Response, Uri};
use http_body_util::{BodyExt, combinators::UnsyncBoxBody};
use hyper::body::{Body as HttpBody, Bytes};
use kube::{Client, client::ClientBuilder};
use tokio::time::Instant;
use tower::{BoxError, Layer, Service};

/// How long Kubernetes calls may take.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KubeTimeouts {
    /// Every request but a watch: connecting, sending and answering (`--kube-timeout`).
    pub request: Duration,
    /// A watch's server-side timeout (`timeoutSeconds`), also the bound on the watch's lists.
    pub watch: Duration,
}

impl Default for KubeTimeouts {
    fn default() -> Self {
        Self {
            request: Duration::from_secs(10),
            watch: Duration::from_secs(60),
        }
    }
}

impl KubeTimeouts {
    /// The socket read timeout of watches: past the server's own end of the watch (and past
    /// kube's idle timeout of 5 s more), so only a silent connection trips it.
    pub fn watch_read(&self) -> Duration {
        self.watch + Duration::from_secs(15)
    }

    /// How long the budget watch may go without progress before it counts as stuck: three
    /// of its server-side timeouts, each of which ends with a new watch request answered.
    pub fn watch_stall(&self) -> Duration {
        self.watch * 3
    }

    /// The watch's `timeoutSeconds`.
    pub fn watch_seconds(&self) -> u32 {
        u32::try_from(self.watch.as_secs().max(1)).unwrap_or(u32::MAX)
    }
}

/// The two clients of the controller.
#[derive(Clone)]
pub struct KubeClients {
    /// Leases, status writes, Events, readiness.
    pub calls: Client,
    /// The budget watch.
    pub watches: Client,
    /// The budget watch's progress, stamped by `watches`.
    pub progress: WatchProgress,
}

/// Builds the clients from `config` (`Config::infer()` in the cluster, a URL in tests).
pub fn clients(config: kube::Config, timeouts: KubeTimeouts) -> Result<KubeClients, kube::Error> {
    let progress = WatchProgress::default();
    let calls = {
        let mut config = config.clone();
        config.connect_timeout = Some(timeouts.request);
        config.read_timeout = Some(timeouts.request);
        config.write_timeout = Some(timeouts.request);
        config.reset_reader_on_write = true;
        ClientBuilder::try_from(config)?
            .with_layer(&Bounded {
                total: timeouts.request,
                progress: None,
            })
            .build()
    };
    let watches = {
        let mut config = config;
        config.connect_timeout = Some(timeouts.request);
        config.read_timeout = Some(timeouts.watch_read());
        config.write_timeout = Some(timeouts.request);
        config.reset_reader_on_write = true;
        ClientBuilder::try_from(config)?
            .with_layer(&Bounded {
                total: timeouts.watch,
                progress: Some(progress.clone()),
            })
            .build()
    };
    Ok(KubeClients {
        calls,
        watches,
        progress,
    })
}

/// When the budget watch last made progress: an answer or a chunk of one received (an
/// event, a bookmark, a list). Cheap to clone; clones share the stamp.
#[derive(Clone, Debug, Default)]
pub struct WatchProgress(Arc<Mutex<Option<Instant>>>);

impl WatchProgress {
    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Instant>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The watch starts (this replica leads): progress is expected from now on.
    pub fn start(&self) {
        *self.lock() = Some(Instant::now());
    }

    /// The watch stops (shutdown): no progress is expected.
    pub fn stop(&self) {
        *self.lock() = None;
    }

    /// Records progress (only while the watch runs).
    pub fn stamp(&self) {
        let mut last = self.lock();
        if last.is_some() {
            *last = Some(Instant::now());
        }
    }

    /// How long since the last progress; `None` when no watch runs.
    pub fn since(&self) -> Option<Duration> {
        self.lock().map(|at| at.elapsed())
    }
}

/// A request the API server did not answer in time.
#[derive(Debug, thiserror::Error)]
#[error("the Kubernetes API server did not answer within {0:?}")]
pub struct TimedOut(pub Duration);

/// The layer bounding every request but watches, and stamping progress.
#[derive(Clone, Debug)]
struct Bounded {
    total: Duration,
    progress: Option<WatchProgress>,
}

impl<S> Layer<S> for Bounded {
    type Service = BoundedService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        BoundedService {
            inner,
            total: self.total,
            progress: self.progress.clone(),
        }
    }
}

#[derive(Clone)]
struct BoundedService<S> {
    inner: S,
    total: Duration,
    progress: Option<WatchProgress>,
}

/// `watch=true` in the query: a watch, whose answer streams for as long as the watch runs.
fn is_watch(uri: &Uri) -> bool {
    uri.query()
        .is_some_and(|q| q.split('&').any(|kv| kv == "watch=true" || kv == "watch=1"))
}

type BoxedBody = UnsyncBoxBody<Bytes, BoxError>;

impl<S, B> Service<Request<kube::client::Body>> for BoundedService<S>
where
    S: Service<Request<kube::client::Body>, Response = Response<B>>,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
    B: HttpBody<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    type Response = Response<BoxedBody>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: Request<kube::client::Body>) -> Self::Future {
        let watch = is_watch(request.uri());
        let total = self.total;
        let progress = self.progress.clone();
        let answer = self.inner.call(request);
        Box::pin(async move {
            let response = if watch {
                // NB: a watch is bounded by the socket read timeout and kube's idle timeout:
                // its answer streams until the server ends it.
                answer.await.map_err(Into::into)?
            } else {
                tokio::time::timeout(total, answer)
                    .await
                    .map_err(|_| BoxError::from(TimedOut(total)))?
                    .map_err(Into::into)?
            };
            let Some(progress) = progress else {
                return Ok(response.map(|body| body.map_err(Into::into).boxed_unsync()));
            };
            if response.status().is_success() {
                progress.stamp();
            }
            Ok(response.map(|body| {
                body.map_err(Into::into)
                    .inspect_frame(move |_| progress.stamp())
                    .boxed_unsync()
            }))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watches_are_told_apart_by_their_query() {
        let uri = |s: &str| s.parse::<Uri>().unwrap();
        assert!(is_watch(&uri(
            "/apis/checkpoint-autoscaler.dev/v1alpha1/checkpointbudgets?&watch=true&timeoutSeconds=60"
        )));
        assert!(!is_watch(&uri(
            "/apis/checkpoint-autoscaler.dev/v1alpha1/checkpointbudgets?&limit=1"
        )));
        assert!(!is_watch(&uri("/api/v1/namespaces/x/configmaps/watch=true")));
    }

    /// An API server that accepts connections and never answers: every call fails within
    /// the request timeout instead of hanging; a watch's progress is stamped only while it
    /// runs.
    #[tokio::test]
    async fn a_silent_api_server_fails_calls_within_the_bound() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let held = tokio::spawn(async move {
            let mut open = Vec::new();
            while let Ok((socket, _)) = listener.accept().await {
                open.push(socket);
            }
        });
        let timeouts = KubeTimeouts {
            request: Duration::from_millis(300),
            watch: Duration::from_secs(1),
        };
        crate::install_crypto_provider();
        let clients = clients(
            kube::Config::new(format!("http://{addr}").parse().unwrap()),
            timeouts,
        )
        .unwrap();
        let leases: kube::Api<k8s_openapi::api::coordination::v1::Lease> =
            kube::Api::namespaced(clients.calls.clone(), "ops");
        let started = std::time::Instant::now();
        let err = leases.get("checkpoint-autoscaler").await.unwrap_err();
        let took = started.elapsed();
        assert!(took < Duration::from_secs(2), "took {took:?}");
        assert!(err.to_string().contains("did not answer within"), "{err}");

        // A list on the watch client is bounded by the watch timeout.
        let budgets: kube::Api<crate::crd::CheckpointBudget> = kube::Api::all(clients.watches.clone());
        let started = std::time::Instant::now();
        assert!(budgets.list(&Default::default()).await.is_err());
        assert!(started.elapsed() < Duration::from_secs(3));

        assert_eq!(clients.progress.since(), None);
        clients.progress.start();
        clients.progress.stamp();
        assert!(clients.progress.since().unwrap() < Duration::from_secs(1));
        clients.progress.stop();
        assert_eq!(clients.progress.since(), None);
        held.abort();
    }
}
