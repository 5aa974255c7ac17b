//! The MonoRail state machine: sessions of resources, their watches, and
//! what each handler answers. Pure: driven by client messages, committed
//! changes and backend broadcasts; it writes through an [`Outlet`] and
//! hands secret checks back to the glue.
//!
//! Items come from a copy of the durable [`State`] kept here and moved
//! forward by the same committed [`Change`]s, in the same order, as the
//! store (on a cluster: the raft log order), so every watcher on every
//! node sees one order of changes per resource.

mod asks;
mod auth;
mod changes;

use std::collections::{BTreeSet, HashMap, VecDeque};

use serde_json::{json, Value};

use super::message::{self, MonorailError, Request};
use super::params::Params;
use crate::broker::{Outlet, SessionKey};
use crate::limits::Limits;
use crate::name::{Permissions, ResourceName, SessionId, UserName, VhostPath};
use crate::nukleus::webrocket::verify::Verify;
use crate::protocol::{CloseReason, ErrorId};
use crate::storage::{item_id, ResourceRecord, ResourceSource, State, StateError};

/// Why a connection to a resource is refused (the upgrade is answered 503).
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The path names no resource (`/<vhost>/<resource>`).
    #[error("no resource in the path")]
    NoResource,
    /// The vhost or resource part is not a valid name.
    #[error(transparent)]
    Name(#[from] crate::name::NameError),
    /// The vhost does not exist.
    #[error(transparent)]
    Vhost(#[from] StateError),
    /// The vhost has no such resource.
    #[error("no resource {0:?}")]
    UnknownResource(ResourceName),
    /// There is no route back to ws for the session's replies.
    #[error("no route back to ws")]
    NoRoute,
}

/// A pending secret check of one session (`authenticate` with a secret).
pub struct AuthCheck {
    key: SessionKey,
    user: UserName,
    hash: String,
    secret: String,
}

impl AuthCheck {
    /// The session being authenticated.
    pub fn key(&self) -> SessionKey {
        self.key
    }
}

impl Verify for AuthCheck {
    fn verify(&self) -> bool {
        crate::storage::verify_secret(&self.hash, &self.secret)
    }
}

/// One client connection to one resource.
struct Session {
    vhost: VhostPath,
    resource: ResourceName,
    sid: SessionId,
    user: Option<UserName>,
    permissions: Permissions,
    watches: Vec<Params>,
    /// Messages that arrived while a secret check runs, answered in order
    /// afterwards; `None` when no check runs.
    held: Option<VecDeque<Vec<u8>>>,
    held_bytes: usize,
}

/// Counters of the monorail nukleus.
#[derive(Debug, Default, Clone, Copy)]
pub struct MonorailStats {
    /// Sessions open now.
    pub sessions: u64,
    /// Client messages handled.
    pub messages: u64,
    /// Error messages sent.
    pub errors: u64,
    /// `item` / `remove` messages sent to watchers.
    pub notifications: u64,
    /// Sessions closed as slow consumers.
    pub slow_consumers: u64,
    /// Backend broadcast deliveries.
    pub broadcasts: u64,
}

/// A request for a worker of the vhost (a `backend` resource's `query`,
/// `all`, `get` or `watch`), to hand over as a trigger payload:
/// `{":resource": {"data": {"request", "resource", "handler", "params"},
/// "sid", "user"}}`.
#[derive(Debug)]
pub struct Ask {
    /// The request id the worker's `RA` names.
    pub id: u64,
    /// The vhost whose workers answer.
    pub vhost: VhostPath,
    /// The `TR` payload.
    pub payload: Vec<u8>,
}

/// A session waiting for a worker's answer.
struct Waiting {
    key: SessionKey,
    vhost: VhostPath,
    handler: &'static str,
}

/// Why a worker's answer was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AnswerError {
    /// No such request waits (answered, timed out, session gone).
    #[error("no such request")]
    NotFound,
    /// Not a JSON object with `handler` `list`, `item`, `remove` or `error`.
    #[error("malformed answer")]
    Malformed,
}

/// Why a backend broadcast was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BroadcastError {
    /// The vhost or resource does not exist.
    #[error("no such resource")]
    NotFound,
}

/// The sessions of every resource on this node.
pub struct Monorail {
    state: State,
    max_watches: usize,
    max_held_bytes: usize,
    sessions: HashMap<SessionKey, Session>,
    by_resource: HashMap<(VhostPath, ResourceName), BTreeSet<SessionKey>>,
    stats: MonorailStats,
    asks: Vec<Ask>,
    waiting: HashMap<u64, Waiting>,
    next_request: u64,
    /// On a cluster, this node's name, appended to request ids
    /// (`<n>@<node>`) so that a worker's `RA` on another node finds the
    /// way back.
    node: Option<String>,
    max_waiting: usize,
}

type Outcome = Option<AuthCheck>;

/// The item a change replaces or removes.
pub(super) struct Before {
    /// `None`: unknown (a `backend` resource): every watcher is told.
    item: Option<Value>,
    /// The `remove` params naming it.
    remove: Value,
}

