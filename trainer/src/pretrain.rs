//! `trainer pretrain`: continued pretraining of Mamba on the packed shards, resumable exactly.
//!
//! One optimizer step = `micro_batch × grad_accum` sequences from the global order
//! ([`crate::data::Loader`]); each micro-batch's mean loss is scaled by `1/grad_accum` before
//! backward and the gradients are summed with Burn's `GradientsAccumulator`, then one AdamW
//! update ([`crate::optim`]). Checkpoints and the sled cursor are in [`crate::checkpoint`].
//!
//! Exact resume: the state after step `s` is fully described by the checkpoint of step `s`
//! (weights and moments bit-exact, step count, data position, and the metrics log up to `s`);
//! the data order is a pure function of `(seed, epoch)`; every operation is deterministic on the
//! CPU backend for a fixed thread count (`[pretrain] threads`). So a resumed run recomputes
//! exactly the steps the killed one would have done.

use crate::scan::ScanBackend;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail, ensure};
use burn::module::AutodiffModule;
use burn::optim::{GradientsAccumulator, GradientsParams};
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{Int, Tensor};
use serde::{Deserialize, Serialize};

use crate::checkpoint::{self, Cursor, CursorStore};
use crate::data::{self, DataPosition, Loader, SequenceSource, ShardSet};
use crate::hf::{self, HfConfig};
use crate::model::{MambaConfig, MambaLm, causal_lm_loss};
use crate::optim::{AdamW, AdamWParams, lr_at};
use crate::st::{self, StFile};

/// `[model]`: initialize from an HF directory (`init`) or from scratch with these dimensions.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ModelSection {
    /// HF directory (config.json + model.safetensors); `--init` overrides it.
    pub init: Option<PathBuf>,
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub state_size: usize,
    pub expand: usize,
    pub conv_kernel: usize,
    /// Seed of the from-scratch (mamba_ssm) initialization.
    pub init_seed: u64,
}

impl Default for ModelSection {
    fn default() -> Self {
        let c = MambaConfig::mamba_130m();
        Self {
            init: None,
            vocab_size: c.vocab_size,
            hidden_size: c.hidden_size,
            num_hidden_layers: c.num_hidden_layers,
            state_size: c.state_size,
            expand: c.expand,
            conv_kernel: c.conv_kernel,
            init_seed: 0,
        }
    }
}

impl ModelSection {
    pub fn scratch_config(&self) -> MambaConfig {
        let mut c = MambaConfig::new(self.vocab_size, self.hidden_size, self.num_hidden_layers);
        c.state_size = self.state_size;
        c.expand = self.expand;
        c.conv_kernel = self.conv_kernel;
        c
    }
}

/// `[pretrain]`: the optimization recipe (defaults: the BioMamba paper).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PretrainConfig {
    pub seq_len: usize,
    pub micro_batch: usize,
    pub grad_accum: usize,
    /// Total optimizer steps (the schedule's length).
    pub steps: u64,
    /// Peak learning rate.
    pub lr: f64,
    pub min_lr: f64,
    /// Warmup as a fraction of `steps`, unless `warmup_steps` is given.
    pub warmup_fraction: f64,
    pub warmup_steps: Option<u64>,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
    /// Max global gradient norm (0 = no clipping).
    pub clip: f64,
    /// Seed of the data order.
    pub seed: u64,
    /// Validation every N steps (0 = only at the start and the end).
    pub eval_every: u64,
    /// Validation micro-batches (a fixed prefix of the validation shards).
    pub eval_batches: usize,
    pub checkpoint_every: u64,
    pub keep_checkpoints: usize,
    /// Compute threads (0 = all cores). Results are bit-reproducible for a fixed value.
    pub threads: usize,
}

impl Default for PretrainConfig {
    fn default() -> Self {
        Self {
            seq_len: 2048,
            micro_batch: 4,
            grad_accum: 61,
            steps: 4800,
            lr: 6e-4,
            min_lr: 1e-5,
            warmup_fraction: 0.1,
            warmup_steps: None,
            beta1: 0.9,
            beta2: 0.95,
            eps: 1e-8,
            weight_decay: 0.1,
            clip: 1.0,
            seed: 0,
            eval_every: 100,
            eval_batches: 16,
            checkpoint_every: 100,
            keep_checkpoints: 3,
            threads: 0,
        }
    }
}

