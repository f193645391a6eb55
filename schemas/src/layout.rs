//! The data directory (`--data-dir`, default `data`): where every stage reads and writes.
//!
//! Both crates ask [`Layout`] for every path under the data directory, so a folder is named in
//! exactly one place. A layout over an empty root gives the paths relative to the data directory
//! (what configs store, e.g. `Layout::relative().bioasq_table("bioasq-4b", "train")`).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

/// The training split of the shards and of the BioASQ task tables.
pub const TRAIN: &str = "train";
/// The validation split of the shards.
pub const VAL: &str = "val";
/// The test split of the BioASQ task tables.
pub const TEST: &str = "test";
/// The PubMed domain: its shards are `shards/{train,val}`; every other corpus's are
/// `shards/<name>/{train,val}`.
pub const PUBMED: &str = "pubmed";

/// Paths of every folder and table the stages read and write, under one data directory.
#[derive(Clone, Debug)]
pub struct Layout {
    pub root: PathBuf,
}

impl Layout {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }
    /// Paths relative to the data directory.
    pub fn relative() -> Self {
        Self::new("")
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
    /// `raw/pubmedqa/`: PubMedQA's `ori_pqal.json` and `test_ground_truth.json`.
    pub fn raw_pubmedqa(&self) -> PathBuf {
        self.root.join("raw/pubmedqa")
    }
    /// `raw/corpus/<name>/`: the raw files of the general-domain corpus `[corpus.<name>]`, each at
    /// its path inside the dataset repository (`pipeline corpus-download`).
    pub fn raw_corpus(&self, name: &str) -> PathBuf {
        self.root.join("raw/corpus").join(name)
    }
    /// `parquet/corpus/<name>/`: one Parquet part of documents per raw file of the corpus
    /// (`pipeline corpus`, [`crate::corpus`]).
    pub fn parquet_corpus(&self, name: &str) -> PathBuf {
        self.root.join("parquet/corpus").join(name)
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
    /// `shards/{train,val}/`: packed token sequences ([`TRAIN`], [`VAL`]).
    pub fn shards(&self, split: &str) -> PathBuf {
        self.shards_root().join(split)
    }
    pub fn shards_root(&self) -> PathBuf {
        self.root.join("shards")
    }
    /// The shards of one domain's split: [`PUBMED`]'s are `shards/<split>`, a general-domain
    /// corpus's (`[corpus.<name>]`) `shards/<name>/<split>`.
    pub fn domain_shards(&self, domain: &str, split: &str) -> PathBuf {
        if domain == PUBMED {
            self.shards(split)
        } else {
            self.shards_root().join(domain).join(split)
        }
    }
    /// `tokens/`: per-part token streams, the cache between tokenizing and packing.
    pub fn tokens(&self) -> PathBuf {
        self.root.join("tokens")
    }
    /// `tokens/corpus/<name>/`: the token files of a general-domain corpus's parts.
    pub fn corpus_tokens(&self, name: &str) -> PathBuf {
        self.tokens().join("corpus").join(name)
    }
    /// `bioasq/`: SQuAD-style examples and golden answers.
    pub fn bioasq(&self) -> PathBuf {
        self.root.join("bioasq")
    }
    /// `bioasq/<task>/<split>.arrow`: the examples of one task's split ([`TRAIN`], [`TEST`]).
    pub fn bioasq_table(&self, task: &str, split: &str) -> PathBuf {
        self.bioasq().join(task).join(format!("{split}.arrow"))
    }
    /// `bioasq/examples.arrow`: every converted example of every input file.
    pub fn bioasq_examples(&self) -> PathBuf {
        self.bioasq().join("examples.arrow")
    }
    /// `bioasq/golden.arrow`: the golden answers of every official file.
    pub fn bioasq_golden(&self) -> PathBuf {
        self.bioasq().join("golden.arrow")
    }
    /// `pubmedqa/`: the PubMedQA tables.
    pub fn pubmedqa(&self) -> PathBuf {
        self.root.join("pubmedqa")
    }
    /// `pubmedqa/<split>.arrow`: PubMedQA's training ([`TRAIN`], with the cross-validation folds)
    /// or test ([`TEST`]) questions.
    pub fn pubmedqa_table(&self, split: &str) -> PathBuf {
        self.pubmedqa().join(format!("{split}.arrow"))
    }
    /// `models/`: Hugging Face model and tokenizer files.
    pub fn models(&self) -> PathBuf {
        self.root.join("models")
    }
    /// `tokenizer/`: tokenizers trained by `pipeline train-tokenizer`.
    pub fn tokenizer(&self) -> PathBuf {
        self.root.join("tokenizer")
    }
    /// `tokenizer/tokenizer.json`: what `pipeline train-tokenizer` writes and `pipeline tokenize`
    /// encodes with, unless configured otherwise.
    pub fn tokenizer_file(&self) -> PathBuf {
        self.tokenizer().join("tokenizer.json")
    }
    /// `manifests/STAGE.json`: what each stage last produced and from what.
    pub fn manifests(&self) -> PathBuf {
        self.root.join("manifests")
    }
    pub fn manifest(&self, stage: &str) -> PathBuf {
        self.manifests().join(format!("{stage}.json"))
    }
    /// `manifests/.STAGE.lock`: held while a run re-reads, changes and saves `STAGE.json`, so runs
    /// in several processes (the tasks of a job array) keep each other's units.
    pub fn manifest_lock(&self, stage: &str) -> PathBuf {
        self.manifests().join(format!(".{stage}.lock"))
    }
    /// `runs/`: the trainer's run directories.
    pub fn runs(&self) -> PathBuf {
        self.root.join("runs")
    }
    /// `runs/finetune-<task>/`: the default run directory of fine-tuning on `task`.
    pub fn finetune_run(&self, task: &str) -> PathBuf {
        self.runs().join(format!("finetune-{task}"))
    }
}

/// Files of `dir` whose name ends with `suffix` (hidden files and temporaries skipped), sorted by
/// name; none when `dir` does not exist. The one directory listing of both crates.
pub fn files_with_suffix(dir: &Path, suffix: &str) -> Result<Vec<PathBuf>> {
    entries(dir, |name, path| name.ends_with(suffix) && path.is_file())
}

/// Folders inside `dir` (hidden ones skipped), sorted by name; none when `dir` does not exist.
pub fn subdirectories(dir: &Path) -> Result<Vec<PathBuf>> {
    entries(dir, |_, path| path.is_dir())
}

/// The entries of `dir` that are not hidden and that `keep(name, path)` accepts, sorted by name.
fn entries(dir: &Path, keep: impl Fn(&str, &Path) -> bool) -> Result<Vec<PathBuf>> {
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
        if !name.starts_with('.') && keep(name, &path) {
            out.push(path);
        }
    }
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_layout_gives_paths_inside_the_data_directory() {
        let l = Layout::relative();
        assert_eq!(
            l.bioasq_table("bioasq-4b", TRAIN),
            Path::new("bioasq/bioasq-4b/train.arrow")
        );
        assert_eq!(l.bioasq_golden(), Path::new("bioasq/golden.arrow"));
        assert_eq!(l.pubmedqa_table(TEST), Path::new("pubmedqa/test.arrow"));
        assert_eq!(Layout::new("d").shards(VAL), Path::new("d/shards/val"));
        assert_eq!(l.domain_shards(PUBMED, TRAIN), Path::new("shards/train"));
        assert_eq!(l.domain_shards("c4", VAL), Path::new("shards/c4/val"));
        assert_eq!(l.raw_corpus("c4"), Path::new("raw/corpus/c4"));
        assert_eq!(l.parquet_corpus("c4"), Path::new("parquet/corpus/c4"));
        assert_eq!(l.corpus_tokens("c4"), Path::new("tokens/corpus/c4"));
    }

    #[test]
    fn listing_skips_hidden_files_and_sorts() {
        let dir = std::env::temp_dir().join(format!("layout-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for name in ["b.arrow", "a.arrow", ".a.arrow.tmp-1", "c.txt"] {
            std::fs::write(dir.join(name), b"x").unwrap();
        }
        let names: Vec<String> = files_with_suffix(&dir, ".arrow")
            .unwrap()
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["a.arrow", "b.arrow"]);
        assert!(
            files_with_suffix(&dir.join("absent"), ".arrow")
                .unwrap()
                .is_empty()
        );
        for sub in ["z", "y", ".hidden"] {
            std::fs::create_dir_all(dir.join(sub)).unwrap();
        }
        assert_eq!(
            subdirectories(&dir).unwrap(),
            [dir.join("y"), dir.join("z")]
        );
        assert!(subdirectories(&dir.join("absent")).unwrap().is_empty());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
