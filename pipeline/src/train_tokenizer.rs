//! `pipeline train-tokenizer`: a byte-level BPE like GPT-NeoX-20B's, trained on our abstracts.
//!
//! Same pipeline as GPT-NeoX: NFC normalizer, ByteLevel pre-tokenizer (no prefix space, GPT-2 regex),
//! ByteLevel post-processor (trim offsets) and decoder, BPE model; `<|endoftext|>` is the only special
//! token and gets id 0, then the 256 byte symbols, then merges up to `vocab_size`. Trained with the
//! `tokenizers` crate's `BpeTrainer` on the documents `pipeline tokenize` would encode (same
//! [`crate::tokenize::document_text`]), streamed part by part. Written as a standard `tokenizer.json`
//! (atomically), default `DATA/tokenizer/tokenizer.json`. Cached: re-runs only when the parts or the
//! settings change.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result, anyhow, ensure};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokenizers::models::bpe::{BPE, BpeTrainerBuilder};
use tokenizers::normalizers::unicode::NFC;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::{AddedToken, Tokenizer, TokenizerBuilder};

use crate::Ctx;
use crate::stage::{Plan, Stage, StageStatus, in_data_dir, settings_path, status_settings};
use crate::tokenize::{EOS_TOKEN, PartReader, list_parts};

pub const STAGE: &str = "train-tokenizer";
pub const CODE_VERSION: u32 = 1;
const UNIT: &str = "tokenizer";

/// `pipeline train-tokenizer` flags (override `[train_tokenizer]`).
#[derive(Clone, Debug, Default, clap::Args)]
pub struct Args {
    /// Vocabulary size (default 32768).
    #[arg(long)]
    pub vocab_size: Option<usize>,
    /// Directory of abstracts Parquet parts (default DATA/parquet/current).
    #[arg(long)]
    pub input: Option<PathBuf>,
    /// Output tokenizer.json (default DATA/tokenizer/tokenizer.json).
    #[arg(long)]
    pub output: Option<PathBuf>,
    /// Also report tokens per document under this tokenizer (e.g. GPT-NeoX's) for comparison.
    #[arg(long)]
    pub compare: Option<PathBuf>,
}

#[derive(Serialize)]
struct StageConfig {
    vocab_size: usize,
    min_frequency: u64,
    include_title_only: bool,
    pre_tokenizer: &'static str,
}

/// Documents of the parts in canonical order, streamed batch by batch. The first error stops the
/// stream and is kept in `error` (the trainer's iterator cannot fail).
struct Documents {
    parts: std::vec::IntoIter<PathBuf>,
    reader: Option<PartReader>,
    pending: std::vec::IntoIter<String>,
    include_title_only: bool,
    error: Arc<Mutex<Option<anyhow::Error>>>,
}

impl Documents {
    fn new(parts: Vec<PathBuf>, include_title_only: bool) -> Self {
        Self {
            parts: parts.into_iter(),
            reader: None,
            pending: Vec::new().into_iter(),
            include_title_only,
            error: Arc::new(Mutex::new(None)),
        }
    }

    fn refill(&mut self) -> Result<bool> {
        loop {
            if let Some(reader) = &mut self.reader {
                if let Some(batch) = reader.next_batch(self.include_title_only)? {
                    let texts: Vec<String> = batch.into_iter().filter_map(|c| c.text).collect();
                    self.pending = texts.into_iter();
                    return Ok(true);
                }
                self.reader = None;
            }
            match self.parts.next() {
                Some(part) => self.reader = Some(PartReader::open(&part, 4096)?),
                None => return Ok(false),
            }
        }
    }
}

impl Iterator for Documents {
    type Item = String;
    fn next(&mut self) -> Option<String> {
        loop {
            if let Some(text) = self.pending.next() {
                return Some(text);
            }
            match self.refill() {
                Ok(true) => continue,
                Ok(false) => return None,
                Err(e) => {
                    *self.error.lock().expect("error slot") = Some(e);
                    return None;
                }
            }
        }
    }
}

