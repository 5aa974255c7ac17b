//! The broker's counters, published by the glue to the monitor.
//!
//! Plain integers updated in place by the single-threaded broker; the glue
//! copies them out (e.g. into the counters file) as often as it likes.
//! Counters only grow; gauges (`sessions`, `subscriptions`, `channels`) go up
//! and down.

use crate::name::VhostPath;
use crate::protocol::{CloseReason, ErrorId};

/// Node-wide broker counters and gauges.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerStats {
    /// Gauge: open sessions.
    pub sessions: u64,
    /// Sessions opened since start.
    pub sessions_opened: u64,
    /// `open_session` calls refused (unknown vhost, connection limit).
    pub sessions_refused: u64,
    /// Client messages received (including malformed ones).
    pub messages_in: u64,
    /// Bytes of client messages received.
    pub bytes_in: u64,
    /// Messages accepted by the outlet (replies, errors, deliveries, notices).
    pub messages_out: u64,
    /// Bytes accepted by the outlet.
    pub bytes_out: u64,
    /// Gauge: subscriptions over all sessions.
    pub subscriptions: u64,
    /// Gauge: channels over all vhosts.
    pub channels: u64,
    /// Broadcasts fanned out (from clients and backends).
    pub broadcasts: u64,
    /// Deliveries made by those broadcasts.
    pub deliveries: u64,
    /// Triggers handed to the backend.
    pub triggers: u64,
    /// Direct messages from backends delivered.
    pub directs: u64,
    /// Sessions closed because the outlet refused a message.
    pub slow_consumers: u64,
    /// Gauge: bytes all channel histories hold.
    pub history_bytes: u64,
    /// Messages delivered but not kept in their channel's history
    /// (`limits.max_history_bytes` or the channel's byte bound).
    pub history_dropped: u64,
    /// Error replies sent, by [`ErrorId::index`].
    pub errors: [u64; ErrorId::COUNT],
    /// Sessions closed, by [`CloseReason::index`].
    pub closes: [u64; CloseReason::COUNT],
}

impl Default for BrokerStats {
    fn default() -> Self {
        BrokerStats {
            sessions: 0,
            sessions_opened: 0,
            sessions_refused: 0,
            messages_in: 0,
            bytes_in: 0,
            messages_out: 0,
            bytes_out: 0,
            subscriptions: 0,
            channels: 0,
            broadcasts: 0,
            deliveries: 0,
            triggers: 0,
            directs: 0,
            slow_consumers: 0,
            history_bytes: 0,
            history_dropped: 0,
            errors: [0; ErrorId::COUNT],
            closes: [0; CloseReason::COUNT],
        }
    }
}

impl BrokerStats {
    /// Error replies sent with `id`.
    pub fn error_count(&self, id: ErrorId) -> u64 {
        self.errors[id.index()]
    }

    /// Sessions closed for `reason`.
    pub fn close_count(&self, reason: CloseReason) -> u64 {
        self.closes[reason.index()]
    }

    /// `(label, count)` for every error id, in table order.
    pub fn errors_by_id(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        ErrorId::ALL
            .iter()
            .map(|id| (id.as_str(), self.errors[id.index()]))
    }

    /// `(label, count)` for every close reason.
    pub fn closes_by_reason(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        CloseReason::ALL
            .iter()
            .map(|r| (r.label(), self.closes[r.index()]))
    }

    pub(crate) fn count_error(&mut self, id: ErrorId) {
        self.errors[id.index()] += 1;
    }

    pub(crate) fn count_close(&mut self, reason: CloseReason) {
        self.closes[reason.index()] += 1;
    }
}

/// Gauges for one vhost on this node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VhostStats {
    /// The vhost.
    pub vhost: VhostPath,
    /// Open sessions.
    pub sessions: u64,
    /// Authenticated sessions among them.
    pub authenticated: u64,
    /// Channels.
    pub channels: u64,
    /// Subscriptions over all its channels.
    pub subscriptions: u64,
}
