//! The WebSocket frame layout (RFC 6455 section 5.2), masking and close codes.
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-------+-+-------------+-------------------------------+
//! |F|R|R|R| opcode|M| Payload len |    Extended payload length    |
//! |I|S|S|S|  (4)  |A|     (7)     |             (16/64)           |
//! |N|V|V|V|       |S|             |   (if payload len==126/127)   |
//! | |1|2|3|       |K|             |                               |
//! +-+-+-+-+-------+-+-------------+ - - - - - - - - - - - - - - - +
//! |     Extended payload length continued, if payload len == 127  |
//! + - - - - - - - - - - - - - - - +-------------------------------+
//! |                               |Masking-key, if MASK set to 1  |
//! +-------------------------------+-------------------------------+
//! | Masking-key (continued)       |          Payload Data         |
//! +-------------------------------- - - - - - - - - - - - - - - - +
//! ```

/// FIN bit of the first header byte (also of [`super::Action::Deliver`] flags).
pub const FIN: u8 = 0x80;
/// RSV1: "this message is compressed" under permessage-deflate.
pub const RSV1: u8 = 0x40;
/// RSV2 and RSV3, never used here.
pub const RSV23: u8 = 0x30;
/// Continuation frame.
pub const OP_CONTINUATION: u8 = 0x0;
/// Text frame.
pub const OP_TEXT: u8 = 0x1;
/// Binary frame.
pub const OP_BINARY: u8 = 0x2;
/// Close frame.
pub const OP_CLOSE: u8 = 0x8;
/// Ping frame.
pub const OP_PING: u8 = 0x9;
/// Pong frame.
pub const OP_PONG: u8 = 0xA;
/// Largest payload of a control frame.
pub const MAX_CONTROL_PAYLOAD: usize = 125;
/// Longest frame header: 2 + 8 (64-bit length) + 4 (mask).
pub const MAX_HEADER_LEN: usize = 14;
/// Longest header of a server frame (never masked).
pub const MAX_SERVER_HEADER_LEN: usize = 10;

/// Close codes this engine sends (RFC 6455 section 7.4.1).
pub mod close_code {
    /// Normal closure.
    pub const NORMAL: u16 = 1000;
    /// Going away (server shutdown).
    pub const GOING_AWAY: u16 = 1001;
    /// Protocol error.
    pub const PROTOCOL_ERROR: u16 = 1002;
    /// Close frame without a status code (never sent on the wire).
    pub const NO_STATUS: u16 = 1005;
    /// Invalid payload data (bad UTF-8, undecodable deflate data).
    pub const INVALID_PAYLOAD: u16 = 1007;
    /// Policy violation (e.g. a slow consumer).
    pub const POLICY_VIOLATION: u16 = 1008;
    /// Message or frame too big.
    pub const TOO_BIG: u16 = 1009;
    /// Internal error.
    pub const INTERNAL_ERROR: u16 = 1011;
}

/// Whether `code` may appear in a close frame on the wire: the codes RFC 6455
/// defines for use (1000-1003, 1007-1011), the IANA-registered 1012-1014, and
/// the ranges for libraries and applications (3000-4999).
pub fn is_valid_close_code(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

/// A decoded frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    /// FIN, RSV1-3 and opcode: the first byte as received.
    pub first: u8,
    /// Masking key, when the MASK bit was set.
    pub mask: Option<[u8; 4]>,
    /// Payload length.
    pub len: u64,
}

impl FrameHeader {
    /// The opcode (low nibble).
    pub fn opcode(&self) -> u8 {
        self.first & 0x0F
    }

    /// Whether this is the last frame of its message.
    pub fn fin(&self) -> bool {
        self.first & FIN != 0
    }

    /// Whether RSV1 (compressed) is set.
    pub fn rsv1(&self) -> bool {
        self.first & RSV1 != 0
    }

    /// Whether this is a control frame (close, ping, pong, reserved 0xB-0xF).
    pub fn is_control(&self) -> bool {
        self.first & 0x08 != 0
    }
}

/// Result of [`parse_header`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderParse {
    /// More bytes are needed; nothing was consumed.
    Incomplete,
    /// A header of `len` bytes.
    Header(FrameHeader, usize),
    /// A 64-bit length with its most significant bit set (RFC 6455 5.2).
    BadLength,
}

/// Decodes a frame header from the start of `buf`.
pub fn parse_header(buf: &[u8]) -> HeaderParse {
    let [first, second, ..] = *buf else {
        return HeaderParse::Incomplete;
    };
    let masked = second & 0x80 != 0;
    let (len, mut at) = match second & 0x7F {
        126 => match buf.get(2..4) {
            Some(b) => (u64::from(u16::from_be_bytes([b[0], b[1]])), 4),
            None => return HeaderParse::Incomplete,
        },
        127 => match buf.get(2..10) {
            Some(b) => {
                let mut a = [0u8; 8];
                a.copy_from_slice(b);
                (u64::from_be_bytes(a), 10)
            }
            None => return HeaderParse::Incomplete,
        },
        n => (u64::from(n), 2),
    };
    if len >> 63 != 0 {
        return HeaderParse::BadLength;
    }
    let mask = if masked {
        let Some(b) = buf.get(at..at + 4) else {
            return HeaderParse::Incomplete;
        };
        at += 4;
        Some([b[0], b[1], b[2], b[3]])
    } else {
        None
    };
    HeaderParse::Header(FrameHeader { first, mask, len }, at)
}

