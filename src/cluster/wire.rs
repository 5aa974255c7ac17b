//! Frames between nodes (pure). A node sends on its DEALER link to a peer's
//! ROUTER; every message is `[TAG] [args...]`, one argument per ZeroMQ
//! frame. Control messages carry one JSON argument; the data path carries
//! names and the already encoded client message, which is passed on
//! byte for byte and never parsed by the cluster.
//!
//! | tag | args | meaning |
//! |---|---|---|
//! | `HELLO` | json [`Hello`] | first message on a link: who I am, proof of the cookie |
//! | `HB` | json [`Heartbeat`] | liveness, known members, ready workers per vhost |
//! | `INT` | json [`InterestUpdate`] | channels I have subscribers for (delta or snapshot) |
//! | `FWD` | vhost channel hops delivery | a broadcast for its sequencer to order |
//! | `DLV` | vhost channel delivery [offset epoch] | an ordered broadcast for local subscribers; with its position (8-byte big-endian each) when the channel keeps a history |
//! | `PRS` | vhost channel sid user joined | a member of a presence channel joined (`1`) or left (`0`) here; empty user: anonymous |
//! | `SEV` | vhost payload | a session event of the sender's sessions, for this node's workers that asked (`SE`) |
//! | `TRG` | vhost hops payload | a trigger for a ready worker of this node (passed on once if it has none) |
//! | `DS` | request vhost sid event data | a backend's direct message for a session, maybe here (empty data: none) |
//! | `KS` | request vhost sid code reason | a backend's `KS` for a session, maybe here; answered by `DSR` |
//! | `DSR` | request found | whether `DS` found its session (`1`/`0`) |
//! | `LEAVE` | json [`Leave`] | I am leaving: count me out now, not after the heartbeat timeout |
//! | `RRQ` | request json | a raft RPC or a proposal (see `cluster::raft`) |
//! | `RRS` | request json | the answer to the `RRQ` with that request number |

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::name::{ChannelName, EventName, NameError, SessionId, UserName, VhostPath};
use crate::protocol::backend::ServerBroadcast;
use crate::protocol::{Epoch, Position};

/// Largest number of frames a peer message has.
const MAX_FRAMES: usize = 6;

/// A peer message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerMessage {
    /// `HELLO`.
    Hello(Hello),
    /// `HB`.
    Heartbeat(Heartbeat),
    /// `INT`.
    Interest(InterestUpdate),
    /// `FWD`.
    Forward {
        /// Vhost path.
        vhost: VhostPath,
        /// Channel name.
        channel: ChannelName,
        /// Nodes crossed so far, this one included.
        hops: u8,
        /// When the sender sent it (milliseconds since the Unix epoch): a
        /// sequencer that was frozen drops what was sent to it before it
        /// came back, since the senders may have ordered later broadcasts
        /// elsewhere meanwhile.
        sent_ms: u64,
        /// The encoded client message.
        delivery: Vec<u8>,
    },
    /// `DLV`.
    Deliver {
        /// Vhost path.
        vhost: VhostPath,
        /// Channel name.
        channel: ChannelName,
        /// The encoded client message.
        delivery: Vec<u8>,
        /// Its place in the channel's history, when it keeps one.
        position: Option<Position>,
    },
    /// `PRS`.
    Presence {
        /// Vhost path.
        vhost: VhostPath,
        /// Channel name.
        channel: ChannelName,
        /// The member's session.
        sid: SessionId,
        /// Its user, `None` when anonymous.
        user: Option<UserName>,
        /// Joined (`true`) or left.
        joined: bool,
    },
    /// `SEV`.
    SessionEvent {
        /// Vhost path.
        vhost: VhostPath,
        /// The `SE` payload.
        payload: Vec<u8>,
    },
    /// `TRG`.
    Trigger {
        /// Vhost path.
        vhost: VhostPath,
        /// Times it was passed on already (a node without a ready worker
        /// passes a trigger on once).
        hops: u8,
        /// The `TR` payload.
        payload: Vec<u8>,
    },
    /// `DS`.
    Direct {
        /// Matches the `DSR`.
        request: u64,
        /// The requesting backend's vhost.
        vhost: VhostPath,
        /// Target session id.
        sid: SessionId,
        /// Event name.
        event: EventName,
        /// The JSON payload, if any.
        data: Option<String>,
    },
    /// `KS`.
    CloseSession {
        /// Matches the `DSR`.
        request: u64,
        /// The requesting backend's vhost.
        vhost: VhostPath,
        /// Target session id.
        sid: SessionId,
        /// The close code (2 bytes, big-endian).
        code: u16,
        /// The close reason.
        reason: String,
    },
    /// `DSR`.
    DirectReply {
        /// The `DS` answered.
        request: u64,
        /// Whether the session was found here.
        found: bool,
    },
    /// `LEAVE`.
    Leave(Leave),
    /// `SBC`: a server broadcast (`RB`, `BS`) a backend asked of the
    /// sender, for this node's sessions.
    ServerBroadcast(ServerBroadcast),
    /// `RRQ`.
    RaftRequest {
        /// Matches the `RRS`.
        request: u64,
        /// JSON `cluster::raft::RaftRequest`.
        body: Vec<u8>,
    },
    /// `RRS`.
    RaftReply {
        /// The `RRQ` answered.
        request: u64,
        /// JSON `cluster::raft::RaftResponse`.
        body: Vec<u8>,
    },
}

