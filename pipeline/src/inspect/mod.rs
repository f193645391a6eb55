//! `pipeline inspect PATH [--sql "SELECT …"]`: a summary of any of our tables, or a polars SQL
//! query over it.
//!
//! PATH is a file or a directory of them: `.parquet` files (all of a directory read as one table),
//! else Arrow IPC `.arrow` files. The table kind comes from the schema metadata `biomamba.table`;
//! [`summarizer`] maps a kind to its summary, so other tables plug in with one match arm. Unknown
//! kinds get the generic summary (rows, schema, first rows). Shard files (`shards`, see
//! [`shards`]) get counts, the token histogram and, with `--decode N`, sequence N as text. In SQL
//! the table is named `t`:
//! `pipeline inspect data/parquet/current --sql "SELECT year, count(*) FROM t GROUP BY year ORDER BY year"`.

pub mod shards;

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail, ensure};
use polars::prelude::*;

use crate::Ctx;

#[derive(clap::Args, Clone, Debug)]
pub struct Args {
    /// A table file (`.parquet`, `.arrow`) or a directory of them (relative paths are tried as
    /// given, then under the data directory), e.g. DATA/parquet/current or DATA/shards/train.
    pub path: PathBuf,
    /// Run this SQL query instead of the summary; the table is called `t`.
    #[arg(long)]
    pub sql: Option<String>,
    /// Rows to print of a query result.
    #[arg(long, default_value_t = 50)]
    pub limit: usize,
    /// Shards: print sequence N (global index over the directory) back as text.
    #[arg(long)]
    pub decode: Option<usize>,
    /// Shards: tokenizer.json, to show tokens and decoded text.
    #[arg(long)]
    pub tokenizer: Option<PathBuf>,
}

/// A summary of one kind of table.
pub type Summarizer = fn(&LazyFrame) -> Result<String>;

/// The summary for a table kind (`biomamba.table` metadata); None for the generic one.
pub fn summarizer(table: &str) -> Option<Summarizer> {
    match table {
        "abstracts" => Some(summarize_abstracts),
        "deletions" => Some(summarize_deletions),
        _ => None,
    }
}

/// How the files of a table are stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Parquet,
    /// Arrow IPC file format (shards, BioASQ tables).
    Arrow,
}

fn format_of(file: &Path) -> Option<Format> {
    match file.extension().and_then(|e| e.to_str()) {
        Some("parquet") => Some(Format::Parquet),
        Some("arrow") => Some(Format::Arrow),
        _ => None,
    }
}

/// The table files at `path` and their format: the file itself, or a directory's `.parquet` files,
/// else its `.arrow` files.
pub fn table_files(path: &Path) -> Result<(Format, Vec<PathBuf>)> {
    if path.is_file() {
        let format = format_of(path)
            .with_context(|| format!("{}: not a .parquet or .arrow file", path.display()))?;
        return Ok((format, vec![path.to_path_buf()]));
    }
    if !path.is_dir() {
        bail!("{}: no such file or directory", path.display());
    }
    for (suffix, format) in [(".parquet", Format::Parquet), (".arrow", Format::Arrow)] {
        let files = schemas::layout::files_with_suffix(path, suffix)?;
        if !files.is_empty() {
            return Ok((format, files));
        }
    }
    bail!("{}: no .parquet or .arrow files", path.display())
}

/// The `biomamba.table` metadata of a Parquet or Arrow IPC file, if any.
pub fn table_kind(file: &Path) -> Result<Option<String>> {
    let f = std::fs::File::open(file).with_context(|| format!("opening {}", file.display()))?;
    let metadata = match format_of(file) {
        Some(Format::Arrow) => arrow::ipc::reader::FileReader::try_new(f, None)
            .with_context(|| format!("reading Arrow IPC schema of {}", file.display()))?
            .schema()
            .metadata()
            .clone(),
        _ => parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(f)
            .with_context(|| format!("reading Parquet metadata of {}", file.display()))?
            .schema()
            .metadata()
            .clone(),
    };
    Ok(metadata.get(schemas::TABLE_KEY).cloned())
}

/// All Parquet files as one lazy table.
pub fn scan(files: &[PathBuf]) -> Result<LazyFrame> {
    scan_as(Format::Parquet, files)
}

