//! `trainer finetune`: BioASQ factoid fine-tuning (masked next-token loss on the answer),
//! resumable, then answering the task's test questions (`answer`).
//!
//! Config: `[finetune]` (shared settings) and `[tasks.NAME]` (tables and per-task
//! overrides) of the one TOML; other sections are ignored here. Without a config the three
//! paper tasks `bioasq-4b`, `bioasq-5b`, `bioasq-6b` are defined with the default paths.
//!
//! Run dir: `checkpoints/step-NNNNNNNN/` (Burn records of model and optimizer),
//! `cursor.json` (the newest complete checkpoint; written atomically only after the
//! checkpoint directory is complete, so a kill at any instant resumes from a whole
//! checkpoint), `metrics.jsonl`, `model/` (final HF weights + tokenizer), `eval/NAME/`.
//!
//! The order of examples is a deterministic permutation per epoch from (seed, epoch); the
//! cursor is just the optimizer step, so a resumed run replays exactly the same batches.
//!
//! Seam: the data source (`FinetuneData`: encoded examples → padded micro-batches) is the
//! only fine-tuning specific part of the loop; checkpointing, optimizer and schedule are
//! meant to be the pretraining ones once `trainer pretrain` lands (see the report of the
//! `finetune` branch).

use crate::scan::ScanBackend;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use burn::module::{AutodiffModule, Module};
use burn::optim::{AdamWConfig, GradientsAccumulator, GradientsParams, Optimizer};
use burn::record::{BinBytesRecorder, FullPrecisionSettings, Recorder};
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::{ElementConversion, Int, Tensor, TensorData};
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};

use crate::answer::{self, AnswerSettings, TaskResult};
use crate::hf::{HfConfig, load_pretrained, save_pretrained};
use crate::loss::masked_nll_sum;
use crate::model::MambaLm;
use crate::qa::{self, Encoded, QaEncoder};

/// `[finetune]`: settings shared by every task (a task may override some).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct FinetuneConfig {
    /// tokenizer.json; default: `tokenizer.json` next to the initial model.
    pub tokenizer: Option<PathBuf>,
    /// Prompt + answer length in tokens; longer contexts are cut from the left.
    pub max_len: usize,
    pub epochs: usize,
    /// Peak learning rate (linear warmup, then linear decay to 0).
    pub lr: f64,
    pub warmup_ratio: f64,
    /// AdamW decoupled weight decay (applied to every parameter by Burn's AdamW, hence 0).
    pub weight_decay: f64,
    /// Per-parameter gradient norm clip (Burn's AdamW clipping); 0 = off.
    pub grad_clip: f64,
    /// Examples per optimizer step.
    pub batch_size: usize,
    /// Examples per forward/backward (gradient accumulation inside a step).
    pub micro_batch: usize,
    pub seed: u64,
    /// Stop after this many optimizer steps (demo, tests).
    pub max_steps: Option<usize>,
    /// Use only the first N training examples (demo, tests).
    pub train_limit: Option<usize>,
    pub checkpoint_every: usize,
    /// Checkpoints kept (the newest K).
    pub keep_checkpoints: usize,
    /// Beam search answering.
    pub beams: usize,
    pub max_new_tokens: usize,
    /// Answer only the first N factoid test questions (demo, tests).
    pub limit: Option<usize>,
    /// Use at most K contexts per test question (demo, tests).
    pub max_contexts: Option<usize>,
    pub eos: u32,
}

impl Default for FinetuneConfig {
    fn default() -> Self {
        FinetuneConfig {
            tokenizer: None,
            max_len: 2048,
            epochs: 3,
            lr: 5e-5,
            warmup_ratio: 0.1,
            weight_decay: 0.0,
            grad_clip: 1.0,
            batch_size: 16,
            micro_batch: 4,
            seed: 42,
            max_steps: None,
            train_limit: None,
            checkpoint_every: 100,
            keep_checkpoints: 2,
            beams: 5,
            max_new_tokens: 16,
            limit: None,
            max_contexts: None,
            eos: 0,
        }
    }
}

