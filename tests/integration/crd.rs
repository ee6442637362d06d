//! The committed CRD, the examples and the invalid-budget corpus agree with the Rust types,
//! and `validate` reports what the API server would refuse.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use kube::api::DynamicObject;

use checkpoint_autoscaler::{
    controller::decode::decode,
    crd::{CheckpointBudget, crd_yaml},
    validate::{BudgetValidator, Check, Report},
};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        .collect();
    files.sort();
    files
}

/// `crds/checkpointbudget.yaml` is generated: regenerate it with
/// `cargo run -- crd > crds/checkpointbudget.yaml` when the types change.
#[test]
fn committed_crd_matches_generated() {
    let path = root().join("crds/checkpointbudget.yaml");
    let committed = std::fs::read_to_string(&path).expect("crds/checkpointbudget.yaml is committed");
    let generated = crd_yaml().unwrap();
    assert!(
        committed == generated,
        "crds/checkpointbudget.yaml differs from the generated CRD; regenerate it with \
         `cargo run -- crd > crds/checkpointbudget.yaml`"
    );
}

/// Every `examples/*.yaml` budget passes the schema, unknown-field and CEL checks, and
/// converts to a policy budget.
#[test]
fn examples_are_valid_budgets() {
    let validator = BudgetValidator::new().unwrap();
    let files = yaml_files(&root().join("examples"));
    let mut budgets = 0;
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        let mut report = Report::default();
        validator.validate_yaml(file, &text, &mut report);
        for doc in &report.documents {
            assert!(doc.is_valid(), "{}: {:?}", file.display(), doc.problems);
            budgets += 1;
        }
        for doc in serde_yaml::Deserializer::from_str(&text) {
            use serde::Deserialize;
            let value = serde_yaml::Value::deserialize(doc).unwrap();
            if value.get("kind").and_then(|k| k.as_str()) == Some("CheckpointBudget") {
                let budget: CheckpointBudget = serde_yaml::from_value(value).unwrap();
                budget
                    .spec
                    .to_budget()
                    .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
                budget
                    .validate_cel()
                    .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
            }
        }
    }
    assert!(
        budgets >= 3,
        "expected at least the minimal, full and Recommend examples, found {budgets}"
    );
}

struct Expectation {
    expect: String,
    problems: usize,
    spec_error: Option<String>,
}

fn expectation(text: &str) -> Expectation {
    let header = |key: &str| {
        text.lines()
            .filter_map(|l| l.strip_prefix("# "))
            .find_map(|l| l.strip_prefix(key).map(|v| v.trim().to_owned()))
    };
    Expectation {
        expect: header("expect:").expect("every corpus file has an `# expect:` line"),
        problems: header("problems:").map_or(1, |n| n.parse().unwrap()),
        spec_error: header("spec-error:"),
    }
}

/// The validator built from the *committed* `crds/checkpointbudget.yaml` — its
/// openAPIV3Schema and `x-kubernetes-validations` as the API server receives them — rather
/// than from the Rust types `validate` generates the CRD from.
///
/// NB: the evaluators are the same (the `jsonschema` crate, kube's CEL interpreter) as no
/// kube-apiserver runs here; what differs is the source. `committed_crd_matches_generated`
/// pins the two sources together, this pins the committed one to the corpus.
fn committed_crd_validator() -> BudgetValidator {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    let text = std::fs::read_to_string(root().join("crds/checkpointbudget.yaml")).unwrap();
    let crd: CustomResourceDefinition = serde_yaml::from_str(&text).unwrap();
    let version = crd.spec.versions.iter().find(|v| v.name == "v1alpha1").unwrap();
    let schema = version
        .schema
        .as_ref()
        .unwrap()
        .open_api_v3_schema
        .as_ref()
        .unwrap();
    BudgetValidator::from_schema(serde_json::to_value(schema).unwrap()).unwrap()
}

