//! Reassembly of one incoming data message: unmasking, inflating, UTF-8
//! validation, size limits, and delivery in pieces of at most `chunk` bytes.
//!
//! Bytes collect in `buf`. A piece is handed over only once it is known not to
//! be the last one (`buf` holds more than `chunk` bytes) or once the message
//! has ended, so a message of exactly `chunk` bytes is one FIN piece. A
//! refused piece stays in `buf` as `pending` and is offered again first.

use super::deflate::{Inflater, TAIL};
use super::frame::{apply_mask, close_code, FIN, OP_TEXT};
use super::utf8::Utf8Validator;
use super::Action;

/// Capacity kept in `buf` between messages, so a stream of large messages
/// does not allocate for each; larger buffers are freed at once, and the
/// driver frees the rest with `release_memory` once a connection is idle.
const RETAIN_CAPACITY: usize = 64 * 1024;
/// Masked compressed bytes are unmasked into a stack buffer of this size.
const UNMASK_STEP: usize = 4096;
/// Smallest output space offered to the inflater.
const MIN_INFLATE_STEP: usize = 1024;

/// A close code that fails the connection.
pub(super) type Fail = u16;

/// The driver's callback.
pub(super) type Out<'o> = dyn FnMut(Action<'_>) -> bool + 'o;

/// State of the incoming message, if any.
#[derive(Debug, Default)]
pub(super) struct Incoming {
    /// A message is being received (or its last piece awaits delivery).
    pub active: bool,
    /// `OP_TEXT` or `OP_BINARY`.
    opcode: u8,
    /// RSV1 was set on its first frame.
    compressed: bool,
    /// The first piece was delivered (the next ones are continuations).
    started: bool,
    /// Message bytes so far (inflated size for compressed messages).
    pub size: usize,
    utf8: Utf8Validator,
    buf: Vec<u8>,
    /// Flags of a piece the driver refused.
    pending: Option<u8>,
    /// The last frame was read; the tail and the final delivery remain.
    finishing: bool,
    /// How much of [`TAIL`] the inflater has taken.
    tail_used: usize,
    /// The inflater filled its output: it may hold more.
    inflate_more: bool,
    /// The client ended its deflate stream (BFINAL) inside this message.
    stream_ended: bool,
    /// Created on the first compressed message.
    /// Boxed: an idle connection pays one pointer for it, not the state.
    pub inflater: Option<Box<Inflater>>,
    /// The client promised `client_no_context_takeover`.
    client_no_context_takeover: bool,
    /// Largest piece handed over.
    chunk: usize,
    /// Largest message.
    max: usize,
}

impl Incoming {
    /// No message yet; pieces of at most `chunk` bytes, messages of at most
    /// `max` bytes.
    pub fn new(chunk: usize, max: usize, client_no_context_takeover: bool) -> Self {
        Self {
            chunk,
            max,
            client_no_context_takeover,
            ..Self::default()
        }
    }

    /// Starts a message with its first frame.
    pub fn begin(&mut self, opcode: u8, compressed: bool) {
        self.active = true;
        self.opcode = opcode;
        self.compressed = compressed;
        self.started = false;
        self.size = 0;
        self.utf8.reset();
        self.finishing = false;
        self.tail_used = 0;
        self.inflate_more = false;
        self.stream_ended = false;
    }

    /// Whether the current message is compressed.
    pub fn compressed(&self) -> bool {
        self.compressed
    }

    /// Whether a delivery was refused or buffered work remains.
    pub fn blocked(&self) -> bool {
        self.pending.is_some()
    }

    /// Drops the current message (on close or failure).
    pub fn abandon(&mut self) {
        self.active = false;
        self.pending = None;
        self.buf = Vec::new();
    }

    /// The last frame was read while a delivery is pending: finish on resume.
    pub fn mark_finishing(&mut self) {
        self.finishing = true;
    }

    /// Stores a whole message that was refused by the driver on the fast
    /// path, so it is offered again first.
    pub fn stash_refused(&mut self, opcode: u8, payload: &[u8]) {
        self.begin(opcode, false);
        self.buf.extend_from_slice(payload);
        self.size = payload.len();
        self.finishing = true;
        self.pending = Some(FIN | opcode);
    }

    /// Frees buffers and an inflater that holds no context, when no message
    /// is in progress.
    pub fn release_memory(&mut self) {
        if !self.active {
            self.buf = Vec::new();
            if self
                .inflater
                .as_ref()
                .is_some_and(|i| i.resets_each_message())
            {
                self.inflater = None;
            }
        }
    }

    /// Continues work interrupted by a refused delivery. Returns false while
    /// still blocked.
    pub fn resume(&mut self, out: &mut Out<'_>) -> Result<bool, Fail> {
        if let Some(flags) = self.pending.take() {
            if !self.offer(flags, out) {
                return Ok(false);
            }
        }
        if self.active && self.finishing {
            return self.finish(out);
        }
        if self.active && self.inflate_more {
            self.push_compressed(&[], [0; 4], 0, out)?;
        }
        Ok(!self.blocked())
    }

