//! The node's durable state and the one way it changes. Every change,
//! from an administrator, a backend or the broker itself, is made durable
//! (fsynced to the log) before it is applied and acknowledged; then the
//! broker is told (`Task::Apply`) and the data path follows (vhost
//! bindings). On a cluster the change first goes through [`Consensus`]
//! and is applied on every node in log order.
//!
//! Lock order: the durable state's lock is held for one commit or one
//! read, never across a control call or a wait for the cluster.

use std::sync::{Arc, Mutex, OnceLock, Weak};

use super::{lock, Consensus, ConsensusError, DataPath, Feeds, Inbox};
use crate::broker::{Completion, Persist};
use crate::limits::Limits;
use crate::name::{ResourceName, VhostPath};
use crate::nukleus::control::ControlError;
use crate::nukleus::webrocket::Task;
use crate::protocol::backend::code as backend_code;
use crate::storage::{item_id, Change, Durable, State, StorageError};

/// Why a change failed.
#[derive(Debug, thiserror::Error)]
pub enum ChangeError {
    /// Refused by the state (not found, already exists...) or not durable.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The data path did not take the new binding.
    #[error(transparent)]
    Control(#[from] ControlError),
    /// The cluster did not confirm the change (no leader with a majority in
    /// time): it may still be committed later, or never.
    #[error("the cluster did not confirm the change: {0}")]
    Cluster(#[from] ConsensusError),
    /// This node could not learn in time that it has applied everything
    /// the cluster committed (a read barrier failed): what it holds may be
    /// stale, so it does not answer from it.
    #[error("this node cannot confirm it holds the cluster's latest state: {0}")]
    Stale(ConsensusError),
    /// The change would pass `max_vhosts`, `max_users_per_vhost` or
    /// `max_channels_per_vhost`.
    #[error(transparent)]
    Limit(#[from] LimitError),
}

/// Which count or size limit a change would pass.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LimitError {
    /// `limits.max_vhosts`.
    #[error("the vhost count reached its limit of {limit}")]
    Vhosts {
        /// The limit.
        limit: usize,
    },
    /// `limits.max_users_per_vhost`, `max_channels_per_vhost` or
    /// `max_resources_per_vhost`.
    #[error("vhost {vhost} reached its limit of {limit}")]
    PerVhost {
        /// The vhost.
        vhost: VhostPath,
        /// The limit.
        limit: usize,
    },
    /// `limits.max_item_size`.
    #[error("the item is {size} bytes, over limits.max_item_size ({limit})")]
    ItemSize {
        /// The item's size as JSON.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// `limits.max_items_per_resource`.
    #[error("resource {resource} reached its limit of {limit} items")]
    Items {
        /// The resource.
        resource: ResourceName,
        /// The limit.
        limit: usize,
    },
}

/// The durable state, shared by the broker thread, the admin API, the
/// exchange (tokens) and the cluster (applying committed changes).
pub struct Changes {
    durable: Mutex<Durable>,
    inbox: Inbox,
    data_path: Arc<DataPath>,
    feeds: Feeds,
    limits: Limits,
    /// Whether this node is configured into a cluster: its own changes
    /// then wait for the cluster, even before it has joined (they fail
    /// until then), so that none stays on this node alone.
    clustered: bool,
    /// The cluster's log, once it runs. Weak: the cluster holds `Changes`
    /// to apply what it commits.
    consensus: OnceLock<Weak<dyn Consensus>>,
}

impl Changes {
    /// The state in `durable`, telling `inbox`, `data_path` and `feeds`
    /// of each change.
    pub fn new(
        durable: Durable,
        inbox: Inbox,
        data_path: Arc<DataPath>,
        feeds: Feeds,
        limits: Limits,
        clustered: bool,
    ) -> Self {
        Changes {
            durable: Mutex::new(durable),
            inbox,
            data_path,
            feeds,
            limits,
            clustered,
            consensus: OnceLock::new(),
        }
    }

    /// Starts the feeds the current state asks for (once the node runs).
    pub fn start_feeds(&self) {
        let guard = lock(&self.durable);
        self.feeds.start(&guard.state);
    }

    /// Plugs in the cluster's log (once; later calls are ignored).
    pub fn set_consensus(&self, consensus: Weak<dyn Consensus>) {
        let _ = self.consensus.set(consensus);
    }

    fn consensus(&self) -> Option<Arc<dyn Consensus>> {
        self.consensus.get().and_then(Weak::upgrade)
    }

    /// Runs `f` on the current state.
    pub fn with_state<R>(&self, f: impl FnOnce(&State) -> R) -> R {
        f(&lock(&self.durable).state)
    }

    /// Makes `change` durable, applies it, and tells the broker and the data
    /// path (a new vhost is served at once; a deleted one answers 404).
    ///
    /// Clustered, the change is first checked against this node's state,
    /// then committed through the cluster and returns once it is applied
    /// here; without a majority it fails after the change timeout. Blocks:
    /// call it off the async runtime's workers.
    ///
    /// The count limits (`max_vhosts`, `max_users_per_vhost`,
    /// `max_channels_per_vhost`) are checked here, by the node asked: on a
    /// single node under the same lock as the commit; on a cluster against
    /// this node's state before proposing, so that creations made at once
    /// through several nodes can pass a limit by as many as are in flight
    /// (applying never checks limits, so every node applies the same
    /// changes whatever its own config says).
    ///
    /// On a cluster the check against this node's state comes after a
    /// [read barrier](Changes::read_barrier), so a change to something
    /// another node has just created finds it here.
    pub fn change(&self, change: Change) -> Result<(), ChangeError> {
        let Some(consensus) = self.consensus() else {
            return self.apply_within(change, Some(&self.limits));
        };
        Arc::clone(&consensus)
            .read_barrier_blocking()
            .map_err(|e| match e {
                // This node cannot take changes: say why, as for a commit.
                storage @ ConsensusError::Storage(_) => ChangeError::Cluster(storage),
                other => ChangeError::Stale(other),
            })?;
        self.with_state(|state| {
            state
                .check(&change)
                .map_err(|e| ChangeError::Storage(StorageError::State(e)))?;
            within_limits(&self.limits, state, &change).map_err(ChangeError::Limit)
        })?;
        Ok(consensus.propose_blocking(change)?)
    }

    /// On a cluster, waits until this node has applied every change the
    /// cluster had committed when it was called (the leader's read
    /// index), so that what it reads next includes every change another
    /// node has acknowledged. Fails (`ChangeError::Stale`) after the
    /// change timeout without a leader backed by a majority. Nothing to
    /// wait for on a single node. Blocks: call it off the async runtime's
    /// workers.
    pub fn read_barrier(&self) -> Result<(), ChangeError> {
        match self.consensus() {
            Some(consensus) => consensus
                .read_barrier_blocking()
                .map_err(ChangeError::Stale),
            None => Ok(()),
        }
    }

    /// Applies a change the cluster committed (every node, in log order):
    /// the same as an unclustered [`Changes::change`]. A change that no
    /// longer fits the state is refused with its reason (it was refused
    /// everywhere, or this node applied it before a crash and replays it).
    pub fn apply_committed(&self, change: Change) -> Result<(), ChangeError> {
        self.with_state(|state| state.check(&change))
            .map_err(|e| ChangeError::Storage(StorageError::State(e)))?;
        self.apply_within(change, None)
    }

    /// Replaces the whole state (a snapshot from the cluster's leader) and
    /// tells the broker and the data path each difference, as if the
    /// changes had been applied one by one (a data path that refuses one
    /// is logged; the state stays replaced).
    pub fn replace_state(&self, new: State) -> Result<(), ChangeError> {
        let changes = {
            let mut guard = lock(&self.durable);
            let Durable { store, state } = &mut *guard;
            let changes = state.changes_to(&new);
            store.compact(&new)?;
            *state = new;
            // Queued under the lock: the broker learns each change before
            // anyone can act on the new state (see `apply_within`).
            for change in &changes {
                self.inbox.apply(change);
            }
            changes
        };
        for change in &changes {
            self.feeds.follow(change);
            if let Err(error) = self.data_path.follow(change) {
                tracing::error!(%error, ?change, "the data path did not take a change");
            }
        }
        Ok(())
    }

    /// Commits and applies `change`, first checking `limits` (if any)
    /// under the same lock, then tells the broker and the data path.
    fn apply_within(&self, change: Change, limits: Option<&Limits>) -> Result<(), ChangeError> {
        {
            let mut guard = lock(&self.durable);
            let Durable { store, state } = &mut *guard;
            if let Some(limits) = limits {
                within_limits(limits, state, &change)?;
            }
            store.commit_and_apply(state, &change)?;
            // Queued while the state is still locked, so that whoever sees
            // the change in the state (a cluster answer reading it) finds
            // it queued for the broker already.
            self.inbox.apply(&change);
        }
        self.feeds.follow(&change);
        Ok(self.data_path.follow(&change)?)
    }

    /// The cluster's part of the broker's own channel changes: committed
    /// through the log off the broker thread, answered once applied here.
    fn replicate(self: &Arc<Self>, change: Change, completion: Completion) {
        let inbox = self.inbox.clone();
        let finish = move |confirmed: Result<(), ConsensusError>| match completion {
            Completion::Session(pending) => inbox.send(Task::Replicated { pending, confirmed }),
            Completion::Backend(reply) => {
                reply(confirmed.map_err(|_| backend_code::INTERNAL_ERROR))
            }
        };
        let Some(consensus) = self.consensus() else {
            finish(Err(ConsensusError::NotConfirmed(
                "this node has not joined its cluster yet".into(),
            )));
            return;
        };
        // Nothing to commit, or over a limit: answered at once.
        let at_once = self.with_state(|state| {
            if already_holds(state, &change) {
                Some(Ok(()))
            } else {
                within_limits(&self.limits, state, &change)
                    .err()
                    .map(|why| Err(ConsensusError::NotConfirmed(why.to_string())))
            }
        });
        if let Some(answer) = at_once {
            finish(answer);
            return;
        }
        let changes = Arc::clone(self);
        consensus.propose_then(
            change.clone(),
            Box::new(move |result| {
                // Another node may have made the same change first.
                let confirmed = match result {
                    Err(why) if !changes.with_state(|state| already_holds(state, &change)) => {
                        Err(why)
                    }
                    _ => Ok(()),
                };
                finish(confirmed);
            }),
        );
    }
}

/// The broker's own changes (channels it creates or closes): durable here
/// before it answers; on a cluster through the log instead.
impl Persist for Arc<Changes> {
    fn commit(&mut self, change: &Change) -> Result<(), StorageError> {
        let mut guard = lock(&self.durable);
        let Durable { store, state } = &mut *guard;
        store.commit_and_apply(state, change)
    }

    fn replicated(&self) -> bool {
        self.clustered
    }

    fn propose(&mut self, change: Change, completion: Completion) {
        self.replicate(change, completion);
    }
}

/// Whether `change` keeps `state` within the count limits; why not.
fn within_limits(limits: &Limits, state: &State, change: &Change) -> Result<(), LimitError> {
    let full = |vhost: &VhostPath, limit: usize| {
        Err(LimitError::PerVhost {
            vhost: vhost.clone(),
            limit,
        })
    };
    match change {
        Change::AddVhost { .. } if state.vhosts.len() >= limits.max_vhosts => {
            Err(LimitError::Vhosts {
                limit: limits.max_vhosts,
            })
        }
        Change::AddUser { vhost, .. }
            if state
                .vhosts
                .get(vhost)
                .is_some_and(|v| v.users.len() >= limits.max_users_per_vhost) =>
        {
            full(vhost, limits.max_users_per_vhost)
        }
        Change::AddChannel { vhost, .. }
            if state
                .vhosts
                .get(vhost)
                .is_some_and(|v| v.channels.len() >= limits.max_channels_per_vhost) =>
        {
            full(vhost, limits.max_channels_per_vhost)
        }
        Change::AddResource { vhost, .. }
            if state
                .vhosts
                .get(vhost)
                .is_some_and(|v| v.resources.len() >= limits.max_resources_per_vhost) =>
        {
            full(vhost, limits.max_resources_per_vhost)
        }
        Change::PutItem { .. } => item_within_limits(limits, state, change),
        _ => Ok(()),
    }
}

/// The item limits of a `PutItem` against `state` (checked by the node
/// asked, like the other count limits): its size, and the item count of
/// its resource when it adds an item.
pub fn item_within_limits(
    limits: &Limits,
    state: &State,
    change: &Change,
) -> Result<(), LimitError> {
    let Change::PutItem {
        vhost,
        resource,
        item,
    } = change
    else {
        return Ok(());
    };
    let size = serde_json::to_string(item).map_or(usize::MAX, |text| text.len());
    if size > limits.max_item_size {
        return Err(LimitError::ItemSize {
            size,
            limit: limits.max_item_size,
        });
    }
    let record = state
        .vhosts
        .get(vhost)
        .and_then(|v| v.resources.get(resource));
    let Some(record) = record else {
        return Ok(());
    };
    let new = item_id(item, &record.id_field).is_some_and(|id| !record.items.contains_key(&id));
    if new && record.items.len() >= limits.max_items_per_resource {
        return Err(LimitError::Items {
            resource: resource.clone(),
            limit: limits.max_items_per_resource,
        });
    }
    Ok(())
}

/// Whether `state` already reflects the channel change `change`.
fn already_holds(state: &State, change: &Change) -> bool {
    let has = |vhost: &VhostPath, channel| {
        state
            .vhosts
            .get(vhost)
            .map(|v| v.channels.contains(channel))
    };
    match change {
        Change::AddChannel { vhost, channel } => has(vhost, channel) == Some(true),
        Change::DeleteChannel { vhost, channel } => has(vhost, channel) == Some(false),
        _ => false,
    }
}
