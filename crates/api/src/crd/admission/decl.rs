//! The schema side of admission: structural-schema rules, CEL types and sizes for each
//! schema node (`SchemaDeclType`), how often a rule can run, and the per-rule checks.

use std::{collections::BTreeMap, sync::Arc};

use serde_json::Value;

use super::{
    Feature, Finding, KubeVersion, MAX_REQUEST_SIZE_BYTES, RULE_COST_LIMIT, RuleReport, Severity,
    VersionReport, cost, cost_error,
};

/// `MaxDurationSizeJSON`, `JSONDateSize`, `MaxDatetimeSizeJSON` (apiserver/pkg/cel/limits.go).
const MAX_DURATION_SIZE_JSON: u64 = 32;
const JSON_DATE_SIZE: u64 = 12;
const MAX_DATETIME_SIZE_JSON: u64 = 32;
/// `MinStringSize`, `MinBoolSize`, `MinNumberSize`, `MinDurationSizeJSON`,
/// `MinDatetimeSizeJSON` (limits.go).
const MIN_STRING_SIZE: u64 = 2;
const MIN_BOOL_SIZE: u64 = 4;
const MIN_NUMBER_SIZE: u64 = 1;
const MIN_DURATION_SIZE_JSON: u64 = 3;
const MIN_DATETIME_SIZE_JSON: u64 = 21;

/// A CEL declaration derived from a schema node (`apiservercel.DeclType`).
#[derive(Debug, PartialEq)]
pub(super) struct Decl {
    /// What it is.
    pub kind: DeclKind,
    /// `MaxElements`: the longest string (in bytes), list or map it can be; 0 for scalars and
    /// objects, as `NewSimpleTypeWithMinSize` and `NewObjectType` leave it.
    pub max_elements: u64,
    /// `MinSerializedSize`: the fewest bytes its JSON can take.
    pub min_size: u64,
}

/// The CEL kind of a [`Decl`].
#[derive(Debug, PartialEq)]
pub(super) enum DeclKind {
    /// An object with known fields (a CEL struct-like type).
    Object(BTreeMap<String, Arc<Decl>>),
    /// `additionalProperties`: a map from string.
    Map(Arc<Decl>),
    /// An array.
    List(Arc<Decl>),
    /// A string.
    String,
    /// `format: byte`.
    Bytes,
    /// `format: duration`.
    Duration,
    /// `format: date` or `date-time`.
    Timestamp,
    /// An integer.
    Int,
    /// A number.
    Double,
    /// A boolean.
    Bool,
    /// `x-kubernetes-int-or-string`.
    Dyn,
}

impl Decl {
    fn simple(kind: DeclKind, min_size: u64) -> Self {
        Self {
            kind,
            max_elements: 0,
            min_size,
        }
    }
}

fn get_bool(s: &Value, key: &str) -> bool {
    s.get(key).and_then(Value::as_bool).unwrap_or(false)
}

fn get_u64(s: &Value, key: &str) -> Option<u64> {
    s.get(key).and_then(|v| {
        v.as_i64()
            .map(|i| i.max(0) as u64)
            .or_else(|| v.as_f64().map(|f| f.max(0.0) as u64))
    })
}

fn type_of(s: &Value) -> Option<&str> {
    s.get("type").and_then(Value::as_str)
}

fn properties(s: &Value) -> Option<&serde_json::Map<String, Value>> {
    s.get("properties").and_then(Value::as_object)
}

/// The schema of `additionalProperties`, when it is one (not `true`/`false`).
fn additional_schema(s: &Value) -> Option<&Value> {
    s.get("additionalProperties").filter(|v| v.is_object())
}

fn is_int_or_string(s: &Value) -> bool {
    get_bool(s, "x-kubernetes-int-or-string")
}