/// `[tasks.NAME]`: one BioASQ task (tables relative to the data dir) and its overrides.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(default, deny_unknown_fields)]
pub struct TaskConfig {
    /// Row label in the results table, e.g. `4b`.
    pub label: String,
    pub train: PathBuf,
    pub test: PathBuf,
    pub golden: PathBuf,
    /// Golden test batches of the task (e.g. `4B1`…`4B5`): each of their factoid questions
    /// is answered and scored (no context → no answer, scored 0). Empty: the golden factoid
    /// questions that have a row in the test table.
    pub batches: Vec<String>,
    pub epochs: Option<usize>,
    pub lr: Option<f64>,
    pub batch_size: Option<usize>,
    pub seed: Option<u64>,
}

impl TaskConfig {
    /// The defaults of year `y` (e.g. `4b`), as `pipeline bioasq` writes them:
    /// `bioasq/bioasq-{y}/{train,test}.arrow`, `bioasq/golden.arrow`, batches `{Y}1`…`{Y}5`.
    pub fn for_year(y: &str) -> Self {
        TaskConfig {
            label: y.to_string(),
            train: format!("bioasq/bioasq-{y}/train.arrow").into(),
            test: format!("bioasq/bioasq-{y}/test.arrow").into(),
            golden: "bioasq/golden.arrow".into(),
            batches: (1..=5)
                .map(|i| format!("{}{i}", y.to_uppercase()))
                .collect(),
            ..Default::default()
        }
    }

    /// The golden rows of this task's questions (see [`batches`](Self::batches)).
    pub fn select_golden(
        &self,
        golden: Vec<qa::Golden>,
        test: &[qa::Example],
    ) -> Result<Vec<qa::Golden>> {
        let out: Vec<qa::Golden> = if self.batches.is_empty() {
            let ids: std::collections::HashSet<&str> =
                test.iter().map(|e| e.question_id.as_str()).collect();
            golden
                .into_iter()
                .filter(|g| ids.contains(g.question_id.as_str()))
                .collect()
        } else {
            golden
                .into_iter()
                .filter(|g| self.batches.contains(&g.batch))
                .collect()
        };
        if !out.iter().any(|g| g.qtype == "factoid") {
            bail!(
                "{}: no factoid question of the task (batches {:?})",
                self.golden.display(),
                self.batches
            );
        }
        Ok(out)
    }
}

/// The sections of the TOML this module reads.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default)]
struct Sections {
    data: Option<DataSection>,
    finetune: FinetuneConfig,
    tasks: BTreeMap<String, TaskConfig>,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default)]
struct DataSection {
    dir: Option<PathBuf>,
}

/// Fine-tuning config of a TOML (or the defaults): settings, tasks, data dir.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub finetune: FinetuneConfig,
    pub tasks: BTreeMap<String, TaskConfig>,
    pub data_dir: Option<PathBuf>,
}

pub fn load_config(path: Option<&Path>) -> Result<Loaded> {
    let mut s: Sections = match path {
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .with_context(|| format!("reading config {}", p.display()))?;
            toml::from_str(&text).with_context(|| format!("parsing config {}", p.display()))?
        }
        None => Sections::default(),
    };
    if s.tasks.is_empty() {
        for y in ["4b", "5b", "6b"] {
            s.tasks
                .insert(format!("bioasq-{y}"), TaskConfig::for_year(y));
        }
    }
    Ok(Loaded {
        finetune: s.finetune,
        tasks: s.tasks,
        data_dir: s.data.and_then(|d| d.dir),
    })
}

/// Command-line arguments of `trainer finetune`.
#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    /// Initial model: an HF directory (config.json + model.safetensors), a run directory
    /// holding one in `model/` or `export/`, or a `trainer pretrain` run directory (its
    /// newest valid checkpoint).
    #[arg(long)]
    pub init: PathBuf,
    /// Task name from the config's `[tasks.*]` (default tasks: bioasq-4b, bioasq-5b, bioasq-6b).
    #[arg(long)]
    pub task: String,
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Default: `DATA/runs/finetune-TASK`.
    #[arg(long)]
    pub run_dir: Option<PathBuf>,
    /// Data directory (tables are relative to it); default: config `[data] dir`, else `data`.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    #[arg(long)]
    pub tokenizer: Option<PathBuf>,
    /// Overrides `[finetune] max_steps`.
    #[arg(long)]
    pub max_steps: Option<usize>,
    /// Overrides `[finetune] train_limit`.
    #[arg(long)]
    pub train_limit: Option<usize>,
    /// Overrides `[finetune] limit` (test questions answered).
    #[arg(long)]
    pub limit: Option<usize>,
    /// Overrides `[finetune] max_len`.
    #[arg(long)]
    pub max_len: Option<usize>,
    /// Train only; do not answer the test questions.
    #[arg(long)]
    pub no_eval: bool,
    /// Stop (after a checkpoint) once this many steps are done, as a preemption would;
    /// the schedule is unchanged and a later run resumes.
    #[arg(long)]
    pub stop_after: Option<usize>,
}

