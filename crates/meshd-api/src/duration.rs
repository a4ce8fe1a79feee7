//! Durations as Istio's resources write them: Go's `time.ParseDuration` syntax without a sign (`10ms`,
//! `1.5s`, `1h2m3.5s`; units `ns`, `us`/`µs`, `ms`, `s`, `m`, `h`). One parser for every duration field of
//! the traffic and security kinds, so the CRD schema, `meshd validate` and translation agree. A bare number
//! (`"5"`, even `"0"`) is refused: its unit would be a guess.

use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The schema pattern for the syntax [`parse_duration`] accepts (a test keeps them equal).
pub const DURATION_PATTERN: &str = r"^(([0-9]+(\.[0-9]*)?|\.[0-9]+)(ns|us|µs|μs|ms|s|m|h))+$";

/// The longest duration text the schema admits (bounds the CEL rule's cost).
pub const DURATION_MAX_LENGTH: u32 = 32;

/// Why a duration was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    #[error("is empty")]
    Empty,
    #[error("has no unit (write e.g. 10s, 500ms or 1h30m)")]
    MissingUnit,
    #[error("has an unknown unit {0:?} (units are ns, us, ms, s, m, h)")]
    UnknownUnit(String),
    #[error("is not a duration (write e.g. 10s, 500ms or 1h30m)")]
    Syntax,
    #[error("is too long a duration (at most about 292 years)")]
    Overflow,
}

/// Parses Go/Istio duration text into a [`std::time::Duration`].
pub fn parse_duration(text: &str) -> Result<std::time::Duration, DurationError> {
    if text.is_empty() {
        return Err(DurationError::Empty);
    }
    let bytes = text.as_bytes();
    let mut i = 0;
    let mut total: u128 = 0;
    while i < bytes.len() {
        let start = i;
        while i < bytes.len() && bytes[i].is_ascii_digit() {
            i += 1;
        }
        let whole = &text[start..i];
        let mut fraction = "";
        if i < bytes.len() && bytes[i] == b'.' {
            i += 1;
            let f = i;
            while i < bytes.len() && bytes[i].is_ascii_digit() {
                i += 1;
            }
            fraction = &text[f..i];
        }
        if whole.is_empty() && fraction.is_empty() {
            return Err(DurationError::Syntax);
        }
        let unit_start = i;
        while i < bytes.len() && !bytes[i].is_ascii_digit() && bytes[i] != b'.' {
            i += 1;
        }
        let unit = &text[unit_start..i];
        let nanos_per_unit: u128 = match unit {
            "" => return Err(DurationError::MissingUnit),
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            other => return Err(DurationError::UnknownUnit(other.to_string())),
        };
        total += whole_nanos(whole, nanos_per_unit)? + fraction_nanos(fraction, nanos_per_unit);
        if total > i64::MAX as u128 {
            return Err(DurationError::Overflow);
        }
    }
    let secs = (total / 1_000_000_000) as u64;
    let nanos = (total % 1_000_000_000) as u32;
    Ok(std::time::Duration::new(secs, nanos))
}

fn whole_nanos(digits: &str, per_unit: u128) -> Result<u128, DurationError> {
    if digits.is_empty() {
        return Ok(0);
    }
    // More than 20 digits overflows whatever the unit; u128 holds 20 digits times an hour in ns.
    if digits.trim_start_matches('0').len() > 20 {
        return Err(DurationError::Overflow);
    }
    let n: u128 = digits.parse().map_err(|_| DurationError::Overflow)?;
    Ok(n * per_unit)
}

/// The fraction's nanoseconds, truncated as Go truncates (digits past nanosecond precision drop).
fn fraction_nanos(digits: &str, per_unit: u128) -> u128 {
    let mut value: u128 = 0;
    let mut scale: u128 = 1;
    for d in digits.bytes().take(19) {
        value = value * 10 + u128::from(d - b'0');
        scale *= 10;
    }
    value * per_unit / scale
}

/// A duration field: the text as written (kept for round trips and messages), parsed on use with
/// [`Duration::get`]. Validation (`crate::validate`) reports text that does not parse, so translation may
/// treat an error as a bug.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, Hash)]
#[serde(transparent)]
pub struct Duration(pub String);

