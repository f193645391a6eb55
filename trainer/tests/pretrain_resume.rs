//! Acceptance tests of `trainer pretrain`: exact resume after SIGKILL (also inside a checkpoint
//! write), fallback from a corrupt checkpoint, and a falling validation loss on sample text, for
//! Mamba-1 and (kill/resume and the loss) Mamba-2, and for the BioMamba-2 recipe (three mixed
//! domains, one document per sequence, WSD, EMA, label smoothing, layer-wise decay, decay groups).
//!
//! Data: the abstracts of `data/sample/expect/*.jsonl` (synthetic, committed), byte-tokenized
//! (vocabulary 256) and packed into `shard-*.arrow` files with the shards schema; for the mixed
//! recipe, its sentences one per row (padded) as PubMed, the BioASQ sample's questions and snippets
//! one per row as a second domain, and the same text packed as a third.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::Instant;

use common::kill::{
    count_lines, deterministic_metrics, hidden_entries, kill_before_cursor_commit,
    kill_in_checkpoint_write, random_below, run_ok, wait_kill,
};
use trainer::train::checkpoint::{
    CHECKPOINTS_DIR, PAUSE_BEFORE_CURSOR_ENV, PAUSE_ENV, checkpoint_name,
};

const STEPS: u64 = 24;
const SEQ_LEN: usize = 64;

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Byte-tokenized sample abstracts → `dir/shards/{train,val}`; returns dir.
fn make_data(dir: &Path) {
    let mut text = Vec::new();
    for f in ["pubmed26n0001.jsonl", "pubmed26n0002.jsonl"] {
        let path = workspace().join("data/sample/expect").join(f);
        let s =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        for line in s.lines() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            for k in ["title", "abstract"] {
                if let Some(t) = v[k].as_str() {
                    text.extend_from_slice(t.as_bytes());
                    text.push(b'\n');
                }
            }
        }
    }
    let seqs: Vec<Vec<u32>> = text
        .chunks_exact(SEQ_LEN)
        .map(|c| c.iter().map(|&b| b as u32).collect())
        .collect();
    let n_val = seqs.len() / 10;
    let (train, val) = seqs.split_at(seqs.len() - n_val);
    let half = train.len() / 2;
    let t = dir.join("shards/train");
    testkit::shards::write_sequences(
        &t.join("shard-00000.arrow"),
        &train[..half],
        SEQ_LEN,
        256,
        0,
    )
    .unwrap();
    testkit::shards::write_sequences(
        &t.join("shard-00001.arrow"),
        &train[half..],
        SEQ_LEN,
        256,
        0,
    )
    .unwrap();
    testkit::shards::write_sequences(
        &dir.join("shards/val/shard-00000.arrow"),
        val,
        SEQ_LEN,
        256,
        0,
    )
    .unwrap();
}

/// Byte-tokenized sentences (split at ". "), each ending in EOS 0.
fn sentences(text: &str) -> Vec<Vec<u32>> {
    text.split(". ")
        .filter(|s| s.trim().len() > 3)
        .map(|s| s.bytes().map(u32::from).chain([0]).collect())
        .collect()
}

/// Three domains: `pubmed` (sample abstracts' sentences, one per padded row), `qa` (the BioASQ
/// sample's questions and snippets, one per padded row) and `web` (the abstracts packed).
fn make_mixed_data(dir: &Path) {
    let mut abstracts = String::new();
    for f in ["pubmed26n0001.jsonl", "pubmed26n0002.jsonl"] {
        let s = std::fs::read_to_string(workspace().join("data/sample/expect").join(f)).unwrap();
        for line in s.lines() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            if let Some(a) = v["abstract"].as_str() {
                abstracts.push_str(a);
                abstracts.push_str(". ");
            }
        }
    }
    let qa: serde_json::Value = serde_json::from_slice(
        &std::fs::read(workspace().join("data/sample/bioasq/training-sample.json")).unwrap(),
    )
    .unwrap();
    let mut qa_text = String::new();
    for q in qa["questions"].as_array().unwrap() {
        qa_text.push_str(q["body"].as_str().unwrap());
        qa_text.push_str(". ");
        for s in q["snippets"].as_array().into_iter().flatten() {
            qa_text.push_str(s["text"].as_str().unwrap_or(""));
            qa_text.push_str(". ");
        }
    }
    let docs = |name: &str, docs: Vec<Vec<u32>>| {
        let n_val = docs.len() / 8;
        let (train, val) = docs.split_at(docs.len() - n_val);
        let w = |split: &str, d: &[Vec<u32>]| {
            let p = if name == "pubmed" {
                dir.join("shards").join(split)
            } else {
                dir.join("shards").join(name).join(split)
            };
            let _ = std::fs::remove_dir_all(&p);
            testkit::shards::write_documents(&p.join("shard-00000.arrow"), d, SEQ_LEN, 256, 0)
                .unwrap();
        };
        w("train", train);
        w("val", val);
    };
    docs("pubmed", sentences(&abstracts));
    docs("qa", sentences(&qa_text));
    // `web`: the packed PubMed shards of make_data, moved.
    std::fs::create_dir_all(dir.join("shards/web")).unwrap();
    for split in ["train", "val"] {
        let from = dir.join("shards").join(format!("packed-{split}"));
        std::fs::rename(&from, dir.join("shards/web").join(split)).unwrap();
    }
}

