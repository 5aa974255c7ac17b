//! The tls nukleus: a layer between tcp and ws that turns ciphertext streams
//! into plaintext streams and back (rustls), so ws serves `wss://` exactly as
//! it serves `ws://`.
//!
//! ```text
//! tcp --ciphertext--> tls --plaintext--> ws
//! tcp <--ciphertext-- tls <--plaintext-- ws
//! ```
//!
//! BIND (tls): `string source, i64 source ref, string handler` -> BOUND ref;
//! streams from `source` with `source ref` are decrypted for `handler`, whose
//! own BIND names this nukleus and the returned ref as its source.
//!
//! Credit: tls grants tcp a fixed window for ciphertext and renews it as
//! records are decrypted and accepted by the handler; it grants the handler
//! the credit tcp gave for the reply, with a padding that covers one TLS
//! record's overhead per DATA frame.

use std::io::{Read, Write};
use std::sync::Arc;
use std::time::Instant;

use rustls::{ServerConfig, ServerConnection};

use super::command::{self, Response};
use super::frame::{self, Frame, FrameError, Reader, StreamId, StreamIds, Writer};
use super::plumbing::{
    drain, end_removed, reset_as_frame, Frames, Neighbours, Pending, Plumbing, Side,
};
use super::runner::{Agent, Signals};
use super::slab::Slab;
use super::{IdMap, StreamMap};

/// Ciphertext credit granted to tcp per connection.
const WINDOW: i64 = 64 * 1024;
/// Per-DATA overhead of a TLS record (header, tag, padding), rounded up.
const RECORD_PADDING: i32 = 64;
const PLAIN_CHUNK: usize = 16 * 1024;

/// Why a certificate or key could not be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read or holds no usable PEM item.
    #[error("{path}: {reason}")]
    File {
        /// Which file.
        path: std::path::PathBuf,
        /// What was wrong.
        reason: String,
    },
    /// rustls refused the certificate and key.
    #[error(transparent)]
    Rustls(#[from] rustls::Error),
}

/// Loads a certificate chain and private key (PEM) into a server config.
pub fn load_config(
    cert: &std::path::Path,
    key: &std::path::Path,
) -> Result<Arc<ServerConfig>, TlsError> {
    let bad = |p: &std::path::Path, reason: String| TlsError::File {
        path: p.to_path_buf(),
        reason,
    };
    let open = |p: &std::path::Path| {
        std::fs::File::open(p)
            .map(std::io::BufReader::new)
            .map_err(|e| bad(p, e.to_string()))
    };
    let certs = rustls_pemfile::certs(&mut open(cert)?)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(cert, e.to_string()))?;
    if certs.is_empty() {
        return Err(bad(cert, "no certificate found".into()));
    }
    let key_der = rustls_pemfile::private_key(&mut open(key)?)
        .map_err(|e| bad(key, e.to_string()))?
        .ok_or_else(|| bad(key, "no private key found".into()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key_der)?;
    Ok(Arc::new(config))
}

/// A decoded tls BIND.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsBind {
    /// Where ciphertext streams come from ("tcp").
    pub source: String,
    /// The source's ref for them.
    pub source_ref: i64,
    /// Who gets the plaintext streams ("ws").
    pub handler: String,
}

impl TlsBind {
    /// The command body after the correlation id.
    pub fn encode(&self) -> Vec<u8> {
        let mut body = Vec::new();
        body.put_string(Some(&self.source));
        body.put_i64(self.source_ref);
        body.put_string(Some(&self.handler));
        body
    }

    fn decode(body: &[u8]) -> Result<TlsBind, FrameError> {
        let mut r = Reader::new(body);
        Ok(TlsBind {
            source: r.string()?.ok_or(FrameError::BadString)?.to_string(),
            source_ref: r.i64()?,
            handler: r.string()?.ok_or(FrameError::BadString)?.to_string(),
        })
    }
}

