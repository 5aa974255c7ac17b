//! The lobby: which workers are ready, per vhost, in round-robin order, and
//! when each was last heard from. Pure: time comes in as `Instant`s, so the
//! tests drive it without sleeping.
//!
//! A worker joins with `RD`, stays while it is heard from (any message
//! counts, `HB` included) and leaves with `QT`, by expiring after
//! `liveness x heartbeat_interval` of silence, when a write to it fails, or
//! when its vhost's token changes (checked on every pick, so a regenerated
//! token stops triggers to old workers at once).

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::identity::Identity;
use crate::name::{AccessToken, VhostPath};

/// A worker's routing id, cheap to clone. Its `Debug` hides the token.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct WorkerId(Arc<[u8]>);

impl WorkerId {
    /// The routing id bytes to address the worker at the ROUTER.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl From<&Identity> for WorkerId {
    fn from(identity: &Identity) -> Self {
        WorkerId(Arc::from(identity.as_bytes()))
    }
}

impl fmt::Debug for WorkerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = String::from_utf8_lossy(&self.0);
        let uuid = text.rsplit(':').next().unwrap_or("");
        write!(f, "WorkerId(…:{uuid})")
    }
}

/// A vhost already has `max_workers_per_vhost` ready workers.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("vhost {vhost} has reached its limit of {limit} workers")]
pub struct LobbyFull {
    /// The vhost.
    pub vhost: VhostPath,
    /// The limit.
    pub limit: usize,
}

/// One ready worker as the admin API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WorkerInfo {
    /// The identity with the token shortened (`dlr:/chat:0a1b2c…:<uuid>`).
    pub identity: String,
    /// Its vhost.
    pub vhost: String,
    /// Milliseconds since it sent `RD`.
    pub ready_for_ms: u64,
    /// Milliseconds since it was last heard from.
    pub idle_ms: u64,
    /// Triggers handed to it.
    pub triggers: u64,
}

struct Worker {
    identity: Identity,
    joined: Instant,
    last_seen: Instant,
    triggers: u64,
    /// Asked for session events (`RD events`).
    events: bool,
}

/// The ready workers of one vhost, in the order triggers visit them.
#[derive(Default)]
struct Ring {
    order: Vec<WorkerId>,
    next: usize,
}

impl Ring {
    fn remove(&mut self, id: &WorkerId) {
        if let Some(at) = self.order.iter().position(|w| w == id) {
            self.order.remove(at);
            // Keep pointing at the worker that was next.
            if at < self.next {
                self.next -= 1;
            }
            if self.next >= self.order.len() {
                self.next = 0;
            }
        }
    }
}

/// Ready workers of every vhost.
pub struct Lobby {
    workers: HashMap<WorkerId, Worker>,
    rings: HashMap<VhostPath, Ring>,
    max_per_vhost: usize,
}

impl Lobby {
    /// An empty lobby allowing `max_per_vhost` ready workers per vhost.
    pub fn new(max_per_vhost: usize) -> Self {
        Lobby {
            workers: HashMap::new(),
            rings: HashMap::new(),
            max_per_vhost,
        }
    }

    /// `RD`: `identity` joins its vhost's lobby at the end of the round.
    /// Returns `false` if it was already there (then it only counts as
    /// heard from).
    pub fn ready(&mut self, identity: &Identity, now: Instant) -> Result<bool, LobbyFull> {
        self.ready_for(identity, now, false)
    }

    /// `RD` (`events`: `RD events`, which also asks for session events).
    pub fn ready_for(
        &mut self,
        identity: &Identity,
        now: Instant,
        events: bool,
    ) -> Result<bool, LobbyFull> {
        let id = WorkerId::from(identity);
        if let Some(worker) = self.workers.get_mut(&id) {
            worker.last_seen = now;
            worker.events |= events;
            return Ok(false);
        }
        let ring = self.rings.entry(identity.vhost().clone()).or_default();
        if ring.order.len() >= self.max_per_vhost {
            return Err(LobbyFull {
                vhost: identity.vhost().clone(),
                limit: self.max_per_vhost,
            });
        }
        ring.order.push(id.clone());
        self.workers.insert(
            id,
            Worker {
                identity: identity.clone(),
                joined: now,
                last_seen: now,
                triggers: 0,
                events,
            },
        );
        Ok(true)
    }

    /// Any message from `id`: it is alive. Returns whether it is in the
    /// lobby.
    pub fn seen(&mut self, id: &WorkerId, now: Instant) -> bool {
        match self.workers.get_mut(id) {
            Some(worker) => {
                worker.last_seen = now;
                true
            }
            None => false,
        }
    }

    /// The workers of `vhost` that asked for session events.
    pub fn listeners(&self, vhost: &VhostPath) -> Vec<WorkerId> {
        self.rings.get(vhost).map_or_else(Vec::new, |ring| {
            ring.order
                .iter()
                .filter(|id| self.workers.get(*id).is_some_and(|w| w.events))
                .cloned()
                .collect()
        })
    }

