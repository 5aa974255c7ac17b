//! Control commands and their responses (seeds 000 and 001).
//!
//! ```text
//! command body                         response body
//! +------------------+-------------+   +------------------+-----------------+
//! | i64 correlation  | fields ...  |   | i64 correlation  | i64 ref (BOUND, |
//! +------------------+-------------+   +------------------+  PREPARED only) |
//!                                                         +-----------------+
//! CAPTURE   0x01  string name          CAPTURED    0x40000001
//! UNCAPTURE 0x02  string name          UNCAPTURED  0x40000002
//! ROUTE     0x03  string name          ROUTED      0x40000003
//! UNROUTE   0x04  string name          UNROUTED    0x40000004
//! BIND      0x11  nukleus-specific     BOUND       0x40000011 + i64 ref
//!                                        (tcp adds the bound address union
//!                                        and port, so port 0 can be used)
//! UNBIND    0x12  i64 ref              UNBOUND     0x40000012
//! PREPARE   0x13  nukleus-specific     PREPARED    0x40000013 + i64 ref
//! UNPREPARE 0x14  i64 ref              UNPREPARED  0x40000014
//!                                      ERROR       0x40000000
//! ```
//!
//! Unknown command types are ignored, as the seeds say. A known command whose
//! body does not decode is answered with ERROR.

use super::frame::{FrameError, Reader, Writer};

/// CAPTURE: create and read `<me>/streams/<source>`.
pub const CAPTURE: i32 = 0x01;
/// UNCAPTURE: stop reading `<me>/streams/<source>`.
pub const UNCAPTURE: i32 = 0x02;
/// ROUTE: map `<destination>/streams/<me>` and write into it.
pub const ROUTE: i32 = 0x03;
/// UNROUTE: stop writing to `<destination>/streams/<me>`.
pub const UNROUTE: i32 = 0x04;
/// BIND: accept streams for a handler.
pub const BIND: i32 = 0x11;
/// UNBIND: forget a binding.
pub const UNBIND: i32 = 0x12;
/// PREPARE: accept streams from a handler towards a destination.
pub const PREPARE: i32 = 0x13;
/// UNPREPARE: forget a preparation.
pub const UNPREPARE: i32 = 0x14;
/// The bit that turns a command type into its response type.
pub const RESPONSE: i32 = 0x4000_0000;
/// ERROR: the command failed.
pub const ERROR: i32 = RESPONSE;

/// A decoded control command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command<'a> {
    /// CAPTURE source.
    Capture(&'a str),
    /// UNCAPTURE source.
    Uncapture(&'a str),
    /// ROUTE destination.
    Route(&'a str),
    /// UNROUTE destination.
    Unroute(&'a str),
    /// BIND with the nukleus-specific body.
    Bind(&'a [u8]),
    /// UNBIND ref.
    Unbind(i64),
    /// PREPARE with the nukleus-specific body.
    Prepare(&'a [u8]),
    /// UNPREPARE ref.
    Unprepare(i64),
}

impl Command<'_> {
    /// The command's type id.
    pub fn type_id(&self) -> i32 {
        match self {
            Command::Capture(_) => CAPTURE,
            Command::Uncapture(_) => UNCAPTURE,
            Command::Route(_) => ROUTE,
            Command::Unroute(_) => UNROUTE,
            Command::Bind(_) => BIND,
            Command::Unbind(_) => UNBIND,
            Command::Prepare(_) => PREPARE,
            Command::Unprepare(_) => UNPREPARE,
        }
    }

    /// Encodes the body (after the correlation id is prepended).
    pub fn encode(&self, correlation: i64, out: &mut Vec<u8>) {
        out.put_i64(correlation);
        match *self {
            Command::Capture(name)
            | Command::Uncapture(name)
            | Command::Route(name)
            | Command::Unroute(name) => out.put_string(Some(name)),
            Command::Bind(body) | Command::Prepare(body) => out.extend_from_slice(body),
            Command::Unbind(reference) | Command::Unprepare(reference) => out.put_i64(reference),
        }
    }
}

/// What decoding a command record gave.
#[derive(Debug, PartialEq, Eq)]
pub enum Decoded<'a> {
    /// A command to execute.
    Command {
        /// Echoed in the response.
        correlation: i64,
        /// The command.
        command: Command<'a>,
    },
    /// A known command with a bad body: answer ERROR.
    Malformed {
        /// Echoed in the ERROR response.
        correlation: i64,
        /// Why.
        error: FrameError,
    },
    /// A command type this protocol does not define: answer ERROR, so the
    /// sender does not wait for a response that never comes.
    Unknown {
        /// Echoed in the ERROR response.
        correlation: i64,
    },
    /// Too short to carry a correlation id: nobody to answer; ignored.
    Ignored,
}

fn named<'a>(r: &mut Reader<'a>) -> Result<&'a str, FrameError> {
    r.string()?.ok_or(FrameError::BadString)
}

/// Decodes one record read from a command ring.
pub fn decode(type_id: i32, body: &[u8]) -> Decoded<'_> {
    let mut r = Reader::new(body);
    let Ok(correlation) = r.i64() else {
        return Decoded::Ignored;
    };
    let command = match type_id {
        CAPTURE => named(&mut r).map(Command::Capture),
        UNCAPTURE => named(&mut r).map(Command::Uncapture),
        ROUTE => named(&mut r).map(Command::Route),
        UNROUTE => named(&mut r).map(Command::Unroute),
        BIND => Ok(Command::Bind(r.rest())),
        UNBIND => r.i64().map(Command::Unbind),
        PREPARE => Ok(Command::Prepare(r.rest())),
        UNPREPARE => r.i64().map(Command::Unprepare),
        _ => return Decoded::Unknown { correlation },
    };
    match command {
        Ok(command) => Decoded::Command {
            correlation,
            command,
        },
        Err(error) => Decoded::Malformed { correlation, error },
    }
}

