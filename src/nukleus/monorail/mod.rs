//! The monorail nukleus: the MonoRail dialect (seed 002) on the data
//! path. Each resource of a vhost is a `ws BIND` of its own path,
//! `/<vhost>/<resource>`, handled here; its messages go to [`Monorail`]
//! (the pure state machine in `core`), whose answers and notifications go
//! back on the session's reply stream, with the same credit and
//! slow-consumer policy as the webrocket nukleus (its `outlet`).
//!
//! Items live in the durable state and reach this nukleus as committed
//! changes ([`Task::Apply`]), exactly like channel changes reach the
//! broker; backends write them with `PI` / `RI` and broadcast with `RB`
//! (`backend`).

pub mod amqp;
mod core;
pub mod message;
pub mod params;

use std::sync::mpsc::Receiver;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub use self::core::{AnswerError, Ask, AuthCheck, BroadcastError, Monorail, MonorailStats};
use crate::broker::Backend;
use crate::broker::SessionKey;
use crate::limits::Limits;
use crate::name::{ResourceName, SessionId, VhostPath};
use crate::nukleus::frame::{self, Frame, StreamId, StreamIds};
use crate::nukleus::plumbing::{end_removed, Neighbours, Pending, Plumbing, Side};
use crate::nukleus::runner::{Agent, Signal, Signals};
use crate::nukleus::webrocket::outlet::{self, Overflow, Piece, Stream, StreamOutlet};
use crate::nukleus::webrocket::verify::Verifier;
use crate::nukleus::ws::begin::WsBegin;
use crate::nukleus::IdMap;
use crate::protocol::backend::{code, BackendReply};
use crate::protocol::CloseReason;
use crate::storage::{Change, State};
use crate::stream::Counter;
use std::collections::VecDeque;

const STATS_PERIOD: Duration = Duration::from_millis(200);

/// Work for the monorail nukleus from other threads.
pub enum Task {
    /// A committed change (every change: users and vhosts matter too).
    Apply(Change),
    /// A backend's `RB`: a message to the sessions of a resource (or of
    /// every resource of the vhost), but those skipped.
    Broadcast {
        /// The backend's vhost.
        vhost: VhostPath,
        /// `None`: every resource of the vhost.
        resource: Option<ResourceName>,
        /// The message, a JSON object with a `handler`.
        payload: Vec<u8>,
        /// Sessions that do not get it.
        skip: Vec<SessionId>,
        /// `OK`, or `ER 404` when the resource does not exist.
        reply: BackendReply,
    },
    /// A worker's `RA`: the answer to a `backend` resource's request.
    Answer {
        /// The worker's vhost.
        vhost: VhostPath,
        /// The request id.
        request: u64,
        /// The message for the session.
        payload: Vec<u8>,
        /// `OK`; `ER 404` when no such request waits, 400 when malformed.
        reply: BackendReply,
    },
    /// A message of an `amqp` resource's exchange.
    Feed {
        /// The vhost.
        vhost: VhostPath,
        /// The resource.
        resource: ResourceName,
        /// What it says.
        feed: amqp::Feed,
    },
    /// Close every session (shutdown).
    CloseAll(CloseReason),
}

/// The monorail nukleus.
pub struct MonorailNukleus {
    plumbing: Plumbing,
    monorail: Monorail,
    streams: outlet::Streams,
    by_reply: IdMap<i64>,
    overflow: Overflow,
    ids: StreamIds,
    commands: Vec<Pending>,
    verifier: Verifier<AuthCheck>,
    tasks: Receiver<Task>,
    input_window: i64,
    counters: Vec<Counter>,
    next_stats: Instant,
    backend: Box<dyn Backend + Send>,
    /// Requests handed to workers, oldest first, with their deadlines.
    deadlines: VecDeque<(Instant, u64)>,
    request_timeout: Duration,
}

const COUNTERS: [&str; 6] = [
    "monorail.sessions",
    "monorail.messages",
    "monorail.errors",
    "monorail.notifications",
    "monorail.slow_consumers",
    "monorail.broadcasts",
];