/// An HF model directory inside `p` (itself, `model/` or `export/`).
pub fn resolve_model_dir(p: &Path) -> Result<PathBuf> {
    for c in [p.to_path_buf(), p.join("model"), p.join("export")] {
        if c.join("config.json").is_file() && c.join("model.safetensors").is_file() {
            return Ok(c);
        }
    }
    // A `trainer pretrain` run directory: its newest valid checkpoint (an HF directory).
    crate::pretrain::latest_checkpoint(p).with_context(|| {
        format!(
            "{}: no HF model (config.json + model.safetensors) here, in model/ or export/, \
             and not a pretraining run directory",
            p.display()
        )
    })
}

/// The tokenizer: explicit path, else `tokenizer.json` next to the model.
pub fn resolve_tokenizer(
    explicit: Option<&Path>,
    model_dir: &Path,
) -> Result<tokenizers::Tokenizer> {
    let path = match explicit {
        Some(p) => p.to_path_buf(),
        None => model_dir.join("tokenizer.json"),
    };
    if !path.is_file() {
        bail!(
            "tokenizer {} not found (give --tokenizer or [finetune] tokenizer)",
            path.display()
        );
    }
    tokenizers::Tokenizer::from_file(&path)
        .map_err(|e| anyhow::anyhow!("loading tokenizer {}: {e}", path.display()))
}

/// Settings of one task after overrides.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Resolved {
    pub task: String,
    pub cfg: FinetuneConfig,
    pub tables: TaskConfig,
}

/// The newest complete checkpoint and where the run stands.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
struct Cursor {
    /// Optimizer steps done.
    step: usize,
    checkpoint: String,
    /// Fingerprint of (initial model, training table, resolved settings).
    fingerprint: String,
}

/// Training examples, encoded once; batches by (seed, epoch) permutation.
pub struct FinetuneData {
    pub examples: Vec<Encoded>,
    pub skipped: usize,
    pub context_cut: usize,
}

impl FinetuneData {
    pub fn steps_per_epoch(&self, batch: usize) -> usize {
        self.examples.len().div_ceil(batch)
    }

