//! Answering a task's test questions and writing the task's outputs: BioASQ factoid, yes/no and
//! list questions here, PubMedQA in [`crate::eval::pubmedqa`]. Each question is scored on exactly
//! what the written submission says (the official measures, [`metrics`]), so scoring the written
//! `predictions.json` with `trainer eval --submission` gives the same numbers.
//!
//! Every context (snippet or document row of the test examples table) of a question is a prompt
//! ([`crate::eval::qa`]); how the contexts' outputs become one answer depends on the type:
//!
//! - **Factoid**: beam search per context gives candidates with sequence log-probabilities; the
//!   candidates of all contexts are cleaned, merged case-insensitively and ranked (`candidates`:
//!   a choice of our system, made before the submission is written), and the top 5 are the
//!   answer list, one string per answer slot.
//! - **Yes/no** (and PubMedQA's yes/no/maybe): no generation. For each label the model's
//!   log-likelihood of the label's continuation — exactly the target training writes, `" yes"` +
//!   EOS — is computed after the prompt ([`continuation_logprobs`]), summed over the question's
//!   contexts (the product of the per-context likelihoods), and the label with the highest sum is
//!   the answer (on a tie the first label, `yes`). Why: the answer is always a valid label (free
//!   generation can say anything, and the evaluator reads anything without "yes" or "no" as
//!   wrong), it needs one prompt pass per context plus one step per extra target token, and it is
//!   deterministic. The alternatives — generating and reading the text with the evaluator's
//!   containment rule; normalizing by length (the labels are one token each with GPT-NeoX, so it
//!   would change nothing); calibrating by each label's likelihood without the context (PMI) — are
//!   not used. A question without a context is answered from the question alone (an empty
//!   context).
//! - **List**: beam search per context; the best continuation of each context is split at `;`
//!   into entities (cleaned like factoid candidates, `candidates::clean_answer`). Stopping rule:
//!   a continuation ends at EOS, a newline or `max_new_tokens`; when it ran into
//!   `max_new_tokens`, its last entity is cut off mid-way and is dropped unless it is the only
//!   one. The entities of all contexts are merged case-insensitively with the continuations'
//!   probabilities summed, ranked, and the first `list_answers` (`[finetune]`, default 5; the
//!   median BioASQ list has 3 entities) are the answer, one entity per item.
//!
//! Outputs under `OUT/`: `predictions.json` (the BioASQ submission, every answered type),
//! `details.jsonl` (per question: answers with probabilities or label log-likelihoods, gold,
//! scores), `results.json` and `results.md`.

use crate::model::scan::ScanBackend;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;

use anyhow::{Context, Result, bail};
use burn::tensor::activation::log_softmax;
use burn::tensor::{Int, Tensor, TensorData};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokenizers::Tokenizer;

use crate::eval::candidates::{self, MAX_ANSWERS};
use crate::eval::metrics::{self, ListScore, QuestionScore, Scored, TaskMetrics, YesNoScore};
use crate::eval::results::{
    AnswerSettings, TaskResult, pretty_json, write_result_file, write_task_files,
};
use crate::eval::submission::{answer_slots, submission_questions, type_name, yesno_answer};
use crate::model::MambaLm;
use crate::model::generate::{GenerateConfig, beam_search};
use schemas::bioasq::{Example, GoldenRow, qtype};

use crate::config::{Resolved, TaskKind};
use crate::eval::golden::{questions_of_type, task_golden};
use crate::eval::qa::{LIST_SEPARATOR, QaEncoder};
use crate::eval::token_bytes::TokenBytes;
use crate::model::hf::load_pretrained;

/// The answers to one factoid question.
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

/// The answer to one yes/no question.
#[derive(Debug, Clone, Serialize)]
pub struct YesNoAnswer {
    pub question_id: String,
    pub batch: String,
    /// `yes` or `no`.
    pub answer: String,
    /// Each label's continuation log-likelihood, summed over the contexts.
    pub logprobs: BTreeMap<String, f64>,
    pub gold: Vec<Vec<String>>,
    pub contexts: usize,
    pub score: YesNoScore,
}

