//! permessage-deflate through [`WsConnection`]: inflating client messages
//! (context takeover or not, fragments, pieces, backpressure, the size cap)
//! and compressing server messages (window bits, no context takeover).

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress};

use super::connection_tests::{client_frame, feed_all, owned, settings, Ev};
use super::deflate::TAIL;
use super::frame::{close_code::*, parse_header, HeaderParse};
use super::{DeflateParams, WsConnection, WsSettings};

/// The client side of the extension: raw deflate, sync flush, tail stripped.
struct Client {
    c: Compress,
    reset_each: bool,
}

impl Client {
    fn new(window_bits: u8, reset_each: bool) -> Self {
        Self {
            c: Compress::new_with_window_bits(Compression::default(), false, window_bits),
            reset_each,
        }
    }

    fn compress(&mut self, msg: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(msg.len() + 64);
        let start = self.c.total_in();
        loop {
            let used = (self.c.total_in() - start) as usize;
            self.c
                .compress_vec(&msg[used..], &mut out, FlushCompress::Sync)
                .unwrap();
            if (self.c.total_in() - start) as usize == msg.len() && out.len() < out.capacity() {
                break;
            }
            out.reserve(out.capacity());
        }
        assert!(out.ends_with(&TAIL));
        out.truncate(out.len() - 4);
        if self.reset_each {
            self.c.reset();
        }
        out
    }
}

fn params() -> DeflateParams {
    DeflateParams::default()
}

fn deflate_conn(p: DeflateParams) -> WsConnection {
    WsConnection::new(&settings(), Some(p))
}

/// Joins delivered pieces into messages.
fn messages(evs: &[Ev]) -> Vec<(u8, Vec<u8>)> {
    let mut out: Vec<(u8, Vec<u8>)> = Vec::new();
    let mut open = false;
    for e in evs {
        let Ev::Deliver(flags, p) = e else {
            panic!("unexpected {e:?}")
        };
        if open {
            let last = out.last_mut().unwrap();
            assert_eq!(flags & 0x0F, 0);
            last.1.extend_from_slice(p);
        } else {
            out.push((flags & 0x0F, p.clone()));
        }
        open = flags & 0x80 == 0;
    }
    assert!(!open, "last message unfinished");
    out
}

