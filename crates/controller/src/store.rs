//! Where the reconcile core writes what it concluded: the budget's status and its Events.
//!
//! Two implementations of [`BudgetStore`]: [`KubeStore`] (server-side apply on `/status`
//! with the field manager [`FIELD_MANAGER`], Events through kube's `Recorder`) for the
//! cluster, and [`MemoryStore`] for `demo` and tests, where the budgets come from files.
//!
//! Every status write carries the `resourceVersion` of the object it was computed from (or
//! the one the previous write of the same reconcile returned) as a precondition: the API
//! server refuses it with 409 Conflict when the budget changed meanwhile, so a status
//! computed from a stale read (a watch cache that lags behind the write of an intent)
//! never replaces a newer one, and an intent is recorded only on the object the decision
//! was made on.

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
};

use async_trait::async_trait;
use k8s_openapi::api::core::v1::ObjectReference;
use kube::{
    Client, Resource,
    api::{Api, ApiResource, DynamicObject, Patch, PatchParams},
    runtime::events::{Event, EventType, Recorder},
};
use serde_json::json;

use crate::crd::{CheckpointBudget, CheckpointBudgetStatus};

/// The field manager of every status write: the status belongs to the controller alone.
pub const FIELD_MANAGER: &str = "checkpoint-autoscaler";

/// The finalizer the controller puts on a budget once it has changed something it gives
/// back when the budget is deleted (`spec.onDelete: Restore`).
pub const FINALIZER: &str = "checkpointbudgets.checkpoint-autoscaler.dev";

/// Identifies one budget for the store.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BudgetKey {
    /// Namespace of the budget.
    pub namespace: String,
    /// Name of the budget.
    pub name: String,
}

impl BudgetKey {
    /// Builds a key.
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            namespace: namespace.into(),
            name: name.into(),
        }
    }
}

impl std::fmt::Display for BudgetKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// Severity of a [`Notice`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NoticeType {
    /// Something happened as intended.
    Normal,
    /// Something needs a person's attention.
    Warning,
}

/// An Event about a budget: published only on transitions, never on every requeue.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Notice {
    /// Severity.
    pub type_: NoticeType,
    /// CamelCase fact, e.g. `ScaleUpRequired`, `ScalingFailed`, `DiagnosisChanged`.
    pub reason: String,
    /// CamelCase action, e.g. `Scaling`, `Diagnosing`.
    pub action: String,
    /// One or two sentences for `kubectl describe`.
    pub note: String,
}

