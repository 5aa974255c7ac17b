//! The cluster: several nodes serving as one broker, over ZeroMQ.
//!
//! - [`wire`]: peer frames (pure).
//! - [`mac`]: HMAC-SHA1 proof of the cluster cookie (pure).
//! - [`membership`]: members, liveness, interest and workers per peer (pure).
//! - [`rendezvous`]: which node orders a channel (pure).
//! - `shared`: state shared by the tasks and the broker thread; dispatch.
//! - `direct`: `DS` for sessions on other nodes.
//! - `link`: one DEALER per peer address (tokio).
//! - `hook`: [`BrokerLink`] (the broker's routing hook) and the trigger
//!   backend.
//! - [`stats`]: `cluster.*` counters.
//! - [`raft`]: vhosts, users and channels replicated with openraft.
//!
//! Each node binds a ROUTER on `cluster.addr` and dials every member it
//! knows with a DEALER: a node receives only on its ROUTER and sends only on
//! its DEALERs. Seeds are dialled first; the rest is learnt from the member
//! lists in HELLOs and heartbeats. Every link starts with a HELLO proving
//! knowledge of the cookie (see [`mac`]); nothing else is accepted from a
//! connection before that. The guarantees are in ARCHITECTURE.md
//! ("Cluster").
//!
//! # Starting
//!
//! Like the exchange: [`Cluster::bind`] before the node starts (so the
//! broker gets [`Cluster::backend`]), [`Cluster::start`] once its handle
//! exists.
//!
//! # Leaving
//!
//! A node shutting down gracefully stops accepting clients, calls
//! [`Cluster::leave`] (a `LEAVE` to every peer that is up: they count it out
//! at once and move its channels to other sequencers), closes its sessions
//! with 1012 ("reconnect elsewhere"), then [`Cluster::shutdown`].

mod direct;
mod hook;
mod link;
pub mod mac;
pub mod membership;
pub mod raft;
pub mod rendezvous;
mod shared;
pub mod stats;
pub mod wire;

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use zeromq::{RouterSocket, SocketRecv};

pub use self::hook::{BrokerLink, ClusterBackend};
use self::shared::{lock, LinkQueues, LocalNode, Settings, Shared};
pub use self::stats::ClusterStats;
use self::wire::{Leave, PeerMessage};
use crate::broker::Backend;
use crate::config::Config;
use crate::exchange::WorkerDirectory;
use crate::guard::{self, GuardLimits};
use crate::node::{Changes, Inbox};
use crate::nukleus::webrocket::Task;

/// Heartbeat period on every link.
pub const HEARTBEAT: Duration = Duration::from_millis(500);
/// Silence after which a peer is down.
pub const PEER_TIMEOUT: Duration = Duration::from_secs(3);
pub use crate::limits::CLUSTER_LINK_QUEUE as LINK_QUEUE;
/// How often liveness is checked and ready workers are counted.
const TICK: Duration = Duration::from_millis(100);
const MIB: u64 = 1 << 20;
/// How long [`Cluster::leave`] waits for its `LEAVE`s to be written.
pub const LEAVE_WAIT: Duration = Duration::from_secs(1);

/// Why the cluster could not start.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// `cluster.addr` is set but there is no cookie.
    #[error("cluster.addr is set but there is no cluster cookie (config cluster.cookie or WEBROCKET_CLUSTER_COOKIE)")]
    NoCookie,
    /// The ROUTER could not bind.
    #[error("binding the cluster address tcp://{addr}: {reason}")]
    Bind {
        /// Where.
        addr: SocketAddr,
        /// What zeromq said.
        reason: String,
    },
}

