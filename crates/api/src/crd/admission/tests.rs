//! The admission check against cases whose outcome the API server's source fixes: costs
//! worked out by hand from cel-go's and Kubernetes' estimators, and the refusals they lead to.

use kube::CustomResourceExt;
use serde_json::{Value, json};

use super::*;

/// A one-version CRD around `schema` (the `openAPIV3Schema`).
fn crd(schema: Value) -> Value {
    json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "things.example.com"},
        "spec": {
            "group": "example.com",
            "names": {"kind": "Thing", "plural": "things"},
            "scope": "Namespaced",
            "versions": [{"name": "v1", "served": true, "storage": true, "schema": {"openAPIV3Schema": schema}}]
        }
    })
}

/// A CRD whose `spec` has `props` and carries `rules`.
fn spec_crd(props: Value, rules: Value) -> Value {
    crd(json!({
        "type": "object",
        "properties": {"spec": {"type": "object", "properties": props, "x-kubernetes-validations": rules}}
    }))
}

fn at(minor: u32, crd: &Value) -> VersionReport {
    check(crd, KubeVersion::new(minor)).unwrap()
}

fn refusals(report: &VersionReport) -> Vec<String> {
    report.refusals().map(|f| f.to_string()).collect()
}

/// The size rule this project shipped before: a regular-expression guard on an
/// int-or-string. Worked by hand from cel-go `checker/cost.go` and `library/cost.go`:
/// `string(self)` unions its eight overloads, `bytes_to_string` costing 3,145,726 × 0.1
/// (314,573) + 1 and sizing its result at 3,145,726; `matches` costs (3,145,726 + 1) × 0.1
/// = 314,573 times ⌈52 × 0.25⌉ = 13, i.e. 4,089,449, plus its target 314,574; `!` adds 1;
/// `quantity(string(self))` costs 314,573 + 314,574 from 1.30 (O(1) in 1.29), `isLessThan`
/// 2 more; `||` adds both sides' maxima.
const OLD_SIZE_RULE: &str = "!string(self).matches('^[0-9]+([.][0-9]+)?(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?$') \
     || quantity(string(self)).isLessThan(quantity('16Ei'))";

fn int_or_string_crd(rule: &str) -> Value {
    spec_crd(
        json!({"size": {"x-kubernetes-int-or-string": true, "maxLength": 32,
                        "x-kubernetes-validations": [{"rule": rule, "message": "must be less than 16Ei"}]}}),
        json!([]),
    )
}

#[test]
fn an_int_or_string_is_sized_at_the_request_until_1_33_and_by_max_length_from_1_34() {
    let crd = int_or_string_crd(OLD_SIZE_RULE);
    let cost = |minor| at(minor, &crd).rules[0].cost;
    assert_eq!(cost(29), Some(4_404_024 + 314_577));
    for minor in 30..=33 {
        assert_eq!(cost(minor), Some(5_033_173), "1.{minor}");
    }
    // maxLength 32 → 128 bytes: string(self) 13 + 1, matches ⌈12.9⌉ × 13 = 169, ...
    for minor in 34..=36 {
        assert_eq!(cost(minor), Some(213), "1.{minor}");
    }
    // Accepted (under 10,000,000), but a hazard where the size is the request's.
    assert!(at(33, &crd).accepted());
    assert!(
        at(33, &crd)
            .hazards()
            .any(|h| h.message.contains("int-or-string"))
    );
    assert_eq!(at(34, &crd).hazards().count(), 0);
}

#[test]
fn the_shipped_size_rule_costs_well_under_half_the_old_one() {
    let crd = int_or_string_crd(crate::crd::quantity::QUANTITY_MAX_RULE);
    let cost = |minor| at(minor, &crd).rules[0].cost.unwrap();
    // `matches` with a 12-character expression: 314,573 × 3 plus its target 314,574; `!` 1;
    // the right side as before.
    assert_eq!(cost(29), 1_258_294 + 314_577);
    assert_eq!(cost(30), 1_258_294 + 629_149);
    assert_eq!(cost(34), 54 + 29);
    assert!(cost(30) < RULE_COST_LIMIT / 5);
}