/// All files (of one format) as one lazy table.
pub fn scan_as(format: Format, files: &[PathBuf]) -> Result<LazyFrame> {
    let frames = files
        .iter()
        .map(|f| {
            let path = PlPath::new(&f.to_string_lossy());
            match format {
                Format::Parquet => LazyFrame::scan_parquet(path, ScanArgsParquet::default()),
                Format::Arrow => LazyFrame::scan_ipc(path, Default::default(), Default::default()),
            }
            .with_context(|| format!("scanning {}", f.display()))
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(concat(frames, UnionArgs::default())?)
}

pub fn run(ctx: &Ctx, args: Args) -> Result<()> {
    let path = if args.path.exists() {
        args.path.clone()
    } else {
        ctx.layout.root().join(&args.path)
    };
    let (format, files) = table_files(&path)?;
    let kind = table_kind(&files[0])?;
    if kind.as_deref() == Some(schemas::shards::TABLE) {
        ensure!(
            args.sql.is_none(),
            "{}: shard files hold fixed-size token lists, which SQL does not query; use --decode N",
            path.display()
        );
        print!(
            "{}",
            shards::inspect_shards(&path, args.decode, args.tokenizer.as_deref())?
        );
        return Ok(());
    }
    ensure!(
        args.decode.is_none() && args.tokenizer.is_none(),
        "{}: --decode and --tokenizer are for shard files (table {}), this is table {}",
        path.display(),
        schemas::shards::TABLE,
        kind.as_deref().unwrap_or("(unknown)")
    );
    let lf = scan_as(format, &files)?;
    if let Some(sql) = &args.sql {
        let df = query(lf, sql)?;
        println!("{}", df.head(Some(args.limit)));
        return Ok(());
    }
    println!(
        "{}: {} file(s), table {}",
        path.display(),
        files.len(),
        kind.as_deref().unwrap_or("(unknown)")
    );
    let text = match kind.as_deref().and_then(summarizer) {
        Some(f) => f(&lf)?,
        None => summarize_generic(&lf)?,
    };
    println!("{text}");
    Ok(())
}

/// Run `sql` over `lf` registered as table `t`.
pub fn query(lf: LazyFrame, sql: &str) -> Result<DataFrame> {
    let mut ctx = polars::sql::SQLContext::new();
    ctx.register("t", lf);
    let out = ctx.execute(sql).with_context(|| format!("SQL: {sql}"))?;
    Ok(out.collect()?)
}

fn rows(lf: &LazyFrame) -> Result<u64> {
    let df = lf.clone().select([len().alias("rows")]).collect()?;
    Ok(df.column("rows")?.u32()?.get(0).unwrap_or(0) as u64)
}

fn counts(lf: &LazyFrame, column: &str, top: Option<usize>, by_key: bool) -> Result<DataFrame> {
    let grouped = lf
        .clone()
        .group_by([col(column)])
        .agg([len().alias("count")]);
    let sorted = if by_key {
        grouped.sort([column], SortMultipleOptions::default())
    } else {
        grouped.sort(
            ["count", column],
            SortMultipleOptions::default().with_order_descending_multi([true, false]),
        )
    };
    let limited = match top {
        Some(n) => sorted.limit(n as IdxSize),
        None => sorted,
    };
    Ok(limited.collect()?)
}

fn summarize_abstracts(lf: &LazyFrame) -> Result<String> {
    let mut out = String::new();
    let n = rows(lf)?;
    out.push_str(&format!("rows: {n}\n"));
    let share = lf
        .clone()
        .select([
            col("abstract")
                .is_not_null()
                .cast(DataType::Float64)
                .mean()
                .alias("with_abstract"),
            col("title")
                .is_not_null()
                .cast(DataType::Float64)
                .mean()
                .alias("with_title"),
            col("pmid").n_unique().alias("distinct_pmids"),
        ])
        .collect()?;
    out.push_str(&format!("{share}\n"));
    out.push_str("years:\n");
    out.push_str(&format!("{}\n", counts(lf, "year", None, true)?));
    let languages = lf.clone().select([col("languages").explode()]);
    out.push_str("languages (top 10):\n");
    out.push_str(&format!(
        "{}\n",
        counts(&languages, "languages", Some(10), false)?
    ));
    out.push_str("journals (top 10):\n");
    out.push_str(&format!(
        "{}\n",
        counts(lf, "journal_title", Some(10), false)?
    ));
    let q = |p: f64, name: &str| {
        col("len")
            .quantile(lit(p), QuantileMethod::Nearest)
            .alias(name)
    };
    let lengths = lf
        .clone()
        .select([col("abstract").str().len_chars().alias("len")])
        .select([
            col("len").min().alias("min"),
            q(0.1, "p10"),
            q(0.5, "p50"),
            q(0.9, "p90"),
            q(0.99, "p99"),
            col("len").max().alias("max"),
        ])
        .collect()?;
    out.push_str("abstract length in characters (non-null):\n");
    out.push_str(&format!("{lengths}\n"));
    Ok(out)
}

fn summarize_deletions(lf: &LazyFrame) -> Result<String> {
    let n = rows(lf)?;
    let by_file = counts(lf, "source_file", None, true)?;
    Ok(format!("rows: {n}\ndeletions per file:\n{by_file}\n"))
}

fn summarize_generic(lf: &LazyFrame) -> Result<String> {
    let n = rows(lf)?;
    let schema = lf.clone().collect_schema()?;
    let head = lf.clone().limit(5).collect()?;
    Ok(format!(
        "rows: {n}\nschema: {schema:?}\nfirst rows:\n{head}\n"
    ))
}
