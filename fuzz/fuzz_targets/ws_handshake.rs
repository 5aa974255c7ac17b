//! The HTTP request parser of the WebSocket port: upgrade requests, and
//! the answer to a plain GET or HEAD.
#![no_main]

use libfuzzer_sys::fuzz_target;
use webrocket::nukleus::ws::handshake::{parse_upgrade, HandshakeOutcome};
use webrocket::nukleus::ws::http::{respond, Health};
use webrocket::nukleus::ws::WsSettings;

fuzz_target!(|data: &[u8]| {
    let settings = WsSettings {
        max_frame_size: 4096,
        max_message_size: 16 * 1024,
        chunk_size: 4096,
        max_handshake_size: 8192,
        deflate: true,
    };
    if let HandshakeOutcome::Http(request) = parse_upgrade(data, &settings) {
        let _ = respond(&request, Health::Serving);
        let _ = respond(&request, Health::Draining);
    }
});
