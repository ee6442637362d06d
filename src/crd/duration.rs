//! Durations as Kubernetes and Go write them: `90s`, `2m`, `1h30m`, `1.5h`.

use std::{borrow::Cow, fmt, time::Duration};

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Serialize};

/// The schema pattern of a duration: one or more `<number><unit>` groups, units `ns`, `us`,
/// `µs`, `ms`, `s`, `m`, `h`, no sign. Zero passes the pattern and is rejected by the CEL
/// rule [`DURATION_POSITIVE_RULE`].
pub const DURATION_PATTERN: &str = "^([0-9]+(\\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$";

/// The CEL rule that rejects zero durations (the pattern already rejects signs).
pub const DURATION_POSITIVE_RULE: &str = "duration(self) > duration('0s')";

/// The message of [`DURATION_POSITIVE_RULE`].
pub const DURATION_POSITIVE_MESSAGE: &str = "must be a positive duration such as 90s, 2m or 1h30m";

/// The CEL rule bounding every duration field. The API server's CEL (Go's `time.Duration`)
/// cannot represent more than 2562047h47m16.854775807s and refuses a longer duration with an
/// evaluation error; kube's CEL interpreter clamps it instead. Stating the bound keeps both
/// refusing it, and [`parse_duration`] agrees.
pub const DURATION_MAX_RULE: &str = "duration(self) <= duration('2562047h')";

/// The message of [`DURATION_MAX_RULE`].
pub const DURATION_MAX_MESSAGE: &str =
    "must be at most 2562047h (about 292 years), the longest duration Kubernetes can hold";

/// [`DURATION_MAX_RULE`]'s bound in nanoseconds.
const MAX_NANOS: u128 = 2_562_047 * 3_600_000_000_000;

/// Longest duration string the schema accepts; bounds the CEL cost estimate too.
pub const DURATION_MAX_LENGTH: u64 = 32;

/// Why a duration string was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    /// Nothing to parse.
    #[error("is empty; write a duration such as 90s, 2m or 1h30m")]
    Empty,
    /// A character or unit Go's `time.ParseDuration` would not accept either.
    #[error(
        "{0:?} is not a duration; write a number followed by a unit (ns, us, ms, s, m, h), e.g. 90s, 2m or 1h30m"
    )]
    Invalid(String),
    /// A minus sign: budgets, windows and cooldowns are lengths of time.
    #[error("{0:?} is negative; durations here must be positive")]
    Negative(String),
    /// Zero length.
    #[error("{0:?} is zero; durations here must be positive")]
    Zero(String),
    /// Longer than Kubernetes can hold (see [`DURATION_MAX_RULE`]).
    #[error("{0:?} is too long; durations here are at most 2562047h")]
    Overflow(String),
}

/// A duration written as a Go/Kubernetes duration string (`90s`, `2m`, `1h30m`).
///
/// It keeps the text as written, so a spec read and written back (server-side apply, GitOps
/// diffs) is unchanged; [`KubeDuration::parse`] turns it into a [`Duration`].
///
/// NB: deserialising accepts any string on purpose. The CRD schema and CEL rules reject bad
/// durations at apply time; a spec that bypassed them (an old CRD, a direct etcd write) must
/// still deserialise, so the reconciler can report the field through
/// [`SpecError`](super::SpecError) instead of the watcher failing on the whole list.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct KubeDuration(String);

impl KubeDuration {
    /// Parses and checks `text`, keeping it as written.
    pub fn new(text: &str) -> Result<Self, DurationError> {
        parse_duration(text)?;
        Ok(Self(text.to_owned()))
    }

    /// Formats `d` the way Go's `time.Duration.String` does, trimmed of zero units
    /// (`90s` → `1m30s`, `3600s` → `1h`).
    pub fn from_std(d: Duration) -> Self {
        Self(format_duration(d))
    }

    /// The text as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The duration, or why the text is not a positive duration.
    pub fn parse(&self) -> Result<Duration, DurationError> {
        parse_duration(&self.0)
    }
}

impl fmt::Display for KubeDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::str::FromStr for KubeDuration {
    type Err = DurationError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

impl JsonSchema for KubeDuration {
    fn inline_schema() -> bool {
        true
    }