/// The answer to one list question.
#[derive(Debug, Clone, Serialize)]
pub struct ListAnswer {
    pub question_id: String,
    pub batch: String,
    /// The entities submitted, ranked, with merged probabilities.
    pub answers: Vec<(String, f64)>,
    pub gold: Vec<Vec<String>>,
    pub contexts: usize,
    pub score: ListScore,
}

/// One answered question of any BioASQ type (a `details.jsonl` line, tagged by `type`).
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Answered {
    Factoid(QuestionAnswers),
    #[serde(rename = "yesno")]
    YesNo(YesNoAnswer),
    List(ListAnswer),
}

impl Answered {
    pub fn question_id(&self) -> &str {
        match self {
            Answered::Factoid(q) => &q.question_id,
            Answered::YesNo(q) => &q.question_id,
            Answered::List(q) => &q.question_id,
        }
    }
    pub fn qtype(&self) -> &'static str {
        match self {
            Answered::Factoid(_) => qtype::FACTOID,
            Answered::YesNo(_) => qtype::YESNO,
            Answered::List(_) => qtype::LIST,
        }
    }
    pub fn batch(&self) -> &str {
        match self {
            Answered::Factoid(q) => &q.batch,
            Answered::YesNo(q) => &q.batch,
            Answered::List(q) => &q.batch,
        }
    }
    pub fn contexts(&self) -> usize {
        match self {
            Answered::Factoid(q) => q.contexts,
            Answered::YesNo(q) => q.contexts,
            Answered::List(q) => q.contexts,
        }
    }
    pub fn score(&self) -> Scored {
        match self {
            Answered::Factoid(q) => Scored::Factoid(q.score),
            Answered::YesNo(q) => Scored::YesNo(q.score),
            Answered::List(q) => Scored::List(q.score),
        }
    }
    /// The `exact_answer` the submission holds: factoid and list `[["a"], ["b"]]`, yes/no `"yes"`.
    pub fn exact_answer(&self) -> Value {
        let items = |a: &[(String, f64)]| Value::Array(a.iter().map(|(t, _)| json!([t])).collect());
        match self {
            Answered::Factoid(q) => items(&q.answers),
            Answered::YesNo(q) => json!(q.answer),
            Answered::List(q) => items(&q.answers),
        }
    }
}

/// Answer the task's test questions with the model in `model_dir` and score them; writes
/// `predictions.json`, `details.jsonl`, `results.json` and `results.md` under `out`. `system`
/// labels the results' column (default: the model path). The task's kinds say which questions
/// are answered (a PubMedQA task is answered by [`crate::eval::pubmedqa::answer_task`]).
pub fn answer_task<B: ScanBackend>(
    r: &Resolved,
    model_dir: &Path,
    data_dir: &Path,
    tokenizer: &tokenizers::Tokenizer,
    out: &Path,
    system: Option<&str>,
    device: &B::Device,
) -> Result<TaskResult> {
    if r.kinds().is_pubmedqa() {
        return crate::eval::pubmedqa::answer_task::<B>(
            r, model_dir, data_dir, tokenizer, out, system, device,
        );
    }
    let (_, model) = load_pretrained::<B>(model_dir, device)?;
    let examples = schemas::bioasq::read_examples(&data_dir.join(&r.tables.test))?;
    let golden = task_golden(r, data_dir, &examples)?;
    let settings = AnswerSettings {
        beams: r.cfg.beams,
        max_new_tokens: r.cfg.max_new_tokens,
        max_len: r.cfg.max_len,
        limit: r.cfg.limit,
        max_contexts: r.cfg.max_contexts,
        list_answers: r
            .kinds()
            .contains(TaskKind::List)
            .then_some(r.cfg.list_answers),
        setting: None,
    };
    let mut answered: Vec<Answered> = Vec::new();
    // In the scorer's order (factoid, yes/no, list), whatever the order of `kind`.
    for kind in [TaskKind::Factoid, TaskKind::Yesno, TaskKind::List] {
        if !r.kinds().contains(kind) {
            continue;
        }
        let (eos, ex, g, st) = (r.cfg.eos, &examples[..], &golden[..], &settings);
        match kind {
            TaskKind::Factoid => answered.extend(
                answer_questions(&model, tokenizer, eos, ex, g, st, device)?
                    .into_iter()
                    .map(Answered::Factoid),
            ),
            TaskKind::Yesno => answered.extend(
                answer_yesno(&model, tokenizer, eos, ex, g, st, device)?
                    .into_iter()
                    .map(Answered::YesNo),
            ),
            TaskKind::List => answered.extend(
                answer_list(&model, tokenizer, eos, ex, g, st, device)?
                    .into_iter()
                    .map(Answered::List),
            ),
            TaskKind::Pubmedqa => unreachable!("PubMedQA is answered above"),
        }
    }
    let result = TaskResult {
        task: r.task.clone(),
        label: r.label(),
        system: system.map_or_else(|| model_dir.display().to_string(), str::to_string),
        model: model_dir.display().to_string(),
        submission: None,
        settings: Some(settings),
        questions_without_context: answered.iter().filter(|q| q.contexts() == 0).count(),
        missing: 0,
        metrics: task_metrics(&answered).into(),
    };
    write_outputs(out, &result, &answered)?;
    Ok(result)
}

