//! The storage log's framing (header, length + CRC records) and the
//! changes they carry, as read back at start.
#![no_main]

use libfuzzer_sys::fuzz_target;
use webrocket::storage::record::{decode_header, decode_record, Decoded};
use webrocket::storage::Change;

fuzz_target!(|data: &[u8]| {
    let _ = decode_header(*b"WRSTATE1", data);
    let mut rest = data;
    while let Decoded::Record(payload, used) = decode_record(rest, 1 << 20) {
        let _ = serde_json::from_slice::<Change>(payload);
        rest = &rest[used..];
    }
});
