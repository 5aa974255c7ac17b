//! What the monitor shows, as rows of text: built once from a snapshot and
//! drawn by both the plain-text report and the terminal UI, so the two never
//! disagree.
//!
//! Pure: no I/O.

use std::collections::{BTreeMap, BTreeSet};

use webrocket::protocol::CloseReason;

use crate::format;
use crate::snapshot::{split_vhost_label, Kind, Metric, Snapshot, BROKER_PREFIX};

/// Broker counters shown as traffic: `(name, label, is bytes)`.
const TRAFFIC: [(&str, &str, bool); 7] = [
    ("messages_in", "messages in", false),
    ("messages_out", "messages out", false),
    ("bytes_in", "bytes in", true),
    ("bytes_out", "bytes out", true),
    ("broadcasts", "broadcasts", false),
    ("deliveries", "deliveries", false),
    ("directs", "direct messages", false),
];

/// Broker gauges and session counters.
const SESSIONS: [(&str, &str); 6] = [
    ("sessions", "sessions"),
    ("subscriptions", "subscriptions"),
    ("channels", "channels"),
    ("sessions_opened", "sessions opened"),
    ("sessions_refused", "sessions refused"),
    ("slow_consumers", "slow consumers"),
];

/// Backend metrics: ready workers (when the source publishes them) and
/// triggers handed to them.
const BACKEND: [(&str, &str); 2] = [("workers", "ready workers"), ("triggers", "triggers")];

/// Per-vhost columns, in display order.
pub const VHOST_COLUMNS: [&str; 5] = [
    "sessions",
    "authenticated",
    "users",
    "channels",
    "subscriptions",
];

/// Families shown as their own tables.
const FAMILIES: [&str; 2] = ["closes", "errors"];

/// Which node is watched and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeInfo {
    /// The node's name.
    pub name: String,
    /// Where the numbers come from, e.g. `files /dev/shm/webrocket/n1`.
    pub source: String,
}

/// A metric as text: its total and its rate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    /// What it is.
    pub name: String,
    /// The current value.
    pub total: String,
    /// Per second, or empty for gauges.
    pub rate: String,
}

/// One vhost's gauges, in [`VHOST_COLUMNS`] order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VhostRow {
    /// The vhost path.
    pub path: String,
    /// Values by column.
    pub values: Vec<String>,
}

/// One node of the cluster panel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeRow {
    /// Node name.
    pub name: String,
    /// `this node` or the peer's state.
    pub role: String,
    /// Open sessions on this node; for a peer, the message rates to and
    /// from it.
    pub detail: String,
}

/// Everything on one screen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct View {
    /// Node, source and sampling interval.
    pub title: String,
    /// Messages and bytes.
    pub traffic: Vec<Row>,
    /// Sessions, subscriptions, channels and session counters.
    pub sessions: Vec<Row>,
    /// Workers and triggers.
    pub backend: Vec<Row>,
    /// Per-vhost gauges (empty when the source has none).
    pub vhosts: Vec<VhostRow>,
    /// Sessions closed, by reason, only reasons seen.
    pub closes: Vec<Row>,
    /// Error replies, by id, only ids seen.
    pub errors: Vec<Row>,
    /// The cluster: this node, then its peers.
    pub nodes: Vec<NodeRow>,
    /// Labels published that no panel above shows.
    pub other: Vec<Row>,
}

impl View {
    /// Lays out `snapshot` of `node`.
    pub fn build(snapshot: &Snapshot, node: &NodeInfo) -> View {
        let interval = snapshot.interval.map_or_else(
            || "first sample".to_owned(),
            |i| format!("rates over {:.2}s", i.as_secs_f64()),
        );
        View {
            title: format!("node {}  |  {}  |  {interval}", node.name, node.source),
            traffic: TRAFFIC
                .iter()
                .map(|&(key, label, is_bytes)| row(snapshot, key, label, is_bytes))
                .collect(),
            sessions: SESSIONS
                .iter()
                .map(|&(key, label)| row(snapshot, key, label, false))
                .collect(),
            backend: BACKEND
                .iter()
                .map(|&(key, label)| row(snapshot, key, label, false))
                .collect(),
            vhosts: vhost_rows(snapshot),
            closes: seen(snapshot, "closes", close_name),
            errors: seen(snapshot, "errors", str::to_owned),
            nodes: std::iter::once(NodeRow {
                name: node.name.clone(),
                role: "this node".to_owned(),
                detail: format!(
                    "sessions {}{}",
                    snapshot
                        .value("sessions")
                        .map_or_else(|| format::MISSING.to_owned(), format::count),
                    raft_detail(snapshot)
                ),
            })
            .chain(peer_rows(snapshot))
            .collect(),
            other: other_rows(snapshot),
        }
    }
}

