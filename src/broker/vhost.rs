//! A vhost as the broker sees it: its users, channels and sessions.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use std::time::Instant;

use crate::name::{ChannelName, Permissions, UserName};
use crate::storage::{ChannelOptions, UserRecord, VhostRecord};

use super::channel::Channel;
use super::history::{Bounds, History};
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
    /// Options of channels without options of their own.
    pub channel_defaults: ChannelOptions,
    /// Options set per channel.
    pub channel_options: BTreeMap<ChannelName, ChannelOptions>,
    /// `limits.max_history_bytes_per_channel`.
    pub history_bytes: usize,
}

impl Vhost {
    /// The live form of a stored vhost: its channels exist, nobody is
    /// connected yet.
    pub fn from_record(record: &VhostRecord, history_bytes: usize) -> Self {
        let mut vhost = Vhost {
            users: record.users.clone(),
            anonymous: record.anonymous,
            auto_create: record.auto_create_channels,
            channels: HashMap::new(),
            sessions: BTreeSet::new(),
            channel_defaults: record.channel_defaults,
            channel_options: record.channel_options.clone(),
            history_bytes,
        };
        for name in &record.channels {
            vhost.add_channel(name);
        }
        vhost
    }

    /// The options in force for `channel`.
    pub fn options_of(&self, channel: &ChannelName) -> ChannelOptions {
        self.channel_options
            .get(channel)
            .copied()
            .unwrap_or(self.channel_defaults)
    }

    /// Creates channel `name` (with a history if its options ask for
    /// one); `false` if it existed.
    pub fn add_channel(&mut self, name: &ChannelName) -> bool {
        if self.channels.contains_key(name) {
            return false;
        }
        let options = self.options_of(name);
        let history = options
            .history()
            .then(|| History::new(Bounds::new(&options, self.history_bytes)));
        self.channels
            .insert(name.clone(), Channel::with_history(history));
        true
    }

    /// Brings every channel's history in line with the current options;
    /// returns the bytes freed.
    pub fn refresh_histories(&mut self) -> usize {
        let now = Instant::now();
        let mut freed = 0;
        let names: Vec<ChannelName> = self.channels.keys().cloned().collect();
        for name in names {
            let options = self.options_of(&name);
            let bounds = Bounds::new(&options, self.history_bytes);
            let Some(channel) = self.channels.get_mut(&name) else {
                continue;
            };
            match (&mut channel.history, options.history()) {
                (Some(history), true) => freed += history.set_bounds(bounds, now),
                (Some(history), false) => {
                    freed += history.bytes();
                    channel.history = None;
                }
                (None, true) => channel.history = Some(History::new(bounds)),
                (None, false) => {}
            }
        }
        freed
    }

    /// Bytes of history all channels hold.
    pub fn history_bytes_held(&self) -> usize {
        self.channels
            .values()
            .filter_map(|c| c.history.as_ref())
            .map(History::bytes)
            .sum()
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
