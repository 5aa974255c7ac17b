//! Publishes the broker's counters into the counters region of the control
//! file, where the monitor reads them without costing the server anything.

use std::collections::HashMap;

use crate::broker::{BrokerStats, VhostStats};
use crate::name::VhostPath;
use crate::nukleus::metrics::Metric;
use crate::protocol::{CloseReason, ErrorId};
use crate::stream::{Counter, CountersManager};

/// Counter handles in the order [`Publisher::publish`] fills them.
pub struct Publisher {
    counters: Vec<Counter>,
    /// `broker.vhosts.<path>.{sessions,subscriptions,channels}`, made when a
    /// vhost first shows up.
    vhosts: HashMap<VhostPath, [Metric; 3]>,
}

const SCALARS: [&str; 16] = [
    "sessions",
    "sessions_opened",
    "sessions_refused",
    "messages_in",
    "bytes_in",
    "messages_out",
    "bytes_out",
    "subscriptions",
    "channels",
    "broadcasts",
    "deliveries",
    "triggers",
    "directs",
    "slow_consumers",
    "history_bytes",
    "history_dropped",
];

impl Publisher {
    /// Allocates one counter per statistic, labelled like
    /// `broker.messages_in`, `broker.errors.ACCESS_DENIED` or
    /// `broker.closes.slow_consumer`.
    pub fn new(manager: &CountersManager) -> Self {
        let labels = SCALARS
            .iter()
            .map(|name| format!("broker.{name}"))
            .chain(
                ErrorId::ALL
                    .iter()
                    .map(|id| format!("broker.errors.{}", id.as_str())),
            )
            .chain(
                CloseReason::ALL
                    .iter()
                    .map(|r| format!("broker.closes.{}", r.label())),
            );
        let counters = labels
            .filter_map(|label| match manager.allocate(&label) {
                Ok(counter) => Some(counter),
                Err(error) => {
                    tracing::warn!(%error, %label, "no room for counter");
                    None
                }
            })
            .collect();
        Publisher {
            counters,
            vhosts: HashMap::new(),
        }
    }

    /// Copies the per-vhost gauges out.
    pub fn publish_vhosts(&mut self, manager: &CountersManager, vhosts: &[VhostStats]) {
        for v in vhosts {
            let metrics = self.vhosts.entry(v.vhost.clone()).or_insert_with(|| {
                let label = |what: &str| format!("broker.vhosts.{}.{what}", v.vhost);
                [
                    Metric::new(manager, &label("sessions")),
                    Metric::new(manager, &label("subscriptions")),
                    Metric::new(manager, &label("channels")),
                ]
            });
            metrics[0].set(v.sessions);
            metrics[1].set(v.subscriptions);
            metrics[2].set(v.channels);
        }
    }

    /// Copies the current values out.
    pub fn publish(&self, stats: &BrokerStats) {
        let scalars = [
            stats.sessions,
            stats.sessions_opened,
            stats.sessions_refused,
            stats.messages_in,
            stats.bytes_in,
            stats.messages_out,
            stats.bytes_out,
            stats.subscriptions,
            stats.channels,
            stats.broadcasts,
            stats.deliveries,
            stats.triggers,
            stats.directs,
            stats.slow_consumers,
            stats.history_bytes,
            stats.history_dropped,
        ];
        let values = scalars
            .iter()
            .chain(stats.errors.iter())
            .chain(stats.closes.iter());
        for (counter, &value) in self.counters.iter().zip(values) {
            counter.set(value as i64);
        }
    }
}
