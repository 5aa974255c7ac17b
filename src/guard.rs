//! A frame-size guard in front of the ZeroMQ listeners (backend and
//! cluster ports).
//!
//! The zeromq crate allocates whatever frame length a peer announces, and
//! buffers a multipart message of any number of frames, before a single
//! byte of it is checked: one crafted header from an unauthenticated peer
//! could make the node abort. So the public port is ours: each
//! connection is relayed to the ROUTER, bound on a loopback port of its
//! own, while [`FrameCheck`] follows the ZMTP 3 framing of what the peer
//! sends and cuts the connection at the first frame or message over the
//! limit, before it reaches the crate. Bytes pass through unchanged;
//! what the ROUTER sends back is not inspected.
//!
//! ZMTP 3 as seen here (RFC 23/ZMTP):
//!
//! ```text
//! greeting  64 bytes: 0xFF, 8 padding, 0x7F, version, mechanism, ...
//! frame     flags (1) | size (1, or 8 big-endian if flags & LONG) | body
//!           flags: 0x01 MORE, 0x02 LONG, 0x04 COMMAND; other bits zero
//! ```

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

const GREETING_LEN: u64 = 64;
pub use crate::limits::{
    GUARD_MAX_CONNECTIONS as MAX_CONNECTIONS, GUARD_MAX_FRAMES as MAX_FRAMES,
    GUARD_MAX_PER_IP as MAX_PER_IP, GUARD_SLOW_PEER as SLOW_PEER,
};
const MORE: u8 = 0x01;
const LONG: u8 = 0x02;
const COMMAND: u8 = 0x04;

/// What a guarded port allows a peer: frame and message sizes, how long
/// it may leave what it is sent unread, and how many peers at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GuardLimits {
    /// Largest body of one frame (message or command), in bytes.
    pub max_frame: u64,
    /// Largest sum of the bodies of one multipart message.
    pub max_message: u64,
    /// Most frames in one multipart message.
    pub max_frames: u32,
    /// How long a write to the peer may wait for it to read, and how long
    /// a new peer has to send its greeting ([`SLOW_PEER`] in the server).
    pub slow_peer: std::time::Duration,
    /// Connections relayed at once; more are closed at once (and counted).
    pub max_connections: usize,
    /// Connections relayed at once from one IP address.
    pub max_per_ip: usize,
}

/// Why a connection was cut.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Violation {
    /// The first byte is not ZMTP's signature.
    #[error("not a ZMTP peer (bad signature)")]
    NotZmtp,
    /// Reserved flag bits are set.
    #[error("reserved frame flags {0:#04x}")]
    BadFlags(u8),
    /// A frame announces more than `max_frame` bytes.
    #[error("a frame of {0} bytes is over the limit")]
    FrameTooLarge(u64),
    /// A multipart message passes `max_message` bytes or `max_frames`.
    #[error("a message of more than {0} bytes or frames is over the limit")]
    MessageTooLarge(u64),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Bytes of the greeting still to come.
    Greeting(u64),
    /// Waiting for a frame's flags.
    Flags,
    /// Size bytes still to come and the size so far.
    Size { flags: u8, left: u8, size: u64 },
    /// Body bytes still to come.
    Body { left: u64 },
}

/// Follows the framing of one peer's byte stream (pure).
#[derive(Debug)]
pub struct FrameCheck {
    limits: GuardLimits,
    state: State,
    /// Bytes and frames of the multipart message so far.
    message_bytes: u64,
    message_frames: u32,
    /// Whether the frame in progress is part of a message (not a command)
    /// and is followed by another.
    in_message: bool,
}

impl FrameCheck {
    /// A check at the start of a connection.
    pub fn new(limits: GuardLimits) -> Self {
        FrameCheck {
            limits,
            state: State::Greeting(GREETING_LEN),
            message_bytes: 0,
            message_frames: 0,
            in_message: false,
        }
    }

    /// Whether the peer's greeting has fully arrived.
    pub fn greeted(&self) -> bool {
        !matches!(self.state, State::Greeting(_))
    }

