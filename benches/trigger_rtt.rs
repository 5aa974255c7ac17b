//! Trigger round trip: WebSocket client -> `trigger` -> server -> `TR` ->
//! worker (`zeromq` crate DEALER) -> `DS` -> server -> client. Prints p50/p99
//! at light load (one client, one trigger at a time) and DS/s at saturation
//! (8 clients keeping 32 triggers each in flight) with 1 and 4 workers.
//! About 12 seconds; the server runs in this process.
//!
//! Run with `cargo bench --bench trigger_rtt` (a plain `main`,
//! `harness = false`).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;
use tungstenite::Message;
use webrocket::config::Config;
use webrocket::name::VhostPath;
use zeromq::util::PeerIdentity;
use zeromq::{DealerSocket, Socket, SocketOptions, SocketRecv, SocketSend, ZmqMessage};

const CONFIG: &str = r#"
[log]
level = "error"

[backend]
heartbeat_interval = "1s"

[[vhost]]
path = "/bench"
anonymous = ["READ", "WRITE"]
"#;
const LIGHT: Duration = Duration::from_secs(2);
const SATURATION: Duration = Duration::from_secs(3);
const CLIENTS: usize = 8;
const WINDOW: usize = 32;

fn message(frames: &[&[u8]]) -> ZmqMessage {
    let mut message = ZmqMessage::from(frames[0].to_vec());
    for frame in &frames[1..] {
        message.push_back(frame.to_vec().into());
    }
    message
}

/// A worker answering each TR with a DS (sent on its DEALER; the `OK`s
/// that come back are ignored) until `stop`.
async fn worker(addr: SocketAddr, token: String, stop: Arc<AtomicBool>) {
    let unique: u128 = rand::random();
    let id = format!("dlr:/bench:{token}:{unique:032x}");
    let mut options = SocketOptions::default();
    options.peer_identity(PeerIdentity::try_from(id.into_bytes()).expect("identity"));
    let mut socket = DealerSocket::with_options(options);
    socket
        .connect(&format!("tcp://{addr}"))
        .await
        .expect("connect");
    socket.send(message(&[b"", b"RD"])).await.expect("RD");
    let mut beat = tokio::time::interval(Duration::from_millis(500));
    while !stop.load(Ordering::Relaxed) {
        tokio::select! {
            received = socket.recv() => {
                let Ok(frames) = received else { return };
                if frames.get(1).map(|f| f.as_ref()) != Some(b"TR") {
                    continue;
                }
                let Some(payload) = frames.get(2) else { continue };
                let Ok(trigger) = serde_json::from_slice::<Value>(payload) else { continue };
                let body = &trigger["t"];
                let sid = body["sid"].as_str().unwrap_or("").to_string();
                let data = body["data"].to_string();
                let ds = message(&[b"", b"DS", sid.as_bytes(), b"r", data.as_bytes()]);
                if socket.send(ds).await.is_err() {
                    return;
                }
            }
            _ = beat.tick() => {
                let _ = socket.send(message(&[b"", b"HB"])).await;
            }
        }
    }
    let _ = socket.send(message(&[b"", b"QT"])).await;
}

type Ws = tungstenite::WebSocket<tungstenite::stream::MaybeTlsStream<std::net::TcpStream>>;

fn client(url: &str) -> Ws {
    tungstenite::connect(url).expect("ws connect").0
}

fn send_trigger(ws: &mut Ws, n: u64) {
    let text = format!(r#"{{"trigger":{{"event":"t","data":{n}}}}}"#);
    ws.send(Message::text(text)).expect("send");
}

/// Reads until a DS (`{"r": n}`) arrives; returns n.
fn read_ds(ws: &mut Ws) -> u64 {
    loop {
        let Message::Text(text) = ws.read().expect("read") else {
            continue;
        };
        let value: Value = serde_json::from_str(text.as_str()).expect("json");
        if let Some(n) = value.get("r").and_then(Value::as_u64) {
            return n;
        }
        assert!(
            value.get("triggered").is_some() || value.get("connected").is_some(),
            "unexpected {value}"
        );
    }
}

fn light(url: &str) -> (Duration, Duration, usize) {
    let mut ws = client(url);
    let mut samples = Vec::new();
    let end = Instant::now() + LIGHT;
    let mut n = 0;
    while Instant::now() < end {
        let start = Instant::now();
        send_trigger(&mut ws, n);
        assert_eq!(read_ds(&mut ws), n);
        samples.push(start.elapsed());
        n += 1;
    }
    samples.sort();
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q) as usize];
    (at(0.50), at(0.99), samples.len())
}

fn saturation(url: &str) -> f64 {
    let done = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let threads: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let (url, done) = (url.to_string(), Arc::clone(&done));
            thread::spawn(move || {
                let mut ws = client(&url);
                let end = Instant::now() + SATURATION;
                let mut sent = 0u64;
                for _ in 0..WINDOW {
                    send_trigger(&mut ws, sent);
                    sent += 1;
                }
                let mut received = 0u64;
                while received < sent {
                    read_ds(&mut ws);
                    received += 1;
                    if Instant::now() < end {
                        send_trigger(&mut ws, sent);
                        sent += 1;
                    }
                }
                done.fetch_add(received, Ordering::Relaxed);
            })
        })
        .collect();
    for t in threads {
        t.join().expect("client thread");
    }
    done.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64()
}

fn main() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = Config::parse(CONFIG).expect("config");
    config.server.websocket_addr = "127.0.0.1:0".parse().expect("addr");
    config.server.backend_addr = "127.0.0.1:0".parse().expect("addr");
    config.server.storage_dir = dir.path().join("data");
    config.server.run_dir = Some(dir.path().join("run"));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let (exchange, addr) = rt
        .block_on(webrocket::exchange::bind(&config))
        .expect("bind");
    let listeners = webrocket::server::Listeners {
        exchange: Some(exchange.clone()),
        ..Default::default()
    };
    let server = webrocket::server::Server::start(&config, listeners).expect("start server");
    let vhost = VhostPath::parse("/bench").expect("vhost");
    let token = server
        .changes
        .with_state(|s| s.vhosts[&vhost].token.as_str().to_string());
    let url = format!("ws://{}/bench", server.websocket_addr());

    for workers in [1usize, 4] {
        let stop = Arc::new(AtomicBool::new(false));
        for _ in 0..workers {
            rt.spawn(worker(addr, token.clone(), Arc::clone(&stop)));
        }
        while exchange.workers(&vhost).len() < workers {
            thread::sleep(Duration::from_millis(10));
        }
        let (p50, p99, n) = light(&url);
        let rate = saturation(&url);
        println!(
            "trigger->worker->DS round trip, {workers} worker(s): p50 {:.0} us, p99 {:.0} us ({n} samples); \
             saturation {rate:.0} DS/s ({CLIENTS} clients x {WINDOW} in flight)",
            p50.as_secs_f64() * 1e6,
            p99.as_secs_f64() * 1e6,
        );
        stop.store(true, Ordering::Relaxed);
        // Workers notice `stop` at their next message or heartbeat; wait
        // until the lobby is empty so the next round starts clean.
        let deadline = Instant::now() + Duration::from_secs(3);
        while !exchange.workers(&vhost).is_empty() && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(10));
        }
    }
    let stats = exchange.stats();
    println!(
        "exchange: {} triggers written, {} redispatched, {} undeliverable",
        stats.triggers_written, stats.triggers_redispatched, stats.dropped_undeliverable
    );
    rt.block_on(exchange.shutdown());
    drop(server);
}
