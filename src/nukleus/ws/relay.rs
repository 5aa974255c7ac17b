//! The ws nukleus's stream handling: tcp streams in, handler streams out, and
//! back.

use std::time::Instant;

use std::sync::atomic::Ordering;

use super::begin::{WsBegin, MAX_TEXT16};
use super::handshake::{self, HandshakeOutcome};
use super::http;
use super::nukleus::{
    Binding, ClientOut, Conn, HandlerOut, Phase, WsNukleus, WsNukleusSettings, FRAME_PADDING,
};
use super::{extension, Action, WsConnection};
use crate::nukleus::frame::{self, Frame, Reader, StreamId};

impl WsNukleus {
    pub(super) fn on_source(&mut self, source: usize, frame: Frame<'_>, now: Instant) {
        if let Frame::Multicast { streams, payload } = frame {
            self.on_handler_multicast(source, streams, payload);
            return;
        }
        let stream = frame.stream();
        if let Some(&key) = self.by_tcp_in.get(&(source, stream)) {
            match frame {
                Frame::Data { payload, .. } => self.on_tcp_data(key, payload, now),
                Frame::End { .. } => self.finish(key, false),
                Frame::Reset { .. } => self.finish(key, true),
                _ => {}
            }
            return;
        }
        if let Some(&key) = self.by_handler_in.get(&(source, stream)) {
            match frame {
                Frame::Data { payload, .. } => self.on_handler_data(key, payload),
                Frame::End { extension, .. } => self.on_handler_end(key, extension, now),
                Frame::Reset { .. } => self.finish(key, true),
                _ => {}
            }
            return;
        }
        match frame {
            Frame::Begin {
                stream,
                reference,
                extension,
            } if stream.is_initial() => {
                self.on_tcp_begin(source, stream, reference, extension, now)
            }
            Frame::Begin {
                stream, reference, ..
            } => self.on_handler_begin(source, stream, reference),
            Frame::Reset { .. } | Frame::Window { .. } => {}
            _ => {
                self.plumbing.sources[source].throttle(frame::RESET, &[&stream.bytes()]);
            }
        }
    }

    fn on_tcp_begin(
        &mut self,
        source: usize,
        stream: StreamId,
        reference: i64,
        extension: &[u8],
        now: Instant,
    ) {
        let name = &self.plumbing.sources[source].name;
        let known = self
            .bindings
            .values()
            .any(|b| b.bind.source_ref == reference && &b.bind.source == name);
        let target = self.plumbing.target_index(name);
        let (true, Some(target)) = (known, target) else {
            self.plumbing.sources[source].throttle(frame::RESET, &[&stream.bytes()]);
            return;
        };
        let mut r = Reader::new(extension);
        let _local = r.socket_addr();
        let remote = r.socket_addr().ok();
        let reply = self.reply_ids.next_id();
        self.plumbing.targets[target].write(frame::BEGIN, &[&frame::begin_head(reply, stream.0)]);
        let window = self.settings.engine.max_handshake_size as i64;
        let conn = Conn {
            tcp_source: source,
            tcp_in: stream,
            tcp_granted: window,
            input: Vec::new(),
            client: ClientOut::new(target, reply),
            phase: Phase::Handshake {
                buf: Vec::new(),
                since: now,
            },
            remote,
            handler: HandlerOut::new(0),
            handler_in: None,
            handler_granted: 0,
            last_input: now,
            released: true,
            closing_since: None,
            held_close: None,
            touched: false,
            compresses: false,
        };
        let key = self.conns.insert(conn);
        self.conns_len += 1;
        self.metrics.connections.set(self.conns_len as u64);
        self.by_tcp_in.insert((source, stream), key);
        self.by_tcp_out.insert(reply.0, key);
        let body = frame::window_body(stream, window as i32, 0);
        self.plumbing.sources[source].throttle(frame::WINDOW, &[&body]);
    }