    /// Follows `bytes`, the next bytes the peer sent; `Err` at the first
    /// violation (the stream must be cut there).
    pub fn feed(&mut self, mut bytes: &[u8]) -> Result<(), Violation> {
        while let Some((&byte, rest)) = bytes.split_first() {
            match self.state {
                State::Greeting(left) => {
                    if left == GREETING_LEN && byte != 0xff {
                        return Err(Violation::NotZmtp);
                    }
                    let take = left.min(bytes.len() as u64);
                    bytes = &bytes[take as usize..];
                    self.state = if take == left {
                        State::Flags
                    } else {
                        State::Greeting(left - take)
                    };
                    continue;
                }
                State::Flags => {
                    if byte & !(MORE | LONG | COMMAND) != 0 {
                        return Err(Violation::BadFlags(byte));
                    }
                    let left = if byte & LONG != 0 { 8 } else { 1 };
                    self.state = State::Size {
                        flags: byte,
                        left,
                        size: 0,
                    };
                }
                State::Size { flags, left, size } => {
                    let size = (size << 8) | u64::from(byte);
                    if left > 1 {
                        self.state = State::Size {
                            flags,
                            left: left - 1,
                            size,
                        };
                    } else {
                        self.frame(flags, size)?;
                    }
                }
                State::Body { left } => {
                    let take = left.min(bytes.len() as u64);
                    bytes = &bytes[take as usize..];
                    self.state = if take == left {
                        State::Flags
                    } else {
                        State::Body { left: left - take }
                    };
                    continue;
                }
            }
            bytes = rest;
        }
        Ok(())
    }

    /// A frame header is complete: check its size against the limits.
    fn frame(&mut self, flags: u8, size: u64) -> Result<(), Violation> {
        if size > self.limits.max_frame {
            return Err(Violation::FrameTooLarge(size));
        }
        if flags & COMMAND == 0 {
            self.message_bytes += size;
            self.message_frames += 1;
            if self.message_bytes > self.limits.max_message
                || self.message_frames > self.limits.max_frames
            {
                return Err(Violation::MessageTooLarge(self.limits.max_message));
            }
            self.in_message = flags & MORE != 0;
            if !self.in_message {
                self.message_bytes = 0;
                self.message_frames = 0;
            }
        }
        self.state = if size == 0 {
            State::Flags
        } else {
            State::Body { left: size }
        };
        Ok(())
    }
}

/// Called for each connection the guard cuts (to count it).
pub type OnCut = Arc<dyn Fn() + Send + Sync>;

impl GuardLimits {
    /// The server's limits for a port whose messages and frames stay under
    /// `max` bytes.
    pub fn server(max: u64) -> Self {
        GuardLimits {
            max_frame: max,
            max_message: max,
            max_frames: MAX_FRAMES,
            slow_peer: SLOW_PEER,
            max_connections: MAX_CONNECTIONS,
            max_per_ip: MAX_PER_IP,
        }
    }
}

/// A ZeroMQ ROUTER behind a guard: what [`front`] returns.
pub struct Guarded {
    /// The ROUTER, bound on a loopback port of its own.
    pub socket: zeromq::RouterSocket,
    /// Where peers connect (port 0 resolved).
    pub local_addr: SocketAddr,
    /// The guard between them.
    pub guard: Guard,
}

/// A running guard.
pub struct Guard {
    task: JoinHandle<()>,
    drain: Arc<tokio::sync::Notify>,
}

impl Guard {
    /// Ends the guard and every relay at once.
    pub fn into_task(self) -> JoinHandle<()> {
        self.task
    }

    /// Stops accepting and lets the relays pass on what they still hold
    /// and end by themselves (once the ROUTER closes their connection) for
    /// at most `within`; then cuts the rest.
    pub async fn close(mut self, within: std::time::Duration) {
        self.drain.notify_one();
        if tokio::time::timeout(within, &mut self.task).await.is_err() {
            self.task.abort();
        }
    }
}