/// Train a GPT-NeoX-style byte-level BPE on `documents`.
pub fn train<I>(documents: I, vocab_size: usize, min_frequency: u64) -> Result<Tokenizer>
where
    I: Iterator<Item = String> + Send,
{
    ensure!(
        vocab_size > 257,
        "vocab_size {vocab_size} must exceed the 256 byte symbols plus {EOS_TOKEN}"
    );
    let mut trainer = BpeTrainerBuilder::new()
        .show_progress(false)
        .vocab_size(vocab_size)
        .min_frequency(min_frequency)
        .special_tokens(vec![AddedToken::from(EOS_TOKEN, true)])
        .initial_alphabet(ByteLevel::alphabet().into_iter().collect())
        .build();
    let byte_level = ByteLevel::new(false, true, true);
    let mut tokenizer = TokenizerBuilder::<BPE, NFC, ByteLevel, ByteLevel, ByteLevel>::new()
        .with_model(BPE::default())
        .with_normalizer(Some(NFC))
        .with_pre_tokenizer(Some(byte_level))
        .with_post_processor(Some(byte_level))
        .with_decoder(Some(byte_level))
        .build()
        .map_err(|e| anyhow!("building tokenizer: {e}"))?;
    tokenizer
        .train(&mut trainer, documents)
        .map_err(|e| anyhow!("training BPE: {e}"))?;
    let tokenizer = Tokenizer::from(tokenizer);
    ensure!(
        tokenizer.token_to_id(EOS_TOKEN) == Some(0),
        "{EOS_TOKEN} did not get id 0"
    );
    Ok(tokenizer)
}

/// Write `tokenizer` as tokenizer.json, atomically.
pub fn save(tokenizer: &Tokenizer, path: &Path) -> Result<()> {
    let text = tokenizer
        .to_string(true)
        .map_err(|e| anyhow!("serializing tokenizer: {e}"))?;
    schemas::atomic::write_atomic(path, text.as_bytes())
}

/// The effective settings of a run (config with flags applied), as recorded in the manifest.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Resolved {
    vocab_size: usize,
    min_frequency: u64,
    include_title_only: bool,
    input: PathBuf,
    output: PathBuf,
}

impl Resolved {
    /// As the manifest records it (paths relative to the data directory when inside it).
    fn recorded(&self, root: &Path) -> Self {
        Self {
            input: settings_path(root, &self.input),
            output: settings_path(root, &self.output),
            ..self.clone()
        }
    }
    /// Recorded settings back with paths to open.
    fn opened(self, root: &Path) -> Self {
        Self {
            input: in_data_dir(root, &self.input),
            output: in_data_dir(root, &self.output),
            ..self
        }
    }
}

fn resolve(ctx: &Ctx, args: &Args) -> Resolved {
    let c = &ctx.config.train_tokenizer;
    let in_data = |p: &Path| {
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            ctx.layout.root().join(p)
        }
    };
    Resolved {
        vocab_size: args.vocab_size.unwrap_or(c.vocab_size),
        min_frequency: c.min_frequency,
        include_title_only: c.include_title_only,
        input: args.input.clone().unwrap_or_else(|| in_data(&c.input)),
        output: args.output.clone().unwrap_or_else(|| in_data(&c.output)),
    }
}

fn open_stage(ctx: &Ctx, r: &Resolved, force: bool) -> Result<Stage> {
    let stage = Stage::open(
        ctx.layout.root(),
        STAGE,
        CODE_VERSION,
        1,
        &StageConfig {
            vocab_size: r.vocab_size,
            min_frequency: r.min_frequency,
            include_title_only: r.include_title_only,
            pre_tokenizer: "nfc+bytelevel(no prefix space)",
        },
        force,
    )?;
    stage.with_settings(&r.recorded(ctx.layout.root()))
}

