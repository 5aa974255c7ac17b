//! Checks that need more than one value: duplicates, half-set TLS, listen
//! address clashes, limits that contradict each other. Single values are
//! checked by their types when deserialized.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use argon2::password_hash::PasswordHash;
use serde::{Deserialize, Deserializer};

use super::{Config, ConfigProblem, VhostConfig};

/// Shortest accepted cluster cookie: it is the only thing keeping strangers
/// out of the cluster.
pub(super) const MIN_COOKIE_LEN: usize = 16;

const LOG_LEVELS: [&str; 6] = ["off", "error", "warn", "info", "debug", "trace"];

/// Appends every problem of `config` to `out`.
pub(super) fn config(config: &Config, out: &mut Vec<ConfigProblem>) {
    tls(config, out);
    addresses(config, out);
    backend(config, out);
    cluster(config, out);
    log(config, out);
    for (field, message) in config.limits.problems() {
        out.push(ConfigProblem::new(format!("limits.{field}"), message));
    }
    vhosts(config, out);
}

fn tls(config: &Config, out: &mut Vec<ConfigProblem>) {
    match (&config.tls.cert, &config.tls.key) {
        (Some(_), None) => out.push(ConfigProblem::new(
            "tls.key",
            "missing: tls.cert is set, set tls.key too (or neither)",
        )),
        (None, Some(_)) => out.push(ConfigProblem::new(
            "tls.cert",
            "missing: tls.key is set, set tls.cert too (or neither)",
        )),
        _ => {}
    }
}

/// Two listeners on one address cannot both bind. Port 0 (any free port,
/// used by tests) never clashes.
fn addresses(config: &Config, out: &mut Vec<ConfigProblem>) {
    let server = &config.server;
    let mut listeners: Vec<(&str, SocketAddr)> = vec![
        ("server.websocket_addr", server.websocket_addr),
        ("server.backend_addr", server.backend_addr),
        ("server.admin_addr", server.admin_addr),
    ];
    if let Some(addr) = config.cluster.addr {
        listeners.push(("cluster.addr", addr));
    }
    for (i, (path, addr)) in listeners.iter().enumerate() {
        let clash = listeners[..i].iter().find(|(_, earlier)| {
            addr.port() != 0
                && earlier.port() == addr.port()
                && (earlier.ip() == addr.ip()
                    || earlier.ip().is_unspecified()
                    || addr.ip().is_unspecified())
        });
        if let Some((other, _)) = clash {
            out.push(ConfigProblem::new(
                *path,
                format!("{addr} clashes with {other}"),
            ));
        }
    }
    if server.threads > 1024 {
        out.push(ConfigProblem::new(
            "server.threads",
            format!("{} is more than 1024", server.threads),
        ));
    }
}

fn backend(config: &Config, out: &mut Vec<ConfigProblem>) {
    if config.backend.heartbeat_interval.is_zero() {
        out.push(ConfigProblem::new(
            "backend.heartbeat_interval",
            "must be greater than zero",
        ));
    }
    if config.backend.liveness == 0 {
        out.push(ConfigProblem::new("backend.liveness", "must be at least 1"));
    }
}

fn cluster(config: &Config, out: &mut Vec<ConfigProblem>) {
    let cluster = &config.cluster;
    if !cluster.seeds.is_empty() && cluster.addr.is_none() {
        out.push(ConfigProblem::new(
            "cluster.seeds",
            "seeds are set but cluster.addr is not; set cluster.addr to join a cluster",
        ));
    }
    if cluster.snapshot_every == 0 {
        out.push(ConfigProblem::new(
            "cluster.snapshot_every",
            "must be at least 1",
        ));
    }
    if let Some(cookie) = &cluster.cookie {
        let printable = cookie.chars().all(|c| c.is_ascii_graphic());
        if cookie.len() < MIN_COOKIE_LEN || !printable {
            out.push(ConfigProblem::new(
                "cluster.cookie",
                format!(
                    "must be at least {MIN_COOKIE_LEN} printable ASCII characters without spaces"
                ),
            ));
        }
    }
}

/// Accepts `level` or `target=level` directives separated by commas.
fn log(config: &Config, out: &mut Vec<ConfigProblem>) {
    let level = config.log.level.trim();
    let bad = level.is_empty()
        || level.split(',').any(|directive| {
            let level = directive.rsplit_once('=').map_or(directive, |(_, l)| l);
            !LOG_LEVELS.contains(&level.trim().to_ascii_lowercase().as_str())
        });
    if bad {
        out.push(ConfigProblem::new(
            "log.level",
            format!(
                "invalid filter {:?}: expected a level ({}) or target=level directives",
                config.log.level,
                LOG_LEVELS.join(", ")
            ),
        ));
    }
}

fn vhosts(config: &Config, out: &mut Vec<ConfigProblem>) {
    let limits = &config.limits;
    if config.vhosts.len() > limits.max_vhosts {
        out.push(ConfigProblem::new(
            "vhost",
            format!(
                "{} vhosts, more than limits.max_vhosts ({})",
                config.vhosts.len(),
                limits.max_vhosts
            ),
        ));
    }
    let mut seen = BTreeMap::new();
    for (i, vhost) in config.vhosts.iter().enumerate() {
        if let Some(first) = seen.insert(vhost.path.as_str(), i) {
            out.push(ConfigProblem::new(
                format!("vhost[{i}].path"),
                format!(
                    "duplicate vhost path {:?} (also vhost[{first}])",
                    vhost.path.as_str()
                ),
            ));
        }
        if config.server.echo_path.as_ref() == Some(&vhost.path) {
            out.push(ConfigProblem::new(
                format!("vhost[{i}].path"),
                format!("{:?} is also server.echo_path", vhost.path.as_str()),
            ));
        }
        vhost_contents(config, i, vhost, out);
    }
}

