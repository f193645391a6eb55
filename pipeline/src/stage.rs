//! The cached stage runner.
//!
//! A stage is a set of units, each with its input files. A unit is *cached* when the manifest holds it
//! with the same fingerprint, its inputs have the recorded size and mtime, and its outputs are present
//! with the recorded size and mtime; then no work is done and nothing is rewritten. Otherwise the unit
//! runs, writing every output through [`schemas::AtomicFile`], and [`Stage::record`] stores the new
//! state in the manifest immediately (atomically), so a killed run keeps the units it finished.
//!
//! The fingerprint is hash(stage, code version, schema version, the config fields the stage uses,
//! input content hashes). A touched input (new mtime) re-runs its unit; when the re-run produces
//! byte-identical outputs, the old files are kept as they were, so later stages stay cached.
//!
//! Runs of one stage may go on at the same time in several processes (the tasks of a job array,
//! each with `--shard i/n`): every change to the manifest re-reads it under a lock file
//! (`manifests/.STAGE.lock`) and applies only its own change, so no run loses another's units.
//!
//! The manifest also records the run's effective settings (config section with the command's flags
//! applied, see [`Stage::with_settings`]); `pipeline status` judges against them when no config
//! file is given ([`status_settings`]).

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Mutex;

use anyhow::{Context, Result};
use schemas::manifest::{Fingerprint, record_file, stat};
use schemas::{FileRecord, StageManifest, UnitRecord};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::Ctx;

/// `--shard i/n`: every n-th input (file or part, in canonical order) starting at the i-th
/// (0-based), for one task of a job array.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shard {
    pub index: usize,
    pub count: usize,
}

impl Shard {
    /// The items of this shard: positions `index`, `index + count`, ….
    pub fn select<T: Clone>(&self, all: &[T]) -> Vec<T> {
        all.iter()
            .enumerate()
            .filter(|(i, _)| i % self.count == self.index)
            .map(|(_, x)| x.clone())
            .collect()
    }
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

impl FromStr for Shard {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let (i, n) = s
            .split_once('/')
            .ok_or_else(|| format!("--shard {s:?}: expected i/n, e.g. 0/4"))?;
        let index: usize = i
            .trim()
            .parse()
            .map_err(|_| format!("--shard {s:?}: i is not a number"))?;
        let count: usize = n
            .trim()
            .parse()
            .map_err(|_| format!("--shard {s:?}: n is not a number"))?;
        if count == 0 || index >= count {
            return Err(format!("--shard {s:?}: need 0 <= i < n"));
        }
        Ok(Self { index, count })
    }
}

/// A path as run settings record it: relative to the data directory when inside it, else absolute
/// (so a path given relative to the working directory still means the same file later).
pub fn settings_path(root: &Path, path: &Path) -> PathBuf {
    match path.strip_prefix(root) {
        Ok(rel) if !root.as_os_str().is_empty() => rel.to_path_buf(),
        _ => std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf()),
    }
}

/// A path of recorded settings back as a path to open: relative ones are inside the data directory.
pub fn in_data_dir(root: &Path, path: &Path) -> PathBuf {
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        root.join(path)
    }
}

/// The settings a stage's status is judged against: with a config file given (`--config`), those
/// `from_config` built from it; without one, the settings the stage last ran with, as its manifest
/// records them (so a stage run with flags only is not shown as stale), else `from_config`.
pub fn status_settings<T: DeserializeOwned>(ctx: &Ctx, stage: &str, from_config: T) -> Result<T> {
    if ctx.config.source.is_some() {
        return Ok(from_config);
    }
    let recorded = StageManifest::load(&ctx.layout.manifest(stage))?
        .map(|m| m.settings)
        .filter(|s| !s.is_null());
    match recorded.map(serde_json::from_value::<T>) {
        Some(Ok(settings)) => Ok(settings),
        Some(Err(e)) => {
            tracing::warn!(
                "{}: recorded settings unreadable ({e}); judging {stage} against the defaults",
                ctx.layout.manifest(stage).display()
            );
            Ok(from_config)
        }
        None => Ok(from_config),
    }
}