    /// Example indices of optimizer step `step` (0-based, across epochs).
    pub fn step_indices(&self, step: usize, batch: usize, seed: u64) -> Vec<usize> {
        let spe = self.steps_per_epoch(batch);
        let (epoch, pos) = (step / spe, step % spe);
        let mut order: Vec<usize> = (0..self.examples.len()).collect();
        let mut rng =
            StdRng::seed_from_u64(seed ^ (epoch as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
        order.shuffle(&mut rng);
        let end = ((pos + 1) * batch).min(order.len());
        order[pos * batch..end].to_vec()
    }
}

fn lr_at(step: usize, total: usize, cfg: &FinetuneConfig) -> f64 {
    let warm = ((total as f64) * cfg.warmup_ratio).round() as usize;
    if step < warm {
        cfg.lr * (step + 1) as f64 / warm as f64
    } else {
        let rest = (total - warm).max(1) as f64;
        cfg.lr * (1.0 - (step - warm) as f64 / rest).max(0.0)
    }
}

/// Fine-tune on the task's training table; returns the final HF model directory.
pub fn train<B: AutodiffBackend + ScanBackend>(
    r: &Resolved,
    init_dir: &Path,
    data_dir: &Path,
    tokenizer: &tokenizers::Tokenizer,
    run_dir: &Path,
    stop_after: Option<usize>,
    device: &B::Device,
) -> Result<Option<PathBuf>> {
    let cfg = &r.cfg;
    if cfg.batch_size == 0 || cfg.micro_batch == 0 {
        bail!("[finetune] batch_size and micro_batch must be at least 1");
    }
    let train_path = data_dir.join(&r.tables.train);
    let mut rows = qa::read_examples(&train_path)?;
    if let Some(n) = cfg.train_limit {
        rows.truncate(n);
    }
    let enc = QaEncoder {
        tokenizer,
        eos: cfg.eos,
    };
    let mut data = FinetuneData {
        examples: Vec::new(),
        skipped: 0,
        context_cut: 0,
    };
    for ex in &rows {
        match enc
            .example(ex, cfg.max_len)
            .with_context(|| format!("training example {}", ex.id))?
        {
            Some(e) => {
                data.context_cut += usize::from(e.context_cut > 0);
                data.examples.push(e);
            }
            None => data.skipped += 1,
        }
    }
    if data.examples.is_empty() {
        bail!(
            "{}: no usable training example (of {})",
            train_path.display(),
            rows.len()
        );
    }
    let spe = data.steps_per_epoch(cfg.batch_size);
    let total = (spe * cfg.epochs).min(cfg.max_steps.unwrap_or(usize::MAX));
    eprintln!(
        "finetune {}: {} examples ({} skipped, {} contexts cut), {} steps/epoch, {} steps",
        r.task,
        data.examples.len(),
        data.skipped,
        data.context_cut,
        spe,
        total
    );

    std::fs::create_dir_all(run_dir.join("checkpoints"))
        .with_context(|| format!("creating {}", run_dir.display()))?;
    schemas::atomic::remove_stale_temps(run_dir)?;
    schemas::atomic::remove_stale_temps(&run_dir.join("checkpoints"))?;
    // Only what changes the trained weights; answering settings may change between runs.
    let mut training = r.clone();
    let d = FinetuneConfig::default();
    training.cfg.limit = None;
    training.cfg.max_contexts = None;
    (training.cfg.beams, training.cfg.max_new_tokens) = (d.beams, d.max_new_tokens);
    (training.cfg.checkpoint_every, training.cfg.keep_checkpoints) =
        (d.checkpoint_every, d.keep_checkpoints);
    (training.tables.test, training.tables.golden) = (PathBuf::new(), PathBuf::new());
    let fingerprint = schemas::manifest::Fingerprint::new()
        .str(&schemas::manifest::hash_file(
            &init_dir.join("model.safetensors"),
        )?)
        .str(&schemas::manifest::hash_file(&train_path)?)
        .json(&training)
        .finish();

    let (hf_cfg, mut model) = load_pretrained::<B>(init_dir, device)?;
    let mut opt_cfg = AdamWConfig::new()
        .with_beta_1(0.9)
        .with_beta_2(0.999)
        .with_epsilon(1e-8)
        .with_weight_decay(cfg.weight_decay as f32);
    if cfg.grad_clip > 0.0 {
        opt_cfg = opt_cfg.with_grad_clipping(Some(
            burn::grad_clipping::GradientClippingConfig::Norm(cfg.grad_clip as f32),
        ));
    }
    let mut optim = opt_cfg.init::<B, MambaLm<B>>();
    let recorder = BinBytesRecorder::<FullPrecisionSettings>::default();

    // Resume.
    let cursor_path = run_dir.join("cursor.json");
    let mut start = 0;
    if cursor_path.is_file() {
        let c: Cursor = serde_json::from_slice(&std::fs::read(&cursor_path)?)
            .with_context(|| format!("{}: bad cursor", cursor_path.display()))?;
        if c.fingerprint != fingerprint {
            bail!(
                "{} was made from another initial model, training table or settings; \
                 use a new --run-dir (or delete this one)",
                run_dir.display()
            );
        }
        let ck = run_dir.join("checkpoints").join(&c.checkpoint);
        let m = std::fs::read(ck.join("model.bin"))
            .with_context(|| format!("reading {}", ck.display()))?;
        let o = std::fs::read(ck.join("optim.bin"))
            .with_context(|| format!("reading {}", ck.display()))?;
        model = model.load_record(
            recorder
                .load(m, device)
                .map_err(|e| anyhow::anyhow!("{}: model record: {e:?}", ck.display()))?,
        );
        optim = optim.load_record(
            recorder
                .load(o, device)
                .map_err(|e| anyhow::anyhow!("{}: optimizer record: {e:?}", ck.display()))?,
        );
        start = c.step;
        eprintln!("resuming {} at step {start} from {}", r.task, ck.display());
    }
    let metrics_path = run_dir.join("metrics.jsonl");
    truncate_metrics(&metrics_path, start)?;

    let bar = schemas::progress::Progress::new(
        &format!("finetune {}", r.task),
        total as u64,
        schemas::progress::Unit::Count("steps"),
    );
    bar.set_position(start as u64);
    for step in start..total {
        let t0 = Instant::now();
        let idx = data.step_indices(step, cfg.batch_size, cfg.seed);
        let targets: usize = idx
            .iter()
            .map(|&i| data.examples[i].ids.len() - data.examples[i].prompt_len)
            .sum();
        let mut accum = GradientsAccumulator::<MambaLm<B>>::new();
        let mut loss_sum = 0.0f64;
        for chunk in idx.chunks(cfg.micro_batch) {
            let refs: Vec<&Encoded> = chunk.iter().map(|&i| &data.examples[i]).collect();
            let pb = qa::pad_batch(&refs, cfg.eos);
            let ids: Tensor<B, 2, Int> =
                Tensor::from_data(TensorData::new(pb.ids, [pb.rows, pb.len]), device);
            let mask: Tensor<B, 2> =
                Tensor::from_data(TensorData::new(pb.mask, [pb.rows, pb.len]), device);
            let logits = model.forward(ids.clone());
            // Divided by the step's target count: summed over micro-batches, the gradient is
            // that of the mean over every answer token of the step.
            let loss = masked_nll_sum(logits, ids, mask) / targets as f64;
            loss_sum += loss.clone().into_scalar().elem::<f64>();
            let grads = loss.backward();
            accum.accumulate(&model, GradientsParams::from_grads(grads, &model));
        }
        let lr = lr_at(step, total, cfg);
        model = optim.step(lr, model, accum.grads());
        let line = serde_json::json!({
            "step": step + 1, "epoch": step / spe, "lr": lr, "loss": loss_sum,
            "examples": idx.len(), "target_tokens": targets, "secs": t0.elapsed().as_secs_f64(),
        });
        append_line(&metrics_path, &line)?;
        bar.inc(1);
        bar.set_message(format!("loss {loss_sum:.4}"));
        let stop = stop_after.is_some_and(|n| step + 1 >= n) && step + 1 < total;
        if (step + 1) % cfg.checkpoint_every.max(1) == 0 || step + 1 == total || stop {
            let name = format!("step-{:08}", step + 1);
            let tmp = run_dir
                .join("checkpoints")
                .join(format!(".{name}.tmp-{}", std::process::id()));
            std::fs::create_dir_all(&tmp)?;
            let m = recorder
                .record(model.clone().into_record(), ())
                .map_err(|e| anyhow::anyhow!("recording model: {e:?}"))?;
            let o = recorder
                .record(optim.to_record(), ())
                .map_err(|e| anyhow::anyhow!("recording optimizer: {e:?}"))?;
            std::fs::write(tmp.join("model.bin"), m)?;
            std::fs::write(tmp.join("optim.bin"), o)?;
            schemas::atomic::commit_dir(&tmp, &run_dir.join("checkpoints").join(&name))?;
            let c = Cursor {
                step: step + 1,
                checkpoint: name,
                fingerprint: fingerprint.clone(),
            };
            schemas::atomic::write_atomic(&cursor_path, &serde_json::to_vec_pretty(&c)?)?;
            prune_checkpoints(&run_dir.join("checkpoints"), cfg.keep_checkpoints.max(1))?;
        }
        if stop {
            bar.finish();
            eprintln!(
                "stopped after step {} of {total} (--stop-after); run again to resume",
                step + 1
            );
            return Ok(None);
        }
    }
    bar.finish();

    // Final HF model (+ tokenizer, so `trainer eval --model` needs nothing else).
    let out = run_dir.join("model");
    let tmp = run_dir.join(format!(".model.tmp-{}", std::process::id()));
    let mut hf = HfConfig::from_config(hf_cfg.config.clone());
    hf.extra = hf_cfg.extra.clone();
    save_pretrained(&tmp, &hf, &model.valid())?;
    let tok_json = tokenizer
        .to_string(false)
        .map_err(|e| anyhow::anyhow!("serializing tokenizer: {e}"))?;
    schemas::atomic::write_atomic(tmp.join("tokenizer.json"), tok_json.as_bytes())?;
    schemas::atomic::commit_dir(&tmp, &out)?;
    Ok(Some(out))
}

fn append_line(path: &Path, v: &serde_json::Value) -> Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))?;
    writeln!(f, "{v}").with_context(|| format!("appending to {}", path.display()))
}