/// A cluster member as gossiped: its name and where it listens.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Member {
    /// Node name.
    pub name: String,
    /// Cluster address (`HOST:PORT`).
    pub addr: String,
}

/// The first message on a link.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// Sender's node name.
    pub name: String,
    /// Sender's cluster address.
    pub addr: String,
    /// Random per process start: a new one means the node restarted.
    pub incarnation: u64,
    /// Sender's clock, milliseconds since the Unix epoch.
    pub time_ms: u64,
    /// Random, never reused.
    pub nonce: String,
    /// Members the sender knows.
    pub members: Vec<Member>,
    /// HMAC-SHA1 under the cluster cookie of [`Hello::signed_text`].
    pub mac: String,
}

impl Hello {
    /// What the MAC covers.
    pub fn signed_text(&self) -> String {
        format!(
            "webrocket-cluster-hello-1\n{}\n{}\n{}\n{}\n{}",
            self.name, self.addr, self.incarnation, self.time_ms, self.nonce
        )
    }
}

/// Sent every heartbeat interval on every link.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Heartbeat {
    /// Sender's incarnation.
    pub incarnation: u64,
    /// Members the sender knows (gossip).
    pub members: Vec<Member>,
    /// Ready workers per vhost on the sender.
    pub workers: BTreeMap<String, u32>,
}

/// Sent once on every link by a node shutting down gracefully.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Leave {
    /// Sender's incarnation: only this run of the node has left; a restart
    /// (a new incarnation) is taken back.
    pub incarnation: u64,
}

/// Interest in `(vhost, channel)` pairs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InterestUpdate {
    /// `true`: `add` is the whole set, forget the rest.
    pub snapshot: bool,
    /// Pairs gained.
    pub add: Vec<(String, String)>,
    /// Pairs lost.
    pub remove: Vec<(String, String)>,
}

/// A peer message that could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// Unknown tag or wrong number of frames.
    #[error("bad peer message {tag:?} with {frames} frames")]
    Shape {
        /// The tag (lossy, cut short).
        tag: String,
        /// Frames received.
        frames: usize,
    },
    /// A text frame that is not UTF-8 or a number that does not parse.
    #[error("bad field in peer message {0}")]
    Field(&'static str),
    /// A JSON frame that does not parse.
    #[error("bad json in peer message {tag}: {reason}")]
    Json {
        /// The tag.
        tag: &'static str,
        /// What serde said.
        reason: String,
    },
}

fn text(frame: &[u8], tag: &'static str) -> Result<String, WireError> {
    std::str::from_utf8(frame)
        .map(str::to_owned)
        .map_err(|_| WireError::Field(tag))
}

