//! What the cluster's tasks and the broker thread share: the member table
//! and the links, under one mutex held only to look up or update (never
//! across I/O), and the dispatch of messages received from peers.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::{mpsc, Notify};

use super::direct::PendingDirect;
use super::mac::{hmac_sha1_hex, same_mac, SeenNonces};
use super::membership::{Event, LocalInterest, Membership};
use super::stats::Counters;
use super::wire::{Heartbeat, Hello, InterestUpdate, Member, PeerMessage};
use crate::broker::Backend;
use crate::exchange::WorkerDirectory;
use crate::name::VhostPath;
use crate::node::{Changes, Inbox, Peers};
use crate::nukleus::monorail;
use crate::nukleus::webrocket::Task;
use crate::protocol::backend::{BackendRequest, ServerBroadcast};

/// The node a cluster member serves: its broker's inbox (deliveries,
/// direct messages) and its durable state (committed changes).
pub struct LocalNode {
    /// Work for the broker thread.
    pub inbox: Inbox,
    /// The durable state.
    pub changes: Arc<Changes>,
}

/// How far a HELLO's clock may be from ours.
const HELLO_FRESHNESS: Duration = Duration::from_secs(60);
/// Routing ids remembered per node incarnation (links reconnect).
const ROUTES_PER_NODE: usize = 8;

/// Timing and identity of this node in the cluster.
#[derive(Debug, Clone)]
pub struct Settings {
    /// This node's name.
    pub name: String,
    /// The address peers dial (`HOST:PORT`).
    pub addr: String,
    /// Heartbeat period on every link.
    pub heartbeat: Duration,
    /// Silence after which a peer is down.
    pub timeout: Duration,
    /// Broadcast messages queued per link before new ones are dropped.
    pub link_queue: usize,
}

/// The queues of one link task (one DEALER to one peer address).
#[derive(Clone)]
pub struct LinkQueues {
    /// HELLO-independent control (interest, direct messages): never dropped.
    pub control: mpsc::UnboundedSender<Vec<Vec<u8>>>,
    /// Broadcasts and triggers: bounded, dropped and counted when full.
    pub data: mpsc::Sender<Vec<Vec<u8>>>,
}

/// Everything behind the mutex.
pub struct Inner {
    /// Peers, their state and what they told us.
    pub membership: Membership,
    /// Channels with local subscribers.
    pub local: LocalInterest,
    /// Link queues by peer address.
    pub links: HashMap<String, LinkQueues>,
    /// Addresses a link was asked for.
    dialed: std::collections::HashSet<String>,
    /// Authenticated routing ids: node name, incarnation, age order.
    routes: HashMap<Vec<u8>, (String, u64, u64)>,
    route_clock: u64,
    nonces: SeenNonces,
    /// Ready workers per vhost on this node, as last counted.
    pub my_workers: BTreeMap<String, u32>,
    /// Round robin over peers with workers.
    /// Round-robin position over the cluster's workers, per vhost.
    pub next_worker: HashMap<String, u64>,
}

/// Shared by the cluster's tasks, the broker hook and the trigger backend.
pub struct Shared {
    /// Identity and timing.
    pub settings: Settings,
    cookie: String,
    /// Random per process start.
    pub incarnation: u64,
    inner: Mutex<Inner>,
    /// Counters of cluster traffic.
    pub counters: Counters,
    /// The node, once started.
    pub local: OnceLock<LocalNode>,
    /// Where triggers from other nodes go (this node's exchange).
    pub local_backend: Mutex<Option<Box<dyn Backend + Send>>>,
    /// Counts this node's ready workers.
    pub workers: OnceLock<Arc<dyn WorkerDirectory>>,
    /// Asks for new links (address to dial).
    pub dial: mpsc::UnboundedSender<String>,
    pub(super) directs: Mutex<HashMap<u64, PendingDirect>>,
    pub(super) next_request: AtomicU64,
    pub(super) runtime: tokio::runtime::Handle,
    /// `LEAVE`s the links have written (see `Cluster::leave`).
    pub(super) leaves_written: AtomicU64,
    pub(super) leave_written: Notify,
    /// This node's raft member, once started.
    pub(super) raft: OnceLock<Arc<super::raft::RaftNode>>,
    /// When this node last showed signs of life, and when it last came
    /// back from a freeze (see [`Shared::awake`]).
    awake: Mutex<Awake>,
}

