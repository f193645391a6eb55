//! Reading BioASQ JSON: the official format (`{"questions": [...]}`) and BioBERT's SQuAD format
//! (`{"data": [{"paragraphs": [...]}]}`), detected per file.

use std::path::Path;

use anyhow::{Context, Result, bail};
use serde::Deserialize;
use serde_json::Value;

/// One input file, parsed.
#[derive(Clone, Debug)]
pub enum InputFile {
    Official(OfficialFile),
    Squad(SquadFile),
}

#[derive(Clone, Debug, Deserialize)]
pub struct OfficialFile {
    pub questions: Vec<OfficialQuestion>,
}

#[derive(Clone, Debug, Deserialize)]
pub struct OfficialQuestion {
    pub id: String,
    #[serde(rename = "type")]
    pub qtype: String,
    pub body: String,
    #[serde(default)]
    pub documents: Vec<String>,
    #[serde(default)]
    pub snippets: Vec<Snippet>,
    /// factoid/list: list of synonym lists (older files: a flat list); yesno: a string; summary: absent.
    #[serde(default)]
    pub exact_answer: Option<Value>,
}

#[derive(Clone, Debug, Deserialize)]
pub struct Snippet {
    pub text: String,
    pub document: String,
}

#[derive(Clone, Debug, Deserialize)]
pub struct SquadFile {
    pub data: Vec<SquadArticle>,
}

#[derive(Clone, Debug, Deserialize)]
pub struct SquadArticle {
    pub paragraphs: Vec<SquadParagraph>,
}

#[derive(Clone, Debug, Deserialize)]
pub struct SquadParagraph {
    pub context: String,
    pub qas: Vec<SquadQa>,
}

#[derive(Clone, Debug, Deserialize)]
pub struct SquadQa {
    pub id: String,
    pub question: String,
    /// Absent in BioBERT's test files.
    #[serde(default)]
    pub answers: Option<Vec<SquadAnswer>>,
}

#[derive(Clone, Debug, Deserialize)]
pub struct SquadAnswer {
    pub text: String,
    pub answer_start: i64,
}

/// Message for a serde_json error, with the file, line and column it happened at.
fn json_error(path: &Path, what: &str, e: &serde_json::Error) -> anyhow::Error {
    anyhow::anyhow!(
        "{}: {what} at line {} column {}: {e}",
        path.display(),
        e.line(),
        e.column()
    )
}

/// Read one BioASQ JSON file and detect its format from the top-level keys.
pub fn read_input(path: &Path) -> Result<InputFile> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    parse_input(path, &bytes)
}

