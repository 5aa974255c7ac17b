//! The data path end to end: a real server process, real sockets, a real
//! WebSocket client (tungstenite), and its control files driven from this
//! process.

mod common;

use std::time::Duration;

use common::{http, ServerProcess, BASIC_CONFIG};
use tungstenite::Message;
use webrocket::nukleus::command::Command;
use webrocket::nukleus::control::{ControlError, Controller};
use webrocket::nukleus::tcp::control::{Bind, BindAddress};

const T: Duration = Duration::from_secs(5);

#[test]
fn echo_round_trips_text_binary_and_large_messages() {
    let server = ServerProcess::start(BASIC_CONFIG, &[]);
    let (mut ws, response) = tungstenite::connect(server.url("/echo")).expect("connect");
    assert_eq!(response.status(), 101);
    ws.send(Message::text("hello")).unwrap();
    assert_eq!(ws.read().unwrap(), Message::text("hello"));
    ws.send(Message::binary(vec![0u8, 1, 2, 255])).unwrap();
    assert_eq!(ws.read().unwrap(), Message::binary(vec![0u8, 1, 2, 255]));
    let big: String = "x".repeat(3 << 20);
    ws.send(Message::text(big.clone())).unwrap();
    let mut echoed = String::new();
    // Large messages may come back fragmented; tungstenite reassembles.
    match ws.read().unwrap() {
        Message::Text(t) => echoed.push_str(t.as_str()),
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(echoed.len(), big.len());
    ws.close(None).unwrap();
}

#[test]
fn many_messages_keep_their_order() {
    let server = ServerProcess::start(BASIC_CONFIG, &[]);
    let (mut ws, _) = tungstenite::connect(server.url("/echo")).expect("connect");
    for i in 0..2000 {
        ws.send(Message::text(format!("m{i}"))).unwrap();
    }
    for i in 0..2000 {
        assert_eq!(ws.read().unwrap(), Message::text(format!("m{i}")));
    }
}

#[test]
fn unknown_path_is_404_and_plain_get_is_refused() {
    let server = ServerProcess::start(BASIC_CONFIG, &[]);
    let upgrade = |path: &str| {
        format!(
            "GET {path} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
    };
    let response = http(server.websocket, &upgrade("/nope"));
    assert!(response.starts_with("HTTP/1.1 404"), "{response}");
    let response = http(server.websocket, &upgrade("/chat"));
    assert!(response.starts_with("HTTP/1.1 101"), "{response}");
    assert!(
        response.contains("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="),
        "{response}"
    );
    let response = http(server.websocket, "GET /chat HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(response.starts_with("HTTP/1.1 426"), "{response}");
    let response = http(server.websocket, "BREW /chat HTCPCP/1.0\r\n\r\n");
    assert!(response.starts_with("HTTP/1.1 4"), "{response}");
}

#[test]
fn control_files_answer_commands_from_another_process() {
    let server = ServerProcess::start(BASIC_CONFIG, &[]);
    for nukleus in ["tcp", "ws", "webrocket", "echo"] {
        assert!(
            server.run_dir.join(nukleus).join("control").exists(),
            "{nukleus}"
        );
    }
    assert!(server.run_dir.join("ws/streams/tcp").exists());
    assert!(server.run_dir.join("tcp/streams/ws").exists());

    let mut tcp = Controller::open(&server.run_dir, "tcp", None).expect("open tcp control");
    let bind = Bind {
        handler: "ws".into(),
        address: BindAddress::Ip("127.0.0.1".parse().unwrap()),
        port: 0,
    };
    let bound = tcp.call(Command::Bind(&bind.encode()), T).expect("BOUND");
    let reference = bound.reference.expect("a ref");
    let address = bound.address.expect("the bound address");
    assert_ne!(address.port(), 0);
    std::net::TcpStream::connect(address).expect("the new listener accepts");
    tcp.call(Command::Unbind(reference), T).expect("UNBOUND");
    assert!(matches!(
        tcp.call(Command::Unbind(reference), T),
        Err(ControlError::Refused { .. })
    ));
    // ROUTE to a nukleus that has no streams file for us is an ERROR.
    assert!(matches!(
        tcp.call(Command::Route("nobody"), T),
        Err(ControlError::Refused { .. })
    ));
    // CAPTURE creates the streams file; UNCAPTURE removes it.
    tcp.call(Command::Capture("tool"), T).expect("CAPTURED");
    assert!(server.run_dir.join("tcp/streams/tool").exists());
    tcp.call(Command::Uncapture("tool"), T).expect("UNCAPTURED");
    // A BIND whose handler is not routed is an ERROR; so is a malformed one.
    let stray = Bind {
        handler: "nobody".into(),
        ..bind
    };
    assert!(tcp.call(Command::Bind(&stray.encode()), T).is_err());
    assert!(tcp.call(Command::Bind(&[1, 2]), T).is_err());
    // PREPARE and UNPREPARE.
    let body = webrocket::nukleus::tcp::control::encode_prepare("ws", address);
    let prepared = tcp.call(Command::Prepare(&body), T).expect("PREPARED");
    tcp.call(Command::Unprepare(prepared.reference.unwrap()), T)
        .expect("UNPREPARED");
    // The ws nukleus serves clients only: PREPARE is refused.
    let mut ws = Controller::open(&server.run_dir, "ws", None).expect("open ws control");
    assert!(ws.call(Command::Prepare(&[]), T).is_err());
    assert!(ws.call(Command::Unbind(999), T).is_err());
    // A command type no nukleus knows is answered with ERROR, not silence.
    for (nukleus, controller) in [("tcp", &mut tcp), ("ws", &mut ws)] {
        let correlation = controller.send_raw(0x7e, b"what").expect("sent");
        assert!(
            matches!(
                controller.wait(0x7e, correlation, T),
                Err(ControlError::Refused { .. })
            ),
            "{nukleus}"
        );
    }
}

const TIMEOUTS_CONFIG: &str = r#"
[server]
echo_path = "/echo"

[limits]
handshake_timeout = "1s"
idle_timeout = "1s"
"#;

#[test]
fn slow_handshake_gets_408_and_idle_connection_is_closed() {
    let server = ServerProcess::start(TIMEOUTS_CONFIG, &[]);
    // An upgrade request that never finishes.
    let response = http(server.websocket, "GET /echo HTTP/1.1\r\nHost: x\r\n");
    assert!(response.starts_with("HTTP/1.1 408"), "{response}");

    let (mut ws, _) = tungstenite::connect(server.url("/echo")).expect("connect");
    ws.send(Message::text("still here")).unwrap();
    assert_eq!(ws.read().unwrap(), Message::text("still here"));
    // Then silence: the server closes with 1000 "idle timeout".
    match ws.read() {
        Ok(Message::Close(Some(frame))) => {
            assert_eq!(u16::from(frame.code), 1000);
            assert_eq!(frame.reason.as_str(), "idle timeout");
        }
        other => panic!("expected a close frame, got {other:?}"),
    }
}

#[test]
fn one_thread_runs_every_nukleus() {
    let config = format!(
        "{}\n",
        BASIC_CONFIG.replace("[server]", "[server]\nthreads = 1")
    );
    let server = ServerProcess::start(&config, &[]);
    let (mut echo, _) = tungstenite::connect(server.url("/echo")).expect("connect");
    echo.send(Message::text("one")).unwrap();
    assert_eq!(echo.read().unwrap(), Message::text("one"));
    let (mut chat, _) = tungstenite::connect(server.url("/chat")).expect("connect");
    let greeting = chat.read().unwrap().into_text().unwrap();
    assert!(
        greeting.starts_with(r#"{"connected":{"sid":""#),
        "{greeting}"
    );
    chat.send(Message::text(r#"{"subscribe":{"channel":"c"}}"#))
        .unwrap();
    assert_eq!(chat.read().unwrap(), Message::text(r#"{"subscribed":"c"}"#));
}

/// This process plays a nukleus called "tool": tcp captures its streams and
/// routes to it, a PREPAREd ref opens an outbound connection, and bytes flow
/// both ways through the rings.
#[test]
fn prepare_opens_an_outbound_connection_for_another_process() {
    use std::io::{Read, Write};
    use webrocket::nukleus::frame::{self, Frame, StreamId};
    use webrocket::stream::StreamsFile;

    let server = ServerProcess::start(BASIC_CONFIG, &[]);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let remote = listener.local_addr().unwrap();

    // Our side: the file tcp writes into, then tcp's capture of us.
    let ours = StreamsFile::create(&server.run_dir.join("tool/streams/tcp"), 1 << 20).unwrap();
    let mut tcp = Controller::open(&server.run_dir, "tcp", None).unwrap();
    tcp.call(Command::Capture("tool"), T).expect("CAPTURED");
    tcp.call(Command::Route("tool"), T).expect("ROUTED");
    let theirs = StreamsFile::open(&server.run_dir.join("tcp/streams/tool")).unwrap();
    let body = webrocket::nukleus::tcp::control::encode_prepare("tool", remote);
    let reference = tcp
        .call(Command::Prepare(&body), T)
        .unwrap()
        .reference
        .unwrap();

    // BEGIN an initial stream with the prepared ref: tcp connects.
    let initial = StreamId(1);
    theirs
        .forward
        .write(frame::BEGIN, &[&frame::begin_head(initial, reference)])
        .unwrap();
    let (mut peer, _) = listener.accept().expect("tcp connected out");

    // tcp answers with a reply stream and credit for ours.
    let deadline = std::time::Instant::now() + T;
    let (mut reply, mut credit) = (None, 0);
    let mut received = Vec::new();
    let pump = |reply: &mut Option<StreamId>, credit: &mut i32, received: &mut Vec<u8>| {
        ours.forward
            .read(64, |t, b| match Frame::decode(t, b).unwrap() {
                Frame::Begin {
                    stream, reference, ..
                } => {
                    assert_eq!(reference, initial.0);
                    *reply = Some(stream);
                }
                Frame::Data { payload, .. } => received.extend_from_slice(payload),
                _ => {}
            });
        theirs.throttle.read(64, |t, b| {
            if let Ok(Frame::Window { credit: c, .. }) = Frame::decode(t, b) {
                *credit += c;
            }
        });
    };
    while (reply.is_none() || credit == 0) && std::time::Instant::now() < deadline {
        pump(&mut reply, &mut credit, &mut received);
        std::thread::sleep(Duration::from_millis(5));
    }
    let reply = reply.expect("reply BEGIN");
    assert!(credit > 0, "tcp granted credit for our stream");

    // Our DATA reaches the remote socket...
    theirs
        .forward
        .write(frame::DATA, &[&initial.bytes(), b"hello remote"])
        .unwrap();
    let mut buf = [0u8; 12];
    peer.set_read_timeout(Some(T)).unwrap();
    peer.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"hello remote");

    // ...and the remote's bytes come back on the reply stream once we grant
    // credit for it.
    ours.throttle
        .write(frame::WINDOW, &[&frame::window_body(reply, 1024, 0)])
        .unwrap();
    peer.write_all(b"hello tool").unwrap();
    while received.len() < 10 && std::time::Instant::now() < deadline {
        pump(&mut None, &mut 0, &mut received);
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(received, b"hello tool");
}

#[test]
fn tcp_binds_ipv6_loopback() {
    let server = ServerProcess::start(BASIC_CONFIG, &[]);
    let mut tcp = Controller::open(&server.run_dir, "tcp", None).expect("open tcp control");
    let bind = Bind {
        handler: "ws".into(),
        address: BindAddress::Ip("::1".parse().unwrap()),
        port: 0,
    };
    match tcp.call(Command::Bind(&bind.encode()), T) {
        Ok(bound) => {
            let address = bound.address.expect("bound address");
            assert!(address.is_ipv6());
            std::net::TcpStream::connect(address).expect("IPv6 listener accepts");
        }
        // A machine without IPv6 refuses the bind: that is an ERROR, not a crash.
        Err(ControlError::Refused { .. }) => {
            assert!(
                std::net::TcpListener::bind("[::1]:0").is_err(),
                "IPv6 works here, so BIND should too"
            );
        }
        Err(other) => panic!("{other}"),
    }
}

#[test]
fn plain_http_on_the_websocket_port() {
    let server = ServerProcess::start(BASIC_CONFIG, &[]);
    let get = |path: &str, extra: &str| {
        http(
            server.websocket,
            &format!("GET {path} HTTP/1.1\r\nHost: x\r\n{extra}\r\n"),
        )
    };
    let js = get("/webrocket.js", "");
    let (head, body) = js.split_once("\r\n\r\n").expect("a head");
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert!(head.contains("\r\nContent-Type: text/javascript; charset=utf-8\r\n"));
    assert!(head.contains("\r\nCache-Control: public, max-age=300\r\n"));
    assert!(head.ends_with("\r\nConnection: close"), "{head}");
    let shipped = include_str!("../clients/js/webrocket.js");
    assert_eq!(
        body, shipped,
        "the whole client, then the connection closed"
    );
    let etag = head
        .lines()
        .find_map(|l| l.strip_prefix("ETag: "))
        .expect("an ETag");
    let cached = get("/webrocket.js", &format!("If-None-Match: {etag}\r\n"));
    assert!(
        cached.starts_with("HTTP/1.1 304 Not Modified\r\n"),
        "{cached}"
    );
    assert!(cached.ends_with("\r\n\r\n"), "no body: {cached}");

    let head_only = http(
        server.websocket,
        "HEAD /example/chat.html HTTP/1.1\r\nHost: x\r\n\r\n",
    );
    assert!(head_only.starts_with("HTTP/1.1 200 OK\r\n"), "{head_only}");
    assert!(head_only.contains("text/html"));
    assert!(head_only.ends_with("\r\n\r\n"), "HEAD has no body");

    let health = get("/healthz", "");
    assert!(health.starts_with("HTTP/1.1 200 OK\r\n"), "{health}");
    assert!(health.ends_with("\r\n\r\nok\n"), "{health}");
    assert!(get("/nope", "").starts_with("HTTP/1.1 404 "));
    assert!(get("/chat", "").starts_with("HTTP/1.1 426 "));
    let post = http(
        server.websocket,
        "POST /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
    );
    assert!(post.starts_with("HTTP/1.1 405 "), "{post}");
    assert!(post.contains("\r\nAllow: GET, HEAD\r\n"));
}

#[test]
fn allowed_origins_are_checked_before_the_upgrade() {
    let config = r#"
[[vhost]]
path = "/chat"
anonymous = ["READ"]
allowed_origins = ["https://good.example"]

[[vhost]]
path = "/open"
"#;
    let server = ServerProcess::start(config, &[]);
    let upgrade = |path: &str, origin: Option<&str>| {
        let origin = origin
            .map(|o| format!("Origin: {o}\r\n"))
            .unwrap_or_default();
        status_line(
            server.websocket,
            &format!(
                "GET {path} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                 Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
                 {origin}\r\n"
            ),
        )
    };
    let status = |line: String| line;
    assert_eq!(
        status(upgrade("/chat", Some("https://evil.example"))),
        "HTTP/1.1 403"
    );
    assert_eq!(
        status(upgrade("/chat", Some("https://good.example"))),
        "HTTP/1.1 101"
    );
    assert_eq!(status(upgrade("/chat", None)), "HTTP/1.1 101");
    assert_eq!(
        status(upgrade("/open", Some("https://evil.example"))),
        "HTTP/1.1 101"
    );
}

/// The first 12 bytes of the answer to `request` ("HTTP/1.1 101").
fn status_line(addr: std::net::SocketAddr, request: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(T)).expect("timeout");
    stream.write_all(request.as_bytes()).expect("write");
    let mut line = [0u8; 12];
    stream.read_exact(&mut line).expect("a status line");
    String::from_utf8_lossy(&line).into_owned()
}

/// This process plays a handler nukleus ("tool") bound by ws for two
/// sub-protocols: the client's preferred one wins, and the BEGIN carries
/// the path, query, origin and address of the upgrade request.
#[test]
fn the_handshake_reaches_the_handler() {
    use std::io::{Read, Write};
    use webrocket::nukleus::frame::{self, Frame, StreamId};
    use webrocket::nukleus::ws::begin::WsBegin;
    use webrocket::nukleus::ws::nukleus::WsBind;
    use webrocket::stream::StreamsFile;

    let server = ServerProcess::start(BASIC_CONFIG, &[]);
    let ours = StreamsFile::create(&server.run_dir.join("tool/streams/ws"), 1 << 20).unwrap();
    let mut ws = Controller::open(&server.run_dir, "ws", None).unwrap();
    ws.call(Command::Capture("tool"), T).expect("CAPTURED");
    ws.call(Command::Route("tool"), T).expect("ROUTED");
    let theirs = StreamsFile::open(&server.run_dir.join("ws/streams/tool")).unwrap();
    let mut tcp = Controller::open(&server.run_dir, "tcp", None).unwrap();
    let bind = Bind {
        handler: "ws".into(),
        address: BindAddress::Ip("127.0.0.1".parse().unwrap()),
        port: 0,
    };
    let bound = tcp.call(Command::Bind(&bind.encode()), T).expect("BOUND");
    let address = bound.address.expect("address");
    let mut refs = Vec::new();
    for protocol in [None, Some("alpha"), Some("beta")] {
        let bind = WsBind {
            source: "tcp".into(),
            source_ref: bound.reference.expect("ref"),
            handler: "tool".into(),
            protocol: protocol.map(str::to_string),
            path: Some("/tool".into()),
            max_message_size: 0,
            origins: Vec::new(),
        };
        let reference = ws.call(Command::Bind(&bind.encode()), T).expect("BOUND");
        refs.push(reference.reference.expect("ref"));
    }

    let mut client = std::net::TcpStream::connect(address).unwrap();
    client.set_read_timeout(Some(T)).unwrap();
    let query = format!("room=lobby&token={}", "t".repeat(400));
    client
        .write_all(
            format!(
                "GET /tool?{query} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\
                 Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
                 Sec-WebSocket-Version: 13\r\nOrigin: https://app.example\r\n\
                 Sec-WebSocket-Protocol: gamma, beta, alpha\r\n\r\n"
            )
            .as_bytes(),
        )
        .unwrap();

    let deadline = std::time::Instant::now() + T;
    let mut begin = None;
    while begin.is_none() && std::time::Instant::now() < deadline {
        ours.forward.read(64, |t, b| {
            if let Ok(Frame::Begin {
                stream,
                reference,
                extension,
            }) = Frame::decode(t, b)
            {
                let fields = WsBegin::decode(extension).expect("a ws BEGIN");
                let owned = (
                    fields.protocol.map(str::to_string),
                    fields.path.to_string(),
                    fields.query.map(str::to_string),
                    fields.origin.map(str::to_string),
                    fields.remote,
                );
                begin = Some((stream, reference, owned));
            }
        });
        std::thread::sleep(Duration::from_millis(5));
    }
    let (initial, reference, (protocol, path, got_query, origin, remote)) =
        begin.expect("a BEGIN for the handler");
    assert_eq!(reference, refs[2], "the client prefers beta to alpha");
    assert_eq!(protocol.as_deref(), Some("beta"));
    assert_eq!(path, "/tool");
    assert_eq!(got_query.as_deref(), Some(query.as_str()));
    assert_eq!(origin.as_deref(), Some("https://app.example"));
    assert_eq!(remote, Some(client.local_addr().unwrap()));

    // Taking the stream answers the upgrade, naming the chosen sub-protocol.
    theirs
        .forward
        .write(frame::BEGIN, &[&frame::begin_head(StreamId(2), initial.0)])
        .unwrap();
    let mut response = Vec::new();
    let mut byte = [0u8; 1];
    while !response.ends_with(b"\r\n\r\n") {
        client.read_exact(&mut byte).expect("the 101 answer");
        response.push(byte[0]);
    }
    let response = String::from_utf8(response).unwrap();
    assert!(response.starts_with("HTTP/1.1 101 "), "{response}");
    assert!(response.contains("\r\nSec-WebSocket-Protocol: beta\r\n"));
}

/// `/healthz` turns 503 as soon as the node stops accepting: a connection
/// accepted before asks after.
#[test]
fn healthz_is_503_once_the_node_stops_accepting() {
    use std::io::{Read, Write};
    use webrocket::config::Config;
    use webrocket::server::{Listeners, Server};

    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::parse(BASIC_CONFIG).unwrap();
    config.server.websocket_addr = "127.0.0.1:0".parse().unwrap();
    config.server.storage_dir = dir.path().join("data");
    config.server.run_dir = Some(dir.path().join("run"));
    let server = Server::start(&config, Listeners::default()).unwrap();
    let addr = server.websocket_addr();
    let mut early = std::net::TcpStream::connect(addr).unwrap();
    early.set_read_timeout(Some(T)).unwrap();
    early.write_all(b"GET /healthz HTTP/1.1\r\n").unwrap();
    // Answered after `early` was accepted (the listener takes them in order).
    let healthy = http(addr, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(healthy.starts_with("HTTP/1.1 200 OK\r\n"), "{healthy}");

    server.stop_accepting();
    early.write_all(b"Host: x\r\n\r\n").unwrap();
    let mut answer = String::new();
    early.read_to_string(&mut answer).unwrap();
    assert!(
        answer.starts_with("HTTP/1.1 503 Service Unavailable\r\n"),
        "{answer}"
    );
    assert!(answer.ends_with("\r\n\r\ndraining\n"), "{answer}");
    assert!(
        std::net::TcpStream::connect(addr).is_err(),
        "no new clients"
    );
    drop(server);
}

/// UNROUTE and UNCAPTURE remove one neighbour without moving the others:
/// a live echo session, whose streams go to and come from a neighbour
/// routed after the removed ones, goes on echoing, and new ones open.
#[test]
fn removing_a_route_leaves_the_other_routes_live_streams_alone() {
    let server = ServerProcess::start(BASIC_CONFIG, &[]);
    let (mut ws, _) = tungstenite::connect(server.url("/echo")).expect("connect");
    ws.send(Message::text("before")).unwrap();
    assert_eq!(ws.read().unwrap(), Message::text("before"));

    let mut control = Controller::open(&server.run_dir, "ws", None).expect("ws control");
    for neighbour in ["webrocket", "monorail"] {
        control
            .call(Command::Unroute(neighbour), T)
            .expect("UNROUTED");
        control
            .call(Command::Uncapture(neighbour), T)
            .expect("UNCAPTURED");
    }
    // Gone now: a second removal is refused.
    assert!(matches!(
        control.call(Command::Unroute("webrocket"), T),
        Err(ControlError::Refused { .. })
    ));

    for n in 0..20 {
        let text = format!("after {n}");
        ws.send(Message::text(text.clone())).unwrap();
        assert_eq!(ws.read().unwrap(), Message::text(text));
    }
    let (mut fresh, response) = tungstenite::connect(server.url("/echo")).expect("connect");
    assert_eq!(response.status(), 101);
    fresh.send(Message::text("new")).unwrap();
    assert_eq!(fresh.read().unwrap(), Message::text("new"));
}

type Socket = tungstenite::WebSocket<tungstenite::stream::MaybeTlsStream<std::net::TcpStream>>;

/// Opens a webrocket session on `/chat` and reads its greeting.
fn chat_session(server: &ServerProcess) -> Socket {
    let (mut ws, _) = tungstenite::connect(server.url("/chat")).expect("connect");
    if let tungstenite::stream::MaybeTlsStream::Plain(stream) = ws.get_ref() {
        stream.set_read_timeout(Some(T)).unwrap();
    }
    let greeting = ws.read().expect("the greeting");
    assert!(
        greeting.to_text().unwrap().contains("connected"),
        "{greeting}"
    );
    ws
}

/// Reads until the connection ends; how it ended (a close frame's code,
/// or None for a connection cut without one). Fails after `T`.
fn until_closed(ws: &mut Socket) -> Option<u16> {
    loop {
        match ws.read() {
            Ok(Message::Close(frame)) => return frame.map(|f| u16::from(f.code)),
            Ok(_) => continue,
            Err(tungstenite::Error::Io(e))
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                panic!("the connection stayed open")
            }
            Err(_) => return None,
        }
    }
}

/// UNROUTE ends the live streams that went through the removed route:
/// the webrocket session's WebSocket is closed at once (1011, its handler
/// is gone), while the echo session of another route goes on.
#[test]
fn unroute_resets_the_removed_routes_live_streams() {
    let server = ServerProcess::start(BASIC_CONFIG, &[]);
    let mut chat = chat_session(&server);
    let (mut echo, _) = tungstenite::connect(server.url("/echo")).expect("connect");

    let mut control = Controller::open(&server.run_dir, "ws", None).expect("ws control");
    let start = std::time::Instant::now();
    control
        .call(Command::Unroute("webrocket"), T)
        .expect("UNROUTED");
    assert_eq!(until_closed(&mut chat), Some(1011));
    assert!(start.elapsed() < Duration::from_secs(2), "closed promptly");

    echo.send(Message::text("still here")).unwrap();
    assert_eq!(echo.read().unwrap(), Message::text("still here"));
}

/// UNCAPTURE likewise: the broker stops reading ws, so its sessions are
/// reset and their connections end now; echo sessions carry on.
#[test]
fn uncapture_resets_the_removed_sources_live_streams() {
    let server = ServerProcess::start(BASIC_CONFIG, &[]);
    let mut chat = chat_session(&server);
    let (mut echo, _) = tungstenite::connect(server.url("/echo")).expect("connect");

    let mut control =
        Controller::open(&server.run_dir, "webrocket", None).expect("webrocket control");
    let start = std::time::Instant::now();
    control
        .call(Command::Uncapture("ws"), T)
        .expect("UNCAPTURED");
    until_closed(&mut chat);
    assert!(start.elapsed() < Duration::from_secs(2), "closed promptly");

    echo.send(Message::text("still here")).unwrap();
    assert_eq!(echo.read().unwrap(), Message::text("still here"));
}
