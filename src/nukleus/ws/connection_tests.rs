//! Byte-level tests of [`WsConnection`]: decoding, reassembly, control
//! frames, closing, backpressure, and encoding. Deflate cases live in
//! `deflate_tests`.

use super::frame::close_code::*;
use super::{Action, WsConnection, WsSettings};

pub(super) const MASK: [u8; 4] = [0x37, 0xFA, 0x21, 0x3D];

/// An owned copy of an [`Action`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Ev {
    Send(Vec<u8>),
    Deliver(u8, Vec<u8>),
    Closed(u16),
}

/// A masked client frame.
pub(super) fn client_frame(first: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![first];
    match payload.len() {
        n if n < 126 => out.push(0x80 | n as u8),
        n if n <= 0xFFFF => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&MASK);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ MASK[i % 4]));
    out
}

pub(super) fn settings() -> WsSettings {
    WsSettings {
        max_frame_size: 1 << 20,
        max_message_size: 1 << 20,
        chunk_size: 1 << 16,
        max_handshake_size: 8192,
        deflate: true,
    }
}

/// Feeds everything (accepting every delivery) and returns the events.
pub(super) fn feed_all(conn: &mut WsConnection, input: &[u8]) -> Vec<Ev> {
    let mut evs = Vec::new();
    let used = conn.feed(input, &mut |a| {
        evs.push(owned(a));
        true
    });
    assert_eq!(used, input.len());
    evs
}

pub(super) fn owned(a: Action<'_>) -> Ev {
    match a {
        Action::Send(b) => Ev::Send(b.to_vec()),
        Action::Deliver { flags, payload } => Ev::Deliver(flags, payload.to_vec()),
        Action::Closed { code } => Ev::Closed(code),
    }
}

fn close_frame(code: u16) -> Vec<u8> {
    let mut v = vec![0x88, 2];
    v.extend_from_slice(&code.to_be_bytes());
    v
}

/// The events of a failed connection.
fn failed(code: u16) -> Vec<Ev> {
    vec![Ev::Send(close_frame(code)), Ev::Closed(code)]
}

fn conn() -> WsConnection {
    WsConnection::new(&settings(), None)
}

#[test]
fn delivers_a_text_message() {
    let mut c = conn();
    let evs = feed_all(&mut c, &client_frame(0x81, b"Hello"));
    assert_eq!(evs, [Ev::Deliver(0x81, b"Hello".to_vec())]);
    assert!(c.is_open() && !c.is_closed());
}

#[test]
fn delivers_binary_of_each_length_encoding() {
    for len in [0usize, 125, 126, 4096, 4097, 65535, 65536, 200_000] {
        let payload: Vec<u8> = (0..len).map(|i| (i * 7) as u8).collect();
        let mut c = conn();
        let mut input = client_frame(0x82, &payload);
        input.extend(client_frame(0x81, b"next"));
        let evs = feed_all(&mut c, &input);
        let chunk = settings().chunk_size;
        let mut joined = Vec::new();
        for (i, ev) in evs[..evs.len() - 1].iter().enumerate() {
            let Ev::Deliver(flags, p) = ev else {
                panic!("{ev:?}")
            };
            let last = i == evs.len() - 2;
            assert_eq!(
                *flags,
                (if last { 0x80 } else { 0 }) | (if i == 0 { 2 } else { 0 })
            );
            assert!(p.len() <= chunk);
            joined.extend_from_slice(p);
        }
        assert_eq!(joined, payload, "len {len}");
        assert_eq!(evs.last(), Some(&Ev::Deliver(0x81, b"next".to_vec())));
    }
}

#[test]
fn reassembles_fragments_and_answers_interleaved_pings() {
    let mut c = conn();
    let mut input = client_frame(0x01, b"Hel");
    input.extend(client_frame(0x89, b"are you there"));
    input.extend(client_frame(0x00, b"lo, "));
    input.extend(client_frame(0x8A, b"unsolicited pong"));
    input.extend(client_frame(0x80, "wörld".as_bytes()));
    let evs = feed_all(&mut c, &input);
    let mut pong = vec![0x8A, 13];
    pong.extend_from_slice(b"are you there");
    assert_eq!(
        evs,
        [
            Ev::Send(pong),
            Ev::Deliver(0x81, "Hello, wörld".as_bytes().to_vec())
        ]
    );
}

