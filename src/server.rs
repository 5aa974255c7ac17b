//! The composition root: opens storage, builds the nuklei, starts their
//! threads and wires them together with the same control commands any other
//! process could send. Shutdown runs in one order: stop accepting, tell the
//! sessions, drain for a bounded time, stop the threads.
//!
//! ```text
//! thread "tcp":    tcp nukleus (owns the sockets, parks in its poller)
//! thread "broker": ws + webrocket (+ echo, + tls) nuklei, parks on its signal
//!
//! With `server.threads = 1` every nukleus runs on the tcp thread instead.
//! ```

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Sender};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::broker::Backend;
use crate::config::Config;
use crate::limits::Limits;
use crate::name::{ResourceName, VhostPath};
use crate::nukleus::command::{Command, Response};
use crate::nukleus::control::{ControlError, Controller};
use crate::nukleus::echo::EchoNukleus;
use crate::nukleus::monorail::{self, MonorailNukleus};
use crate::nukleus::runner::{Agent, Group, Signal, Signals};
use crate::nukleus::tcp::{control::Bind, control::BindAddress, TcpNukleus, TcpSettings};
use crate::nukleus::tls::{self, TlsBind, TlsNukleus};
pub use crate::nukleus::webrocket::{BackendRequest, Durable, NoBackend, Task};
use crate::nukleus::webrocket::{Completion, Replicator, WebrocketNukleus};
use crate::nukleus::ws::nukleus::{WsBind, WsNukleus, WsNukleusSettings};
use crate::nukleus::ws::WsSettings;
use crate::protocol::CloseReason;
use crate::storage::{self, Change, State, Store};

