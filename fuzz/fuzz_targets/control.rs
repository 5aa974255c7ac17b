//! Control commands and responses, and stream frames, as read from a
//! ring: a type id (the first four bytes) and a body.
#![no_main]

use libfuzzer_sys::fuzz_target;
use webrocket::nukleus::command::{decode, Response};
use webrocket::nukleus::frame::Frame;

fuzz_target!(|data: &[u8]| {
    if data.len() < 4 {
        return;
    }
    let type_id = i32::from_le_bytes([data[0], data[1], data[2], data[3]]);
    let body = &data[4..];
    let _ = decode(type_id, body);
    let _ = Response::decode(type_id, body);
    let _ = Frame::decode(type_id, body);
    // The same bodies under every known type.
    for type_id in [1, 2, 3, 4, 0x11, 0x12, 0x13, 0x14, 0x4000_0000] {
        let _ = decode(type_id, body);
        let _ = Response::decode(type_id, body);
    }
    for type_id in [1, 2, 3, 0x4000_0001, 0x4000_0002] {
        let _ = Frame::decode(type_id, body);
    }
});
