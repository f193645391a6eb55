//! The synthetic sample: offline conversion, leak-free tasks, re-runs, bad inputs, and the real
//! join with parsed PubMed.

use super::*;

const SAMPLE_CONFIG: &str = r#"
[bioasq]
test_documents = "documents"
[bioasq.tasks.sample-b1]
year = 1
train = "training-sample.json"
test = ["test-batch1_golden.json"]
[bioasq.tasks.sample-b2]
year = 2
train = "training-sample.json"
test = ["test-batch2_golden.json"]
[bioasq.tasks.sample-squad]
year = 1
train = "squad-train-sample.json"
test = ["squad-test-sample.json"]
"#;

fn sample_inputs() -> Vec<PathBuf> {
    [
        "training-sample.json",
        "test-batch1_golden.json",
        "test-batch2_golden.json",
        "squad-train-sample.json",
        "squad-test-sample.json",
    ]
    .iter()
    .map(|n| sample_dir().join(n))
    .collect()
}

#[test]
fn sample_offline_conversion_leaks_and_rerun() {
    let tmp = tempfile::tempdir().unwrap();
    let c = ctx(tmp.path(), SAMPLE_CONFIG, false);
    let summary = bioasq::run(&c, args(sample_inputs(), true, None)).unwrap();
    let out = tmp.path().join("bioasq");

    // Official training conversion reproduces the sample's SQuAD training file (same ids, contexts,
    // answers, offsets).
    let examples = schemas::bioasq::read_examples(&out.join("examples.arrow")).unwrap();
    let converted: Vec<Example> = examples
        .iter()
        .filter(|e| e.source_file == "training-sample.json" && e.qtype == qtype::FACTOID)
        .cloned()
        .collect();
    let squad_train = read_json(&sample_dir().join("squad-train-sample.json"));
    let ours = convert::to_squad_json(&converted, "x");
    assert_eq!(
        ours["data"][0]["paragraphs"],
        squad_train["data"][0]["paragraphs"]
    );
    assert_eq!(
        summary["training_conversion"]["factoid"]["snippets_without_answer"],
        22
    );

    // Leaks: training question 1 (same id) is in test batch 1, question 2 (same text) in batch 2.
    let b1_train = schemas::bioasq::read_examples(&out.join("sample-b1/train.arrow")).unwrap();
    let b2_train = schemas::bioasq::read_examples(&out.join("sample-b2/train.arrow")).unwrap();
    let qids = |v: &[Example]| {
        v.iter()
            .map(|e| e.question_id.clone())
            .collect::<BTreeSet<_>>()
    };
    assert!(!qids(&b1_train).contains("63aae0199f8e61744781c900"));
    assert!(!qids(&b1_train).contains("54d2b4c0278997f337a6783f"));
    assert!(!qids(&b2_train).contains("54d2b4c0278997f337a6783f"));
    assert!(
        qids(&b2_train).contains("63aae0199f8e61744781c900"),
        "batch-1 leak is year 1 < 2"
    );
    // The sample holds a third, unintended leak: training question 3517060121751421dc290d45 and
    // batch-2 question 986d60559bd93931cf3ef2b0 have the same text (template collision).
    assert!(!qids(&b2_train).contains("3517060121751421dc290d45"));
    let leaks = &summary["tasks"]["sample-b1"]["leaks"];
    assert_eq!(
        (
            leaks["removed_by_id"].as_u64(),
            leaks["removed_by_text"].as_u64()
        ),
        (Some(1), Some(2))
    );
    let leaks = &summary["tasks"]["sample-b2"]["leaks"];
    assert_eq!(
        (
            leaks["removed_by_id"].as_u64(),
            leaks["removed_by_text"].as_u64()
        ),
        (Some(0), Some(2))
    );
    // 29 factoid questions, and the yes/no question (its one snippet); the list question's two
    // snippets mention none of its entities, so it has no training example.
    assert_eq!(qids(&b1_train).len(), 30);
    let yesno: Vec<&Example> = b1_train
        .iter()
        .filter(|e| e.qtype == qtype::YESNO)
        .collect();
    assert_eq!(yesno.len(), 1);
    assert_eq!(yesno[0].answer_text.as_deref(), Some("yes"));
    assert!(!b1_train.iter().any(|e| e.qtype == qtype::LIST));
    assert_eq!(
        summary["training_conversion"]["list"]["snippets_without_answer"],
        2
    );

    // Offline: nothing in parquet/current, so every test context is the snippet fallback; the missing
    // PMID 99999901 without snippets (question 2) is dropped, the one with a snippet (question 5) kept.
    let test = schemas::bioasq::read_examples(&out.join("sample-b1/test.arrow")).unwrap();
    assert!(
        test.iter()
            .all(|e| e.context_source == schemas::bioasq::source::SNIPPET_FALLBACK)
    );
    assert!(test.iter().any(|e| e.pmid == Some(99999901)));
    assert_eq!(summary["test"]["documents_not_found"], 2);

    // SQuAD carried over exactly.
    let squad_task = schemas::bioasq::read_examples(&out.join("sample-squad/test.arrow")).unwrap();
    let squad_test = read_json(&sample_dir().join("squad-test-sample.json"));
    assert_eq!(
        convert::to_squad_json(&squad_task, "x")["data"][0]["paragraphs"],
        squad_test["data"][0]["paragraphs"]
    );

    // Golden: all questions of the official files, with years from the tasks.
    let golden = golden_rows(&out.join("golden.arrow"));
    assert_eq!(golden.len(), 35 + 10 + 10);
    assert!(
        golden
            .iter()
            .filter(|g| g.4 == "test-batch2_golden.json")
            .all(|g| g.3 == Some(2))
    );

    // Cached re-run touches nothing; --force re-run is byte-identical.
    let before = snapshot(tmp.path());
    bioasq::run(&c, args(sample_inputs(), true, None)).unwrap();
    let forced = ctx(tmp.path(), SAMPLE_CONFIG, true);
    bioasq::run(&forced, args(sample_inputs(), true, None)).unwrap();
    let after = snapshot(tmp.path());
    let data_files = |s: &BTreeMap<PathBuf, Vec<u8>>| {
        s.iter()
            .filter(|(p, _)| p.starts_with("bioasq"))
            .map(|(p, b)| (p.clone(), b.clone()))
            .collect::<BTreeMap<_, _>>()
    };
    assert_eq!(data_files(&before), data_files(&after));
    let status = bioasq::status(&ctx(tmp.path(), SAMPLE_CONFIG, false));
    // status lists raw/bioasq only; with --input runs it reports "no inputs", which is still Ok.
    assert!(status.is_ok());
}

