//! A small WebSocket client for load generation: one fixed handshake, masked
//! frames out, a streaming frame parser in. Lean on purpose, so that the
//! load generator costs less than the servers it measures.

use std::io;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;

/// The write half: encodes masked frames into a reusable buffer.
pub struct Sender {
    half: OwnedWriteHalf,
    buf: Vec<u8>,
}

/// The read half: yields whole messages (text or binary payload).
pub struct Receiver {
    half: OwnedReadHalf,
    buf: Vec<u8>,
    start: usize,
}

/// Connects and upgrades `path` on `addr`.
pub async fn connect(addr: &str, path: &str) -> io::Result<(Sender, Receiver)> {
    let stream = TcpStream::connect(addr).await?;
    upgrade(stream, addr, path).await
}

/// Like [`connect`], from source address 127.0.`net`.N chosen by `index`,
/// so that tens of thousands of connections do not run out of ports.
pub async fn connect_from(
    addr: &str,
    path: &str,
    net: u8,
    index: usize,
) -> io::Result<(Sender, Receiver)> {
    let target: std::net::SocketAddr = addr
        .parse()
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, format!("{addr}: {e}")))?;
    let socket = tokio::net::TcpSocket::new_v4()?;
    let source = std::net::Ipv4Addr::new(127, 0, net, 1 + (index / 20_000) as u8);
    socket.bind((source, 0).into())?;
    let stream = socket.connect(target).await?;
    upgrade(stream, addr, path).await
}

async fn upgrade(mut stream: TcpStream, addr: &str, path: &str) -> io::Result<(Sender, Receiver)> {
    stream.set_nodelay(true)?;
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await?;
    let mut buf = Vec::with_capacity(4096);
    let head_end = loop {
        let mut chunk = [0u8; 1024];
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "closed during handshake",
            ));
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    if !buf.starts_with(b"HTTP/1.1 101") {
        let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
        return Err(io::Error::other(format!("upgrade refused: {head}")));
    }
    let (read, write) = stream.into_split();
    let rest = buf[head_end..].to_vec();
    Ok((
        Sender {
            half: write,
            buf: Vec::with_capacity(256),
        },
        Receiver {
            half: read,
            buf: rest,
            start: 0,
        },
    ))
}

impl Sender {
    /// Queues one masked text frame (call `flush` to send).
    pub fn push_text(&mut self, payload: &[u8]) {
        let len = payload.len();
        self.buf.push(0x81);
        if len < 126 {
            self.buf.push(0x80 | len as u8);
        } else if len < 65536 {
            self.buf.push(0x80 | 126);
            self.buf.extend_from_slice(&(len as u16).to_be_bytes());
        } else {
            self.buf.push(0x80 | 127);
            self.buf.extend_from_slice(&(len as u64).to_be_bytes());
        }
        // A zero mask key is valid and makes masking free.
        self.buf.extend_from_slice(&[0, 0, 0, 0]);
        self.buf.extend_from_slice(payload);
    }

    /// Writes everything queued.
    pub async fn flush(&mut self) -> io::Result<()> {
        self.half.write_all(&self.buf).await?;
        self.buf.clear();
        Ok(())
    }

    /// Sends one text message.
    pub async fn send_text(&mut self, payload: &[u8]) -> io::Result<()> {
        self.push_text(payload);
        self.flush().await
    }
}

impl Receiver {
    /// The next data message's payload (control frames are skipped).
    pub async fn next(&mut self) -> io::Result<&[u8]> {
        loop {
            if let Some((opcode, start, end)) = self.parse() {
                self.start = end;
                if opcode == 0x8 {
                    return Err(io::Error::new(
                        io::ErrorKind::ConnectionAborted,
                        "close frame",
                    ));
                }
                if opcode == 0x1 || opcode == 0x2 {
                    return Ok(&self.buf[start..end]);
                }
                continue;
            }
            if self.start > 0 {
                self.buf.drain(..self.start);
                self.start = 0;
            }
            // Reads into spare capacity: zero-filling 64 KiB before every
            // read cost the load generator more than parsing what it read.
            self.buf.reserve(64 * 1024);
            let n = self.half.read_buf(&mut self.buf).await?;
            if n == 0 {
                return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "closed"));
            }
        }
    }

    fn parse(&self) -> Option<(u8, usize, usize)> {
        let b = &self.buf[self.start..];
        if b.len() < 2 {
            return None;
        }
        let opcode = b[0] & 0x0f;
        let (len, head) = match b[1] & 0x7f {
            126 if b.len() >= 4 => (u16::from_be_bytes([b[2], b[3]]) as usize, 4),
            127 if b.len() >= 10 => {
                let mut n = [0u8; 8];
                n.copy_from_slice(&b[2..10]);
                (u64::from_be_bytes(n) as usize, 10)
            }
            126 | 127 => return None,
            n => (n as usize, 2),
        };
        if b.len() < head + len {
            return None;
        }
        Some((opcode, self.start + head, self.start + head + len))
    }
}
