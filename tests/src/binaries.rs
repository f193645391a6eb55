//! The built `pipeline` and `trainer` binaries, for end-to-end tests that run them as a user would.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The `pipeline` binary of the profile these tests were built with ([`binary`]).
pub fn pipeline_binary() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| binary("pipeline")).clone()
}

/// The `trainer` binary of the profile these tests were built with ([`binary`]).
pub fn trainer_binary() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| binary("trainer")).clone()
}

/// The binary of package `name` (same name), with its default features.
///
/// `cargo test --workspace` builds it next to the test executables (`<target>/<profile>/NAME`);
/// that one is used when it is newer than every source file of the crate. Otherwise it is built
/// here with `cargo build` (which waits while another cargo holds the build-directory lock).
fn binary(name: &str) -> PathBuf {
    let beside = std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.parent()?.join(name)));
    match beside {
        Some(bin) if is_fresh(&bin, &crate::fixtures::workspace_dir().join(name)) => bin,
        _ => build_binary(name, name),
    }
}

/// Whether `trainer devices` (of the binary `trainer`) finds a wgpu adapter. When it does not,
/// prints SKIP — or panics under `CI=true`, where the wgpu checks must run (on lavapipe).
pub fn wgpu_available(trainer: &Path) -> bool {
    let out = Command::new(trainer).arg("devices").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().find(|l| l.starts_with("wgpu")).unwrap_or("");
    if line.is_empty() || line.contains("unavailable") {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must run the wgpu checks, but: {line}"
        );
        println!("SKIP: no wgpu adapter ({line})");
        return false;
    }
    true
}

/// Whether `bin` exists and is newer than every file under `crate_dir/src` and its Cargo.toml.
fn is_fresh(bin: &Path, crate_dir: &Path) -> bool {
    fn newest(dir: &Path) -> Option<std::time::SystemTime> {
        let mut newest = None;
        for entry in std::fs::read_dir(dir).ok()? {
            let path = entry.ok()?.path();
            let t = if path.is_dir() {
                newest_opt(&path)
            } else {
                std::fs::metadata(&path).and_then(|m| m.modified()).ok()
            };
            newest = newest.max(t);
        }
        newest
    }
    fn newest_opt(dir: &Path) -> Option<std::time::SystemTime> {
        newest(dir)
    }
    let Ok(built) = std::fs::metadata(bin).and_then(|m| m.modified()) else {
        return false;
    };
    let sources = newest(&crate_dir.join("src"));
    let manifest = std::fs::metadata(crate_dir.join("Cargo.toml"))
        .and_then(|m| m.modified())
        .ok();
    sources.max(manifest).is_none_or(|t| t <= built)
}

fn build_binary(package: &str, bin: &str) -> PathBuf {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = Command::new(cargo)
        .current_dir(crate::fixtures::workspace_dir())
        .args([
            "build",
            "-p",
            package,
            "--bin",
            bin,
            "--message-format=json",
        ])
        .output()
        .expect("running cargo build");
    assert!(
        out.status.success(),
        "cargo build -p {package} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Ok(msg) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if msg["reason"] == "compiler-artifact"
            && msg["target"]["name"] == bin
            && let Some(exe) = msg["executable"].as_str()
        {
            return PathBuf::from(exe);
        }
    }
    panic!("cargo build -p {package} reported no executable for {bin}");
}
