//! `ideal`: the reference point for fan-out figures, i.e. about the best a
//! WebRocket server could do on this machine for the load `fanout` sends.
//!
//! It lives in the load generator (`webrocket-bench ideal --addr HOST:PORT`)
//! rather than in a bin of its own so that one build gives both ends of the
//! comparison. It speaks exactly as much of the client protocol as
//! `fanout --proto webrocket` uses, and answers it with the bytes
//! webrocket-server puts on the wire:
//!
//! - the upgrade of any path (`101` with a computed `Sec-WebSocket-Accept`),
//!   followed by `{"connected":{"sid":"<32 hex>"}}`;
//! - `{"subscribe":{"channel":C}}` -> `{"subscribed":"C"}`;
//! - `{"broadcast":{"event":E,"channel":C,"data":D}}` -> `{"broadcasted":"C"}`
//!   to the sender and `{"E":{"channel":"C","data":D,"user":null}}` to each
//!   subscriber of C;
//! - ping -> pong, close -> close; anything else ->
//!   `{"err":"INVALID_MESSAGE_FORMAT"}`. No users, permissions, limits,
//!   history or fragmented messages.
//!
//! What makes it the ideal: one thread, one mio poller (edge-triggered), no
//! hops between threads or processes. A broadcast's delivery JSON and its
//! WebSocket header are encoded once into one buffer, which is appended to
//! the outbound buffer of every subscriber of the channel (no allocation
//! per message and subscriber beyond that append). Nothing is written while
//! input is handled: after each poll round (all the input the publisher had
//! sent by then, read until the socket would block) every connection that
//! got bytes is written with one `write` call. There is no slow-consumer
//! policy: an outbound buffer grows until the socket drains it.

use std::borrow::Cow;
use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::SocketAddr;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};
use serde::Deserialize;
use serde_json::value::RawValue;
use sha1::{Digest, Sha1};

const LISTENER: Token = Token(usize::MAX);
const READ_CHUNK: usize = 256 * 1024;
const WS_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// One client connection.
struct Conn {
    stream: TcpStream,
    /// The upgrade has been answered: input is WebSocket frames.
    open: bool,
    /// Received bytes not yet making a whole request head or frame.
    input: Vec<u8>,
    /// Outbound bytes; `out[sent..]` still has to be written.
    out: Vec<u8>,
    sent: usize,
    /// Listed in `Server::dirty` (has bytes to write this round).
    dirty: bool,
    /// Channel ids this connection subscribed to.
    channels: Vec<usize>,
}

/// What the bench client sends (one key per object, as in the protocol).
#[derive(Deserialize)]
#[serde(rename_all = "lowercase")]
enum Request<'a> {
    Subscribe {
        #[serde(borrow)]
        channel: Cow<'a, str>,
    },
    Broadcast {
        #[serde(borrow)]
        event: Cow<'a, str>,
        #[serde(borrow)]
        channel: Cow<'a, str>,
        #[serde(borrow)]
        data: Option<&'a RawValue>,
    },
}

struct Server {
    poll: Poll,
    listener: TcpListener,
    conns: Vec<Option<Conn>>,
    free: Vec<usize>,
    /// Channel name -> id; `subscribers[id]` lists connection ids.
    channel_ids: HashMap<String, usize>,
    subscribers: Vec<Vec<usize>>,
    /// Connections with bytes to write at the end of this round.
    dirty: Vec<usize>,
    /// Reused buffers: socket reads, unmasked payloads, one delivery.
    scratch: Vec<u8>,
    payload: Vec<u8>,
    json: Vec<u8>,
    frame: Vec<u8>,
}

