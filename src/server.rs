//! The composition root: binds the node's ports, opens storage, builds the
//! nuklei and the capabilities of [`crate::node`], hands them to the
//! backend exchange, the cluster and the admin API, and owns the one
//! ordered shutdown. Nothing below imports it.
//!
//! ```text
//! thread "tcp":    tcp nukleus (owns the sockets, parks in its poller)
//! thread "broker": ws + webrocket (+ echo, + tls) nuklei, parks on its signal
//! tokio runtime:   admin API, backend exchange, cluster
//!
//! With `server.threads = 1` every nukleus runs on the tcp thread instead.
//! ```
//!
//! Shutdown runs in one order ([`Server::shutdown`]): stop accepting;
//! on a cluster, leave it (peers count this node out at once) and tell the
//! sessions to reconnect elsewhere (1012); stop the admin API, the cluster
//! and the exchange; close the remaining sessions (1001); wait, bounded,
//! for the connections to drain; stop the threads.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::net::TcpListener;
use tokio::sync::oneshot;

use crate::admin::{Admin, NodeView};
use crate::broker::{Backend, NoWorker};
use crate::cluster::{Cluster, ClusterError};
use crate::config::Config;
use crate::exchange::{self, Exchange, WorkerDirectory};
use crate::limits::Limits;
use crate::name::VhostPath;
use crate::node::{Changes, DataPath, Feeds, Inbox};
use crate::nukleus::control::ControlError;
use crate::nukleus::echo::EchoNukleus;
use crate::nukleus::monorail::MonorailNukleus;
use crate::nukleus::runner::{Agent, Group, Signal, Signals};
use crate::nukleus::tcp::{TcpNukleus, TcpSettings};
use crate::nukleus::tls::{self, TlsNukleus};
pub use crate::nukleus::webrocket::NoBackend;
use crate::nukleus::webrocket::WebrocketNukleus;
use crate::nukleus::ws::nukleus::{WsNukleus, WsNukleusSettings};
use crate::nukleus::ws::WsSettings;
use crate::protocol::CloseReason;
use crate::storage::{self, Change, Durable, Store};

