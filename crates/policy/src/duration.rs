//! Durations: one grammar to read them and one way to print them, for the whole project.
//!
//! The grammar is Go's `time.ParseDuration` (what Kubernetes and its CEL `duration()` use):
//! decimal numbers, each with an optional fraction and a unit `ns`, `us` (`µs`, `μs`), `ms`,
//! `s`, `m` or `h` — `90s`, `2m`, `1h30m`, `1.5h`. Budgets, command-line flags and scenario
//! files are read with [`parse`] (the grammar without a sign, a fraction with a leading
//! digit, at most [`MAX`]: exactly what the CRD's pattern and rules accept); [`go_nanos`] is
//! the whole of Go's grammar, for judging CEL literals as an API server would.
//!
//! Everything printed comes from [`format()`], in the same grammar, so any duration the
//! project prints can be read back: [`format()`] exactly (`1m30s`, `250ms`), [`human`] rounded
//! to what a person reads in a message (`850ms`, `4.2s`, `1m43s`, `2h5m`).
//!
//! Pure: no I/O, no clock.

use std::time::Duration;

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
    /// A minus sign: budgets, windows, cooldowns and periods are lengths of time.
    #[error("{0:?} is negative; durations here must be positive")]
    Negative(String),
    /// Zero length where a positive duration is required.
    #[error("{0:?} is zero; durations here must be positive")]
    Zero(String),
    /// Longer than Kubernetes can hold (see [`MAX`]).
    #[error("{0:?} is too long; durations here are at most 2562047h")]
    Overflow(String),
}

/// The longest duration accepted: the API server's CEL (Go's `time.Duration`, at most
/// 2562047h47m16.854775807s) cannot hold more, and the CRD's rule states this bound.
pub const MAX: Duration = Duration::from_secs(2_562_047 * 3600);

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

/// How strictly [`scan`] reads: Go's own grammar, or the project's subset of it.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Grammar {
    /// `time.ParseDuration`: a sign, `.5s` and a bare `0` are allowed.
    Go,
    /// No sign, no bare `0`, a digit before every fraction.
    Project,
}

/// The one scanner: the sign and the magnitude in nanoseconds (unbounded but for `u128`).
fn scan(text: &str, grammar: Grammar) -> Result<(bool, u128), DurationError> {
    let invalid = || DurationError::Invalid(text.to_owned());
    let overflow = || DurationError::Overflow(text.to_owned());
    if text.is_empty() {
        return Err(DurationError::Empty);
    }
    let (negative, mut rest) = match text.as_bytes()[0] {
        b'-' if grammar == Grammar::Go => (true, &text[1..]),
        b'+' if grammar == Grammar::Go => (false, &text[1..]),
        b'-' => return Err(DurationError::Negative(text.to_owned())),
        _ => (false, text),
    };
    if rest == "0" && grammar == Grammar::Go {
        return Ok((negative, 0));
    }
    if rest.is_empty() {
        return Err(invalid());
    }
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
            if frac_part.is_empty() && grammar == Grammar::Project {
                return Err(invalid());
            }
        }
        let digits_ok = match grammar {
            Grammar::Project => !int_part.is_empty(),
            Grammar::Go => !(int_part.is_empty() && frac_part.is_empty()),
        };
        if !digits_ok {
            return Err(invalid());
        }
        let (unit, nanos) = NANOS_PER_UNIT
            .iter()
            // Longest unit first among those that match: "ms" before "m".
            .filter(|(unit, _)| rest.starts_with(unit))
            .max_by_key(|(unit, _)| unit.len())
            .ok_or_else(invalid)?;
        rest = &rest[unit.len()..];
        let whole: u128 = if int_part.is_empty() {
            0
        } else {
            int_part.parse().map_err(|_| overflow())?
        };
        let mut value = whole.checked_mul(*nanos).ok_or_else(overflow)?;
        // The fraction contributes fraction * nanos, truncated to whole nanoseconds like Go.
        let mut scale = *nanos;
        for digit in frac_part.bytes().take(30) {
            scale /= 10;
            value = value
                .checked_add(u128::from(digit - b'0') * scale)
                .ok_or_else(overflow)?;
        }
        total = total.checked_add(value).ok_or_else(overflow)?;
    }
    Ok((negative, total))
}

