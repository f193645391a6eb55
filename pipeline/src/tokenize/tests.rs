use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use schemas::shards::ShardSet;

use super::pack::{PackSummary, Split, split_of};
use super::token_file::TokenFileReader;
use super::*;
use crate::{Config, Ctx};
use testkit::synthetic::{AbstractRow, read_expect_jsonl, write_abstracts_part};

use testkit::fixtures::{fixtures_dir as fixtures, sample_dir};

fn sample_rows() -> Option<Vec<Vec<AbstractRow>>> {
    let dir = sample_dir().join("expect");
    let files = ["pubmed26n0001.jsonl", "pubmed26n0002.jsonl"];
    if files.iter().any(|f| !dir.join(f).exists()) {
        println!("SKIP: sample expect files absent in {}", dir.display());
        return None;
    }
    Some(
        files
            .iter()
            .map(|f| read_expect_jsonl(&dir.join(f)).unwrap())
            .collect(),
    )
}

fn texts(rows: &[AbstractRow], title_only: bool) -> Vec<(u64, String)> {
    rows.iter()
        .filter_map(|r| {
            document_text(r.title.as_deref(), r.abstract_text.as_deref(), title_only)
                .map(|t| (r.pmid, t))
        })
        .collect()
}

/// A data dir with the sample corpus as two parts of `parquet/abstracts`, a tokenizer trained on it
/// and a small packing config.
fn sample_ctx(dir: &Path, parts: &[Vec<AbstractRow>]) -> Ctx {
    let input = dir.join("parquet/abstracts");
    for (i, rows) in parts.iter().enumerate() {
        let name = format!("pubmed26n{:04}", i + 1);
        write_abstracts_part(
            &input.join(format!("{name}.parquet")),
            rows,
            &format!("{name}.xml.gz"),
        )
        .unwrap();
    }
    let docs: Vec<String> = parts
        .iter()
        .flat_map(|rows| texts(rows, false))
        .map(|(_, t)| t)
        .collect();
    let tokenizer = crate::train_tokenizer::train(docs.into_iter(), 700, 2).unwrap();
    crate::train_tokenizer::save(&tokenizer, &dir.join("tokenizer/tokenizer.json")).unwrap();
    let mut config = Config::default();
    config.tokenize.input = "parquet/abstracts".into();
    config.tokenize.seq_len = 64;
    config.tokenize.shard_sequences = 8;
    config.tokenize.val_fraction = 0.2;
    config.tokenize.batch_rows = 7;
    config.tokenize.decontaminate = vec![sample_dir().join("bioasq/test-batch1_golden.json")];
    Ctx::new(Some(dir.to_path_buf()), config, false)
}

fn run_all(ctx: &Ctx) -> (TokenizeReport, PackSummary) {
    let s = TokenizeConfig::resolve(ctx, &Args::default()).unwrap();
    let report = tokenize_stage(ctx, &s).unwrap();
    let packed = pack::pack_stage(ctx, &s, &report.token_files).unwrap();
    (report, packed)
}

/// Every file under `dir` with its mtime and content.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, (std::time::SystemTime, Vec<u8>)> {
    testkit::fixtures::snapshot(dir).unwrap()
}

fn shard_bytes(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    snapshot(&dir.join("shards"))
        .into_iter()
        .map(|(p, (_, b))| (p, b))
        .collect()
}

#[test]
fn document_text_rules() {
    assert_eq!(
        document_text(Some("T"), Some("A"), false).as_deref(),
        Some("T\nA")
    );
    assert_eq!(document_text(None, Some("A"), false).as_deref(), Some("A"));
    assert_eq!(
        document_text(Some(""), Some("A"), false).as_deref(),
        Some("A")
    );
    assert_eq!(document_text(Some("T"), None, false), None);
    assert_eq!(document_text(Some("T"), Some(""), false), None);
    assert_eq!(document_text(Some("T"), None, true).as_deref(), Some("T"));
    assert_eq!(document_text(None, None, true), None);
}