/// The architectures (and recipes) under test and the `[model]` lines that pick them.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Arch {
    Mamba,
    Mamba2,
    /// Mamba-2 with the BioMamba-2 recipe on three mixed domains.
    Mixed,
}

fn write_config(dir: &Path, arch: Arch) -> PathBuf {
    // Mamba-2: d_inner 64 in 4 heads of 16, chunks of 16 (4 per sequence).
    let model = match arch {
        Arch::Mamba => "",
        Arch::Mamba2 | Arch::Mixed => "arch = \"mamba2\"\nhead_dim = 16\nchunk_size = 16\n",
    };
    let recipe = match arch {
        Arch::Mixed => {
            "schedule = \"wsd\"\nstable_fraction = 0.5\nmin_lr = 3e-4\nema = 0.9\nexport_ema = true\n\
             label_smoothing = 0.05\nlayer_lr_decay = 0.9\n\
             [pretrain.weight_decay_groups]\n\"*\" = 0.1\n\
             [pretrain.mix]\npubmed = 6\nqa = 3\nweb = 1\n"
        }
        _ => "",
    };
    let cfg = format!(
        r#"
[model]
{model}vocab_size = 256
hidden_size = 32
num_hidden_layers = 2
state_size = 8
init_seed = 1

[pretrain]
seq_len = {SEQ_LEN}
micro_batch = 4
grad_accum = 2
steps = {STEPS}
lr = 3e-3
warmup_steps = 3
seed = 5
eval_every = 8
eval_batches = 4
checkpoint_every = 4
keep_checkpoints = 2
threads = 2
{recipe}"#
    );
    let p = dir.join(format!("tiny-{arch:?}.toml"));
    std::fs::write(&p, cfg).unwrap();
    p
}

struct Fixture {
    /// A private copy of the trainer binary (see `fixture`).
    exe: PathBuf,
    root: PathBuf,
    config: PathBuf,
    /// Uninterrupted reference run: exported weights and deterministic metrics.
    weights: Vec<u8>,
    metrics: Vec<String>,
}

fn trainer_cmd(f: &Fixture, run: &Path, extra: &[&str]) -> Command {
    trainer_cmd_on(f, &f.root, run, extra)
}

fn trainer_cmd_on(f: &Fixture, data: &Path, run: &Path, extra: &[&str]) -> Command {
    let mut c = Command::new(&f.exe);
    c.arg("pretrain")
        .arg("--config")
        .arg(&f.config)
        .arg("--run-dir")
        .arg(run)
        .arg("--data-dir")
        .arg(data)
        .args(extra)
        .env("CI", "1")
        .env_remove(PAUSE_ENV)
        .env_remove(PAUSE_BEFORE_CURSOR_ENV);
    c
}

fn export(exe: &Path, run: &Path, out: &Path) -> Vec<u8> {
    let st = Command::new(exe)
        .arg("export")
        .arg(run)
        .arg("--out")
        .arg(out)
        .status()
        .unwrap();
    assert!(st.success());
    std::fs::read(out.join("model.safetensors")).unwrap()
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| make_fixture(Arch::Mamba))
}

fn fixture_mamba2() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| make_fixture(Arch::Mamba2))
}

fn fixture_mixed() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| make_fixture(Arch::Mixed))
}