    fn schema_name() -> Cow<'static, str> {
        "KubeDuration".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "pattern": DURATION_PATTERN,
            "maxLength": DURATION_MAX_LENGTH,
            "x-kubernetes-validations": [
                {"rule": DURATION_POSITIVE_RULE, "message": DURATION_POSITIVE_MESSAGE},
                {"rule": DURATION_MAX_RULE, "message": DURATION_MAX_MESSAGE}
            ]
        })
    }
}

const NANOS_PER_UNIT: [(&str, u128); 8] = [
    ("ns", 1),
    ("us", 1_000),
    ("µs", 1_000),
    ("μs", 1_000),
    ("ms", 1_000_000),
    ("s", 1_000_000_000),
    ("m", 60_000_000_000),
    ("h", 3_600_000_000_000),
];

/// Parses a positive Go duration string (`time.ParseDuration` grammar without the sign:
/// sequences of decimal numbers with an optional fraction and a unit).
pub fn parse_duration(text: &str) -> Result<Duration, DurationError> {
    let invalid = || DurationError::Invalid(text.to_owned());
    if text.is_empty() {
        return Err(DurationError::Empty);
    }
    if text.starts_with('-') {
        return Err(DurationError::Negative(text.to_owned()));
    }
    let mut rest = text;
    let mut total: u128 = 0;
    while !rest.is_empty() {
        let int_len = rest.bytes().take_while(u8::is_ascii_digit).count();
        let int_part = &rest[..int_len];
        rest = &rest[int_len..];
        let mut frac_part = "";
        if let Some(after_dot) = rest.strip_prefix('.') {
            let frac_len = after_dot.bytes().take_while(u8::is_ascii_digit).count();
            frac_part = &after_dot[..frac_len];
            rest = &after_dot[frac_len..];
            if frac_part.is_empty() {
                return Err(invalid());
            }
        }
        if int_part.is_empty() {
            return Err(invalid());
        }
        let (unit, nanos) = NANOS_PER_UNIT
            .iter()
            // Longest unit first among those that match: "ms" before "m".
            .filter(|(unit, _)| rest.starts_with(unit))
            .max_by_key(|(unit, _)| unit.len())
            .ok_or_else(invalid)?;
        rest = &rest[unit.len()..];
        let whole: u128 = int_part
            .parse()
            .map_err(|_| DurationError::Overflow(text.to_owned()))?;
        let mut value = whole
            .checked_mul(*nanos)
            .ok_or_else(|| DurationError::Overflow(text.to_owned()))?;
        // The fraction contributes fraction * nanos, truncated to whole nanoseconds like Go.
        let mut scale = *nanos;
        for digit in frac_part.bytes().take(30) {
            scale /= 10;
            value = value
                .checked_add(u128::from(digit - b'0') * scale)
                .ok_or_else(|| DurationError::Overflow(text.to_owned()))?;
        }
        total = total
            .checked_add(value)
            .ok_or_else(|| DurationError::Overflow(text.to_owned()))?;
    }
    if total == 0 {
        return Err(DurationError::Zero(text.to_owned()));
    }
    if total > MAX_NANOS {
        return Err(DurationError::Overflow(text.to_owned()));
    }
    let secs = u64::try_from(total / 1_000_000_000).map_err(|_| DurationError::Overflow(text.to_owned()))?;
    // The remainder is below 1e9, so it fits.
    let nanos = (total % 1_000_000_000) as u32;
    Ok(Duration::new(secs, nanos))
}