/// Binds `public` for peers and a new ROUTER on loopback behind it, and
/// starts the guard between them.
pub async fn front(public: SocketAddr, limits: GuardLimits, on_cut: OnCut) -> io::Result<Guarded> {
    use zeromq::Socket;
    let listener = TcpListener::bind(public).await?;
    let local_addr = listener.local_addr()?;
    let mut socket = zeromq::RouterSocket::new();
    let endpoint = socket
        .bind("tcp://127.0.0.1:0")
        .await
        .map_err(|error| io::Error::other(format!("the loopback ROUTER: {error}")))?;
    let zeromq::Endpoint::Tcp(_, port) = endpoint else {
        return Err(io::Error::other("the loopback ROUTER is not on TCP"));
    };
    let router = SocketAddr::from(([127, 0, 0, 1], port));
    Ok(Guarded {
        socket,
        local_addr,
        guard: serve(listener, router, limits, on_cut),
    })
}

/// Relays connections accepted on `public` to the ROUTER at `inner`,
/// checking what each peer sends against `limits`; `on_cut` is told of
/// each connection cut. Runs until aborted or closed.
pub fn serve(public: TcpListener, inner: SocketAddr, limits: GuardLimits, on_cut: OnCut) -> Guard {
    let drain = Arc::new(tokio::sync::Notify::new());
    let drained = Arc::clone(&drain);
    let task = tokio::spawn(async move {
        // Dropped with this task: aborting the guard ends every relay.
        let mut relays = tokio::task::JoinSet::new();
        // Relays per peer address, bounded by `max_per_ip`.
        let mut per_ip: std::collections::HashMap<std::net::IpAddr, usize> = Default::default();
        loop {
            let accepted = tokio::select! {
                accepted = public.accept() => accepted,
                _ = drained.notified() => break,
            };
            let (peer, from) = match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of descriptors, usually: let others close first.
                    tracing::warn!(%error, "accept on a ZeroMQ port");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            };
            while let Some(done) = relays.try_join_next() {
                if let Ok(ip) = done {
                    release(&mut per_ip, ip);
                }
            }
            let ip = from.ip();
            let from_ip = per_ip.get(&ip).copied().unwrap_or(0);
            if relays.len() >= limits.max_connections || from_ip >= limits.max_per_ip {
                on_cut();
                tracing::warn!(peer = %from, "ZeroMQ port full: connection refused");
                drop(peer);
                continue;
            }
            *per_ip.entry(ip).or_insert(0) += 1;
            let on_cut = Arc::clone(&on_cut);
            relays.spawn(async move {
                let relayed = relay(peer, inner, limits).await;
                if let Err(error) = relayed {
                    if error.kind() == io::ErrorKind::InvalidData {
                        on_cut();
                        tracing::warn!(peer = %from, %error, "ZeroMQ peer cut off");
                    }
                }
                ip
            });
        }
        drop(public);
        while relays.join_next().await.is_some() {}
    });
    Guard { task, drain }
}

/// One relay from `ip` ended.
fn release(per_ip: &mut std::collections::HashMap<std::net::IpAddr, usize>, ip: std::net::IpAddr) {
    if let Some(count) = per_ip.get_mut(&ip) {
        *count -= 1;
        if *count == 0 {
            per_ip.remove(&ip);
        }
    }
}

