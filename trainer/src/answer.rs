//! Answering BioASQ factoid test questions and writing the task's outputs.
//!
//! Every context (snippet or document row of the test examples table) of a question is a
//! prompt; beam search gives candidates with sequence log-probabilities; the candidates of
//! all contexts are cleaned, merged case-insensitively and ranked (`metrics`), and the top 5
//! are the answer list. Outputs under `OUT/`: `predictions.json` (BioASQ submission format),
//! `details.jsonl` (per question: answers with probabilities, gold, scores),
//! `results.json` and `results.md` (Table 3 layout).

use crate::scan::ScanBackend;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokenizers::Tokenizer;

use crate::generate::{GenerateConfig, beam_search};
use crate::metrics::{self, QuestionScore, TaskMetrics};
use crate::model::MambaLm;
use crate::qa::QaEncoder;
use schemas::bioasq::{Example, GoldenRow};
use crate::token_bytes::TokenBytes;

/// Decoding settings of the answering step.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AnswerSettings {
    pub beams: usize,
    pub max_new_tokens: usize,
    /// Prompt + answer budget in tokens; contexts are cut from the left to fit.
    pub max_len: usize,
    /// Answer only the first N factoid questions (tests, demos); `None` = all.
    pub limit: Option<usize>,
    /// Use at most K contexts per question (tests, demos); `None` = all.
    #[serde(default)]
    pub max_contexts: Option<usize>,
}

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

/// The factoid questions of `golden`, each once, in table order (a repeated id is an
/// error: the submission must list every id exactly once).
pub fn factoid_questions(golden: &[GoldenRow]) -> Result<Vec<&GoldenRow>> {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for g in golden.iter().filter(|g| g.qtype == "factoid") {
        if !seen.insert(g.question_id.as_str()) {
            bail!(
                "factoid question {} appears twice in the golden table",
                g.question_id
            );
        }
        out.push(g);
    }
    Ok(out)
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
        let ranked = metrics::merge_candidates(cands.iter().map(|(t, p)| (t.as_str(), *p)));
        let top = metrics::top_answers(&ranked);
        let score = metrics::score_question(&top, &q.exact_answer);
        out.push(QuestionAnswers {
            question_id: q.question_id.clone(),
            batch: q.batch_label().to_string(),
            answers: ranked
                .iter()
                .take(metrics::MAX_ANSWERS)
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

/// Check a submission against the golden factoid ids: every id present exactly once, no
/// other id, each `exact_answer` a list (≤ 5) of non-empty lists of strings.
pub fn validate_submission(sub: &Value, golden_ids: &[String]) -> Result<()> {
    let qs = sub
        .get("questions")
        .and_then(Value::as_array)
        .context("submission: expected an object with a `questions` array")?;
    let expected: HashSet<&str> = golden_ids.iter().map(String::as_str).collect();
    let mut seen: HashSet<&str> = HashSet::new();
    for (i, q) in qs.iter().enumerate() {
        let id = q
            .get("id")
            .and_then(Value::as_str)
            .with_context(|| format!("submission question {i}: `id` is not a string"))?;
        if !expected.contains(id) {
            bail!("submission question {i}: id {id} is not a factoid question of the golden files");
        }
        if !seen.insert(id) {
            bail!("submission: id {id} appears more than once");
        }
        let ea = q
            .get("exact_answer")
            .and_then(Value::as_array)
            .with_context(|| format!("submission question {id}: `exact_answer` is not a list"))?;
        if ea.len() > metrics::MAX_ANSWERS {
            bail!(
                "submission question {id}: {} answers, at most 5 allowed",
                ea.len()
            );
        }
        for a in ea {
            let syn = a.as_array().with_context(|| {
                format!("submission question {id}: an answer is not a list of strings")
            })?;
            if syn.is_empty() || !syn.iter().all(Value::is_string) {
                bail!("submission question {id}: an answer is not a non-empty list of strings");
            }
        }
    }
    if let Some(missing) = golden_ids.iter().find(|id| !seen.contains(id.as_str())) {
        bail!(
            "submission: golden factoid question {missing} is missing ({} of {} present)",
            seen.len(),
            expected.len()
        );
    }
    Ok(())
}

/// Results of one task, as written to `results.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TaskResult {
    /// Config task name, e.g. `bioasq-4b`.
    pub task: String,
    /// Row label of Table 3, e.g. `4b`.
    pub label: String,
    pub model: String,
    pub settings: AnswerSettings,
    /// Factoid questions with no context in the test table (answered with nothing).
    pub questions_without_context: usize,
    pub metrics: TaskMetrics,
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
    let w = |name: &str, bytes: Vec<u8>| -> Result<()> {
        schemas::atomic::write_atomic(out.join(name), &bytes)
            .with_context(|| format!("writing {}", out.join(name).display()))
    };
    w("predictions.json", pretty(&sub)?)?;
    let mut details = Vec::new();
    for q in answers {
        serde_json::to_writer(&mut details, q)?;
        details.push(b'\n');
    }
    w("details.jsonl", details)?;
    w("results.json", pretty(&serde_json::to_value(result)?)?)?;
    w(
        "results.md",
        crate::report::table3_markdown(std::slice::from_ref(result)).into_bytes(),
    )?;
    Ok(())
}

fn pretty(v: &Value) -> Result<Vec<u8>> {
    let mut b = serde_json::to_vec_pretty(v)?;
    b.push(b'\n');
    Ok(b)
}

/// Counts questions of `answers` per batch (for logs).
pub fn per_batch_counts(answers: &[QuestionAnswers]) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for q in answers {
        *m.entry(q.batch.clone()).or_insert(0) += 1;
    }
    m
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
}
