//! The one TOML config (`configs/*.toml`) as the trainer reads it, loaded once per command:
//! `[data] dir`, `[model]`, `[pretrain]`, `[finetune]` and `[tasks.NAME]`. Each command reads the
//! sections it uses ([`Section`]) and ignores the others — the pipeline's (`[parse]`,
//! `[tokenize]`, `[bioasq]`, …) and the other commands' — while an unknown key inside a section it
//! reads is an error. Without a config every section has its defaults (the paper's recipe) and
//! the three paper tasks `bioasq-4b`, `bioasq-5b`, `bioasq-6b` are defined.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail, ensure};
use schemas::Layout;
use schemas::layout;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::backend::DeviceRequest;
use crate::model::{Arch, Mamba2Config, MambaConfig, ModelConfig, Precision};
use crate::train::optim::{AdamWParams, Schedule, ScheduleKind};

/// The trainer's sections of one config file; those a command did not ask for keep their
/// defaults.
#[derive(Clone, Debug, Default)]
pub struct Config {
    /// `[data] dir`; `--data-dir` overrides it, `data` when neither is given.
    pub data_dir: Option<PathBuf>,
    /// `[train]`: where every model command runs.
    pub train: TrainSection,
    pub model: ModelSection,
    pub pretrain: PretrainConfig,
    pub finetune: FinetuneConfig,
    pub tasks: BTreeMap<String, TaskConfig>,
}

/// A section of the trainer's (`[data]` and `[train]` are always read).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Section {
    Model,
    Pretrain,
    Finetune,
    Tasks,
}

impl Section {
    /// What `trainer pretrain` reads.
    pub const PRETRAIN: &[Section] = &[Section::Model, Section::Pretrain];
    /// What `trainer finetune` and `trainer eval` read.
    pub const FINETUNE: &[Section] = &[Section::Finetune, Section::Tasks];
    pub const ALL: &[Section] = &[
        Section::Model,
        Section::Pretrain,
        Section::Finetune,
        Section::Tasks,
    ];

    fn name(self) -> &'static str {
        match self {
            Section::Model => "model",
            Section::Pretrain => "pretrain",
            Section::Finetune => "finetune",
            Section::Tasks => "tasks",
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct DataSection {
    dir: Option<PathBuf>,
}

/// `[train]`: settings of every command that runs the model.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainSection {
    /// `auto`, `cpu`, `cuda`, `cuda:N`, `cuda:0,1,…`, `wgpu`, `wgpu:N` ([`DeviceRequest`]);
    /// `--device` overrides it; `auto` when neither is given.
    pub device: Option<DeviceRequest>,
}

impl Config {
    /// Read `path` (or take the defaults when `None`) and check `sections`.
    pub fn load(path: Option<&Path>, sections: &[Section]) -> Result<Self> {
        let name = path.map_or("the default config".to_string(), |p| {
            p.display().to_string()
        });
        let table: toml::Table = match path {
            Some(p) => schemas::config_file::read(p)?,
            None => toml::Table::new(),
        };
        let wanted = |s: Section| sections.contains(&s);
        let mut c = Config {
            data_dir: section::<DataSection>(&table, "data", &name)?.dir,
            train: section(&table, "train", &name)?,
            ..Config::default()
        };
        if wanted(Section::Model) {
            c.model = section(&table, Section::Model.name(), &name)?;
        }
        if wanted(Section::Pretrain) {
            c.pretrain = section(&table, Section::Pretrain.name(), &name)?;
            c.pretrain
                .validate()
                .with_context(|| format!("in {name}"))?;
        }
        if wanted(Section::Finetune) {
            c.finetune = section(&table, Section::Finetune.name(), &name)?;
            c.finetune
                .validate()
                .with_context(|| format!("in {name}"))?;
        }
        if wanted(Section::Tasks) {
            let tasks: BTreeMap<String, TaskConfig> =
                section(&table, Section::Tasks.name(), &name)?;
            c.tasks = tasks
                .into_iter()
                .map(|(task, t)| {
                    t.validate(&task).with_context(|| format!("in {name}"))?;
                    let t = t.with_default_tables(&task);
                    Ok((task, t))
                })
                .collect::<Result<_>>()?;
            if c.tasks.is_empty() {
                for y in ["4b", "5b", "6b"] {
                    c.tasks
                        .insert(format!("bioasq-{y}"), TaskConfig::for_year(y));
                }
            }
        }
        Ok(c)
    }

