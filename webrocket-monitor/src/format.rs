//! Number formatting for people: counts, bytes in binary units, rates.
//!
//! Pure: no I/O.

/// Shown where a metric is absent or has no rate yet.
pub const MISSING: &str = "-";

const BYTE_UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];

/// `1234567` as `1,234,567`.
pub fn count(value: i64) -> String {
    let digits = value.unsigned_abs().to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3 + 1);
    if value < 0 {
        out.push('-');
    }
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

/// Bytes in the largest binary unit that keeps the number at least 1:
/// `512 B`, `1.5 KiB`, `16.0 MiB`.
pub fn bytes(value: f64) -> String {
    if value.abs() < 1024.0 {
        return format!("{value:.0} B");
    }
    let mut scaled = value;
    let mut unit = BYTE_UNITS[0];
    for name in BYTE_UNITS {
        scaled /= 1024.0;
        unit = name;
        if scaled.abs() < 1024.0 {
            break;
        }
    }
    format!("{scaled:.1} {unit}")
}

/// A count per second: `12.5/s`, or [`MISSING`] without a rate.
pub fn rate(rate: Option<f64>) -> String {
    match rate {
        Some(r) if r >= 100.0 => format!("{r:.0}/s"),
        Some(r) => format!("{r:.1}/s"),
        None => MISSING.to_owned(),
    }
}

/// Bytes per second: `1.5 KiB/s`, or [`MISSING`] without a rate.
pub fn byte_rate(rate: Option<f64>) -> String {
    match rate {
        Some(r) => format!("{}/s", bytes(r)),
        None => MISSING.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_get_thousands_separators() {
        assert_eq!(count(0), "0");
        assert_eq!(count(999), "999");
        assert_eq!(count(1000), "1,000");
        assert_eq!(count(1_234_567), "1,234,567");
        assert_eq!(count(-12_345), "-12,345");
        assert_eq!(count(i64::MIN), "-9,223,372,036,854,775,808");
    }

    #[test]
    fn bytes_use_binary_units() {
        assert_eq!(bytes(0.0), "0 B");
        assert_eq!(bytes(1023.0), "1023 B");
        assert_eq!(bytes(1536.0), "1.5 KiB");
        assert_eq!(bytes(16.0 * 1024.0 * 1024.0), "16.0 MiB");
        assert_eq!(bytes(3.0 * 1024f64.powi(3)), "3.0 GiB");
        assert_eq!(bytes(2048.0 * 1024f64.powi(5)), "2048.0 PiB");
    }

    #[test]
    fn rates_have_units_and_a_missing_marker() {
        assert_eq!(rate(Some(12.25)), "12.2/s");
        assert_eq!(rate(Some(0.0)), "0.0/s");
        assert_eq!(rate(Some(1234.4)), "1234/s");
        assert_eq!(rate(None), "-");
        assert_eq!(byte_rate(Some(2048.0)), "2.0 KiB/s");
        assert_eq!(byte_rate(None), "-");
    }
}
