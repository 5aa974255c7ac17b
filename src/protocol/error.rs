//! The client-visible error table and the reasons a session is closed.
//!
//! Every error a client can see is an [`ErrorId`]; every way a session ends is
//! a [`CloseReason`]. Both are closed enums with an `ALL` list so counters can
//! be plain arrays indexed by [`ErrorId::index`] / [`CloseReason::index`], and
//! so a test can check that the man page documents each one.

use std::borrow::Cow;
use std::fmt;

/// A client protocol error id, sent as `{"err": "<ID>", ...}`.
///
/// The first eleven come from the seed (webrocket(7)) and section 1 of the
/// protocol spec; the rest cover what the seed leaves open (message format,
/// unknown events) and the limits of section 5, which answer with an error
/// rather than closing the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ErrorId {
    /// `authenticate` without a user name, or one that breaks the name rule.
    InvalidUserName,
    /// `authenticate` names a user the vhost does not have.
    UserNotFound,
    /// The secret is missing or does not match the user's.
    InvalidCredentials,
    /// The payload of a known event has the wrong shape or types.
    InvalidPayload,
    /// A channel name is missing or breaks the channel name rule.
    InvalidChannelName,
    /// The session's permissions do not allow the request.
    AccessDenied,
    /// The channel does not exist (and may not be created by this session).
    ChannelNotFound,
    /// `unsubscribe` from a channel the session is not subscribed to.
    NotSubscribed,
    /// An event name is missing, empty, too long or starts with `:`.
    InvalidEventName,
    /// `trigger` found no ready backend worker for the vhost.
    AssignationFailed,
    /// Not UTF-8, not JSON, not an object, or not exactly one key.
    InvalidMessageFormat,
    /// The message's key is not a client event; `"event"` names it.
    UndefinedEvent,
    /// `subscribe` would pass the per-session subscription limit.
    TooManySubscriptions,
    /// Creating a channel would pass the per-vhost channel limit.
    TooManyChannels,
    /// The server could not complete a valid request (e.g. storage failed).
    InternalError,
}

impl ErrorId {
    /// Every id, in table order (the order of [`ErrorId::index`]).
    pub const ALL: [ErrorId; 15] = [
        ErrorId::InvalidUserName,
        ErrorId::UserNotFound,
        ErrorId::InvalidCredentials,
        ErrorId::InvalidPayload,
        ErrorId::InvalidChannelName,
        ErrorId::AccessDenied,
        ErrorId::ChannelNotFound,
        ErrorId::NotSubscribed,
        ErrorId::InvalidEventName,
        ErrorId::AssignationFailed,
        ErrorId::InvalidMessageFormat,
        ErrorId::UndefinedEvent,
        ErrorId::TooManySubscriptions,
        ErrorId::TooManyChannels,
        ErrorId::InternalError,
    ];

    /// Number of ids; the length of per-id counter arrays.
    pub const COUNT: usize = Self::ALL.len();

