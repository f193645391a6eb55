//! The built `trainer` binary: `trainer score` reproduces the golden fixtures; `--device cuda`
//! without a CUDA driver is a clear error and `auto` falls back to the CPU.

mod common;

use std::path::Path;
use std::process::Command;

use common::{fixture, rel_err, score_cli};
use trainer::model::hf::safetensors::{self as st, OutTensor};

/// `trainer score` on the CPU against the golden numbers: logits and hidden states within `out`
/// relative, the loss within `out` absolute, every gradient within `grad`, greedy tokens equal.
fn run_score(dir: &Path, out: f64, grad: f64) {
    let (g, r, _) = score_cli(dir, "cpu", &["--grads", "--hidden", "--greedy", "12"]);
    let (ls, l) = r.f32("logits").unwrap();
    let (gs, gl) = g.f32("logits").unwrap();
    assert_eq!(ls, gs);
    let e = rel_err(&l, &gl);
    assert!(e < out, "logits rel err {e}");
    let (_, loss) = r.f32("loss").unwrap();
    let (_, gloss) = g.f32("loss").unwrap();
    assert!(((loss[0] - gloss[0]).abs() as f64) < out);
    let (_, greedy) = r.i64("generate.output").unwrap();
    assert_eq!(greedy, g.i64("generate.output").unwrap().1, "greedy tokens");
    let (mut grads, mut hidden) = (0, 0);
    for name in g.names() {
        let tol = if name.starts_with("grad.") {
            grads += 1;
            grad
        } else if name.starts_with("hidden_states.") {
            hidden += 1;
            out
        } else {
            continue;
        };
        let (_, a) = r.f32(&name).unwrap();
        let (_, b) = g.f32(&name).unwrap();
        let e = rel_err(&a, &b);
        assert!(e < tol, "{name} rel err {e}");
    }
    assert!(
        grads > 10 && hidden >= 3,
        "{grads} gradients, {hidden} hidden states"
    );
}

#[test]
fn cli_score_tiny_a() {
    if let Some(d) = fixture("tiny-a") {
        run_score(&d, 1e-4, 1e-3);
    }
}

#[test]
fn cli_score_tiny_b() {
    if let Some(d) = fixture("tiny-b") {
        run_score(&d, 1e-4, 1e-3);
    }
}

#[test]
fn cli_score_mamba2_fixtures() {
    for name in ["tiny-m2-a", "tiny-m2-a-ssm", "tiny-m2-b"] {
        if let Some(d) = fixture(name) {
            run_score(&d, 1e-5, 1e-4);
        }
    }
}

#[test]
fn cli_score_bad_input_is_an_error_not_a_panic() {
    let Some(dir) = fixture("tiny-a") else { return };
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("in.safetensors");
    st::save(
        &input,
        &[OutTensor::i64("wrong_name", vec![1, 3], &[1, 2, 3])],
    )
    .unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_trainer"))
        .args(["score", "--model"])
        .arg(&dir)
        .arg("--input")
        .arg(&input)
        .arg("--out")
        .arg(tmp.path().join("o.safetensors"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(
        err.contains("input_ids") && err.contains("not found"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
}

/// Where no CUDA driver is found (this machine and CI), `--device cuda…` is a clear error naming
/// what is missing, for both training commands, before anything is written; `auto` runs on the
/// CPU and says why in its first log line.
#[test]
fn cuda_without_a_driver_is_a_clear_error_and_auto_falls_back_to_the_cpu() {
    let probe = Command::new(env!("CARGO_BIN_EXE_trainer"))
        .arg("devices")
        .output()
        .unwrap();
    let listing = String::from_utf8_lossy(&probe.stdout);
    if !listing.contains("libcuda") {
        println!("SKIP: this machine has a CUDA driver:\n{listing}");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs/sample.toml");
    for args in [
        vec![
            "pretrain",
            "--run-dir",
            "r",
            "--device",
            "cuda:0,1",
            "--config",
        ],
        vec![
            "finetune", "--init", "m", "--task", "t", "--device", "cuda", "--config",
        ],
    ] {
        let o = Command::new(env!("CARGO_BIN_EXE_trainer"))
            .current_dir(tmp.path())
            .args(&args)
            .arg(&config)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "{args:?} succeeded");
        assert!(
            err.contains("--device cuda")
                && err.contains("libcuda")
                && err.contains("--device cpu"),
            "{err}"
        );
        assert!(!err.contains("panicked"), "{err}");
        assert!(
            !tmp.path().join("r").exists(),
            "nothing is created before the error"
        );
    }
    // auto: the CPU, and the first log line says so and why.
    let o = Command::new(env!("CARGO_BIN_EXE_trainer"))
        .current_dir(tmp.path())
        .args([
            "pretrain",
            "--run-dir",
            "r",
            "--max-steps",
            "0",
            "--data-dir",
            "no-data",
        ])
        .arg("--config")
        .arg(&config)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    let first = err.lines().next().unwrap_or("");
    assert!(
        first.contains("device cpu") && first.contains("auto: no CUDA"),
        "first line: {first}"
    );
}
