//! The Helm chart ships the controller it was built with: its `appVersion` is the crate
//! version and its CRD is the generated one, byte for byte; and what it renders are valid
//! Kubernetes objects. (The templates are rendered and linted with the real Helm library by
//! `tests/python/test_chart.py`, which also keeps the snapshots in `tests/data/chart/`.)

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

/// Deserializes `doc` as the Kubernetes API type `K` and serializes it back: a field the API
/// does not define (a typo in a template, a misplaced key) is dropped on the way and shows
/// up as a difference, as `kubectl apply --validate=strict` would reject it.
fn round_trip<K: serde::de::DeserializeOwned + serde::Serialize>(
    doc: &serde_json::Value,
) -> Result<(), String> {
    let typed: K = serde_json::from_value(doc.clone()).map_err(|e| format!("does not deserialize: {e}"))?;
    let back = serde_json::to_value(&typed).map_err(|e| e.to_string())?;
    match first_difference(doc, &back, String::new()) {
        None => Ok(()),
        Some(path) => Err(format!(
            "{path} is not part of the API type (or changed on a round trip)"
        )),
    }
}

/// The first path where `a` and `b` differ.
fn first_difference(a: &serde_json::Value, b: &serde_json::Value, path: String) -> Option<String> {
    use serde_json::Value;
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => x
            .iter()
            .find_map(|(k, v)| match y.get(k) {
                Some(w) => first_difference(v, w, format!("{path}.{k}")),
                None => Some(format!("{path}.{k}")),
            })
            .or_else(|| {
                y.keys()
                    .find(|k| !x.contains_key(*k))
                    .map(|k| format!("{path}.{k} (added)"))
            }),
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => x
            .iter()
            .zip(y)
            .enumerate()
            .find_map(|(i, (v, w))| first_difference(v, w, format!("{path}[{i}]"))),
        _ if a == b => None,
        _ => Some(path),
    }
}

/// The rendered chart (snapshots written by `tests/python/test_chart.py`, which renders it
/// with the real Helm library) is made of valid Kubernetes objects, field for field.
#[test]
fn rendered_chart_objects_are_valid_kubernetes_objects() {
    use k8s_openapi::api::{
        apps::v1::Deployment,
        core::v1::{ConfigMap, Service, ServiceAccount},
        networking::v1::NetworkPolicy,
        policy::v1::PodDisruptionBudget,
        rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding},
    };

    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/chart");
    let mut checked = 0;
    for snapshot in ["defaults", "everything", "namespaced", "no-leader-election"] {
        let text = std::fs::read_to_string(dir.join(format!("{snapshot}.yaml"))).unwrap();
        for document in serde_yaml::Deserializer::from_str(&text) {
            let doc: serde_json::Value = serde::Deserialize::deserialize(document).unwrap();
            let kind = doc["kind"].as_str().unwrap_or_default().to_owned();
            let name = doc["metadata"]["name"].as_str().unwrap_or_default().to_owned();
            let result = match kind.as_str() {
                "Deployment" => round_trip::<Deployment>(&doc),
                "Service" => round_trip::<Service>(&doc),
                "ServiceAccount" => round_trip::<ServiceAccount>(&doc),
                "ConfigMap" => round_trip::<ConfigMap>(&doc),
                "ClusterRole" => round_trip::<ClusterRole>(&doc),
                "ClusterRoleBinding" => round_trip::<ClusterRoleBinding>(&doc),
                "Role" => round_trip::<Role>(&doc),
                "RoleBinding" => round_trip::<RoleBinding>(&doc),
                "PodDisruptionBudget" => round_trip::<PodDisruptionBudget>(&doc),
                "NetworkPolicy" => round_trip::<NetworkPolicy>(&doc),
                // Prometheus Operator CRDs: not Kubernetes API types.
                "ServiceMonitor" | "PrometheusRule" => {
                    assert_eq!(doc["apiVersion"], "monitoring.coreos.com/v1");
                    continue;
                }
                other => panic!("{snapshot}: no API type known for {other} {name}"),
            };
            if let Err(e) = result {
                panic!("{snapshot}: {kind} {name}: {e}");
            }
            checked += 1;
        }
    }
    assert!(checked >= 20, "only {checked} objects checked");
}

