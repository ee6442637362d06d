//! What a real Kubernetes API server checks when a CustomResourceDefinition is created,
//! as far as it can be checked without one: the structural-schema rules, the CEL rules'
//! compilation, the feature each rule needs and the Kubernetes version that has it, and the
//! *estimated* cost of every rule and `messageExpression` against the API server's budgets.
//!
//! Why it exists: kube's CEL interpreter and a JSON-schema validator evaluate rules, but
//! neither estimates what the API server estimates before it accepts a CRD. A
//! `messageExpression` concatenating `string(<int>)` evaluates fine everywhere and is
//! nonetheless refused by every API server ("estimated messageExpression cost exceeds
//! budget by factor of more than 100x"), because the estimator cannot bound the size of
//! `string(int)` (kubernetes/kubernetes#124234).
//!
//! Each check names the API-server source it mirrors, read at the Kubernetes release tags
//! (`k8s.io/apiextensions-apiserver` and `k8s.io/apiserver` `v0.N.0` for Kubernetes 1.N,
//! and the `github.com/google/cel-go` version each pins):
//!
//! - `apiextensions-apiserver/pkg/apis/apiextensions/validation/validation.go`: the rule
//!   fields (`message`, `messageExpression`, `reason`, `fieldPath`), the per-expression
//!   limit `StaticEstimatedCostLimit` (10,000,000) and the per-CRD limit
//!   `StaticEstimatedCRDCostLimit` (100,000,000), `getExpressionCost` (cost × cardinality),
//!   printer columns (`ValidateCustomResourceColumnDefinition`);
//! - `.../validation/cel_validation.go`: how often a rule can run (`extractMaxElements`);
//! - `apiextensions-apiserver/pkg/apiserver/schema/validation.go`: structural schemas;
//! - `apiextensions-apiserver/pkg/apiserver/schema/cel/compilation.go`: the size estimator
//!   (a field's size is its `DeclType.MaxElements`) and `maxCardinality`;
//! - `apiserver/pkg/cel/common/schemas.go` (`SchemaDeclType`): how an OpenAPI schema
//!   becomes CEL types and sizes — in particular that an `x-kubernetes-int-or-string` is
//!   sized at the whole request (3 MiB) up to 1.33 whatever its `maxLength`, and at
//!   `maxLength` × 4 from 1.34;
//! - `apiserver/pkg/cel/library/cost.go`: the Kubernetes libraries' costs;
//! - `apiserver/pkg/cel/environment/base.go`: which library each version offers, and that
//!   a *new* expression may use only what the previous minor version had
//!   (`DefaultCompatibilityVersion`);
//! - `cel-go/checker/cost.go`: the estimator itself.
//!
//! The CEL checker here knows the functions the Kubernetes CEL environment declares that a
//! CRD rule is likely to use; a rule calling anything else is reported as *not modelled*
//! (a finding that fails the admission test) rather than guessed at.

mod cost;
mod decl;
#[cfg(test)]
mod tests;

use std::fmt;

use serde_json::Value;

pub use cost::CompileError;

/// The per-expression limit on a rule's (or `messageExpression`'s) estimated cost × the
/// number of times it can run (`StaticEstimatedCostLimit`, validation.go).
pub const RULE_COST_LIMIT: u64 = 10_000_000;
/// The limit on the estimated cost of all the rules of one CRD version
/// (`StaticEstimatedCRDCostLimit`, validation.go).
pub const CRD_COST_LIMIT: u64 = 100_000_000;
/// The largest request the API server accepts (`MaxRequestSizeBytes`,
/// apiserver/pkg/apis/cel/config.go): unbounded strings, lists and maps are sized by it.
pub const MAX_REQUEST_SIZE_BYTES: u64 = 3 * 1024 * 1024;

/// The oldest Kubernetes minor version checked: `x-kubernetes-validations` became beta,
/// on by default, in 1.25 (feature gate `CustomResourceValidationExpressions`, GA in 1.29);
/// an older API server drops or refuses every rule.
pub const OLDEST_MINOR: u32 = 25;
/// The newest Kubernetes minor version whose API-server source these checks were read
/// from. Later versions are assumed to behave as this one.
pub const NEWEST_MINOR: u32 = 36;

/// A Kubernetes version `1.minor`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct KubeVersion {
    /// The minor version.
    pub minor: u32,
}

impl KubeVersion {
    /// `1.minor`.
    pub const fn new(minor: u32) -> Self {
        Self { minor }
    }