#[test]
fn ids_equal_gpt_neox_expect_file() {
    let fx = fixtures();
    let tok_path = fx.join("tokenizer/gpt-neox-20b.tokenizer.json");
    let expect_path = fx.join("tokenizer/expect-pubmed26n1334.jsonl");
    let texts_path = fx.join("pubmed/expect/pubmed26n1334.jsonl");
    if !tok_path.exists() || !expect_path.exists() || !texts_path.exists() {
        println!("SKIP: tokenizer fixtures absent under {}", fx.display());
        return;
    }
    let expected: Vec<(u64, Vec<u32>)> = std::fs::read_to_string(&expect_path)
        .unwrap()
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            let ids = v["ids"]
                .as_array()
                .unwrap()
                .iter()
                .map(|i| i.as_u64().unwrap() as u32);
            (v["pmid"].as_u64().unwrap(), ids.collect())
        })
        .collect();
    let tok = LoadedTokenizer::load(&tok_path).unwrap();
    assert_eq!((tok.eos_id, tok.vocab_size), (0, 50_277));
    let rows = read_expect_jsonl(&texts_path).unwrap();
    let ours: Vec<(u64, Vec<u32>)> = texts(&rows, false)
        .into_iter()
        .map(|(pmid, text)| (pmid, tok.encode_document(&text).unwrap()))
        .collect();
    assert_eq!(ours.len(), expected.len());
    for (o, e) in ours.iter().zip(&expected) {
        assert_eq!(o, e, "PMID {}", e.0);
    }

    // The same ids through the stage: Parquet part in, token file out.
    let dir = tempfile::tempdir().unwrap();
    let part = dir.path().join("parquet/current/part-00000.parquet");
    write_abstracts_part(&part, &rows, "pubmed26n1334.xml.gz").unwrap();
    let mut config = Config::default();
    config.tokenize.tokenizer = tok_path.clone();
    let ctx = Ctx::new(Some(dir.path().to_path_buf()), config, false);
    let s = TokenizeConfig::resolve(&ctx, &Args::default()).unwrap();
    let report = tokenize_stage(&ctx, &s).unwrap();
    assert_eq!(report.totals.docs as usize, expected.len());
    assert_eq!(report.totals.skipped_no_text, 3);
    let mut reader = TokenFileReader::open(&report.token_files[0]).unwrap();
    let mut ids = Vec::new();
    for (pmid, want) in &expected {
        assert_eq!(reader.next_doc(&mut ids).unwrap(), Some(*pmid));
        assert_eq!(&ids, want);
    }
    assert_eq!(reader.next_doc(&mut ids).unwrap(), None);
    let manifest = schemas::StageManifest::load(&dir.path().join("manifests/tokenize.json"))
        .unwrap()
        .unwrap();
    assert_eq!(manifest.summary["tokenizer"]["eos_id"], 0);
    assert_eq!(
        manifest.summary["tokenizer"]["hash"],
        schemas::manifest::hash_file(&tok_path).unwrap()
    );
}