impl MonorailNukleus {
    /// Creates the nukleus; `signal` is the one of the thread that runs it
    /// (registered as "monorail" in `signals`).
    #[allow(clippy::too_many_arguments)] // the parts the server hands over
    pub fn new(
        run_dir: &std::path::Path,
        signals: Arc<Signals>,
        signal: Arc<Signal>,
        state: &State,
        limits: &Limits,
        tasks: Receiver<Task>,
        backend: Box<dyn Backend + Send>,
        node: Option<&str>,
    ) -> std::io::Result<Self> {
        let plumbing = Plumbing::create(run_dir, "monorail", limits.ring_capacity, signals)?;
        let counters = COUNTERS
            .iter()
            .filter_map(|label| plumbing.counters.allocate(label).ok())
            .collect();
        Ok(MonorailNukleus {
            plumbing,
            monorail: Monorail::new(state, limits).with_node(node),
            streams: IdMap::default(),
            by_reply: IdMap::default(),
            overflow: Overflow::default(),
            ids: StreamIds::reply(),
            commands: Vec::new(),
            verifier: Verifier::start(1, limits.max_pending_secret_checks, signal)?,
            tasks,
            input_window: 2 * (limits.max_message_size as i64 + 64),
            counters,
            next_stats: Instant::now(),
            backend,
            deadlines: VecDeque::new(),
            request_timeout: limits.backend_request_timeout,
        })
    }

    /// Runs `f` with the state machine and an outlet over the streams,
    /// then hands a secret check to the verifier (answered at once when
    /// the verifier is full).
    fn with_outlet(
        &mut self,
        f: impl FnOnce(&mut Monorail, &mut StreamOutlet<'_>) -> Option<AuthCheck>,
    ) {
        let mut outlet = StreamOutlet {
            streams: &mut self.streams,
            targets: &mut self.plumbing.targets,
            overflow: &mut self.overflow,
        };
        let mut check = f(&mut self.monorail, &mut outlet);
        while let Some(pending) = check.take() {
            if let Err(refused) = self.verifier.submit(pending) {
                check = self.monorail.refuse_check(refused, &mut outlet);
            }
        }
        let now = Instant::now();
        for ask in self.monorail.take_asks() {
            match self.backend.trigger(&ask.vhost, &ask.payload) {
                Ok(()) => self
                    .deadlines
                    .push_back((now + self.request_timeout, ask.id)),
                Err(_) => {
                    let why = "no backend worker can handle this request";
                    self.monorail.fail_request(ask.id, why, &mut outlet);
                }
            }
        }
    }

    /// Requests no worker answered in time get `ASSIGNATION_FAILED`.
    fn expire_requests(&mut self, now: Instant) -> usize {
        let mut work = 0;
        while self.deadlines.front().is_some_and(|(at, _)| *at <= now) {
            let Some((_, id)) = self.deadlines.pop_front() else {
                break;
            };
            let mut outlet = StreamOutlet {
                streams: &mut self.streams,
                targets: &mut self.plumbing.targets,
                overflow: &mut self.overflow,
            };
            let why = "no backend worker answered in time";
            self.monorail.fail_request(id, why, &mut outlet);
            work += 1;
        }
        work
    }

    fn read_ws(&mut self) -> usize {
        let mut work = 0;
        for source in 0..self.plumbing.sources.len() {
            let file = Arc::clone(&self.plumbing.sources[source].file);
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
                stream, extension, ..
            } => self.open(source, stream, extension),
            Frame::Data { stream, payload } => self.on_data(stream, payload),
            Frame::Multicast { streams, payload } => {
                for stream in streams.iter() {
                    self.on_data(stream, payload);
                }
            }
            Frame::End { stream, .. } | Frame::Reset { stream } => self.forget(stream),
            Frame::Window { .. } => {}
        }
    }

    fn open(&mut self, source: usize, initial: StreamId, extension: &[u8]) {
        let path = WsBegin::decode(extension).unwrap_or_default().path;
        let target = self
            .plumbing
            .target_index(&self.plumbing.sources[source].name);
        let key = SessionKey(initial.0 as u64);
        let opened = match target {
            Some(target) => self.monorail.open_session(key, path).map(|()| target),
            None => Err(core::OpenError::NoRoute),
        };
        let target = match opened {
            Ok(target) => target,
            Err(refusal) => {
                // A RESET instead of a reply stream: ws answers 503.
                tracing::debug!(%refusal, "monorail session refused");
                self.plumbing.sources[source].throttle(frame::RESET, &[&initial.bytes()]);
                return;
            }
        };
        let reply = self.ids.next_id();
        self.plumbing.targets[target].write(frame::BEGIN, &[&frame::begin_head(reply, initial.0)]);
        self.streams.insert(
            initial.0,
            // A MonoRail session learns its id by asking (`init`).
            Box::new(Stream::new(source, target, reply, self.input_window, None)),
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
            Piece::Whole(message) => self.with_outlet(|m, out| m.on_message(key, message, out)),
            Piece::Assembled(message) => {
                self.with_outlet(|m, out| m.on_message(key, &message, out))
            }
        }
        if let Some(stream) = self.streams.get_mut(&initial.0) {
            if let Some(body) = stream.renew(initial, self.input_window) {
                self.plumbing.sources[stream.source].throttle(frame::WINDOW, &[&body]);
            }
        }
    }