/// The row of broker metric `key`, shown as `label`.
fn row(snapshot: &Snapshot, key: &str, label: &str, is_bytes: bool) -> Row {
    let Some(metric) = snapshot.get(key) else {
        return Row {
            name: label.to_owned(),
            total: format::MISSING.to_owned(),
            rate: format::MISSING.to_owned(),
        };
    };
    let (total, rate) = if is_bytes {
        (
            format::bytes(metric.value as f64),
            format::byte_rate(metric.rate),
        )
    } else {
        (format::count(metric.value), format::rate(metric.rate))
    };
    // A gauge has no rate; a counter without one yet shows the marker.
    let is_gauge = Kind::of(key) == Kind::Gauge;
    Row {
        name: label.to_owned(),
        total,
        rate: if is_gauge { String::new() } else { rate },
    }
}

/// Members of `family` with a non-zero total, busiest first.
fn seen(snapshot: &Snapshot, family: &str, name: impl Fn(&str) -> String) -> Vec<Row> {
    let mut members: Vec<(String, Metric)> = snapshot
        .family(family)
        .into_iter()
        .filter(|(_, m)| m.value != 0)
        .collect();
    members.sort_by(|a, b| b.1.value.cmp(&a.1.value).then_with(|| a.0.cmp(&b.0)));
    members
        .into_iter()
        .map(|(member, metric)| Row {
            name: name(&member),
            total: format::count(metric.value),
            rate: format::rate(metric.rate),
        })
        .collect()
}

/// `slow_consumer (1008)`: the close code next to a known reason.
fn close_name(label: &str) -> String {
    match CloseReason::ALL.iter().find(|r| r.label() == label) {
        Some(reason) => format!("{label} ({})", reason.code()),
        None => label.to_owned(),
    }
}

fn vhost_rows(snapshot: &Snapshot) -> Vec<VhostRow> {
    snapshot
        .vhosts()
        .into_iter()
        .map(|(path, metrics)| VhostRow {
            path,
            values: VHOST_COLUMNS
                .iter()
                .map(|column| {
                    metrics
                        .get(*column)
                        .map_or_else(|| format::MISSING.to_owned(), |m| format::count(m.value))
                })
                .collect(),
        })
        .collect()
}

/// Prefix of the per-peer counters a clustered node publishes:
/// `cluster.peer.<name>.{up,messages_in,messages_out,bytes_in,bytes_out,interest,lag}`.
const PEER_PREFIX: &str = "cluster.peer.";
/// Prefix of the replicated log's gauges: `cluster.raft.{leader,term,
/// last_log,applied}`.
const RAFT_PREFIX: &str = "cluster.raft.";

/// `  raft leader term 3 log 41 applied 41` for a clustered node.
fn raft_detail(snapshot: &Snapshot) -> String {
    let Some(leader) = snapshot.value("cluster.raft.leader") else {
        return String::new();
    };
    let value = |name: &str| {
        snapshot
            .value(name)
            .map_or_else(|| format::MISSING.to_owned(), format::count)
    };
    format!(
        "  raft {} term {} log {} applied {}",
        if leader == 1 { "leader" } else { "follower" },
        value("cluster.raft.term"),
        value("cluster.raft.last_log"),
        value("cluster.raft.applied"),
    )
}

/// One row per cluster peer: its state and the message rates each way,
/// and, on the raft leader, how many log entries it is behind.
fn peer_rows(snapshot: &Snapshot) -> Vec<NodeRow> {
    let leading = snapshot.value("cluster.raft.leader") == Some(1);
    let mut peers: BTreeMap<&str, BTreeMap<&str, &Metric>> = BTreeMap::new();
    for (label, metric) in &snapshot.metrics {
        let Some((name, what)) = label
            .strip_prefix(PEER_PREFIX)
            .and_then(|rest| rest.rsplit_once('.'))
        else {
            continue;
        };
        peers.entry(name).or_default().insert(what, metric);
    }
    peers
        .into_iter()
        .map(|(name, metrics)| {
            let rate = |what: &str| format::rate(metrics.get(what).and_then(|m| m.rate));
            NodeRow {
                name: name.to_owned(),
                role: match metrics.get("up").map(|m| m.value) {
                    Some(1) => "up".to_owned(),
                    Some(_) => "down".to_owned(),
                    None => format::MISSING.to_owned(),
                },
                detail: match metrics.get("lag").filter(|_| leading) {
                    Some(lag) => format!(
                        "in {} out {}  lag {}",
                        rate("messages_in"),
                        rate("messages_out"),
                        format::count(lag.value)
                    ),
                    None => format!("in {} out {}", rate("messages_in"), rate("messages_out")),
                },
            }
        })
        .collect()
}