/// `estimateMaxStringLengthPerRequest` (schemas.go).
fn max_string_length_per_request(s: &Value) -> u64 {
    if is_int_or_string(s) {
        return MAX_REQUEST_SIZE_BYTES - 2;
    }
    match s.get("format").and_then(Value::as_str) {
        Some("duration") => MAX_DURATION_SIZE_JSON,
        Some("date") => JSON_DATE_SIZE,
        Some("date-time") => MAX_DATETIME_SIZE_JSON,
        _ => MAX_REQUEST_SIZE_BYTES - 2,
    }
}

/// `cel.Escape` (apiserver/pkg/cel/escaping.go): how a property name appears in CEL, or
/// `None` when it cannot (the field is then invisible to rules).
pub(super) fn escape(name: &str) -> Option<String> {
    const RESERVED: [&str; 20] = [
        "true",
        "false",
        "null",
        "in",
        "as",
        "break",
        "const",
        "continue",
        "else",
        "for",
        "function",
        "if",
        "import",
        "let",
        "loop",
        "package",
        "namespace",
        "return",
        "var",
        "void",
    ];
    if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit()) {
        return None;
    }
    if RESERVED.contains(&name) || name == "while" {
        return Some(format!("__{name}__"));
    }
    let mut out = String::new();
    let mut chars = name.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '_' if chars.peek() == Some(&'_') => {
                chars.next();
                out.push_str("__underscores__");
            }
            '.' => out.push_str("__dot__"),
            '-' => out.push_str("__dash__"),
            '/' => out.push_str("__slash__"),
            c if c.is_ascii_alphanumeric() || c == '_' => out.push(c),
            _ => return None,
        }
    }
    Some(out)
}