    /// Whether `id` is in the lobby.
    pub fn contains(&self, id: &WorkerId) -> bool {
        self.workers.contains_key(id)
    }

    /// Removes `id` (`QT`, expiry, write failure, stale token). Returns its
    /// vhost if it was there.
    pub fn remove(&mut self, id: &WorkerId) -> Option<VhostPath> {
        let worker = self.workers.remove(id)?;
        let vhost = worker.identity.vhost().clone();
        if let Some(ring) = self.rings.get_mut(&vhost) {
            ring.remove(id);
            if ring.order.is_empty() {
                self.rings.remove(&vhost);
            }
        }
        Some(vhost)
    }

    /// The next worker of `vhost` in round-robin order whose token is
    /// `current` (the vhost's token now; `None`: the vhost is gone).
    /// Workers with another token are removed and pushed onto `stale`, so
    /// the caller can tell them `ER 402`.
    pub fn pick(
        &mut self,
        vhost: &VhostPath,
        current: Option<&AccessToken>,
        stale: &mut Vec<WorkerId>,
    ) -> Option<WorkerId> {
        loop {
            let ring = self.rings.get_mut(vhost)?;
            if ring.next >= ring.order.len() {
                ring.next = 0;
            }
            let id = ring.order.get(ring.next)?.clone();
            ring.next = (ring.next + 1) % ring.order.len();
            let worker = self.workers.get_mut(&id)?;
            if worker.identity.verify(current).is_ok() {
                worker.triggers += 1;
                return Some(id);
            }
            self.remove(&id);
            stale.push(id);
        }
    }

    /// Removes every worker not heard from for longer than `timeout` and
    /// returns them.
    pub fn expire(&mut self, now: Instant, timeout: Duration) -> Vec<WorkerId> {
        let expired: Vec<WorkerId> = self
            .workers
            .iter()
            .filter(|(_, w)| now.saturating_duration_since(w.last_seen) > timeout)
            .map(|(id, _)| id.clone())
            .collect();
        for id in &expired {
            self.remove(id);
        }
        expired
    }

    /// Every worker in the lobby (heartbeats, shutdown).
    pub fn ids(&self) -> Vec<WorkerId> {
        self.workers.keys().cloned().collect()
    }

    /// How many workers are ready in `vhost`.
    pub fn count(&self, vhost: &VhostPath) -> usize {
        self.rings.get(vhost).map_or(0, |r| r.order.len())
    }

    /// How many workers are ready in all vhosts.
    pub fn len(&self) -> usize {
        self.workers.len()
    }

    /// Whether no worker is ready.
    pub fn is_empty(&self) -> bool {
        self.workers.is_empty()
    }

