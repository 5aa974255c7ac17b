//! Who is in the cluster and who is alive (pure: time comes in as an
//! argument). Members are learnt from HELLOs and from the member lists
//! gossiped in heartbeats; each node judges liveness by itself: a peer it
//! has not heard a HELLO or heartbeat from for `timeout` is down, and is up
//! again as soon as one arrives. Data messages do not count as signs of
//! life, so whatever a frozen peer had queued before it froze arrives while
//! it is still down here and is dropped (see ARCHITECTURE.md, "Cluster").
//! A peer that says `LEAVE` is *left* at once, without waiting for the
//! timeout, and stays left until it comes back with a new incarnation.
//!
//! Each peer also carries what it told us: the `(vhost, channel)` pairs it
//! has subscribers for and its ready workers per vhost.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use super::rendezvous;
use super::wire::{InterestUpdate, Member};

/// A `(vhost, channel)` pair, as text (peers' names are checked when used).
pub type Pair = (String, String);

/// A peer's state as this node sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerState {
    /// Known from gossip, never heard from.
    Joining,
    /// Heard from within the timeout.
    Up,
    /// Silent for longer than the timeout.
    Down,
    /// Said it was leaving (graceful shutdown); only a restart (a new
    /// incarnation) brings it back.
    Left,
}

impl PeerState {
    /// `joining`, `up`, `down` or `left`.
    pub fn as_str(self) -> &'static str {
        match self {
            PeerState::Joining => "joining",
            PeerState::Up => "up",
            PeerState::Down => "down",
            PeerState::Left => "left",
        }
    }
}

/// Traffic counters of one peer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Traffic {
    /// Messages received from it.
    pub messages_in: u64,
    /// Messages queued to it.
    pub messages_out: u64,
    /// Bytes received from it.
    pub bytes_in: u64,
    /// Bytes queued to it.
    pub bytes_out: u64,
}

/// One other node.
#[derive(Debug, Clone)]
pub struct Peer {
    /// Its cluster address.
    pub addr: String,
    /// Its incarnation (0 until heard).
    pub incarnation: u64,
    /// Up, down or joining.
    pub state: PeerState,
    /// Last HELLO or heartbeat.
    pub last_heard: Option<Instant>,
    /// Channels it has subscribers for.
    pub interest: HashSet<Pair>,
    /// Its ready workers per vhost.
    pub workers: BTreeMap<String, u32>,
    /// What went each way.
    pub traffic: Traffic,
}

/// A change of a peer's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The peer is up (first contact, back from down, or restarted): it
    /// needs our full interest snapshot.
    Up(String),
    /// The peer went silent.
    Down(String),
    /// The peer said it was leaving.
    Left(String),
}

/// The member table of one node.
#[derive(Debug)]
pub struct Membership {
    me: String,
    my_addr: String,
    timeout: Duration,
    peers: BTreeMap<String, Peer>,
    /// This node is leaving: it no longer orders any channel.
    leaving: bool,
}

impl Membership {
    /// The table of node `me` listening on `my_addr`; peers silent for
    /// `timeout` are down.
    pub fn new(me: &str, my_addr: &str, timeout: Duration) -> Self {
        Membership {
            me: me.to_owned(),
            my_addr: my_addr.to_owned(),
            timeout,
            peers: BTreeMap::new(),
            leaving: false,
        }
    }

    /// This node's name.
    pub fn me(&self) -> &str {
        &self.me
    }

    /// Learns `member` from gossip. Returns its address if it is new here
    /// (the caller dials it).
    pub fn learn(&mut self, member: &Member) -> Option<String> {
        if member.name == self.me || member.addr == self.my_addr {
            return None;
        }
        if let Some(peer) = self.peers.get_mut(&member.name) {
            if peer.addr == member.addr {
                return None;
            }
            peer.addr.clone_from(&member.addr);
            return Some(member.addr.clone());
        }
        self.peers
            .insert(member.name.clone(), Peer::new(&member.addr));
        Some(member.addr.clone())
    }

    /// A HELLO or heartbeat from `name`. A new incarnation means the peer
    /// restarted: what it told us before is forgotten.
    pub fn heard(
        &mut self,
        name: &str,
        addr: &str,
        incarnation: u64,
        now: Instant,
    ) -> Option<Event> {
        if name == self.me {
            return None;
        }
        let peer = self
            .peers
            .entry(name.to_owned())
            .or_insert_with(|| Peer::new(addr));
        peer.last_heard = Some(now);
        let restarted = peer.incarnation != incarnation;
        if restarted {
            peer.incarnation = incarnation;
            peer.interest.clear();
            peer.workers.clear();
        } else if peer.state == PeerState::Left {
            // A leaving node keeps its links (and heartbeats) until it
            // exits; they do not bring it back.
            return None;
        }
        if restarted || peer.state != PeerState::Up {
            peer.state = PeerState::Up;
            return Some(Event::Up(name.to_owned()));
        }
        None
    }

    /// `name` (at `incarnation`) said it is leaving: it is left at once, and
    /// what it told us is forgotten. `None` if it had already left, or the
    /// message is from an incarnation we do not know.
    pub fn left(&mut self, name: &str, incarnation: u64) -> Option<Event> {
        let peer = self.peers.get_mut(name)?;
        if peer.incarnation != incarnation || peer.state == PeerState::Left {
            return None;
        }
        peer.state = PeerState::Left;
        peer.interest.clear();
        peer.workers.clear();
        Some(Event::Left(name.to_owned()))
    }

    /// This node is leaving: from now on it orders no channel, so the
    /// broadcasts its clients still send go to the peers' sequencers (the
    /// ones the peers use once they have our `LEAVE`).
    pub fn leave(&mut self) {
        self.leaving = true;
    }