/// Wall-clock milliseconds of this node's liveness.
#[derive(Debug, Default)]
struct Awake {
    /// The last tick or message handled.
    last_ms: u64,
    /// When it last resumed after a gap longer than [`FREEZE_GAP_MS`].
    resumed_ms: u64,
}

/// A gap in this node's own activity after which peers may have judged it
/// down (half the peer timeout: a heartbeat or two were surely missed) and
/// ordered broadcasts elsewhere.
const FREEZE_GAP_MS: u64 = 1_500;

/// Locks `mutex`, carrying on after a panic elsewhere (the data stays
/// consistent: every update is a single assignment or insert).
pub fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    match mutex.lock() {
        Ok(guard) => guard,
        Err(poisoned) => poisoned.into_inner(),
    }
}

pub(super) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn frames_size(frames: &[Vec<u8>]) -> u64 {
    frames.iter().map(|f| f.len() as u64).sum()
}

impl Shared {
    /// Shared state for a node that dials through `dial`.
    pub fn new(settings: Settings, cookie: String, dial: mpsc::UnboundedSender<String>) -> Self {
        let membership = Membership::new(&settings.name, &settings.addr, settings.timeout);
        Shared {
            cookie,
            incarnation: rand::random::<u64>() | 1,
            inner: Mutex::new(Inner {
                membership,
                local: LocalInterest::default(),
                links: HashMap::new(),
                dialed: Default::default(),
                routes: HashMap::new(),
                route_clock: 0,
                nonces: SeenNonces::default(),
                my_workers: BTreeMap::new(),
                next_worker: HashMap::new(),
            }),
            settings,
            counters: Counters::default(),
            local: OnceLock::new(),
            awake: Mutex::new(Awake::default()),
            local_backend: Mutex::new(None),
            workers: OnceLock::new(),
            dial,
            directs: Mutex::new(HashMap::new()),
            next_request: AtomicU64::new(1),
            runtime: tokio::runtime::Handle::current(),
            leaves_written: AtomicU64::new(0),
            leave_written: Notify::new(),
            raft: OnceLock::new(),
        }
    }

