//! Stream frames: the records every nukleus exchanges over its streams files.
//!
//! ```text
//! every frame body begins with the stream id
//!  0               8
//! +---------------+------------------------------------------+
//! | i64 stream id | type-specific fields                     |
//! +---------------+------------------------------------------+
//!
//! RESET  0x00000000  -
//! BEGIN  0x00000001  i64 handler ref (odd id) | correlating id (even id), extension
//! DATA   0x00000002  payload (ws: u8 flags, then payload)
//! END    0x00000003  extension (ws: i16 close code, string reason)
//! MULTICAST 0x00000004  i32 count, count x i64 stream id, payload
//!                       (the leading stream id is 0: no single stream)
//! WINDOW 0x40000002  i32 credit, i32 padding
//! ```
//!
//! MULTICAST is DATA for several streams at once: the same payload goes on
//! each listed stream, in the order of the ring, as if a DATA frame had been
//! written for each. It is how a broadcast crosses the data path once instead
//! of once per subscriber; each stream's credit is spent as for DATA.
//!
//! Integers are little-endian. Strings are `u8 length` + UTF-8, with 0xFF
//! standing for null. Decoding never panics: a short or malformed body is a
//! [`FrameError`], which the receiving nukleus answers with RESET.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// RESET: the stream is dead; sent either way.
pub const RESET: i32 = 0x0000_0000;
/// BEGIN: opens a stream.
pub const BEGIN: i32 = 0x0000_0001;
/// DATA: payload for an open stream.
pub const DATA: i32 = 0x0000_0002;
/// END: orderly end of a stream.
pub const END: i32 = 0x0000_0003;
/// MULTICAST: one payload for several open streams.
pub const MULTICAST: i32 = 0x0000_0004;
/// WINDOW: credit from the reader of a stream to its writer.
pub const WINDOW: i32 = 0x4000_0002;

/// The string length byte that stands for null.
pub const NULL_STRING: u8 = 0xFF;
/// The longest string a frame can carry.
pub const MAX_STRING: usize = 254;

/// Identifies one unidirectional stream between two nuklei.
///
/// Odd ids open a stream (initial), even ids answer one (reply).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StreamId(pub i64);

impl StreamId {
    /// True for an initial stream (odd id).
    pub fn is_initial(self) -> bool {
        self.0 & 1 == 1
    }

    /// The id's little-endian bytes, as frames carry them.
    pub fn bytes(self) -> [u8; 8] {
        self.0.to_le_bytes()
    }
}

/// Hands out stream ids of one parity, never zero.
#[derive(Debug)]
pub struct StreamIds {
    next: i64,
}

impl StreamIds {
    /// Ids for initial streams: 1, 3, 5...
    pub fn initial() -> Self {
        StreamIds { next: 1 }
    }

    /// Ids for reply streams: 2, 4, 6...
    pub fn reply() -> Self {
        StreamIds { next: 2 }
    }

    /// The next id of this parity.
    pub fn next_id(&mut self) -> StreamId {
        let id = self.next;
        self.next = self.next.wrapping_add(2);
        if self.next <= 0 {
            self.next = 2 - (id & 1);
        }
        StreamId(id)
    }
}

/// A frame body that does not decode.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FrameError {
    /// The body ended before a field did.
    #[error("frame truncated: needed {needed} more bytes")]
    Truncated {
        /// How many bytes were missing.
        needed: usize,
    },
    /// A string was not UTF-8.
    #[error("string field is not UTF-8")]
    BadString,
    /// An address union had an unknown kind.
    #[error("unknown address kind {0:#04x}")]
    BadAddress(u8),
    /// A MULTICAST count was negative.
    #[error("bad stream count {0}")]
    BadCount(i32),
    /// The record type is not a stream frame.
    #[error("unknown frame type {0:#010x}")]
    UnknownType(i32),
}

/// A decoded stream frame borrowing its body from the ring.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Frame<'a> {
    /// The stream is dead.
    Reset {
        /// Stream.
        stream: StreamId,
    },
    /// A stream opens.
    Begin {
        /// Stream.
        stream: StreamId,
        /// Handler ref (initial) or correlating stream id (reply).
        reference: i64,
        /// Protocol-specific fields.
        extension: &'a [u8],
    },
    /// Payload.
    Data {
        /// Stream.
        stream: StreamId,
        /// Payload (for ws: flags byte first).
        payload: &'a [u8],
    },
    /// Orderly end.
    End {
        /// Stream.
        stream: StreamId,
        /// Protocol-specific fields.
        extension: &'a [u8],
    },
    /// One payload for several streams (the frame's own stream id is 0).
    Multicast {
        /// The streams, in the order given.
        streams: StreamList<'a>,
        /// Payload (for ws: flags byte first), the same for every stream.
        payload: &'a [u8],
    },
    /// Credit.
    Window {
        /// Stream.
        stream: StreamId,
        /// Bytes the writer may send.
        credit: i32,
        /// Bytes the writer must count per DATA frame on top of its payload.
        padding: i32,
    },
}

