//! The parse stage and the current view end to end on the synthetic sample: outputs, caching,
//! byte identity, incremental current view, sharding and bad input.

mod common;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{UInt32Type, UInt64Type};
use common::*;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use pipeline::{Config, Ctx};

const BASELINE: &str = "pubmed/baseline/pubmed26n0001.xml.gz";
const UPDATE: &str = "pubmed/updatefiles/pubmed26n0002.xml.gz";

fn ctx(dir: &Path, force: bool) -> Ctx {
    Ctx::new(Some(dir.to_path_buf()), Config::default(), force)
}

/// A data dir holding the given sample files under raw/.
fn data_dir_with(files: &[&str]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for f in files {
        add_sample_file(dir.path(), f);
    }
    dir
}

fn add_sample_file(data: &Path, rel: &str) {
    let to = data.join("raw").join(rel);
    std::fs::create_dir_all(to.parent().unwrap()).unwrap();
    std::fs::copy(sample().join(rel), to).unwrap();
}

fn read_batches(path: &Path) -> Vec<RecordBatch> {
    let f = std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    ParquetRecordBatchReaderBuilder::try_new(f)
        .unwrap()
        .build()
        .unwrap()
        .map(|b| b.unwrap())
        .collect()
}

fn count_rows(path: &Path) -> usize {
    read_batches(path).iter().map(|b| b.num_rows()).sum()
}

/// (pmid, version, title, source_file) of one row.
type Row = (u64, u32, Option<String>, String);

/// Every row of the current view, part by part.
fn current_rows(data: &Path) -> Vec<Vec<Row>> {
    let mut parts: Vec<PathBuf> = std::fs::read_dir(data.join("parquet/current"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    parts.sort();
    parts
        .iter()
        .map(|p| {
            let mut rows = Vec::new();
            for b in read_batches(p) {
                let pmid = b
                    .column_by_name("pmid")
                    .unwrap()
                    .as_primitive::<UInt64Type>();
                let ver = b
                    .column_by_name("version")
                    .unwrap()
                    .as_primitive::<UInt32Type>();
                let title = b.column_by_name("title").unwrap().as_string::<i32>();
                let src = b.column_by_name("source_file").unwrap().as_string::<i32>();
                for i in 0..b.num_rows() {
                    rows.push((
                        pmid.value(i),
                        ver.value(i),
                        (!title.is_null(i)).then(|| title.value(i).to_string()),
                        src.value(i).to_string(),
                    ));
                }
            }
            rows
        })
        .collect()
}

/// Every file under parquet/ with its bytes and mtime.
fn snapshot(data: &Path) -> BTreeMap<String, (Vec<u8>, std::time::SystemTime)> {
    let mut out = BTreeMap::new();
    for sub in ["abstracts", "deletions", "current"] {
        let dir = data.join("parquet").join(sub);
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            let meta = std::fs::metadata(&p).unwrap();
            out.insert(
                format!("{sub}/{}", p.file_name().unwrap().to_string_lossy()),
                (std::fs::read(&p).unwrap(), meta.modified().unwrap()),
            );
        }
    }
    out
}

#[test]
fn sample_parse_current_view_and_caching() {
    let data = data_dir_with(&[BASELINE, UPDATE]);
    let summary = parse_command(&ctx(data.path(), false), Default::default()).unwrap();
    assert_eq!((summary.files, summary.parsed, summary.cached), (2, 2, 0));
    assert_eq!(summary.citations, 100 + 19);
    assert_eq!(summary.deletions, 3);
    let p = data.path().join("parquet");
    assert_eq!(count_rows(&p.join("abstracts/pubmed26n0001.parquet")), 100);
    assert_eq!(count_rows(&p.join("deletions/pubmed26n0001.parquet")), 0);
    assert_eq!(count_rows(&p.join("abstracts/pubmed26n0002.parquet")), 19);
    assert_eq!(count_rows(&p.join("deletions/pubmed26n0002.parquet")), 3);

    // Current view: 100 baseline + 16 new − 3 deleted; revised records come from the update.
    let parts = current_rows(data.path());
    assert_eq!(parts.len(), 8);
    for part in &parts {
        assert!(
            part.windows(2).all(|w| w[0].0 < w[1].0),
            "part not sorted by PMID"
        );
    }
    let all: BTreeMap<u64, _> = parts.into_iter().flatten().map(|r| (r.0, r)).collect();
    assert_eq!(all.len(), 113);
    for deleted in [90000031, 90000032, 90000033] {
        assert!(!all.contains_key(&deleted), "{deleted} was deleted");
    }
    let (update_rows, _) = read_expect(&sample().join("expect/pubmed26n0002.jsonl"));
    let (base_rows, _) = read_expect(&sample().join("expect/pubmed26n0001.jsonl"));
    for row in &update_rows {
        let pmid = row["pmid"].as_u64().unwrap();
        let held = &all[&pmid];
        assert_eq!(
            held.3, "pubmed26n0002.xml.gz",
            "PMID {pmid} from the update"
        );
        assert_eq!(held.2.as_deref(), row["title"].as_str());
        assert_eq!(held.1 as u64, row["version"].as_u64().unwrap());
    }
    assert_eq!(all[&90000023].1, 2);
    let untouched = base_rows.iter().find(|r| r["pmid"] == 90000050).unwrap();
    assert_eq!(all[&90000050].2.as_deref(), untouched["title"].as_str());
    assert_eq!(all[&90000050].3, "pubmed26n0001.xml.gz");

    // A second run is cached and rewrites nothing.
    let before = snapshot(data.path());
    std::thread::sleep(std::time::Duration::from_millis(20));
    let again = parse_command(&ctx(data.path(), false), Default::default()).unwrap();
    assert_eq!((again.parsed, again.cached), (0, 2));
    assert_eq!(
        before,
        snapshot(data.path()),
        "cached run changed files or mtimes"
    );

    // --force re-runs and produces byte-identical files (kept as they were).
    parse_command(&ctx(data.path(), true), Default::default()).unwrap();
    assert_eq!(before, snapshot(data.path()), "forced re-run changed bytes");

    // A fresh directory gives the same bytes.
    let other = data_dir_with(&[BASELINE, UPDATE]);
    parse_command(&ctx(other.path(), false), Default::default()).unwrap();
    let a: BTreeMap<_, _> = before.into_iter().map(|(k, v)| (k, v.0)).collect();
    let b: BTreeMap<_, _> = snapshot(other.path())
        .into_iter()
        .map(|(k, v)| (k, v.0))
        .collect();
    assert_eq!(a, b, "outputs differ between two runs");
}

#[test]
fn current_view_is_incremental_and_equal_to_a_rebuild() {
    let data = data_dir_with(&[BASELINE]);
    parse_command(&ctx(data.path(), false), Default::default()).unwrap();
    assert_eq!(
        current_rows(data.path())
            .iter()
            .map(Vec::len)
            .sum::<usize>(),
        100
    );
    add_sample_file(data.path(), UPDATE);
    parse_command(&ctx(data.path(), false), Default::default()).unwrap();
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(data.path().join("manifests/current.json")).unwrap())
            .unwrap();
    assert_eq!(manifest["summary"]["incremental"], 8, "{manifest:#}");
    let full = data_dir_with(&[BASELINE, UPDATE]);
    parse_command(&ctx(full.path(), false), Default::default()).unwrap();
    let a: BTreeMap<_, _> = snapshot(data.path())
        .into_iter()
        .map(|(k, v)| (k, v.0))
        .collect();
    let b: BTreeMap<_, _> = snapshot(full.path())
        .into_iter()
        .map(|(k, v)| (k, v.0))
        .collect();
    assert_eq!(a, b, "incremental view differs from a full rebuild");
}

