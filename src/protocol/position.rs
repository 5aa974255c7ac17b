//! Where a message sits in its channel's stream: an `offset` within an
//! `epoch` (see `broker::history` for how they are assigned).

use std::fmt;

/// One sequencer run of a channel. Shown to clients as 16 hex digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Epoch(pub u64);

impl Epoch {
    /// Parses the 16-hex form clients send back.
    pub fn parse(text: &str) -> Option<Epoch> {
        if text.len() != 16 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        u64::from_str_radix(text, 16).ok().map(Epoch)
    }
}

impl fmt::Display for Epoch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// Where a message sits in its channel's stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    /// 1 for the first message of the epoch.
    pub offset: u64,
    /// The sequencer run.
    pub epoch: Epoch,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epochs_print_and_parse_as_16_hex() {
        let e = Epoch(0xabc);
        assert_eq!(e.to_string(), "0000000000000abc");
        assert_eq!(Epoch::parse("0000000000000abc"), Some(e));
        assert_eq!(Epoch::parse("abc"), None);
        assert_eq!(Epoch::parse("zzzzzzzzzzzzzzzz"), None);
        assert_eq!(Epoch::parse("+000000000000abc"), None);
    }
}
