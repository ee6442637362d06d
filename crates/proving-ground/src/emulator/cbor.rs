//! The CBOR of Smithy RPC v2: a small writer that always emits what both SDKs read, and
//! typed accessors over decoded request bodies.
//!
//! NB: the writer is hand-rolled on purpose. `ciborium` shrinks every float to the smallest
//! lossless width (`1.0` becomes a half-precision float), and the Rust SDK's decoder
//! (`aws-smithy-cbor` over `minicbor` without its `half` feature) rejects half-precision
//! floats. Doubles are therefore always written as 64-bit floats, as the SDKs write them.

use jiff::Timestamp;

/// A CBOR data item to encode.
#[derive(Clone, Debug, PartialEq)]
pub enum Cbor {
    /// A boolean.
    Bool(bool),
    /// A signed integer.
    Int(i64),
    /// A double, always written as a 64-bit float.
    Double(f64),
    /// A UTF-8 text string.
    Text(String),
    /// An epoch-seconds timestamp: tag 1 around a 64-bit float with millisecond precision.
    Timestamp(Timestamp),
    /// A definite-length array.
    Array(Vec<Cbor>),
    /// A definite-length map with text keys, in the given order.
    Map(Vec<(String, Cbor)>),
}

impl Cbor {
    /// A text item.
    pub fn text(s: impl Into<String>) -> Self {
        Cbor::Text(s.into())
    }

    /// Encodes this item.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(256);
        self.write(&mut out);
        out
    }

    fn write(&self, out: &mut Vec<u8>) {
        match self {
            Cbor::Bool(b) => out.push(if *b { 0xf5 } else { 0xf4 }),
            Cbor::Int(i) => {
                if *i >= 0 {
                    head(out, 0, i.unsigned_abs());
                } else {
                    // CBOR negative integers encode -1 - n.
                    head(out, 1, (-1 - *i) as u64);
                }
            }
            Cbor::Double(f) => {
                out.push(0xfb);
                out.extend_from_slice(&f.to_be_bytes());
            }
            Cbor::Text(s) => {
                head(out, 3, s.len() as u64);
                out.extend_from_slice(s.as_bytes());
            }
            Cbor::Timestamp(t) => {
                head(out, 6, 1);
                out.push(0xfb);
                out.extend_from_slice(&epoch_seconds(*t).to_be_bytes());
            }
            Cbor::Array(items) => {
                head(out, 4, items.len() as u64);
                for item in items {
                    item.write(out);
                }
            }
            Cbor::Map(entries) => {
                head(out, 5, entries.len() as u64);
                for (key, value) in entries {
                    head(out, 3, key.len() as u64);
                    out.extend_from_slice(key.as_bytes());
                    value.write(out);
                }
            }
        }
    }
}

impl Cbor {
    /// The same item as awsJson 1.0 writes it (timestamps as epoch-seconds numbers), for
    /// CloudWatch's JSON protocol, which shares the shapes of its CBOR protocol.
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value;
        match self {
            Cbor::Bool(b) => Value::Bool(*b),
            Cbor::Int(i) => Value::from(*i),
            // Smithy's JSON protocols write the non-finite doubles as strings.
            Cbor::Double(f) if f.is_nan() => Value::String("NaN".into()),
            Cbor::Double(f) if f.is_infinite() => {
                Value::String(if *f > 0.0 { "Infinity" } else { "-Infinity" }.into())
            }
            Cbor::Double(f) => serde_json::Number::from_f64(*f).map_or(Value::Null, Value::Number),
            Cbor::Text(s) => Value::String(s.clone()),
            Cbor::Timestamp(t) => {
                serde_json::Number::from_f64(epoch_seconds(*t)).map_or(Value::Null, Value::Number)
            }
            Cbor::Array(items) => Value::Array(items.iter().map(Cbor::to_json).collect()),
            Cbor::Map(entries) => {
                Value::Object(entries.iter().map(|(k, v)| (k.clone(), v.to_json())).collect())
            }
        }
    }
}

/// Converts a JSON request body to the decoded-CBOR form, so one decoder serves both of
/// CloudWatch's protocols. Members named in `timestamps` become tag-1 timestamps, as
/// JSON carries them as bare epoch-seconds numbers.
pub fn json_body(
    body: &[u8],
    timestamps: &[&str],
) -> Result<Vec<(ciborium::Value, ciborium::Value)>, DecodeError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Vec::new());
    }
    let value: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| DecodeError::Malformed(format!("not valid JSON: {e}")))?;
    match from_json(&value, false, timestamps) {
        ciborium::Value::Map(entries) => Ok(entries),
        _ => Err(DecodeError::Malformed(
            "the top-level value is not an object".into(),
        )),
    }
}

