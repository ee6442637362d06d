//! A strict in-memory Kubernetes API server for tests that several `kube::Client`s share:
//! exactly the resources and verbs the controller uses, answered the way the real API
//! server answers them (`k8s.io/apiserver` generic registry, `apiextensions-apiserver` for
//! the custom resource), so that two controllers can race on it.
//!
//! What it serves:
//!
//! - `coordination.k8s.io/v1` Leases: `get`, `create` (`POST`; a `resourceVersion` in the
//!   body is refused as etcd refuses it; an existing name is 409 `AlreadyExists`), `update`
//!   (`PUT`; Leases allow no unconditional update, so a missing `resourceVersion` is 422
//!   `Invalid` and a stale one 409 `Conflict`, "the object has been modified").
//! - `checkpoint-autoscaler.dev/v1alpha1` CheckpointBudgets: `list` (all namespaces or
//!   one; `resourceVersion=0` served from the current state; `limit`/`continue`, with a
//!   stale continue token 410 `Expired`), `watch` (from a `resourceVersion`, replaying the
//!   changes after it from a bounded log, 410 `Expired` as an `ERROR` event when it is older
//!   than the log; bookmarks when `allowWatchBookmarks=true`; ended by the server after
//!   `timeoutSeconds`), `get`, and `patch` of the `status` subresource: server-side apply
//!   (`application/apply-patch+yaml`, `fieldManager` required, field ownership per status
//!   field with 409 conflicts unless `force=true`), JSON merge patch and JSON patch
//!   (`add`, `remove`, `replace`, `test`). A `resourceVersion` in the patch is a
//!   precondition (409 on mismatch). As the status strategy does, only `status` changes:
//!   `spec` and `metadata` keep their values and `generation` does not move. Fields the
//!   CRD's status schema does not define are pruned, and a status that does not decode is
//!   422 `Invalid`. Budgets are created by the test ([`ApiServer::create_budget`], checked
//!   against the CRD with the project's validator).
//! - `events.k8s.io/v1` Events: `create` (validated as the API server validates v1 Events:
//!   `eventTime`, `reportingController`, `reportingInstance`, `action`, `reason`, `type`,
//!   `regarding`, a note of at most 1 kB) and merge `patch` (series updates).
//!
//! Every request needs a bearer token of a known client ([`ApiServer::config`] writes one
//! to a file for kube's `Config`), so requests are told apart by client. Every request is
//! logged ([`ApiServer::requests`]) with its client, arrival and answer. Requests can be
//! held ([`ApiServer::hold`]): a matching request waits (for a fixed delay or until
//! released) before it is served, as when the API server or the network stalls; a request
//! held past its client's timeout is still served when released, as a write that commits
//! after its client gave up.

#![allow(dead_code)]
// NB: the handlers' early returns carry the API server's answer itself (a `Response`); its
// size does not matter in a test server.
#![allow(clippy::result_large_err)]

use std::{
    collections::{BTreeMap, BTreeSet, VecDeque},
    net::SocketAddr,
    path::PathBuf,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use axum::{
    Router,
    body::{Body, Bytes},
    extract::State,
    http::{HeaderMap, Method, StatusCode, Uri},
    response::{IntoResponse, Response},
};
use checkpoint_autoscaler::{
    crd::{CheckpointBudget, CheckpointBudgetStatus},
    validate::BudgetValidator,
};
use kube::CustomResourceExt;
use serde_json::{Map, Value, json};
use tokio::sync::{broadcast, watch};

/// How the server behaves.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// How often a watch with `allowWatchBookmarks=true` gets a bookmark (the real server:
    /// about a minute).
    pub bookmark_every: Duration,
    /// How many budget changes are kept for watches to resume from.
    pub watch_log: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            bookmark_every: Duration::from_secs(1),
            watch_log: 1000,
        }
    }
}

/// One request as the server saw it.
#[derive(Clone, Debug)]
pub struct Request {
    /// Order of arrival, from 1.
    pub seq: u64,
    /// The client (from its bearer token).
    pub client: String,
    pub method: Method,
    /// Path and query.
    pub uri: String,
    /// When it arrived.
    pub arrived: Instant,
    /// When it was answered (after any hold).
    pub answered: Instant,
    /// The HTTP status answered (200 for a watch, whatever it streamed).
    pub status: u16,
    /// The request body (JSON or YAML text).
    pub body: String,
}

/// A successful write of a budget's status.
#[derive(Clone, Debug)]
pub struct StatusWrite {
    pub client: String,
    pub namespace: String,
    pub name: String,
    /// When it was applied.
    pub at: Instant,
    /// The resourceVersion it produced.
    pub resource_version: u64,
    /// The status after the write.
    pub status: Value,
}

/// A successful write of a Lease.
#[derive(Clone, Debug)]
pub struct LeaseWrite {
    pub client: String,
    pub at: Instant,
    /// `spec.holderIdentity` after the write (`None`: released).
    pub holder: Option<String>,
}

/// Which requests to hold, and for how long.
#[derive(Clone, Debug, Default)]
pub struct Hold {
    /// Only this client's requests.
    pub client: Option<String>,
    /// Only this method.
    pub method: Option<Method>,
    /// Only requests whose path and query contain this.
    pub path_contains: Option<String>,
    /// Only requests whose body contains this.
    pub body_contains: Option<String>,
    /// Served after this delay; `None`: held until [`ApiServer::release`].
    pub delay: Option<Duration>,
    /// Hold at most this many requests (then the rule stops matching); `None`: all.
    pub times: Option<usize>,
}

#[derive(Debug)]
struct HoldRule {
    hold: Hold,
    matched: usize,
}

/// The stored objects.
#[derive(Default)]
struct Store {
    /// The cluster-wide resourceVersion (etcd's revision).
    revision: u64,
    leases: BTreeMap<(String, String), Value>,
    budgets: BTreeMap<(String, String), Budget>,
    events: BTreeMap<(String, String), Value>,
    /// Budget changes for watches: (revision, type, object).
    log: VecDeque<(u64, &'static str, Value)>,
    /// The oldest revision a watch may resume from.
    log_start: u64,
    requests: Vec<Request>,
    status_writes: Vec<StatusWrite>,
    lease_writes: Vec<LeaseWrite>,
    uid: u64,
}

struct Budget {
    object: Value,
    /// The field manager of each top-level status field (server-side apply's ownership, at
    /// the granularity the controller uses: it owns the whole status).
    owners: BTreeMap<String, String>,
}

struct Shared {
    config: ServerConfig,
    store: Mutex<Store>,
    changes: broadcast::Sender<(u64, &'static str, Value)>,
    /// Ends every open watch.
    drops: broadcast::Sender<()>,
    tokens: BTreeMap<String, String>,
    holds: Mutex<BTreeMap<u64, HoldRule>>,
    /// The ids of the holds in force.
    active: watch::Sender<BTreeSet<u64>>,
    next_hold: Mutex<u64>,
    validator: BudgetValidator,
    status_schema: Value,
}

/// The running server.
pub struct ApiServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    dir: tempfile::TempDir,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

const BUDGETS: &str = "checkpointbudgets";
const GROUP: &str = "checkpoint-autoscaler.dev";
const VERSION: &str = "v1alpha1";

impl ApiServer {
    /// Serves on 127.0.0.1 for the clients named in `clients` (each gets its own token).
    pub async fn start(clients: &[&str], config: ServerConfig) -> Self {
        let tokens = clients
            .iter()
            .map(|c| (format!("token-{c}-{}", std::process::id()), (*c).to_owned()))
            .collect();
        let crd = serde_json::to_value(CheckpointBudget::crd()).unwrap();
        let status_schema =
            crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["status"].clone();
        assert!(status_schema.is_object(), "the CRD has a status schema");
        let (changes, _) = broadcast::channel(1024);
        let (drops, _) = broadcast::channel(4);
        let shared = Arc::new(Shared {
            config,
            store: Mutex::new(Store::default()),
            changes,
            drops,
            tokens,
            holds: Mutex::default(),
            active: watch::Sender::new(BTreeSet::new()),
            next_hold: Mutex::new(0),
            validator: BudgetValidator::new().unwrap(),
            status_schema,
        });
        let app = Router::new().fallback(handle).with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self {
            addr,
            shared,
            dir: tempfile::tempdir().unwrap(),
            task,
        }
    }

