//! Layout of a durable channel history file
//! (`<storage_dir>/history/<id>.hist`), described once.
//!
//! ```text
//! file header (16 bytes)
//! +--------------------+---------------------+
//! | magic "WRHIST\0\1" | reserved (8, zero)  |
//! +--------------------+---------------------+
//!
//! records, framed as in `state.log` (see [`super::record`]):
//! +---------------+------------------------+----------------------+
//! | len (u32 LE)  | crc32 of payload (u32) | payload (len >= 1)   |
//! +---------------+------------------------+----------------------+
//!
//! payloads (integers little-endian; the first byte is the kind)
//! OPEN     1 | boot len u8 | boot id | vhost len u16 | vhost | channel len u16 | channel
//! RUN      2 | epoch u64 | first offset u64 | minted u8
//! MESSAGE  3 | offset u64 | wall-clock ms u64 | delivery (the rest)
//! CLOSE    4
//! ```
//!
//! A file starts with exactly one OPEN (which channel, and the boot of the
//! machine it was opened under); RUN starts a run of offsets of one epoch
//! (`minted`: this node numbers it); each MESSAGE continues the run by
//! one; CLOSE ends a clean stop. Appends add RUN and MESSAGE records; a
//! compaction rewrites the file as OPEN, RUN and the messages still held.
//!
//! Pure: works on byte slices. The files themselves are in
//! [`super::history_files`].

use super::record::{self, Decoded, HEADER_LEN};
use crate::name::{ChannelName, VhostPath};

/// Magic of a history file; the last byte is the format version.
pub const HISTORY_MAGIC: [u8; 8] = *b"WRHIST\x00\x01";

const OPEN: u8 = 1;
const RUN: u8 = 2;
const MESSAGE: u8 = 3;
const CLOSE: u8 = 4;

/// Bytes a MESSAGE record adds to its delivery (framing, kind, offset,
/// time).
pub const MESSAGE_OVERHEAD: usize = record::RECORD_HEADER_LEN + 1 + 8 + 8;
/// Bytes of a whole RUN record.
pub const RUN_LEN: usize = record::RECORD_HEADER_LEN + 1 + 8 + 8 + 1;

/// One record after the OPEN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item<'a> {
    /// A run of `epoch` starts at `offset`.
    Run {
        /// The run's epoch.
        epoch: u64,
        /// Its first offset.
        offset: u64,
        /// Whether this node numbers it.
        minted: bool,
    },
    /// The message at `offset` of the current run.
    Message {
        /// Its offset.
        offset: u64,
        /// When it was kept (milliseconds since the Unix epoch).
        at_ms: u64,
        /// The delivery, as sent to subscribers.
        delivery: &'a [u8],
    },
}

/// Appends the framed RUN record to `out`.
pub fn encode_run(epoch: u64, offset: u64, minted: bool, out: &mut Vec<u8>) {
    let mut payload = [0; 18];
    payload[0] = RUN;
    payload[1..9].copy_from_slice(&epoch.to_le_bytes());
    payload[9..17].copy_from_slice(&offset.to_le_bytes());
    payload[17] = u8::from(minted);
    record::encode_record(&payload, out);
}

/// Appends the framed MESSAGE record to `out` (one copy of `delivery`).
pub fn encode_message(offset: u64, at_ms: u64, delivery: &[u8], out: &mut Vec<u8>) {
    let len = 17 + delivery.len();
    // Framed by hand rather than through `encode_record` to avoid building
    // the payload in a buffer of its own first.
    let Ok(len32) = u32::try_from(len) else {
        return;
    };
    let mut head = [0; 17];
    head[0] = MESSAGE;
    head[1..9].copy_from_slice(&offset.to_le_bytes());
    head[9..17].copy_from_slice(&at_ms.to_le_bytes());
    let mut crc = crc32fast::Hasher::new();
    crc.update(&head);
    crc.update(delivery);
    out.reserve(record::RECORD_HEADER_LEN + len);
    out.extend_from_slice(&len32.to_le_bytes());
    out.extend_from_slice(&crc.finalize().to_le_bytes());
    out.extend_from_slice(&head);
    out.extend_from_slice(delivery);
}

