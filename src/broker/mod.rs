//! The webrocket nukleus: the broker's pure state machine.
//!
//! The broker owns vhosts, channels and client sessions, and answers the
//! client protocol (spec section 1). It does no I/O: the glue feeds it
//! messages and admin/backend operations, and it talks back through the
//! [`Outlet`], [`Backend`] and [`Persist`] traits bundled in [`Io`].
//!
//! - [`session`]: [`SessionKey`] and the per-session state.
//! - `vhost`, `channel`: users, channels and subscriber lists.
//! - `request`: the client requests (subscribe ... disconnect).
//! - `auth`: authentication, with the secret check run off the broker thread.
//! - `pending`: work finished off the broker thread (secret checks, channel
//!   changes a cluster must confirm) and the messages held meanwhile.
//! - `admin`: storage changes applied while running.
//! - `backend`: operations backends request (broadcast, open/close channel,
//!   direct messages).
//! - `durable`: what durable histories hand to their files each round.
//! - [`stats`]: counters the glue publishes.
//!
//! # Slow consumers
//!
//! The one policy, enforced in `Outbox::offer` and nowhere else: when the
//! outlet refuses a message for a session (its pending outbound bytes would
//! pass `max_pending_bytes`), that session gets nothing more, is closed with
//! [`CloseReason::SlowConsumer`] once the current operation finishes, and
//! is counted. The operation carries on with everyone else; a fan-out never
//! waits for one consumer.
//!
//! # Order
//!
//! Replies go out in request order (requests that arrive during a secret
//! check or a cluster commit are held, see `pending`). A broadcast is
//! delivered to every subscriber before the sender gets `broadcasted`, so
//! all subscribers of a channel see its messages in processing order.

mod admin;
mod auth;
mod backend;
mod channel;
mod cluster;
mod durable;
mod events;
mod except;
mod history;
mod io;
mod pending;
mod presence;
mod recovery;
mod request;
pub mod session;
pub mod stats;
mod vhost;

#[cfg(test)]
mod tests;

use std::collections::{HashMap, HashSet};

pub use auth::SecretCheck;
pub use backend::{BackendError, NotFound};
pub use cluster::{ClusterHook, Route};
pub use durable::HistoryWrite;
pub use io::{send_each, Backend, Completion, Io, NoWorker, Outlet, Persist};
pub use pending::{ChannelOp, ConsensusError, Outcome, PendingChange};
pub use session::SessionKey;
pub use stats::{BrokerStats, VhostStats};

use crate::limits::Limits;
use crate::name::{ChannelName, SessionId, VhostPath};
use crate::protocol::{encode_error, encode_reply, ClientError, CloseReason, Reply};
use crate::storage::State;

use history::{Clock, EpochSource};
use session::{Hold, Session};
use vhost::Vhost;

/// Why [`Broker::open_session`] refused a session.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// No such vhost (answer HTTP 404).
    #[error("no vhost {0}")]
    UnknownVhost(VhostPath),
    /// The vhost has `limit` sessions already (answer HTTP 503, or close
    /// with [`CloseReason::Overloaded`] if already upgraded).
    #[error("vhost {vhost} has reached its limit of {limit} connections")]
    TooManyConnections {
        /// The vhost.
        vhost: VhostPath,
        /// `max_connections_per_vhost`.
        limit: usize,
    },
    /// The glue reused a key that is still open (a glue bug).
    #[error("session key {0} is already open")]
    KeyInUse(SessionKey),
}

/// The broker state machine. Single-threaded: the glue owns it and calls it
/// from one place.
#[derive(Debug)]
pub struct Broker {
    limits: Limits,
    vhosts: HashMap<VhostPath, Vhost>,
    /// Boxed: a table of 16,384 sessions has 32,768 slots, all of them
    /// touched, so a slot is kept to a pointer (ARCHITECTURE.md, "Memory per
    /// connection").
    sessions: HashMap<SessionKey, Box<Session>>,
    sids: HashMap<SessionId, SessionKey>,
    outbox: Outbox,
    /// Scratch buffer every message is encoded into, once, then offered.
    buf: Vec<u8>,
    /// Routes broadcasts through the cluster; empty on a single node.
    cluster: cluster::HookSlot,
    /// Epochs of the channels this node orders.
    epochs: EpochSource,
    /// Bytes all channel histories hold (`limits.max_history_bytes`).
    history_bytes: usize,
    /// Wall-clock time for durable histories.
    clock: Clock,
    /// Whole-file writes and removals for the history files, in order.
    history_writes: Vec<HistoryWrite>,
    /// Channels whose durable history journaled records this round.
    history_dirty: Vec<(VhostPath, ChannelName)>,
    /// Members that left presence channels, to announce.
    departures: Vec<presence::Departure>,
    /// Session events for backends, until the glue takes them.
    session_events: Vec<(VhostPath, Vec<u8>)>,
}