    /// The data directory: `flag`, else `[data] dir`, else `data`.
    pub fn data_dir(&self, flag: Option<&Path>) -> PathBuf {
        flag.map(Path::to_path_buf)
            .or_else(|| self.data_dir.clone())
            .unwrap_or_else(|| PathBuf::from("data"))
    }

    /// Resolve the task's settings: `[finetune]`, task overrides, then flags.
    pub fn resolve_task(
        &self,
        task: &str,
        max_steps: Option<usize>,
        train_limit: Option<usize>,
        limit: Option<usize>,
        max_len: Option<usize>,
    ) -> Result<Resolved> {
        let Some(t) = self.tasks.get(task) else {
            bail!(
                "unknown task {task:?}; the config defines: {}",
                self.tasks.keys().cloned().collect::<Vec<_>>().join(", ")
            );
        };
        let mut cfg = self.finetune.clone();
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
        if let Some(v) = t.max_new_tokens {
            cfg.max_new_tokens = v;
        }
        if let Some(v) = t.list_answers {
            cfg.list_answers = v;
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
}

/// Section `name` of `table` (its defaults when absent).
fn section<T: DeserializeOwned + Default>(
    table: &toml::Table,
    name: &str,
    file: &str,
) -> Result<T> {
    match table.get(name) {
        None => Ok(T::default()),
        Some(v) => v
            .clone()
            .try_into()
            .with_context(|| format!("parsing [{name}] of {file}")),
    }
}

/// `[model]`: initialize from an HF directory (`init`) or from scratch with these dimensions.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ModelSection {
    /// HF directory (config.json + model.safetensors, or mamba_ssm's pytorch_model.bin; either
    /// architecture, read from its config.json); `--init` overrides it.
    pub init: Option<PathBuf>,
    /// Architecture of a from-scratch model: `"mamba"` (Mamba-1, the default) or `"mamba2"`.
    /// Left out of the recorded recipe for Mamba-1, so older runs still resume.
    #[serde(skip_serializing_if = "Arch::is_mamba")]
    pub arch: Arch,
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub state_size: usize,
    pub expand: usize,
    pub conv_kernel: usize,
    /// Mamba-2 only: channels per head (num_heads = expand · hidden_size / head_dim; default 64).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub head_dim: Option<usize>,
    /// Mamba-2 only: groups of B and C shared by the heads (default 1).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub n_groups: Option<usize>,
    /// Mamba-2 only: SSD chunk length (default 256).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub chunk_size: Option<usize>,
    /// Seed of the from-scratch (mamba_ssm) initialization.
    pub init_seed: u64,
}

impl Default for ModelSection {
    fn default() -> Self {
        let c = MambaConfig::mamba_130m();
        Self {
            init: None,
            arch: Arch::Mamba,
            vocab_size: c.vocab_size,
            hidden_size: c.hidden_size,
            num_hidden_layers: c.num_hidden_layers,
            state_size: c.state_size,
            expand: c.expand,
            conv_kernel: c.conv_kernel,
            head_dim: None,
            n_groups: None,
            chunk_size: None,
            init_seed: 0,
        }
    }
}

impl ModelSection {
    /// The from-scratch model these settings describe (errors name the `[model]` key).
    pub fn scratch_config(&self) -> Result<ModelConfig> {
        match self.arch {
            Arch::Mamba => {
                for (key, v) in [
                    ("head_dim", self.head_dim),
                    ("n_groups", self.n_groups),
                    ("chunk_size", self.chunk_size),
                ] {
                    ensure!(
                        v.is_none(),
                        "[model] {key} is a Mamba-2 setting; set arch = \"mamba2\" or remove it"
                    );
                }
                let mut c =
                    MambaConfig::new(self.vocab_size, self.hidden_size, self.num_hidden_layers);
                c.state_size = self.state_size;
                c.expand = self.expand;
                c.conv_kernel = self.conv_kernel;
                Ok(c.into())
            }
            Arch::Mamba2 => {
                let mut c =
                    Mamba2Config::new(self.vocab_size, self.hidden_size, self.num_hidden_layers);
                c.state_size = self.state_size;
                c.expand = self.expand;
                c.conv_kernel = self.conv_kernel;
                if let Some(v) = self.head_dim {
                    c.head_dim = v;
                }
                if let Some(v) = self.n_groups {
                    c.n_groups = v;
                }
                if let Some(v) = self.chunk_size {
                    c.chunk_size = v;
                }
                c.validate().context("[model]")?;
                Ok(c.into())
            }
        }
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
    /// Dtype of the matrix products: "f32" (strict; CPU, wgpu), "tf32" or "bf16" with f32
    /// master weights (CUDA only; [`Precision`]); unset: the backend's own ([`Precision::of`]:
    /// f32, TF32 on CUDA). Left out of the recorded recipe when unset, so older runs resume.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub precision: Option<Precision>,
    // The options below are left out of the recorded recipe when unset, so runs started before
    // they existed still resume.
    /// Passes over the training data (the sum of every mixed domain's training sequences); when
    /// set, the schedule's length is `ceil(epochs · sequences / (micro_batch · grad_accum))` and
    /// `steps` is ignored.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub epochs: Option<f64>,
    /// `"cosine"` (warmup, cosine to `min_lr`) or `"wsd"` (warmup, `stable_fraction` of the steps
    /// at the peak, cosine to `min_lr`).
    #[serde(skip_serializing_if = "is_default")]
    pub schedule: ScheduleKind,
    /// WSD: the share of the steps at the peak learning rate after the warmup.
    #[serde(skip_serializing_if = "is_default")]
    pub stable_fraction: f64,
    /// Decay of the exponential moving average of the weights (e.g. 0.999); none when unset.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ema: Option<f64>,
    /// `trainer export` writes the moving average rather than the last weights.
    #[serde(skip_serializing_if = "is_default")]
    pub export_ema: bool,
    /// Label smoothing of the training loss (validation and perplexity stay plain NLL).
    #[serde(skip_serializing_if = "is_default")]
    pub label_smoothing: f64,
    /// Layer-wise learning-rate decay ([`AdamWParams::layer_lr_decay`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub layer_lr_decay: Option<f64>,
    /// Weight decay by parameter group: HF-name substring → decay ([`AdamWParams::decay_of`]).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub weight_decay_groups: BTreeMap<String, f64>,
    /// `[pretrain.mix]`: the share of training sequences each domain gives (`pubmed` =
    /// `shards/{train,val}`, any other name `shards/<name>/{train,val}`); weights are normalised.
    /// Empty: PubMed alone.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub mix: BTreeMap<String, f64>,
}

fn is_default<T: Default + PartialEq>(v: &T) -> bool {
    *v == T::default()
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
            precision: None,
            epochs: None,
            schedule: ScheduleKind::Cosine,
            stable_fraction: 0.0,
            ema: None,
            export_ema: false,
            label_smoothing: 0.0,
            layer_lr_decay: None,
            weight_decay_groups: BTreeMap::new(),
            mix: BTreeMap::new(),
        }
    }
}

impl PretrainConfig {
    /// The learning-rate schedule over `total` steps.
    pub fn schedule_over(&self, total: u64) -> Schedule {
        let warmup = self
            .warmup_steps
            .unwrap_or_else(|| (total as f64 * self.warmup_fraction).round() as u64);
        Schedule {
            kind: self.schedule,
            total,
            warmup,
            stable: (total as f64 * self.stable_fraction).round() as u64,
            peak: self.lr,
            min_lr: self.min_lr,
        }
    }
    /// Sequences per optimizer step.
    pub fn sequences_per_step(&self) -> u64 {
        (self.micro_batch * self.grad_accum) as u64
    }
    /// The domains trained on, with their weights: `[pretrain.mix]`, else PubMed alone.
    pub fn domains(&self) -> Vec<(String, f64)> {
        if self.mix.is_empty() {
            vec![(schemas::layout::PUBMED.to_string(), 1.0)]
        } else {
            self.mix.iter().map(|(k, v)| (k.clone(), *v)).collect()
        }
    }
    pub fn warmup(&self) -> u64 {
        self.warmup_steps
            .unwrap_or_else(|| (self.steps as f64 * self.warmup_fraction).round() as u64)
    }
    pub fn tokens_per_step(&self) -> u64 {
        (self.micro_batch * self.grad_accum * self.seq_len) as u64
    }
    pub fn validate(&self) -> Result<()> {
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
        ensure!(
            (0.0..1.0).contains(&self.stable_fraction)
                && self.warmup_fraction + self.stable_fraction <= 1.0,
            "[pretrain] stable_fraction must be within 0..1 and, with warmup_fraction, at most 1"
        );
        ensure!(
            self.stable_fraction == 0.0 || self.schedule == ScheduleKind::Wsd,
            "[pretrain] stable_fraction is a setting of schedule = \"wsd\""
        );
        if let Some(d) = self.ema {
            ensure!(
                (0.0..1.0).contains(&d),
                "[pretrain] ema = {d}: the decay must be within 0..1"
            );
        }
        ensure!(
            !self.export_ema || self.ema.is_some(),
            "[pretrain] export_ema needs ema (the decay of the average)"
        );
        ensure!(
            (0.0..1.0).contains(&self.label_smoothing),
            "[pretrain] label_smoothing must be within 0..1"
        );
        if let Some(d) = self.layer_lr_decay {
            ensure!(
                d > 0.0 && d <= 1.0,
                "[pretrain] layer_lr_decay = {d}: expected 0 < d <= 1"
            );
        }
        if let Some(e) = self.epochs {
            ensure!(e > 0.0, "[pretrain] epochs must be positive");
        }
        for (name, w) in &self.mix {
            ensure!(
                *w > 0.0 && w.is_finite(),
                "[pretrain.mix] {name} = {w}: weights must be positive"
            );
            ensure!(
                !name.is_empty()
                    && name.bytes().all(|b| b.is_ascii_lowercase()
                        || b.is_ascii_digit()
                        || b"-_".contains(&b))
                    && name != schemas::layout::TRAIN
                    && name != schemas::layout::VAL,
                "[pretrain.mix] {name:?}: a domain is `pubmed` or a corpus name ([a-z0-9_-], not train/val)"
            );
        }
        Ok(())
    }
}

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
    /// to `min_lr` (the schedule of `trainer pretrain`, [`crate::train::optim::lr_at`]).
    pub lr: f64,
    pub min_lr: f64,
    pub warmup_ratio: f64,
    /// AdamW ([`crate::train::optim::AdamW`], PyTorch's update) moments and epsilon.
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    /// Decoupled weight decay of the projection and embedding weights only
    /// ([`crate::train::optim::decays`]: not `A_log`, `D`, norms, biases, conv1d).
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
    /// Dtype of the matrix products while training: "f32", "tf32" or "bf16", as
    /// `[pretrain] precision`; unset: the backend's own. Answering runs in f32 storage.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub precision: Option<Precision>,
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
    /// Answer only the first N test questions of each type (demo, tests).
    pub limit: Option<usize>,
    /// Use at most K contexts per test question (demo, tests).
    pub max_contexts: Option<usize>,
    pub eos: u32,
    /// List questions: at most this many entities per answer ([`crate::eval::answer`]).
    #[serde(skip_serializing_if = "is_default_list_answers")]
    pub list_answers: usize,
}