#[test]
fn shards_split_the_inputs() {
    let data = data_dir_with(&[BASELINE, UPDATE]);
    let shard = |s: &str| pipeline::parse::Args {
        shard: Some(s.parse().unwrap()),
        ..Default::default()
    };
    let s1 = parse_command(&ctx(data.path(), false), shard("1/2")).unwrap();
    assert_eq!((s1.files, s1.citations), (1, 19));
    assert!(
        !data.path().join("parquet/current").exists(),
        "no view from a shard"
    );
    let s0 = parse_command(&ctx(data.path(), false), shard("0/2")).unwrap();
    assert_eq!((s0.files, s0.citations), (1, 100));
    let cur = pipeline::current::run(&ctx(data.path(), false), Default::default()).unwrap();
    assert_eq!(cur.rows, 113);
    assert!("2/2".parse::<pipeline::parse::Shard>().is_err());
}

fn sample_xml() -> String {
    let mut s = String::new();
    flate2::read::MultiGzDecoder::new(std::fs::File::open(sample().join(BASELINE)).unwrap())
        .read_to_string(&mut s)
        .unwrap();
    s
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

/// Run parse on the good baseline plus one bad file; returns the error text and the data dir.
fn run_with_bad(name: &str, bytes: &[u8], skip: bool) -> (Option<String>, tempfile::TempDir) {
    let data = data_dir_with(&[BASELINE]);
    let bad = data.path().join("raw/pubmed/updatefiles").join(name);
    std::fs::create_dir_all(bad.parent().unwrap()).unwrap();
    std::fs::write(&bad, bytes).unwrap();
    let args = pipeline::parse::Args {
        skip_bad_records: skip,
        ..Default::default()
    };
    let result = parse_command(&ctx(data.path(), false), args);
    // The good file is always processed.
    assert_eq!(
        count_rows(&data.path().join("parquet/abstracts/pubmed26n0001.parquet")),
        100
    );
    (result.err().map(|e| format!("{e:#}")), data)
}

fn assert_failed(name: &str, bytes: &[u8], needles: &[&str]) {
    let (err, data) = run_with_bad(name, bytes, false);
    let err = err.unwrap_or_else(|| panic!("{name}: parse succeeded"));
    assert!(err.contains("1 of 2 files failed"), "{err}");
    assert!(err.contains(name), "{err}");
    assert!(err.contains("byte offset"), "{err}");
    for n in needles {
        assert!(err.contains(n), "{name}: {err:?} lacks {n:?}");
    }
    let stem = pipeline::parse::file_stem(Path::new(name));
    for sub in ["abstracts", "deletions"] {
        let dir = data.path().join("parquet").join(sub);
        let names: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(
            names.iter().all(|n| !n.contains(&stem)),
            "{name}: left {names:?} in {sub}"
        );
    }
}

#[test]
fn truncated_gzip_fails_its_file_only() {
    let gz = std::fs::read(sample().join(BASELINE)).unwrap();
    assert_failed("pubmed26n0005.xml.gz", &gz[..gz.len() / 2], &[]);
}

#[test]
fn malformed_xml_fails_with_offset() {
    let xml = sample_xml().replacen("</ArticleTitle>", "</ArticleTitel>", 3);
    assert_failed(
        "pubmed26n0006.xml.gz",
        &gzip(xml.as_bytes()),
        &["malformed XML"],
    );
    // Truncated plain XML (no gzip): the file ends inside a record.
    let xml = sample_xml();
    assert_failed(
        "pubmed26n0007.xml",
        &xml.as_bytes()[..xml.len() / 2],
        &["truncated"],
    );
}

#[test]
fn invalid_utf8_names_the_record_and_can_be_skipped() {
    let xml = sample_xml();
    let at = xml.find("<ArticleTitle>").unwrap() + "<ArticleTitle>".len();
    let mut bytes = xml.as_bytes()[..at].to_vec();
    bytes.extend_from_slice(b"bad \xff\xfe bytes ");
    bytes.extend_from_slice(&xml.as_bytes()[at..]);
    let offset = format!("byte offset {}", at + 4);
    assert_failed(
        "pubmed26n0008.xml.gz",
        &gzip(&bytes),
        &["invalid UTF-8", &offset, "PMID 90000001"],
    );
    let (err, data) = run_with_bad("pubmed26n0008.xml.gz", &gzip(&bytes), true);
    assert_eq!(err, None);
    assert_eq!(
        count_rows(&data.path().join("parquet/abstracts/pubmed26n0008.parquet")),
        99
    );
}

#[test]
fn citation_without_pmid_fails_or_is_skipped_and_counted() {
    let xml = sample_xml().replacen("<PMID Version=\"1\">90000002</PMID>", "", 1);
    assert_failed(
        "pubmed26n0009.xml.gz",
        &gzip(xml.as_bytes()),
        &["has no PMID", "record #1"],
    );
    let (err, data) = run_with_bad("pubmed26n0009.xml.gz", &gzip(xml.as_bytes()), true);
    assert_eq!(err, None);
    assert_eq!(
        count_rows(&data.path().join("parquet/abstracts/pubmed26n0009.parquet")),
        99
    );
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(data.path().join("manifests/parse.json")).unwrap())
            .unwrap();
    let unit = &manifest["units"]["raw/pubmed/updatefiles/pubmed26n0009.xml.gz"];
    assert_eq!(unit["stats"]["skipped_records"], 1, "{manifest:#}");
    assert_eq!(manifest["summary"]["skipped_records"], 1);
}

