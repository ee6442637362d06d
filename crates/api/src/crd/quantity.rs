//! Sizes as Kubernetes quantities: `512Mi`, `8Gi`, `1.5G`, or a plain number of bytes.

use std::{borrow::Cow, fmt};

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Serialize};

/// The schema pattern of a size: a positive decimal number and an optional binary
/// (`Ki` … `Ei`) or decimal (`k` … `E`) suffix. Signs, exponents and the milli suffix of
/// general Kubernetes quantities are refused: a checkpoint has a whole, positive number of
/// bytes.
pub const QUANTITY_PATTERN: &str =
    "^([1-9][0-9]*(\\.[0-9]+)?|0\\.[0-9]*[1-9][0-9]*)(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?$";

/// The CEL rule bounding a size below 16Ei (2^64 bytes), which [`parse_quantity`] refuses
/// too; the pattern alone admits `99999999999999999999Ei`, which the API server would store
/// and the controller could not use. `string(self)` covers both forms (an integer, an int64,
/// is always below the bound). Only digits and dots followed by a suffix are compared: a
/// value the pattern refuses is reported by the pattern, not by a failing evaluation, and no
/// exponent (`1e-308`, `9e99Ei`) reaches `quantity()`, on which kube's CEL interpreter (and
/// so `validate`) overflows.
///
/// NB: the cost. Up to Kubernetes 1.33 the API server sizes an int-or-string at the whole
/// request (3 MiB) whatever its `maxLength`, so every string operation here is estimated at
/// 3 MiB, and a `matches` at that size times a quarter of the expression's length: this
/// short guard costs about 1.9 million of the 10 million a rule may cost there, the regular
/// expression of the pattern cost 5 million (crates/api/src/crd/admission has the figures per version).
pub const QUANTITY_MAX_RULE: &str =
    "!string(self).matches('^[0-9.]+\\\\D*$') || quantity(string(self)).isLessThan(quantity('16Ei'))";

/// The message of [`QUANTITY_MAX_RULE`].
pub const QUANTITY_MAX_MESSAGE: &str = "must be less than 16Ei";

/// Longest size string the schema accepts.
pub const QUANTITY_MAX_LENGTH: u64 = 32;

/// Why a size was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum QuantityError {
    /// Not a number with a known suffix.
    #[error(
        "{0:?} is not a size; write a number with an optional suffix (Ki, Mi, Gi, Ti, Pi, Ei, k, M, G, T, P, E), e.g. 512Mi or 8Gi"
    )]
    Invalid(String),
    /// Zero or negative.
    #[error("{0:?} is not positive; sizes here must be at least one byte")]
    NotPositive(String),
    /// More bytes than a u64 holds (see `QUANTITY_MAX_RULE`).
    #[error("{0:?} is too large; sizes here are below 16Ei")]
    Overflow(String),
}

/// A size in bytes written as a Kubernetes quantity (`8Gi`) or a plain integer.
///
/// It keeps the form as written (string or integer) so a spec round-trips unchanged;
/// [`ByteQuantity::bytes`] parses it. Deserialising is lenient for the same reason as
/// [`KubeDuration`](super::KubeDuration): the schema rejects bad values at apply time and
/// the reconciler reports any that slipped through.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(untagged)]
pub enum ByteQuantity {
    /// A plain number of bytes.
    Bytes(i64),
    /// A quantity string such as `8Gi`.
    Text(String),
}

/// By hand rather than `#[serde(untagged)]`, whose error ("data did not match any variant")
/// would not say what a size looks like.
impl<'de> Deserialize<'de> for ByteQuantity {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = ByteQuantity;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a size: a whole number of bytes or a quantity such as 512Mi or 8Gi")
            }

            fn visit_i64<E: serde::de::Error>(self, n: i64) -> Result<Self::Value, E> {
                Ok(ByteQuantity::Bytes(n))
            }

            fn visit_u64<E: serde::de::Error>(self, n: u64) -> Result<Self::Value, E> {
                // Above i64 (and so above any size the schema admits): kept as written, for
                // `bytes` to refuse.
                Ok(i64::try_from(n).map_or_else(|_| ByteQuantity::Text(n.to_string()), ByteQuantity::Bytes))
            }

            fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<Self::Value, E> {
                Ok(ByteQuantity::Text(text.to_owned()))
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

impl ByteQuantity {
    /// Parses and checks `text`, keeping it as written.
    pub fn new(text: &str) -> Result<Self, QuantityError> {
        parse_quantity(text)?;
        Ok(Self::Text(text.to_owned()))
    }

    /// `bytes` with a binary suffix when it is a whole multiple of one (`8Gi`), as a plain
    /// number otherwise, so it parses back to exactly `bytes`.
    pub fn from_bytes(bytes: u64) -> Self {
        const UNITS: [(&str, u64); 6] = [
            ("Ei", 1 << 60),
            ("Pi", 1 << 50),
            ("Ti", 1 << 40),
            ("Gi", 1 << 30),
            ("Mi", 1 << 20),
            ("Ki", 1 << 10),
        ];
        match UNITS
            .iter()
            .find(|(_, size)| bytes >= *size && bytes.is_multiple_of(*size))
        {
            Some((suffix, size)) => Self::Text(format!("{}{suffix}", bytes / size)),
            None => match i64::try_from(bytes) {
                Ok(n) => Self::Bytes(n),
                Err(_) => Self::Text(bytes.to_string()),
            },
        }
    }

    /// The size in bytes (fractions of a byte round up, as Kubernetes does).
    pub fn bytes(&self) -> Result<u64, QuantityError> {
        match self {
            Self::Bytes(n) => u64::try_from(*n)
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| QuantityError::NotPositive(n.to_string())),
            Self::Text(text) => parse_quantity(text),
        }
    }
}

