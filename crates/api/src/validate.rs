//! The validation engine: checks `CheckpointBudget` manifests offline, as the API server
//! would at apply time, so a GitOps pipeline fails before the cluster does (the `validate`
//! subcommand is the binary's, src/validate.rs; the controller prunes nulls as it does).
//!
//! Every check comes from the generated CRD, never from rules written out again here:
//! 1. unknown fields (the API server's strict field validation), walking the CRD schema;
//! 2. the `openAPIV3Schema` (types, ranges, patterns, enums, required fields), evaluated with
//!    the `jsonschema` crate after translating the Kubernetes specifics (`nullable`,
//!    `x-kubernetes-int-or-string`);
//! 3. the CRD's `x-kubernetes-validations` CEL rules, compiled from the CRD and evaluated
//!    with kube's CEL interpreter (kube-cel), schema defaults applied first as the API server
//!    does.

use std::{
    fmt,
    path::{Path, PathBuf},
};

use jsonschema::error::{TypeKind, ValidationErrorKind};
use kube::{
    CustomResourceExt,
    core::cel::{self, CompiledSchema},
};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::crd::{
    APPLICATION_NAME_PATTERN, CheckpointBudget, DURATION_PATTERN, GROUP, KIND, QUANTITY_PATTERN,
    REGION_PATTERN, ROLE_ARN_PATTERN, TARGET_PATTERN, VERSION,
};

/// Why validation could not run at all (as opposed to a budget being invalid).
#[derive(Debug, thiserror::Error)]
pub enum ValidateError {
    /// The generated CRD has no schema: a bug in the CRD types.
    #[error("the generated CRD has no openAPIV3Schema")]
    NoSchema,
    /// The generated schema could not be compiled: a bug in the CRD types.
    #[error("the generated CRD schema does not compile: {0}")]
    Schema(String),
    /// A CEL rule of the generated CRD does not compile: a bug in the CRD types.
    #[error("a CEL rule of the generated CRD does not compile: {0}")]
    Cel(String),
    /// The CRD could not be turned into JSON.
    #[error("serialising the generated CRD: {0}")]
    Json(#[from] serde_json::Error),
}

/// Which check found a problem.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Check {
    /// The file could not be read or is not YAML.
    Read,
    /// Object metadata (`metadata.name`).
    Metadata,
    /// A field the schema does not define.
    UnknownField,
    /// The openAPIV3Schema.
    Schema,
    /// An `x-kubernetes-validations` CEL rule.
    Cel,
}

/// One problem with one document.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Problem {
    /// Which check found it.
    pub check: Check,
    /// Dotted path of the field, e.g. `spec.parallelism.max` (empty for the document).
    pub field: String,
    /// What is wrong.
    pub message: String,
    /// The schema keyword or CEL rule that failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.field.is_empty() {
            write!(f, "{}: ", self.field)?;
        }
        f.write_str(&self.message)?;
        if let Some(rule) = &self.rule {
            write!(f, " [{rule}]")?;
        }
        Ok(())
    }
}

/// The verdict on one `CheckpointBudget` document (or on an unreadable file).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DocumentReport {
    /// The file.
    pub file: PathBuf,
    /// 1-based position of the document in the file (0 when the whole file failed), with
    /// `.items[i]` for an item of a `List`.
    pub document: String,
    /// `metadata.name`, when present.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// `metadata.namespace`, when present.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Everything wrong with it; empty when valid.
    pub problems: Vec<Problem>,
}

impl DocumentReport {
    /// Whether the document is a valid budget.
    pub fn is_valid(&self) -> bool {
        self.problems.is_empty()
    }

    /// Where the document is: its file, its index there, and the budget it names.
    pub fn location(&self) -> String {
        let mut out = format!("{}: document {}", self.file.display(), self.document);
        match (&self.namespace, &self.name) {
            (Some(ns), Some(name)) => out.push_str(&format!(" ({ns}/{name})")),
            (None, Some(name)) => out.push_str(&format!(" ({name})")),
            _ => {}
        }
        out
    }
}

/// The result of validating some paths.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    /// One entry per budget found (and per unreadable file).
    pub documents: Vec<DocumentReport>,
    /// Documents skipped because they are not CheckpointBudgets.
    pub skipped: usize,
}