/// How long closed sessions may take to drain before the threads stop.
const DRAIN: Duration = Duration::from_millis(500);
/// How often the drain looks at the open connections.
const DRAIN_POLL: Duration = Duration::from_millis(5);
/// How long the admin API may finish the requests in flight.
const ADMIN_DRAIN: Duration = Duration::from_secs(2);

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
    Tls(#[from] tls::TlsError),
    /// The backend exchange's or the admin API's port.
    #[error("{what} {addr}: {source}")]
    Bind {
        /// Which port.
        what: &'static str,
        /// Where.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The cluster's port or settings.
    #[error("cluster: {0}")]
    Cluster(#[from] ClusterError),
}

/// The node's ports other than the WebSocket one (which the tcp nukleus
/// binds when the data path is wired): bound before the node starts, so
/// that port 0 is resolved and tests can run many nodes in one process.
/// A part left `None` does not run.
#[derive(Default)]
pub struct Listeners {
    /// The backend exchange's ZeroMQ ROUTER (serving once the node starts).
    pub exchange: Option<Exchange>,
    /// The cluster's ROUTER, when clustering is on.
    pub cluster: Option<Cluster>,
    /// The admin API's listener.
    pub admin: Option<TcpListener>,
}

impl Listeners {
    /// Binds every port `config` names. Runs inside the tokio runtime that
    /// will run the node.
    pub async fn bind(config: &Config) -> Result<Listeners, StartError> {
        let (exchange, _) = exchange::bind(config)
            .await
            .map_err(|source| StartError::Bind {
                what: "backend endpoint",
                addr: config.server.backend_addr,
                source,
            })?;
        let cluster = Cluster::bind(config).await?;
        let admin = TcpListener::bind(config.server.admin_addr)
            .await
            .map_err(|source| StartError::Bind {
                what: "admin endpoint",
                addr: config.server.admin_addr,
                source,
            })?;
        Ok(Listeners {
            exchange: Some(exchange),
            cluster,
            admin: Some(admin),
        })
    }
}

/// Runs a node until `shutdown` completes, then shuts it down in order.
/// Prints one ready line (`webrocket-server ready ...`) once clients can
/// connect: people and scripts read the addresses from it.
pub async fn run(
    config: Config,
    listeners: Listeners,
    shutdown: impl Future<Output = ()>,
) -> Result<(), StartError> {
    let mut server = Server::start(&config, listeners)?;
    println!("{}", server.ready_line());
    shutdown.await;
    tracing::info!("shutting down");
    server.shutdown().await;
    Ok(())
}

/// The admin API's task and the way to stop it.
struct AdminTask {
    addr: SocketAddr,
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

/// A running node.
pub struct Server {
    /// The configuration it started with.
    pub config: Config,
    /// The node cookie (admin API).
    pub cookie: String,
    /// Work for the broker thread.
    pub inbox: Inbox,
    /// The durable state and the way it changes.
    pub changes: Arc<Changes>,
    /// The data path's bindings and run directory.
    pub data_path: Arc<DataPath>,
    exchange: Option<Exchange>,
    cluster: Option<Cluster>,
    admin: Option<AdminTask>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    accepting: AtomicBool,
    sessions_closed: bool,
}

impl Server {
    /// Starts everything `config` describes over `listeners` and returns
    /// once clients can connect. Runs inside the tokio runtime when any
    /// listener is given (the admin API and the cluster spawn tasks).
    pub fn start(config: &Config, listeners: Listeners) -> Result<Server, StartError> {
        let limits = &config.limits;
        let run_dir = config.nukleus_dir();
        let run_error = |source| StartError::RunDir {
            path: run_dir.clone(),
            source,
        };
        let _ = std::fs::remove_dir_all(&run_dir);
        std::fs::create_dir_all(&run_dir).map_err(run_error)?;
        let durable = open_storage(config)?;
        let cookie =
            storage::load_or_create_cookie(&config.server.storage_dir, &config.server.node_name)
                .map_err(|source| StartError::RunDir {
                    path: config.server.storage_dir.clone(),
                    source,
                })?;
        let broker_state = durable.state.clone();

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
            serving: Arc::new(AtomicBool::new(true)),
        };
        let serving = Arc::clone(&ws_settings.serving);
        let ws = WsNukleus::new(&run_dir, ws_settings, Arc::clone(&signals)).map_err(run_error)?;

        let (inbox, tasks, monorail_tasks) = Inbox::new(Arc::clone(&broker_signal));
        let data_path = Arc::new(DataPath::new(
            run_dir.clone(),
            Arc::clone(&signals),
            config,
            serving,
        ));
        let changes = Arc::new(Changes::new(
            durable,
            inbox.clone(),
            Arc::clone(&data_path),
            Feeds::new(config, inbox.clone()),
            limits.clone(),
            config.cluster.enabled(),
        ));
        let Listeners {
            exchange,
            cluster,
            admin,
        } = listeners;
        let local: Box<dyn Backend + Send> = match &exchange {
            Some(exchange) => exchange.backend(&inbox, &changes),
            None => Box::new(NoBackend),
        };
        let backend = Arc::new(Mutex::new(match &cluster {
            Some(cluster) => cluster.backend(local),
            None => local,
        }));
        let webrocket = WebrocketNukleus::new(
            &run_dir,
            &config.server.storage_dir,
            ring,
            Arc::clone(&signals),
            Arc::clone(&broker_signal),
            &broker_state,
            limits,
            tasks,
            Box::new(SharedBackend(Arc::clone(&backend))),
            Box::new(Arc::clone(&changes)),
        )
        .map_err(run_error)?;
        let monorail = MonorailNukleus::new(
            &run_dir,
            Arc::clone(&signals),
            Arc::clone(&broker_signal),
            &broker_state,
            limits,
            monorail_tasks,
            Box::new(SharedBackend(backend)),
            config
                .cluster
                .enabled()
                .then_some(config.server.node_name.as_str()),
        )
        .map_err(run_error)?;

        let mut nuklei: Vec<Box<dyn Agent>> =
            vec![Box::new(ws), Box::new(webrocket), Box::new(monorail)];
        if config.server.echo_path.is_some() {
            let echo = EchoNukleus::new(&run_dir, ring, Arc::clone(&signals)).map_err(run_error)?;
            nuklei.push(Box::new(echo));
        }
        if let (Some(cert), Some(key)) = (&config.tls.cert, &config.tls.key) {
            let tls_config = tls::load_config(cert, key)?;
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
        let stop = Arc::new(AtomicBool::new(false));
        let threads = groups
            .into_iter()
            .map(|group| group.spawn(Arc::clone(&stop)))
            .collect::<Result<Vec<_>, _>>()
            .map_err(StartError::Thread)?;

        // From here on a failure drops the server, which stops the threads.
        let mut server = Server {
            config: config.clone(),
            cookie,
            inbox,
            changes,
            data_path,
            exchange,
            cluster,
            admin: None,
            stop,
            threads,
            accepting: AtomicBool::new(true),
            sessions_closed: false,
        };
        server.data_path.wire(config, &broker_state)?;
        server.changes.start_feeds();
        let workers = server
            .exchange
            .clone()
            .map(|exchange| Arc::new(exchange) as Arc<dyn WorkerDirectory>);
        if let Some(cluster) = &server.cluster {
            cluster.start(config, &server.inbox, &server.changes, workers.clone());
        }
        if let Some(listener) = admin {
            server.admin = Some(server.serve_admin(listener, workers)?);
        }
        Ok(server)
    }

    fn serve_admin(
        &self,
        listener: TcpListener,
        workers: Option<Arc<dyn WorkerDirectory>>,
    ) -> Result<AdminTask, StartError> {
        let addr = listener.local_addr().map_err(|source| StartError::Bind {
            what: "admin endpoint",
            addr: self.config.server.admin_addr,
            source,
        })?;
        let api = Admin::new(NodeView {
            config: self.config.clone(),
            cookie: self.cookie.clone(),
            changes: Arc::clone(&self.changes),
            data_path: Arc::clone(&self.data_path),
            cluster: self.cluster.clone(),
            workers,
        });
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let stopped = async {
                let _ = stopped.await;
            };
            if let Err(error) = api.serve(listener, stopped).await {
                tracing::error!(%error, "admin endpoint failed");
            }
        });
        Ok(AdminTask { addr, stop, task })
    }

    /// Where WebSocket clients connect (port 0 resolved).
    pub fn websocket_addr(&self) -> SocketAddr {
        self.data_path.websocket_addr()
    }

    /// Where backends connect, if the exchange runs.
    pub fn backend_addr(&self) -> Option<SocketAddr> {
        self.exchange.as_ref().map(Exchange::local_addr)
    }

    /// Where the admin API listens, if it runs.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin.as_ref().map(|admin| admin.addr)
    }

    /// The exchange, if it runs.
    pub fn exchange(&self) -> Option<&Exchange> {
        self.exchange.as_ref()
    }

    /// The cluster, if the node is in one.
    pub fn cluster(&self) -> Option<&Cluster> {
        self.cluster.as_ref()
    }

    /// The line [`run`] prints once the node serves.
    pub fn ready_line(&self) -> String {
        let or_none = |addr: Option<SocketAddr>| match addr {
            Some(addr) => addr.to_string(),
            None => "none".to_owned(),
        };
        format!(
            "webrocket-server ready node={} websocket={} backend={} admin={} cluster={} run_dir={}",
            self.config.server.node_name,
            self.websocket_addr(),
            or_none(self.backend_addr()),
            or_none(self.admin_addr()),
            self.cluster.as_ref().map_or("none", Cluster::local_addr),
            self.data_path.run_dir().display()
        )
    }

    /// Stops accepting new connections (existing ones carry on). Once.
    pub fn stop_accepting(&self) {
        if self.accepting.swap(false, Ordering::AcqRel) {
            self.data_path.stop_accepting();
        }
    }

    /// Closes every session with `reason` and waits, at most [`DRAIN`],
    /// until the connections are gone (the close frames written and the
    /// clients' answers read). Once: a later call does nothing more.
    pub fn close_sessions(&mut self, reason: CloseReason) {
        if std::mem::replace(&mut self.sessions_closed, true) {
            return;
        }
        self.inbox.close_all(reason);
        let deadline = Instant::now() + DRAIN;
        while Instant::now() < deadline && self.data_path.open_connections() > 0 {
            std::thread::sleep(DRAIN_POLL);
        }
    }

    /// Shuts the node down in order (see the module documentation).
    /// Calling it twice is harmless.
    pub async fn shutdown(&mut self) {
        if self.stop.load(Ordering::Acquire) {
            return;
        }
        // A clustered node leaves gracefully: no new clients, the peers
        // count it out at once (and take over its channels), then its
        // clients are told to reconnect elsewhere (1012) rather than that
        // the service is gone.
        if let Some(cluster) = self.cluster.clone() {
            self.stop_accepting();
            cluster.leave().await;
            self.close_sessions(CloseReason::Leaving);
        }
        if let Some(admin) = self.admin.take() {
            let _ = admin.stop.send(());
            let _ = tokio::time::timeout(ADMIN_DRAIN, admin.task).await;
        }
        if let Some(cluster) = &self.cluster {
            cluster.shutdown();
        }
        if let Some(exchange) = &self.exchange {
            exchange.shutdown().await;
        }
        self.stop_threads();
    }

    /// Stops accepting, closes every session with 1001 (unless they were
    /// closed already, e.g. with 1012 when leaving a cluster), drains
    /// briefly and stops the threads.
    fn stop_threads(&mut self) {
        if self.stop.load(Ordering::Acquire) {
            return;
        }
        self.stop_accepting();
        self.close_sessions(CloseReason::Shutdown);
        self.stop.store(true, Ordering::Release);
        self.data_path.wake_all();
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

impl Drop for Server {
    /// A server dropped without [`Server::shutdown`] still stops its
    /// threads; the cluster's tasks stop, the exchange's with its runtime.
    fn drop(&mut self) {
        if let Some(cluster) = &self.cluster {
            cluster.shutdown();
        }
        self.stop_threads();
    }
}

/// The way to backend workers, shared by the webrocket nukleus (triggers)
/// and the monorail nukleus (requests of `backend` resources). Both run on
/// the same thread, so the lock is never contended.
struct SharedBackend(Arc<Mutex<Box<dyn Backend + Send>>>);

impl Backend for SharedBackend {
    fn trigger(&mut self, vhost: &VhostPath, payload: &[u8]) -> Result<(), NoWorker> {
        crate::node::lock(&self.0).trigger(vhost, payload)
    }

    fn session_event(&mut self, vhost: &VhostPath, payload: &[u8]) {
        crate::node::lock(&self.0).session_event(vhost, payload);
    }
}

/// Opens the store and, when this start should, applies the config's
/// vhosts, users and channels through it.
fn open_storage(config: &Config) -> Result<Durable, StartError> {
    let (mut store, mut state) = Store::open(&config.server.storage_dir)?;
    if seeds_from_config(config) {
        for mut change in storage::seed_from_config(config, &state) {
            if let Some(cookie) = config.cluster.cookie.as_deref() {
                shared_token(&mut change, cookie);
            }
            store.commit_and_apply(&mut state, &change)?;
        }
    }
    Ok(Durable { store, state })
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

fn engine_settings(limits: &Limits) -> WsSettings {
    WsSettings {
        max_frame_size: limits.max_frame_size,
        max_message_size: limits.max_message_size,
        chunk_size: limits.max_message_size,
        max_handshake_size: limits.max_handshake_size,
        deflate: true,
    }
}