/// The counters and the sessions found slow during the current operation.
/// Kept apart from the rest of the broker so a fan-out can borrow a channel's
/// subscriber list and this at once.
#[derive(Debug, Default)]
struct Outbox {
    stats: BrokerStats,
    /// A set: a fan-out checks every subscriber against it.
    slow: HashSet<SessionKey>,
    /// The receivers of the fan-out under way (reused).
    many: Vec<SessionKey>,
    /// The receivers that had no room (reused).
    refused: Vec<SessionKey>,
}

impl Outbox {
    /// The slow-consumer policy (see the module docs): offer `payload` to
    /// `key` unless it is already found slow; on refusal, mark it slow.
    fn offer(&mut self, outlet: &mut dyn Outlet, key: SessionKey, payload: &[u8]) -> bool {
        if !self.slow.is_empty() && self.slow.contains(&key) {
            return false;
        }
        if outlet.send(key, payload) {
            self.stats.messages_out += 1;
            self.stats.bytes_out += payload.len() as u64;
            true
        } else {
            self.slow.insert(key);
            false
        }
    }

    /// [`Outbox::offer`] to each of `keys` at once, through
    /// [`Outlet::send_many`]; returns how many took it.
    fn offer_many(
        &mut self,
        outlet: &mut dyn Outlet,
        keys: impl Iterator<Item = SessionKey>,
        payload: &[u8],
    ) -> u64 {
        self.many.clear();
        if self.slow.is_empty() {
            self.many.extend(keys);
        } else {
            let slow = &self.slow;
            self.many.extend(keys.filter(|key| !slow.contains(key)));
        }
        self.refused.clear();
        let sent = outlet.send_many(&self.many, payload, &mut self.refused) as u64;
        self.slow.extend(self.refused.drain(..));
        self.stats.messages_out += sent;
        self.stats.bytes_out += sent * payload.len() as u64;
        sent
    }
}

impl Broker {
    /// A broker serving the vhosts, users and channels of `state`.
    pub fn new(state: &State, limits: &Limits) -> Self {
        let clock = Clock::now();
        let vhosts: HashMap<VhostPath, Vhost> = state
            .vhosts
            .iter()
            .map(|(path, record)| {
                let vhost = Vhost::from_record(record, limits.max_history_bytes_per_channel, clock);
                (path.clone(), vhost)
            })
            .collect();
        let mut outbox = Outbox::default();
        outbox.stats.channels = vhosts.values().map(|v| v.channels.len() as u64).sum();
        Broker {
            limits: limits.clone(),
            vhosts,
            sessions: HashMap::new(),
            sids: HashMap::new(),
            outbox,
            buf: Vec::with_capacity(1024),
            cluster: cluster::HookSlot::default(),
            epochs: EpochSource::random(),
            history_bytes: 0,
            clock,
            history_writes: Vec::new(),
            history_dirty: Vec::new(),
            departures: Vec::new(),
            session_events: Vec::new(),
        }
    }

    /// Opens a session on `vhost` and gives it a fresh [`SessionId`]. The
    /// session starts anonymous, with the vhost's anonymous permissions.
    pub fn open_session(
        &mut self,
        key: SessionKey,
        vhost: &VhostPath,
    ) -> Result<SessionId, Refusal> {
        if let Err(refusal) = self.admit(key, vhost) {
            self.outbox.stats.sessions_refused += 1;
            return Err(refusal);
        }
        let sid = loop {
            // 128 random bits never collide in practice; checking is cheap.
            let sid = SessionId::generate();
            if !self.sids.contains_key(&sid) {
                break sid;
            }
        };
        let Some(v) = self.vhosts.get_mut(vhost) else {
            return Err(Refusal::UnknownVhost(vhost.clone()));
        };
        v.sessions.insert(key);
        self.sids.insert(sid.clone(), key);
        self.sessions.insert(
            key,
            Box::new(Session::new(sid.clone(), vhost.clone(), v.anonymous)),
        );
        self.outbox.stats.sessions += 1;
        self.outbox.stats.sessions_opened += 1;
        self.session_event(key, crate::protocol::SessionEvent::Opened);
        Ok(sid)
    }

    /// Whether a new session `key` may join `vhost`.
    fn admit(&self, key: SessionKey, vhost: &VhostPath) -> Result<(), Refusal> {
        if self.sessions.contains_key(&key) {
            return Err(Refusal::KeyInUse(key));
        }
        let v = self
            .vhosts
            .get(vhost)
            .ok_or_else(|| Refusal::UnknownVhost(vhost.clone()))?;
        let limit = self.limits.max_connections_per_vhost;
        if v.sessions.len() >= limit {
            return Err(Refusal::TooManyConnections {
                vhost: vhost.clone(),
                limit,
            });
        }
        Ok(())
    }

