//! The Helm chart ships the controller it was built with: its `appVersion` is the crate
//! version and its CRD is the generated one, byte for byte. (The chart's templates are
//! rendered and linted by `tests/python/test_chart.py`.)

use std::path::Path;

use checkpoint_autoscaler::crd::crd_yaml;

fn chart_dir() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("charts/checkpoint-autoscaler")
}

#[test]
fn chart_app_version_is_the_crate_version() {
    let text = std::fs::read_to_string(chart_dir().join("Chart.yaml")).unwrap();
    let chart: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
    assert_eq!(chart["apiVersion"].as_str(), Some("v2"));
    assert_eq!(
        chart["appVersion"].as_str(),
        Some(env!("CARGO_PKG_VERSION")),
        "charts/checkpoint-autoscaler/Chart.yaml appVersion must be the crate version in Cargo.toml"
    );
}

#[test]
fn chart_crd_is_the_generated_crd() {
    let chart_crd = std::fs::read_to_string(chart_dir().join("crds/checkpointbudget.yaml")).unwrap();
    let repo_crd =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("crds/checkpointbudget.yaml"))
            .unwrap();
    assert!(
        chart_crd == repo_crd && chart_crd == crd_yaml().unwrap(),
        "charts/checkpoint-autoscaler/crds/checkpointbudget.yaml is stale; refresh it with \
         `cargo run -- crd > crds/checkpointbudget.yaml && cp crds/checkpointbudget.yaml charts/checkpoint-autoscaler/crds/`"
    );
}
