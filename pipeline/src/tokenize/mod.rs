//! `pipeline tokenize`: abstracts (Parquet) → token streams per part → packed Arrow shards.
//!
//! Two cached stages:
//! 1. **tokenize** (manifest `manifests/tokenize.json`), one unit per input Parquet part: every document
//!    (`title + "\n" + abstract`, see [`document_text`]) is encoded with the `tokenizers` crate without
//!    special tokens (splitting with [`pretokenize`]'s faster GPT-2 split when the tokenizer's
//!    pre-tokenizer is `ByteLevel`, same ids), EOS appended, and written to
//!    `tokens/<input dir>/<part stem>.bin` (format in [`token_file`]). Parts run in parallel and
//!    documents within a batch too (rayon). A part whose tokens come out byte-identical keeps its
//!    old token file, so packing stays cached.
//! 2. **pack** (manifest `manifests/pack.json`, see [`pack`]): one unit over all token files; splits by
//!    PMID hash, drops decontaminated PMIDs, concatenates and cuts into `seq_len` rows, writes shards.
//!
//! **Canonical order** — the order of documents in the token streams and thus in the shards: input
//! parts in byte-wise order of their file names (`parquet/current/part-00000.parquet`, `part-00001`,
//! … or, with `input = "parquet/abstracts"`, `pubmed26n0001`, `pubmed26n0002`, …), and within a part
//! the Parquet row order (the current view is sorted by PMID; per-file parts are in XML record order).
//!
//! Memory is bounded: parts are read in batches of `batch_rows` rows, token files are streamed, and
//! packing holds one shard per split.
//!
//! **Domains**: PubMed (`parquet/current` → `tokens/current/` → `shards/{train,val}`, stages
//! `tokenize` and `pack`) and every general-domain corpus `[corpus.<name>]` (`parquet/corpus/<name>/`
//! → `tokens/corpus/<name>/` → `shards/<name>/{train,val}`, stages `tokenize-<name>` and
//! `pack-<name>`), each a [`Domain`] with its own manifests. A corpus's parts are in config order
//! (files as listed, rows in file order); its documents are the parts' `text` as is; their token-file
//! key is [`schemas::corpus::doc_key`] of the `doc_id`, which the split hashes as PubMed's PMID.
//!
//! **Scale-out**: parts are independent, so `pipeline tokenize --shard i/n` tokenizes only every n-th
//! part (one task of a job array, see [`tokenize_parts`]) and does not pack; `pipeline pack` then
//! packs all token files once ([`token_files`] checks that every part is tokenized and current).

pub mod decontaminate;
pub mod pack;
pub mod pretokenize;
#[cfg(test)]
mod tests;
pub mod token_file;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{Context, Result, anyhow, bail, ensure};
use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{DataType, UInt64Type};
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::{ParquetRecordBatchReader, ParquetRecordBatchReaderBuilder};
use rayon::prelude::*;
use schemas::progress::{Progress, Unit};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokenizers::Tokenizer;

use crate::Ctx;
use crate::config::{CorpusConfig, TokenizeConfig};
use crate::stage::{Plan, Shard, Stage, StageStatus, in_data_dir, settings_path, status_settings};

pub const STAGE: &str = "tokenize";
/// Bumped when the token files change meaning (document text, token file format).
pub const CODE_VERSION: u32 = 1;
/// The end-of-text token: appended after every document; id 0 in GPT-NeoX and our trained tokenizers.
pub const EOS_TOKEN: &str = "<|endoftext|>";

/// `pipeline tokenize` flags: the settings flags plus `--shard`.
#[derive(Clone, Debug, Default, clap::Args)]
pub struct TokenizeArgs {
    #[command(flatten)]
    pub settings: Args,
    /// Tokenize only every n-th input part, starting at the i-th (0-based), e.g. `--shard 3/64`
    /// for one task of a job array; nothing is packed: run `pipeline pack` after all shards.
    #[arg(long)]
    pub shard: Option<Shard>,
}

/// Flags of `pipeline tokenize` and `pipeline pack`; each overrides its `[tokenize]` config value.
#[derive(Clone, Debug, Default, clap::Args)]
pub struct Args {
    /// tokenizer.json (e.g. the GPT-NeoX-20B one).
    #[arg(long)]
    pub tokenizer: Option<PathBuf>,
    /// Directory of input Parquet parts (default: the config's, else DATA/parquet/current).
    #[arg(long)]
    pub input: Option<PathBuf>,
    /// Keep citations without an abstract (their title alone).
    #[arg(long)]
    pub include_title_only: bool,
    /// Fraction of PMIDs in the validation split (default 0.005).
    #[arg(long)]
    pub val_fraction: Option<f64>,
    /// Tokens per sequence (default 2048).
    #[arg(long)]
    pub seq_len: Option<usize>,
    /// Sequences per shard (default 8192).
    #[arg(long)]
    pub shard_sequences: Option<usize>,
    /// BioASQ golden JSON file or directory whose PMIDs are excluded (repeatable; adds to the config's).
    #[arg(long)]
    pub decontaminate: Vec<PathBuf>,
    /// `packed` (documents concatenated into seq_len rows) or `document` (one document per row,
    /// truncated and right-padded); default the config's, else packed.
    #[arg(long, value_parser = parse_sequences)]
    pub sequences: Option<schemas::shards::Sequences>,
}

