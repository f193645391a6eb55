//! Helpers of the SIGKILL tests: pick a kill point, watch a run's progress, kill it there.

use std::path::Path;
use std::process::Child;
use std::time::{Duration, Instant};

/// A "random" number below `n` (from the clock), to be printed so a failure can be replayed.
pub fn random_below(n: usize) -> usize {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as usize;
    nanos % n.max(1)
}

/// Lines of the file at `path` (0 while it does not exist).
pub fn count_lines(path: &Path) -> usize {
    std::fs::read_to_string(path)
        .map(|s| s.lines().count())
        .unwrap_or(0)
}

/// Wait (at most `timeout`) until `until()` holds, then SIGKILL the child. Panics if the child
/// exits first.
pub fn wait_kill(mut child: Child, until: impl Fn() -> bool, what: &str, timeout: Duration) {
    let t = Instant::now();
    while !until() {
        if let Some(st) = child.try_wait().unwrap() {
            panic!("the process exited ({st}) before {what}");
        }
        assert!(t.elapsed() < timeout, "timeout waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
}
