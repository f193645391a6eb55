//! Checkpoints and the resumable cursor of a run directory.
//!
//! Layout of `RUN_DIR`:
//! - `state.sled` — the cursor (sled): where the run is and which checkpoint is the last complete one.
//! - `checkpoints/step-NNNNNNNN/` — one directory per checkpoint: any files the trainer puts there
//!   plus `checksums.json` (xxh3-64 and size of every other file), written last.
//!
//! Protocol: a checkpoint is written into a hidden temporary directory, every file fsynced, then
//! renamed into place (`schemas::atomic::commit_dir`); only then is the cursor updated in one sled
//! transaction and flushed. A kill at any instant leaves either the old cursor (pointing to an
//! older complete checkpoint; the new directory, if renamed, is simply rewritten identically) or
//! the new one. On resume a checkpoint failing its checksums is reported and the previous used.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail, ensure};
use serde::{Deserialize, Serialize};
use xxhash_rust::xxh3::xxh3_64;

use crate::train::data::MixState;

pub const CHECKSUMS_FILE: &str = "checksums.json";
pub const CHECKPOINTS_DIR: &str = "checkpoints";
pub const CURSOR_DB: &str = "state.sled";
/// Test hook: milliseconds to sleep in the middle of writing a checkpoint (after some files are
/// written, before the checksums and the rename), so a test can kill the process exactly there.
pub const PAUSE_ENV: &str = "BIOMAMBA_TEST_PAUSE_IN_CHECKPOINT";
/// Printed to stderr when pausing under [`PAUSE_ENV`].
pub const PAUSE_MARKER: &str = "checkpoint-write-paused";
/// Test hook: milliseconds to sleep after a checkpoint is renamed into place and before the
/// cursor points to it (`train::session::save_checkpoint`), so a test can kill it there.
pub const PAUSE_BEFORE_CURSOR_ENV: &str = "BIOMAMBA_TEST_PAUSE_BEFORE_CURSOR";
/// Printed to stderr when pausing under [`PAUSE_BEFORE_CURSOR_ENV`].
pub const PAUSE_BEFORE_CURSOR_MARKER: &str = "checkpoint-renamed-cursor-not-moved";

/// The test hooks: when `env` holds a number of milliseconds, print `marker` and `what` to
/// stderr and sleep that long (a test kills the process meanwhile).
pub fn test_pause(env: &str, marker: &str, what: &Path) {
    if let Some(ms) = std::env::var(env).ok().and_then(|s| s.parse::<u64>().ok()) {
        eprintln!("{marker} {}", what.display());
        std::thread::sleep(std::time::Duration::from_millis(ms));
    }
}

/// The resumable cursor: everything needed to continue a run, pointing at its checkpoint.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor {
    pub epoch: u64,
    /// Sequences of epoch `epoch`'s permutation already consumed.
    pub position: u64,
    pub seed: u64,
    /// Fingerprint of the training (and validation) data.
    pub data_fingerprint: String,
    /// Optimizer steps completed.
    pub step: u64,
    pub tokens_seen: u64,
    /// Directory name of the last complete checkpoint (`step-NNNNNNNN`).
    pub checkpoint: String,
    /// With several domains (`[pretrain.mix]`): each one's position and counts (stored as JSON
    /// under `mix`; absent for a single domain, whose position is `epoch`/`position`).
    pub mix: Option<MixState>,
}

const CURSOR_KEYS: [&str; 8] = [
    "epoch",
    "position",
    "seed",
    "data_fingerprint",
    "step",
    "tokens_seen",
    "checkpoint",
    "mix",
];

/// The sled database holding the [`Cursor`].
pub struct CursorStore {
    db: sled::Db,
    path: PathBuf,
}

impl CursorStore {
    pub fn open(run_dir: &Path) -> Result<Self> {
        let path = run_dir.join(CURSOR_DB);
        let db = sled::open(&path).with_context(|| {
            format!(
                "opening cursor database {} (is another trainer using this run directory?)",
                path.display()
            )
        })?;
        Ok(Self { db, path })
    }

