//! The backend exchange (spec section 2): one ZeroMQ ROUTER socket that
//! backend workers (DEALER, `dlr:` identities) and request clients (REQ,
//! `req:` identities) connect to. The only module that imports `zeromq`.
//!
//! - [`identity`]: `dlr|req:<vhost>:<token>:<uuid>` parsing and token checks
//!   (pure).
//! - [`frames`]: decode/encode of backend frames and the `ER` codes (pure).
//! - [`lobby`]: ready workers per vhost, round robin, liveness (pure).
//! - [`resources`]: the MonoRail commands (`PI`, `RI`, `RB`, `RA`): decoded
//!   here, made durable changes or handed to the monorail nukleus.
//! - `endpoint`: the ROUTER's receive and send tasks (tokio).
//!
//! # Starting
//!
//! The socket is bound before the node starts ([`bind`], so port 0 can be
//! reported), and starts serving when the node hands over its broker
//! inbox and durable state through [`Exchange::backend`]
//! ([`crate::server`] does, when it builds the node). It imports `node`
//! only: the broker's inbox, the state (tokens).
//!
//! # Delivery
//!
//! Triggers go round robin over the vhost's ready workers. A trigger whose
//! worker left before the write, or whose write fails or times out, goes to
//! the next ready worker; only when none is left is it dropped and counted
//! (`dropped_undeliverable`). A write that reached the kernel of a worker
//! that then dies is lost: ZeroMQ has no acknowledgements here.

mod endpoint;
pub mod frames;
pub mod identity;
pub mod lobby;
pub mod resources;
mod stats;

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use zeromq::{RouterRecvHalf, RouterSendHalf};

use self::endpoint::{lock, Outgoing, Settings, Shared};
use self::stats::bump;
use crate::broker::{Backend, NoWorker};
use crate::config::Config;
use crate::guard::{self, GuardLimits};
use crate::name::VhostPath;
use crate::node::{Changes, Inbox};

pub use self::lobby::WorkerInfo;

/// What others learn about this node's backend workers (the admin API's
/// `list_workers` and `/stats`, the cluster's worker counts): the
/// exchange implements it.
pub trait WorkerDirectory: Send + Sync {
    /// The ready workers of `vhost` on this node right now.
    fn workers(&self, vhost: &VhostPath) -> Vec<WorkerInfo>;

    /// Counters as `(label, value)`, labelled like the counters files
    /// (`exchange.triggers_written`), for `/stats` and `/metrics`.
    fn counters(&self) -> Vec<(String, i64)> {
        Vec::new()
    }

    /// Where backends connect, port 0 resolved (`list_nodes`); `None`:
    /// the configured address.
    fn local_addr(&self) -> Option<SocketAddr> {
        None
    }
}

impl WorkerDirectory for Exchange {
    fn workers(&self, vhost: &VhostPath) -> Vec<WorkerInfo> {
        Exchange::workers(self, vhost)
    }

    fn local_addr(&self) -> Option<SocketAddr> {
        Some(Exchange::local_addr(self))
    }

    fn counters(&self) -> Vec<(String, i64)> {
        // The stats serialize to a flat object of numbers; going through
        // serde keeps this list in step with new fields.
        let Ok(serde_json::Value::Object(fields)) = serde_json::to_value(self.stats()) else {
            return Vec::new();
        };
        fields
            .into_iter()
            .filter_map(|(name, value)| Some((format!("exchange.{name}"), value.as_i64()?)))
            .collect()
    }
}
pub use self::stats::ExchangeStats;

/// How long [`Exchange::shutdown`] waits for the `QT`s to be written.
const SHUTDOWN_WAIT: Duration = Duration::from_secs(2);
/// How long the guard's relays may pass on data at shutdown.
const RELAY_DRAIN: Duration = Duration::from_millis(250);

/// The bound backend exchange. Cheap to clone; clones share the socket.
#[derive(Clone)]
pub struct Exchange {
    inner: Arc<Inner>,
}

struct Inner {
    runtime: tokio::runtime::Handle,
    local_addr: SocketAddr,
    settings: Settings,
    max_workers_per_vhost: usize,
    socket: Mutex<Option<(RouterSendHalf, RouterRecvHalf)>>,
    shared: OnceLock<Arc<Shared>>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
    /// Connections the guard cut (frames over the limits).
    cut_off: Arc<AtomicU64>,
    /// The guard in front of the ROUTER; closed last at shutdown.
    guard: Mutex<Option<guard::Guard>>,
}

