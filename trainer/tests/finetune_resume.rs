//! `trainer finetune` resumes exactly like pretraining (same cursor and checkpoint code): SIGKILL
//! at a random step and again inside a checkpoint write, then resume, ends with byte-identical
//! final weights and the same loss log as an uninterrupted run.
//!
//! Data: the bundled sample's SQuAD-format training questions (`data/sample/bioasq`), a
//! word-level tokenizer built from their words, and a tiny random Mamba: no fixtures needed.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use common::kill::{
    count_lines, deterministic_metrics, hidden_entries, kill_in_checkpoint_write, random_below,
    run_ok, wait_kill,
};
use trainer::train::checkpoint::{CHECKPOINTS_DIR, PAUSE_ENV};

const STEPS: usize = 12;

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// (question, context, answer, answer_start) of the sample's SQuAD training file.
fn sample_questions() -> Vec<(String, String, String, i64)> {
    let path = workspace().join("data/sample/bioasq/squad-train-sample.json");
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    let mut out = Vec::new();
    for art in v["data"].as_array().unwrap() {
        for p in art["paragraphs"].as_array().unwrap() {
            for qa in p["qas"].as_array().unwrap() {
                let a = &qa["answers"][0];
                out.push((
                    qa["question"].as_str().unwrap().to_string(),
                    p["context"].as_str().unwrap().to_string(),
                    a["text"].as_str().unwrap().to_string(),
                    a["answer_start"].as_i64().unwrap(),
                ));
            }
        }
    }
    out
}

/// The examples table (written with `schemas::bioasq::examples_batch`).
fn write_table(path: &Path, rows: &[(String, String, String, i64)]) {
    let examples: Vec<schemas::bioasq::Example> = rows
        .iter()
        .enumerate()
        .map(|(i, r)| schemas::bioasq::Example {
            id: format!("q{i}_001"),
            question_id: format!("q{i}"),
            question: r.0.clone(),
            context: r.1.clone(),
            answer_text: Some(r.2.clone()),
            answer_start: Some(r.3),
            pmid: None,
            context_source: schemas::bioasq::source::SNIPPET,
            split: schemas::bioasq::Split::Train,
            source_file: "squad-train-sample.json".into(),
            qtype: schemas::bioasq::qtype::FACTOID,
            answer_list: None,
        })
        .collect();
    let batch = schemas::bioasq::examples_batch(&examples).unwrap();
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let mut w = arrow::ipc::writer::FileWriter::try_new(
        std::fs::File::create(path).unwrap(),
        &batch.schema(),
    )
    .unwrap();
    w.write(&batch).unwrap();
    w.finish().unwrap();
}

/// Word-level tokenizer over the words of `texts` (id 0 = EOS, 1 = unknown).
fn tokenizer(texts: &[&str]) -> tokenizers::Tokenizer {
    use tokenizers::pre_tokenizers::whitespace::Whitespace;
    let mut vocab: BTreeMap<String, u32> = BTreeMap::new();
    vocab.insert("<eos>".into(), 0);
    vocab.insert("[UNK]".into(), 1);
    let mut words: Vec<String> = texts
        .iter()
        .flat_map(|t| {
            t.split(|c: char| !c.is_alphanumeric())
                .chain(t.split(char::is_alphanumeric))
                .map(str::trim)
                .filter(|w| !w.is_empty())
                .map(String::from)
                .collect::<Vec<_>>()
        })
        .collect();
    words.sort();
    words.dedup();
    for w in words {
        let id = vocab.len() as u32;
        vocab.entry(w).or_insert(id);
    }
    let model = tokenizers::models::wordlevel::WordLevel::builder()
        .vocab(vocab.into_iter().collect())
        .unk_token("[UNK]".into())
        .build()
        .unwrap();
    let mut t = tokenizers::Tokenizer::new(model);
    t.with_pre_tokenizer(Some(Whitespace {}));
    t
}

struct Fixture {
    /// A private copy of the trainer binary (the target directory is shared between worktrees).
    exe: PathBuf,
    root: PathBuf,
    /// Uninterrupted reference run: final weights and deterministic metrics.
    weights: Vec<u8>,
    metrics: Vec<String>,
}

fn finetune_cmd(f: &Fixture, run: &Path) -> Command {
    finetune_cmd_with(f, run, &f.root.join("ft.toml"))
}

