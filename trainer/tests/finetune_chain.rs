//! The fine-tune → answer → metrics chain on the real BioASQ fixtures (4b and 5b), with a
//! tiny random model and the GPT-NeoX tokenizer, through the `trainer` binary.
//!
//! The `bioasq` tables are built here from the fixtures' SQuAD and golden JSON with the
//! schemas of `schemas::bioasq` (the trainer never depends on the pipeline; the
//! cross-crate e2e test runs `pipeline bioasq` itself).

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use arrow::array::{ArrayRef, ListBuilder, RecordBatch, StringArray, StringBuilder, UInt64Builder};
use arrow::ipc::writer::FileWriter;
use serde_json::Value;

fn fixtures() -> Option<PathBuf> {
    let root = testkit::fixtures::fixtures_dir();
    if root.join("bioasq/squad").is_dir()
        && root.join("tokenizer/gpt-neox-20b.tokenizer.json").is_file()
    {
        Some(root)
    } else {
        println!("SKIP: BioASQ fixtures not found under {}", root.display());
        None
    }
}

fn write_table(path: &Path, batch: RecordBatch) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let f = std::fs::File::create(path).unwrap();
    let mut w = FileWriter::try_new(f, &batch.schema()).unwrap();
    w.write(&batch).unwrap();
    w.finish().unwrap();
}

/// SQuAD-format files → examples table (factoid rows).
fn squad_to_examples(files: &[PathBuf], out: &Path, context_source: &str, limit: Option<usize>) {
    let context_source = schemas::bioasq::source::ALL
        .into_iter()
        .find(|s| *s == context_source)
        .unwrap();
    let mut rows = Vec::new();
    for f in files {
        let v: Value = serde_json::from_slice(&std::fs::read(f).unwrap()).unwrap();
        for art in v["data"].as_array().unwrap() {
            for p in art["paragraphs"].as_array().unwrap() {
                for qa in p["qas"].as_array().unwrap() {
                    let id = qa["id"].as_str().unwrap().to_string();
                    let qid = id.split('_').next().unwrap().to_string();
                    let ans = qa
                        .get("answers")
                        .and_then(|a| a.as_array())
                        .and_then(|a| a.first());
                    rows.push(schemas::bioasq::Example {
                        id,
                        question_id: qid,
                        question: qa["question"].as_str().unwrap().to_string(),
                        context: p["context"].as_str().unwrap().to_string(),
                        answer_text: ans.map(|a| a["text"].as_str().unwrap().to_string()),
                        answer_start: ans.map(|a| a["answer_start"].as_i64().unwrap()),
                        pmid: None,
                        context_source,
                        // `split`: training files carry answers, test files do not.
                        split: if ans.is_some() {
                            schemas::bioasq::Split::Train
                        } else {
                            schemas::bioasq::Split::Test
                        },
                        source_file: f.file_name().unwrap().to_string_lossy().into_owned(),
                        qtype: schemas::bioasq::qtype::FACTOID,
                        answer_list: None,
                    });
                }
            }
        }
    }
    rows.truncate(limit.unwrap_or(usize::MAX));
    write_table(out, schemas::bioasq::examples_batch(&rows).unwrap());
}

