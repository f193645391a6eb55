//! `trainer finetune`: BioASQ factoid fine-tuning (masked next-token loss on the answer),
//! resumable, then answering the task's test questions (`answer`).
//!
//! Config: `[finetune]` (shared settings) and `[tasks.NAME]` (tables and per-task
//! overrides) of the one TOML; other sections are ignored here. Without a config the three
//! paper tasks `bioasq-4b`, `bioasq-5b`, `bioasq-6b` are defined with the default paths.
//!
//! Training runs on [`crate::session`], the machinery of `trainer pretrain`: the same run
//! directory layout (sled cursor `state.sled`, atomic checkpoints `checkpoints/step-NNNNNNNN/`
//! with weights, AdamW moments, position and metrics log; `run-config.json`, `metrics.jsonl`),
//! the same AdamW (decay groups, global-norm clipping), warmup + cosine schedule, and the same
//! global data order ([`crate::data::IndexOrder`] over the encoded examples, crossing epochs).
//! A killed run resumes from its newest complete checkpoint and ends bit-identical to an
//! uninterrupted one. After training: `model/` (final HF weights + tokenizer), `eval/NAME/`.
//!
//! One optimizer step = `batch_size` examples in micro-batches of `micro_batch` (right-padded);
//! each micro-batch's loss share is its summed answer-token NLL divided by the step's answer
//! tokens, so the accumulated gradient is that of the mean over all answer tokens of the step.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail, ensure};
use burn::module::AutodiffModule;
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::{Int, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use crate::answer::{self, AnswerSettings, TaskResult};
use crate::data::IndexOrder;
use crate::hf::{load_pretrained, save_pretrained};
use crate::loss::masked_nll_sum;
use crate::model::{MambaLm, Precision};
use crate::optim::{AdamWParams, lr_at};
use crate::qa::{self, Encoded, PaddedBatch, QaEncoder};
use crate::scan::ScanBackend;
use schemas::bioasq::{Example, GoldenRow};
use crate::session::{RunSpec, Session, train_step};

/// `[finetune]`: settings shared by every task (a task may override some).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct FinetuneConfig {
    /// tokenizer.json; default: `tokenizer.json` next to the initial model.
    pub tokenizer: Option<PathBuf>,
    /// Prompt + answer length in tokens; longer contexts are cut from the left.
    pub max_len: usize,
    pub epochs: usize,
    /// Peak learning rate: linear warmup over `warmup_ratio` of the steps, then cosine decay
    /// to `min_lr` (the schedule of `trainer pretrain`, [`crate::optim::lr_at`]).
    pub lr: f64,
    pub min_lr: f64,
    pub warmup_ratio: f64,
    /// AdamW ([`crate::optim::AdamW`], PyTorch's update) moments and epsilon.
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    /// Decoupled weight decay of the projection and embedding weights only
    /// ([`crate::optim::decays`]: not `A_log`, `D`, norms, biases, conv1d).
    pub weight_decay: f64,
    /// Max global L2 norm of the step's gradient (0 = no clipping).
    pub clip: f64,
    /// Examples per optimizer step.
    pub batch_size: usize,
    /// Examples per forward/backward (gradient accumulation inside a step).
    pub micro_batch: usize,
    /// Seed of the example order.
    pub seed: u64,
    /// Compute threads (0 = all cores); bit-exact resume needs the same value.
    pub threads: usize,
    /// Dtype of the matrix products while training: "f32", or "bf16" with f32 master weights
    /// (CUDA only; [`Precision`]). Answering runs in f32.
    #[serde(skip_serializing_if = "Precision::is_f32")]
    pub precision: Precision,
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
            min_lr: 0.0,
            warmup_ratio: 0.1,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.01,
            clip: 1.0,
            batch_size: 16,
            micro_batch: 4,
            seed: 42,
            threads: 0,
            precision: Precision::F32,
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
    /// is answered and scored (no context → no answer, scored 0). Empty: the golden test
    /// batches' questions that have a row in the test table ([`Self::select_golden`]).
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

    /// The golden rows of this task's questions: exactly the rows of the golden test batches
    /// (rows from a `*_golden.json` file, never a training file's copy of a test question) —
    /// those of [`batches`](Self::batches), or, when empty, those whose id is a question of the
    /// test table. An id found in two batches is an error (name the batches).
    pub fn select_golden(
        &self,
        golden: Vec<GoldenRow>,
        test: &[Example],
    ) -> Result<Vec<GoldenRow>> {
        let path = self.golden.display();
        let test_ids: std::collections::HashSet<&str> =
            test.iter().map(|e| e.question_id.as_str()).collect();
        for b in &self.batches {
            if !golden.iter().any(|g| g.batch.as_ref() == Some(b)) {
                let mut have: Vec<&str> = golden
                    .iter()
                    .filter_map(|g| g.batch.as_deref())
                    .collect();
                have.sort();
                have.dedup();
                bail!(
                    "{path}: no golden batch {b:?} (batches: {})",
                    have.join(", ")
                );
            }
        }
        let out: Vec<GoldenRow> = golden
            .into_iter()
            .filter(|g| g.in_batch())
            .filter(|g| {
                if self.batches.is_empty() {
                    test_ids.contains(g.question_id.as_str())
                } else {
                    self.batches.iter().any(|b| Some(b) == g.batch.as_ref())
                }
            })
            .collect();
        let mut batch_of: BTreeMap<&str, &str> = BTreeMap::new();
        for g in &out {
            if let Some(other) = batch_of.insert(&g.question_id, g.batch_label()) {
                bail!(
                    "{path}: question {} is in golden batches {other} and {}; list the task's \
                     batches in [tasks.*] batches",
                    g.question_id,
                    g.batch_label()
                );
            }
        }
        if !out.iter().any(|g| g.qtype == "factoid") {
            bail!(
                "{path}: no factoid question of the task in a golden test batch (batches {:?})",
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
    /// Train on these CUDA devices, data parallel (GPU build; as `trainer pretrain --devices`).
    #[arg(long, value_delimiter = ',')]
    pub devices: Vec<usize>,
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

impl FinetuneConfig {
    pub fn adamw(&self) -> AdamWParams {
        AdamWParams {
            beta1: self.beta1,
            beta2: self.beta2,
            eps: self.eps,
            weight_decay: self.weight_decay,
            clip: self.clip,
        }
    }

    /// Optimizer steps of a run over `examples` training examples: `epochs` passes in batches
    /// of `batch_size` (the order crosses epoch boundaries), at most `max_steps`.
    pub fn total_steps(&self, examples: usize) -> u64 {
        let steps = (self.epochs * examples).div_ceil(self.batch_size.max(1));
        steps.min(self.max_steps.unwrap_or(usize::MAX)) as u64
    }

    fn validate(&self) -> Result<()> {
        ensure!(
            self.batch_size >= 1 && self.micro_batch >= 1,
            "[finetune] batch_size and micro_batch must be at least 1"
        );
        ensure!(self.epochs >= 1, "[finetune] epochs must be at least 1");
        ensure!(
            self.checkpoint_every >= 1,
            "[finetune] checkpoint_every must be at least 1"
        );
        ensure!(
            self.lr > 0.0 && self.min_lr >= 0.0 && self.min_lr <= self.lr,
            "[finetune] needs 0 <= min_lr <= lr, lr > 0"
        );
        Ok(())
    }
}

/// Training examples, encoded once.
pub struct FinetuneData {
    pub examples: Vec<Encoded>,
    pub skipped: usize,
    pub context_cut: usize,
}

impl FinetuneData {
    /// Encode the rows of a training table (prompt + `" " + answer + EOS`, at most `max_len`).
    pub fn encode(rows: &[Example], enc: &QaEncoder<'_>, max_len: usize) -> Result<Self> {
        let mut data = FinetuneData {
            examples: Vec::new(),
            skipped: 0,
            context_cut: 0,
        };
        for ex in rows {
            match enc
                .example(ex, max_len)
                .with_context(|| format!("training example {}", ex.id))?
            {
                Some(e) => {
                    data.context_cut += usize::from(e.context_cut > 0);
                    data.examples.push(e);
                }
                None => data.skipped += 1,
            }
        }
        Ok(data)
    }
}

/// The share of one padded micro-batch in a step's loss: its summed answer-token NLL divided by
/// the answer tokens of the whole step (`targets`).
pub fn answer_loss_share<B: AutodiffBackend + ScanBackend>(
    targets: usize,
) -> impl Fn(&MambaLm<B>, &PaddedBatch, &B::Device) -> Result<Tensor<B, 1>> + Sync {
    move |model, pb, device| {
        let ids: Tensor<B, 2, Int> =
            Tensor::from_data(TensorData::new(pb.ids.clone(), [pb.rows, pb.len]), device);
        let mask: Tensor<B, 2> =
            Tensor::from_data(TensorData::new(pb.mask.clone(), [pb.rows, pb.len]), device);
        Ok(masked_nll_sum(model.forward(ids.clone()), ids, mask).div_scalar(targets as f64))
    }
}

/// The settings that shape the trained weights (answering settings may change between runs).
fn training_settings(r: &Resolved) -> Resolved {
    let mut t = r.clone();
    let d = FinetuneConfig::default();
    t.cfg.limit = None;
    t.cfg.max_contexts = None;
    (t.cfg.beams, t.cfg.max_new_tokens) = (d.beams, d.max_new_tokens);
    (t.cfg.checkpoint_every, t.cfg.keep_checkpoints) = (d.checkpoint_every, d.keep_checkpoints);
    (t.cfg.tokenizer, t.cfg.threads) = (None, d.threads);
    (t.tables.test, t.tables.golden, t.tables.batches) = (PathBuf::new(), PathBuf::new(), vec![]);
    t.tables.label = String::new();
    t
}

/// Fine-tune on the task's training table (or resume the run in `run_dir`); returns the final HF
/// model directory, or `None` when stopped early by `stop_after`.
pub fn train<B: AutodiffBackend + ScanBackend>(
    r: &Resolved,
    init_dir: &Path,
    data_dir: &Path,
    tokenizer: &tokenizers::Tokenizer,
    run_dir: &Path,
    stop_after: Option<usize>,
    devices: &[B::Device],
) -> Result<Option<PathBuf>> {
    let device = devices.first().context("no device to train on")?;
    let cfg = &r.cfg;
    cfg.validate()?;
    cfg.precision.check::<B>(device, "[finetune] precision")?;
    let train_path = data_dir.join(&r.tables.train);
    let mut rows = schemas::bioasq::read_examples(&train_path)?;
    rows.truncate(cfg.train_limit.unwrap_or(usize::MAX));
    let enc = QaEncoder {
        tokenizer,
        eos: cfg.eos,
    };
    let data = FinetuneData::encode(&rows, &enc, cfg.max_len)?;
    let n = data.examples.len();
    ensure!(
        n > 0,
        "{}: no usable training example (of {})",
        train_path.display(),
        rows.len()
    );
    let total = cfg.total_steps(n);
    let warmup = (total as f64 * cfg.warmup_ratio).round() as u64;
    eprintln!(
        "finetune {}: {n} examples ({} skipped, {} contexts cut), {total} steps",
        r.task, data.skipped, data.context_cut
    );
    let init_hash = schemas::manifest::hash_file(&init_dir.join(crate::hf::WEIGHTS_FILE))?;
    let spec = RunSpec {
        run_dir,
        run_config: serde_json::json!({"init": init_hash, "run": training_settings(r)}),
        what: "initial model or [finetune]/[tasks]",
        data_fingerprint: format!("table:{}", schemas::manifest::hash_file(&train_path)?),
        data_what: "training table",
        seed: cfg.seed,
        adamw: cfg.adamw(),
        keep_checkpoints: cfg.keep_checkpoints,
        allow_data_change: false,
    };
    let mut run = Session::<B>::open(spec, || load_pretrained::<B>(init_dir, device), device)?;
    run.model = run.model.with_precision(cfg.precision);
    run.note_devices(devices.len());
    let end = stop_after.map_or(total, |s| (s as u64).min(total));
    let bar = schemas::progress::Progress::new(
        &format!("finetune {}", r.task),
        end,
        schemas::progress::Unit::Count("steps"),
    );
    bar.set_position(run.state.step);
    let mut order = IndexOrder::new(n, cfg.seed, run.state.data)?;
    while run.state.step < end {
        let t0 = Instant::now();
        let (epoch, lr) = (
            order.pos.epoch,
            lr_at(run.state.step, total, warmup, cfg.lr, cfg.min_lr),
        );
        let batch: Vec<&Encoded> = order
            .next_indices(cfg.batch_size)
            .into_iter()
            .map(|i| &data.examples[i])
            .collect();
        let targets: usize = batch.iter().map(|e| e.ids.len() - e.prompt_len).sum();
        let micro: Vec<PaddedBatch> = batch
            .chunks(cfg.micro_batch)
            .map(|c| qa::pad_batch(c, cfg.eos))
            .collect();
        let share = answer_loss_share::<B>(targets);
        let (model, loss, grad_norm) =
            train_step(run.model, &mut run.optimizer, devices, &micro, lr, share)
                .with_context(|| format!("finetune {} step {}", r.task, run.state.step + 1))?;
        run.model = model;
        run.state.step += 1;
        run.state.data = order.pos;
        run.state.tokens_seen += batch.iter().map(|e| e.ids.len() as u64).sum::<u64>();
        run.log(serde_json::json!({
            "step": run.state.step, "epoch": epoch, "lr": lr, "loss": loss, "grad_norm": grad_norm,
            "examples": batch.len(), "target_tokens": targets, "secs": t0.elapsed().as_secs_f64(),
        }))?;
        bar.inc(1);
        bar.set_message(format!("loss {loss:.4}"));
        if run.state.step % cfg.checkpoint_every as u64 == 0 || run.state.step == end {
            run.checkpoint()?;
        }
    }
    bar.finish();
    if let Err(e) = crate::plot::write_loss_png(run_dir) {
        eprintln!("warning: loss plot not written: {e:#}");
    }
    if end < total {
        eprintln!("stopped after step {end} of {total} (--stop-after); run again to resume");
        return Ok(None);
    }

    // Final HF model (+ tokenizer, so `trainer eval --model` needs nothing else).
    let out = run_dir.join("model");
    let tmp = schemas::atomic::temp_path_for(&out);
    save_pretrained(&tmp, &run.hf_config, &run.model.valid())?;
    let tok_json = tokenizer
        .to_string(false)
        .map_err(|e| anyhow::anyhow!("serializing tokenizer: {e}"))?;
    schemas::atomic::write_atomic(tmp.join("tokenizer.json"), tok_json.as_bytes())?;
    schemas::atomic::commit_dir(&tmp, &out)?;
    Ok(Some(out))
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
    let examples = schemas::bioasq::read_examples(&data_dir.join(&r.tables.test))?;
    let golden = r.tables.select_golden(
        schemas::bioasq::read_golden(&data_dir.join(&r.tables.golden))?,
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

/// `trainer finetune`: on the CPU, or with `--devices` on CUDA (GPU build).
pub fn run_cli(args: Args) -> Result<()> {
    if args.devices.is_empty() {
        return run::<crate::AutodiffCpu>(args, &[Default::default()]);
    }
    #[cfg(feature = "cuda")]
    {
        let devices = crate::session::cuda_devices(&args.devices);
        run::<crate::session::CudaTrain>(args, &devices)
    }
    #[cfg(not(feature = "cuda"))]
    Err(crate::session::needs_gpu_build(&args.devices))
}

/// `trainer finetune` on `devices` (the first one also answers the test questions).
pub fn run<B: AutodiffBackend + ScanBackend>(args: Args, devices: &[B::Device]) -> Result<()>
where
    B::InnerBackend: ScanBackend,
{
    let device = devices.first().context("no device to train on")?;
    let loaded = load_config(args.config.as_deref())?;
    crate::session::pin_threads(loaded.finetune.threads);
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
        devices,
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

    /// One step over two micro-batches (one example each, different lengths) = one micro-batch
    /// of both (padded): the loss scaling makes accumulation exact, padding scores nothing.
    #[test]
    fn accumulated_answer_loss_equals_the_full_batch() {
        use crate::optim::AdamW;
        type B = burn::backend::Autodiff<burn::backend::NdArray<f32>>;
        let dev = Default::default();
        let mut c = crate::MambaConfig::new(32, 16, 2);
        c.state_size = 4;
        let model = c.init_seeded::<B>(&dev, 5);
        let a = Encoded {
            ids: (0..14).map(|i| (i * 7) % 31 + 1).collect(),
            prompt_len: 10,
            context_cut: 0,
        };
        let b = Encoded {
            ids: (0..9).map(|i| (i * 3) % 31 + 1).collect(),
            prompt_len: 6,
            context_cut: 0,
        };
        let targets = 4 + 3;
        let p = FinetuneConfig::default().adamw();
        let (mut o1, mut o2) = (AdamW::<B>::new(p.clone()), AdamW::<B>::new(p));
        let micro = [qa::pad_batch(&[&a], 0), qa::pad_batch(&[&b], 0)];
        let (m1, l1, n1) = train_step(
            model.clone(),
            &mut o1,
            &[dev],
            &micro,
            1e-2,
            answer_loss_share::<B>(targets),
        )
        .unwrap();
        let full = [qa::pad_batch(&[&a, &b], 0)];
        let (m2, l2, n2) = train_step(
            model,
            &mut o2,
            &[dev],
            &full,
            1e-2,
            answer_loss_share::<B>(targets),
        )
        .unwrap();
        assert!((l1 - l2).abs() < 1e-5 * l2, "{l1} vs {l2}");
        assert!((n1 - n2).abs() < 1e-4 * n2, "{n1} vs {n2}");
        // The loss is the mean answer-token NLL: near ln(32) for a fresh model.
        assert!((l1 - 32f64.ln()).abs() < 0.5, "{l1}");
        let (t1, t2) = (m1.hf_tensors().unwrap(), m2.hf_tensors().unwrap());
        for (x, y) in t1.iter().zip(&t2) {
            for (u, v) in x.bytes.chunks(4).zip(y.bytes.chunks(4)) {
                let u = f32::from_le_bytes(u.try_into().unwrap());
                let v = f32::from_le_bytes(v.try_into().unwrap());
                assert!((u - v).abs() < 1e-5, "{}: {u} vs {v}", x.name);
            }
        }
    }

    /// The shared golden table also holds the training file's copy of a leaked test question
    /// (same id, no batch): the task scores exactly the golden test batches' questions.
    #[test]
    fn golden_selection_is_exactly_the_test_batches_questions() {
        let g = |id: &str, batch: &str, in_batch: bool| GoldenRow {
            question_id: id.into(),
            qtype: "factoid".into(),
            body: format!("question {id}"),
            exact_answer: vec![vec![format!("answer {id}")]],
            documents: vec![],
            batch: in_batch.then(|| batch.to_string()),
            year: None,
            source_file: if in_batch {
                format!("{batch}_golden.json")
            } else {
                batch.to_string()
            },
        };
        let golden = || {
            vec![
                g("leaked", "training-sample.json", false),
                g("t1", "training-sample.json", false),
                g("leaked", "B1", true),
                g("q2", "B1", true),
                g("q3", "B2", true),
                g("other", "C1", true),
            ]
        };
        let ex = |qid: &str| Example {
            id: format!("{qid}_001"),
            question_id: qid.into(),
            question: String::new(),
            context: String::new(),
            answer_text: None,
            answer_start: None,
            pmid: None,
            context_source: schemas::bioasq::source::SNIPPET,
            split: schemas::bioasq::Split::Test,
            source_file: "test.json".into(),
        };
        let test = [ex("leaked"), ex("q2"), ex("q3"), ex("q3")];
        let ids = |v: &[GoldenRow]| {
            v.iter()
                .map(|g| format!("{}@{}", g.question_id, g.batch_label()))
                .collect::<Vec<_>>()
        };
        let want = ["leaked@B1", "q2@B1", "q3@B2"];
        // By the test table's ids.
        let t = TaskConfig::default();
        assert_eq!(ids(&t.select_golden(golden(), &test).unwrap()), want);
        // By batches.
        let t = TaskConfig {
            batches: vec!["B1".into(), "B2".into()],
            ..Default::default()
        };
        let sel = t.select_golden(golden(), &test).unwrap();
        assert_eq!(ids(&sel), want);
        assert_eq!(answer::factoid_questions(&sel).unwrap().len(), 3);
        // A batch that is not there, and an id in two batches, are errors.
        let t = TaskConfig {
            batches: vec!["B9".into()],
            ..Default::default()
        };
        let e = format!("{:#}", t.select_golden(golden(), &test).unwrap_err());
        assert!(e.contains("B9") && e.contains("B1, B2, C1"), "{e}");
        let mut twice = golden();
        twice.push(g("q2", "B2", true));
        let e = format!(
            "{:#}",
            TaskConfig::default()
                .select_golden(twice, &test)
                .unwrap_err()
        );
        assert!(e.contains("q2") && e.contains("B1 and B2"), "{e}");
    }

    #[test]
    fn steps_cover_the_epochs_and_respect_max_steps() {
        let mut c = FinetuneConfig {
            epochs: 3,
            batch_size: 4,
            ..Default::default()
        };
        assert_eq!(c.total_steps(10), 8); // 30 examples in batches of 4
        c.max_steps = Some(5);
        assert_eq!(c.total_steps(10), 5);
        c.batch_size = 0;
        assert!(c.validate().is_err());
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
