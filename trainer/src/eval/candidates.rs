//! Our answering's last step before the submission is written: the candidates of a question
//! (generated strings with sequence log-probabilities, from every context) are cleaned
//! ([`clean_answer`]: whitespace trimmed, then trailing `.`, `,`, `;`), merged
//! case-insensitively with their probabilities summed ([`merge_candidates`]) and ranked; the
//! top [`MAX_ANSWERS`] form the answer list ([`top_answers`]), one string per answer slot.
//!
//! This is a choice of our system, like the prompt or the beam width: it shapes what we
//! submit. It is not part of scoring — the measures ([`crate::eval::metrics`]) compare the
//! submitted strings as they are, lowercased only, exactly as the official BioASQ evaluator
//! does, whoever made the submission.

use std::collections::HashMap;

/// How many answers our factoid submissions list (the BioASQ limit). Scoring does not cut a
/// longer list ([`crate::eval::metrics`]).
pub const MAX_ANSWERS: usize = 5;

/// Trim whitespace, then trailing `.`, `,`, `;` (and the whitespace they uncover).
pub fn clean_answer(s: &str) -> String {
    s.trim()
        .trim_end_matches(|c: char| c == '.' || c == ',' || c == ';' || c.is_whitespace())
        .to_string()
}

/// The merging key of an answer: cleaned, then lowercased.
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eval::metrics::score_question;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
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
        assert_eq!(answer_key(" TNF. "), "tnf");
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
        let g = vec![s(&["procalcitonin", "PCT"])];
        let sc = score_question(&answers, &g);
        assert_eq!((sc.strict, sc.lenient, sc.reciprocal_rank), (1.0, 1.0, 1.0));
    }

    /// Cleaning is ours, not the scorer's: a cleaned answer no longer matches a gold synonym
    /// that ends with a period (the scorer compares exactly, lowercased only).
    #[test]
    fn cleaning_can_lose_a_gold_synonym_with_a_final_period() {
        let g = vec![s(&["It intercalates into the double helix."])];
        let cleaned = top_answers(&merge_candidates([(
            "It intercalates into the double helix.",
            0.0,
        )]));
        assert_eq!(cleaned, s(&["It intercalates into the double helix"]));
        assert_eq!(score_question(&cleaned, &g).lenient, 0.0);
        let raw = s(&["it intercalates into the double helix."]);
        assert_eq!(score_question(&raw, &g).strict, 1.0);
    }
}
