//! Answering BioASQ factoid test questions and writing the task's outputs.
//!
//! Every context (snippet or document row of the test examples table) of a question is a
//! prompt; beam search gives candidates with sequence log-probabilities; the candidates of
//! all contexts are cleaned, merged case-insensitively and ranked (`candidates`: a choice of
//! our system, made before the submission is written), and the top 5 are the answer list,
//! one string per answer slot. Each question is scored on exactly those slots with the
//! official measures (`metrics::score_slots`), so scoring the written `predictions.json` with
//! `trainer eval --submission` gives the same numbers. Outputs under `OUT/`:
//! `predictions.json` (BioASQ submission format), `details.jsonl` (per question: answers with
//! probabilities, gold, scores), `results.json` and `results.md` (Table 3 layout).

use crate::model::scan::ScanBackend;
use std::collections::{HashMap, HashSet};
use std::path::Path;

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokenizers::Tokenizer;

use crate::eval::candidates::{self, MAX_ANSWERS};
use crate::eval::metrics::{self, QuestionScore, TaskMetrics};
use crate::eval::results::{
    AnswerSettings, TaskResult, pretty_json, write_result_file, write_task_files,
};
use crate::eval::submission::{answer_slots, submission_questions};
use crate::model::MambaLm;
use crate::model::generate::{GenerateConfig, beam_search};
use schemas::bioasq::{Example, GoldenRow};

use crate::config::Resolved;
use crate::eval::golden::{factoid_questions, task_golden};
use crate::eval::qa::QaEncoder;
use crate::eval::token_bytes::TokenBytes;
use crate::model::hf::load_pretrained;

/// The answers to one question.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct QuestionAnswers {
    pub question_id: String,
    pub batch: String,
    /// Ranked answers (top 5) with merged probabilities.
    pub answers: Vec<(String, f64)>,
    pub gold: Vec<Vec<String>>,
    pub contexts: usize,
    pub score: QuestionScore,
}

/// Answer the task's test questions with the model in `model_dir` and score them; writes
/// `predictions.json`, `details.jsonl`, `results.json` and `results.md` under `out`. `system`
/// labels the results' column (default: the model path).
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
    let examples = schemas::bioasq::read_examples(&data_dir.join(&r.tables.test))?;
    let golden = task_golden(r, data_dir, &examples)?;
    let settings = AnswerSettings {
        beams: r.cfg.beams,
        max_new_tokens: r.cfg.max_new_tokens,
        max_len: r.cfg.max_len,
        limit: r.cfg.limit,
        max_contexts: r.cfg.max_contexts,
    };
    let answers = answer_questions(
        &model, tokenizer, r.cfg.eos, &examples, &golden, &settings, device,
    )?;
    let result = TaskResult {
        task: r.task.clone(),
        label: r.label(),
        system: system.map_or_else(|| model_dir.display().to_string(), str::to_string),
        model: model_dir.display().to_string(),
        submission: None,
        settings: Some(settings),
        questions_without_context: answers.iter().filter(|q| q.contexts == 0).count(),
        missing: 0,
        metrics: task_metrics(&answers),
    };
    write_outputs(out, &result, &answers)?;
    Ok(result)
}

/// Answer every factoid question of `golden` from its contexts in `examples`.
pub fn answer_questions<B: ScanBackend>(
    model: &MambaLm<B>,
    tokenizer: &Tokenizer,
    eos: u32,
    examples: &[Example],
    golden: &[GoldenRow],
    settings: &AnswerSettings,
    device: &B::Device,
) -> Result<Vec<QuestionAnswers>> {
    let bytes = TokenBytes::from_tokenizer(tokenizer)?;
    let gen_cfg = GenerateConfig {
        max_new_tokens: settings.max_new_tokens,
        num_beams: settings.beams,
        eos_token_id: Some(eos),
        stop_token_ids: bytes.newline_tokens(),
    };
    let enc = QaEncoder { tokenizer, eos };
    let prompt_budget = settings
        .max_len
        .checked_sub(settings.max_new_tokens)
        .filter(|&b| b > 0)
        .context("max_len must exceed max_new_tokens")?;
    let mut contexts: HashMap<&str, Vec<&Example>> = HashMap::new();
    for e in examples {
        contexts.entry(e.question_id.as_str()).or_default().push(e);
    }
    let mut questions = factoid_questions(golden)?;
    if let Some(n) = settings.limit {
        questions.truncate(n);
    }
    let n_prompts: usize = questions
        .iter()
        .map(|q| contexts.get(q.question_id.as_str()).map_or(0, Vec::len))
        .map(|n| settings.max_contexts.map_or(n, |k| n.min(k)))
        .sum();
    let bar = schemas::progress::Progress::new(
        "answering",
        n_prompts as u64,
        schemas::progress::Unit::Count("contexts"),
    );
    let mut out = Vec::with_capacity(questions.len());
    for q in questions {
        let mut ctxs = contexts
            .get(q.question_id.as_str())
            .map_or(&[][..], Vec::as_slice);
        if let Some(k) = settings.max_contexts {
            ctxs = &ctxs[..ctxs.len().min(k)];
        }
        let mut cands: Vec<(String, f64)> = Vec::new();
        for ex in ctxs {
            let (prompt, _) = enc
                .prompt(&ex.context, &ex.question, prompt_budget)
                .with_context(|| format!("prompt of test example {}", ex.id))?;
            for c in beam_search(model, &prompt, &gen_cfg, device) {
                let text = decode_answer(tokenizer, &c.tokens, &gen_cfg)?;
                cands.push((text, c.logprob));
            }
            bar.inc(1);
        }
        let ranked = candidates::merge_candidates(cands.iter().map(|(t, p)| (t.as_str(), *p)));
        let top = candidates::top_answers(&ranked);
        let score = metrics::score_question(&top, &q.exact_answer);
        out.push(QuestionAnswers {
            question_id: q.question_id.clone(),
            batch: q.batch_label().to_string(),
            answers: ranked
                .iter()
                .take(MAX_ANSWERS)
                .map(|r| (r.text.clone(), r.prob))
                .collect(),
            gold: q.exact_answer.clone(),
            contexts: ctxs.len(),
            score,
        });
    }
    bar.finish();
    Ok(out)
}

