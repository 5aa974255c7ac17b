//! Storage changes applied to the live state while the server runs (from
//! webrocket-ctl, or replicated from another node). The change is already
//! durable; the broker only brings sessions in line with it.
//!
//! What each change does to connected sessions:
//! - delete vhost / clear vhosts: its sessions are closed with
//!   [`CloseReason::VhostDeleted`] (close code 1001).
//! - delete channel / clear channels: subscribers get
//!   `{"unsubscribed": "<channel>"}` and lose the subscription.
//! - set permissions: the user's sessions take the new permissions at once;
//!   without READ they lose every subscription, each reported
//!   `unsubscribed`.
//! - delete user: the user's sessions become anonymous (the vhost's
//!   anonymous permissions), lose the subscriptions those do not allow (each
//!   reported `unsubscribed`) and are told `{"loggedOut": true}`.
//! - set vhost options: anonymous sessions take the new anonymous
//!   permissions, with the same rule for subscriptions.
//! - set secret: sessions already authenticated stay so (they proved who
//!   they are); the new secret applies to the next `authenticate`.
//! - set channel options: histories start, change bounds or are dropped;
//!   a history that becomes durable is written whole to its file, one that
//!   stops being durable loses its file; subscribers are not told.
//! - delete channel / vhost: the files of durable histories go too.
//! - add vhost / user / channel, set token: nothing to tell anyone.

use crate::name::{UserName, VhostPath};
use crate::protocol::{CloseReason, Reply};
use crate::storage::{Change, UserRecord, VhostRecord};

use super::durable::HistoryWrite;
use super::io::{Io, Outlet};
use super::session::SessionKey;
use super::vhost::Vhost;
use super::Broker;

impl Broker {
    /// Applies a durable change to the live state (see the module docs for
    /// what sessions see). Changes that do not fit the live state (unknown
    /// vhost, user or channel) are ignored: storage has already validated
    /// them against the same data.
    // One short arm per `Change` variant; splitting the match would only
    // scatter it.
    pub fn apply_change(&mut self, change: &Change, io: &mut Io<'_>) {
        use Change::*;
        match change {
            AddVhost {
                path,
                token,
                anonymous,
                auto_create_channels,
            } => {
                let record = VhostRecord {
                    resources: Default::default(),
                    token: token.clone(),
                    anonymous: *anonymous,
                    auto_create_channels: *auto_create_channels,
                    users: Default::default(),
                    channels: Default::default(),
                    channel_defaults: Default::default(),
                    channel_options: Default::default(),
                };
                let history_bytes = self.limits.max_history_bytes_per_channel;
                let clock = self.clock;
                self.vhosts
                    .entry(path.clone())
                    .or_insert_with(|| Vhost::from_record(&record, history_bytes, clock));
            }
            DeleteVhost { path } => self.remove_vhost(path, io.outlet),
            ClearVhosts => {
                let mut paths: Vec<VhostPath> = self.vhosts.keys().cloned().collect();
                paths.sort();
                for path in &paths {
                    self.remove_vhost(path, io.outlet);
                }
            }
            SetVhostToken { .. } => {}
            SetVhostOptions {
                path,
                anonymous,
                auto_create_channels,
            } => {
                if let Some(vhost) = self.vhosts.get_mut(path) {
                    vhost.anonymous = *anonymous;
                    vhost.auto_create = *auto_create_channels;
                }
                self.refresh_sessions(path, None, io.outlet);
            }
            AddUser {
                vhost,
                name,
                secret_hash,
                permissions,
            } => {
                if let Some(v) = self.vhosts.get_mut(vhost) {
                    let record = UserRecord {
                        secret_hash: secret_hash.clone(),
                        permissions: *permissions,
                    };
                    v.users.insert(name.clone(), record);
                }
            }
            DeleteUser { vhost, name } => self.remove_user(vhost, name, io.outlet),
            SetPermissions {
                vhost,
                name,
                permissions,
            } => {
                if let Some(record) = self
                    .vhosts
                    .get_mut(vhost)
                    .and_then(|v| v.users.get_mut(name))
                {
                    record.permissions = *permissions;
                }
                self.refresh_sessions(vhost, Some(name), io.outlet);
            }
            SetSecret { vhost, name, hash } => {
                if let Some(record) = self
                    .vhosts
                    .get_mut(vhost)
                    .and_then(|v| v.users.get_mut(name))
                {
                    record.secret_hash.clone_from(hash);
                }
            }
            AddChannel { vhost, channel } => {
                if let Some(v) = self.vhosts.get_mut(vhost) {
                    if v.add_channel(channel) {
                        self.outbox.stats.channels += 1;
                    }
                }
            }
            DeleteChannel { vhost, channel } => self.remove_channel(vhost, channel, io.outlet),
            ClearChannels { vhost } => {
                let mut names: Vec<_> = self
                    .vhosts
                    .get(vhost)
                    .map(|v| v.channels.keys().cloned().collect())
                    .unwrap_or_default();
                names.sort();
                for name in &names {
                    self.remove_channel(vhost, name, io.outlet);
                }
            }
            // MonoRail resources are the monorail nukleus's business.
            AddResource { .. } | DeleteResource { .. } | PutItem { .. } | RemoveItem { .. } => {}
            SetChannelOptions {
                vhost,
                channel,
                options,
            } => {
                if let Some(v) = self.vhosts.get_mut(vhost) {
                    match channel {
                        Some(name) => {
                            v.channel_options.insert(name.clone(), *options);
                        }
                        None => v.channel_defaults = *options,
                    }
                    let freed = v.refresh_histories(vhost, &mut self.history_writes);
                    self.history_bytes = self.history_bytes.saturating_sub(freed);
                }
            }
        }
        self.reap(io.outlet);
    }

