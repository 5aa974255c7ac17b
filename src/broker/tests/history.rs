//! History, recovery, presence and session events through the broker.

use super::*;
use crate::storage::ChannelOptions;

fn with_options(options: ChannelOptions, limits: Limits) -> World {
    let mut s = state();
    if let Some(v) = s.vhosts.get_mut(&vhost("/v")) {
        v.channel_defaults = options;
    }
    World::with(s, limits)
}

fn history(size: u32) -> World {
    let options = ChannelOptions {
        history_size: size,
        ..ChannelOptions::default()
    };
    with_options(options, Limits::default())
}

fn json(text: &str) -> Value {
    serde_json::from_str(text).expect("JSON")
}

#[test]
fn subscribe_since_replays_the_gap_then_live_messages_without_a_seam() {
    let mut w = history(100);
    let publisher = w.login(1, "rw");
    let sub = w.subscriber(2, "rw", &["news"]);
    w.send(publisher, &broadcast("e", "news", "1"));
    let first = json(&w.take(sub)[0]);
    let epoch = first["e"]["epoch"].as_str().expect("epoch").to_owned();
    assert_eq!(first["e"]["offset"], 1);
    w.broker.close_session(sub, CloseReason::ClientClosed);
    for i in 2..=4 {
        w.send(publisher, &broadcast("e", "news", &i.to_string()));
    }
    let back = w.login(3, "rw");
    let since =
        format!(r#"{{"subscribe":{{"channel":"news","since":{{"offset":1,"epoch":"{epoch}"}}}}}}"#);
    w.send(back, &since);
    w.send(publisher, &broadcast("e", "news", "5"));
    let got: Vec<Value> = w.take(back).iter().map(|m| json(m)).collect();
    assert_eq!(
        got[0],
        serde_json::json!({"subscribed": "news", "recovered": true, "offset": 4, "epoch": epoch})
    );
    let offsets: Vec<&Value> = got[1..].iter().map(|m| &m["e"]["offset"]).collect();
    assert_eq!(offsets, [2, 3, 4, 5]);
    let data: Vec<&Value> = got[1..].iter().map(|m| &m["e"]["data"]).collect();
    assert_eq!(data, [2, 3, 4, 5]);
    // Too far back for a history of 100 is fine here; another epoch is not.
    let stale = w.login(4, "rw");
    w.send(
        stale,
        r#"{"subscribe":{"channel":"news","since":{"offset":1,"epoch":"0000000000000000"}}}"#,
    );
    assert_eq!(json(&w.take(stale)[0])["recovered"], false);
    w.check_gauges();
}

#[test]
fn a_gap_larger_than_half_the_credit_is_not_replayed() {
    let limits = Limits {
        max_pending_bytes: 1000,
        ..Limits::default()
    };
    let options = ChannelOptions {
        history_size: 1000,
        ..ChannelOptions::default()
    };
    let mut w = with_options(options, limits);
    let publisher = w.login(1, "rw");
    for i in 0..20 {
        w.send(publisher, &broadcast("e", "news", &i.to_string()));
    }
    let reader = w.login(2, "rw");
    w.send(reader, r#"{"history":{"channel":"news","limit":2}}"#);
    let answer = json(&w.take(reader)[0]);
    let epoch = answer["history"]["epoch"]
        .as_str()
        .expect("epoch")
        .to_owned();
    assert_eq!(answer["history"]["offset"], 20);
    assert_eq!(
        answer["history"]["messages"].as_array().map(Vec::len),
        Some(2)
    );
    let since =
        format!(r#"{{"subscribe":{{"channel":"news","since":{{"offset":0,"epoch":"{epoch}"}}}}}}"#);
    w.send(reader, &since);
    let got = w.take(reader);
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(json(&got[0])["recovered"], false);
    assert_eq!(w.closed(reader), None);
}

#[test]
fn presence_announces_joins_and_leaves_and_counts_the_limit() {
    let options = ChannelOptions {
        presence: true,
        ..ChannelOptions::default()
    };
    let limits = Limits {
        max_presence_members: 2,
        ..Limits::default()
    };
    let mut w = with_options(options, limits);
    let a = w.login(1, "rw");
    w.send(a, &subscribe("news"));
    let first = json(&w.take(a)[0]);
    assert_eq!(first["members"].as_array().map(Vec::len), Some(1));
    let b = w.login(2, "reader");
    w.send(b, &subscribe("news"));
    assert_eq!(
        json(&w.take(b)[0])["members"].as_array().map(Vec::len),
        Some(2)
    );
    let joined = json(&w.take(a)[0]);
    assert_eq!(joined["joined"]["user"], "reader");
    let c = w.login(3, "rw");
    w.send(c, &subscribe("news"));
    assert!(w.take(c)[0].contains("TOO_MANY_SUBSCRIPTIONS"));
    w.broker.close_session(b, CloseReason::ClientClosed);
    let (broker, io) = w.io();
    broker.settle(io.outlet);
    assert_eq!(json(&w.take(a)[0])["left"]["user"], "reader");
    w.send(a, r#"{"presence":{"channel":"news"}}"#);
    let listed = json(&w.take(a)[0]);
    assert_eq!(
        listed["presence"]["members"].as_array().map(Vec::len),
        Some(1)
    );
}

#[test]
fn session_events_are_recorded_for_backends() {
    let mut w = World::new();
    let key = w.login(1, "rw");
    let sid = w.broker.sid_of(key).expect("sid").to_string();
    w.broker.close_session(key, CloseReason::Idle);
    let events: Vec<Value> = w
        .broker
        .take_session_events()
        .into_iter()
        .map(|(v, e)| {
            assert_eq!(v, vhost("/v"));
            serde_json::from_slice(&e).expect("JSON")
        })
        .collect();
    assert_eq!(
        events,
        [
            serde_json::json!({"opened": {"sid": sid, "user": null}}),
            serde_json::json!({"authenticated": {"sid": sid, "user": "rw"}}),
            serde_json::json!({"closed": {"sid": sid, "user": "rw", "reason": "idle", "code": 1000}}),
        ]
    );
    assert!(w.broker.take_session_events().is_empty());
}

/// The records of `writes`' appends, as a history file would hold them.
fn file_of(writes: &[crate::broker::HistoryWrite]) -> Vec<u8> {
    let mut file =
        crate::storage::history_log::encode_start("boot", &vhost("/v"), &channel("news"));
    for write in writes {
        match write {
            crate::broker::HistoryWrite::Append { records, .. }
            | crate::broker::HistoryWrite::Rewrite { records, .. } => {
                file.extend_from_slice(records)
            }
            crate::broker::HistoryWrite::Remove { .. } => panic!("unexpected remove"),
        }
    }
    file
}

#[test]
fn a_durable_history_is_written_each_round_and_continues_its_epoch_in_a_new_broker() {
    use crate::broker::HistoryWrite;
    let options = ChannelOptions {
        history_size: 10,
        history_durable: true,
        ..ChannelOptions::default()
    };
    let mut w = with_options(options, Limits::default());
    let publisher = w.login(1, "rw");
    for i in 1..=3 {
        w.send(publisher, &broadcast("e", "news", &i.to_string()));
    }
    let writes = w.broker.take_history_writes();
    assert!(matches!(&writes[..], [HistoryWrite::Append { live, .. }] if *live > 0));
    assert!(w.broker.take_history_writes().is_empty());
    let file = file_of(&writes);
    let items = crate::storage::history_log::parse(&file, 1 << 20)
        .unwrap()
        .items;

    // A new broker (a restart) reads it back and goes on numbering.
    let mut again = with_options(options, Limits::default());
    assert!(again
        .broker
        .restore_history(&vhost("/v"), &channel("news"), &items, true));
    let reader = again.login(2, "rw");
    again.send(reader, r#"{"history":{"channel":"news"}}"#);
    let answer = json(&again.take(reader)[0]);
    assert_eq!(answer["history"]["offset"], 3);
    assert_eq!(
        answer["history"]["messages"].as_array().map(Vec::len),
        Some(3)
    );
    let epoch = answer["history"]["epoch"].clone();
    again.send(reader, &subscribe("news"));
    again.send(reader, &broadcast("e", "news", "4"));
    let got: Vec<Value> = again.take(reader).iter().map(|m| json(m)).collect();
    assert_eq!(got[1]["e"]["offset"], 4);
    assert_eq!(got[1]["e"]["epoch"], epoch);
    again.check_gauges();

    // A history that is not durable does not take it.
    let mut plain = history(10);
    assert!(!plain
        .broker
        .restore_history(&vhost("/v"), &channel("news"), &items, true));
}

#[test]
fn turning_durability_on_writes_the_history_whole_and_off_or_deleting_removes_it() {
    use crate::broker::HistoryWrite;
    let mut w = history(10);
    let publisher = w.login(1, "rw");
    w.send(publisher, &broadcast("e", "news", "1"));
    assert!(w.broker.take_history_writes().is_empty());
    let set = |durable: bool| Change::SetChannelOptions {
        vhost: vhost("/v"),
        channel: Some(channel("news")),
        options: ChannelOptions {
            history_size: 10,
            history_durable: durable,
            ..ChannelOptions::default()
        },
    };
    let apply = |w: &mut World, change: Change| {
        let (broker, mut io) = w.io();
        broker.apply_change(&change, &mut io);
    };
    apply(&mut w, set(true));
    let writes = w.broker.take_history_writes();
    assert!(
        matches!(&writes[..], [HistoryWrite::Rewrite { .. }]),
        "{writes:?}"
    );
    let items_file = file_of(&writes);
    let parsed = crate::storage::history_log::parse(&items_file, 1 << 20).unwrap();
    assert_eq!(parsed.items.len(), 2, "a run and the one message");
    apply(&mut w, set(false));
    assert!(matches!(
        &w.broker.take_history_writes()[..],
        [HistoryWrite::Remove { .. }]
    ));
    apply(&mut w, set(true));
    w.broker.take_history_writes();
    apply(
        &mut w,
        Change::DeleteChannel {
            vhost: vhost("/v"),
            channel: channel("news"),
        },
    );
    assert!(matches!(
        &w.broker.take_history_writes()[..],
        [HistoryWrite::Remove { .. }]
    ));
}