/// The contexts of each question: its rows of the test table, in order.
fn contexts_by_question(examples: &[Example]) -> HashMap<&str, Vec<&Example>> {
    let mut contexts: HashMap<&str, Vec<&Example>> = HashMap::new();
    for e in examples {
        contexts.entry(e.question_id.as_str()).or_default().push(e);
    }
    contexts
}

/// The first `max_contexts` contexts of `q`.
fn contexts_of<'a>(
    contexts: &'a HashMap<&str, Vec<&'a Example>>,
    q: &GoldenRow,
    settings: &AnswerSettings,
) -> &'a [&'a Example] {
    let all = contexts
        .get(q.question_id.as_str())
        .map_or(&[][..], Vec::as_slice);
    &all[..all.len().min(settings.max_contexts.unwrap_or(usize::MAX))]
}

/// The model's log-likelihood of each of `continuations` after `prompt`: one parallel pass over
/// the prompt (its recurrent cache kept), then one recurrent step per further token of each
/// continuation; the sum of the tokens' natural-log probabilities (no length normalization).
pub fn continuation_logprobs<B: ScanBackend>(
    model: &MambaLm<B>,
    prompt: &[u32],
    continuations: &[Vec<u32>],
    device: &B::Device,
) -> Vec<f64> {
    let row = |logits: Tensor<B, 2>| -> Vec<f32> {
        log_softmax(logits, 1)
            .into_data()
            .convert::<f32>()
            .to_vec::<f32>()
            .expect("f32 data")
    };
    let (logits, cache) = crate::model::generate::prefill(model, prompt, device);
    let first = row(logits);
    continuations
        .iter()
        .map(|c| {
            let Some((&t0, rest)) = c.split_first() else {
                return 0.0;
            };
            let mut lp = first[t0 as usize] as f64;
            let mut cache = cache.clone();
            let mut prev = t0;
            for &t in rest {
                let ids: Tensor<B, 1, Int> =
                    Tensor::from_data(TensorData::new(vec![prev as i64], [1]), device);
                lp += row(model.step(ids, &mut cache))[t as usize] as f64;
                prev = t;
            }
            lp
        })
        .collect()
}

/// The label with the highest log-likelihood (the first on a tie).
pub fn best_label<'a>(labels: &[&'a str], logprobs: &[f64]) -> &'a str {
    let mut best = 0;
    for (i, lp) in logprobs.iter().enumerate() {
        if *lp > logprobs[best] {
            best = i;
        }
    }
    labels[best]
}