    /// The wire form, e.g. `"ACCESS_DENIED"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            ErrorId::InvalidUserName => "INVALID_USER_NAME",
            ErrorId::UserNotFound => "USER_NOT_FOUND",
            ErrorId::InvalidCredentials => "INVALID_CREDENTIALS",
            ErrorId::InvalidPayload => "INVALID_PAYLOAD",
            ErrorId::InvalidChannelName => "INVALID_CHANNEL_NAME",
            ErrorId::AccessDenied => "ACCESS_DENIED",
            ErrorId::ChannelNotFound => "CHANNEL_NOT_FOUND",
            ErrorId::NotSubscribed => "NOT_SUBSCRIBED",
            ErrorId::InvalidEventName => "INVALID_EVENT_NAME",
            ErrorId::AssignationFailed => "ASSIGNATION_FAILED",
            ErrorId::InvalidMessageFormat => "INVALID_MESSAGE_FORMAT",
            ErrorId::UndefinedEvent => "UNDEFINED_EVENT",
            ErrorId::TooManySubscriptions => "TOO_MANY_SUBSCRIPTIONS",
            ErrorId::TooManyChannels => "TOO_MANY_CHANNELS",
            ErrorId::InternalError => "INTERNAL_ERROR",
        }
    }

    /// The default human message sent in `"message"`.
    pub const fn description(self) -> &'static str {
        match self {
            ErrorId::InvalidUserName => "no user name given or its format is invalid",
            ErrorId::UserNotFound => "no such user in this vhost",
            ErrorId::InvalidCredentials => "the secret is missing or wrong",
            ErrorId::InvalidPayload => "the payload format is invalid",
            ErrorId::InvalidChannelName => "no channel name given or its format is invalid",
            ErrorId::AccessDenied => "the session is not allowed to do this",
            ErrorId::ChannelNotFound => "no such channel",
            ErrorId::NotSubscribed => "the session is not subscribed to this channel",
            ErrorId::InvalidEventName => "no event name given or its format is invalid",
            ErrorId::AssignationFailed => "no backend worker can handle this request",
            ErrorId::InvalidMessageFormat => {
                "a message must be a UTF-8 JSON object with exactly one key"
            }
            ErrorId::UndefinedEvent => "no such client event",
            ErrorId::TooManySubscriptions => "the session has too many subscriptions",
            ErrorId::TooManyChannels => "the vhost has too many channels",
            ErrorId::InternalError => "the server could not complete the request",
        }
    }

    /// Position in [`ErrorId::ALL`], for counter arrays.
    pub const fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for ErrorId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One error reply: `{"err": id, "event": .., "channel": .., "message": ..}`.
///
/// Context keys are present only when known: `event` is the client event that
/// failed (or the undefined one), `channel` the channel it named.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientError {
    /// The error id.
    pub id: ErrorId,
    /// The client event that failed, when known.
    pub event: Option<String>,
    /// The channel the request named, when known.
    pub channel: Option<String>,
    /// A short human explanation.
    pub message: Cow<'static, str>,
}

impl ClientError {
    /// An error with the id's default message and no context.
    pub fn new(id: ErrorId) -> Self {
        ClientError {
            id,
            event: None,
            channel: None,
            message: Cow::Borrowed(id.description()),
        }
    }

    /// Adds the name of the client event that failed.
    pub fn with_event(mut self, event: impl Into<String>) -> Self {
        self.event = Some(event.into());
        self
    }

    /// Adds the channel the request named.
    pub fn with_channel(mut self, channel: impl Into<String>) -> Self {
        self.channel = Some(channel.into());
        self
    }

    /// Replaces the default message.
    pub fn with_message(mut self, message: impl Into<Cow<'static, str>>) -> Self {
        self.message = message.into();
        self
    }
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.id, self.message)
    }
}

impl std::error::Error for ClientError {}

/// Why a client session ended. Logged, counted, shown by the monitor and
/// mapped to the WebSocket close code sent in the close frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CloseReason {
    /// The client sent a close frame or closed the TCP connection.
    ClientClosed,
    /// The client sent `{"disconnect": true}`.
    Disconnect,
    /// A WebSocket protocol violation (bad framing, masking, opcodes).
    ProtocolError,
    /// A text message that is not valid UTF-8.
    InvalidData,
    /// A message or frame larger than the configured maximum.
    MessageTooBig,
    /// The session's pending outbound bytes passed the limit: it was closed
    /// rather than making a fan-out wait for it.
    SlowConsumer,
    /// The client broke another limit, e.g. flooded requests while its
    /// authentication was being checked.
    PolicyViolation,
    /// Nothing was received for longer than the idle timeout.
    Idle,
    /// The HTTP upgrade did not complete in time (no close frame is possible).
    HandshakeTimeout,
    /// The vhost refused the session: too many connections.
    Overloaded,
    /// The server is shutting down.
    Shutdown,
    /// This cluster node is leaving gracefully; the client should reconnect
    /// to another node.
    Leaving,
    /// The session's vhost was deleted by an administrator.
    VhostDeleted,
    /// The transport failed (reset, I/O error); no close frame was exchanged.
    ConnectionLost,
    /// A bug or an unexpected failure inside the server.
    Internal,
    /// A backend closed the session (`KS`), with a code and reason of its
    /// own; 4000 and "closed by backend" are only the defaults.
    Backend,
}

