//! The webrocket nukleus: the broker on the data path. Each ws stream is a
//! client session; its messages go to [`Broker`], whose replies and
//! deliveries go back on the session's reply stream.
//!
//! ws BEGIN (initial) carries the sub-protocol, path, query, origin and
//! address ([`crate::nukleus::ws::begin`]); the path names the vhost. Credit for a session's input is granted again
//! as soon as a message is handled, so input never waits here; credit for
//! its output is what ws passed through from tcp, and running out of it is
//! what makes a session a slow consumer.

mod histories;
pub(crate) mod outlet;
mod stats;
pub(crate) mod verify;

use std::sync::mpsc::Receiver;
use std::sync::Arc;
use std::time::{Duration, Instant};

use self::outlet::{Overflow, Piece, Stream, StreamOutlet, Streams};
use self::verify::Verifier;
use crate::broker::{
    Backend, Broker, ChannelOp, ClusterHook, Completion, Io, NoWorker, Outcome, PendingChange,
    Persist, SessionKey,
};
use crate::limits::Limits;
use crate::name::VhostPath;
use crate::name::{ChannelName, EventName, SessionId};
use crate::nukleus::frame::{self, Frame, Reader, StreamId, StreamIds};
use crate::nukleus::plumbing::{end_removed, Neighbours, Pending, Plumbing, Side};
use crate::nukleus::runner::{Agent, Signal, Signals};
use crate::nukleus::ws::begin::WsBegin;
use crate::nukleus::IdMap;
use crate::protocol::backend::{code, BackendReply, BackendRequest};
use crate::protocol::CloseReason;
use crate::storage::{Change, State};
use crate::stream::CountersManager;
use serde_json::value::RawValue;

const STATS_PERIOD: Duration = Duration::from_millis(200);

/// Work for the broker from other threads (the admin API, the backend
/// exchange).
pub enum Task {
    /// An administrator's change, already durable.
    Apply(Change),
    /// Close every session (shutdown).
    CloseAll(CloseReason),
    /// A backend request (section 2: BC, OC, CC, DS); `reply` gets `Ok` or
    /// the `ER` code.
    Backend {
        /// The vhost of the requesting backend.
        vhost: VhostPath,
        /// What it asks.
        request: BackendRequest,
        /// Called with the outcome, on the broker thread.
        reply: BackendReply,
    },
    /// The node joined a cluster: broadcasts are routed and interest
    /// reported through `link` from now on.
    ClusterJoin(Box<dyn ClusterLink>),
    /// A broadcast another node ordered, for local subscribers only.
    ClusterDeliver {
        /// Vhost.
        vhost: VhostPath,
        /// Channel.
        channel: ChannelName,
        /// The encoded client message.
        delivery: Vec<u8>,
        /// Its place in the channel's history, when it keeps one.
        position: Option<crate::protocol::Position>,
    },
    /// A member of a presence channel joined (`Some(user)`) or left
    /// (`None`) on another node.
    ClusterPresence {
        /// The node.
        node: String,
        /// Vhost.
        vhost: VhostPath,
        /// Channel.
        channel: ChannelName,
        /// The member's session.
        sid: crate::name::SessionId,
        /// `Some(user)` when it joined.
        joined: Option<Option<crate::name::UserName>>,
    },
    /// A peer came up (this node's presence members are announced to it)
    /// or went down or left (its members leave).
    ClusterPeer {
        /// The peer's name.
        node: String,
        /// Whether it is up.
        up: bool,
    },
    /// A broadcast another node sent here to be ordered.
    ClusterSequence {
        /// Vhost.
        vhost: VhostPath,
        /// Channel.
        channel: ChannelName,
        /// The encoded client message.
        delivery: Vec<u8>,
        /// Nodes it crossed.
        hops: u8,
    },
    /// A backend's `DS` from another node; `reply` says whether the
    /// session is here.
    ClusterDirect {
        /// The requesting backend's vhost.
        vhost: VhostPath,
        /// Target session.
        sid: SessionId,
        /// Event name.
        event: EventName,
        /// Payload (JSON).
        data: Option<Box<RawValue>>,
        /// Called with whether it was found, on the broker thread.
        reply: Box<dyn FnOnce(bool) + Send>,
    },
    /// A backend's `KS` from another node; `reply` says whether the
    /// session was here (and is closed).
    ClusterClose {
        /// The requesting backend's vhost.
        vhost: VhostPath,
        /// Target session.
        sid: SessionId,
        /// Close code.
        code: u16,
        /// Close reason.
        reason: String,
        /// Called with whether it was found, on the broker thread.
        reply: Box<dyn FnOnce(bool) + Send>,
    },
    /// Tasks sent together (a burst of cluster deliveries), handled in
    /// order in one round ([`crate::node::Inbox::hold`]).
    Batch(Vec<Task>),
    /// The cluster's answer to a channel a session's `subscribe` creates.
    Replicated {
        /// The waiting session and the change.
        pending: PendingChange,
        /// `Err`: why the change was not committed.
        confirmed: Result<(), crate::broker::ConsensusError>,
    },
}

