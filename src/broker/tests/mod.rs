//! Unit tests of the broker through its public methods, with recording fakes
//! for the outlet, backend and storage.

mod admin;
mod auth;
mod backend;
mod fanout;
mod history;
mod permissions;
mod replicated;
mod rows;

use std::collections::{BTreeMap, BTreeSet, HashSet};

use serde_json::Value;

use super::*;
use crate::name::{AccessToken, EventName, Permissions, UserName};
use crate::protocol::ErrorId;
use crate::storage::{Change, StorageError, UserRecord, VhostRecord};

/// Records what the broker sends and closes; refuses sessions in `full`.
#[derive(Default)]
pub(super) struct RecOutlet {
    pub sent: Vec<(SessionKey, String)>,
    pub closed: Vec<(SessionKey, CloseReason)>,
    pub full: HashSet<SessionKey>,
    /// Offers refused because the session was in `full`.
    pub refused: Vec<SessionKey>,
}

impl Outlet for RecOutlet {
    fn send(&mut self, key: SessionKey, payload: &[u8]) -> bool {
        assert!(
            !self.closed.iter().any(|(k, _)| *k == key),
            "sent to closed session {key}"
        );
        if self.full.contains(&key) {
            self.refused.push(key);
            return false;
        }
        let text = String::from_utf8(payload.to_vec()).expect("the broker sends UTF-8");
        self.sent.push((key, text));
        true
    }

    fn close(&mut self, key: SessionKey, reason: CloseReason) {
        assert!(
            !self.closed.iter().any(|(k, _)| *k == key),
            "closed {key} twice"
        );
        self.closed.push((key, reason));
    }
}

/// Records triggers; without workers, refuses them.
#[derive(Default)]
pub(super) struct RecBackend {
    pub workers: bool,
    pub triggers: Vec<(VhostPath, String)>,
}

impl Backend for RecBackend {
    fn trigger(&mut self, vhost: &VhostPath, payload: &[u8]) -> Result<(), NoWorker> {
        if !self.workers {
            return Err(NoWorker);
        }
        let text = String::from_utf8(payload.to_vec()).expect("UTF-8 trigger");
        self.triggers.push((vhost.clone(), text));
        Ok(())
    }

    // The broker queues session events (`take_session_events`, tested in
    // `history.rs`); the nukleus around it hands them to the backend.
    fn session_event(&mut self, _vhost: &VhostPath, _payload: &[u8]) {}
}

/// Records commits; fails them when `broken`. `replicated`: a cluster
/// node, whose changes the broker hands out instead of committing.
#[derive(Default)]
pub(super) struct RecPersist {
    pub broken: bool,
    pub replicated: bool,
    pub commits: Vec<Change>,
}

impl Persist for RecPersist {
    fn commit(&mut self, change: &Change) -> Result<(), StorageError> {
        if self.broken {
            return Err(StorageError::Poisoned {
                dir: std::path::PathBuf::from("/broken"),
            });
        }
        self.commits.push(change.clone());
        Ok(())
    }

    fn replicated(&self) -> bool {
        self.replicated
    }

    // The broker hands changes to the cluster through its outcomes
    // (`Outcome::Replicate`, `ChannelOp::Replicate`); only the nukleus
    // around it proposes.
    fn propose(&mut self, _change: Change, _completion: crate::broker::Completion) {}
}

pub(super) fn vhost(path: &str) -> VhostPath {
    VhostPath::parse(path).expect("vhost path")
}

pub(super) fn channel(name: &str) -> ChannelName {
    ChannelName::parse(name).expect("channel name")
}

pub(super) fn user(name: &str) -> UserName {
    UserName::parse(name).expect("user name")
}

/// The secret of user `secret` in [`state`].
pub(super) const SECRET: &str = "53cr37";

/// Vhost `/v`: anonymous NONE, auto-create on, channel `news`, and users
/// named after their permissions, plus `secret` (READ|WRITE, secret
/// [`SECRET`]). Vhost `/other` has one channel and one user.
pub(super) fn state() -> State {
    let mut users = BTreeMap::new();
    let plain = |p: Permissions| UserRecord {
        secret_hash: None,
        permissions: p,
    };
    use Permissions as P;
    users.insert(user("nobody"), plain(P::NONE));
    users.insert(user("reader"), plain(P::READ));
    users.insert(user("writer"), plain(P::WRITE));
    users.insert(user("rw"), plain(P::READ | P::WRITE));
    users.insert(user("manager"), plain(P::READ | P::MANAGE));
    users.insert(user("admin"), plain(P::ALL));
    users.insert(
        user("secret"),
        UserRecord {
            secret_hash: Some(secret_hash()),
            permissions: P::READ | P::WRITE,
        },
    );
    let v = VhostRecord {
        resources: Default::default(),
        token: AccessToken::generate(),
        anonymous: P::NONE,
        auto_create_channels: true,
        users,
        channels: BTreeSet::from([channel("news")]),
        channel_defaults: Default::default(),
        channel_options: Default::default(),
    };
    let other = VhostRecord {
        resources: Default::default(),
        token: AccessToken::generate(),
        anonymous: P::READ,
        auto_create_channels: true,
        users: BTreeMap::from([(user("rw"), plain(P::READ | P::WRITE))]),
        channels: BTreeSet::from([channel("news")]),
        channel_defaults: Default::default(),
        channel_options: Default::default(),
    };
    State {
        vhosts: BTreeMap::from([(vhost("/v"), v), (vhost("/other"), other)]),
    }
}

/// One argon2 hash of [`SECRET`], computed once: hashing is slow.
fn secret_hash() -> String {
    static HASH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    HASH.get_or_init(|| crate::storage::hash_secret(SECRET))
        .clone()
}