/// The default of `[finetune] list_answers`.
pub const LIST_ANSWERS: usize = 5;

fn is_default_list_answers(n: &usize) -> bool {
    *n == LIST_ANSWERS
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
            precision: None,
            max_steps: None,
            train_limit: None,
            checkpoint_every: 100,
            keep_checkpoints: 2,
            beams: 5,
            max_new_tokens: 16,
            limit: None,
            max_contexts: None,
            eos: 0,
            list_answers: LIST_ANSWERS,
        }
    }
}

/// What a task trains on and answers: a BioASQ exact-answer type, or PubMedQA.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TaskKind {
    Factoid,
    Yesno,
    List,
    Pubmedqa,
}

impl TaskKind {
    /// The BioASQ question type (`type` column) of this kind; `None` for PubMedQA.
    pub fn qtype(self) -> Option<&'static str> {
        use schemas::bioasq::qtype;
        match self {
            TaskKind::Factoid => Some(qtype::FACTOID),
            TaskKind::Yesno => Some(qtype::YESNO),
            TaskKind::List => Some(qtype::LIST),
            TaskKind::Pubmedqa => None,
        }
    }
}

/// `kind` of `[tasks.NAME]`: one kind (`kind = "yesno"`) or several BioASQ types trained together
/// and each answered its way (`kind = ["yesno", "list"]`). Default: factoid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskKinds(pub Vec<TaskKind>);

