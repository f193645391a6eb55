//! A training run's directory, shared by `trainer pretrain` and `trainer finetune`: opening or
//! resuming it (recipe and data checks, newest valid checkpoint), the metrics log, and saving and
//! loading the full training state (weights, AdamW moments, position) as checkpoints
//! ([`crate::train::checkpoint`]). The optimizer step is [`crate::train::step`]'s; each command
//! keeps only its own loop: what a micro-batch is, its loss, and when to validate.
//!
//! Exact resume: the state after step `s` is fully described by the checkpoint of step `s`
//! (weights and moments bit-exact, step count, data position, and the metrics log up to `s`);
//! the data order is a pure function of `(seed, epoch)` ([`crate::train::data::IndexOrder`]); every
//! operation is deterministic on the CPU backend for a fixed thread count. So a resumed run
//! recomputes exactly the steps the killed one would have done.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail, ensure};
use burn::tensor::backend::AutodiffBackend;
use serde::{Deserialize, Serialize};

use crate::model::MambaLm;
use crate::model::hf::safetensors::{self as st, StFile};
use crate::model::hf::{self, HfConfig};
use crate::train::checkpoint::{self, Cursor, CursorStore};
use crate::train::data::{DataPosition, MixState};
use crate::train::ema::{EMA_FILE, Ema};
use crate::train::optim::{AdamW, AdamWParams};

pub const RUN_CONFIG_FILE: &str = "run-config.json";
pub const METRICS_FILE: &str = "metrics.jsonl";
pub const LOSS_PNG: &str = "loss.png";

/// Saved in every checkpoint: where the run is, besides weights and moments.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainState {
    pub step: u64,
    pub data: DataPosition,
    pub tokens_seen: u64,
    pub seed: u64,
    pub data_fingerprint: String,
    /// The data order has no RNG state beyond `(seed, epoch)`; nothing else draws random numbers
    /// during training (no dropout), so this records the full RNG state.
    pub rng: String,
    pub threads: usize,
    /// Data-parallel device count (how a step's gradient sum is grouped).
    #[serde(default = "one")]
    pub devices: usize,
    /// The backend the run computes on (Burn's name of it, e.g. `autodiff<ndarray>`): bit-exact
    /// resume holds per backend.
    #[serde(default = "cpu")]
    pub backend: String,
    /// Several domains (`[pretrain.mix]`): where the run stands in each (`data` is then unused).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mix: Option<MixState>,
}

impl TrainState {
    /// The state of a run that has not taken a step.
    fn fresh(spec: &RunSpec<'_>, threads: usize) -> Self {
        Self {
            step: 0,
            data: DataPosition {
                epoch: 0,
                position: 0,
            },
            tokens_seen: 0,
            seed: spec.seed,
            data_fingerprint: spec.data_fingerprint.clone(),
            rng: format!("chacha8(seed={}, stream=epoch)", spec.seed),
            threads,
            devices: 1,
            backend: cpu(),
            mix: None,
        }
    }
}

fn one() -> usize {
    1
}

/// Runs from before the field existed computed on the CPU.
fn cpu() -> String {
    "autodiff<ndarray>".into()
}

/// What identifies a run; a resume with anything else is refused (or, for the data, warned).
pub struct RunSpec<'a> {
    pub run_dir: &'a Path,
    /// The recipe (config sections, initial model): stored in `run-config.json` and compared on
    /// resume. `what` names it in the error (e.g. `[model]/[pretrain]`).
    pub run_config: serde_json::Value,
    pub what: &'a str,
    /// Identifies the training data; stored in the cursor. `data_what` names it in messages.
    pub data_fingerprint: String,
    pub data_what: &'a str,
    /// Seed of the data order.
    pub seed: u64,
    pub adamw: AdamWParams,
    pub keep_checkpoints: usize,
    /// Resume even though the data fingerprint changed (same position).
    pub allow_data_change: bool,
    /// Decay of the moving average of the weights, when the run keeps one.
    pub ema: Option<f64>,
    /// Whether this process writes the run directory: node 0 of a multi-node run does (and
    /// every single-node run); the other nodes touch no file of it and take their state from
    /// node 0 through the collective ([`crate::train::step::Devices::start`]).
    pub writer: bool,
}

/// An open run: model, optimizer and position, restored from its newest valid checkpoint or
/// freshly initialized, and the metrics log (`metrics.jsonl`).
pub struct Session<B: AutodiffBackend> {
    pub run_dir: PathBuf,
    pub hf_config: HfConfig,
    pub model: MambaLm<B>,
    pub optimizer: AdamW<B>,
    pub state: TrainState,
    /// The moving average of the weights ([`RunSpec::ema`]), saved with every checkpoint.
    pub ema: Option<Ema<B>>,
    /// Whether the state came from a checkpoint.
    pub resumed: bool,
    /// The cursor and the metrics log: `None` on a node that does not write the run directory.
    store: Option<CursorStore>,
    keep: usize,
    metrics_lines: Vec<String>,
    metrics_file: Option<File>,
}

