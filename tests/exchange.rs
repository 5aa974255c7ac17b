//! The backend exchange end to end: the real server (a process, or in this
//! process where a test must change durable state), workers and request
//! clients made with the `zeromq` crate, and a tungstenite WebSocket client.

#[path = "common/backend.rs"]
mod backend;
mod common;

use std::sync::Arc;
use std::time::Duration;

use backend::{
    backend_addr, dealer, identity, message, next_non_heartbeat, req, request, runtime,
    vhost_token, Client, WAIT,
};
use common::ServerProcess;
use serde_json::{json, Value};
use zeromq::{SocketRecv, SocketSend};

const CONFIG: &str = r#"
[backend]
heartbeat_interval = "100ms"
liveness = 3

[[vhost]]
path = "/chat"
anonymous = ["READ", "WRITE"]

[[vhost]]
path = "/other"
anonymous = ["READ", "WRITE"]
"#;

struct Setup {
    server: ServerProcess,
    backend: std::net::SocketAddr,
    token: String,
}

fn start() -> Setup {
    let server = ServerProcess::start(CONFIG, &[]);
    let backend = backend_addr(&server.ready_line);
    let token = vhost_token(&server.dir.path().join("data"), "/chat");
    Setup {
        server,
        backend,
        token,
    }
}

fn er(code: &str) -> Vec<Vec<u8>> {
    vec![b"".to_vec(), b"ER".to_vec(), code.as_bytes().to_vec()]
}

#[test]
fn a_worker_gets_the_trigger_and_answers_with_ds() {
    let setup = start();
    let rt = runtime();
    let (addr, token) = (setup.backend, setup.token.clone());
    let (seen_tx, seen_rx) = std::sync::mpsc::channel::<Value>();
    // The worker: RD, then answer each TR with a DS to the trigger's sid.
    rt.spawn(async move {
        let mut worker = dealer(addr, &identity("dlr", "/chat", &token)).await;
        let mut requests = req(addr, &identity("req", "/chat", &token)).await;
        worker.send(message(&[b"", b"RD"])).await.unwrap();
        while let Some(frames) = next_non_heartbeat(&mut worker, Duration::from_secs(30)).await {
            assert_eq!(frames[0], b"", "delimiter first");
            assert_eq!(frames[1], b"TR");
            let trigger: Value = serde_json::from_slice(&frames[2]).unwrap();
            let sid = trigger["hello"]["sid"].as_str().unwrap_or("").to_string();
            let data = trigger["hello"]["data"].to_string();
            let reply = request(
                &mut requests,
                &[b"DS", sid.as_bytes(), b"hi", data.as_bytes()],
            )
            .await;
            assert_eq!(reply, vec![b"OK".to_vec()]);
            let _ = seen_tx.send(trigger);
        }
    });
    let mut client = Client::connect(&setup.server.url("/chat"));
    assert!(client.trigger_until_taken("hello", json!({"n": 0}), WAIT));
    let first = seen_rx.recv_timeout(WAIT).expect("worker saw the trigger");
    assert_eq!(client.recv(), json!({"hi": {"n": 0}}));
    let reply = client.request("trigger", json!({"event": "hello", "data": {"x": [1, 2]}}));
    assert_eq!(reply, json!({"triggered": "hello"}));
    assert_eq!(client.recv(), json!({"hi": {"x": [1, 2]}}));
    let second = seen_rx.recv_timeout(WAIT).unwrap();
    // The TR payload: {"<event>": {"data", "sid", "user"}}, one sid per session.
    assert_eq!(second["hello"]["data"], json!({"x": [1, 2]}));
    assert_eq!(second["hello"]["user"], Value::Null);
    let sid = second["hello"]["sid"].as_str().unwrap();
    assert_eq!(sid.len(), 32);
    assert_eq!(first["hello"]["sid"], second["hello"]["sid"]);
}

