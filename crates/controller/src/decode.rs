//! Decoding budgets one object at a time, so one malformed budget cannot stall the others.
//!
//! A watcher typed on [`CheckpointBudget`] decodes a whole `list` response in one go: a
//! single object whose spec does not deserialize (a string where a number belongs, written
//! past an older CRD or with the schema bypassed) fails the list, the watcher backs off and
//! retries forever, and *no* budget is reconciled. So the controller watches the resource
//! untyped ([`DynamicObject`]) and decodes each object here:
//!
//! - an object that decodes goes on to the reflector and the reconciler as usual;
//! - one whose spec does not is kept out of both, and its status says what is wrong
//!   (`Ready=False`, reason `InvalidSpec`, with serde's path to the field) with a Warning
//!   Event — once per generation, not on every re-list;
//! - a budget that was valid and became undecodable is removed from the reflector (so it is
//!   neither reconciled with its stale spec nor counted as an owner of its application);
//! - one whose spec decodes but whose *status* does not (an enum value written by a newer
//!   release, say) is kept as it is: it stays in the reflector (it still owns its
//!   application) but is not reconciled, since a reconcile would replace a status it cannot
//!   read — and with it an operation in flight and the history. `Ready=False`, reason
//!   `StatusUnreadable`, and a Warning Event say so and how to get out of it
//!   ([`UnreadableStatuses`] tells the reconciler to leave it alone).
//!
//! NB: these reports touch only `status.conditions` and `status.observedGeneration` (a JSON
//! merge patch conditioned on the object's resourceVersion), so the rest of a status the
//! controller cannot read stays as it was.

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex, OnceLock},
};

use jiff::Timestamp;
use k8s_openapi::{api::core::v1::ObjectReference, apimachinery::pkg::apis::meta::v1::Condition};
use kube::{
    CustomResourceExt, Resource, ResourceExt,
    api::{ApiResource, DynamicObject},
    runtime::{reflector::Store, watcher},
};
use serde_json::{Value, json};
use tokio::sync::Notify;
use tracing::{info, warn};

use super::{
    Context,
    fence::{FencedStore, Guarded},
    status::{self, ConditionStatus, READY, SCALING},
    store::{BudgetKey, BudgetStore, KubeStore, Notice, NoticeType},
};
use crate::crd::{CheckpointBudget, SpecError};

/// The condition and Event reason for a budget the controller cannot act on.
pub const INVALID_SPEC: &str = "InvalidSpec";
/// The condition and Event reason for a budget whose status the controller cannot read.
pub const STATUS_UNREADABLE: &str = "StatusUnreadable";

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

/// A decoded budget, and whether its status could be read.
#[derive(Clone, Debug, PartialEq)]
pub struct Decoded {
    /// The budget; without its status when the status could not be read.
    pub budget: CheckpointBudget,
    /// Why the status could not be read, if it could not.
    pub unreadable_status: Option<SpecError>,
}

/// Decodes one watched object, telling a status it cannot read apart from a spec it cannot
/// read: the first leaves the budget with no status (and says why), the second is an error.
pub fn decode_parts(object: &DynamicObject) -> Result<Decoded, SpecError> {
    match decode(object) {
        Ok(budget) => Ok(Decoded {
            budget,
            unreadable_status: None,
        }),
        Err(err)
            if err.field == "status"
                || err.field.starts_with("status.")
                || err.field.starts_with("status[") =>
        {
            let mut without = object.clone();
            if let Value::Object(map) = &mut without.data {
                map.remove("status");
            }
            let budget = decode(&without)?;
            Ok(Decoded {
                budget,
                unreadable_status: Some(SpecError {
                    fix: unreadable_fix(object),
                    ..err
                }),
            })
        }
        Err(err) => Err(err),
    }
}