impl Report {
    /// Whether every budget is valid.
    pub fn is_valid(&self) -> bool {
        self.documents.iter().all(DocumentReport::is_valid)
    }
}

/// Validates budgets against the generated CRD: its schema, unknown fields and CEL rules.
pub struct BudgetValidator {
    /// The CRD's openAPIV3Schema as generated.
    schema: Value,
    /// The same, translated for the `jsonschema` crate.
    json_schema: jsonschema::Validator,
    /// The CRD's CEL rules, compiled.
    cel_rules: CompiledSchema,
    cel: cel::Validator,
}

impl fmt::Debug for BudgetValidator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BudgetValidator").finish_non_exhaustive()
    }
}

impl BudgetValidator {
    /// Builds the validator from the CRD generated by [`CheckpointBudget::crd`].
    pub fn new() -> Result<Self, ValidateError> {
        let crd = CheckpointBudget::crd();
        let schema = crd
            .spec
            .versions
            .iter()
            .find(|v| v.name == VERSION)
            .and_then(|v| v.schema.as_ref())
            .and_then(|s| s.open_api_v3_schema.as_ref())
            .ok_or(ValidateError::NoSchema)?;
        let schema = serde_json::to_value(schema)?;
        Self::from_schema(schema)
    }

    /// Builds the validator from an openAPIV3Schema.
    pub fn from_schema(schema: Value) -> Result<Self, ValidateError> {
        let translated = to_json_schema(&schema);
        let json_schema = jsonschema::draft4::options()
            .should_validate_formats(false)
            .build(&translated)
            .map_err(|e| ValidateError::Schema(e.to_string()))?;
        let cel_rules = cel::compile_schema(&schema);
        if let Some(err) = first_compilation_error(&cel_rules) {
            return Err(ValidateError::Cel(err));
        }
        Ok(Self {
            schema,
            json_schema,
            cel_rules,
            cel: cel::Validator::new(),
        })
    }

