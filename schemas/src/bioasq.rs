//! `bioasq/`: BioASQ questions of the exact-answer types (factoid, yes/no, list) as SQuAD-style
//! examples, and the official golden answers.
//!
//! The row types ([`Example`], [`GoldenRow`]) are the one in-memory form of both tables: the
//! pipeline builds record batches from them ([`examples_batch`], [`golden_batch`]) and the trainer
//! reads them back ([`read_examples`], [`read_golden`]).

use std::fs::File;
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result, bail, ensure};
use arrow::array::{
    Array, ArrayRef, AsArray, GenericListArray, Int32Builder, Int64Builder, ListBuilder,
    RecordBatch, StringArray, StringBuilder, UInt64Builder,
};
use arrow::datatypes::{DataType, Field, Int32Type, Int64Type, Schema, SchemaRef, UInt64Type};
use serde::{Deserialize, Serialize};

/// 2: `split` in examples, `year` in golden. 3: `type` and `answer_list` in examples (yes/no and
/// list questions; tables of version 2, without them, still read as factoid-only).
pub const VERSION: u32 = 3;

fn utf8(name: &str, nullable: bool) -> Field {
    Field::new(name, DataType::Utf8, nullable)
}

fn non_null_item(dt: DataType) -> Arc<Field> {
    Arc::new(Field::new("item", dt, false))
}

/// SQuAD-style examples: one (question, context) pair per row.
pub fn examples_schema() -> SchemaRef {
    Arc::new(
        Schema::new(vec![
            utf8("id", false),
            utf8("question_id", false),
            utf8("question", false),
            utf8("context", false),
            utf8("answer_text", true),
            Field::new("answer_start", DataType::Int64, true),
            Field::new("pmid", DataType::UInt64, true),
            utf8("context_source", false),
            utf8("split", false),
            utf8("source_file", false),
            utf8("type", false),
            Field::new(
                "answer_list",
                DataType::List(non_null_item(DataType::Utf8)),
                true,
            ),
        ])
        .with_metadata(crate::table_metadata("bioasq_examples", VERSION)),
    )
}

/// Golden answers of the official files: one row per question.
pub fn golden_schema() -> SchemaRef {
    let synonyms = DataType::List(non_null_item(DataType::Utf8));
    Arc::new(
        Schema::new(vec![
            utf8("question_id", false),
            utf8("type", false),
            utf8("body", false),
            Field::new(
                "exact_answer",
                DataType::List(non_null_item(synonyms)),
                false,
            ),
            Field::new(
                "documents",
                DataType::List(non_null_item(DataType::UInt64)),
                false,
            ),
            utf8("batch", true),
            Field::new("year", DataType::Int32, true),
            utf8("source_file", false),
        ])
        .with_metadata(crate::table_metadata("bioasq_golden", VERSION)),
    )
}

/// Which split an example belongs to (the `split` column).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Split {
    Train,
    Test,
}

impl Split {
    pub fn as_str(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Test => "test",
        }
    }
}

/// Where an example's context came from (the `context_source` column).
pub mod source {
    /// Carried over from a SQuAD-format input.
    pub const SQUAD: &str = "squad";
    /// A training snippet.
    pub const SNIPPET: &str = "snippet";
    /// `title + " " + abstract` from our `parquet/current`.
    pub const PUBMED: &str = "pubmed";
    /// The same, from a record fetched with efetch (cached under `raw/pubmed/efetch/`).
    pub const EFETCH: &str = "efetch";
    /// `--offline` and the document is nowhere: the question's snippets of that document.
    pub const SNIPPET_FALLBACK: &str = "snippet-fallback";
    /// Every value the column may hold.
    pub const ALL: [&str; 5] = [SQUAD, SNIPPET, PUBMED, EFETCH, SNIPPET_FALLBACK];
}

/// The question types of BioASQ Task B (the `type` columns).
pub mod qtype {
    pub const FACTOID: &str = "factoid";
    pub const YESNO: &str = "yesno";
    pub const LIST: &str = "list";
    pub const SUMMARY: &str = "summary";
    /// Every type of Task B.
    pub const ALL: [&str; 4] = [FACTOID, LIST, YESNO, SUMMARY];
    /// The types with an exact answer: the ones the examples tables hold.
    pub const EXACT: [&str; 3] = [FACTOID, YESNO, LIST];
}

