//! `pipeline pubmedqa` on the real PubMedQA files (SKIP when the fixtures are absent): the official
//! split reproduced exactly (against fold lists Python 3.11 computed with the published
//! `split_dataset.py` algorithm, `tests/data/pubmedqa-split.json`), the tables, caching, the offline
//! rule, the consistency check, and the download through the verified fetcher from a local server.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};

use pipeline::pubmedqa::{self, Args, ORI_PQAL, TEST_GROUND_TRUTH};
use pipeline::{Config, Ctx};
use serde_json::Value;
use testkit::test_server::{Fault, TestServer};

fn fixtures() -> Option<PathBuf> {
    testkit::fixtures::fixtures_with(&["pubmedqa/ori_pqal.json", "pubmedqa/test_ground_truth.json"])
        .map(|d| d.join("pubmedqa"))
}

/// Fast retries, as the download tests use.
fn test_ctx(dir: &Path, force: bool) -> Ctx {
    let mut config = Config::default();
    let d = &mut config.download;
    d.max_attempts = 3;
    d.connect_timeout_secs = 2.0;
    d.read_timeout_secs = 2.0;
    d.backoff_initial_secs = 0.01;
    d.backoff_max_secs = 0.05;
    Ctx::new(Some(dir.to_path_buf()), config, force)
}

fn offline() -> Args {
    Args {
        offline: true,
        ..Default::default()
    }
}

fn copy_raw(fx: &Path, data: &Path) {
    let raw = data.join("raw/pubmedqa");
    std::fs::create_dir_all(&raw).unwrap();
    for name in [ORI_PQAL, TEST_GROUND_TRUTH] {
        std::fs::copy(fx.join(name), raw.join(name)).unwrap();
    }
}

/// The split Python computed: (test PMIDs in order, folds each in order).
fn expected_split() -> (Vec<u64>, Vec<Vec<u64>>) {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/pubmedqa-split.json");
    let v: Value = serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap();
    let ids = |v: &Value| -> Vec<u64> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap())
            .collect()
    };
    let folds = v["folds"].as_array().unwrap().iter().map(ids).collect();
    (ids(&v["test"]), folds)
}

