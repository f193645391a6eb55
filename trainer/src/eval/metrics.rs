//! BioASQ factoid answering and its official measures, as pure functions.
//!
//! - Candidates (generated strings with sequence log-probabilities, from every context of a
//!   question) are cleaned ([`clean_answer`]), merged case-insensitively with probabilities
//!   summed ([`merge_candidates`]), and ranked; the top 5 form the answer list.
//! - Measures (BioASQ Task B factoid): strict accuracy (the first answer equals a gold
//!   synonym), lenient accuracy (one of the first 5 does), MRR (1 / rank of the first
//!   matching answer within the first 5, else 0). Matching is exact after lowercasing and
//!   trimming, as in the official evaluation. A question without answers scores 0 everywhere
//!   and still counts.
//! - Aggregation: per test batch (mean over its questions), the unweighted mean over batches
//!   (the BioASQ convention for a year's result) and the mean over all questions.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

/// How many answers a factoid submission lists and the measures look at.
pub const MAX_ANSWERS: usize = 5;

/// Trim whitespace, then trailing `.`, `,`, `;` (and the whitespace they uncover).
pub fn clean_answer(s: &str) -> String {
    s.trim()
        .trim_end_matches(|c: char| c == '.' || c == ',' || c == ';' || c.is_whitespace())
        .to_string()
}

/// The comparison key of an answer: cleaned, then lowercased.
pub fn answer_key(s: &str) -> String {
    clean_answer(s).to_lowercase()
}

/// One merged answer of a question.
#[derive(Debug, Clone, PartialEq)]
pub struct RankedAnswer {
    /// The surface form with the highest single-candidate probability (first seen on a tie).
    pub text: String,
    /// Sum of `exp(logprob)` over every candidate with this key.
    pub prob: f64,
}

/// Clean, merge case-insensitively (probabilities = exp(logprob), summed) and rank
/// candidates `(text, logprob)`; best first. Candidates that clean to "" are dropped.
/// Ties in probability are broken by the lowercase key (ascending), so the order never
/// depends on the order of the input.
pub fn merge_candidates<'a>(cands: impl IntoIterator<Item = (&'a str, f64)>) -> Vec<RankedAnswer> {
    // key -> (summed prob, best surface form, its prob)
    let mut merged: HashMap<String, (f64, String, f64)> = HashMap::new();
    for (text, logprob) in cands {
        let cleaned = clean_answer(text);
        if cleaned.is_empty() {
            continue;
        }
        let p = logprob.exp();
        let key = cleaned.to_lowercase();
        let e = merged
            .entry(key)
            .or_insert_with(|| (0.0, cleaned.clone(), f64::NEG_INFINITY));
        e.0 += p;
        // Deterministic surface form: highest probability, then lexicographically smallest.
        if p > e.2 || (p == e.2 && cleaned < e.1) {
            e.1 = cleaned;
            e.2 = p;
        }
    }
    let mut out: Vec<(String, RankedAnswer)> = merged
        .into_iter()
        .map(|(k, (prob, text, _))| (k, RankedAnswer { text, prob }))
        .collect();
    out.sort_by(|a, b| b.1.prob.total_cmp(&a.1.prob).then_with(|| a.0.cmp(&b.0)));
    out.into_iter().map(|(_, r)| r).collect()
}

/// The answer list of a question: the texts of the first [`MAX_ANSWERS`] ranked answers.
pub fn top_answers(ranked: &[RankedAnswer]) -> Vec<String> {
    ranked
        .iter()
        .take(MAX_ANSWERS)
        .map(|r| r.text.clone())
        .collect()
}

/// Scores of one question.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct QuestionScore {
    /// 1 when the first answer matches a gold synonym.
    pub strict: f64,
    /// 1 when one of the first 5 answers matches.
    pub lenient: f64,
    /// 1 / rank of the first match within the first 5, else 0.
    pub reciprocal_rank: f64,
}

/// Score an answer list against the gold `exact_answer` (a list of synonym lists; any
/// synonym of any list is a match).
pub fn score_question(answers: &[String], gold: &[Vec<String>]) -> QuestionScore {
    let gold_keys: Vec<String> = gold
        .iter()
        .flatten()
        .map(|g| g.trim().to_lowercase())
        .collect();
    let rank = answers
        .iter()
        .take(MAX_ANSWERS)
        .position(|a| gold_keys.contains(&a.trim().to_lowercase()));
    match rank {
        Some(r) => QuestionScore {
            strict: if r == 0 { 1.0 } else { 0.0 },
            lenient: 1.0,
            reciprocal_rank: 1.0 / (r as f64 + 1.0),
        },
        None => QuestionScore {
            strict: 0.0,
            lenient: 0.0,
            reciprocal_rank: 0.0,
        },
    }
}