    /// The stored cursor; `None` for a new run.
    pub fn load(&self) -> Result<Option<Cursor>> {
        let mut vals = BTreeMap::new();
        for k in CURSOR_KEYS {
            if let Some(v) = self
                .db
                .get(k)
                .with_context(|| format!("reading `{k}` from {}", self.path.display()))?
            {
                vals.insert(k, v);
            }
        }
        if vals.is_empty() {
            return Ok(None);
        }
        let get = |k: &str| -> Result<&[u8]> {
            vals.get(k).map(|v| v.as_ref()).with_context(|| {
                format!(
                    "cursor database {} lacks `{k}` (it was not written by this trainer)",
                    self.path.display()
                )
            })
        };
        let num = |k: &str| -> Result<u64> {
            let b = get(k)?;
            let arr: [u8; 8] = b.try_into().with_context(|| {
                format!(
                    "{}: `{k}` is {} bytes, expected an 8-byte integer",
                    self.path.display(),
                    b.len()
                )
            })?;
            Ok(u64::from_le_bytes(arr))
        };
        let text = |k: &str| -> Result<String> {
            String::from_utf8(get(k)?.to_vec())
                .with_context(|| format!("{}: `{k}` is not UTF-8", self.path.display()))
        };
        Ok(Some(Cursor {
            epoch: num("epoch")?,
            position: num("position")?,
            seed: num("seed")?,
            data_fingerprint: text("data_fingerprint")?,
            step: num("step")?,
            tokens_seen: num("tokens_seen")?,
            checkpoint: text("checkpoint")?,
            mix: match vals.get("mix") {
                Some(v) => Some(serde_json::from_slice(v).with_context(|| {
                    format!("{}: `mix` is not a mixture state", self.path.display())
                })?),
                None => None,
            },
        }))
    }

    /// Store `c` in one transaction and flush it to disk.
    pub fn commit(&self, c: &Cursor) -> Result<()> {
        let mix = c.mix.as_ref().map(serde_json::to_vec).transpose()?;
        let res: sled::transaction::TransactionResult<(), ()> = self.db.transaction(|tx| {
            tx.insert("epoch", &c.epoch.to_le_bytes())?;
            tx.insert("position", &c.position.to_le_bytes())?;
            tx.insert("seed", &c.seed.to_le_bytes())?;
            tx.insert("data_fingerprint", c.data_fingerprint.as_bytes())?;
            tx.insert("step", &c.step.to_le_bytes())?;
            tx.insert("tokens_seen", &c.tokens_seen.to_le_bytes())?;
            tx.insert("checkpoint", c.checkpoint.as_bytes())?;
            match &mix {
                Some(m) => tx.insert("mix", m.as_slice())?,
                None => tx.remove("mix")?,
            };
            Ok(())
        });
        res.map_err(|e| anyhow::anyhow!("updating cursor in {}: {e:?}", self.path.display()))?;
        self.db
            .flush()
            .with_context(|| format!("flushing {}", self.path.display()))?;
        Ok(())
    }
}

/// Name of the checkpoint directory of optimizer step `step`.
pub fn checkpoint_name(step: u64) -> String {
    format!("step-{step:08}")
}

fn parse_checkpoint_name(name: &str) -> Option<u64> {
    let digits = name.strip_prefix("step-")?;
    (digits.len() == 8 && digits.bytes().all(|b| b.is_ascii_digit()))
        .then(|| digits.parse().ok())
        .flatten()
}

/// Complete checkpoints under `run_dir/checkpoints` as (step, path), oldest first.
pub fn list_checkpoints(run_dir: &Path) -> Result<Vec<(u64, PathBuf)>> {
    let dir = run_dir.join(CHECKPOINTS_DIR);
    let Ok(entries) = fs::read_dir(&dir) else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for e in entries {
        let e = e.with_context(|| format!("listing {}", dir.display()))?;
        if let Some(step) = parse_checkpoint_name(&e.file_name().to_string_lossy())
            && e.path().is_dir()
        {
            out.push((step, e.path()));
        }
    }
    out.sort();
    Ok(out)
}

#[derive(Serialize, Deserialize)]
struct FileSum {
    size: u64,
    xxh3: String,
}

