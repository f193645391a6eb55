//! The fixed layout under the data directory (`--data-dir`, default `data`).

use std::path::{Path, PathBuf};

/// Paths of every folder the stages read and write, relative to one data directory.
#[derive(Clone, Debug)]
pub struct Layout {
    pub root: PathBuf,
}

impl Layout {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }
    pub fn root(&self) -> &Path {
        &self.root
    }
    /// `raw/pubmed/`: downloaded XML, with `baseline/`, `updatefiles/` and `efetch/` below.
    pub fn raw_pubmed(&self) -> PathBuf {
        self.root.join("raw/pubmed")
    }
    pub fn raw_baseline(&self) -> PathBuf {
        self.root.join("raw/pubmed/baseline")
    }
    pub fn raw_updatefiles(&self) -> PathBuf {
        self.root.join("raw/pubmed/updatefiles")
    }
    /// `raw/pubmed/efetch/`: records fetched by PMID for the BioASQ join.
    pub fn raw_efetch(&self) -> PathBuf {
        self.root.join("raw/pubmed/efetch")
    }
    /// `raw/bioasq/`: BioASQ JSON files (official or BioBERT SQuAD format).
    pub fn raw_bioasq(&self) -> PathBuf {
        self.root.join("raw/bioasq")
    }
    /// `parquet/abstracts/`: one Parquet part per input XML file.
    pub fn parquet_abstracts(&self) -> PathBuf {
        self.root.join("parquet/abstracts")
    }
    /// `parquet/deletions/`: the DeleteCitation rows of each input file.
    pub fn parquet_deletions(&self) -> PathBuf {
        self.root.join("parquet/deletions")
    }
    /// `parquet/current/`: latest version of every PMID, deletions applied.
    pub fn parquet_current(&self) -> PathBuf {
        self.root.join("parquet/current")
    }
    /// `shards/{train,val}/`: packed token sequences.
    pub fn shards(&self, split: &str) -> PathBuf {
        self.root.join("shards").join(split)
    }
    pub fn shards_root(&self) -> PathBuf {
        self.root.join("shards")
    }
    /// `tokens/`: per-part token streams, the cache between tokenizing and packing.
    pub fn tokens(&self) -> PathBuf {
        self.root.join("tokens")
    }
    /// `bioasq/`: SQuAD-style examples and golden answers.
    pub fn bioasq(&self) -> PathBuf {
        self.root.join("bioasq")
    }
    /// `models/`: Hugging Face model and tokenizer files.
    pub fn models(&self) -> PathBuf {
        self.root.join("models")
    }
    /// `tokenizer/`: tokenizers trained by `pipeline train-tokenizer`.
    pub fn tokenizer(&self) -> PathBuf {
        self.root.join("tokenizer")
    }
    /// `manifests/STAGE.json`: what each stage last produced and from what.
    pub fn manifests(&self) -> PathBuf {
        self.root.join("manifests")
    }
    pub fn manifest(&self, stage: &str) -> PathBuf {
        self.manifests().join(format!("{stage}.json"))
    }
    /// `runs/`: the trainer's run directories.
    pub fn runs(&self) -> PathBuf {
        self.root.join("runs")
    }
}

/// Files of `dir` whose name ends with `suffix` (hidden files and temporaries skipped), sorted by name;
/// none when `dir` does not exist.
pub fn files_with_suffix(dir: &Path, suffix: &str) -> anyhow::Result<Vec<PathBuf>> {
    use anyhow::Context;
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("listing {}", dir.display())),
    };
    let mut out = Vec::new();
    for entry in entries {
        let path = entry
            .with_context(|| format!("listing {}", dir.display()))?
            .path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if name.ends_with(suffix) && !name.starts_with('.') && path.is_file() {
            out.push(path);
        }
    }
    out.sort();
    Ok(out)
}