/// Writes an unmasked (server) frame header for a payload of `len` bytes into
/// `dst`, returning how many bytes it used (2, 4 or 10).
pub fn write_header(dst: &mut [u8; MAX_SERVER_HEADER_LEN], first: u8, len: usize) -> usize {
    dst[0] = first;
    if len < 126 {
        dst[1] = len as u8;
        2
    } else if let Ok(short) = u16::try_from(len) {
        dst[1] = 126;
        dst[2..4].copy_from_slice(&short.to_be_bytes());
        4
    } else {
        dst[1] = 127;
        dst[2..10].copy_from_slice(&(len as u64).to_be_bytes());
        10
    }
}

/// Appends one complete unmasked, uncompressed frame to `out`. Pure, so a
/// message broadcast to many connections can be encoded once.
pub fn encode_frame(first: u8, payload: &[u8], out: &mut Vec<u8>) {
    let mut hdr = [0u8; MAX_SERVER_HEADER_LEN];
    let n = write_header(&mut hdr, first, payload.len());
    out.reserve(n + payload.len());
    out.extend_from_slice(&hdr[..n]);
    out.extend_from_slice(payload);
}

/// XORs `buf` with `mask`, where `buf` starts at byte `offset` of the frame
/// payload. Works on 8 bytes at a time.
pub fn apply_mask(buf: &mut [u8], mask: [u8; 4], offset: u64) {
    let shift = (offset % 4) as usize;
    let m = [
        mask[shift],
        mask[(shift + 1) % 4],
        mask[(shift + 2) % 4],
        mask[(shift + 3) % 4],
    ];
    let wide = u64::from_ne_bytes([m[0], m[1], m[2], m[3], m[0], m[1], m[2], m[3]]);
    let mut chunks = buf.chunks_exact_mut(8);
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        chunk.copy_from_slice(&(u64::from_ne_bytes(word) ^ wide).to_ne_bytes());
    }
    for (i, b) in chunks.into_remainder().iter_mut().enumerate() {
        *b ^= m[i % 4];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_short_medium_and_long_lengths() {
        assert_eq!(
            parse_header(&[0x81, 0x05]),
            HeaderParse::Header(
                FrameHeader {
                    first: 0x81,
                    mask: None,
                    len: 5
                },
                2
            )
        );
        assert_eq!(
            parse_header(&[0x82, 0xFE, 0x01, 0x00, 1, 2, 3, 4]),
            HeaderParse::Header(
                FrameHeader {
                    first: 0x82,
                    mask: Some([1, 2, 3, 4]),
                    len: 256
                },
                8
            )
        );
        let long = [0x02, 0x7F, 0, 0, 0, 1, 0, 0, 0, 0];
        assert_eq!(
            parse_header(&long),
            HeaderParse::Header(
                FrameHeader {
                    first: 0x02,
                    mask: None,
                    len: 1 << 32
                },
                10
            )
        );
    }

    #[test]
    fn incomplete_headers_need_more() {
        let full = [0x81, 0xFF, 0, 0, 0, 0, 0, 1, 0, 0, 9, 9, 9, 9];
        for cut in 0..full.len() {
            assert_eq!(
                parse_header(&full[..cut]),
                HeaderParse::Incomplete,
                "cut {cut}"
            );
        }
        assert!(matches!(parse_header(&full), HeaderParse::Header(_, 14)));
    }

    #[test]
    fn rejects_64_bit_length_with_msb() {
        let bad = [0x82, 0x7F, 0x80, 0, 0, 0, 0, 0, 0, 0];
        assert_eq!(parse_header(&bad), HeaderParse::BadLength);
    }

    #[test]
    fn header_accessors() {
        let h = FrameHeader {
            first: 0xC1,
            mask: None,
            len: 0,
        };
        assert!(h.fin() && h.rsv1() && !h.is_control());
        assert_eq!(h.opcode(), OP_TEXT);
        let p = FrameHeader {
            first: 0x89,
            mask: None,
            len: 0,
        };
        assert!(p.is_control());
    }

    #[test]
    fn writes_headers_of_each_size() {
        let mut out = Vec::new();
        encode_frame(0x81, b"hi", &mut out);
        assert_eq!(out, [0x81, 2, b'h', b'i']);
        let mut out = Vec::new();
        encode_frame(0x82, &[7u8; 126], &mut out);
        assert_eq!(&out[..4], &[0x82, 126, 0, 126]);
        assert_eq!(out.len(), 130);
        let mut out = Vec::new();
        encode_frame(0x82, &vec![0u8; 70_000], &mut out);
        assert_eq!(&out[..10], &[0x82, 127, 0, 0, 0, 0, 0, 1, 0x11, 0x70]);
    }

    #[test]
    fn masking_matches_bytewise_at_every_offset() {
        let mask = [0x12, 0x34, 0x56, 0x78];
        let data: Vec<u8> = (0..=255u8).collect();
        for offset in 0..9u64 {
            for len in [0usize, 1, 7, 8, 9, 31, 200] {
                let mut fast = data[..len].to_vec();
                apply_mask(&mut fast, mask, offset);
                let slow: Vec<u8> = data[..len]
                    .iter()
                    .enumerate()
                    .map(|(i, b)| b ^ mask[(i + offset as usize) % 4])
                    .collect();
                assert_eq!(fast, slow, "offset {offset} len {len}");
            }
        }
    }

    #[test]
    fn close_code_validity() {
        for ok in [
            1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014,
        ] {
            assert!(is_valid_close_code(ok), "{ok}");
        }
        for ok in [3000, 3999, 4000, 4999] {
            assert!(is_valid_close_code(ok), "{ok}");
        }
        for bad in [
            0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535,
        ] {
            assert!(!is_valid_close_code(bad), "{bad}");
        }
    }
}
