//! The raw formats of general-domain corpora: their content checks (run on a download before it
//! takes its final name, and offline on what is there) and their streaming readers.
//!
//! - **Parquet** (`wikimedia/wikipedia`: string columns `id`, `url`, `title`, `text`): `PAR1` at both
//!   ends and a footer that parses; read in record batches of the configured columns only, so
//!   memory is one batch whatever the file's size. String columns may be `utf8`, `large_utf8` or
//!   `utf8_view`; an id column may also be an integer (written in decimal).
//! - **JSON lines, gzipped** (`allenai/c4`: one object per line with `text`, `timestamp`, `url`): a
//!   gzip stream that decompresses to its end with valid checksums; read line by line. A line that
//!   is not a JSON object, or whose text is not a string, is an error naming the file and line.

use std::borrow::Cow;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::Path;

use anyhow::{Context, Result, bail, ensure};
use arrow::array::{Array, ArrayRef, AsArray};
use arrow::datatypes::{DataType, Int32Type, Int64Type, UInt32Type, UInt64Type};
use flate2::read::MultiGzDecoder;
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use schemas::corpus::CorpusRow;

use crate::config::{CorpusConfig, CorpusFormat};

/// The content check of a raw file of `format`.
pub fn validator(format: CorpusFormat) -> fn(&Path) -> Result<()> {
    match format {
        CorpusFormat::Parquet => validate_parquet,
        CorpusFormat::JsonlGz => validate_json_gz,
    }
}

/// `PAR1` at the start and the end, and a footer (file metadata) that parses.
pub fn validate_parquet(path: &Path) -> Result<()> {
    let mut file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let len = file.metadata()?.len();
    ensure!(
        len >= 12,
        "{}: {len} bytes is too short for a Parquet file",
        path.display()
    );
    let mut magic = [0u8; 4];
    file.read_exact(&mut magic)?;
    ensure!(
        &magic == b"PAR1",
        "{}: not a Parquet file (starts with {magic:02x?}, expected PAR1)",
        path.display()
    );
    file.seek(SeekFrom::End(-4))?;
    file.read_exact(&mut magic)?;
    ensure!(
        &magic == b"PAR1",
        "{}: no PAR1 at the end (a truncated download?)",
        path.display()
    );
    file.seek(SeekFrom::Start(0))?;
    parquet::file::metadata::ParquetMetaDataReader::new()
        .parse_and_finish(&file)
        .with_context(|| format!("{}: the Parquet footer does not parse", path.display()))?;
    Ok(())
}

/// A gzip stream (members one after another, as `gzip` concatenates them) that decompresses to
/// its end with matching CRC-32 and length.
pub fn validate_json_gz(path: &Path) -> Result<()> {
    let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut head = [0u8; 2];
    (&file)
        .read_exact(&mut head)
        .with_context(|| format!("{}: shorter than a gzip header", path.display()))?;
    ensure!(
        head == [0x1f, 0x8b],
        "{}: not a gzip file (starts with {head:02x?})",
        path.display()
    );
    let mut file = file;
    file.seek(SeekFrom::Start(0))?;
    let mut gz = MultiGzDecoder::new(BufReader::new(file));
    std::io::copy(&mut gz, &mut std::io::sink())
        .with_context(|| format!("{}: the gzip stream is not valid", path.display()))?;
    Ok(())
}

/// Counts of reading one raw file.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ReadStats {
    /// Rows (Parquet rows, JSON lines) in the file.
    pub rows: u64,
    /// Documents written.
    pub docs: u64,
    /// Rows whose text is null, empty or only whitespace, left out.
    pub skipped_empty: u64,
}

/// The document text: `title + "\n" + text` when a title is given and not empty, else `text`;
/// `None` when `text` is empty or only whitespace.
pub fn document_text(title: Option<&str>, text: &str) -> Option<String> {
    if text.trim().is_empty() {
        return None;
    }
    Some(match title.filter(|t| !t.trim().is_empty()) {
        Some(t) => format!("{t}\n{text}"),
        None => text.to_string(),
    })
}

/// Read raw file `path` (the repository's `source_file`) of `corpus`, handing every document in
/// row order to `emit`.
pub fn read_file(
    corpus: &CorpusConfig,
    path: &Path,
    source_file: &str,
    batch_rows: usize,
    emit: &mut dyn FnMut(CorpusRow) -> Result<()>,
) -> Result<ReadStats> {
    match corpus.format {
        CorpusFormat::Parquet => read_parquet(corpus, path, source_file, batch_rows, emit),
        CorpusFormat::JsonlGz => read_json_gz(corpus, path, source_file, emit),
    }
}

