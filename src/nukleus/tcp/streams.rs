//! Frames from handlers (forward rings) and their credit (throttle rings).

use mio::net::TcpStream;
use mio::Token;

use super::conn::Conn;
use super::{queue_write, Entry, TcpNukleus};

/// Frames at least this large are written without being queued first.
const DIRECT_WRITE: usize = 2048;
use crate::nukleus::frame::{self, Frame, StreamId, Writer};
use crate::nukleus::plumbing::{Neighbours, Plumbing, Side};

impl TcpNukleus {
    pub(super) fn on_source_frame(&mut self, source: usize, type_id: i32, body: &[u8]) {
        let frame = match Frame::decode(type_id, body) {
            Ok(frame) => frame,
            Err(error) => {
                tracing::warn!(%error, "bad frame from handler");
                return;
            }
        };
        match frame {
            Frame::Begin {
                stream, reference, ..
            } if stream.is_initial() => self.connect(source, stream, reference),
            Frame::Begin {
                stream, reference, ..
            } => self.on_reply_begin(source, stream, StreamId(reference)),
            Frame::Data { stream, payload } => {
                if let Some(&token) = self.inbound.get(&(source, stream)) {
                    self.on_data(token, payload);
                }
            }
            Frame::End { stream, .. } => {
                if let Some(&token) = self.inbound.get(&(source, stream)) {
                    if let Some(Entry::Conn(conn)) = self.entries.get_mut(token.0) {
                        conn.write_ending = true;
                    }
                    self.mark_dirty(token);
                }
            }
            Frame::Reset { stream } => {
                if let Some(&token) = self.inbound.get(&(source, stream)) {
                    if let Some(Entry::Conn(conn)) = self.entries.get_mut(token.0) {
                        conn.write_done = true;
                        conn.failed = true;
                    }
                    self.close(token);
                }
            }
            Frame::Multicast { streams, payload } => self.on_multicast(source, streams, payload),
            Frame::Window { .. } => {}
        }
    }

    /// One payload for many connections. A small one is kept once in the
    /// round buffer and queued by reference; a large one goes each
    /// connection's DATA way (written from the ring where possible).
    fn on_multicast(&mut self, source: usize, streams: frame::StreamList<'_>, payload: &[u8]) {
        let kept = if payload.len() < DIRECT_WRITE {
            self.round.keep(payload)
        } else {
            None
        };
        let Some((start, len)) = kept else {
            for stream in streams.iter() {
                if let Some(&token) = self.inbound.get(&(source, stream)) {
                    self.on_data(token, payload);
                }
            }
            return;
        };
        for stream in streams.iter() {
            let Some(&token) = self.inbound.get(&(source, stream)) else {
                continue;
            };
            let Some(Entry::Conn(conn)) = self.entries.get_mut(token.0) else {
                continue;
            };
            conn.share(&self.round.bytes, start, len);
            queue_write(&mut self.dirty, conn, token);
        }
    }

    /// Queues DATA for the connection's next write. A large frame for a
    /// connection with nothing queued goes to the socket at once, from the
    /// ring, saving a copy; small ones are gathered so that a connection
    /// gets one write per round.
    fn on_data(&mut self, token: Token, payload: &[u8]) {
        let Some(Entry::Conn(conn)) = self.entries.get_mut(token.0) else {
            return;
        };
        if payload.len() < DIRECT_WRITE || conn.dirty || conn.queued() > 0 || !conn.writable {
            conn.own_shared(&self.round.bytes);
            conn.out.extend_from_slice(payload);
            queue_write(&mut self.dirty, conn, token);
            return;
        }
        let written = conn.write_direct(payload);
        let (inbound, unfinished) = (conn.inbound, conn.queued() > 0 || conn.failed);
        self.credit_back(inbound, written);
        if unfinished {
            self.mark_dirty(token);
        }
    }

