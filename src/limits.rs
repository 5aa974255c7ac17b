//! Every bound the server enforces, in one place.
//!
//! Each bound is a documented `DEFAULT_*` constant, and a field of [`Limits`]
//! (the `[limits]` config section) that overrides it. The reaction when a
//! bound is hit is documented on the constant; the code that enforces it
//! refers back here. Backend heartbeats are configured in `[backend]`, but
//! their defaults live here too so that all numbers are in one file.
//!
//! Pure: no I/O.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::units::{duration, size};

const GIB: usize = 1024 * 1024 * 1024;
const KIB: usize = 1024;
const MIB: usize = 1024 * KIB;

/// Largest client message (one whole WebSocket message, after
/// reassembly and decompression) on a vhost endpoint. Bigger: close 1009.
pub const DEFAULT_MAX_MESSAGE_SIZE: usize = 64 * KIB;

/// Largest single WebSocket frame payload on a vhost endpoint. Bigger:
/// close 1009 before the payload is read.
pub const DEFAULT_MAX_FRAME_SIZE: usize = 64 * KIB;

/// Largest message on the echo endpoint. Autobahn's case group 9 sends
/// messages of up to 16 MiB, so the echo endpoint allows that much.
pub const DEFAULT_ECHO_MAX_MESSAGE_SIZE: usize = 16 * MIB;

/// Largest frame on the echo endpoint; group 9 also sends 16 MiB frames.
pub const DEFAULT_ECHO_MAX_FRAME_SIZE: usize = 16 * MIB;

/// Largest HTTP upgrade request (request line and headers). Bigger: HTTP 431
/// and close.
pub const DEFAULT_MAX_HANDSHAKE_SIZE: usize = 8 * KIB;

/// Time allowed from TCP accept to a complete upgrade request. Slower: the
/// connection is closed without a reply.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// A session that sends nothing (not even a ping or pong) for this long is
/// closed with 1000 and reason "idle". Zero turns the check off.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(300);

/// Open client connections per node, all endpoints together. Above it, new
/// connections are accepted and closed at once (HTTP 503).
pub const DEFAULT_MAX_CONNECTIONS: usize = 100_000;

/// Open sessions per vhost on one node. Above it: HTTP 503 for that vhost.
pub const DEFAULT_MAX_CONNECTIONS_PER_VHOST: usize = 100_000;

/// Channels one session may be subscribed to. Above it: `subscribe` gets an
/// error and the session stays open.
pub const DEFAULT_MAX_SUBSCRIPTIONS_PER_SESSION: usize = 1024;

/// Outbound bytes queued for one connection before it is a slow consumer.
/// A fan-out never waits: it drops the connection (close 1008, reason
/// "slow consumer") and counts it.
pub const DEFAULT_MAX_PENDING_BYTES: usize = MIB;

/// Capacity of each stream ring between nuklei, in bytes. Must be a power of
/// two. A full ring is back-pressure to the writer (`try_claim` says `Full`).
pub const DEFAULT_RING_CAPACITY: usize = 16 * MIB;

/// Channels per vhost. Above it: creating a channel fails (client error or
/// backend `ER 597`).
pub const DEFAULT_MAX_CHANNELS_PER_VHOST: usize = 100_000;

/// Users per vhost. Above it: `add_user` fails.
pub const DEFAULT_MAX_USERS_PER_VHOST: usize = 100_000;

/// Vhosts per node (and cluster, as vhosts are replicated). Above it:
/// `add_vhost` fails.
pub const DEFAULT_MAX_VHOSTS: usize = 10_000;

/// Ready backend workers per vhost on one node. Above it: `RD` gets `ER 403`.
pub const DEFAULT_MAX_WORKERS_PER_VHOST: usize = 1024;

/// Secret checks (argon2, tens of milliseconds each) queued or running at
/// once. Above it an `authenticate` with a secret is answered
/// `INTERNAL_ERROR` ("too busy") at once instead of waiting behind the
/// others; the session stays open and may try again.
pub const DEFAULT_MAX_PENDING_SECRET_CHECKS: usize = 256;

/// MonoRail resources per vhost. Above it: `add_resource` fails (admin 409
/// `LIMIT_REACHED`).
pub const DEFAULT_MAX_RESOURCES_PER_VHOST: usize = 1024;

/// Items of one `store` resource. Above it: putting a new item fails
/// (backend `ER 413`, admin 409 `LIMIT_REACHED`); replacing one still works.
pub const DEFAULT_MAX_ITEMS_PER_RESOURCE: usize = 10_000;