impl Default for TaskKinds {
    fn default() -> Self {
        TaskKinds(vec![TaskKind::Factoid])
    }
}

impl TaskKinds {
    pub fn is_factoid_only(&self) -> bool {
        *self == TaskKinds::default()
    }
    pub fn is_pubmedqa(&self) -> bool {
        self.0.contains(&TaskKind::Pubmedqa)
    }
    pub fn contains(&self, k: TaskKind) -> bool {
        self.0.contains(&k)
    }
    /// The BioASQ question types, in the order given.
    pub fn qtypes(&self) -> Vec<&'static str> {
        self.0.iter().filter_map(|k| k.qtype()).collect()
    }
}

impl Serialize for TaskKinds {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0.as_slice() {
            [one] => one.serialize(s),
            many => many.serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for TaskKinds {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum OneOrMany {
            One(TaskKind),
            Many(Vec<TaskKind>),
        }
        let kinds = match OneOrMany::deserialize(d).map_err(|_| {
            serde::de::Error::custom(
                "kind: expected \"factoid\", \"yesno\", \"list\", \"pubmedqa\" or a list of \
                 the BioASQ ones, e.g. [\"yesno\", \"list\"]",
            )
        })? {
            OneOrMany::One(k) => vec![k],
            OneOrMany::Many(v) => v,
        };
        Ok(TaskKinds(kinds))
    }
}

/// The PubMedQA settings of the paper (Jin et al., 2019).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PubmedqaSetting {
    /// Question + contexts (the abstract without its conclusion): the benchmark.
    #[default]
    ReasoningRequired,
    /// Question + contexts + the long answer (the conclusion).
    ReasoningFree,
}