/// Answer every yes/no question of `golden` by comparing the label continuations' summed
/// log-likelihoods over its contexts in `examples` (module docs).
pub fn answer_yesno<B: ScanBackend>(
    model: &MambaLm<B>,
    tokenizer: &Tokenizer,
    eos: u32,
    examples: &[Example],
    golden: &[GoldenRow],
    settings: &AnswerSettings,
    device: &B::Device,
) -> Result<Vec<YesNoAnswer>> {
    const LABELS: [&str; 2] = ["yes", "no"];
    let enc = QaEncoder { tokenizer, eos };
    let targets: Vec<Vec<u32>> = LABELS
        .iter()
        .map(|l| enc.target(l))
        .collect::<Result<_>>()?;
    let longest = targets.iter().map(Vec::len).max().unwrap_or(0);
    let budget = settings
        .max_len
        .checked_sub(longest)
        .filter(|&b| b > 0)
        .context("max_len must exceed the label continuations")?;
    let contexts = contexts_by_question(examples);
    let mut questions = questions_of_type(golden, qtype::YESNO)?;
    questions.truncate(settings.limit.unwrap_or(usize::MAX));
    let n_prompts: usize = questions
        .iter()
        .map(|q| contexts_of(&contexts, q, settings).len().max(1))
        .sum();
    let bar = schemas::progress::Progress::new(
        "answering yes/no",
        n_prompts as u64,
        schemas::progress::Unit::Count("contexts"),
    );
    let mut out = Vec::with_capacity(questions.len());
    for q in questions {
        let ctxs = contexts_of(&contexts, q, settings);
        let prompts: Vec<(&str, &str)> = if ctxs.is_empty() {
            vec![("", q.body.as_str())]
        } else {
            ctxs.iter()
                .map(|e| (e.context.as_str(), e.question.as_str()))
                .collect()
        };
        let mut sums = vec![0.0f64; LABELS.len()];
        for (context, question) in prompts {
            let (prompt, _) = enc
                .prompt(context, question, budget)
                .with_context(|| format!("prompt of yes/no question {}", q.question_id))?;
            for (s, lp) in sums
                .iter_mut()
                .zip(continuation_logprobs(model, &prompt, &targets, device))
            {
                *s += lp;
            }
            bar.inc(1);
        }
        let answer = best_label(&LABELS, &sums);
        out.push(YesNoAnswer {
            question_id: q.question_id.clone(),
            batch: q.batch_label().to_string(),
            answer: answer.to_string(),
            logprobs: LABELS
                .iter()
                .zip(&sums)
                .map(|(l, s)| (l.to_string(), *s))
                .collect(),
            gold: q.exact_answer.clone(),
            contexts: ctxs.len(),
            score: metrics::score_yesno(Some(answer), &q.exact_answer),
        });
    }
    bar.finish();
    Ok(out)
}

/// The entities of one list continuation: its text split at `;`, each cleaned, empty ones
/// dropped; when the continuation did not stop (it ran into `max_new_tokens`) its last part is
/// dropped unless it is the only one.
pub fn list_entities(text: &str, stopped: bool) -> Vec<String> {
    let mut parts: Vec<&str> = text.split(LIST_SEPARATOR.trim()).collect();
    if !stopped && parts.len() > 1 {
        parts.pop();
    }
    parts
        .into_iter()
        .map(candidates::clean_answer)
        .filter(|e| !e.is_empty())
        .collect()
}

/// Answer every list question of `golden` from its contexts in `examples` (module docs: the best
/// continuation of each context, split into entities, merged, the first `list_answers` kept).
pub fn answer_list<B: ScanBackend>(
    model: &MambaLm<B>,
    tokenizer: &Tokenizer,
    eos: u32,
    examples: &[Example],
    golden: &[GoldenRow],
    settings: &AnswerSettings,
    device: &B::Device,
) -> Result<Vec<ListAnswer>> {
    let bytes = TokenBytes::from_tokenizer(tokenizer)?;
    let gen_cfg = GenerateConfig {
        max_new_tokens: settings.max_new_tokens,
        num_beams: settings.beams,
        eos_token_id: Some(eos),
        stop_token_ids: bytes.newline_tokens(),
    };
    let enc = QaEncoder { tokenizer, eos };
    let budget = prompt_budget(settings)?;
    let n_answers = settings.list_answers.unwrap_or(crate::config::LIST_ANSWERS);
    let contexts = contexts_by_question(examples);
    let mut questions = questions_of_type(golden, qtype::LIST)?;
    questions.truncate(settings.limit.unwrap_or(usize::MAX));
    let n_prompts: usize = questions
        .iter()
        .map(|q| contexts_of(&contexts, q, settings).len())
        .sum();
    let bar = schemas::progress::Progress::new(
        "answering list",
        n_prompts as u64,
        schemas::progress::Unit::Count("contexts"),
    );
    let mut out = Vec::with_capacity(questions.len());
    for q in questions {
        let ctxs = contexts_of(&contexts, q, settings);
        let mut cands: Vec<(String, f64)> = Vec::new();
        for ex in ctxs {
            let (prompt, _) = enc
                .prompt(&ex.context, &ex.question, budget)
                .with_context(|| format!("prompt of test example {}", ex.id))?;
            if let Some(best) = beam_search(model, &prompt, &gen_cfg, device).first() {
                let text = decode_answer(tokenizer, &best.tokens, &gen_cfg)?;
                for e in list_entities(&text, best.stopped) {
                    cands.push((e, best.logprob));
                }
            }
            bar.inc(1);
        }
        let ranked = candidates::merge_candidates(cands.iter().map(|(t, p)| (t.as_str(), *p)));
        let answers: Vec<(String, f64)> = ranked
            .into_iter()
            .take(n_answers)
            .map(|r| (r.text, r.prob))
            .collect();
        let items: Vec<Vec<&str>> = answers.iter().map(|(a, _)| vec![a.as_str()]).collect();
        out.push(ListAnswer {
            question_id: q.question_id.clone(),
            batch: q.batch_label().to_string(),
            score: metrics::score_list(&items, &q.exact_answer),
            answers,
            gold: q.exact_answer.clone(),
            contexts: ctxs.len(),
        });
    }
    bar.finish();
    Ok(out)
}

