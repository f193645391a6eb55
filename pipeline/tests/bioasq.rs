//! `pipeline bioasq` end to end: the synthetic sample, the real fixtures (SKIP when absent), a local
//! efetch server, and BioBERT's own 4b test contexts rebuilt from PubMed XML.

mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arrow::array::{
    Array, ArrayRef, AsArray, Int32Array, ListArray, RecordBatch, StringArray, UInt32Array,
    UInt64Array, new_empty_array, new_null_array,
};
use arrow::buffer::OffsetBuffer;
use arrow::datatypes::DataType;
use pipeline::bioasq::convert;
use schemas::bioasq::{Example, Split};
use pipeline::bioasq::{self, Args};
use pipeline::{Config, Ctx, Layout};
use serde_json::Value;

fn fixtures() -> Option<PathBuf> {
    testkit::fixtures::fixtures_with(&["bioasq/golden/4B1_golden.json"])
}

fn sample_dir() -> PathBuf {
    testkit::fixtures::sample_dir().join("bioasq")
}

fn ctx(dir: &Path, toml: &str, force: bool) -> Ctx {
    let config: Config = toml::from_str(toml).expect("test config");
    Ctx {
        layout: Layout::new(dir),
        config,
        force,
    }
}

fn args(inputs: Vec<PathBuf>, offline: bool, base_url: Option<&str>) -> Args {
    let mut a = Args::new();
    a.inputs = inputs;
    a.offline = offline;
    if let Some(u) = base_url {
        a.base_url = u.to_string();
    }
    a
}

fn read_json(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// Every file under `dir` with its bytes (for byte-identical re-run checks).
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    testkit::fixtures::snapshot(dir)
        .unwrap()
        .into_iter()
        .map(|(p, (_, bytes))| (p, bytes))
        .collect()
}

/// (question_id, type, exact_answer, year, source_file)
type GoldenTuple = (String, String, Vec<Vec<String>>, Option<i32>, String);

fn golden_rows(path: &Path) -> Vec<GoldenTuple> {
    let file = std::fs::File::open(path).unwrap();
    let reader = arrow::ipc::reader::FileReader::try_new(file, None).unwrap();
    let mut out = Vec::new();
    for batch in reader {
        let b = batch.unwrap();
        let s = |n: &str| b.column_by_name(n).unwrap().as_string::<i32>().clone();
        let (qid, qtype, sf) = (s("question_id"), s("type"), s("source_file"));
        let exact = b
            .column_by_name("exact_answer")
            .unwrap()
            .as_list::<i32>()
            .clone();
        let year = b
            .column_by_name("year")
            .unwrap()
            .as_primitive::<arrow::datatypes::Int32Type>()
            .clone();
        for i in 0..b.num_rows() {
            let groups = exact.value(i);
            let groups = groups.as_list::<i32>();
            let lists = (0..groups.len())
                .map(|g| {
                    let syn = groups.value(g);
                    let syn = syn.as_string::<i32>();
                    (0..syn.len()).map(|k| syn.value(k).to_string()).collect()
                })
                .collect();
            out.push((
                qid.value(i).to_string(),
                qtype.value(i).to_string(),
                lists,
                (!year.is_null(i)).then(|| year.value(i)),
                sf.value(i).to_string(),
            ));
        }
    }
    out
}

