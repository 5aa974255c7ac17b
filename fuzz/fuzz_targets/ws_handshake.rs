//! The HTTP upgrade request parser.
#![no_main]

use libfuzzer_sys::fuzz_target;
use webrocket::nukleus::ws::handshake::parse_upgrade;
use webrocket::nukleus::ws::WsSettings;

fuzz_target!(|data: &[u8]| {
    let settings = WsSettings {
        max_frame_size: 4096,
        max_message_size: 16 * 1024,
        chunk_size: 4096,
        max_handshake_size: 8192,
        deflate: true,
    };
    let _ = parse_upgrade(data, &settings);
});
