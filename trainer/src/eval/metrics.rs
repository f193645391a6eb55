//! The BioASQ factoid measures, as pure functions, computed exactly as the official evaluator
//! computes them (BioASQ Evaluation-Measures, `EvaluatorTask1b -phaseB -e 5`, the rule since
//! BioASQ5; versions 8 and 9 score factoids the same way), whoever made the submission.
//!
//! - A submission answers a factoid question with a ranked list of answer slots, each a list of
//!   strings. Of each slot only its **first** string is compared (since BioASQ5 participants
//!   submit no synonyms; the evaluator reads a submitted slot `["a", "b"]` as `["a"]`); a slot
//!   with no string (`[]`) is dropped and takes no rank (the evaluator's reader skips it).
//! - Gold: the question's `exact_answer`, a list of synonym lists; every synonym of every list
//!   is a correct answer.
//! - Comparison: both sides lowercased ([`lowercase`]) and then compared for exact string
//!   equality — no trimming, no punctuation stripping, no other normalization.
//! - Strict accuracy: 1 when the first (compared) answer matches. Lenient accuracy: 1 when any
//!   answer matches. Reciprocal rank: 1 / rank of the first matching answer, else 0. Every
//!   answer counts, also past the fifth: the evaluator does not cut the list (BioASQ accepts at
//!   most 5 at submission time; our answering never lists more, [`crate::eval::candidates`]).
//! - A question without answers (missing from the submission, `[]`, or no `exact_answer`)
//!   scores 0 everywhere and still counts.
//! - Aggregation: per test batch (mean over its questions: what the evaluator prints for one
//!   golden file), the unweighted mean over batches (the BioASQ convention for a year's
//!   result) and the mean over all questions.
//!
//! Our answer cleaning (trimming, trailing punctuation, merging case-insensitive duplicates) is
//! a step of our answering, applied before the submission is written
//! ([`crate::eval::candidates`]); it is not part of scoring.

use std::collections::{BTreeMap, HashSet};

use serde::{Deserialize, Serialize};

/// Lowercasing of both sides before comparison: Rust's [`str::to_lowercase`] (Unicode default
/// case conversion, locale-independent, with the final-sigma rule). The official evaluator
/// calls Java's `String.toLowerCase()` in the JVM's default locale; both agree for every
/// string of a non-Turkic locale except (a) a capital sigma whose word context Java judges by
/// its word-break iterator and Unicode by the Final_Sigma condition (`"ΑΣ1Β"`: Java `ασ1β`,
/// here `ας1β`), and (b) letters whose case mapping is newer than the JVM's Unicode tables.
/// Under a Turkish or Azeri default locale Java lowercases `I` to dotless `ı` and `İ` to `i`;
/// we never do (`İ` becomes `i` + U+0307, as in Java's root locale).
pub fn lowercase(s: &str) -> String {
    s.to_lowercase()
}

/// The answers the evaluator compares, in rank order: the first string of each non-empty slot,
/// lowercased. Empty slots are dropped (they take no rank).
pub fn compared_answers<S: AsRef<str>>(slots: &[Vec<S>]) -> Vec<String> {
    slots
        .iter()
        .filter_map(|slot| slot.first())
        .map(|a| lowercase(a.as_ref()))
        .collect()
}

/// Scores of one question.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct QuestionScore {
    /// 1 when the first answer matches a gold synonym.
    pub strict: f64,
    /// 1 when any answer matches.
    pub lenient: f64,
    /// 1 / rank of the first matching answer, else 0.
    pub reciprocal_rank: f64,
}

impl QuestionScore {
    /// A question without a matching answer.
    pub const ZERO: QuestionScore = QuestionScore {
        strict: 0.0,
        lenient: 0.0,
        reciprocal_rank: 0.0,
    };
}

/// Score submitted answer slots (each a list of strings; see the module docs) against the
/// gold `exact_answer` (a list of synonym lists; any synonym of any list is a match).
pub fn score_slots<S: AsRef<str>>(slots: &[Vec<S>], gold: &[Vec<String>]) -> QuestionScore {
    let gold: HashSet<String> = gold.iter().flatten().map(|g| lowercase(g)).collect();
    match compared_answers(slots)
        .iter()
        .position(|a| gold.contains(a))
    {
        Some(r) => QuestionScore {
            strict: if r == 0 { 1.0 } else { 0.0 },
            lenient: 1.0,
            reciprocal_rank: 1.0 / (r as f64 + 1.0),
        },
        None => QuestionScore::ZERO,
    }
}

