//! CEL rules as the API server compiles them: type-checked against the schema's
//! declarations, then cost-estimated with cel-go's estimator (`checker/cost.go`, v0.26 as
//! Kubernetes 1.34-1.36 pin it; the parts used here are unchanged since v0.17, 1.29) and the
//! Kubernetes libraries' estimator (`apiserver/pkg/cel/library/cost.go`).
//!
//! The type checker covers what a CRD rule is likely to use: the standard operators and
//! conversions, `size`, `has`, the comprehension macros, string matching, the strings
//! extension, the list and regex libraries and the quantity library. Anything else is an
//! error ("not modelled"), so a rule this check cannot price never passes as cheap.

use std::{
    collections::{BTreeSet, HashMap},
    sync::Arc,
};

use cel::common::ast::{ComprehensionExpr, EntryExpr, Expr, IdedExpr, LiteralValue};

use super::{
    Feature, KubeVersion,
    decl::{Decl, DeclKind},
};

/// `common.StringTraversalCostFactor` (cel-go common/cost.go).
const STRING_TRAVERSAL: f64 = 0.1;
/// `common.RegexStringLengthCostFactor`.
const REGEX_LENGTH: f64 = 0.25;
/// `common.ListCreateBaseCost`, `MapCreateBaseCost`.
const LIST_CREATE: u64 = 10;
const MAP_CREATE: u64 = 30;
/// The accumulator variables of the comprehension macros.
const ACCUMULATORS: [&str; 2] = ["@result", "__result__"];

/// A size range (`checker.SizeEstimate`): string length, list or map entries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Size {
    /// Smallest.
    pub min: u64,
    /// Largest; `u64::MAX` when unbounded.
    pub max: u64,
}

/// A cost range (`checker.CostEstimate`), in CEL cost units.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cost {
    /// Cheapest evaluation.
    pub min: u64,
    /// Most expensive evaluation: what the API server compares with its limits.
    pub max: u64,
}

const UNKNOWN_SIZE: Size = Size {
    min: 0,
    max: u64::MAX,
};

/// `multiplyByCostFactor`: rounded up, saturating at 2^64.
fn by_factor(x: u64, factor: f64) -> u64 {
    let x = x as f64;
    if x > 0.0 && factor > 0.0 && x > u64::MAX as f64 / factor {
        return u64::MAX;
    }
    let product = (x * factor).ceil();
    if product >= 18_446_744_073_709_551_616.0 {
        u64::MAX
    } else {
        product as u64
    }
}

impl Size {
    fn fixed(n: u64) -> Self {
        Size { min: n, max: n }
    }
    fn add(self, o: Size) -> Size {
        Size {
            min: self.min.saturating_add(o.min),
            max: self.max.saturating_add(o.max),
        }
    }
    fn multiply(self, o: Size) -> Size {
        Size {
            min: self.min.saturating_mul(o.min),
            max: self.max.saturating_mul(o.max),
        }
    }
    fn union(self, o: Size) -> Size {
        Size {
            min: self.min.min(o.min),
            max: self.max.max(o.max),
        }
    }
    fn by_factor(self, factor: f64) -> Cost {
        Cost {
            min: by_factor(self.min, factor),
            max: by_factor(self.max, factor),
        }
    }
    fn times_cost(self, c: Cost) -> Cost {
        Cost {
            min: self.min.saturating_mul(c.min),
            max: self.max.saturating_mul(c.max),
        }
    }
}

impl Cost {
    fn fixed(n: u64) -> Self {
        Cost { min: n, max: n }
    }
    fn add(self, o: Cost) -> Cost {
        Cost {
            min: self.min.saturating_add(o.min),
            max: self.max.saturating_add(o.max),
        }
    }
    fn multiply(self, o: Cost) -> Cost {
        Cost {
            min: self.min.saturating_mul(o.min),
            max: self.max.saturating_mul(o.max),
        }
    }
    fn union(self, o: Cost) -> Cost {
        Cost {
            min: self.min.min(o.min),
            max: self.max.max(o.max),
        }
    }
}

/// Why an expression does not compile (or cannot be priced here).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CompileError {
    /// A syntax error.
    #[error("compilation failed: syntax error: {0}")]
    Syntax(String),
    /// A type error, as cel-go's checker reports it.
    #[error("compilation failed: {0}")]
    Type(String),
    /// A literal the API server's literal validators refuse.
    #[error("compilation failed: {0}")]
    Literal(String),
    /// Something this check does not model: it cannot say what the API server estimates.
    #[error(
        "{0} is not modelled by the admission check (crates/api/src/crd/admission/cost.rs): add it, with its cost from \
         apiserver pkg/cel/library/cost.go or cel-go checker/cost.go, before using it in a rule"
    )]
    NotModelled(String),
}

/// What compiling one expression yields.
#[derive(Debug)]
pub(super) struct Estimate {
    /// The estimated cost of one evaluation.
    pub cost: Cost,
    /// What the expression needs beyond the base environment.
    pub features: BTreeSet<Feature>,
    /// Whether it evaluates to a bool (a rule must).
    pub returns_bool: bool,
    /// Whether it evaluates to a string (a `messageExpression` must).
    pub returns_string: bool,
}

/// A CEL type.
#[derive(Clone, Debug, PartialEq)]
enum Ty {
    Bool,
    Int,
    Uint,
    Double,
    String,
    Bytes,
    Duration,
    Timestamp,
    Null,
    Dyn,
    Type,
    Quantity,
    List(Box<Ty>),
    Map(Box<Ty>, Box<Ty>),
    Object(Arc<Decl>),
}

impl Ty {
    fn of(decl: &Arc<Decl>) -> Ty {
        match &decl.kind {
            DeclKind::Object(_) => Ty::Object(decl.clone()),
            DeclKind::Map(v) => Ty::Map(Box::new(Ty::String), Box::new(Ty::of(v))),
            DeclKind::List(e) => Ty::List(Box::new(Ty::of(e))),
            DeclKind::String => Ty::String,
            DeclKind::Bytes => Ty::Bytes,
            DeclKind::Duration => Ty::Duration,
            DeclKind::Timestamp => Ty::Timestamp,
            DeclKind::Int => Ty::Int,
            DeclKind::Double => Ty::Double,
            DeclKind::Bool => Ty::Bool,
            DeclKind::Dyn => Ty::Dyn,
        }
    }

    fn name(&self) -> String {
        match self {
            Ty::Bool => "bool".into(),
            Ty::Int => "int".into(),
            Ty::Uint => "uint".into(),
            Ty::Double => "double".into(),
            Ty::String => "string".into(),
            Ty::Bytes => "bytes".into(),
            Ty::Duration => "google.protobuf.Duration".into(),
            Ty::Timestamp => "google.protobuf.Timestamp".into(),
            Ty::Null => "null_type".into(),
            Ty::Dyn => "dyn".into(),
            Ty::Type => "type".into(),
            Ty::Quantity => "kubernetes.Quantity".into(),
            Ty::List(e) => format!("list({})", e.name()),
            Ty::Map(k, v) => format!("map({}, {})", k.name(), v.name()),
            Ty::Object(_) => "object".into(),
        }
    }