    /// Forgets a session the glue saw end (client close, idle, shutdown ...),
    /// dropping its subscriptions, and counts `reason`. `false` if the broker
    /// did not know it (e.g. it closed the session itself and already counted
    /// it).
    pub fn close_session(&mut self, key: SessionKey, reason: CloseReason) -> bool {
        self.session_closing(key, reason, reason.code());
        if self.detach(key).is_some() {
            self.outbox.stats.count_close(reason);
            true
        } else {
            false
        }
    }

    /// Handles one client message (text, or binary holding UTF-8 JSON).
    ///
    /// Usually returns [`Outcome::Done`]. An `authenticate` with a secret
    /// returns [`Outcome::CheckSecret`]: the glue runs the (slow) check off
    /// the broker thread and reports back with
    /// [`Broker::finish_authenticate`]. On a cluster, a `subscribe` that
    /// creates a channel returns [`Outcome::Replicate`] (see `pending`).
    /// Messages from that session that arrive meanwhile are held and
    /// answered in order afterwards.
    pub fn on_message(&mut self, key: SessionKey, payload: &[u8], io: &mut Io<'_>) -> Outcome {
        let Some(session) = self.sessions.get_mut(&key) else {
            return Outcome::Done;
        };
        self.outbox.stats.messages_in += 1;
        self.outbox.stats.bytes_in += payload.len() as u64;
        let outcome = match &mut session.hold {
            Hold::Held(hold) => {
                if hold.held_bytes + payload.len() > self.limits.max_pending_bytes {
                    self.close(key, CloseReason::PolicyViolation, io.outlet);
                } else {
                    hold.held_bytes += payload.len();
                    hold.held.push_back(payload.into());
                }
                Outcome::Done
            }
            Hold::Ready => self.handle(key, payload, io),
        };
        self.reap(io.outlet);
        outcome
    }

    /// The counters and gauges.
    pub fn stats(&self) -> &BrokerStats {
        &self.outbox.stats
    }

    /// Gauges per vhost, in path order.
    pub fn vhost_stats(&self) -> Vec<VhostStats> {
        let mut all: Vec<VhostStats> = self
            .vhosts
            .iter()
            .map(|(path, v)| VhostStats {
                vhost: path.clone(),
                sessions: v.sessions.len() as u64,
                authenticated: v
                    .sessions
                    .iter()
                    .filter(|k| self.sessions.get(k).is_some_and(|s| s.user.is_some()))
                    .count() as u64,
                channels: v.channels.len() as u64,
                subscriptions: v.subscriptions() as u64,
            })
            .collect();
        all.sort_by(|a, b| a.vhost.cmp(&b.vhost));
        all
    }

    /// Number of open sessions on `vhost` (0 if unknown).
    pub fn session_count(&self, vhost: &VhostPath) -> usize {
        self.vhosts.get(vhost).map_or(0, |v| v.sessions.len())
    }

    /// The channels of `vhost`, sorted, with their subscriber counts.
    pub fn channels(&self, vhost: &VhostPath) -> Vec<(ChannelName, usize)> {
        let mut all: Vec<_> = self
            .vhosts
            .get(vhost)
            .map(|v| {
                v.channels
                    .iter()
                    .map(|(n, c)| (n.clone(), c.len()))
                    .collect()
            })
            .unwrap_or_default();
        all.sort();
        all
    }

    /// Decodes and dispatches one message from a session that is not waiting
    /// for a secret check.
    fn handle(&mut self, key: SessionKey, payload: &[u8], io: &mut Io<'_>) -> Outcome {
        // The WebSocket layer enforces this too; checked again so the broker
        // is safe whatever feeds it.
        if payload.len() > self.limits.max_message_size {
            self.close(key, CloseReason::MessageTooBig, io.outlet);
            return Outcome::Done;
        }
        match crate::protocol::decode(payload) {
            Ok(request) => self.dispatch(key, request, io),
            Err(error) => {
                self.send_error(key, &error, io.outlet);
                Outcome::Done
            }
        }
    }

    /// Encodes `reply` and offers it to `key`.
    fn send_reply(&mut self, key: SessionKey, reply: &Reply<'_>, outlet: &mut dyn Outlet) {
        self.buf.clear();
        encode_reply(&mut self.buf, reply);
        self.outbox.offer(outlet, key, &self.buf);
    }

    /// Encodes `error`, offers it to `key` and counts it.
    fn send_error(&mut self, key: SessionKey, error: &ClientError, outlet: &mut dyn Outlet) {
        self.outbox.stats.count_error(error.id);
        self.buf.clear();
        encode_error(&mut self.buf, error);
        self.outbox.offer(outlet, key, &self.buf);
    }

