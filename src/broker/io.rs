//! What the broker needs from the outside, as traits the glue implements.
//!
//! The broker calls these synchronously and never waits on them: `send`
//! answers at once whether the message fits, `trigger` whether a worker
//! took it. Only `commit` may block (it is durable storage), and it is called
//! only when a channel is created.

use crate::name::VhostPath;
use crate::protocol::backend::BackendReply;
use crate::protocol::CloseReason;
use crate::storage::{Change, StorageError};

use super::pending::PendingChange;
use super::session::SessionKey;

/// The way out to client sessions.
pub trait Outlet {
    /// Offers one text message to one session. `false` means the session has
    /// no room (its pending outbound bytes would pass the limit); the broker
    /// then closes it as a slow consumer. Must not block.
    fn send(&mut self, key: SessionKey, payload: &[u8]) -> bool;

    /// Offers one text message to each of `keys`, in order, as
    /// [`Outlet::send`] would; the keys that had no room are added to
    /// `refused`. Returns how many took it. An outlet that can hand the
    /// message on once for all of them (a broadcast) does so.
    fn send_many(
        &mut self,
        keys: &[SessionKey],
        payload: &[u8],
        refused: &mut Vec<SessionKey>,
    ) -> usize {
        send_each(self, keys, payload, refused)
    }

    /// Closes a session with `reason` (close frame with its code, then the
    /// TCP close). The broker has already forgotten the session, so calling
    /// [`Broker::close_session`](super::Broker::close_session) for it later
    /// is a harmless no-op.
    fn close(&mut self, key: SessionKey, reason: CloseReason);

    /// Closes a session with a backend's own close `code` and `reason`
    /// ([`CloseReason::Backend`]).
    fn close_with(&mut self, key: SessionKey, code: u16, reason: &str) {
        let _ = (code, reason);
        self.close(key, CloseReason::Backend);
    }
}

/// [`Outlet::send_many`] as one [`Outlet::send`] per key.
pub fn send_each<O: Outlet + ?Sized>(
    outlet: &mut O,
    keys: &[SessionKey],
    payload: &[u8],
    refused: &mut Vec<SessionKey>,
) -> usize {
    let mut sent = 0;
    for &key in keys {
        if outlet.send(key, payload) {
            sent += 1;
        } else {
            refused.push(key);
        }
    }
    sent
}

/// No ready backend worker could take a trigger.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("no ready backend worker")]
pub struct NoWorker;

/// The way to backend workers.
pub trait Backend {
    /// Hands a trigger (the `TR` payload) to a ready worker of `vhost`.
    fn trigger(&mut self, vhost: &VhostPath, payload: &[u8]) -> Result<(), NoWorker>;

    /// Hands a session event (`SE` payload) to every worker of `vhost`
    /// that asked for them. Must not block; may drop it. (No default: a
    /// wrapper that forgot to pass it on would silence every event.)
    fn session_event(&mut self, vhost: &VhostPath, payload: &[u8]);
}

/// Durable storage of vhosts, users and channels.
pub trait Persist {
    /// Makes `change` durable before the broker acknowledges it. Used for the
    /// channels the broker creates itself (auto-created on `subscribe`,
    /// opened or closed by a backend).
    fn commit(&mut self, change: &Change) -> Result<(), StorageError>;

    /// Whether the broker's changes need a cluster's confirmation before
    /// they are acknowledged. Then the broker does not call
    /// [`Persist::commit`] but hands each change to the glue
    /// ([`crate::broker::Outcome::Replicate`],
    /// [`crate::broker::ChannelOp::Replicate`]).
    fn replicated(&self) -> bool {
        false
    }

    /// Has the cluster commit `change` without blocking this thread, then
    /// hands the outcome to `completion` (from another thread). The change
    /// is applied on this node (`Task::Apply`) before the completion runs.
    /// Called only when [`Persist::replicated`].
    fn propose(&mut self, change: Change, completion: Completion);
}

/// Who waits for a change the broker handed to the cluster.
pub enum Completion {
    /// A session's `subscribe` (back to the broker as `Task::Replicated`).
    Session(PendingChange),
    /// A backend's `OC` / `CC` (`OK`, or `ER 597` when not committed).
    Backend(BackendReply),
}

/// Everything the broker may call during one operation.
pub struct Io<'a> {
    /// Messages and closes to client sessions.
    pub outlet: &'a mut dyn Outlet,
    /// Triggers to backend workers.
    pub backend: &'a mut dyn Backend,
    /// Durable channel changes.
    pub persist: &'a mut dyn Persist,
}