/// Runs the ideal server on `addr` until killed; prints the bound address
/// (so port 0 works) as one JSON line.
pub fn run(addr: &str) -> io::Result<()> {
    let addr: SocketAddr = addr
        .parse()
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, format!("{addr}: {e}")))?;
    let mut listener = TcpListener::bind(addr)?;
    let poll = Poll::new()?;
    poll.registry()
        .register(&mut listener, LISTENER, Interest::READABLE)?;
    println!(
        "{{\"mode\":\"ideal\",\"listening\":\"{}\"}}",
        listener.local_addr()?
    );
    io::stdout().flush()?;
    let mut server = Server {
        poll,
        listener,
        conns: Vec::new(),
        free: Vec::new(),
        channel_ids: HashMap::new(),
        subscribers: Vec::new(),
        dirty: Vec::new(),
        scratch: vec![0; READ_CHUNK],
        payload: Vec::new(),
        json: Vec::new(),
        frame: Vec::new(),
    };
    let mut events = Events::with_capacity(1024);
    loop {
        if let Err(e) = server.poll.poll(&mut events, None) {
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        for event in events.iter() {
            if event.token() == LISTENER {
                server.accept();
                continue;
            }
            let id = event.token().0;
            if event.is_readable() || event.is_read_closed() || event.is_error() {
                server.read(id);
            }
            if event.is_writable() {
                server.mark_dirty(id);
            }
        }
        server.flush();
    }
}

impl Server {
    fn accept(&mut self) {
        loop {
            match self.listener.accept() {
                Ok((mut stream, _)) => {
                    let _ = stream.set_nodelay(true);
                    let id = self.free.pop().unwrap_or_else(|| {
                        self.conns.push(None);
                        self.conns.len() - 1
                    });
                    let interest = Interest::READABLE | Interest::WRITABLE;
                    if self
                        .poll
                        .registry()
                        .register(&mut stream, Token(id), interest)
                        .is_err()
                    {
                        self.free.push(id);
                        continue;
                    }
                    self.conns[id] = Some(Conn {
                        stream,
                        open: false,
                        input: Vec::new(),
                        out: Vec::new(),
                        sent: 0,
                        dirty: false,
                        channels: Vec::new(),
                    });
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    // Out of descriptors, most likely: try again on the next
                    // readiness of the listener.
                    eprintln!("ideal: accept: {e}");
                    return;
                }
            }
        }
    }

