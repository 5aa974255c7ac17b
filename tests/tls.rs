//! `wss://`: the tls nukleus between tcp and ws, tested with a real rustls
//! client and a certificate made for the test.

mod common;

use std::net::TcpStream;
use std::sync::Arc;

use common::ServerProcess;
use tungstenite::Message;

fn client_config(cert_der: Vec<u8>) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert_der.into()).expect("add root");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Arc::new(
        rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

#[test]
fn wss_echo_and_vhost_through_the_tls_nukleus() {
    let generated = rcgen::generate_simple_self_signed(vec!["localhost".into()]).expect("cert");
    let dir = tempfile::tempdir().expect("tempdir");
    let cert = dir.path().join("cert.pem");
    let key = dir.path().join("key.pem");
    std::fs::write(&cert, generated.cert.pem()).unwrap();
    std::fs::write(&key, generated.signing_key.serialize_pem()).unwrap();
    let server = ServerProcess::start(
        common::BASIC_CONFIG,
        &[
            "--cert",
            cert.to_str().unwrap(),
            "--key",
            key.to_str().unwrap(),
        ],
    );
    assert!(server.run_dir.join("tls/control").exists());
    let config = client_config(generated.cert.der().to_vec());

    for (path, message) in [
        ("/echo", r#"{"hello":"tls"}"#),
        ("/chat", r#"{"subscribe":{"channel":"c"}}"#),
    ] {
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        let conn = rustls::ClientConnection::new(Arc::clone(&config), name).unwrap();
        let tcp = TcpStream::connect(server.websocket).unwrap();
        let stream = rustls::StreamOwned::new(conn, tcp);
        let url = format!("wss://localhost:{}{}", server.websocket.port(), path);
        let (mut ws, response) = tungstenite::client(url, stream).expect("wss handshake");
        assert_eq!(response.status(), 101);
        if path == "/chat" {
            let greeting = ws.read().unwrap().into_text().unwrap();
            assert!(
                greeting.starts_with(r#"{"connected":{"sid":""#),
                "{greeting}"
            );
        }
        ws.send(Message::text(message)).unwrap();
        let reply = ws.read().unwrap();
        if path == "/echo" {
            assert_eq!(reply, Message::text(message));
        } else {
            assert_eq!(reply, Message::text(r#"{"subscribed":"c"}"#));
        }
        ws.close(None).unwrap();
    }

    // Messages larger than a few TLS records, both ways, pipelined.
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let conn = rustls::ClientConnection::new(Arc::clone(&config), name).unwrap();
    let stream = rustls::StreamOwned::new(conn, TcpStream::connect(server.websocket).unwrap());
    let url = format!("wss://localhost:{}/echo", server.websocket.port());
    let (mut ws, _) = tungstenite::client(url, stream).expect("wss handshake");
    let big: Vec<String> = (0..3).map(|i| format!("{i}").repeat(300 * 1024)).collect();
    for message in &big {
        ws.send(Message::text(message.as_str())).unwrap();
    }
    for message in &big {
        match ws.read().unwrap() {
            Message::Text(text) => assert!(text.as_str() == message.as_str(), "echo differs"),
            other => panic!("unexpected {other:?}"),
        }
    }

    // A plaintext client on the TLS port gets nothing it can use.
    let plain = common::http(
        server.websocket,
        "GET /echo HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
    );
    assert!(!plain.starts_with("HTTP/1.1 101"));
}
