//! Human-friendly units for scenario files: durations (`"90s"`, `"1h30m"`, `"250us"`, the
//! grammar of [`crate::policy::duration`]) and
//! byte sizes in Kubernetes quantity style (`"10Gi"`, `"500Mi"`, `"2G"`, or a plain number).

use std::time::Duration;

use serde::{Deserialize, Deserializer, Serializer, de::Error as _};

/// Parses a byte size: a non-negative number with an optional binary (`Ki`, `Mi`, `Gi`,
/// `Ti`, `Pi`) or decimal (`k`/`K`, `M`, `G`, `T`, `P`) suffix.
pub fn parse_bytes(text: &str) -> Result<f64, String> {
    let text = text.trim();
    let split = text.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(text.len());
    let (number, suffix) = text.split_at(split);
    let value: f64 = number
        .trim()
        .parse()
        .map_err(|_| format!("`{text}` is not a byte size (e.g. 512Mi, 10Gi, 2G)"))?;
    let factor = match suffix.trim() {
        "" => 1.0,
        "Ki" => 1024.0,
        "Mi" => 1024f64.powi(2),
        "Gi" => 1024f64.powi(3),
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "k" | "K" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        other => {
            return Err(format!(
                "unknown size suffix `{other}` in `{text}` (use Ki, Mi, Gi, Ti, k, M, G, T)"
            ));
        }
    };
    if !value.is_finite() || value < 0.0 {
        return Err(format!("`{text}` must be a non-negative size"));
    }
    Ok(value * factor)
}

#[derive(Deserialize)]
#[serde(untagged)]
enum NumberOrText {
    Number(f64),
    Text(String),
}

/// Serde for a byte size stored as `f64` bytes.
pub mod bytes {
    use super::*;

    /// Accepts a number of bytes or a quantity string.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
        match NumberOrText::deserialize(d)? {
            NumberOrText::Number(n) if n.is_finite() && n >= 0.0 => Ok(n),
            NumberOrText::Number(n) => Err(D::Error::custom(format!("{n} must be a non-negative size"))),
            NumberOrText::Text(t) => parse_bytes(&t).map_err(D::Error::custom),
        }
    }

    /// Writes the plain number of bytes.
    pub fn serialize<S: Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(*v)
    }
}

/// Serde for a [`Duration`] in the project's one grammar ([`crate::policy::duration`]:
/// `"90s"`, `"1h30m"`, `"250us"`).
pub mod duration {
    use super::*;

    /// Parses `"90s"`, `"1h30m"`, `"250us"`.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(d)?;
        crate::policy::duration::parse(&text).map_err(D::Error::custom)
    }

    /// Writes the exact duration (`1m30s`), which reads back the same.
    pub fn serialize<S: Serializer>(v: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&crate::policy::duration::format(*v))
    }
}

/// Serde for an optional [`Duration`] in the project's one grammar.
pub mod opt_duration {
    use super::*;

    /// Parses an optional duration.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        match Option::<String>::deserialize(d)? {
            None => Ok(None),
            Some(text) => crate::policy::duration::parse(&text)
                .map(Some)
                .map_err(D::Error::custom),
        }
    }

    /// Writes the exact duration, or nothing.
    pub fn serialize<S: Serializer>(v: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(v) => s.serialize_str(&crate::policy::duration::format(*v)),
            None => s.serialize_none(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_quantities() {
        assert_eq!(parse_bytes("10Gi").unwrap(), 10.0 * 1024f64.powi(3));
        assert_eq!(parse_bytes("2G").unwrap(), 2e9);
        assert_eq!(parse_bytes("1.5Ki").unwrap(), 1536.0);
        assert_eq!(parse_bytes("400").unwrap(), 400.0);
        assert!(parse_bytes("10 apples").is_err());
        assert!(parse_bytes("-1Gi").is_err());
    }
}