impl Monorail {
    /// Starts from the durable `state`.
    pub fn new(state: &State, limits: &Limits) -> Self {
        Monorail {
            state: state.clone(),
            max_watches: limits.max_watches_per_session,
            max_held_bytes: limits.max_pending_bytes,
            sessions: HashMap::new(),
            by_resource: HashMap::new(),
            stats: MonorailStats::default(),
            asks: Vec::new(),
            waiting: HashMap::new(),
            next_request: 1,
            max_waiting: limits.max_pending_backend_requests,
            node: None,
        }
    }

    /// Tags request ids with `node` (on a cluster).
    pub fn with_node(mut self, node: Option<&str>) -> Self {
        self.node = node.map(str::to_owned);
        self
    }

    /// Counters.
    pub fn stats(&self) -> MonorailStats {
        MonorailStats {
            sessions: self.sessions.len() as u64,
            ..self.stats
        }
    }

    /// A new connection to `path` (`/<vhost>/<resource>`); `Err` says why
    /// it is refused (the upgrade is then answered 503).
    pub fn open_session(&mut self, key: SessionKey, path: &str) -> Result<(), OpenError> {
        let (vhost, resource) = path.rsplit_once('/').ok_or(OpenError::NoResource)?;
        let vhost = VhostPath::parse(vhost)?;
        let resource = ResourceName::parse(resource)?;
        let record = self.state.vhost(&vhost)?;
        if !record.resources.contains_key(&resource) {
            return Err(OpenError::UnknownResource(resource));
        }
        let session = Session {
            vhost: vhost.clone(),
            resource: resource.clone(),
            sid: SessionId::generate(),
            user: None,
            permissions: record.anonymous,
            watches: Vec::new(),
            held: None,
            held_bytes: 0,
        };
        self.sessions.insert(key, session);
        self.by_resource
            .entry((vhost, resource))
            .or_default()
            .insert(key);
        Ok(())
    }

    /// Forgets a session (closed by the client or the transport).
    pub fn close_session(&mut self, key: SessionKey) {
        let Some(session) = self.sessions.remove(&key) else {
            return;
        };
        self.waiting.retain(|_, w| w.key != key);
        let index = (session.vhost, session.resource);
        if let Some(keys) = self.by_resource.get_mut(&index) {
            keys.remove(&key);
            if keys.is_empty() {
                self.by_resource.remove(&index);
            }
        }
    }

    /// Forgets a session and has the outlet close it with `reason`.
    fn drop_session(&mut self, key: SessionKey, reason: CloseReason, out: &mut dyn Outlet) {
        self.close_session(key);
        out.close(key, reason);
    }

    /// Offers `payload` to a session; one without room is closed as a slow
    /// consumer (the policy of `broker::Outlet`).
    fn send(&mut self, key: SessionKey, payload: &[u8], out: &mut dyn Outlet) -> bool {
        if !self.sessions.contains_key(&key) {
            return false;
        }
        if out.send(key, payload) {
            return true;
        }
        self.stats.slow_consumers += 1;
        self.drop_session(key, CloseReason::SlowConsumer, out);
        false
    }

    fn send_error(&mut self, key: SessionKey, error: &MonorailError, out: &mut dyn Outlet) {
        self.stats.errors += 1;
        self.send(key, &message::error(error), out);
    }

    /// One client message. A secret check to run elsewhere comes back.
    pub fn on_message(&mut self, key: SessionKey, bytes: &[u8], out: &mut dyn Outlet) -> Outcome {
        let max_held = self.max_held_bytes;
        let session = self.sessions.get_mut(&key)?;
        if let Some(held) = &mut session.held {
            session.held_bytes += bytes.len();
            if session.held_bytes > max_held {
                self.drop_session(key, CloseReason::PolicyViolation, out);
            } else {
                held.push_back(bytes.to_vec());
            }
            return None;
        }
        self.stats.messages += 1;
        match message::decode(bytes) {
            Ok(request) => self.handle(key, request, out),
            Err(error) => {
                self.send_error(key, &error, out);
                None
            }
        }
    }

