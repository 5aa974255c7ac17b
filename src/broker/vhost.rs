//! A vhost as the broker sees it: its users, channels and sessions.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::name::{ChannelName, Permissions, UserName};
use crate::storage::{UserRecord, VhostRecord};

use super::channel::Channel;
use super::session::SessionKey;

/// One vhost's live state on this node.
#[derive(Debug)]
pub(crate) struct Vhost {
    /// Users who may authenticate, with their secret hashes and permissions.
    pub users: BTreeMap<UserName, UserRecord>,
    /// What a session may do before it authenticates.
    pub anonymous: Permissions,
    /// Whether `subscribe` creates missing channels for anyone with READ
    /// (otherwise only for MANAGE users).
    pub auto_create: bool,
    /// Channels and their subscribers.
    pub channels: HashMap<ChannelName, Channel>,
    /// Open sessions, ordered so that mass closes happen in a stable order.
    pub sessions: BTreeSet<SessionKey>,
}

impl Vhost {
    /// The live form of a stored vhost: its channels exist, nobody is
    /// connected yet.
    pub fn from_record(record: &VhostRecord) -> Self {
        Vhost {
            users: record.users.clone(),
            anonymous: record.anonymous,
            auto_create: record.auto_create_channels,
            channels: record
                .channels
                .iter()
                .map(|name| (name.clone(), Channel::default()))
                .collect(),
            sessions: BTreeSet::new(),
        }
    }

    /// The permissions of `user`, or the anonymous ones for `None`. A user
    /// that no longer exists has none.
    pub fn permissions_of(&self, user: Option<&UserName>) -> Permissions {
        match user {
            None => self.anonymous,
            Some(name) => self
                .users
                .get(name)
                .map_or(Permissions::NONE, |record| record.permissions),
        }
    }

    /// Subscriptions over all channels.
    pub fn subscriptions(&self) -> usize {
        self.channels.values().map(Channel::len).sum()
    }
}