impl fmt::Display for ByteQuantity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Bytes(n) => write!(f, "{n}"),
            Self::Text(text) => f.write_str(text),
        }
    }
}

impl std::str::FromStr for ByteQuantity {
    type Err = QuantityError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

impl JsonSchema for ByteQuantity {
    fn inline_schema() -> bool {
        true
    }

    fn schema_name() -> Cow<'static, str> {
        "ByteQuantity".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        // Int-or-string, the pattern applying to the string form and the minimum to the
        // integer form. NB: no `anyOf: [{type: integer}, {type: string}]` as controller-gen
        // writes it: kube's structural rewriter hoists the branch types and would leave
        // `anyOf: [{}, {}]`; the extension alone is a valid structural schema.
        json_schema!({
            "x-kubernetes-int-or-string": true,
            "pattern": QUANTITY_PATTERN,
            "maxLength": QUANTITY_MAX_LENGTH,
            "minimum": 1,
            "x-kubernetes-validations": [
                {"rule": QUANTITY_MAX_RULE, "message": QUANTITY_MAX_MESSAGE}
            ]
        })
    }
}

const SUFFIXES: [(&str, u128); 12] = [
    ("Ki", 1 << 10),
    ("Mi", 1 << 20),
    ("Gi", 1 << 30),
    ("Ti", 1 << 40),
    ("Pi", 1 << 50),
    ("Ei", 1 << 60),
    ("k", 1_000),
    ("M", 1_000_000),
    ("G", 1_000_000_000),
    ("T", 1_000_000_000_000),
    ("P", 1_000_000_000_000_000),
    ("E", 1_000_000_000_000_000_000),
];

/// Parses a positive size (`512Mi`, `8Gi`, `1.5G`, `1048576`) to bytes, rounding a fraction
/// of a byte up.
pub fn parse_quantity(text: &str) -> Result<u64, QuantityError> {
    let invalid = || QuantityError::Invalid(text.to_owned());
    let overflow = || QuantityError::Overflow(text.to_owned());
    if text.starts_with('-') {
        return Err(QuantityError::NotPositive(text.to_owned()));
    }
    let number_len = text
        .bytes()
        .take_while(|b| b.is_ascii_digit() || *b == b'.')
        .count();
    let (number, suffix) = text.split_at(number_len);
    let multiplier = if suffix.is_empty() {
        1
    } else {
        SUFFIXES
            .iter()
            .find(|(s, _)| *s == suffix)
            .map(|(_, m)| *m)
            .ok_or_else(invalid)?
    };
    let (whole, frac) = match number.split_once('.') {
        Some((w, f)) => (w, f),
        None => (number, ""),
    };
    if whole.is_empty() || (number.contains('.') && frac.is_empty()) || frac.contains('.') {
        return Err(invalid());
    }
    let whole: u128 = whole.parse().map_err(|_| overflow())?;
    let mut bytes = whole.checked_mul(multiplier).ok_or_else(overflow)?;
    // Exact fraction: frac / 10^len * multiplier, rounded up.
    if !frac.is_empty() {
        let digits = frac.trim_end_matches('0');
        if digits.len() > 30 {
            return Err(invalid());
        }
        if !digits.is_empty() {
            let numerator: u128 = digits.parse().map_err(|_| invalid())?;
            let denominator = 10u128.pow(digits.len() as u32);
            let part = numerator
                .checked_mul(multiplier)
                .ok_or_else(overflow)?
                .div_ceil(denominator);
            bytes = bytes.checked_add(part).ok_or_else(overflow)?;
        }
    }
    if bytes == 0 {
        return Err(QuantityError::NotPositive(text.to_owned()));
    }
    u64::try_from(bytes).map_err(|_| overflow())
}

