//! The configuration file: parsing and validation report problems, never
//! panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use webrocket::config::Config;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(config) = Config::parse(text) {
        let _ = config.validate();
    }
});