#[test]
fn shards_hold_the_document_stream_in_canonical_order() {
    let Some(parts) = sample_rows() else { return };
    let dir = tempfile::tempdir().unwrap();
    let ctx = sample_ctx(dir.path(), &parts);
    let (report, packed) = run_all(&ctx);
    assert_eq!(report.parts, 2);
    let tok = LoadedTokenizer::load(&dir.path().join("tokenizer/tokenizer.json")).unwrap();
    assert_eq!(tok.eos_id, 0);

    let cited = super::decontaminate::load(&ctx.config.tokenize.decontaminate, dir.path())
        .unwrap()
        .pmids;
    // Expected per-split streams: documents in part order, then row order.
    let mut streams: BTreeMap<&str, (Vec<u32>, Vec<String>)> = BTreeMap::new();
    let mut excluded = BTreeSet::new();
    for rows in &parts {
        for (pmid, text) in texts(rows, false) {
            if cited.contains(&pmid) {
                excluded.insert(pmid);
                continue;
            }
            let split = split_of(pmid, "biomamba-split-v1", 0.2).name();
            let entry = streams.entry(split).or_default();
            entry.0.extend(tok.encode_document(&text).unwrap());
            entry.1.push(text);
        }
    }
    assert!(
        !excluded.is_empty(),
        "the sample corpus cites test-set PMIDs"
    );
    assert_eq!(
        packed.decontamination.excluded_pmids,
        excluded.iter().copied().collect::<Vec<_>>()
    );
    assert_eq!(
        packed.decontamination.excluded_docs as usize,
        excluded.len()
    );

    for (split, summary) in [("train", &packed.train), ("val", &packed.val)] {
        let (stream, docs) = &streams[split];
        assert!(docs.len() > 3, "{split} has documents");
        let set = ShardSet::open(dir.path().join("shards").join(split)).unwrap();
        let kept = stream.len() / 64 * 64;
        assert_eq!(set.len(), kept / 64);
        assert_eq!(summary.sequences as usize, set.len());
        assert_eq!(summary.dropped_tokens as usize, stream.len() - kept);
        assert_eq!(summary.tokens as usize, stream.len());
        assert_eq!(summary.docs as usize, docs.len());
        assert_eq!(
            summary.shards.iter().map(|s| s.rows).collect::<Vec<_>>(),
            set.shards().iter().map(|s| s.len()).collect::<Vec<_>>()
        );
        assert!(
            set.shards()[..set.shards().len() - 1]
                .iter()
                .all(|s| s.len() == 8)
        );
        // Every row, concatenated, is exactly the stream; doc_starts mark each document's first token.
        let mut got = Vec::new();
        for g in 0..set.len() {
            let row = set.sequence(g).to_u32_vec();
            let starts: Vec<u32> = (0..64u32)
                .filter(|&p| {
                    let at = g * 64 + p as usize;
                    at == 0 || stream[at - 1] == 0
                })
                .collect();
            assert_eq!(set.doc_starts(g), starts.as_slice(), "{split} row {g}");
            got.extend(row);
        }
        assert_eq!(got, stream[..kept]);
        // Decoding the EOS-separated pieces gives back the document texts, in order.
        let pieces: Vec<&[u32]> = got.split(|&t| t == 0).collect();
        let (last, complete) = pieces.split_last().unwrap();
        assert!(!complete.is_empty());
        for (i, piece) in complete.iter().enumerate() {
            assert_eq!(
                tok.tokenizer.decode(piece, false).unwrap(),
                docs[i],
                "{split} document {i}"
            );
        }
        let tail = tok.tokenizer.decode(last, false).unwrap();
        assert!(
            docs[complete.len()].starts_with(&tail),
            "{split}: the cut document starts the tail"
        );
    }
    // Inspection agrees with the manifest.
    let c = crate::inspect::shards::count(&dir.path().join("shards/train")).unwrap();
    assert_eq!(c.rows as u64, packed.train.sequences);
    let text = crate::inspect::shards::inspect_shards(
        &dir.path().join("shards/train"),
        Some(0),
        Some(&dir.path().join("tokenizer/tokenizer.json")),
    )
    .unwrap();
    assert!(text.contains(&streams["train"].1[0][..20]), "{text}");
}

