//! The BioASQ exact-answer measures (factoid, yes/no, list) and the PubMedQA measures, as pure
//! functions, computed exactly as the official tools compute them, whoever made the submission.
//!
//! BioASQ: BioASQ Evaluation-Measures, `EvaluatorTask1b -phaseB -e 5` (the rule since BioASQ5;
//! versions 8 and 9 score exact answers the same way), read in its source (`Task1bData`,
//! `ExactAnswer.containsAnswerSynonym`, `QuestionAnswerEvaluator`, `EvaluatorTask1b`) and
//! checked against its jar.
//!
//! - **Reading a submission.** Every string is lowercased ([`lowercase`]) and compared for exact
//!   equality — no trimming, no punctuation stripping, no other normalization. A factoid or list
//!   answer is a list of items (slots), each a list of strings; of each item only its **first**
//!   string counts (since BioASQ5 participants submit no synonyms), and an item with no string
//!   (`[]`) is dropped (it takes no rank and is not counted as submitted). Gold: a list of
//!   entities, each a list of synonyms.
//! - **Factoid.** Strict accuracy: 1 when the first item matches a gold synonym. Lenient: 1 when
//!   any item matches. Reciprocal rank: 1 / rank of the first matching item, else 0. Every item
//!   counts, also past the fifth (the evaluator does not cut the list; our answering never lists
//!   more, [`crate::eval::candidates`]).
//! - **Yes/no** ([`yesno_label`], [`score_yesno`], [`YesNoMetrics`]). The answer string
//!   lowercased is `yes` when it contains "yes", else `no` when it contains "no", else neither
//!   ("YES." is yes, "Not sure" is no, "maybe" and "" are neither); the golden answer is read the
//!   same way. Accuracy = correct / yes-no questions. The F1 of a label is built from
//!   correctness, as the evaluator does: for a question whose gold is the label a correct answer
//!   is a TP and a wrong one an FP; for the other questions a correct answer is a TN and a wrong
//!   one an FN; F1 = 2TP / (2TP + FP + FN), 0 when that is 0; macro-F1 = (F1 yes + F1 no) / 2.
//!   So a wrong answer lowers both F1s (unlike sklearn's), and a batch without a "no" question
//!   has F1 no = 0.
//! - **List** ([`score_list`], [`ListMetrics`]). Each submitted item, in order, that equals any
//!   synonym of a gold entity not yet matched is a TP and removes that entity (the first such
//!   entity in gold order); any other item is an FP (a duplicate, a second synonym of a matched
//!   entity, a padded string). FN = the gold entities left unmatched none of whose synonyms
//!   equals a submitted string, each such string used once (the evaluator's second pass; it
//!   differs from "the entities left" only when two gold entities share a synonym). P = TP /
//!   submitted items, R = TP / (TP + FN), F1 = 2PR / (P + R), each 0 when undefined; a
//!   question's three values are averaged over the questions (mean P, mean R, mean F1 — the
//!   F1 of the means is not computed).
//! - **No answer.** A question with no exact answer (absent or `null` `exact_answer`, `[]`, an
//!   empty string) scores 0 everywhere and still counts; so does a question missing from the
//!   submission (the evaluator's jar stops with a NullPointerException on it; the submission
//!   scorer counts it and warns).
//! - **Aggregation** ([`aggregate`]). Per test batch, each type's measures over its questions of
//!   that type (what the evaluator prints for one golden file); a batch without questions of a
//!   type has no measures of that type (the evaluator prints 0). For the task: the unweighted
//!   mean over the batches that have the type (the BioASQ convention for a year's result), and
//!   the same measures over all the task's questions of the type pooled (micro-average: one
//!   accuracy and one confusion count over every yes/no question, the mean over every list
//!   question).
//!
//! PubMedQA ([`pubmedqa_metrics`]): accuracy and macro-F1 as its `evaluation.py` computes them
//! with sklearn — `accuracy_score` and `f1_score(average="macro")` over the labels that occur in
//! the gold labels or the predictions (sorted), the F1 of a label 2TP / (2TP + FP + FN), 0 when
//! that is 0 (sklearn's `zero_division` default), so a label never predicted counts with F1 0.
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

/// The yes/no label the evaluator reads from an answer string: lowercased, `Yes` when it
/// contains "yes", else `No` when it contains "no", else `Neither`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum YesNo {
    Yes,
    No,
    Neither,
}