impl<B: AutodiffBackend> Session<B> {
    /// Open `spec.run_dir` (created if needed): resume from its cursor's newest valid checkpoint,
    /// else start from `init()`.
    pub fn open(
        spec: RunSpec<'_>,
        init: impl FnOnce() -> Result<(HfConfig, MambaLm<B>)>,
        device: &B::Device,
    ) -> Result<Self> {
        let run_dir = spec.run_dir;
        if !spec.writer {
            return Self::detached(spec, init);
        }
        fs::create_dir_all(run_dir).with_context(|| format!("creating {}", run_dir.display()))?;
        let run_config_path = run_dir.join(RUN_CONFIG_FILE);
        let store = CursorStore::open(run_dir)?;
        // Temporaries of a killed run (a half-written final model, run config); checkpoint ones
        // go with the next checkpoint's pruning.
        schemas::atomic::remove_stale_temps(run_dir)?;
        let cursor = store.load()?;
        if cursor.is_some() {
            if let Ok(text) = fs::read(&run_config_path) {
                let saved: serde_json::Value = serde_json::from_slice(&text)
                    .with_context(|| format!("parsing {}", run_config_path.display()))?;
                // Keys the run did not record (added to the recipe later) are taken as they are
                // now, with a warning; any recorded key that differs refuses the resume.
                let mut comparable = spec.run_config.clone();
                let mut unrecorded = Vec::new();
                if let (Some(now), Some(then)) = (comparable.as_object_mut(), saved.as_object()) {
                    now.retain(|k, _| {
                        let keep = then.contains_key(k);
                        if !keep {
                            unrecorded.push(k.clone());
                        }
                        keep
                    });
                }
                if saved != comparable {
                    bail!(
                        "{} was started with a different {} configuration ({}); resuming with another \
                         recipe would not reproduce the run — use a new run directory",
                        run_dir.display(),
                        spec.what,
                        run_config_path.display()
                    );
                }
                if !unrecorded.is_empty() {
                    tracing::warn!(
                        "{} does not record {}; resuming with the current value(s), now recorded",
                        run_config_path.display(),
                        unrecorded.join(", ")
                    );
                    schemas::atomic::write_atomic(
                        &run_config_path,
                        (serde_json::to_string_pretty(&spec.run_config)? + "\n").as_bytes(),
                    )?;
                }
            }
        } else {
            schemas::atomic::write_atomic(
                &run_config_path,
                (serde_json::to_string_pretty(&spec.run_config)? + "\n").as_bytes(),
            )?;
        }

        let threads = rayon::current_num_threads();
        let mut resumed: Option<Resumed<B>> = None;
        let mut resumed_dir: Option<PathBuf> = None;
        if let Some(c) = &cursor {
            check_data(c, &spec)?;
            let (found, warnings) = checkpoint::newest_valid_checkpoint(run_dir, c.step)?;
            for w in &warnings {
                tracing::warn!("{w}");
            }
            match found {
                Some((step, dir)) => {
                    let mut r = load_checkpoint::<B>(&dir, device)?;
                    r.optimizer.params = spec.adamw.clone();
                    if r.state.threads != threads {
                        tracing::warn!(
                            "checkpoint made with {} compute threads, resuming with {threads}; \
                             results may differ in the last bits from an uninterrupted run",
                            r.state.threads
                        );
                    }
                    r.state.threads = threads;
                    r.state.data_fingerprint = spec.data_fingerprint.clone();
                    tracing::info!("resuming {} from checkpoint step {step}", run_dir.display());
                    resumed = Some(r);
                    resumed_dir = Some(dir);
                }
                None => tracing::warn!(
                    "no valid checkpoint in {} although the cursor is at step {}; starting \
                     over (the result is identical, only time is lost)",
                    run_dir.display(),
                    c.step
                ),
            }
        }
        let was_resumed = resumed.is_some();
        let r = match resumed {
            Some(r) => r,
            None => {
                let (hf_config, model) = init()?;
                Resumed {
                    hf_config,
                    model,
                    optimizer: AdamW::new(spec.adamw.clone()),
                    state: TrainState::fresh(&spec, threads),
                    metrics_lines: Vec::new(),
                }
            }
        };
        let ema = match (spec.ema, &resumed_dir) {
            (None, _) => None,
            (Some(decay), Some(dir)) => {
                let f = StFile::open(&dir.join(EMA_FILE)).with_context(|| {
                    format!(
                        "the run keeps a moving average ([pretrain] ema), but checkpoint {} has none",
                        dir.display()
                    )
                })?;
                Some(Ema::load(decay, &f, &r.model, device)?)
            }
            (Some(decay), None) => Some(Ema::new(decay, &r.model)),
        };
        // The log restarts from the checkpoint's snapshot: lines of steps after it are recomputed.
        let metrics_path = run_dir.join(METRICS_FILE);
        schemas::atomic::write_atomic(&metrics_path, r.metrics_lines.concat().as_bytes())?;
        let metrics_file = OpenOptions::new()
            .append(true)
            .open(&metrics_path)
            .with_context(|| format!("opening {}", metrics_path.display()))?;
        Ok(Self {
            run_dir: run_dir.to_path_buf(),
            hf_config: r.hf_config,
            model: r.model,
            optimizer: r.optimizer,
            state: r.state,
            ema,
            resumed: was_resumed,
            store: Some(store),
            keep: spec.keep_checkpoints,
            metrics_lines: r.metrics_lines,
            metrics_file: Some(metrics_file),
        })
    }