/// `sequences = "document"`: one row per document (its first `seq_len` tokens, EOS included, then
/// pad ids), `lengths` its real tokens, `doc_starts` `[0]`; no document split across rows. Packed
/// shards come back byte for byte when the setting returns to `packed`.
#[test]
fn document_rows_hold_each_documents_first_tokens_then_padding() {
    let Some(parts) = sample_rows() else { return };
    let dir = tempfile::tempdir().unwrap();
    let mut ctx = sample_ctx(dir.path(), &parts);
    let (_, packed) = run_all(&ctx);
    assert_eq!(packed.sequences, schemas::shards::Sequences::Packed);
    let packed_bytes = shard_bytes(dir.path());

    let tok = LoadedTokenizer::load(&dir.path().join("tokenizer/tokenizer.json")).unwrap();
    // seq_len: the median document length, so some rows are cut and some padded.
    let mut lens: Vec<usize> = parts
        .iter()
        .flat_map(|rows| texts(rows, false))
        .map(|(_, t)| tok.encode_document(&t).unwrap().len())
        .collect();
    lens.sort();
    let seq_len = lens[lens.len() / 2];
    ctx.config.tokenize.sequences = schemas::shards::Sequences::Document;
    ctx.config.tokenize.seq_len = seq_len;
    let (report, summary) = run_all(&ctx);
    assert!(!summary.cached, "a new row kind re-packs");
    assert_eq!(report.parts_run, 0, "token files stay cached");
    assert_eq!(summary.sequences, schemas::shards::Sequences::Document);
    assert_eq!(summary.pad_id, Some(0));
    let cited = super::decontaminate::load(&ctx.config.tokenize.decontaminate, dir.path())
        .unwrap()
        .pmids;
    let mut docs: BTreeMap<&str, Vec<Vec<u32>>> = BTreeMap::new();
    for rows in &parts {
        for (pmid, text) in texts(rows, false) {
            if !cited.contains(&pmid) {
                let split = split_of(pmid, "biomamba-split-v1", 0.2).name();
                docs.entry(split)
                    .or_default()
                    .push(tok.encode_document(&text).unwrap());
            }
        }
    }
    for (split, sum) in [("train", &summary.train), ("val", &summary.val)] {
        let want = &docs[split];
        let set = ShardSet::open(dir.path().join("shards").join(split)).unwrap();
        assert_eq!(set.sequences(), schemas::shards::Sequences::Document);
        assert_eq!(set.len(), want.len(), "{split}: one row per document");
        assert_eq!(sum.sequences as usize, want.len());
        assert_eq!(sum.docs as usize, want.len());
        assert_eq!(sum.dropped_tokens, 0);
        let long: Vec<&Vec<u32>> = want.iter().filter(|d| d.len() > seq_len).collect();
        assert!(!long.is_empty(), "{split}: some abstracts exceed seq_len");
        assert!(
            want.iter().any(|d| d.len() < seq_len),
            "{split}: some are shorter"
        );
        assert_eq!(sum.truncated_docs as usize, long.len());
        assert_eq!(
            sum.truncated_tokens as usize,
            long.iter().map(|d| d.len() - seq_len).sum::<usize>()
        );
        let mut padding = 0;
        for (g, doc) in want.iter().enumerate() {
            let n = doc.len().min(seq_len);
            let mut row = doc[..n].to_vec();
            row.resize(seq_len, 0);
            padding += seq_len - n;
            assert_eq!(set.sequence(g).to_u32_vec(), row, "{split} row {g}");
            assert_eq!(set.length(g), n, "{split} row {g}");
            assert_eq!(set.doc_starts(g), &[0], "{split} row {g}");
        }
        assert_eq!(sum.padding_tokens as usize, padding);
        assert!(
            set.shards()[..set.shards().len() - 1]
                .iter()
                .all(|s| s.len() == 8)
        );
    }
    let facts = schemas::shards::pack_facts(&ctx.layout).unwrap().unwrap();
    assert_eq!(facts.sequences, schemas::shards::Sequences::Document);
    assert!(summary.describe().contains("documents truncated"));

    ctx.config.tokenize.sequences = schemas::shards::Sequences::Packed;
    ctx.config.tokenize.seq_len = 64;
    let (_, again) = run_all(&ctx);
    assert!(!again.cached);
    assert_eq!(
        shard_bytes(dir.path()),
        packed_bytes,
        "packed shards as before"
    );
}

