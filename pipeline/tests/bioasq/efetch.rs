//! The efetch join: `parquet/current` first, then the efetch cache, then a local efetch server
//! (batching, rate limit), and the offline fallback.

use super::server::{record_xml, start_server};
use super::*;

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
