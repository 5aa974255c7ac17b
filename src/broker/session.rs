//! A client session: one WebSocket connection on one vhost.

use std::collections::VecDeque;
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
    pub subscriptions: Subscriptions,
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
            subscriptions: Subscriptions::default(),
            hold: Hold::Ready,
        }
    }

    /// Whether the session may do everything in `needed`.
    pub fn may(&self, needed: Permissions) -> bool {
        self.permissions.contains(needed)
    }
}

/// A session's channels, in order. A sorted vector rather than a tree: a
/// session holds a handful, and a tree's first node alone costs more than
/// an idle connection's whole budget (ARCHITECTURE.md, "Memory per
/// connection").
#[derive(Debug, Default)]
pub(crate) struct Subscriptions(Vec<ChannelName>);

impl Subscriptions {
    pub fn contains(&self, name: &ChannelName) -> bool {
        self.0.binary_search(name).is_ok()
    }

    /// Adds `name`; false when it was there already.
    pub fn insert(&mut self, name: ChannelName) -> bool {
        match self.0.binary_search(&name) {
            Ok(_) => false,
            Err(at) => {
                // Most sessions hold one or two channels: grow one slot at a
                // time up to four instead of starting at four.
                if self.0.len() == self.0.capacity() && self.0.len() < 4 {
                    self.0.reserve_exact(1);
                }
                self.0.insert(at, name);
                true
            }
        }
    }

    /// Removes `name`; false when it was not there.
    pub fn remove(&mut self, name: &ChannelName) -> bool {
        match self.0.binary_search(name) {
            Ok(at) => {
                self.0.remove(at);
                true
            }
            Err(_) => false,
        }
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// The channels in order.
    pub fn iter(&self) -> std::slice::Iter<'_, ChannelName> {
        self.0.iter()
    }
}

impl<'a> IntoIterator for &'a Subscriptions {
    type Item = &'a ChannelName;
    type IntoIter = std::slice::Iter<'a, ChannelName>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
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
    /// Something is in flight; later requests are held in order. Boxed,
    /// so that the sessions that hold nothing (nearly all) pay a pointer.
    Held(Box<Held>),
}

/// The requests a session holds.
#[derive(Debug, Default)]
pub(crate) struct Held {
    /// The held messages, oldest first.
    pub held: VecDeque<Box<[u8]>>,
    /// Their total size, bounded by `max_pending_bytes`.
    pub held_bytes: usize,
}

impl Hold {
    /// A fresh `Held` state with nothing held.
    pub fn held() -> Self {
        Hold::Held(Box::default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> ChannelName {
        ChannelName::parse(s).expect("valid channel name")
    }

    /// A session with one channel pays for one slot, not four; order and
    /// uniqueness hold as the vector grows past the small sizes.
    #[test]
    fn subscriptions_grow_one_slot_at_a_time_while_small() {
        let mut subs = Subscriptions::default();
        assert!(subs.insert(name("news")));
        assert_eq!(subs.0.capacity(), 1);
        assert!(!subs.insert(name("news")));
        assert!(subs.insert(name("chat")));
        assert_eq!(subs.0.capacity(), 2);
        for n in ["e", "d", "c", "b", "a"] {
            assert!(subs.insert(name(n)));
        }
        let names: Vec<&str> = subs.iter().map(|n| n.as_str()).collect();
        assert_eq!(names, ["a", "b", "c", "chat", "d", "e", "news"]);
        assert!(subs.remove(&name("chat")));
        assert!(!subs.contains(&name("chat")));
        assert_eq!(subs.len(), 6);
    }
}