    /// Every problem with one `CheckpointBudget` object (as JSON); empty when valid.
    ///
    /// NB: `status` is ignored, as the API server ignores it on create and update when the
    /// status subresource is enabled.
    pub fn validate(&self, object: &Value) -> Vec<Problem> {
        let mut object = object.clone();
        if let Some(map) = object.as_object_mut() {
            map.remove("status");
        }
        prune_nulls(&self.schema, &mut object);
        let mut problems = check_metadata(&object);
        unknown_fields(&self.schema, &object, "", true, &mut problems);
        let schema_problems: Vec<Problem> = self
            .json_schema
            .iter_errors(&object)
            .map(|e| schema_problem(&e))
            .collect();
        let schema_failed = !schema_problems.is_empty();
        problems.extend(schema_problems);
        // NB: the API server evaluates no rule on a null value (a nullable field set to null);
        // kube's interpreter would, and fail on it.
        let mut cel_object = object.clone();
        drop_nulls(&mut cel_object);
        // NB: a panic in the CEL interpreter (a third party's arithmetic on a hostile value)
        // is a problem with this document, not the end of the run.
        let evaluated = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.cel.validate_compiled(&self.cel_rules, &cel_object, None)
        }))
        .unwrap_or_else(|_| {
            problems.push(Problem {
                check: Check::Cel,
                field: String::new(),
                message: "the CEL rules could not be evaluated on this document".to_owned(),
                rule: None,
            });
            Ok(())
        });
        if let Err(errors) = evaluated {
            for err in errors {
                let field = err.field_path.trim_start_matches('.').to_owned();
                // A rule evaluated on a value of the wrong type fails to evaluate, and a rule
                // on a field the schema already refused repeats the complaint: the schema
                // problem names the real mistake.
                if schema_failed
                    && (err.kind != cel::ErrorKind::ValidationFailure
                        || problems
                            .iter()
                            .any(|p| p.check == Check::Schema && p.field == field))
                {
                    continue;
                }
                problems.push(Problem {
                    check: Check::Cel,
                    field,
                    message: err.message.clone(),
                    rule: Some(err.rule.clone()),
                });
            }
        }
        problems
    }

    /// Validates every `CheckpointBudget` in a multi-document YAML text.
    pub fn validate_yaml(&self, file: &Path, text: &str, report: &mut Report) {
        use serde::Deserialize as _;
        for (i, document) in serde_yaml::Deserializer::from_str(text).enumerate() {
            let index = (i + 1).to_string();
            let value = match serde_yaml::Value::deserialize(document)
                .and_then(|mut v| {
                    // `<<: *anchor` merge keys, which kubectl resolves too.
                    v.apply_merge()?;
                    Ok(v)
                })
                .map_err(|e| e.to_string())
                .and_then(|v| serde_json::to_value(v).map_err(|e| e.to_string()))
            {
                Ok(value) => value,
                Err(err) => {
                    report.documents.push(DocumentReport {
                        file: file.to_owned(),
                        document: index,
                        name: None,
                        namespace: None,
                        problems: vec![Problem {
                            check: Check::Read,
                            field: String::new(),
                            message: format!("not valid YAML: {err}"),
                            rule: None,
                        }],
                    });
                    // NB: the YAML parser cannot resume after a syntax error.
                    return;
                }
            };
            self.validate_document(file, index, &value, report);
        }
    }

    fn validate_document(&self, file: &Path, index: String, value: &Value, report: &mut Report) {
        if value.is_null() {
            return;
        }
        let api_version = value
            .get("apiVersion")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let kind = value.get("kind").and_then(Value::as_str).unwrap_or_default();
        if kind.ends_with("List")
            && let Some(items) = value.get("items").and_then(Value::as_array)
        {
            for (i, item) in items.iter().enumerate() {
                self.validate_document(file, format!("{index}.items[{i}]"), item, report);
            }
            return;
        }
        let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
        // A CheckpointBudget with a mistyped or missing group is most likely ours gone wrong,
        // not another project's kind of the same name: report it rather than skip it, or a
        // pipeline would pass a budget the cluster then refuses.
        let looks_like_ours = group == GROUP || group.is_empty() || group.contains("checkpoint-autoscaler");
        if kind != KIND || !looks_like_ours {
            report.skipped += 1;
            return;
        }
        let metadata = value.get("metadata");
        let field = |name: &str| {
            metadata
                .and_then(|m| m.get(name))
                .and_then(Value::as_str)
                .map(str::to_owned)
        };
        let problems = if group == GROUP && version == VERSION {
            self.validate(value)
        } else {
            vec![Problem {
                check: Check::Schema,
                field: "apiVersion".to_owned(),
                message: format!("{api_version:?} is not served; use {GROUP}/{VERSION}"),
                rule: None,
            }]
        };
        report.documents.push(DocumentReport {
            file: file.to_owned(),
            document: index,
            name: field("name"),
            namespace: field("namespace"),
            problems,
        });
    }

    /// Validates files and directories (recursively, `*.yaml` and `*.yml`); `-` reads
    /// standard input.
    pub fn validate_paths(&self, paths: &[PathBuf]) -> Report {
        let mut report = Report::default();
        for path in paths {
            if path.as_os_str() == "-" {
                let mut text = String::new();
                match std::io::Read::read_to_string(&mut std::io::stdin().lock(), &mut text) {
                    Ok(_) => self.validate_yaml(Path::new("<stdin>"), &text, &mut report),
                    Err(err) => report.documents.push(read_failure(Path::new("<stdin>"), err)),
                }
                continue;
            }
            let mut files = Vec::new();
            if let Err(err) = collect_files(path, true, &mut files) {
                report.documents.push(read_failure(path, err));
                continue;
            }
            for file in files {
                match std::fs::read_to_string(&file) {
                    Ok(text) => self.validate_yaml(&file, &text, &mut report),
                    Err(err) => report.documents.push(read_failure(&file, err)),
                }
            }
        }
        report
    }
}

fn read_failure(path: &Path, err: std::io::Error) -> DocumentReport {
    DocumentReport {
        file: path.to_owned(),
        document: "0".to_owned(),
        name: None,
        namespace: None,
        problems: vec![Problem {
            check: Check::Read,
            field: String::new(),
            message: format!("cannot read: {err}"),
            rule: None,
        }],
    }
}

/// Collects `*.yaml`/`*.yml` files under `path` in a stable order. A file named on the
/// command line is taken whatever its extension.
fn collect_files(path: &Path, explicit: bool, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    let meta = std::fs::metadata(path)?;
    if meta.is_dir() {
        let mut entries = std::fs::read_dir(path)?
            .map(|e| e.map(|e| e.path()))
            .collect::<Result<Vec<_>, _>>()?;
        entries.sort();
        for entry in entries {
            collect_files(&entry, false, out)?;
        }
    } else if explicit || matches!(path.extension().and_then(|e| e.to_str()), Some("yaml" | "yml")) {
        out.push(path.to_owned());
    }
    Ok(())
}

