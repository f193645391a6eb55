//! Stage 2, **pack** (`manifests/pack.json`): token files → `shards/{train,val}/shard-NNNNN.arrow`.
//!
//! Documents are streamed from the token files in canonical order. A document whose PMID is in the
//! decontamination set is dropped; every other goes to the split [`split_of`] assigns it. Each split's
//! documents (EOS included) are concatenated into one stream and cut into rows of `seq_len` tokens;
//! the incomplete tail is dropped and counted. `doc_starts` of a row lists the positions where a
//! document's first token lies. Shards hold `shard_sequences` rows (the last fewer) and are written
//! with `commit_unless_identical`, so shards that did not change keep their bytes and mtime. Memory:
//! one shard buffer per split.
//!
//! With `[tokenize] sequences = "document"` each document becomes one row instead: its tokens (EOS
//! included) truncated to `seq_len`, right-padded with the pad id (= the EOS id), `doc_starts = [0]`
//! and `lengths` = its real tokens ([`schemas::shards::document_batch`]); truncated documents and the
//! tokens cut off are counted, nothing is dropped otherwise.
//!
//! Every domain ([`super::Domain`]) is packed on its own: PubMed into `shards/{train,val}`
//! (manifest `pack`), a corpus `<name>` into `shards/<name>/{train,val}` (manifest `pack-<name>`,
//! no decontamination, at most `max_documents` documents in canonical order). Corpus documents are
//! split by their key [`schemas::corpus::doc_key`]`(doc_id)` exactly as PubMed's by PMID.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, ensure};
use serde::{Deserialize, Serialize};
use xxhash_rust::xxh3::xxh3_64;

use schemas::shards::Sequences;

use super::Domain;
use super::decontaminate::{self, SourceCount};
use super::token_file::TokenFileReader;
use crate::Ctx;
use crate::config::TokenizeConfig;
use crate::stage::{Plan, Stage, StageStatus};

pub const STAGE: &str = schemas::shards::PACK_STAGE;
pub const CODE_VERSION: u32 = 1;
const UNIT: &str = "shards";

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Split {
    Train,
    Val,
}

impl Split {
    pub fn name(self) -> &'static str {
        match self {
            Split::Train => schemas::layout::TRAIN,
            Split::Val => schemas::layout::VAL,
        }
    }
}

/// The split of a PMID: `xxh3_64(salt + ":" + decimal PMID)`, its top 53 bits as a fraction in [0, 1);
/// validation when the fraction is below `val_fraction`. It depends on nothing but the PMID, so a
/// PMID keeps its side as the corpus grows.
pub fn split_of(pmid: u64, salt: &str, val_fraction: f64) -> Split {
    let key = format!("{salt}:{pmid}");
    let fraction = (xxh3_64(key.as_bytes()) >> 11) as f64 / (1u64 << 53) as f64;
    if fraction < val_fraction {
        Split::Val
    } else {
        Split::Train
    }
}

/// One shard as the manifest lists it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ShardInfo {
    pub path: String,
    pub rows: usize,
    /// xxh3-128 of the file.
    pub hash: String,
}

/// Counts of one split.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct SplitSummary {
    pub docs: u64,
    /// Tokens of its documents, EOS included.
    pub tokens: u64,
    pub sequences: u64,
    /// Tokens of the incomplete last sequence, not written.
    pub dropped_tokens: u64,
    /// Document rows: documents longer than `seq_len` (EOS included), cut to `seq_len`.
    #[serde(default)]
    pub truncated_docs: u64,
    /// Document rows: the tokens cut off those documents.
    #[serde(default)]
    pub truncated_tokens: u64,
    /// Document rows: pad positions written after the real tokens.
    #[serde(default)]
    pub padding_tokens: u64,
    pub shards: Vec<ShardInfo>,
}

/// Decontamination facts for the manifest.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct DecontaminationSummary {
    pub sources: Vec<serde_json::Value>,
    /// PMIDs cited by the test sets (all of them, found in the corpus or not).
    pub pmids: Vec<u64>,
    /// Documents of the corpus dropped because they are cited.
    pub excluded_docs: u64,
    pub excluded_tokens: u64,
    /// The cited PMIDs that were present in the corpus.
    pub excluded_pmids: Vec<u64>,
}