// ---------------------------------------------------------------- sample

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
        .filter(|e| e.source_file == "training-sample.json")
        .cloned()
        .collect();
    let squad_train = read_json(&sample_dir().join("squad-train-sample.json"));
    let ours = convert::to_squad_json(&converted, "x");
    assert_eq!(
        ours["data"][0]["paragraphs"],
        squad_train["data"][0]["paragraphs"]
    );
    assert_eq!(
        summary["training_conversion"]["snippets_without_answer"],
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
    assert_eq!(qids(&b1_train).len(), 29);

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

// ---------------------------------------------------------------- parquet/current

/// A `parquet/current` part following `schemas::abstracts::schema()`.
fn write_current(dir: &Path, docs: &[(u64, Option<&str>, Option<&str>)]) {
    let schema = schemas::abstracts::schema();
    let n = docs.len();
    let columns: Vec<ArrayRef> = schema
        .fields()
        .iter()
        .map(|f| -> ArrayRef {
            match f.name().as_str() {
                "pmid" => Arc::new(UInt64Array::from_iter_values(docs.iter().map(|d| d.0))),
                "version" => Arc::new(UInt32Array::from(vec![1u32; n])),
                "title" => Arc::new(StringArray::from_iter(docs.iter().map(|d| d.1))),
                "abstract" => Arc::new(StringArray::from_iter(docs.iter().map(|d| d.2))),
                "record_index" => Arc::new(UInt32Array::from_iter_values(0..n as u32)),
                "year" => Arc::new(Int32Array::from(vec![None; n])),
                _ => match f.data_type() {
                    DataType::List(item) => Arc::new(ListArray::new(
                        item.clone(),
                        OffsetBuffer::new_zeroed(n),
                        new_empty_array(item.data_type()),
                        None,
                    )),
                    DataType::Utf8 if !f.is_nullable() => {
                        Arc::new(StringArray::from(vec!["PubmedArticle"; n]))
                    }
                    dt => new_null_array(dt, n),
                },
            }
        })
        .collect();
    let batch = RecordBatch::try_new(schema.clone(), columns).unwrap();
    std::fs::create_dir_all(dir).unwrap();
    let file = std::fs::File::create(dir.join("part-00000.parquet")).unwrap();
    let mut w = parquet::arrow::ArrowWriter::try_new(file, schema, None).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
}

// ---------------------------------------------------------------- local efetch server

type RequestLog = Arc<Mutex<Vec<(Instant, Vec<u64>)>>>;

struct Server {
    url: String,
    /// (arrival time, requested ids) per request.
    log: RequestLog,
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('\u{a0}', "&#160;")
}

/// Serve `records` (PMID → `<PubmedArticle>` XML) as efetch does; unknown PMIDs are left out.
fn start_server(records: HashMap<u64, String>) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let log = Arc::new(Mutex::new(Vec::new()));
    let log2 = log.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut request_line = String::new();
            if reader.read_line(&mut request_line).is_err() {
                continue;
            }
            let arrived = Instant::now();
            loop {
                let mut h = String::new();
                if reader.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
                    break;
                }
            }
            let target = request_line
                .split_whitespace()
                .nth(1)
                .unwrap_or("")
                .to_string();
            let query = target.split_once('?').map(|x| x.1).unwrap_or("");
            let params: HashMap<&str, &str> = query
                .split('&')
                .filter_map(|kv| kv.split_once('='))
                .collect();
            let ids: Vec<u64> = params
                .get("id")
                .map(|s| s.split(',').filter_map(|x| x.parse().ok()).collect())
                .unwrap_or_default();
            let ok = target.starts_with("/entrez/eutils/efetch.fcgi")
                && params.get("db") == Some(&"pubmed")
                && params.get("retmode") == Some(&"xml");
            log2.lock().unwrap().push((arrived, ids.clone()));
            let mut body = String::from(
                "<?xml version=\"1.0\" ?>\n<!DOCTYPE PubmedArticleSet PUBLIC \"-//NLM//DTD PubMedArticle, 1st January 2025//EN\" \"https://dtd.nlm.nih.gov/ncbi/pubmed/out/pubmed_250101.dtd\">\n<PubmedArticleSet>\n",
            );
            for id in &ids {
                if let Some(r) = records.get(id) {
                    body.push_str(r);
                    body.push('\n');
                }
            }
            body.push_str("</PubmedArticleSet>\n");
            let status = if ok { "200 OK" } else { "400 Bad Request" };
            let _ = write!(
                stream,
                "HTTP/1.1 {status}\r\nContent-Type: text/xml; charset=UTF-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    Server { url, log }
}