/// Parse `bytes` (the content of `path`); `path` only names the file in errors.
pub fn parse_input(path: &Path, bytes: &[u8]) -> Result<InputFile> {
    // Syntax first (errors carry line and column), then the structure of the detected format
    // (parsed again from the bytes so structural errors carry line and column too).
    let value: Value =
        serde_json::from_slice(bytes).map_err(|e| json_error(path, "malformed JSON", &e))?;
    let Value::Object(top) = &value else {
        bail!(
            "{}: expected a JSON object with \"questions\" (official BioASQ) or \"data\" (SQuAD), found {}",
            path.display(),
            kind(&value)
        );
    };
    if top.contains_key("questions") {
        let file: OfficialFile = serde_json::from_slice(bytes)
            .map_err(|e| json_error(path, "not an official BioASQ file", &e))?;
        Ok(InputFile::Official(file))
    } else if top.contains_key("data") {
        let file: SquadFile =
            serde_json::from_slice(bytes).map_err(|e| json_error(path, "not a SQuAD file", &e))?;
        Ok(InputFile::Squad(file))
    } else {
        let keys: Vec<&str> = top.keys().map(String::as_str).collect();
        bail!(
            "{}: expected a top-level \"questions\" (official BioASQ) or \"data\" (SQuAD) key, found keys {keys:?}",
            path.display()
        )
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// The PMID at the end of a BioASQ document URL: its last path segment, all digits
/// (`http://www.ncbi.nlm.nih.gov/pubmed/23001136`, `https://pubmed.ncbi.nlm.nih.gov/123/`).
pub fn pmid_of_url(url: &str) -> Option<u64> {
    let last = url.trim().trim_end_matches('/').rsplit('/').next()?;
    if last.is_empty() || !last.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    last.parse().ok()
}

/// `exact_answer` as a list of synonym lists. Factoid/list: nested lists are kept; a flat list of strings
/// becomes one synonym list per entry; a bare string one list of one. yesno: `[["yes"]]`. Absent: `[]`.
pub fn exact_answer_lists(value: Option<&Value>) -> Result<Vec<Vec<String>>, String> {
    let Some(value) = value else {
        return Ok(Vec::new());
    };
    match value {
        Value::Null => Ok(Vec::new()),
        Value::String(s) => Ok(vec![vec![s.clone()]]),
        Value::Array(items) => items
            .iter()
            .map(|item| match item {
                Value::String(s) => Ok(vec![s.clone()]),
                Value::Array(syns) => syns
                    .iter()
                    .map(|s| match s {
                        Value::String(s) => Ok(s.clone()),
                        other => Err(format!("a synonym is {}, expected a string", kind(other))),
                    })
                    .collect(),
                other => Err(format!(
                    "an answer is {}, expected a string or a list of strings",
                    kind(other)
                )),
            })
            .collect(),
        other => Err(format!(
            "exact_answer is {}, expected a list or a string",
            kind(other)
        )),
    }
}

/// The question id of a SQuAD example id: BioBERT writes `<question id>_<NNN>`.
pub fn question_id_of(example_id: &str) -> &str {
    match example_id.rsplit_once('_') {
        Some((q, n)) if !q.is_empty() && !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => {
            q
        }
        _ => example_id,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn malformed_json_names_file_line_and_column() {
        let err = parse_input(
            Path::new("x/bad.json"),
            b"{\"questions\": [\n  {\"id\": }\n]}",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("x/bad.json"), "{err}");
        assert!(err.contains("line 2 column"), "{err}");
    }

    #[test]
    fn structural_error_names_line() {
        let err = parse_input(
            Path::new("q.json"),
            b"{\"questions\": [\n{\"id\": \"a\", \"type\": \"factoid\"}\n]}",
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("missing field `body`") && err.contains("line 2"),
            "{err}"
        );
    }

    #[test]
    fn unknown_top_level_is_an_error() {
        let err = parse_input(Path::new("u.json"), b"{\"foo\": 1}")
            .unwrap_err()
            .to_string();
        assert!(err.contains("u.json") && err.contains("foo"), "{err}");
    }

    #[test]
    fn exact_answers_and_urls() {
        let nested: Value = serde_json::json!([["a", "a2"], ["b"]]);
        assert_eq!(
            exact_answer_lists(Some(&nested)).unwrap(),
            vec![vec!["a".to_string(), "a2".into()], vec!["b".into()]]
        );
        let flat: Value = serde_json::json!(["a", "b"]);
        assert_eq!(
            exact_answer_lists(Some(&flat)).unwrap(),
            vec![vec!["a".to_string()], vec!["b".into()]]
        );
        assert!(exact_answer_lists(Some(&serde_json::json!(3))).is_err());
        assert_eq!(
            pmid_of_url("http://www.ncbi.nlm.nih.gov/pubmed/23001136"),
            Some(23001136)
        );
        assert_eq!(pmid_of_url("http://x/pubmed/"), None);
        assert_eq!(
            question_id_of("56c073fcef6e394741000020_001"),
            "56c073fcef6e394741000020"
        );
        assert_eq!(question_id_of("plain"), "plain");
    }

    #[test]
    fn urls() {
        assert_eq!(
            pmid_of_url("http://www.ncbi.nlm.nih.gov/pubmed/24392102"),
            Some(24392102)
        );
        assert_eq!(
            pmid_of_url("https://pubmed.ncbi.nlm.nih.gov/123/"),
            Some(123)
        );
        assert_eq!(pmid_of_url("http://www.ncbi.nlm.nih.gov/pubmed/"), None);
        assert_eq!(pmid_of_url("http://x/pubmed/12a"), None);
    }
}
