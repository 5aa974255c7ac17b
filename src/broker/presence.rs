//! Presence: the members of a channel whose options ask for it.
//!
//! A channel's members are its subscribers (session id and user) on this
//! node and, on a cluster, those other nodes report (`remote`). When one
//! joins (`subscribe`) or leaves (`unsubscribe`, logout, lost READ,
//! session closed), the other local subscribers get `joined` / `left`,
//! encoded once, and the cluster hook tells the other nodes, whose
//! subscribers get the same. A `subscribe` answer lists the members; the
//! `presence` event (READ) lists them again. Members of a node that dies
//! or leaves are dropped, with `left`, when the cluster counts it out
//! (within the failure-detection time).

use std::collections::BTreeMap;

use crate::name::{ChannelName, Permissions, SessionId, UserName, VhostPath};
use crate::protocol::{
    encode_membership, encode_presence, ClientError, ErrorId, Member, Position, Subscribed,
};

use super::io::Outlet;
use super::request::{channel_error, SUBSCRIBE};
use super::session::SessionKey;
use super::Broker;

const PRESENCE: &str = "presence";

/// A member another node reported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteMember {
    /// The node it is connected to.
    pub node: String,
    /// Its user, `None` when anonymous.
    pub user: Option<UserName>,
}

/// A member that left this node's channel, still to be announced.
#[derive(Debug)]
pub(super) struct Departure {
    pub vhost: VhostPath,
    pub channel: ChannelName,
    pub sid: SessionId,
    pub user: Option<UserName>,
}

/// The owned form of a `subscribe` answer's extra fields.
#[derive(Debug, Default)]
pub(super) struct SubscribedExtra {
    pub recovered: Option<bool>,
    pub last: Option<Position>,
    pub members: Option<Vec<(String, Option<String>)>>,
}

impl SubscribedExtra {
    pub fn borrowed(&self) -> Subscribed<'_> {
        Subscribed {
            recovered: self.recovered,
            last: self.last,
            members: self.members.as_ref().map(|all| members(all)),
        }
    }
}

fn members(all: &[(String, Option<String>)]) -> Vec<Member<'_>> {
    all.iter()
        .map(|(sid, user)| Member {
            sid,
            user: user.as_deref(),
        })
        .collect()
}

impl Broker {
    /// Whether `channel` of `vhost` tracks its members.
    fn presence_on(&self, vhost: &VhostPath, channel: &ChannelName) -> bool {
        self.vhosts
            .get(vhost)
            .is_some_and(|v| v.options_of(channel).presence)
    }

    /// The members of a presence channel, local ones first, in
    /// subscription order; `None` when it does not track presence.
    fn member_list(
        &self,
        vhost: &VhostPath,
        channel: &ChannelName,
    ) -> Option<Vec<(String, Option<String>)>> {
        if !self.presence_on(vhost, channel) {
            return None;
        }
        let c = self.vhosts.get(vhost)?.channels.get(channel)?;
        let mut all: Vec<(String, Option<String>)> = c
            .subscribers()
            .filter_map(|key| self.sessions.get(&key))
            .map(|s| (s.sid.to_string(), s.user.as_ref().map(|u| u.to_string())))
            .collect();
        all.extend(
            c.remote
                .iter()
                .map(|(sid, m)| (sid.to_string(), m.user.as_ref().map(|u| u.to_string()))),
        );
        Some(all)
    }

    /// The members for a `subscribe` answer.
    pub(super) fn presence_extra(
        &self,
        vhost: &VhostPath,
        channel: &ChannelName,
    ) -> SubscribedExtra {
        SubscribedExtra {
            members: self.member_list(vhost, channel),
            ..SubscribedExtra::default()
        }
    }

    /// `TOO_MANY_SUBSCRIPTIONS` when a presence channel has
    /// `limits.max_presence_members` members here already.
    pub(super) fn admit_member(
        &self,
        key: SessionKey,
        vhost: &VhostPath,
        channel: &ChannelName,
    ) -> Result<(), ClientError> {
        if !self.presence_on(vhost, channel) {
            return Ok(());
        }
        let Some(c) = self.vhosts.get(vhost).and_then(|v| v.channels.get(channel)) else {
            return Ok(());
        };
        if c.is_subscribed(key) || c.len() < self.limits.max_presence_members {
            return Ok(());
        }
        Err(
            channel_error(ErrorId::TooManySubscriptions, SUBSCRIBE, channel).with_message(format!(
                "the channel has {} members, the limit",
                self.limits.max_presence_members
            )),
        )
    }

    /// Announces that `key` joined `channel`, to its other subscribers and
    /// the other nodes.
    pub(super) fn member_joined(
        &mut self,
        key: SessionKey,
        vhost: &VhostPath,
        channel: &ChannelName,
        outlet: &mut dyn Outlet,
    ) {
        if !self.presence_on(vhost, channel) {
            return;
        }
        let Some(session) = self.sessions.get(&key) else {
            return;
        };
        let (sid, user) = (session.sid.clone(), session.user.clone());
        self.announce(vhost, channel, &sid, user.as_ref(), true, Some(key), outlet);
        self.cluster
            .presence(vhost, channel, &sid, user.as_ref(), true);
    }

    /// Records that `sid` left `channel`; announced by
    /// [`Broker::announce_departures`] once the operation ends (the
    /// session may be closing without an outlet at hand).
    pub(super) fn member_left(
        &mut self,
        vhost: &VhostPath,
        channel: &ChannelName,
        sid: &SessionId,
        user: Option<&UserName>,
    ) {
        if self.presence_on(vhost, channel) {
            self.departures.push(Departure {
                vhost: vhost.clone(),
                channel: channel.clone(),
                sid: sid.clone(),
                user: user.cloned(),
            });
        }
    }