impl<'a> Frame<'a> {
    /// Decodes a record of `type_id` with `body`.
    pub fn decode(type_id: i32, body: &'a [u8]) -> Result<Frame<'a>, FrameError> {
        let mut r = Reader::new(body);
        let stream = StreamId(r.i64()?);
        Ok(match type_id {
            RESET => Frame::Reset { stream },
            BEGIN => Frame::Begin {
                stream,
                reference: r.i64()?,
                extension: r.rest(),
            },
            DATA => Frame::Data {
                stream,
                payload: r.rest(),
            },
            END => Frame::End {
                stream,
                extension: r.rest(),
            },
            WINDOW => Frame::Window {
                stream,
                credit: r.i32()?,
                padding: r.i32()?,
            },
            MULTICAST => {
                let count = r.i32()?;
                let count = usize::try_from(count).map_err(|_| FrameError::BadCount(count))?;
                let ids = r.take(count.saturating_mul(8))?;
                Frame::Multicast {
                    streams: StreamList(ids),
                    payload: r.rest(),
                }
            }
            other => return Err(FrameError::UnknownType(other)),
        })
    }

    /// The stream this frame belongs to.
    pub fn stream(&self) -> StreamId {
        match *self {
            Frame::Reset { stream }
            | Frame::Begin { stream, .. }
            | Frame::Data { stream, .. }
            | Frame::End { stream, .. }
            | Frame::Window { stream, .. } => stream,
            Frame::Multicast { .. } => StreamId(0),
        }
    }
}

/// The stream ids of a MULTICAST frame, as they lie in the ring.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamList<'a>(&'a [u8]);

impl<'a> StreamList<'a> {
    /// How many streams.
    pub fn len(&self) -> usize {
        self.0.len() / 8
    }

    /// True when there is none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The ids in order.
    pub fn iter(&self) -> impl Iterator<Item = StreamId> + 'a {
        self.0.chunks_exact(8).map(|id| {
            let mut bytes = [0u8; 8];
            bytes.copy_from_slice(id);
            StreamId(i64::from_le_bytes(bytes))
        })
    }
}

/// Builds MULTICAST bodies: the stream ids are appended one by one, the
/// count is filled in when the body is taken.
#[derive(Debug, Default)]
pub struct MulticastBody {
    buf: Vec<u8>,
}

impl MulticastBody {
    /// The head of an empty list: stream id 0 and a count to fill in.
    const HEAD: usize = 12;

    /// Starts a new list, forgetting the last one.
    pub fn clear(&mut self) {
        self.buf.clear();
        self.buf.resize(Self::HEAD, 0);
    }

    /// Adds a stream.
    pub fn push(&mut self, stream: StreamId) {
        if self.buf.len() < Self::HEAD {
            self.clear();
        }
        self.buf.extend_from_slice(&stream.bytes());
    }

    /// How many streams are listed.
    pub fn len(&self) -> usize {
        self.buf.len().saturating_sub(Self::HEAD) / 8
    }

    /// True when no stream is listed.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The body up to the payload, with its count filled in; the payload
    /// follows as further parts of the same record.
    pub fn head(&mut self) -> &[u8] {
        let count = self.len() as i32;
        if self.buf.len() < Self::HEAD {
            self.clear();
        }
        self.buf[8..12].copy_from_slice(&count.to_le_bytes());
        &self.buf
    }
}

