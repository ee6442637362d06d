//! Helper methods only available for tests: a scripted, mocked API server
//! ([`ApiServerVerifier`]) and fake AWS clients.
//!
//! The mocked API server sits at the HTTP layer (`tower_test::mock`), so a test asserts the
//! exact requests the controller sends (method, URI with `fieldManager` and `force`, body)
//! and answers them as the API server would. A request the script does not expect fails the
//! reconcile with `Service(Closed(()))`; an expected request that never comes fails the
//! test through [`timeout_after_1s`].

use http::{Method, Request, Response};
use kube::client::Body;
use serde::Serialize;
use serde_json::Value;

type ApiServerHandle = tower_test::mock::Handle<Request<Body>, Response<Body>>;

/// The scripted API server: tests pull the controller's requests one at a time.
pub struct ApiServerVerifier(ApiServerHandle);

/// One request received by the mocked API server, waiting for its reply.
pub struct Exchange {
    method: Method,
    uri: String,
    body: Vec<u8>,
    reply: tower_test::mock::SendResponse<Response<Body>>,
}

/// Awaits a scenario, failing the test when it does not complete within a second (a call
/// the controller never made) or when one of its assertions failed.
pub async fn timeout_after_1s(handle: tokio::task::JoinHandle<()>) {
    tokio::time::timeout(std::time::Duration::from_secs(1), handle)
        .await
        .expect("timeout on mock apiserver")
        .expect("scenario succeeded")
}

impl ApiServerVerifier {
    /// Wraps the handle half of `tower_test::mock::pair()`.
    pub fn new(handle: ApiServerHandle) -> Self {
        Self(handle)
    }

    /// Takes the next request and asserts its method and exact URI (query included).
    pub async fn expect(&mut self, method: Method, uri: &str) -> Exchange {
        let exchange = self.next().await;
        assert_eq!(exchange.method, method, "method of {}", exchange.uri);
        assert_eq!(exchange.uri, uri);
        exchange
    }

    /// Takes the next request, whatever it is.
    pub async fn next(&mut self) -> Exchange {
        let (request, reply) = self.0.next_request().await.expect("service not called");
        let method = request.method().clone();
        let uri = request.uri().to_string();
        let body = request
            .into_body()
            .collect_bytes()
            .await
            .expect("request body")
            .to_vec();
        Exchange {
            method,
            uri,
            body,
            reply,
        }
    }

    /// Asserts that no further request arrives (the controller is done).
    pub async fn expect_silence(mut self) {
        let next = tokio::time::timeout(std::time::Duration::from_millis(50), self.0.next_request()).await;
        if let Ok(Some((request, _))) = next {
            panic!("unexpected request {} {}", request.method(), request.uri());
        }
    }
}

impl Exchange {
    /// The request body as JSON.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("request body is JSON")
    }

    /// The request URI.
    pub fn uri(&self) -> &str {
        &self.uri
    }

    /// The request method.
    pub fn method(&self) -> &Method {
        &self.method
    }

    /// Replies 200 with `body` as JSON.
    pub fn reply_json(self, body: &impl Serialize) {
        let bytes = serde_json::to_vec(body).expect("serializable reply");
        self.reply
            .send_response(Response::builder().status(200).body(Body::from(bytes)).expect("response"));
    }

    /// Replies 200 with the request body itself (what an API server answers to a create).
    pub fn echo(self) {
        let body = self.body.clone();
        self.reply
            .send_response(Response::builder().status(200).body(Body::from(body)).expect("response"));
    }

    /// Replies with a `Status` failure of `code` and `reason`.
    pub fn reply_status(self, code: u16, reason: &str) {
        let status = serde_json::json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": format!("{reason} (mocked)"), "reason": reason, "code": code,
        });
        let bytes = serde_json::to_vec(&status).expect("serializable status");
        self.reply.send_response(
            Response::builder()
                .status(code)
                .body(Body::from(bytes))
                .expect("response"),
        );
    }
}
