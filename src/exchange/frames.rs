//! Backend frames (spec section 2): decode what a backend socket sent,
//! encode what the server sends. Pure: no sockets, no tokio.
//!
//! ```text
//! at the ROUTER:   [identity] [""] [CMD] [arg] [arg] ...
//! decode() sees:              [""] [CMD] [arg] [arg] ...
//! encode() makes:             [""] [CMD] [arg] ...      (the identity is
//!                                                        prepended by the
//!                                                        endpoint)
//! ```
//!
//! A DEALER worker sends the empty delimiter itself; a REQ socket adds it.
//! Every argument is one frame; JSON is UTF-8. An empty JSON frame means
//! `null`. Anything else that does not fit is an [`FrameError`], which maps
//! to the `ER` code the sender gets; it is a protocol reply, not a server
//! error.

use serde_json::value::RawValue;

use super::identity::Role;
use crate::name::{ChannelName, EventName, SessionId};
pub use crate::protocol::backend::code::*;
use crate::protocol::backend::BackendRequest;

/// What a backend socket sent.
#[derive(Debug)]
pub enum Inbound {
    /// `RD`: the worker joins its vhost's lobby; `RD events` also asks
    /// for the vhost's session events (`SE`).
    Ready {
        /// Whether it asked for session events.
        events: bool,
    },
    /// `HB`: the worker is alive.
    Heartbeat,
    /// `QT`: the worker leaves.
    Quit,
    /// `BC`, `OC`, `CC` or `DS`: a request for the broker; answered `OK` or
    /// `ER <code>`.
    Request(BackendRequest),
    /// `PI`, `RI` or `RB`: a request about MonoRail resources.
    Resource(super::resources::ResourceRequest),
}

/// Why frames were refused; [`FrameError::code`] is the `ER` code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The first frame after the identity is not empty (or missing).
    #[error("missing empty delimiter frame")]
    NoDelimiter,
    /// No command frame.
    #[error("missing command frame")]
    NoCommand,
    /// Not one of the commands of section 2.
    #[error("unknown command {0:?}")]
    UnknownCommand(String),
    /// A known command that this kind of socket may not send.
    #[error("command {command} is not for a {role} socket")]
    WrongRole {
        /// The command.
        command: &'static str,
        /// `dlr` or `req`.
        role: &'static str,
    },
    /// Too few or too many argument frames.
    #[error("{command} takes {expected} argument frames, got {got}")]
    Arity {
        /// The command.
        command: &'static str,
        /// How many it takes.
        expected: usize,
        /// How many came.
        got: usize,
    },
    /// An argument that must be text is not UTF-8.
    #[error("{command}: argument {index} is not UTF-8")]
    NotUtf8 {
        /// The command.
        command: &'static str,
        /// Which argument (0-based).
        index: usize,
    },
    /// The channel argument is not a valid channel name.
    #[error("invalid channel name")]
    InvalidChannel,
    /// The event argument is not a valid event name.
    #[error("invalid event name")]
    InvalidEvent,
    /// The session id argument is not a session id, so names no session.
    #[error("invalid session id")]
    InvalidSession,
    /// The JSON argument does not parse.
    #[error("invalid JSON payload")]
    InvalidJson,
    /// The resource argument is not a valid resource name.
    #[error("invalid resource name")]
    InvalidResource,
    /// An argument out of its range (e.g. a `KS` close code outside
    /// 4000-4999, or a reason over 123 bytes).
    #[error("{command}: bad {what}")]
    BadArgument {
        /// The command.
        command: &'static str,
        /// Which argument.
        what: &'static str,
    },
}

impl FrameError {
    /// The `ER` code for this error.
    pub fn code(&self) -> u16 {
        match self {
            FrameError::InvalidChannel => INVALID_CHANNEL_NAME,
            // A malformed id cannot name a session: same answer as an
            // unknown one, so clients need one check.
            FrameError::InvalidSession => NOT_FOUND,
            _ => BAD_REQUEST,
        }
    }
}