#[test]
fn empty_messages_and_empty_fragments() {
    let mut c = conn();
    let mut input = client_frame(0x81, b"");
    input.extend(client_frame(0x02, b""));
    input.extend(client_frame(0x00, b""));
    input.extend(client_frame(0x80, b""));
    let evs = feed_all(&mut c, &input);
    assert_eq!(evs, [Ev::Deliver(0x81, vec![]), Ev::Deliver(0x82, vec![])]);
}

#[test]
fn byte_at_a_time_matches_whole_input() {
    let mut input = client_frame(0x01, "κόσμε".as_bytes());
    input.extend(client_frame(0x89, b"p"));
    input.extend(client_frame(0x80, &[b'x'; 300]));
    input.extend(client_frame(0x82, &[9u8; 70_000]));
    input.extend(client_frame(0x88, &[0x03, 0xE8, b'b', b'y', b'e']));
    let whole = feed_all(&mut conn(), &input);
    let mut c = conn();
    let mut evs = Vec::new();
    for b in &input {
        let used = c.feed(std::slice::from_ref(b), &mut |a| {
            evs.push(owned(a));
            true
        });
        assert_eq!(used, 1);
    }
    // Byte-wise feeding delivers the same bytes, maybe in more pieces.
    let merge = |evs: &[Ev]| -> Vec<Ev> {
        let mut out: Vec<Ev> = Vec::new();
        for e in evs {
            match (out.last_mut(), e) {
                (Some(Ev::Deliver(f, p)), Ev::Deliver(g, q)) if *f & 0x80 == 0 => {
                    *f |= *g;
                    p.extend_from_slice(q);
                }
                _ => out.push(e.clone()),
            }
        }
        out
    };
    assert_eq!(merge(&evs), merge(&whole));
    assert_eq!(whole.last(), Some(&Ev::Closed(1000)));
    assert!(c.is_closed());
}

#[test]
fn unmasked_frames_fail_with_1002() {
    assert_eq!(
        feed_all(&mut conn(), &[0x81, 0x02, b'h', b'i']),
        failed(PROTOCOL_ERROR)
    );
}

#[test]
fn reserved_bits_and_opcodes_fail_with_1002() {
    for first in [
        0xC1, 0xA1, 0x91, 0xC9, 0x83, 0x84, 0x85, 0x86, 0x87, 0x8B, 0x8C, 0x8F,
    ] {
        let evs = feed_all(&mut conn(), &client_frame(first, b"x"));
        assert_eq!(evs, failed(PROTOCOL_ERROR), "first byte {first:#04x}");
    }
}

#[test]
fn bad_control_frames_fail_with_1002() {
    // Too long (126 bytes) and fragmented.
    assert_eq!(
        feed_all(&mut conn(), &client_frame(0x89, &[0; 126])),
        failed(PROTOCOL_ERROR)
    );
    assert_eq!(
        feed_all(&mut conn(), &client_frame(0x09, b"x")),
        failed(PROTOCOL_ERROR)
    );
    assert_eq!(
        feed_all(&mut conn(), &client_frame(0x08, b"")),
        failed(PROTOCOL_ERROR)
    );
}

#[test]
fn fragmentation_errors_fail_with_1002() {
    assert_eq!(
        feed_all(&mut conn(), &client_frame(0x80, b"x")),
        failed(PROTOCOL_ERROR)
    );
    assert_eq!(
        feed_all(&mut conn(), &client_frame(0x00, b"x")),
        failed(PROTOCOL_ERROR)
    );
    let mut input = client_frame(0x01, b"a");
    input.extend(client_frame(0x81, b"b"));
    assert_eq!(feed_all(&mut conn(), &input), failed(PROTOCOL_ERROR));
}

#[test]
fn non_minimal_64_bit_length_with_top_bit_fails() {
    let input = [0x82, 0xFF, 0x80, 0, 0, 0, 0, 0, 0, 1, 1, 2, 3, 4];
    assert_eq!(feed_all(&mut conn(), &input), failed(PROTOCOL_ERROR));
}

