//! A peer message between cluster nodes (frames after the routing id),
//! split into frames at each 0x00 0xff pair; what decodes must encode and
//! decode to the same message.
#![no_main]

use libfuzzer_sys::fuzz_target;
use webrocket::cluster::wire::PeerMessage;

fuzz_target!(|data: &[u8]| {
    let mut frames: Vec<&[u8]> = Vec::new();
    let mut rest = data;
    while let Some(at) = rest.windows(2).position(|w| w == [0, 0xff]) {
        frames.push(&rest[..at]);
        rest = &rest[at + 2..];
    }
    frames.push(rest);
    if let Ok(message) = PeerMessage::decode(&frames) {
        let again = PeerMessage::decode(&message.encode());
        assert_eq!(again.as_ref(), Ok(&message));
    }
});
