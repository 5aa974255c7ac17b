//! One socket and the two streams that carry it.

use std::io::{ErrorKind, IoSlice, Write};

use mio::net::TcpStream;

use crate::nukleus::frame::StreamId;

/// Outbound buffers larger than this are freed once drained; smaller ones
/// are kept while the connection is busy (a 16 KiB message plus its header
/// must not cost an allocation per message) and freed when the nukleus
/// goes idle ([`Conn::release_buffer`]).
const KEEP_BUFFER: usize = 64 * 1024;

/// The round buffer: the round's small broadcast payloads, each kept once,
/// which connections queue by range ([`Conn::share`]). A fan-out larger
/// than one MULTICAST frame arrives as several frames of the same payload;
/// the payload is kept once for all of them, so a subscriber's ranges stay
/// contiguous from one broadcast to the next (one write, no copy).
#[derive(Debug, Default)]
pub(super) struct Round {
    pub bytes: Vec<u8>,
    /// The range of the payload kept last.
    last: (u32, u32),
}

impl Round {
    /// The range of `payload` in the buffer, appended unless it repeats
    /// the payload kept last; None when the buffer would pass 4 GiB.
    pub fn keep(&mut self, payload: &[u8]) -> Option<(u32, u32)> {
        let (start, len) = (self.last.0 as usize, self.last.1 as usize);
        if len > 0 && len == payload.len() && self.bytes[start..start + len] == *payload {
            return Some(self.last);
        }
        let start = u32::try_from(self.bytes.len()).ok()?;
        let len = u32::try_from(payload.len()).ok()?;
        start.checked_add(len)?;
        self.bytes.extend_from_slice(payload);
        self.last = (start, len);
        Some(self.last)
    }

    /// Empties the buffer for the next round, keeping its allocation.
    pub fn clear(&mut self) {
        self.bytes.clear();
        self.last = (0, 0);
    }
}

/// A connection of the tcp nukleus.
pub(super) struct Conn {
    pub socket: TcpStream,
    /// Index of the target (handler) we write this connection's frames to.
    pub target: usize,
    /// The stream we write (socket -> handler); None until an outbound
    /// connection is established.
    pub outbound: Option<StreamId>,
    /// The stream we read (handler -> socket): source index and id; None
    /// until the handler begins its reply.
    pub inbound: Option<(usize, StreamId)>,
    /// Credit the handler gave for `outbound`.
    pub credit: i64,
    /// Padding the handler counts per DATA frame.
    pub padding: i64,
    /// Edge-triggered readiness not yet consumed.
    pub readable: bool,
    pub writable: bool,
    /// Waiting for an outbound connect to complete.
    pub connecting: bool,
    pub stalled: bool,
    /// END could not be written yet (ring full).
    pub end_pending: bool,
    /// Bytes waiting for the socket, from `out_pos` on.
    pub out: Vec<u8>,
    pub out_pos: usize,
    /// Broadcast bytes queued after `out` without a copy of their own: the
    /// range `shared_start..shared_start + shared_len` of the nukleus's
    /// round buffer (see [`Conn::share`]). Empty when `shared_len` is 0.
    shared_start: u32,
    shared_len: u32,
    /// The handler ended its stream: shut the write side once drained.
    pub write_ending: bool,
    /// Read side finished (EOF sent as END, or RESET either way).
    pub read_done: bool,
    /// Write side finished (shut down, or RESET).
    pub write_done: bool,
    /// The socket failed: close everything.
    pub failed: bool,
    /// Queued for a flush this round.
    pub dirty: bool,
}

impl Conn {
    pub fn new(socket: TcpStream, target: usize, outbound: StreamId, connecting: bool) -> Self {
        let mut conn = Conn::pending(socket, target, connecting);
        conn.outbound = Some(outbound);
        conn
    }

    pub fn pending(socket: TcpStream, target: usize, connecting: bool) -> Self {
        Conn {
            socket,
            target,
            outbound: None,
            inbound: None,
            credit: 0,
            padding: 0,
            readable: false,
            writable: false,
            connecting,
            stalled: false,
            end_pending: false,
            out: Vec::new(),
            out_pos: 0,
            shared_start: 0,
            shared_len: 0,
            write_ending: false,
            read_done: false,
            write_done: false,
            failed: false,
            dirty: false,
        }
    }

