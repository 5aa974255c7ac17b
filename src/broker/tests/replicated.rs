//! On a cluster the broker's own channel changes wait for the cluster:
//! nothing is acknowledged or changed before the commit, and the session's
//! later messages are held meanwhile.

use super::*;

fn clustered() -> World {
    let mut w = World::new();
    w.persist.replicated = true;
    w
}

/// Sends `message` from `key` and returns the outcome, unfinished.
fn start(w: &mut World, key: SessionKey, message: &str) -> Outcome {
    let (broker, mut io) = w.io();
    broker.on_message(key, message.as_bytes(), &mut io)
}

fn pending(outcome: Outcome) -> PendingChange {
    match outcome {
        Outcome::Replicate(pending) => pending,
        other => panic!("expected a change for the cluster, got {other:?}"),
    }
}

fn add(c: &str) -> Change {
    Change::AddChannel {
        vhost: vhost("/v"),
        channel: channel(c),
    }
}

/// The cluster committed `pending`'s change: it is applied, then answered.
fn commit(w: &mut World, pending: PendingChange) -> Outcome {
    let (broker, mut io) = w.io();
    broker.apply_change(pending.change(), &mut io);
    broker.finish_replicate(pending, Ok(()), &mut io)
}

fn has_channel(w: &World, c: &str) -> bool {
    w.broker
        .channels(&vhost("/v"))
        .iter()
        .any(|(name, _)| name.as_str() == c)
}

#[test]
fn a_subscribe_that_creates_a_channel_is_answered_after_the_commit() {
    let mut w = clustered();
    let k = w.login(1, "rw");
    let p = pending(start(&mut w, k, &subscribe("fresh")));
    assert_eq!(p.change(), &add("fresh"));
    assert_eq!(p.key(), k);
    // Later messages wait, unanswered, in order.
    assert!(matches!(
        start(&mut w, k, &subscribe("news")),
        Outcome::Done
    ));
    assert!(matches!(
        start(&mut w, k, &broadcast("e", "fresh", "1")),
        Outcome::Done
    ));
    assert!(w.take(k).is_empty(), "nothing before the cluster answers");
    assert!(!has_channel(&w, "fresh"), "no channel before the commit");
    assert!(
        w.persist.commits.is_empty(),
        "the broker commits nothing itself"
    );

    assert!(matches!(commit(&mut w, p), Outcome::Done));
    assert_eq!(
        w.take(k),
        [
            r#"{"subscribed":"fresh"}"#,
            r#"{"subscribed":"news"}"#,
            r#"{"e":{"channel":"fresh","data":1,"user":"rw"}}"#,
            r#"{"broadcasted":"fresh"}"#,
        ]
    );
    assert_eq!(w.subscriptions(k), ["fresh", "news"]);
    w.check_gauges();
}