    /// Every checked version, oldest first.
    pub fn checked() -> impl Iterator<Item = KubeVersion> {
        (OLDEST_MINOR..=NEWEST_MINOR).map(KubeVersion::new)
    }
}

impl fmt::Display for KubeVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "1.{}", self.minor)
    }
}

/// A capability a CRD can use, and the first Kubernetes version whose API server accepts
/// it in a *newly created* CRD.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Feature {
    /// `x-kubernetes-validations` rules (beta, on by default, in 1.25).
    ValidationRules,
    /// A rule's `messageExpression` (added in 1.27, `types_jsonschema.go`).
    MessageExpression,
    /// A rule's `reason` (added in 1.28).
    Reason,
    /// A rule's `fieldPath` (added in 1.28).
    FieldPath,
    /// A rule's `optionalOldSelf` (added in 1.29, behind `CRDValidationRatcheting`, which
    /// is on by default from 1.30).
    OptionalOldSelf,
    /// Comparisons across int, uint and double (`cel.CrossTypeNumericComparisons`,
    /// introduced in the CEL environment at 1.28, so usable in new rules from 1.29).
    CrossTypeNumericComparisons,
    /// The Kubernetes quantity library, `quantity()` and `isQuantity()` (introduced at 1.28,
    /// usable in new rules from 1.29).
    QuantityLibrary,
    /// The CEL standard library, the regex, list and URL libraries and the strings
    /// extension functions every version offers.
    BaseLibrary,
}

impl Feature {
    /// The first Kubernetes version that accepts the feature in a new CRD.
    pub fn since(self) -> KubeVersion {
        KubeVersion::new(match self {
            Feature::ValidationRules | Feature::BaseLibrary => 25,
            Feature::MessageExpression => 27,
            Feature::Reason | Feature::FieldPath => 28,
            // Libraries are introduced at one version and usable in new expressions from
            // the next: `DefaultCompatibilityVersion` is the previous minor (base.go).
            Feature::CrossTypeNumericComparisons | Feature::QuantityLibrary => 29,
            Feature::OptionalOldSelf => 30,
        })
    }

    /// What the feature is, for reports.
    pub fn describe(self) -> &'static str {
        match self {
            Feature::ValidationRules => "x-kubernetes-validations",
            Feature::MessageExpression => "messageExpression",
            Feature::Reason => "reason",
            Feature::FieldPath => "fieldPath",
            Feature::OptionalOldSelf => "optionalOldSelf",
            Feature::CrossTypeNumericComparisons => "cross-type numeric comparisons",
            Feature::QuantityLibrary => "quantity library (quantity(), isQuantity())",
            Feature::BaseLibrary => "CEL standard library",
        }
    }
}

/// How bad a finding is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    /// The API server of this version refuses the CRD (or drops what it cannot read).
    Refused,
    /// Accepted, but a rule's cost rests on a size the schema does not bound well; a new
    /// rule in the same place, or a small change to this one, can tip it over a budget.
    Hazard,
}

/// One thing the API server would object to, or that makes a rule's cost fragile.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    /// Refused or a hazard.
    pub severity: Severity,
    /// Where, as the API server names it (`spec.validation.openAPIV3Schema.properties[spec]...`).
    pub path: String,
    /// What is wrong and how to fix it.
    pub message: String,
    /// The API-server source the check mirrors.
    pub source: &'static str,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let severity = match self.severity {
            Severity::Refused => "refused",
            Severity::Hazard => "hazard",
        };
        write!(
            f,
            "{severity}: {}: {} (as {})",
            self.path, self.message, self.source
        )
    }
}

/// One `x-kubernetes-validations` entry as one API-server version estimates it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuleReport {
    /// The schema path of the node carrying the rule.
    pub path: String,
    /// The rule.
    pub rule: String,
    /// The rule's estimated cost × how many times it can run (what is compared with
    /// [`RULE_COST_LIMIT`]), or `None` when it does not compile.
    pub cost: Option<u64>,
    /// The `messageExpression`'s estimated cost, when there is one and it compiles.
    pub message_cost: Option<u64>,
    /// How many times the rule can run for one object.
    pub cardinality: u64,
    /// Every feature the rule (and its message, reason and field path) needs.
    pub features: Vec<Feature>,
}

