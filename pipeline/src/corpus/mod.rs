//! `pipeline corpus`: the raw files of each general-domain corpus (`[corpus.<name>]`, fetched by
//! `pipeline corpus-download` into `raw/corpus/<name>/<file>`) → `parquet/corpus/<name>/<file
//! stem>.parquet` in the [`schemas::corpus`] schema (`doc_id`, `text`, `source_file`, `row`).
//!
//! A cached stage (`manifests/corpus.json`) with one unit per raw file (key `<name>/<file>`), like
//! `parse`: a unit whose raw file and settings are unchanged is cached; parts that come out
//! byte-identical keep their file. Units run in canonical order (corpora by name, files in config
//! order); `--shard i/n` takes every n-th of them, `--corpus NAME` one corpus's. Files are streamed
//! ([`formats`]): Parquet in record batches, JSON lines line by line, Parquet written in row groups of
//! [`ROW_GROUP_ROWS`]; documents with empty or whitespace-only text are left out and counted.
//!
//! The stage's settings are the parse settings of every configured corpus (format, fields), so
//! changing one corpus's re-runs the units of all (their parts then come out identical and stay).

pub mod download;
pub mod formats;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{Context, Result, bail, ensure};
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use parquet::schema::types::ColumnPath;
use rayon::prelude::*;
use schemas::AtomicFile;
use schemas::corpus::CorpusRow;
use serde::Serialize;
use serde_json::json;

use crate::Ctx;
use crate::config::{CorpusConfig, CorpusFormat};
use crate::parse::writer::BatchWriter;
use crate::stage::{Plan, Shard, Stage, StageStatus};
use formats::ReadStats;

pub const STAGE: &str = "corpus";
pub const CODE_VERSION: u32 = 1;
/// Rows per Parquet row group of a corpus part (and per batch in memory).
pub const ROW_GROUP_ROWS: usize = 4096;
const ZSTD_LEVEL: i32 = 3;

#[derive(clap::Args, Clone, Debug, Default)]
pub struct Args {
    /// Only this corpus (a `[corpus.<name>]` of the config).
    #[arg(long)]
    pub corpus: Option<String>,
    /// Only every n-th raw file (of all selected corpora, in canonical order), starting at the i-th
    /// (0-based), for one task of a job array.
    #[arg(long)]
    pub shard: Option<Shard>,
}

/// One raw file of a corpus: a unit of `corpus-download` and of `corpus`.
#[derive(Clone, Debug)]
pub struct CorpusFile {
    pub corpus: String,
    /// The path inside the dataset repository.
    pub file: String,
    /// `raw/corpus/<name>/<file>`.
    pub raw: PathBuf,
    /// `parquet/corpus/<name>/<file stem>.parquet`.
    pub part: PathBuf,
}

impl CorpusFile {
    pub fn key(&self) -> String {
        format!("{}/{}", self.corpus, self.file)
    }
}

/// The configured corpora, by name, or the one `only` names (an error when it is not configured).
pub fn selected<'a>(ctx: &'a Ctx, only: Option<&str>) -> Result<Vec<(&'a str, &'a CorpusConfig)>> {
    ctx.config.check_corpora()?;
    let all = &ctx.config.corpus;
    match only {
        None => Ok(all.iter().map(|(k, v)| (k.as_str(), v)).collect()),
        Some(name) => match all.get_key_value(name) {
            Some((k, v)) => Ok(vec![(k.as_str(), v)]),
            None => bail!(
                "--corpus {name}: no [corpus.{name}] in the config (configured: {})",
                if all.is_empty() {
                    "none".to_string()
                } else {
                    all.keys().cloned().collect::<Vec<_>>().join(", ")
                }
            ),
        },
    }
}

/// The raw files of one corpus in canonical (config) order.
pub fn corpus_files(ctx: &Ctx, name: &str, corpus: &CorpusConfig) -> Vec<CorpusFile> {
    corpus
        .files
        .iter()
        .map(|file| CorpusFile {
            corpus: name.to_string(),
            file: file.clone(),
            raw: ctx.layout.raw_corpus(name).join(file),
            part: ctx
                .layout
                .parquet_corpus(name)
                .join(format!("{}.parquet", corpus.file_stem(file))),
        })
        .collect()
}

/// Every raw file of the corpora in `corpora`, corpora by name, files in config order.
pub fn all_files(ctx: &Ctx, corpora: &[(&str, &CorpusConfig)]) -> Vec<CorpusFile> {
    corpora
        .iter()
        .flat_map(|(name, c)| corpus_files(ctx, name, c))
        .collect()
}