#[test]
fn failed_file_that_used_to_parse_loses_its_old_part() {
    let data = data_dir_with(&[BASELINE, UPDATE]);
    parse_command(&ctx(data.path(), false), Default::default()).unwrap();
    let update = data.path().join("raw").join(UPDATE);
    let gz = std::fs::read(&update).unwrap();
    std::fs::write(&update, &gz[..gz.len() - 40]).unwrap();
    let err = parse_command(&ctx(data.path(), false), Default::default()).unwrap_err();
    assert!(format!("{err:#}").contains("pubmed26n0002.xml.gz"));
    assert!(
        !data
            .path()
            .join("parquet/abstracts/pubmed26n0002.parquet")
            .exists()
    );
    assert!(
        data.path()
            .join("parquet/abstracts/pubmed26n0001.parquet")
            .exists()
    );
}

#[test]
fn inspect_summarizes_and_runs_sql() {
    let data = data_dir_with(&[BASELINE, UPDATE]);
    parse_command(&ctx(data.path(), false), Default::default()).unwrap();
    let current = data.path().join("parquet/current");
    let files: Vec<PathBuf> = {
        let mut v: Vec<_> = std::fs::read_dir(&current)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        v.sort();
        v
    };
    assert_eq!(
        pipeline::inspect::table_kind(&files[0]).unwrap().as_deref(),
        Some("abstracts")
    );
    let lf = pipeline::inspect::scan(&files).unwrap();
    let summary = (pipeline::inspect::summarizer("abstracts").unwrap())(&lf).unwrap();
    assert!(summary.contains("rows: 113"), "{summary}");
    let df = pipeline::inspect::query(
        lf,
        "SELECT count(*) AS n, min(pmid) AS lo FROM t WHERE pmid BETWEEN 90000031 AND 90000033",
    )
    .unwrap();
    assert_eq!(
        df.column("n")
            .unwrap()
            .get(0)
            .unwrap()
            .try_extract::<u64>()
            .unwrap(),
        0
    );
}
