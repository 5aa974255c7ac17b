//! Replicated durable state: `storage::Change` records ordered by openraft.
//!
//! - [`files`]: the raft log, vote and snapshot on disk.
//! - [`store`]: openraft's storage over those files, and the state machine
//!   (the node's existing store and state, via [`Changes::apply_committed`]).
//! - [`network`]: openraft's RPCs as `RRQ`/`RRS` peer messages.
//!
//! Node ids are a fixed hash of the node name; each raft member's
//! `BasicNode::addr` holds its node *name* (the cluster links are found by
//! name). Membership: the node with the lowest name among itself and the
//! peers that are up initializes the raft cluster with all of them, once
//! its seeds are up and [`INIT_DELAY`] has passed since it started; from
//! then on the leader adds every other peer that comes up (learner, then
//! voter). Nodes that go down stay voters: they are expected back.

pub mod error;
pub mod files;
pub mod network;
pub mod store;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::Cursor;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use openraft::error::{ClientWriteError, RaftError};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::{BasicNode, Raft, SnapshotPolicy};
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

use super::membership::PeerState;
use super::shared::{lock, Shared};
use super::wire::PeerMessage;
use crate::node::{Changes, Consensus, ConsensusError};
use crate::storage::Change;

pub use error::{CallError, NotApplied, ProposeError, StartError};

openraft::declare_raft_types!(
    /// openraft types of the replicated state.
    pub TypeConfig:
        D = Change,
        R = Result<(), NotApplied>,
);

/// A raft node id: [`node_id`] of the node name.
pub type NodeId = u64;

/// How long the lowest node waits after starting before it initializes
/// the raft cluster (so the HELLOs of the nodes started with it arrive).
pub const INIT_DELAY: Duration = Duration::from_secs(2);
/// How long a change may take to be committed and applied here.
pub const CHANGE_TIMEOUT: Duration = Duration::from_secs(4);
const DRIVE_TICK: Duration = Duration::from_millis(500);
/// How often a raft member stopped by a storage failure checks whether
/// its files can be written again.
const RECOVER_TICK: Duration = Duration::from_secs(1);
/// Bytes the recovery probe writes: more than a change's raft entry and
/// `raft.json` together, so a disk that takes it takes the next change.
const PROBE_BYTES: usize = 64 * 1024;
/// Bytes of state per snapshot chunk sent to a lagging peer.
const SNAPSHOT_CHUNK: u64 = 64 * 1024;

