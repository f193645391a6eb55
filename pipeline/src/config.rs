//! The one TOML config (`configs/*.toml`): every section the pipeline reads, one struct per section
//! with its defaults. Each stage reads its own section; sections of the trainer are ignored here.
//! Flags override config values. Relative paths are relative to the data directory.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail, ensure};
use schemas::Layout;
use schemas::shards::Sequences;
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
    /// `[corpus.<name>]`: general-domain corpora (Wikipedia, C4, …) mixed into pretraining, by name.
    pub corpus: BTreeMap<String, CorpusConfig>,
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
        config
            .check_corpora()
            .with_context(|| format!("in config {}", path.display()))?;
        Ok(config)
    }

    /// Every `[corpus.<name>]` is well formed (see [`CorpusConfig::check`]).
    pub fn check_corpora(&self) -> Result<()> {
        for (name, corpus) in &self.corpus {
            corpus
                .check(name)
                .with_context(|| format!("[corpus.{name}]"))?;
        }
        Ok(())
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
    /// `packed` (documents concatenated and cut into `seq_len` rows) or `document` (one document
    /// per row: its tokens and EOS truncated to `seq_len`, right-padded with the pad id = EOS id,
    /// the real length in the shards' `lengths` column). Applies to PubMed and every corpus.
    pub sequences: Sequences,
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
            sequences: Sequences::Packed,
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

/// The format of a corpus's raw files.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum CorpusFormat {
    /// Parquet (the hub's converted datasets, e.g. `wikimedia/wikipedia`).
    #[default]
    #[serde(rename = "parquet")]
    Parquet,
    /// Gzipped JSON lines, one object per line (e.g. `allenai/c4`'s `*.json.gz`).
    #[serde(rename = "jsonl.gz")]
    JsonlGz,
}

/// `[corpus.<name>]`: one general-domain corpus, its files in a Hugging Face dataset repository.
/// `pipeline corpus-download` fetches the files into `raw/corpus/<name>/<file>`, `pipeline corpus`
/// turns each into `parquet/corpus/<name>/<file stem>.parquet`, `pipeline tokenize` packs them into
/// `shards/<name>/{train,val}`. The name is `[a-z0-9_-]+`, not `train`, `val` or `pubmed`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CorpusConfig {
    /// Dataset repository `owner/name` on the hub (`[download] hub_url`), e.g. `allenai/c4`.
    pub repo: String,
    /// Branch, tag or commit of the repository.
    pub revision: String,
    pub format: CorpusFormat,
    /// Files inside the repository, in canonical order (the order of the documents in the
    /// shards), e.g. `20231101.en/train-00000-of-00041.parquet`.
    pub files: Vec<String>,
    /// The column / JSON key holding the document text.
    pub text_field: String,
    /// The column / key of the document id; absent: `id` for Parquet, and for JSON lines the id
    /// is `<file>:<line>` (C4 has no ids).
    pub id_field: Option<String>,
    /// A title column (Wikipedia: `title`): the document is `title + "\n" + text` when the title
    /// is not empty, as PubMed's `title + "\n" + abstract`.
    pub title_field: Option<String>,
    /// Only the first this many documents (non-empty texts, in canonical order: files in config
    /// order, rows in file order) go into the shards.
    pub max_documents: Option<u64>,
}

impl Default for CorpusConfig {
    fn default() -> Self {
        Self {
            repo: String::new(),
            revision: "main".into(),
            format: CorpusFormat::Parquet,
            files: Vec::new(),
            text_field: "text".into(),
            id_field: None,
            title_field: None,
            max_documents: None,
        }
    }
}

/// Names a corpus may not take: the split folders under `shards/`, and PubMed's domain.
const RESERVED_CORPUS_NAMES: [&str; 3] = [
    schemas::layout::TRAIN,
    schemas::layout::VAL,
    schemas::layout::PUBMED,
];

impl CorpusConfig {
    /// The id column: `id_field`, else `id` for Parquet; `None` means `<file>:<row>`.
    pub fn id_column(&self) -> Option<&str> {
        match (&self.id_field, self.format) {
            (Some(f), _) => Some(f.as_str()),
            (None, CorpusFormat::Parquet) => Some("id"),
            (None, CorpusFormat::JsonlGz) => None,
        }
    }

    /// The stem of a file's Parquet part: its name without the format's extension.
    pub fn file_stem(&self, file: &str) -> String {
        let name = file.rsplit('/').next().unwrap_or(file);
        let ext = match self.format {
            CorpusFormat::Parquet => ".parquet",
            CorpusFormat::JsonlGz => ".json.gz",
        };
        name.strip_suffix(ext).unwrap_or(name).to_string()
    }