    /// `isScalar` (cost.go): known to be of constant size.
    fn is_scalar(&self) -> bool {
        matches!(
            self,
            Ty::Bool | Ty::Double | Ty::Duration | Ty::Int | Ty::Timestamp | Ty::Uint
        )
    }
}

/// A parameter of an overload: a concrete type or a type parameter.
#[derive(Clone, Copy, Debug, PartialEq)]
enum P {
    Bool,
    Int,
    Uint,
    Double,
    String,
    Bytes,
    Duration,
    Timestamp,
    Dyn,
    Type,
    Quantity,
    /// Type parameter A.
    A,
    /// Type parameter B.
    B,
    /// list(A).
    ListA,
    /// list(string).
    ListString,
    /// map(A, B).
    MapAB,
}

/// One overload: its cel-go id, whether it is a member function (the target is the first
/// parameter), its parameters and result, and what it needs.
struct Overload {
    id: &'static str,
    member: bool,
    params: &'static [P],
    result: P,
    feature: Feature,
}

const fn ov(id: &'static str, params: &'static [P], result: P) -> Overload {
    Overload {
        id,
        member: false,
        params,
        result,
        feature: Feature::BaseLibrary,
    }
}

const fn member(id: &'static str, params: &'static [P], result: P) -> Overload {
    Overload {
        id,
        member: true,
        params,
        result,
        feature: Feature::BaseLibrary,
    }
}

const fn needs(mut o: Overload, feature: Feature) -> Overload {
    o.feature = feature;
    o
}

const CROSS: Feature = Feature::CrossTypeNumericComparisons;
const QTY: Feature = Feature::QuantityLibrary;