/// Errors writing status or Events.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The budget changed since it was read (409 Conflict on the `resourceVersion`
    /// precondition): nothing was written; read it again and decide again.
    #[error("the budget changed since it was read ({0}); nothing was written")]
    Conflict(String),
    /// The Kubernetes API refused or failed the write.
    #[error("kubernetes API: {0}")]
    Kube(#[source] kube::Error),
    /// Not written: this replica does not hold the Lease for long enough to write.
    #[error("not written without the Lease: {0}")]
    Fenced(#[source] super::fence::Fenced),
}

impl StoreError {
    fn from_kube(e: kube::Error) -> Self {
        match e {
            kube::Error::Api(status) if status.code == 409 => StoreError::Conflict(status.message),
            e => StoreError::Kube(e),
        }
    }
}

/// Persists status and publishes Events for budgets.
#[async_trait]
pub trait BudgetStore: Send + Sync {
    /// Replaces the budget's status with `status` (only the status is written), provided
    /// the budget is still at `resource_version` (when given); returns the budget's new
    /// `resourceVersion`, when known. A budget that moved on is refused with
    /// [`StoreError::Conflict`] and nothing is written.
    async fn save_status(
        &self,
        key: &BudgetKey,
        status: &CheckpointBudgetStatus,
        resource_version: Option<&str>,
    ) -> Result<Option<String>, StoreError>;
    /// Publishes an Event about the budget.
    async fn publish(&self, key: &BudgetKey, notice: &Notice) -> Result<(), StoreError>;
    /// Puts [`FINALIZER`] on the budget unless it is there, on the condition that the
    /// budget is still at `resource_version` (when given); returns its resourceVersion then.
    async fn ensure_finalizer(
        &self,
        key: &BudgetKey,
        resource_version: Option<&str>,
    ) -> Result<Option<String>, StoreError>;
}

/// The cluster store: server-side apply on `/status`, Events via `Recorder`.
pub struct KubeStore {
    client: Client,
    recorder: Recorder,
    reference: ObjectReference,
    /// The budget's finalizers as read.
    finalizers: Vec<String>,
}

impl KubeStore {
    /// A store for one budget object (the Event reference carries its uid).
    pub fn new(client: Client, recorder: Recorder, budget: &CheckpointBudget) -> Self {
        Self {
            client,
            recorder,
            reference: budget.object_ref(&()),
            finalizers: budget.metadata.finalizers.clone().unwrap_or_default(),
        }
    }

    /// A store for the object `reference` points at (a budget that did not decode, so only
    /// its untyped reference is at hand).
    pub fn for_reference(client: Client, recorder: Recorder, reference: ObjectReference) -> Self {
        Self {
            client,
            recorder,
            reference,
            finalizers: Vec::new(),
        }
    }

    /// Writes `finalizers` as the budget's finalizers (a merge patch of `metadata`),
    /// conditioned on `resource_version`.
    async fn set_finalizers(
        &self,
        key: &BudgetKey,
        finalizers: &[String],
        resource_version: Option<&str>,
    ) -> Result<Option<String>, StoreError> {
        let api: Api<DynamicObject> = Api::namespaced_with(
            self.client.clone(),
            &key.namespace,
            &ApiResource::erase::<CheckpointBudget>(&()),
        );
        let mut metadata = json!({ "finalizers": finalizers });
        if let Some(rv) = resource_version {
            metadata["resourceVersion"] = json!(rv);
        }
        let params = PatchParams {
            field_manager: Some(FIELD_MANAGER.to_owned()),
            ..PatchParams::default()
        };
        let written = api
            .patch(&key.name, &params, &Patch::Merge(json!({ "metadata": metadata })))
            .await
            .map_err(StoreError::from_kube)?;
        Ok(written.metadata.resource_version)
    }

    /// Takes [`FINALIZER`] off the budget (the others stay), conditioned on
    /// `resource_version`: the API server then completes the deletion.
    pub async fn remove_finalizer(
        &self,
        key: &BudgetKey,
        resource_version: Option<&str>,
    ) -> Result<Option<String>, StoreError> {
        let rest: Vec<String> = self
            .finalizers
            .iter()
            .filter(|f| *f != FINALIZER)
            .cloned()
            .collect();
        self.set_finalizers(key, &rest, resource_version).await
    }

    /// Merge-patches `patch` (`{"status": {...}}`, the fields to change) onto the status
    /// subresource, on the condition that the budget is still at `resource_version`: the
    /// fields it does not name stay as they are, a status this release cannot read
    /// included. Returns the new resourceVersion.
    pub async fn patch_conditions(
        &self,
        key: &BudgetKey,
        patch: &serde_json::Value,
        resource_version: Option<&str>,
    ) -> Result<Option<String>, StoreError> {
        let api: Api<DynamicObject> = Api::namespaced_with(
            self.client.clone(),
            &key.namespace,
            &ApiResource::erase::<CheckpointBudget>(&()),
        );
        let mut body = patch.clone();
        if let Some(rv) = resource_version {
            body["metadata"] = json!({ "resourceVersion": rv });
        }
        let params = PatchParams {
            field_manager: Some(FIELD_MANAGER.to_owned()),
            ..PatchParams::default()
        };
        let written = api
            .patch_status(&key.name, &params, &Patch::Merge(body))
            .await
            .map_err(StoreError::from_kube)?;
        Ok(written.metadata.resource_version)
    }
}

#[async_trait]
impl BudgetStore for KubeStore {
    async fn save_status(
        &self,
        key: &BudgetKey,
        status: &CheckpointBudgetStatus,
        resource_version: Option<&str>,
    ) -> Result<Option<String>, StoreError> {
        // NB: untyped, because the reply (the whole object) must not have to decode: the
        // status of a budget whose spec is malformed is written here too.
        let api: Api<DynamicObject> = Api::namespaced_with(
            self.client.clone(),
            &key.namespace,
            &ApiResource::erase::<CheckpointBudget>(&()),
        );
        // NB: server-side apply of the status alone, forced: the controller owns every
        // status field, and a stale full object is never sent back. The resourceVersion in
        // the applied object is a precondition (the API server answers 409 Conflict when
        // the object moved on), so a status computed from a stale read is never applied.
        let mut body = json!({
            "apiVersion": CheckpointBudget::api_version(&()),
            "kind": CheckpointBudget::kind(&()),
            "status": status,
        });
        if let Some(rv) = resource_version {
            body["metadata"] = json!({ "resourceVersion": rv });
        }
        let written = api
            .patch_status(
                &key.name,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(body),
            )
            .await
            .map_err(StoreError::from_kube)?;
        Ok(written.metadata.resource_version)
    }

    async fn publish(&self, _key: &BudgetKey, notice: &Notice) -> Result<(), StoreError> {
        let event = Event {
            type_: match notice.type_ {
                NoticeType::Normal => EventType::Normal,
                NoticeType::Warning => EventType::Warning,
            },
            reason: notice.reason.clone(),
            note: Some(truncate(&notice.note, 1024)),
            action: notice.action.clone(),
            secondary: None,
        };
        self.recorder
            .publish(&event, &self.reference)
            .await
            .map_err(StoreError::Kube)
    }

    async fn ensure_finalizer(
        &self,
        key: &BudgetKey,
        resource_version: Option<&str>,
    ) -> Result<Option<String>, StoreError> {
        if self.finalizers.iter().any(|f| f == FINALIZER) {
            return Ok(resource_version.map(str::to_owned));
        }
        let mut finalizers = self.finalizers.clone();
        finalizers.push(FINALIZER.to_owned());
        self.set_finalizers(key, &finalizers, resource_version).await
    }
}

/// Events carry at most 1 kB of note.
fn truncate(note: &str, max: usize) -> String {
    if note.len() <= max {
        return note.to_owned();
    }
    let mut end = max.saturating_sub(3);
    while !note.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &note[..end])
}