/// Decodes the frames after the identity, for a socket of `role`.
pub fn decode<F: AsRef<[u8]>>(role: Role, frames: &[F]) -> Result<Inbound, FrameError> {
    let (delimiter, rest) = frames.split_first().ok_or(FrameError::NoDelimiter)?;
    if !delimiter.as_ref().is_empty() {
        return Err(FrameError::NoDelimiter);
    }
    let (command, args) = rest.split_first().ok_or(FrameError::NoCommand)?;
    let command = command.as_ref();
    let lobby_command = |name: &'static str, inbound: Inbound| match role {
        Role::Worker => arity(name, args, 0).map(|_| inbound),
        Role::Request => Err(FrameError::WrongRole {
            command: name,
            role: Role::Request.prefix(),
        }),
    };
    match command {
        b"RD" if role == Role::Worker && args.len() == 1 && args[0].as_ref() == b"events" => {
            Ok(Inbound::Ready { events: true })
        }
        b"RD" => lobby_command("RD", Inbound::Ready { events: false }),
        b"HB" => lobby_command("HB", Inbound::Heartbeat),
        b"QT" => lobby_command("QT", Inbound::Quit),
        b"BC" => {
            arity("BC", args, 3)?;
            Ok(Inbound::Request(BackendRequest::Broadcast {
                channel: channel("BC", args, 0)?,
                event: event("BC", args, 1)?,
                data: json(&args[2])?,
            }))
        }
        b"BS" => {
            arity("BS", args, 4)?;
            Ok(Inbound::Request(BackendRequest::BroadcastExcept {
                channel: channel("BS", args, 0)?,
                event: event("BS", args, 1)?,
                data: json(&args[2])?,
                skip: skip_list(&args[3])?,
            }))
        }
        b"OC" => {
            arity("OC", args, 1)?;
            Ok(Inbound::Request(BackendRequest::OpenChannel(channel(
                "OC", args, 0,
            )?)))
        }
        b"CC" => {
            arity("CC", args, 1)?;
            Ok(Inbound::Request(BackendRequest::CloseChannel(channel(
                "CC", args, 0,
            )?)))
        }
        b"DS" => {
            arity("DS", args, 3)?;
            let sid =
                SessionId::parse(text("DS", args, 0)?).map_err(|_| FrameError::InvalidSession)?;
            Ok(Inbound::Request(BackendRequest::Direct {
                sid,
                event: event("DS", args, 1)?,
                data: json(&args[2])?,
            }))
        }
        b"PI" | b"RI" | b"RB" | b"RA" => super::resources::decode(command, args)
            .unwrap_or(Err(FrameError::NoCommand))
            .map(Inbound::Resource),
        b"KS" => {
            arity("KS", args, 3)?;
            let sid =
                SessionId::parse(text("KS", args, 0)?).map_err(|_| FrameError::InvalidSession)?;
            let code = text("KS", args, 1)?
                .parse::<u16>()
                .ok()
                .filter(|c| (4000..=4999).contains(c))
                .ok_or(FrameError::BadArgument {
                    command: "KS",
                    what: "code",
                })?;
            let reason = text("KS", args, 2)?;
            if reason.len() > MAX_CLOSE_REASON {
                return Err(FrameError::BadArgument {
                    command: "KS",
                    what: "reason",
                });
            }
            Ok(Inbound::Request(BackendRequest::CloseSession {
                sid,
                code,
                reason: reason.to_owned(),
            }))
        }
        other => Err(FrameError::UnknownCommand(
            String::from_utf8_lossy(&other[..other.len().min(16)]).into_owned(),
        )),
    }
}

fn arity<F>(command: &'static str, args: &[F], expected: usize) -> Result<(), FrameError> {
    if args.len() == expected {
        Ok(())
    } else {
        Err(FrameError::Arity {
            command,
            expected,
            got: args.len(),
        })
    }
}

fn text<'a, F: AsRef<[u8]>>(
    command: &'static str,
    args: &'a [F],
    index: usize,
) -> Result<&'a str, FrameError> {
    std::str::from_utf8(args[index].as_ref()).map_err(|_| FrameError::NotUtf8 { command, index })
}

fn channel<F: AsRef<[u8]>>(
    command: &'static str,
    args: &[F],
    index: usize,
) -> Result<ChannelName, FrameError> {
    ChannelName::parse(text(command, args, index)?).map_err(|_| FrameError::InvalidChannel)
}

fn event<F: AsRef<[u8]>>(
    command: &'static str,
    args: &[F],
    index: usize,
) -> Result<EventName, FrameError> {
    EventName::parse(text(command, args, index)?).map_err(|_| FrameError::InvalidEvent)
}

/// A JSON array of session ids (an empty frame: none).
pub(super) fn skip_list<F: AsRef<[u8]>>(frame: &F) -> Result<Vec<SessionId>, FrameError> {
    let bytes = frame.as_ref();
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(Vec::new());
    }
    serde_json::from_slice(bytes).map_err(|_| FrameError::InvalidSession)
}