    fn handle(&mut self, key: SessionKey, request: Request, out: &mut dyn Outlet) -> Outcome {
        let session = self.sessions.get(&key)?;
        let readable = session.permissions.contains(Permissions::READ);
        let handler = match &request {
            Request::Query(_) => "query",
            Request::All => "all",
            Request::Get(_) => "get",
            Request::Watch(_) => "watch",
            _ => "",
        };
        if !handler.is_empty() && !readable {
            let denied =
                MonorailError::new(ErrorId::AccessDenied, "READ is needed").during(handler);
            self.send_error(key, &denied, out);
            return None;
        }
        let source = self.resource_of(key).map(|r| r.source);
        if !handler.is_empty() && source == Some(ResourceSource::Amqp) {
            // An exchange keeps no items: only watch (and stop) apply.
            if let Request::Watch(params) = request {
                if self.add_watch(key, params, out) {
                    self.send(key, &message::list(std::iter::empty()), out);
                }
            } else {
                let why = "an amqp resource serves watch and stop only";
                let error = MonorailError::new(ErrorId::UndefinedEvent, why).during(handler);
                self.send_error(key, &error, out);
            }
            return None;
        }
        if !handler.is_empty() && self.is_backend(key) {
            match request {
                Request::Watch(params) => {
                    if self.add_watch(key, params.clone(), out) {
                        self.ask(key, "watch", &params, out);
                    }
                }
                Request::Query(params) | Request::Get(params) => {
                    self.ask(key, handler, &params, out)
                }
                _ => self.ask(key, handler, &Params::all(), out),
            }
            return None;
        }
        match request {
            Request::Init => {
                let reply = message::session(session.sid.as_str());
                self.send(key, &reply, out);
            }
            Request::Authenticate { user, secret } => {
                return self.authenticate(key, &user, secret, out)
            }
            Request::Query(params) => self.send_list(key, &params, out),
            Request::All => self.send_list(key, &Params::all(), out),
            Request::Get(params) => self.get(key, &params, out),
            Request::Watch(params) => self.watch(key, params, out),
            Request::Stop(params) => {
                if let Some(session) = self.sessions.get_mut(&key) {
                    match params {
                        None => session.watches.clear(),
                        Some(params) => session.watches.retain(|w| *w != params),
                    }
                }
            }
        }
        None
    }

    fn resource_of(&self, key: SessionKey) -> Option<&ResourceRecord> {
        let session = self.sessions.get(&key)?;
        self.state
            .vhosts
            .get(&session.vhost)?
            .resources
            .get(&session.resource)
    }

    fn send_list(&mut self, key: SessionKey, params: &Params, out: &mut dyn Outlet) {
        let Some(resource) = self.resource_of(key) else {
            return;
        };
        let reply = message::list(resource.items.values().filter(|item| params.matches(item)));
        self.send(key, &reply, out);
    }

    fn get(&mut self, key: SessionKey, params: &Params, out: &mut dyn Outlet) {
        let Some(resource) = self.resource_of(key) else {
            return;
        };
        let id = params
            .equal_to(&resource.id_field)
            .and_then(|id| item_id(&json!({ &resource.id_field: id }), &resource.id_field));
        let Some(id) = id else {
            let why = format!("params must name the item's {:?}", resource.id_field);
            let error = MonorailError::new(ErrorId::InvalidPayload, why).during("get");
            self.send_error(key, &error, out);
            return;
        };
        let reply = match resource.items.get(&id).filter(|item| params.matches(item)) {
            Some(item) => message::item(item),
            None => message::remove(&params.as_value()),
        };
        self.send(key, &reply, out);
    }

    fn watch(&mut self, key: SessionKey, params: Params, out: &mut dyn Outlet) {
        if self.add_watch(key, params.clone(), out) {
            self.send_list(key, &params, out);
        }
    }

    /// Adds a watch (the same params twice are one watch); `false` when
    /// the session holds `max_watches` already (it got an error).
    fn add_watch(&mut self, key: SessionKey, params: Params, out: &mut dyn Outlet) -> bool {
        let max = self.max_watches;
        let Some(session) = self.sessions.get_mut(&key) else {
            return false;
        };
        if !session.watches.contains(&params) {
            if session.watches.len() >= max {
                let why = format!("a session may hold {max} watches");
                let error = MonorailError::new(ErrorId::TooManySubscriptions, why).during("watch");
                self.send_error(key, &error, out);
                return false;
            }
            session.watches.push(params);
        }
        true
    }

    /// Sends `payload` (a JSON object with a `handler`) to every session of
    /// `vhost`'s `resource` (or of every resource of `vhost`), but those in
    /// `skip`. Returns how many got it.
    pub fn broadcast(
        &mut self,
        vhost: &VhostPath,
        resource: Option<&ResourceName>,
        payload: &[u8],
        skip: &[SessionId],
        out: &mut dyn Outlet,
    ) -> Result<usize, BroadcastError> {
        let record = self
            .state
            .vhosts
            .get(vhost)
            .ok_or(BroadcastError::NotFound)?;
        if resource.is_some_and(|r| !record.resources.contains_key(r)) {
            return Err(BroadcastError::NotFound);
        }
        let targets: Vec<SessionKey> = self
            .by_resource
            .iter()
            .filter(|((v, r), _)| v == vhost && resource.is_none_or(|want| want == r))
            .flat_map(|(_, keys)| keys.iter().copied())
            .filter(|key| {
                self.sessions
                    .get(key)
                    .is_some_and(|s| !skip.contains(&s.sid))
            })
            .collect();
        let mut sent = 0;
        for key in targets {
            if self.send(key, payload, out) {
                sent += 1;
            }
        }
        self.stats.broadcasts += sent as u64;
        Ok(sent)
    }
}