/// Reads little-endian fields from a frame body without panicking.
#[derive(Debug)]
pub struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    /// Reads from the start of `buf`.
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], FrameError> {
        if self.buf.len() < n {
            return Err(FrameError::Truncated {
                needed: n - self.buf.len(),
            });
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], FrameError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    /// `u8`.
    pub fn u8(&mut self) -> Result<u8, FrameError> {
        Ok(self.take(1)?[0])
    }

    /// `i16`.
    pub fn i16(&mut self) -> Result<i16, FrameError> {
        Ok(i16::from_le_bytes(self.array()?))
    }

    /// `u16` in network order (ports).
    pub fn u16_be(&mut self) -> Result<u16, FrameError> {
        Ok(u16::from_be_bytes(self.array()?))
    }

    /// `i32`.
    pub fn i32(&mut self) -> Result<i32, FrameError> {
        Ok(i32::from_le_bytes(self.array()?))
    }

    /// `i64`.
    pub fn i64(&mut self) -> Result<i64, FrameError> {
        Ok(i64::from_le_bytes(self.array()?))
    }

    /// A string; `None` for null.
    pub fn string(&mut self) -> Result<Option<&'a str>, FrameError> {
        let len = self.u8()?;
        if len == NULL_STRING {
            return Ok(None);
        }
        let bytes = self.take(len as usize)?;
        std::str::from_utf8(bytes)
            .map(Some)
            .map_err(|_| FrameError::BadString)
    }

    /// A socket address: `u8 kind` (0x01 IPv4, 0x02 IPv6), address, `u16` port.
    pub fn socket_addr(&mut self) -> Result<SocketAddr, FrameError> {
        let ip = match self.u8()? {
            ADDRESS_IPV4 => IpAddr::V4(Ipv4Addr::from(self.array::<4>()?)),
            ADDRESS_IPV6 => IpAddr::V6(Ipv6Addr::from(self.array::<16>()?)),
            other => return Err(FrameError::BadAddress(other)),
        };
        Ok(SocketAddr::new(ip, self.u16_be()?))
    }

    /// Everything not read yet.
    pub fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.buf)
    }

    /// True when everything was read.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }
}

/// Address union kind: a device name.
pub const ADDRESS_DEVICE: u8 = 0x00;
/// Address union kind: IPv4.
pub const ADDRESS_IPV4: u8 = 0x01;
/// Address union kind: IPv6.
pub const ADDRESS_IPV6: u8 = 0x02;

/// Appends little-endian fields to a reusable buffer.
pub trait Writer {
    /// `i64`.
    fn put_i64(&mut self, v: i64);
    /// `i32`.
    fn put_i32(&mut self, v: i32);
    /// `i16`.
    fn put_i16(&mut self, v: i16);
    /// A string, truncated to [`MAX_STRING`] bytes at a character boundary.
    fn put_string(&mut self, s: Option<&str>);
    /// A socket address union with its port.
    fn put_socket_addr(&mut self, addr: SocketAddr);
}

impl Writer for Vec<u8> {
    fn put_i64(&mut self, v: i64) {
        self.extend_from_slice(&v.to_le_bytes());
    }

    fn put_i32(&mut self, v: i32) {
        self.extend_from_slice(&v.to_le_bytes());
    }

    fn put_i16(&mut self, v: i16) {
        self.extend_from_slice(&v.to_le_bytes());
    }

    fn put_string(&mut self, s: Option<&str>) {
        match s {
            None => self.push(NULL_STRING),
            Some(s) => {
                let mut end = s.len().min(MAX_STRING);
                while !s.is_char_boundary(end) {
                    end -= 1;
                }
                self.push(end as u8);
                self.extend_from_slice(&s.as_bytes()[..end]);
            }
        }
    }

    fn put_socket_addr(&mut self, addr: SocketAddr) {
        match addr.ip() {
            IpAddr::V4(ip) => {
                self.push(ADDRESS_IPV4);
                self.extend_from_slice(&ip.octets());
            }
            IpAddr::V6(ip) => {
                self.push(ADDRESS_IPV6);
                self.extend_from_slice(&ip.octets());
            }
        }
        self.extend_from_slice(&addr.port().to_be_bytes());
    }
}

/// The fixed part of a WINDOW frame body.
pub fn window_body(stream: StreamId, credit: i32, padding: i32) -> [u8; 16] {
    let mut body = [0u8; 16];
    body[..8].copy_from_slice(&stream.bytes());
    body[8..12].copy_from_slice(&credit.to_le_bytes());
    body[12..].copy_from_slice(&padding.to_le_bytes());
    body
}