struct Conn {
    tls: ServerConnection,
    /// Ciphertext side.
    net_source: usize,
    net_in: StreamId,
    net_target: usize,
    net_out: StreamId,
    net_credit: i64,
    net_granted: i64,
    /// Plaintext side.
    app_target: usize,
    app_out: StreamId,
    app_credit: i64,
    app_padding: i64,
    app_in: Option<(usize, StreamId)>,
    app_granted: i64,
    /// Ciphertext waiting for tcp credit.
    pending: Vec<u8>,
    /// Ciphertext from the client not yet taken by rustls.
    cipher_in: Vec<u8>,
    ended: bool,
}

/// The tls nukleus.
pub struct TlsNukleus {
    plumbing: Plumbing,
    config: Arc<ServerConfig>,
    bindings: IdMap<(TlsBind, usize)>,
    next_ref: i64,
    conns: Slab<Conn>,
    by_net_in: StreamMap<usize>,
    by_net_out: IdMap<usize>,
    by_app_out: IdMap<usize>,
    by_app_in: StreamMap<usize>,
    initial_ids: StreamIds,
    reply_ids: StreamIds,
    commands: Vec<Pending>,
    cipher: Vec<u8>,
    /// Connections whose plaintext waits for room in the handler's ring.
    stalled: Vec<usize>,
}

impl TlsNukleus {
    /// Creates the nukleus; `signals` must hold its thread's signal as "tls".
    pub fn new(
        run_dir: &std::path::Path,
        ring_capacity: usize,
        signals: Arc<Signals>,
        config: Arc<ServerConfig>,
    ) -> std::io::Result<Self> {
        Ok(TlsNukleus {
            plumbing: Plumbing::create(run_dir, "tls", ring_capacity, signals)?,
            config,
            bindings: IdMap::default(),
            next_ref: 1,
            conns: Slab::default(),
            by_net_in: StreamMap::default(),
            by_net_out: IdMap::default(),
            by_app_out: IdMap::default(),
            by_app_in: StreamMap::default(),
            initial_ids: StreamIds::initial(),
            reply_ids: StreamIds::reply(),
            commands: Vec::new(),
            cipher: Vec::new(),
            stalled: Vec::new(),
        })
    }

    fn on_command(&mut self, pending: Pending) {
        let body = pending.args.as_slice();
        let correlation = pending.correlation;
        let response = match pending.type_id {
            command::BIND => TlsBind::decode(body).ok().and_then(|bind| {
                let target = self.plumbing.target_index(&bind.handler)?;
                let reference = self.next_ref;
                self.next_ref += 1;
                self.bindings.insert(reference, (bind, target));
                Some(Response::with_ref(command::BIND, correlation, reference))
            }),
            command::UNBIND => Reader::new(body)
                .i64()
                .ok()
                .and_then(|reference| self.bindings.remove(&reference))
                .map(|_| Response::ok(command::UNBIND, correlation)),
            _ => None,
        };
        self.plumbing
            .respond(response.unwrap_or(Response::error(correlation)));
    }

    fn on_source(&mut self, source: usize, frame: Frame<'_>) {
        if let Frame::Multicast { streams, payload } = frame {
            // Each connection encrypts on its own: as DATA on every stream.
            for stream in streams.iter() {
                if let Some(&conn) = self.by_app_in.get(&(source, stream)) {
                    self.on_plain(conn, payload);
                }
            }
            return;
        }
        let key = (source, frame.stream());
        if let Some(&conn) = self.by_net_in.get(&key) {
            match frame {
                Frame::Data { payload, .. } => self.on_cipher(conn, payload),
                Frame::End { .. } | Frame::Reset { .. } => self.finish(conn),
                _ => {}
            }
        } else if let Some(&conn) = self.by_app_in.get(&key) {
            match frame {
                Frame::Data { payload, .. } => self.on_plain(conn, payload),
                Frame::End { .. } => {
                    if let Some(c) = self.conns.get_mut(conn) {
                        c.tls.send_close_notify();
                    }
                    self.flush(conn);
                    self.end_net(conn);
                }
                Frame::Reset { .. } => self.finish(conn),
                _ => {}
            }
        } else if let Frame::Begin {
            stream,
            reference,
            extension,
        } = frame
        {
            if stream.is_initial() {
                self.accept(source, stream, reference, extension);
            } else {
                self.on_app_begin(source, stream, reference);
            }
        }
    }