/// The cluster as the broker thread sees it (implemented by the cluster;
/// handed over with [`Task::ClusterJoin`]).
pub trait ClusterLink: Send {
    /// The hook the broker routes broadcasts and reports interest through.
    fn hook(&self) -> Box<dyn ClusterHook>;

    /// Copies the cluster's counters into `manager` (`cluster.*`).
    fn publish(&self, manager: &CountersManager);

    /// A backend's `DS` for a session that is not on this node: asks the
    /// other nodes; `reply` gets `Ok` or `ER 404`.
    fn direct(
        &self,
        vhost: &VhostPath,
        sid: &SessionId,
        event: &EventName,
        data: Option<&RawValue>,
        reply: BackendReply,
    );

    /// A backend's `KS` for a session that is not on this node, asked of
    /// the other nodes like a `DS`.
    fn close_session(
        &self,
        vhost: &VhostPath,
        sid: &SessionId,
        code: u16,
        reason: &str,
        reply: BackendReply,
    );
}

/// The backend until workers exist: nobody takes triggers.
pub struct NoBackend;

impl Backend for NoBackend {
    fn trigger(&mut self, _vhost: &VhostPath, _payload: &[u8]) -> Result<(), NoWorker> {
        Err(NoWorker)
    }

    // No worker asked for session events.
    fn session_event(&mut self, _vhost: &VhostPath, _payload: &[u8]) {}
}

/// The webrocket nukleus.
pub struct WebrocketNukleus {
    plumbing: Plumbing,
    broker: Broker,
    persist: Box<dyn Persist + Send>,
    backend: Box<dyn Backend + Send>,
    streams: Streams,
    by_reply: IdMap<i64>,
    overflow: Overflow,
    ids: StreamIds,
    commands: Vec<Pending>,
    verifier: Verifier,
    tasks: Receiver<Task>,
    input_window: i64,
    stats: stats::Publisher,
    next_stats: Instant,
    cluster: Option<Box<dyn ClusterLink>>,
    /// Files of durable channel histories (`None`: none could be opened).
    histories: Option<crate::storage::history_files::HistoryFiles>,
}