/// The fixed part of a BEGIN frame body.
pub fn begin_head(stream: StreamId, reference: i64) -> [u8; 16] {
    let mut body = [0u8; 16];
    body[..8].copy_from_slice(&stream.bytes());
    body[8..].copy_from_slice(&reference.to_le_bytes());
    body
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_layout_is_byte_exact() {
        let body = window_body(StreamId(3), 65536, 10);
        assert_eq!(
            body,
            [3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 10, 0, 0, 0],
            "i64 stream id, i32 credit, i32 padding, little-endian"
        );
        assert_eq!(
            Frame::decode(WINDOW, &body),
            Ok(Frame::Window {
                stream: StreamId(3),
                credit: 65536,
                padding: 10
            })
        );
    }

    #[test]
    fn begin_carries_reference_and_extension() {
        let mut body = begin_head(StreamId(4), 3).to_vec();
        body.put_socket_addr("127.0.0.1:8080".parse().unwrap());
        let frame = Frame::decode(BEGIN, &body).unwrap();
        let Frame::Begin {
            stream,
            reference,
            extension,
        } = frame
        else {
            panic!("not a begin: {frame:?}");
        };
        assert_eq!((stream, reference), (StreamId(4), 3));
        assert_eq!(extension, &[1, 127, 0, 0, 1, 0x1f, 0x90]);
        let addr = Reader::new(extension).socket_addr().unwrap();
        assert_eq!(addr, "127.0.0.1:8080".parse().unwrap());
    }

    #[test]
    fn ipv6_address_round_trips() {
        let mut buf = Vec::new();
        let addr: SocketAddr = "[::1]:443".parse().unwrap();
        buf.put_socket_addr(addr);
        assert_eq!(buf.len(), 1 + 16 + 2);
        assert_eq!(Reader::new(&buf).socket_addr(), Ok(addr));
    }

    #[test]
    fn strings_null_and_truncation() {
        let mut buf = Vec::new();
        buf.put_string(None);
        buf.put_string(Some("chat"));
        let long = "é".repeat(200);
        buf.put_string(Some(&long));
        let mut r = Reader::new(&buf);
        assert_eq!(r.string(), Ok(None));
        assert_eq!(r.string(), Ok(Some("chat")));
        let cut = r.string().unwrap().unwrap();
        assert!(cut.len() <= MAX_STRING && long.starts_with(cut));
    }

    #[test]
    fn short_bodies_are_errors_not_panics() {
        assert_eq!(
            Frame::decode(WINDOW, &[1, 0, 0]),
            Err(FrameError::Truncated { needed: 5 })
        );
        assert!(Frame::decode(BEGIN, &[1, 0, 0, 0, 0, 0, 0, 0, 9]).is_err());
        assert_eq!(Frame::decode(7, &[0; 8]), Err(FrameError::UnknownType(7)));
        assert_eq!(
            Reader::new(&[9, 1, 2]).socket_addr(),
            Err(FrameError::BadAddress(9))
        );
        assert_eq!(
            Reader::new(&[2, 0xff]).string(),
            Err(FrameError::Truncated { needed: 1 })
        );
    }

    #[test]
    fn multicast_layout_is_byte_exact() {
        let mut list = MulticastBody::default();
        list.clear();
        list.push(StreamId(2));
        list.push(StreamId(6));
        let body = [list.head(), &[0x81], b"hi"].concat();
        assert_eq!(
            body,
            [
                &0i64.to_le_bytes()[..],
                &2i32.to_le_bytes(),
                &2i64.to_le_bytes(),
                &6i64.to_le_bytes(),
                &[0x81, b'h', b'i'],
            ]
            .concat()
        );
        let Ok(Frame::Multicast { streams, payload }) = Frame::decode(MULTICAST, &body) else {
            panic!("not a multicast");
        };
        assert_eq!(
            streams.iter().collect::<Vec<_>>(),
            [StreamId(2), StreamId(6)]
        );
        assert_eq!(payload, &[0x81, b'h', b'i']);
        assert_eq!(
            Frame::decode(MULTICAST, &body).map(|f| f.stream()),
            Ok(StreamId(0))
        );
    }

    #[test]
    fn bad_multicast_counts_are_errors() {
        let head = |count: i32| [&0i64.to_le_bytes()[..], &count.to_le_bytes()].concat();
        assert_eq!(
            Frame::decode(MULTICAST, &head(-1)),
            Err(FrameError::BadCount(-1))
        );
        assert_eq!(
            Frame::decode(MULTICAST, &[&head(2)[..], &[0; 9]].concat()),
            Err(FrameError::Truncated { needed: 7 })
        );
        assert_eq!(
            Frame::decode(MULTICAST, &head(i32::MAX)),
            Err(FrameError::Truncated {
                needed: i32::MAX as usize * 8
            })
        );
    }

    #[test]
    fn stream_ids_keep_parity() {
        let mut initial = StreamIds::initial();
        let mut reply = StreamIds::reply();
        assert_eq!(initial.next_id(), StreamId(1));
        assert_eq!(initial.next_id(), StreamId(3));
        assert!(initial.next_id().is_initial());
        assert_eq!(reply.next_id(), StreamId(2));
        assert!(!reply.next_id().is_initial());
    }
}
