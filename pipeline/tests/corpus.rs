//! General-domain corpora: `pipeline corpus-download` against a local hub (verified, cached, bad
//! bodies refused), `pipeline corpus` on the sample's Wikipedia Parquet and C4 json.gz, and the
//! whole chain parse → corpus-download --offline → corpus → train-tokenizer → tokenize with
//! `configs/sample-corpora.toml` (per-domain document shards, fully cached on a rerun).

mod common;

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use arrow::array::{Array, AsArray};
use arrow::datatypes::UInt64Type;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use pipeline::corpus::{self, download};
use pipeline::download::hub::Source;
use pipeline::tokenize::LoadedTokenizer;
use pipeline::tokenize::pack::{Split, split_of};
use pipeline::{Config, Ctx, Layout};
use schemas::shards::{Sequences, ShardSet};
use sha2::{Digest, Sha256};
use testkit::test_server::TestServer;

const WIKI_FILE: &str = "20231101.en/train-00000-of-00001.parquet";
const C4_FILE: &str = "en/c4-train.00000-of-00001.json.gz";

fn sha256_hex(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))
}

fn sample_corpus() -> PathBuf {
    testkit::sample_dir().join("corpus")
}

/// The sample's corpora (as configs/sample-corpora.toml has them), fast network settings.
fn corpus_ctx(dir: &Path, extra: &str) -> Ctx {
    let text = format!(
        r#"
[download]
max_attempts = 3
connect_timeout_secs = 2.0
read_timeout_secs = 0.4
backoff_initial_secs = 0.01
backoff_max_secs = 0.05

[corpus.wikipedia]
repo = "wikimedia/wikipedia"
files = ["{WIKI_FILE}"]
title_field = "title"

[corpus.c4]
repo = "allenai/c4"
format = "jsonl.gz"
files = ["{C4_FILE}"]
{extra}
"#
    );
    let config: Config = toml::from_str(&text).expect("test config");
    Ctx::new(Some(dir.to_path_buf()), config, false)
}

/// Copy `from` (a directory tree) into `to`.
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

/// (doc_id, text, source_file, row) of a corpus part.
fn read_part(path: &Path) -> Vec<(String, String, String, u64)> {
    let reader = ParquetRecordBatchReaderBuilder::try_new(File::open(path).unwrap())
        .unwrap()
        .build()
        .unwrap();
    let mut out = Vec::new();
    for batch in reader {
        let b = batch.unwrap();
        assert_eq!(b.schema().fields(), schemas::corpus::schema().fields());
        let id = b.column(0).as_string::<i32>();
        let text = b.column(1).as_string::<i32>();
        let source = b.column(2).as_string::<i32>();
        let row = b.column(3).as_primitive::<UInt64Type>();
        for i in 0..b.num_rows() {
            assert!(!id.is_null(i));
            out.push((
                id.value(i).to_string(),
                text.value(i).to_string(),
                source.value(i).to_string(),
                row.value(i),
            ));
        }
    }
    out
}

#[test]
fn committed_wikipedia_sample_is_the_generator_output() {
    let articles =
        testkit::corpus::read_articles(&testkit::corpus::sample_articles_path()).unwrap();
    assert_eq!(articles.len(), 60);
    let committed = std::fs::read(testkit::corpus::sample_wikipedia_path()).unwrap();
    assert!(
        testkit::corpus::wikipedia_parquet(&articles).unwrap() == committed,
        "data/sample/corpus/wikipedia/{WIKI_FILE} is stale: run `cargo run -p testkit --example sample_wikipedia`"
    );
}

