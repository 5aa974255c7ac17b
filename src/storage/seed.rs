//! Config-declared vhosts, users and channels, ensured at every start.

use super::state::{Change, State};
use crate::config::{Config, VhostConfig};
use crate::name::AccessToken;

/// The changes that bring `state` in line with the vhosts the config
/// declares, in an order that applies cleanly:
///
/// - a missing vhost is created with a new access token; an existing one
///   keeps its token and gets the config's anonymous permissions and
///   auto-creation setting;
/// - users are created, or reset to the config's secret hash and
///   permissions (the config owns the users it declares);
/// - missing channels are created.
///
/// Nothing the config does not mention is removed: vhosts, users and
/// channels added at run time stay.
pub fn seed_from_config(config: &Config, state: &State) -> Vec<Change> {
    let mut changes = Vec::new();
    for vhost in &config.vhosts {
        seed_vhost(vhost, state, &mut changes);
    }
    changes
}

fn seed_vhost(vhost: &VhostConfig, state: &State, changes: &mut Vec<Change>) {
    let path = &vhost.path;
    let existing = state.vhosts.get(path);
    match existing {
        None => changes.push(Change::AddVhost {
            path: path.clone(),
            token: AccessToken::generate(),
            anonymous: vhost.anonymous,
            auto_create_channels: vhost.auto_create_channels,
        }),
        Some(record)
            if record.anonymous != vhost.anonymous
                || record.auto_create_channels != vhost.auto_create_channels =>
        {
            changes.push(Change::SetVhostOptions {
                path: path.clone(),
                anonymous: vhost.anonymous,
                auto_create_channels: vhost.auto_create_channels,
            });
        }
        Some(_) => {}
    }
    let defaults = vhost.channel_defaults();
    if existing.map_or(!defaults.is_default(), |r| r.channel_defaults != defaults) {
        changes.push(Change::SetChannelOptions {
            vhost: path.clone(),
            channel: None,
            options: defaults,
        });
    }
    for user in &vhost.users {
        let stored = existing.and_then(|record| record.users.get(&user.name));
        let Some(stored) = stored else {
            changes.push(Change::AddUser {
                vhost: path.clone(),
                name: user.name.clone(),
                secret_hash: user.secret_hash.clone(),
                permissions: user.permissions,
            });
            continue;
        };
        if stored.permissions != user.permissions {
            changes.push(Change::SetPermissions {
                vhost: path.clone(),
                name: user.name.clone(),
                permissions: user.permissions,
            });
        }
        if stored.secret_hash != user.secret_hash {
            changes.push(Change::SetSecret {
                vhost: path.clone(),
                name: user.name.clone(),
                hash: user.secret_hash.clone(),
            });
        }
    }
    for channel in &vhost.channels {
        if !existing.is_some_and(|record| record.channels.contains(channel)) {
            changes.push(Change::AddChannel {
                vhost: path.clone(),
                channel: channel.clone(),
            });
        }
    }
    for resource in &vhost.resources {
        if !existing.is_some_and(|record| record.resources.contains_key(&resource.name)) {
            changes.push(Change::AddResource {
                vhost: path.clone(),
                name: resource.name.clone(),
                source: resource.source,
                id_field: resource.id_field.clone(),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::name::Permissions;

    const CONFIG: &str = r#"
        [[vhost]]
        path = "/chat"
        anonymous = ["READ"]
        channels = ["news", "lobby"]
        [[vhost.user]]
        name = "bob"
        permissions = ["READ", "WRITE"]
    "#;

    fn apply_all(state: &mut State, changes: &[Change]) {
        for change in changes {
            state.apply(change).unwrap();
        }
    }

    #[test]
    fn seeds_an_empty_state_and_is_then_idempotent() {
        let config = Config::parse(CONFIG).unwrap();
        let mut state = State::default();
        let changes = seed_from_config(&config, &state);
        assert_eq!(changes.len(), 4, "{changes:#?}");
        apply_all(&mut state, &changes);
        let vhost = &state.vhosts["/chat"];
        assert_eq!(vhost.anonymous, Permissions::READ);
        assert!(vhost.auto_create_channels);
        assert_eq!(vhost.channels.len(), 2);
        assert_eq!(
            vhost.users["bob"].permissions,
            Permissions::READ | Permissions::WRITE
        );
        assert_eq!(seed_from_config(&config, &state), []);
    }

    #[test]
    fn resets_what_the_config_owns_and_keeps_the_rest() {
        let config = Config::parse(CONFIG).unwrap();
        let mut state = State::default();
        let changes = seed_from_config(&config, &state);
        apply_all(&mut state, &changes);
        let token = state.vhosts["/chat"].token.clone();
        let path = config.vhosts[0].path.clone();
        let bob = config.vhosts[0].users[0].name.clone();
        apply_all(
            &mut state,
            &[
                Change::SetPermissions {
                    vhost: path.clone(),
                    name: bob.clone(),
                    permissions: Permissions::ALL,
                },
                Change::SetSecret {
                    vhost: path.clone(),
                    name: bob.clone(),
                    hash: Some("$argon2id$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$aGFzaA".into()),
                },
                Change::SetVhostOptions {
                    path: path.clone(),
                    anonymous: Permissions::NONE,
                    auto_create_channels: false,
                },
                Change::DeleteChannel {
                    vhost: path.clone(),
                    channel: "news".parse().unwrap(),
                },
                Change::AddChannel {
                    vhost: path.clone(),
                    channel: "extra".parse().unwrap(),
                },
            ],
        );
        let changes = seed_from_config(&config, &state);
        assert_eq!(changes.len(), 4, "{changes:#?}");
        apply_all(&mut state, &changes);
        let vhost = &state.vhosts["/chat"];
        assert_eq!(vhost.token, token, "an existing vhost keeps its token");
        assert_eq!(vhost.anonymous, Permissions::READ);
        assert!(vhost.auto_create_channels);
        assert_eq!(vhost.users["bob"].secret_hash, None);
        assert_eq!(
            vhost.users["bob"].permissions,
            Permissions::READ | Permissions::WRITE
        );
        assert!(vhost.channels.contains("news") && vhost.channels.contains("extra"));
    }
}
