//! Credit and timers of the ws nukleus: WINDOW and RESET coming back from
//! tcp and handlers, the windows we grant in return, and the handshake, idle
//! and closing deadlines.

use std::time::Instant;

use super::handshake;
use super::nukleus::{Phase, WsNukleus, CLOSE_GRACE, FRAME_PADDING};
use crate::nukleus::frame::{self, Frame, StreamId};

/// Close code sent when the handler refused or dropped the connection.
const CLOSE_HANDLER_GONE: u16 = 1011;
/// Close code and reason sent when the client sent nothing for the idle
/// timeout: a normal closure, nothing failed.
const CLOSE_IDLE: u16 = 1000;
/// A connection this long without input gives its buffers back.
const RELEASE_AFTER: std::time::Duration = std::time::Duration::from_secs(1);
/// Handler credit is given back in amounts of at least this much, unless
/// the handler holds less than that.
const REGRANT_MIN: i64 = 16 * 1024;
/// The reason handlers see on the END of an idle connection.
pub const IDLE_REASON: &str = "idle timeout";

impl WsNukleus {
    /// WINDOW and RESET from tcp (for what we send clients) and from
    /// handlers (for what we deliver to them).
    pub(super) fn on_throttle(&mut self, frame: Frame<'_>, now: Instant) {
        match frame {
            Frame::Window {
                stream,
                credit,
                padding,
            } => self.on_window(stream, credit, padding),
            Frame::Reset { stream } => self.on_reset(stream, now),
            _ => {}
        }
    }

    fn on_window(&mut self, stream: StreamId, credit: i32, padding: i32) {
        if let Some(&key) = self.by_tcp_out.get(&stream.0) {
            if let Some(conn) = self.conns.get_mut(key) {
                conn.client.credit += i64::from(credit);
                while conn.client.flush(&mut self.plumbing.targets) {}
            }
            self.touch(key);
        } else if let Some(&key) = self.by_handler_out.get(&stream.0) {
            if let Some(conn) = self.conns.get_mut(key) {
                conn.handler.credit += i64::from(credit);
                conn.handler.padding = i64::from(padding.max(0));
            }
            self.decode(key, None);
            self.touch(key);
        }
    }

    fn on_reset(&mut self, stream: StreamId, now: Instant) {
        if let Some(&key) = self.by_tcp_out.get(&stream.0) {
            self.finish(key, true);
        } else if let Some(&key) = self.by_handler_out.get(&stream.0) {
            let Some(conn) = self.conns.get_mut(key) else {
                return;
            };
            conn.handler.ended = true;
            if let Phase::Accepting { .. } = conn.phase {
                // The handler refused the session (e.g. its vhost is full).
                let response = handshake::error_response(
                    handshake::status::SERVICE_UNAVAILABLE,
                    "Service Unavailable",
                );
                conn.refuse(&mut self.plumbing.targets, &response, now);
                self.metrics.rejected.add(1);
            } else if let Phase::Open(ws) = &mut conn.phase {
                self.encoded.clear();
                ws.close(CLOSE_HANDLER_GONE, "", &mut self.encoded);
                conn.client.send(&mut self.plumbing.targets, &self.encoded);
                conn.closing_since.get_or_insert(now);
            }
            self.touch(key);
        }
    }

    /// Retries what a full ring refused: queued bytes for clients that have
    /// credit, and deliveries to handlers. Nothing else would wake them.
    pub(super) fn retry_blocked(&mut self) -> usize {
        if !self.plumbing.targets.iter().any(|t| t.refused) {
            return 0;
        }
        let mut keys = Vec::new();
        self.conns.for_each_mut(|key, conn| {
            let output = !conn.client.pending.is_empty() && conn.client.credit > 0;
            if output || conn.handler.blocked {
                keys.push(key);
            }
        });
        if keys.is_empty() {
            self.plumbing
                .targets
                .iter_mut()
                .for_each(|t| t.refused = false);
            return 0;
        }
        let mut work = 0;
        for key in keys {
            let Some(conn) = self.conns.get_mut(key) else {
                continue;
            };
            if conn.client.flush(&mut self.plumbing.targets) {
                work += 1;
            }
            if std::mem::take(&mut conn.handler.blocked) {
                self.decode(key, None);
            }
            self.touch(key);
        }
        work
    }