/// An in-memory store: statuses by budget and every Event in order.
#[derive(Clone, Default)]
pub struct MemoryStore {
    inner: Arc<Mutex<MemoryInner>>,
}

#[derive(Default)]
struct MemoryInner {
    /// The status of each budget, with its resourceVersion.
    statuses: BTreeMap<BudgetKey, (CheckpointBudgetStatus, u64)>,
    /// The resourceVersion the next write gets (one counter for all, like etcd's).
    next_version: u64,
    events: Vec<(BudgetKey, Notice)>,
    saves: usize,
    /// The budgets that carry [`FINALIZER`].
    finalized: std::collections::BTreeSet<BudgetKey>,
}

impl MemoryStore {
    /// The last status saved for `key`.
    pub fn status(&self, key: &BudgetKey) -> Option<CheckpointBudgetStatus> {
        self.get(key).map(|(status, _)| status)
    }

    /// The last status saved for `key` and the resourceVersion it was saved at (what a
    /// fresh read of the budget returns).
    pub fn get(&self, key: &BudgetKey) -> Option<(CheckpointBudgetStatus, String)> {
        self.inner.lock().ok().and_then(|i| {
            i.statuses
                .get(key)
                .map(|(status, version)| (status.clone(), version.to_string()))
        })
    }

    /// Every Event published so far, in order.
    pub fn events(&self) -> Vec<(BudgetKey, Notice)> {
        self.inner.lock().map(|i| i.events.clone()).unwrap_or_default()
    }

    /// Forgets `key` (the budget was deleted: a budget created again under its name starts
    /// without a status).
    pub fn remove(&self, key: &BudgetKey) {
        if let Ok(mut inner) = self.inner.lock() {
            inner.statuses.remove(key);
            inner.finalized.remove(key);
        }
    }

