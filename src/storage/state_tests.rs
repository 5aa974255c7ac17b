use super::*;

fn path(p: &str) -> VhostPath {
    VhostPath::parse(p).unwrap()
}

fn user_name(n: &str) -> UserName {
    UserName::parse(n).unwrap()
}

fn channel(c: &str) -> ChannelName {
    ChannelName::parse(c).unwrap()
}

fn add_vhost(p: &str) -> Change {
    Change::AddVhost {
        path: path(p),
        token: AccessToken::generate(),
        anonymous: Permissions::NONE,
        auto_create_channels: true,
    }
}

fn add_user(v: &str, n: &str) -> Change {
    Change::AddUser {
        vhost: path(v),
        name: user_name(n),
        secret_hash: None,
        permissions: Permissions::READ,
    }
}

fn add_channel(v: &str, c: &str) -> Change {
    Change::AddChannel {
        vhost: path(v),
        channel: channel(c),
    }
}

#[test]
fn every_change_applies_to_a_fitting_state() {
    let mut state = State::default();
    let token = AccessToken::generate();
    let changes = [
        add_vhost("/a"),
        add_user("/a", "bob"),
        add_channel("/a", "news"),
        Change::SetVhostToken {
            path: path("/a"),
            token: token.clone(),
        },
        Change::SetVhostOptions {
            path: path("/a"),
            anonymous: Permissions::READ,
            auto_create_channels: false,
        },
        Change::SetPermissions {
            vhost: path("/a"),
            name: user_name("bob"),
            permissions: Permissions::ALL,
        },
        Change::SetSecret {
            vhost: path("/a"),
            name: user_name("bob"),
            hash: Some("h".into()),
        },
    ];
    for change in &changes {
        state.apply(change).unwrap();
    }
    let vhost = &state.vhosts["/a"];
    assert_eq!(vhost.token, token);
    assert_eq!(vhost.anonymous, Permissions::READ);
    assert!(!vhost.auto_create_channels);
    assert_eq!(vhost.users["bob"].permissions, Permissions::ALL);
    assert_eq!(vhost.users["bob"].secret_hash.as_deref(), Some("h"));
    assert!(vhost.channels.contains("news"));

    let removals = [
        Change::DeleteChannel {
            vhost: path("/a"),
            channel: channel("news"),
        },
        Change::DeleteUser {
            vhost: path("/a"),
            name: user_name("bob"),
        },
    ];
    for change in &removals {
        state.apply(change).unwrap();
    }
    assert!(state.vhosts["/a"].channels.is_empty());
    assert!(state.vhosts["/a"].users.is_empty());
    state
        .apply(&Change::DeleteVhost { path: path("/a") })
        .unwrap();
    assert!(state.vhosts.is_empty());
}

#[test]
fn clear_changes_empty_their_collections() {
    let mut state = State::default();
    for change in [
        add_vhost("/a"),
        add_vhost("/b"),
        add_channel("/a", "x"),
        add_channel("/a", "y"),
    ] {
        state.apply(&change).unwrap();
    }
    state
        .apply(&Change::ClearChannels { vhost: path("/a") })
        .unwrap();
    assert!(state.vhosts["/a"].channels.is_empty());
    state.apply(&Change::ClearVhosts).unwrap();
    assert!(state.vhosts.is_empty());
    state.apply(&Change::ClearVhosts).unwrap();
}

#[test]
fn misfits_are_errors_with_context_and_change_nothing() {
    let mut state = State::default();
    state.apply(&add_vhost("/a")).unwrap();
    state.apply(&add_user("/a", "bob")).unwrap();
    state.apply(&add_channel("/a", "news")).unwrap();
    let before = state.clone();
    let cases = [
        (add_vhost("/a"), r#"vhost "/a" already exists"#),
        (
            add_user("/a", "bob"),
            r#"user "bob" in vhost "/a" already exists"#,
        ),
        (
            add_channel("/a", "news"),
            r#"channel "news" in vhost "/a" already exists"#,
        ),
        (add_user("/zz", "bob"), r#"vhost "/zz" not found"#),
        (
            Change::DeleteUser {
                vhost: path("/a"),
                name: user_name("eve"),
            },
            r#"user "eve" in vhost "/a" not found"#,
        ),
        (
            Change::DeleteChannel {
                vhost: path("/a"),
                channel: channel("gone"),
            },
            r#"channel "gone" in vhost "/a" not found"#,
        ),
        (
            Change::ClearChannels { vhost: path("/b") },
            r#"vhost "/b" not found"#,
        ),
    ];
    for (change, message) in cases {
        let err = state.apply(&change).unwrap_err();
        assert_eq!(err.to_string(), message);
        assert_eq!(state.check(&change), Err(err));
        assert_eq!(state, before, "{change:?} changed the state");
    }
}

#[test]
fn changes_serialize_with_an_op_tag() {
    let change = add_channel("/chat", "news");
    let json = serde_json::to_string(&change).unwrap();
    assert_eq!(
        json,
        r#"{"op":"add_channel","vhost":"/chat","channel":"news"}"#
    );
    assert_eq!(serde_json::from_str::<Change>(&json).unwrap(), change);
    assert_eq!(
        serde_json::to_string(&Change::ClearVhosts).unwrap(),
        r#"{"op":"clear_vhosts"}"#
    );
    let bad = r#"{"op":"add_channel","vhost":"/chat","channel":"no spaces"}"#;
    assert!(serde_json::from_str::<Change>(bad).is_err());
    assert_eq!(change.vhost().map(VhostPath::as_str), Some("/chat"));
}

#[test]
fn state_round_trips_through_json() {
    let mut state = State::default();
    for change in [
        add_vhost("/a"),
        add_user("/a", "bob"),
        add_channel("/a", "news"),
    ] {
        state.apply(&change).unwrap();
    }
    let json = serde_json::to_string(&state).unwrap();
    assert_eq!(serde_json::from_str::<State>(&json).unwrap(), state);
}
