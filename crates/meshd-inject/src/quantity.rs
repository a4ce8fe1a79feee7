//! A strict parser for Kubernetes resource quantities (`100m`, `96Mi`, `1.5`, `2e3`), the grammar of
//! apimachinery's `resource.Quantity`, without a sign: a proxy's CPU or memory is never negative.
//!
//! ```text
//! quantity ::= number suffix
//! number   ::= digits | digits "." digits | digits "." | "." digits
//! suffix   ::= "" | binarySI | decimalSI | ("e" | "E") signedDigits
//! binarySI ::= Ki | Mi | Gi | Ti | Pi | Ei       decimalSI ::= m | k | M | G | T | P | E
//! ```

/// Why a quantity was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a Kubernetes quantity such as 100m, 0.5, 128Mi or 1Gi")]
pub struct QuantityError(pub String);

/// Parses a quantity and returns its value in base units (cores or bytes), for comparing a request
/// with a limit. The text itself is what goes into the pod.
pub fn parse_quantity(s: &str) -> Result<f64, QuantityError> {
    let err = || QuantityError(s.to_string());
    let number_end = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (number, suffix) = s.split_at(number_end);
    let (whole, fraction) = match number.split_once('.') {
        Some((w, f)) => (w, Some(f)),
        None => (number, None),
    };
    let fraction_digits = fraction.unwrap_or("");
    if whole.is_empty() && fraction_digits.is_empty() {
        return Err(err());
    }
    // split_once leaves any second '.' in the fraction.
    if fraction_digits.contains('.') {
        return Err(err());
    }
    let value: f64 = number.parse().map_err(|_| err())?;
    let scale = match suffix {
        "" => 1.0,
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
                return Err(err());
            }
            let e: i32 = digits.parse().map_err(|_| err())?;
            10f64.powi(e)
        }
        _ => return Err(err()),
    };
    let v = value * scale;
    if v.is_finite() { Ok(v) } else { Err(err()) }
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
            ("1k", 1000.0),
            ("2e3", 2000.0),
            ("1E-3", 0.001),
            ("0", 0.0),
        ] {
            let got = parse_quantity(s).unwrap_or_else(|e| panic!("{s}: {e}"));
            assert!((got - v).abs() < 1e-9 * v.max(1.0), "{s}: {got} != {v}");
        }
    }

    #[test]
    fn bad_quantities() {
        for s in [
            "", " ", "lots", "100mm", "1.2.3", "-1", "+1", "1 Gi", "Gi", ".", "1KI", "1mi", "1e",
            "1e+", "0x10", "1,5", "100 m", "1e3.5", "NaN", "inf",
        ] {
            assert!(parse_quantity(s).is_err(), "{s:?} accepted");
        }
        assert_eq!(
            parse_quantity("lots").unwrap_err().to_string(),
            "\"lots\" is not a Kubernetes quantity such as 100m, 0.5, 128Mi or 1Gi"
        );
    }

    proptest! {
        #[test]
        fn never_panics(s in ".{0,24}") {
            let _ = parse_quantity(&s);
        }

        #[test]
        fn millis_round_trip(n in 0u32..1_000_000) {
            let v = parse_quantity(&format!("{n}m")).unwrap();
            prop_assert!((v - f64::from(n) / 1000.0).abs() < 1e-9);
        }
    }
}
