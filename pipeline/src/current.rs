//! `pipeline current`: the current view `parquet/current/part-NNNNN.parquet`.
//!
//! The parts of `parquet/abstracts/` (with their `parquet/deletions/`) are folded in canonical file
//! order (`pubmedYYnNNNN` by year and number, then other names): a record replaces the held record of
//! its PMID when its version is at least the held one's (so among equal versions the latest file
//! wins, and within a file the later record), then the file's deletions remove their PMIDs (PubMed
//! puts `DeleteCitation` after a file's records). What remains is, for each PMID, the record of
//! highest version from the latest file, minus PMIDs deleted by a later file.
//!
//! PMIDs are split into `current.partitions` parts by `pmid % partitions`; each part is one cached
//! unit, built with only its own rows in memory, and sorted by PMID. Because the fold only moves
//! forward, a part whose recorded inputs are a prefix of today's inputs (new update files were
//! appended, nothing earlier changed) is updated incrementally: the old part is the starting state
//! and only the new files are folded in — the result is the same bytes a full rebuild gives.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use arrow::array::{AsArray, BooleanArray, RecordBatch};
use arrow::datatypes::UInt64Type;
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use rayon::prelude::*;
use schemas::layout::files_with_suffix;
use schemas::manifest::stat;
use schemas::progress::{Progress, Unit};
use schemas::{AtomicFile, Layout};
use serde::Serialize;

use crate::Ctx;
use crate::config::CurrentConfig;
use crate::parse::writer::{BatchWriter, writer_properties};
use crate::stage::{Plan, Stage, StageStatus, status_settings};

pub const NAME: &str = "current";
pub const CODE_VERSION: u32 = 1;

#[derive(clap::Args, Clone, Debug, Default)]
pub struct Args {
    /// Parts to build the view in (overrides `current.partitions`).
    #[arg(long)]
    pub partitions: Option<u32>,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct CurrentSummary {
    pub parts: usize,
    pub cached: usize,
    pub incremental: usize,
    pub rebuilt: usize,
    pub rows: u64,
}

/// Parsed parts in canonical order: (abstracts part, deletions part if present).
pub fn sources(ctx: &Ctx) -> Result<Vec<(PathBuf, Option<PathBuf>)>> {
    let mut out = Vec::new();
    for path in files_with_suffix(&ctx.layout.parquet_abstracts(), ".parquet")? {
        let deletions = match path.file_name() {
            Some(name) => ctx.layout.parquet_deletions().join(name),
            None => continue,
        };
        out.push((path, deletions.is_file().then_some(deletions)));
    }
    out.sort_by_key(|(p, _)| {
        let stem = p
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        crate::parse::canonical_key(Path::new(&format!("{stem}.xml")))
    });
    Ok(out)
}

fn input_paths(sources: &[(PathBuf, Option<PathBuf>)]) -> Vec<PathBuf> {
    sources
        .iter()
        .flat_map(|(a, d)| std::iter::once(a.clone()).chain(d.clone()))
        .collect()
}

fn part_key(k: u32) -> String {
    format!("part-{k:05}")
}

fn part_path(ctx: &Ctx, k: u32) -> PathBuf {
    ctx.layout
        .parquet_current()
        .join(format!("{}.parquet", part_key(k)))
}

fn open_parquet(path: &Path) -> Result<ParquetRecordBatchReaderBuilder<File>> {
    let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    ParquetRecordBatchReaderBuilder::try_new(file)
        .with_context(|| format!("reading Parquet {}", path.display()))
}

fn pmids(batch: &RecordBatch) -> Result<&arrow::array::UInt64Array> {
    batch
        .column_by_name("pmid")
        .and_then(|c| c.as_primitive_opt::<UInt64Type>())
        .context("column pmid (uint64) missing")
}

/// The fold state of one partition: the kept row batches and, per PMID, where its record is.
struct Fold {
    k: u64,
    parts: u64,
    batches: Vec<RecordBatch>,
    held: HashMap<u64, (u32, u32, u32)>,
}

impl Fold {
    fn add_records(&mut self, path: &Path) -> Result<()> {
        let reader = open_parquet(path)?.with_batch_size(8192).build()?;
        for batch in reader {
            let batch = batch.with_context(|| format!("reading {}", path.display()))?;
            let mask: BooleanArray = pmids(&batch)?
                .iter()
                .map(|p| Some(p.is_some_and(|p| p % self.parts == self.k)))
                .collect();
            let batch = arrow::compute::filter_record_batch(&batch, &mask)?;
            if batch.num_rows() == 0 {
                continue;
            }
            let versions = batch
                .column_by_name("version")
                .and_then(|c| c.as_primitive_opt::<arrow::datatypes::UInt32Type>())
                .context("column version (uint32) missing")?;
            let index = self.batches.len() as u32;
            for (row, pmid) in pmids(&batch)?.iter().enumerate() {
                let (Some(pmid), version) = (pmid, versions.value(row)) else {
                    continue;
                };
                let replace = self.held.get(&pmid).is_none_or(|&(v, _, _)| version >= v);
                if replace {
                    self.held.insert(pmid, (version, index, row as u32));
                }
            }
            self.batches.push(batch);
        }
        Ok(())
    }

