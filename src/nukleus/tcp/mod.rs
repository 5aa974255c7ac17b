//! The tcp nukleus: sockets at one edge, streams at the other (seed 001).
//!
//! - BIND opens a listener (IPv4, IPv6 or a device name). Each accepted
//!   socket becomes an initial stream to the handler: BEGIN with the local and
//!   remote address, DATA per read (only as much as the handler's WINDOW
//!   allows), END on EOF, RESET on error.
//! - The handler's reply stream (BEGIN with an even id naming the initial
//!   stream) is written back to the socket; END shuts the write side down.
//!   DATA frames queued for one connection during a round leave in one write.
//! - PREPARE records a remote address; a handler's BEGIN with that ref opens
//!   an outbound connection, and the roles of the two streams swap.
//!
//! Credit towards the handler's reply stream is the room left in the
//! connection's outbound buffer (`out_limit`), so a slow client pushes back
//! on the handler instead of growing a queue here.

mod conn;
pub mod control;
mod streams;

use std::collections::HashMap;
use std::io::{ErrorKind, Read};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::net::TcpListener;
use mio::{Events, Interest, Poll, Token};

use self::conn::{Conn, Round};
use super::frame::{self, StreamIds, Writer};
use super::metrics::Metric;
use super::plumbing::{Pending, Plumbing};
use super::runner::{Agent, Signal, Signals};
use super::slab::Slab;
use super::{IdMap, StreamMap};

const WAKER: Token = Token(usize::MAX);
const READ_CHUNK: usize = 64 * 1024;

/// Settings of the tcp nukleus.
#[derive(Debug, Clone)]
pub struct TcpSettings {
    /// Bytes a connection may hold unwritten before the handler runs out of
    /// credit (the pending-bytes limit for slow consumers).
    pub out_limit: usize,
    /// Accepted connections beyond this are closed at once.
    pub max_connections: usize,
    /// Streams file capacity (bytes, a power of two).
    pub ring_capacity: usize,
}

enum Entry {
    Listener { listener: TcpListener, binding: i64 },
    Conn(Box<Conn>),
}

struct Binding {
    handler: String,
    token: Token,
}

struct Prepared {
    handler: String,
    remote: SocketAddr,
}

/// The tcp nukleus.
pub struct TcpNukleus {
    plumbing: Plumbing,
    settings: TcpSettings,
    poll: Poll,
    events: Events,
    entries: Slab<Entry>,
    bindings: HashMap<i64, Binding>,
    prepared: HashMap<i64, Prepared>,
    /// Streams we read, by (source index, stream id) -> token.
    inbound: StreamMap<Token>,
    /// Streams we write, by stream id -> token.
    outbound: IdMap<Token>,
    initial_ids: StreamIds,
    reply_ids: StreamIds,
    next_ref: i64,
    dirty: Vec<Token>,
    /// The round's small broadcast payloads, each once; connections queue
    /// ranges of it ([`Conn::share`]). Cleared when the round's writes are
    /// done.
    round: Round,
    commands: Vec<Pending>,
    connections: usize,
    stalled: Vec<Token>,
    /// Readable connections that got credit: read at the next settle.
    credited: Vec<Token>,
    metrics: TcpMetrics,
}

/// What the tcp nukleus counts (labels `tcp.*`).
struct TcpMetrics {
    connections: Metric,
    accepted: Metric,
    refused: Metric,
    bytes_in: Metric,
    bytes_out: Metric,
}

impl TcpNukleus {
    /// Creates the nukleus and the signal that wakes it (its poller).
    pub fn new(
        run_dir: &std::path::Path,
        settings: TcpSettings,
        signals: Arc<Signals>,
    ) -> std::io::Result<(Self, Arc<Signal>)> {
        let poll = Poll::new()?;
        let signal = Signal::for_poller(mio::Waker::new(poll.registry(), WAKER)?);
        signals.register("tcp", signal.clone());
        let plumbing = Plumbing::create(run_dir, "tcp", settings.ring_capacity, signals)?;
        let metrics = TcpMetrics {
            connections: Metric::new(&plumbing.counters, "tcp.connections"),
            accepted: Metric::new(&plumbing.counters, "tcp.accepted"),
            refused: Metric::new(&plumbing.counters, "tcp.refused"),
            bytes_in: Metric::new(&plumbing.counters, "tcp.bytes_in"),
            bytes_out: Metric::new(&plumbing.counters, "tcp.bytes_out"),
        };
        let nukleus = TcpNukleus {
            plumbing,
            settings,
            poll,
            events: Events::with_capacity(1024),
            entries: Slab::default(),
            bindings: HashMap::new(),
            prepared: HashMap::new(),
            inbound: StreamMap::default(),
            outbound: IdMap::default(),
            initial_ids: StreamIds::initial(),
            reply_ids: StreamIds::reply(),
            next_ref: 1,
            dirty: Vec::new(),
            round: Round::default(),
            commands: Vec::new(),
            connections: 0,
            stalled: Vec::new(),
            credited: Vec::new(),
            metrics,
        };
        Ok((nukleus, signal))
    }