/// One row of the examples tables.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Example {
    pub id: String,
    pub question_id: String,
    pub question: String,
    pub context: String,
    pub answer_text: Option<String>,
    pub answer_start: Option<i64>,
    pub pmid: Option<u64>,
    /// One of [`source::ALL`].
    pub context_source: &'static str,
    pub split: Split,
    pub source_file: String,
    /// The question's type, one of [`qtype::EXACT`].
    pub qtype: &'static str,
    /// List training rows: the gold entities the context mentions, each as written there, in
    /// order of first mention; `None` for other rows.
    pub answer_list: Option<Vec<String>>,
}

/// One row of the golden table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GoldenRow {
    pub question_id: String,
    pub qtype: String,
    pub body: String,
    /// Synonym lists.
    pub exact_answer: Vec<Vec<String>>,
    pub documents: Vec<u64>,
    /// Test batch (e.g. `4B1`); null for a training file's copy of a question.
    pub batch: Option<String>,
    pub year: Option<i32>,
    pub source_file: String,
}

impl GoldenRow {
    /// Whether the row comes from a golden test batch file, as opposed to a training file that
    /// repeats a test question.
    pub fn in_batch(&self) -> bool {
        self.batch.is_some()
    }
    /// The test batch, or the source file name for rows outside a batch.
    pub fn batch_label(&self) -> &str {
        self.batch.as_deref().unwrap_or(&self.source_file)
    }
}

/// The examples as one record batch of [`examples_schema`].
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
    let mut qtype = StringBuilder::new();
    let mut answer_list =
        ListBuilder::new(StringBuilder::new()).with_field(non_null_item(DataType::Utf8));
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
        qtype.append_value(r.qtype);
        match &r.answer_list {
            Some(list) => {
                for a in list {
                    answer_list.values().append_value(a);
                }
                answer_list.append(true);
            }
            None => answer_list.append(false),
        }
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
        Arc::new(qtype.finish()),
        Arc::new(answer_list.finish()),
    ];
    RecordBatch::try_new(examples_schema(), columns).context("building the examples batch")
}

/// The golden rows as one record batch of [`golden_schema`].
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
    RecordBatch::try_new(golden_schema(), columns).context("building the golden batch")
}

/// The record batches of an Arrow IPC table, after checking that every column of `expected`
/// is there with its type (extra columns are allowed; those named in `optional` may be absent).
pub(crate) fn read_table(
    path: &Path,
    expected: &Schema,
    optional: &[&str],
) -> Result<Vec<RecordBatch>> {
    let f = File::open(path).with_context(|| format!("opening table {}", path.display()))?;
    let reader = arrow::ipc::reader::FileReader::try_new(f, None)
        .with_context(|| format!("{}: not an Arrow IPC file", path.display()))?;
    let schema = reader.schema();
    for field in expected.fields() {
        let Ok(found) = schema.field_with_name(field.name()) else {
            if optional.contains(&field.name().as_str()) {
                continue;
            }
            bail!("{}: missing column `{}`", path.display(), field.name());
        };
        ensure!(
            found.data_type().equals_datatype(field.data_type()),
            "{}: column `{}` has type {}, expected {}",
            path.display(),
            field.name(),
            found.data_type(),
            field.data_type()
        );
    }
    reader
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("reading record batches of {}", path.display()))
}

/// A column checked by [`read_table`].
pub(crate) fn column<'a>(b: &'a RecordBatch, name: &str) -> &'a dyn Array {
    b.column_by_name(name)
        .expect("columns checked against the schema")
        .as_ref()
}

pub(crate) fn strings<'a>(b: &'a RecordBatch, name: &str) -> &'a StringArray {
    column(b, name).as_string::<i32>()
}

/// Row `i` of a list-of-strings column (null → `None`).
pub(crate) fn string_list(a: &GenericListArray<i32>, i: usize) -> Option<Vec<String>> {
    (!a.is_null(i)).then(|| {
        let v = a.value(i);
        let v = v.as_string::<i32>();
        (0..v.len()).map(|k| v.value(k).to_string()).collect()
    })
}