/// The overloads of a function, as the standard environment and the Kubernetes libraries
/// declare them (cel-go common/stdlib/standard.go, ext/strings.go; apiserver
/// pkg/cel/library/{lists,regex,quantity}.go).
fn overloads(function: &str) -> Option<&'static [Overload]> {
    use P::*;
    macro_rules! ordering {
        ($p:literal) => {
            &[
                ov(concat!($p, "_bool"), &[Bool, Bool], Bool),
                ov(concat!($p, "_int64"), &[Int, Int], Bool),
                ov(concat!($p, "_uint64"), &[Uint, Uint], Bool),
                ov(concat!($p, "_double"), &[Double, Double], Bool),
                ov(concat!($p, "_string"), &[String, String], Bool),
                ov(concat!($p, "_bytes"), &[Bytes, Bytes], Bool),
                ov(concat!($p, "_timestamp"), &[Timestamp, Timestamp], Bool),
                ov(concat!($p, "_duration"), &[Duration, Duration], Bool),
                needs(
                    ov(concat!($p, "_int64_double"), &[Int, Double], Bool),
                    CROSS,
                ),
                needs(ov(concat!($p, "_int64_uint64"), &[Int, Uint], Bool), CROSS),
                needs(
                    ov(concat!($p, "_uint64_double"), &[Uint, Double], Bool),
                    CROSS,
                ),
                needs(ov(concat!($p, "_uint64_int64"), &[Uint, Int], Bool), CROSS),
                needs(
                    ov(concat!($p, "_double_int64"), &[Double, Int], Bool),
                    CROSS,
                ),
                needs(
                    ov(concat!($p, "_double_uint64"), &[Double, Uint], Bool),
                    CROSS,
                ),
            ]
        };
    }
    Some(match function {
        "_==_" => const { &[ov("equals", &[A, A], Bool)] },
        "_!=_" => const { &[ov("not_equals", &[A, A], Bool)] },
        "!_" => const { &[ov("logical_not", &[Bool], Bool)] },
        "_&&_" => const { &[ov("logical_and", &[Bool, Bool], Bool)] },
        "_||_" => const { &[ov("logical_or", &[Bool, Bool], Bool)] },
        "_?_:_" => const { &[ov("conditional", &[Bool, A, A], A)] },
        "@not_strictly_false" => const { &[ov("not_strictly_false", &[Bool], Bool)] },
        "-_" => {
            const {
                &[
                    ov("negate_int64", &[Int], Int),
                    ov("negate_double", &[Double], Double),
                ]
            }
        }
        "_<_" => const { ordering!("less") },
        "_<=_" => const { ordering!("less_equals") },
        "_>_" => const { ordering!("greater") },
        "_>=_" => const { ordering!("greater_equals") },
        "_+_" => {
            const {
                &[
                    ov("add_int64", &[Int, Int], Int),
                    ov("add_uint64", &[Uint, Uint], Uint),
                    ov("add_double", &[Double, Double], Double),
                    ov("add_string", &[String, String], String),
                    ov("add_bytes", &[Bytes, Bytes], Bytes),
                    ov("add_list", &[ListA, ListA], ListA),
                    ov("add_timestamp_duration", &[Timestamp, Duration], Timestamp),
                    ov("add_duration_timestamp", &[Duration, Timestamp], Timestamp),
                    ov("add_duration_duration", &[Duration, Duration], Duration),
                ]
            }
        }
        "_-_" => {
            const {
                &[
                    ov("subtract_int64", &[Int, Int], Int),
                    ov("subtract_uint64", &[Uint, Uint], Uint),
                    ov("subtract_double", &[Double, Double], Double),
                    ov("subtract_timestamp_timestamp", &[Timestamp, Timestamp], Duration),
                    ov("subtract_timestamp_duration", &[Timestamp, Duration], Timestamp),
                    ov("subtract_duration_duration", &[Duration, Duration], Duration),
                ]
            }
        }
        "_*_" => {
            const {
                &[
                    ov("multiply_int64", &[Int, Int], Int),
                    ov("multiply_uint64", &[Uint, Uint], Uint),
                    ov("multiply_double", &[Double, Double], Double),
                ]
            }
        }
        "_/_" => {
            const {
                &[
                    ov("divide_int64", &[Int, Int], Int),
                    ov("divide_uint64", &[Uint, Uint], Uint),
                    ov("divide_double", &[Double, Double], Double),
                ]
            }
        }
        "_%_" => {
            const {
                &[
                    ov("modulo_int64", &[Int, Int], Int),
                    ov("modulo_uint64", &[Uint, Uint], Uint),
                ]
            }
        }
        "_[_]" => {
            const {
                &[
                    ov("index_list", &[ListA, Int], A),
                    ov("index_map", &[MapAB, A], B),
                ]
            }
        }
        "@in" => const { &[ov("in_list", &[A, ListA], Bool), ov("in_map", &[A, MapAB], Bool)] },
        "size" => {
            const {
                &[
                    ov("size_string", &[String], Int),
                    ov("size_bytes", &[Bytes], Int),
                    ov("size_list", &[ListA], Int),
                    ov("size_map", &[MapAB], Int),
                    member("string_size", &[String], Int),
                    member("bytes_size", &[Bytes], Int),
                    member("list_size", &[ListA], Int),
                    member("map_size", &[MapAB], Int),
                ]
            }
        }
        "int" => {
            const {
                &[
                    ov("int64_to_int64", &[Int], Int),
                    ov("uint64_to_int64", &[Uint], Int),
                    ov("double_to_int64", &[Double], Int),
                    ov("string_to_int64", &[String], Int),
                    ov("timestamp_to_int64", &[Timestamp], Int),
                ]
            }
        }
        "uint" => {
            const {
                &[
                    ov("uint64_to_uint64", &[Uint], Uint),
                    ov("int64_to_uint64", &[Int], Uint),
                    ov("double_to_uint64", &[Double], Uint),
                    ov("string_to_uint64", &[String], Uint),
                ]
            }
        }
        "double" => {
            const {
                &[
                    ov("double_to_double", &[Double], Double),
                    ov("int64_to_double", &[Int], Double),
                    ov("uint64_to_double", &[Uint], Double),
                    ov("string_to_double", &[String], Double),
                ]
            }
        }
        "bool" => {
            const {
                &[
                    ov("bool_to_bool", &[Bool], Bool),
                    ov("string_to_bool", &[String], Bool),
                ]
            }
        }
        "string" => {
            const {
                &[
                    ov("string_to_string", &[String], String),
                    ov("bool_to_string", &[Bool], String),
                    ov("int64_to_string", &[Int], String),
                    ov("uint64_to_string", &[Uint], String),
                    ov("double_to_string", &[Double], String),
                    ov("bytes_to_string", &[Bytes], String),
                    ov("timestamp_to_string", &[Timestamp], String),
                    ov("duration_to_string", &[Duration], String),
                ]
            }
        }
        "bytes" => {
            const {
                &[
                    ov("bytes_to_bytes", &[Bytes], Bytes),
                    ov("string_to_bytes", &[String], Bytes),
                ]
            }
        }
        "duration" => {
            const {
                &[
                    ov("duration_to_duration", &[Duration], Duration),
                    ov("string_to_duration", &[String], Duration),
                ]
            }
        }
        "timestamp" => {
            const {
                &[
                    ov("timestamp_to_timestamp", &[Timestamp], Timestamp),
                    ov("string_to_timestamp", &[String], Timestamp),
                    ov("int64_to_timestamp", &[Int], Timestamp),
                ]
            }
        }
        "dyn" => const { &[ov("to_dyn", &[A], Dyn)] },
        "type" => const { &[ov("type", &[A], Type)] },
        "matches" => {
            const {
                &[
                    ov("matches", &[String, String], Bool),
                    member("matches_string", &[String, String], Bool),
                ]
            }
        }
        "contains" => const { &[member("contains_string", &[String, String], Bool)] },
        "startsWith" => const { &[member("starts_with_string", &[String, String], Bool)] },
        "endsWith" => const { &[member("ends_with_string", &[String, String], Bool)] },
        "getHours" => const { &[member("duration_to_hours", &[Duration], Int)] },
        "getMinutes" => const { &[member("duration_to_minutes", &[Duration], Int)] },
        "getSeconds" => const { &[member("duration_to_seconds", &[Duration], Int)] },
        "getMilliseconds" => const { &[member("duration_to_milliseconds", &[Duration], Int)] },
        // The strings extension, version 0 (every version has at least that).
        "charAt" => const { &[member("string_char_at_int", &[String, Int], String)] },
        "indexOf" => {
            const {
                &[
                    member("string_index_of_string", &[String, String], Int),
                    member("string_index_of_string_int", &[String, String, Int], Int),
                    member("list_a_index_of_int", &[ListA, A], Int),
                ]
            }
        }
        "lastIndexOf" => {
            const {
                &[
                    member("string_last_index_of_string", &[String, String], Int),
                    member("string_last_index_of_string_int", &[String, String, Int], Int),
                    member("list_a_last_index_of_int", &[ListA, A], Int),
                ]
            }
        }
        "lowerAscii" => const { &[member("string_lower_ascii", &[String], String)] },
        "upperAscii" => const { &[member("string_upper_ascii", &[String], String)] },
        "trim" => const { &[member("string_trim", &[String], String)] },
        "substring" => {
            const {
                &[
                    member("string_substring_int", &[String, Int], String),
                    member("string_substring_int_int", &[String, Int, Int], String),
                ]
            }
        }
        "replace" => {
            const {
                &[
                    member("string_replace_string_string", &[String, String, String], String),
                    member(
                        "string_replace_string_string_int",
                        &[String, String, String, Int],
                        String,
                    ),
                ]
            }
        }
        "split" => {
            const {
                &[
                    member("string_split_string", &[String, String], ListString),
                    member("string_split_string_int", &[String, String, Int], ListString),
                ]
            }
        }
        // The Kubernetes list and regex libraries.
        "isSorted" => const { &[member("list_is_sorted", &[ListA], Bool)] },
        "sum" => const { &[member("list_sum", &[ListA], A)] },
        "min" => const { &[member("list_min", &[ListA], A)] },
        "max" => const { &[member("list_max", &[ListA], A)] },
        "find" => const { &[member("string_find_string", &[String, String], String)] },
        "findAll" => {
            const {
                &[
                    member("string_find_all_string", &[String, String], ListString),
                    member("string_find_all_string_int", &[String, String, Int], ListString),
                ]
            }
        }
        // The Kubernetes quantity library.
        "quantity" => const { &[needs(ov("string_to_quantity", &[String], Quantity), QTY)] },
        "isQuantity" => const { &[needs(ov("is_quantity_string", &[String], Bool), QTY)] },
        "isLessThan" => {
            const {
                &[needs(
                    member("quantity_is_less_than", &[Quantity, Quantity], Bool),
                    QTY,
                )]
            }
        }
        "isGreaterThan" => {
            const {
                &[needs(
                    member("quantity_is_greater_than", &[Quantity, Quantity], Bool),
                    QTY,
                )]
            }
        }
        "compareTo" => {
            const {
                &[needs(
                    member("quantity_compare_to", &[Quantity, Quantity], Int),
                    QTY,
                )]
            }
        }
        "add" => {
            const {
                &[
                    needs(member("quantity_add", &[Quantity, Quantity], Quantity), QTY),
                    needs(member("quantity_add_int", &[Quantity, Int], Quantity), QTY),
                ]
            }
        }
        "sub" => {
            const {
                &[
                    needs(member("quantity_sub", &[Quantity, Quantity], Quantity), QTY),
                    needs(member("quantity_sub_int", &[Quantity, Int], Quantity), QTY),
                ]
            }
        }
        "asInteger" => const { &[needs(member("quantity_get_int", &[Quantity], Int), QTY)] },
        "isInteger" => const { &[needs(member("quantity_is_integer", &[Quantity], Bool), QTY)] },
        "asApproximateFloat" => const { &[needs(member("quantity_get_float", &[Quantity], Double), QTY)] },
        "sign" => const { &[needs(member("quantity_get_sign", &[Quantity], Int), QTY)] },
        _ => return None,
    })
}

