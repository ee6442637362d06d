//! Inputs for property tests of everything that reads outside input: arbitrary JSON, and
//! mutations of valid documents (a field dropped, retyped, set to an edge value).
//!
//! Bounded for CI: 256 cases per property unless `PROPTEST_CASES` says otherwise.

use proptest::prelude::*;
use serde_json::{Value, json};

/// Cases per property: `PROPTEST_CASES`, else 256.
pub fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(256)
}

/// The application name the inputs favour (the emulator's tests create it).
const APP: &str = "orders";

/// Member names the decoders look for, so arbitrary objects reach past the first check.
const MEMBERS: &[&str] = &[
    "apiVersion",
    "kind",
    "metadata",
    "spec",
    "application",
    "region",
    "roleArn",
    "objectives",
    "maxCheckpointDuration",
    "maxCheckpointSize",
    "maxFailedCheckpoints",
    "window",
    "parallelism",
    "min",
    "max",
    "maxParallelism",
    "perKpu",
    "maxKpus",
    "behavior",
    "scaleUp",
    "scaleDown",
    "cooldown",
    "stabilizationWindow",
    "mode",
    "serviceAutoScaling",
    "namespaces",
    "applications",
    "roleArns",
    "load",
    "phases",
    "shape",
    "rate",
    "for",
    "keys",
    "recordsPerSecond",
    "ApplicationName",
    "CurrentApplicationVersionId",
    "ApplicationConfigurationUpdate",
    "FlinkApplicationConfigurationUpdate",
    "ParallelismConfigurationUpdate",
    "ConfigurationTypeUpdate",
    "ParallelismUpdate",
    "ParallelismPerKPUUpdate",
    "AutoScalingEnabledUpdate",
    "RunConfigurationUpdate",
    "ApplicationRestoreConfiguration",
    "ApplicationRestoreType",
    "SnapshotName",
    "OperationId",
    "Limit",
    "NextToken",
    "ResourceARN",
    "Tags",
    "Key",
    "Value",
    "TagKeys",
    "Force",
    "RuntimeEnvironment",
    "ServiceExecutionRole",
    "ApplicationConfiguration",
    "FlinkApplicationConfiguration",
    "ParallelismConfiguration",
    "Parallelism",
    "ParallelismPerKPU",
    "ConfigurationType",
    "ConditionalToken",
    "MetricDataQueries",
    "Id",
    "MetricStat",
    "Metric",
    "Namespace",
    "MetricName",
    "Dimensions",
    "Name",
    "Period",
    "Stat",
    "Statistics",
    "ExtendedStatistics",
    "StartTime",
    "EndTime",
    "Timestamp",
    "MetricData",
    "Values",
    "Counts",
    "StatisticValues",
    "Unit",
    "ScanBy",
    "MaxDatapoints",
    "Expression",
    "ReturnData",
    "seconds",
    "scenario",
    "name",
    "kind",
    "operation",
    "application",
    "count",
];

pub fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => proptest::sample::select(MEMBERS).prop_map(str::to_owned),
        1 => "[a-zA-Z]{0,12}",
    ]
}

pub fn number() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("JSON numbers are finite", |f| f.is_finite())
            .prop_map(Value::from),
        proptest::sample::select(vec![
            json!(0),
            json!(-1),
            json!(1),
            json!(i64::MAX),
            json!(i64::MIN),
            json!(u64::MAX),
            json!(1e308),
            json!(-1e308),
            json!(0.5),
            json!(4294967296_u64),
            json!(1e30),
        ]),
    ]
}

pub fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        ".{0,24}",
        proptest::sample::select(vec![
            APP.to_owned(),
            "arn:aws:kinesisanalytics:us-east-1:123456789012:application/orders".to_owned(),
            "AWS/KinesisAnalytics".to_owned(),
            "lastCheckpointDuration".to_owned(),
            "Application".to_owned(),
            "CUSTOM".to_owned(),
            "RESTORE_FROM_LATEST_SNAPSHOT".to_owned(),
            "p99".to_owned(),
            "p".to_owned(),
            "p1000".to_owned(),
            "TM(10%:90%)".to_owned(),
            "Average".to_owned(),
            "FLINK-1_20".to_owned(),
            "metrics-99999999999999999999".to_owned(),
            "x".repeat(100_000),
        ]),
    ]
}

/// Arbitrary JSON, biased towards the members and values the decoders read.
pub fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        number(),
        text().prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            proptest::collection::btree_map(key(), inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// One structural change to a valid body: at the `at`-th node (in document order, modulo
/// their number), replace the value, delete it, or wrap it in a list.
#[derive(Clone, Debug)]
pub enum Mutation {
    Replace(usize, Value),
    Delete(usize),
    Wrap(usize),
}

pub fn mutations() -> impl Strategy<Value = Vec<Mutation>> {
    proptest::collection::vec(
        prop_oneof![
            3 => (any::<usize>(), json_value()).prop_map(|(at, v)| Mutation::Replace(at, v)),
            1 => any::<usize>().prop_map(Mutation::Delete),
            1 => any::<usize>().prop_map(Mutation::Wrap),
        ],
        1..4,
    )
}

fn pointers(value: &Value, at: String, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                let p = format!("{at}/{}", k.replace('~', "~0").replace('/', "~1"));
                out.push(p.clone());
                pointers(v, p, out);
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                let p = format!("{at}/{i}");
                out.push(p.clone());
                pointers(v, p, out);
            }
        }
        _ => {}
    }
}

pub fn mutate(mut value: Value, mutations: &[Mutation]) -> Value {
    for m in mutations {
        let mut all = Vec::new();
        pointers(&value, String::new(), &mut all);
        if all.is_empty() {
            continue;
        }
        let pick = |at: &usize| all[at % all.len()].clone();
        match m {
            Mutation::Replace(at, v) => {
                if let Some(slot) = value.pointer_mut(&pick(at)) {
                    *slot = v.clone();
                }
            }
            Mutation::Wrap(at) => {
                if let Some(slot) = value.pointer_mut(&pick(at)) {
                    *slot = Value::Array(vec![slot.take()]);
                }
            }
            Mutation::Delete(at) => {
                let p = pick(at);
                let (parent, last) = p.rsplit_once('/').unwrap_or(("", &p));
                match value.pointer_mut(parent) {
                    Some(Value::Object(map)) => {
                        map.remove(&last.replace("~1", "/").replace("~0", "~"));
                    }
                    Some(Value::Array(items)) => {
                        if let Ok(i) = last.parse::<usize>()
                            && i < items.len()
                        {
                            items.remove(i);
                        }
                    }
                    _ => {}
                }
            }
        }
    }
    value
}