    /// A kube `Config` for `client`: this server's URL and the client's bearer token (in a
    /// file, as in a pod).
    pub fn config(&self, client: &str) -> kube::Config {
        let token = self
            .shared
            .tokens
            .iter()
            .find(|(_, c)| c.as_str() == client)
            .map(|(t, _)| t.clone())
            .unwrap_or_else(|| panic!("unknown client {client}"));
        let path: PathBuf = self.dir.path().join(format!("{client}.token"));
        std::fs::write(&path, token).unwrap();
        let mut config = kube::Config::new(format!("http://{}", self.addr).parse().unwrap());
        config.auth_info.token_file = Some(path.to_string_lossy().into_owned());
        config
    }

    fn store(&self) -> std::sync::MutexGuard<'_, Store> {
        self.shared.store.lock().unwrap()
    }

    /// Creates a budget as `kubectl apply` would (validated against the CRD; uid,
    /// creationTimestamp, generation 1 and a resourceVersion set); returns it.
    pub fn create_budget(&self, budget: &CheckpointBudget) -> Value {
        let mut object = serde_json::to_value(budget).unwrap();
        let problems = self.shared.validator.validate(&object);
        assert!(problems.is_empty(), "the test's budget is invalid: {problems:?}");
        let meta = &object["metadata"];
        let key = (
            meta["namespace"].as_str().expect("a namespace").to_owned(),
            meta["name"].as_str().expect("a name").to_owned(),
        );
        if let Some(map) = object.as_object_mut() {
            map.remove("status");
        }
        let mut store = self.store();
        assert!(!store.budgets.contains_key(&key), "budget {key:?} exists");
        store.uid += 1;
        let uid = format!("00000000-0000-4000-8000-{:012}", store.uid);
        object["metadata"]["uid"] = json!(uid);
        object["metadata"]["generation"] = json!(1);
        object["metadata"]["creationTimestamp"] = json!(
            jiff::Timestamp::now()
                .round(jiff::Unit::Second)
                .unwrap()
                .to_string()
        );
        let rv = bump(&mut store);
        object["metadata"]["resourceVersion"] = json!(rv.to_string());
        store.budgets.insert(
            key,
            Budget {
                object: object.clone(),
                owners: BTreeMap::new(),
            },
        );
        self.shared.changed(&mut store, rv, "ADDED", object.clone());
        object
    }

    /// The budget `namespace/name` as stored.
    pub fn budget(&self, namespace: &str, name: &str) -> Option<Value> {
        self.store()
            .budgets
            .get(&(namespace.to_owned(), name.to_owned()))
            .map(|b| b.object.clone())
    }

    /// The budget's status, decoded.
    pub fn status(&self, namespace: &str, name: &str) -> Option<CheckpointBudgetStatus> {
        let object = self.budget(namespace, name)?;
        serde_json::from_value(object.get("status")?.clone()).ok()
    }

    /// The Lease `namespace/name` as stored.
    pub fn lease(&self, namespace: &str, name: &str) -> Option<Value> {
        self.store()
            .leases
            .get(&(namespace.to_owned(), name.to_owned()))
            .cloned()
    }

    /// Every request so far, in order of arrival.
    pub fn requests(&self) -> Vec<Request> {
        let mut requests = self.store().requests.clone();
        requests.sort_by_key(|r| r.seq);
        requests
    }

    /// Every successful status write, in order.
    pub fn status_writes(&self) -> Vec<StatusWrite> {
        self.store().status_writes.clone()
    }

    /// Every successful Lease write, in order.
    pub fn lease_writes(&self) -> Vec<LeaseWrite> {
        self.store().lease_writes.clone()
    }

    /// Every Event stored.
    pub fn events(&self) -> Vec<Value> {
        self.store().events.values().cloned().collect()
    }

    /// Holds the requests matching `hold`; returns its id for [`ApiServer::release`].
    pub fn hold(&self, hold: Hold) -> u64 {
        let id = {
            let mut next = self.shared.next_hold.lock().unwrap();
            *next += 1;
            *next
        };
        self.shared
            .holds
            .lock()
            .unwrap()
            .insert(id, HoldRule { hold, matched: 0 });
        self.shared.active.send_modify(|a| {
            a.insert(id);
        });
        id
    }

    /// Ends the hold `id`: the requests it holds are served, new ones are not held.
    pub fn release(&self, id: u64) {
        self.shared.holds.lock().unwrap().remove(&id);
        self.shared.active.send_modify(|a| {
            a.remove(&id);
        });
    }

    /// How many requests the hold `id` has caught so far.
    pub fn held(&self, id: u64) -> usize {
        self.shared
            .holds
            .lock()
            .unwrap()
            .get(&id)
            .map_or(0, |r| r.matched)
    }

    /// Ends every open watch (as an API server restart or a load balancer does).
    pub fn drop_watches(&self) {
        let _ = self.shared.drops.send(());
    }
}

fn bump(store: &mut Store) -> u64 {
    store.revision += 1;
    store.revision
}

impl Shared {
    /// Logs a budget change for watches and tells the open ones.
    fn changed(&self, store: &mut Store, rv: u64, kind: &'static str, object: Value) {
        store.log.push_back((rv, kind, object.clone()));
        while store.log.len() > self.config.watch_log {
            if let Some((old, _, _)) = store.log.pop_front() {
                store.log_start = old;
            }
        }
        let _ = self.changes.send((rv, kind, object));
    }

    /// The ids of the holds `request` matches (counted), if any.
    fn holds_for(
        &self,
        client: &str,
        method: &Method,
        path: &str,
        body: &str,
    ) -> (Vec<u64>, Option<Duration>) {
        let mut holds = self.holds.lock().unwrap();
        let mut ids = Vec::new();
        let mut delay: Option<Duration> = None;
        let mut wait_for_release = false;
        for (id, rule) in holds.iter_mut() {
            let h = &rule.hold;
            let matches = h.client.as_deref().is_none_or(|c| c == client)
                && h.method.as_ref().is_none_or(|m| m == method)
                && h.path_contains.as_deref().is_none_or(|p| path.contains(p))
                && h.body_contains.as_deref().is_none_or(|b| body.contains(b))
                && h.times.is_none_or(|n| rule.matched < n);
            if !matches {
                continue;
            }
            rule.matched += 1;
            match h.delay {
                Some(d) => delay = Some(delay.map_or(d, |x| x.max(d))),
                None => {
                    wait_for_release = true;
                    ids.push(*id);
                }
            }
        }
        if !wait_for_release {
            ids.clear();
        }
        (ids, delay)
    }
}

/// A `Status` answer, as the API server writes failures.
fn status(code: StatusCode, reason: &str, message: impl Into<String>, details: Option<Value>) -> Response {
    let mut body = json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": message.into(), "reason": reason, "code": code.as_u16(),
    });
    if let Some(details) = details {
        body["details"] = details;
    }
    (code, [("content-type", "application/json")], body.to_string()).into_response()
}

