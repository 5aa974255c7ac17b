//! The client protocol (WebSocket, JSON) and its error table.
//!
//! Pure: bytes in, [`Request`] or [`ClientError`] out; replies, errors and
//! deliveries encoded into caller-owned buffers. No I/O, no tokio. The broker
//! ([`crate::broker`]) decides what to answer; this module only knows shapes.
//!
//! - [`error`]: [`ErrorId`] (every client-visible error id) and
//!   [`CloseReason`] (every way a session ends, with its close code).
//! - [`backend`]: the backend protocol's requests and `ER` codes.
//! - [`client`]: [`decode`] one client message into a [`Request`].
//! - [`position`]: [`Position`] (offset and epoch) of a message in a
//!   channel's history.
//! - [`encode`]: replies, errors, broadcast deliveries, direct messages and
//!   the trigger payload for workers.

pub mod backend;
pub mod client;
pub mod encode;
pub mod error;
mod json;
pub mod position;

pub use client::{decode, Request, CLIENT_EVENTS, MAX_DATA_DEPTH};
pub use encode::{
    encode_delivery, encode_direct, encode_error, encode_history, encode_membership,
    encode_presence, encode_reply, encode_session_event, encode_subscribed, encode_trigger,
    stamp_delivery, Member, Reply, SessionEvent, Subscribed,
};
pub use error::{ClientError, CloseReason, ErrorId};
pub use position::{Epoch, Position};