fn first_compilation_error(compiled: &CompiledSchema) -> Option<String> {
    if let Some(err) = compiled.compilation_errors().first() {
        return Some(err.to_string());
    }
    compiled
        .properties
        .values()
        .chain(compiled.items.as_deref())
        .chain(compiled.additional_properties.as_deref())
        .find_map(first_compilation_error)
}

/// Translates a Kubernetes structural schema into plain JSON Schema (draft 4):
/// `nullable: true` admits `null`, and `x-kubernetes-int-or-string` admits an integer or a
/// string (its `pattern` and `minimum` then apply to the matching form only, as in JSON
/// Schema). `x-kubernetes-*` keywords are otherwise annotations to the `jsonschema` crate.
fn to_json_schema(schema: &Value) -> Value {
    match schema {
        Value::Object(map) => {
            let mut out: serde_json::Map<String, Value> = map
                .iter()
                .map(|(k, v)| (k.clone(), to_json_schema_child(k, v)))
                .collect();
            let nullable = map.get("nullable").and_then(Value::as_bool) == Some(true);
            let int_or_string = map.get("x-kubernetes-int-or-string").and_then(Value::as_bool) == Some(true);
            let mut types: Vec<Value> = match map.get("type") {
                Some(Value::String(t)) => vec![Value::String(t.clone())],
                Some(Value::Array(ts)) => ts.clone(),
                _ if int_or_string => vec!["integer".into(), "string".into()],
                _ => Vec::new(),
            };
            if !types.is_empty() {
                if nullable && !types.contains(&Value::from("null")) {
                    types.push("null".into());
                }
                out.insert("type".to_owned(), Value::Array(types));
            }
            out.remove("nullable");
            Value::Object(out)
        }
        other => other.clone(),
    }
}

/// Keys whose values are schemas or maps/lists of schemas; everything else (`default`,
/// `enum`, `required`, …) is data and copied as is.
fn to_json_schema_child(key: &str, value: &Value) -> Value {
    match (key, value) {
        ("properties", Value::Object(props)) => Value::Object(
            props
                .iter()
                .map(|(k, v)| (k.clone(), to_json_schema(v)))
                .collect(),
        ),
        ("items" | "additionalProperties" | "not", v @ Value::Object(_)) => to_json_schema(v),
        ("anyOf" | "allOf" | "oneOf", Value::Array(list)) => {
            Value::Array(list.iter().map(to_json_schema).collect())
        }
        (_, v) => v.clone(),
    }
}

/// Drops `null` values of fields that are not `nullable`, as the API server does before
/// defaulting (so `mode: null` means "the default", and a required field set to null is
/// reported as missing).
pub fn prune_nulls(schema: &Value, value: &mut Value) {
    match value {
        Value::Object(map) => {
            let props = schema.get("properties").and_then(Value::as_object);
            let additional = schema.get("additionalProperties").filter(|a| a.is_object());
            map.retain(|key, child| {
                let child_schema = props.and_then(|p| p.get(key)).or(additional);
                let nullable = child_schema
                    .and_then(|s| s.get("nullable"))
                    .and_then(Value::as_bool)
                    == Some(true);
                // Unknown fields are left for the unknown-field check to report.
                !(child.is_null() && child_schema.is_some() && !nullable)
            });
            for (key, child) in map.iter_mut() {
                if let Some(child_schema) = props.and_then(|p| p.get(key)).or(additional) {
                    prune_nulls(child_schema, child);
                }
            }
        }
        Value::Array(items) => {
            if let Some(item_schema) = schema.get("items") {
                for item in items {
                    prune_nulls(item_schema, item);
                }
            }
        }
        _ => {}
    }
}

/// Removes every `null` member of every object.
fn drop_nulls(value: &mut Value) {
    match value {
        Value::Object(map) => {
            map.retain(|_, v| !v.is_null());
            map.values_mut().for_each(drop_nulls);
        }
        Value::Array(items) => items.iter_mut().for_each(drop_nulls),
        _ => {}
    }
}