/// Each invalid budget gets its own specific error from the committed CRD (as the API server
/// would enforce it) and from `validate`, and `to_budget` (the reconciler's guard) agrees
/// wherever the spec deserialises. (The reconciler level — the controller fed each case as
/// if the schema had been bypassed — is `controller::decode::tests` in the library.)
#[test]
fn invalid_corpus_gets_specific_errors() {
    let validator = BudgetValidator::new().unwrap();
    let committed = committed_crd_validator();
    let files = yaml_files(&root().join("tests/data/invalid"));
    assert!(files.len() >= 70, "corpus shrank to {}", files.len());
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        let want = expectation(&text);
        let mut report = Report::default();
        validator.validate_yaml(file, &text, &mut report);
        let name = file.display();
        assert_eq!(report.documents.len(), 1, "{name}: {report:?}");
        let doc = &report.documents[0];
        let lines: Vec<String> = doc.problems.iter().map(ToString::to_string).collect();
        assert_eq!(doc.problems.len(), want.problems, "{name}: {lines:#?}");
        assert!(
            lines.iter().any(|l| l.contains(&want.expect)),
            "{name}: expected a problem containing {:?}, got {lines:#?}",
            want.expect
        );
        assert!(
            lines.iter().all(|l| l.len() < 1024),
            "{name}: a problem quotes too much: {lines:#?}"
        );

        // The committed CRD refuses it with the same problems.
        let mut at_apply = Report::default();
        committed.validate_yaml(file, &text, &mut at_apply);
        assert_eq!(at_apply.documents, report.documents, "{name}: committed CRD");

        // Through JSON, as the controller receives it from the API server (YAML would let
        // an untyped scalar such as `120` pass as a string).
        // Decoded as the controller decodes what it watches.
        let parsed = serde_yaml::from_str::<serde_json::Value>(&text)
            .map_err(|e| e.to_string())
            .and_then(|v| serde_json::from_value::<DynamicObject>(v).map_err(|e| e.to_string()))
            .and_then(|o| decode(&o).map_err(|e| e.to_string()));
        match want.spec_error.as_deref() {
            Some("none") => {
                if let Ok(budget) = parsed {
                    budget
                        .spec
                        .to_budget()
                        .unwrap_or_else(|e| panic!("{name}: unexpected {e}"));
                }
            }
            Some(field) => {
                let budget = parsed.unwrap_or_else(|e| panic!("{name}: should deserialise: {e}"));
                let err = budget.spec.to_budget().expect_err(&name.to_string());
                assert_eq!(err.field, field, "{name}: {err}");
            }
            None => {
                let is_yaml_error = doc.problems.iter().any(|p| p.check == Check::Read);
                assert!(
                    is_yaml_error || parsed.is_err(),
                    "{name}: should not deserialise: {parsed:?}"
                );
            }
        }
    }
}

/// Multi-document files: budgets are checked one by one, other kinds skipped, `List`
/// items looked into, and each problem names its document.
#[test]
fn multi_document_files() {
    let text = r#"
apiVersion: v1
kind: Namespace
metadata: {name: streaming}
---
apiVersion: checkpoint-autoscaler.dev/v1alpha1
kind: CheckpointBudget
metadata: {name: good, namespace: streaming}
spec:
  application: {name: good}
  objectives: {maxCheckpointDuration: 2m}
  parallelism: {min: 1, max: 4, maxParallelism: 4}
---
---
apiVersion: v1
kind: List
items:
- apiVersion: checkpoint-autoscaler.dev/v1alpha1
  kind: CheckpointBudget
  metadata: {name: bad}
  spec:
    application: {name: bad}
    objectives: {maxCheckpointDuration: 2m}
    parallelism: {min: 8, max: 4, maxParallelism: 4}
- apiVersion: apps/v1
  kind: Deployment
  metadata: {name: other}
"#;
    let validator = BudgetValidator::new().unwrap();
    let mut report = Report::default();
    validator.validate_yaml(Path::new("all.yaml"), text, &mut report);
    assert_eq!(report.skipped, 2);
    assert_eq!(report.documents.len(), 2);
    assert!(report.documents[0].is_valid());
    assert_eq!(report.documents[0].document, "2");
    let bad = &report.documents[1];
    assert_eq!(bad.document, "4.items[0]");
    assert_eq!(bad.name.as_deref(), Some("bad"));
    assert_eq!(bad.problems.len(), 1);
    assert_eq!(bad.problems[0].check, Check::Cel);
    assert_eq!(bad.problems[0].field, "spec.parallelism.min");
    assert_eq!(bad.problems[0].rule.as_deref(), Some("self.min <= self.max"));
}

