//! Byte sizes on the command line (`64MiB`, `512k`, `1048576`) and in reports.
//!
//! Every suffix is binary: `KiB`/`k`/`K` = 1024, `MiB`/`M` = 1024², `GiB`/`G` =
//! 1024³, `B` or none = bytes. Decimal units (`KB`, `MB`, `GB`) are refused rather
//! than guessed, so a size on the command line always means one number.

use thiserror::Error;

/// Why a size did not parse.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SizeError {
    /// Nothing was given.
    #[error("empty size")]
    Empty,
    /// The number part is missing or not a whole number.
    #[error("{0:?} is not a whole number of bytes (examples: 4096, 512KiB, 64MiB, 1G)")]
    Number(String),
    /// The suffix is not one of the binary units.
    #[error("unknown unit {unit:?} in {input:?} (use B, KiB/k, MiB/M or GiB/G; all binary)")]
    Unit {
        /// The whole input.
        input: String,
        /// The unit part.
        unit: String,
    },
    /// The value does not fit in 64 bits.
    #[error("{0:?} is too large")]
    Overflow(String),
}

/// Parse a size such as `64MiB`, `16M`, `512k` or `4096` into bytes.
pub fn parse_size(input: &str) -> Result<u64, SizeError> {
    let s = input.trim();
    if s.is_empty() {
        return Err(SizeError::Empty);
    }
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (digits, unit) = s.split_at(split);
    if digits.is_empty() {
        return Err(SizeError::Number(input.to_owned()));
    }
    let number: u64 = digits
        .parse()
        .map_err(|_| SizeError::Overflow(input.to_owned()))?;
    let multiplier: u64 = match unit.trim_start() {
        "" | "B" => 1,
        "k" | "K" | "KiB" => 1 << 10,
        "M" | "MiB" => 1 << 20,
        "G" | "GiB" => 1 << 30,
        other if other.starts_with('.') || other.starts_with(',') => {
            return Err(SizeError::Number(input.to_owned()));
        }
        other => {
            return Err(SizeError::Unit {
                input: input.to_owned(),
                unit: other.to_owned(),
            });
        }
    };
    number
        .checked_mul(multiplier)
        .ok_or_else(|| SizeError::Overflow(input.to_owned()))
}

/// A size for people: `64 MiB`, `1.5 GiB`, `300 B`.
pub fn format_size(bytes: u64) -> String {
    const UNITS: [(&str, u64); 3] = [("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)];
    for (name, unit) in UNITS {
        if bytes >= unit {
            let v = bytes as f64 / unit as f64;
            return if bytes.is_multiple_of(unit) {
                format!("{} {name}", bytes / unit)
            } else {
                format!("{v:.2} {name}")
            };
        }
    }
    format!("{bytes} B")
}

/// A rate for people: `812.30 MiB/s`.
pub fn format_rate(bytes_per_sec: f64) -> String {
    const UNITS: [(&str, f64); 3] = [
        ("GiB/s", 1_073_741_824.0),
        ("MiB/s", 1_048_576.0),
        ("KiB/s", 1024.0),
    ];
    for (name, unit) in UNITS {
        if bytes_per_sec >= unit {
            return format!("{:.2} {name}", bytes_per_sec / unit);
        }
    }
    format!("{bytes_per_sec:.0} B/s")
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[rstest]
    #[case("0", 0)]
    #[case("4096", 4096)]
    #[case("17B", 17)]
    #[case("1k", 1024)]
    #[case("1K", 1024)]
    #[case("512KiB", 512 * 1024)]
    #[case("64MiB", 64 << 20)]
    #[case("16M", 16 << 20)]
    #[case("2G", 2 << 30)]
    #[case("1GiB", 1 << 30)]
    #[case(" 3 MiB ", 3 << 20)]
    fn good_sizes(#[case] input: &str, #[case] want: u64) {
        assert_eq!(parse_size(input), Ok(want));
    }

    #[rstest]
    #[case("", "empty size")]
    #[case("MiB", "not a whole number")]
    #[case("-1", "not a whole number")]
    #[case("1.5MiB", "not a whole number")]
    #[case("10MB", "unknown unit \"MB\"")]
    #[case("10 kb", "unknown unit \"kb\"")]
    #[case("10m", "unknown unit \"m\"")]
    #[case("10TiB", "unknown unit \"TiB\"")]
    #[case("99999999999999999999", "too large")]
    #[case("17179869184G", "too large")]
    fn bad_sizes(#[case] input: &str, #[case] message: &str) {
        let err = parse_size(input).expect_err(input).to_string();
        assert!(err.contains(message), "{input:?}: {err}");
    }

    #[test]
    fn formatting() {
        assert_eq!(format_size(64 << 20), "64 MiB");
        assert_eq!(format_size(1536), "1.50 KiB");
        assert_eq!(format_size(12), "12 B");
        assert_eq!(format_rate(2.0 * 1_048_576.0), "2.00 MiB/s");
        assert_eq!(format_rate(10.0), "10 B/s");
    }
}