/// `--sequences packed|document`.
fn parse_sequences(s: &str) -> std::result::Result<schemas::shards::Sequences, String> {
    use schemas::shards::Sequences;
    [Sequences::Packed, Sequences::Document]
        .into_iter()
        .find(|q| q.name() == s)
        .ok_or_else(|| format!("--sequences {s:?}: expected packed or document"))
}

impl TokenizeConfig {
    /// What the tokenize and pack stages run with: this section of the config with `pipeline
    /// tokenize`'s flags applied and relative paths resolved in the data directory (paths given as
    /// flags are taken as given).
    pub fn resolve(ctx: &Ctx, args: &Args) -> Result<Self> {
        let root = ctx.layout.root();
        let in_data = |p: &Path| {
            if p.is_absolute() {
                p.to_path_buf()
            } else {
                root.join(p)
            }
        };
        let mut s = ctx.config.tokenize.clone();
        s.tokenizer = args
            .tokenizer
            .clone()
            .unwrap_or_else(|| in_data(&s.tokenizer));
        s.input = args.input.clone().unwrap_or_else(|| in_data(&s.input));
        s.include_title_only |= args.include_title_only;
        s.val_fraction = args.val_fraction.unwrap_or(s.val_fraction);
        s.seq_len = args.seq_len.unwrap_or(s.seq_len);
        s.shard_sequences = args.shard_sequences.unwrap_or(s.shard_sequences);
        s.sequences = args.sequences.unwrap_or(s.sequences);
        s.decontaminate = (s.decontaminate.iter().map(|p| in_data(p)))
            .chain(args.decontaminate.iter().cloned())
            .collect();
        s.batch_rows = s.batch_rows.max(1);
        ensure!(
            (0.0..=1.0).contains(&s.val_fraction),
            "val_fraction {} is not within 0..=1",
            s.val_fraction
        );
        ensure!(s.seq_len > 0, "seq_len must be positive");
        ensure!(s.shard_sequences > 0, "shard_sequences must be positive");
        Ok(s)
    }

    /// These settings as a manifest records them: paths relative to the data directory when inside
    /// it, else absolute.
    pub fn recorded(&self, root: &Path) -> Self {
        self.map_paths(|p| settings_path(root, p))
    }

    /// Recorded settings back with paths to open (the inverse of [`TokenizeConfig::recorded`]).
    pub fn opened(&self, root: &Path) -> Self {
        self.map_paths(|p| in_data_dir(root, p))
    }

    /// These settings with `f` applied to every path in them.
    fn map_paths(&self, f: impl Fn(&Path) -> PathBuf) -> Self {
        Self {
            tokenizer: f(&self.tokenizer),
            input: f(&self.input),
            decontaminate: self.decontaminate.iter().map(|p| f(p)).collect(),
            ..self.clone()
        }
    }

    /// What `pipeline status` judges the tokenize and pack stages against: the config (no flags)
    /// when one was given, else the settings `stage` last ran with.
    pub fn for_status(ctx: &Ctx, stage: &str) -> Result<Self> {
        let root = ctx.layout.root();
        let from_config = Self::resolve(ctx, &Args::default())?.recorded(root);
        Ok(status_settings(ctx, stage, from_config)?.opened(root))
    }
}

/// The text of one citation as the model sees it: `title + "\n" + abstract`, the abstract alone when
/// the title is missing or empty, the title alone for a citation without abstract only when
/// `include_title_only`, else `None` (the citation is left out).
pub fn document_text(
    title: Option<&str>,
    abstract_text: Option<&str>,
    include_title_only: bool,
) -> Option<String> {
    let title = title.filter(|t| !t.is_empty());
    match abstract_text.filter(|a| !a.is_empty()) {
        Some(a) => Some(match title {
            Some(t) => format!("{t}\n{a}"),
            None => a.to_string(),
        }),
        None if include_title_only => title.map(str::to_string),
        None => None,
    }
}