    fn on_tcp_data(&mut self, key: usize, payload: &[u8], now: Instant) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        conn.tcp_granted -= payload.len() as i64;
        conn.last_input = now;
        conn.released = false;
        match &mut conn.phase {
            Phase::Handshake { buf, .. } => {
                buf.extend_from_slice(payload);
                self.handshake(key, now);
            }
            Phase::Open(_) => self.decode(key, Some(payload)),
            Phase::Accepting { .. } => conn.input.extend_from_slice(payload),
            Phase::Done => {}
        }
        self.touch(key);
    }

    fn handshake(&mut self, key: usize, now: Instant) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        let Phase::Handshake { buf, .. } = &mut conn.phase else {
            return;
        };
        match handshake::parse_upgrade(buf, &self.settings.engine) {
            HandshakeOutcome::Incomplete
                if buf.len() >= self.settings.engine.max_handshake_size =>
            {
                let response = handshake::error_response(
                    handshake::status::HEADERS_TOO_LARGE,
                    "Request Header Fields Too Large",
                );
                conn.refuse(&mut self.plumbing.targets, &response, now);
                self.metrics.rejected.add(1);
            }
            HandshakeOutcome::Incomplete => {}
            HandshakeOutcome::Reject { response, .. } => {
                conn.refuse(&mut self.plumbing.targets, &response, now);
                self.metrics.rejected.add(1);
            }
            HandshakeOutcome::Http(request) => {
                let source = &self.plumbing.sources[conn.tcp_source].name;
                let response = plain_http(&self.bindings, source, &self.settings, &request);
                conn.refuse(&mut self.plumbing.targets, &response, now);
                self.metrics.http.add(1);
            }
            HandshakeOutcome::Request { request, consumed } => {
                let rest = buf[consumed..].to_vec();
                self.upgrade(key, request, rest, now);
            }
        }
    }

    fn upgrade(
        &mut self,
        key: usize,
        request: handshake::UpgradeRequest,
        rest: Vec<u8>,
        now: Instant,
    ) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        let source = &self.plumbing.sources[conn.tcp_source].name;
        let on_path = |b: &&super::nukleus::Binding| {
            &b.bind.source == source && b.bind.path.as_deref().is_none_or(|p| p == request.path)
        };
        let chosen = choose(&self.bindings, &request.protocols, on_path);
        let targets = &mut self.plumbing.targets;
        let too_long = |text: &Option<String>| text.as_ref().is_some_and(|t| t.len() > MAX_TEXT16);
        if request.path.len() > frame::MAX_STRING || too_long(&request.query) {
            // Handlers get the path in a frame string; it could not be named.
            conn.refuse(
                targets,
                &handshake::error_response(handshake::status::URI_TOO_LONG, "URI Too Long"),
                now,
            );
            self.metrics.rejected.add(1);
            return;
        }
        if self.conns_len > self.settings.max_connections {
            conn.refuse(
                targets,
                &handshake::error_response(
                    handshake::status::SERVICE_UNAVAILABLE,
                    "Too many connections",
                ),
                now,
            );
            self.metrics.rejected.add(1);
            return;
        }
        let Some((&reference, binding)) = chosen else {
            let path_known = self.bindings.values().any(|b| on_path(&b));
            let (status, reason) = if path_known {
                (handshake::status::BAD_REQUEST, "Unsupported sub-protocol")
            } else {
                (handshake::status::NOT_FOUND, "Not Found")
            };
            conn.refuse(targets, &handshake::error_response(status, reason), now);
            self.metrics.rejected.add(1);
            return;
        };
        if !binding.bind.allows_origin(request.origin.as_deref()) {
            conn.refuse(
                targets,
                &handshake::error_response(handshake::status::FORBIDDEN, "Origin not allowed"),
                now,
            );
            self.metrics.rejected.add(1);
            return;
        }
        let Some(handler_target) = self.plumbing.target_index(&binding.bind.handler) else {
            return;
        };
        let targets = &mut self.plumbing.targets;
        let deflate = if binding.settings.deflate {
            extension::negotiate_deflate(&request.deflate_offers)
        } else {
            None
        };
        let protocol = binding.bind.protocol.clone();
        let accept = handshake::accept_response(&request, protocol.as_deref(), deflate.as_ref());
        let since = match conn.phase {
            Phase::Handshake { since, .. } => since,
            _ => now,
        };
        conn.compresses = deflate.is_some();
        conn.phase = Phase::Accepting {
            ws: Box::new(WsConnection::new(&binding.settings, deflate)),
            accept,
            since,
        };
        let initial = self.initial_ids.next_id();
        let mut begin = frame::begin_head(initial, reference).to_vec();
        WsBegin {
            protocol: protocol.as_deref(),
            path: &request.path,
            query: request.query.as_deref(),
            origin: request.origin.as_deref(),
            remote: conn.remote,
        }
        .encode(&mut begin);
        conn.handler = HandlerOut::new(handler_target);
        conn.handler.stream = Some(initial);
        targets[handler_target].write(frame::BEGIN, &[&begin]);
        conn.input = rest;
        self.by_handler_out.insert(initial.0, key);
    }

    /// Runs the engine over the client's bytes (`fresh`, after what waited
    /// in `input`).
    pub(super) fn decode(&mut self, key: usize, fresh: Option<&[u8]>) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        let Conn {
            phase: Phase::Open(ws),
            input,
            handler,
            ..
        } = conn
        else {
            return;
        };
        let targets = &mut self.plumbing.targets;
        let mut closed = None;
        let held = &mut self.held;
        held.clear();
        let mut on_action = |action: Action<'_>| match action {
            Action::Send(bytes) => {
                held.extend_from_slice(bytes);
                true
            }
            Action::Deliver { flags, payload } => handler.deliver(targets, flags, payload),
            Action::Closed { code } => {
                closed = Some(code);
                true
            }
        };
        match fresh {
            Some(fresh) if input.is_empty() => {
                let consumed = ws.feed(fresh, &mut on_action);
                input.extend_from_slice(&fresh[consumed..]);
            }
            fresh => {
                if let Some(fresh) = fresh {
                    input.extend_from_slice(fresh);
                }
                let consumed = ws.feed(input, &mut on_action);
                input.drain(..consumed);
                if input.is_empty() && input.capacity() > super::nukleus::KEEP_BUFFER {
                    *input = Vec::new();
                }
            }
        }
        let targets = &mut self.plumbing.targets;
        match closed {
            None => {
                if !self.held.is_empty() {
                    conn.client.send(targets, &self.held);
                }
            }
            Some(code) => {
                // Answers to what the client sent before the end must leave
                // first: the close waits for the handler to end its reply,
                // which it does after handling everything before.
                conn.handler.end(targets, code);
                conn.closing_since = Some(Instant::now());
                if conn.handler_in.is_some() {
                    // The phase stays open so that those answers are still
                    // framed; the engine ignores client input from now on.
                    conn.held_close = Some(std::mem::take(&mut self.held));
                } else {
                    conn.client.send(targets, &self.held);
                    conn.client.end(targets);
                    conn.phase = Phase::Done;
                }
            }
        }
    }

    fn on_handler_begin(&mut self, source: usize, stream: StreamId, initial: i64) {
        let Some(&key) = self.by_handler_out.get(&initial) else {
            self.plumbing.sources[source].throttle(frame::RESET, &[&stream.bytes()]);
            return;
        };
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        conn.handler_in = Some((source, stream));
        self.by_handler_in.insert((source, stream), key);
        if let Phase::Accepting { .. } = conn.phase {
            let Phase::Accepting { ws, accept, .. } =
                std::mem::replace(&mut conn.phase, Phase::Done)
            else {
                return;
            };
            conn.client.send(&mut self.plumbing.targets, &accept);
            self.metrics.upgrades.add(1);
            conn.phase = Phase::Open(ws);
            self.decode(key, None);
        }
        self.touch(key);
    }

    pub(super) fn on_handler_data(&mut self, key: usize, payload: &[u8]) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        conn.handler_granted -= payload.len() as i64 + i64::from(FRAME_PADDING);
        let (Some((&flags, message)), Phase::Open(ws)) = (payload.split_first(), &mut conn.phase)
        else {
            return;
        };
        let targets = &mut self.plumbing.targets;
        let mut header = [0u8; super::frame::MAX_SERVER_HEADER_LEN];
        if let Some(n) = ws.plain_header(flags, message.len(), &mut header) {
            // Uncompressed: header and payload go out without a frame copy.
            conn.client.send_parts(targets, &header[..n], message);
        } else {
            self.encoded.clear();
            ws.encode_message(flags, message, &mut self.encoded);
            conn.client.send(targets, &self.encoded);
        }
        self.touch(key);
    }

    fn on_handler_end(&mut self, key: usize, extension: &[u8], now: Instant) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        let mut r = Reader::new(extension);
        let code = r.i16().map(|c| c as u16).unwrap_or(1000);
        let reason = r.string().ok().flatten().unwrap_or("");
        conn.handler_in = None;
        if let Some(held) = conn.held_close.take() {
            let targets = &mut self.plumbing.targets;
            conn.client.send(targets, &held);
            conn.client.end(targets);
            conn.phase = Phase::Done;
        } else if let Phase::Open(ws) = &mut conn.phase {
            self.encoded.clear();
            ws.close(code, reason, &mut self.encoded);
            conn.client.send(&mut self.plumbing.targets, &self.encoded);
            conn.closing_since = Some(now);
        }
        self.touch(key);
    }

    /// Forgets a connection; ends (or resets) what is still open.
    pub(super) fn finish(&mut self, key: usize, reset: bool) {
        let Some(mut conn) = self.conns.remove(key) else {
            return;
        };
        self.conns_len -= 1;
        self.metrics.connections.set(self.conns_len as u64);
        let targets = &mut self.plumbing.targets;
        if reset {
            conn.client.reset(targets);
        } else {
            conn.client.pending.clear();
            conn.client.end(targets);
        }
        conn.handler.end(targets, 1006);
        if let Some((source, stream)) = conn.handler_in {
            self.by_handler_in.remove(&(source, stream));
            self.plumbing.sources[source].throttle(frame::RESET, &[&stream.bytes()]);
        }
        if let Some(stream) = conn.handler.stream {
            self.by_handler_out.remove(&stream.0);
        }
        self.by_tcp_in.remove(&(conn.tcp_source, conn.tcp_in));
        self.by_tcp_out.remove(&conn.client.stream.0);
    }

    pub(super) fn touch(&mut self, key: usize) {
        if let Some(conn) = self.conns.get_mut(key) {
            if !conn.touched {
                conn.touched = true;
                self.touched.push(key);
            }
        }
    }
}