fn make_fixture(arch: Arch) -> Fixture {
    // A fixed place under target/ (a static is never dropped, so a TempDir would leak);
    // cleared at the start of every test run.
    let root = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("pretrain_resume-{arch:?}"));
    let _ = std::fs::remove_dir_all(&root);
    if arch == Arch::Mixed {
        // make_data's packed shards become the `web` domain.
        make_data(&root.join("packed"));
        for split in ["train", "val"] {
            std::fs::create_dir_all(root.join("shards")).unwrap();
            std::fs::rename(
                root.join("packed/shards").join(split),
                root.join("shards").join(format!("packed-{split}")),
            )
            .unwrap();
        }
        make_mixed_data(&root);
    } else {
        make_data(&root);
    }
    // Worktrees sharing one CARGO_TARGET_DIR overwrite each other's `debug/trainer`; a
    // copy taken now keeps this test run on the binary it was built with.
    let exe = root.join("trainer-under-test");
    std::fs::copy(env!("CARGO_BIN_EXE_trainer"), &exe).unwrap();
    let config = write_config(&root, arch);
    let mut f = Fixture {
        exe,
        root: root.clone(),
        config,
        weights: Vec::new(),
        metrics: Vec::new(),
    };
    let run = root.join("runs/reference");
    let t = Instant::now();
    run_ok(trainer_cmd(&f, &run, &[]));
    eprintln!(
        "{arch:?} reference run: {STEPS} steps in {:.1}s",
        t.elapsed().as_secs_f64()
    );
    f.weights = export(&f.exe, &run, &root.join("export/reference"));
    f.metrics = deterministic_metrics(&run, "tokens_per_s");
    assert!(run.join("loss.png").exists());
    let exported = std::fs::read_to_string(root.join("export/reference/config.json")).unwrap();
    let model_type = if arch != Arch::Mamba {
        "mamba2"
    } else {
        "mamba"
    };
    assert!(
        exported.contains(&format!("\"model_type\": \"{model_type}\"")),
        "{exported}"
    );
    f
}

#[test]
fn sigkill_anywhere_then_resume_is_bit_identical() {
    sigkill_then_resume(fixture());
}

#[test]
fn mamba2_sigkill_anywhere_then_resume_is_bit_identical() {
    sigkill_then_resume(fixture_mamba2());
}

fn sigkill_then_resume(f: &Fixture) {
    let run = f.root.join("runs/killed");
    // A "random" kill moment, printed so a failure can be replayed.
    let kill_after_lines = 2 + random_below(STEPS as usize - 6);
    eprintln!("kill 1: after {kill_after_lines} metric lines");

    // Kill 1: at a random step.
    let metrics = run.join("metrics.jsonl");
    let child = trainer_cmd(f, &run, &[])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_kill(
        child,
        || count_lines(&metrics) >= kill_after_lines,
        "kill point 1",
    );

    // Kill 2: inside a checkpoint write (the hook pauses after its first file).
    let marker = kill_in_checkpoint_write(trainer_cmd(f, &run, &[]));
    eprintln!("kill 2: {marker}");
    // The half-written checkpoint is a hidden temporary, never a final checkpoint directory.
    assert!(
        hidden_entries(&run.join(CHECKPOINTS_DIR)) >= 1,
        "expected the interrupted checkpoint's temporary directory"
    );

    // Kill 3: after a checkpoint is renamed into place, before the cursor moves to it. The
    // resumed run starts from the cursor's (older) checkpoint and rewrites this one identically.
    let marker = kill_before_cursor_commit(trainer_cmd(f, &run, &[]));
    eprintln!("kill 3: {marker}");
    let renamed = Path::new(marker.split_once(' ').unwrap().1);
    assert!(
        renamed.join("checksums.json").is_file(),
        "the checkpoint was in place when the process died: {marker}"
    );

    // Resume to the end.
    run_ok(trainer_cmd(f, &run, &[]));
    let weights = export(&f.exe, &run, &f.root.join("export/killed"));
    assert_eq!(
        deterministic_metrics(&run, "tokens_per_s"),
        f.metrics,
        "loss log differs"
    );
    assert!(
        weights == f.weights,
        "exported weights differ from the uninterrupted run"
    );
}

/// The BioMamba-2 recipe (three domains mixed 6:3:1, padded document rows and packed ones, WSD,
/// EMA exported, label smoothing, layer-wise decay, decay groups) resumes bit for bit.
#[test]
fn mixed_documents_sigkill_anywhere_then_resume_is_bit_identical() {
    sigkill_then_resume(fixture_mixed());
}