/// Score our answer list (one string per slot, as our submission writes it) against the gold
/// `exact_answer`: [`score_slots`] with the slots `[[a1], [a2], …]`.
pub fn score_question(answers: &[String], gold: &[Vec<String>]) -> QuestionScore {
    let slots: Vec<Vec<&str>> = answers.iter().map(|a| vec![a.as_str()]).collect();
    score_slots(&slots, gold)
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
    fn strict_lenient_and_reciprocal_rank() {
        let g = gold(&[&["Procalcitonin", "PCT"]]);
        let first = score_question(&s(&["pct", "x"]), &g);
        assert_eq!(
            (first.strict, first.lenient, first.reciprocal_rank),
            (1.0, 1.0, 1.0)
        );
        // Before issue #18 this third answer was trimmed and matched; the official evaluator
        // does not trim, so " PROCALCITONIN " is no match and "pct" (4th) is the first one.
        let fourth = score_question(&s(&["a", "b", " PROCALCITONIN ", "pct"]), &g);
        assert_eq!(fourth.strict, 0.0);
        assert_eq!(fourth.lenient, 1.0);
        assert!(close(fourth.reciprocal_rank, 1.0 / 4.0));
        let third = score_question(&s(&["a", "b", "PROCALCITONIN", "pct"]), &g);
        assert!(close(third.reciprocal_rank, 1.0 / 3.0));
        // Before issue #18 only the first five answers counted; the official evaluator does
        // not cut the list (see `more_than_five_slots_all_count`).
        let sixth = score_question(&s(&["a", "b", "c", "d", "e", "pct"]), &g);
        assert_eq!(
            (sixth.strict, sixth.lenient, sixth.reciprocal_rank),
            (0.0, 1.0, 1.0 / 6.0)
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

    fn slots(v: &[&[&str]]) -> Vec<Vec<String>> {
        gold(v)
    }
    fn triple(q: QuestionScore) -> (f64, f64, f64) {
        (q.strict, q.lenient, q.reciprocal_rank)
    }

    #[test]
    fn case_is_ignored_on_both_sides() {
        let g = gold(&[&["Procalcitonin"]]);
        for a in ["procalcitonin", "PROCALCITONIN", "ProCalciTonin"] {
            assert_eq!(
                triple(score_slots(&slots(&[&[a]]), &g)),
                (1.0, 1.0, 1.0),
                "{a}"
            );
        }
        let upper_gold = gold(&[&["IL-6"]]);
        assert_eq!(score_slots(&slots(&[&["il-6"]]), &upper_gold).strict, 1.0);
    }

    /// Since BioASQ5 the evaluator keeps only the first string of a submitted slot.
    #[test]
    fn only_the_first_string_of_a_slot_is_compared() {
        let g = gold(&[&["Procalcitonin", "PCT"]]);
        assert_eq!(
            triple(score_slots(&slots(&[&["PCT", "something else"]]), &g)),
            (1.0, 1.0, 1.0)
        );
        assert_eq!(
            triple(score_slots(&slots(&[&["something else", "PCT"]]), &g)),
            (0.0, 0.0, 0.0)
        );
        // ... also further down the list.
        let r = score_slots(
            &slots(&[&["x", "pct"], &["y", "procalcitonin"], &["pct"]]),
            &g,
        );
        assert_eq!(triple(r), (0.0, 1.0, 1.0 / 3.0));
        assert_eq!(
            compared_answers(&slots(&[&["A", "b"], &[], &["C"]])),
            s(&["a", "c"])
        );
    }

    #[test]
    fn a_synonym_of_the_second_gold_list_matches() {
        let g = gold(&[
            &["EGFR", "epidermal growth factor receptor"],
            &["ErbB1", "HER1"],
        ]);
        assert_eq!(
            triple(score_slots(&slots(&[&["her1"]]), &g)),
            (1.0, 1.0, 1.0)
        );
        assert_eq!(
            triple(score_slots(&slots(&[&["KRAS"], &["ERBB1"]]), &g)),
            (0.0, 1.0, 0.5)
        );
    }

    #[test]
    fn whitespace_and_a_final_period_are_not_removed() {
        let g = gold(&[&["BRCA1"]]);
        for a in [
            " BRCA1",
            "BRCA1 ",
            "\tBRCA1\n",
            "BRCA1.",
            "BRCA1;",
            "brca1 .",
        ] {
            assert_eq!(
                triple(score_slots(&slots(&[&[a]]), &g)),
                (0.0, 0.0, 0.0),
                "{a:?}"
            );
        }
        // Gold synonyms are not trimmed either (4B4 has " fewer than 100").
        let padded = gold(&[&[" fewer than 100"]]);
        assert_eq!(
            score_slots(&slots(&[&["fewer than 100"]]), &padded).lenient,
            0.0
        );
        assert_eq!(
            score_slots(&slots(&[&[" Fewer than 100"]]), &padded).strict,
            1.0
        );
        let period = gold(&[&["Tead (TEA domain) transcription factors."]]);
        assert_eq!(
            score_slots(
                &slots(&[&["TEAD (TEA domain) transcription factors"]]),
                &period
            )
            .lenient,
            0.0
        );
        assert_eq!(
            score_slots(
                &slots(&[&["tead (tea domain) transcription factors."]]),
                &period
            )
            .strict,
            1.0
        );
    }

    #[test]
    fn non_ascii_text_is_lowercased_by_unicode_rules() {
        let hit = |a: &str, g: &str| score_slots(&slots(&[&[a]]), &gold(&[&[g]])).strict == 1.0;
        assert!(hit("β-Catenin", "β-catenin"));
        assert!(hit("Β-CATENIN", "β-catenin")); // Greek capital beta
        assert!(!hit("beta-catenin", "β-catenin"));
        assert!(hit("ΟΔΟΣ", "οδος")); // final sigma on both sides
        assert!(!hit("ΟΔΟΣ", "οδοσ"));
        assert!(hit("Α-ΣΥΝΟΥΚΛΕΪΝΗ", "α-συνουκλεϊνη"));
        assert!(hit("MÜLLER-ZELLEN", "müller-zellen"));
        assert!(hit("ẞ", "ß")); // capital sharp s lowercases to ß ...
        assert!(!hit("STRASSE", "straße")); // ... but no case folding: ss is not ß
        assert!(!hit("İNSULIN", "insulin")); // İ -> i + U+0307 (Java's root locale too)
        assert_eq!(lowercase("İ"), "i\u{307}");
        // The one documented difference from Java's toLowerCase: sigma before a digit.
        assert_eq!(lowercase("ΑΣ1Β"), "ας1β");
    }

    #[test]
    fn fewer_than_five_slots() {
        let g = gold(&[&["TNF"]]);
        assert_eq!(
            triple(score_slots(&slots(&[&["IL-6"], &["tnf"]]), &g)),
            (0.0, 1.0, 0.5)
        );
        assert_eq!(
            triple(score_slots(&slots(&[&["IL-6"]]), &g)),
            (0.0, 0.0, 0.0)
        );
    }

    #[test]
    fn empty_answers_and_empty_slots() {
        let g = gold(&[&["TNF"]]);
        let none: Vec<Vec<String>> = vec![];
        assert_eq!(score_slots(&none, &g), QuestionScore::ZERO);
        assert_eq!(score_slots(&slots(&[&[]]), &g), QuestionScore::ZERO);
        // An empty slot takes no rank (the evaluator's reader drops it): TNF is first.
        assert_eq!(
            triple(score_slots(&slots(&[&[], &["TNF"]]), &g)),
            (1.0, 1.0, 1.0)
        );
        assert_eq!(
            triple(score_slots(&slots(&[&["x"], &[], &["tnf"]]), &g)),
            (0.0, 1.0, 0.5)
        );
        // The empty string is a string like any other.
        assert_eq!(score_slots(&slots(&[&[""]]), &g), QuestionScore::ZERO);
        assert_eq!(score_slots(&slots(&[&[" "]]), &gold(&[&[" "]])).strict, 1.0);
    }

    /// The evaluator does not cut the list at 5: every slot counts for lenient and MRR.
    #[test]
    fn more_than_five_slots_all_count() {
        let g = gold(&[&["TNF"]]);
        let seven: Vec<Vec<String>> = (0..7)
            .map(|i| {
                vec![if i == 6 {
                    "tnf".to_string()
                } else {
                    format!("x{i}")
                }]
            })
            .collect();
        assert_eq!(triple(score_slots(&seven, &g)), (0.0, 1.0, 1.0 / 7.0));
    }
}
