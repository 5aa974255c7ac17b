//! Fan-out: order, scale, and the slow-consumer policy.

use super::*;

#[test]
fn a_thousand_subscribers_all_receive_in_order() {
    let mut w = World::new();
    let mut keys = Vec::new();
    for k in 0..1000 {
        keys.push(w.subscriber(k, "reader", &["news"]));
    }
    let sender = w.login(5000, "writer");
    for i in 0..5 {
        w.send(sender, &broadcast("tick", "news", &i.to_string()));
    }
    assert_eq!(w.take(sender).len(), 5);
    // Deliveries go out in subscription order, message by message.
    let order: Vec<SessionKey> = w.out.sent.iter().map(|(k, _)| *k).take(1000).collect();
    assert_eq!(order, keys);
    for key in keys {
        let got = w.take(key);
        let expected: Vec<String> = (0..5)
            .map(|i| format!(r#"{{"tick":{{"channel":"news","data":{i},"user":"writer"}}}}"#))
            .collect();
        assert_eq!(got, expected, "{key}");
    }
    assert_eq!(w.broker.stats().deliveries, 5000);
}

#[test]
fn sender_sees_its_own_messages_in_order_before_each_reply() {
    let mut w = World::new();
    let k = w.subscriber(1, "rw", &["news"]);
    w.send(k, &broadcast("a", "news", "1"));
    w.send(k, &broadcast("b", "news", "2"));
    assert_eq!(
        w.take(k),
        [
            r#"{"a":{"channel":"news","data":1,"user":"rw"}}"#,
            r#"{"broadcasted":"news"}"#,
            r#"{"b":{"channel":"news","data":2,"user":"rw"}}"#,
            r#"{"broadcasted":"news"}"#,
        ]
    );
}

#[test]
fn data_is_passed_through_verbatim_and_names_are_escaped() {
    let mut w = World::new();
    let k = w.subscriber(1, "rw", &["news"]);
    let data = r#"{"b":  [1.0e3, "\u00e9\n", {}], "a" : null}"#;
    w.send(k, &broadcast("say \\\"hi\\\"", "news", data));
    let got = w.take(k);
    assert_eq!(
        got[0],
        format!(r#"{{"say \"hi\"":{{"channel":"news","data":{data},"user":"rw"}}}}"#)
    );
}

#[test]
fn slow_consumer_is_closed_and_the_others_still_receive() {
    let mut w = World::new();
    let a = w.subscriber(1, "reader", &["news", "sport"]);
    let slow = w.subscriber(2, "reader", &["news", "sport"]);
    let c = w.subscriber(3, "reader", &["news"]);
    let sender = w.login(4, "writer");
    w.out.full.insert(slow);
    w.send(sender, &broadcast("e", "news", "1"));
    let delivery = r#"{"e":{"channel":"news","data":1,"user":"writer"}}"#;
    assert_eq!(w.take(a), [delivery]);
    assert_eq!(w.take(c), [delivery]);
    assert_eq!(w.take(sender), [r#"{"broadcasted":"news"}"#]);
    assert!(w.take(slow).is_empty());
    assert_eq!(w.out.refused, [slow]);
    assert_eq!(w.closed(slow), Some(CloseReason::SlowConsumer));
    let stats = w.broker.stats();
    assert_eq!(stats.slow_consumers, 1);
    assert_eq!(stats.close_count(CloseReason::SlowConsumer), 1);
    assert_eq!(stats.deliveries, 2);
    // Gone from every channel: later broadcasts do not reach it.
    w.send(sender, &broadcast("e", "sport", "2"));
    assert_eq!(w.take(a).len(), 1);
    assert_eq!(w.broker.session_count(&vhost("/v")), 3);
    w.check_gauges();
}

#[test]
fn a_slow_sender_is_closed_after_its_broadcast_is_delivered() {
    let mut w = World::new();
    let reader = w.subscriber(1, "reader", &["news"]);
    let sender = w.login(2, "writer");
    w.out.full.insert(sender);
    w.send(sender, &broadcast("e", "news", "1"));
    assert_eq!(w.take(reader).len(), 1);
    assert_eq!(w.closed(sender), Some(CloseReason::SlowConsumer));
    w.check_gauges();
}

#[test]
fn a_session_refused_once_gets_nothing_more_in_that_operation() {
    // Re-authentication sends several notices; after the first refusal the
    // rest must not be offered (it would leave a gap in the stream).
    let mut w = World::new();
    let k = w.subscriber(1, "rw", &["a", "b", "c"]);
    w.out.full.insert(k);
    w.send(k, r#"{"authenticate": {"user": "writer"}}"#);
    assert!(w.out.sent.is_empty());
    assert_eq!(w.out.refused, [k], "offered again after a refusal");
    assert_eq!(w.closed(k), Some(CloseReason::SlowConsumer));
    assert_eq!(w.broker.stats().slow_consumers, 1);
    w.check_gauges();
}

#[test]
fn a_slow_consumer_that_recovers_later_is_still_gone() {
    let mut w = World::new();
    let slow = w.subscriber(1, "reader", &["news"]);
    let sender = w.login(2, "writer");
    w.out.full.insert(slow);
    w.send(sender, &broadcast("e", "news", "1"));
    w.out.full.clear();
    w.send(sender, &broadcast("e", "news", "2"));
    assert!(w.take(slow).is_empty());
}
