//! A client session: one WebSocket connection on one vhost.

use std::collections::{BTreeSet, VecDeque};
use std::fmt;

use crate::name::{ChannelName, Permissions, SessionId, UserName, VhostPath};

/// The glue's handle for a session: the id of the client's stream. The broker
/// never makes these up; it only echoes them back through the `Outlet`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionKey(pub u64);

impl fmt::Display for SessionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}

/// The broker's view of one session.
#[derive(Debug)]
pub(crate) struct Session {
    /// The id backends see (`"sid"` in triggers, the target of `DS`).
    pub sid: SessionId,
    /// The vhost the session connected to; fixed for its lifetime.
    pub vhost: VhostPath,
    /// `None` while anonymous.
    pub user: Option<UserName>,
    /// The user's permissions, or the vhost's anonymous ones. Kept in step
    /// with the vhost's user table by the admin changes.
    pub permissions: Permissions,
    /// Channels subscribed to. Ordered so that notices listing several
    /// (re-authentication) come out in a stable order.
    pub subscriptions: BTreeSet<ChannelName>,
    /// Whether a secret check or a cluster commit is in flight.
    pub hold: Hold,
}

impl Session {
    pub fn new(sid: SessionId, vhost: VhostPath, permissions: Permissions) -> Self {
        Session {
            sid,
            vhost,
            user: None,
            permissions,
            subscriptions: BTreeSet::new(),
            hold: Hold::Ready,
        }
    }

    /// Whether the session may do everything in `needed`.
    pub fn may(&self, needed: Permissions) -> bool {
        self.permissions.contains(needed)
    }
}

/// Requests that arrive while the session waits for work done off the
/// broker thread (a secret check, or the cluster confirming a channel the
/// session's `subscribe` creates) wait here, so replies keep request order
/// (a client may send `authenticate` and `subscribe` back to back).
#[derive(Debug, Default)]
pub(crate) enum Hold {
    /// Requests are handled as they arrive.
    #[default]
    Ready,
    /// Something is in flight; later requests are held in order.
    Held {
        /// The held messages, oldest first.
        held: VecDeque<Box<[u8]>>,
        /// Their total size, bounded by `max_pending_bytes`.
        held_bytes: usize,
    },
}

impl Hold {
    /// A fresh `Held` state with nothing held.
    pub fn held() -> Self {
        Hold::Held {
            held: VecDeque::new(),
            held_bytes: 0,
        }
    }
}
