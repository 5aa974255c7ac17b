//! Who is in the cluster and who is alive (pure: time comes in as an
//! argument). Members are learnt from HELLOs and from the member lists
//! gossiped in heartbeats; each node judges liveness by itself: a peer it
//! has not heard a HELLO or heartbeat from for `timeout` is down, and is up
//! again as soon as one arrives. Data messages do not count as signs of
//! life, so whatever a frozen peer had queued before it froze arrives while
//! it is still down here and is dropped (see ARCHITECTURE.md, "Cluster").
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
}

impl PeerState {
    /// `joining`, `up` or `down`.
    pub fn as_str(self) -> &'static str {
        match self {
            PeerState::Joining => "joining",
            PeerState::Up => "up",
            PeerState::Down => "down",
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
}

/// The member table of one node.
#[derive(Debug)]
pub struct Membership {
    me: String,
    my_addr: String,
    timeout: Duration,
    peers: BTreeMap<String, Peer>,
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
        }
        if restarted || peer.state != PeerState::Up {
            peer.state = PeerState::Up;
            return Some(Event::Up(name.to_owned()));
        }
        None
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
    /// node and the peers that are up.
    pub fn sequencer(&self, vhost: &str, channel: &str) -> &str {
        let live = std::iter::once(self.me.as_str()).chain(self.up().map(String::as_str));
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
mod tests {
    use super::*;

    const T: Duration = Duration::from_secs(3);

    fn member(name: &str, addr: &str) -> Member {
        Member {
            name: name.into(),
            addr: addr.into(),
        }
    }

    fn pair(v: &str, c: &str) -> Pair {
        (v.into(), c.into())
    }

    #[test]
    fn learns_members_once_and_never_itself() {
        let mut m = Membership::new("a", "h:1", T);
        assert_eq!(m.learn(&member("a", "h:1")), None);
        assert_eq!(m.learn(&member("x", "h:1")), None, "my own address");
        assert_eq!(m.learn(&member("b", "h:2")), Some("h:2".into()));
        assert_eq!(m.learn(&member("b", "h:2")), None);
        assert_eq!(m.peer("b").unwrap().state, PeerState::Joining);
        // A member that moved is dialled at its new address.
        assert_eq!(m.learn(&member("b", "h:3")), Some("h:3".into()));
        let names: Vec<String> = m.members().into_iter().map(|x| x.name).collect();
        assert_eq!(names, ["a", "b"]);
    }

    #[test]
    fn silence_marks_down_and_a_heartbeat_brings_back() {
        let t0 = Instant::now();
        let mut m = Membership::new("a", "h:1", T);
        assert_eq!(m.heard("b", "h:2", 5, t0), Some(Event::Up("b".into())));
        assert_eq!(m.heard("b", "h:2", 5, t0 + Duration::from_secs(1)), None);
        assert!(m.tick(t0 + Duration::from_secs(3)).is_empty());
        assert_eq!(
            m.tick(t0 + Duration::from_millis(4001)),
            [Event::Down("b".into())]
        );
        assert!(!m.is_up("b"));
        assert!(
            m.tick(t0 + Duration::from_secs(10)).is_empty(),
            "down only once"
        );
        assert_eq!(
            m.heard("b", "h:2", 5, t0 + Duration::from_secs(11)),
            Some(Event::Up("b".into()))
        );
        assert!(m.is_up("b"));
    }

    #[test]
    fn a_restart_forgets_what_the_peer_said() {
        let t0 = Instant::now();
        let mut m = Membership::new("a", "h:1", T);
        m.heard("b", "h:2", 1, t0);
        m.apply_interest(
            "b",
            InterestUpdate {
                snapshot: false,
                add: vec![pair("/v", "c")],
                remove: vec![],
            },
        );
        m.set_workers("b", [("/v".to_string(), 2)].into());
        assert_eq!(m.interested("/v", "c"), ["b"]);
        assert_eq!(m.with_workers("/v"), ["b"]);
        // Same state (up), new incarnation: an Up event and a clean slate.
        assert_eq!(m.heard("b", "h:2", 2, t0), Some(Event::Up("b".into())));
        assert!(m.interested("/v", "c").is_empty());
        assert!(m.with_workers("/v").is_empty());
    }

    #[test]
    fn interest_deltas_and_snapshots() {
        let t0 = Instant::now();
        let mut m = Membership::new("a", "h:1", T);
        m.heard("b", "h:2", 1, t0);
        m.heard("c", "h:3", 1, t0);
        let delta = |add: Vec<Pair>, remove: Vec<Pair>| InterestUpdate {
            snapshot: false,
            add,
            remove,
        };
        m.apply_interest("b", delta(vec![pair("/v", "x"), pair("/v", "y")], vec![]));
        m.apply_interest("c", delta(vec![pair("/v", "x")], vec![]));
        assert_eq!(m.interested("/v", "x"), ["b", "c"]);
        m.apply_interest("b", delta(vec![], vec![pair("/v", "x")]));
        assert_eq!(m.interested("/v", "x"), ["c"]);
        assert_eq!(m.interested("/v", "y"), ["b"]);
        m.apply_interest(
            "b",
            InterestUpdate {
                snapshot: true,
                add: vec![pair("/v", "z")],
                remove: vec![],
            },
        );
        assert!(m.interested("/v", "y").is_empty());
        assert_eq!(m.interested("/v", "z"), ["b"]);
        // Down peers get nothing.
        m.tick(t0 + Duration::from_secs(5));
        assert!(m.interested("/v", "z").is_empty());
        assert!(m.interested("/v", "x").is_empty());
    }

    #[test]
    fn the_sequencer_is_chosen_over_live_nodes_only() {
        let t0 = Instant::now();
        let mut a = Membership::new("a", "h:1", T);
        let mut b = Membership::new("b", "h:2", T);
        a.heard("b", "h:2", 1, t0);
        a.heard("c", "h:3", 1, t0);
        b.heard("a", "h:1", 1, t0);
        b.heard("c", "h:3", 1, t0);
        for i in 0..50 {
            let channel = format!("c{i}");
            assert_eq!(a.sequencer("/v", &channel), b.sequencer("/v", &channel));
        }
        // Find a channel c sequences; when c is down, both agree on another.
        let channel = (0..)
            .map(|i| format!("c{i}"))
            .find(|ch| a.sequencer("/v", ch) == "c")
            .unwrap();
        let later = t0 + Duration::from_secs(2);
        a.heard("b", "h:2", 1, later);
        b.heard("a", "h:1", 1, later);
        a.tick(t0 + Duration::from_millis(3500));
        b.tick(t0 + Duration::from_millis(3500));
        let next = a.sequencer("/v", &channel).to_owned();
        assert_ne!(next, "c");
        assert_eq!(b.sequencer("/v", &channel), next);
    }

    #[test]
    fn local_interest_snapshot() {
        let mut local = LocalInterest::default();
        assert!(local.set(pair("/v", "b"), true));
        assert!(!local.set(pair("/v", "b"), true));
        assert!(local.set(pair("/v", "a"), true));
        assert!(local.set(pair("/v", "b"), false));
        assert!(!local.set(pair("/v", "b"), false));
        let snap = local.snapshot();
        assert!(snap.snapshot);
        assert_eq!(snap.add, [pair("/v", "a")]);
    }
}