    /// Both directions are over.
    pub fn finished(&self) -> bool {
        self.read_done && self.write_done && !self.end_pending
    }

    /// Queued, unwritten bytes.
    pub fn queued(&self) -> usize {
        self.out.len() - self.out_pos + self.shared_len as usize
    }

    /// Queues `round[start..start + len]`, bytes that other connections
    /// queue too, by reference. A connection that gets every broadcast of a
    /// round holds one growing range, so its write is one copy by the
    /// kernel from a buffer all connections share, instead of a copy per
    /// connection and message here first. A range that does not continue
    /// the one held is preceded by a copy of the one held.
    pub fn share(&mut self, round: &[u8], start: u32, len: u32) {
        if self.shared_len > 0 && self.shared_start + self.shared_len != start {
            self.own_shared(round);
        }
        if self.shared_len == 0 {
            self.shared_start = start;
        }
        self.shared_len += len;
    }

    /// Copies the shared range into `out`, so that the connection no longer
    /// depends on the round buffer: before bytes of its own are queued
    /// behind it, and when the round ends with part of it unwritten.
    pub fn own_shared(&mut self, round: &[u8]) {
        if self.shared_len > 0 {
            let start = self.shared_start as usize;
            self.out
                .extend_from_slice(&round[start..start + self.shared_len as usize]);
            self.shared_start = 0;
            self.shared_len = 0;
        }
    }

    /// Writes `payload` straight from where it lies (the handler's ring)
    /// when nothing is queued before it; what the socket does not take is
    /// queued. Returns the bytes written.
    pub fn write_direct(&mut self, payload: &[u8]) -> usize {
        let mut written = 0;
        while written < payload.len() && self.writable && !self.failed {
            match self.socket.write(&payload[written..]) {
                Ok(0) => self.failed = true,
                Ok(n) => written += n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => self.writable = false,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(error) => {
                    tracing::debug!(%error, "write failed");
                    self.failed = true;
                }
            }
        }
        if !self.failed {
            self.out.extend_from_slice(&payload[written..]);
        }
        written
    }

    /// Frees the outbound buffer when nothing waits in it.
    pub fn release_buffer(&mut self) {
        if self.queued() == 0 && self.out.capacity() > 0 {
            self.out = Vec::new();
            self.out_pos = 0;
        }
    }

