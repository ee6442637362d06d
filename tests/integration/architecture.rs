//! The crate graph is the architecture (docs/design.md): the product builds without the
//! proving ground, the policy reaches no SDK and no model, the model no controller. The
//! compiler enforces each edge that is absent; these tests keep the edges absent, from
//! `cargo metadata` (the resolved graph of Cargo.lock, offline).

use std::collections::{BTreeSet, HashMap};
use std::process::Command;

use serde_json::Value;

/// The platform the tests run on (`rustc -vV`'s `host`): the graph is resolved for it alone,
/// so that no other platform's crates must be at hand.
fn host() -> String {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".to_owned());
    let output = Command::new(rustc).arg("-vV").output().expect("rustc -vV runs");
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .find_map(|line| line.strip_prefix("host: "))
        .expect("rustc -vV names the host")
        .to_owned()
}

/// Normal (not dev, not build) dependencies of each workspace package and registry crate, by
/// name, for this platform and the default features.
fn graph() -> HashMap<String, Vec<String>> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let output = Command::new(cargo)
        .args([
            "metadata",
            "--format-version",
            "1",
            "--offline",
            "--locked",
            "--filter-platform",
        ])
        .arg(host())
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo metadata runs");
    assert!(
        output.status.success(),
        "cargo metadata: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let metadata: Value = serde_json::from_slice(&output.stdout).expect("cargo metadata prints JSON");
    let names: HashMap<&str, &str> = metadata["packages"]
        .as_array()
        .expect("packages")
        .iter()
        .filter_map(|p| Some((p["id"].as_str()?, p["name"].as_str()?)))
        .collect();
    metadata["resolve"]["nodes"]
        .as_array()
        .expect("resolve.nodes")
        .iter()
        .filter_map(|node| {
            let name = names.get(node["id"].as_str()?)?.to_string();
            let deps = node["deps"]
                .as_array()?
                .iter()
                .filter(|d| {
                    d["dep_kinds"]
                        .as_array()
                        .is_some_and(|kinds| kinds.iter().any(|k| k["kind"].is_null()))
                })
                .filter_map(|d| names.get(d["pkg"].as_str()?).map(|n| n.to_string()))
                .collect();
            Some((name, deps))
        })
        .collect()
}

/// Every crate `package` builds on, itself excluded.
fn closure(graph: &HashMap<String, Vec<String>>, package: &str) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    let mut todo = vec![package.to_owned()];
    while let Some(next) = todo.pop() {
        for dep in graph.get(&next).into_iter().flatten() {
            if seen.insert(dep.clone()) {
                todo.push(dep.clone());
            }
        }
    }
    seen
}

fn assert_none(graph: &HashMap<String, Vec<String>>, package: &str, forbidden: &[&str]) {
    assert!(graph.contains_key(package), "{package} is a workspace member");
    let deps = closure(graph, package);
    let found: Vec<&&str> = forbidden.iter().filter(|f| deps.contains(**f)).collect();
    assert!(found.is_empty(), "{package} builds on {found:?}");
}

/// What only the proving ground needs: charts, the emulator's CBOR wire format, the Flink
/// backend's working directories, and the proving-ground crates. (hyper-util is not here:
/// kube's client builds on it; flate2 neither: see below.)
const PROVING_GROUND: [&str; 5] = [
    "plotters",
    "tempfile",
    "ciborium",
    "checkpoint-autoscaler-proving-ground",
    "checkpoint-autoscaler-testkit",
];

#[test]
fn the_product_crates_build_without_the_proving_ground() {
    let graph = graph();
    for product in [
        "checkpoint-autoscaler-policy",
        "checkpoint-autoscaler-api",
        "checkpoint-autoscaler-aws",
        "checkpoint-autoscaler-controller",
    ] {
        assert_none(&graph, product, &PROVING_GROUND);
        // The emulator inflates gzip request bodies with flate2; the product reaches it
        // only as the CloudWatch SDK's own (non-optional) request compression does.
        let mut deps = closure(&graph, product);
        deps.insert(product.to_owned());
        let through: Vec<&String> = deps
            .iter()
            .filter(|d| {
                graph
                    .get(*d)
                    .is_some_and(|next| next.iter().any(|n| n == "flate2"))
            })
            .filter(|d| !["aws-sdk-cloudwatch", "aws-smithy-compression"].contains(&d.as_str()))
            .collect();
        assert!(
            through.is_empty(),
            "{product} builds on flate2 through {through:?}"
        );
    }
}

#[test]
fn the_policy_reaches_no_sdk_no_kubernetes_and_no_model() {
    assert_none(
        &graph(),
        "checkpoint-autoscaler-policy",
        &[
            "aws-config",
            "aws-sdk-cloudwatch",
            "aws-sdk-kinesisanalyticsv2",
            "kube",
            "k8s-openapi",
            "tokio",
            "checkpoint-autoscaler-api",
            "checkpoint-autoscaler-aws",
            "checkpoint-autoscaler-controller",
            "checkpoint-autoscaler-proving-ground",
        ],
    );
}

#[test]
fn the_model_reaches_no_controller_and_the_api_no_sdk() {
    let graph = graph();
    assert_none(
        &graph,
        "checkpoint-autoscaler-proving-ground",
        &["checkpoint-autoscaler-controller"],
    );
    assert_none(
        &graph,
        "checkpoint-autoscaler-api",
        &[
            "aws-config",
            "aws-sdk-cloudwatch",
            "aws-sdk-kinesisanalyticsv2",
            "checkpoint-autoscaler-aws",
        ],
    );
}