fn run_validate(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_checkpoint-autoscaler"))
        .arg("validate")
        .args(args)
        .current_dir(root())
        .output()
        .unwrap();
    (out.status.code().unwrap(), String::from_utf8(out.stdout).unwrap())
}

/// The subcommand: OK lines and exit 0 for the examples, file + document + name + field +
/// rule and a non-zero exit for an invalid budget, JSON on request.
#[test]
fn validate_subcommand() {
    let (code, out) = run_validate(&["examples/"]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("examples/budget-minimal.yaml: document 1 (streaming/clickstream-sessions): OK"),
        "{out}"
    );

    let (code, out) = run_validate(&[
        "examples/budget-full.yaml",
        "tests/data/invalid/max-above-max-parallelism.yaml",
    ]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("examples/budget-full.yaml: document 1 (streaming/orders-enrichment): OK"),
        "{out}"
    );
    assert!(
        out.contains(
            "tests/data/invalid/max-above-max-parallelism.yaml: document 1 (m2): spec.parallelism.max: \
             parallelism.max exceeds parallelism.maxParallelism"
        ),
        "{out}"
    );
    assert!(out.contains("[self.max <= self.maxParallelism]"), "{out}");

    let (code, out) = run_validate(&["--output", "json", "tests/data/invalid/enum-mode.yaml"]);
    assert_eq!(code, 1);
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(json["documents"][0]["problems"][0]["field"], "spec.mode");
    assert_eq!(json["documents"][0]["problems"][0]["check"], "schema");

    let (code, _) = run_validate(&["does/not/exist.yaml"]);
    assert_eq!(code, 1);
}

/// `-` reads standard input, for `helm template ... | checkpoint-autoscaler validate -`.
#[test]
fn validate_reads_stdin() {
    use std::{io::Write, process::Stdio};
    let mut child = Command::new(env!("CARGO_BIN_EXE_checkpoint-autoscaler"))
        .args(["validate", "-"])
        .current_dir(root())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let budget = std::fs::read_to_string(root().join("tests/data/invalid/min-above-max.yaml")).unwrap();
    child.stdin.take().unwrap().write_all(budget.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.starts_with("<stdin>: document 1 (m1): spec.parallelism.min:"),
        "{stdout}"
    );
}

/// Megabyte-sized values are refused at every level with a message of bounded size: `validate`
/// and the committed CRD quote the start of the value and its length, and the reconciler's
/// guard (whose message goes into the status and an Event) does the same.
#[test]
fn huge_values_get_short_errors() {
    let validator = BudgetValidator::new().unwrap();
    let committed = committed_crd_validator();
    let huge = "a".repeat(10 << 20);
    let base = || {
        serde_json::json!({
            "apiVersion": "checkpoint-autoscaler.dev/v1alpha1", "kind": "CheckpointBudget",
            "metadata": {"name": "huge"},
            "spec": {
                "application": {"name": "orders"},
                "objectives": {"maxCheckpointDuration": "2m"},
                "parallelism": {"min": 1, "max": 4, "maxParallelism": 4}
            }
        })
    };
    let mut name = base();
    name["spec"]["application"]["name"] = huge.clone().into();
    let mut duration = base();
    duration["spec"]["objectives"]["maxCheckpointDuration"] = format!("{huge}s").into();
    let mut size = base();
    size["spec"]["objectives"]["maxCheckpointSize"] = format!("1{}", "0".repeat(10 << 20)).into();
    let mut key = base();
    key["spec"][huge.as_str()] = 1.into();
    let mut region = base();
    region["spec"]["application"]["region"] = huge.clone().into();
    for (what, doc, field) in [
        ("name", &name, "spec.application.name"),
        ("duration", &duration, "spec.objectives.maxCheckpointDuration"),
        ("size", &size, "spec.objectives.maxCheckpointSize"),
        ("unknown key", &key, "spec.aaaa"),
        ("region", &region, "spec.application.region"),
    ] {
        for v in [&validator, &committed] {
            let problems = v.validate(doc);
            assert!(!problems.is_empty(), "{what}");
            for p in &problems {
                let line = p.to_string();
                assert!(line.len() < 1024, "{what}: {} bytes", line.len());
                assert!(p.field.starts_with(field), "{what}: {line}");
            }
        }
        let budget: Result<CheckpointBudget, _> = serde_json::from_value(doc.clone());
        if let Ok(budget) = budget {
            match budget.spec.to_budget() {
                Ok(_) => assert_eq!(what, "unknown key", "the reconciler ignores unknown fields only"),
                Err(e) => {
                    assert_eq!(e.field, field, "{what}");
                    assert!(
                        e.to_string().len() < 1024,
                        "{what}: {} bytes",
                        e.to_string().len()
                    );
                }
            }
        }
    }
}