/// The regex engine the `tokenizers` crate splits with (GPT-NeoX's pre-tokenizer regex):
/// `fancy-regex` (pure Rust) unless built with `--features onig` (Oniguruma, as Python's wheel).
pub const REGEX_ENGINE: &str = if cfg!(feature = "onig") {
    "onig"
} else {
    "fancy-regex"
};

/// A loaded tokenizer with the facts the shards depend on.
pub struct LoadedTokenizer {
    pub tokenizer: Tokenizer,
    /// The same tokenizer with the faster GPT-2 split ([`pretokenize::FastTokenizer`]) when its
    /// pre-tokenizer is `ByteLevel`; documents are encoded with it then (same ids).
    pub fast: Option<pretokenize::FastTokenizer>,
    pub path: PathBuf,
    /// xxh3-128 of the tokenizer file.
    pub hash: String,
    /// Vocabulary size including added tokens; ids are below it.
    pub vocab_size: usize,
    pub eos_id: u32,
}

impl LoadedTokenizer {
    pub fn load(path: &Path) -> Result<Self> {
        let mut loaded = Self::load_generic(path)?;
        let json = std::fs::read_to_string(path)
            .with_context(|| format!("reading tokenizer {}", path.display()))?;
        loaded.fast = pretokenize::load_fast(&json);
        tracing::debug!(
            "tokenizer {}: {}",
            path.display(),
            if loaded.fast.is_some() {
                "ByteLevel pre-tokenizer, fast split"
            } else {
                "generic pre-tokenizer"
            }
        );
        Ok(loaded)
    }

    /// Load without the fast split: every document goes through the `tokenizers` crate's own
    /// pre-tokenizer (and its regex engine, [`REGEX_ENGINE`]).
    pub fn load_generic(path: &Path) -> Result<Self> {
        let tokenizer = Tokenizer::from_file(path)
            .map_err(|e| anyhow!("loading tokenizer {}: {e}", path.display()))?;
        let eos_id = tokenizer.token_to_id(EOS_TOKEN).with_context(|| {
            format!(
                "tokenizer {} has no {EOS_TOKEN} token (needed as end-of-document marker)",
                path.display()
            )
        })?;
        let vocab_size = tokenizer.get_vocab_size(true);
        ensure!(
            (eos_id as usize) < vocab_size,
            "tokenizer {}: EOS id {eos_id} outside its vocabulary of {vocab_size}",
            path.display()
        );
        Ok(Self {
            hash: schemas::manifest::hash_file(path)?,
            tokenizer,
            fast: None,
            path: path.to_path_buf(),
            vocab_size,
            eos_id,
        })
    }

    /// Token ids of one document, EOS appended.
    pub fn encode_document(&self, text: &str) -> Result<Vec<u32>> {
        let encoding = match &self.fast {
            Some(fast) => fast.encode_fast(text, false),
            None => self.tokenizer.encode_fast(text, false),
        }
        .map_err(|e| anyhow!("encoding with {}: {e}", self.path.display()))?;
        let mut ids = Vec::with_capacity(encoding.get_ids().len() + 1);
        ids.extend_from_slice(encoding.get_ids());
        ids.push(self.eos_id);
        Ok(ids)
    }
}

/// The input Parquet parts of `dir` in canonical order (file name order).
/// The directory must exist (an empty one gives no parts).
pub fn list_parts(dir: &Path) -> Result<Vec<PathBuf>> {
    ensure!(
        dir.is_dir(),
        "listing input parts in {}: no such directory (run `pipeline parse` first, or set [tokenize] input)",
        dir.display()
    );
    schemas::layout::files_with_suffix(dir, ".parquet")
}

/// One citation's fields that tokenizing needs (or a corpus document's: `pmid` is then its
/// [`schemas::corpus::doc_key`]).
pub struct Citation {
    pub pmid: u64,
    pub text: Option<String>,
}

/// Which table a part is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum PartKind {
    /// `pmid`, `title`, `abstract` of the abstracts schema.
    Abstracts,
    /// `doc_id`, `text` of the corpus schema ([`schemas::corpus`]).
    Corpus,
}

/// Reads `pmid`, `title`, `abstract` of an abstracts part (or `doc_id`, `text` of a corpus part,
/// [`PartReader::open_corpus`]) batch by batch.
pub struct PartReader {
    path: PathBuf,
    kind: PartKind,
    reader: ParquetRecordBatchReader,
    /// Index of the next row, for error messages.
    row: u64,
    pub rows_total: u64,
}

impl PartReader {
    pub fn open(path: &Path, batch_rows: usize) -> Result<Self> {
        Self::open_kind(path, batch_rows, PartKind::Abstracts)
    }

