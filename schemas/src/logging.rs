//! One log setup for both binaries: `tracing` to stderr, filtered by `RUST_LOG` (default `info`),
//! colour only when stderr is a terminal (so logs redirected to a file stay plain text). Results
//! and tables go to stdout with `println!`; everything else is a log line.

use std::io::IsTerminal;

/// Install the subscriber; a second call keeps the first one.
pub fn init() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .try_init();
}
