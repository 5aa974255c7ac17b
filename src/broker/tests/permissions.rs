//! The permission matrix and channel auto-creation.

use serde_json::json;

use super::*;

/// A world whose `/v` gives anonymous sessions `anonymous` and auto-creates
/// channels or not.
fn world(anonymous: Permissions, auto_create: bool) -> World {
    let mut s = state();
    if let Some(v) = s.vhosts.get_mut(&vhost("/v")) {
        v.anonymous = anonymous;
        v.auto_create_channels = auto_create;
    }
    World::with(s, Limits::default())
}

fn all_permission_sets() -> impl Iterator<Item = Permissions> {
    (0..8).map(|bits| Permissions::from_bits(bits).expect("3 bits"))
}

#[test]
fn matrix_over_every_permission_set() {
    for perms in all_permission_sets() {
        let mut w = world(perms, true);
        w.backend.workers = true;
        let k = w.open(1);
        let read = perms.contains(Permissions::READ);
        let write = perms.contains(Permissions::WRITE);

        w.send(k, &subscribe("news"));
        let v = w.one(k);
        if read {
            assert_eq!(v, json!({"subscribed": "news"}), "{perms}");
        } else {
            assert_eq!(v["err"], "ACCESS_DENIED", "{perms}");
        }

        w.send(k, &broadcast("e", "news", "1"));
        let got = w.take(k);
        let expected: Vec<&str> = match (read, write) {
            (true, true) => vec![
                r#"{"e":{"channel":"news","data":1,"user":null}}"#,
                r#"{"broadcasted":"news"}"#,
            ],
            (false, true) => vec![r#"{"broadcasted":"news"}"#],
            _ => vec![],
        };
        if write {
            assert_eq!(got, expected, "{perms}");
        } else {
            assert_eq!(got.len(), 1, "{perms}");
            assert!(got[0].contains("ACCESS_DENIED"), "{perms}: {got:?}");
        }

        w.send(k, r#"{"trigger": {"event": "t"}}"#);
        let v = w.one(k);
        if write {
            assert_eq!(v, json!({"triggered": "t"}), "{perms}");
        } else {
            assert_eq!(v["err"], "ACCESS_DENIED", "{perms}");
        }

        w.send(k, &unsubscribe("news"));
        let v = w.one(k);
        if read {
            assert_eq!(v, json!({"unsubscribed": "news"}), "{perms}");
        } else {
            assert_eq!(v["err"], "ACCESS_DENIED", "{perms}");
        }
        w.check_gauges();
    }
}

#[test]
fn each_named_user_gets_exactly_its_permissions() {
    let mut w = World::new();
    w.backend.workers = true;
    for (k, name) in ["nobody", "reader", "writer", "rw", "manager", "admin"]
        .iter()
        .enumerate()
    {
        let key = w.login(k as u64 + 10, name);
        let perms = match *name {
            "nobody" => Permissions::NONE,
            "reader" => Permissions::READ,
            "writer" => Permissions::WRITE,
            "rw" => Permissions::READ | Permissions::WRITE,
            "manager" => Permissions::READ | Permissions::MANAGE,
            _ => Permissions::ALL,
        };
        w.send(key, &subscribe("news"));
        let subscribed = w.take(key)[0].contains("subscribed");
        assert_eq!(subscribed, perms.contains(Permissions::READ), "{name}");
        w.send(key, r#"{"trigger": {"event": "t"}}"#);
        let triggered = w.take(key)[0].contains("triggered");
        assert_eq!(triggered, perms.contains(Permissions::WRITE), "{name}");
    }
}

#[test]
fn auto_create_on_creates_for_any_reader_and_persists_first() {
    let mut w = world(Permissions::NONE, true);
    let k = w.login(1, "reader");
    w.send(k, &subscribe("fresh"));
    assert_eq!(w.one(k), json!({"subscribed": "fresh"}));
    assert_eq!(
        w.persist.commits,
        [Change::AddChannel {
            vhost: vhost("/v"),
            channel: channel("fresh")
        }]
    );
    assert!(w
        .broker
        .channels(&vhost("/v"))
        .contains(&(channel("fresh"), 1)));
    // A second subscriber does not create it again.
    let k2 = w.login(2, "reader");
    w.send(k2, &subscribe("fresh"));
    assert_eq!(w.one(k2), json!({"subscribed": "fresh"}));
    assert_eq!(w.persist.commits.len(), 1);
    w.check_gauges();
}

#[test]
fn auto_create_off_only_manage_creates() {
    let mut w = world(Permissions::NONE, false);
    let reader = w.login(1, "reader");
    let rw = w.login(2, "rw");
    for k in [reader, rw] {
        w.send(k, &subscribe("fresh"));
        let v = w.one(k);
        assert_eq!(
            (v["err"].as_str(), v["channel"].as_str()),
            (Some("CHANNEL_NOT_FOUND"), Some("fresh"))
        );
    }
    assert!(w.persist.commits.is_empty());
    // Existing channels are still open to READ.
    w.send(reader, &subscribe("news"));
    assert_eq!(w.one(reader), json!({"subscribed": "news"}));

    let manager = w.login(3, "manager");
    w.send(manager, &subscribe("fresh"));
    assert_eq!(w.one(manager), json!({"subscribed": "fresh"}));
    assert_eq!(w.persist.commits.len(), 1);
    // Now it exists for everyone.
    w.send(reader, &subscribe("fresh"));
    assert_eq!(w.one(reader), json!({"subscribed": "fresh"}));
}

#[test]
fn manage_without_read_cannot_subscribe() {
    let mut w = world(Permissions::MANAGE | Permissions::WRITE, false);
    let k = w.open(1);
    assert_eq!(w.error_for(k, &subscribe("fresh")), "ACCESS_DENIED");
    assert!(w.persist.commits.is_empty());
}

#[test]
fn permission_is_checked_before_existence() {
    // A session without READ learns nothing about which channels exist.
    let mut w = World::new();
    let writer = w.login(1, "writer");
    assert_eq!(
        w.error_for(writer, &unsubscribe("nowhere")),
        "ACCESS_DENIED"
    );
    let reader = w.login(2, "reader");
    assert_eq!(
        w.error_for(reader, &broadcast("e", "nowhere", "1")),
        "ACCESS_DENIED"
    );
}

#[test]
fn vhosts_are_independent() {
    let mut w = World::new();
    let here = w.subscriber(1, "rw", &["news"]);
    // /other: anonymous READ, its own "news".
    let there = w.open_on(2, "/other");
    w.send(there, &subscribe("news"));
    assert_eq!(w.one(there), json!({"subscribed": "news"}));
    w.send(here, &broadcast("e", "news", "1"));
    w.take(here);
    assert!(w.take(there).is_empty(), "a broadcast stays in its vhost");
}