fn record_xml(pmid: u64, title: &str, sections: &[(Option<&str>, &str)]) -> String {
    let mut s = format!(
        "<PubmedArticle><MedlineCitation Status=\"MEDLINE\" Owner=\"NLM\"><PMID Version=\"1\">{pmid}</PMID><Article PubModel=\"Print\"><ArticleTitle>{}</ArticleTitle><Abstract>",
        xml_escape(title)
    );
    for (label, text) in sections {
        match label {
            Some(l) => s.push_str(&format!(
                "<AbstractText Label=\"{}\" NlmCategory=\"UNASSIGNED\">{}</AbstractText>",
                xml_escape(l),
                xml_escape(text)
            )),
            None => s.push_str(&format!(
                "<AbstractText>{}</AbstractText>",
                xml_escape(text)
            )),
        }
    }
    s.push_str("</Abstract><Language>eng</Language></Article></MedlineCitation><PubmedData><ArticleIdList><ArticleId IdType=\"pubmed\">");
    s.push_str(&format!(
        "{pmid}</ArticleId></ArticleIdList></PubmedData></PubmedArticle>"
    ));
    s
}

/// A golden test file with `n` factoid questions, question k citing PMIDs 1000+k and 5000+k.
fn synthetic_golden(n: usize) -> String {
    let qs: Vec<Value> = (0..n)
        .map(|k| {
            serde_json::json!({
                "id": format!("{k:024x}"), "type": "factoid", "body": format!("Question {k}?"),
                "documents": [format!("http://www.ncbi.nlm.nih.gov/pubmed/{}", 1000 + k),
                              format!("http://www.ncbi.nlm.nih.gov/pubmed/{}", 5000 + k)],
                "snippets": [{"text": format!("Snippet of {}.", 1000 + k), "document": format!("http://www.ncbi.nlm.nih.gov/pubmed/{}", 1000 + k),
                              "beginSection": "abstract", "endSection": "abstract", "offsetInBeginSection": 0, "offsetInEndSection": 10},
                             {"text": format!("Snippet of {}.", 5000 + k), "document": format!("http://www.ncbi.nlm.nih.gov/pubmed/{}", 5000 + k),
                              "beginSection": "abstract", "endSection": "abstract", "offsetInBeginSection": 0, "offsetInEndSection": 10}],
                "exact_answer": [["x"]], "ideal_answer": ["x"]
            })
        })
        .collect();
    serde_json::json!({"questions": qs}).to_string()
}