/// Reports fields the schema does not define, as the API server's strict field validation
/// does (and as it would otherwise silently prune them).
fn unknown_fields(schema: &Value, value: &Value, path: &str, root: bool, out: &mut Vec<Problem>) {
    let preserve = schema
        .get("x-kubernetes-preserve-unknown-fields")
        .and_then(Value::as_bool)
        == Some(true);
    match value {
        Value::Object(map) => {
            let props = schema.get("properties").and_then(Value::as_object);
            let additional = schema.get("additionalProperties").filter(|a| a.is_object());
            for (key, child) in map {
                if root && matches!(key.as_str(), "apiVersion" | "kind" | "metadata") {
                    continue;
                }
                let child_path = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                match (props.and_then(|p| p.get(key)), additional) {
                    (Some(child_schema), _) | (None, Some(child_schema)) => {
                        unknown_fields(child_schema, child, &child_path, false, out)
                    }
                    (None, None) if preserve || props.is_none() => {}
                    (None, None) => {
                        // NB: a key can be as long as any value.
                        let mut short: String = key.chars().take(SHOWN_HEAD).collect();
                        if short.len() < key.len() {
                            short.push('…');
                        }
                        let child_path = if path.is_empty() {
                            short
                        } else {
                            format!("{path}.{short}")
                        };
                        let key = shown(&Value::String(key.clone()));
                        let known: Vec<&str> = props
                            .map(|p| p.keys().map(String::as_str).collect())
                            .unwrap_or_default();
                        out.push(Problem {
                            check: Check::UnknownField,
                            field: child_path,
                            message: format!("unknown field {key}; known fields here: {}", known.join(", ")),
                            rule: None,
                        });
                    }
                }
            }
        }
        Value::Array(items) => {
            if let Some(item_schema) = schema.get("items") {
                for (i, item) in items.iter().enumerate() {
                    unknown_fields(item_schema, item, &format!("{path}[{i}]"), false, out);
                }
            }
        }
        _ => {}
    }
}

/// `metadata.name` is required and must be a DNS subdomain name (the API server's check for
/// custom resources).
fn check_metadata(object: &Value) -> Vec<Problem> {
    let metadata = object.get("metadata");
    let name = metadata.and_then(|m| m.get("name"));
    let generate_name = metadata.and_then(|m| m.get("generateName"));
    let problem = |field: &str, message: String| Problem {
        check: Check::Metadata,
        field: field.to_owned(),
        message,
        rule: None,
    };
    match (name, generate_name) {
        (None, None) => vec![problem("metadata.name", "is required".to_owned())],
        (Some(name @ Value::String(text)), _) if !is_dns_subdomain(text) => vec![problem(
            "metadata.name",
            format!(
                "{} is not a valid name: use at most 253 lower-case letters, digits, '-' and '.', \
                 starting and ending with a letter or digit",
                shown(name)
            ),
        )],
        (Some(Value::String(_)), _) | (None, Some(Value::String(_))) => Vec::new(),
        (Some(other), _) => vec![problem(
            "metadata.name",
            format!("must be a string, not {}", shown(other)),
        )],
        (None, Some(other)) => vec![problem(
            "metadata.generateName",
            format!("must be a string, not {}", shown(other)),
        )],
    }
}

