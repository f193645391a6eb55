//! Official BioASQ → SQuAD-style examples (factoid, yes/no and list questions), SQuAD carry-over, and
//! the checks every example passes.
//!
//! Offsets are character offsets counted in Unicode scalar values, as Python `str` indices (SQuAD's
//! convention), never bytes.

use std::collections::BTreeMap;

use anyhow::{Result, bail};
use serde::Serialize;
use serde_json::{Value, json};

use schemas::bioasq::{Example, Split, qtype, source};

use crate::config::TestDocuments;

use super::formats::{OfficialQuestion, SquadFile, pmid_of_url, question_id_of};

/// Normalized question text for leak matching: lowercase, whitespace runs collapsed to one space,
/// anything that is not a letter or digit stripped from both ends (punctuation, quotes, spaces).
pub fn normalize_question(text: &str) -> String {
    let lower = text.to_lowercase();
    let collapsed = lower.split_whitespace().collect::<Vec<_>>().join(" ");
    collapsed
        .trim_matches(|c: char| !c.is_alphanumeric())
        .to_string()
}

/// Case fold one char without changing the char count (chars whose lowercase is several chars stay).
fn fold(c: char) -> char {
    let mut lower = c.to_lowercase();
    match (lower.next(), lower.next()) {
        (Some(l), None) => l,
        _ => c,
    }
}

/// First case-insensitive occurrence of `needle` in `hay`: (char offset, text as written in `hay`).
pub fn find_case_insensitive(hay: &str, needle: &str) -> Option<(usize, String)> {
    let hay: Vec<char> = hay.chars().collect();
    let needle_folded: Vec<char> = needle.chars().map(fold).collect();
    if needle_folded.is_empty() || needle_folded.len() > hay.len() {
        return None;
    }
    let hay_folded: Vec<char> = hay.iter().copied().map(fold).collect();
    (0..=hay.len() - needle_folded.len())
        .find(|&i| hay_folded[i..i + needle_folded.len()] == needle_folded[..])
        .map(|i| (i, hay[i..i + needle_folded.len()].iter().collect()))
}

/// Check an example's answer columns against its type: factoid — `answer_start` points at
/// `answer_text` inside `context` (both set or both null); yes/no — `answer_text` null or `yes`/`no`,
/// no offset; list — no `answer_text`, and `answer_list` null or non-empty, each entity found in the
/// context as written. Only list rows may carry an `answer_list`.
pub fn validate(example: &Example) -> Result<()> {
    let id = || format!("example {} ({})", example.id, example.source_file);
    if example.qtype != qtype::LIST && example.answer_list.is_some() {
        bail!("{}: only list examples carry an answer_list", id());
    }
    match example.qtype {
        qtype::YESNO => {
            if example.answer_start.is_some()
                || example
                    .answer_text
                    .as_deref()
                    .is_some_and(|a| a != "yes" && a != "no")
            {
                bail!(
                    "{}: a yes/no example's answer_text is null, \"yes\" or \"no\" (no answer_start), found {:?} at {:?}",
                    id(),
                    example.answer_text,
                    example.answer_start
                );
            }
            return Ok(());
        }
        qtype::LIST => {
            if example.answer_text.is_some() || example.answer_start.is_some() {
                bail!("{}: a list example's answers are in answer_list", id());
            }
            if let Some(list) = &example.answer_list {
                if list.is_empty() {
                    bail!("{}: empty answer_list (use null for no answer)", id());
                }
                if let Some(a) = list.iter().find(|a| !example.context.contains(a.as_str())) {
                    bail!("{}: list answer {a:?} is not in the context", id());
                }
            }
            return Ok(());
        }
        _ => {}
    }
    match (&example.answer_text, example.answer_start) {
        (None, None) => Ok(()),
        (Some(text), Some(start)) => {
            let found = usize::try_from(start).ok().and_then(|start| {
                let n = text.chars().count();
                let at: String = example.context.chars().skip(start).take(n).collect();
                (at.chars().count() == n).then_some(at)
            });
            match found {
                Some(at) if at == *text => Ok(()),
                Some(at) => bail!(
                    "{}: answer_start {start} points at {at:?}, expected answer_text {text:?}",
                    id()
                ),
                None => bail!(
                    "{}: answer_start {start} + answer length {} is outside the context ({} chars)",
                    id(),
                    text.chars().count(),
                    example.context.chars().count()
                ),
            }
        }
        _ => bail!(
            "{}: answer_text and answer_start must both be set or both be null",
            id()
        ),
    }
}

