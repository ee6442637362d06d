//! The committed CRD and examples agree with the Rust types.

use std::path::Path;

use checkpoint_autoscaler::crd::crd_yaml;

/// `crds/checkpointbudget.yaml` is generated: regenerate it with
/// `cargo run -- crd > crds/checkpointbudget.yaml` when the types change.
#[test]
fn committed_crd_matches_generated() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("crds/checkpointbudget.yaml");
    let committed = std::fs::read_to_string(&path).expect("crds/checkpointbudget.yaml is committed");
    let generated = crd_yaml().unwrap();
    assert!(
        committed == generated,
        "crds/checkpointbudget.yaml differs from the generated CRD; regenerate it with \
         `cargo run -- crd > crds/checkpointbudget.yaml`"
    );
}