/// `manifests/pack.json` summary: everything the trainer needs to trust the shards.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct PackSummary {
    /// `pubmed` or the corpus's name.
    #[serde(default = "pubmed")]
    pub domain: String,
    /// `packed` or `document` rows.
    #[serde(default)]
    pub sequences: Sequences,
    /// The pad id of document rows (= `eos_id`); null for packed rows.
    #[serde(default)]
    pub pad_id: Option<u32>,
    /// A corpus's cap on its documents (`[corpus.<name>] max_documents`).
    #[serde(default)]
    pub max_documents: Option<u64>,
    pub tokenizer_hash: String,
    pub vocab_size: usize,
    pub eos_id: u32,
    pub seq_len: usize,
    pub shard_sequences: usize,
    pub token_type: String,
    pub val_fraction: f64,
    pub split_salt: String,
    pub canonical_order: String,
    pub train: SplitSummary,
    pub val: SplitSummary,
    pub decontamination: DecontaminationSummary,
    /// Whether this run reused the previous shards.
    #[serde(skip)]
    pub cached: bool,
}

fn pubmed() -> String {
    schemas::layout::PUBMED.to_string()
}

impl PackSummary {
    pub fn describe(&self) -> String {
        let line = |name: &str, s: &SplitSummary| {
            format!(
                "  {name:<5} {:>9} docs {:>12} tokens {:>9} sequences {:>6} shards {:>8} tail tokens dropped",
                s.docs,
                s.tokens,
                s.sequences,
                s.shards.len(),
                s.dropped_tokens
            )
        };
        let document = |s: &SplitSummary| {
            format!(
                ", {} documents truncated ({} tokens cut), {} padding tokens",
                s.truncated_docs, s.truncated_tokens, s.padding_tokens
            )
        };
        let (train_extra, val_extra) = match self.sequences {
            Sequences::Packed => (String::new(), String::new()),
            Sequences::Document => (document(&self.train), document(&self.val)),
        };
        let decontamination = if self.domain == schemas::layout::PUBMED {
            format!(
                "\n  decontamination: {} cited PMIDs, {} documents ({} tokens) excluded",
                self.decontamination.pmids.len(),
                self.decontamination.excluded_docs,
                self.decontamination.excluded_tokens
            )
        } else {
            match self.max_documents {
                Some(m) => format!("\n  max_documents: {m}"),
                None => String::new(),
            }
        };
        format!(
            "{}{}: {} rows, seq_len {}, vocab {} ({}), EOS {}\n{}{train_extra}\n{}{val_extra}{decontamination}",
            schemas::shards::pack_stage_of(&self.domain),
            if self.cached { " (cached)" } else { "" },
            self.sequences.name(),
            self.seq_len,
            self.vocab_size,
            self.token_type,
            self.eos_id,
            line("train", &self.train),
            line("val", &self.val),
        )
    }
}

#[derive(Serialize)]
struct PackStageConfig {
    seq_len: usize,
    shard_sequences: usize,
    val_fraction: f64,
    split_salt: String,
    /// Left out when packed, so packed shards keep the fingerprint they always had.
    #[serde(skip_serializing_if = "is_packed")]
    sequences: Sequences,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_documents: Option<u64>,
}

fn is_packed(s: &Sequences) -> bool {
    *s == Sequences::Packed
}

fn stage_config(s: &TokenizeConfig, domain: &Domain) -> PackStageConfig {
    PackStageConfig {
        seq_len: s.seq_len,
        shard_sequences: s.shard_sequences,
        val_fraction: s.val_fraction,
        split_salt: s.split_salt.clone(),
        sequences: s.sequences,
        max_documents: domain.corpus.as_ref().and_then(|c| c.max_documents),
    }
}

/// Packs one split's stream into shards.
struct SplitPacker {
    dir: PathBuf,
    seq_len: usize,
    shard_sequences: usize,
    vocab_size: usize,
    sequences: Sequences,
    /// The pad id of document rows.
    pad_id: u32,
    /// Real tokens of each complete row (document rows).
    lengths: Vec<u32>,
    /// Complete rows of the shard being filled, then the partial current row.
    buf: Vec<u32>,
    /// doc_starts of the complete rows in `buf`.
    rows: Vec<Vec<u32>>,
    /// doc_starts of the partial current row.
    row_starts: Vec<u32>,
    summary: SplitSummary,
    written: Vec<PathBuf>,
}

impl SplitPacker {
    fn new(dir: PathBuf, s: &TokenizeConfig, vocab_size: usize, pad_id: u32) -> Self {
        Self {
            dir,
            seq_len: s.seq_len,
            shard_sequences: s.shard_sequences,
            vocab_size,
            sequences: s.sequences,
            pad_id,
            lengths: Vec::new(),
            buf: Vec::new(),
            rows: Vec::new(),
            row_starts: Vec::new(),
            summary: SplitSummary::default(),
            written: Vec::new(),
        }
    }