#[test]
fn size_limits_fail_with_1009_before_the_payload() {
    let s = WsSettings {
        max_frame_size: 100,
        max_message_size: 150,
        ..settings()
    };
    let mut c = WsConnection::new(&s, None);
    // Only the header of a too-big frame is needed.
    let frame = client_frame(0x82, &[0; 101]);
    assert_eq!(feed_all(&mut c, &frame[..8]), failed(TOO_BIG));
    let mut c = WsConnection::new(&s, None);
    let mut input = client_frame(0x02, &[0; 100]);
    input.extend(client_frame(0x80, &[0; 51]));
    assert_eq!(feed_all(&mut c, &input), failed(TOO_BIG));
    let mut c = WsConnection::new(&s, None);
    let mut input = client_frame(0x02, &[0; 100]);
    input.extend(client_frame(0x80, &[0; 50]));
    assert_eq!(feed_all(&mut c, &input), [Ev::Deliver(0x82, vec![0; 150])]);
}

#[test]
fn invalid_utf8_fails_fast_inside_a_frame() {
    // Valid prefix, then 0xED 0xA0 (a surrogate) at payload byte 12..13.
    let payload = [
        0xCE, 0xBA, 0xE1, 0xBD, 0xB9, 0xCF, 0x83, 0xCE, 0xBC, 0xCE, 0xB5, 0xED, 0xA0, 0x80, 0x65,
        0x64,
    ];
    let frame = client_frame(0x81, &payload);
    let header = frame.len() - payload.len();
    let mut c = conn();
    assert_eq!(feed_all(&mut c, &frame[..header + 12]), []);
    assert_eq!(
        feed_all(&mut c, &frame[header + 12..header + 13]),
        failed(INVALID_PAYLOAD)
    );
    // Across fragments: the first fragment alone is accepted.
    let mut c = conn();
    assert_eq!(feed_all(&mut c, &client_frame(0x01, &payload[..12])), []);
    assert_eq!(
        feed_all(&mut c, &client_frame(0x80, &payload[12..])),
        failed(INVALID_PAYLOAD)
    );
}

#[test]
fn invalid_or_truncated_utf8_in_whole_messages_fails_with_1007() {
    assert_eq!(
        feed_all(&mut conn(), &client_frame(0x81, &[0xC0, 0x80])),
        failed(INVALID_PAYLOAD)
    );
    assert_eq!(
        feed_all(&mut conn(), &client_frame(0x81, &[b'a', 0xE2, 0x82])),
        failed(INVALID_PAYLOAD)
    );
    let mut input = client_frame(0x01, &[b'a', 0xE2]);
    input.extend(client_frame(0x80, &[0x82]));
    assert_eq!(feed_all(&mut conn(), &input), failed(INVALID_PAYLOAD));
    // Binary messages are not validated.
    assert_eq!(
        feed_all(&mut conn(), &client_frame(0x82, &[0xC0])),
        [Ev::Deliver(0x82, vec![0xC0])]
    );
}

#[test]
fn close_code_matrix() {
    for code in [
        1000u16, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 4999,
    ] {
        let mut payload = code.to_be_bytes().to_vec();
        payload.extend_from_slice(b"reason");
        let evs = feed_all(&mut conn(), &client_frame(0x88, &payload));
        assert_eq!(
            evs,
            [Ev::Send(close_frame(code)), Ev::Closed(code)],
            "code {code}"
        );
    }
    for code in [
        0u16, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535,
    ] {
        let evs = feed_all(&mut conn(), &client_frame(0x88, &code.to_be_bytes()));
        assert_eq!(evs, failed(PROTOCOL_ERROR), "code {code}");
    }
}

#[test]
fn close_payload_errors() {
    assert_eq!(
        feed_all(&mut conn(), &client_frame(0x88, &[0x03])),
        failed(PROTOCOL_ERROR)
    );
    let bad_reason = [0x03, 0xE8, 0xCE, 0xBA, 0xED, 0xA0, 0x80];
    assert_eq!(
        feed_all(&mut conn(), &client_frame(0x88, &bad_reason)),
        failed(INVALID_PAYLOAD)
    );
    let evs = feed_all(&mut conn(), &client_frame(0x88, b""));
    assert_eq!(evs, [Ev::Send(vec![0x88, 0]), Ev::Closed(NO_STATUS)]);
}

#[test]
fn close_drops_a_message_in_progress_and_ignores_what_follows() {
    let mut c = conn();
    let mut input = client_frame(0x01, b"part");
    input.extend(client_frame(0x88, &[0x03, 0xE8]));
    input.extend(client_frame(0x81, b"after"));
    let evs = feed_all(&mut c, &input);
    assert_eq!(evs, [Ev::Send(close_frame(1000)), Ev::Closed(1000)]);
    assert!(c.is_closed());
    assert_eq!(feed_all(&mut c, &client_frame(0x81, b"more")), []);
}

