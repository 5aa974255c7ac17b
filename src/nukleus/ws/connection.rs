//! [`WsConnection`]: the protocol state machine of one upgraded connection.
//!
//! Input is taken as it comes, in pieces of any size: a partial header is kept
//! (at most 13 bytes, inline), payload bytes are unmasked and validated as
//! soon as they arrive, so invalid UTF-8 fails the connection at the first bad
//! byte even in the middle of a frame. [`WsConnection::feed`] therefore takes
//! all of its input unless the driver refuses a delivery.
//!
//! A whole small message found complete in one input (the common case) is
//! unmasked on the stack and delivered from there: an idle connection without
//! deflate owns no heap buffer.

use super::encode::Outgoing;
use super::extension::DeflateParams;
use super::frame::{
    apply_mask, close_code, encode_frame, is_valid_close_code, parse_header, FrameHeader,
    HeaderParse, FIN, MAX_CONTROL_PAYLOAD, MAX_HEADER_LEN, OP_BINARY, OP_CLOSE, OP_CONTINUATION,
    OP_PING, OP_PONG, OP_TEXT, RSV23,
};
use super::message::{Fail, Incoming, Out};
use super::{Action, WsSettings};

/// Largest message delivered straight from the stack.
const FAST_PATH_MAX: usize = 4096;

/// Where the connection is in its lifetime.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Messages flow both ways.
    Open,
    /// The server sent a close frame and waits for the client's.
    CloseSent,
    /// Over; the driver was told with [`Action::Closed`].
    Closed,
}

/// The frame whose payload is being read.
#[derive(Debug, Clone, Copy)]
struct Frame {
    first: u8,
    mask: [u8; 4],
    len: u64,
    read: u64,
    /// Data read after the server sent its close: skipped.
    discard: bool,
}

/// One WebSocket connection after a successful handshake (server side).
#[derive(Debug)]
pub struct WsConnection {
    chunk: usize,
    max_message: usize,
    max_frame: u64,
    deflate: bool,
    state: State,
    close_code: u16,
    header: [u8; MAX_HEADER_LEN],
    header_len: usize,
    frame: Option<Frame>,
    /// The payload of the control frame being read (at most
    /// `MAX_CONTROL_PAYLOAD` bytes); empty, and unallocated, between them.
    control: Vec<u8>,
    incoming: Incoming,
    outgoing: Outgoing,
}

impl WsConnection {
    /// A connection with `settings`' limits and the negotiated deflate
    /// parameters (`None`: no extension).
    pub fn new(settings: &WsSettings, deflate: Option<DeflateParams>) -> Self {
        let incoming = Incoming::new(
            settings.chunk_size.max(1),
            settings.max_message_size,
            deflate.is_some_and(|d| d.client_no_context_takeover),
        );
        Self {
            chunk: settings.chunk_size.max(1),
            max_message: settings.max_message_size,
            max_frame: settings.max_frame_size as u64,
            deflate: deflate.is_some(),
            state: State::Open,
            close_code: close_code::NORMAL,
            header: [0; MAX_HEADER_LEN],
            header_len: 0,
            frame: None,
            control: Vec::new(),
            incoming,
            outgoing: Outgoing::new(deflate.as_ref()),
        }
    }