    fn push_doc(&mut self, ids: &[u32]) -> Result<()> {
        self.summary.docs += 1;
        self.summary.tokens += ids.len() as u64;
        if self.sequences == Sequences::Document {
            return self.push_document_row(ids);
        }
        let mut rest = ids;
        let mut first = true;
        while !rest.is_empty() {
            let pos = self.buf.len() % self.seq_len;
            if first {
                self.row_starts.push(pos as u32);
                first = false;
            }
            let take = (self.seq_len - pos).min(rest.len());
            self.buf.extend_from_slice(&rest[..take]);
            rest = &rest[take..];
            if self.buf.len().is_multiple_of(self.seq_len) {
                self.rows.push(std::mem::take(&mut self.row_starts));
                if self.rows.len() == self.shard_sequences {
                    self.flush()?;
                }
            }
        }
        Ok(())
    }

    /// One document as one row: its first `seq_len` tokens, then pad ids.
    fn push_document_row(&mut self, ids: &[u32]) -> Result<()> {
        let take = ids.len().min(self.seq_len);
        if ids.len() > take {
            self.summary.truncated_docs += 1;
            self.summary.truncated_tokens += (ids.len() - take) as u64;
        }
        let pad = self.seq_len - take;
        self.summary.padding_tokens += pad as u64;
        self.buf.extend_from_slice(&ids[..take]);
        self.buf.extend(std::iter::repeat_n(self.pad_id, pad));
        self.rows.push(vec![0]);
        self.lengths.push(take as u32);
        if self.rows.len() == self.shard_sequences {
            self.flush()?;
        }
        Ok(())
    }

    /// Write the complete rows held as the next shard.
    fn flush(&mut self) -> Result<()> {
        let n = self.rows.len();
        if n == 0 {
            return Ok(());
        }
        let complete = n * self.seq_len;
        let batch = match self.sequences {
            Sequences::Packed => schemas::shards::batch(
                self.seq_len,
                self.vocab_size,
                &self.buf[..complete],
                &self.rows,
            )?,
            Sequences::Document => schemas::shards::document_batch(
                self.seq_len,
                self.vocab_size,
                &self.buf[..complete],
                &self.rows,
                &self.lengths,
            )?,
        };
        let path = self
            .dir
            .join(schemas::shards::shard_file_name(self.written.len()));
        schemas::shards::write_shard(&path, &batch)?;
        self.written.push(path);
        self.summary.sequences += n as u64;
        self.buf.drain(..complete);
        self.rows.clear();
        self.lengths.clear();
        Ok(())
    }

    fn finish(mut self) -> Result<(SplitSummary, Vec<PathBuf>)> {
        let tail = self.buf.len() % self.seq_len;
        self.buf.truncate(self.buf.len() - tail);
        self.row_starts.clear();
        self.flush()?;
        self.summary.dropped_tokens = tail as u64;
        remove_other_shards(&self.dir, &self.written)?;
        Ok((self.summary, self.written))
    }
}

/// Remove `shard-*.arrow` files of `dir` not in `keep` (left by a run with more shards).
fn remove_other_shards(dir: &Path, keep: &[PathBuf]) -> Result<()> {
    for path in schemas::layout::files_with_suffix(dir, ".arrow")? {
        let is_shard = path
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("shard-"));
        if is_shard && !keep.contains(&path) {
            std::fs::remove_file(&path)
                .with_context(|| format!("removing stale shard {}", path.display()))?;
        }
    }
    Ok(())
}

/// Stage 2: pack the token files (canonical order) into shards; cached as one unit.
pub fn pack_stage(ctx: &Ctx, s: &TokenizeConfig, token_files: &[PathBuf]) -> Result<PackSummary> {
    pack_domain(ctx, s, &Domain::pubmed(ctx, s)?, token_files)
}