#[test]
fn a_message_expression_concatenating_string_of_an_int_is_refused_everywhere() {
    // kubernetes/kubernetes#124234: the estimator cannot bound `string(int)`.
    let crd = spec_crd(
        json!({"min": {"type": "integer"}, "max": {"type": "integer"}}),
        json!([{
            "rule": "self.min <= self.max",
            "messageExpression": "'min ' + string(self.min) + ' exceeds max ' + string(self.max)"
        }]),
    );
    for minor in 27..=NEWEST_MINOR {
        let report = at(minor, &crd);
        assert!(!report.accepted(), "1.{minor}");
        let refusals = refusals(&report);
        assert!(
            refusals.iter().any(|r| r.contains("messageExpression")
                && r.contains("estimated messageExpression cost exceeds budget by factor of more than 100x")),
            "{refusals:#?}"
        );
        assert!(
            refusals
                .iter()
                .any(|r| r.contains("estimated rule cost total for entire OpenAPIv3 schema")),
            "{refusals:#?}"
        );
    }
    // The rule itself is cheap: `self.min` is ident 1 + select 1, `<=` on ints 1.
    assert_eq!(at(30, &crd).rules[0].cost, Some(5));
}

#[test]
fn a_static_message_with_the_same_rule_is_accepted() {
    let crd = spec_crd(
        json!({"min": {"type": "integer"}, "max": {"type": "integer"}}),
        json!([{"rule": "self.min <= self.max", "message": "min must not exceed max", "fieldPath": ".min"}]),
    );
    assert!(at(28, &crd).accepted(), "{:#?}", at(28, &crd).findings);
    // fieldPath is 1.28's.
    assert!(refusals(&at(27, &crd)).iter().any(|r| r.contains("fieldPath")));
}

#[test]
fn rules_under_an_unbounded_list_run_once_per_item_that_fits_in_a_request() {
    // Each item is at least `{"name":""}`: 2 + 4 + 2 + 4 = 12 bytes, so 3 MiB / 13 of them.
    let unbounded = crd(json!({
        "type": "object",
        "properties": {"spec": {"type": "object", "properties": {"items": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["name"],
                "properties": {"name": {"type": "string", "maxLength": 63}},
                "x-kubernetes-validations": [{"rule": "self.name.startsWith('a')", "message": "starts with a"}]
            }
        }}}}
    }));
    let report = at(30, &unbounded);
    let rule = &report.rules[0];
    assert_eq!(rule.cardinality, MAX_REQUEST_SIZE_BYTES / 13);
    // startsWith: the argument's size 1 × 0.1 → 1, plus the select 2.
    assert_eq!(rule.cost, Some(3 * MAX_REQUEST_SIZE_BYTES / 13));
    assert!(
        report
            .hazards()
            .any(|h| h.message.contains("add maxItems or maxProperties above it"))
    );

    // maxItems bounds it, and the hazard goes.
    let mut bounded = unbounded.clone();
    bounded["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]["items"]
        ["maxItems"] = json!(16);
    let report = at(30, &bounded);
    assert_eq!(report.rules[0].cardinality, 16);
    assert_eq!(report.rules[0].cost, Some(48));
    assert_eq!(report.hazards().count(), 0);
}

#[test]
fn an_unbounded_string_under_a_list_without_max_items_is_refused() {
    let crd = crd(json!({
        "type": "object",
        "properties": {"spec": {"type": "object", "properties": {"names": {
            "type": "array",
            "items": {"type": "string", "x-kubernetes-validations": [{"rule": "self.matches('^[a-z]+$')", "message": "lower case"}]}
        }}}}
    }));
    let report = at(34, &crd);
    let refusals = refusals(&report);
    assert!(
        refusals
            .iter()
            .any(|r| r.contains("estimated rule cost exceeds budget")),
        "{refusals:#?}"
    );
    assert!(report.hazards().any(|h| h.message.contains("maxLength")));
}

#[test]
fn compile_errors_are_refusals_with_the_checkers_words() {
    let crd = spec_crd(
        json!({"a": {"type": "integer"}}),
        json!([
            {"rule": "self.b > 1", "message": "m"},
            {"rule": "self.a > 'x'", "message": "m"},
            {"rule": "self.a", "message": "m"},
            {"rule": "self.a.url()", "message": "m"},
            {"rule": "duration('forever') > duration('1s')", "message": "m"},
            {"rule": "self.a >", "message": "m"}
        ]),
    );
    let refusals = refusals(&at(30, &crd));
    for expected in [
        "undefined field 'b'",
        "found no matching overload for '_>_' applied to '(int, string)'",
        "cel expression must evaluate to a bool",
        "function 'url' is not modelled",
        "invalid duration argument",
        "syntax error",
    ] {
        assert!(
            refusals.iter().any(|r| r.contains(expected)),
            "{expected}: {refusals:#?}"
        );
    }
}

