//! Scoring any BioASQ Phase B submission (`trainer eval --task TASK --submission FILE`): ours,
//! BioBERT's, another team's, with every exact-answer type in it. The file is the BioASQ Phase B
//! format, `{"questions":[{"id", "exact_answer"}, …]}`: factoid and list answers a list of items,
//! each a list of strings (`[["BRCA1"], ["TP53"]]`), yes/no answers a string (`"yes"`); other
//! fields, and summary questions, are ignored. (A PubMedQA task's submission is scored by
//! [`crate::eval::pubmedqa`].)
//!
//! The task's golden rows are selected exactly as answering selects them
//! ([`crate::eval::golden::select_golden`] with `[tasks.TASK]`). Every factoid, yes/no and list
//! question of them is scored with the official measures ([`metrics`]), each type when the
//! submission answers at least one question of it: a type it answers no question of is not scored
//! (a factoid-only submission has no yes/no measures; logged), while a question of a scored type
//! missing from the submission scores 0 and is counted in a warning. An id that is not a question
//! of the golden batches is an error naming it (a question of another task, a typo), as is an id
//! listed twice or an `exact_answer` of the wrong shape for its question's type. More than
//! [`MAX_ANSWERS`] factoid answers are scored as the official evaluator scores them (all count)
//! and counted in a warning. Writes `results.json`, `results.md` and `details.jsonl` (per
//! question: the submitted answer, gold, scores) under the output directory.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use anyhow::{Context, Result, bail};
use schemas::bioasq::{GoldenRow, qtype};
use serde::Serialize;
use serde_json::Value;

use crate::config::Resolved;
use crate::eval::candidates::MAX_ANSWERS;
use crate::eval::golden::{batch_labels, questions_of_type, task_golden};
use crate::eval::metrics::{self, Scored};
use crate::eval::results::{TaskResult, write_task_files};

/// One golden question of a scored type, scored.
#[derive(Debug, Clone, Serialize)]
pub struct ScoredQuestion {
    pub question_id: String,
    pub batch: String,
    #[serde(rename = "type")]
    pub qtype: &'static str,
    /// The submitted `exact_answer` as given; null if missing.
    pub exact_answer: Value,
    pub gold: Vec<Vec<String>>,
    /// Not in the submission (scored 0).
    pub missing: bool,
    pub score: Scored,
}

/// A submission scored against a task's golden rows.
#[derive(Debug, Clone)]
pub struct SubmissionScores {
    /// Every golden question of the scored types, in golden-table order, type by type
    /// (factoid, yes/no, list).
    pub questions: Vec<ScoredQuestion>,
    /// Golden ids of the scored types absent from the submission.
    pub missing: Vec<String>,
    /// The types scored, and those of the golden rows the submission answers no question of.
    pub scored_types: Vec<&'static str>,
    pub unanswered_types: Vec<&'static str>,
    /// Submitted factoid ids with more than [`MAX_ANSWERS`] answers.
    pub over_limit: Vec<String>,
    /// Submitted questions of the golden batches without an exact answer type (summary).
    pub ignored: usize,
}

/// How messages name a type.
pub fn type_name(t: &str) -> &str {
    match t {
        qtype::YESNO => "yes/no",
        other => other,
    }
}