    fn poll_io(&mut self, timeout: Option<Duration>) -> usize {
        if let Err(error) = self.poll.poll(&mut self.events, timeout) {
            if error.kind() != ErrorKind::Interrupted {
                tracing::warn!(%error, "poll failed");
            }
            return 0;
        }
        let ready: Vec<(Token, bool, bool)> = self
            .events
            .iter()
            .filter(|e| e.token() != WAKER)
            .map(|e| {
                let gone = e.is_error() || e.is_read_closed() || e.is_write_closed();
                (e.token(), e.is_readable() || gone, e.is_writable() || gone)
            })
            .collect();
        for &(token, readable, writable) in &ready {
            self.on_ready(token, readable, writable);
        }
        ready.len()
    }

    fn on_ready(&mut self, token: Token, readable: bool, writable: bool) {
        match self.entries.get_mut(token.0) {
            Some(Entry::Listener { .. }) => self.accept(token),
            Some(Entry::Conn(conn)) => {
                if writable {
                    if conn.connecting {
                        self.on_connected(token);
                        return;
                    }
                    conn.writable = true;
                    self.mark_dirty(token);
                }
                if readable {
                    if let Some(Entry::Conn(conn)) = self.entries.get_mut(token.0) {
                        conn.readable = true;
                    }
                    self.read(token);
                }
            }
            None => {}
        }
    }

    fn accept(&mut self, token: Token) {
        loop {
            let Some(Entry::Listener { listener, binding }) = self.entries.get_mut(token.0) else {
                return;
            };
            let binding = *binding;
            let (socket, remote) = match listener.accept() {
                Ok(accepted) => accepted,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(error) => {
                    tracing::warn!(%error, "accept failed");
                    return;
                }
            };
            if self.connections >= self.settings.max_connections {
                self.metrics.refused.add(1);
                tracing::debug!(%remote, "connection limit reached; closing");
                continue;
            }
            let Some(handler) = self.bindings.get(&binding).map(|b| b.handler.clone()) else {
                continue;
            };
            let Some(target) = self.plumbing.target_index(&handler) else {
                tracing::warn!(%handler, "no route to handler; closing connection");
                continue;
            };
            let _ = socket.set_nodelay(true);
            let local = socket.local_addr().unwrap_or(remote);
            let id = self.initial_ids.next_id();
            let mut begin = frame::begin_head(id, binding).to_vec();
            begin.put_socket_addr(local);
            begin.put_socket_addr(remote);
            if !self.plumbing.targets[target].write(frame::BEGIN, &[&begin]) {
                tracing::warn!(%handler, "handler ring full; refusing connection");
                continue;
            }
            let conn = Conn::new(socket, target, id, false);
            self.insert_conn(conn);
        }
    }

    fn insert_conn(&mut self, conn: Conn) -> Option<Token> {
        let outbound = conn.outbound;
        let token = Token(self.entries.insert(Entry::Conn(Box::new(conn))));
        let Some(Entry::Conn(conn)) = self.entries.get_mut(token.0) else {
            return None;
        };
        let interest = Interest::READABLE | Interest::WRITABLE;
        if let Err(error) = self
            .poll
            .registry()
            .register(&mut conn.socket, token, interest)
        {
            tracing::warn!(%error, "register failed");
            self.entries.remove(token.0);
            return None;
        }
        self.connections += 1;
        self.metrics.accepted.add(1);
        self.metrics.connections.set(self.connections as u64);
        if let Some(id) = outbound {
            self.outbound.insert(id.0, token);
        }
        Some(token)
    }

