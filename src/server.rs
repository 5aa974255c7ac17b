//! The composition root: opens storage, builds the nuklei, starts their
//! threads and wires them together with the same control commands any other
//! process could send. Shutdown runs in one order: stop accepting, tell the
//! sessions, drain for a bounded time, stop the threads.
//!
//! ```text
//! thread "tcp":    tcp nukleus (owns the sockets, parks in its poller)
//! thread "broker": ws + webrocket (+ echo) nuklei, parks on its signal
//! ```

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::config::Config;
use crate::limits::Limits;
use crate::name::VhostPath;
use crate::nukleus::command::{Command, Response};
use crate::nukleus::control::{ControlError, Controller};
use crate::nukleus::echo::EchoNukleus;
use crate::nukleus::runner::{Group, Signal, Signals};
use crate::nukleus::tcp::{control::Bind, control::BindAddress, TcpNukleus, TcpSettings};
use crate::nukleus::webrocket::{Task, WebrocketNukleus};
use crate::nukleus::ws::nukleus::{WsBind, WsNukleus, WsNukleusSettings};
use crate::nukleus::ws::WsSettings;
use crate::protocol::CloseReason;
use crate::storage::{self, State, Store};

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
}

/// A running server.
pub struct Server {
    /// Where WebSocket clients connect (the bound address; port 0 resolved).
    pub websocket_addr: SocketAddr,
    /// The run directory of this node's nuklei.
    pub run_dir: PathBuf,
    /// Durable state, shared with the admin API.
    pub store: Arc<Mutex<Store>>,
    /// Work for the broker thread.
    pub tasks: Sender<Task>,
    stop: Arc<AtomicBool>,
    signals: Arc<Signals>,
    threads: Vec<JoinHandle<()>>,
    tcp_ref: i64,
    vhost_refs: Mutex<Vec<(VhostPath, i64)>>,
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
    /// connect.
    pub fn start(config: &Config) -> Result<Server, StartError> {
        let limits = &config.limits;
        let run_dir = config.nukleus_dir();
        let run_error = |source| StartError::RunDir {
            path: run_dir.clone(),
            source,
        };
        let _ = std::fs::remove_dir_all(&run_dir);
        std::fs::create_dir_all(&run_dir).map_err(run_error)?;

        let (mut store, mut state) = Store::open(&config.server.storage_dir)?;
        for change in storage::seed_from_config(config, &state) {
            store.commit(&change)?;
            if let Err(error) = state.apply(&change) {
                tracing::warn!(%error, "config change not applied");
            }
        }
        let store = Arc::new(Mutex::new(store));

        let signals = Arc::new(Signals::default());
        let broker_signal = Signal::for_thread();
        for name in ["ws", "webrocket", "echo"] {
            signals.register(name, Arc::clone(&broker_signal));
        }
        let ring = limits.ring_capacity;
        let tcp_settings = TcpSettings {
            out_limit: limits.max_pending_bytes,
            max_connections: limits.max_connections,
            ring_capacity: ring,
        };
        let (tcp, tcp_signal) = TcpNukleus::new(&run_dir, tcp_settings, Arc::clone(&signals))
            .map_err(run_error)?;
        let ws_settings = WsNukleusSettings {
            engine: engine_settings(limits),
            input_window: (limits.max_frame_size + 16).max(64 * 1024),
            handshake_timeout: limits.handshake_timeout,
            idle_timeout: limits.idle_timeout,
            ring_capacity: ring,
        };
        let ws = WsNukleus::new(&run_dir, ws_settings, Arc::clone(&signals)).map_err(run_error)?;
        let (tasks, task_inbox) = mpsc::channel();
        let webrocket = WebrocketNukleus::new(
            &run_dir,
            ring,
            Arc::clone(&signals),
            Arc::clone(&broker_signal),
            &state,
            limits,
            Arc::clone(&store),
            task_inbox,
        )
        .map_err(run_error)?;

        let stop = Arc::new(AtomicBool::new(false));
        let mut tcp_group = Group::new("tcp", tcp_signal);
        tcp_group.add(Box::new(tcp));
        let mut broker_group = Group::new("broker", Arc::clone(&broker_signal));
        broker_group.add(Box::new(ws));
        broker_group.add(Box::new(webrocket));
        if config.server.echo_path.is_some() {
            let echo = EchoNukleus::new(&run_dir, ring, Arc::clone(&signals)).map_err(run_error)?;
            broker_group.add(Box::new(echo));
        }
        let threads = vec![
            tcp_group.spawn(Arc::clone(&stop)).map_err(StartError::Thread)?,
            broker_group.spawn(Arc::clone(&stop)).map_err(StartError::Thread)?,
        ];

        let mut server = Server {
            websocket_addr: config.server.websocket_addr,
            run_dir,
            store,
            tasks,
            stop,
            signals,
            threads,
            tcp_ref: 0,
            vhost_refs: Mutex::new(Vec::new()),
        };
        server.wire(config, &state)?;
        Ok(server)
    }