fn json<F: AsRef<[u8]>>(frame: &F) -> Result<Option<Box<RawValue>>, FrameError> {
    let bytes = frame.as_ref();
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    serde_json::from_slice::<Box<RawValue>>(bytes)
        .map(Some)
        .map_err(|_| FrameError::InvalidJson)
}

/// Longest close reason `KS` accepts: a WebSocket close frame holds 125
/// bytes, 2 of them the code.
pub const MAX_CLOSE_REASON: usize = 123;

/// What the server sends to a backend socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outbound<'a> {
    /// `OK`: the request succeeded.
    Ok,
    /// `ER <code>`: it did not.
    Error(u16),
    /// `HB`: the server is alive.
    Heartbeat,
    /// `QT`: the server is leaving.
    Quit,
    /// `TR <json>`: a trigger for this worker.
    Trigger(&'a [u8]),
    /// `SE <json>`: a session event for a worker that asked (`RD events`).
    SessionEvent(&'a [u8]),
}

impl Outbound<'_> {
    /// The frames after the identity, starting with the empty delimiter.
    pub fn encode(&self) -> Vec<Vec<u8>> {
        let command = |name: &str| vec![Vec::new(), name.as_bytes().to_vec()];
        match self {
            Outbound::Ok => command("OK"),
            Outbound::Heartbeat => command("HB"),
            Outbound::Quit => command("QT"),
            Outbound::Error(code) => {
                let mut frames = command("ER");
                frames.push(code.to_string().into_bytes());
                frames
            }
            Outbound::Trigger(payload) => {
                let mut frames = command("TR");
                frames.push(payload.to_vec());
                frames
            }
            Outbound::SessionEvent(payload) => {
                let mut frames = command("SE");
                frames.push(payload.to_vec());
                frames
            }
        }
    }

    /// The reply to a request: `OK` or `ER <code>`.
    pub fn reply(result: Result<(), u16>) -> Outbound<'static> {
        match result {
            Ok(()) => Outbound::Ok,
            Err(code) => Outbound::Error(code),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SID: &str = "0123456789abcdef0123456789abcdef";

    fn worker(frames: &[&[u8]]) -> Result<Inbound, FrameError> {
        decode(Role::Worker, frames)
    }

    fn request(frames: &[&[u8]]) -> Result<Inbound, FrameError> {
        decode(Role::Request, frames)
    }

    #[test]
    fn decodes_lobby_commands_from_workers() {
        assert!(matches!(
            worker(&[b"", b"RD"]),
            Ok(Inbound::Ready { events: false })
        ));
        assert!(matches!(worker(&[b"", b"HB"]), Ok(Inbound::Heartbeat)));
        assert!(matches!(worker(&[b"", b"QT"]), Ok(Inbound::Quit)));
        let extra = worker(&[b"", b"RD", b"x"]).unwrap_err();
        assert_eq!(
            extra,
            FrameError::Arity {
                command: "RD",
                expected: 0,
                got: 1
            }
        );
        assert_eq!(extra.code(), 400);
    }

    #[test]
    fn request_sockets_may_not_join_the_lobby() {
        let error = request(&[b"", b"RD"]).unwrap_err();
        assert!(matches!(error, FrameError::WrongRole { command: "RD", .. }));
        assert_eq!(error.code(), 400);
    }

    #[test]
    fn decodes_broadcast() {
        let inbound = request(&[b"", b"BC", b"news", b"hello", br#"{"a":1}"#]).unwrap();
        let Inbound::Request(BackendRequest::Broadcast {
            channel,
            event,
            data,
        }) = inbound
        else {
            panic!("not a broadcast: {inbound:?}");
        };
        assert_eq!(channel.as_str(), "news");
        assert_eq!(event.as_str(), "hello");
        assert_eq!(data.unwrap().get(), r#"{"a":1}"#);
        // Workers may send requests too, and an empty payload is null.
        let inbound = worker(&[b"", b"BC", b"news", b"hello", b""]).unwrap();
        assert!(matches!(
            inbound,
            Inbound::Request(BackendRequest::Broadcast { data: None, .. })
        ));
    }

    #[test]
    fn decodes_channel_commands_and_direct() {
        assert!(matches!(
            request(&[b"", b"OC", b"room.1"]),
            Ok(Inbound::Request(BackendRequest::OpenChannel(c))) if c.as_str() == "room.1"
        ));
        assert!(matches!(
            request(&[b"", b"CC", b"room.1"]),
            Ok(Inbound::Request(BackendRequest::CloseChannel(c))) if c.as_str() == "room.1"
        ));
        let inbound = request(&[b"", b"DS", SID.as_bytes(), b"pm", b"[1,2]"]).unwrap();
        let Inbound::Request(BackendRequest::Direct { sid, event, data }) = inbound else {
            panic!("not a direct message: {inbound:?}");
        };
        assert_eq!(sid.as_str(), SID);
        assert_eq!(event.as_str(), "pm");
        assert_eq!(data.unwrap().get(), "[1,2]");
    }

    #[test]
    fn maps_bad_arguments_to_codes() {
        let code = |frames: &[&[u8]]| request(frames).unwrap_err().code();
        assert_eq!(code(&[b"", b"OC", b"bad name"]), 451);
        assert_eq!(code(&[b"", b"BC", b".x", b"e", b"1"]), 451);
        assert_eq!(code(&[b"", b"BC", b"news", b":e", b"1"]), 400);
        assert_eq!(code(&[b"", b"BC", b"news", b"e", b"{"]), 400);
        assert_eq!(code(&[b"", b"BC", b"news", b"e"]), 400);
        assert_eq!(code(&[b"", b"DS", b"nope", b"e", b"1"]), 404);
        assert_eq!(code(&[b"", b"OC", b"\xff"]), 400);
        assert_eq!(code(&[b"", b"XX"]), 400);
        assert_eq!(code(&[b"", b"ok"]), 400);
    }

    #[test]
    fn refuses_missing_delimiter_or_command() {
        assert_eq!(worker(&[]).unwrap_err(), FrameError::NoDelimiter);
        assert_eq!(worker(&[b"RD"]).unwrap_err(), FrameError::NoDelimiter);
        assert_eq!(worker(&[b""]).unwrap_err(), FrameError::NoCommand);
    }

    #[test]
    fn decodes_ready_with_events_and_close_session() {
        assert!(matches!(
            worker(&[b"", b"RD", b"events"]),
            Ok(Inbound::Ready { events: true })
        ));
        let sid = SID.as_bytes();
        match worker(&[b"", b"KS", sid, b"4001", b"bye"]) {
            Ok(Inbound::Request(BackendRequest::CloseSession { code, reason, .. })) => {
                assert_eq!((code, reason.as_str()), (4001, "bye"));
            }
            other => panic!("{other:?}"),
        }
        for code in [&b"1000"[..], b"5000", b"x"] {
            let error = worker(&[b"", b"KS", sid, code, b"r"]).unwrap_err();
            assert_eq!(error.code(), BAD_REQUEST);
        }
        let long = vec![b'a'; MAX_CLOSE_REASON + 1];
        let error = worker(&[b"", b"KS", sid, b"4000", &long]).unwrap_err();
        assert_eq!(error.code(), BAD_REQUEST);
        assert_eq!(
            Outbound::SessionEvent(b"{}").encode(),
            [b"".to_vec(), b"SE".to_vec(), b"{}".to_vec()]
        );
    }

    #[test]
    fn unknown_command_is_quoted_briefly() {
        let long = vec![b'Z'; 1000];
        let error = worker(&[b"", &long]).unwrap_err();
        assert_eq!(error, FrameError::UnknownCommand("Z".repeat(16)));
    }

    #[test]
    fn encodes_byte_for_byte() {
        let frames = |o: Outbound<'_>| o.encode();
        assert_eq!(frames(Outbound::Ok), vec![b"".to_vec(), b"OK".to_vec()]);
        assert_eq!(
            frames(Outbound::Heartbeat),
            vec![b"".to_vec(), b"HB".to_vec()]
        );
        assert_eq!(frames(Outbound::Quit), vec![b"".to_vec(), b"QT".to_vec()]);
        assert_eq!(
            frames(Outbound::Error(402)),
            vec![b"".to_vec(), b"ER".to_vec(), b"402".to_vec()]
        );
        assert_eq!(
            frames(Outbound::Trigger(br#"{"e":{}}"#)),
            vec![b"".to_vec(), b"TR".to_vec(), br#"{"e":{}}"#.to_vec()]
        );
        assert_eq!(Outbound::reply(Ok(())), Outbound::Ok);
        assert_eq!(Outbound::reply(Err(454)), Outbound::Error(454));
    }
}