/// A response as it travels on the broadcast buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Response {
    /// The command type answered, or [`ERROR`]'s 0 for an error.
    pub command: i32,
    /// The command's correlation id.
    pub correlation: i64,
    /// The ref returned by BOUND and PREPARED.
    pub reference: Option<i64>,
    /// The local address a tcp BIND listens on.
    pub address: Option<std::net::SocketAddr>,
}

impl Response {
    /// A success response to `command`.
    pub fn ok(command: i32, correlation: i64) -> Self {
        Response {
            command,
            correlation,
            reference: None,
            address: None,
        }
    }

    /// A success response carrying a ref (BOUND, PREPARED).
    pub fn with_ref(command: i32, correlation: i64, reference: i64) -> Self {
        Response {
            command,
            correlation,
            reference: Some(reference),
            address: None,
        }
    }

    /// An ERROR response.
    pub fn error(correlation: i64) -> Self {
        Response {
            command: 0,
            correlation,
            reference: None,
            address: None,
        }
    }

    /// True for ERROR.
    pub fn is_error(&self) -> bool {
        self.command == 0
    }

    /// The record type on the wire.
    pub fn type_id(&self) -> i32 {
        RESPONSE | self.command
    }

    /// The body on the wire.
    pub fn encode(&self) -> Vec<u8> {
        let mut body = Vec::with_capacity(40);
        body.put_i64(self.correlation);
        if let Some(reference) = self.reference {
            body.put_i64(reference);
            if let Some(address) = self.address {
                body.put_socket_addr(address);
            }
        }
        body
    }

    /// Decodes a record read from the response buffer.
    pub fn decode(type_id: i32, body: &[u8]) -> Option<Response> {
        if type_id & RESPONSE == 0 {
            return None;
        }
        let mut r = Reader::new(body);
        let correlation = r.i64().ok()?;
        let reference = r.i64().ok();
        let address = r.socket_addr().ok();
        Some(Response {
            command: type_id & !RESPONSE,
            correlation,
            reference,
            address,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capture_encodes_correlation_then_name() {
        let mut body = Vec::new();
        Command::Capture("ws").encode(7, &mut body);
        assert_eq!(body, [7, 0, 0, 0, 0, 0, 0, 0, 2, b'w', b's']);
        assert_eq!(
            decode(CAPTURE, &body),
            Decoded::Command {
                correlation: 7,
                command: Command::Capture("ws")
            }
        );
    }

    #[test]
    fn every_command_round_trips() {
        let commands = [
            Command::Capture("a"),
            Command::Uncapture("b"),
            Command::Route("c"),
            Command::Unroute("d"),
            Command::Bind(&[1, 2, 3]),
            Command::Unbind(42),
            Command::Prepare(&[9]),
            Command::Unprepare(43),
        ];
        for (i, command) in commands.iter().enumerate() {
            let mut body = Vec::new();
            command.encode(i as i64, &mut body);
            assert_eq!(
                decode(command.type_id(), &body),
                Decoded::Command {
                    correlation: i as i64,
                    command: *command
                }
            );
        }
    }

    #[test]
    fn unknown_types_and_bad_bodies_are_errors() {
        let mut unknown = 77i64.to_le_bytes().to_vec();
        unknown.extend_from_slice(&[0; 8]);
        assert_eq!(decode(0x55, &unknown), Decoded::Unknown { correlation: 77 });
        // Nothing to answer without a correlation id.
        assert_eq!(decode(0x55, &[1, 2]), Decoded::Ignored);
        assert_eq!(decode(CAPTURE, &[1, 2]), Decoded::Ignored);
        assert!(matches!(
            decode(CAPTURE, &[5, 0, 0, 0, 0, 0, 0, 0, 9, b'x']),
            Decoded::Malformed { correlation: 5, .. }
        ));
        assert!(matches!(
            decode(UNBIND, &[5, 0, 0, 0, 0, 0, 0, 0, 1]),
            Decoded::Malformed { correlation: 5, .. }
        ));
    }

    #[test]
    fn responses_are_byte_exact() {
        let bound = Response::with_ref(BIND, 3, 0x0102);
        assert_eq!(bound.type_id(), 0x4000_0011);
        let body = bound.encode();
        assert_eq!(body, [3, 0, 0, 0, 0, 0, 0, 0, 2, 1, 0, 0, 0, 0, 0, 0]);
        assert_eq!(Response::decode(bound.type_id(), &body), Some(bound));
        let mut listening = bound;
        listening.address = Some("127.0.0.1:80".parse().unwrap());
        let body = listening.encode();
        assert_eq!(&body[16..], &[1, 127, 0, 0, 1, 0, 80]);
        assert_eq!(Response::decode(bound.type_id(), &body), Some(listening));
        let error = Response::error(9);
        assert_eq!(error.type_id(), 0x4000_0000);
        let body = error.encode();
        assert_eq!(body.len(), 8);
        let decoded = Response::decode(ERROR, &body).unwrap();
        assert!(decoded.is_error());
        assert_eq!(decoded.correlation, 9);
        assert_eq!(Response::decode(CAPTURE, &body), None);
    }
}