    /// Reads until the socket would block, handling whole frames as they
    /// arrive; replies and deliveries are only queued.
    fn read(&mut self, id: usize) {
        let mut scratch = std::mem::take(&mut self.scratch);
        while let Some(conn) = self.conns.get_mut(id).and_then(Option::as_mut) {
            match conn.stream.read(&mut scratch) {
                Ok(0) => {
                    self.close(id);
                    break;
                }
                Ok(n) => {
                    let mut input = std::mem::take(&mut conn.input);
                    input.extend_from_slice(&scratch[..n]);
                    match self.handle(id, &input) {
                        Some(used) => {
                            input.drain(..used);
                            if let Some(conn) = self.conns[id].as_mut() {
                                conn.input = input;
                            }
                        }
                        None => {
                            self.close(id);
                            break;
                        }
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => {
                    self.close(id);
                    break;
                }
            }
        }
        self.scratch = scratch;
    }

    /// Handles what `input` holds for `id`; returns the bytes used, or
    /// `None` when the connection is to be closed.
    fn handle(&mut self, id: usize, input: &[u8]) -> Option<usize> {
        let mut at = 0;
        if !self.conns[id].as_ref()?.open {
            let Some(head) = input.windows(4).position(|w| w == b"\r\n\r\n") else {
                return Some(0);
            };
            let end = head + 4;
            self.upgrade(id, &input[..end])?;
            at = end;
        }
        while let Some((opcode, mask, start, end)) = parse_frame(&input[at..]) {
            let (start, end) = (at + start, at + end);
            at = end;
            let mut payload = std::mem::take(&mut self.payload);
            let body: &[u8] = if mask == [0; 4] {
                &input[start..end]
            } else {
                payload.clear();
                payload.extend(
                    input[start..end]
                        .iter()
                        .enumerate()
                        .map(|(i, b)| b ^ mask[i & 3]),
                );
                &payload
            };
            let keep = match opcode {
                0x1 | 0x2 => {
                    self.message(id, body);
                    true
                }
                0x9 => {
                    let conn = self.conns[id].as_mut()?;
                    push_frame(&mut conn.out, 0xA, body);
                    true
                }
                0xA => true,
                0x8 => {
                    // Echo the close, write it now, and drop the connection.
                    let conn = self.conns[id].as_mut()?;
                    push_frame(&mut conn.out, 0x8, body.get(..2).unwrap_or(&[]));
                    let _ = conn.stream.write(&conn.out[conn.sent..]);
                    false
                }
                _ => false, // continuation frames are not supported
            };
            self.payload = payload;
            if !keep {
                return None;
            }
            self.mark_dirty(id);
        }
        Some(at)
    }

    /// Answers the upgrade request `head` and sends the greeting.
    fn upgrade(&mut self, id: usize, head: &[u8]) -> Option<()> {
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut request = httparse::Request::new(&mut headers);
        let key = match request.parse(head) {
            Ok(httparse::Status::Complete(_)) => request
                .headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case("sec-websocket-key"))
                .map(|h| h.value.trim_ascii()),
            _ => None,
        };
        let conn = self.conns[id].as_mut()?;
        let Some(key) = key else {
            let _ = conn
                .stream
                .write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n");
            return None;
        };
        let mut sha = Sha1::new();
        sha.update(key);
        sha.update(WS_GUID.as_bytes());
        let accept = BASE64.encode(sha.finalize());
        write!(
            conn.out,
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Accept: {accept}\r\n\r\n"
        )
        .ok()?;
        let greeting = format!(
            "{{\"connected\":{{\"sid\":\"{:032x}\"}}}}",
            rand::random::<u128>()
        );
        push_frame(&mut conn.out, 0x1, greeting.as_bytes());
        conn.open = true;
        self.mark_dirty(id);
        Some(())
    }

    /// One client message.
    fn message(&mut self, id: usize, text: &[u8]) {
        let mut json = std::mem::take(&mut self.json);
        json.clear();
        match serde_json::from_slice::<Request>(text) {
            Ok(Request::Subscribe { channel }) => {
                let cid = self.channel_id(&channel);
                if let Some(conn) = self.conns[id].as_mut() {
                    if !conn.channels.contains(&cid) {
                        conn.channels.push(cid);
                        self.subscribers[cid].push(id);
                    }
                }
                json.extend_from_slice(b"{\"subscribed\":");
                let _ = serde_json::to_writer(&mut json, &channel);
                json.push(b'}');
            }
            Ok(Request::Broadcast {
                event,
                channel,
                data,
            }) => {
                self.deliver(&event, &channel, data);
                json.extend_from_slice(b"{\"broadcasted\":");
                let _ = serde_json::to_writer(&mut json, &channel);
                json.push(b'}');
            }
            Err(_) => json.extend_from_slice(b"{\"err\":\"INVALID_MESSAGE_FORMAT\"}"),
        }
        if let Some(conn) = self.conns[id].as_mut() {
            push_frame(&mut conn.out, 0x1, &json);
        }
        self.json = json;
    }

    /// Encodes the delivery once and appends it to every subscriber.
    fn deliver(&mut self, event: &str, channel: &str, data: Option<&RawValue>) {
        let Some(&cid) = self.channel_ids.get(channel) else {
            return;
        };
        let json = &mut self.json;
        json.clear();
        json.push(b'{');
        let _ = serde_json::to_writer(&mut *json, event);
        json.extend_from_slice(b":{\"channel\":");
        let _ = serde_json::to_writer(&mut *json, channel);
        json.extend_from_slice(b",\"data\":");
        json.extend_from_slice(data.map_or("null", RawValue::get).as_bytes());
        json.extend_from_slice(b",\"user\":null}}");
        self.frame.clear();
        push_frame(&mut self.frame, 0x1, json);
        for &sub in &self.subscribers[cid] {
            if let Some(conn) = self.conns[sub].as_mut() {
                conn.out.extend_from_slice(&self.frame);
                if !conn.dirty {
                    conn.dirty = true;
                    self.dirty.push(sub);
                }
            }
        }
    }

    fn channel_id(&mut self, name: &str) -> usize {
        if let Some(&cid) = self.channel_ids.get(name) {
            return cid;
        }
        let cid = self.subscribers.len();
        self.subscribers.push(Vec::new());
        self.channel_ids.insert(name.to_owned(), cid);
        cid
    }

    fn mark_dirty(&mut self, id: usize) {
        if let Some(conn) = self.conns.get_mut(id).and_then(Option::as_mut) {
            if !conn.dirty && conn.sent < conn.out.len() {
                conn.dirty = true;
                self.dirty.push(id);
            }
        }
    }

    /// The end of a round: one write per connection with bytes queued.
    fn flush(&mut self) {
        let mut dirty = std::mem::take(&mut self.dirty);
        for &id in &dirty {
            let Some(conn) = self.conns[id].as_mut() else {
                continue;
            };
            conn.dirty = false;
            if conn.sent == conn.out.len() {
                continue;
            }
            match conn.stream.write(&conn.out[conn.sent..]) {
                Ok(n) => {
                    conn.sent += n;
                    if conn.sent == conn.out.len() {
                        conn.out.clear();
                        conn.sent = 0;
                    } else if conn.sent >= conn.out.len() / 2 {
                        conn.out.drain(..conn.sent);
                        conn.sent = 0;
                    }
                    // A short write means the socket is full: its writable
                    // edge brings the connection back.
                }
                Err(e)
                    if e.kind() == io::ErrorKind::WouldBlock
                        || e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => self.close(id),
            }
        }
        dirty.clear();
        // Anything marked while flushing (none today) waits for the next
        // round; keep the list's capacity.
        dirty.append(&mut self.dirty);
        self.dirty = dirty;
    }

    fn close(&mut self, id: usize) {
        let Some(mut conn) = self.conns.get_mut(id).and_then(Option::take) else {
            return;
        };
        let _ = self.poll.registry().deregister(&mut conn.stream);
        for cid in conn.channels {
            let subs = &mut self.subscribers[cid];
            if let Some(i) = subs.iter().position(|&s| s == id) {
                subs.swap_remove(i);
            }
        }
        self.free.push(id);
    }
}

/// Appends one unmasked, final frame.
fn push_frame(out: &mut Vec<u8>, opcode: u8, payload: &[u8]) {
    let len = payload.len();
    out.push(0x80 | opcode);
    if len < 126 {
        out.push(len as u8);
    } else if len < 65536 {
        out.push(126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    out.extend_from_slice(payload);
}

/// A whole client frame at the start of `b`: (opcode, mask key, payload
/// start, payload end).
fn parse_frame(b: &[u8]) -> Option<(u8, [u8; 4], usize, usize)> {
    if b.len() < 2 {
        return None;
    }
    let opcode = b[0] & 0x0f;
    let masked = b[1] & 0x80 != 0;
    let (len, mut head) = match b[1] & 0x7f {
        126 => (u16::from_be_bytes([*b.get(2)?, *b.get(3)?]) as usize, 4),
        127 => {
            let mut n = [0u8; 8];
            n.copy_from_slice(b.get(2..10)?);
            (u64::from_be_bytes(n) as usize, 10)
        }
        n => (n as usize, 2),
    };
    let mut mask = [0u8; 4];
    if masked {
        mask.copy_from_slice(b.get(head..head + 4)?);
        head += 4;
    }
    if b.len() < head + len {
        return None;
    }
    Some((opcode, mask, head, head + len))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_through_the_parser() {
        for len in [0, 125, 126, 65535, 65536] {
            let payload = vec![b'a'; len];
            let mut out = Vec::new();
            push_frame(&mut out, 0x1, &payload);
            let (opcode, mask, start, end) = parse_frame(&out).unwrap();
            assert_eq!((opcode, mask, end - start), (0x1, [0; 4], len));
            assert!(parse_frame(&out[..out.len() - 1]).is_none());
        }
    }
}