#[test]
fn bad_inputs_are_named_and_nothing_is_written() {
    let tmp = tempfile::tempdir().unwrap();
    let raw = tmp.path().join("raw/bioasq");
    std::fs::create_dir_all(&raw).unwrap();
    std::fs::write(
        raw.join("broken.json"),
        "{\"questions\": [\n  {\"id\": \"x\",,}\n]}",
    )
    .unwrap();
    let c = ctx(tmp.path(), "", false);
    let err = format!("{:#}", bioasq::run(&c, Args::new()).unwrap_err());
    assert!(
        err.contains("broken.json") && err.contains("line 2 column"),
        "{err}"
    );
    assert!(!tmp.path().join("bioasq").exists());

    // A SQuAD answer that does not sit at its offset: error naming the example id.
    std::fs::write(
        raw.join("broken.json"),
        r#"{"data":[{"paragraphs":[{"context":"αβγ TFEB here","qas":[{"id":"abc_001","question":"q?","answers":[{"text":"TFEB","answer_start":5}]}]}]}]}"#,
    )
    .unwrap();
    let err = format!("{:#}", bioasq::run(&c, Args::new()).unwrap_err());
    assert!(
        err.contains("abc_001") && err.contains("answer_start 5"),
        "{err}"
    );
    assert!(!tmp.path().join("bioasq").exists());

    // Unknown question types are skipped and counted.
    std::fs::write(
        raw.join("broken.json"),
        r#"{"questions":[{"id":"a","type":"factoid","body":"B?","documents":[],"snippets":[{"text":"x TFEB","document":"http://www.ncbi.nlm.nih.gov/pubmed/1"}],"exact_answer":[["tfeb"]]},
                        {"id":"b","type":"puzzle","body":"?"}]}"#,
    )
    .unwrap();
    let summary = bioasq::run(&c, Args::new()).unwrap();
    assert_eq!(
        summary["files"]["broken.json"]["unknown_types_skipped"]["puzzle"],
        1
    );
    let ex = schemas::bioasq::read_examples(&tmp.path().join("bioasq/examples.arrow")).unwrap();
    assert_eq!(
        (ex[0].answer_text.as_deref(), ex[0].answer_start),
        (Some("TFEB"), Some(2))
    );
}

