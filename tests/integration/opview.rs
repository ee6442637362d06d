//! The operator's view, end to end through the emulator: `kubectl get ckb` columns point at
//! fields the controller fills, `ScalingLimited` says when a bound holds the budget back
//! (with an Event on each transition only), and the status prices the recommendation.

use checkpoint_autoscaler::{
    controller::limited::SCALING_LIMITED,
    cost::{HOURS_PER_MONTH, ORCHESTRATION_KPUS},
    crd::CheckpointBudget,
};
use kube::CustomResourceExt;
use serde_json::Value;

use crate::harness::{self, Harness, HarnessConfig};

/// Evaluates the JSONPath subset the CRD's printer columns use: `.a.b` and
/// `.list[?(@.key=="value")].field`; `None` when nothing matches.
pub(crate) fn json_path<'a>(object: &'a Value, path: &str) -> Option<&'a Value> {
    let mut at = object;
    let mut rest = path.strip_prefix('.')?;
    while !rest.is_empty() {
        let end = rest.find(['.', '[']).unwrap_or(rest.len());
        let (name, tail) = rest.split_at(end);
        if !name.is_empty() {
            at = at.get(name)?;
        }
        rest = tail;
        if let Some(filter) = rest.strip_prefix("[?(@.") {
            let close = filter.find(")]")?;
            let (key, value) = filter[..close].split_once("==")?;
            let value = value.trim_matches('"');
            at = at
                .as_array()?
                .iter()
                .find(|item| item.get(key).and_then(Value::as_str) == Some(value))?;
            rest = &filter[close + 2..];
        }
        rest = rest.strip_prefix('.').unwrap_or(rest);
    }
    Some(at)
}

fn columns() -> Vec<(String, String, i64)> {
    let crd = serde_json::to_value(CheckpointBudget::crd()).unwrap();
    crd["spec"]["versions"][0]["additionalPrinterColumns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["name"].as_str().unwrap().to_owned(),
                c["jsonPath"].as_str().unwrap().to_owned(),
                c["priority"].as_i64().unwrap_or(0),
            )
        })
        .collect()
}

