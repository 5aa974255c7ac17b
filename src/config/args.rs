//! `webrocket-server` command-line flags (spec section 6). Flags override
//! the config file.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Parser;

use super::{Config, HostPort};
use crate::name::{NodeName, VhostPath};

/// Flags of `webrocket-server`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Parser)]
#[command(
    name = "webrocket-server",
    version,
    about = "A WebRocket-compatible clustered real-time message broker"
)]
pub struct ServerArgs {
    /// Configuration file (default: built-in defaults, see --print-default-config).
    #[arg(short = 'c', long = "config", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Client WebSocket listener.
    #[arg(long, value_name = "HOST:PORT")]
    pub websocket_addr: Option<SocketAddr>,
    /// Backend ZeroMQ listener.
    #[arg(long, value_name = "HOST:PORT")]
    pub backend_addr: Option<SocketAddr>,
    /// Admin HTTP listener.
    #[arg(long, value_name = "HOST:PORT")]
    pub admin_addr: Option<SocketAddr>,
    /// Directory for durable state and the node cookie.
    #[arg(long, value_name = "DIR")]
    pub storage_dir: Option<PathBuf>,
    /// Directory for shared-memory stream files.
    #[arg(long, value_name = "DIR")]
    pub run_dir: Option<PathBuf>,
    /// This node's name.
    #[arg(long, value_name = "NAME")]
    pub node_name: Option<NodeName>,
    /// TLS certificate chain (PEM); needs --key.
    #[arg(long, value_name = "FILE")]
    pub cert: Option<PathBuf>,
    /// TLS private key (PEM); needs --cert.
    #[arg(long, value_name = "FILE")]
    pub key: Option<PathBuf>,
    /// Serve an echo endpoint at PATH (for conformance and benchmark tools).
    #[arg(long, value_name = "PATH")]
    pub echo_path: Option<VhostPath>,
    /// Listen for cluster peers on this address.
    #[arg(long, value_name = "HOST:PORT")]
    pub cluster_addr: Option<SocketAddr>,
    /// A cluster peer to contact at start (repeatable; replaces the file's seeds).
    #[arg(long = "seed", value_name = "HOST:PORT")]
    pub seeds: Vec<HostPort>,
    /// Check the configuration, print every problem, and exit.
    #[arg(long)]
    pub check_config: bool,
    /// Print the default configuration file and exit.
    #[arg(long)]
    pub print_default_config: bool,
}

impl ServerArgs {
    /// Overwrites the values of `config` that a flag sets.
    pub(super) fn apply_to(&self, config: &mut Config) {
        let server = &mut config.server;
        set(&mut server.websocket_addr, &self.websocket_addr);
        set(&mut server.backend_addr, &self.backend_addr);
        set(&mut server.admin_addr, &self.admin_addr);
        set(&mut server.storage_dir, &self.storage_dir);
        set(&mut server.node_name, &self.node_name);
        if self.run_dir.is_some() {
            server.run_dir.clone_from(&self.run_dir);
        }
        if self.echo_path.is_some() {
            server.echo_path.clone_from(&self.echo_path);
        }
        if self.cert.is_some() {
            config.tls.cert.clone_from(&self.cert);
        }
        if self.key.is_some() {
            config.tls.key.clone_from(&self.key);
        }
        if self.cluster_addr.is_some() {
            config.cluster.addr = self.cluster_addr;
        }
        if !self.seeds.is_empty() {
            config.cluster.seeds.clone_from(&self.seeds);
        }
    }
}

fn set<T: Clone>(target: &mut T, flag: &Option<T>) {
    if let Some(value) = flag {
        target.clone_from(value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn clap_definition_is_consistent() {
        ServerArgs::command().debug_assert();
    }

    #[test]
    fn parses_every_flag() {
        let args = ServerArgs::try_parse_from([
            "webrocket-server",
            "-c",
            "/etc/webrocket.toml",
            "--websocket-addr",
            "127.0.0.1:9080",
            "--backend-addr",
            "127.0.0.1:9081",
            "--admin-addr",
            "127.0.0.1:9082",
            "--storage-dir",
            "/var/lib/webrocket",
            "--run-dir",
            "/tmp/wr",
            "--node-name",
            "n1",
            "--cert",
            "c.pem",
            "--key",
            "k.pem",
            "--echo-path",
            "/echo",
            "--cluster-addr",
            "0.0.0.0:9083",
            "--seed",
            "n2:9083",
            "--seed",
            "n3:9083",
            "--check-config",
            "--print-default-config",
        ])
        .unwrap();
        assert_eq!(args.config, Some(PathBuf::from("/etc/webrocket.toml")));
        assert_eq!(args.node_name.as_ref().unwrap().as_str(), "n1");
        assert_eq!(args.seeds.len(), 2);
        assert!(args.check_config && args.print_default_config);
    }

    #[test]
    fn rejects_invalid_values() {
        for bad in [
            ["--node-name", "a/b"],
            ["--echo-path", "echo"],
            ["--websocket-addr", "localhost"],
            ["--seed", "nohost"],
        ] {
            let argv = std::iter::once("webrocket-server").chain(bad);
            assert!(ServerArgs::try_parse_from(argv).is_err(), "{bad:?}");
        }
    }
}
