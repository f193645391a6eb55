//! Scoring any BioASQ factoid submission (`trainer eval --task TASK --submission FILE`): ours,
//! BioBERT's, another team's. The file is the BioASQ Phase B format,
//! `{"questions":[{"id", "exact_answer":[["answer", "synonym", …], …]}, …]}`; other fields,
//! and questions that are not factoid in the golden batches, are ignored.
//!
//! The task's golden rows are selected exactly as answering selects them
//! ([`crate::eval::golden::select_golden`] with `[tasks.TASK]`). Each factoid question of them
//! is scored with [`metrics::score_slots`] (the official measures); one missing from the
//! submission scores 0 and is counted in a warning. An id that is not a question of the golden
//! batches is an error naming it (a factoid of another task, a typo), as is an id listed twice
//! or a factoid `exact_answer` that is not a list of lists of strings. More than
//! [`MAX_ANSWERS`] answers are scored as the official evaluator scores them (all count) and
//! counted in a warning. Writes `results.json`, `results.md` and `details.jsonl` (per question:
//! the submitted answers, gold, scores) under the output directory.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use anyhow::{Context, Result, bail};
use schemas::bioasq::GoldenRow;
use serde::Serialize;
use serde_json::Value;

use crate::config::Resolved;
use crate::eval::candidates::MAX_ANSWERS;
use crate::eval::golden::{batch_labels, factoid_questions, task_golden};
use crate::eval::metrics::{self, QuestionScore};
use crate::eval::results::{TaskResult, write_task_files};

/// One golden factoid question, scored.
#[derive(Debug, Clone, Serialize)]
pub struct ScoredQuestion {
    pub question_id: String,
    pub batch: String,
    /// The submitted `exact_answer` (answer slots, each a list of strings); empty if missing.
    pub exact_answer: Vec<Vec<String>>,
    pub gold: Vec<Vec<String>>,
    /// Not in the submission (scored 0).
    pub missing: bool,
    pub score: QuestionScore,
}

/// A submission scored against a task's golden rows.
#[derive(Debug, Clone)]
pub struct SubmissionScores {
    /// Every factoid question of the golden rows, in golden-table order.
    pub questions: Vec<ScoredQuestion>,
    /// Golden factoid ids absent from the submission.
    pub missing: Vec<String>,
    /// Submitted ids with more than [`MAX_ANSWERS`] answers.
    pub over_limit: Vec<String>,
    /// Submitted questions of the golden batches that are not factoid (ignored).
    pub ignored: usize,
}

/// At most 10 ids, then how many more.
fn some_ids(ids: &[String]) -> String {
    let mut s = ids.iter().take(10).cloned().collect::<Vec<_>>().join(", ");
    if ids.len() > 10 {
        s.push_str(&format!(" and {} more", ids.len() - 10));
    }
    s
}

/// The `questions` of a submission as `(id, exact_answer)`, in order; an id that is not a
/// string, or listed twice, is an error.
pub fn submission_questions(sub: &Value) -> Result<Vec<(&str, Option<&Value>)>> {
    let qs = sub
        .get("questions")
        .and_then(Value::as_array)
        .context("submission: expected an object with a `questions` array")?;
    let mut seen: HashSet<&str> = HashSet::new();
    qs.iter()
        .enumerate()
        .map(|(i, q)| {
            let id = q
                .get("id")
                .and_then(Value::as_str)
                .with_context(|| format!("submission question {i}: `id` is not a string"))?;
            if !seen.insert(id) {
                bail!("submission: id {id} appears more than once");
            }
            Ok((id, q.get("exact_answer")))
        })
        .collect()
}

/// A factoid `exact_answer`: absent or null = no answer; else a list of lists of strings.
pub fn answer_slots(id: &str, ea: Option<&Value>) -> Result<Vec<Vec<String>>> {
    let bad = || {
        anyhow::anyhow!(
            "submission question {id}: a factoid `exact_answer` must be a list of answers, each \
             a list of strings (an answer and its synonyms), e.g. [[\"BRCA1\"], [\"TP53\"]]"
        )
    };
    let Some(ea) = ea.filter(|v| !v.is_null()) else {
        return Ok(Vec::new());
    };
    ea.as_array()
        .ok_or_else(bad)?
        .iter()
        .map(|slot| {
            slot.as_array()
                .ok_or_else(bad)?
                .iter()
                .map(|s| s.as_str().map(str::to_string).ok_or_else(bad))
                .collect()
        })
        .collect()
}