/// An exclusive lock on a stage's manifest, held while it is re-read, changed and saved. Where the
/// file system cannot lock, runs go on unlocked (as before locking existed).
struct ManifestLock(Option<std::fs::File>);

impl ManifestLock {
    fn acquire(path: &Path) -> Self {
        if let Some(dir) = path.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path);
        match file {
            Ok(f) => match f.lock() {
                Ok(()) => Self(Some(f)),
                Err(e) => {
                    tracing::debug!("cannot lock {}: {e}; going on unlocked", path.display());
                    Self(None)
                }
            },
            Err(e) => {
                tracing::debug!("cannot open {}: {e}; going on unlocked", path.display());
                Self(None)
            }
        }
    }
}

impl Drop for ManifestLock {
    fn drop(&mut self) {
        if let Some(f) = &self.0 {
            let _ = f.unlock();
        }
    }
}

/// Why a unit must run, or that it need not.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Plan {
    Cached,
    Run(String),
}

impl Plan {
    pub fn is_cached(&self) -> bool {
        matches!(self, Plan::Cached)
    }
}

pub struct Stage {
    name: String,
    data_dir: PathBuf,
    manifest_path: PathBuf,
    lock_path: PathBuf,
    force: bool,
    manifest: Mutex<StageManifest>,
}

impl Stage {
    /// Open stage `name`'s manifest under `data_dir/manifests/`. `config` is the part of the config the
    /// stage uses: changing any of it changes every unit's fingerprint.
    pub fn open(
        data_dir: &Path,
        name: &str,
        code_version: u32,
        schema_version: u32,
        config: &impl Serialize,
        force: bool,
    ) -> Result<Self> {
        let layout = schemas::Layout::new(data_dir);
        let manifest_path = layout.manifest(name);
        let lock_path = layout.manifest_lock(name);
        let config = serde_json::to_value(config).context("serializing stage config")?;
        let config_fingerprint = Fingerprint::new()
            .str(name)
            .u64(code_version as u64)
            .u64(schema_version as u64)
            .json(&config)
            .finish();
        let previous = StageManifest::load(&manifest_path)?;
        let units = previous.map(|m| m.units).unwrap_or_default();
        let manifest = StageManifest {
            stage: name.to_string(),
            code_version,
            schema_version,
            config,
            config_fingerprint,
            units,
            summary: serde_json::Value::Null,
            settings: serde_json::Value::Null,
        };
        Ok(Self {
            name: name.to_string(),
            data_dir: data_dir.to_path_buf(),
            manifest_path,
            lock_path,
            force,
            manifest: Mutex::new(manifest),
        })
    }

    /// Record `settings` (the run's effective settings: its config section with the command's flags
    /// applied, paths as [`settings_path`] writes them) with every save of the manifest.
    pub fn with_settings(self, settings: &impl Serialize) -> Result<Self> {
        let value = serde_json::to_value(settings).context("serializing stage settings")?;
        self.manifest.lock().expect("manifest lock").settings = value;
        Ok(self)
    }

    /// Apply `change` to the manifest and save it. Under the stage's lock file the manifest is
    /// first re-read from disk, so units that runs in other processes recorded since this one
    /// opened it are kept (this run's own changes were all saved as they happened).
    fn update<T>(&self, change: impl FnOnce(&mut StageManifest) -> T) -> Result<T> {
        let mut m = self.manifest.lock().expect("manifest lock");
        let _lock = ManifestLock::acquire(&self.lock_path);
        if let Some(disk) = StageManifest::load(&self.manifest_path)? {
            m.units = disk.units;
        }
        let out = change(&mut m);
        m.save(&self.manifest_path)?;
        Ok(out)
    }

    pub fn name(&self) -> &str {
        &self.name
    }
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// Record an input file, reusing the manifest's hash when size and mtime are unchanged.
    pub fn input(&self, key: &str, path: &Path) -> Result<FileRecord> {
        let m = self.manifest.lock().expect("manifest lock");
        let rel = schemas::manifest::relative_path(&self.data_dir, path);
        let previous = m
            .units
            .get(key)
            .and_then(|u| u.inputs.iter().find(|f| f.path == rel));
        record_file(&self.data_dir, path, previous)
    }