fn json_response(code: StatusCode, value: &Value) -> Response {
    (code, [("content-type", "application/json")], value.to_string()).into_response()
}

fn not_found(kind: &str, name: &str) -> Response {
    status(
        StatusCode::NOT_FOUND,
        "NotFound",
        format!("{kind} \"{name}\" not found"),
        Some(json!({"name": name, "kind": kind})),
    )
}

fn conflict(group_kind: &str, name: &str) -> Response {
    status(
        StatusCode::CONFLICT,
        "Conflict",
        format!(
            "Operation cannot be fulfilled on {group_kind} \"{name}\": the object has been modified; please apply your changes to the latest version and try again"
        ),
        Some(json!({"name": name, "kind": group_kind.split('.').next().unwrap_or(group_kind)})),
    )
}

fn invalid(kind: &str, name: &str, field: &str, message: &str) -> Response {
    status(
        StatusCode::UNPROCESSABLE_ENTITY,
        "Invalid",
        format!("{kind} \"{name}\" is invalid: {field}: {message}"),
        Some(
            json!({"name": name, "kind": kind, "causes": [{"reason": "FieldValueInvalid", "message": message, "field": field}]}),
        ),
    )
}

fn bad_request(message: impl Into<String>) -> Response {
    status(StatusCode::BAD_REQUEST, "BadRequest", message, None)
}

fn query_map(uri: &Uri) -> BTreeMap<String, String> {
    uri.query()
        .unwrap_or_default()
        .split('&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| match kv.split_once('=') {
            Some((k, v)) => (k.to_owned(), percent_decode(v)),
            None => (kv.to_owned(), String::new()),
        })
        .collect()
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Ok(b) = u8::from_str_radix(&s[i + 1..i + 3], 16)
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(if bytes[i] == b'+' { b' ' } else { bytes[i] });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

async fn handle(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let arrived = Instant::now();
    let text = String::from_utf8_lossy(&body).into_owned();
    let client = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .and_then(|t| shared.tokens.get(t.trim()).cloned());
    let Some(client) = client else {
        return status(StatusCode::UNAUTHORIZED, "Unauthorized", "Unauthorized", None);
    };
    let path = uri.to_string();
    let (ids, delay) = shared.holds_for(&client, &method, &path, &text);
    if let Some(delay) = delay {
        tokio::time::sleep(delay).await;
    }
    if !ids.is_empty() {
        let mut active = shared.active.subscribe();
        let _ = active.wait_for(|a| ids.iter().all(|id| !a.contains(id))).await;
    }
    let response = route(&shared, &client, &method, &uri, &headers, &text);
    let mut store = shared.store.lock().unwrap();
    let seq = store.requests.len() as u64 + 1;
    store.requests.push(Request {
        seq,
        client,
        method,
        uri: uri.to_string(),
        arrived,
        answered: Instant::now(),
        status: response.status().as_u16(),
        body: text,
    });
    response
}

fn route(
    shared: &Arc<Shared>,
    client: &str,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &str,
) -> Response {
    let segments: Vec<&str> = uri.path().trim_matches('/').split('/').collect();
    let query = query_map(uri);
    match segments.as_slice() {
        ["apis", "coordination.k8s.io", "v1", "namespaces", ns, "leases"] => match *method {
            Method::POST => create_lease(shared, client, ns, body),
            _ => method_not_allowed(method),
        },
        [
            "apis",
            "coordination.k8s.io",
            "v1",
            "namespaces",
            ns,
            "leases",
            name,
        ] => match *method {
            Method::GET => get_lease(shared, ns, name),
            Method::PUT => replace_lease(shared, client, ns, name, body),
            _ => method_not_allowed(method),
        },
        ["apis", GROUP, VERSION, BUDGETS] if *method == Method::GET => list_or_watch(shared, None, &query),
        ["apis", GROUP, VERSION, "namespaces", ns, BUDGETS] if *method == Method::GET => {
            list_or_watch(shared, Some(ns), &query)
        }
        ["apis", GROUP, VERSION, "namespaces", ns, BUDGETS, name] => match *method {
            Method::GET => get_budget(shared, ns, name),
            _ => method_not_allowed(method),
        },
        ["apis", GROUP, VERSION, "namespaces", ns, BUDGETS, name, "status"] => match *method {
            Method::GET => get_budget(shared, ns, name),
            Method::PATCH => patch_status(shared, client, ns, name, &query, headers, body),
            _ => method_not_allowed(method),
        },
        ["apis", "events.k8s.io", "v1", "namespaces", ns, "events"] => match *method {
            Method::POST => create_event(shared, ns, body),
            _ => method_not_allowed(method),
        },
        ["apis", "events.k8s.io", "v1", "namespaces", ns, "events", name] => match *method {
            Method::PATCH => patch_event(shared, ns, name, headers, body),
            _ => method_not_allowed(method),
        },
        _ => status(
            StatusCode::NOT_FOUND,
            "NotFound",
            "the server could not find the requested resource",
            None,
        ),
    }
}

fn method_not_allowed(method: &Method) -> Response {
    status(
        StatusCode::METHOD_NOT_ALLOWED,
        "MethodNotAllowed",
        format!("the server does not allow this method on the requested resource ({method})"),
        None,
    )
}

fn parse_json(body: &str) -> Result<Value, Response> {
    serde_json::from_str(body)
        .map_err(|e| bad_request(format!("the body of the request was in an unknown format: {e}")))
}

// ---------------------------------------------------------------------------------------
// Leases

fn check_lease(lease: &Value, ns: &str, name: Option<&str>) -> Result<(), Response> {
    if lease["apiVersion"] != "coordination.k8s.io/v1" || lease["kind"] != "Lease" {
        return Err(bad_request(format!(
            "the API version in the data ({}) does not match the expected API version (coordination.k8s.io/v1)",
            lease["apiVersion"]
        )));
    }
    let meta = &lease["metadata"];
    let body_name = meta["name"].as_str().unwrap_or_default();
    if let Some(name) = name
        && body_name != name
    {
        return Err(bad_request(format!(
            "the name of the object ({body_name}) does not match the name on the URL ({name})"
        )));
    }
    if let Some(body_ns) = meta["namespace"].as_str()
        && !body_ns.is_empty()
        && body_ns != ns
    {
        return Err(bad_request(
            "the namespace of the provided object does not match the namespace sent on the request",
        ));
    }
    let spec = &lease["spec"];
    if let Some(d) = spec["leaseDurationSeconds"].as_i64()
        && d <= 0
    {
        return Err(invalid(
            "Lease",
            body_name,
            "spec.leaseDurationSeconds",
            "must be greater than 0",
        ));
    }
    if let Some(t) = spec["leaseTransitions"].as_i64()
        && t < 0
    {
        return Err(invalid(
            "Lease",
            body_name,
            "spec.leaseTransitions",
            "must be greater than or equal to 0",
        ));
    }
    Ok(())
}