    /// Offers the message already in `self.buf` to every subscriber of
    /// `channel`, in subscription order, unless the cluster orders it on
    /// another node. Returns how many accepted it here.
    fn fan_out(
        &mut self,
        vhost: &VhostPath,
        channel: &ChannelName,
        outlet: &mut dyn Outlet,
    ) -> u64 {
        if !self.route_here(vhost, channel) {
            self.outbox.stats.broadcasts += 1;
            return 0;
        }
        let position = self.sequence(vhost, channel);
        self.cluster.deliver(vhost, channel, &self.buf, position);
        self.fan_out_here(vhost, channel, outlet)
    }

    /// [`Broker::fan_out`] to local subscribers only, without routing.
    fn fan_out_here(
        &mut self,
        vhost: &VhostPath,
        channel: &ChannelName,
        outlet: &mut dyn Outlet,
    ) -> u64 {
        let Some(subscribers) = self.vhosts.get(vhost).and_then(|v| v.channels.get(channel)) else {
            return 0;
        };
        let delivered = self
            .outbox
            .offer_many(outlet, subscribers.subscribers(), &self.buf);
        self.outbox.stats.broadcasts += 1;
        self.outbox.stats.deliveries += delivered;
        delivered
    }

    /// Closes the sessions found slow during the operation that just
    /// ended, and announces the presence members that left.
    fn reap(&mut self, outlet: &mut dyn Outlet) {
        loop {
            for key in std::mem::take(&mut self.outbox.slow) {
                if self.sessions.contains_key(&key) {
                    self.outbox.stats.slow_consumers += 1;
                    self.close(key, CloseReason::SlowConsumer, outlet);
                }
            }
            if self.departures.is_empty() {
                break;
            }
            // Announcing can find more slow sessions, whose closes leave.
            self.announce_departures(outlet);
        }
    }

    /// Finishes what [`Broker::close_session`] started: the other members
    /// of its presence channels hear that it left.
    pub fn settle(&mut self, outlet: &mut dyn Outlet) {
        self.reap(outlet);
    }

    /// The broker ends a session itself: forget it, tell the outlet, count.
    fn close(&mut self, key: SessionKey, reason: CloseReason, outlet: &mut dyn Outlet) {
        self.session_closing(key, reason, reason.code());
        if self.detach(key).is_some() {
            outlet.close(key, reason);
            self.outbox.stats.count_close(reason);
        }
    }

    /// Removes a session and all its subscriptions.
    fn detach(&mut self, key: SessionKey) -> Option<Session> {
        let mut session = self.sessions.remove(&key)?;
        self.sids.remove(&session.sid);
        self.outbox.stats.sessions -= 1;
        let subscriptions = std::mem::take(&mut session.subscriptions);
        if let Some(vhost) = self.vhosts.get_mut(&session.vhost) {
            vhost.sessions.remove(&key);
            for name in &subscriptions {
                if let Some(channel) = vhost.channels.get_mut(name) {
                    if channel.unsubscribe(key) && channel.len() == 0 {
                        self.cluster.interest(&session.vhost, name, false);
                    }
                }
            }
        }
        for name in &subscriptions {
            self.member_left(&session.vhost, name, &session.sid, session.user.as_ref());
        }
        self.outbox.stats.subscriptions -= subscriptions.len() as u64;
        Some(*session)
    }

    /// Drops one subscription on both sides; `false` if there was none.
    fn drop_subscription(&mut self, key: SessionKey, name: &ChannelName) -> bool {
        let Some(session) = self.sessions.get_mut(&key) else {
            return false;
        };
        if !session.subscriptions.remove(name) {
            return false;
        }
        if let Some(channel) = self
            .vhosts
            .get_mut(&session.vhost)
            .and_then(|v| v.channels.get_mut(name))
        {
            if channel.unsubscribe(key) && channel.len() == 0 {
                self.cluster.interest(&session.vhost, name, false);
            }
        }
        let (vhost, sid, user) = (
            session.vhost.clone(),
            session.sid.clone(),
            session.user.clone(),
        );
        self.member_left(&vhost, name, &sid, user.as_ref());
        self.outbox.stats.subscriptions -= 1;
        true
    }

    /// Drops every subscription of `key` whose channel the session may no
    /// longer READ (all of them if it lacks READ), telling it `unsubscribed`
    /// for each.
    fn drop_unreadable(&mut self, key: SessionKey, outlet: &mut dyn Outlet) {
        let Some(session) = self.sessions.get(&key) else {
            return;
        };
        if session.may(crate::name::Permissions::READ) {
            return;
        }
        let names: Vec<ChannelName> = session.subscriptions.iter().cloned().collect();
        for name in names {
            if self.drop_subscription(key, &name) {
                self.send_reply(key, &Reply::Unsubscribed(name.as_str()), outlet);
            }
        }
    }
}