/// How to get out of an unreadable status, for `object`.
fn unreadable_fix(object: &DynamicObject) -> String {
    format!(
        "it was probably written by a newer release of checkpoint-autoscaler: run that release \
         again, or let this one start afresh by deleting the status (kubectl patch checkpointbudget \
         {} -n {} --subresource=status --type=merge -p '{{\"status\":null}}'; an operation in flight is \
         then judged from the application)",
        object.name_any(),
        object.namespace().unwrap_or_default()
    )
}

/// The budgets whose status the controller cannot read: the reconciler leaves them alone
/// until their status reads again (see the module docs).
#[derive(Debug, Default)]
pub struct UnreadableStatuses(Mutex<BTreeMap<BudgetKey, String>>);

impl UnreadableStatuses {
    fn set(&self, key: &BudgetKey, why: Option<String>) {
        let mut map = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        match why {
            Some(why) => {
                map.insert(key.clone(), why);
            }
            None => {
                map.remove(key);
            }
        }
    }

    /// Forgets the budgets `live` (`namespace/name`) does not name.
    pub fn retain(&self, live: &std::collections::BTreeSet<String>) {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .retain(|key, _| live.contains(&key.to_string()));
    }

    /// Why the status of `key` cannot be read, if it cannot.
    pub fn get(&self, key: &BudgetKey) -> Option<String> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(key)
            .cloned()
    }
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
    resource_version: Option<String>,
    reason: &'static str,
    message: String,
}