    /// Returns `written` bytes of credit to the handler of `inbound`.
    pub(super) fn credit_back(&mut self, inbound: Option<(usize, StreamId)>, written: usize) {
        if written == 0 {
            return;
        }
        self.metrics.bytes_out.add(written as u64);
        if let Some((source, id)) = inbound {
            let body = frame::window_body(id, written as i32, 0);
            self.plumbing.sources[source].throttle(frame::WINDOW, &[&body]);
        }
    }

    fn on_reply_begin(&mut self, source: usize, stream: StreamId, initial: StreamId) {
        let Some(&token) = self.outbound.get(&initial.0) else {
            self.plumbing.sources[source].throttle(frame::RESET, &[&stream.bytes()]);
            return;
        };
        if let Some(Entry::Conn(conn)) = self.entries.get_mut(token.0) {
            conn.inbound = Some((source, stream));
            self.inbound.insert((source, stream), token);
            let credit = self.settings.out_limit as i32;
            let body = frame::window_body(stream, credit, 0);
            self.plumbing.sources[source].throttle(frame::WINDOW, &[&body]);
        }
    }

    /// A handler's BEGIN with a prepared ref: open an outbound connection.
    fn connect(&mut self, source: usize, stream: StreamId, reference: i64) {
        let prepared = self.prepared.get(&reference);
        let target = prepared.and_then(|p| self.plumbing.target_index(&p.handler));
        let (Some(prepared), Some(target)) = (prepared, target) else {
            self.plumbing.sources[source].throttle(frame::RESET, &[&stream.bytes()]);
            return;
        };
        let socket = match TcpStream::connect(prepared.remote) {
            Ok(socket) => socket,
            Err(error) => {
                tracing::debug!(%error, "connect failed");
                self.plumbing.sources[source].throttle(frame::RESET, &[&stream.bytes()]);
                return;
            }
        };
        let mut conn = Conn::pending(socket, target, true);
        conn.inbound = Some((source, stream));
        match self.insert_conn(conn) {
            Some(token) => {
                self.inbound.insert((source, stream), token);
            }
            None => {
                self.plumbing.sources[source].throttle(frame::RESET, &[&stream.bytes()]);
            }
        }
    }

    /// An outbound connect finished (or failed).
    pub(super) fn on_connected(&mut self, token: Token) {
        let reply = self.reply_ids.next_id();
        let credit = self.settings.out_limit as i32;
        let Some(Entry::Conn(conn)) = self.entries.get_mut(token.0) else {
            return;
        };
        conn.connecting = false;
        let peer = conn.socket.peer_addr();
        let Some((source, initial)) = conn.inbound else {
            return;
        };
        let (Ok(remote), Ok(local)) = (peer, conn.socket.local_addr()) else {
            conn.failed = true;
            conn.read_done = true;
            self.close(token);
            return;
        };
        let _ = conn.socket.set_nodelay(true);
        let mut begin = frame::begin_head(reply, initial.0).to_vec();
        begin.put_socket_addr(local);
        begin.put_socket_addr(remote);
        self.plumbing.targets[conn.target].write(frame::BEGIN, &[&begin]);
        conn.outbound = Some(reply);
        conn.writable = true;
        conn.readable = true;
        self.outbound.insert(reply.0, token);
        let body = frame::window_body(initial, credit, 0);
        self.plumbing.sources[source].throttle(frame::WINDOW, &[&body]);
        self.mark_dirty(token);
    }

    /// WINDOW and RESET from handlers for the streams we write.
    pub(super) fn read_throttles(&mut self) -> usize {
        let mut work = 0;
        for target in 0..self.plumbing.targets.len() {
            let file = std::sync::Arc::clone(&self.plumbing.targets[target].file);
            work +=
                file.throttle.read(
                    crate::nukleus::ROUND_FRAMES,
                    |type_id, body| match Frame::decode(type_id, body) {
                        Ok(Frame::Window {
                            stream,
                            credit,
                            padding,
                        }) => self.on_window(stream, credit, padding),
                        Ok(Frame::Reset { stream }) => self.on_reset_from_handler(stream),
                        Ok(_) | Err(_) => {}
                    },
                );
        }
        work
    }