    /// Whether the budget carries [`FINALIZER`].
    pub fn has_finalizer(&self, key: &BudgetKey) -> bool {
        self.inner.lock().is_ok_and(|i| i.finalized.contains(key))
    }

    /// How many status writes happened.
    pub fn saves(&self) -> usize {
        self.inner.lock().map(|i| i.saves).unwrap_or_default()
    }
}

#[async_trait]
impl BudgetStore for MemoryStore {
    async fn save_status(
        &self,
        key: &BudgetKey,
        status: &CheckpointBudgetStatus,
        resource_version: Option<&str>,
    ) -> Result<Option<String>, StoreError> {
        let Ok(mut inner) = self.inner.lock() else {
            return Ok(None);
        };
        let current = inner.statuses.get(key).map(|(_, v)| v.to_string());
        // A budget never written has no version yet: any precondition names an older read.
        if let Some(expected) = resource_version
            && current.as_deref().is_some_and(|c| c != expected)
        {
            return Err(StoreError::Conflict(format!(
                "{key} is at resourceVersion {}, not {expected}",
                current.unwrap_or_default()
            )));
        }
        inner.next_version += 1;
        let version = inner.next_version;
        inner.statuses.insert(key.clone(), (status.clone(), version));
        inner.saves += 1;
        Ok(Some(version.to_string()))
    }

    async fn publish(&self, key: &BudgetKey, notice: &Notice) -> Result<(), StoreError> {
        if let Ok(mut inner) = self.inner.lock() {
            inner.events.push((key.clone(), notice.clone()));
        }
        Ok(())
    }

    async fn ensure_finalizer(
        &self,
        key: &BudgetKey,
        resource_version: Option<&str>,
    ) -> Result<Option<String>, StoreError> {
        let Ok(mut inner) = self.inner.lock() else {
            return Ok(None);
        };
        if inner.finalized.contains(key) {
            return Ok(resource_version.map(str::to_owned));
        }
        let current = inner.statuses.get(key).map(|(_, v)| v.to_string());
        if let Some(expected) = resource_version
            && current.as_deref().is_some_and(|c| c != expected)
        {
            return Err(StoreError::Conflict(format!(
                "{key} is at resourceVersion {}, not {expected}",
                current.unwrap_or_default()
            )));
        }
        inner.finalized.insert(key.clone());
        inner.next_version += 1;
        let version = inner.next_version;
        if let Some((_, v)) = inner.statuses.get_mut(key) {
            *v = version;
        }
        Ok(Some(version.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::{BudgetKey, BudgetStore, CheckpointBudgetStatus, MemoryStore, StoreError, truncate};

    /// The memory store keeps resourceVersions as the API server does: a write computed
    /// from an older read is refused and changes nothing.
    #[tokio::test]
    async fn the_memory_store_refuses_a_write_from_a_stale_read() {
        let store = MemoryStore::default();
        let key = BudgetKey::new("ns", "b");
        let first = CheckpointBudgetStatus {
            observed_generation: Some(1),
            ..CheckpointBudgetStatus::default()
        };
        let v1 = store.save_status(&key, &first, None).await.unwrap().unwrap();
        let second = CheckpointBudgetStatus {
            observed_generation: Some(2),
            ..CheckpointBudgetStatus::default()
        };
        let v2 = store
            .save_status(&key, &second, Some(&v1))
            .await
            .unwrap()
            .unwrap();
        assert_ne!(v1, v2);
        let stale = store.save_status(&key, &first, Some(&v1)).await;
        assert!(matches!(stale, Err(StoreError::Conflict(_))), "{stale:?}");
        assert_eq!(store.get(&key), Some((second, v2)));
    }

    #[test]
    fn truncates_on_a_char_boundary() {
        assert_eq!(truncate("short", 10), "short");
        let long = "é".repeat(600);
        let cut = truncate(&long, 1024);
        assert!(cut.len() <= 1024 && cut.ends_with("..."));
    }
}
