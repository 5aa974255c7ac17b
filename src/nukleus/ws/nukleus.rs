//! The ws nukleus: turns tcp streams into WebSocket message streams for the
//! handlers bound to a path, and the handlers' messages back into frames.
//!
//! ```text
//!  tcp --BEGIN/DATA--> ws (handshake, decode) --BEGIN/DATA(flags)--> handler
//!  tcp <--DATA-------- ws (encode)            <--DATA(flags)-------- handler
//! ```
//!
//! Credit passes through: what tcp grants for the reply to a client becomes,
//! less what ws itself still has to send, the handler's credit, with a
//! padding of the largest frame header. So ws never queues handler data, and
//! a slow client shows up at the handler as missing credit.
//!
//! BIND (ws): `string source, i64 source ref, string handler, string
//! sub-protocol` as in seed 000 (null: any sub-protocol), then our extension
//! `string path` (null: any path), `i32 max message size` (0: the default)
//! and `i16 count, string origin * count` (the allowed `Origin`s; none: any).
//! Each extension field may be left off from the end. Requests for a path no
//! binding serves are answered 404 before any upgrade; a browser's request
//! from an origin the binding does not allow is answered 403.
//!
//! Choosing a binding for an upgrade on a path: the client's sub-protocols
//! in its order of preference, each matched exactly against the bindings;
//! then a binding for any sub-protocol (which answers none). The BEGIN
//! towards the handler is laid out in [`super::begin`].

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{WsConnection, WsSettings};
use crate::nukleus::command::{self, Response};
use crate::nukleus::frame::{self, FrameError, Reader, StreamId, StreamIds, Writer};
use crate::nukleus::metrics::Metric;
use crate::nukleus::plumbing::{
    drain, end_removed, reset_as_frame, Frames, Neighbours, Pending, Plumbing, Side, Target,
};
use crate::nukleus::runner::{Agent, Signals};
use crate::nukleus::slab::Slab;
use crate::nukleus::{IdMap, StreamMap};

/// Largest header of a server frame: the padding handlers count per DATA.
pub const FRAME_PADDING: i32 = 10;
const TIMER_TICK: Duration = Duration::from_millis(100);
pub(super) const CLOSE_GRACE: Duration = Duration::from_secs(5);

/// Settings of the ws nukleus.
#[derive(Debug, Clone)]
pub struct WsNukleusSettings {
    /// Engine limits for bindings that do not set their own message size.
    pub engine: WsSettings,
    /// Credit granted to tcp for a client's bytes not yet decoded.
    pub input_window: usize,
    /// Time allowed for the upgrade request.
    pub handshake_timeout: Duration,
    /// Connections without input for this long are closed (zero: never).
    pub idle_timeout: Duration,
    /// Connections beyond this get HTTP 503 instead of an upgrade.
    pub max_connections: usize,
    /// Streams file capacity.
    pub ring_capacity: usize,
    /// Whether the node takes new clients (`/healthz` answers 503 once it
    /// is false).
    pub serving: Arc<AtomicBool>,
}

/// A decoded ws BIND.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WsBind {
    /// The nukleus the tcp streams come from.
    pub source: String,
    /// The source's ref for those streams (tcp BOUND ref).
    pub source_ref: i64,
    /// The nukleus that gets the WebSocket streams.
    pub handler: String,
    /// The sub-protocol to select, if any.
    pub protocol: Option<String>,
    /// The request path served (None: any).
    pub path: Option<String>,
    /// Largest message for this binding (0: the default).
    pub max_message_size: i32,
    /// Origins allowed to connect (empty: any).
    pub origins: Vec<String>,
}

impl WsBind {
    /// The command body after the correlation id.
    pub fn encode(&self) -> Vec<u8> {
        let mut body = Vec::new();
        body.put_string(Some(&self.source));
        body.put_i64(self.source_ref);
        body.put_string(Some(&self.handler));
        body.put_string(self.protocol.as_deref());
        body.put_string(self.path.as_deref());
        body.put_i32(self.max_message_size);
        if !self.origins.is_empty() {
            body.put_i16(self.origins.len().min(i16::MAX as usize) as i16);
            for origin in self.origins.iter().take(i16::MAX as usize) {
                body.put_string(Some(origin));
            }
        }
        body
    }

