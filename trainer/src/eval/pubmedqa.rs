//! PubMedQA (pubmedqa/pubmedqa, PQA-L): answering its test questions and scoring any submission
//! of it, as its `evaluation.py` does.
//!
//! - **Answering** ([`answer_task`]): each test question is one prompt (`items::pubmedqa_item`:
//!   the contexts as `LABEL: text`, plus the long answer in the reasoning-free setting); the
//!   answer is the label — `yes`, `no` or `maybe` — whose continuation (`" yes"` + EOS, the
//!   training target) the model finds most likely ([`crate::eval::answer::continuation_logprobs`];
//!   the choice is explained in [`crate::eval::answer`]). Writes `predictions.json` in the official
//!   format `{"PMID": "label", …}`, `details.jsonl` (per question: the labels' log-likelihoods,
//!   the answer, the gold label), `results.json` and `results.md`.
//! - **Scoring** ([`score_task`], `trainer eval --task T --submission FILE`): `FILE` is the official
//!   format; its PMIDs must be exactly the test table's (missing or extra PMIDs are an error
//!   naming them, as `evaluation.py`'s assertion), every value a string (any string is a label, as
//!   for sklearn; one outside yes/no/maybe is warned about). Accuracy and macro-F1 are
//!   [`metrics::pubmedqa_metrics`]: sklearn's `accuracy_score` and `f1_score(average="macro")`
//!   over the labels occurring in the gold labels or the predictions. `results.json` holds them
//!   as `metrics.accuracy` and `metrics.macro_f1` (and each label's F1 under `metrics.labels`).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;

use anyhow::{Context, Result, bail};
use serde::Serialize;
use serde_json::Value;

use crate::config::Resolved;
use crate::eval::answer::{best_label, continuation_logprobs};
use crate::eval::items::pubmedqa_item;
use crate::eval::metrics;
use crate::eval::qa::QaEncoder;
use crate::eval::results::{
    AnswerSettings, ResultMetrics, TaskResult, pretty_json, write_result_file, write_task_files,
};
use crate::eval::submission::some_ids;
use crate::model::hf::load_pretrained;
use crate::model::scan::ScanBackend;

/// One answered PubMedQA question (a `details.jsonl` line).
#[derive(Debug, Clone, Serialize)]
pub struct PubmedqaAnswer {
    pub pmid: u64,
    pub answer: String,
    pub gold: String,
    pub correct: bool,
    /// Each label's continuation log-likelihood.
    pub logprobs: BTreeMap<String, f64>,
    /// Context tokens cut from the left to fit `max_len`.
    pub context_cut: usize,
}

/// One question of a scored submission (a `details.jsonl` line).
#[derive(Debug, Clone, Serialize)]
pub struct ScoredPrediction {
    pub pmid: String,
    pub prediction: String,
    pub gold: String,
    pub correct: bool,
}

/// The official submission: `{"PMID": "label"}` (keys sorted when written).
pub fn submission_json(answers: &[PubmedqaAnswer]) -> Value {
    Value::Object(
        answers
            .iter()
            .map(|a| (a.pmid.to_string(), Value::String(a.answer.clone())))
            .collect(),
    )
}