    fn accept(&mut self, source: usize, stream: StreamId, reference: i64, extension: &[u8]) {
        let name = &self.plumbing.sources[source].name;
        let found = self
            .bindings
            .iter()
            .find(|(_, (b, _))| b.source_ref == reference && &b.source == name)
            .map(|(&r, (_, t))| (r, *t));
        let net_target = self.plumbing.target_index(name);
        let tls = ServerConnection::new(Arc::clone(&self.config)).map(|mut tls| {
            // The credit granted to the handler bounds what it sends; rustls
            // must not refuse part of a large DATA frame.
            tls.set_buffer_limit(None);
            tls
        });
        let (Some((binding, app_target)), Some(net_target), Ok(tls)) = (found, net_target, tls)
        else {
            self.plumbing.sources[source].throttle(frame::RESET, &[&stream.bytes()]);
            return;
        };
        let net_out = self.reply_ids.next_id();
        let app_out = self.initial_ids.next_id();
        self.plumbing.targets[net_target]
            .write(frame::BEGIN, &[&frame::begin_head(net_out, stream.0)]);
        self.plumbing.targets[app_target].write(
            frame::BEGIN,
            &[&frame::begin_head(app_out, binding), extension],
        );
        let conn = self.conns.insert(Conn {
            tls,
            net_source: source,
            net_in: stream,
            net_target,
            net_out,
            net_credit: 0,
            net_granted: WINDOW,
            app_target,
            app_out,
            app_credit: 0,
            app_padding: 0,
            app_in: None,
            app_granted: 0,
            pending: Vec::new(),
            cipher_in: Vec::new(),
            ended: false,
        });
        self.by_net_in.insert((source, stream), conn);
        self.by_net_out.insert(net_out.0, conn);
        self.by_app_out.insert(app_out.0, conn);
        let body = frame::window_body(stream, WINDOW as i32, 0);
        self.plumbing.sources[source].throttle(frame::WINDOW, &[&body]);
    }

    fn on_app_begin(&mut self, source: usize, stream: StreamId, initial: i64) {
        let Some(&conn) = self.by_app_out.get(&initial) else {
            self.plumbing.sources[source].throttle(frame::RESET, &[&stream.bytes()]);
            return;
        };
        if let Some(c) = self.conns.get_mut(conn) {
            c.app_in = Some((source, stream));
            self.by_app_in.insert((source, stream), conn);
        }
        self.regrant(conn);
    }

    /// Ciphertext from the client.
    fn on_cipher(&mut self, conn: usize, payload: &[u8]) {
        let Some(c) = self.conns.get_mut(conn) else {
            return;
        };
        c.net_granted -= payload.len() as i64;
        c.cipher_in.extend_from_slice(payload);
        self.decrypt(conn);
        self.flush(conn);
        self.regrant(conn);
    }

    /// Feeds waiting ciphertext to rustls record by record, handing the
    /// plaintext on as it comes. rustls holds at most a few records of
    /// plaintext, so what it cannot take yet waits in `cipher_in` until the
    /// handler grants credit.
    fn decrypt(&mut self, conn: usize) {
        loop {
            self.pump_plain(conn);
            let Some(c) = self.conns.get_mut(conn) else {
                return;
            };
            if c.cipher_in.is_empty() || c.ended {
                // After close_notify nothing more is read (RFC 8446 6.1).
                if c.ended {
                    c.cipher_in.clear();
                }
                return;
            }
            let mut input = &c.cipher_in[..];
            match c.tls.read_tls(&mut input) {
                // Nothing taken: its plaintext buffer is full, or the
                // stream is closed. Wait for credit.
                Ok(0) => return,
                Ok(n) => {
                    c.cipher_in.drain(..n);
                }
                // Reading from a slice cannot fail: rustls refuses because
                // its plaintext buffer is full. Wait for credit.
                Err(_) => return,
            }
            if c.tls.process_new_packets().is_err() {
                // A TLS alert may be queued for the client; send it, then go.
                self.flush(conn);
                self.finish(conn);
                return;
            }
        }
    }