impl WebrocketNukleus {
    /// Creates the nukleus. `signal` is the one of the thread that runs it
    /// (already registered as "webrocket" in `signals`); durable channel
    /// histories are read back from, and kept in, `storage_dir`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        run_dir: &std::path::Path,
        storage_dir: &std::path::Path,
        ring_capacity: usize,
        signals: Arc<Signals>,
        signal: Arc<Signal>,
        state: &State,
        limits: &Limits,
        tasks: Receiver<Task>,
        backend: Box<dyn Backend + Send>,
        persist: Box<dyn Persist + Send>,
    ) -> std::io::Result<Self> {
        let plumbing = Plumbing::create(run_dir, "webrocket", ring_capacity, signals)?;
        let stats = stats::Publisher::new(&plumbing.counters);
        let mut broker = Broker::new(state, limits);
        let histories = histories::open(&mut broker, storage_dir, limits);
        Ok(WebrocketNukleus {
            plumbing,
            broker,
            persist,
            backend,
            streams: IdMap::default(),
            by_reply: IdMap::default(),
            overflow: Overflow::default(),
            ids: StreamIds::reply(),
            commands: Vec::new(),
            verifier: Verifier::start(2, limits.max_pending_secret_checks, signal)?,
            tasks,
            input_window: 2 * (limits.max_message_size as i64 + 64),
            stats,
            next_stats: Instant::now(),
            cluster: None,
            histories,
        })
    }

    /// Runs `f` with the broker and an [`Io`] over this nukleus's streams,
    /// then hands a secret check to the verifier (the broker answers it at
    /// once when the verifier is full), or a change to the cluster.
    fn with_io(&mut self, f: impl FnOnce(&mut Broker, &mut Io<'_>) -> Outcome) {
        let mut outlet = StreamOutlet {
            streams: &mut self.streams,
            targets: &mut self.plumbing.targets,
            overflow: &mut self.overflow,
        };
        let mut io = Io {
            outlet: &mut outlet,
            backend: self.backend.as_mut(),
            persist: self.persist.as_mut(),
        };
        let mut outcome = f(&mut self.broker, &mut io);
        let pending = loop {
            match outcome {
                Outcome::Done => break None,
                Outcome::CheckSecret(check) => match self.verifier.submit(check) {
                    Ok(()) => break None,
                    Err(check) => outcome = self.broker.refuse_secret_check(check, &mut io),
                },
                Outcome::Replicate(pending) => break Some(pending),
            }
        };
        if let Some(pending) = pending {
            let change = pending.change().clone();
            self.persist.propose(change, Completion::Session(pending));
        }
    }

    fn read_ws(&mut self) -> usize {
        let mut work = 0;
        for source in 0..self.plumbing.sources.len() {
            let file = std::sync::Arc::clone(&self.plumbing.sources[source].file);
            work +=
                file.forward.read(
                    crate::nukleus::ROUND_FRAMES,
                    |type_id, body| match Frame::decode(type_id, body) {
                        Ok(frame) => self.on_frame(source, frame),
                        Err(error) => tracing::warn!(%error, "bad frame from ws"),
                    },
                );
        }
        work
    }

    fn on_frame(&mut self, source: usize, frame: Frame<'_>) {
        match frame {
            Frame::Begin {
                stream,
                reference: _,
                extension,
            } => self.open(source, stream, extension),
            Frame::Data { stream, payload } => self.on_data(stream, payload),
            Frame::Multicast { streams, payload } => {
                for stream in streams.iter() {
                    self.on_data(stream, payload);
                }
            }
            Frame::End { stream, extension } => {
                let mut r = Reader::new(extension);
                let code = r.i16().unwrap_or(1005);
                let text = r.string().ok().flatten().unwrap_or("");
                let reason = match code {
                    1006 => CloseReason::ConnectionLost,
                    1002 => CloseReason::ProtocolError,
                    1007 => CloseReason::InvalidData,
                    1009 => CloseReason::MessageTooBig,
                    _ if text == crate::nukleus::ws::credit::IDLE_REASON => CloseReason::Idle,
                    _ => CloseReason::ClientClosed,
                };
                self.forget(stream, reason);
            }
            Frame::Reset { stream } => self.forget(stream, CloseReason::ConnectionLost),
            Frame::Window { .. } => {}
        }
    }

    fn open(&mut self, source: usize, initial: StreamId, extension: &[u8]) {
        let begin = WsBegin::decode(extension).unwrap_or_default();
        let path = begin.path;
        tracing::debug!(
            path,
            query = begin.query,
            origin = begin.origin,
            remote = ?begin.remote,
            "session begins"
        );
        let Some(target) = self
            .plumbing
            .target_index(&self.plumbing.sources[source].name)
        else {
            self.plumbing.sources[source].throttle(frame::RESET, &[&initial.bytes()]);
            return;
        };
        let key = SessionKey(initial.0 as u64);
        // A refusal is a RESET instead of a reply stream: ws answers the
        // upgrade with 503.
        let sid = VhostPath::try_from(path)
            .map_err(|e| e.to_string())
            .and_then(|vhost| {
                self.broker
                    .open_session(key, &vhost)
                    .map_err(|e| e.to_string())
            });
        let sid = match sid {
            Ok(sid) => sid,
            Err(refusal) => {
                tracing::debug!(%refusal, "session refused");
                self.plumbing.sources[source].throttle(frame::RESET, &[&initial.bytes()]);
                return;
            }
        };
        let mut greeting = Vec::with_capacity(64);
        crate::protocol::encode::encode_connected(&mut greeting, sid.as_str());
        let reply = self.ids.next_id();
        self.plumbing.targets[target].write(frame::BEGIN, &[&frame::begin_head(reply, initial.0)]);
        self.streams.insert(
            initial.0,
            Box::new(Stream::new(
                source,
                target,
                reply,
                self.input_window,
                Some(greeting),
            )),
        );
        self.by_reply.insert(reply.0, initial.0);
        let body = frame::window_body(initial, self.input_window as i32, 0);
        self.plumbing.sources[source].throttle(frame::WINDOW, &[&body]);
    }

    fn on_data(&mut self, initial: StreamId, payload: &[u8]) {
        let Some(stream) = self.streams.get_mut(&initial.0) else {
            return;
        };
        let key = SessionKey(initial.0 as u64);
        match stream.take(payload) {
            Piece::Part => return,
            Piece::Whole(message) => self.with_io(|broker, io| broker.on_message(key, message, io)),
            Piece::Assembled(message) => {
                self.with_io(|broker, io| broker.on_message(key, &message, io))
            }
        }
        if let Some(stream) = self.streams.get_mut(&initial.0) {
            if let Some(body) = stream.renew(initial, self.input_window) {
                self.plumbing.sources[stream.source].throttle(frame::WINDOW, &[&body]);
            }
        }
    }

    fn forget(&mut self, initial: StreamId, reason: CloseReason) {
        let key = SessionKey(initial.0 as u64);
        self.broker.close_session(key, reason);
        let mut outlet = StreamOutlet {
            streams: &mut self.streams,
            targets: &mut self.plumbing.targets,
            overflow: &mut self.overflow,
        };
        self.broker.settle(&mut outlet);
        outlet.end(key, 1000, "");
        if let Some(stream) = self.streams.remove(&initial.0) {
            self.by_reply.remove(&stream.reply.0);
        }
    }

    fn read_throttles(&mut self) -> usize {
        let mut work = 0;
        for target in 0..self.plumbing.targets.len() {
            let file = std::sync::Arc::clone(&self.plumbing.targets[target].file);
            work += file
                .throttle
                .read(crate::nukleus::ROUND_FRAMES, |type_id, body| {
                    let Ok(frame) = Frame::decode(type_id, body) else {
                        return;
                    };
                    let Some(&initial) = self.by_reply.get(&frame.stream().0) else {
                        return;
                    };
                    match frame {
                        Frame::Window {
                            credit, padding, ..
                        } => {
                            if let Some(stream) = self.streams.get_mut(&initial) {
                                stream.on_window(credit, padding);
                                stream.greet(&mut self.plumbing.targets, &mut self.overflow);
                            }
                        }
                        Frame::Reset { .. } => {
                            self.forget(StreamId(initial), CloseReason::ConnectionLost)
                        }
                        _ => {}
                    }
                });
        }
        work
    }

    fn run_tasks(&mut self) -> usize {
        let mut work = 0;
        while let Ok(task) = self.tasks.try_recv() {
            work += 1;
            self.run_task(task);
        }
        while let Some((check, verified)) = self.verifier.try_result() {
            work += 1;
            self.with_io(|broker, io| broker.finish_authenticate(check, verified, io));
        }
        work
    }

    fn run_task(&mut self, task: Task) {
        match task {
            Task::Batch(tasks) => {
                for task in tasks {
                    self.run_task(task);
                }
            }
            Task::Apply(change) => self.with_io(|broker, io| {
                broker.apply_change(&change, io);
                Outcome::Done
            }),
            Task::Backend {
                vhost,
                request,
                reply,
            } => {
                if let Some(reply) = self.cluster_backend(&vhost, &request, reply) {
                    let mut result = Err(code::INTERNAL_ERROR);
                    self.with_io(|broker, io| {
                        result = backend_request(broker, &vhost, request, io);
                        Outcome::Done
                    });
                    match result {
                        Ok(ChannelOp::Replicate(change)) => {
                            self.persist.propose(change, Completion::Backend(reply))
                        }
                        Ok(ChannelOp::Done) => reply(Ok(())),
                        Err(code) => reply(Err(code)),
                    }
                }
            }
            Task::CloseAll(reason) => self.close_all(reason),
            Task::Replicated { pending, confirmed } => {
                self.with_io(|broker, io| broker.finish_replicate(pending, confirmed, io))
            }
            cluster => self.cluster_task(cluster),
        }
    }

    /// A backend request the cluster takes over: a `DS` for a session that
    /// is not here goes to the other nodes. Returns `reply` when the
    /// request is still to be done here.
    fn cluster_backend(
        &mut self,
        vhost: &VhostPath,
        request: &BackendRequest,
        reply: BackendReply,
    ) -> Option<BackendReply> {
        let Some(cluster) = &self.cluster else {
            return Some(reply);
        };
        match request {
            BackendRequest::Direct { sid, event, data }
                if self.broker.session_by_sid(sid).is_none() =>
            {
                cluster.direct(vhost, sid, event, data.as_deref(), reply);
                None
            }
            BackendRequest::CloseSession { sid, code, reason }
                if self.broker.session_by_sid(sid).is_none() =>
            {
                cluster.close_session(vhost, sid, *code, reason, reply);
                None
            }
            _ => Some(reply),
        }
    }

    /// Work the cluster sends to the broker.
    fn cluster_task(&mut self, task: Task) {
        match task {
            Task::ClusterJoin(link) => {
                self.broker.set_cluster(link.hook());
                self.cluster = Some(link);
            }
            Task::ClusterDeliver {
                vhost,
                channel,
                delivery,
                position,
            } => self.with_io(|broker, io| {
                broker.deliver_remote(&vhost, &channel, &delivery, position, io.outlet);
                Outcome::Done
            }),
            Task::ClusterPresence {
                node,
                vhost,
                channel,
                sid,
                joined,
            } => self.with_io(|broker, io| {
                broker.remote_member(&node, &vhost, &channel, &sid, joined, io.outlet);
                Outcome::Done
            }),
            Task::ClusterPeer { node, up } => self.with_io(|broker, io| {
                // What it reported before is stale either way (a restart
                // comes up with a new incarnation and announces its members
                // again, after this).
                broker.remote_node_gone(&node, io.outlet);
                if up {
                    broker.announce_members();
                }
                Outcome::Done
            }),
            Task::ClusterSequence {
                vhost,
                channel,
                delivery,
                hops,
            } => self.with_io(|broker, io| {
                broker.sequence_remote(&vhost, &channel, &delivery, hops, io.outlet);
                Outcome::Done
            }),
            Task::ClusterDirect {
                vhost,
                sid,
                event,
                data,
                reply,
            } => {
                let mut found = false;
                self.with_io(|broker, io| {
                    found = broker
                        .direct(&vhost, &sid, &event, data.as_deref(), io)
                        .is_ok();
                    Outcome::Done
                });
                reply(found);
            }
            Task::ClusterClose {
                vhost,
                sid,
                code,
                reason,
                reply,
            } => {
                let mut found = false;
                self.with_io(|broker, io| {
                    found = broker
                        .close_by_backend(&vhost, &sid, code, &reason, io.outlet)
                        .is_ok();
                    Outcome::Done
                });
                reply(found);
            }
            Task::Apply(_)
            | Task::CloseAll(_)
            | Task::Backend { .. }
            | Task::Replicated { .. }
            | Task::Batch(_) => {}
        }
    }

    fn close_all(&mut self, reason: CloseReason) {
        let keys: Vec<i64> = self.streams.keys().copied().collect();
        for key in keys {
            let key = SessionKey(key as u64);
            self.broker.close_session(key, reason);
            let mut outlet = StreamOutlet {
                streams: &mut self.streams,
                targets: &mut self.plumbing.targets,
                overflow: &mut self.overflow,
            };
            self.broker.settle(&mut outlet);
            outlet.end(key, reason.code(), reason.reason());
        }
    }
}

