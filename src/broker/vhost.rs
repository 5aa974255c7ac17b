//! A vhost as the broker sees it: its users, channels and sessions.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use std::time::Instant;

use crate::name::{ChannelName, Permissions, UserName, VhostPath};
use crate::storage::{ChannelOptions, UserRecord, VhostRecord};

use super::channel::Channel;
use super::durable::HistoryWrite;
use super::history::{Bounds, Clock, History};
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
    /// The broker's clock, for durable histories.
    clock: Clock,
}

impl Vhost {
    /// The live form of a stored vhost: its channels exist, nobody is
    /// connected yet.
    pub fn from_record(record: &VhostRecord, history_bytes: usize, clock: Clock) -> Self {
        let mut vhost = Vhost {
            users: record.users.clone(),
            anonymous: record.anonymous,
            auto_create: record.auto_create_channels,
            channels: HashMap::new(),
            sessions: BTreeSet::new(),
            channel_defaults: record.channel_defaults,
            channel_options: record.channel_options.clone(),
            history_bytes,
            clock,
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
        let history = self.new_history(name);
        self.channels
            .insert(name.clone(), Channel::with_history(history));
        true
    }

    /// A new history for channel `name`, if its options ask for one.
    fn new_history(&self, name: &ChannelName) -> Option<History> {
        let options = self.options_of(name);
        options.history().then(|| {
            let mut history = History::new(Bounds::new(&options, self.history_bytes));
            history.set_durable(options.durable_history().then_some(self.clock));
            history
        })
    }

    /// Brings every channel's history in line with the current options;
    /// returns the bytes freed. What the history files must do (`path` is
    /// this vhost's) goes to `writes`: a history that became durable is
    /// written whole, one that is no longer durable (or gone) removed.
    pub fn refresh_histories(&mut self, path: &VhostPath, writes: &mut Vec<HistoryWrite>) -> usize {
        let now = Instant::now();
        let mut freed = 0;
        let names: Vec<ChannelName> = self.channels.keys().cloned().collect();
        for name in names {
            let options = self.options_of(&name);
            let bounds = Bounds::new(&options, self.history_bytes);
            let durable = options.durable_history();
            let clock = self.clock;
            let Some(channel) = self.channels.get_mut(&name) else {
                continue;
            };
            let was_durable = channel.history.as_ref().is_some_and(History::is_durable);
            match (&mut channel.history, options.history()) {
                (Some(history), true) => {
                    freed += history.set_bounds(bounds, now);
                    history.set_durable(durable.then_some(clock));
                    if durable && !was_durable {
                        let records = history.snapshot(now);
                        writes.push(HistoryWrite::rewrite(path, &name, records));
                    }
                }
                (Some(history), false) => {
                    freed += history.bytes();
                    channel.history = None;
                }
                (None, true) => {
                    let mut history = History::new(bounds);
                    history.set_durable(durable.then_some(clock));
                    channel.history = Some(history);
                }
                (None, false) => {}
            }
            if was_durable && !durable {
                writes.push(HistoryWrite::remove(path, &name));
            }
        }
        freed
    }

    /// The channels whose histories are durable.
    pub fn durable_channels(&self) -> impl Iterator<Item = &ChannelName> {
        self.channels
            .iter()
            .filter(|(_, c)| c.history.as_ref().is_some_and(History::is_durable))
            .map(|(name, _)| name)
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