/// Counts of the official → SQuAD training conversion of one question type.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct TrainCounts {
    pub questions: usize,
    pub questions_without_examples: usize,
    pub snippets: usize,
    pub examples: usize,
    /// Snippets that contain no synonym of the exact answer (factoid: of the answer; list: of any
    /// gold entity; yes/no: none, every snippet is an example).
    pub snippets_without_answer: usize,
    /// Yes/no questions whose exact answer is neither "yes" nor "no" (no examples).
    #[serde(skip_serializing_if = "is_zero")]
    pub unknown_answer: usize,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// A training example of question `q` from one of its snippets.
fn snippet_example(
    q: &OfficialQuestion,
    n: usize,
    snippet: &super::formats::Snippet,
    source_file: &str,
    qtype: &'static str,
) -> Example {
    Example {
        id: format!("{}_{n:03}", q.id),
        question_id: q.id.clone(),
        question: q.body.clone(),
        context: snippet.text.clone(),
        answer_text: None,
        answer_start: None,
        pmid: pmid_of_url(&snippet.document),
        context_source: source::SNIPPET,
        split: Split::Train,
        source_file: source_file.to_string(),
        qtype,
        answer_list: None,
    }
}

/// Training conversion of one question of an exact-answer type (`q.qtype`; others give nothing).
/// Ids are `<qid>_<NNN>` counting kept snippets from 001, as BioBERT's training files.
///
/// - factoid: one example per snippet that contains a synonym of the exact answer. Synonyms are
///   tried in `exact_answer` order; the first one found anywhere in the snippet (case-insensitively)
///   gives the answer text as written in the snippet and its first offset.
/// - yesno: one example per snippet, `answer_text` the exact answer lowercased and trimmed (`yes` or
///   `no`; a question with another answer gives none and is counted).
/// - list: one example per snippet that mentions a gold entity: `answer_list` holds each entity found
///   (its first synonym found, case-insensitively, as written in the snippet), in order of first
///   mention, each text once.
pub fn training_examples(
    q: &OfficialQuestion,
    exact_answer: &[Vec<String>],
    source_file: &str,
    counts: &mut TrainCounts,
) -> Vec<Example> {
    counts.questions += 1;
    let mut out = Vec::new();
    match q.qtype.as_str() {
        qtype::FACTOID => {
            let synonyms: Vec<&str> = exact_answer
                .iter()
                .flatten()
                .map(|s| s.trim())
                .filter(|s| !s.is_empty())
                .collect();
            for snippet in &q.snippets {
                counts.snippets += 1;
                let hit = synonyms
                    .iter()
                    .find_map(|s| find_case_insensitive(&snippet.text, s));
                let Some((start, text)) = hit else {
                    counts.snippets_without_answer += 1;
                    continue;
                };
                let mut e = snippet_example(q, out.len() + 1, snippet, source_file, qtype::FACTOID);
                e.answer_text = Some(text);
                e.answer_start = Some(start as i64);
                out.push(e);
            }
        }
        qtype::YESNO => {
            let answer = exact_answer
                .first()
                .and_then(|a| a.first())
                .map(|a| a.trim().to_lowercase());
            match answer.as_deref() {
                Some(a @ ("yes" | "no")) => {
                    for snippet in &q.snippets {
                        counts.snippets += 1;
                        let mut e =
                            snippet_example(q, out.len() + 1, snippet, source_file, qtype::YESNO);
                        e.answer_text = Some(a.to_string());
                        out.push(e);
                    }
                }
                _ => counts.unknown_answer += 1,
            }
        }
        qtype::LIST => {
            for snippet in &q.snippets {
                counts.snippets += 1;
                // (char offset, gold order, text as written)
                let mut found: Vec<(usize, usize, String)> = exact_answer
                    .iter()
                    .enumerate()
                    .filter_map(|(k, synonyms)| {
                        synonyms
                            .iter()
                            .map(|s| s.trim())
                            .filter(|s| !s.is_empty())
                            .find_map(|s| find_case_insensitive(&snippet.text, s))
                            .map(|(at, text)| (at, k, text))
                    })
                    .collect();
                found.sort();
                let mut entities: Vec<String> = Vec::new();
                for (_, _, text) in found {
                    if !entities
                        .iter()
                        .any(|e| e.to_lowercase() == text.to_lowercase())
                    {
                        entities.push(text);
                    }
                }
                if entities.is_empty() {
                    counts.snippets_without_answer += 1;
                    continue;
                }
                let mut e = snippet_example(q, out.len() + 1, snippet, source_file, qtype::LIST);
                e.answer_list = Some(entities);
                out.push(e);
            }
        }
        _ => {}
    }
    counts.examples += out.len();
    if out.is_empty() {
        counts.questions_without_examples += 1;
    }
    out
}

