//! The whole trainer on the bundled sample, with the binaries users get (the pipeline builds its
//! shards and BioASQ tables first, as `just demo` does), for both architectures: Mamba-1
//! (`configs/sample.toml`) and Mamba-2 (`configs/sample-mamba2.toml`). On the CPU: pretraining
//! for 20 steps, export, fine-tuning, answering and perplexity. On wgpu, against the CPU: every
//! logged pretraining loss within 1e-3 relative, a SIGKILLed-and-resumed wgpu run equal to the
//! uninterrupted one, fine-tuning losses, identical answers, perplexity within 1e-4. The BioMamba-2
//! recipe on the sample with its corpora (`configs/sample-corpora.toml`) on the CPU. On a machine
//! without a GPU wgpu runs on Mesa's lavapipe (`.ci/run` installs it); without any adapter the
//! wgpu halves print SKIP, except under `CI=true`, where that is a failure.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use serde_json::Value;
use testkit::process::{count_lines, random_below, wait_kill};
use testkit::{pipeline_binary, sample_dir, trainer_binary, wgpu_available, workspace_dir};

const STEPS: &str = "20";

/// The sample's data directory (pipeline outputs), made once.
struct Sample {
    _tmp: tempfile::TempDir,
    data: PathBuf,
    /// Per config: its CPU pretraining run, made once.
    cpu: Mutex<BTreeMap<&'static str, &'static CpuRun>>,
}

/// A CPU pretraining run of one config and its export in the HF layout.
struct CpuRun {
    run: PathBuf,
    model: PathBuf,
}

/// `configs/NAME`: the Mamba-1 sample or the Mamba-2 one (the same pipeline sections).
fn config(name: &str) -> PathBuf {
    workspace_dir().join("configs").join(name)
}

const MAMBA1: &str = "sample.toml";
const MAMBA2: &str = "sample-mamba2.toml";

fn tokenizer(s: &Sample) -> PathBuf {
    tokenizer_of(&s.data)
}

/// Run a command to success; its stdout and stderr (both shown when it fails).
fn run(mut c: Command) -> (String, String) {
    let out = c.output().unwrap();
    let (o, e) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    assert!(out.status.success(), "{c:?} failed:\n{o}\n{e}");
    (o, e)
}

fn pipeline(data: &Path, args: &[&str]) {
    let mut c = Command::new(pipeline_binary());
    c.arg("--config")
        .arg(config(MAMBA1))
        .arg("--data-dir")
        .arg(data);
    c.args(args);
    run(c);
}

fn trainer(args: &[&str]) -> Command {
    let mut c = Command::new(trainer_binary());
    c.args(args).current_dir(workspace_dir());
    c
}

fn pretrain(cfg: &str, s_data: &Path, run_dir: &Path, device: &str) -> Command {
    let mut c = trainer(&["pretrain", "--device", device, "--max-steps", STEPS]);
    c.arg("--config").arg(config(cfg));
    c.arg("--data-dir")
        .arg(s_data)
        .arg("--run-dir")
        .arg(run_dir);
    c
}

/// One test at a time: they share the sample and two cores.
fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

fn sample() -> &'static Sample {
    static SAMPLE: OnceLock<Sample> = OnceLock::new();
    SAMPLE.get_or_init(|| {
        let tmp = tempfile::tempdir().unwrap();
        let data = tmp.path().join("data");
        let raw = data.join("raw");
        for (from, to) in [
            ("pubmed/baseline", "pubmed/baseline"),
            ("pubmed/updatefiles", "pubmed/updatefiles"),
            ("bioasq", "bioasq"),
        ] {
            let dir = raw.join(to);
            std::fs::create_dir_all(&dir).unwrap();
            for f in std::fs::read_dir(sample_dir().join(from)).unwrap() {
                let f = f.unwrap().path();
                if f.is_file() && f.extension().is_some_and(|e| e == "gz" || e == "json") {
                    std::fs::copy(&f, dir.join(f.file_name().unwrap())).unwrap();
                }
            }
        }
        pipeline(&data, &["parse"]);
        pipeline(&data, &["train-tokenizer"]);
        pipeline(&data, &["bioasq", "--offline"]);
        pipeline(&data, &["tokenize"]);
        Sample {
            _tmp: tmp,
            data,
            cpu: Mutex::new(BTreeMap::new()),
        }
    })
}