const COMMAND_TIMEOUT: Duration = Duration::from_secs(5);
const DRAIN: Duration = Duration::from_millis(500);

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// Files under the run directory.
    #[error("run directory {path}: {source}")]
    RunDir {
        /// Where.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Durable storage.
    #[error("storage: {0}")]
    Storage(#[from] storage::StorageError),
    /// A nukleus refused a setup command.
    #[error("setting up the data path: {0}")]
    Control(#[from] ControlError),
    /// A thread could not start.
    #[error("starting a thread: {0}")]
    Thread(std::io::Error),
    /// The TLS certificate or key.
    #[error("tls: {0}")]
    Tls(String),
}

/// What the admin API and the backend exchange share with the running
/// node: durable state, the broker's task queue, and the data path's
/// bindings.
pub struct Handle {
    /// The configuration the node started with.
    pub config: Config,
    /// Durable store and state.
    pub durable: Arc<Mutex<Durable>>,
    /// The run directory of this node's nuklei.
    pub run_dir: PathBuf,
    /// The node cookie (admin API).
    pub cookie: String,
    websocket_addr: Mutex<SocketAddr>,
    tasks: Mutex<Sender<Task>>,
    signals: Arc<Signals>,
    tcp_ref: Mutex<i64>,
    /// The nukleus ws reads client streams from ("tcp", or "tls" for wss)
    /// and its ref for them.
    front: Mutex<(&'static str, i64)>,
    vhost_refs: Mutex<Vec<(VhostPath, i64)>>,
    cluster: OnceLock<crate::cluster::Cluster>,
    /// The monorail nukleus's task queue and its resources' ws bindings.
    monorail: Mutex<Sender<monorail::Task>>,
    resource_refs: Mutex<Vec<(VhostPath, ResourceName, i64)>>,
    amqp: monorail::amqp::Consumers,
}

/// Why an administrative change failed.
#[derive(Debug, thiserror::Error)]
pub enum ChangeError {
    /// Refused by the state (not found, already exists...) or not durable.
    #[error(transparent)]
    Storage(#[from] storage::StorageError),
    /// The data path did not take the new binding.
    #[error(transparent)]
    Control(#[from] ControlError),
    /// The cluster did not confirm the change (no leader with a majority in
    /// time): it may still be committed later, or never.
    #[error("the cluster did not confirm the change: {0}")]
    Cluster(String),
    /// The change would pass `max_vhosts`, `max_users_per_vhost` or
    /// `max_channels_per_vhost`.
    #[error("{0}")]
    Limit(String),
}

impl Handle {
    /// The cluster this node is part of, once started.
    pub fn cluster(&self) -> Option<&crate::cluster::Cluster> {
        self.cluster.get()
    }

    /// Records the cluster (done by [`crate::cluster::Cluster::start`]).
    pub fn set_cluster(&self, cluster: crate::cluster::Cluster) {
        let _ = self.cluster.set(cluster);
    }

    /// Every node of the cluster, this one first (`list_nodes`); empty
    /// when clustering is off.
    pub fn cluster_nodes(&self) -> Vec<crate::cluster::NodeStatus> {
        self.cluster.get().map(|c| c.nodes()).unwrap_or_default()
    }

    /// Where WebSocket clients connect (port 0 resolved).
    pub fn websocket_addr(&self) -> SocketAddr {
        *lock(&self.websocket_addr)
    }

    /// Runs `f` on the current durable state.
    pub fn with_state<R>(&self, f: impl FnOnce(&State) -> R) -> R {
        f(&lock(&self.durable).state)
    }

    /// Makes `change` durable, applies it, and tells the broker and the data
    /// path (a new vhost is served at once; a deleted one answers 404).
    ///
    /// Clustered, the change is first checked against this node's state,
    /// then committed through the raft leader (forwarded from a follower)
    /// and returns once it is applied here; without a majority it fails
    /// after [`crate::cluster::raft::CHANGE_TIMEOUT`]. Blocks: call it off
    /// the async runtime's workers.
    ///
    /// The count limits (`max_vhosts`, `max_users_per_vhost`,
    /// `max_channels_per_vhost`) are checked here, by the node asked: on a
    /// single node under the same lock as the commit; on a cluster against
    /// this node's state before proposing, so that creations made at once
    /// through several nodes can pass a limit by as many as are in flight
    /// (applying never checks limits, so every node applies the same
    /// changes whatever its own config says).
    pub fn change(&self, change: Change) -> Result<(), ChangeError> {
        let limits = &self.config.limits;
        let Some(raft) = self.cluster().and_then(|c| c.raft()) else {
            return self.apply_local_within(change, Some(limits));
        };
        self.with_state(|state| {
            state
                .check(&change)
                .map_err(|e| ChangeError::Storage(storage::StorageError::State(e)))?;
            within_limits(limits, state, &change).map_err(ChangeError::Limit)
        })?;
        raft.propose_blocking(change).map_err(ChangeError::Cluster)
    }

    /// Applies a change the cluster committed (every node, in log order):
    /// the same as an unclustered [`Handle::change`]. A change that no
    /// longer fits the state is skipped with its reason (it was refused
    /// everywhere, or this node applied it before a crash and replays it).
    pub fn apply_committed(&self, change: Change) -> Result<(), String> {
        self.with_state(|state| state.check(&change))
            .map_err(|e| e.to_string())?;
        self.apply_local(change).map_err(|e| e.to_string())
    }

    /// Replaces the whole durable state (a raft snapshot from the leader)
    /// and tells the broker and the data path each change between the old
    /// and the new state, as if they had been applied one by one (a data
    /// path that refuses one is logged; the state stays replaced).
    pub fn replace_state(&self, new: State) -> Result<(), ChangeError> {
        let changes = {
            let mut guard = lock(&self.durable);
            let Durable { store, state } = &mut *guard;
            let changes = state.changes_to(&new);
            store.compact(&new)?;
            *state = new;
            // Queued under the lock: the broker learns each change before
            // anyone can act on the new state (see `apply_local`).
            for change in &changes {
                self.task(Task::Apply(change.clone()));
                self.monorail_task(monorail::Task::Apply(change.clone()));
            }
            changes
        };
        for change in &changes {
            if let Err(error) = self.bind_for(change) {
                tracing::error!(%error, ?change, "the data path did not take a change");
            }
        }
        Ok(())
    }

    fn apply_local(&self, change: Change) -> Result<(), ChangeError> {
        self.apply_local_within(change, None)
    }

    /// [`Handle::apply_local`], first checking `limits` (if any) under the
    /// same lock.
    fn apply_local_within(
        &self,
        change: Change,
        limits: Option<&Limits>,
    ) -> Result<(), ChangeError> {
        {
            let mut guard = lock(&self.durable);
            let Durable { store, state } = &mut *guard;
            if let Some(limits) = limits {
                within_limits(limits, state, &change).map_err(ChangeError::Limit)?;
            }
            store.commit_and_apply(state, &change)?;
            // Queued while the state is still locked, so that whoever sees
            // the change in the state (a cluster answer reading it) finds
            // it queued for the broker already.
            self.task(Task::Apply(change.clone()));
            self.monorail_task(monorail::Task::Apply(change.clone()));
        }
        self.bind_for(&change)
    }

    /// Binds or unbinds the data path for a vhost change already durable
    /// and told to the broker.
    fn bind_for(&self, change: &Change) -> Result<(), ChangeError> {
        match change {
            Change::AddVhost { path, .. } => self.bind_vhost(path)?,
            Change::DeleteVhost { path } => {
                self.amqp.stop_where(|v, _| v == path);
                self.unbind_resources(|v, _| v == path)?;
                self.unbind_vhost(path)?
            }
            Change::AddResource {
                vhost,
                name,
                source,
                ..
            } => {
                if *source == crate::storage::ResourceSource::Amqp {
                    self.amqp.start(vhost, name, self.monorail_teller());
                }
                self.bind_resource(vhost, name)?
            }
            Change::DeleteResource { vhost, name } => {
                self.amqp.stop_where(|v, r| v == vhost && r == name);
                self.unbind_resources(|v, r| v == vhost && r == name)?
            }
            Change::ClearVhosts => {
                self.amqp.stop_where(|_, _| true);
                self.unbind_resources(|_, _| true)?;
                let paths: Vec<VhostPath> = lock(&self.vhost_refs)
                    .iter()
                    .map(|(p, _)| p.clone())
                    .collect();
                for path in paths {
                    self.unbind_vhost(&path)?;
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// Queues work for the broker thread and wakes it.
    pub fn task(&self, task: Task) {
        if lock(&self.tasks).send(task).is_ok() {
            if let Some(signal) = self.signals.get("webrocket") {
                signal.wake();
            }
        }
    }

    /// Queues work for the monorail nukleus and wakes it.
    pub fn monorail_task(&self, task: monorail::Task) {
        if lock(&self.monorail).send(task).is_ok() {
            if let Some(signal) = self.signals.get("monorail") {
                signal.wake();
            }
        }
    }

    /// How the `amqp` consumers reach the monorail nukleus.
    fn monorail_teller(&self) -> monorail::amqp::Tell {
        let sender = lock(&self.monorail).clone();
        let signals = Arc::clone(&self.signals);
        Arc::new(move |task| {
            if sender.send(task).is_ok() {
                if let Some(signal) = signals.get("monorail") {
                    signal.wake();
                }
            }
        })
    }

    /// Starts serving a MonoRail resource at `/<vhost>/<resource>`.
    pub fn bind_resource(
        &self,
        vhost: &VhostPath,
        resource: &ResourceName,
    ) -> Result<(), ControlError> {
        let path = format!("{vhost}/{resource}");
        let body = self.ws_bind("monorail", &path, 0);
        let bound = self
            .controller("ws")?
            .call(Command::Bind(&body), COMMAND_TIMEOUT)?;
        if let Some(reference) = bound.reference {
            let entry = (vhost.clone(), resource.clone(), reference);
            lock(&self.resource_refs).push(entry);
        }
        Ok(())
    }

    /// Stops serving the resources `doomed` picks (new connections: 404).
    fn unbind_resources(
        &self,
        doomed: impl Fn(&VhostPath, &ResourceName) -> bool,
    ) -> Result<(), ControlError> {
        let references: Vec<i64> = {
            let mut refs = lock(&self.resource_refs);
            let (gone, kept) = refs.drain(..).partition(|(v, r, _)| doomed(v, r));
            *refs = kept;
            gone.into_iter()
                .map(|(_, _, reference)| reference)
                .collect::<Vec<_>>()
        };
        for reference in references {
            self.controller("ws")?
                .call(Command::Unbind(reference), COMMAND_TIMEOUT)?;
        }
        Ok(())
    }

    fn controller(&self, nukleus: &str) -> Result<Controller, ControlError> {
        Controller::open(&self.run_dir, nukleus, self.signals.get(nukleus))
    }

    fn ws_bind(&self, handler: &str, path: &str, max_message_size: usize) -> Vec<u8> {
        let (source, source_ref) = *lock(&self.front);
        WsBind {
            source: source.into(),
            source_ref,
            handler: handler.into(),
            protocol: None,
            path: Some(path.into()),
            max_message_size: max_message_size.min(i32::MAX as usize) as i32,
        }
        .encode()
    }

    /// Starts serving a vhost.
    pub fn bind_vhost(&self, vhost: &VhostPath) -> Result<(), ControlError> {
        let body = self.ws_bind("webrocket", vhost.as_str(), 0);
        let bound = self
            .controller("ws")?
            .call(Command::Bind(&body), COMMAND_TIMEOUT)?;
        if let Some(reference) = bound.reference {
            lock(&self.vhost_refs).push((vhost.clone(), reference));
        }
        Ok(())
    }

    /// Stops serving a vhost (new connections get 404).
    pub fn unbind_vhost(&self, vhost: &VhostPath) -> Result<(), ControlError> {
        let reference = {
            let mut refs = lock(&self.vhost_refs);
            let found = refs.iter().position(|(v, _)| v == vhost);
            found.map(|i| refs.remove(i).1)
        };
        if let Some(reference) = reference {
            self.controller("ws")?
                .call(Command::Unbind(reference), COMMAND_TIMEOUT)?;
        }
        Ok(())
    }
}

/// Whether the config's vhosts, users and channels are applied at this
/// start: always on a single node; on a cluster node only before it has
/// ever been part of the replicated log (no raft files yet). From then on
/// the replicated state is the truth, and re-applying the config locally
/// would make this node differ from the others (a vhost deleted through
/// the admin API would come back here alone).
fn seeds_from_config(config: &Config) -> bool {
    let raft_files = config
        .server
        .storage_dir
        .join(crate::cluster::raft::files::META_FILE);
    !(config.cluster.enabled() && raft_files.exists())
}

/// A vhost declared in the shared config gets, on every node of a cluster,
/// the same access token: an HMAC of its path under the cluster cookie, so
/// that a backend can use any node. (Tokens made or regenerated through the
/// admin API are replicated instead.)
fn shared_token(change: &mut Change, cookie: &str) {
    if let Change::AddVhost { path, token, .. } = change {
        let message = format!("webrocket vhost token {path}");
        let derived = crate::cluster::mac::hmac_sha1_hex(cookie.as_bytes(), message.as_bytes());
        if let Ok(derived) = crate::name::AccessToken::parse(&derived) {
            *token = derived;
        }
    }
}

/// The broker's channel changes on a cluster: committed through raft off
/// the broker thread, answered when applied here.
struct ClusterLog(Arc<Handle>);

impl Replicator for ClusterLog {
    // A clustered node's changes wait for the cluster even before it has
    // joined (they fail until then): none may stay on this node alone.
    fn active(&self) -> bool {
        self.0.config.cluster.enabled()
    }

    fn propose(&self, change: Change, completion: Completion) {
        let handle = Arc::clone(&self.0);
        let finish = move |confirmed: Result<(), String>| match completion {
            Completion::Session(pending) => handle.task(Task::Replicated { pending, confirmed }),
            Completion::Backend(reply) => reply(confirmed.map_err(|_| 597)),
        };
        let Some(raft) = self.0.cluster().and_then(|c| c.raft()) else {
            finish(Err("this node has not joined its cluster yet".into()));
            return;
        };
        // Nothing to commit, or over a limit: answered at once.
        let limits = &self.0.config.limits;
        let at_once = self.0.with_state(|state| {
            if already_holds(state, &change) {
                Some(Ok(()))
            } else {
                within_limits(limits, state, &change).err().map(Err)
            }
        });
        if let Some(answer) = at_once {
            finish(answer);
            return;
        }
        let handle = Arc::clone(&self.0);
        raft.propose_then(change.clone(), move |result| {
            // Another node may have made the same change first.
            let confirmed = match result {
                Err(why) if !handle.with_state(|state| already_holds(state, &change)) => Err(why),
                _ => Ok(()),
            };
            finish(confirmed);
        });
    }
}

/// Whether `change` keeps `state` within the count limits; why not.
fn within_limits(limits: &Limits, state: &State, change: &Change) -> Result<(), String> {
    let full = |what: &str, limit: usize| Err(format!("{what} reached its limit of {limit}"));
    match change {
        Change::AddVhost { .. } if state.vhosts.len() >= limits.max_vhosts => {
            full("the vhost count", limits.max_vhosts)
        }
        Change::AddUser { vhost, .. }
            if state
                .vhosts
                .get(vhost)
                .is_some_and(|v| v.users.len() >= limits.max_users_per_vhost) =>
        {
            full(&format!("vhost {vhost}"), limits.max_users_per_vhost)
        }
        Change::AddResource { vhost, .. }
            if state
                .vhosts
                .get(vhost)
                .is_some_and(|v| v.resources.len() >= limits.max_resources_per_vhost) =>
        {
            full(&format!("vhost {vhost}"), limits.max_resources_per_vhost)
        }
        Change::PutItem { .. } => monorail::backend::item_within_limits(limits, state, change),
        Change::AddChannel { vhost, .. }
            if state
                .vhosts
                .get(vhost)
                .is_some_and(|v| v.channels.len() >= limits.max_channels_per_vhost) =>
        {
            full(&format!("vhost {vhost}"), limits.max_channels_per_vhost)
        }
        _ => Ok(()),
    }
}

/// Whether `state` already reflects the channel change `change`.
fn already_holds(state: &State, change: &Change) -> bool {
    let has = |vhost: &VhostPath, channel| {
        state
            .vhosts
            .get(vhost)
            .map(|v| v.channels.contains(channel))
    };
    match change {
        Change::AddChannel { vhost, channel } => has(vhost, channel) == Some(true),
        Change::DeleteChannel { vhost, channel } => has(vhost, channel) == Some(false),
        _ => false,
    }
}

/// The way to backend workers, shared by the webrocket nukleus (triggers)
/// and the monorail nukleus (requests of `backend` resources). Both run on
/// the same thread, so the lock is never contended.
struct SharedBackend(Arc<Mutex<Box<dyn Backend + Send>>>);

impl Backend for SharedBackend {
    fn trigger(
        &mut self,
        vhost: &VhostPath,
        payload: &[u8],
    ) -> Result<(), crate::broker::NoWorker> {
        lock(&self.0).trigger(vhost, payload)
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match mutex.lock() {
        Ok(guard) => guard,
        Err(poisoned) => poisoned.into_inner(),
    }
}

/// A running node.
pub struct Server {
    /// Shared with the admin API and the exchange.
    pub handle: Arc<Handle>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    accepting: AtomicBool,
    sessions_closed: bool,
}

fn engine_settings(limits: &Limits) -> WsSettings {
    WsSettings {
        max_frame_size: limits.max_frame_size,
        max_message_size: limits.max_message_size,
        chunk_size: limits.max_message_size,
        max_handshake_size: limits.max_handshake_size,
        deflate: true,
    }
}

impl Server {
    /// Starts everything `config` describes and returns once clients can
    /// connect. `backend` builds the way to backend workers (the ZeroMQ
    /// exchange) from the node's handle; see [`NoBackend`] for none.
    pub fn start(
        config: &Config,
        backend: impl FnOnce(Arc<Handle>) -> Box<dyn Backend + Send>,
    ) -> Result<Server, StartError> {
        let limits = &config.limits;
        let run_dir = config.nukleus_dir();
        let run_error = |source| StartError::RunDir {
            path: run_dir.clone(),
            source,
        };
        let _ = std::fs::remove_dir_all(&run_dir);
        std::fs::create_dir_all(&run_dir).map_err(run_error)?;

        let (mut store, mut state) = Store::open(&config.server.storage_dir)?;
        if seeds_from_config(config) {
            for mut change in storage::seed_from_config(config, &state) {
                if let Some(cookie) = config.cluster.cookie.as_deref() {
                    shared_token(&mut change, cookie);
                }
                store.commit_and_apply(&mut state, &change)?;
            }
        }
        let cookie =
            storage::load_or_create_cookie(&config.server.storage_dir, &config.server.node_name)
                .map_err(|source| StartError::RunDir {
                    path: config.server.storage_dir.clone(),
                    source,
                })?;
        let vhosts: Vec<VhostPath> = state.vhosts.keys().cloned().collect();
        let resources: Vec<(VhostPath, ResourceName, storage::ResourceSource)> = state
            .vhosts
            .iter()
            .flat_map(|(v, record)| {
                let resources = record.resources.iter();
                resources.map(|(r, rr)| (v.clone(), r.clone(), rr.source))
            })
            .collect();
        let broker_state = state.clone();
        let durable = Arc::new(Mutex::new(Durable { store, state }));

        let signals = Arc::new(Signals::default());
        let ring = limits.ring_capacity;
        let tcp_settings = TcpSettings {
            out_limit: limits.max_pending_bytes,
            // ws answers connections past the limit with 503; tcp only keeps
            // a hard cap above it so the answer can still be sent.
            max_connections: limits.max_connections + limits.max_connections / 10 + 64,
            ring_capacity: ring,
        };
        let (tcp, tcp_signal) =
            TcpNukleus::new(&run_dir, tcp_settings, Arc::clone(&signals)).map_err(run_error)?;
        // One thread: every nukleus runs on the tcp poller's thread and is
        // woken through it; otherwise the others share a second thread.
        let one_thread = config.server.thread_count() == 1;
        let broker_signal = if one_thread {
            Arc::clone(&tcp_signal)
        } else {
            Signal::for_thread()
        };
        for name in ["ws", "webrocket", "monorail", "echo", "tls"] {
            signals.register(name, Arc::clone(&broker_signal));
        }
        let ws_settings = WsNukleusSettings {
            engine: engine_settings(limits),
            input_window: (limits.max_frame_size + 16).max(64 * 1024),
            handshake_timeout: limits.handshake_timeout,
            idle_timeout: limits.idle_timeout,
            max_connections: limits.max_connections,
            ring_capacity: ring,
        };
        let ws = WsNukleus::new(&run_dir, ws_settings, Arc::clone(&signals)).map_err(run_error)?;
        let (tasks, task_inbox) = mpsc::channel();
        let (monorail_tasks, monorail_inbox) = mpsc::channel();
        let handle = Arc::new(Handle {
            config: config.clone(),
            durable: Arc::clone(&durable),
            run_dir: run_dir.clone(),
            cookie,
            websocket_addr: Mutex::new(config.server.websocket_addr),
            tasks: Mutex::new(tasks),
            signals: Arc::clone(&signals),
            tcp_ref: Mutex::new(0),
            front: Mutex::new(("tcp", 0)),
            vhost_refs: Mutex::new(Vec::new()),
            cluster: OnceLock::new(),
            monorail: Mutex::new(monorail_tasks),
            resource_refs: Mutex::new(Vec::new()),
            amqp: monorail::amqp::Consumers::new(config.amqp.clone(), limits.max_item_size),
        });
        let exchange = Arc::new(Mutex::new(backend(Arc::clone(&handle))));
        let monorail = MonorailNukleus::new(
            &run_dir,
            Arc::clone(&signals),
            Arc::clone(&broker_signal),
            &broker_state,
            limits,
            monorail_inbox,
            Box::new(SharedBackend(Arc::clone(&exchange))),
        )
        .map_err(run_error)?;
        let webrocket = WebrocketNukleus::new(
            &run_dir,
            ring,
            Arc::clone(&signals),
            Arc::clone(&broker_signal),
            &broker_state,
            limits,
            durable,
            task_inbox,
            Box::new(SharedBackend(Arc::clone(&exchange))),
            Box::new(ClusterLog(Arc::clone(&handle))),
        )
        .map_err(run_error)?;

        let stop = Arc::new(AtomicBool::new(false));
        let mut nuklei: Vec<Box<dyn Agent>> =
            vec![Box::new(ws), Box::new(webrocket), Box::new(monorail)];
        if config.server.echo_path.is_some() {
            let echo = EchoNukleus::new(&run_dir, ring, Arc::clone(&signals)).map_err(run_error)?;
            nuklei.push(Box::new(echo));
        }
        if let (Some(cert), Some(key)) = (&config.tls.cert, &config.tls.key) {
            let tls_config = tls::load_config(cert, key).map_err(StartError::Tls)?;
            let tls = TlsNukleus::new(&run_dir, ring, Arc::clone(&signals), tls_config)
                .map_err(run_error)?;
            nuklei.push(Box::new(tls));
        }
        let mut tcp_group = Group::new("tcp", tcp_signal);
        tcp_group.add(Box::new(tcp));
        let mut groups = vec![tcp_group];
        if !one_thread {
            groups.push(Group::new("broker", Arc::clone(&broker_signal)));
        }
        for nukleus in nuklei {
            if let Some(group) = groups.last_mut() {
                group.add(nukleus);
            }
        }
        let threads = groups
            .into_iter()
            .map(|group| group.spawn(Arc::clone(&stop)))
            .collect::<Result<Vec<_>, _>>()
            .map_err(StartError::Thread)?;

        let server = Server {
            handle,
            stop,
            threads,
            accepting: AtomicBool::new(true),
            sessions_closed: false,
        };
        server.wire(config, &vhosts)?;
        for (vhost, resource, source) in &resources {
            if *source == storage::ResourceSource::Amqp {
                let tell = server.handle.monorail_teller();
                server.handle.amqp.start(vhost, resource, tell);
            }
            server.handle.bind_resource(vhost, resource)?;
        }
        Ok(server)
    }

    /// Sets up the data path with control commands.
    fn wire(&self, config: &Config, vhosts: &[VhostPath]) -> Result<(), ControlError> {
        let handle = &self.handle;
        let mut tcp = handle.controller("tcp")?;
        let mut ws = handle.controller("ws")?;
        let mut webrocket = handle.controller("webrocket")?;
        let call = |c: &mut Controller, command: Command<'_>| c.call(command, COMMAND_TIMEOUT);
        call(&mut ws, Command::Capture("tcp"))?;
        call(&mut tcp, Command::Capture("ws"))?;
        call(&mut ws, Command::Capture("webrocket"))?;
        call(&mut webrocket, Command::Capture("ws"))?;
        call(&mut tcp, Command::Route("ws"))?;
        call(&mut ws, Command::Route("tcp"))?;
        call(&mut ws, Command::Route("webrocket"))?;
        call(&mut webrocket, Command::Route("ws"))?;
        let mut monorail = handle.controller("monorail")?;
        call(&mut ws, Command::Capture("monorail"))?;
        call(&mut monorail, Command::Capture("ws"))?;
        call(&mut ws, Command::Route("monorail"))?;
        call(&mut monorail, Command::Route("ws"))?;
        if config.server.echo_path.is_some() {
            let mut echo = handle.controller("echo")?;
            call(&mut ws, Command::Capture("echo"))?;
            call(&mut echo, Command::Capture("ws"))?;
            call(&mut ws, Command::Route("echo"))?;
            call(&mut echo, Command::Route("ws"))?;
        }
        let tls = config.tls.cert.is_some() && config.tls.key.is_some();
        if tls {
            let mut tls = handle.controller("tls")?;
            call(&mut tls, Command::Capture("tcp"))?;
            call(&mut tcp, Command::Capture("tls"))?;
            call(&mut tls, Command::Capture("ws"))?;
            call(&mut ws, Command::Capture("tls"))?;
            call(&mut tls, Command::Route("tcp"))?;
            call(&mut tcp, Command::Route("tls"))?;
            call(&mut tls, Command::Route("ws"))?;
            call(&mut ws, Command::Route("tls"))?;
        }
        let addr = config.server.websocket_addr;
        let bind = Bind {
            handler: if tls { "tls".into() } else { "ws".into() },
            address: BindAddress::Ip(addr.ip()),
            port: addr.port(),
        };
        let bound: Response = call(&mut tcp, Command::Bind(&bind.encode()))?;
        let tcp_ref = bound.reference.unwrap_or(0);
        *lock(&handle.tcp_ref) = tcp_ref;
        *lock(&handle.front) = ("tcp", tcp_ref);
        if tls {
            let bind = TlsBind {
                source: "tcp".into(),
                source_ref: tcp_ref,
                handler: "ws".into(),
            };
            let mut tls = handle.controller("tls")?;
            let bound = call(&mut tls, Command::Bind(&bind.encode()))?;
            *lock(&handle.front) = ("tls", bound.reference.unwrap_or(0));
        }
        if let Some(local) = bound.address {
            *lock(&handle.websocket_addr) = local;
        }
        if let Some(path) = &config.server.echo_path {
            let body = handle.ws_bind("echo", path.as_str(), config.limits.echo_max_message_size);
            call(&mut ws, Command::Bind(&body))?;
        }
        for vhost in vhosts {
            handle.bind_vhost(vhost)?;
        }
        Ok(())
    }

    /// Stops accepting new connections (existing ones carry on). Once.
    pub fn stop_accepting(&self) {
        if !self.accepting.swap(false, Ordering::AcqRel) {
            return;
        }
        let handle = &self.handle;
        if let Ok(mut tcp) = handle.controller("tcp") {
            let _ = tcp.call(Command::Unbind(*lock(&handle.tcp_ref)), COMMAND_TIMEOUT);
        }
    }

    /// Closes every session with `reason` and waits briefly for the close
    /// frames to drain. Once: a later call (or [`Server::shutdown`]) does
    /// nothing more.
    pub fn close_sessions(&mut self, reason: CloseReason) {
        if std::mem::replace(&mut self.sessions_closed, true) {
            return;
        }
        self.handle.task(Task::CloseAll(reason));
        self.handle.monorail_task(monorail::Task::CloseAll(reason));
        std::thread::sleep(DRAIN);
    }

    /// Stops accepting, closes every session with 1001 (unless
    /// [`Server::close_sessions`] already closed them, e.g. with 1012 when
    /// leaving a cluster), drains briefly and stops the threads. Calling it
    /// twice is harmless.
    pub fn shutdown(&mut self) {
        if self.stop.load(Ordering::Acquire) {
            return;
        }
        self.stop_accepting();
        self.close_sessions(CloseReason::Shutdown);
        let handle = &self.handle;
        self.stop.store(true, Ordering::Release);
        handle.signals.wake_all();
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shutdown();
    }
}