#[test]
fn json_path_subset() {
    let object = serde_json::json!({"status": {"conditions": [
        {"type": "Ready", "status": "True"}, {"type": "SloMet", "status": "False"}
    ], "recommendation": {"summary": "8 at 2/KPU (4 KPU)"}}});
    assert_eq!(
        json_path(&object, r#".status.conditions[?(@.type=="SloMet")].status"#),
        Some(&Value::from("False"))
    );
    assert_eq!(
        json_path(&object, ".status.recommendation.summary"),
        Some(&Value::from("8 at 2/KPU (4 KPU)"))
    );
    assert_eq!(json_path(&object, ".status.application.kpus"), None);
    assert_eq!(
        json_path(&object, r#".status.conditions[?(@.type=="Scaling")].status"#),
        None
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_budget_held_back_by_max_kpus_shows_it_in_columns_condition_events_and_cost() {
    let mut h = Harness::start(HarnessConfig {
        kpu_hour_price: Some("0.11 USD".parse().unwrap()),
        ..HarnessConfig::default()
    })
    .await;
    // The demo's load step needs about 9 KPUs; this budget allows 6.
    let key = h.add_scenario_budget(&harness::scenario("step-up"), "orders", "streaming");
    h.update_spec(&key, |spec| spec.max_kpus = Some(6));

    let mut seen: Vec<(String, String)> = Vec::new();
    for _ in 0..90 {
        h.step().await;
        if let Some(c) = h.status(&key).and_then(|s| s.condition(SCALING_LIMITED).cloned())
            && seen.last() != Some(&(c.status.clone(), c.reason.clone()))
        {
            seen.push((c.status, c.reason));
        }
    }
    assert!(
        seen.contains(&("True".into(), "MaxKpusReached".into())),
        "maxKpus never held the budget back: {seen:?}"
    );
    assert_eq!(
        seen.first(),
        Some(&("False".into(), "DesiredWithinRange".into())),
        "before the load step nothing binds: {seen:?}"
    );

    // One Event per transition into a limited state, none while it stays.
    let transitions: Vec<&str> = seen
        .iter()
        .filter(|(status, _)| status == "True")
        .map(|(_, reason)| reason.as_str())
        .collect();
    let limit_reasons = [
        "MaxKpusReached",
        "KpuQuotaReached",
        "ParallelismMaxReached",
        "PerKpuMinReached",
        "MaxParallelismReached",
        "ParallelismMinReached",
        "PerKpuMaxReached",
    ];
    let events: Vec<String> = h
        .events(&key)
        .into_iter()
        .filter(|n| limit_reasons.contains(&n.reason.as_str()))
        .map(|n| {
            assert!(n.note.contains("maxKpus 6"), "{}", n.note);
            n.reason
        })
        .collect();
    assert_eq!(events, transitions, "conditions seen: {seen:?}");

    // The status at the end: held at 6 KPUs, the message says what is wanted without it.
    let status = h.status(&key).expect("a status");
    let limited = status.condition(SCALING_LIMITED).unwrap();
    assert_eq!(
        (limited.status.as_str(), limited.reason.as_str()),
        ("True", "MaxKpusReached")
    );
    assert!(
        limited.message.contains("without it the policy would recommend"),
        "{}",
        limited.message
    );
    let recommendation = status.recommendation.as_ref().unwrap();
    assert!(recommendation.kpus <= 6);
    let cost = recommendation.cost.as_ref().expect("priced");
    let running = status.application.as_ref().unwrap();
    assert_eq!(cost.current.billed_kpus, running.kpus + ORCHESTRATION_KPUS);
    assert_eq!(
        cost.recommended.kpu_hours_per_month,
        u64::from(recommendation.kpus + ORCHESTRATION_KPUS) * u64::from(HOURS_PER_MONTH)
    );
    let price = cost.recommended.price_per_month.as_deref().unwrap();
    assert_eq!(
        price,
        format!("{:.2}", cost.recommended.kpu_hours_per_month as f64 * 0.11)
    );
    assert_eq!(cost.kpu_hour_price.as_deref(), Some("0.11 USD"));
    assert!(cost.summary.contains("USD"), "{}", cost.summary);

    // Every `kubectl get ckb -o wide` column has a value.
    let managed = h.budgets().iter().find(|m| m.key == key).unwrap();
    let mut object = serde_json::to_value(&managed.budget).unwrap();
    object["status"] = serde_json::to_value(&status).unwrap();
    for (name, path, _) in columns() {
        // The error budget's columns stay empty without `objectives.target`.
        if path.starts_with(".status.errorBudget") && object["spec"]["objectives"]["target"].is_null() {
            continue;
        }
        let value = json_path(&object, &path).unwrap_or_else(|| panic!("column {name}: {path} is empty"));
        assert!(
            !value.is_null() && value != "",
            "column {name}: {path} is {value}"
        );
    }
    assert_eq!(
        json_path(&object, ".status.recommendation.summary").unwrap(),
        &Value::from(format!(
            "{} at {}/KPU ({} KPU)",
            recommendation.parallelism, recommendation.parallelism_per_kpu, recommendation.kpus
        ))
    );

    // Paused: nothing is recommended, so nothing is limited (and no Event says otherwise).
    let before = h.events(&key).len();
    h.update_spec(&key, |spec| spec.mode = checkpoint_autoscaler::crd::Mode::Paused);
    h.step().await;
    let status = h.status(&key).unwrap();
    let limited = status.condition(SCALING_LIMITED).unwrap();
    assert_eq!(
        (limited.status.as_str(), limited.reason.as_str()),
        ("Unknown", "Paused")
    );
    assert!(status.recommendation.is_none());
    assert!(
        h.events(&key)[before..]
            .iter()
            .all(|n| !limit_reasons.contains(&n.reason.as_str())),
        "{:?}",
        h.events(&key)
    );
    h.shutdown().await;
}
