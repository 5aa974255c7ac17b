//! Backend-side operations: BC, OC, CC, DS.

use serde_json::value::RawValue;

use super::*;

fn event(name: &str) -> EventName {
    EventName::parse(name).expect("event")
}

fn raw(json: &str) -> Box<RawValue> {
    RawValue::from_string(json.to_owned()).expect("JSON")
}

#[test]
fn backend_broadcast_reaches_subscribers_with_null_user() {
    let mut w = World::new();
    let a = w.subscriber(1, "reader", &["news"]);
    let b = w.subscriber(2, "reader", &["news"]);
    let data = raw(r#"{"x": [1, 2]}"#);
    let (broker, mut io) = w.io();
    let n = broker
        .backend_broadcast(
            &vhost("/v"),
            &channel("news"),
            &event("hi"),
            Some(&data),
            &mut io,
        )
        .expect("broadcast");
    assert_eq!(n, 2);
    let expected = r#"{"hi":{"channel":"news","data":{"x": [1, 2]},"user":null}}"#;
    assert_eq!(w.take(a), [expected]);
    assert_eq!(w.take(b), [expected]);
}

#[test]
fn backend_broadcast_errors() {
    let mut w = World::new();
    let (broker, mut io) = w.io();
    let err = broker
        .backend_broadcast(
            &vhost("/v"),
            &channel("nowhere"),
            &event("e"),
            None,
            &mut io,
        )
        .expect_err("no channel");
    assert_eq!(err.code(), 454);
    let err = broker
        .backend_broadcast(
            &vhost("/nope"),
            &channel("news"),
            &event("e"),
            None,
            &mut io,
        )
        .expect_err("no vhost");
    assert_eq!(err, BackendError::VhostNotFound(vhost("/nope")));
    assert_eq!(err.code(), 597);
}

#[test]
fn backend_broadcast_closes_slow_consumers() {
    let mut w = World::new();
    let a = w.subscriber(1, "reader", &["news"]);
    let slow = w.subscriber(2, "reader", &["news"]);
    w.out.full.insert(slow);
    let (broker, mut io) = w.io();
    let n = broker
        .backend_broadcast(&vhost("/v"), &channel("news"), &event("e"), None, &mut io)
        .expect("broadcast");
    assert_eq!(n, 1);
    assert_eq!(w.take(a).len(), 1);
    assert_eq!(w.closed(slow), Some(CloseReason::SlowConsumer));
}

#[test]
fn open_channel_creates_durably_once() {
    let mut w = World::new();
    let (broker, mut io) = w.io();
    assert_eq!(
        broker.open_channel(&vhost("/v"), &channel("fresh"), &mut io),
        Ok(ChannelOp::Done)
    );
    assert_eq!(
        broker.open_channel(&vhost("/v"), &channel("fresh"), &mut io),
        Ok(ChannelOp::Done)
    );
    assert_eq!(
        broker.open_channel(&vhost("/v"), &channel("news"), &mut io),
        Ok(ChannelOp::Done)
    );
    assert_eq!(
        w.persist.commits,
        [Change::AddChannel {
            vhost: vhost("/v"),
            channel: channel("fresh")
        }]
    );
    w.persist.broken = true;
    let (broker, mut io) = w.io();
    let err = broker
        .open_channel(&vhost("/v"), &channel("other"), &mut io)
        .expect_err("storage down");
    assert!(matches!(err, BackendError::Storage { .. }));
    assert!(!broker
        .channels(&vhost("/v"))
        .iter()
        .any(|(c, _)| c.as_str() == "other"));
    w.check_gauges();
}

#[test]
fn open_channel_respects_the_limit() {
    let limits = Limits {
        max_channels_per_vhost: 1,
        ..Limits::default()
    };
    let mut w = World::with(state(), limits);
    let (broker, mut io) = w.io();
    let err = broker
        .open_channel(&vhost("/v"), &channel("fresh"), &mut io)
        .expect_err("limit");
    assert_eq!(
        err,
        BackendError::TooManyChannels {
            vhost: vhost("/v"),
            limit: 1
        }
    );
}

#[test]
fn close_channel_unsubscribes_and_persists() {
    let mut w = World::new();
    let a = w.subscriber(1, "reader", &["news"]);
    let (broker, mut io) = w.io();
    broker
        .close_channel(&vhost("/v"), &channel("news"), &mut io)
        .expect("close");
    assert_eq!(w.take(a), [r#"{"unsubscribed":"news"}"#]);
    assert_eq!(
        w.persist.commits,
        [Change::DeleteChannel {
            vhost: vhost("/v"),
            channel: channel("news")
        }]
    );
    let (broker, mut io) = w.io();
    let err = broker
        .close_channel(&vhost("/v"), &channel("news"), &mut io)
        .expect_err("gone");
    assert_eq!(err.code(), 454);
    w.check_gauges();
}

#[test]
fn direct_messages_reach_one_session_by_sid() {
    let mut w = World::new();
    let a = w.open(1);
    let b = w.open(2);
    let sid = w.broker.sid_of(a).expect("sid").clone();
    assert_eq!(w.broker.session_by_sid(&sid), Some(a));
    let data = raw(r#"{"ok": true}"#);
    let (broker, mut io) = w.io();
    broker
        .direct(&vhost("/v"), &sid, &event("reply"), Some(&data), &mut io)
        .expect("direct");
    assert_eq!(w.take(a), [r#"{"reply":{"ok": true}}"#]);
    assert!(w.take(b).is_empty());
    assert_eq!(w.broker.stats().directs, 1);

    // A backend of another vhost cannot reach the session.
    let (broker, mut io) = w.io();
    assert_eq!(
        broker.direct(&vhost("/other"), &sid, &event("reply"), None, &mut io),
        Err(NotFound(sid.clone()))
    );
    assert!(w.take(a).is_empty());

    w.broker.close_session(a, CloseReason::ClientClosed);
    let (broker, mut io) = w.io();
    assert_eq!(
        broker.direct(&vhost("/v"), &sid, &event("reply"), None, &mut io),
        Err(NotFound(sid.clone()))
    );
}