fn backend_request(
    broker: &mut Broker,
    vhost: &VhostPath,
    request: BackendRequest,
    io: &mut Io<'_>,
) -> Result<ChannelOp, u16> {
    match request {
        BackendRequest::Broadcast {
            channel,
            event,
            data,
        } => broker
            .backend_broadcast(vhost, &channel, &event, data.as_deref(), io)
            .map(|_| ChannelOp::Done)
            .map_err(|e| e.code()),
        BackendRequest::BroadcastExcept {
            channel,
            event,
            data,
            skip,
        } => broker
            .broadcast_except(
                vhost,
                &channel,
                &event,
                data.as_deref(),
                &skip,
                true,
                io.outlet,
            )
            .map(|_| ChannelOp::Done)
            .map_err(|e| e.code()),
        BackendRequest::OpenChannel(channel) => broker
            .open_channel(vhost, &channel, io)
            .map_err(|e| e.code()),
        BackendRequest::CloseChannel(channel) => broker
            .close_channel(vhost, &channel, io)
            .map_err(|e| e.code()),
        BackendRequest::Direct { sid, event, data } => broker
            .direct(vhost, &sid, &event, data.as_deref(), io)
            .map(|()| ChannelOp::Done)
            .map_err(|_| code::NOT_FOUND),
        BackendRequest::CloseSession {
            sid,
            code: close_code,
            reason,
        } => broker
            .close_by_backend(vhost, &sid, close_code, &reason, io.outlet)
            .map(|()| ChannelOp::Done)
            .map_err(|_| code::NOT_FOUND),
    }
}