/// What parsing one corpus depends on.
#[derive(Serialize)]
struct CorpusParseSettings<'a> {
    format: CorpusFormat,
    text_field: &'a str,
    id: Option<&'a str>,
    title_field: Option<&'a str>,
}

fn stage_config(ctx: &Ctx) -> serde_json::Value {
    let corpora: serde_json::Map<String, serde_json::Value> = ctx
        .config
        .corpus
        .iter()
        .map(|(name, c)| {
            let s = CorpusParseSettings {
                format: c.format,
                text_field: &c.text_field,
                id: c.id_column(),
                title_field: c.title_field.as_deref(),
            };
            (name.clone(), serde_json::to_value(s).unwrap_or_default())
        })
        .collect();
    json!({
        "corpora": corpora,
        "document_text": "title\\ntext",
        "row_group_rows": ROW_GROUP_ROWS,
        "zstd_level": ZSTD_LEVEL,
    })
}

fn open_stage(ctx: &Ctx, force: bool) -> Result<Stage> {
    Stage::open(
        ctx.layout.root(),
        STAGE,
        CODE_VERSION,
        schemas::corpus::VERSION,
        &stage_config(ctx),
        force,
    )
}

fn writer_properties() -> Result<WriterProperties> {
    Ok(WriterProperties::builder()
        .set_compression(Compression::ZSTD(
            ZstdLevel::try_new(ZSTD_LEVEL).context("zstd level")?,
        ))
        .set_max_row_group_size(ROW_GROUP_ROWS)
        .set_created_by("biomamba pipeline".to_string())
        .set_column_dictionary_enabled(ColumnPath::from("text"), false)
        .build())
}

/// Parse one raw file into its part (atomically; an identical existing part is kept).
pub fn parse_file(corpus: &CorpusConfig, file: &CorpusFile) -> Result<ReadStats> {
    ensure!(
        file.raw.is_file(),
        "{} is missing ({} of {}): run `pipeline corpus-download` first",
        file.raw.display(),
        file.file,
        corpus.repo
    );
    let mut writer = BatchWriter::new(
        AtomicFile::create(&file.part)?,
        schemas::corpus::schema(),
        writer_properties()?,
        ROW_GROUP_ROWS,
        |_, rows: &[CorpusRow]| schemas::corpus::batch(rows),
    )?;
    let stats = formats::read_file(corpus, &file.raw, &file.file, ROW_GROUP_ROWS, &mut |row| {
        writer.push(row)
    })?;
    writer
        .finish()
        .with_context(|| format!("writing {}", file.part.display()))?
        .commit_unless_identical()?;
    Ok(stats)
}

/// What `pipeline corpus` did.
#[derive(Clone, Debug, Default, Serialize)]
pub struct CorpusReport {
    pub files: usize,
    pub files_run: usize,
    pub totals: ReadStats,
}

