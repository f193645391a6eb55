//! Looking PMIDs up in our PubMed view `parquet/current/*.parquet` (abstracts schema).
//!
//! Only the `pmid`, `title` and `abstract` columns are read, and only row groups whose `pmid`
//! statistics can hold a wanted PMID, so a lookup of a few thousand PMIDs in all of PubMed stays cheap.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use arrow::array::{Array, AsArray};
use arrow::datatypes::{DataType, UInt64Type};
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::file::statistics::Statistics;

use super::convert::Document;

/// `*.parquet` files of a directory, sorted by name (none when it does not exist).
pub fn parquet_files(dir: &Path) -> Result<Vec<PathBuf>> {
    schemas::layout::files_with_suffix(dir, ".parquet")
}

/// The documents of `wanted` found in `files`.
pub fn lookup(files: &[PathBuf], wanted: &BTreeSet<u64>) -> Result<BTreeMap<u64, Document>> {
    let mut found = BTreeMap::new();
    if wanted.is_empty() {
        return Ok(found);
    }
    for path in files {
        lookup_file(path, wanted, &mut found)
            .with_context(|| format!("reading {}", path.display()))?;
    }
    Ok(found)
}

fn lookup_file(
    path: &Path,
    wanted: &BTreeSet<u64>,
    found: &mut BTreeMap<u64, Document>,
) -> Result<()> {
    let file = File::open(path)?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(file)?;
    let schema = builder.parquet_schema();
    let Some(pmid_col) = schema
        .columns()
        .iter()
        .position(|c| c.path().string() == "pmid")
    else {
        bail!("no `pmid` column (expected the abstracts schema)");
    };
    let row_groups: Vec<usize> = builder
        .metadata()
        .row_groups()
        .iter()
        .enumerate()
        .filter(|(_, rg)| match rg.column(pmid_col).statistics() {
            // PMIDs are far below 2^63, so the signed statistics order them correctly.
            Some(Statistics::Int64(s)) => match (s.min_opt(), s.max_opt()) {
                (Some(&lo), Some(&hi)) => wanted.range(lo as u64..=hi as u64).next().is_some(),
                _ => true,
            },
            _ => true,
        })
        .map(|(i, _)| i)
        .collect();
    if row_groups.is_empty() {
        return Ok(());
    }
    let mask = ProjectionMask::columns(schema, ["pmid", "title", "abstract"]);
    let reader = builder
        .with_row_groups(row_groups)
        .with_projection(mask)
        .build()?;
    for batch in reader {
        let batch = batch?;
        let column = |name: &str| {
            batch
                .column_by_name(name)
                .with_context(|| format!("no `{name}` column (expected the abstracts schema)"))
        };
        let pmids = column("pmid")?;
        let pmids = pmids
            .as_primitive_opt::<UInt64Type>()
            .with_context(|| format!("`pmid` is {}, expected uint64", pmids.data_type()))?;
        let titles = column("title")?;
        let abstracts = column("abstract")?;
        for (name, col) in [("title", titles), ("abstract", abstracts)] {
            if col.data_type() != &DataType::Utf8 {
                bail!("`{name}` is {}, expected utf8", col.data_type());
            }
        }
        let titles = titles.as_string::<i32>();
        let abstracts = abstracts.as_string::<i32>();
        for row in 0..batch.num_rows() {
            if pmids.is_null(row) {
                continue;
            }
            let pmid = pmids.value(row);
            if !wanted.contains(&pmid) || found.contains_key(&pmid) {
                continue;
            }
            let text =
                |a: &arrow::array::StringArray| (!a.is_null(row)).then(|| a.value(row).to_string());
            found.insert(
                pmid,
                Document {
                    pmid,
                    title: text(titles),
                    abstract_text: text(abstracts),
                },
            );
        }
    }
    Ok(())
}