fn is_dns_subdomain(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

/// A JSON pointer (`/spec/parallelism/0/min`) as a dotted path (`spec.parallelism[0].min`).
fn dotted_path(pointer: &str) -> String {
    let mut out = String::new();
    for segment in pointer.split('/').skip(1) {
        let segment = segment.replace("~1", "/").replace("~0", "~");
        if !segment.is_empty() && segment.bytes().all(|b| b.is_ascii_digit()) {
            out.push_str(&format!("[{segment}]"));
        } else {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(&segment);
        }
    }
    out
}

fn schema_problem(err: &jsonschema::ValidationError<'_>) -> Problem {
    let mut field = dotted_path(err.instance_path().as_str());
    let instance = err.instance();
    let keyword = err
        .schema_path()
        .as_str()
        .rsplit('/')
        .next()
        .unwrap_or_default()
        .to_owned();
    let message = match err.kind() {
        ValidationErrorKind::Required { property } => {
            let property = property.as_str().unwrap_or_default();
            field = if field.is_empty() {
                property.to_owned()
            } else {
                format!("{field}.{property}")
            };
            "is required".to_owned()
        }
        ValidationErrorKind::Pattern { pattern } => {
            let hint = match pattern.as_str() {
                p if p == DURATION_PATTERN => {
                    "is not a positive duration; write a number followed by a unit (ns, us, ms, s, m, h), \
                     e.g. 90s, 2m or 1h30m"
                }
                p if p == QUANTITY_PATTERN => {
                    "is not a positive size; write a number with an optional suffix \
                     (Ki, Mi, Gi, Ti, Pi, Ei, k, M, G, T, P, E), e.g. 512Mi or 8Gi"
                }
                p if p == APPLICATION_NAME_PATTERN => {
                    "is not a Managed Flink application name; use letters, digits, '_', '.' and '-'"
                }
                p if p == REGION_PATTERN => "is not an AWS region name such as eu-west-1",
                p if p == TARGET_PATTERN => {
                    "is not a percentage strictly between 0% and 100% (at most four decimals), e.g. 99.5%"
                }
                p if p == ROLE_ARN_PATTERN => {
                    "is not an IAM role ARN such as arn:aws:iam::111122223333:role/flink-scaler"
                }
                _ => "does not match the required pattern",
            };
            format!("{} {hint}", shown(instance))
        }
        ValidationErrorKind::Type { kind } => {
            // `nullable` fields admit null too; saying so only confuses.
            let types: Vec<String> = match kind {
                TypeKind::Single(t) => vec![t.to_string()],
                TypeKind::Multiple(set) => set
                    .iter()
                    .map(|t| t.to_string())
                    .filter(|t| t != "null")
                    .collect(),
            };
            format!(
                "{} is not of type {}",
                shown(instance),
                types
                    .iter()
                    .map(|t| format!("{t:?}"))
                    .collect::<Vec<_>>()
                    .join(" or ")
            )
        }
        ValidationErrorKind::Minimum { limit } => {
            format!(
                "{} is less than the minimum of {}",
                shown(instance),
                number(limit)
            )
        }
        ValidationErrorKind::Maximum { limit } => {
            format!(
                "{} is greater than the maximum of {}",
                shown(instance),
                number(limit)
            )
        }
        // jsonschema's own messages start with the whole value.
        _ => {
            let message = err.to_string();
            match message.strip_prefix(&instance.to_string()) {
                Some(rest) => format!("{}{rest}", shown(instance)),
                None => message,
            }
        }
    };
    Problem {
        check: Check::Schema,
        field,
        message,
        rule: Some(keyword),
    }
}

/// A value as a message shows it: a value longer than [`SHOWN_LENGTH`] characters is cut to
/// its first [`SHOWN_HEAD`] and its length given, so a megabyte-long string is reported, not
/// reprinted.
fn shown(value: &Value) -> String {
    let (text, length) = match value {
        Value::String(s) => (s.clone(), s.chars().count()),
        other => {
            let text = other.to_string();
            let length = text.chars().count();
            (text, length)
        }
    };
    if length <= SHOWN_LENGTH {
        return value.to_string();
    }
    let head: String = text.chars().take(SHOWN_HEAD).collect();
    match value {
        Value::String(_) => format!("{}… ({length} characters)", Value::String(head)),
        _ => format!("{head}… ({length} characters)"),
    }
}

/// Longest value a message quotes whole.
const SHOWN_LENGTH: usize = 200;
/// How much of a longer value a message quotes.
const SHOWN_HEAD: usize = 64;

/// A schema limit as people write it: schemars emits integer bounds as floats (`1.0`).
fn number(limit: &Value) -> String {
    match limit.as_f64() {
        Some(f) if f.fract() == 0.0 && f.abs() < 1e15 => format!("{}", f as i64),
        _ => limit.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dotted_paths() {
        assert_eq!(dotted_path(""), "");
        assert_eq!(dotted_path("/spec/parallelism/min"), "spec.parallelism.min");
        assert_eq!(dotted_path("/items/0/spec"), "items[0].spec");
        assert_eq!(dotted_path("/a~1b/c~0d"), "a/b.c~d");
    }

    #[test]
    fn dns_subdomain_names() {
        for good in ["orders", "orders-enrichment", "a.b-c.d", "x1"] {
            assert!(is_dns_subdomain(good), "{good}");
        }
        for bad in ["", "Orders", "-a", "a-", "a..b", "a_b", &"a".repeat(254)] {
            assert!(!is_dns_subdomain(bad), "{bad}");
        }
    }

    #[test]
    fn kubernetes_schema_translation() {
        let schema = serde_json::json!({
            "type": "object",
            "properties": {
                "a": {"type": "integer", "nullable": true},
                "q": {"x-kubernetes-int-or-string": true, "pattern": "^[0-9]+Gi$"},
                "l": {"type": "array", "items": {"type": "string", "nullable": true}}
            }
        });
        let v = jsonschema::draft4::new(&to_json_schema(&schema)).unwrap();
        assert!(v.is_valid(&serde_json::json!({"a": null, "q": 5, "l": [null, "x"]})));
        assert!(v.is_valid(&serde_json::json!({"q": "8Gi"})));
        assert!(!v.is_valid(&serde_json::json!({"q": "8G"})));
        assert!(!v.is_valid(&serde_json::json!({"q": true})));
        assert!(!v.is_valid(&serde_json::json!({"a": "1"})));
    }

    fn budget(spec: Value) -> Value {
        serde_json::json!({
            "apiVersion": "checkpoint-autoscaler.dev/v1alpha1",
            "kind": "CheckpointBudget",
            "metadata": {"name": "x"},
            "spec": spec,
        })
    }

    #[test]
    fn nulls_are_pruned_like_the_api_server_does() {
        let v = BudgetValidator::new().unwrap();
        let ok = budget(serde_json::json!({
            "application": {"name": "a", "region": null},
            "objectives": {"maxCheckpointDuration": "2m", "window": null, "maxCheckpointSize": null},
            "parallelism": {"min": 4, "max": 8, "maxParallelism": 8, "perKpu": null},
            "maxKpus": null, "mode": null, "behavior": null
        }));
        assert_eq!(v.validate(&ok), Vec::new());
        let missing = budget(serde_json::json!({
            "application": {"name": "a"},
            "objectives": {"maxCheckpointDuration": null},
            "parallelism": {"min": 4, "max": 8, "maxParallelism": 8}
        }));
        let problems: Vec<String> = v.validate(&missing).iter().map(ToString::to_string).collect();
        assert_eq!(
            problems,
            ["spec.objectives.maxCheckpointDuration: is required [required]"]
        );
    }

    #[test]
    fn merge_keys_and_mistyped_api_versions() {
        let v = BudgetValidator::new().unwrap();
        let text = r#"
apiVersion: checkpoint-autoscaler.dev/v1alpha1
kind: CheckpointBudget
metadata: {name: merged}
spec:
  application: {name: a}
  objectives: {maxCheckpointDuration: 2m}
  parallelism:
    <<: {min: 2, max: 8}
    maxParallelism: 8
---
apiVersion: v1alpha1
kind: CheckpointBudget
metadata: {name: no-group}
---
apiVersion: checkpoint-autoscaler.io/v1alpha1
kind: CheckpointBudget
metadata: {name: wrong-group}
---
apiVersion: example.com/v1
kind: CheckpointBudget
metadata: {name: someone-elses}
"#;
        let mut report = Report::default();
        v.validate_yaml(Path::new("x.yaml"), text, &mut report);
        let verdicts: Vec<(Option<&str>, usize)> = report
            .documents
            .iter()
            .map(|d| (d.name.as_deref(), d.problems.len()))
            .collect();
        assert_eq!(
            verdicts,
            [
                (Some("merged"), 0),
                (Some("no-group"), 1),
                (Some("wrong-group"), 1)
            ]
        );
        assert_eq!(report.documents[1].problems[0].field, "apiVersion");
        assert_eq!(report.skipped, 1);
    }

    #[test]
    fn status_is_ignored() {
        let v = BudgetValidator::new().unwrap();
        let mut doc = budget(serde_json::json!({
            "application": {"name": "a"},
            "objectives": {"maxCheckpointDuration": "2m"},
            "parallelism": {"min": 4, "max": 8, "maxParallelism": 8}
        }));
        doc["status"] = serde_json::json!({"anything": 1});
        assert_eq!(v.validate(&doc), Vec::new());
    }

    #[test]
    fn every_cel_rule_of_the_crd_compiles() {
        BudgetValidator::new().unwrap();
    }
}