#[test]
fn server_close_waits_for_the_client_reply() {
    let mut c = conn();
    let mut out = Vec::new();
    c.close(SLOW, "slow consumer", &mut out);
    let mut expect = vec![0x88, 15, 0x03, 0xF0];
    expect.extend_from_slice(b"slow consumer");
    assert_eq!(out, expect);
    assert!(!c.is_open() && !c.is_closed());
    // Data, pings and even bad UTF-8 are ignored until the close reply.
    let mut input = client_frame(0x81, &[0xFF]);
    input.extend(client_frame(0x89, b"ping"));
    input.extend(client_frame(0x02, b"frag"));
    input.extend(client_frame(0x88, &[0x03, 0xE8]));
    assert_eq!(feed_all(&mut c, &input), [Ev::Closed(SLOW)]);
    assert!(c.is_closed());
    // A second close is a no-op.
    let mut more = Vec::new();
    c.close(GOING_AWAY, "", &mut more);
    assert!(more.is_empty());
}

const SLOW: u16 = POLICY_VIOLATION;

#[test]
fn server_close_reason_is_cut_at_a_char_boundary() {
    let mut out = Vec::new();
    conn().close(GOING_AWAY, &"é".repeat(100), &mut out);
    assert_eq!(out[1] as usize, out.len() - 2);
    assert_eq!(out.len() - 2, 2 + 122);
    assert!(std::str::from_utf8(&out[4..]).is_ok());
}

#[test]
fn large_messages_come_in_pieces_with_fin_on_the_last() {
    let s = WsSettings {
        chunk_size: 4,
        ..settings()
    };
    let mut c = WsConnection::new(&s, None);
    let evs = feed_all(&mut c, &client_frame(0x81, b"abcdefghij"));
    assert_eq!(
        evs,
        [
            Ev::Deliver(0x01, b"abcd".to_vec()),
            Ev::Deliver(0x00, b"efgh".to_vec()),
            Ev::Deliver(0x80, b"ij".to_vec()),
        ]
    );
    // Exactly one piece long: a single FIN piece.
    let evs = feed_all(&mut c, &client_frame(0x82, b"wxyz"));
    assert_eq!(evs, [Ev::Deliver(0x82, b"wxyz".to_vec())]);
    // Fragments regroup into pieces of at most 4 bytes.
    let mut input = client_frame(0x02, b"ab");
    input.extend(client_frame(0x00, b"cdef"));
    input.extend(client_frame(0x80, b"gh"));
    let evs = feed_all(&mut c, &input);
    assert_eq!(
        evs,
        [
            Ev::Deliver(0x02, b"abcd".to_vec()),
            Ev::Deliver(0x80, b"efgh".to_vec())
        ]
    );
}

#[test]
fn refused_delivery_is_offered_again_first() {
    let s = WsSettings {
        chunk_size: 4,
        ..settings()
    };
    let mut c = WsConnection::new(&s, None);
    let mut input = client_frame(0x81, b"abcdefghij");
    input.extend(client_frame(0x81, b"z"));
    let mut evs = Vec::new();
    let mut calls = 0;
    let used = c.feed(&input, &mut |a| {
        calls += 1;
        let accept = calls != 2;
        evs.push((owned(a), accept));
        accept
    });
    assert!(used < input.len());
    assert_eq!(
        evs,
        [
            (Ev::Deliver(0x01, b"abcd".to_vec()), true),
            (Ev::Deliver(0x00, b"efgh".to_vec()), false)
        ]
    );
    // Refused again with no new input: nothing is consumed.
    let mut again = Vec::new();
    assert_eq!(
        c.feed(&[], &mut |a| {
            again.push(owned(a));
            false
        }),
        0
    );
    assert_eq!(again, [Ev::Deliver(0x00, b"efgh".to_vec())]);
    let evs = feed_all(&mut c, &input[used..]);
    assert_eq!(
        evs,
        [
            Ev::Deliver(0x00, b"efgh".to_vec()),
            Ev::Deliver(0x80, b"ij".to_vec()),
            Ev::Deliver(0x81, b"z".to_vec()),
        ]
    );
}

