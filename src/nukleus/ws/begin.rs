//! What the ws nukleus tells a handler when a client's upgrade is accepted:
//! the extension of the BEGIN of its initial stream.
//!
//! ```text
//! BEGIN (ws -> handler, initial stream)
//! +-----------+-----------+--------------------------------------------+
//! | i64       | stream id (odd)                                        |
//! | i64       | handler reference (the ws BOUND ref)                   |
//! +-----------+--------------------------------------------------------+
//! | string    | sub-protocol chosen, null when none      (seed 000)    |
//! | string    | request path, without the query                        |
//! | text16    | query string after '?', null when none                 |
//! | text16    | Origin header, null when none                          |
//! | address   | the client's address (optional: absent when unknown)   |
//! +-----------+--------------------------------------------------------+
//!
//! string:  u8 length (0xFF: null), then UTF-8 bytes (at most 254)
//! text16:  u16 little-endian length (0xFFFF: null), then UTF-8 bytes
//! address: u8 kind (0x01 IPv4, 0x02 IPv6), the address, u16 port (network order)
//! ```
//!
//! Seed 000 defines the sub-protocol only; the path, query, origin and
//! address are this implementation's extension, in this order. Queries and
//! origins are `text16` because they may be longer than a frame string.

use std::net::SocketAddr;

use crate::nukleus::frame::{FrameError, Reader, Writer};

/// The `text16` null marker.
const NULL_TEXT16: u16 = u16::MAX;
/// Longest `text16` value; the nukleus refuses longer queries (414) before
/// they would have to be cut.
pub const MAX_TEXT16: usize = NULL_TEXT16 as usize - 1;

/// The extension of a ws BEGIN towards a handler.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WsBegin<'a> {
    /// The sub-protocol chosen.
    pub protocol: Option<&'a str>,
    /// The request path.
    pub path: &'a str,
    /// The query string, without `?`.
    pub query: Option<&'a str>,
    /// The `Origin` header.
    pub origin: Option<&'a str>,
    /// The client's address.
    pub remote: Option<SocketAddr>,
}

impl<'a> WsBegin<'a> {
    /// Appends the extension to `out` (after the stream id and reference).
    /// Text longer than [`MAX_TEXT16`] is cut at a character boundary; the
    /// nukleus refuses such requests first.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.put_string(self.protocol);
        out.put_string(Some(self.path));
        put_text16(out, self.query);
        put_text16(out, self.origin);
        if let Some(remote) = self.remote {
            out.put_socket_addr(remote);
        }
    }

    /// Reads the extension.
    pub fn decode(extension: &'a [u8]) -> Result<WsBegin<'a>, FrameError> {
        let mut r = Reader::new(extension);
        let protocol = r.string()?;
        let path = r.string()?.ok_or(FrameError::BadString)?;
        let query = text16(&mut r)?;
        let origin = text16(&mut r)?;
        let remote = if r.is_empty() {
            None
        } else {
            Some(r.socket_addr()?)
        };
        Ok(WsBegin {
            protocol,
            path,
            query,
            origin,
            remote,
        })
    }
}

fn put_text16(out: &mut Vec<u8>, text: Option<&str>) {
    let Some(text) = text else {
        out.extend_from_slice(&NULL_TEXT16.to_le_bytes());
        return;
    };
    let mut end = text.len().min(MAX_TEXT16);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    out.extend_from_slice(&(end as u16).to_le_bytes());
    out.extend_from_slice(&text.as_bytes()[..end]);
}

fn text16<'a>(r: &mut Reader<'a>) -> Result<Option<&'a str>, FrameError> {
    let len = u16::from_le_bytes([r.u8()?, r.u8()?]);
    if len == NULL_TEXT16 {
        return Ok(None);
    }
    let bytes = r.rest();
    if bytes.len() < len as usize {
        return Err(FrameError::Truncated {
            needed: len as usize - bytes.len(),
        });
    }
    let (text, rest) = bytes.split_at(len as usize);
    *r = Reader::new(rest);
    std::str::from_utf8(text)
        .map(Some)
        .map_err(|_| FrameError::BadString)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_byte_for_byte() {
        let begin = WsBegin {
            protocol: Some("chat"),
            path: "/a",
            query: Some("x=1"),
            origin: None,
            remote: Some("127.0.0.1:8080".parse().unwrap()),
        };
        let mut out = Vec::new();
        begin.encode(&mut out);
        assert_eq!(
            out,
            [
                &[4, b'c', b'h', b'a', b't'][..],
                &[2, b'/', b'a'],
                &[3, 0, b'x', b'=', b'1'],
                &[0xff, 0xff],
                &[1, 127, 0, 0, 1, 0x1f, 0x90],
            ]
            .concat()
        );
        assert_eq!(WsBegin::decode(&out), Ok(begin));
    }

    #[test]
    fn nulls_and_no_address() {
        let begin = WsBegin {
            path: "/chat",
            ..WsBegin::default()
        };
        let mut out = Vec::new();
        begin.encode(&mut out);
        assert_eq!(out, b"\xff\x05/chat\xff\xff\xff\xff");
        assert_eq!(WsBegin::decode(&out), Ok(begin));
    }

    #[test]
    fn long_text_round_trips_and_is_bounded() {
        let query = "q".repeat(1000);
        let begin = WsBegin {
            path: "/chat",
            query: Some(&query),
            origin: Some("https://example.com"),
            ..WsBegin::default()
        };
        let mut out = Vec::new();
        begin.encode(&mut out);
        assert_eq!(WsBegin::decode(&out), Ok(begin));
        let huge = "é".repeat(MAX_TEXT16);
        let mut out = Vec::new();
        put_text16(&mut out, Some(&huge));
        let mut r = Reader::new(&out);
        let cut = text16(&mut r).unwrap().unwrap();
        assert!(cut.len() <= MAX_TEXT16 && huge.starts_with(cut));
    }

    #[test]
    fn bad_extensions_are_errors_not_panics() {
        assert!(WsBegin::decode(&[]).is_err());
        assert!(WsBegin::decode(b"\xff\x01/").is_err());
        assert_eq!(
            WsBegin::decode(b"\xff\x01/\x05\x00ab"),
            Err(FrameError::Truncated { needed: 3 })
        );
        assert_eq!(
            WsBegin::decode(b"\xff\x01/\x01\x00\xff\xff\xff"),
            Err(FrameError::BadString)
        );
        assert!(WsBegin::decode(b"\xff\x01/\xff\xff\xff\xff\x09").is_err());
    }
}