#[test]
fn features_set_the_oldest_version() {
    let crd = spec_crd(
        json!({"size": {"type": "string", "maxLength": 16}}),
        json!([{"rule": "!isQuantity(self.size) || quantity(self.size).isLessThan(quantity('1Gi'))", "message": "m"}]),
    );
    let reports = check_all(&crd).unwrap();
    assert_eq!(
        oldest_accepting(&reports),
        Some(KubeVersion::new(29)),
        "{}",
        render(&reports)
    );
    assert!(
        refusals(&reports[(28 - OLDEST_MINOR) as usize])
            .iter()
            .any(|r| r.contains("quantity library") && r.contains("needs Kubernetes 1.29"))
    );
}

#[test]
fn structural_schema_rules() {
    let crd = crd(json!({
        "type": "object",
        "properties": {
            "spec": {
                "type": "object",
                "properties": {
                    "untyped": {"description": "no type"},
                    "both": {"type": "object", "properties": {"a": {"type": "string"}}, "additionalProperties": {"type": "string"}},
                    "list": {"type": "array"},
                    "bad": {"type": "string", "pattern": "(unclosed"},
                    "ios": {"x-kubernetes-int-or-string": true, "type": "string"}
                }
            }
        }
    }));
    let refusals = refusals(&at(30, &crd));
    for expected in [
        "properties[untyped].type: must not be empty for specified object fields",
        "properties[both].additionalProperties: additionalProperties and properties are mutual exclusive",
        "properties[list].items: must be specified",
        "properties[bad].pattern: must be a valid regular expression",
        "properties[ios].type: must be empty if x-kubernetes-int-or-string is true",
    ] {
        assert!(
            refusals.iter().any(|r| r.contains(expected)),
            "{expected}: {refusals:#?}"
        );
    }
}

#[test]
fn field_paths_reasons_and_printer_columns() {
    let mut crd = spec_crd(
        json!({"a": {"type": "integer"}}),
        json!([
            {"rule": "self.a > 0", "message": "m", "fieldPath": ".b"},
            {"rule": "self.a > 0", "message": "m", "reason": "FieldValueWrong"},
            {"rule": "self.a > 0", "message": "two\nlines"}
        ]),
    );
    crd["spec"]["versions"][0]["additionalPrinterColumns"] =
        json!([{"name": "A", "type": "float", "jsonPath": "spec.a"}]);
    let refusals = refusals(&at(30, &crd));
    for expected in [
        "\".b\" must be a valid path",
        "FieldValueWrong",
        "must not contain line breaks",
        "must be one of boolean, date, integer, number, string",
        "must be a simple json path starting with .",
    ] {
        assert!(
            refusals.iter().any(|r| r.contains(expected)),
            "{expected}: {refusals:#?}"
        );
    }
}

#[test]
fn comprehensions_multiply_by_the_range() {
    // all(): the range (maxItems 10) × (step + loop condition).
    let crd = spec_crd(
        json!({"tags": {"type": "array", "maxItems": 10, "items": {"type": "string", "maxLength": 8}}}),
        json!([{"rule": "self.tags.all(t, t.startsWith('x'))", "message": "m"}]),
    );
    let report = at(34, &crd);
    assert!(report.accepted(), "{:#?}", report.findings);
    // The range `self.tags`: ident 1 + select 1. Per item, the loop condition
    // `@not_strictly_false(@result)` 1 + 1 and the step `@result && t.startsWith('x')`:
    // `&&` adds its sides, 1 and `t` 1 + startsWith ⌈1 × 0.1⌉. The result `@result` 1.
    // So 2 + 1 + 10 × (3 + 2).
    assert_eq!(report.rules[0].cost, Some(53));
}

#[test]
fn the_checkpoint_budget_crd_is_accepted_from_1_29() {
    let crd = serde_json::to_value(crate::crd::CheckpointBudget::crd()).unwrap();
    let reports = check_all(&crd).unwrap();
    assert_eq!(
        oldest_accepting(&reports),
        Some(KubeVersion::new(29)),
        "{}",
        render(&reports)
    );
    for report in &reports[(29 - OLDEST_MINOR) as usize..] {
        assert!(report.total_cost < CRD_COST_LIMIT / 10, "{}", render(&reports));
        for rule in &report.rules {
            assert!(rule.message_cost.is_none(), "{}: a messageExpression", rule.path);
        }
    }
}

#[test]
#[ignore = "prints the report: cargo test -p checkpoint-autoscaler-api crd::admission::tests::print -- --ignored --nocapture"]
fn print() {
    let crd = serde_json::to_value(crate::crd::CheckpointBudget::crd()).unwrap();
    println!("{}", render(&check_all(&crd).unwrap()));
}
