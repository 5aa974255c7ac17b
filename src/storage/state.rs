//! The durable state (vhosts, their users and channels) and the [`Change`]s
//! that move it forward. Pure: the same changes applied in the same order
//! give the same state, which is what makes log replay and cluster
//! replication correct.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::name::{AccessToken, ChannelName, Permissions, ResourceName, UserName, VhostPath};

pub use super::resource::{item_id, ResourceRecord, ResourceSource};

/// Every vhost with its users and channels.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    /// Vhosts by path.
    pub vhosts: BTreeMap<VhostPath, VhostRecord>,
}

/// One vhost.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VhostRecord {
    /// Backend access token.
    pub token: AccessToken,
    /// Permissions of sessions that have not authenticated.
    pub anonymous: Permissions,
    /// Whether subscribing to a missing channel creates it.
    pub auto_create_channels: bool,
    /// Users by name.
    pub users: BTreeMap<UserName, UserRecord>,
    /// Channels that exist.
    pub channels: BTreeSet<ChannelName>,
    /// MonoRail resources with their items (`[[vhost.resource]]`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub resources: BTreeMap<ResourceName, ResourceRecord>,
    /// History and presence of channels without options of their own.
    #[serde(default, skip_serializing_if = "ChannelOptions::is_default")]
    pub channel_defaults: ChannelOptions,
    /// Options set for one channel, replacing the defaults. A channel may
    /// have options before it exists (they apply once it is created).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub channel_options: BTreeMap<ChannelName, ChannelOptions>,
}

impl VhostRecord {
    /// The options in force for `channel`.
    pub fn options_of(&self, channel: &ChannelName) -> ChannelOptions {
        self.channel_options
            .get(channel)
            .copied()
            .unwrap_or(self.channel_defaults)
    }
}

/// What a channel keeps besides its subscribers: its recent messages
/// (history, for `subscribe` with `since` and the `history` event) and its
/// members (presence). All off by default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ChannelOptions {
    /// Keep at most this many messages (0: no count bound).
    pub history_size: u32,
    /// Keep messages for at most this many milliseconds (0: no age bound).
    pub history_ttl_ms: u64,
    /// Track the channel's members (`joined` / `left` / `presence`).
    pub presence: bool,
    /// Keep the history in a file under the storage directory too, so that
    /// it (and its epoch) outlives a restart of the node. Meaningful only
    /// with a history (either bound set). Left out of the JSON when off, so
    /// records without it read as before.
    #[serde(skip_serializing_if = "is_false")]
    pub history_durable: bool,
}

fn is_false(value: &bool) -> bool {
    !*value
}

impl ChannelOptions {
    /// Whether the channel keeps a history (either bound set).
    pub fn history(&self) -> bool {
        self.history_size > 0 || self.history_ttl_ms > 0
    }

    /// Whether the history is also kept on disk (see
    /// [`ChannelOptions::history_durable`]).
    pub fn durable_history(&self) -> bool {
        self.history() && self.history_durable
    }

    /// Whether these are the defaults (all off).
    pub fn is_default(&self) -> bool {
        *self == ChannelOptions::default()
    }
}

/// One user of a vhost.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserRecord {
    /// Argon2 PHC string of the secret; `None`: no secret needed.
    pub secret_hash: Option<String>,
    /// Granted permissions.
    pub permissions: Permissions,
}

