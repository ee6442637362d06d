//! The properties of manifest loading: `validate` on arbitrary YAML and on mutated valid
//! budgets, scenario YAML, the tenancy allow-list and Flink workloads. Each must refuse
//! with an error, never panic, and accept every valid example; a budget `validate`
//! accepts, the controller accepts too.
//!
//! Bounded for CI: 256 cases per property unless `PROPTEST_CASES` says otherwise.

use proptest::prelude::*;
use serde_json::{Value, json};

use checkpoint_autoscaler_testkit::strategies::{Mutation, cases, json_value, mutate, mutations};

/// YAML-ish text: fragments that stress the parser (anchors, aliases, merge keys, tags,
/// flow collections, deep nesting, document markers) joined at random.
fn yamlish() -> impl Strategy<Value = String> {
    let fragment = prop_oneof![
        Just("apiVersion: checkpoint-autoscaler.dev/v1alpha1\n".to_owned()),
        Just("kind: CheckpointBudget\n".to_owned()),
        Just("kind: List\nitems:\n".to_owned()),
        Just("metadata: {name: x}\n".to_owned()),
        Just("spec:\n".to_owned()),
        Just("  parallelism: &p {min: 1, max: 2, maxParallelism: 2}\n".to_owned()),
        Just("  <<: *p\n".to_owned()),
        Just("  x: *undefined\n".to_owned()),
        Just("---\n".to_owned()),
        Just("...\n".to_owned()),
        Just("!!binary aGVsbG8=\n".to_owned()),
        Just("? [a, b]\n: c\n".to_owned()),
        Just("- ".to_owned()),
        Just("  ".to_owned()),
        Just("\t".to_owned()),
        Just("{".to_owned()),
        Just("[".to_owned()),
        Just("\"\\u00".to_owned()),
        Just("|\n  block\n".to_owned()),
        Just("%YAML 1.2\n".to_owned()),
        Just("!tag {}\n".to_owned()),
        Just("99999999999999999999999999\n".to_owned()),
        Just("1e400\n".to_owned()),
        Just(".nan\n".to_owned()),
        Just("~\n".to_owned()),
        Just("[".repeat(200)),
        ".{0,20}",
    ];
    proptest::collection::vec(fragment, 0..24).prop_map(|parts| parts.concat())
}

fn examples(dir: &str) -> Vec<(String, String)> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| (p.display().to_string(), std::fs::read_to_string(&p).unwrap()))
        .collect()
}

/// The CheckpointBudget documents of the examples, as JSON.
fn example_budgets() -> Vec<Value> {
    use serde::Deserialize as _;
    let mut out = Vec::new();
    for (_, text) in examples("examples")
        .into_iter()
        .chain(examples("examples/gitops/budgets"))
    {
        for doc in serde_yaml::Deserializer::from_str(&text) {
            let value = serde_yaml::Value::deserialize(doc).unwrap();
            if value.get("kind").and_then(|k| k.as_str()) == Some("CheckpointBudget") {
                out.push(serde_json::to_value(value).unwrap());
            }
        }
    }
    assert!(out.len() >= 4, "{} example budgets", out.len());
    out
}

fn runner() -> proptest::test_runner::TestRunner {
    proptest::test_runner::TestRunner::new(ProptestConfig {
        cases: cases(),
        failure_persistence: None,
        ..ProptestConfig::default()
    })
}

/// As the controller receives a budget: namespaced, with a generation.
fn watched(mut value: Value) -> Option<kube::api::DynamicObject> {
    if !value.is_object() {
        return None;
    }
    if !value["metadata"].is_object() {
        value["metadata"] = json!({});
    }
    value["metadata"]["namespace"] = json!("streaming");
    value["metadata"]["generation"] = json!(1);
    serde_json::from_value(value).ok()
}

