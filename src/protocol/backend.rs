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
