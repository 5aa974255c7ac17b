//! The subscribe/publish dialects: WebRocket JSON and NATS over WebSocket.

use std::io;

use super::wsclient::{Receiver, Sender};

/// Which broker protocol to speak.
#[derive(Clone, Copy)]
pub enum Proto {
    /// `{"subscribe": ..}`, `{"broadcast": ..}`.
    Webrocket,
    /// `SUB`, `PUB`, `MSG`.
    Nats,
}

impl Proto {
    pub fn name(self) -> &'static str {
        match self {
            Proto::Webrocket => "webrocket",
            Proto::Nats => "nats",
        }
    }

    /// Whatever the protocol needs before publishing.
    pub async fn hello(self, tx: &mut Sender, rx: &mut Receiver) -> io::Result<()> {
        if let Proto::Webrocket = self {
            let greeting = rx.next().await?;
            if !greeting.starts_with(b"{\"connected\"") {
                return Err(io::Error::other(
                    String::from_utf8_lossy(greeting).into_owned(),
                ));
            }
        }
        if let Proto::Nats = self {
            rx.next().await?; // INFO
            tx.send_text(b"CONNECT {\"verbose\":false,\"pedantic\":false}\r\nPING\r\n")
                .await?;
            loop {
                if rx.next().await?.windows(4).any(|w| w == b"PONG") {
                    break;
                }
            }
        }
        Ok(())
    }

    /// Subscribes and waits until the server confirmed it.
    pub async fn subscribe(
        self,
        tx: &mut Sender,
        rx: &mut Receiver,
        channel: &str,
    ) -> io::Result<()> {
        match self {
            Proto::Webrocket => {
                self.hello(tx, rx).await?;
                let request = format!("{{\"subscribe\":{{\"channel\":\"{channel}\"}}}}");
                tx.send_text(request.as_bytes()).await?;
                let reply = rx.next().await?;
                if !reply.starts_with(b"{\"subscribed\"") {
                    return Err(io::Error::other(
                        String::from_utf8_lossy(reply).into_owned(),
                    ));
                }
            }
            Proto::Nats => {
                self.hello(tx, rx).await?;
                let request = format!("SUB {channel} 1\r\nPING\r\n");
                tx.send_text(request.as_bytes()).await?;
                loop {
                    if rx.next().await?.windows(4).any(|w| w == b"PONG") {
                        break;
                    }
                }
            }
        }
        Ok(())
    }

    /// Queues one publication of `payload` (text) on `channel`.
    pub fn publish(self, tx: &mut Sender, channel: &str, payload: &[u8]) {
        let text = String::from_utf8_lossy(payload);
        let frame = match self {
            Proto::Webrocket => format!(
                "{{\"broadcast\":{{\"event\":\"e\",\"channel\":\"{channel}\",\"data\":\"{text}\"}}}}"
            ),
            Proto::Nats => format!("PUB {channel} {}\r\n{text}\r\n", payload.len()),
        };
        tx.push_text(frame.as_bytes());
    }

    /// The publish timestamps of the deliveries in one WebSocket message.
    pub fn deliveries(self, message: &[u8], stamps: &mut Vec<u64>) {
        match self {
            Proto::Webrocket => {
                // {"e":{"channel":"bench","data":"<20 digits>xxx","user":null}}
                if let Some(i) = find(message, b"\"data\":\"") {
                    if let Some(stamp) = super::stamp_of(&message[i + 8..]) {
                        stamps.push(stamp);
                    }
                }
            }
            Proto::Nats => {
                let mut rest = message;
                while let Some(i) = find(rest, b"MSG ") {
                    let Some(eol) = find(&rest[i..], b"\r\n") else {
                        break;
                    };
                    let body = &rest[i + eol + 2..];
                    if let Some(stamp) = super::stamp_of(body) {
                        stamps.push(stamp);
                    }
                    rest = body;
                }
            }
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}