impl RuleReport {
    /// The first version whose API server can take this rule as written.
    pub fn since(&self) -> KubeVersion {
        self.features
            .iter()
            .map(|f| f.since())
            .max()
            .unwrap_or(Feature::ValidationRules.since())
    }
}

/// What one API-server version makes of a CRD.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VersionReport {
    /// The version.
    pub version: KubeVersion,
    /// Every rule, in schema order.
    pub rules: Vec<RuleReport>,
    /// The estimated cost of all rules (and message expressions) together, per CRD version.
    pub total_cost: u64,
    /// What the API server objects to, and the hazards.
    pub findings: Vec<Finding>,
}

impl VersionReport {
    /// Whether this version's API server accepts the CRD.
    pub fn accepted(&self) -> bool {
        !self.findings.iter().any(|f| f.severity == Severity::Refused)
    }

    /// The findings that refuse the CRD.
    pub fn refusals(&self) -> impl Iterator<Item = &Finding> {
        self.findings.iter().filter(|f| f.severity == Severity::Refused)
    }

    /// The hazards.
    pub fn hazards(&self) -> impl Iterator<Item = &Finding> {
        self.findings.iter().filter(|f| f.severity == Severity::Hazard)
    }
}

/// Why a CRD could not be checked at all.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AdmissionError {
    /// Not a CustomResourceDefinition with versions and schemas.
    #[error("not a CustomResourceDefinition: {0}")]
    NotACrd(String),
}

/// Checks a CRD (as JSON, the way the API server receives it) against one API-server
/// version.
pub fn check(crd: &Value, version: KubeVersion) -> Result<VersionReport, AdmissionError> {
    let versions = crd
        .pointer("/spec/versions")
        .and_then(Value::as_array)
        .ok_or_else(|| AdmissionError::NotACrd("spec.versions is missing".into()))?;
    let mut report = VersionReport {
        version,
        rules: Vec::new(),
        total_cost: 0,
        findings: Vec::new(),
    };
    if apiversion_of(crd) != Some("apiextensions.k8s.io/v1") {
        return Err(AdmissionError::NotACrd(
            "apiVersion is not apiextensions.k8s.io/v1".into(),
        ));
    }
    for (i, v) in versions.iter().enumerate() {
        let base = format!("spec.versions[{i}]");
        if let Some(columns) = v.get("additionalPrinterColumns").and_then(Value::as_array) {
            for (j, column) in columns.iter().enumerate() {
                decl::check_printer_column(
                    column,
                    &format!("{base}.additionalPrinterColumns[{j}]"),
                    &mut report,
                );
            }
        }
        let Some(schema) = v.pointer("/schema/openAPIV3Schema") else {
            return Err(AdmissionError::NotACrd(format!(
                "{base}.schema.openAPIV3Schema is missing"
            )));
        };
        let path = format!("{base}.schema.openAPIV3Schema");
        let mut total = 0u64;
        decl::check_version_schema(schema, &path, version, &mut report, &mut total);
        report.total_cost = report.total_cost.max(total);
        if total > CRD_COST_LIMIT {
            report.findings.push(Finding {
                severity: Severity::Refused,
                path,
                message: cost_error(
                    "x-kubernetes-validations estimated rule cost total for entire OpenAPIv3 schema",
                    total,
                    CRD_COST_LIMIT,
                ),
                source: "apiextensions-apiserver validation.go (StaticEstimatedCRDCostLimit)",
            });
        }
    }
    Ok(report)
}

fn apiversion_of(crd: &Value) -> Option<&str> {
    crd.get("apiVersion").and_then(Value::as_str)
}

/// Checks a CRD against every checked version, oldest first.
pub fn check_all(crd: &Value) -> Result<Vec<VersionReport>, AdmissionError> {
    KubeVersion::checked().map(|v| check(crd, v)).collect()
}

/// The oldest version from which every checked version accepts the CRD, or `None` when the
/// newest does not.
pub fn oldest_accepting(reports: &[VersionReport]) -> Option<KubeVersion> {
    let mut oldest = None;
    for report in reports.iter().rev() {
        if !report.accepted() {
            break;
        }
        oldest = Some(report.version);
    }
    oldest
}

/// The API server's cost message (`getCostErrorMessage`, validation.go).
fn cost_error(what: &str, cost: u64, limit: u64) -> String {
    let factor = cost as f64 / limit as f64;
    let factor = if factor > 100.0 {
        "more than 100x".to_owned()
    } else if factor < 1.5 {
        format!("{factor:.6}x")
    } else {
        format!("{factor:.1}x")
    };
    format!(
        "{what} exceeds budget by factor of {factor} (try simplifying the rule, or adding maxItems, \
         maxProperties, and maxLength where arrays, maps, and strings are declared)"
    )
}