/// The file header followed by the OPEN record.
pub fn encode_start(boot: &str, vhost: &VhostPath, channel: &ChannelName) -> Vec<u8> {
    let mut out = record::encode_header(HISTORY_MAGIC, 0).to_vec();
    let boot = &boot.as_bytes()[..boot.len().min(u8::MAX as usize)];
    let mut payload = vec![OPEN];
    payload.push(boot.len() as u8);
    payload.extend_from_slice(boot);
    for name in [vhost.as_str(), channel.as_str()] {
        // Names are at most 255 bytes (`crate::name`).
        payload.extend_from_slice(&(name.len() as u16).to_le_bytes());
        payload.extend_from_slice(name.as_bytes());
    }
    record::encode_record(&payload, &mut out);
    out
}

/// The framed CLOSE record.
pub fn encode_close(out: &mut Vec<u8>) {
    record::encode_record(&[CLOSE], out);
}

/// How a file's records ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tail {
    /// After whole records (the last may be CLOSE).
    Clean,
    /// Inside a record: an append that did not finish.
    Torn,
}

/// A file that reads as a history.
#[derive(Debug)]
pub struct Parsed<'a> {
    /// The vhost of the OPEN record.
    pub vhost: VhostPath,
    /// The channel of the OPEN record.
    pub channel: ChannelName,
    /// The boot id the file was opened under.
    pub boot: String,
    /// RUN and MESSAGE records, in file order.
    pub items: Vec<Item<'a>>,
    /// Whether the last whole record is CLOSE (a clean stop).
    pub closed: bool,
    /// How the records ended.
    pub tail: Tail,
    /// Bytes up to the end of the last whole record.
    pub good_len: usize,
}

/// Why a file does not read as a history.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// Not a history file (wrong magic), or shorter than its header.
    #[error("not a history file (bad header)")]
    Header,
    /// The OPEN record is missing or damaged.
    #[error("bad OPEN record: {0}")]
    Open(&'static str),
    /// A record after the OPEN is damaged (its length or checksum is
    /// wrong, or it does not decode), at byte `at`.
    #[error("corrupt record at byte {at}: {reason}")]
    Corrupt {
        /// Where the record starts.
        at: usize,
        /// What is wrong.
        reason: &'static str,
    },
}

/// Reads a whole history file. A torn last record is [`Tail::Torn`], not an
/// error; any other damage is. `max_record` bounds a record's payload.
pub fn parse(bytes: &[u8], max_record: usize) -> Result<Parsed<'_>, ParseError> {
    record::decode_header(HISTORY_MAGIC, bytes).ok_or(ParseError::Header)?;
    let mut at = HEADER_LEN;
    let (payload, used) = match record::decode_record(&bytes[at..], max_record) {
        Decoded::Record(payload, used) => (payload, used),
        Decoded::End | Decoded::Torn => return Err(ParseError::Open("missing")),
        Decoded::Corrupt(reason) => return Err(ParseError::Open(reason)),
    };
    let (boot, vhost, channel) = decode_open(payload).ok_or(ParseError::Open("malformed"))?;
    at += used;
    let mut parsed = Parsed {
        vhost,
        channel,
        boot,
        items: Vec::new(),
        closed: false,
        tail: Tail::Clean,
        good_len: at,
    };
    loop {
        match record::decode_record(&bytes[at..], max_record) {
            Decoded::End => break,
            Decoded::Torn => {
                parsed.tail = Tail::Torn;
                break;
            }
            Decoded::Corrupt(reason) => return Err(ParseError::Corrupt { at, reason }),
            Decoded::Record(payload, used) => {
                match decode_item(payload) {
                    Some(Some(item)) => parsed.items.push(item),
                    Some(None) => {}
                    None => {
                        return Err(ParseError::Corrupt {
                            at,
                            reason: "malformed record",
                        })
                    }
                }
                parsed.closed = payload == [CLOSE];
                at += used;
                parsed.good_len = at;
            }
        }
    }
    Ok(parsed)
}

