//! Abstracts-schema Parquet parts built from (pmid, title, abstract) rows, for tests and the
//! tokenize benchmark (which must not wait for `pipeline parse`). Columns other than pmid, version,
//! title, abstract, record_kind, source_file and record_index are null or empty lists.

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use arrow::array::{
    ArrayRef, ListArray, RecordBatch, StringArray, UInt32Array, UInt64Array, new_empty_array,
    new_null_array,
};
use arrow::buffer::OffsetBuffer;
use arrow::datatypes::DataType;
use parquet::arrow::ArrowWriter;
use serde::Deserialize;

/// One citation's text fields.
#[derive(Clone, Debug, Deserialize)]
pub struct AbstractRow {
    pub pmid: u64,
    #[serde(default = "one")]
    pub version: u32,
    pub title: Option<String>,
    #[serde(rename = "abstract")]
    pub abstract_text: Option<String>,
}

fn one() -> u32 {
    1
}

/// Rows of an expect JSONL file (`{"pmid", "version", "title", "abstract", ...}` per line); lines
/// without a `pmid` (the trailing `{"deleted": [...]}`) are skipped.
pub fn read_expect_jsonl(path: &Path) -> Result<Vec<AbstractRow>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut rows = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let value: serde_json::Value = serde_json::from_str(line)
            .with_context(|| format!("{} line {}: invalid JSON", path.display(), n + 1))?;
        if value.get("pmid").is_none() {
            continue;
        }
        rows.push(
            serde_json::from_value(value)
                .with_context(|| format!("{} line {}: not a citation", path.display(), n + 1))?,
        );
    }
    Ok(rows)
}

/// Write `rows` as an abstracts part (schema `schemas::abstracts::schema()`), atomically.
pub fn write_abstracts_part(path: &Path, rows: &[AbstractRow], source_file: &str) -> Result<()> {
    let schema = schemas::abstracts::schema();
    let n = rows.len();
    let mut columns: Vec<ArrayRef> = Vec::new();
    for field in schema.fields() {
        let column: ArrayRef = match field.name().as_str() {
            "pmid" => Arc::new(UInt64Array::from_iter_values(rows.iter().map(|r| r.pmid))),
            "version" => Arc::new(UInt32Array::from_iter_values(
                rows.iter().map(|r| r.version),
            )),
            "title" => Arc::new(StringArray::from_iter(
                rows.iter().map(|r| r.title.as_deref()),
            )),
            "abstract" => Arc::new(StringArray::from_iter(
                rows.iter().map(|r| r.abstract_text.as_deref()),
            )),
            "record_kind" => Arc::new(StringArray::from_iter_values(
                rows.iter().map(|_| "PubmedArticle"),
            )),
            "source_file" => Arc::new(StringArray::from_iter_values(
                rows.iter().map(|_| source_file),
            )),
            "record_index" => Arc::new(UInt32Array::from_iter_values(0..n as u32)),
            _ => match field.data_type() {
                DataType::List(item) => Arc::new(ListArray::try_new(
                    item.clone(),
                    OffsetBuffer::new_zeroed(n),
                    new_empty_array(item.data_type()),
                    None,
                )?),
                t if field.is_nullable() => new_null_array(t, n),
                t => bail!(
                    "synthetic part: no value for non-null column {} ({t})",
                    field.name()
                ),
            },
        };
        columns.push(column);
    }
    let batch = RecordBatch::try_new(schema.clone(), columns)?;
    let mut file = schemas::AtomicFile::create(path)?;
    {
        let mut writer = ArrowWriter::try_new(&mut file, schema, None)?;
        writer.write(&batch)?;
        writer.close()?;
    }
    file.commit()?;
    Ok(())
}
