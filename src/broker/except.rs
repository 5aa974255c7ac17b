//! `BS`: a server broadcast to a channel's subscribers but the sessions a
//! backend names (seed 002's "broadcast ... skip", for webrocket
//! channels). Unlike `BC` it is not ordered through the channel's
//! sequencer: each node delivers it to its own subscribers as it arrives,
//! like a direct message, and keeps it out of the history.

use serde_json::value::RawValue;

use crate::name::{ChannelName, EventName, SessionId, VhostPath};
use crate::protocol::encode_delivery;

use super::backend::BackendError;
use super::io::Outlet;
use super::Broker;

impl Broker {
    /// Delivers `{"<event>": {"channel", "data", "user": null}}` to every
    /// subscriber of `channel` on this node whose session id is not in
    /// `skip`. Returns how many received it. A channel this node does not
    /// know is an error when `local` (the backend asked here), nothing
    /// otherwise (another node passed it on).
    #[allow(clippy::too_many_arguments)] // one per part of the command
    pub fn broadcast_except(
        &mut self,
        vhost: &VhostPath,
        channel: &ChannelName,
        event: &EventName,
        data: Option<&RawValue>,
        skip: &[SessionId],
        local: bool,
        outlet: &mut dyn Outlet,
    ) -> Result<u64, BackendError> {
        let subscribers = self.vhosts.get(vhost).and_then(|v| v.channels.get(channel));
        let Some(subscribers) = subscribers else {
            if !local {
                return Ok(0);
            }
            return Err(match self.vhosts.contains_key(vhost) {
                true => BackendError::ChannelNotFound {
                    vhost: vhost.clone(),
                    channel: channel.clone(),
                },
                false => BackendError::VhostNotFound(vhost.clone()),
            });
        };
        let sessions = &self.sessions;
        let keys = subscribers.subscribers().filter(|key| {
            sessions
                .get(key)
                .is_none_or(|session| !skip.contains(&session.sid))
        });
        self.buf.clear();
        encode_delivery(&mut self.buf, event.as_str(), channel.as_str(), data, None);
        let delivered = self.outbox.offer_many(outlet, keys, &self.buf);
        self.outbox.stats.deliveries += delivered;
        self.reap(outlet);
        Ok(delivered)
    }
}