/// The label of `answer` ([`YesNo`]): `"YES."` → yes, `"Not sure"` → no, `"maybe"` → neither.
pub fn yesno_label(answer: &str) -> YesNo {
    let l = lowercase(answer);
    if l.contains("yes") {
        YesNo::Yes
    } else if l.contains("no") {
        YesNo::No
    } else {
        YesNo::Neither
    }
}

/// One yes/no question scored.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct YesNoScore {
    /// The gold label (read as the answers are).
    pub gold: YesNo,
    /// The submitted answer's label; `None` when there is no answer.
    pub answer: Option<YesNo>,
    /// The answer's label equals the gold label.
    pub correct: bool,
}

/// Score a yes/no answer (`None`: no answer) against the gold `exact_answer` (`[["yes"]]` or
/// `[["no"]]`; its first string is read like an answer).
pub fn score_yesno(answer: Option<&str>, gold: &[Vec<String>]) -> YesNoScore {
    let gold = yesno_label(
        gold.first()
            .and_then(|g| g.first())
            .map_or("", String::as_str),
    );
    let answer = answer.map(yesno_label);
    YesNoScore {
        gold,
        answer,
        correct: answer == Some(gold),
    }
}

/// Yes/no measures over a set of questions.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct YesNoMetrics {
    pub yesno_acc: f64,
    pub yesno_f1_yes: f64,
    pub yesno_f1_no: f64,
    pub yesno_macro_f1: f64,
    pub yesno_questions: usize,
}

/// The F1 of one label from correctness, as `EvaluatorTask1b.F1ExactAnswersYesNo` builds it.
fn yesno_f1(scores: &[YesNoScore], label_yes: bool) -> f64 {
    let (mut tp, mut fp, mut fn_) = (0usize, 0usize, 0usize);
    for s in scores {
        match ((s.gold == YesNo::Yes) == label_yes, s.correct) {
            (true, true) => tp += 1,
            (true, false) => fp += 1,
            (false, true) => {} // TN
            (false, false) => fn_ += 1,
        }
    }
    let denominator = 2 * tp + fp + fn_;
    if denominator == 0 {
        0.0
    } else {
        (2 * tp) as f64 / denominator as f64
    }
}

impl YesNoMetrics {
    /// Accuracy and the F1s of `scores`; `None` for no question.
    pub fn of(scores: &[YesNoScore]) -> Option<Self> {
        if scores.is_empty() {
            return None;
        }
        let correct = scores.iter().filter(|s| s.correct).count();
        let (f1_yes, f1_no) = (yesno_f1(scores, true), yesno_f1(scores, false));
        Some(YesNoMetrics {
            yesno_acc: correct as f64 / scores.len() as f64,
            yesno_f1_yes: f1_yes,
            yesno_f1_no: f1_no,
            yesno_macro_f1: (f1_yes + f1_no) / 2.0,
            yesno_questions: scores.len(),
        })
    }
}

/// One list question scored.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ListScore {
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    pub tp: usize,
    pub fp: usize,
    #[serde(rename = "fn")]
    pub fn_: usize,
}

impl ListScore {
    /// A question without an answer.
    pub const ZERO: ListScore = ListScore {
        precision: 0.0,
        recall: 0.0,
        f1: 0.0,
        tp: 0,
        fp: 0,
        fn_: 0,
    };
}

/// Score submitted list items (each a list of strings; only the first string counts, `[]`
/// items are dropped) against the gold entities (each a list of synonyms), as
/// `QuestionAnswerEvaluator.calculatePRFforListQuestions` does (see the module docs).
pub fn score_list<S: AsRef<str>>(items: &[Vec<S>], gold: &[Vec<String>]) -> ListScore {
    let submitted = compared_answers(items);
    if submitted.is_empty() {
        return ListScore::ZERO;
    }
    let mut left: Vec<Vec<String>> = gold
        .iter()
        .map(|e| e.iter().map(|g| lowercase(g)).collect())
        .collect();
    let (mut tp, mut fp) = (0usize, 0usize);
    for a in &submitted {
        match left.iter().position(|e| e.contains(a)) {
            Some(i) => {
                left.remove(i);
                tp += 1;
            }
            None => fp += 1,
        }
    }
    // The evaluator's second pass: an entity left is an FN unless one of its synonyms is still
    // among the submitted strings, each of which can spare one entity.
    let mut unused = submitted;
    let mut fn_ = 0usize;
    for e in &left {
        match unused.iter().position(|a| e.contains(a)) {
            Some(i) => {
                unused.remove(i);
            }
            None => fn_ += 1,
        }
    }
    let precision = tp as f64 / (tp + fp) as f64;
    let recall = if tp + fn_ == 0 {
        0.0
    } else {
        tp as f64 / (tp + fn_) as f64
    };
    let f1 = if precision != 0.0 && recall != 0.0 {
        2.0 * precision * recall / (precision + recall)
    } else {
        0.0
    };
    ListScore {
        precision,
        recall,
        f1,
        tp,
        fp,
        fn_,
    }
}

