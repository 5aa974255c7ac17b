//! Decoding one client message into a [`Request`].
//!
//! A message is a UTF-8 JSON object with exactly one key, the event name
//! (protocol spec, section 1). Anything the client gets wrong becomes a
//! [`ClientError`] to send back, never a Rust error: the connection stays open.
//!
//! Check order, so that each bad message gets the most specific id:
//! 1. not UTF-8 / not JSON / not an object / zero or several top-level keys
//!    (duplicates count) -> `INVALID_MESSAGE_FORMAT`;
//! 2. unknown key -> `UNDEFINED_EVENT` with `"event"` naming it;
//! 3. the payload is not the event's shape (not an object, a field of the
//!    wrong JSON type, a field given twice, `logout`/`disconnect` not `true`)
//!    -> `INVALID_PAYLOAD`;
//! 4. a name that is missing, `null` or breaks its rule -> `INVALID_USER_NAME`,
//!    `INVALID_EVENT_NAME` or `INVALID_CHANNEL_NAME`, checked in the order
//!    the fields are listed in the spec (event before channel).
//!
//! Unknown payload fields are ignored, as the original server did, so clients
//! may send extra metadata. `data` is kept as the raw JSON text the client sent
//! (borrowed from the message, never re-serialised); an explicit `null` is the
//! same as leaving it out. It may nest at most [`MAX_DATA_DEPTH`] levels
//! (`INVALID_PAYLOAD` otherwise).

use std::borrow::Cow;

use serde_json::value::RawValue;

use super::error::{ClientError, ErrorId};
use super::json::{self, Kind, Members};
use super::position::{Epoch, Position};
use crate::name::{ChannelName, EventName, NameError, UserName};

/// One decoded client request. `'a` borrows the message bytes.
#[derive(Debug, Clone)]
pub enum Request<'a> {
    /// `{"authenticate": {"user": str, "secret": str?}}`.
    Authenticate {
        /// The user to become.
        user: UserName,
        /// The secret, if given.
        secret: Option<String>,
    },
    /// `{"subscribe": {"channel": str, "since": {"offset": int, "epoch": str}?}}`.
    Subscribe {
        /// The channel to join.
        channel: ChannelName,
        /// The last message the client has: deliver what came after it.
        since: Option<Position>,
    },
    /// `{"unsubscribe": {"channel": str}}`.
    Unsubscribe {
        /// The channel to leave.
        channel: ChannelName,
    },
    /// `{"broadcast": {"event": str, "channel": str, "data": any?}}`.
    Broadcast {
        /// The event the subscribers receive.
        event: EventName,
        /// The channel to publish on.
        channel: ChannelName,
        /// The data as sent; `None` is delivered as `null`.
        data: Option<&'a RawValue>,
    },
    /// `{"trigger": {"event": str, "data": any?}}`.
    Trigger {
        /// The event a backend worker receives.
        event: EventName,
        /// The data as sent; `None` is passed on as `null`.
        data: Option<&'a RawValue>,
    },
    /// `{"history": {"channel": str, "limit": int?, "since": {..}?}}`.
    History {
        /// The channel to read.
        channel: ChannelName,
        /// At most this many messages (the newest ones, or the first ones
        /// after `since`).
        limit: Option<u64>,
        /// Read the messages after this one.
        since: Option<Position>,
    },
    /// `{"presence": {"channel": str}}`.
    Presence {
        /// The channel whose members to list.
        channel: ChannelName,
    },
    /// `{"logout": true}`.
    Logout,
    /// `{"disconnect": true}`.
    Disconnect,
}

impl Request<'_> {
    /// The client event name of this request, e.g. `"subscribe"`.
    pub fn event_name(&self) -> &'static str {
        match self {
            Request::Authenticate { .. } => AUTHENTICATE,
            Request::Subscribe { .. } => SUBSCRIBE,
            Request::Unsubscribe { .. } => UNSUBSCRIBE,
            Request::Broadcast { .. } => BROADCAST,
            Request::Trigger { .. } => TRIGGER,
            Request::History { .. } => HISTORY,
            Request::Presence { .. } => PRESENCE,
            Request::Logout => LOGOUT,
            Request::Disconnect => DISCONNECT,
        }
    }
}