/// Answer the PubMedQA task `r`'s test questions with the model in `model_dir` (module docs).
pub fn answer_task<B: ScanBackend>(
    r: &Resolved,
    model_dir: &Path,
    data_dir: &Path,
    tokenizer: &tokenizers::Tokenizer,
    out: &Path,
    system: Option<&str>,
    device: &B::Device,
) -> Result<TaskResult> {
    let (_, model) = load_pretrained::<B>(model_dir, device)?;
    let mut rows = schemas::pubmedqa::read(&data_dir.join(&r.tables.test))?;
    rows.truncate(r.cfg.limit.unwrap_or(usize::MAX));
    let setting = r.tables.setting.unwrap_or_default();
    let enc = QaEncoder {
        tokenizer,
        eos: r.cfg.eos,
    };
    let labels = schemas::pubmedqa::LABELS;
    let targets: Vec<Vec<u32>> = labels
        .iter()
        .map(|l| enc.target(l))
        .collect::<Result<_>>()?;
    let budget = r
        .cfg
        .max_len
        .checked_sub(targets.iter().map(Vec::len).max().unwrap_or(0))
        .filter(|&b| b > 0)
        .context("max_len must exceed the label continuations")?;
    let bar = schemas::progress::Progress::new(
        "answering PubMedQA",
        rows.len() as u64,
        schemas::progress::Unit::Count("questions"),
    );
    let mut answers = Vec::with_capacity(rows.len());
    for row in &rows {
        let item = pubmedqa_item(row, setting);
        let (prompt, cut) = enc
            .item_prompt(&item, budget)
            .with_context(|| format!("prompt of PubMedQA question {}", row.pmid))?;
        let lps = continuation_logprobs(&model, &prompt, &targets, device);
        let answer = best_label(&labels, &lps);
        answers.push(PubmedqaAnswer {
            pmid: row.pmid,
            answer: answer.to_string(),
            gold: row.label.clone(),
            correct: answer == row.label,
            logprobs: labels
                .iter()
                .zip(&lps)
                .map(|(l, lp)| (l.to_string(), *lp))
                .collect(),
            context_cut: cut,
        });
        bar.inc(1);
    }
    bar.finish();
    let gold: Vec<&str> = answers.iter().map(|a| a.gold.as_str()).collect();
    let pred: Vec<&str> = answers.iter().map(|a| a.answer.as_str()).collect();
    let result = TaskResult {
        task: r.task.clone(),
        label: r.label(),
        system: system.map_or_else(|| model_dir.display().to_string(), str::to_string),
        model: model_dir.display().to_string(),
        submission: None,
        settings: Some(AnswerSettings {
            beams: 1,
            max_new_tokens: 0,
            max_len: r.cfg.max_len,
            limit: r.cfg.limit,
            max_contexts: None,
            list_answers: None,
            setting: Some(
                serde_json::to_value(setting)?
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            ),
        }),
        questions_without_context: rows.iter().filter(|r| r.contexts.is_empty()).count(),
        missing: 0,
        metrics: ResultMetrics::Pubmedqa(metrics::pubmedqa_metrics(&gold, &pred)),
    };
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    write_result_file(
        out,
        "predictions.json",
        &pretty_json(&submission_json(&answers))?,
    )?;
    write_task_files(out, &result, &answers)?;
    Ok(result)
}

/// Score the PubMedQA submission `sub` (parsed) against the gold labels `(pmid, label)` of the
/// test table (module docs); returns the scored questions in table order.
pub fn score_predictions(sub: &Value, gold: &[(String, String)]) -> Result<Vec<ScoredPrediction>> {
    let Some(map) = sub.as_object() else {
        bail!("expected a JSON object {{\"PMID\": \"yes\" | \"no\" | \"maybe\", …}}");
    };
    let gold_ids: HashSet<&str> = gold.iter().map(|(p, _)| p.as_str()).collect();
    let mut missing: Vec<String> = gold
        .iter()
        .filter(|(p, _)| !map.contains_key(p))
        .map(|(p, _)| p.clone())
        .collect();
    let mut extra: Vec<String> = map
        .keys()
        .filter(|k| !gold_ids.contains(k.as_str()))
        .cloned()
        .collect();
    if !missing.is_empty() || !extra.is_empty() {
        missing.sort();
        extra.sort();
        let mut parts = Vec::new();
        if !missing.is_empty() {
            parts.push(format!(
                "{} test PMIDs missing ({})",
                missing.len(),
                some_ids(&missing)
            ));
        }
        if !extra.is_empty() {
            parts.push(format!(
                "{} PMIDs not in the test set ({})",
                extra.len(),
                some_ids(&extra)
            ));
        }
        bail!(
            "predict all and only the {} test questions: {}",
            gold.len(),
            parts.join("; ")
        );
    }
    gold.iter()
        .map(|(pmid, g)| {
            let Some(p) = map[pmid].as_str() else {
                bail!("PMID {pmid}: the prediction {} is not a string", map[pmid]);
            };
            Ok(ScoredPrediction {
                pmid: pmid.clone(),
                prediction: p.to_string(),
                gold: g.clone(),
                correct: p == g,
            })
        })
        .collect()
}

