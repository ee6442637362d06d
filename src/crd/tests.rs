//! Tests of the spec types, the generated CRD and the conversions.

use super::*;

pub(crate) fn minimal_spec() -> CheckpointBudgetSpec {
    serde_json::from_value(serde_json::json!({
        "application": {"name": "orders-enrichment"},
        "objectives": {"maxCheckpointDuration": "2m"},
        "parallelism": {"min": 2, "max": 32, "maxParallelism": 128}
    }))
    .unwrap()
}

#[test]
fn crd_yaml_is_generated() {
    let yaml = crd_yaml().unwrap();
    assert!(yaml.contains("checkpointbudgets.checkpoint-autoscaler.dev"));
}

#[test]
fn minimal_spec_gets_defaults() {
    let budget = minimal_spec().to_budget().unwrap();
    assert_eq!(budget.window, Duration::from_secs(600));
    assert_eq!(budget.per_kpu_min, 1);
    assert_eq!(budget.per_kpu_max, 4);
}