/// Binds the ROUTER socket on `config.server.backend_addr` and returns the
/// exchange with the address it is bound to (port 0 resolved). It serves
/// nothing until [`Exchange::backend`] is called; connections made earlier
/// wait.
pub async fn bind(config: &Config) -> io::Result<(Exchange, SocketAddr)> {
    let wanted = config.server.backend_addr;
    // Twice the limit: a message a little over it still reaches the
    // exchange and gets its `ER 400`; only far larger ones are cut.
    let max = (config.limits.max_backend_message_size as u64).saturating_mul(2);
    let cut_off = Arc::new(AtomicU64::new(0));
    let counter = Arc::clone(&cut_off);
    let guarded = guard::front(
        wanted,
        GuardLimits::server(max),
        Arc::new(move || bump(&counter)),
    )
    .await
    .map_err(|error| io::Error::new(error.kind(), format!("binding {wanted}: {error}")))?;
    let local_addr = guarded.local_addr;
    let settings = Settings {
        heartbeat_interval: config.backend.heartbeat_interval,
        worker_timeout: config.backend.worker_timeout(),
        max_message_size: config.limits.max_backend_message_size,
    };
    let exchange = Exchange {
        inner: Arc::new(Inner {
            runtime: tokio::runtime::Handle::current(),
            local_addr,
            settings,
            max_workers_per_vhost: config.limits.max_workers_per_vhost,
            socket: Mutex::new(Some(guarded.socket.split())),
            shared: OnceLock::new(),
            tasks: Mutex::new(Vec::new()),
            guard: Mutex::new(Some(guarded.guard)),
            cut_off,
        }),
    };
    Ok((exchange, local_addr))
}

impl Exchange {
    /// Where backends connect (`tcp://ADDR`).
    pub fn local_addr(&self) -> SocketAddr {
        self.inner.local_addr
    }

    /// Starts serving for the node behind `inbox` and `changes` (first
    /// call) and returns the [`Backend`] the broker hands triggers to.
    /// Later calls return another backend of the same exchange and ignore
    /// their arguments.
    pub fn backend(&self, inbox: &Inbox, changes: &Arc<Changes>) -> Box<dyn Backend + Send> {
        let inner = &self.inner;
        let shared = inner.shared.get_or_init(|| {
            let (out, outgoing) = mpsc::channel(endpoint::OUT_QUEUE);
            let shared = Arc::new(Shared {
                lobby: Mutex::new(lobby::Lobby::new(inner.max_workers_per_vhost)),
                out,
                counters: Default::default(),
                inbox: inbox.clone(),
                changes: Arc::clone(changes),
                settings: inner.settings,
            });
            if let Some((send_half, recv_half)) = lock(&inner.socket).take() {
                let tasks = [
                    inner
                        .runtime
                        .spawn(endpoint::receive(Arc::clone(&shared), recv_half)),
                    inner
                        .runtime
                        .spawn(endpoint::send(Arc::clone(&shared), send_half, outgoing)),
                ];
                lock(&inner.tasks).extend(tasks);
            }
            shared
        });
        Box::new(ExchangeBackend {
            shared: Arc::clone(shared),
        })
    }

    /// The ready workers of `vhost`, in round-robin order (`list_workers`).
    pub fn workers(&self, vhost: &VhostPath) -> Vec<WorkerInfo> {
        match self.inner.shared.get() {
            Some(shared) => lock(&shared.lobby).workers(vhost, Instant::now()),
            None => Vec::new(),
        }
    }

    /// The exchange's counters.
    pub fn stats(&self) -> ExchangeStats {
        let mut stats = match self.inner.shared.get() {
            Some(shared) => {
                let workers = lock(&shared.lobby).len();
                shared.counters.snapshot(workers)
            }
            None => ExchangeStats::default(),
        };
        stats.peers_cut_off = self.inner.cut_off.load(Ordering::Relaxed);
        stats
    }

    /// Sends `QT` to every ready worker (bounded wait) and stops the
    /// socket's tasks. Calling it twice is harmless.
    pub async fn shutdown(&self) {
        if let Some(shared) = self.inner.shared.get() {
            let (done, written) = oneshot::channel();
            // One bounded wait for both: queueing the QTs behind a full
            // queue, and writing them.
            let _ = tokio::time::timeout(SHUTDOWN_WAIT, async {
                if shared.out.send(Outgoing::Quit(done)).await.is_ok() {
                    let _ = written.await;
                }
            })
            .await;
        }
        let tasks: Vec<JoinHandle<()>> = lock(&self.inner.tasks).drain(..).collect();
        for task in tasks {
            task.abort();
        }
        // The relays get a moment to pass on what they still hold (the
        // last QTs among it) before they are cut.
        drop(lock(&self.inner.socket).take());
        let guard = lock(&self.inner.guard).take();
        if let Some(guard) = guard {
            guard.close(RELAY_DRAIN).await;
        }
    }
}

/// The [`Backend`] the broker thread calls.
struct ExchangeBackend {
    shared: Arc<Shared>,
}

impl Backend for ExchangeBackend {
    fn trigger(&mut self, vhost: &VhostPath, payload: &[u8]) -> Result<(), NoWorker> {
        self.shared.trigger(vhost, payload)
    }

    fn session_event(&mut self, vhost: &VhostPath, payload: &[u8]) {
        self.shared.session_event(vhost, payload);
    }
}