#[test]
fn corpus_download_is_verified_cached_and_refuses_bad_bodies() {
    let server = TestServer::start().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let ctx = corpus_ctx(tmp.path(), "");
    let wiki = std::fs::read(sample_corpus().join("wikipedia").join(WIKI_FILE)).unwrap();
    let c4 = std::fs::read(sample_corpus().join("c4").join(C4_FILE)).unwrap();
    let wiki_route = format!("/datasets/wikimedia/wikipedia/resolve/main/{WIKI_FILE}");
    let c4_route = format!("/datasets/allenai/c4/resolve/main/{C4_FILE}");
    // LFS files: a redirect to the CDN carrying the size and SHA-256.
    server.redirect(
        &wiki_route,
        &format!("{}/cdn/wiki.parquet", server.url()),
        &[
            ("X-Linked-Etag", &format!("\"{}\"", sha256_hex(&wiki))),
            ("X-Linked-Size", &wiki.len().to_string()),
        ],
    );
    server.add("/cdn/wiki.parquet", wiki.clone());
    server.redirect(
        &c4_route,
        &format!("{}/cdn/c4.json.gz", server.url()),
        &[
            ("X-Linked-Etag", &format!("\"{}\"", sha256_hex(&c4))),
            ("X-Linked-Size", &c4.len().to_string()),
        ],
    );
    server.add("/cdn/c4.json.gz", c4.clone());
    server.fault("/cdn/c4.json.gz", testkit::test_server::Fault::Corrupt);

    let args = download::Args {
        base_url: Some(server.url()),
        ..Default::default()
    };
    let s = download::download(&ctx, &args).unwrap();
    assert_eq!(s.files.len(), 2);
    assert!(s.files.iter().all(|f| f.source == Source::Downloaded));
    let raw_wiki = ctx.layout.raw_corpus("wikipedia").join(WIKI_FILE);
    let raw_c4 = ctx.layout.raw_corpus("c4").join(C4_FILE);
    assert_eq!(std::fs::read(&raw_wiki).unwrap(), wiki);
    assert_eq!(std::fs::read(&raw_c4).unwrap(), c4);
    assert_eq!(s.retries, 1, "the corrupted c4 body is fetched again");
    let c4_sha = s.files.iter().find(|f| f.corpus == "c4").unwrap();
    assert_eq!(c4_sha.sha256.as_deref(), Some(sha256_hex(&c4).as_str()));
    let m = schemas::StageManifest::load(&ctx.layout.manifest(download::STAGE))
        .unwrap()
        .unwrap();
    assert_eq!(
        m.units.keys().collect::<Vec<_>>(),
        [&format!("c4/{C4_FILE}"), &format!("wikipedia/{WIKI_FILE}")]
    );

    // Cached: nothing requested again.
    let gets = server.total_gets();
    let again = download::download(&ctx, &args).unwrap();
    assert!(again.files.iter().all(|f| f.source == Source::Cached));
    assert_eq!(server.total_gets(), gets);

    // A body whose SHA-256 is not the published one never takes the final name.
    let bad_file = "en/c4-train.00001-of-00001.json.gz";
    let other = testkit::corpus::json_gz(&[serde_json::json!({"text": "x"})]).unwrap();
    server.redirect(
        &format!("/datasets/allenai/c4/resolve/main/{bad_file}"),
        &format!("{}/cdn/c4-1.json.gz", server.url()),
        &[(
            "X-Linked-Etag",
            &format!("\"{}\"", sha256_hex(b"other bytes")),
        )],
    );
    server.add("/cdn/c4-1.json.gz", other);
    let one = |file: &str, repo_extra: &str| {
        corpus_ctx(
            tmp.path(),
            &format!(
                "[corpus.bad]\nrepo = \"allenai/c4\"\nformat = \"jsonl.gz\"\nfiles = [\"{file}\"]\n{repo_extra}"
            ),
        )
    };
    let bad_args = download::Args {
        corpus: Some("bad".into()),
        ..args.clone()
    };
    let err = format!(
        "{:#}",
        download::download(&one(bad_file, ""), &bad_args).unwrap_err()
    );
    assert!(err.contains("SHA-256 mismatch"), "{err}");
    assert!(
        err.contains(bad_file) && err.contains("allenai/c4"),
        "{err}"
    );
    let bad_raw = ctx.layout.raw_corpus("bad").join(bad_file);
    assert!(!bad_raw.exists());
    assert!(!pipeline::download::fetch::part_path(&bad_raw).exists());

    // A truncated Parquet file (even one the server vouches for) fails its content check.
    let cut = &wiki[..wiki.len() - 100];
    let cut_file = "20231101.en/train-00001-of-00001.parquet";
    server.redirect(
        &format!("/datasets/wikimedia/wikipedia/resolve/main/{cut_file}"),
        &format!("{}/cdn/cut.parquet", server.url()),
        &[
            ("X-Linked-Etag", &format!("\"{}\"", sha256_hex(cut))),
            ("X-Linked-Size", &cut.len().to_string()),
        ],
    );
    server.add("/cdn/cut.parquet", cut.to_vec());
    let cut_ctx = corpus_ctx(
        tmp.path(),
        &format!("[corpus.bad]\nrepo = \"wikimedia/wikipedia\"\nfiles = [\"{cut_file}\"]"),
    );
    let err = format!("{:#}", download::download(&cut_ctx, &bad_args).unwrap_err());
    assert!(err.contains("PAR1"), "{err}");
    assert!(!ctx.layout.raw_corpus("bad").join(cut_file).exists());

    // A file the repository does not have: an error naming repository and file.
    let absent = "en/c4-train.00009-of-01024.json.gz";
    let err = format!(
        "{:#}",
        download::download(&one(absent, ""), &bad_args).unwrap_err()
    );
    assert!(
        err.contains("allenai/c4") && err.contains(absent) && err.contains("404"),
        "{err}"
    );

    // Offline: what is there is validated; a missing file is named.
    let off = download::Args {
        offline: true,
        ..Default::default()
    };
    let s = download::download(&ctx, &off).unwrap();
    assert!(s.files.iter().all(|f| f.source == Source::Local));
    let err = format!(
        "{:#}",
        download::download(&one(absent, ""), &off).unwrap_err()
    );
    assert!(err.contains("offline") && err.contains(absent), "{err}");
    std::fs::write(&raw_c4, &c4[..c4.len() / 2]).unwrap();
    let err = format!("{:#}", download::download(&ctx, &off).unwrap_err());
    assert!(err.contains("gzip stream is not valid"), "{err}");
    // Unknown --corpus.
    let err = download::download(
        &ctx,
        &download::Args {
            corpus: Some("nope".into()),
            ..off
        },
    )
    .unwrap_err();
    assert!(err.to_string().contains("no [corpus.nope]"), "{err}");
}

