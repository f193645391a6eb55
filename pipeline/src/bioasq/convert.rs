//! Official BioASQ → SQuAD-style examples, SQuAD carry-over, and the checks every example passes.
//!
//! Offsets are character offsets counted in Unicode scalar values, as Python `str` indices (SQuAD's
//! convention), never bytes.

use std::collections::BTreeMap;

use anyhow::{Result, bail};
use serde::Serialize;
use serde_json::{Value, json};

use schemas::bioasq::{Example, Split, source};

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

/// Check that `answer_start` points at `answer_text` inside `context` (both set or both null).
pub fn validate(example: &Example) -> Result<()> {
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
                    "example {} ({}): answer_start {start} points at {at:?}, expected answer_text {text:?}",
                    example.id,
                    example.source_file
                ),
                None => bail!(
                    "example {} ({}): answer_start {start} + answer length {} is outside the context ({} chars)",
                    example.id,
                    example.source_file,
                    text.chars().count(),
                    example.context.chars().count()
                ),
            }
        }
        _ => bail!(
            "example {} ({}): answer_text and answer_start must both be set or both be null",
            example.id,
            example.source_file
        ),
    }
}

/// Counts of the official → SQuAD training conversion.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct TrainCounts {
    pub questions: usize,
    pub questions_without_examples: usize,
    pub snippets: usize,
    pub examples: usize,
    /// Snippets that contain no synonym of the exact answer.
    pub snippets_without_answer: usize,
}

/// Training conversion of one factoid question: one example per snippet that contains a synonym of the
/// exact answer. Synonyms are tried in `exact_answer` order; the first one found anywhere in the
/// snippet (case-insensitively) gives the answer text as written in the snippet and its first offset.
/// Ids are `<qid>_<NNN>` counting kept snippets from 001, as BioBERT's training files.
pub fn training_examples(
    q: &OfficialQuestion,
    exact_answer: &[Vec<String>],
    source_file: &str,
    counts: &mut TrainCounts,
) -> Vec<Example> {
    let synonyms: Vec<&str> = exact_answer
        .iter()
        .flatten()
        .map(|s| s.trim())
        .filter(|s| !s.is_empty())
        .collect();
    counts.questions += 1;
    let mut out = Vec::new();
    for snippet in &q.snippets {
        counts.snippets += 1;
        let hit = synonyms
            .iter()
            .find_map(|s| find_case_insensitive(&snippet.text, s));
        let Some((start, text)) = hit else {
            counts.snippets_without_answer += 1;
            continue;
        };
        out.push(Example {
            id: format!("{}_{:03}", q.id, out.len() + 1),
            question_id: q.id.clone(),
            question: q.body.clone(),
            context: snippet.text.clone(),
            answer_text: Some(text),
            answer_start: Some(start as i64),
            pmid: pmid_of_url(&snippet.document),
            context_source: source::SNIPPET,
            split: Split::Train,
            source_file: source_file.to_string(),
        });
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

/// Examples back to BioBERT's SQuAD JSON: one paragraph per example (as BioBERT writes them).
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
}
