use super::*;

fn ok(message: &str) -> Request<'_> {
    match decode(message.as_bytes()) {
        Ok(r) => r,
        Err(e) => panic!("{message}: unexpected {e}"),
    }
}

fn err(message: &[u8]) -> ClientError {
    match decode(message) {
        Ok(r) => panic!("{:?}: unexpected {r:?}", String::from_utf8_lossy(message)),
        Err(e) => e,
    }
}

fn err_id(message: &str) -> ErrorId {
    err(message.as_bytes()).id
}

fn channel(s: &str) -> ChannelName {
    ChannelName::parse(s).expect("valid channel")
}

fn event(s: &str) -> EventName {
    EventName::parse(s).expect("valid event")
}

#[test]
fn decodes_every_client_event() {
    assert_eq!(
        ok(r#"{"authenticate": {"user": "joe", "secret": "53cr37"}}"#),
        Request::Authenticate {
            user: UserName::parse("joe").expect("user"),
            secret: Some("53cr37".into()),
        }
    );
    assert_eq!(
        ok(r#"{"subscribe": {"channel": "hello"}}"#),
        Request::Subscribe {
            channel: channel("hello"),
            since: None,
        }
    );
    assert_eq!(
        ok(r#"{"unsubscribe": {"channel": "hello"}}"#),
        Request::Unsubscribe {
            channel: channel("hello")
        }
    );
    match ok(r#"{"broadcast": {"event": "hello", "channel": "world", "data": {"x": 1}}}"#) {
        Request::Broadcast {
            event: e,
            channel: c,
            data,
        } => {
            assert_eq!(e, event("hello"));
            assert_eq!(c, channel("world"));
            assert_eq!(data.map(RawValue::get), Some(r#"{"x": 1}"#));
        }
        other => panic!("{other:?}"),
    }
    match ok(r#"{"trigger": {"event": "hello", "data": [1, "two"]}}"#) {
        Request::Trigger { event: e, data } => {
            assert_eq!(e, event("hello"));
            assert_eq!(data.map(RawValue::get), Some(r#"[1, "two"]"#));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(ok(r#"{"logout": true}"#), Request::Logout);
    assert_eq!(ok(r#"{"disconnect": true}"#), Request::Disconnect);
}

#[test]
fn event_names_match_the_keys() {
    for key in CLIENT_EVENTS {
        let message = match key {
            "logout" | "disconnect" => format!(r#"{{"{key}": true}}"#),
            "authenticate" => r#"{"authenticate": {"user": "u"}}"#.to_owned(),
            "trigger" => r#"{"trigger": {"event": "e"}}"#.to_owned(),
            _ => format!(r#"{{"{key}": {{"channel": "c", "event": "e"}}}}"#),
        };
        assert_eq!(ok(&message).event_name(), key);
    }
}

#[test]
fn binary_utf8_and_whitespace_are_accepted() {
    assert_eq!(ok(" \n{ \"logout\" :\ttrue } \r\n"), Request::Logout);
}

#[test]
fn optional_fields_may_be_absent_or_null() {
    assert_eq!(
        ok(r#"{"authenticate": {"user": "joe"}}"#),
        Request::Authenticate {
            user: UserName::parse("joe").expect("user"),
            secret: None
        }
    );
    assert_eq!(
        ok(r#"{"authenticate": {"user": "joe", "secret": null}}"#),
        Request::Authenticate {
            user: UserName::parse("joe").expect("user"),
            secret: None
        }
    );
    for m in [
        r#"{"broadcast": {"event": "e", "channel": "c"}}"#,
        r#"{"broadcast": {"event": "e", "channel": "c", "data": null}}"#,
    ] {
        assert!(
            matches!(ok(m), Request::Broadcast { data: None, .. }),
            "{m}"
        );
    }
    assert!(matches!(
        ok(r#"{"trigger": {"event": "e", "data": null}}"#),
        Request::Trigger { data: None, .. }
    ));
}

#[test]
fn unknown_payload_fields_are_ignored() {
    assert_eq!(
        ok(r#"{"subscribe": {"channel": "c", "extra": [1, {"a": null}]}}"#),
        Request::Subscribe {
            channel: channel("c"),
            since: None,
        }
    );
}

#[test]
fn escaped_strings_are_decoded() {
    assert_eq!(
        ok(r#"{"subscribe": {"channel": "\u0063h"}}"#),
        Request::Subscribe {
            channel: channel("ch"),
            since: None,
        }
    );
}

#[test]
fn malformed_messages_are_invalid_message_format() {
    for m in [
        &b"\xff\xfe"[..],
        b"",
        b"not json",
        b"{",
        b"[]",
        b"[{\"logout\": true}]",
        b"\"logout\"",
        b"42",
        b"null",
        b"{}",
        b"{\"logout\": true, \"disconnect\": true}",
        b"{\"logout\": true, \"logout\": true}",
        b"{\"logout\": true} {}",
        b"{\"logout\": true} x",
    ] {
        let e = err(m);
        assert_eq!(
            e.id,
            ErrorId::InvalidMessageFormat,
            "{:?}",
            String::from_utf8_lossy(m)
        );
        assert_eq!(e.event, None);
        assert!(!e.message.is_empty());
    }
}

#[test]
fn unknown_events_are_undefined_event_naming_it() {
    let e = err(br#"{"publish": {"channel": "c"}}"#);
    assert_eq!(e.id, ErrorId::UndefinedEvent);
    assert_eq!(e.event.as_deref(), Some("publish"));
    // Event keys are case-sensitive, as in the original server.
    assert_eq!(
        err_id(r#"{"Subscribe": {"channel": "c"}}"#),
        ErrorId::UndefinedEvent
    );
}

#[test]
fn wrong_payload_shapes_are_invalid_payload() {
    for m in [
        r#"{"authenticate": "joe"}"#,
        r#"{"authenticate": {"user": 7}}"#,
        r#"{"authenticate": {"user": "joe", "secret": 7}}"#,
        r#"{"authenticate": {"user": "joe", "secret": ["x"]}}"#,
        r#"{"authenticate": {"user": "joe", "user": "bob"}}"#,
        r#"{"subscribe": "news"}"#,
        r#"{"subscribe": null}"#,
        r#"{"subscribe": {"channel": 1}}"#,
        r#"{"subscribe": {"channel": {"name": "c"}}}"#,
        r#"{"unsubscribe": ["c"]}"#,
        r#"{"unsubscribe": {"channel": true}}"#,
        r#"{"broadcast": {"event": 1, "channel": "c"}}"#,
        r#"{"broadcast": {"event": "e", "channel": false}}"#,
        r#"{"broadcast": {"event": "e", "channel": "c", "data": 1, "data": 2}}"#,
        r#"{"broadcast": true}"#,
        r#"{"trigger": {"event": []}}"#,
        r#"{"trigger": "e"}"#,
        r#"{"logout": false}"#,
        r#"{"logout": {}}"#,
        r#"{"logout": "true"}"#,
        r#"{"disconnect": 1}"#,
        r#"{"disconnect": null}"#,
    ] {
        let e = err(m.as_bytes());
        assert_eq!(e.id, ErrorId::InvalidPayload, "{m}");
        assert!(e.event.is_some(), "{m}: event context missing");
    }
}

#[test]
fn missing_or_bad_user_names() {
    for m in [
        r#"{"authenticate": {}}"#,
        r#"{"authenticate": {"secret": "s"}}"#,
        r#"{"authenticate": {"user": null}}"#,
        r#"{"authenticate": {"user": ""}}"#,
        r#"{"authenticate": {"user": "bad name"}}"#,
        r#"{"authenticate": {"user": ".dot"}}"#,
    ] {
        let e = err(m.as_bytes());
        assert_eq!(e.id, ErrorId::InvalidUserName, "{m}");
        assert_eq!(e.event.as_deref(), Some("authenticate"));
    }
    let long = format!(r#"{{"authenticate": {{"user": "{}"}}}}"#, "u".repeat(256));
    assert_eq!(err_id(&long), ErrorId::InvalidUserName);
}

#[test]
fn missing_or_bad_channel_names() {
    for event in ["subscribe", "unsubscribe"] {
        for payload in [
            r#"{}"#,
            r#"{"channel": null}"#,
            r#"{"channel": ""}"#,
            r#"{"channel": "a b"}"#,
        ] {
            let m = format!(r#"{{"{event}": {payload}}}"#);
            let e = err(m.as_bytes());
            assert_eq!(e.id, ErrorId::InvalidChannelName, "{m}");
            assert_eq!(e.event.as_deref(), Some(event));
        }
    }
    let e = err(br#"{"subscribe": {"channel": "-nope"}}"#);
    assert_eq!(e.channel.as_deref(), Some("-nope"));
    let long = format!(r#"{{"subscribe": {{"channel": "{}"}}}}"#, "c".repeat(256));
    assert_eq!(err_id(&long), ErrorId::InvalidChannelName);
    let max = format!(r#"{{"subscribe": {{"channel": "{}"}}}}"#, "c".repeat(255));
    assert!(matches!(ok(&max), Request::Subscribe { .. }));
}

#[test]
fn broadcast_checks_event_before_channel() {
    assert_eq!(err_id(r#"{"broadcast": {}}"#), ErrorId::InvalidEventName);
    assert_eq!(
        err_id(r#"{"broadcast": {"channel": "c"}}"#),
        ErrorId::InvalidEventName
    );
    assert_eq!(
        err_id(r#"{"broadcast": {"event": "", "channel": "c"}}"#),
        ErrorId::InvalidEventName
    );
    assert_eq!(
        err_id(r#"{"broadcast": {"event": ":reserved", "channel": "c"}}"#),
        ErrorId::InvalidEventName
    );
    assert_eq!(
        err_id(r#"{"broadcast": {"event": "e"}}"#),
        ErrorId::InvalidChannelName
    );
    assert_eq!(
        err_id(r#"{"broadcast": {"event": "e", "channel": "a/b"}}"#),
        ErrorId::InvalidChannelName
    );
}

#[test]
fn trigger_event_names() {
    assert_eq!(err_id(r#"{"trigger": {}}"#), ErrorId::InvalidEventName);
    assert_eq!(
        err_id(r#"{"trigger": {"event": null}}"#),
        ErrorId::InvalidEventName
    );
    assert_eq!(
        err_id(r#"{"trigger": {"event": ":x"}}"#),
        ErrorId::InvalidEventName
    );
    let long = format!(r#"{{"trigger": {{"event": "{}"}}}}"#, "e".repeat(256));
    assert_eq!(err_id(&long), ErrorId::InvalidEventName);
    // Event names are free-form apart from the leading ':' rule.
    assert!(matches!(
        ok(r#"{"trigger": {"event": "a b/c:d ✓"}}"#),
        Request::Trigger { .. }
    ));
}

fn nested(depth: usize) -> String {
    format!("{}{}", "[".repeat(depth), "]".repeat(depth))
}

#[test]
fn deeply_nested_data_is_rejected_not_crashing() {
    for event in ["trigger", "broadcast"] {
        let m = |data: &str| {
            format!(r#"{{"{event}": {{"event": "e", "channel": "c", "data": {data}}}}}"#)
        };
        let deep = err(m(&nested(100_000)).as_bytes());
        assert_eq!(deep.id, ErrorId::InvalidPayload);
        assert_eq!(
            err_id(&m(&nested(MAX_DATA_DEPTH + 1))),
            ErrorId::InvalidPayload
        );
        assert_eq!(ok(&m(&nested(MAX_DATA_DEPTH))).event_name(), event);
    }
    // Deep ignored fields are skipped without recursion, and not passed on.
    let m = format!(
        r#"{{"subscribe": {{"channel": "c", "x": {}}}}}"#,
        nested(100_000)
    );
    assert_eq!(
        ok(&m),
        Request::Subscribe {
            channel: channel("c"),
            since: None,
        }
    );
}

#[test]
fn subscribe_and_history_take_a_since_position() {
    let since = Some(Position {
        offset: 42,
        epoch: Epoch(0xab),
    });
    assert_eq!(
        ok(r#"{"subscribe":{"channel":"c","since":{"offset":42,"epoch":"00000000000000ab"}}}"#),
        Request::Subscribe {
            channel: channel("c"),
            since,
        }
    );
    assert_eq!(
        ok(
            r#"{"history":{"channel":"c","limit":5,"since":{"offset":42,"epoch":"00000000000000ab"}}}"#
        ),
        Request::History {
            channel: channel("c"),
            limit: Some(5),
            since,
        }
    );
    assert_eq!(
        ok(r#"{"presence":{"channel":"c"}}"#),
        Request::Presence {
            channel: channel("c")
        }
    );
    for bad in [
        r#"{"subscribe":{"channel":"c","since":3}}"#,
        r#"{"subscribe":{"channel":"c","since":{"offset":-1,"epoch":"00000000000000ab"}}}"#,
        r#"{"subscribe":{"channel":"c","since":{"offset":1.5,"epoch":"00000000000000ab"}}}"#,
        r#"{"subscribe":{"channel":"c","since":{"offset":1,"epoch":"xyz"}}}"#,
        r#"{"subscribe":{"channel":"c","since":{"offset":1}}}"#,
        r#"{"history":{"channel":"c","limit":"5"}}"#,
    ] {
        let error = decode(bad.as_bytes()).expect_err(bad);
        assert_eq!(error.id, ErrorId::InvalidPayload, "{bad}");
    }
}
