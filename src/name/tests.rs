use std::collections::{BTreeMap, HashMap, HashSet};

use super::*;

fn reason<T: fmt::Debug>(r: Result<T, NameError>) -> NameReason {
    r.expect_err("should be rejected").reason().clone()
}

#[test]
fn vhost_paths_follow_the_spec_rule() {
    for ok in ["/a", "/chat", "/apps/chat-1/Room_2", "/-", "/_/_"] {
        assert_eq!(VhostPath::parse(ok).unwrap().as_str(), ok);
    }
    assert_eq!(reason(VhostPath::parse("")), NameReason::Empty);
    assert_eq!(reason(VhostPath::parse("chat")), NameReason::NoLeadingSlash);
    assert_eq!(
        reason(VhostPath::parse("/")),
        NameReason::EmptySegment { at: 0 }
    );
    assert_eq!(
        reason(VhostPath::parse("/a/")),
        NameReason::EmptySegment { at: 2 }
    );
    assert_eq!(
        reason(VhostPath::parse("/a//b")),
        NameReason::EmptySegment { at: 2 }
    );
    assert_eq!(
        reason(VhostPath::parse("/a.b")),
        NameReason::BadChar { ch: '.', at: 2 }
    );
    assert_eq!(
        reason(VhostPath::parse("/é")),
        NameReason::BadChar { ch: 'é', at: 1 }
    );
    let long = format!("/{}", "a".repeat(255));
    assert_eq!(
        reason(VhostPath::parse(&long)),
        NameReason::TooLong { len: 256, max: 255 }
    );
}

#[test]
fn channel_names_follow_the_spec_rule() {
    for ok in ["news", "_x", "0", "room-1.public", &"c".repeat(255)] {
        assert!(ChannelName::parse(ok).is_ok(), "{ok}");
    }
    assert_eq!(reason(ChannelName::parse("")), NameReason::Empty);
    assert_eq!(
        reason(ChannelName::parse(".news")),
        NameReason::BadChar { ch: '.', at: 0 }
    );
    assert_eq!(
        reason(ChannelName::parse("-news")),
        NameReason::BadChar { ch: '-', at: 0 }
    );
    assert_eq!(
        reason(ChannelName::parse("a b")),
        NameReason::BadChar { ch: ' ', at: 1 }
    );
    assert_eq!(
        reason(ChannelName::parse("a@b")),
        NameReason::BadChar { ch: '@', at: 1 }
    );
    assert_eq!(
        reason(ChannelName::parse(&"c".repeat(256))),
        NameReason::TooLong { len: 256, max: 255 }
    );
}

#[test]
fn user_and_node_names_allow_at_signs_after_the_first_char() {
    for ok in ["alice", "bob@example.com", "_svc-1.x"] {
        assert!(UserName::parse(ok).is_ok(), "{ok}");
        assert!(NodeName::parse(ok).is_ok(), "{ok}");
    }
    assert_eq!(
        reason(UserName::parse("@bob")),
        NameReason::BadChar { ch: '@', at: 0 }
    );
    assert_eq!(
        reason(NodeName::parse("../etc")),
        NameReason::BadChar { ch: '.', at: 0 }
    );
    assert_eq!(
        reason(NodeName::parse("a/b")),
        NameReason::BadChar { ch: '/', at: 1 }
    );
}

#[test]
fn event_names_are_free_text_without_leading_colon() {
    for ok in ["hello", "a b c", "x:y", "ünïcode", &"e".repeat(255)] {
        assert!(EventName::parse(ok).is_ok(), "{ok}");
    }
    assert_eq!(reason(EventName::parse("")), NameReason::Empty);
    assert_eq!(
        reason(EventName::parse(":internal")),
        NameReason::BadChar { ch: ':', at: 0 }
    );
    assert!(EventName::parse(&"e".repeat(256)).is_err());
}

#[test]
fn tokens_and_session_ids_are_lowercase_hex_of_fixed_length() {
    let token = AccessToken::generate();
    assert_eq!(token.as_str().len(), ACCESS_TOKEN_LEN);
    assert_eq!(AccessToken::parse(token.as_str()).unwrap(), token);
    assert_ne!(AccessToken::generate(), token);

    let sid = SessionId::generate();
    assert_eq!(sid.as_str().len(), SESSION_ID_LEN);
    assert_eq!(SessionId::parse(sid.as_str()).unwrap(), sid);

    assert_eq!(
        reason(AccessToken::parse(&"A".repeat(40))),
        NameReason::BadChar { ch: 'A', at: 0 }
    );
    assert_eq!(
        reason(AccessToken::parse(&"a".repeat(39))),
        NameReason::WrongLength {
            len: 39,
            expected: 40
        }
    );
    assert_eq!(
        reason(SessionId::parse(token.as_str())),
        NameReason::WrongLength {
            len: 40,
            expected: 32
        }
    );
}

#[test]
fn generated_ids_do_not_repeat() {
    let ids: HashSet<SessionId> = (0..1000).map(|_| SessionId::generate()).collect();
    assert_eq!(ids.len(), 1000);
}

#[test]
fn access_token_debug_is_redacted() {
    let token = AccessToken::generate();
    let debug = format!("{token:?}");
    assert!(!debug.contains(token.as_str()));
    assert_eq!(token.to_string(), token.as_str());
}