/// Largest item, as JSON text. Bigger: backend `ER 413`, admin 413.
pub const DEFAULT_MAX_ITEM_SIZE: usize = 16 * KIB;

/// MonoRail `watch`es one session holds at once. Above it: the `watch` gets
/// an error message (`TOO_MANY_SUBSCRIPTIONS`) and the session stays open.
pub const DEFAULT_MAX_WATCHES_PER_SESSION: usize = 64;

/// Requests of `backend` resources waiting for a worker's answer, per
/// node. Above it the request gets an error message (`INTERNAL_ERROR`)
/// at once; the session stays open.
pub const DEFAULT_MAX_PENDING_BACKEND_REQUESTS: usize = 4096;

/// How long a `backend` resource's request waits for a worker's answer.
/// Longer: the session gets `ASSIGNATION_FAILED`, and a late answer `ER 404`.
pub const DEFAULT_BACKEND_REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// Largest backend ZeroMQ message (all frames together). Bigger: `ER 400`.
pub const DEFAULT_MAX_BACKEND_MESSAGE_SIZE: usize = MIB;

/// Largest admin HTTP request body. Bigger: HTTP 413.
pub const DEFAULT_MAX_ADMIN_BODY_SIZE: usize = 64 * KIB;

/// How long shutdown waits for sessions to drain before closing the rest.
pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// Interval between heartbeats the server sends to each backend worker
/// (`[backend] heartbeat_interval`).
pub const DEFAULT_HEARTBEAT_INTERVAL: Duration = Duration::from_secs(2);

/// A worker silent for `liveness x heartbeat_interval` is dropped
/// (`[backend] liveness`).
pub const DEFAULT_LIVENESS: u32 = 3;

/// Replicated changes between two snapshots of the cluster's state; as
/// many again are kept in the log for peers slightly behind
/// (`[cluster] snapshot_every`).
pub const DEFAULT_SNAPSHOT_EVERY: u64 = 1000;

/// Bytes of recent messages one channel keeps for recovery (its history,
/// when the channel has one). Beyond it the channel's oldest messages are
/// dropped first, so a client that missed more than this cannot recover
/// (`recovered: false`).
pub const DEFAULT_MAX_HISTORY_BYTES_PER_CHANNEL: usize = MIB;

/// Bytes of history all channels of the node keep together. A message that
/// would pass it first drops the oldest messages of its own channel; if
/// that channel has none left to drop, the message is delivered but not
/// kept, and the channel's history starts again after it (a client that
/// missed it gets `recovered: false`). Counted in `broker.history_dropped`.
pub const DEFAULT_MAX_HISTORY_BYTES: usize = 256 * MIB;

/// Members of one presence channel (per node). A `subscribe` beyond it is
/// answered `TOO_MANY_SUBSCRIPTIONS` and changes nothing.
pub const DEFAULT_MAX_PRESENCE_MEMBERS: usize = 10_000;