// `RawValue` has no `PartialEq`; two requests are equal when their data is
// the same JSON text.
impl PartialEq for Request<'_> {
    fn eq(&self, other: &Self) -> bool {
        use Request::*;
        fn text<'x>(d: &Option<&'x RawValue>) -> Option<&'x str> {
            d.map(RawValue::get)
        }
        match (self, other) {
            (
                Authenticate {
                    user: u1,
                    secret: s1,
                },
                Authenticate {
                    user: u2,
                    secret: s2,
                },
            ) => u1 == u2 && s1 == s2,
            (
                Subscribe {
                    channel: c1,
                    since: s1,
                },
                Subscribe {
                    channel: c2,
                    since: s2,
                },
            ) => c1 == c2 && s1 == s2,
            (Unsubscribe { channel: c1 }, Unsubscribe { channel: c2 })
            | (Presence { channel: c1 }, Presence { channel: c2 }) => c1 == c2,
            (
                History {
                    channel: c1,
                    limit: l1,
                    since: s1,
                },
                History {
                    channel: c2,
                    limit: l2,
                    since: s2,
                },
            ) => c1 == c2 && l1 == l2 && s1 == s2,
            (
                Broadcast {
                    event: e1,
                    channel: c1,
                    data: d1,
                },
                Broadcast {
                    event: e2,
                    channel: c2,
                    data: d2,
                },
            ) => e1 == e2 && c1 == c2 && text(d1) == text(d2),
            (
                Trigger {
                    event: e1,
                    data: d1,
                },
                Trigger {
                    event: e2,
                    data: d2,
                },
            ) => e1 == e2 && text(d1) == text(d2),
            (Logout, Logout) | (Disconnect, Disconnect) => true,
            _ => false,
        }
    }
}

impl Eq for Request<'_> {}

const AUTHENTICATE: &str = "authenticate";
const SUBSCRIBE: &str = "subscribe";
const UNSUBSCRIBE: &str = "unsubscribe";
const BROADCAST: &str = "broadcast";
const TRIGGER: &str = "trigger";
const LOGOUT: &str = "logout";
const DISCONNECT: &str = "disconnect";
const HISTORY: &str = "history";
const PRESENCE: &str = "presence";

/// The client event names this server understands: the spec's table, then
/// this server's additions.
pub const CLIENT_EVENTS: [&str; 9] = [
    AUTHENTICATE,
    SUBSCRIBE,
    UNSUBSCRIBE,
    BROADCAST,
    TRIGGER,
    LOGOUT,
    DISCONNECT,
    HISTORY,
    PRESENCE,
];

/// The deepest nesting of arrays and objects accepted in `data`. The data is
/// passed on verbatim to other clients and to backends, whose JSON parsers
/// may recurse (Python's stops near 1000); serde_json's own limit is 128.
pub const MAX_DATA_DEPTH: usize = 64;

/// Decodes one WebSocket message (text, or binary holding UTF-8 JSON).
pub fn decode(message: &[u8]) -> Result<Request<'_>, ClientError> {
    let text =
        std::str::from_utf8(message).map_err(|_| format_error("the message is not valid UTF-8"))?;
    let members = Members::parse(text).map_err(|e| {
        format_error(if e.is_data() {
            "the message is not a JSON object"
        } else {
            "the message is not valid JSON"
        })
    })?;
    let (event, payload) = match members.0.as_slice() {
        [(event, payload)] => (event, *payload),
        [] => return Err(format_error("the message has no event key")),
        _ => return Err(format_error("the message has more than one key")),
    };
    let Some(event) = CLIENT_EVENTS.into_iter().find(|e| *e == event.as_ref()) else {
        return Err(ClientError::new(ErrorId::UndefinedEvent)
            .with_event(event.as_ref())
            .with_message("no such client event"));
    };
    match event {
        LOGOUT => expect_true(LOGOUT, payload).map(|()| Request::Logout),
        DISCONNECT => expect_true(DISCONNECT, payload).map(|()| Request::Disconnect),
        AUTHENTICATE => Fields::of(event, payload)?.authenticate(),
        SUBSCRIBE => Fields::of(event, payload)?.subscribe(),
        HISTORY => Fields::of(event, payload)?.history(),
        PRESENCE => Ok(Request::Presence {
            channel: Fields::of(event, payload)?.channel()?,
        }),
        UNSUBSCRIBE => Ok(Request::Unsubscribe {
            channel: Fields::of(event, payload)?.channel()?,
        }),
        BROADCAST => Fields::of(event, payload)?.broadcast(),
        _ => Fields::of(event, payload)?.trigger(),
    }
}

fn format_error(message: &'static str) -> ClientError {
    ClientError::new(ErrorId::InvalidMessageFormat).with_message(message)
}

fn payload_error(event: &'static str, message: impl Into<Cow<'static, str>>) -> ClientError {
    ClientError::new(ErrorId::InvalidPayload)
        .with_event(event)
        .with_message(message)
}

/// `logout` and `disconnect` take exactly `true`.
fn expect_true(event: &'static str, payload: &RawValue) -> Result<(), ClientError> {
    if payload.get() == "true" {
        Ok(())
    } else {
        Err(payload_error(event, "the payload must be true"))
    }
}

/// A string field's value, before name validation.
enum Field<'a> {
    /// Absent or `null`.
    Missing,
    /// A string.
    Text(Cow<'a, str>),
}

/// The members of an object payload, with the event they belong to.
struct Fields<'a> {
    event: &'static str,
    members: Members<'a>,
}

impl<'a> Fields<'a> {
    fn of(event: &'static str, payload: &'a RawValue) -> Result<Self, ClientError> {
        match Members::parse(payload.get()) {
            Ok(members) => Ok(Fields { event, members }),
            Err(_) => Err(payload_error(event, "the payload must be an object")),
        }
    }