#[test]
fn bad_identities_get_er_402_and_nothing_else() {
    let setup = start();
    let rt = runtime();
    let addr = setup.backend;
    let wrong = "f".repeat(40);
    rt.block_on(async {
        for id in [
            identity("dlr", "/chat", &wrong),
            identity("dlr", "/nope", &setup.token),
            "not-an-identity".to_string(),
        ] {
            let mut worker = dealer(addr, &id).await;
            worker.send(message(&[b"", b"RD"])).await.unwrap();
            let reply = next_non_heartbeat(&mut worker, WAIT).await;
            assert_eq!(reply, Some(er("402")), "{id}");
            // It did not join: no heartbeats come to it.
            assert!(
                tokio::time::timeout(Duration::from_millis(400), worker.recv())
                    .await
                    .is_err()
            );
        }
        // The token of one vhost does not open another.
        let other = identity("req", "/other", &setup.token);
        let mut client = req(addr, &other).await;
        assert_eq!(
            request(&mut client, &[b"OC", b"news"]).await,
            vec![b"ER".to_vec(), b"402".to_vec()]
        );
    });
    // And no trigger reaches a refused worker.
    let mut client = Client::connect(&setup.server.url("/chat"));
    let reply = client.request("trigger", json!({"event": "e"}));
    assert_eq!(reply["err"], "ASSIGNATION_FAILED", "{reply}");
}

