//! The one TOML config (`configs/*.toml`): every section the pipeline reads, one struct per section
//! with its defaults. Each stage reads its own section; sections of the trainer are ignored here.
//! Flags override config values. Relative paths are relative to the data directory.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use schemas::Layout;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct Config {
    pub data: DataConfig,
    pub download: DownloadConfig,
    pub parse: ParseConfig,
    pub current: CurrentConfig,
    pub bioasq: BioasqConfig,
    pub pubmedqa: PubmedqaConfig,
    pub tokenize: TokenizeConfig,
    pub train_tokenizer: TrainTokenizerConfig,
    /// The file this config was loaded from; None for the defaults (no `--config`). `pipeline
    /// status` judges against the config when one was given, else against each stage's last run.
    #[serde(skip)]
    pub source: Option<PathBuf>,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct DataConfig {
    /// Data directory; `--data-dir` overrides it.
    pub dir: PathBuf,
}

impl Default for DataConfig {
    fn default() -> Self {
        Self {
            dir: PathBuf::from("data"),
        }
    }
}

impl Config {
    pub fn load(path: &Path) -> Result<Self> {
        let table = schemas::config_file::read(path)?;
        let mut config: Self = toml::Value::Table(table)
            .try_into()
            .with_context(|| format!("parsing config {}", path.display()))?;
        config.source = Some(path.to_path_buf());
        Ok(config)
    }

    /// Load `path` if given, else the defaults.
    pub fn load_or_default(path: Option<&Path>) -> Result<Self> {
        path.map(Self::load).unwrap_or_else(|| Ok(Self::default()))
    }
}

/// `[download]` in the config.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct DownloadConfig {
    /// PubMed root holding `baseline/` and `updatefiles/`.
    pub base_url: String,
    /// Hugging Face hub (or mirror) for `fetch-model` / `fetch-tokenizer`.
    pub hub_url: String,
    /// Baseline files to fetch by number: `all`, `none`, `1-5`, `3,7-9`.
    pub files: String,
    /// Update files to fetch by number (same syntax); `none` by default.
    pub updates: String,
    /// Files downloaded at the same time.
    pub concurrency: usize,
    /// Failed attempts per file before it is given up.
    pub max_attempts: u32,
    pub connect_timeout_secs: f64,
    /// Longest wait for response headers or the next piece of a body.
    pub read_timeout_secs: f64,
    /// First retry delay; doubles per failure up to `backoff_max_secs`, with jitter.
    pub backoff_initial_secs: f64,
    pub backoff_max_secs: f64,
    pub model_repo: String,
    pub tokenizer_repo: String,
}

impl Default for DownloadConfig {
    fn default() -> Self {
        Self {
            base_url: "https://ftp.ncbi.nlm.nih.gov/pubmed".into(),
            hub_url: "https://huggingface.co".into(),
            files: "all".into(),
            updates: "none".into(),
            concurrency: 4,
            max_attempts: 8,
            connect_timeout_secs: 30.0,
            read_timeout_secs: 60.0,
            backoff_initial_secs: 1.0,
            backoff_max_secs: 60.0,
            model_repo: "state-spaces/mamba-130m-hf".into(),
            tokenizer_repo: "EleutherAI/gpt-neox-20b".into(),
        }
    }
}

/// `[parse]` section of the config.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ParseConfig {
    /// Rows per Parquet row group (and per Arrow batch held in memory).
    pub batch_rows: usize,
    /// zstd level of the Parquet parts.
    pub zstd_level: i32,
    /// Skip a broken citation (when the XML stream can recover) instead of failing its file.
    pub skip_bad_records: bool,
}

impl Default for ParseConfig {
    fn default() -> Self {
        Self {
            batch_rows: 8192,
            zstd_level: 3,
            skip_bad_records: false,
        }
    }
}

/// `[current]` section of the config.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct CurrentConfig {
    /// Number of output parts (PMIDs split by `pmid % partitions`). Memory while building one part is
    /// about (all parsed rows) / partitions; use ~256 for the full baseline.
    pub partitions: u32,
    /// Rows per Parquet row group.
    pub batch_rows: usize,
    pub zstd_level: i32,
}