    /// The sessions of `vhost` authenticated as `user` (`None`: anonymous).
    fn sessions_as(&self, vhost: &VhostPath, user: Option<&UserName>) -> Vec<SessionKey> {
        let Some(v) = self.vhosts.get(vhost) else {
            return Vec::new();
        };
        v.sessions
            .iter()
            .copied()
            .filter(|key| {
                self.sessions
                    .get(key)
                    .is_some_and(|s| s.user.as_ref() == user)
            })
            .collect()
    }

    /// Re-reads the permissions of the sessions of `vhost` that are `user`
    /// and drops what they may no longer read.
    fn refresh_sessions(
        &mut self,
        vhost: &VhostPath,
        user: Option<&UserName>,
        outlet: &mut dyn Outlet,
    ) {
        for key in self.sessions_as(vhost, user) {
            self.become_user(key, user.cloned());
            self.drop_unreadable(key, outlet);
        }
    }

    fn remove_user(&mut self, vhost: &VhostPath, name: &UserName, outlet: &mut dyn Outlet) {
        let Some(v) = self.vhosts.get_mut(vhost) else {
            return;
        };
        v.users.remove(name);
        for key in self.sessions_as(vhost, Some(name)) {
            self.become_user(key, None);
            self.drop_unreadable(key, outlet);
            self.send_reply(key, &Reply::LoggedOut, outlet);
        }
    }

    fn remove_vhost(&mut self, path: &VhostPath, outlet: &mut dyn Outlet) {
        let Some(vhost) = self.vhosts.get(path) else {
            return;
        };
        let keys: Vec<SessionKey> = vhost.sessions.iter().copied().collect();
        for name in vhost.durable_channels() {
            self.history_writes.push(HistoryWrite::remove(path, name));
        }
        for key in keys {
            self.close(key, CloseReason::VhostDeleted, outlet);
        }
        if let Some(vhost) = self.vhosts.remove(path) {
            self.outbox.stats.channels -= vhost.channels.len() as u64;
            self.history_bytes = self
                .history_bytes
                .saturating_sub(vhost.history_bytes_held());
        }
    }
}
