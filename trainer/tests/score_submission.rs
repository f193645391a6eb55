//! `trainer eval --task TASK --submission FILE` through the built binary: hand-built golden
//! rows (always run), and the real 4b/5b golden fixtures scored with submissions that exercise
//! every rule of every exact-answer type (factoid, yes/no, list), checked against the numbers
//! the rules give and — when `BIOASQ_EVALUATOR_JAR` names the official evaluator's
//! `BioASQEvaluation.jar` (with its `lib/`) and `java` runs — against the official
//! `EvaluatorTask1b -phaseB -e 5`, batch by batch, all ten of its measures.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use schemas::bioasq::{GoldenRow, golden_batch};
use serde_json::{Value, json};
use trainer::eval::metrics::{ListMetrics, ListScore, YesNo, YesNoMetrics, YesNoScore, score_list};

fn write_golden(path: &Path, rows: &[GoldenRow]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let batch = golden_batch(rows).unwrap();
    let f = std::fs::File::create(path).unwrap();
    let mut w = arrow::ipc::writer::FileWriter::try_new(f, &batch.schema()).unwrap();
    w.write(&batch).unwrap();
    w.finish().unwrap();
}

fn row(id: &str, qtype: &str, batch: &str, gold: Vec<Vec<String>>) -> GoldenRow {
    GoldenRow {
        question_id: id.into(),
        qtype: qtype.into(),
        body: format!("question {id}"),
        exact_answer: gold,
        documents: vec![],
        batch: Some(batch.into()),
        year: None,
        source_file: format!("{batch}_golden.json"),
    }
}

fn syn(v: &[&str]) -> Vec<Vec<String>> {
    vec![v.iter().map(|s| s.to_string()).collect()]
}

