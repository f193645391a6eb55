//! Arrow record batches from citations and deletions, written to Parquet (zstd) in row groups of a
//! fixed number of rows, so a file of any size is written with one batch in memory.

use std::io::Write;
use std::sync::Arc;

use anyhow::{Context, Result};
use arrow::array::{
    ArrayRef, BooleanArray, Int32Array, ListArray, RecordBatch, StringArray, StructArray,
    UInt32Array, UInt64Array,
};
use arrow::buffer::OffsetBuffer;
use arrow::datatypes::{DataType, Fields, SchemaRef};
use parquet::arrow::{ArrowSchemaConverter, ArrowWriter};
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;

use super::record::{Citation, Deletion};

/// Leaf columns of the abstracts table whose values are (nearly) all distinct: titles and abstract
/// texts. Dictionary encoding only costs there (every value hashed until the dictionary page is
/// full, then plain encoding anyway), so they are written plain.
const DISTINCT_TEXT_COLUMNS: [&str; 3] = ["title", "abstract", "text"];

/// Parquet settings shared by every table this stage writes. `created_by` is fixed so the bytes do
/// not depend on the parquet crate's version string.
pub fn writer_properties(zstd_level: i32, row_group_rows: usize) -> Result<WriterProperties> {
    let mut builder = WriterProperties::builder()
        .set_compression(Compression::ZSTD(
            ZstdLevel::try_new(zstd_level).context("zstd level")?,
        ))
        .set_max_row_group_size(row_group_rows.max(1))
        .set_created_by("biomamba pipeline".to_string());
    let parquet_schema = ArrowSchemaConverter::new()
        .convert(&schemas::abstracts::schema())
        .context("abstracts schema as Parquet")?;
    for column in parquet_schema.columns() {
        let path = column.path();
        if path
            .parts()
            .last()
            .is_some_and(|leaf| DISTINCT_TEXT_COLUMNS.contains(&leaf.as_str()))
        {
            builder = builder.set_column_dictionary_enabled(path.clone(), false);
        }
    }
    Ok(builder.build())
}

/// Streams rows of type `T` into a Parquet writer, `batch_rows` at a time.
pub struct BatchWriter<W: Write + Send, T> {
    writer: ArrowWriter<W>,
    schema: SchemaRef,
    pending: Vec<T>,
    batch_rows: usize,
    to_batch: fn(&SchemaRef, &[T]) -> Result<RecordBatch>,
    rows: u64,
}

impl<W: Write + Send, T> BatchWriter<W, T> {
    pub fn new(
        sink: W,
        schema: SchemaRef,
        props: WriterProperties,
        batch_rows: usize,
        to_batch: fn(&SchemaRef, &[T]) -> Result<RecordBatch>,
    ) -> Result<Self> {
        let writer = ArrowWriter::try_new(sink, schema.clone(), Some(props))
            .context("creating Parquet writer")?;
        Ok(Self {
            writer,
            schema,
            pending: Vec::with_capacity(batch_rows),
            batch_rows: batch_rows.max(1),
            to_batch,
            rows: 0,
        })
    }

    pub fn push(&mut self, row: T) -> Result<()> {
        self.pending.push(row);
        if self.pending.len() >= self.batch_rows {
            self.flush_pending()?;
        }
        Ok(())
    }

    fn flush_pending(&mut self) -> Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let batch = (self.to_batch)(&self.schema, &self.pending)?;
        self.writer.write(&batch).context("writing Parquet batch")?;
        self.rows += self.pending.len() as u64;
        self.pending.clear();
        Ok(())
    }

    /// Rows pushed so far.
    pub fn rows(&self) -> u64 {
        self.rows + self.pending.len() as u64
    }

    /// Write the rest and the footer; returns the sink.
    pub fn finish(mut self) -> Result<W> {
        self.flush_pending()?;
        self.writer.into_inner().context("finishing Parquet file")
    }
}

fn strings<'a>(it: impl Iterator<Item = Option<&'a str>>) -> ArrayRef {
    Arc::new(it.collect::<StringArray>())
}

fn offsets(lens: impl Iterator<Item = usize>) -> OffsetBuffer<i32> {
    OffsetBuffer::<i32>::from_lengths(lens)
}

fn list_field(schema: &SchemaRef, name: &str) -> Result<Arc<arrow::datatypes::Field>> {
    match schema.field_with_name(name)?.data_type() {
        DataType::List(item) => Ok(item.clone()),
        other => anyhow::bail!("column {name} is {other}, expected a list"),
    }
}

fn struct_fields(item: &arrow::datatypes::Field) -> Result<Fields> {
    match item.data_type() {
        DataType::Struct(f) => Ok(f.clone()),
        other => anyhow::bail!("list item {} is {other}, expected a struct", item.name()),
    }
}

