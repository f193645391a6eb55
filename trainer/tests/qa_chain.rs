//! The fine-tune → answer → score chain for every task type on the real fixtures, through the
//! `trainer` binary: BioASQ 5b factoid, yes/no, list, yes/no + list together, and PubMedQA, each
//! a tiny 2-layer Mamba (GPT-NeoX vocabulary) fine-tuned for a few steps. For each task the
//! written submission (`predictions.json`, the official format), rescored through
//! `trainer eval --submission`, gives exactly the numbers answering reported. Then hand-made
//! submissions (half right by construction) are scored, and one report puts the tiny run, the
//! hand-made system and the published numbers side by side. Times are printed (`--nocapture`).
//!
//! The tables are built here from the fixtures with the `schemas` writers (the trainer never
//! depends on the pipeline): BioASQ training rows from the 7B golden file's snippets (by the
//! pipeline's conversion rules; leakage is irrelevant here), test rows one per snippet document
//! of each 5B question (the pipeline's offline contexts), PubMedQA rows from `ori_pqal.json` and
//! `test_ground_truth.json` (folds by position: the real folds are the pipeline's business).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use schemas::bioasq::{Example, GoldenRow, Split, qtype, source};
use schemas::pubmedqa::PubmedqaRow;
use serde_json::{Value, json};

fn fixtures() -> Option<PathBuf> {
    let fx = testkit::fixtures::fixtures_with(&[
        "bioasq/golden/5B1_golden.json",
        "bioasq/golden/7B_golden.json",
        "pubmedqa/ori_pqal.json",
        "tokenizer/gpt-neox-20b.tokenizer.json",
    ]);
    if fx.is_none() {
        println!("SKIP: BioASQ / PubMedQA / tokenizer fixtures not found");
    }
    fx
}

fn read_json(p: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()
}

fn write_ipc(path: &Path, batch: arrow::array::RecordBatch) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let f = std::fs::File::create(path).unwrap();
    let mut w = arrow::ipc::writer::FileWriter::try_new(f, &batch.schema()).unwrap();
    w.write(&batch).unwrap();
    w.finish().unwrap();
}

/// exact_answer of a golden question as synonym lists (yes/no: `[["yes"]]`).
fn gold_lists(q: &Value) -> Vec<Vec<String>> {
    match &q["exact_answer"] {
        Value::String(s) => vec![vec![s.clone()]],
        Value::Array(a) => a
            .iter()
            .map(|x| match x {
                Value::Array(s) => s.iter().map(|y| y.as_str().unwrap().to_string()).collect(),
                Value::String(s) => vec![s.clone()],
                _ => vec![],
            })
            .collect(),
        _ => vec![],
    }
}

fn pmid(url: &str) -> u64 {
    url.rsplit('/').next().unwrap().parse().unwrap()
}

fn qtype_of(t: &str) -> Option<&'static str> {
    qtype::EXACT.into_iter().find(|x| *x == t)
}