#[test]
fn corpus_stage_parses_wikipedia_parquet_and_c4_json_gz() {
    let tmp = tempfile::tempdir().unwrap();
    let ctx = corpus_ctx(tmp.path(), "");
    let err = format!("{:#}", corpus::run(&ctx, &Default::default()).unwrap_err());
    assert!(err.contains("corpus-download"), "{err}");
    copy_tree(&sample_corpus(), &tmp.path().join("raw/corpus"));
    let report = corpus::run(&ctx, &Default::default()).unwrap();
    assert_eq!((report.files, report.files_run), (2, 2));
    assert_eq!(report.totals.rows, 120);
    assert_eq!(
        report.totals.skipped_empty, 2,
        "one empty article, one blank web page"
    );

    let wiki = read_part(
        &ctx.layout
            .parquet_corpus("wikipedia")
            .join("train-00000-of-00001.parquet"),
    );
    let articles =
        testkit::corpus::read_articles(&testkit::corpus::sample_articles_path()).unwrap();
    let want: Vec<_> = articles
        .iter()
        .enumerate()
        .filter(|(_, a)| !a.text.trim().is_empty())
        .map(|(i, a)| {
            (
                a.id.clone(),
                format!("{}\n{}", a.title, a.text),
                WIKI_FILE.to_string(),
                i as u64,
            )
        })
        .collect();
    assert_eq!(wiki.len(), 59);
    assert_eq!(wiki, want);

    let c4 = read_part(
        &ctx.layout
            .parquet_corpus("c4")
            .join("c4-train.00000-of-00001.parquet"),
    );
    assert_eq!(c4.len(), 59);
    assert_eq!(c4[0].0, format!("{C4_FILE}:0"));
    assert_eq!(c4[0].3, 0);
    assert!(c4[0].1.starts_with("Our favourite"));
    assert!(c4.iter().all(|r| r.0 == format!("{C4_FILE}:{}", r.3)));
    assert!(!c4.iter().any(|r| r.3 == 41), "line 41 is whitespace only");

    // Cached: nothing rewritten.
    let before = testkit::fixtures::snapshot(tmp.path()).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(20));
    let again = corpus::run(&ctx, &Default::default()).unwrap();
    assert_eq!(again.files_run, 0);
    assert_eq!(testkit::fixtures::snapshot(tmp.path()).unwrap(), before);
    // --corpus and --shard select units; --force re-runs them, and the same bytes keep their files.
    let forced = Ctx {
        force: true,
        ..ctx.clone()
    };
    let one = corpus::run(
        &forced,
        &corpus::Args {
            corpus: Some("c4".into()),
            shard: None,
        },
    )
    .unwrap();
    assert_eq!((one.files, one.files_run), (1, 1));
    let shard = corpus::run(
        &forced,
        &corpus::Args {
            corpus: None,
            shard: Some("1/2".parse().unwrap()),
        },
    )
    .unwrap();
    assert_eq!(
        (shard.files, shard.files_run, shard.totals.docs),
        (1, 1, 59)
    );
    let parts = |t: &BTreeMap<PathBuf, _>| -> Vec<PathBuf> {
        t.keys()
            .filter(|p| p.starts_with(tmp.path().join("parquet")))
            .cloned()
            .collect()
    };
    let after = testkit::fixtures::snapshot(tmp.path()).unwrap();
    for p in parts(&before) {
        assert_eq!(after[&p], before[&p], "{} kept", p.display());
    }
    let st = corpus::status(&ctx).unwrap();
    assert_eq!((st.cached, st.stale, st.missing), (2, 0, 0));
}