/// Stage 2 of one domain: its token files (canonical order) into its shards,
/// `Layout::domain_shards(domain, split)`, under its manifest (`pack`, `pack-<name>`).
pub fn pack_domain(
    ctx: &Ctx,
    s: &TokenizeConfig,
    domain: &Domain,
    token_files: &[PathBuf],
) -> Result<PackSummary> {
    let root = ctx.layout.root();
    let stage_name = domain.pack_stage();
    let decon = if domain.is_pubmed() {
        decontaminate::load(&s.decontaminate, root)?
    } else {
        decontaminate::Decontamination::default()
    };
    let max_documents = domain.corpus.as_ref().and_then(|c| c.max_documents);
    let stage = Stage::open(
        root,
        &stage_name,
        CODE_VERSION,
        schemas::shards::VERSION,
        &stage_config(s, domain),
        ctx.force,
    )?
    .with_settings(&s.recorded(root))?;
    let mut input_paths = token_files.to_vec();
    input_paths.extend(decon.files.iter().cloned());
    let inputs = stage.inputs(UNIT, &input_paths)?;
    if let Plan::Cached = stage.plan(UNIT, &inputs)? {
        let previous = schemas::StageManifest::load(&ctx.layout.manifest(&stage_name))?
            .context("cached pack stage has a manifest")?;
        // A run that failed between recording the shards and saving the summary (a full disk)
        // left no summary: pack again.
        match serde_json::from_value::<PackSummary>(previous.summary) {
            Ok(mut summary) => {
                summary.cached = true;
                return Ok(summary);
            }
            Err(e) => {
                tracing::info!("{stage_name}: its manifest has no summary ({e}); packing again")
            }
        }
    }
    let train_dir = ctx.layout.domain_shards(&domain.name, Split::Train.name());
    let val_dir = ctx.layout.domain_shards(&domain.name, Split::Val.name());
    for dir in [&train_dir, &val_dir] {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        schemas::atomic::remove_stale_temps(dir)?;
    }

    // Vocabulary and EOS must agree across all token files.
    let mut meta: Option<(usize, u32, PathBuf)> = None;
    for f in token_files {
        let r = TokenFileReader::open(f)?;
        match &meta {
            None => meta = Some((r.vocab_size, r.eos_id, f.clone())),
            Some((v, e, first)) => ensure!(
                (*v, *e) == (r.vocab_size, r.eos_id),
                "{} has vocab {} / EOS {}, but {} has {v} / {e}: token files of different tokenizers",
                f.display(),
                r.vocab_size,
                r.eos_id,
                first.display()
            ),
        }
    }
    let tokenize_manifest =
        schemas::StageManifest::load(&ctx.layout.manifest(&domain.tokenize_stage()))?;
    let tokenizer_hash = tokenize_manifest
        .and_then(|m| m.summary["tokenizer"]["hash"].as_str().map(str::to_string))
        .unwrap_or_default();
    let (vocab_size, eos_id) = meta.as_ref().map(|(v, e, _)| (*v, *e)).unwrap_or((0, 0));

    let mut train = SplitPacker::new(train_dir, s, vocab_size.max(1), eos_id);
    let mut val = SplitPacker::new(val_dir, s, vocab_size.max(1), eos_id);
    let mut excluded = DecontaminationSummary::default();
    let mut excluded_pmids = BTreeSet::new();
    let total_docs: u64 = token_files
        .iter()
        .map(|f| TokenFileReader::open(f).map(|r| r.docs))
        .sum::<Result<u64>>()?;
    let progress = schemas::progress::Progress::new(
        &stage_name,
        max_documents.map_or(total_docs, |m| m.min(total_docs)),
        schemas::progress::Unit::Count("documents"),
    );
    let mut ids = Vec::new();
    let mut taken = 0u64;
    'files: for f in token_files {
        let mut reader = TokenFileReader::open(f)?;
        while let Some(pmid) = reader.next_doc(&mut ids)? {
            if max_documents.is_some_and(|m| taken >= m) {
                break 'files;
            }
            taken += 1;
            progress.inc(1);
            if decon.pmids.contains(&pmid) {
                excluded.excluded_docs += 1;
                excluded.excluded_tokens += ids.len() as u64;
                excluded_pmids.insert(pmid);
                continue;
            }
            match split_of(pmid, &s.split_salt, s.val_fraction) {
                Split::Train => train.push_doc(&ids),
                Split::Val => val.push_doc(&ids),
            }
            .with_context(|| {
                let what = if domain.is_pubmed() {
                    "PMID"
                } else {
                    "document key"
                };
                format!("packing {what} {pmid} from {}", f.display())
            })?;
        }
    }
    progress.finish();
    let (mut train_summary, train_files) = train.finish()?;
    let (mut val_summary, val_files) = val.finish()?;
    let outputs: Vec<PathBuf> = train_files.iter().chain(&val_files).cloned().collect();

    let mut summary = PackSummary {
        domain: domain.name.clone(),
        sequences: s.sequences,
        pad_id: (s.sequences == Sequences::Document).then_some(eos_id),
        max_documents,
        tokenizer_hash,
        vocab_size,
        eos_id,
        seq_len: s.seq_len,
        shard_sequences: s.shard_sequences,
        token_type: format!("{}", schemas::shards::token_type(vocab_size.max(1))),
        val_fraction: s.val_fraction,
        split_salt: s.split_salt.clone(),
        canonical_order: domain.canonical_order().into(),
        train: SplitSummary::default(),
        val: SplitSummary::default(),
        decontamination: DecontaminationSummary {
            sources: decon
                .sources
                .iter()
                .map(|c: &SourceCount| serde_json::to_value(c))
                .collect::<Result<_, _>>()?,
            pmids: decon.pmids.iter().copied().collect(),
            excluded_pmids: excluded_pmids.into_iter().collect(),
            ..excluded
        },
        cached: false,
    };
    stage.record(UNIT, inputs, &outputs, serde_json::json!({}))?;
    let recorded = stage.recorded(UNIT).context("pack unit just recorded")?;
    let info = |files: &[PathBuf]| -> Vec<ShardInfo> {
        files
            .iter()
            .map(|p| {
                let rel = schemas::manifest::relative_path(root, p);
                let rec = recorded.outputs.iter().find(|o| o.path == rel);
                let rows = schemas::shards::ShardReader::open(p)
                    .map(|r| r.len())
                    .unwrap_or(0);
                ShardInfo {
                    path: rel,
                    rows,
                    hash: rec.map(|r| r.hash.clone()).unwrap_or_default(),
                }
            })
            .collect()
    };
    train_summary.shards = info(&train_files);
    val_summary.shards = info(&val_files);
    summary.train = train_summary;
    summary.val = val_summary;
    stage.finish(serde_json::to_value(&summary)?)?;
    Ok(summary)
}

