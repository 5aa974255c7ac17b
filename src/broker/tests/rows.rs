//! Every row of the client event table and every error id, through
//! `Broker::on_message`.

use serde_json::json;

use super::*;

#[test]
fn authenticate_row() {
    let mut w = World::new();
    let k = w.open(1);
    w.send(k, r#"{"authenticate": {"user": "rw"}}"#);
    assert_eq!(w.one(k), json!({"authenticated": "rw"}));
    w.send(
        k,
        &format!(r#"{{"authenticate": {{"user": "secret", "secret": "{SECRET}"}}}}"#),
    );
    assert_eq!(w.one(k), json!({"authenticated": "secret"}));

    for (message, id) in [
        (r#"{"authenticate": {}}"#, "INVALID_USER_NAME"),
        (
            r#"{"authenticate": {"user": "no such"}}"#,
            "INVALID_USER_NAME",
        ),
        (r#"{"authenticate": {"user": "ghost"}}"#, "USER_NOT_FOUND"),
        (
            r#"{"authenticate": {"user": "secret"}}"#,
            "INVALID_CREDENTIALS",
        ),
        (
            r#"{"authenticate": {"user": "secret", "secret": "wrong"}}"#,
            "INVALID_CREDENTIALS",
        ),
        (r#"{"authenticate": "rw"}"#, "INVALID_PAYLOAD"),
        (
            r#"{"authenticate": {"user": "rw", "secret": 1}}"#,
            "INVALID_PAYLOAD",
        ),
    ] {
        w.send(k, message);
        let v = w.one(k);
        assert_eq!(v["err"], id, "{message}");
        assert_eq!(v["event"], "authenticate", "{message}");
        assert!(v["message"].is_string());
    }
    // A user in another vhost does not exist here.
    let o = w.open_on(2, "/other");
    assert_eq!(
        w.error_for(o, r#"{"authenticate": {"user": "reader"}}"#),
        "USER_NOT_FOUND"
    );
}

#[test]
fn subscribe_row() {
    let mut w = World::new();
    let k = w.login(1, "reader");
    w.send(k, &subscribe("news"));
    assert_eq!(w.one(k), json!({"subscribed": "news"}));
    // Idempotent: answered again, subscribed once.
    w.send(k, &subscribe("news"));
    assert_eq!(w.one(k), json!({"subscribed": "news"}));
    assert_eq!(w.subscriptions(k), ["news"]);
    assert_eq!(w.broker.stats().subscriptions, 1);

    assert_eq!(
        w.error_for(k, r#"{"subscribe": {}}"#),
        "INVALID_CHANNEL_NAME"
    );
    w.send(k, &subscribe("bad name"));
    let v = w.one(k);
    assert_eq!(v["err"], "INVALID_CHANNEL_NAME");
    assert_eq!(v["channel"], "bad name");
    assert_eq!(
        w.error_for(k, r#"{"subscribe": ["news"]}"#),
        "INVALID_PAYLOAD"
    );
    let anon = w.open(2);
    w.send(anon, &subscribe("news"));
    let v = w.one(anon);
    assert_eq!(
        v,
        json!({"err": "ACCESS_DENIED", "event": "subscribe", "channel": "news",
        "message": v["message"]})
    );
    w.check_gauges();
}

#[test]
fn unsubscribe_row() {
    let mut w = World::new();
    let k = w.subscriber(1, "reader", &["news"]);
    w.send(k, &unsubscribe("news"));
    assert_eq!(w.one(k), json!({"unsubscribed": "news"}));
    assert!(w.subscriptions(k).is_empty());

    w.send(k, &unsubscribe("news"));
    let v = w.one(k);
    assert_eq!(
        (v["err"].as_str(), v["channel"].as_str()),
        (Some("NOT_SUBSCRIBED"), Some("news"))
    );
    assert_eq!(w.error_for(k, &unsubscribe("nowhere")), "CHANNEL_NOT_FOUND");
    assert_eq!(w.error_for(k, &unsubscribe("-bad")), "INVALID_CHANNEL_NAME");
    assert_eq!(
        w.error_for(k, r#"{"unsubscribe": {"channel": 5}}"#),
        "INVALID_PAYLOAD"
    );
    let writer = w.login(2, "writer");
    assert_eq!(w.error_for(writer, &unsubscribe("news")), "ACCESS_DENIED");
    w.check_gauges();
}

#[test]
fn broadcast_row() {
    let mut w = World::new();
    let sender = w.subscriber(1, "rw", &["news"]);
    let other = w.subscriber(2, "reader", &["news"]);
    let outsider = w.subscriber(3, "reader", &["sport"]);
    w.send(sender, &broadcast("hello", "news", r#"{"x": 1}"#));
    let delivery = r#"{"hello":{"channel":"news","data":{"x": 1},"user":"rw"}}"#;
    assert_eq!(w.take(sender), [delivery, r#"{"broadcasted":"news"}"#]);
    assert_eq!(w.take(other), [delivery]);
    assert!(w.take(outsider).is_empty());

    for (message, id) in [
        (
            r#"{"broadcast": {"channel": "news"}}"#,
            "INVALID_EVENT_NAME",
        ),
        (
            r#"{"broadcast": {"event": ":x", "channel": "news"}}"#,
            "INVALID_EVENT_NAME",
        ),
        (r#"{"broadcast": {"event": "e"}}"#, "INVALID_CHANNEL_NAME"),
        (
            r#"{"broadcast": {"event": "e", "channel": "no/pe"}}"#,
            "INVALID_CHANNEL_NAME",
        ),
        (
            r#"{"broadcast": {"event": "e", "channel": "nowhere"}}"#,
            "CHANNEL_NOT_FOUND",
        ),
        (r#"{"broadcast": []}"#, "INVALID_PAYLOAD"),
    ] {
        assert_eq!(w.error_for(sender, message), id, "{message}");
    }
    assert_eq!(
        w.error_for(other, &broadcast("e", "news", "1")),
        "ACCESS_DENIED"
    );
    // Errors deliver nothing to anyone.
    assert!(w.take(other).is_empty() && w.take(outsider).is_empty());
}

#[test]
fn broadcast_without_subscription_needs_only_write() {
    let mut w = World::new();
    let reader = w.subscriber(1, "reader", &["news"]);
    let writer = w.login(2, "writer");
    w.send(writer, &broadcast("e", "news", "null"));
    assert_eq!(w.take(writer), [r#"{"broadcasted":"news"}"#]);
    assert_eq!(
        w.take(reader),
        [r#"{"e":{"channel":"news","data":null,"user":"writer"}}"#]
    );
}

#[test]
fn trigger_row() {
    let mut w = World::new();
    w.backend.workers = true;
    let k = w.login(1, "writer");
    let sid = w.broker.sid_of(k).expect("sid").to_string();
    w.send(k, r#"{"trigger": {"event": "hello", "data": {"x": 1}}}"#);
    assert_eq!(w.one(k), json!({"triggered": "hello"}));
    assert_eq!(
        w.backend.triggers,
        [(
            vhost("/v"),
            format!(r#"{{"hello":{{"data":{{"x": 1}},"sid":"{sid}","user":"writer"}}}}"#)
        )]
    );
    assert_eq!(w.broker.stats().triggers, 1);

    assert_eq!(w.error_for(k, r#"{"trigger": {}}"#), "INVALID_EVENT_NAME");
    assert_eq!(w.error_for(k, r#"{"trigger": 1}"#), "INVALID_PAYLOAD");
    let reader = w.login(2, "reader");
    assert_eq!(
        w.error_for(reader, r#"{"trigger": {"event": "e"}}"#),
        "ACCESS_DENIED"
    );
    w.backend.workers = false;
    assert_eq!(
        w.error_for(k, r#"{"trigger": {"event": "e"}}"#),
        "ASSIGNATION_FAILED"
    );
    assert_eq!(w.backend.triggers.len(), 1);
}

#[test]
fn anonymous_trigger_has_null_user() {
    let mut s = state();
    if let Some(v) = s.vhosts.get_mut(&vhost("/v")) {
        v.anonymous = Permissions::WRITE;
    }
    let mut w = World::with(s, Limits::default());
    w.backend.workers = true;
    let k = w.open(1);
    w.send(k, r#"{"trigger": {"event": "e"}}"#);
    assert_eq!(w.one(k), json!({"triggered": "e"}));
    let v: Value = serde_json::from_str(&w.backend.triggers[0].1).expect("JSON");
    assert_eq!(v["e"]["user"], Value::Null);
    assert_eq!(v["e"]["data"], Value::Null);
}

#[test]
fn logout_row() {
    let mut w = World::new();
    let k = w.subscriber(1, "reader", &["news", "sport"]);
    w.send(k, r#"{"logout": true}"#);
    assert_eq!(w.take(k), [r#"{"loggedOut":true}"#]);
    assert!(w.subscriptions(k).is_empty());
    // Back to anonymous: no READ on /v.
    assert_eq!(w.error_for(k, &subscribe("news")), "ACCESS_DENIED");
    assert_eq!(w.error_for(k, r#"{"logout": true}"#), "ACCESS_DENIED");
    assert_eq!(w.error_for(k, r#"{"logout": 1}"#), "INVALID_PAYLOAD");
    w.check_gauges();
}

#[test]
fn disconnect_row() {
    let mut w = World::new();
    let k = w.subscriber(1, "reader", &["news"]);
    assert_eq!(
        w.error_for(k, r#"{"disconnect": false}"#),
        "INVALID_PAYLOAD"
    );
    w.send(k, r#"{"disconnect": true}"#);
    assert!(w.take(k).is_empty(), "no reply to disconnect");
    assert_eq!(w.closed(k), Some(CloseReason::Disconnect));
    assert_eq!(CloseReason::Disconnect.code(), 1000);
    assert_eq!(w.broker.stats().close_count(CloseReason::Disconnect), 1);
    assert_eq!(w.broker.session_count(&vhost("/v")), 0);
    // Later messages and the glue's own close are ignored.
    w.send(k, r#"{"logout": true}"#);
    assert!(w.take(k).is_empty());
    assert!(!w.broker.close_session(k, CloseReason::ClientClosed));
    assert_eq!(w.broker.stats().close_count(CloseReason::ClientClosed), 0);
    w.check_gauges();
}

#[test]
fn format_and_undefined_event_errors_keep_the_session_open() {
    let mut w = World::new();
    let k = w.open(1);
    for m in ["nope", "[]", "{}", r#"{"a": 1, "b": 2}"#] {
        assert_eq!(w.error_for(k, m), "INVALID_MESSAGE_FORMAT", "{m}");
    }
    {
        let (broker, mut io) = w.io();
        assert!(matches!(
            broker.on_message(k, b"\xc3\x28", &mut io),
            Outcome::Done
        ));
    }
    assert_eq!(w.error(k), "INVALID_MESSAGE_FORMAT");
    w.send(k, r#"{"publish": {}}"#);
    let v = w.one(k);
    assert_eq!(
        (v["err"].as_str(), v["event"].as_str()),
        (Some("UNDEFINED_EVENT"), Some("publish"))
    );
    assert_eq!(w.closed(k), None);
    assert_eq!(
        w.broker.stats().error_count(ErrorId::InvalidMessageFormat),
        5
    );
}

#[test]
fn subscription_limit() {
    let limits = Limits {
        max_subscriptions_per_session: 2,
        ..Limits::default()
    };
    let mut w = World::with(state(), limits);
    let k = w.subscriber(1, "reader", &["a", "b"]);
    w.send(k, &subscribe("c"));
    let v = w.one(k);
    assert_eq!(
        (v["err"].as_str(), v["channel"].as_str()),
        (Some("TOO_MANY_SUBSCRIPTIONS"), Some("c"))
    );
    // Re-subscribing to one it has is still fine; freeing a slot helps.
    w.send(k, &subscribe("a"));
    assert_eq!(w.one(k), json!({"subscribed": "a"}));
    w.send(k, &unsubscribe("a"));
    w.send(k, &subscribe("c"));
    assert_eq!(
        w.take(k),
        [r#"{"unsubscribed":"a"}"#, r#"{"subscribed":"c"}"#]
    );
}

#[test]
fn channel_limit() {
    let limits = Limits {
        max_channels_per_vhost: 2,
        ..Limits::default()
    };
    let mut w = World::with(state(), limits);
    let k = w.subscriber(1, "reader", &["news", "second"]);
    assert_eq!(w.error_for(k, &subscribe("third")), "TOO_MANY_CHANNELS");
    assert_eq!(w.broker.channels(&vhost("/v")).len(), 2);
}

#[test]
fn storage_failure_on_auto_create_is_internal_error() {
    let mut w = World::new();
    w.persist.broken = true;
    let k = w.login(1, "reader");
    assert_eq!(w.error_for(k, &subscribe("fresh")), "INTERNAL_ERROR");
    assert!(w.subscriptions(k).is_empty());
    assert!(!w
        .broker
        .channels(&vhost("/v"))
        .iter()
        .any(|(c, _)| c.as_str() == "fresh"));
    // Existing channels need no storage.
    w.send(k, &subscribe("news"));
    assert_eq!(w.one(k), json!({"subscribed": "news"}));
}

#[test]
fn oversized_messages_close_the_session() {
    let limits = Limits {
        max_message_size: 64,
        ..Limits::default()
    };
    let mut w = World::with(state(), limits);
    let k = w.open(1);
    w.send(
        k,
        &format!(r#"{{"trigger": {{"event": "{}"}}}}"#, "e".repeat(64)),
    );
    assert_eq!(w.closed(k), Some(CloseReason::MessageTooBig));
}

#[test]
fn every_error_id_is_reachable_through_on_message() {
    let limits = Limits {
        max_subscriptions_per_session: 1,
        max_channels_per_vhost: 2,
        ..Limits::default()
    };
    let mut w = World::with(state(), limits);
    let anon = w.open(1);
    let rw = w.subscriber(2, "rw", &["news"]);
    let reader2 = w.login(3, "reader");
    let reader3 = w.login(4, "reader");
    let script: [(SessionKey, String); 13] = [
        (anon, r#"{"authenticate": {"user": ""}}"#.into()),
        (anon, r#"{"authenticate": {"user": "ghost"}}"#.into()),
        (
            anon,
            r#"{"authenticate": {"user": "secret", "secret": "x"}}"#.into(),
        ),
        (anon, r#"{"subscribe": 1}"#.into()),
        (anon, subscribe("..")),
        (anon, subscribe("news")),
        (rw, broadcast("e", "nowhere", "1")),
        (reader2, unsubscribe("news")),
        (rw, r#"{"trigger": {"event": ""}}"#.into()),
        (rw, r#"{"trigger": {"event": "e"}}"#.into()),
        (anon, "[1]".into()),
        (anon, r#"{"nope": 1}"#.into()),
        (rw, subscribe("second")),
    ];
    let mut seen = BTreeSet::new();
    for (key, message) in &script {
        seen.insert(w.error_for(*key, message));
    }
    w.persist.broken = true;
    seen.insert(w.error_for(reader2, &subscribe("fresh")));
    w.persist.broken = false;
    w.send(reader2, &subscribe("third"));
    assert_eq!(w.take(reader2), [r#"{"subscribed":"third"}"#]);
    seen.insert(w.error_for(reader3, &subscribe("fourth")));
    let all: BTreeSet<String> = ErrorId::ALL
        .iter()
        .map(|id| id.as_str().to_owned())
        .collect();
    assert_eq!(seen, all);
    for id in ErrorId::ALL {
        assert!(w.broker.stats().error_count(id) >= 1, "{id} not counted");
    }
}

#[test]
fn open_session_refusals() {
    let limits = Limits {
        max_connections_per_vhost: 2,
        ..Limits::default()
    };
    let mut w = World::with(state(), limits);
    w.open(1);
    w.open(2);
    assert_eq!(
        w.broker.open_session(SessionKey(3), &vhost("/v")),
        Err(Refusal::TooManyConnections {
            vhost: vhost("/v"),
            limit: 2
        })
    );
    assert_eq!(
        w.broker.open_session(SessionKey(3), &vhost("/nope")),
        Err(Refusal::UnknownVhost(vhost("/nope")))
    );
    assert_eq!(
        w.broker.open_session(SessionKey(1), &vhost("/other")),
        Err(Refusal::KeyInUse(SessionKey(1)))
    );
    // Another vhost has its own count; a closed session frees a slot.
    w.open_on(3, "/other");
    assert!(w
        .broker
        .close_session(SessionKey(1), CloseReason::ClientClosed));
    w.open(4);
    let stats = w.broker.stats();
    assert_eq!(
        (
            stats.sessions,
            stats.sessions_opened,
            stats.sessions_refused
        ),
        (3, 4, 3)
    );
    assert_eq!(stats.close_count(CloseReason::ClientClosed), 1);
}

#[test]
fn session_ids_are_unique_and_map_back() {
    let mut w = World::new();
    let mut sids = BTreeSet::new();
    for k in 0..100 {
        let sid = w
            .broker
            .open_session(SessionKey(k), &vhost("/v"))
            .expect("open");
        assert_eq!(w.broker.session_by_sid(&sid), Some(SessionKey(k)));
        assert!(sids.insert(sid));
    }
    let first = sids.iter().next().cloned().expect("one");
    let key = w.broker.session_by_sid(&first).expect("key");
    w.broker.close_session(key, CloseReason::ClientClosed);
    assert_eq!(w.broker.session_by_sid(&first), None);
}

#[test]
fn counters_track_traffic() {
    let mut w = World::new();
    let k = w.subscriber(1, "rw", &["news"]);
    let before = w.broker.stats().clone();
    let m = broadcast("e", "news", "1");
    w.send(k, &m);
    let sent: usize = w.take(k).iter().map(String::len).sum();
    let s = w.broker.stats();
    assert_eq!(s.messages_in - before.messages_in, 1);
    assert_eq!(s.bytes_in - before.bytes_in, m.len() as u64);
    assert_eq!(s.messages_out - before.messages_out, 2);
    assert_eq!(s.bytes_out - before.bytes_out, sent as u64);
    assert_eq!(s.broadcasts - before.broadcasts, 1);
    assert_eq!(s.deliveries - before.deliveries, 1);
    let vs = w.broker.vhost_stats();
    let v = vs.iter().find(|v| v.vhost == vhost("/v")).expect("/v");
    assert_eq!(
        (v.sessions, v.authenticated, v.channels, v.subscriptions),
        (1, 1, 1, 1)
    );
}