#[test]
fn bad_lines_and_columns_are_errors_naming_file_and_place() {
    let tmp = tempfile::tempdir().unwrap();
    let ctx = corpus_ctx(tmp.path(), "");
    let c4 = ctx.layout.raw_corpus("c4").join(C4_FILE);
    std::fs::create_dir_all(c4.parent().unwrap()).unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    use std::io::Write;
    gz.write_all(b"{\"text\": \"fine\"}\n{\"text\": \"also fine\"}\n{\"text\": tru\n")
        .unwrap();
    std::fs::write(&c4, gz.finish().unwrap()).unwrap();
    let only_c4 = corpus::Args {
        corpus: Some("c4".into()),
        shard: None,
    };
    let err = format!("{:#}", corpus::run(&ctx, &only_c4).unwrap_err());
    assert!(err.contains(C4_FILE) && err.contains("line 3"), "{err}");
    // A file that parsed before and is broken now loses its old part and unit.
    let part = ctx
        .layout
        .parquet_corpus("c4")
        .join("c4-train.00000-of-00001.parquet");
    std::fs::copy(sample_corpus().join("c4").join(C4_FILE), &c4).unwrap();
    corpus::run(&ctx, &only_c4).unwrap();
    assert!(part.is_file());
    std::fs::write(
        &c4,
        testkit::corpus::json_gz(&[serde_json::json!({"text": 5})]).unwrap(),
    )
    .unwrap();
    let err = format!("{:#}", corpus::run(&ctx, &only_c4).unwrap_err());
    assert!(
        err.contains("line 1") && err.contains("not a string"),
        "{err}"
    );
    assert!(!part.exists());
    let m = schemas::StageManifest::load(&ctx.layout.manifest(corpus::STAGE))
        .unwrap()
        .unwrap();
    assert!(m.units.is_empty(), "{:?}", m.units.keys());

    // A Parquet file without the configured text column.
    let wiki = ctx.layout.raw_corpus("wikipedia").join(WIKI_FILE);
    let articles = vec![testkit::corpus::WikiArticle {
        id: "1".into(),
        url: "u".into(),
        title: "T".into(),
        text: "body".into(),
    }];
    testkit::corpus::write_wikipedia_parquet(&wiki, &articles).unwrap();
    let bad = corpus_ctx(tmp.path(), "");
    let mut bad = bad;
    bad.config.corpus.get_mut("wikipedia").unwrap().text_field = "body".into();
    let err = format!(
        "{:#}",
        corpus::run(
            &bad,
            &corpus::Args {
                corpus: Some("wikipedia".into()),
                shard: None
            }
        )
        .unwrap_err()
    );
    assert!(
        err.contains("no column `body`") && err.contains("train-00000-of-00001"),
        "{err}"
    );
}

/// Every document row of a split: (real tokens, doc_starts), checking the padding.
fn document_rows(dir: &Path, pad: u32) -> Vec<Vec<u32>> {
    let set = ShardSet::open(dir).unwrap();
    assert_eq!(set.sequences(), Sequences::Document, "{}", dir.display());
    assert!(!set.is_empty(), "{}", dir.display());
    (0..set.len())
        .map(|g| {
            let ids = set.sequence(g).to_u32_vec();
            let n = set.length(g);
            assert!(n >= 1 && n <= ids.len());
            assert!(
                ids[n..].iter().all(|&t| t == pad),
                "row {g}: padding after {n}"
            );
            assert_eq!(set.doc_starts(g), &[0]);
            ids[..n].to_vec()
        })
        .collect()
}

