//! The configuration tree: what `etc/webrocket.toml` holds, how it is loaded,
//! checked and overridden from the command line.
//!
//! - [`Config::parse`] reads TOML text and reports *every* problem at once,
//!   each with its TOML path (`vhost[1].user[0].name`) and, where the
//!   problem is tied to text, its line and column (how: `config/check.rs`).
//! - [`Config::default`] is the shipped `etc/webrocket.toml`, compiled in; a
//!   key missing from a file takes the built-in default documented there.
//! - [`Config::apply_args`] applies `webrocket-server` flags ([`ServerArgs`]),
//!   [`Config::apply_env`] the `WEBROCKET_CLUSTER_COOKIE` variable.
//!
//! Pure apart from [`Config::load`] (reads one file) and the run-directory
//! default (looks for `/dev/shm`).

mod addr;
mod args;
mod check;
mod validate;

pub mod units;

pub use addr::{HostPort, HostPortError};
pub use args::ServerArgs;
pub use check::{ConfigErrors, ConfigLoadError, ConfigProblem};
pub use validate::secret_hash_problem;

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::limits::{self, Limits};
use crate::name::{ChannelName, NodeName, Permissions, UserName, VhostPath};

/// The shipped, fully commented configuration file.
pub const DEFAULT_CONFIG_TOML: &str = include_str!("../../etc/webrocket.toml");

/// Environment variable that overrides `[cluster] cookie`.
pub const CLUSTER_COOKIE_ENV: &str = "WEBROCKET_CLUSTER_COOKIE";

/// The whole configuration. Sections missing from a file take their
/// built-in defaults; `[[vhost]]` entries are only those the file declares.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// `[server]`: node name, listen addresses, directories.
    #[serde(default)]
    pub server: ServerConfig,
    /// `[tls]`: certificate and key for `wss://`.
    #[serde(default)]
    pub tls: TlsConfig,
    /// `[limits]`: every bound, see [`crate::limits`].
    #[serde(default)]
    pub limits: Limits,
    /// `[backend]`: worker heartbeats.
    #[serde(default)]
    pub backend: BackendConfig,
    /// `[cluster]`: peer listener, seeds, cluster cookie.
    #[serde(default)]
    pub cluster: ClusterConfig,
    /// `[log]`: log filter.
    #[serde(default)]
    pub log: LogConfig,
    /// `[amqp]`: the RabbitMQ broker `amqp` resources consume from.
    #[serde(default)]
    pub amqp: AmqpConfig,
    /// `[[vhost]]`: vhosts ensured at every start.
    #[serde(default, rename = "vhost")]
    pub vhosts: Vec<VhostConfig>,
}

/// `[server]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// This node's name, unique in a cluster. Default `webrocket`.
    pub node_name: NodeName,
    /// Client WebSocket listener. Default `0.0.0.0:8080`.
    pub websocket_addr: SocketAddr,
    /// Backend ZeroMQ ROUTER listener. Default `127.0.0.1:8081`.
    pub backend_addr: SocketAddr,
    /// Admin HTTP listener. Default `127.0.0.1:8082`.
    pub admin_addr: SocketAddr,
    /// Durable state and node cookies. Default `./data`, relative to the
    /// working directory.
    pub storage_dir: PathBuf,
    /// Shared-memory stream files; `None` means [`default_run_dir`].
    pub run_dir: Option<PathBuf>,
    /// Path of the echo endpoint; `None` (the default) turns it off.
    pub echo_path: Option<VhostPath>,
    /// Data-path threads: 1 (the default) runs every nukleus on one thread;
    /// 2 or more give the tcp nukleus a thread of its own; 0 means one per
    /// CPU.
    pub threads: usize,
}

/// `[tls]`: both paths or neither.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    /// PEM certificate chain.
    pub cert: Option<PathBuf>,
    /// PEM private key.
    pub key: Option<PathBuf>,
}

/// `[backend]`: worker liveness. See [`limits::DEFAULT_HEARTBEAT_INTERVAL`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BackendConfig {
    /// How often the server sends `HB` to each worker. Default `2s`.
    #[serde(with = "units::duration")]
    pub heartbeat_interval: Duration,
    /// Missed intervals before a worker is dropped. Default 3.
    pub liveness: u32,
}

/// `[cluster]`. Clustering is on when `addr` is set.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterConfig {
    /// Peer listener; `None` (the default) runs a single node.
    pub addr: Option<SocketAddr>,
    /// Peers to contact at start.
    pub seeds: Vec<HostPort>,
    /// Shared secret of the cluster's nodes; [`CLUSTER_COOKIE_ENV`] overrides.
    pub cookie: Option<String>,
    /// Replicated changes between two snapshots of the replicated state;
    /// the log before a snapshot is dropped. Default
    /// [`limits::DEFAULT_SNAPSHOT_EVERY`].
    pub snapshot_every: u64,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            addr: None,
            seeds: Vec::new(),
            cookie: None,
            snapshot_every: limits::DEFAULT_SNAPSHOT_EVERY,
        }
    }
}

