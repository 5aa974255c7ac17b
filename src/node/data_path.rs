//! The data path's bindings, set up and changed with the same control
//! commands any other process could send: CAPTURE and ROUTE between
//! neighbouring nuklei, `tcp BIND` of the WebSocket address, one `ws BIND`
//! per vhost path (a deleted vhost is an UNBIND; its path answers 404).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::lock;
use crate::config::Config;
use crate::name::{ResourceName, VhostPath};
use crate::nukleus::command::{Command, Response};
use crate::nukleus::control::{ControlError, Controller};
use crate::nukleus::runner::Signals;
use crate::nukleus::tcp::control::{Bind, BindAddress};
use crate::nukleus::tls::TlsBind;
use crate::nukleus::ws::nukleus::WsBind;
use crate::storage::{Change, State};
use crate::stream::ControlClient;

/// How long a control command may take to be answered.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(5);

/// Where the node's nuklei are and what is bound on them.
pub struct DataPath {
    run_dir: PathBuf,
    signals: Arc<Signals>,
    websocket_addr: Mutex<SocketAddr>,
    tcp_ref: Mutex<i64>,
    /// The nukleus ws reads client streams from ("tcp", or "tls" for wss)
    /// and its ref for them.
    front: Mutex<(&'static str, i64)>,
    vhost_refs: Mutex<Vec<(VhostPath, i64)>>,
    /// MonoRail resources served at `/<vhost>/<resource>`.
    resource_refs: Mutex<Vec<(VhostPath, ResourceName, i64)>>,
    /// The browser origins each config-declared vhost allows (checked by
    /// ws before the upgrade; absent or empty: any).
    origins: HashMap<String, Vec<String>>,
    /// Read by the ws nukleus for `/healthz`; false once stopping.
    serving: Arc<AtomicBool>,
}

impl DataPath {
    /// The data path of the nuklei under `run_dir`, woken through
    /// `signals`, for the node `config` describes; `serving` is the flag
    /// the ws nukleus answers `/healthz` from. Nothing is bound until
    /// [`DataPath::wire`].
    pub fn new(
        run_dir: PathBuf,
        signals: Arc<Signals>,
        config: &Config,
        serving: Arc<AtomicBool>,
    ) -> Self {
        let origins = config
            .vhosts
            .iter()
            .map(|v| (v.path.as_str().to_owned(), v.allowed_origins.clone()))
            .collect();
        DataPath {
            run_dir,
            signals,
            websocket_addr: Mutex::new(config.server.websocket_addr),
            tcp_ref: Mutex::new(0),
            front: Mutex::new(("tcp", 0)),
            vhost_refs: Mutex::new(Vec::new()),
            resource_refs: Mutex::new(Vec::new()),
            origins,
            serving,
        }
    }

    /// The run directory of this node's nuklei.
    pub fn run_dir(&self) -> &Path {
        &self.run_dir
    }

    /// Where WebSocket clients connect (port 0 resolved once wired).
    pub fn websocket_addr(&self) -> SocketAddr {
        *lock(&self.websocket_addr)
    }

    fn controller(&self, nukleus: &str) -> Result<Controller, ControlError> {
        Controller::open(&self.run_dir, nukleus, self.signals.get(nukleus))
    }