    fn controller(&self, nukleus: &str) -> Result<Controller, ControlError> {
        Controller::open(&self.run_dir, nukleus, self.signals.get(nukleus))
    }

    /// Sets up the data path with control commands.
    fn wire(&mut self, config: &Config, state: &State) -> Result<(), ControlError> {
        let mut tcp = self.controller("tcp")?;
        let mut ws = self.controller("ws")?;
        let mut webrocket = self.controller("webrocket")?;
        let call = |c: &mut Controller, command: Command<'_>| c.call(command, COMMAND_TIMEOUT);
        call(&mut ws, Command::Capture("tcp"))?;
        call(&mut tcp, Command::Capture("ws"))?;
        call(&mut ws, Command::Capture("webrocket"))?;
        call(&mut webrocket, Command::Capture("ws"))?;
        call(&mut tcp, Command::Route("ws"))?;
        call(&mut ws, Command::Route("tcp"))?;
        call(&mut ws, Command::Route("webrocket"))?;
        call(&mut webrocket, Command::Route("ws"))?;
        if config.server.echo_path.is_some() {
            let mut echo = self.controller("echo")?;
            call(&mut ws, Command::Capture("echo"))?;
            call(&mut echo, Command::Capture("ws"))?;
            call(&mut ws, Command::Route("echo"))?;
            call(&mut echo, Command::Route("ws"))?;
        }
        let addr = config.server.websocket_addr;
        let bind = Bind {
            handler: "ws".into(),
            address: BindAddress::Ip(addr.ip()),
            port: addr.port(),
        };
        let bound: Response = call(&mut tcp, Command::Bind(&bind.encode()))?;
        self.tcp_ref = bound.reference.unwrap_or(0);
        if let Some(local) = bound.address {
            self.websocket_addr = local;
        }
        if let Some(path) = &config.server.echo_path {
            let body = self.ws_bind("echo", path.as_str(), config.limits.echo_max_message_size, self.tcp_ref);
            call(&mut ws, Command::Bind(&body))?;
        }
        for vhost in state.vhosts.keys() {
            self.bind_vhost_with(&mut ws, vhost)?;
        }
        Ok(())
    }

    fn ws_bind(&self, handler: &str, path: &str, max_message_size: usize, source_ref: i64) -> Vec<u8> {
        WsBind {
            source: "tcp".into(),
            source_ref,
            handler: handler.into(),
            protocol: None,
            path: Some(path.into()),
            max_message_size: max_message_size.min(i32::MAX as usize) as i32,
        }
        .encode()
    }

    fn bind_vhost_with(&self, ws: &mut Controller, vhost: &VhostPath) -> Result<(), ControlError> {
        let body = self.ws_bind("webrocket", vhost.as_str(), 0, self.tcp_ref);
        let bound = ws.call(Command::Bind(&body), COMMAND_TIMEOUT)?;
        if let (Ok(mut refs), Some(reference)) = (self.vhost_refs.lock(), bound.reference) {
            refs.push((vhost.clone(), reference));
        }
        Ok(())
    }

    /// Starts serving a vhost created while running.
    pub fn bind_vhost(&self, vhost: &VhostPath) -> Result<(), ControlError> {
        let mut ws = self.controller("ws")?;
        self.bind_vhost_with(&mut ws, vhost)
    }

    /// Stops serving a deleted vhost (new connections get 404).
    pub fn unbind_vhost(&self, vhost: &VhostPath) -> Result<(), ControlError> {
        let reference = match self.vhost_refs.lock() {
            Ok(mut refs) => {
                let found = refs.iter().position(|(v, _)| v == vhost);
                found.map(|i| refs.remove(i).1)
            }
            Err(_) => None,
        };
        if let Some(reference) = reference {
            self.controller("ws")?
                .call(Command::Unbind(reference), COMMAND_TIMEOUT)?;
        }
        Ok(())
    }

    /// Stops accepting, closes every session with 1001, drains briefly and
    /// stops the threads. Calling it twice is harmless.
    pub fn shutdown(&mut self) {
        if self.stop.load(Ordering::Acquire) {
            return;
        }
        if let Ok(mut tcp) = self.controller("tcp") {
            let _ = tcp.call(Command::Unbind(self.tcp_ref), COMMAND_TIMEOUT);
        }
        if self.tasks.send(Task::CloseAll(CloseReason::Shutdown)).is_ok() {
            self.signals.wake_all();
            std::thread::sleep(DRAIN);
        }
        self.stop.store(true, Ordering::Release);
        self.signals.wake_all();
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