/// A broker with recording fakes around it.
pub(super) struct World {
    pub broker: Broker,
    pub out: RecOutlet,
    pub backend: RecBackend,
    pub persist: RecPersist,
}

impl World {
    pub fn new() -> Self {
        Self::with(state(), Limits::default())
    }

    pub fn with(state: State, limits: Limits) -> Self {
        World {
            broker: Broker::new(&state, &limits),
            out: RecOutlet::default(),
            backend: RecBackend::default(),
            persist: RecPersist::default(),
        }
    }

    pub fn io(&mut self) -> (&mut Broker, Io<'_>) {
        (
            &mut self.broker,
            Io {
                outlet: &mut self.out,
                backend: &mut self.backend,
                persist: &mut self.persist,
            },
        )
    }

    /// Opens session `k` on `/v`.
    pub fn open(&mut self, k: u64) -> SessionKey {
        self.open_on(k, "/v")
    }

    pub fn open_on(&mut self, k: u64, path: &str) -> SessionKey {
        let key = SessionKey(k);
        self.broker.open_session(key, &vhost(path)).expect("open");
        key
    }

    /// Sends `message` from `key`, running any secret check at once.
    pub fn send(&mut self, key: SessionKey, message: &str) {
        let (broker, mut io) = self.io();
        let mut outcome = broker.on_message(key, message.as_bytes(), &mut io);
        loop {
            outcome = match outcome {
                Outcome::Done => break,
                Outcome::CheckSecret(check) => {
                    let ok = check.verify();
                    broker.finish_authenticate(check, ok, &mut io)
                }
                Outcome::Replicate(pending) => {
                    // A cluster that commits at once.
                    broker.apply_change(pending.change(), &mut io);
                    broker.finish_replicate(pending, Ok(()), &mut io)
                }
            };
        }
    }

    /// Opens session `k` on `/v` and authenticates it as `name`.
    pub fn login(&mut self, k: u64, name: &str) -> SessionKey {
        let key = self.open(k);
        self.send(key, &format!(r#"{{"authenticate": {{"user": "{name}"}}}}"#));
        assert_eq!(self.take(key), [format!(r#"{{"authenticated":"{name}"}}"#)]);
        key
    }

    /// `login`, then subscribe to each of `channels`.
    pub fn subscriber(&mut self, k: u64, name: &str, channels: &[&str]) -> SessionKey {
        let key = self.login(k, name);
        for c in channels {
            self.send(key, &format!(r#"{{"subscribe": {{"channel": "{c}"}}}}"#));
            assert_eq!(self.take(key), [format!(r#"{{"subscribed":"{c}"}}"#)]);
        }
        key
    }

    /// Everything sent to `key` since the last `take`, oldest first.
    pub fn take(&mut self, key: SessionKey) -> Vec<String> {
        let (mine, rest): (Vec<_>, Vec<_>) = self.out.sent.drain(..).partition(|(k, _)| *k == key);
        self.out.sent = rest;
        mine.into_iter().map(|(_, m)| m).collect()
    }

    /// The single message sent to `key`, parsed.
    pub fn one(&mut self, key: SessionKey) -> Value {
        let mut all = self.take(key);
        assert_eq!(all.len(), 1, "expected one message, got {all:?}");
        serde_json::from_str(&all.remove(0)).expect("valid JSON")
    }

    /// The error id of the single message sent to `key`.
    pub fn error(&mut self, key: SessionKey) -> String {
        let v = self.one(key);
        v["err"]
            .as_str()
            .unwrap_or_else(|| panic!("not an error: {v}"))
            .to_owned()
    }

    /// Sends `message` and returns the error id it earned.
    pub fn error_for(&mut self, key: SessionKey, message: &str) -> String {
        self.send(key, message);
        self.error(key)
    }

    /// Where `key` is closed, with what reason.
    pub fn closed(&self, key: SessionKey) -> Option<CloseReason> {
        self.out
            .closed
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, r)| *r)
    }

    /// The channels `key` is subscribed to, as the broker sees them.
    pub fn subscriptions(&self, key: SessionKey) -> Vec<String> {
        self.broker
            .sessions
            .get(&key)
            .map(|s| s.subscriptions.iter().map(|c| c.to_string()).collect())
            .unwrap_or_default()
    }

    /// Checks the gauges against a recount of the live state.
    pub fn check_gauges(&self) {
        let b = &self.broker;
        let subs: usize = b.sessions.values().map(|s| s.subscriptions.len()).sum();
        let from_channels: usize = b.vhosts.values().map(|v| v.subscriptions()).sum();
        assert_eq!(subs, from_channels, "session and channel views disagree");
        assert_eq!(b.stats().subscriptions, subs as u64);
        let channels: usize = b.vhosts.values().map(|v| v.channels.len()).sum();
        assert_eq!(b.stats().channels, channels as u64);
        assert_eq!(b.stats().sessions, b.sessions.len() as u64);
        assert_eq!(b.sids.len(), b.sessions.len());
        for (key, s) in &b.sessions {
            let v = &b.vhosts[&s.vhost];
            assert!(v.sessions.contains(key));
            for c in &s.subscriptions {
                assert!(v.channels[c].contains(*key), "{key} not in {c}");
            }
        }
    }
}

pub(super) fn subscribe(c: &str) -> String {
    format!(r#"{{"subscribe": {{"channel": "{c}"}}}}"#)
}

pub(super) fn unsubscribe(c: &str) -> String {
    format!(r#"{{"unsubscribe": {{"channel": "{c}"}}}}"#)
}

pub(super) fn broadcast(event: &str, c: &str, data: &str) -> String {
    format!(r#"{{"broadcast": {{"event": "{event}", "channel": "{c}", "data": {data}}}}}"#)
}