/// Type-parameter bindings during overload resolution.
#[derive(Default, Clone)]
struct Bindings {
    a: Option<Ty>,
    b: Option<Ty>,
}

/// Whether `t` may be passed where `u` is expected (or the other way round): equal types,
/// `dyn` on either side, `null` for anything nullable.
fn assignable(t: &Ty, u: &Ty) -> bool {
    match (t, u) {
        (Ty::Dyn, _) | (_, Ty::Dyn) => true,
        (Ty::Null, _) | (_, Ty::Null) => true,
        (Ty::List(a), Ty::List(b)) => assignable(a, b),
        (Ty::Map(k1, v1), Ty::Map(k2, v2)) => assignable(k1, k2) && assignable(v1, v2),
        (Ty::Object(a), Ty::Object(b)) => Arc::ptr_eq(a, b) || a == b,
        _ => t == u,
    }
}

fn bind(slot: &mut Option<Ty>, t: &Ty) -> bool {
    match slot {
        Some(bound) => {
            if !assignable(bound, t) {
                return false;
            }
            if *bound == Ty::Dyn || *bound == Ty::Null {
                *slot = Some(t.clone());
            }
            true
        }
        None => {
            *slot = Some(t.clone());
            true
        }
    }
}

fn unify(p: P, t: &Ty, b: &mut Bindings) -> bool {
    let concrete = |want: Ty| assignable(&want, t);
    match p {
        P::Bool => concrete(Ty::Bool),
        P::Int => concrete(Ty::Int),
        P::Uint => concrete(Ty::Uint),
        P::Double => concrete(Ty::Double),
        P::String => concrete(Ty::String),
        P::Bytes => concrete(Ty::Bytes),
        P::Duration => concrete(Ty::Duration),
        P::Timestamp => concrete(Ty::Timestamp),
        P::Type => concrete(Ty::Type),
        P::Quantity => concrete(Ty::Quantity),
        P::Dyn => true,
        P::A => bind(&mut b.a, t),
        P::B => bind(&mut b.b, t),
        P::ListString => match t {
            Ty::List(e) => assignable(e, &Ty::String),
            Ty::Dyn => true,
            _ => false,
        },
        P::ListA => match t {
            Ty::List(e) => bind(&mut b.a, e),
            Ty::Dyn => bind(&mut b.a, &Ty::Dyn),
            _ => false,
        },
        P::MapAB => match t {
            Ty::Map(k, v) => bind(&mut b.a, k) && bind(&mut b.b, v),
            Ty::Dyn => bind(&mut b.a, &Ty::Dyn) && bind(&mut b.b, &Ty::Dyn),
            _ => false,
        },
    }
}

fn substitute(p: P, b: &Bindings) -> Ty {
    let or_dyn = |t: &Option<Ty>| t.clone().unwrap_or(Ty::Dyn);
    match p {
        P::Bool => Ty::Bool,
        P::Int => Ty::Int,
        P::Uint => Ty::Uint,
        P::Double => Ty::Double,
        P::String => Ty::String,
        P::Bytes => Ty::Bytes,
        P::Duration => Ty::Duration,
        P::Timestamp => Ty::Timestamp,
        P::Type => Ty::Type,
        P::Quantity => Ty::Quantity,
        P::Dyn => Ty::Dyn,
        P::A => or_dyn(&b.a),
        P::B => or_dyn(&b.b),
        P::ListA => Ty::List(Box::new(or_dyn(&b.a))),
        P::ListString => Ty::List(Box::new(Ty::String)),
        P::MapAB => Ty::Map(Box::new(or_dyn(&b.a)), Box::new(or_dyn(&b.b))),
    }
}

/// The checker's results: a type per expression, the overloads per call.
struct Checked {
    types: HashMap<u64, Ty>,
    overloads: HashMap<u64, Vec<&'static str>>,
    features: BTreeSet<Feature>,
}

struct Checker<'a> {
    root: &'a Arc<Decl>,
    checked: Checked,
    locals: Vec<(String, Ty)>,
}

