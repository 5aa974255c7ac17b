//! The shipped `etc/webrocket.toml`: it parses, it is `Config::default()`,
//! its commented defaults are the real defaults, and a bad file gets every
//! problem reported at once.

use std::path::Path;

use webrocket::config::{Config, ConfigLoadError, DEFAULT_CONFIG_TOML};
use webrocket::name::Permissions;
use webrocket::storage::verify_secret;

fn shipped_path() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/etc/webrocket.toml"))
}

#[test]
fn the_shipped_file_parses_and_is_the_default() {
    let loaded = Config::load(shipped_path()).unwrap();
    assert_eq!(loaded, Config::default());
    let on_disk = std::fs::read_to_string(shipped_path()).unwrap();
    assert_eq!(
        on_disk, DEFAULT_CONFIG_TOML,
        "the compiled-in copy is current"
    );
}

#[test]
fn the_shipped_file_declares_the_example_vhost() {
    let config = Config::default();
    assert_eq!(config.vhosts.len(), 1);
    let chat = config.vhost("/chat").unwrap();
    assert_eq!(chat.anonymous, Permissions::NONE);
    assert!(chat.auto_create_channels);
    let admin = &chat.users[0];
    assert_eq!(admin.name.as_str(), "admin");
    assert_eq!(admin.permissions, Permissions::ALL);
    let hash = admin.secret_hash.as_deref().unwrap();
    assert!(
        verify_secret(hash, "admin"),
        "the documented example secret"
    );
}

/// Keys whose commented value is an example, not the default.
const EXAMPLE_ONLY: [&str; 9] = [
    "run_dir",
    "echo_path",
    "cert",
    "key",
    "addr",
    "seeds",
    "cookie",
    "channels",
    "allowed_origins",
];

#[test]
fn every_commented_default_is_the_real_default() {
    let mut uncommented = String::new();
    let mut count = 0;
    for line in DEFAULT_CONFIG_TOML.lines() {
        let key = line
            .strip_prefix('#')
            .and_then(|rest| rest.split_once(" = "))
            .map(|(key, _)| key)
            .filter(|key| key.chars().all(|c| c.is_ascii_lowercase() || c == '_'));
        match key {
            Some(key) if !EXAMPLE_ONLY.contains(&key) => {
                uncommented.push_str(&line[1..]);
                count += 1;
            }
            _ => uncommented.push_str(line),
        }
        uncommented.push('\n');
    }
    assert!(count >= 28, "only {count} commented defaults found");
    let config = Config::parse(&uncommented).unwrap();
    assert_eq!(config, Config::default());
}

#[test]
fn every_key_with_a_default_is_documented() {
    let defaults = toml::Value::try_from(Config::parse("").unwrap()).unwrap();
    let sections = defaults.as_table().unwrap();
    let mut missing = Vec::new();
    for (section, table) in sections {
        let Some(table) = table.as_table() else {
            continue; // the (empty) vhost list
        };
        assert!(
            DEFAULT_CONFIG_TOML.contains(&format!("\n[{section}]\n")),
            "[{section}] is not in the shipped file"
        );
        for key in table.keys() {
            if !DEFAULT_CONFIG_TOML.contains(&format!("\n#{key} = ")) {
                missing.push(format!("{section}.{key}"));
            }
        }
    }
    assert!(missing.is_empty(), "undocumented keys: {missing:?}");
}

#[test]
fn example_only_keys_are_valid_when_uncommented() {
    let uncommented: String = DEFAULT_CONFIG_TOML
        .lines()
        .map(|line| match line.strip_prefix('#') {
            Some(rest) if rest.contains(" = ") && !rest.starts_with(' ') => rest,
            _ => line,
        })
        .flat_map(|line| [line, "\n"])
        .collect();
    let config = Config::parse(&uncommented).unwrap();
    assert!(config.cluster.enabled());
    assert!(config.tls.paths().is_some());
    assert_eq!(config.server.echo_path.unwrap().as_str(), "/echo");
    assert_eq!(config.vhosts[0].channels.len(), 2);
}

#[test]
fn a_bad_file_gets_every_problem_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(
        &path,
        r#"
[server]
admin_addr = "localhost"
[limits]
handshake_timeout = "ten seconds"
[tls]
key = "k.pem"
[[vhost]]
path = "/chat"
[[vhost.user]]
name = "x y"
[[vhost]]
path = "/chat"
"#,
    )
    .unwrap();
    let err = Config::load(&path).unwrap_err();
    let ConfigLoadError::Invalid { errors, .. } = &err else {
        panic!("expected Invalid, got {err}");
    };
    let paths: Vec<&str> = errors.0.iter().map(|p| p.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "server.admin_addr",
            "limits.handshake_timeout",
            "vhost[0].user[0].name",
            "tls.cert",
            "vhost[1].path",
        ]
    );
    let text = err.to_string();
    assert!(
        text.contains(r#"vhost[0].user[0].name: invalid user name "x y""#),
        "{text}"
    );
    assert!(text.contains("(line 3, column 14)"), "{text}");
}