/// Score `sub` (a parsed submission) against the task's golden rows (as
/// [`crate::eval::golden::select_golden`] returns them).
pub fn score_submission(sub: &Value, golden: &[GoldenRow]) -> Result<SubmissionScores> {
    let factoids = factoid_questions(golden)?;
    let qtype: HashMap<&str, &str> = golden
        .iter()
        .map(|g| (g.question_id.as_str(), g.qtype.as_str()))
        .collect();
    let mut answers: HashMap<&str, Vec<Vec<String>>> = HashMap::new();
    let mut unknown: Vec<String> = Vec::new();
    let mut over_limit = Vec::new();
    let mut ignored = 0;
    for (id, exact_answer) in submission_questions(sub)? {
        match qtype.get(id) {
            None => unknown.push(id.to_string()),
            Some(&"factoid") => {
                let slots = answer_slots(id, exact_answer)?;
                if slots.len() > MAX_ANSWERS {
                    over_limit.push(id.to_string());
                }
                answers.insert(id, slots);
            }
            Some(_) => ignored += 1,
        }
    }
    if !unknown.is_empty() {
        let batches = batch_labels(golden.iter().map(GoldenRow::batch_label));
        bail!(
            "submission: {} id(s) are not questions of the task's golden batches ({}): {}",
            unknown.len(),
            batches.join(", "),
            some_ids(&unknown)
        );
    }
    let mut missing = Vec::new();
    let questions = factoids
        .into_iter()
        .map(|g| {
            let slots = answers.remove(g.question_id.as_str());
            let is_missing = slots.is_none();
            if is_missing {
                missing.push(g.question_id.clone());
            }
            let exact_answer = slots.unwrap_or_default();
            ScoredQuestion {
                question_id: g.question_id.clone(),
                batch: g.batch_label().to_string(),
                score: metrics::score_slots(&exact_answer, &g.exact_answer),
                missing: is_missing,
                exact_answer,
                gold: g.exact_answer.clone(),
            }
        })
        .collect();
    Ok(SubmissionScores {
        questions,
        missing,
        over_limit,
        ignored,
    })
}