#[test]
fn error_messages_name_the_kind_value_and_reason() {
    let err = UserName::parse("x y").unwrap_err();
    assert_eq!(err.kind(), NameKind::UserName);
    assert_eq!(
        err.to_string(),
        r#"invalid user name "x y": character ' ' at byte 1 is not allowed"#
    );
    let huge = " ".repeat(10_000);
    let err = ChannelName::parse(&huge).unwrap_err();
    assert!(err.to_string().len() < 200, "quoted value is shortened");
    let err = EventName::parse(&"é".repeat(200)).unwrap_err();
    assert!(err.value().ends_with('…'));
}

#[test]
fn conversions_and_maps_by_str() {
    let name = ChannelName::try_from("news").unwrap();
    assert_eq!(name, "news".parse::<ChannelName>().unwrap());
    assert_eq!(format!("{name}"), "news");
    assert_eq!(format!("{name:?}"), r#"ChannelName("news")"#);
    let mut map = BTreeMap::new();
    map.insert(name.clone(), 1);
    assert_eq!(map.get("news"), Some(&1));
    assert_eq!(String::from(name), "news");
}

#[test]
fn serde_round_trips_and_validates() {
    let path: VhostPath = serde_json::from_str(r#""/chat""#).unwrap();
    assert_eq!(serde_json::to_string(&path).unwrap(), r#""/chat""#);
    let err = serde_json::from_str::<VhostPath>(r#""chat""#).unwrap_err();
    assert!(err.to_string().contains("must start with '/'"), "{err}");
    assert!(serde_json::from_str::<ChannelName>("42").is_err());
}

#[test]
fn permissions_parse_and_display() {
    let rw = Permissions::READ | Permissions::WRITE;
    assert_eq!(Permissions::parse("READ|WRITE").unwrap(), rw);
    assert_eq!(Permissions::parse("write, read").unwrap(), rw);
    assert_eq!(Permissions::parse(" Read | Write ").unwrap(), rw);
    assert_eq!(Permissions::parse("").unwrap(), Permissions::NONE);
    assert_eq!(Permissions::parse("none").unwrap(), Permissions::NONE);
    assert_eq!(Permissions::parse("all").unwrap(), Permissions::ALL);
    assert_eq!(rw.to_string(), "READ|WRITE");
    assert_eq!(Permissions::ALL.to_string(), "READ|WRITE|MANAGE");
    assert_eq!(Permissions::NONE.to_string(), "NONE");
    assert_eq!(Permissions::parse(&rw.to_string()).unwrap(), rw);
    let err = Permissions::parse("READ|FLY").unwrap_err();
    assert_eq!(
        err.reason(),
        &NameReason::UnknownPermission("FLY".to_owned())
    );
}

#[test]
fn permissions_set_operations() {
    let rw = Permissions::READ | Permissions::WRITE;
    assert!(rw.contains(Permissions::READ));
    assert!(rw.contains(rw));
    assert!(!rw.contains(Permissions::MANAGE));
    assert!(!rw.contains(Permissions::ALL));
    assert!(rw.contains(Permissions::NONE));
    assert!(Permissions::NONE.is_empty());
    assert_eq!(rw & Permissions::WRITE, Permissions::WRITE);
    assert_eq!(Permissions::from_bits(7), Some(Permissions::ALL));
    assert_eq!(Permissions::from_bits(8), None);
    assert_eq!(Permissions::default(), Permissions::NONE);
}

#[test]
fn permissions_serde_as_list_or_string() {
    let rw = Permissions::READ | Permissions::WRITE;
    assert_eq!(serde_json::to_string(&rw).unwrap(), r#"["READ","WRITE"]"#);
    assert_eq!(serde_json::to_string(&Permissions::NONE).unwrap(), "[]");
    let back: Permissions = serde_json::from_str(r#"["write","READ"]"#).unwrap();
    assert_eq!(back, rw);
    let back: Permissions = serde_json::from_str(r#""READ|WRITE""#).unwrap();
    assert_eq!(back, rw);
    assert!(serde_json::from_str::<Permissions>(r#"["READ","EXEC"]"#).is_err());
    assert!(serde_json::from_str::<Permissions>("3").is_err());
}

/// Session ids are held inline, not as a `String`; they must still behave as
/// the text they hold: found in maps by `&str`, ordered, printed and
/// serialized as that text.
#[test]
fn session_ids_held_inline_behave_as_their_text() {
    let sid = SessionId::generate();
    assert_eq!(std::mem::size_of::<SessionId>(), SESSION_ID_LEN);
    let mut by_sid = HashMap::new();
    by_sid.insert(sid.clone(), 7);
    assert_eq!(by_sid.get(sid.as_str()), Some(&7));
    let text = "0123456789abcdef0123456789abcdef";
    let fixed = SessionId::parse(text).unwrap();
    assert_eq!(fixed.to_string(), text);
    assert_eq!(format!("{fixed:?}"), format!("SessionId({text:?})"));
    assert_eq!(
        serde_json::to_string(&fixed).unwrap(),
        format!("\"{text}\"")
    );
    assert_eq!(String::from(fixed.clone()), text);
    let larger = SessionId::parse("1123456789abcdef0123456789abcdef").unwrap();
    assert!(fixed < larger);
    let mut ordered = BTreeMap::new();
    ordered.insert(larger, 2);
    ordered.insert(fixed, 1);
    assert_eq!(ordered.values().copied().collect::<Vec<_>>(), [1, 2]);
    assert_eq!(ordered.get(text), Some(&1));
    assert!(serde_json::from_str::<SessionId>(r#""0123""#).is_err());
}
