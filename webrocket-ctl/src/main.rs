//! webrocket-ctl: administers a webrocket node through its admin HTTP
//! endpoint (vhosts, channels, users, workers, nodes).
//!
//! Exit codes: 0 done, 1 the server refused (its message on stderr),
//! 2 usage (bad arguments, no cookie, unreadable secret), 3 the admin
//! endpoint could not be reached.

mod client;
mod commands;
mod output;
mod secret;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use webrocket::config::Config;
use webrocket::name::NodeName;

use client::{Client, CtlError};
use commands::Command;

/// Administers a webrocket node: vhosts, channels, users, workers, nodes.
///
/// The node cookie is found in <storage-dir>/<node-name>.cookie when run on
/// the node's machine, or given with --cookie / WEBROCKET_COOKIE.
#[derive(Debug, Parser)]
// A flag given twice takes the last value, so wrappers can override.
#[command(name = "webrocket-ctl", version, about, long_about = None, args_override_self = true)]
struct Cli {
    /// The node's admin endpoint.
    #[arg(
        long,
        global = true,
        value_name = "HOST:PORT",
        default_value = "127.0.0.1:8082"
    )]
    admin_addr: String,
    /// The node cookie (40 hex characters).
    #[arg(long, global = true, env = "WEBROCKET_COOKIE", hide_env_values = true)]
    cookie: Option<String>,
    /// The node's storage directory, to read the cookie from [default: the
    /// server's, ./data].
    #[arg(long, global = true, value_name = "DIR")]
    storage_dir: Option<PathBuf>,
    /// The node's name, which names its cookie file [default: webrocket].
    #[arg(long, global = true, value_name = "NAME")]
    node_name: Option<NodeName>,
    /// Print the server's JSON answer instead of text.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

impl Cli {
    /// The cookie from the flag or environment, else from the cookie file.
    fn cookie(&self) -> Result<String, CtlError> {
        if let Some(cookie) = &self.cookie {
            return Ok(cookie.trim().to_owned());
        }
        let defaults = Config::default().server;
        let dir = self.storage_dir.clone().unwrap_or(defaults.storage_dir);
        let node = self.node_name.clone().unwrap_or(defaults.node_name);
        webrocket::storage::read_cookie(&dir, &node).map_err(|e| {
            let path = dir.join(format!("{node}.cookie"));
            CtlError::Usage(format!(
                "cannot read the node cookie {}: {e} (use --storage-dir and --node-name, \
                 --cookie, or WEBROCKET_COOKIE)",
                path.display()
            ))
        })
    }
}

fn run(cli: &Cli) -> Result<String, CtlError> {
    let cookie = cli.cookie()?;
    let request = cli.command.request()?;
    let client = Client::new(&cli.admin_addr, cookie);
    let answer = client.call(request.method, &request.path, request.body.as_ref())?;
    if cli.json {
        let text = serde_json::to_string_pretty(&answer).unwrap_or_else(|_| answer.to_string());
        Ok(format!("{text}\n"))
    } else {
        Ok(output::human(&cli.command, &answer))
    }
}

fn main() -> ExitCode {
    // clap prints usage errors itself and exits with 2 (0 for --help).
    let cli = Cli::parse();
    match run(&cli) {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("webrocket-ctl: {error}");
            ExitCode::from(error.exit_code())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn global_flags_go_before_or_after_the_command() {
        let cli = Cli::try_parse_from([
            "webrocket-ctl",
            "--json",
            "add_user",
            "/chat",
            "alice",
            "READ|WRITE",
            "--admin-addr",
            "127.0.0.1:9",
        ])
        .unwrap();
        assert!(cli.json);
        assert_eq!(cli.admin_addr, "127.0.0.1:9");
        assert!(matches!(cli.command, Command::AddUser { .. }));
    }

    #[test]
    fn two_word_flags_are_kebab_case_and_repeats_override() {
        let cli = Cli::try_parse_from([
            "webrocket-ctl",
            "--admin-addr",
            "127.0.0.1:1",
            "add_vhost",
            "/chat",
            "--no-auto-create",
            "--anonymous",
            "READ",
            "--admin-addr",
            "127.0.0.1:2",
        ])
        .unwrap();
        assert_eq!(cli.admin_addr, "127.0.0.1:2");
        let Command::AddVhost {
            no_auto_create,
            anonymous,
            ..
        } = cli.command
        else {
            panic!("not add_vhost: {:?}", cli.command);
        };
        assert!(no_auto_create);
        assert_eq!(anonymous, Some(webrocket::name::Permissions::READ));
        let with_secret = [
            "webrocket-ctl",
            "add_user",
            "/c",
            "a",
            "READ",
            "--no-secret",
        ];
        assert!(Cli::try_parse_from(with_secret).is_ok());
        let both = [
            "webrocket-ctl",
            "add_user",
            "/c",
            "a",
            "READ",
            "--no-secret",
            "--secret",
            "x",
        ];
        assert_eq!(Cli::try_parse_from(both).unwrap_err().exit_code(), 2);
    }

    #[test]
    fn bad_names_are_usage_errors() {
        for args in [
            &["webrocket-ctl", "add_vhost", "chat"][..],
            &["webrocket-ctl", "add_channel", "/chat", ".bad"],
            &["webrocket-ctl", "add_user", "/chat", "alice", "FLY"],
            &["webrocket-ctl", "no_such_command"],
            &["webrocket-ctl", "delete_vhost"],
        ] {
            let error = Cli::try_parse_from(args).unwrap_err();
            assert_eq!(error.exit_code(), 2, "{args:?}");
        }
    }

    #[test]
    fn a_missing_cookie_file_is_a_usage_error() {
        let dir = std::env::temp_dir().join("webrocket-ctl-no-such-dir");
        let cli = Cli::try_parse_from([
            "webrocket-ctl",
            "list_vhosts",
            "--storage-dir",
            dir.to_str().unwrap(),
        ])
        .unwrap();
        if cli.cookie.is_none() {
            let error = cli.cookie().unwrap_err();
            assert_eq!(error.exit_code(), 2);
            assert!(error.to_string().contains("webrocket.cookie"), "{error}");
        }
    }
}
