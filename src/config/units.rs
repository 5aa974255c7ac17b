//! Human units in the config file: durations like `"30s"` and sizes like
//! `"64KiB"`, with serde helpers for `#[serde(with = ...)]`.
//!
//! Durations: one or more `<integer><unit>` groups, units `ms`, `s`, `m`,
//! `h`, `d` (so `"1m30s"` is 90 seconds); `"0"` alone is zero. Fractions are
//! not accepted: `"1500ms"`, not `"1.5s"`.
//!
//! Sizes: a TOML integer (bytes), or a string `<integer><unit>` with unit
//! `B`, `KiB`, `MiB` or `GiB` (powers of 1024). Decimal units (`KB`) are
//! refused because they are ambiguous.

use std::fmt;
use std::time::Duration;

/// A duration or size string that could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {what} {text:?}: {reason}")]
pub struct UnitError {
    what: &'static str,
    text: String,
    reason: &'static str,
}

impl UnitError {
    fn new(what: &'static str, text: &str, reason: &'static str) -> Self {
        Self {
            what,
            text: text.chars().take(64).collect(),
            reason,
        }
    }
}

const DURATION_UNITS: [(&str, u64); 5] = [
    ("d", 86_400_000),
    ("h", 3_600_000),
    ("m", 60_000),
    ("s", 1_000),
    ("ms", 1),
];

const SIZE_UNITS: [(&str, u64); 4] = [
    ("GiB", 1 << 30),
    ("MiB", 1 << 20),
    ("KiB", 1 << 10),
    ("B", 1),
];

/// Splits `text` into `(number, unit)` groups: digits then letters.
fn groups(text: &str) -> Option<Vec<(u64, &str)>> {
    let mut out = Vec::new();
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        let number = rest[..digits].parse::<u64>().ok()?;
        rest = &rest[digits..];
        let letters = rest
            .find(|c: char| !c.is_ascii_alphabetic())
            .unwrap_or(rest.len());
        out.push((number, &rest[..letters]));
        rest = &rest[letters..];
    }
    Some(out)
}

/// Parses `"250ms"`, `"30s"`, `"2m"`, `"1h30m"`, `"0"`.
pub fn parse_duration(text: &str) -> Result<Duration, UnitError> {
    let err = |reason| UnitError::new("duration", text, reason);
    let trimmed = text.trim();
    if trimmed == "0" {
        return Ok(Duration::ZERO);
    }
    let groups = groups(trimmed).ok_or_else(|| err("expected numbers with units like 30s"))?;
    if groups.is_empty() {
        return Err(err("empty"));
    }
    let mut millis: u64 = 0;
    for (number, unit) in groups {
        let scale = DURATION_UNITS
            .iter()
            .find(|(name, _)| *name == unit)
            .map(|&(_, scale)| scale)
            .ok_or_else(|| err("unit must be one of ms, s, m, h, d"))?;
        millis = number
            .checked_mul(scale)
            .and_then(|add| millis.checked_add(add))
            .ok_or_else(|| err("too large"))?;
    }
    Ok(Duration::from_millis(millis))
}

/// Formats a duration in the largest unit that represents it exactly
/// (`"2s"`, `"250ms"`, `"5m"`); sub-millisecond parts are dropped.
pub fn format_duration(duration: Duration) -> String {
    let millis = u64::try_from(duration.as_millis()).unwrap_or(u64::MAX);
    if millis == 0 {
        return "0s".to_owned();
    }
    let (unit, scale) = DURATION_UNITS
        .iter()
        .find(|(_, scale)| millis % scale == 0)
        .copied()
        .unwrap_or(("ms", 1));
    format!("{}{unit}", millis / scale)
}

/// Parses `"64KiB"`, `"16MiB"`, `"512B"` or a plain `"65536"`.
pub fn parse_size(text: &str) -> Result<u64, UnitError> {
    let err = |reason| UnitError::new("size", text, reason);
    let groups =
        groups(text.trim()).ok_or_else(|| err("expected a number with a unit like 64KiB"))?;
    let [(number, unit)] = groups[..] else {
        return Err(err("expected one number with a unit like 64KiB"));
    };
    if unit.is_empty() {
        return Ok(number);
    }
    let scale = SIZE_UNITS
        .iter()
        .find(|(name, _)| *name == unit)
        .map(|&(_, scale)| scale)
        .ok_or_else(|| err("unit must be one of B, KiB, MiB, GiB"))?;
    number.checked_mul(scale).ok_or_else(|| err("too large"))
}

/// Formats a size in the largest binary unit that represents it exactly.
pub fn format_size(bytes: u64) -> String {
    let (unit, scale) = SIZE_UNITS
        .iter()
        .find(|(_, scale)| bytes != 0 && bytes.is_multiple_of(*scale))
        .copied()
        .unwrap_or(("B", 1));
    format!("{}{unit}", bytes / scale)
}

/// `#[serde(with = "units::duration")]` for `std::time::Duration` fields.
pub mod duration {
    use super::*;
    use serde::{Deserialize, Deserializer, Serializer};

