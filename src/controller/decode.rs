//! Decoding budgets one object at a time, so one malformed budget cannot stall the others.
//!
//! A watcher typed on [`CheckpointBudget`] decodes a whole `list` response in one go: a
//! single object whose spec does not deserialize (a string where a number belongs, written
//! past an older CRD or with the schema bypassed) fails the list, the watcher backs off and
//! retries forever, and *no* budget is reconciled. So the controller watches the resource
//! untyped ([`DynamicObject`]) and decodes each object here:
//!
//! - an object that decodes goes on to the reflector and the reconciler as usual;
//! - one that does not is kept out of both, and its status says what is wrong
//!   (`Ready=False`, reason `InvalidSpec`, with serde's path to the field) with a Warning
//!   Event — once per generation, not on every re-list;
//! - a budget that was valid and became undecodable is removed from the reflector (so it is
//!   neither reconciled with its stale spec nor counted as an owner of its application).

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex, OnceLock},
};

use jiff::Timestamp;
use k8s_openapi::api::core::v1::ObjectReference;
use kube::{
    CustomResourceExt, Resource, ResourceExt,
    api::{ApiResource, DynamicObject},
    runtime::{reflector::Store, watcher},
};
use serde_json::Value;
use tokio::sync::Notify;
use tracing::{info, warn};

use super::{
    Context,
    fence::FencedStore,
    status::{self, READY, SCALING, Truth},
    store::{BudgetKey, BudgetStore, KubeStore, Notice, NoticeType},
};
use crate::crd::{CheckpointBudget, CheckpointBudgetStatus, SpecError};

/// The condition and Event reason for a budget the controller cannot act on.
pub const INVALID_SPEC: &str = "InvalidSpec";

/// The type-erased resource of [`CheckpointBudget`], for the untyped watch.
pub fn api_resource() -> ApiResource {
    ApiResource::erase::<CheckpointBudget>(&())
}

/// Decodes one watched object into a [`CheckpointBudget`], or says which field is wrong and
/// how: `spec.parallelism.min: invalid type: string "2", expected u32`.
pub fn decode(object: &DynamicObject) -> Result<CheckpointBudget, SpecError> {
    let mut value = object.data.clone();
    if let Value::Object(map) = &mut value {
        // The typed object carries these too; the untyped one keeps them apart.
        map.insert(
            "apiVersion".into(),
            Value::String(CheckpointBudget::api_version(&()).into_owned()),
        );
        map.insert(
            "kind".into(),
            Value::String(CheckpointBudget::kind(&()).into_owned()),
        );
        map.insert(
            "metadata".into(),
            serde_json::to_value(&object.metadata).unwrap_or(Value::Null),
        );
    }
    // As the API server stores it: a non-nullable field set to null is absent.
    crate::validate::prune_nulls(budget_schema(), &mut value);
    if let Some(err) = laxness(budget_schema(), &value, "") {
        return Err(err);
    }
    serde_path_to_error::deserialize::<_, CheckpointBudget>(value).map_err(|err| {
        let path = err.path().to_string();
        let field = if path == "." { String::new() } else { path };
        let fix = if field.starts_with("status") {
            "the status is written by the controller; remove it (kubectl edit --subresource status) \
             and the controller writes a fresh one"
        } else {
            "correct the field (see `kubectl explain checkpointbudget.spec`) and apply the budget again"
        };
        SpecError {
            field,
            problem: crate::crd::truncate_message(&err.into_inner().to_string()),
            fix: fix.to_owned(),
        }
    })
}

/// The generated CRD's openAPIV3Schema (what the API server would have enforced).
fn budget_schema() -> &'static Value {
    static SCHEMA: OnceLock<Value> = OnceLock::new();
    SCHEMA.get_or_init(|| {
        CheckpointBudget::crd()
            .spec
            .versions
            .into_iter()
            .find_map(|v| v.schema.and_then(|s| s.open_api_v3_schema))
            .and_then(|schema| serde_json::to_value(schema).ok())
            .unwrap_or(Value::Null)
    })
}