impl PretrainConfig {
    pub fn warmup(&self) -> u64 {
        self.warmup_steps
            .unwrap_or_else(|| (self.steps as f64 * self.warmup_fraction).round() as u64)
    }
    pub fn adamw(&self) -> AdamWParams {
        AdamWParams {
            beta1: self.beta1,
            beta2: self.beta2,
            eps: self.eps,
            weight_decay: self.weight_decay,
            clip: self.clip,
        }
    }
    pub fn tokens_per_step(&self) -> u64 {
        (self.micro_batch * self.grad_accum * self.seq_len) as u64
    }
    fn validate(&self) -> Result<()> {
        ensure!(self.seq_len >= 2, "[pretrain] seq_len must be at least 2");
        ensure!(
            self.micro_batch >= 1 && self.grad_accum >= 1,
            "[pretrain] micro_batch and grad_accum must be at least 1"
        );
        ensure!(self.steps >= 1, "[pretrain] steps must be at least 1");
        ensure!(
            self.checkpoint_every >= 1,
            "[pretrain] checkpoint_every must be at least 1"
        );
        ensure!(
            self.lr > 0.0 && self.min_lr >= 0.0 && self.min_lr <= self.lr,
            "[pretrain] needs 0 <= min_lr <= lr, lr > 0"
        );
        Ok(())
    }
}

#[derive(Clone, Debug, Default, Deserialize)]
struct DataSection {
    dir: Option<PathBuf>,
}

/// The sections of a `configs/*.toml` the trainer reads (the others belong to the pipeline).
#[derive(Clone, Debug, Default, Deserialize)]
pub struct TrainConfigFile {
    #[serde(default)]
    data: DataSection,
    #[serde(default)]
    pub model: ModelSection,
    #[serde(default)]
    pub pretrain: PretrainConfig,
}

impl TrainConfigFile {
    pub fn load(path: &Path) -> Result<Self> {
        let text = fs::read_to_string(path)
            .with_context(|| format!("reading config {}", path.display()))?;
        let c: Self =
            toml::from_str(&text).with_context(|| format!("parsing config {}", path.display()))?;
        c.pretrain
            .validate()
            .with_context(|| format!("in {}", path.display()))?;
        Ok(c)
    }
    pub fn data_dir(&self) -> PathBuf {
        self.data
            .dir
            .clone()
            .unwrap_or_else(|| PathBuf::from("data"))
    }
}

/// Options of one `trainer pretrain` invocation.
#[derive(Clone, Debug)]
pub struct PretrainOptions {
    pub config: PathBuf,
    pub run_dir: PathBuf,
    pub init: Option<PathBuf>,
    pub data_dir: Option<PathBuf>,
    pub allow_data_change: bool,
    /// Stop (with a checkpoint) after this many total steps; the schedule still spans `steps`.
    pub max_steps: Option<u64>,
}

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
}

const RUN_CONFIG_FILE: &str = "run-config.json";
pub const METRICS_FILE: &str = "metrics.jsonl";
pub const LOSS_PNG: &str = "loss.png";

/// Model, optimizer and position restored from a checkpoint or freshly initialized.
pub struct Resumed<B: AutodiffBackend> {
    pub hf_config: HfConfig,
    pub model: MambaLm<B>,
    pub optimizer: AdamW<B>,
    pub state: TrainState,
    pub metrics_lines: Vec<String>,
}

