//! Tests of the spec types, the generated CRD's CEL rules and the conversions.

use jiff::Timestamp;
use proptest::{prelude::*, test_runner::TestRunner};
use serde_json::json;

use super::*;
use crate::{
    policy::{AppConfig, AppStatus, Cause, History, Outcome, RecommendationRecord, ScalingRecord},
    validate::BudgetValidator,
};

fn spec_json() -> serde_json::Value {
    json!({
        "application": {"name": "orders-enrichment"},
        "objectives": {"maxCheckpointDuration": "2m"},
        "parallelism": {"min": 2, "max": 32, "maxParallelism": 128}
    })
}

fn minimal_spec() -> CheckpointBudgetSpec {
    serde_json::from_value(spec_json()).unwrap()
}

fn ts(s: &str) -> Timestamp {
    s.parse().unwrap()
}

#[test]
fn crd_identity() {
    let crd = CheckpointBudget::crd();
    assert_eq!(
        crd.metadata.name.as_deref(),
        Some("checkpointbudgets.checkpoint-autoscaler.dev")
    );
    assert_eq!(crd.spec.scope, "Namespaced");
    assert_eq!(crd.spec.names.short_names, Some(vec!["ckb".to_owned()]));
    let version = &crd.spec.versions[0];
    assert_eq!(version.name, VERSION);
    assert!(
        version
            .subresources
            .as_ref()
            .and_then(|s| s.status.as_ref())
            .is_some()
    );
    let columns: Vec<(&str, i32)> = version
        .additional_printer_columns
        .iter()
        .flatten()
        .map(|c| (c.name.as_str(), c.priority.unwrap_or(0)))
        .collect();
    // `kubectl get ckb`, and what `-o wide` (priority 1) adds.
    assert_eq!(
        columns,
        [
            ("Application", 0),
            ("Mode", 0),
            ("Ready", 0),
            ("Parallelism", 0),
            ("Per-KPU", 1),
            ("KPUs", 0),
            ("Checkpoint", 0),
            ("Budget", 0),
            ("SLO Met", 0),
            ("Recommended", 1),
            ("Cause", 1),
            ("Error Budget", 1),
            ("Burn", 1),
            ("Age", 0)
        ]
    );
}

#[test]
fn conditions_are_a_map_list_keyed_by_type() {
    let crd = serde_json::to_value(CheckpointBudget::crd()).unwrap();
    let conditions = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"]
        ["conditions"];
    assert_eq!(conditions["x-kubernetes-list-type"], "map");
    assert_eq!(conditions["x-kubernetes-list-map-keys"], json!(["type"]));
}

#[test]
fn minimal_spec_gets_documented_defaults() {
    let spec = minimal_spec();
    assert_eq!(spec.mode, Mode::Enforce);
    assert_eq!(spec.service_auto_scaling, ServiceAutoScaling::Disable);
    let budget = spec.to_budget().unwrap();
    assert_eq!(budget.max_checkpoint_duration, Duration::from_secs(120));
    assert_eq!(budget.window, Duration::from_secs(600));
    assert_eq!(budget.max_failed_checkpoints, 0);
    assert_eq!((budget.per_kpu_min, budget.per_kpu_max), (1, 4));
    assert_eq!(budget.max_kpus, None);
    assert_eq!(budget.max_checkpoint_size, None);
    assert_eq!(budget.scale_up_cooldown, Duration::from_secs(300));
    assert_eq!(budget.scale_down_cooldown, Duration::from_secs(1800));
    assert_eq!(budget.scale_down_stabilization, Duration::from_secs(3600));
    assert_eq!(
        (
            budget.parallelism_min,
            budget.parallelism_max,
            budget.max_parallelism
        ),
        (2, 32, 128)
    );
}

#[test]
fn schema_defaults_match_serde_defaults() {
    // The API server applies the schema's defaults; the controller relies on serde's. They
    // must be the same values.
    let crd = serde_json::to_value(CheckpointBudget::crd()).unwrap();
    let spec = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"];
    let defaults = minimal_spec();
    assert_eq!(
        spec["behavior"]["default"],
        serde_json::to_value(&defaults.behavior).unwrap()
    );
    assert_eq!(
        spec["parallelism"]["properties"]["perKpu"]["default"],
        json!({"min": 1, "max": 4})
    );
    assert_eq!(spec["objectives"]["properties"]["window"]["default"], "10m");
    assert_eq!(spec["mode"]["default"], "Enforce");
    assert_eq!(spec["serviceAutoScaling"]["default"], "Disable");
}