/// Training rows of one golden file's exact-answer questions, from their snippets: factoid rows
/// where the snippet holds a synonym (as written there), yes/no rows every snippet, list rows the
/// entities each snippet mentions.
fn training_rows(file: &Path) -> Vec<Example> {
    let mut out = Vec::new();
    for q in read_json(file)["questions"].as_array().unwrap() {
        let Some(t) = qtype_of(q["type"].as_str().unwrap()) else {
            continue;
        };
        let gold = gold_lists(q);
        for (n, s) in q["snippets"].as_array().unwrap().iter().enumerate() {
            let text = s["text"].as_str().unwrap();
            let lower = text.to_lowercase();
            let found = |syn: &str| {
                let l = syn.to_lowercase();
                lower
                    .find(&l)
                    .filter(|&i| text.is_char_boundary(i) && text.is_char_boundary(i + l.len()))
                    .filter(|&i| text[i..i + l.len()].to_lowercase() == l && !l.is_empty())
                    .map(|i| (i, text[i..i + l.len()].to_string()))
            };
            let mut e = Example {
                id: format!("{}_{:03}", q["id"].as_str().unwrap(), n + 1),
                question_id: q["id"].as_str().unwrap().into(),
                question: q["body"].as_str().unwrap().into(),
                context: text.into(),
                answer_text: None,
                answer_start: None,
                pmid: Some(pmid(s["document"].as_str().unwrap())),
                context_source: source::SNIPPET,
                split: Split::Train,
                source_file: "7B_golden.json".into(),
                qtype: t,
                answer_list: None,
            };
            match t {
                qtype::FACTOID => {
                    let Some((i, a)) = gold.iter().flatten().find_map(|g| found(g)) else {
                        continue;
                    };
                    e.answer_start = Some(text[..i].chars().count() as i64);
                    e.answer_text = Some(a);
                }
                qtype::YESNO => e.answer_text = Some(gold[0][0].to_lowercase()),
                _ => {
                    let mut hits: Vec<(usize, String)> = gold
                        .iter()
                        .filter_map(|syns| syns.iter().find_map(|g| found(g)))
                        .collect();
                    hits.sort();
                    hits.dedup_by(|a, b| a.1.to_lowercase() == b.1.to_lowercase());
                    if hits.is_empty() {
                        continue;
                    }
                    e.answer_list = Some(hits.into_iter().map(|(_, a)| a).collect());
                }
            }
            out.push(e);
        }
    }
    out
}

/// Golden rows and test rows (one per distinct snippet document: its snippets joined) of the
/// 5B golden batches.
fn test_tables(golden_dir: &Path) -> (Vec<GoldenRow>, Vec<Example>) {
    let (mut golden, mut test) = (Vec::new(), Vec::new());
    for b in (1..=5).map(|i| format!("5B{i}")) {
        let name = format!("{b}_golden.json");
        for q in read_json(&golden_dir.join(&name))["questions"]
            .as_array()
            .unwrap()
        {
            let id = q["id"].as_str().unwrap().to_string();
            golden.push(GoldenRow {
                question_id: id.clone(),
                qtype: q["type"].as_str().unwrap().into(),
                body: q["body"].as_str().unwrap().into(),
                exact_answer: gold_lists(q),
                documents: q["documents"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|d| pmid(d.as_str().unwrap()))
                    .collect(),
                batch: Some(b.clone()),
                year: Some(5),
                source_file: name.clone(),
            });
            let Some(t) = qtype_of(q["type"].as_str().unwrap()) else {
                continue;
            };
            let mut docs: Vec<(u64, Vec<String>)> = Vec::new();
            for s in q["snippets"].as_array().unwrap() {
                let (p, text) = (
                    pmid(s["document"].as_str().unwrap()),
                    s["text"].as_str().unwrap(),
                );
                match docs.iter_mut().find(|(d, _)| *d == p) {
                    Some((_, v)) if !v.iter().any(|x| x == text) => v.push(text.into()),
                    Some(_) => {}
                    None => docs.push((p, vec![text.into()])),
                }
            }
            for (n, (p, texts)) in docs.into_iter().enumerate() {
                test.push(Example {
                    id: format!("{id}_{n:03}"),
                    question_id: id.clone(),
                    question: q["body"].as_str().unwrap().into(),
                    context: texts.join(" "),
                    answer_text: None,
                    answer_start: None,
                    pmid: Some(p),
                    context_source: source::SNIPPET_FALLBACK,
                    split: Split::Test,
                    source_file: name.clone(),
                    qtype: t,
                    answer_list: None,
                });
            }
        }
    }
    (golden, test)
}