/// One durable change. Serialized as JSON with an `"op"` tag, e.g.
/// `{"op":"add_channel","vhost":"/chat","channel":"news"}`, in the storage
/// log and in cluster replication.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum Change {
    /// Create a vhost.
    AddVhost {
        /// The new vhost.
        path: VhostPath,
        /// Its backend access token.
        token: AccessToken,
        /// Anonymous permissions.
        anonymous: Permissions,
        /// Whether channels are auto-created.
        auto_create_channels: bool,
    },
    /// Delete a vhost with its users and channels.
    DeleteVhost {
        /// The vhost.
        path: VhostPath,
    },
    /// Delete every vhost.
    ClearVhosts,
    /// Replace a vhost's access token (the old one stops working).
    SetVhostToken {
        /// The vhost.
        path: VhostPath,
        /// The new token.
        token: AccessToken,
    },
    /// Change a vhost's anonymous permissions and auto-creation.
    SetVhostOptions {
        /// The vhost.
        path: VhostPath,
        /// Anonymous permissions.
        anonymous: Permissions,
        /// Whether channels are auto-created.
        auto_create_channels: bool,
    },
    /// Create a user.
    AddUser {
        /// The vhost.
        vhost: VhostPath,
        /// The new user.
        name: UserName,
        /// Argon2 PHC string, or `None` for no secret.
        secret_hash: Option<String>,
        /// Granted permissions.
        permissions: Permissions,
    },
    /// Delete a user.
    DeleteUser {
        /// The vhost.
        vhost: VhostPath,
        /// The user.
        name: UserName,
    },
    /// Replace a user's permissions.
    SetPermissions {
        /// The vhost.
        vhost: VhostPath,
        /// The user.
        name: UserName,
        /// The new permissions.
        permissions: Permissions,
    },
    /// Replace (or remove, with `None`) a user's secret.
    SetSecret {
        /// The vhost.
        vhost: VhostPath,
        /// The user.
        name: UserName,
        /// Argon2 PHC string, or `None` for no secret.
        hash: Option<String>,
    },
    /// Create a channel.
    AddChannel {
        /// The vhost.
        vhost: VhostPath,
        /// The new channel.
        channel: ChannelName,
    },
    /// Delete a channel.
    DeleteChannel {
        /// The vhost.
        vhost: VhostPath,
        /// The channel.
        channel: ChannelName,
    },
    /// Delete every channel of a vhost.
    ClearChannels {
        /// The vhost.
        vhost: VhostPath,
    },
    /// Create a MonoRail resource.
    AddResource {
        /// The vhost.
        vhost: VhostPath,
        /// The new resource.
        name: ResourceName,
        /// Where its items come from.
        source: ResourceSource,
        /// The item property that identifies an item.
        id_field: String,
    },
    /// Delete a resource with its items.
    DeleteResource {
        /// The vhost.
        vhost: VhostPath,
        /// The resource.
        name: ResourceName,
    },
    /// Create or replace an item of a `store` resource (by its id field).
    PutItem {
        /// The vhost.
        vhost: VhostPath,
        /// The resource.
        resource: ResourceName,
        /// The item: a JSON object holding the resource's id field.
        item: serde_json::Value,
    },
    /// Remove an item of a resource.
    RemoveItem {
        /// The vhost.
        vhost: VhostPath,
        /// The resource.
        resource: ResourceName,
        /// The item's id.
        id: String,
    },
    /// Set the history and presence options of one channel, or (without
    /// `channel`) the defaults of the vhost's channels.
    SetChannelOptions {
        /// The vhost.
        vhost: VhostPath,
        /// The channel; `None` for the vhost's defaults.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        channel: Option<ChannelName>,
        /// The options.
        options: ChannelOptions,
    },
}

/// The thing a [`StateError`] is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entity {
    /// A vhost.
    Vhost(VhostPath),
    /// A user in a vhost.
    User(VhostPath, UserName),
    /// A channel in a vhost.
    Channel(VhostPath, ChannelName),
    /// A resource in a vhost.
    Resource(VhostPath, ResourceName),
    /// An item (by id) of a resource.
    Item(VhostPath, ResourceName, String),
}

impl fmt::Display for Entity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Entity::Vhost(path) => write!(f, "vhost {:?}", path.as_str()),
            Entity::User(path, user) => {
                write!(f, "user {:?} in vhost {:?}", user.as_str(), path.as_str())
            }
            Entity::Channel(path, channel) => {
                write!(
                    f,
                    "channel {:?} in vhost {:?}",
                    channel.as_str(),
                    path.as_str()
                )
            }
            Entity::Resource(path, name) => {
                write!(
                    f,
                    "resource {:?} in vhost {:?}",
                    name.as_str(),
                    path.as_str()
                )
            }
            Entity::Item(path, name, id) => write!(
                f,
                "item {id:?} of resource {:?} in vhost {:?}",
                name.as_str(),
                path.as_str()
            ),
        }
    }
}

/// A change that does not fit the current state.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StateError {
    /// The vhost, user or channel does not exist.
    #[error("{0} not found")]
    NotFound(Entity),
    /// The vhost, user or channel exists already.
    #[error("{0} already exists")]
    AlreadyExists(Entity),
    /// The change itself is malformed (an item without its id field).
    #[error("{0}")]
    Invalid(String),
}

impl State {
    /// Applies `change`, or changes nothing and says why it does not fit.
    pub fn apply(&mut self, change: &Change) -> Result<(), StateError> {
        self.check(change)?;
        self.apply_checked(change);
        Ok(())
    }

    /// Whether `change` would apply, without applying it.
    pub fn check(&self, change: &Change) -> Result<(), StateError> {
        use Change::*;
        match change {
            AddVhost { path, .. } => absent(self.vhosts.contains_key(path), || {
                Entity::Vhost(path.clone())
            }),
            ClearVhosts => Ok(()),
            DeleteVhost { path }
            | SetVhostToken { path, .. }
            | SetVhostOptions { path, .. }
            | ClearChannels { vhost: path }
            | SetChannelOptions { vhost: path, .. } => self.vhost(path).map(drop),
            AddUser { vhost, name, .. } => {
                let exists = self.vhost(vhost)?.users.contains_key(name);
                absent(exists, || Entity::User(vhost.clone(), name.clone()))
            }
            DeleteUser { vhost, name }
            | SetPermissions { vhost, name, .. }
            | SetSecret { vhost, name, .. } => {
                let exists = self.vhost(vhost)?.users.contains_key(name);
                present(exists, || Entity::User(vhost.clone(), name.clone()))
            }
            AddChannel { vhost, channel } => {
                let exists = self.vhost(vhost)?.channels.contains(channel);
                absent(exists, || Entity::Channel(vhost.clone(), channel.clone()))
            }
            DeleteChannel { vhost, channel } => {
                let exists = self.vhost(vhost)?.channels.contains(channel);
                present(exists, || Entity::Channel(vhost.clone(), channel.clone()))
            }
            AddResource { .. } | DeleteResource { .. } | PutItem { .. } | RemoveItem { .. } => {
                self.check_resource_change(change)
            }
        }
    }