/// Mean tokens per document (EOS not counted) of `tokenizer` over the parts.
pub fn tokens_per_document(
    tokenizer: &Tokenizer,
    parts: &[PathBuf],
    include_title_only: bool,
) -> Result<(u64, f64)> {
    let docs = Documents::new(parts.to_vec(), include_title_only);
    let error = docs.error.clone();
    let (mut n, mut tokens) = (0u64, 0u64);
    for text in docs {
        let enc = tokenizer
            .encode_fast(text.as_str(), false)
            .map_err(|e| anyhow!("encoding: {e}"))?;
        n += 1;
        tokens += enc.get_ids().len() as u64;
    }
    if let Some(e) = error.lock().expect("error slot").take() {
        return Err(e);
    }
    Ok((n, tokens as f64 / n.max(1) as f64))
}

pub fn run(ctx: &Ctx, args: Args) -> Result<()> {
    let r = resolve(ctx, &args);
    let parts = list_parts(&r.input)?;
    ensure!(
        !parts.is_empty(),
        "no Parquet parts in {} to train on",
        r.input.display()
    );
    let stage = open_stage(ctx, &r, ctx.force)?;
    let inputs = stage.inputs(UNIT, &parts)?;
    match stage.plan(UNIT, &inputs)? {
        Plan::Cached => println!(
            "train-tokenizer: {} is up to date (cached)",
            r.output.display()
        ),
        Plan::Run(reason) => {
            tracing::info!("training tokenizer ({reason})");
            let docs = Documents::new(parts.clone(), r.include_title_only);
            let error = docs.error.clone();
            let tokenizer = train(docs, r.vocab_size, r.min_frequency)?;
            if let Some(e) = error.lock().expect("error slot").take() {
                return Err(e.context("reading the training documents"));
            }
            save(&tokenizer, &r.output)?;
            let vocab = tokenizer.get_vocab_size(true);
            stage.record(
                UNIT,
                inputs,
                std::slice::from_ref(&r.output),
                json!({ "vocab_size": vocab }),
            )?;
            stage.finish(json!({
                "output": schemas::manifest::relative_path(ctx.layout.root(), &r.output),
                "vocab_size": vocab,
                "eos_id": 0,
            }))?;
            println!(
                "train-tokenizer: wrote {} (vocab {vocab})",
                r.output.display()
            );
        }
    }
    if let Some(compare) = &args.compare {
        let ours = Tokenizer::from_file(&r.output)
            .map_err(|e| anyhow!("loading {}: {e}", r.output.display()))?;
        let other = Tokenizer::from_file(compare)
            .map_err(|e| anyhow!("loading {}: {e}", compare.display()))?;
        let (n, a) = tokens_per_document(&ours, &parts, r.include_title_only)?;
        let (_, b) = tokens_per_document(&other, &parts, r.include_title_only)?;
        println!("tokens per document over {n} documents (EOS not counted):");
        println!(
            "  {:<50} vocab {:>6}  {a:>8.1}",
            r.output.display(),
            ours.get_vocab_size(true)
        );
        println!(
            "  {:<50} vocab {:>6}  {b:>8.1}  ({:+.1}% vs ours)",
            compare.display(),
            other.get_vocab_size(true),
            100.0 * (b - a) / a.max(f64::MIN_POSITIVE)
        );
    }
    Ok(())
}

/// `pipeline status` row.
pub fn status(ctx: &Ctx) -> Result<StageStatus> {
    let root = ctx.layout.root();
    let from_config = resolve(ctx, &Args::default()).recorded(root);
    let r = status_settings(ctx, STAGE, from_config)?.opened(root);
    let stage = open_stage(ctx, &r, false)?;
    let parts = list_parts(&r.input).unwrap_or_default();
    if parts.is_empty() {
        return Ok(StageStatus {
            stage: STAGE.into(),
            ..Default::default()
        });
    }
    stage
        .status(&[(UNIT.to_string(), parts)])
        .context("train-tokenizer status")
}