/// Keep only the metric lines of steps `<= step` (the lines a resumed run will not redo).
fn truncate_metrics(path: &Path, step: usize) -> Result<()> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Ok(());
    };
    let mut kept = String::new();
    for line in text.lines() {
        let v: serde_json::Value = match serde_json::from_str(line) {
            Ok(v) => v,
            Err(_) => continue, // a line torn by a kill
        };
        if v.get("step")
            .and_then(|s| s.as_u64())
            .is_some_and(|s| s as usize <= step)
        {
            kept.push_str(line);
            kept.push('\n');
        }
    }
    if kept != text {
        schemas::atomic::write_atomic(path, kept.as_bytes())?;
    }
    Ok(())
}

fn prune_checkpoints(dir: &Path, keep: usize) -> Result<()> {
    let mut names: Vec<String> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("step-"))
        .collect();
    names.sort();
    let n = names.len();
    for old in names.into_iter().take(n.saturating_sub(keep)) {
        std::fs::remove_dir_all(dir.join(&old))
            .with_context(|| format!("removing checkpoint {old}"))?;
    }
    Ok(())
}

/// Answer the task's test questions with the model in `model_dir`; writes under `out`.
#[allow(clippy::too_many_arguments)]
pub fn evaluate<B: ScanBackend>(
    r: &Resolved,
    model_dir: &Path,
    data_dir: &Path,
    tokenizer: &tokenizers::Tokenizer,
    out: &Path,
    device: &B::Device,
) -> Result<TaskResult> {
    let (_, model) = load_pretrained::<B>(model_dir, device)?;
    let examples = qa::read_examples(&data_dir.join(&r.tables.test))?;
    let golden = r.tables.select_golden(
        qa::read_golden(&data_dir.join(&r.tables.golden))?,
        &examples,
    )?;
    let settings = AnswerSettings {
        beams: r.cfg.beams,
        max_new_tokens: r.cfg.max_new_tokens,
        max_len: r.cfg.max_len,
        limit: r.cfg.limit,
        max_contexts: r.cfg.max_contexts,
    };
    let answers = answer::answer_questions(
        &model, tokenizer, r.cfg.eos, &examples, &golden, &settings, device,
    )?;
    let result = TaskResult {
        task: r.task.clone(),
        label: if r.tables.label.is_empty() {
            r.task.clone()
        } else {
            r.tables.label.clone()
        },
        model: model_dir.display().to_string(),
        settings,
        questions_without_context: answers.iter().filter(|q| q.contexts == 0).count(),
        metrics: answer::task_metrics(&answers),
    };
    answer::write_outputs(out, &result, &answers)?;
    Ok(result)
}