/// Formats bytes compactly with a binary suffix, one decimal when it is not exact
/// (`8589934592` → `8Gi`, `1610612736` → `1.5Gi`, `1000` → `1000`).
pub fn format_bytes(bytes: u64) -> String {
    const UNITS: [(&str, u64); 6] = [
        ("Ei", 1 << 60),
        ("Pi", 1 << 50),
        ("Ti", 1 << 40),
        ("Gi", 1 << 30),
        ("Mi", 1 << 20),
        ("Ki", 1 << 10),
    ];
    for (suffix, size) in UNITS {
        if bytes >= size {
            return if bytes.is_multiple_of(size) {
                format!("{}{suffix}", bytes / size)
            } else {
                format!("{:.1}{suffix}", bytes as f64 / size as f64)
            };
        }
    }
    bytes.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_binary_and_decimal_suffixes() {
        assert_eq!(parse_quantity("512Mi"), Ok(512 << 20));
        assert_eq!(parse_quantity("8Gi"), Ok(8 << 30));
        assert_eq!(parse_quantity("1Ki"), Ok(1024));
        assert_eq!(parse_quantity("2Ti"), Ok(2 << 40));
        assert_eq!(parse_quantity("1k"), Ok(1000));
        assert_eq!(parse_quantity("1.5G"), Ok(1_500_000_000));
        assert_eq!(parse_quantity("0.5Gi"), Ok(512 << 20));
        assert_eq!(parse_quantity("1048576"), Ok(1_048_576));
        assert_eq!(parse_quantity("1.5"), Ok(2), "a fraction of a byte rounds up");
        assert_eq!(parse_quantity("8Ei"), Ok(8 << 60));
    }

    #[test]
    fn rejects_bad_sizes() {
        for bad in [
            "", "Gi", "8GB", "8 Gi", "8gi", "1e3", "8Gi ", "1..5G", "1.G", ".5G", "500m", "+1Gi", "x",
        ] {
            assert!(
                matches!(parse_quantity(bad), Err(QuantityError::Invalid(_))),
                "{bad:?}"
            );
        }
        assert!(matches!(parse_quantity("0"), Err(QuantityError::NotPositive(_))));
        assert!(matches!(
            parse_quantity("0.0Gi"),
            Err(QuantityError::NotPositive(_))
        ));
        assert!(matches!(
            parse_quantity("-1Gi"),
            Err(QuantityError::NotPositive(_))
        ));
        assert!(matches!(parse_quantity("16Ei"), Err(QuantityError::Overflow(_))));
    }

    #[test]
    fn integer_form_and_round_trip() {
        let q: ByteQuantity = serde_json::from_str("4096").unwrap();
        assert_eq!(q, ByteQuantity::Bytes(4096));
        assert_eq!(q.bytes(), Ok(4096));
        assert_eq!(serde_json::to_string(&q).unwrap(), "4096");
        let q: ByteQuantity = serde_json::from_str("\"8Gi\"").unwrap();
        assert_eq!(q.bytes(), Ok(8 << 30));
        assert_eq!(serde_json::to_string(&q).unwrap(), "\"8Gi\"");
        assert!(ByteQuantity::Bytes(0).bytes().is_err());
        assert!(ByteQuantity::Bytes(-5).bytes().is_err());
    }

    #[test]
    fn pattern_agrees_with_parser_on_samples() {
        let v =
            jsonschema::validator_for(&serde_json::json!({"type": "string", "pattern": QUANTITY_PATTERN}))
                .unwrap();
        for good in ["512Mi", "8Gi", "1.5G", "0.5Gi", "1048576", "1k"] {
            assert!(v.is_valid(&serde_json::json!(good)), "{good}");
            assert!(parse_quantity(good).is_ok(), "{good}");
        }
        for bad in ["0", "0.0Gi", "-1Gi", "8GB", "1e3", "500m", ".5G", "1.G"] {
            assert!(!v.is_valid(&serde_json::json!(bad)), "{bad}");
            assert!(parse_quantity(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn from_bytes_round_trips() {
        assert_eq!(
            ByteQuantity::from_bytes(8 << 30),
            ByteQuantity::Text("8Gi".into())
        );
        assert_eq!(ByteQuantity::from_bytes(3072), ByteQuantity::Text("3Ki".into()));
        assert_eq!(ByteQuantity::from_bytes(1536), ByteQuantity::Bytes(1536));
        assert_eq!(
            ByteQuantity::from_bytes(1_610_612_736),
            ByteQuantity::Text("1536Mi".into())
        );
        assert_eq!(ByteQuantity::from_bytes(1000), ByteQuantity::Bytes(1000));
        for n in [1, 1000, 1024, 1536, 8 << 30, 1_610_612_736, u64::MAX] {
            assert_eq!(ByteQuantity::from_bytes(n).bytes(), Ok(n), "{n}");
        }
    }

    #[test]
    fn formats_bytes() {
        assert_eq!(format_bytes(8 << 30), "8Gi");
        assert_eq!(format_bytes(1_610_612_736), "1.5Gi");
        assert_eq!(format_bytes(1000), "1000");
        assert_eq!(format_bytes(512 << 20), "512Mi");
    }
}