/// One row of `list_nodes`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NodeStatus {
    /// Node name.
    pub name: String,
    /// Cluster address.
    pub addr: String,
    /// `self` (`leaving` once it left), `up`, `down`, `joining` or
    /// `left`.
    pub state: &'static str,
    /// Milliseconds since its last HELLO or heartbeat (`None`: never, or
    /// this node).
    pub last_heartbeat_ms: Option<u64>,
    /// Messages received from it.
    pub messages_in: u64,
    /// Messages queued to it.
    pub messages_out: u64,
    /// Bytes received from it.
    pub bytes_in: u64,
    /// Bytes queued to it.
    pub bytes_out: u64,
    /// Its part in the replicated log as this node sees it: `leader`,
    /// `follower`, `learner`, `candidate` (this node only) or `none`.
    pub raft_role: &'static str,
    /// Entries behind: for this node, entries in its log not applied yet;
    /// for a peer, entries its log lacks (known on the leader only).
    pub raft_lag: Option<u64>,
}

/// This node's membership in a cluster. Cheap to clone.
#[derive(Clone)]
pub struct Cluster {
    shared: Arc<Shared>,
    tasks: Arc<Mutex<Vec<JoinHandle<()>>>>,
    socket: Arc<Mutex<Option<RouterSocket>>>,
    dials: Arc<Mutex<Option<mpsc::UnboundedReceiver<String>>>>,
}

impl Cluster {
    /// Binds the ROUTER on `config.cluster.addr` (`None` if clustering is
    /// off). Must run inside the tokio runtime that will run the cluster.
    pub async fn bind(config: &Config) -> Result<Option<Cluster>, ClusterError> {
        let Some(addr) = config.cluster.addr else {
            return Ok(None);
        };
        let cookie = config
            .cluster
            .cookie
            .clone()
            .ok_or(ClusterError::NoCookie)?;
        // Peers' deliveries and raft messages (snapshot chunks are 64 KiB
        // of state as JSON) stay far below this.
        let max = (config.limits.max_message_size as u64).max(MIB) * 2;
        // Bound first, so that port 0 is resolved into the address this
        // node announces; cuts are counted once the node's state exists.
        let counted: Arc<OnceLock<Arc<Shared>>> = Arc::default();
        let slot = Arc::clone(&counted);
        let guarded = guard::front(
            addr,
            GuardLimits::server(max),
            Arc::new(move || {
                if let Some(shared) = slot.get() {
                    shared.counters.refused.fetch_add(1, Ordering::Relaxed);
                }
            }),
        )
        .await
        .map_err(|e| ClusterError::Bind {
            addr,
            reason: e.to_string(),
        })?;
        let settings = Settings {
            name: config.server.node_name.as_str().to_owned(),
            addr: guarded.local_addr.to_string(),
            heartbeat: HEARTBEAT,
            timeout: PEER_TIMEOUT,
            link_queue: LINK_QUEUE,
        };
        let (dial, dials) = mpsc::unbounded_channel();
        for seed in &config.cluster.seeds {
            let seed = seed.to_string();
            if seed != settings.addr {
                let _ = dial.send(seed);
            }
        }
        let shared = Arc::new(Shared::new(settings, cookie, dial));
        let _ = counted.set(Arc::clone(&shared));
        Ok(Some(Cluster {
            shared,
            tasks: Arc::new(Mutex::new(vec![guarded.guard.into_task()])),
            socket: Arc::new(Mutex::new(Some(guarded.socket))),
            dials: Arc::new(Mutex::new(Some(dials))),
        }))
    }

    /// Where peers connect (port 0 resolved): the address this node
    /// announces.
    pub fn local_addr(&self) -> &str {
        &self.shared.settings.addr
    }

    /// The broker's backend: `local` (this node's exchange) first, then
    /// other nodes' workers.
    pub fn backend(&self, local: Box<dyn Backend + Send>) -> Box<dyn Backend + Send> {
        *lock(&self.shared.local_backend) = Some(local);
        Box::new(ClusterBackend {
            shared: Arc::clone(&self.shared),
        })
    }