    /// A session of a node that does not write: a fresh model of the run's shape, to be
    /// overwritten by node 0's state; no file is read or written.
    fn detached(
        spec: RunSpec<'_>,
        init: impl FnOnce() -> Result<(HfConfig, MambaLm<B>)>,
    ) -> Result<Self> {
        let (hf_config, model) = init()?;
        Ok(Self {
            run_dir: spec.run_dir.to_path_buf(),
            hf_config,
            model,
            optimizer: AdamW::new(spec.adamw.clone()),
            state: TrainState::fresh(&spec, rayon::current_num_threads()),
            ema: None,
            resumed: false,
            store: None,
            keep: spec.keep_checkpoints,
            metrics_lines: Vec::new(),
            metrics_file: None,
        })
    }

    /// Whether this process writes the run directory.
    pub fn is_writer(&self) -> bool {
        self.store.is_some()
    }

    /// What a node that does not write needs of node 0's session, as bytes for the collective.
    pub fn shared_state(&self) -> Result<Vec<u8>> {
        Ok(serde_json::to_vec(&serde_json::json!({
            "state": self.state, "resumed": self.resumed,
        }))?)
    }

    /// Take node 0's [`shared_state`](Self::shared_state); its data must be this node's.
    pub fn adopt_state(&mut self, bytes: &[u8]) -> Result<()> {
        #[derive(Deserialize)]
        struct Shared {
            state: TrainState,
            resumed: bool,
        }
        let shared: Shared =
            serde_json::from_slice(bytes).context("reading node 0's training state")?;
        ensure!(
            shared.state.data_fingerprint == self.state.data_fingerprint,
            "this node's training data (fingerprint {}) is not node 0's ({}): every node must \
             read the same shards",
            self.state.data_fingerprint,
            shared.state.data_fingerprint
        );
        self.state = shared.state;
        self.resumed = shared.resumed;
        Ok(())
    }

    /// Record the backend and the data-parallel device count of this process. A resume on
    /// another backend, or with another count (the step's gradient sum is grouped differently),
    /// warns: bit-exact resume holds per backend and device count.
    pub fn note_devices(&mut self, backend: &str, devices: usize) {
        if self.resumed && self.state.backend != backend {
            tracing::warn!(
                "checkpoint made on the {} backend, resuming on {backend}; bit-exact resume holds \
                 per backend, so results will differ slightly from an uninterrupted run",
                self.state.backend
            );
        }
        if self.resumed && self.state.devices != devices {
            tracing::warn!(
                "checkpoint made with {} data-parallel device(s), resuming with {devices}; \
                 results may differ in the last bits from an uninterrupted run",
                self.state.devices
            );
        }
        self.state.backend = backend.to_string();
        self.state.devices = devices;
    }

    /// Append one line to `metrics.jsonl` (flushed; also kept for the next checkpoint).
    pub fn log(&mut self, v: serde_json::Value) -> Result<()> {
        let Some(file) = self.metrics_file.as_mut() else {
            return Ok(());
        };
        let line = v.to_string() + "\n";
        file.write_all(line.as_bytes())
            .and_then(|_| file.flush())
            .with_context(|| {
                format!("appending to {}", self.run_dir.join(METRICS_FILE).display())
            })?;
        self.metrics_lines.push(line);
        Ok(())
    }

