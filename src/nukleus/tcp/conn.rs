//! One socket and the two streams that carry it.

use std::io::{ErrorKind, Write};

use mio::net::TcpStream;

use crate::nukleus::frame::StreamId;

/// Outbound buffers larger than this are freed once drained; smaller ones
/// are kept while the connection is busy (a 16 KiB message plus its header
/// must not cost an allocation per message) and freed when the nukleus
/// goes idle ([`Conn::release_buffer`]).
const KEEP_BUFFER: usize = 64 * 1024;

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
        self.out.len() - self.out_pos
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

    /// Writes what is queued in as few writes as the socket allows; returns
    /// how many bytes left (that much credit goes back to the handler).
    pub fn flush(&mut self) -> usize {
        let mut written = 0;
        while self.queued() > 0 && self.writable {
            match self.socket.write(&self.out[self.out_pos..]) {
                Ok(0) => {
                    self.failed = true;
                    break;
                }
                Ok(n) => {
                    self.out_pos += n;
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
