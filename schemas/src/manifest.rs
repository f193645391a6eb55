//! Stage manifests: how a stage's outputs were made, so a re-run can prove they are still valid.
//!
//! A stage is a set of *units* (one per input file for per-file stages, a single unit otherwise).
//! Each unit records the fingerprint it was built under — hash(stage, code and schema version,
//! the config fields it uses, its inputs' content hashes) — and size, mtime and content hash of
//! every input and output. Paths are stored relative to the data directory.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Read;
use std::path::Path;
use std::time::UNIX_EPOCH;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use xxhash_rust::xxh3::Xxh3;

/// Name of the content hash used throughout manifests.
pub const HASH_ALGO: &str = "xxh3-128";

/// A file as a manifest records it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileRecord {
    /// Path relative to the data directory (or absolute for files outside it).
    pub path: String,
    pub size: u64,
    /// Modification time in nanoseconds since the Unix epoch.
    pub mtime_ns: u128,
    /// `xxh3-128` of the content, lowercase hex.
    pub hash: String,
}

/// One unit of work of a stage.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct UnitRecord {
    pub fingerprint: String,
    pub inputs: Vec<FileRecord>,
    pub outputs: Vec<FileRecord>,
    /// Stage-specific counts for this unit (records, failures, tokens, ...).
    #[serde(default)]
    pub stats: serde_json::Value,
}

/// The manifest a finished stage writes (JSON, under `DATA/manifests/STAGE.json`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct StageManifest {
    pub stage: String,
    pub code_version: u32,
    pub schema_version: u32,
    /// The config fields this stage uses, as it last ran.
    pub config: serde_json::Value,
    /// Hash of stage, versions and config; each unit's fingerprint extends it with its inputs.
    pub config_fingerprint: String,
    pub units: BTreeMap<String, UnitRecord>,
    /// Stage-level totals and facts (split counts, decontamination list, ...).
    #[serde(default)]
    pub summary: serde_json::Value,
    /// The effective settings of the run that last wrote the manifest: its config section with the
    /// command's flags applied (paths relative to the data directory when inside it). `pipeline
    /// status` judges against them when no config file is given. Null for manifests of older runs.
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub settings: serde_json::Value,
}

impl StageManifest {
    pub fn load(path: &Path) -> Result<Option<Self>> {
        match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .with_context(|| format!("parsing stage manifest {}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("reading stage manifest {}", path.display())),
        }
    }

    pub fn save(&self, path: &Path) -> Result<()> {
        let mut bytes = serde_json::to_vec_pretty(self)?;
        bytes.push(b'\n');
        crate::atomic::write_atomic(path, &bytes)
    }
}

/// Incremental hash over labelled fields; length-prefixed so fields cannot run into each other.
#[derive(Default)]
pub struct Fingerprint(Xxh3);

impl Fingerprint {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn str(mut self, s: &str) -> Self {
        self.0.update(&(s.len() as u64).to_le_bytes());
        self.0.update(s.as_bytes());
        self
    }
    pub fn u64(mut self, v: u64) -> Self {
        self.0.update(&v.to_le_bytes());
        self
    }
    /// Hash a serializable value through its canonical JSON (struct field order, sorted maps).
    pub fn json<T: Serialize>(self, value: &T) -> Self {
        let text = serde_json::to_string(value).expect("config values serialize to JSON");
        self.str(&text)
    }
    pub fn finish(&self) -> String {
        format!("{:032x}", self.0.digest128())
    }
}

/// Content hash of a byte slice.
pub fn hash_bytes(bytes: &[u8]) -> String {
    format!("{:032x}", xxhash_rust::xxh3::xxh3_128(bytes))
}

/// Content hash of a file, streamed.
pub fn hash_file(path: &Path) -> Result<String> {
    let mut file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut hasher = Xxh3::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file
            .read(&mut buf)
            .with_context(|| format!("reading {}", path.display()))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(format!("{:032x}", hasher.digest128()))
}

/// Size and modification time of a file.
pub fn stat(path: &Path) -> Result<(u64, u128)> {
    let meta = std::fs::metadata(path)
        .with_context(|| format!("reading metadata of {}", path.display()))?;
    let mtime = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    Ok((meta.len(), mtime))
}

/// Path as recorded in a manifest: relative to `base` when inside it.
pub fn relative_path(base: &Path, path: &Path) -> String {
    path.strip_prefix(base)
        .unwrap_or(path)
        .to_string_lossy()
        .replace('\\', "/")
}

/// Record a file: size, mtime and content hash. When `previous` describes the same size and mtime,
/// its hash is reused instead of re-reading the file.
pub fn record_file(base: &Path, path: &Path, previous: Option<&FileRecord>) -> Result<FileRecord> {
    let (size, mtime_ns) = stat(path)?;
    let rel = relative_path(base, path);
    let hash = match previous {
        Some(p) if p.path == rel && p.size == size && p.mtime_ns == mtime_ns => p.hash.clone(),
        _ => hash_file(path)?,
    };
    Ok(FileRecord {
        path: rel,
        size,
        mtime_ns,
        hash,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_separates_fields() {
        assert_ne!(
            Fingerprint::new().str("ab").str("c").finish(),
            Fingerprint::new().str("a").str("bc").finish()
        );
        assert_eq!(
            Fingerprint::new().str("x").u64(3).finish(),
            Fingerprint::new().str("x").u64(3).finish()
        );
    }
}