impl Duration {
    pub fn new(text: impl Into<String>) -> Self {
        Self(text.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn get(&self) -> Result<std::time::Duration, DurationError> {
        parse_duration(&self.0)
    }
}

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Schema of a duration that must be at least 1 ms (Istio's rule for every timeout and interval).
impl JsonSchema for Duration {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Duration".into()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "maxLength": DURATION_MAX_LENGTH,
            "pattern": DURATION_PATTERN,
            "x-kubernetes-validations": [{
                "rule": "duration(self) >= duration('1ms')",
                "messageExpression": "'\"' + self + '\" is not a duration of at least 1ms, such as 10s, 500ms or 1h30m'",
            }],
        })
    }
}

/// Schema of a duration that may be zero (cookie TTLs: 0s makes a session cookie).
pub fn any_duration_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "string",
        "maxLength": DURATION_MAX_LENGTH,
        "pattern": DURATION_PATTERN,
        "nullable": true,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::time::Duration as Std;

    #[test]
    fn accepts_go_syntax() {
        for (text, want) in [
            ("10ms", Std::from_millis(10)),
            ("1.5s", Std::from_millis(1500)),
            ("1h2m3.5s", Std::from_millis(3_723_500)),
            ("0s", Std::ZERO),
            (".5s", Std::from_millis(500)),
            ("1.s", Std::from_secs(1)),
            ("300us", Std::from_micros(300)),
            ("300µs", Std::from_micros(300)),
            ("7ns", Std::from_nanos(7)),
            ("90m", Std::from_secs(5400)),
            ("1.0000000001s", Std::from_secs(1)),
        ] {
            assert_eq!(parse_duration(text), Ok(want), "{text}");
        }
    }

    #[test]
    fn refuses_what_go_or_istio_would_not_take() {
        for (text, want) in [
            ("", DurationError::Empty),
            ("5", DurationError::MissingUnit),
            ("0", DurationError::MissingUnit),
            ("1h5", DurationError::MissingUnit),
            ("10sec", DurationError::UnknownUnit("sec".into())),
            ("1d", DurationError::UnknownUnit("d".into())),
            ("-1s", DurationError::Syntax),
            ("s", DurationError::Syntax),
            ("1..5s", DurationError::MissingUnit),
            (" 1s", DurationError::Syntax),
            ("3000000h", DurationError::Overflow),
            ("99999999999999999999999s", DurationError::Overflow),
        ] {
            assert_eq!(parse_duration(text), Err(want), "{text}");
        }
    }

    fn go_style(total_ms: u64) -> String {
        let (h, rest) = (total_ms / 3_600_000, total_ms % 3_600_000);
        let (m, rest) = (rest / 60_000, rest % 60_000);
        let (s, ms) = (rest / 1000, rest % 1000);
        let mut out = String::new();
        if h > 0 {
            out += &format!("{h}h");
        }
        if m > 0 {
            out += &format!("{m}m");
        }
        if ms > 0 {
            out += &format!("{s}.{ms:03}s");
        } else {
            out += &format!("{s}s");
        }
        out
    }

    proptest! {
        #[test]
        fn go_formatted_durations_parse_back(ms in 0u64..10_000_000_000) {
            prop_assert_eq!(parse_duration(&go_style(ms)), Ok(Std::from_millis(ms)));
        }

        #[test]
        fn units_add_up(h in 0u64..1000, m in 0u64..1000, s in 0u64..1000, ms in 0u64..1000) {
            let text = format!("{h}h{m}m{s}s{ms}ms");
            let want = Std::from_millis(((h * 60 + m) * 60 + s) * 1000 + ms);
            prop_assert_eq!(parse_duration(&text), Ok(want));
        }

        #[test]
        fn the_schema_pattern_accepts_exactly_what_parses(s in "[0-9.a-zµ]{0,12}") {
            let pattern = regex::Regex::new(DURATION_PATTERN).unwrap();
            let parsed = parse_duration(&s);
            // Overflow is the one refusal the pattern cannot see (the CEL rule does).
            if parsed != Err(DurationError::Overflow) {
                prop_assert_eq!(pattern.is_match(&s), parsed.is_ok(), "{:?} -> {:?}", s, parsed);
            }
        }

        #[test]
        fn never_panics(s in "\\PC{0,30}") {
            let _ = parse_duration(&s);
        }
    }
}