/// `[amqp]`: where `source = "amqp"` resources consume from (AMQP 0-9-1,
/// RabbitMQ).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AmqpConfig {
    /// Broker host. Default `127.0.0.1`.
    pub host: String,
    /// Broker port. Default 5672.
    pub port: u16,
    /// User. Default `guest`.
    pub user: String,
    /// Password. Default `guest`.
    pub password: String,
    /// AMQP virtual host. Default `/`.
    pub vhost: String,
    /// The topic exchange (declared durable if missing). Default
    /// `webrocket`.
    pub exchange: String,
}

impl Default for AmqpConfig {
    fn default() -> Self {
        AmqpConfig {
            host: "127.0.0.1".into(),
            port: 5672,
            user: "guest".into(),
            password: "guest".into(),
            vhost: "/".into(),
            exchange: "webrocket".into(),
        }
    }
}

/// `[log]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// A `tracing` filter: a level (`info`) or directives
    /// (`warn,webrocket::broker=debug`). Default `info`. `RUST_LOG` wins.
    pub level: String,
}

/// One `[[vhost]]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VhostConfig {
    /// The endpoint path, e.g. `/chat`. Required.
    pub path: VhostPath,
    /// Permissions of sessions that have not authenticated. Default none.
    #[serde(default)]
    pub anonymous: Permissions,
    /// Whether subscribing to a missing channel creates it. Default true.
    #[serde(default = "default_true")]
    pub auto_create_channels: bool,
    /// Channels created at start.
    #[serde(default)]
    pub channels: Vec<ChannelName>,
    /// `[[vhost.user]]` entries.
    #[serde(default, rename = "user")]
    pub users: Vec<UserConfig>,
    /// Origins (`scheme://host[:port]`) browsers may connect from; a
    /// request with another `Origin` header gets 403 before the upgrade.
    /// Empty (the default): any origin. Requests without `Origin` (not from
    /// a browser) are always allowed.
    #[serde(default)]
    pub allowed_origins: Vec<String>,
    /// `[[vhost.resource]]` entries: MonoRail resources created at start.
    #[serde(default, rename = "resource", skip_serializing_if = "Vec::is_empty")]
    pub resources: Vec<ResourceConfig>,
    /// Messages each channel keeps for recovery (0: no count bound; with
    /// `history_ttl` also 0, no history). Default 0.
    #[serde(default)]
    pub history_size: u32,
    /// How long each channel keeps its messages ("0s": no age bound).
    /// Default "0s".
    #[serde(default, with = "units::duration")]
    pub history_ttl: Duration,
    /// Whether channels track their members (presence). Default false.
    #[serde(default)]
    pub presence: bool,
    /// Whether channels with a history also keep it in a file under the
    /// storage directory, so that it and its epoch outlive a restart.
    /// Default false.
    #[serde(default)]
    pub history_durable: bool,
}

impl VhostConfig {
    /// The channel options this vhost's channels get by default.
    pub fn channel_defaults(&self) -> crate::storage::ChannelOptions {
        crate::storage::ChannelOptions {
            history_size: self.history_size,
            history_ttl_ms: u64::try_from(self.history_ttl.as_millis()).unwrap_or(u64::MAX),
            presence: self.presence,
            history_durable: self.history_durable,
        }
    }
}

/// One `[[vhost.resource]]`: a MonoRail resource served at
/// `/<vhost>/<name>`. Created at start when missing; one that exists keeps
/// its items (and its definition: delete it to redefine it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResourceConfig {
    /// The resource name. Required.
    pub name: crate::name::ResourceName,
    /// Where its items come from. Default `"store"`.
    #[serde(default)]
    pub source: ResourceSource,
    /// The item property that identifies an item. Default `"id"`.
    #[serde(default = "default_id_field")]
    pub id_field: String,
}

/// Where a resource's items come from (`source` in the config).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResourceSource {
    /// Items kept by the node (replicated on a cluster), written by
    /// backends (`PI` / `RI`) and the admin API.
    #[default]
    Store,
    /// Items kept by the vhost's backend workers: `query`, `all`, `get`
    /// (and the first `list` of a `watch`) are asked of a worker; `PI` /
    /// `RI` only notify watchers and keep nothing here.
    Backend,
    /// Watches fed from a RabbitMQ topic exchange (`[amqp]`), binding key
    /// `<vhost segments joined by '.'>.<resource>.#`; nothing is kept.
    Amqp,
}

fn default_id_field() -> String {
    "id".to_owned()
}

/// One `[[vhost.user]]`. Users declared here are owned by the config: their
/// secret and permissions are reset to these values at every start.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserConfig {
    /// The user name. Required.
    pub name: UserName,
    /// Argon2 PHC string of the secret; `None` lets the user authenticate
    /// without a secret.
    #[serde(default, deserialize_with = "validate::secret_hash")]
    pub secret_hash: Option<String>,
    /// Granted permissions. Default none.
    #[serde(default)]
    pub permissions: Permissions,
}

fn default_true() -> bool {
    true
}

