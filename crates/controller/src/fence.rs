//! Fencing: the controller acts only under a Lease that outlasts the action.
//!
//! Leader election alone does not stop two replicas from acting at once: a leader whose
//! renewals hang, or whose process pauses, keeps running reconciles that started while it
//! led, and a standby takes the Lease over once it has expired. So before each write the
//! controller must make alone, the reconcile core asks its [`Fence`] whether this replica
//! still holds the Lease *for longer than the write can take*, plus a safety margin:
//!
//! - [`Guarded::Update`], right before `UpdateApplication`: the Lease must stay valid for
//!   the call's whole time bound (one SDK attempt, never retried) plus the margin, so the
//!   call has ended — answered or abandoned — before any other replica may lead;
//! - [`Guarded::Write`], before a status write or an Event: the Lease must stay valid for a
//!   Kubernetes request's bound plus the margin, so a deposed leader never overwrites what
//!   the new one recorded.
//!
//! In the cluster the fence is [`LeaseFence`](super::leader::LeaseFence), fed by the
//! elector; with leader election off (one replica, `Recreate` deployments), in `demo` and
//! in tests it is [`AlwaysHeld`].
//!
//! NB: the fence narrows the window to a pause between the check and the request leaving
//! the process, which the margin covers. Beyond that, `UpdateApplication` carries
//! `CurrentApplicationVersionId`, AWS's own fencing token: an update that a paused former
//! leader sends after another replica changed the application is refused.

use std::{sync::Arc, time::Duration};

use async_trait::async_trait;

use super::store::{BudgetKey, BudgetStore, Notice, StoreError};
use crate::crd::CheckpointBudgetStatus;

/// What a reconcile is about to do under the Lease.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Guarded {
    /// An `UpdateApplication` call.
    Update,
    /// A status write or an Event.
    Write,
}

impl Guarded {
    /// What the action is, for messages.
    pub fn describe(self) -> &'static str {
        match self {
            Guarded::Update => "an UpdateApplication call",
            Guarded::Write => "a status write",
        }
    }
}

/// Why an action was not taken: this replica does not hold the Lease, or not for long
/// enough.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Fenced(pub String);

/// Decides whether this replica may take an action now.
pub trait Fence: Send + Sync {
    /// `Ok` when `action` may start now: this replica holds the Lease and will hold it, as
    /// the other replicas see it, for longer than `action` can take plus a safety margin.
    fn check(&self, action: Guarded) -> Result<(), Fenced>;
}

/// The fence of a controller that is the only one acting (leader election off, `demo`,
/// tests): every action may go.
#[derive(Clone, Copy, Debug, Default)]
pub struct AlwaysHeld;

impl Fence for AlwaysHeld {
    fn check(&self, _action: Guarded) -> Result<(), Fenced> {
        Ok(())
    }
}

/// How long each guarded action may take, and the margin the Lease must outlast it by.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FenceBounds {
    /// The longest an `UpdateApplication` call can be in flight (its one SDK attempt).
    pub update: Duration,
    /// The longest a Kubernetes write can take (the client's request timeout).
    pub write: Duration,
    /// Added to either: the time between the check and the request leaving the process,
    /// network latency, and the drift between the replicas' clocks.
    pub margin: Duration,
}

impl FenceBounds {
    /// How long the Lease must still be held for `action` to start.
    pub fn needed(&self, action: Guarded) -> Duration {
        let bound = match action {
            Guarded::Update => self.update,
            Guarded::Write => self.write,
        };
        bound.saturating_add(self.margin)
    }
}

/// A store that writes only while the fence allows [`Guarded::Write`]: a replica that
/// lost the Lease (or is about to) writes neither status nor Events, so it cannot overwrite
/// what the new leader recorded.
pub struct FencedStore<S> {
    inner: S,
    fence: Arc<dyn Fence>,
}

impl<S> FencedStore<S> {
    /// `inner` behind `fence`.
    pub fn new(inner: S, fence: Arc<dyn Fence>) -> Self {
        Self { inner, fence }
    }
}

#[async_trait]
impl<S: BudgetStore> BudgetStore for FencedStore<S> {
    async fn save_status(
        &self,
        key: &BudgetKey,
        status: &CheckpointBudgetStatus,
        resource_version: Option<&str>,
    ) -> Result<Option<String>, StoreError> {
        self.fence.check(Guarded::Write).map_err(StoreError::Fenced)?;
        self.inner.save_status(key, status, resource_version).await
    }

    async fn ensure_finalizer(
        &self,
        key: &BudgetKey,
        resource_version: Option<&str>,
    ) -> Result<Option<String>, StoreError> {
        self.fence.check(Guarded::Write).map_err(StoreError::Fenced)?;
        self.inner.ensure_finalizer(key, resource_version).await
    }

    async fn publish(&self, key: &BudgetKey, notice: &Notice) -> Result<(), StoreError> {
        self.fence.check(Guarded::Write).map_err(StoreError::Fenced)?;
        self.inner.publish(key, notice).await
    }
}

/// Formats a duration for messages: `3.2s`, `250ms`.
pub(crate) use crate::policy::duration::human as brief;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_add_the_margin() {
        let bounds = FenceBounds {
            update: Duration::from_secs(10),
            write: Duration::from_secs(5),
            margin: Duration::from_secs(2),
        };
        assert_eq!(bounds.needed(Guarded::Update), Duration::from_secs(12));
        assert_eq!(bounds.needed(Guarded::Write), Duration::from_secs(7));
        assert!(AlwaysHeld.check(Guarded::Update).is_ok());
        assert_eq!(brief(Duration::from_millis(250)), "250ms");
        assert_eq!(brief(Duration::from_millis(3250)), "3.3s");
        assert_eq!(brief(Duration::from_millis(14_000)), "14s");
    }
}