    /// A part of a general-domain corpus (`parquet/corpus/<name>/`): each row's document is its
    /// `text`, its key [`schemas::corpus::doc_key`] of its `doc_id`.
    pub fn open_corpus(path: &Path, batch_rows: usize) -> Result<Self> {
        Self::open_kind(path, batch_rows, PartKind::Corpus)
    }

    fn open_kind(path: &Path, batch_rows: usize, kind: PartKind) -> Result<Self> {
        let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
        let builder = ParquetRecordBatchReaderBuilder::try_new(file)
            .with_context(|| format!("reading Parquet footer of {}", path.display()))?;
        let schema = builder.schema().clone();
        let mut roots = Vec::new();
        let (columns, table): (&[(&str, DataType)], &str) = match kind {
            PartKind::Abstracts => (
                &[
                    ("pmid", DataType::UInt64),
                    ("title", DataType::Utf8),
                    ("abstract", DataType::Utf8),
                ],
                "abstracts",
            ),
            PartKind::Corpus => (
                &[("doc_id", DataType::Utf8), ("text", DataType::Utf8)],
                "corpus",
            ),
        };
        for (name, want) in columns {
            let (index, field) = schema.column_with_name(name).with_context(|| {
                format!(
                    "{}: no column `{name}` (expected the {table} schema)",
                    path.display()
                )
            })?;
            ensure!(
                field.data_type() == want,
                "{}: column `{name}` is {}, expected {want}",
                path.display(),
                field.data_type()
            );
            roots.push(index);
        }
        let rows_total = builder.metadata().file_metadata().num_rows() as u64;
        let mask = ProjectionMask::roots(builder.parquet_schema(), roots);
        let reader = builder
            .with_projection(mask)
            .with_batch_size(batch_rows)
            .build()
            .with_context(|| format!("reading {}", path.display()))?;
        Ok(Self {
            path: path.to_path_buf(),
            kind,
            reader,
            row: 0,
            rows_total,
        })
    }

    /// The next batch of citations (document text built), or None at the end.
    pub fn next_batch(&mut self, include_title_only: bool) -> Result<Option<Vec<Citation>>> {
        let Some(batch) = self.reader.next() else {
            return Ok(None);
        };
        let batch: RecordBatch = batch
            .with_context(|| format!("{}: decoding rows from {}", self.path.display(), self.row))?;
        if self.kind == PartKind::Corpus {
            // Projection keeps schema order: doc_id, text.
            let doc_id = batch.column(0).as_string::<i32>();
            let text = batch.column(1).as_string::<i32>();
            let mut out = Vec::with_capacity(batch.num_rows());
            for i in 0..batch.num_rows() {
                let row = self.row + i as u64;
                ensure!(
                    !doc_id.is_null(i) && !text.is_null(i),
                    "{}: row {row} has a null doc_id or text",
                    self.path.display()
                );
                out.push(Citation {
                    pmid: schemas::corpus::doc_key(doc_id.value(i)),
                    text: Some(text.value(i).to_string()).filter(|t| !t.trim().is_empty()),
                });
            }
            self.row += batch.num_rows() as u64;
            return Ok(Some(out));
        }
        // Projection keeps schema order: pmid, title, abstract.
        let pmid = batch.column(0).as_primitive::<UInt64Type>();
        let title = batch.column(1).as_string::<i32>();
        let abstract_text = batch.column(2).as_string::<i32>();
        let mut out = Vec::with_capacity(batch.num_rows());
        for i in 0..batch.num_rows() {
            if pmid.is_null(i) {
                bail!(
                    "{}: row {} has a null pmid",
                    self.path.display(),
                    self.row + i as u64
                );
            }
            let t = (!title.is_null(i)).then(|| title.value(i));
            let a = (!abstract_text.is_null(i)).then(|| abstract_text.value(i));
            out.push(Citation {
                pmid: pmid.value(i),
                text: document_text(t, a, include_title_only),
            });
        }
        self.row += batch.num_rows() as u64;
        Ok(Some(out))
    }
}

/// Counts of one tokenized part.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct PartStats {
    /// Rows in the part.
    pub rows: u64,
    /// Documents written (rows with an abstract, or with a title under `include_title_only`).
    pub docs: u64,
    /// Rows left out for lack of an abstract (or of any text).
    pub skipped_no_text: u64,
    /// Tokens written, EOS included.
    pub tokens: u64,
    /// UTF-8 bytes of document text encoded.
    pub text_bytes: u64,
}

/// Tokenize one part into `out` (atomically; an identical existing file is kept).
pub fn tokenize_part(
    tok: &LoadedTokenizer,
    part: &Path,
    out: &Path,
    batch_rows: usize,
    include_title_only: bool,
    progress: Option<&Progress>,
) -> Result<PartStats> {
    let reader = PartReader::open(part, batch_rows)?;
    tokenize_reader(tok, reader, part, out, include_title_only, progress)
}

