//! `pipeline parse`: PubMed XML (`.xml` / `.xml.gz`) → one Parquet part per input file.
//!
//! Each input file is one cached unit of stage `parse`: it becomes `parquet/abstracts/<stem>.parquet`
//! (one row per citation, input order) and `parquet/deletions/<stem>.parquet` (its `DeleteCitation`
//! PMIDs, possibly zero rows, so every input has the same outputs). Files are parsed in parallel, each
//! streamed with one record and one row group in memory. A file that fails leaves no part at its final
//! path; the others still run, and the command then exits non-zero listing the failed files.
//!
//! Default inputs: every `*.xml` / `*.xml.gz` under `DATA/raw/pubmed/` (recursively) except
//! `raw/pubmed/efetch/`, whose records are parsed by the BioASQ stage (they are fetched by PMID for
//! BioASQ documents and are no part of the corpus). `--input` names files or directories instead.

pub mod record;
pub mod text;
pub mod writer;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, anyhow, bail};
use rayon::prelude::*;
use schemas::AtomicFile;
use schemas::layout::{files_with_suffix, subdirectories};
use schemas::progress::{Progress, Unit};
use serde::{Deserialize, Serialize};

use crate::Ctx;
use crate::config::ParseConfig;
use crate::stage::{Plan, Stage, StageStatus, in_data_dir, settings_path, status_settings};
pub use record::{
    Citation, Deletion, Item, ParseError, ParseOptions, RecordParser, open_input, open_reader,
    parse_reader,
};

pub const NAME: &str = "parse";
/// Bumped whenever the parser's output for the same input can change (2: an empty section or date
/// part no longer leaves a separator behind, e.g. `LABEL:` instead of `LABEL: `; attribute values
/// follow the text contract).
pub const CODE_VERSION: u32 = 2;

/// `--shard i/n` (shared with `pipeline tokenize`).
pub use crate::stage::Shard;

#[derive(clap::Args, Clone, Debug, Default)]
pub struct Args {
    /// Input files or directories (default: every *.xml / *.xml.gz under DATA/raw/pubmed/, except efetch/).
    #[arg(long, num_args = 1..)]
    pub input: Vec<PathBuf>,
    /// Process only every n-th input file, starting at the i-th (0-based), e.g. `--shard 3/8` for
    /// one task of a job array. The current view is then not built; run `pipeline current` after all shards.
    #[arg(long)]
    pub shard: Option<Shard>,
    /// Skip broken citations (counted in the manifest) instead of failing their file.
    #[arg(long)]
    pub skip_bad_records: bool,
    /// Do not rebuild the current view afterwards.
    #[arg(long)]
    pub no_current: bool,
    /// Files parsed in parallel (default: all cores).
    #[arg(long)]
    pub jobs: Option<usize>,
}

impl Args {
    /// Whether `pipeline parse` goes on to build the current view: not for one shard of the inputs
    /// (run `pipeline current` after all shards), not with `--no-current`.
    pub fn builds_current(&self) -> bool {
        self.shard.is_none() && !self.no_current
    }
}

/// What a parse run did.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ParseSummary {
    pub files: usize,
    pub cached: usize,
    pub parsed: usize,
    pub failed: Vec<String>,
    pub citations: u64,
    pub deletions: u64,
    pub skipped_records: u64,
}

/// Canonical order of input files: PubMed files by (year, number) of `pubmedYYnNNNN`, then the rest by
/// name. Baseline and update files interleave correctly because update numbers continue the baseline's.
pub fn canonical_key(path: &Path) -> (u8, u32, u32, String) {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let stem = file_stem(path);
    let number = stem.strip_prefix("pubmed").and_then(|rest| {
        let (yy, nnnn) = rest.split_once('n')?;
        Some((yy.parse::<u32>().ok()?, nnnn.parse::<u32>().ok()?))
    });
    match number {
        Some((yy, n)) => (0, yy, n, name),
        None => (1, 0, 0, name),
    }
}

/// The file name without `.xml` / `.xml.gz` (`pubmed26n0001.xml.gz` → `pubmed26n0001`).
pub fn file_stem(path: &Path) -> String {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    for ext in [".xml.gz", ".xml"] {
        if let Some(stem) = name.strip_suffix(ext) {
            return stem.to_string();
        }
    }
    name
}