    /// Decodes the command body after the correlation id.
    pub fn decode(body: &[u8]) -> Result<WsBind, FrameError> {
        let mut r = Reader::new(body);
        let source = r.string()?.ok_or(FrameError::BadString)?.to_string();
        let source_ref = r.i64()?;
        let handler = r.string()?.ok_or(FrameError::BadString)?.to_string();
        let protocol = r.string()?.map(str::to_string);
        let path = if r.is_empty() {
            None
        } else {
            r.string()?.map(str::to_string)
        };
        let max_message_size = if r.is_empty() { 0 } else { r.i32()? };
        let count = if r.is_empty() { 0 } else { r.i16()?.max(0) };
        let origins = (0..count)
            .map(|_| Ok(r.string()?.ok_or(FrameError::BadString)?.to_string()))
            .collect::<Result<Vec<_>, FrameError>>()?;
        Ok(WsBind {
            source,
            source_ref,
            handler,
            protocol,
            path,
            max_message_size,
            origins,
        })
    }

    /// Whether a request with this `Origin` may use the binding. Requests
    /// without one (non-browser clients, which could send any origin
    /// anyway) are allowed.
    pub fn allows_origin(&self, origin: Option<&str>) -> bool {
        match origin {
            Some(origin) if !self.origins.is_empty() => {
                self.origins.iter().any(|o| o.eq_ignore_ascii_case(origin))
            }
            _ => true,
        }
    }
}

pub(super) struct Binding {
    pub(super) bind: WsBind,
    pub(super) settings: WsSettings,
}

pub(super) enum Phase {
    Handshake {
        buf: Vec<u8>,
        since: Instant,
    },
    /// Upgrade request accepted here; waiting for the handler to take the
    /// stream (its reply BEGIN) before answering 101, or to refuse it (RESET)
    /// for a 503.
    Accepting {
        ws: Box<WsConnection>,
        accept: Vec<u8>,
        since: Instant,
    },
    Open(Box<WsConnection>),
    /// Rejected or finished: waiting for tcp to go away.
    Done,
}

/// The stream towards the client (our reply to tcp).
pub(super) struct ClientOut {
    pub(super) target: usize,
    pub(super) stream: StreamId,
    /// Credit tcp gave us.
    pub(super) credit: i64,
    /// Bytes waiting for credit or ring room.
    pub(super) pending: Vec<u8>,
    pub(super) ended: bool,
    pub(super) end_when_flushed: bool,
}

impl ClientOut {
    pub(super) fn new(target: usize, stream: StreamId) -> Self {
        ClientOut {
            target,
            stream,
            credit: 0,
            pending: Vec::new(),
            ended: false,
            end_when_flushed: false,
        }
    }

    pub(super) fn send(&mut self, targets: &mut [Target], bytes: &[u8]) {
        self.send_parts(targets, &[], bytes);
    }

    /// Sends `head` then `body` as one DATA frame when credit and ring allow,
    /// else queues both.
    pub(super) fn send_parts(&mut self, targets: &mut [Target], head: &[u8], body: &[u8]) {
        if self.ended || self.end_when_flushed {
            return;
        }
        let len = (head.len() + body.len()) as i64;
        if self.pending.is_empty()
            && self.credit >= len
            && targets[self.target].write(frame::DATA, &[&self.stream.bytes(), head, body])
        {
            self.credit -= len;
            return;
        }
        self.pending.extend_from_slice(head);
        self.pending.extend_from_slice(body);
    }

    /// Sends what waited; returns true when something went.
    pub(super) fn flush(&mut self, targets: &mut [Target]) -> bool {
        let n = (self.credit.max(0) as usize)
            .min(self.pending.len())
            .min(targets[self.target].ring().max_body() - 8);
        let mut sent = false;
        if n > 0
            && targets[self.target].write(frame::DATA, &[&self.stream.bytes(), &self.pending[..n]])
        {
            self.credit -= n as i64;
            self.pending.drain(..n);
            if self.pending.is_empty() && self.pending.capacity() > KEEP_BUFFER {
                self.pending = Vec::new();
            }
            sent = true;
        }
        if self.end_when_flushed && self.pending.is_empty() {
            self.end_when_flushed = false;
            self.end(targets);
        }
        sent
    }

    /// Ends the stream after what is pending.
    pub(super) fn end(&mut self, targets: &mut [Target]) {
        if self.ended {
            return;
        }
        if !self.pending.is_empty() {
            self.end_when_flushed = true;
            return;
        }
        self.ended = targets[self.target].write(frame::END, &[&self.stream.bytes()]);
        self.end_when_flushed = !self.ended;
    }