/// Labels that none of the panels shows, so nothing published is hidden.
fn other_rows(snapshot: &Snapshot) -> Vec<Row> {
    let shown: BTreeSet<&str> = TRAFFIC
        .iter()
        .map(|t| t.0)
        .chain(SESSIONS.iter().map(|s| s.0))
        .chain(BACKEND.iter().map(|b| b.0))
        .collect();
    snapshot
        .metrics
        .iter()
        .filter(|(label, _)| {
            let name = label.strip_prefix(BROKER_PREFIX).unwrap_or(label);
            let in_family = FAMILIES.iter().any(|f| {
                name.strip_prefix(f)
                    .is_some_and(|rest| rest.starts_with('.'))
            });
            !shown.contains(name)
                && !in_family
                && split_vhost_label(label).is_none()
                && !label.starts_with(PEER_PREFIX)
                && !label.starts_with(RAFT_PREFIX)
        })
        .map(|(label, metric)| Row {
            name: label.clone(),
            total: format::count(metric.value),
            rate: metric
                .rate
                .map_or_else(String::new, |r| format::rate(Some(r))),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sample::{Sample, Values};
    use std::time::{Duration, Instant};

    fn node() -> NodeInfo {
        NodeInfo {
            name: "n1".to_owned(),
            source: "files /run/n1".to_owned(),
        }
    }

    fn snapshot(older: &[(&str, i64)], newer: &[(&str, i64)]) -> Snapshot {
        let t0 = Instant::now();
        let values = |pairs: &[(&str, i64)]| -> Values {
            pairs.iter().map(|(l, v)| ((*l).to_owned(), *v)).collect()
        };
        Snapshot::between(
            &Sample::new(t0, values(older)),
            &Sample::new(t0 + Duration::from_secs(1), values(newer)),
        )
    }

    fn find<'a>(rows: &'a [Row], name: &str) -> &'a Row {
        rows.iter()
            .find(|r| r.name == name)
            .unwrap_or_else(|| panic!("no row {name} in {rows:?}"))
    }

    #[test]
    fn the_raft_leader_shows_its_log_and_each_peers_lag() {
        let sample = [
            ("broker.sessions", 1),
            ("cluster.raft.leader", 1),
            ("cluster.raft.term", 3),
            ("cluster.raft.last_log", 41),
            ("cluster.raft.applied", 40),
            ("cluster.peer.n2.up", 1),
            ("cluster.peer.n2.lag", 5),
        ];
        let view = View::build(&snapshot(&sample, &sample), &node());
        assert_eq!(
            view.nodes[0].detail,
            "sessions 1  raft leader term 3 log 41 applied 40"
        );
        assert!(
            view.nodes[1].detail.ends_with("  lag 5"),
            "{:?}",
            view.nodes[1]
        );
        assert!(view
            .other
            .iter()
            .all(|r| !r.name.starts_with("cluster.raft.")));
        // A follower's old lag counters are not shown: only the leader knows.
        let follower = [("cluster.raft.leader", 0), ("cluster.peer.n2.lag", 5)];
        let view = View::build(&snapshot(&follower, &follower), &node());
        assert!(view.nodes[0].detail.contains("raft follower"));
        assert!(!view.nodes[1].detail.contains("lag"), "{:?}", view.nodes[1]);
    }

    #[test]
    fn cluster_peers_are_listed_with_state_and_rates() {
        let before = [
            ("broker.sessions", 2),
            ("cluster.peer.n2.up", 1),
            ("cluster.peer.n2.messages_in", 0),
            ("cluster.peer.n2.messages_out", 0),
            ("cluster.peer.n3.up", 0),
        ];
        let after = [
            ("broker.sessions", 2),
            ("cluster.peer.n2.up", 1),
            ("cluster.peer.n2.messages_in", 40),
            ("cluster.peer.n2.messages_out", 20),
            ("cluster.peer.n3.up", 0),
        ];
        let view = View::build(&snapshot(&before, &after), &node());
        let names: Vec<&str> = view.nodes.iter().map(|n| n.name.as_str()).collect();
        assert_eq!(names, ["n1", "n2", "n3"]);
        assert_eq!(view.nodes[0].detail, "sessions 2");
        assert_eq!(view.nodes[1].role, "up");
        assert_eq!(view.nodes[1].detail, "in 40.0/s out 20.0/s");
        assert_eq!(view.nodes[2].role, "down");
        assert!(
            view.other
                .iter()
                .all(|r| !r.name.starts_with("cluster.peer.")),
            "peer counters are not repeated: {:?}",
            view.other
        );
    }

    #[test]
    fn traffic_rows_show_totals_and_rates() {
        let snap = snapshot(
            &[("broker.messages_in", 100), ("broker.bytes_out", 0)],
            &[("broker.messages_in", 1100), ("broker.bytes_out", 2048)],
        );
        let view = View::build(&snap, &node());
        let messages = find(&view.traffic, "messages in");
        assert_eq!(messages.total, "1,100");
        assert_eq!(messages.rate, "1000/s");
        let bytes = find(&view.traffic, "bytes out");
        assert_eq!(bytes.total, "2.0 KiB");
        assert_eq!(bytes.rate, "2.0 KiB/s");
        let missing = find(&view.traffic, "direct messages");
        assert_eq!((missing.total.as_str(), missing.rate.as_str()), ("-", "-"));
    }

    #[test]
    fn gauges_have_no_rate_column() {
        let snap = snapshot(&[("broker.sessions", 1)], &[("broker.sessions", 4)]);
        let view = View::build(&snap, &node());
        let sessions = find(&view.sessions, "sessions");
        assert_eq!(sessions.total, "4");
        assert_eq!(sessions.rate, "");
        assert_eq!(view.nodes[0].detail, "sessions 4");
        assert_eq!(view.nodes[0].role, "this node");
        assert_eq!(view.nodes[0].name, "n1");
    }

    #[test]
    fn closes_and_errors_list_only_what_happened_busiest_first() {
        let snap = snapshot(
            &[],
            &[
                ("broker.closes.client_closed", 3),
                ("broker.closes.slow_consumer", 5),
                ("broker.closes.idle", 0),
                ("broker.errors.ACCESS_DENIED", 2),
                ("broker.errors.UNDEFINED_EVENT", 0),
            ],
        );
        let view = View::build(&snap, &node());
        let closes: Vec<_> = view.closes.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(closes, ["slow_consumer (1008)", "client_closed (1000)"]);
        assert_eq!(view.errors.len(), 1);
        assert_eq!(view.errors[0].name, "ACCESS_DENIED");
        assert_eq!(view.errors[0].rate, "2.0/s");
    }

    #[test]
    fn vhost_rows_follow_the_columns() {
        let snap = snapshot(
            &[],
            &[
                ("broker.vhosts./chat.sessions", 2),
                ("broker.vhosts./chat.subscriptions", 3),
            ],
        );
        let view = View::build(&snap, &node());
        assert_eq!(view.vhosts.len(), 1);
        assert_eq!(view.vhosts[0].path, "/chat");
        assert_eq!(view.vhosts[0].values, ["2", "-", "-", "-", "3"]);
    }

    #[test]
    fn unknown_labels_land_in_other() {
        let snap = snapshot(
            &[("tcp.accepted", 1)],
            &[
                ("tcp.accepted", 3),
                ("broker.messages_in", 1),
                ("broker.errors.ACCESS_DENIED", 1),
                ("broker.vhosts./chat.sessions", 1),
                ("uptime_seconds", 9),
            ],
        );
        let view = View::build(&snap, &node());
        let names: Vec<_> = view.other.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["tcp.accepted", "uptime_seconds"]);
        assert_eq!(view.other[0].rate, "2.0/s");
    }

    #[test]
    fn title_names_node_source_and_interval() {
        let snap = snapshot(&[], &[]);
        let view = View::build(&snap, &node());
        assert_eq!(view.title, "node n1  |  files /run/n1  |  rates over 1.00s");
        let first = View::build(&Snapshot::default(), &node());
        assert!(first.title.ends_with("first sample"), "{}", first.title);
    }
}