    /// Name, repository, revision and files are safe in URLs and paths; files end with the
    /// format's extension and their part names do not collide.
    pub fn check(&self, name: &str) -> Result<()> {
        ensure!(
            !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_-".contains(&b)),
            "corpus name {name:?}: use [a-z0-9_-]+"
        );
        ensure!(
            !RESERVED_CORPUS_NAMES.contains(&name),
            "corpus name {name:?} is reserved (train, val and pubmed are taken)"
        );
        let safe_segment = |p: &str| {
            !p.is_empty()
                && p != "."
                && p != ".."
                && p.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        };
        match self.repo.split_once('/') {
            Some((owner, repo)) if safe_segment(owner) && safe_segment(repo) => {}
            _ => bail!("repo {:?} is not of the form owner/name", self.repo),
        }
        ensure!(
            safe_segment(&self.revision),
            "revision {:?}: expected a branch, tag or commit name",
            self.revision
        );
        ensure!(!self.files.is_empty(), "no files listed");
        ensure!(!self.text_field.is_empty(), "text_field must not be empty");
        let ext = match self.format {
            CorpusFormat::Parquet => ".parquet",
            CorpusFormat::JsonlGz => ".json.gz",
        };
        let mut stems: BTreeMap<String, &str> = BTreeMap::new();
        for file in &self.files {
            ensure!(
                file.split('/').all(safe_segment),
                "file {file:?}: expected a relative path inside the repository ([A-Za-z0-9._-] names joined by /)"
            );
            ensure!(
                file.ends_with(ext),
                "file {file:?} does not end with {ext} (format {:?})",
                self.format
            );
            if let Some(other) = stems.insert(self.file_stem(file), file) {
                bail!(
                    "files {other:?} and {file:?} would both become parquet/corpus/{name}/{}.parquet",
                    self.file_stem(file)
                );
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<Config> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, text).unwrap();
        Config::load(&path)
    }

    #[test]
    fn corpus_sections_parse_with_defaults_and_are_checked() {
        let c = load(
            r#"
[tokenize]
sequences = "document"
[corpus.wikipedia]
repo = "wikimedia/wikipedia"
files = ["20231101.en/train-00000-of-00041.parquet"]
title_field = "title"
[corpus.c4]
repo = "allenai/c4"
format = "jsonl.gz"
files = ["en/c4-train.00000-of-01024.json.gz"]
max_documents = 10
"#,
        )
        .unwrap();
        assert_eq!(c.tokenize.sequences, Sequences::Document);
        assert_eq!(c.corpus.keys().collect::<Vec<_>>(), ["c4", "wikipedia"]);
        let w = &c.corpus["wikipedia"];
        assert_eq!(
            (w.revision.as_str(), w.format),
            ("main", CorpusFormat::Parquet)
        );
        assert_eq!(w.id_column(), Some("id"));
        assert_eq!(w.file_stem(&w.files[0]), "train-00000-of-00041");
        let c4 = &c.corpus["c4"];
        assert_eq!((c4.id_column(), c4.max_documents), (None, Some(10)));
        assert_eq!(c4.file_stem(&c4.files[0]), "c4-train.00000-of-01024");
        assert_eq!(Config::default().tokenize.sequences, Sequences::Packed);

        let bad = |section: &str| format!("{:#}", load(section).unwrap_err());
        let files = r#"files = ["a.parquet"]"#;
        assert!(bad(&format!("[corpus.Wiki]\nrepo = \"a/b\"\n{files}")).contains("[a-z0-9_-]+"));
        assert!(bad(&format!("[corpus.val]\nrepo = \"a/b\"\n{files}")).contains("reserved"));
        assert!(bad(&format!("[corpus.x]\nrepo = \"ab\"\n{files}")).contains("owner/name"));
        assert!(
            bad("[corpus.x]\nrepo = \"a/b\"\nfiles = [\"../a.parquet\"]").contains("relative path")
        );
        assert!(
            bad("[corpus.x]\nrepo = \"a/b\"\nfiles = [\"a.json.gz\"]").contains("does not end")
        );
        assert!(
            bad("[corpus.x]\nrepo = \"a/b\"\nfiles = [\"p/a.parquet\", \"q/a.parquet\"]")
                .contains("both become")
        );
        assert!(bad("[corpus.x]\nrepo = \"a/b\"\nfiles = []").contains("no files"));
        assert!(
            bad(&format!(
                "[corpus.x]\nrepo = \"a/b\"\nformat = \"csv\"\n{files}"
            ))
            .contains("format")
        );
    }
}