#[test]
fn efetch_join_batching_rate_limit_cache_and_offline_fallback() {
    let tmp = tempfile::tempdir().unwrap();
    let raw = tmp.path().join("raw/bioasq");
    std::fs::create_dir_all(&raw).unwrap();
    // 450 questions: PMIDs 1000.. are in our parquet/current (even ones) or served by efetch (odd
    // ones, except those divisible by 7: nobody has them); PMIDs 5000.. are all served by efetch.
    let n = 450;
    std::fs::write(raw.join("9B1_golden.json"), synthetic_golden(n)).unwrap();
    let in_parquet: Vec<u64> = (0..n as u64)
        .map(|k| 1000 + k)
        .filter(|p| p % 2 == 0)
        .collect();
    let parquet_docs: Vec<(u64, String, String)> = in_parquet
        .iter()
        .map(|p| {
            (
                *p,
                format!("Title {p}."),
                format!("BACKGROUND: Local {p}.\nRESULTS: Done."),
            )
        })
        .collect();
    write_current(
        &tmp.path().join("parquet/current"),
        &parquet_docs
            .iter()
            .map(|(p, t, a)| (*p, Some(t.as_str()), Some(a.as_str())))
            .collect::<Vec<_>>(),
    );
    let mut records = HashMap::new();
    for k in 0..n as u64 {
        for p in [1000 + k, 5000 + k] {
            if (p < 5000 && (p % 2 == 0 || p % 7 == 0)) || p == 5003 {
                continue;
            }
            records.insert(
                p,
                record_xml(
                    p,
                    &format!("Fetched & {p}."),
                    &[
                        (Some("AIMS"), "One\u{a0}two."),
                        (None, &format!("Plain {p}.")),
                    ],
                ),
            );
        }
    }
    let server = start_server(records);
    let config = "[bioasq]\ntest_documents = \"documents\"\n";
    let c = ctx(tmp.path(), config, false);
    let summary = bioasq::run(&c, args(vec![], false, Some(&server.url))).unwrap();

    let log = server.log.lock().unwrap().clone();
    let wanted: BTreeSet<u64> = (0..n as u64)
        .flat_map(|k| [1000 + k, 5000 + k])
        .filter(|p| !in_parquet.contains(p))
        .collect();
    let requested: Vec<u64> = log.iter().flat_map(|(_, ids)| ids.clone()).collect();
    assert_eq!(
        requested.iter().copied().collect::<BTreeSet<_>>(),
        wanted,
        "each missing PMID requested"
    );
    assert_eq!(requested.len(), wanted.len(), "no PMID requested twice");
    assert!(
        log.iter().all(|(_, ids)| ids.len() <= 200),
        "batches of at most 200 ids"
    );
    assert_eq!(log.len(), wanted.len().div_ceil(200));
    // Rate limit: no 1-second window holds more than 3 request arrivals.
    for w in log.windows(4) {
        assert!(
            w[3].0 - w[0].0 >= Duration::from_secs(1),
            "4 requests within a second"
        );
    }
    eprintln!(
        "efetch test: {} requests for {} PMIDs, arrival gaps {:?}",
        log.len(),
        wanted.len(),
        log.windows(2).map(|w| w[1].0 - w[0].0).collect::<Vec<_>>()
    );

    let test = schemas::bioasq::read_examples(&tmp.path().join("bioasq/examples.arrow")).unwrap();
    let by_pmid: HashMap<u64, &Example> = test.iter().map(|e| (e.pmid.unwrap(), e)).collect();
    assert_eq!(
        by_pmid[&1000].context,
        "Title 1000. BACKGROUND: Local 1000. RESULTS: Done."
    );
    assert_eq!(by_pmid[&1000].context_source, "pubmed");
    assert_eq!(
        by_pmid[&1003].context,
        "Fetched & 1003. AIMS: One two. Plain 1003."
    );
    assert_eq!(by_pmid[&1003].context_source, "efetch");
    assert!(
        !by_pmid.contains_key(&1001) && !by_pmid.contains_key(&5003),
        "not found anywhere: dropped"
    );
    let expect_missing = (0..n as u64)
        .map(|k| 1000 + k)
        .filter(|p| p % 2 == 1 && p % 7 == 0)
        .count()
        + 1;
    assert_eq!(
        summary["test"]["documents_not_found"].as_u64(),
        Some(expect_missing as u64)
    );
    assert_eq!(
        summary["test"]["sources"]["pubmed"].as_u64(),
        Some(in_parquet.len() as u64)
    );
    // Ids: `<qid>_<NNN>` from 000 per question, in document order.
    assert_eq!(by_pmid[&1000].id, format!("{:024x}_000", 0));
    assert_eq!(by_pmid[&5000].id, format!("{:024x}_001", 0));
    // The cache holds one file per fetched PMID.
    assert!(tmp.path().join("raw/pubmed/efetch/5000.xml").exists());

    // Second run: cached stage, no request.
    bioasq::run(&c, args(vec![], false, Some(&server.url))).unwrap();
    assert_eq!(server.log.lock().unwrap().len(), log.len());
    // Forced re-run reads the cache; only the never-found PMIDs are asked for again.
    let forced = ctx(tmp.path(), config, true);
    let before = snapshot(&tmp.path().join("bioasq"));
    bioasq::run(&forced, args(vec![], false, Some(&server.url))).unwrap();
    let again = server.log.lock().unwrap()[log.len()..].to_vec();
    assert_eq!(
        again.iter().map(|(_, ids)| ids.len()).sum::<usize>(),
        expect_missing
    );
    assert_eq!(
        snapshot(&tmp.path().join("bioasq")),
        before,
        "re-run byte-identical"
    );

    // Offline: no request at all; the missing documents fall back to their snippets.
    let summary = bioasq::run(&forced, args(vec![], true, Some(&server.url))).unwrap();
    assert_eq!(server.log.lock().unwrap().len(), log.len() + again.len());
    let test = schemas::bioasq::read_examples(&tmp.path().join("bioasq/examples.arrow")).unwrap();
    let e1001 = test.iter().find(|e| e.pmid == Some(1001)).unwrap();
    assert_eq!(
        (e1001.context.as_str(), e1001.context_source),
        ("Snippet of 1001.", "snippet-fallback")
    );
    assert_eq!(
        summary["test"]["sources"]["snippet-fallback"].as_u64(),
        Some(expect_missing as u64)
    );
    assert_eq!(
        summary["test"]["sources"]["efetch"].as_u64(),
        Some((wanted.len() - expect_missing) as u64)
    );
}

