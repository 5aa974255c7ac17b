//! The changes between two states: what a node that replaces its whole
//! state (a cluster snapshot) tells its sessions and its data path, so
//! they end up as if each change had been applied one by one.

use super::state::{Change, State, UserRecord, VhostRecord};
use crate::name::{UserName, VhostPath};

impl State {
    /// Changes that turn `self` into `new`, each applicable in turn:
    /// deleted vhosts first, then changed ones, then new ones.
    pub fn changes_to(&self, new: &State) -> Vec<Change> {
        let mut out = Vec::new();
        for path in self.vhosts.keys() {
            if !new.vhosts.contains_key(path) {
                out.push(Change::DeleteVhost { path: path.clone() });
            }
        }
        for (path, after) in &new.vhosts {
            match self.vhosts.get(path) {
                Some(before) => vhost_changes(path, before, after, &mut out),
                None => {
                    out.push(Change::AddVhost {
                        path: path.clone(),
                        token: after.token.clone(),
                        anonymous: after.anonymous,
                        auto_create_channels: after.auto_create_channels,
                    });
                    let empty = VhostRecord {
                        users: Default::default(),
                        channels: Default::default(),
                        resources: Default::default(),
                        channel_defaults: Default::default(),
                        channel_options: Default::default(),
                        ..after.clone()
                    };
                    vhost_changes(path, &empty, after, &mut out);
                }
            }
        }
        out
    }
}

/// Changes inside one vhost that exists in both states.
fn vhost_changes(
    path: &VhostPath,
    before: &VhostRecord,
    after: &VhostRecord,
    out: &mut Vec<Change>,
) {
    if before.token != after.token {
        out.push(Change::SetVhostToken {
            path: path.clone(),
            token: after.token.clone(),
        });
    }
    if (before.anonymous, before.auto_create_channels)
        != (after.anonymous, after.auto_create_channels)
    {
        out.push(Change::SetVhostOptions {
            path: path.clone(),
            anonymous: after.anonymous,
            auto_create_channels: after.auto_create_channels,
        });
    }
    for name in before.users.keys() {
        if !after.users.contains_key(name) {
            out.push(Change::DeleteUser {
                vhost: path.clone(),
                name: name.clone(),
            });
        }
    }
    for (name, user) in &after.users {
        match before.users.get(name) {
            Some(old) => user_changes(path, name, old, user, out),
            None => out.push(Change::AddUser {
                vhost: path.clone(),
                name: name.clone(),
                secret_hash: user.secret_hash.clone(),
                permissions: user.permissions,
            }),
        }
    }
    for channel in before.channels.difference(&after.channels) {
        out.push(Change::DeleteChannel {
            vhost: path.clone(),
            channel: channel.clone(),
        });
    }
    for channel in after.channels.difference(&before.channels) {
        out.push(Change::AddChannel {
            vhost: path.clone(),
            channel: channel.clone(),
        });
    }
    super::resource::changes(path, before, after, out);
    if before.channel_defaults != after.channel_defaults {
        out.push(Change::SetChannelOptions {
            vhost: path.clone(),
            channel: None,
            options: after.channel_defaults,
        });
    }
    for (channel, options) in &after.channel_options {
        if before.channel_options.get(channel) != Some(options) {
            out.push(Change::SetChannelOptions {
                vhost: path.clone(),
                channel: Some(channel.clone()),
                options: *options,
            });
        }
    }
}

fn user_changes(
    path: &VhostPath,
    name: &UserName,
    before: &UserRecord,
    after: &UserRecord,
    out: &mut Vec<Change>,
) {
    if before.permissions != after.permissions {
        out.push(Change::SetPermissions {
            vhost: path.clone(),
            name: name.clone(),
            permissions: after.permissions,
        });
    }
    if before.secret_hash != after.secret_hash {
        out.push(Change::SetSecret {
            vhost: path.clone(),
            name: name.clone(),
            hash: after.secret_hash.clone(),
        });
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use super::*;
    use crate::name::{AccessToken, ChannelName, Permissions};

    fn vhost(users: &[(&str, Permissions)], channels: &[&str]) -> VhostRecord {
        VhostRecord {
            resources: Default::default(),
            token: AccessToken::generate(),
            anonymous: Permissions::NONE,
            auto_create_channels: true,
            users: users
                .iter()
                .map(|(n, p)| {
                    let record = UserRecord {
                        secret_hash: None,
                        permissions: *p,
                    };
                    (UserName::parse(n).unwrap(), record)
                })
                .collect(),
            channels: channels
                .iter()
                .map(|c| ChannelName::parse(c).unwrap())
                .collect::<BTreeSet<_>>(),
            channel_defaults: Default::default(),
            channel_options: Default::default(),
        }
    }

    fn state(vhosts: Vec<(&str, VhostRecord)>) -> State {
        State {
            vhosts: vhosts
                .into_iter()
                .map(|(p, v)| (VhostPath::parse(p).unwrap(), v))
                .collect::<BTreeMap<_, _>>(),
        }
    }

    /// Applying `old.changes_to(new)` to `old` gives `new`, every change
    /// applying cleanly.
    fn check(old: &State, new: &State) -> Vec<Change> {
        let changes = old.changes_to(new);
        let mut replayed = old.clone();
        for change in &changes {
            replayed
                .apply(change)
                .unwrap_or_else(|e| panic!("{change:?} does not apply: {e}"));
        }
        assert_eq!(&replayed, new);
        changes
    }

    #[test]
    fn equal_states_need_no_change() {
        let s = state(vec![("/a", vhost(&[("u", Permissions::READ)], &["c"]))]);
        assert!(check(&s, &s).is_empty());
    }

    #[test]
    fn every_kind_of_difference_is_carried_over() {
        use Permissions as P;
        let kept = vhost(
            &[("same", P::READ), ("gone", P::READ), ("perm", P::READ)],
            &["x", "y"],
        );
        let mut changed = kept.clone();
        changed.token = AccessToken::generate();
        changed.anonymous = P::READ;
        changed.users.remove(&UserName::parse("gone").unwrap());
        changed
            .users
            .get_mut(&UserName::parse("perm").unwrap())
            .unwrap()
            .permissions = P::ALL;
        changed
            .users
            .get_mut(&UserName::parse("same").unwrap())
            .unwrap()
            .secret_hash = Some("$argon2id$fake".into());
        changed.users.insert(
            UserName::parse("new").unwrap(),
            UserRecord {
                secret_hash: None,
                permissions: P::WRITE,
            },
        );
        changed.channels.remove(&ChannelName::parse("x").unwrap());
        changed.channels.insert(ChannelName::parse("z").unwrap());
        let old = state(vec![
            ("/kept", kept),
            ("/deleted", vhost(&[("u", P::READ)], &["c"])),
        ]);
        let new = state(vec![
            ("/kept", changed),
            ("/added", vhost(&[("v", P::ALL)], &["d", "e"])),
        ]);
        let changes = check(&old, &new);
        assert!(matches!(changes[0], Change::DeleteVhost { .. }));
        assert_eq!(changes.len(), 1 + 8 + 4, "{changes:#?}");
        assert!(check(&new, &old).len() > 1);
        // /kept: the vhost, 3 users, 2 channels; /added: the vhost, 1, 2.
        assert_eq!(check(&State::default(), &new).len(), 6 + 4);
        assert_eq!(check(&new, &State::default()).len(), 2);
    }
}