    /// The member table and links, locked.
    pub fn inner(&self) -> MutexGuard<'_, Inner> {
        lock(&self.inner)
    }

    /// A signed HELLO for a new link.
    pub fn hello(&self) -> PeerMessage {
        let members = self.inner().membership.members();
        let nonce: [u8; 16] = rand::random();
        let mut hello = Hello {
            name: self.settings.name.clone(),
            addr: self.settings.addr.clone(),
            incarnation: self.incarnation,
            time_ms: now_ms(),
            nonce: nonce.iter().map(|b| format!("{b:02x}")).collect(),
            members,
            mac: String::new(),
        };
        hello.mac = hmac_sha1_hex(self.cookie.as_bytes(), hello.signed_text().as_bytes());
        PeerMessage::Hello(hello)
    }

    /// This node's whole interest, as a snapshot.
    pub fn interest_snapshot(&self) -> PeerMessage {
        PeerMessage::Interest(self.inner().local.snapshot())
    }

    /// This node's heartbeat.
    pub fn heartbeat(&self) -> PeerMessage {
        let inner = self.inner();
        PeerMessage::Heartbeat(Heartbeat {
            incarnation: self.incarnation,
            members: inner.membership.members(),
            workers: inner.my_workers.clone(),
        })
    }

    /// Queues control `message` to peer `name` (if known and linked).
    pub fn send_control(&self, inner: &mut Inner, name: &str, message: &PeerMessage) {
        let Some(peer) = inner.membership.peer_mut(name) else {
            return;
        };
        let frames = message.encode();
        peer.traffic.messages_out += 1;
        peer.traffic.bytes_out += frames_size(&frames);
        if let Some(link) = inner.links.get(&peer.addr) {
            let _ = link.control.send(frames);
        }
    }

    /// Queues data `message` to `name`; `false` (and counted) when its queue
    /// is full or there is no link.
    pub fn send_data(&self, inner: &mut Inner, name: &str, message: &PeerMessage) -> bool {
        let Some(peer) = inner.membership.peer_mut(name) else {
            return false;
        };
        let frames = message.encode();
        let size = frames_size(&frames);
        let sent = inner
            .links
            .get(&peer.addr)
            .is_some_and(|link| link.data.try_send(frames).is_ok());
        if sent {
            peer.traffic.messages_out += 1;
            peer.traffic.bytes_out += size;
        } else {
            self.counters.dropped_full.fetch_add(1, Ordering::Relaxed);
        }
        sent
    }

    /// Acts on membership events: a peer that is up gets our interest.
    pub fn on_events(&self, inner: &mut Inner, events: Vec<Event>) {
        for event in events {
            match event {
                Event::Up(name) => {
                    tracing::info!(peer = %name, "cluster peer up");
                    let snapshot = PeerMessage::Interest(inner.local.snapshot());
                    self.send_control(inner, &name, &snapshot);
                    // The broker announces its presence members again.
                    if let Some(local) = self.local.get() {
                        local.inbox.send(Task::ClusterPeer {
                            node: name,
                            up: true,
                        });
                    }
                }
                Event::Down(name) => {
                    tracing::warn!(peer = %name, "cluster peer down");
                    self.counters.peers_lost.fetch_add(1, Ordering::Relaxed);
                    if let Some(local) = self.local.get() {
                        local.inbox.send(Task::ClusterPeer {
                            node: name,
                            up: false,
                        });
                    }
                }
                Event::Left(name) => {
                    tracing::info!(peer = %name, "cluster peer left");
                    self.counters.peers_left.fetch_add(1, Ordering::Relaxed);
                    if let Some(local) = self.local.get() {
                        local.inbox.send(Task::ClusterPeer {
                            node: name,
                            up: false,
                        });
                    }
                }
            }
        }
    }

    /// Learns gossiped members, asking for links to new addresses.
    fn learn(&self, inner: &mut Inner, members: &[Member]) {
        for member in members {
            inner.membership.learn(member);
            let known = inner.membership.peer(&member.name).map(|p| p.addr.clone());
            if let Some(addr) = known {
                if inner.dialed.insert(addr.clone()) {
                    let _ = self.dial.send(addr);
                }
            }
        }
    }

    /// Checks a HELLO: the MAC under our cookie, its age, a fresh nonce.
    fn verify(&self, inner: &mut Inner, hello: &Hello) -> bool {
        let expected = hmac_sha1_hex(self.cookie.as_bytes(), hello.signed_text().as_bytes());
        let skew = now_ms().abs_diff(hello.time_ms);
        same_mac(&expected, &hello.mac)
            && skew <= HELLO_FRESHNESS.as_millis() as u64
            && hello.name != self.settings.name
            && inner.nonces.first_time(&hello.nonce)
    }

    /// Holds the broker's inbox until the guard is dropped (see
    /// [`crate::node::Inbox::hold`]); None before the node is plugged in.
    pub fn hold_inbox(&self) -> Option<crate::node::Holding<'_>> {
        self.local.get().map(|local| local.inbox.hold())
    }

    /// Handles one message from routing id `route` (frames after it).
    pub fn on_frames<F: AsRef<[u8]>>(self: &Arc<Self>, route: &[u8], frames: &[F]) {
        let message = match PeerMessage::decode(frames) {
            Ok(message) => message,
            Err(error) => {
                tracing::debug!(%error, "bad peer message");
                self.counters.refused.fetch_add(1, Ordering::Relaxed);
                return;
            }
        };
        let size: u64 = frames.iter().map(|f| f.as_ref().len() as u64).sum();
        let mut inner = self.inner();
        if let PeerMessage::Hello(hello) = &message {
            if !self.verify(&mut inner, hello) {
                tracing::warn!(peer = %hello.name, "cluster HELLO refused (cookie, clock or replay)");
                self.counters.refused.fetch_add(1, Ordering::Relaxed);
                return;
            }
            self.remember_route(&mut inner, route, &hello.name, hello.incarnation);
        }
        let Some((from, incarnation, _)) = inner.routes.get(route).cloned() else {
            self.counters.refused.fetch_add(1, Ordering::Relaxed);
            return;
        };
        if let Some(peer) = inner.membership.peer_mut(&from) {
            peer.traffic.messages_in += 1;
            peer.traffic.bytes_in += size;
        }
        // A node that left still forwards what its clients sent before
        // their close frame, and answers `DS` questions: taken, since
        // nothing of it is stale (unlike a frozen node's backlog).
        let last_words = matches!(
            message,
            PeerMessage::Forward { .. } | PeerMessage::DirectReply { .. }
        ) && inner.membership.has_left(&from);
        match message {
            PeerMessage::Hello(hello) => {
                let event = inner
                    .membership
                    .heard(&from, &hello.addr, incarnation, Instant::now());
                self.learn(&mut inner, &hello.members);
                self.learn(
                    &mut inner,
                    &[Member {
                        name: hello.name,
                        addr: hello.addr,
                    }],
                );
                self.on_events(&mut inner, event.into_iter().collect());
            }
            PeerMessage::Heartbeat(hb) => {
                if hb.incarnation != incarnation {
                    return;
                }
                let addr = inner
                    .membership
                    .peer(&from)
                    .map(|p| p.addr.clone())
                    .unwrap_or_default();
                let event = inner
                    .membership
                    .heard(&from, &addr, incarnation, Instant::now());
                inner.membership.set_workers(&from, hb.workers);
                self.learn(&mut inner, &hb.members);
                self.on_events(&mut inner, event.into_iter().collect());
            }
            PeerMessage::Leave(leave) => {
                if leave.incarnation == incarnation {
                    let event = inner.membership.left(&from, incarnation);
                    self.on_events(&mut inner, event.into_iter().collect());
                }
            }
            // Anything else only from a peer that is up here (see
            // `membership`: stale traffic of a returning peer is dropped).
            _ if !inner.membership.is_up(&from) && !last_words => {
                self.counters.dropped_down.fetch_add(1, Ordering::Relaxed);
            }
            PeerMessage::Interest(update) => inner.membership.apply_interest(&from, update),
            other => {
                drop(inner);
                self.on_data(&from, other);
            }
        }
    }

    fn remember_route(&self, inner: &mut Inner, route: &[u8], name: &str, incarnation: u64) {
        inner.route_clock += 1;
        let clock = inner.route_clock;
        inner
            .routes
            .retain(|_, (n, i, _)| n != name || *i == incarnation);
        inner
            .routes
            .insert(route.to_vec(), (name.to_owned(), incarnation, clock));
        let mut mine: Vec<(u64, Vec<u8>)> = inner
            .routes
            .iter()
            .filter(|(_, (n, _, _))| n == name)
            .map(|(r, (_, _, c))| (*c, r.clone()))
            .collect();
        if mine.len() > ROUTES_PER_NODE {
            mine.sort();
            for (_, old) in &mine[..mine.len() - ROUTES_PER_NODE] {
                inner.routes.remove(old);
            }
        }
    }

    /// Notes that this node is alive now and returns when it last came
    /// back from a freeze (SIGSTOP, a stalled machine): a gap of more than
    /// [`FREEZE_GAP_MS`] since the last tick or message. Called by the
    /// tick and by every forward, whichever runs first after a freeze.
    pub(super) fn awake(&self) -> u64 {
        let now = now_ms();
        let mut awake = lock(&self.awake);
        if awake.last_ms != 0 && now.saturating_sub(awake.last_ms) > FREEZE_GAP_MS {
            tracing::warn!(
                gap_ms = now - awake.last_ms,
                "this node was frozen; forwards sent to it meanwhile are dropped"
            );
            awake.resumed_ms = now;
        }
        awake.last_ms = awake.last_ms.max(now);
        awake.resumed_ms
    }

    /// Broadcasts, triggers and direct messages from peer `from`.
    fn on_data(self: &Arc<Self>, from: &str, message: PeerMessage) {
        let Some(local) = self.local.get() else {
            return;
        };
        match message {
            PeerMessage::Deliver {
                vhost,
                channel,
                delivery,
                position,
            } => {
                let sequencer = self
                    .inner()
                    .membership
                    .sequencer(vhost.as_str(), channel.as_str())
                    == from;
                if !sequencer {
                    self.counters
                        .dropped_not_sequencer
                        .fetch_add(1, Ordering::Relaxed);
                    return;
                }
                self.counters.deliveries_in.fetch_add(1, Ordering::Relaxed);
                local.inbox.send(Task::ClusterDeliver {
                    vhost,
                    channel,
                    delivery,
                    position,
                });
            }
            PeerMessage::Forward {
                vhost,
                channel,
                hops,
                sent_ms,
                delivery,
            } => {
                if sent_ms < self.awake() {
                    self.counters.dropped_stale.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                self.counters.forwards_in.fetch_add(1, Ordering::Relaxed);
                local.inbox.send(Task::ClusterSequence {
                    vhost,
                    channel,
                    delivery,
                    hops,
                });
            }
            PeerMessage::Trigger {
                vhost,
                hops,
                payload,
            } => {
                self.counters.triggers_in.fetch_add(1, Ordering::Relaxed);
                let taken = lock(&self.local_backend)
                    .as_mut()
                    .is_some_and(|b| b.trigger(&vhost, &payload).is_ok());
                // No worker here after all (the counts are a heartbeat
                // old): passed on once to another node that has some.
                let passed = !taken && hops == 0 && self.pass_on(from, vhost.clone(), payload);
                if !taken && !passed {
                    tracing::warn!(%vhost, peer = %from, "a forwarded trigger found no ready worker");
                    self.counters.triggers_lost.fetch_add(1, Ordering::Relaxed);
                }
            }
            PeerMessage::Direct {
                request,
                vhost,
                sid,
                event,
                data,
            } => self.on_direct(&local.inbox, from, request, (vhost, sid, event), data),
            PeerMessage::CloseSession {
                request,
                vhost,
                sid,
                code,
                reason,
            } => self.on_close_session(&local.inbox, from, request, (vhost, sid), code, reason),
            PeerMessage::DirectReply { request, found } => self.direct_answered(request, found),
            PeerMessage::ServerBroadcast(broadcast) => {
                self.counters
                    .server_broadcasts_in
                    .fetch_add(1, Ordering::Relaxed);
                deliver_server_broadcast(&local.inbox, broadcast);
            }
            PeerMessage::RaftRequest { request, body } => {
                if let Some(raft) = self.raft.get() {
                    raft.on_request(from, request, body);
                }
            }
            PeerMessage::RaftReply { request, body } => {
                if let Some(raft) = self.raft.get() {
                    raft.on_reply(request, &body);
                }
            }
            PeerMessage::Presence {
                vhost,
                channel,
                sid,
                user,
                joined,
            } => local.inbox.send(Task::ClusterPresence {
                node: from.to_owned(),
                vhost,
                channel,
                sid,
                joined: joined.then_some(user),
            }),
            PeerMessage::SessionEvent { vhost, payload } => {
                if let Some(backend) = lock(&self.local_backend).as_mut() {
                    backend.session_event(&vhost, &payload);
                }
            }
            PeerMessage::Hello(_)
            | PeerMessage::Heartbeat(_)
            | PeerMessage::Interest(_)
            | PeerMessage::Leave(_) => {}
        }
    }

    /// Sends a trigger no worker here took to another node with ready
    /// workers (not `from`); whether one took it on its link.
    fn pass_on(&self, from: &str, vhost: VhostPath, payload: Vec<u8>) -> bool {
        let mut inner = self.inner();
        let peers: Vec<String> = inner
            .membership
            .worker_counts(vhost.as_str())
            .into_iter()
            .map(|(name, _)| name)
            .filter(|name| name != from)
            .collect();
        let message = PeerMessage::Trigger {
            vhost,
            hops: 1,
            payload,
        };
        for peer in &peers {
            if self.send_data(&mut inner, peer, &message) {
                self.counters.triggers_out.fetch_add(1, Ordering::Relaxed);
                return true;
            }
        }
        false
    }

    /// A link wrote a `LEAVE`.
    pub fn leave_written(&self) {
        self.leaves_written.fetch_add(1, Ordering::AcqRel);
        self.leave_written.notify_one();
    }

    /// A local interest transition, told to every peer that is up.
    pub fn interest(&self, vhost: &str, channel: &str, subscribed: bool) {
        let mut inner = self.inner();
        let pair = (vhost.to_owned(), channel.to_owned());
        if !inner.local.set(pair.clone(), subscribed) {
            return;
        }
        let (add, remove) = if subscribed {
            (vec![pair], vec![])
        } else {
            (vec![], vec![pair])
        };
        let update = PeerMessage::Interest(InterestUpdate {
            snapshot: false,
            add,
            remove,
        });
        let peers: Vec<String> = inner.membership.up().cloned().collect();
        for peer in &peers {
            self.send_control(&mut inner, peer, &update);
        }
    }
}