/// The PMIDs a test question gets examples for, in order, without repeats.
pub fn test_pmids(q: &OfficialQuestion, which: TestDocuments) -> Vec<u64> {
    let from_snippets = q.snippets.iter().filter_map(|s| pmid_of_url(&s.document));
    let mut out: Vec<u64> = Vec::new();
    let mut push = |p: u64| {
        if !out.contains(&p) {
            out.push(p)
        }
    };
    match which {
        TestDocuments::Snippets => from_snippets.for_each(&mut push),
        TestDocuments::Documents => {
            q.documents
                .iter()
                .filter_map(|u| pmid_of_url(u))
                .for_each(&mut push);
            from_snippets.for_each(&mut push);
        }
    }
    out
}

/// A PubMed document as the test conversion needs it (the abstracts-table text contract:
/// `abstract` = sections `Label: text` joined with `\n`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Document {
    pub pmid: u64,
    pub title: Option<String>,
    pub abstract_text: Option<String>,
}

/// BioBERT's test context: `title + " " + abstract`, the abstract's sections (`Label: text` when labelled)
/// joined by single spaces. None when the document has no abstract (BioBERT's test files hold no
/// title-only contexts).
pub fn document_context(doc: &Document) -> Option<String> {
    let abstract_text = doc.abstract_text.as_deref().filter(|a| !a.is_empty())?;
    let abstract_text = abstract_text.replace('\n', " ");
    Some(match doc.title.as_deref().filter(|t| !t.is_empty()) {
        Some(title) => format!("{title} {abstract_text}"),
        None => abstract_text,
    })
}

/// The offline fallback context of one document: the question's distinct snippets of it, in order,
/// joined by spaces.
pub fn snippet_context(q: &OfficialQuestion, pmid: u64) -> Option<String> {
    let mut texts: Vec<&str> = Vec::new();
    for s in &q.snippets {
        let text = s.text.trim();
        if pmid_of_url(&s.document) == Some(pmid) && !text.is_empty() && !texts.contains(&text) {
            texts.push(text);
        }
    }
    (!texts.is_empty()).then(|| texts.join(" "))
}