fn vhost_contents(config: &Config, i: usize, vhost: &VhostConfig, out: &mut Vec<ConfigProblem>) {
    let limits = &config.limits;
    if vhost.users.len() > limits.max_users_per_vhost {
        out.push(ConfigProblem::new(
            format!("vhost[{i}].user"),
            format!(
                "more than limits.max_users_per_vhost ({})",
                limits.max_users_per_vhost
            ),
        ));
    }
    if vhost.channels.len() > limits.max_channels_per_vhost {
        out.push(ConfigProblem::new(
            format!("vhost[{i}].channels"),
            format!(
                "more than limits.max_channels_per_vhost ({})",
                limits.max_channels_per_vhost
            ),
        ));
    }
    if vhost.resources.len() > limits.max_resources_per_vhost {
        out.push(ConfigProblem::new(
            format!("vhost[{i}].resource"),
            format!(
                "more than limits.max_resources_per_vhost ({})",
                limits.max_resources_per_vhost
            ),
        ));
    }
    let mut resources = BTreeMap::new();
    for (j, resource) in vhost.resources.iter().enumerate() {
        if let Some(first) = resources.insert(resource.name.as_str(), j) {
            out.push(ConfigProblem::new(
                format!("vhost[{i}].resource[{j}].name"),
                format!(
                    "duplicate resource {:?} (also vhost[{i}].resource[{first}])",
                    resource.name.as_str()
                ),
            ));
        }
        if resource.id_field.is_empty() || resource.id_field.len() > crate::name::MAX_NAME_LEN {
            out.push(ConfigProblem::new(
                format!("vhost[{i}].resource[{j}].id_field"),
                "must be 1 to 255 bytes".to_owned(),
            ));
        }
    }
    let mut users = BTreeMap::new();
    for (j, user) in vhost.users.iter().enumerate() {
        if let Some(first) = users.insert(user.name.as_str(), j) {
            out.push(ConfigProblem::new(
                format!("vhost[{i}].user[{j}].name"),
                format!(
                    "duplicate user {:?} (also vhost[{i}].user[{first}])",
                    user.name.as_str()
                ),
            ));
        }
    }
    for (k, origin) in vhost.allowed_origins.iter().enumerate() {
        if let Some(problem) = origin_problem(origin) {
            out.push(ConfigProblem::new(
                format!("vhost[{i}].allowed_origins[{k}]"),
                problem,
            ));
        }
    }
    let mut channels = BTreeMap::new();
    for (k, channel) in vhost.channels.iter().enumerate() {
        if let Some(first) = channels.insert(channel.as_str(), k) {
            out.push(ConfigProblem::new(
                format!("vhost[{i}].channels[{k}]"),
                format!(
                    "duplicate channel {:?} (also channels[{first}])",
                    channel.as_str()
                ),
            ));
        }
    }
}

/// Why `origin` cannot be an `Origin` header value, if it cannot: it must
/// be `scheme://host[:port]` (or `null`), ASCII without spaces, at most 254
/// bytes (the ws BIND carries it in a frame string).
fn origin_problem(origin: &str) -> Option<String> {
    let shaped = origin == "null"
        || origin.split_once("://").is_some_and(|(scheme, host)| {
            !scheme.is_empty() && !host.is_empty() && !host.contains('/')
        });
    if origin.len() > crate::nukleus::frame::MAX_STRING {
        Some(format!(
            "origin longer than {} bytes",
            crate::nukleus::frame::MAX_STRING
        ))
    } else if !origin.is_ascii()
        || origin
            .chars()
            .any(|c| c.is_ascii_whitespace() || c.is_ascii_control())
    {
        Some(format!("{origin:?} is not an origin (ASCII, no spaces)"))
    } else if !shaped {
        Some(format!(
            "{origin:?} is not an origin: write scheme://host[:port], no path"
        ))
    } else {
        None
    }
}

/// Why `hash` is not an argon2 PHC string, if it is not.
pub fn secret_hash_problem(hash: &str) -> Option<String> {
    match PasswordHash::new(hash) {
        Err(e) => Some(format!("not a PHC hash string ({e})")),
        Ok(parsed) if !parsed.algorithm.as_str().starts_with("argon2") => Some(format!(
            "algorithm {:?} is not argon2id, argon2i or argon2d",
            parsed.algorithm.as_str()
        )),
        Ok(parsed) if parsed.hash.is_none() => Some("has no hash part".to_owned()),
        Ok(_) => None,
    }
}

/// Serde `deserialize_with` for `secret_hash`: an argon2 PHC string.
pub(super) fn secret_hash<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<String>, D::Error> {
    let hash = String::deserialize(deserializer)?;
    match secret_hash_problem(&hash) {
        None => Ok(Some(hash)),
        Some(problem) => Err(serde::de::Error::custom(format!(
            "invalid secret_hash: {problem}; expected an argon2 PHC string like \"$argon2id$v=19$m=19456,t=2,p=1$<salt>$<hash>\""
        ))),
    }
}