/// List measures over a set of questions: the means of the per-question values.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ListMetrics {
    pub list_precision: f64,
    pub list_recall: f64,
    pub list_f1: f64,
    pub list_questions: usize,
}

impl ListMetrics {
    /// Mean P, R and F1 of `scores`; `None` for no question.
    pub fn of(scores: &[ListScore]) -> Option<Self> {
        if scores.is_empty() {
            return None;
        }
        let n = scores.len() as f64;
        let mean = |f: fn(&ListScore) -> f64| scores.iter().map(f).sum::<f64>() / n;
        Some(ListMetrics {
            list_precision: mean(|s| s.precision),
            list_recall: mean(|s| s.recall),
            list_f1: mean(|s| s.f1),
            list_questions: scores.len(),
        })
    }
}

/// Mean factoid measures over a set of questions.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct FactoidMetrics {
    pub strict_acc: f64,
    pub lenient_acc: f64,
    pub mrr: f64,
    /// Factoid questions averaged (for the mean over batches: the total over the batches).
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

/// One question of any exact-answer type, scored.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Scored {
    Factoid(QuestionScore),
    #[serde(rename = "yesno")]
    YesNo(YesNoScore),
    List(ListScore),
}

impl From<QuestionScore> for Scored {
    fn from(s: QuestionScore) -> Self {
        Scored::Factoid(s)
    }
}

/// The measures of a set of questions, one group per exact-answer type that has questions in
/// it (as `results.json` stores them, flat: `strict_acc`, …, `yesno_acc`, …, `list_f1`, …).
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct Measures {
    #[serde(flatten, default, skip_serializing_if = "Option::is_none")]
    pub factoid: Option<FactoidMetrics>,
    #[serde(flatten, default, skip_serializing_if = "Option::is_none")]
    pub yesno: Option<YesNoMetrics>,
    #[serde(flatten, default, skip_serializing_if = "Option::is_none")]
    pub list: Option<ListMetrics>,
}

impl Measures {
    /// The measures of `scored` (any mix of types; a type without questions has none).
    pub fn of<'a>(scored: impl IntoIterator<Item = &'a Scored>) -> Self {
        let (mut f, mut y, mut l) = (Vec::new(), Vec::new(), Vec::new());
        for s in scored {
            match s {
                Scored::Factoid(s) => f.push(*s),
                Scored::YesNo(s) => y.push(*s),
                Scored::List(s) => l.push(*s),
            }
        }
        Measures {
            factoid: (!f.is_empty()).then(|| FactoidMetrics::mean(&f)),
            yesno: YesNoMetrics::of(&y),
            list: ListMetrics::of(&l),
        }
    }

    /// Questions counted, all types together.
    pub fn questions(&self) -> usize {
        self.factoid.map_or(0, |m| m.questions)
            + self.yesno.map_or(0, |m| m.yesno_questions)
            + self.list.map_or(0, |m| m.list_questions)
    }

    /// The value of measure `key` (a `results.json` key, e.g. `strict_acc`, `yesno_macro_f1`,
    /// `list_f1`), if this set has it.
    pub fn get(&self, key: &str) -> Option<f64> {
        let f = self.factoid.as_ref();
        let y = self.yesno.as_ref();
        let l = self.list.as_ref();
        match key {
            "strict_acc" => f.map(|m| m.strict_acc),
            "lenient_acc" => f.map(|m| m.lenient_acc),
            "mrr" => f.map(|m| m.mrr),
            "yesno_acc" => y.map(|m| m.yesno_acc),
            "yesno_f1_yes" => y.map(|m| m.yesno_f1_yes),
            "yesno_f1_no" => y.map(|m| m.yesno_f1_no),
            "yesno_macro_f1" => y.map(|m| m.yesno_macro_f1),
            "list_precision" => l.map(|m| m.list_precision),
            "list_recall" => l.map(|m| m.list_recall),
            "list_f1" => l.map(|m| m.list_f1),
            _ => None,
        }
    }
}