/// The `[limits]` config section. Every field defaults to its `DEFAULT_*`
/// constant; sizes accept `"64KiB"` strings, durations `"30s"` strings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// See [`DEFAULT_MAX_MESSAGE_SIZE`].
    #[serde(with = "size")]
    pub max_message_size: usize,
    /// See [`DEFAULT_MAX_FRAME_SIZE`].
    #[serde(with = "size")]
    pub max_frame_size: usize,
    /// See [`DEFAULT_ECHO_MAX_MESSAGE_SIZE`].
    #[serde(with = "size")]
    pub echo_max_message_size: usize,
    /// See [`DEFAULT_ECHO_MAX_FRAME_SIZE`].
    #[serde(with = "size")]
    pub echo_max_frame_size: usize,
    /// See [`DEFAULT_MAX_HANDSHAKE_SIZE`].
    #[serde(with = "size")]
    pub max_handshake_size: usize,
    /// See [`DEFAULT_HANDSHAKE_TIMEOUT`].
    #[serde(with = "duration")]
    pub handshake_timeout: Duration,
    /// See [`DEFAULT_IDLE_TIMEOUT`]; zero is off, see [`Limits::idle_timeout`].
    #[serde(with = "duration")]
    pub idle_timeout: Duration,
    /// See [`DEFAULT_MAX_CONNECTIONS`].
    pub max_connections: usize,
    /// See [`DEFAULT_MAX_CONNECTIONS_PER_VHOST`].
    pub max_connections_per_vhost: usize,
    /// See [`DEFAULT_MAX_SUBSCRIPTIONS_PER_SESSION`].
    pub max_subscriptions_per_session: usize,
    /// See [`DEFAULT_MAX_PENDING_BYTES`].
    #[serde(with = "size")]
    pub max_pending_bytes: usize,
    /// See [`DEFAULT_RING_CAPACITY`].
    #[serde(with = "size")]
    pub ring_capacity: usize,
    /// See [`DEFAULT_MAX_CHANNELS_PER_VHOST`].
    pub max_channels_per_vhost: usize,
    /// See [`DEFAULT_MAX_USERS_PER_VHOST`].
    pub max_users_per_vhost: usize,
    /// See [`DEFAULT_MAX_VHOSTS`].
    pub max_vhosts: usize,
    /// See [`DEFAULT_MAX_WORKERS_PER_VHOST`].
    pub max_workers_per_vhost: usize,
    /// See [`DEFAULT_MAX_PENDING_SECRET_CHECKS`].
    pub max_pending_secret_checks: usize,
    /// See [`DEFAULT_MAX_RESOURCES_PER_VHOST`].
    pub max_resources_per_vhost: usize,
    /// See [`DEFAULT_MAX_ITEMS_PER_RESOURCE`].
    pub max_items_per_resource: usize,
    /// See [`DEFAULT_MAX_ITEM_SIZE`].
    #[serde(with = "size")]
    pub max_item_size: usize,
    /// See [`DEFAULT_MAX_WATCHES_PER_SESSION`].
    pub max_watches_per_session: usize,
    /// See [`DEFAULT_MAX_PENDING_BACKEND_REQUESTS`].
    pub max_pending_backend_requests: usize,
    /// See [`DEFAULT_BACKEND_REQUEST_TIMEOUT`].
    #[serde(with = "duration")]
    pub backend_request_timeout: Duration,
    /// See [`DEFAULT_MAX_BACKEND_MESSAGE_SIZE`].
    #[serde(with = "size")]
    pub max_backend_message_size: usize,
    /// See [`DEFAULT_MAX_ADMIN_BODY_SIZE`].
    #[serde(with = "size")]
    pub max_admin_body_size: usize,
    /// See [`DEFAULT_DRAIN_TIMEOUT`].
    #[serde(with = "duration")]
    pub drain_timeout: Duration,
    /// See [`DEFAULT_MAX_HISTORY_BYTES_PER_CHANNEL`].
    #[serde(with = "size")]
    pub max_history_bytes_per_channel: usize,
    /// See [`DEFAULT_MAX_HISTORY_BYTES`].
    #[serde(with = "size")]
    pub max_history_bytes: usize,
    /// See [`DEFAULT_MAX_PRESENCE_MEMBERS`].
    pub max_presence_members: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
            max_frame_size: DEFAULT_MAX_FRAME_SIZE,
            echo_max_message_size: DEFAULT_ECHO_MAX_MESSAGE_SIZE,
            echo_max_frame_size: DEFAULT_ECHO_MAX_FRAME_SIZE,
            max_handshake_size: DEFAULT_MAX_HANDSHAKE_SIZE,
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_connections_per_vhost: DEFAULT_MAX_CONNECTIONS_PER_VHOST,
            max_subscriptions_per_session: DEFAULT_MAX_SUBSCRIPTIONS_PER_SESSION,
            max_pending_bytes: DEFAULT_MAX_PENDING_BYTES,
            ring_capacity: DEFAULT_RING_CAPACITY,
            max_channels_per_vhost: DEFAULT_MAX_CHANNELS_PER_VHOST,
            max_users_per_vhost: DEFAULT_MAX_USERS_PER_VHOST,
            max_vhosts: DEFAULT_MAX_VHOSTS,
            max_workers_per_vhost: DEFAULT_MAX_WORKERS_PER_VHOST,
            max_pending_secret_checks: DEFAULT_MAX_PENDING_SECRET_CHECKS,
            max_resources_per_vhost: DEFAULT_MAX_RESOURCES_PER_VHOST,
            max_items_per_resource: DEFAULT_MAX_ITEMS_PER_RESOURCE,
            max_item_size: DEFAULT_MAX_ITEM_SIZE,
            max_watches_per_session: DEFAULT_MAX_WATCHES_PER_SESSION,
            max_pending_backend_requests: DEFAULT_MAX_PENDING_BACKEND_REQUESTS,
            backend_request_timeout: DEFAULT_BACKEND_REQUEST_TIMEOUT,
            max_backend_message_size: DEFAULT_MAX_BACKEND_MESSAGE_SIZE,
            max_admin_body_size: DEFAULT_MAX_ADMIN_BODY_SIZE,
            drain_timeout: DEFAULT_DRAIN_TIMEOUT,
            max_history_bytes_per_channel: DEFAULT_MAX_HISTORY_BYTES_PER_CHANNEL,
            max_history_bytes: DEFAULT_MAX_HISTORY_BYTES,
            max_presence_members: DEFAULT_MAX_PRESENCE_MEMBERS,
        }
    }
}

