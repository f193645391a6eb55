//! The `examples` and `golden` tables: Arrow record batches (schemas from `schemas::bioasq`), written as
//! an uncompressed Arrow IPC file plus a zstd Parquet copy, both atomically.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use arrow::array::{
    Array, ArrayRef, AsArray, Int32Builder, Int64Builder, ListBuilder, RecordBatch, StringBuilder,
    UInt64Builder,
};
use arrow::datatypes::{DataType, Field, Int64Type, UInt64Type};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use schemas::AtomicFile;

use super::convert::{Example, Split, source};

/// One row of the golden table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GoldenRow {
    pub question_id: String,
    pub qtype: String,
    pub body: String,
    pub exact_answer: Vec<Vec<String>>,
    pub documents: Vec<u64>,
    pub batch: Option<String>,
    pub year: Option<i32>,
    pub source_file: String,
}

fn non_null_item(dt: DataType) -> Arc<Field> {
    Arc::new(Field::new("item", dt, false))
}

pub fn examples_batch(rows: &[Example]) -> Result<RecordBatch> {
    let mut id = StringBuilder::new();
    let mut question_id = StringBuilder::new();
    let mut question = StringBuilder::new();
    let mut context = StringBuilder::new();
    let mut answer_text = StringBuilder::new();
    let mut answer_start = Int64Builder::new();
    let mut pmid = UInt64Builder::new();
    let mut context_source = StringBuilder::new();
    let mut split = StringBuilder::new();
    let mut source_file = StringBuilder::new();
    for r in rows {
        id.append_value(&r.id);
        question_id.append_value(&r.question_id);
        question.append_value(&r.question);
        context.append_value(&r.context);
        answer_text.append_option(r.answer_text.as_deref());
        answer_start.append_option(r.answer_start);
        pmid.append_option(r.pmid);
        context_source.append_value(r.context_source);
        split.append_value(r.split.as_str());
        source_file.append_value(&r.source_file);
    }
    let columns: Vec<ArrayRef> = vec![
        Arc::new(id.finish()),
        Arc::new(question_id.finish()),
        Arc::new(question.finish()),
        Arc::new(context.finish()),
        Arc::new(answer_text.finish()),
        Arc::new(answer_start.finish()),
        Arc::new(pmid.finish()),
        Arc::new(context_source.finish()),
        Arc::new(split.finish()),
        Arc::new(source_file.finish()),
    ];
    RecordBatch::try_new(schemas::bioasq::examples_schema(), columns)
        .context("building the examples batch")
}

pub fn golden_batch(rows: &[GoldenRow]) -> Result<RecordBatch> {
    let mut question_id = StringBuilder::new();
    let mut qtype = StringBuilder::new();
    let mut body = StringBuilder::new();
    let synonyms_type = DataType::List(non_null_item(DataType::Utf8));
    let mut exact = ListBuilder::new(
        ListBuilder::new(StringBuilder::new()).with_field(non_null_item(DataType::Utf8)),
    )
    .with_field(non_null_item(synonyms_type));
    let mut documents =
        ListBuilder::new(UInt64Builder::new()).with_field(non_null_item(DataType::UInt64));
    let mut batch = StringBuilder::new();
    let mut year = Int32Builder::new();
    let mut source_file = StringBuilder::new();
    for r in rows {
        question_id.append_value(&r.question_id);
        qtype.append_value(&r.qtype);
        body.append_value(&r.body);
        for synonyms in &r.exact_answer {
            for s in synonyms {
                exact.values().values().append_value(s);
            }
            exact.values().append(true);
        }
        exact.append(true);
        for d in &r.documents {
            documents.values().append_value(*d);
        }
        documents.append(true);
        batch.append_option(r.batch.as_deref());
        year.append_option(r.year);
        source_file.append_value(&r.source_file);
    }
    let columns: Vec<ArrayRef> = vec![
        Arc::new(question_id.finish()),
        Arc::new(qtype.finish()),
        Arc::new(body.finish()),
        Arc::new(exact.finish()),
        Arc::new(documents.finish()),
        Arc::new(batch.finish()),
        Arc::new(year.finish()),
        Arc::new(source_file.finish()),
    ];
    RecordBatch::try_new(schemas::bioasq::golden_schema(), columns)
        .context("building the golden batch")
}