    /// Whether [`Membership::leave`] was called.
    pub fn is_leaving(&self) -> bool {
        self.leaving
    }

    /// Whether `name` has left (and not come back).
    pub fn has_left(&self, name: &str) -> bool {
        self.peers
            .get(name)
            .is_some_and(|p| p.state == PeerState::Left)
    }

    /// Marks peers silent for longer than the timeout down.
    pub fn tick(&mut self, now: Instant) -> Vec<Event> {
        let mut events = Vec::new();
        for (name, peer) in &mut self.peers {
            let silent = peer
                .last_heard
                .is_none_or(|t| now.saturating_duration_since(t) > self.timeout);
            if peer.state == PeerState::Up && silent {
                peer.state = PeerState::Down;
                events.push(Event::Down(name.clone()));
            }
        }
        events
    }

    /// Whether `name` is up.
    pub fn is_up(&self, name: &str) -> bool {
        self.peers
            .get(name)
            .is_some_and(|p| p.state == PeerState::Up)
    }

    /// A peer by name.
    pub fn peer(&self, name: &str) -> Option<&Peer> {
        self.peers.get(name)
    }

    /// A peer by name, to count traffic or store what it said.
    pub fn peer_mut(&mut self, name: &str) -> Option<&mut Peer> {
        self.peers.get_mut(name)
    }

    /// Every peer, by name.
    pub fn peers(&self) -> impl Iterator<Item = (&String, &Peer)> {
        self.peers.iter()
    }

    /// Names of the peers that are up.
    pub fn up(&self) -> impl Iterator<Item = &String> {
        self.peers
            .iter()
            .filter(|(_, p)| p.state == PeerState::Up)
            .map(|(n, _)| n)
    }

    /// This node and every known peer, for gossip.
    pub fn members(&self) -> Vec<Member> {
        let mut all = vec![Member {
            name: self.me.clone(),
            addr: self.my_addr.clone(),
        }];
        all.extend(self.peers.iter().map(|(name, p)| Member {
            name: name.clone(),
            addr: p.addr.clone(),
        }));
        all
    }

    /// The node that orders `(vhost, channel)`: rendezvous hashing over this
    /// node (unless it is leaving) and the peers that are up.
    pub fn sequencer(&self, vhost: &str, channel: &str) -> &str {
        let me = (!self.leaving).then_some(self.me.as_str());
        let live = me.into_iter().chain(self.up().map(String::as_str));
        rendezvous::choose(live, vhost, channel).unwrap_or(&self.me)
    }

    /// Peers that are up and have subscribers for `(vhost, channel)`.
    pub fn interested(&self, vhost: &str, channel: &str) -> Vec<String> {
        let pair = (vhost.to_owned(), channel.to_owned());
        self.peers
            .iter()
            .filter(|(_, p)| p.state == PeerState::Up && p.interest.contains(&pair))
            .map(|(n, _)| n.clone())
            .collect()
    }

    /// Applies an interest update from `name`.
    pub fn apply_interest(&mut self, name: &str, update: InterestUpdate) {
        let Some(peer) = self.peers.get_mut(name) else {
            return;
        };
        if update.snapshot {
            peer.interest.clear();
        }
        for pair in update.remove {
            peer.interest.remove(&pair);
        }
        peer.interest.extend(update.add);
    }

    /// Up peers with at least one ready worker for `vhost`, by name.
    pub fn with_workers(&self, vhost: &str) -> Vec<String> {
        self.peers
            .iter()
            .filter(|(_, p)| {
                p.state == PeerState::Up && p.workers.get(vhost).is_some_and(|&n| n > 0)
            })
            .map(|(n, _)| n.clone())
            .collect()
    }

    /// Up peers with ready workers for `vhost` and how many each reported,
    /// by name.
    pub fn worker_counts(&self, vhost: &str) -> Vec<(String, u32)> {
        self.peers
            .iter()
            .filter(|(_, p)| p.state == PeerState::Up)
            .filter_map(|(n, p)| {
                let count = p.workers.get(vhost).copied().filter(|&c| c > 0)?;
                Some((n.clone(), count))
            })
            .collect()
    }

    /// Ready-worker counts per vhost that `name` reported.
    pub fn set_workers(&mut self, name: &str, workers: BTreeMap<String, u32>) {
        if let Some(peer) = self.peers.get_mut(name) {
            peer.workers = workers;
        }
    }
}

impl Peer {
    fn new(addr: &str) -> Self {
        Peer {
            addr: addr.to_owned(),
            incarnation: 0,
            state: PeerState::Joining,
            last_heard: None,
            interest: HashSet::new(),
            workers: BTreeMap::new(),
            traffic: Traffic::default(),
        }
    }
}

/// Local interest: the pairs this node has subscribers for.
#[derive(Debug, Default)]
pub struct LocalInterest {
    pairs: HashMap<Pair, ()>,
}

impl LocalInterest {
    /// Records a transition; `true` if it changed the set.
    pub fn set(&mut self, pair: Pair, subscribed: bool) -> bool {
        if subscribed {
            self.pairs.insert(pair, ()).is_none()
        } else {
            self.pairs.remove(&pair).is_some()
        }
    }

    /// The whole set, sorted.
    pub fn snapshot(&self) -> InterestUpdate {
        let mut add: Vec<Pair> = self.pairs.keys().cloned().collect();
        add.sort();
        InterestUpdate {
            snapshot: true,
            add,
            remove: Vec::new(),
        }
    }
}

#[cfg(test)]
#[path = "membership_tests.rs"]
mod tests;
