//! Config-defined tasks and leak-free training sets.
//!
//! `train(Y)` = the task's training examples minus every question of every test set of year ≥ Y,
//! matched by question id and by normalized question text ([`normalize_question`]). Test sets of
//! unknown year are excluded from every `train(Y)` (the safe side).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use serde::Serialize;

use schemas::bioasq::Example;

use super::convert::normalize_question;

/// A question of some test set, for leak matching.
#[derive(Clone, Debug)]
pub struct TestQuestion {
    pub id: String,
    pub normalized: String,
    pub year: Option<u32>,
}

/// The BioASQ year a file name says: `4B1_golden.json` → 4, `BioASQ-test-factoid-4b-1.json` → 4,
/// `7B_golden.json` → 7.
pub fn year_from_name(name: &str) -> Option<u32> {
    if let Some(stem) = name.strip_suffix("_golden.json") {
        // `<year>B<batch>`
        let b = stem.find(['B', 'b'])?;
        if b > 0 && stem[..b].bytes().all(|c| c.is_ascii_digit()) {
            return stem[..b].parse().ok();
        }
    }
    let lower = name.to_ascii_lowercase();
    let i = lower.find("factoid-")? + "factoid-".len();
    let rest = &lower[i..];
    let b = rest.find('b')?;
    if b > 0 && rest[..b].bytes().all(|c| c.is_ascii_digit()) {
        return rest[..b].parse().ok();
    }
    None
}

/// Leak counts of one task.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct LeakCounts {
    pub year: u32,
    pub train_questions_before: usize,
    pub train_examples_before: usize,
    /// Training questions removed because a test set of year ≥ Y holds the same id.
    pub removed_by_id: usize,
    /// Removed because the normalized text matches (and the id does not).
    pub removed_by_text: usize,
    pub removed_examples: usize,
    /// Removed questions per year of the test set that matched (`unknown` for unknown years).
    pub removed_by_test_year: BTreeMap<String, usize>,
    pub train_questions: usize,
    pub train_examples: usize,
}

/// Remove from `train` every question of the test questions of year ≥ `year`.
pub fn leak_free(
    train: &[Example],
    tests: &[TestQuestion],
    year: u32,
) -> (Vec<Example>, LeakCounts) {
    let applies = |t: &TestQuestion| t.year.is_none_or(|y| y >= year);
    let year_key = |t: &TestQuestion| t.year.map_or("unknown".to_string(), |y| y.to_string());
    let mut by_id: HashMap<&str, &TestQuestion> = HashMap::new();
    let mut by_text: HashMap<&str, &TestQuestion> = HashMap::new();
    for t in tests.iter().filter(|t| applies(t)) {
        by_id.entry(&t.id).or_insert(t);
        by_text.entry(&t.normalized).or_insert(t);
    }
    let mut counts = LeakCounts {
        year,
        train_examples_before: train.len(),
        ..Default::default()
    };
    let mut seen = HashSet::new();
    let mut removed: HashSet<&str> = HashSet::new();
    for e in train {
        if !seen.insert(e.question_id.as_str()) {
            continue;
        }
        counts.train_questions_before += 1;
        let hit = if let Some(t) = by_id.get(e.question_id.as_str()) {
            counts.removed_by_id += 1;
            Some(*t)
        } else if let Some(t) = by_text.get(normalize_question(&e.question).as_str()) {
            counts.removed_by_text += 1;
            Some(*t)
        } else {
            None
        };
        if let Some(t) = hit {
            *counts.removed_by_test_year.entry(year_key(t)).or_default() += 1;
            removed.insert(e.question_id.as_str());
        }
    }
    let kept: Vec<Example> = train
        .iter()
        .filter(|e| !removed.contains(e.question_id.as_str()))
        .cloned()
        .collect();
    counts.removed_examples = train.len() - kept.len();
    counts.train_examples = kept.len();
    counts.train_questions = kept
        .iter()
        .map(|e| e.question_id.as_str())
        .collect::<BTreeSet<_>>()
        .len();
    (kept, counts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use schemas::bioasq::{Split, source};

    fn ex(qid: &str, q: &str) -> Example {
        Example {
            id: format!("{qid}_001"),
            question_id: qid.into(),
            question: q.into(),
            context: "c".into(),
            answer_text: None,
            answer_start: None,
            pmid: None,
            context_source: source::SQUAD,
            split: Split::Train,
            source_file: "t.json".into(),
            qtype: schemas::bioasq::qtype::FACTOID,
            answer_list: None,
        }
    }

    fn tq(id: &str, q: &str, year: Option<u32>) -> TestQuestion {
        TestQuestion {
            id: id.into(),
            normalized: normalize_question(q),
            year,
        }
    }

    #[test]
    fn years_from_names() {
        assert_eq!(year_from_name("4B1_golden.json"), Some(4));
        assert_eq!(year_from_name("7B_golden.json"), Some(7));
        assert_eq!(year_from_name("BioASQ-test-factoid-4b-1.json"), Some(4));
        assert_eq!(year_from_name("BioASQ-train-factoid-7b.json"), Some(7));
        assert_eq!(year_from_name("test-batch1_golden.json"), None);
    }

    #[test]
    fn removes_by_id_and_text_for_later_years_only() {
        let train = vec![
            ex("a", "What is X?"),
            ex("a", "What is X?"),
            ex("b", "Which gene?"),
            ex("c", "Keep me"),
        ];
        let tests = vec![
            tq("a", "other text", Some(5)),
            tq("z", "  which   GENE ", Some(4)),
            tq("c", "Keep me", Some(3)),
        ];
        let (kept, counts) = leak_free(&train, &tests, 4);
        assert_eq!(
            kept.iter()
                .map(|e| e.question_id.as_str())
                .collect::<Vec<_>>(),
            vec!["c"]
        );
        assert_eq!((counts.removed_by_id, counts.removed_by_text), (1, 1));
        assert_eq!(counts.removed_examples, 3);
        assert_eq!(counts.removed_by_test_year.get("5"), Some(&1));
        let (kept5, _) = leak_free(&train, &tests, 5);
        assert_eq!(kept5.len(), 2);
        // Unknown year: excluded everywhere.
        let (kept_u, _) = leak_free(&train, &[tq("c", "x", None)], 99);
        assert_eq!(kept_u.len(), 3);
    }
}