    /// The ready workers of `vhost`, in round-robin order.
    pub fn workers(&self, vhost: &VhostPath, now: Instant) -> Vec<WorkerInfo> {
        let Some(ring) = self.rings.get(vhost) else {
            return Vec::new();
        };
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        ring.order
            .iter()
            .filter_map(|id| self.workers.get(id))
            .map(|w| WorkerInfo {
                identity: w.identity.redacted(),
                vhost: vhost.to_string(),
                ready_for_ms: ms(now.saturating_duration_since(w.joined)),
                idle_ms: ms(now.saturating_duration_since(w.last_seen)),
                triggers: w.triggers,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "0123456789abcdef0123456789abcdef01234567";

    fn identity(vhost: &str, uuid: &str) -> Identity {
        Identity::parse(format!("dlr:{vhost}:{TOKEN}:{uuid}").as_bytes()).unwrap()
    }

    fn token() -> AccessToken {
        AccessToken::parse(TOKEN).unwrap()
    }

    fn vhost(path: &str) -> VhostPath {
        VhostPath::parse(path).unwrap()
    }

    fn picks(lobby: &mut Lobby, path: &str, n: usize) -> Vec<WorkerId> {
        let mut stale = Vec::new();
        let picked = (0..n)
            .map_while(|_| lobby.pick(&vhost(path), Some(&token()), &mut stale))
            .collect();
        assert!(stale.is_empty());
        picked
    }

    #[test]
    fn picks_round_robin_per_vhost() {
        let now = Instant::now();
        let mut lobby = Lobby::new(10);
        let (a, b, c) = (
            identity("/chat", "a"),
            identity("/chat", "b"),
            identity("/other", "c"),
        );
        for w in [&a, &b, &c] {
            assert_eq!(lobby.ready(w, now), Ok(true));
        }
        assert_eq!(lobby.ready(&a, now), Ok(false), "RD twice joins once");
        let ids = picks(&mut lobby, "/chat", 4);
        let (ida, idb) = (WorkerId::from(&a), WorkerId::from(&b));
        assert_eq!(ids, vec![ida.clone(), idb.clone(), ida, idb]);
        assert_eq!(picks(&mut lobby, "/other", 2), vec![WorkerId::from(&c); 2]);
        assert!(picks(&mut lobby, "/none", 1).is_empty());
        assert_eq!(lobby.count(&vhost("/chat")), 2);
        assert_eq!(lobby.len(), 3);
    }

    #[test]
    fn removal_keeps_the_rotation_fair() {
        let now = Instant::now();
        let mut lobby = Lobby::new(10);
        let ws: Vec<Identity> = ["a", "b", "c"]
            .iter()
            .map(|u| identity("/chat", u))
            .collect();
        for w in &ws {
            lobby.ready(w, now).unwrap();
        }
        let ids: Vec<WorkerId> = ws.iter().map(WorkerId::from).collect();
        assert_eq!(
            picks(&mut lobby, "/chat", 2),
            vec![ids[0].clone(), ids[1].clone()]
        );
        // Removing a worker already visited must not skip the next one.
        assert_eq!(lobby.remove(&ids[0]), Some(vhost("/chat")));
        assert_eq!(
            picks(&mut lobby, "/chat", 3),
            vec![ids[2].clone(), ids[1].clone(), ids[2].clone()]
        );
        assert_eq!(lobby.remove(&ids[0]), None);
        lobby.remove(&ids[1]);
        lobby.remove(&ids[2]);
        assert!(lobby.is_empty());
        assert!(picks(&mut lobby, "/chat", 1).is_empty());
    }

    #[test]
    fn spreads_evenly() {
        let now = Instant::now();
        let mut lobby = Lobby::new(10);
        let ws: Vec<Identity> = (0..3).map(|i| identity("/chat", &i.to_string())).collect();
        for w in &ws {
            lobby.ready(w, now).unwrap();
        }
        let mut counts = HashMap::new();
        for id in picks(&mut lobby, "/chat", 300) {
            *counts.entry(id).or_insert(0) += 1;
        }
        assert_eq!(counts.len(), 3);
        assert!(counts.values().all(|&n| n == 100));
        let info = lobby.workers(&vhost("/chat"), now);
        assert!(info.iter().all(|w| w.triggers == 100));
    }

    #[test]
    fn silent_workers_expire() {
        let start = Instant::now();
        let timeout = Duration::from_secs(6);
        let mut lobby = Lobby::new(10);
        let (a, b) = (identity("/chat", "a"), identity("/chat", "b"));
        lobby.ready(&a, start).unwrap();
        lobby.ready(&b, start).unwrap();
        assert!(lobby.seen(&WorkerId::from(&b), start + Duration::from_secs(5)));
        assert!(
            lobby.expire(start + timeout, timeout).is_empty(),
            "exactly the timeout is kept"
        );
        let expired = lobby.expire(start + Duration::from_secs(7), timeout);
        assert_eq!(expired, vec![WorkerId::from(&a)]);
        assert_eq!(picks(&mut lobby, "/chat", 2), vec![WorkerId::from(&b); 2]);
        assert!(
            !lobby.seen(&WorkerId::from(&a), start),
            "an expired worker must send RD again"
        );
    }

    #[test]
    fn a_regenerated_token_evicts_workers_at_the_next_pick() {
        let now = Instant::now();
        let mut lobby = Lobby::new(10);
        let a = identity("/chat", "a");
        lobby.ready(&a, now).unwrap();
        let mut stale = Vec::new();
        let new_token = AccessToken::generate();
        assert_eq!(
            lobby.pick(&vhost("/chat"), Some(&new_token), &mut stale),
            None
        );
        assert_eq!(stale, vec![WorkerId::from(&a)]);
        assert!(lobby.is_empty());
        // A deleted vhost evicts too.
        lobby.ready(&a, now).unwrap();
        stale.clear();
        assert_eq!(lobby.pick(&vhost("/chat"), None, &mut stale), None);
        assert_eq!(stale.len(), 1);
    }

    #[test]
    fn enforces_the_per_vhost_limit() {
        let now = Instant::now();
        let mut lobby = Lobby::new(1);
        lobby.ready(&identity("/chat", "a"), now).unwrap();
        let full = lobby.ready(&identity("/chat", "b"), now).unwrap_err();
        assert_eq!(full.limit, 1);
        assert_eq!(lobby.ready(&identity("/other", "b"), now), Ok(true));
    }

    #[test]
    fn admin_view_redacts_and_measures() {
        let start = Instant::now();
        let mut lobby = Lobby::new(4);
        lobby.ready(&identity("/chat", "a"), start).unwrap();
        let info = lobby.workers(&vhost("/chat"), start + Duration::from_millis(1500));
        assert_eq!(info.len(), 1);
        assert_eq!(info[0].ready_for_ms, 1500);
        assert_eq!(info[0].idle_ms, 1500);
        assert!(!info[0].identity.contains(TOKEN));
        assert!(format!("{:?}", WorkerId::from(&identity("/chat", "a"))).ends_with(":a)"));
    }
}