#[test]
fn full_spec_converts() {
    let mut v = spec_json();
    v["objectives"] = json!({"maxCheckpointDuration": "90s", "maxCheckpointSize": "8Gi", "maxFailedCheckpoints": 2, "window": "15m"});
    v["parallelism"]["perKpu"] = json!({"min": 2, "max": 8});
    v["maxKpus"] = json!(16);
    v["behavior"] =
        json!({"scaleUp": {"cooldown": "10m"}, "scaleDown": {"cooldown": "1h", "stabilizationWindow": "2h"}});
    v["mode"] = json!("Recommend");
    let spec: CheckpointBudgetSpec = serde_json::from_value(v.clone()).unwrap();
    let budget = spec.to_budget().unwrap();
    assert_eq!(budget.max_checkpoint_size, Some(8 << 30));
    assert_eq!(budget.max_failed_checkpoints, 2);
    assert_eq!(budget.window, Duration::from_secs(900));
    assert_eq!(budget.max_kpus, Some(16));
    assert_eq!((budget.per_kpu_min, budget.per_kpu_max), (2, 8));
    assert_eq!(budget.scale_down_stabilization, Duration::from_secs(7200));
    // Round trip keeps the text as written.
    assert_eq!(
        serde_json::to_value(&spec).unwrap()["objectives"],
        v["objectives"]
    );
}

#[test]
fn new_and_from_budget_round_trip() {
    let spec = CheckpointBudgetSpec::new("orders-enrichment", Duration::from_secs(120), 2, 32, 128);
    assert_eq!(spec, minimal_spec());
    let mut v = spec_json();
    v["objectives"] = json!({"maxCheckpointDuration": "90s", "maxCheckpointSize": "1.5Gi", "maxFailedCheckpoints": 2, "window": "15m"});
    v["parallelism"]["perKpu"] = json!({"min": 2, "max": 8});
    v["maxKpus"] = json!(16);
    v["behavior"] = json!({"scaleUp": {"cooldown": "2.5m"}, "scaleDown": {"cooldown": "1h", "stabilizationWindow": "2h"}});
    let budget = serde_json::from_value::<CheckpointBudgetSpec>(v)
        .unwrap()
        .to_budget()
        .unwrap();
    let again = CheckpointBudgetSpec::from_budget("orders-enrichment", &budget);
    assert_eq!(again.to_budget().unwrap(), budget);
    let validator = BudgetValidator::new().unwrap();
    let object = serde_json::to_value(CheckpointBudget::new("x", again)).unwrap();
    assert_eq!(validator.validate(&object), Vec::new());
}

#[test]
fn to_budget_names_field_problem_and_fix() {
    let mut spec = minimal_spec();
    spec.parallelism.max = 200;
    let err = spec.to_budget().unwrap_err();
    assert_eq!(err.field, "spec.parallelism.max");
    assert_eq!(
        err.to_string(),
        "spec.parallelism.max: max 200 exceeds maxParallelism 128; lower parallelism.max to at most the job's \
         maxParallelism (state cannot be restored above it)"
    );
    let mut spec = minimal_spec();
    spec.objectives.max_checkpoint_duration = serde_json::from_value(json!("0s")).unwrap();
    let err = spec.to_budget().unwrap_err();
    assert_eq!(err.field, "spec.objectives.maxCheckpointDuration");
    assert!(err.to_string().contains("is zero"), "{err}");
    let mut spec = minimal_spec();
    spec.application.name = "a b".into();
    assert_eq!(spec.to_budget().unwrap_err().field, "spec.application.name");
}