/// `[tasks.NAME]`: how to fine-tune on and score task NAME — BioASQ (tables `pipeline bioasq`
/// builds from `[bioasq.tasks.NAME]`) or PubMedQA (`pipeline pubmedqa`); per-task overrides of
/// `[finetune]`. Keys left at their defaults stay out of a run's recorded recipe, so runs made
/// before a key existed still resume.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(default, deny_unknown_fields)]
pub struct TaskConfig {
    /// Row label in the results table, e.g. `4b`; default: the task name.
    pub label: String,
    /// What the task trains on and answers: `"factoid"` (default), `"yesno"`, `"list"`, several
    /// BioASQ types (`["yesno", "list"]`), or `"pubmedqa"` ([`TaskKinds`]).
    #[serde(skip_serializing_if = "TaskKinds::is_factoid_only")]
    pub kind: TaskKinds,
    /// Tables relative to the data dir; default: where `pipeline bioasq` writes task NAME's
    /// (`bioasq/NAME/train.arrow`, `bioasq/NAME/test.arrow`, `bioasq/golden.arrow`), or for
    /// PubMedQA where `pipeline pubmedqa` writes (`pubmedqa/train.arrow`, `pubmedqa/test.arrow`;
    /// the test table holds the gold labels, `golden` is not used).
    pub train: PathBuf,
    pub test: PathBuf,
    pub golden: PathBuf,
    /// BioASQ: golden test batches of the task (e.g. `4B1`…`4B5`): each of their questions of
    /// the task's kinds is answered and scored (no context → no answer, scored 0; yes/no
    /// questions are then answered from the question alone). Empty: the golden test batches'
    /// questions that have a row in the test table ([`crate::eval::golden::select_golden`]).
    pub batches: Vec<String>,
    pub epochs: Option<usize>,
    pub lr: Option<f64>,
    pub batch_size: Option<usize>,
    pub seed: Option<u64>,
    /// PubMedQA: `"reasoning-required"` (default) or `"reasoning-free"` ([`PubmedqaSetting`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub setting: Option<PubmedqaSetting>,
    /// PubMedQA: leave this cross-validation fold (0–9) out of training (a CV run).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dev_fold: Option<u32>,
    /// Overrides `[finetune] max_new_tokens` for this task (list answers are longer).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_new_tokens: Option<usize>,
    /// Overrides `[finetune] list_answers` for this task.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub list_answers: Option<usize>,
}

