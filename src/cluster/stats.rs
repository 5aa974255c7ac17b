//! Counters of cluster traffic: atomics bumped wherever the traffic
//! happens, copied into the node's counters file (labels `cluster.*`) by
//! the broker thread with its own statistics, so `/stats`, `/metrics` and
//! the monitor show them without asking the cluster.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;

use super::membership::PeerState;
use super::shared::Shared;
use crate::stream::{Counter, CountersManager};

macro_rules! counters {
    ($($(#[$doc:meta])* $name:ident),* $(,)?) => {
        /// Live counters (relaxed atomics; exact values are not needed).
        #[derive(Debug, Default)]
        pub struct Counters {
            $($(#[$doc])* pub $name: AtomicU64,)*
        }

        /// A copy of [`Counters`] plus gauges.
        #[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
        pub struct ClusterStats {
            /// Peers up now.
            pub peers_up: u64,
            /// Peers down or left now.
            pub peers_down: u64,
            $($(#[$doc])* pub $name: u64,)*
        }

        impl Counters {
            fn fill(&self, stats: &mut ClusterStats) {
                $(stats.$name = self.$name.load(Ordering::Relaxed);)*
            }
        }

        impl ClusterStats {
            /// `(label, value)` pairs, labelled `cluster.<field>`.
            pub fn labelled(&self) -> Vec<(String, u64)> {
                vec![
                    ("cluster.peers_up".to_owned(), self.peers_up),
                    ("cluster.peers_down".to_owned(), self.peers_down),
                    $((concat!("cluster.", stringify!($name)).to_owned(), self.$name),)*
                ]
            }
        }
    };
}

counters!(
    /// Ordered broadcasts this node (as sequencer) queued to peers.
    deliveries_out,
    /// Ordered broadcasts received from a sequencer and delivered here.
    deliveries_in,
    /// Broadcasts sent to their sequencer.
    forwards_out,
    /// Broadcasts received to be ordered here.
    forwards_in,
    /// Triggers handed to a peer's workers.
    triggers_out,
    /// Triggers received from peers.
    triggers_in,
    /// Triggers received that found no ready worker here (lost).
    triggers_lost,
    /// Messages not queued because a link's queue was full.
    dropped_full,
    /// Data messages from a peer that is down here (dropped).
    dropped_down,
    /// Deliveries from a node that is not the channel's sequencer here.
    dropped_not_sequencer,
    /// Server broadcasts (`RB`, `BS`) passed to peers.
    server_broadcasts_out,
    /// Server broadcasts received from peers.
    server_broadcasts_in,
    /// Forwarded broadcasts sent to this node before it came back from a
    /// freeze (dropped: their senders may have ordered later ones
    /// elsewhere meanwhile).
    dropped_stale,
    /// Forwarded broadcasts that met a second change of sequencer.
    dropped_hops,
    /// Peer messages refused: bad frames, bad HELLO, unknown routing id.
    refused,
    /// Times a peer went down.
    peers_lost,
    /// Times a peer left gracefully (`LEAVE`).
    peers_left,
);

impl Shared {
    /// The counters with the current gauges.
    pub fn stats(&self) -> ClusterStats {
        let mut stats = ClusterStats::default();
        self.counters.fill(&mut stats);
        let inner = self.inner();
        for (_, peer) in inner.membership.peers() {
            match peer.state {
                PeerState::Up => stats.peers_up += 1,
                PeerState::Down | PeerState::Left => stats.peers_down += 1,
                PeerState::Joining => {}
            }
        }
        stats
    }
}

/// Copies cluster statistics into a counters file.
#[derive(Default)]
pub struct Publisher {
    counters: HashMap<String, Counter>,
}

impl Publisher {
    /// Sets every `cluster.*` counter (allocating new labels, such as a new
    /// peer's, on first sight).
    pub fn publish(&mut self, shared: &Shared, manager: &CountersManager) {
        let mut values: Vec<(String, u64)> = shared.stats().labelled();
        {
            let inner = shared.inner();
            for (name, peer) in inner.membership.peers() {
                let up = u64::from(peer.state == PeerState::Up);
                let t = peer.traffic;
                values.push((format!("cluster.peer.{name}.up"), up));
                values.push((format!("cluster.peer.{name}.messages_in"), t.messages_in));
                values.push((format!("cluster.peer.{name}.messages_out"), t.messages_out));
                values.push((format!("cluster.peer.{name}.bytes_in"), t.bytes_in));
                values.push((format!("cluster.peer.{name}.bytes_out"), t.bytes_out));
                // Channels the peer has subscribers for, as known here: what
                // a test (or an operator) waits on after a subscribe.
                let interest = peer.interest.len() as u64;
                values.push((format!("cluster.peer.{name}.interest"), interest));
            }
        }
        if let Some(view) = shared.raft.get().and_then(|r| r.view()) {
            values.push((
                "cluster.raft.leader".into(),
                u64::from(view.role == "leader"),
            ));
            values.push(("cluster.raft.term".into(), view.term));
            values.push(("cluster.raft.last_log".into(), view.last_log));
            values.push(("cluster.raft.applied".into(), view.applied));
            for (name, lag) in &view.lag {
                if name != &shared.settings.name {
                    values.push((format!("cluster.peer.{name}.lag"), *lag));
                }
            }
        }
        for (label, value) in values {
            if !self.counters.contains_key(&label) {
                match manager.allocate(&label) {
                    Ok(counter) => {
                        self.counters.insert(label.clone(), counter);
                    }
                    Err(error) => {
                        tracing::debug!(%error, %label, "no room for cluster counter");
                        continue;
                    }
                }
            }
            if let Some(counter) = self.counters.get(&label) {
                counter.set(value as i64);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_cover_every_counter() {
        let counters = Counters::default();
        counters.deliveries_in.fetch_add(3, Ordering::Relaxed);
        let mut stats = ClusterStats::default();
        counters.fill(&mut stats);
        let labelled = stats.labelled();
        assert!(labelled.contains(&("cluster.deliveries_in".to_owned(), 3)));
        assert!(labelled.iter().any(|(l, _)| l == "cluster.peers_lost"));
        assert!(labelled.iter().any(|(l, _)| l == "cluster.peers_left"));
        assert_eq!(labelled.len(), 19);
    }
}
