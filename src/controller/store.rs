//! Where the reconcile core writes what it concluded: the budget's status and its Events.
//!
//! Two implementations of [`BudgetStore`]: [`KubeStore`] (server-side apply on `/status`
//! with the field manager [`FIELD_MANAGER`], Events through kube's `Recorder`) for the
//! cluster, and [`MemoryStore`] for `demo` and tests, where the budgets come from files.

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
    /// The Kubernetes API refused or failed the write.
    #[error("kubernetes API: {0}")]
    Kube(#[source] kube::Error),
    /// Not written: this replica does not hold the Lease for long enough to write.
    #[error("not written without the Lease: {0}")]
    Fenced(#[source] super::fence::Fenced),
}

/// Persists status and publishes Events for budgets.
#[async_trait]
pub trait BudgetStore: Send + Sync {
    /// Replaces the budget's status with `status` (only the status is written).
    async fn save_status(&self, key: &BudgetKey, status: &CheckpointBudgetStatus) -> Result<(), StoreError>;
    /// Publishes an Event about the budget.
    async fn publish(&self, key: &BudgetKey, notice: &Notice) -> Result<(), StoreError>;
}

/// The cluster store: server-side apply on `/status`, Events via `Recorder`.
pub struct KubeStore {
    client: Client,
    recorder: Recorder,
    reference: ObjectReference,
}

impl KubeStore {
    /// A store for one budget object (the Event reference carries its uid).
    pub fn new(client: Client, recorder: Recorder, budget: &CheckpointBudget) -> Self {
        Self {
            client,
            recorder,
            reference: budget.object_ref(&()),
        }
    }

    /// A store for the object `reference` points at (a budget that did not decode, so only
    /// its untyped reference is at hand).
    pub fn for_reference(client: Client, recorder: Recorder, reference: ObjectReference) -> Self {
        Self {
            client,
            recorder,
            reference,
        }
    }
}

#[async_trait]
impl BudgetStore for KubeStore {
    async fn save_status(&self, key: &BudgetKey, status: &CheckpointBudgetStatus) -> Result<(), StoreError> {
        // NB: untyped, because the reply (the whole object) is not needed and must not have
        // to decode: the status of a budget whose spec is malformed is written here too.
        let api: Api<DynamicObject> = Api::namespaced_with(
            self.client.clone(),
            &key.namespace,
            &ApiResource::erase::<CheckpointBudget>(&()),
        );
        // NB: server-side apply of the status alone, forced: the controller owns every
        // status field, and a stale full object is never sent back.
        let patch = Patch::Apply(json!({
            "apiVersion": CheckpointBudget::api_version(&()),
            "kind": CheckpointBudget::kind(&()),
            "status": status,
        }));
        api.patch_status(&key.name, &PatchParams::apply(FIELD_MANAGER).force(), &patch)
            .await
            .map_err(StoreError::Kube)?;
        Ok(())
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
    statuses: BTreeMap<BudgetKey, CheckpointBudgetStatus>,
    events: Vec<(BudgetKey, Notice)>,
    saves: usize,
}

impl MemoryStore {
    /// The last status saved for `key`.
    pub fn status(&self, key: &BudgetKey) -> Option<CheckpointBudgetStatus> {
        self.inner.lock().ok().and_then(|i| i.statuses.get(key).cloned())
    }

    /// Every Event published so far, in order.
    pub fn events(&self) -> Vec<(BudgetKey, Notice)> {
        self.inner.lock().map(|i| i.events.clone()).unwrap_or_default()
    }

    /// How many status writes happened.
    pub fn saves(&self) -> usize {
        self.inner.lock().map(|i| i.saves).unwrap_or_default()
    }
}

#[async_trait]
impl BudgetStore for MemoryStore {
    async fn save_status(&self, key: &BudgetKey, status: &CheckpointBudgetStatus) -> Result<(), StoreError> {
        if let Ok(mut inner) = self.inner.lock() {
            inner.statuses.insert(key.clone(), status.clone());
            inner.saves += 1;
        }
        Ok(())
    }

    async fn publish(&self, key: &BudgetKey, notice: &Notice) -> Result<(), StoreError> {
        if let Ok(mut inner) = self.inner.lock() {
            inner.events.push((key.clone(), notice.clone()));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::truncate;

    #[test]
    fn truncates_on_a_char_boundary() {
        assert_eq!(truncate("short", 10), "short");
        let long = "é".repeat(600);
        let cut = truncate(&long, 1024);
        assert!(cut.len() <= 1024 && cut.ends_with("..."));
    }
}