fn get_lease(shared: &Shared, ns: &str, name: &str) -> Response {
    let store = shared.store.lock().unwrap();
    match store.leases.get(&(ns.to_owned(), name.to_owned())) {
        Some(lease) => json_response(StatusCode::OK, lease),
        None => not_found("leases.coordination.k8s.io", name),
    }
}

fn create_lease(shared: &Shared, client: &str, ns: &str, body: &str) -> Response {
    let mut lease = match parse_json(body) {
        Ok(v) => v,
        Err(r) => return r,
    };
    if let Err(r) = check_lease(&lease, ns, None) {
        return r;
    }
    let name = lease["metadata"]["name"].as_str().unwrap_or_default().to_owned();
    if name.is_empty() {
        return invalid(
            "Lease",
            "",
            "metadata.name",
            "Required value: name or generateName is required",
        );
    }
    if lease["metadata"]["resourceVersion"]
        .as_str()
        .is_some_and(|v| !v.is_empty())
    {
        return status(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalError",
            "Internal error occurred: resourceVersion should not be set on objects to be created",
            None,
        );
    }
    let mut store = shared.store.lock().unwrap();
    let key = (ns.to_owned(), name.clone());
    if store.leases.contains_key(&key) {
        return status(
            StatusCode::CONFLICT,
            "AlreadyExists",
            format!("leases.coordination.k8s.io \"{name}\" already exists"),
            Some(json!({"name": name, "group": "coordination.k8s.io", "kind": "leases"})),
        );
    }
    store.uid += 1;
    let uid = format!("00000000-0000-4000-9000-{:012}", store.uid);
    let rv = bump(&mut store);
    lease["metadata"]["namespace"] = json!(ns);
    lease["metadata"]["uid"] = json!(uid);
    lease["metadata"]["resourceVersion"] = json!(rv.to_string());
    lease["metadata"]["creationTimestamp"] = json!(
        jiff::Timestamp::now()
            .round(jiff::Unit::Second)
            .unwrap()
            .to_string()
    );
    store.leases.insert(key, lease.clone());
    let holder = lease["spec"]["holderIdentity"].as_str().map(str::to_owned);
    store.lease_writes.push(LeaseWrite {
        client: client.to_owned(),
        at: Instant::now(),
        holder,
    });
    json_response(StatusCode::CREATED, &lease)
}