impl Neighbours for WebrocketNukleus {
    fn plumbing_mut(&mut self) -> &mut Plumbing {
        &mut self.plumbing
    }

    fn streams_via(&self, side: Side, index: usize) -> Vec<StreamId> {
        outlet::streams_via(&self.streams, side, index)
    }

    fn on_neighbour_reset(&mut self, side: Side, _index: usize, stream: StreamId) {
        let Some(initial) = outlet::initial_of(&self.by_reply, side, stream) else {
            return;
        };
        self.forget(initial, CloseReason::ConnectionLost);
    }
}

impl Agent for WebrocketNukleus {
    fn name(&self) -> &str {
        "webrocket"
    }

    fn do_work(&mut self, now: Instant) -> usize {
        let mut work = self.plumbing.poll_commands(&mut self.commands);
        for pending in std::mem::take(&mut self.commands) {
            // Sessions come from ws bindings; the broker takes no BIND.
            self.plumbing
                .respond(crate::nukleus::command::Response::error(
                    pending.correlation,
                ));
        }
        work += end_removed(self);
        work += self.overflow.drain(&mut self.plumbing.targets);
        work += self.read_throttles();
        work += self.run_tasks();
        if self.overflow.is_empty() {
            work += self.read_ws();
        }
        for (vhost, payload) in self.broker.take_session_events() {
            self.backend.session_event(&vhost, &payload);
        }
        // One write per changed durable history per round, before the
        // round's replies can leave through tcp on this thread.
        if let Some(files) = &mut self.histories {
            histories::flush(&mut self.broker, files);
        }
        if now >= self.next_stats {
            self.next_stats = now + STATS_PERIOD;
            self.stats.publish(self.broker.stats());
            self.stats
                .publish_vhosts(&self.plumbing.counters, &self.broker.vhost_stats());
            if let Some(cluster) = &self.cluster {
                cluster.publish(&self.plumbing.counters);
            }
        }
        self.plumbing.notify_peers();
        work
    }

    fn deadline(&self) -> Option<Instant> {
        Some(self.next_stats)
    }

    fn on_idle(&mut self) {
        self.plumbing.release_idle_rings();
    }

    fn on_close(&mut self) {
        if let Some(files) = &mut self.histories {
            histories::flush(&mut self.broker, files);
            files.close();
        }
        self.stats.publish(self.broker.stats());
        self.plumbing.remove_files();
    }
}