/// SQuAD-format input carried over unchanged: one example per `qas` entry.
pub fn squad_examples(file: &SquadFile, source_file: &str) -> Result<(Vec<Example>, Split)> {
    let mut out = Vec::new();
    let mut any_answer = false;
    for article in &file.data {
        for paragraph in &article.paragraphs {
            for qa in &paragraph.qas {
                let answer = match qa.answers.as_deref() {
                    None | Some([]) => None,
                    Some([a]) => Some(a),
                    Some(more) => bail!(
                        "{source_file}: example {} has {} answers; one answer per example is supported",
                        qa.id,
                        more.len()
                    ),
                };
                any_answer |= answer.is_some();
                out.push(Example {
                    id: qa.id.clone(),
                    question_id: question_id_of(&qa.id).to_string(),
                    question: qa.question.clone(),
                    context: paragraph.context.clone(),
                    answer_text: answer.map(|a| a.text.clone()),
                    answer_start: answer.map(|a| a.answer_start),
                    pmid: None,
                    context_source: source::SQUAD,
                    split: Split::Train,
                    source_file: source_file.to_string(),
                    qtype: qtype::FACTOID,
                    answer_list: None,
                });
            }
        }
    }
    // A file without a single answer is a test file (BioBERT's test files carry no answers).
    let split = if any_answer {
        Split::Train
    } else {
        Split::Test
    };
    for e in &mut out {
        e.split = split;
    }
    Ok((out, split))
}

/// Examples back to BioBERT's SQuAD JSON: one paragraph per example (as BioBERT writes them); give it
/// factoid examples (SQuAD has no yes/no or list answers).
pub fn to_squad_json(examples: &[Example], version: &str) -> Value {
    let paragraphs: Vec<Value> = examples
        .iter()
        .map(|e| {
            let mut qa = json!({"id": e.id, "question": e.question});
            if let (Some(text), Some(start)) = (&e.answer_text, e.answer_start) {
                qa["answers"] = json!([{"text": text, "answer_start": start}]);
            }
            json!({"context": e.context, "qas": [qa]})
        })
        .collect();
    json!({"version": version, "data": [{"title": version, "paragraphs": paragraphs}]})
}

/// Counts per context source of the test conversion.
pub type SourceCounts = BTreeMap<&'static str, usize>;

#[cfg(test)]
mod tests {
    use super::*;

    fn ex(context: &str, text: &str, start: i64) -> Example {
        Example {
            id: "q_001".into(),
            question_id: "q".into(),
            question: "?".into(),
            context: context.into(),
            answer_text: Some(text.into()),
            answer_start: Some(start),
            pmid: None,
            context_source: source::SNIPPET,
            split: Split::Train,
            source_file: "f.json".into(),
            qtype: qtype::FACTOID,
            answer_list: None,
        }
    }

    #[test]
    fn offsets_are_unicode_scalar_values() {
        assert!(validate(&ex("α-synuclein binds β", "β", 18)).is_ok());
        let err = validate(&ex("α-synuclein binds β", "β", 19))
            .unwrap_err()
            .to_string();
        assert!(err.contains("q_001") && err.contains("f.json"), "{err}");
        assert!(validate(&ex("abc", "c", 3)).is_err());
        assert!(validate(&ex("abc", "c", -1)).is_err());
    }

    #[test]
    fn case_insensitive_find_keeps_text_as_written() {
        assert_eq!(
            find_case_insensitive("Über TFEB and tfeb", "tfeb"),
            Some((5, "TFEB".to_string()))
        );
        assert_eq!(
            find_case_insensitive("αΒγ", "βΓ"),
            Some((1, "Βγ".to_string()))
        );
        assert_eq!(find_case_insensitive("abc", "abcd"), None);
        assert_eq!(find_case_insensitive("abc", ""), None);
    }

    #[test]
    fn question_normalization() {
        assert_eq!(
            normalize_question("  What  is\tTFEB?  "),
            normalize_question("what is tfeb")
        );
        assert_eq!(normalize_question("\"Which gene?\""), "which gene");
    }

    #[test]
    fn document_context_joins_sections_with_spaces() {
        let doc = Document {
            pmid: 1,
            title: Some("T.".into()),
            abstract_text: Some("BACKGROUND: a.\nRESULTS: b.".into()),
        };
        assert_eq!(
            document_context(&doc).unwrap(),
            "T. BACKGROUND: a. RESULTS: b."
        );
        let no_abstract = Document {
            abstract_text: None,
            ..doc
        };
        assert_eq!(document_context(&no_abstract), None);
    }