/// Write a checkpoint directory holding `files` (name, bytes), atomically. Returns its path.
pub fn write_checkpoint(run_dir: &Path, step: u64, files: &[(&str, Vec<u8>)]) -> Result<PathBuf> {
    let root = run_dir.join(CHECKPOINTS_DIR);
    fs::create_dir_all(&root).with_context(|| format!("creating {}", root.display()))?;
    let final_dir = root.join(checkpoint_name(step));
    let temp_dir = schemas::atomic::temp_path_for(&final_dir);
    fs::create_dir(&temp_dir).with_context(|| format!("creating {}", temp_dir.display()))?;
    let mut sums = BTreeMap::new();
    for (i, (name, bytes)) in files.iter().enumerate() {
        ensure!(*name != CHECKSUMS_FILE, "`{CHECKSUMS_FILE}` is reserved");
        let path = temp_dir.join(name);
        let mut f =
            fs::File::create(&path).with_context(|| format!("creating {}", path.display()))?;
        f.write_all(bytes)
            .with_context(|| format!("writing {}", path.display()))?;
        sums.insert(
            name.to_string(),
            FileSum {
                size: bytes.len() as u64,
                xxh3: format!("{:016x}", xxh3_64(bytes)),
            },
        );
        if i == 0 {
            test_pause(PAUSE_ENV, PAUSE_MARKER, &temp_dir);
        }
    }
    let sums_json = serde_json::to_vec_pretty(&sums)?;
    fs::write(temp_dir.join(CHECKSUMS_FILE), sums_json)
        .with_context(|| format!("writing checksums in {}", temp_dir.display()))?;
    schemas::atomic::commit_dir(&temp_dir, &final_dir)?;
    Ok(final_dir)
}

/// Check every file of a checkpoint against its `checksums.json`.
pub fn verify_checkpoint(dir: &Path) -> Result<()> {
    let sums_path = dir.join(CHECKSUMS_FILE);
    let text = fs::read(&sums_path).with_context(|| format!("reading {}", sums_path.display()))?;
    let sums: BTreeMap<String, FileSum> = serde_json::from_slice(&text)
        .with_context(|| format!("parsing {}", sums_path.display()))?;
    ensure!(!sums.is_empty(), "{} lists no files", sums_path.display());
    for (name, sum) in &sums {
        let path = dir.join(name);
        let bytes = fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
        if bytes.len() as u64 != sum.size {
            bail!(
                "{}: {} bytes, checksums.json says {}",
                path.display(),
                bytes.len(),
                sum.size
            );
        }
        let h = format!("{:016x}", xxh3_64(&bytes));
        if h != sum.xxh3 {
            bail!(
                "{}: xxh3 {h}, checksums.json says {}",
                path.display(),
                sum.xxh3
            );
        }
    }
    Ok(())
}

/// A checkpoint's step and path, if any, and the warnings about checkpoints passed over.
pub type NewestValid = (Option<(u64, PathBuf)>, Vec<String>);

/// The newest checkpoint at or before `cursor_step` that passes its checksums. Failing ones are
/// reported (returned as warnings) and renamed to `*.corrupt` so they are never picked again.
pub fn newest_valid_checkpoint(run_dir: &Path, cursor_step: u64) -> Result<NewestValid> {
    let mut warnings = Vec::new();
    for (step, path) in list_checkpoints(run_dir)?.into_iter().rev() {
        if step > cursor_step {
            continue;
        }
        match verify_checkpoint(&path) {
            Ok(()) => return Ok((Some((step, path)), warnings)),
            Err(e) => {
                let aside = path.with_extension("corrupt");
                warnings.push(format!(
                    "checkpoint {} fails its checksum ({e:#}); moved to {} and falling back to the previous one",
                    path.display(),
                    aside.display()
                ));
                if aside.exists() {
                    fs::remove_dir_all(&aside)
                        .with_context(|| format!("removing {}", aside.display()))?;
                }
                fs::rename(&path, &aside)
                    .with_context(|| format!("moving aside {}", path.display()))?;
            }
        }
    }
    Ok((None, warnings))
}

/// Keep the newest `keep` checkpoints at or before `current` (never `current` itself); remove
/// older ones. Checkpoints after `current` (from a run killed before its cursor moved) are
/// removed too: they will be rewritten identically.
pub fn prune_checkpoints(run_dir: &Path, current: u64, keep: usize) -> Result<()> {
    let all = list_checkpoints(run_dir)?;
    let mut older: Vec<_> = all.iter().filter(|(s, _)| *s <= current).collect();
    older.reverse();
    for (i, (step, path)) in older.iter().enumerate() {
        if i >= keep.max(1) && *step != current {
            fs::remove_dir_all(path).with_context(|| format!("removing {}", path.display()))?;
        }
    }
    for (step, path) in &all {
        if *step > current {
            fs::remove_dir_all(path).with_context(|| format!("removing {}", path.display()))?;
        }
    }
    schemas::atomic::remove_stale_temps(&run_dir.join(CHECKPOINTS_DIR))?;
    Ok(())
}

