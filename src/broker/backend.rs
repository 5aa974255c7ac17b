//! Operations a backend asks for (spec section 2: `BC`, `OC`, `CC`, `DS`).
//!
//! The exchange decodes the ZeroMQ frames and checks the identity; these
//! methods do the broker's part. Their errors map to the backend's `ER`
//! codes through [`BackendError::code`].

use serde_json::value::RawValue;

use crate::name::{ChannelName, EventName, SessionId, VhostPath};
use crate::protocol::backend::code;
use crate::protocol::{encode_delivery, encode_direct, Reply};
use crate::storage::Change;

use super::io::{Io, Outlet};
use super::pending::ChannelOp;
use super::session::SessionKey;
use super::Broker;

/// A backend operation that could not be done.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BackendError {
    /// The vhost does not exist on this node.
    #[error("no vhost {0}")]
    VhostNotFound(VhostPath),
    /// The channel does not exist in the vhost.
    #[error("no channel {channel} in vhost {vhost}")]
    ChannelNotFound {
        /// The vhost.
        vhost: VhostPath,
        /// The missing channel.
        channel: ChannelName,
    },
    /// Creating the channel would pass `max_channels_per_vhost`.
    #[error("vhost {vhost} has reached its limit of {limit} channels")]
    TooManyChannels {
        /// The vhost.
        vhost: VhostPath,
        /// The limit.
        limit: usize,
    },
    /// The change could not be made durable.
    #[error("cannot persist the change to vhost {vhost}: {reason}")]
    Storage {
        /// The vhost.
        vhost: VhostPath,
        /// What storage said.
        reason: String,
    },
}

impl BackendError {
    /// The backend protocol's `ER` code: 454 channel not found, 597 for the
    /// rest (a vhost that vanished under a valid identity, limits, storage).
    pub fn code(&self) -> u16 {
        match self {
            BackendError::ChannelNotFound { .. } => code::CHANNEL_NOT_FOUND,
            BackendError::VhostNotFound(_)
            | BackendError::TooManyChannels { .. }
            | BackendError::Storage { .. } => code::INTERNAL_ERROR,
        }
    }
}

/// No session with that id on this node (`ER 404`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("no session {0}")]
pub struct NotFound(pub SessionId);

/// Makes a channel change durable, as a backend error on failure.
fn commit(io: &mut Io<'_>, vhost: &VhostPath, change: &Change) -> Result<(), BackendError> {
    io.persist
        .commit(change)
        .map_err(|e| BackendError::Storage {
            vhost: vhost.clone(),
            reason: e.to_string(),
        })
}

impl Broker {
    /// `BC`: delivers `{"<event>": {"channel", "data", "user": null}}` to
    /// every subscriber of `channel`. Returns how many received it (slow
    /// consumers found meanwhile are closed and not counted).
    pub fn backend_broadcast(
        &mut self,
        vhost: &VhostPath,
        channel: &ChannelName,
        event: &EventName,
        data: Option<&RawValue>,
        io: &mut Io<'_>,
    ) -> Result<u64, BackendError> {
        let v = self
            .vhosts
            .get(vhost)
            .ok_or_else(|| BackendError::VhostNotFound(vhost.clone()))?;
        if !v.channels.contains_key(channel) {
            return Err(BackendError::ChannelNotFound {
                vhost: vhost.clone(),
                channel: channel.clone(),
            });
        }
        self.buf.clear();
        encode_delivery(&mut self.buf, event.as_str(), channel.as_str(), data, None);
        let delivered = self.fan_out(vhost, channel, io.outlet);
        self.reap(io.outlet);
        Ok(delivered)
    }

