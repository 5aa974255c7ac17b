//! Command-line flags and how they resolve into what to watch.
//!
//! The counters files are the primary source: on the server's machine the
//! monitor maps `<run-dir>/<node-name>/<nukleus>/control` and reads the
//! counters region, which costs the server nothing. `--admin-addr` (or
//! `--cookie`) selects the admin API's `GET /stats` instead; with neither,
//! the admin API is the fallback when no counters file exists.
//!
//! Precedence for every setting: flag, then the server's config file
//! (`-c`), then the built-in default — the same defaults the server uses.

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use webrocket::config::{units, Config, ConfigLoadError};

/// The default admin endpoint (the server's `admin_addr` default).
pub const DEFAULT_ADMIN_ADDR: &str = "127.0.0.1:8082";

/// The environment variable that carries the node cookie.
pub const COOKIE_ENV: &str = "WEBROCKET_COOKIE";

/// Flags of `webrocket-monitor`.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "webrocket-monitor",
    version,
    about = "Live statistics of a webrocket node",
    after_help = "Keys in the terminal UI: q, Esc or Ctrl-C quit."
)]
pub struct Args {
    /// The server's configuration file: run_dir, node_name, admin_addr and
    /// storage_dir are read from it (flags still win).
    #[arg(short = 'c', long = "config", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// The server's run directory (its --run-dir / server.run_dir); the
    /// node's files are in <DIR>/<node-name>.
    #[arg(long, value_name = "DIR")]
    pub run_dir: Option<PathBuf>,
    /// The node's name (default webrocket).
    #[arg(long, value_name = "NAME")]
    pub node_name: Option<String>,
    /// The node's own directory, <run-dir>/<node-name>, given directly (the
    /// run_dir= field of the server's ready line); wins over --run-dir.
    #[arg(long, value_name = "DIR")]
    pub node_dir: Option<PathBuf>,
    /// Read GET /stats from the admin API at HOST:PORT instead of the
    /// counters files.
    #[arg(long, value_name = "HOST:PORT")]
    pub admin_addr: Option<String>,
    /// The node cookie for the admin API (implies the admin API).
    #[arg(long, env = COOKIE_ENV, value_name = "COOKIE", hide_env_values = true)]
    pub cookie: Option<String>,
    /// Where the node cookie file <DIR>/<node-name>.cookie is (default ./data).
    #[arg(long, value_name = "DIR")]
    pub storage_dir: Option<PathBuf>,
    /// Time between samples, and the interval --once measures rates over.
    #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = parse_interval)]
    pub interval: Duration,
    /// Print one snapshot (two samples one interval apart) and exit.
    #[arg(long)]
    pub once: bool,
    /// Print JSON: one document with --once, else one line per interval.
    #[arg(long)]
    pub json: bool,
}

fn parse_interval(text: &str) -> Result<Duration, String> {
    let interval = units::parse_duration(text).map_err(|e| e.to_string())?;
    if interval < Duration::from_millis(10) {
        return Err("the interval must be at least 10ms".to_owned());
    }
    Ok(interval)
}

/// Which admin endpoint to ask and how to authenticate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminTarget {
    /// `HOST:PORT`.
    pub addr: String,
    /// The cookie given on the command line or in the environment.
    pub cookie: Option<String>,
    /// The cookie file to read when no cookie was given.
    pub cookie_file: PathBuf,
}

/// What to watch, after flags, config file and defaults are combined.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The node's name.
    pub node_name: String,
    /// `<run_dir>/<node_name>`: where the control files are.
    pub node_dir: PathBuf,
    /// The admin endpoint.
    pub admin: AdminTarget,
    /// True when the flags ask for the admin API only.
    pub admin_only: bool,
}

impl Args {
    /// Combines the flags with the config file (if `-c` was given) and the
    /// server's defaults.
    pub fn target(&self) -> Result<Target, ConfigLoadError> {
        let config = match &self.config {
            Some(path) => Some(Config::load(path)?),
            None => None,
        };
        Ok(self.target_with(config.as_ref()))
    }