    fn forget(&mut self, initial: StreamId) {
        let key = SessionKey(initial.0 as u64);
        self.monorail.close_session(key);
        let mut outlet = StreamOutlet {
            streams: &mut self.streams,
            targets: &mut self.plumbing.targets,
            overflow: &mut self.overflow,
        };
        outlet.end(key, 1000, "");
        if let Some(stream) = self.streams.remove(&initial.0) {
            self.by_reply.remove(&stream.reply.0);
        }
    }

    fn read_throttles(&mut self) -> usize {
        let mut work = 0;
        for target in 0..self.plumbing.targets.len() {
            let file = Arc::clone(&self.plumbing.targets[target].file);
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
                            }
                        }
                        Frame::Reset { .. } => self.forget(StreamId(initial)),
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
            match task {
                Task::Apply(change) => self.with_outlet(|m, out| {
                    m.apply_change(&change, out);
                    None
                }),
                Task::Broadcast {
                    vhost,
                    resource,
                    payload,
                    skip,
                    reply,
                } => {
                    let mut result = Err(code::NOT_FOUND);
                    self.with_outlet(|m, out| {
                        result = m
                            .broadcast(&vhost, resource.as_ref(), &payload, &skip, out)
                            .map(drop)
                            .map_err(|_| code::NOT_FOUND);
                        None
                    });
                    reply(result);
                }
                Task::Answer {
                    vhost,
                    request,
                    payload,
                    reply,
                } => {
                    let mut result = Err(code::NOT_FOUND);
                    self.with_outlet(|m, out| {
                        result = m
                            .answer(&vhost, request, &payload, out)
                            .map_err(|e| match e {
                                AnswerError::NotFound => code::NOT_FOUND,
                                AnswerError::Malformed => code::BAD_REQUEST,
                            });
                        None
                    });
                    reply(result);
                }
                Task::Feed {
                    vhost,
                    resource,
                    feed,
                } => self.with_outlet(|m, out| {
                    m.feed(&vhost, &resource, feed, out);
                    None
                }),
                Task::CloseAll(reason) => self.close_all(reason),
            }
        }
        while let Some((check, verified)) = self.verifier.try_result() {
            work += 1;
            self.with_outlet(|m, out| m.finish_authenticate(check, verified, out));
        }
        work
    }

    fn close_all(&mut self, reason: CloseReason) {
        let keys: Vec<i64> = self.streams.keys().copied().collect();
        for key in keys {
            let key = SessionKey(key as u64);
            self.monorail.close_session(key);
            let mut outlet = StreamOutlet {
                streams: &mut self.streams,
                targets: &mut self.plumbing.targets,
                overflow: &mut self.overflow,
            };
            outlet.end(key, reason.code(), reason.reason());
        }
    }

    fn publish(&self) {
        let stats = self.monorail.stats();
        let values = [
            stats.sessions,
            stats.messages,
            stats.errors,
            stats.notifications,
            stats.slow_consumers,
            stats.broadcasts,
        ];
        for (counter, value) in self.counters.iter().zip(values) {
            counter.set(value as i64);
        }
    }
}

impl Neighbours for MonorailNukleus {
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
        self.forget(initial);
    }
}

impl Agent for MonorailNukleus {
    fn name(&self) -> &str {
        "monorail"
    }

    fn do_work(&mut self, now: Instant) -> usize {
        let mut work = self.plumbing.poll_commands(&mut self.commands);
        for pending in std::mem::take(&mut self.commands) {
            // Sessions come from ws bindings; this nukleus takes no BIND.
            self.plumbing
                .respond(crate::nukleus::command::Response::error(
                    pending.correlation,
                ));
        }
        work += end_removed(self);
        work += self.overflow.drain(&mut self.plumbing.targets);
        work += self.read_throttles();
        work += self.run_tasks();
        work += self.expire_requests(now);
        if self.overflow.is_empty() {
            work += self.read_ws();
        }
        if now >= self.next_stats {
            self.next_stats = now + STATS_PERIOD;
            self.publish();
        }
        self.plumbing.notify_peers();
        work
    }

    fn deadline(&self) -> Option<Instant> {
        let request = self.deadlines.front().map(|(at, _)| *at);
        Some(request.map_or(self.next_stats, |at| at.min(self.next_stats)))
    }

    fn on_idle(&mut self) {
        self.plumbing.release_idle_rings();
    }

    fn on_close(&mut self) {
        self.publish();
        self.plumbing.remove_files();
    }
}