    /// Write a checkpoint of the current state and move the cursor to it.
    pub fn checkpoint(&self) -> Result<()> {
        let Some(store) = &self.store else {
            return Ok(());
        };
        save_checkpoint(
            &self.run_dir,
            store,
            &self.hf_config,
            &self.model,
            &self.optimizer,
            self.ema.as_ref(),
            &self.state,
            &self.metrics_lines,
            self.keep,
        )
    }
}

fn check_data(c: &Cursor, spec: &RunSpec<'_>) -> Result<()> {
    if c.data_fingerprint == spec.data_fingerprint {
        return Ok(());
    }
    if !spec.allow_data_change {
        bail!(
            "the {} changed since this run started (fingerprint {} at step {}, now {}); \
             resuming on other data would not reproduce the run. Pass --allow-data-change to \
             continue anyway from the same position, or start a new run directory",
            spec.data_what,
            c.data_fingerprint,
            c.step,
            spec.data_fingerprint
        );
    }
    tracing::warn!(
        "the {} changed since step {} (--allow-data-change); continuing at the same position",
        spec.data_what,
        c.step
    );
    Ok(())
}

/// Model, optimizer and position restored from a checkpoint or freshly initialized.
pub struct Resumed<B: AutodiffBackend> {
    pub hf_config: HfConfig,
    pub model: MambaLm<B>,
    pub optimizer: AdamW<B>,
    pub state: TrainState,
    pub metrics_lines: Vec<String>,
}

/// Write a checkpoint of the current training state and move the cursor to it.
#[allow(clippy::too_many_arguments)]
pub fn save_checkpoint<B: AutodiffBackend>(
    run_dir: &Path,
    store: &CursorStore,
    hf_config: &HfConfig,
    model: &MambaLm<B>,
    optimizer: &AdamW<B>,
    ema: Option<&Ema<B>>,
    state: &TrainState,
    metrics_lines: &[String],
    keep: usize,
) -> Result<()> {
    let mut files: Vec<(&str, Vec<u8>)> = vec![
        (hf::WEIGHTS_FILE, st::serialize(&model.hf_tensors()?)?),
        (
            "optimizer.safetensors",
            st::serialize(&optimizer.state_tensors()?)?,
        ),
        (
            hf::CONFIG_FILE,
            (serde_json::to_string_pretty(&hf_config.to_json())? + "\n").into_bytes(),
        ),
        ("state.json", serde_json::to_vec_pretty(state)?),
        (METRICS_FILE, metrics_lines.concat().into_bytes()),
    ];
    if let Some(ema) = ema {
        files.push((EMA_FILE, st::serialize(&ema.tensors()?)?));
    }
    let dir = checkpoint::write_checkpoint(run_dir, state.step, &files)?;
    checkpoint::test_pause(
        checkpoint::PAUSE_BEFORE_CURSOR_ENV,
        checkpoint::PAUSE_BEFORE_CURSOR_MARKER,
        &dir,
    );
    store.commit(&Cursor {
        epoch: state.data.epoch,
        position: state.data.position,
        seed: state.seed,
        data_fingerprint: state.data_fingerprint.clone(),
        step: state.step,
        tokens_seen: state.tokens_seen,
        checkpoint: checkpoint::checkpoint_name(state.step),
        mix: state.mix.clone(),
    })?;
    checkpoint::prune_checkpoints(run_dir, state.step, keep)
}

/// Load model, optimizer moments, state and metrics snapshot from a checkpoint directory.
pub fn load_checkpoint<B: AutodiffBackend>(dir: &Path, device: &B::Device) -> Result<Resumed<B>> {
    let (hf_config, model) = hf::load_pretrained::<B>(dir, device)
        .with_context(|| format!("loading weights of checkpoint {}", dir.display()))?;
    let state_path = dir.join("state.json");
    let state: TrainState = serde_json::from_slice(
        &fs::read(&state_path).with_context(|| format!("reading {}", state_path.display()))?,
    )
    .with_context(|| format!("parsing {}", state_path.display()))?;
    let metrics = fs::read_to_string(dir.join(METRICS_FILE))
        .with_context(|| format!("reading {}", dir.join(METRICS_FILE).display()))?;
    // Hyper-parameters are filled in by the caller from the config.
    let mut optimizer = AdamW::new(AdamWParams {
        beta1: 0.0,
        beta2: 0.0,
        eps: 0.0,
        weight_decay: 0.0,
        clip: 0.0,
        ..AdamWParams::default()
    });
    optimizer.load_state(
        &StFile::open(&dir.join("optimizer.safetensors"))?,
        state.step,
        device,
    )?;
    Ok(Resumed {
        hf_config,
        model,
        optimizer,
        metrics_lines: metrics.split_inclusive('\n').map(str::to_string).collect(),
        state,
    })
}