/// A server broadcast another node passed on: for this node's sessions
/// only (the answer went to the backend from the node it asked).
fn deliver_server_broadcast(inbox: &Inbox, broadcast: ServerBroadcast) {
    match broadcast {
        ServerBroadcast::Resource {
            vhost,
            resource,
            payload,
            skip,
        } => inbox.to_monorail(monorail::Task::Broadcast {
            vhost,
            resource,
            payload: payload.into_bytes(),
            skip,
            reply: Box::new(|_| {}),
        }),
        ServerBroadcast::Answer {
            vhost,
            request,
            payload,
        } => inbox.to_monorail(monorail::Task::Answer {
            vhost,
            request,
            payload: payload.into_bytes(),
            reply: Box::new(|_| {}),
        }),
        ServerBroadcast::Channel {
            vhost,
            channel,
            event,
            data,
            skip,
        } => inbox.send(Task::Backend {
            vhost,
            request: BackendRequest::BroadcastExcept {
                channel,
                event,
                data: data.and_then(|d| serde_json::value::RawValue::from_string(d).ok()),
                skip,
            },
            reply: Box::new(|_| {}),
        }),
    }
}

/// The other nodes, for the server broadcasts of this node's backends
/// (weak: the node's inbox holds it, and the cluster holds the inbox).
pub struct PeerRelay(pub std::sync::Weak<Shared>);

impl Peers for PeerRelay {
    fn relay(&self, broadcast: &ServerBroadcast) {
        let Some(shared) = self.0.upgrade() else {
            return;
        };
        let message = PeerMessage::ServerBroadcast(broadcast.clone());
        let mut inner = shared.inner();
        let peers: Vec<String> = inner.membership.up().cloned().collect();
        for peer in &peers {
            if shared.send_data(&mut inner, peer, &message) {
                shared
                    .counters
                    .server_broadcasts_out
                    .fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    fn send_to(&self, node: &str, message: &ServerBroadcast) -> Option<bool> {
        let shared = self.0.upgrade()?;
        if node == shared.settings.name {
            return None;
        }
        let mut inner = shared.inner();
        if !inner.membership.is_up(node) {
            return Some(false);
        }
        let message = PeerMessage::ServerBroadcast(message.clone());
        Some(shared.send_data(&mut inner, node, &message))
    }
}