#[test]
fn validate_cel_runs_the_crd_rules() {
    let ok = CheckpointBudget::new("ok", minimal_spec());
    ok.validate_cel().unwrap();

    let mut spec = minimal_spec();
    spec.parallelism.min = 64;
    let errors = CheckpointBudget::new("bad", spec).validate_cel().unwrap_err();
    assert_eq!(errors.len(), 1, "{errors}");
    assert_eq!(errors[0].field_path, "spec.parallelism.min");
    assert_eq!(
        errors[0].message,
        "parallelism.min must not exceed parallelism.max"
    );

    let mut spec = minimal_spec();
    spec.parallelism.min = 20;
    spec.max_kpus = Some(4);
    let errors = CheckpointBudget::new("bad", spec).validate_cel().unwrap_err();
    assert_eq!(errors.len(), 1, "{errors}");
    assert_eq!(errors[0].field_path, "spec.maxKpus");
    assert_eq!(errors[0].message, MAX_KPUS_MESSAGE);

    let mut spec = minimal_spec();
    spec.behavior.scale_down.cooldown = serde_json::from_value(json!("0h")).unwrap();
    let errors = CheckpointBudget::new("bad", spec).validate_cel().unwrap_err();
    assert_eq!(errors[0].field_path, "spec.behavior.scaleDown.cooldown");
}

/// The CRD's rules (schema + CEL, as `validate` runs them) and `to_budget` (the reconciler's
/// guard) accept exactly the same specs.
#[test]
fn validator_and_to_budget_agree() {
    let validator = BudgetValidator::new().unwrap();
    let durations = prop::sample::select(vec![
        "2m", "90s", "0s", "30s", "1m", "1h30m", "1.5h", "0.5m", "0h0m",
    ]);
    let strategy = (
        (0u32..40, 0u32..40, 0u32..40),
        (0u32..10, 0u32..10),
        prop::option::of(0u32..20),
        (durations.clone(), durations.clone(), durations),
        prop::option::of(prop::sample::select(vec!["8Gi", "0.5Gi", "1", "1.5"])),
        prop::sample::select(vec![0u32, 3, MAX_FAILED_CHECKPOINTS, MAX_FAILED_CHECKPOINTS + 1]),
    );
    let mut runner = TestRunner::new(ProptestConfig::with_cases(512));
    runner
        .run(&strategy, |((min, max, max_par), (pk_min, pk_max), max_kpus, (budget, window, cooldown), size, failed)| {
            let mut v = spec_json();
            v["parallelism"] =
                json!({"min": min, "max": max, "maxParallelism": max_par, "perKpu": {"min": pk_min, "max": pk_max}});
            v["objectives"] = json!({"maxCheckpointDuration": budget, "window": window});
            if let Some(size) = size {
                v["objectives"]["maxCheckpointSize"] = json!(size);
            }
            v["behavior"] = json!({"scaleUp": {"cooldown": cooldown}});
            v["objectives"]["maxFailedCheckpoints"] = json!(failed);
            if let Some(k) = max_kpus {
                v["maxKpus"] = json!(k);
            }
            let object = json!({
                "apiVersion": "checkpoint-autoscaler.dev/v1alpha1",
                "kind": "CheckpointBudget",
                "metadata": {"name": "x"},
                "spec": v.clone(),
            });
            let problems = validator.validate(&object);
            let spec: CheckpointBudgetSpec = serde_json::from_value(v).unwrap();
            let converted = spec.to_budget();
            prop_assert_eq!(problems.is_empty(), converted.is_ok(), "{:?} vs {:?}", problems, converted);
            Ok(())
        })
        .unwrap();
}

#[test]
fn history_round_trips_through_status() {
    let history = History {
        baseline: Some(crate::policy::CheckpointBaseline {
            at: ts("2026-01-01T09:50:00Z"),
            config: AppConfig::new(4, 1),
            duration_ms: 3_726.0,
            size_bytes: 669_691_255.0,
        }),
        cpu_span: Some(crate::policy::CpuSpan {
            config: AppConfig::new(4, 1),
            low: crate::policy::CpuPoint {
                at: ts("2026-01-01T03:00:00Z"),
                records_per_second: 4_210.5,
                cpu_percent: 29.5,
            },
            high: crate::policy::CpuPoint {
                at: ts("2026-01-01T09:50:00Z"),
                records_per_second: 11_020.0,
                cpu_percent: 63.25,
            },
            floor_percent: Some(8.0),
        }),
        restarts: Vec::new(),
        slo_minutes: Vec::new(),
        slo_accounted_until: None,
        scalings: vec![ScalingRecord {
            at: ts("2026-01-01T10:00:00Z"),
            completed_at: Some(ts("2026-01-01T10:14:00Z")),
            from: AppConfig::new(4, 1),
            to: AppConfig::new(8, 2),
            cause: Cause::UnderProvisioned,
            checkpoint_duration_before_ms: Some(150_000.0),
            outcome: Outcome::Succeeded,
            records_in_before_per_second: Some(1200.0),
        }],
        recommendations: vec![RecommendationRecord {
            at: ts("2026-01-01T10:20:00Z"),
            config: AppConfig::new(6, 2),
        }],
    };
    let mut status = CheckpointBudgetStatus::default();
    assert_eq!(status.to_history(), History::default());
    status.set_history(&history);
    // Through JSON, as it is stored.
    let stored: CheckpointBudgetStatus =
        serde_json::from_value(serde_json::to_value(&status).unwrap()).unwrap();
    assert_eq!(stored.to_history(), history);
    let json = serde_json::to_value(&status).unwrap();
    assert_eq!(json["history"]["scalings"][0]["cause"], "UnderProvisioned");
    assert_eq!(json["history"]["scalings"][0]["outcome"], "Succeeded");
    assert_eq!(
        json["history"]["scalings"][0]["to"],
        json!({"parallelism": 8, "parallelismPerKpu": 2, "kpus": 4})
    );
    assert_eq!(json["history"]["cpuSpan"]["low"]["cpuPercent"], 29.5);
}