    /// Decrypted bytes to the handler, as far as its credit and the ring
    /// allow: read straight into a claim on the handler's ring, so nothing
    /// is taken out of rustls that cannot be delivered.
    fn pump_plain(&mut self, conn: usize) {
        let Some(c) = self.conns.get_mut(conn) else {
            return;
        };
        let target = &mut self.plumbing.targets[c.app_target];
        loop {
            let room = (c.app_credit - c.app_padding).clamp(0, PLAIN_CHUNK as i64) as usize;
            if room == 0 {
                return;
            }
            let Ok(mut claim) = target.ring().try_claim(frame::DATA, 8 + room) else {
                self.stalled.push(conn);
                return;
            };
            claim[..8].copy_from_slice(&c.app_out.bytes());
            match c.tls.reader().read(&mut claim[8..]) {
                Ok(0) => {
                    claim.cancel();
                    // close_notify: the client's stream ends.
                    if !c.ended {
                        c.ended = true;
                        target.write(frame::END, &[&c.app_out.bytes()]);
                    }
                    return;
                }
                Ok(n) => {
                    claim.truncate(8 + n);
                    claim.commit();
                    target.dirty = true;
                    c.app_credit -= n as i64 + c.app_padding;
                }
                Err(_) => {
                    claim.cancel();
                    return;
                }
            }
        }
    }

    /// Plaintext from the handler.
    fn on_plain(&mut self, conn: usize, payload: &[u8]) {
        let Some(c) = self.conns.get_mut(conn) else {
            return;
        };
        c.app_granted -= payload.len() as i64 + i64::from(RECORD_PADDING);
        if c.tls.writer().write_all(payload).is_err() {
            self.finish(conn);
            return;
        }
        self.flush(conn);
        self.regrant(conn);
    }

    /// Ciphertext to the client, as far as tcp's credit goes.
    fn flush(&mut self, conn: usize) {
        let Some(c) = self.conns.get_mut(conn) else {
            return;
        };
        self.cipher.clear();
        while c.tls.wants_write() {
            if c.tls.write_tls(&mut self.cipher).is_err() {
                break;
            }
        }
        c.pending.extend_from_slice(&self.cipher);
        let n = (c.net_credit.max(0) as usize)
            .min(c.pending.len())
            .min(self.plumbing.targets[c.net_target].ring().max_body() - 8);
        if n > 0
            && self.plumbing.targets[c.net_target]
                .write(frame::DATA, &[&c.net_out.bytes(), &c.pending[..n]])
        {
            c.net_credit -= n as i64;
            c.pending.drain(..n);
        }
    }

    fn regrant(&mut self, conn: usize) {
        let Some(c) = self.conns.get_mut(conn) else {
            return;
        };
        let give = WINDOW - c.net_granted - c.cipher_in.len() as i64;
        if give >= WINDOW / 2 && c.app_credit > 0 {
            c.net_granted += give;
            let body = frame::window_body(c.net_in, give as i32, 0);
            self.plumbing.sources[c.net_source].throttle(frame::WINDOW, &[&body]);
        }
        if let Some((source, stream)) = c.app_in {
            let avail = c.net_credit - c.pending.len() as i64 - c.app_granted;
            if avail > 0 {
                c.app_granted += avail;
                let body =
                    frame::window_body(stream, avail.min(i32::MAX as i64) as i32, RECORD_PADDING);
                self.plumbing.sources[source].throttle(frame::WINDOW, &[&body]);
            }
        }
    }