/// PubMedQA rows (train: not in the ground truth, fold by position).
fn pubmedqa_tables(dir: &Path) -> (Vec<PubmedqaRow>, Vec<PubmedqaRow>) {
    let ori = read_json(&dir.join("ori_pqal.json"));
    let truth = read_json(&dir.join("test_ground_truth.json"));
    let (mut train, mut test) = (Vec::new(), Vec::new());
    let strings = |v: &Value| -> Vec<String> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_str().unwrap().to_string())
            .collect()
    };
    for (k, e) in ori.as_object().unwrap() {
        let is_test = truth.get(k).is_some();
        let row = PubmedqaRow {
            pmid: k.parse().unwrap(),
            question: e["QUESTION"].as_str().unwrap().into(),
            contexts: strings(&e["CONTEXTS"]),
            context_labels: strings(&e["LABELS"]),
            long_answer: e["LONG_ANSWER"].as_str().unwrap().into(),
            label: e["final_decision"].as_str().unwrap().into(),
            split: if is_test { "test" } else { "train" }.into(),
            fold: (!is_test).then_some((train.len() % 10) as u32),
            year: e["YEAR"].as_str().and_then(|y| y.parse().ok()),
            meshes: strings(&e["MESHES"]),
            reasoning_required_pred: e["reasoning_required_pred"].as_str().unwrap().into(),
            reasoning_free_pred: e["reasoning_free_pred"].as_str().unwrap().into(),
        };
        if is_test {
            test.push(row);
        } else {
            train.push(row);
        }
    }
    (train, test)
}

/// Run a private copy of the built `trainer` (the target directory is shared with other
/// worktrees); returns its output and seconds.
fn trainer(bin: &Path, args: &[&str]) -> (String, f64) {
    let t0 = Instant::now();
    let out = Command::new(bin).args(args).output().unwrap();
    let secs = t0.elapsed().as_secs_f64();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "trainer {args:?} failed:\n{text}");
    (text, secs)
}