/// What a real API server makes of the committed CRD, as far as it can be known without one
/// (`crd::admission` mirrors the API server's CRD validation, its CEL cost estimator and its
/// versioned CEL environment): accepted from the oldest supported Kubernetes to the newest
/// whose source was read, every rule well inside the cost budgets, no hazard but the one
/// acknowledged here; and the chart's `kubeVersion` and the README name that same oldest
/// version.
#[test]
fn committed_crd_passes_the_api_servers_admission_checks() {
    use checkpoint_autoscaler::crd::admission::{
        CRD_COST_LIMIT, NEWEST_MINOR, RULE_COST_LIMIT, check_all, oldest_accepting, render, short_path,
    };

    let text = std::fs::read_to_string(root().join("crds/checkpointbudget.yaml")).unwrap();
    let crd: serde_json::Value = serde_yaml::from_str(&text).unwrap();
    let reports = check_all(&crd).unwrap();
    let report = render(&reports);
    let oldest =
        oldest_accepting(&reports).unwrap_or_else(|| panic!("refused by 1.{NEWEST_MINOR}:\n{report}"));
    assert!(
        oldest.minor <= 29,
        "the CRD now needs Kubernetes {oldest}:\n{report}"
    );

    // The hazards known and accepted: an int-or-string is sized at the whole request up to
    // 1.33 (its rule is priced there, below, at under a fifth of the per-rule budget).
    let acknowledged = [(".spec.objectives.maxCheckpointSize", "int-or-string")];
    for r in reports.iter().filter(|r| r.version >= oldest) {
        assert!(r.accepted(), "{report}");
        assert!(
            r.total_cost <= CRD_COST_LIMIT / 20,
            "{}: total {}\n{report}",
            r.version,
            r.total_cost
        );
        for rule in &r.rules {
            let cost = rule.cost.unwrap_or(u64::MAX);
            assert!(
                cost <= RULE_COST_LIMIT / 5,
                "{}: {} costs {cost}\n{report}",
                r.version,
                rule.path
            );
            assert!(
                rule.message_cost.is_none(),
                "{}: a messageExpression\n{report}",
                rule.path
            );
        }
        for hazard in r.hazards() {
            let path = short_path(&hazard.path);
            assert!(
                acknowledged
                    .iter()
                    .any(|(p, what)| path == *p && hazard.message.contains(what)),
                "{}: a new hazard: {path}: {}\n{report}",
                r.version,
                hazard.message
            );
        }
    }

    // Chart.yaml and the README say the same.
    let chart: serde_yaml::Value = serde_yaml::from_str(
        &std::fs::read_to_string(root().join("charts/checkpoint-autoscaler/Chart.yaml")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        chart["kubeVersion"].as_str(),
        Some(format!(">={oldest}.0-0").as_str()),
        "charts/checkpoint-autoscaler/Chart.yaml kubeVersion must be the oldest version that accepts the CRD"
    );
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    assert!(
        readme.contains(&format!("Kubernetes {oldest} or later")),
        "the README must say the chart needs Kubernetes {oldest} or later"
    );
}