    fn on_window(&mut self, stream: StreamId, credit: i32, padding: i32) {
        let Some(&token) = self.outbound.get(&stream.0) else {
            return;
        };
        if let Some(Entry::Conn(conn)) = self.entries.get_mut(token.0) {
            conn.credit += i64::from(credit);
            conn.padding = i64::from(padding.max(0));
            // Read with the next batch, when the path has settled.
            if conn.readable && !conn.read_done {
                self.credited.push(token);
            }
        }
    }

    fn on_reset_from_handler(&mut self, stream: StreamId) {
        let Some(&token) = self.outbound.get(&stream.0) else {
            return;
        };
        if let Some(Entry::Conn(conn)) = self.entries.get_mut(token.0) {
            conn.read_done = true;
            conn.end_pending = false;
            let _ = conn.socket.shutdown(std::net::Shutdown::Read);
            if conn.finished() || conn.inbound.is_none() {
                conn.write_done = true;
                self.close(token);
            }
        }
    }

    /// Retries what a full ring refused earlier.
    pub(super) fn retry_stalled(&mut self) -> usize {
        if self.stalled.is_empty() {
            return 0;
        }
        let mut work = 0;
        for token in std::mem::take(&mut self.stalled) {
            let Some(Entry::Conn(conn)) = self.entries.get_mut(token.0) else {
                continue;
            };
            let (Some(id), target) = (conn.outbound, conn.target) else {
                continue;
            };
            let target = &mut self.plumbing.targets[target];
            if conn.end_pending {
                if !target.write(frame::END, &[&id.bytes()]) {
                    self.stalled.push(token);
                    continue;
                }
                conn.end_pending = false;
                work += 1;
            }
            self.read(token);
        }
        work
    }

    /// Forgets a connection, telling the handler about what was not ended.
    pub(super) fn close(&mut self, token: Token) {
        let Some(Entry::Conn(mut conn)) = self.entries.remove(token.0) else {
            return;
        };
        let _ = self.poll.registry().deregister(&mut conn.socket);
        self.connections = self.connections.saturating_sub(1);
        self.metrics.connections.set(self.connections as u64);
        if let Some(id) = conn.outbound {
            self.outbound.remove(&id.0);
            if !conn.read_done || conn.end_pending {
                self.plumbing.targets[conn.target].write(frame::RESET, &[&id.bytes()]);
            }
        }
        if let Some((source, id)) = conn.inbound {
            self.inbound.remove(&(source, id));
            if !conn.write_done || conn.queued() > 0 {
                self.plumbing.sources[source].throttle(frame::RESET, &[&id.bytes()]);
            }
        }
        if conn.failed {
            // An abortive close (RST) tells the peer at once.
            let _ =
                socket2::SockRef::from(&conn.socket).set_linger(Some(std::time::Duration::ZERO));
        }
    }
}

impl Neighbours for TcpNukleus {
    fn plumbing_mut(&mut self) -> &mut Plumbing {
        &mut self.plumbing
    }

    fn streams_via(&self, side: Side, index: usize) -> Vec<StreamId> {
        match side {
            Side::Target => self
                .outbound
                .iter()
                .filter(|(_, token)| {
                    matches!(self.entries.get(token.0), Some(Entry::Conn(conn)) if conn.target == index)
                })
                .map(|(&id, _)| StreamId(id))
                .collect(),
            Side::Source => self
                .inbound
                .keys()
                .filter(|(source, _)| *source == index)
                .map(|&(_, id)| id)
                .collect(),
        }
    }

    /// The socket cannot go on without either of its streams: it is
    /// closed at once (RST).
    fn on_neighbour_reset(&mut self, side: Side, index: usize, stream: StreamId) {
        let token = match side {
            Side::Target => self.outbound.get(&stream.0),
            Side::Source => self.inbound.get(&(index, stream)),
        };
        let Some(&token) = token else {
            return;
        };
        if let Some(Entry::Conn(conn)) = self.entries.get_mut(token.0) {
            conn.read_done = true;
            conn.write_done = true;
            conn.end_pending = false;
            conn.failed = true;
        }
        self.close(token);
    }
}