/// `/dev/shm/webrocket` where `/dev/shm` exists (memory-backed, so the
/// stream files never touch a disk), else `<temp dir>/webrocket`.
pub fn default_run_dir() -> PathBuf {
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        shm.join("webrocket")
    } else {
        std::env::temp_dir().join("webrocket")
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            node_name: NodeName::parse("webrocket").expect("literal is a valid node name"),
            websocket_addr: SocketAddr::from(([0, 0, 0, 0], 8080)),
            backend_addr: SocketAddr::from(([127, 0, 0, 1], 8081)),
            admin_addr: SocketAddr::from(([127, 0, 0, 1], 8082)),
            storage_dir: PathBuf::from("./data"),
            run_dir: None,
            echo_path: None,
            threads: 1,
        }
    }
}

impl ServerConfig {
    /// The run directory: the configured one or [`default_run_dir`].
    pub fn resolved_run_dir(&self) -> PathBuf {
        self.run_dir.clone().unwrap_or_else(default_run_dir)
    }

    /// Where this node's nukleus stream files go: `<run_dir>/<node_name>`.
    pub fn nukleus_dir(&self) -> PathBuf {
        self.resolved_run_dir().join(self.node_name.as_str())
    }

    /// The node cookie file: `<storage_dir>/<node_name>.cookie`.
    pub fn cookie_path(&self) -> PathBuf {
        self.storage_dir
            .join(format!("{}.cookie", self.node_name.as_str()))
    }

    /// The number of I/O threads to start (`threads`, or one per CPU).
    pub fn thread_count(&self) -> usize {
        match self.threads {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        }
    }
}

impl TlsConfig {
    /// `(cert, key)` when TLS is configured.
    pub fn paths(&self) -> Option<(&Path, &Path)> {
        Some((self.cert.as_deref()?, self.key.as_deref()?))
    }
}

impl Default for BackendConfig {
    fn default() -> Self {
        Self {
            heartbeat_interval: limits::DEFAULT_HEARTBEAT_INTERVAL,
            liveness: limits::DEFAULT_LIVENESS,
        }
    }
}

impl BackendConfig {
    /// How long a silent worker is kept: `liveness x heartbeat_interval`.
    pub fn worker_timeout(&self) -> Duration {
        self.heartbeat_interval.saturating_mul(self.liveness)
    }
}

impl ClusterConfig {
    /// True when this node runs in a cluster.
    pub fn enabled(&self) -> bool {
        self.addr.is_some()
    }
}

// The cookie is a shared secret: keep it out of logs.
impl fmt::Debug for ClusterConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClusterConfig")
            .field("addr", &self.addr)
            .field("seeds", &self.seeds)
            .field("cookie", &self.cookie.as_ref().map(|_| "<redacted>"))
            .field("snapshot_every", &self.snapshot_every)
            .finish()
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            level: "info".to_owned(),
        }
    }
}

impl Default for Config {
    /// The shipped `etc/webrocket.toml` (tested to parse).
    fn default() -> Self {
        Self::parse(DEFAULT_CONFIG_TOML).expect("the shipped etc/webrocket.toml is valid")
    }
}

impl Config {
    /// Parses and validates TOML text, reporting every problem found.
    pub fn parse(text: &str) -> Result<Config, ConfigErrors> {
        check::parse(text)
    }

    /// Reads and parses a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigLoadError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigLoadError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text).map_err(|errors| ConfigLoadError::Invalid {
            path: path.to_owned(),
            errors,
        })
    }

    /// Checks the relations between values (duplicates, half-set TLS,
    /// conflicting addresses, limits); [`Config::parse`] already does this.
    pub fn validate(&self) -> Result<(), ConfigErrors> {
        let mut problems = Vec::new();
        validate::config(self, &mut problems);
        ConfigErrors::result(problems)
    }

    /// Applies environment overrides: [`CLUSTER_COOKIE_ENV`].
    pub fn apply_env(&mut self) {
        self.apply_env_with(|name| std::env::var(name).ok());
    }

    /// [`Config::apply_env`] with an injectable lookup, for tests.
    pub fn apply_env_with(&mut self, lookup: impl Fn(&str) -> Option<String>) {
        if let Some(cookie) = lookup(CLUSTER_COOKIE_ENV).filter(|c| !c.is_empty()) {
            self.cluster.cookie = Some(cookie);
        }
    }

    /// Applies command-line flags (they win over the file) and validates the
    /// result, since a flag can create a conflict (e.g. only `--cert`).
    pub fn apply_args(&mut self, args: &ServerArgs) -> Result<(), ConfigErrors> {
        args.apply_to(self);
        self.validate()
    }

    /// Where this node's nukleus stream files go; see
    /// [`ServerConfig::nukleus_dir`].
    pub fn nukleus_dir(&self) -> PathBuf {
        self.server.nukleus_dir()
    }

    /// The vhost declared at `path`.
    pub fn vhost(&self, path: &str) -> Option<&VhostConfig> {
        self.vhosts.iter().find(|v| v.path.as_str() == path)
    }
}

#[cfg(test)]
mod tests;