/// Tokenize the documents `reader` yields (of `part`) into `out`.
fn tokenize_reader(
    tok: &LoadedTokenizer,
    mut reader: PartReader,
    part: &Path,
    out: &Path,
    include_title_only: bool,
    progress: Option<&Progress>,
) -> Result<PartStats> {
    let mut writer = token_file::TokenFileWriter::create(out, tok.vocab_size, tok.eos_id)?;
    let mut stats = PartStats {
        rows: reader.rows_total,
        ..Default::default()
    };
    while let Some(citations) = reader.next_batch(include_title_only)? {
        let encoded: Vec<Option<Vec<u32>>> = citations
            .par_iter()
            .map(|c| {
                c.text
                    .as_deref()
                    .map(|t| tok.encode_document(t))
                    .transpose()
            })
            .collect::<Result<_>>()
            .with_context(|| format!("tokenizing {}", part.display()))?;
        for (c, ids) in citations.iter().zip(encoded) {
            match ids {
                Some(ids) => {
                    stats.docs += 1;
                    stats.tokens += ids.len() as u64;
                    stats.text_bytes += c.text.as_ref().map_or(0, |t| t.len() as u64);
                    writer.push(c.pmid, &ids)?;
                }
                None => stats.skipped_no_text += 1,
            }
        }
        if let Some(p) = progress {
            p.inc(citations.len() as u64);
        }
    }
    writer.finish()?;
    Ok(stats)
}

/// Token file of a part: `tokens/<input dir name>/<part stem>.bin`.
pub fn token_path(ctx_tokens: &Path, part: &Path) -> PathBuf {
    let dir = part
        .parent()
        .and_then(|d| d.file_name())
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "input".into());
    let stem = part
        .file_stem()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    ctx_tokens.join(dir).join(format!("{stem}.bin"))
}

/// A domain's documents to tokenize and pack: PubMed's (`[tokenize] input`, default
/// `parquet/current`) or one general-domain corpus's (`parquet/corpus/<name>/`).
#[derive(Clone, Debug)]
pub struct Domain {
    /// [`schemas::layout::PUBMED`] or the corpus name.
    pub name: String,
    /// The input parts in canonical order.
    pub parts: Vec<PathBuf>,
    /// The directory of the parts (for the summaries).
    pub input: PathBuf,
    /// The root below which [`token_path`] puts a part's token file.
    tokens_root: PathBuf,
    /// The corpus's config (None for PubMed).
    pub corpus: Option<CorpusConfig>,
}

impl Domain {
    /// PubMed: the parts of `[tokenize] input` in file-name order.
    pub fn pubmed(ctx: &Ctx, s: &TokenizeConfig) -> Result<Self> {
        Ok(Self {
            name: schemas::layout::PUBMED.to_string(),
            parts: list_parts(&s.input)?,
            input: s.input.clone(),
            tokens_root: ctx.layout.tokens(),
            corpus: None,
        })
    }

    /// The corpus `[corpus.<name>]`: one part per configured file, in config order (each must
    /// have been built by `pipeline corpus`).
    pub fn corpus(ctx: &Ctx, name: &str) -> Result<Self> {
        let corpus = ctx
            .config
            .corpus
            .get(name)
            .with_context(|| format!("no [corpus.{name}] in the config"))?;
        Ok(Self {
            name: name.to_string(),
            parts: crate::corpus::parts(ctx, name, corpus)?,
            input: ctx.layout.parquet_corpus(name),
            tokens_root: ctx.layout.tokens().join("corpus"),
            corpus: Some(corpus.clone()),
        })
    }

    /// Every configured corpus's domain, by name.
    pub fn corpora(ctx: &Ctx) -> Result<Vec<Self>> {
        ctx.config.check_corpora()?;
        ctx.config
            .corpus
            .keys()
            .map(|name| Self::corpus(ctx, name))
            .collect()
    }

    pub fn is_pubmed(&self) -> bool {
        self.corpus.is_none()
    }

    /// `tokenize` for PubMed, `tokenize-<name>` for a corpus.
    pub fn tokenize_stage(&self) -> String {
        if self.is_pubmed() {
            STAGE.to_string()
        } else {
            format!("{STAGE}-{}", self.name)
        }
    }

    /// `pack` for PubMed, `pack-<name>` for a corpus ([`schemas::shards::pack_stage_of`]).
    pub fn pack_stage(&self) -> String {
        schemas::shards::pack_stage_of(&self.name)
    }