/// Formats a duration compactly in Go units: `1h30m`, `2m`, `1m30s`, `1.5s`, `250ms`.
pub fn format_duration(d: Duration) -> String {
    if d.is_zero() {
        return "0s".to_owned();
    }
    let total_secs = d.as_secs();
    let nanos = d.subsec_nanos();
    if total_secs == 0 {
        return if nanos.is_multiple_of(1_000_000) {
            format!("{}ms", nanos / 1_000_000)
        } else if nanos.is_multiple_of(1_000) {
            format!("{}us", nanos / 1_000)
        } else {
            format!("{nanos}ns")
        };
    }
    let hours = total_secs / 3600;
    let minutes = (total_secs % 3600) / 60;
    let seconds = total_secs % 60;
    let mut out = String::new();
    if hours > 0 {
        out.push_str(&format!("{hours}h"));
    }
    if minutes > 0 {
        out.push_str(&format!("{minutes}m"));
    }
    if seconds > 0 || nanos > 0 {
        if nanos > 0 {
            let frac = format!("{nanos:09}");
            out.push_str(&format!("{seconds}.{}s", frac.trim_end_matches('0')));
        } else {
            out.push_str(&format!("{seconds}s"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn parses_go_durations() {
        assert_eq!(parse_duration("90s"), Ok(secs(90)));
        assert_eq!(parse_duration("2m"), Ok(secs(120)));
        assert_eq!(parse_duration("1h30m"), Ok(secs(5400)));
        assert_eq!(parse_duration("1h30m15s"), Ok(secs(5415)));
        assert_eq!(parse_duration("1.5h"), Ok(secs(5400)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("1m500ms"), Ok(Duration::from_millis(60_500)));
        assert_eq!(parse_duration("10us"), Ok(Duration::from_micros(10)));
        assert_eq!(parse_duration("10µs"), Ok(Duration::from_micros(10)));
        assert_eq!(parse_duration("7ns"), Ok(Duration::from_nanos(7)));
        assert_eq!(parse_duration("0.5s"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("1h0m"), Ok(secs(3600)));
    }

    #[test]
    fn rejects_zero_negative_and_garbage() {
        assert_eq!(parse_duration(""), Err(DurationError::Empty));
        assert!(matches!(parse_duration("0s"), Err(DurationError::Zero(_))));
        assert!(matches!(parse_duration("0h0m"), Err(DurationError::Zero(_))));
        assert!(matches!(parse_duration("-5m"), Err(DurationError::Negative(_))));
        for bad in [
            "5", "m", "5 m", "5min", "1d", "1.m", ".5s", "1h30", "PT5M", "5M", "+5m", "five",
        ] {
            assert!(
                matches!(parse_duration(bad), Err(DurationError::Invalid(_))),
                "{bad:?} should be invalid"
            );
        }
    }

    #[test]
    fn rejects_overflow() {
        assert!(matches!(
            parse_duration("99999999999999999999999999999999999999h"),
            Err(DurationError::Overflow(_))
        ));
        // The bound of the CRD's rule (Go's time.Duration holds a little more).
        assert_eq!(
            parse_duration("2562047h"),
            Ok(Duration::from_secs(2_562_047 * 3600))
        );
        for over in [
            "2562047h1ns",
            "2562048h",
            "153722868m",
            "5124095576030432h",
            "99999999999999999999h",
        ] {
            assert!(
                matches!(parse_duration(over), Err(DurationError::Overflow(_))),
                "{over}"
            );
        }
    }

    #[test]
    fn pattern_agrees_with_parser_on_samples() {
        let re =
            jsonschema::validator_for(&serde_json::json!({"type": "string", "pattern": DURATION_PATTERN}))
                .unwrap();
        for good in ["90s", "2m", "1h30m", "1.5h", "250ms", "10µs", "0s"] {
            assert!(re.is_valid(&serde_json::json!(good)), "{good}");
        }
        for bad in ["", "5", "-5m", "5 m", "1d", ".5s", "1h30", "+5m"] {
            assert!(!re.is_valid(&serde_json::json!(bad)), "{bad}");
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn formats_compactly_and_round_trips() {
        assert_eq!(format_duration(secs(90)), "1m30s");
        assert_eq!(format_duration(secs(3600)), "1h");
        assert_eq!(format_duration(secs(5400)), "1h30m");
        assert_eq!(format_duration(Duration::from_millis(1500)), "1.5s");
        assert_eq!(format_duration(Duration::from_millis(250)), "250ms");
        assert_eq!(format_duration(Duration::ZERO), "0s");
        for d in [
            secs(1),
            secs(61),
            secs(86_400),
            Duration::from_millis(60_500),
            Duration::from_nanos(3),
        ] {
            assert_eq!(parse_duration(&format_duration(d)), Ok(d));
        }
    }

    #[test]
    fn keeps_text_as_written() {
        let d: KubeDuration = serde_json::from_str("\"90s\"").unwrap();
        assert_eq!(d.as_str(), "90s");
        assert_eq!(serde_json::to_string(&d).unwrap(), "\"90s\"");
        assert_eq!(d.parse(), Ok(secs(90)));
        // Deserialising stays lenient; parsing reports.
        let bad: KubeDuration = serde_json::from_str("\"soon\"").unwrap();
        assert!(bad.parse().is_err());
    }
}