    /// Starts talking to peers for the node behind `inbox` and `changes`
    /// (this node's changes go through the cluster's log from now on);
    /// `workers` counts this node's ready workers for the others.
    /// Idempotent.
    pub fn start(
        &self,
        config: &Config,
        inbox: &Inbox,
        changes: &Arc<Changes>,
        workers: Option<Arc<dyn WorkerDirectory>>,
    ) {
        let shared = &self.shared;
        let local = LocalNode {
            inbox: inbox.clone(),
            changes: Arc::clone(changes),
        };
        if shared.local.set(local).is_err() {
            return;
        }
        if let Some(workers) = workers {
            let _ = shared.workers.set(workers);
        }
        inbox.send(Task::ClusterJoin(Box::new(BrokerLink::new(Arc::clone(
            shared,
        )))));
        inbox.set_peers(Arc::new(shared::PeerRelay(Arc::downgrade(shared))));
        let mut tasks = lock(&self.tasks);
        if let Some(socket) = lock(&self.socket).take() {
            tasks.push(tokio::spawn(receive(Arc::clone(shared), socket)));
        }
        if let Some(dials) = lock(&self.dials).take() {
            tasks.push(tokio::spawn(dial(
                Arc::clone(shared),
                dials,
                Arc::clone(&self.tasks),
            )));
        }
        tasks.push(tokio::spawn(tick(Arc::clone(shared))));
        let seeds = config
            .cluster
            .seeds
            .iter()
            .map(|s| s.to_string())
            .filter(|s| *s != shared.settings.addr)
            .collect();
        tasks.extend(raft::RaftNode::start(
            shared,
            Arc::clone(changes),
            seeds,
            raft::Tuning {
                snapshot_every: config.cluster.snapshot_every.max(1),
                storage_dir: config.server.storage_dir.clone(),
            },
        ));
        tracing::info!(node = %shared.settings.name, addr = %shared.settings.addr, "cluster started");
    }

    /// Every node this one knows, itself first (`list_nodes`).
    pub fn nodes(&self) -> Vec<NodeStatus> {
        let raft = self.raft().and_then(|r| r.view()).unwrap_or_default();
        let inner = self.shared.inner();
        let now = Instant::now();
        let mut all = vec![NodeStatus {
            name: self.shared.settings.name.clone(),
            addr: self.shared.settings.addr.clone(),
            state: if inner.membership.is_leaving() {
                "leaving"
            } else {
                "self"
            },
            last_heartbeat_ms: None,
            messages_in: 0,
            messages_out: 0,
            bytes_in: 0,
            bytes_out: 0,
            raft_role: if raft.role.is_empty() {
                "none"
            } else {
                raft.role
            },
            raft_lag: Some(raft.last_log.saturating_sub(raft.applied)),
        }];
        for (name, peer) in inner.membership.peers() {
            let t = peer.traffic;
            all.push(NodeStatus {
                name: name.clone(),
                addr: peer.addr.clone(),
                state: peer.state.as_str(),
                last_heartbeat_ms: peer
                    .last_heard
                    .map(|at| now.saturating_duration_since(at).as_millis() as u64),
                messages_in: t.messages_in,
                messages_out: t.messages_out,
                bytes_in: t.bytes_in,
                bytes_out: t.bytes_out,
                raft_role: raft.members.get(name).copied().unwrap_or("none"),
                raft_lag: raft.lag.get(name).copied(),
            });
        }
        all
    }

    /// This node's raft member (replicated vhosts, users, channels), once
    /// started.
    pub fn raft(&self) -> Option<&Arc<raft::RaftNode>> {
        self.shared.raft.get()
    }

    /// Counters and gauges of cluster traffic.
    pub fn stats(&self) -> ClusterStats {
        self.shared.stats()
    }

    /// The node that orders `(vhost, channel)` in this node's current view.
    pub fn sequencer(&self, vhost: &str, channel: &str) -> String {
        self.shared
            .inner()
            .membership
            .sequencer(vhost, channel)
            .to_owned()
    }

