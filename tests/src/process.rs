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

/// A port `p` on 127.0.0.1 such that `p..p + n` are all free now (for a run's coordinator and
/// its nodes' data ports).
pub fn free_ports(n: u16) -> u16 {
    for _ in 0..200 {
        let base = 20_000 + (random_below(40_000) as u16);
        let free = (base..base + n).all(|p| std::net::TcpListener::bind(("127.0.0.1", p)).is_ok());
        if free {
            return base;
        }
    }
    panic!("no {n} consecutive free ports on 127.0.0.1");
}

/// Wait (at most `timeout`) for the child to exit; its status and stderr (the child must have
/// been spawned with a piped stderr). A child still running at the timeout is killed.
pub fn wait_output(
    child: Child,
    what: &str,
    timeout: Duration,
) -> (std::process::ExitStatus, String) {
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(timeout) {
        Ok(out) => {
            let out = out.unwrap();
            (
                out.status,
                String::from_utf8_lossy(&out.stderr).into_owned(),
            )
        }
        Err(_) => {
            let _ = std::process::Command::new("kill")
                .args(["-9", &pid.to_string()])
                .status();
            panic!("{what} did not finish within {timeout:?} (killed)");
        }
    }
}
