//! A client message of the webrocket dialect.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = webrocket::protocol::decode(data);
});
