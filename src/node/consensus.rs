//! The replicated log, as the node sees it. The cluster implements
//! [`Consensus`] (raft); a single node has none and commits locally.

use std::sync::Arc;

use crate::storage::Change;

pub use crate::broker::ConsensusError;

/// Commits changes through the cluster: each is applied on every node, in
/// one order, through [`crate::node::Changes::apply_committed`].
pub trait Consensus: Send + Sync {
    /// Proposes `change` and waits until it is applied on this node, or
    /// fails after the change timeout. Blocks: call it off the async
    /// runtime's workers.
    fn propose_blocking(self: Arc<Self>, change: Change) -> Result<(), ConsensusError>;

    /// Proposes `change` without blocking; `done` runs (on another thread)
    /// once it is applied on this node or has failed.
    fn propose_then(
        self: Arc<Self>,
        change: Change,
        done: Box<dyn FnOnce(Result<(), ConsensusError>) + Send + 'static>,
    );

    /// Waits until this node has applied every change the cluster had
    /// committed when it was called (read-your-writes across nodes), or
    /// fails after the change timeout. Blocks like `propose_blocking`.
    fn read_barrier_blocking(self: Arc<Self>) -> Result<(), ConsensusError>;
}
