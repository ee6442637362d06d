//! Durations as Kubernetes and Go write them (`90s`, `2m`, `1h30m`, `1.5h`) in the CRD: the
//! schema, the CEL rules and the text kept as written. The grammar and the printing are
//! [`crate::policy::duration`]'s, the one place the project reads and prints durations.

use std::{borrow::Cow, fmt, time::Duration};

pub use crate::policy::duration::{
    DurationError, format as format_duration, parse_positive as parse_duration,
};

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

/// Longest duration string the schema accepts; bounds the CEL cost estimate too.
pub const DURATION_MAX_LENGTH: u64 = 32;

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

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
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