/// Write a checkpoint of the current training state and move the cursor to it.
pub fn save_checkpoint<B: AutodiffBackend>(
    run_dir: &Path,
    store: &CursorStore,
    hf_config: &HfConfig,
    model: &MambaLm<B>,
    optimizer: &AdamW<B>,
    state: &TrainState,
    metrics_lines: &[String],
    keep: usize,
) -> Result<()> {
    let files: Vec<(&str, Vec<u8>)> = vec![
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
    checkpoint::write_checkpoint(run_dir, state.step, &files)?;
    store.commit(&Cursor {
        epoch: state.data.epoch,
        position: state.data.position,
        seed: state.seed,
        data_fingerprint: state.data_fingerprint.clone(),
        step: state.step,
        tokens_seen: state.tokens_seen,
        checkpoint: checkpoint::checkpoint_name(state.step),
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
    Ok(Resumed {
        hf_config,
        model,
        optimizer: {
            // Hyper-parameters are filled in by the caller from the config.
            let mut o = AdamW::new(AdamWParams {
                beta1: 0.0,
                beta2: 0.0,
                eps: 0.0,
                weight_decay: 0.0,
                clip: 0.0,
            });
            o.load_state(
                &StFile::open(&dir.join("optimizer.safetensors"))?,
                state.step,
                device,
            )?;
            o
        },
        metrics_lines: metrics.split_inclusive('\n').map(str::to_string).collect(),
        state,
    })
}

/// Forward + backward over the micro-batches, one AdamW update. Returns the new model, the
/// mean loss over the micro-batches and the gradient norm before clipping.
pub fn train_step<B: AutodiffBackend + ScanBackend>(
    model: MambaLm<B>,
    optimizer: &mut AdamW<B>,
    micro_batches: &[Tensor<B, 2, Int>],
    lr: f64,
) -> Result<(MambaLm<B>, f64, f64)> {
    let accum = micro_batches.len();
    ensure!(accum > 0, "no micro-batches");
    let mut acc = GradientsAccumulator::<MambaLm<B>>::new();
    let mut loss_sum = 0.0f64;
    for ids in micro_batches {
        let logits = model.forward(ids.clone());
        let loss = causal_lm_loss(logits, ids.clone());
        loss_sum += scalar(loss.clone())?;
        let grads = loss.mul_scalar(1.0 / accum as f64).backward();
        acc.accumulate(&model, GradientsParams::from_grads(grads, &model));
    }
    let loss = loss_sum / accum as f64;
    ensure!(loss.is_finite(), "training loss is {loss}");
    let (model, stats) = optimizer.step(lr, model, acc.grads())?;
    Ok((model, loss, stats.grad_norm))
}

fn scalar<B: Backend>(t: Tensor<B, 1>) -> Result<f64> {
    t.into_data()
        .convert::<f64>()
        .to_vec::<f64>()
        .map_err(|e| anyhow::anyhow!("reading a scalar: {e:?}"))?
        .first()
        .copied()
        .context("empty scalar tensor")
}

/// Mean next-token loss over the first `batches × micro_batch` validation sequences.
pub fn evaluate<B: ScanBackend>(
    model: &MambaLm<B>,
    val: &dyn SequenceSource,
    micro_batch: usize,
    batches: usize,
    vocab_size: usize,
    device: &B::Device,
) -> Result<f64> {
    let n = val.len().min(micro_batch * batches.max(1));
    ensure!(n > 0, "the validation data has no sequences");
    let (mut total, mut count) = (0.0, 0usize);
    for start in (0..n).step_by(micro_batch) {
        let seqs = (start..(start + micro_batch).min(n))
            .map(|i| val.sequence(i))
            .collect::<Result<Vec<_>>>()?;
        let ids = data::batch_tensor::<B>(&seqs, vocab_size, device)?;
        let loss = scalar(causal_lm_loss(model.forward(ids.clone()), ids))?;
        total += loss * seqs.len() as f64;
        count += seqs.len();
    }
    Ok(total / count as f64)
}

/// Summary of a (possibly partial) run.
#[derive(Clone, Debug)]
pub struct PretrainSummary {
    pub start_step: u64,
    pub end_step: u64,
    pub first_val_loss: Option<f64>,
    pub last_val_loss: Option<f64>,
}

fn metric_line(v: serde_json::Value) -> String {
    v.to_string() + "\n"
}

/// Run (or resume) pretraining as configured.
pub fn run<B: AutodiffBackend + ScanBackend>(
    opts: &PretrainOptions,
    device: &B::Device,
) -> Result<PretrainSummary>
where
    B::InnerBackend: ScanBackend,
{
    let file = TrainConfigFile::load(&opts.config)?;
    let data_dir = opts.data_dir.clone().unwrap_or_else(|| file.data_dir());
    let train = ShardSet::open_dir(&data_dir.join("shards").join("train"))?;
    let val = ShardSet::open_dir(&data_dir.join("shards").join("val"))?;
    run_with_data::<B>(opts, &file, &train, &val, device)
}

/// [`run`] with explicit data sources (the CLI opens the shards of `--data-dir`).
pub fn run_with_data<B: AutodiffBackend + ScanBackend>(
    opts: &PretrainOptions,
    file: &TrainConfigFile,
    train: &dyn SequenceSource,
    val: &dyn SequenceSource,
    device: &B::Device,
) -> Result<PretrainSummary>
where
    B::InnerBackend: ScanBackend,
{
    let cfg = &file.pretrain;
    for (name, src) in [("training", train), ("validation", val)] {
        ensure!(
            src.seq_len() == cfg.seq_len,
            "{name} shards hold sequences of {} tokens, but [pretrain] seq_len is {}",
            src.seq_len(),
            cfg.seq_len
        );
    }
    let fingerprint = format!("{}+{}", train.fingerprint(), val.fingerprint());
    let run_dir = &opts.run_dir;
    fs::create_dir_all(run_dir).with_context(|| format!("creating {}", run_dir.display()))?;

    // The recipe must not change under a resumed run, or it would not be the same run.
    let mut model_section = file.model.clone();
    if let Some(init) = &opts.init {
        model_section.init = Some(init.clone());
    }
    let run_config = serde_json::json!({ "model": model_section, "pretrain": cfg });
    let run_config_path = run_dir.join(RUN_CONFIG_FILE);
    let store = CursorStore::open(run_dir)?;
    let cursor = store.load()?;
    if cursor.is_some() {
        if let Ok(text) = fs::read(&run_config_path) {
            let saved: serde_json::Value = serde_json::from_slice(&text)
                .with_context(|| format!("parsing {}", run_config_path.display()))?;
            if saved != run_config {
                bail!(
                    "{} was started with a different [model]/[pretrain] configuration ({}); \
                     resuming with another recipe would not reproduce the run — use a new run directory",
                    run_dir.display(),
                    run_config_path.display()
                );
            }
        }
    } else {
        schemas::atomic::write_atomic(
            &run_config_path,
            (serde_json::to_string_pretty(&run_config)? + "\n").as_bytes(),
        )?;
    }

    let threads = rayon::current_num_threads();
    let mut resumed: Option<Resumed<B>> = None;
    if let Some(c) = &cursor {
        if c.data_fingerprint != fingerprint {
            if !opts.allow_data_change {
                bail!(
                    "the shards changed since this run started (fingerprint {} at step {}, now {}); \
                     resuming on other data would not reproduce the run. Pass --allow-data-change \
                     to continue anyway from the same position, or start a new run directory",
                    c.data_fingerprint,
                    c.step,
                    fingerprint
                );
            }
            eprintln!(
                "warning: the shards changed since step {} (--allow-data-change); continuing at the same position",
                c.step
            );
        }
        let (found, warnings) = checkpoint::newest_valid_checkpoint(run_dir, c.step)?;
        for w in &warnings {
            eprintln!("warning: {w}");
        }
        match found {
            Some((step, dir)) => {
                let mut r = load_checkpoint::<B>(&dir, device)?;
                r.optimizer.params = cfg.adamw();
                if r.state.threads != threads {
                    eprintln!(
                        "warning: checkpoint made with {} compute threads, resuming with {threads}; \
                         results may differ in the last bits from an uninterrupted run",
                        r.state.threads
                    );
                }
                r.state.threads = threads;
                if opts.allow_data_change {
                    r.state.data_fingerprint = fingerprint.clone();
                }
                eprintln!("resuming {} from checkpoint step {step}", run_dir.display());
                resumed = Some(r);
            }
            None => eprintln!(
                "warning: no valid checkpoint in {} although the cursor is at step {}; starting over \
                 (the result is identical, only time is lost)",
                run_dir.display(),
                c.step
            ),
        }
    }
    let resumed_from_checkpoint = resumed.is_some();
    let Resumed {
        hf_config,
        mut model,
        mut optimizer,
        mut state,
        mut metrics_lines,
    } = match resumed {
        Some(r) => r,
        None => {
            let (hf_config, model) = match &model_section.init {
                Some(dir) => hf::load_pretrained::<B>(dir, device)
                    .with_context(|| format!("loading the initial model from {}", dir.display()))?,
                None => {
                    let c = model_section.scratch_config();
                    let m = c.init_seeded::<B>(device, model_section.init_seed);
                    (HfConfig::from_config(c), m)
                }
            };
            Resumed {
                hf_config,
                model,
                optimizer: AdamW::new(cfg.adamw()),
                state: TrainState {
                    step: 0,
                    data: DataPosition {
                        epoch: 0,
                        position: 0,
                    },
                    tokens_seen: 0,
                    seed: cfg.seed,
                    data_fingerprint: fingerprint.clone(),
                    rng: format!("chacha8(seed={}, stream=epoch)", cfg.seed),
                    threads,
                },
                metrics_lines: Vec::new(),
            }
        }
    };
    let vocab = hf_config.config.vocab_size;

    // The log restarts from the checkpoint's snapshot: lines of steps after it are recomputed.
    let metrics_path = run_dir.join(METRICS_FILE);
    schemas::atomic::write_atomic(&metrics_path, metrics_lines.concat().as_bytes())?;
    let mut metrics_file: File = OpenOptions::new()
        .append(true)
        .open(&metrics_path)
        .with_context(|| format!("opening {}", metrics_path.display()))?;
    let mut log = |lines: &mut Vec<String>, line: String| -> Result<()> {
        metrics_file
            .write_all(line.as_bytes())
            .and_then(|_| metrics_file.flush())
            .with_context(|| format!("appending to {}", metrics_path.display()))?;
        lines.push(line);
        Ok(())
    };

    let mut first_val = None;
    let mut last_val = None;
    if !resumed_from_checkpoint {
        let v = evaluate(
            &model.valid(),
            val,
            cfg.micro_batch,
            cfg.eval_batches,
            vocab,
            device,
        )?;
        eprintln!("step 0: validation loss {v:.4} (perplexity {:.2})", v.exp());
        log(
            &mut metrics_lines,
            metric_line(serde_json::json!({"step": 0, "val_loss": v, "val_ppl": v.exp()})),
        )?;
        first_val = Some(v);
        // Step 0 is a checkpoint too, so every later resume has something to fall back to.
        save_checkpoint(
            run_dir,
            &store,
            &hf_config,
            &model,
            &optimizer,
            &state,
            &metrics_lines,
            cfg.keep_checkpoints,
        )?;
    }

    let end = opts.max_steps.unwrap_or(cfg.steps).min(cfg.steps);
    let start = state.step;
    let progress =
        schemas::progress::Progress::new("pretrain", end, schemas::progress::Unit::Count("steps"));
    progress.set_position(start);
    let mut loader = Loader::new(train, cfg.seed, state.data)?;
    let warmup = cfg.warmup();
    let t_run = Instant::now();
    while state.step < end {
        let t0 = Instant::now();
        let lr = lr_at(state.step, cfg.steps, warmup, cfg.lr, cfg.min_lr);
        let mut micro = Vec::with_capacity(cfg.grad_accum);
        for _ in 0..cfg.grad_accum {
            let seqs = loader.next_sequences(cfg.micro_batch)?;
            micro.push(data::batch_tensor::<B>(&seqs, vocab, device)?);
        }
        let (m, loss, grad_norm) = train_step(model, &mut optimizer, &micro, lr)
            .with_context(|| format!("step {}", state.step + 1))?;
        model = m;
        state.step += 1;
        state.tokens_seen += cfg.tokens_per_step();
        state.data = loader.pos;
        let tokens_per_s = cfg.tokens_per_step() as f64 / t0.elapsed().as_secs_f64();
        let mut line = serde_json::json!({
            "step": state.step, "lr": lr, "loss": loss, "grad_norm": grad_norm,
            "tokens": state.tokens_seen, "tokens_per_s": tokens_per_s,
        });
        let eval_now = state.step == end
            || state.step == cfg.steps
            || (cfg.eval_every > 0 && state.step % cfg.eval_every == 0);
        if eval_now {
            let v = evaluate(
                &model.valid(),
                val,
                cfg.micro_batch,
                cfg.eval_batches,
                vocab,
                device,
            )?;
            line["val_loss"] = v.into();
            line["val_ppl"] = v.exp().into();
            last_val = Some(v);
        }
        log(&mut metrics_lines, metric_line(line))?;
        progress.set_message(format!(
            "loss {loss:.4} {:.0} tok/s{}",
            tokens_per_s,
            last_val.map(|v| format!(" val {v:.4}")).unwrap_or_default()
        ));
        progress.inc(1);
        if state.step % cfg.checkpoint_every == 0 || state.step == end {
            save_checkpoint(
                run_dir,
                &store,
                &hf_config,
                &model,
                &optimizer,
                &state,
                &metrics_lines,
                cfg.keep_checkpoints,
            )?;
        }
    }
    progress.finish();
    if state.step > start {
        eprintln!(
            "trained steps {}..{} in {:.1}s; {} tokens seen",
            start + 1,
            state.step,
            t_run.elapsed().as_secs_f64(),
            state.tokens_seen
        );
    }
    if let Err(e) = crate::plot::write_loss_png(run_dir) {
        eprintln!("warning: loss plot not written: {e:#}");
    }
    if first_val.is_none() {
        first_val = crate::plot::read_metrics(&metrics_path)
            .ok()
            .and_then(|m| m.iter().find_map(|r| r.val_loss));
    }
    Ok(PretrainSummary {
        start_step: start,
        end_step: state.step,
        first_val_loss: first_val,
        last_val_loss: last_val,
    })
}

/// The newest valid checkpoint of a run (following the cursor, falling back past corrupt ones).
pub fn latest_checkpoint(run_dir: &Path) -> Result<PathBuf> {
    ensure!(
        run_dir.join(checkpoint::CURSOR_DB).exists(),
        "{} is not a run directory (no {})",
        run_dir.display(),
        checkpoint::CURSOR_DB
    );
    let store = CursorStore::open(run_dir)?;
    let cursor = store
        .load()?
        .with_context(|| format!("{} has no cursor yet", run_dir.display()))?;
    let (found, warnings) = checkpoint::newest_valid_checkpoint(run_dir, cursor.step)?;
    for w in warnings {
        eprintln!("warning: {w}");
    }
    found
        .map(|(_, p)| p)
        .with_context(|| format!("{} has no valid checkpoint", run_dir.display()))
}

/// `trainer export RUN_DIR --out DIR`: the latest checkpoint's model in the HF layout.
pub fn export<B: Backend>(run_dir: &Path, out: &Path, device: &B::Device) -> Result<PathBuf> {
    let ckpt = latest_checkpoint(run_dir)?;
    let (cfg, model) = hf::load_pretrained::<B>(&ckpt, device)?;
    hf::save_pretrained(out, &cfg, &model)?;
    Ok(ckpt)
}

/// Clap arguments and entry points of `trainer pretrain | export | plot`.
pub mod cli {
    use super::*;

    /// CPU training backend (f32 ndarray with autodiff).
    pub type CpuTrain = burn::backend::Autodiff<burn::backend::NdArray<f32>>;

    #[derive(clap::Args, Debug)]
    pub struct PretrainArgs {
        /// Config TOML with [model] and [pretrain] sections (configs/*.toml).
        #[arg(long)]
        pub config: PathBuf,
        /// Run directory (created; an existing one is resumed from its cursor).
        #[arg(long)]
        pub run_dir: PathBuf,
        /// Initialize from this HF directory instead of [model] init / from scratch.
        #[arg(long)]
        pub init: Option<PathBuf>,
        /// Data directory holding shards/{train,val} (default: [data] dir of the config, or `data`).
        #[arg(long)]
        pub data_dir: Option<PathBuf>,
        /// Resume even though the shards changed since the run started.
        #[arg(long)]
        pub allow_data_change: bool,
        /// Stop after this many total steps (with a checkpoint); the schedule still spans [pretrain] steps.
        #[arg(long)]
        pub max_steps: Option<u64>,
        /// Devices for data parallelism (CUDA ordinals, e.g. `0,1`); see trainer/README.md.
        #[arg(long, value_delimiter = ',')]
        pub devices: Vec<usize>,
    }

    #[derive(clap::Args, Debug)]
    pub struct ExportArgs {
        pub run_dir: PathBuf,
        /// Output directory (config.json + model.safetensors).
        #[arg(long)]
        pub out: PathBuf,
    }

    #[derive(clap::Args, Debug)]
    pub struct PlotArgs {
        pub run_dir: PathBuf,
    }

    /// Pin the compute thread pool: results are bit-reproducible for a fixed thread count.
    fn pin_threads(threads: usize) {
        let n = if threads == 0 {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        } else {
            threads
        };
        // Fails only if the pool was already built (then it is kept).
        let _ = rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .build_global();
    }

    pub fn pretrain(a: PretrainArgs) -> Result<()> {
        let file = TrainConfigFile::load(&a.config)?;
        pin_threads(file.pretrain.threads);
        let opts = PretrainOptions {
            config: a.config,
            run_dir: a.run_dir,
            init: a.init,
            data_dir: a.data_dir,
            allow_data_change: a.allow_data_change,
            max_steps: a.max_steps,
        };
        let summary = if a.devices.is_empty() {
            run::<CpuTrain>(&opts, &Default::default())?
        } else {
            run_on_devices(&opts, &a.devices)?
        };
        println!(
            "steps {}..{} done; validation loss {} -> {}",
            summary.start_step,
            summary.end_step,
            summary
                .first_val_loss
                .map_or("-".into(), |v| format!("{v:.4}")),
            summary
                .last_val_loss
                .map_or("-".into(), |v| format!("{v:.4}")),
        );
        Ok(())
    }

    #[cfg(feature = "cuda")]
    fn run_on_devices(opts: &PretrainOptions, devices: &[usize]) -> Result<PretrainSummary> {
        type CudaTrain = burn::backend::Autodiff<burn::backend::Cuda<f32>>;
        anyhow::ensure!(
            devices.len() == 1,
            "data parallelism over {} GPUs is designed (trainer/README.md) but not implemented yet; pass one device",
            devices.len()
        );
        let device = burn::backend::cuda::CudaDevice::new(devices[0]);
        run::<CudaTrain>(opts, &device)
    }

    #[cfg(not(feature = "cuda"))]
    fn run_on_devices(_opts: &PretrainOptions, devices: &[usize]) -> Result<PretrainSummary> {
        anyhow::bail!(
            "--devices {devices:?} needs a GPU build: cargo build -p trainer --release --features cuda"
        )
    }

    pub fn export(a: ExportArgs) -> Result<()> {
        let ckpt =
            super::export::<burn::backend::NdArray<f32>>(&a.run_dir, &a.out, &Default::default())?;
        println!("exported {} to {}", ckpt.display(), a.out.display());
        Ok(())
    }

    pub fn plot(a: PlotArgs) -> Result<()> {
        let p = crate::plot::write_loss_png(&a.run_dir)?;
        println!("wrote {}", p.display());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::{Autodiff, NdArray};
    type B = Autodiff<NdArray<f32>>;

    /// Two accumulated micro-batches of one sequence = one batch of both sequences.
    #[test]
    fn accumulation_equals_the_full_batch() {
        let dev = Default::default();
        let mut cfg = MambaConfig::new(32, 16, 2);
        cfg.state_size = 4;
        let model = cfg.init_seeded::<B>(&dev, 11);
        let a: Vec<u32> = (0..20).map(|i| (i * 7) % 32).collect();
        let b: Vec<u32> = (0..20).map(|i| (i * 3 + 1) % 32).collect();
        let p = PretrainConfig::default().adamw();
        let t = |s: &[Vec<u32>]| data::batch_tensor::<B>(s, 32, &dev).unwrap();
        let mut o1 = AdamW::<B>::new(p.clone());
        let (m1, l1, n1) = train_step(
            model.clone(),
            &mut o1,
            &[t(&[a.clone()]), t(&[b.clone()])],
            1e-2,
        )
        .unwrap();
        let mut o2 = AdamW::<B>::new(p);
        let (m2, l2, n2) = train_step(model, &mut o2, &[t(&[a, b])], 1e-2).unwrap();
        assert!((l1 - l2).abs() < 1e-5, "{l1} vs {l2}");
        assert!((n1 - n2).abs() < 1e-4 * n2, "{n1} vs {n2}");
        for (x, y) in m1
            .hf_tensors()
            .unwrap()
            .iter()
            .zip(m2.hf_tensors().unwrap())
        {
            for (u, v) in x.bytes.chunks(4).zip(y.bytes.chunks(4)) {
                let (u, v) = (
                    f32::from_le_bytes(u.try_into().unwrap()),
                    f32::from_le_bytes(v.try_into().unwrap()),
                );
                assert!((u - v).abs() < 1e-5, "{}: {u} vs {v}", x.name);
            }
        }
    }
}