/// `validate` refuses garbage with problems (never a panic) and, for a budget it accepts,
/// the controller decodes and accepts it too (and the policy can run on it).
#[test]
fn validate_and_the_controller_agree_on_mutated_budgets() {
    use checkpoint_autoscaler::{controller::decode::decode, policy, validate::BudgetValidator};
    let validator = BudgetValidator::new().unwrap();
    let budgets = example_budgets();
    for budget in &budgets {
        assert_eq!(validator.validate(budget), Vec::new(), "{budget}");
    }
    let now: jiff::Timestamp = "2026-11-26T08:00:00Z".parse().unwrap();
    let strategy = (0..budgets.len(), mutations());
    runner()
        .run(&strategy, |(i, m)| {
            let doc = mutate(budgets[i].clone(), &m);
            let problems = validator.validate(&doc);
            for p in &problems {
                prop_assert!(!p.message.is_empty(), "{p:?}");
                prop_assert!(p.to_string().len() < 4096, "{}", p.to_string().len());
            }
            let Some(object) = watched(doc.clone()) else {
                return Ok(());
            };
            let decoded = decode(&object);
            if problems.is_empty() {
                let budget = decoded.map_err(|e| TestCaseError::fail(format!("valid {doc} but {e}")))?;
                let typed = budget
                    .spec
                    .to_budget()
                    .map_err(|e| TestCaseError::fail(format!("valid {doc} but {e}")))?;
                let _ = policy::decide(&typed, None, &policy::History::default(), now);
            } else if let Ok(budget) = decoded {
                // The reconciler may still accept what only the API server refuses (unknown
                // fields, metadata); whatever it says is bounded.
                if let Err(e) = budget.spec.to_budget() {
                    prop_assert!(e.to_string().len() < 1024);
                }
            }
            Ok(())
        })
        .unwrap_or_else(|e| panic!("{e}"));
}

/// `validate` on arbitrary text and arbitrary documents: problems, never a panic.
#[test]
fn validate_never_panics_on_arbitrary_input() {
    use checkpoint_autoscaler::validate::{BudgetValidator, Report};
    let validator = BudgetValidator::new().unwrap();
    let strategy = prop_oneof![
        yamlish(),
        json_value().prop_map(|v| serde_yaml::to_string(&v).unwrap_or_default()),
        json_value().prop_map(|spec| {
            let doc = json!({"apiVersion": "checkpoint-autoscaler.dev/v1alpha1", "kind": "CheckpointBudget",
                "metadata": {"name": "x"}, "spec": spec});
            serde_yaml::to_string(&doc).unwrap_or_default()
        }),
    ];
    runner()
        .run(&strategy, |text| {
            let mut report = Report::default();
            validator.validate_yaml(std::path::Path::new("fuzz.yaml"), &text, &mut report);
            for doc in &report.documents {
                prop_assert!(doc.problems.iter().all(|p| !p.message.is_empty()));
            }
            Ok(())
        })
        .unwrap_or_else(|e| panic!("{e}"));
}

/// Scenario YAML: every example loads; mutated ones load or are refused with an error, and
/// a loaded one runs in the model without a panic.
#[test]
fn scenarios_load_or_are_refused() {
    use checkpoint_autoscaler::sim::{Fleet, Scenario};
    let mut sources: Vec<Value> = Vec::new();
    for (path, text) in examples("examples/scenarios")
        .into_iter()
        .chain(examples("examples/flink"))
    {
        Scenario::from_yaml(&text, &path).unwrap_or_else(|e| panic!("{path}: {e}"));
        sources.push(serde_yaml::from_str(&text).unwrap());
    }
    let start: jiff::Timestamp = "2026-01-05T00:00:00Z".parse().unwrap();
    let strategy = prop_oneof![
        4 => (0..sources.len(), mutations()).prop_map(move |(i, m)| (i, Some(m), String::new())),
        1 => yamlish().prop_map(|t| (0, None, t)),
    ];
    runner()
        .run(&strategy, |(i, m, text)| {
            let text = match m {
                Some(m) => serde_yaml::to_string(&mutate(sources[i].clone(), &m)).unwrap_or_default(),
                None => text,
            };
            let Ok(scenario) = Scenario::from_yaml(&text, "fuzz") else {
                return Ok(());
            };
            let mut fleet = Fleet::new(1, start);
            if fleet.add_scenario(&scenario, Some("fuzzed")).is_ok() {
                fleet.advance_to(start + jiff::SignedDuration::from_mins(3));
                let _ = fleet.describe_application("fuzzed");
            }
            Ok(())
        })
        .unwrap_or_else(|e| panic!("{e}"));
}