impl TaskConfig {
    /// The defaults of task `bioasq-{y}` (e.g. `4b`): label `{y}`, batches `{Y}1`…`{Y}5`, the
    /// tables of [`Self::with_default_tables`].
    pub fn for_year(y: &str) -> Self {
        TaskConfig {
            label: y.to_string(),
            batches: (1..=5)
                .map(|i| format!("{}{i}", y.to_uppercase()))
                .collect(),
            ..Default::default()
        }
        .with_default_tables(&format!("bioasq-{y}"))
    }

    /// Tables not given default to where `pipeline bioasq` writes those of task `name`
    /// ([`schemas::Layout::bioasq_table`], [`schemas::Layout::bioasq_golden`]), or for a PubMedQA
    /// task where `pipeline pubmedqa` writes ([`schemas::Layout::pubmedqa_table`]).
    pub fn with_default_tables(mut self, name: &str) -> Self {
        let tables = Layout::relative();
        let (train, test) = if self.kind.is_pubmedqa() {
            (
                tables.pubmedqa_table(layout::TRAIN),
                tables.pubmedqa_table(layout::TEST),
            )
        } else {
            (
                tables.bioasq_table(name, layout::TRAIN),
                tables.bioasq_table(name, layout::TEST),
            )
        };
        for (path, default) in [
            (&mut self.train, train),
            (&mut self.test, test),
            (&mut self.golden, tables.bioasq_golden()),
        ] {
            if path.as_os_str().is_empty() {
                *path = default;
            }
        }
        self
    }