#[test]
fn refused_small_message_is_kept_and_offered_again() {
    let mut c = conn();
    let mut input = client_frame(0x81, b"one");
    input.extend(client_frame(0x82, b"two"));
    let mut seen = Vec::new();
    let used = c.feed(&input, &mut |a| {
        seen.push(owned(a));
        false
    });
    assert_eq!(used, client_frame(0x81, b"one").len());
    assert_eq!(seen, [Ev::Deliver(0x81, b"one".to_vec())]);
    let evs = feed_all(&mut c, &input[used..]);
    assert_eq!(
        evs,
        [
            Ev::Deliver(0x81, b"one".to_vec()),
            Ev::Deliver(0x82, b"two".to_vec())
        ]
    );
}

#[test]
fn refusal_after_the_last_frame_was_read_finishes_later() {
    let s = WsSettings {
        chunk_size: 2,
        ..settings()
    };
    let mut c = WsConnection::new(&s, None);
    let input = client_frame(0x81, b"abcde");
    let mut seen = Vec::new();
    let used = c.feed(&input, &mut |a| {
        let e = owned(a);
        let accept = e != Ev::Deliver(0x00, b"cd".to_vec());
        seen.push(e);
        accept
    });
    assert_eq!(used, input.len());
    assert_eq!(
        seen,
        [
            Ev::Deliver(0x01, b"ab".to_vec()),
            Ev::Deliver(0x00, b"cd".to_vec())
        ]
    );
    let evs = feed_all(&mut c, &client_frame(0x82, b"z"));
    assert_eq!(
        evs,
        [
            Ev::Deliver(0x00, b"cd".to_vec()),
            Ev::Deliver(0x80, b"e".to_vec()),
            Ev::Deliver(0x82, b"z".to_vec()),
        ]
    );
    // A refused FIN piece of a fragmented message is kept too.
    let mut input = client_frame(0x01, b"abc");
    input.extend(client_frame(0x80, b"d"));
    let mut seen = Vec::new();
    let used = c.feed(&input, &mut |a| {
        seen.push(owned(a));
        seen.len() == 1
    });
    assert_eq!(used, input.len());
    assert_eq!(
        seen,
        [
            Ev::Deliver(0x01, b"ab".to_vec()),
            Ev::Deliver(0x80, b"cd".to_vec())
        ]
    );
    assert_eq!(feed_all(&mut c, &[]), [Ev::Deliver(0x80, b"cd".to_vec())]);
}

#[test]
fn many_tiny_fragments_make_one_message() {
    // Like Autobahn 9.3: a big message in 64-byte fragments.
    let payload: Vec<u8> = (0..64 * 1024).map(|i| b'a' + (i % 26) as u8).collect();
    let mut input = Vec::new();
    for (i, part) in payload.chunks(64).enumerate() {
        let op = if i == 0 { 0x01 } else { 0x00 };
        let fin = if (i + 1) * 64 == payload.len() {
            0x80
        } else {
            0
        };
        input.extend(client_frame(fin | op, part));
    }
    let evs = feed_all(&mut conn(), &input);
    assert_eq!(evs, [Ev::Deliver(0x81, payload)]);
}

#[test]
fn encodes_unmasked_frames() {
    let mut c = conn();
    let mut out = Vec::new();
    c.encode_message(0x81, b"hi", &mut out);
    c.encode_message(0x02, &[1; 200], &mut out);
    c.encode_message(0x80, b"", &mut out);
    c.encode_message(0x89, b"keepalive", &mut out);
    let mut expect = vec![0x81, 2, b'h', b'i', 0x02, 126, 0, 200];
    expect.extend_from_slice(&[1; 200]);
    expect.extend_from_slice(&[0x80, 0, 0x89, 9]);
    expect.extend_from_slice(b"keepalive");
    assert_eq!(out, expect);
}

/// The per-connection state that an idle connection keeps, against the
/// budget in ARCHITECTURE.md ("Memory per connection"): zlib state, control
/// frame buffers and held requests live behind pointers until used.
#[test]
fn idle_connection_state_stays_within_its_budget() {
    use std::mem::size_of;
    assert!(
        size_of::<WsConnection>() <= 200,
        "{}",
        size_of::<WsConnection>()
    );
    assert!(size_of::<crate::nukleus::ws::nukleus::Conn>() <= 328);
    assert!(size_of::<crate::nukleus::webrocket::outlet::Stream>() <= 104);
    assert!(size_of::<crate::broker::session::Session>() <= 120);
}