#[test]
fn history_is_bounded_to_the_newest() {
    let base = ts("2026-01-01T00:00:00Z");
    let history = History {
        baseline: None,
        cpu_span: None,
        restarts: Vec::new(),
        slo_minutes: Vec::new(),
        slo_accounted_until: None,
        scalings: (0..30)
            .map(|i| ScalingRecord {
                at: base + jiff::SignedDuration::from_hours(i),
                completed_at: None,
                from: AppConfig::new(1, 1),
                to: AppConfig::new(2, 1),
                cause: Cause::LargeState,
                checkpoint_duration_before_ms: None,
                outcome: Outcome::Failed,
                records_in_before_per_second: None,
            })
            .collect(),
        recommendations: (0..500)
            .map(|i| RecommendationRecord {
                at: base + jiff::SignedDuration::from_mins(i),
                config: AppConfig::new(2, 1),
            })
            .collect(),
    };
    let kept = ScalingHistory::from_history(&history).to_history();
    assert_eq!(kept.scalings.len(), MAX_HISTORY_SCALINGS);
    assert_eq!(kept.recommendations.len(), MAX_HISTORY_RECOMMENDATIONS);
    assert_eq!(kept.scalings.last(), history.scalings.last());
    assert_eq!(kept.recommendations.first(), history.recommendations.get(300));
}

#[test]
fn status_views() {
    let figures = crate::policy::CheckpointFigures {
        last_duration_ms: Some(92_400.0),
        max_duration_ms: Some(1_500.0),
        last_size_bytes: Some(1_610_612_736.0),
        failed: 1,
        samples: 10,
        ..Default::default()
    };
    let budget = minimal_spec().to_budget().unwrap();
    let window = CheckpointWindow::new(&figures, &budget);
    assert_eq!(window.last_duration.as_deref(), Some("1m32s"));
    assert_eq!(window.last_duration_ms, Some(92_400));
    assert_eq!(window.max_duration.as_deref(), Some("1.5s"));
    assert_eq!(window.last_size.as_deref(), Some("1.5Gi"));
    assert_eq!((window.budget.as_str(), window.window.as_str()), ("2m", "10m"));

    let obs = crate::policy::Observation {
        at: ts("2026-01-01T00:00:00Z"),
        status: AppStatus::Running,
        config: AppConfig::new(10, 4),
        service_autoscaling: false,
        version_id: 7,
        samples: Vec::new(),
        period: Duration::from_secs(60),
        hourly_input: Vec::new(),
    };
    let app = ObservedApplication::from_observation(&obs);
    assert_eq!((app.kpus, app.config()), (3, AppConfig::new(10, 4)));
    assert_eq!(serde_json::to_value(&app).unwrap()["status"], "RUNNING");
}

#[test]
fn crd_uses_only_formats_kubernetes_knows() {
    fn formats(v: &serde_json::Value, out: &mut Vec<String>) {
        match v {
            serde_json::Value::Object(map) => {
                if let Some(serde_json::Value::String(f)) = map.get("format") {
                    out.push(f.clone());
                }
                map.values().for_each(|c| formats(c, out));
            }
            serde_json::Value::Array(items) => items.iter().for_each(|c| formats(c, out)),
            _ => {}
        }
    }
    let mut found = Vec::new();
    formats(
        &serde_json::to_value(CheckpointBudget::crd()).unwrap(),
        &mut found,
    );
    assert!(!found.is_empty());
    for f in found {
        assert!(
            ["int32", "int64", "double", "float", "date-time", "byte"].contains(&f.as_str()),
            "{f}"
        );
    }
}