/// Text of a candidate: a final EOS dropped, special tokens skipped, cut at the first
/// newline (a newline token may carry text before its newline, e.g. "x\n").
fn decode_answer(tok: &Tokenizer, tokens: &[u32], cfg: &GenerateConfig) -> Result<String> {
    let t = match tokens.split_last() {
        Some((&last, rest)) if cfg.eos_token_id == Some(last) => rest,
        _ => tokens,
    };
    let mut s = tok
        .decode(t, true)
        .map_err(|e| anyhow::anyhow!("decoding answer tokens {t:?}: {e}"))?;
    if let Some(i) = s.find('\n') {
        s.truncate(i);
    }
    Ok(s)
}

/// BioASQ submission JSON: `{"questions":[{"id","exact_answer":[["c1"],…]}]}`.
pub fn submission_json(answers: &[QuestionAnswers]) -> Value {
    json!({
        "questions": answers.iter().map(|q| json!({
            "id": q.question_id,
            "exact_answer": q.answers.iter().map(|(a, _)| vec![a.clone()]).collect::<Vec<_>>(),
        })).collect::<Vec<_>>()
    })
}

/// Check one of our own submissions against the golden factoid ids before it is written: every
/// id present exactly once, no other id, each `exact_answer` a list (≤ 5, what our answering
/// lists and BioASQ accepts) of non-empty lists of strings. Scoring a submission
/// ([`crate::eval::submission`]) is more lenient, as the official evaluator is.
pub fn validate_submission(sub: &Value, golden_ids: &[String]) -> Result<()> {
    let expected: HashSet<&str> = golden_ids.iter().map(String::as_str).collect();
    let questions = submission_questions(sub)?;
    for (i, (id, exact_answer)) in questions.iter().enumerate() {
        if !expected.contains(id) {
            bail!("submission question {i}: id {id} is not a factoid question of the golden files");
        }
        if !exact_answer.is_some_and(Value::is_array) {
            bail!("submission question {id}: `exact_answer` is not a list");
        }
        let slots = answer_slots(id, *exact_answer)?;
        if slots.len() > MAX_ANSWERS {
            bail!(
                "submission question {id}: {} answers, at most 5 allowed",
                slots.len()
            );
        }
        if slots.iter().any(Vec::is_empty) {
            bail!("submission question {id}: an answer is not a non-empty list of strings");
        }
    }
    let seen: HashSet<&str> = questions.iter().map(|(id, _)| *id).collect();
    if let Some(missing) = golden_ids.iter().find(|id| !seen.contains(id.as_str())) {
        bail!(
            "submission: golden factoid question {missing} is missing ({} of {} present)",
            seen.len(),
            expected.len()
        );
    }
    Ok(())
}

/// Aggregate answered questions into the task's metrics.
pub fn task_metrics(answers: &[QuestionAnswers]) -> TaskMetrics {
    let scored: Vec<(String, QuestionScore)> =
        answers.iter().map(|q| (q.batch.clone(), q.score)).collect();
    metrics::aggregate(&scored)
}

/// Write `predictions.json`, `details.jsonl`, `results.json`, `results.md` under `out`.
pub fn write_outputs(out: &Path, result: &TaskResult, answers: &[QuestionAnswers]) -> Result<()> {
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let sub = submission_json(answers);
    let ids: Vec<String> = answers.iter().map(|q| q.question_id.clone()).collect();
    validate_submission(&sub, &ids)?;
    write_result_file(out, "predictions.json", &pretty_json(&sub)?)?;
    write_task_files(out, result, answers)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn submission_validation() {
        let ids = vec!["a".to_string(), "b".to_string()];
        let ok = json!({"questions":[{"id":"b","exact_answer":[]},{"id":"a","exact_answer":[["x"],["y"]]}]});
        validate_submission(&ok, &ids).unwrap();
        let missing = json!({"questions":[{"id":"a","exact_answer":[["x"]]}]});
        assert!(
            format!("{:#}", validate_submission(&missing, &ids).unwrap_err())
                .contains("b is missing")
        );
        let twice = json!({"questions":[{"id":"a","exact_answer":[]},{"id":"a","exact_answer":[]},{"id":"b","exact_answer":[]}]});
        assert!(validate_submission(&twice, &ids).is_err());
        let flat =
            json!({"questions":[{"id":"a","exact_answer":["x"]},{"id":"b","exact_answer":[]}]});
        assert!(validate_submission(&flat, &ids).is_err());
        let extra = json!({"questions":[{"id":"a","exact_answer":[]},{"id":"b","exact_answer":[]},{"id":"c","exact_answer":[]}]});
        assert!(validate_submission(&extra, &ids).is_err());
    }
}