impl Default for CurrentConfig {
    fn default() -> Self {
        Self {
            partitions: 8,
            batch_rows: 8192,
            zstd_level: 3,
        }
    }
}

/// `[train_tokenizer]` section. Relative paths are relative to the data directory.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainTokenizerConfig {
    /// Vocabulary size, special token and byte alphabet included.
    pub vocab_size: usize,
    /// A merge needs at least this many occurrences.
    pub min_frequency: u64,
    /// Directory of abstracts Parquet parts to train on.
    pub input: PathBuf,
    /// Where the tokenizer.json goes.
    pub output: PathBuf,
    /// Train on title-only citations too.
    pub include_title_only: bool,
}

impl Default for TrainTokenizerConfig {
    fn default() -> Self {
        Self {
            vocab_size: 32_768,
            min_frequency: 2,
            input: Layout::relative().parquet_current(),
            output: Layout::relative().tokenizer_file(),
            include_title_only: false,
        }
    }
}

/// `[tokenize]` section. Relative paths are relative to the data directory.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct TokenizeConfig {
    /// `tokenizer.json` to encode with (`--tokenizer` overrides; the flag's path is taken as given).
    pub tokenizer: PathBuf,
    /// Directory of input Parquet parts: `parquet/current` (the current view) or `parquet/abstracts`.
    pub input: PathBuf,
    /// Keep citations that have a title but no abstract (as the title alone).
    pub include_title_only: bool,
    /// Fraction of PMIDs in the validation split.
    pub val_fraction: f64,
    /// Salt of the PMID hash that decides the split; changing it reshuffles the split.
    pub split_salt: String,
    /// Tokens per packed sequence.
    pub seq_len: usize,
    /// Sequences per shard file.
    pub shard_sequences: usize,
    /// BioASQ test sets (golden JSON files or directories of them) whose PMIDs are excluded.
    pub decontaminate: Vec<PathBuf>,
    /// Parquet rows read (and encoded in parallel) at a time.
    pub batch_rows: usize,
}

impl Default for TokenizeConfig {
    fn default() -> Self {
        Self {
            tokenizer: Layout::relative().tokenizer_file(),
            input: Layout::relative().parquet_current(),
            include_title_only: false,
            val_fraction: 0.005,
            split_salt: "biomamba-split-v1".into(),
            seq_len: 2048,
            shard_sequences: 8192,
            decontaminate: Vec::new(),
            batch_rows: 4096,
        }
    }
}

/// `[bioasq]` section of the config.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BioasqConfig {
    /// Test examples per snippet document (`snippets`, BioBERT's choice) or per listed document
    /// (`documents`).
    pub test_documents: TestDocuments,
    /// `[bioasq.tasks.<name>]`: the task tables to build.
    pub tasks: BTreeMap<String, TaskInputs>,
}

/// `[bioasq.tasks.<name>]`: the input files of one task's tables (`bioasq/<name>/{train,test}.arrow`);
/// how the trainer fine-tunes on and scores the task is its `[tasks.<name>]`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TaskInputs {
    /// BioASQ edition (4 for BioASQ 4b): test sets of this year or later are removed from `train`.
    pub year: u32,
    /// The training file (file name in the input directory): official or SQuAD format.
    pub train: String,
    /// Test files: official golden batches (converted against PubMed) or BioBERT SQuAD test files.
    pub test: Vec<String>,
}

/// `[pubmedqa]` section of the config.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PubmedqaConfig {
    /// Root of the pubmedqa repository's raw files: `data/ori_pqal.json` and
    /// `data/test_ground_truth.json` are fetched from below it (`--base-url` overrides).
    pub base_url: String,
}

impl Default for PubmedqaConfig {
    fn default() -> Self {
        Self {
            base_url: "https://raw.githubusercontent.com/pubmedqa/pubmedqa/master".into(),
        }
    }
}

/// Which documents a test question gets one example for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TestDocuments {
    /// The distinct documents of the question's snippets, in snippet order. BioBERT's test files hold
    /// exactly these (checked on all 161 factoid questions of 4B1–4B5).
    #[default]
    Snippets,
    /// The question's `documents`, then snippet documents not listed there.
    Documents,
}