/// The boot id, vhost and channel of an OPEN payload.
fn decode_open(payload: &[u8]) -> Option<(String, VhostPath, ChannelName)> {
    let (&kind, rest) = payload.split_first()?;
    if kind != OPEN {
        return None;
    }
    let (&boot_len, rest) = rest.split_first()?;
    let (boot, rest) = split(rest, boot_len as usize)?;
    let (vhost, rest) = name(rest)?;
    let (channel, rest) = name(rest)?;
    if !rest.is_empty() {
        return None;
    }
    let boot = std::str::from_utf8(boot).ok()?.to_owned();
    let vhost = VhostPath::try_from(vhost).ok()?;
    let channel = ChannelName::parse(channel).ok()?;
    Some((boot, vhost, channel))
}

fn name(bytes: &[u8]) -> Option<(&str, &[u8])> {
    let (len, rest) = split(bytes, 2)?;
    let len = u16::from_le_bytes([len[0], len[1]]) as usize;
    let (name, rest) = split(rest, len)?;
    Some((std::str::from_utf8(name).ok()?, rest))
}

fn split(bytes: &[u8], at: usize) -> Option<(&[u8], &[u8])> {
    (bytes.len() >= at).then(|| bytes.split_at(at))
}

fn u64_at(bytes: &[u8], at: usize) -> Option<u64> {
    let mut out = [0; 8];
    out.copy_from_slice(bytes.get(at..at + 8)?);
    Some(u64::from_le_bytes(out))
}