/// A task's results: per batch, their unweighted mean, and over all questions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskMetrics {
    /// Batch name -> its measures, in batch-name order.
    pub batches: BTreeMap<String, Measures>,
    /// Per type, the unweighted mean over the batches that have questions of the type (BioASQ
    /// convention); `questions` are the totals.
    pub mean_over_batches: Measures,
    /// Per type, the measures over every question of the task.
    pub all_questions: Measures,
}

/// `mean(values present)`; `None` when no value is present.
fn mean_of<T: Copy>(
    values: impl Iterator<Item = Option<T>>,
    mean: impl Fn(&[T]) -> T,
) -> Option<T> {
    let present: Vec<T> = values.flatten().collect();
    (!present.is_empty()).then(|| mean(&present))
}

/// Aggregate `(batch, score)` pairs, one per question.
pub fn aggregate(scored: &[(String, Scored)]) -> TaskMetrics {
    let mut by_batch: BTreeMap<String, Vec<Scored>> = BTreeMap::new();
    for (b, s) in scored {
        by_batch.entry(b.clone()).or_default().push(*s);
    }
    let batches: BTreeMap<String, Measures> = by_batch
        .iter()
        .map(|(b, s)| (b.clone(), Measures::of(s)))
        .collect();
    let avg = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let mean_over_batches = Measures {
        factoid: mean_of(batches.values().map(|m| m.factoid), |v| FactoidMetrics {
            strict_acc: avg(&v.iter().map(|m| m.strict_acc).collect::<Vec<_>>()),
            lenient_acc: avg(&v.iter().map(|m| m.lenient_acc).collect::<Vec<_>>()),
            mrr: avg(&v.iter().map(|m| m.mrr).collect::<Vec<_>>()),
            questions: v.iter().map(|m| m.questions).sum(),
        }),
        yesno: mean_of(batches.values().map(|m| m.yesno), |v| YesNoMetrics {
            yesno_acc: avg(&v.iter().map(|m| m.yesno_acc).collect::<Vec<_>>()),
            yesno_f1_yes: avg(&v.iter().map(|m| m.yesno_f1_yes).collect::<Vec<_>>()),
            yesno_f1_no: avg(&v.iter().map(|m| m.yesno_f1_no).collect::<Vec<_>>()),
            yesno_macro_f1: avg(&v.iter().map(|m| m.yesno_macro_f1).collect::<Vec<_>>()),
            yesno_questions: v.iter().map(|m| m.yesno_questions).sum(),
        }),
        list: mean_of(batches.values().map(|m| m.list), |v| ListMetrics {
            list_precision: avg(&v.iter().map(|m| m.list_precision).collect::<Vec<_>>()),
            list_recall: avg(&v.iter().map(|m| m.list_recall).collect::<Vec<_>>()),
            list_f1: avg(&v.iter().map(|m| m.list_f1).collect::<Vec<_>>()),
            list_questions: v.iter().map(|m| m.list_questions).sum(),
        }),
    };
    TaskMetrics {
        all_questions: Measures::of(scored.iter().map(|(_, s)| s)),
        mean_over_batches,
        batches,
    }
}

/// The PubMedQA labels.
pub const PUBMEDQA_LABELS: [&str; 3] = ["yes", "no", "maybe"];

/// The F1 of one PubMedQA label.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LabelScore {
    pub f1: f64,
    /// Questions with this gold label.
    pub support: usize,
    /// Questions predicted with this label.
    pub predicted: usize,
}

/// PubMedQA measures (its `evaluation.py`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PubmedqaMetrics {
    pub accuracy: f64,
    pub macro_f1: f64,
    pub questions: usize,
    /// Every label of gold ∪ predictions (sorted): its F1, as macro-F1 averages them.
    pub labels: BTreeMap<String, LabelScore>,
}

