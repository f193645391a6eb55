//! SIGKILL helpers of the resume tests (`pretrain_resume`, `finetune_resume`).

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use trainer::train::checkpoint::{
    PAUSE_BEFORE_CURSOR_ENV, PAUSE_BEFORE_CURSOR_MARKER, PAUSE_ENV, PAUSE_MARKER,
};

#[allow(unused_imports)] // not every test crate that includes `common` uses them
pub use testkit::process::{count_lines, random_below};

/// Wait until `until()` holds (at most 2 minutes), then SIGKILL the child.
pub fn wait_kill(child: Child, until: impl Fn() -> bool, what: &str) {
    testkit::process::wait_kill(child, until, what, Duration::from_secs(120));
}

/// Run `c` with the checkpoint pause hook (it sleeps after the first file of a checkpoint)
/// and SIGKILL it there. Returns the marker line (names the temporary directory).
pub fn kill_in_checkpoint_write(c: Command) -> String {
    kill_at_pause(c, PAUSE_ENV, PAUSE_MARKER)
}

/// Run `c` with the hook that pauses after a checkpoint is renamed into place and before the
/// cursor moves to it, and SIGKILL it there. Returns the marker line (names the checkpoint).
pub fn kill_before_cursor_commit(c: Command) -> String {
    kill_at_pause(c, PAUSE_BEFORE_CURSOR_ENV, PAUSE_BEFORE_CURSOR_MARKER)
}

fn kill_at_pause(mut c: Command, env: &str, marker: &'static str) -> String {
    c.env(env, "60000").stderr(Stdio::piped());
    let mut child = c.spawn().unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.starts_with(marker) {
                let _ = tx.send(line);
            }
        }
    });
    let marker = rx
        .recv_timeout(Duration::from_secs(120))
        .expect("checkpoint pause marker");
    child.kill().unwrap();
    child.wait().unwrap();
    marker
}

/// Hidden temporaries (`.name.tmp-…`) in `dir`.
pub fn hidden_entries(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with('.')
        })
        .count()
}

/// Run the trainer to completion; its stderr (panics with both streams on failure).
pub fn run_ok(mut c: Command) -> String {
    let out = c.output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success(),
        "trainer failed:\n{err}\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
    err
}

/// `run/metrics.jsonl` without its wall-clock field `clock_key`: the part a resumed run must
/// reproduce exactly.
pub fn deterministic_metrics(run: &Path, clock_key: &str) -> Vec<String> {
    std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
            v.as_object_mut().unwrap().remove(clock_key);
            v.to_string()
        })
        .collect()
}