    pub(super) fn reset(&mut self, targets: &mut [Target]) {
        if !self.ended {
            self.ended = true;
            targets[self.target].write(frame::RESET, &[&self.stream.bytes()]);
        }
    }
}

/// The stream towards the handler (our initial stream).
pub(super) struct HandlerOut {
    /// A delivery was refused by a full ring (not by missing credit).
    pub(super) blocked: bool,
    pub(super) target: usize,
    pub(super) stream: Option<StreamId>,
    pub(super) credit: i64,
    pub(super) padding: i64,
    pub(super) ended: bool,
}

impl HandlerOut {
    pub(super) fn new(target: usize) -> Self {
        HandlerOut {
            blocked: false,
            target,
            stream: None,
            credit: 0,
            padding: 0,
            ended: false,
        }
    }

    pub(super) fn deliver(&mut self, targets: &mut [Target], flags: u8, payload: &[u8]) -> bool {
        let Some(stream) = self.stream else {
            return false;
        };
        let cost = payload.len() as i64 + 1 + self.padding;
        if self.ended || self.credit < cost {
            return false;
        }
        if !targets[self.target].write(frame::DATA, &[&stream.bytes(), &[flags], payload]) {
            // The ring is full: not the client's doing; retried next round.
            self.blocked = true;
            return false;
        }
        self.credit -= cost;
        true
    }

    pub(super) fn end(&mut self, targets: &mut [Target], code: u16) {
        self.end_with(targets, code, "");
    }

    /// Ends the stream with a close code and reason (`i16 code, string
    /// reason` after the stream id).
    pub(super) fn end_with(&mut self, targets: &mut [Target], code: u16, reason: &str) {
        if let (Some(stream), false) = (self.stream, self.ended) {
            self.ended = true;
            let mut tail = (code as i16).to_le_bytes().to_vec();
            tail.put_string(Some(reason));
            targets[self.target].write(frame::END, &[&stream.bytes(), &tail]);
        }
    }
}

/// One client connection.
pub(super) struct Conn {
    pub(super) tcp_source: usize,
    pub(super) tcp_in: StreamId,
    /// Credit we gave tcp for `tcp_in` that it has not used yet.
    pub(super) tcp_granted: i64,
    /// Client bytes not yet decoded.
    pub(super) input: Vec<u8>,
    pub(super) client: ClientOut,
    pub(super) phase: Phase,
    pub(super) remote: Option<std::net::SocketAddr>,
    pub(super) handler: HandlerOut,
    pub(super) handler_in: Option<(usize, StreamId)>,
    /// Credit we gave the handler for `handler_in` not used yet.
    pub(super) handler_granted: i64,
    pub(super) last_input: Instant,
    /// Buffers were released since the last input.
    pub(super) released: bool,
    pub(super) closing_since: Option<Instant>,
    /// Bytes for the client held back until the handler has answered
    /// everything received before the connection ended (a close frame).
    pub(super) held_close: Option<Vec<u8>>,
    pub(super) touched: bool,
    /// permessage-deflate was agreed. A copy of what the boxed
    /// `WsConnection` knows, kept here so that a fan-out can decide per
    /// connection without reaching into the box.
    pub(super) compresses: bool,
}

impl Conn {
    /// Answers the upgrade request with an HTTP error and ends the
    /// connection (the client then closes it, or the grace period does).
    pub(super) fn refuse(&mut self, targets: &mut [Target], response: &[u8], now: Instant) {
        self.client.send(targets, response);
        self.client.end(targets);
        self.phase = Phase::Done;
        self.closing_since.get_or_insert(now);
    }
}

/// What the ws nukleus counts (labels `ws.*`).
pub(super) struct WsMetrics {
    pub(super) connections: Metric,
    pub(super) upgrades: Metric,
    pub(super) rejected: Metric,
    pub(super) http: Metric,
    /// MULTICAST frames from handlers.
    pub(super) multicasts: Metric,
    /// Client streams served through one MULTICAST to tcp.
    pub(super) multicast_streams: Metric,
}