/// `SchemaDeclType` (apiserver/pkg/cel/common/schemas.go) for one version.
pub(super) fn decl_type(s: &Value, is_root: bool, version: KubeVersion) -> Option<Arc<Decl>> {
    if is_int_or_string(s) {
        // Up to 1.33 an int-or-string is sized at the whole request whatever its maxLength;
        // 1.34 bounds it by maxLength (commit "Fix IntOrString cost estimation when schema
        // has a MaxLength constraint").
        let max = match get_u64(s, "maxLength") {
            Some(len) if version.minor >= 34 => len.saturating_mul(4),
            _ => max_string_length_per_request(s),
        };
        return Some(Arc::new(Decl {
            kind: DeclKind::Dyn,
            max_elements: max,
            min_size: 1,
        }));
    }
    let with_meta;
    let s = if is_root {
        with_meta = with_type_and_object_meta(s);
        &with_meta
    } else {
        s
    };
    match type_of(s) {
        Some("array") => {
            let items = s.get("items").filter(|i| i.is_object())?;
            let item = decl_type(items, get_bool(items, "x-kubernetes-embedded-resource"), version)?;
            let max = get_u64(s, "maxItems").unwrap_or((MAX_REQUEST_SIZE_BYTES - 2) / (item.min_size + 1));
            Some(Arc::new(Decl {
                kind: DeclKind::List(item),
                max_elements: max,
                min_size: 2,
            }))
        }
        Some("object") => {
            if let Some(additional) = additional_schema(s) {
                let value = decl_type(
                    additional,
                    get_bool(additional, "x-kubernetes-embedded-resource"),
                    version,
                )?;
                let max = get_u64(s, "maxProperties")
                    .unwrap_or((MAX_REQUEST_SIZE_BYTES - 2) / (value.min_size + 6));
                return Some(Arc::new(Decl {
                    kind: DeclKind::Map(value),
                    max_elements: max,
                    min_size: 2,
                }));
            }
            let required: Vec<&str> = s
                .get("required")
                .and_then(Value::as_array)
                .map(|r| r.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            let mut fields = BTreeMap::new();
            let mut min_size = 2u64;
            for (name, prop) in properties(s).into_iter().flatten() {
                let Some(field) = decl_type(prop, get_bool(prop, "x-kubernetes-embedded-resource"), version)
                else {
                    continue;
                };
                if required.contains(&name.as_str()) && prop.get("default").is_none() {
                    min_size += name.len() as u64 + field.min_size + 4;
                }
                if let Some(escaped) = escape(name) {
                    fields.insert(escaped, field);
                }
            }
            Some(Arc::new(Decl {
                kind: DeclKind::Object(fields),
                max_elements: 0,
                min_size,
            }))
        }
        Some("string") => {
            let format = s.get("format").and_then(Value::as_str);
            let (kind, min) = match format {
                Some("byte") => (DeclKind::Bytes, MIN_STRING_SIZE),
                Some("duration") => (DeclKind::Duration, MIN_DURATION_SIZE_JSON),
                Some("date") => (DeclKind::Timestamp, JSON_DATE_SIZE),
                Some("date-time") => (DeclKind::Timestamp, MIN_DATETIME_SIZE_JSON),
                _ => (DeclKind::String, MIN_STRING_SIZE),
            };
            let max = match (&kind, get_u64(s, "maxLength")) {
                // Durations and timestamps are sized by their format, never by maxLength.
                (DeclKind::Duration | DeclKind::Timestamp, _) => max_string_length_per_request(s),
                (DeclKind::Bytes, Some(len)) => len,
                (DeclKind::String, Some(len)) => len.saturating_mul(4),
                (DeclKind::String, None) => match s.get("enum").and_then(Value::as_array) {
                    // The longest enum value (from 1.29).
                    Some(values) if !values.is_empty() && version.minor >= 29 => values
                        .iter()
                        .filter_map(Value::as_str)
                        .map(|v| v.len() as u64)
                        .max()
                        .unwrap_or(0),
                    _ => max_string_length_per_request(s),
                },
                _ => max_string_length_per_request(s),
            };
            Some(Arc::new(Decl {
                kind,
                max_elements: max,
                min_size: min,
            }))
        }
        Some("boolean") => Some(Arc::new(Decl::simple(DeclKind::Bool, MIN_BOOL_SIZE))),
        Some("number") => Some(Arc::new(Decl::simple(DeclKind::Double, MIN_NUMBER_SIZE))),
        Some("integer") => Some(Arc::new(Decl::simple(DeclKind::Int, MIN_NUMBER_SIZE))),
        _ => None,
    }
}

/// `WithTypeAndObjectMeta` (schemas.go): `kind`, `apiVersion` and `metadata.name` /
/// `metadata.generateName` are visible to rules at a resource's root.
fn with_type_and_object_meta(s: &Value) -> Value {
    let mut s = s.clone();
    if let Some(obj) = s.as_object_mut() {
        let props = obj
            .entry("properties")
            .or_insert_with(|| Value::Object(serde_json::Map::new()));
        if let Some(props) = props.as_object_mut() {
            props.insert("kind".into(), serde_json::json!({"type": "string"}));
            props.insert("apiVersion".into(), serde_json::json!({"type": "string"}));
            props.insert(
                "metadata".into(),
                serde_json::json!({"type": "object", "properties": {
                    "name": {"type": "string"}, "generateName": {"type": "string"}}}),
            );
        }
    }
    s
}

/// Printer columns (`ValidateCustomResourceColumnDefinition`, validation.go).
pub(super) fn check_printer_column(column: &Value, path: &str, report: &mut VersionReport) {
    const SOURCE: &str = "apiextensions-apiserver validation.go (ValidateCustomResourceColumnDefinition)";
    let mut refuse = |message: String| {
        report.findings.push(Finding {
            severity: Severity::Refused,
            path: path.to_owned(),
            message,
            source: SOURCE,
        })
    };
    if column
        .get("name")
        .and_then(Value::as_str)
        .is_none_or(str::is_empty)
    {
        refuse("name: Required value".into());
    }
    match column.get("type").and_then(Value::as_str) {
        Some("integer" | "number" | "string" | "boolean" | "date") => {}
        other => refuse(format!(
            "type {other:?}: must be one of boolean, date, integer, number, string"
        )),
    }
    if let Some(format) = column.get("format").and_then(Value::as_str)
        && ![
            "int32",
            "int64",
            "float",
            "double",
            "byte",
            "date",
            "date-time",
            "password",
        ]
        .contains(&format)
    {
        refuse(format!("format {format:?} is not one the API server knows"));
    }
    match column.get("jsonPath").and_then(Value::as_str) {
        Some(p) if p.starts_with('.') => {}
        Some(p) => refuse(format!(
            "jsonPath {p:?} must be a simple json path starting with ."
        )),
        None => refuse("jsonPath: Required value".into()),
    }
    if column
        .get("priority")
        .and_then(Value::as_i64)
        .is_some_and(|p| p < 0)
    {
        refuse("priority must be non-negative".into());
    }
}

/// Everything about one version's `openAPIV3Schema`.
pub(super) fn check_version_schema(
    schema: &Value,
    path: &str,
    version: KubeVersion,
    report: &mut VersionReport,
    total: &mut u64,
) {
    let before = report.findings.len();
    structural(schema, path, Position::Root, report);
    let structural_errors = report.findings[before..]
        .iter()
        .any(|f| f.severity == Severity::Refused);
    // As the API server: "If any schema related validation errors have been found at this
    // level or deeper, skip CEL expression validation."
    if structural_errors {
        return;
    }
    let mut walk = RuleWalk {
        version,
        report,
        total,
    };
    walk.node(schema, path, true, Some(1), false);
}

/// Where a schema node sits, for the structural rules that depend on it.
#[derive(Clone, Copy, PartialEq)]
enum Position {
    Root,
    Property,
    Items,
    Additional,
}

/// The structural-schema rules (apiextensions-apiserver pkg/apiserver/schema/validation.go,
/// `validateStructuralInvariants` and `validateStructuralCompleteness`; and validation.go
/// for `items`, `additionalProperties` with `properties`, and `pattern`).
fn structural(s: &Value, path: &str, position: Position, report: &mut VersionReport) {
    const SOURCE: &str = "apiextensions-apiserver pkg/apiserver/schema/validation.go";
    let mut refuse = |at: String, message: &str| {
        report.findings.push(Finding {
            severity: Severity::Refused,
            path: at,
            message: message.to_owned(),
            source: SOURCE,
        })
    };
    let int_or_string = is_int_or_string(s);
    let preserve = get_bool(s, "x-kubernetes-preserve-unknown-fields");
    let ty = type_of(s);
    if int_or_string {
        if preserve {
            refuse(
                format!("{path}.x-kubernetes-preserve-unknown-fields"),
                "must be false if x-kubernetes-int-or-string is true",
            );
        }
        if get_bool(s, "x-kubernetes-embedded-resource") {
            refuse(
                format!("{path}.x-kubernetes-embedded-resource"),
                "must be false if x-kubernetes-int-or-string is true",
            );
        }
        if ty.is_some() {
            refuse(
                format!("{path}.type"),
                "must be empty if x-kubernetes-int-or-string is true",
            );
        }
    } else if ty.is_none() && !preserve {
        let message = match position {
            Position::Root => "must not be empty at the root",
            Position::Items => "must not be empty for specified array items",
            Position::Property | Position::Additional => "must not be empty for specified object fields",
        };
        refuse(format!("{path}.type"), message);
    }
    if let Some(t) = ty
        && !["string", "number", "integer", "boolean", "array", "object"].contains(&t)
    {
        refuse(
            format!("{path}.type"),
            "must be one of string, number, integer, boolean, array, object",
        );
    }
    if position == Position::Root {
        if ty != Some("object") {
            refuse(format!("{path}.type"), "must be object at the root");
        }
        if s.get("additionalProperties").is_some() {
            refuse(
                format!("{path}.additionalProperties"),
                "must not be used at the root",
            );
        }
        if let Some(meta) = properties(s).and_then(|p| p.get("metadata")) {
            let allowed = properties(meta)
                .map(|p| p.keys().all(|k| k == "name" || k == "generateName"))
                .unwrap_or(true);
            let extra = meta
                .as_object()
                .map(|m| {
                    m.keys()
                        .any(|k| !["type", "properties", "description"].contains(&k.as_str()))
                })
                .unwrap_or(false);
            if !allowed || extra {
                refuse(
                    format!("{path}.properties[metadata]"),
                    "must not specify anything other than name and generateName, but metadata is implicitly specified",
                );
            }
        }
    }
    if ty == Some("array") && s.get("items").is_none() {
        refuse(format!("{path}.items"), "must be specified");
    }
    if s.get("additionalProperties").is_some() && s.get("properties").is_some() {
        refuse(
            format!("{path}.additionalProperties"),
            "additionalProperties and properties are mutual exclusive",
        );
    }
    if let Some(pattern) = s.get("pattern").and_then(Value::as_str)
        && let Err(e) = regex::Regex::new(pattern)
    {
        refuse(
            format!("{path}.pattern"),
            &format!("must be a valid regular expression, but isn't: {e}"),
        );
    }
    if s.get("x-kubernetes-list-type").and_then(Value::as_str) == Some("map") {
        let keys: Vec<&str> = s
            .get("x-kubernetes-list-map-keys")
            .and_then(Value::as_array)
            .map(|k| k.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        if keys.is_empty() {
            refuse(
                format!("{path}.x-kubernetes-list-map-keys"),
                "must not be empty if x-kubernetes-list-type is map",
            );
        }
        let item = s.get("items");
        let required: Vec<&str> = item
            .and_then(|i| i.get("required"))
            .and_then(Value::as_array)
            .map(|r| r.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        for key in keys {
            match item.and_then(properties).and_then(|p| p.get(key)) {
                None => refuse(
                    format!("{path}.x-kubernetes-list-map-keys"),
                    "entries must all be names of item properties",
                ),
                Some(k) => {
                    if matches!(type_of(k), Some("array" | "object")) {
                        refuse(
                            format!("{path}.items.properties[{key}].type"),
                            "must be a scalar type if parent array's x-kubernetes-list-type is map",
                        );
                    }
                    if !required.contains(&key) && k.get("default").is_none() {
                        refuse(
                            format!("{path}.items.properties[{key}]"),
                            "must be required or have a default if it is a map list key",
                        );
                    }
                }
            }
        }
    }
    for (name, prop) in properties(s).into_iter().flatten() {
        structural(
            prop,
            &format!("{path}.properties[{name}]"),
            Position::Property,
            report,
        );
    }
    if let Some(items) = s.get("items").filter(|i| i.is_object()) {
        structural(items, &format!("{path}.items"), Position::Items, report);
    }
    if let Some(additional) = additional_schema(s) {
        structural(
            additional,
            &format!("{path}.additionalProperties"),
            Position::Additional,
            report,
        );
    }
}

/// `ValidFieldPath` (apiextensions-apiserver pkg/apiserver/schema/cel/validation.go): a rule's
/// `fieldPath` must name a field of the node the rule is on.
fn field_path_valid(schema: &Value, path: &str) -> bool {
    let mut node = schema;
    let mut rest = path;
    while !rest.is_empty() {
        let name: String;
        if let Some(r) = rest.strip_prefix('.') {
            let end = r.find(['.', '[']).unwrap_or(r.len());
            if end == 0 {
                return false;
            }
            name = r[..end].to_owned();
            rest = &r[end..];
        } else if let Some(r) = rest.strip_prefix("['") {
            let Some(end) = r.find("']") else {
                return false;
            };
            name = r[..end].replace("\\'", "'");
            rest = &r[end + 2..];
        } else {
            return false;
        }
        node = if let Some(props) = properties(node) {
            match props.get(&name) {
                Some(p) => p,
                None => return false,
            }
        } else if let Some(additional) = additional_schema(node) {
            additional
        } else {
            return false;
        };
    }
    true
}

/// The walk over rule-bearing nodes, with how often each can run.
struct RuleWalk<'a> {
    version: KubeVersion,
    report: &'a mut VersionReport,
    total: &'a mut u64,
}

impl RuleWalk<'_> {
    /// `cardinality`: how many times this node can appear per object (`None`: unbounded).
    /// `in_scope`: whether an ancestor carries rules (so this node's size matters).
    fn node(&mut self, s: &Value, path: &str, is_root: bool, cardinality: Option<u64>, in_scope: bool) {
        let rules = s.get("x-kubernetes-validations").and_then(Value::as_array);
        let has_rules = rules.is_some_and(|r| !r.is_empty());
        let in_scope = in_scope || has_rules;
        if in_scope {
            self.hazards(s, path);
        }
        if let Some(rules) = rules.filter(|r| !r.is_empty()) {
            let decl = decl_type(
                s,
                is_root || get_bool(s, "x-kubernetes-embedded-resource"),
                self.version,
            );
            for (i, rule) in rules.iter().enumerate() {
                self.rule(
                    s,
                    decl.as_ref(),
                    rule,
                    &format!("{path}.x-kubernetes-validations[{i}]"),
                    path,
                    cardinality,
                );
            }
        }
        // `extractMaxElements` (cel_validation.go) of this node, for its children.
        let times = |n: Option<u64>| match (cardinality, n) {
            (Some(c), Some(n)) => Some(c.saturating_mul(n)),
            _ => None,
        };
        for (name, prop) in properties(s).into_iter().flatten() {
            self.node(
                prop,
                &format!("{path}.properties[{name}]"),
                false,
                times(Some(1)),
                in_scope,
            );
        }
        if let Some(items) = s.get("items").filter(|i| i.is_object()) {
            let child = times(get_u64(s, "maxItems"));
            self.node(items, &format!("{path}.items"), false, child, in_scope);
        }
        if let Some(additional) = additional_schema(s) {
            let child = times(get_u64(s, "maxProperties"));
            self.node(
                additional,
                &format!("{path}.additionalProperties"),
                false,
                child,
                in_scope,
            );
        }
    }

    /// What makes a rule's cost rest on the request size rather than on the schema.
    fn hazards(&mut self, s: &Value, path: &str) {
        const SOURCE: &str = "apiserver pkg/cel/common/schemas.go (SchemaDeclType)";
        let unbounded = MAX_REQUEST_SIZE_BYTES - 2;
        let message = if is_int_or_string(s) {
            let decl = decl_type(s, false, self.version);
            match decl.map(|d| d.max_elements) {
                Some(size) if size >= unbounded => Some(format!(
                    "x-kubernetes-int-or-string under a rule is sized at {size} bytes (the whole request){}: \
                     every string operation on it is estimated at that size",
                    if get_u64(s, "maxLength").is_some() {
                        " up to Kubernetes 1.33, whatever its maxLength"
                    } else {
                        "; add maxLength (honoured from Kubernetes 1.34)"
                    }
                )),
                _ => None,
            }
        } else {
            match type_of(s) {
                Some("string")
                    if s.get("maxLength").is_none()
                        && s.get("enum").is_none()
                        && !matches!(
                            s.get("format").and_then(Value::as_str),
                            Some("duration" | "date" | "date-time")
                        ) =>
                {
                    Some("string without maxLength under a rule: estimated at the whole request (3 MiB); add maxLength".to_owned())
                }
                Some("array") if s.get("maxItems").is_none() => Some(
                    "list without maxItems under a rule: estimated to hold as many items as fit in a request; add maxItems".to_owned(),
                ),
                Some("object") if additional_schema(s).is_some() && s.get("maxProperties").is_none() => Some(
                    "map without maxProperties under a rule: estimated to hold as many entries as fit in a request; add maxProperties"
                        .to_owned(),
                ),
                _ => None,
            }
        };
        if let Some(message) = message {
            self.report.findings.push(Finding {
                severity: Severity::Hazard,
                path: path.to_owned(),
                message,
                source: SOURCE,
            });
        }
    }

    fn refuse(&mut self, path: String, message: String, source: &'static str) {
        self.report.findings.push(Finding {
            severity: Severity::Refused,
            path,
            message,
            source,
        });
    }

    fn rule(
        &mut self,
        schema: &Value,
        decl: Option<&Arc<Decl>>,
        rule: &Value,
        path: &str,
        node_path: &str,
        cardinality: Option<u64>,
    ) {
        const FIELDS: &str = "apiextensions-apiserver validation.go (x-kubernetes-validations)";
        let text = rule.get("rule").and_then(Value::as_str).unwrap_or("");
        let message = rule.get("message").and_then(Value::as_str);
        let message_expression = rule.get("messageExpression").and_then(Value::as_str);
        let reason = rule.get("reason").and_then(Value::as_str);
        let field_path = rule.get("fieldPath").and_then(Value::as_str);
        let mut features = vec![Feature::ValidationRules];
        if text.trim().is_empty() {
            self.refuse(format!("{path}.rule"), "rule is not specified".into(), FIELDS);
        }
        if let Some(m) = message {
            if m.trim().is_empty() {
                self.refuse(
                    format!("{path}.message"),
                    "must be non-empty if specified".into(),
                    FIELDS,
                );
            } else if m.trim().contains(['\n', '\r']) {
                self.refuse(
                    format!("{path}.message"),
                    "must not contain line breaks".into(),
                    FIELDS,
                );
            }
        } else if text.trim().contains(['\n', '\r']) {
            self.refuse(
                format!("{path}.message"),
                "message must be specified if rule contains line breaks".into(),
                FIELDS,
            );
        }
        if let Some(m) = message_expression {
            features.push(Feature::MessageExpression);
            if m.trim().is_empty() {
                self.refuse(
                    format!("{path}.messageExpression"),
                    "messageExpression must be non-empty if specified".into(),
                    FIELDS,
                );
            }
        }
        if let Some(r) = reason {
            features.push(Feature::Reason);
            if ![
                "FieldValueRequired",
                "FieldValueForbidden",
                "FieldValueInvalid",
                "FieldValueDuplicate",
            ]
            .contains(&r)
            {
                self.refuse(
                    format!("{path}.reason"),
                    format!("{r:?}: supported values: FieldValueDuplicate, FieldValueForbidden, FieldValueInvalid, FieldValueRequired"),
                    FIELDS,
                );
            }
        }
        if let Some(p) = field_path {
            features.push(Feature::FieldPath);
            if p.trim().is_empty() {
                self.refuse(
                    format!("{path}.fieldPath"),
                    "must be non-empty if specified".into(),
                    FIELDS,
                );
            } else if p.contains(['\n', '\r']) {
                self.refuse(
                    format!("{path}.fieldPath"),
                    "must not contain line breaks".into(),
                    FIELDS,
                );
            } else if !field_path_valid(schema, p) {
                self.refuse(
                    format!("{path}.fieldPath"),
                    format!("{p:?} must be a valid path to a field of {node_path}"),
                    FIELDS,
                );
            }
        }
        if rule.get("optionalOldSelf").is_some() {
            features.push(Feature::OptionalOldSelf);
        }

        let Some(decl) = decl else {
            self.refuse(
                path.to_owned(),
                "internal error: failed to construct type information for x-kubernetes-validations rules"
                    .into(),
                "apiextensions-apiserver validation.go",
            );
            return;
        };
        // `getExpressionCost` (validation.go): a bounded cardinality from the schema, or
        // `maxCardinality(MinSerializedSize)` (compilation.go) when a list or map above is
        // unbounded.
        let times = cardinality.unwrap_or_else(|| MAX_REQUEST_SIZE_BYTES / (decl.min_size + 1));
        if cardinality.is_none() {
            self.report.findings.push(Finding {
                severity: Severity::Hazard,
                path: path.to_owned(),
                message: format!(
                    "the rule sits under a list without maxItems or a map without maxProperties, so it is \
                     estimated to run {times} times (as many as fit in a request); add maxItems or maxProperties above it"
                ),
                source: "apiextensions-apiserver validation.go (getExpressionCost) and cel_validation.go",
            });
        }
        let compiled = cost::estimate(text, decl, self.version);
        let cost = match &compiled {
            Ok(c) => {
                features.extend(c.features.iter().copied());
                if !c.returns_bool {
                    self.refuse(
                        format!("{path}.rule"),
                        "compilation failed: cel expression must evaluate to a bool".into(),
                        "apiextensions-apiserver schema/cel/compilation.go",
                    );
                }
                let total = multiply_guarded(c.cost.max, times);
                if total > RULE_COST_LIMIT {
                    self.refuse(
                        format!("{path}.rule"),
                        cost_error("estimated rule cost", total, RULE_COST_LIMIT),
                        "apiextensions-apiserver validation.go (StaticEstimatedCostLimit)",
                    );
                }
                *self.total = self.total.saturating_add(total);
                Some(total)
            }
            Err(e) => {
                self.refuse(
                    format!("{path}.rule"),
                    e.to_string(),
                    "apiextensions-apiserver schema/cel/compilation.go",
                );
                None
            }
        };
        let message_cost = match message_expression.filter(|m| !m.trim().is_empty()) {
            None => None,
            Some(m) => match cost::estimate(m, decl, self.version) {
                Ok(c) if !c.returns_string => {
                    self.refuse(
                        format!("{path}.messageExpression"),
                        "messageExpression must evaluate to a string".into(),
                        "apiextensions-apiserver schema/cel/compilation.go",
                    );
                    None
                }
                Ok(c) => {
                    features.extend(c.features.iter().copied());
                    // NB: not multiplied by the cardinality (validation.go).
                    if c.cost.max > RULE_COST_LIMIT {
                        self.refuse(
                            format!("{path}.messageExpression"),
                            cost_error("estimated messageExpression cost", c.cost.max, RULE_COST_LIMIT),
                            "apiextensions-apiserver validation.go (StaticEstimatedCostLimit)",
                        );
                    }
                    *self.total = self.total.saturating_add(c.cost.max);
                    Some(c.cost.max)
                }
                Err(e) => {
                    self.refuse(
                        format!("{path}.messageExpression"),
                        format!("messageExpression compilation failed: {e}"),
                        "apiextensions-apiserver schema/cel/compilation.go",
                    );
                    None
                }
            },
        };
        features.sort();
        features.dedup();
        for feature in &features {
            if feature.since() > self.version {
                self.refuse(
                    path.to_owned(),
                    format!(
                        "uses {}, which needs Kubernetes {} or later (an older API server refuses the rule or drops the field)",
                        feature.describe(),
                        feature.since()
                    ),
                    "apiserver pkg/cel/environment/base.go and apiextensions types_jsonschema.go",
                );
            }
        }
        self.report.rules.push(RuleReport {
            path: node_path.to_owned(),
            rule: text.to_owned(),
            cost,
            message_cost,
            cardinality: times,
            features,
        });
    }
}

/// `multiplyWithOverflowGuard` (validation.go).
fn multiply_guarded(cost: u64, cardinality: u64) -> u64 {
    if cost == 0 {
        0
    } else {
        cost.saturating_mul(cardinality)
    }
}
