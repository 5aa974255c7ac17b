//! Backend-side helpers for black-box tests: ZeroMQ sockets made with the
//! `zeromq` crate on a shared runtime, the vhost token read from the
//! storage directory, and a small blocking WebSocket client.
#![allow(dead_code)]

use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::runtime::Runtime;
use tungstenite::stream::MaybeTlsStream;
use tungstenite::{Message, WebSocket};
use zeromq::util::PeerIdentity;
use zeromq::{DealerSocket, ReqSocket, Socket, SocketOptions, SocketRecv, SocketSend, ZmqMessage};

/// How long a test waits for one expected message.
pub const WAIT: Duration = Duration::from_secs(5);

/// The `backend=` address of a ready line.
pub fn backend_addr(ready_line: &str) -> SocketAddr {
    ready_line
        .split_whitespace()
        .find_map(|kv| kv.strip_prefix("backend="))
        .unwrap_or_else(|| panic!("no backend= in {ready_line}"))
        .parse()
        .expect("backend addr")
}

/// The current access token of `vhost`, read from the storage log (the
/// admin API is the proper way; this works without it). Changes are JSON
/// records `{"op":"add_vhost"|"set_vhost_token","path":P,"token":T,...}`;
/// the last one wins.
pub fn vhost_token(storage_dir: &Path, vhost: &str) -> String {
    let log = std::fs::read(storage_dir.join("state.log")).expect("read state.log");
    let text = String::from_utf8_lossy(&log);
    let needle = format!(r#""path":"{vhost}","token":""#);
    let at = text
        .rmatch_indices(&needle)
        .next()
        .unwrap_or_else(|| panic!("no token for {vhost} in the storage log"))
        .0;
    text[at + needle.len()..at + needle.len() + 40].to_string()
}

/// `dlr:`/`req:` routing id with a fresh uuid.
pub fn identity(kind: &str, vhost: &str, token: &str) -> String {
    let unique: u128 = rand::random();
    format!("{kind}:{vhost}:{token}:{unique:032x}")
}

/// A ZeroMQ message from frames.
pub fn message(frames: &[&[u8]]) -> ZmqMessage {
    let mut message = ZmqMessage::from(frames[0].to_vec());
    for frame in &frames[1..] {
        message.push_back(frame.to_vec().into());
    }
    message
}

/// The frames of a message as byte vectors.
pub fn frames(message: ZmqMessage) -> Vec<Vec<u8>> {
    message.into_vec().into_iter().map(|f| f.to_vec()).collect()
}

/// A DEALER with routing id `id`, connected to `addr`.
pub async fn dealer(addr: SocketAddr, id: &str) -> DealerSocket {
    let mut options = SocketOptions::default();
    options.peer_identity(PeerIdentity::try_from(id.as_bytes().to_vec()).expect("identity"));
    let mut socket = DealerSocket::with_options(options);
    socket
        .connect(&format!("tcp://{addr}"))
        .await
        .expect("connect dealer");
    socket
}

/// A REQ with routing id `id`, connected to `addr`.
pub async fn req(addr: SocketAddr, id: &str) -> ReqSocket {
    let mut options = SocketOptions::default();
    options.peer_identity(PeerIdentity::try_from(id.as_bytes().to_vec()).expect("identity"));
    let mut socket = ReqSocket::with_options(options);
    socket
        .connect(&format!("tcp://{addr}"))
        .await
        .expect("connect req");
    socket
}

/// One request on a REQ socket; returns the reply frames.
pub async fn request(socket: &mut ReqSocket, frames_out: &[&[u8]]) -> Vec<Vec<u8>> {
    socket
        .send(message(frames_out))
        .await
        .expect("send request");
    let reply = tokio::time::timeout(WAIT, socket.recv())
        .await
        .expect("reply in time")
        .expect("recv reply");
    frames(reply)
}

/// The next message on `socket` that is not a heartbeat, or `None` after
/// `wait`.
pub async fn next_non_heartbeat<S: SocketRecv>(
    socket: &mut S,
    wait: Duration,
) -> Option<Vec<Vec<u8>>> {
    let deadline = Instant::now() + wait;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let received = tokio::time::timeout(left, socket.recv()).await.ok()?;
        let frames = frames(received.ok()?);
        if frames.get(1).map(Vec::as_slice) != Some(b"HB") {
            return Some(frames);
        }
    }
}

/// A multi-thread runtime for the ZeroMQ side of a test.
pub fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

/// A blocking WebSocket client speaking the JSON protocol.
pub struct Client {
    ws: WebSocket<MaybeTlsStream<TcpStream>>,
}

impl Client {
    /// Connects to `url` (ws://host:port/vhost).
    pub fn connect(url: &str) -> Client {
        let (ws, _) = tungstenite::connect(url).expect("ws connect");
        if let MaybeTlsStream::Plain(stream) = ws.get_ref() {
            stream.set_read_timeout(Some(WAIT)).expect("timeout");
        }
        let mut client = Client { ws };
        let greeting = client.recv();
        assert!(
            greeting["connected"]["sid"].as_str().map(str::len) == Some(32),
            "first message {greeting}"
        );
        client
    }

    /// Sends `{event: payload}`.
    pub fn send(&mut self, event: &str, payload: Value) {
        let text = serde_json::json!({ event: payload }).to_string();
        self.ws.send(Message::text(text)).expect("ws send");
    }

    /// The next JSON message.
    pub fn recv(&mut self) -> Value {
        loop {
            match self.ws.read().expect("ws read") {
                Message::Text(text) => return serde_json::from_str(text.as_str()).expect("json"),
                Message::Binary(bytes) => return serde_json::from_slice(&bytes).expect("json"),
                _ => continue,
            }
        }
    }

    /// Sends a request and returns the next message.
    pub fn request(&mut self, event: &str, payload: Value) -> Value {
        self.send(event, payload);
        self.recv()
    }

    /// Triggers `event` until a worker takes it (workers join
    /// asynchronously); returns whether one did within `wait`.
    pub fn trigger_until_taken(&mut self, event: &str, data: Value, wait: Duration) -> bool {
        let deadline = Instant::now() + wait;
        while Instant::now() < deadline {
            let reply = self.request("trigger", serde_json::json!({"event": event, "data": data}));
            if reply.get("triggered").is_some() {
                return true;
            }
            assert_eq!(reply["err"], "ASSIGNATION_FAILED", "{reply}");
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }
}
