//! Encoding what the server sends: replies, errors, broadcast deliveries,
//! direct messages, and the trigger payload handed to backend workers.
//!
//! Every encoder appends to a caller-owned `Vec<u8>` (clear it first), so the
//! broker reuses one buffer and a broadcast is encoded once for all of its
//! subscribers. Strings are escaped as JSON; `data` is copied verbatim from
//! what the client or backend sent.

use serde_json::value::RawValue;

use super::error::ClientError;
use super::json::{push_opt_str, push_raw, push_str};
use super::position::Position;

/// A success reply to a client request, or a server notice of the same shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reply<'a> {
    /// `{"authenticated": "<user>"}`.
    Authenticated(&'a str),
    /// `{"subscribed": "<channel>"}`.
    Subscribed(&'a str),
    /// `{"unsubscribed": "<channel>"}`; also sent unasked when a subscription
    /// is dropped (channel closed, READ lost).
    Unsubscribed(&'a str),
    /// `{"broadcasted": "<channel>"}`.
    Broadcasted(&'a str),
    /// `{"triggered": "<event>"}`.
    Triggered(&'a str),
    /// `{"loggedOut": true}`.
    LoggedOut,
}

/// Appends `{"<key>": "<value>"}` or `{"loggedOut":true}`.
pub fn encode_reply(out: &mut Vec<u8>, reply: &Reply<'_>) {
    let (key, value) = match *reply {
        Reply::Authenticated(user) => ("authenticated", user),
        Reply::Subscribed(channel) => ("subscribed", channel),
        Reply::Unsubscribed(channel) => ("unsubscribed", channel),
        Reply::Broadcasted(channel) => ("broadcasted", channel),
        Reply::Triggered(event) => ("triggered", event),
        Reply::LoggedOut => {
            out.extend_from_slice(br#"{"loggedOut":true}"#);
            return;
        }
    };
    out.extend_from_slice(b"{\"");
    out.extend_from_slice(key.as_bytes());
    out.extend_from_slice(b"\":");
    push_str(out, value);
    out.push(b'}');
}

/// Appends the first message of every session, `{"connected":{"sid":"<sid>"}}`:
/// the client learns its session id (what backends see as `sid` in triggers
/// and address with `DS`).
pub fn encode_connected(out: &mut Vec<u8>, sid: &str) {
    out.extend_from_slice(b"{\"connected\":{\"sid\":");
    push_str(out, sid);
    out.extend_from_slice(b"}}");
}

/// Appends `{"err":"<ID>","event":..,"channel":..,"message":..}`; context keys
/// that are unknown are left out.
pub fn encode_error(out: &mut Vec<u8>, error: &ClientError) {
    out.extend_from_slice(b"{\"err\":");
    push_str(out, error.id.as_str());
    if let Some(event) = &error.event {
        out.extend_from_slice(b",\"event\":");
        push_str(out, event);
    }
    if let Some(channel) = &error.channel {
        out.extend_from_slice(b",\"channel\":");
        push_str(out, channel);
    }
    out.extend_from_slice(b",\"message\":");
    push_str(out, &error.message);
    out.push(b'}');
}

/// Appends a broadcast delivery:
/// `{"<event>":{"channel":"<channel>","data":<data or null>,"user":"<user>" or null}}`.
///
/// `channel` and `user` come from the server, so a client cannot forge them.
pub fn encode_delivery(
    out: &mut Vec<u8>,
    event: &str,
    channel: &str,
    data: Option<&RawValue>,
    user: Option<&str>,
) {
    out.push(b'{');
    push_str(out, event);
    out.extend_from_slice(b":{\"channel\":");
    push_str(out, channel);
    out.extend_from_slice(b",\"data\":");
    push_raw(out, data);
    out.extend_from_slice(b",\"user\":");
    push_opt_str(out, user);
    out.extend_from_slice(b"}}");
}

/// Adds `"offset":<n>,"epoch":"<hex>"` to the delivery that `out` ends
/// with (as [`encode_delivery`] wrote it, possibly received from another
/// node). `false`, changing nothing, when `out` does not end like one.
pub fn stamp_delivery(out: &mut Vec<u8>, position: Position) -> bool {
    if !out.ends_with(b"}}") {
        return false;
    }
    out.truncate(out.len() - 2);
    push_position(out, Some(position));
    out.extend_from_slice(b"}}");
    true
}

/// Appends `,"offset":<n>,"epoch":"<hex>"`, or nothing for `None`.
fn push_position(out: &mut Vec<u8>, position: Option<Position>) {
    use std::io::Write;
    if let Some(p) = position {
        // Writing to a Vec cannot fail.
        let _ = write!(out, ",\"offset\":{},\"epoch\":\"{}\"", p.offset, p.epoch);
    }
}

/// One member of a presence channel: its session id and user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Member<'a> {
    /// Session id.
    pub sid: &'a str,
    /// User name, `None` for an anonymous session.
    pub user: Option<&'a str>,
}

fn push_member(out: &mut Vec<u8>, member: &Member<'_>) {
    out.extend_from_slice(b"{\"sid\":");
    push_str(out, member.sid);
    out.extend_from_slice(b",\"user\":");
    push_opt_str(out, member.user);
    out.push(b'}');
}

fn push_members(out: &mut Vec<u8>, members: &[Member<'_>]) {
    out.push(b'[');
    for (i, member) in members.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        push_member(out, member);
    }
    out.push(b']');
}

/// What a `subscribe` answer says besides the channel.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Subscribed<'a> {
    /// For a `subscribe` with `since`: whether every message after it
    /// follows (`true`) or the client must reload (`false`).
    pub recovered: Option<bool>,
    /// The channel's last position, when it keeps a history and has had a
    /// message (the messages that follow the answer come after it).
    pub last: Option<Position>,
    /// The channel's members, when it tracks presence.
    pub members: Option<Vec<Member<'a>>>,
}

/// Appends `{"subscribed":"<channel>"}`, with
/// `,"recovered":..,"offset":..,"epoch":..,"members":[..]` before the
/// closing brace for what `extra` holds.
pub fn encode_subscribed(out: &mut Vec<u8>, channel: &str, extra: &Subscribed<'_>) {
    out.extend_from_slice(b"{\"subscribed\":");
    push_str(out, channel);
    if let Some(recovered) = extra.recovered {
        out.extend_from_slice(if recovered {
            b",\"recovered\":true"
        } else {
            b",\"recovered\":false"
        });
    }
    push_position(out, extra.last);
    if let Some(members) = &extra.members {
        out.extend_from_slice(b",\"members\":");
        push_members(out, members);
    }
    out.push(b'}');
}

/// Appends
/// `{"history":{"channel":..,"offset":..,"epoch":..,"recovered":..,"messages":[..]}}`:
/// the deliveries as they were sent, oldest first; offset and epoch are
/// the channel's last position (left out before its first message);
/// `recovered` only answers a request with `since`.
pub fn encode_history(
    out: &mut Vec<u8>,
    channel: &str,
    last: Option<Position>,
    recovered: Option<bool>,
    messages: &[&[u8]],
) {
    out.extend_from_slice(b"{\"history\":{\"channel\":");
    push_str(out, channel);
    push_position(out, last);
    match recovered {
        Some(true) => out.extend_from_slice(b",\"recovered\":true"),
        Some(false) => out.extend_from_slice(b",\"recovered\":false"),
        None => {}
    }
    out.extend_from_slice(b",\"messages\":[");
    for (i, message) in messages.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(message);
    }
    out.extend_from_slice(b"]}}");
}

/// Appends `{"presence":{"channel":..,"members":[..]}}`.
pub fn encode_presence(out: &mut Vec<u8>, channel: &str, members: &[Member<'_>]) {
    out.extend_from_slice(b"{\"presence\":{\"channel\":");
    push_str(out, channel);
    out.extend_from_slice(b",\"members\":");
    push_members(out, members);
    out.extend_from_slice(b"}}");
}

/// Appends `{"joined":{"channel":..,"sid":..,"user":..}}` (or `left`).
pub fn encode_membership(out: &mut Vec<u8>, joined: bool, channel: &str, member: &Member<'_>) {
    out.extend_from_slice(if joined {
        b"{\"joined\":{\"channel\":"
    } else {
        b"{\"left\":{\"channel\":"
    });
    push_str(out, channel);
    out.extend_from_slice(b",\"sid\":");
    push_str(out, member.sid);
    out.extend_from_slice(b",\"user\":");
    push_opt_str(out, member.user);
    out.extend_from_slice(b"}}");
}

/// What happened to a session, for the workers that asked (`SE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionEvent<'a> {
    /// A session opened (anonymous).
    Opened,
    /// It authenticated as a user.
    Authenticated,
    /// It closed: the reason's label and the close code.
    Closed(&'a str, u16),
}

/// Appends `{"opened":{"sid":..,"user":..}}`, `{"authenticated":{..}}` or
/// `{"closed":{"sid":..,"user":..,"reason":..,"code":..}}`.
pub fn encode_session_event(
    out: &mut Vec<u8>,
    event: SessionEvent<'_>,
    sid: &str,
    user: Option<&str>,
) {
    let name = match event {
        SessionEvent::Opened => "opened",
        SessionEvent::Authenticated => "authenticated",
        SessionEvent::Closed(..) => "closed",
    };
    out.push(b'{');
    push_str(out, name);
    out.extend_from_slice(b":{\"sid\":");
    push_str(out, sid);
    out.extend_from_slice(b",\"user\":");
    push_opt_str(out, user);
    if let SessionEvent::Closed(reason, code) = event {
        out.extend_from_slice(b",\"reason\":");
        push_str(out, reason);
        out.extend_from_slice(format!(",\"code\":{code}").as_bytes());
    }
    out.extend_from_slice(b"}}");
}

/// Appends a direct message from a backend to one session:
/// `{"<event>":<data or null>}`.
pub fn encode_direct(out: &mut Vec<u8>, event: &str, data: Option<&RawValue>) {
    out.push(b'{');
    push_str(out, event);
    out.push(b':');
    push_raw(out, data);
    out.push(b'}');
}

/// Appends the trigger a backend worker receives (the `TR` argument):
/// `{"<event>":{"data":<data or null>,"sid":"<sid>","user":"<user>" or null}}`.
pub fn encode_trigger(
    out: &mut Vec<u8>,
    event: &str,
    data: Option<&RawValue>,
    sid: &str,
    user: Option<&str>,
) {
    out.push(b'{');
    push_str(out, event);
    out.extend_from_slice(b":{\"data\":");
    push_raw(out, data);
    out.extend_from_slice(b",\"sid\":");
    push_str(out, sid);
    out.extend_from_slice(b",\"user\":");
    push_opt_str(out, user);
    out.extend_from_slice(b"}}");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::error::ErrorId;
    use serde_json::{json, Value};

    fn text(f: impl FnOnce(&mut Vec<u8>)) -> String {
        let mut out = Vec::new();
        f(&mut out);
        String::from_utf8(out).expect("encoders write UTF-8")
    }

    fn raw(s: &str) -> Box<RawValue> {
        RawValue::from_string(s.to_owned()).expect("valid JSON")
    }

    #[test]
    fn connected_names_the_session_id() {
        assert_eq!(
            text(|o| encode_connected(o, "0123456789abcdef0123456789abcdef")),
            r#"{"connected":{"sid":"0123456789abcdef0123456789abcdef"}}"#
        );
    }

    #[test]
    fn replies_have_the_spec_shapes() {
        let cases = [
            (Reply::Authenticated("joe"), r#"{"authenticated":"joe"}"#),
            (Reply::Subscribed("news"), r#"{"subscribed":"news"}"#),
            (Reply::Unsubscribed("news"), r#"{"unsubscribed":"news"}"#),
            (Reply::Broadcasted("news"), r#"{"broadcasted":"news"}"#),
            (Reply::Triggered("hello"), r#"{"triggered":"hello"}"#),
            (Reply::LoggedOut, r#"{"loggedOut":true}"#),
        ];
        for (reply, expected) in cases {
            assert_eq!(text(|o| encode_reply(o, &reply)), expected);
        }
    }

    #[test]
    fn replies_escape_names() {
        let s = text(|o| encode_reply(o, &Reply::Triggered("a\"b\\c\n")));
        let v: Value = serde_json::from_str(&s).expect("valid JSON");
        assert_eq!(v, json!({"triggered": "a\"b\\c\n"}));
    }

    #[test]
    fn errors_carry_only_known_context() {
        let bare = ClientError::new(ErrorId::InvalidMessageFormat).with_message("bad");
        assert_eq!(
            text(|o| encode_error(o, &bare)),
            r#"{"err":"INVALID_MESSAGE_FORMAT","message":"bad"}"#
        );
        let full = ClientError::new(ErrorId::AccessDenied)
            .with_event("subscribe")
            .with_channel("news")
            .with_message("no READ");
        assert_eq!(
            text(|o| encode_error(o, &full)),
            r#"{"err":"ACCESS_DENIED","event":"subscribe","channel":"news","message":"no READ"}"#
        );
    }

    #[test]
    fn delivery_copies_data_verbatim() {
        let data = raw(r#"{"x": 1,  "y" : [1.50, "\u00e9"]}"#);
        let s = text(|o| encode_delivery(o, "hello", "world", Some(&data), Some("joe")));
        assert_eq!(
            s,
            r#"{"hello":{"channel":"world","data":{"x": 1,  "y" : [1.50, "\u00e9"]},"user":"joe"}}"#
        );
    }

    #[test]
    fn delivery_without_data_or_user_uses_null() {
        let s = text(|o| encode_delivery(o, "e", "c", None, None));
        assert_eq!(s, r#"{"e":{"channel":"c","data":null,"user":null}}"#);
    }

    #[test]
    fn delivery_escapes_event_names_used_as_keys() {
        let s = text(|o| encode_delivery(o, "say \"hi\"", "c", None, Some("u")));
        let v: Value = serde_json::from_str(&s).expect("valid JSON");
        assert_eq!(
            v,
            json!({"say \"hi\"": {"channel": "c", "data": null, "user": "u"}})
        );
    }

    #[test]
    fn trigger_payload_shape() {
        let data = raw("[1,2]");
        let s = text(|o| encode_trigger(o, "hello", Some(&data), "abc123", None));
        assert_eq!(s, r#"{"hello":{"data":[1,2],"sid":"abc123","user":null}}"#);
        let s = text(|o| encode_trigger(o, "hello", None, "abc123", Some("joe")));
        assert_eq!(s, r#"{"hello":{"data":null,"sid":"abc123","user":"joe"}}"#);
    }

    #[test]
    fn direct_message_shape() {
        let data = raw(r#""text""#);
        assert_eq!(
            text(|o| encode_direct(o, "ping", Some(&data))),
            r#"{"ping":"text"}"#
        );
        assert_eq!(text(|o| encode_direct(o, "ping", None)), r#"{"ping":null}"#);
    }

    #[test]
    fn a_stamped_delivery_carries_offset_and_epoch() {
        let mut out = Vec::new();
        encode_delivery(&mut out, "e", "c", None, Some("u"));
        let position = Position {
            offset: 7,
            epoch: crate::protocol::Epoch(0xff),
        };
        assert!(stamp_delivery(&mut out, position));
        assert_eq!(
            String::from_utf8(out).unwrap(),
            r#"{"e":{"channel":"c","data":null,"user":"u","offset":7,"epoch":"00000000000000ff"}}"#
        );
        let mut odd = b"[1]".to_vec();
        assert!(!stamp_delivery(&mut odd, position));
        assert_eq!(odd, b"[1]");
    }

    #[test]
    fn subscribed_history_and_presence_shapes() {
        let position = Some(Position {
            offset: 3,
            epoch: crate::protocol::Epoch(1),
        });
        let members = vec![Member {
            sid: "ab",
            user: None,
        }];
        let extra = Subscribed {
            recovered: Some(false),
            last: position,
            members: Some(members.clone()),
        };
        assert_eq!(
            text(|o| encode_subscribed(o, "c", &extra)),
            r#"{"subscribed":"c","recovered":false,"offset":3,"epoch":"0000000000000001","members":[{"sid":"ab","user":null}]}"#
        );
        assert_eq!(
            text(|o| encode_subscribed(o, "c", &Subscribed::default())),
            r#"{"subscribed":"c"}"#
        );
        assert_eq!(
            text(|o| encode_history(o, "c", position, None, &[b"{}", b"[]"])),
            r#"{"history":{"channel":"c","offset":3,"epoch":"0000000000000001","messages":[{},[]]}}"#
        );
        assert_eq!(
            text(|o| encode_presence(o, "c", &members)),
            r#"{"presence":{"channel":"c","members":[{"sid":"ab","user":null}]}}"#
        );
        assert_eq!(
            text(|o| encode_membership(o, false, "c", &members[0])),
            r#"{"left":{"channel":"c","sid":"ab","user":null}}"#
        );
    }

    #[test]
    fn session_event_shapes() {
        assert_eq!(
            text(|o| encode_session_event(o, SessionEvent::Opened, "ab", None)),
            r#"{"opened":{"sid":"ab","user":null}}"#
        );
        assert_eq!(
            text(|o| encode_session_event(o, SessionEvent::Closed("idle", 1000), "ab", Some("u"))),
            r#"{"closed":{"sid":"ab","user":"u","reason":"idle","code":1000}}"#
        );
    }

    #[test]
    fn encoders_append() {
        let mut out = b"x".to_vec();
        encode_reply(&mut out, &Reply::LoggedOut);
        assert_eq!(out, br#"x{"loggedOut":true}"#);
    }
}