impl Decoder {
    /// A decoder reporting through `ctx` (status, Events, metrics, and its
    /// [`UnreadableStatuses`]); `reader` is the reflector's store, to drop budgets that stop
    /// decoding.
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
            Event::Delete(object) => {
                if let Some(key) = key_of(&object) {
                    self.ctx.unreadable.set(&key, None);
                }
                self.forget(&object);
                match decode_parts(&object) {
                    Ok(decoded) => Some(Event::Delete(decoded.budget)),
                    Err(_) => self.stored(&object).map(Event::Delete),
                }
            }
        }
    }

    /// The decoded budget, or `None` after queueing the report of why it does not decode. A
    /// budget whose status does not decode comes back without it, marked unreadable, and
    /// its report is queued.
    fn apply(&self, object: &DynamicObject) -> Option<CheckpointBudget> {
        match decode_parts(object) {
            Ok(Decoded {
                budget,
                unreadable_status,
            }) => {
                if let Some(key) = key_of(object) {
                    let why = unreadable_status.as_ref().map(ToString::to_string);
                    self.ctx.unreadable.set(&key, why);
                }
                match &unreadable_status {
                    Some(err) => self.queue(object, STATUS_UNREADABLE, unreadable_message(err)),
                    // A report queued for an older version is moot.
                    None => self.forget(object),
                }
                Some(budget)
            }
            Err(err) => {
                self.queue(object, INVALID_SPEC, invalid_message(&err));
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

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<BudgetKey, Pending>> {
        // NB: inserts and removals only; a poisoned lock holds a consistent map.
        self.reports.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn queue(&self, object: &DynamicObject, reason: &'static str, message: String) {
        let Some(key) = key_of(object) else {
            warn!(reason, message, "a budget without a name or namespace; ignored");
            return;
        };
        let label = if reason == INVALID_SPEC {
            "invalid_spec"
        } else {
            "status_unreadable"
        };
        self.ctx.metrics.reconcile.set_failure(&key.to_string(), label);
        let pending = Pending {
            reference: object.object_ref(&self.resource),
            prior: object.data.get("status").cloned().unwrap_or(Value::Null),
            generation: object.metadata.generation,
            resource_version: object.metadata.resource_version.clone(),
            reason,
            message,
        };
        self.lock().insert(key, pending);
        self.wake.notify_one();
    }

    fn forget(&self, object: &DynamicObject) {
        if let Some(key) = key_of(object) {
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

    /// Writes `Ready=False` with the pending reason and message to the object's status
    /// conditions (nothing else of the status is touched, and only if the object is still at
    /// the version read) and publishes a Warning Event — unless this generation already says
    /// exactly that. Only under the fence: a replica that lost the Lease writes nothing.
    async fn report(&self, key: &BudgetKey, pending: Pending) {
        let Pending {
            reference,
            prior,
            generation,
            resource_version,
            reason,
            message,
        } = pending;
        if let Err(e) = self.ctx.core.fence.check(Guarded::Write) {
            info!(budget = %key, reason, error = %e, "budget not reconciled; not reported here: {e}");
            return;
        }
        let store = KubeStore::for_reference(self.ctx.client.clone(), self.ctx.recorder.clone(), reference);
        let now = (self.ctx.clock)();
        match condition_report(&prior, generation, reason, &message, now) {
            Some(report) => {
                warn!(budget = %key, reason, message, "budget not reconciled");
                if let Err(e) = store
                    .patch_conditions(key, &report.patch(), resource_version.as_deref())
                    .await
                {
                    warn!(budget = %key, error = %e, "conditions of a budget not reconciled not written");
                    return;
                }
                if let Some(notice) = report.notice
                    && let Err(e) = FencedStore::new(store, self.ctx.core.fence.clone())
                        .publish(key, &notice)
                        .await
                {
                    warn!(budget = %key, error = %e, "event not published");
                }
            }
            None => info!(budget = %key, reason, "budget not reconciled, already reported"),
        }
    }
}

/// The key of a watched object, when it has a name and a namespace.
fn key_of(object: &DynamicObject) -> Option<BudgetKey> {
    Some(BudgetKey::new(object.namespace()?, object.metadata.name.clone()?))
}

/// The message of the `Ready` condition and Event for an undecodable budget.
pub fn invalid_message(err: &SpecError) -> String {
    format!("The spec is invalid and was not acted on: {err}")
}

/// The message of the `Ready` condition and Event for a budget whose status is unreadable.
pub fn unreadable_message(err: &SpecError) -> String {
    format!(
        "The status cannot be read, so the budget is left alone (no AWS call; the status is \
         kept as it is): {err}"
    )
}

/// What the controller writes about a budget it does not reconcile: the whole list of
/// conditions (the others kept as they were, `Ready` and — without an operation in flight —
/// `Scaling` set False with the reason), `observedGeneration`, and the Event to publish when
/// the condition is new.
#[derive(Clone, Debug, PartialEq)]
pub struct ConditionReport {
    /// `status.conditions`, as raw JSON: conditions this release cannot read are kept.
    pub conditions: Vec<Value>,
    /// `status.observedGeneration`.
    pub observed_generation: Option<i64>,
    /// The Warning Event, when the condition is new.
    pub notice: Option<Notice>,
}

impl ConditionReport {
    /// The JSON merge patch of the status subresource that writes it (and nothing else).
    pub fn patch(&self) -> Value {
        json!({
            "status": {
                "conditions": self.conditions,
                "observedGeneration": self.observed_generation,
            }
        })
    }

    /// The condition `type_`, if it reads.
    pub fn condition(&self, type_: &str) -> Option<Condition> {
        self.conditions
            .iter()
            .filter(|c| c["type"] == type_)
            .find_map(|c| serde_json::from_value(c.clone()).ok())
    }
}

/// The conditions to write for a budget the controller does not reconcile (`reason`,
/// `message`) whose current status is `prior` (raw JSON, perhaps unreadable itself); `None`
/// when the status already reports exactly this for this generation.
pub fn condition_report(
    prior: &Value,
    generation: Option<i64>,
    reason: &str,
    message: &str,
    now: Timestamp,
) -> Option<ConditionReport> {
    let raw: Vec<Value> = prior
        .get("conditions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    // The conditions this release reads, to set Ready and Scaling as the reconciler would.
    let mut readable: Vec<Condition> = raw
        .iter()
        .filter_map(|c| serde_json::from_value(c.clone()).ok())
        .collect();
    let same_condition = status::condition(&readable, READY)
        .is_some_and(|c| c.status == "False" && c.reason == reason && c.message == message);
    let observed = prior.get("observedGeneration").and_then(Value::as_i64);
    if same_condition && observed == generation {
        return None;
    }
    status::set_condition(
        &mut readable,
        READY,
        ConditionStatus::False,
        reason,
        message,
        generation,
        now,
    );
    let mut changed = vec![READY];
    // NB: an operation in flight (or a status that may hold one) keeps Scaling as it was:
    // once the budget is readable again, the next reconcile follows it.
    let in_flight = prior.get("operationInFlight").is_some_and(|v| !v.is_null());
    if !in_flight && reason == INVALID_SPEC {
        status::set_condition(
            &mut readable,
            SCALING,
            ConditionStatus::False,
            reason,
            "Not scaling while the budget is not Ready.",
            generation,
            now,
        );
        changed.push(SCALING);
    }
    // The conditions just set, every other entry exactly as it was.
    let is_changed = |c: &Value| {
        c.get("type")
            .and_then(Value::as_str)
            .is_some_and(|t| changed.contains(&t))
    };
    let mut conditions: Vec<Value> = raw.into_iter().filter(|c| !is_changed(c)).collect();
    conditions.extend(
        readable
            .iter()
            .filter(|c| changed.contains(&c.type_.as_str()))
            .filter_map(|c| serde_json::to_value(c).ok()),
    );
    let notice = (!same_condition).then(|| Notice {
        type_: NoticeType::Warning,
        reason: reason.to_owned(),
        action: "Observing".to_owned(),
        note: message.to_owned(),
    });
    // Keep the set's order stable (Ready, SloMet, Scaling, others).
    conditions.sort_by_key(|c| match c.get("type").and_then(Value::as_str) {
        Some(READY) => 0,
        Some(status::SLO_MET) => 1,
        Some(SCALING) => 2,
        _ => 3,
    });
    Some(ConditionReport {
        conditions,
        observed_generation: generation,
        notice,
    })
}

#[cfg(test)]
mod tests {
    use std::{sync::Arc, time::Duration};

    use http::Method;
    use kube::api::{Api, ObjectList};
    use serde_json::{Value, json};

    use super::*;
    use crate::{crd::CheckpointBudgetStatus, fixtures, fixtures::TestBudget as _, run_controller};

    /// The test budget with `spec.parallelism.min` written as a string, named `broken`.
    fn malformed() -> Value {
        let mut bad = serde_json::to_value(CheckpointBudget::test()).unwrap();
        bad["metadata"]["name"] = json!("broken");
        bad["metadata"]["uid"] = json!("5f0c-broken-uid");
        bad["metadata"]["generation"] = json!(2);
        bad["spec"]["parallelism"]["min"] = json!("2");
        bad
    }

    /// The URI of a merge patch of the test budget's status.
    fn merge_status_uri() -> String {
        format!(
            "/apis/checkpoint-autoscaler.dev/v1alpha1/namespaces/{}/checkpointbudgets/{}/status?&fieldManager=checkpoint-autoscaler",
            fixtures::NAMESPACE,
            fixtures::NAME
        )
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

    /// The report for a budget the controller does not reconcile, written as a merge patch
    /// of the conditions alone.
    fn report(
        prior: &Value,
        generation: i64,
        err: &SpecError,
    ) -> Option<(CheckpointBudgetStatus, Option<Notice>)> {
        let report = condition_report(
            prior,
            Some(generation),
            INVALID_SPEC,
            &invalid_message(err),
            fixtures::now(),
        )?;
        let status = serde_json::from_value(report.patch()["status"].clone()).unwrap();
        Some((status, report.notice))
    }

    #[test]
    fn an_undecodable_budget_is_reported_once_per_generation() {
        let err = decode(&dynamic(malformed())).unwrap_err();
        let (status, notice) = report(&Value::Null, 2, &err).unwrap();
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
        assert!(report(&written, 2, &err).is_none());
        // A new generation with the same mistake: the status follows, no second Event.
        let (again, notice) = report(&written, 3, &err).unwrap();
        assert_eq!(again.observed_generation, Some(3));
        assert!(notice.is_none());
        // Conditions that do not read are replaced by the ones written.
        let (_, notice) = report(&json!({"conditions": 7}), 2, &err).unwrap();
        assert!(notice.is_some());
    }

    /// The report names only the conditions and observedGeneration: whatever else the status
    /// holds (an operation in flight written by a newer release, in a form this one cannot
    /// read) is not in the patch, so it stays; a condition this release does not know stays
    /// too, and Scaling is not touched while an operation is in flight.
    #[test]
    fn a_report_keeps_everything_but_the_conditions_it_sets() {
        let prior = json!({
            "observedGeneration": 2,
            "conditions": [
                {"type": "Ready", "status": "True", "reason": "ApplicationObserved", "message": "",
                 "lastTransitionTime": "2026-11-26T07:00:00Z"},
                {"type": "Scaling", "status": "True", "reason": "ScaleUpRequired", "message": "x",
                 "lastTransitionTime": "2026-11-26T07:00:00Z"},
                {"type": "FromTheFuture", "status": "Maybe", "reason": "NewThing", "message": "x",
                 "lastTransitionTime": "2026-11-26T07:00:00Z", "extra": {"field": 1}},
            ],
            "operationInFlight": {"operationId": "op-9", "from": {"parallelism": 4, "parallelismPerKpu": 1, "kpus": 4},
                                  "to": {"parallelism": 8, "parallelismPerKpu": 1, "kpus": 8},
                                  "startedAt": "2026-11-26T07:55:00Z", "versionIdBefore": 7,
                                  "cause": "SomethingNew", "reason": "ScaleUpRequired"},
        });
        let message = "The status cannot be read: status.operationInFlight.cause: unknown variant";
        let report = condition_report(&prior, Some(3), STATUS_UNREADABLE, message, fixtures::now()).unwrap();
        let patch = report.patch();
        let keys: Vec<_> = patch["status"].as_object().unwrap().keys().cloned().collect();
        assert_eq!(keys, ["conditions", "observedGeneration"]);
        let ready = report.condition(READY).unwrap();
        assert_eq!(
            (ready.status.as_str(), ready.reason.as_str()),
            ("False", STATUS_UNREADABLE)
        );
        assert_eq!(report.condition(SCALING).unwrap().reason, "ScaleUpRequired");
        let future = report
            .conditions
            .iter()
            .find(|c| c["type"] == "FromTheFuture")
            .unwrap();
        assert_eq!(future["extra"]["field"], 1, "kept verbatim");
        assert!(report.notice.is_some());
    }

    /// A budget that stops decoding leaves the reflector (a Delete of its last good
    /// version), so it is neither reconciled with its stale spec nor counted as the owner of
    /// its application; its status and an Event say why.
    #[tokio::test]
    async fn a_budget_that_stops_decoding_leaves_the_store() {
        use kube::runtime::{reflector, watcher::Event};
        let (ctx, mut api, fake) = crate::Context::test();
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
                let patch = api.expect(Method::PATCH, &merge_status_uri()).await;
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
        let (ctx, mut api, fake) = crate::Context::test();
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

    /// A status written by a newer release: an operation in flight whose cause this release
    /// does not know.
    fn from_a_newer_release(name: &str, created: &str) -> Value {
        let mut budget = serde_json::to_value(CheckpointBudget::test()).unwrap();
        budget["metadata"]["name"] = json!(name);
        budget["metadata"]["uid"] = json!(format!("uid-{name}"));
        budget["metadata"]["creationTimestamp"] = json!(created);
        budget["status"] = json!({
            "observedGeneration": 3,
            "operationInFlight": {
                "operationId": "op-7",
                "from": {"parallelism": 4, "parallelismPerKpu": 1, "kpus": 4},
                "to": {"parallelism": 8, "parallelismPerKpu": 1, "kpus": 8},
                "startedAt": "2026-11-26T07:55:00Z", "versionIdBefore": 7,
                "cause": "CheckpointStorm", "reason": "ScaleUpRequired",
            },
        });
        budget
    }

    #[test]
    fn an_unreadable_status_is_told_apart_from_an_invalid_spec() {
        let object = dynamic(from_a_newer_release("orders", "2026-01-01T00:00:00Z"));
        let decoded = decode_parts(&object).unwrap();
        assert_eq!(decoded.budget.status, None);
        assert_eq!(decoded.budget.spec, CheckpointBudget::test().spec);
        let err = decoded.unreadable_status.unwrap();
        assert_eq!(err.field, "status.operationInFlight.cause");
        assert!(err.problem.contains("CheckpointStorm"), "{err}");
        assert!(
            err.fix.contains("newer release") && err.fix.contains("--subresource=status"),
            "{err}"
        );
        // A bad spec is still a bad spec, whatever the status.
        let mut both = from_a_newer_release("orders", "2026-01-01T00:00:00Z");
        both["spec"]["parallelism"]["min"] = json!("2");
        assert_eq!(
            decode_parts(&dynamic(both)).unwrap_err().field,
            "spec.parallelism.min"
        );
    }

    /// A budget whose status a newer release wrote (an operation in flight with a cause this
    /// release does not know) is never reconciled, so its status is never replaced: the only
    /// write is a merge patch of its conditions (Ready=False StatusUnreadable, the operation
    /// kept), with one Warning Event, and no AWS call is made for it. It still owns its
    /// application: a younger budget naming it reports Conflict and does not act.
    #[tokio::test]
    async fn an_unreadable_status_is_kept_and_reported_never_replaced() {
        let (ctx, mut api, fake) = crate::Context::test();
        fake.with(|s| s.samples = fixtures::overloaded());
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let controller = tokio::spawn(run_controller(
            Api::all(ctx.client.clone()),
            ctx.clone(),
            async move {
                let _ = stop_rx.await;
            },
        ));
        let mut younger = serde_json::to_value(CheckpointBudget::test()).unwrap();
        younger["metadata"]["name"] = json!("orders-too");
        younger["metadata"]["uid"] = json!("uid-younger");
        younger["metadata"]["creationTimestamp"] = json!("2026-06-01T00:00:00Z");
        let list = json!({
            "apiVersion": "checkpoint-autoscaler.dev/v1alpha1", "kind": "CheckpointBudgetList",
            "metadata": {"resourceVersion": "10"},
            "items": [from_a_newer_release("orders", "2026-01-01T00:00:00Z"), younger],
        });
        #[derive(Default)]
        struct Seen {
            patches: Vec<(String, Value)>,
            events: Vec<Value>,
        }
        let seen = Arc::new(std::sync::Mutex::new(Seen::default()));
        let server = {
            let seen = seen.clone();
            tokio::spawn(async move {
                let mut watches = Vec::new();
                loop {
                    let exchange = api.next().await;
                    let uri = exchange.uri().to_owned();
                    match exchange.method().clone() {
                        Method::GET if uri.contains("watch=true") => watches.push(exchange),
                        Method::GET => exchange.reply_json(&list),
                        Method::PATCH => {
                            let body = exchange.json();
                            let name = if uri.contains("/orders/status") {
                                "orders"
                            } else {
                                "orders-too"
                            };
                            let mut reply = list["items"][if name == "orders" { 0 } else { 1 }].clone();
                            reply["metadata"]["resourceVersion"] = json!("11");
                            exchange.reply_json(&reply);
                            seen.lock().unwrap().patches.push((uri, body));
                        }
                        Method::POST if uri.contains("/events") => {
                            seen.lock().unwrap().events.push(exchange.json());
                            exchange.echo();
                        }
                        method => panic!("unexpected request {method} {uri}"),
                    }
                }
            })
        };
        tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                let done = {
                    let seen = seen.lock().unwrap();
                    seen.patches.iter().any(|(u, _)| u.contains("/orders/status"))
                        && seen.patches.iter().any(|(u, _)| u.contains("/orders-too/status"))
                };
                if done {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
        .expect("both budgets handled within 10 s");
        // Time for a reconcile of the unreadable budget, which must not come.
        tokio::time::sleep(Duration::from_millis(300)).await;
        stop_tx.send(()).unwrap();
        tokio::time::timeout(Duration::from_secs(5), controller)
            .await
            .expect("the controller stops")
            .unwrap();
        assert!(!server.is_finished(), "the API server script failed");
        server.abort();
        let seen = std::mem::take(&mut *seen.lock().unwrap());

        let ours: Vec<&Value> = seen
            .patches
            .iter()
            .filter(|(u, _)| u.contains("/orders/status"))
            .map(|(_, b)| b)
            .collect();
        assert_eq!(ours.len(), 1, "one write, the report: {ours:#?}");
        let (uri, _) = seen
            .patches
            .iter()
            .find(|(u, _)| u.contains("/orders/status"))
            .unwrap();
        assert!(!uri.contains("force=true"), "a merge patch, not an apply: {uri}");
        let patch = ours[0];
        assert_eq!(patch["metadata"]["resourceVersion"], fixtures::RESOURCE_VERSION);
        let fields: Vec<_> = patch["status"].as_object().unwrap().keys().cloned().collect();
        assert_eq!(
            fields,
            ["conditions", "observedGeneration"],
            "nothing else is touched"
        );
        let ready = &patch["status"]["conditions"][0];
        assert_eq!(
            (&ready["type"], &ready["reason"]),
            (&json!("Ready"), &json!(STATUS_UNREADABLE))
        );
        assert!(
            ready["message"]
                .as_str()
                .unwrap()
                .contains("status.operationInFlight.cause"),
            "{ready}"
        );
        let events: Vec<&Value> = seen
            .events
            .iter()
            .filter(|e| e["regarding"]["name"] == "orders")
            .collect();
        assert_eq!(events.len(), 1);
        assert_eq!(events[0]["reason"], STATUS_UNREADABLE);
        assert_eq!(events[0]["type"], "Warning");

        // The younger budget saw the older one as the owner.
        let (_, younger) = seen
            .patches
            .iter()
            .find(|(u, _)| u.contains("/orders-too/status"))
            .unwrap();
        let status: CheckpointBudgetStatus = serde_json::from_value(younger["status"].clone()).unwrap();
        assert_eq!(status.condition(READY).unwrap().reason, "Conflict");
        assert!(fake.read(|s| s.updates.is_empty()), "no UpdateApplication at all");
        assert!(
            fake.read(|s| s
                .calls
                .iter()
                .filter(|c| c.starts_with("DescribeApplication:"))
                .count())
                <= 1,
            "only the younger budget described the application"
        );
        assert!(
            ctx.unreadable
                .get(&BudgetKey::new(fixtures::NAMESPACE, "orders"))
                .is_some()
        );
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
        use crate::{Error, reconcile::BudgetView, store::MemoryStore};
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/data/invalid");
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
                    let (status, notice) = report(&Value::Null, 1, &err).unwrap();
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
                        let (ctx, _api, fake) = crate::Context::test();
                        let store = MemoryStore::default();
                        let key = BudgetKey::new("streaming", budget.name_any());
                        let view = BudgetView {
                            key: key.clone(),
                            generation: Some(1),
                            spec: &budget.spec,
                            status: None,
                            resource_version: None,
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