    /// Writes the duration as a string like `"30s"`.
    pub fn serialize<S: Serializer>(value: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&format_duration(*value))
    }

    /// Reads a duration string like `"30s"`.
    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(deserializer)?;
        parse_duration(&text).map_err(serde::de::Error::custom)
    }
}

/// `#[serde(with = "units::size")]` for `usize` byte counts.
pub mod size {
    use super::*;
    use serde::de::{self, Visitor};
    use serde::{Deserializer, Serializer};

    /// Writes the size as a string like `"64KiB"`.
    pub fn serialize<S: Serializer>(value: &usize, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&format_size(*value as u64))
    }

    /// Reads an integer byte count or a string like `"64KiB"`.
    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<usize, D::Error> {
        deserializer.deserialize_any(SizeVisitor)
    }

    struct SizeVisitor;

    impl SizeVisitor {
        fn fit<E: de::Error>(bytes: u64) -> Result<usize, E> {
            usize::try_from(bytes).map_err(|_| E::custom("size too large for this machine"))
        }
    }

    impl Visitor<'_> for SizeVisitor {
        type Value = usize;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(r#"a byte count or a size like "64KiB""#)
        }

        fn visit_u64<E: de::Error>(self, v: u64) -> Result<usize, E> {
            Self::fit(v)
        }

        fn visit_i64<E: de::Error>(self, v: i64) -> Result<usize, E> {
            let v = u64::try_from(v).map_err(|_| E::custom("size must not be negative"))?;
            Self::fit(v)
        }

        fn visit_str<E: de::Error>(self, v: &str) -> Result<usize, E> {
            Self::fit(parse_size(v).map_err(E::custom)?)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("1d").unwrap(), Duration::from_secs(86_400));
        assert_eq!(parse_duration("1m30s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration(" 0 ").unwrap(), Duration::ZERO);
        assert_eq!(parse_duration("0s").unwrap(), Duration::ZERO);
    }

    #[test]
    fn bad_durations_are_rejected_with_the_text() {
        for bad in [
            "",
            "30",
            "s",
            "1.5s",
            "-1s",
            "3 s",
            "10x",
            "99999999999999999999s",
        ] {
            let err = parse_duration(bad).unwrap_err();
            assert!(
                err.to_string().starts_with("invalid duration"),
                "{bad}: {err}"
            );
        }
        assert_eq!(
            parse_duration("10x").unwrap_err().to_string(),
            r#"invalid duration "10x": unit must be one of ms, s, m, h, d"#
        );
        assert!(parse_duration("213503982335d").is_err(), "overflow");
    }

    #[test]
    fn durations_format_in_the_largest_exact_unit() {
        assert_eq!(format_duration(Duration::from_secs(2)), "2s");
        assert_eq!(format_duration(Duration::from_millis(250)), "250ms");
        assert_eq!(format_duration(Duration::from_secs(300)), "5m");
        assert_eq!(format_duration(Duration::from_secs(90)), "90s");
        assert_eq!(format_duration(Duration::ZERO), "0s");
        for text in ["2s", "250ms", "5m", "90s", "1d", "3h"] {
            assert_eq!(format_duration(parse_duration(text).unwrap()), text);
        }
    }

    #[test]
    fn sizes_parse_and_format() {
        assert_eq!(parse_size("64KiB").unwrap(), 65_536);
        assert_eq!(parse_size("16MiB").unwrap(), 16 << 20);
        assert_eq!(parse_size("1GiB").unwrap(), 1 << 30);
        assert_eq!(parse_size("512B").unwrap(), 512);
        assert_eq!(parse_size("1000").unwrap(), 1000);
        for bad in ["", "64KB", "64 KiB", "KiB", "1.5MiB", "-1", "1MiB2KiB"] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
        assert!(parse_size("99999999999GiB").is_err());
        assert_eq!(format_size(65_536), "64KiB");
        assert_eq!(format_size(16 << 20), "16MiB");
        assert_eq!(format_size(1000), "1000B");
        assert_eq!(format_size(0), "0B");
    }

    #[derive(serde::Deserialize, serde::Serialize, Debug, PartialEq)]
    struct Probe {
        #[serde(with = "size")]
        size: usize,
        #[serde(with = "duration")]
        wait: Duration,
    }

    #[test]
    fn serde_helpers_accept_integers_and_strings() {
        let p: Probe = toml::from_str("size = 1024\nwait = \"2s\"").unwrap();
        assert_eq!(p.size, 1024);
        assert_eq!(p.wait, Duration::from_secs(2));
        let p: Probe = toml::from_str("size = \"1KiB\"\nwait = \"5m\"").unwrap();
        assert_eq!(p.size, 1024);
        assert_eq!(
            toml::to_string(&p).unwrap(),
            "size = \"1KiB\"\nwait = \"5m\"\n"
        );
        assert!(toml::from_str::<Probe>("size = -1\nwait = \"2s\"").is_err());
        assert!(toml::from_str::<Probe>("size = 1\nwait = 2").is_err());
    }
}