/// The `*.xml` and `*.xml.gz` files under `dir`, recursively, except under `skip`.
fn collect_xml(dir: &Path, skip: Option<&Path>, out: &mut Vec<PathBuf>) -> Result<()> {
    for suffix in [".xml", ".xml.gz"] {
        out.extend(files_with_suffix(dir, suffix)?);
    }
    for sub in subdirectories(dir)? {
        if Some(sub.as_path()) != skip {
            collect_xml(&sub, skip, out)?;
        }
    }
    Ok(())
}

/// The input files in canonical order (before sharding).
pub fn discover_inputs(ctx: &Ctx, explicit: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    if explicit.is_empty() {
        let root = ctx.layout.raw_pubmed();
        if root.is_dir() {
            collect_xml(&root, Some(&ctx.layout.raw_efetch()), &mut files)?;
        }
    } else {
        for p in explicit {
            if p.is_dir() {
                collect_xml(p, None, &mut files)?;
            } else if p.is_file() {
                files.push(p.clone());
            } else {
                bail!("--input {}: no such file or directory", p.display());
            }
        }
    }
    files.sort_by_key(|p| canonical_key(p));
    files.dedup();
    Ok(files)
}

/// Unit key of an input: its path relative to the data directory when inside it, else as given.
fn unit_key(ctx: &Ctx, path: &Path) -> String {
    schemas::manifest::relative_path(ctx.layout.root(), path)
}

/// The effective settings of a parse run, as its manifest records them.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct ParseSettings {
    /// `[parse]` with the flags applied.
    config: ParseConfig,
    /// `--input` (empty: every XML file under `raw/pubmed/`).
    input: Vec<PathBuf>,
    /// `--shard i/n` of the run, if any (status always judges every input).
    shard: Option<String>,
}

fn stage_config(ctx: &Ctx, args: &Args) -> ParseConfig {
    let mut config = ctx.config.parse.clone();
    config.skip_bad_records |= args.skip_bad_records;
    config
}

fn open_stage(ctx: &Ctx, config: &ParseConfig, force: bool) -> Result<Stage> {
    Stage::open(
        ctx.layout.root(),
        NAME,
        CODE_VERSION,
        schemas::abstracts::VERSION,
        config,
        force,
    )
}

/// Outputs of one input file.
pub fn output_paths(ctx: &Ctx, input: &Path) -> (PathBuf, PathBuf) {
    let stem = file_stem(input);
    (
        ctx.layout
            .parquet_abstracts()
            .join(format!("{stem}.parquet")),
        ctx.layout
            .parquet_deletions()
            .join(format!("{stem}.parquet")),
    )
}

/// Reads through to `inner`, advancing a byte progress bar.
struct CountingReader<R> {
    inner: R,
    progress: Arc<Progress>,
}

impl<R: Read> Read for CountingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.progress.inc(n as u64);
        Ok(n)
    }
}

/// What parsing one input file gave.
#[derive(Debug, Default)]
pub struct FileOutcome {
    pub cached: bool,
    pub citations: u64,
    pub deletions: u64,
    pub skipped: u64,
}

/// Parse one input into its two parts; nothing reaches a final path unless the whole file parsed.
fn parse_file(
    ctx: &Ctx,
    stage: &Stage,
    config: &ParseConfig,
    input: &Path,
    progress: &Arc<Progress>,
) -> Result<FileOutcome> {
    let key = unit_key(ctx, input);
    let inputs = stage.inputs(&key, &[input.to_path_buf()])?;
    let size = inputs.first().map(|f| f.size).unwrap_or(0);
    if let Plan::Run(reason) = stage.plan(&key, &inputs)? {
        tracing::debug!("parse {key}: {reason}");
    } else {
        progress.inc(size);
        let stats = stage.recorded(&key).map(|u| u.stats).unwrap_or_default();
        let n = |k: &str| stats.get(k).and_then(|v| v.as_u64()).unwrap_or(0);
        return Ok(FileOutcome {
            cached: true,
            citations: n("citations"),
            deletions: n("deletions"),
            skipped: n("skipped_records"),
        });
    }
    let (abstracts_path, deletions_path) = output_paths(ctx, input);
    let result = write_parts(config, input, &abstracts_path, &deletions_path, progress);
    match result {
        Ok((outcome, skipped_errors)) => {
            let stats = serde_json::json!({
                "citations": outcome.citations,
                "deletions": outcome.deletions,
                "skipped_records": outcome.skipped,
                "skipped": skipped_errors,
            });
            stage.record(&key, inputs, &[abstracts_path, deletions_path], stats)?;
            Ok(outcome)
        }
        Err(e) => {
            // Parts of an earlier version of this input no longer describe it.
            let _ = std::fs::remove_file(&abstracts_path);
            let _ = std::fs::remove_file(&deletions_path);
            Err(e)
        }
    }
}