/// At most 10 ids, then how many more.
pub fn some_ids(ids: &[String]) -> String {
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

/// A factoid or list `exact_answer`: absent or null = no answer; else a list of lists of strings.
pub fn answer_slots(id: &str, ea: Option<&Value>) -> Result<Vec<Vec<String>>> {
    let bad = || {
        anyhow::anyhow!(
            "submission question {id}: a factoid or list `exact_answer` must be a list of \
             answers, each a list of strings (an answer and its synonyms), e.g. [[\"BRCA1\"], \
             [\"TP53\"]]"
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

/// A yes/no `exact_answer`: absent or null = no answer; else a string.
pub fn yesno_answer(id: &str, ea: Option<&Value>) -> Result<Option<String>> {
    match ea {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => bail!(
            "submission question {id}: a yes/no `exact_answer` must be a string (\"yes\" or \
             \"no\"), found {other}"
        ),
    }
}

/// One submitted answer, read for its question's type.
enum Answer {
    Items(Vec<Vec<String>>),
    Text(Option<String>),
}

fn score(t: &str, answer: Option<&Answer>, gold: &[Vec<String>]) -> Scored {
    match (t, answer) {
        (qtype::YESNO, Some(Answer::Text(a))) => {
            Scored::YesNo(metrics::score_yesno(a.as_deref(), gold))
        }
        (qtype::YESNO, _) => Scored::YesNo(metrics::score_yesno(None, gold)),
        (qtype::LIST, Some(Answer::Items(a))) => Scored::List(metrics::score_list(a, gold)),
        (qtype::LIST, _) => Scored::List(metrics::ListScore::ZERO),
        (_, Some(Answer::Items(a))) => Scored::Factoid(metrics::score_slots(a, gold)),
        (_, _) => Scored::Factoid(metrics::QuestionScore::ZERO),
    }
}

/// Score `sub` (a parsed submission) against the task's golden rows (as
/// [`crate::eval::golden::select_golden`] returns them).
pub fn score_submission(sub: &Value, golden: &[GoldenRow]) -> Result<SubmissionScores> {
    let qtype_of: HashMap<&str, &str> = golden
        .iter()
        .map(|g| (g.question_id.as_str(), g.qtype.as_str()))
        .collect();
    let mut answers: HashMap<&str, (Answer, Value)> = HashMap::new();
    let mut unknown: Vec<String> = Vec::new();
    let mut over_limit = Vec::new();
    let mut ignored = 0;
    for (id, exact_answer) in submission_questions(sub)? {
        let answer = match qtype_of.get(id) {
            None => {
                unknown.push(id.to_string());
                continue;
            }
            Some(&qtype::YESNO) => Answer::Text(yesno_answer(id, exact_answer)?),
            Some(&(qtype::FACTOID | qtype::LIST)) => {
                let slots = answer_slots(id, exact_answer)?;
                if qtype_of[id] == qtype::FACTOID && slots.len() > MAX_ANSWERS {
                    over_limit.push(id.to_string());
                }
                Answer::Items(slots)
            }
            Some(_) => {
                ignored += 1;
                continue;
            }
        };
        answers.insert(id, (answer, exact_answer.cloned().unwrap_or(Value::Null)));
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
    let mut out = SubmissionScores {
        questions: Vec::new(),
        missing: Vec::new(),
        scored_types: Vec::new(),
        unanswered_types: Vec::new(),
        over_limit,
        ignored,
    };
    for t in qtype::EXACT {
        let of_type = questions_of_type(golden, t)?;
        if of_type.is_empty() {
            continue;
        }
        if !of_type
            .iter()
            .any(|g| answers.contains_key(g.question_id.as_str()))
        {
            out.unanswered_types.push(t);
            continue;
        }
        out.scored_types.push(t);
        for g in of_type {
            let given = answers.get(g.question_id.as_str());
            if given.is_none() {
                out.missing.push(g.question_id.clone());
            }
            out.questions.push(ScoredQuestion {
                question_id: g.question_id.clone(),
                batch: g.batch_label().to_string(),
                qtype: t,
                exact_answer: given.map_or(Value::Null, |(_, v)| v.clone()),
                gold: g.exact_answer.clone(),
                missing: given.is_none(),
                score: score(t, given.map(|(a, _)| a), &g.exact_answer),
            });
        }
    }
    Ok(out)
}

/// Score the submission file `submission` on task `r` (its golden rows under `data_dir`) and
/// write `results.json`, `results.md`, `details.jsonl` under `out`. `system` labels the
/// column (default: the file name). A PubMedQA task is scored by
/// [`crate::eval::pubmedqa::score_task`].
pub fn score_task(
    r: &Resolved,
    data_dir: &Path,
    submission: &Path,
    system: Option<&str>,
    out: &Path,
) -> Result<TaskResult> {
    if r.kinds().is_pubmedqa() {
        return crate::eval::pubmedqa::score_task(r, data_dir, submission, system, out);
    }
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
    let missing: HashSet<&str> = scores.missing.iter().map(String::as_str).collect();
    for t in &scores.scored_types {
        let of_type: Vec<&ScoredQuestion> =
            scores.questions.iter().filter(|q| q.qtype == *t).collect();
        let absent: Vec<String> = of_type
            .iter()
            .filter(|q| missing.contains(q.question_id.as_str()))
            .map(|q| q.question_id.clone())
            .collect();
        if !absent.is_empty() {
            tracing::warn!(
                "{} of {} {} questions of {} are not in {}: scored 0 ({})",
                absent.len(),
                of_type.len(),
                type_name(t),
                r.task,
                submission.display(),
                some_ids(&absent)
            );
        }
    }
    for t in &scores.unanswered_types {
        tracing::info!(
            "{} answers no {} question of {}'s golden batches: {} not scored",
            submission.display(),
            type_name(t),
            r.task,
            type_name(t)
        );
    }
    if scores.questions.is_empty() {
        bail!(
            "{}: answers no factoid, yes/no or list question of {}'s golden batches",
            submission.display(),
            r.task
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
            "ignored {} summary questions of the submission",
            scores.ignored
        );
    }
    let scored: Vec<(String, Scored)> = scores
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
        metrics: metrics::aggregate(&scored).into(),
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
            row("y1", "yesno", "B1", &[&["yes"]]),
            row("l1", "list", "B1", &[&["BRCA1"], &["TP53"]]),
            row("s1", "summary", "B1", &[]),
            row("f3", "factoid", "B2", &[&["β-catenin"]]),
            row("f4", "factoid", "B2", &[&["TNF"]]),
            row("y2", "yesno", "B2", &[&["no"]]),
            row("y3", "yesno", "B2", &[&["yes"]]),
            row("l2", "list", "B2", &[&["IL-6"]]),
        ]
    }

    fn triple(q: &ScoredQuestion) -> (f64, f64, f64) {
        match q.score {
            Scored::Factoid(s) => (s.strict, s.lenient, s.reciprocal_rank),
            other => panic!("not a factoid score: {other:?}"),
        }
    }

    fn by_id<'a>(s: &'a SubmissionScores, id: &str) -> &'a ScoredQuestion {
        s.questions.iter().find(|q| q.question_id == id).unwrap()
    }

    #[test]
    fn scores_every_golden_factoid_and_counts_the_missing() {
        let sub = json!({"questions": [
            // extra fields are ignored; the first string of a slot is compared
            {"id": "f1", "type": "factoid", "ideal_answer": "x", "exact_answer": [["pct", "zzz"]]},
            {"id": "s1", "ideal_answer": "a summary"},                  // summary: ignored
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
        // No yes/no or list question answered: those types are not scored at all.
        assert_eq!(s.scored_types, ["factoid"]);
        assert_eq!(s.unanswered_types, ["yesno", "list"]);
        assert_eq!(s.ignored, 1);
        assert!(s.over_limit.is_empty());
        let scored: Vec<(String, Scored)> = s
            .questions
            .iter()
            .map(|q| (q.batch.clone(), q.score))
            .collect();
        let m = metrics::aggregate(&scored);
        // B1: strict 1/2, MRR (1 + 0.5)/2; B2: 0.
        assert_eq!(m.batches["B1"].factoid.unwrap().strict_acc, 0.5);
        assert_eq!(m.mean_over_batches.factoid.unwrap().mrr, 0.375);
        assert_eq!(m.all_questions.factoid.unwrap().lenient_acc, 0.5);
        assert_eq!(m.all_questions.factoid.unwrap().questions, 4);
        assert_eq!((m.all_questions.yesno, m.all_questions.list), (None, None));
    }

    /// Every exact-answer type of one submission: yes/no by containment, list by the entity
    /// rules, questions present without an answer and absent ones scored 0 and counted.
    #[test]
    fn yes_no_and_list_questions_of_one_submission() {
        let sub = json!({"questions": [
            {"id": "y1", "exact_answer": "YES."},
            {"id": "y2", "exact_answer": "Not sure"},       // contains "no": right
            {"id": "l1", "exact_answer": [["brca1"], ["brca1"], [" TP53"], []]},
            {"id": "l2"},                                   // present, no exact answer
            {"id": "f1", "exact_answer": [["pct"]]},
        ]});
        let s = score_submission(&sub, &golden()).unwrap();
        assert_eq!(s.scored_types, ["factoid", "yesno", "list"]);
        assert!(s.unanswered_types.is_empty());
        assert_eq!(s.missing, ["f2", "f3", "f4", "y3"]);
        let yes = |id: &str| match by_id(&s, id).score {
            Scored::YesNo(y) => y.correct,
            other => panic!("{other:?}"),
        };
        assert!(yes("y1") && yes("y2") && !yes("y3"));
        assert!(by_id(&s, "y3").missing && by_id(&s, "y3").exact_answer.is_null());
        let list = |id: &str| match by_id(&s, id).score {
            Scored::List(l) => l,
            other => panic!("{other:?}"),
        };
        // brca1 TP, brca1 again FP, " TP53" FP (not trimmed), [] dropped: P 1/3, R 1/2.
        let l1 = list("l1");
        assert_eq!((l1.tp, l1.fp, l1.fn_), (1, 2, 1));
        assert_eq!(list("l2"), metrics::ListScore::ZERO);
        assert!(!by_id(&s, "l2").missing);
        let scored: Vec<(String, Scored)> = s
            .questions
            .iter()
            .map(|q| (q.batch.clone(), q.score))
            .collect();
        let m = metrics::aggregate(&scored);
        // B1: y1 right; B2: y2 right, y3 missing. Pooled: 2 of 3.
        assert_eq!(m.batches["B1"].yesno.unwrap().yesno_acc, 1.0);
        assert_eq!(m.batches["B2"].yesno.unwrap().yesno_acc, 0.5);
        let y = m.all_questions.yesno.unwrap();
        assert!((y.yesno_acc - 2.0 / 3.0).abs() < 1e-12);
        // yes: TP 1 (y1), FP 1 (y3 missing), FN 0 -> 2/3; no: TP 1 (y2), FN 1 (y3) -> 2/3.
        assert!((y.yesno_f1_yes - 2.0 / 3.0).abs() < 1e-12);
        assert!((y.yesno_f1_no - 2.0 / 3.0).abs() < 1e-12);
        let l = m.all_questions.list.unwrap();
        assert!((l.list_precision - (1.0 / 3.0) / 2.0).abs() < 1e-12);
        assert_eq!(l.list_questions, 2);
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
        let yes_list = err(json!({"questions": [{"id": "y1", "exact_answer": ["yes"]}]}));
        assert!(
            yes_list.contains("y1") && yes_list.contains("must be a string"),
            "{yes_list}"
        );
        let list_string = err(json!({"questions": [{"id": "l1", "exact_answer": "BRCA1"}]}));
        assert!(list_string.contains("l1"), "{list_string}");
        // A summary's answer is not looked at; a factoid without one, or with an empty list,
        // is answered with nothing.
        let ok = json!({"questions": [
            {"id": "s1", "exact_answer": [[1, 2]]},
            {"id": "f1"},
            {"id": "f2", "exact_answer": null},
            {"id": "f3", "exact_answer": []},
            {"id": "f4", "exact_answer": [[], ["tnf"]]},
        ]});
        let s = score_submission(&ok, &golden()).unwrap();
        assert!(s.missing.is_empty());
        let strict: Vec<f64> = s.questions.iter().map(|q| triple(q).0).collect();
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
        // A list answer longer than 5 is no factoid over-limit.
        let long: Vec<Vec<&str>> = (0..7).map(|_| vec!["x"]).collect();
        let sub = json!({"questions": [{"id": "l1", "exact_answer": long}]});
        assert!(
            score_submission(&sub, &golden())
                .unwrap()
                .over_limit
                .is_empty()
        );
    }
}