#[test]
fn official_split_tables_and_caching() {
    let Some(fx) = fixtures() else {
        println!("SKIP: PubMedQA fixtures not found");
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    copy_raw(&fx, tmp.path());
    let summary = pubmedqa::run(&test_ctx(tmp.path(), false), offline()).unwrap();
    assert_eq!(
        (&summary["train"], &summary["test"]),
        (&Value::from(500), &Value::from(500))
    );
    assert_eq!(summary["folds"], serde_json::json!(vec![50; 10]));
    assert_eq!(summary["published_files"][ORI_PQAL], true);
    assert_eq!(summary["labels"]["test"]["maybe"], 55);

    // The split itself, order included, equals Python's run of the published algorithm.
    let (want_test, want_folds) = expected_split();
    let pubmedqa::PqalTables { train, test, folds } =
        pubmedqa::build_rows(&fx.join(ORI_PQAL), &fx.join(TEST_GROUND_TRUTH)).unwrap();
    assert_eq!(folds, want_folds);
    let split_test: Vec<u64> = {
        // pqal_split's test part, in the script's order, from the labels in file order.
        let label: HashMap<u64, String> = train
            .iter()
            .chain(&test)
            .map(|r| (r.pmid, r.label.clone()))
            .collect();
        let data: Vec<(u64, &str)> = ordered_pmids(&fx.join(ORI_PQAL))
            .into_iter()
            .map(|p| (p, label[&p].as_str()))
            .collect();
        pipeline::pubmedqa::split::pqal_split(&data).unwrap().0
    };
    assert_eq!(split_test, want_test);

    // The tables: test = the ground truth's PMIDs with their labels, train = the rest with folds.
    let out = tmp.path().join("pubmedqa");
    let t = schemas::pubmedqa::read(&out.join("test.arrow")).unwrap();
    let r = schemas::pubmedqa::read(&out.join("train.arrow")).unwrap();
    assert!(out.join("train.parquet").is_file() && out.join("test.parquet").is_file());
    let truth: BTreeMap<String, String> =
        serde_json::from_slice(&std::fs::read(fx.join(TEST_GROUND_TRUTH)).unwrap()).unwrap();
    assert_eq!(t.len(), truth.len());
    for row in &t {
        assert_eq!(truth[&row.pmid.to_string()], row.label);
        assert_eq!((row.split.as_str(), row.fold), ("test", None));
    }
    let fold_of: HashMap<u64, u32> = want_folds
        .iter()
        .enumerate()
        .flat_map(|(i, f)| f.iter().map(move |p| (*p, i as u32)))
        .collect();
    assert_eq!(r.len(), 500);
    for row in &r {
        assert_eq!(
            (row.split.as_str(), row.fold),
            ("train", Some(fold_of[&row.pmid]))
        );
    }
    // Rows keep the file order; contexts keep their section labels.
    let order = ordered_pmids(&fx.join(ORI_PQAL));
    let in_order: Vec<u64> = order
        .iter()
        .copied()
        .filter(|p| fold_of.contains_key(p))
        .collect();
    assert_eq!(r.iter().map(|x| x.pmid).collect::<Vec<_>>(), in_order);
    let first = t.iter().find(|x| x.pmid == 21645374).unwrap();
    assert_eq!(first.context_labels, ["BACKGROUND", "RESULTS"]);
    assert_eq!(first.year, Some(2011));
    assert!(first.long_answer.len() > 20 && first.contexts.len() == 2);

    // Cached re-run rewrites nothing; --force gives the same bytes.
    let snap = |d: &Path| testkit::fixtures::snapshot(d).unwrap();
    let before = snap(&out);
    pubmedqa::run(&test_ctx(tmp.path(), false), offline()).unwrap();
    assert_eq!(snap(&out), before);
    pubmedqa::run(&test_ctx(tmp.path(), true), offline()).unwrap();
    let after = snap(&out);
    assert_eq!(
        before.values().map(|(_, b)| b).collect::<Vec<_>>(),
        after.values().map(|(_, b)| b).collect::<Vec<_>>()
    );
    let status = pubmedqa::status(&test_ctx(tmp.path(), false)).unwrap();
    assert_eq!((status.state(), status.cached), ("cached", 1));
}

/// The PMIDs of `ori_pqal.json` in file order: its top-level keys are the lines `    "PMID": {`
/// (the published file is indented by 4; checked against the parsed key count).
fn ordered_pmids(path: &Path) -> Vec<u64> {
    let text = std::fs::read_to_string(path).unwrap();
    let keys: Vec<u64> = text
        .lines()
        .filter_map(|l| l.strip_prefix("    \"")?.strip_suffix("\": {"))
        .map(|k| k.parse().unwrap())
        .collect();
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(keys.len(), v.as_object().unwrap().len());
    keys
}

#[test]
fn offline_without_files_and_files_that_are_not_the_published_ones() {
    let Some(fx) = fixtures() else {
        println!("SKIP: PubMedQA fixtures not found");
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let e = format!(
        "{:#}",
        pubmedqa::run(&test_ctx(tmp.path(), false), offline()).unwrap_err()
    );
    assert!(
        e.contains("offline") && e.contains("raw/pubmedqa/ori_pqal.json"),
        "{e}"
    );
    assert!(!tmp.path().join("pubmedqa").exists());

    // Two "yes" questions, one of the test set and one not, swapped in file order: the shuffle
    // moves each to the other's place, so the split's test set is another; the stage names the
    // two PMIDs instead of writing a wrong split.
    copy_raw(&fx, tmp.path());
    let raw = tmp.path().join("raw/pubmedqa").join(ORI_PQAL);
    let text = std::fs::read_to_string(&raw).unwrap();
    let v: serde_json::Map<String, Value> = serde_json::from_str(&text).unwrap();
    let truth: serde_json::Map<String, Value> =
        serde_json::from_slice(&std::fs::read(fx.join(TEST_GROUND_TRUTH)).unwrap()).unwrap();
    let order = ordered_pmids(&fx.join(ORI_PQAL));
    let yes = |p: &u64| v[&p.to_string()]["final_decision"] == "yes";
    let in_test = |p: &u64| truth.contains_key(&p.to_string());
    let i = order.iter().position(|p| yes(p) && in_test(p)).unwrap();
    let j = order.iter().position(|p| yes(p) && !in_test(p)).unwrap();
    let mut reordered = order.clone();
    reordered.swap(i, j);
    let mut out = String::from("{");
    for (i, p) in reordered.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&format!("\"{p}\": {}", v[&p.to_string()]));
    }
    out.push('}');
    std::fs::write(&raw, out).unwrap();
    let e = format!(
        "{:#}",
        pubmedqa::run(&test_ctx(tmp.path(), false), offline()).unwrap_err()
    );
    assert!(
        e.contains("another test set")
            && e.contains("not the published files")
            && e.contains("2 PMIDs")
            && e.contains(&order[i].to_string())
            && e.contains(&order[j].to_string()),
        "{e}"
    );
    assert!(!tmp.path().join("pubmedqa/test.arrow").exists());

    // A ground-truth label that is not the question's final_decision is named.
    copy_raw(&fx, tmp.path());
    let gt = tmp.path().join("raw/pubmedqa").join(TEST_GROUND_TRUTH);
    let text = std::fs::read_to_string(&gt).unwrap();
    std::fs::write(
        &gt,
        text.replacen("\"12377809\": \"yes\"", "\"12377809\": \"no\"", 1),
    )
    .unwrap();
    let e = format!(
        "{:#}",
        pubmedqa::run(&test_ctx(tmp.path(), false), offline()).unwrap_err()
    );
    assert!(
        e.contains("12377809") && e.contains("final_decision"),
        "{e}"
    );
}