/// A schema path as the API server names it, shortened for people:
/// `spec.versions[0].schema.openAPIV3Schema.properties[spec].properties[window]` → `.spec.window`.
pub fn short_path(path: &str) -> String {
    let rest = path
        .split_once(".schema.openAPIV3Schema")
        .map_or(path, |(_, rest)| rest);
    let mut out = String::new();
    for part in rest.split('.').filter(|p| !p.is_empty()) {
        match part.strip_prefix("properties[").and_then(|p| p.strip_suffix(']')) {
            Some(name) => {
                out.push('.');
                out.push_str(name);
            }
            None if part == "items" => out.push_str("[*]"),
            None => {
                out.push('.');
                out.push_str(part);
            }
        }
    }
    if out.is_empty() { ".".to_owned() } else { out }
}

/// Consecutive versions that share a value, as `1.29-1.33`.
fn spans<T: PartialEq + Clone>(
    reports: &[VersionReport],
    value: impl Fn(&VersionReport) -> T,
) -> Vec<(String, T)> {
    let mut out: Vec<(KubeVersion, KubeVersion, T)> = Vec::new();
    for report in reports {
        let v = value(report);
        match out.last_mut() {
            Some(last) if last.2 == v && last.1.minor + 1 == report.version.minor => last.1 = report.version,
            _ => out.push((report.version, report.version, v)),
        }
    }
    out.into_iter()
        .map(|(from, to, v)| {
            let range = if from == to {
                from.to_string()
            } else {
                format!("{from}-{to}")
            };
            (range, v)
        })
        .collect()
}

/// A plain-text report: the versions that accept the CRD, each rule with the version it
/// needs and its estimated cost per range of versions, then every finding with the versions
/// it applies to. `checkpoint-autoscaler crd --admission` prints it.
pub fn render(reports: &[VersionReport]) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    match oldest_accepting(reports) {
        Some(v) => {
            let _ = writeln!(
                out,
                "Accepted by Kubernetes {v} to 1.{NEWEST_MINOR} (later versions: as far as their API-server source is unchanged)."
            );
        }
        None => {
            let _ = writeln!(out, "REFUSED by Kubernetes 1.{NEWEST_MINOR}.");
        }
    }
    let Some(newest) = reports.last() else {
        return out;
    };
    let _ = writeln!(
        out,
        "\nEstimated cost of each rule, times the times it can run (limits: {RULE_COST_LIMIT} a rule, {CRD_COST_LIMIT} a CRD):"
    );
    for (i, rule) in newest.rules.iter().enumerate() {
        let _ = writeln!(
            out,
            "\n  {}  (needs {})\n    {}",
            short_path(&rule.path),
            rule.since(),
            rule.rule
        );
        let costs = spans(reports, |r| r.rules.get(i).map(|r| (r.cost, r.message_cost)));
        for (range, cost) in costs {
            let text = match cost {
                Some((Some(c), None)) => c.to_string(),
                Some((Some(c), Some(m))) => format!("{c}, messageExpression {m}"),
                Some((None, _)) => "does not compile".to_owned(),
                None => "-".to_owned(),
            };
            let _ = writeln!(out, "    {range:<10} {text}");
        }
    }
    let totals = spans(reports, |r| r.total_cost);
    let _ = writeln!(out, "\n  total");
    for (range, total) in totals {
        let _ = writeln!(out, "    {range:<10} {total}");
    }
    let mut seen: Vec<&Finding> = Vec::new();
    for report in reports {
        for finding in &report.findings {
            if seen.contains(&finding) {
                continue;
            }
            seen.push(finding);
            let versions = spans(reports, |r| r.findings.contains(finding));
            let applies: Vec<&str> = versions
                .iter()
                .filter(|(_, on)| *on)
                .map(|(r, _)| r.as_str())
                .collect();
            let _ = writeln!(
                out,
                "\n{} ({}) {}: {}\n  (as {})",
                match finding.severity {
                    Severity::Refused => "REFUSED",
                    Severity::Hazard => "hazard",
                },
                applies.join(", "),
                short_path(&finding.path),
                finding.message,
                finding.source
            );
        }
    }
    out
}
