//! Golden parity on the wgpu backend, through the binary users get: `trainer score --device wgpu`
//! reproduces transformers' logits, loss, hidden states, every parameter gradient and the greedy
//! continuation of the `tiny-a` and `tiny-b` fixtures (Mamba-1) within 1e-4 relative, and of the
//! Mamba-2 fixtures `tiny-m2-a`, `tiny-m2-a-ssm` and `tiny-m2-b` within 1e-5 (logits, hidden
//! states, loss) and 1e-4 (gradients). On a machine without
//! a GPU this runs on Mesa's lavapipe (`.ci/run` installs it); without any wgpu adapter it prints
//! SKIP, except under `CI=true`, where that is a failure.
#![cfg(feature = "wgpu")]

mod common;

use std::path::Path;

use common::{fixture, golden_file, rel_err, score_cli};
use trainer::model::hf::safetensors::StFile;

fn score_on_wgpu(dir: &Path) -> Vec<(String, f64)> {
    let golden = StFile::open(&golden_file(dir)).unwrap();
    let (_, prompt) = golden.i64("generate.prompt").unwrap();
    let (_, expect) = golden.i64("generate.output").unwrap();
    let new_tokens = (expect.len() - prompt.len()).to_string();
    let (g, r, err) = score_cli(
        dir,
        "wgpu",
        &["--grads", "--hidden", "--greedy", &new_tokens],
    );
    assert!(err.contains("[wgpu backend]"), "not on wgpu:\n{err}");

    let (_, got) = r.i64("generate.output").unwrap();
    assert_eq!(got, expect, "greedy continuation");
    let mut errors = Vec::new();
    for name in g.names() {
        // `logits_f32_transformers` is transformers' own float32 result, for reference only.
        if name == "input_ids" || name.starts_with("generate.") || name.ends_with("_transformers") {
            continue;
        }
        let (gs, want) = g.f32(&name).unwrap();
        let (rs, have) = r
            .f32(&name)
            .unwrap_or_else(|e| panic!("{name} missing from the output: {e}"));
        assert_eq!(rs, gs, "{name} shape");
        errors.push((name, rel_err(&have, &want)));
    }
    let grads = errors
        .iter()
        .filter(|(n, _)| n.starts_with("grad."))
        .count();
    let hidden = errors
        .iter()
        .filter(|(n, _)| n.starts_with("hidden_states."))
        .count();
    assert!(
        grads > 10 && hidden >= 2,
        "{grads} gradients, {hidden} hidden states"
    );
    errors
}

/// `out`: the bound for every tensor but the gradients, which get `grad`.
fn check(name: &str, out: f64, grad: f64) {
    if !testkit::wgpu_available(Path::new(env!("CARGO_BIN_EXE_trainer"))) {
        return;
    }
    let Some(dir) = fixture(name) else { return };
    let errors = score_on_wgpu(&dir);
    let worst = errors
        .iter()
        .cloned()
        .fold((String::new(), 0.0), |a, b| if b.1 > a.1 { b } else { a });
    println!(
        "{name} on wgpu: {} tensors, max rel err {:.2e} ({})",
        errors.len(),
        worst.1,
        worst.0
    );
    for (tensor, e) in &errors {
        let tol = if tensor.starts_with("grad.") {
            grad
        } else {
            out
        };
        assert!(*e < tol, "{name}: {tensor} rel err {e:.3e}");
    }
}

#[test]
fn golden_tiny_a_on_wgpu() {
    check("tiny-a", 1e-4, 1e-4);
}

#[test]
fn golden_tiny_b_on_wgpu() {
    check("tiny-b", 1e-4, 1e-4);
}

#[test]
fn golden_mamba2_on_wgpu() {
    for name in ["tiny-m2-a", "tiny-m2-a-ssm", "tiny-m2-b"] {
        check(name, 1e-5, 1e-4);
    }
}