/// One connection: the peer's bytes through [`FrameCheck`] to the ROUTER,
/// the ROUTER's bytes straight back.
async fn relay(peer: TcpStream, inner: SocketAddr, limits: GuardLimits) -> io::Result<()> {
    peer.set_nodelay(true)?;
    // A peer that vanished without closing is found by keepalive probes
    // (about 90 s), so it does not hold a connection slot for good.
    let keepalive = socket2::TcpKeepalive::new()
        .with_time(std::time::Duration::from_secs(60))
        .with_interval(std::time::Duration::from_secs(10))
        .with_retries(3);
    socket2::SockRef::from(&peer).set_tcp_keepalive(&keepalive)?;
    let router = TcpStream::connect(inner).await?;
    router.set_nodelay(true)?;
    let (mut peer_read, mut peer_write) = peer.into_split();
    let (mut router_read, mut router_write) = router.into_split();
    let mut back = AbortOnDrop(tokio::spawn(async move {
        let mut buf = vec![0u8; 8 * 1024];
        let mut too_slow = false;
        loop {
            let n = match router_read.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            // A peer that reads nothing for this long is cut rather than
            // left to fill the ROUTER's buffers: its writes would stall
            // the exchange's writes to every other peer.
            let written =
                tokio::time::timeout(limits.slow_peer, peer_write.write_all(&buf[..n])).await;
            if !matches!(written, Ok(Ok(()))) {
                too_slow = written.is_err();
                break;
            }
        }
        let _ = peer_write.shutdown().await;
        too_slow
    }));
    let mut check = FrameCheck::new(limits);
    let mut buf = vec![0u8; 16 * 1024];
    let mut back_done = false;
    let greeting_by = tokio::time::Instant::now() + limits.slow_peer;
    let result = loop {
        // A peer must greet within `slow_peer`; after that it may idle.
        let greeted = check.greeted();
        let read = tokio::select! {
            read = peer_read.read(&mut buf) => read,
            _ = tokio::time::sleep_until(greeting_by), if !greeted => {
                break Err(io::Error::new(io::ErrorKind::InvalidData, "no ZMTP greeting in time"));
            }
            // The ROUTER closed, or the peer stopped reading: end it all.
            too_slow = &mut back.0 => {
                back_done = true;
                if matches!(too_slow, Ok(true)) {
                    break Err(io::Error::new(io::ErrorKind::InvalidData, "it stopped reading"));
                }
                break Ok(());
            }
        };
        let n = match read {
            Ok(0) => break Ok(()),
            Ok(n) => n,
            Err(error) => break Err(error),
        };
        if let Err(violation) = check.feed(&buf[..n]) {
            break Err(io::Error::new(io::ErrorKind::InvalidData, violation));
        }
        if let Err(error) = router_write.write_all(&buf[..n]).await {
            break Err(error);
        }
    };
    // Closing the ROUTER's side makes it drop the connection, which ends
    // the copy back; a cut connection does not wait for that.
    let _ = router_write.shutdown().await;
    drop(router_write);
    if !back_done && result.is_ok() {
        // Dropping `back` aborts it if it is not done by then.
        let _ = tokio::time::timeout(std::time::Duration::from_secs(1), &mut back.0).await;
    }
    result
}

/// A task that is aborted when this is dropped (with the relay that owns
/// it, when the guard is stopped).
struct AbortOnDrop<T>(JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: GuardLimits = GuardLimits {
        max_frame: 100,
        max_message: 150,
        max_frames: 4,
        slow_peer: std::time::Duration::from_millis(200),
        max_connections: 4,
        max_per_ip: 4,
    };

    fn greeting() -> Vec<u8> {
        let mut g = vec![0u8; 64];
        g[0] = 0xff;
        g[9] = 0x7f;
        g[10] = 3;
        g
    }

    fn short(flags: u8, body: &[u8]) -> Vec<u8> {
        let mut f = vec![flags, body.len() as u8];
        f.extend_from_slice(body);
        f
    }

    fn long(flags: u8, size: u64) -> Vec<u8> {
        let mut f = vec![flags | LONG];
        f.extend_from_slice(&size.to_be_bytes());
        f
    }

    /// Feeds `stream` one byte at a time and whole; both must agree.
    fn run(stream: &[u8]) -> Result<(), Violation> {
        let whole = FrameCheck::new(LIMITS).feed(stream);
        let mut bytewise = FrameCheck::new(LIMITS);
        let split = stream.iter().try_for_each(|b| bytewise.feed(&[*b]));
        assert_eq!(whole, split, "split feeding disagrees");
        whole
    }

    #[test]
    fn well_formed_traffic_passes() {
        let mut s = greeting();
        s.extend(short(COMMAND, b"\x05READY"));
        s.extend(short(MORE, b""));
        s.extend(short(MORE, b"RD"));
        s.extend(short(0, &[7; 100]));
        // Counts start again after the last frame of a message.
        s.extend(short(MORE, &[1; 100]));
        s.extend(short(0, &[1; 50]));
        let mut big = long(0, 90);
        big.extend_from_slice(&[2; 90]);
        s.extend(big);
        assert_eq!(run(&s), Ok(()));
    }

    #[test]
    fn a_huge_announced_frame_is_cut_before_its_body() {
        let mut s = greeting();
        s.extend(long(0, u64::MAX));
        assert_eq!(run(&s), Err(Violation::FrameTooLarge(u64::MAX)));
        let mut s = greeting();
        s.extend(long(COMMAND, 101));
        assert_eq!(run(&s), Err(Violation::FrameTooLarge(101)));
    }

    #[test]
    fn endless_multipart_messages_are_cut() {
        let mut s = greeting();
        for _ in 0..4 {
            s.extend(short(MORE, b"x"));
        }
        s.extend(short(0, b"x"));
        assert_eq!(run(&s), Err(Violation::MessageTooLarge(150)));
        let mut s = greeting();
        s.extend(short(MORE, &[0; 100]));
        s.extend(short(0, &[0; 51]));
        assert_eq!(run(&s), Err(Violation::MessageTooLarge(150)));
    }

    #[test]
    fn non_zmtp_bytes_and_reserved_flags_are_refused() {
        assert_eq!(run(b"GET / HTTP/1.1\r\n"), Err(Violation::NotZmtp));
        let mut s = greeting();
        s.push(0x80);
        assert_eq!(run(&s), Err(Violation::BadFlags(0x80)));
    }
}