/// The ws nukleus.
pub struct WsNukleus {
    pub(super) plumbing: Plumbing,
    pub(super) settings: WsNukleusSettings,
    pub(super) bindings: IdMap<Binding>,
    pub(super) next_ref: i64,
    pub(super) conns: Slab<Conn>,
    pub(super) by_tcp_in: StreamMap<usize>,
    pub(super) by_tcp_out: IdMap<usize>,
    pub(super) by_handler_out: IdMap<usize>,
    pub(super) by_handler_in: StreamMap<usize>,
    pub(super) initial_ids: StreamIds,
    pub(super) reply_ids: StreamIds,
    pub(super) encoded: Vec<u8>,
    pub(super) touched: Vec<usize>,
    /// Bytes for the client produced while decoding, sent after the feed.
    pub(super) held: Vec<u8>,
    /// The tcp MULTICAST being built, and the connections it lists.
    pub(super) multicast: crate::nukleus::frame::MulticastBody,
    pub(super) multicast_keys: Vec<usize>,
    /// Connections known (all phases), for the node connection limit.
    pub(super) conns_len: usize,
    pub(super) metrics: WsMetrics,
    pub(super) commands: Vec<Pending>,
    pub(super) next_tick: Instant,
    /// The time of the current round.
    pub(super) now: Instant,
}

/// Input and output buffers up to this size are kept between messages of
/// a busy connection; a connection quiet for a second gives them back.
pub(super) const KEEP_BUFFER: usize = 64 * 1024;

impl WsNukleus {
    /// Creates the nukleus; `signals` must already hold the signal of the
    /// thread that will run it, under "ws".
    pub fn new(
        run_dir: &std::path::Path,
        settings: WsNukleusSettings,
        signals: Arc<Signals>,
    ) -> std::io::Result<Self> {
        let plumbing = Plumbing::create(run_dir, "ws", settings.ring_capacity, signals)?;
        let metrics = WsMetrics {
            connections: Metric::new(&plumbing.counters, "ws.connections"),
            upgrades: Metric::new(&plumbing.counters, "ws.upgrades"),
            rejected: Metric::new(&plumbing.counters, "ws.rejected"),
            http: Metric::new(&plumbing.counters, "ws.http_requests"),
            multicasts: Metric::new(&plumbing.counters, "ws.multicasts"),
            multicast_streams: Metric::new(&plumbing.counters, "ws.multicast_streams"),
        };
        Ok(WsNukleus {
            plumbing,
            settings,
            bindings: IdMap::default(),
            next_ref: 1,
            conns: Slab::default(),
            by_tcp_in: StreamMap::default(),
            by_tcp_out: IdMap::default(),
            by_handler_out: IdMap::default(),
            by_handler_in: StreamMap::default(),
            initial_ids: StreamIds::initial(),
            reply_ids: StreamIds::reply(),
            encoded: Vec::new(),
            touched: Vec::new(),
            held: Vec::new(),
            multicast: Default::default(),
            multicast_keys: Vec::new(),
            conns_len: 0,
            metrics,
            commands: Vec::new(),
            next_tick: Instant::now(),
            now: Instant::now(),
        })
    }

    fn on_command(&mut self, pending: Pending) {
        let body = pending.args.as_slice();
        let correlation = pending.correlation;
        let response = match pending.type_id {
            command::BIND => self.bind(correlation, body),
            command::UNBIND => Reader::new(body)
                .i64()
                .ok()
                .and_then(|reference| self.bindings.remove(&reference))
                .map(|_| Response::ok(command::UNBIND, correlation)),
            // The ws nukleus serves WebSocket clients; it does not originate
            // WebSocket connections, so PREPARE is refused.
            _ => None,
        };
        self.plumbing
            .respond(response.unwrap_or(Response::error(correlation)));
    }

    fn bind(&mut self, correlation: i64, body: &[u8]) -> Option<Response> {
        let bind = WsBind::decode(body).ok()?;
        self.plumbing.target_index(&bind.handler)?;
        self.plumbing.source_index(&bind.source)?;
        let mut settings = self.settings.engine.clone();
        if bind.max_message_size > 0 {
            let max = bind.max_message_size as usize;
            settings.max_message_size = max;
            settings.max_frame_size = max;
        }
        let reference = self.next_ref;
        self.next_ref += 1;
        self.bindings.insert(reference, Binding { bind, settings });
        Some(Response::with_ref(command::BIND, correlation, reference))
    }
}

impl Frames for WsNukleus {
    fn plumbing(&self) -> &Plumbing {
        &self.plumbing
    }