impl Checker<'_> {
    fn record(&mut self, e: &IdedExpr, t: Ty) -> Ty {
        self.checked.types.insert(e.id, t.clone());
        t
    }

    fn check(&mut self, e: &IdedExpr) -> Result<Ty, CompileError> {
        let t = match &e.expr {
            Expr::Unspecified => return Err(CompileError::Syntax("empty expression".into())),
            Expr::Literal(l) => match l {
                LiteralValue::Boolean(_) => Ty::Bool,
                LiteralValue::Bytes(_) => Ty::Bytes,
                LiteralValue::Double(_) => Ty::Double,
                LiteralValue::Int(_) => Ty::Int,
                LiteralValue::Null => Ty::Null,
                LiteralValue::String(_) => Ty::String,
                LiteralValue::UInt(_) => Ty::Uint,
            },
            Expr::Ident(name) => self.ident(name)?,
            Expr::Select(sel) => {
                let operand = self.check(&sel.operand)?;
                let field = match &operand {
                    Ty::Object(decl) => match &decl.kind {
                        DeclKind::Object(fields) => match fields.get(&sel.field) {
                            Some(f) => Ty::of(f),
                            None => {
                                return Err(CompileError::Type(format!("undefined field '{}'", sel.field)));
                            }
                        },
                        _ => Ty::Dyn,
                    },
                    Ty::Map(_, v) => (**v).clone(),
                    Ty::Dyn => Ty::Dyn,
                    other => {
                        return Err(CompileError::Type(format!(
                            "type '{}' does not support field selection",
                            other.name()
                        )));
                    }
                };
                if sel.test { Ty::Bool } else { field }
            }
            Expr::Call(call) => {
                if call.func_name == "_?._" || call.func_name == "_[?_]" {
                    return Err(CompileError::NotModelled("optional field selection".into()));
                }
                let mut args = Vec::with_capacity(call.args.len() + 1);
                if let Some(target) = &call.target {
                    args.push(self.check(target)?);
                }
                for a in &call.args {
                    args.push(self.check(a)?);
                }
                self.literals(&call.func_name, call.target.as_deref(), &call.args)?;
                let (ids, result) = self.resolve(&call.func_name, call.target.is_some(), &args)?;
                self.checked.overloads.insert(e.id, ids);
                result
            }
            Expr::List(list) => {
                if !list.optional_indices.is_empty() {
                    return Err(CompileError::NotModelled("optional list elements".into()));
                }
                let mut elem: Option<Ty> = None;
                for el in &list.elements {
                    let t = self.check(el)?;
                    elem = Some(join(elem, t)?);
                }
                Ty::List(Box::new(elem.unwrap_or(Ty::Dyn)))
            }
            Expr::Map(map) => {
                let (mut key, mut value) = (None, None);
                for entry in &map.entries {
                    let EntryExpr::MapEntry(entry) = &entry.expr else {
                        return Err(CompileError::NotModelled("message construction".into()));
                    };
                    if entry.optional {
                        return Err(CompileError::NotModelled("optional map entries".into()));
                    }
                    let k = self.check(&entry.key)?;
                    let v = self.check(&entry.value)?;
                    key = Some(join(key, k)?);
                    value = Some(join(value, v)?);
                }
                Ty::Map(
                    Box::new(key.unwrap_or(Ty::Dyn)),
                    Box::new(value.unwrap_or(Ty::Dyn)),
                )
            }
            Expr::Struct(_) => return Err(CompileError::NotModelled("message construction".into())),
            Expr::Comprehension(c) => self.comprehension(c)?,
        };
        Ok(self.record(e, t))
    }

    fn ident(&mut self, name: &str) -> Result<Ty, CompileError> {
        if let Some((_, t)) = self.locals.iter().rev().find(|(n, _)| n == name) {
            return Ok(t.clone());
        }
        match name {
            "self" | "oldSelf" => Ok(Ty::of(self.root)),
            "int" | "uint" | "double" | "bool" | "string" | "bytes" | "list" | "map" | "null_type"
            | "type" => Ok(Ty::Type),
            _ => Err(CompileError::Type(format!("undeclared reference to '{name}'"))),
        }
    }

    fn comprehension(&mut self, c: &ComprehensionExpr) -> Result<Ty, CompileError> {
        let range = self.check(&c.iter_range)?;
        let accu = self.check(&c.accu_init)?;
        let (first, second) = match &range {
            Ty::List(e) => (Ty::Int, (**e).clone()),
            Ty::Map(k, v) => ((**k).clone(), (**v).clone()),
            Ty::Dyn => (Ty::Dyn, Ty::Dyn),
            other => {
                return Err(CompileError::Type(format!(
                    "expression of type '{}' cannot be range of a comprehension (must be list, map, or dynamic)",
                    other.name()
                )));
            }
        };
        let depth = self.locals.len();
        self.locals.push((c.accu_var.clone(), accu.clone()));
        match &c.iter_var2 {
            Some(v2) => {
                self.locals.push((c.iter_var.clone(), first));
                self.locals.push((v2.clone(), second));
            }
            None => {
                let single = if matches!(range, Ty::List(_)) {
                    second
                } else {
                    first
                };
                self.locals.push((c.iter_var.clone(), single));
            }
        }
        self.check(&c.loop_cond)?;
        let step = self.check(&c.loop_step)?;
        self.locals.truncate(depth);
        let accu = match (&accu, &step) {
            (Ty::List(e), Ty::List(_)) if **e == Ty::Dyn => step,
            _ => accu,
        };
        self.locals.push((c.accu_var.clone(), accu));
        let result = self.check(&c.result);
        self.locals.truncate(depth);
        result
    }

    fn resolve(
        &mut self,
        function: &str,
        is_member: bool,
        args: &[Ty],
    ) -> Result<(Vec<&'static str>, Ty), CompileError> {
        let Some(candidates) = overloads(function) else {
            return Err(CompileError::NotModelled(format!("function '{function}'")));
        };
        let mut ids = Vec::new();
        let mut result: Option<Ty> = None;
        let mut features = BTreeSet::new();
        for o in candidates
            .iter()
            .filter(|o| o.member == is_member && o.params.len() == args.len())
        {
            let mut b = Bindings::default();
            if o.params.iter().zip(args).all(|(p, t)| unify(*p, t, &mut b)) {
                ids.push(o.id);
                features.insert(o.feature);
                let r = substitute(o.result, &b);
                result = Some(match result {
                    None => r,
                    Some(prev) if prev == r => prev,
                    Some(_) => Ty::Dyn,
                });
            }
        }
        match result {
            Some(r) => {
                // With a dyn argument several overloads match; a newer feature counts only when
                // nothing older matches.
                if let Some(oldest) = features.iter().min_by_key(|f| f.since()) {
                    self.checked.features.insert(*oldest);
                }
                Ok((ids, r))
            }
            None => {
                let shown: Vec<String> = args.iter().map(Ty::name).collect();
                Err(CompileError::Type(format!(
                    "found no matching overload for '{function}' applied to '({})'",
                    shown.join(", ")
                )))
            }
        }
    }

    /// The literal validators (cel-go `ValidateDurationLiterals`, `ValidateTimestampLiterals`,
    /// `ValidateRegexLiterals`, in the Kubernetes environment from 1.29): a literal argument
    /// must parse.
    fn literals(
        &self,
        function: &str,
        target: Option<&IdedExpr>,
        args: &[IdedExpr],
    ) -> Result<(), CompileError> {
        let literal = |e: &IdedExpr| match &e.expr {
            Expr::Literal(LiteralValue::String(s)) => Some(s.inner().to_owned()),
            _ => None,
        };
        match (function, target, args) {
            ("duration", None, [arg]) => {
                if let Some(text) = literal(arg)
                    && crate::policy::duration::go_nanos(&text).is_none()
                {
                    return Err(CompileError::Literal(format!(
                        "invalid duration argument: {text:?}"
                    )));
                }
            }
            ("timestamp", None, [arg]) => {
                if let Some(text) = literal(arg)
                    && text.parse::<jiff::Timestamp>().is_err()
                {
                    return Err(CompileError::Literal(format!(
                        "invalid timestamp argument: {text:?}"
                    )));
                }
            }
            ("matches", _, _) | ("find", Some(_), _) | ("findAll", Some(_), _) => {
                let pattern = match (target, args) {
                    (None, [_, p]) => literal(p),
                    (Some(_), [p, ..]) => literal(p),
                    _ => None,
                };
                if let Some(p) = pattern
                    && let Err(e) = regex::Regex::new(&p)
                {
                    return Err(CompileError::Literal(format!(
                        "invalid regular expression {p:?}: {e}"
                    )));
                }
            }
            _ => {}
        }
        Ok(())
    }
}

/// The type of a list or map literal's elements (`HomogeneousAggregateLiterals`).
fn join(prev: Option<Ty>, t: Ty) -> Result<Ty, CompileError> {
    match prev {
        None => Ok(t),
        Some(p) if p == t => Ok(p),
        Some(Ty::Dyn) | Some(Ty::Null) => Ok(t),
        Some(p) if t == Ty::Dyn || t == Ty::Null => Ok(p),
        Some(p) => Err(CompileError::Type(format!(
            "expected type '{}' but found '{}' (aggregate literals must be homogeneous)",
            p.name(),
            t.name()
        ))),
    }
}

/// The entries of a list or map literal (`entrySizeEstimate`).
#[derive(Clone, Copy, Debug)]
struct EntrySize {
    list: bool,
    key: Size,
    val: Size,
}

impl EntrySize {
    fn union(a: Option<EntrySize>, b: Option<EntrySize>) -> Option<EntrySize> {
        let (a, b) = (a?, b?);
        Some(EntrySize {
            list: a.list,
            key: a.key.union(b.key),
            val: a.val.union(b.val),
        })
    }
}

