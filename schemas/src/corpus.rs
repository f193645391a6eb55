//! `parquet/corpus/<name>/<file stem>.parquet`: the documents of one general-domain corpus
//! (`[corpus.<name>]`, e.g. Wikipedia or C4), one part per raw file of the corpus, written by
//! `pipeline corpus`.
//!
//! One row per document, in the raw file's row order (documents whose text is empty or only
//! whitespace are left out). `text` is the text the model sees: the configured `title_field`'s value,
//! `"\n"`, then the text field's value when a title is configured and non-empty (as PubMed's
//! `title + "\n" + abstract`), else the text field's value alone, otherwise unchanged.

use std::sync::Arc;

use anyhow::{Result, ensure};
use arrow::array::{ArrayRef, RecordBatch, StringArray, UInt64Array};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use xxhash_rust::xxh3::xxh3_64;

/// Bumped whenever a column is added, removed or changes meaning.
pub const VERSION: u32 = 1;
/// The `biomamba.table` name of corpus parts.
pub const TABLE: &str = "corpus";

/// One document of a corpus part.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CorpusRow {
    /// The document's id: the configured `id_field`'s value (as text), or `<source_file>:<row>`
    /// for corpora without ids (C4).
    pub doc_id: String,
    pub text: String,
    /// The raw file's path inside the dataset repository (e.g. `en/c4-train.00000-of-01024.json.gz`).
    pub source_file: String,
    /// 0-based row of the document in the raw file (Parquet row, or line of a JSON-lines file).
    pub row: u64,
}

/// `doc_id` utf8, `text` utf8, `source_file` utf8, `row` uint64; none nullable.
pub fn schema() -> SchemaRef {
    Arc::new(
        Schema::new(vec![
            Field::new("doc_id", DataType::Utf8, false),
            Field::new("text", DataType::Utf8, false),
            Field::new("source_file", DataType::Utf8, false),
            Field::new("row", DataType::UInt64, false),
        ])
        .with_metadata(crate::table_metadata(TABLE, VERSION)),
    )
}

/// One record batch of `rows` in the [`schema`].
pub fn batch(rows: &[CorpusRow]) -> Result<RecordBatch> {
    let doc_id = StringArray::from_iter_values(rows.iter().map(|r| r.doc_id.as_str()));
    let text = StringArray::from_iter_values(rows.iter().map(|r| r.text.as_str()));
    let source = StringArray::from_iter_values(rows.iter().map(|r| r.source_file.as_str()));
    let row = UInt64Array::from_iter_values(rows.iter().map(|r| r.row));
    let columns: Vec<ArrayRef> = vec![
        Arc::new(doc_id),
        Arc::new(text),
        Arc::new(source),
        Arc::new(row),
    ];
    ensure!(
        rows.iter().all(|r| !r.text.trim().is_empty()),
        "corpus batch: a row with empty text"
    );
    Ok(RecordBatch::try_new(schema(), columns)?)
}

/// The 64-bit key of a document id in the token files and in the train/val split: the split of a
/// corpus document is `xxh3_64("<split_salt>:<decimal doc_key(doc_id)>")` as PubMed's is of its
/// PMID (`pipeline tokenize`), so a document keeps its side however the corpus grows.
pub fn doc_key(doc_id: &str) -> u64 {
    xxh3_64(doc_id.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_has_the_schema_and_refuses_empty_text() {
        let row = CorpusRow {
            doc_id: "12".into(),
            text: "Title\nBody.".into(),
            source_file: "20231101.en/train-00000-of-00041.parquet".into(),
            row: 3,
        };
        let b = batch(std::slice::from_ref(&row)).unwrap();
        assert_eq!(b.schema(), schema());
        assert_eq!(b.num_rows(), 1);
        let empty = CorpusRow {
            text: " \n".into(),
            ..row
        };
        assert!(batch(&[empty]).is_err());
        assert_ne!(doc_key("a"), doc_key("b"));
        assert_eq!(doc_key("a"), doc_key("a"));
    }
}
