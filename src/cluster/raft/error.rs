//! What goes wrong in the replicated log, one type per boundary: starting
//! raft ([`StartError`]), a request to a peer ([`CallError`]), a change
//! ([`ProposeError`], [`NotApplied`]).

use serde::{Deserialize, Serialize};

use super::NodeId;
use crate::node::{ChangeError, ConsensusError};

/// Why raft did not start on this node (its changes are then refused).
/// openraft's errors are large, so they are boxed.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// openraft refused its settings.
    #[error("raft settings: {0}")]
    Config(Box<openraft::ConfigError>),
    /// `raft.json` / `raft.log` / `raft.snapshot` could not be read.
    #[error("raft files: {0}")]
    Files(#[from] std::io::Error),
    /// The saved snapshot does not decode.
    #[error("the saved raft snapshot does not decode: {0}")]
    Snapshot(#[from] serde_json::Error),
    /// Installing the saved snapshot (a crash cut it short) failed.
    #[error("installing the saved raft snapshot: {0}")]
    Install(#[from] ChangeError),
    /// Writing the raft files failed.
    #[error("raft storage: {0}")]
    Storage(Box<openraft::StorageError<NodeId>>),
    /// A blocking task did not finish.
    #[error("raft start task: {0}")]
    Task(#[from] tokio::task::JoinError),
    /// openraft itself did not start.
    #[error("raft: {0}")]
    Raft(Box<openraft::error::Fatal<NodeId>>),
}

impl From<openraft::ConfigError> for StartError {
    fn from(e: openraft::ConfigError) -> Self {
        StartError::Config(Box::new(e))
    }
}

impl From<openraft::StorageError<NodeId>> for StartError {
    fn from(e: openraft::StorageError<NodeId>) -> Self {
        StartError::Storage(Box::new(e))
    }
}

impl From<openraft::error::Fatal<NodeId>> for StartError {
    fn from(e: openraft::error::Fatal<NodeId>) -> Self {
        StartError::Raft(Box::new(e))
    }
}

/// Why a request to a peer got no answer.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// The request did not encode.
    #[error("cannot encode a raft request: {0}")]
    Encode(#[from] serde_json::Error),
    /// The peer did not answer within the time to live.
    #[error("no raft answer from {peer}")]
    NoAnswer {
        /// The peer's node name.
        peer: String,
    },
}

/// A committed change that this node's state refused when applying it
/// (it no longer fitted: e.g. made at once through another node). The
/// result of applying an entry (openraft's `R`); it travels back to the
/// follower that proposed the change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{reason}")]
pub struct NotApplied {
    /// What the state said.
    pub reason: String,
}

/// Why a change was not confirmed. Travels in the answer to a follower's
/// proposal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum ProposeError {
    /// Raft did not start on this node.
    #[error("raft is not running")]
    NotRunning,
    /// No leader with a majority committed it within the change timeout.
    #[error("no raft leader with a majority answered in time; the change is not confirmed")]
    NotConfirmed,
    /// No leader backed by a majority gave a read index in time.
    #[error("no raft leader with a majority answered in time")]
    NoLeader,
    /// The node asked to propose is no longer the leader (asked again).
    #[error("the node asked is not the raft leader")]
    NotLeader,
    /// The leader's raft refused it.
    #[error("the raft leader refused the change: {0}")]
    Refused(String),
    /// The peer answered something other than a proposal's answer.
    #[error("mismatched raft reply")]
    Mismatched,
    /// Committed, but this node did not apply it within the timeout.
    #[error("committed, but not yet applied on this node: {0}")]
    NotAppliedHere(String),
    /// Committed, and refused by the state when applied.
    #[error(transparent)]
    NotApplied(#[from] NotApplied),
    /// This node's raft files cannot be written (a full disk): its raft
    /// member stopped, and starts again once they can.
    #[error("this node's replicated log cannot be written ({0}); changes through it are refused until it can")]
    Storage(String),
}

impl From<ProposeError> for ConsensusError {
    fn from(error: ProposeError) -> Self {
        match error {
            ProposeError::Storage(_) => ConsensusError::Storage(error.to_string()),
            other => ConsensusError::NotConfirmed(other.to_string()),
        }
    }
}