/// Reads a duration in the project's grammar (zero allowed, at most [`MAX`]): budgets,
/// command-line flags, scenario files.
pub fn parse(text: &str) -> Result<Duration, DurationError> {
    let (_, total) = scan(text, Grammar::Project)?;
    if total > MAX.as_nanos() {
        return Err(DurationError::Overflow(text.to_owned()));
    }
    let secs = u64::try_from(total / 1_000_000_000).map_err(|_| DurationError::Overflow(text.to_owned()))?;
    // The remainder is below 1e9, so it fits.
    Ok(Duration::new(secs, (total % 1_000_000_000) as u32))
}

/// [`parse`], refusing zero: budgets' windows, objectives and cooldowns.
pub fn parse_positive(text: &str) -> Result<Duration, DurationError> {
    let d = parse(text)?;
    if d.is_zero() {
        return Err(DurationError::Zero(text.to_owned()));
    }
    Ok(d)
}

/// Go's `time.ParseDuration` in full, as CEL's `duration()` reads a literal: an optional
/// sign, `.5s`, a bare `0`; at most 2^63 - 1 nanoseconds. The signed nanoseconds, or `None`
/// where Go returns an error.
pub fn go_nanos(text: &str) -> Option<i128> {
    let (negative, total) = scan(text, Grammar::Go).ok()?;
    let total = i128::try_from(total)
        .ok()
        .filter(|t| *t <= i128::from(i64::MAX))?;
    Some(if negative { -total } else { total })
}

/// Prints a duration exactly, compactly, in the grammar: `1h30m`, `2m`, `1m30s`, `1.5s`,
/// `250ms`, `0s`. [`parse`] reads it back to the same duration.
pub fn format(d: Duration) -> String {
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
    if nanos > 0 {
        let frac = format!("{nanos:09}");
        out.push_str(&format!("{seconds}.{}s", frac.trim_end_matches('0')));
    } else if seconds > 0 {
        out.push_str(&format!("{seconds}s"));
    }
    out
}

/// A duration rounded to what a person reads: milliseconds below a second, tenths of a
/// second below ten, seconds below an hour, minutes above.
pub fn round(d: Duration) -> Duration {
    let ms = d.as_millis();
    let step: u128 = match ms {
        ms if ms < 1_000 => 1,
        ms if ms < 10_000 => 100,
        ms if ms < 3_600_000 => 1_000,
        _ => 60_000,
    };
    // Half up; a value that rounds up to the next range is printed in it (`9.96s` → `10s`).
    let sub_ms = u128::from(d.subsec_nanos() % 1_000_000 >= 500_000);
    let rounded = (ms + sub_ms + step / 2) / step * step;
    Duration::from_millis(u64::try_from(rounded).unwrap_or(u64::MAX))
}

/// A duration for a message or a table: [`format()`] of [`round`] (`850ms`, `4.2s`, `1m43s`,
/// `2h5m`).
pub fn human(d: Duration) -> String {
    format(round(d))
}