    /// Inputs of a unit, in the given order.
    pub fn inputs(&self, key: &str, paths: &[PathBuf]) -> Result<Vec<FileRecord>> {
        paths.iter().map(|p| self.input(key, p)).collect()
    }

    /// The fingerprint a unit with these inputs has under the current config.
    pub fn fingerprint(&self, inputs: &[FileRecord]) -> String {
        let m = self.manifest.lock().expect("manifest lock");
        let mut fp = Fingerprint::new().str(&m.config_fingerprint);
        for input in inputs {
            fp = fp.str(&input.path).str(&input.hash);
        }
        fp.finish()
    }

    /// Decide whether unit `key` must run.
    pub fn plan(&self, key: &str, inputs: &[FileRecord]) -> Result<Plan> {
        if self.force {
            return Ok(Plan::Run("--force".into()));
        }
        let fingerprint = self.fingerprint(inputs);
        let m = self.manifest.lock().expect("manifest lock");
        let Some(unit) = m.units.get(key) else {
            return Ok(Plan::Run("not built yet".into()));
        };
        if unit.fingerprint != fingerprint {
            return Ok(Plan::Run("inputs or config changed".into()));
        }
        for (now, then) in inputs.iter().zip(&unit.inputs) {
            if (now.size, now.mtime_ns) != (then.size, then.mtime_ns) {
                return Ok(Plan::Run(format!("input {} touched", now.path)));
            }
        }
        if inputs.len() != unit.inputs.len() {
            return Ok(Plan::Run("inputs changed".into()));
        }
        for out in &unit.outputs {
            let path = self.data_dir.join(&out.path);
            match stat(&path) {
                Ok((size, mtime)) if size == out.size && mtime == out.mtime_ns => {}
                Ok(_) => return Ok(Plan::Run(format!("output {} modified", out.path))),
                Err(_) => return Ok(Plan::Run(format!("output {} missing", out.path))),
            }
        }
        Ok(Plan::Cached)
    }

    /// The outputs recorded for a unit (when it is cached, these are valid).
    pub fn recorded(&self, key: &str) -> Option<UnitRecord> {
        self.manifest
            .lock()
            .expect("manifest lock")
            .units
            .get(key)
            .cloned()
    }

    /// Record a finished unit: its inputs, its (already committed) output files and its counts,
    /// and save the manifest at once. Write outputs with [`schemas::AtomicFile`] and commit them with
    /// `commit_unless_identical` so a re-run that produces the same bytes keeps the old file.
    pub fn record(
        &self,
        key: &str,
        inputs: Vec<FileRecord>,
        outputs: &[PathBuf],
        stats: serde_json::Value,
    ) -> Result<()> {
        let fingerprint = self.fingerprint(&inputs);
        let outputs = outputs
            .iter()
            .map(|p| record_file(&self.data_dir, p, None))
            .collect::<Result<Vec<_>>>()?;
        let unit = UnitRecord {
            fingerprint,
            inputs,
            outputs,
            stats,
        };
        self.update(|m| {
            m.units.insert(key.to_string(), unit);
        })
    }

    /// Drop units that no longer correspond to an input (their outputs are removed).
    pub fn retain_units(&self, keep: &dyn Fn(&str) -> bool) -> Result<Vec<String>> {
        let any_gone = {
            let m = self.manifest.lock().expect("manifest lock");
            m.units.keys().any(|k| !keep(k))
        };
        if !any_gone {
            return Ok(Vec::new());
        }
        self.update(|m| {
            let gone: Vec<String> = m.units.keys().filter(|k| !keep(k)).cloned().collect();
            for key in &gone {
                if let Some(unit) = m.units.remove(key) {
                    for out in unit.outputs {
                        let _ = std::fs::remove_file(self.data_dir.join(&out.path));
                    }
                }
            }
            gone
        })
    }