fn from_json(value: &serde_json::Value, timestamp: bool, timestamps: &[&str]) -> ciborium::Value {
    use ciborium::Value as C;
    use serde_json::Value as J;
    match value {
        J::Null => C::Null,
        J::Bool(b) => C::Bool(*b),
        J::Number(n) => {
            let number = match (n.as_i64(), n.as_f64()) {
                (Some(i), _) => C::Integer(i.into()),
                (None, Some(f)) => C::Float(f),
                (None, None) => C::Null,
            };
            if timestamp {
                C::Tag(1, Box::new(number))
            } else {
                number
            }
        }
        J::String(s) => C::Text(s.clone()),
        J::Array(items) => C::Array(
            items
                .iter()
                .map(|v| from_json(v, timestamp, timestamps))
                .collect(),
        ),
        J::Object(map) => C::Map(
            map.iter()
                .map(|(k, v)| {
                    (
                        C::Text(k.clone()),
                        from_json(v, timestamps.contains(&k.as_str()), timestamps),
                    )
                })
                .collect(),
        ),
    }
}

/// Epoch seconds with millisecond precision, the resolution both SDKs keep.
pub fn epoch_seconds(t: Timestamp) -> f64 {
    t.as_millisecond() as f64 / 1000.0
}

/// Writes a CBOR head: major type and argument in the shortest form.
fn head(out: &mut Vec<u8>, major: u8, n: u64) {
    let m = major << 5;
    if n < 24 {
        out.push(m | n as u8);
    } else if n <= u64::from(u8::MAX) {
        out.push(m | 24);
        out.push(n as u8);
    } else if n <= u64::from(u16::MAX) {
        out.push(m | 25);
        out.extend_from_slice(&(n as u16).to_be_bytes());
    } else if n <= u64::from(u32::MAX) {
        out.push(m | 26);
        out.extend_from_slice(&(n as u32).to_be_bytes());
    } else {
        out.push(m | 27);
        out.extend_from_slice(&n.to_be_bytes());
    }
}

/// Why a request body could not be read as the operation's input.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum DecodeError {
    /// The bytes are not CBOR.
    #[error("the request body is not valid CBOR: {0}")]
    Malformed(String),
    /// A member has the wrong type.
    #[error("member {member} must be {expected}")]
    WrongType {
        /// The member's path, e.g. `MetricDataQueries.member.3.MetricStat.Period`.
        member: String,
        /// What the member should have been.
        expected: &'static str,
    },
}

/// Decodes a request body into a map. An empty body is an empty input, as Smithy allows.
pub fn decode_body(body: &[u8]) -> Result<Vec<(ciborium::Value, ciborium::Value)>, DecodeError> {
    if body.is_empty() {
        return Ok(Vec::new());
    }
    let value: ciborium::Value =
        ciborium::de::from_reader(body).map_err(|e| DecodeError::Malformed(e.to_string()))?;
    match value {
        ciborium::Value::Map(entries) => Ok(entries),
        _ => Err(DecodeError::Malformed("the top-level item is not a map".into())),
    }
}

/// Typed read access to one decoded CBOR map (a structure), with member paths for errors.
#[derive(Clone, Copy, Debug)]
pub struct Struct<'a> {
    entries: &'a [(ciborium::Value, ciborium::Value)],
    path: &'a str,
}

impl<'a> Struct<'a> {
    /// Wraps a decoded map; `path` prefixes member names in error messages.
    pub fn new(entries: &'a [(ciborium::Value, ciborium::Value)], path: &'a str) -> Self {
        Self { entries, path }
    }

    /// The path of a member, for messages.
    pub fn member_path(&self, member: &str) -> String {
        if self.path.is_empty() {
            member.to_string()
        } else {
            format!("{}.{member}", self.path)
        }
    }

