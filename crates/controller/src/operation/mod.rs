//! The state machine of an `UpdateApplication` the controller started: from the intent it
//! recorded, what the service says about the operation and what the application looks like
//! now, where the operation stands. Pure: no I/O, no clock (time comes in as `now`); the
//! reconciler does the calls around it and acts on the [`Verdict`].
//!
//! What it knows about the service, and relies on:
//!
//! - Every `UpdateApplication` (and every rollback) moves `ApplicationVersionId` by one, at
//!   once; the controller sends `CurrentApplicationVersionId`, so at most one update can
//!   start from the version its decision was made on. An application still at that version
//!   was never updated by it.
//! - `DescribeApplicationOperation` tells the operation's status, times, failure, and the
//!   versions it moved the application between (`ApplicationVersionChangeDetails`). When the
//!   controller never learned its operation id (its answer was lost, or the controller
//!   stopped), the update *from the intent's version* is found that way — but it is the
//!   controller's only if its request reached AWS, which is what is unknown: another
//!   client's update from the same version is possible when the controller's never arrived.
//!   So a found operation tells whether the update still runs (and its id, times and
//!   failure), while who made it is judged from the application, as below.
//! - A failed update is rolled back by the service (a second version step) to the
//!   configuration it started from.
//! - The service's record of operations is bounded: an operation it no longer knows is
//!   judged from the application alone.
//!
//! Anything else — the application at a configuration that is neither the intent's origin
//! nor its target, versions moved by someone else — is another client's change, which is
//! never counted as the controller's success or failure.

#[cfg(test)]
mod tests;

use std::time::Duration;

use jiff::{SignedDuration, Timestamp};

use crate::{
    aws::{ApplicationDescription, OperationState, OperationStatus},
    crd::OperationInFlight,
    policy::{AppConfig, AppStatus},
};

/// What the controller recorded before calling `UpdateApplication`
/// (`status.operationInFlight`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Intent {
    /// The operation id, once `UpdateApplication` returned it.
    pub operation_id: Option<String>,
    /// The running configuration the decision was made on.
    pub from: AppConfig,
    /// The configuration asked for.
    pub to: AppConfig,
    /// When the controller decided (just before the call).
    pub started_at: Timestamp,
    /// `ApplicationVersionId` the decision was made on (`CurrentApplicationVersionId`).
    pub version_id_before: i64,
    /// The ARN of the application it was for, when recorded.
    pub application_arn: Option<String>,
}

impl From<&OperationInFlight> for Intent {
    fn from(op: &OperationInFlight) -> Self {
        Self {
            operation_id: op.operation_id.clone(),
            from: op.from.into(),
            to: op.to.into(),
            started_at: op.started_at.0,
            version_id_before: op.version_id_before,
            application_arn: op.application_arn.clone(),
        }
    }
}

/// What the service says about the operation, as far as the reconciler asked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Record<'a> {
    /// Nothing: the operation id is unknown and no operation was found for the intent.
    None,
    /// The service no longer knows the operation id (its record is bounded).
    Forgotten,
    /// `DescribeApplicationOperation` of the intent's operation id: certainly the
    /// controller's.
    Described(&'a OperationStatus),
    /// `DescribeApplicationOperation` of the update found to start from the intent's
    /// version (the intent has no operation id): the controller's if its request reached
    /// AWS, another client's otherwise.
    Found(&'a OperationStatus),
}

/// Where the operation stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The application is gone: the operation can never finish; drop the intent.
    ApplicationGone,
    /// The budget names another application now: the intent is not about this one; drop it
    /// (the old application's operation is not followed, nor counted).
    OtherApplication,
    /// The update never reached AWS (the version did not move): drop the intent, record
    /// nothing.
    NeverApplied,
    /// The operation runs.
    Running,
    /// The service said nothing, and the application is busy (updating, rolling back,
    /// autoscaling...): the outcome cannot be told yet; keep following.
    Unsettled,
    /// Running (or unsettled) for longer than the bound: keep following, never issue
    /// another update, and tell a person.
    Stuck {
        /// Since the intent was recorded.
        running_for: Duration,
    },
    /// The application runs what was asked for.
    Succeeded {
        /// When the operation ended, when the service says.
        ended: Option<Timestamp>,
        /// The operation id, when found only now (an intent recorded without it).
        operation_id: Option<String>,
    },
    /// The update failed (the service rolled it back) or was cancelled.
    Failed {
        /// Why, in the service's words when it gave any.
        why: String,
        /// When it ended, when the service says.
        ended: Option<Timestamp>,
        /// The operation id, when found only now.
        operation_id: Option<String>,
    },
    /// Another client changed the application before the outcome was known: nothing of the
    /// controller's is known to run or to have failed; drop the intent, count nothing.
    Superseded,
}

impl Verdict {
    /// Whether the operation is still to be followed.
    pub fn is_pending(&self) -> bool {
        matches!(
            self,
            Verdict::Running | Verdict::Unsettled | Verdict::Stuck { .. }
        )
    }
}