    /// Leaves the cluster gracefully: from now on this node orders no
    /// channel (its clients' broadcasts go to the other nodes' sequencers),
    /// and every peer that is up gets a `LEAVE`, written after the data
    /// already queued to it, so it counts this node out at once instead of
    /// after [`PEER_TIMEOUT`]. Waits at most [`LEAVE_WAIT`] for the links to
    /// write them; returns how many were written (a peer that missed its
    /// `LEAVE` notices the silence after the timeout). Call it once the node
    /// stops accepting clients and before closing their sessions.
    pub async fn leave(&self) -> usize {
        let shared = &self.shared;
        let told = {
            let mut inner = shared.inner();
            inner.membership.leave();
            let message = PeerMessage::Leave(Leave {
                incarnation: shared.incarnation,
            });
            let peers: Vec<String> = inner.membership.up().cloned().collect();
            for peer in &peers {
                shared.send_control(&mut inner, peer, &message);
            }
            peers.len() as u64
        };
        let deadline = tokio::time::Instant::now() + LEAVE_WAIT;
        let written = || shared.leaves_written.load(Ordering::Acquire);
        while written() < told {
            let notified = shared.leave_written.notified();
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                break;
            }
        }
        let written = written().min(told);
        tracing::info!(node = %shared.settings.name, told, written, "left the cluster");
        written as usize
    }

    /// Stops every cluster task (peers see this node go silent).
    pub fn shutdown(&self) {
        for task in lock(&self.tasks).drain(..) {
            task.abort();
        }
    }
}

/// Reads the ROUTER: `[routing id] [frames...]` per message.
///
/// The messages already received when one arrives are handled with it,
/// the broker's inbox held meanwhile ([`crate::node::Inbox::hold`]): a
/// sequencer's burst of deliveries then reaches the broker as one batch,
/// and each local subscriber gets the burst in one write.
async fn receive(shared: Arc<Shared>, mut socket: RouterSocket) {
    loop {
        let mut next = Some(socket.recv().await);
        let held = shared.hold_inbox();
        let mut taken = 0;
        let mut failed = false;
        while let Some(received) = next.take() {
            match received {
                Ok(message) => {
                    let frames = message.into_vec();
                    if let Some((route, rest)) = frames.split_first() {
                        shared.on_frames(route, rest);
                    }
                }
                Err(error) => {
                    tracing::debug!(%error, "cluster receive");
                    failed = true;
                    break;
                }
            }
            taken += 1;
            if taken < MAX_BATCH {
                // Ready now or not at all (`recv` is cancel-safe: it
                // polls a stream of decoded messages).
                next = tokio::time::timeout(Duration::ZERO, socket.recv())
                    .await
                    .ok();
            }
        }
        drop(held);
        if failed {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// The most received messages handled as one batch.
const MAX_BATCH: usize = 256;

/// Starts a link task for every new address asked for.
async fn dial(
    shared: Arc<Shared>,
    mut dials: mpsc::UnboundedReceiver<String>,
    tasks: Arc<Mutex<Vec<JoinHandle<()>>>>,
) {
    while let Some(addr) = dials.recv().await {
        let mut inner = shared.inner();
        if inner.links.contains_key(&addr) {
            continue;
        }
        let (control, control_rx) = mpsc::unbounded_channel();
        let (data, data_rx) = mpsc::channel(shared.settings.link_queue);
        inner
            .links
            .insert(addr.clone(), LinkQueues { control, data });
        drop(inner);
        tracing::debug!(%addr, "cluster link started");
        let task = tokio::spawn(link::run(Arc::clone(&shared), addr, control_rx, data_rx));
        lock(&tasks).push(task);
    }
}

/// Marks silent peers down and counts this node's ready workers.
async fn tick(shared: Arc<Shared>) {
    let mut interval = tokio::time::interval(TICK);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        interval.tick().await;
        shared.awake();
        let workers = count_workers(&shared);
        let mut inner = shared.inner();
        if let Some(workers) = workers {
            inner.my_workers = workers;
        }
        let events = inner.membership.tick(Instant::now());
        shared.on_events(&mut inner, events);
    }
}

fn count_workers(shared: &Shared) -> Option<std::collections::BTreeMap<String, u32>> {
    let directory = shared.workers.get()?;
    let local = shared.local.get()?;
    let vhosts: Vec<crate::name::VhostPath> = local
        .changes
        .with_state(|s| s.vhosts.keys().cloned().collect());
    Some(
        vhosts
            .into_iter()
            .filter_map(|vhost| {
                let n = directory.workers(&vhost).len() as u32;
                (n > 0).then(|| (vhost.into_string(), n))
            })
            .collect(),
    )
}
