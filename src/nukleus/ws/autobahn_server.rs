//! A blocking echo server over the pure engine, for running the Autobahn
//! fuzzing client against the engine alone (without the nuklei):
//!
//! ```text
//! WS_ECHO_ADDR=127.0.0.1:9001 WS_ECHO_SECS=1200 \
//!     cargo test --lib nukleus::ws::autobahn_server -- --ignored --nocapture &
//! /work/shared/tools/autobahn/run.sh 127.0.0.1:9001/echo /tmp/ab-out
//! ```

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::time::Duration;

use super::handshake::{accept_response, negotiate_deflate, parse_upgrade, HandshakeOutcome};
use super::{Action, WsConnection, WsSettings};

fn settings() -> WsSettings {
    WsSettings {
        max_frame_size: 32 << 20,
        max_message_size: 32 << 20,
        chunk_size: 64 << 10,
        max_handshake_size: 8 << 10,
        deflate: true,
    }
}

enum Step {
    Send(Vec<u8>),
    Echo(u8, Vec<u8>),
    Closed,
}

fn serve(mut sock: TcpStream) -> std::io::Result<()> {
    sock.set_nodelay(true)?;
    let s = settings();
    let mut buf = Vec::new();
    let mut read = vec![0u8; 64 << 10];
    let (request, consumed) = loop {
        let n = sock.read(&mut read)?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&read[..n]);
        match parse_upgrade(&buf, &s) {
            HandshakeOutcome::Incomplete => {}
            HandshakeOutcome::Reject { response, .. } => return sock.write_all(&response),
            HandshakeOutcome::Http(request) => {
                let health = super::http::Health::Serving;
                return sock.write_all(&super::http::respond(&request, health));
            }
            HandshakeOutcome::Request { request, consumed } => break (request, consumed),
        }
    };
    let params = negotiate_deflate(&request.deflate_offers);
    sock.write_all(&accept_response(&request, None, params.as_ref()))?;
    let mut conn = WsConnection::new(&s, params);
    let mut pending = buf.split_off(consumed);
    let mut out = Vec::new();
    loop {
        let mut steps = Vec::new();
        let used = conn.feed(&pending, &mut |a| {
            steps.push(match a {
                Action::Send(b) => Step::Send(b.to_vec()),
                Action::Deliver { flags, payload } => Step::Echo(flags, payload.to_vec()),
                Action::Closed { .. } => Step::Closed,
            });
            true
        });
        pending.drain(..used);
        for step in steps {
            match step {
                Step::Send(b) => out.extend_from_slice(&b),
                Step::Echo(flags, p) => conn.encode_message(flags, &p, &mut out),
                Step::Closed => {
                    sock.write_all(&out)?;
                    return sock.shutdown(Shutdown::Both);
                }
            }
        }
        sock.write_all(&out)?;
        out.clear();
        let n = sock.read(&mut read)?;
        if n == 0 {
            return Ok(());
        }
        pending.extend_from_slice(&read[..n]);
    }
}

#[test]
#[ignore = "manual: serves an echo endpoint for the Autobahn fuzzing client"]
fn autobahn_echo_server() {
    let addr = std::env::var("WS_ECHO_ADDR").unwrap_or_else(|_| "127.0.0.1:9001".into());
    let secs = std::env::var("WS_ECHO_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    let listener = TcpListener::bind(&addr).unwrap();
    std::thread::spawn(move || {
        for sock in listener.incoming().flatten() {
            std::thread::spawn(move || serve(sock));
        }
    });
    std::thread::sleep(Duration::from_secs(secs));
}