/// Whether an application operation of this type restarts the job: everything but
/// snapshots, tags and stops (a stopped application is started by an operation of its own).
/// An unknown system operation counts, which only makes the policy wait longer.
pub fn restarts_the_job(operation: &str) -> bool {
    !(operation.is_empty()
        || operation.contains("Snapshot")
        || operation.contains("Tag")
        || operation == "StopApplication")
}

/// Whether the reconciler should look for the operation on the service (list the
/// application's operations and describe the update that starts from the intent's
/// version): the intent has no operation id, and the version moved, so an update may have
/// started from it.
pub fn needs_lookup(intent: &Intent, app: &ApplicationDescription) -> bool {
    intent.operation_id.is_none() && app.version_id > intent.version_id_before
}

/// Whether `op` is the update that started from the intent's version: the controller's own,
/// since only one update can start from a version (see the module docs).
pub fn started_from_intent(intent: &Intent, op: &OperationStatus) -> bool {
    op.operation.as_deref().is_none_or(|o| o == "UpdateApplication")
        && op
            .version_change
            .is_some_and(|(from, _)| from == intent.version_id_before)
}

/// Judges the operation of `intent` on the application `app` (`None`: it does not exist),
/// given what the service said about it, at `now`; `stuck_after` bounds how long it may run.
pub fn judge(
    intent: &Intent,
    app: Option<&ApplicationDescription>,
    record: Record<'_>,
    now: Timestamp,
    stuck_after: Duration,
) -> Verdict {
    let Some(app) = app else {
        return Verdict::ApplicationGone;
    };
    if intent
        .application_arn
        .as_deref()
        .is_some_and(|arn| arn != app.arn)
    {
        return Verdict::OtherApplication;
    }
    // An application whose version went backwards is a new one of the same name.
    if app.version_id < intent.version_id_before {
        return Verdict::OtherApplication;
    }
    let pending = |verdict: Verdict| {
        let running_for = now.duration_since(intent.started_at);
        let bound = SignedDuration::try_from(stuck_after).unwrap_or(SignedDuration::MAX);
        if running_for >= bound {
            Verdict::Stuck {
                running_for: Duration::try_from(running_for).unwrap_or_default(),
            }
        } else {
            verdict
        }
    };
    let found = |op: &OperationStatus| intent.operation_id.is_none().then(|| op.operation_id.clone());
    match record {
        Record::Described(op) => match op.status {
            OperationState::InProgress => pending(Verdict::Running),
            // NB: the record is about the controller's update: it succeeded, even if the
            // application has been changed again since (the policy sees what runs now).
            OperationState::Successful => Verdict::Succeeded {
                ended: op.ended,
                operation_id: found(op),
            },
            OperationState::Failed | OperationState::Cancelled => Verdict::Failed {
                why: op
                    .failure
                    .clone()
                    .unwrap_or_else(|| format!("operation {}", op.status)),
                ended: op.ended,
                operation_id: found(op),
            },
        },
        Record::Found(op) if op.status == OperationState::InProgress => pending(Verdict::Running),
        // Whose it was is told by the application (see the module docs); what the service
        // recorded fills in the id, the end and the failure.
        Record::Found(op) => match by_application(intent, app, pending) {
            Verdict::Succeeded { ended: None, .. } => Verdict::Succeeded {
                ended: (op.status == OperationState::Successful)
                    .then_some(op.ended)
                    .flatten(),
                operation_id: found(op),
            },
            Verdict::Failed { why, .. } if op.status != OperationState::Successful => Verdict::Failed {
                why: op.failure.clone().unwrap_or(why),
                ended: op.ended,
                operation_id: found(op),
            },
            verdict => verdict,
        },
        Record::None | Record::Forgotten => by_application(intent, app, pending),
    }
}

/// Judges from the application alone (no record of the operation).
fn by_application(
    intent: &Intent,
    app: &ApplicationDescription,
    pending: impl Fn(Verdict) -> Verdict,
) -> Verdict {
    // Its version moves only if the update reached AWS (CurrentApplicationVersionId makes a
    // repeat harmless); an application shown UPDATING at the same version is not judged.
    if app.version_id == intent.version_id_before && app.status != AppStatus::Updating {
        return Verdict::NeverApplied;
    }
    // Judged only once the application has settled: while it updates, rolls back (its
    // version moves at the end) or is otherwise busy, it is still in progress.
    if !matches!(app.status, AppStatus::Running | AppStatus::Ready) {
        return pending(Verdict::Unsettled);
    }
    if app.config == intent.to {
        return Verdict::Succeeded {
            ended: None,
            operation_id: None,
        };
    }
    // Every update (and every rollback) moves the version by one. Back at `from` after two
    // steps or more: the update failed and the service rolled it back.
    if app.config == intent.from && app.version_id >= intent.version_id_before + 2 {
        return Verdict::Failed {
            why: format!(
                "the application's version moved to {} and it runs {} again (rolled back)",
                app.version_id, intent.from
            ),
            ended: None,
            operation_id: None,
        };
    }
    // Anything else is another client's change: after one step, this update never ran (it
    // would run `to`, or have been rolled back in a second step); after more, whether it
    // ran before the other change cannot be told.
    Verdict::Superseded
}