/// The raft node id of node `name` (FNV-1a, fixed forever).
pub fn node_id(name: &str) -> NodeId {
    name.bytes().fold(0xcbf2_9ce4_8422_2325, |hash, b| {
        (hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Body of an `RRQ`.
#[derive(Debug, Serialize, Deserialize)]
pub enum RaftRequest {
    /// openraft AppendEntries.
    Append(AppendEntriesRequest<TypeConfig>),
    /// openraft Vote.
    Vote(VoteRequest<NodeId>),
    /// openraft InstallSnapshot.
    Snapshot(InstallSnapshotRequest<TypeConfig>),
    /// A follower's change, for the leader to propose.
    Propose(Change),
    /// Take this member (a node name) out of the voters, for good.
    RemoveMember(String),
    /// A follower's read barrier: the leader's read index.
    ReadIndex,
}

/// Body of an `RRS`.
#[derive(Debug, Serialize, Deserialize)]
pub enum RaftResponse {
    /// To [`RaftRequest::Append`].
    Append(Result<AppendEntriesResponse<NodeId>, RaftError<NodeId>>),
    /// To [`RaftRequest::Vote`].
    Vote(Result<VoteResponse<NodeId>, RaftError<NodeId>>),
    /// To [`RaftRequest::Snapshot`].
    Snapshot(
        Result<
            InstallSnapshotResponse<NodeId>,
            RaftError<NodeId, openraft::error::InstallSnapshotError>,
        >,
    ),
    /// To [`RaftRequest::Propose`]: the entry's log index and the result
    /// of applying it, or why it was not committed.
    Propose(Result<(u64, Result<(), NotApplied>), ProposeError>),
    /// To [`RaftRequest::RemoveMember`].
    RemoveMember(Result<(), RemoveError>),
    /// To [`RaftRequest::ReadIndex`]: the log index a read must see
    /// applied (the leader's commit index, confirmed by a majority).
    ReadIndex(Result<u64, ProposeError>),
}

/// Why a member could not be removed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum RemoveError {
    /// It is not a member of the replicated log.
    #[error("node {0} is not a member of the cluster")]
    NotMember(String),
    /// The leader still hears from it (or it is the leader).
    #[error("node {0} is up; stop it first")]
    Up(String),
    /// No leader with a majority confirmed the new membership.
    #[error("the cluster did not confirm the removal: {0}")]
    NotConfirmed(String),
}

/// What this node's raft member knows of the replicated log, for
/// `list_nodes` and the counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RaftView {
    /// This node: `leader`, `follower`, `candidate`, `learner` or `none`
    /// (not a member yet).
    pub role: &'static str,
    /// The current term.
    pub term: u64,
    /// The leader's node name, if one is known.
    pub leader: Option<String>,
    /// Index of the last entry in this node's log.
    pub last_log: u64,
    /// Index of the last entry applied here.
    pub applied: u64,
    /// Entries each member's log is behind this node's (known on the
    /// leader only), by node name.
    pub lag: BTreeMap<String, u64>,
    /// Every member by node name: `leader`, `follower` (a voter) or
    /// `learner`.
    pub members: BTreeMap<String, &'static str>,
}

/// Where and how often raft keeps its files.
#[derive(Debug, Clone)]
pub struct Tuning {
    /// Entries between snapshots (`cluster.snapshot_every`, at least 1).
    pub snapshot_every: u64,
    /// The node's storage directory (`raft.json`, `raft.log`,
    /// `raft.snapshot`).
    pub storage_dir: std::path::PathBuf,
}

/// This node's raft member: the openraft instance and the RPCs in flight.
pub struct RaftNode {
    shared: Arc<Shared>,
    name: String,
    id: NodeId,
    /// The openraft instance; replaced when it stopped on a storage
    /// failure and the files can be written again ([`RaftNode::recover`]).
    raft: Mutex<Option<Raft<TypeConfig>>>,
    /// Why the instance stopped (a storage failure), while it is down:
    /// changes through this node are refused at once, saying so.
    stalled: Mutex<Option<String>>,
    pending: Mutex<HashMap<u64, oneshot::Sender<RaftResponse>>>,
    next: AtomicU64,
}

impl RaftNode {
    /// Starts raft for the node's durable state `changes`: opens
    /// `raft.json`, starts openraft and the membership driver, and makes
    /// itself the way `changes` commits. `seeds`: the configured seed
    /// addresses. Returns the tasks to abort on shutdown.
    pub fn start(
        shared: &Arc<Shared>,
        changes: Arc<Changes>,
        seeds: Vec<String>,
        tuning: Tuning,
    ) -> Vec<tokio::task::JoinHandle<()>> {
        let name = shared.settings.name.clone();
        let node = Arc::new(RaftNode {
            shared: Arc::clone(shared),
            id: node_id(&name),
            name,
            raft: Mutex::new(None),
            stalled: Mutex::new(None),
            pending: Mutex::new(HashMap::new()),
            next: AtomicU64::new(1),
        });
        if shared.raft.set(Arc::clone(&node)).is_err() {
            return Vec::new();
        }
        let consensus: Arc<dyn Consensus> = Arc::clone(&node) as Arc<dyn Consensus>;
        changes.set_consensus(Arc::downgrade(&consensus));
        let started = Instant::now();
        vec![tokio::spawn(async move {
            match node.open(Arc::clone(&changes), tuning.clone()).await {
                Ok(()) => {
                    let drive = Arc::clone(&node).drive(seeds, started);
                    tokio::join!(drive, node.recover(changes, tuning));
                }
                Err(error) => tracing::error!(%error, "raft did not start; changes are refused"),
            }
        })]
    }

    /// The openraft instance, once it runs.
    fn raft(&self) -> Option<Raft<TypeConfig>> {
        lock(&self.raft).clone()
    }

    /// The refusal to give while the raft member is stopped by a storage
    /// failure (noticed by [`RaftNode::recover`], or just now).
    fn stalled(&self) -> Option<ProposeError> {
        if let Some(why) = lock(&self.stalled).clone() {
            return Some(ProposeError::Storage(why));
        }
        let raft = self.raft()?;
        let fatal = raft.metrics().borrow().running_state.clone().err()?;
        Some(ProposeError::Storage(fatal.to_string()))
    }

    /// Brings the raft member back after a storage failure. openraft stops
    /// for good when its storage fails (a full disk); this node then
    /// refuses changes ([`ProposeError::Storage`]) and, every
    /// [`RECOVER_TICK`], checks whether the storage directory takes writes
    /// again. Once it does, it starts openraft again on the same files, as
    /// a restart would (a torn log tail is cut off, entries committed
    /// meanwhile come from the leader).
    async fn recover(self: &Arc<Self>, changes: Arc<Changes>, tuning: Tuning) {
        let mut interval = tokio::time::interval(RECOVER_TICK);
        loop {
            interval.tick().await;
            let Some(raft) = self.raft() else { continue };
            let fatal = raft.metrics().borrow().running_state.clone();
            let Err(fatal) = fatal else { continue };
            if lock(&self.stalled).is_none() {
                tracing::error!(error = %fatal, "raft stopped; changes are refused until its files can be written");
                *lock(&self.stalled) = Some(fatal.to_string());
            }
            let dir = tuning.storage_dir.clone();
            let writable = tokio::task::spawn_blocking(move || probe_writable(&dir))
                .await
                .is_ok_and(|probe| probe.is_ok());
            if !writable {
                continue;
            }
            let _ = raft.shutdown().await;
            match self.open(Arc::clone(&changes), tuning.clone()).await {
                Ok(()) => {
                    *lock(&self.stalled) = None;
                    tracing::warn!("raft started again: its files can be written again");
                }
                Err(error) => tracing::warn!(%error, "raft did not start again yet"),
            }
        }
    }

    async fn open(
        self: &Arc<Self>,
        changes: Arc<Changes>,
        tuning: Tuning,
    ) -> Result<(), StartError> {
        let every = tuning.snapshot_every;
        let config = openraft::Config {
            cluster_name: "webrocket".into(),
            heartbeat_interval: 250,
            election_timeout_min: 1000,
            election_timeout_max: 2000,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(every),
            max_in_snapshot_log_to_keep: every,
            // Chunks travel as JSON in one peer message each.
            snapshot_max_chunk_size: SNAPSHOT_CHUNK,
            install_snapshot_timeout: 2000,
            ..Default::default()
        }
        .validate()?;
        let store = store::RaftStore::open(changes, &tuning.storage_dir)?;
        store.recover().await?;
        let (log, machine) = openraft::storage::Adaptor::new(store);
        let net = network::Network {
            node: Arc::clone(self),
        };
        let raft = Raft::new(self.id, Arc::new(config), net, log, machine).await?;
        *lock(&self.raft) = Some(raft);
        Ok(())
    }

    /// Initializes the raft cluster when this node should, and, as leader,
    /// adds the peers that are up but not yet members.
    async fn drive(self: Arc<Self>, seeds: Vec<String>, started: Instant) {
        let mut interval = tokio::time::interval(DRIVE_TICK);
        loop {
            interval.tick().await;
            let Some(raft) = self.raft() else { continue };
            let metrics = raft.metrics().borrow().clone();
            let voters: BTreeSet<NodeId> =
                metrics.membership_config.membership().voter_ids().collect();
            let (up, seeds_up) = {
                let inner = self.shared.inner();
                let up: Vec<String> = inner.membership.up().cloned().collect();
                let seeds_up = seeds.iter().all(|seed| {
                    inner
                        .membership
                        .peers()
                        .any(|(name, p)| &p.addr == seed && inner.membership.is_up(name))
                });
                (up, seeds_up)
            };
            if voters.is_empty() && metrics.last_log_index.is_none() {
                let lowest = up.iter().all(|peer| *peer > self.name);
                if lowest && seeds_up && started.elapsed() >= INIT_DELAY {
                    let members: BTreeMap<NodeId, BasicNode> = up
                        .iter()
                        .chain(std::iter::once(&self.name))
                        .map(|n| (node_id(n), BasicNode::new(n)))
                        .collect();
                    match raft.initialize(members).await {
                        Ok(()) => tracing::info!(members = ?up, "raft cluster initialized"),
                        Err(error) => tracing::debug!(%error, "raft initialize"),
                    }
                }
                continue;
            }
            if metrics.current_leader != Some(self.id) {
                continue;
            }
            for peer in up {
                let id = node_id(&peer);
                if voters.contains(&id) {
                    continue;
                }
                if let Err(error) = raft.add_learner(id, BasicNode::new(&peer), true).await {
                    tracing::warn!(%peer, %error, "raft add learner");
                    break;
                }
                let mut all = voters.clone();
                all.insert(id);
                match raft.change_membership(all, false).await {
                    Ok(_) => tracing::info!(%peer, "raft voter added"),
                    Err(error) => tracing::warn!(%peer, %error, "raft add voter"),
                }
                break;
            }
        }
    }

    /// The replicated log as this node sees it (`None` before raft runs).
    pub fn view(&self) -> Option<RaftView> {
        let raft = self.raft()?;
        let metrics = raft.metrics().borrow().clone();
        let membership = metrics.membership_config.membership();
        let name_of = |id: &NodeId| membership.get_node(id).map(|n| n.addr.clone());
        let last_log = metrics.last_log_index.unwrap_or(0);
        let lag = metrics
            .replication
            .iter()
            .flatten()
            .filter_map(|(id, matched)| {
                let behind = last_log.saturating_sub(matched.map_or(0, |m| m.index));
                Some((name_of(id)?, behind))
            })
            .collect();
        let role = match metrics.state {
            openraft::ServerState::Leader => "leader",
            openraft::ServerState::Candidate => "candidate",
            openraft::ServerState::Learner if membership.get_node(&self.id).is_none() => "none",
            openraft::ServerState::Learner => "learner",
            openraft::ServerState::Follower => "follower",
            openraft::ServerState::Shutdown => "none",
        };
        let leader = metrics.current_leader.as_ref().and_then(name_of);
        let members = membership
            .nodes()
            .map(|(id, node)| {
                let role = if leader.as_ref() == Some(&node.addr) {
                    "leader"
                } else if membership.voter_ids().any(|v| v == *id) {
                    "follower"
                } else {
                    "learner"
                };
                (node.addr.clone(), role)
            })
            .collect();
        Some(RaftView {
            role,
            term: metrics.current_term,
            leader,
            members,
            last_log,
            applied: metrics.last_applied.map_or(0, |id| id.index),
            lag,
        })
    }

    /// Sends `request` to peer `name` and waits at most `ttl` for its
    /// answer.
    pub async fn call(
        &self,
        name: &str,
        request: RaftRequest,
        ttl: Duration,
    ) -> Result<RaftResponse, CallError> {
        let body = serde_json::to_vec(&request)?;
        let number = self.next.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        lock(&self.pending).insert(number, tx);
        {
            let mut inner = self.shared.inner();
            let message = PeerMessage::RaftRequest {
                request: number,
                body,
            };
            self.shared.send_control(&mut inner, name, &message);
        }
        let answer = tokio::time::timeout(ttl, rx).await;
        lock(&self.pending).remove(&number);
        match answer {
            Ok(Ok(response)) => Ok(response),
            _ => Err(CallError::NoAnswer {
                peer: name.to_owned(),
            }),
        }
    }

    /// An `RRS` from a peer.
    pub fn on_reply(&self, request: u64, body: &[u8]) {
        let Ok(response) = serde_json::from_slice::<RaftResponse>(body) else {
            tracing::debug!("bad raft reply");
            return;
        };
        if let Some(tx) = lock(&self.pending).remove(&request) {
            let _ = tx.send(response);
        }
    }

    /// An `RRQ` from peer `from`: answered by a task (openraft is async).
    pub fn on_request(self: &Arc<Self>, from: &str, request: u64, body: Vec<u8>) {
        let node = Arc::clone(self);
        let from = from.to_owned();
        self.shared.runtime.spawn(async move {
            let Some(raft) = node.raft() else { return };
            let Ok(rpc) = serde_json::from_slice::<RaftRequest>(&body) else {
                tracing::debug!(peer = %from, "bad raft request");
                return;
            };
            let response = match rpc {
                RaftRequest::Append(rpc) => RaftResponse::Append(raft.append_entries(rpc).await),
                RaftRequest::Vote(rpc) => RaftResponse::Vote(raft.vote(rpc).await),
                RaftRequest::Snapshot(rpc) => {
                    RaftResponse::Snapshot(raft.install_snapshot(rpc).await)
                }
                RaftRequest::Propose(change) => RaftResponse::Propose(
                    raft.client_write(change)
                        .await
                        .map(|r| (r.log_id.index, r.data))
                        .map_err(|e| match e {
                            RaftError::APIError(ClientWriteError::ForwardToLeader(_)) => {
                                ProposeError::NotLeader
                            }
                            other => ProposeError::Refused(other.to_string()),
                        }),
                ),
                RaftRequest::RemoveMember(name) => {
                    RaftResponse::RemoveMember(node.remove_here(&raft, &name).await)
                }
                RaftRequest::ReadIndex => RaftResponse::ReadIndex(read_index_here(&raft).await),
            };
            let Ok(body) = serde_json::to_vec(&response) else {
                return;
            };
            let mut inner = node.shared.inner();
            let message = PeerMessage::RaftReply { request, body };
            node.shared.send_control(&mut inner, &from, &message);
        });
    }

    /// Commits `change` through the raft leader and waits until it is
    /// applied on this node. Blocks: call it off the runtime's workers
    /// (the admin API does, with `spawn_blocking`).
    pub fn propose_blocking(self: &Arc<Self>, change: Change) -> Result<(), ConsensusError> {
        let (tx, rx) = std::sync::mpsc::channel();
        let node = Arc::clone(self);
        self.shared.runtime.spawn(async move {
            let _ = tx.send(node.propose(change).await);
        });
        rx.recv_timeout(CHANGE_TIMEOUT + Duration::from_secs(1))
            .unwrap_or(Err(ProposeError::NotConfirmed))
            .map_err(ConsensusError::from)
    }

    /// Takes node `name` out of the replicated log's members for good
    /// (it is gone and will not return; should it come back, the leader
    /// adds it again like a new node). Done by the leader: a follower asks
    /// it. Fails after [`CHANGE_TIMEOUT`] without a majority.
    pub async fn remove_member(&self, name: &str) -> Result<(), RemoveError> {
        let not_confirmed = |why: String| RemoveError::NotConfirmed(why);
        let raft = self
            .raft()
            .ok_or_else(|| not_confirmed("raft is not running".into()))?;
        let deadline = tokio::time::Instant::now() + CHANGE_TIMEOUT;
        loop {
            let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
            if remaining.is_zero() {
                return Err(not_confirmed("no raft leader answered in time".into()));
            }
            let metrics = raft.metrics().borrow().clone();
            let leader = metrics.current_leader.and_then(|id| {
                let membership = metrics.membership_config.membership();
                membership.get_node(&id).map(|n| (id, n.addr.clone()))
            });
            let Some((leader, leader_name)) = leader else {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            };
            if leader == self.id {
                return tokio::time::timeout(remaining, self.remove_here(&raft, name))
                    .await
                    .unwrap_or_else(|_| Err(not_confirmed("timed out".into())));
            }
            let request = RaftRequest::RemoveMember(name.to_owned());
            match self.call(&leader_name, request, remaining).await {
                Ok(RaftResponse::RemoveMember(result)) => return result,
                Ok(_) => return Err(not_confirmed("mismatched raft reply".into())),
                Err(why) => return Err(not_confirmed(why.to_string())),
            }
        }
    }

    /// [`RaftNode::remove_member`] on the leader.
    async fn remove_here(&self, raft: &Raft<TypeConfig>, name: &str) -> Result<(), RemoveError> {
        let id = node_id(name);
        let (is_member, is_voter) = {
            let metrics = raft.metrics().borrow().clone();
            let membership = metrics.membership_config.membership();
            let voter = membership.voter_ids().any(|v| v == id);
            (membership.get_node(&id).is_some(), voter)
        };
        if !is_member {
            return Err(RemoveError::NotMember(name.to_owned()));
        }
        // The leader's own view decides too: only a node it no longer
        // hears from (down, left, or forgotten) goes; never itself.
        let state = self.shared.inner().membership.peer(name).map(|p| p.state);
        let gone = matches!(state, None | Some(PeerState::Down | PeerState::Left));
        if name == self.name || !gone {
            return Err(RemoveError::Up(name.to_owned()));
        }
        let ids = BTreeSet::from([id]);
        let change = if is_voter {
            openraft::ChangeMembers::RemoveVoters(ids)
        } else {
            openraft::ChangeMembers::RemoveNodes(ids)
        };
        raft.change_membership(change, false)
            .await
            .map(drop)
            .map_err(|e| RemoveError::NotConfirmed(e.to_string()))?;
        tracing::info!(node = %name, "removed from the cluster's members");
        Ok(())
    }

    /// Proposes `change` without blocking the caller: `done` gets what
    /// [`RaftNode::propose`] returns, from a runtime task.
    pub fn propose_then(
        self: &Arc<Self>,
        change: Change,
        done: impl FnOnce(Result<(), ConsensusError>) + Send + 'static,
    ) {
        let node = Arc::clone(self);
        self.shared.runtime.spawn(async move {
            done(node.propose(change).await.map_err(ConsensusError::from));
        });
    }

    /// See [`RaftNode::propose_blocking`]. Refused at once while this
    /// node's raft member is stopped by a storage failure.
    pub async fn propose(&self, change: Change) -> Result<(), ProposeError> {
        if let Some(stalled) = self.stalled() {
            return Err(stalled);
        }
        let result = self.propose_through_leader(change).await;
        match (result, self.stalled()) {
            // It failed because this node's storage did (the leader may
            // still have committed it: "not confirmed", as for a timeout).
            (Err(_), Some(stalled)) => Err(stalled),
            (result, _) => result,
        }
    }

    async fn propose_through_leader(&self, change: Change) -> Result<(), ProposeError> {
        let deadline = tokio::time::Instant::now() + CHANGE_TIMEOUT;
        let raft = self.raft().ok_or(ProposeError::NotRunning)?;
        let pause = || tokio::time::sleep(Duration::from_millis(100));
        loop {
            let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
            if remaining.is_zero() {
                return Err(ProposeError::NotConfirmed);
            }
            let metrics = raft.metrics().borrow().clone();
            let Some(leader) = metrics.current_leader else {
                pause().await;
                continue;
            };
            if leader == self.id {
                match tokio::time::timeout(remaining, raft.client_write(change.clone())).await {
                    Ok(Ok(response)) => return Ok(response.data?),
                    Ok(Err(RaftError::APIError(ClientWriteError::ForwardToLeader(_)))) => {
                        pause().await;
                        continue;
                    }
                    Ok(Err(error)) => return Err(ProposeError::Refused(error.to_string())),
                    Err(_) => return Err(ProposeError::NotConfirmed),
                }
            }
            let Some(name) = metrics
                .membership_config
                .membership()
                .get_node(&leader)
                .map(|n| n.addr.clone())
            else {
                return Err(ProposeError::NotConfirmed);
            };
            let answer = self
                .call(&name, RaftRequest::Propose(change.clone()), remaining)
                .await;
            let (index, result) = match answer {
                Ok(RaftResponse::Propose(Ok(done))) => done,
                Ok(RaftResponse::Propose(Err(ProposeError::NotLeader))) => {
                    pause().await;
                    continue;
                }
                Ok(RaftResponse::Propose(Err(why))) => return Err(why),
                Ok(_) => return Err(ProposeError::Mismatched),
                Err(_) => return Err(ProposeError::NotConfirmed),
            };
            let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
            raft.wait(Some(remaining))
                .applied_index_at_least(Some(index), "change applied here")
                .await
                .map_err(|e| ProposeError::NotAppliedHere(e.to_string()))?;
            return Ok(result?);
        }
    }
}

/// Whether `dir` takes a write of [`PROBE_BYTES`] (and its fsync) now.
fn probe_writable(dir: &std::path::Path) -> std::io::Result<()> {
    use std::io::Write;
    let path = dir.join("raft.probe");
    let result = std::fs::File::create(&path).and_then(|mut file| {
        file.write_all(&[0u8; PROBE_BYTES])?;
        file.sync_data()
    });
    let _ = std::fs::remove_file(&path);
    result
}

/// The leader's read index: the last entry a read must see applied,
/// after a round of heartbeats confirmed that this node still leads.
async fn read_index_here(raft: &Raft<TypeConfig>) -> Result<u64, ProposeError> {
    match raft.get_read_log_id().await {
        Ok((read, _applied)) => Ok(read.map_or(0, |id| id.index)),
        Err(RaftError::APIError(openraft::error::CheckIsLeaderError::ForwardToLeader(_))) => {
            Err(ProposeError::NotLeader)
        }
        Err(error) => Err(ProposeError::Refused(error.to_string())),
    }
}

impl RaftNode {
    /// Waits until this node has applied everything the cluster had
    /// committed when it was called (a read index from the leader), so
    /// that a read here sees every change another node acknowledged
    /// before. Fails after [`CHANGE_TIMEOUT`] without a leader backed by a
    /// majority, or when this node cannot catch up in that time.
    pub async fn read_barrier(&self) -> Result<(), ProposeError> {
        if let Some(stalled) = self.stalled() {
            return Err(stalled);
        }
        let deadline = tokio::time::Instant::now() + CHANGE_TIMEOUT;
        let raft = self.raft().ok_or(ProposeError::NotRunning)?;
        let pause = || tokio::time::sleep(Duration::from_millis(50));
        // Why the last try failed: a leader that lost its majority, or
        // one that could not be asked, may be back before the deadline.
        let mut last = ProposeError::NoLeader;
        loop {
            let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
            if remaining.is_zero() {
                return Err(last);
            }
            let metrics = raft.metrics().borrow().clone();
            let leader = metrics.current_leader.and_then(|id| {
                let membership = metrics.membership_config.membership();
                membership.get_node(&id).map(|n| (id, n.addr.clone()))
            });
            let Some((leader, name)) = leader else {
                pause().await;
                continue;
            };
            let answer = if leader == self.id {
                tokio::time::timeout(remaining, read_index_here(&raft))
                    .await
                    .unwrap_or(Err(ProposeError::NoLeader))
            } else {
                match self.call(&name, RaftRequest::ReadIndex, remaining).await {
                    Ok(RaftResponse::ReadIndex(answer)) => answer,
                    Ok(_) => Err(ProposeError::Mismatched),
                    Err(_) => Err(ProposeError::NoLeader),
                }
            };
            let index = match answer {
                Ok(index) => index,
                Err(why) => {
                    last = why;
                    pause().await;
                    continue;
                }
            };
            let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
            raft.wait(Some(remaining))
                .applied_index_at_least(Some(index), "read barrier")
                .await
                .map_err(|e| ProposeError::NotAppliedHere(e.to_string()))?;
            return Ok(());
        }
    }

    /// [`RaftNode::read_barrier`] for a caller off the runtime's workers.
    pub fn read_barrier_blocking(self: &Arc<Self>) -> Result<(), ConsensusError> {
        let (tx, rx) = std::sync::mpsc::channel();
        let node = Arc::clone(self);
        self.shared.runtime.spawn(async move {
            let _ = tx.send(node.read_barrier().await);
        });
        rx.recv_timeout(CHANGE_TIMEOUT + Duration::from_secs(1))
            .unwrap_or(Err(ProposeError::NoLeader))
            .map_err(ConsensusError::from)
    }
}

/// The node's changes go through raft: [`Changes`] holds this (weakly)
/// once the member starts.
impl Consensus for RaftNode {
    fn propose_blocking(self: Arc<Self>, change: Change) -> Result<(), ConsensusError> {
        RaftNode::propose_blocking(&self, change)
    }

    fn propose_then(
        self: Arc<Self>,
        change: Change,
        done: Box<dyn FnOnce(Result<(), ConsensusError>) + Send + 'static>,
    ) {
        RaftNode::propose_then(&self, change, done);
    }

    fn read_barrier_blocking(self: Arc<Self>) -> Result<(), ConsensusError> {
        RaftNode::read_barrier_blocking(&self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_ids_are_fixed_and_distinct() {
        assert_eq!(node_id("n0"), node_id("n0"));
        assert_ne!(node_id("n0"), node_id("n1"));
        assert_eq!(node_id(""), 0xcbf2_9ce4_8422_2325);
    }

    #[test]
    fn requests_round_trip_as_json() {
        let change = Change::ClearVhosts;
        let body = serde_json::to_vec(&RaftRequest::Propose(change.clone())).unwrap();
        match serde_json::from_slice::<RaftRequest>(&body).unwrap() {
            RaftRequest::Propose(back) => assert_eq!(back, change),
            other => panic!("{other:?}"),
        }
        let skipped = NotApplied {
            reason: "exists".into(),
        };
        let body =
            serde_json::to_vec(&RaftResponse::Propose(Ok((7, Err(skipped.clone()))))).unwrap();
        match serde_json::from_slice::<RaftResponse>(&body).unwrap() {
            RaftResponse::Propose(Ok((7, Err(why)))) => assert_eq!(why, skipped),
            other => panic!("{other:?}"),
        }
        let body =
            serde_json::to_vec(&RaftResponse::Propose(Err(ProposeError::NotLeader))).unwrap();
        match serde_json::from_slice::<RaftResponse>(&body).unwrap() {
            RaftResponse::Propose(Err(ProposeError::NotLeader)) => {}
            other => panic!("{other:?}"),
        }
    }
}