impl Sample {
    /// The CPU pretraining run of `cfg` (and its export), made on first use.
    fn cpu(&self, cfg: &'static str) -> &'static CpuRun {
        let mut runs = self.cpu.lock().unwrap();
        runs.entry(cfg).or_insert_with(|| {
            let name = cfg.trim_end_matches(".toml");
            let run_dir = self.data.join(format!("runs/cpu-{name}"));
            let t = Instant::now();
            run(pretrain(cfg, &self.data, &run_dir, "cpu"));
            println!(
                "{cfg}: CPU pretraining took {:.1} s",
                t.elapsed().as_secs_f64()
            );
            let model = self.data.join(format!("runs/cpu-{name}-export"));
            let mut c = trainer(&["export"]);
            c.arg(&run_dir).arg("--out").arg(&model);
            run(c);
            Box::leak(Box::new(CpuRun {
                run: run_dir,
                model,
            }))
        })
    }
}

fn metrics(run_dir: &Path) -> Vec<Value> {
    std::fs::read_to_string(run_dir.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The log without its wall-clock fields.
fn deterministic(run_dir: &Path) -> Vec<Value> {
    metrics(run_dir)
        .into_iter()
        .map(|mut v| {
            let o = v.as_object_mut().unwrap();
            o.remove("tokens_per_s");
            o.remove("secs");
            v
        })
        .collect()
}

/// The largest relative difference of `keys` between two logs of the same steps.
fn max_rel(a: &[Value], b: &[Value], keys: &[&str]) -> (f64, usize) {
    assert_eq!(a.len(), b.len(), "logs of different lengths");
    let (mut worst, mut compared) = (0f64, 0);
    for (x, y) in a.iter().zip(b) {
        assert_eq!(x["step"], y["step"]);
        for k in keys {
            match (x[k].as_f64(), y[k].as_f64()) {
                (Some(p), Some(q)) => {
                    worst = worst.max((p - q).abs() / p.abs().max(1e-12));
                    compared += 1;
                }
                (None, None) => {}
                _ => panic!("step {}: {k} logged by one run only", x["step"]),
            }
        }
    }
    (worst, compared)
}

fn final_weights(run_dir: &Path) -> Vec<u8> {
    std::fs::read(run_dir.join(format!("checkpoints/step-{STEPS:0>8}/model.safetensors"))).unwrap()
}

#[test]
fn pretraining_on_wgpu_matches_the_cpu_and_resumes_exactly() {
    pretraining_on_wgpu(MAMBA1);
}

#[test]
fn mamba2_pretraining_on_wgpu_matches_the_cpu_and_resumes_exactly() {
    pretraining_on_wgpu(MAMBA2);
}

fn pretraining_on_wgpu(cfg: &'static str) {
    let _one = serial();
    let s = sample();
    let cpu = s.cpu(cfg);
    let vals: Vec<f64> = metrics(&cpu.run)
        .iter()
        .filter_map(|m| m["val_loss"].as_f64())
        .collect();
    println!(
        "{cfg}: CPU validation loss {:.4} -> {:.4}",
        vals[0],
        vals[vals.len() - 1]
    );
    assert!(
        vals[vals.len() - 1] < vals[0] - 0.5,
        "{cfg}: validation loss did not fall: {vals:?}"
    );
    if !wgpu_available(&trainer_binary()) {
        return;
    }
    let name = cfg.trim_end_matches(".toml");
    let gpu = s.data.join(format!("runs/wgpu-{name}"));
    let t = Instant::now();
    let (_, err) = run(pretrain(cfg, &s.data, &gpu, "wgpu"));
    assert!(err.contains("[wgpu backend]"), "not on wgpu:\n{err}");
    let secs = t.elapsed().as_secs_f64();
    let (cpu_log, gpu_log) = (metrics(&cpu.run), metrics(&gpu));
    let (worst, n) = max_rel(&cpu_log, &gpu_log, &["loss", "val_loss"]);
    println!(
        "{cfg}: pretrain {STEPS} steps: wgpu vs cpu, {n} logged losses, max rel diff {worst:.2e}"
    );
    println!("wgpu pretraining took {secs:.1} s");
    assert!(n > 20, "only {n} losses compared");
    assert!(
        worst < 1e-3,
        "loss on wgpu differs from the CPU by {worst:.3e}"
    );

    // SIGKILL at a step chosen by the clock, resume, and end where the uninterrupted run did.
    let killed = s.data.join(format!("runs/wgpu-{name}-killed"));
    let at = 2 + random_below(15);
    println!("killing the wgpu run after {at} logged lines");
    let child = pretrain(cfg, &s.data, &killed, "wgpu")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let metrics = killed.join("metrics.jsonl");
    wait_kill(
        child,
        || count_lines(&metrics) >= at,
        "the kill point",
        Duration::from_secs(600),
    );
    let (_, err) = run(pretrain(cfg, &s.data, &killed, "wgpu"));
    assert!(err.contains("resuming"), "{err}");
    assert!(
        final_weights(&killed) == final_weights(&gpu),
        "the resumed wgpu run's weights differ from the uninterrupted one's"
    );
    assert_eq!(
        deterministic(&killed),
        deterministic(&gpu),
        "loss logs differ"
    );
}

/// Data parallel on the sample, against the one-device CPU run of the same global batch: two
/// device workers in one process (`--device cpu:2`), and two processes on 127.0.0.1 as two nodes
/// (`--device cpu` each). With `grad_accum = 2` every device takes one micro-batch, so the
/// additions happen in one device's order: every logged loss, gradient norm and validation loss
/// must agree within 1e-4 relative (they are equal), and the two nodes add exactly what the two
/// workers add: the same log and final weights, bit for bit. A node SIGKILLed mid-run fails the
/// other at once, naming it; both started again resume to the uninterrupted run's weights.
#[test]
fn data_parallel_workers_and_nodes_train_like_one_device() {
    let _one = serial();
    let s = sample();
    let reference = deterministic(&s.cpu(MAMBA1).run);
    let workers = s.data.join("runs/cpu-x2");
    let (_, err) = run(pretrain(MAMBA1, &s.data, &workers, "cpu:2"));
    assert!(
        err.contains("data-parallel workers"),
        "not on two workers:\n{err}"
    );
    let keys = ["loss", "grad_norm", "val_loss"];
    let (worst, n) = max_rel(&reference, &deterministic(&workers), &keys);
    println!("cpu:2 vs cpu: {n} logged values, max rel diff {worst:.2e}");
    assert!(
        n > 40 && worst <= 1e-4,
        "cpu:2 differs from one device by {worst:.3e}"
    );

    // Two nodes. Node 1 is given a run directory of its own, to show it writes nothing.
    let node = |run_dir: &Path, rank: usize, port: u16, log: &Path| {
        let mut c = pretrain(MAMBA1, &s.data, run_dir, "cpu");
        c.args(["--nodes", "2", "--node-rank", &rank.to_string()])
            .args(["--coordinator", &format!("127.0.0.1:{port}")])
            .args(["--node-timeout", "300"])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log).unwrap());
        c
    };
    let logs = tempfile::tempdir().unwrap();
    let log = |name: &str| logs.path().join(name);
    let read = |p: PathBuf| std::fs::read_to_string(p).unwrap();
    let both = |run_dir: &Path, tag: &str| {
        let port = free_port();
        let node1_dir = s.data.join(format!("runs/{tag}-node1"));
        let mut node1 = node(&node1_dir, 1, port, &log(&format!("{tag}-1")))
            .spawn()
            .unwrap();
        let node0 = node(run_dir, 0, port, &log(&format!("{tag}-0")))
            .status()
            .unwrap();
        let node1_status = node1.wait().unwrap();
        let (err0, err1) = (
            read(log(&format!("{tag}-0"))),
            read(log(&format!("{tag}-1"))),
        );
        assert!(
            node0.success() && node1_status.success(),
            "node 0:\n{err0}\nnode 1:\n{err1}"
        );
        assert!(!node1_dir.exists(), "node 1 wrote {}", node1_dir.display());
        err0
    };
    let two = s.data.join("runs/two-nodes");
    let t = Instant::now();
    let err = both(&two, "two");
    println!("two nodes: {:.1} s", t.elapsed().as_secs_f64());
    assert!(
        err.contains("joined"),
        "node 0 did not log node 1 joining:\n{err}"
    );
    // The checkpoint says two devices trained (one device alone would log the same values).
    let state: Value = serde_json::from_slice(
        &std::fs::read(two.join(format!("checkpoints/step-{STEPS:0>8}/state.json"))).unwrap(),
    )
    .unwrap();
    assert_eq!(state["devices"], 2, "{state}");
    assert_eq!(
        deterministic(&two),
        deterministic(&workers),
        "two nodes × 1 device logged other values than one node × 2 devices"
    );
    assert!(
        final_weights(&two) == final_weights(&workers),
        "two nodes × 1 device ended with other weights than one node × 2 devices"
    );

    // Node 1 dies: node 0 stops at once with an error naming it; both resume exactly.
    let killed = s.data.join("runs/two-nodes-killed");
    let port = free_port();
    let node1 = node(&s.data.join("runs/killed-node1"), 1, port, &log("killed-1"))
        .spawn()
        .unwrap();
    let mut node0 = node(&killed, 0, port, &log("killed-0")).spawn().unwrap();
    let at = 2 + random_below(15);
    println!("killing node 1 after {at} logged lines of node 0");
    let metrics = killed.join("metrics.jsonl");
    wait_kill(
        node1,
        || count_lines(&metrics) >= at,
        "the kill point",
        Duration::from_secs(600),
    );
    let t = Instant::now();
    let status = loop {
        if let Some(st) = node0.try_wait().unwrap() {
            break st;
        }
        assert!(
            t.elapsed() < Duration::from_secs(120),
            "node 0 still runs 120 s after node 1 died"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let err = read(log("killed-0"));
    println!(
        "node 0 stopped {:.1} s after node 1 died",
        t.elapsed().as_secs_f64()
    );
    assert!(
        !status.success(),
        "node 0 ended well without node 1:\n{err}"
    );
    assert!(
        err.contains("node 1 has stopped") && err.contains("resume"),
        "node 0's error does not say what happened:\n{err}"
    );
    let err = both(&killed, "resumed");
    assert!(err.contains("resuming"), "{err}");
    assert!(
        final_weights(&killed) == final_weights(&two),
        "the resumed two-node run's weights differ from the uninterrupted one's"
    );
    assert_eq!(
        deterministic(&killed),
        deterministic(&two),
        "loss logs differ"
    );
}

/// A port nothing listens on now.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn finetuning_answering_and_perplexity_on_wgpu_match_the_cpu() {
    finetuning_answering_and_perplexity(MAMBA1);
}

#[test]
fn mamba2_finetuning_answering_and_perplexity_on_wgpu_match_the_cpu() {
    finetuning_answering_and_perplexity(MAMBA2);
}

fn finetuning_answering_and_perplexity(cfg: &'static str) {
    let _one = serial();
    let s = sample();
    let pretrained = s.cpu(cfg);
    let name = cfg.trim_end_matches(".toml");
    let tok = tokenizer(s);
    let wgpu = wgpu_available(&trainer_binary());
    let finetune = |device: &str| {
        let dir = s.data.join(format!("runs/finetune-{name}-{device}"));
        let mut c = trainer(&[
            "finetune", "--task", "sample", "--steps", "6", "--device", device,
        ]);
        c.arg("--config")
            .arg(config(cfg))
            .arg("--data-dir")
            .arg(&s.data);
        c.arg("--init")
            .arg(&pretrained.model)
            .arg("--tokenizer")
            .arg(&tok);
        c.arg("--run-dir").arg(&dir);
        let (_, err) = run(c);
        assert!(err.contains(&format!("[{device} backend]")), "{err}");
        dir
    };
    let cpu = finetune("cpu");
    let losses: Vec<f64> = metrics(&cpu)
        .iter()
        .filter_map(|m| m["loss"].as_f64())
        .collect();
    assert_eq!(losses.len(), 6, "{cfg}: fine-tuning steps logged");
    assert!(
        losses.iter().all(|l| l.is_finite()),
        "{cfg}: fine-tuning loss {losses:?}"
    );
    if wgpu {
        let gpu = finetune("wgpu");
        let (worst, n) = max_rel(&metrics(&cpu), &metrics(&gpu), &["loss"]);
        println!("{cfg}: finetune: wgpu vs cpu, {n} losses, max rel diff {worst:.2e}");
        assert!(
            n == 6 && worst < 1e-3,
            "finetune loss differs by {worst:.3e}"
        );
    }

    // Answering: the same (CPU-trained) model answers the same on both backends.
    let answer = |device: &str| {
        let out = s.data.join(format!("answers-{name}-{device}"));
        let mut c = trainer(&["eval", "--task", "sample", "--device", device]);
        c.arg("--config")
            .arg(config(cfg))
            .arg("--data-dir")
            .arg(&s.data);
        c.arg("--model")
            .arg(cpu.join("model"))
            .arg("--tokenizer")
            .arg(&tok);
        c.arg("--out").arg(&out);
        run(c);
        let details: Vec<Value> = std::fs::read_to_string(out.join("details.jsonl"))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let results: Value =
            serde_json::from_slice(&std::fs::read(out.join("results.json")).unwrap()).unwrap();
        (
            std::fs::read(out.join("predictions.json")).unwrap(),
            details,
            results,
        )
    };
    let (cpu_pred, cpu_details, results) = answer("cpu");
    assert!(!cpu_details.is_empty(), "{cfg}: no question answered");
    assert!(
        results["metrics"]["mean_over_batches"]["mrr"].is_number(),
        "{cfg}: results.json has no MRR: {results}"
    );
    if wgpu {
        let (gpu_pred, gpu_details, _) = answer("wgpu");
        let mut worst = 0f64;
        for (a, b) in cpu_details.iter().zip(&gpu_details) {
            let pairs = |q: &Value| -> Vec<(String, f64)> {
                q["answers"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|p| (p[0].as_str().unwrap().to_string(), p[1].as_f64().unwrap()))
                    .collect()
            };
            for ((ta, pa), (tb, pb)) in pairs(a).into_iter().zip(pairs(b)) {
                assert_eq!(ta, tb, "question {}: answers differ", a["question_id"]);
                worst = worst.max((pa - pb).abs() / pa.max(1e-30));
            }
        }
        println!(
            "{cfg}: answers: {} questions, identical lists, max rel diff of probabilities {worst:.2e}",
            cpu_details.len()
        );
        assert!(
            cpu_pred == gpu_pred,
            "predictions.json differs between cpu and wgpu"
        );
    }

    // Perplexity of the pretrained model on the validation shards.
    let ppl = |device: &str| -> Vec<Value> {
        let out = s.data.join(format!("ppl-{name}-{device}"));
        let mut c = trainer(&["eval", "--ppl", "--device", device]);
        c.arg("--config")
            .arg(config(cfg))
            .arg("--data-dir")
            .arg(&s.data);
        c.arg("--model")
            .arg(&pretrained.model)
            .arg("--tokenizer")
            .arg(&tok);
        c.arg("--out").arg(&out);
        run(c);
        let j: Value =
            serde_json::from_slice(&std::fs::read(out.join("ppl.json")).unwrap()).unwrap();
        j["results"].as_array().unwrap().clone()
    };
    let a = ppl("cpu");
    assert_eq!(a.len(), 3, "three protocols");
    for x in &a {
        let p = x["perplexity"].as_f64().unwrap();
        println!("{cfg}: ppl {} on the cpu: {p:.3}", x["protocol"]);
        assert!(p.is_finite() && p > 1.0, "{cfg}: perplexity {p}");
    }
    if !wgpu {
        return;
    }
    let b = ppl("wgpu");
    for (x, y) in a.iter().zip(&b) {
        for k in ["cross_entropy", "perplexity"] {
            let (p, q) = (x[k].as_f64().unwrap(), y[k].as_f64().unwrap());
            let rel = (p - q).abs() / p;
            println!(
                "{cfg}: ppl {} {k}: cpu {p:.6} wgpu {q:.6} rel {rel:.2e}",
                x["protocol"]
            );
            assert!(rel < 1e-4, "{} {k}: rel {rel:.3e}", x["protocol"]);
        }
        assert_eq!(x["tokens"], y["tokens"]);
    }
}

/// The BioMamba-2 recipe on the bundled sample with its two general-domain corpora
/// (`configs/sample-corpora.toml`: the pipeline writes document shards for PubMed, Wikipedia and C4,
/// the trainer mixes them 80/10/10): the realised mixture of a CPU run is within one sequence of
/// the weights for every domain at every step; a SIGKILLed run resumes to the same weights and log;
/// the per-domain perplexity table holds every domain, for the trained and the initial model.
#[test]
fn mixed_corpora_pretraining_follows_the_mix_and_resumes_exactly() {
    const CFG: &str = "sample-corpora.toml";
    let _one = serial();
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let raw = data.join("raw");
    for (from, to) in [
        ("pubmed/baseline", "pubmed/baseline"),
        ("pubmed/updatefiles", "pubmed/updatefiles"),
        ("bioasq", "bioasq"),
    ] {
        let dir = raw.join(to);
        std::fs::create_dir_all(&dir).unwrap();
        for f in std::fs::read_dir(sample_dir().join(from)).unwrap() {
            let f = f.unwrap().path();
            if f.is_file() && f.extension().is_some_and(|e| e == "gz" || e == "json") {
                std::fs::copy(&f, dir.join(f.file_name().unwrap())).unwrap();
            }
        }
    }
    for (name, file) in [
        ("wikipedia", "20231101.en/train-00000-of-00001.parquet"),
        ("c4", "en/c4-train.00000-of-00001.json.gz"),
    ] {
        let to = raw.join("corpus").join(name).join(file);
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(sample_dir().join("corpus").join(name).join(file), &to).unwrap();
    }
    for args in [
        &["parse"][..],
        &["corpus-download", "--offline"],
        &["corpus"],
        &["train-tokenizer"],
        &["tokenize"],
    ] {
        let mut c = Command::new(pipeline_binary());
        c.arg("--config")
            .arg(config(CFG))
            .arg("--data-dir")
            .arg(&data);
        c.args(args);
        run(c);
    }
    // The initial model, then the whole run, then a run killed at a random step and resumed.
    let whole = data.join("runs/mixed");
    let mut c = trainer(&["pretrain", "--device", "cpu", "--max-steps", "0"]);
    c.arg("--config")
        .arg(config(CFG))
        .arg("--data-dir")
        .arg(&data);
    c.arg("--run-dir").arg(&whole);
    run(c);
    let initial = data.join("runs/mixed-initial");
    let export = |run_dir: &Path, out: &Path| {
        let mut c = trainer(&["export"]);
        c.arg(run_dir).arg("--out").arg(out);
        run(c);
    };
    export(&whole, &initial);
    run(pretrain(CFG, &data, &whole, "cpu"));
    let targets = [("c4", 0.1), ("pubmed", 0.8), ("wikipedia", 0.1)];
    let log = metrics(&whole);
    let mut steps = 0;
    for v in &log {
        let Some(seqs) = v.get("domain_sequences") else {
            continue;
        };
        let k = v["step"].as_u64().unwrap() as f64 * 8.0;
        for (d, w) in targets {
            let c = seqs[d].as_f64().unwrap();
            assert!((c - w * k).abs() <= 1.0, "{d}: {c} of {k} sequences: {v}");
        }
        steps += 1;
    }
    assert_eq!(steps.to_string(), STEPS);
    let mix: Value =
        serde_json::from_slice(&std::fs::read(whole.join("mixture.json")).unwrap()).unwrap();
    println!("{CFG}: realised mixture {}", mix["domains"]);
    let vals: Vec<f64> = log.iter().filter_map(|m| m["val_loss"].as_f64()).collect();
    println!(
        "{CFG}: validation loss {:.4} -> {:.4}",
        vals[0],
        vals[vals.len() - 1]
    );
    assert!(vals[vals.len() - 1] < vals[0] - 0.5, "{vals:?}");

    let killed = data.join("runs/mixed-killed");
    let at = 2 + random_below(15);
    println!("killing the mixed run after {at} logged lines");
    let child = pretrain(CFG, &data, &killed, "cpu")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let log_file = killed.join("metrics.jsonl");
    wait_kill(
        child,
        || count_lines(&log_file) >= at,
        "the kill point",
        Duration::from_secs(600),
    );
    let (_, err) = run(pretrain(CFG, &data, &killed, "cpu"));
    assert!(err.contains("resuming"), "{err}");
    assert!(
        final_weights(&killed) == final_weights(&whole),
        "weights differ"
    );
    assert_eq!(
        deterministic(&killed),
        deterministic(&whole),
        "loss logs differ"
    );

    // Perplexity per domain, the EMA export beside the initial model.
    let model = data.join("runs/mixed-export");
    export(&whole, &model);
    let out = data.join("ppl-mixed");
    let mut c = trainer(&["eval", "--ppl", "--device", "cpu"]);
    c.arg("--config")
        .arg(config(CFG))
        .arg("--data-dir")
        .arg(&data);
    c.arg("--model").arg(&model).arg("--baseline").arg(&initial);
    c.arg("--tokenizer")
        .arg(tokenizer_of(&data))
        .arg("--out")
        .arg(&out);
    let (table, _) = run(c);
    println!("{table}");
    let j: Value = serde_json::from_slice(&std::fs::read(out.join("ppl.json")).unwrap()).unwrap();
    let rows = j["domains"].as_array().unwrap();
    assert_eq!(rows.len(), 6, "3 domains × 2 models");
    for r in rows {
        let protocols: Vec<&str> = r["results"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x["protocol"].as_str().unwrap())
            .collect();
        assert_eq!(
            protocols,
            ["honest-documents", "paper"],
            "document shards: {r}"
        );
    }
    let honest = |m: &Path, d: &str| {
        rows.iter()
            .find(|r| r["model"] == m.display().to_string() && r["domain"] == d)
            .unwrap()["results"][0]["perplexity"]
            .as_f64()
            .unwrap()
    };
    for (d, _) in targets {
        assert!(
            honest(&model, d) < honest(&initial, d),
            "{d}: training did not help"
        );
    }
}

fn tokenizer_of(data: &Path) -> PathBuf {
    data.join("tokenizer/tokenizer.json")
}

/// `just gpu-check`'s script (`trainer/benches/gpu/check.sh`), run here on wgpu at small sizes
/// with the debug binaries: every row of its table passes (golden parity, the scan kernels
/// against the reference, training steps with their host reads and kernel launches, SIGKILL +
/// resume bit-identical; data parallel and the peer say skip without 2 GPUs or PyTorch).
#[test]
fn gpu_check_script_passes_on_wgpu() {
    let _one = serial();
    let trainer = trainer_binary();
    if !wgpu_available(&trainer) {
        return;
    }
    let examples = trainer.parent().unwrap().join("examples");
    let bin = tempfile::tempdir().unwrap();
    for (name, path) in [
        ("trainer", trainer.clone()),
        ("bench_train", examples.join("bench_train")),
        ("bench_gpu", examples.join("bench_gpu")),
    ] {
        if !path.is_file() {
            assert!(
                std::env::var_os("CI").is_none(),
                "CI must run the gpu-check script, but {} is not built",
                path.display()
            );
            println!(
                "SKIP: {} is not built (cargo test --workspace builds it)",
                path.display()
            );
            return;
        }
        std::os::unix::fs::symlink(&path, bin.path().join(name)).unwrap();
    }
    let s = sample();
    let out_dir = tempfile::tempdir().unwrap();
    let t = Instant::now();
    let out = Command::new("bash")
        .arg(workspace_dir().join("trainer/benches/gpu/check.sh"))
        .current_dir(workspace_dir())
        .env("DEVICE", "wgpu")
        .env("SMALL", "1")
        .env("BIN", bin.path())
        .env("DATA", &s.data)
        .env("GOLDEN", testkit::fixtures::golden_dir())
        .env("OUT", out_dir.path())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    println!(
        "{text}\ngpu-check on wgpu took {:.0} s",
        t.elapsed().as_secs_f64()
    );
    let table: Vec<&str> = text.lines().filter(|l| l.starts_with("| ")).collect();
    for check in [
        "trainer devices",
        "golden parity tiny-a",
        "golden parity tiny-b",
        "scan kernels vs reference, f32",
        "train step mamba-130m",
        "kernel launches",
        "SIGKILL",
    ] {
        let row = table
            .iter()
            .find(|r| r.contains(check))
            .unwrap_or_else(|| panic!("no row {check:?} in:\n{text}"));
        assert!(row.contains("| ok |"), "{check}: {row}\n{text}");
    }
    assert!(
        out.status.success(),
        "gpu-check failed:\n{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
