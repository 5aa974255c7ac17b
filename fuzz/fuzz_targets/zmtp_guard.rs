//! The ZMTP framing check in front of the backend and cluster ports, fed
//! in pieces.
#![no_main]

use libfuzzer_sys::fuzz_target;
use webrocket::guard::{FrameCheck, GuardLimits};

fuzz_target!(|data: &[u8]| {
    let Some((&piece, rest)) = data.split_first() else {
        return;
    };
    let mut check = FrameCheck::new(GuardLimits::server(4096));
    for chunk in rest.chunks(1 + usize::from(piece % 32)) {
        if check.feed(chunk).is_err() {
            return;
        }
    }
});