fn replace_lease(shared: &Shared, client: &str, ns: &str, name: &str, body: &str) -> Response {
    let mut lease = match parse_json(body) {
        Ok(v) => v,
        Err(r) => return r,
    };
    if let Err(r) = check_lease(&lease, ns, Some(name)) {
        return r;
    }
    let mut store = shared.store.lock().unwrap();
    let key = (ns.to_owned(), name.to_owned());
    let Some(current) = store.leases.get(&key).cloned() else {
        return not_found("leases.coordination.k8s.io", name);
    };
    // Leases allow no unconditional update.
    let sent = lease["metadata"]["resourceVersion"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    if sent.is_empty() {
        return invalid(
            "leases.coordination.k8s.io",
            name,
            "metadata.resourceVersion",
            "Invalid value: 0x0: must be specified for an update",
        );
    }
    if Some(sent.as_str()) != current["metadata"]["resourceVersion"].as_str() {
        return conflict("leases.coordination.k8s.io", name);
    }
    let rv = bump(&mut store);
    // Immutable metadata stays.
    for field in ["uid", "creationTimestamp"] {
        lease["metadata"][field] = current["metadata"][field].clone();
    }
    lease["metadata"]["namespace"] = json!(ns);
    lease["metadata"]["resourceVersion"] = json!(rv.to_string());
    store.leases.insert(key, lease.clone());
    let holder = lease["spec"]["holderIdentity"]
        .as_str()
        .filter(|h| !h.is_empty())
        .map(str::to_owned);
    store.lease_writes.push(LeaseWrite {
        client: client.to_owned(),
        at: Instant::now(),
        holder,
    });
    json_response(StatusCode::OK, &lease)
}

// ---------------------------------------------------------------------------------------
// CheckpointBudgets

fn get_budget(shared: &Shared, ns: &str, name: &str) -> Response {
    let store = shared.store.lock().unwrap();
    match store.budgets.get(&(ns.to_owned(), name.to_owned())) {
        Some(b) => json_response(StatusCode::OK, &b.object),
        None => not_found(&format!("{BUDGETS}.{GROUP}"), name),
    }
}

fn in_namespace(object: &Value, ns: Option<&str>) -> bool {
    ns.is_none_or(|ns| object["metadata"]["namespace"] == ns)
}

fn list_or_watch(shared: &Arc<Shared>, ns: Option<&str>, query: &BTreeMap<String, String>) -> Response {
    if query.get("watch").is_some_and(|w| w == "true" || w == "1") {
        return watch_budgets(shared, ns.map(str::to_owned), query);
    }
    let store = shared.store.lock().unwrap();
    let revision = store.revision;
    let mut items: Vec<&Budget> = store
        .budgets
        .values()
        .filter(|b| in_namespace(&b.object, ns))
        .collect();
    // `continue`: a snapshot at the list's revision; the server keeps none, so a token of
    // an older revision has expired (as after a compaction).
    let mut after: Option<String> = None;
    if let Some(token) = query.get("continue").filter(|t| !t.is_empty()) {
        let Some((rv, key)) = token.split_once('/') else {
            return bad_request("continue key is not valid");
        };
        if rv.parse::<u64>().ok() != Some(revision) {
            return status(
                StatusCode::GONE,
                "Expired",
                "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter.",
                None,
            );
        }
        after = Some(key.to_owned());
    }
    if let Some(after) = &after {
        items.retain(|b| budget_key(&b.object) > *after);
    }
    let any = query.get("resourceVersion").is_some_and(|v| v == "0");
    let limit = query
        .get("limit")
        .and_then(|l| l.parse::<usize>().ok())
        .filter(|l| *l > 0);
    let mut continue_token = None;
    // NB: served from the watch cache, a `resourceVersion=0` list ignores `limit`.
    if let Some(limit) = limit.filter(|_| !any)
        && items.len() > limit
    {
        items.truncate(limit);
        continue_token = items
            .last()
            .map(|b| format!("{revision}/{}", budget_key(&b.object)));
    }
    let mut metadata = json!({"resourceVersion": revision.to_string()});
    if let Some(token) = continue_token {
        metadata["continue"] = json!(token);
    }
    json_response(
        StatusCode::OK,
        &json!({
            "apiVersion": format!("{GROUP}/{VERSION}"),
            "kind": "CheckpointBudgetList",
            "metadata": metadata,
            "items": items.iter().map(|b| b.object.clone()).collect::<Vec<_>>(),
        }),
    )
}

fn budget_key(object: &Value) -> String {
    format!(
        "{}/{}",
        object["metadata"]["namespace"].as_str().unwrap_or_default(),
        object["metadata"]["name"].as_str().unwrap_or_default()
    )
}

fn watch_line(kind: &str, object: &Value) -> Bytes {
    let mut line = serde_json::to_vec(&json!({"type": kind, "object": object})).unwrap();
    line.push(b'\n');
    Bytes::from(line)
}

fn watch_budgets(shared: &Arc<Shared>, ns: Option<String>, query: &BTreeMap<String, String>) -> Response {
    let bookmarks = query.get("allowWatchBookmarks").is_some_and(|v| v == "true");
    let timeout = query
        .get("timeoutSeconds")
        .and_then(|t| t.parse::<u64>().ok())
        .map(Duration::from_secs);
    let from = query.get("resourceVersion").cloned().unwrap_or_default();
    let mut first: Vec<Bytes> = Vec::new();
    let rx;
    let revision;
    {
        let store = shared.store.lock().unwrap();
        rx = shared.changes.subscribe();
        revision = store.revision;
        if from.is_empty() || from == "0" {
            // Start anywhere: the current objects first, as ADDED.
            for b in store
                .budgets
                .values()
                .filter(|b| in_namespace(&b.object, ns.as_deref()))
            {
                first.push(watch_line("ADDED", &b.object));
            }
        } else {
            let Ok(from) = from.parse::<u64>() else {
                return bad_request(format!("invalid resource version: {from}"));
            };
            if from < store.log_start {
                // Too old to resume: what the watch cache answers, as an event.
                let gone = json!({
                    "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                    "message": format!("too old resource version: {from} ({})", store.log_start + 1),
                    "reason": "Expired", "code": 410,
                });
                return Response::builder()
                    .header("content-type", "application/json")
                    .body(Body::from(watch_line("ERROR", &gone)))
                    .unwrap();
            }
            for (rv, kind, object) in &store.log {
                if *rv > from && in_namespace(object, ns.as_deref()) {
                    first.push(watch_line(kind, object));
                }
            }
        }
    }
    let drops = shared.drops.subscribe();
    let deadline = timeout.map(|t| tokio::time::Instant::now() + t);
    let every = shared.config.bookmark_every;
    struct W {
        first: VecDeque<Bytes>,
        rx: broadcast::Receiver<(u64, &'static str, Value)>,
        drops: broadcast::Receiver<()>,
        last: u64,
        ns: Option<String>,
        deadline: Option<tokio::time::Instant>,
        next_bookmark: tokio::time::Instant,
        done: bool,
    }
    let state = W {
        first: first.into(),
        rx,
        drops,
        last: revision,
        ns,
        deadline,
        next_bookmark: tokio::time::Instant::now() + every,
        done: false,
    };
    let bookmark = move |rv: u64| {
        watch_line(
            "BOOKMARK",
            &json!({"apiVersion": format!("{GROUP}/{VERSION}"), "kind": "CheckpointBudget", "metadata": {"resourceVersion": rv.to_string()}}),
        )
    };
    let stream = futures::stream::unfold(state, move |mut w| async move {
        if w.done {
            return None;
        }
        if let Some(line) = w.first.pop_front() {
            return Some((Ok::<_, std::io::Error>(line), w));
        }
        loop {
            let deadline = w
                .deadline
                .unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(3600));
            tokio::select! {
                _ = w.drops.recv() => return None,
                _ = tokio::time::sleep_until(deadline) => {
                    // The server ends the watch; a last bookmark says where it got to.
                    w.done = true;
                    if bookmarks {
                        let line = bookmark(w.last);
                        return Some((Ok(line), w));
                    }
                    return None;
                }
                _ = tokio::time::sleep_until(w.next_bookmark), if bookmarks => {
                    w.next_bookmark = tokio::time::Instant::now() + every;
                    let line = bookmark(w.last);
                    return Some((Ok(line), w));
                }
                change = w.rx.recv() => match change {
                    Ok((rv, kind, object)) => {
                        if rv <= w.last {
                            continue;
                        }
                        w.last = rv;
                        if in_namespace(&object, w.ns.as_deref()) {
                            return Some((Ok(watch_line(kind, &object)), w));
                        }
                    }
                    // Fell behind: end the watch; the client resumes from its last version.
                    Err(broadcast::error::RecvError::Lagged(_)) => return None,
                    Err(broadcast::error::RecvError::Closed) => return None,
                },
            }
        }
    });
    Response::builder()
        .header("content-type", "application/json")
        .body(Body::from_stream(stream))
        .unwrap()
}

/// Removes from `value` what `schema` does not define (structural pruning), unless the
/// schema preserves unknown fields.
fn prune(schema: &Value, value: &mut Value) {
    if schema["x-kubernetes-preserve-unknown-fields"] == true {
        return;
    }
    match value {
        Value::Object(map) => {
            if let Some(properties) = schema["properties"].as_object() {
                map.retain(|k, _| properties.contains_key(k));
                for (k, v) in map.iter_mut() {
                    prune(&properties[k], v);
                }
            } else if let Some(additional) = schema.get("additionalProperties").filter(|a| a.is_object()) {
                for v in map.values_mut() {
                    prune(additional, v);
                }
            }
        }
        Value::Array(items) => {
            if let Some(item) = schema.get("items") {
                for v in items {
                    prune(item, v);
                }
            }
        }
        _ => {}
    }
}

/// RFC 7386 JSON merge patch.
fn merge(target: &mut Value, patch: &Value) {
    match patch {
        Value::Object(p) => {
            if !target.is_object() {
                *target = Value::Object(Map::new());
            }
            let t = target.as_object_mut().unwrap();
            for (k, v) in p {
                if v.is_null() {
                    t.remove(k);
                } else {
                    merge(t.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        _ => *target = patch.clone(),
    }
}

/// RFC 6902 JSON patch: `add`, `remove`, `replace`, `test`.
fn json_patch(target: &mut Value, ops: &Value) -> Result<(), Response> {
    let Some(ops) = ops.as_array() else {
        return Err(bad_request("the JSON patch is not an array of operations"));
    };
    for op in ops {
        let path = op["path"]
            .as_str()
            .ok_or_else(|| bad_request("a JSON patch operation without a path"))?;
        let (parent, last) = match path.rsplit_once('/') {
            Some((p, l)) => (p, l.replace("~1", "/").replace("~0", "~")),
            None => return Err(bad_request(format!("invalid JSON pointer {path}"))),
        };
        match op["op"].as_str() {
            Some("test") => {
                if target.pointer(path) != Some(&op["value"]) {
                    return Err(status(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        "Invalid",
                        format!(
                            "the server rejected our request due to an error in our request: testing value {path} failed"
                        ),
                        None,
                    ));
                }
            }
            Some(kind @ ("add" | "replace")) => {
                let Some(container) = target.pointer_mut(parent) else {
                    return Err(unprocessable(format!(
                        "{kind} operation does not apply: doc is missing path: {path}"
                    )));
                };
                match container {
                    Value::Object(map) => {
                        if kind == "replace" && !map.contains_key(&last) {
                            return Err(unprocessable(format!(
                                "replace operation does not apply: doc is missing key: {path}"
                            )));
                        }
                        map.insert(last, op["value"].clone());
                    }
                    Value::Array(items) => {
                        let index = if last == "-" {
                            items.len()
                        } else {
                            last.parse().map_err(|_| bad_request("bad index"))?
                        };
                        if kind == "add" && index <= items.len() {
                            items.insert(index, op["value"].clone());
                        } else if index < items.len() {
                            items[index] = op["value"].clone();
                        } else {
                            return Err(unprocessable(format!(
                                "{kind} operation does not apply: index out of range: {path}"
                            )));
                        }
                    }
                    _ => return Err(unprocessable(format!("{kind} operation does not apply: {path}"))),
                }
            }
            Some("remove") => {
                let removed = match target.pointer_mut(parent) {
                    Some(Value::Object(map)) => map.remove(&last).is_some(),
                    Some(Value::Array(items)) => match last.parse::<usize>() {
                        Ok(i) if i < items.len() => {
                            items.remove(i);
                            true
                        }
                        _ => false,
                    },
                    _ => false,
                };
                if !removed {
                    return Err(unprocessable(format!(
                        "remove operation does not apply: doc is missing path: {path}"
                    )));
                }
            }
            other => {
                return Err(bad_request(format!(
                    "unsupported JSON patch operation {other:?} (test server)"
                )));
            }
        }
    }
    Ok(())
}

fn unprocessable(message: String) -> Response {
    status(StatusCode::UNPROCESSABLE_ENTITY, "Invalid", message, None)
}

fn patch_status(
    shared: &Shared,
    client: &str,
    ns: &str,
    name: &str,
    query: &BTreeMap<String, String>,
    headers: &HeaderMap,
    body: &str,
) -> Response {
    let content_type = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_owned();
    let kind = format!("{BUDGETS}.{GROUP}");
    let mut store = shared.store.lock().unwrap();
    let key = (ns.to_owned(), name.to_owned());
    let Some(budget) = store.budgets.get(&key) else {
        return not_found(&kind, name);
    };
    let current = budget.object.clone();
    let current_rv = current["metadata"]["resourceVersion"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let mut owners = budget.owners.clone();
    let mut next = current.clone();
    match content_type.as_str() {
        "application/apply-patch+yaml" => {
            let Some(manager) = query.get("fieldManager").filter(|m| !m.is_empty()) else {
                return status(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "Invalid",
                    "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch",
                    None,
                );
            };
            let force = query.get("force").is_some_and(|f| f == "true");
            let applied: Value = match serde_yaml::from_str(body) {
                Ok(v) => v,
                Err(e) => return bad_request(format!("error decoding YAML: {e}")),
            };
            if applied["apiVersion"] != format!("{GROUP}/{VERSION}") || applied["kind"] != "CheckpointBudget"
            {
                return bad_request(format!(
                    "the API version or kind in the applied object ({}, {}) does not match the request ({GROUP}/{VERSION}, CheckpointBudget)",
                    applied["apiVersion"], applied["kind"]
                ));
            }
            if let Some(n) = applied["metadata"]["name"].as_str()
                && n != name
            {
                return bad_request(format!(
                    "the name of the object ({n}) does not match the name on the URL ({name})"
                ));
            }
            if let Some(rv) = applied["metadata"]["resourceVersion"].as_str()
                && rv != current_rv
            {
                return conflict(&kind, name);
            }
            let fields = applied["status"].as_object().cloned().unwrap_or_default();
            // Fields owned by another manager: a conflict unless forced.
            let taken: Vec<String> = fields
                .keys()
                .filter(|f| owners.get(*f).is_some_and(|o| o != manager))
                .cloned()
                .collect();
            if !taken.is_empty() && !force {
                return status(
                    StatusCode::CONFLICT,
                    "Conflict",
                    format!(
                        "Apply failed with {} conflict(s): {}",
                        taken.len(),
                        taken
                            .iter()
                            .map(|f| format!("conflict with \"{}\": .status.{f}", owners[f]))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                    None,
                );
            }
            let mut status = next["status"].as_object().cloned().unwrap_or_default();
            // What this manager applied before and applies no more is removed.
            let dropped: Vec<String> = owners
                .iter()
                .filter(|(f, o)| o.as_str() == manager && !fields.contains_key(*f))
                .map(|(f, _)| f.clone())
                .collect();
            for f in dropped {
                status.remove(&f);
                owners.remove(&f);
            }
            for (f, v) in fields {
                if v.is_null() {
                    status.remove(&f);
                    owners.remove(&f);
                } else {
                    status.insert(f.clone(), v);
                    owners.insert(f, manager.clone());
                }
            }
            next["status"] = Value::Object(status);
        }
        "application/merge-patch+json" => {
            let patch = match parse_json(body) {
                Ok(v) => v,
                Err(r) => return r,
            };
            merge(&mut next, &patch);
            if let Some(rv) = patch["metadata"]["resourceVersion"].as_str()
                && rv != current_rv
            {
                return conflict(&kind, name);
            }
            claim_status(&mut owners, &next, client_manager(query, client));
        }
        "application/json-patch+json" => {
            let ops = match parse_json(body) {
                Ok(v) => v,
                Err(r) => return r,
            };
            if let Err(r) = json_patch(&mut next, &ops) {
                return r;
            }
            if next["metadata"]["resourceVersion"].as_str() != Some(current_rv.as_str()) {
                return conflict(&kind, name);
            }
            claim_status(&mut owners, &next, client_manager(query, client));
        }
        other => {
            return status(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "UnsupportedMediaType",
                format!(
                    "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml (got {other:?})"
                ),
                None,
            );
        }
    }
    // The status subresource changes the status only.
    let mut status = next.get("status").cloned().unwrap_or(Value::Null);
    let mut stored = current.clone();
    if status.is_null() {
        stored.as_object_mut().unwrap().remove("status");
    } else {
        prune(&shared.status_schema, &mut status);
        if let Err(e) = serde_json::from_value::<CheckpointBudgetStatus>(status.clone()) {
            return invalid("CheckpointBudget", name, "status", &format!("Invalid value: {e}"));
        }
        stored["status"] = status.clone();
    }
    let rv = bump(&mut store);
    stored["metadata"]["resourceVersion"] = json!(rv.to_string());
    let entry = store.budgets.get_mut(&key).unwrap();
    entry.object = stored.clone();
    entry.owners = owners;
    store.status_writes.push(StatusWrite {
        client: client.to_owned(),
        namespace: ns.to_owned(),
        name: name.to_owned(),
        at: Instant::now(),
        resource_version: rv,
        status,
    });
    shared.changed(&mut store, rv, "MODIFIED", stored.clone());
    json_response(StatusCode::OK, &stored)
}

fn client_manager(query: &BTreeMap<String, String>, client: &str) -> String {
    query
        .get("fieldManager")
        .cloned()
        .unwrap_or_else(|| format!("{client}-update"))
}

/// An update (merge or JSON patch) takes every status field it leaves set.
fn claim_status(owners: &mut BTreeMap<String, String>, next: &Value, manager: String) {
    owners.clear();
    if let Some(status) = next["status"].as_object() {
        for f in status.keys() {
            owners.insert(f.clone(), manager.clone());
        }
    }
}

// ---------------------------------------------------------------------------------------
// Events

fn check_event(event: &Value, ns: &str) -> Result<(), Response> {
    if event["apiVersion"] != "events.k8s.io/v1" || event["kind"] != "Event" {
        return Err(bad_request(
            "the API version in the data does not match the expected API version (events.k8s.io/v1)",
        ));
    }
    let name = event["metadata"]["name"].as_str().unwrap_or_default();
    let required = |field: &str, max: usize| -> Result<(), Response> {
        match event[field].as_str() {
            Some(v) if !v.is_empty() && v.len() <= max => Ok(()),
            Some(v) if !v.is_empty() => Err(invalid(
                "Event",
                name,
                field,
                &format!("Too long: may not be more than {max} bytes"),
            )),
            _ => Err(invalid("Event", name, field, "Required value")),
        }
    };
    if event["eventTime"].as_str().is_none_or(str::is_empty) {
        return Err(invalid("Event", name, "eventTime", "Required value"));
    }
    required("reportingController", 253)?;
    required("reportingInstance", 128)?;
    required("action", 128)?;
    required("reason", 128)?;
    if !matches!(event["type"].as_str(), Some("Normal" | "Warning")) {
        return Err(invalid(
            "Event",
            name,
            "type",
            "Unsupported value: must be Normal or Warning",
        ));
    }
    if event["regarding"]["kind"].as_str().is_none_or(str::is_empty) {
        return Err(invalid("Event", name, "regarding", "Required value"));
    }
    if event["note"].as_str().is_some_and(|n| n.len() > 1024) {
        return Err(invalid(
            "Event",
            name,
            "note",
            "Too long: may not be more than 1024 bytes",
        ));
    }
    if let Some(body_ns) = event["metadata"]["namespace"].as_str()
        && !body_ns.is_empty()
        && body_ns != ns
    {
        return Err(bad_request(
            "the namespace of the provided object does not match the namespace sent on the request",
        ));
    }
    Ok(())
}

fn create_event(shared: &Shared, ns: &str, body: &str) -> Response {
    let mut event = match parse_json(body) {
        Ok(v) => v,
        Err(r) => return r,
    };
    if let Err(r) = check_event(&event, ns) {
        return r;
    }
    let mut store = shared.store.lock().unwrap();
    let name = match event["metadata"]["name"].as_str().filter(|n| !n.is_empty()) {
        Some(n) => n.to_owned(),
        None => match event["metadata"]["generateName"].as_str() {
            Some(prefix) => {
                store.uid += 1;
                format!("{prefix}{:05x}", store.uid)
            }
            None => {
                return invalid(
                    "Event",
                    "",
                    "metadata.name",
                    "Required value: name or generateName is required",
                );
            }
        },
    };
    let key = (ns.to_owned(), name.clone());
    if store.events.contains_key(&key) {
        return status(
            StatusCode::CONFLICT,
            "AlreadyExists",
            format!("events.events.k8s.io \"{name}\" already exists"),
            None,
        );
    }
    let rv = bump(&mut store);
    event["metadata"]["name"] = json!(name);
    event["metadata"]["namespace"] = json!(ns);
    event["metadata"]["resourceVersion"] = json!(rv.to_string());
    store.events.insert(key, event.clone());
    json_response(StatusCode::CREATED, &event)
}

fn patch_event(shared: &Shared, ns: &str, name: &str, headers: &HeaderMap, body: &str) -> Response {
    let content_type = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if !content_type.starts_with("application/merge-patch+json") {
        return status(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UnsupportedMediaType",
            format!("the test API server patches Events by JSON merge patch only (got {content_type:?})"),
            None,
        );
    }
    let patch = match parse_json(body) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let mut store = shared.store.lock().unwrap();
    let key = (ns.to_owned(), name.to_owned());
    let Some(mut event) = store.events.get(&key).cloned() else {
        return not_found("events.events.k8s.io", name);
    };
    merge(&mut event, &patch);
    if let Err(r) = check_event(&event, ns) {
        return r;
    }
    let rv = bump(&mut store);
    event["metadata"]["resourceVersion"] = json!(rv.to_string());
    store.events.insert(key, event.clone());
    json_response(StatusCode::OK, &event)
}

// ---------------------------------------------------------------------------------------
// The server's own strictness, checked with a plain kube client.

#[cfg(test)]
mod tests {
    use super::*;
    use checkpoint_autoscaler::crd::CheckpointBudget;
    use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
    use kube::{
        Api, Client,
        api::{ListParams, ObjectMeta, Patch, PatchParams, PostParams, WatchEvent, WatchParams},
    };

    fn budget(name: &str) -> CheckpointBudget {
        let scenario = crate::harness::scenario("step-up");
        let mut b = checkpoint_autoscaler::demo::load_budget(None, &scenario).unwrap();
        b.metadata = ObjectMeta {
            name: Some(name.into()),
            namespace: Some("team-a".into()),
            ..ObjectMeta::default()
        };
        b
    }

    async fn client(server: &ApiServer, name: &str) -> Client {
        checkpoint_autoscaler::controller::install_crypto_provider();
        Client::try_from(server.config(name)).unwrap()
    }

    fn code(e: kube::Error) -> u16 {
        match e {
            kube::Error::Api(s) => s.code,
            other => panic!("not an API error: {other}"),
        }
    }

    #[tokio::test]
    async fn leases_are_created_once_and_updated_only_from_the_version_read() {
        let server = ApiServer::start(&["a", "b"], ServerConfig::default()).await;
        let leases: Api<Lease> = Api::namespaced(client(&server, "a").await, "ops");
        let lease = Lease {
            metadata: ObjectMeta {
                name: Some("l".into()),
                ..ObjectMeta::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some("a".into()),
                lease_duration_seconds: Some(5),
                ..LeaseSpec::default()
            }),
        };
        let created = leases.create(&PostParams::default(), &lease).await.unwrap();
        assert_eq!(
            code(leases.create(&PostParams::default(), &lease).await.unwrap_err()),
            409
        );
        let mut stale = created.clone();
        let mut renewed = created.clone();
        renewed.spec.as_mut().unwrap().lease_transitions = Some(1);
        leases
            .replace("l", &PostParams::default(), &renewed)
            .await
            .unwrap();
        // The version read before the renewal is stale now.
        stale.spec.as_mut().unwrap().holder_identity = Some("b".into());
        assert_eq!(
            code(
                leases
                    .replace("l", &PostParams::default(), &stale)
                    .await
                    .unwrap_err()
            ),
            409
        );
        let mut unconditional = stale.clone();
        unconditional.metadata.resource_version = None;
        assert_eq!(
            code(
                leases
                    .replace("l", &PostParams::default(), &unconditional)
                    .await
                    .unwrap_err()
            ),
            422
        );
        let mut with_version = lease.clone();
        with_version.metadata.name = Some("m".into());
        with_version.metadata.resource_version = Some("7".into());
        assert_eq!(
            code(
                leases
                    .create(&PostParams::default(), &with_version)
                    .await
                    .unwrap_err()
            ),
            500
        );
        assert_eq!(code(leases.get("nope").await.unwrap_err()), 404);
        // Unknown clients are refused.
        let mut anonymous = server.config("a");
        anonymous.auth_info.token_file = None;
        let anonymous: Api<Lease> = Api::namespaced(Client::try_from(anonymous).unwrap(), "ops");
        assert_eq!(code(anonymous.get("l").await.unwrap_err()), 401);
        assert_eq!(server.lease_writes().len(), 2);
    }

    #[tokio::test]
    async fn status_patches_change_the_status_only_and_honour_preconditions() {
        let server = ApiServer::start(&["a"], ServerConfig::default()).await;
        let created = server.create_budget(&budget("orders"));
        let api: Api<CheckpointBudget> = Api::namespaced(client(&server, "a").await, "team-a");
        let status = json!({"observedGeneration": 1, "conditions": []});
        let apply = json!({"apiVersion": "checkpoint-autoscaler.dev/v1alpha1", "kind": "CheckpointBudget",
                           "status": status, "spec": {"mode": "Paused"}});
        // fieldManager is required for apply.
        let no_manager = PatchParams {
            field_manager: None,
            ..PatchParams::default()
        };
        assert_eq!(
            code(
                api.patch_status("orders", &no_manager, &Patch::Apply(&apply))
                    .await
                    .unwrap_err()
            ),
            422
        );
        let written = api
            .patch_status(
                "orders",
                &PatchParams::apply("ctl").force(),
                &Patch::Apply(&apply),
            )
            .await
            .unwrap();
        assert_eq!(
            written.metadata.generation,
            Some(1),
            "a status write is no new generation"
        );
        assert_eq!(
            written.spec,
            budget("orders").spec,
            "the spec is not changed through /status"
        );
        assert_ne!(
            written.metadata.resource_version,
            created["metadata"]["resourceVersion"].as_str().map(str::to_owned)
        );
        // Another manager's apply of the same field conflicts unless forced.
        let other = json!({"apiVersion": "checkpoint-autoscaler.dev/v1alpha1", "kind": "CheckpointBudget",
                           "status": {"observedGeneration": 2}});
        assert_eq!(
            code(
                api.patch_status("orders", &PatchParams::apply("other"), &Patch::Apply(&other))
                    .await
                    .unwrap_err()
            ),
            409
        );
        // A stale resourceVersion is a conflict, for apply and merge alike.
        let stale = json!({"apiVersion": "checkpoint-autoscaler.dev/v1alpha1", "kind": "CheckpointBudget",
                           "metadata": {"resourceVersion": created["metadata"]["resourceVersion"]},
                           "status": status});
        assert_eq!(
            code(
                api.patch_status(
                    "orders",
                    &PatchParams::apply("ctl").force(),
                    &Patch::Apply(&stale)
                )
                .await
                .unwrap_err()
            ),
            409
        );
        let merge = json!({"metadata": {"resourceVersion": created["metadata"]["resourceVersion"]}, "status": {"observedGeneration": 1}});
        assert_eq!(
            code(
                api.patch_status("orders", &PatchParams::default(), &Patch::Merge(&merge))
                    .await
                    .unwrap_err()
            ),
            409
        );
        let current = written.metadata.resource_version.clone().unwrap();
        let merge = json!({"metadata": {"resourceVersion": current}, "status": {"observedGeneration": 1, "unknownField": 3}});
        let merged = api
            .patch_status("orders", &PatchParams::default(), &Patch::Merge(&merge))
            .await
            .unwrap();
        let stored = server.budget("team-a", "orders").unwrap();
        assert!(
            stored["status"].get("unknownField").is_none(),
            "pruned as the CRD's schema says"
        );
        assert_eq!(
            merged.metadata.resource_version,
            stored["metadata"]["resourceVersion"].as_str().map(str::to_owned)
        );
        // A status of the wrong shape is refused.
        let wrong = json!({"status": {"observedGeneration": "one"}});
        assert_eq!(
            code(
                api.patch_status("orders", &PatchParams::default(), &Patch::Merge(&wrong))
                    .await
                    .unwrap_err()
            ),
            422
        );
        assert_eq!(
            code(
                api.patch_status("nope", &PatchParams::apply("ctl"), &Patch::Apply(&apply))
                    .await
                    .unwrap_err()
            ),
            404
        );
        assert_eq!(server.status_writes().len(), 2);
    }

    /// JSON patch (which kube sends only with its `jsonpatch` feature): a failed `test`
    /// refuses the whole patch.
    #[test]
    fn json_patches_apply_their_operations_or_none() {
        let mut doc = json!({"metadata": {"resourceVersion": "5"}, "status": {"conditions": [1, 2]}});
        let ops = json!([
            {"op": "test", "path": "/metadata/resourceVersion", "value": "5"},
            {"op": "replace", "path": "/status/conditions/0", "value": 9},
            {"op": "add", "path": "/status/conditions/-", "value": 3},
            {"op": "add", "path": "/status/observedGeneration", "value": 2},
            {"op": "remove", "path": "/status/conditions/1"},
        ]);
        json_patch(&mut doc, &ops).unwrap();
        assert_eq!(
            doc["status"],
            json!({"conditions": [9, 3], "observedGeneration": 2})
        );
        let stale = json!([{"op": "test", "path": "/metadata/resourceVersion", "value": "4"}]);
        assert_eq!(
            json_patch(&mut doc, &stale).unwrap_err().status(),
            StatusCode::UNPROCESSABLE_ENTITY
        );
        let missing = json!([{"op": "replace", "path": "/status/nope", "value": 1}]);
        assert!(json_patch(&mut doc, &missing).is_err());
    }

    #[tokio::test]
    async fn watches_resume_from_a_version_and_expire_past_the_log() {
        let server = ApiServer::start(
            &["a"],
            ServerConfig {
                bookmark_every: Duration::from_millis(100),
                watch_log: 3,
            },
        )
        .await;
        let first = server.create_budget(&budget("one"));
        let api: Api<CheckpointBudget> = Api::all(client(&server, "a").await);
        let list = api.list(&ListParams::default()).await.unwrap();
        assert_eq!(list.items.len(), 1);
        let version = list.metadata.resource_version.clone().unwrap();
        server.create_budget(&budget("two"));
        use futures::StreamExt;
        let mut events = api
            .watch(&WatchParams::default().timeout(1), &version)
            .await
            .unwrap()
            .boxed();
        match events.next().await.unwrap().unwrap() {
            WatchEvent::Added(b) => assert_eq!(b.metadata.name.as_deref(), Some("two")),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            events.next().await.unwrap().unwrap(),
            WatchEvent::Bookmark(_)
        ));
        // Past the log: 410 Expired.
        for name in ["three", "four", "five"] {
            server.create_budget(&budget(name));
        }
        let old = first["metadata"]["resourceVersion"].as_str().unwrap();
        let mut expired = api.watch(&WatchParams::default(), old).await.unwrap().boxed();
        match expired.next().await.unwrap().unwrap() {
            WatchEvent::Error(e) => assert_eq!(e.code, 410),
            other => panic!("{other:?}"),
        }
        // Paged lists, and a stale continue token.
        let page = api.list(&ListParams::default().limit(2)).await.unwrap();
        assert_eq!(page.items.len(), 2);
        let token = page.metadata.continue_.clone().unwrap();
        let rest = api
            .list(&ListParams::default().limit(10).continue_token(&token))
            .await
            .unwrap();
        assert_eq!(rest.items.len(), 3);
        server.create_budget(&budget("six"));
        assert_eq!(
            code(
                api.list(&ListParams::default().limit(2).continue_token(&token))
                    .await
                    .unwrap_err()
            ),
            410
        );
    }
}