    /// Set the stage summary and save the manifest.
    pub fn finish(&self, summary: serde_json::Value) -> Result<StageManifest> {
        self.update(|m| {
            m.summary = summary;
            m.clone()
        })
    }

    pub fn manifest(&self) -> StageManifest {
        self.manifest.lock().expect("manifest lock").clone()
    }

    /// The sum of the numeric stat `key` over the recorded units (for status notes).
    pub fn stat_total(&self, key: &str) -> u64 {
        let m = self.manifest.lock().expect("manifest lock");
        m.units
            .values()
            .filter_map(|u| u.stats.get(key).and_then(|v| v.as_u64()))
            .sum()
    }
}

/// How many units of a stage are cached, stale (built, but inputs/config/outputs changed) or missing.
#[derive(Clone, Debug, Default, Serialize)]
pub struct StageStatus {
    pub stage: String,
    pub cached: usize,
    pub stale: usize,
    pub missing: usize,
    /// Extra facts for the status table (e.g. bytes on disk, rows).
    pub note: String,
}

impl StageStatus {
    pub fn state(&self) -> &'static str {
        match (self.cached, self.stale, self.missing) {
            (0, 0, 0) => "no inputs",
            (_, 0, 0) => "cached",
            (_, s, _) if s > 0 => "stale",
            _ => "missing",
        }
    }
}