    /// `data`: any JSON, nested at most [`MAX_DATA_DEPTH`] deep.
    fn data(&self) -> Result<Option<&'a RawValue>, ClientError> {
        let data = self.raw("data")?;
        if data.is_some_and(|raw| json::depth(raw) > MAX_DATA_DEPTH) {
            return Err(payload_error(
                self.event,
                format!("\"data\" nests deeper than {MAX_DATA_DEPTH} levels"),
            ));
        }
        Ok(data)
    }

    fn raw(&self, key: &'static str) -> Result<Option<&'a RawValue>, ClientError> {
        let value = self.members.get(key).map_err(|json::Duplicate| {
            payload_error(self.event, format!("\"{key}\" is given more than once"))
        })?;
        Ok(value.filter(|raw| json::kind(raw) != Kind::Null))
    }

    fn string(&self, key: &'static str) -> Result<Field<'a>, ClientError> {
        let Some(raw) = self.raw(key)? else {
            return Ok(Field::Missing);
        };
        match (json::kind(raw), json::text(raw)) {
            (Kind::String, Some(text)) => Ok(Field::Text(text)),
            _ => Err(payload_error(
                self.event,
                format!("\"{key}\" must be a string"),
            )),
        }
    }

    /// A required name field: missing or invalid gives `id`.
    fn name<T>(&self, key: &'static str, id: ErrorId) -> Result<T, ClientError>
    where
        T: TryFrom<String, Error = NameError>,
    {
        let text = match self.string(key)? {
            Field::Text(text) => text,
            Field::Missing => {
                return Err(ClientError::new(id)
                    .with_event(self.event)
                    .with_message(format!("\"{key}\" is required")))
            }
        };
        match T::try_from(text.into_owned()) {
            Ok(name) => Ok(name),
            Err(e) => {
                let err = ClientError::new(id)
                    .with_event(self.event)
                    .with_message(e.to_string());
                Err(if id == ErrorId::InvalidChannelName {
                    err.with_channel(e.value())
                } else {
                    err
                })
            }
        }
    }

    fn channel(&self) -> Result<ChannelName, ClientError> {
        self.name("channel", ErrorId::InvalidChannelName)
    }

    fn event_name(&self) -> Result<EventName, ClientError> {
        self.name("event", ErrorId::InvalidEventName)
    }

    fn authenticate(&self) -> Result<Request<'a>, ClientError> {
        // Type errors first, so a numeric secret is INVALID_PAYLOAD even when
        // the user name is also wrong.
        let secret = match self.string("secret")? {
            Field::Text(s) => Some(s.into_owned()),
            Field::Missing => None,
        };
        let user = self.name("user", ErrorId::InvalidUserName)?;
        Ok(Request::Authenticate { user, secret })
    }

    /// An optional `since`: `{"offset": <integer >= 0>, "epoch": <16 hex>}`.
    fn since(&self) -> Result<Option<Position>, ClientError> {
        let Some(raw) = self.raw("since")? else {
            return Ok(None);
        };
        let shape = || {
            payload_error(
                self.event,
                "\"since\" must be {\"offset\": integer, \"epoch\": 16 hex digits}",
            )
        };
        let inner = Fields::of(self.event, raw).map_err(|_| shape())?;
        let offset = inner.integer("offset")?.ok_or_else(shape)?;
        let epoch = match inner.string("epoch")? {
            Field::Text(text) => Epoch::parse(&text).ok_or_else(shape)?,
            Field::Missing => return Err(shape()),
        };
        Ok(Some(Position { offset, epoch }))
    }

    /// An optional non-negative integer field.
    fn integer(&self, key: &'static str) -> Result<Option<u64>, ClientError> {
        let Some(raw) = self.raw(key)? else {
            return Ok(None);
        };
        match raw.get().parse::<u64>() {
            Ok(n) => Ok(Some(n)),
            Err(_) => Err(payload_error(
                self.event,
                format!("\"{key}\" must be a non-negative integer"),
            )),
        }
    }

    fn subscribe(&self) -> Result<Request<'a>, ClientError> {
        let since = self.since()?;
        let channel = self.channel()?;
        Ok(Request::Subscribe { channel, since })
    }

    fn history(&self) -> Result<Request<'a>, ClientError> {
        let since = self.since()?;
        let limit = self.integer("limit")?;
        let channel = self.channel()?;
        Ok(Request::History {
            channel,
            limit,
            since,
        })
    }

    fn broadcast(&self) -> Result<Request<'a>, ClientError> {
        let data = self.data()?;
        let event = self.event_name()?;
        let channel = self.channel()?;
        Ok(Request::Broadcast {
            event,
            channel,
            data,
        })
    }

    fn trigger(&self) -> Result<Request<'a>, ClientError> {
        let data = self.data()?;
        let event = self.event_name()?;
        Ok(Request::Trigger { event, data })
    }
}

#[cfg(test)]
#[path = "client_tests.rs"]
mod tests;