    /// Check the keys against the kind: `kind` not empty, each kind once, PubMedQA alone;
    /// `setting` and `dev_fold` only for PubMedQA, `dev_fold` below the number of folds.
    pub fn validate(&self, name: &str) -> Result<()> {
        let k = &self.kind.0;
        ensure!(!k.is_empty(), "[tasks.{name}] kind: give at least one kind");
        let mut sorted = k.clone();
        sorted.sort();
        sorted.dedup();
        ensure!(
            sorted.len() == k.len(),
            "[tasks.{name}] kind: a kind is listed twice"
        );
        if self.kind.is_pubmedqa() {
            ensure!(
                k.len() == 1,
                "[tasks.{name}] kind: pubmedqa cannot be combined with BioASQ types"
            );
            if let Some(f) = self.dev_fold {
                ensure!(
                    f < schemas::pubmedqa::FOLDS,
                    "[tasks.{name}] dev_fold = {f}: the folds are 0..{}",
                    schemas::pubmedqa::FOLDS
                );
            }
        } else {
            ensure!(
                self.setting.is_none() && self.dev_fold.is_none(),
                "[tasks.{name}] setting and dev_fold are PubMedQA keys (kind = \"pubmedqa\")"
            );
        }
        Ok(())
    }
}

/// `adamw()`: the optimizer settings of a recipe (`[pretrain]` and `[finetune]` name them alike).
macro_rules! adamw_settings {
    ($($section:ty),*) => {$(
        impl $section {
            pub fn adamw(&self) -> AdamWParams {
                AdamWParams {
                    beta1: self.beta1,
                    beta2: self.beta2,
                    eps: self.eps,
                    weight_decay: self.weight_decay,
                    clip: self.clip,
                    ..AdamWParams::default()
                }
            }
        }
    )*};
}
adamw_settings!(FinetuneConfig);

impl PretrainConfig {
    /// The optimizer settings, with the parameter groups only pretraining has.
    pub fn adamw(&self) -> AdamWParams {
        AdamWParams {
            beta1: self.beta1,
            beta2: self.beta2,
            eps: self.eps,
            weight_decay: self.weight_decay,
            clip: self.clip,
            layer_lr_decay: self.layer_lr_decay,
            weight_decay_groups: self.weight_decay_groups.clone(),
        }
    }
}

/// Settings of one task after overrides.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Resolved {
    pub task: String,
    pub cfg: FinetuneConfig,
    pub tables: TaskConfig,
}

impl Resolved {
    /// The task's kinds ([`TaskConfig::kind`]).
    pub fn kinds(&self) -> &TaskKinds {
        &self.tables.kind
    }

    /// The task's row label in reports: its configured `label`, else the task name.
    pub fn label(&self) -> String {
        if self.tables.label.is_empty() {
            self.task.clone()
        } else {
            self.tables.label.clone()
        }
    }
}

impl FinetuneConfig {
    /// Optimizer steps of a run over `examples` training examples: `epochs` passes in batches
    /// of `batch_size` (the order crosses epoch boundaries), at most `max_steps`.
    pub fn total_steps(&self, examples: usize) -> u64 {
        let steps = (self.epochs * examples).div_ceil(self.batch_size.max(1));
        steps.min(self.max_steps.unwrap_or(usize::MAX)) as u64
    }