    /// `OC`: creates `channel` (durably) if it does not exist; opening an
    /// existing channel is not an error. On a cluster the creation is
    /// returned for the cluster to commit.
    pub fn open_channel(
        &mut self,
        vhost: &VhostPath,
        channel: &ChannelName,
        io: &mut Io<'_>,
    ) -> Result<ChannelOp, BackendError> {
        let limit = self.limits.max_channels_per_vhost;
        let v = self
            .vhosts
            .get_mut(vhost)
            .ok_or_else(|| BackendError::VhostNotFound(vhost.clone()))?;
        if v.channels.contains_key(channel) {
            return Ok(ChannelOp::Done);
        }
        if v.channels.len() >= limit {
            return Err(BackendError::TooManyChannels {
                vhost: vhost.clone(),
                limit,
            });
        }
        let change = Change::AddChannel {
            vhost: vhost.clone(),
            channel: channel.clone(),
        };
        if io.persist.replicated() {
            return Ok(ChannelOp::Replicate(change));
        }
        commit(io, vhost, &change)?;
        v.add_channel(channel);
        self.outbox.stats.channels += 1;
        Ok(ChannelOp::Done)
    }

    /// `CC`: deletes `channel` (durably); each subscriber is told
    /// `{"unsubscribed": "<channel>"}`. On a cluster the deletion is
    /// returned for the cluster to commit; every node applies it then.
    pub fn close_channel(
        &mut self,
        vhost: &VhostPath,
        channel: &ChannelName,
        io: &mut Io<'_>,
    ) -> Result<ChannelOp, BackendError> {
        let v = self
            .vhosts
            .get(vhost)
            .ok_or_else(|| BackendError::VhostNotFound(vhost.clone()))?;
        if !v.channels.contains_key(channel) {
            return Err(BackendError::ChannelNotFound {
                vhost: vhost.clone(),
                channel: channel.clone(),
            });
        }
        let change = Change::DeleteChannel {
            vhost: vhost.clone(),
            channel: channel.clone(),
        };
        if io.persist.replicated() {
            return Ok(ChannelOp::Replicate(change));
        }
        commit(io, vhost, &change)?;
        self.remove_channel(vhost, channel, io.outlet);
        self.reap(io.outlet);
        Ok(ChannelOp::Done)
    }

    /// `DS`: sends `{"<event>": <data>}` to the session with id `sid` in
    /// `vhost` (a backend never reaches sessions of another vhost).
    /// A session that has no room for it is closed as a slow consumer; the
    /// message still counts as handed over (`Ok`).
    pub fn direct(
        &mut self,
        vhost: &VhostPath,
        sid: &SessionId,
        event: &EventName,
        data: Option<&RawValue>,
        io: &mut Io<'_>,
    ) -> Result<(), NotFound> {
        let key = self
            .session_by_sid(sid)
            .filter(|key| self.sessions.get(key).is_some_and(|s| &s.vhost == vhost))
            .ok_or_else(|| NotFound(sid.clone()))?;
        self.buf.clear();
        encode_direct(&mut self.buf, event.as_str(), data);
        if self.outbox.offer(io.outlet, key, &self.buf) {
            self.outbox.stats.directs += 1;
        }
        self.reap(io.outlet);
        Ok(())
    }

    /// The session with backend-visible id `sid`, if it is on this node.
    pub fn session_by_sid(&self, sid: &SessionId) -> Option<SessionKey> {
        self.sids.get(sid).copied()
    }

    /// The backend-visible id of session `key`.
    pub fn sid_of(&self, key: SessionKey) -> Option<&SessionId> {
        self.sessions.get(&key).map(|s| &s.sid)
    }

    /// Removes a channel from the live state; its subscribers lose the
    /// subscription and are told `unsubscribed`, in subscription order.
    pub(super) fn remove_channel(
        &mut self,
        vhost: &VhostPath,
        name: &ChannelName,
        outlet: &mut dyn Outlet,
    ) {
        let Some(mut channel) = self
            .vhosts
            .get_mut(vhost)
            .and_then(|v| v.channels.remove(name))
        else {
            return;
        };
        self.outbox.stats.channels -= 1;
        if let Some(history) = &channel.history {
            self.history_bytes -= history.bytes();
            if history.is_durable() {
                self.history_writes
                    .push(super::durable::HistoryWrite::remove(vhost, name));
            }
        }
        if channel.len() > 0 {
            self.cluster.interest(vhost, name, false);
        }
        for key in channel.drain() {
            if let Some(session) = self.sessions.get_mut(&key) {
                if session.subscriptions.remove(name) {
                    self.outbox.stats.subscriptions -= 1;
                }
            }
            self.send_reply(key, &Reply::Unsubscribed(name.as_str()), outlet);
        }
    }
}