/// A non-null string cell; `row` counts rows over the whole table, for the error.
pub(crate) fn required(
    a: &StringArray,
    i: usize,
    path: &Path,
    name: &str,
    row: usize,
) -> Result<String> {
    ensure!(
        !a.is_null(i),
        "{}: row {row}: `{name}` is null",
        path.display()
    );
    Ok(a.value(i).to_string())
}

pub(crate) fn optional(a: &StringArray, i: usize) -> Option<String> {
    (!a.is_null(i)).then(|| a.value(i).to_string())
}

/// Every row of an examples table (`bioasq/examples.arrow`, `bioasq/<task>/<split>.arrow`).
/// Tables of schema version 2 (no `type`, no `answer_list`) read as factoid rows.
pub fn read_examples(path: &Path) -> Result<Vec<Example>> {
    let mut out = Vec::new();
    for b in read_table(path, &examples_schema(), &["type", "answer_list"])? {
        let types = b.column_by_name("type").map(|c| c.as_string::<i32>());
        let lists = b.column_by_name("answer_list").map(|c| c.as_list::<i32>());
        let (id, qid, q, ctx, ans, src, split, file) = (
            strings(&b, "id"),
            strings(&b, "question_id"),
            strings(&b, "question"),
            strings(&b, "context"),
            strings(&b, "answer_text"),
            strings(&b, "context_source"),
            strings(&b, "split"),
            strings(&b, "source_file"),
        );
        let starts = column(&b, "answer_start").as_primitive::<Int64Type>();
        let pmids = column(&b, "pmid").as_primitive::<UInt64Type>();
        for i in 0..b.num_rows() {
            let row = out.len();
            let cs = required(src, i, path, "context_source", row)?;
            let Some(context_source) = source::ALL.into_iter().find(|s| *s == cs) else {
                bail!(
                    "{}: row {row}: unknown context_source {cs:?} (expected one of {:?})",
                    path.display(),
                    source::ALL
                );
            };
            let split = match required(split, i, path, "split", row)?.as_str() {
                "train" => Split::Train,
                "test" => Split::Test,
                other => bail!(
                    "{}: row {row}: unknown split {other:?} (expected train or test)",
                    path.display()
                ),
            };
            out.push(Example {
                id: required(id, i, path, "id", row)?,
                question_id: required(qid, i, path, "question_id", row)?,
                question: required(q, i, path, "question", row)?,
                context: required(ctx, i, path, "context", row)?,
                answer_text: optional(ans, i),
                answer_start: (!starts.is_null(i)).then(|| starts.value(i)),
                pmid: (!pmids.is_null(i)).then(|| pmids.value(i)),
                context_source,
                split,
                source_file: required(file, i, path, "source_file", row)?,
                qtype: match types {
                    None => qtype::FACTOID,
                    Some(t) => {
                        let t = required(t, i, path, "type", row)?;
                        match qtype::EXACT.into_iter().find(|q| *q == t) {
                            Some(q) => q,
                            None => bail!(
                                "{}: row {row}: unknown type {t:?} (expected one of {:?})",
                                path.display(),
                                qtype::EXACT
                            ),
                        }
                    }
                },
                answer_list: lists.and_then(|l| string_list(l, i)),
            });
        }
    }
    Ok(out)
}