    /// Reads from the socket while the handler has given credit.
    fn read(&mut self, token: Token) {
        let Some(Entry::Conn(conn)) = self.entries.get_mut(token.0) else {
            return;
        };
        let Some(id) = conn.outbound else {
            return;
        };
        let target = &mut self.plumbing.targets[conn.target];
        let max_body = target.ring().max_body().saturating_sub(8);
        conn.stalled = false;
        while conn.readable && !conn.read_done {
            let room = conn.credit - conn.padding;
            if room <= 0 {
                break;
            }
            let want = (room as usize).min(READ_CHUNK).min(max_body);
            // Read straight into the handler's ring: claim the most the
            // credit allows, keep what the socket gave.
            let Ok(mut claim) = target.ring().try_claim(frame::DATA, 8 + want) else {
                // The ring is shared by every connection: stop reading until
                // the handler has made room.
                conn.stalled = true;
                self.stalled.push(token);
                return;
            };
            claim[..8].copy_from_slice(&id.bytes());
            match conn.socket.read(&mut claim[8..]) {
                Ok(0) => {
                    claim.cancel();
                    conn.read_done = true;
                    if !target.write(frame::END, &[&id.bytes()]) {
                        conn.end_pending = true;
                        self.stalled.push(token);
                    }
                }
                Ok(n) => {
                    claim.truncate(8 + n);
                    claim.commit();
                    target.dirty = true;
                    self.metrics.bytes_in.add(n as u64);
                    conn.credit -= n as i64 + conn.padding;
                }
                Err(e) => {
                    claim.cancel();
                    match e.kind() {
                        ErrorKind::WouldBlock => conn.readable = false,
                        ErrorKind::Interrupted => {}
                        _ => {
                            tracing::debug!(error = %e, "read failed");
                            conn.failed = true;
                            break;
                        }
                    }
                }
            }
        }
        if conn.failed || conn.finished() {
            self.close(token);
        }
    }

    fn mark_dirty(&mut self, token: Token) {
        if let Some(Entry::Conn(conn)) = self.entries.get_mut(token.0) {
            queue_write(&mut self.dirty, conn, token);
        }
    }

    /// One write per connection for everything queued this round.
    fn flush(&mut self) {
        let mut dirty = std::mem::take(&mut self.dirty);
        for &token in &dirty {
            let Some(Entry::Conn(conn)) = self.entries.get_mut(token.0) else {
                continue;
            };
            conn.dirty = false;
            let written = conn.flush(&self.round.bytes);
            let inbound = conn.inbound;
            let done = conn.failed || conn.finished();
            self.credit_back(inbound, written);
            if done {
                self.close(token);
            }
        }
        // The list keeps its allocation for the next round (closing a
        // connection lists none).
        dirty.clear();
        self.dirty = dirty;
        // Every connection holding a range was dirty, and has written it or
        // copied what is left.
        self.round.clear();
    }

    /// Frames from handlers: reply streams (and initial streams of outbound
    /// connections).
    fn read_sources(&mut self) -> usize {
        let mut work = 0;
        for source in 0..self.plumbing.sources.len() {
            let file = std::sync::Arc::clone(&self.plumbing.sources[source].file);
            work += file
                .forward
                .read(crate::nukleus::ROUND_FRAMES, |type_id, body| {
                    self.on_source_frame(source, type_id, body);
                });
        }
        work
    }
}

pub use control::decode_bind;

/// Lists `conn` for this round's writes, once; for callers that hold the
/// connection already.
fn queue_write(dirty: &mut Vec<Token>, conn: &mut Conn, token: Token) {
    if !conn.dirty {
        conn.dirty = true;
        dirty.push(token);
    }
}

impl Agent for TcpNukleus {
    fn name(&self) -> &str {
        "tcp"
    }

    fn do_work(&mut self, _now: Instant) -> usize {
        let mut work = self.plumbing.poll_commands(&mut self.commands);
        for pending in std::mem::take(&mut self.commands) {
            self.on_command(pending);
        }
        work += super::plumbing::end_removed(self);
        work += self.read_sources();
        work += self.read_throttles();
        work += self.retry_stalled();
        self.plumbing.notify_peers();
        // Queued output and input are work to come: the thread must not
        // park on them.
        work + usize::from(!self.dirty.is_empty() || !self.credited.is_empty())
    }

    /// The rest of the path has passed on what it had: write every
    /// connection once, then take in what the sockets have for the next
    /// batch.
    fn on_settled(&mut self, _now: Instant) -> usize {
        let written = self.dirty.len();
        self.flush();
        let mut work = written + self.credited.len();
        for token in std::mem::take(&mut self.credited) {
            self.read(token);
        }
        work += self.poll_io(Some(Duration::ZERO));
        self.plumbing.notify_peers();
        work
    }

    fn park(&mut self, timeout: Duration) -> bool {
        self.poll_io(Some(timeout));
        true
    }

    fn on_idle(&mut self) {
        self.plumbing.release_idle_rings();
        if self.round.bytes.is_empty() {
            self.round = Round::default();
        }
        // A busy connection keeps its buffer between rounds; a quiet one
        // gives it back.
        self.entries.for_each_mut(|_, entry| {
            if let Entry::Conn(conn) = entry {
                conn.release_buffer();
            }
        });
    }

    fn on_close(&mut self) {
        self.plumbing.remove_files();
    }
}