    /// Feeds bytes from the client, calling `out` for each action in order.
    /// When `out` returns false for a [`Action::Deliver`], decoding stops and
    /// the same piece is offered again first on the next call. Returns how
    /// many bytes of `input` were used; the caller feeds the rest again later.
    /// Everything is used unless a delivery was refused (after
    /// [`Action::Closed`], input is discarded).
    pub fn feed(&mut self, input: &[u8], out: &mut dyn FnMut(Action<'_>) -> bool) -> usize {
        if self.state == State::Closed {
            return input.len();
        }
        match self.incoming.resume(out) {
            Ok(true) => {}
            Ok(false) => return 0,
            Err(code) => {
                self.fail(code, out);
                return input.len();
            }
        }
        let mut pos = 0;
        while pos < input.len() && self.state != State::Closed {
            let step = if self.frame.is_some() {
                self.read_payload(&input[pos..], out)
            } else {
                self.read_header(&input[pos..], out)
            };
            match step {
                Ok(used) => pos += used,
                Err(code) => self.fail(code, out),
            }
            if self.incoming.blocked() {
                return pos;
            }
        }
        if self.state == State::Closed {
            return input.len();
        }
        pos
    }

    /// Appends an outgoing message (or a piece of one) to `out`. `flags`:
    /// `0x80` FIN | opcode (`0x1` text, `0x2` binary, `0x0` for the following
    /// pieces of a fragmented message; `0x9`/`0xA` send a ping/pong). Server
    /// frames are never masked; messages are compressed when negotiated and
    /// worthwhile (RSV1 on the first frame only).
    pub fn encode_message(&mut self, flags: u8, payload: &[u8], out: &mut Vec<u8>) {
        self.outgoing.encode(flags, payload, out);
    }

    /// Writes the frame header for a data message that goes out
    /// uncompressed (no deflate on this connection) and returns its length;
    /// `None` when the message must go through [`WsConnection::encode_message`].
    pub fn plain_header(
        &self,
        flags: u8,
        len: usize,
        header: &mut [u8; crate::nukleus::ws::frame::MAX_SERVER_HEADER_LEN],
    ) -> Option<usize> {
        self.outgoing.plain_header(flags, len, header)
    }

    /// Starts the closing handshake from the server side (e.g. 1001 on
    /// shutdown, 1008 for a slow consumer): appends the close frame to `out`.
    /// Incoming data is ignored from now on; the client's close reply ends the
    /// connection with [`Action::Closed`] carrying `code`. Does nothing unless
    /// the connection is open. The reason is cut to fit 123 bytes.
    pub fn close(&mut self, code: u16, reason: &str, out: &mut Vec<u8>) {
        if self.state != State::Open {
            return;
        }
        let mut payload = [0u8; MAX_CONTROL_PAYLOAD];
        let len = close_payload(code, reason, &mut payload);
        encode_frame(FIN | OP_CLOSE, &payload[..len], out);
        self.state = State::CloseSent;
        self.close_code = code;
        self.incoming.abandon();
        if let Some(f) = self.frame.as_mut() {
            f.discard = true;
        }
    }

    /// Whether the connection is over (closing handshake done, or failed).
    pub fn is_closed(&self) -> bool {
        self.state == State::Closed
    }

    /// Whether messages may still be sent (no close frame sent or received).
    pub fn is_open(&self) -> bool {
        self.state == State::Open
    }

    /// Frees the reassembly buffer and any zlib state that holds no needed
    /// context, unless a message is in progress. For a driver to call on
    /// connections gone idle; it costs a reallocation on the next message.
    pub fn release_memory(&mut self) {
        self.incoming.release_memory();
        self.outgoing.release_memory();
        if self.frame.is_none() {
            self.control = Vec::new();
        }
    }

    fn read_header(&mut self, input: &[u8], out: &mut Out<'_>) -> Result<usize, Fail> {
        let have = self.header_len;
        let (header, used) = if have == 0 {
            match parse_header(input) {
                HeaderParse::Incomplete => {
                    self.header[..input.len()].copy_from_slice(input);
                    self.header_len = input.len();
                    return Ok(input.len());
                }
                HeaderParse::BadLength => return Err(close_code::PROTOCOL_ERROR),
                HeaderParse::Header(h, n) => (h, n),
            }
        } else {
            let take = (MAX_HEADER_LEN - have).min(input.len());
            self.header[have..have + take].copy_from_slice(&input[..take]);
            match parse_header(&self.header[..have + take]) {
                HeaderParse::Incomplete => {
                    self.header_len = have + take;
                    return Ok(take);
                }
                HeaderParse::BadLength => return Err(close_code::PROTOCOL_ERROR),
                HeaderParse::Header(h, n) => {
                    self.header_len = 0;
                    (h, n - have)
                }
            }
        };
        let extra = self.start_frame(header, &input[used..], out)?;
        Ok(used + extra)
    }

    /// Checks a new frame's header and sets up reading its payload. Returns
    /// payload bytes of `rest` already used (the fast path).
    fn start_frame(
        &mut self,
        h: FrameHeader,
        rest: &[u8],
        out: &mut Out<'_>,
    ) -> Result<usize, Fail> {
        let mask = h.mask.ok_or(close_code::PROTOCOL_ERROR)?;
        let op = h.opcode();
        let discard = self.state != State::Open;
        if h.first & RSV23 != 0 {
            return Err(close_code::PROTOCOL_ERROR);
        }
        if h.is_control() {
            let known = matches!(op, OP_CLOSE | OP_PING | OP_PONG);
            if !known || !h.fin() || h.rsv1() || h.len > MAX_CONTROL_PAYLOAD as u64 {
                return Err(close_code::PROTOCOL_ERROR);
            }
        } else if !discard {
            self.check_data_frame(&h)?;
            if op != OP_CONTINUATION {
                if let Some(used) = self.try_fast_path(&h, mask, rest, out)? {
                    return Ok(used);
                }
                self.incoming.begin(op, h.rsv1());
            }
        }
        self.frame = Some(Frame {
            first: h.first,
            mask,
            len: h.len,
            read: 0,
            discard,
        });
        self.control.clear();
        if h.len == 0 {
            self.end_frame(out)?;
        }
        Ok(0)
    }

    fn check_data_frame(&self, h: &FrameHeader) -> Result<(), Fail> {
        let active = self.incoming.active;
        match h.opcode() {
            OP_CONTINUATION if !active || h.rsv1() => return Err(close_code::PROTOCOL_ERROR),
            OP_TEXT | OP_BINARY if active || (h.rsv1() && !self.deflate) => {
                return Err(close_code::PROTOCOL_ERROR);
            }
            OP_CONTINUATION | OP_TEXT | OP_BINARY => {}
            _ => return Err(close_code::PROTOCOL_ERROR),
        }
        if h.len > self.max_frame {
            return Err(close_code::TOO_BIG);
        }
        let compressed = if h.opcode() == OP_CONTINUATION {
            self.incoming.compressed()
        } else {
            h.rsv1()
        };
        let size = if h.opcode() == OP_CONTINUATION {
            self.incoming.size as u64
        } else {
            0
        };
        if !compressed && size + h.len > self.max_message as u64 {
            return Err(close_code::TOO_BIG);
        }
        Ok(())
    }

    /// Delivers a whole small uncompressed message found complete in `rest`
    /// from a stack buffer.
    fn try_fast_path(
        &mut self,
        h: &FrameHeader,
        mask: [u8; 4],
        rest: &[u8],
        out: &mut Out<'_>,
    ) -> Result<Option<usize>, Fail> {
        let len = h.len as usize;
        if !h.fin() || h.rsv1() || h.len > FAST_PATH_MAX.min(self.chunk) as u64 || rest.len() < len
        {
            return Ok(None);
        }
        let mut stack = [0u8; FAST_PATH_MAX];
        let payload = &mut stack[..len];
        payload.copy_from_slice(&rest[..len]);
        apply_mask(payload, mask, 0);
        if h.opcode() == OP_TEXT && std::str::from_utf8(payload).is_err() {
            return Err(close_code::INVALID_PAYLOAD);
        }
        let flags = FIN | h.opcode();
        if !out(Action::Deliver { flags, payload }) {
            self.incoming.stash_refused(h.opcode(), payload);
        }
        Ok(Some(len))
    }

    fn read_payload(&mut self, input: &[u8], out: &mut Out<'_>) -> Result<usize, Fail> {
        let Some(mut f) = self.frame else {
            return Ok(0);
        };
        let avail = (f.len - f.read).min(input.len() as u64) as usize;
        let src = &input[..avail];
        let used = if f.first & 0x08 != 0 {
            let at = self.control.len();
            self.control.extend_from_slice(src);
            apply_mask(&mut self.control[at..], f.mask, f.read);
            avail
        } else if f.discard {
            avail
        } else {
            self.incoming.push(src, f.mask, f.read, out)?
        };
        f.read += used as u64;
        self.frame = Some(f);
        if f.read == f.len {
            self.end_frame(out)?;
        }
        Ok(used)
    }

    fn end_frame(&mut self, out: &mut Out<'_>) -> Result<(), Fail> {
        let Some(f) = self.frame.take() else {
            return Ok(());
        };
        if f.first & 0x08 != 0 {
            return self.handle_control(f.first & 0x0F, out);
        }
        if f.first & FIN != 0 && !f.discard {
            if self.incoming.blocked() {
                self.incoming.mark_finishing();
            } else {
                self.incoming.finish(out)?;
            }
        }
        Ok(())
    }

    fn handle_control(&mut self, op: u8, out: &mut Out<'_>) -> Result<(), Fail> {
        let payload = &self.control[..];
        match op {
            OP_PING if self.state == State::Open => {
                let mut pong = [0u8; 2 + MAX_CONTROL_PAYLOAD];
                pong[0] = FIN | OP_PONG;
                pong[1] = payload.len() as u8;
                pong[2..2 + payload.len()].copy_from_slice(payload);
                out(Action::Send(&pong[..2 + payload.len()]));
            }
            OP_CLOSE => {
                let code = match payload {
                    [] => close_code::NO_STATUS,
                    [_] => return Err(close_code::PROTOCOL_ERROR),
                    [hi, lo, reason @ ..] => {
                        let code = u16::from_be_bytes([*hi, *lo]);
                        if !is_valid_close_code(code) {
                            return Err(close_code::PROTOCOL_ERROR);
                        }
                        if std::str::from_utf8(reason).is_err() {
                            return Err(close_code::INVALID_PAYLOAD);
                        }
                        code
                    }
                };
                if self.state == State::Open {
                    // Echo the status code, as RFC 6455 5.5.1 suggests.
                    let echo = code.to_be_bytes();
                    let body: &[u8] = if payload.is_empty() { &[] } else { &echo };
                    let reply = [FIN | OP_CLOSE, body.len() as u8, echo[0], echo[1]];
                    out(Action::Send(&reply[..2 + body.len()]));
                    self.finish_closed(code, out);
                } else {
                    let code = self.close_code;
                    self.finish_closed(code, out);
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// Fails the connection: a close frame with `code` (unless one was sent
    /// already), then [`Action::Closed`].
    fn fail(&mut self, code: u16, out: &mut Out<'_>) {
        if self.state == State::Open {
            let frame = [FIN | OP_CLOSE, 2, (code >> 8) as u8, code as u8];
            out(Action::Send(&frame));
        }
        if self.state != State::Closed {
            self.finish_closed(code, out);
        }
    }

    fn finish_closed(&mut self, code: u16, out: &mut Out<'_>) {
        self.state = State::Closed;
        self.frame = None;
        self.incoming.abandon();
        self.incoming.inflater = None;
        self.outgoing = Outgoing::default();
        out(Action::Closed { code });
    }
}

/// Fills a close payload: the code (when it may be sent) and the reason cut
/// at a character boundary to fit 123 bytes. Returns its length.
fn close_payload(code: u16, reason: &str, dst: &mut [u8; MAX_CONTROL_PAYLOAD]) -> usize {
    if !is_valid_close_code(code) {
        return 0;
    }
    dst[..2].copy_from_slice(&code.to_be_bytes());
    let mut cut = reason.len().min(MAX_CONTROL_PAYLOAD - 2);
    while !reason.is_char_boundary(cut) {
        cut -= 1;
    }
    dst[2..2 + cut].copy_from_slice(&reason.as_bytes()[..cut]);
    2 + cut
}