    /// The token file of `part`: `tokens/<input dir>/<stem>.bin` (PubMed), or
    /// `tokens/corpus/<name>/<stem>.bin`.
    pub fn token_path(&self, part: &Path) -> PathBuf {
        token_path(&self.tokens_root, part)
    }

    /// The canonical order of its documents, as the summaries state it.
    pub fn canonical_order(&self) -> &'static str {
        if self.is_pubmed() {
            "parts in file-name order, rows in Parquet order"
        } else {
            "files in config order, rows in file order"
        }
    }

    fn open_part(&self, part: &Path, batch_rows: usize) -> Result<PartReader> {
        if self.is_pubmed() {
            PartReader::open(part, batch_rows)
        } else {
            PartReader::open_corpus(part, batch_rows)
        }
    }
}

/// The config fields the tokenize stage depends on (the tokenizer is an input of every unit).
#[derive(Serialize)]
struct TokenizeStageConfig {
    include_title_only: bool,
    document_text: &'static str,
    eos: &'static str,
}

fn stage_config(s: &TokenizeConfig, domain: &Domain) -> TokenizeStageConfig {
    if domain.is_pubmed() {
        TokenizeStageConfig {
            include_title_only: s.include_title_only,
            document_text: "title\\nabstract",
            eos: EOS_TOKEN,
        }
    } else {
        TokenizeStageConfig {
            include_title_only: false,
            document_text: "corpus text, keyed by xxh3_64(doc_id)",
            eos: EOS_TOKEN,
        }
    }
}

fn unit_key(data_dir: &Path, part: &Path) -> String {
    schemas::manifest::relative_path(data_dir, part)
}

/// What `tokenize` did.
#[derive(Clone, Debug, Default, Serialize)]
pub struct TokenizeReport {
    pub parts: usize,
    pub parts_run: usize,
    pub token_files: Vec<PathBuf>,
    pub totals: PartStats,
}

fn open_stage(ctx: &Ctx, s: &TokenizeConfig, domain: &Domain, force: bool) -> Result<Stage> {
    Stage::open(
        ctx.layout.root(),
        &domain.tokenize_stage(),
        CODE_VERSION,
        token_file::FORMAT_VERSION,
        &stage_config(s, domain),
        force,
    )
}

/// Stage 1: tokenize every part (cached per part). Returns the token files in canonical order.
pub fn tokenize_stage(ctx: &Ctx, s: &TokenizeConfig) -> Result<TokenizeReport> {
    tokenize_parts(ctx, s, None)
}

/// Stage 1 for the parts of one shard (`--shard i/n`: every n-th part in canonical order, starting
/// at the i-th), or for all parts. Units of other parts are kept as they are, so the runs of a job
/// array (also at the same time, see [`Stage`]) together tokenize every part; the summary counts
/// every part tokenized so far. Returns this run's token files in canonical order.
pub fn tokenize_parts(
    ctx: &Ctx,
    s: &TokenizeConfig,
    shard: Option<Shard>,
) -> Result<TokenizeReport> {
    tokenize_domain(ctx, s, &Domain::pubmed(ctx, s)?, shard)
}