/// A local variable of a comprehension (`localVar`).
#[derive(Clone, Debug)]
struct Local {
    path: Vec<String>,
    size: Option<Size>,
    entry: Option<EntrySize>,
}

/// An argument or target as the function estimators see it (`checker.AstNode`).
struct Node<'e> {
    path: Option<Vec<String>>,
    ty: Ty,
    derived: Option<Size>,
    expr: &'e IdedExpr,
}

/// cel-go's `coster` with the Kubernetes `CostEstimator` and the CRD `sizeEstimator`.
struct Coster<'a> {
    root: &'a Arc<Decl>,
    version: KubeVersion,
    checked: &'a Checked,
    paths: HashMap<u64, Vec<String>>,
    sizes: HashMap<u64, Size>,
    entries: HashMap<u64, EntrySize>,
    locals: HashMap<String, Vec<Local>>,
}

impl<'a> Coster<'a> {
    fn ty(&self, e: &IdedExpr) -> Ty {
        self.checked.types.get(&e.id).cloned().unwrap_or(Ty::Dyn)
    }

    fn local(&self, name: &str) -> Option<&Local> {
        self.locals.get(name).and_then(|s| s.last())
    }

    fn path(&self, e: &IdedExpr) -> Vec<String> {
        if let Expr::Ident(name) = &e.expr
            && let Some(l) = self.local(name)
        {
            return l.path.clone();
        }
        self.paths.get(&e.id).cloned().unwrap_or_default()
    }

    /// The CRD size estimator (compilation.go `sizeEstimator.EstimateSize`): the
    /// `MaxElements` of the schema node the path leads to.
    fn estimate_size(&self, path: &[String]) -> Option<Size> {
        if path.is_empty() {
            return None;
        }
        let mut node: &Decl = self.root;
        for name in &path[1..] {
            node = match (name.as_str(), &node.kind) {
                ("@items" | "@values", DeclKind::List(e) | DeclKind::Map(e)) => e,
                ("@keys", DeclKind::Map(_)) => return Some(Size { min: 0, max: 0 }),
                (field, DeclKind::Object(fields)) => fields.get(field)?,
                _ => return None,
            };
        }
        Some(Size {
            min: 0,
            max: node.max_elements,
        })
    }

    /// `computeSize`.
    fn compute_size(&mut self, e: &IdedExpr) -> Option<Size> {
        if let Some(s) = self.sizes.get(&e.id) {
            return Some(*s);
        }
        if let Some(s) = expr_size(e) {
            return Some(s);
        }
        let path = self.path(e);
        if let Some(s) = self.estimate_size(&path) {
            self.sizes.insert(e.id, s);
            return Some(s);
        }
        if self.ty(e).is_scalar() {
            return Some(Size::fixed(1));
        }
        if let Expr::Ident(name) = &e.expr
            && let Some(l) = self.local(name)
        {
            return l.size;
        }
        None
    }

    fn size_or_unknown(&mut self, e: &IdedExpr) -> Size {
        self.compute_size(e).unwrap_or(UNKNOWN_SIZE)
    }

    fn entry_size(&self, e: &IdedExpr) -> Option<EntrySize> {
        if let Some(s) = self.entries.get(&e.id) {
            return Some(*s);
        }
        if let Expr::Ident(name) = &e.expr
            && let Some(l) = self.local(name)
        {
            return l.entry;
        }
        None
    }

