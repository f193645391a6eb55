//! End to end: sample PubMed XML → `pipeline parse` (abstracts + current view) → `pipeline
//! train-tokenizer` → `pipeline tokenize` → shards; and the GPT-NeoX expect ids through parse.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use pipeline::config::TokenizeConfig;
use pipeline::tokenize::pack::split_of;
use pipeline::tokenize::token_file::TokenFileReader;
use pipeline::tokenize::{self, LoadedTokenizer, document_text};
use pipeline::{Config, Ctx, Layout};
use schemas::shards::ShardSet;
use testkit::synthetic::read_expect_jsonl;

use testkit::fixtures::{fixtures_dir as fixtures, sample_dir};

fn ctx(dir: &Path, toml: &str) -> Ctx {
    let config: Config = toml::from_str(toml).expect("test config");
    Ctx {
        layout: Layout::new(dir),
        config,
        force: false,
    }
}

fn copy_into(dir: &Path, sub: &str, file: &Path) {
    let to = dir.join("raw/pubmed").join(sub);
    std::fs::create_dir_all(&to).unwrap();
    std::fs::copy(file, to.join(file.file_name().unwrap())).unwrap();
}

/// The sample's baseline and update file, when present.
fn sample_xml() -> Option<[PathBuf; 2]> {
    let sample = sample_dir();
    let files = [
        sample.join("pubmed/baseline/pubmed26n0001.xml.gz"),
        sample.join("pubmed/updatefiles/pubmed26n0002.xml.gz"),
    ];
    files.iter().all(|f| f.exists()).then_some(files)
}

/// Copies the sample's baseline and update file into `dir`'s raw download folders.
fn copy_sample_into(dir: &Path, [baseline, update]: &[PathBuf; 2]) {
    copy_into(dir, "baseline", baseline);
    copy_into(dir, "updatefiles", update);
}

#[test]
fn sample_xml_to_shards() {
    let Some(sample_xml) = sample_xml() else {
        println!("SKIP: sample XML absent");
        return;
    };
    let sample = sample_dir();
    let tmp = tempfile::tempdir().unwrap();
    copy_sample_into(tmp.path(), &sample_xml);
    let golden = sample.join("bioasq/test-batch1_golden.json");
    let c = ctx(
        tmp.path(),
        &format!(
            "[train_tokenizer]\nvocab_size = 1024\n\n[tokenize]\nseq_len = 128\nshard_sequences = 4\nval_fraction = 0.2\ndecontaminate = [{:?}]\n",
            golden.display().to_string()
        ),
    );
    common::parse_command(&c, pipeline::parse::Args::default()).unwrap();
    pipeline::train_tokenizer::run(&c, Default::default()).unwrap();
    common::tokenize_command(&c, Default::default()).unwrap();

    // The current view, computed independently from the expect files: later file wins, deletions
    // applied; parts are pmid % partitions, each sorted by PMID.
    let mut current: BTreeMap<u64, (Option<String>, Option<String>)> = BTreeMap::new();
    for name in ["pubmed26n0001.jsonl", "pubmed26n0002.jsonl"] {
        let path = sample.join("expect").join(name);
        for row in read_expect_jsonl(&path).unwrap() {
            current.insert(row.pmid, (row.title, row.abstract_text));
        }
        let text = std::fs::read_to_string(&path).unwrap();
        for line in text.lines() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            if let Some(d) = v.get("deleted") {
                for p in d.as_array().unwrap() {
                    current.remove(&p.as_u64().unwrap());
                }
            }
        }
    }
    let partitions = c.config.current.partitions as u64;
    let cited = pipeline::tokenize::decontaminate::load(std::slice::from_ref(&golden), tmp.path())
        .unwrap()
        .pmids;
    let tok = LoadedTokenizer::load(&tmp.path().join("tokenizer/tokenizer.json")).unwrap();
    assert_eq!(tok.eos_id, 0);
    assert_eq!(tok.vocab_size, 1024);
    let mut streams: BTreeMap<&str, Vec<u32>> = BTreeMap::new();
    let mut excluded = BTreeSet::new();
    for k in 0..partitions {
        for (pmid, (title, abstract_text)) in current.iter().filter(|(p, _)| *p % partitions == k) {
            let Some(text) = document_text(title.as_deref(), abstract_text.as_deref(), false)
            else {
                continue;
            };
            if cited.contains(pmid) {
                excluded.insert(*pmid);
                continue;
            }
            streams
                .entry(split_of(*pmid, "biomamba-split-v1", 0.2).name())
                .or_default()
                .extend(tok.encode_document(&text).unwrap());
        }
    }
    assert!(!excluded.is_empty());
    let manifest = schemas::StageManifest::load(&tmp.path().join("manifests/pack.json"))
        .unwrap()
        .unwrap();
    assert_eq!(
        manifest.summary["decontamination"]["excluded_pmids"],
        serde_json::json!(excluded)
    );
    for split in ["train", "val"] {
        let stream = &streams[split];
        let set = ShardSet::open(tmp.path().join("shards").join(split)).unwrap();
        let got: Vec<u32> = (0..set.len())
            .flat_map(|g| set.sequence(g).to_u32_vec())
            .collect();
        assert_eq!(got.len(), stream.len() / 128 * 128, "{split}");
        assert_eq!(
            got,
            stream[..got.len()],
            "{split}: shards hold the document stream"
        );
        assert!(!got.is_empty(), "{split} has sequences");
    }

    // Re-running everything is cached and rewrites nothing.
    let before = std::fs::metadata(tmp.path().join("shards/train/shard-00000.arrow"))
        .unwrap()
        .modified()
        .unwrap();
    let manifest_before = std::fs::read(tmp.path().join("manifests/tokenize.json")).unwrap();
    let s = TokenizeConfig::resolve(&c, &Default::default()).unwrap();
    let report = tokenize::tokenize_stage(&c, &s).unwrap();
    assert_eq!(report.parts_run, 0);
    assert!(
        tokenize::pack::pack_stage(&c, &s, &report.token_files)
            .unwrap()
            .cached
    );
    assert_eq!(
        std::fs::metadata(tmp.path().join("shards/train/shard-00000.arrow"))
            .unwrap()
            .modified()
            .unwrap(),
        before
    );
    assert_eq!(
        std::fs::read(tmp.path().join("manifests/tokenize.json")).unwrap(),
        manifest_before
    );
}

