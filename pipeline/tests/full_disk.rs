//! A full disk in the middle of every stage: the stage fails with a clear error and leaves no
//! temporary file behind (`.NAME.tmp-*`); run again with space, it finishes with the same outputs as
//! a run that never failed. The full disk is simulated in-process
//! (`schemas::atomic::limit_writes_under`: writes under the data directory past a byte budget fail
//! with "No space left on device"), so no privileges or tmpfs are needed.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use pipeline::config::TokenizeConfig;
use pipeline::{Config, Ctx};

fn config() -> Config {
    toml::from_str(
        r#"
[current]
partitions = 2
[train_tokenizer]
vocab_size = 600
[tokenize]
seq_len = 64
shard_sequences = 32
val_fraction = 0.2
decontaminate = ["raw/bioasq/test-batch1_golden.json"]
[bioasq.tasks.sample]
year = 4
train = "training-sample.json"
test = ["test-batch1_golden.json", "test-batch2_golden.json"]
[corpus.wikipedia]
repo = "wikimedia/wikipedia"
files = ["20231101.en/train-00000-of-00001.parquet"]
title_field = "title"
[corpus.c4]
repo = "allenai/c4"
format = "jsonl.gz"
files = ["en/c4-train.00000-of-00001.json.gz"]
"#,
    )
    .unwrap()
}

fn ctx(dir: &Path, force: bool) -> Ctx {
    Ctx::new(Some(dir.to_path_buf()), config(), force)
}

/// A data directory with the sample's raw PubMed and BioASQ files.
fn sample_data() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let sample = common::sample();
    for sub in ["baseline", "updatefiles"] {
        let to = dir.path().join("raw/pubmed").join(sub);
        std::fs::create_dir_all(&to).unwrap();
        for f in
            schemas::layout::files_with_suffix(&sample.join("pubmed").join(sub), ".xml.gz").unwrap()
        {
            std::fs::copy(&f, to.join(f.file_name().unwrap())).unwrap();
        }
    }
    let raw_bioasq = dir.path().join("raw/bioasq");
    std::fs::create_dir_all(&raw_bioasq).unwrap();
    for f in schemas::layout::files_with_suffix(&sample.join("bioasq"), ".json").unwrap() {
        std::fs::copy(&f, raw_bioasq.join(f.file_name().unwrap())).unwrap();
    }
    copy_tree(&sample.join("corpus"), &dir.path().join("raw/corpus"));
    // PubMedQA's files, when the fixtures are there (the pubmedqa stage runs then).
    if let Some(fx) = pubmedqa_fixtures() {
        let raw = dir.path().join("raw/pubmedqa");
        std::fs::create_dir_all(&raw).unwrap();
        for name in [
            pipeline::pubmedqa::ORI_PQAL,
            pipeline::pubmedqa::TEST_GROUND_TRUTH,
        ] {
            std::fs::copy(fx.join(name), raw.join(name)).unwrap();
        }
    }
    dir
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let p = entry.unwrap().path();
        let dest = to.join(p.file_name().unwrap());
        if p.is_dir() {
            copy_tree(&p, &dest);
        } else {
            std::fs::copy(&p, &dest).unwrap();
        }
    }
}