    /// Tells the local subscribers and the other nodes about the members
    /// that left.
    pub(super) fn announce_departures(&mut self, outlet: &mut dyn Outlet) {
        for d in std::mem::take(&mut self.departures) {
            self.announce(
                &d.vhost,
                &d.channel,
                &d.sid,
                d.user.as_ref(),
                false,
                None,
                outlet,
            );
            self.cluster
                .presence(&d.vhost, &d.channel, &d.sid, d.user.as_ref(), false);
        }
    }

    /// Offers `joined` / `left` to the local subscribers of `channel` but
    /// `except`.
    #[allow(clippy::too_many_arguments)]
    fn announce(
        &mut self,
        vhost: &VhostPath,
        channel: &ChannelName,
        sid: &SessionId,
        user: Option<&UserName>,
        joined: bool,
        except: Option<SessionKey>,
        outlet: &mut dyn Outlet,
    ) {
        let Some(c) = self.vhosts.get(vhost).and_then(|v| v.channels.get(channel)) else {
            return;
        };
        self.buf.clear();
        let member = Member {
            sid: sid.as_str(),
            user: user.map(|u| u.as_str()),
        };
        encode_membership(&mut self.buf, joined, channel.as_str(), &member);
        let others = c.subscribers().filter(|&key| Some(key) != except);
        self.outbox.offer_many(outlet, others, &self.buf);
    }

    /// A member another node reported joining (`user`) or leaving.
    pub fn remote_member(
        &mut self,
        node: &str,
        vhost: &VhostPath,
        channel: &ChannelName,
        sid: &SessionId,
        joined: Option<Option<UserName>>,
        outlet: &mut dyn Outlet,
    ) {
        if !self.presence_on(vhost, channel) {
            return;
        }
        let Some(c) = self
            .vhosts
            .get_mut(vhost)
            .and_then(|v| v.channels.get_mut(channel))
        else {
            return;
        };
        match joined {
            Some(user) => {
                let member = RemoteMember {
                    node: node.to_owned(),
                    user: user.clone(),
                };
                if c.remote.insert(sid.clone(), member.clone()) == Some(member) {
                    return;
                }
                self.announce(vhost, channel, sid, user.as_ref(), true, None, outlet);
            }
            None => {
                if let Some(gone) = c.remote.remove(sid) {
                    self.announce(vhost, channel, sid, gone.user.as_ref(), false, None, outlet);
                }
            }
        }
        self.reap(outlet);
    }

    /// Drops every member `node` reported (it died or left), telling the
    /// local subscribers `left`.
    pub fn remote_node_gone(&mut self, node: &str, outlet: &mut dyn Outlet) {
        let mut gone = Vec::new();
        for (path, vhost) in &mut self.vhosts {
            for (name, channel) in &mut vhost.channels {
                let before = std::mem::take(&mut channel.remote);
                let (theirs, kept): (BTreeMap<_, _>, BTreeMap<_, _>) =
                    before.into_iter().partition(|(_, m)| m.node == node);
                channel.remote = kept;
                for (sid, member) in theirs {
                    gone.push((path.clone(), name.clone(), sid, member.user));
                }
            }
        }
        for (vhost, channel, sid, user) in gone {
            self.announce(&vhost, &channel, &sid, user.as_ref(), false, None, outlet);
        }
        self.reap(outlet);
    }

    /// Tells the cluster every local member of every presence channel
    /// again (a peer came up and knows none of them).
    pub fn announce_members(&mut self) {
        for (vhost, channel, sid, user) in self.local_members() {
            self.cluster
                .presence(&vhost, &channel, &sid, user.as_ref(), true);
        }
    }

    /// The local members of every presence channel, for a node that just
    /// came up: `(vhost, channel, sid, user)`.
    fn local_members(&self) -> Vec<(VhostPath, ChannelName, SessionId, Option<UserName>)> {
        let mut out = Vec::new();
        for (path, vhost) in &self.vhosts {
            for (name, channel) in &vhost.channels {
                if !vhost.options_of(name).presence {
                    continue;
                }
                for key in channel.subscribers() {
                    if let Some(s) = self.sessions.get(&key) {
                        out.push((path.clone(), name.clone(), s.sid.clone(), s.user.clone()));
                    }
                }
            }
        }
        out
    }

    /// `presence`: needs READ; the channel must exist. Lists its members
    /// (empty when it does not track presence).
    pub(super) fn presence(
        &mut self,
        key: SessionKey,
        name: &ChannelName,
        outlet: &mut dyn Outlet,
    ) -> Result<(), ClientError> {
        self.require(key, Permissions::READ, PRESENCE, Some(name))?;
        let Some(vhost) = self.sessions.get(&key).map(|s| s.vhost.clone()) else {
            return Ok(());
        };
        if !self
            .vhosts
            .get(&vhost)
            .is_some_and(|v| v.channels.contains_key(name))
        {
            return Err(channel_error(ErrorId::ChannelNotFound, PRESENCE, name));
        }
        let all = self.member_list(&vhost, name).unwrap_or_default();
        self.buf.clear();
        encode_presence(&mut self.buf, name.as_str(), &members(&all));
        self.outbox.offer(outlet, key, &self.buf);
        Ok(())
    }
}