/// The tenancy allow-list: the documented examples load; anything else loads or is
/// refused, and a loaded one answers for any name.
#[test]
fn allow_lists_load_or_are_refused() {
    use checkpoint_autoscaler::{
        aws::Target,
        controller::tenancy::{AllowList, TenancyCheck},
    };
    let documented = [
        "namespaces:\n  streaming:\n    applications:\n      - \"arn:aws:kinesisanalytics:eu-west-1:111122223333:application/orders-*\"\n      - \"arn:aws:kinesisanalytics:*:111122223333:application/payments\"\n    roleArns: [\"arn:aws:iam::111122223333:role/flink-scaler\"]\n",
        "namespaces:\n  streaming:\n    roleArns: [\"arn:aws:iam::444455556666:role/flink-scaler\"]\n",
        "namespaces: {}\n",
    ];
    let mut sources = Vec::new();
    for text in documented {
        serde_yaml::from_str::<AllowList>(text).unwrap_or_else(|e| panic!("{text}: {e}"));
        sources.push(serde_yaml::from_str::<Value>(text).unwrap());
    }
    let strategy = prop_oneof![
        3 => (0..sources.len(), mutations(), ".{0,16}").prop_map(|(i, m, name)| (Some((i, m)), String::new(), name)),
        1 => (yamlish(), ".{0,16}").prop_map(|(t, name)| (None, t, name)),
    ];
    runner()
        .run(&strategy, |(m, text, name)| {
            let text = match m {
                Some((i, m)) => serde_yaml::to_string(&mutate(sources[i].clone(), &m)).unwrap_or_default(),
                None => text,
            };
            if let Ok(list) = serde_yaml::from_str::<AllowList>(&text) {
                let fake = checkpoint_autoscaler_testkit::fixtures::FakeAws::new();
                for ns in ["streaming", "", name.as_str()] {
                    let _ = futures::executor::block_on(list.check_spec(
                        ns,
                        &name,
                        &Target::new("eu-west-1"),
                        &fake,
                    ));
                    let _ = futures::executor::block_on(list.check_spec(
                        ns,
                        "orders-x",
                        &Target::with_role(name.clone(), name.clone()),
                        &fake,
                    ));
                    let _ = list.allows(ns, &name);
                }
            }
            Ok(())
        })
        .unwrap_or_else(|e| panic!("{e}"));
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("allow.yaml");
    std::fs::write(&bad, "namespaces: [").unwrap();
    assert!(AllowList::load(&bad).is_err());
    assert!(AllowList::load(&dir.path().join("missing.yaml")).is_err());
}

/// Flink workloads (the control API's `PATCH .../workload` body): the default round-trips;
/// anything else decodes and validates, or is refused.
#[test]
fn flink_workloads_decode_or_are_refused() {
    use checkpoint_autoscaler::flink::Workload;
    let default = serde_json::to_value(Workload::default()).unwrap();
    Workload::default().validate().unwrap();
    let strategy = prop_oneof![
        3 => mutations().prop_map(|m| (Some(m), Value::Null)),
        1 => json_value().prop_map(|v| (None, v)),
    ];
    runner()
        .run(&strategy, |(m, v)| {
            let doc = match m {
                Some(m) => mutate(default.clone(), &m),
                None => v,
            };
            if let Ok(workload) = serde_json::from_value::<Workload>(doc.clone()) {
                let _ = workload.validate();
            }
            if let Ok(text) = serde_yaml::to_string(&doc)
                && let Ok(workload) = serde_yaml::from_str::<Workload>(&text)
            {
                let _ = workload.validate();
            }
            Ok(())
        })
        .unwrap_or_else(|e| panic!("{e}"));
}

// ---------------------------------------------------------------------------------------
// Regressions: inputs the properties above found.

/// `behavior: null` passed `validate` (the API server prunes a null it may not store) but
/// failed the controller's decoding; the controller now prunes it too.
#[test]
fn a_null_the_api_server_prunes_decodes() {
    let mut doc = example_budgets()[0].clone();
    doc["spec"]["behavior"] = Value::Null;
    doc["spec"]["mode"] = Value::Null;
    let object = watched(doc).unwrap();
    let budget = checkpoint_autoscaler::controller::decode::decode(&object).unwrap();
    assert_eq!(budget.spec.mode, checkpoint_autoscaler::crd::Mode::Enforce);
}

