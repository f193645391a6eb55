//! PMIDs cited by BioASQ test sets, excluded from both splits so evaluation never sees a document the
//! model was trained (or validated) on.
//!
//! Accepted inputs: BioASQ golden JSON (`{"questions": [{"documents": [URL], "snippets": [{"document":
//! URL}]}]}`), or a directory of `*.json` files (non-recursive, name order). BioBERT SQuAD files
//! (`{"data": [...]}`) carry no PMIDs; they are accepted and reported with 0 PMIDs. A URL's PMID is its
//! last path segment of digits (`http://www.ncbi.nlm.nih.gov/pubmed/24392102`,
//! `https://pubmed.ncbi.nlm.nih.gov/24392102/`).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::Serialize;
use serde_json::Value;

use crate::bioasq::formats::pmid_of_url;

/// What one decontamination file contributed.
#[derive(Clone, Debug, Serialize)]
pub struct SourceCount {
    pub path: String,
    /// `bioasq-golden` or `squad` (no PMIDs).
    pub format: &'static str,
    pub questions: usize,
    pub pmids: usize,
}

/// The excluded PMIDs and where they came from.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Decontamination {
    pub pmids: BTreeSet<u64>,
    pub sources: Vec<SourceCount>,
    /// The files read, for the stage's inputs.
    #[serde(skip)]
    pub files: Vec<PathBuf>,
}

/// Expand directories to their `*.json` files (name order).
pub fn expand(paths: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for path in paths {
        if path.is_dir() {
            files.extend(schemas::layout::files_with_suffix(path, ".json")?);
        } else if path.is_file() {
            files.push(path.clone());
        } else {
            bail!(
                "decontamination source {} does not exist (configured in [tokenize] decontaminate)",
                path.display()
            );
        }
    }
    Ok(files)
}

/// Read every configured source.
pub fn load(paths: &[PathBuf], data_dir: &Path) -> Result<Decontamination> {
    let mut out = Decontamination {
        files: expand(paths)?,
        ..Default::default()
    };
    for file in out.files.clone() {
        let bytes = std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
        let json: Value = serde_json::from_slice(&bytes)
            .with_context(|| format!("parsing {} as JSON", file.display()))?;
        let rel = schemas::manifest::relative_path(data_dir, &file);
        if let Some(questions) = json.get("questions") {
            let questions = questions
                .as_array()
                .with_context(|| format!("{}: `questions` is not an array", file.display()))?;
            let mut pmids = BTreeSet::new();
            for (qi, q) in questions.iter().enumerate() {
                let mut urls: Vec<&Value> = Vec::new();
                if let Some(docs) = q.get("documents").and_then(Value::as_array) {
                    urls.extend(docs);
                }
                if let Some(snippets) = q.get("snippets").and_then(Value::as_array) {
                    urls.extend(snippets.iter().filter_map(|s| s.get("document")));
                }
                for url in urls {
                    let text = url.as_str().with_context(|| {
                        format!(
                            "{}: question {qi}: document {url} is not a string",
                            file.display()
                        )
                    })?;
                    let pmid = pmid_of_url(text).with_context(|| {
                        format!(
                            "{}: question {qi}: no PMID in document URL {text:?}",
                            file.display()
                        )
                    })?;
                    pmids.insert(pmid);
                }
            }
            out.sources.push(SourceCount {
                path: rel,
                format: "bioasq-golden",
                questions: questions.len(),
                pmids: pmids.len(),
            });
            out.pmids.extend(pmids);
        } else if json.get("data").is_some() {
            // BioBERT SQuAD test files hold contexts only; they cite no PMIDs.
            out.sources.push(SourceCount {
                path: rel,
                format: "squad",
                questions: 0,
                pmids: 0,
            });
        } else {
            bail!(
                "{}: neither BioASQ golden JSON (`questions`) nor SQuAD JSON (`data`)",
                file.display()
            );
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sample_test_batches_and_bad_files() {
        let sample = Path::new(env!("CARGO_MANIFEST_DIR")).join("../data/sample/bioasq");
        let golden = sample.join("test-batch1_golden.json");
        if !golden.exists() {
            println!("SKIP: {} absent", golden.display());
            return;
        }
        let d = load(
            &[golden.clone(), sample.join("squad-test-sample.json")],
            &sample,
        )
        .unwrap();
        assert_eq!(d.sources[0].format, "bioasq-golden");
        assert_eq!(d.sources[1].format, "squad");
        assert!(d.pmids.contains(&90000048) && d.pmids.contains(&90000049));
        // Every documents URL and snippet document of the file is in the set.
        let json: Value = serde_json::from_slice(&std::fs::read(&golden).unwrap()).unwrap();
        for q in json["questions"].as_array().unwrap() {
            for u in q["documents"].as_array().unwrap() {
                assert!(d.pmids.contains(&pmid_of_url(u.as_str().unwrap()).unwrap()));
            }
        }
        let dir = tempfile::tempdir().unwrap();
        let bad = dir.path().join("bad.json");
        std::fs::write(
            &bad,
            r#"{"questions":[{"documents":["http://x/pubmed/abc"]}]}"#,
        )
        .unwrap();
        let err = format!("{:#}", load(&[bad], dir.path()).unwrap_err());
        assert!(
            err.contains("bad.json") && err.contains("question 0"),
            "{err}"
        );
        assert!(load(&[dir.path().join("missing.json")], dir.path()).is_err());
    }
}