#[test]
fn split_is_a_stable_function_of_the_pmid() {
    let salt = "biomamba-split-v1";
    let n = 200_000u64;
    let val = (1..=n)
        .filter(|&p| split_of(p, salt, 0.005) == Split::Val)
        .count() as f64;
    assert!(
        (val / n as f64 - 0.005).abs() < 0.0007,
        "val fraction {}",
        val / n as f64
    );
    // A larger fraction only moves PMIDs from train to val, never back.
    for p in 1..20_000 {
        if split_of(p, salt, 0.005) == Split::Val {
            assert_eq!(split_of(p, salt, 0.05), Split::Val);
        }
    }
    assert_eq!(split_of(1, salt, 0.0), Split::Train);
    assert_eq!(split_of(1, salt, 1.0), Split::Val);
    // Pinned: the split must never change across versions (or a PMID would change sides).
    let pinned: Vec<u64> = (1..=3000)
        .filter(|&p| split_of(p, salt, 0.005) == Split::Val)
        .collect();
    assert_eq!(pinned, PINNED_VAL, "split hash changed");
}

const PINNED_VAL: &[u64] = &[
    54, 321, 1163, 1588, 1641, 1692, 1717, 2076, 2182, 2535, 2696,
];

#[test]
fn rerun_is_cached_and_byte_identical() {
    let Some(parts) = sample_rows() else { return };
    let a = tempfile::tempdir().unwrap();
    let ctx = sample_ctx(a.path(), &parts);
    let (first, _) = run_all(&ctx);
    assert_eq!(first.parts_run, 2);
    let before = snapshot(a.path());

    // Cached re-run: nothing runs, nothing is written.
    let (again, packed) = run_all(&ctx);
    assert_eq!(again.parts_run, 0);
    assert!(packed.cached);
    let after = snapshot(a.path());
    let changed: Vec<&PathBuf> = after
        .iter()
        .filter(|(p, v)| before.get(*p) != Some(*v))
        .map(|(p, _)| p)
        .collect();
    assert!(changed.is_empty(), "a cached re-run wrote {changed:?}");
    assert_eq!(after.len(), before.len());

    // Same inputs in a fresh directory: byte-identical shards.
    let b = tempfile::tempdir().unwrap();
    let ctx_b = sample_ctx(b.path(), &parts);
    run_all(&ctx_b);
    assert_eq!(shard_bytes(a.path()), shard_bytes(b.path()));
    assert!(!shard_bytes(a.path()).is_empty());

    // Rewriting a part with the same rows re-tokenizes it, but its token file is unchanged, so
    // packing stays cached.
    let part2 = a.path().join("parquet/abstracts/pubmed26n0002.parquet");
    std::thread::sleep(std::time::Duration::from_millis(20));
    write_abstracts_part(&part2, &parts[1], "pubmed26n0002.xml.gz").unwrap();
    let (touched, packed) = run_all(&ctx);
    assert_eq!(touched.parts_run, 1);
    assert!(packed.cached);

    // Changing a part re-packs; earlier shards that did not change keep their bytes.
    let mut fewer = parts[1].clone();
    fewer.pop();
    write_abstracts_part(&part2, &fewer, "pubmed26n0002.xml.gz").unwrap();
    let (changed, packed) = run_all(&ctx);
    assert_eq!(changed.parts_run, 1);
    assert!(!packed.cached);
    // --force rebuilds everything and gives the same bytes.
    let after_change = shard_bytes(a.path());
    let forced = Ctx {
        force: true,
        ..ctx.clone()
    };
    let (f, p) = run_all(&forced);
    assert_eq!((f.parts_run, p.cached), (2, false));
    assert_eq!(shard_bytes(a.path()), after_change);
}