/// [`human`] of a figure in milliseconds as the metrics carry them; `n/a` when it is not a
/// number, `0s` below zero.
pub fn human_ms(ms: f64) -> String {
    if !ms.is_finite() {
        return "n/a".to_owned();
    }
    human(Duration::from_secs_f64(ms.max(0.0) / 1000.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn parses_go_durations() {
        assert_eq!(parse("90s"), Ok(secs(90)));
        assert_eq!(parse("2m"), Ok(secs(120)));
        assert_eq!(parse("1h30m"), Ok(secs(5400)));
        assert_eq!(parse("1h30m15s"), Ok(secs(5415)));
        assert_eq!(parse("1.5h"), Ok(secs(5400)));
        assert_eq!(parse("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse("1m500ms"), Ok(Duration::from_millis(60_500)));
        assert_eq!(parse("10us"), Ok(Duration::from_micros(10)));
        assert_eq!(parse("10µs"), Ok(Duration::from_micros(10)));
        assert_eq!(parse("7ns"), Ok(Duration::from_nanos(7)));
        assert_eq!(parse("0.5s"), Ok(Duration::from_millis(500)));
        assert_eq!(parse("1h0m"), Ok(secs(3600)));
        // Zero is a duration (a frozen clock, an offset); budgets refuse it.
        assert_eq!(parse("0s"), Ok(Duration::ZERO));
        assert!(matches!(parse_positive("0s"), Err(DurationError::Zero(_))));
        assert!(matches!(parse_positive("0h0m"), Err(DurationError::Zero(_))));
    }

    #[test]
    fn refuses_what_the_crd_pattern_refuses() {
        assert_eq!(parse(""), Err(DurationError::Empty));
        assert!(matches!(parse("-5m"), Err(DurationError::Negative(_))));
        for bad in [
            "5", "0", "m", "5 m", "5min", "1d", "1.m", ".5s", "1h30", "PT5M", "5M", "+5m", "five", "1h 30m",
        ] {
            assert!(
                matches!(parse(bad), Err(DurationError::Invalid(_))),
                "{bad:?} should be invalid"
            );
        }
        assert_eq!(parse("2562047h"), Ok(MAX));
        for over in ["2562047h1ns", "2562048h", "99999999999999999999h"] {
            assert!(matches!(parse(over), Err(DurationError::Overflow(_))), "{over}");
        }
    }

    #[test]
    fn go_grammar_in_full() {
        assert_eq!(go_nanos("0"), Some(0));
        assert_eq!(go_nanos("1h30m"), Some(5_400_000_000_000));
        assert_eq!(go_nanos("-1.5s"), Some(-1_500_000_000));
        assert_eq!(go_nanos("+2m"), Some(120_000_000_000));
        assert_eq!(go_nanos(".5m"), Some(30_000_000_000));
        assert_eq!(go_nanos("300µs"), Some(300_000));
        assert_eq!(go_nanos("2562047h"), Some(2_562_047 * 3_600_000_000_000));
        assert_eq!(go_nanos("2562048h"), None);
        for bad in [
            "",
            "1",
            "1d",
            "1x",
            "h",
            ".s",
            "1..5s",
            "-",
            "2562048h",
            "2562047h2562047h",
        ] {
            assert_eq!(go_nanos(bad), None, "{bad:?}");
        }
        // The project's grammar is a subset of Go's: what it reads, Go reads the same.
        for good in ["90s", "1h30m", "1.5h", "250ms", "10µs", "0s"] {
            assert_eq!(go_nanos(good), Some(parse(good).unwrap().as_nanos() as i128));
        }
    }

    #[test]
    fn formats_exactly_and_round_trips() {
        assert_eq!(format(secs(90)), "1m30s");
        assert_eq!(format(secs(3600)), "1h");
        assert_eq!(format(secs(5400)), "1h30m");
        assert_eq!(format(Duration::from_millis(1500)), "1.5s");
        assert_eq!(format(Duration::from_millis(250)), "250ms");
        assert_eq!(format(Duration::from_millis(60_500)), "1m0.5s");
        assert_eq!(format(Duration::ZERO), "0s");
        for d in [
            secs(1),
            secs(61),
            secs(86_400),
            Duration::from_millis(60_500),
            Duration::from_nanos(3),
            Duration::from_micros(200),
        ] {
            assert_eq!(parse(&format(d)), Ok(d));
        }
    }

    #[test]
    fn human_rounds_to_what_a_person_reads() {
        assert_eq!(human_ms(850.0), "850ms");
        assert_eq!(human_ms(999.6), "1s");
        assert_eq!(human_ms(4_240.0), "4.2s");
        assert_eq!(human_ms(9_960.0), "10s");
        assert_eq!(human_ms(45_000.0), "45s");
        assert_eq!(human_ms(60_000.0), "1m");
        assert_eq!(human_ms(103_412.0), "1m43s");
        assert_eq!(human_ms(125_000.0), "2m5s");
        assert_eq!(human_ms(3_720_000.0), "1h2m");
        assert_eq!(human_ms(3_749_000.0), "1h2m");
        assert_eq!(human_ms(f64::NAN), "n/a");
        assert_eq!(human_ms(-5.0), "0s");
        // Whatever is printed reads back, within the rounding.
        for ms in [0.4, 1.0, 999.0, 1_050.0, 59_999.0, 86_400_000.0, 1.0e12] {
            let d = Duration::from_secs_f64(ms / 1000.0);
            let back = parse(&human(d)).unwrap();
            assert!(back.abs_diff(d) <= Duration::from_secs(30), "{ms}: {}", human(d));
        }
    }
}