/// The corpus stage over the selected corpora's files (or one shard of them).
pub fn run(ctx: &Ctx, args: &Args) -> Result<CorpusReport> {
    let corpora = selected(ctx, args.corpus.as_deref())?;
    if corpora.is_empty() {
        println!("corpus: no [corpus.<name>] in the config, nothing to do");
        return Ok(CorpusReport::default());
    }
    let every = all_files(ctx, &selected(ctx, None)?);
    let chosen = all_files(ctx, &corpora);
    let files = match args.shard {
        Some(shard) => shard.select(&chosen),
        None => chosen,
    };
    let previous_summary = schemas::StageManifest::load(&ctx.layout.manifest(STAGE))?
        .map(|m| m.summary)
        .unwrap_or_default();
    let stage = open_stage(ctx, ctx.force)?.with_settings(&json!({
        "corpora": ctx.config.corpus,
        "corpus": args.corpus,
        "shard": args.shard.map(|s| s.to_string()),
    }))?;
    // Units of files no longer configured go, with their parts.
    let keys: Vec<String> = every.iter().map(CorpusFile::key).collect();
    stage.retain_units(&|k| keys.iter().any(|key| key == k))?;
    schemas::atomic::remove_stale_temps_of(files.iter().map(|f| f.part.as_path()))?;
    let progress = schemas::progress::Progress::new(
        "corpus",
        files.len() as u64,
        schemas::progress::Unit::Count("files"),
    );
    let ran = AtomicU64::new(0);
    let stats: Vec<ReadStats> = files
        .par_iter()
        .map(|f| -> Result<ReadStats> {
            let corpus = &ctx.config.corpus[&f.corpus];
            let key = f.key();
            ensure!(
                f.raw.is_file(),
                "{} is missing ({} of {}): run `pipeline corpus-download` first",
                f.raw.display(),
                f.file,
                corpus.repo
            );
            let inputs = stage.inputs(&key, std::slice::from_ref(&f.raw))?;
            let st = match stage.plan(&key, &inputs)? {
                Plan::Cached => {
                    let unit = stage.recorded(&key).context("cached unit has a record")?;
                    serde_json::from_value(unit.stats).unwrap_or_default()
                }
                Plan::Run(reason) => {
                    tracing::info!("{key}: parsing ({reason})");
                    let st = match parse_file(corpus, f) {
                        Ok(st) => st,
                        Err(e) => {
                            // The part of an earlier parse no longer matches its raw file: it
                            // goes, with its unit, so nothing downstream tokenizes it.
                            stage.retain_units(&|k| k != key)?;
                            let _ = std::fs::remove_file(&f.part);
                            return Err(e.context(format!("corpus {key}")));
                        }
                    };
                    stage.record(
                        &key,
                        inputs,
                        std::slice::from_ref(&f.part),
                        serde_json::to_value(&st)?,
                    )?;
                    ran.fetch_add(1, Ordering::Relaxed);
                    st
                }
            };
            progress.inc(1);
            Ok(st)
        })
        .collect::<Result<_>>()?;
    progress.finish();
    let mut totals = ReadStats::default();
    for st in &stats {
        totals.rows += st.rows;
        totals.docs += st.docs;
        totals.skipped_empty += st.skipped_empty;
    }
    // Per corpus, every file parsed so far (by this run or other shards' runs).
    let mut per_corpus = serde_json::Map::new();
    for (name, c) in selected(ctx, None)? {
        let mut t = ReadStats::default();
        let mut parsed = 0;
        for f in corpus_files(ctx, name, c) {
            if let Some(unit) = stage.recorded(&f.key())
                && let Ok(st) = serde_json::from_value::<ReadStats>(unit.stats)
            {
                parsed += 1;
                t.rows += st.rows;
                t.docs += st.docs;
                t.skipped_empty += st.skipped_empty;
            }
        }
        per_corpus.insert(
            name.to_string(),
            json!({ "repo": c.repo, "files": c.files.len(), "parsed": parsed, "totals": t }),
        );
    }
    let summary = json!({ "corpora": per_corpus });
    let ran = ran.into_inner() as usize;
    if ran > 0 || summary != previous_summary {
        stage.finish(summary)?;
    }
    let report = CorpusReport {
        files: files.len(),
        files_run: ran,
        totals,
    };
    println!(
        "corpus: {} files ({} parsed, {} cached), {} rows, {} documents, {} empty texts left out",
        report.files,
        report.files_run,
        report.files - report.files_run,
        report.totals.rows,
        report.totals.docs,
        report.totals.skipped_empty
    );
    Ok(report)
}

/// `pipeline status` row of the corpus stage.
pub fn status(ctx: &Ctx) -> Result<StageStatus> {
    let stage = open_stage(ctx, false)?;
    let files = all_files(ctx, &selected(ctx, None)?);
    let (present, absent): (Vec<_>, Vec<_>) = files.iter().partition(|f| f.raw.is_file());
    let units: Vec<(String, Vec<PathBuf>)> = present
        .iter()
        .map(|f| (f.key(), vec![f.raw.clone()]))
        .collect();
    let mut st = stage.status(&units)?;
    for f in &absent {
        match stage.recorded(&f.key()) {
            Some(_) => st.stale += 1,
            None => st.missing += 1,
        }
    }
    if !absent.is_empty() {
        st.note = format!(
            "{} raw files missing: run `pipeline corpus-download`",
            absent.len()
        );
    } else if !files.is_empty() {
        st.note = format!("{} corpora", ctx.config.corpus.len());
    }
    Ok(st)
}

/// The part paths of a corpus, canonical order, for tokenizing (each must exist).
pub fn parts(ctx: &Ctx, name: &str, corpus: &CorpusConfig) -> Result<Vec<PathBuf>> {
    let files = corpus_files(ctx, name, corpus);
    let missing: Vec<String> = files
        .iter()
        .filter(|f| !f.part.is_file())
        .map(|f| f.part.display().to_string())
        .collect();
    ensure!(
        missing.is_empty(),
        "corpus {name}: {} of {} parts missing ({}): run `pipeline corpus` first",
        missing.len(),
        files.len(),
        missing.join(", ")
    );
    Ok(files.into_iter().map(|f| f.part).collect())
}