    /// The raw value of a member; CBOR `null` counts as absent, as in Smithy.
    pub fn get(&self, member: &str) -> Option<&'a ciborium::Value> {
        self.entries.iter().find_map(|(k, v)| match k {
            ciborium::Value::Text(key) if key == member && !v.is_null() => Some(v),
            _ => None,
        })
    }

    fn wrong(&self, member: &str, expected: &'static str) -> DecodeError {
        DecodeError::WrongType {
            member: self.member_path(member),
            expected,
        }
    }

    /// A string member.
    pub fn string(&self, member: &str) -> Result<Option<String>, DecodeError> {
        match self.get(member) {
            None => Ok(None),
            Some(ciborium::Value::Text(s)) => Ok(Some(s.clone())),
            Some(_) => Err(self.wrong(member, "a string")),
        }
    }

    /// An integer member.
    pub fn int(&self, member: &str) -> Result<Option<i64>, DecodeError> {
        match self.get(member) {
            None => Ok(None),
            Some(ciborium::Value::Integer(i)) => i64::try_from(i128::from(*i))
                .map(Some)
                .map_err(|_| self.wrong(member, "a 64-bit integer")),
            Some(_) => Err(self.wrong(member, "an integer")),
        }
    }

    /// A double member (integers are accepted, as a lenient server would).
    pub fn double(&self, member: &str) -> Result<Option<f64>, DecodeError> {
        match self.get(member) {
            None => Ok(None),
            Some(v) => as_double(v)
                .map(Some)
                .ok_or_else(|| self.wrong(member, "a number")),
        }
    }

    /// A boolean member.
    pub fn bool(&self, member: &str) -> Result<Option<bool>, DecodeError> {
        match self.get(member) {
            None => Ok(None),
            Some(ciborium::Value::Bool(b)) => Ok(Some(*b)),
            Some(_) => Err(self.wrong(member, "a boolean")),
        }
    }

    /// A timestamp member: tag 1 around an integer or float of epoch seconds.
    pub fn timestamp(&self, member: &str) -> Result<Option<Timestamp>, DecodeError> {
        match self.get(member) {
            None => Ok(None),
            Some(v) => as_timestamp(v)
                .map(Some)
                .ok_or_else(|| self.wrong(member, "a timestamp (tag 1)")),
        }
    }

    /// A structure member.
    pub fn structure(
        &self,
        member: &str,
    ) -> Result<Option<&'a [(ciborium::Value, ciborium::Value)]>, DecodeError> {
        match self.get(member) {
            None => Ok(None),
            Some(ciborium::Value::Map(entries)) => Ok(Some(entries.as_slice())),
            Some(_) => Err(self.wrong(member, "a structure")),
        }
    }

    /// A list member.
    pub fn list(&self, member: &str) -> Result<Option<&'a [ciborium::Value]>, DecodeError> {
        match self.get(member) {
            None => Ok(None),
            Some(ciborium::Value::Array(items)) => Ok(Some(items.as_slice())),
            Some(_) => Err(self.wrong(member, "a list")),
        }
    }

    /// A list of strings.
    pub fn string_list(&self, member: &str) -> Result<Option<Vec<String>>, DecodeError> {
        let Some(items) = self.list(member)? else {
            return Ok(None);
        };
        items
            .iter()
            .map(|v| match v {
                ciborium::Value::Text(s) => Ok(s.clone()),
                _ => Err(self.wrong(member, "a list of strings")),
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some)
    }

    /// A list of doubles.
    pub fn double_list(&self, member: &str) -> Result<Option<Vec<f64>>, DecodeError> {
        let Some(items) = self.list(member)? else {
            return Ok(None);
        };
        items
            .iter()
            .map(|v| as_double(v).ok_or_else(|| self.wrong(member, "a list of numbers")))
            .collect::<Result<Vec<_>, _>>()
            .map(Some)
    }
}

/// A list element that must be a structure.
pub fn element_struct<'a>(
    value: &'a ciborium::Value,
    path: &str,
) -> Result<&'a [(ciborium::Value, ciborium::Value)], DecodeError> {
    match value {
        ciborium::Value::Map(entries) => Ok(entries.as_slice()),
        _ => Err(DecodeError::WrongType {
            member: path.to_string(),
            expected: "a structure",
        }),
    }
}

fn as_double(v: &ciborium::Value) -> Option<f64> {
    match v {
        ciborium::Value::Float(f) => Some(*f),
        ciborium::Value::Integer(i) => Some(i128::from(*i) as f64),
        _ => None,
    }
}

