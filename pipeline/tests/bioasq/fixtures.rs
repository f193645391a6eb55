//! The real fixtures (SKIP when absent): both formats, golden rows, leaks, offsets, re-runs, and
//! BioBERT's 4b test contexts rebuilt from PubMed XML.

use super::server::{record_xml, start_server};
use super::*;

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
[bioasq.tasks.bioasq-5b-exact]
year = 5
train = "4B1_golden.json"
test = ["5B1_golden.json"]
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

    // An official-format training file gives examples of every exact-answer type (4B1, a test
    // set of year 4, may train a year-5 task), and official test files test rows of every type.
    let train = schemas::bioasq::read_examples(&out.join("bioasq-5b-exact/train.arrow")).unwrap();
    let test = schemas::bioasq::read_examples(&out.join("bioasq-5b-exact/test.arrow")).unwrap();
    let questions = |v: &[Example], t: &str| {
        v.iter()
            .filter(|e| e.qtype == t)
            .map(|e| e.question_id.as_str())
            .collect::<BTreeSet<_>>()
            .len()
    };
    let b41 = read_json(&fx.join("bioasq/golden/4B1_golden.json"));
    let b51 = read_json(&fx.join("bioasq/golden/5B1_golden.json"));
    let count = |v: &Value, t: &str| {
        v["questions"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|q| q["type"] == t)
            .count()
    };
    assert_eq!(questions(&train, qtype::YESNO), count(&b41, "yesno"));
    assert!(questions(&train, qtype::LIST) > count(&b41, "list") / 2);
    assert!(train.iter().all(|e| match e.qtype {
        qtype::YESNO => matches!(e.answer_text.as_deref(), Some("yes" | "no")),
        qtype::LIST => e.answer_list.as_ref().is_some_and(|l| !l.is_empty()),
        _ => e.answer_text.is_some(),
    }));
    for t in qtype::EXACT {
        assert_eq!(questions(&test, t), count(&b51, t), "5B1 {t}");
    }
    assert!(
        test.iter()
            .all(|e| e.answer_text.is_none() && e.answer_list.is_none())
    );

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
        let train =
            schemas::bioasq::read_examples(&out.join(format!("{task}/train.arrow"))).unwrap();
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
