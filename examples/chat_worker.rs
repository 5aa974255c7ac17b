//! A chat helper worker for webrocket, written with the `zeromq` crate.
//!
//! It joins the lobby of a vhost (DEALER, `RD`), keeps heartbeats going both
//! ways and answers every `say` trigger twice: directly to the sender (`DS`,
//! `{"said": {"text": ...}}`) and to the channel named in the trigger (`BC`,
//! event `message`), opening the channel if it does not exist. When the
//! server goes silent for `liveness` heartbeats or says `QT`, the worker
//! connects again and sends `RD`, so a restarted server is rejoined.
//!
//! ```text
//! cargo run --example chat_worker -- --endpoint tcp://127.0.0.1:8081 \
//!     --vhost /chat --token <40 hex characters>
//! ```
//!
//! A client then sends
//! `{"trigger": {"event": "say", "data": {"channel": "room", "text": "hi"}}}`.

use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use clap::Parser;
use serde_json::{json, Value};
use zeromq::util::PeerIdentity;
use zeromq::{DealerSocket, ReqSocket, Socket, SocketOptions, SocketRecv, SocketSend, ZmqMessage};

/// Command line.
#[derive(Parser, Debug, Clone)]
struct Options {
    /// The server's backend endpoint.
    #[arg(long, default_value = "tcp://127.0.0.1:8081")]
    endpoint: String,
    /// The vhost to serve.
    #[arg(long, default_value = "/chat")]
    vhost: String,
    /// The vhost's access token (`webrocket-ctl show_vhost`).
    #[arg(long, env = "WEBROCKET_TOKEN")]
    token: String,
    /// Heartbeat interval in milliseconds (the server's
    /// `backend.heartbeat_interval`).
    #[arg(long, default_value_t = 2000)]
    heartbeat_ms: u64,
    /// Missed heartbeats before reconnecting.
    #[arg(long, default_value_t = 3)]
    liveness: u32,
}

/// A unique routing id: `dlr|req:<vhost>:<token>:<uuid>`.
fn identity(kind: &str, options: &Options) -> anyhow::Result<PeerIdentity> {
    let unique: u128 = rand::random();
    let id = format!("{kind}:{}:{}:{unique:032x}", options.vhost, options.token);
    PeerIdentity::try_from(id.into_bytes()).map_err(|e| anyhow!("identity: {e}"))
}

fn message(frames: &[&[u8]]) -> ZmqMessage {
    let mut message = ZmqMessage::from(frames[0].to_vec());
    for frame in &frames[1..] {
        message.push_back(frame.to_vec().into());
    }
    message
}

/// Requests (`BC`, `OC`, `DS`) over a REQ socket, made again after a
/// failure.
struct Requester {
    options: Options,
    socket: Option<ReqSocket>,
}

impl Requester {
    async fn request(&mut self, frames: &[&[u8]]) -> anyhow::Result<()> {
        if self.socket.is_none() {
            let mut socket_options = SocketOptions::default();
            socket_options.peer_identity(identity("req", &self.options)?);
            let mut socket = ReqSocket::with_options(socket_options);
            socket.connect(&self.options.endpoint).await?;
            self.socket = Some(socket);
        }
        let Some(socket) = self.socket.as_mut() else {
            bail!("no request socket");
        };
        let exchange = async {
            socket.send(message(frames)).await?;
            socket.recv().await
        };
        let reply = match tokio::time::timeout(Duration::from_secs(5), exchange).await {
            Ok(Ok(reply)) => reply,
            Ok(Err(error)) => {
                self.socket = None;
                return Err(error.into());
            }
            Err(_) => {
                self.socket = None;
                bail!("no reply within 5 s");
            }
        };
        match reply.get(0).map(|f| f.as_ref()) {
            Some(b"OK") => Ok(()),
            Some(b"ER") => {
                let code = reply
                    .get(1)
                    .map(|f| String::from_utf8_lossy(f).into_owned());
                bail!("ER {}", code.unwrap_or_default())
            }
            _ => bail!("unexpected reply {reply:?}"),
        }
    }
}

