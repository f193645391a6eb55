//! `pubmedqa/`: PubMedQA's expert-annotated questions (PQA-L, pubmedqa/pubmedqa, MIT), one row
//! per question, split as the benchmark splits them.
//!
//! The row type [`PubmedqaRow`] is the one in-memory form of both tables: the pipeline builds a
//! record batch from it ([`batch`]) and the trainer reads it back ([`read`]).

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result, bail, ensure};
use arrow::array::{
    Array, ArrayRef, AsArray, Int32Builder, ListBuilder, RecordBatch, StringBuilder, UInt64Builder,
};
use arrow::datatypes::{DataType, Field, Int32Type, Schema, SchemaRef, UInt64Type};

use crate::bioasq::{optional, read_table, required, string_list, strings};

/// 1: first version.
pub const VERSION: u32 = 1;

/// The answer labels, as the data and the official evaluation spell them.
pub const LABELS: [&str; 3] = ["yes", "no", "maybe"];

/// Folds of the official cross-validation split of the 500 training questions.
pub const FOLDS: u32 = 10;

fn strings_field(name: &str) -> Field {
    Field::new(
        name,
        DataType::List(Arc::new(Field::new("item", DataType::Utf8, false))),
        false,
    )
}

/// The schema of `pubmedqa/{train,test}.arrow`.
pub fn schema() -> SchemaRef {
    Arc::new(
        Schema::new(vec![
            Field::new("pmid", DataType::UInt64, false),
            Field::new("question", DataType::Utf8, false),
            strings_field("contexts"),
            strings_field("context_labels"),
            Field::new("long_answer", DataType::Utf8, false),
            Field::new("label", DataType::Utf8, false),
            Field::new("split", DataType::Utf8, false),
            Field::new("fold", DataType::Int32, true),
            Field::new("year", DataType::Int32, true),
            strings_field("meshes"),
            Field::new("reasoning_required_pred", DataType::Utf8, false),
            Field::new("reasoning_free_pred", DataType::Utf8, false),
        ])
        .with_metadata(crate::table_metadata("pubmedqa", VERSION)),
    )
}

/// One PubMedQA question.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PubmedqaRow {
    pub pmid: u64,
    pub question: String,
    /// The abstract without its conclusion, section by section.
    pub contexts: Vec<String>,
    /// The section label of each context (`BACKGROUND`, `METHODS`, …), same length.
    pub context_labels: Vec<String>,
    /// The conclusion of the abstract: the long answer.
    pub long_answer: String,
    /// The gold label (`final_decision`): one of [`LABELS`].
    pub label: String,
    /// `train` (the 500 cross-validation questions) or `test` (the 500 official test questions).
    pub split: String,
    /// Training rows: the official cross-validation fold, 0..[`FOLDS`]; test rows: `None`.
    pub fold: Option<u32>,
    pub year: Option<i32>,
    pub meshes: Vec<String>,
    /// The second annotator's label with the contexts only (reasoning-required setting).
    pub reasoning_required_pred: String,
    /// The second annotator's label with the long answer too (reasoning-free setting).
    pub reasoning_free_pred: String,
}

fn append_strings(b: &mut ListBuilder<StringBuilder>, v: &[String]) {
    for s in v {
        b.values().append_value(s);
    }
    b.append(true);
}

/// The rows as one record batch of [`schema`].
pub fn batch(rows: &[PubmedqaRow]) -> Result<RecordBatch> {
    let item = || Arc::new(Field::new("item", DataType::Utf8, false));
    let list = || ListBuilder::new(StringBuilder::new()).with_field(item());
    let mut pmid = UInt64Builder::new();
    let (mut question, mut long_answer, mut label, mut split) = (
        StringBuilder::new(),
        StringBuilder::new(),
        StringBuilder::new(),
        StringBuilder::new(),
    );
    let (mut contexts, mut context_labels, mut meshes) = (list(), list(), list());
    let (mut fold, mut year) = (Int32Builder::new(), Int32Builder::new());
    let (mut rr, mut rf) = (StringBuilder::new(), StringBuilder::new());
    for r in rows {
        pmid.append_value(r.pmid);
        question.append_value(&r.question);
        append_strings(&mut contexts, &r.contexts);
        append_strings(&mut context_labels, &r.context_labels);
        long_answer.append_value(&r.long_answer);
        label.append_value(&r.label);
        split.append_value(&r.split);
        fold.append_option(r.fold.map(|f| f as i32));
        year.append_option(r.year);
        append_strings(&mut meshes, &r.meshes);
        rr.append_value(&r.reasoning_required_pred);
        rf.append_value(&r.reasoning_free_pred);
    }
    let columns: Vec<ArrayRef> = vec![
        Arc::new(pmid.finish()),
        Arc::new(question.finish()),
        Arc::new(contexts.finish()),
        Arc::new(context_labels.finish()),
        Arc::new(long_answer.finish()),
        Arc::new(label.finish()),
        Arc::new(split.finish()),
        Arc::new(fold.finish()),
        Arc::new(year.finish()),
        Arc::new(meshes.finish()),
        Arc::new(rr.finish()),
        Arc::new(rf.finish()),
    ];
    RecordBatch::try_new(schema(), columns).context("building the pubmedqa batch")
}