    fn end_net(&mut self, conn: usize) {
        if let Some(c) = self.conns.get_mut(conn) {
            self.plumbing.targets[c.net_target].write(frame::END, &[&c.net_out.bytes()]);
        }
    }

    fn finish(&mut self, conn: usize) {
        let Some(c) = self.conns.remove(conn) else {
            return;
        };
        self.plumbing.targets[c.net_target].write(frame::RESET, &[&c.net_out.bytes()]);
        if !c.ended {
            self.plumbing.targets[c.app_target].write(frame::END, &[&c.app_out.bytes()]);
        }
        if let Some((source, stream)) = c.app_in {
            self.by_app_in.remove(&(source, stream));
            self.plumbing.sources[source].throttle(frame::RESET, &[&stream.bytes()]);
        }
        self.by_net_in.remove(&(c.net_source, c.net_in));
        self.by_net_out.remove(&c.net_out.0);
        self.by_app_out.remove(&c.app_out.0);
    }

    fn on_throttle(&mut self, frame: Frame<'_>) {
        let id = frame.stream().0;
        if let Some(&conn) = self.by_net_out.get(&id) {
            match frame {
                Frame::Window { credit, .. } => {
                    if let Some(c) = self.conns.get_mut(conn) {
                        c.net_credit += i64::from(credit);
                    }
                    self.flush(conn);
                    self.regrant(conn);
                }
                Frame::Reset { .. } => self.finish(conn),
                _ => {}
            }
        } else if let Some(&conn) = self.by_app_out.get(&id) {
            match frame {
                Frame::Window {
                    credit, padding, ..
                } => {
                    if let Some(c) = self.conns.get_mut(conn) {
                        c.app_credit += i64::from(credit);
                        c.app_padding = i64::from(padding.max(0));
                    }
                    self.decrypt(conn);
                    self.flush(conn);
                    self.regrant(conn);
                }
                Frame::Reset { .. } => self.finish(conn),
                _ => {}
            }
        }
    }
}

impl Frames for TlsNukleus {
    fn plumbing(&self) -> &Plumbing {
        &self.plumbing
    }

    fn on_source_frame(&mut self, source: usize, frame: Frame<'_>) {
        self.on_source(source, frame);
    }

    fn on_throttle_frame(&mut self, _target: usize, frame: Frame<'_>) {
        self.on_throttle(frame);
    }
}

impl Neighbours for TlsNukleus {
    fn plumbing_mut(&mut self) -> &mut Plumbing {
        &mut self.plumbing
    }

    fn streams_via(&self, side: Side, index: usize) -> Vec<StreamId> {
        let mut streams = Vec::new();
        for c in self.conns.values() {
            match side {
                Side::Target => {
                    if c.net_target == index {
                        streams.push(c.net_out);
                    }
                    if c.app_target == index {
                        streams.push(c.app_out);
                    }
                }
                Side::Source => {
                    if c.net_source == index {
                        streams.push(c.net_in);
                    }
                    if let Some((source, stream)) = c.app_in {
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

impl Agent for TlsNukleus {
    fn name(&self) -> &str {
        "tls"
    }

    fn do_work(&mut self, _now: Instant) -> usize {
        let mut work = self.plumbing.poll_commands(&mut self.commands);
        for pending in std::mem::take(&mut self.commands) {
            self.on_command(pending);
        }
        work += end_removed(self);
        for conn in std::mem::take(&mut self.stalled) {
            self.decrypt(conn);
            self.regrant(conn);
        }
        work += drain(self);
        self.plumbing.notify_peers();
        work
    }

    fn on_idle(&mut self) {
        self.plumbing.release_idle_rings();
    }

    fn on_close(&mut self) {
        self.plumbing.remove_files();
    }
}