/// Stage 1 of one domain (PubMed's `tokenize`, a corpus's `tokenize-<name>`), for one shard of its
/// parts or all; as [`tokenize_parts`].
pub fn tokenize_domain(
    ctx: &Ctx,
    s: &TokenizeConfig,
    domain: &Domain,
    shard: Option<Shard>,
) -> Result<TokenizeReport> {
    let root = ctx.layout.root();
    let stage_name = domain.tokenize_stage();
    let all_parts = domain.parts.clone();
    let parts = match shard {
        Some(shard) => shard.select(&all_parts),
        None => all_parts.clone(),
    };
    let tok = LoadedTokenizer::load(&s.tokenizer)?;
    let previous_summary = schemas::StageManifest::load(&ctx.layout.manifest(&stage_name))?
        .map(|m| m.summary)
        .unwrap_or_default();
    let stage = open_stage(ctx, s, domain, ctx.force)?.with_settings(&s.recorded(root))?;
    let all_keys: Vec<String> = all_parts.iter().map(|p| unit_key(root, p)).collect();
    stage.retain_units(&|k| all_keys.iter().any(|key| key == k))?;
    let keys: Vec<String> = parts.iter().map(|p| unit_key(root, p)).collect();
    // Only this run's token files: other tasks of a job array write beside them.
    let outputs: Vec<PathBuf> = parts.iter().map(|p| domain.token_path(p)).collect();
    schemas::atomic::remove_stale_temps_of(outputs.iter().map(PathBuf::as_path))?;
    let total_rows: u64 = parts
        .iter()
        .map(|p| {
            let file = File::open(p).with_context(|| format!("opening {}", p.display()))?;
            let b = ParquetRecordBatchReaderBuilder::try_new(file)
                .with_context(|| format!("reading Parquet footer of {}", p.display()))?;
            Ok(b.metadata().file_metadata().num_rows() as u64)
        })
        .sum::<Result<u64>>()?;
    let progress = Progress::new(
        &stage_name,
        total_rows,
        Unit::Count(if domain.is_pubmed() {
            "citations"
        } else {
            "documents"
        }),
    );
    let ran = AtomicU64::new(0);
    let stats: Vec<PartStats> = parts
        .par_iter()
        .zip(&keys)
        .map(|(part, key)| -> Result<PartStats> {
            let out = domain.token_path(part);
            let inputs = stage.inputs(key, &[part.clone(), s.tokenizer.clone()])?;
            match stage.plan(key, &inputs)? {
                Plan::Cached => {
                    let unit = stage.recorded(key).context("cached unit has a record")?;
                    progress.inc(unit.stats["rows"].as_u64().unwrap_or(0));
                    tracing::debug!("{key}: cached");
                    Ok(serde_json::from_value(unit.stats).unwrap_or_default())
                }
                Plan::Run(reason) => {
                    tracing::info!("{key}: tokenizing ({reason})");
                    let reader = domain.open_part(part, s.batch_rows)?;
                    let stats = tokenize_reader(
                        &tok,
                        reader,
                        part,
                        &out,
                        s.include_title_only && domain.is_pubmed(),
                        Some(&progress),
                    )?;
                    stage.record(key, inputs, &[out], serde_json::to_value(&stats)?)?;
                    ran.fetch_add(1, Ordering::Relaxed);
                    Ok(stats)
                }
            }
        })
        .collect::<Result<_>>()?;
    progress.finish();
    let add = |totals: &mut PartStats, st: &PartStats| {
        totals.rows += st.rows;
        totals.docs += st.docs;
        totals.skipped_no_text += st.skipped_no_text;
        totals.tokens += st.tokens;
        totals.text_bytes += st.text_bytes;
    };
    let mut totals = PartStats::default();
    for st in &stats {
        add(&mut totals, st);
    }
    // The stage's totals: every part tokenized so far (by this run or the other shards' runs).
    let mut all_totals = PartStats::default();
    for key in &all_keys {
        if let Some(unit) = stage.recorded(key)
            && let Ok(st) = serde_json::from_value::<PartStats>(unit.stats)
        {
            add(&mut all_totals, &st);
        }
    }
    let mut summary = json!({
        "tokenizer": {
            "path": schemas::manifest::relative_path(root, &tok.path),
            "hash": tok.hash,
            "vocab_size": tok.vocab_size,
            "eos_id": tok.eos_id,
        },
        "input": schemas::manifest::relative_path(root, &domain.input),
        "canonical_order": domain.canonical_order(),
        "parts": all_parts.len(),
        "totals": all_totals,
    });
    if !domain.is_pubmed() {
        summary["domain"] = json!(domain.name);
    }
    let ran = ran.into_inner() as usize;
    // A fully cached run leaves the manifest (and its mtime) alone.
    if ran > 0 || summary != previous_summary {
        stage.finish(summary)?;
    }
    Ok(TokenizeReport {
        parts: parts.len(),
        parts_run: ran,
        token_files: outputs,
        totals,
    })
}

/// The token files of every input part in canonical order, for packing: each part's tokenize unit
/// must be current (built under these settings from today's part and tokenizer, output intact),
/// else the error names the parts still to tokenize. `pipeline pack` packs what this returns.
pub fn token_files(ctx: &Ctx, s: &TokenizeConfig) -> Result<Vec<PathBuf>> {
    token_files_of(ctx, s, &Domain::pubmed(ctx, s)?)
}

/// [`token_files`] of one domain.
pub fn token_files_of(ctx: &Ctx, s: &TokenizeConfig, domain: &Domain) -> Result<Vec<PathBuf>> {
    let root = ctx.layout.root();
    let parts = &domain.parts;
    ensure!(
        s.tokenizer.is_file(),
        "tokenizer {} not found",
        s.tokenizer.display()
    );
    let stage = open_stage(ctx, s, domain, false)?;
    let mut not_ready = Vec::new();
    for part in parts {
        let key = unit_key(root, part);
        let inputs = stage.inputs(&key, &[part.clone(), s.tokenizer.clone()])?;
        if let Plan::Run(reason) = stage.plan(&key, &inputs)? {
            not_ready.push(format!("{key} ({reason})"));
        }
    }
    if !not_ready.is_empty() {
        bail!(
            "{}{} of {} parts are not tokenized under these settings: {}; run `pipeline tokenize` \
             (or all its `--shard i/n` runs) first",
            if domain.is_pubmed() {
                String::new()
            } else {
                format!("corpus {}: ", domain.name)
            },
            not_ready.len(),
            parts.len(),
            not_ready.join(", ")
        );
    }
    Ok(parts.iter().map(|p| domain.token_path(p)).collect())
}