#[test]
fn title_only_citations_are_opt_in() {
    let rows = vec![
        AbstractRow {
            pmid: 1,
            version: 1,
            title: Some("Only a title".into()),
            abstract_text: None,
        },
        AbstractRow {
            pmid: 2,
            version: 1,
            title: None,
            abstract_text: Some("Only an abstract".into()),
        },
        AbstractRow {
            pmid: 3,
            version: 1,
            title: None,
            abstract_text: None,
        },
    ];
    let dir = tempfile::tempdir().unwrap();
    let part = dir.path().join("part.parquet");
    write_abstracts_part(&part, &rows, "x.xml").unwrap();
    let tok = crate::train_tokenizer::train(
        ["Only a title", "Only an abstract"]
            .iter()
            .map(|s| s.to_string()),
        300,
        1,
    )
    .unwrap();
    let path = dir.path().join("tok.json");
    crate::train_tokenizer::save(&tok, &path).unwrap();
    let tok = LoadedTokenizer::load(&path).unwrap();
    for (title_only, docs) in [(false, vec![2u64]), (true, vec![1, 2])] {
        let out = dir.path().join(format!("t{title_only}.bin"));
        let stats = tokenize_part(&tok, &part, &out, 2, title_only, None).unwrap();
        assert_eq!(stats.docs as usize, docs.len());
        let mut r = TokenFileReader::open(&out).unwrap();
        let mut ids = Vec::new();
        for pmid in docs {
            assert_eq!(r.next_doc(&mut ids).unwrap(), Some(pmid));
        }
    }
}

#[test]
fn bad_input_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let part = dir.path().join("broken.parquet");
    std::fs::write(&part, b"PAR1 not really parquet").unwrap();
    let err = format!("{:#}", PartReader::open(&part, 10).err().unwrap());
    assert!(err.contains("broken.parquet"), "{err}");
}

#[test]
fn trained_tokenizer_is_deterministic_and_roundtrips() {
    let Some(parts) = sample_rows() else { return };
    let docs: Vec<String> = texts(&parts[0], false)
        .into_iter()
        .map(|(_, t)| t)
        .collect();
    let a = crate::train_tokenizer::train(docs.clone().into_iter(), 800, 2).unwrap();
    let b = crate::train_tokenizer::train(docs.clone().into_iter(), 800, 2).unwrap();
    assert_eq!(a.to_string(false).unwrap(), b.to_string(false).unwrap());
    assert_eq!(a.get_vocab_size(true), 800);
    assert_eq!(a.token_to_id(EOS_TOKEN), Some(0));
    let enc = a.encode_fast(docs[0].as_str(), false).unwrap();
    assert_eq!(a.decode(enc.get_ids(), false).unwrap(), docs[0]);
}

/// Random text from pieces that exercise every branch of the GPT-2 pattern: letters of several
/// scripts and cases (Lu, Ll, Lt, Lm, Lo), digits (Nd, Nl, No), marks, symbols, every kind of
/// whitespace alone and in runs (before letters, digits, punctuation, other whitespace and the
/// end), the contractions and their look-alikes, special tokens, GPT-NeoX's space-run tokens.
fn random_texts(n: usize, seed: u64) -> Vec<String> {
    let alphabet = [
        "a",
        "Z",
        "word",
        "é",
        "ß",
        "α",
        "Ω",
        "中文",
        "ǅ",
        "ʰ",
        "5",
        "42",
        "١٢",
        "²",
        "½",
        "Ⅻ",
        "\u{301}",
        "😀",
        "-",
        ".",
        ",",
        "(",
        "%",
        "'",
        "'s",
        "'t",
        "'re",
        "'ve",
        "'m",
        "'ll",
        "'d",
        "'S",
        "'x",
        " ",
        "  ",
        "   ",
        "    ",
        "\n",
        "\n\n",
        "\t",
        "\r\n",
        "\u{a0}",
        "\u{2009}",
        "\u{3000}",
        "\u{85}",
        "\u{200b}",
        "\u{1c}",
        "\u{b}",
        " a",
        " 5",
        " .",
        "<|endoftext|>",
        "<|padding|>",
    ];
    let mut state = seed;
    let mut next = |k: usize| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % k as u64) as usize
    };
    (0..n)
        .map(|_| {
            (0..next(24))
                .map(|_| alphabet[next(alphabet.len())])
                .collect()
        })
        .collect()
}