/// Accuracy and macro-F1 of `predictions` against `gold` (same order, one pair per question),
/// as sklearn's `accuracy_score` and `f1_score(average="macro")`: the labels are those occurring
/// in either list, sorted; a label's F1 is 2TP / (2TP + FP + FN), 0 when that is 0; macro-F1 is
/// their mean. Empty input gives zeros.
pub fn pubmedqa_metrics<S: AsRef<str>>(gold: &[S], predictions: &[S]) -> PubmedqaMetrics {
    assert_eq!(gold.len(), predictions.len(), "one prediction per question");
    let n = gold.len();
    let mut labels: BTreeMap<String, (usize, usize, usize)> = BTreeMap::new(); // tp, fp, fn
    let mut correct = 0usize;
    for (g, p) in gold.iter().zip(predictions) {
        let (g, p) = (g.as_ref(), p.as_ref());
        labels.entry(g.to_string()).or_default();
        labels.entry(p.to_string()).or_default();
        if g == p {
            correct += 1;
            labels.get_mut(g).unwrap().0 += 1;
        } else {
            labels.get_mut(p).unwrap().1 += 1;
            labels.get_mut(g).unwrap().2 += 1;
        }
    }
    let scores: BTreeMap<String, LabelScore> = labels
        .into_iter()
        .map(|(l, (tp, fp, fn_))| {
            let d = 2 * tp + fp + fn_;
            let f1 = if d == 0 {
                0.0
            } else {
                (2 * tp) as f64 / d as f64
            };
            let score = LabelScore {
                f1,
                support: tp + fn_,
                predicted: tp + fp,
            };
            (l, score)
        })
        .collect();
    let macro_f1 = if scores.is_empty() {
        0.0
    } else {
        scores.values().map(|s| s.f1).sum::<f64>() / scores.len() as f64
    };
    PubmedqaMetrics {
        accuracy: if n == 0 {
            0.0
        } else {
            correct as f64 / n as f64
        },
        macro_f1,
        questions: n,
        labels: scores,
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
        let scored: Vec<(String, Scored)> = vec![
            ("B2".to_string(), q(0.0, 1.0, 0.5).into()),
            ("B1".to_string(), q(1.0, 1.0, 1.0).into()),
            ("B2".to_string(), q(0.0, 0.0, 0.0).into()),
            ("B2".to_string(), q(0.0, 0.0, 0.0).into()),
        ];
        let t = aggregate(&scored);
        assert_eq!(t.batches.keys().collect::<Vec<_>>(), ["B1", "B2"]);
        let b2 = t.batches["B2"].factoid.unwrap();
        assert_eq!((t.batches["B2"].yesno, t.batches["B2"].list), (None, None));
        assert!(close(b2.strict_acc, 0.0));
        assert!(close(b2.lenient_acc, 1.0 / 3.0));
        assert!(close(b2.mrr, 0.5 / 3.0));
        // Mean over batches: (1 + 0)/2, (1 + 1/3)/2, (1 + 1/6)/2.
        let mob = t.mean_over_batches.factoid.unwrap();
        assert!(close(mob.strict_acc, 0.5));
        assert!(close(mob.lenient_acc, 2.0 / 3.0));
        assert!(close(mob.mrr, 7.0 / 12.0));
        assert_eq!(mob.questions, 4);
        // All questions: 1/4, 2/4, 1.5/4.
        let all = t.all_questions.factoid.unwrap();
        assert!(close(all.strict_acc, 0.25));
        assert!(close(all.lenient_acc, 0.5));
        assert!(close(all.mrr, 0.375));
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

    fn yn(answer: Option<&str>, gold: &str) -> YesNoScore {
        score_yesno(answer, &gold_list(&[&[gold]]))
    }
    fn gold_list(v: &[&[&str]]) -> Vec<Vec<String>> {
        gold(v)
    }

    #[test]
    fn yesno_answers_are_read_by_containment_after_lowercasing() {
        assert_eq!(yesno_label("yes"), YesNo::Yes);
        assert_eq!(yesno_label("YES."), YesNo::Yes);
        assert_eq!(yesno_label("Yes, it is"), YesNo::Yes);
        assert_eq!(yesno_label("no"), YesNo::No);
        assert_eq!(yesno_label("Not sure"), YesNo::No); // contains "no"
        assert_eq!(yesno_label("unknown"), YesNo::No); // so does this
        assert_eq!(yesno_label("No, yes"), YesNo::Yes); // "yes" is looked for first
        assert_eq!(yesno_label("maybe"), YesNo::Neither);
        assert_eq!(yesno_label(""), YesNo::Neither);
        assert_eq!(yesno_label(" Y E S "), YesNo::Neither);
        assert!(yn(Some("YES."), "yes").correct);
        assert!(yn(Some("Not sure"), "no").correct);
        assert!(!yn(Some("maybe"), "no").correct);
        assert!(!yn(Some(""), "yes").correct);
        assert!(!yn(None, "yes").correct);
        assert_eq!(yn(None, "yes").answer, None);
        // The gold is read the same way.
        assert!(yn(Some("yes"), "Yes").correct);
    }

    /// The F1 of a label counts correctness, not the predicted label: a wrong answer to a
    /// "yes" question is an FP of "yes" and an FN of "no".
    #[test]
    fn yesno_f1_is_built_from_correctness() {
        // 3 yes questions (2 right, 1 wrong: "maybe"), 2 no questions (1 right, 1 wrong: "yes").
        let s = [
            yn(Some("yes"), "yes"),
            yn(Some("Yes."), "yes"),
            yn(Some("maybe"), "yes"),
            yn(Some("no"), "no"),
            yn(Some("yes"), "no"),
        ];
        let m = YesNoMetrics::of(&s).unwrap();
        assert!(close(m.yesno_acc, 3.0 / 5.0));
        // yes: TP 2, FP 1 (the wrong yes question), FN 1 (the wrong no question) -> 4/6.
        assert!(close(m.yesno_f1_yes, 4.0 / 6.0));
        // no: TP 1, FP 1, FN 1 -> 2/4. (sklearn over predicted labels would give 2/3 here:
        // the "maybe" answer is no prediction of "no" at all.)
        assert!(close(m.yesno_f1_no, 0.5));
        assert!(close(m.yesno_macro_f1, (4.0 / 6.0 + 0.5) / 2.0));
        assert_eq!(m.yesno_questions, 5);
        assert_eq!(YesNoMetrics::of(&[]), None);
    }

    #[test]
    fn a_batch_without_no_questions_has_f1_no_zero() {
        let all_right = [yn(Some("yes"), "yes"), yn(Some("yes"), "yes")];
        let m = YesNoMetrics::of(&all_right).unwrap();
        assert_eq!(
            (m.yesno_acc, m.yesno_f1_yes, m.yesno_f1_no),
            (1.0, 1.0, 0.0)
        );
        assert_eq!(m.yesno_macro_f1, 0.5);
        let one_wrong = [yn(Some("yes"), "yes"), yn(Some("no"), "yes")];
        let m = YesNoMetrics::of(&one_wrong).unwrap();
        assert!(close(m.yesno_f1_yes, 2.0 / 3.0));
        assert_eq!(m.yesno_f1_no, 0.0);
        // Missing answers count as wrong.
        let missing = [yn(None, "yes"), yn(None, "no")];
        let m = YesNoMetrics::of(&missing).unwrap();
        assert_eq!(
            (m.yesno_acc, m.yesno_f1_yes, m.yesno_f1_no),
            (0.0, 0.0, 0.0)
        );
    }

    fn prf(l: ListScore) -> (f64, f64, f64) {
        (l.precision, l.recall, l.f1)
    }

    #[test]
    fn list_items_match_each_gold_entity_once() {
        let g = gold(&[&["BRCA1", "breast cancer 1"], &["TP53"], &["EGFR"]]);
        // All three, any case: P = R = F1 = 1.
        let all = score_list(&slots(&[&["brca1"], &["tp53"], &["Egfr"]]), &g);
        assert_eq!(prf(all), (1.0, 1.0, 1.0));
        assert_eq!((all.tp, all.fp, all.fn_), (3, 0, 0));
        // A duplicate is an FP, so is a second synonym of a matched entity.
        let dup = score_list(
            &slots(&[&["BRCA1"], &["brca1"], &["breast cancer 1"], &["TP53"]]),
            &g,
        );
        assert_eq!((dup.tp, dup.fp, dup.fn_), (2, 2, 1));
        assert!(close(dup.precision, 0.5));
        assert!(close(dup.recall, 2.0 / 3.0));
        assert!(close(dup.f1, 2.0 * 0.5 * (2.0 / 3.0) / (0.5 + 2.0 / 3.0)));
        // The second synonym alone matches its entity.
        let second = score_list(&slots(&[&["Breast Cancer 1"]]), &g);
        assert_eq!((second.tp, second.fp, second.fn_), (1, 0, 2));
        assert_eq!(prf(second).0, 1.0);
        assert!(close(second.recall, 1.0 / 3.0));
        // Only the first string of an item counts.
        let first_only = score_list(&slots(&[&["x", "brca1"], &["tp53", "zzz"]]), &g);
        assert_eq!((first_only.tp, first_only.fp), (1, 1));
    }

    #[test]
    fn list_padding_spaces_empty_items_and_empty_answers() {
        let g = gold(&[&["TP53"], &["EGFR"]]);
        // Nothing is trimmed: " TP53" and "EGFR " are FPs and both entities stay FNs.
        let padded = score_list(&slots(&[&[" TP53"], &["EGFR "]]), &g);
        assert_eq!((padded.tp, padded.fp, padded.fn_), (0, 2, 2));
        assert_eq!(prf(padded), (0.0, 0.0, 0.0));
        // An empty item is dropped (not submitted); an empty string is submitted (an FP).
        let empty_item = score_list(&slots(&[&[], &["tp53"]]), &g);
        assert_eq!((empty_item.tp, empty_item.fp), (1, 0));
        assert_eq!(empty_item.precision, 1.0);
        let empty_string = score_list(&slots(&[&[""], &["tp53"]]), &g);
        assert_eq!((empty_string.tp, empty_string.fp), (1, 1));
        assert_eq!(empty_string.precision, 0.5);
        // No answer, an empty list or only empty items: 0, and the question still counts.
        let none: Vec<Vec<String>> = vec![];
        assert_eq!(score_list(&none, &g), ListScore::ZERO);
        assert_eq!(score_list(&slots(&[&[], &[]]), &g), ListScore::ZERO);
        let m = ListMetrics::of(&[
            ListScore::ZERO,
            score_list(&slots(&[&["tp53"], &["egfr"]]), &g),
        ])
        .unwrap();
        assert_eq!(
            (m.list_precision, m.list_recall, m.list_f1),
            (0.5, 0.5, 0.5)
        );
        assert_eq!(m.list_questions, 2);
    }

    /// The evaluator's second pass: an entity left unmatched is no FN when one of its synonyms
    /// was submitted (possible only when two gold entities share a synonym); each submitted
    /// string spares one entity.
    #[test]
    fn list_fn_follows_the_evaluators_second_pass() {
        let g = gold(&[&["A"], &["a", "B"], &["a"]]);
        let s = score_list(&slots(&[&["a"]]), &g);
        // TP: "a" matches the first entity; FN pass: entity 2 is spared by "a", entity 3 is FN.
        assert_eq!((s.tp, s.fp, s.fn_), (1, 0, 1));
        assert_eq!(s.recall, 0.5);
        // Mean P, R, F1 over questions, not the F1 of the means.
        let q1 = score_list(&slots(&[&["a"], &["x"]]), &gold(&[&["a"]])); // P .5 R 1
        let q2 = score_list(&slots(&[&["a"]]), &gold(&[&["a"], &["b"]])); // P 1 R .5
        let m = ListMetrics::of(&[q1, q2]).unwrap();
        assert!(close(m.list_precision, 0.75) && close(m.list_recall, 0.75));
        assert!(close(m.list_f1, 2.0 / 3.0)); // both F1s are 2/3; F1(0.75, 0.75) = 0.75
    }

    #[test]
    fn measures_of_mixed_types_per_batch_and_pooled() {
        let f = |s: f64| {
            Scored::Factoid(QuestionScore {
                strict: s,
                lenient: s,
                reciprocal_rank: s,
            })
        };
        let y = |a: &str, g: &str| Scored::YesNo(yn(Some(a), g));
        let l = |p: f64| {
            Scored::List(ListScore {
                precision: p,
                recall: p,
                f1: p,
                tp: 0,
                fp: 0,
                fn_: 0,
            })
        };
        let scored: Vec<(String, Scored)> = vec![
            ("B1".into(), f(1.0)),
            ("B1".into(), y("yes", "yes")),
            ("B1".into(), y("no", "no")),
            ("B1".into(), l(1.0)),
            ("B2".into(), f(0.0)),
            ("B2".into(), y("yes", "yes")),
            ("B2".into(), y("yes", "yes")),
            ("B2".into(), y("yes", "no")),
            // B3 has no list question
            ("B3".into(), y("no", "yes")),
            ("B2".into(), l(0.0)),
            ("B2".into(), l(0.5)),
        ];
        let t = aggregate(&scored);
        assert_eq!(t.batches["B3"].list, None);
        assert_eq!(t.batches["B3"].factoid, None);
        let b2 = t.batches["B2"].yesno.unwrap();
        assert!(close(b2.yesno_acc, 2.0 / 3.0));
        assert_eq!(b2.yesno_f1_no, 0.0); // the one "no" question was answered wrong
        // Mean over batches that have the type: yes/no over B1, B2, B3; list over B1, B2.
        let m = t.mean_over_batches;
        assert!(close(
            m.yesno.unwrap().yesno_acc,
            (1.0 + 2.0 / 3.0 + 0.0) / 3.0
        ));
        assert!(close(m.list.unwrap().list_f1, (1.0 + 0.25) / 2.0));
        assert_eq!(m.list.unwrap().list_questions, 3);
        assert_eq!(m.yesno.unwrap().yesno_questions, 6);
        // Pooled: one confusion count over the six yes/no questions.
        let all = t.all_questions.yesno.unwrap();
        assert!(close(all.yesno_acc, 4.0 / 6.0));
        // yes: TP 3 (B1, B2 x2), FP 1 (B3); no: TP 1 (B1), FP 1 (B2); FN(yes) = 1, FN(no) = 1.
        assert!(close(all.yesno_f1_yes, 6.0 / 8.0));
        assert!(close(all.yesno_f1_no, 2.0 / 4.0));
        assert!(close(
            t.all_questions.list.unwrap().list_precision,
            1.5 / 3.0
        ));
        assert_eq!(t.all_questions.questions(), 11);
        assert_eq!(t.all_questions.get("yesno_f1_no"), Some(all.yesno_f1_no));
        assert_eq!(t.batches["B3"].get("list_f1"), None);
    }

    /// Old results.json (factoid only) and new ones (every type, flat keys) both load.
    #[test]
    fn measures_serialize_flat_and_types_without_questions_are_absent() {
        let m = Measures::of(&[
            Scored::YesNo(yn(Some("yes"), "yes")),
            Scored::List(ListScore::ZERO),
        ]);
        let v = serde_json::to_value(m).unwrap();
        assert!(
            v.get("strict_acc").is_none() && v.get("questions").is_none(),
            "{v}"
        );
        assert_eq!(v["yesno_acc"], 1.0);
        assert_eq!(v["list_questions"], 1);
        let back: Measures = serde_json::from_value(v).unwrap();
        assert_eq!(back, m);
        let old: Measures = serde_json::from_str(
            r#"{"strict_acc": 0.5, "lenient_acc": 0.5, "mrr": 0.5, "questions": 2}"#,
        )
        .unwrap();
        assert_eq!(old.factoid.unwrap().questions, 2);
        assert_eq!((old.yesno, old.list), (None, None));
    }

    /// PubMedQA as `evaluation.py` (sklearn): macro-F1 over the labels of gold ∪ predictions;
    /// hand-computed, and the same as sklearn 1.9.1 prints (0.48888888888888893).
    #[test]
    fn pubmedqa_accuracy_and_macro_f1_with_a_label_never_predicted() {
        let gold = ["yes", "yes", "no", "maybe", "no", "yes"];
        let pred = ["yes", "no", "no", "no", "no", "yes"];
        let m = pubmedqa_metrics(&gold, &pred);
        assert!(close(m.accuracy, 4.0 / 6.0));
        // yes: TP 2, FN 1 -> 4/5; no: TP 2, FP 2 -> 4/6; maybe: never predicted -> 0.
        assert!(close(m.labels["yes"].f1, 0.8));
        assert!(close(m.labels["no"].f1, 2.0 / 3.0));
        assert_eq!(m.labels["maybe"].f1, 0.0);
        assert_eq!(
            (m.labels["maybe"].support, m.labels["maybe"].predicted),
            (1, 0)
        );
        assert!(close(m.macro_f1, (0.8 + 2.0 / 3.0 + 0.0) / 3.0));
        assert!(close(m.macro_f1, 0.48888888888888893));
        assert_eq!(m.questions, 6);
        // Only the labels that occur count: without "maybe" anywhere macro-F1 averages two.
        let m2 = pubmedqa_metrics(&["yes", "no"], &["yes", "yes"]);
        assert_eq!(m2.labels.keys().collect::<Vec<_>>(), ["no", "yes"]);
        assert!(close(m2.macro_f1, (2.0 / 3.0 + 0.0) / 2.0));
        // A label only predicted counts too (its F1 is 0).
        let m3 = pubmedqa_metrics(&["yes", "no"], &["maybe", "maybe"]);
        assert_eq!(m3.labels.len(), 3);
        assert_eq!((m3.accuracy, m3.macro_f1), (0.0, 0.0));
    }
}