/// Official golden JSON files → golden table; returns the factoid ids.
fn golden_to_table(files: &[PathBuf], out: &Path) -> Vec<String> {
    let (mut qid, mut ty, mut body, mut batch, mut src) = (vec![], vec![], vec![], vec![], vec![]);
    let mut exact = ListBuilder::new(ListBuilder::new(StringBuilder::new()).with_field(Arc::new(
        arrow::datatypes::Field::new("item", arrow::datatypes::DataType::Utf8, false),
    )))
    .with_field(Arc::new(arrow::datatypes::Field::new(
        "item",
        arrow::datatypes::DataType::List(Arc::new(arrow::datatypes::Field::new(
            "item",
            arrow::datatypes::DataType::Utf8,
            false,
        ))),
        false,
    )));
    let mut docs = ListBuilder::new(UInt64Builder::new()).with_field(Arc::new(
        arrow::datatypes::Field::new("item", arrow::datatypes::DataType::UInt64, false),
    ));
    let mut factoid = Vec::new();
    for f in files {
        let name = f.file_name().unwrap().to_string_lossy().into_owned();
        let v: Value = serde_json::from_slice(&std::fs::read(f).unwrap()).unwrap();
        for q in v["questions"].as_array().unwrap() {
            let t = q["type"].as_str().unwrap();
            qid.push(q["id"].as_str().unwrap().to_string());
            ty.push(t.to_string());
            body.push(q["body"].as_str().unwrap().to_string());
            batch.push(name.trim_end_matches("_golden.json").to_string());
            src.push(name.clone());
            if t == "factoid" {
                factoid.push(q["id"].as_str().unwrap().to_string());
            }
            // Factoid exact answers: list of synonym lists (older files: flat strings).
            let lists: Vec<Vec<String>> = match q.get("exact_answer") {
                Some(Value::Array(a)) => a
                    .iter()
                    .map(|x| match x {
                        Value::Array(s) => s
                            .iter()
                            .filter_map(|y| y.as_str().map(String::from))
                            .collect(),
                        Value::String(s) => vec![s.clone()],
                        _ => vec![],
                    })
                    .collect(),
                Some(Value::String(s)) => vec![vec![s.clone()]],
                _ => vec![],
            };
            for l in lists {
                for s in l {
                    exact.values().values().append_value(s);
                }
                exact.values().append(true);
            }
            exact.append(true);
            for d in q["documents"].as_array().unwrap() {
                let pmid = d
                    .as_str()
                    .unwrap()
                    .rsplit('/')
                    .next()
                    .unwrap()
                    .parse::<u64>()
                    .unwrap();
                docs.values().append_value(pmid);
            }
            docs.append(true);
        }
    }
    let s = |v: Vec<String>| Arc::new(StringArray::from(v)) as ArrayRef;
    let b = RecordBatch::try_new(
        schemas::bioasq::golden_schema(),
        vec![
            s(qid),
            s(ty),
            s(body),
            Arc::new(exact.finish()),
            Arc::new(docs.finish()),
            Arc::new(StringArray::from(
                batch.into_iter().map(Some).collect::<Vec<_>>(),
            )),
            Arc::new(arrow::array::Int32Array::from(vec![None::<i32>; src.len()])),
            s(src),
        ],
    )
    .unwrap();
    write_table(out, b);
    factoid
}

/// Run `bin` (a private copy of the built `trainer`: the target directory is shared with
/// other worktrees, whose builds may replace `target/debug/trainer` while this test runs).
fn trainer(bin: &Path, args: &[&str]) -> String {
    let t0 = std::time::Instant::now();
    let out = Command::new(bin).args(args).output().unwrap();
    println!("trainer {} ({:.1}s)", args[0], t0.elapsed().as_secs_f64());
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "trainer {args:?} failed:\n{text}");
    text
}

