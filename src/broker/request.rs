//! The client requests of spec section 1, one method each.
//!
//! Checks run in the same order for every request: permission first (so a
//! session without the right learns nothing about which channels exist),
//! then channel existence, then limits.

use serde_json::value::RawValue;

use crate::name::{ChannelName, EventName, Permissions, VhostPath};
use crate::protocol::{
    encode_delivery, encode_trigger, ClientError, CloseReason, ErrorId, Position, Reply, Request,
};
use crate::storage::Change;

use super::io::{Io, Outlet};
use super::pending::Outcome;
use super::session::SessionKey;
use super::Broker;

pub(super) const SUBSCRIBE: &str = "subscribe";
const UNSUBSCRIBE: &str = "unsubscribe";
const BROADCAST: &str = "broadcast";
const TRIGGER: &str = "trigger";
const LOGOUT: &str = "logout";

/// An error about `channel` during client event `event`.
pub(super) fn channel_error(
    id: ErrorId,
    event: &'static str,
    channel: &ChannelName,
) -> ClientError {
    ClientError::new(id)
        .with_event(event)
        .with_channel(channel.as_str())
}

impl Broker {
    /// Runs one decoded request for `key`.
    pub(super) fn dispatch(
        &mut self,
        key: SessionKey,
        request: Request<'_>,
        io: &mut Io<'_>,
    ) -> Outcome {
        let result = match request {
            Request::Authenticate { user, secret } => {
                return self.authenticate(key, user, secret, io)
            }
            Request::Subscribe { channel, since } => {
                match self.subscribe(key, &channel, since, io) {
                    Ok(Some(change)) => return self.hold_for(key, &channel, since, change),
                    Ok(None) => Ok(()),
                    Err(error) => Err(error),
                }
            }
            Request::History {
                channel,
                limit,
                since,
            } => self.history(key, &channel, limit, since, io.outlet),
            Request::Presence { channel } => self.presence(key, &channel, io.outlet),
            Request::Unsubscribe { channel } => self.unsubscribe(key, &channel, io.outlet),
            Request::Broadcast {
                event,
                channel,
                data,
            } => self.broadcast(key, &event, &channel, data, io.outlet),
            Request::Trigger { event, data } => self.trigger(key, &event, data, io),
            Request::Logout => self.logout(key, io.outlet),
            Request::Disconnect => {
                self.close(key, CloseReason::Disconnect, io.outlet);
                Ok(())
            }
        };
        if let Err(error) = result {
            self.send_error(key, &error, io.outlet);
        }
        Outcome::Done
    }

    /// Whether `key` holds `needed`; `ACCESS_DENIED` otherwise.
    pub(super) fn require(
        &self,
        key: SessionKey,
        needed: Permissions,
        event: &'static str,
        channel: Option<&ChannelName>,
    ) -> Result<(), ClientError> {
        if self.sessions.get(&key).is_some_and(|s| s.may(needed)) {
            return Ok(());
        }
        let error = ClientError::new(ErrorId::AccessDenied)
            .with_event(event)
            .with_message(format!("the session lacks the {needed} permission"));
        Err(match channel {
            Some(c) => error.with_channel(c.as_str()),
            None => error,
        })
    }

    /// `subscribe`: needs READ. A missing channel is created (and made
    /// durable first) when the vhost auto-creates or the session has MANAGE.
    /// Subscribing twice answers `subscribed` again and changes nothing.
    ///
    /// On a cluster a channel to create is returned instead, unanswered:
    /// the session waits for the cluster to commit it (`pending`).
    fn subscribe(
        &mut self,
        key: SessionKey,
        name: &ChannelName,
        since: Option<Position>,
        io: &mut Io<'_>,
    ) -> Result<Option<Change>, ClientError> {
        self.require(key, Permissions::READ, SUBSCRIBE, Some(name))?;
        let Some(session) = self.sessions.get(&key) else {
            return Ok(None);
        };
        if session.subscriptions.contains(name) {
            let vhost = session.vhost.clone();
            self.answer_subscribe(key, &vhost, name, since, io.outlet);
            return Ok(None);
        }
        if session.subscriptions.len() >= self.limits.max_subscriptions_per_session {
            return Err(channel_error(
                ErrorId::TooManySubscriptions,
                SUBSCRIBE,
                name,
            ));
        }
        let may_create = session.may(Permissions::MANAGE);
        let vhost = session.vhost.clone();
        if let Some(change) = self.ensure_channel(&vhost, name, may_create, io)? {
            return Ok(Some(change));
        }
        self.join(key, &vhost, name, since, io.outlet)?;
        Ok(None)
    }

    /// Adds the subscription of `key` to the existing channel `name` and
    /// says `subscribed` (with what it recovers after `since`, and the
    /// members of a presence channel).
    pub(super) fn join(
        &mut self,
        key: SessionKey,
        vhost: &VhostPath,
        name: &ChannelName,
        since: Option<Position>,
        outlet: &mut dyn Outlet,
    ) -> Result<(), ClientError> {
        self.admit_member(key, vhost, name)?;
        if let Some(channel) = self
            .vhosts
            .get_mut(vhost)
            .and_then(|v| v.channels.get_mut(name))
        {
            if channel.subscribe(key) && channel.len() == 1 {
                self.cluster.interest(vhost, name, true);
            }
        }
        if let Some(session) = self.sessions.get_mut(&key) {
            if session.subscriptions.insert(name.clone()) {
                self.outbox.stats.subscriptions += 1;
            }
        }
        self.answer_subscribe(key, vhost, name, since, outlet);
        self.member_joined(key, vhost, name, outlet);
        Ok(())
    }

