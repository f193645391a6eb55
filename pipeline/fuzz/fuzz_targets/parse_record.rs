//! Fuzz the streaming record parser: any bytes (plain or gzip) must yield records or errors, never
//! a panic, and parsing must stop after a fatal error.
//! Run: `cd pipeline/fuzz && cargo +nightly fuzz run parse_record`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pipeline::parse::{ParseOptions, open_reader, parse_reader};

fuzz_target!(|data: &[u8]| {
    let Ok(reader) = open_reader(std::io::Cursor::new(data.to_vec())) else {
        return;
    };
    let mut fatal = false;
    for item in parse_reader(reader, "fuzz.xml", &ParseOptions::default()) {
        assert!(!fatal, "the parser went on after a fatal error");
        if let Err(e) = item {
            assert!(e.offset <= 1 << 40);
            fatal = !e.recoverable;
        }
    }
});