impl CloseReason {
    /// Every reason, in the order of [`CloseReason::index`].
    pub const ALL: [CloseReason; 16] = [
        CloseReason::ClientClosed,
        CloseReason::Disconnect,
        CloseReason::ProtocolError,
        CloseReason::InvalidData,
        CloseReason::MessageTooBig,
        CloseReason::SlowConsumer,
        CloseReason::PolicyViolation,
        CloseReason::Idle,
        CloseReason::HandshakeTimeout,
        CloseReason::Overloaded,
        CloseReason::Shutdown,
        CloseReason::Leaving,
        CloseReason::VhostDeleted,
        CloseReason::ConnectionLost,
        CloseReason::Internal,
        CloseReason::Backend,
    ];

    /// Number of reasons; the length of per-reason counter arrays.
    pub const COUNT: usize = Self::ALL.len();

    /// The RFC 6455 close code. `ConnectionLost` and `HandshakeTimeout` never
    /// send a close frame; their codes (1006, 1002) are for reporting only.
    pub const fn code(self) -> u16 {
        match self {
            // An idle session is closed normally (limits.rs): nothing failed.
            CloseReason::ClientClosed | CloseReason::Disconnect | CloseReason::Idle => 1000,
            CloseReason::Shutdown | CloseReason::VhostDeleted => 1001,
            CloseReason::ProtocolError | CloseReason::HandshakeTimeout => 1002,
            CloseReason::ConnectionLost => 1006,
            CloseReason::InvalidData => 1007,
            // 1008 (policy violation): the client broke a server policy, e.g.
            // by not reading fast enough.
            CloseReason::SlowConsumer | CloseReason::PolicyViolation => 1008,
            CloseReason::MessageTooBig => 1009,
            CloseReason::Internal => 1011,
            // 1012 (service restart): the service goes on elsewhere.
            CloseReason::Leaving => 1012,
            // 1013 (try again later): the refusal is temporary.
            CloseReason::Overloaded => 1013,
            CloseReason::Backend => 4000,
        }
    }