/// Finds where serde would decode what the schema refuses: serde also builds a struct from
/// an array of its fields in order (`perKpu: [1, 4]`) and a unit enum from a map
/// (`mode: {Enforce: null}`). Every other type mistake serde refuses itself, and says so
/// better.
fn laxness(schema: &Value, value: &Value, path: &str) -> Option<SpecError> {
    let wrong = |problem: &str| SpecError {
        field: path.to_owned(),
        problem: problem.to_owned(),
        fix: "correct the field (see `kubectl explain checkpointbudget.spec`) and apply the budget again"
            .to_owned(),
    };
    let child = |key: &str| {
        if path.is_empty() {
            key.to_owned()
        } else {
            format!("{path}.{key}")
        }
    };
    match (schema.get("type").and_then(Value::as_str), value) {
        (Some("object"), Value::Array(_)) => Some(wrong("invalid type: sequence, expected a map of fields")),
        (Some("string"), Value::Object(_)) => Some(wrong("invalid type: map, expected a string")),
        (_, Value::Object(map)) => {
            let properties = schema.get("properties").and_then(Value::as_object)?;
            map.iter()
                .find_map(|(key, v)| properties.get(key).and_then(|s| laxness(s, v, &child(key))))
        }
        (_, Value::Array(items)) => {
            let item_schema = schema.get("items")?;
            items
                .iter()
                .enumerate()
                .find_map(|(i, v)| laxness(item_schema, v, &format!("{path}[{i}]")))
        }
        _ => None,
    }
}

/// The message of the `Ready` condition and Event for an undecodable budget.
pub fn invalid_message(err: &SpecError) -> String {
    format!("The spec is invalid and was not acted on: {err}")
}

/// Turns the untyped watch into a typed one, reporting the objects that do not decode.
///
/// NB: the reports (a status write and an Event each) are not made in the watch stream:
/// a status write that hangs would stall the stream, and with it every budget. They are
/// queued, latest per budget, for [`Decoder::write_reports`], which runs beside the stream.
pub struct Decoder {
    ctx: Arc<Context>,
    reader: Store<CheckpointBudget>,
    resource: ApiResource,
    reports: Mutex<BTreeMap<BudgetKey, Pending>>,
    wake: Notify,
}

/// A report waiting to be written.
struct Pending {
    reference: ObjectReference,
    prior: Value,
    generation: Option<i64>,
    err: SpecError,
}

impl Decoder {
    /// A decoder reporting through `ctx` (status, Events, metrics); `reader` is the
    /// reflector's store, to drop budgets that stop decoding.
    pub fn new(ctx: Arc<Context>, reader: Store<CheckpointBudget>) -> Self {
        Self {
            ctx,
            reader,
            resource: api_resource(),
            reports: Mutex::default(),
            wake: Notify::new(),
        }
    }

    /// Maps one watcher event. `None` drops it (an undecodable object seen for the first
    /// time, or deleted). Never waits: reports are queued.
    pub fn event(&self, event: watcher::Event<DynamicObject>) -> Option<watcher::Event<CheckpointBudget>> {
        use watcher::Event;
        match event {
            Event::Init => Some(Event::Init),
            Event::InitDone => Some(Event::InitDone),
            // Left out of the initial list, an undecodable object is left out of the store.
            Event::InitApply(object) => self.apply(&object).map(Event::InitApply),
            Event::Apply(object) => match self.apply(&object) {
                Some(budget) => Some(Event::Apply(budget)),
                None => self.stored(&object).map(Event::Delete),
            },
            Event::Delete(object) => match decode(&object) {
                Ok(budget) => {
                    self.forget(&object);
                    Some(Event::Delete(budget))
                }
                Err(_) => {
                    self.forget(&object);
                    self.stored(&object).map(Event::Delete)
                }
            },
        }
    }

    /// The decoded budget, or `None` after queueing the report of why it does not decode.
    fn apply(&self, object: &DynamicObject) -> Option<CheckpointBudget> {
        match decode(object) {
            Ok(budget) => {
                // A report queued for an older version is moot.
                self.forget(object);
                Some(budget)
            }
            Err(err) => {
                self.queue(object, err);
                None
            }
        }
    }