impl Limits {
    /// The idle timeout, or `None` when it is switched off (zero).
    pub fn idle_timeout(&self) -> Option<Duration> {
        (!self.idle_timeout.is_zero()).then_some(self.idle_timeout)
    }

    /// Relations between limits that would make the server misbehave, as
    /// `(field, problem)` pairs; empty when the limits are usable.
    pub fn problems(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        let positive = [
            ("max_message_size", self.max_message_size),
            ("max_frame_size", self.max_frame_size),
            ("echo_max_message_size", self.echo_max_message_size),
            ("echo_max_frame_size", self.echo_max_frame_size),
            ("max_handshake_size", self.max_handshake_size),
            ("max_connections", self.max_connections),
            ("max_connections_per_vhost", self.max_connections_per_vhost),
            ("max_pending_bytes", self.max_pending_bytes),
            ("max_backend_message_size", self.max_backend_message_size),
            ("max_admin_body_size", self.max_admin_body_size),
            ("max_pending_secret_checks", self.max_pending_secret_checks),
            ("max_item_size", self.max_item_size),
        ];
        for (field, value) in positive {
            if value == 0 {
                out.push((field, "must be greater than zero".to_owned()));
            }
        }
        // Credit travels in i32 WINDOW frames; sizes past 1 GiB could wrap.
        let bounded = [
            ("max_message_size", self.max_message_size),
            ("max_frame_size", self.max_frame_size),
            ("echo_max_message_size", self.echo_max_message_size),
            ("echo_max_frame_size", self.echo_max_frame_size),
            ("max_pending_bytes", self.max_pending_bytes),
            ("max_backend_message_size", self.max_backend_message_size),
        ];
        for (field, value) in bounded {
            if value > GIB {
                out.push((field, format!("{value} is more than 1GiB")));
            }
        }
        // A broker message or backend broadcast must fit one ring record
        // (a ring's records are at most an eighth of it).
        let largest = self.max_message_size.max(self.max_backend_message_size) + 1024;
        if self.ring_capacity.is_power_of_two() && self.ring_capacity / 8 < largest {
            out.push((
                "ring_capacity",
                format!(
                    "{} holds records of at most {} bytes, less than the largest message ({})",
                    self.ring_capacity,
                    self.ring_capacity / 8,
                    largest
                ),
            ));
        }
        if self.handshake_timeout.is_zero() {
            out.push(("handshake_timeout", "must be greater than zero".to_owned()));
        }
        if !self.ring_capacity.is_power_of_two() || self.ring_capacity < 64 * KIB {
            out.push((
                "ring_capacity",
                format!(
                    "{} is not a power of two of at least 64KiB",
                    self.ring_capacity
                ),
            ));
        }
        // A message that can never fit the outbound queue would make every
        // receiver a slow consumer.
        if self.max_pending_bytes < self.max_message_size {
            out.push((
                "max_pending_bytes",
                format!(
                    "{} is smaller than max_message_size ({})",
                    self.max_pending_bytes, self.max_message_size
                ),
            ));
        }
        out
    }
}

// Fixed bounds: not configurable, because they protect the server's own
// machinery rather than shape a deployment, but kept here with the others
// so that every number the server enforces is in one file.

/// Connections one guarded ZeroMQ port (backend, cluster) relays at once;
/// each costs two sockets and 24 KiB of buffers. Beyond it a new
/// connection is closed at once.
pub const GUARD_MAX_CONNECTIONS: usize = 4096;

/// Of [`GUARD_MAX_CONNECTIONS`], from one IP address: one host cannot take
/// every slot. Beyond it that host's new connections are closed at once.
pub const GUARD_MAX_PER_IP: usize = GUARD_MAX_CONNECTIONS / 4;

/// How long a guarded write to a ZeroMQ peer may wait for it to read, and
/// how long a new peer has to greet. Slower: the connection is cut.
pub const GUARD_SLOW_PEER: Duration = Duration::from_secs(5);

/// Most frames in one ZeroMQ message on a server port (the longest backend
/// or peer command has six). More: the connection is cut.
pub const GUARD_MAX_FRAMES: u32 = 64;

/// The longest `<uuid>` part of a backend identity. A textual UUID is 36
/// bytes; some clients use other unique strings. Longer: `ER 402`.
pub const MAX_BACKEND_UUID_LEN: usize = 64;

