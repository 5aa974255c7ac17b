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
use crate::name::{ChannelName, EventName, SessionId, UserName, VhostPath};
use crate::nukleus::webrocket::ClusterLink;
use crate::protocol::backend::BackendReply;
use crate::protocol::Position;
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
}

impl ClusterLink for BrokerLink {
    fn hook(&self) -> Box<dyn ClusterHook> {
        Box::new(self.clone())
    }

    fn publish(&self, manager: &CountersManager) {
        lock(&self.publisher).publish(&self.shared, manager);
    }

    fn direct(
        &self,
        vhost: &VhostPath,
        sid: &SessionId,
        event: &EventName,
        data: Option<&RawValue>,
        reply: BackendReply,
    ) {
        self.shared.direct(vhost, sid, event, data, reply);
    }

    fn close_session(
        &self,
        vhost: &VhostPath,
        sid: &SessionId,
        code: u16,
        reason: &str,
        reply: BackendReply,
    ) {
        self.shared.close_session(vhost, sid, code, reason, reply);
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
            return Route::Local;
        }
        if hops >= MAX_HOPS {
            shared.counters.dropped_hops.fetch_add(1, Ordering::Relaxed);
            return Route::Remote;
        }
        let message = PeerMessage::Forward {
            vhost: vhost.clone(),
            channel: channel.clone(),
            hops: hops + 1,
            sent_ms: super::shared::now_ms(),
            delivery: delivery.to_vec(),
        };
        if shared.send_data(&mut inner, &sequencer, &message) {
            shared.counters.forwards_out.fetch_add(1, Ordering::Relaxed);
        }
        Route::Remote
    }

    fn deliver(
        &mut self,
        vhost: &VhostPath,
        channel: &ChannelName,
        delivery: &[u8],
        position: Option<Position>,
    ) {
        let shared = &self.shared;
        let mut inner = shared.inner();
        let peers: Vec<String> = if position.is_some() {
            inner.membership.up().cloned().collect()
        } else {
            inner
                .membership
                .interested(vhost.as_str(), channel.as_str())
        };
        if peers.is_empty() {
            return;
        }
        let message = PeerMessage::Deliver {
            vhost: vhost.clone(),
            channel: channel.clone(),
            delivery: delivery.to_vec(),
            position,
        };
        for peer in peers {
            if shared.send_data(&mut inner, &peer, &message) {
                shared
                    .counters
                    .deliveries_out
                    .fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    fn presence(
        &mut self,
        vhost: &VhostPath,
        channel: &ChannelName,
        sid: &SessionId,
        user: Option<&UserName>,
        joined: bool,
    ) {
        let shared = &self.shared;
        let mut inner = shared.inner();
        let peers: Vec<String> = inner.membership.up().cloned().collect();
        let message = PeerMessage::Presence {
            vhost: vhost.clone(),
            channel: channel.clone(),
            sid: sid.clone(),
            user: user.cloned(),
            joined,
        };
        // On the control queue, like interest: it is written after the
        // link's HELLO, so a peer that just came up here does not drop it.
        for peer in peers {
            shared.send_control(&mut inner, &peer, &message);
        }
    }

    fn interest(&mut self, vhost: &VhostPath, channel: &ChannelName, subscribed: bool) {
        self.shared
            .interest(vhost.as_str(), channel.as_str(), subscribed);
    }
}

/// The broker's [`Backend`] in a cluster: triggers are spread over the
/// ready workers of the vhost on every node, in proportion to how many
/// each node has (this node's count and the counts peers report with their
/// heartbeats), so that workers anywhere share the load. A node that turns
/// out to have none after all (counts are up to a heartbeat old) is
/// skipped for the next one; `ASSIGNATION_FAILED` only when no node takes
/// it.
pub struct ClusterBackend {
    pub(super) shared: Arc<Shared>,
}

impl ClusterBackend {
    fn here(&self, vhost: &VhostPath, payload: &[u8]) -> Result<(), NoWorker> {
        lock(&self.shared.local_backend)
            .as_mut()
            .map_or(Err(NoWorker), |b| b.trigger(vhost, payload))
    }
}

impl Backend for ClusterBackend {
    /// Session events go to the listening workers of every node: this
    /// node's, and each peer that is up passes them to its own (`SEV`).
    fn session_event(&mut self, vhost: &VhostPath, payload: &[u8]) {
        if let Some(backend) = lock(&self.shared.local_backend).as_mut() {
            backend.session_event(vhost, payload);
        }
        let shared = &self.shared;
        let mut inner = shared.inner();
        let peers: Vec<String> = inner.membership.up().cloned().collect();
        if peers.is_empty() {
            return;
        }
        let message = PeerMessage::SessionEvent {
            vhost: vhost.clone(),
            payload: payload.to_vec(),
        };
        for peer in peers {
            shared.send_data(&mut inner, &peer, &message);
        }
    }

    fn trigger(&mut self, vhost: &VhostPath, payload: &[u8]) -> Result<(), NoWorker> {
        let shared = Arc::clone(&self.shared);
        let (local_first, peers) = {
            let mut inner = shared.inner();
            let here = inner.my_workers.get(vhost.as_str()).copied().unwrap_or(0);
            let peers = inner.membership.worker_counts(vhost.as_str());
            let total: u64 =
                u64::from(here) + peers.iter().map(|(_, n)| u64::from(*n)).sum::<u64>();
            if total == 0 {
                (true, Vec::new())
            } else {
                // The vhost's name is copied once, not per trigger.
                let next = match inner.next_worker.get_mut(vhost.as_str()) {
                    Some(next) => next,
                    None => inner
                        .next_worker
                        .entry(vhost.as_str().to_owned())
                        .or_insert(0),
                };
                let slot = *next % total;
                *next = next.wrapping_add(1);
                (
                    slot < u64::from(here),
                    rotate_to(peers, slot.saturating_sub(u64::from(here))),
                )
            }
        };
        if local_first && self.here(vhost, payload).is_ok() {
            return Ok(());
        }
        let message = PeerMessage::Trigger {
            vhost: vhost.clone(),
            hops: 0,
            payload: payload.to_vec(),
        };
        for peer in &peers {
            let mut inner = shared.inner();
            if shared.send_data(&mut inner, peer, &message) {
                shared.counters.triggers_out.fetch_add(1, Ordering::Relaxed);
                return Ok(());
            }
        }
        if local_first {
            Err(NoWorker)
        } else {
            self.here(vhost, payload)
        }
    }
}

/// The peers' names, starting with the one whose share of worker slots
/// holds `slot` (counted over the peers only), then the others in order.
fn rotate_to(peers: Vec<(String, u32)>, slot: u64) -> Vec<String> {
    let mut start = 0;
    let mut seen = 0u64;
    for (i, (_, n)) in peers.iter().enumerate() {
        seen += u64::from(*n);
        if slot < seen {
            start = i;
            break;
        }
    }
    let mut names: Vec<String> = peers.into_iter().map(|(name, _)| name).collect();
    names.rotate_left(start);
    names
}
