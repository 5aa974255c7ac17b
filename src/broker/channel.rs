//! A channel's subscriber list.
//!
//! Fan-out walks a contiguous `Vec` in subscription order. Unsubscribing
//! leaves a hole (`None`) found through an index map, so both operations are
//! O(1); the holes are squeezed out once they are half the list, which keeps
//! fan-out proportional to the live subscribers (amortised O(1) per change).

use std::collections::{BTreeMap, HashMap};

use crate::name::SessionId;

use super::history::History;
use super::presence::RemoteMember;
use super::session::SessionKey;

/// The sessions subscribed to one channel, and its history if it keeps one.
#[derive(Debug, Default)]
pub(crate) struct Channel {
    /// Subscribers in subscription order; `None` marks an unsubscribed slot.
    slots: Vec<Option<SessionKey>>,
    /// Where each subscriber sits in `slots`.
    index: HashMap<SessionKey, usize>,
    /// Recent messages, when the channel's options ask for them.
    pub history: Option<History>,
    /// Members on other nodes (presence channels on a cluster).
    pub remote: BTreeMap<SessionId, RemoteMember>,
}

impl Channel {
    /// A channel with `history` (or none).
    pub fn with_history(history: Option<History>) -> Self {
        Channel {
            history,
            ..Channel::default()
        }
    }

    /// Adds `key` at the end; `false` if it was already subscribed.
    pub fn subscribe(&mut self, key: SessionKey) -> bool {
        if self.index.contains_key(&key) {
            return false;
        }
        self.index.insert(key, self.slots.len());
        self.slots.push(Some(key));
        true
    }

    /// Removes `key`; `false` if it was not subscribed.
    pub fn unsubscribe(&mut self, key: SessionKey) -> bool {
        let Some(at) = self.index.remove(&key) else {
            return false;
        };
        if let Some(slot) = self.slots.get_mut(at) {
            *slot = None;
        }
        if self.holes() * 2 > self.slots.len() {
            self.compact();
        }
        true
    }

    /// Whether `key` is subscribed.
    #[cfg(test)]
    pub fn contains(&self, key: SessionKey) -> bool {
        self.is_subscribed(key)
    }

    /// Whether `key` is subscribed.
    pub fn is_subscribed(&self, key: SessionKey) -> bool {
        self.index.contains_key(&key)
    }

    /// Number of subscribers.
    pub fn len(&self) -> usize {
        self.index.len()
    }

    /// Subscribers in subscription order.
    pub fn subscribers(&self) -> impl Iterator<Item = SessionKey> + '_ {
        self.slots.iter().flatten().copied()
    }

    /// Removes every subscriber, returning them in subscription order.
    pub fn drain(&mut self) -> Vec<SessionKey> {
        self.index.clear();
        self.slots.drain(..).flatten().collect()
    }

    fn holes(&self) -> usize {
        self.slots.len() - self.index.len()
    }

    fn compact(&mut self) {
        self.slots.retain(Option::is_some);
        for (at, slot) in self.slots.iter().enumerate() {
            if let Some(key) = slot {
                self.index.insert(*key, at);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(c: &Channel) -> Vec<u64> {
        c.subscribers().map(|k| k.0).collect()
    }

    #[test]
    fn keeps_subscription_order_and_is_idempotent() {
        let mut c = Channel::default();
        assert!(c.subscribe(SessionKey(3)));
        assert!(c.subscribe(SessionKey(1)));
        assert!(!c.subscribe(SessionKey(3)));
        assert!(c.subscribe(SessionKey(2)));
        assert_eq!(keys(&c), [3, 1, 2]);
        assert_eq!(c.len(), 3);
    }

    #[test]
    fn unsubscribe_keeps_the_others_in_order() {
        let mut c = Channel::default();
        for k in 0..10 {
            c.subscribe(SessionKey(k));
        }
        for k in [0, 4, 9, 5, 6, 7] {
            assert!(c.unsubscribe(SessionKey(k)));
        }
        assert!(!c.unsubscribe(SessionKey(4)));
        assert_eq!(keys(&c), [1, 2, 3, 8]);
        assert!(c.contains(SessionKey(8)) && !c.contains(SessionKey(9)));
        // Re-subscribing goes to the end.
        c.subscribe(SessionKey(0));
        assert_eq!(keys(&c), [1, 2, 3, 8, 0]);
        assert!(c.unsubscribe(SessionKey(2)));
        assert_eq!(keys(&c), [1, 3, 8, 0]);
    }

    #[test]
    fn holes_are_compacted() {
        let mut c = Channel::default();
        for k in 0..1000 {
            c.subscribe(SessionKey(k));
        }
        for k in 0..900 {
            c.unsubscribe(SessionKey(k));
        }
        assert_eq!(c.len(), 100);
        assert!(c.slots.len() <= 2 * c.len(), "slots {}", c.slots.len());
        assert_eq!(keys(&c), (900..1000).collect::<Vec<_>>());
        for k in 900..1000 {
            assert!(c.unsubscribe(SessionKey(k)), "{k}");
        }
        assert_eq!(c.len(), 0);
        assert!(c.slots.is_empty());
    }

    #[test]
    fn drain_empties() {
        let mut c = Channel::default();
        c.subscribe(SessionKey(5));
        c.subscribe(SessionKey(6));
        c.unsubscribe(SessionKey(5));
        assert_eq!(c.drain(), [SessionKey(6)]);
        assert_eq!(c.len(), 0);
        assert!(c.subscribe(SessionKey(6)));
    }
}