fn pubmedqa_fixtures() -> Option<PathBuf> {
    testkit::fixtures::fixtures_with(&["pubmedqa/ori_pqal.json", "pubmedqa/test_ground_truth.json"])
        .map(|d| d.join("pubmedqa"))
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Step {
    ParseAndCurrent,
    TrainTokenizer,
    Tokenize,
    Pack,
    /// The corpus stage (Wikipedia Parquet and C4 json.gz into parquet/corpus).
    Corpus,
    /// tokenize-<name> and pack-<name> of every corpus.
    CorpusShards,
    Bioasq,
    Pubmedqa,
}

/// The stages in order; `pubmedqa` only with its fixture files.
fn steps() -> Vec<Step> {
    let mut v = vec![
        Step::ParseAndCurrent,
        Step::TrainTokenizer,
        Step::Bioasq,
        Step::Tokenize,
        Step::Pack,
        Step::Corpus,
        Step::CorpusShards,
    ];
    if pubmedqa_fixtures().is_some() {
        v.push(Step::Pubmedqa);
    } else {
        println!("SKIP (part): PubMedQA fixtures not found, the pubmedqa stage is not run");
    }
    v
}

fn run(step: Step, c: &Ctx) -> anyhow::Result<()> {
    let tokenize = || TokenizeConfig::resolve(c, &Default::default());
    match step {
        Step::ParseAndCurrent => common::parse_command(c, Default::default()).map(|_| ()),
        Step::TrainTokenizer => pipeline::train_tokenizer::run(c, Default::default()),
        Step::Tokenize => pipeline::tokenize::run(c, &tokenize()?).map(|_| ()),
        Step::Pack => {
            let s = tokenize()?;
            let files = pipeline::tokenize::token_files(c, &s)?;
            pipeline::tokenize::pack::run(c, &s, &files).map(|_| ())
        }
        Step::Corpus => pipeline::corpus::run(c, &Default::default()).map(|_| ()),
        Step::CorpusShards => {
            let s = tokenize()?;
            for domain in pipeline::tokenize::Domain::corpora(c)? {
                let report = pipeline::tokenize::run_domain(c, &s, &domain, None)?;
                pipeline::tokenize::pack::run_domain(c, &s, &domain, &report.token_files)?;
            }
            Ok(())
        }
        Step::Bioasq => {
            let mut args = pipeline::bioasq::Args::new();
            args.offline = true;
            pipeline::bioasq::run(c, args).map(|_| ())
        }
        Step::Pubmedqa => pipeline::pubmedqa::run(
            c,
            pipeline::pubmedqa::Args {
                offline: true,
                ..Default::default()
            },
        )
        .map(|_| ()),
    }
}

/// Every temporary (`.NAME.tmp-*`) below `dir`.
fn temporaries(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            if name.contains(schemas::atomic::TEMP_MARKER) {
                out.push(path.clone());
            }
            if path.is_dir() {
                stack.push(path);
            }
        }
    }
    out
}

/// The data files (manifests left out: they record mtimes).
fn outputs(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    testkit::fixtures::snapshot(dir)
        .unwrap()
        .into_iter()
        .filter(|(p, _)| !p.starts_with("manifests") && !p.starts_with("raw"))
        .map(|(p, (_, bytes))| (p, bytes))
        .collect()
}

#[test]
fn a_full_disk_in_any_stage_leaves_no_temporary_files() {
    if !common::sample().join("pubmed/baseline").is_dir() {
        println!("SKIP: sample absent");
        return;
    }
    // The outputs of runs that never failed.
    let reference = sample_data();
    for step in steps() {
        run(step, &ctx(reference.path(), false)).unwrap();
    }
    let want = outputs(reference.path());

    let data = sample_data();
    let dir = data.path();
    let mut failures = 0;
    for step in steps() {
        // How much this stage writes when it runs whole (forced, so every unit writes).
        let total = {
            let limit = schemas::atomic::limit_writes_under(dir, u64::MAX);
            run(step, &ctx(dir, true)).unwrap();
            limit.written()
        };
        assert!(total > 0, "{step:?} wrote nothing");
        let mut budgets = vec![0, 1, 100, total / 10, total / 3, total / 2, total * 9 / 10];
        budgets.dedup();
        for budget in budgets {
            let limit = schemas::atomic::limit_writes_under(dir, budget);
            let result = run(step, &ctx(dir, true));
            drop(limit);
            if budget <= total / 2 {
                let err = format!(
                    "{:#}",
                    result.as_ref().err().unwrap_or_else(|| {
                        panic!("{step:?} with {budget} of {total} bytes did not fail")
                    })
                );
                assert!(err.contains("No space left on device"), "{step:?}: {err}");
            }
            if result.is_err() {
                failures += 1;
            }
            let left = temporaries(dir);
            assert!(
                left.is_empty(),
                "{step:?} failing after {budget} of {total} bytes left {left:?}"
            );
        }
        // With space again, the stage finishes.
        run(step, &ctx(dir, false)).unwrap();
    }
    assert!(failures >= 25, "only {failures} failed runs");
    // A later stage failing may have removed nothing of an earlier one; re-running the chain with
    // space gives exactly the outputs of runs that never failed.
    for step in steps() {
        run(step, &ctx(dir, false)).unwrap();
    }
    assert_eq!(
        outputs(dir).keys().collect::<Vec<_>>(),
        want.keys().collect::<Vec<_>>()
    );
    assert!(
        outputs(dir) == want,
        "outputs differ from a run that never failed"
    );
    assert!(temporaries(dir).is_empty());
}