/// How long one write to a backend socket may take before the socket is
/// treated as failed (its trigger goes to the next ready worker).
pub const BACKEND_WRITE_TIMEOUT: Duration = Duration::from_secs(1);

/// Messages waiting for the exchange's send task. Full: answers are
/// dropped (`exchange.dropped_replies`) and triggers refused as if no
/// worker were ready, rather than queued without end.
pub const BACKEND_OUT_QUEUE: usize = 65_536;

/// Broadcasts and triggers queued per cluster link. Full: new ones to
/// that peer are dropped and counted (`cluster.dropped_full`).
pub const CLUSTER_LINK_QUEUE: usize = 65_536;

/// Nonces of peers' HELLOs remembered against replays; the oldest are
/// forgotten first (a HELLO is also refused when its clock is off).
pub const CLUSTER_REMEMBERED_NONCES: usize = 4096;

/// Largest record payload of the storage log. A change is a few hundred
/// bytes; a larger length field is corruption, not a record to allocate
/// for (the tail is cut off at open).
pub const MAX_LOG_RECORD: usize = MIB;

/// How often a background thread fsyncs the durable history files that
/// were appended to (`history_durable` channels). Appends reach the kernel
/// at the end of each broker round; this bounds what a power loss (not a
/// process crash) can take from them.
pub const HISTORY_SYNC_PERIOD: Duration = Duration::from_secs(1);

/// A durable history file is compacted (rewritten with only the messages
/// still held) once it is larger than twice what it would hold after a
/// compaction, and at least twice this.
pub const HISTORY_COMPACT_MIN: u64 = 64 * 1024;

/// After a durable history file could not be written (a full disk), the
/// next attempt (a rewrite of the whole history) waits this long.
pub const HISTORY_RETRY: Duration = Duration::from_secs(1);

/// Largest record payload of a history file: far beyond a delivery, small
/// enough that a corrupt length is not allocated for.
pub const MAX_HISTORY_RECORD: usize = 64 * MIB;

/// Largest raft snapshot record: far beyond any real state, small enough
/// that a corrupt length is not allocated for (the snapshot is refused).
pub const MAX_RAFT_SNAPSHOT: usize = GIB;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_documented_constants() {
        let limits = Limits::default();
        assert_eq!(limits.max_message_size, 65_536);
        assert_eq!(limits.max_frame_size, 65_536);
        assert_eq!(limits.echo_max_message_size, 16 * 1024 * 1024);
        assert_eq!(limits.max_handshake_size, 8192);
        assert_eq!(limits.handshake_timeout, Duration::from_secs(10));
        assert_eq!(limits.idle_timeout(), Some(Duration::from_secs(300)));
        assert_eq!(limits.max_pending_bytes, 1 << 20);
        assert_eq!(limits.ring_capacity, 16 << 20);
        assert!(limits.problems().is_empty(), "{:?}", limits.problems());
    }

    #[test]
    fn empty_section_gives_defaults_and_fields_override() {
        let limits: Limits = toml::from_str("").unwrap();
        assert_eq!(limits, Limits::default());
        let limits: Limits = toml::from_str(
            "max_message_size = \"1MiB\"\nidle_timeout = \"0\"\nmax_connections = 5",
        )
        .unwrap();
        assert_eq!(limits.max_message_size, 1 << 20);
        assert_eq!(limits.idle_timeout(), None);
        assert_eq!(limits.max_connections, 5);
    }

    #[test]
    fn unknown_fields_are_rejected() {
        let err = toml::from_str::<Limits>("max_mesage_size = 1").unwrap_err();
        assert!(err.message().contains("unknown field"), "{err}");
    }

    #[test]
    fn serializes_back_to_the_same_limits() {
        let text = toml::to_string(&Limits::default()).unwrap();
        assert!(text.contains("max_message_size = \"64KiB\""), "{text}");
        assert!(text.contains("idle_timeout = \"5m\""), "{text}");
        assert_eq!(toml::from_str::<Limits>(&text).unwrap(), Limits::default());
    }

    #[test]
    fn inconsistent_limits_are_reported() {
        let limits = Limits {
            max_frame_size: 0,
            ring_capacity: 100_000,
            max_pending_bytes: 10,
            ..Limits::default()
        };
        let fields: Vec<_> = limits.problems().into_iter().map(|(f, _)| f).collect();
        assert_eq!(
            fields,
            ["max_frame_size", "ring_capacity", "max_pending_bytes"]
        );
    }
}