#[test]
fn gpt_neox_ids_through_parse() {
    let fx = fixtures();
    let xml = fx.join("pubmed/pubmed26n1334.xml.gz");
    let tok_path = fx.join("tokenizer/gpt-neox-20b.tokenizer.json");
    let expect = fx.join("tokenizer/expect-pubmed26n1334.jsonl");
    if !xml.exists() || !tok_path.exists() || !expect.exists() {
        println!("SKIP: fixtures absent under {}", fx.display());
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    copy_into(tmp.path(), "baseline", &xml);
    let c = ctx(
        tmp.path(),
        &format!(
            "[tokenize]\ninput = \"parquet/abstracts\"\ntokenizer = {:?}\n",
            tok_path.display().to_string()
        ),
    );
    common::parse_command(&c, pipeline::parse::Args::default()).unwrap();
    let s = TokenizeConfig::resolve(&c, &Default::default()).unwrap();
    let report = tokenize::tokenize_stage(&c, &s).unwrap();
    assert_eq!(report.token_files.len(), 1);
    let mut reader = TokenFileReader::open(&report.token_files[0]).unwrap();
    let mut ids = Vec::new();
    let mut n = 0;
    for line in std::fs::read_to_string(&expect).unwrap().lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let want: Vec<u32> = v["ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i.as_u64().unwrap() as u32)
            .collect();
        assert_eq!(reader.next_doc(&mut ids).unwrap(), v["pmid"].as_u64());
        assert_eq!(ids, want, "PMID {}", v["pmid"]);
        n += 1;
    }
    assert_eq!(reader.next_doc(&mut ids).unwrap(), None);
    assert_eq!(n, 27);
}

/// A job array: `pipeline tokenize --shard i/3` for i = 2, 0, 1 (any order), then `pipeline pack`
/// once, gives the token files and shards of one `pipeline tokenize` run byte for byte; packing
/// before every shard ran names the parts still to tokenize.
#[test]
fn sharded_tokenize_then_pack_equals_one_run() {
    let Some(sample_xml) = sample_xml() else {
        println!("SKIP: sample XML absent");
        return;
    };
    let sample = sample_dir();
    let config = "[current]\npartitions = 5\n\n[train_tokenizer]\nvocab_size = 700\n";
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    for d in &dirs {
        copy_sample_into(d.path(), &sample_xml);
        common::parse_command(&ctx(d.path(), config), Default::default()).unwrap();
    }
    let (sharded, whole) = (dirs[0].path(), dirs[1].path());
    pipeline::train_tokenizer::run(&ctx(sharded, config), Default::default()).unwrap();
    let args = tokenize::Args {
        tokenizer: Some(sharded.join("tokenizer/tokenizer.json")),
        seq_len: Some(64),
        shard_sequences: Some(8),
        val_fraction: Some(0.2),
        decontaminate: vec![sample.join("bioasq/test-batch1_golden.json")],
        ..Default::default()
    };

    // One run: tokenize, then pack.
    let c_whole = ctx(whole, config);
    common::tokenize_command(&c_whole, args.clone()).unwrap();

    // Three shards of the five parts, out of order, each tokenizing only its parts.
    let c = ctx(sharded, config);
    let s = TokenizeConfig::resolve(&c, &args).unwrap();
    let report = tokenize::run_shard(&c, &s, Some("2/3".parse().unwrap())).unwrap();
    assert_eq!(report.parts_run, 1);
    assert_eq!(
        report.token_files,
        [sharded.join("tokens/current/part-00002.bin")]
    );
    assert!(
        !sharded.join("shards").exists(),
        "a shard run packs nothing"
    );
    let err = format!("{:#}", common::pack_command(&c, args.clone()).unwrap_err());
    assert!(
        err.contains("4 of 5 parts are not tokenized")
            && err.contains("parquet/current/part-00000.parquet")
            && !err.contains("part-00002"),
        "{err}"
    );
    for shard in ["0/3", "1/3"] {
        tokenize::run_shard(&c, &s, Some(shard.parse().unwrap())).unwrap();
    }
    common::pack_command(&c, args.clone()).unwrap();

    let files = |root: &Path, sub: &str| -> BTreeMap<std::path::PathBuf, Vec<u8>> {
        testkit::fixtures::snapshot(&root.join(sub))
            .unwrap()
            .into_iter()
            .map(|(p, (_, bytes))| (p, bytes))
            .collect()
    };
    for sub in ["tokens", "shards"] {
        let (a, b) = (files(sharded, sub), files(whole, sub));
        assert!(!a.is_empty(), "{sub}");
        assert_eq!(
            a.keys().collect::<Vec<_>>(),
            b.keys().collect::<Vec<_>>(),
            "{sub}"
        );
        assert!(
            a == b,
            "{sub}: the sharded run's files differ from one run's"
        );
    }
    assert_eq!(files(sharded, "tokens").len(), 5);
    // The tokenize manifest holds every part, and its totals are those of one run.
    let manifest = |root: &Path, stage: &str| {
        schemas::StageManifest::load(&root.join("manifests").join(format!("{stage}.json")))
            .unwrap()
            .unwrap()
    };
    let (m_sharded, m_whole) = (manifest(sharded, "tokenize"), manifest(whole, "tokenize"));
    assert_eq!(m_sharded.units.len(), 5);
    assert_eq!(m_sharded.summary["totals"], m_whole.summary["totals"]);
    assert_eq!(
        manifest(sharded, "pack").summary["train"],
        manifest(whole, "pack").summary["train"]
    );
    // `pipeline inspect` knows shard files by their table metadata (what `inspect-shards` did).
    let train = sharded.join("shards/train");
    let (format, files) = pipeline::inspect::table_files(&train).unwrap();
    assert_eq!(format, pipeline::inspect::Format::Arrow);
    assert_eq!(
        pipeline::inspect::table_kind(&files[0]).unwrap().as_deref(),
        Some("shards")
    );
    let inspect = |sql: Option<&str>, decode: Option<usize>| {
        pipeline::inspect::run(
            &c,
            pipeline::inspect::Args {
                path: train.clone(),
                sql: sql.map(str::to_string),
                limit: 5,
                decode,
                tokenizer: Some(sharded.join("tokenizer/tokenizer.json")),
            },
        )
    };
    inspect(None, Some(0)).unwrap();
    let err = format!("{:#}", inspect(Some("SELECT 1"), None).unwrap_err());
    assert!(err.contains("--decode"), "{err}");

    // Everything is cached now: a plain `pipeline tokenize` re-runs nothing.
    let again = tokenize::tokenize_stage(&c, &s).unwrap();
    assert_eq!(again.parts_run, 0);
    assert!(
        tokenize::pack::pack_stage(&c, &s, &again.token_files)
            .unwrap()
            .cached
    );
}