/// Every row of a golden table (`bioasq/golden.arrow`).
pub fn read_golden(path: &Path) -> Result<Vec<GoldenRow>> {
    let mut out = Vec::new();
    for b in read_table(path, &golden_schema(), &[])? {
        let (qid, ty, body, batch, file) = (
            strings(&b, "question_id"),
            strings(&b, "type"),
            strings(&b, "body"),
            strings(&b, "batch"),
            strings(&b, "source_file"),
        );
        let exact = column(&b, "exact_answer").as_list::<i32>();
        let documents = column(&b, "documents").as_list::<i32>();
        let year = column(&b, "year").as_primitive::<Int32Type>();
        for i in 0..b.num_rows() {
            let row = out.len();
            let lists = exact.value(i);
            let lists = lists.as_list::<i32>();
            let exact_answer = (0..lists.len())
                .map(|j| {
                    let syn = lists.value(j);
                    let syn = syn.as_string::<i32>();
                    (0..syn.len()).map(|k| syn.value(k).to_string()).collect()
                })
                .collect();
            let docs = documents.value(i);
            out.push(GoldenRow {
                question_id: required(qid, i, path, "question_id", row)?,
                qtype: required(ty, i, path, "type", row)?,
                body: required(body, i, path, "body", row)?,
                exact_answer,
                documents: docs.as_primitive::<UInt64Type>().values().to_vec(),
                batch: optional(batch, i),
                year: (!year.is_null(i)).then(|| year.value(i)),
                source_file: required(file, i, path, "source_file", row)?,
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(path: &Path, batch: &RecordBatch) {
        let f = File::create(path).unwrap();
        let mut w = arrow::ipc::writer::FileWriter::try_new(f, batch.schema_ref()).unwrap();
        w.write(batch).unwrap();
        w.finish().unwrap();
    }

    #[test]
    fn rows_round_trip_through_both_tables() {
        let dir = std::env::temp_dir().join(format!("bioasq-rows-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let examples = vec![
            Example {
                id: "q1_001".into(),
                question_id: "q1".into(),
                question: "Which gene?".into(),
                context: "BRCA1 is a gene.".into(),
                answer_text: Some("BRCA1".into()),
                answer_start: Some(0),
                pmid: Some(123),
                context_source: source::SNIPPET,
                split: Split::Train,
                source_file: "train.json".into(),
                qtype: qtype::FACTOID,
                answer_list: None,
            },
            Example {
                id: "q3_001".into(),
                question_id: "q3".into(),
                question: "Which genes?".into(),
                context: "BRCA1 and TP53.".into(),
                answer_text: None,
                answer_start: None,
                pmid: None,
                context_source: source::SNIPPET,
                split: Split::Train,
                source_file: "train.json".into(),
                qtype: qtype::LIST,
                answer_list: Some(vec!["BRCA1".into(), "TP53".into()]),
            },
            Example {
                id: "q2_001".into(),
                question_id: "q2".into(),
                question: "Which protein?".into(),
                context: "ß-catenin…".into(),
                answer_text: None,
                answer_start: None,
                pmid: None,
                context_source: source::SNIPPET_FALLBACK,
                split: Split::Test,
                source_file: "4B1_golden.json".into(),
                qtype: qtype::YESNO,
                answer_list: None,
            },
        ];
        let golden = vec![GoldenRow {
            question_id: "q2".into(),
            qtype: "factoid".into(),
            body: "Which protein?".into(),
            exact_answer: vec![vec!["ß-catenin".into(), "CTNNB1".into()], vec![]],
            documents: vec![7, 9],
            batch: Some("4B1".into()),
            year: Some(4),
            source_file: "4B1_golden.json".into(),
        }];
        write(&dir.join("e.arrow"), &examples_batch(&examples).unwrap());
        write(&dir.join("g.arrow"), &golden_batch(&golden).unwrap());
        assert_eq!(read_examples(&dir.join("e.arrow")).unwrap(), examples);
        let g = read_golden(&dir.join("g.arrow")).unwrap();
        assert_eq!(g, golden);
        assert!(g[0].in_batch() && g[0].batch_label() == "4B1");
        // A golden table is not an examples table: the missing column is named.
        let e = format!("{:#}", read_examples(&dir.join("g.arrow")).unwrap_err());
        assert!(
            e.contains("g.arrow") && e.contains("missing column `id`"),
            "{e}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// A version-2 examples table (no `type`, no `answer_list`) reads as factoid rows.
    #[test]
    fn version_2_examples_read_as_factoid() {
        let dir = std::env::temp_dir().join(format!("bioasq-v2-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let row = Example {
            id: "q1_001".into(),
            question_id: "q1".into(),
            question: "Which gene?".into(),
            context: "BRCA1 is a gene.".into(),
            answer_text: Some("BRCA1".into()),
            answer_start: Some(0),
            pmid: None,
            context_source: source::SNIPPET,
            split: Split::Train,
            source_file: "train.json".into(),
            qtype: qtype::FACTOID,
            answer_list: None,
        };
        let full = examples_batch(std::slice::from_ref(&row)).unwrap();
        let v2 = full.project(&(0..10).collect::<Vec<_>>()).unwrap();
        assert_eq!(v2.schema().fields().len(), 10);
        write(&dir.join("v2.arrow"), &v2);
        assert_eq!(read_examples(&dir.join("v2.arrow")).unwrap(), vec![row]);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