    /// Creates channel `name` for `subscribe` if it is missing and may be
    /// created, committing it to storage before it exists in memory. On a
    /// cluster the change is returned for the cluster to commit instead.
    fn ensure_channel(
        &mut self,
        vhost_path: &VhostPath,
        name: &ChannelName,
        may_create: bool,
        io: &mut Io<'_>,
    ) -> Result<Option<Change>, ClientError> {
        let Some(vhost) = self.vhosts.get_mut(vhost_path) else {
            return Ok(None);
        };
        if vhost.channels.contains_key(name) {
            return Ok(None);
        }
        if !(vhost.auto_create || may_create) {
            return Err(channel_error(ErrorId::ChannelNotFound, SUBSCRIBE, name));
        }
        if vhost.channels.len() >= self.limits.max_channels_per_vhost {
            return Err(channel_error(ErrorId::TooManyChannels, SUBSCRIBE, name));
        }
        let change = Change::AddChannel {
            vhost: vhost_path.clone(),
            channel: name.clone(),
        };
        if io.persist.replicated() {
            return Ok(Some(change));
        }
        if let Err(e) = io.persist.commit(&change) {
            tracing::warn!(
                vhost = %vhost_path,
                channel = %name,
                error = %e,
                "cannot persist an auto-created channel"
            );
            return Err(channel_error(ErrorId::InternalError, SUBSCRIBE, name)
                .with_message("the channel could not be created"));
        }
        vhost.add_channel(name);
        self.outbox.stats.channels += 1;
        Ok(None)
    }

    /// `unsubscribe`: needs READ; the channel must exist and the session be
    /// subscribed to it.
    fn unsubscribe(
        &mut self,
        key: SessionKey,
        name: &ChannelName,
        outlet: &mut dyn Outlet,
    ) -> Result<(), ClientError> {
        self.require(key, Permissions::READ, UNSUBSCRIBE, Some(name))?;
        let exists = self
            .sessions
            .get(&key)
            .and_then(|s| self.vhosts.get(&s.vhost))
            .is_some_and(|v| v.channels.contains_key(name));
        if !exists {
            return Err(channel_error(ErrorId::ChannelNotFound, UNSUBSCRIBE, name));
        }
        if !self.drop_subscription(key, name) {
            return Err(channel_error(ErrorId::NotSubscribed, UNSUBSCRIBE, name));
        }
        self.send_reply(key, &Reply::Unsubscribed(name.as_str()), outlet);
        Ok(())
    }

    /// `broadcast`: needs WRITE (not a subscription); the channel must exist.
    /// Every subscriber, the sender included if subscribed, gets the delivery
    /// before the sender gets `broadcasted`.
    fn broadcast(
        &mut self,
        key: SessionKey,
        event: &EventName,
        name: &ChannelName,
        data: Option<&RawValue>,
        outlet: &mut dyn Outlet,
    ) -> Result<(), ClientError> {
        self.require(key, Permissions::WRITE, BROADCAST, Some(name))?;
        let Some(session) = self.sessions.get(&key) else {
            return Ok(());
        };
        let vhost = session.vhost.clone();
        if !self
            .vhosts
            .get(&vhost)
            .is_some_and(|v| v.channels.contains_key(name))
        {
            return Err(channel_error(ErrorId::ChannelNotFound, BROADCAST, name));
        }
        self.buf.clear();
        encode_delivery(
            &mut self.buf,
            event.as_str(),
            name.as_str(),
            data,
            session.user.as_ref().map(|u| u.as_str()),
        );
        self.fan_out(&vhost, name, outlet);
        self.send_reply(key, &Reply::Broadcasted(name.as_str()), outlet);
        Ok(())
    }

    /// `trigger`: needs WRITE; hands `{"<event>": {"data", "sid", "user"}}` to
    /// a ready worker of the vhost, or answers `ASSIGNATION_FAILED`.
    fn trigger(
        &mut self,
        key: SessionKey,
        event: &EventName,
        data: Option<&RawValue>,
        io: &mut Io<'_>,
    ) -> Result<(), ClientError> {
        self.require(key, Permissions::WRITE, TRIGGER, None)?;
        let Some(session) = self.sessions.get(&key) else {
            return Ok(());
        };
        self.buf.clear();
        encode_trigger(
            &mut self.buf,
            event.as_str(),
            data,
            session.sid.as_str(),
            session.user.as_ref().map(|u| u.as_str()),
        );
        if io.backend.trigger(&session.vhost, &self.buf).is_err() {
            return Err(ClientError::new(ErrorId::AssignationFailed).with_event(TRIGGER));
        }
        self.outbox.stats.triggers += 1;
        self.send_reply(key, &Reply::Triggered(event.as_str()), io.outlet);
        Ok(())
    }

    /// `logout`: only when authenticated. Unsubscribes from every channel
    /// (silently: `loggedOut` says it all) and returns to the vhost's
    /// anonymous permissions.
    fn logout(&mut self, key: SessionKey, outlet: &mut dyn Outlet) -> Result<(), ClientError> {
        let Some(session) = self.sessions.get_mut(&key) else {
            return Ok(());
        };
        if session.user.is_none() {
            return Err(ClientError::new(ErrorId::AccessDenied)
                .with_event(LOGOUT)
                .with_message("the session is not authenticated"));
        }
        let names: Vec<ChannelName> = session.subscriptions.iter().cloned().collect();
        for name in &names {
            self.drop_subscription(key, name);
        }
        self.become_user(key, None);
        self.send_reply(key, &Reply::LoggedOut, outlet);
        Ok(())
    }
}
