//! Parsing of Kubernetes resource quantities (`10Gi`, `500m`, `1e3`), which the CRD schema cannot
//! check because it only knows them as int-or-string.

use thiserror::Error;

/// Why a quantity string was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error(
    "'{input}' is not a Kubernetes quantity: {reason}; use a number with an optional suffix such as 10Gi, 512Mi, 500m or 2"
)]
pub struct QuantityError {
    /// The refused text.
    pub input: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

/// Parse a quantity into its value (bytes for memory and storage, cores for CPU).
pub fn parse_quantity(input: &str) -> Result<f64, QuantityError> {
    let fail = |reason| QuantityError { input: input.to_owned(), reason };
    if input.is_empty() {
        return Err(fail("it is empty"));
    }
    let number_end = input
        .char_indices()
        .find(|&(i, c)| !(c.is_ascii_digit() || c == '.' || ((c == '+' || c == '-') && i == 0)))
        .map_or(input.len(), |(i, _)| i);
    let (number, suffix) = input.split_at(number_end);
    let digits = number.trim_start_matches(['+', '-']);
    if digits.is_empty() || digits == "." || digits.matches('.').count() > 1 {
        return Err(fail("it does not start with a number"));
    }
    let value: f64 = number.parse().map_err(|_| fail("it does not start with a number"))?;
    let multiplier = match suffix {
        "" => 1.0,
        "Ki" => 1024f64,
        "Mi" => 1024f64.powi(2),
        "Gi" => 1024f64.powi(3),
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "Ei" => 1024f64.powi(6),
        "n" => 1e-9,
        "u" => 1e-6,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        _ => {
            let exponent = suffix
                .strip_prefix(['e', 'E'])
                .filter(|e| !e.is_empty())
                .and_then(|e| e.parse::<i32>().ok())
                .ok_or_else(|| fail("the suffix is not one of Ki Mi Gi Ti Pi Ei n u m k M G T P E or an exponent"))?;
            10f64.powi(exponent)
        }
    };
    Ok(value * multiplier)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn accepts_the_forms_kubernetes_accepts() {
        let cases = [
            ("10Gi", 10.0 * 1024f64.powi(3)),
            ("512Mi", 512.0 * 1024f64.powi(2)),
            ("500m", 0.5),
            ("2", 2.0),
            ("1.5", 1.5),
            ("1e3", 1000.0),
            ("1E3", 1000.0),
            ("100k", 1e5),
            ("4G", 4e9),
            ("+1", 1.0),
            ("0", 0.0),
            (".5", 0.5),
        ];
        for (input, want) in cases {
            assert_eq!(parse_quantity(input), Ok(want), "{input}");
        }
    }

    #[test]
    fn refuses_what_kubernetes_refuses() {
        for input in ["", "Gi", "10GB", "10gi", "ten", "1..2", "1e", "1.2.3Gi", "10 Gi", "-", "."] {
            let err = parse_quantity(input).expect_err(input);
            assert!(err.to_string().contains("10Gi"), "message should show an example: {err}");
        }
    }

    proptest! {
        #[test]
        fn binary_suffixes_scale_integers_exactly(n in 0u32..100_000, i in 0usize..4) {
            let (suffix, factor) = [("Ki", 1u64 << 10), ("Mi", 1 << 20), ("Gi", 1 << 30), ("Ti", 1 << 40)][i];
            prop_assert_eq!(parse_quantity(&format!("{n}{suffix}")), Ok((u64::from(n) * factor) as f64));
        }

        #[test]
        fn never_panics(s in "\\PC{0,12}") {
            let _ = parse_quantity(&s);
        }
    }
}
