//! Synthetic general-domain corpus files in the hub's formats, for the corpus tests and the bundled
//! sample: Wikipedia-style Parquet (`wikimedia/wikipedia`'s string columns `id`, `url`, `title`,
//! `text`) and C4-style gzipped JSON lines.
//!
//! The sample's Parquet `data/sample/corpus/wikipedia/20231101.en/train-00000-of-00001.parquet` is
//! [`write_wikipedia_parquet`] of `data/sample/corpus-src/wikipedia-articles.jsonl` (which
//! `data/sample/generate.py` writes): `cargo run -p testkit --example sample_wikipedia`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};
use arrow::array::{ArrayRef, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use serde::Deserialize;

/// One article as `wikimedia/wikipedia` stores it.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub struct WikiArticle {
    pub id: String,
    pub url: String,
    pub title: String,
    pub text: String,
}

/// Rows per row group of the written Parquet files (small, so readers cross row groups).
pub const ROW_GROUP_ROWS: usize = 25;

/// The sample's article source, `data/sample/corpus-src/wikipedia-articles.jsonl`.
pub fn sample_articles_path() -> PathBuf {
    crate::fixtures::sample_dir().join("corpus-src/wikipedia-articles.jsonl")
}

/// The sample's Wikipedia file, laid out as in the hub repository.
pub fn sample_wikipedia_path() -> PathBuf {
    crate::fixtures::sample_dir().join("corpus/wikipedia/20231101.en/train-00000-of-00001.parquet")
}

/// Articles of a JSON-lines file (one `{"id", "url", "title", "text"}` per line).
pub fn read_articles(path: &Path) -> Result<Vec<WikiArticle>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    text.lines()
        .enumerate()
        .map(|(n, line)| {
            serde_json::from_str(line)
                .with_context(|| format!("{} line {}: not an article", path.display(), n + 1))
        })
        .collect()
}

/// The Parquet bytes of `articles`: string columns `id`, `url`, `title`, `text` (non-null), zstd,
/// row groups of [`ROW_GROUP_ROWS`], a fixed `created_by` (the same bytes on every run).
pub fn wikipedia_parquet(articles: &[WikiArticle]) -> Result<Vec<u8>> {
    let names = ["id", "url", "title", "text"];
    let schema = Arc::new(Schema::new(
        names
            .iter()
            .map(|n| Field::new(*n, DataType::Utf8, true))
            .collect::<Vec<_>>(),
    ));
    let column = |get: fn(&WikiArticle) -> &str| -> ArrayRef {
        Arc::new(StringArray::from_iter_values(articles.iter().map(get)))
    };
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            column(|a| &a.id),
            column(|a| &a.url),
            column(|a| &a.title),
            column(|a| &a.text),
        ],
    )?;
    let props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(3)?))
        .set_max_row_group_size(ROW_GROUP_ROWS)
        .set_created_by("biomamba testkit".to_string())
        .build();
    let mut out = Vec::new();
    {
        let mut writer = ArrowWriter::try_new(&mut out, schema, Some(props))?;
        writer.write(&batch)?;
        writer.close()?;
    }
    Ok(out)
}

/// Write [`wikipedia_parquet`] of `articles` to `path` (its directory created).
pub fn write_wikipedia_parquet(path: &Path, articles: &[WikiArticle]) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    std::fs::write(path, wikipedia_parquet(articles)?)
        .with_context(|| format!("writing {}", path.display()))
}

/// Gzip `lines` (each a JSON object, a newline after each) as C4's `*.json.gz` are.
pub fn json_gz(lines: &[serde_json::Value]) -> Result<Vec<u8>> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    for line in lines {
        serde_json::to_writer(&mut gz, line)?;
        gz.write_all(b"\n")?;
    }
    Ok(gz.finish()?)
}