/// The newest valid checkpoint of a run (following the cursor, falling back past corrupt ones).
pub fn latest_checkpoint(run_dir: &Path) -> Result<PathBuf> {
    ensure!(
        run_dir.join(CURSOR_DB).exists(),
        "{} is not a run directory (no {})",
        run_dir.display(),
        CURSOR_DB
    );
    let store = CursorStore::open(run_dir)?;
    let cursor = store
        .load()?
        .with_context(|| format!("{} has no cursor yet", run_dir.display()))?;
    let (found, warnings) = newest_valid_checkpoint(run_dir, cursor.step)?;
    for w in warnings {
        tracing::warn!("{w}");
    }
    found
        .map(|(_, p)| p)
        .with_context(|| format!("{} has no valid checkpoint", run_dir.display()))
}

/// The HF model directory (`config.json` + `model.safetensors`) that `p` names: `p` itself,
/// its `model/` or `export/`, or — for a `trainer pretrain` run directory — its newest valid
/// checkpoint.
pub fn model_dir(p: &Path) -> Result<PathBuf> {
    for c in [p.to_path_buf(), p.join("model"), p.join("export")] {
        if c.join("config.json").is_file() && c.join("model.safetensors").is_file() {
            return Ok(c);
        }
    }
    latest_checkpoint(p).with_context(|| {
        format!(
            "{}: no HF model (config.json + model.safetensors) here, in model/ or export/, \
             and not a pretraining run directory",
            p.display()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_roundtrips_through_sled() {
        let dir = tempfile::tempdir().unwrap();
        let store = CursorStore::open(dir.path()).unwrap();
        assert_eq!(store.load().unwrap(), None);
        let c = Cursor {
            epoch: 2,
            position: 17,
            seed: 9,
            data_fingerprint: "shards:abc".into(),
            step: 40,
            tokens_seen: 40 * 512,
            checkpoint: checkpoint_name(40),
            mix: None,
        };
        store.commit(&c).unwrap();
        drop(store);
        let store = CursorStore::open(dir.path()).unwrap();
        assert_eq!(store.load().unwrap(), Some(c.clone()));
        // The mixture's per-domain state goes into the same transaction, and out again.
        let mut mixed = c.clone();
        let d = crate::train::data::DomainCursor {
            position: crate::train::data::DataPosition {
                epoch: 1,
                position: 3,
            },
            sequences: 12,
            tokens: 900,
        };
        mixed.mix = Some([("c4".to_string(), d.clone()), ("pubmed".into(), d)].into());
        store.commit(&mixed).unwrap();
        assert_eq!(store.load().unwrap(), Some(mixed));
        store.commit(&c).unwrap();
        assert_eq!(store.load().unwrap(), Some(c));
    }

    #[test]
    fn corrupt_newest_checkpoint_falls_back() {
        let dir = tempfile::tempdir().unwrap();
        let run = dir.path();
        for s in [5, 10, 15] {
            write_checkpoint(
                run,
                s,
                &[("a.bin", vec![s as u8; 100]), ("b.json", b"{}".to_vec())],
            )
            .unwrap();
        }
        let p15 = run.join(CHECKPOINTS_DIR).join(checkpoint_name(15));
        let mut bytes = fs::read(p15.join("a.bin")).unwrap();
        bytes[50] ^= 1;
        fs::write(p15.join("a.bin"), bytes).unwrap();
        let (found, warnings) = newest_valid_checkpoint(run, 15).unwrap();
        assert_eq!(found.unwrap().0, 10);
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(warnings[0].contains("step-00000015"), "{warnings:?}");
        prune_checkpoints(run, 10, 1).unwrap();
        let left: Vec<u64> = list_checkpoints(run).unwrap().iter().map(|c| c.0).collect();
        assert_eq!(left, vec![10]);
    }
}