#[test]
fn sample_corpora_chain_gives_document_shards_per_domain_and_reruns_cached() {
    let sample = testkit::sample_dir();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let config =
        Config::load(&testkit::fixtures::configs_dir().join("sample-corpora.toml")).unwrap();
    let ctx = Ctx::new(Some(dir.to_path_buf()), config, false);
    copy_tree(
        &sample.join("pubmed/baseline"),
        &dir.join("raw/pubmed/baseline"),
    );
    copy_tree(
        &sample.join("pubmed/updatefiles"),
        &dir.join("raw/pubmed/updatefiles"),
    );
    copy_tree(&sample.join("bioasq"), &dir.join("raw/bioasq"));
    copy_tree(&sample_corpus(), &dir.join("raw/corpus"));

    let chain = || {
        common::parse_command(&ctx, Default::default()).unwrap();
        let off = download::Args {
            offline: true,
            ..Default::default()
        };
        download::run(&ctx, &off).unwrap();
        corpus::run(&ctx, &Default::default()).unwrap();
        pipeline::train_tokenizer::run(&ctx, Default::default()).unwrap();
        common::tokenize_all_command(&ctx, Default::default()).unwrap();
    };
    chain();
    let layout = Layout::new(dir);
    assert_eq!(
        schemas::shards::domains(&layout).unwrap(),
        ["pubmed", "c4", "wikipedia"]
    );
    let pubmed = schemas::shards::pack_facts(&layout).unwrap().unwrap();
    assert_eq!(
        (pubmed.sequences, pubmed.seq_len),
        (Sequences::Document, 128)
    );
    for domain in ["pubmed", "c4", "wikipedia"] {
        let facts = schemas::shards::pack_facts_of(&layout, domain)
            .unwrap()
            .unwrap();
        assert_eq!(
            facts, pubmed,
            "{domain}: same tokenizer, seq_len, EOS and row kind"
        );
        for split in ["train", "val"] {
            document_rows(&layout.domain_shards(domain, split), facts.eos_id);
        }
    }
    let summary = |stage: &str| {
        schemas::StageManifest::load(&layout.manifest(stage))
            .unwrap()
            .unwrap()
            .summary
    };
    let docs = |s: &serde_json::Value| {
        s["train"]["docs"].as_u64().unwrap() + s["val"]["docs"].as_u64().unwrap()
    };
    assert_eq!(docs(&summary("pack-c4")), 50, "max_documents = 50");
    assert_eq!(docs(&summary("pack-wikipedia")), 59);
    let wiki = summary("pack-wikipedia");
    assert_eq!(wiki["sequences"], "document");
    assert!(
        wiki["train"]["truncated_docs"].as_u64().unwrap()
            + wiki["val"]["truncated_docs"].as_u64().unwrap()
            >= 1,
        "the long article is cut"
    );

    // The first training row of Wikipedia is the first non-empty article whose id hashes to train:
    // title + "\n" + text, encoded, EOS appended, cut to seq_len.
    let tok = LoadedTokenizer::load(&layout.tokenizer_file()).unwrap();
    let articles =
        testkit::corpus::read_articles(&testkit::corpus::sample_articles_path()).unwrap();
    let s = &ctx.config.tokenize;
    let first = articles
        .iter()
        .filter(|a| !a.text.trim().is_empty())
        .find(|a| {
            split_of(
                schemas::corpus::doc_key(&a.id),
                &s.split_salt,
                s.val_fraction,
            ) == Split::Train
        })
        .unwrap();
    let mut want = tok
        .encode_document(&format!("{}\n{}", first.title, first.text))
        .unwrap();
    want.truncate(s.seq_len);
    let rows = document_rows(&layout.domain_shards("wikipedia", "train"), pubmed.eos_id);
    assert_eq!(rows[0], want);
    // `pipeline inspect` counts real tokens and padding apart.
    let c = pipeline::inspect::shards::count(&layout.domain_shards("wikipedia", "train")).unwrap();
    let real: usize = rows.iter().map(Vec::len).sum();
    assert_eq!(c.tokens as usize, real);
    assert_eq!(c.padding as usize, rows.len() * s.seq_len - real);
    assert_eq!(c.padding, wiki["train"]["padding_tokens"].as_u64().unwrap());

    // Rerun: every stage cached, every file byte-identical with its mtime (but the manifests of
    // parse and current, which those stages save with their run summary on every run).
    let before = testkit::fixtures::snapshot(dir).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(20));
    chain();
    let after = testkit::fixtures::snapshot(dir).unwrap();
    let changed: Vec<_> = after
        .iter()
        .filter(|(p, v)| before.get(*p) != Some(v))
        .filter(|(p, _)| {
            ![
                Path::new("manifests/parse.json"),
                Path::new("manifests/current.json"),
            ]
            .contains(&p.as_path())
        })
        .map(|(p, _)| p.display().to_string())
        .collect();
    assert!(
        changed.is_empty(),
        "rewritten on a cached rerun: {changed:?}"
    );
    assert_eq!(after.len(), before.len());

    let rows = pipeline::status::run(&ctx).unwrap();
    for stage in [
        "corpus-download",
        "corpus",
        "tokenize-c4",
        "pack-c4",
        "tokenize-wikipedia",
        "pack-wikipedia",
    ] {
        let row = rows
            .iter()
            .find(|r| r.stage == stage)
            .unwrap_or_else(|| panic!("no {stage} row"));
        assert_eq!(row.state(), "cached", "{stage}: {row:?}");
    }
}
