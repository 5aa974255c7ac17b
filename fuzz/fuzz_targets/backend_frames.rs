//! A backend message (ZeroMQ frames after the routing id), for a worker
//! and for a request client. The input is split into frames at each 0x00
//! 0xff pair, so any frame contents can be reached.
#![no_main]

use libfuzzer_sys::fuzz_target;
use webrocket::exchange::frames::decode;
use webrocket::exchange::identity::Role;

fn frames(data: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i + 1 < data.len() {
        if data[i] == 0 && data[i + 1] == 0xff {
            out.push(&data[start..i]);
            start = i + 2;
            i += 2;
        } else {
            i += 1;
        }
    }
    out.push(&data[start..]);
    out
}

fuzz_target!(|data: &[u8]| {
    let frames = frames(data);
    let _ = decode(Role::Worker, &frames);
    let _ = decode(Role::Request, &frames);
});