#[test]
fn malformed_frames_get_er_400_and_others_are_still_served() {
    let setup = start();
    let rt = runtime();
    let addr = setup.backend;
    let token = setup.token.clone();
    let mut subscriber = Client::connect(&setup.server.url("/chat"));
    assert_eq!(
        subscriber.request("subscribe", json!({"channel": "news"})),
        json!({"subscribed": "news"})
    );
    rt.block_on(async {
        let mut client = req(addr, &identity("req", "/chat", &token)).await;
        let cases: [(&[&[u8]], &str); 8] = [
            (&[b"XX"], "400"),
            (&[b"RD"], "400"),
            (&[b"BC", b"news"], "400"),
            (&[b"BC", b"news", b"e", b"{not json"], "400"),
            (&[b"OC", b"bad name"], "451"),
            (
                &[b"DS", b"0123456789abcdef0123456789abcdef", b"e", b"1"],
                "404",
            ),
            (&[b"CC", b"missing"], "454"),
            (&[b"BC", b"missing", b"e", b"1"], "454"),
        ];
        for (frames, code) in cases {
            let reply = request(&mut client, frames).await;
            assert_eq!(
                reply,
                vec![b"ER".to_vec(), code.as_bytes().to_vec()],
                "{frames:?}"
            );
        }
        // A DEALER without the empty delimiter.
        let mut worker = dealer(addr, &identity("dlr", "/chat", &token)).await;
        worker.send(message(&[b"RD"])).await.unwrap();
        assert_eq!(next_non_heartbeat(&mut worker, WAIT).await, Some(er("400")));
        // The same sockets still work.
        let reply = request(&mut client, &[b"BC", b"news", b"flash", br#"{"a":1}"#]).await;
        assert_eq!(reply, vec![b"OK".to_vec()]);
        worker.send(message(&[b"", b"OC", b"fresh"])).await.unwrap();
        assert_eq!(
            next_non_heartbeat(&mut worker, WAIT).await,
            Some(vec![b"".to_vec(), b"OK".to_vec()])
        );
    });
    assert_eq!(
        subscriber.recv(),
        json!({"flash": {"channel": "news", "data": {"a": 1}, "user": null}})
    );
    let mut other = Client::connect(&setup.server.url("/chat"));
    assert_eq!(
        other.request("subscribe", json!({"channel": "fresh"})),
        json!({"subscribed": "fresh"})
    );
}

#[test]
fn heartbeats_flow_and_a_silent_worker_is_dropped() {
    let setup = start();
    let rt = runtime();
    let id = identity("dlr", "/chat", &setup.token);
    let mut worker = rt.block_on(dealer(setup.backend, &id));
    rt.block_on(worker.send(message(&[b"", b"RD"]))).unwrap();
    let mut client = Client::connect(&setup.server.url("/chat"));
    assert!(client.trigger_until_taken("e", json!(null), WAIT));
    rt.block_on(async {
        let mut heartbeats = 0;
        // Keep beating for a while: still in the lobby, HB every 100 ms.
        for _ in 0..6 {
            worker.send(message(&[b"", b"HB"])).await.unwrap();
            let frames = backend::frames(
                tokio::time::timeout(WAIT, worker.recv())
                    .await
                    .unwrap()
                    .unwrap(),
            );
            if frames[1] == b"HB" {
                heartbeats += 1;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(heartbeats >= 3, "server heartbeats: {heartbeats}");
    });
    assert_eq!(
        client.request("trigger", json!({"event": "e"})),
        json!({"triggered": "e"})
    );
    // Silence for more than liveness x interval: dropped, told QT.
    let quit = rt.block_on(async {
        loop {
            let frames = backend::frames(
                tokio::time::timeout(WAIT, worker.recv())
                    .await
                    .unwrap()
                    .unwrap(),
            );
            if frames[1] != b"HB" && frames[1] != b"TR" {
                return frames;
            }
        }
    });
    assert_eq!(quit, vec![b"".to_vec(), b"QT".to_vec()]);
    let reply = client.request("trigger", json!({"event": "e"}));
    assert_eq!(reply["err"], "ASSIGNATION_FAILED", "{reply}");
    // RD again rejoins.
    rt.block_on(worker.send(message(&[b"", b"RD"]))).unwrap();
    assert!(client.trigger_until_taken("e", json!(null), WAIT));
}

#[test]
fn shutdown_tells_workers_qt() {
    let setup = start();
    let rt = runtime();
    let mut worker = rt.block_on(dealer(
        setup.backend,
        &identity("dlr", "/chat", &setup.token),
    ));
    rt.block_on(worker.send(message(&[b"", b"RD"]))).unwrap();
    let mut client = Client::connect(&setup.server.url("/chat"));
    assert!(client.trigger_until_taken("e", json!(null), WAIT));
    drop(client);
    let _dir = setup.server.stop();
    let last = rt.block_on(async {
        let mut last = None;
        while let Ok(Ok(m)) = tokio::time::timeout(Duration::from_secs(2), worker.recv()).await {
            last = Some(backend::frames(m));
        }
        last
    });
    assert_eq!(last, Some(vec![b"".to_vec(), b"QT".to_vec()]));
}

/// In this process, so the test can regenerate the token as the admin API
/// will: through `Handle::change`.
#[test]
fn a_regenerated_token_stops_working_at_once() {
    use webrocket::config::Config;
    use webrocket::name::{AccessToken, VhostPath};
    use webrocket::storage::Change;

    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::parse(CONFIG).unwrap();
    config.server.websocket_addr = "127.0.0.1:0".parse().unwrap();
    config.server.backend_addr = "127.0.0.1:0".parse().unwrap();
    config.server.storage_dir = dir.path().join("data");
    config.server.run_dir = Some(dir.path().join("run"));
    let rt = runtime();
    let (exchange, addr) = rt.block_on(webrocket::exchange::bind(&config)).unwrap();
    let listeners = webrocket::server::Listeners {
        exchange: Some(exchange.clone()),
        ..Default::default()
    };
    let server = webrocket::server::Server::start(&config, listeners).unwrap();
    let changes = Arc::clone(&server.changes);
    let chat = VhostPath::parse("/chat").unwrap();
    let old = changes.with_state(|s| s.vhosts[&chat].token.as_str().to_string());

    let mut worker = rt.block_on(dealer(addr, &identity("dlr", "/chat", &old)));
    rt.block_on(worker.send(message(&[b"", b"RD"]))).unwrap();
    let mut client = Client::connect(&format!("ws://{}/chat", server.websocket_addr()));
    assert!(client.trigger_until_taken("e", json!(null), WAIT));
    assert_eq!(exchange.workers(&chat).len(), 1);
    let mut requests = rt.block_on(req(addr, &identity("req", "/chat", &old)));
    assert_eq!(
        rt.block_on(request(&mut requests, &[b"OC", b"a"])),
        vec![b"OK".to_vec()]
    );

    changes
        .change(Change::SetVhostToken {
            path: chat.clone(),
            token: AccessToken::generate(),
        })
        .unwrap();
    // The next request with the old token is refused...
    assert_eq!(
        rt.block_on(request(&mut requests, &[b"OC", b"b"])),
        vec![b"ER".to_vec(), b"402".to_vec()]
    );
    // ...and so is the next trigger: the old worker is out of the lobby.
    let reply = client.request("trigger", json!({"event": "e"}));
    assert_eq!(reply["err"], "ASSIGNATION_FAILED", "{reply}");
    assert!(exchange.workers(&chat).is_empty());
    let told = rt.block_on(async {
        loop {
            match next_non_heartbeat(&mut worker, WAIT).await {
                Some(f) if f[1] == b"TR" => continue,
                other => return other,
            }
        }
    });
    assert_eq!(told, Some(er("402")));
    // The new token works.
    let new = changes.with_state(|s| s.vhosts[&chat].token.as_str().to_string());
    let mut fresh = rt.block_on(req(addr, &identity("req", "/chat", &new)));
    assert_eq!(
        rt.block_on(request(&mut fresh, &[b"OC", b"c"])),
        vec![b"OK".to_vec()]
    );
    let stats = exchange.stats();
    assert_eq!(stats.workers_revoked, 1);
    assert!(stats.bad_identity >= 1);
    rt.block_on(exchange.shutdown());
    drop(server);
}

/// A ZMTP 3.0 greeting (NULL mechanism, as a client).
fn zmtp_greeting() -> Vec<u8> {
    let mut greeting = vec![0u8; 64];
    greeting[0] = 0xff;
    greeting[9] = 0x7f;
    greeting[10] = 3;
    greeting[12..16].copy_from_slice(b"NULL");
    greeting
}

/// Sends `bytes` on a raw connection to `addr` and says whether the
/// server closed it within a few seconds.
fn closed_after(addr: std::net::SocketAddr, bytes: &[u8]) -> bool {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    stream.write_all(bytes).expect("write");
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
            Err(_) => return false,
        }
    }
}

#[test]
fn oversized_frames_are_cut_off_before_the_router_sees_them() {
    let setup = start();
    // A frame header announcing a terabyte: the connection is cut, the
    // server lives on.
    let mut huge = zmtp_greeting();
    huge.push(0x02);
    huge.extend_from_slice(&(1u64 << 40).to_be_bytes());
    assert!(closed_after(setup.backend, &huge));
    // An endless multipart message is cut too.
    let mut endless = zmtp_greeting();
    for _ in 0..100 {
        endless.extend_from_slice(&[0x01, 1, b'x']);
    }
    assert!(closed_after(setup.backend, &endless));
    // Not ZeroMQ at all.
    assert!(closed_after(setup.backend, b"GET / HTTP/1.1\r\n\r\n"));
    // Backends are still served.
    let rt = runtime();
    let (addr, token) = (setup.backend, setup.token.clone());
    rt.block_on(async {
        let mut client = req(addr, &identity("req", "/chat", &token)).await;
        let reply = request(&mut client, &[b"OC", b"after"]).await;
        assert_eq!(reply, vec![b"OK".to_vec()]);
        // A little over the message limit (1 MiB) is read and refused
        // with an answer, not cut.
        let data = format!("\"{}\"", "x".repeat(1536 * 1024));
        let reply = request(&mut client, &[b"BC", b"after", b"e", data.as_bytes()]).await;
        assert_eq!(reply, vec![b"ER".to_vec(), b"400".to_vec()]);
    });
    // Counted: the admin API's /stats has the exchange's counters.
    let cookie = std::fs::read_to_string(setup.server.dir.path().join("data/webrocket.cookie"))
        .expect("node cookie");
    let request = format!(
        "GET /stats HTTP/1.1\r\nHost: x\r\nX-WebRocket-Cookie: {}\r\nConnection: close\r\n\r\n",
        cookie.trim()
    );
    let response = common::http(setup.server.admin, &request);
    let body = &response[response.find("\r\n\r\n").expect("body") + 4..];
    let stats: Value = serde_json::from_str(body).expect("json");
    assert_eq!(stats["counters"]["exchange.peers_cut_off"], 3, "{stats}");
}
