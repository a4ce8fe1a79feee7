//! Kubernetes resource quantities (`100m`, `96Mi`, `1.5`, `2e3`, `-1`): the grammar of apimachinery's
//! `resource.Quantity`, with every suffix it knows. One parser for the workspace: the injector reads the
//! proxy's requests and limits with it, the operator compares live and desired quantities.
//!
//! ```text
//! quantity ::= sign? number suffix
//! number   ::= digits | digits "." digits | digits "." | "." digits
//! suffix   ::= "" | binarySI | decimalSI | ("e" | "E") signedDigits
//! binarySI ::= Ki | Mi | Gi | Ti | Pi | Ei       decimalSI ::= n | u | m | k | M | G | T | P | E
//! ```

use super::ValueError;

/// A quantity's value in base units (cores, bytes, …), for comparing two quantities. The text itself is
/// what goes into objects: the value is a float and loses the exact form.
pub fn parse_quantity(s: &str) -> Result<f64, ValueError> {
    let (negative, unsigned) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let v = parse_unsigned(unsigned).ok_or_else(|| ValueError::Quantity(s.to_string()))?;
    Ok(if negative { -v } else { v })
}

/// A quantity for a container's requests or limits: [`parse_quantity`] without a sign (a proxy's CPU or
/// memory is never negative, and nobody writes `+1`).
pub fn parse_resource_quantity(s: &str) -> Result<f64, ValueError> {
    parse_unsigned(s).ok_or_else(|| ValueError::Quantity(s.to_string()))
}

fn parse_unsigned(s: &str) -> Option<f64> {
    let number_end = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (number, suffix) = s.split_at(number_end);
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    // split_once leaves any second '.' in the fraction.
    if (whole.is_empty() && fraction.is_empty()) || fraction.contains('.') {
        return None;
    }
    let value: f64 = number.parse().ok()?;
    let scale = match suffix {
        "" => 1.0,
        "n" => 1e-9,
        "u" => 1e-6,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => 1024f64,
        "Mi" => 1024f64.powi(2),
        "Gi" => 1024f64.powi(3),
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "Ei" => 1024f64.powi(6),
        exp if exp.starts_with(['e', 'E']) => {
            let digits = &exp[1..];
            let unsigned = digits.strip_prefix(['+', '-']).unwrap_or(digits);
            if unsigned.is_empty() || !unsigned.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            10f64.powi(digits.parse().ok()?)
        }
        _ => return None,
    };
    let v = value * scale;
    v.is_finite().then_some(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn good_quantities() {
        for (s, v) in [
            ("100m", 0.1),
            ("200m", 0.2),
            ("2", 2.0),
            ("0.5", 0.5),
            ("1.", 1.0),
            (".5", 0.5),
            ("96Mi", 96.0 * 1024.0 * 1024.0),
            ("1Gi", 1024f64.powi(3)),
            ("1Ti", 1024f64.powi(4)),
            ("1Pi", 1024f64.powi(5)),
            ("1Ei", 1024f64.powi(6)),
            ("1k", 1000.0),
            ("1M", 1e6),
            ("1G", 1e9),
            ("1T", 1e12),
            ("1P", 1e15),
            ("1E", 1e18),
            ("500n", 5e-7),
            ("250u", 2.5e-4),
            ("2e3", 2000.0),
            ("1E-3", 0.001),
            ("1e+2", 100.0),
            ("0", 0.0),
        ] {
            let got = parse_resource_quantity(s).unwrap_or_else(|e| panic!("{s}: {e}"));
            assert!((got - v).abs() < 1e-9 * v.max(1.0), "{s}: {got} != {v}");
            assert_eq!(parse_quantity(s), Ok(got), "{s}");
        }
        assert_eq!(parse_quantity("-1"), Ok(-1.0));
        assert_eq!(parse_quantity("+500m"), Ok(0.5));
        assert_eq!(parse_quantity("-2Ki"), Ok(-2048.0));
    }

    #[test]
    fn bad_quantities() {
        for s in [
            "", " ", "lots", "100mm", "1.2.3", "1 Gi", "Gi", ".", "1KI", "1mi", "1e", "1e+",
            "0x10", "1,5", "100 m", "1e3.5", "NaN", "inf", "--1", "+-1", "-", "+", "1e999",
        ] {
            assert!(parse_quantity(s).is_err(), "{s:?} accepted");
            assert!(parse_resource_quantity(s).is_err(), "{s:?} accepted");
        }
        for signed in ["-1", "+1", "-100m"] {
            assert!(
                parse_resource_quantity(signed).is_err(),
                "{signed:?} accepted"
            );
        }
        assert_eq!(
            parse_resource_quantity("lots").unwrap_err().to_string(),
            "\"lots\" is not a Kubernetes quantity such as 100m, 0.5, 128Mi or 1Gi"
        );
    }

    proptest! {
        #[test]
        fn never_panics(s in ".{0,24}") {
            let _ = parse_quantity(&s);
            let _ = parse_resource_quantity(&s);
        }

        #[test]
        fn millis_round_trip(n in 0u32..1_000_000) {
            let v = parse_resource_quantity(&format!("{n}m")).unwrap();
            prop_assert!((v - f64::from(n) / 1000.0).abs() < 1e-9);
        }

        #[test]
        fn sign_negates(n in 0u32..1_000_000, suffix in prop_oneof![Just(""), Just("m"), Just("Mi"), Just("k")]) {
            let q = format!("{n}{suffix}");
            let v = parse_quantity(&q).unwrap();
            prop_assert_eq!(parse_quantity(&format!("-{q}")).unwrap(), -v);
        }
    }
}
