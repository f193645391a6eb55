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

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::{Context, Result};
use schemas::manifest::{Fingerprint, record_file, stat};
use schemas::{FileRecord, StageManifest, UnitRecord};
use serde::Serialize;

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
    name: &'static str,
    data_dir: PathBuf,
    manifest_path: PathBuf,
    force: bool,
    manifest: Mutex<StageManifest>,
}

impl Stage {
    /// Open stage `name`'s manifest under `data_dir/manifests/`. `config` is the part of the config the
    /// stage uses: changing any of it changes every unit's fingerprint.
    pub fn open(
        data_dir: &Path,
        name: &'static str,
        code_version: u32,
        schema_version: u32,
        config: &impl Serialize,
        force: bool,
    ) -> Result<Self> {
        let manifest_path = schemas::Layout::new(data_dir).manifest(name);
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
        };
        Ok(Self {
            name,
            data_dir: data_dir.to_path_buf(),
            manifest_path,
            force,
            manifest: Mutex::new(manifest),
        })
    }

    pub fn name(&self) -> &'static str {
        self.name
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
        let mut m = self.manifest.lock().expect("manifest lock");
        m.units.insert(key.to_string(), unit);
        m.save(&self.manifest_path)
    }

    /// Drop units that no longer correspond to an input (their outputs are removed).
    pub fn retain_units(&self, keep: &dyn Fn(&str) -> bool) -> Result<Vec<String>> {
        let mut m = self.manifest.lock().expect("manifest lock");
        let gone: Vec<String> = m.units.keys().filter(|k| !keep(k)).cloned().collect();
        for key in &gone {
            if let Some(unit) = m.units.remove(key) {
                for out in unit.outputs {
                    let _ = std::fs::remove_file(self.data_dir.join(&out.path));
                }
            }
        }
        if !gone.is_empty() {
            m.save(&self.manifest_path)?;
        }
        Ok(gone)
    }

    /// Set the stage summary and save the manifest.
    pub fn finish(&self, summary: serde_json::Value) -> Result<StageManifest> {
        let mut m = self.manifest.lock().expect("manifest lock");
        m.summary = summary;
        m.save(&self.manifest_path)?;
        Ok(m.clone())
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
            stage: self.name.to_string(),
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
}