    fn apply_deletions(&mut self, path: &Path) -> Result<()> {
        let builder = open_parquet(path)?;
        let mask = ProjectionMask::columns(builder.parquet_schema(), ["pmid"]);
        for batch in builder.with_projection(mask).build()? {
            let batch = batch.with_context(|| format!("reading {}", path.display()))?;
            for pmid in pmids(&batch)?.iter().flatten() {
                if pmid % self.parts == self.k {
                    self.held.remove(&pmid);
                }
            }
        }
        Ok(())
    }

    /// Write the held records sorted by PMID.
    fn write(self, path: &Path, config: &CurrentConfig) -> Result<u64> {
        let mut winners: Vec<(u64, u32, u32)> = self
            .held
            .into_iter()
            .map(|(p, (_, b, r))| (p, b, r))
            .collect();
        winners.sort_unstable();
        let schema = schemas::abstracts::schema();
        let props = writer_properties(config.zstd_level, config.batch_rows)?;
        let mut writer: BatchWriter<AtomicFile, RecordBatch> = BatchWriter::new(
            AtomicFile::create(path)?,
            schema.clone(),
            props,
            1,
            |schema: &arrow::datatypes::SchemaRef, batches: &[RecordBatch]| {
                // Each pushed item is already a full batch; re-stamp it with the canonical schema.
                let batch = arrow::compute::concat_batches(&batches[0].schema(), batches)?;
                Ok(RecordBatch::try_new(
                    schema.clone(),
                    batch.columns().to_vec(),
                )?)
            },
        )?;
        let refs: Vec<&RecordBatch> = self.batches.iter().collect();
        for chunk in winners.chunks(config.batch_rows.max(1)) {
            let indices: Vec<(usize, usize)> = chunk
                .iter()
                .map(|&(_, b, r)| (b as usize, r as usize))
                .collect();
            let batch = arrow::compute::interleave_record_batch(&refs, &indices)?;
            writer.push(batch)?;
        }
        let rows = winners.len() as u64;
        writer.finish()?.commit_unless_identical()?;
        Ok(rows)
    }
}

fn build_part(
    k: u32,
    config: &CurrentConfig,
    base: Option<&Path>,
    sources: &[(PathBuf, Option<PathBuf>)],
    out: &Path,
) -> Result<u64> {
    let mut fold = Fold {
        k: k as u64,
        parts: config.partitions as u64,
        batches: Vec::new(),
        held: HashMap::new(),
    };
    if let Some(base) = base {
        fold.add_records(base)?;
    }
    for (abstracts, deletions) in sources {
        fold.add_records(abstracts)?;
        if let Some(d) = deletions {
            fold.apply_deletions(d)?;
        }
    }
    fold.write(out, config)
}

fn open_stage(ctx: &Ctx, config: &CurrentConfig, force: bool) -> Result<Stage> {
    Stage::open(
        ctx.layout.root(),
        NAME,
        CODE_VERSION,
        schemas::abstracts::VERSION,
        config,
        force,
    )?
    .with_settings(config)
}

pub fn run(ctx: &Ctx, args: Args) -> Result<CurrentSummary> {
    let mut config = ctx.config.current.clone();
    if let Some(p) = args.partitions {
        config.partitions = p;
    }
    anyhow::ensure!(
        config.partitions >= 1,
        "current.partitions must be at least 1"
    );
    let dir = ctx.layout.parquet_current();
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    schemas::atomic::remove_stale_temps(&dir)?;
    let stage = open_stage(ctx, &config, ctx.force)?;
    let sources = sources(ctx)?;
    let paths = input_paths(&sources);
    // All parts share their inputs: hash them once.
    let inputs = stage.inputs(&part_key(0), &paths)?;
    let progress = Progress::new("current", config.partitions as u64, Unit::Count("parts"));
    let results: Vec<Result<(u64, &'static str)>> = (0..config.partitions)
        .into_par_iter()
        .map(|k| {
            let key = part_key(k);
            let out = part_path(ctx, k);
            let result = match stage.plan(&key, &inputs)? {
                Plan::Cached => {
                    let rows = stage
                        .recorded(&key)
                        .and_then(|u| u.stats.get("rows").and_then(|v| v.as_u64()))
                        .unwrap_or(0);
                    (rows, "cached")
                }
                Plan::Run(reason) => {
                    let start = incremental_start(&stage, &key, &inputs, ctx.force);
                    let (base, todo, how) = match start {
                        Some(n) => (Some(out.as_path()), &sources[n..], "incremental"),
                        None => (None, &sources[..], "rebuilt"),
                    };
                    tracing::debug!("current {key}: {reason} ({how})");
                    let rows = build_part(k, &config, base, todo, &out)
                        .with_context(|| format!("building {}", out.display()))?;
                    stage.record(
                        &key,
                        inputs.clone(),
                        std::slice::from_ref(&out),
                        serde_json::json!({"rows": rows, "built": how, "files_folded": todo.len()}),
                    )?;
                    (rows, how)
                }
            };
            progress.inc(1);
            Ok(result)
        })
        .collect();
    progress.finish();
    let mut summary = CurrentSummary {
        parts: config.partitions as usize,
        ..Default::default()
    };
    for r in results {
        let (rows, how) = r?;
        summary.rows += rows;
        match how {
            "cached" => summary.cached += 1,
            "incremental" => summary.incremental += 1,
            _ => summary.rebuilt += 1,
        }
    }
    let parts = config.partitions;
    stage.retain_units(&|key| (0..parts).any(|k| part_key(k) == key))?;
    stage.finish(serde_json::to_value(&summary)?)?;
    println!(
        "current: {} parts ({} cached, {} incremental, {} rebuilt), {} PMIDs",
        summary.parts, summary.cached, summary.incremental, summary.rebuilt, summary.rows
    );
    Ok(summary)
}

/// When the recorded unit was built under the same config from inputs that are a prefix of today's
/// (each source = its abstracts part and deletions part), and its output is intact, the index of the
/// first source still to fold.
fn incremental_start(
    stage: &Stage,
    key: &str,
    inputs: &[schemas::FileRecord],
    force: bool,
) -> Option<usize> {
    if force {
        return None;
    }
    let unit = stage.recorded(key)?;
    if stage.fingerprint(&unit.inputs) != unit.fingerprint || unit.inputs.len() > inputs.len() {
        return None; // config changed (or fewer inputs)
    }
    let prefix_same = unit
        .inputs
        .iter()
        .zip(inputs)
        .all(|(a, b)| a.path == b.path && a.hash == b.hash);
    if !prefix_same || unit.inputs.len() == inputs.len() {
        return None;
    }
    let out = unit.outputs.first()?;
    let (size, mtime) = stat(&stage.data_dir().join(&out.path)).ok()?;
    if (size, mtime) != (out.size, out.mtime_ns) {
        return None;
    }
    // Count whole sources: the prefix must end at a source boundary (an abstracts part path).
    let is_abstracts_part = |f: &schemas::FileRecord| {
        Path::new(&f.path).starts_with(Layout::relative().parquet_abstracts())
    };
    let n_sources = inputs[..unit.inputs.len()]
        .iter()
        .filter(|f| is_abstracts_part(f))
        .count();
    let next = inputs.get(unit.inputs.len())?;
    is_abstracts_part(next).then_some(n_sources)
}

/// `pipeline status` line of this stage.
pub fn status(ctx: &Ctx) -> Result<StageStatus> {
    let config = status_settings(ctx, NAME, ctx.config.current.clone())?;
    let stage = open_stage(ctx, &config, false)?;
    let paths = input_paths(&sources(ctx)?);
    let units: Vec<(String, Vec<PathBuf>)> = (0..config.partitions)
        .map(|k| (part_key(k), paths.clone()))
        .collect();
    let mut status = stage.status(&units)?;
    status.note = format!(
        "{} PMIDs in {}",
        stage.stat_total("rows"),
        Layout::relative().parquet_current().display()
    );
    Ok(status)
}