/// The real join: sample PubMed → `pipeline parse` (+ current view) → `pipeline bioasq` on test batch 1.
#[test]
fn sample_join_with_parsed_pubmed() {
    let tmp = tempfile::tempdir().unwrap();
    let raw = tmp.path().join("raw/pubmed");
    for (sub, name) in [
        ("baseline", "pubmed26n0001.xml.gz"),
        ("updatefiles", "pubmed26n0002.xml.gz"),
    ] {
        std::fs::create_dir_all(raw.join(sub)).unwrap();
        std::fs::copy(
            testkit::fixtures::sample_dir()
                .join("pubmed")
                .join(sub)
                .join(name),
            raw.join(sub).join(name),
        )
        .unwrap();
    }
    let c = ctx(
        tmp.path(),
        "[bioasq]\ntest_documents = \"documents\"\n",
        false,
    );
    common::parse_command(&c, pipeline::parse::Args::default()).unwrap();
    let batch1 = sample_dir().join("test-batch1_golden.json");
    let summary = bioasq::run(&c, args(vec![batch1], true, None)).unwrap();
    // 14 documents of the factoid questions and the yes/no question's one.
    assert_eq!(summary["test"]["sources"]["pubmed"], 15);
    assert_eq!(summary["test"]["questions"]["yesno"], 1);
    assert_eq!(
        summary["test"]["sources"]["snippet-fallback"], 1,
        "99999901 is in no XML"
    );

    // Expected contexts from the sample's independent (xml.etree) extraction.
    let expect: HashMap<u64, Value> =
        std::fs::read_to_string(testkit::fixtures::sample_dir().join("expect/pubmed26n0001.jsonl"))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap())
            .filter_map(|v| v["pmid"].as_u64().map(|p| (p, v)))
            .collect();
    let squad: HashMap<String, String> =
        read_json(&sample_dir().join("squad-test-sample.json"))["data"][0]["paragraphs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                (
                    p["qas"][0]["id"].as_str().unwrap().to_string(),
                    p["context"].as_str().unwrap().to_string(),
                )
            })
            .collect();
    let ours = schemas::bioasq::read_examples(&tmp.path().join("bioasq/examples.arrow")).unwrap();
    let mut joined = 0;
    for e in ours.iter().filter(|e| e.context_source == "pubmed") {
        let x = &expect[&e.pmid.unwrap()];
        let want = format!(
            "{} {}",
            x["title"].as_str().unwrap(),
            x["abstract"].as_str().unwrap().replace('\n', " ")
        );
        assert_eq!(e.context, want, "{}", e.id);
        // The sample's SQuAD test file is built like BioBERT's: labelled sections joined by spaces
        // (its questions are the factoid ones).
        if e.qtype == qtype::FACTOID {
            assert_eq!(
                squad.get(&e.id),
                Some(&e.context),
                "{}: differs from squad-test-sample.json",
                e.id
            );
        }
        joined += 1;
    }
    assert!(joined > 0);
}
