//! The WebSocket nukleus and its pure protocol engine (RFC 6455 with the
//! RFC 7692 permessage-deflate extension).
//!
//! The engine imports no I/O: the nukleus feeds it the bytes a client sent and
//! ships what it returns.
//!
//! - [`begin`]: the BEGIN a handler gets for an accepted upgrade (path,
//!   sub-protocol, query, origin, address).
//! - [`handshake`]: the HTTP/1.1 upgrade request, the 101 answer and every
//!   rejection status.
//! - [`http`]: the answers to plain HTTP requests on the WebSocket port
//!   (the JavaScript client, the example page, `/healthz`).
//! - [`extension`]: parsing `Sec-WebSocket-Extensions` offers and choosing the
//!   permessage-deflate parameters.
//! - [`frame`]: frame header layout, masking, opcodes and close codes.
//! - [`utf8`]: incremental, fail-fast UTF-8 validation of text messages.
//! - [`deflate`]: the per-connection inflater and deflater.
//! - [`connection`]: [`WsConnection`], the state machine of one upgraded
//!   connection (decoding, reassembly, control frames, closing, encoding).

pub mod begin;
pub mod connection;
pub mod deflate;
mod encode;
pub mod extension;
pub mod frame;
pub mod handshake;
pub mod http;
mod message;
pub mod utf8;

pub mod credit;
mod multicast;
pub mod nukleus;
mod relay;

#[cfg(test)]
mod autobahn_server;
#[cfg(test)]
mod connection_tests;
#[cfg(test)]
mod deflate_tests;

pub use connection::WsConnection;
pub use extension::{DeflateOffer, DeflateParams};
pub use handshake::{HandshakeOutcome, UpgradeRequest};

/// Limits and switches of the WebSocket engine, shared by every connection of
/// one endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WsSettings {
    /// Largest payload of one frame as sent on the wire; larger frames fail
    /// the connection with 1009.
    pub max_frame_size: usize,
    /// Largest message (after inflating, when compressed); larger messages
    /// fail the connection with 1009.
    pub max_message_size: usize,
    /// Most bytes handed over in one [`Action::Deliver`]; larger messages are
    /// delivered in pieces with FIN on the last one only.
    pub chunk_size: usize,
    /// Largest upgrade request head (request line and headers); larger ones
    /// are answered with 431.
    pub max_handshake_size: usize,
    /// Whether permessage-deflate offers are accepted at all.
    pub deflate: bool,
}

impl Default for WsSettings {
    fn default() -> Self {
        Self {
            max_frame_size: 1 << 20,
            max_message_size: 1 << 20,
            chunk_size: 64 << 10,
            max_handshake_size: 8 << 10,
            deflate: true,
        }
    }
}

/// What the engine asks its driver to do, in order, while decoding input.
#[derive(Debug, PartialEq, Eq)]
pub enum Action<'a> {
    /// Bytes to write to the client (a pong, a close frame).
    Send(&'a [u8]),
    /// A message, or a piece of one, for the handler. `flags` is laid out like
    /// the first byte of a frame: `0x80` FIN, low nibble the opcode (`0x1`
    /// text, `0x2` binary on the first piece, `0x0` on the following ones).
    /// The payload is unmasked and inflated. Pieces of a text message may
    /// split a UTF-8 sequence; the whole message is validated.
    Deliver {
        /// FIN bit and opcode.
        flags: u8,
        /// The bytes of this piece.
        payload: &'a [u8],
    },
    /// The WebSocket connection is over: close the TCP connection once the
    /// preceding `Send` bytes are written. `code` is the close code that ended
    /// it (the client's, or the one this side sent).
    Closed {
        /// The close code (1005 when the client's close frame carried none).
        code: u16,
    },
}
