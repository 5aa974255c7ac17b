//! `apply_change`: admin changes made while sessions are connected.

use serde_json::json;

use super::*;

fn apply(w: &mut World, change: Change) {
    let (broker, mut io) = w.io();
    broker.apply_change(&change, &mut io);
    w.check_gauges();
}

#[test]
fn delete_channel_unsubscribes_its_subscribers() {
    let mut w = World::new();
    let a = w.subscriber(1, "reader", &["news", "sport"]);
    let b = w.subscriber(2, "reader", &["news"]);
    let c = w.subscriber(3, "reader", &["sport"]);
    apply(
        &mut w,
        Change::DeleteChannel {
            vhost: vhost("/v"),
            channel: channel("news"),
        },
    );
    assert_eq!(w.take(a), [r#"{"unsubscribed":"news"}"#]);
    assert_eq!(w.take(b), [r#"{"unsubscribed":"news"}"#]);
    assert!(w.take(c).is_empty());
    assert_eq!(w.subscriptions(a), ["sport"]);
    assert!(w.subscriptions(b).is_empty());
    assert!(!w
        .broker
        .channels(&vhost("/v"))
        .iter()
        .any(|(n, _)| n.as_str() == "news"));
    // The channel is gone: broadcasting to it fails; subscribing re-creates.
    let writer = w.login(4, "writer");
    assert_eq!(
        w.error_for(writer, &broadcast("e", "news", "1")),
        "CHANNEL_NOT_FOUND"
    );
    w.send(b, &subscribe("news"));
    assert_eq!(w.one(b), json!({"subscribed": "news"}));
}

#[test]
fn clear_channels_unsubscribes_everyone() {
    let mut w = World::new();
    let a = w.subscriber(1, "reader", &["news", "sport"]);
    apply(&mut w, Change::ClearChannels { vhost: vhost("/v") });
    assert_eq!(
        w.take(a),
        [r#"{"unsubscribed":"news"}"#, r#"{"unsubscribed":"sport"}"#]
    );
    assert!(w.broker.channels(&vhost("/v")).is_empty());
    assert_eq!(w.broker.channels(&vhost("/other")).len(), 1);
}

#[test]
fn add_channel_makes_it_usable_without_auto_create() {
    let mut s = state();
    if let Some(v) = s.vhosts.get_mut(&vhost("/v")) {
        v.auto_create_channels = false;
    }
    let mut w = World::with(s, Limits::default());
    let k = w.login(1, "reader");
    assert_eq!(w.error_for(k, &subscribe("fresh")), "CHANNEL_NOT_FOUND");
    apply(
        &mut w,
        Change::AddChannel {
            vhost: vhost("/v"),
            channel: channel("fresh"),
        },
    );
    // Applying the same change twice (e.g. echoed by replication) is harmless.
    apply(
        &mut w,
        Change::AddChannel {
            vhost: vhost("/v"),
            channel: channel("fresh"),
        },
    );
    w.send(k, &subscribe("fresh"));
    assert_eq!(w.one(k), json!({"subscribed": "fresh"}));
}

#[test]
fn losing_read_drops_subscriptions_at_once() {
    let mut w = World::new();
    let k = w.subscriber(1, "rw", &["news", "sport"]);
    let other = w.subscriber(2, "reader", &["news"]);
    apply(
        &mut w,
        Change::SetPermissions {
            vhost: vhost("/v"),
            name: user("rw"),
            permissions: Permissions::WRITE,
        },
    );
    assert_eq!(
        w.take(k),
        [r#"{"unsubscribed":"news"}"#, r#"{"unsubscribed":"sport"}"#]
    );
    assert!(w.take(other).is_empty(), "other users are untouched");
    assert_eq!(w.error_for(k, &subscribe("news")), "ACCESS_DENIED");
    // Granting READ back allows subscribing again; nothing is restored.
    apply(
        &mut w,
        Change::SetPermissions {
            vhost: vhost("/v"),
            name: user("rw"),
            permissions: Permissions::ALL,
        },
    );
    assert!(w.take(k).is_empty());
    w.send(k, &subscribe("news"));
    assert_eq!(w.one(k), json!({"subscribed": "news"}));
}

#[test]
fn losing_write_stops_broadcast_but_keeps_subscriptions() {
    let mut w = World::new();
    let k = w.subscriber(1, "rw", &["news"]);
    apply(
        &mut w,
        Change::SetPermissions {
            vhost: vhost("/v"),
            name: user("rw"),
            permissions: Permissions::READ,
        },
    );
    assert!(w.take(k).is_empty());
    assert_eq!(w.subscriptions(k), ["news"]);
    assert_eq!(
        w.error_for(k, &broadcast("e", "news", "1")),
        "ACCESS_DENIED"
    );
}

#[test]
fn deleting_a_user_makes_its_sessions_anonymous() {
    let mut s = state();
    if let Some(v) = s.vhosts.get_mut(&vhost("/v")) {
        v.anonymous = Permissions::READ;
    }
    let mut w = World::with(s, Limits::default());
    let k = w.subscriber(1, "rw", &["news"]);
    let other = w.subscriber(2, "reader", &["news"]);
    apply(
        &mut w,
        Change::DeleteUser {
            vhost: vhost("/v"),
            name: user("rw"),
        },
    );
    // Anonymous READ keeps the subscription; the client is told it is logged out.
    assert_eq!(w.take(k), [r#"{"loggedOut":true}"#]);
    assert_eq!(w.subscriptions(k), ["news"]);
    assert!(w.take(other).is_empty());
    assert_eq!(
        w.error_for(k, &broadcast("e", "news", "1")),
        "ACCESS_DENIED"
    );
    assert_eq!(w.error_for(k, r#"{"logout": true}"#), "ACCESS_DENIED");
    assert_eq!(
        w.error_for(k, r#"{"authenticate": {"user": "rw"}}"#),
        "USER_NOT_FOUND"
    );
}

#[test]
fn deleting_a_user_without_anonymous_read_drops_subscriptions() {
    let mut w = World::new();
    let k = w.subscriber(1, "rw", &["news"]);
    apply(
        &mut w,
        Change::DeleteUser {
            vhost: vhost("/v"),
            name: user("rw"),
        },
    );
    assert_eq!(
        w.take(k),
        [r#"{"unsubscribed":"news"}"#, r#"{"loggedOut":true}"#]
    );
    assert!(w.subscriptions(k).is_empty());
}

#[test]
fn added_users_can_authenticate() {
    let mut w = World::new();
    let k = w.open(1);
    assert_eq!(
        w.error_for(k, r#"{"authenticate": {"user": "newbie"}}"#),
        "USER_NOT_FOUND"
    );
    apply(
        &mut w,
        Change::AddUser {
            vhost: vhost("/v"),
            name: user("newbie"),
            secret_hash: None,
            permissions: Permissions::READ,
        },
    );
    w.send(k, r#"{"authenticate": {"user": "newbie"}}"#);
    assert_eq!(w.one(k), json!({"authenticated": "newbie"}));
}

#[test]
fn set_secret_keeps_existing_sessions() {
    let mut w = World::new();
    let k = w.subscriber(1, "rw", &["news"]);
    apply(
        &mut w,
        Change::SetSecret {
            vhost: vhost("/v"),
            name: user("rw"),
            hash: Some(crate::storage::hash_secret("new")),
        },
    );
    assert!(w.take(k).is_empty());
    assert_eq!(w.subscriptions(k), ["news"]);
    let k2 = w.open(2);
    assert_eq!(
        w.error_for(k2, r#"{"authenticate": {"user": "rw"}}"#),
        "INVALID_CREDENTIALS"
    );
}

#[test]
fn vhost_options_apply_to_anonymous_sessions() {
    let mut s = state();
    if let Some(v) = s.vhosts.get_mut(&vhost("/v")) {
        v.anonymous = Permissions::READ;
    }
    let mut w = World::with(s, Limits::default());
    let anon = w.open(1);
    w.send(anon, &subscribe("news"));
    w.take(anon);
    let user_session = w.subscriber(2, "reader", &["news"]);
    apply(
        &mut w,
        Change::SetVhostOptions {
            path: vhost("/v"),
            anonymous: Permissions::NONE,
            auto_create_channels: false,
        },
    );
    assert_eq!(w.take(anon), [r#"{"unsubscribed":"news"}"#]);
    assert!(w.take(user_session).is_empty());
    assert_eq!(
        w.error_for(user_session, &subscribe("fresh")),
        "CHANNEL_NOT_FOUND"
    );
}

#[test]
fn deleting_a_vhost_closes_its_sessions() {
    let mut w = World::new();
    let a = w.subscriber(1, "reader", &["news"]);
    let b = w.open(2);
    let there = w.open_on(3, "/other");
    apply(&mut w, Change::DeleteVhost { path: vhost("/v") });
    assert_eq!(w.closed(a), Some(CloseReason::VhostDeleted));
    assert_eq!(w.closed(b), Some(CloseReason::VhostDeleted));
    assert_eq!(w.closed(there), None);
    assert_eq!(w.broker.stats().close_count(CloseReason::VhostDeleted), 2);
    assert_eq!(
        w.broker.open_session(SessionKey(9), &vhost("/v")),
        Err(Refusal::UnknownVhost(vhost("/v")))
    );
    // The glue's own close afterwards is a no-op.
    assert!(!w.broker.close_session(a, CloseReason::ConnectionLost));
}

#[test]
fn clear_vhosts_and_add_vhost() {
    let mut w = World::new();
    let a = w.open(1);
    let b = w.open_on(2, "/other");
    apply(&mut w, Change::ClearVhosts);
    assert_eq!(w.closed(a), Some(CloseReason::VhostDeleted));
    assert_eq!(w.closed(b), Some(CloseReason::VhostDeleted));
    assert!(w.broker.vhost_stats().is_empty());
    apply(
        &mut w,
        Change::AddVhost {
            path: vhost("/new"),
            token: AccessToken::generate(),
            anonymous: Permissions::READ,
            auto_create_channels: true,
        },
    );
    let k = w.open_on(3, "/new");
    w.send(k, &subscribe("c"));
    assert_eq!(w.one(k), json!({"subscribed": "c"}));
}

#[test]
fn changes_for_unknown_things_are_ignored() {
    let mut w = World::new();
    for change in [
        Change::DeleteVhost {
            path: vhost("/nope"),
        },
        Change::DeleteChannel {
            vhost: vhost("/v"),
            channel: channel("nope"),
        },
        Change::DeleteUser {
            vhost: vhost("/nope"),
            name: user("x"),
        },
        Change::SetPermissions {
            vhost: vhost("/v"),
            name: user("ghost"),
            permissions: Permissions::ALL,
        },
        Change::AddChannel {
            vhost: vhost("/nope"),
            channel: channel("c"),
        },
        Change::SetVhostToken {
            path: vhost("/v"),
            token: AccessToken::generate(),
        },
    ] {
        apply(&mut w, change);
    }
    assert!(w.out.sent.is_empty() && w.out.closed.is_empty());
}