    /// The vhost at `path`, or `NotFound`.
    pub fn vhost(&self, path: &VhostPath) -> Result<&VhostRecord, StateError> {
        self.vhosts
            .get(path)
            .ok_or_else(|| StateError::NotFound(Entity::Vhost(path.clone())))
    }

    /// Mutates for a change that [`State::check`] accepted; the `if let`s
    /// cannot fail then, and make a mistake harmless rather than a panic.
    fn apply_checked(&mut self, change: &Change) {
        use Change::*;
        match change {
            AddVhost {
                path,
                token,
                anonymous,
                auto_create_channels,
            } => {
                let record = VhostRecord {
                    token: token.clone(),
                    anonymous: *anonymous,
                    auto_create_channels: *auto_create_channels,
                    users: BTreeMap::new(),
                    channels: BTreeSet::new(),
                    resources: BTreeMap::new(),
                    channel_defaults: ChannelOptions::default(),
                    channel_options: BTreeMap::new(),
                };
                self.vhosts.insert(path.clone(), record);
            }
            DeleteVhost { path } => {
                self.vhosts.remove(path);
            }
            ClearVhosts => self.vhosts.clear(),
            _ => self.apply_in_vhost(change),
        }
    }

    fn apply_in_vhost(&mut self, change: &Change) {
        use Change::*;
        let Some(vhost) = change.vhost().and_then(|path| self.vhosts.get_mut(path)) else {
            return;
        };
        match change {
            SetVhostToken { token, .. } => vhost.token = token.clone(),
            SetVhostOptions {
                anonymous,
                auto_create_channels,
                ..
            } => {
                vhost.anonymous = *anonymous;
                vhost.auto_create_channels = *auto_create_channels;
            }
            AddUser {
                name,
                secret_hash,
                permissions,
                ..
            } => {
                let record = UserRecord {
                    secret_hash: secret_hash.clone(),
                    permissions: *permissions,
                };
                vhost.users.insert(name.clone(), record);
            }
            DeleteUser { name, .. } => {
                vhost.users.remove(name);
            }
            SetPermissions {
                name, permissions, ..
            } => {
                if let Some(user) = vhost.users.get_mut(name) {
                    user.permissions = *permissions;
                }
            }
            SetSecret { name, hash, .. } => {
                if let Some(user) = vhost.users.get_mut(name) {
                    user.secret_hash.clone_from(hash);
                }
            }
            AddChannel { channel, .. } => {
                vhost.channels.insert(channel.clone());
            }
            DeleteChannel { channel, .. } => {
                vhost.channels.remove(channel);
            }
            ClearChannels { .. } => vhost.channels.clear(),
            AddResource { .. } | DeleteResource { .. } | PutItem { .. } | RemoveItem { .. } => {
                super::resource::apply(vhost, change)
            }
            SetChannelOptions {
                channel: None,
                options,
                ..
            } => vhost.channel_defaults = *options,
            SetChannelOptions {
                channel: Some(channel),
                options,
                ..
            } => {
                vhost.channel_options.insert(channel.clone(), *options);
            }
            AddVhost { .. } | DeleteVhost { .. } | ClearVhosts => {}
        }
    }
}

impl Change {
    /// The vhost this change is about; `None` for [`Change::ClearVhosts`].
    pub fn vhost(&self) -> Option<&VhostPath> {
        use Change::*;
        match self {
            AddVhost { path, .. }
            | DeleteVhost { path }
            | SetVhostToken { path, .. }
            | SetVhostOptions { path, .. } => Some(path),
            AddUser { vhost, .. }
            | DeleteUser { vhost, .. }
            | SetPermissions { vhost, .. }
            | SetSecret { vhost, .. }
            | AddChannel { vhost, .. }
            | DeleteChannel { vhost, .. }
            | ClearChannels { vhost }
            | AddResource { vhost, .. }
            | DeleteResource { vhost, .. }
            | PutItem { vhost, .. }
            | RemoveItem { vhost, .. }
            | SetChannelOptions { vhost, .. } => Some(vhost),
            ClearVhosts => None,
        }
    }
}

pub(super) fn absent(exists: bool, entity: impl FnOnce() -> Entity) -> Result<(), StateError> {
    if exists {
        Err(StateError::AlreadyExists(entity()))
    } else {
        Ok(())
    }
}

pub(super) fn present(exists: bool, entity: impl FnOnce() -> Entity) -> Result<(), StateError> {
    if exists {
        Ok(())
    } else {
        Err(StateError::NotFound(entity()))
    }
}

#[cfg(test)]
#[path = "state_tests.rs"]
mod tests;