/// `say`: answer the sender, then tell the channel.
async fn say(
    requester: &mut Requester,
    sid: &str,
    user: &Value,
    data: &Value,
) -> anyhow::Result<()> {
    let text = data.get("text").and_then(Value::as_str).unwrap_or("");
    let channel = data
        .get("channel")
        .and_then(Value::as_str)
        .unwrap_or("lobby");
    let said = json!({ "text": text }).to_string();
    requester
        .request(&[b"DS", sid.as_bytes(), b"said", said.as_bytes()])
        .await
        .context("DS")?;
    let from = if user.is_null() {
        json!(sid)
    } else {
        user.clone()
    };
    let message = json!({ "from": from, "text": text }).to_string();
    let broadcast = [
        b"BC".as_slice(),
        channel.as_bytes(),
        b"message",
        message.as_bytes(),
    ];
    if let Err(error) = requester.request(&broadcast).await {
        if !error.to_string().contains("ER 454") {
            return Err(error.context("BC"));
        }
        requester
            .request(&[b"OC", channel.as_bytes()])
            .await
            .context("OC")?;
        requester.request(&broadcast).await.context("BC")?;
    }
    Ok(())
}

/// Handles one `TR` payload: `{"<event>": {"data", "sid", "user"}}`.
async fn on_trigger(requester: &mut Requester, payload: &[u8]) -> anyhow::Result<()> {
    let trigger: Value = serde_json::from_slice(payload)?;
    let Some((event, body)) = trigger.as_object().and_then(|o| o.iter().next()) else {
        bail!("trigger is not an object with one key");
    };
    let sid = body.get("sid").and_then(Value::as_str).unwrap_or("");
    let user = body.get("user").cloned().unwrap_or(Value::Null);
    let data = body.get("data").cloned().unwrap_or(Value::Null);
    match event.as_str() {
        "say" => say(requester, sid, &user, &data).await,
        other => {
            eprintln!("chat_worker: no handler for {other:?}");
            Ok(())
        }
    }
}

/// Why one connection ended.
enum Ended {
    Reconnect,
    Stop,
}

/// One connection: RD, then triggers and heartbeats until the server goes
/// silent, says QT, or Ctrl-C.
async fn serve(options: &Options, requester: &mut Requester) -> anyhow::Result<Ended> {
    let mut socket_options = SocketOptions::default();
    socket_options.peer_identity(identity("dlr", options)?);
    let mut dealer = DealerSocket::with_options(socket_options);
    dealer.connect(&options.endpoint).await?;
    dealer.send(message(&[b"", b"RD"])).await?;
    eprintln!(
        "chat_worker: ready on {}{}",
        options.endpoint, options.vhost
    );
    let mut liveness = options.liveness;
    let mut ticker = tokio::time::interval(Duration::from_millis(options.heartbeat_ms));
    ticker.tick().await;
    loop {
        tokio::select! {
            received = dealer.recv() => {
                let Ok(frames) = received else { return Ok(Ended::Reconnect) };
                liveness = options.liveness;
                match frames.get(1).map(|f| f.as_ref()) {
                    Some(b"TR") => {
                        let payload = frames.get(2).map(|f| f.to_vec()).unwrap_or_default();
                        if let Err(error) = on_trigger(requester, &payload).await {
                            eprintln!("chat_worker: trigger failed: {error:#}");
                        }
                    }
                    Some(b"QT") => return Ok(Ended::Reconnect),
                    Some(b"ER") => eprintln!("chat_worker: server error {:?}", frames.get(2)),
                    _ => {}
                }
            }
            _ = ticker.tick() => {
                liveness = liveness.saturating_sub(1);
                if liveness == 0 {
                    eprintln!("chat_worker: server silent, reconnecting");
                    return Ok(Ended::Reconnect);
                }
                dealer.send(message(&[b"", b"HB"])).await?;
            }
            _ = tokio::signal::ctrl_c() => {
                let _ = dealer.send(message(&[b"", b"QT"])).await;
                return Ok(Ended::Stop);
            }
        }
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let options = Options::parse();
    let mut requester = Requester {
        options: options.clone(),
        socket: None,
    };
    let mut backoff = Duration::from_millis(50);
    loop {
        match serve(&options, &mut requester).await {
            Ok(Ended::Stop) => return Ok(()),
            Ok(Ended::Reconnect) => {}
            Err(error) => eprintln!("chat_worker: {error:#}"),
        }
        requester.socket = None;
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(2));
    }
}