/// Deterministic, poorly compressible bytes.
fn noise(len: usize, seed: u32) -> Vec<u8> {
    let mut x = seed.wrapping_mul(2_654_435_761).max(1);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

/// A message that compresses well even without earlier context.
fn doc(n: usize) -> Vec<u8> {
    (n..n + 4).flat_map(json).collect()
}

fn json(n: usize) -> Vec<u8> {
    format!("{{\"event\":\"broadcast\",\"channel\":\"news\",\"data\":{{\"n\":{n},\"text\":\"hello world\"}}}}")
        .into_bytes()
}

#[test]
fn inflates_messages_with_context_takeover() {
    let mut client = Client::new(15, false);
    let mut c = deflate_conn(params());
    let mut input = Vec::new();
    for n in 0..5 {
        input.extend(client_frame(0xC1, &client.compress(&json(n))));
    }
    let got = messages(&feed_all(&mut c, &input));
    let want: Vec<_> = (0..5).map(|n| (1, json(n))).collect();
    assert_eq!(got, want);
}

#[test]
fn inflates_with_client_no_context_takeover_and_drops_idle_state() {
    let p = DeflateParams {
        client_no_context_takeover: true,
        ..params()
    };
    let mut client = Client::new(10, true);
    let mut c = deflate_conn(p);
    for n in 0..3 {
        let evs = feed_all(&mut c, &client_frame(0xC2, &client.compress(&json(n))));
        assert_eq!(messages(&evs), [(2, json(n))]);
        c.release_memory();
    }
}

#[test]
fn compressed_and_plain_messages_mix() {
    let mut client = Client::new(15, false);
    let mut c = deflate_conn(params());
    let mut input = client_frame(0xC1, &client.compress(&json(1)));
    input.extend(client_frame(0x81, b"plain"));
    input.extend(client_frame(0xC1, &client.compress(&json(2))));
    let got = messages(&feed_all(&mut c, &input));
    assert_eq!(got, [(1, json(1)), (1, b"plain".to_vec()), (1, json(2))]);
}

#[test]
fn inflates_fragmented_messages_with_interleaved_ping() {
    let msg: Vec<u8> = (0..500).flat_map(|n| json(n % 7)).collect();
    assert!(msg.len() < settings().chunk_size);
    let z = Client::new(15, false).compress(&msg);
    let third = z.len() / 3;
    let mut input = client_frame(0x41, &z[..third]);
    input.extend(client_frame(0x89, b"hi"));
    input.extend(client_frame(0x00, &z[third..2 * third]));
    input.extend(client_frame(0x80, &z[2 * third..]));
    let evs = feed_all(&mut deflate_conn(params()), &input);
    assert_eq!(evs[0], Ev::Send(vec![0x8A, 2, b'h', b'i']));
    assert_eq!(messages(&evs[1..]), [(1, msg)]);
}

#[test]
fn byte_at_a_time_compressed() {
    let mut client = Client::new(15, false);
    let mut input = client_frame(0xC1, &client.compress(&json(1)));
    input.extend(client_frame(0xC1, &client.compress(&json(1))));
    let mut c = deflate_conn(params());
    let mut evs = Vec::new();
    for b in &input {
        assert_eq!(
            c.feed(std::slice::from_ref(b), &mut |a| {
                evs.push(owned(a));
                true
            }),
            1
        );
    }
    assert_eq!(messages(&evs), [(1, json(1)), (1, json(1))]);
}

#[test]
fn rsv1_on_a_continuation_fails() {
    let mut input = client_frame(0x41, &Client::new(15, false).compress(b"abc"));
    input.extend(client_frame(0xC0, b"x"));
    let evs = feed_all(&mut deflate_conn(params()), &input);
    assert_eq!(
        evs,
        [
            Ev::Send(vec![0x88, 2, 0x03, 0xEA]),
            Ev::Closed(PROTOCOL_ERROR)
        ]
    );
}

#[test]
fn corrupt_data_and_bad_utf8_fail_with_1007() {
    let evs = feed_all(&mut deflate_conn(params()), &client_frame(0xC2, &[0xFF; 8]));
    assert_eq!(evs.last(), Some(&Ev::Closed(INVALID_PAYLOAD)));
    let z = Client::new(15, false).compress(&[b'a', 0xED, 0xA0, 0x80]);
    let evs = feed_all(&mut deflate_conn(params()), &client_frame(0xC1, &z));
    assert_eq!(evs.last(), Some(&Ev::Closed(INVALID_PAYLOAD)));
}

#[test]
fn zip_bomb_stops_at_the_message_limit() {
    let s = WsSettings {
        max_message_size: 1 << 20,
        chunk_size: 1 << 16,
        ..settings()
    };
    let bomb = Client::new(15, false).compress(&vec![0u8; 64 << 20]);
    assert!(bomb.len() < s.max_frame_size);
    let mut c = WsConnection::new(&s, Some(params()));
    let mut delivered = 0;
    let mut closed = None;
    c.feed(&client_frame(0xC2, &bomb), &mut |a| {
        match owned(a) {
            Ev::Deliver(_, p) => {
                assert!(p.len() <= s.chunk_size);
                delivered += p.len();
            }
            Ev::Closed(code) => closed = Some(code),
            Ev::Send(_) => {}
        }
        true
    });
    assert_eq!(closed, Some(TOO_BIG));
    assert!(delivered <= s.max_message_size);
}

#[test]
fn compressed_pieces_survive_refusals() {
    let s = WsSettings {
        chunk_size: 100,
        ..settings()
    };
    let msg: Vec<u8> = (0..300).flat_map(json).collect();
    let mut client = Client::new(15, false);
    let mut input = client_frame(0xC1, &client.compress(&msg));
    input.extend(client_frame(0xC1, &client.compress(&msg)));
    let mut c = WsConnection::new(&s, Some(params()));
    let mut evs = Vec::new();
    let mut at = 0;
    let mut calls = 0u32;
    let mut rounds = 0;
    while at < input.len() || rounds < 3 {
        at += c.feed(&input[at..], &mut |a| {
            calls += 1;
            if calls.is_multiple_of(3) {
                return false;
            }
            evs.push(owned(a));
            true
        });
        rounds += usize::from(at == input.len());
    }
    assert!(evs
        .iter()
        .all(|e| matches!(e, Ev::Deliver(_, p) if p.len() <= 100)));
    assert_eq!(messages(&evs), [(1, msg.clone()), (1, msg)]);
}

/// Splits server output into (first byte, payload) frames.
fn server_frames(mut out: &[u8]) -> Vec<(u8, Vec<u8>)> {
    let mut frames = Vec::new();
    while !out.is_empty() {
        let HeaderParse::Header(h, n) = parse_header(out) else {
            panic!("bad header")
        };
        assert!(h.mask.is_none());
        let len = h.len as usize;
        frames.push((h.first, out[n..n + len].to_vec()));
        out = &out[n + len..];
    }
    frames
}

/// Inflates like a client with a small output buffer, so that the inflater's
/// window (not the output) limits how far back data may refer.
fn inflate(d: &mut Decompress, data: &[u8]) -> Result<Vec<u8>, flate2::DecompressError> {
    let mut input = data.to_vec();
    input.extend_from_slice(&TAIL);
    let mut out = Vec::new();
    let mut at = 0;
    let mut step = [0u8; 64];
    loop {
        let (i0, o0) = (d.total_in(), d.total_out());
        d.decompress(&input[at..], &mut step, FlushDecompress::Sync)?;
        at += (d.total_in() - i0) as usize;
        let produced = (d.total_out() - o0) as usize;
        out.extend_from_slice(&step[..produced]);
        if at == input.len() && produced < step.len() {
            return Ok(out);
        }
    }
}

#[test]
fn server_messages_are_compressed_when_worthwhile() {
    let mut c = deflate_conn(params());
    let mut client = Decompress::new(false);
    let mut out = Vec::new();
    c.encode_message(0x81, b"tiny", &mut out);
    c.encode_message(0x81, &doc(1), &mut out);
    c.encode_message(0x81, &doc(2), &mut out);
    c.encode_message(0x82, &noise(1000, 7), &mut out);
    c.encode_message(0x81, &doc(3), &mut out);
    let frames = server_frames(&out);
    assert_eq!(frames[0], (0x81, b"tiny".to_vec()));
    assert_eq!(frames[1].0, 0xC1);
    assert_eq!(inflate(&mut client, &frames[1].1).unwrap(), doc(1));
    assert_eq!(frames[2].0, 0xC1);
    assert!(
        frames[2].1.len() < frames[1].1.len() / 2,
        "context takeover helps"
    );
    assert_eq!(inflate(&mut client, &frames[2].1).unwrap(), doc(2));
    // Noise is sent as is, and the deflater forgets it.
    assert_eq!(frames[3], (0x82, noise(1000, 7)));
    assert_eq!(frames[4].0, 0xC1);
    assert_eq!(inflate(&mut client, &frames[4].1).unwrap(), doc(3));
}

#[test]
fn server_no_context_takeover_encodes_messages_alone() {
    let p = DeflateParams {
        server_no_context_takeover: true,
        ..params()
    };
    let mut c = deflate_conn(p);
    let (mut a, mut b) = (Vec::new(), Vec::new());
    c.encode_message(0x81, &doc(1), &mut a);
    c.encode_message(0x81, &doc(1), &mut b);
    assert_eq!(a, b);
    assert_eq!(a[0], 0xC1);
    let frames = server_frames(&b);
    assert_eq!(
        inflate(&mut Decompress::new(false), &frames[0].1).unwrap(),
        doc(1)
    );
}

#[test]
fn server_window_bits_are_honoured() {
    // Repeats 600 bytes apart: only a window wider than 512 bytes finds them.
    let block = noise(600, 3);
    let msg = [block.clone(), block].concat();
    let mut wide = Vec::new();
    deflate_conn(params()).encode_message(0x82, &msg, &mut wide);
    let wide = server_frames(&wide);
    assert_eq!(wide[0].0, 0xC2);
    assert!(wide[0].1.len() < 700);
    let p = DeflateParams {
        server_max_window_bits: Some(9),
        ..params()
    };
    let mut limited = Vec::new();
    deflate_conn(p).encode_message(0x82, &msg, &mut limited);
    assert_eq!(
        server_frames(&limited),
        [(0x82, msg)],
        "no gain within 512 bytes: sent plain"
    );

    let p = DeflateParams {
        server_max_window_bits: Some(9),
        ..params()
    };
    // zlib only finds matches up to window - 262 bytes back (250 for 9 bits).
    let near = noise(200, 5).repeat(15);
    let mut narrow = Vec::new();
    deflate_conn(p).encode_message(0x82, &near, &mut narrow);
    let narrow = server_frames(&narrow);
    assert_eq!(narrow[0].0, 0xC2);
    let got = inflate(
        &mut Decompress::new_with_window_bits(false, 9),
        &narrow[0].1,
    )
    .unwrap();
    assert_eq!(got, near);

    // 8 bits cannot be produced by zlib: such connections send plain frames.
    let p = DeflateParams {
        server_max_window_bits: Some(8),
        ..params()
    };
    let mut plain = Vec::new();
    deflate_conn(p).encode_message(0x81, &doc(1), &mut plain);
    assert_eq!(server_frames(&plain), [(0x81, doc(1))]);
}

#[test]
fn fragmented_server_messages_compress_as_one() {
    let mut c = deflate_conn(params());
    let mut out = Vec::new();
    c.encode_message(0x01, &doc(1), &mut out);
    c.encode_message(0x00, &doc(2), &mut out);
    c.encode_message(0x80, b"!", &mut out);
    c.encode_message(0x81, &doc(3), &mut out);
    let frames = server_frames(&out);
    assert_eq!(
        frames.iter().map(|f| f.0).collect::<Vec<_>>(),
        [0x41, 0x00, 0x80, 0xC1]
    );
    let joined: Vec<u8> = frames[..3].iter().flat_map(|f| f.1.clone()).collect();
    let mut client = Decompress::new(false);
    assert_eq!(
        inflate(&mut client, &joined).unwrap(),
        [doc(1), doc(2), b"!".to_vec()].concat()
    );
    assert_eq!(inflate(&mut client, &frames[3].1).unwrap(), doc(3));
}