    /// Connects the nuklei `config` asks for, binds the WebSocket address
    /// and serves the vhosts and resources of `state`.
    pub fn wire(&self, config: &Config, state: &State) -> Result<(), ControlError> {
        let mut tcp = self.controller("tcp")?;
        let call = |c: &mut Controller, command: Command<'_>| c.call(command, COMMAND_TIMEOUT);
        self.connect("ws", "tcp")?;
        self.connect("ws", "webrocket")?;
        self.connect("ws", "monorail")?;
        if config.server.echo_path.is_some() {
            self.connect("ws", "echo")?;
        }
        let tls = config.tls.cert.is_some() && config.tls.key.is_some();
        if tls {
            self.connect("tls", "tcp")?;
            self.connect("tls", "ws")?;
        }
        let addr = config.server.websocket_addr;
        let bind = Bind {
            handler: if tls { "tls".into() } else { "ws".into() },
            address: BindAddress::Ip(addr.ip()),
            port: addr.port(),
        };
        let bound: Response = call(&mut tcp, Command::Bind(&bind.encode()))?;
        let tcp_ref = bound.reference.unwrap_or(0);
        *lock(&self.tcp_ref) = tcp_ref;
        *lock(&self.front) = ("tcp", tcp_ref);
        if tls {
            let bind = TlsBind {
                source: "tcp".into(),
                source_ref: tcp_ref,
                handler: "ws".into(),
            };
            let mut tls = self.controller("tls")?;
            let bound = call(&mut tls, Command::Bind(&bind.encode()))?;
            *lock(&self.front) = ("tls", bound.reference.unwrap_or(0));
        }
        if let Some(local) = bound.address {
            *lock(&self.websocket_addr) = local;
        }
        if let Some(path) = &config.server.echo_path {
            let body = self.ws_bind("echo", path.as_str(), config.limits.echo_max_message_size);
            self.controller("ws")?
                .call(Command::Bind(&body), COMMAND_TIMEOUT)?;
        }
        for (vhost, record) in &state.vhosts {
            self.bind_vhost(vhost)?;
            for resource in record.resources.keys() {
                self.bind_resource(vhost, resource)?;
            }
        }
        Ok(())
    }

    /// CAPTURE and ROUTE both ways between neighbours `a` and `b` (each
    /// side captures before either routes: a ROUTE maps the file the
    /// other side's CAPTURE made).
    fn connect(&self, a: &str, b: &str) -> Result<(), ControlError> {
        let mut first = self.controller(a)?;
        let mut second = self.controller(b)?;
        first.call(Command::Capture(b), COMMAND_TIMEOUT)?;
        second.call(Command::Capture(a), COMMAND_TIMEOUT)?;
        first.call(Command::Route(b), COMMAND_TIMEOUT)?;
        second.call(Command::Route(a), COMMAND_TIMEOUT)?;
        Ok(())
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
            origins: self.origins.get(path).cloned().unwrap_or_default(),
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
            let (gone, kept): (Vec<_>, Vec<_>) = refs.drain(..).partition(|(v, r, _)| doomed(v, r));
            *refs = kept;
            gone.into_iter()
                .map(|(_, _, reference)| reference)
                .collect()
        };
        for reference in references {
            self.controller("ws")?
                .call(Command::Unbind(reference), COMMAND_TIMEOUT)?;
        }
        Ok(())
    }

    /// Binds or unbinds for a vhost or resource change already durable and
    /// told to the nuklei.
    pub fn follow(&self, change: &Change) -> Result<(), ControlError> {
        match change {
            Change::AddVhost { path, .. } => self.bind_vhost(path)?,
            Change::DeleteVhost { path } => {
                self.unbind_resources(|v, _| v == path)?;
                self.unbind_vhost(path)?
            }
            Change::AddResource { vhost, name, .. } => self.bind_resource(vhost, name)?,
            Change::DeleteResource { vhost, name } => {
                self.unbind_resources(|v, r| v == vhost && r == name)?
            }
            Change::ClearVhosts => {
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

    /// Stops accepting new connections (existing ones carry on); from now
    /// on `/healthz` answers 503.
    pub fn stop_accepting(&self) {
        self.serving.store(false, Ordering::Release);
        let reference = *lock(&self.tcp_ref);
        if let Ok(mut tcp) = self.controller("tcp") {
            let _ = tcp.call(Command::Unbind(reference), COMMAND_TIMEOUT);
        }
    }

    /// Client connections the tcp nukleus holds now (its
    /// `tcp.connections` gauge; 0 when it cannot be read).
    pub fn open_connections(&self) -> i64 {
        let control = self.run_dir.join("tcp").join("control");
        let Ok(client) = ControlClient::open(&control) else {
            return 0;
        };
        let mut open = 0;
        client.counters.for_each(|_, label, value| {
            if label == "tcp.connections" {
                open = value;
            }
        });
        open
    }

    /// Wakes every nukleus (they then see the stop flag).
    pub fn wake_all(&self) {
        self.signals.wake_all();
    }
}