#[test]
fn finetune_answer_and_score_bioasq_4b_5b_with_a_tiny_model() {
    let Some(fx) = fixtures() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let bin = tmp.path().join("trainer");
    std::fs::copy(env!("CARGO_BIN_EXE_trainer"), &bin).unwrap();
    let data = tmp.path().join("data");
    let squad = fx.join("bioasq/squad");
    let golden_dir = fx.join("bioasq/golden");

    // Training table: a few snippets of the 7b training file (leakage is irrelevant here).
    let train = data.join("bioasq/train.arrow");
    squad_to_examples(
        &[squad.join("BioASQ-train-factoid-7b.json")],
        &train,
        "snippet",
        Some(24),
    );
    // One golden table for all years, as `pipeline bioasq` writes it; 4b selects its
    // questions by batch, 5b by the question ids of its test table.
    let mut factoid_ids: HashMap<&str, Vec<String>> = HashMap::new();
    let mut all_goldens = Vec::new();
    for y in ["4b", "5b"] {
        let tests: Vec<PathBuf> = (1..=5)
            .map(|i| squad.join(format!("BioASQ-test-factoid-{y}-{i}.json")))
            .collect();
        squad_to_examples(
            &tests,
            &data.join(format!("bioasq/{y}/test.arrow")),
            "squad",
            None,
        );
        let goldens: Vec<PathBuf> = (1..=5)
            .map(|i| golden_dir.join(format!("{}{i}_golden.json", y.to_uppercase())))
            .collect();
        factoid_ids.insert(
            y,
            golden_to_table(&goldens, &tmp.path().join(format!("golden-{y}.arrow"))),
        );
        all_goldens.extend(goldens);
    }
    golden_to_table(&all_goldens, &data.join("bioasq/golden.arrow"));

    // Tiny random model with the real vocabulary, and the real tokenizer next to it.
    let init = tmp.path().join("tiny");
    let cfg = trainer::MambaConfig::new(50280, 16, 1);
    let model = cfg.init_seeded::<trainer::Cpu>(&Default::default(), 7);
    trainer::save_pretrained(&init, &trainer::HfConfig::from_config(cfg), &model).unwrap();
    std::fs::copy(
        fx.join("tokenizer/gpt-neox-20b.tokenizer.json"),
        init.join("tokenizer.json"),
    )
    .unwrap();

    let config = tmp.path().join("ft.toml");
    std::fs::write(
        &config,
        "[finetune]\nepochs = 1\nbatch_size = 4\nmicro_batch = 2\nlr = 1e-3\nmax_len = 64\n\
         checkpoint_every = 2\nmax_new_tokens = 2\nbeams = 2\nmax_contexts = 1\n\
         [tasks.bioasq-4b]\nlabel = \"4b\"\ntrain = \"bioasq/train.arrow\"\n\
         test = \"bioasq/4b/test.arrow\"\ngolden = \"bioasq/golden.arrow\"\n\
         batches = [\"4B1\", \"4B2\", \"4B3\", \"4B4\", \"4B5\"]\n\
         [tasks.bioasq-5b]\nlabel = \"5b\"\ntrain = \"bioasq/train.arrow\"\n\
         test = \"bioasq/5b/test.arrow\"\ngolden = \"bioasq/golden.arrow\"\n",
    )
    .unwrap();
    let d = data.to_str().unwrap();
    let c = config.to_str().unwrap();
    let mut run_dirs = Vec::new();
    for (task, y) in [("bioasq-4b", "4b"), ("bioasq-5b", "5b")] {
        let run = tmp.path().join(format!("run-{y}"));
        let r = run.to_str().unwrap();
        trainer(
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
                r,
                "--steps",
                "3",
            ],
        );
        // Training ran 3 logged steps, checkpoints and the final model exist.
        let log = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
        assert_eq!(log.lines().count(), 3);
        assert!(run.join("model/model.safetensors").is_file());
        assert!(run.join("state.sled").exists());

        let out = run.join("eval").join(task);
        let sub: Value =
            serde_json::from_slice(&std::fs::read(out.join("predictions.json")).unwrap()).unwrap();
        let typed: Vec<(&str, &str)> = factoid_ids[y]
            .iter()
            .map(|id| (id.as_str(), "factoid"))
            .collect();
        trainer::eval::answer::validate_submission(&sub, &typed).unwrap();
        let qs = sub["questions"].as_array().unwrap();
        assert_eq!(qs.len(), factoid_ids[y].len());
        let unique: BTreeSet<&str> = qs.iter().map(|q| q["id"].as_str().unwrap()).collect();
        assert_eq!(unique.len(), qs.len());
        assert!(
            qs.iter()
                .any(|q| !q["exact_answer"].as_array().unwrap().is_empty()),
            "the model produced no answer at all"
        );
        let res: Value =
            serde_json::from_slice(&std::fs::read(out.join("results.json")).unwrap()).unwrap();
        assert_eq!(res["metrics"]["batches"].as_object().unwrap().len(), 5);
        assert_eq!(
            res["metrics"]["all_questions"]["questions"]
                .as_u64()
                .unwrap() as usize,
            factoid_ids[y].len()
        );
        let md = std::fs::read_to_string(out.join("results.md")).unwrap();
        assert!(md.contains(&format!("| {y} | MRR |")), "{md}");

        // The written submission, scored through `trainer eval --submission` (the official
        // measures on the task's golden rows), gives the numbers answering reported.
        let scored = tmp.path().join(format!("scored-{y}"));
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
        let rescored: Value =
            serde_json::from_slice(&std::fs::read(scored.join("results.json")).unwrap()).unwrap();
        assert_eq!(
            rescored["metrics"], res["metrics"],
            "scoring predictions.json differs from what answering reported"
        );
        assert_eq!(rescored["missing"], 0);
        assert_eq!(rescored["system"], "tiny");

        // A hand-made second system: the first gold synonym, as written, for every other
        // question (a wrong answer for the rest).
        let golden = schemas::bioasq::read_golden(&data.join("bioasq/golden.arrow")).unwrap();
        let gold: HashMap<&str, &str> = golden
            .iter()
            .filter(|g| g.in_batch() && g.qtype == "factoid")
            .map(|g| (g.question_id.as_str(), g.exact_answer[0][0].as_str()))
            .collect();
        let half: Vec<Value> = factoid_ids[y]
            .iter()
            .enumerate()
            .map(|(i, id)| {
                let a = if i % 2 == 0 {
                    gold[id.as_str()]
                } else {
                    "no such answer"
                };
                serde_json::json!({"id": id, "exact_answer": [[a]]})
            })
            .collect();
        let half_file = tmp.path().join(format!("half-gold-{y}.json"));
        std::fs::write(
            &half_file,
            serde_json::to_vec(&serde_json::json!({ "questions": half })).unwrap(),
        )
        .unwrap();
        trainer(
            &bin,
            &[
                "eval",
                "--task",
                task,
                "--submission",
                half_file.to_str().unwrap(),
                "--config",
                c,
                "--data-dir",
                d,
                "--label",
                "half gold",
            ],
        );
        let half_res: Value = serde_json::from_slice(
            &std::fs::read(
                tmp.path()
                    .join(format!("half-gold-{y}-{task}/results.json")),
            )
            .unwrap(),
        )
        .unwrap();
        let n = factoid_ids[y].len();
        let want = n.div_ceil(2) as f64 / n as f64;
        for m in ["strict_acc", "lenient_acc", "mrr"] {
            let got = half_res["metrics"]["all_questions"][m].as_f64().unwrap();
            assert!((got - want).abs() < 1e-12, "{y} {m}: {got} vs {want}");
        }
        run_dirs.push(run);
    }

    // Table 3 with the two systems side by side.
    let two = trainer(
        &bin,
        &[
            "report",
            tmp.path().join("scored-4b").to_str().unwrap(),
            tmp.path().join("scored-5b").to_str().unwrap(),
            tmp.path().join("half-gold-4b-bioasq-4b").to_str().unwrap(),
            tmp.path().join("half-gold-5b-bioasq-5b").to_str().unwrap(),
            "--out",
            tmp.path().join("table3-two").to_str().unwrap(),
        ],
    );
    assert!(
        two.contains("| Task | Measure | tiny | half gold |"),
        "{two}"
    );
    assert!(two.contains("| 5b | MRR |"), "{two}");
    println!("{two}");

    // Resume: the finished run re-run is a no-op for training (cursor at the last step).
    let r4 = run_dirs[0].to_str().unwrap();
    let again = trainer(
        &bin,
        &[
            "finetune",
            "--init",
            init.to_str().unwrap(),
            "--task",
            "bioasq-4b",
            "--config",
            c,
            "--data-dir",
            d,
            "--run-dir",
            r4,
            "--steps",
            "3",
            "--no-eval",
        ],
    );
    assert!(again.contains("from checkpoint step 3"), "{again}");
    assert_eq!(
        std::fs::read_to_string(run_dirs[0].join("metrics.jsonl"))
            .unwrap()
            .lines()
            .count(),
        3
    );

    // Exact resume: stopped after step 1 of 2 and resumed = uninterrupted, byte for byte.
    let full = tmp.path().join("full");
    let split = tmp.path().join("split");
    let base = |run: &Path| -> Vec<String> {
        [
            "finetune",
            "--init",
            init.to_str().unwrap(),
            "--task",
            "bioasq-4b",
            "--config",
            c,
            "--data-dir",
            d,
            "--run-dir",
            run.to_str().unwrap(),
            "--steps",
            "2",
            "--no-eval",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    };
    let run_args =
        |v: Vec<String>| trainer(&bin, &v.iter().map(String::as_str).collect::<Vec<_>>());
    run_args(base(&full));
    let mut first = base(&split);
    first.extend(["--max-steps".to_string(), "1".to_string()]);
    let stopped = run_args(first);
    assert!(stopped.contains("stopped after step 1 of 2"), "{stopped}");
    assert!(!split.join("model").exists());
    run_args(base(&split));
    let bytes = |p: &Path| std::fs::read(p.join("model/model.safetensors")).unwrap();
    assert_eq!(
        bytes(&full),
        bytes(&split),
        "resumed run differs from the uninterrupted one"
    );
    let losses = |p: &Path| -> Vec<f64> {
        std::fs::read_to_string(p.join("metrics.jsonl"))
            .unwrap()
            .lines()
            .map(|l| {
                serde_json::from_str::<Value>(l).unwrap()["loss"]
                    .as_f64()
                    .unwrap()
            })
            .collect()
    };
    assert_eq!(losses(&full), losses(&split));

    // Perplexity on a validation shard of real text (questions of the test table, EOS-separated).
    let tok = tokenizers::Tokenizer::from_file(init.join("tokenizer.json")).unwrap();
    let mut stream: Vec<u16> = Vec::new();
    for q in schemas::bioasq::read_examples(&data.join("bioasq/4b/test.arrow"))
        .unwrap()
        .iter()
        .take(40)
    {
        stream.extend(
            tok.encode(q.question.as_str(), false)
                .unwrap()
                .get_ids()
                .iter()
                .map(|&t| t as u16),
        );
        stream.push(0);
    }
    let seq = 64;
    let rows = 4;
    assert!(stream.len() >= rows * seq);
    let packed: Vec<Vec<u32>> = stream[..rows * seq]
        .chunks(seq)
        .map(|c| c.iter().map(|&t| t as u32).collect())
        .collect();
    let shard = data.join("shards/val/shard-00000.arrow");
    testkit::shards::write_sequences(&shard, &packed, seq, 50280, 0).unwrap();
    let ppl_out = tmp.path().join("ppl");
    let table4 = trainer(
        &bin,
        &[
            "eval",
            "--ppl",
            "--model",
            r4,
            "--data-dir",
            d,
            "--batch-size",
            "2",
            "--doc-len",
            "16",
            "--out",
            ppl_out.to_str().unwrap(),
        ],
    );
    assert!(table4.contains("paper protocol"), "{table4}");
    println!("{table4}");
    let ppl: Value =
        serde_json::from_slice(&std::fs::read(ppl_out.join("ppl.json")).unwrap()).unwrap();
    let res = ppl["results"].as_array().unwrap();
    assert_eq!(res.len(), 3);
    assert_eq!(
        res[0]["tokens"].as_u64().unwrap() as usize,
        rows * (seq - 1)
    );
    for r in res {
        let ce = r["cross_entropy"].as_f64().unwrap();
        assert!(ce.is_finite() && ce > 0.0);
        assert!((r["perplexity"].as_f64().unwrap() - ce.exp()).abs() < 1e-6 * ce.exp());
    }
    // A random model over 50,280 tokens is close to uniform: CE near ln(50280) ≈ 10.8.
    assert!((res[0]["cross_entropy"].as_f64().unwrap() - 50280f64.ln()).abs() < 1.0);
    let bpb = res[0]["bits_per_byte"].as_f64().unwrap();
    assert!(bpb > 1.0 && bpb < 10.0, "bits per byte {bpb}");

    // One table for both tasks.
    let prefix = tmp.path().join("table3");
    let table = trainer(
        &bin,
        &[
            "report",
            run_dirs[0].to_str().unwrap(),
            run_dirs[1].to_str().unwrap(),
            "--out",
            prefix.to_str().unwrap(),
        ],
    );
    assert!(
        table.contains("| 4b | ACC (strict) |") && table.contains("| 5b | ACC (lenient) |"),
        "{table}"
    );
    assert!(tmp.path().join("table3.json").is_file());
    println!("{table}");
}