/// A RUN or MESSAGE (`Some(Some)`), a CLOSE (`Some(None)`), or not a
/// record of this format (`None`; an empty payload included: a run of
/// zeroes would otherwise read as empty records with a good checksum).
fn decode_item(payload: &[u8]) -> Option<Option<Item<'_>>> {
    match *payload.first()? {
        RUN if payload.len() == 18 && payload[17] <= 1 => Some(Some(Item::Run {
            epoch: u64_at(payload, 1)?,
            offset: u64_at(payload, 9)?,
            minted: payload[17] == 1,
        })),
        MESSAGE if payload.len() >= 17 => Some(Some(Item::Message {
            offset: u64_at(payload, 1)?,
            at_ms: u64_at(payload, 9)?,
            delivery: &payload[17..],
        })),
        CLOSE if payload.len() == 1 => Some(None),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: usize = 1 << 20;

    fn names() -> (VhostPath, ChannelName) {
        (
            VhostPath::try_from("/chat/eu").unwrap(),
            ChannelName::parse("room.1").unwrap(),
        )
    }

    fn sample() -> Vec<u8> {
        let (vhost, channel) = names();
        let mut file = encode_start("boot-1", &vhost, &channel);
        encode_run(7, 1, true, &mut file);
        encode_message(1, 1000, b"{\"m\":1}", &mut file);
        encode_message(2, 1001, b"", &mut file);
        encode_run(9, 40, false, &mut file);
        encode_message(40, 1002, b"{\"m\":40}", &mut file);
        file
    }

    #[test]
    fn a_file_roundtrips() {
        let mut file = sample();
        let parsed = parse(&file, MAX).unwrap();
        assert_eq!(
            (parsed.vhost.as_str(), parsed.channel.as_str()),
            ("/chat/eu", "room.1")
        );
        assert_eq!(parsed.boot, "boot-1");
        assert_eq!(
            parsed.items,
            vec![
                Item::Run {
                    epoch: 7,
                    offset: 1,
                    minted: true
                },
                Item::Message {
                    offset: 1,
                    at_ms: 1000,
                    delivery: b"{\"m\":1}"
                },
                Item::Message {
                    offset: 2,
                    at_ms: 1001,
                    delivery: b""
                },
                Item::Run {
                    epoch: 9,
                    offset: 40,
                    minted: false
                },
                Item::Message {
                    offset: 40,
                    at_ms: 1002,
                    delivery: b"{\"m\":40}"
                },
            ]
        );
        assert!(!parsed.closed);
        assert_eq!((parsed.tail, parsed.good_len), (Tail::Clean, file.len()));
        encode_close(&mut file);
        let closed = parse(&file, MAX).unwrap();
        assert!(closed.closed && closed.items.len() == 5);
    }

    #[test]
    fn the_layout_is_byte_exact() {
        let mut out = Vec::new();
        encode_run(0x0102, 3, true, &mut out);
        assert_eq!(out.len(), RUN_LEN);
        assert_eq!(&out[..4], &[18, 0, 0, 0]);
        assert_eq!(
            &out[8..],
            &[2, 2, 1, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0, 1]
        );
        out.clear();
        encode_message(5, 6, b"xy", &mut out);
        assert_eq!(out.len(), MESSAGE_OVERHEAD + 2);
        assert_eq!(&out[..4], &[19, 0, 0, 0]);
        assert_eq!(&out[4..8], &crc32fast::hash(&out[8..]).to_le_bytes());
        assert_eq!(&out[8..10], &[3, 5]);
        assert_eq!(&out[25..], b"xy");
        let (vhost, channel) = names();
        let start = encode_start("b", &vhost, &channel);
        assert_eq!(&start[..16], b"WRHIST\x00\x01\0\0\0\0\0\0\0\0");
        assert_eq!(&start[24..28], &[1, 1, b'b', 8]);
    }

    #[test]
    fn a_torn_tail_is_cut_at_the_last_whole_record() {
        let file = sample();
        let whole = parse(&file, MAX).unwrap();
        let last_start = whole.good_len - (MESSAGE_OVERHEAD + 8);
        for cut in last_start + 1..file.len() {
            let parsed = parse(&file[..cut], MAX).unwrap();
            assert_eq!(parsed.tail, Tail::Torn, "cut {cut}");
            assert_eq!(parsed.good_len, last_start, "cut {cut}");
            assert_eq!(parsed.items.len(), 4, "cut {cut}");
        }
        let at_boundary = parse(&file[..last_start], MAX).unwrap();
        assert_eq!(at_boundary.tail, Tail::Clean);
    }

    #[test]
    fn a_corrupt_record_or_header_is_an_error() {
        let file = sample();
        let open_end = parse(&encode_start("boot-1", &names().0, &names().1), MAX)
            .unwrap()
            .good_len;
        // A flipped bit in the second record (the first message).
        let mut flipped = file.clone();
        flipped[open_end + RUN_LEN + 12] ^= 0x10;
        assert_eq!(
            parse(&flipped, MAX).unwrap_err(),
            ParseError::Corrupt {
                at: open_end + RUN_LEN,
                reason: "checksum mismatch"
            }
        );
        // Zeroes where records should be (a hole after a crash) are not
        // empty records.
        let mut zeroes = file[..open_end].to_vec();
        zeroes.extend_from_slice(&[0; 32]);
        assert!(matches!(
            parse(&zeroes, MAX),
            Err(ParseError::Corrupt { .. })
        ));
        let mut bad_magic = file.clone();
        bad_magic[0] = b'X';
        assert_eq!(parse(&bad_magic, MAX).unwrap_err(), ParseError::Header);
        assert_eq!(parse(&file[..10], MAX).unwrap_err(), ParseError::Header);
        assert_eq!(
            parse(&file[..20], MAX).unwrap_err(),
            ParseError::Open("missing")
        );
        let mut bad_open = file.clone();
        bad_open[HEADER_LEN + 9] ^= 1;
        assert!(matches!(parse(&bad_open, MAX), Err(ParseError::Open(_))));
        // A record longer than allowed.
        assert!(matches!(parse(&file, 8), Err(ParseError::Open(_))));
    }
}