#[test]
fn other_sessions_are_not_held() {
    let mut w = clustered();
    let waiting = w.login(1, "rw");
    let other = w.subscriber(2, "rw", &["news"]);
    let p = pending(start(&mut w, waiting, &subscribe("fresh")));
    w.send(other, &broadcast("e", "news", "2"));
    assert_eq!(
        w.take(other),
        [
            r#"{"e":{"channel":"news","data":2,"user":"rw"}}"#,
            r#"{"broadcasted":"news"}"#,
        ]
    );
    assert!(matches!(commit(&mut w, p), Outcome::Done));
    assert_eq!(w.take(waiting), [r#"{"subscribed":"fresh"}"#]);
}

#[test]
fn a_change_the_cluster_does_not_confirm_is_an_internal_error() {
    let mut w = clustered();
    let k = w.login(1, "rw");
    let p = pending(start(&mut w, k, &subscribe("fresh")));
    let _ = start(&mut w, k, &subscribe("news"));
    let (broker, mut io) = w.io();
    let outcome = broker.finish_replicate(
        p,
        Err(ConsensusError::NotConfirmed("no majority".into())),
        &mut io,
    );
    assert!(matches!(outcome, Outcome::Done));
    let replies = w.take(k);
    assert_eq!(replies.len(), 2, "{replies:?}");
    let error: Value = serde_json::from_str(&replies[0]).unwrap();
    assert_eq!(error["err"], "INTERNAL_ERROR");
    assert_eq!(error["channel"], "fresh");
    assert_eq!(replies[1], r#"{"subscribed":"news"}"#);
    assert!(!has_channel(&w, "fresh"));
    assert_eq!(w.subscriptions(k), ["news"]);
    w.check_gauges();
}

#[test]
fn a_channel_deleted_before_the_answer_is_not_found() {
    let mut w = clustered();
    let k = w.login(1, "rw");
    let p = pending(start(&mut w, k, &subscribe("fresh")));
    let (broker, mut io) = w.io();
    broker.apply_change(p.change(), &mut io);
    broker.apply_change(
        &Change::DeleteChannel {
            vhost: vhost("/v"),
            channel: channel("fresh"),
        },
        &mut io,
    );
    let _ = broker.finish_replicate(p, Ok(()), &mut io);
    assert_eq!(w.error(k), "CHANNEL_NOT_FOUND");
    assert!(w.subscriptions(k).is_empty());
    w.check_gauges();
}

#[test]
fn an_answer_for_a_closed_session_is_ignored() {
    let mut w = clustered();
    let k = w.login(1, "rw");
    let p = pending(start(&mut w, k, &subscribe("fresh")));
    assert!(w.broker.close_session(k, CloseReason::ClientClosed));
    // The key is reused by a new session: the old answer is not for it.
    let again = w.login(1, "rw");
    assert!(matches!(commit(&mut w, p), Outcome::Done));
    assert!(w.take(again).is_empty());
    assert!(w.subscriptions(again).is_empty());
    assert!(
        has_channel(&w, "fresh"),
        "the committed change still applies"
    );
    w.check_gauges();
}

#[test]
fn a_held_subscribe_to_another_new_channel_waits_in_turn() {
    let mut w = clustered();
    let k = w.login(1, "rw");
    let first = pending(start(&mut w, k, &subscribe("one")));
    let _ = start(&mut w, k, &subscribe("two"));
    let _ = start(&mut w, k, &subscribe("news"));
    let second = pending(commit(&mut w, first));
    assert_eq!(second.change(), &add("two"));
    assert_eq!(w.take(k), [r#"{"subscribed":"one"}"#]);
    assert!(matches!(commit(&mut w, second), Outcome::Done));
    assert_eq!(
        w.take(k),
        [r#"{"subscribed":"two"}"#, r#"{"subscribed":"news"}"#]
    );
    w.check_gauges();
}

#[test]
fn held_messages_are_bounded_like_during_a_secret_check() {
    let limits = Limits {
        max_pending_bytes: 64,
        ..Limits::default()
    };
    let mut w = World::with(state(), limits);
    w.persist.replicated = true;
    let k = w.login(1, "rw");
    let _p = pending(start(&mut w, k, &subscribe("fresh")));
    for _ in 0..4 {
        let _ = start(&mut w, k, &subscribe("news"));
    }
    assert_eq!(w.closed(k), Some(CloseReason::PolicyViolation));
}

#[test]
fn existing_channels_need_no_cluster_round_trip() {
    let mut w = clustered();
    let k = w.login(1, "rw");
    assert!(matches!(
        start(&mut w, k, &subscribe("news")),
        Outcome::Done
    ));
    assert_eq!(w.take(k), [r#"{"subscribed":"news"}"#]);
}

#[test]
fn backend_channel_changes_are_handed_to_the_cluster() {
    let mut w = clustered();
    let sub = w.subscriber(1, "rw", &["news"]);
    let (broker, mut io) = w.io();
    assert_eq!(
        broker.open_channel(&vhost("/v"), &channel("fresh"), &mut io),
        Ok(ChannelOp::Replicate(add("fresh")))
    );
    assert_eq!(
        broker.open_channel(&vhost("/v"), &channel("news"), &mut io),
        Ok(ChannelOp::Done),
        "an existing channel needs nothing"
    );
    let close = Change::DeleteChannel {
        vhost: vhost("/v"),
        channel: channel("news"),
    };
    assert_eq!(
        broker.close_channel(&vhost("/v"), &channel("news"), &mut io),
        Ok(ChannelOp::Replicate(close.clone()))
    );
    assert!(
        w.take(sub).is_empty(),
        "nobody is unsubscribed before the commit"
    );
    assert!(!has_channel(&w, "fresh"));
    assert!(w.persist.commits.is_empty());
    // The committed change does the work.
    let (broker, mut io) = w.io();
    broker.apply_change(&close, &mut io);
    assert_eq!(w.take(sub), [r#"{"unsubscribed":"news"}"#]);
    w.check_gauges();
}