/// The reconciler's hand-written region and role-ARN checks agree with the schema patterns
/// the API server applies, on arbitrary strings and on near-misses of valid ones.
#[test]
fn region_and_role_arn_checks_agree_with_the_patterns() {
    let schema = |pattern: &str, max: usize| {
        jsonschema::draft4::new(
            &json!({"type": "string", "pattern": pattern, "minLength": 1, "maxLength": max}),
        )
        .unwrap()
    };
    let region = schema(REGION_PATTERN, 32);
    let role = schema(ROLE_ARN_PATTERN, 2048);
    let mut runner = TestRunner::new(ProptestConfig::with_cases(
        std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|n| n.parse().ok())
            .unwrap_or(500),
    ));
    let strings = prop_oneof![
        "[a-z]{1,3}(-[a-z0-9]{0,8}){0,4}",
        "[a-zA-Z0-9 -]{0,40}",
        "arn:aws(-[a-z]{0,3})?:iam::[0-9]{10,13}:role/[A-Za-z0-9+=,.@_/: -]{0,20}",
        "arn:aws(-[a-z]{1,6}){0,2}:iam::[0-9]{12}:role/[A-Za-z0-9+=,.@_/-]{1,20}\n?",
        ".{0,30}",
    ];
    runner
        .run(&strings, |s| {
            let v = serde_json::Value::String(s.clone());
            prop_assert_eq!(is_region(&s), region.is_valid(&v), "region {:?}", s);
            prop_assert_eq!(is_role_arn(&s), role.is_valid(&v), "role {:?}", s);
            Ok(())
        })
        .unwrap();
    for good in ["eu-west-1", "us-gov-west-1", "ap-southeast-2"] {
        assert!(is_region(good), "{good}");
    }
    for good in [
        "arn:aws:iam::111122223333:role/flink-scaler",
        "arn:aws-cn:iam::111122223333:role/path/to/r",
        "arn:aws-us-gov:iam::111122223333:role/r+=,.@_-",
    ] {
        assert!(is_role_arn(good), "{good}");
    }
    for bad in ["", "EU-West-1", "eu-west", "eu-west-1\n", "eu--1", "e-west-1"] {
        assert!(!is_region(bad), "{bad:?}");
    }
}

#[test]
fn error_budget_target_and_period_parse_as_the_schema_checks_them() {
    use crate::crd::{format_target, parse_target};
    assert_eq!(parse_target("99.5%"), Some(0.995));
    assert_eq!(parse_target("90%"), Some(0.9));
    assert_eq!(parse_target("0.5%"), Some(0.005));
    for bad in [
        "100%",
        "0%",
        "0.0%",
        "0.50%",
        "99.5",
        "099%",
        "99.12345%",
        "-1%",
        "%",
        "1e1%",
        "",
    ] {
        assert_eq!(parse_target(bad), None, "{bad}");
    }
    assert_eq!(format_target(0.995), "99.5%");
    assert_eq!(format_target(0.9), "90%");

    let mut spec = CheckpointBudgetSpec::new("app", Duration::from_secs(120), 1, 8, 128);
    spec.objectives.target = Some("99.9%".into());
    let budget = spec.to_budget().unwrap();
    let eb = budget.error_budget.clone().unwrap();
    assert!((eb.target - 0.999).abs() < 1e-12);
    assert_eq!(eb.period, crate::crd::DEFAULT_PERIOD);
    // Round trip through the spec the simulator builds.
    let back = CheckpointBudgetSpec::from_budget("app", &budget)
        .to_budget()
        .unwrap();
    assert_eq!(back.error_budget, budget.error_budget);

    spec.objectives.period = Some("2161h".parse().unwrap());
    assert_eq!(spec.to_budget().unwrap_err().field, "spec.objectives.period");
    spec.objectives.target = None;
    spec.objectives.period = Some("720h".parse().unwrap());
    assert_eq!(spec.to_budget().unwrap_err().field, "spec.objectives.period");
}