// ---------------------------------------------------------------- real fixtures

const FIXTURE_CONFIG: &str = r#"
[bioasq.tasks.bioasq-4b]
year = 4
train = "BioASQ-train-factoid-7b.json"
test = ["BioASQ-test-factoid-4b-1.json", "BioASQ-test-factoid-4b-2.json", "BioASQ-test-factoid-4b-3.json", "BioASQ-test-factoid-4b-4.json", "BioASQ-test-factoid-4b-5.json"]
[bioasq.tasks.bioasq-4b-golden]
year = 4
train = "BioASQ-train-factoid-7b.json"
test = ["4B1_golden.json", "4B2_golden.json", "4B3_golden.json", "4B4_golden.json", "4B5_golden.json"]
[bioasq.tasks.bioasq-5b]
year = 5
train = "BioASQ-train-factoid-7b.json"
test = ["BioASQ-test-factoid-5b-1.json", "BioASQ-test-factoid-5b-2.json", "BioASQ-test-factoid-5b-3.json", "BioASQ-test-factoid-5b-4.json", "BioASQ-test-factoid-5b-5.json"]
[bioasq.tasks.bioasq-6b]
year = 6
train = "BioASQ-train-factoid-7b.json"
test = ["BioASQ-test-factoid-7b.json"]
[bioasq.tasks.bioasq-7b]
year = 7
train = "BioASQ-train-factoid-7b.json"
test = ["BioASQ-test-factoid-7b.json"]
"#;

fn fixture_inputs(fx: &Path) -> Vec<PathBuf> {
    let mut v = Vec::new();
    for sub in ["bioasq/golden", "bioasq/squad"] {
        for e in std::fs::read_dir(fx.join(sub)).unwrap() {
            v.push(e.unwrap().path());
        }
    }
    v.sort();
    v
}