    /// The last decodable version of `object` in the reflector, if any.
    fn stored(&self, object: &DynamicObject) -> Option<CheckpointBudget> {
        let reference = kube::runtime::reflector::ObjectRef::<CheckpointBudget>::new(&object.name_any())
            .within(object.namespace().as_deref().unwrap_or_default());
        self.reader.get(&reference).map(|b| (*b).clone())
    }

    fn key(object: &DynamicObject) -> Option<BudgetKey> {
        Some(BudgetKey::new(object.namespace()?, object.metadata.name.clone()?))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<BudgetKey, Pending>> {
        // NB: inserts and removals only; a poisoned lock holds a consistent map.
        self.reports.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn queue(&self, object: &DynamicObject, err: SpecError) {
        let Some(key) = Self::key(object) else {
            warn!(error = %err, "an undecodable budget without a name or namespace; ignored");
            return;
        };
        self.ctx
            .metrics
            .reconcile
            .set_failure(&key.to_string(), "invalid_spec");
        let pending = Pending {
            reference: object.object_ref(&self.resource),
            prior: object.data.get("status").cloned().unwrap_or(Value::Null),
            generation: object.metadata.generation,
            err,
        };
        self.lock().insert(key, pending);
        self.wake.notify_one();
    }

    fn forget(&self, object: &DynamicObject) {
        if let Some(key) = Self::key(object) {
            self.lock().remove(&key);
        }
    }

    /// Writes the queued reports, for as long as it runs (beside the watch stream; each write
    /// is bounded by the client's request timeout).
    pub async fn write_reports(&self) {
        loop {
            let next = {
                let mut reports = self.lock();
                let key = reports.keys().next().cloned();
                key.and_then(|k| reports.remove_entry(&k))
            };
            match next {
                Some((key, pending)) => self.report(&key, pending).await,
                None => self.wake.notified().await,
            }
        }
    }

    /// Whether reports are waiting to be written.
    pub fn reports_pending(&self) -> bool {
        !self.lock().is_empty()
    }

    /// Writes `Ready=False InvalidSpec` with the decoding error to the object's status and
    /// publishes a Warning Event — unless this generation already says exactly that.
    async fn report(&self, key: &BudgetKey, pending: Pending) {
        let Pending {
            reference,
            prior,
            generation,
            err,
        } = pending;
        let store = FencedStore::new(
            KubeStore::for_reference(self.ctx.client.clone(), self.ctx.recorder.clone(), reference),
            self.ctx.core.fence.clone(),
        );
        let now = (self.ctx.clock)();
        match invalid_status(prior, generation, &err, now) {
            Some((status, notice)) => {
                warn!(budget = %key, error = %err, "budget does not decode; not reconciled");
                if let Err(e) = store.save_status(key, &status).await {
                    warn!(budget = %key, error = %e, "status of an undecodable budget not written");
                    return;
                }
                if let Some(notice) = notice
                    && let Err(e) = store.publish(key, &notice).await
                {
                    warn!(budget = %key, error = %e, "event not published");
                }
            }
            None => info!(budget = %key, "undecodable budget already reported"),
        }
    }
}

/// The status to write for an undecodable budget whose current status is `prior` (raw JSON,
/// perhaps undecodable itself), with the Event to publish when the condition is new; `None`
/// when the status already reports exactly this error for this generation.
pub fn invalid_status(
    prior: Value,
    generation: Option<i64>,
    err: &SpecError,
    now: Timestamp,
) -> Option<(CheckpointBudgetStatus, Option<Notice>)> {
    // NB: an unreadable status is replaced: the controller owns it, and this one cannot
    // guide anything.
    let prior: CheckpointBudgetStatus = serde_json::from_value(prior).unwrap_or_default();
    let message = invalid_message(err);
    let same_condition = status::condition(&prior.conditions, READY)
        .is_some_and(|c| c.status == "False" && c.reason == INVALID_SPEC && c.message == message);
    if same_condition && prior.observed_generation == generation {
        return None;
    }
    let mut next = prior;
    next.observed_generation = generation;
    status::set_condition(
        &mut next.conditions,
        READY,
        Truth::False,
        INVALID_SPEC,
        message.clone(),
        generation,
        now,
    );
    // NB: an operation in flight stays recorded (and Scaling as it was): once the spec is
    // fixed, the next reconcile follows it rather than acting again.
    if next.operation_in_flight.is_none() {
        status::set_condition(
            &mut next.conditions,
            SCALING,
            Truth::False,
            INVALID_SPEC,
            "Not scaling while the budget is not Ready.",
            generation,
            now,
        );
    }
    let notice = (!same_condition).then(|| Notice {
        type_: NoticeType::Warning,
        reason: INVALID_SPEC.to_owned(),
        action: "Observing".to_owned(),
        note: message,
    });
    Some((next, notice))
}

#[cfg(test)]
mod tests {
    use std::{sync::Arc, time::Duration};

    use http::Method;
    use kube::api::{Api, ObjectList};
    use serde_json::{Value, json};

    use super::*;
    use crate::{controller::run_controller, fixtures};

    /// The test budget with `spec.parallelism.min` written as a string, named `broken`.
    fn malformed() -> Value {
        let mut bad = serde_json::to_value(CheckpointBudget::test()).unwrap();
        bad["metadata"]["name"] = json!("broken");
        bad["metadata"]["uid"] = json!("5f0c-broken-uid");
        bad["metadata"]["generation"] = json!(2);
        bad["spec"]["parallelism"]["min"] = json!("2");
        bad
    }

    fn dynamic(value: Value) -> DynamicObject {
        serde_json::from_value(value).unwrap()
    }

    /// Why the watch is untyped: one malformed item fails a typed list as a whole.
    #[test]
    fn one_malformed_item_fails_a_typed_list() {
        let list = json!({
            "apiVersion": "checkpoint-autoscaler.dev/v1alpha1", "kind": "CheckpointBudgetList",
            "metadata": {"resourceVersion": "10"},
            "items": [malformed(), serde_json::to_value(CheckpointBudget::test()).unwrap()],
        });
        assert!(serde_json::from_value::<ObjectList<CheckpointBudget>>(list.clone()).is_err());
        let untyped: ObjectList<DynamicObject> = serde_json::from_value(list).unwrap();
        assert_eq!(untyped.items.len(), 2);
    }

    #[test]
    fn decoding_errors_name_the_field() {
        let err = decode(&dynamic(malformed())).unwrap_err();
        assert_eq!(err.field, "spec.parallelism.min");
        assert_eq!(err.problem, r#"invalid type: string "2", expected u32"#);

        let mut huge = malformed();
        huge["spec"]["parallelism"]["min"] = json!(1e30);
        let err = decode(&dynamic(huge)).unwrap_err();
        assert_eq!(err.field, "spec.parallelism.min");
        assert!(err.problem.contains("1e+30"), "{err}");

        let mut missing = serde_json::to_value(CheckpointBudget::test()).unwrap();
        missing["spec"]["application"]
            .as_object_mut()
            .unwrap()
            .remove("name");
        let err = decode(&dynamic(missing)).unwrap_err();
        assert_eq!(err.field, "spec.application");
        assert_eq!(err.problem, "missing field `name`");

        let mut no_spec = serde_json::to_value(CheckpointBudget::test()).unwrap();
        no_spec.as_object_mut().unwrap().remove("spec");
        let err = decode(&dynamic(no_spec)).unwrap_err();
        assert_eq!(
            (err.field.as_str(), err.problem.as_str()),
            ("", "missing field `spec`")
        );

        let mut bad_status = serde_json::to_value(CheckpointBudget::test()).unwrap();
        bad_status["status"] = json!({"conditions": "all good"});
        let err = decode(&dynamic(bad_status)).unwrap_err();
        assert_eq!(err.field, "status.conditions");
        assert!(err.fix.contains("status"), "{err}");

        let good = decode(&dynamic(serde_json::to_value(CheckpointBudget::test()).unwrap())).unwrap();
        assert_eq!(good, CheckpointBudget::test());
    }

    #[test]
    fn an_undecodable_budget_is_reported_once_per_generation() {
        let err = decode(&dynamic(malformed())).unwrap_err();
        let now = fixtures::now();
        let (status, notice) = invalid_status(Value::Null, Some(2), &err, now).unwrap();
        let ready = status.condition(READY).unwrap();
        assert_eq!(
            (ready.status.as_str(), ready.reason.as_str()),
            ("False", INVALID_SPEC)
        );
        assert!(
            ready.message.contains("spec.parallelism.min"),
            "{}",
            ready.message
        );
        assert_eq!(status.condition(SCALING).unwrap().status, "False");
        assert_eq!(status.observed_generation, Some(2));
        assert!(notice.is_some());

        let written = serde_json::to_value(&status).unwrap();
        assert!(invalid_status(written.clone(), Some(2), &err, now).is_none());
        // A new generation with the same mistake: the status follows, no second Event.
        let (again, notice) = invalid_status(written, Some(3), &err, now).unwrap();
        assert_eq!(again.observed_generation, Some(3));
        assert!(notice.is_none());
        // An unreadable status is replaced.
        let (_, notice) = invalid_status(json!({"conditions": 7}), Some(2), &err, now).unwrap();
        assert!(notice.is_some());
    }

    /// A budget that stops decoding leaves the reflector (a Delete of its last good
    /// version), so it is neither reconciled with its stale spec nor counted as the owner of
    /// its application; its status and an Event say why.
    #[tokio::test]
    async fn a_budget_that_stops_decoding_leaves_the_store() {
        use kube::runtime::{reflector, watcher::Event};
        let (ctx, mut api, fake) = crate::controller::Context::test();
        let (reader, mut writer) = reflector::store::<CheckpointBudget>();
        let good = CheckpointBudget::test();
        writer.apply_watcher_event(&Event::Apply(good.clone()));
        let decoder = Arc::new(Decoder::new(ctx.clone(), reader.clone()));
        let reports = tokio::spawn({
            let decoder = decoder.clone();
            async move { decoder.write_reports().await }
        });
        let mut bad = malformed();
        bad["metadata"]["name"] = json!(fixtures::NAME);
        let server = {
            let bad = bad.clone();
            tokio::spawn(async move {
                let patch = api.expect(Method::PATCH, &fixtures::status_uri()).await;
                let status: CheckpointBudgetStatus =
                    serde_json::from_value(patch.json()["status"].clone()).unwrap();
                assert_eq!(status.condition(READY).unwrap().reason, INVALID_SPEC);
                patch.reply_json(&bad);
                let event = api.next().await;
                assert_eq!(event.json()["reason"], INVALID_SPEC);
                event.echo();
                api.expect_silence().await;
            })
        };
        match decoder.event(Event::Apply(dynamic(bad))) {
            Some(Event::Delete(gone)) => assert_eq!(gone, good),
            other => panic!("expected the stored budget to be deleted, got {other:?}"),
        }
        fixtures::timeout_after_1s(server).await;
        assert!(!decoder.reports_pending());
        reports.abort();
        assert!(fake.read(|s| s.calls.is_empty()));
        // Deleted while undecodable: nothing to tell the reflector beyond the stored version.
        writer.apply_watcher_event(&Event::Delete(good));
        assert!(decoder.event(Event::Delete(dynamic(malformed()))).is_none());
    }

    /// One malformed and one good budget in the same list: the good one is reconciled and
    /// scales; the malformed one gets `Ready=False InvalidSpec` naming the field, and an
    /// Event; neither stalls the controller.
    #[tokio::test]
    async fn a_malformed_budget_does_not_stall_the_others() {
        malformed_and_good(false).await;
    }

    /// The status write reporting a malformed budget hangs (the API server never answers
    /// it): it is written beside the watch stream, so the good budget is still reconciled
    /// and scales.
    #[tokio::test]
    async fn a_hung_report_does_not_stall_the_watch() {
        malformed_and_good(true).await;
    }

    async fn malformed_and_good(hang_report: bool) {
        let (ctx, mut api, fake) = crate::controller::Context::test();
        fake.with(|s| s.samples = fixtures::overloaded());
        let good = CheckpointBudget::test();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let controller = tokio::spawn(run_controller(
            Api::all(ctx.client.clone()),
            ctx.clone(),
            async move {
                let _ = stop_rx.await;
            },
        ));

        let list = json!({
            "apiVersion": "checkpoint-autoscaler.dev/v1alpha1", "kind": "CheckpointBudgetList",
            "metadata": {"resourceVersion": "10"},
            "items": [malformed(), serde_json::to_value(&good).unwrap()],
        });
        #[derive(Default)]
        struct Seen {
            bad_status: Option<CheckpointBudgetStatus>,
            bad_event: Option<Value>,
            good_status: Option<CheckpointBudgetStatus>,
        }
        let seen = Arc::new(std::sync::Mutex::new(Seen::default()));
        // Plays the API server until the test ends; watches are held open, unanswered.
        let server = {
            let seen = seen.clone();
            let good = good.clone();
            tokio::spawn(async move {
                let mut watches = Vec::new();
                loop {
                    let exchange = api.next().await;
                    let uri = exchange.uri().to_owned();
                    let mut seen = seen.lock().unwrap();
                    match exchange.method().clone() {
                        Method::GET if uri.contains("watch=true") => watches.push(exchange),
                        Method::GET
                            if uri.starts_with(
                                "/apis/checkpoint-autoscaler.dev/v1alpha1/checkpointbudgets?",
                            ) =>
                        {
                            exchange.reply_json(&list)
                        }
                        Method::PATCH if uri.contains("/checkpointbudgets/broken/status?") => {
                            seen.bad_status =
                                Some(serde_json::from_value(exchange.json()["status"].clone()).unwrap());
                            if hang_report {
                                // Taken, never answered.
                                watches.push(exchange);
                                continue;
                            }
                            // As the API server would: the whole object, still malformed.
                            exchange.reply_json(&malformed());
                        }
                        Method::PATCH if uri.contains("/checkpointbudgets/orders/status?") => {
                            let status: CheckpointBudgetStatus =
                                serde_json::from_value(exchange.json()["status"].clone()).unwrap();
                            exchange.reply_json(&good.clone().with_status(status.clone()));
                            seen.good_status = Some(status);
                        }
                        Method::POST if uri.contains("/events") => {
                            let event = exchange.json();
                            if event["regarding"]["name"] == "broken" {
                                seen.bad_event = Some(event);
                            }
                            exchange.echo();
                        }
                        method => panic!("unexpected request {method} {uri}"),
                    }
                }
            })
        };
        let done = || {
            let seen = seen.lock().unwrap();
            seen.bad_status.is_some()
                && (hang_report || seen.bad_event.is_some())
                && seen.good_status.is_some()
                && !fake.read(|s| s.updates.is_empty())
        };
        tokio::time::timeout(Duration::from_secs(10), async {
            while !done() {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
        .expect("both budgets handled within 10 s");
        stop_tx.send(()).unwrap();
        tokio::time::timeout(Duration::from_secs(5), controller)
            .await
            .expect("the controller stops")
            .unwrap();
        assert!(!server.is_finished(), "the API server script failed");
        server.abort();
        let Seen {
            bad_status,
            bad_event,
            good_status,
        } = std::mem::take(&mut *seen.lock().unwrap());

        let bad = bad_status.unwrap();
        let ready = bad.condition(READY).unwrap();
        assert_eq!(
            (ready.status.as_str(), ready.reason.as_str()),
            ("False", INVALID_SPEC)
        );
        assert!(
            ready
                .message
                .contains(r#"spec.parallelism.min: invalid type: string "2", expected u32"#),
            "{}",
            ready.message
        );
        assert_eq!(bad.observed_generation, Some(2));
        if hang_report {
            assert!(bad_event.is_none(), "the Event follows the status write");
        } else {
            let event = bad_event.unwrap();
            assert_eq!(event["reason"], INVALID_SPEC);
            assert_eq!(event["type"], "Warning");
            assert!(
                event["note"].as_str().unwrap().contains("spec.parallelism.min"),
                "{event}"
            );
        }

        let updates = fake.read(|s| s.updates.clone());
        assert_eq!(updates.len(), 1, "the good budget scaled once");
        assert_eq!(updates[0].name, fixtures::APP);
        assert!(updates[0].to.parallelism > 4);
        assert_eq!(good_status.unwrap().condition(READY).unwrap().status, "True");
    }

    fn corpus_header<'a>(text: &'a str, key: &str) -> Option<&'a str> {
        text.lines()
            .filter_map(|l| l.strip_prefix("# "))
            .find_map(|l| l.strip_prefix(key).map(str::trim))
    }

    /// The invalid-budget corpus fed to the controller as if the schema had been bypassed:
    /// a budget that does not decode is reported with serde's path to the field (the
    /// `decode-error` line of the file) and never reaches the reconciler; one that decodes
    /// but breaks a rule (`spec-error`) gets `Ready=False InvalidSpec` naming the field, a
    /// Warning Event, and no AWS call.
    #[tokio::test]
    async fn the_invalid_corpus_bypassing_the_schema() {
        use crate::controller::{Error, reconcile::BudgetView, store::MemoryStore};
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/invalid");
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
            .collect();
        files.sort();
        let mut mismatches = Vec::new();
        let (mut undecodable, mut refused, mut out_of_scope) = (0, 0, 0);
        for file in &files {
            let name = file.file_name().unwrap().to_string_lossy().into_owned();
            let text = std::fs::read_to_string(file).unwrap();
            // As the API server hands it over: JSON. A file that is not even YAML never
            // gets there.
            let Ok(mut value) = serde_yaml::from_str::<Value>(&text) else {
                continue;
            };
            value["metadata"]["namespace"] = json!("streaming");
            value["metadata"]["generation"] = json!(1);
            if value["metadata"]["name"].as_str().is_none_or(str::is_empty) {
                value["metadata"]["name"] = json!("unnamed");
            }
            let object = dynamic(value);
            match decode(&object) {
                Err(err) => {
                    undecodable += 1;
                    let got = err.to_string();
                    match corpus_header(&text, "decode-error:") {
                        Some(want) if got.starts_with(want) => {}
                        want => mismatches.push(format!("{name}: decode-error {want:?}, got {got:?}")),
                    }
                    let (status, notice) =
                        invalid_status(Value::Null, Some(1), &err, fixtures::now()).unwrap();
                    let ready = status.condition(READY).unwrap();
                    assert_eq!(ready.reason, INVALID_SPEC, "{name}");
                    assert!(ready.message.contains(&err.field), "{name}: {}", ready.message);
                    assert!(notice.is_some(), "{name}");
                }
                Ok(budget) => match corpus_header(&text, "spec-error:") {
                    None => mismatches.push(format!("{name}: decodes, but has no spec-error line")),
                    // Refused by the API server whatever the CRD says (metadata, served
                    // versions) or pruned by it (unknown fields): not the reconciler's.
                    Some("none") => {
                        out_of_scope += 1;
                        if let Err(e) = budget.spec.to_budget() {
                            mismatches.push(format!("{name}: spec-error none, got {e}"));
                        }
                    }
                    Some(field) => {
                        refused += 1;
                        let (ctx, _api, fake) = crate::controller::Context::test();
                        let store = MemoryStore::default();
                        let key = BudgetKey::new("streaming", budget.name_any());
                        let view = BudgetView {
                            key: key.clone(),
                            generation: Some(1),
                            spec: &budget.spec,
                            status: None,
                        };
                        let result = ctx.core.reconcile(&view, &store, fixtures::now()).await;
                        match result {
                            Err(Error::InvalidSpec(message))
                                if message.starts_with(&format!("{field}: ")) => {}
                            other => {
                                mismatches.push(format!("{name}: spec-error {field}, got {other:?}"));
                                continue;
                            }
                        }
                        let status = store.status(&key).unwrap();
                        let ready = status.condition(READY).unwrap();
                        assert_eq!(
                            (ready.status.as_str(), ready.reason.as_str()),
                            ("False", INVALID_SPEC)
                        );
                        assert!(ready.message.contains(field), "{name}: {}", ready.message);
                        assert!(
                            ready.message.len() < 1024,
                            "{name}: {} bytes",
                            ready.message.len()
                        );
                        let events = store.events();
                        assert_eq!(events.len(), 1, "{name}: {events:?}");
                        assert_eq!(events[0].1.reason, INVALID_SPEC);
                        assert!(fake.read(|s| s.calls.is_empty()), "{name}: an AWS call");
                    }
                },
            }
        }
        assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
        // Every class is exercised at this level.
        assert!(
            undecodable >= 20 && refused >= 30 && out_of_scope >= 5,
            "{undecodable} {refused} {out_of_scope}"
        );
    }
}