impl Stage {
    /// Classify the units a stage would run now (`key`, input paths) without running anything.
    pub fn status(&self, units: &[(String, Vec<PathBuf>)]) -> Result<StageStatus> {
        let mut status = StageStatus {
            stage: self.name.clone(),
            ..Default::default()
        };
        for (key, paths) in units {
            let known = self.recorded(key).is_some();
            let inputs = self.inputs(key, paths)?;
            match self.plan(key, &inputs)? {
                Plan::Cached => status.cached += 1,
                Plan::Run(_) if known => status.stale += 1,
                Plan::Run(_) => status.missing += 1,
            }
        }
        Ok(status)
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    /// A toy per-file stage: each `in/*.txt` becomes `out/*.txt` upper-cased. Returns the keys it ran.
    fn run_toy(dir: &Path, suffix: &str, force: bool) -> Vec<String> {
        let stage = Stage::open(
            dir,
            "toy",
            1,
            1,
            &serde_json::json!({ "suffix": suffix }),
            force,
        )
        .unwrap();
        let mut ran = Vec::new();
        let mut names: Vec<_> = std::fs::read_dir(dir.join("in"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        names.sort();
        for input in names {
            let key = input.file_name().unwrap().to_string_lossy().into_owned();
            let inputs = stage.inputs(&key, std::slice::from_ref(&input)).unwrap();
            if let Plan::Run(_) = stage.plan(&key, &inputs).unwrap() {
                let out = dir.join("out").join(&key);
                let mut file = schemas::AtomicFile::create(&out).unwrap();
                let text = std::fs::read_to_string(&input).unwrap().to_uppercase() + suffix;
                file.write_all(text.as_bytes()).unwrap();
                file.commit_unless_identical().unwrap();
                stage
                    .record(&key, inputs, &[out], serde_json::json!({}))
                    .unwrap();
                ran.push(key);
            }
        }
        ran
    }

    fn mtimes(dir: &Path) -> Vec<(String, u128)> {
        let mut v: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| {
                let p = e.unwrap().path();
                (p.display().to_string(), stat(&p).unwrap().1)
            })
            .collect();
        v.sort();
        v
    }

    #[test]
    fn cached_rerun_does_nothing_and_touch_reruns_one_unit() {
        let tmp = std::env::temp_dir().join(format!("stage-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&tmp);
        std::fs::create_dir_all(tmp.join("in")).unwrap();
        for (name, text) in [("a.txt", "alpha"), ("b.txt", "beta"), ("c.txt", "gamma")] {
            std::fs::write(tmp.join("in").join(name), text).unwrap();
        }
        assert_eq!(run_toy(&tmp, "", false), ["a.txt", "b.txt", "c.txt"]);
        let before = mtimes(&tmp.join("out"));
        let manifest_before = std::fs::read(tmp.join("manifests/toy.json")).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));

        assert!(run_toy(&tmp, "", false).is_empty(), "second run is cached");
        assert_eq!(
            mtimes(&tmp.join("out")),
            before,
            "cached run rewrites nothing"
        );
        assert_eq!(
            std::fs::read(tmp.join("manifests/toy.json")).unwrap(),
            manifest_before
        );

        // Touching one input re-runs just that input; identical output keeps its old file.
        let b = tmp.join("in/b.txt");
        std::fs::File::options()
            .append(true)
            .open(&b)
            .unwrap()
            .set_modified(std::time::SystemTime::now())
            .unwrap();
        assert_eq!(run_toy(&tmp, "", false), ["b.txt"]);
        assert_eq!(mtimes(&tmp.join("out")), before, "same bytes, file kept");

        // Changing content re-runs that unit and replaces its output.
        std::fs::write(&b, "beta two").unwrap();
        assert_eq!(run_toy(&tmp, "", false), ["b.txt"]);
        assert_eq!(
            std::fs::read_to_string(tmp.join("out/b.txt")).unwrap(),
            "BETA TWO"
        );

        // A config change re-runs everything; --force too; a deleted output is rebuilt.
        assert_eq!(run_toy(&tmp, "!", false).len(), 3);
        assert_eq!(run_toy(&tmp, "!", true).len(), 3);
        std::fs::remove_file(tmp.join("out/c.txt")).unwrap();
        assert_eq!(run_toy(&tmp, "!", false), ["c.txt"]);

        let stage = Stage::open(
            &tmp,
            "toy",
            1,
            1,
            &serde_json::json!({ "suffix": "!" }),
            false,
        )
        .unwrap();
        let units: Vec<_> = ["a.txt", "b.txt", "c.txt"]
            .iter()
            .map(|k| (k.to_string(), vec![tmp.join("in").join(k)]))
            .collect();
        let status = stage.status(&units).unwrap();
        assert_eq!((status.cached, status.stale, status.missing), (3, 0, 0));
        std::fs::remove_dir_all(&tmp).unwrap();
    }

    /// Two runs of one stage at once (as two tasks of a job array, each its own process with its
    /// own copy of the manifest): each records its units, and neither loses the other's.
    #[test]
    fn concurrent_runs_keep_each_others_units() {
        let dir = tempfile::tempdir().unwrap();
        let open = || {
            Stage::open(dir.path(), "toy", 1, 1, &serde_json::json!({}), false)
                .unwrap()
                .with_settings(&serde_json::json!({"shard": "x"}))
                .unwrap()
        };
        let (a, b) = (open(), open());
        let input = dir.path().join("in.txt");
        std::fs::write(&input, "x").unwrap();
        for (stage, key) in [(&a, "a1"), (&b, "b1"), (&a, "a2"), (&b, "b2")] {
            let inputs = stage.inputs(key, std::slice::from_ref(&input)).unwrap();
            stage
                .record(key, inputs, &[], serde_json::json!({}))
                .unwrap();
        }
        a.finish(serde_json::json!({"by": "a"})).unwrap();
        // b drops a unit of its own; a's stay.
        b.retain_units(&|k| k != "b1").unwrap();
        let m = StageManifest::load(&dir.path().join("manifests/toy.json"))
            .unwrap()
            .unwrap();
        assert_eq!(m.units.keys().collect::<Vec<_>>(), ["a1", "a2", "b2"]);
        assert_eq!(m.settings, serde_json::json!({"shard": "x"}));
        let fresh = open();
        let inputs = fresh.inputs("a1", std::slice::from_ref(&input)).unwrap();
        assert!(fresh.plan("a1", &inputs).unwrap().is_cached());
    }

    #[test]
    fn shards_select_every_nth_item() {
        let s: Shard = "1/3".parse().unwrap();
        assert_eq!(s.select(&[0, 1, 2, 3, 4, 5, 6]), [1, 4]);
        assert_eq!(s.to_string(), "1/3");
        assert!("3/3".parse::<Shard>().is_err());
        assert!("1".parse::<Shard>().is_err());
    }
}