    pub fn validate(&self) -> Result<()> {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// `precision` is read from `[pretrain]`, an unknown value names the allowed ones, and an
    /// unset one stays out of the recorded recipe so runs started before the key resume.
    #[test]
    fn precision_setting_parses_and_is_recorded_only_when_set() {
        let parse = |v: &str| {
            let table: toml::Table = toml::from_str(&format!("[pretrain]\nprecision = \"{v}\"\n"))?;
            section::<PretrainConfig>(&table, "pretrain", "test")
        };
        assert_eq!(parse("bf16").unwrap().precision, Some(Precision::Bf16));
        assert_eq!(parse("tf32").unwrap().precision, Some(Precision::Tf32));
        assert_eq!(parse("f32").unwrap().precision, Some(Precision::F32));
        let err = format!("{:#}", parse("fp8").unwrap_err());
        assert!(err.contains("`f32`, `tf32`, `bf16`"), "{err}");
        let recorded = |c: &PretrainConfig| serde_json::to_value(c).unwrap();
        assert!(
            recorded(&PretrainConfig::default())
                .get("precision")
                .is_none()
        );
        assert_eq!(recorded(&parse("bf16").unwrap())["precision"], "bf16");
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
        let l = Config::load(Some(&p), Section::FINETUNE).unwrap();
        let r = l
            .resolve_task("bioasq-4b", Some(5), None, Some(2), None)
            .unwrap();
        assert_eq!(
            (r.cfg.epochs, r.cfg.lr, r.cfg.max_steps, r.cfg.limit),
            (2, 3e-5, Some(5), Some(2))
        );
        assert!(l.resolve_task("bioasq-5b", None, None, None, None).is_err());
        std::fs::write(&p, "[finetune]\nepoch = 2\n").unwrap();
        assert!(
            format!(
                "{:#}",
                Config::load(Some(&p), Section::FINETUNE).unwrap_err()
            )
            .contains("epoch")
        );
        let d = Config::load(None, Section::FINETUNE).unwrap();
        assert_eq!(d.tasks.len(), 3);
        assert_eq!(
            d.tasks["bioasq-6b"].train,
            PathBuf::from("bioasq/bioasq-6b/train.arrow")
        );
        assert_eq!(d.tasks["bioasq-6b"].batches[4], "6B5");
    }

    #[test]
    fn task_kinds_tables_and_checks() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.toml");
        let load = |text: &str| {
            std::fs::write(&p, text).unwrap();
            Config::load(Some(&p), Section::FINETUNE)
        };
        let c = load(
            "[tasks.yn]\nkind = \"yesno\"\n[tasks.yl]\nkind = [\"list\", \"yesno\"]\n\
             max_new_tokens = 48\nlist_answers = 8\n[tasks.pqa]\nkind = \"pubmedqa\"\n\
             setting = \"reasoning-free\"\ndev_fold = 3\n",
        )
        .unwrap();
        assert_eq!(c.tasks["yn"].kind.0, [TaskKind::Yesno]);
        assert_eq!(c.tasks["yl"].kind.qtypes(), ["list", "yesno"]);
        assert_eq!(c.tasks["yl"].train, PathBuf::from("bioasq/yl/train.arrow"));
        let pqa = &c.tasks["pqa"];
        assert!(pqa.kind.is_pubmedqa());
        assert_eq!(
            (pqa.train.as_path(), pqa.test.as_path()),
            (
                Path::new("pubmedqa/train.arrow"),
                Path::new("pubmedqa/test.arrow")
            )
        );
        assert_eq!(
            (pqa.setting, pqa.dev_fold),
            (Some(PubmedqaSetting::ReasoningFree), Some(3))
        );
        let r = c.resolve_task("yl", None, None, None, None).unwrap();
        assert_eq!((r.cfg.max_new_tokens, r.cfg.list_answers), (48, 8));
        // A factoid task records the same recipe as before `kind` existed.
        let v = serde_json::to_value(TaskConfig::for_year("4b")).unwrap();
        assert!(v.get("kind").is_none() && v.get("setting").is_none(), "{v}");
        assert!(
            serde_json::to_value(FinetuneConfig::default())
                .unwrap()
                .get("list_answers")
                .is_none()
        );
        assert_eq!(
            serde_json::to_value(&c.tasks["yl"].kind).unwrap(),
            serde_json::json!(["list", "yesno"])
        );
        for (bad, says) in [
            ("kind = \"essay\"", "expected \"factoid\""),
            ("kind = [\"yesno\", \"pubmedqa\"]", "cannot be combined"),
            ("kind = [\"list\", \"list\"]", "listed twice"),
            ("kind = []", "at least one"),
            ("kind = \"pubmedqa\"\ndev_fold = 10", "dev_fold = 10"),
            ("setting = \"reasoning-free\"", "PubMedQA keys"),
        ] {
            let e = format!("{:#}", load(&format!("[tasks.t]\n{bad}\n")).unwrap_err());
            assert!(e.contains(says), "{bad}: {e}");
        }
    }
}