    fn node<'e>(&mut self, e: &'e IdedExpr) -> Node<'e> {
        let path = self.path(e);
        let path = if path.first().is_some_and(|p| ACCUMULATORS.contains(&p.as_str())) {
            None
        } else {
            Some(path)
        };
        Node {
            path,
            ty: self.ty(e),
            derived: self.compute_size(e),
            expr: e,
        }
    }

    /// The Kubernetes library's `sizeEstimate`.
    fn k8s_size(&self, n: &Node) -> Size {
        n.derived
            .or_else(|| n.path.as_ref().and_then(|p| self.estimate_size(p)))
            .unwrap_or(UNKNOWN_SIZE)
    }

    fn cost(&mut self, e: &IdedExpr) -> Cost {
        match &e.expr {
            Expr::Literal(_) | Expr::Unspecified => Cost::fixed(0),
            Expr::Ident(name) => {
                let path = match self.local(name) {
                    Some(l) => l.path.clone(),
                    None => vec![name.clone()],
                };
                self.paths.insert(e.id, path);
                Cost::fixed(1)
            }
            Expr::Select(sel) => {
                if sel.test {
                    // `PresenceTestHasCost(false)` in the Kubernetes environment.
                    return self.cost(&sel.operand);
                }
                let mut sum = self.cost(&sel.operand);
                if matches!(self.ty(&sel.operand), Ty::Object(_) | Ty::Map(..)) {
                    sum = sum.add(Cost::fixed(1));
                }
                let mut path = self.path(&sel.operand);
                path.push(sel.field.clone());
                self.paths.insert(e.id, path);
                sum
            }
            Expr::Call(call) => self.cost_call(e, &call.func_name, call.target.as_deref(), &call.args),
            Expr::List(list) => {
                let mut sum = Cost::fixed(0);
                let mut item = Size {
                    min: if list.elements.is_empty() { 0 } else { u64::MAX },
                    max: 0,
                };
                for el in &list.elements {
                    sum = sum.add(self.cost(el));
                    item = item.union(self.size_or_unknown(el));
                }
                self.entries.insert(
                    e.id,
                    EntrySize {
                        list: true,
                        key: Size::fixed(1),
                        val: item,
                    },
                );
                sum.add(Cost::fixed(LIST_CREATE))
            }
            Expr::Map(map) => {
                let mut sum = Cost::fixed(0);
                let empty = map.entries.is_empty();
                let mut key = Size {
                    min: if empty { 0 } else { u64::MAX },
                    max: 0,
                };
                let mut val = key;
                for entry in &map.entries {
                    if let EntryExpr::MapEntry(entry) = &entry.expr {
                        sum = sum.add(self.cost(&entry.key)).add(self.cost(&entry.value));
                        key = key.union(self.size_or_unknown(&entry.key));
                        val = val.union(self.size_or_unknown(&entry.value));
                    }
                }
                self.entries.insert(
                    e.id,
                    EntrySize {
                        list: false,
                        key,
                        val,
                    },
                );
                sum.add(Cost::fixed(MAP_CREATE))
            }
            Expr::Struct(_) => Cost::fixed(0),
            Expr::Comprehension(c) => self.cost_comprehension(e, c),
        }
    }

    fn push_local(&mut self, name: &str, local: Local) {
        self.locals.entry(name.to_owned()).or_default().push(local);
    }

    fn pop_local(&mut self, name: &str) {
        if let Some(stack) = self.locals.get_mut(name) {
            stack.pop();
        }
    }

    fn cost_comprehension(&mut self, e: &IdedExpr, c: &ComprehensionExpr) -> Cost {
        let mut sum = self.cost(&c.iter_range).add(self.cost(&c.accu_init));
        let accu = Local {
            path: self.path(&c.accu_init),
            size: self.compute_size(&c.accu_init),
            entry: self.entry_size(&c.accu_init),
        };
        self.push_local(&c.accu_var, accu);
        let entry = self.entry_size(&c.iter_range);
        let is_list = entry.map_or_else(|| matches!(self.ty(&c.iter_range), Ty::List(_)), |s| s.list);
        let range_path = self.path(&c.iter_range);
        let with = |sub: &str| {
            let mut p = range_path.clone();
            p.push(sub.to_owned());
            p
        };
        match &c.iter_var2 {
            Some(v2) => {
                let key = Local {
                    path: with(if is_list { "@indices" } else { "@keys" }),
                    size: entry.map(|s| s.key),
                    entry: None,
                };
                let value = Local {
                    path: with(if is_list { "@items" } else { "@values" }),
                    size: entry.map(|s| s.val),
                    entry: None,
                };
                self.push_local(&c.iter_var, key);
                self.push_local(v2, value);
            }
            None => {
                let single = Local {
                    path: with(if is_list { "@items" } else { "@keys" }),
                    size: entry.map(|s| if is_list { s.val } else { s.key }),
                    entry: None,
                };
                self.push_local(&c.iter_var, single);
            }
        }
        let loop_cost = self.cost(&c.loop_cond);
        let step_cost = self.cost(&c.loop_step);
        self.pop_local(&c.iter_var);
        if let Some(v2) = &c.iter_var2 {
            self.pop_local(v2);
        }
        sum = sum.add(self.cost(&c.result));
        self.pop_local(&c.accu_var);
        let range = self.size_or_unknown(&c.iter_range);
        sum = sum.add(range.times_cost(step_cost.add(loop_cost)));
        match &c.accu_init.expr {
            Expr::Literal(_) => {
                if let Some(s) = self.compute_size(&c.accu_init) {
                    self.sizes.insert(e.id, s);
                }
            }
            Expr::List(_) | Expr::Map(_) => {
                self.sizes.insert(e.id, range);
                if let Some(s) = self.entry_size(&c.loop_step) {
                    self.entries.insert(e.id, s);
                }
            }
            _ => {}
        }
        sum
    }

    fn cost_call(
        &mut self,
        e: &IdedExpr,
        function: &str,
        target: Option<&IdedExpr>,
        args: &[IdedExpr],
    ) -> Cost {
        if function == "dyn" && target.is_none() && args.len() == 1 {
            // `maybeUnwrapDynCall`.
            let cost = self.cost(&args[0]).add(Cost::fixed(1));
            if let Some(s) = self.compute_size(&args[0]) {
                self.sizes.insert(e.id, s);
            }
            if let Some(s) = self.entry_size(&args[0]) {
                self.entries.insert(e.id, s);
            }
            return cost;
        }
        let mut arg_costs = Vec::with_capacity(args.len());
        for a in args {
            arg_costs.push(self.cost(a));
        }
        let arg_nodes: Vec<Node> = args.iter().map(|a| self.node(a)).collect();
        let Some(ids) = self.checked.overloads.get(&e.id).cloned() else {
            return Cost::fixed(0);
        };
        let mut sum = Cost::fixed(0);
        let target_node = match target {
            Some(t) => {
                sum = sum.add(self.cost(t));
                Some(self.node(t))
            }
            None => None,
        };
        let mut fn_cost = Cost {
            min: u64::MAX,
            max: 0,
        };
        let mut result_size: Option<Size> = None;
        for id in ids {
            let (cost, size) =
                self.function_cost(e, function, id, target_node.as_ref(), &arg_nodes, &arg_costs);
            fn_cost = fn_cost.union(cost);
            if let Some(s) = size {
                result_size = Some(result_size.map_or(s, |r| r.union(s)));
            }
            match id {
                "index_list" | "index_map" if !args.is_empty() => {
                    result_size = self.entry_size(&args[0]).map(|s| s.val);
                    let mut path = self.path(&args[0]);
                    path.push(if id == "index_list" { "@items" } else { "@values" }.to_owned());
                    self.paths.insert(e.id, path);
                }
                _ => {}
            }
            if result_size.is_none() {
                result_size = self.compute_size(e);
            }
        }
        if let Some(s) = result_size {
            self.sizes.insert(e.id, s);
        }
        sum.add(fn_cost)
    }

    /// `functionCost`: the Kubernetes estimator first, then cel-go's own cases, then O(1).
    fn function_cost(
        &mut self,
        e: &IdedExpr,
        function: &str,
        id: &str,
        target: Option<&Node>,
        args: &[Node],
        arg_costs: &[Cost],
    ) -> (Cost, Option<Size>) {
        let arg_sum = arg_costs.iter().fold(Cost::fixed(0), |a, c| a.add(*c));
        if let Some((cost, size)) = self.k8s_call_cost(function, target, args) {
            return (cost.add(arg_sum), size);
        }
        let known = |n: &Node| n.derived.unwrap_or(UNKNOWN_SIZE);
        match id {
            "string_to_bytes" if args.len() == 1 => {
                let sz = known(&args[0]);
                return (
                    sz.by_factor(STRING_TRAVERSAL).add(arg_sum),
                    Some(Size {
                        min: sz.min,
                        max: sz.max.saturating_mul(4),
                    }),
                );
            }
            "bytes_to_string" if args.len() == 1 => {
                let sz = known(&args[0]);
                return (
                    sz.by_factor(STRING_TRAVERSAL).add(arg_sum),
                    Some(Size {
                        min: sz.min / 4,
                        max: sz.max,
                    }),
                );
            }
            "starts_with_string" | "ends_with_string" if args.len() == 1 => {
                return (known(&args[0]).by_factor(STRING_TRAVERSAL).add(arg_sum), None);
            }
            "in_list" if args.len() == 2 => return (known(&args[1]).by_factor(1.0).add(arg_sum), None),
            "matches_string" if args.len() == 1 => {
                if let Some(t) = target {
                    let str_cost = known(t).add(Size::fixed(1)).by_factor(STRING_TRAVERSAL);
                    let regex_cost = known(&args[0]).by_factor(REGEX_LENGTH);
                    return (str_cost.multiply(regex_cost).add(arg_sum), None);
                }
            }
            "contains_string" if args.len() == 1 => {
                if let Some(t) = target {
                    let str_cost = known(t).by_factor(STRING_TRAVERSAL);
                    let sub_cost = known(&args[0]).by_factor(STRING_TRAVERSAL);
                    return (str_cost.multiply(sub_cost).add(arg_sum), None);
                }
            }
            "logical_or" | "logical_and" => {
                let (l, r) = (arg_costs[0], arg_costs[1]);
                return (
                    Cost {
                        min: l.min,
                        max: l.add(r).max,
                    },
                    None,
                );
            }
            "conditional" => {
                let size = known(&args[1]).union(known(&args[2]));
                let entry = EntrySize::union(self.entry_size(args[1].expr), self.entry_size(args[2].expr));
                if let Some(s) = entry {
                    self.entries.insert(e.id, s);
                }
                let cost = arg_costs[0].add(arg_costs[1].union(arg_costs[2]));
                return (cost, Some(size));
            }
            "add_string" | "add_bytes" | "add_list" if args.len() == 2 => {
                let size = known(&args[0]).add(known(&args[1]));
                if let Some(s) =
                    EntrySize::union(self.entry_size(args[0].expr), self.entry_size(args[1].expr))
                {
                    self.entries.insert(e.id, s);
                }
                let cost = if id == "add_list" {
                    Cost::fixed(1).add(arg_sum)
                } else {
                    size.by_factor(STRING_TRAVERSAL).add(arg_sum)
                };
                return (cost, Some(size));
            }
            "less_string"
            | "greater_string"
            | "less_equals_string"
            | "greater_equals_string"
            | "less_bytes"
            | "greater_bytes"
            | "less_equals_bytes"
            | "greater_equals_bytes"
            | "equals"
            | "not_equals" => {
                let (l, r) = (known(&args[0]), known(&args[1]));
                let smallest = l.max.min(r.max);
                let min = u64::from(smallest > 0);
                return (
                    Size { min, max: smallest }
                        .by_factor(STRING_TRAVERSAL)
                        .add(arg_sum),
                    None,
                );
            }
            _ => {}
        }
        (Cost::fixed(1).add(arg_sum), None)
    }

    /// `CostEstimator.EstimateCallCost` (apiserver pkg/cel/library/cost.go), for the
    /// functions modelled here.
    fn k8s_call_cost(
        &self,
        function: &str,
        target: Option<&Node>,
        args: &[Node],
    ) -> Option<(Cost, Option<Size>)> {
        let nominal = Some((Cost::fixed(1), None));
        match function {
            "isSorted" | "sum" | "max" | "min" | "indexOf" | "lastIndexOf" => {
                let t = target?;
                match &t.ty {
                    Ty::List(elem) => {
                        let mut el_cost = Cost::fixed(1);
                        if matches!(**elem, Ty::String | Ty::Bytes) {
                            let mut path = t.path.clone();
                            if let Some(p) = path.as_mut() {
                                p.push("@items".into());
                            }
                            let sz = path
                                .as_ref()
                                .and_then(|p| self.estimate_size(p))
                                .unwrap_or(UNKNOWN_SIZE);
                            el_cost = el_cost.add(sz.by_factor(STRING_TRAVERSAL));
                        }
                        Some((self.k8s_size(t).times_cost(el_cost), None))
                    }
                    _ => Some((self.k8s_size(t).by_factor(STRING_TRAVERSAL), None)),
                }
            }
            "lowerAscii" | "upperAscii" | "substring" | "trim" => {
                let sz = self.k8s_size(target?);
                Some((sz.by_factor(STRING_TRAVERSAL), Some(sz)))
            }
            "replace" if args.len() >= 2 => {
                let sz = self.k8s_size(target?);
                let to_replace = self.k8s_size(&args[0]);
                let replace_with = self.k8s_size(&args[1]);
                let (mut count, mut retained) = (Size::fixed(0), Size::fixed(0));
                if to_replace.min == 0 {
                    count.max = if sz.max < u64::MAX { sz.max + 1 } else { sz.max };
                    retained.max = sz.max;
                } else if replace_with.max <= to_replace.min {
                    count.max = 0;
                    retained.max = sz.max;
                } else {
                    count.max = (sz.max as f64 / to_replace.min as f64).ceil() as u64;
                }
                if to_replace.max == 0 {
                    count.min = if sz.min < u64::MAX { sz.min + 1 } else { sz.min };
                    retained.min = sz.min;
                } else if to_replace.max <= replace_with.min {
                    count.min = 0;
                    retained.min = sz.min;
                } else {
                    count.min = (sz.min as f64 / to_replace.max as f64).ceil() as u64;
                }
                let size = count.multiply(replace_with).add(retained);
                Some((sz.by_factor(2.0 * STRING_TRAVERSAL), Some(size)))
            }
            "split" => {
                let sz = self.k8s_size(target?);
                let mut max = sz.max;
                if let Some(limit) = args.get(1)
                    && let Expr::Literal(LiteralValue::Int(i)) = &limit.expr.expr
                {
                    max = *i.inner() as u64;
                }
                Some((sz.by_factor(2.0 * STRING_TRAVERSAL), Some(Size { min: 0, max })))
            }
            "find" | "findAll" if !args.is_empty() => {
                let sz = self.k8s_size(target?);
                let str_cost = sz.add(Size::fixed(1)).by_factor(STRING_TRAVERSAL);
                let regex_cost = self.k8s_size(&args[0]).by_factor(REGEX_LENGTH);
                Some((str_cost.multiply(regex_cost), Some(Size { min: 0, max: sz.max })))
            }
            // In 1.29 the quantity library had no estimate of its own (O(1)).
            "quantity" | "isQuantity" if self.version.minor >= 30 => {
                let sz = self.k8s_size(args.first()?);
                Some((sz.by_factor(STRING_TRAVERSAL), None))
            }
            "sign" | "asInteger" | "isInteger" | "asApproximateFloat" | "isGreaterThan" | "isLessThan"
            | "compareTo" | "add" | "sub" => nominal,
            "_==_" if args.len() == 2 && args[0].ty == Ty::Quantity && args[1].ty == Ty::Quantity => nominal,
            _ => None,
        }
    }
}