/// Score the submission file `submission` on task `r` (its golden rows under `data_dir`) and
/// write `results.json`, `results.md`, `details.jsonl` under `out`. `system` labels the
/// column (default: the file name).
pub fn score_task(
    r: &Resolved,
    data_dir: &Path,
    submission: &Path,
    system: Option<&str>,
    out: &Path,
) -> Result<TaskResult> {
    // The test table only names the questions when the task lists no batches.
    let examples = if r.tables.batches.is_empty() {
        schemas::bioasq::read_examples(&data_dir.join(&r.tables.test))?
    } else {
        Vec::new()
    };
    let golden = task_golden(r, data_dir, &examples)?;
    let text = std::fs::read(submission)
        .with_context(|| format!("reading submission {}", submission.display()))?;
    let sub: Value = serde_json::from_slice(&text)
        .with_context(|| format!("{}: not JSON", submission.display()))?;
    let scores = score_submission(&sub, &golden)
        .with_context(|| format!("scoring {} on {}", submission.display(), r.task))?;
    let n = scores.questions.len();
    if !scores.missing.is_empty() {
        tracing::warn!(
            "{} of {n} factoid questions of {} are not in {}: scored 0 ({})",
            scores.missing.len(),
            r.task,
            submission.display(),
            some_ids(&scores.missing)
        );
    }
    if !scores.over_limit.is_empty() {
        tracing::warn!(
            "{} questions have more than {MAX_ANSWERS} answers (BioASQ accepts at most \
             {MAX_ANSWERS}); scored over all of them, as the official evaluator does ({})",
            scores.over_limit.len(),
            some_ids(&scores.over_limit)
        );
    }
    if scores.ignored > 0 {
        tracing::info!(
            "ignored {} non-factoid questions of the submission",
            scores.ignored
        );
    }
    let scored: Vec<(String, QuestionScore)> = scores
        .questions
        .iter()
        .map(|q| (q.batch.clone(), q.score))
        .collect();
    let file_name = submission.file_name().map_or_else(
        || submission.display().to_string(),
        |f| f.to_string_lossy().into_owned(),
    );
    let result = TaskResult {
        task: r.task.clone(),
        label: r.label(),
        system: system.map_or(file_name, str::to_string),
        model: String::new(),
        submission: Some(submission.display().to_string()),
        settings: None,
        questions_without_context: 0,
        missing: scores.missing.len(),
        metrics: metrics::aggregate(&scored),
    };
    write_task_files(out, &result, &scores.questions)?;
    Ok(result)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn row(id: &str, qtype: &str, batch: &str, gold: &[&[&str]]) -> GoldenRow {
        GoldenRow {
            question_id: id.into(),
            qtype: qtype.into(),
            body: String::new(),
            exact_answer: gold
                .iter()
                .map(|l| l.iter().map(|s| s.to_string()).collect())
                .collect(),
            documents: vec![],
            batch: Some(batch.into()),
            year: None,
            source_file: format!("{batch}_golden.json"),
        }
    }

    fn golden() -> Vec<GoldenRow> {
        vec![
            row("f1", "factoid", "B1", &[&["Procalcitonin", "PCT"]]),
            row("f2", "factoid", "B1", &[&["EGFR"], &["ErbB1", "HER1"]]),
            row("y1", "yesno", "B1", &[]),
            row("f3", "factoid", "B2", &[&["β-catenin"]]),
            row("f4", "factoid", "B2", &[&["TNF"]]),
        ]
    }

    fn triple(q: &ScoredQuestion) -> (f64, f64, f64) {
        (q.score.strict, q.score.lenient, q.score.reciprocal_rank)
    }

    #[test]
    fn scores_every_golden_factoid_and_counts_the_missing() {
        let sub = json!({"questions": [
            // extra fields are ignored; the first string of a slot is compared
            {"id": "f1", "type": "factoid", "ideal_answer": "x", "exact_answer": [["pct", "zzz"]]},
            {"id": "y1", "exact_answer": "yes"},                       // non-factoid: ignored
            {"id": "f2", "exact_answer": [["KRAS"], ["her1"]]},        // second gold list
            {"id": "f3", "exact_answer": [["β-Catenin "]]},            // trailing space: no match
        ]});
        let s = score_submission(&sub, &golden()).unwrap();
        let ids: Vec<&str> = s.questions.iter().map(|q| q.question_id.as_str()).collect();
        assert_eq!(ids, ["f1", "f2", "f3", "f4"]);
        assert_eq!(triple(&s.questions[0]), (1.0, 1.0, 1.0));
        assert_eq!(triple(&s.questions[1]), (0.0, 1.0, 0.5));
        assert_eq!(triple(&s.questions[2]), (0.0, 0.0, 0.0));
        assert_eq!(triple(&s.questions[3]), (0.0, 0.0, 0.0));
        assert_eq!(s.missing, ["f4"]);
        assert!(s.questions[3].missing && !s.questions[2].missing);
        assert_eq!(s.ignored, 1);
        assert!(s.over_limit.is_empty());
        let scored: Vec<(String, QuestionScore)> = s
            .questions
            .iter()
            .map(|q| (q.batch.clone(), q.score))
            .collect();
        let m = metrics::aggregate(&scored);
        // B1: strict 1/2, MRR (1 + 0.5)/2; B2: 0.
        assert_eq!(m.batches["B1"].strict_acc, 0.5);
        assert_eq!(m.mean_over_batches.mrr, 0.375);
        assert_eq!(m.all_questions.lenient_acc, 0.5);
        assert_eq!(m.all_questions.questions, 4);
    }

    #[test]
    fn unknown_ids_are_an_error_naming_them() {
        let sub = json!({"questions": [
            {"id": "f1", "exact_answer": [["PCT"]]},
            {"id": "other-task-1", "exact_answer": [["x"]]},
            {"id": "typo", "exact_answer": []},
        ]});
        let e = format!("{:#}", score_submission(&sub, &golden()).unwrap_err());
        assert!(
            e.contains("other-task-1") && e.contains("typo") && e.contains("B1, B2"),
            "{e}"
        );
    }

    #[test]
    fn malformed_submissions_are_errors() {
        let err = |sub: Value| format!("{:#}", score_submission(&sub, &golden()).unwrap_err());
        assert!(err(json!({"answers": []})).contains("`questions`"));
        assert!(err(json!({"questions": [{"exact_answer": []}]})).contains("`id`"));
        let flat = err(json!({"questions": [{"id": "f1", "exact_answer": ["PCT"]}]}));
        assert!(
            flat.contains("f1") && flat.contains("list of strings"),
            "{flat}"
        );
        assert!(err(json!({"questions": [{"id": "f1", "exact_answer": [[1]]}]})).contains("f1"));
        let twice = err(json!({"questions": [{"id": "f1"}, {"id": "f1"}]}));
        assert!(twice.contains("f1 appears more than once"), "{twice}");
        // A non-factoid's answer is not looked at; a factoid without one, or with an empty
        // list, is answered with nothing.
        let ok = json!({"questions": [
            {"id": "y1", "exact_answer": [[1, 2]]},
            {"id": "f1"},
            {"id": "f2", "exact_answer": null},
            {"id": "f3", "exact_answer": []},
            {"id": "f4", "exact_answer": [[], ["tnf"]]},
        ]});
        let s = score_submission(&ok, &golden()).unwrap();
        assert!(s.missing.is_empty());
        let strict: Vec<f64> = s.questions.iter().map(|q| q.score.strict).collect();
        assert_eq!(strict, [0.0, 0.0, 0.0, 1.0]); // f4: the empty slot takes no rank
    }

    #[test]
    fn more_than_five_answers_all_count_and_are_reported() {
        let many: Vec<Vec<&str>> = ["a", "b", "c", "d", "e", "f", "PCT"]
            .iter()
            .map(|s| vec![*s])
            .collect();
        let sub = json!({"questions": [{"id": "f1", "exact_answer": many}]});
        let s = score_submission(&sub, &golden()).unwrap();
        assert_eq!(s.over_limit, ["f1"]);
        assert_eq!(triple(&s.questions[0]), (0.0, 1.0, 1.0 / 7.0));
        assert_eq!(s.missing.len(), 3);
    }
}