#[test]
fn fixtures_both_formats_round_trip_golden_leaks_offsets_rerun() {
    let Some(fx) = fixtures() else {
        eprintln!("SKIP: BioASQ fixtures not found (set BIOMAMBA_FIXTURES)");
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let c = ctx(tmp.path(), FIXTURE_CONFIG, false);
    let inputs = fixture_inputs(&fx);
    let summary = bioasq::run(&c, args(inputs.clone(), true, None)).unwrap();
    let out = tmp.path().join("bioasq");
    let examples = schemas::bioasq::read_examples(&out.join("examples.arrow")).unwrap();

    // Offsets valid on every row of every table.
    for table in [
        "examples",
        "bioasq-4b/train",
        "bioasq-4b/test",
        "bioasq-5b/train",
        "bioasq-6b/train",
    ] {
        for e in schemas::bioasq::read_examples(&out.join(format!("{table}.arrow"))).unwrap() {
            convert::validate(&e).unwrap();
        }
    }

    // SQuAD inputs round-trip exactly (through the Arrow table).
    for path in inputs
        .iter()
        .filter(|p| p.to_string_lossy().contains("/squad/"))
    {
        let name = path.file_name().unwrap().to_str().unwrap();
        let ours: Vec<Example> = examples
            .iter()
            .filter(|e| e.source_file == name)
            .cloned()
            .collect();
        let original = read_json(path);
        // `"answers": []` (BioBERT's 7b test file) and no `answers` (its 4b/5b test files) both mean
        // "no answer", which the table holds as null.
        let mut paragraphs: Vec<Value> = original["data"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|a| a["paragraphs"].as_array().unwrap().clone())
            .collect();
        for p in &mut paragraphs {
            for qa in p["qas"].as_array_mut().unwrap() {
                let qa = qa.as_object_mut().unwrap();
                if qa
                    .get("answers")
                    .and_then(Value::as_array)
                    .is_some_and(|a| a.is_empty())
                {
                    qa.remove("answers");
                }
            }
        }
        assert_eq!(
            convert::to_squad_json(&ours, "x")["data"][0]["paragraphs"],
            Value::Array(paragraphs),
            "{name}"
        );
    }

    // Every factoid question of the 4B and 5B golden files, with all synonyms.
    let golden = golden_rows(&out.join("golden.arrow"));
    let by_key: HashMap<(String, String), &Vec<Vec<String>>> = golden
        .iter()
        .map(|g| ((g.4.clone(), g.0.clone()), &g.2))
        .collect();
    let mut factoids = 0;
    for path in inputs.iter().filter(|p| {
        let n = p.file_name().unwrap().to_string_lossy().to_string();
        n.starts_with("4B") || n.starts_with("5B")
    }) {
        let name = path.file_name().unwrap().to_str().unwrap().to_string();
        for q in read_json(path)["questions"].as_array().unwrap() {
            if q["type"] != "factoid" {
                continue;
            }
            factoids += 1;
            let want: Vec<Vec<String>> = serde_json::from_value(q["exact_answer"].clone()).unwrap();
            assert_eq!(
                by_key[&(name.clone(), q["id"].as_str().unwrap().to_string())],
                &want
            );
        }
    }
    assert!(factoids > 300, "{factoids}");

    // No test question of year >= Y in train(Y), by id or normalized text.
    let mut test_by_year: Vec<(u32, String, String)> = Vec::new();
    for path in &inputs {
        let name = path.file_name().unwrap().to_str().unwrap();
        let Some(year) = pipeline::bioasq::tasks::year_from_name(name) else {
            continue;
        };
        if name.contains("train") {
            continue;
        }
        let v = read_json(path);
        if let Some(qs) = v["questions"].as_array() {
            for q in qs {
                test_by_year.push((
                    year,
                    q["id"].as_str().unwrap().into(),
                    convert::normalize_question(q["body"].as_str().unwrap()),
                ));
            }
        } else {
            for e in examples.iter().filter(|e| e.source_file == name) {
                test_by_year.push((
                    year,
                    e.question_id.clone(),
                    convert::normalize_question(&e.question),
                ));
            }
        }
    }
    for (task, year) in [
        ("bioasq-4b", 4),
        ("bioasq-5b", 5),
        ("bioasq-6b", 6),
        ("bioasq-7b", 7),
    ] {
        let train = schemas::bioasq::read_examples(&out.join(format!("{task}/train.arrow"))).unwrap();
        let train_ids: BTreeSet<&str> = train.iter().map(|e| e.question_id.as_str()).collect();
        let train_texts: BTreeSet<String> = train
            .iter()
            .map(|e| convert::normalize_question(&e.question))
            .collect();
        for (y, id, text) in test_by_year.iter().filter(|t| t.0 >= year) {
            assert!(
                !train_ids.contains(id.as_str()),
                "{task}: test question {id} of year {y} in train"
            );
            assert!(
                !train_texts.contains(text),
                "{task}: text of test question {id} of year {y} in train"
            );
        }
        let l = &summary["tasks"][task]["leaks"];
        eprintln!(
            "leaks {task} (year {year}): train questions {} -> {} ({} examples -> {}); removed by id {}, by text {}, per test year {}",
            l["train_questions_before"],
            l["train_questions"],
            l["train_examples_before"],
            l["train_examples"],
            l["removed_by_id"],
            l["removed_by_text"],
            l["removed_by_test_year"]
        );
    }
    let l4 = &summary["tasks"]["bioasq-4b"]["leaks"];
    assert_eq!(
        (
            l4["train_questions_before"].as_u64(),
            l4["removed_by_id"].as_u64()
        ),
        (Some(530), Some(222))
    );
    let l5 = &summary["tasks"]["bioasq-5b"]["leaks"];
    assert_eq!(l5["removed_by_id"].as_u64(), Some(110));

    // Re-run is cached; a forced re-run is byte-identical.
    let before = snapshot(&out);
    bioasq::run(
        &ctx(tmp.path(), FIXTURE_CONFIG, true),
        args(inputs, true, None),
    )
    .unwrap();
    assert_eq!(snapshot(&out), before);
}

/// BioBERT's 4b test contexts, rebuilt as PubMed records and served by efetch, come back unchanged.
#[test]
fn fixtures_biobert_4b_contexts_reproduced_from_pubmed_xml() {
    let Some(fx) = fixtures() else {
        eprintln!("SKIP: BioASQ fixtures not found (set BIOMAMBA_FIXTURES)");
        return;
    };
    // (question id) -> BioBERT's contexts; PMID -> its context, assigned through the question's
    // snippets: a context belongs to the one snippet document whose snippet texts it contains.
    let mut pmid_context: HashMap<u64, Option<String>> = HashMap::new();
    let mut titles: HashMap<u64, String> = HashMap::new();
    let mut inputs = Vec::new();
    for b in 1..=5 {
        let golden_path = fx.join(format!("bioasq/golden/4B{b}_golden.json"));
        inputs.push(golden_path.clone());
        let golden = read_json(&golden_path);
        let squad = read_json(&fx.join(format!("bioasq/squad/BioASQ-test-factoid-4b-{b}.json")));
        let mut contexts: HashMap<String, Vec<String>> = HashMap::new();
        for p in squad["data"][0]["paragraphs"].as_array().unwrap() {
            for qa in p["qas"].as_array().unwrap() {
                let qid = qa["id"]
                    .as_str()
                    .unwrap()
                    .rsplit_once('_')
                    .unwrap()
                    .0
                    .to_string();
                contexts
                    .entry(qid)
                    .or_default()
                    .push(p["context"].as_str().unwrap().to_string());
            }
        }
        for q in golden["questions"].as_array().unwrap() {
            if q["type"] != "factoid" {
                continue;
            }
            let snippets = q["snippets"].as_array().unwrap();
            for s in snippets {
                if s["beginSection"] == "title" && s["offsetInBeginSection"] == 0 {
                    let pmid =
                        pipeline::bioasq::formats::pmid_of_url(s["document"].as_str().unwrap())
                            .unwrap();
                    titles
                        .entry(pmid)
                        .or_insert_with(|| s["text"].as_str().unwrap().to_string());
                }
            }
            for ctx_text in contexts
                .get(q["id"].as_str().unwrap())
                .into_iter()
                .flatten()
            {
                let owners: BTreeSet<u64> = snippets
                    .iter()
                    .filter(|s| {
                        let t = s["text"].as_str().unwrap().trim();
                        !t.is_empty() && ctx_text.contains(t)
                    })
                    .map(|s| {
                        pipeline::bioasq::formats::pmid_of_url(s["document"].as_str().unwrap())
                            .unwrap()
                    })
                    .collect();
                if owners.len() == 1 {
                    let pmid = *owners.iter().next().unwrap();
                    let slot = pmid_context
                        .entry(pmid)
                        .or_insert_with(|| Some(ctx_text.clone()));
                    if slot.as_deref() != Some(ctx_text.as_str()) {
                        *slot = None; // two different contexts for one PMID: not usable
                    }
                }
            }
        }
    }
    let usable: BTreeMap<u64, String> = pmid_context
        .into_iter()
        .filter_map(|(p, c)| c.map(|c| (p, c)))
        .collect();
    assert!(usable.len() > 500, "{}", usable.len());

    // Build each record: title from the golden title snippet when the context starts with it (plus
    // the period PubMed keeps), else up to the first ". "; the abstract split at `LABEL: ` headings.
    let mut records = HashMap::new();
    for (pmid, context) in &usable {
        let title_end = match titles.get(pmid) {
            Some(t) if context.starts_with(t.as_str()) && context[t.len()..].starts_with(". ") => {
                t.len() + 1
            }
            Some(t) if context.starts_with(t.as_str()) && context[t.len()..].starts_with(' ') => {
                t.len()
            }
            _ => context.find(". ").map(|i| i + 1).unwrap_or(context.len()),
        };
        let title = &context[..title_end];
        let abstract_text = context[title_end..].strip_prefix(' ').unwrap_or("");
        let sections = split_labelled(abstract_text);
        records.insert(*pmid, record_xml(*pmid, title, &sections));
    }
    let server = start_server(records);
    let tmp = tempfile::tempdir().unwrap();
    let c = ctx(tmp.path(), "", false);
    bioasq::run(&c, args(inputs, false, Some(&server.url))).unwrap();
    let ours = schemas::bioasq::read_examples(&tmp.path().join("bioasq/examples.arrow")).unwrap();
    let (mut exact, mut whitespace_only, mut compared) = (0, 0, 0);
    for e in ours.iter().filter(|e| e.split == Split::Test) {
        let Some(want) = usable.get(&e.pmid.unwrap()) else {
            continue;
        };
        compared += 1;
        if &e.context == want {
            exact += 1;
        } else {
            // Our text contract collapses Unicode whitespace runs (NBSP included) to one space.
            let collapsed = want.split_whitespace().collect::<Vec<_>>().join(" ");
            assert_eq!(
                e.context, collapsed,
                "{}: context differs beyond whitespace",
                e.id
            );
            whitespace_only += 1;
        }
    }
    eprintln!(
        "BioBERT 4b contexts: {compared} compared, {exact} identical, {whitespace_only} differ only by NBSP/double-space collapsing"
    );
    assert!(compared > 500);
    assert!(exact * 100 >= compared * 95, "{exact}/{compared}");
}

/// Split an abstract at `LABEL: ` headings (upper-case words at its start or after a sentence end).
fn split_labelled(text: &str) -> Vec<(Option<&str>, &str)> {
    let is_label = |s: &str| {
        s.len() >= 3
            && s.chars().any(|c| c.is_ascii_uppercase())
            && s.chars()
                .all(|c| c.is_ascii_uppercase() || " &/,-".contains(c))
            && !s.starts_with(' ')
    };
    // Candidate heading starts: 0 and after ". ".
    let mut starts = vec![0];
    starts.extend(text.match_indices(". ").map(|(i, _)| i + 2));
    let mut heads: Vec<(usize, usize, &str)> = Vec::new(); // (section start, text start, label)
    for s in starts {
        if let Some(colon) = text[s..].find(": ") {
            let label = &text[s..s + colon];
            if is_label(label) {
                heads.push((s, s + colon + 2, label));
            }
        }
    }
    if heads.is_empty() || heads[0].0 != 0 {
        if heads.is_empty() {
            return vec![(None, text)];
        }
        // Text before the first heading stays an unlabelled section.
        let mut out = vec![(None, text[..heads[0].0].trim_end())];
        out.extend(sections_from(text, &heads));
        return out;
    }
    sections_from(text, &heads)
}

fn sections_from<'a>(
    text: &'a str,
    heads: &[(usize, usize, &'a str)],
) -> Vec<(Option<&'a str>, &'a str)> {
    heads
        .iter()
        .enumerate()
        .map(|(i, &(_, body, label))| {
            let end = heads.get(i + 1).map_or(text.len(), |h| h.0);
            (Some(label), text[body..end].trim_end())
        })
        .collect()
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
    assert_eq!(summary["test"]["sources"]["pubmed"], 14);
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
        // The sample's SQuAD test file is built like BioBERT's: labelled sections joined by spaces.
        assert_eq!(
            squad.get(&e.id),
            Some(&e.context),
            "{}: differs from squad-test-sample.json",
            e.id
        );
        joined += 1;
    }
    assert!(joined > 0);
}