/// The pieces a pre-tokenizer cuts `text` into (byte offsets and byte-level strings).
fn pre_tokenized(pre: &dyn tokenizers::PreTokenizer, text: &str) -> Vec<(String, (usize, usize))> {
    let mut p = tokenizers::PreTokenizedString::from(text);
    pre.pre_tokenize(&mut p).unwrap();
    p.get_splits(
        tokenizers::OffsetReferential::Original,
        tokenizers::OffsetType::Byte,
    )
    .into_iter()
    .map(|(s, o, _)| (s.to_string(), o))
    .collect()
}

#[test]
fn fast_split_equals_the_crates_byte_level_pre_tokenizer() {
    use tokenizers::pre_tokenizers::byte_level::ByteLevel;
    let mut texts = random_texts(3000, 0x2545_f491_4f6c_dd1d);
    texts.extend(
        [
            "",
            " ",
            "   ",
            "a  b",
            "a \n b",
            "x\u{a0}\u{a0}y",
            "end  ",
            "  start",
            "it's 'S",
        ]
        .map(String::from),
    );
    for add_prefix_space in [false, true] {
        let crate_pre = ByteLevel::new(add_prefix_space, true, true);
        let fast = pretokenize::FastByteLevel(crate_pre);
        for text in &texts {
            assert_eq!(
                pre_tokenized(&fast, text),
                pre_tokenized(&crate_pre, text),
                "{text:?} (add_prefix_space {add_prefix_space}, crate engine {REGEX_ENGINE})"
            );
        }
    }
}

#[test]
fn fast_tokenizer_ids_equal_the_crates_on_every_expect_file_and_random_text() {
    let fx = fixtures();
    let mut tokenizers = Vec::new();
    let neox = fx.join("tokenizer/gpt-neox-20b.tokenizer.json");
    if neox.exists() {
        tokenizers.push(neox);
    } else {
        println!("SKIP (GPT-NeoX part): {} absent", neox.display());
    }
    let dir = tempfile::tempdir().unwrap();
    let mut texts = random_texts(1500, 0x9e37_79b9_7f4a_7c15);
    let mut expect_files = Vec::new();
    for d in [fx.join("pubmed/expect"), sample_dir().join("expect")] {
        expect_files.extend(schemas::layout::files_with_suffix(&d, ".jsonl").unwrap());
    }
    for f in &expect_files {
        for r in read_expect_jsonl(f).unwrap() {
            texts.extend(document_text(
                r.title.as_deref(),
                r.abstract_text.as_deref(),
                true,
            ));
        }
    }
    // A tokenizer of ours (trained on the sample), so the check runs without the fixtures too.
    if let Some(parts) = sample_rows() {
        let docs = parts
            .iter()
            .flat_map(|rows| texts_of(rows))
            .collect::<Vec<_>>();
        let trained = crate::train_tokenizer::train(docs.into_iter(), 900, 2).unwrap();
        let path = dir.path().join("trained.json");
        crate::train_tokenizer::save(&trained, &path).unwrap();
        tokenizers.push(path);
    }
    assert!(texts.len() > 1500 + 100, "{} texts", texts.len());
    for path in &tokenizers {
        let fast = LoadedTokenizer::load(path).unwrap();
        assert!(
            fast.fast.is_some(),
            "{} loads with the fast split",
            path.display()
        );
        let generic = LoadedTokenizer::load_generic(path).unwrap();
        assert!(generic.fast.is_none());
        for text in &texts {
            assert_eq!(
                fast.encode_document(text).unwrap(),
                generic.encode_document(text).unwrap(),
                "{}: {text:?}",
                path.display()
            );
        }
    }
}

fn texts_of(rows: &[AbstractRow]) -> Vec<String> {
    texts(rows, false).into_iter().map(|(_, t)| t).collect()
}