/// One value of a string (or, for ids, integer) column.
fn cell(col: &ArrayRef, i: usize) -> Option<Cow<'_, str>> {
    if col.is_null(i) {
        return None;
    }
    Some(match col.data_type() {
        DataType::Utf8 => Cow::Borrowed(col.as_string::<i32>().value(i)),
        DataType::LargeUtf8 => Cow::Borrowed(col.as_string::<i64>().value(i)),
        DataType::Utf8View => Cow::Borrowed(col.as_string_view().value(i)),
        DataType::Int64 => Cow::Owned(col.as_primitive::<Int64Type>().value(i).to_string()),
        DataType::Int32 => Cow::Owned(col.as_primitive::<Int32Type>().value(i).to_string()),
        DataType::UInt64 => Cow::Owned(col.as_primitive::<UInt64Type>().value(i).to_string()),
        DataType::UInt32 => Cow::Owned(col.as_primitive::<UInt32Type>().value(i).to_string()),
        _ => return None,
    })
}

fn is_string(t: &DataType) -> bool {
    matches!(t, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View)
}

fn read_parquet(
    corpus: &CorpusConfig,
    path: &Path,
    source_file: &str,
    batch_rows: usize,
    emit: &mut dyn FnMut(CorpusRow) -> Result<()>,
) -> Result<ReadStats> {
    let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(file)
        .with_context(|| format!("reading the Parquet footer of {}", path.display()))?;
    let schema = builder.schema().clone();
    // (name, may be an integer)
    let mut wanted: Vec<(&str, bool)> = vec![(corpus.text_field.as_str(), false)];
    if let Some(id) = corpus.id_column() {
        wanted.push((id, true));
    }
    if let Some(title) = &corpus.title_field {
        wanted.push((title.as_str(), false));
    }
    let mut roots = Vec::new();
    for (name, integer_ok) in &wanted {
        let (index, field) = schema.column_with_name(name).with_context(|| {
            format!(
                "{}: no column `{name}` (columns: {})",
                path.display(),
                schema
                    .fields()
                    .iter()
                    .map(|f| f.name().as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })?;
        let t = field.data_type();
        let ok = is_string(t) || (*integer_ok && t.is_integer());
        ensure!(
            ok && !matches!(
                t,
                DataType::Int8 | DataType::Int16 | DataType::UInt8 | DataType::UInt16
            ),
            "{}: column `{name}` is {t}, expected a string column{}",
            path.display(),
            if *integer_ok {
                " or a 32/64-bit integer"
            } else {
                ""
            }
        );
        roots.push(index);
    }
    let mask = ProjectionMask::roots(builder.parquet_schema(), roots);
    let reader = builder
        .with_projection(mask)
        .with_batch_size(batch_rows.max(1))
        .build()
        .with_context(|| format!("reading {}", path.display()))?;
    let mut stats = ReadStats::default();
    for batch in reader {
        let batch = batch
            .with_context(|| format!("{}: decoding rows from {}", path.display(), stats.rows))?;
        let column = |name: &str| batch.column_by_name(name).cloned();
        let text = column(&corpus.text_field).context("projected text column")?;
        let id = corpus.id_column().and_then(column);
        let title = corpus.title_field.as_deref().and_then(column);
        for i in 0..batch.num_rows() {
            let row = stats.rows + i as u64;
            let title = title.as_ref().and_then(|t| cell(t, i));
            let doc = cell(&text, i).and_then(|t| document_text(title.as_deref(), &t));
            let Some(text) = doc else {
                stats.skipped_empty += 1;
                continue;
            };
            let doc_id = match &id {
                Some(col) => cell(col, i)
                    .with_context(|| {
                        format!(
                            "{}: row {row} has a null `{}`",
                            path.display(),
                            corpus.id_column().unwrap_or("id")
                        )
                    })?
                    .into_owned(),
                None => format!("{source_file}:{row}"),
            };
            emit(CorpusRow {
                doc_id,
                text,
                source_file: source_file.to_string(),
                row,
            })
            .with_context(|| format!("{}: row {row}", path.display()))?;
            stats.docs += 1;
        }
        stats.rows += batch.num_rows() as u64;
    }
    Ok(stats)
}

/// A JSON value used as an id: a string, or a number written as JSON writes it.
fn json_id(v: &serde_json::Value) -> Option<String> {
    match v {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn read_json_gz(
    corpus: &CorpusConfig,
    path: &Path,
    source_file: &str,
    emit: &mut dyn FnMut(CorpusRow) -> Result<()>,
) -> Result<ReadStats> {
    let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut reader = BufReader::with_capacity(1 << 20, MultiGzDecoder::new(BufReader::new(file)));
    let mut stats = ReadStats::default();
    let mut line = Vec::new();
    loop {
        line.clear();
        let n = reader.read_until(b'\n', &mut line).with_context(|| {
            format!(
                "{}: decompressing line {} (line numbers from 1)",
                path.display(),
                stats.rows + 1
            )
        })?;
        if n == 0 {
            break;
        }
        let row = stats.rows;
        let at = || format!("{}: line {}", path.display(), row + 1);
        let object: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(&line)
            .with_context(|| format!("{}: not a JSON object", at()))?;
        stats.rows += 1;
        let text = match object.get(&corpus.text_field) {
            Some(serde_json::Value::String(s)) => Some(s.as_str()),
            Some(serde_json::Value::Null) => None,
            Some(other) => bail!(
                "{}: `{}` is not a string (found {})",
                at(),
                corpus.text_field,
                json_kind(other)
            ),
            None => bail!("{}: no `{}` key", at(), corpus.text_field),
        };
        let title = match &corpus.title_field {
            Some(key) => match object.get(key) {
                Some(serde_json::Value::String(s)) => Some(s.as_str()),
                None | Some(serde_json::Value::Null) => None,
                Some(other) => bail!(
                    "{}: `{key}` is not a string (found {})",
                    at(),
                    json_kind(other)
                ),
            },
            None => None,
        };
        let Some(text) = text.and_then(|t| document_text(title, t)) else {
            stats.skipped_empty += 1;
            continue;
        };
        let doc_id = match corpus.id_column() {
            Some(key) => object.get(key).and_then(json_id).with_context(|| {
                format!("{}: `{key}` is missing or not a string or number", at())
            })?,
            None => format!("{source_file}:{row}"),
        };
        emit(CorpusRow {
            doc_id,
            text,
            source_file: source_file.to_string(),
            row,
        })
        .with_context(at)?;
        stats.docs += 1;
    }
    Ok(stats)
}

fn json_kind(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{Int64Array, LargeStringArray, RecordBatch, StringArray};
    use arrow::datatypes::{Field, Schema};
    use parquet::arrow::ArrowWriter;

    use super::*;

    #[test]
    fn document_text_joins_a_title_and_skips_empty_texts() {
        assert_eq!(document_text(Some("T"), "body").as_deref(), Some("T\nbody"));
        assert_eq!(document_text(Some(" "), "body").as_deref(), Some("body"));
        assert_eq!(document_text(None, "body\n").as_deref(), Some("body\n"));
        assert_eq!(document_text(Some("T"), " \n\t"), None);
    }

    /// Large strings, integer ids, nulls: read in batches, nulls skipped or refused by column.
    #[test]
    fn parquet_with_large_strings_and_integer_ids() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.parquet");
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, true),
            Field::new("title", DataType::Utf8, true),
            Field::new("text", DataType::LargeUtf8, true),
        ]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(Int64Array::from(vec![Some(10), Some(11), Some(12), None])),
                Arc::new(StringArray::from(vec![
                    Some("A"),
                    None,
                    Some("C"),
                    Some("D"),
                ])),
                Arc::new(LargeStringArray::from(vec![
                    Some("one"),
                    Some("two"),
                    None,
                    Some("four"),
                ])),
            ],
        )
        .unwrap();
        let mut w = ArrowWriter::try_new(File::create(&path).unwrap(), schema, None).unwrap();
        w.write(&batch).unwrap();
        w.close().unwrap();
        validate_parquet(&path).unwrap();
        let corpus = CorpusConfig {
            repo: "a/b".into(),
            files: vec!["x.parquet".into()],
            title_field: Some("title".into()),
            ..Default::default()
        };
        let mut rows = Vec::new();
        let err = read_file(&corpus, &path, "x.parquet", 2, &mut |r| {
            rows.push(r);
            Ok(())
        })
        .unwrap_err();
        assert!(
            format!("{err:#}").contains("row 3 has a null `id`"),
            "{err:#}"
        );
        let got: Vec<(&str, &str, u64)> = rows
            .iter()
            .map(|r| (r.doc_id.as_str(), r.text.as_str(), r.row))
            .collect();
        assert_eq!(got, [("10", "A\none", 0), ("11", "two", 1)]);
        // Without an id column the ids are `<file>:<row>`; with a JSON-lines format a Parquet file
        // is no gzip stream.
        let no_id = CorpusConfig {
            id_field: Some("nope".into()),
            ..corpus
        };
        let err = read_file(&no_id, &path, "x.parquet", 2, &mut |_| Ok(())).unwrap_err();
        assert!(format!("{err:#}").contains("no column `nope`"), "{err:#}");
        assert!(validate_json_gz(&path).is_err());
    }
}