fn trainer(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_trainer"))
        .args(args)
        .output()
        .unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn read_json(p: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()
}

fn write_json(p: &Path, v: &Value) {
    std::fs::write(p, serde_json::to_vec_pretty(v).unwrap()).unwrap();
}

fn close(a: &Value, b: f64) -> bool {
    (a.as_f64().unwrap() - b).abs() < 1e-12
}

#[test]
fn scores_a_hand_built_submission_and_reports_two_systems() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    write_golden(
        &data.join("bioasq/golden.arrow"),
        &[
            row("f1", "factoid", "T1", syn(&["Procalcitonin", "PCT"])),
            row("f2", "factoid", "T1", syn(&["β-catenin"])),
            row("y1", "yesno", "T1", syn(&["yes"])),
            row("f3", "factoid", "T2", syn(&["TNF"])),
            row("f4", "factoid", "T2", syn(&["IL-6"])),
            row("x1", "factoid", "X1", syn(&["other task"])),
        ],
    );
    let config = tmp.path().join("c.toml");
    std::fs::write(
        &config,
        "[tasks.t]\nlabel = \"tb\"\ntrain = \"none.arrow\"\ntest = \"none.arrow\"\n\
         golden = \"bioasq/golden.arrow\"\nbatches = [\"T1\", \"T2\"]\n",
    )
    .unwrap();
    let (c, d) = (config.to_str().unwrap(), data.to_str().unwrap());

    // f1 strict, f2 lenient at rank 2 (non-ASCII case), f3 trailing period: no match, f4 missing.
    let ours = tmp.path().join("ours.json");
    write_json(
        &ours,
        &json!({"questions": [
            {"id": "f1", "type": "factoid", "body": "…", "exact_answer": [["PCT"]]},
            {"id": "f2", "exact_answer": [["wnt"], ["Β-Catenin"]]},
            {"id": "y1", "exact_answer": "yes"},
            {"id": "f3", "exact_answer": [["TNF."]]},
        ]}),
    );
    let o = trainer(&[
        "eval",
        "--task",
        "t",
        "--submission",
        ours.to_str().unwrap(),
        "--config",
        c,
        "--data-dir",
        d,
    ]);
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    assert!(
        out.contains("1 of 4 factoid questions of t are not in") && out.contains("f4"),
        "{out}"
    );
    // Default output directory: next to the file, `STEM-TASK`; default label: the file name.
    let res = read_json(&tmp.path().join("ours-t/results.json"));
    assert_eq!(res["system"], "ours.json");
    assert_eq!(res["missing"], 1);
    assert!(res.get("settings").is_none());
    let m = &res["metrics"];
    // T1: strict 1/2, lenient 1, MRR 0.75; T2: 0.
    assert!(close(&m["batches"]["T1"]["mrr"], 0.75));
    assert!(close(&m["mean_over_batches"]["strict_acc"], 0.25));
    assert!(close(&m["mean_over_batches"]["lenient_acc"], 0.5));
    assert!(close(&m["all_questions"]["mrr"], 1.5 / 4.0));
    assert_eq!(m["all_questions"]["questions"], 4);
    let details = std::fs::read_to_string(tmp.path().join("ours-t/details.jsonl")).unwrap();
    assert_eq!(details.lines().count(), 5); // 4 factoid questions and the yes/no one
    assert!(tmp.path().join("ours-t/results.md").is_file());

    // Every answer exact: a second system with its own label.
    let gold = tmp.path().join("gold.json");
    write_json(
        &gold,
        &json!({"questions": [
            {"id": "f1", "exact_answer": [["procalcitonin"]]},
            {"id": "f2", "exact_answer": [["β-catenin"]]},
            {"id": "f3", "exact_answer": [["tnf"]]},
            {"id": "f4", "exact_answer": [["il-6"]]},
        ]}),
    );
    let gold_out = tmp.path().join("scored-gold");
    let o = trainer(&[
        "eval",
        "--task",
        "t",
        "--submission",
        gold.to_str().unwrap(),
        "--config",
        c,
        "--data-dir",
        d,
        "--label",
        "all gold",
        "--out",
        gold_out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(!text(&o).contains("not in"), "{}", text(&o));
    assert!(close(
        &read_json(&gold_out.join("results.json"))["metrics"]["mean_over_batches"]["mrr"],
        1.0
    ));

    // An id outside the task's golden batches (here a factoid of another batch) is an error.
    let bad = tmp.path().join("bad.json");
    write_json(
        &bad,
        &json!({"questions": [{"id": "f1", "exact_answer": [["PCT"]]},
                              {"id": "x1", "exact_answer": [["other task"]]},
                              {"id": "nope", "exact_answer": []}]}),
    );
    let o = trainer(&[
        "eval",
        "--task",
        "t",
        "--submission",
        bad.to_str().unwrap(),
        "--config",
        c,
        "--data-dir",
        d,
    ]);
    assert!(!o.status.success());
    let e = text(&o);
    assert!(
        e.contains("x1") && e.contains("nope") && e.contains("T1, T2"),
        "{e}"
    );

    // --submission takes the place of --model.
    let o = trainer(&[
        "eval",
        "--task",
        "t",
        "--submission",
        gold.to_str().unwrap(),
        "--model",
        "m",
    ]);
    assert!(!o.status.success());
    assert!(text(&o).contains("--model"), "{}", text(&o));

    // Table 3 with both systems; LABEL=PATH renames a column.
    let prefix = tmp.path().join("table3");
    let o = trainer(&[
        "report",
        &format!("ours={}", tmp.path().join("ours-t").display()),
        gold_out.to_str().unwrap(),
        "--out",
        prefix.to_str().unwrap(),
    ]);
    let table = text(&o);
    assert!(o.status.success(), "{table}");
    println!("{table}");
    assert!(
        table.contains("| Task | Measure | ours | all gold |"),
        "{table}"
    );
    assert!(
        table.contains("| tb | ACC (strict) | 0.2500 | 1.0000 |"),
        "{table}"
    );
    assert!(table.contains("| tb | MRR | 0.3750 | 1.0000 |"), "{table}");
    let j = read_json(&tmp.path().join("table3.json"));
    assert_eq!(j["systems"], json!(["ours", "all gold"]));
    assert_eq!(j["rows"][1]["mean_over_batches"], json!([0.5, 1.0]));
}

fn fixtures() -> Option<PathBuf> {
    let root = testkit::fixtures::fixtures_dir().join("bioasq/golden");
    if root.join("4B1_golden.json").is_file() && root.join("5B5_golden.json").is_file() {
        Some(root)
    } else {
        println!(
            "SKIP: BioASQ golden fixtures not found under {}",
            root.display()
        );
        None
    }
}

/// The questions of a golden JSON file: (id, type, exact answer as synonym lists).
fn questions(file: &Path) -> Vec<(String, String, Vec<Vec<String>>)> {
    let strings = |v: &Value| -> Vec<String> {
        match v {
            Value::String(s) => vec![s.clone()],
            Value::Array(a) => a.iter().map(|s| s.as_str().unwrap().to_string()).collect(),
            _ => vec![],
        }
    };
    read_json(file)["questions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|q| {
            let lists = match &q["exact_answer"] {
                Value::Array(a) => a.iter().map(strings).collect(),
                Value::String(s) => vec![vec![s.clone()]],
                _ => vec![],
            };
            let t = q["type"].as_str().unwrap().to_string();
            (q["id"].as_str().unwrap().to_string(), t, lists)
        })
        .collect()
}

/// A yes/no answer for question `i` that exercises one rule, and whether it is right.
fn tricky_yesno(i: usize, gold: &str) -> (Value, bool) {
    match i % 6 {
        0 => (json!(gold), true),
        1 => (json!(format!("{}.", gold.to_uppercase())), true), // "YES." is yes
        2 => (json!("maybe"), false),                            // neither
        3 => (json!(if gold == "yes" { "no" } else { "yes" }), false),
        4 => (json!("Not sure"), gold == "no"), // contains "no"
        _ => (json!(""), false),
    }
}

/// A list answer for question `i` that exercises one rule (its expected scores come from the
/// unit-tested `score_list`; the official jar checks the whole).
fn tricky_list(i: usize, gold: &[Vec<String>]) -> Value {
    let first = gold[0][0].clone();
    let last = gold.last().unwrap().last().unwrap().clone();
    let firsts: Vec<Value> = gold.iter().map(|e| json!([e[0]])).collect();
    match i % 8 {
        0 => Value::Array(firsts),                                  // every entity
        1 => json!([[first.to_uppercase()], [first], [last]]),      // case, duplicate
        2 => json!([[format!(" {first}")], [format!("{first} ")]]), // padding kept
        3 => json!([[first], [gold[0].get(1).unwrap_or(&last)]]),   // second synonym
        4 => json!([[], [first], ["no such entity"]]),              // empty item dropped
        5 => json!([]),                                             // empty answer
        6 => json!([[""]]),                                         // empty string
        _ => json!([[first, "ignored synonym"], ["no such entity"], [last]]),
    }
}

/// A submission for question `i` that exercises one rule, and its expected (strict, lenient, RR).
fn tricky(i: usize, gold: &[Vec<String>]) -> (Value, (f64, f64, f64)) {
    let first = gold[0][0].clone();
    let last = gold.last().unwrap().last().unwrap().clone();
    let lower = |s: &str| s.to_lowercase();
    let miss = (0.0, 0.0, 0.0);
    match i % 9 {
        0 => (json!([[first]]), (1.0, 1.0, 1.0)),
        1 => (json!([["no such answer"], [first.to_uppercase()]]), {
            // Uppercasing then lowercasing does not always give the gold back (ß -> SS).
            let hit = gold
                .iter()
                .flatten()
                .any(|g| lower(g) == lower(&first.to_uppercase()));
            if hit { (0.0, 1.0, 0.5) } else { miss }
        }),
        2 => (json!([[format!(" {first}")]]), miss),
        3 => (json!([[format!("{first}.")]]), {
            let hit = gold
                .iter()
                .flatten()
                .any(|g| lower(g) == lower(&format!("{first}.")));
            if hit { (1.0, 1.0, 1.0) } else { miss }
        }),
        4 => (json!([["no such answer", first]]), miss),
        5 => (json!([[], [lower(&last)]]), (1.0, 1.0, 1.0)),
        6 => {
            let mut slots: Vec<Value> = (0..6).map(|k| json!([format!("wrong {k}")])).collect();
            slots.push(json!([last]));
            (Value::Array(slots), (0.0, 1.0, 1.0 / 7.0))
        }
        7 => (json!([]), miss),
        _ => (
            json!([["no such answer"], ["still not"], [first]]),
            (0.0, 1.0, 1.0 / 3.0),
        ),
    }
}

/// The official evaluator's ten Phase B numbers of `submission` on `golden`: yes/no accuracy,
/// factoid strict, lenient, MRR, list P, R, F1, yes/no macro-F1, F1 yes, F1 no.
fn official(jar: &Path, golden: &Path, submission: &Path) -> Vec<f64> {
    let o = Command::new("java")
        .arg("-cp")
        .arg(jar)
        .args(["evaluation.EvaluatorTask1b", "-phaseB", "-e", "5"])
        .arg(golden)
        .arg(submission)
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{out}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    out.split_whitespace()
        .take(10)
        .map(|x| x.parse().unwrap())
        .collect()
}

/// The `results.json` keys in the order the evaluator prints them.
const OFFICIAL_ORDER: [&str; 10] = [
    "yesno_acc",
    "strict_acc",
    "lenient_acc",
    "mrr",
    "list_precision",
    "list_recall",
    "list_f1",
    "yesno_macro_f1",
    "yesno_f1_yes",
    "yesno_f1_no",
];

#[test]
fn fixture_goldens_scored_by_every_rule_match_the_expected_and_official_numbers() {
    let Some(golden_dir) = fixtures() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let jar = std::env::var_os("BIOASQ_EVALUATOR_JAR").map(PathBuf::from);
    if jar.is_none() {
        println!(
            "SKIP (part): BIOASQ_EVALUATOR_JAR not set, no comparison with the official evaluator"
        );
    }
    let mut rows = Vec::new();
    let mut config = String::new();
    for y in ["4b", "5b"] {
        let batches: Vec<String> = (1..=5)
            .map(|i| format!("{}{i}", y.to_uppercase()))
            .collect();
        config.push_str(&format!(
            "[tasks.bioasq-{y}]\nlabel = \"{y}\"\ntrain = \"x\"\ntest = \"x\"\n\
             golden = \"bioasq/golden.arrow\"\nbatches = {batches:?}\n"
        ));
        for b in &batches {
            for (id, t, gold) in questions(&golden_dir.join(format!("{b}_golden.json"))) {
                rows.push(row(&id, &t, b, gold));
            }
        }
    }
    write_golden(&data.join("bioasq/golden.arrow"), &rows);
    let cfg = tmp.path().join("c.toml");
    std::fs::write(&cfg, config).unwrap();
    for y in ["4b", "5b"] {
        let task = format!("bioasq-{y}");
        let mut answers = Vec::new();
        let mut expected = Vec::new(); // (batch, factoid scores)
        let mut expected_yesno: Vec<(String, YesNoScore)> = Vec::new();
        let mut expected_list: Vec<(String, ListScore)> = Vec::new();
        let (mut i, mut iy, mut il) = (0, 0, 0);
        for b in (1..=5).map(|k| format!("{}{k}", y.to_uppercase())) {
            let file = golden_dir.join(format!("{b}_golden.json"));
            for (id, t, gold) in questions(&file) {
                match t.as_str() {
                    "factoid" => {
                        let (ea, want) = tricky(i, &gold);
                        answers.push(json!({"id": id, "exact_answer": ea}));
                        expected.push((b.clone(), want));
                        i += 1;
                    }
                    "yesno" => {
                        let g = gold[0][0].to_lowercase();
                        let (ea, correct) = tricky_yesno(iy, &g);
                        answers.push(json!({"id": id, "exact_answer": ea}));
                        let label = |s: &str| if s == "yes" { YesNo::Yes } else { YesNo::No };
                        let score = YesNoScore {
                            gold: label(&g),
                            answer: None, // not used by the measures
                            correct,
                        };
                        expected_yesno.push((b.clone(), score));
                        iy += 1;
                    }
                    "list" => {
                        let ea = tricky_list(il, &gold);
                        let items: Vec<Vec<String>> = serde_json::from_value(ea.clone()).unwrap();
                        expected_list.push((b.clone(), score_list(&items, &gold)));
                        answers.push(json!({"id": id, "exact_answer": ea}));
                        il += 1;
                    }
                    // Summaries: there so that the official evaluator, which stops on a golden
                    // question missing from the submission, runs.
                    _ => answers.push(json!({"id": id, "ideal_answer": "something"})),
                }
            }
        }
        let sub = tmp.path().join(format!("tricky-{y}.json"));
        write_json(&sub, &json!({ "questions": answers }));
        let out = tmp.path().join(format!("scored-{y}"));
        let o = trainer(&[
            "eval",
            "--task",
            &task,
            "--submission",
            sub.to_str().unwrap(),
            "--config",
            cfg.to_str().unwrap(),
            "--data-dir",
            data.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ]);
        assert!(o.status.success(), "{}", text(&o));
        let over = (0..i).filter(|k| k % 9 == 6).count();
        assert!(
            text(&o).contains(&format!("{over} questions have more than 5 answers")),
            "{}",
            text(&o)
        );
        assert!(
            !text(&o).contains("not in"),
            "nothing missing: {}",
            text(&o)
        );
        let m = read_json(&out.join("results.json"))["metrics"].clone();
        for (b, bm) in m["batches"].as_object().unwrap() {
            let mine: Vec<&(f64, f64, f64)> = expected
                .iter()
                .filter(|(x, _)| x == b)
                .map(|(_, s)| s)
                .collect();
            let n = mine.len() as f64;
            let want = (
                mine.iter().map(|s| s.0).sum::<f64>() / n,
                mine.iter().map(|s| s.1).sum::<f64>() / n,
                mine.iter().map(|s| s.2).sum::<f64>() / n,
            );
            assert!(
                close(&bm["strict_acc"], want.0),
                "{y} {b}: {bm} vs {want:?}"
            );
            assert!(
                close(&bm["lenient_acc"], want.1),
                "{y} {b}: {bm} vs {want:?}"
            );
            assert!(close(&bm["mrr"], want.2), "{y} {b}: {bm} vs {want:?}");
            let yn: Vec<YesNoScore> = expected_yesno
                .iter()
                .filter(|(x, _)| x == b)
                .map(|(_, s)| *s)
                .collect();
            let want_yn = YesNoMetrics::of(&yn).unwrap();
            for (k, v) in [
                ("yesno_acc", want_yn.yesno_acc),
                ("yesno_f1_yes", want_yn.yesno_f1_yes),
                ("yesno_f1_no", want_yn.yesno_f1_no),
                ("yesno_macro_f1", want_yn.yesno_macro_f1),
            ] {
                assert!(close(&bm[k], v), "{y} {b} {k}: {bm} vs {v}");
            }
            let ls: Vec<ListScore> = expected_list
                .iter()
                .filter(|(x, _)| x == b)
                .map(|(_, s)| *s)
                .collect();
            let want_l = ListMetrics::of(&ls).unwrap();
            for (k, v) in [
                ("list_precision", want_l.list_precision),
                ("list_recall", want_l.list_recall),
                ("list_f1", want_l.list_f1),
            ] {
                assert!(close(&bm[k], v), "{y} {b} {k}: {bm} vs {v}");
            }
            if let Some(jar) = &jar {
                let off = official(jar, &golden_dir.join(format!("{b}_golden.json")), &sub);
                println!("{b}: ours {bm} official {off:?}");
                for (k, v) in OFFICIAL_ORDER.iter().zip(&off) {
                    assert!(close(&bm[*k], *v), "{b} {k}: ours {bm}, official {off:?}");
                }
            }
        }
    }
}