    /// Grants tcp room for more client bytes and the handler the credit tcp
    /// gave for the client, for every connection touched this round.
    pub(super) fn regrant(&mut self) {
        for key in std::mem::take(&mut self.touched) {
            let Some(conn) = self.conns.get_mut(key) else {
                continue;
            };
            conn.touched = false;
            let (want, held) = match &conn.phase {
                Phase::Handshake { buf, .. } => {
                    (self.settings.engine.max_handshake_size, buf.len())
                }
                // What waits to go out counts too: a client that sends pings
                // but never reads gets no more input window.
                Phase::Open(_) => (
                    self.settings.input_window,
                    conn.input.len() + conn.client.pending.len(),
                ),
                Phase::Accepting { .. } | Phase::Done => (0, 0),
            };
            let give = want as i64 - held as i64 - conn.tcp_granted;
            if give > 0 && (conn.tcp_granted == 0 || give >= want as i64 / 4) {
                conn.tcp_granted += give;
                let body = frame::window_body(conn.tcp_in, give as i32, 0);
                self.plumbing.sources[conn.tcp_source].throttle(frame::WINDOW, &[&body]);
            }
            let Some((source, stream)) = conn.handler_in else {
                continue;
            };
            if !matches!(conn.phase, Phase::Open(_)) {
                continue;
            }
            let avail =
                conn.client.credit - conn.client.pending.len() as i64 - conn.handler_granted;
            // Every message gives back a few bytes (the handler counts more
            // padding than a frame header takes); credit goes back once
            // it amounts to something, or when the handler is running low.
            if avail > 0 && (avail >= REGRANT_MIN || avail >= conn.handler_granted) {
                let avail = avail.min(i64::from(i32::MAX));
                conn.handler_granted += avail;
                let body = frame::window_body(stream, avail as i32, FRAME_PADDING);
                self.plumbing.sources[source].throttle(frame::WINDOW, &[&body]);
            }
        }
    }

    /// Handshake timeout, idle timeout, and the grace period of a close.
    pub(super) fn check_timers(&mut self, now: Instant) {
        let handshake_timeout = self.settings.handshake_timeout;
        let idle = self.settings.idle_timeout;
        let mut expired = Vec::new();
        self.conns.for_each_mut(|key, conn| {
            if let Some(since) = conn.closing_since {
                if now.duration_since(since) >= CLOSE_GRACE {
                    expired.push(key);
                }
                return;
            }
            if let Phase::Open(ws) = &mut conn.phase {
                if !conn.released && now.duration_since(conn.last_input) >= RELEASE_AFTER {
                    ws.release_memory();
                    if conn.input.is_empty() {
                        conn.input = Vec::new();
                    }
                    if conn.client.pending.is_empty() {
                        conn.client.pending = Vec::new();
                    }
                    conn.released = true;
                }
            }
            let late = match &conn.phase {
                Phase::Handshake { since, .. } | Phase::Accepting { since, .. } => {
                    now.duration_since(*since) >= handshake_timeout
                }
                Phase::Open(_) => !idle.is_zero() && now.duration_since(conn.last_input) >= idle,
                Phase::Done => false,
            };
            if late {
                expired.push(key);
            }
        });
        for key in expired {
            self.expire(key, now);
        }
    }

    fn expire(&mut self, key: usize, now: Instant) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        if conn.closing_since.is_some() {
            self.finish(key, true);
            return;
        }
        conn.closing_since = Some(now);
        let targets = &mut self.plumbing.targets;
        match &mut conn.phase {
            Phase::Handshake { .. } | Phase::Accepting { .. } => {
                conn.refuse(
                    targets,
                    &handshake::error_response(
                        handshake::status::REQUEST_TIMEOUT,
                        "Request Timeout",
                    ),
                    now,
                );
                self.metrics.rejected.add(1);
            }
            Phase::Open(ws) => {
                self.encoded.clear();
                ws.close(CLOSE_IDLE, IDLE_REASON, &mut self.encoded);
                conn.client.send(targets, &self.encoded);
                conn.handler.end_with(targets, CLOSE_IDLE, IDLE_REASON);
            }
            Phase::Done => {}
        }
        self.touch(key);
    }
}