#[test]
fn downloads_the_published_files_through_the_verified_fetcher() {
    let Some(fx) = fixtures() else {
        println!("SKIP: PubMedQA fixtures not found");
        return;
    };
    let server = TestServer::start().unwrap();
    let ori = std::fs::read(fx.join(ORI_PQAL)).unwrap();
    let truth = std::fs::read(fx.join(TEST_GROUND_TRUTH)).unwrap();
    server.add("/pubmedqa/master/data/ori_pqal.json", ori.clone());
    server.add(
        "/pubmedqa/master/data/test_ground_truth.json",
        truth.clone(),
    );
    // The first body arrives corrupted (SHA-256 mismatch), the second attempt is whole.
    server.fault("/pubmedqa/master/data/ori_pqal.json", Fault::Corrupt);
    let tmp = tempfile::tempdir().unwrap();
    let args = Args {
        base_url: Some(format!("{}/pubmedqa/master/", server.url())),
        ..Default::default()
    };
    let summary = pubmedqa::run(&test_ctx(tmp.path(), false), args.clone()).unwrap();
    assert_eq!(summary["test"], 500);
    let raw = tmp.path().join("raw/pubmedqa");
    assert_eq!(std::fs::read(raw.join(ORI_PQAL)).unwrap(), ori);
    assert_eq!(std::fs::read(raw.join(TEST_GROUND_TRUTH)).unwrap(), truth);
    assert_eq!(server.hits("/pubmedqa/master/data/ori_pqal.json").gets, 2);
    // Present files are never fetched again.
    pubmedqa::run(&test_ctx(tmp.path(), false), args).unwrap();
    assert_eq!(server.hits("/pubmedqa/master/data/ori_pqal.json").gets, 2);
    assert_eq!(
        server
            .hits("/pubmedqa/master/data/test_ground_truth.json")
            .gets,
        1
    );
    let seen: HashSet<u64> = schemas::pubmedqa::read(&tmp.path().join("pubmedqa/train.arrow"))
        .unwrap()
        .iter()
        .map(|r| r.pmid)
        .collect();
    assert_eq!(seen.len(), 500);
}