/// Over the run the realised mixture tracks the weights within one sequence per domain at every
/// step (metrics.jsonl), and mixture.json reports it against the target; the exported model is
/// the moving average (not the last weights); validation is reported per domain.
#[test]
fn mixed_run_follows_its_weights_and_exports_the_average() {
    let f = fixture_mixed();
    let targets = [("pubmed", 0.6), ("qa", 0.3), ("web", 0.1)];
    let mut steps = 0;
    for line in &f.metrics {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        if let Some(seqs) = v.get("domain_sequences") {
            let k: u64 = targets.iter().map(|(d, _)| seqs[d].as_u64().unwrap()).sum();
            assert_eq!(k, v["step"].as_u64().unwrap() * 8, "8 sequences per step");
            for (d, w) in targets {
                let c = seqs[d].as_u64().unwrap() as f64;
                assert!((c - w * k as f64).abs() <= 1.0, "{d}: {c} of {k} at {line}");
                assert!(v["domain_tokens"][d].as_u64().unwrap() > 0);
            }
            steps += 1;
        }
        if let Some(by) = v.get("val_loss_by_domain") {
            let mean: f64 = targets
                .iter()
                .map(|(d, w)| w * by[d].as_f64().unwrap())
                .sum();
            assert!((mean - v["val_loss"].as_f64().unwrap()).abs() < 1e-9);
        }
    }
    assert_eq!(steps, STEPS);
    let mix: serde_json::Value =
        serde_json::from_slice(&std::fs::read(f.root.join("runs/reference/mixture.json")).unwrap())
            .unwrap();
    assert_eq!(mix["sequences"].as_u64().unwrap(), STEPS * 8);
    for (row, (d, w)) in mix["domains"].as_array().unwrap().iter().zip(targets) {
        assert_eq!(row["domain"], d);
        assert!((row["target_share"].as_f64().unwrap() - w).abs() < 1e-12);
        // 192 sequences: within one sequence of the target.
        assert!((row["sequence_share"].as_f64().unwrap() - w).abs() <= 1.0 / 192.0);
    }
    // The recipe exports the average; `--weights final` the last weights, which differ.
    let run = f.root.join("runs/reference");
    let out = f.root.join("export/reference-final");
    let st = Command::new(&f.exe)
        .args([
            "export",
            run.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ])
        .args(["--weights", "final"])
        .status()
        .unwrap();
    assert!(st.success());
    let last = std::fs::read(out.join("model.safetensors")).unwrap();
    let ckpt = run.join(CHECKPOINTS_DIR).join(checkpoint_name(STEPS));
    assert!(ckpt.join("ema.safetensors").is_file());
    assert!(f.weights != last, "the export is the moving average");
    let ema = f.root.join("export/reference-ema");
    let st = Command::new(&f.exe)
        .args([
            "export",
            run.to_str().unwrap(),
            "--out",
            ema.to_str().unwrap(),
        ])
        .args(["--weights", "ema"])
        .status()
        .unwrap();
    assert!(st.success());
    assert!(f.weights == std::fs::read(ema.join("model.safetensors")).unwrap());
}

#[test]
fn corrupt_newest_checkpoint_falls_back_and_completes() {
    let f = fixture();
    let run = f.root.join("runs/corrupt");
    run_ok(trainer_cmd(f, &run, &["--max-steps", "12"]));
    let newest = run.join(CHECKPOINTS_DIR).join(checkpoint_name(12));
    let w = newest.join("model.safetensors");
    let mut bytes = std::fs::read(&w).unwrap();
    let i = bytes.len() - 7;
    bytes[i] ^= 0x40;
    std::fs::write(&w, bytes).unwrap();
    let err = run_ok(trainer_cmd(f, &run, &[]));
    assert!(err.contains("fails its checksum"), "no warning:\n{err}");
    assert!(
        err.contains("resuming") && err.contains("step 8"),
        "did not fall back to step 8:\n{err}"
    );
    let weights = export(&f.exe, &run, &f.root.join("export/corrupt"));
    assert_eq!(deterministic_metrics(&run, "tokens_per_s"), f.metrics);
    assert!(weights == f.weights);
}

#[test]
fn changed_data_is_refused_unless_allowed() {
    let f = fixture();
    let run = f.root.join("runs/datachange");
    run_ok(trainer_cmd(f, &run, &["--max-steps", "4"]));
    let other = f.root.join("other-data");
    make_data(&other);
    // Same shapes, one token changed.
    let seqs: Vec<Vec<u32>> = vec![vec![7; SEQ_LEN]; 3];
    testkit::shards::write_sequences(
        &other.join("shards/train/shard-00001.arrow"),
        &seqs,
        SEQ_LEN,
        256,
        0,
    )
    .unwrap();
    let out = trainer_cmd_on(f, &other, &run, &["--max-steps", "8"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("shards changed") && err.contains("--allow-data-change"),
        "{err}"
    );
    run_ok(trainer_cmd_on(
        f,
        &other,
        &run,
        &["--max-steps", "8", "--allow-data-change"],
    ));
}

#[test]
fn validation_loss_falls_on_sample_text() {
    loss_falls(fixture());
}

#[test]
fn mamba2_validation_loss_falls_on_sample_text() {
    loss_falls(fixture_mamba2());
}

#[test]
fn mixed_validation_loss_falls_on_sample_text() {
    loss_falls(fixture_mixed());
}

fn loss_falls(f: &Fixture) {
    let vals: Vec<f64> = f
        .metrics
        .iter()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["val_loss"].as_f64())
        .collect();
    let (first, last) = (vals[0], *vals.last().unwrap());
    eprintln!("validation loss on byte-tokenized sample abstracts: {first:.4} -> {last:.4}");
    assert!(
        (first - 256f64.ln()).abs() < 0.3,
        "initial loss {first} should be near ln(256)"
    );
    assert!(
        last < first - 1.0,
        "validation loss did not fall clearly: {first} -> {last}"
    );
}
