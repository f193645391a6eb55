//! Where the shared inputs of tests and benchmarks live, for both crates: the real fixtures
//! (`$BIOMAMBA_FIXTURES`, default `<workspace>/../shared/fixtures`), the golden models
//! (`$BIOMAMBA_GOLDEN`, default `<workspace>/../shared/golden`) and our own sample data
//! (`<workspace>/data/sample`). The files are not part of the repository; callers print SKIP
//! when what they need is absent.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// The workspace root (the directory of the top-level `Cargo.toml`).
pub fn workspace_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// `$BIOMAMBA_FIXTURES`, else `<workspace>/../shared/fixtures` (it may not exist).
pub fn fixtures_dir() -> PathBuf {
    std::env::var_os("BIOMAMBA_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_dir().join("../shared/fixtures"))
}

/// `$BIOMAMBA_GOLDEN`, else `<workspace>/../shared/golden` (it may not exist).
pub fn golden_dir() -> PathBuf {
    std::env::var_os("BIOMAMBA_GOLDEN")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_dir().join("../shared/golden"))
}

/// `<workspace>/data/sample`: the sample inputs committed with the project.
pub fn sample_dir() -> PathBuf {
    workspace_dir().join("data/sample")
}

/// `<workspace>/configs`: the run configurations the justfile recipes use.
pub fn configs_dir() -> PathBuf {
    workspace_dir().join("configs")
}

/// The names of the `*.toml` files in [`configs_dir`], sorted.
pub fn config_files() -> io::Result<Vec<String>> {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(configs_dir())? {
        let name = entry?.file_name().to_string_lossy().into_owned();
        if name.ends_with(".toml") {
            names.push(name);
        }
    }
    names.sort();
    Ok(names)
}

/// The fixtures directory if every one of `needed` (relative paths) exists in it.
pub fn fixtures_with(needed: &[&str]) -> Option<PathBuf> {
    let dir = fixtures_dir();
    needed.iter().all(|p| dir.join(p).exists()).then_some(dir)
}

/// Every file below `dir` (relative path → modification time and bytes), to check that a
/// re-run rewrote nothing or produced the same bytes.
pub fn snapshot(dir: &Path) -> io::Result<BTreeMap<PathBuf, (SystemTime, Vec<u8>)>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d)? {
            let path = entry?.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let modified = std::fs::metadata(&path)?.modified()?;
                let rel = path.strip_prefix(dir).unwrap_or(&path).to_path_buf();
                out.insert(rel, (modified, std::fs::read(&path)?));
            }
        }
    }
    Ok(out)
}