/// `computeExprSize`: literals and aggregate literals.
fn expr_size(e: &IdedExpr) -> Option<Size> {
    let n = match &e.expr {
        Expr::Literal(LiteralValue::String(s)) => s.inner().chars().count() as u64,
        Expr::Literal(LiteralValue::Bytes(b)) => b.inner().len() as u64,
        Expr::Literal(_) => 1,
        Expr::List(l) => l.elements.len() as u64,
        Expr::Map(m) => m.entries.len() as u64,
        _ => return None,
    };
    Some(Size::fixed(n))
}

/// Compiles `source` against the schema node `root` and estimates it as Kubernetes
/// `version` would.
pub(super) fn estimate(
    source: &str,
    root: &Arc<Decl>,
    version: KubeVersion,
) -> Result<Estimate, CompileError> {
    let ast = cel::parser::Parser::new()
        .parse(source)
        .map_err(|e| CompileError::Syntax(e.to_string()))?;
    let mut checker = Checker {
        root,
        checked: Checked {
            types: HashMap::new(),
            overloads: HashMap::new(),
            features: BTreeSet::new(),
        },
        locals: Vec::new(),
    };
    let output = checker.check(&ast)?;
    let checked = checker.checked;
    let mut coster = Coster {
        root,
        version,
        checked: &checked,
        paths: HashMap::new(),
        sizes: HashMap::new(),
        entries: HashMap::new(),
        locals: HashMap::new(),
    };
    let cost = coster.cost(&ast);
    Ok(Estimate {
        cost,
        features: checked.features.clone(),
        returns_bool: output == Ty::Bool,
        returns_string: output == Ty::String,
    })
}