/// A name field, validated as it is decoded: a peer's message with a bad
/// name is refused here, not carried further.
fn name<T>(
    frame: &[u8],
    tag: &'static str,
    parse: impl Fn(&str) -> Result<T, NameError>,
) -> Result<T, WireError> {
    let text = std::str::from_utf8(frame).map_err(|_| WireError::Field(tag))?;
    parse(text).map_err(|_| WireError::Field(tag))
}

fn json<T: for<'de> Deserialize<'de>>(frame: &[u8], tag: &'static str) -> Result<T, WireError> {
    serde_json::from_slice(frame).map_err(|e| WireError::Json {
        tag,
        reason: e.to_string(),
    })
}

fn to_json<T: Serialize>(value: &T) -> Vec<u8> {
    // Serialising these plain structs cannot fail.
    serde_json::to_vec(value).unwrap_or_default()
}

impl PeerMessage {
    /// The frames of this message.
    pub fn encode(&self) -> Vec<Vec<u8>> {
        let b = |s: &str| s.as_bytes().to_vec();
        match self {
            PeerMessage::Hello(h) => vec![b("HELLO"), to_json(h)],
            PeerMessage::Heartbeat(h) => vec![b("HB"), to_json(h)],
            PeerMessage::Interest(i) => vec![b("INT"), to_json(i)],
            PeerMessage::Forward {
                vhost,
                channel,
                hops,
                sent_ms,
                delivery,
            } => vec![
                b("FWD"),
                b(vhost.as_str()),
                b(channel.as_str()),
                vec![*hops],
                sent_ms.to_be_bytes().to_vec(),
                delivery.clone(),
            ],
            PeerMessage::Deliver {
                vhost,
                channel,
                delivery,
                position,
            } => {
                let mut frames = vec![
                    b("DLV"),
                    b(vhost.as_str()),
                    b(channel.as_str()),
                    delivery.clone(),
                ];
                if let Some(p) = position {
                    frames.push(p.offset.to_be_bytes().to_vec());
                    frames.push(p.epoch.0.to_be_bytes().to_vec());
                }
                frames
            }
            PeerMessage::Presence {
                vhost,
                channel,
                sid,
                user,
                joined,
            } => vec![
                b("PRS"),
                b(vhost.as_str()),
                b(channel.as_str()),
                b(sid.as_str()),
                user.as_ref().map(|u| b(u.as_str())).unwrap_or_default(),
                vec![u8::from(*joined)],
            ],
            PeerMessage::SessionEvent { vhost, payload } => {
                vec![b("SEV"), b(vhost.as_str()), payload.clone()]
            }
            PeerMessage::Trigger {
                vhost,
                hops,
                payload,
            } => vec![b("TRG"), b(vhost.as_str()), vec![*hops], payload.clone()],
            PeerMessage::Direct {
                request,
                vhost,
                sid,
                event,
                data,
            } => vec![
                b("DS"),
                request.to_be_bytes().to_vec(),
                b(vhost.as_str()),
                b(sid.as_str()),
                b(event.as_str()),
                data.as_deref().map(b).unwrap_or_default(),
            ],
            PeerMessage::CloseSession {
                request,
                vhost,
                sid,
                code,
                reason,
            } => vec![
                b("KS"),
                request.to_be_bytes().to_vec(),
                b(vhost.as_str()),
                b(sid.as_str()),
                code.to_be_bytes().to_vec(),
                b(reason),
            ],
            PeerMessage::DirectReply { request, found } => {
                vec![
                    b("DSR"),
                    request.to_be_bytes().to_vec(),
                    vec![u8::from(*found)],
                ]
            }
            PeerMessage::Leave(l) => vec![b("LEAVE"), to_json(l)],
            PeerMessage::ServerBroadcast(sb) => vec![b("SBC"), to_json(sb)],
            PeerMessage::RaftRequest { request, body } => {
                vec![b("RRQ"), request.to_be_bytes().to_vec(), body.clone()]
            }
            PeerMessage::RaftReply { request, body } => {
                vec![b("RRS"), request.to_be_bytes().to_vec(), body.clone()]
            }
        }
    }

    /// Whether encoded `frames` are a `LEAVE` (the link writes it after the
    /// data queued before it, like a heartbeat).
    pub fn is_leave(frames: &[Vec<u8>]) -> bool {
        frames.first().is_some_and(|tag| tag == b"LEAVE")
    }