/// The tokenize stage with its summary line (`pipeline tokenize` then packs, see [`pack::run`]).
pub fn run(ctx: &Ctx, s: &TokenizeConfig) -> Result<TokenizeReport> {
    run_shard(ctx, s, None)
}

/// The tokenize stage over one shard of the parts (or all) with its summary line.
pub fn run_shard(ctx: &Ctx, s: &TokenizeConfig, shard: Option<Shard>) -> Result<TokenizeReport> {
    run_domain(ctx, s, &Domain::pubmed(ctx, s)?, shard)
}

/// The tokenize stage of one domain over one shard of its parts (or all) with its summary line.
pub fn run_domain(
    ctx: &Ctx,
    s: &TokenizeConfig,
    domain: &Domain,
    shard: Option<Shard>,
) -> Result<TokenizeReport> {
    let report = tokenize_domain(ctx, s, domain, shard)?;
    if !domain.is_pubmed() {
        println!(
            "{}: {} parts ({} tokenized, {} cached), {} documents, {} tokens",
            domain.tokenize_stage(),
            report.parts,
            report.parts_run,
            report.parts - report.parts_run,
            report.totals.docs,
            report.totals.tokens
        );
        return Ok(report);
    }
    let which = match shard {
        Some(shard) => format!(" of shard {shard}"),
        None => String::new(),
    };
    println!(
        "tokenize: {} parts{which} ({} tokenized, {} cached), {} documents, {} tokens, {} citations without abstract left out",
        report.parts,
        report.parts_run,
        report.parts - report.parts_run,
        report.totals.docs,
        report.totals.tokens,
        report.totals.skipped_no_text
    );
    Ok(report)
}

/// `pipeline status` row of the tokenize stage.
pub fn status(ctx: &Ctx) -> Result<StageStatus> {
    let s = TokenizeConfig::for_status(ctx, STAGE)?;
    let domain = Domain {
        parts: list_parts(&s.input).unwrap_or_default(),
        ..Domain::pubmed_unlisted(ctx, &s)
    };
    domain_status(ctx, &s, &domain)
}

/// The tokenize and pack rows of every configured corpus for `pipeline status`.
pub fn corpus_statuses(ctx: &Ctx) -> Result<Vec<StageStatus>> {
    let mut rows = Vec::new();
    ctx.config.check_corpora()?;
    for (name, corpus) in &ctx.config.corpus {
        let s = TokenizeConfig::for_status(ctx, &format!("{STAGE}-{name}"))?;
        let domain = Domain {
            name: name.clone(),
            parts: crate::corpus::corpus_files(ctx, name, corpus)
                .into_iter()
                .map(|f| f.part)
                .collect(),
            input: ctx.layout.parquet_corpus(name),
            tokens_root: ctx.layout.tokens().join("corpus"),
            corpus: Some(corpus.clone()),
        };
        rows.push(domain_status(ctx, &s, &domain)?);
        rows.push(pack::domain_status(ctx, &s, &domain)?);
    }
    Ok(rows)
}

impl Domain {
    /// PubMed's domain without listing its parts (for status, where the input may be absent).
    fn pubmed_unlisted(ctx: &Ctx, s: &TokenizeConfig) -> Self {
        Self {
            name: schemas::layout::PUBMED.to_string(),
            parts: Vec::new(),
            input: s.input.clone(),
            tokens_root: ctx.layout.tokens(),
            corpus: None,
        }
    }
}

fn domain_status(ctx: &Ctx, s: &TokenizeConfig, domain: &Domain) -> Result<StageStatus> {
    let stage = open_stage(ctx, s, domain, false)?;
    let units: Vec<(String, Vec<PathBuf>)> = domain
        .parts
        .iter()
        .filter(|p| domain.is_pubmed() || p.is_file())
        .map(|p| {
            let mut inputs = vec![p.clone()];
            if s.tokenizer.exists() {
                inputs.push(s.tokenizer.clone());
            }
            (unit_key(ctx.layout.root(), p), inputs)
        })
        .collect();
    let mut st = stage.status(&units)?;
    let absent = domain.parts.len() - units.len();
    st.missing += absent;
    if !s.tokenizer.exists() {
        st.note = format!("tokenizer {} missing", s.tokenizer.display());
    } else if absent > 0 {
        st.note = format!("{absent} corpus parts missing: run `pipeline corpus`");
    }
    Ok(st)
}
