//! `/stats` (JSON, for webrocket-monitor and scripts) and `/metrics`
//! (Prometheus). Both read the counters every nukleus of this node
//! publishes in its control file, `<run_dir>/<nukleus>/control`, which costs
//! the data path nothing, the backend exchange's counters (`exchange.*`,
//! when one is plugged in), and what the durable state says per vhost.
//!
//! `/stats` answers:
//!
//! ```json
//! {"node": "webrocket", "uptime_seconds": 42,
//!  "counters": {"broker.sessions": 3, "broker.errors.ACCESS_DENIED": 1, ...},
//!  "vhosts": [{"path": "/chat", "users": 2, "channels": 5}],
//!  "totals": {"vhosts": 1, "users": 2, "channels": 5}}
//! ```

use std::collections::BTreeMap;
use std::path::Path;

use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::Json;
use serde::Serialize;
use serde_json::{json, Value};

use super::error::ApiError;
use super::{prometheus, ApiState};
use crate::storage::State as Durable;
use crate::stream::ControlClient;

/// Every counter of every nukleus under `run_dir`, by label. A nukleus
/// whose control file cannot be read (gone, being recreated) is left out.
/// Labels are unique per nukleus (they carry its prefix); should two
/// nuklei use one label, the later one is keyed `<nukleus>/<label>`.
pub fn read_counters(run_dir: &Path) -> BTreeMap<String, i64> {
    let mut counters = BTreeMap::new();
    let Ok(entries) = std::fs::read_dir(run_dir) else {
        return counters;
    };
    let mut nuklei: Vec<_> = entries.flatten().map(|entry| entry.path()).collect();
    nuklei.sort();
    for dir in nuklei {
        let control = dir.join("control");
        if !control.is_file() {
            continue;
        }
        let client = match ControlClient::open(&control) {
            Ok(client) => client,
            Err(error) => {
                tracing::debug!(path = %control.display(), %error, "counters not readable");
                continue;
            }
        };
        let nukleus = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        client.counters.for_each(|_, label, value| {
            if counters.contains_key(label) {
                counters.insert(format!("{nukleus}/{label}"), value);
            } else {
                counters.insert(label.to_owned(), value);
            }
        });
    }
    counters
}

/// Per-vhost sizes from the durable state.
#[derive(Debug, Serialize)]
struct VhostSizes {
    path: String,
    users: usize,
    channels: usize,
}

fn vhost_sizes(state: &Durable) -> Vec<VhostSizes> {
    state
        .vhosts
        .iter()
        .map(|(path, record)| VhostSizes {
            path: path.to_string(),
            users: record.users.len(),
            channels: record.channels.len(),
        })
        .collect()
}

/// Counters and per-vhost sizes, read on the blocking pool (files, lock).
async fn snapshot(api: &ApiState) -> Result<(BTreeMap<String, i64>, Vec<VhostSizes>), ApiError> {
    let workers = api.node.workers.clone();
    api.blocking(move |node| {
        let mut counters = read_counters(node.data_path.run_dir());
        if let Some(directory) = workers {
            counters.extend(directory.counters());
        }
        let vhosts = node.changes.with_state(vhost_sizes);
        Ok((counters, vhosts))
    })
    .await
}

pub(super) async fn stats(State(api): State<ApiState>) -> Result<Json<Value>, ApiError> {
    let (counters, vhosts) = snapshot(&api).await?;
    let users: usize = vhosts.iter().map(|v| v.users).sum();
    let channels: usize = vhosts.iter().map(|v| v.channels).sum();
    Ok(Json(json!({
        "node": api.node.config.server.node_name,
        "uptime_seconds": api.started.elapsed().as_secs(),
        "counters": counters,
        "totals": {"vhosts": vhosts.len(), "users": users, "channels": channels},
        "vhosts": vhosts,
    })))
}

pub(super) async fn metrics(State(api): State<ApiState>) -> Result<impl IntoResponse, ApiError> {
    let (counters, vhosts) = snapshot(&api).await?;
    let sum = |f: fn(&VhostSizes) -> usize| vhosts.iter().map(f).sum::<usize>() as i64;
    let derived = [
        (
            "node.uptime_seconds",
            api.started.elapsed().as_secs() as i64,
        ),
        ("storage.vhosts", vhosts.len() as i64),
        ("storage.users", sum(|v| v.users)),
        ("storage.channels", sum(|v| v.channels)),
    ];
    let samples = counters
        .iter()
        .map(|(label, &value)| (label.as_str(), value))
        .chain(derived);
    let text = prometheus::render(samples);
    Ok(([(CONTENT_TYPE, prometheus::CONTENT_TYPE)], text))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stream::{ControlFile, ControlLayout};

    #[test]
    fn counters_of_every_nukleus_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let broker = ControlFile::create(
            &dir.path().join("webrocket/control"),
            ControlLayout::default(),
        )
        .unwrap();
        let sessions = broker.counters.allocate("broker.sessions").unwrap();
        sessions.set(3);
        let other =
            ControlFile::create(&dir.path().join("ws/control"), ControlLayout::default()).unwrap();
        other.counters.allocate("broker.sessions").unwrap().set(7);
        other.counters.allocate("ws.frames").unwrap().set(9);
        std::fs::create_dir(dir.path().join("empty")).unwrap();

        let counters = read_counters(dir.path());
        assert_eq!(counters.get("broker.sessions"), Some(&3));
        assert_eq!(counters.get("ws/broker.sessions"), Some(&7));
        assert_eq!(counters.get("ws.frames"), Some(&9));
        assert_eq!(counters.len(), 3);
    }

    #[test]
    fn a_missing_run_dir_has_no_counters() {
        let dir = tempfile::tempdir().unwrap();
        assert!(read_counters(&dir.path().join("nope")).is_empty());
    }
}