    /// Writes what is queued in as few writes as the socket allows (`out`
    /// and the shared range of `round` together); returns how many bytes
    /// left (that much credit goes back to the handler). What is left of the
    /// shared range is copied into `out`: the round buffer is reused after
    /// this round's flush.
    pub fn flush(&mut self, round: &[u8]) -> usize {
        let mut written = 0;
        while self.queued() > 0 && self.writable {
            let own = &self.out[self.out_pos..];
            let start = self.shared_start as usize;
            let shared = match self.shared_len {
                0 => &[][..],
                len => &round[start..start + len as usize],
            };
            let result = match (own.is_empty(), shared.is_empty()) {
                (false, false) => self
                    .socket
                    .write_vectored(&[IoSlice::new(own), IoSlice::new(shared)]),
                (false, true) => self.socket.write(own),
                _ => self.socket.write(shared),
            };
            match result {
                Ok(0) => {
                    self.failed = true;
                    break;
                }
                Ok(n) => {
                    let from_own = n.min(own.len());
                    self.out_pos += from_own;
                    let from_shared = (n - from_own) as u32;
                    self.shared_start += from_shared;
                    self.shared_len -= from_shared;
                    written += n;
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => self.writable = false,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(error) => {
                    tracing::debug!(%error, "write failed");
                    self.failed = true;
                    break;
                }
            }
        }
        self.own_shared(round);
        if self.queued() == 0 {
            self.out_pos = 0;
            if self.out.capacity() > KEEP_BUFFER {
                self.out = Vec::new();
            } else {
                self.out.clear();
            }
            if self.write_ending && !self.write_done {
                let _ = self.socket.shutdown(std::net::Shutdown::Write);
                self.write_done = true;
            }
        } else if self.out_pos > self.out.len() / 2 {
            self.out.drain(..self.out_pos);
            self.out_pos = 0;
        }
        written
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read;
    use std::net::{TcpListener, TcpStream as StdStream};

    use super::*;

    fn pair() -> (Conn, StdStream) {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let client = StdStream::connect(listener.local_addr().expect("addr")).expect("connect");
        let (server, _) = listener.accept().expect("accept");
        server.set_nonblocking(true).expect("nonblocking");
        let mut conn = Conn::pending(TcpStream::from_std(server), 0, false);
        conn.writable = true;
        (conn, client)
    }

    fn read_exactly(client: &mut StdStream, n: usize) -> Vec<u8> {
        let mut got = vec![0; n];
        client.read_exact(&mut got).expect("read");
        got
    }

    /// A payload repeated by the next MULTICAST frame (a fan-out split over
    /// several frames) is kept once, so the next broadcast's range
    /// continues each connection's range.
    #[test]
    fn a_payload_split_over_frames_is_kept_once() {
        let mut round = Round::default();
        assert_eq!(round.keep(b"first."), Some((0, 6)));
        assert_eq!(round.keep(b"first."), Some((0, 6)));
        assert_eq!(round.keep(b"second."), Some((6, 7)));
        assert_eq!(round.keep(b"second."), Some((6, 7)));
        assert_eq!(
            round.keep(b"first."),
            Some((13, 6)),
            "only the last is reused"
        );
        assert_eq!(round.bytes, b"first.second.first.");
        let (mut conn, mut client) = pair();
        conn.share(&round.bytes, 0, 6);
        conn.share(&round.bytes, 6, 7);
        assert!(conn.out.is_empty(), "contiguous ranges are not copied");
        assert_eq!(conn.flush(&round.bytes), 13);
        assert_eq!(read_exactly(&mut client, 13), b"first.second.");
        round.clear();
        assert_eq!(
            round.keep(b"first."),
            Some((0, 6)),
            "a cleared round starts over"
        );
    }

    /// Shared ranges and bytes of the connection's own leave in the order
    /// they were queued, contiguous ranges as one.
    #[test]
    fn shared_ranges_and_own_bytes_keep_their_order() {
        let (mut conn, mut client) = pair();
        let mut round = b"one.two.".to_vec();
        conn.share(&round, 0, 4);
        conn.share(&round, 4, 4);
        assert_eq!(conn.queued(), 8);
        assert!(conn.out.is_empty(), "a continued range is not copied");
        conn.own_shared(&round);
        conn.out.extend_from_slice(b"own.");
        round.extend_from_slice(b"skip.three.");
        conn.share(&round, 13, 6);
        conn.share(&round, 8, 5);
        assert_eq!(conn.queued(), 23);
        assert_eq!(conn.flush(&round), 23);
        assert_eq!(read_exactly(&mut client, 23), b"one.two.own.three.skip.");
    }

    /// A range the socket does not take this round is copied before the
    /// round buffer is reused, and leaves intact later.
    #[test]
    fn an_unwritten_range_survives_the_round() {
        let (mut conn, mut client) = pair();
        let round: Vec<u8> = (0..16 * 1024 * 1024).map(|i| (i % 251) as u8).collect();
        conn.share(&round, 0, round.len() as u32);
        let first = conn.flush(&round);
        assert!(first < round.len(), "the socket buffers less than 16 MiB");
        assert_eq!(conn.queued(), round.len() - first);
        let reused = vec![0xffu8; 16];
        let mut got = read_exactly(&mut client, first);
        while got.len() < round.len() {
            conn.writable = true;
            let n = conn.flush(&reused);
            got.extend(read_exactly(&mut client, n));
        }
        assert!(
            got == round,
            "bytes changed after the round buffer was reused"
        );
        assert_eq!(conn.queued(), 0);
    }
}