#[cfg(test)]
mod relay_tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::time::Duration;

    const LIMITS: GuardLimits = GuardLimits {
        max_frame: 1 << 20,
        max_message: 1 << 20,
        max_frames: 8,
        slow_peer: Duration::from_millis(200),
        max_connections: 4,
        max_per_ip: 4,
    };

    fn greeting() -> Vec<u8> {
        let mut g = vec![0u8; 64];
        g[0] = 0xff;
        g[9] = 0x7f;
        g[10] = 3;
        g
    }

    /// A guard in front of a stand-in ROUTER; returns the guard's address,
    /// the stand-in's listener and the cut counter.
    async fn guarded() -> (SocketAddr, TcpListener, Arc<AtomicU64>) {
        guarded_with(LIMITS).await
    }

    async fn guarded_with(limits: GuardLimits) -> (SocketAddr, TcpListener, Arc<AtomicU64>) {
        let router = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let public = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = public.local_addr().unwrap();
        let cut = Arc::new(AtomicU64::new(0));
        let counted = Arc::clone(&cut);
        let on_cut: OnCut = Arc::new(move || {
            counted.fetch_add(1, Ordering::Relaxed);
        });
        serve(public, router.local_addr().unwrap(), limits, on_cut);
        (addr, router, cut)
    }

    /// `n` peers that greeted and were relayed to the stand-in ROUTER.
    async fn greeted(addr: SocketAddr, router: &TcpListener, n: usize) -> Vec<TcpStream> {
        let mut peers = Vec::new();
        for _ in 0..n {
            let mut peer = TcpStream::connect(addr).await.unwrap();
            peer.write_all(&greeting()).await.unwrap();
            let _ = router.accept().await.unwrap();
            peers.push(peer);
        }
        peers
    }

    /// A new connection to `addr` is closed at once.
    async fn assert_refused(addr: SocketAddr) {
        let mut extra = TcpStream::connect(addr).await.unwrap();
        let mut buf = [0u8; 1];
        let read = tokio::time::timeout(Duration::from_secs(10), extra.read(&mut buf)).await;
        assert!(matches!(read, Ok(Ok(0)) | Ok(Err(_))), "{read:?}");
    }

    #[tokio::test]
    async fn bytes_pass_both_ways_unchanged() {
        let (addr, router, _) = guarded().await;
        let mut peer = TcpStream::connect(addr).await.unwrap();
        let mut sent = greeting();
        sent.extend_from_slice(&[0x00, 3, b'a', b'b', b'c']);
        peer.write_all(&sent).await.unwrap();
        let (mut inner, _) = router.accept().await.unwrap();
        let mut got = vec![0u8; sent.len()];
        inner.read_exact(&mut got).await.unwrap();
        assert_eq!(got, sent);
        inner.write_all(b"answer").await.unwrap();
        let mut back = [0u8; 6];
        peer.read_exact(&mut back).await.unwrap();
        assert_eq!(&back, b"answer");
    }

    #[tokio::test]
    async fn a_peer_that_stops_reading_is_cut_and_the_router_told() {
        let (addr, router, cut) = guarded().await;
        let mut peer = TcpStream::connect(addr).await.unwrap();
        peer.write_all(&greeting()).await.unwrap();
        let (inner, _) = router.accept().await.unwrap();
        let (mut inner_read, mut inner_write) = inner.into_split();
        // The stand-in ROUTER writes far more than the socket buffers
        // hold; the peer reads none of it.
        let writer = tokio::spawn(async move {
            let chunk = vec![0u8; 64 * 1024];
            for _ in 0..4096 {
                if inner_write.write_all(&chunk).await.is_err() {
                    return;
                }
            }
        });
        // The guard gives up on the peer and closes the ROUTER's side
        // (after passing on the greeting).
        let mut seen = Vec::new();
        // Ends (with Ok or a reset) only once the guard closes it.
        let _ = tokio::time::timeout(Duration::from_secs(30), inner_read.read_to_end(&mut seen))
            .await
            .expect("the ROUTER's connection is closed");
        assert_eq!(seen, greeting());
        writer.abort();
        drop(peer);
        let counted = tokio::time::timeout(Duration::from_secs(5), async {
            while cut.load(Ordering::Relaxed) == 0 {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await;
        assert!(counted.is_ok(), "the cut is counted");
    }

    #[tokio::test]
    async fn one_address_cannot_take_every_slot() {
        let limits = GuardLimits {
            max_connections: 8,
            max_per_ip: 2,
            ..LIMITS
        };
        let (addr, router, cut) = guarded_with(limits).await;
        let mut kept = greeted(addr, &router, 2).await;
        assert_refused(addr).await;
        assert_eq!(cut.load(Ordering::Relaxed), 1);
        // A slot freed is a slot again.
        drop(kept.pop());
        tokio::time::sleep(Duration::from_millis(200)).await;
        let mut again = TcpStream::connect(addr).await.unwrap();
        again.write_all(&greeting()).await.unwrap();
        let accepted = tokio::time::timeout(Duration::from_secs(10), router.accept()).await;
        assert!(accepted.is_ok(), "accepted once a slot is free");
    }

    #[tokio::test]
    async fn an_oversized_frame_cuts_the_connection_and_is_counted() {
        let (addr, router, cut) = guarded().await;
        let mut peer = TcpStream::connect(addr).await.unwrap();
        let mut sent = greeting();
        sent.push(0x02);
        sent.extend_from_slice(&(1u64 << 40).to_be_bytes());
        peer.write_all(&sent).await.unwrap();
        let (mut inner, _) = router.accept().await.unwrap();
        let mut got = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(10), inner.read_to_end(&mut got)).await;
        // Cut at the read that brought the header: at most the greeting
        // went on.
        assert!(
            greeting().starts_with(&got),
            "the header reached the ROUTER: {got:?}"
        );
        let mut rest = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(10), peer.read_to_end(&mut rest)).await;
        assert_eq!(cut.load(Ordering::Relaxed), 1);
    }

    #[tokio::test]
    async fn a_peer_that_never_greets_is_cut() {
        let (addr, _router, cut) = guarded().await;
        let mut peer = TcpStream::connect(addr).await.unwrap();
        peer.write_all(&[0xff, 0, 0]).await.unwrap();
        let mut rest = Vec::new();
        let ended =
            tokio::time::timeout(Duration::from_secs(10), peer.read_to_end(&mut rest)).await;
        assert!(ended.is_ok(), "the guard closed the connection");
        assert_eq!(cut.load(Ordering::Relaxed), 1);
    }

    #[tokio::test]
    async fn connections_past_the_cap_are_closed_at_once() {
        let (addr, router, cut) = guarded().await;
        let _kept = greeted(addr, &router, LIMITS.max_connections).await;
        assert_refused(addr).await;
        assert_eq!(cut.load(Ordering::Relaxed), 1);
    }
}
