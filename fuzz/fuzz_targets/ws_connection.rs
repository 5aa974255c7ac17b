//! The WebSocket engine after the upgrade: frame headers, masking,
//! fragmentation, control frames, UTF-8 checks and permessage-deflate, fed
//! in pieces of the sizes the input's first bytes choose.
#![no_main]

use libfuzzer_sys::fuzz_target;
use webrocket::nukleus::ws::connection::WsConnection;
use webrocket::nukleus::ws::extension::DeflateParams;
use webrocket::nukleus::ws::WsSettings;

fuzz_target!(|data: &[u8]| {
    let Some((&shape, rest)) = data.split_first() else {
        return;
    };
    let settings = WsSettings {
        max_frame_size: 4096,
        max_message_size: 16 * 1024,
        chunk_size: 1 + usize::from(shape & 0x3f) * 64,
        max_handshake_size: 8192,
        deflate: true,
    };
    let deflate = (shape & 0x40 != 0).then(|| DeflateParams {
        server_no_context_takeover: false,
        client_no_context_takeover: shape & 0x80 != 0,
        server_max_window_bits: None,
        client_max_window_bits: None,
    });
    let mut connection = WsConnection::new(&settings, deflate);
    let piece = 1 + usize::from(shape % 7) * 5;
    for chunk in rest.chunks(piece) {
        let mut input = chunk;
        // A refused delivery is offered again: accept every other one.
        let mut accept = false;
        while !input.is_empty() {
            let used = connection.feed(input, &mut |_| {
                accept = !accept;
                accept
            });
            input = &input[used..];
        }
    }
});
