//! The cluster as the broker thread sees it: [`BrokerLink`] routes
//! broadcasts and reports interest (the broker's [`ClusterHook`]), and
//! [`ClusterBackend`] hands a trigger to another node when this one has no
//! ready worker.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use serde_json::value::RawValue;

use super::shared::{lock, Shared};
use super::stats::Publisher;
use super::wire::PeerMessage;
use crate::broker::{Backend, ClusterHook, NoWorker, Route};
use crate::name::{ChannelName, EventName, SessionId, VhostPath};
use crate::stream::CountersManager;

/// A broadcast changes sequencer at most this many times on its way.
const MAX_HOPS: u8 = 2;

/// The broker thread's handle on the cluster.
#[derive(Clone)]
pub struct BrokerLink {
    shared: Arc<Shared>,
    publisher: Arc<Mutex<Publisher>>,
}

impl BrokerLink {
    pub(super) fn new(shared: Arc<Shared>) -> Self {
        BrokerLink {
            shared,
            publisher: Arc::default(),
        }
    }

    /// Copies the cluster's counters into `manager` (`cluster.*`).
    pub fn publish(&self, manager: &CountersManager) {
        lock(&self.publisher).publish(&self.shared, manager);
    }

    /// A backend's `DS` for a session that is not on this node: asks the
    /// other nodes; `reply` gets `Ok` or 404.
    pub fn direct(
        &self,
        vhost: &VhostPath,
        sid: &SessionId,
        event: &EventName,
        data: Option<&RawValue>,
        reply: Box<dyn FnOnce(Result<(), u16>) + Send>,
    ) {
        self.shared.direct(vhost, sid, event, data, reply);
    }
}

impl ClusterHook for BrokerLink {
    fn route(
        &mut self,
        vhost: &VhostPath,
        channel: &ChannelName,
        delivery: &[u8],
        hops: u8,
    ) -> Route {
        let shared = &self.shared;
        let mut inner = shared.inner();
        let sequencer = inner
            .membership
            .sequencer(vhost.as_str(), channel.as_str())
            .to_owned();
        if sequencer == shared.settings.name {
            let message = PeerMessage::Deliver {
                vhost: vhost.as_str().to_owned(),
                channel: channel.as_str().to_owned(),
                delivery: delivery.to_vec(),
            };
            for peer in inner
                .membership
                .interested(vhost.as_str(), channel.as_str())
            {
                if shared.send_data(&mut inner, &peer, &message) {
                    shared
                        .counters
                        .deliveries_out
                        .fetch_add(1, Ordering::Relaxed);
                }
            }
            return Route::Local;
        }
        if hops >= MAX_HOPS {
            shared.counters.dropped_hops.fetch_add(1, Ordering::Relaxed);
            return Route::Remote;
        }
        let message = PeerMessage::Forward {
            vhost: vhost.as_str().to_owned(),
            channel: channel.as_str().to_owned(),
            hops: hops + 1,
            delivery: delivery.to_vec(),
        };
        if shared.send_data(&mut inner, &sequencer, &message) {
            shared.counters.forwards_out.fetch_add(1, Ordering::Relaxed);
        }
        Route::Remote
    }

    fn interest(&mut self, vhost: &VhostPath, channel: &ChannelName, subscribed: bool) {
        self.shared
            .interest(vhost.as_str(), channel.as_str(), subscribed);
    }
}

/// The broker's [`Backend`] in a cluster: this node's workers first, then
/// (round robin) another node that reported ready workers for the vhost.
pub struct ClusterBackend {
    pub(super) shared: Arc<Shared>,
}

impl Backend for ClusterBackend {
    fn trigger(&mut self, vhost: &VhostPath, payload: &[u8]) -> Result<(), NoWorker> {
        let shared = &self.shared;
        let local = lock(&shared.local_backend)
            .as_mut()
            .map_or(Err(NoWorker), |b| b.trigger(vhost, payload));
        if local.is_ok() {
            return local;
        }
        let mut inner = shared.inner();
        let peers = inner.membership.with_workers(vhost.as_str());
        if peers.is_empty() {
            return Err(NoWorker);
        }
        let message = PeerMessage::Trigger {
            vhost: vhost.as_str().to_owned(),
            payload: payload.to_vec(),
        };
        for _ in 0..peers.len() {
            let peer = &peers[inner.next_peer % peers.len()];
            inner.next_peer = inner.next_peer.wrapping_add(1);
            if shared.send_data(&mut inner, peer, &message) {
                shared.counters.triggers_out.fetch_add(1, Ordering::Relaxed);
                return Ok(());
            }
        }
        Err(NoWorker)
    }
}
