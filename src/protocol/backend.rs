//! The backend protocol's requests and `ER` codes (spec section 2), shared
//! by the exchange that decodes them and the broker that answers them.

use serde_json::value::RawValue;

use crate::name::{ChannelName, EventName, SessionId};

/// The `ER` codes a backend gets.
pub mod code {
    /// `ER 400`: bad request.
    pub const BAD_REQUEST: u16 = 400;
    /// `ER 402`: bad identity or token.
    pub const BAD_IDENTITY: u16 = 402;
    /// `ER 404`: no such session, resource, item or pending request.
    pub const NOT_FOUND: u16 = 404;
    /// `ER 413`: an item over `limits.max_item_size`, or a resource full.
    pub const TOO_LARGE: u16 = 413;
    /// `ER 451`: invalid channel name.
    pub const INVALID_CHANNEL_NAME: u16 = 451;
    /// `ER 597`: internal error.
    pub const INTERNAL_ERROR: u16 = 597;
    /// `ER 454`: no such channel.
    pub const CHANNEL_NOT_FOUND: u16 = 454;
}

/// Where the outcome of a backend request goes: `Ok` or the `ER` code.
pub type BackendReply = Box<dyn FnOnce(Result<(), u16>) + Send>;

/// A request from a backend program.
#[derive(Debug)]
pub enum BackendRequest {
    /// `BC channel event json`.
    Broadcast {
        /// Channel.
        channel: ChannelName,
        /// Event name.
        event: EventName,
        /// Payload (JSON).
        data: Option<Box<RawValue>>,
    },
    /// `OC channel`.
    OpenChannel(ChannelName),
    /// `CC channel`.
    CloseChannel(ChannelName),
    /// `KS sid code reason`: close a session with a WebSocket close code
    /// (4000-4999) and reason.
    CloseSession {
        /// Target session.
        sid: SessionId,
        /// The close code.
        code: u16,
        /// The close reason (at most 123 bytes).
        reason: String,
    },
    /// `BS channel event json skip`: a server broadcast to the channel's
    /// subscribers on every node but the sessions `skip` names.
    BroadcastExcept {
        /// Channel.
        channel: ChannelName,
        /// Event name.
        event: EventName,
        /// Payload (JSON).
        data: Option<Box<RawValue>>,
        /// Sessions that do not get it.
        skip: Vec<SessionId>,
    },
    /// `DS sid event json`.
    Direct {
        /// Target session.
        sid: SessionId,
        /// Event name.
        event: EventName,
        /// Payload (JSON).
        data: Option<Box<RawValue>>,
    },
}

/// A server broadcast (`RB`, `BS`) as one node passes it to the others,
/// each of which delivers it to its own sessions (not passing it on).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ServerBroadcast {
    /// `RB`: to the sessions of a MonoRail resource (`None`: of every
    /// resource of the vhost).
    Resource {
        /// The vhost.
        vhost: crate::name::VhostPath,
        /// The resource, if one.
        resource: Option<crate::name::ResourceName>,
        /// The message (a JSON object with a `handler`).
        payload: String,
        /// Sessions that do not get it.
        skip: Vec<SessionId>,
    },
    /// `RA` for a request of a `backend` resource that another node
    /// asked: for that node only.
    Answer {
        /// The vhost.
        vhost: crate::name::VhostPath,
        /// The request id the asking node gave.
        request: u64,
        /// The message for the session.
        payload: String,
    },
    /// `BS`: to the subscribers of a webrocket channel.
    Channel {
        /// The vhost.
        vhost: crate::name::VhostPath,
        /// The channel.
        channel: ChannelName,
        /// Event name.
        event: EventName,
        /// Payload (JSON), if any.
        data: Option<String>,
        /// Sessions that do not get it.
        skip: Vec<SessionId>,
    },
}