/// Prompt tokens left for generation: `max_len - max_new_tokens`.
fn prompt_budget(settings: &AnswerSettings) -> Result<usize> {
    settings
        .max_len
        .checked_sub(settings.max_new_tokens)
        .filter(|&b| b > 0)
        .context("max_len must exceed max_new_tokens")
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
    let prompt_budget = prompt_budget(settings)?;
    let contexts = contexts_by_question(examples);
    let mut questions = questions_of_type(golden, qtype::FACTOID)?;
    if let Some(n) = settings.limit {
        questions.truncate(n);
    }
    let n_prompts: usize = questions
        .iter()
        .map(|q| contexts_of(&contexts, q, settings).len())
        .sum();
    let bar = schemas::progress::Progress::new(
        "answering factoid",
        n_prompts as u64,
        schemas::progress::Unit::Count("contexts"),
    );
    let mut out = Vec::with_capacity(questions.len());
    for q in questions {
        let ctxs = contexts_of(&contexts, q, settings);
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

/// BioASQ submission JSON: `{"questions":[{"id","exact_answer"}]}`, factoid and list answers
/// `[["a"], …]`, yes/no answers `"yes"`/`"no"`.
pub fn submission_json(answers: &[Answered]) -> Value {
    json!({
        "questions": answers.iter().map(|q| json!({
            "id": q.question_id(),
            "exact_answer": q.exact_answer(),
        })).collect::<Vec<_>>()
    })
}

/// Check one of our own submissions against the golden questions it answers, `(id, type)`,
/// before it is written: every id present exactly once, no other id; factoid answers a list
/// (≤ 5, what our answering lists and BioASQ accepts) of non-empty lists of strings, list
/// answers a list of non-empty lists of strings, yes/no answers `"yes"` or `"no"`. Scoring a
/// submission ([`crate::eval::submission`]) is more lenient, as the official evaluator is.
pub fn validate_submission(sub: &Value, golden: &[(&str, &str)]) -> Result<()> {
    let expected: HashMap<&str, &str> = golden.iter().copied().collect();
    let questions = submission_questions(sub)?;
    for (i, (id, exact_answer)) in questions.iter().enumerate() {
        let Some(&t) = expected.get(id) else {
            bail!("submission question {i}: id {id} is not a question of the golden files");
        };
        if t == qtype::YESNO {
            match yesno_answer(id, *exact_answer)?.as_deref() {
                Some("yes" | "no") => continue,
                other => bail!("submission question {id}: yes/no answer {other:?}"),
            }
        }
        if !exact_answer.is_some_and(Value::is_array) {
            bail!("submission question {id}: `exact_answer` is not a list");
        }
        let slots = answer_slots(id, *exact_answer)?;
        if t == qtype::FACTOID && slots.len() > MAX_ANSWERS {
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
    if let Some((missing, t)) = golden.iter().find(|(id, _)| !seen.contains(id)) {
        bail!(
            "submission: golden {} question {missing} is missing ({} of {} present)",
            type_name(t),
            seen.len(),
            expected.len()
        );
    }
    Ok(())
}

/// Aggregate answered questions into the task's metrics.
pub fn task_metrics(answers: &[Answered]) -> TaskMetrics {
    let scored: Vec<(String, Scored)> = answers
        .iter()
        .map(|q| (q.batch().to_string(), q.score()))
        .collect();
    metrics::aggregate(&scored)
}

/// Write `predictions.json`, `details.jsonl`, `results.json`, `results.md` under `out`.
pub fn write_outputs(out: &Path, result: &TaskResult, answers: &[Answered]) -> Result<()> {
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let sub = submission_json(answers);
    let ids: Vec<(&str, &str)> = answers
        .iter()
        .map(|q| (q.question_id(), q.qtype()))
        .collect();
    validate_submission(&sub, &ids)?;
    write_result_file(out, "predictions.json", &pretty_json(&sub)?)?;
    write_task_files(out, result, answers)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn submission_validation() {
        let ids = [("a", "factoid"), ("b", "factoid")];
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
        // yes/no answers are "yes" or "no"; list answers may be longer than 5.
        let typed = [("y", "yesno"), ("l", "list")];
        let seven: Vec<Vec<String>> = (0..7).map(|i| vec![format!("e{i}")]).collect();
        let ok =
            json!({"questions":[{"id":"y","exact_answer":"no"},{"id":"l","exact_answer":seven}]});
        validate_submission(&ok, &typed).unwrap();
        let maybe =
            json!({"questions":[{"id":"y","exact_answer":"maybe"},{"id":"l","exact_answer":[]}]});
        assert!(validate_submission(&maybe, &typed).is_err());
        let list_y =
            json!({"questions":[{"id":"y","exact_answer":["yes"]},{"id":"l","exact_answer":[]}]});
        assert!(validate_submission(&list_y, &typed).is_err());
    }

    #[test]
    fn list_entities_follow_the_stopping_rule() {
        assert_eq!(
            list_entities("TP53; BRCA1;EGFR.", true),
            ["TP53", "BRCA1", "EGFR"]
        );
        // Ran into max_new_tokens: the last part is cut off, dropped unless it is alone.
        assert_eq!(list_entities("TP53; BRCA1; EG", false), ["TP53", "BRCA1"]);
        assert_eq!(list_entities("TP5", false), ["TP5"]);
        assert_eq!(list_entities(" ; ;", true), Vec::<String>::new());
    }

    #[test]
    fn best_label_takes_the_highest_and_the_first_on_a_tie() {
        assert_eq!(best_label(&["yes", "no"], &[-2.0, -1.0]), "no");
        assert_eq!(
            best_label(&["yes", "no", "maybe"], &[-1.0, -1.0, -3.0]),
            "yes"
        );
    }

    /// The continuation log-likelihood equals the sum of the next-token log-probabilities of a
    /// full forward pass over prompt + continuation (the recurrent steps are exact).
    #[test]
    fn continuation_logprobs_match_a_full_forward_pass() {
        type B = burn::backend::NdArray<f32>;
        let dev = Default::default();
        let mut c = crate::MambaConfig::new(40, 16, 2);
        c.state_size = 4;
        let model = c.init_seeded::<B>(&dev, 3);
        let prompt = [5u32, 9, 2, 31, 7];
        let conts = vec![vec![11u32, 0], vec![3u32], vec![17u32, 4, 0]];
        let got = continuation_logprobs(&model, &prompt, &conts, &dev);
        for (cont, lp) in conts.iter().zip(&got) {
            let ids: Vec<u32> = prompt.iter().chain(cont).copied().collect();
            let t: Tensor<B, 2, Int> = Tensor::from_data(
                TensorData::new(
                    ids.iter().map(|&x| x as i64).collect::<Vec<_>>(),
                    [1, ids.len()],
                ),
                &dev,
            );
            let lsm = log_softmax(model.forward(t), 2)
                .into_data()
                .convert::<f32>()
                .to_vec::<f32>()
                .unwrap();
            let v = 40;
            let want: f64 = (0..cont.len())
                .map(|k| {
                    let pos = prompt.len() - 1 + k;
                    lsm[pos * v + cont[k] as usize] as f64
                })
                .sum();
            assert!((lp - want).abs() < 1e-4, "{cont:?}: {lp} vs {want}");
        }
    }
}