fn as_timestamp(v: &ciborium::Value) -> Option<Timestamp> {
    let ciborium::Value::Tag(1, inner) = v else {
        return None;
    };
    let secs = as_double(inner)?;
    if !secs.is_finite() {
        return None;
    }
    Timestamp::from_millisecond((secs * 1000.0).round() as i64).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip(item: &Cbor) -> ciborium::Value {
        ciborium::de::from_reader(item.encode().as_slice()).unwrap()
    }

    #[test]
    fn doubles_are_always_64_bit() {
        let bytes = Cbor::Double(1.0).encode();
        assert_eq!(bytes[0], 0xfb);
        assert_eq!(bytes.len(), 9);
    }

    #[test]
    fn integers_use_the_shortest_head() {
        assert_eq!(Cbor::Int(10).encode(), vec![0x0a]);
        assert_eq!(Cbor::Int(500).encode(), vec![0x19, 0x01, 0xf4]);
        assert_eq!(Cbor::Int(-1).encode(), vec![0x20]);
        assert_eq!(Cbor::Int(-500).encode(), vec![0x39, 0x01, 0xf3]);
        assert_eq!(
            roundtrip(&Cbor::Int(i64::MIN)),
            ciborium::Value::Integer(i64::MIN.into())
        );
        assert_eq!(
            roundtrip(&Cbor::Int(1 << 40)),
            ciborium::Value::Integer((1i64 << 40).into())
        );
    }

    #[test]
    fn timestamps_are_tag_1_doubles_with_milliseconds() {
        let t = Timestamp::from_millisecond(1_700_000_000_123).unwrap();
        let bytes = Cbor::Timestamp(t).encode();
        assert_eq!(bytes[0], 0xc1);
        assert_eq!(bytes[1], 0xfb);
        let value = roundtrip(&Cbor::Timestamp(t));
        assert_eq!(as_timestamp(&value), Some(t));
    }

    #[test]
    fn maps_and_arrays_roundtrip_through_ciborium() {
        let item = Cbor::Map(vec![
            ("Id".into(), Cbor::text("q1")),
            (
                "Values".into(),
                Cbor::Array(vec![Cbor::Double(1.5), Cbor::Double(-2.0)]),
            ),
            ("Ok".into(), Cbor::Bool(true)),
            ("Long".into(), Cbor::text("x".repeat(300))),
        ]);
        let decoded = roundtrip(&item);
        let ciborium::Value::Map(entries) = decoded else {
            panic!("not a map")
        };
        let s = Struct::new(&entries, "");
        assert_eq!(s.string("Id").unwrap().as_deref(), Some("q1"));
        assert_eq!(s.double_list("Values").unwrap(), Some(vec![1.5, -2.0]));
        assert_eq!(s.bool("Ok").unwrap(), Some(true));
        assert_eq!(s.string("Long").unwrap().map(|l| l.len()), Some(300));
        assert_eq!(s.string("Missing").unwrap(), None);
    }

    #[test]
    fn accessors_report_the_member_path_on_type_errors() {
        let entries = vec![(
            ciborium::Value::Text("Period".into()),
            ciborium::Value::Text("60".into()),
        )];
        let s = Struct::new(&entries, "MetricDataQueries.member.1.MetricStat");
        assert_eq!(
            s.int("Period").unwrap_err(),
            DecodeError::WrongType {
                member: "MetricDataQueries.member.1.MetricStat.Period".into(),
                expected: "an integer"
            }
        );
    }

    #[test]
    fn timestamps_accept_integers_and_half_floats() {
        // botocore writes tag 1 around an unsigned integer.
        let int: ciborium::Value =
            ciborium::de::from_reader([0xc1, 0x1a, 0x65, 0x53, 0xf1, 0x00].as_slice()).unwrap();
        assert_eq!(
            as_timestamp(&int),
            Some(Timestamp::from_second(0x6553_f100).unwrap())
        );
        // tag 1 around half-precision 1.0
        let half: ciborium::Value = ciborium::de::from_reader([0xc1, 0xf9, 0x3c, 0x00].as_slice()).unwrap();
        assert_eq!(as_timestamp(&half), Some(Timestamp::from_second(1).unwrap()));
        assert_eq!(as_timestamp(&ciborium::Value::Float(1.0)), None);
    }

    #[test]
    fn json_bodies_become_the_same_decoded_form() {
        let entries = json_body(
            br#"{"StartTime": 1767571200.5, "Period": 60, "Ids": ["a"]}"#,
            &["StartTime"],
        )
        .unwrap();
        let s = Struct::new(&entries, "");
        assert_eq!(
            s.timestamp("StartTime").unwrap(),
            Some(Timestamp::from_millisecond(1_767_571_200_500).unwrap())
        );
        assert_eq!(s.int("Period").unwrap(), Some(60));
        assert_eq!(s.string_list("Ids").unwrap(), Some(vec!["a".to_string()]));
        assert!(json_body(b"", &[]).unwrap().is_empty());
        assert!(matches!(json_body(b"[1]", &[]), Err(DecodeError::Malformed(_))));
        let item = Cbor::Map(vec![
            ("T".into(), Cbor::Timestamp(Timestamp::from_second(60).unwrap())),
            (
                "V".into(),
                Cbor::Array(vec![Cbor::Double(1.5), Cbor::Int(2), Cbor::Bool(true)]),
            ),
        ]);
        assert_eq!(
            item.to_json(),
            serde_json::json!({"T": 60.0, "V": [1.5, 2, true]})
        );
    }

    #[test]
    fn empty_and_malformed_bodies() {
        assert_eq!(decode_body(&[]).unwrap(), Vec::new());
        assert!(matches!(
            decode_body(&[0xff, 0x00]),
            Err(DecodeError::Malformed(_))
        ));
        assert!(matches!(
            decode_body(&Cbor::Int(1).encode()),
            Err(DecodeError::Malformed(_))
        ));
        // Indefinite-length map {"a": 1}
        let entries = decode_body(&[0xbf, 0x61, b'a', 0x01, 0xff]).unwrap();
        assert_eq!(Struct::new(&entries, "").int("a").unwrap(), Some(1));
    }
}
