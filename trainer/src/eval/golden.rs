//! Which golden rows a task is scored on: exactly the rows of its golden test batches, and
//! their questions of each exact-answer type, each once. Shared by answering and submission
//! scoring.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;

use anyhow::{Result, bail};
use schemas::bioasq::{Example, GoldenRow, qtype};

use crate::config::{Resolved, TaskConfig};

/// The questions of `golden` of type `qtype` (`factoid`, `yesno`, `list`), each once, in table
/// order (a repeated id is an error: the submission must list every id exactly once).
pub fn questions_of_type<'a>(golden: &'a [GoldenRow], qtype: &str) -> Result<Vec<&'a GoldenRow>> {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for g in golden.iter().filter(|g| g.qtype == qtype) {
        if !seen.insert(g.question_id.as_str()) {
            bail!(
                "{qtype} question {} appears twice in the golden table",
                g.question_id
            );
        }
        out.push(g);
    }
    Ok(out)
}

/// The factoid questions of `golden` ([`questions_of_type`]).
pub fn factoid_questions(golden: &[GoldenRow]) -> Result<Vec<&GoldenRow>> {
    questions_of_type(golden, qtype::FACTOID)
}

/// The golden rows of this task's questions: exactly the rows of the golden test batches
/// (rows from a `*_golden.json` file, never a training file's copy of a test question) —
/// those of [`TaskConfig::batches`], or, when empty, those whose id is a question of the
/// test table. An id found in two batches is an error (name the batches).
pub fn select_golden(
    task: &TaskConfig,
    golden: Vec<GoldenRow>,
    test: &[Example],
) -> Result<Vec<GoldenRow>> {
    let path = task.golden.display();
    let test_ids: HashSet<&str> = test.iter().map(|e| e.question_id.as_str()).collect();
    for b in &task.batches {
        if !golden.iter().any(|g| g.batch.as_ref() == Some(b)) {
            let have = batch_labels(golden.iter().filter_map(|g| g.batch.as_deref()));
            bail!(
                "{path}: no golden batch {b:?} (batches: {})",
                have.join(", ")
            );
        }
    }
    let out: Vec<GoldenRow> = golden
        .into_iter()
        .filter(|g| g.in_batch())
        .filter(|g| {
            if task.batches.is_empty() {
                test_ids.contains(g.question_id.as_str())
            } else {
                task.batches.iter().any(|b| Some(b) == g.batch.as_ref())
            }
        })
        .collect();
    let mut batch_of: BTreeMap<&str, &str> = BTreeMap::new();
    for g in &out {
        if let Some(other) = batch_of.insert(&g.question_id, g.batch_label()) {
            bail!(
                "{path}: question {} is in golden batches {other} and {}; list the task's \
                 batches in [tasks.*] batches",
                g.question_id,
                g.batch_label()
            );
        }
    }
    if !out.iter().any(|g| qtype::EXACT.contains(&g.qtype.as_str())) {
        bail!(
            "{path}: no factoid, yes/no or list question of the task in a golden test batch \
             (batches {:?})",
            task.batches
        );
    }
    Ok(out)
}

/// Task `r`'s golden rows, read from its golden table under `data_dir` and chosen by
/// [`select_golden`] (`test`: the task's test examples; needed only when it lists no batches).
pub fn task_golden(r: &Resolved, data_dir: &Path, test: &[Example]) -> Result<Vec<GoldenRow>> {
    let golden = schemas::bioasq::read_golden(&data_dir.join(&r.tables.golden))?;
    select_golden(&r.tables, golden, test)
}

/// Batch labels, sorted, each once.
pub fn batch_labels<'a>(labels: impl Iterator<Item = &'a str>) -> Vec<&'a str> {
    let mut v: Vec<&str> = labels.collect();
    v.sort();
    v.dedup();
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_golden_factoid_is_an_error() {
        let g = |id: &str, t: &str| GoldenRow {
            question_id: id.into(),
            qtype: t.into(),
            body: String::new(),
            exact_answer: vec![],
            documents: vec![],
            batch: Some("B1".into()),
            year: None,
            source_file: "B1_golden.json".into(),
        };
        let golden = vec![g("a", "factoid"), g("y", "yesno"), g("b", "factoid")];
        let f = factoid_questions(&golden).unwrap();
        assert_eq!(
            f.iter().map(|q| q.question_id.as_str()).collect::<Vec<_>>(),
            ["a", "b"]
        );
        assert!(factoid_questions(&[g("a", "factoid"), g("a", "factoid")]).is_err());
    }

    /// The shared golden table also holds the training file's copy of a leaked test question
    /// (same id, no batch): the task scores exactly the golden test batches' questions.
    #[test]
    fn golden_selection_is_exactly_the_test_batches_questions() {
        let g = |id: &str, batch: &str, in_batch: bool| GoldenRow {
            question_id: id.into(),
            qtype: "factoid".into(),
            body: format!("question {id}"),
            exact_answer: vec![vec![format!("answer {id}")]],
            documents: vec![],
            batch: in_batch.then(|| batch.to_string()),
            year: None,
            source_file: if in_batch {
                format!("{batch}_golden.json")
            } else {
                batch.to_string()
            },
        };
        let golden = || {
            vec![
                g("leaked", "training-sample.json", false),
                g("t1", "training-sample.json", false),
                g("leaked", "B1", true),
                g("q2", "B1", true),
                g("q3", "B2", true),
                g("other", "C1", true),
            ]
        };
        let ex = |qid: &str| Example {
            id: format!("{qid}_001"),
            question_id: qid.into(),
            question: String::new(),
            context: String::new(),
            answer_text: None,
            answer_start: None,
            pmid: None,
            context_source: schemas::bioasq::source::SNIPPET,
            split: schemas::bioasq::Split::Test,
            source_file: "test.json".into(),
            qtype: qtype::FACTOID,
            answer_list: None,
        };
        let test = [ex("leaked"), ex("q2"), ex("q3"), ex("q3")];
        let ids = |v: &[GoldenRow]| {
            v.iter()
                .map(|g| format!("{}@{}", g.question_id, g.batch_label()))
                .collect::<Vec<_>>()
        };
        let want = ["leaked@B1", "q2@B1", "q3@B2"];
        // By the test table's ids.
        let t = TaskConfig::default();
        assert_eq!(ids(&select_golden(&t, golden(), &test).unwrap()), want);
        // By batches.
        let t = TaskConfig {
            batches: vec!["B1".into(), "B2".into()],
            ..Default::default()
        };
        let sel = select_golden(&t, golden(), &test).unwrap();
        assert_eq!(ids(&sel), want);
        assert_eq!(factoid_questions(&sel).unwrap().len(), 3);
        // A batch that is not there, and an id in two batches, are errors.
        let t = TaskConfig {
            batches: vec!["B9".into()],
            ..Default::default()
        };
        let e = format!("{:#}", select_golden(&t, golden(), &test).unwrap_err());
        assert!(e.contains("B9") && e.contains("B1, B2, C1"), "{e}");
        let mut twice = golden();
        twice.push(g("q2", "B2", true));
        let e = format!(
            "{:#}",
            select_golden(&TaskConfig::default(), twice, &test).unwrap_err()
        );
        assert!(e.contains("q2") && e.contains("B1 and B2"), "{e}");
    }
}
