//! A durable channel history file as read back at start: header, OPEN,
//! then RUN / MESSAGE / CLOSE records. Whatever parses must not panic, and
//! a clean parse must cover the bytes it says it does.
#![no_main]

use libfuzzer_sys::fuzz_target;
use webrocket::storage::history_log::{parse, Tail};

fuzz_target!(|data: &[u8]| {
    if let Ok(parsed) = parse(data, 1 << 20) {
        assert!(parsed.good_len <= data.len());
        if parsed.tail == Tail::Clean {
            assert_eq!(parsed.good_len, data.len());
        }
    }
});