/// Mean measures over a set of questions.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct FactoidMetrics {
    pub strict_acc: f64,
    pub lenient_acc: f64,
    pub mrr: f64,
    /// Questions averaged (for the mean over batches: the total over the batches).
    pub questions: usize,
}

impl FactoidMetrics {
    /// Mean of `scores`; all zeros for no question.
    pub fn mean(scores: &[QuestionScore]) -> Self {
        let n = scores.len();
        let avg = |f: fn(&QuestionScore) -> f64| {
            if n == 0 {
                0.0
            } else {
                scores.iter().map(f).sum::<f64>() / n as f64
            }
        };
        FactoidMetrics {
            strict_acc: avg(|s| s.strict),
            lenient_acc: avg(|s| s.lenient),
            mrr: avg(|s| s.reciprocal_rank),
            questions: n,
        }
    }
}

/// A task's results: per batch, their unweighted mean, and over all questions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskMetrics {
    /// Batch name -> its metrics, in batch-name order.
    pub batches: BTreeMap<String, FactoidMetrics>,
    /// Unweighted mean over batches (BioASQ convention).
    pub mean_over_batches: FactoidMetrics,
    /// Mean over every question of the task.
    pub all_questions: FactoidMetrics,
}

/// Aggregate `(batch, score)` pairs, one per question.
pub fn aggregate(scored: &[(String, QuestionScore)]) -> TaskMetrics {
    let mut by_batch: BTreeMap<String, Vec<QuestionScore>> = BTreeMap::new();
    for (b, s) in scored {
        by_batch.entry(b.clone()).or_default().push(*s);
    }
    let batches: BTreeMap<String, FactoidMetrics> = by_batch
        .iter()
        .map(|(b, s)| (b.clone(), FactoidMetrics::mean(s)))
        .collect();
    let nb = batches.len();
    let avg = |f: fn(&FactoidMetrics) -> f64| {
        if nb == 0 {
            0.0
        } else {
            batches.values().map(f).sum::<f64>() / nb as f64
        }
    };
    let all: Vec<QuestionScore> = scored.iter().map(|(_, s)| *s).collect();
    TaskMetrics {
        mean_over_batches: FactoidMetrics {
            strict_acc: avg(|m| m.strict_acc),
            lenient_acc: avg(|m| m.lenient_acc),
            mrr: avg(|m| m.mrr),
            questions: all.len(),
        },
        all_questions: FactoidMetrics::mean(&all),
        batches,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }
    fn gold(v: &[&[&str]]) -> Vec<Vec<String>> {
        v.iter().map(|l| s(l)).collect()
    }
    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    #[test]
    fn cleaning_trims_whitespace_and_trailing_punctuation() {
        assert_eq!(clean_answer("  BRCA1.  "), "BRCA1");
        assert_eq!(clean_answer("insulin;,. "), "insulin");
        assert_eq!(clean_answer("a . ;"), "a");
        assert_eq!(clean_answer("e.g. x"), "e.g. x"); // only trailing punctuation goes
        assert_eq!(clean_answer(" .;, "), "");
        assert_eq!(clean_answer("\tp53\n"), "p53");
    }

    #[test]
    fn merge_sums_probabilities_case_insensitively() {
        let l = |p: f64| p.ln();
        // "TNF" 0.2 + "tnf." 0.3 = 0.5 beats "IL-6" 0.4; surface form of the larger one.
        let r = merge_candidates([
            ("TNF", l(0.2)),
            ("IL-6", l(0.4)),
            (" tnf.", l(0.3)),
            ("  ", l(0.9)), // cleans to nothing: dropped
        ]);
        assert_eq!(r.len(), 2);
        assert_eq!(r[0].text, "tnf");
        assert!(close(r[0].prob, 0.5));
        assert_eq!(r[1].text, "IL-6");
        assert!(close(r[1].prob, 0.4));
    }

    #[test]
    fn merge_breaks_ties_by_key_independent_of_input_order() {
        let l = 0.25f64.ln();
        let a = merge_candidates([("beta", l), ("Alpha", l), ("gamma", l)]);
        let b = merge_candidates([("gamma", l), ("beta", l), ("Alpha", l)]);
        assert_eq!(a, b);
        assert_eq!(
            top_answers(&a),
            s(&["Alpha", "beta", "gamma"]),
            "equal probabilities rank by lowercase key"
        );
        // Same key, same probability, different case: smallest surface form wins.
        let c = merge_candidates([("Tp53", l), ("TP53", l)]);
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].text, "TP53");
        assert!(close(c[0].prob, 0.5));
    }

    #[test]
    fn top_answers_keeps_at_most_five() {
        let cands: Vec<(String, f64)> = (0..8).map(|i| (format!("a{i}"), -(i as f64))).collect();
        let r = merge_candidates(cands.iter().map(|(t, p)| (t.as_str(), *p)));
        assert_eq!(top_answers(&r), s(&["a0", "a1", "a2", "a3", "a4"]));
        let few = merge_candidates([("x", -1.0), ("y", -2.0)]);
        assert_eq!(top_answers(&few), s(&["x", "y"]));
        assert!(top_answers(&merge_candidates([])).is_empty());
    }

    #[test]
    fn strict_lenient_and_reciprocal_rank() {
        let g = gold(&[&["Procalcitonin", "PCT"]]);
        let first = score_question(&s(&["pct", "x"]), &g);
        assert_eq!(
            (first.strict, first.lenient, first.reciprocal_rank),
            (1.0, 1.0, 1.0)
        );
        let third = score_question(&s(&["a", "b", " PROCALCITONIN ", "pct"]), &g);
        assert_eq!(third.strict, 0.0);
        assert_eq!(third.lenient, 1.0);
        assert!(close(third.reciprocal_rank, 1.0 / 3.0));
        // Only the first five answers count.
        let sixth = score_question(&s(&["a", "b", "c", "d", "e", "pct"]), &g);
        assert_eq!(
            (sixth.strict, sixth.lenient, sixth.reciprocal_rank),
            (0.0, 0.0, 0.0)
        );
        // Substrings are not matches.
        let sub = score_question(&s(&["procalcitonin level"]), &g);
        assert_eq!(sub.lenient, 0.0);
    }

    #[test]
    fn synonyms_of_any_gold_list_match() {
        let g = gold(&[&["EGFR"], &["ErbB1", "HER1"]]);
        let r = score_question(&s(&["kras", "her1"]), &g);
        assert_eq!((r.strict, r.lenient, r.reciprocal_rank), (0.0, 1.0, 0.5));
    }

    #[test]
    fn question_without_candidates_scores_zero_but_counts() {
        let g = gold(&[&["x"]]);
        let none = score_question(&[], &g);
        let hit = score_question(&s(&["x"]), &g);
        let m = FactoidMetrics::mean(&[none, hit]);
        assert!(close(m.strict_acc, 0.5));
        assert!(close(m.lenient_acc, 0.5));
        assert!(close(m.mrr, 0.5));
        assert_eq!(m.questions, 2);
        assert_eq!(FactoidMetrics::mean(&[]).mrr, 0.0);
    }

    #[test]
    fn mean_over_batches_is_unweighted_and_differs_from_all_questions() {
        let q = |st: f64, le: f64, rr: f64| QuestionScore {
            strict: st,
            lenient: le,
            reciprocal_rank: rr,
        };
        // Batch B1: one question, strict hit. Batch B2: three questions: rank 2, miss, miss.
        let scored = vec![
            ("B2".to_string(), q(0.0, 1.0, 0.5)),
            ("B1".to_string(), q(1.0, 1.0, 1.0)),
            ("B2".to_string(), q(0.0, 0.0, 0.0)),
            ("B2".to_string(), q(0.0, 0.0, 0.0)),
        ];
        let t = aggregate(&scored);
        assert_eq!(t.batches.keys().collect::<Vec<_>>(), ["B1", "B2"]);
        let b2 = t.batches["B2"];
        assert!(close(b2.strict_acc, 0.0));
        assert!(close(b2.lenient_acc, 1.0 / 3.0));
        assert!(close(b2.mrr, 0.5 / 3.0));
        // Mean over batches: (1 + 0)/2, (1 + 1/3)/2, (1 + 1/6)/2.
        assert!(close(t.mean_over_batches.strict_acc, 0.5));
        assert!(close(t.mean_over_batches.lenient_acc, 2.0 / 3.0));
        assert!(close(t.mean_over_batches.mrr, 7.0 / 12.0));
        assert_eq!(t.mean_over_batches.questions, 4);
        // All questions: 1/4, 2/4, 1.5/4.
        assert!(close(t.all_questions.strict_acc, 0.25));
        assert!(close(t.all_questions.lenient_acc, 0.5));
        assert!(close(t.all_questions.mrr, 0.375));
    }

    #[test]
    fn end_to_end_merge_then_score() {
        let l = |p: f64| p.ln();
        // Two contexts; "pct" appears in both and overtakes "crp" once summed.
        let ranked = merge_candidates([
            ("CRP", l(0.35)),
            ("PCT.", l(0.2)),
            ("pct", l(0.2)),
            ("ferritin", l(0.1)),
        ]);
        let answers = top_answers(&ranked);
        assert_eq!(answers, s(&["PCT", "CRP", "ferritin"]));
        let sc = score_question(&answers, &gold(&[&["procalcitonin", "PCT"]]));
        assert_eq!((sc.strict, sc.lenient, sc.reciprocal_rank), (1.0, 1.0, 1.0));
    }
}