/// The chart's schema and the controller agree on which allow-list entries are valid, so
/// `helm install` refuses exactly what the controller would refuse at start-up (bare names
/// above all), and nothing the controller accepts.
#[test]
fn the_chart_schema_and_the_controller_agree_on_allow_list_entries() {
    use checkpoint_autoscaler::controller::tenancy::ArnPattern;
    let text = std::fs::read_to_string(chart_dir().join("values.schema.json")).unwrap();
    let schema: serde_json::Value = serde_json::from_str(&text).unwrap();
    let pattern = schema
        .pointer(
            "/properties/controller/properties/tenancy/properties/allowList/properties/namespaces/additionalProperties/properties/applications/items/pattern",
        )
        .and_then(|p| p.as_str())
        .expect("the schema's pattern for allow-list applications");
    let schema_accepts = regex::Regex::new(pattern).unwrap();
    for entry in [
        "arn:aws:kinesisanalytics:eu-west-1:111122223333:application/orders",
        "arn:aws:kinesisanalytics:*:111122223333:application/orders-*",
        "arn:aws-cn:kinesisanalytics:cn-north-1:*:application/*",
        "arn:aws-us-gov:kinesisanalytics:us-gov-*:1111*:application/a.b_c-d",
        "arn:*:kinesisanalytics:*:*:application/*",
        "orders-*",
        "payments",
        "*",
        "arn:aws:kinesisanalytics:eu-west-1:111122223333:application/",
        "arn:aws:kinesisanalytics:eu-west-1:111122223333:application/a b",
        "arn:aws:kinesisanalytics:eu-west-1:1111:application/a",
        "arn:aws:kinesisanalytics:eu-west-1:team-b:application/a",
        "arn:aws:kinesisanalytics:EU-WEST-1:111122223333:application/a",
        "arn:aws:kinesisanalytics::111122223333:application/a",
        "arn:azure:kinesisanalytics:eu-west-1:111122223333:application/a",
        "arn:aws:kinesis:eu-west-1:111122223333:stream/a",
        "arn:aws:kinesisanalytics:eu-west-1:111122223333:stream/a",
        "arn:aws:s3:::orders",
    ] {
        assert_eq!(
            schema_accepts.is_match(entry),
            ArnPattern::try_from(entry.to_string()).is_ok(),
            "the chart and the controller disagree on {entry:?}"
        );
    }
}

/// The rendered Deployments start a controller that can act: their arguments parse, the
/// Lease timings pass the controller's own check (client-go's rules, and a Lease that
/// outlasts an UpdateApplication plus the fence's margin), the pod's grace period covers
/// the drain and the Lease's release, and a Deployment without leader election is never
/// rolled with two pods at once.
#[test]
fn rendered_deployments_start_a_controller_that_can_act_and_drain() {
    use checkpoint_autoscaler::cli::{Cli, Command};
    use clap::Parser;

    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/chart");
    let (mut leading, mut alone) = (0, 0);
    for snapshot in ["defaults", "everything", "namespaced", "no-leader-election"] {
        let text = std::fs::read_to_string(dir.join(format!("{snapshot}.yaml"))).unwrap();
        for document in serde_yaml::Deserializer::from_str(&text) {
            let doc: serde_json::Value = serde::Deserialize::deserialize(document).unwrap();
            if doc["kind"] != "Deployment" || doc["metadata"]["name"] != "ca-checkpoint-autoscaler" {
                continue;
            }
            let pod = &doc["spec"]["template"]["spec"];
            let args: Vec<String> = pod["containers"][0]["args"]
                .as_array()
                .unwrap()
                .iter()
                .map(|a| a.as_str().unwrap().to_owned())
                .collect();
            let cli = Cli::try_parse_from(std::iter::once("checkpoint-autoscaler".to_owned()).chain(args))
                .unwrap_or_else(|e| panic!("{snapshot}: {e}"));
            let Command::Run(run) = cli.command else {
                panic!("{snapshot}: not `run`")
            };
            let grace =
                std::time::Duration::from_secs(pod["terminationGracePeriodSeconds"].as_u64().unwrap());
            let strategy = doc["spec"]["strategy"]["type"].as_str().unwrap();
            match run.lease_config("pod-a") {
                Some(lease) => {
                    lease
                        .validate(&run.fence_bounds())
                        .unwrap_or_else(|e| panic!("{snapshot}: {e}"));
                    assert!(grace > run.shutdown_grace + lease.renew_deadline, "{snapshot}");
                    assert_eq!(strategy, "RollingUpdate", "{snapshot}");
                    leading += 1;
                }
                None => {
                    assert!(grace > run.shutdown_grace, "{snapshot}");
                    assert_eq!(strategy, "Recreate", "{snapshot}");
                    alone += 1;
                }
            }
        }
    }
    assert_eq!((leading, alone), (3, 1));
}
