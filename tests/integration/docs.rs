//! The documentation and examples that are derived from the code stay in step with it:
//! `docs/reference.md` is generated from the CRD schema, `docs/flags.md` from the command
//! line's definition, every relative link of the README and docs/ resolves, and
//! `examples/iam-policy.json` (and its variant for tag tenancy,
//! `examples/iam-policy-tag-tenancy.json`) grants exactly the AWS operations the controller
//! calls.
//!
//! Regenerate the generated documents with
//! `UPDATE_DOCS=1 cargo test --test integration docs::`.

use std::{
    collections::BTreeSet,
    fmt::Write as _,
    path::{Path, PathBuf},
};

use checkpoint_autoscaler::{
    aws::AwsOperation,
    crd::{CheckpointBudget, DURATION_PATTERN, QUANTITY_PATTERN, admission},
};
use kube::CustomResourceExt;
use serde_json::Value;

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// Compares a generated document with the committed one, or rewrites it with `UPDATE_DOCS`.
fn check_generated(path: &str, generated: &str) {
    let file = repo(path);
    if std::env::var_os("UPDATE_DOCS").is_some() {
        std::fs::write(&file, generated).unwrap();
        return;
    }
    let committed = std::fs::read_to_string(&file).unwrap_or_default();
    if committed != generated {
        let line = committed
            .lines()
            .zip(generated.lines())
            .position(|(a, b)| a != b)
            .map_or(
                committed.lines().count().min(generated.lines().count()) + 1,
                |i| i + 1,
            );
        panic!(
            "{path} is out of date (first difference at line {line}); regenerate it with \
             `UPDATE_DOCS=1 cargo test --test integration docs::`"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// docs/reference.md from the CRD

/// Collapses a schema description (doc comments, wrapped) into one line.
fn cell(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn code(text: &str) -> String {
    format!("`{text}`")
}

/// Escapes a table cell: GitHub ends a cell at `|` even inside a code span.
fn esc(text: &str) -> String {
    text.replace('|', "\\|")
}

/// A whole number as people write it: schemars emits integer bounds as floats (`1.0`).
fn number(v: &Value) -> String {
    match v.as_f64() {
        Some(f) if f.fract() == 0.0 && f.abs() < 1e15 => format!("{}", f as i64),
        _ => v.to_string(),
    }
}

/// The schema's pattern, unless it is one of the CRD's well-known ones (named by the type).
fn own_pattern(schema: &Value) -> Option<&str> {
    schema
        .get("pattern")
        .and_then(Value::as_str)
        .filter(|p| *p != DURATION_PATTERN && *p != QUANTITY_PATTERN)
}

fn type_name(schema: &Value) -> String {
    match schema.get("pattern").and_then(Value::as_str) {
        Some(DURATION_PATTERN) => return "duration (`90s`, `2m`, `1h30m`)".into(),
        Some(QUANTITY_PATTERN) => return "quantity (`512Mi`, `8Gi`, or bytes)".into(),
        _ => {}
    }
    if schema.get("x-kubernetes-int-or-string").and_then(Value::as_bool) == Some(true) {
        return "integer or string".into();
    }
    match schema.get("type").and_then(Value::as_str) {
        Some("array") => {
            let item = schema.get("items").map_or_else(|| "any".to_string(), type_name);
            match schema.get("x-kubernetes-list-type").and_then(Value::as_str) {
                Some("map") => {
                    let keys: Vec<&str> = schema
                        .get("x-kubernetes-list-map-keys")
                        .and_then(Value::as_array)
                        .map(|k| k.iter().filter_map(Value::as_str).collect())
                        .unwrap_or_default();
                    format!("list of {item}, keyed by {}", keys.join(", "))
                }
                _ => format!("list of {item}"),
            }
        }
        Some("string") => match schema.get("format").and_then(Value::as_str) {
            Some("date-time") => "string (timestamp)".into(),
            _ => "string".into(),
        },
        Some(t) => t.into(),
        None => "any".into(),
    }
}

/// Bounds a reader must respect: ranges, lengths, enums, patterns and CEL rules on the field.
fn bounds(path: &str, schema: &Value) -> String {
    let mut out = Vec::new();
    let unsigned = schema
        .get("format")
        .and_then(Value::as_str)
        .is_some_and(|f| f.starts_with("uint"));
    match (schema.get("minimum"), schema.get("maximum")) {
        (Some(min), Some(max)) => out.push(format!("{}..{}", number(min), number(max))),
        // `>= 0` says nothing for an unsigned integer.
        (Some(min), None) if !(unsigned && min.as_f64() == Some(0.0)) => {
            out.push(format!(">= {}", number(min)))
        }
        (None, Some(max)) => out.push(format!("<= {}", number(max))),
        _ => {}
    }
    match (schema.get("minLength"), schema.get("maxLength")) {
        (Some(min), Some(max)) => out.push(format!("length {}..{}", number(min), number(max))),
        (None, Some(max)) => out.push(format!("length <= {}", number(max))),
        (Some(min), None) => out.push(format!("length >= {}", number(min))),
        _ => {}
    }
    if let Some(values) = schema.get("enum").and_then(Value::as_array) {
        let values: Vec<String> = values
            .iter()
            .map(|v| code(v.as_str().map_or_else(|| v.to_string(), str::to_owned).as_str()))
            .collect();
        out.push(format!("one of {}", values.join(", ")));
    }
    if let Some(pattern) = own_pattern(schema) {
        out.push(format!("pattern {}", code(pattern)));
    }
    // An object's own rules are listed with its fields, in its section.
    if properties(schema).is_empty() {
        out.extend(rules(path, schema));
    }
    out.join("; ")
}

/// The CEL rules of a schema node, each as its message (a computed message names the
/// offending values, so the rule itself is shown) and the field it is reported on.
fn rules(path: &str, schema: &Value) -> Vec<String> {
    schema
        .get("x-kubernetes-validations")
        .and_then(Value::as_array)
        .map(|rules| {
            rules
                .iter()
                .map(|r| {
                    let rule = r.get("rule").and_then(Value::as_str).unwrap_or_default();
                    let mut text = match r.get("message").and_then(Value::as_str) {
                        Some(message) => format!("{} (CEL {})", cell(message), code(rule)),
                        None => format!("CEL {}", code(rule)),
                    };
                    if let Some(field) = r.get("fieldPath").and_then(Value::as_str) {
                        write!(text, ", reported on `{path}{field}`").unwrap();
                    }
                    text
                })
                .collect()
        })
        .unwrap_or_default()
}

fn default_value(schema: &Value) -> String {
    match schema.get("default") {
        None => String::new(),
        Some(Value::String(s)) => code(s),
        Some(v) => code(&v.to_string()),
    }
}

fn properties(schema: &Value) -> Vec<(&String, &Value)> {
    schema
        .get("properties")
        .and_then(Value::as_object)
        .map(|p| p.iter().collect())
        .unwrap_or_default()
}

/// One table per object, depth first: the object's own fields, then its nested objects.
fn object_tables(out: &mut String, path: &str, schema: &Value) {
    let props = properties(schema);
    if props.is_empty() {
        return;
    }
    let required: BTreeSet<&str> = schema
        .get("required")
        .and_then(Value::as_array)
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    writeln!(out, "### `{path}`\n").unwrap();
    if let Some(description) = schema.get("description").and_then(Value::as_str) {
        writeln!(out, "{}\n", cell(description)).unwrap();
    }
    let object_rules = rules(path, schema);
    if !object_rules.is_empty() {
        writeln!(
            out,
            "Rules across these fields (CEL, checked by the API server):\n"
        )
        .unwrap();
        for rule in &object_rules {
            writeln!(out, "- {rule}").unwrap();
        }
        writeln!(out).unwrap();
    }
    writeln!(out, "| Field | Type | Default | Bounds | Description |").unwrap();
    writeln!(out, "|---|---|---|---|---|").unwrap();
    let mut nested = Vec::new();
    for (name, child) in &props {
        let child_path = format!("{path}.{name}");
        let mut kind = type_name(child);
        if required.contains(name.as_str()) {
            kind.push_str(", required");
        }
        let description = child
            .get("description")
            .and_then(Value::as_str)
            .map(cell)
            .unwrap_or_default();
        writeln!(
            out,
            "| `{child_path}` | {kind} | {} | {} | {} |",
            esc(&default_value(child)),
            esc(&bounds(&child_path, child)),
            esc(&description)
        )
        .unwrap();
        if !properties(child).is_empty() {
            nested.push((child_path, *child));
        } else if let Some(items) = child.get("items")
            && !properties(items).is_empty()
        {
            nested.push((format!("{child_path}[]"), items));
        }
    }
    writeln!(out).unwrap();
    for (child_path, child) in nested {
        object_tables(out, &child_path, child);
    }
}

fn reference_markdown(crd: &Value) -> String {
    let spec = &crd["spec"];
    let version = &spec["versions"][0];
    let root = &version["schema"]["openAPIV3Schema"];
    let group = spec["group"].as_str().unwrap_or_default();
    let kind = spec["names"]["kind"].as_str().unwrap_or_default();
    let short: Vec<&str> = spec["names"]["shortNames"]
        .as_array()
        .map(|s| s.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let mut out = String::new();
    writeln!(out, "# {kind} reference\n").unwrap();
    writeln!(
        out,
        "<!-- Generated from the CRD schema by tests/integration/docs.rs: do not edit by hand.\n     \
         Regenerate with `UPDATE_DOCS=1 cargo test --test integration docs::`. -->\n"
    )
    .unwrap();
    writeln!(
        out,
        "`apiVersion: {group}/{}`, `kind: {kind}`, {} (plural `{}`, short name{} {}), with a `status` \
         subresource. Print the CRD with `checkpoint-autoscaler crd`; check manifests against it with \
         `checkpoint-autoscaler validate` ([gitops.md](gitops.md)).\n",
        version["name"].as_str().unwrap_or_default(),
        spec["scope"].as_str().unwrap_or_default().to_lowercase(),
        spec["names"]["plural"].as_str().unwrap_or_default(),
        if short.len() == 1 { "" } else { "s" },
        short.iter().map(|s| code(s)).collect::<Vec<_>>().join(", "),
    )
    .unwrap();
    writeln!(
        out,
        "Durations are written like `90s`, `2m` or `1h30m` (pattern `{DURATION_PATTERN}`); sizes as \
         Kubernetes quantities such as `512Mi` or `8Gi`, or a number of bytes (pattern \
         `{QUANTITY_PATTERN}`). Bounds are enforced by the API server at apply time: a budget \
         outside them is rejected, never silently corrected.\n"
    )
    .unwrap();
    if let Some(columns) = version["additionalPrinterColumns"].as_array() {
        writeln!(out, "## `kubectl get ckb` columns\n").unwrap();
        writeln!(
            out,
            "`kubectl get ckb` shows the columns of priority 0; `kubectl get ckb -o wide` all of them.\n"
        )
        .unwrap();
        writeln!(out, "| Column | Type | From | Shown | Description |").unwrap();
        writeln!(out, "|---|---|---|---|---|").unwrap();
        for c in columns {
            writeln!(
                out,
                "| {} | {} | {} | {} | {} |",
                c["name"].as_str().unwrap_or_default(),
                c["type"].as_str().unwrap_or_default(),
                esc(&code(c["jsonPath"].as_str().unwrap_or_default())),
                if c["priority"].as_i64().unwrap_or(0) == 0 {
                    "always"
                } else {
                    "`-o wide`"
                },
                esc(&c["description"].as_str().map(cell).unwrap_or_default()),
            )
            .unwrap();
        }
        writeln!(out).unwrap();
    }
    writeln!(out, "## spec\n").unwrap();
    writeln!(out, "What you declare.\n").unwrap();
    object_tables(&mut out, "spec", &root["properties"]["spec"]);
    writeln!(out, "## status\n").unwrap();
    writeln!(
        out,
        "What the controller observed, concluded and did; written by the controller only (server-side \
         apply on the status subresource). See the README for how to read it and \
         [troubleshooting.md](troubleshooting.md) for the condition reasons.\n"
    )
    .unwrap();
    object_tables(&mut out, "status", &root["properties"]["status"]);
    let reports = admission::check_all(crd).unwrap();
    writeln!(out, "## Kubernetes versions\n").unwrap();
    writeln!(
        out,
        "What each Kubernetes API server makes of this CRD, from its own source (the checks and the \
         sources they mirror: `crates/api/src/crd/admission`; print this with `checkpoint-autoscaler crd --admission`). \
         An API server refuses a CRD whose rules it estimates above its cost budgets, whatever they cost \
         when they run.\n"
    )
    .unwrap();
    writeln!(out, "```text\n{}```\n", admission::render(&reports)).unwrap();
    // One trailing newline, as editors save files.
    let trimmed = out.trim_end().len();
    out.truncate(trimmed);
    out.push('\n');
    out
}

#[test]
fn reference_is_generated_from_the_crd() {
    let crd = serde_json::to_value(CheckpointBudget::crd()).unwrap();
    let markdown = reference_markdown(&crd);
    // Every field of the schema has a row, so nothing is left undocumented.
    fn paths(prefix: &str, schema: &Value, out: &mut Vec<String>) {
        for (name, child) in properties(schema) {
            let path = format!("{prefix}.{name}");
            paths(&path, child, out);
            if let Some(items) = child.get("items") {
                paths(&format!("{path}[]"), items, out);
            }
            out.push(path);
        }
    }
    let mut all = Vec::new();
    let root = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"];
    paths("spec", &root["spec"], &mut all);
    paths("status", &root["status"], &mut all);
    assert!(all.len() > 20, "{all:?}");
    for path in &all {
        assert!(
            markdown.contains(&format!("| `{path}` |")),
            "{path} missing from the reference"
        );
    }
    check_generated("docs/reference.md", &markdown);
}

/// The header `kubectl get ckb` prints (with `-o wide`: every column, else priority 0 only).
fn kubectl_header(wide: bool) -> Vec<String> {
    let crd = serde_json::to_value(CheckpointBudget::crd()).unwrap();
    let columns = crd["spec"]["versions"][0]["additionalPrinterColumns"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| wide || c["priority"].as_i64().unwrap_or(0) == 0)
        .map(|c| c["name"].as_str().unwrap().to_uppercase());
    std::iter::once("NAME".to_owned()).chain(columns).collect()
}

/// Every `$ kubectl get ckb` example in the README and docs/ prints the columns the CRD
/// declares, in order, and each row has a cell for each.
#[test]
fn kubectl_get_examples_show_the_crds_columns() {
    let mut files = vec![repo("README.md")];
    for entry in std::fs::read_dir(repo("docs")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "md") {
            files.push(path);
        }
    }
    let mut examples = 0;
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            let Some(command) = line.strip_prefix("$ kubectl get ckb") else {
                continue;
            };
            let wide = command.contains("-o wide");
            // Other output formats (`-o jsonpath=...`, `-o yaml`) print no table.
            if command.contains("-o ") && !wide {
                continue;
            }
            let split = |l: &str| -> Vec<String> {
                l.split("  ")
                    .map(str::trim)
                    .filter(|c| !c.is_empty())
                    .map(str::to_owned)
                    .collect()
            };
            let header = split(lines[i + 1]);
            assert_eq!(
                header,
                kubectl_header(wide),
                "{}:{}: the example's header is not the CRD's printer columns",
                file.display(),
                i + 2
            );
            for (j, row) in lines[i + 2..]
                .iter()
                .take_while(|l| !l.starts_with("```"))
                .enumerate()
            {
                assert_eq!(
                    split(row).len(),
                    header.len(),
                    "{}:{}: a row without a cell per column",
                    file.display(),
                    i + 3 + j
                );
            }
            examples += 1;
        }
    }
    assert!(examples >= 1, "no `$ kubectl get ckb` example found");
}

// ---------------------------------------------------------------------------------------------
// examples/iam-policy.json grants what the controller calls, and nothing more

/// The IAM action each operation the controller calls needs, `None` for one that needs no
/// permission: STS `GetCallerIdentity` ("No permissions are required to perform this
/// operation", even under an explicit deny: AWS STS API reference), so the policies do not
/// grant it. JSON has no comments, so the note lives here and in docs/operations.md.
fn iam_action(operation: AwsOperation) -> Option<String> {
    let prefix = match operation.service() {
        "kinesisanalyticsv2" => "kinesisanalytics",
        "cloudwatch" => "cloudwatch",
        "sts" if operation == AwsOperation::GetCallerIdentity => return None,
        other => panic!("no IAM prefix known for {other}"),
    };
    Some(format!("{prefix}:{}", operation.name()))
}

fn strings(v: &Value) -> Vec<String> {
    match v {
        Value::String(s) => vec![s.clone()],
        Value::Array(a) => a.iter().filter_map(Value::as_str).map(str::to_owned).collect(),
        _ => Vec::new(),
    }
}

/// The actions `policy` grants, checked statement by statement: no wildcard action,
/// Managed Flink actions scoped to application ARNs, CloudWatch's on `*` (it has no
/// resource-level permissions), STS only `AssumeRole` on roles. Returns each granted
/// action with the statement's `Condition` (`Null` when it has none).
fn granted_actions(path: &str) -> Vec<(String, Value)> {
    let text = std::fs::read_to_string(repo(path)).unwrap();
    let policy: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(policy["Version"], "2012-10-17", "{path}");
    let mut granted = Vec::new();
    for statement in policy["Statement"].as_array().unwrap() {
        assert_eq!(statement["Effect"], "Allow", "{path}");
        let resources = strings(&statement["Resource"]);
        for action in strings(&statement["Action"]) {
            assert!(!action.contains('*'), "{path}: wildcard action {action}");
            match action.split_once(':').map(|(service, _)| service) {
                // Scoped to applications, never `*`.
                Some("kinesisanalytics") => assert!(
                    resources
                        .iter()
                        .all(|r| r.starts_with("arn:aws:kinesisanalytics:") && r.contains(":application/")),
                    "{path}: {action} must be scoped to application ARNs: {resources:?}"
                ),
                // GetMetricData has no resource-level permissions.
                Some("cloudwatch") => assert_eq!(resources, ["*"], "{path}"),
                // Only the roles budgets name in spec.application.roleArn.
                Some("sts") => {
                    assert_eq!(action, "sts:AssumeRole", "{path}");
                    assert!(
                        resources
                            .iter()
                            .all(|r| r.starts_with("arn:aws:iam::") && r.contains(":role/")),
                        "{path}"
                    );
                }
                _ => panic!("{path}: unexpected action {action}"),
            }
            granted.push((action, statement["Condition"].clone()));
        }
    }
    granted
}

/// What the controller calls, as IAM actions. STS `AssumeRole` is made by the SDK's
/// credentials provider for budgets with a roleArn; `GetCallerIdentity` needs none.
fn called_actions() -> BTreeSet<String> {
    let mut called: BTreeSet<String> = AwsOperation::ALL.into_iter().filter_map(iam_action).collect();
    called.insert("sts:AssumeRole".into());
    called
}

#[test]
fn iam_policy_grants_exactly_the_operations_called() {
    let granted = granted_actions("examples/iam-policy.json");
    assert!(granted.iter().all(|(_, condition)| condition.is_null()));
    let granted: BTreeSet<String> = granted.into_iter().map(|(action, _)| action).collect();
    assert_eq!(granted, called_actions());

    let trust: Value =
        serde_json::from_str(&std::fs::read_to_string(repo("examples/iam-trust-policy-irsa.json")).unwrap())
            .unwrap();
    let statement = &trust["Statement"][0];
    assert_eq!(statement["Action"], "sts:AssumeRoleWithWebIdentity");
    let conditions = statement["Condition"]["StringEquals"].as_object().unwrap();
    let sub = conditions
        .iter()
        .find(|(k, _)| k.ends_with(":sub"))
        .map(|(_, v)| v.as_str().unwrap());
    // The chart's defaults: release and namespace `checkpoint-autoscaler`.
    assert_eq!(
        sub,
        Some("system:serviceaccount:checkpoint-autoscaler:checkpoint-autoscaler")
    );
    assert!(
        conditions
            .iter()
            .any(|(k, v)| k.ends_with(":aud") && v == "sts.amazonaws.com")
    );
}

/// The variant for `--tenancy tag`: the same actions, with `UpdateApplication` granted only
/// on applications that carry the namespace tag (`aws:ResourceTag/<key>`, which the
/// application resource type of Managed Service for Apache Flink supports), so IAM refuses a
/// write to an untagged application even if the controller's own check were bypassed.
#[test]
fn the_tag_tenancy_iam_policy_scales_only_tagged_applications() {
    use checkpoint_autoscaler::controller::tenancy::NAMESPACE_TAG;
    let path = "examples/iam-policy-tag-tenancy.json";
    let granted = granted_actions(path);
    let actions: BTreeSet<String> = granted.iter().map(|(action, _)| action.clone()).collect();
    assert_eq!(
        actions,
        called_actions(),
        "{path} grants what the controller calls"
    );
    let key = format!("aws:ResourceTag/{NAMESPACE_TAG}");
    for (action, condition) in &granted {
        if action == "kinesisanalytics:UpdateApplication" {
            assert_eq!(
                condition,
                &serde_json::json!({ "Null": { key.as_str(): "false" } }),
                "{path}: UpdateApplication only where the tag is present"
            );
        } else {
            assert!(condition.is_null(), "{path}: {action} needs no condition");
        }
    }
    // Everything else is the same as the base policy.
    let base = std::fs::read_to_string(repo("examples/iam-policy.json")).unwrap();
    let variant = std::fs::read_to_string(repo(path)).unwrap();
    let resources = |text: &str| -> BTreeSet<String> {
        let policy: Value = serde_json::from_str(text).unwrap();
        policy["Statement"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|s| strings(&s["Resource"]))
            .collect()
    };
    assert_eq!(resources(&base), resources(&variant));
}

// ---------------------------------------------------------------------------------------------
// The GitOps budgets pass `checkpoint-autoscaler validate`

#[test]
fn gitops_budgets_validate() {
    let validator = checkpoint_autoscaler::validate::BudgetValidator::new().unwrap();
    let report = validator.validate_paths(&[repo("examples/gitops/budgets")]);
    let problems: Vec<String> = report
        .documents
        .iter()
        .flat_map(|d| {
            d.problems
                .iter()
                .map(move |p| format!("{}: {p}", d.file.display()))
        })
        .collect();
    assert!(report.is_valid(), "{problems:#?}");
    let mut names: Vec<&str> = report
        .documents
        .iter()
        .filter_map(|d| d.name.as_deref())
        .collect();
    names.sort_unstable();
    assert_eq!(
        names,
        [
            "clickstream-sessions",
            "orders-enrichment",
            "payments-fraud-scoring"
        ]
    );
    // The Namespace next to them is skipped, not failed.
    assert_eq!(report.skipped, 1);
}

// ---------------------------------------------------------------------------------------------
// docs/metrics.md lists every registered metric, and only those

/// A stand-in for the AWS clients' counters, so the collector's families are encoded too.
struct SomeCalls;

impl checkpoint_autoscaler::metrics::AwsCallSource for SomeCalls {
    fn calls(&self) -> Vec<(checkpoint_autoscaler::metrics::AwsCallLabels, u64)> {
        vec![(
            checkpoint_autoscaler::metrics::AwsCallLabels {
                service: "cloudwatch".into(),
                operation: "GetMetricData".into(),
            },
            1,
        )]
    }

    fn metrics_requested(&self) -> u64 {
        1
    }
}

/// A budget with every figure of its status filled, as the controller writes it.
struct SomeBudgets;

impl checkpoint_autoscaler::metrics::BudgetSource for SomeBudgets {
    fn budgets(&self) -> Vec<std::sync::Arc<CheckpointBudget>> {
        use checkpoint_autoscaler::crd::{CheckpointBudgetSpec, CheckpointBudgetStatus};
        let status: CheckpointBudgetStatus = serde_json::from_value(serde_json::json!({
            "conditions": [{"type": "Ready", "status": "True", "reason": "ApplicationObserved",
                            "message": "", "lastTransitionTime": "2026-01-05T08:00:00Z"}],
            "application": {"status": "RUNNING", "versionId": 3, "parallelism": 8,
                            "parallelismPerKpu": 2, "kpus": 4, "serviceAutoScaling": false,
                            "observedAt": "2026-01-05T08:00:00Z"},
            "checkpoints": {"lastDurationMs": 41000, "maxDurationMs": 52000, "failed": 0,
                            "samples": 10, "budget": "90s", "window": "10m"},
            "recommendation": {"parallelism": 8, "parallelismPerKpu": 2, "kpus": 4,
                               "action": "Hold", "reason": "WithinBudget", "message": ""}
        }))
        .unwrap();
        let spec = CheckpointBudgetSpec::new("orders", std::time::Duration::from_secs(90), 1, 8, 128);
        let mut budget = CheckpointBudget::new("orders", spec);
        budget.metadata.namespace = Some("streaming".into());
        budget.status = Some(status);
        vec![std::sync::Arc::new(budget)]
    }
}

/// The names a Prometheus user queries: counters with `_total`, the rest as declared.
fn exposed_metrics(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter_map(|line| line.strip_prefix("# TYPE "))
        .filter_map(|rest| rest.split_once(' '))
        .map(|(name, kind)| match kind {
            "counter" => format!("{name}_total"),
            _ => name.to_owned(),
        })
        .collect()
}

#[test]
fn metrics_doc_lists_every_metric() {
    use checkpoint_autoscaler::{aws::AwsError, controller::Error};

    let metrics = checkpoint_autoscaler::metrics::Metrics::default();
    metrics.set_aws_source(std::sync::Arc::new(SomeCalls));
    metrics.set_budget_source(std::sync::Arc::new(SomeBudgets));
    // NB: a labelled family is encoded only once it has a child; give each one.
    metrics.decision("hold", "WithinBudget");
    metrics.scaling("started");
    metrics.reconcile.set_failure("ns/budget", "aws_throttled");
    drop(metrics.reconcile.count_and_measure());
    let exposed = exposed_metrics(&metrics.encode().unwrap());
    assert!(exposed.len() >= 5, "{exposed:?}");

    let doc = std::fs::read_to_string(repo("docs/metrics.md")).unwrap();
    let documented: BTreeSet<String> = doc
        .lines()
        .filter_map(|line| line.strip_prefix("| `checkpoint_autoscaler_"))
        .filter_map(|rest| rest.split_once('`'))
        .map(|(name, _)| format!("checkpoint_autoscaler_{name}"))
        .collect();
    assert_eq!(
        documented, exposed,
        "docs/metrics.md must list exactly the registered metrics"
    );

    // Every failure label the controller can produce has a row in the `error` table. The
    // exhaustive matches make a new error variant a compile error here, so it gets a row.
    fn every_aws_error_is_listed(e: &AwsError) {
        match e {
            AwsError::NotFound(_)
            | AwsError::AccessDenied(_)
            | AwsError::Throttled(_)
            | AwsError::ConcurrentModification(_)
            | AwsError::ResourceInUse(_)
            | AwsError::LimitExceeded(_)
            | AwsError::InvalidArgument(_)
            | AwsError::Transient(_)
            | AwsError::Credentials(_)
            | AwsError::UnexpectedResponse(_)
            | AwsError::Other(_) => {}
        }
    }
    fn every_error_is_listed(e: &Error) {
        match e {
            Error::InvalidSpec(_)
            | Error::Forbidden(_)
            | Error::Conflict(_)
            | Error::MissingNamespace
            | Error::Fenced(_) => {}
            Error::Aws(aws) => every_aws_error_is_listed(aws),
            // Not constructible here; its label `status_write` is checked below by name.
            Error::Store(_) => {}
        }
    }
    assert!(
        doc.contains("| `status_write` |"),
        "error label status_write is not in docs/metrics.md"
    );
    let aws = [
        AwsError::NotFound(String::new()),
        AwsError::AccessDenied(String::new()),
        AwsError::Throttled(String::new()),
        AwsError::ConcurrentModification(String::new()),
        AwsError::ResourceInUse(String::new()),
        AwsError::LimitExceeded(String::new()),
        AwsError::InvalidArgument(String::new()),
        AwsError::Transient(String::new()),
        AwsError::Credentials(String::new()),
        AwsError::UnexpectedResponse(String::new()),
        AwsError::Other(String::new()),
    ];
    let errors = aws.into_iter().map(Error::Aws).chain([
        Error::InvalidSpec(String::new()),
        Error::Forbidden(String::new()),
        Error::Conflict(String::new()),
        Error::MissingNamespace,
        Error::Fenced(checkpoint_autoscaler::controller::fence::Fenced(String::new())),
    ]);
    for error in errors {
        every_error_is_listed(&error);
        let label = error.metric_label();
        assert!(
            doc.lines()
                .any(|l| l.starts_with(&format!("| `{label}`")) || l.contains(&format!(", `{label}`"))),
            "error label {label} is not in docs/metrics.md"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// docs/troubleshooting.md describes every cause, decision reason, condition and Event reason

/// The variants of `pub enum NAME` in a Rust source file (one per line, `Name,`).
fn enum_variants(source: &str, name: &str) -> Vec<String> {
    let start = source
        .find(&format!("pub enum {name} {{"))
        .unwrap_or_else(|| panic!("enum {name} not found"));
    let body = &source[start..];
    let body = &body[body.find('{').unwrap() + 1..body.find("\n}").unwrap()];
    body.lines()
        .map(str::trim)
        .filter(|l| !l.starts_with("//") && !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| l.strip_suffix(','))
        .map(|l| l.split(['(', ' ', '{']).next().unwrap_or_default().to_owned())
        .collect()
}

/// Every CamelCase string literal of a source file: the controller's condition reasons,
/// Event reasons and Event actions are literals in `reconcile.rs`.
fn camel_case_literals(source: &str) -> BTreeSet<String> {
    source
        .split('"')
        .skip(1)
        .step_by(2)
        .filter(|s| {
            s.len() > 1
                && s.starts_with(|c: char| c.is_ascii_uppercase())
                && s.chars().all(|c| c.is_ascii_alphanumeric())
                && s.chars().any(|c| c.is_ascii_lowercase())
        })
        .map(str::to_owned)
        .collect()
}

#[test]
fn troubleshooting_covers_every_cause_and_reason() {
    use checkpoint_autoscaler::policy::{Cause, Reason};

    let doc = std::fs::read_to_string(repo("docs/troubleshooting.md")).unwrap();
    let types = std::fs::read_to_string(repo("crates/policy/src/types.rs")).unwrap();

    // Causes: one section each, named as the status writes them.
    let causes = enum_variants(&types, "Cause");
    assert!(causes.len() >= 8, "{causes:?}");
    for cause in &causes {
        let parsed: Cause = serde_json::from_value(Value::String(cause.clone()))
            .unwrap_or_else(|e| panic!("{cause} is not how Cause serializes: {e}"));
        assert_eq!(
            serde_json::to_value(parsed).unwrap(),
            Value::String(cause.clone())
        );
        assert!(
            doc.contains(&format!("\n### {cause}")),
            "no section for the cause {cause}"
        );
    }

    // Decision reasons: a row each in the reasons table, spelt as `Reason::as_str`.
    let reasons = enum_variants(&types, "Reason");
    assert!(reasons.len() >= 10, "{reasons:?}");
    for reason in &reasons {
        let parsed: Reason = serde_json::from_value(Value::String(reason.clone()))
            .unwrap_or_else(|e| panic!("{reason} is not how Reason serializes: {e}"));
        let name = parsed.as_str();
        assert!(
            doc.contains(&format!("\n| `{name}` |")),
            "no row for the decision reason {name}"
        );
    }

    // The controller's own condition reasons, Event reasons and actions.
    let controller = [
        "crates/controller/src/reconcile.rs",
        "crates/controller/src/limited.rs",
    ]
    .map(|f| std::fs::read_to_string(repo(f)).unwrap())
    .join("\n");
    let literals = camel_case_literals(&controller);
    assert!(literals.len() >= 10, "{literals:?}");
    for literal in &literals {
        assert!(
            doc.contains(&format!("`{literal}`")),
            "crates/controller/src/{{reconcile,limited}}.rs use the reason or action {literal:?}, which \
             docs/troubleshooting.md does not describe"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// docs/operations.md names, for each guarantee, the tests that prove it: they must exist

/// The test names a document cites (`module::path::test_name` spans, and `test_*` Python
/// tests), each looked up where its module path says it is: returns how many were checked
/// and those not found.
fn cited_tests(text: &str) -> (usize, Vec<String>) {
    let spans: Vec<&str> = text.split('`').skip(1).step_by(2).collect();
    let is_name = |s: &str| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    };
    let mut checked = 0;
    let mut missing = Vec::new();
    for span in spans {
        if let Some(python) = span.strip_prefix("test_").map(|_| span) {
            if !is_name(python) {
                continue;
            }
            let defined = std::fs::read_dir(repo("tests/python"))
                .unwrap()
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|e| e == "py"))
                .any(|p| std::fs::read_to_string(p).is_ok_and(|t| t.contains(&format!("def {python}("))));
            if !defined {
                missing.push(span.to_owned());
            }
            checked += 1;
            continue;
        }
        let segments: Vec<&str> = span.split("::").collect();
        let Some((name, modules)) = segments.split_last() else {
            continue;
        };
        // Test names, not module paths: several words.
        if modules.is_empty() || !segments.iter().all(|s| is_name(s)) || name.matches('_').count() < 3 {
            continue;
        }
        // The module path names a file of a crate or of tests/integration/ (a module inside
        // it may follow: `aws::emulated::name` is in tests/integration/aws.rs).
        let modules: Vec<&str> = modules.iter().copied().filter(|m| *m != "tests").collect();
        let candidates: Vec<PathBuf> = (1..=modules.len())
            .flat_map(|n| {
                let mut files = vec![repo(&format!("tests/integration/{}.rs", modules[..n].join("/")))];
                for (root, path) in module_roots(&modules[..n]) {
                    files.push(repo(&format!("{root}/{path}.rs")));
                    files.push(repo(&format!("{root}/{path}/tests.rs")));
                    files.push(repo(&format!("{root}/{path}/mod.rs")));
                    if path.is_empty() {
                        files.push(repo(&format!("{root}/lib.rs")));
                        files.push(repo(&format!("{root}/tests.rs")));
                    }
                }
                files
            })
            .collect();
        let found = candidates.iter().any(|path| {
            std::fs::read_to_string(path).is_ok_and(|text| text.contains(&format!("fn {name}(")))
        });
        if !found {
            missing.push(span.to_owned());
        }
        checked += 1;
    }
    (checked, missing)
}

/// Where the module path `modules` (as the binary's crate re-exports it) has its source:
/// (a crate's source folder, the path inside it; empty for the crate's root).
fn module_roots(modules: &[&str]) -> Vec<(&'static str, String)> {
    // Crates whose root is the module (`policy` is checkpoint-autoscaler-policy).
    const CRATE_MODULES: [(&str, &str); 3] = [
        ("policy", "crates/policy/src"),
        ("aws", "crates/aws/src"),
        ("controller", "crates/controller/src"),
    ];
    // Crates whose modules keep their names.
    const SOURCE_ROOTS: [&str; 4] = [
        "src",
        "crates/api/src",
        "crates/controller/src",
        "crates/proving-ground/src",
    ];
    let mut out: Vec<(&'static str, String)> = SOURCE_ROOTS
        .iter()
        .map(|root| (*root, modules.join("/")))
        .collect();
    if let Some((_, root)) = CRATE_MODULES.iter().find(|(m, _)| *m == modules[0]) {
        out.push((root, modules[1..].join("/")));
    }
    out
}

#[test]
fn operations_doc_names_tests_that_exist() {
    let doc = std::fs::read_to_string(repo("docs/operations.md")).unwrap();
    let (checked, missing) = cited_tests(&doc);
    assert!(
        missing.is_empty(),
        "docs/operations.md names tests that do not exist: {missing:?}"
    );
    assert!(checked >= 20, "only {checked} tests named");
}

/// The README's Safety section states each guarantee in one line with the test that proves
/// it: every line names a test, and every test named exists.
#[test]
fn readme_safety_names_tests_that_exist() {
    let readme = std::fs::read_to_string(repo("README.md")).unwrap();
    let start = readme
        .find("\n## Safety\n")
        .expect("the README has a Safety section");
    let section = &readme[start + 1..];
    let section = &section[..section[1..].find("\n## ").map_or(section.len(), |i| i + 1)];
    let guarantees: Vec<&str> = section.lines().filter(|l| l.starts_with("- ")).collect();
    assert!(
        guarantees.len() >= 10,
        "only {} guarantees: {section}",
        guarantees.len()
    );
    for line in &guarantees {
        let (checked, missing) = cited_tests(line);
        assert!(checked >= 1, "README Safety: no test named for {line:?}");
        assert!(
            missing.is_empty(),
            "README Safety names tests that do not exist: {missing:?}"
        );
    }
}

/// The README is a README: it opens with the two commands (the demo and the tests), whose
/// script exists, and stays short; the manual is in docs/.
#[test]
fn readme_opens_with_the_two_commands_and_stays_short() {
    let readme = std::fs::read_to_string(repo("README.md")).unwrap();
    let lines: Vec<&str> = readme.lines().collect();
    assert!(
        lines.len() <= 200,
        "README.md has {} lines; move detail to docs/",
        lines.len()
    );
    let first_block: Vec<&str> = lines
        .iter()
        .skip_while(|l| !l.starts_with("```"))
        .skip(1)
        .take_while(|l| !l.starts_with("```"))
        .copied()
        .collect();
    let commands: Vec<&str> = first_block
        .iter()
        .map(|l| l.split('#').next().unwrap_or_default().trim())
        .collect();
    assert_eq!(commands, ["cargo run -- demo", "./scripts/test.sh"]);
    assert!(
        lines.iter().position(|l| l.starts_with("```")) < lines.iter().position(|l| l.starts_with("## ")),
        "the commands come before the first section"
    );
    assert!(repo("scripts/test.sh").exists());
}

// ---------------------------------------------------------------------------------------------
// Every relative link of the README and docs/ reaches a file, and its anchor a heading

/// The lines of a Markdown document outside fenced code blocks.
fn prose_lines(text: &str) -> Vec<&str> {
    let mut fenced = false;
    text.lines()
        .filter(|line| {
            if line.trim_start().starts_with("```") {
                fenced = !fenced;
                return false;
            }
            !fenced
        })
        .collect()
}

/// The anchors GitHub gives a document's headings: the text without its Markdown, lower
/// case, punctuation dropped but `-` and `_`, spaces as `-`; a repeated one gets `-1`, `-2`...
fn anchors(text: &str) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    for line in prose_lines(text) {
        let Some(title) = line
            .strip_prefix('#')
            .map(|t| t.trim_start_matches('#'))
            .and_then(|t| t.strip_prefix(' '))
        else {
            continue;
        };
        let title = strip_links(title);
        let slug: String = title
            .trim()
            .chars()
            .filter_map(|c| match c {
                ' ' => Some('-'),
                '-' | '_' => Some(c),
                c if c.is_alphanumeric() => Some(c),
                _ => None,
            })
            .flat_map(char::to_lowercase)
            .collect();
        let mut anchor = slug.clone();
        let mut n = 0;
        while seen.contains(&anchor) {
            n += 1;
            anchor = format!("{slug}-{n}");
        }
        seen.insert(anchor);
    }
    seen
}

/// `[text](target)` becomes `text`.
fn strip_links(text: &str) -> String {
    links(text).iter().fold(text.to_owned(), |t, (label, target)| {
        t.replace(&format!("[{label}]({target})"), label)
    })
}

/// The `[text](target)` links of a line (images too), outside code spans.
fn links(line: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    // Code spans are the odd pieces between backticks; links live in the even ones.
    for (i, piece) in line.split('`').enumerate() {
        if i % 2 == 1 {
            continue;
        }
        let mut rest = piece;
        while let Some(open) = rest.find("](") {
            let label_start = rest[..open].rfind('[');
            let after = &rest[open + 2..];
            let Some(close) = after.find(')') else { break };
            if let Some(label_start) = label_start {
                out.push((rest[label_start + 1..open].to_owned(), after[..close].to_owned()));
            }
            rest = &after[close + 1..];
        }
    }
    // A link whose label is a code span (``[`values.yaml`](...)``) spans three pieces.
    let mut rest = line;
    while let Some(open) = rest.find("`](") {
        let after = &rest[open + 3..];
        let Some(close) = after.find(')') else { break };
        if let Some(label_start) = rest[..open].rfind("[`") {
            out.push((
                rest[label_start + 1..open + 1].to_owned(),
                after[..close].to_owned(),
            ));
        }
        rest = &after[close + 1..];
    }
    out
}

#[test]
fn relative_links_in_the_readme_and_docs_resolve() {
    let mut files = vec![repo("README.md"), repo("charts/checkpoint-autoscaler/README.md")];
    for entry in std::fs::read_dir(repo("docs")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "md") {
            files.push(path);
        }
    }
    let mut checked = 0;
    let mut broken = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        for line in prose_lines(&text) {
            for (_, target) in links(line) {
                if target.contains("://") || target.starts_with("mailto:") {
                    continue;
                }
                let (path, anchor) = target
                    .split_once('#')
                    .map_or((target.as_str(), None), |(p, a)| (p, Some(a)));
                let resolved = if path.is_empty() {
                    file.clone()
                } else {
                    file.parent().unwrap().join(path)
                };
                checked += 1;
                if !resolved.exists() {
                    broken.push(format!("{}: {target}: no such file", file.display()));
                    continue;
                }
                if let Some(anchor) = anchor {
                    let is_markdown = resolved.extension().is_some_and(|e| e == "md");
                    let headings = std::fs::read_to_string(&resolved)
                        .map(|t| anchors(&t))
                        .unwrap_or_default();
                    if !is_markdown || !headings.contains(anchor) {
                        broken.push(format!(
                            "{}: {target}: no heading with that anchor",
                            file.display()
                        ));
                    }
                }
            }
        }
    }
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
    assert!(checked >= 50, "only {checked} links found");
}

#[test]
fn heading_anchors_are_githubs() {
    let doc = "# Title\n## Tag tenancy (`--tenancy tag`, the default)\n```sh\n# not a heading\n```\n\
               ## Decision quality: `simulate --compare`\n## Safety\n## Safety\n";
    let anchors = anchors(doc);
    for expected in [
        "title",
        "tag-tenancy---tenancy-tag-the-default",
        "decision-quality-simulate---compare",
        "safety",
        "safety-1",
    ] {
        assert!(anchors.contains(expected), "{expected} not in {anchors:?}");
    }
    assert!(!anchors.contains("not-a-heading"));
    assert_eq!(
        links("see [a](design.md#y) and `[b](not-a-link)` or [`c`](../README.md)"),
        [
            ("a".to_owned(), "design.md#y".to_owned()),
            ("`c`".to_owned(), "../README.md".to_owned())
        ]
    );
}

// ---------------------------------------------------------------------------------------------
// docs/flags.md from the command line's definition (clap)

/// A flag as it is typed: `--name VALUE` (with its short form), or `NAME` for a positional.
fn flag_usage(arg: &clap::Arg) -> String {
    let takes_value = arg.get_num_args().is_some_and(|n| n.takes_values());
    let value = arg
        .get_value_names()
        .map(|names| {
            names
                .iter()
                .map(|n| n.as_str().to_owned())
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_else(|| arg.get_id().as_str().to_uppercase().replace('-', "_"));
    if arg.is_positional() {
        return if arg.is_required_set() {
            value
        } else {
            format!("[{value}]")
        };
    }
    let mut usage = String::new();
    if let Some(short) = arg.get_short() {
        write!(usage, "-{short}, ").unwrap();
    }
    match arg.get_long() {
        Some(long) => write!(usage, "--{long}").unwrap(),
        None => usage.truncate(usage.len().saturating_sub(2)),
    }
    if takes_value {
        write!(usage, " {value}").unwrap();
    }
    usage
}

/// What an argument is when it is not given: its default, `off` for a switch.
fn flag_default(arg: &clap::Arg) -> String {
    let takes_value = arg.get_num_args().is_some_and(|n| n.takes_values());
    if !takes_value {
        return "off".into();
    }
    let defaults: Vec<String> = arg
        .get_default_values()
        .iter()
        .map(|v| code(&v.to_string_lossy()))
        .collect();
    if arg.is_required_set() {
        "required".into()
    } else {
        defaults.join(", ")
    }
}

/// The help of an argument on one line, with its allowed values when clap knows them.
fn flag_help(arg: &clap::Arg) -> String {
    let help = arg
        .get_long_help()
        .or_else(|| arg.get_help())
        .map(|h| cell(&h.to_string()))
        .unwrap_or_default();
    let values: Vec<String> = arg
        .get_possible_values()
        .iter()
        .filter(|v| !v.is_hide_set())
        .map(|v| code(v.get_name()))
        .collect();
    let takes_value = arg.get_num_args().is_some_and(|n| n.takes_values());
    if takes_value && !values.is_empty() {
        let sep = if help.ends_with('.') || help.is_empty() {
            " "
        } else {
            ". "
        };
        format!("{help}{sep}One of {}.", values.join(", "))
            .trim_start()
            .to_owned()
    } else {
        help
    }
}

/// The subcommands, but clap's own `help`.
fn documented_subcommands(cli: &clap::Command) -> impl Iterator<Item = &clap::Command> {
    cli.get_subcommands()
        .filter(|s| !s.is_hide_set() && s.get_name() != "help")
}

/// The arguments a subcommand documents: not hidden, and not `--help` (every one has it).
fn documented_args(sub: &clap::Command) -> Vec<&clap::Arg> {
    sub.get_arguments()
        .filter(|a| !a.is_hide_set())
        .filter(|a| {
            !matches!(
                a.get_action(),
                clap::ArgAction::Help
                    | clap::ArgAction::HelpShort
                    | clap::ArgAction::HelpLong
                    | clap::ArgAction::Version
            )
        })
        .collect()
}

/// Prose for a Markdown cell: `<` and `>` outside code spans are escaped, so that
/// `<namespace>` is shown rather than taken for an HTML tag.
fn prose(text: &str) -> String {
    text.split('`')
        .enumerate()
        .map(|(i, piece)| {
            if i % 2 == 1 {
                piece.to_owned()
            } else {
                piece.replace('<', "&lt;").replace('>', "&gt;")
            }
        })
        .collect::<Vec<_>>()
        .join("`")
}

fn flags_markdown(cli: &clap::Command) -> String {
    let mut out = String::new();
    writeln!(out, "# Command-line flags\n").unwrap();
    writeln!(
        out,
        "<!-- Generated from the command line's definition (src/cli.rs and each subcommand's \
         arguments) by tests/integration/docs.rs: do not edit by hand.\n     \
         Regenerate with `UPDATE_DOCS=1 cargo test --test integration docs::`. -->\n"
    )
    .unwrap();
    writeln!(
        out,
        "Every subcommand of `{}` and its flags, as `--help` prints them. A flag with an \
         environment variable takes its value from it when the flag is not given. Durations \
         are written like `90s`, `2m` or `1h30m`. How to run the controller: \
         [operations.md](operations.md#run-the-controller).\n",
        cli.get_name()
    )
    .unwrap();
    writeln!(out, "| Subcommand | What it does |").unwrap();
    writeln!(out, "|---|---|").unwrap();
    for sub in documented_subcommands(cli) {
        let about = sub.get_about().map(|a| cell(&a.to_string())).unwrap_or_default();
        writeln!(out, "| [`{0}`](#{0}) | {1} |", sub.get_name(), esc(&about)).unwrap();
    }
    writeln!(out).unwrap();
    for sub in documented_subcommands(cli) {
        writeln!(out, "## {}\n", sub.get_name()).unwrap();
        if let Some(about) = sub.get_long_about().or_else(|| sub.get_about()) {
            writeln!(out, "{}\n", cell(&about.to_string())).unwrap();
        }
        let args = documented_args(sub);
        if args.is_empty() {
            writeln!(out, "No flags.\n").unwrap();
            continue;
        }
        writeln!(out, "| Flag | Environment | Default | Description |").unwrap();
        writeln!(out, "|---|---|---|---|").unwrap();
        for arg in args {
            let env = arg
                .get_env()
                .map(|e| code(&e.to_string_lossy()))
                .unwrap_or_default();
            writeln!(
                out,
                "| {} | {} | {} | {} |",
                esc(&code(&flag_usage(arg))),
                env,
                esc(&flag_default(arg)),
                esc(&prose(&flag_help(arg)))
            )
            .unwrap();
        }
        writeln!(out).unwrap();
    }
    let trimmed = out.trim_end().len();
    out.truncate(trimmed);
    out.push('\n');
    out
}

#[test]
fn flags_are_generated_from_the_command_line() {
    use clap::CommandFactory;
    let mut cli = checkpoint_autoscaler::cli::Cli::command();
    // Building settles what the derive left implicit (how many values a flag takes).
    cli.build();
    let markdown = flags_markdown(&cli);
    // Every flag of every subcommand has a row, with its environment variable.
    let mut rows = 0;
    for sub in documented_subcommands(&cli) {
        assert!(
            markdown.contains(&format!("\n## {}\n", sub.get_name())),
            "no section for {}",
            sub.get_name()
        );
        for arg in documented_args(sub) {
            let usage = esc(&code(&flag_usage(arg)));
            assert!(markdown.contains(&format!("| {usage} |")), "{usage} missing");
            if let Some(env) = arg.get_env() {
                assert!(markdown.contains(&code(&env.to_string_lossy())));
            }
            rows += 1;
        }
    }
    assert!(rows >= 30, "only {rows} flags");
    check_generated("docs/flags.md", &markdown);
    // `run` in particular: the flags an operator sets, with their defaults and variables.
    for row in [
        "| `--interval INTERVAL` |  | `1m` |",
        "| `--namespace NAMESPACE` | `WATCH_NAMESPACE` |  |",
        "| `--leader-election` |  | off |",
    ] {
        assert!(markdown.contains(row), "{row} missing from docs/flags.md");
    }
}