    fn question(qtype: &str, snippets: &[&str], exact: Value) -> OfficialQuestion {
        OfficialQuestion {
            id: "q".into(),
            qtype: qtype.into(),
            body: "Which?".into(),
            documents: vec![],
            snippets: snippets
                .iter()
                .enumerate()
                .map(|(i, t)| super::super::formats::Snippet {
                    text: t.to_string(),
                    document: format!("http://www.ncbi.nlm.nih.gov/pubmed/{}", 100 + i),
                })
                .collect(),
            exact_answer: Some(exact),
        }
    }

    fn convert(q: &OfficialQuestion) -> (Vec<Example>, TrainCounts) {
        let answers = super::super::formats::exact_answer_lists(q.exact_answer.as_ref()).unwrap();
        let mut counts = TrainCounts::default();
        let out = training_examples(q, &answers, "train.json", &mut counts);
        for e in &out {
            validate(e).unwrap();
        }
        (out, counts)
    }

    #[test]
    fn yesno_training_rows_are_every_snippet_with_the_label() {
        let q = question(
            "yesno",
            &["A binds B.", "No effect was seen."],
            json!(" Yes"),
        );
        let (out, counts) = convert(&q);
        assert_eq!(out.len(), 2);
        assert!(out.iter().all(|e| e.answer_text.as_deref() == Some("yes")
            && e.answer_start.is_none()
            && e.qtype == qtype::YESNO));
        assert_eq!((out[0].id.as_str(), out[1].pmid), ("q_001", Some(101)));
        assert_eq!(counts.snippets_without_answer, 0);
        let (none, counts) = convert(&question("yesno", &["x"], json!("perhaps")));
        assert!(none.is_empty());
        assert_eq!(
            (counts.unknown_answer, counts.questions_without_examples),
            (1, 1)
        );
    }

    #[test]
    fn list_training_rows_hold_the_entities_each_snippet_mentions() {
        let q = question(
            "list",
            &[
                "tp53 and BRCA1 are mutated; brca1 again.",
                "Nothing here.",
                "Only EGFR.",
            ],
            json!([["BRCA1", "breast cancer 1"], ["TP53"], ["EGFR"]]),
        );
        let (out, counts) = convert(&q);
        assert_eq!(out.len(), 2);
        // Order of first mention, text as written, each once.
        assert_eq!(
            out[0].answer_list,
            Some(vec!["tp53".into(), "BRCA1".into()])
        );
        assert_eq!(out[1].answer_list, Some(vec!["EGFR".into()]));
        assert_eq!(
            (out[1].id.as_str(), out[1].answer_text.as_deref()),
            ("q_002", None)
        );
        assert_eq!((counts.snippets, counts.snippets_without_answer), (3, 1));
    }

    #[test]
    fn validation_checks_the_answer_columns_of_each_type() {
        let mut y = ex("ctx", "yes", 0);
        y.qtype = qtype::YESNO;
        assert!(validate(&y).is_err(), "a yes/no row has no offset");
        y.answer_start = None;
        assert!(validate(&y).is_ok());
        y.answer_text = Some("maybe".into());
        assert!(validate(&y).is_err());
        let mut l = ex("BRCA1 and TP53", "x", 0);
        (l.qtype, l.answer_text, l.answer_start) = (qtype::LIST, None, None);
        l.answer_list = Some(vec!["TP53".into()]);
        assert!(validate(&l).is_ok());
        l.answer_list = Some(vec!["tp53".into()]);
        assert!(
            validate(&l)
                .unwrap_err()
                .to_string()
                .contains("not in the context")
        );
        l.answer_list = Some(vec![]);
        assert!(validate(&l).is_err());
        let mut f = ex("abc", "a", 0);
        f.answer_list = Some(vec!["a".into()]);
        assert!(validate(&f).is_err());
    }
}