/// Score the submission file `submission` on the PubMedQA task `r` and write `results.json`,
/// `results.md`, `details.jsonl` under `out`; `system` labels the column (default: the file
/// name).
pub fn score_task(
    r: &Resolved,
    data_dir: &Path,
    submission: &Path,
    system: Option<&str>,
    out: &Path,
) -> Result<TaskResult> {
    let rows = schemas::pubmedqa::read(&data_dir.join(&r.tables.test))?;
    let gold: Vec<(String, String)> = rows
        .iter()
        .map(|r| (r.pmid.to_string(), r.label.clone()))
        .collect();
    let text = std::fs::read(submission)
        .with_context(|| format!("reading submission {}", submission.display()))?;
    let sub: Value = serde_json::from_slice(&text)
        .with_context(|| format!("{}: not JSON", submission.display()))?;
    let scored = score_predictions(&sub, &gold)
        .with_context(|| format!("scoring {} on {}", submission.display(), r.task))?;
    let mut odd: HashMap<&str, usize> = HashMap::new();
    for s in &scored {
        if !schemas::pubmedqa::LABELS.contains(&s.prediction.as_str()) {
            *odd.entry(s.prediction.as_str()).or_default() += 1;
        }
    }
    if !odd.is_empty() {
        tracing::warn!(
            "{}: predictions that are not yes/no/maybe count as labels of their own (as in \
             evaluation.py): {odd:?}",
            submission.display()
        );
    }
    let g: Vec<&str> = scored.iter().map(|s| s.gold.as_str()).collect();
    let p: Vec<&str> = scored.iter().map(|s| s.prediction.as_str()).collect();
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
        missing: 0,
        metrics: ResultMetrics::Pubmedqa(metrics::pubmedqa_metrics(&g, &p)),
    };
    write_task_files(out, &result, &scored)?;
    Ok(result)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn gold() -> Vec<(String, String)> {
        [("1", "yes"), ("2", "no"), ("3", "maybe"), ("4", "yes")]
            .iter()
            .map(|(p, l)| (p.to_string(), l.to_string()))
            .collect()
    }

    #[test]
    fn predictions_are_scored_in_table_order() {
        let sub = json!({"4": "yes", "3": "no", "2": "no", "1": "no"});
        let s = score_predictions(&sub, &gold()).unwrap();
        assert_eq!(
            s.iter().map(|x| x.pmid.as_str()).collect::<Vec<_>>(),
            ["1", "2", "3", "4"]
        );
        let g: Vec<&str> = s.iter().map(|x| x.gold.as_str()).collect();
        let p: Vec<&str> = s.iter().map(|x| x.prediction.as_str()).collect();
        let m = metrics::pubmedqa_metrics(&g, &p);
        // yes: TP 1, FN 1 -> 2/3; no: TP 1, FP 2 -> 2/4; maybe: never predicted -> 0.
        assert!((m.accuracy - 0.5).abs() < 1e-12);
        assert!((m.macro_f1 - (2.0 / 3.0 + 0.5 + 0.0) / 3.0).abs() < 1e-12);
    }

    #[test]
    fn missing_and_extra_pmids_are_errors_naming_them() {
        let e = |sub: Value| format!("{:#}", score_predictions(&sub, &gold()).unwrap_err());
        let missing = e(json!({"1": "yes", "2": "no"}));
        assert!(missing.contains("2 test PMIDs missing (3, 4)"), "{missing}");
        let extra = e(json!({"1": "yes", "2": "no", "3": "no", "4": "yes", "99": "no"}));
        assert!(
            extra.contains("1 PMIDs not in the test set (99)"),
            "{extra}"
        );
        let not_string = e(json!({"1": "yes", "2": "no", "3": 1, "4": "yes"}));
        assert!(not_string.contains("PMID 3"), "{not_string}");
        assert!(e(json!(["yes"])).contains("JSON object"));
        // Any string is a label of its own, as for sklearn.
        let odd = score_predictions(
            &json!({"1": "Yes", "2": "no", "3": "maybe", "4": "yes"}),
            &gold(),
        )
        .unwrap();
        assert!(!odd[0].correct && odd[1].correct);
    }
}