/// At most this many skipped-record messages are kept in the manifest per file.
const MAX_SKIPPED_LISTED: usize = 100;

/// Parse one input file into its abstracts and deletions parts (what `pipeline parse` does per
/// file, without the stage bookkeeping); returns the counts and the skipped-record messages.
/// `just bench-parse` times exactly this.
pub fn write_parts(
    config: &ParseConfig,
    input: &Path,
    abstracts_path: &Path,
    deletions_path: &Path,
    progress: &Arc<Progress>,
) -> Result<(FileOutcome, Vec<String>)> {
    let file =
        std::fs::File::open(input).with_context(|| format!("opening {}", input.display()))?;
    let counting = CountingReader {
        inner: file,
        progress: progress.clone(),
    };
    let reader = open_reader(counting).with_context(|| format!("reading {}", input.display()))?;
    let source_name = input
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let props = writer::writer_properties(config.zstd_level, config.batch_rows)?;
    let mut abstracts = writer::BatchWriter::new(
        AtomicFile::create(abstracts_path)?,
        schemas::abstracts::schema(),
        props.clone(),
        config.batch_rows,
        writer::citations_batch,
    )?;
    let mut deletions = writer::BatchWriter::new(
        AtomicFile::create(deletions_path)?,
        schemas::abstracts::deletions_schema(),
        props,
        config.batch_rows,
        writer::deletions_batch,
    )?;
    let mut outcome = FileOutcome::default();
    let mut skipped = Vec::new();
    for item in parse_reader(reader, &source_name, &ParseOptions::default()) {
        match item {
            Ok(Item::Citation(c)) => abstracts.push(*c)?,
            Ok(Item::Deletion(d)) => deletions.push(d)?,
            Err(e) if e.recoverable && config.skip_bad_records => {
                outcome.skipped += 1;
                tracing::warn!("skipped bad record: {e}");
                if skipped.len() < MAX_SKIPPED_LISTED {
                    skipped.push(e.to_string());
                }
            }
            Err(e) => {
                let hint = if e.recoverable {
                    " (--skip-bad-records skips such records)"
                } else {
                    ""
                };
                return Err(anyhow!("{e}{hint}"));
            }
        }
    }
    outcome.citations = abstracts.rows();
    outcome.deletions = deletions.rows();
    let abstracts_file = abstracts.finish()?;
    let deletions_file = deletions.finish()?;
    abstracts_file.commit_unless_identical()?;
    deletions_file.commit_unless_identical()?;
    Ok((outcome, skipped))
}

