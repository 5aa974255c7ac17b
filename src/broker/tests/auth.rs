//! Authentication: the two-phase secret check, re-authentication, logout.

use serde_json::json;

use super::*;

fn auth_secret(secret: &str) -> String {
    format!(r#"{{"authenticate": {{"user": "secret", "secret": "{secret}"}}}}"#)
}

/// Sends `message` and expects a secret check back, not yet run.
fn start_check(w: &mut World, key: SessionKey, message: &str) -> SecretCheck {
    let (broker, mut io) = w.io();
    match broker.on_message(key, message.as_bytes(), &mut io) {
        Outcome::CheckSecret(check) => check,
        other => panic!("expected a secret check for {message}: {other:?}"),
    }
}

fn finish(w: &mut World, check: SecretCheck, ok: bool) -> Outcome {
    let (broker, mut io) = w.io();
    broker.finish_authenticate(check, ok, &mut io)
}

#[test]
fn users_without_a_secret_need_none_and_accept_any() {
    let mut w = World::new();
    let k = w.open(1);
    w.send(
        k,
        r#"{"authenticate": {"user": "rw", "secret": "whatever"}}"#,
    );
    assert_eq!(w.one(k), json!({"authenticated": "rw"}));
}

#[test]
fn secret_check_runs_outside_and_holds_later_requests_in_order() {
    let mut w = World::new();
    let k = w.open(1);
    let check = start_check(&mut w, k, &auth_secret(SECRET));
    assert_eq!(check.key(), k);
    assert_eq!(check.user().as_str(), "secret");
    assert!(
        !format!("{check:?}").contains(SECRET),
        "secret leaked into Debug"
    );
    // Sent while the check runs: held, nothing answered yet.
    for m in [subscribe("news"), unsubscribe("news"), subscribe("news")] {
        let (broker, mut io) = w.io();
        assert!(matches!(
            broker.on_message(k, m.as_bytes(), &mut io),
            Outcome::Done
        ));
    }
    assert!(w.take(k).is_empty());
    let ok = check.verify();
    assert!(ok);
    assert!(matches!(finish(&mut w, check, ok), Outcome::Done));
    assert_eq!(
        w.take(k),
        [
            r#"{"authenticated":"secret"}"#,
            r#"{"subscribed":"news"}"#,
            r#"{"unsubscribed":"news"}"#,
            r#"{"subscribed":"news"}"#,
        ]
    );
    w.check_gauges();
}

#[test]
fn failed_check_answers_invalid_credentials_then_the_held_requests() {
    let mut w = World::new();
    let k = w.open(1);
    let check = start_check(&mut w, k, &auth_secret("wrong"));
    let (broker, mut io) = w.io();
    let _ = broker.on_message(k, subscribe("news").as_bytes(), &mut io);
    let ok = check.verify();
    assert!(!ok);
    assert!(matches!(finish(&mut w, check, ok), Outcome::Done));
    let got = w.take(k);
    assert_eq!(got.len(), 2);
    assert!(got[0].contains("INVALID_CREDENTIALS"));
    assert!(got[1].contains("ACCESS_DENIED"), "still anonymous: {got:?}");
}

#[test]
fn a_held_authenticate_starts_a_new_check_and_keeps_the_rest_held() {
    let mut w = World::new();
    let k = w.open(1);
    let first = start_check(&mut w, k, &auth_secret("wrong"));
    {
        let (broker, mut io) = w.io();
        let _ = broker.on_message(k, auth_secret(SECRET).as_bytes(), &mut io);
        let _ = broker.on_message(k, subscribe("news").as_bytes(), &mut io);
    }
    let second = match finish(&mut w, first, false) {
        Outcome::CheckSecret(check) => check,
        other => panic!("the held authenticate needs a check: {other:?}"),
    };
    assert_eq!(w.error(k), "INVALID_CREDENTIALS");
    assert!(matches!(finish(&mut w, second, true), Outcome::Done));
    assert_eq!(
        w.take(k),
        [r#"{"authenticated":"secret"}"#, r#"{"subscribed":"news"}"#]
    );
}

#[test]
fn check_for_a_closed_or_reused_session_is_ignored() {
    let mut w = World::new();
    let k = w.open(1);
    let check = start_check(&mut w, k, &auth_secret(SECRET));
    assert!(w.broker.close_session(k, CloseReason::ClientClosed));
    // The glue reuses the key for a new connection.
    w.open(1);
    assert!(matches!(finish(&mut w, check, true), Outcome::Done));
    assert!(w.take(k).is_empty());
    assert_eq!(w.error_for(k, &subscribe("news")), "ACCESS_DENIED");
}

#[test]
fn secret_changed_during_the_check_is_invalid_credentials() {
    let mut w = World::new();
    let k = w.open(1);
    let check = start_check(&mut w, k, &auth_secret(SECRET));
    let change = Change::SetSecret {
        vhost: vhost("/v"),
        name: user("secret"),
        hash: None,
    };
    let (broker, mut io) = w.io();
    broker.apply_change(&change, &mut io);
    assert!(matches!(finish(&mut w, check, true), Outcome::Done));
    assert_eq!(w.error(k), "INVALID_CREDENTIALS");
}

#[test]
fn deleted_user_during_the_check_is_user_not_found() {
    let mut w = World::new();
    let k = w.open(1);
    let check = start_check(&mut w, k, &auth_secret(SECRET));
    let change = Change::DeleteUser {
        vhost: vhost("/v"),
        name: user("secret"),
    };
    let (broker, mut io) = w.io();
    broker.apply_change(&change, &mut io);
    assert!(matches!(finish(&mut w, check, true), Outcome::Done));
    assert_eq!(w.error(k), "USER_NOT_FOUND");
}

#[test]
fn flooding_during_a_check_closes_the_session() {
    let limits = Limits {
        max_pending_bytes: 100,
        ..Limits::default()
    };
    let mut w = World::with(state(), limits);
    let k = w.open(1);
    let check = start_check(&mut w, k, &auth_secret(SECRET));
    for _ in 0..10 {
        let (broker, mut io) = w.io();
        let _ = broker.on_message(k, subscribe("news").as_bytes(), &mut io);
    }
    assert_eq!(w.closed(k), Some(CloseReason::PolicyViolation));
    assert!(matches!(finish(&mut w, check, true), Outcome::Done));
    assert!(w.take(k).is_empty());
    w.check_gauges();
}

#[test]
fn re_authentication_keeps_what_the_new_user_may_read() {
    let mut w = World::new();
    let k = w.subscriber(1, "rw", &["news", "sport"]);
    w.send(k, r#"{"authenticate": {"user": "reader"}}"#);
    assert_eq!(w.take(k), [r#"{"authenticated":"reader"}"#]);
    assert_eq!(w.subscriptions(k), ["news", "sport"]);
}

#[test]
fn re_authentication_drops_what_the_new_user_may_not_read() {
    let mut w = World::new();
    let k = w.subscriber(1, "rw", &["sport", "news"]);
    let other = w.subscriber(2, "reader", &["news"]);
    w.send(k, r#"{"authenticate": {"user": "writer"}}"#);
    // Each dropped subscription is reported, then the reply.
    assert_eq!(
        w.take(k),
        [
            r#"{"unsubscribed":"news"}"#,
            r#"{"unsubscribed":"sport"}"#,
            r#"{"authenticated":"writer"}"#,
        ]
    );
    assert!(w.subscriptions(k).is_empty());
    // It no longer receives, but may still broadcast.
    w.send(k, &broadcast("e", "news", "1"));
    assert_eq!(w.take(k), [r#"{"broadcasted":"news"}"#]);
    assert_eq!(
        w.take(other),
        [r#"{"e":{"channel":"news","data":1,"user":"writer"}}"#]
    );
    w.check_gauges();
}

#[test]
fn failed_re_authentication_changes_nothing() {
    let mut w = World::new();
    let k = w.subscriber(1, "rw", &["news"]);
    assert_eq!(
        w.error_for(k, r#"{"authenticate": {"user": "ghost"}}"#),
        "USER_NOT_FOUND"
    );
    assert_eq!(w.error_for(k, &auth_secret("wrong")), "INVALID_CREDENTIALS");
    assert_eq!(w.subscriptions(k), ["news"]);
    w.send(k, &broadcast("e", "news", "2"));
    let got = w.take(k);
    assert_eq!(got[0], r#"{"e":{"channel":"news","data":2,"user":"rw"}}"#);
}

#[test]
fn logout_then_anonymous_permissions_apply() {
    let mut s = state();
    if let Some(v) = s.vhosts.get_mut(&vhost("/v")) {
        v.anonymous = Permissions::READ;
    }
    let mut w = World::with(s, Limits::default());
    let k = w.subscriber(1, "rw", &["news"]);
    w.send(k, r#"{"logout": true}"#);
    assert_eq!(w.take(k), [r#"{"loggedOut":true}"#]);
    assert!(
        w.subscriptions(k).is_empty(),
        "logout unsubscribes from everything"
    );
    // Anonymous READ: may subscribe again, not broadcast.
    w.send(k, &subscribe("news"));
    assert_eq!(w.take(k), [r#"{"subscribed":"news"}"#]);
    assert_eq!(
        w.error_for(k, &broadcast("e", "news", "1")),
        "ACCESS_DENIED"
    );
    // Anonymous sessions with READ receive.
    let rw = w.login(2, "rw");
    w.send(rw, &broadcast("e", "news", "1"));
    assert_eq!(
        w.take(k),
        [r#"{"e":{"channel":"news","data":1,"user":"rw"}}"#]
    );
}

#[test]
fn a_check_the_server_cannot_take_now_is_answered_at_once() {
    let mut w = World::new();
    let k = w.login(1, "reader");
    let check = start_check(&mut w, k, &auth_secret(SECRET));
    {
        let (broker, mut io) = w.io();
        let _ = broker.on_message(k, subscribe("news").as_bytes(), &mut io);
    }
    assert!(w.take(k).is_empty(), "held while the check waits");
    let (broker, mut io) = w.io();
    assert!(matches!(
        broker.refuse_secret_check(check, &mut io),
        Outcome::Done
    ));
    let replies = w.take(k);
    assert_eq!(replies.len(), 2, "{replies:?}");
    let error: Value = serde_json::from_str(&replies[0]).unwrap();
    assert_eq!(error["err"], "INTERNAL_ERROR");
    assert_eq!(error["event"], "authenticate");
    assert_eq!(replies[1], r#"{"subscribed":"news"}"#);
    // Still the user it was.
    w.send(k, r#"{"logout": true}"#);
    assert_eq!(w.take(k), [r#"{"loggedOut":true}"#]);
    w.check_gauges();
}
