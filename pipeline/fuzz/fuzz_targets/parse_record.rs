//! Fuzz the streaming record parser: any bytes (plain or gzip) must yield records or errors, never
//! a panic; parsing must stop after a fatal error; and where the parser's buffer boundaries fall
//! (set by the input's first byte) must not change what it yields, unless reading the input fails.
//! Run: `just fuzz-parse` (see README), or `RUSTC_BOOTSTRAP=1 cargo fuzz run parse_record` here.
#![no_main]

use libfuzzer_sys::fuzz_target;

// The parser's own source files, compiled as they are in `pipeline::parse` (the files of `record/`
// reach `text` as `super::super::text`).
#[allow(dead_code, unused_imports)]
#[path = "../../src/parse/record/mod.rs"]
mod record;
#[allow(dead_code)]
#[path = "../../src/parse/text.rs"]
mod text;

use record::{ParseOptions, RecordParser, open_reader, parse_reader};

fuzz_target!(|data: &[u8]| {
    let Some((&first, data)) = data.split_first() else {
        return;
    };
    let Ok(reader) = open_reader(std::io::Cursor::new(data.to_vec())) else {
        return;
    };
    let mut fatal = false;
    let mut items = Vec::new();
    for item in parse_reader(reader, "fuzz.xml", &ParseOptions::default()) {
        assert!(!fatal, "the parser went on after a fatal error");
        if let Err(e) = &item {
            assert!(e.offset <= 1 << 40);
            fatal = !e.recoverable;
        }
        items.push(format!("{item:?}"));
    }
    // The same bytes read through a tiny buffer (1 to 64 bytes, grown only for longer events).
    let Ok(reader) = open_reader(std::io::Cursor::new(data.to_vec())) else {
        panic!("the input opened once but not twice");
    };
    let chunk = usize::from(first % 64) + 1;
    let again: Vec<String> = RecordParser::with_chunk(reader, "fuzz.xml", chunk)
        .map(|item| format!("{item:?}"))
        .collect();
    // A corrupt gzip stream fails at whichever read meets it, and which XML comes before that
    // depends on how much is read at once; otherwise the buffer size must not matter.
    let read_failed =
        |items: &[String]| items.iter().any(|i| i.contains("reading the input failed"));
    if !read_failed(&items) && !read_failed(&again) {
        assert_eq!(items, again, "chunk size {chunk} changed the items");
    }
});
