//! File layouts of `state.log` and `state.snapshot`, described once.
//!
//! ```text
//! file header (16 bytes, both files)
//! +----------------+----------------------+
//! | magic (8)      | generation (u64 LE)  |
//! +----------------+----------------------+
//!
//! record (log: one per change; snapshot: exactly one, the whole state)
//! +---------------+------------------------+---------------------+
//! | len (u32 LE)  | crc32 of payload (u32) | JSON payload (len)  |
//! +---------------+------------------------+---------------------+
//! ```
//!
//! The generation ties a log to the snapshot it extends; see the recovery
//! rules in [`super`]. Pure: works on byte slices.

/// Magic of `state.log`; the last byte is the format version.
pub const LOG_MAGIC: [u8; 8] = *b"WRSTLOG\x01";
/// Magic of `state.snapshot`; the last byte is the format version.
pub const SNAPSHOT_MAGIC: [u8; 8] = *b"WRSTSNP\x01";
/// Bytes of the file header.
pub const HEADER_LEN: usize = 16;
/// Bytes of a record header (length and checksum).
pub const RECORD_HEADER_LEN: usize = 8;
pub use crate::limits::MAX_LOG_RECORD;

/// A file header with `magic` and `generation`.
pub fn encode_header(magic: [u8; 8], generation: u64) -> [u8; HEADER_LEN] {
    let mut out = [0; HEADER_LEN];
    out[..8].copy_from_slice(&magic);
    out[8..].copy_from_slice(&generation.to_le_bytes());
    out
}

/// The generation in `bytes`' header, if it has `magic`.
pub fn decode_header(magic: [u8; 8], bytes: &[u8]) -> Option<u64> {
    let header = bytes.get(..HEADER_LEN)?;
    if header[..8] != magic {
        return None;
    }
    let mut generation = [0; 8];
    generation.copy_from_slice(&header[8..]);
    Some(u64::from_le_bytes(generation))
}

/// Appends one framed record holding `payload` to `out`.
pub fn encode_record(payload: &[u8], out: &mut Vec<u8>) {
    // Callers bound payloads far below 4 GiB (MAX_LOG_RECORD, state size).
    let len = u32::try_from(payload.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
    out.extend_from_slice(payload);
}

/// What [`decode_record`] found at the start of a buffer.
#[derive(Debug, PartialEq, Eq)]
pub enum Decoded<'a> {
    /// A whole, intact record: its payload and its total size in bytes.
    Record(&'a [u8], usize),
    /// The buffer is empty: a clean end.
    End,
    /// The buffer ends inside a record: a torn write.
    Torn,
    /// The record's length or checksum is wrong.
    Corrupt(&'static str),
}

/// Decodes the record at the start of `bytes`, allowing payloads up to
/// `max_len`.
pub fn decode_record(bytes: &[u8], max_len: usize) -> Decoded<'_> {
    if bytes.is_empty() {
        return Decoded::End;
    }
    let Some(header) = bytes.get(..RECORD_HEADER_LEN) else {
        return Decoded::Torn;
    };
    let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
    let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
    if len > max_len {
        return Decoded::Corrupt("record length out of range");
    }
    let Some(payload) = bytes.get(RECORD_HEADER_LEN..RECORD_HEADER_LEN + len) else {
        return Decoded::Torn;
    };
    if crc32fast::hash(payload) != crc {
        return Decoded::Corrupt("checksum mismatch");
    }
    Decoded::Record(payload, RECORD_HEADER_LEN + len)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_layout_is_byte_exact() {
        let header = encode_header(LOG_MAGIC, 0x0102);
        assert_eq!(&header, b"WRSTLOG\x01\x02\x01\0\0\0\0\0\0");
        assert_eq!(decode_header(LOG_MAGIC, &header), Some(0x0102));
        assert_eq!(decode_header(SNAPSHOT_MAGIC, &header), None);
        assert_eq!(decode_header(LOG_MAGIC, &header[..15]), None);
    }

    #[test]
    fn record_layout_is_byte_exact() {
        let mut out = Vec::new();
        encode_record(b"{}", &mut out);
        let crc = crc32fast::hash(b"{}").to_le_bytes();
        assert_eq!(&out[..4], &[2, 0, 0, 0]);
        assert_eq!(&out[4..8], &crc);
        assert_eq!(&out[8..], b"{}");
        assert_eq!(decode_record(&out, 10), Decoded::Record(b"{}", 10));
    }

    #[test]
    fn torn_and_corrupt_records_are_told_apart() {
        let mut out = Vec::new();
        encode_record(b"hello", &mut out);
        assert_eq!(decode_record(&[], 64), Decoded::End);
        for cut in 1..out.len() {
            assert_eq!(decode_record(&out[..cut], 64), Decoded::Torn, "cut {cut}");
        }
        let mut flipped = out.clone();
        flipped[10] ^= 1;
        assert_eq!(
            decode_record(&flipped, 64),
            Decoded::Corrupt("checksum mismatch")
        );
        assert_eq!(
            decode_record(&out, 4),
            Decoded::Corrupt("record length out of range")
        );
    }
}