    /// Decodes the frames after the routing id.
    pub fn decode<F: AsRef<[u8]>>(frames: &[F]) -> Result<PeerMessage, WireError> {
        let f: Vec<&[u8]> = frames
            .iter()
            .take(MAX_FRAMES + 1)
            .map(AsRef::as_ref)
            .collect();
        let shape = || WireError::Shape {
            tag: f
                .first()
                .map(|t| String::from_utf8_lossy(&t[..t.len().min(16)]).into_owned())
                .unwrap_or_default(),
            frames: frames.len(),
        };
        let request = |frame: &[u8]| -> Result<u64, WireError> {
            let bytes: [u8; 8] = frame.try_into().map_err(|_| WireError::Field("request"))?;
            Ok(u64::from_be_bytes(bytes))
        };
        Ok(match (f.first().copied().unwrap_or_default(), f.len()) {
            (b"HELLO", 2) => PeerMessage::Hello(json(f[1], "HELLO")?),
            (b"HB", 2) => PeerMessage::Heartbeat(json(f[1], "HB")?),
            (b"INT", 2) => PeerMessage::Interest(json(f[1], "INT")?),
            (b"LEAVE", 2) => PeerMessage::Leave(json(f[1], "LEAVE")?),
            (b"SBC", 2) => PeerMessage::ServerBroadcast(json(f[1], "SBC")?),
            (b"FWD", 6) => PeerMessage::Forward {
                vhost: name(f[1], "vhost", VhostPath::parse)?,
                channel: name(f[2], "channel", ChannelName::parse)?,
                hops: *f[3].first().ok_or(WireError::Field("hops"))?,
                sent_ms: request(f[4]).map_err(|_| WireError::Field("sent_ms"))?,
                delivery: f[5].to_vec(),
            },
            (b"DLV", 4) => PeerMessage::Deliver {
                vhost: name(f[1], "vhost", VhostPath::parse)?,
                channel: name(f[2], "channel", ChannelName::parse)?,
                delivery: f[3].to_vec(),
                position: None,
            },
            (b"DLV", 6) => PeerMessage::Deliver {
                vhost: name(f[1], "vhost", VhostPath::parse)?,
                channel: name(f[2], "channel", ChannelName::parse)?,
                delivery: f[3].to_vec(),
                position: Some(Position {
                    offset: u64::from_be_bytes(
                        f[4].try_into().map_err(|_| WireError::Field("offset"))?,
                    ),
                    epoch: Epoch(u64::from_be_bytes(
                        f[5].try_into().map_err(|_| WireError::Field("epoch"))?,
                    )),
                }),
            },
            (b"PRS", 6) => PeerMessage::Presence {
                vhost: name(f[1], "vhost", VhostPath::parse)?,
                channel: name(f[2], "channel", ChannelName::parse)?,
                sid: name(f[3], "sid", SessionId::parse)?,
                user: if f[4].is_empty() {
                    None
                } else {
                    Some(name(f[4], "user", UserName::parse)?)
                },
                joined: f[5] == [1],
            },
            (b"SEV", 3) => PeerMessage::SessionEvent {
                vhost: name(f[1], "vhost", VhostPath::parse)?,
                payload: f[2].to_vec(),
            },
            (b"TRG", 4) => PeerMessage::Trigger {
                vhost: name(f[1], "vhost", VhostPath::parse)?,
                hops: *f[2].first().ok_or(WireError::Field("hops"))?,
                payload: f[3].to_vec(),
            },
            (b"DS", 6) => PeerMessage::Direct {
                request: request(f[1])?,
                vhost: name(f[2], "vhost", VhostPath::parse)?,
                sid: name(f[3], "sid", SessionId::parse)?,
                event: name(f[4], "event", EventName::parse)?,
                data: Some(text(f[5], "data")?).filter(|d| !d.is_empty()),
            },
            (b"KS", 6) => PeerMessage::CloseSession {
                request: request(f[1])?,
                vhost: name(f[2], "vhost", VhostPath::parse)?,
                sid: name(f[3], "sid", SessionId::parse)?,
                // The same bounds as the backend's `KS`: a bad one is a
                // wire error, not a bad close frame.
                code: Some(u16::from_be_bytes(
                    f[4].try_into().map_err(|_| WireError::Field("code"))?,
                ))
                .filter(|c| (4000..=4999).contains(c))
                .ok_or(WireError::Field("code"))?,
                reason: Some(text(f[5], "reason")?)
                    .filter(|r| r.len() <= 123)
                    .ok_or(WireError::Field("reason"))?,
            },
            (b"DSR", 3) => PeerMessage::DirectReply {
                request: request(f[1])?,
                found: f[2] == [1],
            },
            (b"RRQ", 3) => PeerMessage::RaftRequest {
                request: request(f[1])?,
                body: f[2].to_vec(),
            },
            (b"RRS", 3) => PeerMessage::RaftReply {
                request: request(f[1])?,
                body: f[2].to_vec(),
            },
            _ => return Err(shape()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SID: &str = "0123456789abcdef0123456789abcdef";

    fn vhost() -> VhostPath {
        VhostPath::parse("/chat").unwrap()
    }

    #[test]
    fn names_are_checked_as_they_are_decoded() {
        let bad = [
            vec![&b"DLV"[..], b"no-slash", b"news", b"{}"],
            vec![&b"FWD"[..], b"/chat", b"bad channel!", &[0], &[0; 8], b"{}"],
            vec![&b"TRG"[..], b"", &[0], b"{}"],
            vec![&b"DS"[..], &[0; 8], b"/chat", b"not-a-sid", b"e", b""],
            vec![&b"DS"[..], &[0; 8], b"/chat", SID.as_bytes(), b"", b""],
        ];
        for frames in bad {
            assert!(
                matches!(PeerMessage::decode(&frames), Err(WireError::Field(_))),
                "{frames:?}"
            );
        }
    }

    fn round_trip(message: PeerMessage) {
        let frames = message.encode();
        assert_eq!(PeerMessage::decode(&frames), Ok(message));
    }

    #[test]
    fn every_message_round_trips() {
        round_trip(PeerMessage::Hello(Hello {
            name: "n1".into(),
            addr: "127.0.0.1:9000".into(),
            incarnation: 7,
            time_ms: 1_700_000_000_000,
            nonce: "abc".into(),
            members: vec![Member {
                name: "n2".into(),
                addr: "127.0.0.1:9001".into(),
            }],
            mac: "00".into(),
        }));
        round_trip(PeerMessage::Heartbeat(Heartbeat {
            incarnation: 1,
            members: vec![],
            workers: [("/chat".to_string(), 2)].into(),
        }));
        round_trip(PeerMessage::Interest(InterestUpdate {
            snapshot: true,
            add: vec![("/chat".into(), "news".into())],
            remove: vec![],
        }));
        round_trip(PeerMessage::Forward {
            vhost: vhost(),
            channel: ChannelName::parse("news").unwrap(),
            hops: 1,
            sent_ms: 1_700_000_000_123,
            delivery: b"{\"e\":{}}".to_vec(),
        });
        round_trip(PeerMessage::Deliver {
            vhost: vhost(),
            channel: ChannelName::parse("news").unwrap(),
            delivery: vec![0, 1, 2],
            position: None,
        });
        round_trip(PeerMessage::Deliver {
            vhost: vhost(),
            channel: ChannelName::parse("news").unwrap(),
            delivery: vec![0, 1, 2],
            position: Some(Position {
                offset: 1 << 40,
                epoch: Epoch(u64::MAX - 1),
            }),
        });
        round_trip(PeerMessage::Presence {
            vhost: vhost(),
            channel: ChannelName::parse("news").unwrap(),
            sid: SessionId::parse(SID).unwrap(),
            user: Some(UserName::parse("joe").unwrap()),
            joined: true,
        });
        round_trip(PeerMessage::Presence {
            vhost: vhost(),
            channel: ChannelName::parse("news").unwrap(),
            sid: SessionId::parse(SID).unwrap(),
            user: None,
            joined: false,
        });
        round_trip(PeerMessage::CloseSession {
            request: 9,
            vhost: vhost(),
            sid: SessionId::parse(SID).unwrap(),
            code: 4321,
            reason: "bye".into(),
        });
        round_trip(PeerMessage::SessionEvent {
            vhost: vhost(),
            payload: b"{}".to_vec(),
        });
        round_trip(PeerMessage::Trigger {
            vhost: vhost(),
            hops: 1,
            payload: b"{}".to_vec(),
        });
        round_trip(PeerMessage::Direct {
            request: u64::MAX - 3,
            vhost: vhost(),
            sid: SessionId::parse(SID).unwrap(),
            event: EventName::parse("hi").unwrap(),
            data: Some("{\"a\":1}".into()),
        });
        round_trip(PeerMessage::Direct {
            request: 1,
            vhost: vhost(),
            sid: SessionId::parse(SID).unwrap(),
            event: EventName::parse("hi").unwrap(),
            data: None,
        });
        round_trip(PeerMessage::DirectReply {
            request: 9,
            found: true,
        });
        round_trip(PeerMessage::Leave(Leave { incarnation: 42 }));
        round_trip(PeerMessage::ServerBroadcast(ServerBroadcast::Channel {
            vhost: vhost(),
            channel: ChannelName::parse("news").unwrap(),
            event: EventName::parse("hi").unwrap(),
            data: Some("{\"a\":1}".into()),
            skip: vec![SessionId::parse(SID).unwrap()],
        }));
        round_trip(PeerMessage::ServerBroadcast(ServerBroadcast::Resource {
            vhost: vhost(),
            resource: None,
            payload: "{\"handler\":\"x\"}".into(),
            skip: vec![],
        }));
        round_trip(PeerMessage::RaftRequest {
            request: 5,
            body: b"{\"Vote\":{}}".to_vec(),
        });
        round_trip(PeerMessage::RaftReply {
            request: u64::MAX,
            body: vec![],
        });
        assert!(PeerMessage::is_leave(
            &PeerMessage::Leave(Leave::default()).encode()
        ));
        assert!(!PeerMessage::is_leave(
            &PeerMessage::Heartbeat(Heartbeat::default()).encode()
        ));
        assert!(!PeerMessage::is_leave(&[]));
    }

    #[test]
    fn the_hello_mac_covers_identity_time_and_nonce() {
        let hello = Hello {
            name: "a".into(),
            addr: "h:1".into(),
            incarnation: 2,
            time_ms: 3,
            nonce: "n".into(),
            members: vec![],
            mac: String::new(),
        };
        assert_eq!(
            hello.signed_text(),
            "webrocket-cluster-hello-1\na\nh:1\n2\n3\nn"
        );
    }

    #[test]
    fn bad_messages_are_errors_not_panics() {
        let empty: [&[u8]; 0] = [];
        assert!(PeerMessage::decode(&empty).is_err());
        assert!(PeerMessage::decode(&[b"NOPE".as_slice()]).is_err());
        assert!(PeerMessage::decode(&[b"HB".as_slice(), b"{"]).is_err());
        assert!(PeerMessage::decode(&[b"LEAVE".as_slice()]).is_err());
        assert!(PeerMessage::decode(&[b"LEAVE".as_slice(), b"{}", b"x"]).is_err());
        assert!(PeerMessage::decode(&[b"DLV".as_slice(), b"/a", b"c"]).is_err());
        assert!(PeerMessage::decode(&[
            b"DLV".as_slice(),
            b"/a",
            b"c",
            b"{}",
            b"1234",
            b"12345678"
        ])
        .is_err());
        assert!(PeerMessage::decode(&[b"DLV".as_slice(), &[0xff], b"c", b"x"]).is_err());
        assert!(PeerMessage::decode(&[b"FWD".as_slice(), b"/a", b"c", b"", b"x"]).is_err());
        assert!(PeerMessage::decode(&[b"DSR".as_slice(), b"short", b"1"]).is_err());
        let many = vec![b"HB".to_vec(); 10];
        assert!(PeerMessage::decode(&many).is_err());
    }
}
