//! `pipeline inspect PATH [--sql "SELECT …"]`: a polars summary of any of our Parquet outputs, or a
//! polars SQL query over it.
//!
//! PATH is a `.parquet` file or a directory of them (all `*.parquet` in it are read as one table). The
//! table kind comes from the schema metadata `biomamba.table`; [`summarizer`] maps a kind to its
//! summary, so other tables plug in with one match arm. Unknown kinds get the generic summary
//! (rows, schema, first rows). In SQL the table is named `t`:
//! `pipeline inspect data/parquet/current --sql "SELECT year, count(*) FROM t GROUP BY year ORDER BY year"`.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use polars::prelude::*;

use crate::Ctx;

#[derive(clap::Args, Clone, Debug)]
pub struct Args {
    /// A Parquet file or a directory of Parquet files (relative paths are tried as given, then under
    /// the data directory).
    pub path: PathBuf,
    /// Run this SQL query instead of the summary; the table is called `t`.
    #[arg(long)]
    pub sql: Option<String>,
    /// Rows to print of a query result.
    #[arg(long, default_value_t = 50)]
    pub limit: usize,
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

fn parquet_files(path: &Path) -> Result<Vec<PathBuf>> {
    if path.is_file() {
        return Ok(vec![path.to_path_buf()]);
    }
    if !path.is_dir() {
        bail!("{}: no such file or directory", path.display());
    }
    let files = schemas::layout::files_with_suffix(path, ".parquet")?;
    if files.is_empty() {
        bail!("{}: no .parquet files", path.display());
    }
    Ok(files)
}

/// The `biomamba.table` metadata of a Parquet file, if any.
pub fn table_kind(file: &Path) -> Result<Option<String>> {
    let f = std::fs::File::open(file).with_context(|| format!("opening {}", file.display()))?;
    let builder = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(f)
        .with_context(|| format!("reading Parquet metadata of {}", file.display()))?;
    Ok(builder.schema().metadata().get(schemas::TABLE_KEY).cloned())
}

/// All files as one lazy table.
pub fn scan(files: &[PathBuf]) -> Result<LazyFrame> {
    let frames = files
        .iter()
        .map(|f| {
            LazyFrame::scan_parquet(
                PlPath::new(&f.to_string_lossy()),
                ScanArgsParquet::default(),
            )
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
    let files = parquet_files(&path)?;
    let lf = scan(&files)?;
    if let Some(sql) = &args.sql {
        let df = query(lf, sql)?;
        println!("{}", df.head(Some(args.limit)));
        return Ok(());
    }
    let kind = table_kind(&files[0])?;
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