fn finetune_cmd_with(f: &Fixture, run: &Path, config: &Path) -> Command {
    let mut c = Command::new(&f.exe);
    c.args(["finetune", "--task", "sample", "--no-eval"])
        .arg("--init")
        .arg(f.root.join("init"))
        .arg("--config")
        .arg(config)
        .arg("--data-dir")
        .arg(f.root.join("data"))
        .arg("--run-dir")
        .arg(run)
        .env("CI", "1")
        .env_remove(PAUSE_ENV);
    c
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let root = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("finetune_resume");
        let _ = std::fs::remove_dir_all(&root);
        let rows = sample_questions();
        write_table(&root.join("data/bioasq/train.arrow"), &rows);
        let texts: Vec<&str> = rows
            .iter()
            .flat_map(|r| [r.0.as_str(), r.1.as_str(), r.2.as_str()])
            .chain(["Question", "Answer", ":"])
            .collect();
        let tok = tokenizer(&texts);
        let mut cfg = trainer::MambaConfig::new(tok.get_vocab_size(true), 16, 2);
        cfg.state_size = 4;
        let model = cfg.init_seeded::<trainer::Cpu>(&Default::default(), 3);
        let init = root.join("init");
        trainer::save_pretrained(&init, &trainer::HfConfig::from_config(cfg), &model).unwrap();
        tok.save(init.join("tokenizer.json"), false).unwrap();
        // 40 examples, 2 epochs in batches of 6 → 14 steps, cut to STEPS by max_steps.
        std::fs::write(
            root.join("ft.toml"),
            format!(
                "[finetune]\nmax_len = 48\nepochs = 2\nlr = 2e-2\nmin_lr = 1e-4\nwarmup_ratio = 0.2\n\
                 beta1 = 0.9\nbeta2 = 0.95\neps = 1e-8\nweight_decay = 0.1\nclip = 1.0\n\
                 batch_size = 6\nmicro_batch = 4\nseed = 11\nthreads = 2\nmax_steps = {STEPS}\n\
                 checkpoint_every = 3\nkeep_checkpoints = 2\n\
                 [tasks.sample]\ntrain = \"bioasq/train.arrow\"\ntest = \"unused.arrow\"\n\
                 golden = \"unused.arrow\"\n"
            ),
        )
        .unwrap();
        let exe = root.join("trainer-under-test");
        std::fs::copy(env!("CARGO_BIN_EXE_trainer"), &exe).unwrap();
        let mut f = Fixture {
            exe,
            root: root.clone(),
            weights: Vec::new(),
            metrics: Vec::new(),
        };
        let run = root.join("runs/reference");
        let t = std::time::Instant::now();
        run_ok(finetune_cmd(&f, &run));
        eprintln!("reference run: {STEPS} steps in {:.1}s", t.elapsed().as_secs_f64());
        f.weights = std::fs::read(run.join("model/model.safetensors")).unwrap();
        f.metrics = deterministic_metrics(&run, "secs");
        assert_eq!(f.metrics.len(), STEPS);
        f
    })
}

#[test]
fn finetune_sigkill_anywhere_then_resume_is_bit_identical() {
    let f = fixture();
    let run = f.root.join("runs/killed");
    // After the first checkpoint (step 3), so the resume path is always exercised.
    let kill_after_lines = 4 + random_below(STEPS - 6);
    eprintln!("kill 1: after {kill_after_lines} metric lines");
    let metrics = run.join("metrics.jsonl");
    let child = finetune_cmd(f, &run).stderr(Stdio::null()).spawn().unwrap();
    wait_kill(
        child,
        || count_lines(&metrics) >= kill_after_lines,
        "kill point 1",
    );

    let marker = kill_in_checkpoint_write(finetune_cmd(f, &run));
    eprintln!("kill 2: {marker}");
    assert!(
        hidden_entries(&run.join(CHECKPOINTS_DIR)) >= 1,
        "expected the interrupted checkpoint's temporary directory"
    );
    assert!(
        !run.join("model").exists(),
        "no final model before the last step"
    );

    let err = run_ok(finetune_cmd(f, &run));
    assert!(
        err.contains("resuming"),
        "did not resume from a checkpoint:\n{err}"
    );
    assert_eq!(
        deterministic_metrics(&run, "secs"),
        f.metrics,
        "loss log differs"
    );
    let weights = std::fs::read(run.join("model/model.safetensors")).unwrap();
    assert!(
        weights == f.weights,
        "final weights differ from the uninterrupted run"
    );
}

#[test]
fn finetune_loss_falls_and_a_changed_recipe_is_refused() {
    let f = fixture();
    let losses: Vec<f64> = f
        .metrics
        .iter()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["loss"]
                .as_f64()
                .unwrap()
        })
        .collect();
    let head = losses[..3].iter().sum::<f64>() / 3.0;
    let tail = losses[STEPS - 3..].iter().sum::<f64>() / 3.0;
    eprintln!("answer-token loss, first 3 steps {head:.3}, last 3 steps {tail:.3}");
    assert!(
        tail < head - 0.5,
        "the answer loss did not fall: {losses:?}"
    );

    // The same run directory with another learning rate is another run: refused.
    let run = f.root.join("runs/recipe");
    let mut c = finetune_cmd(f, &run);
    c.args(["--steps", "2"]);
    run_ok(c);
    let cfg = std::fs::read_to_string(f.root.join("ft.toml")).unwrap();
    let other = f.root.join("ft-other.toml");
    std::fs::write(&other, cfg.replace("lr = 2e-2", "lr = 1e-3")).unwrap();
    let mut c = finetune_cmd_with(f, &run, &other);
    c.args(["--steps", "2"]);
    let out = c.output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("different") && err.contains("new run directory"),
        "{err}"
    );

    // So is another tokenizer (here the same one with one more special token).
    let mut tok = tokenizers::Tokenizer::from_file(f.root.join("init/tokenizer.json")).unwrap();
    tok.add_special_tokens(&[tokenizers::AddedToken::from("<extra>", true)]);
    let other_tok = f.root.join("other-tokenizer.json");
    tok.save(&other_tok, false).unwrap();
    let mut c = finetune_cmd(f, &run);
    c.args(["--steps", "2", "--tokenizer"]).arg(&other_tok);
    let out = c.output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "resumed with another tokenizer");
    assert!(
        err.contains("tokenizer") && err.contains("new run directory"),
        "{err}"
    );
}