    fn on_source_frame(&mut self, source: usize, frame: crate::nukleus::frame::Frame<'_>) {
        self.on_source(source, frame, self.now);
    }

    fn on_throttle_frame(&mut self, _target: usize, frame: crate::nukleus::frame::Frame<'_>) {
        self.on_throttle(frame, self.now);
    }
}

impl Neighbours for WsNukleus {
    fn plumbing_mut(&mut self) -> &mut Plumbing {
        &mut self.plumbing
    }

    fn streams_via(&self, side: Side, index: usize) -> Vec<StreamId> {
        let mut streams = Vec::new();
        for conn in self.conns.values() {
            match side {
                Side::Target => {
                    if conn.client.target == index && !conn.client.ended {
                        streams.push(conn.client.stream);
                    }
                    if let (true, Some(stream), false) = (
                        conn.handler.target == index,
                        conn.handler.stream,
                        conn.handler.ended,
                    ) {
                        streams.push(stream);
                    }
                }
                Side::Source => {
                    if conn.tcp_source == index {
                        streams.push(conn.tcp_in);
                    }
                    if let Some((source, stream)) = conn.handler_in {
                        if source == index {
                            streams.push(stream);
                        }
                    }
                }
            }
        }
        streams
    }

    fn on_neighbour_reset(&mut self, side: Side, index: usize, stream: StreamId) {
        reset_as_frame(self, side, index, stream);
    }
}

impl Agent for WsNukleus {
    fn name(&self) -> &str {
        "ws"
    }

    fn do_work(&mut self, now: Instant) -> usize {
        let mut work = self.plumbing.poll_commands(&mut self.commands);
        for pending in std::mem::take(&mut self.commands) {
            self.on_command(pending);
        }
        self.now = now;
        work += end_removed(self);
        work += drain(self);
        work += self.retry_blocked();
        self.regrant();
        if now >= self.next_tick {
            self.next_tick = now + TIMER_TICK;
            self.check_timers(now);
        }
        self.plumbing.notify_peers();
        work
    }

    fn deadline(&self) -> Option<Instant> {
        Some(self.next_tick)
    }

    fn on_idle(&mut self) {
        self.plumbing.release_idle_rings();
    }

    fn on_close(&mut self) {
        self.plumbing.remove_files();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bind(origins: &[&str]) -> WsBind {
        WsBind {
            source: "tcp".into(),
            source_ref: 7,
            handler: "webrocket".into(),
            protocol: None,
            path: Some("/chat".into()),
            max_message_size: 0,
            origins: origins.iter().map(|o| o.to_string()).collect(),
        }
    }

    #[test]
    fn bind_layout_byte_for_byte() {
        let head = [
            &b"\x03tcp"[..],
            &7i64.to_le_bytes(),
            b"\x09webrocket",
            b"\xff",
            b"\x05/chat",
            &0i32.to_le_bytes(),
        ]
        .concat();
        assert_eq!(bind(&[]).encode(), head);
        let with = bind(&["https://a.example", "http://b"]);
        let bytes = with.encode();
        assert_eq!(
            bytes,
            [
                &head[..],
                &2i16.to_le_bytes(),
                b"\x11https://a.example",
                b"\x08http://b"
            ]
            .concat()
        );
        assert_eq!(WsBind::decode(&bytes), Ok(with));
    }

    #[test]
    fn older_binds_without_extensions_decode() {
        let full = bind(&[]).encode();
        // Seed 000's fields only: up to the sub-protocol.
        let seed = &full[..full.len() - 6 - 4];
        let decoded = WsBind::decode(seed).unwrap();
        assert_eq!(decoded.path, None);
        assert_eq!(decoded.max_message_size, 0);
        assert!(decoded.origins.is_empty());
        assert!(WsBind::decode(&[&full[..], &[1, 0, 0xff]].concat()).is_err());
    }

    #[test]
    fn origins_are_checked_only_when_listed_and_sent() {
        assert!(bind(&[]).allows_origin(Some("https://evil.example")));
        let strict = bind(&["https://a.example"]);
        assert!(strict.allows_origin(Some("https://a.example")));
        assert!(strict.allows_origin(Some("HTTPS://A.EXAMPLE")));
        assert!(!strict.allows_origin(Some("https://evil.example")));
        assert!(!strict.allows_origin(Some("null")));
        assert!(strict.allows_origin(None));
    }
}
