//! The `CheckpointBudget` API: the custom resource (spec, status, the generated CRD and the
//! API server's admission rules it must pass), the validation engine `validate` and the
//! controller share, and what a configuration costs.
//!
//! It depends on the pure policy only: no AWS SDK, no controller, no model.

/// What a configuration costs: KPUs, KPU-hours a month (orchestration included), a price.
pub mod cost;
/// The `CheckpointBudget` custom resource: spec, status, the generated CRD.
pub mod crd;
/// Offline checks of CheckpointBudget manifests against the generated CRD.
pub mod validate;

use checkpoint_autoscaler_policy as policy;