/// A `list<utf8>` column.
fn string_list<'a, R: 'a>(
    schema: &SchemaRef,
    name: &str,
    rows: &'a [R],
    get: impl Fn(&'a R) -> &'a [String],
) -> Result<ArrayRef> {
    let item = list_field(schema, name)?;
    let values = strings(
        rows.iter()
            .flat_map(|r| get(r).iter().map(|s| Some(s.as_str()))),
    );
    let offs = offsets(rows.iter().map(|r| get(r).len()));
    Ok(Arc::new(ListArray::try_new(item, offs, values, None)?))
}

/// A `list<struct>` column from per-row item slices and the struct's child columns.
fn struct_list<'a, R: 'a, I: 'a>(
    schema: &SchemaRef,
    name: &str,
    rows: &'a [R],
    get: impl Fn(&'a R) -> &'a [I],
    children: impl Fn(&mut dyn Iterator<Item = &'a I>) -> Vec<ArrayRef>,
) -> Result<ArrayRef> {
    let item = list_field(schema, name)?;
    let fields = struct_fields(&item)?;
    let mut all = rows.iter().flat_map(|r| get(r).iter());
    let columns = children(&mut all);
    let values = StructArray::try_new(fields, columns, None)?;
    let offs = offsets(rows.iter().map(|r| get(r).len()));
    Ok(Arc::new(ListArray::try_new(
        item,
        offs,
        Arc::new(values),
        None,
    )?))
}

/// The abstracts-table batch of `rows` (schema `schemas::abstracts::schema()`).
pub fn citations_batch(schema: &SchemaRef, rows: &[Citation]) -> Result<RecordBatch> {
    let opt = |f: fn(&Citation) -> &Option<String>| strings(rows.iter().map(|r| f(r).as_deref()));
    let columns: Vec<ArrayRef> = vec![
        Arc::new(rows.iter().map(|r| r.pmid).collect::<UInt64Array>()),
        Arc::new(rows.iter().map(|r| r.version).collect::<UInt32Array>()),
        opt(|r| &r.title),
        opt(|r| &r.abstract_text),
        struct_list(
            schema,
            "abstract_sections",
            rows,
            |r| &r.abstract_sections,
            |it| {
                let items: Vec<_> = it.collect();
                vec![
                    strings(items.iter().map(|s| s.label.as_deref())),
                    strings(items.iter().map(|s| s.nlm_category.as_deref())),
                    strings(items.iter().map(|s| Some(s.text.as_str()))),
                ]
            },
        )?,
        struct_list(
            schema,
            "other_abstracts",
            rows,
            |r| &r.other_abstracts,
            |it| {
                let items: Vec<_> = it.collect();
                vec![
                    strings(items.iter().map(|s| s.kind.as_deref())),
                    strings(items.iter().map(|s| s.language.as_deref())),
                    strings(items.iter().map(|s| Some(s.text.as_str()))),
                ]
            },
        )?,
        string_list(schema, "languages", rows, |r| &r.languages)?,
        opt(|r| &r.journal_title),
        opt(|r| &r.iso_abbreviation),
        Arc::new(rows.iter().map(|r| r.year).collect::<Int32Array>()),
        opt(|r| &r.pub_date),
        string_list(schema, "publication_types", rows, |r| &r.publication_types)?,
        struct_list(
            schema,
            "mesh",
            rows,
            |r| &r.mesh,
            |it| {
                let items: Vec<_> = it.collect();
                vec![
                    strings(items.iter().map(|m| Some(m.name.as_str()))),
                    strings(items.iter().map(|m| m.ui.as_deref())),
                    Arc::new(
                        items
                            .iter()
                            .map(|m| Some(m.major_topic))
                            .collect::<BooleanArray>(),
                    ),
                ]
            },
        )?,
        string_list(schema, "keywords", rows, |r| &r.keywords)?,
        struct_list(
            schema,
            "chemicals",
            rows,
            |r| &r.chemicals,
            |it| {
                let items: Vec<_> = it.collect();
                vec![
                    strings(items.iter().map(|c| Some(c.name.as_str()))),
                    strings(items.iter().map(|c| c.ui.as_deref())),
                    strings(items.iter().map(|c| c.registry_number.as_deref())),
                ]
            },
        )?,
        opt(|r| &r.doi),
        opt(|r| &r.pmc_id),
        opt(|r| &r.citation_status),
        strings(rows.iter().map(|r| Some(r.record_kind.as_str()))),
        strings(rows.iter().map(|r| Some(&*r.source_file))),
        Arc::new(rows.iter().map(|r| r.record_index).collect::<UInt32Array>()),
    ];
    RecordBatch::try_new(schema.clone(), columns).context("building abstracts batch")
}

/// The deletions-table batch of `rows` (schema `schemas::abstracts::deletions_schema()`).
pub fn deletions_batch(schema: &SchemaRef, rows: &[Deletion]) -> Result<RecordBatch> {
    let columns: Vec<ArrayRef> = vec![
        Arc::new(rows.iter().map(|r| r.pmid).collect::<UInt64Array>()),
        Arc::new(rows.iter().map(|r| r.version).collect::<UInt32Array>()),
        strings(rows.iter().map(|r| Some(&*r.source_file))),
        Arc::new(rows.iter().map(|r| r.record_index).collect::<UInt32Array>()),
    ];
    RecordBatch::try_new(schema.clone(), columns).context("building deletions batch")
}