/// Run the parse stage (the `pipeline parse` command then builds the current view, see
/// [`Args::builds_current`]).
pub fn run(ctx: &Ctx, args: Args) -> Result<ParseSummary> {
    let config = stage_config(ctx, &args);
    let all = discover_inputs(ctx, &args.input)?;
    let inputs: Vec<PathBuf> = match args.shard {
        Some(s) => s.select(&all),
        None => all.clone(),
    };
    // Two inputs with one stem would write the same part.
    let mut stems: Vec<(String, &PathBuf)> = all.iter().map(|p| (file_stem(p), p)).collect();
    stems.sort();
    for pair in stems.windows(2) {
        if pair[0].0 == pair[1].0 {
            bail!(
                "inputs {} and {} would both write part {}.parquet; rename one",
                pair[0].1.display(),
                pair[1].1.display(),
                pair[0].0
            );
        }
    }
    for dir in [
        ctx.layout.parquet_abstracts(),
        ctx.layout.parquet_deletions(),
    ] {
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    // Only the parts of this run's inputs: other tasks of a job array write beside them.
    let outputs: Vec<PathBuf> = (inputs.iter())
        .flat_map(|p| <[PathBuf; 2]>::from(output_paths(ctx, p)))
        .collect();
    schemas::atomic::remove_stale_temps_of(outputs.iter().map(PathBuf::as_path))?;
    let root = ctx.layout.root();
    let stage = open_stage(ctx, &config, ctx.force)?.with_settings(&ParseSettings {
        config: config.clone(),
        input: args.input.iter().map(|p| settings_path(root, p)).collect(),
        shard: args.shard.map(|s| s.to_string()),
    })?;
    let total: u64 = inputs
        .iter()
        .map(|p| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0))
        .sum();
    let progress = Arc::new(Progress::new("parse", total, Unit::Bytes));
    let work = || {
        inputs
            .par_iter()
            .map(|p| (p, parse_file(ctx, &stage, &config, p, &progress)))
            .collect::<Vec<_>>()
    };
    let results = match args.jobs {
        Some(n) => rayon::ThreadPoolBuilder::new()
            .num_threads(n.max(1))
            .build()
            .context("building thread pool")?
            .install(work),
        None => work(),
    };
    progress.finish();
    let mut summary = ParseSummary {
        files: inputs.len(),
        ..Default::default()
    };
    let mut errors = Vec::new();
    for (path, result) in results {
        match result {
            Ok(o) => {
                if o.cached {
                    summary.cached += 1;
                } else {
                    summary.parsed += 1;
                }
                summary.citations += o.citations;
                summary.deletions += o.deletions;
                summary.skipped_records += o.skipped;
            }
            Err(e) => {
                summary.failed.push(path.display().to_string());
                errors.push(format!("{e:#}"));
            }
        }
    }
    if args.input.is_empty() && args.shard.is_none() {
        let keys: std::collections::HashSet<String> =
            all.iter().map(|p| unit_key(ctx, p)).collect();
        // Units of earlier `--input` runs stay while their input file exists.
        let root = ctx.layout.root();
        let gone = stage.retain_units(&|k| keys.contains(k) || root.join(k).is_file())?;
        for key in gone {
            tracing::info!("parse: input {key} is gone; removed its parts");
        }
    }
    stage.finish(serde_json::to_value(&summary)?)?;
    println!(
        "parse: {} files ({} parsed, {} cached, {} failed), {} citations, {} deletions, {} bad records skipped",
        summary.files,
        summary.parsed,
        summary.cached,
        summary.failed.len(),
        summary.citations,
        summary.deletions,
        summary.skipped_records
    );
    if !errors.is_empty() {
        bail!(
            "{} of {} files failed:\n  {}",
            errors.len(),
            summary.files,
            errors.join("\n  ")
        );
    }
    Ok(summary)
}

/// `pipeline status` line of this stage.
pub fn status(ctx: &Ctx) -> Result<StageStatus> {
    let root = ctx.layout.root();
    let from_config = ParseSettings {
        config: ctx.config.parse.clone(),
        input: Vec::new(),
        shard: None,
    };
    let settings = status_settings(ctx, NAME, from_config)?;
    // Recorded `--input` paths that are gone have nothing to judge.
    let explicit: Vec<PathBuf> = (settings.input.iter())
        .map(|p| in_data_dir(root, p))
        .filter(|p| p.exists())
        .collect();
    if !settings.input.is_empty() && explicit.is_empty() {
        return Ok(StageStatus {
            stage: NAME.into(),
            note: "the inputs of the last run are gone".into(),
            ..Default::default()
        });
    }
    let inputs = discover_inputs(ctx, &explicit)?;
    let stage = open_stage(ctx, &settings.config, false)?;
    let units: Vec<(String, Vec<PathBuf>)> = inputs
        .iter()
        .map(|p| (unit_key(ctx, p), vec![p.clone()]))
        .collect();
    let mut status = stage.status(&units)?;
    status.note = format!(
        "{} citations in {}",
        stage.stat_total("citations"),
        schemas::Layout::relative().parquet_abstracts().display()
    );
    Ok(status)
}