/// Write `batch` to `<base>.arrow` (IPC file, uncompressed) and `<base>.parquet` (zstd); returns both
/// paths. Identical bytes keep the existing files.
pub fn write_table(batch: &RecordBatch, base: &Path) -> Result<Vec<PathBuf>> {
    let arrow_path = base.with_extension("arrow");
    let parquet_path = base.with_extension("parquet");

    let file = AtomicFile::create(&arrow_path)?;
    let mut writer = arrow::ipc::writer::FileWriter::try_new(file, &batch.schema())
        .with_context(|| format!("writing {}", arrow_path.display()))?;
    writer
        .write(batch)
        .and_then(|_| writer.finish())
        .with_context(|| format!("writing {}", arrow_path.display()))?;
    writer
        .into_inner()
        .with_context(|| format!("writing {}", arrow_path.display()))?
        .commit_unless_identical()?;

    let props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(3)?))
        .build();
    let file = AtomicFile::create(&parquet_path)?;
    let mut writer = ArrowWriter::try_new(file, batch.schema(), Some(props))
        .with_context(|| format!("writing {}", parquet_path.display()))?;
    writer
        .write(batch)
        .with_context(|| format!("writing {}", parquet_path.display()))?;
    writer
        .into_inner()
        .with_context(|| format!("writing {}", parquet_path.display()))?
        .commit_unless_identical()?;
    Ok(vec![arrow_path, parquet_path])
}

/// Read an examples table back from its Arrow IPC file.
pub fn read_examples(path: &Path) -> Result<Vec<Example>> {
    let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let reader = arrow::ipc::reader::FileReader::try_new(file, None)
        .with_context(|| format!("reading {}", path.display()))?;
    let mut out = Vec::new();
    for batch in reader {
        let batch = batch.with_context(|| format!("reading {}", path.display()))?;
        let s = |name: &str| -> Result<&arrow::array::StringArray> {
            batch
                .column_by_name(name)
                .and_then(|c| c.as_string_opt::<i32>())
                .with_context(|| format!("{}: no utf8 column `{name}`", path.display()))
        };
        let (id, qid, q, ctx, at, cs, split, sf) = (
            s("id")?,
            s("question_id")?,
            s("question")?,
            s("context")?,
            s("answer_text")?,
            s("context_source")?,
            s("split")?,
            s("source_file")?,
        );
        let starts = batch
            .column_by_name("answer_start")
            .and_then(|c| c.as_primitive_opt::<Int64Type>())
            .with_context(|| format!("{}: no int64 column `answer_start`", path.display()))?;
        let pmids = batch
            .column_by_name("pmid")
            .and_then(|c| c.as_primitive_opt::<UInt64Type>())
            .with_context(|| format!("{}: no uint64 column `pmid`", path.display()))?;
        for i in 0..batch.num_rows() {
            let context_source = match cs.value(i) {
                source::SQUAD => source::SQUAD,
                source::SNIPPET => source::SNIPPET,
                source::PUBMED => source::PUBMED,
                source::EFETCH => source::EFETCH,
                source::SNIPPET_FALLBACK => source::SNIPPET_FALLBACK,
                other => bail!(
                    "{}: row {i}: unknown context_source {other:?}",
                    path.display()
                ),
            };
            let split = match split.value(i) {
                "train" => Split::Train,
                "test" => Split::Test,
                other => bail!("{}: row {i}: unknown split {other:?}", path.display()),
            };
            out.push(Example {
                id: id.value(i).to_string(),
                question_id: qid.value(i).to_string(),
                question: q.value(i).to_string(),
                context: ctx.value(i).to_string(),
                answer_text: (!at.is_null(i)).then(|| at.value(i).to_string()),
                answer_start: (!starts.is_null(i)).then(|| starts.value(i)),
                pmid: (!pmids.is_null(i)).then(|| pmids.value(i)),
                context_source,
                split,
                source_file: sf.value(i).to_string(),
            });
        }
    }
    Ok(out)
}