/// The pack stage with its summary lines.
pub fn run(ctx: &Ctx, s: &TokenizeConfig, token_files: &[PathBuf]) -> Result<PackSummary> {
    run_domain(ctx, s, &Domain::pubmed(ctx, s)?, token_files)
}

/// The pack stage of one domain with its summary lines.
pub fn run_domain(
    ctx: &Ctx,
    s: &TokenizeConfig,
    domain: &Domain,
    token_files: &[PathBuf],
) -> Result<PackSummary> {
    let packed = pack_domain(ctx, s, domain, token_files)?;
    println!("{}", packed.describe());
    Ok(packed)
}

/// `pipeline status` row of the pack stage.
pub fn status(ctx: &Ctx) -> Result<StageStatus> {
    let s = TokenizeConfig::for_status(ctx, STAGE)?;
    let mut domain = Domain::pubmed_unlisted(ctx, &s);
    domain.parts = super::list_parts(&s.input).unwrap_or_default();
    domain_status(ctx, &s, &domain)
}

/// `pipeline status` row of one domain's pack stage (`s`: the tokenize settings to judge by).
pub fn domain_status(ctx: &Ctx, s: &TokenizeConfig, domain: &Domain) -> Result<StageStatus> {
    let stage_name = domain.pack_stage();
    let s = if domain.is_pubmed() {
        s.clone()
    } else {
        TokenizeConfig::for_status(ctx, &stage_name)?
    };
    let stage = Stage::open(
        ctx.layout.root(),
        &stage_name,
        CODE_VERSION,
        schemas::shards::VERSION,
        &stage_config(&s, domain),
        false,
    )?;
    let parts = &domain.parts;
    let mut inputs: Vec<PathBuf> = parts.iter().map(|p| domain.token_path(p)).collect();
    if domain.is_pubmed()
        && let Ok(files) = decontaminate::expand(&s.decontaminate)
    {
        inputs.extend(files);
    }
    if parts.is_empty() {
        return Ok(StageStatus {
            stage: stage_name,
            ..Default::default()
        });
    }
    if inputs.iter().any(|p| !p.exists()) {
        let known = stage.recorded(UNIT).is_some();
        return Ok(StageStatus {
            stage: stage_name,
            stale: known as usize,
            missing: (!known) as usize,
            note: "token files missing: run `pipeline tokenize`".into(),
            ..Default::default()
        });
    }
    let mut st = stage.status(&[(UNIT.to_string(), inputs)])?;
    if let Some(m) = schemas::StageManifest::load(&ctx.layout.manifest(&stage_name))?
        && let Ok(sum) = serde_json::from_value::<PackSummary>(m.summary)
    {
        st.note = format!(
            "train {} seqs, val {} seqs of {} ({})",
            sum.train.sequences,
            sum.val.sequences,
            sum.seq_len,
            sum.sequences.name()
        );
    }
    Ok(st)
}