    /// Takes masked payload bytes starting at payload offset `offset`.
    /// Returns how many were taken (fewer when a delivery is refused).
    pub fn push(
        &mut self,
        src: &[u8],
        mask: [u8; 4],
        offset: u64,
        out: &mut Out<'_>,
    ) -> Result<usize, Fail> {
        if self.compressed {
            return self.push_compressed(src, mask, offset, out);
        }
        let mut done = 0;
        while done < src.len() {
            if !self.flush_full(out) {
                return Ok(done);
            }
            let n = (self.chunk + 1 - self.buf.len()).min(src.len() - done);
            let start = self.buf.len();
            self.buf.extend_from_slice(&src[done..done + n]);
            apply_mask(&mut self.buf[start..], mask, offset + done as u64);
            self.check_text(start)?;
            self.size += n;
            done += n;
        }
        self.flush_full(out);
        Ok(done)
    }

    fn push_compressed(
        &mut self,
        src: &[u8],
        mask: [u8; 4],
        offset: u64,
        out: &mut Out<'_>,
    ) -> Result<usize, Fail> {
        let mut scratch = [0u8; UNMASK_STEP];
        let mut done = 0;
        while done < src.len() || self.inflate_more {
            if !self.flush_full(out) {
                return Ok(done);
            }
            if self.stream_ended {
                // Bytes after the end of the deflate stream carry nothing.
                return Ok(src.len());
            }
            let n = UNMASK_STEP.min(src.len() - done);
            scratch[..n].copy_from_slice(&src[done..done + n]);
            apply_mask(&mut scratch[..n], mask, offset + done as u64);
            done += self.inflate(&scratch[..n])?;
        }
        self.flush_full(out);
        Ok(done)
    }

    /// Inflates `input` into `buf`, bounded by the room left in the piece.
    fn inflate(&mut self, input: &[u8]) -> Result<usize, Fail> {
        let reset_each = self.client_no_context_takeover;
        let inflater = self
            .inflater
            .get_or_insert_with(|| Box::new(Inflater::new(reset_each)));
        let start = self.buf.len();
        let room = (self.chunk + 1 - start).min(MIN_INFLATE_STEP.max(start).max(input.len() * 4));
        self.buf.resize(start + room, 0);
        let result = inflater.inflate(input, &mut self.buf[start..]);
        let r = match result {
            Ok(r) => r,
            Err(_) => {
                self.buf.truncate(start);
                return Err(close_code::INVALID_PAYLOAD);
            }
        };
        self.buf.truncate(start + r.produced);
        self.size += r.produced;
        if self.size > self.max {
            return Err(close_code::TOO_BIG);
        }
        self.check_text(start)?;
        self.inflate_more = r.produced == room && !r.stream_end;
        self.stream_ended |= r.stream_end;
        Ok(r.consumed)
    }

    /// Called once the last frame of the message was read.
    pub fn finish(&mut self, out: &mut Out<'_>) -> Result<bool, Fail> {
        self.finishing = true;
        if self.compressed {
            while (self.tail_used < TAIL.len() && !self.stream_ended) || self.inflate_more {
                if !self.flush_full(out) {
                    return Ok(false);
                }
                let tail = if self.stream_ended {
                    &[][..]
                } else {
                    &TAIL[self.tail_used..]
                };
                self.tail_used += self.inflate(tail)?;
            }
        }
        if !self.flush_full(out) {
            return Ok(false);
        }
        if self.opcode == OP_TEXT && !self.utf8.is_complete() {
            return Err(close_code::INVALID_PAYLOAD);
        }
        Ok(self.offer(FIN | self.piece_opcode(), out))
    }

    fn piece_opcode(&self) -> u8 {
        if self.started {
            0
        } else {
            self.opcode
        }
    }

    fn check_text(&mut self, from: usize) -> Result<(), Fail> {
        if self.opcode == OP_TEXT && self.utf8.feed(&self.buf[from..]).is_err() {
            return Err(close_code::INVALID_PAYLOAD);
        }
        Ok(())
    }

    /// Delivers full non-final pieces while `buf` holds more than a piece.
    fn flush_full(&mut self, out: &mut Out<'_>) -> bool {
        while self.buf.len() > self.chunk {
            if !self.offer(self.piece_opcode(), out) {
                return false;
            }
        }
        true
    }

    /// Offers one piece; on refusal remembers it as pending.
    fn offer(&mut self, flags: u8, out: &mut Out<'_>) -> bool {
        let n = if flags & FIN != 0 {
            self.buf.len()
        } else {
            self.chunk
        };
        if !out(Action::Deliver {
            flags,
            payload: &self.buf[..n],
        }) {
            self.pending = Some(flags);
            return false;
        }
        if flags & FIN != 0 {
            self.end();
        } else {
            self.buf.drain(..n);
            self.started = true;
        }
        true
    }

    fn end(&mut self) {
        self.active = false;
        self.finishing = false;
        self.buf.clear();
        if self.buf.capacity() > RETAIN_CAPACITY {
            self.buf = Vec::new();
        }
        if self.compressed {
            if let Some(inflater) = self.inflater.as_mut() {
                inflater.end_message(self.stream_ended);
            }
        }
    }
}