/// A 100,000-character `metadata.name` was quoted whole in the problem.
#[test]
fn a_huge_metadata_name_is_not_reprinted() {
    let validator = checkpoint_autoscaler::validate::BudgetValidator::new().unwrap();
    for name in [json!("x".repeat(100_000)), json!([{"a": "x".repeat(100_000)}])] {
        let mut doc = example_budgets()[0].clone();
        doc["metadata"]["name"] = name;
        let problems = validator.validate(&doc);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].field, "metadata.name");
        assert!(problems[0].message.len() < 400, "{}", problems[0].message.len());
    }
}

/// A scenario whose state made the restore time overflow the model's clock
/// (`serializer-failure.yaml` mutated; the exact input proptest shrank to).
#[test]
fn a_scenario_with_absurd_sizes_runs() {
    use checkpoint_autoscaler::sim::{Fleet, Scenario};
    let (path, text) = examples("examples/scenarios")
        .into_iter()
        .find(|(p, _)| p.ends_with("serializer-failure.yaml"))
        .unwrap();
    let source: Value = serde_yaml::from_str(&text).unwrap();
    let mutated = mutate(
        source,
        &[
            Mutation::Delete(13988274018138963190),
            Mutation::Delete(6289444399958825886),
            Mutation::Replace(17130205108132622743, json!(10554321602337_u64)),
        ],
    );
    let scenario = Scenario::from_yaml(&serde_yaml::to_string(&mutated).unwrap(), &path).unwrap();
    let start: jiff::Timestamp = "2026-01-05T00:00:00Z".parse().unwrap();
    let mut fleet = Fleet::new(1, start);
    fleet.add_scenario(&scenario, Some("fuzzed")).unwrap();
    fleet.advance_to(start + jiff::SignedDuration::from_mins(3));
    fleet.describe_application("fuzzed").unwrap();
}

/// A scenario with a value of 1e308 (`transient-s3.yaml` mutated, as proptest shrank it):
/// the model's durations saturated to `Duration::MAX` and their sum overflowed.
#[test]
fn a_scenario_with_a_huge_figure_runs() {
    use checkpoint_autoscaler::sim::{Fleet, Scenario};
    let (path, text) = examples("examples/scenarios")
        .into_iter()
        .find(|(p, _)| p.ends_with("transient-s3.yaml"))
        .unwrap();
    let source: Value = serde_yaml::from_str(&text).unwrap();
    let mutated = mutate(source, &[Mutation::Replace(18050890404603721600, json!(1e308))]);
    let Ok(scenario) = Scenario::from_yaml(&serde_yaml::to_string(&mutated).unwrap(), &path) else {
        panic!("the mutated scenario loads (it did when the panic was found)");
    };
    let start: jiff::Timestamp = "2026-01-05T00:00:00Z".parse().unwrap();
    let mut fleet = Fleet::new(1, start);
    fleet.add_scenario(&scenario, Some("fuzzed")).unwrap();
    fleet.advance_to(start + jiff::SignedDuration::from_mins(3));
    fleet.describe_application("fuzzed").unwrap();
}

/// `maxCheckpointSize: -1.86e-308` made kube's CEL interpreter overflow comparing quantities
/// (the size rule then used `isQuantity`, which admits exponents).
#[test]
fn a_size_with_an_exponent_is_refused_not_crashed_on() {
    let validator = checkpoint_autoscaler::validate::BudgetValidator::new().unwrap();
    for size in [json!(-1.8624990729045094e-308), json!("1e-308"), json!("9e99Ei")] {
        let mut doc = example_budgets()[0].clone();
        doc["spec"]["objectives"]["maxCheckpointSize"] = size.clone();
        let problems = validator.validate(&doc);
        assert!(!problems.is_empty(), "{size}");
        assert!(
            problems
                .iter()
                .all(|p| p.field == "spec.objectives.maxCheckpointSize"),
            "{size}: {problems:?}"
        );
    }
}