    /// [`Args::target`] with the config already loaded.
    pub fn target_with(&self, config: Option<&Config>) -> Target {
        let server = config.map(|c| &c.server);
        // A node directory is <run_dir>/<node_name>, so its last component
        // is the name unless one is given.
        let dir_name = self
            .node_dir
            .as_ref()
            .and_then(|dir| dir.file_name())
            .map(|name| name.to_string_lossy().into_owned());
        let node_name = self
            .node_name
            .clone()
            .or(dir_name)
            .or_else(|| server.map(|s| s.node_name.as_str().to_owned()))
            .unwrap_or_else(|| "webrocket".to_owned());
        let run_dir = self
            .run_dir
            .clone()
            .or_else(|| server.and_then(|s| s.run_dir.clone()))
            .unwrap_or_else(webrocket::config::default_run_dir);
        let node_dir = self
            .node_dir
            .clone()
            .unwrap_or_else(|| run_dir.join(&node_name));
        let addr = self
            .admin_addr
            .clone()
            .or_else(|| server.map(|s| s.admin_addr.to_string()))
            .unwrap_or_else(|| DEFAULT_ADMIN_ADDR.to_owned());
        let storage_dir = self
            .storage_dir
            .clone()
            .or_else(|| server.map(|s| s.storage_dir.clone()))
            .unwrap_or_else(|| PathBuf::from("./data"));
        let cookie = self.cookie.clone().filter(|c| !c.is_empty());
        Target {
            admin_only: self.admin_addr.is_some() || cookie.is_some(),
            admin: AdminTarget {
                addr,
                cookie,
                cookie_file: storage_dir.join(format!("{node_name}.cookie")),
            },
            node_name,
            node_dir,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn parse(argv: &[&str]) -> Args {
        let argv = std::iter::once("webrocket-monitor").chain(argv.iter().copied());
        Args::try_parse_from(argv).unwrap()
    }

    #[test]
    fn clap_definition_is_consistent() {
        Args::command().debug_assert();
    }

    #[test]
    fn defaults_follow_the_server() {
        let args = parse(&[]);
        assert_eq!(args.interval, Duration::from_secs(1));
        assert!(!args.once && !args.json);
        let target = args.target_with(None);
        assert_eq!(target.node_name, "webrocket");
        assert_eq!(
            target.node_dir,
            webrocket::config::default_run_dir().join("webrocket")
        );
        assert_eq!(target.admin.addr, DEFAULT_ADMIN_ADDR);
        assert_eq!(
            target.admin.cookie_file,
            PathBuf::from("./data/webrocket.cookie")
        );
        // The cookie may come from the environment of whoever runs the tests.
        assert_eq!(target.admin_only, target.admin.cookie.is_some());
    }

    #[test]
    fn run_dir_and_node_name_make_the_node_dir() {
        let target =
            parse(&["--run-dir", "/run/wr", "--node-name", "n2", "--cookie", ""]).target_with(None);
        assert_eq!(target.node_dir, PathBuf::from("/run/wr/n2"));
        assert_eq!(target.node_name, "n2");
        assert!(
            !target.admin_only,
            "an empty cookie does not select the admin API"
        );
    }

    #[test]
    fn node_dir_wins_over_run_dir() {
        let target =
            parse(&["--run-dir", "/run/wr", "--node-dir", "/elsewhere/n1"]).target_with(None);
        assert_eq!(target.node_dir, PathBuf::from("/elsewhere/n1"));
        assert_eq!(target.node_name, "n1", "the node dir names the node");
        let target = parse(&["--node-dir", "/elsewhere/n1", "--node-name", "x"]).target_with(None);
        assert_eq!(target.node_name, "x");
    }

    #[test]
    fn admin_flags_select_the_admin_api() {
        let target = parse(&["--admin-addr", "10.0.0.1:9000"]).target_with(None);
        assert!(target.admin_only);
        assert_eq!(target.admin.addr, "10.0.0.1:9000");
        let target = parse(&["--cookie", "abc", "--storage-dir", "/var/lib/wr"]).target_with(None);
        assert!(target.admin_only);
        assert_eq!(target.admin.cookie.as_deref(), Some("abc"));
        assert_eq!(
            target.admin.cookie_file,
            PathBuf::from("/var/lib/wr/webrocket.cookie")
        );
    }

    #[test]
    fn the_config_file_fills_what_flags_leave_open() {
        let config = Config::parse(
            "[server]\nnode_name = \"n7\"\nrun_dir = \"/run/x\"\n\
             admin_addr = \"127.0.0.1:9999\"\nstorage_dir = \"/srv/wr\"\n",
        )
        .unwrap();
        let target = parse(&["--cookie", ""]).target_with(Some(&config));
        assert_eq!(target.node_dir, PathBuf::from("/run/x/n7"));
        assert_eq!(target.admin.addr, "127.0.0.1:9999");
        assert_eq!(target.admin.cookie_file, PathBuf::from("/srv/wr/n7.cookie"));
        let target = parse(&["--node-name", "n8", "--cookie", ""]).target_with(Some(&config));
        assert_eq!(target.node_dir, PathBuf::from("/run/x/n8"));
    }

    #[test]
    fn intervals_use_the_config_units() {
        assert_eq!(
            parse(&["--interval", "250ms"]).interval,
            Duration::from_millis(250)
        );
        assert_eq!(
            parse(&["--interval", "2s"]).interval,
            Duration::from_secs(2)
        );
        for bad in ["0", "5ms", "fast", "1x"] {
            let argv = ["webrocket-monitor", "--interval", bad];
            assert!(Args::try_parse_from(argv).is_err(), "{bad}");
        }
    }
}
