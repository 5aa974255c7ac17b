//! Incremental UTF-8 validation for text messages that arrive in pieces.
//!
//! Fails fast: a byte that cannot continue any valid sequence is reported as
//! soon as it is fed, even in the middle of a frame (Autobahn 6.x checks this).
//! The bulk of the work is `std::str::from_utf8`, which already reports a
//! truncated-but-valid trailing sequence (`error_len() == None`) apart from an
//! invalid one; only up to 3 bytes of such a tail are kept between calls.

use thiserror::Error;

/// The bytes fed so far are not the beginning of any valid UTF-8 text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[error("invalid UTF-8")]
pub struct InvalidUtf8;

/// Validates a text fed in arbitrary pieces.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Utf8Validator {
    partial: [u8; 4],
    len: u8,
}

/// Byte length of the sequence a lead byte starts (only called on lead bytes
/// that `from_utf8` accepted as the start of a truncated sequence).
fn sequence_width(lead: u8) -> usize {
    match lead {
        0xF0..=0xFF => 4,
        0xE0..=0xEF => 3,
        _ => 2,
    }
}

impl Utf8Validator {
    /// Validates the next piece of the text.
    pub fn feed(&mut self, mut data: &[u8]) -> Result<(), InvalidUtf8> {
        if self.len > 0 {
            let have = usize::from(self.len);
            let take = (sequence_width(self.partial[0]) - have).min(data.len());
            self.partial[have..have + take].copy_from_slice(&data[..take]);
            let have = have + take;
            data = &data[take..];
            match std::str::from_utf8(&self.partial[..have]) {
                Ok(_) => self.len = 0,
                Err(e) if e.error_len().is_none() => {
                    // Still a valid prefix, and `data` is used up.
                    self.len = have as u8;
                    return Ok(());
                }
                Err(_) => return Err(InvalidUtf8),
            }
        }
        match std::str::from_utf8(data) {
            Ok(_) => Ok(()),
            Err(e) if e.error_len().is_none() => {
                let tail = &data[e.valid_up_to()..];
                self.partial[..tail.len()].copy_from_slice(tail);
                self.len = tail.len() as u8;
                Ok(())
            }
            Err(_) => Err(InvalidUtf8),
        }
    }

    /// Whether the text fed so far ends on a character boundary (a complete
    /// message must).
    pub fn is_complete(&self) -> bool {
        self.len == 0
    }

    /// Forgets any partial sequence, for the next message.
    pub fn reset(&mut self) {
        self.len = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed_bytewise(data: &[u8]) -> Result<bool, usize> {
        let mut v = Utf8Validator::default();
        for (i, b) in data.iter().enumerate() {
            v.feed(std::slice::from_ref(b)).map_err(|_| i)?;
        }
        Ok(v.is_complete())
    }

    #[test]
    fn accepts_valid_text_in_any_split() {
        let text = "κόσμε Hello-µ@ßöäüàá-UTF-8!! 𝄞 \u{10FFFF} \u{FFFF}".as_bytes();
        for cut in 0..=text.len() {
            let mut v = Utf8Validator::default();
            v.feed(&text[..cut]).unwrap();
            v.feed(&text[cut..]).unwrap();
            assert!(v.is_complete(), "cut {cut}");
        }
        assert_eq!(feed_bytewise(text), Ok(true));
    }

    #[test]
    fn truncated_text_is_incomplete() {
        let mut v = Utf8Validator::default();
        v.feed(&[b'a', 0xF0, 0x9D]).unwrap();
        assert!(!v.is_complete());
        v.reset();
        assert!(v.is_complete());
    }

    #[test]
    fn fails_at_the_first_impossible_byte() {
        // (input, index of the byte that must be rejected)
        let cases: &[(&[u8], usize)] = &[
            (
                &[
                    0xCE, 0xBA, 0xE1, 0xBD, 0xB9, 0xCF, 0x83, 0xCE, 0xBC, 0xCE, 0xB5, 0xED, 0xA0,
                ],
                12,
            ),
            (&[0xF4, 0x90, 0x80, 0x80], 1), // above U+10FFFF
            (&[0xED, 0xA0, 0x80], 1),       // surrogate
            (&[0xC0, 0xAF], 0),             // overlong lead
            (&[0xE0, 0x80, 0xAF], 1),       // overlong 3-byte
            (&[0xF8, 0x88], 0),             // 5-byte lead
            (&[b'a', 0x80], 1),             // lone continuation
            (&[0xE2, 0x82, b'x'], 2),       // truncated then ASCII
            (&[0xFE], 0),
        ];
        for &(input, at) in cases {
            assert_eq!(feed_bytewise(input), Err(at), "{input:02X?}");
            let mut v = Utf8Validator::default();
            assert_eq!(v.feed(input), Err(InvalidUtf8), "{input:02X?} whole");
        }
    }

    #[test]
    fn fails_across_piece_boundaries() {
        let mut v = Utf8Validator::default();
        v.feed(&[0xF0]).unwrap();
        v.feed(&[0x9D]).unwrap();
        assert_eq!(v.feed(&[0x84, b'a']), Err(InvalidUtf8));
    }
}