#[test]
fn every_task_type_finetuned_answered_and_rescored_to_the_same_numbers() {
    let Some(fx) = fixtures() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let bin = tmp.path().join("trainer");
    std::fs::copy(env!("CARGO_BIN_EXE_trainer"), &bin).unwrap();
    let data = tmp.path().join("data");
    let golden_dir = fx.join("bioasq/golden");

    let train = training_rows(&golden_dir.join("7B_golden.json"));
    for t in qtype::EXACT {
        assert!(train.iter().filter(|e| e.qtype == t).count() > 20, "{t}");
    }
    write_ipc(
        &data.join("bioasq/5b/train.arrow"),
        schemas::bioasq::examples_batch(&train).unwrap(),
    );
    let (golden, test) = test_tables(&golden_dir);
    write_ipc(
        &data.join("bioasq/golden.arrow"),
        schemas::bioasq::golden_batch(&golden).unwrap(),
    );
    write_ipc(
        &data.join("bioasq/5b/test.arrow"),
        schemas::bioasq::examples_batch(&test).unwrap(),
    );
    let (pq_train, pq_test) = pubmedqa_tables(&fx.join("pubmedqa"));
    assert_eq!((pq_train.len(), pq_test.len()), (500, 500));
    write_ipc(
        &data.join("pubmedqa/train.arrow"),
        schemas::pubmedqa::batch(&pq_train).unwrap(),
    );
    write_ipc(
        &data.join("pubmedqa/test.arrow"),
        schemas::pubmedqa::batch(&pq_test).unwrap(),
    );

    // Tiny 2-layer model with the real vocabulary, and the real tokenizer next to it.
    let init = tmp.path().join("tiny");
    let cfg = trainer::MambaConfig::new(50280, 16, 2);
    let model = cfg.init_seeded::<trainer::Cpu>(&Default::default(), 11);
    trainer::save_pretrained(&init, &trainer::HfConfig::from_config(cfg), &model).unwrap();
    std::fs::copy(
        fx.join("tokenizer/gpt-neox-20b.tokenizer.json"),
        init.join("tokenizer.json"),
    )
    .unwrap();

    let bioasq_task = |kind: &str| {
        format!(
            "label = \"5b\"\n{kind}train = \"bioasq/5b/train.arrow\"\ntest = \"bioasq/5b/test.arrow\"\n\
             golden = \"bioasq/golden.arrow\"\nbatches = [\"5B1\", \"5B2\", \"5B3\", \"5B4\", \"5B5\"]\n"
        )
    };
    let config = tmp.path().join("qa.toml");
    std::fs::write(
        &config,
        format!(
            "[finetune]\nepochs = 1\nbatch_size = 4\nmicro_batch = 2\nlr = 1e-3\nmax_len = 96\n\
             checkpoint_every = 3\nmax_new_tokens = 3\nbeams = 2\nmax_contexts = 1\n\
             train_limit = 24\nlist_answers = 3\n\
             [tasks.factoid]\n{}[tasks.yesno]\n{}[tasks.list]\n{}max_new_tokens = 6\n\
             [tasks.yesno-list]\n{}\
             [tasks.pubmedqa]\nlabel = \"PubMedQA\"\nkind = \"pubmedqa\"\ndev_fold = 0\n\
             [tasks.pubmedqa-free]\nlabel = \"PubMedQA (reasoning-free)\"\nkind = \"pubmedqa\"\n\
             setting = \"reasoning-free\"\n",
            bioasq_task(""),
            bioasq_task("kind = \"yesno\"\n"),
            bioasq_task("kind = \"list\"\n"),
            bioasq_task("kind = [\"list\", \"yesno\"]\n")
                .replace("\"5b\"", "\"5b (yes/no + list)\""),
        ),
    )
    .unwrap();
    let (c, d) = (config.to_str().unwrap(), data.to_str().unwrap());

    let mut times: Vec<(String, f64, f64)> = Vec::new();
    let mut scored_dirs = Vec::new();
    for task in [
        "factoid",
        "yesno",
        "list",
        "yesno-list",
        "pubmedqa",
        "pubmedqa-free",
    ] {
        let run = tmp.path().join(format!("run-{task}"));
        let (_, train_secs) = trainer(
            &bin,
            &[
                "finetune",
                "--init",
                init.to_str().unwrap(),
                "--task",
                task,
                "--config",
                c,
                "--data-dir",
                d,
                "--run-dir",
                run.to_str().unwrap(),
                "--steps",
                "3",
                "--no-eval",
            ],
        );
        let log = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
        assert_eq!(log.lines().count(), 3, "{task}: three logged steps");
        let out = run.join("eval").join(task);
        let (answered, answer_secs) = trainer(
            &bin,
            &[
                "eval",
                "--task",
                task,
                "--model",
                run.join("model").to_str().unwrap(),
                "--config",
                c,
                "--data-dir",
                d,
                "--out",
                out.to_str().unwrap(),
                "--label",
                "tiny",
            ],
        );
        times.push((task.to_string(), train_secs, answer_secs));
        let res = read_json(&out.join("results.json"));
        let sub = read_json(&out.join("predictions.json"));
        // The official formats, with every test question of the task's kinds.
        if task.starts_with("pubmedqa") {
            assert_eq!(
                res["settings"]["setting"],
                if task == "pubmedqa" {
                    "reasoning-required"
                } else {
                    "reasoning-free"
                }
            );
            let keys: HashSet<&str> = sub
                .as_object()
                .unwrap()
                .keys()
                .map(String::as_str)
                .collect();
            assert_eq!(keys.len(), 500);
            assert!(
                sub.as_object()
                    .unwrap()
                    .values()
                    .all(|v| ["yes", "no", "maybe"].contains(&v.as_str().unwrap()))
            );
            assert!(
                res["metrics"]["accuracy"].is_number() && res["metrics"]["macro_f1"].is_number()
            );
        } else {
            let kinds: Vec<&str> = match task {
                "factoid" => vec!["factoid"],
                "yesno-list" => vec!["yesno", "list"],
                t => vec![t],
            };
            let want: usize = golden
                .iter()
                .filter(|g| kinds.contains(&g.qtype.as_str()))
                .count();
            let qs = sub["questions"].as_array().unwrap();
            assert_eq!(qs.len(), want, "{task}");
            let m = &res["metrics"]["all_questions"];
            for k in ["factoid", "yesno", "list"] {
                let key = match k {
                    "factoid" => "strict_acc",
                    "yesno" => "yesno_acc",
                    _ => "list_f1",
                };
                assert_eq!(
                    m.get(key).is_some(),
                    kinds.contains(&k),
                    "{task}: {k} measures"
                );
            }
            // The model answered (the rescoring below compares real strings, not empty lists).
            for k in kinds.iter().filter(|k| **k != "yesno") {
                let ids: HashSet<&str> = golden
                    .iter()
                    .filter(|g| g.qtype == *k)
                    .map(|g| g.question_id.as_str())
                    .collect();
                assert!(
                    qs.iter().any(|q| ids.contains(q["id"].as_str().unwrap())
                        && !q["exact_answer"].as_array().unwrap().is_empty()),
                    "{task}: no {k} answer at all"
                );
            }
            if kinds.contains(&"yesno") {
                let yes = qs.iter().filter(|q| q["exact_answer"] == "yes").count();
                println!(
                    "{task}: {yes} yes of {} yes/no answers",
                    res["metrics"]["all_questions"]["yesno_questions"]
                );
            }
        }
        assert!(answered.contains("| Task | Measure | tiny |"), "{answered}");

        // The written submission, scored through `trainer eval --submission`, gives the numbers
        // answering reported.
        let scored = tmp.path().join(format!("scored-{task}"));
        trainer(
            &bin,
            &[
                "eval",
                "--task",
                task,
                "--submission",
                out.join("predictions.json").to_str().unwrap(),
                "--config",
                c,
                "--data-dir",
                d,
                "--out",
                scored.to_str().unwrap(),
                "--label",
                "tiny",
            ],
        );
        let rescored = read_json(&scored.join("results.json"));
        assert_eq!(
            rescored["metrics"], res["metrics"],
            "{task}: scoring predictions.json differs from what answering reported"
        );
        assert_eq!(rescored["missing"], 0);
        scored_dirs.push(out);
    }

    // Hand-made systems: half the questions right by construction.
    let mut questions = Vec::new();
    let (mut n_yesno, mut right_yesno) = (0, 0);
    for (i, g) in golden.iter().enumerate() {
        let ea = match g.qtype.as_str() {
            "factoid" if i % 2 == 0 => json!([[g.exact_answer[0][0]]]),
            "factoid" => json!([["no such answer"]]),
            "yesno" => {
                n_yesno += 1;
                let gold = g.exact_answer[0][0].to_lowercase();
                if i % 2 == 0 {
                    right_yesno += 1;
                    json!(gold)
                } else {
                    json!(if gold == "yes" { "no" } else { "yes" })
                }
            }
            "list" if i % 2 == 0 => {
                Value::Array(g.exact_answer.iter().map(|e| json!([e[0]])).collect())
            }
            "list" => json!([[g.exact_answer[0][0]], ["no such entity"]]),
            _ => continue,
        };
        questions.push(json!({"id": g.question_id, "exact_answer": ea}));
    }
    let hand = tmp.path().join("hand-made-5b.json");
    std::fs::write(
        &hand,
        serde_json::to_vec(&json!({ "questions": questions })).unwrap(),
    )
    .unwrap();
    let hand_out = tmp.path().join("hand-made-5b");
    trainer(
        &bin,
        &[
            "eval",
            "--task",
            "factoid",
            "--submission",
            hand.to_str().unwrap(),
            "--config",
            c,
            "--data-dir",
            d,
            "--out",
            hand_out.to_str().unwrap(),
            "--label",
            "hand-made",
        ],
    );
    let m = &read_json(&hand_out.join("results.json"))["metrics"]["all_questions"];
    let close = |v: &Value, x: f64| (v.as_f64().unwrap() - x).abs() < 1e-12;
    assert!(
        close(&m["yesno_acc"], right_yesno as f64 / n_yesno as f64),
        "{m}"
    );
    assert!(m["list_f1"].as_f64().unwrap() > 0.5, "{m}");
    let pq_hand: BTreeMap<String, String> = pq_test
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let p = if i % 2 == 0 {
                r.label.clone()
            } else {
                "no".to_string()
            };
            (r.pmid.to_string(), p)
        })
        .collect();
    let pq_file = tmp.path().join("hand-made-pubmedqa.json");
    std::fs::write(&pq_file, serde_json::to_vec(&pq_hand).unwrap()).unwrap();
    let pq_out = tmp.path().join("hand-made-pubmedqa");
    trainer(
        &bin,
        &[
            "eval",
            "--task",
            "pubmedqa",
            "--submission",
            pq_file.to_str().unwrap(),
            "--config",
            c,
            "--data-dir",
            d,
            "--out",
            pq_out.to_str().unwrap(),
            "--label",
            "hand-made",
        ],
    );
    let gold_pq: HashMap<String, &str> = pq_test
        .iter()
        .map(|r| (r.pmid.to_string(), r.label.as_str()))
        .collect();
    let right = pq_hand
        .iter()
        .filter(|(k, v)| gold_pq[*k] == v.as_str())
        .count();
    let pm = &read_json(&pq_out.join("results.json"))["metrics"];
    assert!(close(&pm["accuracy"], right as f64 / 500.0), "{pm}");
    // A missing PMID is an error naming it.
    let mut short = pq_hand.clone();
    let gone = short.keys().next().unwrap().clone();
    short.remove(&gone);
    std::fs::write(&pq_file, serde_json::to_vec(&short).unwrap()).unwrap();
    let o = Command::new(&bin)
        .args([
            "eval",
            "--task",
            "pubmedqa",
            "--submission",
            pq_file.to_str().unwrap(),
            "--config",
            c,
            "--data-dir",
            d,
            "--out",
            tmp.path().join("short").to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains(&gone));

    // One report: the tiny run, the hand-made system and the published numbers side by side.
    let published = testkit::fixtures::configs_dir().join("published.toml");
    let mut args: Vec<String> = vec!["report".into()];
    args.extend(scored_dirs.iter().map(|p| format!("tiny={}", p.display())));
    args.push(format!("hand-made={}", hand_out.display()));
    args.push(format!("hand-made={}", pq_out.display()));
    args.extend([
        "--published".into(),
        published.display().to_string(),
        "--out".into(),
        tmp.path().join("table").display().to_string(),
    ]);
    let (table, _) = trainer(&bin, &args.iter().map(String::as_str).collect::<Vec<_>>());
    println!("{table}");
    assert!(
        table.contains(
            "| Task | Measure | tiny | hand-made | BioGPT (published) | BioGPT-Large (published) |"
        ),
        "{table}"
    );
    for row in [
        "| 5b | ACC (strict) |",
        "| 5b | Yes/no macro-F1 |",
        "| 5b | List F1 |",
        "| 5b (yes/no + list) | Yes/no ACC |",
        "| PubMedQA | ACC |",
        "| PubMedQA | Macro-F1 |",
        "| PubMedQA (reasoning-free) | ACC |",
    ] {
        assert!(table.contains(row), "{row}: {table}");
    }
    assert!(table.contains("0.7820 | 0.8100 |"), "{table}");
    let j = read_json(&tmp.path().join("table.json"));
    assert_eq!(j["published"], json!([false, false, true, true]));

    println!("| task | fine-tune 3 steps (s) | answer the test questions (s) |\n|---|---:|---:|");
    for (task, t, a) in &times {
        println!("| {task} | {t:.1} | {a:.1} |");
    }
}