/// Resolve the task's settings: `[finetune]`, task overrides, then flags.
pub fn resolve(
    loaded: &Loaded,
    task: &str,
    max_steps: Option<usize>,
    train_limit: Option<usize>,
    limit: Option<usize>,
    max_len: Option<usize>,
) -> Result<Resolved> {
    let Some(t) = loaded.tasks.get(task) else {
        bail!(
            "unknown task {task:?}; the config defines: {}",
            loaded.tasks.keys().cloned().collect::<Vec<_>>().join(", ")
        );
    };
    let mut cfg = loaded.finetune.clone();
    if let Some(v) = t.epochs {
        cfg.epochs = v;
    }
    if let Some(v) = t.lr {
        cfg.lr = v;
    }
    if let Some(v) = t.batch_size {
        cfg.batch_size = v;
    }
    if let Some(v) = t.seed {
        cfg.seed = v;
    }
    cfg.max_steps = max_steps.or(cfg.max_steps);
    cfg.train_limit = train_limit.or(cfg.train_limit);
    cfg.limit = limit.or(cfg.limit);
    cfg.max_len = max_len.unwrap_or(cfg.max_len);
    Ok(Resolved {
        task: task.to_string(),
        cfg,
        tables: t.clone(),
    })
}

/// `trainer finetune`.
pub fn run<B: AutodiffBackend + ScanBackend>(args: Args, device: &B::Device) -> Result<()>
where
    B::InnerBackend: ScanBackend,
{
    let loaded = load_config(args.config.as_deref())?;
    let r = resolve(
        &loaded,
        &args.task,
        args.max_steps,
        args.train_limit,
        args.limit,
        args.max_len,
    )?;
    let data_dir = args
        .data_dir
        .clone()
        .or(loaded.data_dir.clone())
        .unwrap_or_else(|| PathBuf::from("data"));
    let run_dir = args.run_dir.clone().unwrap_or_else(|| {
        data_dir
            .join("runs")
            .join(format!("finetune-{}", args.task))
    });
    let init = resolve_model_dir(&args.init)?;
    let tok_path = args.tokenizer.clone().or(r.cfg.tokenizer.clone());
    let tokenizer = resolve_tokenizer(tok_path.as_deref(), &init)?;
    let Some(model_dir) = train::<B>(
        &r,
        &init,
        &data_dir,
        &tokenizer,
        &run_dir,
        args.stop_after,
        device,
    )?
    else {
        return Ok(());
    };
    println!("finetuned model: {}", model_dir.display());
    if !args.no_eval {
        let out = run_dir.join("eval").join(&args.task);
        let res = evaluate::<B::InnerBackend>(&r, &model_dir, &data_dir, &tokenizer, &out, device)?;
        print!("{}", crate::report::table3_markdown(&[res]));
        println!("wrote {}", out.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_warms_up_then_decays_to_zero() {
        let cfg = FinetuneConfig {
            lr: 1.0,
            warmup_ratio: 0.2,
            ..Default::default()
        };
        let lrs: Vec<f64> = (0..10).map(|s| lr_at(s, 10, &cfg)).collect();
        assert_eq!(lrs[0], 0.5);
        assert_eq!(lrs[1], 1.0);
        assert!((lrs[9] - 1.0 / 8.0).abs() < 1e-12);
        assert_eq!(lrs[2], 1.0, "decay starts after warmup");
        assert!(lrs.windows(2).skip(2).all(|w| w[1] < w[0]));
    }

    #[test]
    fn every_example_once_per_epoch_and_order_depends_on_epoch() {
        let data = FinetuneData {
            examples: (0..10)
                .map(|i| Encoded {
                    ids: vec![i, 0],
                    prompt_len: 1,
                    context_cut: 0,
                })
                .collect(),
            skipped: 0,
            context_cut: 0,
        };
        let epoch = |e: usize| -> Vec<usize> {
            (0..4)
                .flat_map(|s| data.step_indices(e * 4 + s, 3, 7))
                .collect()
        };
        let mut e0 = epoch(0);
        let e1 = epoch(1);
        assert_ne!(e0, e1);
        assert_eq!(data.step_indices(3, 3, 7).len(), 1); // last, partial batch
        e0.sort();
        assert_eq!(e0, (0..10).collect::<Vec<_>>());
        assert_eq!(epoch(1), e1, "deterministic");
    }

    #[test]
    fn config_sections_and_overrides() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.toml");
        std::fs::write(
            &p,
            "[pretrain]\nanything = 1\n[finetune]\nepochs = 2\nlr = 1e-4\n\
             [tasks.bioasq-4b]\nlabel = \"4b\"\ntrain = \"t.arrow\"\ntest = \"x.arrow\"\n\
             golden = \"g.arrow\"\nlr = 3e-5\n",
        )
        .unwrap();
        let l = load_config(Some(&p)).unwrap();
        let r = resolve(&l, "bioasq-4b", Some(5), None, Some(2), None).unwrap();
        assert_eq!(
            (r.cfg.epochs, r.cfg.lr, r.cfg.max_steps, r.cfg.limit),
            (2, 3e-5, Some(5), Some(2))
        );
        assert!(resolve(&l, "bioasq-5b", None, None, None, None).is_err());
        std::fs::write(&p, "[finetune]\nepoch = 2\n").unwrap();
        assert!(format!("{:#}", load_config(Some(&p)).unwrap_err()).contains("epoch"));
        let d = load_config(None).unwrap();
        assert_eq!(d.tasks.len(), 3);
        assert_eq!(
            d.tasks["bioasq-6b"].train,
            PathBuf::from("bioasq/bioasq-6b/train.arrow")
        );
        assert_eq!(d.tasks["bioasq-6b"].batches[4], "6B5");
    }
}