/// The answer to a plain HTTP request: 426 on a path a binding serves, else
/// what [`http::respond`] says.
fn plain_http(
    bindings: &crate::nukleus::IdMap<Binding>,
    source: &str,
    settings: &WsNukleusSettings,
    request: &http::HttpRequest,
) -> Vec<u8> {
    let bound = bindings
        .values()
        .any(|b| b.bind.source == source && b.bind.path.as_deref() == Some(request.path.as_str()));
    if bound {
        return handshake::error_response(
            handshake::status::UPGRADE_REQUIRED,
            "this path speaks WebSocket only",
        );
    }
    let health = if settings.serving.load(Ordering::Acquire) {
        http::Health::Serving
    } else {
        http::Health::Draining
    };
    http::respond(request, health)
}

/// The binding for an upgrade: for each sub-protocol the client offers, in
/// its order of preference, a binding for exactly that one; else a binding
/// for any sub-protocol. Ties go to the oldest binding (lowest reference).
fn choose<'b>(
    bindings: &'b crate::nukleus::IdMap<Binding>,
    offered: &[String],
    on_path: impl Fn(&&Binding) -> bool,
) -> Option<(&'b i64, &'b Binding)> {
    let mut candidates: Vec<(&i64, &Binding)> =
        bindings.iter().filter(|(_, b)| on_path(b)).collect();
    candidates.sort_unstable_by_key(|(reference, _)| **reference);
    offered
        .iter()
        .find_map(|p| {
            candidates
                .iter()
                .find(|(_, b)| b.bind.protocol.as_deref() == Some(p.as_str()))
        })
        .or_else(|| candidates.iter().find(|(_, b)| b.bind.protocol.is_none()))
        .copied()
}