/// Every row of a PubMedQA table (`pubmedqa/train.arrow`, `pubmedqa/test.arrow`).
pub fn read(path: &Path) -> Result<Vec<PubmedqaRow>> {
    let mut out = Vec::new();
    for b in read_table(path, &schema(), &[])? {
        let pmid = b
            .column_by_name("pmid")
            .expect("checked")
            .as_primitive::<UInt64Type>();
        let list = |name: &str| b.column_by_name(name).expect("checked").as_list::<i32>();
        let (contexts, labels, meshes) = (list("contexts"), list("context_labels"), list("meshes"));
        let int = |name: &str| {
            b.column_by_name(name)
                .expect("checked")
                .as_primitive::<Int32Type>()
        };
        let (fold, year) = (int("fold"), int("year"));
        let s = |name: &str| strings(&b, name);
        for i in 0..b.num_rows() {
            let row = out.len();
            let req = |name: &str| required(s(name), i, path, name, row);
            let r = PubmedqaRow {
                pmid: pmid.value(i),
                question: req("question")?,
                contexts: string_list(contexts, i).unwrap_or_default(),
                context_labels: string_list(labels, i).unwrap_or_default(),
                long_answer: req("long_answer")?,
                label: req("label")?,
                split: req("split")?,
                fold: (!fold.is_null(i)).then(|| fold.value(i) as u32),
                year: (!year.is_null(i)).then(|| year.value(i)),
                meshes: string_list(meshes, i).unwrap_or_default(),
                reasoning_required_pred: optional(s("reasoning_required_pred"), i)
                    .unwrap_or_default(),
                reasoning_free_pred: optional(s("reasoning_free_pred"), i).unwrap_or_default(),
            };
            ensure!(
                LABELS.contains(&r.label.as_str()),
                "{}: row {row} (PMID {}): label {:?} is not one of {LABELS:?}",
                path.display(),
                r.pmid,
                r.label
            );
            if r.contexts.len() != r.context_labels.len() {
                bail!(
                    "{}: row {row} (PMID {}): {} contexts but {} context labels",
                    path.display(),
                    r.pmid,
                    r.contexts.len(),
                    r.context_labels.len()
                );
            }
            out.push(r);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_round_trip() {
        let rows = vec![
            PubmedqaRow {
                pmid: 21645374,
                question: "Do mitochondria play a role?".into(),
                contexts: vec!["a.".into(), "b.".into()],
                context_labels: vec!["BACKGROUND".into(), "RESULTS".into()],
                long_answer: "Yes.".into(),
                label: "yes".into(),
                split: "train".into(),
                fold: Some(3),
                year: Some(2011),
                meshes: vec!["Apoptosis".into()],
                reasoning_required_pred: "yes".into(),
                reasoning_free_pred: "yes".into(),
            },
            PubmedqaRow {
                pmid: 1,
                question: "Q?".into(),
                contexts: vec![],
                context_labels: vec![],
                long_answer: "Perhaps.".into(),
                label: "maybe".into(),
                split: "test".into(),
                fold: None,
                year: None,
                meshes: vec![],
                reasoning_required_pred: "no".into(),
                reasoning_free_pred: "maybe".into(),
            },
        ];
        let dir = std::env::temp_dir().join(format!("pubmedqa-rows-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("t.arrow");
        let b = batch(&rows).unwrap();
        let f = std::fs::File::create(&p).unwrap();
        let mut w = arrow::ipc::writer::FileWriter::try_new(f, b.schema_ref()).unwrap();
        w.write(&b).unwrap();
        w.finish().unwrap();
        assert_eq!(read(&p).unwrap(), rows);
        let mut bad = rows.clone();
        bad[1].label = "Maybe".into();
        let b = batch(&bad).unwrap();
        let f = std::fs::File::create(&p).unwrap();
        let mut w = arrow::ipc::writer::FileWriter::try_new(f, b.schema_ref()).unwrap();
        w.write(&b).unwrap();
        w.finish().unwrap();
        let e = format!("{:#}", read(&p).unwrap_err());
        assert!(e.contains("PMID 1") && e.contains("\"Maybe\""), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