    /// The short reason text sent in the close frame (well under the 123
    /// bytes a close frame allows).
    pub const fn reason(self) -> &'static str {
        match self {
            CloseReason::ClientClosed => "client closed",
            CloseReason::Disconnect => "disconnect",
            CloseReason::ProtocolError => "protocol error",
            CloseReason::InvalidData => "invalid UTF-8",
            CloseReason::MessageTooBig => "message too big",
            CloseReason::SlowConsumer => "slow consumer",
            CloseReason::PolicyViolation => "policy violation",
            CloseReason::Idle => "idle",
            CloseReason::HandshakeTimeout => "handshake timeout",
            CloseReason::Overloaded => "too many connections",
            CloseReason::Shutdown => "server shutting down",
            CloseReason::Leaving => "node leaving, reconnect elsewhere",
            CloseReason::VhostDeleted => "vhost deleted",
            CloseReason::ConnectionLost => "connection lost",
            CloseReason::Internal => "internal error",
            CloseReason::Backend => "closed by backend",
        }
    }

    /// A snake_case label for counters and logs.
    pub const fn label(self) -> &'static str {
        match self {
            CloseReason::ClientClosed => "client_closed",
            CloseReason::Disconnect => "disconnect",
            CloseReason::ProtocolError => "protocol_error",
            CloseReason::InvalidData => "invalid_data",
            CloseReason::MessageTooBig => "message_too_big",
            CloseReason::SlowConsumer => "slow_consumer",
            CloseReason::PolicyViolation => "policy_violation",
            CloseReason::Idle => "idle",
            CloseReason::HandshakeTimeout => "handshake_timeout",
            CloseReason::Overloaded => "overloaded",
            CloseReason::Shutdown => "shutdown",
            CloseReason::Leaving => "leaving",
            CloseReason::VhostDeleted => "vhost_deleted",
            CloseReason::ConnectionLost => "connection_lost",
            CloseReason::Internal => "internal",
            CloseReason::Backend => "backend",
        }
    }

    /// Position in [`CloseReason::ALL`], for counter arrays.
    pub const fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for CloseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn error_ids_are_indexed_in_table_order() {
        for (i, id) in ErrorId::ALL.iter().enumerate() {
            assert_eq!(id.index(), i, "{id}");
        }
    }

    #[test]
    fn error_ids_are_distinct_upper_snake_case() {
        let mut seen = HashSet::new();
        for id in ErrorId::ALL {
            let s = id.as_str();
            assert!(seen.insert(s), "duplicate {s}");
            assert!(
                s.bytes().all(|b| b.is_ascii_uppercase() || b == b'_'),
                "{s}"
            );
            assert!(!id.description().is_empty());
        }
    }

    #[test]
    fn seed_error_ids_are_spelled_as_in_the_seed() {
        let seed = [
            "INVALID_USER_NAME",
            "USER_NOT_FOUND",
            "INVALID_CREDENTIALS",
            "INVALID_PAYLOAD",
            "INVALID_CHANNEL_NAME",
            "ACCESS_DENIED",
            "CHANNEL_NOT_FOUND",
            "NOT_SUBSCRIBED",
            "INVALID_EVENT_NAME",
            "ASSIGNATION_FAILED",
            "INVALID_MESSAGE_FORMAT",
            "UNDEFINED_EVENT",
        ];
        let ours: HashSet<_> = ErrorId::ALL.iter().map(|id| id.as_str()).collect();
        for s in seed {
            assert!(ours.contains(s), "{s} missing");
        }
    }

    #[test]
    fn close_reasons_are_indexed_and_labelled_uniquely() {
        let mut labels = HashSet::new();
        for (i, r) in CloseReason::ALL.iter().enumerate() {
            assert_eq!(r.index(), i);
            assert!(labels.insert(r.label()));
            assert!(r.reason().len() <= 123, "close reason must fit a frame");
        }
    }

    #[test]
    fn close_codes_match_rfc6455_meanings() {
        assert_eq!(CloseReason::Disconnect.code(), 1000);
        assert_eq!(CloseReason::ClientClosed.code(), 1000);
        assert_eq!(CloseReason::ProtocolError.code(), 1002);
        assert_eq!(CloseReason::InvalidData.code(), 1007);
        assert_eq!(CloseReason::SlowConsumer.code(), 1008);
        assert_eq!(CloseReason::MessageTooBig.code(), 1009);
        assert_eq!(CloseReason::Shutdown.code(), 1001);
        assert_eq!(CloseReason::Leaving.code(), 1012);
        // RFC 6455 codes, but for a backend's close: the range for
        // applications (4000-4999).
        for r in CloseReason::ALL {
            let range = if r == CloseReason::Backend {
                4000..=4999
            } else {
                1000..=1015
            };
            assert!(range.contains(&r.code()), "{r}");
        }
    }

    #[test]
    fn client_error_builders_set_context() {
        let e = ClientError::new(ErrorId::AccessDenied)
            .with_event("subscribe")
            .with_channel("news")
            .with_message("nope");
        assert_eq!(e.event.as_deref(), Some("subscribe"));
        assert_eq!(e.channel.as_deref(), Some("news"));
        assert_eq!(e.message, "nope");
        assert_eq!(e.to_string(), "ACCESS_DENIED: nope");
    }
}
