//! Inflating a client's compressed message into a bounded buffer.
#![no_main]

use libfuzzer_sys::fuzz_target;
use webrocket::nukleus::ws::deflate::Inflater;

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let mut inflater = Inflater::new(flags & 1 != 0);
    let mut output = vec![0u8; 1 + usize::from(flags >> 1) * 32];
    let _ = inflater.inflate(rest, &mut output);
});
